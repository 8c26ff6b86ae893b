"""Degenerate but real data: the models flag what the data cannot identify, the run goes on.

One therapist (every three-level model and the therapist-clustered logit are not
estimable), an outcome without variance, and too few clients for a measurement model: each
model comes back ``NOT ESTIMABLE`` with its reason, the report writes its tables and a
placeholder figure naming the reason, and nothing raises (issue 20). The whole pipeline on
one therapist's clients is checked in-process here; a real run behaves the same (the
notebooks call these functions).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis.change.dropout import dropout_severity_model
from alliance_analysis.change.markers import dropout_rule, dropout_status
from alliance_analysis.data.prepare import prepare
from alliance_analysis.multilevel.models import (MultilevelResults, alliance_growth,
                                                 early_alliance_slope, growth_model,
                                                 therapist_effects, within_between_model)
from alliance_analysis.multilevel.specified import fit_models
from alliance_analysis.params import load_params
from alliance_analysis.report.models import report_models
from alliance_analysis.report.multilevel import report_multilevel, show
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.report.sem import report_sem, report_sem_models
from alliance_analysis.results import is_estimated
from alliance_analysis.sem.models import fit_cfa
from alliance_analysis.sem.panel import SemResults, fit_growth, fit_panel
from alliance_analysis.sem.specified import fit_sem_models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params" / "demo.yaml")


@pytest.fixture(scope="module")
def one_therapist(params, tmp_path_factory) -> pd.DataFrame:
    sessions = prepare(params, tmp_path_factory.mktemp("p")).sessions
    return sessions[sessions["therapist_id"] == sessions["therapist_id"].iloc[0]]


def _multilevel(sessions: pd.DataFrame, params) -> dict:
    m, a, s = params.multilevel, params.alliance, params.symptoms
    status = dropout_status(sessions, params.change, params.measures()[1])
    return {
        "growth": growth_model(sessions, s, m),
        "within_between": within_between_model(sessions, a, s, m),
        "therapist_effects": therapist_effects(sessions, a, s, m, params.seed),
        "alliance_growth": alliance_growth(sessions, a, m, params.seed),
        "early_alliance_slope": early_alliance_slope(sessions, a, s, m),
        "dropout": dropout_severity_model(sessions, a, s, m.early_sessions, status, m.ci_level,
                                          dropout_rule(params.change)),
    }


def test_one_therapist_flags_every_model_and_the_report_is_written(one_therapist, params,
                                                                    tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = _multilevel(one_therapist, params)
        own = fit_models(one_therapist, params.models, params.comparisons,
                         early_sessions=params.multilevel.early_sessions)
        builtin = params.builtin_sem()
        sem = SemResults(
            cfa=fit_cfa(one_therapist, params.measures()[0], builtin.cfa.cfa_session),
            panel=fit_panel(one_therapist, *params.measures(), builtin.panel),
            growth=fit_growth(one_therapist, params.measures()[1], params.measures()[0],
                              builtin.growth),
            alliance=params.measures()[0], symptoms=params.measures()[1])
        own_sem = fit_sem_models(one_therapist, params.own_sem_models())
    for name, result in models.items():
        assert not is_estimated(result), name
        reason = result.fit["warnings"][0]
        assert reason.startswith("NOT ESTIMABLE: ") and ("therapist_id" in reason), reason
        assert "Not estimable" in show(result, params).data
    assert all(not is_estimated(r) for r in own.results.values())
    assert not is_estimated(sem.cfa.results["one_factor"])
    run = RunFolder(tmp_path, stage="03_multilevel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report_multilevel(MultilevelResults(models, params), run)
        report_models(own, run)
        report_sem(sem, run)
        report_sem_models(own_sem, run)
    fits = pd.read_csv(tmp_path / "tables" / "multilevel_fit.csv")
    assert fits["warnings"].str.contains("NOT ESTIMABLE").all()
    assert (tmp_path / "figures" / "multilevel_within_between.png").is_file()
    index = run.outputs()
    flagged = [f for kind in index.values() for entry in kind.values()
               for f in entry.get("flags", []) if any("NOT ESTIMABLE" in w for w in f["warnings"])]
    assert len(flagged) >= 10


def test_outcome_without_variance_is_flagged(one_therapist, params):
    constant = one_therapist.assign(phq9_total=10.0)
    options = params.multilevel.model_copy(update={"therapist_level": False})
    with pytest.warns(UserWarning, match="growth: not estimable: the outcome has no variance"):
        result = growth_model(constant, params.symptoms, options)
    assert result.fit["warnings"] == ["NOT ESTIMABLE: the outcome has no variance (every "
                                      "value is 10); no model of it can be fitted"]
    assert result.params.empty and result.fit["n_clients"] == constant["client_id"].nunique()
