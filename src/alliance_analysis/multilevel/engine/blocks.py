"""The blocked factorisation of the penalised least squares system of a nested model.

:func:`eliminate` gives the two pieces of lme4's profiled deviance
(:mod:`~alliance_analysis.multilevel.engine.deviance`) for a batch of covariance parameters
``theta``: ``log|L|^2`` of the random-effects factor and the fixed-effects-and-outcome system
``F`` (whose Cholesky factor holds ``R_X`` and ``r``). :func:`client_step` and :func:`therapist_step` give the
factors themselves at one ``theta``, for the conditional modes
(:mod:`~alliance_analysis.multilevel.engine.modes`).

Notes
-----
Notation of :mod:`~alliance_analysis.multilevel.engine.deviance`: client ``i`` has the
cross-products ``A_i = Z_i'Z_i`` (``q_c x q_c``) and ``C_i = Z_i'[Z_t, X, y]_i`` (``q_c x r``).
Its block of the factorisation is ``L_i L_i' = G_i = Lambda_c' A_i Lambda_c + I`` and ``B_i =
L_i^{-1} Lambda_c' C_i``; what it removes from the rest of the system is ``B_i'B_i``. Written
in the client's own orthonormal coordinates (``A_i = F_i'F_i``, ``C_i = F_i'D_i``, computed
once per fit: :class:`~alliance_analysis.multilevel.engine.layout.NestedStats`), with ``P_i =
F_i Lambda_c``::

    G_i = P_i'P_i + I,   B_i'B_i = D_i' N_i D_i,   N_i = P_i G_i^{-1} P_i' = K_i'K_i,
    K_i = L_i^{-1} P_i'.

``N_i`` is ``q_c x q_c`` (3 numbers for a random intercept and slope), so each evaluation
computes ``P_i``, ``G_i``, its factor, ``K_i`` and the packed ``N_i`` (:func:`client_weights`),
and then ``sum_i D_i' N_i D_i`` as one matrix product of the packed ``N_i`` with the products
of the entries of ``D_i`` computed once per fit. Mathematically this is the three block steps
of the deviance's module notes; numerically it moves the work that grows with ``r^2`` (fixed
effects) per client out of the evaluation: an evaluation costs a few dozen vector operations
over the clients plus stacked matrix products over blocks of clients and a pairwise sum
(:func:`contract`; twice for the real and imaginary parts of a complex-step batch), instead
of hundreds. ``N_i``'s eigenvalues lie in ``[0, 1)``, so no term of the sum is larger than its
result's scale (in ``C_i``'s coordinates they can be as large as ``A_i^{-1}`` and cancel).

Three levels: therapist ``j``'s Schur complement ``S_j = T'(W_j'W_j - sum over its clients of
D_i' N_i D_i) T`` (``T = blockdiag(Lambda_t, I)``) is needed by therapist only in the rows of
the therapist effects (the packed ``therapist_products``, summed by therapist); its fixed-effects
block only summed over all therapists (the same matrix product as for two levels). Then ``L_j
L_j' = S_j[t, t] + I``, ``B_j = L_j^{-1} S_j[t, (X, y)]`` and ``F = sum_j S_j[(X, y), (X, y)] -
B_j'B_j``. The client part of a batch depends on the client part of ``theta`` only, and is
computed once per distinct client part.

Memory: :func:`eliminate` works through the clients in runs of at most :data:`CHUNK_CELLS`
client-by-``theta`` cells (two levels: any run of clients; three levels: runs of whole
therapists) and adds up their terms, which are sums over clients (therapists); the results
differ from one pass only by the order of the additions (rounding, about 1e-15 relative).

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48 (section 3).
.. [2] Pinheiro, J. C., & Bates, D. M. (2000). Mixed-effects models in S and S-PLUS.
   Springer (section 2.2).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from alliance_analysis.multilevel.engine.layout import NestedStats, Structure
from alliance_analysis.multilevel.engine.small import (cholesky, fill_lower, forward_solve, log,
                                                       log_determinant, outer_sum,
                                                       scale_columns, sqrt, unpack_symmetric,
                                                       upper_pairs)

#: Largest number of client-by-theta cells :func:`eliminate` computes at once (module notes).
CHUNK_CELLS = 16384


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
    (logdet, f)
        ``log|L|^2`` of the random-effects factor, shape ``(k,)``, and the ``(p + 1) x (p +
        1)`` fixed-effects-and-outcome system ``F``, shape ``(p + 1, p + 1, k)`` (module
        notes), whose Cholesky factor holds lme4's ``R_X`` and ``r``.
    """
    qt = structure.q_therapist
    logdet = np.zeros(theta.shape[0], dtype=theta.dtype)
    f = stats.upper_cross[:, :, 0, None].astype(theta.dtype) if not qt else 0
    for part in client_runs(stats, theta.shape[0]):
        part_logdet, part_f = _eliminate_run(theta, part, structure)
        logdet = logdet + part_logdet
        f = f + part_f
    return logdet, f


def client_runs(stats: NestedStats, k: int) -> list[NestedStats]:
    """``stats`` split into runs of clients of about ``CHUNK_CELLS / k`` clients each.

    Two levels: any run of clients (``F`` sums over all of them). Three levels: runs of whole
    therapists (``F`` sums over therapists), at least one therapist per run.
    """
    n_clients = stats.client_cross.shape[-1]
    size = max(1, CHUNK_CELLS // max(1, k))
    if n_clients <= size:
        return [stats]
    if stats.upper_cross.shape[-1] == 1 and stats.upper_starts.size == 1:  # two levels
        return [replace(stats, client_cross=stats.client_cross[..., i:i + size],
                        client_root=stats.client_root[..., i:i + size],
                        therapist_products=stats.therapist_products[i:i + size],
                        fixed_products=stats.fixed_products[i:i + size])
                for i in range(0, n_clients, size)]
    starts = np.r_[stats.upper_starts, n_clients]
    parts, first = [], 0
    while first < stats.upper_starts.size:
        last = max(first + 1, int(np.searchsorted(starts, starts[first] + size, "right")) - 1)
        last = min(last, stats.upper_starts.size)
        c0, c1 = starts[first], starts[last]
        parts.append(NestedStats(stats.client_cross[..., c0:c1],
                                 stats.upper_cross[..., first:last],
                                 stats.upper_starts[first:last] - c0, stats.n_obs,
                                 stats.client_root[..., c0:c1],
                                 stats.therapist_products[c0:c1],
                                 stats.fixed_products[c0:c1]))
        first = last
    return parts


def _eliminate_run(theta: np.ndarray, stats: NestedStats,
                   structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """One run of clients' ``log|L|^2`` and its term of ``F`` (two levels: ``-sum B_i'B_i``,
    the data's ``W'W`` is added by :func:`eliminate`)."""
    qc, qt, p = structure.q_client, structure.q_therapist, structure.n_fixed
    split = structure.n_client_theta
    if qt:
        # One client step per distinct client part (a complex-step batch has one per client
        # direction, plus the base).
        client_theta, inverse = np.unique(theta[:, :split], axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        client_theta, inverse = theta[:, :split], np.arange(theta.shape[0])
    logdet, weights = client_weights(client_theta, stats.client_root, structure)
    removed = unpack_symmetric(contract(weights, stats.fixed_products).T, qt + p + 1, qt)
    if not qt:
        return logdet, -removed
    low_t, b_t, _ = therapist_factors(weights, inverse, theta, stats, structure)
    # sum over therapists of B_j'B_j: one einsum (numpy's own loop, no BLAS)
    f = (stats.upper_cross[qt:, qt:].sum(axis=-1)[..., None] - removed[..., inverse]
         - np.einsum("qakt,qbkt->abk", b_t, b_t))
    return logdet[inverse] + log_determinant(low_t), f


def client_weights(client_theta: np.ndarray, root: np.ndarray,
                   structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """``log|G_i|`` summed over clients, and the packed ``N_i`` of every client (batched).

    Parameters
    ----------
    client_theta
        ``(k, n_client_theta)``, real or complex.
    root
        ``(q_c, q_c, clients)``: each client's ``F_i`` (:attr:`NestedStats.client_root`).
    structure
        The model's layout.

    Returns
    -------
    (logdet, weights)
        ``(k,)`` and ``(k, clients, n_pairs)``: ``N_i[a, b]`` for the pairs ``a <= b`` in
        :func:`~alliance_analysis.multilevel.engine.small.upper_pairs` order (module notes).
    """
    qc = structure.q_client
    p = _client_products(client_theta, root, structure)
    if qc <= 2:
        return _small_weights(p)[:2]
    shape = np.broadcast_shapes(root.shape[2:], p[0][0].shape)
    transposed = np.zeros((qc, qc) + shape, dtype=np.result_type(root, client_theta))
    for a in range(qc):
        for e in range(qc):
            transposed[e, a] = p[a][e]
    g = np.zeros_like(transposed)
    for d in range(qc):
        for e in range(d + 1):
            g[d, e] = sum(transposed[d, a] * transposed[e, a] for a in range(qc))
        g[d, d] += 1
    low = cholesky(g)
    k = forward_solve(low, transposed)
    weights = np.stack([sum(k[e, a] * k[e, b] for e in range(qc))
                        for a, b in zip(*upper_pairs(qc), strict=True)], axis=-1)
    return log_determinant(low), weights


def _client_products(client_theta: np.ndarray, root: np.ndarray,
                     structure: Structure) -> list[list[np.ndarray]]:
    """``P_i = F_i Lambda_c`` of every client: ``(q_c, q_c)`` nested lists of ``(k, clients)``
    arrays, zero elements of ``F_i`` (upper) and ``Lambda_c`` (lower) skipped (the integer 0
    where every term is)."""
    qc = structure.q_client
    rows, cols = structure.block_positions("client")
    lam = fill_lower(client_theta, rows, cols, qc)[..., None]
    nonzero = set(zip(rows.tolist(), cols.tolist(), strict=True))
    return [[sum(root[a, c] * lam[c, e] for c in range(max(a, e), qc) if (c, e) in nonzero)
             for e in range(qc)] for a in range(qc)]


def small_weights(client_theta: np.ndarray, root: np.ndarray, structure: Structure
                  ) -> tuple[np.ndarray, np.ndarray, list[list[np.ndarray]], list[np.ndarray]]:
    """:func:`client_weights` of one or two client random effects (real), with the pieces the
    reverse-mode gradient (:mod:`~alliance_analysis.multilevel.engine.gradient`) reuses.

    Returns
    -------
    (logdet, weights, p, r)
        As :func:`client_weights`; ``P_i`` (:func:`_client_products`) and ``R_i = (I + P_i
        P_i')^{-1}``, the entries ``[r00, r01, r11]`` (``[r]`` for one effect), each
        ``(k, clients)``.
    """
    p = _client_products(client_theta, root, structure)
    logdet, weights, r = _small_weights(p, inverse=True)
    return logdet, weights, p, r


def _small_weights(p: list[list[np.ndarray]], inverse: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """:func:`client_weights` for one or two client random effects, in closed form, and the
    entries of ``R = H^{-1}`` when ``inverse`` (else an empty list).

    With ``H = I + P P'`` (``det H = det G``), ``N = P G^{-1} P' = I - H^{-1}``; written out,
    every entry is a ratio of sums of squares (``det P`` the only difference), so nothing
    cancels: for ``q_c = 2``, ``det G = 1 + a + b + (det P)^2`` with ``a = p00^2 + p01^2``,
    ``b = p10^2 + p11^2``, and ``N = [[a + (det P)^2, c], [c, b + (det P)^2]] / det G`` with
    ``c = p00 p10 + p01 p11`` (Lagrange's identity gives ``ab - c^2 = (det P)^2``), ``R =
    [[1 + b, -c], [-c, 1 + a]] / det G``; for ``q_c = 1``, ``N = p^2 / (1 + p^2)`` and ``R =
    1 / (1 + p^2)``. A third of the operations of the factorisation.
    """
    if len(p) == 1:
        square = p[0][0] * p[0][0]
        det = 1 + square
        weights = (square / det)[..., None]
        r = [1 / det] if inverse else []
    else:
        (p00, p01), (p10, p11) = p
        det_p = p00 * p11 - p01 * p10
        det_p2 = det_p * det_p
        a = p00 * p00 + p01 * p01
        b = p10 * p10 + p11 * p11
        c = p00 * p10 + p01 * p11
        det = 1 + a + b + det_p2
        scale = 1 / det
        weights = np.empty(det.shape + (3,), dtype=det.dtype)
        weights[..., 0] = (a + det_p2) * scale
        weights[..., 1] = c * scale
        weights[..., 2] = (b + det_p2) * scale
        r = [(1 + b) * scale, -c * scale, (1 + a) * scale] if inverse else []
    return log(det).sum(axis=-1), weights, r


#: Clients per block of :func:`contract`'s matrix products (see there).
BLOCK = 4


def contract(weights: np.ndarray, products: np.ndarray) -> np.ndarray:
    """``sum over clients and pairs of weights * products``: ``(k, cells)``.

    One stacked real matrix product over blocks of :data:`BLOCK` clients (two for complex
    weights: the products are real, and a complex product would first copy them to complex),
    then a pairwise sum over the blocks. Why not one ``(k, clients * pairs) @ (clients *
    pairs, cells)`` product: BLAS adds its thousands of terms one after another, and the
    rounding of that sum (about ``sqrt(n)`` times the machine precision of the terms) is
    amplified by the cancellation in ``F = W'W - sum_i D_i'N_i D_i``: gradients came out 50
    times noisier than the per-client factorisation's. numpy's pairwise summation over the
    contiguous block axis keeps the error at the per-client factorisation's level.
    """
    if np.iscomplexobj(weights):
        return contract(weights.real, products) + 1j * contract(weights.imag, products)
    k, n, pairs = weights.shape
    whole = n - n % BLOCK
    parts = [np.matmul(weights[:, :whole].reshape(k, -1, BLOCK * pairs).transpose(1, 0, 2),
                       products[:whole].reshape(-1, BLOCK * pairs, products.shape[-1]))]
    if whole < n:
        parts.append((weights[:, whole:].reshape(k, -1)
                      @ products[whole:].reshape(-1, products.shape[-1]))[None])
    blocks = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return np.ascontiguousarray(blocks.transpose(1, 2, 0)).sum(axis=-1)


def therapist_factors(weights: np.ndarray, inverse: np.ndarray, theta: np.ndarray,
                      stats: NestedStats, structure: Structure
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``L_j`` and ``B_j`` of every therapist (three levels; module notes), shapes
    ``(q_t, q_t, k, therapists)`` and ``(q_t, p + 1, k, therapists)``, and the rows of the
    therapist effects of ``W_j'W_j - sum over its clients of D_i'N_i D_i`` (``S_j`` before
    the scaling by ``Lambda_t``), ``(q_t, r, k, therapists)``."""
    qt = structure.q_therapist
    r = stats.upper_cross.shape[0]
    removed = therapist_sums(weights, stats).transpose(2, 0, 1)
    rows, cols = upper_pairs(r, 0, qt)
    packed = (stats.upper_cross[rows, cols][:, None] - removed)[:, inverse]
    unscaled = np.empty((qt, r) + packed.shape[1:], dtype=packed.dtype)
    unscaled[rows, cols] = packed
    square = cols < qt
    unscaled[cols[square], rows[square]] = packed[square]
    lam_t = structure.factors(theta)[1]
    if qt == 1:  # a therapist intercept: scalars, written out
        lam = lam_t[0, 0][:, None]
        low_t = sqrt(lam * lam * unscaled[0, 0] + 1)
        return low_t[None, None], (unscaled[:, 1:] * (lam / low_t)), unscaled
    # Lambda_t' (rows) and Lambda_t (therapist columns): S_j[t, :]
    scaled = scale_columns(np.swapaxes(scale_columns(np.swapaxes(unscaled, 0, 1), lam_t), 0, 1),
                           lam_t)
    low_t = cholesky(scaled[:, :qt] + np.eye(qt)[..., None, None])
    return low_t, forward_solve(low_t, scaled[:, qt:]), unscaled


def therapist_sums(weights: np.ndarray, stats: NestedStats) -> np.ndarray:
    """``(k, therapists, cells)``: each therapist's sum over its clients and pairs of
    ``weights * therapist_products`` (the rows of the therapist effects in ``sum D_i'N_i D_i``).

    One elementwise product, ``numpy.add.reduceat`` over the clients, then the sum over the
    pairs on the therapists' sums (``numpy.einsum`` over the pairs was several times slower
    for these short contractions); real and imaginary parts apart, as in :func:`contract`.
    """
    if np.iscomplexobj(weights):
        return (therapist_sums(weights.real, stats)
                + 1j * therapist_sums(weights.imag, stats))
    products = stats.therapist_products
    k, n, pairs = weights.shape
    # clients first (written in that layout, so that the reshape is a view), so that
    # reduceat adds whole contiguous rows
    terms = np.empty((n, k, pairs, products.shape[-1]))
    np.multiply(weights.swapaxes(0, 1)[..., None], products[:, None], out=terms)
    sums = np.add.reduceat(terms.reshape(n, -1), stats.upper_starts, axis=0)
    return sums.reshape(-1, k, pairs, products.shape[-1]).sum(axis=2).swapaxes(0, 1)


# -- the factors at one theta, for the conditional modes -------------------------------------

def client_step(client_theta: np.ndarray, cross: np.ndarray,
                structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """``L_i`` and ``B_i = L_i^{-1} Lambda_c' Z_i'[Z_t, X, y]`` for every client (batched).

    ``cross`` is :attr:`NestedStats.client_cross`. Returns arrays ``(q_c, q_c, k, clients)``
    and ``(q_c, r, k, clients)``; the therapist columns of ``B_i`` are not yet multiplied by
    ``Lambda_t``.
    """
    qc = structure.q_client
    rows, cols = structure.block_positions("client")
    lam = fill_lower(client_theta, rows, cols, qc)
    # Lambda_c' Z_i'W_i for every client: (qc, d, k, clients)
    scaled = np.stack([sum(lam[a, b][None, :, None] * cross[a][:, None] for a in range(b, qc))
                       for b in range(qc)])
    a_block = scale_columns(scaled[:, :qc], lam)
    for i in range(qc):
        a_block[i, i] += 1
    low = cholesky(a_block)
    return low, forward_solve(low, scaled[:, qc:])


def therapist_step(b: np.ndarray, theta: np.ndarray, inverse: np.ndarray, stats: NestedStats,
                   structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``L_j``, ``B_j`` and the Schur complement ``S_j`` of every therapist (three levels).

    ``S_j = T'(W_j'W_j - sum of B_i'B_i over its clients)T``, ``T = blockdiag(Lambda_t, I)``;
    ``b`` holds the clients' ``B_i`` (:func:`client_step`) for the distinct client parts of
    ``theta`` and ``inverse`` maps each row of ``theta`` to its client part. Returns arrays
    ``(q_t, q_t, k, therapists)``, ``(q_t, p + 1, k, therapists)`` and
    ``(r, r, k, therapists)``.
    """
    qt = structure.q_therapist
    unscaled = stats.upper_cross[:, :, None] - np.add.reduceat(outer_sum(b, ()),
                                                                stats.upper_starts, axis=-1)
    lam_t = structure.factors(theta)[1]
    schur = scale_columns(np.swapaxes(scale_columns(unscaled[:, :, inverse], lam_t), 0, 1),
                          lam_t)
    low_t = cholesky(schur[:qt, :qt] + np.eye(qt)[..., None, None])
    return low_t, forward_solve(low_t, schur[:qt, qt:]), schur
