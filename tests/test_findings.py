"""Key findings and the numbered, captioned page, on a run folder built by hand."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from alliance_analysis.report.findings import key_findings
from alliance_analysis.report.page import write_index
from alliance_analysis.report.runfolder import RunFolder
from conftest import check_html_page

PARAMETERS = {"alliance": "wai", "symptoms": "phq9", "models": {"within_between": {}},
              "multilevel": {"time": "session"}}


def _run(tmp_path: Path, within_high: float = -1.32) -> Path:
    run = RunFolder(tmp_path, stage="03_multilevel")
    prefix = "models.within_between"
    run.record({f"{prefix}.wai_within_lag1.{k}": v for k, v in
                {"estimate": -1.58, "ci_low": -1.85, "ci_high": within_high, "p": 1e-30}.items()})
    run.record({f"{prefix}.wai_between.{k}": v for k, v in
                {"estimate": -3.76, "ci_low": -4.5, "ci_high": -3.02, "p": 1e-21}.items()})
    run.write_table("model_within_between_fixed", pd.DataFrame(
        {"term": ["wai_within_lag1", "wai_between"], "estimate": [-1.58, -3.76],
         "se": [0.136, 0.375], "ci_low": [-1.85, -4.5], "ci_high": [within_high, -3.02],
         "p": [1e-30, 1e-21],
         "warnings": ["", "a long warning that would otherwise make the row hundreds of "
                          "pixels high in the page"]}),
        caption="Fixed effects of the within/between model", note="Satterthwaite df.")
    return tmp_path


def test_findings_answer_with_estimate_ci_and_link(tmp_path: Path) -> None:
    findings = key_findings(_run(tmp_path), PARAMETERS)
    assert [f.table for f in findings] == ["model_within_between_fixed"] * 2
    within = findings[0].answer
    assert "1.58 points lower" in within and "95% CI [-1.85, -1.32]" in within
    assert "p < .001" in within and "no clear" not in within
    # a run that fitted nothing answers nothing, rather than inventing numbers
    assert key_findings(tmp_path / "empty", PARAMETERS) == []


def test_an_interval_including_zero_is_said_plainly(tmp_path: Path) -> None:
    findings = key_findings(_run(tmp_path, within_high=0.21), PARAMETERS)
    assert "The interval includes 0: no clear within-client effect." in findings[0].answer


def test_page_opens_with_findings_then_numbered_tables(tmp_path: Path) -> None:
    run_dir = _run(tmp_path)
    for name in ("methods.md", "manifest.json", "params.yaml"):
        (run_dir / name).write_text("{}\n", encoding="utf-8")
    manifest = {"run": "t", "status": "complete", "parameters": PARAMETERS}
    page = write_index(run_dir, manifest,
                       methods="First.\n\nSecond.\n\nReferences\nA, B. (2000). Title.")
    text = page.read_text(encoding="utf-8")
    check_html_page(page)
    assert text.index('id="key-findings"') < text.index('id="warnings"') < \
        text.index("Run summary")
    # the finding links to the table's anchor, labelled with its number
    assert "<a href=\"#table-model_within_between_fixed\">(Table 1)</a>" in text
    table = re.search(r"<table class='apa' id='table-model_within_between_fixed'>.*?</table>"
                      r"<p class='note'>(.*?)</p>", text)
    assert table and "<caption><strong>Table 1. </strong><em>Fixed effects" in table.group(0)
    # long text left the table for its note
    assert "warnings" not in table.group(0).split("</table>")[0]
    assert "warnings (wai_between): a long warning" in table.group(1)
    assert "<p>First.</p><p>Second.</p>" in text and "<li>A, B. (2000). Title.</li>" in text


def test_reading_flags_name_exclusions_and_flagged_models(tmp_path: Path) -> None:
    from alliance_analysis.report.findings import reading_flags

    run = RunFolder(tmp_path, stage="03_multilevel")
    run.record({"clean.rows_input": 4101, "clean.rows_excluded": 2})
    flag = {"model": "growth", "converged": True, "singular": True, "warnings": ["SINGULAR"]}
    run.write_table("t", pd.DataFrame({"a": [1]}), caption="T", flags=[flag])
    run.write_table("u", pd.DataFrame({"a": [1]}), caption="U", flags=[
        {"model": "slopes", "converged": False, "singular": False, "warnings": []}])
    assert reading_flags(tmp_path) == ["2 of 4,101 input rows excluded by cleaning",
                                       "1 model did not converge (slopes)",
                                       "1 model singular fit (growth)"]


def test_intervals_are_labelled_by_their_level(tmp_path: Path) -> None:
    """A run with multilevel.ci_level 0.9 says "90% CI" in its findings and tables, never
    the 95% a reader would otherwise assume."""
    run = RunFolder(tmp_path, stage="03_multilevel", ci_level=0.9)
    run.write_table("m", pd.DataFrame({"term": ["x"], "estimate": [1.0], "ci_low": [0.5],
                                       "ci_high": [1.5]}), caption="M")
    assert "90% CI" in (tmp_path / "tables" / "m.md").read_text(encoding="utf-8")
    _run(tmp_path / "f")
    findings = key_findings(tmp_path / "f", {**PARAMETERS, "multilevel": {"ci_level": 0.9}})
    assert "b = -1.58, 90% CI [-1.85, -1.32]" in findings[0].answer
