"""Parametric-bootstrap intervals for the random part of a researcher's model.

Wald intervals of variance components are poor near zero, where therapist variances in
alliance data usually are. lme4 offers profile and parametric-bootstrap intervals
(``confint(fit, method = "boot")``, through ``bootMer``); this module gives the bootstrap for
the models of ``models:``: simulate new outcomes from the fitted model (new random effects of
every client and therapist and new residuals, the design unchanged), refit each by the same
REML or ML, and take the percentile interval of each variance component, SD, correlation and
intraclass correlation over the refits.

Sample ``b``'s random numbers come from its own stream, child ``b`` of the run's seed
(``numpy.random.SeedSequence(seed, spawn_key=(b,))``, the ``b``-th of
``SeedSequence(seed).spawn``), and its refit runs with one BLAS thread. So each sample's
refit is the same wherever and whenever it runs, and the samples can run in chunks, in this
process or on Dask (``dask:`` under the model; :mod:`alliance_analysis.stats.dask_runner`,
the machinery of the power studies): the intervals are the same to the last bit serially or
with any number of workers and any chunk size (``tests/test_bootstrap_dask.py``).

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48 (``bootMer``).
.. [2] Davison, A. C., & Hinkley, D. V. (1997). Bootstrap methods and their application.
   Cambridge University Press (percentile intervals, section 5.2).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alliance_analysis.errors import ConvergenceWarning
from alliance_analysis.multilevel.engine import fit_nested
from alliance_analysis.results import ModelResult
from alliance_analysis.stats.dask_runner import chunked, optional_client, progress_bar, run_chunks
from alliance_analysis.stats.threads import one_blas_thread

if TYPE_CHECKING:  # the specified models call this module; it only reads their attributes
    from alliance_analysis.multilevel.specified import PreparedModel
    from alliance_analysis.specs import DaskSettings

#: Samples refitted together (one task on Dask); the intervals do not depend on it.
CHUNK_SIZE = 10


def level_covariance(vc: pd.DataFrame, level: str, terms: list[str]) -> np.ndarray:
    """A level's covariance matrix of its random effects from the variance components."""
    cov = np.zeros((len(terms), len(terms)))
    # the columns as lists: a few rows, read without a filtered copy of the table
    for row_level, term, term2, value in zip(*(vc[c].tolist() for c in
                                               ("level", "term", "term2", "vcov")), strict=True):
        if row_level != level:
            continue
        i = terms.index(term)
        j = i if not isinstance(term2, str) else terms.index(term2)
        cov[i, j] = cov[j, i] = value
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
                                          level_covariance(vc, level, terms), size=len(uniques),
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


def sample_rng(seed: int, sample: int) -> np.random.Generator:
    """The random stream of bootstrap sample ``sample``: child ``sample`` of ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(sample,)))


@dataclass(frozen=True)
class _Refits:
    """What every chunk of samples needs (sent to each Dask worker once)."""

    prepared: PreparedModel
    result: ModelResult
    reml: bool
    max_iter: int
    seed: int


@one_blas_thread
def refit_samples(job: _Refits, samples: tuple[int, ...]
                  ) -> list[tuple[int, bool, bool, pd.Series]]:
    """Simulate and refit the samples ``samples`` of a bootstrap.

    Returns one ``(sample, converged, singular, summaries)`` per sample, ``summaries`` as
    :func:`_summaries` (empty for a refit that did not converge). Runs with one BLAS thread,
    so a sample's refit is the same to the last bit in any process.
    """
    prepared = job.prepared
    args = prepared.engine_args()
    out = []
    for sample in samples:
        table = prepared.table.copy()
        table[prepared.outcome] = simulate_outcome(prepared, job.result,
                                                   sample_rng(job.seed, sample))
        with warnings.catch_warnings():
            # A refit at the boundary is an expected outcome here, counted in n_singular;
            # one warning per refit would bury the run's own.
            warnings.simplefilter("ignore", ConvergenceWarning)
            refit = fit_nested(table, prepared.outcome, list(prepared.fixed.values()), **args,
                               reml=job.reml, max_iter=job.max_iter, inference="wald",
                               name="bootstrap")
        converged = bool(refit.fit["converged"])
        summaries = (_summaries(_relabelled(refit, prepared.names)) if converged
                     else pd.Series(dtype=float))
        out.append((sample, converged, bool(refit.fit["singular"]), summaries))
    return out


def bootstrap_random(prepared: PreparedModel, result: ModelResult, *, reml: bool,
                     samples: int = 200, seed: int = 1, ci_level: float = 0.95,
                     max_iter: int = 1000, dask: DaskSettings | None = None,
                     chunk_size: int = CHUNK_SIZE, progress: bool = False) -> pd.DataFrame:
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
        Root seed; sample ``b`` draws from :func:`sample_rng` ``(seed, b)``, child ``b`` of
        ``SeedSequence(seed)``.
    ci_level
        Level of the percentile intervals.
    max_iter
        As :func:`fit_nested`.
    dask
        Where the refits run (the model's ``dask:``): None or ``scheduler: none`` in this
        process, else on a local cluster or a running scheduler
        (:func:`alliance_analysis.stats.dask_runner.dask_client`).
    chunk_size
        Samples refitted together (one Dask task). Neither this nor ``dask`` changes the
        result.
    progress
        Show a progress bar of the samples (on standard error).

    Returns
    -------
    pandas.DataFrame
        ``level, term, term2, measure`` (``variance``, ``sd_or_corr`` or ``icc``),
        ``estimate``, ``ci_low``, ``ci_high``, ``n_samples`` (refits that converged), and
        ``n_singular`` (refits at the boundary: a share near 1 says the data cannot tell the
        variance from 0).

    Notes
    -----
    For sample ``b``: new random effects of every group (normal, the estimated covariance
    matrix of its level) and new residuals (normal, the estimated residual variance) are
    added to the fixed part ``X beta``, the design unchanged, and the model is refitted by
    the engine. The interval of each quantity is the ``(1 - ci_level) / 2`` and
    ``(1 + ci_level) / 2`` quantiles (numpy's default linear interpolation) over the refits
    that converged.
    """
    job = _Refits(prepared, result, reml, max_iter, seed)
    calls = [(chunk,) for chunk in chunked(range(samples), chunk_size)]
    with (progress_bar(samples, 0, progress, what="bootstrap samples") as advance,
          optional_client(dask) as client):
        chunks = run_chunks(refit_samples, calls, (job,), client=client,
                            name=f"bootstrap-{result.name}",
                            on_done=lambda index, rows: advance(len(rows)))
    refits = [row for chunk in chunks for row in chunk]
    draws = [summaries for _, converged, _, summaries in refits if converged]
    singular = sum(converged and is_singular for _, converged, is_singular, _ in refits)
    estimate = _summaries(result)
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
