"""Notebooks: parameters match params.py, defaults run the demo, committed without outputs."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import papermill
import pytest

from alliance_analysis.params import NOTEBOOK_DEFAULTS
from alliance_analysis.pipeline import NOTEBOOKS

ROOT = Path(__file__).resolve().parents[1]
ALL_NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))


def test_pipeline_notebooks_exist() -> None:
    assert [p.stem for p in sorted((ROOT / "notebooks").glob("0*.ipynb"))] == list(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_cell_matches_params(name: str) -> None:
    inspected = papermill.inspect_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"))
    defaults = {key: ast.literal_eval(info["default"]) for key, info in inspected.items()}
    assert defaults == NOTEBOOK_DEFAULTS
    for value in defaults.values():  # the defaults point at the demo, relative to notebooks/
        assert (ROOT / "notebooks" / value).resolve().is_relative_to(ROOT)


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_holds_plain_values_only(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    for node in ast.parse(cells[0].source).body:  # literals only: numbers, text, lists, None
        assert isinstance(node, ast.Assign), ast.dump(node)
        ast.literal_eval(node.value)
