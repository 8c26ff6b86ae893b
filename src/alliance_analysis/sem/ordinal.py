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
from alliance_analysis.sem.polychoric import polychoric
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


@dataclass(frozen=True)
class OrdinalFit:
    """A DWLS fit: the model (residual variances filled in), estimates, fit and thresholds."""

    model: Structure
    estimates: Estimates
    fit: dict[str, Any]
    thresholds: pd.DataFrame


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
        (undefined for DWLS).

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
    se = pc.standard_errors() * np.sqrt(n / (n - 1))
    thresholds = pc.thresholds.assign(
        se=[se[f"{i}|{t}"] for i, t in zip(pc.thresholds["item"], pc.thresholds["threshold"])])
    return OrdinalFit(model=filled, estimates=estimates, fit=fit, thresholds=thresholds)


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
    }
