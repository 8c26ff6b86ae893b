"""Minimising a smooth deviance over bounded parameters, and checking the optimum.

Used by :mod:`alliance_analysis.multilevel.engine.nested` on the profiled deviance of
:mod:`alliance_analysis.multilevel.engine.deviance`, whose exact gradient comes from reverse mode
(:mod:`alliance_analysis.multilevel.engine.gradient`) or the complex step.

Strategy (:func:`minimise`):

1. TNC, scipy's bounded truncated-Newton method (Nash 1984), with the exact gradient, from
   the given start, stopping at a projected gradient of 1e-6 times the deviance's scale;
2. Newton polishing: at that point, Newton steps on the parameters not held at a bound, with
   the Hessian from central differences of the exact gradient and a backtracking line
   search, until the steps are below 1e-10 (relative); once the decrease a step predicts is
   below the deviance's rounding (1e-14 of its value), a step is kept when it lowers the exact
   gradient instead;
3. a boundary check: the deviance is an even function of the last diagonal element of a
   factor (and of every element of a diagonal factor), so its gradient there is exactly 0 at
   the bound 0, and an optimizer that overshoots onto the bound stops there even when the
   deviance decreases into the interior; a parameter held at its bound with negative
   curvature is moved to the best point of a grid of positive values, and steps 1-2 are
   repeated from there;
4. the convergence check of lme4's ``checkConv``: the largest of ``min(|g|, |chol(H)^{-1} g|)``
   over the free parameters must be below 0.002 (``check.conv.grad``);
5. when the check fails, a derivative-free Powell search (with bounds) from the same start,
   treated the same way; the attempt with the lower deviance among those passing the check
   (else among all) is kept, and the fit is only called converged when it passes.

Why TNC rather than L-BFGS-B: both reach the same optimum, but scipy's L-BFGS-B calls the
threaded OpenBLAS for its small dense algebra at every iteration, and on a busy two-core
machine the BLAS threads' spinning made each iteration 5 to 10 times slower than the
deviance itself; TNC does no BLAS calls.

References
----------
.. [1] Nash, S. G. (1984). Newton-type minimization via the Lanczos method. SIAM Journal on
   Numerical Analysis, 21(4), 770-788.
.. [2] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48 (section 3.6, and
   lme4's ``checkConv`` for the gradient test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from scipy.optimize import minimize

from alliance_analysis.stats import numdiff

#: lme4's ``check.conv.grad`` tolerance on the scaled gradient of the deviance.
GRADIENT_TOL = 2e-3
#: Relative step of the central differences of the gradient that give the Hessian.
HESSIAN_STEP = 1e-5
#: Newton polishing stops when no parameter moves more than this (relative to max(1, |x|)).
POLISH_STEP_TOL = 1e-10
POLISH_MAX_STEPS = 20
#: A parameter this close to its bound (relative to its start) counts as held there.
BOUND_TOL = 1e-6
#: Relative rounding level of the deviance: below it, polishing steps are judged by the gradient.
ROUNDING = 1e-14

ValueGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]
Values = Callable[[np.ndarray], np.ndarray]
#: Gradients at a batch of points ``(k, m)`` -> ``(k, m)``.
Gradients = Callable[[np.ndarray], np.ndarray]


@runtime_checkable
class BatchedValueGrad(Protocol):
    """A ``value_grad`` that also gives the gradients at a batch of points in one call
    (:class:`alliance_analysis.multilevel.engine.deviance.ComplexStep`); the Hessians of
    :func:`hessian` then take one call instead of ``2 m``."""

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]: ...

    def gradients(self, points: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Attempt:
    """One optimizer run, after polishing.

    Attributes
    ----------
    method
        ``"TNC"`` or ``"Powell"``, with ``"(restarted off the boundary xN)"`` after boundary
        escapes and ``"+Newton"`` when polishing moved the point.
    x, value, gradient
        The point, the deviance there and its gradient.
    hessian
        Hessian of the deviance at ``x`` (central differences of the exact gradient).
    free
        Which parameters are not held at a bound.
    max_gradient, max_scaled_gradient
        Largest ``|g|`` and largest ``min(|g|, |chol(H)^{-1} g|)`` over the free parameters.
    evaluations
        Number of deviance evaluations of the optimizer runs (TNC: each with its gradient).
    message
        The optimizer's own message.
    """

    method: str
    x: np.ndarray
    value: float
    gradient: np.ndarray
    hessian: np.ndarray
    free: np.ndarray
    max_gradient: float
    max_scaled_gradient: float
    evaluations: int
    message: str

    @property
    def ok(self) -> bool:
        """Passes lme4's gradient check."""
        return bool(np.isfinite(self.value) and self.max_scaled_gradient < GRADIENT_TOL)


def minimise(value_grad: ValueGrad, values: Values, start: np.ndarray, lower: np.ndarray,
             max_iter: int, canonical: Callable[[np.ndarray], np.ndarray] | None = None
             ) -> tuple[Attempt, list[Attempt]]:
    """Minimise a smooth function over ``x >= lower``; see the module notes.

    Parameters
    ----------
    value_grad
        Returns the value and exact gradient at a point (a :class:`BatchedValueGrad`
        computes each Hessian in one batched call).
    values
        Returns the values at a batch of points (rows), for the boundary escape.
    start
        Starting point.
    lower
        Lower bounds (``-inf`` for none); there are no upper bounds.
    max_iter
        Largest number of iterations of each optimizer run.
    canonical
        For a function defined (and smooth) beyond the bounds that takes the same value at
        a point and at ``canonical(point)``, which satisfies them (the deviance and a sign
        flip of a column of a covariance factor): TNC's first run is then unbounded and its
        end point mapped back; TNC then never stops on a bound it overshot onto, which
        otherwise costs a boundary escape and a second run.

    Returns
    -------
    (kept, attempts)
        The attempt kept and every attempt made, in order.
    """
    attempts = [_run(value_grad, values, "TNC", start, lower, max_iter, canonical)]
    if not attempts[0].ok:
        attempts.append(_run(value_grad, values, "Powell", start, lower, max_iter))
    passed = [a for a in attempts if a.ok]
    kept = min(passed or attempts, key=lambda a: a.value)
    return kept, attempts


def _run(value_grad: ValueGrad, values: Values, method: str, start: np.ndarray,
         lower: np.ndarray, max_iter: int,
         canonical: Callable[[np.ndarray], np.ndarray] | None = None) -> Attempt:
    """One optimizer from ``start``, polished, restarted off any false boundary optimum
    (the first run unbounded when ``canonical`` is given; see :func:`minimise`)."""
    bounds = [(None if np.isinf(b) else b, None) for b in lower]
    scale = max(1.0, abs(float(values(start[None])[0])))
    x, evaluations, label = start, 0, method
    for restart in range(start.size + 1):
        if method == "TNC":
            unbounded = canonical is not None and restart == 0
            result = minimize(value_grad, x, jac=True, method=method,
                              bounds=None if unbounded else bounds,
                              options={"maxfun": max_iter, "ftol": 0.0, "xtol": 1e-8,
                                       "gtol": 1e-6 * scale})
            if unbounded:
                result.x = canonical(result.x)
        else:
            result = minimize(lambda point: value_grad(point)[0], x, method=method,
                              bounds=bounds, options={"maxiter": max_iter * 10,
                                                      "xtol": 1e-10, "ftol": 1e-15})
        evaluations += int(result.nfev)
        attempt = _polish(value_grad, label, result.x, lower, evaluations, str(result.message))
        x = _escape(values, attempt, lower, start)
        if x is None:
            return attempt
        label = f"{method} (restarted off the boundary x{restart + 1})"
    return attempt


def _escape(values: Values, attempt: Attempt, lower: np.ndarray,
            start: np.ndarray) -> np.ndarray | None:
    """A new start when a parameter is held at its bound with negative curvature, else None.

    Held: not free, or within ``BOUND_TOL`` (relative to its start) of the bound, where an
    unbounded run (``canonical`` of :func:`minimise`) can stop on the stationary point of
    an even function. Each such parameter is set to the best of 40 values from 1e-3 to 100
    times its start (module notes, step 3).
    """
    near = attempt.x - lower <= BOUND_TOL * np.maximum(np.abs(start), 1e-2)
    held = (~attempt.free | near) & (np.diag(attempt.hessian) < 0)
    if not held.any():
        return None
    x = attempt.x.copy()
    for j in np.flatnonzero(held):
        batch = np.repeat(x[None], 40, axis=0)
        batch[:, j] = lower[j] + max(abs(start[j]), 1e-2) * np.geomspace(1e-3, 100, 40)
        x = batch[int(np.argmin(values(batch)))]
    return x


def hessian(value_grad: ValueGrad, x: np.ndarray,
            scales: np.ndarray | None = None) -> np.ndarray:
    """Symmetrised central differences of the exact gradient
    (:func:`alliance_analysis.stats.numdiff.hessian`).

    The step of parameter ``j`` is ``1e-5 * scales[j]`` (default ``max(|x_j|, 0.01)``).
    For a :class:`BatchedValueGrad`, the ``2 m`` gradients are computed in one batched call
    (:func:`central_hessian`); the formula is the same.
    """
    steps = (numdiff.relative_steps(x, HESSIAN_STEP, 1e-2) if scales is None
             else HESSIAN_STEP * np.asarray(scales, dtype=float))
    if isinstance(value_grad, BatchedValueGrad):
        return central_hessian(value_grad.gradients, x, steps)
    return numdiff.hessian(lambda v: value_grad(v)[1], x, steps, gradient=True)


def central_hessian(gradients: Gradients, x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``(J + J') / 2`` with ``J[:, j] = [g(x + h_j e_j) - g(x - h_j e_j)] / (2 h_j)``.

    :func:`alliance_analysis.stats.numdiff.hessian` with ``gradient=True`` (statsmodels'
    centred ``approx_fprime``), its ``2 m`` gradients taken from one call of ``gradients``
    on the batch of points.
    """
    x = np.asarray(x, dtype=float)
    shifts = np.diag(np.asarray(steps, dtype=float))
    g = gradients(np.concatenate([x + shifts, x - shifts]))
    jacobian = ((g[:x.size] - g[x.size:]) / (2 * np.diag(shifts))[:, None]).T
    return (jacobian + jacobian.T) / 2


def _polish(value_grad: ValueGrad, method: str, x: np.ndarray, lower: np.ndarray,
            evaluations: int, message: str) -> Attempt:
    """Newton steps on the free parameters from ``x``; the checked result.

    The Hessian is computed once, at ``x`` (the optimizer's end point, close to the optimum),
    and reused by every step; it is recomputed for the check only if the steps moved the
    point by more than 1e-4 (relative).
    """
    x = np.maximum(x, lower)
    value, gradient = value_grad(x)
    hess, origin = hessian(value_grad, x), x
    moved = False
    rounding = ROUNDING * max(1.0, abs(value))
    for _ in range(POLISH_MAX_STEPS):
        free = _free(x, gradient, lower)
        step = _newton_step(hess, gradient, free)
        if step is None or np.max(np.abs(step) / np.maximum(1.0, np.abs(x))) < POLISH_STEP_TOL:
            break
        trial = _line_search(value_grad, x, step, lower, value, gradient[free], free, rounding)
        if trial is None:
            break
        moved = True
        x, value, gradient = trial
    if np.max(np.abs(x - origin) / np.maximum(1.0, np.abs(x))) > 1e-4:
        hess = hessian(value_grad, x)
    return _checked(method + ("+Newton" if moved else ""), x, value, gradient, hess, lower,
                    evaluations, message)


def _free(x: np.ndarray, gradient: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Parameters not held at their lower bound (at the bound with an outward gradient)."""
    return ~((x <= lower) & (gradient >= 0))


def _newton_step(hess: np.ndarray, gradient: np.ndarray, free: np.ndarray) -> np.ndarray | None:
    """``-H^{-1} g`` on the free parameters (zero elsewhere); None if ``H`` is not PD there."""
    step = np.zeros_like(gradient)
    if not free.any():
        return None
    try:
        low = np.linalg.cholesky(hess[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return None
    step[free] = -np.linalg.solve(low.T, np.linalg.solve(low, gradient[free]))
    return step


def _line_search(value_grad: ValueGrad, x: np.ndarray, step: np.ndarray, lower: np.ndarray,
                 value: float, gradient: np.ndarray, free: np.ndarray, rounding: float
                 ) -> tuple[np.ndarray, float, np.ndarray] | None:
    """First of ``x + step / 2^m`` (projected on the bounds) that makes progress.

    Progress is a value not above ``value``, or, within the deviance's rounding (``rounding``,
    where the values no longer tell two points apart), a smaller gradient on the ``free``
    parameters: the gradient is exact, so it keeps guiding the last Newton steps after the
    decrease they predict is below the rounding of the values.
    """
    size = np.linalg.norm(gradient)
    for halving in range(12):
        trial = np.maximum(x + step / 2**halving, lower)
        trial_value, trial_gradient = value_grad(trial)
        if trial_value <= value or (trial_value <= value + rounding
                                    and np.linalg.norm(trial_gradient[free]) < size):
            return trial, trial_value, trial_gradient
    return None


def _checked(method: str, x: np.ndarray, value: float, gradient: np.ndarray,
             hess: np.ndarray, lower: np.ndarray, evaluations: int, message: str) -> Attempt:
    """The attempt with lme4's scaled-gradient check."""
    free = _free(x, gradient, lower)
    g = gradient[free]
    max_gradient = float(np.max(np.abs(g), initial=0.0))
    try:
        scaled = np.linalg.solve(np.linalg.cholesky(hess[np.ix_(free, free)]), g)
        max_scaled = float(np.max(np.minimum(np.abs(scaled), np.abs(g)), initial=0.0))
    except np.linalg.LinAlgError:
        max_scaled = max_gradient
    return Attempt(method, x, value, gradient, hess, free, max_gradient, max_scaled,
                   evaluations, message)
