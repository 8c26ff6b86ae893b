"""Kernels forked from the fork server: a notebook runs in one as in a new kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import notebook_file, run_new_and_pooled

from alliance_analysis.kernels import KernelPool
from alliance_analysis.kernels.forking import (ForkedKernel, ForkServer, available, forkable,
                                                use_fork_server)
from alliance_analysis.pipeline import KERNEL_ARGUMENTS

pytestmark = pytest.mark.skipif(not available(), reason="kernels are forked on Linux only")

#: What a kernel's process looks like from inside; the same in a forked and a new kernel.
PROBE = """\
import json, os, signal, subprocess, sys
import matplotlib
print(json.dumps({
    "cwd": os.getcwd(),
    "argv0": os.path.basename(sys.argv[0]),
    "path0": sys.path[0],
    "mplbackend": os.environ.get("MPLBACKEND"),
    "backend": matplotlib.get_backend(),
    "own_session": os.getsid(0) == os.getpid(),
    "sigchld_default": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,
    "subprocess": subprocess.run([sys.executable, "-c", "pass"]).returncode,
    "path": [p for p in sys.path if "site-packages" not in p],
    "main": sys.modules["__main__"].__name__,
}, sort_keys=True))
"""


def test_a_forked_kernel_runs_the_notebook_as_a_new_kernel_would(tmp_path: Path) -> None:
    source = notebook_file(tmp_path / "a.ipynb", "import json\nimport fractions", PROBE,
                           "sorted(k for k in globals() if not k.startswith('_'))",
                           "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                           "plt.plot([1, 2]); plt.show()")
    kernels: list[int] = []

    def forked(km) -> None:
        assert isinstance(km.provisioner.process, ForkedKernel)  # forked, not started
        kernels.append(km.provisioner.process.pid)

    new, pooled = run_new_and_pooled(source, fork=True, check=forked)
    assert ForkedKernel(kernels[0]).poll() == 0  # the kernel is gone
    # the same execution counts and outputs, the same process environment and figure
    assert new == pooled
    probe = json.loads("".join(pooled[1][1][0]["text"]))
    assert probe["cwd"] == str(tmp_path) and probe["own_session"] and probe["subprocess"] == 0
    assert probe["sigchld_default"] and probe["argv0"] == "ipykernel_launcher.py"


def test_a_printing_import_leaves_kernels_started_as_usual(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """An import that prints would print in the notebook of a new kernel, not in a forked
    one: the server refuses that fork and every later one, and the kernel is started."""
    from jupyter_client.manager import KernelManager

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "noisy_module.py").write_text("print('hello from an import')\n")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    server = ForkServer(tmp_path)
    try:
        assert server.usable  # what every kernel imports is quiet
        km = KernelManager(kernel_name="python3")
        use_fork_server(km, server, ["json", "noisy_module"])
        km.start_kernel(extra_arguments=KERNEL_ARGUMENTS)
        try:
            assert isinstance(km.provisioner.process, subprocess.Popen)
            assert km.is_alive()
        finally:
            km.shutdown_kernel(now=True)
        command = [sys.executable, "-m", "ipykernel_launcher", "-f", "unused.json"]
        with pytest.raises(RuntimeError, match="an import printed: hello from an import"):
            server.fork(command, dict(os.environ), str(tmp_path), ["json"])
    finally:
        server.close()
    assert server.process.returncode == 0


def test_forkable_commands() -> None:
    assert forkable([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"])
    assert not forkable(["/bin/sh", "-m", "ipykernel_launcher"])
    assert not forkable([sys.executable, "-m", "other_kernel"])
    assert not forkable([])


def test_kernels_end_when_the_run_process_dies(tmp_path: Path) -> None:
    """A run killed mid-way leaves no forked kernel behind."""
    script = textwrap.dedent(f"""
        import os, sys
        from jupyter_client.manager import KernelManager
        from alliance_analysis.kernels.forking import ForkServer, use_fork_server
        server = ForkServer({str(tmp_path)!r})
        km = KernelManager(kernel_name="python3")
        use_fork_server(km, server)
        km.start_kernel(extra_arguments={KERNEL_ARGUMENTS!r})
        print(km.provisioner.process.pid, server.process.pid, flush=True)
        os._exit(0)  # dies without shutting anything down
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    kernel, server = (ForkedKernel(int(pid)) for pid in out.split())
    deadline = time.monotonic() + 30
    while (kernel.poll() is None or server.poll() is None) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert kernel.poll() == 0 and server.poll() == 0


def test_a_server_started_early_is_taken_by_the_next_pool(tmp_path: Path) -> None:
    """``alliance run`` starts the server first thing (importing the first stage's modules);
    the run's kernel pool takes it; one no pool took is stopped by ``close_early``."""
    from alliance_analysis.kernels import forking

    forking.start_early(tmp_path, ["fractions"])
    early = forking._early
    assert early is not None and early.usable
    notebook_file(tmp_path / "a.ipynb", "import fractions")
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"]) as pool:
        assert pool.server is early and forking.take_early() is None
        km = pool.take("a")
        assert km is not None and isinstance(km.provisioner.process, ForkedKernel)
        km.shutdown_kernel(now=True)
    assert early.process.returncode == 0  # closed with the pool
    forking.start_early(tmp_path)
    untaken = forking._early
    forking.close_early()
    assert untaken.process.returncode == 0 and forking.take_early() is None


def test_a_server_that_does_not_answer_is_not_used(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An import that hangs does not hang the run: after the timeout the kernel is started
    as usual."""
    from alliance_analysis.kernels import forking

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "slow_module.py").write_text("import time\ntime.sleep(30)\n")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    monkeypatch.setattr(forking, "READY_TIMEOUT", 0.5)
    server = ForkServer(tmp_path, ["slow_module"])
    try:
        started = time.monotonic()
        assert not server.usable
        assert time.monotonic() - started < 10
        with pytest.raises(RuntimeError, match="did not answer"):
            server.fork([sys.executable, "-m", "ipykernel_launcher"], dict(os.environ),
                        str(tmp_path))
    finally:
        server.process.kill()
        server.close()


def test_where_kernels_are_not_forked_they_are_started(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows and macOS (``available()`` False): no server, each kernel started as usual."""
    from alliance_analysis.kernels import forking, pool

    for module in (forking, pool):
        monkeypatch.setattr(module, "available", lambda: False)
    forking.start_early(tmp_path)
    assert forking.take_early() is None
    notebook_file(tmp_path / "a.ipynb", "import json")
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"]) as pool:
        assert pool.server is None
        km = pool.take("a")
        assert km is not None and isinstance(km.provisioner.process, subprocess.Popen)
        km.shutdown_kernel(now=True)


def test_the_server_starts_and_ends_without_a_word(tmp_path: Path) -> None:
    """The fork server prints nothing on the run's terminal (no runpy warning about its
    module) and exits when the run closes it."""
    code = ("from alliance_analysis.kernels.forking import ForkServer\n"
            "server = ForkServer('.')\nassert server.usable\nserver.close()\n"
            "assert server.process.returncode == 0, server.process.returncode\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_the_server_preloads_only_what_a_starting_kernel_imports(tmp_path: Path) -> None:
    """Every module of KERNEL_START_MODULES exists here and is one a kernel imports while it
    starts anyway (so importing it in the server changes nothing a kernel does)."""
    from alliance_analysis.kernels.forking import KERNEL_START_MODULES

    code = textwrap.dedent(f"""
        import json, os, sys
        from ipykernel.kernelapp import IPKernelApp
        app = IPKernelApp.instance()
        app.initialize(["-f", {str(tmp_path / "kernel.json")!r},
                        "--HistoryManager.hist_file=:memory:"])
        modules = {list(KERNEL_START_MODULES)!r}
        sys.__stdout__.write(json.dumps([m for m in modules if m not in sys.modules]))
        sys.__stdout__.flush()
        os._exit(0)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, timeout=180)
    assert json.loads(result.stdout.splitlines()[-1]) == [], result.stderr


#: The BLAS pools' thread counts, as a cell prints them.
BLAS_PROBE = ("import threadpoolctl\n"
              "print(sorted({p['num_threads'] for p in threadpoolctl.threadpool_info()"
              " if p['user_api'] == 'blas'}))")


def _blas_threads_started(env: dict[str, str]) -> list[int]:
    """The BLAS thread counts of a new Python process with ``env`` added (as in a kernel
    started with it)."""
    code = f"import numpy\n{BLAS_PROBE}"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize(("server", "kernel"), [(None, 1), (1, 1), (1, None)])
def test_a_forked_kernel_has_the_blas_threads_its_environment_sets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: int | None,
        kernel: int | None) -> None:
    """The server loaded numpy (and its BLAS) with its own environment (``server`` threads); a
    kernel forked with ``kernel`` threads has the pools a kernel started with them has:
    inherited when the two agree, set with threadpoolctl in the child when they do not."""
    from alliance_analysis.kernels import forking
    from alliance_analysis.kernels.forking import BLAS_THREAD_VARIABLES
    from alliance_analysis.pipeline import execute_in

    for variable in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    server_env, env = ({} if n is None else {v: str(n) for v in BLAS_THREAD_VARIABLES}
                       for n in (server, kernel))
    source = notebook_file(tmp_path / "a.ipynb", "import numpy", BLAS_PROBE)
    executed = tmp_path / "executed.ipynb"
    forking.start_early(tmp_path, ["numpy"], server_env)
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"], env=env) as pool:
        km = pool.take("a")
        assert km is not None and isinstance(km.provisioner.process, ForkedKernel)
        execute_in(km, str(source), str(executed), kernel_name="python3", progress_bar=False,
                   cwd=str(tmp_path), extra_arguments=KERNEL_ARGUMENTS)
    shown = json.loads("".join(json.loads(executed.read_text())["cells"][1]["outputs"][0]
                               ["text"]))
    assert shown == _blas_threads_started(env)
    if kernel is not None:
        assert shown == [kernel]


def test_stages_side_by_side_share_the_cores_among_their_blas_pools(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from alliance_analysis.kernels import blas_environment
    from alliance_analysis.kernels.forking import BLAS_THREAD_VARIABLES
    from alliance_analysis.stages import NOTEBOOKS, side_by_side

    for variable in BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    assert blas_environment(1, usable=2) == {}  # one stage at a time: the default pools
    assert blas_environment(2, usable=2) == {v: "1" for v in BLAS_THREAD_VARIABLES}
    assert blas_environment(2, usable=8) == {v: "4" for v in BLAS_THREAD_VARIABLES}
    assert blas_environment(3, usable=2) == {v: "1" for v in BLAS_THREAD_VARIABLES}
    for variable, value in (("OMP_NUM_THREADS", "3"), ("GOTO_NUM_THREADS", "2"),
                            ("OMP_NUM_THREADS", "4,1"), ("MKL_NUM_THREADS", "1")):
        monkeypatch.setenv(variable, value)  # any count the user set is left alone
        assert blas_environment(2, usable=2) == {}
        monkeypatch.delenv(variable)
    # stages at a time: no more than run after 01_clean, 1 when they run one by one
    assert side_by_side(NOTEBOOKS, 2) == 2 and side_by_side(NOTEBOOKS, 9) == 5
    assert side_by_side(NOTEBOOKS, 1) == 1 and side_by_side(NOTEBOOKS[:2], 2) == 1
    assert side_by_side(["02_describe", "03_multilevel"], 2) == 2


def test_each_library_reads_its_own_thread_count() -> None:
    """OpenBLAS reads OPENBLAS_, then GOTO_, then OMP_NUM_THREADS; MKL its own, then OpenMP's;
    OpenMP its own; a list counts its first number, anything else is unset."""
    from alliance_analysis.kernels.forking import library_threads

    assert library_threads({}) == {"openblas": None, "mkl": None, "openmp": None}
    assert library_threads({"OMP_NUM_THREADS": "4,1"}) == {"openblas": 4, "mkl": 4, "openmp": 4}
    assert library_threads({"GOTO_NUM_THREADS": "2", "OMP_NUM_THREADS": "3",
                            "MKL_NUM_THREADS": "x"}) == {"openblas": 2, "mkl": 3, "openmp": 3}
    assert library_threads({"OPENBLAS_NUM_THREADS": "\u00b2", "MKL_NUM_THREADS": "0"}) == {
        "openblas": None, "mkl": None, "openmp": None}


def test_a_forked_kernel_collects_garbage_and_skips_the_servers_objects(
        tmp_path: Path) -> None:
    """The server imports with collection off and freezes its objects before each fork (as
    the gc module's documentation advises for fork without exec): the kernel collects its own
    garbage, and its collections skip what it shares with the server."""
    from alliance_analysis.kernels import forking
    from alliance_analysis.pipeline import execute_in

    probe = ("import gc, json\nprint(json.dumps([gc.isenabled(), gc.get_freeze_count(), "
             "gc.collect() >= 0]))")
    source = notebook_file(tmp_path / "a.ipynb", "import numpy", probe)
    executed = tmp_path / "executed.ipynb"
    forking.start_early(tmp_path, ["numpy"])
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"]) as pool:
        km = pool.take("a")
        assert km is not None and isinstance(km.provisioner.process, ForkedKernel)
        execute_in(km, str(source), str(executed), kernel_name="python3", progress_bar=False,
                   cwd=str(tmp_path), extra_arguments=KERNEL_ARGUMENTS)
    enabled, frozen, collected = json.loads("".join(
        json.loads(executed.read_text())["cells"][1]["outputs"][0]["text"]))
    assert enabled and collected
    assert frozen > 50_000  # IPython, ipykernel and numpy (about 90,000), imported by the server
