"""Published reference results are reproduced; `alliance reproduce` fails when one is not."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis import pipeline, validation
from alliance_analysis.errors import AllianceRunError
from conftest import check_html_page

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "reference"


@pytest.mark.parametrize("table", [
    pytest.param(lambda: validation.sleepstudy(DATA), id="sleepstudy"),
    pytest.param(lambda: validation.bfi_alpha(DATA), id="bfi_alpha"),
    pytest.param(validation.jacobson_truax_example, id="jacobson_truax"),
    pytest.param(lambda: validation.holzinger_swineford(DATA), id="holzinger_swineford"),
    pytest.param(lambda: validation.political_democracy(DATA), id="political_democracy"),
])
def test_reference_reproduced(table) -> None:
    result = table()
    assert list(result.columns) == list(validation.COLUMNS)
    assert result["passed"].all(), result[~result["passed"]]


def test_compare_uses_printed_decimals_or_absolute_tolerance() -> None:
    table = validation.compare([("a", 0.814, 0.81449, 3), ("b", 1.0, 1.2, 0.1)])
    assert table["tolerance"].tolist() == [0.0005, 0.1]
    assert table["passed"].tolist() == [True, False]
    with pytest.raises(AllianceRunError, match="b: published 1, reproduced 1.2"):
        validation.require_all_passed(table, "demo")


@pytest.mark.slow
def test_reproduce_writes_index_and_fails_on_a_failed_comparison(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overview = pipeline.reproduce(tmp_path / "ok")
    assert set(overview["reference"]) == {"sleepstudy", "bfi_alpha", "jacobson_truax",
                                          "holzinger_swineford", "political_democracy"}
    assert (overview["failed"] == 0).all()
    page = (tmp_path / "ok" / "index.html").read_text()
    assert "Every published value was reproduced" in page
    check_html_page(tmp_path / "ok" / "index.html")
    for name in overview["reference"]:
        assert (tmp_path / "ok" / "notebooks" / f"{name}.html").is_file()

    only = [p for p in pipeline.validation_notebooks() if p.stem == "bfi_alpha"]
    monkeypatch.setattr(pipeline, "validation_notebooks", lambda: only)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the kernel imports the patched module
    (tmp_path / "sitecustomize.py").write_text(
        "import alliance_analysis.validation as v\n"
        "v.bfi_alpha = lambda d: v.compare([('raw alpha', 0.8140, 0.70, 4)])\n")
    with pytest.raises(AllianceRunError, match="not reproduced"):
        pipeline.reproduce(tmp_path / "bad")
    assert "NOT reproduced" in (tmp_path / "bad" / "index.html").read_text()
    assert pd.read_csv(tmp_path / "bad" / "tables" / "bfi_alpha.csv")["passed"].tolist() == [False]
