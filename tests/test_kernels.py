"""Kernels started ahead of their stage: the notebook runs in them as in a new kernel."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

from alliance_analysis.kernels import KernelPool, execute_in, notebook_modules
from alliance_analysis.pipeline import KERNEL_ARGUMENTS


def _notebook(path: Path, *sources: str) -> Path:
    notebook = new_notebook(cells=[new_code_cell(source) for source in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_notebook_modules_reads_every_import_and_skips_magics(tmp_path: Path) -> None:
    path = _notebook(tmp_path / "n.ipynb",
                     "%matplotlib inline\nimport json, os.path\nfrom decimal import Decimal",
                     "if True:\n    from fractions import (Fraction,\n        gcd)\nfrom . import x",
                     "!ls\nimport json")
    assert notebook_modules(path) == ["json", "os.path", "decimal", "fractions"]


def test_a_started_kernel_runs_the_notebook_as_a_new_kernel_would(tmp_path: Path) -> None:
    source = _notebook(tmp_path / "a.ipynb", "import json\nimport fractions",
                       "sorted(k for k in globals() if not k.startswith('_'))")
    fresh, warm = tmp_path / "fresh.ipynb", tmp_path / "warm.ipynb"
    arguments = dict(kernel_name="python3", progress_bar=False, cwd=str(tmp_path),
                     extra_arguments=KERNEL_ARGUMENTS)
    execute_in(None, str(source), str(fresh), **arguments)
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a"]) as pool:
        km = pool.take("a")
        assert km is not None and km.is_alive()
        execute_in(km, str(source), str(warm), **arguments)
        assert not km.has_kernel  # shut down at the end, as papermill's own
    cells = [json.loads(path.read_text())["cells"] for path in (fresh, warm)]
    # the same execution counts and outputs: the warm-up left no trace in the notebook
    assert [(c["execution_count"], c["outputs"]) for c in cells[0]] == \
        [(c["execution_count"], c["outputs"]) for c in cells[1]]
    assert cells[1][1]["execution_count"] == 2


def test_the_pool_shuts_down_kernels_not_taken(tmp_path: Path) -> None:
    _notebook(tmp_path / "a.ipynb", "import json")
    _notebook(tmp_path / "b.ipynb", "import json")
    with KernelPool(tmp_path, KERNEL_ARGUMENTS, ["a", "b"], ahead=1) as pool:
        km = pool.take("a")  # starts b's kernel too
        assert km is not None
        km.shutdown_kernel(now=True)
        waiting = pool._kernels["b"].km
        assert waiting.has_kernel
    assert not waiting.has_kernel
