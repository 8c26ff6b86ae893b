"""Researchers' own models (``models:``) against lme4 1.1-31 + lmerTest 3.1-3 fixtures.

The fixtures are ``tests/reference/formulas_lmertest.json``, written by
``tests/reference/formulas_lmertest.R`` (see the README there). Tolerances, as the issue states
them: estimates 1e-4 relative, SEs 1e-3 relative, Satterthwaite df 1e-2 relative, variance
components 1e-3 relative, log-likelihood 1e-6 absolute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.specified import (check_models, fit_model, fixed_table,
                                                    likelihood_ratio_test, random_table)
from alliance_analysis.options import ModelSpec

HERE = Path(__file__).parent / "reference"
ROOT = Path(__file__).parents[1]
REF = json.loads((HERE / "formulas_lmertest.json").read_text())["cases"]

ESTIMATE_RTOL, SE_RTOL, DF_RTOL, VC_RTOL, LOGLIK_ATOL = 1e-4, 1e-3, 1e-2, 1e-3, 1e-6


def _r_name(term: str) -> str:
    """formulaic's ``arm[T.PDT]`` as R prints it: ``armPDT``."""
    return re.sub(r"(\w+)\[T\.([^\]]+)\]", r"\1\2", term)


def _data(case: str) -> pd.DataFrame:
    if case.startswith("sleepstudy"):
        sleep = pd.read_csv(ROOT / "data" / "reference" / "sleepstudy.csv")
        return sleep.rename(columns={"Subject": "client_id"}).assign(therapist_id="all")
    return pd.read_csv(HERE / "formulas_threelevel.csv")


def _spec(case: str) -> ModelSpec:
    formula = REF[case]["formula"].replace("Subject", "client_id")
    return ModelSpec(formula=formula, reml=REF[case]["REML"])


CASES = ["sleepstudy_reml", "sleepstudy_uncorrelated", "threelevel_factor_reml",
         "threelevel_factor_ml", "threelevel_uncorrelated", "growth_small_ml", "growth_big_ml",
         "null_therapist_reml"]


@pytest.fixture(scope="module")
def fits() -> dict:
    return {case: fit_model(_data(case), case, _spec(case)) for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_fixed_effects_equal_lmertest(fits: dict, case: str) -> None:
    mine = fixed_table(fits[case]).assign(term=lambda t: t["term"].map(_r_name))
    mine = mine.set_index("term")
    reference = pd.DataFrame(REF[case]["fixed_effects"]).set_index("term")
    assert sorted(mine.index) == sorted(reference.index)
    mine = mine.loc[reference.index]
    np.testing.assert_allclose(mine["estimate"], reference["estimate"], rtol=ESTIMATE_RTOL,
                               atol=1e-8)
    np.testing.assert_allclose(mine["se"], reference["se"], rtol=SE_RTOL)
    np.testing.assert_allclose(mine["df"], reference["df"], rtol=DF_RTOL)
    np.testing.assert_allclose(mine["t"], reference["t"], rtol=SE_RTOL)
    np.testing.assert_allclose(mine["p"], reference["p"], rtol=5e-2, atol=1e-12)
    np.testing.assert_allclose(mine["ci_low"], reference["ci_low"], rtol=SE_RTOL)
    np.testing.assert_allclose(mine["ci_high"], reference["ci_high"], rtol=SE_RTOL)


@pytest.mark.parametrize("case", CASES)
def test_random_part_and_fit_equal_lme4(fits: dict, case: str) -> None:
    result = fits[case]
    reference = REF[case]
    assert result.fit["loglik"] == pytest.approx(reference["logLik"], abs=LOGLIK_ATOL)
    assert result.fit["n_obs"] == reference["nobs"]
    assert result.fit["n_removed_missing"] == reference["n_rows_dropped"]
    assert result.fit["singular"] == reference["isSingular"]
    assert result.fit["aic"] == pytest.approx(reference["AIC"], abs=1e-5)
    assert result.fit["bic"] == pytest.approx(reference["BIC"], abs=1e-5)
    mine = random_table(result)
    ref = pd.DataFrame(reference["varcorr_table"])
    ref["grp"] = ref["grp"].str.replace(r"\.\d+$", "", regex=True)  # lme4's client_id.1 for ||
    ref = ref.replace({"Subject": "client_id"})
    key = lambda g, a, b: (g, a if isinstance(a, str) else None, b if isinstance(b, str) else None)
    reference_values = {key(r.grp, r.var1, r.var2): (r.vcov, r.sdcor) for r in ref.itertuples()}
    mine_values = {key(r.group, r.term, r.term2): (r.variance, r.sd_or_corr)
                   for r in mine.itertuples()}
    assert set(mine_values) == set(reference_values)
    for k, (variance, sdcor) in reference_values.items():
        assert mine_values[k][0] == pytest.approx(variance, rel=VC_RTOL), k
        assert mine_values[k][1] == pytest.approx(sdcor, rel=VC_RTOL), k


def test_sleepstudy_days_has_17_satterthwaite_df(fits: dict) -> None:
    """The published value: lmerTest gives Days 17.0 df (Kuznetsova et al. 2017)."""
    days = fixed_table(fits["sleepstudy_reml"]).set_index("term").loc["Days"]
    assert days["df"] == pytest.approx(17.0, abs=1e-3)
    assert days["p"] == pytest.approx(3.2638e-06, rel=1e-4)


@pytest.mark.parametrize("reml", [False, True])
def test_likelihood_ratio_test_equals_anova(reml: bool) -> None:
    data = _data("growth_small_ml")
    small = ModelSpec(formula=REF["growth_small_ml"]["formula"], reml=reml)
    large = ModelSpec(formula=REF["growth_big_ml"]["formula"], reml=reml)
    fitted = [("small", small, fit_model(data, "small", small)),
              ("large", large, fit_model(data, "large", large))]
    table = likelihood_ratio_test(data, fitted[1], fitted[0])  # order does not matter
    anova = REF["growth_big_ml"]["anova"]["rows"]
    assert list(table["model"]) == ["small", "large"]
    assert list(table["refit"]) == [reml, reml]  # REML fits with different fixed parts: ML
    assert list(table["npar"]) == [row["npar"] for row in anova]
    np.testing.assert_allclose(table["loglik"], [row["logLik"] for row in anova],
                               atol=LOGLIK_ATOL)
    np.testing.assert_allclose(table["aic"], [row["AIC"] for row in anova], atol=1e-5)
    assert table["chisq"].iloc[1] == pytest.approx(anova[1]["Chisq"], abs=1e-5)
    assert table["df"].iloc[1] == anova[1]["Df"]
    assert table["p"].iloc[1] == pytest.approx(anova[1]["p"], rel=1e-4)


def test_binomial_client_model_equals_glm() -> None:
    reference = REF["dropout_glm"]
    clients = pd.read_csv(HERE / "formulas_dropout_clients.csv")
    sessions = clients.assign(session=1)  # one row per client, as a client-level table
    spec = ModelSpec(formula=reference["formula"], family="binomial", level="client")
    result = fit_model(sessions, "dropout", spec)
    mine = fixed_table(result).set_index("term").rename(index=_r_name)
    for row in reference["coefficients"]:
        term = row["term"]
        assert mine.loc[term, "estimate"] == pytest.approx(row["estimate"], rel=1e-6), term
        # R's glm takes its SEs from the weights of the iteration before the last (IRLS stops
        # at a relative deviance change of 1e-8), so they lag the converged ones by ~1e-4.
        assert mine.loc[term, "se"] == pytest.approx(row["se"], rel=SE_RTOL), term
    assert result.fit["loglik"] == pytest.approx(reference["logLik"], abs=1e-8)


def test_derived_columns_follow_their_definitions() -> None:
    sessions = pd.DataFrame({"client_id": ["a"] * 4 + ["b"] * 3,
                             "therapist_id": ["t"] * 7,
                             "session": [1, 2, 3, 4, 1, 2, 3],
                             "x": [1.0, 3.0, np.nan, 4.0, 2.0, 2.0, 5.0],
                             "y": np.arange(7.0)})
    from alliance_analysis.multilevel.specified import derive_columns

    out = derive_columns(sessions, {"x_between", "x_within", "x_lag1", "x_within_lag1",
                                    "x_lead1", "x_first", "x_early", "x_within_detrended"},
                         early_sessions=2)
    a = out[out.client_id == "a"]
    assert a["x_between"].tolist() == pytest.approx([8 / 3] * 4)
    assert a["x_within"].tolist()[:2] == pytest.approx([1 - 8 / 3, 3 - 8 / 3])
    assert a["x_lag1"].isna().tolist() == [True, False, False, True]  # no carrying back
    assert a["x_within_lag1"].tolist()[1] == pytest.approx(1 - 8 / 3)
    assert a["x_lead1"].tolist()[:2] == [3.0, 3.0] or a["x_lead1"].tolist()[0] == 3.0
    assert a["x_first"].tolist() == [1.0] * 4 and a["x_early"].tolist() == [2.0] * 4
    b = out[out.client_id == "b"]
    slope = np.polyfit([1, 2, 3], [2, 2, 5], 1)
    assert b["x_within_detrended"].tolist() == pytest.approx(
        [2, 2, 5] - np.polyval(slope, [1, 2, 3]))


def test_short_names_are_aliases_of_total_scores() -> None:
    sessions = pd.DataFrame({"client_id": ["a", "a", "b", "b"], "therapist_id": ["t"] * 4,
                             "session": [1, 2, 1, 2], "wai_total": [3.0, 4.0, 2.0, 2.5]})
    from alliance_analysis.multilevel.specified import derive_columns

    out = derive_columns(sessions, {"wai_within_lag1", "wai_total_within_lag1"})
    assert out["wai_within_lag1"].equals(out["wai_total_within_lag1"])


@pytest.mark.parametrize("formula, where, message", [
    ("symptoms ~ sesion + (1 | client_id)", None, r"\['sesion'\] is not a column.*Columns: "),
    ("symptoms ~ session + (1 | arm)", None, r"sessions nested in clients nested in therapists"),
    ("symptoms ~ session + (1 | client_id)", "session > 99", r"removes every row"),
    ("symptoms ~ session + (1 | client_id)", "session >>> 2", r"where.*cannot be evaluated"),
])
def test_bad_specifications_stop_before_fitting(formula: str, where: str | None,
                                                message: str) -> None:
    data = _data("growth_small_ml")
    with pytest.raises(AllianceParamsError, match=message):
        check_models(data, {"m": ModelSpec(formula=formula, where=where)})


def test_crossed_design_is_named() -> None:
    data = _data("growth_small_ml").copy()
    data.loc[data.index[:3], "therapist_id"] = "someone else"  # a client seen by two
    spec = ModelSpec(formula="symptoms ~ session + (1 | client_id) + (1 | therapist_id)")
    from alliance_analysis.errors import AllianceDataError

    with pytest.raises(AllianceDataError, match="therapist"):
        fit_model(data, "m", spec)


def test_where_filters_rows_and_counts_them() -> None:
    data = _data("growth_small_ml")
    spec = ModelSpec(formula="symptoms ~ session + (1 | client_id)", where="session <= 6")
    result = fit_model(data, "m", spec)
    kept = data[data.session <= 6]
    assert result.fit["n_removed_where"] == len(data) - len(kept)
    assert result.fit["n_obs"] == kept["symptoms"].notna().sum()


@pytest.mark.parametrize("where", [
    "session <= 6", "session > 2 and symptoms > 10", "`my col` == 1 or index < 3", "index >= 5",
    "client_id in ['c1', 'c2']", "symptoms != symptoms", "session", "nosuch > 1"])
def test_rows_where_is_pandas_query(where: str) -> None:
    """The condition evaluated on the columns it names keeps exactly pandas' rows (or gives
    pandas' result when it is not a row condition)."""
    from alliance_analysis.multilevel.derive import rows_where

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"client_id": [f"c{k % 4}" for k in range(12)],
                          "session": np.arange(12) % 7, "my col": rng.integers(0, 2, 12),
                          "symptoms": np.where(np.arange(12) == 4, np.nan,
                                               rng.normal(10, 3, 12)),
                          **{f"x{k}": rng.normal(size=12) for k in range(30)}},
                         index=pd.RangeIndex(12) * 2)
    try:
        expected = frame.query(where, engine="python")
    except Exception as exc:  # noqa: BLE001 - the same error as pandas' (a bad condition)
        with pytest.raises(type(exc)):
            rows_where(frame, where)
        return
    pd.testing.assert_frame_equal(rows_where(frame, where), expected)


@pytest.fixture(scope="module")
def demo_sessions(tmp_path_factory: pytest.TempPathFactory):
    from alliance_analysis.data.prepare import prepare
    from alliance_analysis.params import load_params

    params = load_params(ROOT / "params" / "demo.yaml")
    return params, prepare(params, tmp_path_factory.mktemp("processed")).sessions


def test_shipped_specifications_reproduce_the_built_in_models(demo_sessions) -> None:
    """params/demo.yaml states the built-in growth and within/between models as formulas."""
    from alliance_analysis.multilevel.models import growth_model, within_between_model

    params, sessions = demo_sessions
    options = params.multilevel
    built_in = {"growth": growth_model(sessions, params.symptoms, options),
                "within_between": within_between_model(sessions, params.alliance,
                                                       params.symptoms, options)}
    for name, reference in built_in.items():
        stated = fit_model(sessions, name, params.models[name])
        assert stated.fit["n_obs"] == reference.fit["n_obs"]
        assert stated.fit["loglik"] == pytest.approx(reference.fit["loglik"], abs=1e-6)
        np.testing.assert_allclose(stated.params["estimate"], reference.params["estimate"],
                                   rtol=1e-6)
        np.testing.assert_allclose(stated.params["se"], reference.params["se"], rtol=1e-5)
    assert [r.term for r in fit_model(sessions, "w", params.models["within_between"])
            .params.itertuples()] == ["(Intercept)", "I(session - 1)", "wai_within_lag1",
                                      "wai_between"]
    # early alliance: uncentred in the formula, centred in the built-in model, so only the
    # early-alliance terms (not the intercept and time terms) are the same numbers
    from alliance_analysis.multilevel.models import early_alliance_slope

    stated = fit_model(sessions, "e", params.models["early_alliance"]).params.set_index("term")
    built = early_alliance_slope(sessions, params.alliance, params.symptoms,
                                 options).params.set_index("term")
    for mine, theirs in (("wai_total_early", "wai_early"),
                         ("I(session - 1):wai_total_early", "session:wai_early")):
        assert stated.loc[mine, "estimate"] == pytest.approx(built.loc[theirs, "estimate"],
                                                             rel=1e-6)
        assert stated.loc[mine, "se"] == pytest.approx(built.loc[theirs, "se"], rel=1e-5)


def test_wald_inference_only_where_asked() -> None:
    data = _data("growth_small_ml")
    wald = fit_model(data, "m", ModelSpec(formula=REF["growth_small_ml"]["formula"],
                                          reml=False, inference="wald"))
    table = fixed_table(wald)
    assert np.isinf(table["df"]).all()
    from scipy import stats

    assert table["p"].tolist() == pytest.approx(
        (2 * stats.norm.sf(np.abs(table["t"]))).tolist())


def test_bootstrap_intervals_agree_with_lme4s(fits: dict) -> None:
    """Monte Carlo against Monte Carlo (lme4's confint(method = "boot"), 200 samples, and the
    profile intervals): endpoints within 0.03 (SDs of 0.19 to 0.48), seeded and repeatable."""
    reference = REF["null_therapist_reml"]
    spec = ModelSpec(formula=reference["formula"], bootstrap_samples=100)
    data = _data("null_therapist_reml")
    first = fit_model(data, "null", spec, seed=3).extra["random_intervals"]
    few = spec.model_copy(update={"bootstrap_samples": 5})
    pd.testing.assert_frame_equal(fit_model(data, "null", few, seed=3).extra["random_intervals"],
                                  fit_model(data, "null", few, seed=3).extra["random_intervals"])
    sds = first[first["measure"] == "sd_or_corr"].set_index("group")
    for row in reference["profile_ci"]["rows"][:3]:
        group = {"sd_(Intercept)|client_id": "client_id",
                 "sd_(Intercept)|therapist_id": "therapist_id", "sigma": "Residual"}[row["parm"]]
        assert sds.loc[group, "ci_low"] == pytest.approx(row["lower"], abs=0.03), group
        assert sds.loc[group, "ci_high"] == pytest.approx(row["upper"], abs=0.03), group
    icc = first[(first["measure"] == "icc") & (first["group"] == "therapist_id")].iloc[0]
    assert icc["estimate"] == pytest.approx(reference["icc"]["therapist"], rel=1e-4)
    assert 0 < icc["ci_low"] < icc["estimate"] < icc["ci_high"] < 0.3
