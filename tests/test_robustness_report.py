"""The robustness report: specification table, summary, figure, results.json and the reading."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest
from matplotlib.figure import Figure

from alliance_analysis.params import NOTEBOOK_DEFAULTS, load_params
from alliance_analysis.report.plots import specification_curve
from alliance_analysis.report.robustness import (
    reading,
    report_robustness,
    specifications_table,
    target_label,
)
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.robustness.curve import SUMMARY_COLUMNS, run_curve, summarize
from alliance_analysis.specs import RobustnessSpec

ROOT = Path(__file__).resolve().parents[1]
FORMULA = "phq9_total ~ I(session - 1) + {alliance}_within_lag1 + {alliance}_between + {random}"
RESULTS = ("estimate", "se", "ci_low", "ci_high", "df", "p", "n_obs", "converged", "singular")
RECORDED = ("robustness.n_specifications", "robustness.median_estimate",
            "robustness.share_preregistered_sign", "robustness.share_significant_same_sign",
            "robustness.preregistered_estimate", "robustness.preregistered_rank")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The demo's processed session table, prepared from the raw demo data."""
    from alliance_analysis.data.prepare import prepare

    return prepare(load_params(ROOT / "params" / "demo.yaml"),
                   tmp_path_factory.mktemp("processed")).sessions


@pytest.fixture(scope="module")
def filtered(sessions: pd.DataFrame) -> tuple[RobustnessSpec, pd.DataFrame]:
    """8 specifications, crossed with two filters; one filter keeps a single therapist, so
    the two specifications with a therapist random effect there are not estimable."""
    therapist = min(sessions["therapist_id"].unique())
    spec = RobustnessSpec(
        formula=FORMULA, target="{alliance}_within_lag1",
        choices={"alliance": ["wai_total", "wai_goal"],
                 "random": ["(1 | client_id)", "(1 | therapist_id)"]},
        where=["session <= 12", f"therapist_id == '{therapist}'"],
        preregistered={"alliance": "wai_total", "random": "(1 | client_id)",
                       "where": "session <= 12"})
    return spec, run_curve(sessions, spec, progress=False)


@pytest.fixture(scope="module")
def plain(sessions: pd.DataFrame) -> tuple[RobustnessSpec, pd.DataFrame]:
    """4 specifications without filters or a preregistered one."""
    spec = RobustnessSpec(
        formula=FORMULA, target="{alliance}_within_lag1",
        choices={"alliance": ["wai_total", "wai_bond"],
                 "random": ["(1 | client_id)", "(1 | client_id) + (1 | therapist_id)"]})
    return spec, run_curve(sessions, spec, progress=False)


@pytest.fixture(scope="module")
def written(filtered: tuple[RobustnessSpec, pd.DataFrame],
            tmp_path_factory: pytest.TempPathFactory) -> tuple[RunFolder, dict]:
    spec, curve = filtered
    run = RunFolder(tmp_path_factory.mktemp("run"), stage="06_robustness")
    joint = pd.DataFrame([{"n_resamples": 50, "p_median": 0.02, "p_share_significant": 0.04}])
    recorded = report_robustness(curve, summarize(curve, spec), spec, run, joint=joint)
    return run, recorded


def test_specification_table_columns_in_order(written: tuple[RunFolder, dict]) -> None:
    run, _ = written
    table = pd.read_csv(run.path / "tables" / "robustness_specifications.csv",
                        keep_default_na=False)
    assert list(table.columns) == ["spec_id", "alliance", "random", "where", *RESULTS,
                                   "preregistered", "formula", "warnings"]
    assert list(table["spec_id"]) == list(range(1, 9))
    assert table["preregistered"].astype(str).tolist().count("True") == 1
    for suffix in (".md", ".tex", ".html"):  # APA-formatted with caption and note
        assert (run.path / "tables" / f"robustness_specifications{suffix}").is_file()
    entry = run.outputs()["tables"]["robustness_specifications"]
    assert entry["stage"] == "06_robustness" and entry["title"] and "Simonsohn" in entry["note"]


def test_specification_table_without_filters_has_no_where(
        plain: tuple[RobustnessSpec, pd.DataFrame]) -> None:
    spec, curve = plain
    assert list(specifications_table(curve, spec).columns) == [
        "spec_id", "alliance", "random", *RESULTS, "preregistered", "formula", "warnings"]


def test_summary_table(written: tuple[RunFolder, dict]) -> None:
    run, _ = written
    summary = pd.read_csv(run.path / "tables" / "robustness_summary.csv")
    assert list(summary.columns) == list(SUMMARY_COLUMNS) and len(summary) == 1
    row = summary.iloc[0]
    assert (row["n_specifications"], row["n_estimated"], row["n_flagged"]) == (8, 6, 2)
    assert row["min_estimate"] <= row["median_estimate"] <= row["max_estimate"]


def test_figure_written(written: tuple[RunFolder, dict]) -> None:
    run, _ = written
    png = run.path / "figures" / "robustness_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run.path / "figures" / "robustness_curve.svg").is_file()
    assert len(run.outputs()["figures"]["robustness_curve"]["flags"]) == 2


def test_results_json_keys(written: tuple[RunFolder, dict]) -> None:
    run, recorded = written
    results = json.loads(run.results_file.read_text(encoding="utf-8"))
    assert set(RECORDED) <= set(results)
    assert results["robustness.n_specifications"] == 8
    assert results["robustness.preregistered_rank"] >= 1
    assert results["robustness.joint_test.p_median"] == pytest.approx(0.02)
    assert all(results[key] == value for key, value in recorded.items())


def test_joint_test_table(written: tuple[RunFolder, dict]) -> None:
    run, _ = written
    joint = pd.read_csv(run.path / "tables" / "robustness_joint_test.csv")
    assert list(joint.columns) == ["n_resamples", "p_median", "p_share_significant"]


def test_not_estimable_specifications_still_reported(
        filtered: tuple[RobustnessSpec, pd.DataFrame], written: tuple[RunFolder, dict]) -> None:
    _, curve = filtered
    run, _ = written
    missing = curve[curve["estimate"].isna()]
    assert len(missing) == 2 and set(missing["random"]) == {"(1 | therapist_id)"}
    table = pd.read_csv(run.path / "tables" / "robustness_specifications.csv",
                        keep_default_na=False)
    assert table.loc[missing.index, "estimate"].eq("").all()
    assert table.loc[missing.index, "warnings"].str.startswith("NOT ESTIMABLE").all()
    flags = run.outputs()["tables"]["robustness_specifications"]["flags"]
    assert [f["converged"] for f in flags] == [False, False]
    assert all(f["warnings"][0].startswith("NOT ESTIMABLE") and "therapist_id" in f["model"]
               for f in flags)


def test_reading_text(filtered: tuple[RobustnessSpec, pd.DataFrame],
                      plain: tuple[RobustnessSpec, pd.DataFrame]) -> None:
    spec, curve = filtered
    summary = summarize(curve, spec)
    text = reading(summary, spec)
    row = summary.iloc[0]
    assert text.startswith("Across 8 specifications (6 could be estimated), the within-client "
                           "effect of the previous session's alliance was negative in")
    assert f"median \u2212{abs(row['median_estimate']):.2f}" in text
    assert "(p < .05) in that direction" in text
    assert f"ranks {int(row['preregistered_rank'])}" in text and "of 6" in text
    assert "2 specifications were flagged" in text
    spec, curve = plain
    text = reading(summarize(curve, spec), spec)
    assert text.startswith("Across 4 specifications, the") and "sign of the median" in text
    assert "preregistered specification (" not in text and "flagged" not in text


def test_reading_when_nothing_was_estimated(filtered: tuple[RobustnessSpec, pd.DataFrame]
                                            ) -> None:
    spec, curve = filtered
    empty = curve.assign(estimate=np.nan, converged=False)
    assert reading(summarize(empty, spec), spec).startswith("None of the 8 specifications")


@pytest.mark.parametrize(("target", "label"), [
    ("{alliance}_within_lag1", "within-client effect of the previous session's alliance"),
    ("wai_total_within", "within-client effect of wai total"),
    ("{alliance}_between", "between-client effect of alliance"),
    ("I(session - 1)", "coefficient of I(session - 1)")])
def test_target_label(target: str, label: str) -> None:
    spec = RobustnessSpec(formula="phq9_total ~ I(session - 1) + {alliance}_within + "
                          "{alliance}_between + {alliance}_within_lag1 + (1 | client_id)",
                          target=target, choices={"alliance": ["wai_total"]})
    assert target_label(spec) == label


def test_specification_curve_with_a_thousand_specifications() -> None:
    rng = np.random.default_rng(1)
    n = 1000
    choices = {"alliance": ["wai_total", "wai_goal", "wai_task", "wai_bond", "wai_t_total"],
               "covariates": ["", "+ C(arm)", "+ C(arm) + C(gender)", "+ age_band", "+ x"],
               "random": ["(1 | client_id)", "(1 | client_id) + (1 | therapist_id)"],
               "where": [f"session <= {k}" for k in range(5, 25)]}
    grid = pd.MultiIndex.from_product(list(choices.values()), names=list(choices)).to_frame(
        index=False)
    estimate = rng.normal(-0.8, 0.6, n)
    estimate[-40:] = np.nan
    curve = grid.assign(spec_id=np.arange(1, n + 1), estimate=estimate,
                        ci_low=estimate - 0.3, ci_high=estimate + 0.3,
                        p=rng.uniform(0, 0.1, n), converged=np.isfinite(estimate),
                        singular=rng.uniform(size=n) < 0.05, preregistered=np.arange(n) == 7)
    fig = specification_curve(curve, choices, "within-client alliance effect")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert labels[:2] == ["alliance", "wai_total"] and "filter (where)" in labels
    fig.savefig(io.BytesIO(), format="png", dpi=50)


def test_notebook_parameters_and_no_outputs() -> None:
    import nbformat

    path = ROOT / "notebooks" / "06_robustness.ipynb"
    inspected = papermill.inspect_notebook(str(path))
    assert {k: ast.literal_eval(v["default"]) for k, v in inspected.items()} == NOTEBOOK_DEFAULTS
    notebook = nbformat.read(path, as_version=4)
    assert all(c.outputs == [] and c.execution_count is None
               for c in notebook.cells if c.cell_type == "code")
