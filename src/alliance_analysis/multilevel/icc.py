"""Intraclass correlations of multilevel data, with confidence intervals.

The ICC of a level is the share of the total variance that lies at that level, from a model
with random intercepts only: for sessions in clients in therapists with variances
``tau_t`` (therapist), ``tau_c`` (client) and ``sigma2`` (session)::

    ICC_therapist = tau_t / (tau_t + tau_c + sigma2)
    ICC_client    = tau_c / (tau_t + tau_c + sigma2)

ICC_therapist is also the correlation of two sessions of different clients of one therapist;
ICC_therapist + ICC_client that of two sessions of the same client [1]_.

Confidence intervals, by ``MultilevelOptions.icc_ci``:

``"delta"`` (default)
    Delta method on the logit scale. Each ICC is a function of the *relative* variances
    ``psi = tau / sigma2`` only, so the interval uses the profiled (RE)ML log-likelihood of
    statsmodels (fixed effects and ``sigma2`` profiled out) as a function of ``log psi``:
    its numerical Hessian gives the covariance of ``log psi`` (the inverse of a profile
    Hessian is the matching block of the full inverse information), the gradient of
    ``logit(ICC)`` carries it over, and the interval is back-transformed, so it stays inside
    (0, 1). Not available when a variance is estimated at zero (the log scale breaks down):
    the interval is then left empty with a note; use the bootstrap.
``"bootstrap"``
    Parametric bootstrap: ``bootstrap_samples`` datasets are simulated from the fitted model
    (normal random intercepts and residuals, seeded ``numpy.random.default_rng(seed)``),
    the model is refitted to each, and the percentile interval of the ICCs is reported.
    Slower; better with few therapists, where the likelihood is far from quadratic.

References
----------
.. [1] Raudenbush, S. W., & Bryk, A. S. (2002). Hierarchical linear models (2nd ed.). Sage.
.. [2] Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling alliance-outcome
   correlations. Journal of Consulting and Clinical Psychology, 75(6), 842-852.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

from alliance_analysis.multilevel.derive import CLIENT, THERAPIST, score_column
from alliance_analysis.stats import numdiff
from alliance_analysis.multilevel.mixedfit import (MixedFit, RandomPart, SignSafeMixedLM, fit_mixed,
                                       try_optimizers)

if TYPE_CHECKING:
    from alliance_analysis.options import MultilevelOptions

#: Columns of every ICC table.
ICC_COLUMNS = ("measure", "level", "icc", "ci_low", "ci_high", "ci_method", "converged", "note")
#: Relative variances below this are treated as zero (no delta-method interval).
ZERO_VARIANCE = 1e-8
#: Step of the second differences of the profile log-likelihood in log relative variances.
HESSIAN_STEP = 1e-4
_LEVEL_COLUMN = {"therapist": THERAPIST, "client": CLIENT}


def null_model_iccs(sessions: pd.DataFrame, score: str, options: MultilevelOptions,
                    seed: int) -> pd.DataFrame:
    """ICCs of a session-level score at the therapist and client levels.

    Fits ``<score>_total ~ 1`` with random therapist and client intercepts (client only when
    ``options.therapist_level`` is false), by the options' REML/ML and optimizers, and
    returns one row per level (columns :data:`ICC_COLUMNS`).
    """
    if options.therapist_level:
        random = RandomPart(THERAPIST, "1", "therapist", "(1 | therapist) + (1 | client)",
                            {"client": f"0 + C({CLIENT})"}, {"client": ("client", "(Intercept)")})
    else:
        random = RandomPart(CLIENT, "1", "client", "(1 | client)")
    _, fitted = fit_mixed(f"icc_{score}", sessions, score_column(score), [], random,
                          options.reml, options.optimizers, options.max_iter, options.ci_level)
    return intercept_iccs(fitted, score_column(score), options, seed)


def intercept_iccs(fitted: MixedFit, measure: str, options: MultilevelOptions,
                   seed: int) -> pd.DataFrame:
    """ICC of each level of a fitted random-intercepts model, with its interval.

    Parameters
    ----------
    fitted
        A fit whose random part has intercepts only (a top-level intercept and optional
        nested intercept variance components).
    measure
        Label of the outcome, for the table.
    options
        ``icc_ci``, ``bootstrap_samples``, ``ci_level`` and the fitting options.
    seed
        Seed of the parametric bootstrap.
    """
    levels = [fitted.random.level] + [fitted.random.vc_terms[n][0]
                                      for n in fitted.model.exog_vc.names]
    psi = _relative_variances(fitted)
    icc = psi / (1 + psi.sum())
    if options.icc_ci == "delta":
        low, high, note = _delta_interval(fitted.model, psi, options.ci_level)
    else:
        low, high, note = _bootstrap_interval(fitted, options, seed)
    return pd.DataFrame({
        "measure": measure, "level": levels, "icc": icc, "ci_low": low, "ci_high": high,
        "ci_method": options.icc_ci, "converged": fitted.chosen.ok, "note": note,
    }, columns=list(ICC_COLUMNS))


def _relative_variances(fitted: MixedFit) -> np.ndarray:
    """``tau / sigma2`` of the top-level intercept, then of each variance component."""
    result = fitted.result
    return np.concatenate([np.diag(np.asarray(result.cov_re_unscaled, dtype=float)),
                           np.asarray(result.vcomp, dtype=float) / result.scale])


def _profile_loglike(model: MixedLM, log_psi: np.ndarray) -> float:
    psi = np.exp(log_psi)
    params = MixedLMParams.from_components(cov_re=np.array([[psi[0]]]), vcomp=psi[1:])
    return float(model.loglike(params, profile_fe=True))


def _delta_interval(model: MixedLM, psi: np.ndarray,
                    ci_level: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Delta-method interval of every ICC on the logit scale (see the module notes)."""
    empty = np.full(psi.size, np.nan)
    if np.any(psi < ZERO_VARIANCE):
        return empty, empty, "a variance is ~0: no delta-method interval; use icc_ci: bootstrap"
    x = np.log(psi)
    hessian = numdiff.hessian(lambda v: _profile_loglike(model, v), x, HESSIAN_STEP)
    try:
        cov = np.linalg.inv(-hessian)
    except np.linalg.LinAlgError:
        return empty, empty, "the profile likelihood is flat: no delta-method interval"
    z = stats.norm.ppf(0.5 + ci_level / 2)
    low, high = empty.copy(), empty.copy()
    for k in range(psi.size):
        others = 1 + psi.sum() - psi[k]
        gradient = -psi / others
        gradient[k] = 1.0
        variance = gradient @ cov @ gradient
        if variance > 0:
            centre = logit(psi[k] / (1 + psi.sum()))
            low[k], high[k] = expit(centre - z * np.sqrt(variance)), expit(
                centre + z * np.sqrt(variance))
    return low, high, ""


def _bootstrap_interval(fitted: MixedFit, options: MultilevelOptions,
                        seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Percentile interval of the ICCs over parametric bootstrap refits."""
    rng = np.random.default_rng(seed)
    model, result = fitted.model, fitted.result
    data = model.data.frame
    mean = model.exog @ np.asarray(result.fe_params, dtype=float)
    levels = [fitted.random.level] + [fitted.random.vc_terms[n][0]
                                      for n in model.exog_vc.names]
    variances = _relative_variances(fitted) * result.scale
    draws, failed = [], 0
    for _ in range(options.bootstrap_samples):
        y = mean + rng.normal(0.0, np.sqrt(result.scale), mean.size)
        for level, variance in zip(levels, variances, strict=True):
            codes, uniques = pd.factorize(data[_LEVEL_COLUMN[level]])
            y = y + rng.normal(0.0, np.sqrt(variance), uniques.size)[codes]
        refit = SignSafeMixedLM(y, model.exog, model.groups, exog_re=model.exog_re,
                        exog_vc=model.exog_vc)
        attempts = try_optimizers(refit, fitted.result.reml, options.optimizers,
                                   options.max_iter)
        kept = next((a for a in attempts if a.ok), None)
        if kept is None:
            failed += 1
            continue
        psi = np.concatenate([np.diag(np.asarray(kept.result.cov_re_unscaled, dtype=float)),
                              np.asarray(kept.result.vcomp, dtype=float) / kept.result.scale])
        draws.append(psi / (1 + psi.sum()))
    if not draws:
        empty = np.full(len(levels), np.nan)
        return empty, empty, "no bootstrap refit converged"
    alpha = (1 - options.ci_level) / 2
    low, high = np.quantile(np.array(draws), [alpha, 1 - alpha], axis=0)
    note = f"{len(draws)} bootstrap refits, seed {seed}" + (
        f"; {failed} refit(s) did not converge and were left out" if failed else "")
    return low, high, note
