"""SEM defects found by the audit against lavaan (project issue 16), each on constructed data.

1. FIML without the mean structure: ``fit_sem(missing="fiml", meanstructure=False)`` must
   fit the same model as with ``meanstructure=True`` (lavaan switches the means on) and say so.
2. Tetrachoric correlation of a 2x2 table with an empty cell: lavaan's margin-preserving
   ``zero.add = 0.5`` (fixture ``tetrachoric_empty_cell`` of ``sem2_lavaan.json``:
   rho 1e-4, SE 1e-3), a note naming the items, and a warning for estimates on the bound.
3. (audit defect 5) Bad input is an ``AllianceDataError`` / ``AllianceParamsError`` naming
   the model; a fit that breaks down or does not converge comes back flagged.
4. (audit defect 6) Polychoric SEs with lavCor's N - 1 (see also ``test_polychoric.py``).
"""

from __future__ import annotations

import functools
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.errors import AllianceDataError, AllianceParamsError, ConvergenceWarning
from alliance_analysis.sem import estimation as sem_estimation
from alliance_analysis.sem.models import fit_sem, fit_sem_ordinal
from alliance_analysis.sem.polychoric import polychoric

from conftest import ROOT

TETRA = json.loads((ROOT / "tests/reference/sem2_lavaan.json").read_text())[
    "tetrachoric_empty_cell"]
SYNTAX = "f =~ x1 + x2 + x3 + x4"


def _one_factor(n: int = 300, seed: int = 16, missing: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    factor = rng.normal(size=n)
    data = pd.DataFrame({f"x{i}": 2.0 + i * 0.5 + loading * factor + rng.normal(size=n)
                         for i, loading in enumerate([1.0, 0.8, 0.7, 0.6], start=1)})
    if missing:
        data = data.mask(rng.random(data.shape) < missing)
    return data


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit_sem(*args, **kwargs)


# 1. FIML forces the mean structure -------------------------------------------------------

def test_fiml_without_meanstructure_fits_the_means_and_says_so() -> None:
    data = _one_factor(missing=0.15)
    with_means = fit_sem(SYNTAX, data, "cfa", missing="fiml", meanstructure=True)
    with pytest.warns(ConvergenceWarning, match="cfa: missing='fiml' needs the mean"):
        forced = fit_sem(SYNTAX, data, "cfa", missing="fiml", meanstructure=False)
    pd.testing.assert_frame_equal(forced.params, with_means.params)
    for key in ("loglik", "loglik_saturated", "chi2", "df", "cfi", "rmsea", "srmr", "aic"):
        assert forced.fit[key] == pytest.approx(with_means.fit[key], rel=1e-12), key
    assert forced.fit["loglik"] <= forced.fit["loglik_saturated"]
    assert forced.fit["chi2"] > 0
    assert any("meanstructure=False was overridden" in w for w in forced.fit["warnings"])
    assert not with_means.fit["warnings"]


def test_listwise_without_meanstructure_is_unchanged() -> None:
    result = fit_sem(SYNTAX, _one_factor(), "cfa", missing="listwise", meanstructure=False)
    assert not result.fit["warnings"]
    assert "~1" not in set(result.params["op"])


# 2. Empty cells and boundary estimates of polychoric correlations -------------------------

def _tetra_items() -> pd.DataFrame:
    counts = TETRA["table"]["counts"]
    rows = [(a, b) for a in (0, 1) for b in (0, 1)
            for _ in range(int(counts[f"a={a}"][f"b={b}"]))]
    return pd.DataFrame(rows, columns=["a", "b"])


def test_tetrachoric_empty_cell_matches_lavcor() -> None:
    items = _tetra_items()
    assert len(items) == 80
    result = polychoric(items)
    assert result.rho.loc["a", "b"] == pytest.approx(TETRA["rho"], abs=1e-4)
    se = result.standard_errors()
    assert se["a~~b"] == pytest.approx(TETRA["se"], abs=1e-3)
    for row in TETRA["thresholds"]:
        assert se[f"{row['lhs']}|{row['rhs']}"] == pytest.approx(row["se"], abs=1e-3)
    estimates = result.thresholds.set_index("item")["estimate"]
    assert estimates["a"] == pytest.approx(TETRA["thresholds"][0]["est"], abs=1e-12)
    assert len(result.notes) == 1 and "a and b" in result.notes[0]
    assert "[[29.5, 0.5], [20.5, 29.5]]" in result.notes[0]
    assert result.warnings == ()


def test_tetrachoric_empty_cell_measured_precision() -> None:
    """Measured: rho to 1e-8 and the SE to 1e-7 of lavCor's (the README's hand check)."""
    result = polychoric(_tetra_items())
    assert result.rho.loc["a", "b"] == pytest.approx(TETRA["rho"], abs=1e-8)
    assert result.standard_errors()["a~~b"] == pytest.approx(TETRA["se"], rel=1e-6)


def test_empty_main_diagonal_cell_keeps_the_margins() -> None:
    # (0, 20; 30, 30): the empty cell is on the main diagonal, so the correlation is negative
    rows = [(0, 1)] * 20 + [(1, 0)] * 30 + [(1, 1)] * 30
    result = polychoric(pd.DataFrame(rows, columns=["u", "v"]))
    assert -1 < result.rho.loc["u", "v"] < -0.5
    assert "[[0.5, 19.5], [29.5, 30.5]]" in result.notes[0]


def test_two_empty_cells_are_flagged_on_the_boundary() -> None:
    rows = [(0, 0)] * 30 + [(1, 1)] * 50
    result = polychoric(pd.DataFrame(rows, columns=["a", "b"]))
    assert result.notes == ()
    assert len(result.warnings) == 1
    assert "a and b" in result.warnings[0] and "boundary" in result.warnings[0]


def test_larger_tables_are_not_corrected() -> None:
    rng = np.random.default_rng(3)
    latent = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=200)
    items = pd.DataFrame(np.digitize(latent, [-0.5, 0.5]), columns=["p", "q"])
    items.loc[(items["p"] == 0) & (items["q"] == 2), "q"] = 1  # an empty corner cell
    result = polychoric(items)
    assert result.notes == () and result.warnings == ()


def test_ordinal_fit_reports_the_correction_and_the_boundary() -> None:
    rng = np.random.default_rng(7)
    latent = rng.normal(size=400)
    items = pd.DataFrame({f"u{i}": (0.8 * latent + 0.6 * rng.normal(size=400) > cut)
                          .astype(int) for i, cut in enumerate([-0.3, 0.0, 0.2, 0.4], 1)})
    items.loc[(items["u1"] == 0) & (items["u2"] == 1), "u2"] = 0  # empty cell u1 x u2
    result = fit_sem_ordinal("f =~ u1 + u2 + u3 + u4", items, "binary")
    assert any("u1 and u2" in note for note in result.extra["polychoric_notes"])
    assert "u1 and u2 has an empty cell" in result.fit["note"]
    boundary = items.assign(u4=items["u3"])  # u3 and u4 identical: rho on the bound
    with pytest.warns(ConvergenceWarning, match="binary: the polychoric correlation of u3 "
                                                "and u4 is on the boundary"):
        flagged = fit_sem_ordinal("f =~ u1 + u2 + u3 + u4", boundary, "binary")
    assert any("u3 and u4" in w for w in flagged.fit["warnings"])


# 3. Errors that name the model; failures that come back flagged -------------------------

def test_constant_item_is_flagged_not_estimable_naming_column_and_value() -> None:
    """Degenerate but real data (issue 20): the model comes back flagged, the run goes on."""
    data = _one_factor().assign(x3=4.0)
    for missing in ("fiml", "listwise"):
        with pytest.warns(ConvergenceWarning, match="cfa1: NOT ESTIMABLE"):
            result = fit_sem(SYNTAX, data, "cfa1", missing=missing)
        assert not result.fit["converged"]
        assert result.fit["warnings"] == ["NOT ESTIMABLE: column 'x3' is constant (every "
                                          "non-missing value is 4); a variable without "
                                          "variance cannot enter the model. Drop it from the "
                                          "syntax"]
        assert result.params["estimate"].isna().all() and len(result.params)
    ordinal = pd.DataFrame({"u1": [0, 1, 1, 0, 1], "u2": [1, 1, 1, 1, 1],
                            "u3": [0, 1, 0, 0, 1]})
    with pytest.warns(ConvergenceWarning, match="ord: NOT ESTIMABLE: column 'u2' is constant"):
        fit_sem_ordinal("f =~ u1 + u2 + u3", ordinal, "ord")
    with pytest.warns(ConvergenceWarning, match="few: NOT ESTIMABLE: only 3 cases"):
        few = fit_sem(SYNTAX, _one_factor().head(3), "few")
    assert np.isnan(few.fit["chi2"])


def test_text_values_are_a_data_error_naming_column_and_example() -> None:
    data = _one_factor()
    data["x2"] = data["x2"].astype(object)
    data.loc[7, "x2"] = "n/a"
    with pytest.raises(AllianceDataError,
                       match=r"model 'cfa2': column 'x2' holds text values, e\.g\. 'n/a'"):
        fit_sem(SYNTAX, data, "cfa2")


def test_numbers_stored_as_text_are_accepted() -> None:
    data = _one_factor()
    expected = _quiet_fit(SYNTAX, data, "cfa")
    got = _quiet_fit(SYNTAX, data.astype(str), "cfa")
    np.testing.assert_allclose(got.params["estimate"], expected.params["estimate"])


def test_malformed_syntax_is_a_params_error_quoting_the_line() -> None:
    with pytest.raises(AllianceParamsError,
                       match=r"model 'bad': the model syntax cannot be parsed at the line "
                             r"'f =~ x1 \+ x2 \+'"):
        fit_sem("f =~ x1 + x2 +\nx3 ~~ x4", _one_factor(), "bad")
    with pytest.raises(AllianceParamsError, match="model 'bad_ord'"):
        fit_sem_ordinal("f =~ ", _tetra_items(), "bad_ord")


def test_unknown_variable_is_a_params_error_listing_the_columns() -> None:
    with pytest.raises(AllianceParamsError,
                       match=r"model 'typo': the syntax uses \['x5'\].*columns present: "
                             r"\['x1', 'x2', 'x3', 'x4'\]"):
        fit_sem("f =~ x1 + x2 + x5", _one_factor(), "typo")


def test_other_data_errors_name_the_model() -> None:
    with pytest.raises(AllianceParamsError, match=r"model 'gone': the syntax uses \['x2'\]"):
        fit_sem(SYNTAX, _one_factor().drop(columns="x2"), "gone", missing="listwise")


def test_a_fit_that_does_not_converge_is_flagged(monkeypatch) -> None:
    monkeypatch.setattr(sem_estimation, "fit",
                        functools.partial(sem_estimation.fit, max_iter=1))
    with pytest.warns(ConvergenceWarning, match="slow: Fisher scoring did not converge"):
        result = fit_sem(SYNTAX, _one_factor(), "slow", missing="listwise")
    assert result.fit["converged"] is False
    assert any("did not converge" in w for w in result.fit["warnings"])


def test_a_fit_that_breaks_down_is_flagged_not_raised(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("Singular matrix")

    monkeypatch.setattr(sem_estimation, "fit", broken)
    with pytest.warns(ConvergenceWarning, match="broken: the fit broke down"):
        result = fit_sem(SYNTAX, _one_factor(missing=0.1), "broken")
    assert result.fit["converged"] is False
    assert "LinAlgError: Singular matrix" in result.fit["warnings"][0]
    assert result.params["estimate"].loc[result.params["free"]].isna().all()
    assert np.isnan(result.fit["chi2"]) and result.fit["n_obs"] == 300


# 4. Polychoric standard errors with N - 1 ------------------------------------------------

def test_polychoric_standard_errors_use_n_minus_1() -> None:
    result = polychoric(_tetra_items())
    gamma = np.diag(result.gamma.to_numpy())
    np.testing.assert_allclose(result.standard_errors().to_numpy(),
                               np.sqrt(gamma / (result.n - 1)), rtol=1e-15)
