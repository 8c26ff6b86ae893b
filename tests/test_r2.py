"""Marginal and conditional R2 (Nakagawa et al. 2017) against lme4 1.1-31 and performance 0.10.2.

The fixture ``tests/reference/r2_nakagawa.json`` is written by ``tests/reference/r2_nakagawa.R``
(``cd tests/reference && Rscript r2_nakagawa.R``): lme4 fits of seven models (two and three
levels, correlated and uncorrelated random slopes, REML and ML, an interaction, a null model)
with their R2 by the formula from ``model.matrix``, ``mmList`` and ``VarCorr``, checked in R
against ``performance::r2_nakagawa``.

Two checks, two tolerances:

* the formula alone: lme4's own estimates put into :func:`nakagawa_r2` with the design this
  package builds from the formula must give R's R2 within 1e-10 absolute (the same arithmetic
  on the same numbers; only rounding differs);
* the whole path: the package's own fit (:func:`fit_model`) and :func:`model_r2` must give R's
  R2 within 1e-6 absolute. The two fits reach the same optimum, but only to the precision of
  the optimizers: variance components agree to about 1e-6 relative (``test_formula_models``
  allows 1e-3), and R2 is a ratio of them, so 1e-6 absolute is as tight as the fits allow; the
  largest difference found is printed by ``-s`` for the record.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.multilevel.r2 import UNDEFINED, model_r2, nakagawa_r2
from alliance_analysis.multilevel.specified import fit_model, prepare_model
from alliance_analysis.options import ModelSpec
from alliance_analysis.results import not_estimable

HERE = Path(__file__).parent / "reference"
ROOT = Path(__file__).parents[1]
REF = json.loads((HERE / "r2_nakagawa.json").read_text())["cases"]
#: The same arithmetic on lme4's estimates.
FORMULA_ATOL = 1e-10
#: The package's fit against lme4's fit (see the module notes).
FIT_ATOL = 1e-6
#: R's grouping factors -> the project's columns.
GROUPS = {"Subject": "client_id", "client": "client_id", "therapist": "therapist_id"}


def _data(case: str) -> pd.DataFrame:
    path = ROOT / REF[case]["data_file"]
    return pd.read_csv(path).rename(columns=GROUPS)


def _spec(case: str) -> ModelSpec:
    formula = REF[case]["formula"]
    for r_name, column in GROUPS.items():
        formula = formula.replace(f"| {r_name})", f"| {column})")
    return ModelSpec(formula=formula, reml=REF[case]["REML"])


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for case in REF:
        data, spec = _data(case), _spec(case)
        out[case] = (prepare_model(data, case, spec), fit_model(data, case, spec))
    return out


@pytest.mark.parametrize("case", list(REF))
def test_formula_on_lme4_estimates_equals_r(fits: dict, case: str) -> None:
    """lme4's estimates and this package's design give R's R2 and its variances."""
    ref = REF[case]
    prepared, result = fits[case]
    beta = pd.Series(ref["fixed_effects"])
    columns = list(prepared.fixed.values())
    x = prepared.table[columns].to_numpy(dtype=float)
    if prepared.intercept:
        x = np.column_stack([np.ones(len(x)), x])
    terms = (["(Intercept)"] if prepared.intercept else []) + list(prepared.fixed)
    names = prepared.names
    by_group: dict[str, tuple[list[str], np.ndarray]] = {}
    for block in ref["covariance_blocks"]:  # lme4 splits (x || g) into terms g, g.1
        group = GROUPS[block["group"].split(".")[0]]
        terms_here, sigma = by_group.get(group, ([], np.zeros((0, 0))))
        new = np.asarray(block["matrix"], dtype=float)
        merged = np.zeros((len(terms_here) + len(new),) * 2)
        merged[:len(terms_here), :len(terms_here)] = sigma
        merged[len(terms_here):, len(terms_here):] = new
        by_group[group] = ([*terms_here, *block["terms"]], merged)
    random = []
    for group, (effects, sigma) in by_group.items():
        block = prepared.blocks[group]
        mine = (["(Intercept)"] if block.intercept else []) + [names[c] for c in block.columns]
        order = [effects.index(e) for e in mine]
        z = np.column_stack([np.ones(len(x))] * block.intercept
                            + [prepared.table[c].to_numpy(dtype=float) for c in block.columns])
        random.append((z, sigma[np.ix_(order, order)]))
    got = nakagawa_r2(x, beta.loc[terms].to_numpy(), random, ref["sigma2"]).as_dict()
    for key in ("var_fixed", "var_random", "var_residual"):
        assert got[key] == pytest.approx(ref["r2"][key], rel=FORMULA_ATOL), key
    for key in ("r2_marginal", "r2_conditional"):
        assert got[key] == pytest.approx(ref["r2"][key], abs=FORMULA_ATOL), key


@pytest.mark.parametrize("case", list(REF))
def test_fitted_model_r2_equals_lme4(fits: dict, case: str) -> None:
    """The package's fit and :func:`model_r2` give lme4's R2 within 1e-6."""
    prepared, result = fits[case]
    assert result.fit["converged"] and not result.fit["singular"]
    assert result.fit["n_obs"] == REF[case]["nobs"]
    got = model_r2(prepared, result)
    gaps = [abs(getattr(got, k) - REF[case]["r2"][k]) for k in ("r2_marginal", "r2_conditional")]
    print(f"{case}: largest R2 difference from lme4 {max(gaps):.2e}")
    assert max(gaps) < FIT_ATOL


def test_performance_agrees_except_for_uncorrelated_slopes() -> None:
    """The fixture's own cross-check: performance::r2_nakagawa gives the formula's values
    wherever it counts every random term (the uncorrelated-slope cases are documented)."""
    for case, ref in REF.items():
        if ref["performance_expected_to_agree"]:
            assert ref["performance_minus_formula"] < 1e-8, case
        else:
            assert "||" in ref["formula"], case


def test_random_intercept_model_r2_by_hand() -> None:
    """One random intercept: var_random is its variance; a model of the mean alone has
    marginal R2 0 and conditional R2 the ICC."""
    rng = np.random.default_rng(1)
    x = np.column_stack([np.ones(50), rng.normal(size=50)])
    got = nakagawa_r2(x, np.array([1.0, 2.0]), [(np.ones((50, 1)), np.array([[3.0]]))], 1.0)
    var_f = np.var(2 * x[:, 1], ddof=1)
    assert got.var_random == 3.0
    assert got.r2_marginal == pytest.approx(var_f / (var_f + 4))
    null = nakagawa_r2(x[:, :1], np.array([1.0]), [(np.ones((50, 1)), np.array([[3.0]]))], 1.0)
    assert null.r2_marginal == 0 and null.r2_conditional == pytest.approx(0.75)


def test_not_estimated_model_has_no_r2(fits: dict) -> None:
    prepared, _ = fits["sleepstudy_reml"]
    with pytest.warns(Warning):
        empty = not_estimable("m", "one therapist")
    assert model_r2(prepared, empty) is UNDEFINED


def test_rows_of_another_fit_are_refused(fits: dict) -> None:
    prepared, _ = fits["sleepstudy_reml"]
    _, other = fits["threelevel_correlated"]
    with pytest.raises(ValueError, match="not the rows of this fit"):
        model_r2(prepared, other)
