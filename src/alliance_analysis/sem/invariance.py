"""Measurement invariance: over occasions (one factor measured by the same items at K
occasions) and over groups (:func:`fit_group_invariance`, lavaan's ``group.equal``).

The models follow ``semTools::measEq.syntax(configural.model, longFacNames = ...,
ID.fac = "marker", auto = "all", long.equal = ...)`` (Jorgensen et al., 2022), so that the
syntax shown with a result can be pasted into lavaan and gives the same fit:

* one factor per occasion (``F1 .. FK``), the items matched by their position in each
  occasion's list;
* **marker identification**: the first item's loading is fixed to 1 and its intercept to 0 at
  every occasion; the factor means, variances and covariances are free at every level;
* every residual variance is free, and the same item's residuals covary between every pair of
  occasions (``auto = "all"``);
* the levels add equality constraints over occasions (labels shared by the same item):
  ``configural`` none, ``metric`` loadings, ``scalar`` loadings and intercepts, ``strict``
  loadings, intercepts and residual variances (the residual covariances stay free).

Because the marker's intercept is 0 at every occasion, the scalar model's factor means are
free at every occasion; this is the same model (the same chi-square and df) as fixing the
first occasion's factor mean to 0 with free marker intercepts equal over occasions.

References
----------
Chen, F. F. (2007). Sensitivity of goodness of fit indexes to lack of measurement invariance.
*Structural Equation Modeling*, 14, 464-504.
Jorgensen, T. D., Pornprasertmanit, S., Schoemann, A. M., & Rosseel, Y. (2022). semTools:
Useful tools for structural equation modeling. R package version 0.5-6.
Satorra, A., & Bentler, P. M. (2001). A scaled difference chi-square test statistic for
moment structure analysis. *Psychometrika*, 66, 507-514.
Widaman, K. F., Ferrer, E., & Conger, R. D. (2010). Factorial invariance within longitudinal
structural equation models. *Child Development Perspectives*, 4, 10-18.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.results import ModelResult
from alliance_analysis.sem.models import fit_sem

#: The invariance levels, from least to most constrained.
LEVELS = ("configural", "metric", "scalar", "strict")

#: Chen's (2007) cut-offs: a change in CFI of at least -.010 and in RMSEA of at most .015
#: (from the less to the more constrained model) supports the added constraints.
DELTA_CFI_MIN = -0.010
DELTA_RMSEA_MAX = 0.015

#: What each level adds, in the verdict's words ("<what> equal over sessions").
_WHAT = {"metric": "loadings", "scalar": "intercepts", "strict": "residual variances"}

#: Columns of the table of :func:`invariance_table`, in order (MLR adds the scaled ones).
TABLE_COLUMNS = ("level", "npar", "chisq", "df", "pvalue", "cfi", "tli", "rmsea", "srmr", "aic",
                 "bic", "chisq_diff", "df_diff", "p_diff", "delta_cfi", "delta_rmsea",
                 "verdict")
ROBUST_COLUMNS = ("chisq_scaled", "df_scaled", "pvalue_scaled", "scaling_factor", "cfi_robust",
                  "tli_robust", "rmsea_robust")


def occasion_items(items: Sequence[str], occasions: Sequence[str | int],
                   pattern: str = "{item}_{occasion}") -> dict[str, list[str]]:
    """The columns of each occasion, from item stems and occasion names.

    ``occasion_items(["i1", "i2"], ["t1", "t2"])`` gives
    ``{"t1": ["i1_t1", "i2_t1"], "t2": ["i1_t2", "i2_t2"]}``.
    """
    return {str(o): [pattern.format(item=i, occasion=o) for i in items] for o in occasions}


def longitudinal_syntax(items_by_occasion: Mapping[str, Sequence[str]],
                        level: Literal["configural", "metric", "scalar", "strict"] = "configural",
                        factor: str = "F") -> str:
    """lavaan syntax of one invariance level of a factor measured at K occasions.

    Parameters
    ----------
    items_by_occasion
        The item columns of each occasion, in occasion order, the same item at the same
        position (e.g. ``{"t1": ["i1_t1", ..., "i4_t1"], "t2": [...], ...}``; see
        :func:`occasion_items`). The first item is the marker.
    level
        ``configural``, ``metric`` (+ loadings equal over occasions), ``scalar`` (+
        intercepts equal) or ``strict`` (+ residual variances equal).
    factor
        Prefix of the factor names: ``F1 .. FK`` by default, as in semTools.

    Returns
    -------
    str
        The syntax, one statement per line, with the conventions of
        ``semTools::measEq.syntax(ID.fac = "marker", auto = "all")`` (see the module notes).
        Labels: ``lambda_<item>``, ``nu_<item>``, ``theta_<item>`` when equal over occasions,
        with the occasion number appended (``lambda_2_t1``) when free.

    Raises
    ------
    AllianceParamsError
        Fewer than 2 occasions, fewer than 3 items, occasions with different numbers of items,
        a column used twice, or an unknown level.
    """
    if level not in LEVELS:
        raise AllianceParamsError(f"invariance level must be one of {list(LEVELS)}; got "
                                  f"{level!r}")
    columns = [list(cols) for cols in items_by_occasion.values()]
    n_items = {len(cols) for cols in columns}
    if len(columns) < 2 or len(n_items) != 1 or min(n_items) < 3:
        raise AllianceParamsError(
            "longitudinal invariance needs >= 2 occasions with the same number (>= 3) of "
            f"items each; got {dict(items_by_occasion)}")
    flat = [c for cols in columns for c in cols]
    if len(set(flat)) != len(flat):
        raise AllianceParamsError(f"a column appears twice in {dict(items_by_occasion)}")
    rank = LEVELS.index(level)
    factors = [f"{factor}{t + 1}" for t in range(len(columns))]

    def label(kind: str, item: int, occasion: int, equal: bool) -> str:
        return f"{kind}_{item + 1}" if equal else f"{kind}_{item + 1}_t{occasion + 1}"

    lines = ["# loadings (marker: first item fixed to 1)"]
    for t, (f, cols) in enumerate(zip(factors, columns)):
        terms = [f"1*{cols[0]}"] + [f"{label('lambda', i, t, rank >= 1)}*{c}"
                                    for i, c in enumerate(cols) if i > 0]
        lines.append(f"{f} =~ " + " + ".join(terms))
    lines.append("# intercepts (marker fixed to 0)")
    for t, cols in enumerate(columns):
        lines.append(f"{cols[0]} ~ 0*1")
        lines += [f"{c} ~ {label('nu', i, t, rank >= 2)}*1" for i, c in enumerate(cols) if i > 0]
    lines.append("# residual variances")
    for t, cols in enumerate(columns):
        lines += [f"{c} ~~ {label('theta', i, t, rank >= 3)}*{c}" for i, c in enumerate(cols)]
    lines.append("# the same item's residuals covary over occasions")
    for i in range(len(columns[0])):
        for t in range(len(columns)):
            lines += [f"{columns[t][i]} ~~ {columns[s][i]}" for s in range(t + 1, len(columns))]
    lines.append("# factor means, variances and covariances")
    lines += [f"{f} ~ 1" for f in factors]
    lines += [f"{f} ~~ {f}" for f in factors]
    lines += [f"{f} ~~ {g}" for k, f in enumerate(factors) for g in factors[k + 1:]]
    return "\n".join(lines) + "\n"


#: lavaan's ``group.equal`` of each level of invariance over groups.
GROUP_EQUAL = {"configural": (), "metric": ("loadings",),
               "scalar": ("loadings", "intercepts"),
               "strict": ("loadings", "intercepts", "residuals")}


def fit_group_invariance(syntax: str, data: pd.DataFrame, group: str,
                         levels: Sequence[str] = LEVELS, estimator: Literal["ML", "MLR"] = "ML",
                         missing: Literal["fiml", "listwise"] = "fiml", name: str = "invariance"
                         ) -> dict[str, ModelResult]:
    """Fit the levels of measurement invariance over the groups of a column.

    As ``lavaan::cfa(..., group = group, group.equal = ...)`` with the marker items of the
    syntax: ``configural`` (the same factor structure in every group), ``metric`` (loadings
    equal), ``scalar`` (loadings and intercepts equal; the latent means then free in every
    group but the first), ``strict`` (and residual variances equal), the conventions of
    ``semTools::measEq.syntax(ID.fac = "marker", group.equal = ...)`` too. Compare the
    results with :func:`invariance_table` (``over=`` the groups).

    Returns
    -------
    dict
        Level -> :class:`ModelResult` (named ``<name>_<level>``), in the order of ``levels``.
    """
    levels = _check_levels(levels)
    return {level: fit_sem(syntax, data, f"{name}_{level}", missing=missing,
                           estimator=estimator, group=group, group_equal=GROUP_EQUAL[level])
            for level in levels}


def fit_invariance(data: pd.DataFrame, items_by_occasion: Mapping[str, Sequence[str]],
                   levels: Sequence[str] = LEVELS, estimator: Literal["ML", "MLR"] = "ML",
                   missing: Literal["fiml", "listwise"] = "fiml", factor: str = "F",
                   over: str = "sessions") -> pd.DataFrame:
    """Fit the invariance levels and compare each with the one before.

    Parameters
    ----------
    data
        One row per case, the item columns of every occasion.
    items_by_occasion
        See :func:`longitudinal_syntax`.
    levels
        The levels to fit, from least to most constrained (a subset of :data:`LEVELS` in that
        order); each is compared with the previous one in this list.
    estimator, missing
        Passed to :func:`alliance_analysis.sem.models.fit_sem` (mean structure always on).
    factor
        Prefix of the factor names.
    over
        The word for the occasions in the verdicts ("loadings equal over sessions").

    Returns
    -------
    pandas.DataFrame
        One row per level; see :func:`invariance_table`.
    """
    levels = _check_levels(levels)
    results = {level: fit_sem(longitudinal_syntax(items_by_occasion, level, factor), data,
                              f"invariance_{level}", missing=missing, meanstructure=True,
                              estimator=estimator)
               for level in levels}
    return invariance_table(results, over=over)


def invariance_table(results: Mapping[str, ModelResult], over: str = "sessions"
                     ) -> pd.DataFrame:
    """The comparison table of fitted invariance levels (keys: level names, in order).

    Returns
    -------
    pandas.DataFrame
        :data:`TABLE_COLUMNS`: each level's ``npar, chisq, df, pvalue, cfi, tli, rmsea, srmr,
        aic, bic``; against the previous row ``chisq_diff, df_diff, p_diff`` (the likelihood
        ratio test; under MLR the Satorra-Bentler (2001) scaled difference,
        :func:`scaled_difference`), ``delta_cfi`` and ``delta_rmsea`` (this level minus the
        previous; under MLR of the robust CFI and RMSEA), and ``verdict``
        (:func:`verdict`). Under MLR the :data:`ROBUST_COLUMNS` are added before ``verdict``.
        The first row's comparison cells are NaN.
    """
    levels = _check_levels(list(results))
    robust = any(r.fit.get("estimator") == "MLR" for r in results.values())
    cfi_key, rmsea_key = ("cfi_robust", "rmsea_robust") if robust else ("cfi", "rmsea")
    rows, previous, previous_level = [], None, ""
    for level in levels:
        fit = results[level].fit
        row = {"level": level, "npar": fit["npar"], "chisq": fit["chi2"], "df": fit["df"],
               "pvalue": fit["p"], **{k: fit[k] for k in ("cfi", "tli", "rmsea", "srmr",
                                                          "aic", "bic")}}
        if robust:
            row.update({k: fit.get(k, np.nan) for k in ROBUST_COLUMNS})
        if previous is None:
            row.update(chisq_diff=np.nan, df_diff=np.nan, p_diff=np.nan, delta_cfi=np.nan,
                       delta_rmsea=np.nan)
            row["verdict"] = _baseline_verdict(level, fit, over)
        else:
            prev = previous.fit
            if robust:
                diff, ddf, p = scaled_difference(fit["chi2"], fit["df"], fit["scaling_factor"],
                                                 prev["chi2"], prev["df"],
                                                 prev["scaling_factor"])
            else:
                diff, ddf = fit["chi2"] - prev["chi2"], fit["df"] - prev["df"]
                p = stats.chi2.sf(diff, ddf) if ddf > 0 else np.nan
            d_cfi, d_rmsea = fit[cfi_key] - prev[cfi_key], fit[rmsea_key] - prev[rmsea_key]
            row.update(chisq_diff=diff, df_diff=ddf, p_diff=p, delta_cfi=d_cfi,
                       delta_rmsea=d_rmsea)
            converged = bool(fit["converged"] and prev["converged"])
            # A more constrained model cannot fit better than a less constrained one at their
            # optima: if it does, the less constrained fit stopped short (a local solution).
            worse = fit["loglik"] > prev["loglik"] + 1e-6
            row["verdict"] = (
                f"{_what(level, over)}: not assessed (the {previous_level} model's "
                f"log-likelihood {prev['loglik']:.2f} is below this more constrained model's "
                f"{fit['loglik']:.2f}: the {previous_level} fit did not reach its optimum)"
                if worse else verdict(level, d_cfi, d_rmsea, over) if converged else
                f"{_what(level, over)}: not assessed (a model did not converge)")
        rows.append(row)
        previous, previous_level = results[level], level
    columns = list(TABLE_COLUMNS[:-1]) + (list(ROBUST_COLUMNS) if robust else []) + ["verdict"]
    return pd.DataFrame(rows, columns=columns)


def scaled_difference(chisq_restricted: float, df_restricted: int, scaling_restricted: float,
                      chisq_free: float, df_free: int, scaling_free: float
                      ) -> tuple[float, int, float]:
    """Satorra-Bentler (2001) scaled chi-square difference of two nested models.

    ``(T0 - T1) / cd`` with ``cd = (df0 c0 - df1 c1) / (df0 - df1)``, where model 0 is the
    more constrained one, ``T`` are the unscaled (ML) statistics and ``c`` the scaling
    factors (lavaan's ``lavTestLRT(method = "satorra.bentler.2001")``, its default under
    MLR).

    Returns
    -------
    tuple
        The scaled difference, its df, and its p-value; NaN difference and p when
        ``cd <= 0`` (the test is then undefined) or the df do not increase.
    """
    ddf = int(df_restricted - df_free)
    if ddf <= 0:
        return np.nan, ddf, np.nan
    cd = (df_restricted * scaling_restricted - df_free * scaling_free) / ddf
    if not np.isfinite(cd) or cd <= 0:
        return np.nan, ddf, np.nan
    diff = (chisq_restricted - chisq_free) / cd
    return float(diff), ddf, float(stats.chi2.sf(diff, ddf))


def verdict(level: str, delta_cfi: float, delta_rmsea: float, over: str = "sessions") -> str:
    """Plain-language verdict on one added set of constraints, by Chen's (2007) cut-offs.

    Supported when ``delta_cfi >= -.010`` and ``delta_rmsea <= .015`` (changes from the less
    to the more constrained model); otherwise the failing criteria are named, e.g.
    ``"loadings equal over sessions: supported (ΔCFI = -0.001, ΔRMSEA = -0.001; Chen 2007:
    ΔCFI >= -.010 and ΔRMSEA <= .015)"``.
    """
    if level not in _WHAT:
        raise AllianceParamsError(f"a verdict is given for {list(_WHAT)}; got {level!r}")
    numbers = f"ΔCFI = {delta_cfi:.3f}, ΔRMSEA = {delta_rmsea:.3f}"
    if not (np.isfinite(delta_cfi) and np.isfinite(delta_rmsea)):
        return f"{_what(level, over)}: not assessed ({numbers})"
    failing = ([f"ΔCFI = {delta_cfi:.3f} < -.010"] if delta_cfi < DELTA_CFI_MIN else []) + (
        [f"ΔRMSEA = {delta_rmsea:.3f} > .015"] if delta_rmsea > DELTA_RMSEA_MAX else [])
    rule = "Chen 2007: ΔCFI >= -.010 and ΔRMSEA <= .015"
    if not failing:
        return f"{_what(level, over)}: supported ({numbers}; {rule})"
    return f"{_what(level, over)}: not supported ({'; '.join(failing)}; {rule})"


def _what(level: str, over: str) -> str:
    return f"{_WHAT[level]} equal over {over}"


def _baseline_verdict(level: str, fit: Mapping, over: str) -> str:
    if level != "configural":
        return f"{level} model (baseline of this comparison; no earlier level fitted)"
    return (f"same factor structure at all {over} (configural baseline): CFI = "
            f"{fit['cfi']:.3f}, RMSEA = {fit['rmsea']:.3f}")


def _check_levels(levels: Sequence[str]) -> list[str]:
    levels = list(levels)
    unknown = [lv for lv in levels if lv not in LEVELS]
    ranks = [LEVELS.index(lv) for lv in levels if lv in LEVELS]
    if unknown or not levels or ranks != sorted(set(ranks)):
        raise AllianceParamsError(
            f"invariance levels must be distinct, from {list(LEVELS)}, in that order; got "
            f"{levels}")
    return levels
