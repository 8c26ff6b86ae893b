"""Satterthwaite degrees of freedom for the fixed effects of a nested mixed model, as lmerTest.

lme4 reports no p-values for fixed effects, because the t statistics of a mixed model do not
follow a t distribution with a known df. lmerTest (Kuznetsova, Brockhoff & Christensen, 2017)
approximates it by Satterthwaite's (1946) method: for a contrast ``L`` of the fixed effects,

.. math::

    \\nu = \\frac{2\\, (L C L')^2}{g' A g}, \\qquad g = \\frac{\\partial\\, L C(\\psi) L'}{\\partial \\psi},

where ``C(psi) = sigma^2 (X' V_0(theta)^{-1} X)^{-1}`` is the covariance of the fixed effects as a
function of the variance parameters ``psi = (theta, sigma)`` and ``A = 2 H^{-1}`` their asymptotic
covariance, ``H`` the Hessian of the (REML or ML) deviance in ``psi`` with the fixed effects
profiled out. We follow lmerTest's construction step by step, in the same parametrization:
``H`` by central differences of the exact (complex-step) gradient of the deviance
(:func:`curvature`, computed once per fit and also carried to the covariance of the variance
components), its inverse
through the eigen-decomposition keeping eigenvalues above ``1e-6`` (lmerTest's Moore-Penrose
inverse, which also gives df at a singular fit), and the Jacobian of ``C`` by the complex step
(exact, where lmerTest uses Richardson extrapolation).

References
----------
.. [1] Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package:
   Tests in linear mixed effects models. Journal of Statistical Software, 82(13), 1-26.
.. [2] Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance
   components. Biometrics Bulletin, 2(6), 110-114.
.. [3] Giesbrecht, F. G., & Burns, J. C. (1985). Two-stage analysis based on a mixed model:
   Large-sample asymptotic theory and small-sample simulation results. Biometrics, 41(2),
   477-486.

Checked against lmerTest 3.1-3 (``summary(fit, ddf = "Satterthwaite")``) in
``tests/test_engine.py`` and ``tests/test_formula_models.py``: sleepstudy (df of ``Days`` 17.0), a three-level model
with a factor and an interaction, a model with ``||``, REML and ML.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alliance_analysis.multilevel.engine.deviance import (COMPLEX_STEP, NestedStats, Structure,
                                                          deviance, eliminate, gradients)
from alliance_analysis.multilevel.engine.gradient import ReverseGradient
from alliance_analysis.multilevel.engine.gradient import applies as reverse_mode
from alliance_analysis.multilevel.engine.optimize import central_hessian
from alliance_analysis.multilevel.engine.small import cholesky
from alliance_analysis.stats import numdiff

#: Eigenvalues of the deviance's Hessian at or below this are treated as zero (lmerTest's tol).
EIGEN_TOL = 1e-6
#: Relative step of the central differences of the gradient (lmerTest: numDeriv's default).
HESSIAN_STEP = 1e-4


@dataclass(frozen=True)
class Satterthwaite:
    """What the Satterthwaite df of any contrast needs, at the optimum.

    Attributes
    ----------
    beta_cov
        ``C``: covariance of the fixed effects, ``(p, p)``.
    jacobian
        ``dC / dpsi``: one ``(p, p)`` matrix per variance parameter, ``(m, p, p)``.
    varpar_cov
        ``A``: covariance of the variance parameters ``(theta, sigma)``, ``(m, m)``.
    zero_eigenvalues
        How many eigenvalues of the Hessian were dropped from its inverse (lmerTest warns
        "Model may not have converged with ... eigenvalue(s) close to zero").
    """

    beta_cov: np.ndarray
    jacobian: np.ndarray
    varpar_cov: np.ndarray
    zero_eigenvalues: int

    def df(self, contrast: np.ndarray) -> float:
        """Satterthwaite df of one contrast ``L`` (a vector of length ``p``)."""
        contrast = np.asarray(contrast, dtype=float)
        variance = contrast @ self.beta_cov @ contrast
        gradient = np.einsum("i,kij,j->k", contrast, self.jacobian, contrast)
        denominator = gradient @ self.varpar_cov @ gradient
        return float(2 * variance ** 2 / denominator) if denominator > 0 else float("nan")

    def fixed_effect_dfs(self) -> np.ndarray:
        """The df of each fixed effect (``L`` a unit vector), as lmerTest's summary table."""
        return np.array([self.df(np.eye(len(self.beta_cov))[j])
                         for j in range(len(self.beta_cov))])


@dataclass(frozen=True)
class Curvature:
    """The deviance's gradient and Hessian in ``psi = (theta, sigma)`` at the optimum.

    Computed once per fit (:func:`curvature`) and shared by the Satterthwaite df
    (:func:`satterthwaite`) and the covariance of the variance components
    (:func:`alliance_analysis.multilevel.engine.nested.fit_nested`, which carries it to the
    variances by the chain rule).
    """

    varpar: np.ndarray
    gradient: np.ndarray
    hessian: np.ndarray


def curvature(theta: np.ndarray, sigma2: float, stats: NestedStats, structure: Structure,
              reml: bool) -> Curvature:
    """The gradient and Hessian of the (REML or ML) deviance, the fixed effects profiled out,
    at ``psi = (theta, sigma)``: central differences (relative step :data:`HESSIAN_STEP`) of
    the exact gradient (reverse mode where it applies,
    :mod:`~alliance_analysis.multilevel.engine.gradient`; else the complex step), the ``2 m``
    shifted points and the centre in one batched call."""
    varpar = np.append(np.asarray(theta, dtype=float), np.sqrt(sigma2))

    def dev(batch: np.ndarray) -> np.ndarray:
        return deviance(batch[:, :-1], batch[:, -1] ** 2, stats, structure, reml)

    reverse = (ReverseGradient(stats, structure, reml, sigma=True).gradients
               if reverse_mode(structure) else lambda points: gradients(dev, points))
    steps = numdiff.relative_steps(varpar, HESSIAN_STEP, 1e-2)
    centre: list[np.ndarray] = []

    def with_centre(points: np.ndarray) -> np.ndarray:
        grads = reverse(np.vstack([points, varpar]))
        centre.append(grads[-1])
        return grads[:-1]

    hess = central_hessian(with_centre, varpar, steps)
    return Curvature(varpar, centre[0], hess)


def satterthwaite(curv: Curvature, stats: NestedStats, structure: Structure) -> Satterthwaite:
    """The pieces of Satterthwaite's approximation at the optimum.

    Parameters
    ----------
    curv
        The deviance's curvature at the optimum ``(theta, sigma)`` (:func:`curvature`, of the
        REML or ML deviance, matching the fit).
    stats, structure
        The model's sufficient statistics and layout.
    """
    hess = curv.hessian
    values, vectors = np.linalg.eigh((hess + hess.T) / 2)
    keep = values > EIGEN_TOL
    varpar_cov = 2 * (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    beta_cov, jacobian = _beta_cov_and_jacobian(curv.varpar, stats, structure)
    return Satterthwaite(beta_cov, jacobian, varpar_cov, int((~keep).sum()))


def _beta_cov_and_jacobian(varpar: np.ndarray, stats: NestedStats,
                           structure: Structure) -> tuple[np.ndarray, np.ndarray]:
    """``C(psi) = sigma^2 (R_X'R_X)^{-1}`` and its exact Jacobian by the complex step."""
    m = varpar.size
    batch = varpar[None, :] + 1j * COMPLEX_STEP * np.vstack([np.zeros(m), np.eye(m)])
    _, f = eliminate(batch[:, :-1], stats, structure)
    chol_f = cholesky(f)
    covs = []
    for k in range(batch.shape[0]):
        _, unscaled = _fixed_effects(chol_f[:, :, k], structure.n_fixed)
        covs.append(batch[k, -1] ** 2 * unscaled)
    beta_cov = covs[0].real
    jacobian = np.stack([c.imag / COMPLEX_STEP for c in covs[1:]])
    return beta_cov, jacobian


def _fixed_effects(chol: np.ndarray, n_fixed: int) -> tuple[np.ndarray, np.ndarray]:
    """``beta`` and ``(R_X'R_X)^{-1}`` from a real or complex factor of ``F``.

    :func:`~alliance_analysis.multilevel.engine.deviance.fixed_effects` for a complex-step
    point: the same algebra, analytic in the step.
    """
    low_x, cross = chol[:n_fixed, :n_fixed], chol[n_fixed, :n_fixed]
    inverse = np.linalg.inv(low_x)
    return np.linalg.solve(low_x.T, cross), inverse.T @ inverse
