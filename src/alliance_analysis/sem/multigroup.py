"""Multigroup structural equation models, by lavaan's conventions.

One model syntax is fitted in each group of a grouping column (``group = "school"`` in
lavaan). Each group has its own copy of every parameter unless it is constrained equal over
groups:

* by a **label** in the syntax (``f =~ a*x2``): as in lavaan, a plain label names one
  parameter shared by all groups;
* by **group.equal**: every parameter of a kind is shared (``loadings``, ``intercepts``,
  ``residuals``, ``residual.covariances``, ``means``, ``lv.variances``, ``lv.covariances``,
  ``regressions``). With ``intercepts`` equal and ``means`` not, the latent means are freed
  in every group but the first (lavaan's rule, the scalar model of measurement invariance).

The groups share one parameter vector; the log-likelihood is the sum over groups
(:func:`alliance_analysis.sem.estimation.fit`), and the fit statistics follow lavaan 0.6:
chi-square, log-likelihood and baseline summed over groups; RMSEA with the total N times
``sqrt(G)`` (Steiger 1998); SRMR the groups' SRMRs weighted by their N; BIC with the total
N. Under MLR the Huber-White sandwich stacks the case-wise scores of all groups, and the
Yuan-Bentler trace sums the groups' unrestricted-model traces.

References
----------
Jöreskog, K. G. (1971). Simultaneous factor analysis in several populations.
*Psychometrika*, 36, 409-426.
Steiger, J. H. (1998). A note on multiple sample extensions of the RMSEA fit index.
*Structural Equation Modeling*, 5, 411-419.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.errors import AllianceDataError, AllianceParamsError, NotEstimableError
from alliance_analysis.sem import robust as sem_robust
from alliance_analysis.sem.estimation import (
    Estimates,
    Moments,
    Structure,
    derivatives,
    implied,
    invert_information,
    moments,
    observed_information,
)
from alliance_analysis.sem.fit import (
    cfi,
    independence_loglik,
    lavaan_names,
    rmsea_with_ci,
    saturated,
    srmr_bentler,
    tli,
)

#: The kinds of parameter ``group_equal`` may constrain, as lavaan's ``group.equal``.
GROUP_EQUAL = ("loadings", "intercepts", "means", "residuals", "residual.covariances",
               "lv.variances", "lv.covariances", "regressions")


def parameter_kind(model: Structure, k: int) -> str:
    """lavaan's ``group.equal`` kind of free parameter ``k`` (by its first cell)."""
    for key in ("lambda", "beta", "psi", "theta", "gamma1", "gamma2"):
        if key in model.patterns and model.patterns[key][k].any():
            cell = np.argwhere(model.patterns[key][k])[0]
            break
    else:  # pragma: no cover - every free parameter sits in some cell
        raise ValueError(f"parameter {model.names[k]} has no cell")
    if key == "lambda":
        return "loadings"
    if key == "beta":
        return "regressions"
    if key == "gamma2":
        return "intercepts"
    if key == "gamma1":
        return "means" if model.inner[cell[0]] in model.latent else "intercepts"
    i, j = int(cell[0]), int(cell[1])
    if key == "theta":
        return "residuals" if i == j else "residual.covariances"
    latent = model.inner[i] in model.latent and model.inner[j] in model.latent
    if i == j:
        return "lv.variances" if latent else "residuals"
    return "lv.covariances" if latent else "residual.covariances"


def group_structures(base: Structure, n_groups: int, group_equal: Sequence[str] = ()
                     ) -> tuple[Structure, ...]:
    """One structure per group over a shared parameter vector.

    Parameters
    ----------
    base
        The single-group structure of the syntax (:func:`~alliance_analysis.sem.estimation.
        structure`).
    n_groups
        Number of groups.
    group_equal
        Kinds of parameters equal over groups (:data:`GROUP_EQUAL`).

    Returns
    -------
    tuple of Structure
        Structures with the same ``names`` (the shared vector: a parameter free in each
        group is named ``<name>.g<group>``); group g's patterns place the vector's entries
        in its matrices.
    """
    unknown = [kind for kind in group_equal if kind not in GROUP_EQUAL]
    if unknown:
        raise AllianceParamsError(f"group_equal: unknown kind(s) {unknown}; choose from "
                                  f"{list(GROUP_EQUAL)}")
    names: list[str] = []
    index: list[list[int]] = []  # index[k][g]: the shared vector's entry of base k in group g
    for k, name in enumerate(base.names):
        shared = not name.startswith("_") or parameter_kind(base, k) in group_equal
        if shared:
            index.append([len(names)] * n_groups)
            names.append(name)
        else:
            index.append(list(range(len(names), len(names) + n_groups)))
            names += [f"{name}.g{g + 1}" for g in range(n_groups)]
    free_means = []  # latent means freed in groups 2.. when intercepts are equal
    if (base.meanstructure and "intercepts" in group_equal and "means" not in group_equal
            and n_groups > 1):
        for i, inner in enumerate(base.inner):
            if (inner in base.latent and not base.patterns["gamma1"][:, i].any()
                    and base.fixed["gamma1"][i] == 0):
                free_means.append((i, len(names)))
                names += [f"_{inner}~1.g{g + 1}" for g in range(1, n_groups)]
    out = []
    for g in range(n_groups):
        patterns = {}
        for key, pattern in base.patterns.items():
            new = np.zeros((len(names),) + pattern.shape[1:])
            for k in range(base.n_free):
                new[index[k][g]] += pattern[k]
            if key == "gamma1" and g > 0:
                for i, first in free_means:
                    new[first + g - 1, i] = 1.0
            patterns[key] = new
        out.append(replace(base, names=tuple(names), patterns=patterns))
    return tuple(out)


def group_moments(data: pd.DataFrame, columns: tuple[str, ...], group: str,
                  missing: Literal["listwise", "fiml"]
                  ) -> tuple[tuple[Moments, ...], tuple[str, ...], int]:
    """The data of each group (groups in order of first appearance, as lavaan).

    Returns
    -------
    tuple
        The groups' :class:`Moments`, their labels, and the number of rows dropped because
        the group is missing.

    Raises
    ------
    AllianceDataError
        The group column is absent, has fewer than two groups, or a group has too few cases.
    """
    if group not in data.columns:
        raise AllianceDataError(f"the group column {group!r} is not in the data; columns "
                                f"present: {[str(c) for c in data.columns]}")
    labels = data[group]
    known = labels.notna()
    order = list(dict.fromkeys(labels[known].tolist()))
    if len(order) < 2:
        raise NotEstimableError(f"the group column {group!r} has {len(order)} group(s) "
                                f"({order}); a multigroup model needs at least two")
    parts = []
    for value in order:
        try:
            parts.append(moments(data.loc[labels == value], columns, missing))
        except AllianceDataError as error:
            raise type(error)(f"group {group} = {value!r}: {error}") from error
    return tuple(parts), tuple(str(v) for v in order), int((~known).sum())


def group_fit_measures(models: tuple[Structure, ...], data: tuple[Moments, ...],
                       est: Estimates) -> dict[str, Any]:
    """The fit statistics of a multigroup fit (the keys of
    :func:`alliance_analysis.sem.fit.fit_measures`), by lavaan's multigroup rules."""
    n_groups = len(models)
    p = len(data[0].columns)
    n_moments = n_groups * (p * (p + 1) // 2 + (p if models[0].meanstructure else 0))
    df = n_moments - models[0].n_free
    loglik_h1, base_loglik, srmr_sum, h1_converged = 0.0, 0.0, 0.0, True
    n = sum(d.n_obs for d in data)
    for model, moments_g in zip(models, data):
        mean_h1, cov_h1, loglik_g, converged_g = saturated(moments_g)
        loglik_h1 += loglik_g
        base_loglik += independence_loglik(moments_g)
        h1_converged = h1_converged and converged_g
        sigma, mean = implied(model, est.theta)
        srmr_sum += moments_g.n_obs * srmr_bentler(
            cov_h1, sigma, mean_h1 if model.meanstructure else None, mean)
    chi2 = max(2 * (loglik_h1 - est.loglik), 0.0)
    base_chi2 = 2 * (loglik_h1 - base_loglik)
    base_df = n_groups * p * (p - 1) // 2
    rmsea, ci_low, ci_high = (value * np.sqrt(n_groups) for value in rmsea_with_ci(chi2, df, n))
    measures = {
        "n_obs": n, "n_dropped": sum(d.n_dropped for d in data), "npar": models[0].n_free,
        "loglik": est.loglik, "loglik_saturated": loglik_h1,
        "saturated_converged": h1_converged, "chi2": chi2, "df": df,
        "p": stats.chi2.sf(chi2, df) if df > 0 else np.nan,
        "baseline_chi2": base_chi2, "baseline_df": base_df,
        "cfi": cfi(chi2, df, base_chi2, base_df), "tli": tli(chi2, df, base_chi2, base_df),
        "rmsea": rmsea, "rmsea_ci_low": ci_low, "rmsea_ci_high": ci_high,
        "srmr": srmr_sum / n, "aic": -2 * est.loglik + 2 * models[0].n_free,
        "bic": -2 * est.loglik + np.log(n) * models[0].n_free,
        "ngroups": n_groups, "n_obs_groups": [d.n_obs for d in data]}
    measures.update(lavaan_names(measures))
    return measures


def with_group_sandwich(models: tuple[Structure, ...], data: tuple[Moments, ...],
                        est: Estimates) -> Estimates:
    """MLR standard errors of a multigroup fit: the sandwich with every group's case-wise
    scores (lavaan's ``robust.huber.white``)."""
    info = observed_information(models, data, est.theta)
    scores = []
    for model, moments_g in zip(models, data):
        sigma, mean = implied(model, est.theta)
        d_sigma, d_mean = derivatives(model, est.theta)
        scores.append(sem_robust.casewise_scores(moments_g, sigma, mean, d_sigma, d_mean))
    stacked = np.concatenate(scores)
    meat = stacked.T @ stacked
    bread, singular = invert_information(info)
    parts = sem_robust.Sandwich(vcov=bread @ meat @ bread, bread=bread, meat=meat,
                                singular=singular)
    notes = list(est.warnings)
    if singular and not any("singular" in note for note in notes):
        notes.append("the information matrix is singular: the model may not be identified; "
                     "standard errors are not available")
    return replace(est, vcov=parts.vcov, information="observed (sandwich)",
                   robust={"sandwich": parts}, warnings=tuple(notes))


def group_mlr_measures(models: tuple[Structure, ...], data: tuple[Moments, ...],
                       est: Estimates, base: dict[str, Any]) -> dict[str, Any]:
    """The MLR statistics of a multigroup fit (the keys of
    :func:`alliance_analysis.sem.robust.mlr_measures`).

    Under FIML the robust CFI/TLI/RMSEA use Zhang & Savalei's correction over all groups
    (:func:`alliance_analysis.sem.robust.fiml_corrected`).
    """
    chi2, df = base["chi2"], base["df"]
    b_chi2, b_df, n = base["baseline_chi2"], base["baseline_df"], base["n_obs"]
    meanstructure = models[0].meanstructure
    p = len(data[0].columns)
    trace_h1, b_trace = 0.0, 0.0
    for moments_g in data:
        mean_h1, cov_h1, _, _ = saturated(moments_g)
        t_h1 = sem_robust.h1_trace(moments_g, cov_h1, mean_h1 if meanstructure else None,
                                   meanstructure)
        b_sigma, b_mean, b_ds, b_dm = sem_robust.independence_model(moments_g, meanstructure)
        b_scores = sem_robust.casewise_scores(moments_g, b_sigma, b_mean, b_ds, b_dm)
        b_inv, _ = invert_information(sem_robust.linear_information(
            moments_g, b_sigma, b_mean, b_ds, b_dm))
        trace_h1 += t_h1
        b_trace += t_h1 - float(np.sum(b_inv * (b_scores.T @ b_scores)))
    sandwich = est.robust["sandwich"]
    trace_h0 = float(np.sum(sandwich.bread * sandwich.meat))
    trace = trace_h1 - trace_h0
    c = trace / df if df > 0 else np.nan
    c_b = b_trace / b_df if b_df > 0 else np.nan
    n_h1 = len(models) * (p * (p + 1) // 2 + (p if meanstructure else 0))
    scaled, b_scaled = chi2 / c, b_chi2 / c_b
    root_g = np.sqrt(len(models))
    out: dict[str, Any] = {
        "chisq_scaled": scaled, "df_scaled": df,
        "pvalue_scaled": stats.chi2.sf(scaled, df) if df > 0 else np.nan,
        "scaling_factor": c, "scaling_factor_h1": trace_h1 / n_h1,
        "scaling_factor_h0": trace_h0 / models[0].n_free, "trace_ugamma": trace,
        "baseline_chisq_scaled": b_scaled, "baseline_scaling_factor": c_b,
        "cfi_scaled": sem_robust.robust_cfi(scaled, df, b_scaled, b_df, 1.0, 1.0),
        "tli_scaled": sem_robust.robust_tli(scaled, df, b_scaled, b_df),
        "rmsea_scaled": sem_robust.robust_rmsea(chi2, trace, n) * root_g}
    if any(d.missing == "fiml" and len(d.patterns) > 1 for d in data):
        fc = sem_robust.fiml_corrected(models, data, est)
        out.update(
            cfi_robust=sem_robust.robust_cfi(fc["chi2"], df, fc["base_chi2"], b_df, fc["c"],
                                             fc["c_base"]),
            tli_robust=sem_robust.robust_tli(fc["chi2"], df, fc["base_chi2"], b_df, fc["c"],
                                             fc["c_base"]),
            rmsea_robust=sem_robust.robust_rmsea(fc["chi2"], df, n, fc["c"]) * root_g)
    else:
        out.update(cfi_robust=sem_robust.robust_cfi(chi2, df, b_chi2, b_df, c, c_b),
                   tli_robust=sem_robust.robust_tli(chi2, df, b_chi2, b_df, c, c_b),
                   rmsea_robust=sem_robust.robust_rmsea(chi2, df, n, c) * root_g)
    return out
