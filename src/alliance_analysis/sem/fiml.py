"""The case-wise normal likelihood by pattern of observed variables, vectorised over patterns.

Full-information ML (FIML) sums the normal log-likelihood of each case over the variables
it has observed. Cases sharing a pattern of observed variables share the submatrix of the
model-implied covariance matrix, so the data enter only through each pattern's sufficient
statistics: its number of cases ``n``, mean vector ``xbar`` and covariance matrix ``S``
(divisor ``n``). With ``r = xbar - mu`` and ``T = S + r r'`` on the pattern's variables,

    -2 logL = sum over patterns of  n [k log(2 pi) + log|Sigma_oo| + tr(Sigma_oo^-1 T)].

The patterns are stacked once (:func:`stack`) into ``p x p`` arrays, zero where a variable
is missing; each pattern's submatrix is then inverted as one batched operation on
``Sigma`` with the missing rows and columns replaced by those of the identity matrix,
whose determinant is ``|Sigma_oo|`` and whose inverse holds ``Sigma_oo^-1`` in the
observed cells. Every sum over patterns is then a sum of ``p x p`` arrays (lavaan does the
same per pattern in ``lav_mvnorm_missing_*``; here there is no loop over patterns).

Derivatives, with ``P = Sigma_oo^-1`` (zero-padded), ``Q = P T P``, ``A = P - Q``,
``u = P r`` and ``dSigma_k``, ``dmu_k`` the derivatives of the model's moments:

* gradient of -2 logL: ``tr(W dSigma_k) - 2 v' dmu_k`` with ``W = sum n A`` and
  ``v = sum n u``;
* expected information of logL: ``sum n [tr(P dSigma_k P dSigma_l) / 2 + dmu_k' P dmu_l]``;
* Hessian of -2 logL (the observed information is half of it)::

      sum n [- tr(P dSigma_k P dSigma_l) + 2 tr(P dSigma_k Q dSigma_l) + 2 dmu_k' P dmu_l
             + 2 u' dSigma_k P dmu_l + 2 u' dSigma_l P dmu_k]
      + tr(W d2Sigma_kl) - 2 v' d2mu_kl,

  where the last line is the curvature of the model itself (:func:`model_curvature`). The weighted sums over patterns (``sum n P (x) P``,
  ``sum n P (x) Q``, ``sum n u (x) P``) are formed once, so the cost does not grow with
  the number of parameters times the number of patterns.

References
----------
Arbuckle, J. L. (1996). Full information estimation in the presence of incomplete data. In
G. A. Marcoulides & R. E. Schumacker (Eds.), *Advanced structural equation modeling*.
Erlbaum.
Magnus, J. R., & Neudecker, H. (1999). *Matrix differential calculus with applications in
statistics and econometrics* (rev. ed.). Wiley.
Savalei, V. (2010). Expected versus observed information in SEM with incomplete normal and
nonnormal data. *Psychological Methods*, 15(4), 352-367.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

_LOG_2PI = float(np.log(2 * np.pi))
#: Largest number of variables for which the information is formed through the
#: ``p^2 x p^2`` sum of Kronecker products (45: 4.1 million entries).
_KRON_MAX_VARIABLES = 45


@dataclass(frozen=True)
class PatternStack:
    """The patterns' sufficient statistics as stacked, zero-padded arrays.

    Attributes
    ----------
    observed
        ``(G, p)``: which variables each pattern observes.
    pair
        ``(G, p, p)``: both variables of a cell observed.
    n
        ``(G,)`` numbers of cases.
    count
        ``(G,)`` numbers of observed variables.
    mean
        ``(G, p)`` pattern means, 0 where missing.
    cov
        ``(G, p, p)`` pattern covariance matrices (divisor n), 0 where missing.
    """

    observed: np.ndarray
    pair: np.ndarray
    n: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    cov: np.ndarray

    @property
    def p(self) -> int:
        """Number of variables."""
        return self.observed.shape[1]


def stack(patterns: Sequence[tuple[np.ndarray, int, np.ndarray, np.ndarray]],
          p: int) -> PatternStack:
    """Stack ``(indices, n, mean, covariance)`` per pattern into zero-padded arrays."""
    g = len(patterns)
    observed = np.zeros((g, p), dtype=bool)
    mean, cov = np.zeros((g, p)), np.zeros((g, p, p))
    n = np.zeros(g)
    for k, (idx, n_k, xbar, s) in enumerate(patterns):
        idx = np.asarray(idx, dtype=int)
        observed[k, idx] = True
        n[k] = n_k
        mean[k, idx] = xbar
        cov[k][np.ix_(idx, idx)] = s
    pair = observed[:, :, None] & observed[:, None, :]
    return PatternStack(observed=observed, pair=pair, n=n, count=observed.sum(axis=1),
                        mean=mean, cov=cov)


def group_rows(values: np.ndarray, observed: np.ndarray
               ) -> tuple[tuple[tuple[np.ndarray, int, np.ndarray, np.ndarray], ...],
                          tuple[np.ndarray, ...]]:
    """Group cases by pattern of observed variables, once.

    Returns, per pattern (in the lexicographic order of the observed/missing rows, as
    ``np.unique(observed, axis=0)``), ``(indices of the observed variables, n, mean,
    covariance with divisor n)``, and the pattern's cases (its observed columns, in the
    data's order).
    """
    unique, inverse = _unique_rows(observed)
    order = np.argsort(inverse, kind="stable")
    ends = np.cumsum(np.bincount(inverse, minlength=len(unique)))
    groups, cases = [], []
    for g, pattern in enumerate(unique):
        idx = np.flatnonzero(pattern)
        rows = values[order[ends[g - 1] if g else 0:ends[g]]][:, idx]
        centred = rows - rows.mean(axis=0)
        groups.append((idx, len(rows), rows.mean(axis=0), centred.T @ centred / len(rows)))
        cases.append(rows)
    return tuple(groups), tuple(cases)


def _unique_rows(observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(observed, axis=0, return_inverse=True)`` for a boolean matrix (the
    patterns in the same lexicographic order), through one integer code per row when the
    columns fit in 62 bits: much faster than comparing rows."""
    p = observed.shape[1]
    if p > 62:
        unique, inverse = np.unique(observed, axis=0, return_inverse=True)
        return unique, inverse.ravel()
    weights = np.left_shift(np.int64(1), np.arange(p - 1, -1, -1, dtype=np.int64))
    codes, inverse = np.unique(observed.astype(np.int64) @ weights, return_inverse=True)
    return (codes[:, None] & weights) != 0, inverse.ravel()


def _blocks(data: PatternStack, sigma: np.ndarray) -> np.ndarray:
    """Each pattern's ``Sigma_oo``, with identity rows and columns for missing variables."""
    return np.where(data.pair, sigma, np.eye(data.p))


def _spread(data: PatternStack, mean: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``r = xbar - mu`` (0 without a mean structure) and ``T = S + r r'``, zero-padded."""
    if mean is None:
        return np.zeros(data.mean.shape), data.cov
    resid = np.where(data.observed, data.mean - mean, 0.0)
    return resid, data.cov + resid[:, :, None] * resid[:, None, :]


def minus2_loglik(data: PatternStack, sigma: np.ndarray, mean: np.ndarray | None) -> float:
    """-2 log-likelihood summed over patterns; inf where a ``Sigma_oo`` has a determinant
    that is not positive."""
    blocks = _blocks(data, sigma)
    sign, logdet = np.linalg.slogdet(blocks)
    if np.any(sign <= 0):
        return np.inf
    _, spread = _spread(data, mean)
    trace = np.einsum("gii->g", np.linalg.solve(blocks, spread))
    return float(data.n @ (data.count * _LOG_2PI + logdet + trace))


@dataclass(frozen=True)
class _Weights:
    """The per-pattern pieces of the derivatives at one ``Sigma, mu``."""

    inv: np.ndarray      # P, (G, p, p), zero-padded
    quad: np.ndarray     # Q = P T P
    u: np.ndarray        # P r, (G, p)
    w: np.ndarray        # sum n (P - Q), (p, p)
    v: np.ndarray        # sum n u, (p,)


def _weights(data: PatternStack, sigma: np.ndarray, mean: np.ndarray | None) -> _Weights:
    inv = np.linalg.inv(_blocks(data, sigma)) * data.pair
    resid, spread = _spread(data, mean)
    quad = inv @ spread @ inv
    u = np.einsum("gij,gj->gi", inv, resid)
    return _Weights(inv=inv, quad=quad, u=u, w=np.tensordot(data.n, inv - quad, axes=1),
                    v=data.n @ u)


def _kron_form(weights: np.ndarray, left: np.ndarray, right: np.ndarray,
               d_sigma: np.ndarray) -> np.ndarray:
    """``sum_g weights_g tr(left_g dSigma_k right_g dSigma_l)`` for all k, l (symmetric
    ``left_g``, ``right_g`` and ``dSigma``): the weighted sum of ``left (x) right`` over
    patterns formed once, then two products with the stacked ``dSigma``. Above
    :data:`_KRON_MAX_VARIABLES` variables (a ``p^2 x p^2`` matrix of more than 32 MB)
    pattern by pattern instead."""
    g, p = left.shape[:2]
    k = len(d_sigma)
    if p > _KRON_MAX_VARIABLES:
        out = np.zeros((k, k))
        for w_g, left_g, right_g in zip(weights, left, right):
            out += w_g * np.einsum("kij,lji->kl", left_g @ d_sigma, right_g @ d_sigma)
        return out
    # kron[a, b, i, j] = sum_g w_g left_g[a, b] right_g[i, j]
    kron = (weights[:, None] * left.reshape(g, p * p)).T @ right.reshape(g, p * p)
    # sum dS_k[j, a] L[a, b] dS_l[b, i] R[i, j] = tr(dS_k L dS_l R), which equals
    # tr(L dS_k R dS_l) for symmetric matrices: rows (j, a), columns (b, i)
    kron = kron.reshape(p, p, p, p).transpose(3, 0, 1, 2).reshape(p * p, p * p)
    flat = d_sigma.reshape(k, p * p)
    return flat @ kron @ flat.T


def gradient_information(data: PatternStack, sigma: np.ndarray, mean: np.ndarray | None,
                         d_sigma: np.ndarray, d_mean: np.ndarray, information: bool = True
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of -2 logL and the expected information of logL (0 without
    ``information``), for parameters with derivatives ``d_sigma`` (k, p, p) and
    ``d_mean`` (k, p) of the implied moments."""
    parts = _weights(data, sigma, mean)
    grad = np.tensordot(d_sigma, parts.w, axes=2) - 2 * d_mean @ parts.v
    if not information:
        return grad, np.zeros((len(grad), len(grad)))
    info = (0.5 * _kron_form(data.n, parts.inv, parts.inv, d_sigma)
            + d_mean @ np.tensordot(data.n, parts.inv, axes=1) @ d_mean.T)
    return grad, info


def hessian(data: PatternStack, sigma: np.ndarray, mean: np.ndarray | None,
            d_sigma: np.ndarray, d_mean: np.ndarray,
            curvature: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
            ) -> np.ndarray:
    """Hessian of -2 logL: the terms of the module docstring, symmetrised.

    ``curvature(W, v)`` returns ``tr(W d2Sigma_kl) - 2 v' d2mu_kl`` for
    ``W = sum n (P - P T P)`` and ``v = sum n P r`` (the gradient of -2 logL with respect
    to ``Sigma`` and to ``-mu / 2``), e.g. :func:`model_curvature`; None for moments
    linear in the parameters.
    """
    parts = _weights(data, sigma, mean)
    n, p = data.n, data.p
    hess = (-_kron_form(n, parts.inv, parts.inv, d_sigma)
            + 2 * _kron_form(n, parts.inv, parts.quad, d_sigma)
            + 2 * d_mean @ np.tensordot(n, parts.inv, axes=1) @ d_mean.T)
    # cross[k, l] = sum n u' dSigma_k P dmu_l, through sum n u (x) P, (p, p, p)
    u_kron_p = ((n[:, None] * parts.u).T @ parts.inv.reshape(len(n), p * p)).reshape(p * p, p)
    cross = d_sigma.reshape(len(d_sigma), p * p) @ u_kron_p @ d_mean.T
    hess += 2 * (cross + cross.T)
    if curvature is not None:
        hess += curvature(parts.w, parts.v)
    return (hess + hess.T) / 2


def model_curvature(mats: dict[str, np.ndarray], patterns: dict[str, np.ndarray],
                    w: np.ndarray, v: np.ndarray, meanstructure: bool) -> np.ndarray:
    """``tr(W d2Sigma_kl) - 2 v' d2mu_kl`` for the LISREL all-y model.

    With ``C = (I - B)^-1`` and ``M = Lambda C``: ``Sigma = M Psi M' + Theta`` and
    ``mu = M gamma1 + gamma2``, so only ``M`` is not linear in the parameters:
    ``dM_k = dLambda_k C + M dB_k C`` and
    ``d2M_kl = dLambda_k C dB_l C + dLambda_l C dB_k C + M dB_l C dB_k C + M dB_k C dB_l C``.
    With ``W`` symmetric,

        tr(W d2Sigma_kl) = 2 tr(W d2M_kl Psi M') + 2 tr(W dM_k Psi dM_l')
                           + 2 tr(W dM_k dPsi_l M') + 2 tr(W dM_l dPsi_k M'),
        v' d2mu_kl = v' d2M_kl gamma1 + v' dM_k dgamma1_l + v' dM_l dgamma1_k.

    ``mats`` are the model matrices (``lambda, beta, psi`` and, with means, ``gamma1``),
    ``patterns`` the (parameters x matrix) arrays of where each parameter sits.
    """
    lam, beta, psi = mats["lambda"], mats["beta"], mats["psi"]
    d_lam, d_beta, d_psi = patterns["lambda"], patterns["beta"], patterns["psi"]
    c = np.linalg.inv(np.eye(len(beta)) - beta)
    m = lam @ c
    d_m = d_lam @ c + m @ d_beta @ c                               # (k, p, m)
    # d2M terms, contracted with Z = 2 Psi M' W - 2 gamma1 v' (m x p): tr(Z d2M_kl)
    z = 2 * psi @ m.T @ w
    if meanstructure:
        z = z - 2 * np.outer(mats["gamma1"], v)
    first = np.einsum("kab,lba->kl", c @ z @ d_lam @ c, d_beta)  # tr(Z dLambda_k C dB_l C)
    second = np.einsum("lab,kba->kl", (c @ z @ m) @ d_beta @ c, d_beta)  # tr(Z M dB_l C dB_k C)
    out = first + first.T + second + second.T
    # 2 tr(W dM_k Psi dM_l')
    w_dm = w @ d_m                                                  # (k, p, m)
    out += 2 * np.einsum("kpa,ab,lpb->kl", w_dm, psi, d_m)
    # 2 tr(W dM_k dPsi_l M') and its transpose
    mixed = 2 * np.einsum("kab,lba->kl", m.T @ w_dm, d_psi)
    out += mixed + mixed.T
    if meanstructure:
        # -2 v' dM_k dgamma1_l and its transpose
        mean_part = -2 * np.einsum("p,kpa,la->kl", v, d_m, patterns["gamma1"])
        out += mean_part + mean_part.T
    return out


def em_saturated(data: PatternStack, tol: float = 1e-13, max_iter: int = 100_000
                 ) -> tuple[np.ndarray, np.ndarray, bool]:
    """ML mean and covariance of incomplete normal data by EM, all patterns at once.

    The unrestricted (saturated, h1) model under FIML, as lavaan's ``lav_mvnorm_missing_
    h1_estimate_moments``. Starts from each variable's available-case mean and ML variance
    (covariances 0). The E step regresses each pattern's missing variables on its observed
    ones, ``B = Sigma_mo Sigma_oo^-1``: with ``T = D + (I - D) Sigma P`` (``D`` the
    pattern's observed variables, ``P`` the zero-padded ``Sigma_oo^-1``) the expected sums
    are ``n (T xbar + c)`` and ``n [T S T' + (T xbar + c)(T xbar + c)' + (I - D)(Sigma -
    Sigma P Sigma)(I - D)]`` with ``c = (I - D)(mu - Sigma P mu)``; the M step divides
    by N. Stops when the largest change of a mean or covariance is below
    ``tol * max(1, max |Sigma|)``; the last value says whether it did.

    References
    ----------
    Dempster, A. P., Laird, N. M., & Rubin, D. B. (1977). Maximum likelihood from
    incomplete data via the EM algorithm. *Journal of the Royal Statistical Society B*,
    39, 1-38.
    """
    n, obs = data.n, data.observed.astype(float)
    total = n.sum()
    n_j = n @ obs
    mean = (n @ data.mean) / n_j
    centred = np.where(data.observed, data.mean - mean, 0.0)
    var = (n @ (np.einsum("gii->gi", data.cov) + centred ** 2)) / n_j
    cov = np.diag(var)
    missing = 1.0 - obs
    eye = np.eye(data.p)
    for _ in range(max_iter):
        inv = np.linalg.inv(_blocks(data, cov)) * data.pair
        sp = cov @ inv                                            # (G, p, p): Sigma P
        t = obs[:, :, None] * eye + missing[:, :, None] * sp      # D + (I - D) Sigma P
        c = missing * (mean - sp @ mean)
        centre = np.einsum("gij,gj->gi", t, data.mean) + c
        cond = (missing[:, :, None] * missing[:, None, :]) * (cov - sp @ cov)
        new_mean = n @ centre / total
        second = (t @ data.cov @ t.transpose(0, 2, 1) + centre[:, :, None] * centre[:, None, :]
                  + cond)
        new_cov = np.tensordot(n, second, axes=1) / total - np.outer(new_mean, new_mean)
        change = max(np.max(np.abs(new_mean - mean)), np.max(np.abs(new_cov - cov)))
        mean, cov = new_mean, new_cov
        if change < tol * max(1.0, np.max(np.abs(cov))):
            return mean, cov, True
    return mean, cov, False
