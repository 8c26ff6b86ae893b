"""SEM options, the CFA comparison and omega, and how problems are reported."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from alliance_analysis.errors import AllianceDataError, ConvergenceWarning
from alliance_analysis.instruments import get_instrument
from alliance_analysis.params import load_params
from alliance_analysis.sem.models import (FIT_COLUMNS, ROBUST_FIT_COLUMNS, fit_cfa, fit_sem,
                                         omega_table)
from alliance_analysis.options import SemOptions

from conftest import ROOT
from test_sem_panel import sessions_table


def test_options_defaults_run_the_demo() -> None:
    options = load_params(ROOT / "params/demo.yaml").builtin_sem().panel
    assert options == SemOptions()
    assert options.waves == (1, 2, 3, 4) and options.estimator == "ML"


def test_options_accept_lists_and_reject_bad_values() -> None:
    assert SemOptions(waves=[2, 4, 6]).waves == (2, 4, 6)
    with pytest.raises(ValidationError, match="at least 3 sessions"):
        SemOptions(waves=[1, 2])
    with pytest.raises(ValidationError, match="increasing order"):
        SemOptions(growth_sessions=[3, 2, 4])
    with pytest.raises(ValidationError, match="Extra inputs"):
        SemOptions(wave=[1, 2, 3])
    with pytest.raises(ValidationError):
        SemOptions(estimator="WLSMV")
    with pytest.raises(ValidationError):
        SemOptions().waves = (1, 2, 3)  # frozen


def test_loading_parameters_does_not_import_semopy() -> None:
    """semopy takes seconds to import; params.py imports the SEM options."""
    code = "import sys, alliance_analysis.params; print('semopy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return sessions_table(n_clients=300, n_sessions=6, seed=5)


@pytest.mark.parametrize("estimator", ["ML", "DWLS"])
def test_cfa_comparison(sessions, estimator) -> None:
    wai = get_instrument("wai")
    cfa = fit_cfa(sessions, wai, session=1, estimator=estimator)
    table = cfa.fit_table()
    robust = list(ROBUST_FIT_COLUMNS) if estimator == "DWLS" else []
    expected = list(FIT_COLUMNS)
    expected[expected.index("p") + 1:expected.index("p") + 1] = robust
    assert list(table.columns) == expected
    assert list(table["model"]) == ["one_factor", "three_factor", "bifactor"]
    assert (table["estimator"] == estimator).all() and table["converged"].all()
    assert list(table["df"]) == [54, 51, 42]
    # the generating model has three facets: three factors fit better than one
    assert table.loc[1, "chi2"] < table.loc[0, "chi2"]
    loadings = cfa.loadings()
    assert len(loadings) == 12 + 12 + 24
    assert loadings["std_estimate"].between(0, 1).all()
    matrix = cfa.loadings_matrix()
    assert list(matrix["item"]) == wai.items()
    omega = cfa.omega
    assert list(omega["scale"]) == ["total"] + ["total", "goal", "task", "bond"] * 2
    assert omega["omega_total"].between(0, 1).all()
    bifactor = omega.loc[omega["model"] == "bifactor"]
    assert (bifactor["omega_h"] <= bifactor["omega_total"]).all()
    if estimator == "DWLS":
        assert table["loglik"].isna().all() and (table["missing"] == "listwise").all()
        assert table.loc[0, "n_dropped"] == sessions.loc[sessions["session"] == 1,
                                                         wai.items()].isna().any(axis=1).sum()


def test_omega_matches_lavaan_cfa() -> None:
    """McDonald's omega of a one-factor ML CFA of bfi N1-N5 (complete cases), from
    tests/reference/psych_alpha.json (lavaan std.lv fit), to 1e-6 (measured 1e-7)."""
    reference = json.loads((ROOT / "tests/reference/psych_alpha.json").read_text())
    expected = reference["samples"]["complete_cases"]["omega_cfa"]["omega"]
    items = pd.read_csv(ROOT / "data/reference/bfi.csv")[["N1", "N2", "N3", "N4", "N5"]]
    result = fit_sem("alliance =~ N1 + N2 + N3 + N4 + N5", items.dropna(), "n",
                     missing="listwise")
    scale = get_instrument("wai").model_copy(update={"key": "n"})
    table = omega_table(result, _Items(["N1", "N2", "N3", "N4", "N5"], scale), "one_factor")
    assert table["omega_total"].iloc[0] == pytest.approx(expected, abs=1e-6)


class _Items:
    """A stand-in instrument with given item names and no subscales."""

    def __init__(self, names: list[str], base) -> None:
        self._names, self.subscales, self.key = names, {}, base.key

    def items(self) -> list[str]:
        return self._names


def test_unidentified_model_warns_and_flags_the_fit() -> None:
    rng = np.random.default_rng(1)
    data = pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"])
    with pytest.warns(ConvergenceWarning, match="two_items"):
        result = fit_sem("f =~ a + b", data, "two_items", missing="listwise")
    assert result.fit["warnings"] and result.fit["df"] < 0


def test_no_warning_for_a_clean_fit(sessions) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit_cfa(sessions, get_instrument("wai"), session=2)


def test_cfa_session_without_clients_is_a_data_error(sessions) -> None:
    with pytest.raises(AllianceDataError, match="no client has session 99"):
        fit_cfa(sessions, get_instrument("wai"), session=99)


def _no_task_facet(seed: int, n: int = 400) -> pd.DataFrame:
    """Session-1 WAI items from a general alliance plus goal and bond facets; the task
    items have no specific factor, so a bifactor model is empirically under-identified."""
    rng = np.random.default_rng(seed)
    wai = get_instrument("wai")
    general = rng.normal(size=n)
    facet_sd = {"goal": 0.5, "task": 0.0, "bond": 0.5}
    facets = {name: rng.normal(size=n) * sd for name, sd in facet_sd.items()}
    table = {"client_id": [f"c{i}" for i in range(n)], "session": 1}
    for name, numbers in wai.subscales.items():
        for i in numbers:
            latent = 3.5 + 0.6 * general + 0.4 * facets[name] + rng.normal(0, 0.5, n)
            table[f"wai_{i}"] = np.clip(np.round(latent), 1, 5)
    return pd.DataFrame(table)


@pytest.mark.parametrize("estimator", ["ML", "DWLS"])
def test_improper_bifactor_is_flagged_and_gets_no_omega(estimator) -> None:
    """A Heywood case (seed 4 of :func:`_no_task_facet` produces one for both estimators)
    must be reported in the fit table and as a ConvergenceWarning, not crash, and must not
    get an omega."""
    with pytest.warns(ConvergenceWarning) as record:
        cfa = fit_cfa(_no_task_facet(seed=4), get_instrument("wai"), session=1,
                      estimator=estimator)
    messages = [str(w.message) for w in record]
    assert all(m.startswith("bifactor: ") for m in messages)
    assert any("negative" in m for m in messages)
    table = cfa.fit_table().set_index("model")
    # DWLS tables carry the scaled and robust indices; ML tables have no such columns
    assert ("cfi_robust" in table.columns) == (estimator == "DWLS")
    if estimator == "DWLS":
        assert table.loc["three_factor", ["chisq_scaled", "cfi_scaled"]].notna().all()
    assert "negative" in table.loc["bifactor", "warnings"]
    assert table.loc[["one_factor", "three_factor"], "warnings"].eq("").all()
    omega = cfa.omega.set_index("model")
    assert omega.loc["bifactor", "omega_total"].isna().all()
    assert omega.loc["bifactor", "note"].str.startswith("not computed").all()
    assert omega.loc["three_factor", "omega_total"].notna().all()
