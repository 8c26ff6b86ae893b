"""A fast linear mixed-model engine for nested designs (sessions in clients in therapists).

:func:`fit_nested` fits, by REML or ML, the models of symptom change and alliance that
routine-outcome data need, in lme4's formulation and to lme4's optimum::

    y ~ X + (Z_c | client)                       two levels
    y ~ X + (Z_c | client) + (Z_t | therapist)   three levels, clients nested in therapists

with an unstructured (correlated) or diagonal (independent) covariance matrix of the client
random effects (intercept and slopes) and of the therapist random effects. Its cost per
evaluation of the likelihood grows with the number of clients, not rows; on 200,000 session
rows it is several times faster than lme4 (``benchmarks/bench_engine.py``). Crossed designs
(a client seen by several therapists) are not covered: fit those with statsmodels.

The pieces: :mod:`alliance_analysis.multilevel.engine.design` (validating the data and laying it out),
:mod:`alliance_analysis.multilevel.engine.deviance` (the profiled deviance from per-client sufficient
statistics), :mod:`alliance_analysis.multilevel.engine.optimize` (the optimizer and its checks) and
:mod:`alliance_analysis.multilevel.engine.modes` (conditional modes of the random effects); this module
assembles the result.

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
.. [2] Pinheiro, J. C., & Bates, D. M. (2000). Mixed-effects models in S and S-PLUS.
   Springer.
.. [3] Raudenbush, S. W., & Bryk, A. S. (2002). Hierarchical linear models: Applications and
   data analysis methods (2nd ed.). Sage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.multilevel.derive import CLIENT
from alliance_analysis.multilevel.engine.design import INTERCEPT, Design, build_design, column_rms
from alliance_analysis.multilevel.engine.deviance import (COMPLEX_STEP, ComplexStep, NestedStats,
                                                          Structure, eliminate, fixed_effects,
                                                          profiled_deviance,
                                                          sufficient_statistics)
from alliance_analysis.multilevel.engine.gradient import ReverseGradient
from alliance_analysis.multilevel.engine.gradient import applies as reverse_mode
from alliance_analysis.multilevel.engine.modes import Modes, conditional_modes
from alliance_analysis.multilevel.engine.optimize import Attempt, hessian, minimise
from alliance_analysis.multilevel.engine.satterthwaite import (Curvature, curvature,
                                                              satterthwaite)
from alliance_analysis.results import ModelResult, warn_if_flagged

#: lme4's ``isSingular`` tolerance on the diagonal of the relative covariance factors.
SINGULAR_TOL = 1e-4


def fit_nested(data: pd.DataFrame, outcome: str, fixed: Sequence[str] = (), *,
               random: Sequence[str] = ("1",), client: str = CLIENT,
               therapist: str | None = None, therapist_random: Sequence[str] = ("1",),
               correlated: bool = True, therapist_correlated: bool = True,
               intercept: bool = True, reml: bool = True, ci_level: float = 0.95,
               max_iter: int = 1000, name: str = "nested_mixed_model",
               inference: Literal["satterthwaite", "wald"] = "satterthwaite") -> ModelResult:
    """Fit a two- or three-level linear mixed model by REML or ML, as lme4's ``lmer`` does.

    Parameters
    ----------
    data
        Long table, one row per session; rows with a missing outcome, predictor or ID are
        dropped (counted in ``fit["n_dropped"]`` and a warning text).
    outcome
        Outcome column.
    fixed
        Fixed-effect terms: numeric columns, or products written ``"a:b"`` (e.g. a
        cross-level interaction ``"session:alliance_early"``). Categorical predictors must be
        coded as numeric (dummy) columns first.
    random
        Client random-effect terms: ``"1"`` for the intercept and numeric columns for slopes,
        e.g. ``("1", "session")`` for lme4's ``(1 + session | client)``; leave out ``"1"``
        for a slope without a random intercept.
    client
        Column of the lower grouping factor (clients; for client-level outcomes it may be
        the therapist column).
    therapist
        Column of the upper grouping factor, or None for two levels. Every client must
        belong to one therapist (nested design).
    therapist_random
        Therapist random-effect terms, as ``random`` (used only with ``therapist``).
    correlated, therapist_correlated
        Unstructured covariance of the client (therapist) random effects, as lme4's
        ``(1 + session | client)``; False gives independent effects, as
        ``(1 + session || client)``.
    intercept
        Include the fixed intercept.
    reml
        REML (default, as lme4) or ML (to compare models with different fixed effects).
    ci_level
        Confidence level of the Wald intervals.
    max_iter
        Largest number of deviance evaluations of each TNC run (Powell: 10 x iterations).
    name
        Stable name of the model in the result.
    inference
        ``"satterthwaite"`` (default): t tests and intervals with Satterthwaite's df, as
        lmerTest's ``summary()`` (:mod:`alliance_analysis.multilevel.engine.satterthwaite`);
        ``"wald"``: normal (z) tests and intervals, as ``confint(fit, method = "Wald")``.

    Returns
    -------
    ModelResult
        ``params``: one row per fixed effect: ``term, estimate, se, ci_low, ci_high, p, df,
        t`` (Satterthwaite df, t-based intervals and two-sided p-values; with ``inference=
        "wald"`` df is infinite and the intervals and p-values are the normal ones).
        ``fit``: ``n_obs, n_clients, n_therapists, n_dropped, method, loglik,
        reml_criterion, deviance, aic, bic, n_params, sigma, converged, singular,
        optimizer, gradient_norm, max_scaled_gradient, evaluations, note, warnings``.
        ``extra["variance_components"]``: one row per variance, covariance and the residual
        variance: ``level`` (``client``, ``therapist`` or ``residual``), ``term``, ``term2``
        (set for a covariance), ``vcov`` (variance or covariance), ``sdcor`` (SD, or
        correlation for a covariance), ``se`` of ``vcov``, ``ci_low``, ``ci_high`` (Wald on the
        log scale for variances, on the natural scale for covariances).
        ``extra["variance_parameters_cov"]``: the asymptotic covariance matrix of the
        ``vcov`` column (rows and columns named ``level:term:term2``).
        ``extra["random_effects"]``: each client's and therapist's conditional modes (BLUPs,
        lme4's ``ranef``): ``level, group, term, estimate, se, ci_low, ci_high``, the SE from
        the conditional variance given the estimates (lme4's ``condVar``).
        ``extra["optimizer_attempts"]``: every optimizer run and its checks.
        ``spec``: the model in lme4's formula syntax.

    Raises
    ------
    AllianceDataError
        A column is missing or not numeric; a client belongs to several therapists
        (crossed design: use statsmodels); fewer than 2 clients or therapists; every
        therapist with a single client; no more observations than random effects or
        clients; collinear fixed effects.

    Notes
    -----
    The model is ``y = X beta + Z b + e`` with ``b ~ N(0, sigma^2 Lambda(theta)
    Lambda(theta)')`` and ``e ~ N(0, sigma^2 I)``. The profiled deviance (ML) or REML
    criterion of ``theta``, with ``beta`` and ``sigma^2`` profiled out, is computed by
    penalised least squares (Bates et al. 2015, section 3) from each client's
    cross-products ``Z_i'Z_i, Z_i'X_i, Z_i'y_i`` (computed once), with a second,
    therapist-level block elimination for three levels
    (:mod:`alliance_analysis.multilevel.engine.deviance`). It is minimised over ``theta`` (lower bound 0
    on the diagonal of the factors) by scipy's bounded truncated-Newton method (TNC) on
    exact gradients (reverse mode, :mod:`alliance_analysis.multilevel.engine.gradient`, for
    one or two client effects and at most a therapist intercept; else the complex step),
    from lme4's start on unit-scaled random-effect columns,
    followed by Newton polishing, a restart when a parameter is stuck at its bound on a
    saddle, lme4's gradient check, and a Powell search when that check fails
    (:mod:`alliance_analysis.multilevel.engine.optimize`).

    At the optimum: ``beta = (X'V^-1 X)^-1 X'V^-1 y`` and ``Cov(beta) = sigma^2
    (X'V_0^-1 X)^-1`` with the REML or ML ``sigma^2`` (``V = sigma^2 V_0``), as lme4's
    ``vcov``; variance components ``sigma^2 Lambda Lambda'``. Their covariance matrix is
    ``2 H^-1``, ``H`` the Hessian of the deviance (only ``beta`` profiled out) with respect
    to the variances, covariances and residual variance, carried by the chain rule from its
    Hessian in ``(theta, sigma)`` (central differences of the exact gradient), the one the
    Satterthwaite df use; it is not available at a singular fit (left NaN).

    Conventions, as lme4: ``loglik`` is the REML log-likelihood of a REML fit, and ``aic``
    and ``bic`` are computed from it (``-2 loglik + 2 k`` and ``+ log(n) k``, ``k`` =
    fixed effects + covariance parameters + 1); only ML values compare models with
    different fixed effects. ``reml_criterion`` is ``-2 loglik`` of a REML fit (lme4's
    "REML criterion at convergence"), ``deviance`` of an ML fit. ``singular`` is lme4's
    ``isSingular(tol = 1e-4)``: a diagonal element of a relative covariance factor below
    1e-4, i.e. a variance at zero or a correlation at +/-1. ``gradient_norm`` is the
    largest absolute gradient of the profiled deviance over the parameters not at a bound;
    ``converged`` requires lme4's scaled-gradient check (below 0.002). lme4 gives no
    p-values; here, as in lmerTest, each fixed effect's t statistic is referred to a t
    distribution with Satterthwaite's df (Kuznetsova et al. 2017), computed from the
    curvature of the same deviance (see :mod:`alliance_analysis.multilevel.engine.satterthwaite`).

    Checked against lme4 1.1-31 and lmerTest 3.1-3 (``tests/test_engine.py``: sleepstudy and
    the project's fixtures, log-likelihood at least lme4's, estimates within 1e-4 (fixed
    effects) and 1e-3 (variance components) relative, covariance of the variance parameters
    within 1e-4) and against statsmodels ``MixedLM`` on random designs
    (``tests/test_engine_design.py``).

    Examples
    --------
    Growth with a correlated client intercept and slope beside a therapist intercept (a model
    statsmodels cannot express)::

        result = fit_nested(sessions, "phq9_total", ["session", "wai_within_lag1",
                            "wai_between"], random=["1", "session"], client="client_id",
                            therapist="therapist_id", therapist_random=["1"])
        result.params                          # fixed effects
        result.extra["variance_components"]    # variances, covariances, correlations
    """
    design = build_design(data, outcome, fixed, random, client, therapist, therapist_random,
                          intercept)
    structure = _structure(design, correlated, therapist_correlated)
    suff, kept, attempts = _optimise(design, structure, design.y, reml, max_iter)
    estimates = _estimates(kept, suff, structure, reml)
    modes = conditional_modes(kept.x, estimates.beta, estimates.sigma2, suff, structure)
    parameters = variance_parameters(design, structure)
    curv = curvature(kept.x, estimates.sigma2, suff, structure, reml)
    varcov = _variance_parameter_cov(estimates, parameters, structure, curv)
    keys = [p.key for p in parameters]
    dfs = (satterthwaite(curv, suff, structure).fixed_effect_dfs()
           if inference == "satterthwaite" else np.full(len(estimates.beta), np.inf))
    result = ModelResult(
        name=name, params=_fixed_table(design, estimates, ci_level, dfs),
        fit=_fit_stats(design, structure, kept, attempts, estimates, reml),
        spec=_spec(outcome, design, client, therapist, structure, reml),
        extra={"variance_components": _variance_table(parameters, estimates, varcov, ci_level),
               "variance_parameters_cov": pd.DataFrame(varcov, index=keys, columns=keys),
               "random_effects": _random_effects_table(design, modes, ci_level),
               "optimizer_attempts": _attempts_table(attempts, kept)})
    warn_if_flagged(result)
    return result


def _structure(design: Design, correlated: bool, therapist_correlated: bool) -> Structure:
    """The parameter layout of ``design``'s random effects and fixed effects."""
    return Structure(len(design.client_names), len(design.therapist_names), correlated,
                     therapist_correlated, len(design.fixed_names))


def _optimise(design: Design, structure: Structure, y: np.ndarray, reml: bool,
              max_iter: int) -> tuple[NestedStats, Attempt, list[Attempt]]:
    """Minimise the REML criterion or deviance of outcome ``y`` (laid out as the design's
    rows): the sufficient statistics, the kept optimizer run and every run."""
    suff = sufficient_statistics(design.zc, design.zt, design.x, y, design.client_starts,
                                 design.therapist_row_starts, design.therapist_client_starts)

    def values(theta: np.ndarray) -> np.ndarray:
        return profiled_deviance(theta, suff, structure, reml)

    # the reverse-mode gradient where it applies (one or two client effects, at most a
    # therapist intercept), else the complex step
    value_grad = (ReverseGradient(suff, structure, reml) if reverse_mode(structure)
                  else ComplexStep(values))
    start = structure.start(column_rms(design.zc), column_rms(design.zt))
    kept, attempts = minimise(value_grad, values, start, structure.lower_bounds(),
                              max_iter, canonical=structure.canonical)
    return suff, kept, attempts


@dataclass(frozen=True)
class RefitVariances:
    """The variance components of one refit (:meth:`NestedRefit.variances`).

    Attributes
    ----------
    client_cov, therapist_cov
        Covariance matrices of the client and therapist random effects (the therapist's
        empty for two levels).
    sigma2
        Residual variance.
    converged
        lme4's convergence check passed (``fit["converged"]`` of :func:`fit_nested`).
    """

    client_cov: np.ndarray
    therapist_cov: np.ndarray
    sigma2: float
    converged: bool


class NestedRefit:
    """A model of :func:`fit_nested` laid out once, to be refitted to new outcomes.

    As lme4's ``refit(object, newresp)`` (used by its ``bootMer``): the design, its checks
    and its sorting are done once, and each refit only recomputes the outcome's sufficient
    statistics and minimises the criterion, from the same start with the same optimizer as
    :func:`fit_nested`, so a refit's variance components are the same numbers
    ``fit_nested`` gives for ``data`` with that outcome. Nothing else (fixed-effect tests,
    random effects, tables) is computed: for parametric bootstraps of variance components.

    Parameters
    ----------
    data, outcome, fixed
        As :func:`fit_nested`; every row must be complete (no missing model variable), so
        that a new outcome has one value per row of ``data``.
    random, client, therapist, therapist_random, correlated, therapist_correlated, intercept,
    reml, max_iter
        As :func:`fit_nested`.

    Raises
    ------
    AllianceDataError
        As :func:`fit_nested`, or a row of ``data`` misses a model variable.
    """

    def __init__(self, data: pd.DataFrame, outcome: str, fixed: Sequence[str] = (), *,
                 random: Sequence[str] = ("1",), client: str = CLIENT,
                 therapist: str | None = None, therapist_random: Sequence[str] = ("1",),
                 correlated: bool = True, therapist_correlated: bool = True,
                 intercept: bool = True, reml: bool = True, max_iter: int = 1000) -> None:
        self.design = build_design(data, outcome, fixed, random, client, therapist,
                                   therapist_random, intercept)
        if self.design.dropped:
            raise AllianceDataError(
                f"NestedRefit: rows missing a model variable ({self.design.dropped}); give "
                "the complete rows only, so that each new outcome has one value per row")
        self.structure = _structure(self.design, correlated, therapist_correlated)
        self.n_rows = len(data)
        self.reml, self.max_iter = reml, max_iter

    def variances(self, y: np.ndarray) -> RefitVariances:
        """The variance components of the model refitted to outcome ``y`` (one value per row
        of the data, in their order)."""
        y = np.asarray(y, dtype=float)
        if y.shape != (self.n_rows,) or not np.all(np.isfinite(y)):
            raise ValueError(f"NestedRefit: the outcome must be {self.n_rows} finite values")
        suff, kept, _ = _optimise(self.design, self.structure, y[self.design.rows], self.reml,
                                  self.max_iter)
        estimates = _estimates(kept, suff, self.structure, self.reml)
        return RefitVariances(estimates.client_cov, estimates.therapist_cov, estimates.sigma2,
                              bool(kept.ok))


# -- the estimates --------------------------------------------------------------------------

@dataclass(frozen=True)
class Estimates:
    """Everything estimated at the optimum.

    Attributes
    ----------
    beta, beta_cov
        Fixed effects and their covariance matrix.
    sigma2
        Residual variance.
    client_cov, therapist_cov
        Covariance matrices of the client and therapist random effects.
    singular
        Diagonal elements ``(level, j)`` of the relative factors at the boundary (lme4's
        ``isSingular``).
    """

    beta: np.ndarray
    beta_cov: np.ndarray
    sigma2: float
    client_cov: np.ndarray
    therapist_cov: np.ndarray
    singular: list[tuple[str, int]]


def _estimates(kept: Attempt, suff: NestedStats, structure: Structure,
               reml: bool) -> Estimates:
    """Fixed effects, their covariance, and variance components at ``kept.x``."""
    theta = kept.x
    _, f = eliminate(theta[None], suff, structure)
    beta, unscaled, r2 = fixed_effects(np.linalg.cholesky(f[:, :, 0]), structure.n_fixed)
    sigma2 = r2 / (suff.n_obs - (structure.n_fixed if reml else 0))
    lam_c, lam_t = structure.factors(theta)
    singular = [(level, j) for level, lam in (("client", lam_c), ("therapist", lam_t))
                for j in range(lam.shape[0]) if lam[j, j] < SINGULAR_TOL]
    return Estimates(beta, sigma2 * unscaled, sigma2, sigma2 * lam_c @ lam_c.T,
                     sigma2 * lam_t @ lam_t.T, singular)


@dataclass(frozen=True)
class VarianceParameter:
    """One variance, covariance or the residual variance, as lme4's ``VarCorr`` lists them.

    ``row`` and ``col`` locate it in its level's covariance matrix; ``term2`` is set for a
    covariance (of ``term`` with ``term2``).
    """

    level: str
    row: int
    col: int
    term: str | None
    term2: str | None

    @property
    def key(self) -> str:
        return ":".join(part for part in (self.level, self.term, self.term2) if part)


def variance_parameters(design: Design, structure: Structure) -> list[VarianceParameter]:
    """The variance parameters in lme4's order: by level, variances then covariances."""
    out = []
    for level, names in (("client", design.client_names), ("therapist", design.therapist_names)):
        rows, cols = structure.block_positions(level)
        pairs = sorted(zip(rows, cols, strict=True), key=lambda rc: rc[0] != rc[1])
        out += [VarianceParameter(level, int(r), int(c), names[c], None if r == c else names[r])
                for r, c in pairs]
    return out + [VarianceParameter("residual", 0, 0, None, None)]


def _phi(estimates: Estimates, parameters: Sequence[VarianceParameter]) -> np.ndarray:
    """The values of the variance parameters."""
    covs = {"client": estimates.client_cov, "therapist": estimates.therapist_cov,
            "residual": np.array([[estimates.sigma2]])}
    return np.array([covs[p.level][p.row, p.col] for p in parameters])


def _covariances(batch: np.ndarray, parameters: Sequence[VarianceParameter], level: str,
                 q: int) -> np.ndarray:
    """A level's ``(q, q, k)`` covariance matrices from a batch ``(k, n_phi)`` of values."""
    out = np.zeros((q, q, batch.shape[0]), dtype=batch.dtype)
    for j, p in enumerate(parameters):
        if p.level == level:
            out[p.row, p.col] = out[p.col, p.row] = batch[:, j]
    return out


def _variance_parameter_cov(estimates: Estimates, parameters: Sequence[VarianceParameter],
                            structure: Structure, curv: Curvature) -> np.ndarray:
    """``2 H^-1``, ``H`` the Hessian of the deviance in the variance parameters; see Notes.

    ``H`` comes from the Hessian in ``psi = (theta, sigma)`` that the Satterthwaite df use
    (one Hessian per fit) by the chain rule, ``H = J' H_psi J + sum_k g_k d2 psi_k``, with
    ``J`` the exact (complex-step) Jacobian of ``psi`` in the variance parameters, ``g`` the
    deviance's gradient in ``psi`` (about 0 at the optimum) and the second derivatives of the
    data-free map ``psi(phi)`` by central differences of its exact gradient.
    """
    phi = _phi(estimates, parameters)
    if estimates.singular:
        return np.full((phi.size, phi.size), np.nan)

    def psi(batch: np.ndarray) -> np.ndarray:
        sigma2 = batch[:, -1]
        theta = structure.theta_of(
            _covariances(batch, parameters, "client", structure.q_client) / sigma2,
            _covariances(batch, parameters, "therapist", structure.q_therapist) / sigma2)
        return np.column_stack([theta, np.sqrt(sigma2)])

    m = phi.size
    directions = phi[None, :] + 1j * COMPLEX_STEP * np.eye(m)
    jacobian = psi(directions).imag.T / COMPLEX_STEP
    diagonal = {(p.level, p.row): value for p, value in zip(parameters, phi, strict=True)
                if p.row == p.col}
    scales = np.array([np.sqrt(diagonal[p.level, p.row] * diagonal[p.level, p.col])
                       for p in parameters])

    def contracted(batch: np.ndarray) -> np.ndarray:
        return psi(batch) @ curv.gradient

    second = hessian(ComplexStep(contracted), phi, scales=scales)
    hess = jacobian.T @ curv.hessian @ jacobian + second
    try:
        return 2 * np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return np.full_like(hess, np.nan)


# -- the tables -----------------------------------------------------------------------------

def _fixed_table(design: Design, estimates: Estimates, ci_level: float,
                 dfs: np.ndarray) -> pd.DataFrame:
    """Tidy fixed effects with t intervals and p-values on ``dfs`` (infinite: normal)."""
    se = np.sqrt(np.diag(estimates.beta_cov))
    beta = estimates.beta
    t = beta / se
    quantile = stats.t.ppf(0.5 + ci_level / 2, dfs)
    return pd.DataFrame({
        "term": list(design.fixed_names), "estimate": beta, "se": se,
        "ci_low": beta - quantile * se, "ci_high": beta + quantile * se,
        "p": 2 * stats.t.sf(np.abs(t), dfs), "df": dfs, "t": t,
    })


def _variance_table(parameters: Sequence[VarianceParameter], estimates: Estimates,
                    varcov: np.ndarray, ci_level: float) -> pd.DataFrame:
    """Variances, covariances, SDs and correlations with SEs and Wald intervals."""
    z = stats.norm.ppf(0.5 + ci_level / 2)
    phi = _phi(estimates, parameters)
    variance = {(p.level, p.row): value for p, value in zip(parameters, phi, strict=True)
                if p.row == p.col}
    se = np.sqrt(np.diag(varcov))
    rows = []
    for p, value, error in zip(parameters, phi, se, strict=True):
        if p.term2:
            # a correlation at its boundary can come out as -1.0000000000000002 in floating
            # point; it is bounded by +/-1 (lme4's cov2cor result is read the same way)
            sdcor = float(np.clip(value / np.sqrt(variance[p.level, p.row]
                                                  * variance[p.level, p.col]), -1.0, 1.0))
            low, high = value - z * error, value + z * error
        else:
            sdcor = np.sqrt(value)
            half = z * error / value if value > 0 else np.nan
            low, high = value * np.exp(-half), value * np.exp(half)
        rows.append((p.level, p.term, p.term2, value, sdcor, error, low, high))
    return pd.DataFrame(rows, columns=["level", "term", "term2", "vcov", "sdcor", "se",
                                       "ci_low", "ci_high"])


def _random_effects_table(design: Design, modes: Modes, ci_level: float) -> pd.DataFrame:
    """Each client's and therapist's conditional modes with conditional SEs and intervals."""
    z = stats.norm.ppf(0.5 + ci_level / 2)
    columns: dict[str, list[np.ndarray]] = {name: [] for name in (
        "level", "group", "term", "estimate", "se", "ci_low", "ci_high")}
    for level, ids, names, values, cov in (
            ("client", design.client_ids, design.client_names, modes.client, modes.client_cov),
            ("therapist", design.therapist_ids, design.therapist_names, modes.therapist,
             modes.therapist_cov)):
        for j, term in enumerate(names):
            se = np.sqrt(cov[:, j, j])
            for name, column in (("level", np.full(len(ids), level, dtype=object)),
                                 ("group", ids),
                                 ("term", np.full(len(ids), term, dtype=object)),
                                 ("estimate", values[:, j]), ("se", se),
                                 ("ci_low", values[:, j] - z * se),
                                 ("ci_high", values[:, j] + z * se)):
                columns[name].append(column)
    # one table built from whole columns (one text conversion per column, not per part)
    return pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})


def _fit_stats(design: Design, structure: Structure, kept: Attempt,
               attempts: Sequence[Attempt], estimates: Estimates,
               reml: bool) -> dict[str, Any]:
    """The fit mapping of the result conventions, with every flag and warning."""
    n = design.y.size
    loglik = -kept.value / 2
    n_params = structure.n_fixed + structure.n_theta + 1
    messages = _drop_messages(design.dropped)
    messages += _flags(kept, attempts, estimates, design)
    return {
        "n_obs": n, "n_clients": design.n_clients,
        "n_therapists": design.n_therapists or None,
        "n_dropped": int(sum(design.dropped.values())),
        "method": "REML" if reml else "ML",
        "loglik": loglik,
        "reml_criterion": kept.value if reml else float("nan"),
        "deviance": float("nan") if reml else kept.value,
        "aic": float(kept.value + 2 * n_params),
        "bic": float(kept.value + np.log(n) * n_params),
        "n_params": n_params,
        "sigma": float(np.sqrt(estimates.sigma2)),
        "converged": kept.ok,
        "singular": bool(estimates.singular),
        "optimizer": kept.method,
        "gradient_norm": kept.max_gradient,
        "max_scaled_gradient": kept.max_scaled_gradient,
        "evaluations": int(sum(a.evaluations for a in attempts)),
        "note": ("REML fit: loglik, aic and bic are of the REML likelihood, as lme4 reports "
                 "them; compare models with different fixed effects only with reml=False"
                 if reml else ""),
        "warnings": messages,
    }


def _drop_messages(dropped: dict[str, int]) -> list[str]:
    if not dropped:
        return []
    detail = ", ".join(f"{column}: {count}" for column, count in dropped.items())
    return [f"dropped {sum(dropped.values())} row(s) with a missing model variable ({detail})"]


def _flags(kept: Attempt, attempts: Sequence[Attempt], estimates: Estimates,
           design: Design) -> list[str]:
    """Our own findings about the kept fit, as warning texts."""
    flags = []
    if not kept.ok:
        flags.append(f"NOT CONVERGED: {kept.method} stopped with scaled gradient "
                     f"{kept.max_scaled_gradient:.2g} (lme4's tolerance 0.002); the estimates "
                     "are not at an optimum and must not be interpreted")
    if len(attempts) > 1 and kept.ok:
        flags.append(f"optimizer {kept.method} used after TNC failed the gradient check")
    if estimates.singular:
        flags.append(f"SINGULAR FIT: {', '.join(_singular_texts(estimates, design))}; "
                     "simplify the random part")
    return flags


def _singular_texts(estimates: Estimates, design: Design) -> list[str]:
    """Which variance is ~0, or which correlation is at +/-1, for each singular element."""
    texts = []
    for level, j in estimates.singular:
        names = design.client_names if level == "client" else design.therapist_names
        cov = estimates.client_cov if level == "client" else estimates.therapist_cov
        if np.sqrt(cov[j, j] / estimates.sigma2) < SINGULAR_TOL:
            texts.append(f"{level} {names[j]} variance is ~0")
        else:
            texts.append(f"{level} {names[j]} is perfectly correlated with "
                         f"{', '.join(names[:j])} (correlation +/-1)")
    return texts


def _spec(outcome: str, design: Design, client: str, therapist: str | None,
          structure: Structure, reml: bool) -> str:
    """The model in lme4's formula syntax, with the engine and method."""
    fixed = [t for t in design.fixed_names if t != INTERCEPT]
    rhs = " + ".join(fixed) if fixed else "1"
    if INTERCEPT not in design.fixed_names:
        rhs = "0 + " + rhs
    parts = [f"{outcome} ~ {rhs}", _random_text(design.client_names, client,
                                               structure.client_correlated)]
    if therapist:
        parts.append(_random_text(design.therapist_names, therapist,
                                  structure.therapist_correlated))
    return " + ".join(parts) + f"  [alliance_analysis.multilevel.engine, {'REML' if reml else 'ML'}]"


def _random_text(names: Sequence[str], group: str, correlated: bool) -> str:
    terms = ["1" if n == INTERCEPT else n for n in names]
    if INTERCEPT not in names:
        terms.insert(0, "0")
    bar = "|" if correlated or len(names) == 1 else "||"
    return f"({' + '.join(terms)} {bar} {group})"


def _attempts_table(attempts: Sequence[Attempt], kept: Attempt) -> pd.DataFrame:
    return pd.DataFrame([{
        "optimizer": a.method, "deviance": a.value, "gradient_norm": a.max_gradient,
        "max_scaled_gradient": a.max_scaled_gradient, "passed_check": a.ok,
        "evaluations": a.evaluations, "message": a.message, "kept": a is kept,
    } for a in attempts])
