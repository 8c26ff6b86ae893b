"""Conditional modes (BLUPs) of the random effects and their conditional variances.

Used by :mod:`alliance_analysis.multilevel.engine.nested` after the fit, from the same block factorisation as
the deviance (:mod:`alliance_analysis.multilevel.engine.deviance`), in real arithmetic.

Notes
-----
With the factors of the penalised least squares system at the optimum (module notes of
:mod:`alliance_analysis.multilevel.engine.deviance`), the spherical random effects ``u`` solve
``L' u = r`` by back substitution, therapists first (Bates et al. 2015, eq. 16 and section
3.5), and ``b = Lambda u``:

* therapist ``j``: ``L_j' u_j = B_j (y) - B_j (X) beta``;
* client ``i`` of therapist ``j``: ``L_i' u_i = B_i (y) - B_i (X) beta - B_i (Z_t) b_j``.

The conditional covariance of ``b`` given the data, with ``beta`` and ``theta`` taken as known
(lme4's ``condVar``), is ``sigma^2 Lambda [(L L')^-1]_block Lambda'``. For a therapist, the
block of the inverse is ``(L_j L_j')^-1`` (the inverse of the Schur complement); for a client
it is ``L_i^-T (I + V_i V_i') L_i^-1`` with ``V_i = B_i (Z_t) Lambda_t L_j^-T``, which adds the
uncertainty of the client's therapist effect (``V_i = 0`` in two-level models).

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
.. [2] Henderson, C. R. (1975). Best linear unbiased estimation and prediction under a
   selection model. Biometrics, 31(2), 423-447.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alliance_analysis.multilevel.engine.blocks import client_step, therapist_step
from alliance_analysis.multilevel.engine.layout import NestedStats, Structure
from alliance_analysis.multilevel.engine.small import backward_solve, forward_solve


@dataclass(frozen=True)
class Modes:
    """Conditional modes ``(groups, q)`` and conditional covariances ``(groups, q, q)``."""

    client: np.ndarray
    client_cov: np.ndarray
    therapist: np.ndarray
    therapist_cov: np.ndarray


def conditional_modes(theta: np.ndarray, beta: np.ndarray, sigma2: float, stats: NestedStats,
                      structure: Structure) -> Modes:
    """The random effects' conditional modes and covariances at the estimates; see Notes."""
    qt, p = structure.q_therapist, structure.n_fixed
    lam_c, lam_t = structure.factors(theta)
    low, b = (a[:, :, 0] for a in client_step(theta[None, :structure.n_client_theta],
                                               stats.client_cross, structure))
    residual = b[:, qt + p] - np.einsum("qkg,k->qg", b[:, qt:qt + p], beta)
    n_clients = low.shape[-1]
    inverse = forward_solve(low, np.broadcast_to(np.eye(low.shape[0])[..., None], low.shape))
    spread = inverse  # L_i^-1; [L_i^-1; V_i' L_i^-1] for three levels (module notes)
    therapist = np.zeros((0, stats.upper_starts.size))
    therapist_cov = np.zeros((stats.upper_starts.size, 0, 0))
    if qt:
        low_t, b_t, _ = (a[:, :, 0] for a in therapist_step(b[:, :, None], theta[None],
                                                             np.zeros(1, dtype=int), stats,
                                                             structure))
        u_t = backward_solve(low_t, b_t[:, p] - np.einsum("qkh,k->qh", b_t[:, :p], beta))
        therapist = np.einsum("ab,bh->ah", lam_t, u_t)
        inverse_t = forward_solve(low_t, np.broadcast_to(np.eye(qt)[..., None], low_t.shape))
        therapist_cov = sigma2 * _outer(np.einsum("ab,cbh->ach", lam_t, inverse_t))
        owner = np.repeat(np.arange(stats.upper_starts.size),
                          np.diff(np.r_[stats.upper_starts, n_clients]))
        residual = residual - np.einsum("qcg,cg->qg", b[:, :qt], therapist[:, owner])
        v = np.einsum("qcg,cd,edg->qeg", b[:, :qt], lam_t, inverse_t[..., owner])
        spread = np.concatenate([inverse, np.einsum("qeg,qbg->ebg", v, inverse)], axis=0)
    client = np.einsum("ab,bg->ag", lam_c, backward_solve(low, residual))
    client_cov = sigma2 * _outer(np.einsum("ab,cbg->acg", lam_c, spread))
    return Modes(client.T, client_cov, therapist.T, therapist_cov)


def _outer(m: np.ndarray) -> np.ndarray:
    """``M M'`` for each group of ``m`` (``(q, s, groups)``), as ``(groups, q, q)``."""
    return np.einsum("asg,bsg->gab", m, m)
