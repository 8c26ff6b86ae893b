"""Every linear mixed model of the analyses runs on the nested engine (project issue 15).

Checks of the routes against lme4 / lmerTest (``tests/reference/formulas_lmertest.json``,
lme4 1.1-31 and lmerTest 3.1-3; data ``tests/reference/formulas_threelevel.csv``: 25
therapists, 203 clients, 1821 sessions):

* the ICC null model (:func:`~alliance_analysis.multilevel.icc.null_model_iccs`, also inside
  :func:`~alliance_analysis.multilevel.models.therapist_effects` and
  :func:`~alliance_analysis.multilevel.models.alliance_growth`) against ``null_therapist_reml``:
  variances 1e-4 relative, ICCs 1e-4 relative, log-likelihood at least lme4's minus 1e-6;
  its parametric bootstrap against lme4's ``confint(method = "boot")`` (Monte Carlo: loose);
* ``alliance_growth`` against ``growth_small_ml`` (log-likelihood at least lme4's minus 1e-6;
  the slope, its SE and Satterthwaite df 1e-4 relative; variance components 1e-3 relative,
  the precision of lme4's optimizer, see ``tests/test_multilevel.py``);
* ``therapist_effects``: no lme4 fixture holds its client-level model, so it is checked
  against the exact REML optimum of the same model computed here by brute force (dense
  ``V = sigma^2 (I + psi ZZ')``, profiled REML criterion minimised over ``psi`` to 1e-12),
  and its ``therapist_minus_client`` row against the contrast of that fit.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.optimize import minimize_scalar

from alliance_analysis.errors import AllianceDataError, ConvergenceWarning
from alliance_analysis.multilevel.icc import (bootstrap_variances, fit_random_intercepts,
                                              level_variances, refit_level_variances,
                                              null_model_iccs)
from alliance_analysis.multilevel.models import (alliance_growth, growth_model,
                                                 therapist_effects)
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.params import load_params

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference"
LMERTEST = json.loads((REFERENCE / "formulas_lmertest.json").read_text(encoding="utf-8"))["cases"]
NULL = LMERTEST["null_therapist_reml"]


def sessions() -> pd.DataFrame:
    """The lmerTest fixture's data as a session table (scores as ``<key>_total``)."""
    data = pd.read_csv(REFERENCE / "formulas_threelevel.csv")
    return data.rename(columns={"alliance": "alliance_total", "symptoms": "symptoms_total"})


def lme4_variance(case: dict, group: str, var1: str | None,
                  var2: str | None = None) -> float:
    rows = [r for r in case["varcorr_table"]
            if r["grp"] == group and r["var1"] == var1 and r["var2"] == var2]
    assert len(rows) == 1
    return rows[0]["vcov"]


def variance(result, level: str, term: str | None, term2: str | None = None) -> float:
    vc = result.extra["variance_components"]
    rows = vc[(vc["level"] == level)
              & ((vc["term"] == term) if term else vc["term"].isna())
              & ((vc["term2"] == term2) if term2 else vc["term2"].isna())]
    assert len(rows) == 1, (level, term, term2)
    return float(rows["vcov"].iloc[0])


def check_null_iccs(icc: pd.DataFrame) -> None:
    """An ICC table of alliance against lme4's null_therapist_reml."""
    table = icc.set_index("level")
    assert table.loc["therapist", "variance"] == pytest.approx(
        NULL["icc"]["var_therapist"], rel=1e-4)
    assert table.loc["client", "variance"] == pytest.approx(NULL["icc"]["var_client"], rel=1e-4)
    residual = table.loc["therapist", "variance"] / table.loc["therapist", "icc"] \
        - table["variance"].sum()
    assert residual == pytest.approx(NULL["icc"]["var_residual"], rel=1e-4)
    assert table.loc["therapist", "icc"] == pytest.approx(NULL["icc"]["therapist"], rel=1e-4)
    assert table.loc["client", "icc"] == pytest.approx(NULL["icc"]["client"], rel=1e-4)
    assert table["converged"].all()


# --- ICC null models ---------------------------------------------------------------------

def test_null_model_iccs_reproduce_lme4() -> None:
    icc = null_model_iccs(sessions(), "alliance", MultilevelOptions(), seed=1)
    check_null_iccs(icc)
    assert (icc["ci_method"] == "delta").all() and (icc["note"] == "").all()
    assert ((icc["ci_low"] < icc["icc"]) & (icc["icc"] < icc["ci_high"])).all()
    model = fit_random_intercepts(sessions(), "alliance_total", [], ("therapist", "client"),
                                  MultilevelOptions(), "null")
    assert model.result.fit["loglik"] >= NULL["logLik"] - 1e-6
    assert model.result.fit["loglik"] == pytest.approx(NULL["logLik"], abs=1e-6)
    assert not model.result.fit["singular"] and model.result.fit["converged"]
    assert model.result.fit["n_obs"] == NULL["nobs"]
    intercept = model.result.params.set_index("term").loc["(Intercept)"]
    lmertest = NULL["fixed_effects"][0]
    for stat in ("estimate", "se", "df", "ci_low", "ci_high"):
        assert intercept[stat] == pytest.approx(lmertest[stat], rel=1e-4), stat


def test_null_model_bootstrap_is_seeded_and_agrees_with_lme4s() -> None:
    """Percentile intervals of the SDs over 200 parametric bootstrap refits against lme4's
    ``confint(fit, method = "boot", nsim = 200)``: Monte Carlo with different random streams,
    so 5% relative, and 30% for the lower end of the therapist SD (a 2.5% quantile of a
    skewed distribution with 25 therapists)."""
    model = fit_random_intercepts(sessions(), "alliance_total", [], ("therapist", "client"),
                                  MultilevelOptions(), "null")
    draws, failed = bootstrap_variances(model, 200, seed=1)
    assert failed == 0 and draws.shape == (200, 3)
    low, high = np.quantile(np.sqrt(draws), [0.025, 0.975], axis=0)
    lme4 = {row["parm"]: row for row in NULL["boot_ci"]["rows"]}
    for j, name in enumerate(["sd_(Intercept)|therapist_id", "sd_(Intercept)|client_id",
                              "sigma"]):
        assert low[j] == pytest.approx(lme4[name]["lower"], rel=0.3 if j == 0 else 0.05), name
        assert high[j] == pytest.approx(lme4[name]["upper"], rel=0.05), name
    again, _ = bootstrap_variances(model, 20, seed=1)
    np.testing.assert_array_equal(again, draws[:20])  # deterministic for a seed
    options = MultilevelOptions(icc_ci="bootstrap", bootstrap_samples=20)
    icc = null_model_iccs(sessions(), "alliance", options, seed=1)
    pd.testing.assert_frame_equal(icc, null_model_iccs(sessions(), "alliance", options, seed=1))
    assert (icc["ci_method"] == "bootstrap").all()
    assert icc["note"].iloc[0] == "20 bootstrap refits, seed 1"


@pytest.mark.parametrize("levels", [("therapist", "client"), ("client",), ("therapist",)])
def test_a_bootstrap_refit_gives_the_full_fits_variances_bit_for_bit(levels) -> None:
    """The bootstrap refits the design laid out once (as lme4's ``refit(object, newresp)``):
    its variances and convergence flag are those of the full fit of the new outcome, exactly;
    the one-row-per-client layout too (the engine's lower level is the therapist)."""
    data = _client_table() if levels == ("therapist",) else sessions()
    outcome = "symptoms_post" if levels == ("therapist",) else "alliance_total"
    predictors = ["symptoms_baseline"] if levels == ("therapist",) else ["session"]
    model = fit_random_intercepts(data, outcome, predictors, levels, MultilevelOptions(), "m")
    refitter = model.refitter()
    rng = np.random.default_rng(3)
    for _ in range(3):
        y = model.fixed_part() + rng.normal(0.0, 1.0, len(model.data))
        full = model.refit(model.data.assign(**{outcome: y}))
        fast, converged = refit_level_variances(refitter, y, levels)
        np.testing.assert_array_equal(fast, level_variances(full, levels))
        assert converged == full.fit["converged"]
    with pytest.raises(ValueError, match="finite values"):
        refitter.variances(np.zeros(len(model.data) + 1))
    incomplete = model.data.assign(**{outcome: model.data[outcome].where(
        model.data.index != 0)})
    with pytest.raises(AllianceDataError, match="complete rows only"):
        replace(model, data=incomplete).refitter()


def test_delta_interval_at_the_boundary_is_replaced_by_the_bootstrap_with_a_note() -> None:
    """Each therapist's sessions shifted to a common mean: the therapist variance is
    estimated at 0 (a singular fit), where the delta method has nothing to offer."""
    data = sessions()
    data["alliance_total"] -= data.groupby("therapist_id")["alliance_total"].transform("mean")
    options = MultilevelOptions(bootstrap_samples=20)
    with pytest.warns(ConvergenceWarning, match="SINGULAR FIT: therapist"):
        icc = null_model_iccs(data, "alliance", options, seed=2).set_index("level")
    assert icc.loc["therapist", "icc"] < 1e-6
    assert (icc["ci_method"] == "bootstrap").all()
    note = icc.loc["therapist", "note"]
    assert note.startswith("delta method uninformative at the boundary (therapist variance ~0")
    assert "20 bootstrap refits, seed 2" in note and "icc_ci: bootstrap" in note
    assert np.isfinite(icc["ci_low"]).all() and np.isfinite(icc["ci_high"]).all()
    assert icc.loc["therapist", "ci_low"] == pytest.approx(0.0, abs=1e-6)
    assert icc.loc["therapist", "ci_high"] < 0.2


# --- alliance growth ---------------------------------------------------------------------

def test_alliance_growth_reports_the_lme4_fit() -> None:
    """``growth_small_ml`` (``symptoms ~ session + (1 + session | client_id) +
    (1 | therapist_id)``, ML) through alliance_growth with the symptom score as outcome.

    growth_model codes time 0 at session 1, lme4 used the raw session number: the slope, the
    slope variance, the therapist and residual variances and the log-likelihood are the same;
    the intercept moves by one slope and the client intercept variance by
    ``var_slope + 2 cov``."""
    case = LMERTEST["growth_small_ml"]
    options = MultilevelOptions(correlated_slope=True, reml=False)
    result = alliance_growth(sessions(), "symptoms", options, seed=1)
    assert result.fit["loglik"] >= case["logLik"] - 1e-6
    assert result.fit["n_obs"] == case["nobs"] and result.fit["converged"]
    assert result.fit["method"] == "ML" and result.fit["optimizer"]
    assert result.fit["aic"] == pytest.approx(case["AIC"], abs=1e-4)
    ours = result.params.set_index("term")
    lme4 = {row["term"]: row for row in case["fixed_effects"]}
    for stat in ("estimate", "se", "df"):
        assert ours.loc["session", stat] == pytest.approx(lme4["session"][stat], rel=1e-4), stat
    assert ours.loc["(Intercept)", "estimate"] == pytest.approx(
        lme4["(Intercept)"]["estimate"] + lme4["session"]["estimate"], rel=1e-4)
    slope = lme4_variance(case, "client_id", "session")
    cov = lme4_variance(case, "client_id", "(Intercept)", "session")
    expected = {("client", "session", None): slope,
                ("client", "(Intercept)", None): lme4_variance(case, "client_id", "(Intercept)")
                + 2 * cov + slope,
                ("therapist", "(Intercept)", None): lme4_variance(case, "therapist_id",
                                                                  "(Intercept)"),
                ("residual", None, None): lme4_variance(case, "Residual", None)}
    for (level, term, term2), value in expected.items():
        assert variance(result, level, term, term2) == pytest.approx(value, rel=1e-3)
    intercepts = result.extra["group_intercepts"]
    assert len(intercepts) == 25 and (intercepts["level"] == "therapist_id").all()
    assert list(intercepts.columns) == ["level", "group", "estimate", "se", "ci_low", "ci_high"]
    assert list(result.extra["icc"]["level"]) == ["therapist", "client"]


def test_alliance_growth_iccs_are_lme4s_null_model() -> None:
    result = alliance_growth(sessions(), "alliance", MultilevelOptions(), seed=1)
    check_null_iccs(result.extra["icc"])


# --- therapist effects -------------------------------------------------------------------

def exact_random_intercept_reml(y: np.ndarray, x: np.ndarray,
                                groups: np.ndarray) -> dict[str, object]:
    """The REML fit of ``y ~ X + (1 | group)`` by dense algebra: lme4's REML criterion
    ``log|V0| + log|X'V0^-1 X| + (n - p)(1 + log(2 pi sigma2_hat))`` with
    ``V0 = I + psi ZZ'``, minimised over ``psi >= 0``."""
    n, p = x.shape
    z = (groups[:, None] == np.unique(groups)[None, :]).astype(float)

    def parts(psi: float):
        v0 = np.eye(n) + psi * z @ z.T
        inverse = np.linalg.inv(v0)
        information = x.T @ inverse @ x
        beta = np.linalg.solve(information, x.T @ inverse @ y)
        residual = y - x @ beta
        sigma2 = float(residual @ inverse @ residual) / (n - p)
        criterion = (np.linalg.slogdet(v0)[1] + np.linalg.slogdet(information)[1]
                     + (n - p) * (1 + np.log(2 * np.pi * sigma2)))
        return criterion, beta, sigma2, information

    best = minimize_scalar(lambda psi: parts(psi)[0], bounds=(0.0, 10.0), method="bounded",
                           options={"xatol": 1e-12})
    psi = float(best.x) if parts(float(best.x))[0] < parts(0.0)[0] else 0.0
    criterion, beta, sigma2, information = parts(psi)
    return {"loglik": -criterion / 2, "beta": beta, "sigma2": sigma2, "tau": psi * sigma2,
            "beta_cov": sigma2 * np.linalg.inv(information)}


def test_therapist_effects_reports_the_exact_reml_fit() -> None:
    options = MultilevelOptions()
    result = therapist_effects(sessions(), "alliance", "symptoms", options, seed=1)
    terms = ["symptoms_baseline", "alliance_therapist_mean", "alliance_client_deviation"]
    assert list(result.params["term"]) == ["(Intercept)", *terms, "therapist_minus_client"]
    fit = result.fit
    assert fit["n_obs"] == fit["n_clients"] == 203 and fit["n_therapists"] == 25
    for key in ("optimizer", "method", "loglik", "converged", "singular"):
        assert key in fit
    assert fit["method"] == "REML" and np.isnan(fit["aic"])

    # the same client table, refitted by dense algebra
    model = fit_random_intercepts(_client_table(), "symptoms_post", terms,
                                  ("therapist",), options, "check")
    data = model.data
    x = np.column_stack([np.ones(len(data)), data[terms].to_numpy(dtype=float)])
    exact = exact_random_intercept_reml(data["symptoms_post"].to_numpy(dtype=float), x,
                                        data["therapist_id"].to_numpy())
    assert fit["loglik"] >= exact["loglik"] - 1e-6
    assert fit["loglik"] == pytest.approx(exact["loglik"], abs=1e-6)
    ours = result.params.set_index("term")
    se = np.sqrt(np.diag(exact["beta_cov"]))
    for j, term in enumerate(["(Intercept)", *terms]):
        assert ours.loc[term, "estimate"] == pytest.approx(exact["beta"][j], rel=1e-4, abs=1e-8)
        assert ours.loc[term, "se"] == pytest.approx(se[j], rel=1e-4)
    assert variance(result, "residual", None) == pytest.approx(exact["sigma2"], rel=1e-4)
    assert variance(result, "therapist", "(Intercept)") == pytest.approx(
        exact["tau"], rel=1e-3, abs=1e-6 * exact["sigma2"])
    contrast = np.array([0.0, 0.0, 1.0, -1.0])
    difference = ours.loc["therapist_minus_client"]
    assert difference["estimate"] == pytest.approx(contrast @ exact["beta"], rel=1e-6)
    assert difference["se"] == pytest.approx(
        float(np.sqrt(contrast @ exact["beta_cov"] @ contrast)), rel=1e-4)
    assert np.isfinite(difference["df"]) and difference["df"] > 0
    assert difference["ci_low"] < difference["estimate"] < difference["ci_high"]

    icc = result.extra["icc"]
    check_null_iccs(icc[icc["measure"] == "alliance_total"])
    adjusted = icc[icc["measure"] == "symptoms_post_adjusted"].iloc[0]
    total = variance(result, "therapist", "(Intercept)") + variance(result, "residual", None)
    assert adjusted["icc"] == pytest.approx(
        variance(result, "therapist", "(Intercept)") / total, rel=1e-9)


def _client_table() -> pd.DataFrame:
    """therapist_effects' client table (rebuilt from the same helpers)."""
    from alliance_analysis.data.clients import client_table, early_alliance
    from alliance_analysis.multilevel import derive

    ordered = derive.in_session_order(sessions())
    early = early_alliance(ordered, "alliance_total", 5).set_index("client_id")[
        "early_alliance"].rename("alliance_early")
    clients = client_table(ordered, "symptoms").merge(early, on="client_id", how="left")
    mean = clients.groupby("therapist_id")["alliance_early"].transform("mean")
    return clients.assign(alliance_therapist_mean=mean,
                          alliance_client_deviation=clients["alliance_early"] - mean)


# --- options and limits ------------------------------------------------------------------

def test_the_engine_is_the_only_fitter() -> None:
    assert MultilevelOptions().engine == "engine"
    assert MultilevelOptions(engine="engine").engine == "engine"  # older parameter files
    with pytest.raises(ValidationError, match="retired from the analyses"):
        MultilevelOptions(engine="statsmodels")
    demo = load_params(ROOT / "params" / "demo.yaml")
    assert demo.multilevel.engine == "engine"


def test_a_crossed_design_stops_without_a_statsmodels_fallback() -> None:
    data = sessions()
    rows = data.index[data["client_id"] == data["client_id"].iloc[0]]
    other = sorted(set(data["therapist_id"]) - {data["therapist_id"].iloc[0]})[0]
    data.loc[rows[-1], "therapist_id"] = other  # the client's last session: another therapist
    with pytest.raises(AllianceDataError) as error:
        growth_model(data, "symptoms", MultilevelOptions())
    message = str(error.value)
    assert "multiple_therapists: split" in message and "therapist_level: false" in message
    assert "engine: statsmodels" not in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        two_level = growth_model(data, "symptoms", MultilevelOptions(therapist_level=False))
    assert two_level.fit["n_therapists"] is None
