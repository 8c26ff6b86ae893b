"""The profiled (RE)ML deviance of a nested linear mixed model, from sufficient statistics.

This module is the numerical core of :mod:`alliance_analysis.multilevel.engine.nested`:

* :func:`profiled_deviance` and :func:`deviance`: lme4's deviance functions, from the blocked
  factorisation of :func:`~alliance_analysis.multilevel.engine.blocks.eliminate`;
* :func:`value_and_gradient`, :class:`ComplexStep` and :func:`gradients`: exact gradients by
  the complex step;
* :func:`fixed_effects`: the fixed effects and their covariance at the optimum.

The model's layout (:class:`Structure`) and the data's sufficient statistics
(:class:`NestedStats`, :func:`sufficient_statistics`) live in
:mod:`~alliance_analysis.multilevel.engine.layout`, the batched small-matrix algebra in
:mod:`~alliance_analysis.multilevel.engine.small`.

Notes
-----
The model is ``y = X beta + Z b + e``, ``b ~ N(0, sigma^2 Lambda Lambda')``,
``e ~ N(0, sigma^2 I)``, with ``Lambda = blockdiag(I_clients (x) Lambda_c,
I_therapists (x) Lambda_t)`` and ``Lambda_c`` (``q_c x q_c``), ``Lambda_t`` (``q_t x q_t``)
lower triangular (diagonal for uncorrelated random effects) with the elements ``theta``
(Bates et al. 2015, section 3.1). Write ``W = [Z_c, Z_t, X, y]`` and ``T = blockdiag(Lambda_c,
Lambda_t, I_p, 1)``; the penalised least squares system is the Cholesky factorisation of
``T' W'W T + blockdiag(I, I, 0, 0)``. Because clients are nested in therapists, ``Z_c'Z_c``
is block diagonal by client and ``Z_t'Z_t`` by therapist, and the factorisation is done in
three block steps:

1. for every client ``i``: ``L_i L_i' = Lambda_c' Z_i'Z_i Lambda_c + I`` and
   ``B_i = L_i^{-1} Lambda_c' Z_i'[Z_t Lambda_t, X, y]_i``, the random-effects factor and
   its cross term (Pinheiro & Bates 2000, section 2.2);
2. for every therapist ``j`` (three levels only), on the Schur complement
   ``S_j = sum over its rows of T'W'WT (therapist, X, y part) - sum over its clients of
   B_i'B_i``: ``L_j L_j' = S_j[t, t] + I`` and ``B_j = L_j^{-1} S_j[t, (X, y)]``;
3. ``F = sum_j (S_j[(X, y), (X, y)] - B_j'B_j)`` and its Cholesky factor
   ``[[R_X', 0], [r_Xy', r]]``: ``R_X`` is lme4's fixed-effects factor and ``r^2`` the
   penalised residual sum of squares at the conditional optimum.

With ``log|L|^2 = 2 sum log diag`` of the client and therapist factors, the profiled
deviances (Bates et al. 2015, eqs. 34 and 41) are::

    ML:    log|L|^2 + n (1 + log(2 pi r^2 / n))
    REML:  log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r^2 / (n - p)))

How the block steps are evaluated for a batch of ``theta`` (each client's step reduced to a
``q_c x q_c`` weight matrix, the sums over clients done as one matrix product with
cross-products computed once per fit) is in the notes of
:mod:`~alliance_analysis.multilevel.engine.blocks`. The cost of one evaluation is linear in
the number of clients and independent of the number of rows, which enter only through the
sufficient statistics (linear in rows, computed once).

Gradients are taken by the complex step, ``f'(x) = Im f(x + i h) / h`` (Squire & Trapp 1998):
every operation of the deviance (matrix products, the explicit small Cholesky factorisation
below, ``sqrt``, ``log``) is analytic and never conjugates, so the derivative is exact to
rounding error, which lets the optimizer converge as tightly as the deviance is computed.
All directions are evaluated in one batched call, and so are all the points of a Hessian by
central differences of the gradient (:func:`gradients`).

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
.. [2] Pinheiro, J. C., & Bates, D. M. (2000). Mixed-effects models in S and S-PLUS.
   Springer. (Chapter 2: the profiled likelihood from decompositions of small matrices.)
.. [3] Squire, W., & Trapp, G. (1998). Using complex variables to estimate derivatives of
   real functions. SIAM Review, 40(1), 110-112.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from alliance_analysis.multilevel.engine.blocks import eliminate
from alliance_analysis.multilevel.engine.layout import NestedStats, Structure, sufficient_statistics
from alliance_analysis.multilevel.engine.small import cholesky, log

__all__ = ["COMPLEX_STEP", "ComplexStep", "NestedStats", "Structure", "deviance", "eliminate",
           "fixed_effects", "gradients", "profiled_deviance", "sufficient_statistics",
           "value_and_gradient"]

#: Step of the complex-step derivative (any tiny value works: there is no cancellation).
COMPLEX_STEP = 1e-20


def _criterion_parts(f: np.ndarray, n_fixed: int) -> tuple[np.ndarray, np.ndarray]:
    """``log|R_X|^2 = log det F_xx`` and ``r^2 = F_yy - F_yx F_xx^{-1} F_xy`` of each ``F``
    (``(p+1, p+1, k)``), real or at complex-step points.

    The real parts through LAPACK's Cholesky factorisation of the batch (lme4's ``R_X`` and
    ``r``); at complex-step points, the imaginary parts from the first-order formulas, exact
    there (the next term is ``h^2`` smaller): ``d log det A = tr(A^{-1} dA)`` and ``d r^2 =
    dF_yy - 2 beta' dF_xy + beta' dF_xx beta`` with ``beta = F_xx^{-1} F_xy``. Why not the
    element-by-element factorisation of :mod:`~alliance_analysis.multilevel.engine.small`
    (which the complex step passes through as well): for ``p`` fixed effects it is ``p^3 / 6``
    numpy operations on arrays of a few numbers each, a large part of an evaluation's time.
    Where ``F`` is not positive definite, that factorisation gives NaN, as before.
    """
    p = n_fixed
    real = np.ascontiguousarray(np.moveaxis(f.real, -1, 0))
    try:
        low = np.linalg.cholesky(real)
    except np.linalg.LinAlgError:
        chol = cholesky(f)
        return 2 * sum(log(chol[i, i]) for i in range(p)), chol[p, p] ** 2
    diagonal = np.diagonal(low, axis1=1, axis2=2)
    logdet_x = 2 * np.sum(np.log(diagonal[:, :p]), axis=1)
    r2 = diagonal[:, p] ** 2
    if not np.iscomplexobj(f):
        return logdet_x, r2
    step = np.moveaxis(f.imag, -1, 0)
    solved = np.linalg.solve(real[:, :p, :p],
                             np.concatenate([step[:, :p, :p], real[:, :p, p:]], axis=2))
    beta = solved[:, :, p]
    d_logdet = np.trace(solved[:, :, :p], axis1=1, axis2=2)
    d_r2 = (step[:, p, p] - 2 * np.einsum("ki,ki->k", beta, step[:, :p, p])
            + np.einsum("ki,kij,kj->k", beta, step[:, :p, :p], beta))
    return logdet_x + 1j * d_logdet, r2 + 1j * d_r2


def profiled_deviance(theta: np.ndarray, stats: NestedStats, structure: Structure,
                      reml: bool) -> np.ndarray:
    """lme4's profiled deviance (ML) or REML criterion for a batch of ``theta``.

    The fixed effects and the residual variance are profiled out (module notes).
    """
    logdet, f = eliminate(theta, stats, structure)
    logdet_x, r2 = _criterion_parts(f, structure.n_fixed)
    n = stats.n_obs - (structure.n_fixed if reml else 0)
    value = logdet + n * (1 + log(2 * np.pi * r2 / n))
    return value + logdet_x if reml else value


def deviance(theta: np.ndarray, sigma2: np.ndarray, stats: NestedStats, structure: Structure,
             reml: bool) -> np.ndarray:
    """-2 (RE)ML log-likelihood at ``theta`` and residual variance ``sigma2`` (batched).

    Only the fixed effects are profiled out: ``log|L|^2 (+ log|R_X|^2) + r^2 / sigma^2 +
    n' log(2 pi sigma^2)`` with ``n' = n`` (ML) or ``n - p`` (REML); minimised over
    ``sigma2`` it is :func:`profiled_deviance`.
    """
    logdet, f = eliminate(theta, stats, structure)
    logdet_x, r2 = _criterion_parts(f, structure.n_fixed)
    n = stats.n_obs - (structure.n_fixed if reml else 0)
    value = logdet + r2 / sigma2 + n * log(2 * np.pi * sigma2)
    return value + logdet_x if reml else value


def value_and_gradient(fun: Callable[[np.ndarray], np.ndarray],
                       x: np.ndarray) -> tuple[float, np.ndarray]:
    """``fun(x)`` and its exact gradient by the complex step, in one batched call.

    ``fun`` maps a batch ``(k, m)`` of complex points to ``(k,)`` values and must be analytic
    (no ``abs``, ``conj`` or comparisons on its argument).
    """
    batch = x[None, :] + 1j * COMPLEX_STEP * np.eye(x.size)
    values = fun(batch)
    return float(values[0].real), values.imag / COMPLEX_STEP


@dataclass(frozen=True)
class ComplexStep:
    """An analytic batch function's value and exact gradient at a point (called as
    :func:`value_and_gradient`), and its gradients at a batch of points (:func:`gradients`).

    The optimizer's Hessians (:func:`alliance_analysis.multilevel.engine.optimize.hessian`)
    use the batched gradients: one call of ``fun`` per Hessian.
    """

    fun: Callable[[np.ndarray], np.ndarray]

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        return value_and_gradient(self.fun, x)

    def gradients(self, points: np.ndarray) -> np.ndarray:
        return gradients(self.fun, points)


def gradients(fun: Callable[[np.ndarray], np.ndarray], points: np.ndarray) -> np.ndarray:
    """Exact gradients of ``fun`` at each row of ``points`` (``(k, m)``), in one batched call.

    :func:`value_and_gradient` for several points at once: ``k * m`` complex-step directions
    evaluated together (the Hessian's ``2 m`` points cost one call instead of ``2 m``).
    """
    k, m = points.shape
    batch = (points[:, None, :] + 1j * COMPLEX_STEP * np.eye(m)[None]).reshape(k * m, m)
    return (fun(batch).imag / COMPLEX_STEP).reshape(k, m)


def fixed_effects(chol_f: np.ndarray, n_fixed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``beta``, ``(R_X'R_X)^{-1}`` and ``r^2`` from one real Cholesky factor of ``F`` (2-D).

    With ``F = L L'`` and ``L = [[L_X, 0], [l', r]]``: ``L_X' beta = l`` and
    ``Cov(beta) = sigma^2 (L_X L_X')^{-1}`` (Bates et al. 2015, eq. 33 and section 5.2).
    """
    low_x, cross = chol_f[:n_fixed, :n_fixed], chol_f[n_fixed, :n_fixed]
    beta = np.linalg.solve(low_x.T, cross)
    inverse = np.linalg.inv(low_x)
    return beta, inverse.T @ inverse, float(chol_f[n_fixed, n_fixed] ** 2)
