"""Researchers' own SEMs (``sem_models:``): syntax or generated, checked, fitted, written."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.options import SemModelSpec
from alliance_analysis.params import parse_params
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.report.sem import report_sem_models
from alliance_analysis.sem.models import fit_sem
from alliance_analysis.sem.specified import (check_sem_models, fit_sem_model, fit_sem_models,
                                             parameter_table)

ROOT = Path(__file__).resolve().parents[1]
HS = pd.read_csv(ROOT / "data" / "reference" / "HolzingerSwineford1939.csv")
LAVAAN = json.loads((ROOT / "tests" / "reference" / "sem_lavaan.json").read_text())["models"]
SYNTAX = ("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9")


def _as_sessions(frame: pd.DataFrame) -> pd.DataFrame:
    """A cross-sectional data set as one session of a session table."""
    return frame.assign(client_id=frame["id"].astype(str), therapist_id="t", session=1)


def test_syntax_model_equals_fit_sem_and_lavaan() -> None:
    spec = SemModelSpec(syntax=SYNTAX, session=1, missing="listwise")
    result = fit_sem_model(_as_sessions(HS), "hs", spec)
    direct = fit_sem(SYNTAX, HS, "hs", missing="listwise")
    assert result.fit["chi2"] == pytest.approx(direct.fit["chi2"], rel=1e-12)
    reference = LAVAAN["hs_cfa"]["fit_measures"]
    assert result.fit["chi2"] == pytest.approx(reference["chisq"], rel=1e-5)
    assert result.fit["cfi"] == pytest.approx(reference["cfi"], rel=1e-5)
    table = parameter_table(result)
    assert list(table.columns) == ["lhs", "op", "rhs", "group", "label", "est", "se", "z",
                                   "p", "std_all"]
    row = table[(table.lhs == "visual") & (table.rhs == "x2")].iloc[0]
    lavaan = next(r for r in LAVAAN["hs_cfa"]["parameters"]
                  if (r["lhs"], r["op"], r["rhs"]) == ("visual", "=~", "x2"))
    assert row["est"] == pytest.approx(lavaan["est"], rel=1e-4)
    assert row["se"] == pytest.approx(lavaan["se"], rel=1e-3)
    assert row["std_all"] == pytest.approx(lavaan["std.all"], rel=1e-4)


@pytest.mark.parametrize("raw, message", [
    ({"syntax": "visual x1 + x2"}, r"line 1 of the model syntax is not 'left operator right'"),
    ({"syntax": SYNTAX}, r"needs session"),
    ({"syntax": SYNTAX, "session": 1, "generate": "riclpm"}, r"either syntax .* or generate"),
    ({"generate": "riclpm", "y": "phq9_total", "waves": [1, 2, 3]}, r"needs x"),
    ({"generate": "growth", "y": "phq9_total", "waves": [1, 3, 2]}, r"increasing order"),
])
def test_bad_specifications_are_refused_when_the_parameters_load(tmp_path: Path, raw: dict,
                                                                 message: str) -> None:
    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    with pytest.raises(AllianceParamsError, match=message):
        parse_params({"name": "t", "data": {"path": str(data)}, "sem_models": {"m": raw}},
                     base_dir=tmp_path)


def test_data_problems_are_named_before_any_fit() -> None:
    sessions = _as_sessions(HS).assign(x9=HS["x9"].astype(str))
    models = {"absent": SemModelSpec(syntax="f =~ x1 + x2 + x99", session=1),
              "later": SemModelSpec(syntax=SYNTAX, session=4),
              "text": SemModelSpec(syntax=SYNTAX, session=1)}
    with pytest.raises(AllianceParamsError) as caught:
        check_sem_models(sessions, models)
    text = str(caught.value)
    assert "sem_models.absent: ['x99'] not in the session table" in text
    assert "sem_models.later: no rows at session(s) [4]" in text
    assert "sem_models.text: ['x9'] are not numeric" in text


def test_generated_models_write_their_tables(tmp_path: Path) -> None:
    from alliance_analysis.data.prepare import prepare
    from alliance_analysis.params import load_params

    sessions = prepare(load_params(ROOT / "params" / "demo.yaml"), tmp_path / "p").sessions
    models = {"riclpm4": SemModelSpec(generate="riclpm", x="wai_total", y="phq9_total",
                                      waves=(1, 2, 3, 4)),
              "growth": SemModelSpec(generate="growth", y="phq9_total", waves=(1, 2, 3, 4))}
    fitted = fit_sem_models(sessions, models)
    assert fitted.results["riclpm4"].fit["converged"]
    report_sem_models(fitted, RunFolder(tmp_path, stage="04_sem"))
    fit = pd.read_csv(tmp_path / "tables" / "sem_riclpm4_fit.csv")
    assert {"chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr", "loglik", "aic",
            "bic", "npar"} <= set(fit.columns) and len(fit) == 1
    params = pd.read_csv(tmp_path / "tables" / "sem_riclpm4_params.csv")
    assert {"=~", "~", "~~"} <= set(params["op"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["sem.riclpm4.chisq"] == pytest.approx(fit["chisq"].iloc[0])
    assert results["sem.growth.df"] == fitted.results["growth"].fit["df"]


def test_mlr_through_sem_models_equals_lavaan() -> None:
    """lavaan 0.6-14 cfa(..., estimator = "MLR") on HolzingerSwineford1939 (sem2 fixture)."""
    reference = json.loads((ROOT / "tests" / "reference" / "sem2_lavaan.json").read_text())
    case = reference["models"]["hs_mlr"] if "models" in reference else reference["cases"]["hs_mlr"]
    measures = case["fit_measures"]
    spec = SemModelSpec(syntax=SYNTAX, session=1, estimator="MLR", missing="listwise")
    result = fit_sem_model(_as_sessions(HS), "hs", spec)
    assert result.fit["estimator"] == "MLR"
    for ours, lavaan in (("chisq_scaled", "chisq.scaled"),
                         ("scaling_factor", "chisq.scaling.factor"),
                         ("cfi_robust", "cfi.robust"), ("rmsea_robust", "rmsea.robust")):
        assert result.fit[ours] == pytest.approx(measures[lavaan], rel=1e-3), ours
    from alliance_analysis.report.sem import sem_fit_row

    row = sem_fit_row("hs", result).iloc[0]
    assert row["chisq_scaled"] == pytest.approx(measures["chisq.scaled"], rel=1e-3)


def test_longitudinal_invariance_through_sem_models(tmp_path: Path) -> None:
    """sessions: + invariance: reproduce lavaan/semTools measEq.syntax over 3 occasions."""
    wide = pd.read_csv(ROOT / "tests" / "reference" / "sem2_longitudinal.csv")
    wide = wide.reset_index().rename(columns={"index": "row"})
    long = pd.concat([
        pd.DataFrame({"client_id": wide["row"].astype(str), "therapist_id": "t", "session": t,
                      **{f"i{i}": wide[f"i{i}_t{t}"] for i in range(1, 5)}})
        for t in (1, 2, 3)], ignore_index=True)
    spec = SemModelSpec(syntax="F =~ i1 + i2 + i3 + i4", sessions=(1, 2, 3),
                        invariance=("configural", "metric", "scalar"), missing="listwise")
    fitted = fit_sem_models(long, {"over_time": spec})
    _, table = fitted.invariance["over_time"]
    lavaan = json.loads((ROOT / "tests" / "reference" / "sem2_lavaan.json").read_text())
    for level in ("configural", "metric", "scalar"):
        ref = lavaan["cases"][f"long_{level}"]["fit_measures"]
        row = table.set_index("level").loc[level]
        assert row["df"] == ref["df"]
        assert row["chisq"] == pytest.approx(ref["chisq"], rel=1e-3)
        assert row["cfi"] == pytest.approx(ref["cfi"], abs=1e-3)
    assert table["verdict"].iloc[1].startswith("loadings equal over sessions")
    report_sem_models(fitted, RunFolder(tmp_path, stage="04_sem"))
    fit = pd.read_csv(tmp_path / "tables" / "sem_over_time_fit.csv")
    assert fit["level"].tolist() == ["configural", "metric", "scalar"]
    params = pd.read_csv(tmp_path / "tables" / "sem_over_time_params.csv")
    assert set(params["level"]) == {"configural", "metric", "scalar"}


def test_invariance_needs_sessions(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    raw = {"syntax": "F =~ a + b + c", "session": 1, "invariance": ["configural", "metric"]}
    with pytest.raises(AllianceParamsError, match="invariance: needs sessions"):
        parse_params({"name": "t", "data": {"path": str(data)}, "sem_models": {"m": raw}},
                     base_dir=tmp_path)
