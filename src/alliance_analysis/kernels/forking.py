"""Kernels forked from one process that imported the scientific stack once.

A stage's kernel spends about 3 s of one core before the notebook's first cell does any work:
Python starts, IPython and ipykernel load, and the notebook's imports load numpy, pandas,
scipy, matplotlib, seaborn and the workbench. Six stages pay that six times. A
:class:`ForkServer` is one process that imports all of it once, as a kernel would, and then
*forks* each kernel: the child already has every module loaded (shared with the server until
written), and starts the kernel (``ipykernel``'s ``IPKernelApp``) with the command, working
folder and environment jupyter_client asked for. ``ForkProvisioner``
(:func:`provisioner_class`) is jupyter_client's local provisioner with the ``Popen`` of the
kernel command replaced by that fork, so the kernel manager, papermill and nbclient drive a
forked kernel exactly as a started one.

Why not a library: jupyter_client starts local kernels with ``subprocess.Popen``, and its
kernel provisioners (7.0+) are the documented place to change how a kernel is launched; we
found no maintained provisioner that forks local kernels from a preloaded process. The fork
itself is the usual pre-fork pattern (as gunicorn's ``preload_app``).

What a notebook sees is unchanged:

- the server sets ``MPLBACKEND`` as ``IPKernelApp`` does before anything imports matplotlib,
  and removes its working folder from ``sys.path`` as ``ipykernel_launcher`` does;
- each child takes the kernel's environment and working folder, a new session (as
  jupyter_client's ``start_new_session``), stdin from ``/dev/null``, the default ``SIGCHLD``
  handler, and the argument list of ``python -m ipykernel_launcher``;
- the BLAS and OpenMP thread counts the kernel's environment sets (:data:`LIBRARY_THREADS`),
  which a started kernel's libraries read as numpy loads them, are applied in the child with
  threadpoolctl where they differ from the server's own (the pipeline starts the server with
  the kernels' counts, so that nothing is to apply);
- the server looks up the inline backend once (:func:`_find_inline_backend`), which only
  fills matplotlib's cache of installed backends;
- an import that printed or warned (it would print in the notebook's cell of a new kernel)
  makes the server refuse every fork, so those kernels are started as before
  (:attr:`ForkServer.usable`); so does a kernel command other than this interpreter's
  ``-m ipykernel_launcher``.

Lifetime: the server reads requests until its pipe closes (:meth:`ForkServer.close`, or the
run's process died); it then waits for its kernels to be shut down by their managers, or kills
them when the run's process is gone. A kernel watches the server as its parent (the
``JPY_PARENT_PID`` it gets), as any kernel watches its launcher.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The matplotlib backend ``IPKernelApp`` sets when none is (ipykernel's ``init_gui_pylab``).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

#: What every kernel imports before the notebook's modules.
KERNEL_MODULES = ("ipykernel.kernelapp",)

#: What ``%matplotlib inline`` imports (the stages that draw figures run it first). A kernel
#: does not import them as it starts, so the server imports them, and looks up the inline
#: backend once (:func:`_find_inline_backend`), after forking its first kernel: the first
#: stage (``01_clean``, which draws nothing) does not wait for matplotlib (about 0.5 s).
FIGURE_MODULES = ("matplotlib_inline.backend_inline", "matplotlib.backends.registry")

#: What ipykernel imports while each kernel starts (its debugger and debugpy, IPython's
#: completer and inspector, ...), about 0.15 s of every kernel's start: the server imports
#: them once, after :data:`KERNEL_MODULES`. Best effort: one that another ipykernel version
#: does not have is skipped (a kernel imports what it needs itself), and what they print is
#: discarded (a kernel prints it at start, before any cell, not into the notebook).
KERNEL_START_MODULES = ("ipykernel.debugger", "IPython.core.completerlib",
                        "IPython.core.debugger", "IPython.core.oinspect",
                        "IPython.extensions.storemagic", "IPython.utils.wildcard",
                        "faulthandler", "psutil", "sqlite3", "tornado.platform.asyncio")

#: Environment variables setting the thread count of the BLAS and OpenMP pools.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "MKL_NUM_THREADS",
                         "OMP_NUM_THREADS")

#: The variables each library (threadpoolctl's ``internal_api``) reads its thread count from,
#: the first set one winning: OpenBLAS its own, then GotoBLAS's, then OpenMP's; MKL its own,
#: then OpenMP's; OpenMP its own.
LIBRARY_THREADS = {"openblas": ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"),
                   "mkl": ("MKL_NUM_THREADS", "OMP_NUM_THREADS"),
                   "openmp": ("OMP_NUM_THREADS",)}

#: Seconds the server may take to answer (its imports, a fork) before it is not used again.
READY_TIMEOUT = 120.0


def available() -> bool:
    """Whether kernels are forked here: on Linux. Windows has no ``fork``, and macOS's system
    libraries are not safe to use in a forked child (Python's own ``multiprocessing`` spawns
    there); elsewhere every kernel is started as papermill starts one."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class ForkServer:
    """One process that imports the kernels' modules once and forks notebook kernels from it.

    The server imports what every kernel imports (IPython, ipykernel) when it starts, and
    each kernel's own modules (its notebook's imports) just before forking it, so the first
    stage's kernel waits only for the first stage's imports.

    Parameters
    ----------
    cwd
        The server's working folder (the notebooks' folder, the kernels' usual one).
    preload
        Modules to import as soon as the server starts (the first stage's), before any
        kernel is asked for.
    env
        Environment variables the server gets on top of this process's (the kernels' BLAS
        thread counts, read as the server loads numpy).
    """

    def __init__(self, cwd: str | Path, preload: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alliance_analysis.kernels", str(request_read),
             str(reply_write), json.dumps(list(preload))],
            pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL, cwd=str(cwd),
            start_new_session=True, env={**os.environ, **(env or {})})
        os.close(request_read)
        os.close(reply_write)
        self._requests = os.fdopen(request_write, "w", encoding="utf-8")
        self._replies = os.fdopen(reply_read, "r", encoding="utf-8")
        self._lock = threading.Lock()
        self._ready: dict[str, Any] | None = None

    @property
    def usable(self) -> bool:
        """Whether the server's first imports (every kernel's, then ``preload``) were quiet;
        waits for them. A later import that is not makes the server refuse that fork and
        every later one."""
        with self._lock:
            return self._wait_ready().get("ok", False)

    def _wait_ready(self) -> dict[str, Any]:
        if self._ready is None:
            self._ready = self._reply()
        return self._ready

    def _reply(self) -> dict[str, Any]:
        """The server's next reply line; a server that says nothing for
        :data:`READY_TIMEOUT` seconds (an import that hangs) is not used again."""
        readable, _, _ = select.select([self._replies], [], [], READY_TIMEOUT)
        line = self._replies.readline() if readable else ""
        if not line:
            self._ready = {"ok": False, "why": "the server exited or did not answer in "
                                              f"{READY_TIMEOUT:.0f} s"}
            return self._ready
        return json.loads(line)

    def fork(self, cmd: Sequence[str], env: dict[str, str], cwd: str,
             modules: Sequence[str] = ()) -> int:
        """Fork a kernel running ``cmd`` (``python -m ipykernel_launcher ...``) in ``cwd``
        with ``env``, once the server has imported ``modules``; its process ID.

        Raises
        ------
        RuntimeError
            The server could not import its modules quietly, or could not fork; the caller
            starts the kernel as usual.
        """
        with self._lock:
            ready = self._wait_ready()
            if not ready.get("ok"):
                raise RuntimeError(f"kernel fork server not usable: {ready.get('why')}")
            self._requests.write(json.dumps({"cmd": list(cmd), "env": env, "cwd": cwd,
                                             "modules": list(modules)}) + "\n")
            self._requests.flush()
            reply = self._reply()
        if "pid" not in reply:
            raise RuntimeError(f"kernel fork failed: {reply.get('why')}")
        return int(reply["pid"])

    def close(self) -> None:
        """Stop taking requests; the server exits once its kernels are shut down."""
        with self._lock:
            for stream in (self._requests, self._replies):
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # a kernel still running: it exits after it
            pass


#: The server :func:`start_early` started, until a kernel pool takes it (:func:`take_early`).
_early: ForkServer | None = None


def start_early(cwd: str | Path, preload: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> None:
    """Start a fork server now, for the next kernel pool of this process to use.

    The ``alliance run`` command calls this first thing, so that the server imports the
    stack while the run reads its parameters and sets up its folders. Whoever calls it calls
    :func:`close_early` when done (a server no pool took is then stopped).
    """
    global _early
    close_early()
    if not available():
        return
    try:
        _early = ForkServer(cwd, preload, env)
    except OSError:  # the pool starts one, or starts its kernels as usual
        _early = None


def take_early() -> ForkServer | None:
    """The server :func:`start_early` started (the caller owns it from now on), or None."""
    global _early
    server, _early = _early, None
    return server


def close_early() -> None:
    """Stop the server :func:`start_early` started, if no pool took it."""
    server = take_early()
    if server is not None:
        server.close()


class ForkedKernel:
    """The ``Popen``-like handle of a forked kernel (a child of the server, not of ours): what
    jupyter_client's local provisioner calls on its process. Waiting is the provisioner's
    own (``ForkProvisioner.wait``), since the kernel cannot be waited for from here."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """None while the kernel runs; 0 once it is gone (its exit status is the server's)."""
        if self.returncode is None and not _alive(self.pid):
            self.returncode = 0
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@functools.cache
def provisioner_class() -> type:
    """:class:`ForkProvisioner`'s class (defined on first use: jupyter_client is imported only
    when a kernel is started, not when the server is)."""
    from jupyter_client.provisioning import LocalProvisioner

    class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
        """jupyter_client's local provisioner, launching the kernel by a :class:`ForkServer`.

        A command that is not this interpreter's ``-m ipykernel_launcher``, or a server that
        is not usable, gets the usual ``Popen`` launch.
        """

        server: ForkServer | None = None
        modules: Sequence[str] = ()

        async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
            server = self.server
            if server is None or not forkable(cmd):
                return await super().launch_kernel(cmd, **kwargs)
            env = dict(kwargs.get("env") or os.environ)
            # as Popen: a relative folder is this process's, a missing one is its error
            cwd = os.path.abspath(kwargs.get("cwd") or Path.cwd())
            if not os.path.isdir(cwd):
                return await super().launch_kernel(cmd, **kwargs)
            try:
                pid = server.fork(cmd, env, cwd, self.modules)
            except RuntimeError:
                return await super().launch_kernel(cmd, **kwargs)
            self.process = ForkedKernel(pid)
            self.pid = self.pgid = pid  # the child starts its own session (process group)
            self.cwd = cwd
            return self.connection_info

        async def wait(self) -> int | None:
            """Wait for a forked kernel to be gone, polling every 5 ms (the local
            provisioner polls every 100 ms, a tenth of a second at the end of every stage)."""
            if not isinstance(self.process, ForkedKernel):
                return await super().wait()
            while self.process.poll() is None:
                await asyncio.sleep(0.005)
            self.process = None
            return 0

    return ForkProvisioner


def forkable(cmd: Sequence[str]) -> bool:
    """True for this interpreter's ``python -m ipykernel_launcher ...``."""
    try:
        same = os.path.samefile(cmd[0], sys.executable)
    except (OSError, IndexError):
        return False
    return same and list(cmd[1:3]) == ["-m", "ipykernel_launcher"]


def use_fork_server(km: Any, server: ForkServer, modules: Sequence[str] = ()) -> None:
    """Make the kernel manager ``km`` launch its kernel through ``server``, forked once the
    server has imported ``modules``."""
    km.kernel_id = km.kernel_id or str(uuid.uuid4())
    provisioner = provisioner_class()(kernel_id=km.kernel_id, kernel_spec=km.kernel_spec,
                                      parent=km)
    provisioner.server = server
    provisioner.modules = list(modules)
    km.provisioner = provisioner


# -- the server process -------------------------------------------------------------------

def _import_quietly(modules: Sequence[str]) -> dict[str, Any]:
    """Import ``modules`` as a kernel would; not ok if one failed, printed or warned.

    What an import writes is caught at the file descriptors, not by replacing ``sys.stdout``
    and ``sys.stderr``: a module keeping a reference to those streams keeps the real ones.
    """
    import importlib
    import tempfile

    if not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = INLINE_BACKEND
    with tempfile.TemporaryFile() as capture:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            for name in modules:
                importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - the notebook's own cell reports it
            return {"ok": False, "why": f"importing {name}: {exc!r}"}
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
        capture.seek(0)
        printed = capture.read().decode(errors="replace")
    if printed:
        return {"ok": False, "why": "an import printed: " + printed[:200]}
    return {"ok": True}


def _find_inline_backend() -> None:
    """Look up the inline backend as ``%matplotlib inline`` does, once for every kernel.

    matplotlib's backend registry reads every installed package's entry points the first
    time a backend is looked up by name (about half a second); done here, the forked kernels
    find them read. Only a cache of the registry is filled: nothing is drawn or set.
    """
    try:
        from matplotlib.backends.registry import backend_registry

        backend_registry.resolve_gui_or_backend("inline")
    except Exception:  # noqa: BLE001, S110 - then each kernel looks it up itself, as before
        pass


def _child(request: dict[str, Any], keep: Sequence[int]) -> None:
    """In the forked child: become the kernel of ``request``; never returns."""
    code = 1
    gc.enable()  # the server's objects stay frozen (see serve)
    try:
        server_env = dict(os.environ)
        os.setsid()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(os.getppid())  # the server is the launcher
        try:
            _limit_blas_threads(request["env"], server_env)
        except Exception:  # noqa: BLE001, S110 - the count changes speed only, never results
            pass
        cmd = request["cmd"]
        import ipykernel_launcher
        from ipykernel import kernelapp

        sys.argv = [ipykernel_launcher.__file__, *cmd[3:]]
        kernelapp.launch_new_instance(argv=cmd[3:])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report, then leave the child
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - exiting anyway
                pass
        os._exit(code)


def cores() -> int:
    """The CPUs this process may run on (its affinity, as OpenBLAS counts them)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this platform (macOS)
        return os.cpu_count() or 1


def _count(value: str) -> int | None:
    """A thread count as the libraries read it: the leading whole number (OpenMP allows a
    list, ``"4,1"``), None unless positive."""
    first = value.split(",")[0].strip()
    try:
        number = int(first)
    except ValueError:
        return None
    return number if number > 0 else None


def library_threads(env: Mapping[str, str]) -> dict[str, int | None]:
    """The thread count ``env`` sets for each library of :data:`LIBRARY_THREADS` (None: the
    library's default)."""
    return {library: next((n for v in variables if (n := _count(env.get(v, ""))) is not None),
                          None)
            for library, variables in LIBRARY_THREADS.items()}


def _limit_blas_threads(env: Mapping[str, str], server_env: Mapping[str, str]) -> None:
    """Give the BLAS and OpenMP pools the thread counts ``env`` sets, as a kernel started with
    ``env`` would have them: they read them once, when numpy loaded them in the server (with
    ``server_env``). Applied with threadpoolctl to the libraries whose count differs; a count
    left unset is the libraries' default, one thread per usable CPU (BLAS libraries never
    take more)."""
    wanted, loaded = library_threads(env), library_threads(server_env)
    usable = cores()
    limits = {library: (usable if n is None else n if library == "openmp" else min(n, usable))
              for library, n in wanted.items() if n != loaded[library]}
    if not limits:
        return
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    for library, threads in limits.items():  # libraries not loaded select nothing
        controller.select(internal_api=library).limit(limits=threads)


def _reap(signum: int, frame: Any) -> None:
    """SIGCHLD: collect every kernel that has exited."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def serve(request_fd: int, reply_fd: int, preload: Sequence[str] = ()) -> None:
    """The server's loop: import what every kernel imports, report, then import each
    request's modules and fork its kernel."""
    run_pid = os.getppid()
    # gc.disable / freeze / enable as the gc module's documentation advises for a process that
    # forks without exec: no collection runs while the server imports, so its many
    # long-lived objects are never scanned; each kernel starts with them frozen, so its own
    # collections skip them (and do not write to, and so copy, the pages it shares with the
    # server). About 1 s of CPU in the server's imports and 0.1-0.5 s in each kernel.
    gc.disable()
    if sys.path and (sys.path[0] in ("", os.getcwd())):
        del sys.path[0]  # as ipykernel_launcher does; IPython puts it back in the kernel
    # forked kernels are reaped as soon as they exit (so that a kernel manager polling one sees
    # it gone), and their CPU time is counted as the server's children's, as with Popen
    signal.signal(signal.SIGCHLD, _reap)
    requests = os.fdopen(request_fd, "r", encoding="utf-8")
    replies = os.fdopen(reply_fd, "w", encoding="utf-8")

    def reply(message: dict[str, Any]) -> bool:
        """Send ``message``; False when the run has closed the server (stop serving)."""
        try:
            replies.write(json.dumps(message) + "\n")
            replies.flush()
        except BrokenPipeError:
            return False
        return True

    status = _import_quietly([*KERNEL_MODULES, *preload])
    if status["ok"]:
        for name in KERNEL_START_MODULES:
            _import_quietly([name])  # best effort (see KERNEL_START_MODULES)
    figures = False  # FIGURE_MODULES imported
    children: list[int] = []
    lines = requests if reply(status) else iter(())
    for line in lines:
        request = json.loads(line)
        if status["ok"]:  # a failed import leaves the server unusable from then on
            status = _import_quietly(request.get("modules", ()))
        if not status["ok"]:
            if not reply({"why": status["why"]}):
                break
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()
        try:
            pid = os.fork()
        except OSError as exc:
            if not reply({"why": repr(exc)}):
                break
            continue
        if pid == 0:
            _child(request, (request_fd, reply_fd))
        children.append(pid)
        if not reply({"pid": pid}):  # nobody will use this kernel
            os.kill(pid, signal.SIGKILL)
            break
        if not figures:  # while the first kernel runs (see FIGURE_MODULES)
            figures = True
            status = _import_quietly(FIGURE_MODULES)
            if status["ok"]:
                _find_inline_backend()
    # no more requests: wait for the kernels, or end them when the run's process is gone
    while any(_alive(pid) for pid in children):
        if os.getppid() != run_pid:  # the run's process is gone: the server was adopted
            for pid in children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            break
        time.sleep(0.02)

