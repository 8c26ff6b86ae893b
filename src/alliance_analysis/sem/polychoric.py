"""Polychoric correlations of ordinal items, with their asymptotic covariance matrix.

Likert items are coarse, bounded readings of a continuous latent response. The polychoric
correlation is the correlation of the two latent normal responses that, cut at the item's
thresholds, reproduce the observed two-way table (Olsson 1979). It is estimated in two steps,
as in lavaan and psych: the thresholds of each item from its marginal proportions, then each
correlation by maximum likelihood of the bivariate table with the thresholds held fixed.

semopy's own polychoric routine is not used: it breaks on numpy >= 2.4 / scipy >= 1.14 and a
fork records it silently returning Pearson correlations under pandas copy-on-write.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from alliance_analysis.errors import AllianceDataError

#: Largest |rho| searched; the bivariate likelihood is undefined at exactly +-1.
_RHO_BOUND = 0.999999

#: An estimate within this distance of :data:`_RHO_BOUND` is flagged as on the boundary.
_BOUNDARY_TOLERANCE = 1e-4

#: Added to the empty cell of a 2x2 table (lavaan's ``zero.add = c(0.5, 0)``: 0.5 for 2x2
#: tables, nothing for larger ones).
_ZERO_ADD_2X2 = 0.5


@dataclass(frozen=True)
class PolychoricResult:
    """Two-step polychoric correlations of a set of ordinal items.

    Attributes
    ----------
    rho
        Item x item polychoric correlation matrix (1 on the diagonal).
    thresholds
        One row per threshold: ``item``, ``threshold`` (``t1``, ``t2``, ...), ``estimate``.
    n
        Number of complete cases used (listwise deletion).
    gamma
        Asymptotic covariance matrix of ``sqrt(n) * (estimates - truth)`` for the stacked
        vector of all thresholds (item by item) then all correlations (pairs in the order of
        :attr:`pairs`), labelled like lavaan (``"wai_1|t1"``, ``"wai_1~~wai_2"``).
    pairs
        The item pairs, in the order their correlations appear in ``gamma``.
    notes
        Corrections applied, naming the items: a 2x2 table with one empty cell is
        estimated from lavaan's margin-preserving correction (see :func:`polychoric`).
    warnings
        Problems, naming the items: a correlation on the boundary of its range
        (``|rho|`` within 1e-4 of the bound, e.g. a 2x2 table with two empty cells), whose
        estimate and standard error mean little.
    """

    rho: pd.DataFrame
    thresholds: pd.DataFrame
    n: int
    gamma: pd.DataFrame
    pairs: tuple[tuple[str, str], ...]
    notes: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def standard_errors(self) -> pd.Series:
        """Standard errors of the thresholds and correlations, ``sqrt(diag(gamma) / (n - 1))``.

        The divisor is ``n - 1``, as ``lavaan::lavCor(se = "standard")`` (which rescales its
        N-divisor covariance of the sample statistics by ``N / (N - 1)``).
        """
        return pd.Series(np.sqrt(np.diag(self.gamma.to_numpy()) / (self.n - 1)),
                         index=self.gamma.index)


def bivariate_normal_cdf(h: np.ndarray, k: np.ndarray, rho: float) -> np.ndarray:
    """P(Z1 <= h, Z2 <= k) for standard bivariate normal variables with correlation ``rho``.

    Exact to machine precision through Owen's T function (Owen 1956):
    ``Phi2(h, k) = (Phi(h) + Phi(k)) / 2 - T(h, a_h) - T(k, a_k) - c`` with
    ``a_h = (k - rho h) / (h sqrt(1 - rho^2))``, ``a_k = (h - rho k) / (k sqrt(1 - rho^2))``
    and ``c = 1/2`` when ``h k < 0`` or ``h k = 0`` with ``h + k < 0`` (else 0). Infinite
    limits are allowed.

    References
    ----------
    Owen, D. B. (1956). Tables for computing bivariate normal probabilities. *Annals of
    Mathematical Statistics*, 27, 1075-1090.
    """
    h, k = np.broadcast_arrays(np.asarray(h, dtype=float), np.asarray(k, dtype=float))
    s = np.sqrt(1.0 - rho * rho)
    finite = np.isfinite(h) & np.isfinite(k)
    hf, kf = np.where(finite, h, 1.0), np.where(finite, k, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        a_h = (kf - rho * hf) / (hf * s)
        a_k = (hf - rho * kf) / (kf * s)
    t_h = np.where(hf == 0, 0.25 * np.sign(kf), special.owens_t(hf, a_h))  # T(0, +-inf)
    t_k = np.where(kf == 0, 0.25 * np.sign(hf), special.owens_t(kf, a_k))
    c = np.where((hf * kf < 0) | ((hf * kf == 0) & (hf + kf < 0)), 0.5, 0.0)
    inner = 0.5 * (special.ndtr(hf) + special.ndtr(kf)) - t_h - t_k - c
    both_zero = (hf == 0) & (kf == 0)
    inner = np.where(both_zero, 0.25 + np.arcsin(rho) / (2 * np.pi), inner)
    outer = np.where((h == -np.inf) | (k == -np.inf), 0.0,
                     np.where(h == np.inf, special.ndtr(np.where(np.isfinite(k), k, 0.0)),
                              special.ndtr(np.where(np.isfinite(h), h, 0.0))))
    outer = np.where((h == np.inf) & (k == np.inf), 1.0, outer)
    return np.where(finite, inner, outer)


def bivariate_normal_pdf(h: np.ndarray, k: np.ndarray, rho: float) -> np.ndarray:
    """Standard bivariate normal density at (h, k); 0 where either limit is infinite."""
    h, k = np.broadcast_arrays(np.asarray(h, dtype=float), np.asarray(k, dtype=float))
    finite = np.isfinite(h) & np.isfinite(k)
    hf, kf = np.where(finite, h, 0.0), np.where(finite, k, 0.0)
    one_minus = 1.0 - rho * rho
    q = (hf * hf - 2 * rho * hf * kf + kf * kf) / one_minus
    return np.where(finite, np.exp(-0.5 * q) / (2 * np.pi * np.sqrt(one_minus)), 0.0)


def polychoric(items: pd.DataFrame) -> PolychoricResult:
    """Two-step polychoric correlations and their asymptotic covariance (Olsson 1979).

    Parameters
    ----------
    items
        Ordinal item responses (integer codes; the order of the codes is the order of the
        categories). Rows with any missing item are dropped (listwise, as lavaan's default).

    Returns
    -------
    PolychoricResult
        The correlation matrix, thresholds, the number of cases, the asymptotic covariance
        matrix ``gamma`` of thresholds and correlations, and notes and warnings naming the
        items concerned.

    Notes
    -----
    *Step 1.* The thresholds of item j are ``tau_c = Phi^-1(P(X_j <= c))`` from the marginal
    proportions of the observed categories. *Step 2.* Each correlation maximises the
    bivariate multinomial log-likelihood ``sum_ab n_ab log pi_ab(rho)`` with the cell
    probabilities ``pi_ab`` from :func:`bivariate_normal_cdf` and the thresholds fixed
    (bounded Brent search, tolerance 1e-12).

    ``gamma`` is Muthen's (1984) sandwich for this two-step estimator,
    ``n A^-1 B A^-T``, where the estimating equations are the case-wise scores of the
    univariate threshold likelihoods and of the bivariate correlation likelihoods, ``B`` is
    the cross-product of the scores and ``A`` their (outer-product) derivative matrix,
    lower block-triangular because the correlations depend on the thresholds but not the
    reverse. Its diagonal gives lavaan's DWLS weights; the whole matrix gives robust
    standard errors and the mean- and variance-adjusted chi-square. Standard errors
    (:meth:`PolychoricResult.standard_errors`) divide it by ``n - 1``, as ``lavCor``.

    *Empty cells.* A 2x2 table with one empty cell puts the ML estimate on the boundary
    (+-1, with an unbounded standard error); as lavaan (``zero.add = c(0.5, 0)``,
    ``zero.keep.margins = TRUE``), 0.5 is moved into the empty cell and its diagonal
    opposite from the other two cells, keeping the margins and so the thresholds, and the
    correlation is estimated from that table (its scores, and so ``gamma``, still come from
    the observed cases). Each correction is listed in ``notes``; any correlation still on
    the boundary is listed in ``warnings``.

    Checked against ``psych::polychoric`` and ``lavaan::lavCor`` (bfi N1-N5, n = 2694):
    see ``tests/test_polychoric.py`` for the tolerances; the empty-cell correction against
    ``lavCor`` in ``tests/test_sem_defects.py``.

    References
    ----------
    Olsson, U. (1979). Maximum likelihood estimation of the polychoric correlation
    coefficient. *Psychometrika*, 44, 443-460.
    Muthen, B. (1984). A general structural equation model with dichotomous, ordered
    categorical, and continuous latent variable indicators. *Psychometrika*, 49, 115-132.
    Rosseel, Y. (2012). lavaan: An R package for structural equation modeling. *Journal of
    Statistical Software*, 48(2), 1-36.
    """
    complete, names, codes, edges, pairs, rho, notes, flags = _estimate(items)
    gamma = _muthen_gamma(codes, edges, rho, pairs)
    labels = [f"{name}|t{m + 1}" for name, edge in zip(names, edges)
              for m in range(len(edge) - 2)]
    labels += [f"{names[j]}~~{names[k]}" for j, k in pairs]
    thresholds = pd.DataFrame(
        [{"item": name, "threshold": f"t{m + 1}", "estimate": edge[m + 1]}
         for name, edge in zip(names, edges) for m in range(len(edge) - 2)])
    return PolychoricResult(
        rho=pd.DataFrame(rho, index=names, columns=names), thresholds=thresholds,
        n=len(complete), gamma=pd.DataFrame(gamma, index=labels, columns=labels),
        pairs=tuple((names[j], names[k]) for j, k in pairs), notes=notes, warnings=flags)


def _estimate(items: pd.DataFrame) -> tuple:
    """Complete rows, names, codes, edges, pairs, correlation matrix, notes and warnings."""
    complete = items.dropna()
    if len(complete) < 2:
        raise AllianceDataError(
            f"polychoric correlations need at least 2 complete rows of {list(items.columns)}; "
            f"got {len(complete)}")
    names = [str(c) for c in items.columns]
    codes, edges = [], []
    for name in names:
        code, edge = _categories(complete[name], name)
        codes.append(code)
        edges.append(edge)
    pairs = tuple(combinations(range(len(names)), 2))
    rho = np.eye(len(names))
    notes, flags = [], []
    for j, k in pairs:
        table = np.zeros((len(edges[j]) - 1, len(edges[k]) - 1))
        np.add.at(table, (codes[j], codes[k]), 1.0)
        corrected = _zero_cell_correction(table)
        if corrected is not None:
            notes.append(
                f"the 2x2 table of {names[j]} and {names[k]} has an empty cell: estimated "
                f"from lavaan's margin-preserving correction ({_ZERO_ADD_2X2} moved into the "
                f"empty cell and its opposite): {corrected.tolist()}")
            table = corrected
        rho[j, k] = rho[k, j] = _pair_rho(table, edges[j], edges[k])
        if abs(rho[j, k]) >= _RHO_BOUND - _BOUNDARY_TOLERANCE:
            flags.append(
                f"the polychoric correlation of {names[j]} and {names[k]} is on the boundary "
                f"({rho[j, k]:.6f}): the items are (nearly) redundant or their table has empty "
                "cells; its estimate and standard error are unreliable")
    return complete, names, codes, edges, pairs, rho, tuple(notes), tuple(flags)


def _zero_cell_correction(table: np.ndarray) -> np.ndarray | None:
    """lavaan's correction of a 2x2 table with exactly one empty cell, else None.

    ``zero.add = c(0.5, 0)`` with ``zero.keep.margins = TRUE``: 0.5 is added to the empty
    cell and to the cell diagonally opposite and taken from the other two, so the margins
    (and the thresholds) are unchanged; (30, 0; 20, 30) becomes (29.5, 0.5; 20.5, 29.5).
    Larger tables and 2x2 tables with two empty cells (a correlation of +-1) are left as
    they are.
    """
    if table.shape != (2, 2) or np.count_nonzero(table == 0) != 1:
        return None
    main_diagonal = table[0, 0] == 0 or table[1, 1] == 0
    sign = 1.0 if main_diagonal else -1.0
    return table + sign * _ZERO_ADD_2X2 * np.array([[1.0, -1.0], [-1.0, 1.0]])


def _categories(values: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
    """0-based category codes and threshold edges ``[-inf, tau_1, ..., tau_C-1, inf]``."""
    levels, code = np.unique(values.to_numpy(dtype=float), return_inverse=True)
    if len(levels) < 2:
        raise AllianceDataError(
            f"item {name!r} has a single observed category ({levels.tolist()}); a polychoric "
            "correlation needs at least two. Drop the item or use the ML estimator")
    cumulative = np.cumsum(np.bincount(code))[:-1] / len(code)
    return code, np.concatenate([[-np.inf], special.ndtri(cumulative), [np.inf]])


def _cell_probabilities(edges_j: np.ndarray, edges_k: np.ndarray, rho: float) -> np.ndarray:
    """Bivariate cell probabilities ``pi_ab`` (categories of j by categories of k)."""
    cdf = bivariate_normal_cdf(edges_j[:, None], edges_k[None, :], rho)
    return np.diff(np.diff(cdf, axis=0), axis=1)


def _pair_rho(table: np.ndarray, edges_j: np.ndarray, edges_k: np.ndarray) -> float:
    """ML polychoric correlation of one pair's table with the thresholds held fixed."""

    def minus_loglik(rho: float) -> float:
        probs = np.clip(_cell_probabilities(edges_j, edges_k, rho), 1e-300, None)
        return -float(np.sum(table * np.log(probs)))

    found = optimize.minimize_scalar(minus_loglik, bounds=(-_RHO_BOUND, _RHO_BOUND),
                                     method="bounded", options={"xatol": 1e-12})
    return float(found.x)


def _muthen_gamma(codes: list[np.ndarray], edges: list[np.ndarray], rho: np.ndarray,
                  pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """``n A^-1 B A^-T`` for the stacked thresholds and correlations (Muthen 1984)."""
    n = len(codes[0])
    uni = [_threshold_scores(code, edge) for code, edge in zip(codes, edges)]
    offsets = np.cumsum([0] + [u.shape[1] for u in uni])
    n_th, n_pairs = offsets[-1], len(pairs)
    scores = np.zeros((n, n_th + n_pairs))
    a = np.zeros((n_th + n_pairs, n_th + n_pairs))
    for j, u in enumerate(uni):
        block = slice(offsets[j], offsets[j + 1])
        scores[:, block] = u
        a[block, block] = u.T @ u
    for p, (j, k) in enumerate(pairs):
        s_rho, d_tau_j, d_tau_k = _pair_scores(codes[j], codes[k], edges[j], edges[k],
                                               rho[j, k])
        row = n_th + p
        scores[:, row] = s_rho
        a[row, row] = s_rho @ s_rho
        a[row, offsets[j]:offsets[j + 1]] = s_rho @ d_tau_j
        a[row, offsets[k]:offsets[k + 1]] = s_rho @ d_tau_k
    b = scores.T @ scores
    a_inv = np.linalg.inv(a)
    return n * a_inv @ b @ a_inv.T


def _threshold_scores(code: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """Case-wise scores of the univariate likelihood with respect to each threshold."""
    n_th = len(edge) - 2
    upper, lower = edge[code + 1], edge[code]
    prob = special.ndtr(upper) - special.ndtr(lower)
    dens_upper = np.where(np.isfinite(upper), stats.norm.pdf(np.where(np.isfinite(upper),
                                                                      upper, 0.0)), 0.0)
    dens_lower = np.where(np.isfinite(lower), stats.norm.pdf(np.where(np.isfinite(lower),
                                                                      lower, 0.0)), 0.0)
    scores = np.zeros((len(code), n_th))
    rows = np.arange(len(code))
    has_upper, has_lower = code < n_th, code > 0
    scores[rows[has_upper], code[has_upper]] += dens_upper[has_upper] / prob[has_upper]
    scores[rows[has_lower], code[has_lower] - 1] -= dens_lower[has_lower] / prob[has_lower]
    return scores


def _pair_scores(code_j: np.ndarray, code_k: np.ndarray, edges_j: np.ndarray,
                 edges_k: np.ndarray, rho: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Case-wise derivatives of the bivariate log-likelihood of one pair.

    Returns the scores with respect to ``rho`` and the derivatives with respect to the
    thresholds of item j and of item k (each cases x thresholds).
    """
    probs = _cell_probabilities(edges_j, edges_k, rho)
    dens = bivariate_normal_pdf(edges_j[:, None], edges_k[None, :], rho)
    d_rho = np.diff(np.diff(dens, axis=0), axis=1)
    s = np.sqrt(1.0 - rho * rho)
    d_j = _threshold_derivatives(edges_j, edges_k, rho, s)
    d_k = _threshold_derivatives(edges_k, edges_j, rho, s).transpose(1, 0, 2)
    prob = probs[code_j, code_k]
    return (d_rho[code_j, code_k] / prob, d_j[code_j, code_k] / prob[:, None],
            d_k[code_j, code_k] / prob[:, None])


def _threshold_derivatives(edges_a: np.ndarray, edges_b: np.ndarray, rho: float,
                           s: float) -> np.ndarray:
    """d pi_ab / d tau_a,m for every cell (a, b) and threshold m of the first item.

    ``d Phi2(h, k) / d h = phi(h) Phi((k - rho h) / s)``; the cell probability depends on
    threshold m through its upper edge (a = m) and lower edge (a = m + 1).
    """
    inner = edges_a[1:-1]
    with np.errstate(invalid="ignore"):
        cond = special.ndtr((edges_b[None, :] - rho * inner[:, None]) / s)
    strip = stats.norm.pdf(inner)[:, None] * np.diff(cond, axis=1)  # m x b
    n_a, n_m = len(edges_a) - 1, len(inner)
    out = np.zeros((n_a, len(edges_b) - 1, n_m))
    for m in range(n_m):
        out[m, :, m] += strip[m]
        out[m + 1, :, m] -= strip[m]
    return out
