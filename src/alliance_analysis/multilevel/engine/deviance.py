"""The profiled (RE)ML deviance of a nested linear mixed model, from sufficient statistics.

This module is the numerical core of :mod:`alliance_analysis.multilevel.engine.nested`. It holds

* :class:`Structure`: where the covariance parameters ``theta`` sit in the relative covariance
  factors of the client and therapist random effects (lme4's layout);
* :class:`NestedStats` and :func:`sufficient_statistics`: the cross-products of the data
  needed by the deviance, computed once per fit in one pass over the rows;
* :func:`eliminate`: the blocked Cholesky factorisation of the penalised least squares
  system, vectorised over all clients at once (and over therapists for three levels), and
  over a batch of parameter vectors;
* :func:`profiled_deviance` and :func:`deviance`: lme4's deviance functions;
* :func:`value_and_gradient`: exact gradients by the complex step.

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

Because ``Lambda_t`` is the same for all clients, step 1 is done on ``Z_t`` itself and
``Lambda_t`` is applied to each therapist's sum ``S_j`` afterwards; so the client step of a
batch of ``theta`` that differ only in their therapist part is done once. Arrays are laid out
matrix axes first and groups last (``(q, q, k, clients)``), with the small matrix algebra
written out element by element, so that every numpy operation runs over long contiguous
vectors of clients; nothing calls BLAS (whose threads, on a busy two-core machine, cost more
than these small products). The cost of one evaluation is linear in the number of clients
and independent of the number of rows, which enter only through the sufficient statistics
(linear in rows, computed once).

Gradients are taken by the complex step, ``f'(x) = Im f(x + i h) / h`` (Squire & Trapp 1998):
every operation of the deviance (matrix products, the explicit small Cholesky factorisation
below, ``sqrt``, ``log``) is analytic and never conjugates, so the derivative is exact to
rounding error, which lets the optimizer converge as tightly as the deviance is computed.
All directions are evaluated in one batched call, and so are all the points of a Hessian by
central differences of the gradient (:func:`gradients`).

Memory and speed: one evaluation holds a few arrays of ``q_c x (q_c + q_t + p + 1)`` complex
numbers per client and ``theta`` of the batch. :func:`eliminate` therefore works through the
clients in runs (two levels: any run of clients; three levels: runs of whole therapists) of at
most :data:`CHUNK_CELLS` client-by-``theta`` cells, and adds up their terms of ``log|L|^2`` and
``F``, which are sums over clients (therapists). The arrays stay at a few MB whatever the
number of clients, which is also faster than arrays of hundreds of MB (no fresh memory pages
to fault in at every operation); the results differ from one pass over all clients only by the
order of the additions (rounding, about 1e-15 relative).

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

#: Step of the complex-step derivative (any tiny value works: there is no cancellation).
COMPLEX_STEP = 1e-20
#: Largest number of client-by-theta cells :func:`eliminate` computes at once (module notes).
CHUNK_CELLS = 262144


@dataclass(frozen=True)
class Structure:
    """Dimensions of the model and the layout of ``theta``.

    Attributes
    ----------
    q_client, q_therapist
        Number of client and therapist random effects (``q_therapist = 0``: two levels).
    client_correlated, therapist_correlated
        Whether each block's random effects are correlated (lower-triangular factor) or
        independent (diagonal factor).
    n_fixed
        Number of fixed effects ``p``.
    """

    q_client: int
    q_therapist: int
    client_correlated: bool
    therapist_correlated: bool
    n_fixed: int

    def block_positions(self, level: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of ``theta``'s elements in one factor, lme4's column-major order."""
        q, correlated = ((self.q_client, self.client_correlated) if level == "client"
                         else (self.q_therapist, self.therapist_correlated))
        pairs = [(i, j) for j in range(q) for i in range(j, q) if correlated or i == j]
        rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
        return np.array(rows, dtype=int), np.array(cols, dtype=int)

    @property
    def n_client_theta(self) -> int:
        return self.block_positions("client")[0].size

    @property
    def n_theta(self) -> int:
        return self.n_client_theta + self.block_positions("therapist")[0].size

    def lower_bounds(self) -> np.ndarray:
        """0 for diagonal elements of the factors (standard deviations), -inf otherwise."""
        bounds = []
        for level in ("client", "therapist"):
            rows, cols = self.block_positions(level)
            bounds += [0.0 if i == j else -np.inf for i, j in zip(rows, cols, strict=True)]
        return np.array(bounds)

    def start(self, client_rms: np.ndarray, therapist_rms: np.ndarray) -> np.ndarray:
        """Diagonal factors ``1 / rms(z_j)``: lme4's identity start on unit-scaled columns.

        lme4 starts from ``Lambda = I``; when a random slope's covariate has a large range
        (session numbers up to 20 or more), that start makes the slope SD many times the
        residual SD. Dividing by the root mean square of each random-effect column starts
        every random effect at the residual SD's scale in that column's units.
        """
        parts = []
        for level, rms in (("client", client_rms), ("therapist", therapist_rms)):
            rows, cols = self.block_positions(level)
            parts.append(np.where(rows == cols, 1 / rms[rows], 0.0))
        return np.concatenate(parts)

    def factors(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Lambda_c`` and ``Lambda_t`` of ``theta`` (``(..., n_theta)``), as ``(q, q, ...)``."""
        split = self.n_client_theta
        return (_fill(theta[..., :split], *self.block_positions("client"), self.q_client),
                _fill(theta[..., split:], *self.block_positions("therapist"), self.q_therapist))

    def theta_of(self, client_cov: np.ndarray, therapist_cov: np.ndarray) -> np.ndarray:
        """``theta`` (``(..., n_theta)``) of relative covariance matrices ``(q, q, ...)``."""
        parts = []
        for level, cov in (("client", client_cov), ("therapist", therapist_cov)):
            rows, cols = self.block_positions(level)
            parts.append(np.moveaxis(cholesky(cov)[rows, cols], 0, -1) if rows.size
                         else np.zeros(cov.shape[2:] + (0,), dtype=cov.dtype))
        return np.concatenate(parts, axis=-1)


def _fill(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, q: int) -> np.ndarray:
    """Lower-triangular ``(q, q, ...)`` matrices with ``values`` (``(..., m)``) at (rows, cols)."""
    out = np.zeros((q, q) + values.shape[:-1], dtype=values.dtype)
    out[rows, cols] = np.moveaxis(values, -1, 0)
    return out


@dataclass(frozen=True)
class NestedStats:
    """Sufficient statistics of a nested design (clients sorted by therapist).

    Arrays are laid out matrix axes first and groups last, so that every operation of the
    deviance works on long contiguous vectors over the groups.

    Attributes
    ----------
    client_cross
        ``(q_c, d, n_clients)``: ``Z_i'W_i`` for each client, ``W = [Z_c, Z_t, X, y]``.
    upper_cross
        ``(r, r, n_upper)``: ``W_j'W_j`` of the columns ``[Z_t, X, y]`` summed over the rows
        of each therapist ``j`` (two levels: one block, the whole data).
    upper_starts
        Index of the first client of each therapist in ``client_cross``.
    n_obs
        Number of rows.
    """

    client_cross: np.ndarray
    upper_cross: np.ndarray
    upper_starts: np.ndarray
    n_obs: int


def sufficient_statistics(zc: np.ndarray, zt: np.ndarray, x: np.ndarray, y: np.ndarray,
                          client_starts: np.ndarray, therapist_row_starts: np.ndarray,
                          therapist_client_starts: np.ndarray) -> NestedStats:
    """Cross-products of the data by client and by therapist, in one pass over the rows.

    Parameters
    ----------
    zc, zt, x, y
        Row-level design of the client random effects, therapist random effects (zero
        columns for two levels), fixed effects, and the outcome; rows sorted by therapist,
        then client.
    client_starts
        First row of each client.
    therapist_row_starts, therapist_client_starts
        First row and first client of each therapist (``[0]`` for two levels).

    Returns
    -------
    NestedStats
    """
    w = np.ascontiguousarray(np.column_stack([zc, zt, x, y]).T, dtype=float)
    qc = zc.shape[1]
    client_cross = _grouped_cross(w[:qc], w, client_starts)
    upper = _grouped_cross(w[qc:], w[qc:], therapist_row_starts)
    return NestedStats(client_cross, upper, therapist_client_starts, int(w.shape[1]))


def _grouped_cross(left: np.ndarray, right: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(a, b, groups)``: sums of ``left[a] * right[b]`` over each group of consecutive rows."""
    out = np.empty((left.shape[0], right.shape[0], starts.size))
    for a in range(left.shape[0]):
        out[a] = np.add.reduceat(left[a] * right, starts, axis=1)
    return out


def cholesky(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of small symmetric matrices ``(q, q, ...)``, no conjugation.

    Explicit column-by-column formulas vectorised over the trailing (batch) axes, so that the
    result is an analytic function of ``a`` (complex-step derivatives pass through it). Only
    the lower triangle of ``a`` is read. The matrices must be positive definite (their real
    parts, for complex input).
    """
    q = a.shape[0]
    low = np.zeros_like(a)
    for j in range(q):
        pivot = a[j, j] - sum(low[j, m] ** 2 for m in range(j))
        low[j, j] = np.sqrt(pivot)
        for i in range(j + 1, q):
            low[i, j] = (a[i, j] - sum(low[i, m] * low[j, m] for m in range(j))) / low[j, j]
    return low


def backward_solve(low: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``low' x = b``; ``low``: ``(q, q, ...)`` lower-triangular, ``b``: ``(q, ...)``."""
    q = low.shape[0]
    x = np.empty(np.broadcast_shapes(low.shape[1:], b.shape), dtype=np.result_type(low, b))
    for i in reversed(range(q)):
        known = sum(low[j, i] * x[j] for j in range(i + 1, q))
        x[i] = (b[i] - known) / low[i, i]
    return x


def forward_solve(low: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``low x = b``; ``low``: ``(q, q, ...)`` lower-triangular, ``b``: ``(q, r, ...)``."""
    x = np.empty(b.shape[:2] + np.broadcast_shapes(low.shape[2:], b.shape[2:]),
                 dtype=np.result_type(low, b))
    for i in range(low.shape[0]):
        known = sum(low[i, j][None] * x[j] for j in range(i))
        x[i] = (b[i] - known) * (1 / low[i, i])[None]
    return x


def _scale_columns(m: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``m`` with its first ``q`` columns right-multiplied by ``lam`` (``(q, q, k)``, lower).

    ``m`` is ``(rows, cols, k, ...)``; the result keeps the other columns unchanged.
    """
    q = lam.shape[0]
    extra = (slice(None),) + (None,) * (m.ndim - 3)
    out = m.astype(np.result_type(m, lam), copy=True)
    for e in range(q):
        out[:, e] = sum(m[:, c] * lam[c, e][extra] for c in range(e, q))
    return out


def _log_determinant(low: np.ndarray) -> np.ndarray:
    """``2 sum log diag`` of the factors ``low`` (``(q, q, k, groups)``), for each ``k``."""
    return 2 * sum(np.sum(np.log(low[i, i]), axis=-1) for i in range(low.shape[0]))


def _outer_sum(b: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """``sum_q b[q, a] b[q, c]`` over ``q`` and ``axis`` of ``b`` (``(q, r, k, ...)``)."""
    r = b.shape[1]
    out = np.empty((r, r) + tuple(n for i, n in enumerate(b.shape[2:], 2)
                                   if i not in axis), dtype=b.dtype)
    for a in range(r):
        for c in range(a + 1):
            out[a, c] = out[c, a] = np.sum(b[:, a] * b[:, c], axis=(0, *(i - 1 for i in axis)))
    return out


def eliminate(theta: np.ndarray, stats: NestedStats,
              structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """Factor the penalised least squares system for a batch of ``theta``.

    Parameters
    ----------
    theta
        ``(k, n_theta)`` real or complex.
    stats, structure
        The data's sufficient statistics and the model's layout.

    Returns
    -------
    (logdet, chol_f)
        ``log|L|^2`` of the random-effects factor, shape ``(k,)``, and the Cholesky factor of
        the ``(p + 1) x (p + 1)`` fixed-effects-and-outcome system ``F``, shape
        ``(p + 1, p + 1, k)`` (see the module notes).
    """
    qt = structure.q_therapist
    logdet = np.zeros(theta.shape[0], dtype=theta.dtype)
    f = stats.upper_cross[:, :, 0, None].astype(theta.dtype) if not qt else 0
    for part in _client_chunks(stats, theta.shape[0]):
        part_logdet, part_f = _eliminate_part(theta, part, structure)
        logdet = logdet + part_logdet
        f = f + part_f
    return logdet, cholesky(f)


def _client_chunks(stats: NestedStats, k: int) -> list[NestedStats]:
    """``stats`` split into runs of clients of about ``CHUNK_CELLS / k`` clients each.

    Two levels: any run of clients (``F`` sums over all of them). Three levels: runs of whole
    therapists (``F`` sums over therapists), at least one therapist per run.
    """
    n_clients = stats.client_cross.shape[-1]
    size = max(1, CHUNK_CELLS // max(1, k))
    if n_clients <= size:
        return [stats]
    if stats.upper_cross.shape[-1] == 1 and stats.upper_starts.size == 1:  # two levels
        return [NestedStats(stats.client_cross[..., i:i + size], stats.upper_cross,
                            stats.upper_starts, stats.n_obs)
                for i in range(0, n_clients, size)]
    starts = np.r_[stats.upper_starts, n_clients]
    parts, first = [], 0
    while first < stats.upper_starts.size:
        last = max(first + 1, int(np.searchsorted(starts, starts[first] + size, "right")) - 1)
        last = min(last, stats.upper_starts.size)
        c0, c1 = starts[first], starts[last]
        parts.append(NestedStats(stats.client_cross[..., c0:c1],
                                 stats.upper_cross[..., first:last],
                                 stats.upper_starts[first:last] - c0, stats.n_obs))
        first = last
    return parts


def _eliminate_part(theta: np.ndarray, stats: NestedStats,
                    structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """One run of clients' ``log|L|^2`` and its term of ``F`` (two levels: ``-sum B_i'B_i``,
    the data's ``W'W`` is added by :func:`eliminate`)."""
    qt = structure.q_therapist
    split = structure.n_client_theta
    if qt:
        # The client step depends on the client part of theta only: do it once per distinct
        # client part (a complex-step batch has one per client direction, plus the base).
        client_theta, inverse = np.unique(theta[:, :split], axis=0, return_inverse=True)
    else:
        client_theta, inverse = theta[:, :split], np.arange(theta.shape[0])
    low, b = client_step(client_theta, stats.client_cross, structure)
    logdet = _log_determinant(low)[inverse]
    if not qt:
        return logdet, -_outer_sum(b, (3,))
    low_t, b_t, schur = therapist_step(b, theta, inverse, stats, structure)
    f = np.sum(schur[qt:, qt:], axis=-1) - _outer_sum(b_t, (3,))
    return logdet + _log_determinant(low_t), f


def therapist_step(b: np.ndarray, theta: np.ndarray, inverse: np.ndarray, stats: NestedStats,
                   structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``L_j``, ``B_j`` and the Schur complement ``S_j`` of every therapist (three levels).

    ``S_j = T'(W_j'W_j - sum of B_i'B_i over its clients)T``, ``T = blockdiag(Lambda_t, I)``;
    ``b`` holds the clients' ``B_i`` for the distinct client parts of ``theta`` and
    ``inverse`` maps each row of ``theta`` to its client part. Returns arrays
    ``(q_t, q_t, k, therapists)``, ``(q_t, p + 1, k, therapists)`` and
    ``(r, r, k, therapists)``.
    """
    qt = structure.q_therapist
    unscaled = stats.upper_cross[:, :, None] - np.add.reduceat(_outer_sum(b, ()),
                                                                stats.upper_starts, axis=-1)
    lam_t = structure.factors(theta)[1]
    schur = _scale_columns(np.swapaxes(_scale_columns(unscaled[:, :, inverse], lam_t), 0, 1),
                           lam_t)
    low_t = cholesky(schur[:qt, :qt] + np.eye(qt)[..., None, None])
    return low_t, forward_solve(low_t, schur[:qt, qt:]), schur


def client_step(client_theta: np.ndarray, cross: np.ndarray,
                structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """``L_i`` and ``B_i = L_i^{-1} Lambda_c' Z_i'[Z_t, X, y]`` for every client (batched).

    Returns arrays ``(q_c, q_c, k, clients)`` and ``(q_c, r, k, clients)``; the therapist
    columns of ``B_i`` are not yet multiplied by ``Lambda_t``.
    """
    qc = structure.q_client
    rows, cols = structure.block_positions("client")
    lam = _fill(client_theta, rows, cols, qc)
    # Lambda_c' Z_i'W_i for every client: (qc, d, k, clients)
    scaled = np.stack([sum(lam[a, b][None, :, None] * cross[a][:, None] for a in range(b, qc))
                       for b in range(qc)])
    a_block = _scale_columns(scaled[:, :qc], lam)
    for i in range(qc):
        a_block[i, i] += 1
    low = cholesky(a_block)
    return low, forward_solve(low, scaled[:, qc:])


def _criterion_parts(chol_f: np.ndarray, n_fixed: int) -> tuple[np.ndarray, np.ndarray]:
    """``log|R_X|^2`` and ``r^2`` from the Cholesky factor of ``F`` (``(p+1, p+1, k)``)."""
    logdet_x = 2 * sum(np.log(chol_f[i, i]) for i in range(n_fixed))
    return logdet_x, chol_f[n_fixed, n_fixed] ** 2


def profiled_deviance(theta: np.ndarray, stats: NestedStats, structure: Structure,
                      reml: bool) -> np.ndarray:
    """lme4's profiled deviance (ML) or REML criterion for a batch of ``theta``.

    The fixed effects and the residual variance are profiled out (module notes).
    """
    logdet, chol_f = eliminate(theta, stats, structure)
    logdet_x, r2 = _criterion_parts(chol_f, structure.n_fixed)
    n = stats.n_obs - (structure.n_fixed if reml else 0)
    value = logdet + n * (1 + np.log(2 * np.pi * r2 / n))
    return value + logdet_x if reml else value


def deviance(theta: np.ndarray, sigma2: np.ndarray, stats: NestedStats, structure: Structure,
             reml: bool) -> np.ndarray:
    """-2 (RE)ML log-likelihood at ``theta`` and residual variance ``sigma2`` (batched).

    Only the fixed effects are profiled out: ``log|L|^2 (+ log|R_X|^2) + r^2 / sigma^2 +
    n' log(2 pi sigma^2)`` with ``n' = n`` (ML) or ``n - p`` (REML); minimised over
    ``sigma2`` it is :func:`profiled_deviance`.
    """
    logdet, chol_f = eliminate(theta, stats, structure)
    logdet_x, r2 = _criterion_parts(chol_f, structure.n_fixed)
    n = stats.n_obs - (structure.n_fixed if reml else 0)
    value = logdet + r2 / sigma2 + n * np.log(2 * np.pi * sigma2)
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
