"""Longitudinal measurement invariance against lavaan/semTools (tests/reference/sem2_lavaan.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.sem.invariance import (
    LEVELS,
    ROBUST_COLUMNS,
    TABLE_COLUMNS,
    fit_invariance,
    longitudinal_syntax,
    occasion_items,
    scaled_difference,
    verdict,
)
from alliance_analysis.sem.models import fit_sem

REF = Path(__file__).parent / "reference"
FIXTURE_LEVELS = ("configural", "metric", "scalar")


@pytest.fixture(scope="module")
def lavaan() -> dict:
    return json.loads((REF / "sem2_lavaan.json").read_text())


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(REF / "sem2_longitudinal.csv")


@pytest.fixture(scope="module")
def items() -> dict[str, list[str]]:
    return occasion_items(["i1", "i2", "i3", "i4"], ["t1", "t2", "t3"])


@pytest.fixture(scope="module")
def ml_table(data, items) -> pd.DataFrame:
    return fit_invariance(data, items, estimator="ML", missing="listwise")


@pytest.fixture(scope="module")
def mlr_table(data, items) -> pd.DataFrame:
    return fit_invariance(data, items, estimator="MLR", missing="listwise")


def test_occasion_items():
    assert occasion_items(["a", "b"], [1, 2]) == {"1": ["a_1", "b_1"], "2": ["a_2", "b_2"]}


@pytest.mark.parametrize("level", FIXTURE_LEVELS)
def test_level_fit_matches_lavaan(ml_table, lavaan, level):
    ref = lavaan["cases"][f"long_{level}"]["fit_measures"]
    row = ml_table.set_index("level").loc[level]
    assert row["df"] == ref["df"]
    assert row["npar"] == ref["npar"]
    assert row["chisq"] == pytest.approx(ref["chisq"], rel=1e-3)
    for key in ("cfi", "tli", "rmsea", "srmr"):
        assert row[key] == pytest.approx(ref[key], abs=1e-3), key
    for key in ("aic", "bic"):
        assert row[key] == pytest.approx(ref[key], rel=1e-6), key
    # in fact far tighter than the brief's 1e-3
    assert row["chisq"] == pytest.approx(ref["chisq"], rel=1e-6)
    assert row["cfi"] == pytest.approx(ref["cfi"], abs=1e-6)
    assert row["rmsea"] == pytest.approx(ref["rmsea"], abs=1e-6)


@pytest.mark.parametrize("level", FIXTURE_LEVELS)
def test_level_estimates_match_lavaan(data, items, lavaan, level):
    """Same model as measEq.syntax: every free parameter estimate agrees."""
    result = fit_sem(longitudinal_syntax(items, level), data, level, missing="listwise",
                     meanstructure=True)
    ours = {_key(r.lhs, r.op, r.rhs): r.estimate for r in result.params.itertuples()}
    ref = [p for p in lavaan["cases"][f"long_{level}"]["parameters"] if p["free"]]
    assert len(ref) >= 51 - 6 * FIXTURE_LEVELS.index(level)
    for p in ref:
        key = _key(p["lhs"], p["op"], p["rhs"])
        assert ours[key] == pytest.approx(p["est"], abs=1e-4), key


def _key(lhs: str, op: str, rhs: str) -> tuple:
    if op == "~~":
        return (op, *sorted((lhs, rhs)))
    if op == "~1" or (op == "~" and rhs in ("1", "")):
        return ("~1", lhs)
    return (lhs, op, rhs)


def test_lrt_matches_lavaan(ml_table, lavaan):
    rows = lavaan["lrt"]["long_ml"]["rows"]
    table = ml_table.set_index("level")
    for ref in rows[1:]:
        row = table.loc[ref["model"].removeprefix("long_")]
        assert row["df_diff"] == ref["Df diff"]
        assert row["chisq_diff"] == pytest.approx(ref["Chisq diff"], rel=1e-3)
        assert row["p_diff"] == pytest.approx(ref["Pr(>Chisq)"], abs=1e-4)
    assert np.isnan(table.loc["configural", "chisq_diff"])


def test_table_layout_and_strict(ml_table, mlr_table):
    assert list(ml_table.columns) == list(TABLE_COLUMNS)
    assert list(ml_table["level"]) == list(LEVELS)
    assert set(ROBUST_COLUMNS) <= set(mlr_table.columns)
    strict = ml_table.set_index("level").loc["strict"]
    assert strict["df"] == 59 and strict["npar"] == 31  # scalar + 8 residual variances equal
    assert strict["df_diff"] == 8
    assert ml_table["verdict"].iloc[1].startswith("loadings equal over sessions: supported")
    assert ml_table["verdict"].iloc[2].startswith("intercepts equal over sessions: supported")
    assert ml_table["verdict"].iloc[3].startswith(
        "residual variances equal over sessions: supported")


def test_mlr_table_uses_scaled_difference(ml_table, mlr_table):
    # ML estimates, so the unscaled statistics are ML's
    np.testing.assert_allclose(mlr_table["chisq"], ml_table["chisq"], rtol=1e-6)
    for k in range(1, len(mlr_table)):
        now, prev = mlr_table.iloc[k], mlr_table.iloc[k - 1]
        cd = ((now["df"] * now["scaling_factor"] - prev["df"] * prev["scaling_factor"])
              / (now["df"] - prev["df"]))
        assert mlr_table["chisq_diff"].iloc[k] == pytest.approx(
            (now["chisq"] - prev["chisq"]) / cd, rel=1e-10)
        assert mlr_table["delta_cfi"].iloc[k] == pytest.approx(
            now["cfi_robust"] - prev["cfi_robust"])
        assert now["chisq_scaled"] == pytest.approx(now["chisq"] / now["scaling_factor"])


def test_scaled_difference_by_hand():
    # T0 = 30 (df 10, c0 = 1.2), T1 = 20 (df 8, c1 = 1.1): cd = (12 - 8.8) / 2 = 1.6
    diff, ddf, p = scaled_difference(30.0, 10, 1.2, 20.0, 8, 1.1)
    assert ddf == 2
    assert diff == pytest.approx(10.0 / 1.6)
    assert p == pytest.approx(stats.chi2.sf(6.25, 2))
    # a negative cd leaves the test undefined
    assert np.isnan(scaled_difference(30.0, 10, 0.8, 20.0, 8, 1.1)[0])
    assert np.isnan(scaled_difference(30.0, 8, 1.0, 20.0, 8, 1.0)[0])


def test_scaled_difference_matches_lavaan_mlr_lrt(lavaan):
    """lavTestLRT's satorra.bentler.2001 on the multigroup MLR fits (the only MLR LRT)."""
    lrt = lavaan["lrt"]["hs_inv_mlr"]
    fits = [lavaan["cases"][m]["fit_measures"] for m in lrt["models"]]
    for k in range(1, len(fits)):
        r, f = fits[k], fits[k - 1]
        diff, ddf, p = scaled_difference(r["chisq"], r["df"], r["chisq.scaling.factor"],
                                         f["chisq"], f["df"], f["chisq.scaling.factor"])
        assert ddf == lrt["rows"][k]["Df diff"]
        assert diff == pytest.approx(lrt["rows"][k]["Chisq diff"], rel=1e-6)
        assert p == pytest.approx(lrt["rows"][k]["Pr(>Chisq)"], rel=1e-5)


def test_verdict_wording():
    rule = "Chen 2007: ΔCFI >= -.010 and ΔRMSEA <= .015"
    assert verdict("metric", -0.004, 0.002) == (
        f"loadings equal over sessions: supported (ΔCFI = -0.004, ΔRMSEA = 0.002; {rule})")
    assert verdict("scalar", -0.012, 0.002) == (
        f"intercepts equal over sessions: not supported (ΔCFI = -0.012 < -.010; {rule})")
    assert verdict("strict", -0.001, 0.020, over="occasions") == (
        "residual variances equal over occasions: not supported (ΔRMSEA = 0.020 > .015; "
        f"{rule})")
    both = verdict("metric", -0.02, 0.03)
    assert "not supported" in both and "ΔCFI = -0.020 < -.010" in both and "ΔRMSEA = 0.030" in both
    # the cut-offs themselves support invariance
    assert ": supported" in verdict("metric", -0.010, 0.015)
    assert "not assessed" in verdict("metric", np.nan, 0.0)
    with pytest.raises(AllianceParamsError):
        verdict("configural", 0.0, 0.0)


def test_syntax_levels():
    items = occasion_items(["a", "b", "c"], ["t1", "t2"])
    conf, metric, scalar, strict = (longitudinal_syntax(items, lv) for lv in LEVELS)
    assert "F1 =~ 1*a_t1 + lambda_2_t1*b_t1 + lambda_3_t1*c_t1" in conf
    assert "F2 =~ 1*a_t2 + lambda_2*b_t2 + lambda_3*c_t2" in metric
    assert "b_t2 ~ nu_2_t2*1" in metric and "b_t2 ~ nu_2*1" in scalar
    assert "a_t1 ~ 0*1" in conf and "F1 ~ 1" in conf and "F2 ~ 1" in scalar
    assert "a_t1 ~~ a_t2" in conf and "c_t1 ~~ c_t2" in strict
    assert "a_t2 ~~ theta_1*a_t2" in strict and "a_t2 ~~ theta_1_t2*a_t2" in scalar


@pytest.mark.parametrize("bad", [
    {"t1": ["a", "b", "c"]},
    {"t1": ["a", "b", "c"], "t2": ["d", "e"]},
    {"t1": ["a", "b"], "t2": ["c", "d"]},
    {"t1": ["a", "b", "c"], "t2": ["a", "e", "f"]},
])
def test_syntax_rejects_bad_designs(bad):
    with pytest.raises(AllianceParamsError):
        longitudinal_syntax(bad, "configural")


def test_levels_must_be_ordered(data, items):
    with pytest.raises(AllianceParamsError):
        fit_invariance(data, items, levels=["scalar", "metric"])
    with pytest.raises(AllianceParamsError):
        longitudinal_syntax(items, "partial")


def test_subset_of_levels_compares_with_previous_listed(data, items, ml_table):
    table = fit_invariance(data, items, levels=["configural", "scalar"], missing="listwise")
    full = ml_table.set_index("level")
    assert table["df_diff"].iloc[1] == 12
    assert table["chisq_diff"].iloc[1] == pytest.approx(
        full.loc["scalar", "chisq"] - full.loc["configural", "chisq"])
    assert table["verdict"].iloc[1].startswith("intercepts equal over sessions")


def test_a_less_constrained_fit_below_its_constrained_one_is_not_assessed() -> None:
    """Fits that cannot both be optima (the constrained one has the higher likelihood)."""
    from alliance_analysis.results import ModelResult
    from alliance_analysis.sem.invariance import invariance_table

    def result(loglik: float, chi2: float, df: int) -> ModelResult:
        params = pd.DataFrame({"term": [], "estimate": [], "se": [], "ci_low": [],
                               "ci_high": [], "p": []})
        fit = {"npar": 30, "chi2": chi2, "df": df, "p": 0.5, "cfi": 0.9, "tli": 0.9,
               "rmsea": 0.05, "srmr": 0.05, "aic": 1.0, "bic": 1.0, "loglik": loglik,
               "converged": True, "warnings": []}
        return ModelResult("m", params, fit, "")

    table = invariance_table({"configural": result(-4506.8, 423.3, 39),
                              "metric": result(-4314.2, 38.2, 45)})
    assert "not assessed" in table["verdict"].iloc[1]
    assert "did not reach its optimum" in table["verdict"].iloc[1]


def test_a_stall_short_of_the_optimum_is_restarted_and_reaches_lavaan():
    """Bond over demo sessions 1-3 (FIML): from the simple starting values the scoring steps
    shrank to zero where a factor variance neared 0 (logL -4506.76, reported converged);
    the stall is detected by the gradient and the fit restarts from means matched to the
    data (tests/reference/sem_local_optimum.R)."""
    reference = json.loads((REF / "sem_local_optimum.json").read_text())["cases"]
    data = pd.read_csv(REF / "sem_local_optimum.csv")
    for level in ("configural", "metric"):
        syntax = (REF / f"sem_local_optimum_{level}.txt").read_text()
        result = fit_sem(syntax, data, level, missing="fiml", meanstructure=True)
        ref = reference[level]["fit_measures"]
        assert result.fit["converged"]
        assert result.fit["loglik"] == pytest.approx(ref["logl"], abs=1e-4)
        assert result.fit["chi2"] == pytest.approx(ref["chisq"], rel=1e-3)
        assert result.fit["df"] == ref["df"]
        params = result.params.set_index(["lhs", "op", "rhs"])
        for row in reference[level]["parameters"]:
            key = (row["lhs"], row["op"], row["rhs"])
            if key in params.index and params.loc[key, "free"]:
                assert params.loc[key, "estimate"] == pytest.approx(row["est"], abs=1e-4)
