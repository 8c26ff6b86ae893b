"""The layout of a nested mixed model: its covariance parameters and its data's sufficient
statistics.

* :class:`Structure`: where the covariance parameters ``theta`` sit in the relative covariance
  factors of the client and therapist random effects (lme4's layout);
* :class:`NestedStats` and :func:`sufficient_statistics`: the cross-products of the data
  needed by the deviance (:mod:`~alliance_analysis.multilevel.engine.blocks`), computed once
  per fit in one pass over the rows.

The notation is that of :mod:`~alliance_analysis.multilevel.engine.deviance`: ``W = [Z_c, Z_t,
X, y]`` by rows, ``Z_i`` the client random-effect columns of client ``i``'s rows and ``C_i =
Z_i'[Z_t, X, y]_i`` its ``q_c x r`` cross-products with the other columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from alliance_analysis.multilevel.engine.small import (cholesky, fill_lower, forward_solve,
                                                       read_only, upper_pairs)


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
        """Rows and columns of ``theta``'s elements in one factor, lme4's column-major order
        (read-only arrays, computed once per layout)."""
        if level == "client":
            return _positions(self.q_client, self.client_correlated)
        return _positions(self.q_therapist, self.therapist_correlated)

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

    def canonical(self, theta: np.ndarray) -> np.ndarray:
        """``theta`` with the columns of each factor whose diagonal element is negative
        negated: the same covariance matrices ``Lambda Lambda'``, every diagonal element
        ``>= 0`` (the optimizer's bounds)."""
        out = np.array(theta, dtype=float)
        offset = 0
        for level in ("client", "therapist"):
            rows, cols = self.block_positions(level)
            for j in np.unique(cols):
                diagonal = offset + np.flatnonzero((rows == j) & (cols == j))[0]
                if out[diagonal] < 0:
                    out[offset + np.flatnonzero(cols == j)] *= -1
            offset += rows.size
        return out

    def factors(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``Lambda_c`` and ``Lambda_t`` of ``theta`` (``(..., n_theta)``), as ``(q, q, ...)``."""
        split = self.n_client_theta
        return (fill_lower(theta[..., :split], *self.block_positions("client"), self.q_client),
                fill_lower(theta[..., split:], *self.block_positions("therapist"), self.q_therapist))

    def theta_of(self, client_cov: np.ndarray, therapist_cov: np.ndarray) -> np.ndarray:
        """``theta`` (``(..., n_theta)``) of relative covariance matrices ``(q, q, ...)``."""
        parts = []
        for level, cov in (("client", client_cov), ("therapist", therapist_cov)):
            rows, cols = self.block_positions(level)
            parts.append(np.moveaxis(cholesky(cov)[rows, cols], 0, -1) if rows.size
                         else np.zeros(cov.shape[2:] + (0,), dtype=cov.dtype))
        return np.concatenate(parts, axis=-1)


@lru_cache(maxsize=64)
def _positions(q: int, correlated: bool) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Structure.block_positions` of a ``q x q`` factor: its lower triangle column by
    column (the transpose of :func:`upper_pairs`' order), or its diagonal."""
    if correlated:
        rows_upper, cols_upper = upper_pairs(q)
        return cols_upper, rows_upper
    diagonal = read_only(np.arange(q))
    return diagonal, diagonal


@dataclass(frozen=True)
class NestedStats:
    """Sufficient statistics of a nested design (clients sorted by therapist).

    Arrays are laid out so that every operation of the deviance works on long contiguous
    vectors over the groups (or, for the packed products, one matrix product over them).

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
    client_root
        ``(q_c, q_c, n_clients)``: a square root ``F_i`` of each client's ``A_i = Z_i'Z_i =
        F_i'F_i`` (the transposed Cholesky factor, upper triangular; see
        :func:`_client_basis`).
    therapist_products, fixed_products
        ``(n_clients, n_pairs, cells)``: with ``D_i = F_i'^{-1} C_i`` (``C_i = F_i' D_i``;
        zero rows where ``F_i`` has them), for each client and each pair ``a <= b`` of its
        random effects (:func:`~alliance_analysis.multilevel.engine.small.upper_pairs` order),
        the products ``D_i[a, u] D_i[b, v] + D_i[b, u] D_i[a, v]`` (the second term only for
        ``a < b``) for the packed upper triangle ``u <= v`` of the ``r x r`` matrix, split
        into the rows of the therapist columns (``u < q_t``; none for two levels) and the
        rest (``u >= q_t``: the fixed effects and the outcome). Then ``sum_i D_i' N_i D_i``
        for symmetric ``N_i`` is one matrix product of the packed ``N_i`` with these
        (:func:`alliance_analysis.multilevel.engine.blocks.eliminate`).
    """

    client_cross: np.ndarray
    upper_cross: np.ndarray
    upper_starts: np.ndarray
    n_obs: int
    client_root: np.ndarray
    therapist_products: np.ndarray
    fixed_products: np.ndarray


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
    # W' (columns by rows), written in place: one array of the data's size
    w = np.empty((zc.shape[1] + zt.shape[1] + x.shape[1] + 1, y.shape[0]))
    first = 0
    for part in (zc, zt, x):
        w[first:first + part.shape[1]] = part.T
        first += part.shape[1]
    w[first] = y
    qc, qt = zc.shape[1], zt.shape[1]
    client_cross = _grouped_cross(w[:qc], w, client_starts)
    upper = _grouped_cross(w[qc:], w[qc:], therapist_row_starts)
    r = w.shape[0] - qc
    return NestedStats(client_cross, upper, therapist_client_starts, int(w.shape[1]),
                       *_client_basis(client_cross, r, qt))


def _client_basis(cross: np.ndarray, r: int, qt: int) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """``F_i`` of every client and the packed products of its ``D_i`` (:class:`NestedStats`):
    ``(q_c, q_c, clients)``, ``(clients, n_pairs, therapist cells)`` and ``(clients, n_pairs,
    fixed cells)``.

    ``A_i = L_i L_i'`` (Cholesky), ``F_i = L_i'`` and ``D_i = L_i^{-1} C_i``. Why this basis:
    the deviance needs ``C_i' M_i C_i`` with ``M_i = Lambda (Lambda' A_i Lambda + I)^{-1}
    Lambda'``; expanded in ``C_i``, its terms are as large as ``A_i^{-1}`` (session numbers
    make ``A_i`` ill-conditioned) and cancel, while in ``D_i`` the same form is ``D_i' N_i
    D_i`` with ``N_i`` between 0 and the identity (module notes of
    :mod:`~alliance_analysis.multilevel.engine.blocks`). ``D_i`` still inherits ``A_i``'s
    conditioning, so the basis is computed in extended precision (``numpy.longdouble``: 64-bit
    mantissa on x86-64 Linux, the same as float64 elsewhere) and rounded once; the products
    are formed in float64 (each rounded once more, as the per-client factorisation's are). A pivot of ``A_i`` below ``1e-13`` of its diagonal element (a
    random slope seen at a single session, or a slope constant within the client) is a
    direction without data (``C_i`` lies in the range of ``A_i``); its row of ``F_i`` and
    ``D_i`` is zero.
    """
    qc = cross.shape[0]
    wide = cross.astype(np.longdouble)
    low = cholesky(wide[:, :qc], rank_tol=1e-13)
    basis = forward_solve(low, wide[:, qc:])
    root = np.swapaxes(low, 0, 1).astype(float)
    basis = basis.astype(float)
    return (root, _pair_products(basis, *upper_pairs(r, 0, qt)),
            _pair_products(basis, *upper_pairs(r, qt)))


def _pair_products(cross: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``(clients, n_pairs, cells)`` products of :class:`NestedStats` for the cells
    ``(rows, cols)`` of ``C_i = cross[..., i]`` (``(q_c, r, clients)``)."""
    a, b = upper_pairs(cross.shape[0])
    out = cross[a][:, rows] * cross[b][:, cols]
    off = a != b
    out[off] += cross[b[off]][:, rows] * cross[a[off]][:, cols]
    return np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=float)


def _grouped_cross(left: np.ndarray, right: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """``(a, b, groups)``: sums of ``left[a] * right[b]`` over each group of consecutive rows."""
    out = np.empty((left.shape[0], right.shape[0], starts.size))
    for a in range(left.shape[0]):
        out[a] = np.add.reduceat(left[a] * right, starts, axis=1)
    return out
