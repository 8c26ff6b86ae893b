"""Parametric-bootstrap intervals for the random part of a researcher's model.

Wald intervals of variance components are poor near zero, where therapist variances in
alliance data usually are. lme4 offers profile and parametric-bootstrap intervals
(``confint(fit, method = "boot")``, through ``bootMer``); this module gives the bootstrap for
the models of ``models:``: simulate new outcomes from the fitted model (new random effects of
every client and therapist and new residuals, the design unchanged), refit each by the same
REML or ML, and take the percentile interval of each variance component, SD, correlation and
intraclass correlation over the refits.

Each replicate's random numbers come from its own ``SeedSequence`` child of the run's seed, so
the intervals are the same whatever order or process the replicates run in.

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48 (``bootMer``).
.. [2] Davison, A. C., & Hinkley, D. V. (1997). Bootstrap methods and their application.
   Cambridge University Press (percentile intervals, section 5.2).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alliance_analysis.errors import ConvergenceWarning
from alliance_analysis.multilevel.engine import fit_nested
from alliance_analysis.results import ModelResult

if TYPE_CHECKING:  # the specified models call this module; it only reads their attributes
    from alliance_analysis.multilevel.specified import PreparedModel


def _covariance(vc: pd.DataFrame, level: str, terms: list[str]) -> np.ndarray:
    """A level's covariance matrix of its random effects from the variance components."""
    cov = np.zeros((len(terms), len(terms)))
    for row in vc[vc["level"] == level].itertuples():
        i = terms.index(row.term)
        j = i if not isinstance(row.term2, str) else terms.index(row.term2)
        cov[i, j] = cov[j, i] = row.vcov
    return cov


def simulate_outcome(prepared: PreparedModel, result: ModelResult,
                     rng: np.random.Generator) -> np.ndarray:
    """One outcome vector drawn from the fitted model (lme4's ``simulate``)."""
    table = prepared.table
    safe = list(prepared.fixed.values())
    beta = result.params["estimate"].to_numpy()
    x = table[safe].to_numpy(dtype=float)
    if prepared.intercept:
        x = np.column_stack([np.ones(len(table)), x])
    y = x @ beta
    vc = result.extra["variance_components"]
    names = prepared.names
    for level, group in prepared.levels.items():
        block = prepared.blocks[group]
        terms = (["(Intercept)"] if block.intercept else []) + [names[c] for c in block.columns]
        z = np.column_stack(([np.ones(len(table))] if block.intercept else [])
                            + [table[c].to_numpy(dtype=float) for c in block.columns])
        codes, uniques = pd.factorize(table[group])
        effects = rng.multivariate_normal(np.zeros(len(terms)),
                                          _covariance(vc, level, terms), size=len(uniques),
                                          method="eigh")
        y = y + np.sum(z * effects[codes], axis=1)
    sigma2 = float(vc.loc[vc["level"] == "residual", "vcov"].iloc[0])
    return y + rng.normal(0.0, np.sqrt(sigma2), len(table))


def _summaries(result: ModelResult) -> pd.Series:
    """Variance components (variance, SD or correlation) and ICCs of intercepts, by key."""
    vc = result.extra["variance_components"]
    out = {}
    for row in vc.itertuples():
        key = (row.level, row.term if isinstance(row.term, str) else "",
               row.term2 if isinstance(row.term2, str) else "")
        out[(*key, "variance")] = row.vcov
        out[(*key, "sd_or_corr")] = row.sdcor
    intercepts = vc[(vc["term"] == "(Intercept)") & vc["term2"].isna()]
    residual = float(vc.loc[vc["level"] == "residual", "vcov"].iloc[0])
    total = float(intercepts["vcov"].sum()) + residual
    for row in intercepts.itertuples():
        out[(row.level, "(Intercept)", "", "icc")] = row.vcov / total
    return pd.Series(out)


def _relabelled(result: ModelResult, names: dict[str, str]) -> ModelResult:
    vc = result.extra["variance_components"]
    relabel = vc.assign(term=vc["term"].map(lambda v: names.get(v, v)),
                        term2=vc["term2"].map(lambda v: names.get(v, v)))
    return ModelResult(result.name, result.params, result.fit, result.spec,
                       {**result.extra, "variance_components": relabel})


def bootstrap_random(prepared: PreparedModel, result: ModelResult, *, reml: bool,
                     samples: int = 200, seed: int = 1, ci_level: float = 0.95,
                     max_iter: int = 1000) -> pd.DataFrame:
    """Percentile intervals of the random part by parametric bootstrap.

    Parameters
    ----------
    prepared
        The model's rows and columns (:func:`~alliance_analysis.multilevel.specified.prepare_model`).
    result
        The fit (its fixed effects and variance components generate the samples), with the
        researcher's term names (:func:`~alliance_analysis.multilevel.specified.fit_model`).
    reml
        Refit by REML (True) or ML.
    samples
        Number of simulated data sets.
    seed
        Root seed; sample ``b`` uses ``SeedSequence(seed).spawn`` child ``b``.
    ci_level
        Level of the percentile intervals.
    max_iter
        As :func:`fit_nested`.

    Returns
    -------
    pandas.DataFrame
        ``level, term, term2, measure`` (``variance``, ``sd_or_corr`` or ``icc``),
        ``estimate``, ``ci_low``, ``ci_high``, ``n_samples`` (refits that converged), and
        ``n_singular`` (refits at the boundary: a share near 1 says the data cannot tell the
        variance from 0).
    """
    children = np.random.SeedSequence(seed).spawn(samples)
    estimate = _summaries(result)
    draws, singular = [], 0
    args = prepared.engine_args()
    for child in children:
        table = prepared.table.copy()
        table[prepared.outcome] = simulate_outcome(prepared, result, np.random.default_rng(child))
        with warnings.catch_warnings():
            # A refit at the boundary is an expected outcome here, counted in n_singular;
            # one warning per refit would bury the run's own.
            warnings.simplefilter("ignore", ConvergenceWarning)
            refit = fit_nested(table, prepared.outcome, list(prepared.fixed.values()), **args,
                               reml=reml, max_iter=max_iter, inference="wald",
                               name="bootstrap")
        if refit.fit["converged"]:
            draws.append(_summaries(_relabelled(refit, prepared.names)))
            singular += bool(refit.fit["singular"])
    frame = pd.DataFrame(draws)
    alpha = (1 - ci_level) / 2
    rows = []
    for key in estimate.index:
        values = frame[key].dropna().to_numpy() if key in frame else np.array([])
        low, high = (np.quantile(values, [alpha, 1 - alpha]) if len(values)
                     else (np.nan, np.nan))
        rows.append((*key, float(estimate[key]), float(low), float(high), len(values),
                     singular))
    return pd.DataFrame(rows, columns=["level", "term", "term2", "measure", "estimate",
                                       "ci_low", "ci_high", "n_samples", "n_singular"])
