"""Fit statistics of structural equation models, computed by lavaan's conventions.

semopy 2.3.11's ``calc_stats`` reports a wrong log-likelihood, AIC and BIC, divides RMSEA by
N - 1 and does not cap CFI at 1; every number here is computed from the log-likelihoods
instead, as lavaan 0.6 does with its default ``likelihood = "normal"``:

* ``loglik``: the model's log-likelihood with the N (not N - 1) covariance matrix; under
  FIML, the case-wise likelihood;
* ``loglik_saturated``: the unrestricted model (sample moments; under FIML their EM
  estimates);
* ``chi2 = 2 (loglik_saturated - loglik)`` on ``df`` = number of sample moments - number
  of free parameters;
* ``cfi = 1 - max(chi2 - df, 0) / max(chi2 - df, chi2_b - df_b, 0)`` with the baseline
  (independence) model ``b``; never above 1;
* ``tli = (chi2_b/df_b - chi2/df) / (chi2_b/df_b - 1)``, not capped (lavaan prints values
  above 1 for models that fit better than expected by chance);
* ``rmsea = sqrt(max(chi2 - df, 0) / (df N))`` with N, and its 90% interval by inverting the
  noncentral chi-square distribution;
* ``srmr``: Bentler's standardized root mean square residual, lavaan's ``srmr``;
* ``aic = -2 loglik + 2 npar``, ``bic = -2 loglik + npar log N``.

References
----------
Bentler, P. M. (1990). Comparative fit indexes in structural models. *Psychological
Bulletin*, 107, 238-246.
Browne, M. W., & Cudeck, R. (1993). Alternative ways of assessing model fit. In K. A.
Bollen & J. S. Long (Eds.), *Testing structural equation models* (pp. 136-162). Sage.
Hu, L., & Bentler, P. M. (1999). Cutoff criteria for fit indexes in covariance structure
analysis. *Structural Equation Modeling*, 6, 1-55.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import optimize, stats

from alliance_analysis.sem.estimation import Estimates, Moments, Structure, implied
from alliance_analysis.sem.fiml import em_saturated

_LOG_2PI = float(np.log(2 * np.pi))

#: The note every SEM fit table carries.
FIT_NOTE = ("Fit indices follow lavaan's conventions: ML with the N (not N - 1) likelihood; "
            "chi-square = 2 (logL saturated - logL); CFI capped at 1, TLI not capped; RMSEA "
            "with N and its 90% CI from the noncentral chi-square; SRMR as Bentler's (lavaan "
            "'srmr'); AIC/BIC from logL and the number of free parameters. Under FIML the "
            "saturated model is estimated by EM.")


def fit_measures(model: Structure | tuple[Structure, ...], data: Moments | tuple[Moments, ...],
                 est: Estimates) -> dict[str, Any]:
    """Every fit statistic of one ML or FIML fit (one group, or several sharing parameters).

    With several groups (one structure and one data set each) the statistics follow lavaan's
    multigroup rules: log-likelihoods, chi-square and the baseline summed over groups, df
    from every group's moments, RMSEA (and its interval) with the total N times
    ``sqrt(G)`` (Steiger 1998), SRMR the groups' SRMRs weighted by their N, BIC with the
    total N; ``ngroups`` and ``n_obs_groups`` are added.

    Returns
    -------
    dict
        ``n_obs, n_dropped, npar, loglik, loglik_saturated, saturated_converged, chi2, df, p,
        baseline_chi2, baseline_df, cfi, tli, rmsea, rmsea_ci_low, rmsea_ci_high, srmr, aic,
        bic`` and lavaan's names ``chisq, pvalue``. Under MLR (``est.estimator``) the caller
        adds ``chisq_scaled, df_scaled, pvalue_scaled, scaling_factor`` (lavaan's
        ``chisq.scaling.factor``), ``scaling_factor_h1, scaling_factor_h0, trace_ugamma,
        baseline_chisq_scaled, baseline_scaling_factor``, ``cfi_scaled, tli_scaled,
        rmsea_scaled`` and ``cfi_robust, tli_robust, rmsea_robust``
        (:func:`alliance_analysis.sem.robust.mlr_measures`).

    References
    ----------
    Steiger, J. H. (1998). A note on multiple sample extensions of the RMSEA fit index.
    *Structural Equation Modeling*, 5, 411-419.
    """
    models = model if isinstance(model, tuple) else (model,)
    groups = data if isinstance(data, tuple) else (data,)
    p = len(groups[0].columns)
    n_free = models[0].n_free
    df = len(groups) * (p * (p + 1) // 2 + (p if models[0].meanstructure else 0)) - n_free
    loglik_h1, base_loglik, h1_converged, srmrs = 0.0, 0.0, True, []
    for model_g, data_g in zip(models, groups):
        mean_h1, cov_h1, loglik_g, converged_g = saturated(data_g)
        loglik_h1 += loglik_g
        base_loglik += independence_loglik(data_g)
        h1_converged = h1_converged and converged_g
        sigma, mean = implied(model_g, est.theta)
        srmrs.append(srmr_bentler(cov_h1, sigma, mean_h1 if model_g.meanstructure else None,
                                  mean))
    n = sum(d.n_obs for d in groups)
    chi2 = max(2 * (loglik_h1 - est.loglik), 0.0)
    base_chi2 = 2 * (loglik_h1 - base_loglik)
    base_df = len(groups) * p * (p - 1) // 2
    root_g = np.sqrt(len(groups))
    rmsea, ci_low, ci_high = (value * root_g for value in rmsea_with_ci(chi2, df, n))
    srmr = (srmrs[0] if len(groups) == 1 else
            sum(d.n_obs * value for d, value in zip(groups, srmrs)) / n)
    measures = {
        "n_obs": n, "n_dropped": sum(d.n_dropped for d in groups), "npar": n_free,
        "loglik": est.loglik, "loglik_saturated": loglik_h1,
        "saturated_converged": h1_converged,
        "chi2": chi2, "df": df, "p": stats.chi2.sf(chi2, df) if df > 0 else np.nan,
        "baseline_chi2": base_chi2, "baseline_df": base_df,
        "cfi": cfi(chi2, df, base_chi2, base_df), "tli": tli(chi2, df, base_chi2, base_df),
        "rmsea": rmsea, "rmsea_ci_low": ci_low, "rmsea_ci_high": ci_high,
        "srmr": srmr, "aic": -2 * est.loglik + 2 * n_free,
        "bic": -2 * est.loglik + np.log(n) * n_free,
    }
    if len(groups) > 1:
        measures.update(ngroups=len(groups), n_obs_groups=[d.n_obs for d in groups])
    measures.update(lavaan_names(measures))
    # MLR's scaled statistics and robust indices are added by the caller
    # (alliance_analysis.sem.robust.mlr_measures), which builds on these.
    return measures


def lavaan_names(measures: dict[str, Any]) -> dict[str, Any]:
    """lavaan's names of the plain statistics (``chisq``, ``pvalue``), beside ours."""
    return {"chisq": measures["chi2"], "pvalue": measures["p"]}


def cfi(chi2: float, df: int, base_chi2: float, base_df: int) -> float:
    """Comparative fit index (Bentler 1990), in [0, 1] as lavaan computes it."""
    t1 = max(chi2 - df, 0.0)
    t2 = max(chi2 - df, base_chi2 - base_df, 0.0)
    return 1.0 if np.isclose(t1, 0.0) and np.isclose(t2, 0.0) else 1.0 - t1 / t2


def tli(chi2: float, df: int, base_chi2: float, base_df: int) -> float:
    """Tucker-Lewis index (non-normed fit index); not capped, as lavaan."""
    if df <= 0 or base_df <= 0:
        return 1.0
    t1 = base_chi2 / base_df - chi2 / df
    t2 = base_chi2 / base_df - 1.0
    return 1.0 if t1 < 0 and t2 < 0 else t1 / t2


def rmsea_with_ci(chi2: float, df: int, n: int, level: float = 0.90
                  ) -> tuple[float, float, float]:
    """RMSEA with N (lavaan's ``likelihood = "normal"``) and its confidence interval.

    The interval bounds are ``sqrt(lambda / (N df))`` where ``lambda`` is the noncentrality
    at which the observed chi-square is the upper (lower) ``(1 - level) / 2`` quantile
    (Browne & Cudeck 1993); a bound is 0 when even ``lambda = 0`` cannot reach it.
    NaN for ``df = 0`` (a saturated model has no RMSEA).
    """
    if df <= 0:
        return np.nan, np.nan, np.nan
    rmsea = float(np.sqrt(max(chi2 - df, 0.0) / (df * n)))
    tail = (1 - level) / 2
    bounds = []
    for target in (1 - tail, tail):
        if stats.chi2.cdf(chi2, df) < target:
            bounds.append(0.0)
            continue
        high = max(chi2, 1.0)
        while stats.ncx2.cdf(chi2, df, high) > target:
            high *= 2
        lam = optimize.brentq(lambda nc: stats.ncx2.cdf(chi2, df, nc) - target, 1e-12, high,
                              xtol=1e-12)
        bounds.append(float(np.sqrt(lam / (n * df))))
    return rmsea, bounds[0], bounds[1]


def srmr_bentler(sample_cov: np.ndarray, sigma: np.ndarray, sample_mean: np.ndarray | None,
                 mean: np.ndarray | None) -> float:
    """Bentler's SRMR, lavaan's ``srmr``.

    Residuals ``(s_ij - sigma_ij) / sqrt(s_ii s_jj)`` over the lower triangle with the
    diagonal, plus, with a mean structure, ``(xbar_i - mu_i) / sqrt(s_ii)``; the root of
    their mean square.
    """
    sd = np.sqrt(np.diag(sample_cov))
    resid = (sample_cov - sigma) / np.outer(sd, sd)
    squares = list(resid[np.tril_indices_from(resid)] ** 2)
    if sample_mean is not None and mean is not None:
        squares += list(((sample_mean - mean) / sd) ** 2)
    return float(np.sqrt(np.mean(squares)))


def saturated(data: Moments, tol: float = 1e-13, max_iter: int = 100_000
              ) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """Means, covariance matrix and log-likelihood of the unrestricted (saturated) model.

    Complete data: the sample moments (divisor N). Missing data: their ML estimates by the
    EM algorithm (Dempster, Laird & Rubin 1977), as lavaan's h1 model under FIML. The last
    value says whether EM converged (largest change below ``tol``, relative).
    """
    if len(data.patterns) == 1 and len(data.patterns[0][0]) == len(data.columns):
        mean, cov = data.pooled()
        converged = True
    else:
        mean, cov, converged = _em(data, tol, max_iter)
    return mean, cov, _loglik(data, mean, cov), converged


def _em(data: Moments, tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """EM estimates of the mean and covariance from the patterns' sufficient statistics,
    all patterns at once (:func:`alliance_analysis.sem.fiml.em_saturated`)."""
    return em_saturated(data.stacked, tol, max_iter)


def _available_mean(data: Moments, j: int) -> float:
    """Mean of variable j over the cases where it is observed."""
    parts = [(n, xbar[list(idx).index(j)]) for idx, n, xbar, _ in data.patterns if j in idx]
    return sum(n * x for n, x in parts) / sum(n for n, _ in parts)


def _available_variance(data: Moments, j: int, mean_j: float) -> float:
    """ML variance of variable j over the cases where it is observed."""
    total, n_j = 0.0, 0
    for idx, n, xbar, cov in data.patterns:
        if j in idx:
            k = list(idx).index(j)
            total += n * (cov[k, k] + (xbar[k] - mean_j) ** 2)
            n_j += n
    return total / n_j


def _loglik(data: Moments, mean: np.ndarray, cov: np.ndarray) -> float:
    """Normal log-likelihood of the patterns at a mean and covariance."""
    total = 0.0
    for idx, n, xbar, s in data.patterns:
        sub = cov[np.ix_(idx, idx)]
        resid = xbar - mean[idx]
        _, logdet = np.linalg.slogdet(sub)
        spread = s + np.outer(resid, resid)
        total += n * (len(idx) * _LOG_2PI + logdet + np.trace(np.linalg.solve(sub, spread)))
    return -0.5 * total


def independence_loglik(data: Moments) -> float:
    """Log-likelihood of the baseline model: independent variables with free means.

    Under FIML its likelihood factorises over the variables, so each variable's ML mean and
    variance come from the cases where it is observed.
    """
    total = 0.0
    for j in range(len(data.columns)):
        n_j = sum(n for idx, n, _, _ in data.patterns if j in idx)
        variance = _available_variance(data, j, _available_mean(data, j))
        total += -0.5 * n_j * (_LOG_2PI + np.log(variance) + 1.0)
    return total
