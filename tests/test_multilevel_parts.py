"""The parts behind the multilevel models: derived columns, the fitting machinery, ICCs,
rater agreement, dropout, and the report and readings of notebooks/03_multilevel."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from statsmodels.tools.numdiff import approx_fprime

from conftest import stopped_at_start
from alliance_analysis.multilevel import derive
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.icc import null_model_iccs
from alliance_analysis.instruments import get_instrument
from alliance_analysis.multilevel.engine import nested
from alliance_analysis.multilevel.mixedfit import SignSafeMixedLM, fit_mixed
from alliance_analysis.multilevel.models import (growth_model, early_alliance_slope,
                                                 random_part, therapist_effects,
                                                 within_between_model)
from alliance_analysis.change.dropout import dropout_severity_model
from alliance_analysis.data import clients as client_summaries
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.report.multilevel import present, reading, report_fits, report_model
from alliance_analysis.params import parse_params
from alliance_analysis.multilevel.perspectives import rater_agreement, rater_models
from alliance_analysis.data.prepare import prepare
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.data.simulate import SimulationDesign, simulate, write

REFERENCE = Path(__file__).resolve().parent / "reference"


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, object]:
    """A prepared simulated study (10 therapists x 8 clients) and its run parameters."""
    folder = tmp_path_factory.mktemp("study")
    design = SimulationDesign(therapists=10, clients_per_therapist=8, max_sessions=12)
    csv = write(simulate(design, seed=7), folder / "data")["sessions"]
    params = parse_params({"name": "t", "data": {"path": str(csv)}}, base_dir=folder)
    return prepare(params, folder / "processed").sessions, params


def table(rows: list[tuple[str, int, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["client_id", "session", "x_total"]).assign(
        therapist_id="t1")


# --- options ------------------------------------------------------------------------------

def test_options_refuse_unknown_keys_and_are_frozen() -> None:
    with pytest.raises(ValidationError):
        MultilevelOptions(random_slope=True)
    options = MultilevelOptions()
    with pytest.raises(ValidationError):
        options.reml = False  # type: ignore[misc]


def test_options_come_from_the_parameters_file(tmp_path: Path) -> None:
    data = tmp_path / "s.csv"
    data.write_text("client_id\n", encoding="utf-8")
    params = parse_params({"name": "t", "data": {"path": str(data)},
                           "multilevel": {"reml": False, "time": "log_session",
                                          "optimizers": ["bfgs", "lbfgs"]}}, tmp_path)
    assert params.multilevel.reml is False and params.multilevel.optimizers == ("bfgs", "lbfgs")


# --- derived columns ----------------------------------------------------------------------

def test_person_mean_centring_matches_the_fixture() -> None:
    data = pd.read_csv(REFERENCE / "ml_withinbetween.csv")
    frame = derive.in_session_order(pd.DataFrame({
        "client_id": data["client"], "session": data["session"] + 1,
        "alliance_total": data["alliance"]}))
    frame = derive.add_lag(derive.person_mean_centre(frame, "alliance"), ["alliance_within"])
    expected = data.sort_values(["client", "session"]).reset_index(drop=True)
    for column in ("alliance_between", "alliance_within", "alliance_within_lag1"):
        np.testing.assert_allclose(frame[column], expected[column], rtol=0, atol=1e-12)


def test_lag_is_the_previous_attended_session_and_never_reaches_further() -> None:
    frame = derive.in_session_order(table([("a", 1, 3.0), ("a", 2, None), ("a", 3, 4.0),
                                           ("a", 5, 5.0), ("b", 1, 2.0)]))
    lagged = derive.add_lag(frame, ["x_total"])
    assert lagged["x_lag1"].tolist()[:4] == pytest.approx([np.nan, 3.0, np.nan, 4.0],
                                                          nan_ok=True)
    assert np.isnan(lagged["x_lag1"].iloc[4])  # first session of client b
    assert derive.count_lag_gaps(frame) == 1  # 3 -> 5


def test_detrending_removes_each_clients_own_line() -> None:
    rows = [("a", s, 2 + 0.5 * s) for s in range(1, 6)] + [("b", 1, 3.0), ("b", 2, 4.0)]
    frame = derive.detrend(derive.in_session_order(table(rows)), "x")
    a, b = frame[frame["client_id"] == "a"], frame[frame["client_id"] == "b"]
    np.testing.assert_allclose(a["x_within"], 0, atol=1e-12)
    assert a["x_trend"].iloc[0] == pytest.approx(0.5)
    assert a["x_between"].iloc[0] == pytest.approx(3.5)
    assert b["x_within"].isna().all() and b["x_trend"].isna().all()  # fewer than 3 scores


def test_time_codes_and_client_summaries() -> None:
    frame = derive.in_session_order(table([("a", 1, None), ("a", 2, 10.0), ("a", 4, 6.0),
                                           ("b", 1, 8.0)]))
    assert derive.code_time(frame, "session", 1).tolist() == [0, 1, 3, 0]
    assert derive.code_time(frame, "log_session", 1).iloc[0] == 0
    clients = client_summaries.client_table(frame, "x").set_index("client_id")
    assert clients.loc["a", ["n_sessions", "x_baseline", "x_post"]].tolist() == [3, 10, 6]
    assert np.isnan(clients.loc["b", "x_post"])  # one observed score: no post value
    early = client_summaries.early_alliance(frame, "x_total", 2).set_index(
        "client_id")["early_alliance"]
    assert early["a"] == 10 and early["b"] == 8


def test_pomp_puts_scores_on_a_0_to_100_scale() -> None:
    assert derive.pomp(pd.Series([1.0, 5.0]), get_instrument("wai")).tolist() == [0, 100]
    assert derive.pomp(pd.Series([27.0]), get_instrument("phq9")).tolist() == [100]


# --- fitting machinery --------------------------------------------------------------------

def test_score_is_right_for_negative_root_parameters() -> None:
    data = pd.read_csv(REFERENCE / "ml_threelevel.csv")
    model = SignSafeMixedLM.from_formula(
        "y ~ session", data, groups="therapist", re_formula="1",
        vc_formula={"client": "0 + C(client)", "slope": "0 + C(client):session"})
    model.fit(method=["lbfgs"])  # sets the REML/penalty attributes loglike needs
    for point in ([0.5, 1.2, -0.2], [-0.5, -1.2, 0.2]):
        x = np.array(point)
        numeric = approx_fprime(x, lambda v: model.loglike(v), centered=True)
        np.testing.assert_allclose(model.score(x, profile_fe=True), numeric, rtol=1e-5)


def test_null_model_iccs_are_variance_shares_with_intervals() -> None:
    data = pd.read_csv(REFERENCE / "ml_threelevel.csv")
    data = pd.DataFrame({"client_id": data["client"], "therapist_id": data["therapist"],
                         "session": data["session"] + 1, "y_total": data["y"]})
    delta = null_model_iccs(data, "y", MultilevelOptions(), seed=1).set_index("level")
    assert set(delta.index) == {"therapist", "client"}
    assert ((delta["ci_low"] < delta["icc"]) & (delta["icc"] < delta["ci_high"])).all()
    assert (delta["icc"].sum() < 1) and (delta["ci_method"] == "delta").all()
    small = data[data["therapist_id"].isin(sorted(data["therapist_id"].unique())[:10])]
    options = MultilevelOptions(icc_ci="bootstrap", bootstrap_samples=10)
    first = null_model_iccs(small, "y", options, seed=3)
    again = null_model_iccs(small, "y", options, seed=3)
    pd.testing.assert_frame_equal(first, again)  # seeded
    assert ((first["ci_low"] <= first["icc"]) & (first["icc"] <= first["ci_high"])).all()
    assert first["note"].iloc[0].startswith("10 bootstrap refits, seed 3")


# --- model families on a small simulated study ---------------------------------------------

def test_options_change_the_within_between_model(study) -> None:
    sessions, _ = study
    options = MultilevelOptions(lagged_outcome=True, detrend=True, client_slope=False)
    result = within_between_model(sessions, "wai", "phq9", options)
    assert set(result.params["term"]) == {"(Intercept)", "session", "wai_within_lag1",
                                          "wai_between", "wai_trend", "phq9_lag1"}
    # the nested engine writes the random part in lme4's syntax with the ID columns
    assert "detrended" in result.spec and \
        "(1 | client_id) + (1 | therapist_id)" in result.spec


def test_therapist_effects_split_alliance_and_give_iccs(study) -> None:
    sessions, _ = study
    result = therapist_effects(sessions, "wai", "phq9", MultilevelOptions(), seed=1)
    ours = result.params.set_index("term")
    difference = ours.loc["wai_therapist_mean", "estimate"] - ours.loc[
        "wai_client_deviation", "estimate"]
    assert ours.loc["therapist_minus_client", "estimate"] == pytest.approx(difference)
    icc = result.extra["icc"]
    assert list(icc["measure"]) == ["wai_total", "wai_total", "phq9_total", "phq9_total",
                                    "phq9_post_adjusted"]
    assert result.fit["n_obs"] == result.fit["n_clients"]  # one row per client


def test_early_alliance_slope_is_a_cross_level_interaction(study) -> None:
    sessions, _ = study
    result = early_alliance_slope(sessions, "wai", "phq9", MultilevelOptions(time="day"))
    assert "day:wai_early" in set(result.params["term"])


def test_dropout_model_and_its_limits(study) -> None:
    from alliance_analysis.change.markers import dropout_rule, dropout_status
    from alliance_analysis.options import ChangeOptions
    from alliance_analysis.instruments import get_instrument

    sessions, _ = study
    options = ChangeOptions()
    status = dropout_status(sessions, options, get_instrument("phq9"))
    result = dropout_severity_model(sessions, "wai", "phq9", MultilevelOptions().early_sessions,
                                    status, definition=dropout_rule(options))
    assert {"odds_ratio", "or_ci_low", "or_ci_high"} <= set(result.params.columns)
    assert result.fit["n_obs"] == result.fit["n_clients"] and result.fit["converged"]
    modelled = status[status["last_session"] >= 5]
    assert result.fit["n_dropouts"] == int(modelled["dropout"].sum())
    assert "without reliable improvement" in result.spec
    nobody = dropout_severity_model(sessions, "wai", "phq9",
                                    MultilevelOptions(early_sessions=1).early_sessions,
                                    status.assign(dropout=False))
    assert nobody.fit["converged"] is False and nobody.params["estimate"].isna().all()
    assert nobody.fit["warnings"][0].startswith("NOT ESTIMABLE")


def test_rater_agreement_statistics(study) -> None:
    sessions, _ = study
    result = rater_agreement(sessions, "wai", "wai_t", MultilevelOptions(client_slope=False))
    ours = result.params.set_index("term")
    both = sessions.dropna(subset=["wai_total", "wai_t_total"])
    means = both.groupby("client_id")[["wai_total", "wai_t_total"]].mean()
    assert ours.loc["between_dyad_r", "estimate"] == pytest.approx(
        means.corr().iloc[0, 1], rel=1e-12)
    # repeated-measures correlation = partial correlation given client dummies
    centred = both[["wai_total", "wai_t_total"]] - both.groupby("client_id")[
        ["wai_total", "wai_t_total"]].transform("mean")
    assert ours.loc["within_dyad_r", "estimate"] == pytest.approx(
        np.corrcoef(centred["wai_total"], centred["wai_t_total"])[0, 1], rel=1e-9)
    pomp = (100 * (both["wai_total"] - 1) / 4 - 100 * (both["wai_t_total"] - 1) / 6)
    assert ours.loc["discrepancy_mean", "estimate"] == pytest.approx(
        pomp.groupby(both["client_id"]).mean().mean())
    assert {"discrepancy_intercept", "discrepancy_slope"} <= set(ours.index)


def test_rater_models_are_skipped_without_therapist_ratings(study) -> None:
    sessions, _ = study
    options = MultilevelOptions(therapist_rater=None)
    assert rater_models(sessions, "wai", "phq9", options) == []
    both = rater_models(sessions, "wai", "phq9", MultilevelOptions(client_slope=False))
    assert [r.name for r in both] == ["rater_agreement", "rater_within_between"]


# --- report and readings ------------------------------------------------------------------

def test_report_writes_tables_and_stable_keys(study, tmp_path: Path) -> None:
    sessions, params = study
    result = within_between_model(sessions, "wai", "phq9", params.multilevel)
    run = RunFolder(tmp_path / "run")
    shown = present(run, result, params)
    assert "fewer PHQ-9 points at the next session" in shown.data or \
        "more PHQ-9 points at the next session" in shown.data
    assert "95% CI" in shown.data
    stored = json.loads(run.results_file.read_text(encoding="utf-8"))
    for key in ("multilevel.within_between.wai_within_lag1.estimate",
                "multilevel.within_between.wai_between.ci_low",
                "multilevel.within_between.fit.converged",
                "multilevel.within_between.variance.residual.residual"):
        assert key in stored
    fits = report_fits(run, [result])
    assert fits.loc[0, "model"] == "within_between"
    for name in ("multilevel_within_between", "multilevel_within_between_variance_components",
                 "multilevel_fit", "multilevel_optimizer_attempts"):
        assert (run.path / "tables" / f"{name}.csv").is_file()


def test_reading_warns_first_when_a_fit_is_flagged(study, monkeypatch) -> None:
    sessions, params = study
    options = MultilevelOptions()
    # the engine's max_iter cannot starve it: replace its optimizer by one stopping at the start
    monkeypatch.setattr(nested, "minimise", stopped_at_start)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = within_between_model(sessions, "wai", "phq9", options)
    assert reading(result, params).startswith("**Caution: this fit did not converge")
    assert report_model(RunFolder(Path(params.data.path).parent / "run"), result)[
        "multilevel.within_between.fit.converged"] is False


def test_engine_route_matches_statsmodels_and_fits_the_correlated_three_level_model(study) -> None:
    """The analyses' engine fit gives the estimates of an independent statsmodels fit of the
    same data (:mod:`~alliance_analysis.multilevel.mixedfit`; fixed effects 1e-4 relative to
    max(|estimate|, SE), log-likelihood 1e-4: both fitters' optimizer tolerance) and fits the
    model statsmodels cannot express."""
    sessions, _ = study
    options = MultilevelOptions()
    ours_fit = within_between_model(sessions, "wai", "phq9", options)
    frame = derive.add_lag(derive.person_mean_centre(derive.in_session_order(sessions), "wai"),
                           ["wai_within"])
    frame = frame.assign(session=derive.code_time(frame, "session", 1))
    theirs_fit, _ = fit_mixed("within_between", frame, "phq9_total",
                              ["session", "wai_within_lag1", "wai_between"],
                              random_part(options, "session"), options.reml,
                              options.optimizers, options.max_iter, options.ci_level)
    ours, theirs = ours_fit.params.set_index("term"), theirs_fit.params.set_index("term")
    assert ours_fit.fit["n_obs"] == theirs_fit.fit["n_obs"]
    scale = np.maximum(theirs["estimate"].abs(), theirs["se"])
    assert ((ours["estimate"] - theirs["estimate"]).abs() <= 1e-4 * scale).all()
    assert ours_fit.fit["loglik"] >= theirs_fit.fit["loglik"] - 1e-4
    assert np.isnan(ours_fit.fit["aic"])  # REML: AIC/BIC left empty, as before
    options = MultilevelOptions(correlated_slope=True)
    with pytest.raises(AllianceParamsError, match="statsmodels cannot fit"):
        random_part(options, "session")
    correlated = growth_model(sessions, "phq9", options)
    assert correlated.fit["converged"] and "(1 + session | client_id)" in correlated.spec
    assert (correlated.extra["group_intercepts"]["level"] == "therapist_id").all()
