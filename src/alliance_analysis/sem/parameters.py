"""The tidy parameter table of a fitted SEM, with lavaan's standardized solution.

One row per parameter cell of the model matrices, named as in lavaan syntax, with Wald
standard errors, confidence intervals and p-values and the completely standardized estimate
(lavaan's ``std.all``).

References
----------
Bollen, K. A. (1989). *Structural equations with latent variables*. Wiley.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.sem.estimation import Estimates, Structure, implied, inner_covariance


def parameter_table(model: Structure, est: Estimates, level: float = 0.95) -> pd.DataFrame:
    """One row per free parameter cell and per cell fixed at a non-zero value.

    Columns: ``term, estimate, se, ci_low, ci_high, p, std_estimate, lhs, op, rhs, free,
    label``. ``term`` reads like lavaan syntax (``"alliance =~ wai_3"``, ``"wy2 ~ wx1"``,
    ``"x1 ~~ x1"``, ``"x1 ~1"``). Cells sharing a label (equality constraints) appear once
    each with the same estimate. ``se``, ``p`` and the Wald interval are NaN for fixed
    cells. ``std_estimate`` is lavaan's ``std.all``, from the model-implied standard
    deviations (sd): loadings and paths times ``sd(rhs) / sd(lhs)``, variances divided by
    the total variance, (residual) covariances divided by the square roots of the two
    (residual) variances, means divided by the sd. NaN where a variance is negative.
    """
    mats = model.matrices(est.theta)
    sigma, _ = implied(model, est.theta)
    variances = {"inner": np.diag(inner_covariance(model, est.theta)),
                 "observed": np.diag(sigma)}
    sd = {kind: np.sqrt(np.where(v >= 0, v, np.nan)) for kind, v in variances.items()}
    se_all = np.sqrt(np.diag(est.vcov))
    z = stats.norm.ppf(0.5 + level / 2)
    names = {"inner": model.inner, "observed": model.observed}
    rows = []
    for key, lhs_names, rhs_names, op in _CELLS:
        if key not in mats:
            continue
        for cell in _cells(model, key):
            i, j = cell if len(cell) == 2 else (cell[0], None)
            lhs = names[lhs_names][i]
            rhs = "" if j is None else names[rhs_names][j]
            if key == "lambda":  # rows are indicators, columns factors: "factor =~ item"
                lhs, rhs = rhs, lhs
                if lhs == rhs:
                    continue
            value = mats[key][cell]
            k = _free_index(model, key, cell)
            scale = _std_scale(key, i, j, sd, mats)
            se = se_all[k] if k is not None else np.nan
            rows.append({
                "term": f"{lhs} {op}" if j is None else f"{lhs} {op} {rhs}",
                "estimate": value, "se": se, "ci_low": value - z * se,
                "ci_high": value + z * se,
                "p": 2 * stats.norm.sf(abs(value / se)) if k is not None else np.nan,
                "std_estimate": value * scale, "lhs": lhs, "op": op, "rhs": rhs,
                "free": k is not None,
                "label": model.names[k] if k is not None and not model.names[k].startswith("_")
                else ""})
    return pd.DataFrame(rows)


#: Matrix, row-name kind, column-name kind and lavaan operator of each kind of cell.
_CELLS = (("lambda", "observed", "inner", "=~"), ("beta", "inner", "inner", "~"),
          ("psi", "inner", "inner", "~~"), ("theta", "observed", "observed", "~~"),
          ("gamma1", "inner", "inner", "~1"), ("gamma2", "observed", "observed", "~1"))


def _cells(model: Structure, key: str) -> list[tuple[int, ...]]:
    """Cells of one matrix that are free, or fixed at a non-zero value."""
    shown = model.patterns[key].any(axis=0) | (model.fixed[key] != 0)
    cells = [tuple(int(v) for v in c) for c in np.argwhere(shown)]
    if key in ("psi", "theta"):
        cells = [c for c in cells if c[0] <= c[1]]
    return cells


def _free_index(model: Structure, key: str, cell: tuple[int, ...]) -> int | None:
    """Index of the free parameter in a cell, or None when the cell is fixed."""
    hits = np.flatnonzero(model.patterns[key][(slice(None),) + cell])
    return int(hits[0]) if len(hits) else None


def _std_scale(key: str, i: int, j: int | None, sd: dict[str, np.ndarray],
               mats: dict[str, np.ndarray]) -> float:
    """Factor turning a parameter into lavaan's ``std.all`` metric.

    A (residual) covariance becomes a (residual) correlation, divided by the square roots
    of the two (residual) variances in the same matrix, as lavaan does.
    """
    if key == "lambda":
        return sd["inner"][j] / sd["observed"][i]
    if key == "beta":
        return sd["inner"][j] / sd["inner"][i]
    if key in ("psi", "theta") and i != j:
        product = mats[key][i, i] * mats[key][j, j]
        return 1.0 / np.sqrt(product) if product > 0 else np.nan
    if key in ("psi", "theta"):
        return 1.0 / sd["inner" if key == "psi" else "observed"][i] ** 2
    return 1.0 / sd["inner" if key == "gamma1" else "observed"][i]
