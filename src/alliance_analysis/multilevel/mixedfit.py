"""Fitting linear mixed models with statsmodels without taking a fit on trust.

**Not used by the analyses.** Since project issue 15 every linear mixed model of
:mod:`alliance_analysis.multilevel.models`, :mod:`~alliance_analysis.multilevel.icc` and
:mod:`~alliance_analysis.multilevel.perspectives` is fitted by the nested engine
(:mod:`alliance_analysis.multilevel.engine`, lme4-exact): statsmodels was off by up to 0.63%
in variance components while reporting convergence, missed two singular fits, and gave one
null model's therapist variance 145 times too small. This module stays for the tutorials
(:mod:`alliance_analysis.teaching.tutorials`), the power study's ``engine: statsmodels``
check, and the tests' independent statsmodels fits.

Every statsmodels ``MixedLM`` fit of the package runs through :func:`try_optimizers` here (the
optimizers in turn with the gradient check, items 1-2 below), from :func:`fit_mixed`, which
builds the model from a formula and the random part. :func:`fit_mixed`

1. tries the optimizers of :attr:`MultilevelOptions.optimizers` in order (default L-BFGS,
   BFGS, Powell, Nelder-Mead) and stops at the first fit that both reports convergence
   *and* passes the gradient check below. The first starts from statsmodels' default start,
   each later one from the best estimate so far that the optimizer called converged (a
   polish, see :func:`try_optimizers`). When no fit passes, it keeps the converged fit with
   the best log-likelihood, or else the best fit of all, flagged as not converged. The
   optimizer that produced the kept fit is recorded (``fit["optimizer"]``), with every
   attempt (``extra["optimizer_attempts"]``);
2. checks the gradient of the profiled deviance at the estimate, scaled by the Cholesky
   factor of its Hessian as lme4's ``checkConv`` does (``max |solve(chol(H), g)|`` below
   0.002, lme4's default ``check.conv.grad`` tolerance; the raw gradient when the Hessian
   is not positive definite; parameters at the boundary left out);
3. flags a singular fit as lme4's ``isSingular`` does: a diagonal element of the relative
   covariance factor (random-effect SD / residual SD, after Cholesky decomposition of each
   correlated block) below 1e-4 means a variance at zero or a correlation at +/-1;
4. records every warning statsmodels raised during the attempts (caught with
   ``warnings.catch_warnings(record=True)`` around each fit, never filtered globally), and
   raises one :class:`~alliance_analysis.errors.ConvergenceWarning` for a fit that did not
   converge or is singular, so a notebook shows it;
5. fits with :class:`SignSafeMixedLM`, which corrects the sign of statsmodels' gradient for
   negative square-root parameters (without it L-BFGS stops early on three-level models).

Why: on a 95,000-row random-slope model statsmodels' default ``fit()`` (bfgs, then cg, then
lbfgs) returned ``converged=False`` 213 log-likelihood units below lme4's optimum, while
``method='lbfgs'`` alone matched lme4 to 2e-6 (project issue 4). Nelder-Mead comes last: from
the default start it wanders off on lme4's sleepstudy, but it polishes a near optimum well.

Statistical conventions: fixed-effect SEs from ``(X' V^-1 X)^-1`` as lme4 (see
:meth:`MixedFit.fixed_cov`); Wald z tests and intervals (statsmodels gives no Satterthwaite or
Kenward-Roger degrees of freedom, so p-values are somewhat liberal with few clients or
therapists); AIC and BIC only under ML (``reml: false``), because REML likelihoods
of models with different fixed effects are not comparable; under REML they are left empty and
``reml_criterion`` (-2 REML log-likelihood, lme4's "REML criterion at convergence") is given.

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
.. [2] Raudenbush, S. W., & Bryk, A. S. (2002). Hierarchical linear models: Applications and
   data analysis methods (2nd ed.). Sage.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams, MixedLMResults

from alliance_analysis.multilevel.derive import CLIENT, THERAPIST
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.results import ModelResult, warn_if_flagged
from alliance_analysis.stats import numdiff

#: lme4's ``check.conv.grad`` tolerance on the scaled gradient of the deviance.
GRADIENT_TOL = 2e-3
#: lme4's ``isSingular`` tolerance on the relative covariance factor.
SINGULAR_TOL = 1e-4
#: Errors an optimizer attempt may end with; recorded, and the next optimizer is tried.
FIT_ERRORS = (np.linalg.LinAlgError, ValueError, FloatingPointError, OverflowError,
              ZeroDivisionError)


class SignSafeMixedLM(MixedLM):
    """statsmodels ``MixedLM`` whose score is right for negative square-root parameters.

    statsmodels optimizes over the Cholesky factor of the random-effects covariance and the
    square roots of the variance components, but its ``score_sqrt`` applies the chain rule
    at the *canonical* factor (positive diagonal, positive roots) recomputed from the
    covariances. When an optimizer steps to a negative root (likely whenever a variance is
    near zero) the gradient of that parameter has the wrong sign and L-BFGS stops with a
    failed line search (statsmodels 0.15; seen on the demo's three-level growth model). The
    deviance is symmetric in those signs, so the right gradient is the canonical one times
    the sign of the parameter (of the column's diagonal element, for Cholesky entries).
    """

    def score(self, params: Any, profile_fe: bool = True) -> np.ndarray:
        gradient = super().score(params, profile_fe=profile_fe)
        if isinstance(params, MixedLMParams) or not (self.use_sqrt and profile_fe):
            return gradient
        packed = np.asarray(params, dtype=float)
        lower = np.zeros((self.k_re, self.k_re))
        rows, cols = np.tril_indices(self.k_re)
        lower[rows, cols] = packed[: self.k_re2]
        signs = np.concatenate([np.sign(np.diag(lower))[cols],
                                np.sign(packed[self.k_re2:])])
        return gradient * np.where(signs == 0, 1.0, signs)


#: Why AIC and BIC are left empty for REML fits (both fitters say the same).
REML_AIC_NOTE = ("AIC and BIC are left empty under REML: REML likelihoods of models with "
                 "different fixed effects are not comparable; refit with reml: false")


@dataclass(frozen=True)
class RandomPart:
    """The random effects of a model, in statsmodels' and in lme4's terms.

    Attributes
    ----------
    groups
        Column of the top grouping level (``client_id`` or ``therapist_id``).
    re_formula
        Correlated random effects of the top level (statsmodels ``re_formula``).
    vc_formula
        Independent variance components nested in the top level (``vc_formula``).
    level
        Researcher's name of the top level (``client`` or ``therapist``).
    vc_terms
        For each variance component: (level, term), e.g. ``("client", "session")``.
    lme4
        The same random part in lme4 notation, e.g. ``(1 | therapist) + (1 | client)``.
    """

    groups: str
    re_formula: str
    level: str
    lme4: str
    vc_formula: Mapping[str, str] = field(default_factory=dict)
    vc_terms: Mapping[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class Attempt:
    """One optimizer's try: its result (None if it failed), checks and warnings."""

    method: str
    result: MixedLMResults | None
    warnings: list[str]
    error: str = ""
    start: str = "default"
    max_gradient: float = float("nan")

    @property
    def label(self) -> str:
        """The optimizer, and the estimate it started from when not the default start."""
        return self.method if self.start == "default" else \
            f"{self.method} (from the {self.start} estimate)"

    @property
    def loglik(self) -> float:
        return float(self.result.llf) if self.result is not None else float("nan")

    @property
    def optimizer_converged(self) -> bool:
        return self.result is not None and bool(self.result.converged) and bool(
            np.isfinite(self.loglik))

    @property
    def ok(self) -> bool:
        """Converged by the optimizer's criterion and by the gradient check."""
        return self.optimizer_converged and self.max_gradient < GRADIENT_TOL


@dataclass(frozen=True)
class MixedFit:
    """The kept statsmodels fit, the model, and all attempts (for ICCs and reports)."""

    model: MixedLM
    result: MixedLMResults
    chosen: Attempt
    attempts: tuple[Attempt, ...]
    random: RandomPart

    def fixed_cov(self) -> pd.DataFrame:
        """Covariance of the fixed effects, ``(X' V^-1 X)^-1`` at the estimated ``V``.

        This is lme4's ``vcov()`` (and Raudenbush & Bryk's, 2002): the fixed-effects
        block of the Hessian inverted on its own. statsmodels' ``bse_fe`` inverts the joint
        Hessian of fixed effects and covariance parameters instead, which differs from lme4
        by up to ~1e-3 relative on three-level models.
        """
        hessian, _ = self.model.hessian(self.result.params_object)
        k = self.model.k_fe
        names = list(self.result.fe_params.index)
        return pd.DataFrame(np.linalg.inv(-hessian[:k, :k]), index=names, columns=names)


def fit_mixed(name: str, frame: pd.DataFrame, outcome: str, predictors: Sequence[str],
              random: RandomPart, reml: bool, optimizers: Sequence[str], max_iter: int,
              ci_level: float, note: str = "") -> tuple[ModelResult, MixedFit]:
    """Fit ``outcome ~ predictors`` with random part ``random``; see the module notes.

    Rows missing any model variable are dropped (listwise, at the session level; the mixed
    model itself copes with unbalanced numbers of sessions per client).

    Parameters
    ----------
    name
        Stable name of the model.
    frame
        Model data; must hold ``outcome``, ``predictors``, ``client_id`` and the columns of
        the random part.
    outcome, predictors
        Outcome column and fixed-effect terms (formula syntax, e.g. ``"session:wai_early"``).
    random
        The random part.
    reml, optimizers, max_iter, ci_level
        As in :class:`~alliance_analysis.options.MultilevelOptions`.
    note
        Text appended to the model's ``spec``.

    Returns
    -------
    (ModelResult, MixedFit)
        The tidy result, and the statsmodels objects behind it.

    Raises
    ------
    AllianceDataError
        When no complete rows remain.
    """
    formula = f"{outcome} ~ " + (" + ".join(predictors) if predictors else "1")
    data = _complete_rows(frame, formula, random, name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = SignSafeMixedLM.from_formula(formula, data, groups=random.groups,
                                     re_formula=random.re_formula,
                                     vc_formula=dict(random.vc_formula) or None)
    build_warnings = _messages(caught, "model")
    attempts = try_optimizers(model, reml, optimizers, max_iter)
    chosen = _choose(attempts)
    if chosen.result is None:
        raise AllianceDataError(
            f"{name}: every optimizer failed ({'; '.join(a.error for a in attempts)}). "
            "Check the data for clients or therapists with a single session and constant scores")
    fitted = MixedFit(model, chosen.result, chosen, tuple(attempts), random)
    spec = (f"{formula} + {random.lme4}  [statsmodels MixedLM, {'REML' if reml else 'ML'}]"
            + (f"; {note}" if note else ""))
    result = ModelResult(
        name=name, params=_fixed_effects(fitted, ci_level),
        fit=_fit_stats(fitted, data, reml, build_warnings), spec=spec,
        extra={"variance_components": variance_components(fitted),
               "group_intercepts": group_intercepts(fitted, ci_level),
               "optimizer_attempts": _attempts_table(attempts, chosen)})
    warn_if_flagged(result)
    return result, fitted


def group_intercepts(fitted: MixedFit, ci_level: float) -> pd.DataFrame:
    """Each top-level group's random intercept (conditional mode) with its interval.

    The groups are the model's top level: therapists in three-level models, clients in
    two-level ones. The interval is the conditional mode +/- z times the square root of its
    conditional variance (lme4's ``condVar``), the interval drawn in caterpillar plots.

    Returns
    -------
    pandas.DataFrame
        ``level, group, estimate, se, ci_low, ci_high``, sorted by estimate; empty when the
        random part has no intercept at the top level.

    References
    ----------
    .. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear
       mixed-effects models using lme4. *Journal of Statistical Software, 67*(1), 1-48.
    """
    columns = ["level", "group", "estimate", "se", "ci_low", "ci_high"]
    names = list(fitted.model.data.exog_re_names or [])
    if not names or names[0] not in ("Group", "Intercept", fitted.random.groups):
        return pd.DataFrame(columns=columns)
    z = stats.norm.ppf(0.5 + ci_level / 2)
    rows = []
    covariances = fitted.result.random_effects_cov
    for group, effects in fitted.result.random_effects.items():
        se = float(np.sqrt(max(covariances[group].iloc[0, 0], 0.0)))
        estimate = float(effects.iloc[0])
        rows.append({"level": fitted.random.groups, "group": str(group), "estimate": estimate,
                     "se": se, "ci_low": estimate - z * se, "ci_high": estimate + z * se})
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values(["estimate", "group"]).reset_index(drop=True)


def _complete_rows(frame: pd.DataFrame, formula: str, random: RandomPart,
                   name: str) -> pd.DataFrame:
    """The rows with every model variable present, ordered by group."""
    used = [c for c in frame.columns if c in _formula_names(formula, random)]
    data = frame.dropna(subset=used).reset_index(drop=True)
    if data.empty:
        raise AllianceDataError(f"{name}: no session has every variable of {formula} "
                                f"(columns {used}); check the scores are present")
    return data


def _formula_names(formula: str, random: RandomPart) -> set[str]:
    text = " ".join([formula, random.groups, random.re_formula, *random.vc_formula.values()])
    for symbol in "~+:*()":
        text = text.replace(symbol, " ")
    return set(text.split()) | {CLIENT}


def _messages(caught: Sequence[warnings.WarningMessage], source: str) -> list[str]:
    """Distinct warning texts with their count, prefixed by where they came from."""
    counts = Counter(f"{w.category.__name__}: {w.message}" for w in caught)
    return [f"{source}: {text}" + (f" (x{n})" if n > 1 else "") for text, n in counts.items()]


def try_optimizers(model: MixedLM, reml: bool, optimizers: Sequence[str],
                   max_iter: int) -> list[Attempt]:
    """Fit with each optimizer in turn until one passes every check.

    The first optimizer starts from statsmodels' default start; each later one from the
    best estimate so far that converged by its optimizer's own criterion, if any (a polish:
    statsmodels' L-BFGS stops at a loose tolerance that cannot be tightened through
    ``MixedLM.fit``, and derivative-free Powell or Nelder-Mead finish well from a near
    optimum where the variance-root parameterisation is flat, at a variance near zero).
    BFGS and CG get a gradient tolerance of 1e-8.
    """
    attempts: list[Attempt] = []
    best: Attempt | None = None
    for method in optimizers:
        result, error, gradient = None, "", float("nan")
        begin = best.result.params_object.copy() if best is not None else None
        tolerance = {"gtol": 1e-8} if method in ("bfgs", "cg") else {}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = model.fit(start_params=begin, reml=reml, method=[method],
                                   maxiter=max_iter, **tolerance)
            except FIT_ERRORS as exc:
                error = f"{method}: {type(exc).__name__}: {exc}"
            if result is not None and result.converged:
                gradient = scaled_gradient(model, result)
        attempt = Attempt(method, result, _messages(caught, method), error,
                          start=best.method if best is not None else "default")
        if attempt.optimizer_converged:
            attempt.max_gradient = gradient
            if best is None or attempt.loglik > best.loglik:
                best = attempt
        attempts.append(attempt)
        if attempt.ok:
            break
    return attempts


def _choose(attempts: Sequence[Attempt]) -> Attempt:
    """The fit passing every check; else the best converged; else the best of all."""
    passed = [a for a in attempts if a.ok]
    if passed:
        return passed[0]
    for pool in ([a for a in attempts if a.optimizer_converged],
                 [a for a in attempts if a.result is not None and np.isfinite(a.loglik)]):
        if pool:
            return max(pool, key=lambda a: a.loglik)
    return next((a for a in attempts if a.result is not None), attempts[-1])


def scaled_gradient(model: MixedLM, result: MixedLMResults) -> float:
    """Largest scaled gradient of the profiled deviance at the estimate (lme4's check).

    The deviance is -2 x the profiled (RE)ML log-likelihood as a function of the relative
    covariance parameters on statsmodels' Cholesky scale; its Hessian is taken by central
    differences of the analytic gradient. Parameters at the boundary (a root or Cholesky
    diagonal below :data:`SINGULAR_TOL`, reported as a singular fit) are left out: there the
    optimum is the constraint, and the Hessian is near singular.
    """
    packed = result.params_object.get_packed(use_sqrt=True, has_fe=False)
    inside = ~_at_boundary(model, packed)
    if not inside.any():
        return 0.0
    def deviance_gradient(params: np.ndarray) -> np.ndarray:
        return -2 * np.asarray(model.score(params, profile_fe=True))

    gradient = deviance_gradient(packed)[inside]
    hessian = numdiff.hessian(deviance_gradient, packed,
                              numdiff.relative_steps(packed, 1e-5, 1.0), gradient=True)
    try:
        lower = np.linalg.cholesky(hessian[np.ix_(inside, inside)])
    except np.linalg.LinAlgError:
        return float(np.max(np.abs(gradient)))
    return float(np.max(np.abs(np.linalg.solve(lower, gradient))))


def _at_boundary(model: MixedLM, packed: np.ndarray) -> np.ndarray:
    """Which packed parameters are Cholesky diagonals or variance roots at ~0."""
    rows, cols = np.tril_indices(model.k_re)
    is_root = np.concatenate([rows == cols, np.ones(model.k_vc, dtype=bool)])
    return is_root & (np.abs(packed) < SINGULAR_TOL)


def _fixed_effects(fitted: MixedFit, ci_level: float) -> pd.DataFrame:
    """Tidy fixed effects with Wald z intervals and p-values (SEs from :meth:`fixed_cov`)."""
    result = fitted.result
    estimate = np.asarray(result.fe_params, dtype=float)
    se = np.sqrt(np.diag(fitted.fixed_cov().to_numpy()))
    z = stats.norm.ppf(0.5 + ci_level / 2)
    return pd.DataFrame({
        "term": [_term(name) for name in result.fe_params.index],
        "estimate": estimate, "se": se,
        "ci_low": estimate - z * se, "ci_high": estimate + z * se,
        "p": 2 * stats.norm.sf(np.abs(estimate / se)),
    })


def _term(name: str) -> str:
    return "(Intercept)" if name == "Intercept" else name


def variance_components(fitted: MixedFit) -> pd.DataFrame:
    """Variances, SDs and correlations of the random effects, one row each.

    Columns follow lme4's ``as.data.frame(VarCorr(fit))``: ``level`` (``therapist``,
    ``client`` or ``residual``), ``term`` and ``term2`` (set for a covariance), ``vcov``
    (variance or covariance) and ``sdcor`` (SD, or correlation for a covariance row).
    """
    result, random = fitted.result, fitted.random
    rows = []
    cov = result.cov_re
    names = [_re_term(n, random) for n in cov.index]
    for i, term in enumerate(names):
        rows.append((random.level, term, None, cov.iloc[i, i], np.sqrt(cov.iloc[i, i])))
    for i in range(len(names)):
        for j in range(i):
            corr = cov.iloc[i, j] / np.sqrt(cov.iloc[i, i] * cov.iloc[j, j])
            rows.append((random.level, names[j], names[i], cov.iloc[i, j], corr))
    for vc_name, value in zip(fitted.model.exog_vc.names, result.vcomp, strict=True):
        level, term = random.vc_terms[vc_name]
        rows.append((level, term, None, value, np.sqrt(value)))
    rows.append(("residual", None, None, result.scale, np.sqrt(result.scale)))
    return pd.DataFrame(rows, columns=["level", "term", "term2", "vcov", "sdcor"])


def _re_term(name: str, random: RandomPart) -> str:
    return "(Intercept)" if name in (random.groups, "Group", "Intercept") else name


def singular_components(fitted: MixedFit) -> list[str]:
    """Descriptions of the random effects at the boundary (lme4's ``isSingular`` rule)."""
    result, random = fitted.result, fitted.random
    found = []
    cov = np.asarray(result.cov_re_unscaled, dtype=float)
    if cov.size:
        names = [_re_term(n, random) for n in result.cov_re.index]
        diag = np.sqrt(np.clip(np.diag(cov), 0, None))
        try:
            theta = np.diag(np.linalg.cholesky(cov))
        except np.linalg.LinAlgError:
            theta = np.zeros(len(names))
        for i, name in enumerate(names):
            if diag[i] < SINGULAR_TOL:
                found.append(f"{random.level} {name} variance is ~0")
            elif theta[i] < SINGULAR_TOL:
                found.append(f"{random.level} correlation of {name} with "
                             f"{', '.join(names[:i])} is at +/-1")
    vcomp = np.asarray(result.vcomp, dtype=float) / result.scale
    for vc_name, value in zip(fitted.model.exog_vc.names, vcomp, strict=True):
        if np.sqrt(max(value, 0.0)) < SINGULAR_TOL:
            level, term = random.vc_terms[vc_name]
            found.append(f"{level} {term} variance is ~0")
    return found


def _fit_stats(fitted: MixedFit, data: pd.DataFrame, reml: bool,
               build_warnings: list[str]) -> dict[str, Any]:
    """The fit mapping of the result conventions, with every flag and warning."""
    result, chosen = fitted.result, fitted.chosen
    loglik = float(result.llf)
    n_obs = int(result.nobs)
    n_params = int(result.k_fe + result.k_re2 + result.k_vc + 1)
    singular = singular_components(fitted)
    messages = list(build_warnings)
    for attempt in fitted.attempts:
        messages += attempt.warnings + ([attempt.error] if attempt.error else [])
    messages += _flags(fitted, singular)
    return {
        "n_obs": n_obs,
        "n_clients": int(data[CLIENT].nunique()),
        "n_therapists": int(data[THERAPIST].nunique()) if THERAPIST in data else None,
        "method": "REML" if reml else "ML",
        "loglik": loglik,
        "reml_criterion": -2 * loglik if reml else float("nan"),
        "deviance": float("nan") if reml else -2 * loglik,
        "aic": float("nan") if reml else -2 * loglik + 2 * n_params,
        "bic": float("nan") if reml else float(-2 * loglik + np.log(n_obs) * n_params),
        "n_params": n_params,
        "converged": chosen.ok,
        "singular": bool(singular),
        "optimizer": chosen.label,
        "max_scaled_gradient": chosen.max_gradient,
        "note": REML_AIC_NOTE if reml else "",
        "warnings": messages,
    }


def _flags(fitted: MixedFit, singular: list[str]) -> list[str]:
    """Our own findings about the kept fit, as warning texts."""
    chosen, flags = fitted.chosen, []
    tried = [a.label for a in fitted.attempts]
    if not chosen.optimizer_converged:
        flags.append(f"NOT CONVERGED: no optimizer of {tried} converged; the estimates shown "
                     f"are the best ({chosen.method}) and must not be interpreted")
    elif chosen.max_gradient >= GRADIENT_TOL:
        flags.append(f"NOT CONVERGED: {chosen.method} stopped with scaled gradient "
                     f"{chosen.max_gradient:.2g} (tolerance {GRADIENT_TOL}); the estimate is "
                     "not at an optimum")
    if len(tried) > 1 and chosen.ok:
        flags.append(f"optimizer {chosen.label} used after {', '.join(tried[:-1])} did not "
                     "pass the convergence checks")
    flags += [f"SINGULAR FIT: {text}; simplify the random part" for text in singular]
    return flags


def _attempts_table(attempts: Sequence[Attempt], chosen: Attempt) -> pd.DataFrame:
    return pd.DataFrame([{
        "optimizer": a.method, "start": a.start, "optimizer_converged": a.optimizer_converged,
        "max_scaled_gradient": a.max_gradient, "loglik": a.loglik,
        "kept": a is chosen, "error": a.error,
    } for a in attempts])
