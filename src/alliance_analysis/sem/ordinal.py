"""Confirmatory factor analysis of ordinal items: polychoric correlations with DWLS.

Likert items have few categories, so their product-moment covariances understate the
associations of the latent responses, and the ML chi-square is off. The ordinal estimator
here is lavaan's ``estimator = "WLSMV"``: the model is fitted to the polychoric correlations
(:mod:`alliance_analysis.sem.polychoric`) by diagonally weighted least squares (DWLS), with the
weights the inverse asymptotic variances of the correlations, in the delta
parameterization (latent response variances fixed at 1, so the residual variances are
``1 - diag(Lambda Psi Lambda')`` and not free). Standard errors are the robust sandwich
and the test statistic is the mean- and variance-adjusted ("scaled-shifted") chi-square,
both from the full asymptotic covariance matrix of the polychorics (Muthen 1984).

Only models of the measurement kind are supported (loadings, factor covariances, residual
covariances; no mean structure): the CFAs of this project. Thresholds are saturated, so
they equal the two-step estimates.

References
----------
Muthen, B. (1984). A general structural equation model with dichotomous, ordered
categorical, and continuous latent variable indicators. *Psychometrika*, 49, 115-132.
Muthen, B., du Toit, S. H. C., & Spisic, D. (1997). Robust inference using weighted least
squares and quadratic estimating equations in latent variable modeling with categorical and
continuous outcomes. Unpublished manuscript.
Asparouhov, T., & Muthen, B. (2010). Simple second order chi-square correction. Mplus
technical appendix.
Savalei, V. (2021). Improving fit indices in structural equation modeling with categorical
data. *Multivariate Behavioral Research*, 56(3), 390-407.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.sem.estimation import (
    Estimates,
    Structure,
    derivatives,
    implied,
    improper_notes,
    invert_information,
    standardize_latent,
    structure,
)
from alliance_analysis.sem.fit import cfi, rmsea_with_ci, tli
from alliance_analysis.sem.polychoric import polychoric
from alliance_analysis.sem.robust import robust_cfi, robust_rmsea, robust_tli


@dataclass(frozen=True)
class OrdinalFit:
    """A DWLS fit: the model (residual variances filled in), estimates, fit and thresholds."""

    model: Structure
    estimates: Estimates
    fit: dict[str, Any]
    thresholds: pd.DataFrame
    #: The polychoric step's corrections (empty 2x2 cells) and boundary flags.
    polychoric_notes: tuple[str, ...] = ()
    polychoric_warnings: tuple[str, ...] = ()


def fit_dwls(syntax: str, items: pd.DataFrame, std_lv: bool = False) -> OrdinalFit:
    """Fit a CFA to ordinal items by DWLS on polychoric correlations (lavaan's WLSMV).

    Parameters
    ----------
    syntax
        lavaan-style measurement model; every observed variable must be a column of
        ``items`` holding ordinal codes.
    items
        The item responses (other columns are ignored); rows with a missing model item
        are dropped (listwise).
    std_lv
        Fix factor variances to 1 and free all loadings (lavaan's ``std.lv = TRUE``).

    Returns
    -------
    OrdinalFit
        ``estimates.vcov`` is the robust (sandwich) covariance; ``fit`` holds ``chi2``
        (the scaled-shifted statistic, lavaan's ``chisq.scaled``), ``chi2_unscaled``,
        ``df``, ``p``, ``scaling_factor``, ``shift``, the unscaled ``cfi, tli, rmsea``
        (CI) and ``srmr`` as lavaan reports them, and NaN log-likelihood, AIC and BIC
        (undefined for DWLS). Also lavaan's names ``chisq, pvalue`` (unscaled),
        ``chisq_scaled, df_scaled, pvalue_scaled``, the scaled indices ``cfi_scaled,
        tli_scaled, rmsea_scaled`` (from the scaled-shifted statistics of the model and
        the baseline model), the robust ones ``cfi_robust, tli_robust, rmsea_robust``
        (Savalei 2021, lavaan 0.6-14's catML computation; NaN when the polychoric matrix
        is not positive definite) and ``npar`` counted as lavaan (thresholds included).

    Notes
    -----
    With ``r`` the polychoric correlations, ``w = 1 / diag(Gamma)`` their DWLS weights and
    ``Delta = d sigma / d theta``: the estimates minimise ``F = sum w (r - sigma(theta))^2``;
    ``vcov = (D'WD)^-1 D'W Gamma W D (D'WD)^-1 / (N - 1)``; the unscaled statistic is
    ``T = (N - 1) F`` (N - 1 as lavaan uses for this estimator, also in the RMSEA); with
    ``U = W - W D (D'WD)^-1 D'W``, ``a = sqrt(df / tr((U Gamma)^2))`` and the
    scaled-shifted statistic is ``a T + df - a tr(U Gamma)``.
    """
    model = structure(syntax, meanstructure=False)
    if std_lv:
        model = standardize_latent(model)
    absent = [c for c in model.observed if c not in items.columns]
    if absent:
        raise AllianceDataError(f"the model uses items {absent} that the data lack")
    pc = polychoric(items.loc[:, list(model.observed)])
    reduced = _delta_structure(model)
    rho = pc.rho.to_numpy()
    lower = np.tril_indices(len(model.observed), -1)
    pairs = [(model.observed[j], model.observed[i]) for i, j in zip(*lower)]
    order = [pc.pairs.index(pair) for pair in pairs]
    n_th = len(pc.thresholds)
    gamma_rho = pc.gamma.to_numpy()[n_th:, n_th:][np.ix_(order, order)]
    weights = 1.0 / np.diag(gamma_rho)
    sample = rho[lower]

    def residuals(theta: np.ndarray) -> np.ndarray:
        return np.sqrt(weights) * (sample - _implied_correlations(reduced, theta)[lower])

    def jacobian(theta: np.ndarray) -> np.ndarray:
        d_sigma, _ = derivatives(reduced, theta)
        return -np.sqrt(weights)[:, None] * d_sigma[:, lower[0], lower[1]].T

    start = _start(reduced)
    solution = optimize.least_squares(residuals, start, jac=jacobian, method="lm",
                                      xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10_000)
    theta = solution.x
    delta = -jacobian(theta) / np.sqrt(weights)[:, None]
    n = pc.n
    bread, singular = invert_information(delta.T @ (weights[:, None] * delta))
    meat = delta.T @ (weights[:, None] * gamma_rho * weights[None, :]) @ delta
    vcov = bread @ meat @ bread / (n - 1)
    resid = sample - _implied_correlations(reduced, theta)[lower]
    fit = {**_fit_statistics(resid, weights, gamma_rho, delta, bread, n, sample),
           "n_dropped": int(len(items) - n)}
    fit["npar"] = n_th + delta.shape[1]  # lavaan's count: thresholds are parameters too
    fit.update(_catml_robust(rho, _implied_correlations(reduced, theta), lower, weights,
                             gamma_rho, delta, bread, n, fit["df"], fit["baseline_df"]))
    filled = _with_residual_variances(reduced, theta)
    notes = [] if solution.success else [f"DWLS did not converge: {solution.message}"]
    if singular:
        notes.append("the DWLS information matrix is singular: the model may not be "
                     "identified; robust standard errors and the scaled chi-square are not "
                     "available")
    notes += improper_notes(filled, theta)
    estimates = Estimates(theta=theta, vcov=vcov, loglik=np.nan, converged=bool(solution.success),
                          iterations=int(solution.nfev), information="robust.sem",
                          warnings=tuple(notes))
    se = pc.standard_errors()  # already with divisor n - 1, as lavaan's WLSMV
    thresholds = pc.thresholds.assign(
        se=[se[f"{i}|{t}"] for i, t in zip(pc.thresholds["item"], pc.thresholds["threshold"])])
    return OrdinalFit(model=filled, estimates=estimates, fit=fit, thresholds=thresholds,
                      polychoric_notes=tuple(pc.notes), polychoric_warnings=tuple(pc.warnings))


def _delta_structure(model: Structure) -> Structure:
    """The model without free residual variances (delta parameterization).

    Raises
    ------
    AllianceDataError
        When the model has a mean structure or paths (not a measurement model).
    """
    if model.meanstructure or model.patterns["beta"].any() or model.fixed["beta"].any():
        raise AllianceDataError("the ordinal (DWLS) estimator supports measurement models "
                                "only (loadings and covariances, no regressions or means)")
    keep = np.array([np.trace(p) == 0 for p in model.patterns["theta"]])
    return replace(model, names=tuple(np.array(model.names)[keep]),
                   patterns={key: value[keep] for key, value in model.patterns.items()})


def _implied_correlations(model: Structure, theta: np.ndarray) -> np.ndarray:
    """``Lambda Psi Lambda' + Theta`` without residual variances: the off-diagonal part is
    the implied polychoric correlation matrix, the diagonal the communalities."""
    return implied(model, theta)[0]


def _with_residual_variances(model: Structure, theta: np.ndarray) -> Structure:
    """The model with residual variances fixed at ``1 - diag(Lambda Psi Lambda')``."""
    common = np.diag(_implied_correlations(model, theta))
    fixed = dict(model.fixed)
    fixed["theta"] = fixed["theta"] + np.diag(1.0 - common)
    return replace(model, fixed=fixed)


def _start(model: Structure) -> np.ndarray:
    """Starting values: loadings 1, factor variances 0.5, covariances and paths 0."""
    theta = np.zeros(len(model.names))
    for k in range(len(model.names)):
        if model.patterns["lambda"][k].any():
            theta[k] = 1.0
        elif np.trace(model.patterns["psi"][k]) > 0:
            theta[k] = 0.5
    return theta


def _fit_statistics(resid: np.ndarray, weights: np.ndarray, gamma: np.ndarray,
                    delta: np.ndarray, bread: np.ndarray, n: int, sample: np.ndarray
                    ) -> dict[str, Any]:
    """Unscaled and scaled-shifted DWLS test statistics and lavaan's fit indices.

    ``bread`` is ``(D'WD)^-1`` (NaN when singular: the scaled statistic is then NaN).
    """
    npar = delta.shape[1]
    df = len(resid) - npar
    t_unscaled = (n - 1) * float(np.sum(weights * resid ** 2))
    u = np.diag(weights) - (weights[:, None] * delta) @ bread @ (delta.T * weights[None, :])
    ug = u @ gamma
    trace, trace_sq = float(np.trace(ug)), float(np.trace(ug @ ug))
    a = np.sqrt(df / trace_sq) if df > 0 and trace_sq > 0 else np.nan
    shift = df - a * trace
    chi2 = a * t_unscaled + shift
    base_chi2 = (n - 1) * float(np.sum(weights * sample ** 2))
    base_df = len(resid)
    # the baseline (independence) model has no correlation parameters: U = W
    wg = weights[:, None] * gamma
    b_trace, b_trace_sq = float(np.trace(wg)), float(np.trace(wg @ wg))
    b_a = np.sqrt(base_df / b_trace_sq) if b_trace_sq > 0 else np.nan
    b_shift = base_df - b_a * b_trace
    b_chi2 = b_a * base_chi2 + b_shift
    rmsea, ci_low, ci_high = rmsea_with_ci(t_unscaled, df, n - 1)
    n_items = int(round((1 + np.sqrt(1 + 8 * len(resid))) / 2))
    # Bentler's SRMR over the lower triangle with the diagonal (zero residuals there)
    srmr = float(np.sqrt(np.sum(resid ** 2) / (len(resid) + n_items)))
    return {
        "n_obs": n, "npar": npar, "loglik": np.nan, "loglik_saturated": np.nan,
        "chi2": chi2, "df": df, "p": stats.chi2.sf(chi2, df) if df > 0 else np.nan,
        "chi2_unscaled": t_unscaled, "scaling_factor": 1 / a, "shift": shift,
        "trace_ugamma": trace,
        "baseline_chi2": base_chi2, "baseline_df": len(resid),
        "cfi": cfi(t_unscaled, df, base_chi2, len(resid)),
        "tli": tli(t_unscaled, df, base_chi2, len(resid)),
        "rmsea": rmsea, "rmsea_ci_low": ci_low, "rmsea_ci_high": ci_high,
        "srmr": srmr, "aic": np.nan, "bic": np.nan,
        # lavaan's names
        "chisq": t_unscaled, "pvalue": stats.chi2.sf(t_unscaled, df) if df > 0 else np.nan,
        "chisq_scaled": chi2, "df_scaled": df,
        "pvalue_scaled": stats.chi2.sf(chi2, df) if df > 0 else np.nan,
        "baseline_chisq_scaled": b_chi2, "baseline_scaling_factor": 1 / b_a,
        "baseline_shift": b_shift,
        "cfi_scaled": cfi(chi2, df, b_chi2, base_df),
        "tli_scaled": tli(chi2, df, b_chi2, base_df),
        "rmsea_scaled": robust_rmsea(chi2, df, n - 1),
    }


def _catml_robust(rho: np.ndarray, implied_corr: np.ndarray, lower: tuple[np.ndarray, ...],
                  weights: np.ndarray, gamma: np.ndarray, delta: np.ndarray,
                  bread: np.ndarray, n: int, df: int, base_df: int) -> dict[str, float]:
    """Robust CFI, TLI and RMSEA of a DWLS fit (Savalei 2021), as lavaan 0.6-14.

    lavaan's ``lav_fit_catml_dwls``: the "catML" statistic ``T3 = N F_ML(R, P)`` of the
    DWLS-implied correlation matrix ``P`` against the polychoric matrix ``R`` (not refitted),
    its scaling factor ``c3 = tr(U' V U Gamma) / df`` with ``V`` the normal-theory ML weight
    of the correlations at ``P`` and ``U = I - Delta (Delta' W Delta)^-1 Delta' W``, and for
    the baseline ``T3b = -N log|R|`` with ``c3b = tr(Gamma) / df_b``. NaN when ``R`` is not
    positive definite (lavaan returns NA then).
    """
    nan = {"cfi_robust": np.nan, "tli_robust": np.nan, "rmsea_robust": np.nan}
    p = len(rho)
    if np.linalg.eigvalsh(rho).min() < np.sqrt(np.finfo(float).eps) or df <= 0:
        return nan
    model_corr = implied_corr.copy()
    np.fill_diagonal(model_corr, 1.0)
    inv = np.linalg.inv(model_corr)
    f_ml = (np.linalg.slogdet(model_corr)[1] - np.linalg.slogdet(rho)[1]
            + np.trace(rho @ inv) - p)
    t3 = n * f_ml
    t3_base = -n * np.linalg.slogdet(rho)[1]
    i, j = lower
    v = inv[np.ix_(i, i)] * inv[np.ix_(j, j)] + inv[np.ix_(i, j)] * inv[np.ix_(j, i)]
    wiu = np.eye(len(weights)) - delta @ bread @ delta.T * weights[None, :]
    c3 = float(np.trace(wiu.T @ v @ wiu @ gamma)) / df
    c3_base = float(np.trace(gamma)) / base_df
    return {"cfi_robust": robust_cfi(t3, df, t3_base, base_df, c3, c3_base),
            "tli_robust": robust_tli(t3, df, t3_base, base_df, c3, c3_base),
            "rmsea_robust": robust_rmsea(t3, df, n - 1, c3),
            "chisq_catml": t3, "scaling_factor_catml": c3,
            "baseline_chisq_catml": t3_base, "baseline_scaling_factor_catml": c3_base}
