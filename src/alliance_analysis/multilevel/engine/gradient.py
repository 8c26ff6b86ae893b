"""The deviance of a two- or three-level model with one or two client random effects (and at
most a therapist intercept) and its exact gradient, in real arithmetic (reverse mode).

These are the commonest models (sessions in clients, a random intercept and a random slope
for time, perhaps a therapist intercept) and the ones where lme4 is fastest, so they get their
own evaluation: :class:`ReverseGradient` gives what :class:`~alliance_analysis.multilevel.
engine.deviance.ComplexStep` gives (a value and gradient at a point, gradients at a batch of
points), for the profiled deviance in ``theta`` and for the deviance in ``(theta, sigma)``. A
complex-step gradient evaluates the deviance once per parameter in complex arithmetic (four
times the work of the real deviance for an intercept and a slope, each complex operation
about three real ones); the gradient below costs about one more real evaluation. Other models
(three or more client effects, therapist slopes) use the complex step.

Notes
-----
In the notation of :mod:`~alliance_analysis.multilevel.engine.blocks`, with ``P_i = F_i
Lambda``, ``G_i = P_i'P_i + I``, ``N_i = P_i G_i^{-1} P_i'`` and ``F = W'W - sum_i D_i'N_i
D_i``, the deviance is ``sum_i log det G_i + Phi(F)`` with ``Phi(F) = [log det F_xx] + n'
log r^2`` (profiled; ``[]`` for REML only) or ``[log det F_xx] + r^2 / sigma^2 + n' log(2 pi
sigma^2)`` (given ``sigma``), ``r^2 = F_yy - F_yx F_xx^{-1} F_xy``. Its differential in ``F``
is ``tr(Omega dF)`` with

    Omega_xx = [F_xx^{-1}] + w beta beta',  Omega_xy = -w beta,  Omega_yy = w,

``beta = F_xx^{-1} F_xy`` and ``w = n' / r^2`` (profiled) or ``1 / sigma^2``, so that
``d Phi = -sum_i tr(E_i dN_i)`` with ``E_i = D_i Omega D_i'`` (one matrix product with the
packed products of the ``D_i``). With ``H_i = G_i^{-1} P_i'`` and ``V_i = H_i E_i H_i'``,
``d log det G_i = 2 tr(H_i dP_i)`` and ``tr(E_i dN_i) = 2 tr((H_i E_i - V_i P_i') dP_i)``, so

    d deviance / d theta_m = 2 sum_i (Y_i F_i)[c_m, r_m],   Y_i = H_i - H_i E_i + V_i P_i',

for ``theta_m`` at ``(r_m, c_m)`` of ``Lambda`` (``dP_i = F_i dLambda``), and, given ``sigma``,
``d deviance / d sigma = 2 n' / sigma - 2 r^2 / sigma^3``. Every sum over clients is numpy's
pairwise sum.

Three levels, a therapist intercept with factor ``lambda``: therapist ``j``'s rows of ``U_j =
W_j'W_j - sum over its clients of D_i'N_i D_i`` are ``a_j = U_j[t, t]`` and ``u_j = U_j[t, (X,
y)]``; with ``g_j = lambda^2 a_j + 1`` and ``c_j = lambda^2 / g_j``, the deviance adds ``sum_j
log g_j`` and ``F = sum_j (U_j[(X, y), (X, y)] - c_j u_j u_j')``. Its differential in ``U_j``
is ``tr(Gamma_j dU_j)`` with

    Gamma_j = [[c_j + c_j^2 u_j' Omega u_j, -c_j u_j' Omega], [-c_j Omega u_j, Omega]],

so the client terms are those of two levels with ``E_i = D_i Gamma_j D_i'`` (``D_i`` now with
its therapist column; ``j`` the client's therapist), and ``d deviance / d lambda = sum_j 2
lambda (a_j / g_j - u_j' Omega u_j / g_j^2)``. Checked against the complex-step gradient in
``tests/test_engine_blocks.py``.

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48 (section 3.4).
.. [2] Giles, M. B. (2008). Collected matrix derivative results for forward and reverse mode
   algorithmic differentiation. In Advances in Automatic Differentiation (pp. 35-44).
   Springer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alliance_analysis.multilevel.engine.blocks import (client_runs, contract, small_weights,
                                                        therapist_sums)
from alliance_analysis.multilevel.engine.layout import NestedStats, Structure
from alliance_analysis.multilevel.engine.small import (log_determinant, sqrt, unpack_symmetric,
                                                       upper_pairs)

def applies(structure: Structure) -> bool:
    """Whether :class:`ReverseGradient` covers the model: one or two client random effects,
    and none or a therapist intercept alone."""
    return structure.q_therapist <= 1 and structure.q_client <= 2


@dataclass(frozen=True)
class _Run:
    """A run of clients (:func:`~alliance_analysis.multilevel.engine.blocks.client_runs`) and
    what every evaluation needs of it that does not depend on ``theta`` (three levels):
    ``top``, the therapist rows of ``W_j'W_j`` (``(r, 1, therapists)``), ``upper``, the sum
    over therapists of the rest (``(p + 1, p + 1, 1)``), and ``owner``, each client's
    therapist (its position in the run)."""

    stats: NestedStats
    top: np.ndarray | None = None
    upper: np.ndarray | None = None
    owner: np.ndarray | None = None

    @classmethod
    def of(cls, run: NestedStats, three_levels: bool) -> _Run:
        """The run ``run`` of a two-level (nothing to add) or three-level model."""
        if not three_levels:
            return cls(run)
        sizes = np.diff(np.r_[run.upper_starts, run.client_root.shape[-1]])
        return cls(run, run.upper_cross[0][:, None],
                   run.upper_cross[1:, 1:].sum(axis=-1)[..., None],
                   np.repeat(np.arange(run.upper_starts.size), sizes))


@dataclass(frozen=True)
class ReverseGradient:
    """The deviance and its exact gradient (see the module notes).

    Called at a point ``x`` it returns ``(value, gradient)``; :meth:`gradients` gives the
    gradients at a batch of points (the optimizer's Hessians). With ``sigma`` False, ``x`` is
    ``theta`` and the function the profiled deviance
    (:func:`~alliance_analysis.multilevel.engine.deviance.profiled_deviance`); with ``sigma``
    True, ``x`` is ``(theta, sigma)`` and the function
    :func:`~alliance_analysis.multilevel.engine.deviance.deviance` at ``sigma^2``.
    """

    stats: NestedStats
    structure: Structure
    reml: bool
    sigma: bool = False
    #: The runs of clients of each batch size, laid out once (:class:`_Run`).
    run_cache: dict[int, list[_Run]] = field(default_factory=dict, init=False, repr=False,
                                             compare=False)

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        values, grads = self.evaluate(np.asarray(x, dtype=float)[None])
        return float(values[0]), grads[0]

    def gradients(self, points: np.ndarray) -> np.ndarray:
        return self.evaluate(np.asarray(points, dtype=float))[1]

    def values(self, points: np.ndarray) -> np.ndarray:
        return self.evaluate(np.asarray(points, dtype=float))[0]

    def _runs(self, k: int) -> list[_Run]:
        """The runs of clients of a batch of ``k`` points."""
        if k not in self.run_cache:
            three = bool(self.structure.q_therapist)
            self.run_cache[k] = [_Run.of(run, three) for run in client_runs(self.stats, k)]
        return self.run_cache[k]

    def evaluate(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values ``(k,)`` and gradients ``(k, m)`` at the rows of ``points``."""
        structure, stats = self.structure, self.stats
        theta = points[:, :-1] if self.sigma else points
        m = structure.n_client_theta
        client_theta = theta[:, :m]
        p = structure.n_fixed
        n = stats.n_obs - (p if self.reml else 0)
        runs = self._runs(len(points))
        if structure.q_therapist:
            logdet, f, forward = _three_level_system(theta, runs, structure)
        else:
            logdet, removed, forward = np.zeros(len(points)), 0, []
            for run in runs:
                run_logdet, weights, *parts = small_weights(theta, run.stats.client_root,
                                                            structure)
                logdet = logdet + run_logdet
                removed = removed + contract(weights, run.stats.fixed_products)
                forward.append((parts, None))
            removed = unpack_symmetric(removed.T, p + 1).transpose(2, 0, 1)
            f = stats.upper_cross[:, :, 0][None] - removed
        try:
            low = np.linalg.cholesky(f)
        except np.linalg.LinAlgError:
            nan = np.full(len(points), np.nan)
            return nan, np.full(points.shape, np.nan)
        diagonal = np.diagonal(low, axis1=1, axis2=2)
        logdet_x = 2 * np.log(diagonal[:, :p]).sum(axis=1) if self.reml else 0
        r2 = diagonal[:, p] ** 2
        if self.sigma:
            sigma = points[:, -1]
            weight = 1 / sigma**2
            values = logdet + logdet_x + r2 * weight + n * np.log(2 * np.pi * sigma**2)
        else:
            weight = n / r2
            values = logdet + logdet_x + n * (1 + np.log(2 * np.pi * r2 / n))
        omega = _omega(f, p, weight, self.reml)
        packed = _packed(omega)
        grads = np.zeros(points.shape)
        for run, (parts, therapists) in zip(runs, forward, strict=True):
            # E_i = D_i Omega D_i' from the packed products: one (clients * pairs, cells) product
            e = (run.stats.fixed_products @ packed.T).transpose(2, 0, 1)
            if structure.q_therapist:
                e, lam_gradient = _therapist_adjoint(e, omega, theta[:, m], therapists, run)
                grads[:, m] += lam_gradient
            grads[:, :m] += _theta_gradient(parts, run.stats, structure, e)
        if self.sigma:
            grads[:, -1] = 2 * n / sigma - 2 * r2 / sigma**3
        return values, grads


def _three_level_system(theta: np.ndarray, runs: list[_Run], structure: Structure
                        ) -> tuple[np.ndarray, np.ndarray, list[tuple[list, tuple]]]:
    """``sum_i log det G_i + sum_j log g_j``, ``F`` (``(k, p+1, p+1)``) and, for each run of
    therapists, the clients' ``P_i`` and ``R_i`` (:func:`~alliance_analysis.multilevel.
    engine.blocks.small_weights`) and the therapists' ``(a_j, u_j, g_j)`` of the module notes
    (a therapist intercept), computed as :func:`~alliance_analysis.multilevel.engine.blocks.
    eliminate` computes them."""
    p, m = structure.n_fixed, structure.n_client_theta
    client_theta = theta[:, :m]
    lam = theta[:, m][:, None]
    logdet, f, forward = np.zeros(len(theta)), 0, []
    for run in runs:
        run_logdet, weights, *parts = small_weights(client_theta, run.stats.client_root,
                                                    structure)
        removed = unpack_symmetric(contract(weights, run.stats.fixed_products).T, p + 2, 1)
        # the therapist rows of W_j'W_j - sum over its clients of D_i'N_i D_i: (r, k,
        # therapists), in that (C) order, the layout the einsums below expect
        removed_t = therapist_sums(weights, run.stats).transpose(2, 0, 1)
        unscaled = np.subtract(run.top, removed_t, out=np.empty(removed_t.shape))
        a, u = unscaled[0], unscaled[1:]
        g = lam * lam * a + 1
        low_t = sqrt(g)
        b_t = (u * (lam / low_t))[None]
        f = f + (run.upper - removed - np.einsum("qakt,qbkt->abk", b_t, b_t))
        logdet = logdet + (run_logdet + log_determinant(low_t[None, None]))
        forward.append((parts, (a, u, g)))
    return logdet, f.transpose(2, 0, 1), forward


def _therapist_adjoint(e: np.ndarray, omega: np.ndarray, lam: np.ndarray,
                       therapists: tuple[np.ndarray, np.ndarray, np.ndarray], run: _Run
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``E_i = D_i Gamma_j D_i'`` (``(k, clients, pairs)``) of the clients of a run of
    therapists, ``e`` holding its ``Omega`` part, and this run's term of the gradient in the
    therapist intercept's ``theta`` (``(k,)``; module notes)."""
    a, u, g = therapists
    lam = lam[:, None]
    c = lam * lam / g
    omega_u = np.einsum("kab,bkt->akt", omega, u)
    quadratic = (u * omega_u).sum(axis=0)
    # Gamma_j's row of the therapist effect packed as the therapist products (the
    # off-diagonal cells doubled): (r, k, therapists), then for each client its therapist's
    gamma = np.concatenate([(c + c * c * quadratic)[None], -2 * c * omega_u])
    # one stacked (pairs, cells) x (cells, k) product per client
    e = e + (run.stats.therapist_products
             @ gamma[..., run.owner].transpose(2, 0, 1)).transpose(2, 0, 1)
    return e, (2 * lam * (a / g - quadratic / (g * g))).sum(axis=-1)


def _omega(f: np.ndarray, p: int, weight: np.ndarray, reml: bool) -> np.ndarray:
    """``Omega`` of the module notes for each ``F`` (``(k, p+1, p+1)``)."""
    inverse = np.linalg.inv(f[:, :p, :p])
    beta = np.einsum("kij,kj->ki", inverse, f[:, :p, p])
    omega = np.empty_like(f)
    omega[:, :p, :p] = (inverse if reml else 0) + weight[:, None, None] * (
        beta[:, :, None] * beta[:, None, :])
    omega[:, :p, p] = omega[:, p, :p] = -weight[:, None] * beta
    omega[:, p, p] = weight
    return omega


def _packed(omega: np.ndarray) -> np.ndarray:
    """``Omega`` packed as the products of the ``D_i``, the off-diagonal cells doubled:
    ``(k, cells)``."""
    rows, cols = upper_pairs(omega.shape[-1])
    return omega[:, rows, cols] * np.where(rows < cols, 2.0, 1.0)


def _theta_gradient(parts: tuple[list[list[np.ndarray]], list[np.ndarray]],
                    stats: NestedStats, structure: Structure, e: np.ndarray) -> np.ndarray:
    """``2 sum_i (Y_i F_i)[c_m, r_m]`` over the clients of ``stats`` (``(k, m)``).

    With ``R_i = (I + P_i P_i')^{-1}``: ``H_i = P_i' R_i`` and ``N_i = I - R_i``, so ``Y_i =
    H_i (I - E_i R_i) = P_i' S_i`` with ``S_i = R_i - R_i E_i R_i`` (symmetric), written out
    for ``q_c = 1`` and ``2`` (``F_i`` is upper, ``Lambda`` lower triangular); ``P_i`` and
    ``R_i`` (``parts``) are the forward pass's
    (:func:`~alliance_analysis.multilevel.engine.blocks.small_weights`).
    """
    rows, cols = structure.block_positions("client")
    root = stats.client_root
    p, r = parts
    if structure.q_client == 1:
        r = r[0]
        s = r - e[..., 0] * r * r
        return 2 * (p[0][0] * s * root[0, 0]).sum(axis=-1)[:, None]
    f00, f01, f11 = root[0, 0], root[0, 1], root[1, 1]
    (p00, p01), (p10, p11) = p
    r00, r01, r11 = r
    e00, e01, e11 = e[..., 0], 0.5 * e[..., 1], e[..., 2]
    re00, re01 = r00 * e00 + r01 * e01, r00 * e01 + r01 * e11
    re10, re11 = r01 * e00 + r11 * e01, r01 * e01 + r11 * e11
    s00 = r00 - (re00 * r00 + re01 * r01)
    s01 = r01 - (re00 * r01 + re01 * r11)
    s11 = r11 - (re10 * r01 + re11 * r11)
    out = np.empty((e.shape[0], rows.size))
    for j, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        # (Y_i F_i)[col, row], with the entries of Y_i = P_i' S_i it needs
        if (col, row) == (0, 0):
            yf = (p00 * s00 + p10 * s01) * f00
        elif (col, row) == (0, 1):
            yf = (p00 * s00 + p10 * s01) * f01 + (p00 * s01 + p10 * s11) * f11
        else:
            yf = (p01 * s00 + p11 * s01) * f01 + (p01 * s01 + p11 * s11) * f11
        out[:, j] = 2 * yf.sum(axis=-1)
    return out
