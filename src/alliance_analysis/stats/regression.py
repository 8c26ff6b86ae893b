"""Client-level regressions: OLS and logistic, as :class:`ModelResult`.

One row per client, so no random effects: the rupture-outcome model (symptom change on a
resolved rupture, controlling baseline) and the dropout models (dropout on early alliance, in
the change markers and, with baseline severity and therapist-clustered SEs, in the multilevel
stage).
Both take the client table and plain arguments, and return the project's tidy result with the
fit flagged, never silently dropped, when it cannot be trusted.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
# the models themselves, not statsmodels.api: that imports every model and dataset of
# statsmodels (about 1.3 s in each notebook kernel)
from statsmodels.discrete.discrete_model import Logit
from statsmodels.regression.linear_model import OLS
from statsmodels.tools.sm_exceptions import PerfectSeparationError
from statsmodels.tools.tools import add_constant

from alliance_analysis.errors import AllianceDataError, ConvergenceWarning
from alliance_analysis.results import ModelResult

#: R's glm.fit flags fitted probabilities closer than this to 0 or 1 (10 * machine epsilon).
FITTED_EPS = 10 * np.finfo(float).eps


def _design(data: pd.DataFrame, outcome: str, predictors: Sequence[str],
            name: str) -> tuple[pd.DataFrame, pd.Series]:
    """Complete rows: the design matrix with an intercept, and the outcome."""
    missing = [c for c in (outcome, *predictors) if c not in data.columns]
    if missing:
        raise AllianceDataError(f"{name}: columns {missing} are not in the client table "
                                f"(columns: {list(data.columns)})")
    complete = data[[outcome, *predictors]].apply(pd.to_numeric, errors="coerce").dropna()
    exog = add_constant(complete[list(predictors)].astype(float), has_constant="add")
    return exog.rename(columns={"const": "(Intercept)"}), complete[outcome].astype(float)


def _unfitted(name: str, spec: str, terms: Sequence[str], n_obs: int, n_therapists: int | None,
              reason: str, events: int | None = None) -> ModelResult:
    """A result with empty estimates, flagged as not converged, saying why.

    ``events``: the number of events of a logistic model (``None`` for OLS), which also adds
    the odds-ratio columns and the logistic fit's keys.
    """
    nan = [np.nan] * len(terms)
    params = pd.DataFrame({"term": list(terms), "estimate": nan, "se": nan, "ci_low": nan,
                           "ci_high": nan, "p": nan})
    fit: dict[str, Any] = {"n_obs": n_obs, "n_clients": n_obs, "n_therapists": n_therapists}
    if events is not None:
        params = params.assign(odds_ratio=nan, or_ci_low=nan, or_ci_high=nan)
        fit["n_events"] = events
    fit.update(loglik=np.nan, aic=np.nan, bic=np.nan)
    if events is not None:
        fit["pseudo_r2"] = np.nan
    fit.update(converged=False, warnings=[f"NOT ESTIMABLE: {reason}"])
    result = ModelResult(name=name, params=params, fit=fit, spec=spec)
    warnings.warn(f"{name}: {reason}", ConvergenceWarning, stacklevel=3)
    return result


def _tidy(estimate: np.ndarray, se: np.ndarray, terms: Sequence[str], critical: float,
          p: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"term": list(terms), "estimate": estimate, "se": se,
                         "ci_low": estimate - critical * se, "ci_high": estimate + critical * se,
                         "p": p})


def _rank_problem(exog: pd.DataFrame, endog: pd.Series, logistic: bool) -> str | None:
    """Why the model cannot be estimated at all, or None."""
    if len(endog) <= exog.shape[1]:
        return f"{len(endog)} complete clients for {exog.shape[1]} coefficients"
    if np.linalg.matrix_rank(exog.to_numpy()) < exog.shape[1]:
        constant = [c for c in exog.columns[1:] if exog[c].nunique() < 2]
        what = f"{constant} take(s) a single value" if constant else "predictors are collinear"
        return f"the design matrix is not of full rank: {what}"
    if logistic and endog.nunique() < 2:
        return (f"the outcome takes a single value ({endog.iloc[0]:g}) in every client "
                f"({int(endog.sum())} events among {len(endog)}); a logistic model needs "
                "both outcomes")
    return None


def fit_ols(name: str, data: pd.DataFrame, outcome: str, predictors: Sequence[str],
            ci_level: float = 0.95, n_therapists: int | None = None) -> ModelResult:
    """Ordinary least squares of a client-level outcome, as a tidy :class:`ModelResult`.

    Parameters
    ----------
    name
        Stable model name (table and ``results.json`` keys).
    data
        One row per client; rows with a missing outcome or predictor are left out.
    outcome, predictors
        Column names; an intercept is added (term ``(Intercept)``).
    ci_level
        Confidence level of the t intervals.
    n_therapists
        Number of therapists of the clients, for the fit table (not modelled).

    Returns
    -------
    ModelResult
        ``params``: term, estimate, se, ci_low, ci_high, p (t distribution, n - k df).
        ``fit``: n_obs, n_clients, n_therapists, loglik, aic, bic, r2, converged, warnings.
        When the model cannot be estimated (too few clients, a constant predictor) the
        estimates are empty, ``converged`` is False, the reason is in ``warnings`` and a
        :class:`ConvergenceWarning` is raised.

    Notes
    -----
    AIC and BIC count the residual variance as a parameter, as R's ``AIC(lm(...))`` does
    (statsmodels' own ``OLSResults.aic`` does not). Clients are treated as independent:
    clustering of clients within therapists is not modelled, so standard errors may be
    somewhat small when therapists differ. Checked against R's ``lm`` in the tests.
    """
    spec = f"{outcome} ~ " + " + ".join(predictors)
    exog, endog = _design(data, outcome, predictors, name)
    problem = _rank_problem(exog, endog, logistic=False)
    if problem:
        return _unfitted(name, spec, exog.columns, len(endog), n_therapists, problem)
    result = OLS(endog, exog).fit()
    critical = stats.t.ppf(0.5 + ci_level / 2, result.df_resid)
    params = _tidy(result.params.to_numpy(), result.bse.to_numpy(), exog.columns, critical,
                   result.pvalues.to_numpy())
    n_estimated = exog.shape[1] + 1  # the coefficients and the residual variance, as R counts
    fit = {"n_obs": int(result.nobs), "n_clients": int(result.nobs),
           "n_therapists": n_therapists, "loglik": float(result.llf),
           "aic": float(-2 * result.llf + 2 * n_estimated),
           "bic": float(-2 * result.llf + np.log(result.nobs) * n_estimated),
           "r2": float(result.rsquared), "converged": True, "warnings": []}
    return ModelResult(name=name, params=params, fit=fit, spec=spec)


def _logit_flags(result: Any, caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """Every reason not to trust a logistic fit, as readable text."""
    flags = []
    if not result.mle_retvals.get("converged", False):
        flags.append("NOT CONVERGED: Newton-Raphson did not converge "
                     f"in {result.mle_retvals.get('iterations')} iterations")
    fitted = np.asarray(result.predict(), dtype=float)
    if np.any(fitted < FITTED_EPS) or np.any(fitted > 1 - FITTED_EPS):
        flags.append("NOT CONVERGED: fitted probabilities numerically 0 or 1 occurred "
                     "(complete or quasi-complete separation): estimates and odds ratios "
                     "are unreliable")
    if not np.all(np.isfinite(np.asarray(result.bse, dtype=float))):
        flags.append("NOT CONVERGED: standard errors are not finite")
    raised = (f"statsmodels: {w.category.__name__}: {w.message}" for w in caught)
    return flags + list(dict.fromkeys(raised))


def fit_logit(name: str, data: pd.DataFrame, outcome: str, predictors: Sequence[str],
              ci_level: float = 0.95, n_therapists: int | None = None,
              max_iter: int = 100, cluster: str | None = None, note: str = "") -> ModelResult:
    """Logistic regression of a client-level 0/1 outcome, with odds ratios.

    The project's one logistic fit: the change markers' dropout model and the multilevel
    stage's (therapist-clustered) one both come through here
    (:func:`alliance_analysis.change.dropout.dropout_model`).

    Parameters
    ----------
    name
        Stable model name.
    data
        One row per client; rows with a missing outcome or predictor (or cluster) are left
        out.
    outcome
        0/1 column (e.g. ``dropout``).
    predictors
        Column names; an intercept is added (term ``(Intercept)``).
    ci_level
        Confidence level of the Wald intervals.
    n_therapists
        Number of therapists of the clients, for the fit table (not modelled). With
        ``cluster``, the number of clusters among the modelled clients instead.
    max_iter
        Newton-Raphson iterations.
    cluster
        Column of the clusters (e.g. ``therapist_id``): standard errors, intervals and
        p-values then come from the cluster-robust sandwich covariance (statsmodels
        ``cov_type="cluster"``, with its small-sample factor ``G/(G-1) (N-1)/(N-K)``), as
        clients of one therapist are not independent; with fewer than about 30 clusters
        these SEs are somewhat liberal. ``None``: the inverse observed information.
    note
        Appended to the spec (what was modelled, in words).

    Returns
    -------
    ModelResult
        ``params``: term, estimate (log odds ratio), se, ci_low, ci_high, p (Wald z), and
        ``odds_ratio``, ``or_ci_low``, ``or_ci_high`` (exp of the estimate and of its
        interval). ``fit``: n_obs, n_clients, n_therapists, n_events, loglik, aic, bic,
        pseudo_r2 (McFadden), converged, warnings. When the model cannot be estimated (the
        outcome takes a single value, too few clients, a constant predictor, perfect
        separation) the estimates are empty, ``converged`` is False, the reason (starting
        ``NOT ESTIMABLE``) is in ``warnings`` and a :class:`ConvergenceWarning` is raised.

    Notes
    -----
    Maximum likelihood by Newton-Raphson (statsmodels ``Logit``, checked against R's
    ``glm(family = binomial)`` in the tests; with ``cluster``, its sandwich SEs equal those of
    statsmodels' binomial ``GLM`` with ``cov_type="cluster"`` to about 1e-13). The fit is
    flagged (``converged`` False, reason in ``warnings``, and a :class:`ConvergenceWarning`)
    when the optimizer does not converge, when statsmodels detects perfect separation, or
    when fitted probabilities come within ``10 * machine epsilon`` of 0 or 1, the test R's
    ``glm.fit`` uses for its "fitted probabilities numerically 0 or 1 occurred" warning:
    under (quasi-)complete separation the maximum likelihood estimate does not exist and the
    estimates only grow with iterations.
    """
    spec = f"logit({outcome}) ~ " + " + ".join(predictors) + (f"; {note}" if note else "")
    if cluster is not None:
        if cluster not in data.columns:
            raise AllianceDataError(f"{name}: the cluster column {cluster!r} is not in the "
                                    f"client table (columns: {list(data.columns)})")
        data = data[data[cluster].notna()]
    exog, endog = _design(data, outcome, predictors, name)
    groups = None
    if cluster is not None:
        groups = pd.factorize(data.loc[endog.index, cluster])[0]
        n_therapists = int(groups.max()) + 1 if len(groups) else 0
    problem = _rank_problem(exog, endog, logistic=True)
    if problem is None and not endog.isin((0.0, 1.0)).all():
        raise AllianceDataError(f"{name}: the outcome {outcome!r} must be 0/1; got values "
                                f"{sorted(endog.unique())[:5]}")
    if problem is None and groups is not None and n_therapists < 2:
        problem = (f"cluster-robust standard errors need at least 2 clusters of {cluster!r}; "
                   f"the data have {n_therapists}")
    if problem:
        return _unfitted(name, spec, exog.columns, len(endog), n_therapists, problem,
                         int(endog.sum()))
    covariance = {} if groups is None else {"cov_type": "cluster",
                                            "cov_kwds": {"groups": groups}}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = Logit(endog, exog).fit(method="newton", maxiter=max_iter, disp=False,
                                               **covariance)
        except (PerfectSeparationError, np.linalg.LinAlgError) as exc:
            return _unfitted(name, spec, exog.columns, len(endog), n_therapists,
                             f"perfect separation or singular Hessian ({exc})", int(endog.sum()))
    z = stats.norm.ppf(0.5 + ci_level / 2)
    params = _tidy(result.params.to_numpy(), result.bse.to_numpy(), exog.columns, z,
                   result.pvalues.to_numpy())
    with np.errstate(over="ignore"):  # a separated fit's estimates diverge; it is flagged
        params = params.assign(odds_ratio=np.exp(params["estimate"]),
                               or_ci_low=np.exp(params["ci_low"]),
                               or_ci_high=np.exp(params["ci_high"]))
    flags = _logit_flags(result, caught)
    fit = {"n_obs": int(result.nobs), "n_clients": int(result.nobs),
           "n_therapists": n_therapists, "n_events": int(endog.sum()),
           "loglik": float(result.llf), "aic": float(result.aic), "bic": float(result.bic),
           "pseudo_r2": float(result.prsquared),
           "converged": not any(f.startswith("NOT CONVERGED") for f in flags),
           "warnings": flags}
    model = ModelResult(name=name, params=params, fit=fit, spec=spec)
    if not fit["converged"]:
        warnings.warn(f"{name}: " + "; ".join(flags), ConvergenceWarning, stacklevel=2)
    return model
