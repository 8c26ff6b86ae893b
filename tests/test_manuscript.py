"""``manuscript.docx``: Method, Results, numbered APA tables and figures, references; same bytes."""

from __future__ import annotations

from pathlib import Path

import docx
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from alliance_analysis.params import load_params
from alliance_analysis.report.manuscript import write_manuscript
from alliance_analysis.report.runfolder import RunFolder

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = {"packages": {"python": "3.11.7", "alliance-analysis": "0.1.0",
                         "statsmodels": "0.15.0", "semopy": "2.3.11", "pandas": "3.1.1"},
            "started": "2026-12-01T22:44:17+00:00"}
FLAG = {"model": "growth", "converged": True, "singular": False, "warnings": []}


def _figure() -> Figure:
    figure = Figure(figsize=(3, 2))
    figure.add_subplot().plot([1, 2, 3], [3, 1, 2])
    return figure


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small run folder written by hand as the stages write it (no notebooks run)."""
    folder = tmp_path_factory.mktemp("run")
    clean, describe = RunFolder(folder, "01_clean"), RunFolder(folder, "02_describe")
    clean.write_table("cleaning_summary", pd.DataFrame(
        {"rule": ["duplicate_identical"], "rows_excluded": [2], "rows_flagged": [0],
         "cells_changed": [0], "scores": [0]}), caption="Rows excluded by cleaning")
    clean.record({"clean.rows_input": 1202, "clean.rows_excluded": 2, "clean.rows_kept": 1200,
                  "clean.clients": 120, "clean.therapists": 12})
    describe.write_table("describe_sample", pd.DataFrame(
        {"quantity": ["therapists", "clients", "sessions per client, median (range)"],
         "value": ["12", "120", "10 (4-20)"]}), caption="Sample")
    describe.write_table("reliability", pd.DataFrame(
        {"instrument": ["wai", "phq9"], "scale": ["total", "total"],
         "occasion": ["baseline", "baseline"], "n": [118, 119], "k": [12, 9],
         "alpha": [0.917, 0.846], "ci_low": [0.89, 0.80], "ci_high": [0.94, 0.88],
         "omega_total": [0.918, 0.85], "note": ["", ""]}),
        caption="Internal consistency", note="Alpha with Feldt 95% CI.")
    describe.write_figure("trajectories_phq9", _figure(), caption="PHQ-9 over sessions")
    multilevel = RunFolder(folder, "03_multilevel")
    multilevel.write_table("model_growth_fixed", pd.DataFrame(
        {"term": ["(Intercept)", "I(session - 1)"], "estimate": [13.9, -0.323],
         "se": [0.237, 0.0146], "df": [41.6, 224.9], "t": [58.8, -22.1], "p": [1e-41, 3e-58],
         "ci_low": [13.4, -0.352], "ci_high": [14.4, -0.294]}),
        caption="Fixed effects of growth", flags=[FLAG],
        note="REML fit by the nested engine. Rows removed: 0 by where, 17 with a missing "
        "model variable.")
    multilevel.write_table("models_fit", pd.DataFrame(
        {"model": ["growth"], "n_obs": [1183], "n_removed_where": [0],
         "n_removed_missing": [17], "converged": [True], "singular": [False]}), flags=[FLAG],
        caption="Fit of the models")
    multilevel.write_figure("model_coefficients_growth", _figure(),
                            caption="Estimates of growth with their confidence intervals",
                            flags=[FLAG])
    multilevel.record({"models.growth.n_obs": 1183, "models.growth.converged": True,
                       "models.growth.singular": False})
    RunFolder(folder, "04_sem").write_table("sem_panel_fit", pd.DataFrame(
        {"model": ["riclpm", "clpm"], "estimator": ["ML", "ML"], "missing": ["fiml", "fiml"],
         "n_obs": [120, 120], "chi2": [12.4, 305.7], "df": [9, 12], "p": [0.19, 1e-58],
         "cfi": [0.998, 0.832], "rmsea": [0.031, 0.247], "rmsea_ci_low": [0.0, 0.224],
         "rmsea_ci_high": [0.069, 0.272], "srmr": [0.031, 0.091],
         "converged": [True, True], "warnings": [np.nan, np.nan]}),
        caption="Fit of the RI-CLPM and CLPM")
    RunFolder(folder, "05_change").write_table("change_reliable_summary", pd.DataFrame(
        {"category": ["recovered", "unchanged"], "n": [30, 90], "percent": [25.0, 75.0]}),
        caption="Reliable and clinically significant change",
        note="Following Jacobson & Truax, 1991.")
    return folder


def test_manuscript_has_method_results_numbered_tables_figures_references(
        run_dir: Path) -> None:
    params = load_params(ROOT / "params" / "demo.yaml")
    path = write_manuscript(run_dir, params, MANIFEST)
    assert path == run_dir / "manuscript.docx"
    document = docx.Document(str(path))
    texts = [p.text for p in document.paragraphs]
    headings = [p.text for p in document.paragraphs if p.style.name.startswith("Heading")]
    for heading in ("Method", "Participants", "Measures", "Analysis", "Results", "References"):
        assert heading in headings
    assert len(document.tables) >= 5
    numbered = [t for t in texts if t.startswith("Table ")]
    assert numbered == [f"Table {n}" for n in range(1, len(document.tables) + 1)]
    body = document.element.body
    for number, table in enumerate(document.tables, start=1):  # "Table N", title, table
        before = table._tbl.getprevious().getprevious()
        assert before.xpath("string(.)") == f"Table {number}"
    assert [t for t in texts if t.startswith("Figure ") and t[7:].isdigit()] == \
        ["Figure 1", "Figure 2"]
    assert len(body.xpath(".//pic:pic")) == 2
    full = "\n".join(texts)
    assert "The data held 1,202 session records" in full
    assert "α = .92, 95% CI [.89, .94]" in full  # measures with their reliability
    assert "It used 1,183 rows; 17 with a missing model variable were left out" in full
    assert "I(session - 1): b = -0.32, SE = 0.01, t(224.90) = -22.10, p < .001" in full
    assert "Python 3.11.7" in full and "semopy 2.3.11" in full
    references = texts[texts.index("References") + 1:]
    assert any(r.startswith("Bates, D.") for r in references)
    assert any(r.startswith("Jacobson, N. S.") for r in references)
    assert any(r.startswith("Kuznetsova, A.") for r in references)
    assert not any(r.startswith("Falkenström") for r in references)  # detrend is off


def test_manuscript_is_byte_identical_when_written_twice(run_dir: Path) -> None:
    params = load_params(ROOT / "params" / "demo.yaml")
    first = write_manuscript(run_dir, params, MANIFEST).read_bytes()
    later = dict(MANIFEST, started="2030-01-01T00:00:00+00:00")  # dates are not written
    assert write_manuscript(run_dir, params, later).read_bytes() == first
    document = docx.Document(str(run_dir / "manuscript.docx"))
    assert document.core_properties.created.year == 2000


def test_manuscript_of_a_run_without_stages_still_opens(tmp_path: Path) -> None:
    params = load_params(ROOT / "params" / "demo.yaml")
    document = docx.Document(str(write_manuscript(tmp_path, params, {})))
    assert "Method" in [p.text for p in document.paragraphs] and not document.tables
