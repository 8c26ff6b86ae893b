"""The APA model tables of ``models:`` (report/models.py), ``labels:``, and the captions of
every table and figure the multilevel stage writes (report/models.py, report/multilevel.py).

The numbers in these tables are the fitted model's own (checked against lme4 and lmerTest in
``test_formula_models`` and ``test_r2``); here the tests check that each lands in the right
row and column, exactly (tolerance 0: the same floats are copied).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.data.prepare import prepare
from alliance_analysis.data.simulate import SimulationDesign, simulate, write
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.models import growth_model, within_between_model
from alliance_analysis.multilevel.r2 import model_r2
from alliance_analysis.multilevel.specified import (SpecifiedModels, fit_models, fixed_table,
                                                    prepare_model)
from alliance_analysis.options import ModelSpec
from alliance_analysis.params import parse_params
from alliance_analysis.results import ModelResult
from alliance_analysis.report.models import (APA_COLUMNS, BLOCK_COLUMNS, apa_table, label_term,
                                             relabelled, report_models, side_by_side)
from alliance_analysis.report.multilevel import report_fits, report_model, write_figures
from alliance_analysis.report.runfolder import RunFolder

HERE = Path(__file__).parent / "reference"
THREELEVEL = HERE / "ml_threelevel.csv"
LABELS = {"session": "Session", "client_id": "Client", "therapist_id": "Therapist",
          "y": "Symptoms"}
MODELS = {
    "slopes": ModelSpec(formula="y ~ session + (1 + session | client_id) + (1 | therapist_id)"),
    "intercepts": ModelSpec(formula="y ~ session + (1 | client_id) + (1 | therapist_id)"),
    "slopes_ml": ModelSpec(formula="y ~ session + (1 + session | client_id) + (1 | therapist_id)",
                           reml=False),
    "null_ml": ModelSpec(formula="y ~ 1 + (1 | client_id) + (1 | therapist_id)", reml=False),
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(THREELEVEL).rename(columns={"client": "client_id",
                                                   "therapist": "therapist_id"})


@pytest.fixture(scope="module")
def fitted(data: pd.DataFrame):
    return fit_models(data, MODELS, (("slopes", "intercepts"),))


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("params")
    return parse_params({"name": "t", "data": {"path": str(THREELEVEL)}, "labels": LABELS},
                        folder)


@pytest.fixture(scope="module")
def written(fitted, data: pd.DataFrame, params, tmp_path_factory: pytest.TempPathFactory):
    run = RunFolder(tmp_path_factory.mktemp("run"), stage="03_multilevel")
    report_models(fitted, run, params=params)
    return run


def _r2(fitted, data, name):
    return model_r2(prepare_model(data, name, MODELS[name]), fitted.results[name])


# --- the table of one model ----------------------------------------------------------------

def test_apa_table_rows_and_columns(fitted, data: pd.DataFrame) -> None:
    result, spec = fitted.results["slopes"], MODELS["slopes"]
    r2 = _r2(fitted, data, "slopes")
    table = apa_table(result, spec, LABELS, r2)
    assert tuple(table.columns) == APA_COLUMNS
    assert list(table["part"].unique()) == ["fixed", "random", "fit"]
    fixed = table[table["part"] == "fixed"]
    expected = fixed_table(result)
    assert list(fixed["term"]) == ["Intercept", "Session"]
    for column in ("estimate", "se", "ci_low", "ci_high", "df", "p"):
        np.testing.assert_array_equal(fixed[column].astype(float), expected[column])
    random = table[table["part"] == "random"]
    assert list(zip(random["term"], random["statistic"], strict=True)) == [
        ("Client: Intercept", "variance"), ("Client: Intercept", "SD"),
        ("Client: Session", "variance"), ("Client: Session", "SD"),
        ("Client: Intercept with Session", "r"),
        ("Therapist: Intercept", "variance"), ("Therapist: Intercept", "SD"),
        ("Residual", "variance"), ("Residual", "SD"), ("Client", "ICC"), ("Therapist", "ICC")]
    vc = result.extra["variance_components"]
    variances = random[random["statistic"] == "variance"]["estimate"].astype(float)
    np.testing.assert_array_equal(variances, vc.loc[vc["term2"].isna(), "vcov"])
    sds = random[random["statistic"] == "SD"]["estimate"].astype(float)
    np.testing.assert_allclose(sds, np.sqrt(variances), rtol=1e-15)
    intercepts = vc[(vc["term"] == "(Intercept)") & vc["term2"].isna()]["vcov"].to_numpy()
    residual = vc.loc[vc["level"] == "residual", "vcov"].iloc[0]
    icc = random[random["statistic"] == "ICC"]["estimate"].astype(float).to_numpy()
    np.testing.assert_allclose(icc, intercepts / (intercepts.sum() + residual), rtol=1e-15)
    fit = table[table["part"] == "fit"].set_index("term")
    assert list(fit.index) == ["Sessions", "Clients", "Therapists", "Marginal R²",
                               "Conditional R²", "AIC", "BIC", "Log-likelihood"]
    assert [fit.loc[k, "estimate"] for k in ("Sessions", "Clients", "Therapists")] == \
        [2020, 250, 30]
    assert all(isinstance(fit.loc[k, "estimate"], int) for k in ("Sessions", "Clients"))
    assert fit.loc["Marginal R²", "estimate"] == r2.r2_marginal
    assert fit.loc["Conditional R²", "estimate"] == r2.r2_conditional
    assert fit.loc["AIC", "estimate"] == result.fit["aic"]
    assert fit.loc["Log-likelihood", "estimate"] == result.fit["loglik"]


def test_apa_table_without_labels_keeps_the_terms(fitted) -> None:
    table = apa_table(fitted.results["intercepts"], MODELS["intercepts"])
    assert list(table.loc[table["part"] == "fixed", "term"]) == ["Intercept", "session"]
    assert "client_id: Intercept" not in set(table["term"])  # grouping columns get a name
    assert "Client: Intercept" in set(table["term"])
    assert table.loc[table["statistic"] == "R2", "estimate"].isna().all()  # no R2 given


def test_labels_rename_terms_interactions_and_factor_levels() -> None:
    labels = {"I(session - 1)": "Session", "arm": "Arm", "wai_between": "Alliance (between)"}
    assert label_term("(Intercept)", labels) == "Intercept"
    assert label_term("I(session - 1)", labels) == "Session"
    assert label_term("I(session - 1):wai_between", labels) == "Session × Alliance (between)"
    assert label_term("C(arm)[T.PDT]", labels) == "Arm [PDT]"
    assert label_term("arm[T.PDT]", {}) == "arm [PDT]"
    assert label_term("I(session - 1):wai_between", {"I(session - 1):wai_between": "x"}) == "x"
    assert label_term("unlisted", labels) == "unlisted"


def test_figures_show_labels_without_changing_the_result(fitted) -> None:
    result = fitted.results["slopes"]
    shown = relabelled(result, LABELS)
    assert list(shown.params["term"]) == ["Intercept", "Session"]
    assert list(result.params["term"]) == ["(Intercept)", "session"]


# --- the run folder ------------------------------------------------------------------------

def test_report_writes_apa_tables_r2_and_captions(written: RunFolder, fitted,
                                                  data: pd.DataFrame) -> None:
    tables = written.path / "tables"
    for name in MODELS:
        csv = pd.read_csv(tables / f"model_{name}_apa.csv")
        assert tuple(csv.columns) == APA_COLUMNS
        assert "Session" in set(csv["term"]) or name == "null_ml"
        for suffix in (".md", ".tex", ".html"):
            assert (tables / f"model_{name}_apa{suffix}").is_file()
    results = written.results()
    for name in MODELS:
        r2 = _r2(fitted, data, name)
        assert results[f"models.{name}.r2_marginal"] == r2.r2_marginal
        assert results[f"models.{name}.r2_conditional"] == r2.r2_conditional
    assert results["models.null_ml.r2_marginal"] == 0.0
    shown = (tables / "model_slopes_apa.md").read_text(encoding="utf-8")
    assert "Satterthwaite" in shown and "REML" in shown and "Nakagawa" in shown
    assert "Symptoms" in shown.splitlines()[0]  # the outcome's label in the caption
    index = written.outputs()
    untitled = [name for kind in index.values() for name, entry in kind.items()
                if not entry["title"]]
    assert untitled == []


def test_models_of_one_outcome_side_by_side(written: RunFolder) -> None:
    wide = pd.read_csv(written.path / "tables" / "models_y_apa.csv")
    assert list(wide.columns[:3]) == ["part", "term", "statistic"]
    assert list(wide.columns[3:]) == [f"{m}_{c}" for m in MODELS for c in BLOCK_COLUMNS]
    rows = wide.set_index(["term", "statistic"])
    assert np.isnan(rows.loc[("Client: Session", "variance"), "intercepts_estimate"])
    assert rows.loc[("Client: Session", "variance"), "slopes_estimate"] > 0
    assert "AIC" not in set(wide["statistic"])  # REML and ML fits: not comparable
    text = (written.path / "tables" / "models_y_apa.md").read_text(encoding="utf-8")
    assert "slopes: 95% CI" in text and "AIC and BIC are left out" in text


def test_side_by_side_keeps_aic_of_comparable_fits(fitted) -> None:
    tables = {name: apa_table(fitted.results[name], MODELS[name])
              for name in ("slopes_ml", "null_ml")}
    wide = side_by_side(tables, comparable=True)
    aic = wide.set_index("statistic").loc["AIC"]
    assert aic["slopes_ml_estimate"] == fitted.results["slopes_ml"].fit["aic"]
    assert aic["null_ml_estimate"] == fitted.results["null_ml"].fit["aic"]
    assert list(wide["part"]) == sorted(wide["part"], key=["fixed", "random", "fit"].index)


def test_report_takes_r2_from_the_fit_without_the_session_table(fitted,
                                                               tmp_path: Path) -> None:
    """fit_model computes R2 on the rows it fitted; the report needs nothing else, and a
    result without it (built elsewhere) says R2 was not computed instead of guessing."""
    run = RunFolder(tmp_path / "a", stage="03_multilevel")
    report_models(fitted, run)
    assert 0 < run.results()["models.slopes.r2_marginal"] < 1
    bare = SpecifiedModels(
        {name: ModelResult(r.name, r.params, r.fit, r.spec,
                           {k: v for k, v in r.extra.items() if k != "r2"})
         for name, r in fitted.results.items()}, fitted.specs, fitted.comparisons)
    run = RunFolder(tmp_path / "b", stage="03_multilevel")
    report_models(bare, run)
    assert run.results()["models.slopes.r2_marginal"] is None  # NaN is stored as null
    assert "R² not computed" in (tmp_path / "b" / "tables" / "model_slopes_apa.md").read_text(
        encoding="utf-8")


# --- labels: in the parameters -------------------------------------------------------------

@pytest.mark.parametrize("labels, message", [
    (["session"], "must be a mapping of a term to its readable label"),
    ({"session": 3}, "'session': 3"),
    ({"session": ""}, "no label empty"),
    ({1: "One"}, "1: 'One'"),
])
def test_labels_must_map_text_to_text(tmp_path: Path, labels, message: str) -> None:
    with pytest.raises(AllianceParamsError, match="labels") as error:
        parse_params({"name": "t", "data": {"path": str(THREELEVEL)}, "labels": labels},
                     tmp_path)
    assert message in str(error.value)


def test_labels_default_to_none(tmp_path: Path) -> None:
    params = parse_params({"name": "t", "data": {"path": str(THREELEVEL)}}, tmp_path)
    assert params.labels == {}


# --- captions of the built-in multilevel tables and figures --------------------------------

def test_every_multilevel_table_and_figure_has_a_caption(tmp_path: Path) -> None:
    design = SimulationDesign(therapists=6, clients_per_therapist=6, max_sessions=10)
    csv = write(simulate(design, seed=11), tmp_path / "data")["sessions"]
    params = parse_params({"name": "t", "data": {"path": str(csv)},
                           "labels": {"wai_between": "Alliance (between)"}}, tmp_path)
    sessions = prepare(params, tmp_path / "processed").sessions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {"growth": growth_model(sessions, params.symptoms, params.multilevel),
                  "within_between": within_between_model(sessions, params.alliance,
                                                         params.symptoms, params.multilevel)}
    run = RunFolder(tmp_path / "run", stage="03_multilevel")
    for result in models.values():
        report_model(run, result)
    report_fits(run, list(models.values()))
    write_figures(run, models, params)
    index = json.loads((tmp_path / "run" / "outputs.json").read_text(encoding="utf-8"))
    titles = {name: entry["title"] for kind in index.values() for name, entry in kind.items()}
    assert "multilevel_within_between_variance_components" in titles
    assert {name for name, title in titles.items() if not title} == set()
    assert titles["multilevel_within_between"].startswith("Fixed effects") is False
    assert "within/between model" in titles["multilevel_coefficients_within_between"]
