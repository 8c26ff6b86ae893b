"""Notebook kernels started ahead of the stages that run in them.

Each stage of a run is a notebook executed in a fresh Python kernel, and before its first cell
does any work a kernel costs about 3-4 s of one core: the kernel process starts, then the
notebook's imports load numpy, pandas, scipy, matplotlib, seaborn and the workbench. Much of
that time a core is idle (while ``01_clean`` runs alone, while the main process imports
papermill or renders pages), so :class:`KernelPool` starts the kernel of a stage before the
stage's turn and imports the modules its notebook imports (:func:`notebook_modules`); when the
stage starts, papermill executes the notebook in that kernel (:func:`execute_in`).

What the notebook sees is unchanged: the modules are imported in a *silent* execution, which
IPython keeps out of the history and the execution count, and nothing is bound in the user's
namespace; every cell then runs as it would in a new kernel, so the executed notebook and
every file the stage writes are the same bytes. A kernel whose start or imports fail is shut
down and the stage starts a kernel of its own as before, so the error is reported where it
always was: in the notebook's cell.

Where kernels are forked (:mod:`~alliance_analysis.kernels.forking`, on Linux), the fork
server has imported the notebook's modules already and checked that they printed nothing; such
a kernel is ready as soon as it answers, with no silent import.
"""

from __future__ import annotations

import ast
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alliance_analysis.kernels.forking import (BLAS_THREAD_VARIABLES, ForkedKernel, ForkServer,
                                              available, cores, take_early, use_fork_server)

if TYPE_CHECKING:
    from jupyter_client.manager import KernelManager

#: nbclient adds this argument to every kernel it starts (no history database on disk); the
#: kernels started here get it too, so they are started exactly as papermill would.
HISTORY_ARGUMENT = "--HistoryManager.hist_file=:memory:"

#: Seconds a kernel may take to start, and its imports to finish, before it is given up.
START_TIMEOUT, IMPORT_TIMEOUT = 60.0, 300.0

_log = logging.getLogger(__name__)

#: Seconds between two looks at a starting kernel's process (:meth:`WarmKernel._answers`).
POLL = 0.25

#: The silent cell that imports a notebook's modules: a function, so that no name is left in
#: the user's namespace (its own name is deleted again).
WARM_UP = """\
def __alliance_warm_up():
    import importlib
    for name in {modules!r}:
        importlib.import_module(name)
__alliance_warm_up()
del __alliance_warm_up
"""


def notebook_modules(path: str | Path) -> list[str]:
    """The modules a notebook's code cells import, in the order they first appear.

    Reads every ``import x`` and ``from x import y`` (absolute imports, at any depth of a
    cell); lines of IPython magics (``%``, ``!``) are skipped, and a cell that is not Python
    is ignored. ``from x import y`` names module ``x``.

    Parameters
    ----------
    path
        The notebook (``.ipynb``).

    Returns
    -------
    list of str
        Module names, without repeats.
    """
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    modules: list[str] = []
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        lines = [line for line in source.splitlines()
                 if not line.lstrip().startswith(("%", "!"))]
        try:
            tree = ast.parse("\n".join(lines))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.append(node.module)
    return list(dict.fromkeys(modules))


@functools.cache
def _manager_class() -> type:
    """jupyter_client's kernel manager, checking every 5 ms (not 100 ms) whether a kernel
    asked to shut down is gone: a tenth of a second at the end of every stage otherwise."""
    from jupyter_client.manager import KernelManager

    class StageKernelManager(KernelManager):  # type: ignore[misc]
        async def _async_wait(self, pollinterval: float = 0.1) -> None:
            await super()._async_wait(pollinterval=min(pollinterval, 0.005))

    return StageKernelManager


def blas_environment(side_by_side: int, usable: int | None = None) -> dict[str, str]:
    """The BLAS thread counts of kernels whose stages run ``side_by_side`` at a time: the
    ``usable`` CPUs (default: this process's, :func:`~alliance_analysis.kernels.forking.
    cores`) shared among them, at least one each (:data:`BLAS_THREAD_VARIABLES`).

    Each BLAS pool starts one thread per CPU, so two stages side by side on two cores ran
    four BLAS threads, whose waiting threads spin and take the core from the other stage
    (the demo report took 1.3-1.5 s longer, with 2 s more CPU time). Results do not depend on
    the count (:mod:`alliance_analysis.stats.threads`). Empty, the libraries' default, when one
    stage runs at a time or when this process's environment sets any of the variables (the
    user's choice).
    """
    usable = usable or cores()
    if side_by_side <= 1 or any(os.environ.get(v, "").strip() for v in BLAS_THREAD_VARIABLES):
        return {}
    threads = str(max(1, usable // side_by_side))
    return {variable: threads for variable in BLAS_THREAD_VARIABLES}


@functools.cache
def _kernel_specs() -> Any:
    """One kernel-spec manager for every kernel of the process (each manager of its own
    searches the Jupyter data folders again, about 0.1 s)."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager()


class WarmKernel:
    """A kernel started for one notebook, importing that notebook's modules in the background.

    Parameters
    ----------
    notebook
        The notebook that will run in the kernel.
    extra_arguments
        Arguments of the kernel command, as papermill is given them.
    server
        The fork server to launch the kernel by (None: started as papermill starts one).
    env
        Environment variables the kernel gets on top of this process's.
    """

    def __init__(self, notebook: Path, extra_arguments: Sequence[str],
                 server: ForkServer | None = None, env: Mapping[str, str] | None = None) -> None:
        # A blocking manager is not tied to an event loop, so it can be started in one thread
        # and used by nbclient in another; nbclient gets the asynchronous client it expects.
        self.km: KernelManager = _manager_class()(
            kernel_name="python3", client_class="jupyter_client.asynchronous.AsyncKernelClient",
            kernel_spec_manager=_kernel_specs())
        modules = notebook_modules(notebook)
        if server is not None:
            use_fork_server(self.km, server, modules)
        arguments = list(extra_arguments)
        if not any(a.startswith("--HistoryManager.hist_file") for a in arguments):
            arguments.append(HISTORY_ARGUMENT)
        self.km.start_kernel(extra_arguments=arguments, cwd=str(notebook.parent),
                             env={**os.environ, **(env or {})})
        self.ready = False
        #: Why the kernel cannot be used (empty while it can), for the run's warning.
        self.why = ""
        self._thread = threading.Thread(target=self._import, args=(modules,),
                                        name=f"warm-{notebook.stem}", daemon=True)
        self._thread.start()

    def _import(self, modules: list[str]) -> None:
        from jupyter_client.blocking import BlockingKernelClient

        client = BlockingKernelClient(connection_file=self.km.connection_file,
                                      **self.km.get_connection_info(session=True))
        try:
            client.start_channels()
            if self._was_forked():
                # its modules are imported already, quietly (the fork server checked): the
                # kernel answering is all there is to wait for
                self.ready = self._answers(client)
                if not self.ready:
                    self.why = ("the forked kernel " + ("did not answer in time"
                                if self.km.is_alive() else "exited while starting"))
                return
            client.wait_for_ready(timeout=START_TIMEOUT)
            shown: list[str] = []  # anything an import printed (a warning, say)
            reply = client.execute_interactive(
                WARM_UP.format(modules=modules), silent=True, store_history=False,
                allow_stdin=False, timeout=IMPORT_TIMEOUT,
                output_hook=lambda msg: shown.append(msg["msg_type"]))
            # an import that printed something would print it in the notebook's own cell in
            # a new kernel: such a kernel is not used, so the executed notebook is the same
            self.ready = reply["content"]["status"] == "ok" and not (
                set(shown) - {"status", "execute_input"})
            if not self.ready:
                self.why = "importing the notebook's modules failed or printed something"
        except Exception as exc:  # noqa: BLE001 - the stage starts a kernel of its own instead
            self.ready = False
            self.why = f"it could not be readied: {exc!r}"
        finally:
            client.stop_channels()

    def _answers(self, client: Any) -> bool:
        """Whether the kernel answers a kernel-info request within :data:`START_TIMEOUT`
        seconds. Its process is looked at every :data:`POLL` seconds meanwhile: a kernel that
        died while starting (a port another process took first, say) is given up at once, so
        that its stage starts a kernel of its own instead of waiting the whole time."""
        from queue import Empty

        client.kernel_info()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                reply = client.get_shell_msg(timeout=POLL)
            except Empty:
                if time.monotonic() > deadline or not self.km.is_alive():
                    return False
                continue
            return bool(reply["content"]["status"] == "ok")

    def _was_forked(self) -> bool:
        """Whether the fork server launched the kernel (not a ``Popen`` fallback)."""
        return isinstance(getattr(self.km.provisioner, "process", None), ForkedKernel)

    def wait(self) -> bool:
        """Wait for the imports; True when the kernel is alive and they succeeded."""
        self._thread.join()
        if self.ready and not self.km.is_alive():
            self.why = "the kernel exited before its stage"
        return self.ready and not self.why

    def shutdown(self) -> None:
        """Stop the kernel now (it was not used, or not usable)."""
        try:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        finally:
            self.km.cleanup_resources()


class KernelPool:
    """Kernels started ahead of the stages of one run, by stage name.

    A context manager: on leaving it (a run finished, failed or was interrupted) every kernel
    not taken by a stage is shut down.

    Nothing starts until a stage asks for its kernel (:meth:`take`) or the caller asks for
    some to be started (:meth:`start_soon`). :meth:`take` starts the kernels of that stage
    and of the ``ahead`` stages after it in ``order`` (those not started yet):
    the first request starts the first stage's kernel and ``ahead`` more, and each later one
    starts one more, so ``ahead`` kernels are always being readied while stages run.

    Parameters
    ----------
    folder
        The folder of the notebooks (``<folder>/<stage>.ipynb``).
    extra_arguments
        Arguments of every kernel command.
    order
        The stages in the order they start.
    ahead
        How many stages' kernels to start ahead of the stage asking (the number of stages
        that run at the same time).
    fork
        Fork the kernels from one process that imported the stack once
        (:mod:`~alliance_analysis.kernels.forking`; the one :func:`~alliance_analysis.
        kernels.forking.start_early` started, if any), where forking is available (Linux);
        False starts each as papermill would.
    env
        Environment variables every kernel gets on top of this process's (e.g. the BLAS
        thread counts of :func:`blas_environment`).
    """

    def __init__(self, folder: Path, extra_arguments: Sequence[str], order: Sequence[str],
                 ahead: int = 1, fork: bool = True,
                 env: Mapping[str, str] | None = None) -> None:
        self.folder = Path(folder)
        self.extra_arguments = list(extra_arguments)
        self.order = list(order)
        self.ahead = ahead
        self.env = dict(env or {})
        self.server: ForkServer | None = None
        # jupyter_client's cache of the ports given to kernels is a singleton made on first
        # use; made here, before kernels start in threads of their own, so they all share it
        from jupyter_client.connect import LocalPortCache

        LocalPortCache.instance()
        if fork and available():
            self.server = take_early() or ForkServer(self.folder, env=self.env)
        self._kernels: dict[str, WarmKernel] = {}
        #: Set once a stage's kernel is started (or failed to start), by stage.
        self._started: dict[str, threading.Event] = {}
        self._ahead: list[threading.Thread] = []
        self._why: dict[str, str] = {}  # stages whose kernel could not be started, and why
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> KernelPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, names: Sequence[str]) -> None:
        """Start the kernels of ``names`` not started yet (a failed start leaves a stage to
        start its own kernel)."""
        for name in names:
            with self._lock:
                if self._closed or name in self._started:
                    continue
                done = self._started[name] = threading.Event()  # started once at most
            try:
                kernel = WarmKernel(self.folder / f"{name}.ipynb", self.extra_arguments,
                                    self.server, self.env)
            except Exception as exc:  # noqa: BLE001 - the stage starts its own kernel instead
                self._why[name] = f"it could not be started: {exc!r}"
                done.set()
                continue
            with self._lock:
                if not self._closed:
                    self._kernels[name] = kernel
                    done.set()
                    continue
            done.set()
            kernel.shutdown()

    def start_soon(self, names: Sequence[str]) -> None:
        """Start the kernels of ``names`` not started yet in a thread of their own (as
        :meth:`start`), and return at once: the pipeline starts its first stage's kernel so
        as soon as it has made the pool, while it imports what runs a notebook."""
        with self._lock:
            if self._closed or set(names) <= set(self._started):
                return
            thread = threading.Thread(target=self.start, args=(list(names),), daemon=True,
                                      name=f"kernels-{names[0]}")
            self._ahead.append(thread)
            thread.start()

    def take(self, name: str) -> KernelManager | None:
        """The manager of the kernel started for ``name``, once its imports are done; the
        caller owns it from now on. None when no usable kernel could be started for it.

        Starts the kernel of ``name`` (if not started yet), then those of the ``ahead``
        stages after it in a thread of their own, so that the fork server imports their
        modules while the stage's kernel gets ready.
        """
        position = self.order.index(name) if name in self.order else len(self.order)
        self.start([name])
        with self._lock:
            done = self._started.get(name)
        if done is not None:  # started by this call, or being started by another thread
            done.wait()
        # after this stage's kernel, so that the fork server forks it first
        self.start_soon(self.order[position + 1:][:self.ahead])
        with self._lock:
            kernel = self._kernels.pop(name, None)
        if kernel is not None and kernel.wait():
            return kernel.km
        why = kernel.why if kernel is not None else self._why.get(name, "")
        if kernel is not None:
            kernel.shutdown()
        if why:  # not silent: the stage runs as usual, only later
            _log.warning("%s: the kernel started for it ahead of time cannot be used (%s); "
                         "papermill starts one instead (slower, the same results)", name, why)
        return None

    def close(self) -> None:
        """Shut down every kernel not taken."""
        with self._lock:
            self._closed = True
            threads = list(self._ahead)
        for thread in threads:  # a kernel being started is shut down by its thread
            thread.join()
        with self._lock:
            left = list(self._kernels.values())
            self._kernels.clear()
        for kernel in left:
            kernel.shutdown()
        if self.server is not None:
            self.server.close()


def execute_in(km: KernelManager | None, source: str, executed: str, **kwargs: Any) -> Any:
    """``papermill.execute_notebook(source, executed, **kwargs)``, in the kernel of ``km``.

    With ``km`` None papermill starts a kernel of its own, as usual. Otherwise the notebook
    runs in that (already started) kernel, which is shut down at the end exactly as papermill
    shuts down its own.
    """
    import papermill

    if km is None:
        return papermill.execute_notebook(source, executed, **kwargs)
    try:
        return papermill.execute_notebook(source, executed, engine_name=_engine(), km=km,
                                          **kwargs)
    finally:
        if km.has_kernel:  # papermill stopped before it ran the notebook in the kernel
            km.shutdown_kernel(now=True)


@functools.cache
def _engine() -> str:
    """Register (once) and name the papermill engine that runs a notebook in a given kernel."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    from nbclient.util import ensure_async, run_hook

    class StartedKernelClient(PapermillNotebookClient):
        """papermill's client; the kernel it was given is shut down at the end, as its own
        would be (nbclient leaves a kernel it did not start running)."""

        def execute(self, **kwargs: Any) -> Any:
            return super().execute(cleanup_kc=True, **kwargs)

        async def async_start_new_kernel_client(self) -> Any:
            # as nbclient 0.10's, with connected() for the kernel client's wait_for_ready
            assert self.km is not None
            try:
                self.kc = self.km.client()
                await ensure_async(self.kc.start_channels())
                await connected(self.kc, self.startup_timeout)
            except Exception:
                await self._async_cleanup_kernel()
                raise
            self.kc.allow_stdin = False
            await run_hook(self.on_notebook_start, notebook=self.nb)
            return self.kc

    class StartedKernelEngine(NBClientEngine):
        """papermill's nbclient engine with :class:`StartedKernelClient`."""

        @classmethod
        def execute_managed_notebook(cls, nb_man: Any, kernel_name: str,
                                     log_output: bool = False, stdout_file: Any = None,
                                     stderr_file: Any = None, start_timeout: int = 60,
                                     execution_timeout: float | None = None,
                                     **kwargs: Any) -> Any:
            # as NBClientEngine.execute_managed_notebook (papermill 2.x)
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name,
                log=logger(), log_output=log_output, stdout_file=stdout_file,
                stderr_file=stderr_file)
            return StartedKernelClient(nb_man, **final_kwargs).execute()

    name = "alliance-started-kernel"
    papermill_engines.register(name, StartedKernelEngine)
    return name


async def connected(kc: Any, timeout: float) -> None:
    """Wait until the kernel of the asynchronous client ``kc`` answers on its shell channel
    and its IOPub channel is connected, as jupyter_client's ``wait_for_ready`` does, without
    its last step: waiting until IOPub has been silent for 0.2 s (a fifth of a second at the
    start of every stage). The messages that step would drop belong to no cell, and nbclient
    reads only the messages of the cell it runs.

    Raises
    ------
    RuntimeError
        The kernel died, or did not answer within ``timeout`` seconds.
    """
    from queue import Empty

    deadline = time.monotonic() + timeout
    while True:
        kc.kernel_info()
        try:
            reply = await kc.shell_channel.get_msg(timeout=1)
        except Empty:
            pass
        else:
            if reply["msg_type"] == "kernel_info_reply":
                try:  # a message on IOPub shows that it is connected; else ask again
                    await kc.iopub_channel.get_msg(timeout=0.2)
                except Empty:
                    pass
                else:
                    kc._handle_kernel_info_reply(reply)
                    return
        if not await kc._async_is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


def logger() -> Any:
    """papermill's logger (its engines log to it)."""
    from papermill.log import logger as papermill_logger

    return papermill_logger
