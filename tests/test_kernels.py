"""Kernels started ahead of their stage: the notebook runs in them as in a new kernel."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import notebook_file, run_new_and_pooled

from alliance_analysis.kernels import KernelPool, notebook_modules
from alliance_analysis.pipeline import KERNEL_ARGUMENTS


def test_notebook_modules_reads_every_import_and_skips_magics(tmp_path: Path) -> None:
    path = notebook_file(tmp_path / "n.ipynb",
                     "%matplotlib inline\nimport json, os.path\nfrom decimal import Decimal",
                     "if True:\n    from fractions import (Fraction,\n        gcd)\nfrom . import x",
                     "!ls\nimport json")
    assert notebook_modules(path) == ["json", "os.path", "decimal", "fractions"]


def test_a_started_kernel_runs_the_notebook_as_a_new_kernel_would(tmp_path: Path) -> None:
    """The kernel started ahead (as papermill starts one, its imports in a silent cell: the
    route where kernels are not forked) runs the notebook as a new kernel would."""
    source = notebook_file(tmp_path / "a.ipynb", "import json\nimport fractions",
                           "sorted(k for k in globals() if not k.startswith('_'))")
    new, started = run_new_and_pooled(source, fork=False)
    # the same execution counts and outputs: the warm-up left no trace in the notebook
    assert new == started
    assert started[1][0] == 2


def test_the_pool_shuts_down_kernels_not_taken(tmp_path: Path) -> None:
    notebook_file(tmp_path / "a.ipynb", "import json")
    notebook_file(tmp_path / "b.ipynb", "import json")
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a", "b"], ahead=1) as pool:
        km = pool.take("a")  # starts b's kernel too, in a thread of its own
        assert km is not None
        km.shutdown_kernel(now=True)
        for thread in pool._ahead:
            thread.join()
        waiting = pool._kernels["b"].km
        assert waiting.has_kernel
    assert not waiting.has_kernel


def test_a_kernel_being_started_ahead_is_waited_for(tmp_path: Path, monkeypatch) -> None:
    """A stage asking for its kernel while the kernel is still being started ahead (in the
    thread of the stage before) gets that kernel, not none."""
    from alliance_analysis.kernels import pool as pool_module

    notebook_file(tmp_path / "a.ipynb", "import json")
    notebook_file(tmp_path / "b.ipynb", "import json")
    real = pool_module.WarmKernel.__init__
    started = threading.Event()

    def slow(self, notebook: Path, *args, **kwargs) -> None:
        if notebook.stem == "b":
            started.set()
            time.sleep(1.0)
        real(self, notebook, *args, **kwargs)

    monkeypatch.setattr(pool_module.WarmKernel, "__init__", slow)
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a", "b"], ahead=1) as pool:
        first = pool.take("a")
        assert started.wait(10)
        second = pool.take("b")  # b is being started: wait for it
        assert first is not None and second is not None
        for km in (first, second):
            km.shutdown_kernel(now=True)


def test_a_kernel_started_soon_is_the_one_taken(tmp_path: Path, monkeypatch) -> None:
    """start_soon returns at once; the stage's later take gets the kernel it started (not a
    second one), and a stage asked for twice is started once."""
    from alliance_analysis.kernels import pool as pool_module

    notebook_file(tmp_path / "a.ipynb", "import json")
    real, made = pool_module.WarmKernel.__init__, []

    def counted(self, *args, **kwargs) -> None:
        made.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(pool_module.WarmKernel, "__init__", counted)
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"], ahead=1) as pool:
        pool.start_soon(["a"])
        pool.start_soon(["a"])
        km = pool.take("a")
        assert km is not None and km.has_kernel and not pool._kernels
        km.shutdown_kernel(now=True)
    assert len(made) == 1


def test_a_kernel_that_dies_while_starting_is_given_up_at_once() -> None:
    """A forked kernel that never answers because its process is gone (a port taken by
    another process first, say) is given up within a poll, not after START_TIMEOUT."""
    from queue import Empty

    from alliance_analysis.kernels import pool as pool_module

    class Deaf:
        def kernel_info(self) -> None:
            pass

        def get_shell_msg(self, timeout: float) -> dict:
            time.sleep(timeout)
            raise Empty

    class Gone:
        def is_alive(self) -> bool:
            return False

    kernel = object.__new__(pool_module.WarmKernel)
    kernel.km = Gone()
    start = time.monotonic()
    assert kernel._answers(Deaf()) is False
    assert time.monotonic() - start < 2 * pool_module.POLL + 0.5 < pool_module.START_TIMEOUT


def test_a_kernel_started_soon_and_never_taken_is_shut_down(tmp_path: Path) -> None:
    """Closing the pool waits for a kernel start_soon is starting and shuts it down; after
    closing, start_soon starts nothing."""
    notebook_file(tmp_path / "a.ipynb", "import json")
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"], ahead=1) as pool:
        pool.start_soon(["a"])
        thread = pool._ahead[0]
    assert not thread.is_alive() and not pool._kernels
    pool.start_soon(["b"])
    assert len(pool._ahead) == 1


def test_a_kernel_that_cannot_be_used_is_said(tmp_path: Path, monkeypatch, caplog) -> None:
    """A kernel started ahead that cannot be used (here: a notebook's import prints, which a
    new kernel would print into the notebook) is not used, and the run says so."""
    import logging

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "noisy_module.py").write_text("print('hello from an import')\n")
    monkeypatch.setenv("PYTHONPATH", str(modules))
    notebook_file(tmp_path / "a.ipynb", "import noisy_module")
    with caplog.at_level(logging.WARNING, logger="alliance_analysis.kernels.pool"):
        with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"], fork=False) as pool:
            assert pool.take("a") is None
    assert ("a: the kernel started for it ahead of time cannot be used (importing the "
            "notebook's modules failed or printed something)") in caplog.text
