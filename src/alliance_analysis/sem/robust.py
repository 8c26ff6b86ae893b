"""Robust maximum likelihood (lavaan's ``estimator = "MLR"``) and robust fit indices.

MLR keeps the ML (or FIML) estimates and changes the inference, as lavaan 0.6-14 does:

* **standard errors**: the Huber-White sandwich ``A^-1 B A^-1`` with ``A`` the observed
  information (the Hessian of the log-likelihood; lavaan uses it under MLR even with
  complete data) and ``B = sum_i s_i s_i'`` the cross-product of the case-wise scores (under
  FIML, the scores of each case's observed-data likelihood);
* **test**: the Yuan-Bentler (Mplus variant) scaled chi-square ``T / c`` with
  ``c = (tr(A1^-1 B1) - tr(A0^-1 B0)) / df``: ``A1, B1`` are the observed and first-order
  information of the unrestricted (h1) model, evaluated at the saturated moments (sample
  moments; under FIML their EM estimates: this, not the model-implied moments that
  lavaan's option ``h1.information = "structured"`` suggests, reproduces lavaan 0.6-14's
  ``scaling.factor.h1``), ``A0, B0`` those of the model at the estimates;
* **fit indices**: "scaled" ones (the naive CFI/TLI/RMSEA of the scaled statistics of the
  model and of the baseline model) and "robust" ones (Brosseau-Liard, Savalei & Li 2012;
  Brosseau-Liard & Savalei 2014), with the FIML-corrected version (Zhang & Savalei 2022,
  lavaan's "V3") under missing data.

References
----------
Yuan, K.-H., & Bentler, P. M. (2000). Three likelihood-based methods for mean and
covariance structure analysis with nonnormal missing data. *Sociological Methodology*, 30,
165-200.
Brosseau-Liard, P. E., Savalei, V., & Li, L. (2012). An investigation of the sample
performance of two nonnormality corrections for RMSEA. *Multivariate Behavioral Research*,
47, 904-930.
Brosseau-Liard, P. E., & Savalei, V. (2014). Adjusting incremental fit indices for
nonnormality. *Multivariate Behavioral Research*, 49, 460-470.
Zhang, X., & Savalei, V. (2022). New computations for RMSEA and CFI following FIML and TS
estimation with missing data. *Psychological Methods*.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import linalg, stats

from alliance_analysis.sem.fit import saturated
from alliance_analysis.sem.estimation import (
    Estimates,
    Moments,
    Structure,
    derivatives,
    implied,
    invert_information,
    observed_information,
)


@dataclass(frozen=True)
class Sandwich:
    """The MLR standard-error ingredients of one fit (totals over cases, not averages).

    Attributes
    ----------
    vcov
        ``A^-1 B A^-1`` (NaN when ``A`` is singular).
    bread
        ``A^-1``, the inverse observed information.
    meat
        ``B``, the cross-product of the case-wise scores.
    singular
        Whether ``A`` is singular.
    """

    vcov: np.ndarray
    bread: np.ndarray
    meat: np.ndarray
    singular: bool


def h1_design(p: int, meanstructure: bool) -> tuple[np.ndarray, np.ndarray]:
    """d Sigma / d psi and d mu / d psi of the unrestricted model.

    ``psi`` is the means (with a mean structure) followed by the lower triangle of Sigma
    with the diagonal (column by column); shapes ``(k, p, p)`` and ``(k, p)``.
    """
    pairs = [(i, j) for j in range(p) for i in range(j, p)]
    n_mean = p if meanstructure else 0
    d_sigma = np.zeros((n_mean + len(pairs), p, p))
    d_mean = np.zeros((n_mean + len(pairs), p))
    for a in range(n_mean):
        d_mean[a, a] = 1.0
    for m, (i, j) in enumerate(pairs):
        d_sigma[n_mean + m, i, j] = d_sigma[n_mean + m, j, i] = 1.0
    return d_sigma, d_mean


def casewise_scores(data: Moments, sigma: np.ndarray, mean: np.ndarray | None,
                    d_sigma: np.ndarray, d_mean: np.ndarray) -> np.ndarray:
    """Scores of each case's log-likelihood, ``(N, k)``, for parameters with the given
    derivatives of Sigma and mu; each case uses its observed variables only.

    Without a mean structure (``mean`` None) the means are the sample means of complete
    data, as lavaan.
    """
    if data.rows is None:
        raise ValueError("case-wise scores need the rows of the data (Moments.rows)")
    out = []
    for (idx, _, xbar, _), rows in zip(data.patterns, data.rows):
        inv = np.linalg.inv(sigma[np.ix_(idx, idx)])
        mu = xbar if mean is None else mean[idx]
        z = (rows - mu) @ inv
        ds = d_sigma[:, idx][:, :, idx]
        dm = d_mean[:, idx]
        quad = np.einsum("ni,kij,nj->nk", z, ds, z)
        trace = np.einsum("ij,kji->k", inv, ds)
        out.append(z @ dm.T + 0.5 * (quad - trace[None, :]))
    return np.concatenate(out)


def linear_information(data: Moments, sigma: np.ndarray, mean: np.ndarray | None,
                       d_sigma: np.ndarray, d_mean: np.ndarray) -> np.ndarray:
    """Observed information (minus the Hessian of logL, total) of a model whose Sigma and
    mu are linear in its parameters (the unrestricted and the independence models).

    Per pattern, with ``A_k = Sigma^-1 dSigma_k``, ``W = S + d d'`` and ``d = xbar - mu``:
    ``n [-tr(A_k A_l)/2 + tr(A_k A_l Sigma^-1 W) + mu_k' Sigma^-1 mu_l
    + d' Sigma^-1 dSigma_k Sigma^-1 mu_l + d' Sigma^-1 dSigma_l Sigma^-1 mu_k]``.
    """
    k = len(d_sigma)
    info = np.zeros((k, k))
    for idx, n, xbar, cov in data.patterns:
        inv = np.linalg.inv(sigma[np.ix_(idx, idx)])
        d = np.zeros(len(idx)) if mean is None else xbar - mean[idx]
        w = cov + np.outer(d, d)
        x = inv @ d_sigma[:, idx][:, :, idx]
        dm = d_mean[:, idx]
        xm = x @ (inv @ w)
        cross = np.einsum("kij,j,li->kl", x, inv @ d, dm)
        info += n * (-0.5 * np.einsum("kij,lji->kl", x, x) + np.einsum("kij,lji->kl", x, xm)
                     + dm @ inv @ dm.T + cross + cross.T)
    return (info + info.T) / 2


def h1_trace(data: Moments, sigma: np.ndarray, mean: np.ndarray | None,
              meanstructure: bool) -> float:
    """``tr(A1^-1 B1)`` of the unrestricted model at the moments ``sigma, mean``."""
    d_sigma, d_mean = h1_design(len(sigma), meanstructure)
    scores = casewise_scores(data, sigma, mean, d_sigma, d_mean)
    a1 = linear_information(data, sigma, mean, d_sigma, d_mean)
    a1_inv, _ = invert_information(a1)
    return float(np.sum(a1_inv * (scores.T @ scores)))


def independence_model(data: Moments, meanstructure: bool
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """ML estimates of the baseline (independence) model and its derivative arrays.

    Returns ``sigma, mean, d_sigma, d_mean``: diagonal Sigma and free means, each from the
    cases where the variable is observed (the likelihood factorises, also under FIML).
    """
    p = len(data.columns)
    mean, var = np.zeros(p), np.zeros(p)
    for j in range(p):
        parts = [(n, xbar[list(idx).index(j)]) for idx, n, xbar, _ in data.patterns
                 if j in idx]
        n_j = sum(n for n, _ in parts)
        mean[j] = sum(n * x for n, x in parts) / n_j
        total = 0.0
        for idx, n, xbar, cov in data.patterns:
            if j in idx:
                k = list(idx).index(j)
                total += n * (cov[k, k] + (xbar[k] - mean[j]) ** 2)
        var[j] = total / n_j
    n_mean = p if meanstructure else 0
    d_sigma = np.zeros((n_mean + p, p, p))
    d_mean = np.zeros((n_mean + p, p))
    for a in range(p):
        if meanstructure:
            d_mean[a, a] = 1.0
        d_sigma[n_mean + a, a, a] = 1.0
    return np.diag(var), (mean if meanstructure else None), d_sigma, d_mean


def yuan_bentler(model: Structure | tuple[Structure, ...], data: Moments | tuple[Moments, ...],
                 est: Estimates, df: int, sandwich_parts: Sandwich) -> dict[str, float]:
    """Yuan-Bentler (Mplus variant) scaling factors of the model and the baseline model.

    Returns ``trace_ugamma, scaling_factor, scaling_factor_h1, scaling_factor_h0`` for the
    model and ``baseline_scaling_factor`` for the independence model (df ``G p(p-1)/2``).
    With several groups the unrestricted and baseline traces are summed over groups (their
    parameters are separate per group); the model's trace comes from the joint sandwich.
    """
    models = model if isinstance(model, tuple) else (model,)
    groups = data if isinstance(data, tuple) else (data,)
    meanstructure = models[0].meanstructure
    p = len(groups[0].columns)
    trace_h1, b_trace = 0.0, 0.0
    for data_g in groups:
        mean_h1, cov_h1, _, _ = saturated(data_g)
        t_h1 = h1_trace(data_g, cov_h1, mean_h1 if meanstructure else None, meanstructure)
        b_sigma, b_mean, b_ds, b_dm = independence_model(data_g, meanstructure)
        b_scores = casewise_scores(data_g, b_sigma, b_mean, b_ds, b_dm)
        b_inv, _ = invert_information(linear_information(data_g, b_sigma, b_mean, b_ds, b_dm))
        trace_h1 += t_h1
        b_trace += t_h1 - float(np.sum(b_inv * (b_scores.T @ b_scores)))
    n_h1 = len(groups) * (p * (p + 1) // 2 + (p if meanstructure else 0))
    trace_h0 = float(np.sum(sandwich_parts.bread * sandwich_parts.meat))
    trace = trace_h1 - trace_h0
    b_df = len(groups) * p * (p - 1) // 2
    return {"trace_ugamma": trace,
            "scaling_factor": trace / df if df > 0 else np.nan,
            "scaling_factor_h1": trace_h1 / n_h1,
            "scaling_factor_h0": trace_h0 / models[0].n_free,
            "baseline_scaling_factor": b_trace / b_df if b_df > 0 else np.nan}


def robust_cfi(chi2: float, df: int, base_chi2: float, base_df: int, c: float,
               c_base: float) -> float:
    """lavaan's ``lav_fit_cfi`` with scaling factors (Brosseau-Liard & Savalei 2014, eq. 15);
    the plain CFI when either factor is 1."""
    if not np.all(np.isfinite([chi2, df, base_chi2, base_df, c, c_base])):
        return np.nan
    if df > 0 and c != 1 and c_base != 1:
        t1 = max(chi2 - c * df, 0.0)
        t2 = max(chi2 - c * df, base_chi2 - c_base * base_df, 0.0)
    else:
        t1 = max(chi2 - df, 0.0)
        t2 = max(chi2 - df, base_chi2 - base_df, 0.0)
    return 1.0 if np.isclose(t1, 0.0) and np.isclose(t2, 0.0) else 1.0 - t1 / t2


def robust_tli(chi2: float, df: int, base_chi2: float, base_df: int, c: float = 1.0,
               c_base: float = 1.0) -> float:
    """lavaan's ``lav_fit_tli``: ``1 - (T - c df) df_b / ((T_b - c_b df_b) df)``."""
    if not np.all(np.isfinite([chi2, df, base_chi2, base_df, c, c_base])):
        return np.nan
    if not (df > 0 and c != 1 and c_base != 1):
        c = c_base = 1.0
    t1 = (chi2 - c * df) * base_df
    t2 = (base_chi2 - c_base * base_df) * df
    if df > 0 and abs(t2) > 0:
        return 1.0 - t1 / t2
    return 1.0


def robust_rmsea(chi2: float, df: float, n: float, c: float = 1.0) -> float:
    """lavaan's ``lav_fit_rmsea``: ``sqrt(max(T / (N df) - c / N, 0))``."""
    if not np.all(np.isfinite([chi2, df, c])) or df <= 0:
        return np.nan
    return float(np.sqrt(max(chi2 / n / df - c / n, 0.0)))


def mlr_measures(model: Structure | tuple[Structure, ...], data: Moments | tuple[Moments, ...],
                 est: Estimates, base: dict[str, Any]) -> dict[str, Any]:
    """The MLR statistics added to the ML fit measures ``base`` (chi2, df, baseline_chi2,
    baseline_df, n_obs): scaled test, scaled and robust CFI/TLI/RMSEA; one group or several
    (RMSEA times ``sqrt(G)``, as :func:`alliance_analysis.sem.fit.fit_measures`).

    ``est.robust`` must hold the :class:`Sandwich` of the fit (``est.robust["sandwich"]``).
    """
    groups = data if isinstance(data, tuple) else (data,)
    root_g = np.sqrt(len(groups))
    chi2, df = base["chi2"], base["df"]
    b_chi2, b_df, n = base["baseline_chi2"], base["baseline_df"], base["n_obs"]
    yb = yuan_bentler(model, data, est, df, est.robust["sandwich"])
    c, c_b = yb["scaling_factor"], yb["baseline_scaling_factor"]
    scaled, b_scaled = chi2 / c, b_chi2 / c_b
    out: dict[str, Any] = {
        "chisq_scaled": scaled, "df_scaled": df,
        "pvalue_scaled": stats.chi2.sf(scaled, df) if df > 0 else np.nan,
        "scaling_factor": c, "scaling_factor_h1": yb["scaling_factor_h1"],
        "scaling_factor_h0": yb["scaling_factor_h0"], "trace_ugamma": yb["trace_ugamma"],
        "baseline_chisq_scaled": b_scaled, "baseline_scaling_factor": c_b,
        "cfi_scaled": robust_cfi(scaled, df, b_scaled, b_df, 1.0, 1.0),
        "tli_scaled": robust_tli(scaled, df, b_scaled, b_df),
        "rmsea_scaled": robust_rmsea(chi2, yb["trace_ugamma"], n) * root_g,
    }
    if any(d.missing == "fiml" and len(d.patterns) > 1 for d in groups):
        fc = fiml_corrected(model, data, est)
        chi2_r, base_r, c_r, c_b_r = fc["chi2"], fc["base_chi2"], fc["c"], fc["c_base"]
    else:
        chi2_r, base_r, c_r, c_b_r = chi2, b_chi2, c, c_b
    out.update({"cfi_robust": robust_cfi(chi2_r, df, base_r, b_df, c_r, c_b_r),
                "tli_robust": robust_tli(chi2_r, df, base_r, b_df, c_r, c_b_r),
                "rmsea_robust": robust_rmsea(chi2_r, df, n, c_r) * root_g})
    return out


def fiml_corrected(model: Structure | tuple[Structure, ...], data: Moments | tuple[Moments, ...],
                   est: Estimates) -> dict[str, float]:
    """FIML-corrected ingredients of the robust indices (Zhang & Savalei 2022, "V3").

    As lavaan 0.6-14's ``lav_fit_fiml_corrected``: ``T~`` is the complete-data ML statistic
    of the FIML estimates against the EM (saturated) moments; with ``Wm, Jm`` the observed
    and first-order h1 information of the incomplete data at the EM moments, ``Wc`` the
    complete-data one there, ``E = Delta' Wm Delta``,
    ``U = Wm - Wm Delta E^-1 Delta' Wm`` and ``Gamma = Wm^-1 Jm Wm^-1``,
    ``k = tr(U Wm^-1 Wc Wm^-1 U Gamma)`` and ``c = k / df``; the same for the baseline.
    With several groups (one structure and one data set each) the matrices are block
    diagonal over groups, each group's information weighted by its share of N, and
    ``Delta`` stacks the groups' Jacobians, as lavaan's.
    """
    models = model if isinstance(model, tuple) else (model,)
    groups = data if isinstance(data, tuple) else (data,)
    n = sum(d.n_obs for d in groups)
    wm, jm, wc, wm_inv, gamma, parts = [], [], [], [], [], []
    for data_g in groups:
        mean_t, cov_t, _, _ = saturated(data_g)
        p = len(cov_t)
        complete = Moments(columns=data_g.columns,
                           patterns=((np.arange(p), data_g.n_obs, mean_t, cov_t),),
                           n_obs=data_g.n_obs, n_dropped=0, missing="listwise")
        h1_s, h1_m = h1_design(p, True)
        wm_g = linear_information(data_g, cov_t, mean_t, h1_s, h1_m) / n
        scores = casewise_scores(data_g, cov_t, mean_t, h1_s, h1_m)
        jm_g = scores.T @ scores / n
        inv_g, _ = invert_information(wm_g)
        wm.append(wm_g)
        jm.append(jm_g)
        wc.append(linear_information(complete, cov_t, mean_t, h1_s, h1_m) / n)
        wm_inv.append(inv_g)
        gamma.append(inv_g @ jm_g @ inv_g)
        parts.append((complete, cov_t, mean_t))
    wm_all, wm_inv_all = linalg.block_diag(*wm), linalg.block_diag(*wm_inv)
    middle = wm_inv_all @ linalg.block_diag(*wc) @ wm_inv_all
    gamma_all = linalg.block_diag(*gamma)

    def k_of(delta: np.ndarray) -> float:
        e_inv, _ = invert_information(delta.T @ wm_all @ delta)
        u = wm_all - wm_all @ delta @ e_inv @ delta.T @ wm_all
        return float(np.trace(u @ middle @ u @ gamma_all))

    deltas, chi2, b_deltas, chi2_b = [], 0.0, [], 0.0
    for model_g, data_g, (complete, cov_t, mean_t) in zip(models, groups, parts):
        sigma, mean = implied(model_g, est.theta)
        deltas.append(_delta_h1(*derivatives(model_g, est.theta)))
        chi2 += _ml_chi2(complete, sigma, mean, cov_t, mean_t)
        b_sigma, b_mean, b_ds, b_dm = independence_model(data_g, True)
        b_deltas.append(_delta_h1(b_ds, b_dm))
        chi2_b += _ml_chi2(complete, b_sigma, b_mean, cov_t, mean_t)
    p = len(groups[0].columns)
    df = len(groups) * (p * (p + 3) // 2) - models[0].n_free
    b_df = len(groups) * (p * (p - 1) // 2)
    return {"chi2": chi2, "c": k_of(np.concatenate(deltas)) / df, "base_chi2": chi2_b,
            "c_base": k_of(linalg.block_diag(*b_deltas)) / b_df}


def _delta_h1(d_sigma: np.ndarray, d_mean: np.ndarray) -> np.ndarray:
    """Jacobian of the h1 parameters (means, then the lower triangle of Sigma by column)
    with respect to a model's parameters, ``(p + p(p+1)/2, k)``."""
    p = d_mean.shape[1]
    rows, cols = zip(*[(i, j) for j in range(p) for i in range(j, p)])
    return np.concatenate([d_mean.T, d_sigma[:, rows, cols].T])


def _ml_chi2(complete: Moments, sigma: np.ndarray, mean: np.ndarray, cov: np.ndarray,
             xbar: np.ndarray) -> float:
    """Complete-data ML statistic ``N F_ML`` of moments ``sigma, mean`` against ``cov, xbar``."""
    n = complete.n_obs
    p = len(cov)
    inv = np.linalg.inv(sigma)
    d = xbar - mean
    f = (np.linalg.slogdet(sigma)[1] - np.linalg.slogdet(cov)[1] + np.trace(cov @ inv) - p
         + d @ inv @ d)
    return float(n * f)


def with_sandwich(model: Structure | tuple[Structure, ...], data: Moments | tuple[Moments, ...],
                  est: Estimates) -> Estimates:
    """The ML estimates of an MLR fit with the Huber-White sandwich covariance (lavaan's
    ``se = "robust.huber.white"``), on the observed information of ``est``'s fit; with
    several groups the case-wise scores of every group are stacked."""
    models = model if isinstance(model, tuple) else (model,)
    groups = data if isinstance(data, tuple) else (data,)
    info = observed_information(models, groups, est.theta)
    scores = []
    for model_g, data_g in zip(models, groups):
        sigma, mean = implied(model_g, est.theta)
        scores.append(casewise_scores(data_g, sigma, mean, *derivatives(model_g, est.theta)))
    stacked = np.concatenate(scores)
    meat = stacked.T @ stacked
    bread, singular = invert_information(info)
    parts = Sandwich(vcov=bread @ meat @ bread, bread=bread, meat=meat, singular=singular)
    notes = list(est.warnings)
    if parts.singular and not any("singular" in n for n in notes):
        notes.append("the information matrix is singular: the model may not be identified; "
                     "standard errors are not available")
    return replace(est, vcov=parts.vcov, information="observed (sandwich)",
                   robust={"sandwich": parts}, warnings=tuple(notes))
