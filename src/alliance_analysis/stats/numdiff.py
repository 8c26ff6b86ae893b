"""The numerical Hessian, one definition for every model family.

Standard errors and intervals that come from the curvature of a likelihood all take their
Hessian here: the delta-method ICC intervals and the therapist-variance interval of the
statsmodels mixed models (second differences of a log-likelihood), and, where an analytic
gradient is at hand, the nested engine's Newton polish and lme4's scaled-gradient check of
the statsmodels fits (central differences of the gradient). The SEM's FIML observed
information is analytic (:mod:`alliance_analysis.sem.fiml`). Both ways are statsmodels' (:mod:`statsmodels.tools.numdiff`: ``approx_hess3``
and the centred ``approx_fprime``); the step sizes are the callers' (each tuned to its
likelihood and checked against lme4 and lavaan in the tests).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from statsmodels.tools.numdiff import approx_fprime, approx_hess3


def relative_steps(x: np.ndarray, relative: float, floor: float) -> np.ndarray:
    """Steps ``relative * max(|x_j|, floor)``: relative to each parameter, but never smaller
    than ``relative * floor`` near zero."""
    return relative * np.maximum(np.abs(np.asarray(x, dtype=float)), floor)


def hessian(function: Callable[[np.ndarray], float | np.ndarray], x: np.ndarray,
            step: float | np.ndarray, gradient: bool = False) -> np.ndarray:
    """Numerical Hessian of a scalar function at ``x``.

    Parameters
    ----------
    function
        The scalar function; with ``gradient``, its (exact) gradient instead.
    x
        The point.
    step
        The step of each coordinate (a scalar for all, or one per coordinate).
    gradient
        False: second differences of the function values,
        ``[f(x + h_i + h_j) - f(x + h_i - h_j) - f(x - h_i + h_j) + f(x - h_i - h_j)] /
        (4 h_i h_j)`` (statsmodels ``approx_hess3``). True: central differences of the
        gradient, ``[g(x + h_j) - g(x - h_j)] / (2 h_j)`` column by column (statsmodels
        ``approx_fprime``, centred), symmetrised as ``(H + H') / 2``: one order of
        differencing fewer, so much less cancellation.

    Returns
    -------
    numpy.ndarray
        The symmetric ``n x n`` matrix.
    """
    x = np.asarray(x, dtype=float)
    steps = np.broadcast_to(np.asarray(step, dtype=float), x.shape).copy()
    if not gradient:
        return approx_hess3(x, function, epsilon=steps)
    # approx_fprime's centred differences step by half its epsilon
    jacobian = np.atleast_2d(approx_fprime(x, function, epsilon=2 * steps, centered=True))
    return (jacobian + jacobian.T) / 2
