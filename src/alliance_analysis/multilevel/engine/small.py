"""Batched algebra of small matrices, analytic in their entries (complex-step safe).

Used by :mod:`~alliance_analysis.multilevel.engine.blocks` and
:mod:`~alliance_analysis.multilevel.engine.modes`. Matrices are laid out matrix axes first and
batch axes last (``(q, q, ...)``): each line below is one numpy operation over all clients (and
all parameter vectors of a batch) at once. Why not ``numpy.linalg``: its Cholesky factor of a
complex matrix is the Hermitian one (it conjugates), which breaks the complex-step derivative,
and it calls LAPACK once per matrix instead of once per element over the whole batch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

def log(z: np.ndarray) -> np.ndarray:
    """``numpy.log`` of a real array, or of complex-step points (ten times faster).

    Every complex argument in the engine is a complex-step point ``x + i h x'`` with ``h =
    1e-20`` (:mod:`~alliance_analysis.multilevel.engine.deviance`) and ``x > 0`` (a pivot or
    diagonal element of a positive definite matrix; a non-positive ``x`` gives NaN, as in real
    arithmetic). There ``log z = log x + i y / x`` exactly in floating point: the next term
    of the series is ``(y / x)^2 / 2``, about 1e-40 relative. numpy's complex logarithm costs
    about 30 real logarithms per element.
    """
    if not np.iscomplexobj(z):
        return np.log(z)
    out = np.empty_like(z)
    out.real = np.log(z.real)
    np.divide(z.imag, z.real, out=out.imag)
    return out


def sqrt(z: np.ndarray) -> np.ndarray:
    """``numpy.sqrt`` of a real array, or of complex-step points (see :func:`log`):
    ``sqrt(x + i y) = sqrt(x) + i y / (2 sqrt(x))``, exact in floating point there."""
    if not np.iscomplexobj(z):
        return np.sqrt(z)
    out = np.empty_like(z)
    root = np.sqrt(z.real)
    out.real = root
    np.divide(z.imag, 2 * root, out=out.imag)
    return out


def fill_lower(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, q: int) -> np.ndarray:
    """Lower-triangular ``(q, q, ...)`` matrices with ``values`` (``(..., m)``) at (rows, cols)."""
    out = np.zeros((q, q) + values.shape[:-1], dtype=values.dtype)
    out[rows, cols] = np.moveaxis(values, -1, 0)
    return out


def cholesky(a: np.ndarray, rank_tol: float | None = None) -> np.ndarray:
    """Lower Cholesky factors of small symmetric matrices ``(q, q, ...)``, no conjugation.

    Explicit column-by-column formulas vectorised over the trailing (batch) axes, so that the
    result is an analytic function of ``a`` (complex-step derivatives pass through it). Only
    the lower triangle of ``a`` is read. The matrices must be positive definite (their real
    parts, for complex input), unless ``rank_tol`` is given: then they may be positive
    semidefinite, and a pivot at most ``rank_tol`` times its diagonal element of ``a`` is a
    dependent column, whose column of the factor is zero (real input only).
    """
    q = a.shape[0]
    low = np.zeros_like(a)
    for j in range(q):
        pivot = a[j, j] - sum(low[j, m] ** 2 for m in range(j))
        kept = None if rank_tol is None else pivot > rank_tol * a[j, j]
        low[j, j] = sqrt(pivot if kept is None else np.where(kept, pivot, 1))
        for i in range(j + 1, q):
            low[i, j] = (a[i, j] - sum(low[i, m] * low[j, m] for m in range(j))) / low[j, j]
        if kept is not None:  # a dependent column: zero
            low[j:, j] = np.where(kept, low[j:, j], 0)
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
    """Solve ``low x = b``; ``low``: ``(q, q, ...)`` lower-triangular, ``b``: ``(q, r, ...)``.

    A zero diagonal element of ``low`` (a dependent column, :func:`cholesky` with
    ``rank_tol``) gives a zero row of ``x``.
    """
    x = np.empty(b.shape[:2] + np.broadcast_shapes(low.shape[2:], b.shape[2:]),
                 dtype=np.result_type(low, b))
    for i in range(low.shape[0]):
        known = sum(low[i, j][None] * x[j] for j in range(i))
        pivot = low[i, i]
        if np.iscomplexobj(pivot) or np.all(pivot != 0):
            x[i] = (b[i] - known) * (1 / pivot)[None]
        else:
            x[i] = np.where(pivot != 0, (b[i] - known) / np.where(pivot != 0, pivot, 1), 0)
    return x


def scale_columns(m: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``m`` with its first ``q`` columns right-multiplied by ``lam`` (``(q, q, k)``, lower).

    ``m`` is ``(rows, cols, k, ...)``; the result keeps the other columns unchanged.
    """
    q = lam.shape[0]
    extra = (slice(None),) + (None,) * (m.ndim - 3)
    out = m.astype(np.result_type(m, lam), copy=True)
    for e in range(q):
        out[:, e] = sum(m[:, c] * lam[c, e][extra] for c in range(e, q))
    return out


def log_determinant(low: np.ndarray) -> np.ndarray:
    """``2 sum log diag`` of the factors ``low`` (``(q, q, k, groups)``), for each ``k``."""
    return 2 * sum(np.sum(log(low[i, i]), axis=-1) for i in range(low.shape[0]))


def outer_sum(b: np.ndarray, axis: tuple[int, ...]) -> np.ndarray:
    """``sum_q b[q, a] b[q, c]`` over ``q`` and ``axis`` of ``b`` (``(q, r, k, ...)``)."""
    r = b.shape[1]
    out = np.empty((r, r) + tuple(n for i, n in enumerate(b.shape[2:], 2)
                                   if i not in axis), dtype=b.dtype)
    for a in range(r):
        for c in range(a + 1):
            out[a, c] = out[c, a] = np.sum(b[:, a] * b[:, c], axis=(0, *(i - 1 for i in axis)))
    return out


@lru_cache(maxsize=256)
def upper_pairs(q: int, first: int = 0, stop: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices ``(u, v)``, ``u <= v``, of a ``q x q`` symmetric matrix's upper
    triangle row by row, rows ``first`` to ``stop - 1`` (default: to the last row); the packed
    order of :class:`alliance_analysis.multilevel.engine.layout.NestedStats`.

    Computed once per shape (every evaluation of the deviance asks for the same few): the
    arrays are read-only."""
    pairs = [(u, v) for u in range(first, q if stop is None else stop) for v in range(u, q)]
    rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
    return read_only(np.array(rows, dtype=int)), read_only(np.array(cols, dtype=int))


def read_only(array: np.ndarray) -> np.ndarray:
    """``array``, marked read-only (an index array cached and shared between calls)."""
    array.flags.writeable = False
    return array


def unpack_symmetric(packed: np.ndarray, q: int, first: int = 0) -> np.ndarray:
    """``(q - first, q - first, ...)`` symmetric matrices from packed upper triangles
    (``(cells, ...)``, rows ``first`` to ``q - 1`` in :func:`upper_pairs` order)."""
    rows, cols = upper_pairs(q, first)
    out = np.empty((q - first, q - first) + packed.shape[1:], dtype=packed.dtype)
    out[rows - first, cols - first] = packed
    out[cols - first, rows - first] = packed
    return out
