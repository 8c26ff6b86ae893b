"""The specification curve (issue 19): specifications from choices, fits equal to models:,
stored and resumed, identical on Dask, summarised; the joint test under the null."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from alliance_analysis.data.prepare import prepare
from alliance_analysis.data.simulate import SimulationDesign, simulate, write
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.specified import fit_model
from alliance_analysis.params import load_params
from alliance_analysis.robustness import curve as robustness_curve
from alliance_analysis.robustness.curve import (RESULT_COLUMNS, joint_test, model_spec,
                                                run_curve, summarize)
from alliance_analysis.specs import ModelSpec, RobustnessSpec
from conftest import write_params

SECTION = {
    "formula": "phq9_total ~ I(session - 1) + {alliance}_within_lag1 + {alliance}_between "
               "{covariates} + (1 | client_id)",
    "target": "{alliance}_within_lag1",
    "choices": {"alliance": ["wai_total", "wai_bond"], "covariates": ["", "+ C(arm)"]},
    "where": ["session <= 10", "session <= 6"],
    "preregistered": {"alliance": "wai_total", "covariates": "", "where": "session <= 10"},
}


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("robustness")
    design = SimulationDesign(therapists=6, clients_per_therapist=6, max_sessions=10)
    data = write(simulate(design, seed=8), folder / "study")["sessions"]
    return prepare(load_params(write_params(folder, data)), folder / "processed").sessions


@pytest.fixture(scope="module")
def section() -> RobustnessSpec:
    return RobustnessSpec.model_validate(SECTION)


@pytest.fixture(scope="module")
def curve(sessions, section) -> pd.DataFrame:
    return run_curve(sessions, section, progress=False)


def test_choices_expand_in_a_fixed_order(section):
    specs = section.specifications()
    assert section.n_specifications() == len(specs) == 8
    assert specs[1]["choices"] == {"alliance": "wai_total", "covariates": "+ C(arm)"}
    assert specs[1]["formula"] == ("phq9_total ~ I(session - 1) + wai_total_within_lag1 + "
                                   "wai_total_between + C(arm) + (1 | client_id)")
    assert specs[4]["where"] == "session <= 6" and specs[2]["target"] == "wai_bond_within_lag1"
    assert [section.is_preregistered(s) for s in specs].count(True) == 1


@pytest.mark.parametrize("change, message", [
    ({"target": "{scale}_within_lag1"}, r"placeholder\(s\) \['scale'\] have no choices"),
    ({"choices": {**SECTION["choices"], "lag": ["1", "2"]}}, r"choices \['lag'\] appear in "
                                                            "neither"),
    ({"max_specifications": 4}, r"8 specifications exceed max_specifications \(4\); fit "
                                "them all with confirm: true"),
    ({"preregistered": {"alliance": "wai_goal", "covariates": "", "where": "session <= 10"}},
     r"preregistered values \{'alliance': 'wai_goal'\} are not among the choices"),
    ({"choices": {"alliance": ["wai_total", "wai_bond"], "covariates": ["", "+ C(arm"]}},
     r"invalid formula in specification 2 \(alliance='wai_total', covariates='\+ C\(arm'\)"),
])
def test_bad_sections_are_refused_with_what_to_do(change, message):
    with pytest.raises(ValidationError, match=message):
        RobustnessSpec.model_validate({**SECTION, **change})
    assert RobustnessSpec.model_validate({**SECTION, "max_specifications": 4, "confirm": True})


def test_every_specification_equals_its_models_entry(sessions, section, curve):
    assert list(curve.columns[-len(RESULT_COLUMNS):]) == list(RESULT_COLUMNS)
    assert curve["converged"].all() and curve["preregistered"].sum() == 1
    for k in (1, 6):
        spec = section.specifications()[k - 1]
        direct = fit_model(sessions, "direct", model_spec(section, spec)).params
        row = direct.set_index("term").loc[spec["target"]]
        got = curve.set_index("spec_id").loc[k]
        for column in ("estimate", "se", "ci_low", "ci_high", "df", "p"):
            assert got[column] == row[column], column


def test_chunks_are_stored_and_a_rerun_resumes(sessions, section, curve, tmp_path, monkeypatch):
    first = run_curve(sessions, section, tmp_path, progress=False)
    pd.testing.assert_frame_equal(first, curve)
    stored = sorted(p.name for p in next(tmp_path.iterdir()).iterdir())
    assert stored == ["specs-1-8.parquet"]

    def no_fit(*args, **kwargs):
        raise AssertionError("a stored specification was fitted again")

    monkeypatch.setattr(robustness_curve, "fit_chunk", no_fit)
    # nor checked again: the run that stored them checked this data and these specifications
    monkeypatch.setattr(robustness_curve, "check_curve", no_fit)
    pd.testing.assert_frame_equal(run_curve(sessions, section, tmp_path, progress=False), curve)


@pytest.mark.slow
def test_dask_gives_the_same_rows(sessions, curve):
    on_dask = RobustnessSpec.model_validate({**SECTION, "chunk_size": 3,
                                             "dask": {"scheduler": "local", "workers": 2}})
    pd.testing.assert_frame_equal(run_curve(sessions, on_dask, progress=False), curve)


def test_summary_by_hand(curve, section):
    summary = summarize(curve, section).iloc[0]
    estimates = curve["estimate"]
    pre = curve.loc[curve["preregistered"], "estimate"].iloc[0]
    sign = np.sign(pre)
    assert summary["n_specifications"] == 8 and summary["n_estimated"] == 8
    assert summary["median_estimate"] == pytest.approx(estimates.median())
    assert summary["share_preregistered_sign"] == pytest.approx((np.sign(estimates) == sign)
                                                                .mean())
    assert summary["share_significant_same_sign"] == pytest.approx(
        ((np.sign(estimates) == sign) & (curve["p"] < 0.05)).mean())
    assert summary["preregistered_rank"] == int((estimates < pre).sum()) + 1


def test_missing_columns_are_named_before_any_fit(sessions):
    bad = RobustnessSpec.model_validate({**SECTION, "choices": {
        "alliance": ["wai_total", "srs"], "covariates": [""]}, "preregistered": None})
    with pytest.raises(AllianceParamsError, match="spec_2"):
        run_curve(sessions, bad, progress=False)


def test_joint_test_under_the_null_is_seeded(sessions, section, curve):
    small = RobustnessSpec.model_validate({**SECTION, "where": None, "preregistered": None,
                                           "choices": {"alliance": ["wai_total"],
                                                       "covariates": ["", "+ C(arm)"]}})
    rows = run_curve(sessions, small, progress=False)
    test, refits = joint_test(sessions, rows, small, resamples=2, seed=3, progress=False)
    again, _ = joint_test(sessions, rows, small, resamples=2, seed=3, progress=False)
    pd.testing.assert_frame_equal(test, again)
    assert len(refits) == 4 and refits["estimate"].notna().all()
    assert 0 <= test["p_median"].iloc[0] <= 1
    # with the effect removed the null estimates sit far closer to 0 than the observed ones
    assert refits["estimate"].abs().median() < rows["estimate"].abs().median()


def test_cache_is_outside_the_transactional_folders():
    from alliance_analysis.robustness.curve import cache_folder

    assert cache_folder("data/processed/demo.partial") == Path("data/processed/demo.cache/"
                                                                "robustness")
    assert cache_folder("data/processed/demo") == Path("data/processed/demo.cache/robustness")


TWO = {"formula": "phq9_total ~ I(session - 1) + wai_total_within_lag1 + wai_total_between "
                  "{covariates} + (1 | client_id)",
       "target": "wai_total_within_lag1", "choices": {"covariates": ["", "+ C(arm)"]}}


def _study(tmp_path_factory, within_effect: float, seed: int) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp(f"study{seed}")
    design = SimulationDesign(therapists=6, clients_per_therapist=6, max_sessions=10,
                              within_effect=within_effect)
    data = write(simulate(design, seed=seed), folder / "study")["sessions"]
    return prepare(load_params(write_params(folder, data)), folder / "processed").sessions


def test_two_specifications_equal_the_two_models_fitted_directly(sessions):
    two = RobustnessSpec.model_validate(TWO)
    rows = run_curve(sessions, two, progress=False).set_index("spec_id")
    for k, covariates in ((1, ""), (2, " + C(arm)")):
        formula = ("phq9_total ~ I(session - 1) + wai_total_within_lag1 + wai_total_between"
                   f"{covariates} + (1 | client_id)")
        direct = fit_model(sessions, "direct", ModelSpec(formula=formula)).params
        row = direct.set_index("term").loc["wai_total_within_lag1"]
        assert rows.loc[k, "formula"] == formula
        for column in ("estimate", "se", "ci_low", "ci_high", "df", "p"):
            assert rows.loc[k, column] == row[column], (k, column)


def test_joint_test_on_a_null_effect_simulation(tmp_path_factory):
    """Data simulated with no within-client effect: the curve is not jointly significant;
    the same design with a clear effect (-3) is. The draws do not depend on the pseudonym
    key (clients are ordered by their first input row), so the outcome is fixed."""
    two = RobustnessSpec.model_validate(TWO)
    tests = {}
    for effect in (0.0, -3.0):
        study = _study(tmp_path_factory, effect, seed=21)
        rows = run_curve(study, two, progress=False)
        tests[effect], _ = joint_test(study, rows, two, resamples=19, seed=5, progress=False)
    null, real = tests[0.0].iloc[0], tests[-3.0].iloc[0]
    assert null["p_median"] > 0.05 and null["p_n_significant"] > 0.05
    assert real["p_median"] < 0.05 and real["observed_n_significant"] == 2


def test_a_target_that_is_not_a_fixed_column_is_refused(sessions):
    odd = RobustnessSpec.model_validate({**TWO, "target": "C(arm)"})
    with pytest.raises(AllianceParamsError, match=r"the target must be a numeric column of the "
                                                  r"formula's fixed part .* spec_1: target "
                                                  r"'C\(arm\)'"):
        run_curve(sessions, odd, progress=False)
