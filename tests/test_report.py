"""Report formatting: APA numbers, p values and CIs; tables in four formats."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis.report.tables import format_apa, format_p
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.results import ModelResult


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
    assert "<caption><em>Table 1</em></caption>" in html and "A note &amp; more." in html


def test_format_apa_keeps_small_numbers_readable_and_counts_whole() -> None:
    """APA 7: SEs to at least two significant digits, a column of small estimates not
    printed as 0.00 (nor its CI as [0.02, 0.02]), counts as integers, CIs of bounded
    quantities without the leading zero."""
    table = pd.DataFrame({"term": ["a", "b"], "estimate": [0.0041, 0.0123],
                          "se": [0.0023, 0.00011], "ci_low": [0.0002, 0.0121],
                          "ci_high": [0.008, 0.0125], "n_obs": [177.0, 30.0],
                          "df": [12.34, 4.0]})
    shown = format_apa(table)
    assert shown["estimate"].tolist() == ["0.004", "0.012"]
    assert shown["se"].tolist() == ["0.00230", "0.00011"]
    assert shown["95% CI"].tolist() == ["[0.000, 0.008]", "[0.012, 0.013]"]
    assert shown["n_obs"].tolist() == ["177", "30"]  # a count, not 177.00
    assert shown["df"].tolist() == ["12.34", "4.00"]  # Satterthwaite df are not counts
    icc = format_apa(pd.DataFrame({"level": ["therapist"], "icc": [0.0306],
                                   "variance": [0.0104], "ci_low": [0.0072],
                                   "ci_high": [0.12]}))
    assert icc.iloc[0].to_dict() == {"level": "therapist", "icc": ".031",
                                     "variance": "0.010", "95% CI": "[.007, .120]"}


def test_latex_tables_state_booktabs_and_print_less_than_in_maths(tmp_path: Path) -> None:
    from alliance_analysis.report.tables import write_apa_table

    table = pd.DataFrame({"term": ["x"], "estimate": [1.5], "p": [0.0001]})
    write_apa_table(tmp_path, "t", table, caption="Fit, 95% CI", note="p < .05 & more")
    tex = (tmp_path / "t.tex").read_text()
    assert tex.startswith("% needs \\usepackage{booktabs}") and "\\toprule" in tex
    assert "$<$ .001" in tex and "<" not in tex.replace("$<$", "")
    assert "\\caption{Fit, 95\\% CI}" in tex and "p $<$ .05 \\& more" in tex


def test_every_table_and_figure_needs_a_caption(tmp_path: Path) -> None:
    import matplotlib.figure

    run = RunFolder(tmp_path)
    with pytest.raises(ValueError, match="table t: every table .* needs a caption"):
        run.write_table("t", pd.DataFrame({"a": [1]}))
    with pytest.raises(ValueError, match="figure f: every figure needs a caption"):
        run.write_figure("f", matplotlib.figure.Figure(), caption=" ")
    assert not (tmp_path / "tables").exists()  # nothing half-written


def test_results_json_is_sorted_and_plain(tmp_path: Path) -> None:
    import numpy as np

    run = RunFolder(tmp_path)
    run.record({"b.x": np.float64(1.5), "a.y": np.int64(2), "c.z": float("nan")})
    assert run.results_file.read_text() == '{\n  "a.y": 2,\n  "b.x": 1.5,\n  "c.z": null\n}\n'


def _model(name: str, converged: bool, singular: bool, warnings: list[str]) -> ModelResult:
    params = pd.DataFrame({"term": ["x"], "estimate": [1.0], "se": [0.1], "ci_low": [0.8],
                           "ci_high": [1.2], "p": [0.01]})
    return ModelResult(name, params, {"converged": converged, "singular": singular,
                                      "warnings": warnings}, "y ~ x")


def test_run_folder_indexes_every_output_with_stage_and_flags(tmp_path: Path) -> None:
    import matplotlib.figure

    run = RunFolder(tmp_path, stage="03_multilevel")
    fine = _model("fine", True, False, ["lbfgs: converged after 12 iterations"])
    odd = _model("odd", False, True, ["NOT CONVERGED: gradient 0.3"])
    run.write_table("multilevel_fit", pd.concat([fine.fit_table(), odd.fit_table()]),
                    caption="Fits", flags=[fine.flags(), odd.flags()])
    run.write_table("ledger", pd.DataFrame({"a": [1]}), formatted=False, caption="Rows")
    run.write_figure("picture", matplotlib.figure.Figure(), caption="A picture")
    index = RunFolder(tmp_path).outputs()
    assert index["tables"]["multilevel_fit"]["stage"] == "03_multilevel"
    assert index["tables"]["multilevel_fit"]["files"] == [
        "tables/multilevel_fit.csv", "tables/multilevel_fit.html", "tables/multilevel_fit.md",
        "tables/multilevel_fit.tex"]
    assert index["tables"]["ledger"]["files"] == ["tables/ledger.csv"]
    assert index["figures"]["picture"] == {
        "stage": "03_multilevel", "title": "A picture", "note": "", "flags": [],
        "files": ["figures/picture.png", "figures/picture.svg"]}
    flags = {f["model"]: f for f in index["tables"]["multilevel_fit"]["flags"]}
    assert flags["fine"] == {"model": "fine", "converged": True, "singular": False,
                             "warnings": []}  # optimizer notes stay in the fit table
    assert flags["odd"]["converged"] is False and flags["odd"]["singular"] is True


def test_page_warnings_come_from_the_index_not_from_table_text(tmp_path: Path) -> None:
    from alliance_analysis.report.page import run_warnings

    run = RunFolder(tmp_path, stage="03_multilevel")
    odd = _model("odd", False, True, ["boundary: therapist variance 0"])
    run.write_table("multilevel_odd", odd.to_table(), flags=[odd.flags()], caption="Odd")
    run.write_table("multilevel_fit", odd.fit_table(), flags=[odd.flags()], caption="Fit")
    # a table whose text looks alarming but that carries no flags is not a model's warning
    run.write_table("notes", pd.DataFrame({"warnings": ["NOT CONVERGED"], "converged": [False]}),
                    caption="Notes")
    lines = run_warnings(tmp_path, {"status": "complete"})
    assert lines == ["odd: did NOT converge; singular fit (a variance at zero or a correlation "
                     "at +/-1); boundary: therapist variance 0 (in tables/multilevel_fit, "
                     "tables/multilevel_odd)"]


def test_stages_writing_at_the_same_time_lose_nothing(tmp_path) -> None:
    """results.json and outputs.json are read, changed and written under the run folder's
    lock, so stages running side by side keep each other's entries."""
    from concurrent.futures import ThreadPoolExecutor

    from alliance_analysis.report.runfolder import LOCK

    def stage(k: int) -> None:
        run = RunFolder(tmp_path, stage=f"stage{k}")
        for i in range(40):
            run.record({f"s{k}.n{i}": i})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(stage, range(4)))
    assert len(RunFolder(tmp_path).results()) == 160
    assert not (tmp_path / LOCK).exists()


def test_latex_tables_are_pandas_to_latex_line_for_line() -> None:
    """The LaTeX of a table of text cells is written directly; it is pandas' ``to_latex``."""
    from alliance_analysis.report.tables import _to_latex

    frames = [pd.DataFrame({"term": ["(Intercept)", "wai\\_within", ""], "95\\% CI": [
                  "[-0.11, 3.86]", "$<$ .001", "é ü"], "n": ["3", "12", "0"]}),
              pd.DataFrame({"only": ["a & b", "line\nbreak"]})]
    for frame in frames:
        for caption in ("A caption", None):
            assert _to_latex(frame, caption, "tab:x") == frame.to_latex(
                index=False, caption=caption, label="tab:x", escape=False)
    empty = pd.DataFrame({"a": pd.Series([], dtype=float)})
    assert _to_latex(empty, "C", "tab:e") == empty.to_latex(index=False, caption="C",
                                                            label="tab:e", escape=False)
