"""Report formatting: APA numbers, p values and CIs; tables in four formats."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis.report import format_apa, format_p
from alliance_analysis.runfolder import RunFolder


@pytest.mark.parametrize("p, text", [(0.0004, "< .001"), (0.001, ".001"), (0.0345, ".035"),
                                     (0.5, ".500"), (1.0, "1.000"), (float("nan"), "")])
def test_format_p(p: float, text: str) -> None:
    assert format_p(p) == text


def test_format_apa_two_decimals_brackets_and_bounded_values() -> None:
    table = pd.DataFrame({"term": ["a"], "estimate": [-1.2345], "se": [0.1], "ci_low": [-1.43],
                          "ci_high": [-1.04], "p": [0.00001], "n": [12], "cfi": [0.931],
                          "sessions_percent": [22.25], "converged": [True]})
    row = format_apa(table).iloc[0].to_dict()
    assert row == {"term": "a", "estimate": "-1.23", "se": "0.10", "95% CI": "[-1.43, -1.04]",
                   "p": "< .001", "n": "12", "cfi": ".93", "sessions_percent": "22.2",
                   "converged": "yes"}


def test_write_table_writes_csv_and_apa_formats(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    table = pd.DataFrame({"term": ["x_1"], "estimate": [0.123456], "p": [0.2]})
    csv = run.write_table("model", table, caption="Table 1", note="A note & more.")
    assert pd.read_csv(csv)["estimate"][0] == 0.123456  # full precision kept
    md = (tmp_path / "tables" / "model.md").read_text()
    assert "**Table 1**" in md and "0.12" in md and "*Note.* A note & more." in md
    tex = (tmp_path / "tables" / "model.tex").read_text()
    assert r"\caption{Table 1}" in tex and r"x\_1" in tex and r"A note \& more." in tex
    html = (tmp_path / "tables" / "model.html").read_text()
    assert "<figcaption>Table 1</figcaption>" in html and "A note &amp; more." in html


def test_results_json_is_sorted_and_plain(tmp_path: Path) -> None:
    import numpy as np

    run = RunFolder(tmp_path)
    run.record({"b.x": np.float64(1.5), "a.y": np.int64(2), "c.z": float("nan")})
    assert run.results_file.read_text() == '{\n  "a.y": 2,\n  "b.x": 1.5,\n  "c.z": null\n}\n'
