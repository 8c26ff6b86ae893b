"""Multigroup SEMs against lavaan: invariance over groups (ML, MLR, MLR with FIML) and the
RI-CLPM extensions of Mulder & Hamaker (2021): a time-invariant covariate and two groups.

Fixtures: tests/reference/sem2_lavaan.json (sem2_lavaan.R) and sem_multigroup_lavaan.json
(sem_multigroup_lavaan.R). Tolerances as the issue states: estimates 1e-4 (absolute), SEs
and fit indices 1e-3 (relative; absolute 1e-5 near zero).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.errors import AllianceDataError, AllianceParamsError, ConvergenceWarning
from alliance_analysis.options import SemModelSpec
from alliance_analysis.sem.estimation import structure
from alliance_analysis.sem.invariance import fit_group_invariance, invariance_table
from alliance_analysis.sem.models import fit_sem
from alliance_analysis.sem.multigroup import group_structures, parameter_kind
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.report.sem import report_sem_models
from alliance_analysis.sem.specified import coded_covariates, fit_sem_models

REF = Path(__file__).parent / "reference"
DATA = Path(__file__).parents[1] / "data" / "reference"
HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"
LEVEL_EQUAL = {"configural": (), "metric": ("loadings",), "scalar": ("loadings", "intercepts"),
               "strict": ("loadings", "intercepts", "residuals")}
MEASURES = {"npar": "npar", "chi2": "chisq", "df": "df", "cfi": "cfi", "tli": "tli",
            "rmsea": "rmsea", "rmsea_ci_low": "rmsea.ci.lower",
            "rmsea_ci_high": "rmsea.ci.upper", "srmr": "srmr", "loglik": "logl",
            "aic": "aic", "bic": "bic", "chisq_scaled": "chisq.scaled",
            "scaling_factor": "chisq.scaling.factor", "cfi_scaled": "cfi.scaled",
            "rmsea_scaled": "rmsea.scaled", "cfi_robust": "cfi.robust",
            "tli_robust": "tli.robust", "rmsea_robust": "rmsea.robust"}
X = [f"x{i}" for i in range(1, 6)]
Y = [f"y{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def lavaan() -> dict:
    return json.loads((REF / "sem2_lavaan.json").read_text())


@pytest.fixture(scope="module")
def hs() -> pd.DataFrame:
    return pd.read_csv(DATA / "HolzingerSwineford1939.csv")


@pytest.fixture(scope="module")
def riclpm_data() -> pd.DataFrame:
    return pd.read_csv(REF / "sem2_riclpm.csv")


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_sem(*args, **kwargs)


def _check_measures(fit: dict, reference: dict, skip: tuple[str, ...] = ()) -> int:
    checked = 0
    for ours, theirs in MEASURES.items():
        value = reference.get(theirs)
        if ours in skip or value is None or ours not in fit:
            continue
        assert fit[ours] == pytest.approx(value, rel=1e-3, abs=1e-5), (ours, fit[ours], value)
        checked += 1
    return checked


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    """Covariances named in one order (lavaan writes ``visual ~~ textual``, we may not)."""
    cov = table["op"] == "~~"
    low = np.where(cov, np.minimum(table["lhs"], table["rhs"]), table["lhs"])
    high = np.where(cov, np.maximum(table["lhs"], table["rhs"]), table["rhs"])
    return table.assign(lhs=low, rhs=high)


def _check_params(params: pd.DataFrame, reference: list[dict]) -> None:
    ref = pd.DataFrame(reference)
    ref = _ordered(ref[ref["op"].isin(["=~", "~", "~~", "~1"])])
    merged = _ordered(params).merge(ref, on=["lhs", "op", "rhs", "group"],
                                    suffixes=("", "_lavaan"))
    free = merged[merged["free"]]
    # every free parameter of ours is in lavaan's table
    assert len(free) == int(params["free"].sum())
    assert np.max(np.abs(free["estimate"] - free["est"])) < 1e-4
    assert np.allclose(free["se"], free["se_lavaan"], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("level", list(LEVEL_EQUAL))
@pytest.mark.parametrize("estimator", ["ML", "MLR"])
def test_group_invariance_level_matches_lavaan(hs, lavaan, level, estimator):
    case = lavaan["cases"][f"hs_inv_{level}" + ("_mlr" if estimator == "MLR" else "")]
    result = _quiet_fit(HS, hs, level, missing="listwise", estimator=estimator,
                        group="school", group_equal=LEVEL_EQUAL[level])
    assert result.fit["converged"] and not result.fit["warnings"]
    assert result.fit["group_labels"] == case["group_label"]
    assert result.fit["n_obs_groups"] == case["nobs"]
    assert _check_measures(result.fit, case["fit_measures"]) >= 12
    _check_params(result.params, case["parameters"])


def test_group_invariance_table_matches_lavaan_lrt(hs, lavaan):
    for key, estimator in (("hs_inv_ml", "ML"), ("hs_inv_mlr", "MLR")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fits = fit_group_invariance(HS, hs, "school", estimator=estimator,
                                        missing="listwise", name="hs")
        table = invariance_table(fits, over="the groups of school")
        rows = lavaan["lrt"][key]["rows"]
        assert list(table["level"]) == list(LEVEL_EQUAL)
        for k in range(1, 4):
            assert table["df_diff"][k] == rows[k]["Df diff"]
            assert table["chisq_diff"][k] == pytest.approx(rows[k]["Chisq diff"], rel=1e-3)
            assert table["p_diff"][k] == pytest.approx(rows[k]["Pr(>Chisq)"], rel=1e-3)
        assert "over the groups of school" in table["verdict"][1]


@pytest.mark.parametrize("level", ["configural", "metric", "scalar"])
def test_group_mlr_fiml_matches_lavaan(level):
    reference = json.loads((REF / "sem_multigroup_lavaan.json").read_text())["cases"][level]
    data = pd.read_csv(REF / "sem2_hs_missing.csv")
    result = _quiet_fit(HS, data, level, missing="fiml", estimator="MLR", group="school",
                        group_equal=LEVEL_EQUAL[level])
    assert result.fit["converged"]
    # the robust indices here use Zhang & Savalei's FIML correction over both groups
    assert _check_measures(result.fit, reference["fit_measures"]) >= 15
    _check_params(result.params, reference["parameters"])


def _long_panel(wide: pd.DataFrame) -> pd.DataFrame:
    """The five-wave panel as a session table (``x``, ``y`` at sessions 1..5)."""
    return pd.concat([
        pd.DataFrame({"client_id": wide["id"].astype(str), "therapist_id": "t", "session": t,
                      "x": wide[f"x{t}"], "y": wide[f"y{t}"], "z": wide["z"],
                      "group": wide["group"]}) for t in range(1, 6)], ignore_index=True)


def test_riclpm_with_covariate_matches_lavaan(riclpm_data, lavaan):
    case = lavaan["cases"]["riclpm_cov"]
    spec = SemModelSpec(generate="riclpm", x="x", y="y", waves=(1, 2, 3, 4, 5),
                        covariates=("z",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = fit_sem_models(_long_panel(riclpm_data), {"cov": spec}).results["cov"]
    # chi-square, df and the indices are lavaan's fixed.x ones; loglik, npar, AIC and BIC
    # once the covariate's own likelihood and parameters are taken out
    assert result.fit["npar"] == case["fit_measures"]["npar"]
    assert _check_measures(result.fit, case["fit_measures"],
                           skip=("cfi_robust", "tli_robust", "rmsea_robust")) >= 11
    assert "conditional on them" in result.fit["note"]
    ref = {(p["lhs"], p["op"], p["rhs"]): p for p in case["parameters"]}
    params = result.params.set_index(["lhs", "op", "rhs"])
    for ours, theirs in ((("ri_x", "~", "z_lv"), ("RIx", "~", "z")),
                         (("ri_y", "~", "z_lv"), ("RIy", "~", "z")),
                         (("w_y_s2", "~", "w_x_s1"), ("wy2", "~", "wx1"))):
        assert params.loc[ours, "estimate"] == pytest.approx(ref[theirs]["est"], abs=1e-4)
        assert params.loc[ours, "se"] == pytest.approx(ref[theirs]["se"], rel=1e-3)


def test_riclpm_two_groups_lagged_test_matches_lavaan(riclpm_data, lavaan, tmp_path):
    spec = SemModelSpec(generate="riclpm", x="x", y="y", waves=(1, 2, 3, 4, 5), group="group")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = fit_sem_models(_long_panel(riclpm_data), {"by_group": spec})
    fits, table = fitted.comparisons["by_group"]
    for key, name in (("free", "riclpm_2groups_free"),
                      ("lagged_equal", "riclpm_2groups_lagged_equal")):
        assert fits[key].fit["converged"]
        assert _check_measures(fits[key].fit, lavaan["cases"][name]["fit_measures"],
                               skip=("cfi_robust", "tli_robust", "rmsea_robust")) >= 11
    row = lavaan["lrt"]["riclpm_2groups"]["rows"][1]
    assert table["df_diff"][1] == row["Df diff"] == 16
    assert table["chisq_diff"][1] == pytest.approx(row["Chisq diff"], rel=1e-3)
    assert table["p_diff"][1] == pytest.approx(row["Pr(>Chisq)"], rel=1e-3)
    assert table["verdict"][1].startswith(("lagged paths differ", "no evidence"))
    # a labelled path is one parameter shared by both groups
    labelled = fits["lagged_equal"].params.query("label == 'a_xx_2'")
    assert len(labelled) == 2 and labelled["estimate"].nunique() == 1
    # the report writes the syntax, the fit with its groups, and the test
    report_sem_models(fitted, RunFolder(tmp_path, stage="04_sem"))
    tables = tmp_path / "tables"
    syntax = pd.read_csv(tables / "sem_by_group_syntax.csv")
    assert "ri_x =~ 1*x_s1 + 1*x_s2 + 1*x_s3 + 1*x_s4 + 1*x_s5" in set(syntax["statement"])
    assert pd.read_csv(tables / "sem_by_group_fit.csv")["groups"][0] == "1 = g1; 2 = g2"
    written = pd.read_csv(tables / "sem_by_group_lagged_test.csv")
    assert written["chisq_diff"][1] == pytest.approx(row["Chisq diff"], rel=1e-3)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["sem.by_group.lagged_equal.df_diff"] == 16


def test_group_invariance_through_sem_models(hs, tmp_path):
    sessions = hs.assign(client_id=hs["id"].astype(str), therapist_id="t", session=1)
    spec = SemModelSpec(syntax=HS, session=1, group="school", missing="listwise",
                        invariance=("configural", "metric"))
    fitted = fit_sem_models(sessions, {"hs": spec})
    _, table = fitted.invariance["hs"]
    assert table["chisq_diff"][1] == pytest.approx(124.043544179993 - 115.851343875559,
                                                   rel=1e-4)
    report_sem_models(fitted, RunFolder(tmp_path, stage="04_sem"))
    fit = pd.read_csv(tmp_path / "tables" / "sem_hs_fit.csv")
    assert fit["verdict"][1].startswith("loadings equal over the groups of school")
    params = pd.read_csv(tmp_path / "tables" / "sem_hs_params.csv")
    assert set(params["group"]) == {1, 2} and set(params["level"]) == {"configural", "metric"}


def test_group_structures_share_what_is_equal():
    base = structure(HS + "visual ~~ c1*textual\n", meanstructure=True)
    kinds = {parameter_kind(base, k) for k in range(base.n_free)}
    assert {"loadings", "intercepts", "residuals", "lv.variances", "lv.covariances"} <= kinds
    free = group_structures(base, 2)
    # the labelled covariance is shared; every other parameter doubles
    assert free[0].n_free == 2 * base.n_free - 1
    metric = group_structures(base, 2, ("loadings",))
    assert metric[0].n_free == free[0].n_free - 6
    scalar = group_structures(base, 3, ("loadings", "intercepts"))
    # loadings and intercepts shared; the latent means are freed in groups 2 and 3
    assert scalar[0].n_free == 3 * base.n_free - 2 * (6 + 9) - 2 + 2 * 3
    assert not scalar[0].patterns["gamma1"].any() and scalar[1].patterns["gamma1"].any()
    with pytest.raises(AllianceParamsError, match="unknown kind"):
        group_structures(base, 2, ("loading",))


def test_group_errors_name_the_problem(hs):
    with pytest.raises(AllianceDataError, match="'site' is not in the data"):
        fit_sem(HS, hs, "m", group="site")
    with pytest.warns(ConvergenceWarning, match="m: NOT ESTIMABLE: the group column 'school' "
                                               "has 1 group"):
        one = fit_sem(HS, hs.assign(school="one"), "m", group="school")
    assert not one.fit["converged"]
    partial = hs.assign(school=hs["school"].where(hs.index % 10 != 0))
    result = _quiet_fit(HS, partial, "m", missing="listwise", group="school")
    assert result.fit["n_dropped"] == int(partial["school"].isna().sum())
    assert any("school missing were dropped" in w for w in result.fit["warnings"])


def test_coded_covariates_and_spec_rules():
    clients = pd.DataFrame({"arm": ["CBT", "PDT", None, "PDT"], "age": [30, 40, 50, 60]})
    coded, notes = coded_covariates(clients, ["arm", "age"])
    assert list(coded.columns) == ["arm_PDT", "age"]
    assert coded["arm_PDT"].tolist()[:2] == [0.0, 1.0] and np.isnan(coded["arm_PDT"][2])
    assert notes == ["covariate arm coded 0/1: PDT against CBT (the reference)"]
    with pytest.raises(AllianceDataError, match="needs at least two"):
        coded_covariates(clients.assign(arm="CBT"), ["arm"])
    cfa = "F =~ wai_1 + wai_2 + wai_3"
    SemModelSpec(syntax=cfa, session=3, group="arm", invariance=["configural", "metric"])
    for bad, message in (
            (dict(syntax=cfa, session=3, group="arm", estimator="WLSMV"), "WLSMV"),
            (dict(syntax=cfa, sessions=[1, 2], group="arm"), "not both"),
            (dict(syntax=cfa, session=3, covariates=["arm"]), "covariates"),
            (dict(generate="riclpm", x="a", y="b", waves=[1, 2, 3], group="arm",
                  invariance=["configural"]), "lagged paths"),
            (dict(syntax=cfa, session=3, invariance=["configural"]), "needs sessions")):
        with pytest.raises(ValueError, match=message):
            SemModelSpec(**bad)
