"""Validation of the multilevel models against lme4, published values and simulation truth.

Reference values: ``tests/reference/multilevel_lme4.json`` (lme4 1.1-31, bobyqa; see
``tests/reference/README.md`` for the command and versions) and Bates et al. (2015) for
``sleepstudy``. Tolerances, stated once here:

* published sleepstudy numbers: 1e-3 relative, or half a unit of the last printed digit
  when that is larger (the correlation .066 is printed to three decimals);
* lme4 fixtures: fixed effects and their SEs 1e-4 relative; variance components, SDs and
  correlations 1e-3 relative (the optimizers' own precision: lme4's default optimizer
  differs from the stored bobyqa optimum by up to 5e-4, README); log-likelihood 1e-4
  absolute; AIC/BIC (ML) 1e-4 absolute;
* recovery of ``truth.json``: within 3 standard errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import stopped_at_start
from alliance_analysis.errors import AllianceParamsError, ConvergenceWarning
from alliance_analysis.multilevel.engine import nested
from alliance_analysis.multilevel.mixedfit import fit_mixed
from alliance_analysis.multilevel.models import growth_model, random_part, within_between_model
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.params import parse_params
from alliance_analysis.data.prepare import prepare
from alliance_analysis.results import ModelResult
from alliance_analysis.data.simulate import SimulationDesign, simulate, write

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference"
LME4 = json.loads((REFERENCE / "multilevel_lme4.json").read_text(encoding="utf-8"))["cases"]
FIXED_RTOL, VARIANCE_RTOL, LOGLIK_ATOL = 1e-4, 1e-3, 1e-4

TWO_LEVEL = {"therapist_level": False, "correlated_slope": True}


def sleepstudy() -> pd.DataFrame:
    """lme4's sleepstudy as a session table: Subject -> client, Days 0.. -> session 1.."""
    data = pd.read_csv(ROOT / "data" / "reference" / "sleepstudy.csv")
    return pd.DataFrame({"client_id": data["Subject"].astype(str), "therapist_id": "none",
                         "session": data["Days"] + 1, "reaction_total": data["Reaction"]})


def threelevel() -> pd.DataFrame:
    data = pd.read_csv(REFERENCE / "ml_threelevel.csv")
    return pd.DataFrame({"client_id": data["client"], "therapist_id": data["therapist"],
                         "session": data["session"] + 1, "y_total": data["y"]})


def withinbetween() -> pd.DataFrame:
    data = pd.read_csv(REFERENCE / "ml_withinbetween.csv")
    return pd.DataFrame({"client_id": data["client"], "therapist_id": data["therapist"],
                         "session": data["session"] + 1, "alliance_total": data["alliance"],
                         "symptoms_total": data["symptoms"]})


def estimates(result: ModelResult) -> pd.DataFrame:
    return result.params.set_index("term")


def variance(result: ModelResult, level: str, term: str | None,
             term2: str | None = None) -> pd.Series:
    vc = result.extra["variance_components"]
    rows = vc[(vc["level"] == level)
              & ((vc["term"] == term) if term else vc["term"].isna())
              & ((vc["term2"] == term2) if term2 else vc["term2"].isna())]
    assert len(rows) == 1, (level, term, term2)
    return rows.iloc[0]


def check_against_lme4(result: ModelResult, fit: dict, names: dict[str, str],
                       levels: dict[str, str]) -> None:
    """Compare a result with one stored lme4 fit (names: lme4 term -> our term)."""
    ours = estimates(result)
    for lme4_term, values in fit["fixed_effects"].items():
        term = names.get(lme4_term, lme4_term)
        assert ours.loc[term, "estimate"] == pytest.approx(values["estimate"], rel=FIXED_RTOL)
        assert ours.loc[term, "se"] == pytest.approx(values["se"], rel=FIXED_RTOL)
    for row in fit["varcorr_table"]:
        group = row["grp"].removesuffix(".1")
        level = "residual" if group == "Residual" else levels[group]
        term = names.get(row["var1"], row["var1"]) if row["var1"] else None
        term2 = names.get(row["var2"], row["var2"]) if row["var2"] else None
        mine = variance(result, level, term, term2)
        assert mine["vcov"] == pytest.approx(row["vcov"], rel=VARIANCE_RTOL)
        assert mine["sdcor"] == pytest.approx(row["sdcor"], rel=VARIANCE_RTOL)
    assert result.fit["loglik"] == pytest.approx(fit["logLik"], abs=LOGLIK_ATOL)
    assert result.fit["n_obs"] == fit["nobs"]
    if fit["REML"]:
        assert result.fit["reml_criterion"] == pytest.approx(fit["REMLcrit"], abs=2 * LOGLIK_ATOL)
        assert np.isnan(result.fit["aic"]) and np.isnan(result.fit["bic"])
    else:
        assert result.fit["aic"] == pytest.approx(fit["AIC"], abs=2 * LOGLIK_ATOL)
        assert result.fit["bic"] == pytest.approx(fit["BIC"], abs=2 * LOGLIK_ATOL)
    assert result.fit["converged"] and not result.fit["singular"]


def published(value: float, printed: float, decimals: int) -> None:
    assert value == pytest.approx(printed, rel=1e-3, abs=0.5 * 10 ** -decimals)


def test_sleepstudy_reproduces_bates_2015() -> None:
    result = growth_model(sleepstudy(), "reaction", MultilevelOptions(**TWO_LEVEL))
    ours = estimates(result)
    published(ours.loc["(Intercept)", "estimate"], 251.405, 3)
    published(ours.loc["(Intercept)", "se"], 6.825, 3)
    published(ours.loc["session", "estimate"], 10.467, 3)
    published(ours.loc["session", "se"], 1.546, 3)
    published(variance(result, "client", "(Intercept)")["vcov"], 612.09, 2)
    published(variance(result, "client", "session")["vcov"], 35.07, 2)
    published(variance(result, "client", "(Intercept)", "session")["sdcor"], 0.066, 3)
    published(variance(result, "residual", None)["vcov"], 654.94, 2)
    published(result.fit["reml_criterion"], 1743.628, 3)
    # the nested engine's optimizer (statsmodels' "lbfgs" before project issue 15)
    assert result.fit["optimizer"].startswith("TNC") and result.fit["warnings"] == []


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_sleepstudy_matches_lme4(method: str) -> None:
    options = MultilevelOptions(**TWO_LEVEL, reml=method == "REML")
    result = growth_model(sleepstudy(), "reaction", options)
    check_against_lme4(result, LME4["sleepstudy"]["fits"][method], {"Days": "session"},
                       {"Subject": "client"})


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_three_level_uncorrelated_matches_lme4(method: str) -> None:
    result = growth_model(threelevel(), "y", MultilevelOptions(reml=method == "REML"))
    check_against_lme4(result, LME4["threelevel_uncorrelated"]["fits"][method], {},
                       {"client": "client", "therapist": "therapist"})
    assert result.fit["n_clients"] == 250 and result.fit["n_therapists"] == 30


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_within_between_matches_lme4(method: str) -> None:
    options = MultilevelOptions(**TWO_LEVEL, reml=method == "REML")
    result = within_between_model(withinbetween(), "alliance", "symptoms", options)
    check_against_lme4(result, LME4["withinbetween"]["fits"][method], {},
                       {"client": "client"})


def test_three_level_correlated_slope_is_refused_clearly_by_statsmodels_only() -> None:
    """statsmodels' translation of the options (tutorials, tests) refuses the model it cannot
    express; the analyses fit it with the engine (lme4 check below)."""
    options = MultilevelOptions(correlated_slope=True)
    with pytest.raises(AllianceParamsError) as error:
        random_part(options, "session")
    message = str(error.value)
    for hint in ("statsmodels cannot fit", "correlated_slope: false",
                 "therapist_level: false", "client_slope: false", "nested engine"):
        assert hint in message
    result = growth_model(threelevel(), "y", options)
    assert result.fit["converged"] and "(1 + session | client_id)" in result.spec


def test_recovers_within_and_between_effects_of_the_simulation(tmp_path: Path) -> None:
    simulated = simulate(SimulationDesign(therapists=100, clients_per_therapist=10), seed=11)
    csv = write(simulated, tmp_path / "study")["sessions"]
    params = parse_params({"name": "t", "data": {"path": str(csv)}}, base_dir=tmp_path)
    sessions = prepare(params, tmp_path / "processed").sessions
    result = within_between_model(sessions, "wai", "phq9", MultilevelOptions())
    truth = simulated.truth["recovery_model"]["coefficients"]
    ours = estimates(result)
    assert result.fit["converged"] and result.fit["n_clients"] > 990
    for term in ("wai_within_lag1", "wai_between", "session"):
        assert abs(ours.loc[term, "estimate"] - truth[term]) < 3 * ours.loc[term, "se"], term


def test_zero_slope_variance_is_flagged_singular() -> None:
    # residuals mirror-symmetric in time within each client: every client's own least-squares
    # slope is exactly -0.5, so the estimated slope variance is at its boundary, zero
    rng = np.random.default_rng(5)
    clients = np.repeat(np.arange(60), 8)
    session = np.tile(np.arange(1, 9), 60)
    half = rng.normal(0, 1, (60, 4))
    residual = np.concatenate([half, half[:, ::-1]], axis=1).ravel()
    y = 10 + rng.normal(0, 2, 60)[clients] - 0.5 * session + residual
    data = pd.DataFrame({"client_id": [f"c{c}" for c in clients],
                         "therapist_id": [f"t{c % 6}" for c in clients],
                         "session": session, "y_total": y})
    for options in (MultilevelOptions(**TWO_LEVEL), MultilevelOptions()):
        with pytest.warns(ConvergenceWarning, match="SINGULAR FIT"):
            result = growth_model(data, "y", options)
        assert result.fit["singular"]
        assert any("SINGULAR FIT" in w for w in result.fit["warnings"])


def test_non_convergence_is_flagged_and_the_result_returned(monkeypatch) -> None:
    """The engine's max_iter cannot starve it (Newton polishing finishes the fit), so its
    optimizer is replaced by one stopping at the start."""
    monkeypatch.setattr(nested, "minimise", stopped_at_start)
    with pytest.warns(ConvergenceWarning, match="NOT CONVERGED"):
        result = growth_model(sleepstudy(), "reaction", MultilevelOptions(**TWO_LEVEL))
    assert result.fit["converged"] is False
    assert any(w.startswith("NOT CONVERGED") for w in result.fit["warnings"])
    assert list(result.extra["optimizer_attempts"]["optimizer"]) == ["TNC"]
    assert "did NOT converge" in result.to_markdown()


def statsmodels_growth(options: MultilevelOptions) -> ModelResult:
    """sleepstudy's growth model fitted by statsmodels (:mod:`~alliance_analysis.multilevel.mixedfit`,
    kept for the tutorials and as an independent check)."""
    data = sleepstudy().assign(session=lambda d: d["session"] - 1)
    result, _ = fit_mixed("growth", data, "reaction_total", ["session"],
                          random_part(options, "session"), options.reml, options.optimizers,
                          options.max_iter, options.ci_level)
    return result


def test_statsmodels_non_convergence_is_flagged_and_the_result_returned() -> None:
    options = MultilevelOptions(**TWO_LEVEL, optimizers=("lbfgs", "bfgs"), max_iter=1)
    with pytest.warns(ConvergenceWarning, match="NOT CONVERGED"):
        result = statsmodels_growth(options)
    assert result.fit["converged"] is False
    assert any(w.startswith("NOT CONVERGED") for w in result.fit["warnings"])
    assert any("ConvergenceWarning" in w for w in result.fit["warnings"])  # statsmodels' own
    assert list(result.extra["optimizer_attempts"]["optimizer"]) == ["lbfgs", "bfgs"]
    assert "did NOT converge" in result.to_markdown()


def test_a_failed_statsmodels_optimizer_is_followed_by_the_next_and_recorded() -> None:
    options = MultilevelOptions(**TWO_LEVEL, optimizers=("nm", "lbfgs"), max_iter=40)
    result = statsmodels_growth(options)
    attempts = result.extra["optimizer_attempts"]
    assert list(attempts["optimizer"]) == ["nm", "lbfgs"]
    assert result.fit["converged"] and result.fit["optimizer"] == "lbfgs"
    assert any("used after nm" in w for w in result.fit["warnings"])


def test_group_intercepts_are_lme4_conditional_modes() -> None:
    """Client random intercepts (BLUPs) of sleepstudy equal lme4's ranef(), tolerance 1e-3
    relative (plus 1e-3 absolute for modes near zero): they inherit the variance components'
    optimizer tolerance."""
    result = growth_model(sleepstudy(), "reaction", MultilevelOptions(**TWO_LEVEL))
    modes = LME4["sleepstudy"]["fits"]["REML"]["conditional_modes"]["Subject"]["(Intercept)"]
    table = result.extra["group_intercepts"].set_index("group")
    assert set(table.index) == set(modes) and (table["level"] == "client_id").all()
    for subject, value in modes.items():
        assert table.loc[subject, "estimate"] == pytest.approx(value, rel=1e-3, abs=1e-3)
    assert (table["ci_low"] < table["estimate"]).all() and (table["se"] > 0).all()


@pytest.mark.parametrize("reml", [True, False], ids=["REML", "ML"])
def test_engine_route_fits_the_correlated_three_level_model_as_lme4(reml: bool) -> None:
    """growth_model (the nested engine), against lme4's
    ``y ~ session + (1 + session | client) + (1 | therapist)`` (same tolerances)."""
    options = MultilevelOptions(correlated_slope=True, reml=reml)
    result = growth_model(threelevel(), "y", options)
    fit = LME4["threelevel_correlated"]["fits"]["REML" if reml else "ML"]
    ours = estimates(result)
    for term, values in fit["fixed_effects"].items():
        assert ours.loc[term, "estimate"] == pytest.approx(values["estimate"], rel=FIXED_RTOL)
        assert ours.loc[term, "se"] == pytest.approx(values["se"], rel=FIXED_RTOL)
    assert result.fit["loglik"] >= fit["logLik"] - 1e-6
    assert result.fit["converged"] and not result.fit["singular"]
