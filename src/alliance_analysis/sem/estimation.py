"""Maximum-likelihood estimation of structural equation models, by lavaan's conventions.

semopy parses the lavaan-style model syntax and builds the model matrices (which cells are
free, fixed or equal, with semopy's lavaan-like defaults); this module estimates them.
semopy 2.3.11's own fitting was measured too slow or unreliable for the models of this
project: on the RI-CLPM fixture, ``Model.fit(obj="MLW")`` from semopy's starting values
(latent variances 0.05) took ~5,200 SLSQP iterations (4-12 s), reached a wrong point with
``ftol = 1e-9`` and with L-BFGS-B; ``ModelMeans`` (FIML) reproduced lavaan's estimates but
took 35-67 s per fit and its standard errors differed from lavaan's (observed information)
by 13-16%. Here the estimates come from Fisher scoring on the exact log-likelihood, with
analytic first derivatives:

* **complete data**: the normal likelihood with the N (not N - 1) sample covariance matrix,
  as lavaan's default ``likelihood = "normal"``; standard errors from the expected
  information;
* **missing data**: full-information ML (FIML), the case-wise likelihood summed over the
  patterns of observed variables (grouped once, each evaluation vectorised over the
  patterns: :mod:`alliance_analysis.sem.fiml`); standard errors from the observed
  information (analytic second derivatives), as lavaan's ``missing = "fiml"``.

The model is semopy's LISREL "all-y" form: ``Sigma = M Psi M' + Theta`` and
``mu = M gamma1 + gamma2`` with ``M = Lambda (I - B)^-1``.

References
----------
Bollen, K. A. (1989). *Structural equations with latent variables*. Wiley.
Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
Statistical Software*, 48(2), 1-36.
Arbuckle, J. L. (1996). Full information estimation in the presence of incomplete data. In
G. A. Marcoulides & R. E. Schumacker (Eds.), *Advanced structural equation modeling*.
Erlbaum.
Igolkina, A. A., & Meshcheryakov, G. (2020). semopy: A Python package for structural
equation modeling. *Structural Equation Modeling*, 27(6), 952-963.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError, NotEstimableError
from alliance_analysis.sem import fiml

#: The model matrices and their names in semopy; ``gamma1``/``gamma2`` are the means of the
#: inner (latent or structural) and the observed variables.
_SEMOPY_NAMES = {"beta": "Beta", "lambda": "Lambda", "psi": "Psi", "theta": "Theta",
                 "gamma1": "Gamma1", "gamma2": "Gamma2"}


@dataclass(frozen=True)
class Structure:
    """The free and fixed cells of a model's matrices, read from semopy.

    Attributes
    ----------
    observed, inner
        Names of the observed variables (rows of Lambda) and of the inner variables
        (latent variables and observed variables in the structural part).
    latent
        Names of the latent variables.
    fixed
        Each matrix with its fixed values (free cells hold 0); ``gamma1`` and ``gamma2`` are
        vectors, absent without a mean structure.
    names
        One name per free parameter (semopy's; a label shared by cells makes them equal).
    patterns
        For each matrix, a (parameters x matrix shape) array of 0/1: where each free
        parameter sits (both triangles for symmetric matrices).
    meanstructure
        Whether the model has means and intercepts.
    """

    observed: tuple[str, ...]
    inner: tuple[str, ...]
    latent: frozenset[str]
    fixed: dict[str, np.ndarray]
    names: tuple[str, ...]
    patterns: dict[str, np.ndarray]
    meanstructure: bool

    @property
    def n_free(self) -> int:
        """Number of free parameters (equal parameters counted once)."""
        return len(self.names)

    def matrices(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """The model matrices filled with the parameter vector ``theta``."""
        out = {}
        for key, fixed in self.fixed.items():
            pattern = self.patterns[key].reshape(self.n_free, fixed.size)
            out[key] = fixed + (theta @ pattern).reshape(fixed.shape)
        return out


@dataclass(frozen=True)
class Moments:
    """The data a model is fitted to, grouped by pattern of observed variables.

    Attributes
    ----------
    columns
        The observed variables, in the model's order.
    patterns
        One entry per pattern: (indices of the observed variables, number of cases,
        mean vector, covariance matrix with divisor n).
    n_obs
        Number of cases used.
    n_dropped
        Cases dropped (listwise, or rows with every variable missing under FIML).
    missing
        ``"listwise"`` or ``"fiml"``.
    rows
        The cases of each pattern (cases x observed variables of the pattern), for
        case-wise scores (robust standard errors); None when built from moments only.
    """

    columns: tuple[str, ...]
    patterns: tuple[tuple[np.ndarray, int, np.ndarray, np.ndarray], ...]
    n_obs: int
    n_dropped: int
    missing: Literal["listwise", "fiml"]
    rows: tuple[np.ndarray, ...] | None = None

    def pooled(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and N-divisor covariance of complete data (a single pattern)."""
        _, _, mean, cov = self.patterns[0]
        return mean, cov

    @functools.cached_property
    def stacked(self) -> fiml.PatternStack:
        """The patterns as zero-padded arrays (:func:`alliance_analysis.sem.fiml.stack`),
        built on first use and kept: every likelihood evaluation reads them."""
        return fiml.stack(self.patterns, len(self.columns))


@dataclass(frozen=True)
class Estimates:
    """The result of one maximum-likelihood fit.

    Attributes
    ----------
    theta
        Free parameter estimates, in :attr:`Structure.names` order.
    vcov
        Their covariance matrix (NaN where the information matrix is singular).
    loglik
        Log-likelihood at the estimates.
    converged
        Whether Fisher scoring met its tolerance.
    iterations
        Number of scoring steps.
    information
        ``"expected"`` (complete data) or ``"observed"`` (FIML).
    warnings
        Problems found (no convergence, singular information, negative variances).
    estimator
        ``"ML"`` or ``"MLR"`` (``vcov`` then the Huber-White sandwich).
    robust
        Under MLR, ``{"sandwich": robust.Sandwich}`` for the scaled test; else None.
    """

    theta: np.ndarray
    vcov: np.ndarray
    loglik: float
    converged: bool
    iterations: int
    information: str
    warnings: tuple[str, ...]
    estimator: str = "ML"
    robust: dict[str, Any] | None = None


def structure(syntax: str, meanstructure: bool) -> Structure:
    """Parse lavaan-style syntax with semopy and read its matrices.

    Parameters
    ----------
    syntax
        Model syntax (``=~``, ``~``, ``~~``, ``~ 1``; ``1*x`` fixes, ``a*x`` labels, and cells
        with the same label are constrained equal).
    meanstructure
        Fit means and intercepts (semopy's ``ModelMeans``) or only covariances (``Model``).
    """
    # Imported here, not at the top: semopy takes ~3 s to import (it loads scikit-learn),
    # and params.py imports this package's SEM options on every parameters load.
    import semopy

    model = semopy.ModelMeans(syntax) if meanstructure else semopy.Model(syntax)
    exogenous = list(model.vars.get("observed_exogenous", []))
    if meanstructure and exogenous != ["1"]:
        raise AllianceDataError(
            f"observed predictors {[v for v in exogenous if v != '1']} enter this model as "
            "fixed covariates, which is not supported here; wrap each in a single-indicator "
            "latent variable (see sem_syntax.growth_syntax) so that FIML can use it")
    starts = model.inspect(mode="mx", what="start")
    labels = model.inspect(mode="mx", what="name")
    # semopy numbers its unlabelled parameters in an order that depends on Python's string
    # hashing (PYTHONHASHSEED), which changed the last bit of results between runs; order
    # them by their first cell instead (matrix, row, column): the same order every run.
    first_cell: dict[str, tuple[int, int, int]] = {}
    for m, semopy_name in enumerate(_SEMOPY_NAMES.values()):
        if semopy_name in labels:
            for (i, j), value in np.ndenumerate(labels[semopy_name].to_numpy()):
                if isinstance(value, str):
                    first_cell.setdefault(value, (m, i, j))
    active = sorted((name for name, param in model.parameters.items() if param.active),
                    key=lambda name: first_cell.get(name, (len(_SEMOPY_NAMES), 0, 0)))
    index = {name: k for k, name in enumerate(active)}
    fixed, patterns = {}, {}
    for key, semopy_name in _SEMOPY_NAMES.items():
        if semopy_name not in starts:
            continue
        start, label = starts[semopy_name], labels[semopy_name]
        values = np.zeros(start.shape)
        pattern = np.zeros((len(active),) + start.shape)
        for (i, j), value in np.ndenumerate(label.to_numpy()):
            if isinstance(value, str) and value in index:
                pattern[(index[value], i, j)] = 1.0
            elif isinstance(value, str):
                values[i, j] = float(model.parameters[value].start)
            else:
                values[i, j] = float(value)
        if key.startswith("gamma"):
            values, pattern = values[:, 0], pattern[:, :, 0]
        fixed[key], patterns[key] = values, pattern
    return Structure(observed=tuple(model.names_lambda[0]), inner=tuple(model.names_lambda[1]),
                     latent=frozenset(model.vars["latent"]), fixed=fixed, names=tuple(active),
                     patterns=patterns, meanstructure=meanstructure)


def standardize_latent(model: Structure) -> Structure:
    """Identify each factor by its variance instead of a marker loading (``std.lv``).

    lavaan's ``std.lv = TRUE``: every latent variable whose variance is free gets variance 1
    and all its fixed non-zero loadings (semopy's automatic markers) become free. Meant for
    measurement models without loadings fixed on purpose; a bifactor model needs it, since
    a weak specific factor makes its marker loading, and so its scale, unstable.
    """
    psi_pattern = model.patterns["psi"]
    variance_params = {j: int(np.flatnonzero(psi_pattern[:, j, j])[0])
                       for j, name in enumerate(model.inner)
                       if name in model.latent and psi_pattern[:, j, j].any()}
    keep = np.ones(model.n_free, dtype=bool)
    keep[list(variance_params.values())] = False
    fixed = {key: value.copy() for key, value in model.fixed.items()}
    patterns = {key: value[keep] for key, value in model.patterns.items()}
    names = list(np.array(model.names)[keep])
    new_cells = []
    for j in variance_params:
        fixed["psi"][j, j] = 1.0
        for i in np.flatnonzero(fixed["lambda"][:, j]):
            fixed["lambda"][i, j] = 0.0
            new_cells.append((i, j))
            names.append(f"_{model.inner[j]}=~{model.observed[i]}")
    for key in patterns:
        extra = np.zeros((len(new_cells),) + patterns[key].shape[1:])
        if key == "lambda":
            for k, cell in enumerate(new_cells):
                extra[(k,) + cell] = 1.0
        patterns[key] = np.concatenate([patterns[key], extra])
    return Structure(observed=model.observed, inner=model.inner, latent=model.latent,
                     fixed=fixed, names=tuple(names), patterns=patterns,
                     meanstructure=model.meanstructure)


def moments(data: pd.DataFrame, columns: tuple[str, ...],
            missing: Literal["listwise", "fiml"]) -> Moments:
    """Group the data by pattern of observed variables (one pattern after listwise).

    Raises
    ------
    AllianceDataError
        When a model variable is not a column, or too few cases remain.
    """
    absent = [c for c in columns if c not in data.columns]
    if absent:
        raise AllianceDataError(f"the model uses columns {absent} that the data lack; "
                                f"columns present: {list(data.columns)}")
    values = data.loc[:, list(columns)].to_numpy(dtype=float)
    observed = np.isfinite(values)
    keep = observed.all(axis=1) if missing == "listwise" else observed.any(axis=1)
    values, observed = values[keep], observed[keep]
    if len(values) <= len(columns):
        hint = ("choose other sessions" if missing == "fiml"
                else "choose other sessions or missing='fiml'")
        raise NotEstimableError(
            f"only {len(values)} cases with {missing} handling of {list(columns)}; a model of "
            f"{len(columns)} variables needs more: {hint}")
    groups, cases = fiml.group_rows(values, observed)
    return Moments(columns=tuple(columns), patterns=groups, n_obs=int(keep.sum()),
                   n_dropped=int((~keep).sum()), missing=missing, rows=cases)


def implied(model: Structure, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model-implied covariance matrix and mean vector of the observed variables."""
    mats = model.matrices(theta)
    m = mats["lambda"] @ np.linalg.inv(np.eye(len(model.inner)) - mats["beta"])
    sigma = m @ mats["psi"] @ m.T + mats["theta"]
    mean = m @ mats["gamma1"] + mats["gamma2"] if model.meanstructure else None
    return sigma, mean


def inner_covariance(model: Structure, theta: np.ndarray) -> np.ndarray:
    """Model-implied covariance matrix of the inner (latent) variables."""
    mats = model.matrices(theta)
    c = np.linalg.inv(np.eye(len(model.inner)) - mats["beta"])
    return c @ mats["psi"] @ c.T


def derivatives(model: Structure, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d Sigma / d theta_k (k x p x p) and d mu / d theta_k (k x p) for all parameters."""
    mats, pat = model.matrices(theta), model.patterns
    c = np.linalg.inv(np.eye(len(model.inner)) - mats["beta"])
    m = mats["lambda"] @ c
    p_mat = c @ mats["psi"] @ m.T
    d_beta = m @ pat["beta"] @ p_mat
    d_lambda = pat["lambda"] @ p_mat
    d_sigma = (d_beta + d_beta.transpose(0, 2, 1) + d_lambda + d_lambda.transpose(0, 2, 1)
               + m @ pat["psi"] @ m.T + pat["theta"])
    if not model.meanstructure:
        return d_sigma, np.zeros(d_sigma.shape[:2])
    c_gamma = c @ mats["gamma1"]
    d_mean = (m @ pat["beta"] @ c_gamma + pat["lambda"] @ c_gamma
              + (m @ pat["gamma1"].T).T + pat["gamma2"])
    return d_sigma, d_mean


def minus2_loglik(model: Structure, data: Moments, theta: np.ndarray) -> float:
    """-2 log-likelihood of the data under the model (inf where a pattern's Sigma has a
    determinant that is not positive); summed over the patterns at once
    (:func:`alliance_analysis.sem.fiml.minus2_loglik`)."""
    sigma, mean = implied(model, theta)
    return fiml.minus2_loglik(data.stacked, sigma, mean)


def _gradient_information(model: Structure, data: Moments, theta: np.ndarray,
                          information: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of -2 logL and the expected information (of logL) over the patterns
    (:func:`alliance_analysis.sem.fiml.gradient_information`); without ``information``
    (the gradient alone) the second is 0."""
    sigma, mean = implied(model, theta)
    return fiml.gradient_information(data.stacked, sigma, mean, *derivatives(model, theta),
                                     information=information)


def start_values(model: Structure, data: Moments) -> np.ndarray:
    """Starting values by simple rules, close to lavaan's ``start = "simple"``.

    Free loadings 1 in the units of the factor's marker item (``sqrt(var_i / var_marker)``,
    1 without a marker); observed residual variances half the observed variance; a latent
    variance half the variance of its first fixed-loading indicator, shared among the
    latent variables loading on it; covariances and regressions 0; intercepts the means.
    """
    variance = np.ones(len(model.observed))
    means = np.zeros(len(model.observed))
    for idx, _, xbar, cov in data.patterns:  # a rough value per variable is enough
        variance[idx], means[idx] = np.diag(cov), xbar
    lam = model.fixed["lambda"]
    theta = np.zeros(model.n_free)
    for k in range(model.n_free):
        if model.patterns["lambda"][k].any():
            # 1 in the units of the factor's marker item: sqrt(var_i / var_marker), so that
            # items on very different scales start near their solution (1 when alike)
            i, j = np.argwhere(model.patterns["lambda"][k])[0]
            markers = np.flatnonzero(lam[:, j])
            theta[k] = (np.sqrt(variance[i] / variance[markers[0]])
                        if len(markers) and variance[markers[0]] > 0 else 1.0)
        elif model.patterns["theta"][k].any():
            i, j = np.argwhere(model.patterns["theta"][k])[0]
            theta[k] = variance[i] / 2 if i == j else 0.0
        elif model.patterns["psi"][k].any():
            i, j = np.argwhere(model.patterns["psi"][k])[0]
            if i == j:
                markers = np.flatnonzero(lam[:, i])
                sharing = np.count_nonzero(lam[markers[0]]) if len(markers) else 1
                theta[k] = variance[markers[0]] / (2 * sharing) if len(markers) else 0.05
        elif "gamma2" in model.patterns and model.patterns["gamma2"][k].any():
            theta[k] = means[np.argmax(model.patterns["gamma2"][k])]
    return theta


def group_start_values(models: tuple[Structure, ...], data: tuple[Moments, ...]
                       ) -> np.ndarray:
    """Starting values of a multigroup model: :func:`start_values` per group, a parameter
    shared by groups starting at the mean of its groups' values."""
    if len(models) == 1:
        return start_values(models[0], data[0])
    return _group_average(models, [start_values(m, d) for m, d in zip(models, data)],
                          np.zeros(models[0].n_free))


def _group_average(models: tuple[Structure, ...], values: list[np.ndarray],
                   default: np.ndarray) -> np.ndarray:
    """Each parameter's mean over the groups whose matrices hold it (``default`` where none
    does)."""
    total, count = np.zeros(len(default)), np.zeros(len(default))
    for model, value in zip(models, values):
        present = np.array([any(model.patterns[key][k].any() for key in model.patterns)
                            for k in range(model.n_free)], dtype=bool)
        total[present] += value[present]
        count[present] += 1
    return np.where(count > 0, total / np.maximum(count, 1), default)


def _total_m2ll(models: tuple[Structure, ...], data: tuple[Moments, ...],
                theta: np.ndarray) -> float:
    """-2 logL summed over groups."""
    return sum(minus2_loglik(m, d, theta) for m, d in zip(models, data))


def _total_gradient_information(models: tuple[Structure, ...], data: tuple[Moments, ...],
                                theta: np.ndarray, information: bool = True
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of -2 logL and expected information, summed over groups."""
    grad, info = 0.0, 0.0
    for m, d in zip(models, data):
        g, i = _gradient_information(m, d, theta, information)
        grad, info = grad + g, info + i
    return grad, info


def fit(model: Structure | tuple[Structure, ...], data: Moments | tuple[Moments, ...],
        max_iter: int = 500, tol: float = 1e-10,
        estimator: Literal["ML", "MLR"] = "ML") -> Estimates:
    """Maximum-likelihood estimates by Fisher scoring with step halving.

    Parameters
    ----------
    model, data
        From :func:`structure` and :func:`moments` (same column order); for a multigroup
        model, one structure and one data set per group, the structures sharing one
        parameter vector (:func:`alliance_analysis.sem.multigroup.group_structures`): the
        log-likelihood is the sum over groups, as lavaan's.
    max_iter
        Largest number of scoring steps.
    tol
        Convergence when the largest step is below ``tol * max(1, |theta|)``.
    estimator
        ``"ML"``: standard errors from the expected (complete data) or observed (FIML)
        information. ``"MLR"`` (lavaan's robust ML): the same estimates, Huber-White
        sandwich standard errors with the observed information (also for complete data,
        as lavaan 0.6-14) and the case-wise scores, see :mod:`alliance_analysis.sem.robust`;
        :func:`alliance_analysis.sem.fit.fit_measures` then adds the Yuan-Bentler scaled
        chi-square and the scaled and robust fit indices.

    Notes
    -----
    Each step solves ``I(theta) delta = score(theta)`` with the expected information ``I``;
    the step is halved until -2 logL does not increase (when no step does, the fit counts as
    converged only if the gradient is ~0). A fit that stops short of a stationary point (the
    gradient not ~0: e.g. the first steps from latent means far from the data's, with the
    markers' intercepts fixed to 0, ran into a factor variance near 0 with large loadings of
    the wrong sign, where the information is nearly singular and the steps shrink to 0) is
    restarted once from :func:`mean_start_values`; the stationary point, then the larger
    log-likelihood, is kept, and the fit counts as converged only if the gradient is ~0.
    Standard errors use the expected
    information after listwise deletion and the observed information (analytic,
    :func:`observed_information`) under FIML, as lavaan does by default.
    """
    models = model if isinstance(model, tuple) else (model,)
    groups = data if isinstance(data, tuple) else (data,)
    n_obs = sum(d.n_obs for d in groups)
    theta = start = group_start_values(models, groups)
    value = _total_m2ll(models, groups, theta)
    notes = []
    if not np.isfinite(value):
        notes.append("the starting values imply a covariance matrix that is not positive "
                      "definite; the fit was not attempted")
        max_iter = 0
    theta, value, converged, iterations = _scoring(models, groups, theta, value, max_iter, tol)
    stationary = _stationary(models, groups, theta)
    if max_iter and not stationary:
        # Stopped short of a stationary point (tiny steps where the information is nearly
        # singular, no step improving, or -2 logL lost to rounding near a singular Sigma):
        # once more from starting values that match the observed means. A stationary point
        # is preferred, then the smaller -2 logL.
        restart = group_mean_start_values(models, groups, start)
        value2 = _total_m2ll(models, groups, restart)
        if not np.array_equal(restart, start) and np.isfinite(value2):
            theta2, value2, converged2, iterations2 = _scoring(models, groups, restart, value2,
                                                               max_iter, tol)
            stationary2 = _stationary(models, groups, theta2)
            iterations += iterations2
            if (stationary2, -value2) > (stationary, -value):
                theta, value, converged, stationary = theta2, value2, converged2, stationary2
        converged = converged and stationary
    if not converged and max_iter:
        notes.append(f"Fisher scoring did not converge ({iterations} steps)")
    if estimator not in ("ML", "MLR"):
        raise ValueError(f"estimator must be 'ML' or 'MLR', not {estimator!r}")
    information = ("observed" if groups[0].missing == "fiml" or estimator == "MLR"
                   else "expected")
    info = (_total_gradient_information(models, groups, theta)[1]
            if information == "expected" else observed_information(models, groups, theta))
    # MLR: these are the ML (observed-information) SEs; the caller replaces them by the
    # sandwich (alliance_analysis.sem.robust.with_sandwich), which needs this module.
    robust = None
    vcov, singular = invert_information(info)
    if singular:
        notes.append("the information matrix is singular: the model may not be identified; "
                     "standard errors are not available")
    for g, m in enumerate(models):
        prefix = f"group {g + 1}: " if len(models) > 1 else ""
        notes += [prefix + n for n in improper_notes(m, theta)]
    return Estimates(theta=theta, vcov=vcov, loglik=-0.5 * value, converged=converged,
                     iterations=iterations, information=information, warnings=tuple(notes),
                     estimator=estimator, robust=robust)


def _scoring(models: tuple[Structure, ...], groups: tuple[Moments, ...], theta: np.ndarray,
             value: float, max_iter: int, tol: float) -> tuple[np.ndarray, float, bool, int]:
    """Fisher scoring with step halving from ``theta`` (-2 logL ``value``): the estimates,
    their -2 logL, whether the step (or, when no step improves, the gradient) met its
    tolerance, and the number of steps."""
    n_obs = sum(d.n_obs for d in groups)
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):
        grad, info = _total_gradient_information(models, groups, theta)
        step = np.linalg.lstsq(info, -0.5 * grad, rcond=None)[0]
        trial = np.inf
        for _ in range(60):
            trial = _total_m2ll(models, groups, theta + step)
            if trial <= value + 1e-12 * abs(value):
                break
            step = step / 2
        if trial > value + 1e-12 * abs(value):  # no step improves: stationary or stuck
            converged = bool(np.max(np.abs(grad)) <= 1e-6 * n_obs)
            break
        theta, value = theta + step, trial
        if np.max(np.abs(step) / np.maximum(1.0, np.abs(theta))) < tol:
            converged = True
            break
    return theta, value, converged, iterations


def _stationary(models: tuple[Structure, ...], groups: tuple[Moments, ...],
                theta: np.ndarray) -> bool:
    """Whether the gradient of -2 logL is ~0 (every entry at most ``1e-6 * n``).

    A tiny scoring step alone does not show it: where the information is nearly singular
    (a factor variance near 0 with large loadings), the least-squares solve drops the
    directions in which the likelihood still rises and the steps shrink to 0 short of a
    stationary point.
    """
    grad = _total_gradient_information(models, groups, theta, information=False)[0]
    return bool(np.max(np.abs(grad), initial=0.0) <= 1e-6 * sum(d.n_obs for d in groups))


def mean_start_values(model: Structure, data: Moments, theta: np.ndarray) -> np.ndarray:
    """``theta`` with free latent means and free intercepts matched to the observed means.

    The free means of the inner variables are the least-squares solution that makes the
    implied means of the observed variables with fixed intercepts (the markers of
    ``semTools::measEq.syntax``, growth indicators) equal their observed means; each free
    intercept is then its variable's mean minus the part implied by the inner means
    (averaged over the variables sharing it). The other entries are kept. Without free
    inner means ``theta`` is returned unchanged.
    """
    if not model.meanstructure or not model.patterns["gamma1"].any():
        return theta
    total = np.zeros(len(model.observed))
    count = np.zeros(len(model.observed))
    for idx, n, xbar, _ in data.patterns:
        total[idx] += n * xbar
        count[idx] += n
    means = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    theta = theta.copy()
    alpha = np.flatnonzero(model.patterns["gamma1"].any(axis=1))
    nu = np.flatnonzero(model.patterns["gamma2"].any(axis=1))
    theta[alpha], theta[nu] = 0.0, 0.0
    mats = model.matrices(theta)
    m = mats["lambda"] @ np.linalg.inv(np.eye(len(model.inner)) - mats["beta"])
    rows = ~model.patterns["gamma2"].any(axis=0) & (count > 0)
    design = m[rows] @ model.patterns["gamma1"][alpha].T
    target = means[rows] - (m @ mats["gamma1"] + mats["gamma2"])[rows]
    theta[alpha] = np.linalg.lstsq(design, target, rcond=None)[0]
    mats = model.matrices(theta)
    rest = means - m @ mats["gamma1"] - model.fixed["gamma2"]
    for k in nu:
        theta[k] = float(np.mean(rest[model.patterns["gamma2"][k] != 0]))
    return theta


def group_mean_start_values(models: tuple[Structure, ...], data: tuple[Moments, ...],
                            theta: np.ndarray) -> np.ndarray:
    """:func:`mean_start_values` per group, a parameter shared by groups at the mean of its
    groups' values (as :func:`group_start_values`)."""
    if len(models) == 1:
        return mean_start_values(models[0], data[0], theta)
    return _group_average(models, [mean_start_values(m, d, theta)
                                   for m, d in zip(models, data)], theta)


def observed_information(model: Structure | tuple[Structure, ...],
                         data: Moments | tuple[Moments, ...], theta: np.ndarray) -> np.ndarray:
    """Observed information of logL (minus its Hessian), analytic, summed over groups.

    Half the Hessian of -2 logL of :func:`alliance_analysis.sem.fiml.hessian`: the second
    derivatives of the case-wise likelihood with respect to the implied moments, through
    their first derivatives (:func:`derivatives`), plus the curvature of the moments
    themselves (:func:`alliance_analysis.sem.fiml.model_curvature`). lavaan's
    ``information = "observed"`` (its default under ``missing = "fiml"``) differentiates
    its analytic gradient numerically (Richardson's four-point differences); the two agree
    to the accuracy of the differences (checked in ``tests/test_sem_fiml.py``).
    """
    models = model if isinstance(model, tuple) else (model,)
    groups = data if isinstance(data, tuple) else (data,)
    total = np.zeros((len(theta), len(theta)))
    for model_g, data_g in zip(models, groups):
        sigma, mean = implied(model_g, theta)
        curvature = functools.partial(fiml.model_curvature, model_g.matrices(theta),
                                      model_g.patterns, meanstructure=model_g.meanstructure)
        total += fiml.hessian(data_g.stacked, sigma, mean, *derivatives(model_g, theta),
                              curvature=curvature)
    return 0.5 * total


def invert_information(info: np.ndarray) -> tuple[np.ndarray, bool]:
    """Inverse of an information matrix and whether it is singular (then all NaN).

    The check is scale-invariant: the eigenvalues are those of the correlation-scaled
    matrix ``D^-1/2 I D^-1/2`` (``D`` its diagonal), so a parameter measured in large or
    small units (items with SDs from 0.1 to 100) does not make an identified model look
    singular; singular means the smallest eigenvalue is at most 1e-10 times the largest,
    or a diagonal element is not positive.
    """
    diag = np.diag(info)
    if info.size == 0:
        return np.zeros(info.shape), False
    if not np.all(np.isfinite(info)) or np.any(diag <= 0):
        return np.full(info.shape, np.nan), True
    scale = 1.0 / np.sqrt(diag)
    scaled = info * np.outer(scale, scale)
    eigen = np.linalg.eigvalsh((scaled + scaled.T) / 2)
    if eigen.min() <= 1e-10 * max(eigen.max(), 1e-300):
        return np.full(info.shape, np.nan), True
    return np.linalg.inv(scaled) * np.outer(scale, scale), False


def improper_notes(model: Structure, theta: np.ndarray) -> list[str]:
    """Warnings for negative variances (Heywood cases) among the estimates."""
    mats = model.matrices(theta)
    notes = []
    for key, names in (("psi", model.inner), ("theta", model.observed)):
        for i in np.flatnonzero(np.diag(mats[key]) < 0):
            notes.append(f"the variance of {names[i]} is negative ({mats[key][i, i]:.4g}): "
                         "an improper solution; check the model and the data")
    return notes
