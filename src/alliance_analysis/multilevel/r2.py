"""Marginal and conditional R2 of linear mixed models (Nakagawa, Johnson & Schielzeth, 2017).

How much of the outcome's variance a linear mixed model explains, split as a reader of a
paper expects: the *marginal* R2 by the fixed effects alone, the *conditional* R2 by the fixed
and random effects together. :func:`nakagawa_r2` is the formula on matrices;
:func:`model_r2` applies it to a model of ``models:`` fitted by the nested engine, from the
rows and design columns it was fitted on (:func:`~alliance_analysis.multilevel.specified.
prepare_model`) and the fitted estimates.

References
----------
.. [1] Nakagawa, S., Johnson, P. C. D., & Schielzeth, H. (2017). The coefficient of
   determination R2 and intra-class correlation coefficient from generalized linear
   mixed-effects models revisited and expanded. Journal of the Royal Society Interface,
   14(134), 20170213.
.. [2] Johnson, P. C. D. (2014). Extension of Nakagawa & Schielzeth's R2GLMM to random slopes
   models. Methods in Ecology and Evolution, 5(9), 944-946.
.. [3] Nakagawa, S., & Schielzeth, H. (2013). A general and simple method for obtaining R2
   from generalized linear mixed-effects models. Methods in Ecology and Evolution, 4(2),
   133-142.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alliance_analysis.multilevel.bootstrap import level_covariance
from alliance_analysis.results import ModelResult, is_estimated

if TYPE_CHECKING:  # the specified models are read here, never the other way round
    from alliance_analysis.multilevel.specified import PreparedModel

#: The fixed intercept's term name in the engine's tables (lme4's).
INTERCEPT = "(Intercept)"


@dataclass(frozen=True)
class NakagawaR2:
    """The variance components of R2 and the two R2 values.

    Attributes
    ----------
    var_fixed
        Variance of the fixed-effect predictions ``X beta`` over the fitted rows.
    var_random
        Variance of the random effects averaged over the fitted rows, summed over grouping
        factors (Johnson, 2014).
    var_residual
        Residual variance ``sigma^2``.
    r2_marginal, r2_conditional
        ``var_fixed / total`` and ``(var_fixed + var_random) / total``, ``total`` the sum of
        the three variances.
    """

    var_fixed: float
    var_random: float
    var_residual: float
    r2_marginal: float
    r2_conditional: float

    def as_dict(self) -> dict[str, float]:
        """The five numbers by name."""
        return asdict(self)


#: The value of a model R2 is not defined for (not estimated, or not a linear mixed model).
UNDEFINED = NakagawaR2(*(float("nan"),) * 5)


def nakagawa_r2(x: np.ndarray, beta: np.ndarray,
                random: Sequence[tuple[np.ndarray, np.ndarray]], sigma2: float) -> NakagawaR2:
    """Marginal and conditional R2 of a linear mixed model (Nakagawa et al., 2017).

    Parameters
    ----------
    x
        Fixed-effects design matrix of the fitted rows, ``(n, p)``, intercept column included.
    beta
        Fixed-effect estimates, ``(p,)``.
    random
        One ``(z, sigma)`` pair per grouping factor: ``z`` the ``(n, q)`` random-effect
        columns of the fitted rows (a column of ones for a random intercept) and ``sigma``
        the ``(q, q)`` estimated covariance matrix of that factor's random effects (zero
        off the diagonal for uncorrelated effects, lme4's ``||``).
    sigma2
        Residual variance.

    Returns
    -------
    NakagawaR2
        ``var_fixed, var_random, var_residual, r2_marginal, r2_conditional``.

    Notes
    -----
    With ``f = X beta`` the fixed-effect prediction of each row,

    .. math::

        \\sigma^2_f = \\operatorname{var}(f), \\qquad
        \\sigma^2_r = \\sum_k \\frac{1}{n} \\sum_{i=1}^{n} z_{ik}^\\top \\Sigma_k z_{ik},
        \\qquad \\sigma^2_e = \\sigma^2,

        R^2_m = \\frac{\\sigma^2_f}{\\sigma^2_f + \\sigma^2_r + \\sigma^2_e}, \\qquad
        R^2_c = \\frac{\\sigma^2_f + \\sigma^2_r}{\\sigma^2_f + \\sigma^2_r + \\sigma^2_e}.

    ``var`` has the denominator ``n - 1``, as R's ``var()`` in ``performance::r2_nakagawa``
    and ``MuMIn::r.squaredGLMM``. For a random intercept alone ``z_ik = 1`` and the random
    variance is the intercept variance (Nakagawa & Schielzeth, 2013); with random slopes it is
    the mean over the rows of the variance of each row's random effect ``z_ik' b_k``
    (Johnson, 2014), so it depends on where the slope variables are centred, as the intercept
    variance of a random-slope model does. Only Gaussian models: for a binomial model the
    residual variance would be the latent-scale ``pi^2 / 3`` (Nakagawa et al., 2017), which
    this project does not report.

    Checked against the formula computed from lme4 1.1-31's ``model.matrix``, ``mmList`` and
    ``VarCorr`` and against ``performance::r2_nakagawa`` 0.10.2 (which agrees wherever the
    random effects of a factor are correlated or single; it leaves out the slope variance of
    an uncorrelated ``(x || g)`` term): ``tests/reference/r2_nakagawa.R``, within 1e-10 given
    lme4's estimates (``tests/test_r2.py``).
    """
    x = np.asarray(x, dtype=float)
    f = x @ np.asarray(beta, dtype=float)
    # shifted by one value: exactly 0 for a constant prediction (a model of the mean alone)
    var_fixed = float(np.var(f - f[0], ddof=1)) if f.size > 1 else 0.0
    var_random = 0.0
    for z, sigma in random:
        z = np.asarray(z, dtype=float).reshape(len(f), -1)
        var_random += float(np.mean(np.einsum("ij,jk,ik->i", z, np.asarray(sigma, float), z)))
    total = var_fixed + var_random + float(sigma2)
    return NakagawaR2(var_fixed, var_random, float(sigma2), var_fixed / total,
                      (var_fixed + var_random) / total)


def _columns(table: pd.DataFrame, intercept: bool, columns: list[str]) -> np.ndarray:
    """A design matrix: a column of ones (if ``intercept``), then ``columns`` of ``table``."""
    parts = [np.ones(len(table))] * intercept + [table[c].to_numpy(dtype=float)
                                                 for c in columns]
    return np.column_stack(parts) if parts else np.zeros((len(table), 0))


def model_r2(prepared: PreparedModel, result: ModelResult) -> NakagawaR2:
    """:func:`nakagawa_r2` of a fitted model of ``models:``.

    Parameters
    ----------
    prepared
        The model's rows and design columns
        (:func:`~alliance_analysis.multilevel.specified.prepare_model`), as it was fitted.
    result
        Its fit by :func:`~alliance_analysis.multilevel.specified.fit_model`: fixed effects
        by term (``params``), ``extra["variance_components"]`` (client and therapist
        covariance matrices, residual variance).

    Returns
    -------
    NakagawaR2
        :data:`UNDEFINED` (every value NaN) for a model that was not estimated or has no
        random part (a binomial, client-level model).

    Raises
    ------
    ValueError
        When ``prepared`` does not hold the rows ``result`` was fitted on (a different
        number of complete rows).
    """
    vc = result.extra.get("variance_components")
    if vc is None or not is_estimated(result) or not prepared.blocks:
        return UNDEFINED
    names = prepared.names
    columns = [prepared.outcome, *prepared.fixed.values(),
               *[c for block in prepared.blocks.values() for c in block.columns]]
    table = prepared.table
    if np.isnan(table[columns].to_numpy(dtype=float)).any():
        table = table.dropna(subset=columns)
    if len(table) != int(result.fit["n_obs"]):
        raise ValueError(f"{result.name}: {len(table)} complete rows, but the model was "
                         f"fitted on {result.fit['n_obs']}: not the rows of this fit")
    estimates = result.params.set_index("term")["estimate"]
    terms = ([INTERCEPT] if prepared.intercept else []) + list(prepared.fixed)
    x = _columns(table, prepared.intercept, list(prepared.fixed.values()))
    random = []
    for level, group in prepared.levels.items():
        block = prepared.blocks[group]
        effects = ([INTERCEPT] if block.intercept else []) + [names[c] for c in block.columns]
        z = _columns(table, block.intercept, block.columns)
        random.append((z, level_covariance(vc, level, effects)))
    sigma2 = float(vc.loc[vc["level"] == "residual", "vcov"].iloc[0])
    return nakagawa_r2(x, estimates.loc[terms].to_numpy(dtype=float), random, sigma2)
