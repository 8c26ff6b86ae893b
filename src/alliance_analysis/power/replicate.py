"""One replicate of a Monte Carlo power study: simulate a study, fit the model, keep one row.

:func:`run_chunk` is what a Dask worker runs: for each replicate it draws the replicate's
seed (:func:`replicate_seed`), simulates a study (:func:`alliance_analysis.data.simulate.simulate`),
drops the planted data-entry faults (:func:`drop_planted_faults`), scores the WAI-SR and PHQ-9,
fits the study's model with the chosen engine and returns one row per replicate with the
target term's estimate, SE, interval, p-value, whether the interval covers the true value,
whether the test is significant, and whether the fit converged (columns
:data:`REPLICATE_COLUMNS`).

The two models
--------------
``within_between``
    ``phq9_total ~ time + wai_within_lag1 + wai_between`` with the random part of the
    multilevel options, as :func:`alliance_analysis.multilevel.models.within_between_model` fits
    it with the nested engine (``engine: engine``; the test is the t test with
    Satterthwaite's df, as the analysis reports it, or the Wald z test with
    ``multilevel: {inference: wald}``), or with statsmodels MixedLM (``engine: statsmodels``,
    an independent check: Wald z). The interval is the test's; the true value
    ``within_effect`` or ``between_effect`` of the design.
``therapist_alliance``
    Is there therapist variance in alliance? ``wai_total ~ 1`` with random intercepts of
    therapists and clients (sessions in clients in therapists, the null model of
    :func:`alliance_analysis.multilevel.icc.null_model_iccs`) against the same model without the
    therapist level. The test is the likelihood-ratio test of the therapist variance, whose
    null value lies on the boundary of the parameter space, so the statistic follows an equal
    mixture of chi-square(0) and chi-square(1): ``p = 0.5 * P(chi2_1 > LR)`` (Self & Liang,
    1987; Stram & Lee, 1994), half the naive p-value. The estimate is the therapist variance
    of alliance (WAI-SR item-mean scale, squared), its true value ``alliance_therapist_sd**2``
    (item noise is session-level and adds no therapist variance; rounding items to 1-5 and
    clipping at the scale's ends shrink it slightly). The interval is the Wald interval on
    the log scale, from the observed information; when the variance is estimated at zero
    (a singular fit) there is no such interval and ``covered`` is missing.

Every fit's warnings are recorded inside the replicate (``warnings.catch_warnings``, local to
the fit); what they say is kept in ``converged`` and ``singular``. A fit that fails outright
with :class:`~alliance_analysis.errors.AllianceDataError` (or a singular matrix) gives a row
with missing estimates, ``converged`` false and the message in ``error``.

References
----------
.. [1] Self, S. G., & Liang, K.-Y. (1987). Asymptotic properties of maximum likelihood
   estimators and likelihood ratio tests under nonstandard conditions. Journal of the
   American Statistical Association, 82(398), 605-610.
.. [2] Stram, D. O., & Lee, J. W. (1994). Variance components testing in the longitudinal
   mixed effects model. Biometrics, 50(4), 1171-1177.
.. [3] Muthén, L. K., & Muthén, B. O. (2002). How to use a Monte Carlo study to decide on
   sample size and determine power. Structural Equation Modeling, 9(4), 599-620.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.regression.mixed_linear_model import MixedLMParams

from alliance_analysis.multilevel.derive import CLIENT, THERAPIST
from alliance_analysis.multilevel.engine.nested import fit_nested
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.data.schema import SOURCE_ROW
from alliance_analysis.multilevel.mixedfit import SINGULAR_TOL, MixedFit, RandomPart, fit_mixed
from alliance_analysis.multilevel.models import (random_part, within_between_frame,
                                                 within_between_model)
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.results import ModelResult
from alliance_analysis.data.scoring import score
from alliance_analysis.data.simulate import SimulatedData, SimulationDesign, simulate
from alliance_analysis.stats import numdiff

#: Columns of every replicate row, in order.
REPLICATE_COLUMNS = ("point", "replicate", "estimate", "se", "ci_low", "ci_high", "p",
                     "true_value", "covered", "significant", "converged", "singular",
                     "n_obs", "n_clients", "error")

#: Failures of one fit that are recorded as a failed replicate instead of stopping the run.
FIT_FAILURES = (AllianceDataError, np.linalg.LinAlgError)
#: Step of the second differences of the log-likelihood in log variances
#: (:func:`therapist_variance_interval`).
HESSIAN_STEP = 1e-4


@dataclass(frozen=True)
class ReplicateSpec:
    """Everything a worker needs besides the design: what to fit and how to judge it."""

    model: str
    target: str
    engine: str
    options: MultilevelOptions
    alpha: float
    seed: int


@dataclass(frozen=True)
class TargetFit:
    """The target term of one fitted replicate."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p: float
    converged: bool
    singular: bool
    n_obs: int
    n_clients: int


def replicate_seed(root: int, point: int, replicate: int) -> int:
    """The simulation seed of replicate ``replicate`` of design point ``point``.

    The ``SeedSequence`` with spawn key ``(point, replicate)`` is the one
    ``SeedSequence(root).spawn(n_points)[point].spawn(n_replicates)[replicate]`` gives, for
    any numbers of points and replicates; its first 64-bit word seeds the simulation. Each
    replicate's stream is thus fixed by the root seed and its own indices alone: the same
    whatever the number of workers, the order replicates finish in, or how many replicates
    were asked for.
    """
    sequence = np.random.SeedSequence(root, spawn_key=(point, replicate))
    return int(sequence.generate_state(1, np.uint64)[0])


def drop_planted_faults(sim: SimulatedData) -> pd.DataFrame:
    """The simulated session table without its three planted data-entry faults.

    :func:`~alliance_analysis.data.simulate.simulate` plants a session entered as ``"3.5"``, a
    PHQ-9 item out of range and an exact duplicate row, at the 1-based data rows listed in
    ``truth["faults"]``. Those three rows are dropped (the duplicate's copy goes, its
    original stays), ``session`` becomes int64 and ``source_row`` holds each kept row's
    original row number, so the table can be scored directly: a quick stand-in for the full
    cleaning stage (:mod:`alliance_analysis.data.cleaning`), which also excludes the duplicate
    and the session "3.5" but keeps the row with the out-of-range item, that item set
    missing. One session per replicate is thus lost that a real analysis would keep.

    Raises
    ------
    AllianceDataError
        When a kept session number is not a whole number (the faults were not where
        ``truth`` says).
    """
    frame = sim.sessions
    faulty = sorted({int(fault["row"]) - 1 for fault in sim.truth["faults"]})
    kept = frame.drop(index=frame.index[faulty])
    session = pd.to_numeric(kept["session"], errors="coerce")
    if session.isna().any() or not (session == session.round()).all():
        bad = kept.loc[session.isna() | (session != session.round()), "session"].iloc[0]
        raise AllianceDataError(f"session {bad!r} is not a whole number after dropping the "
                                f"planted faults at rows {[r + 1 for r in faulty]}")
    kept = kept.assign(session=session.astype("int64"))
    kept.insert(0, SOURCE_ROW, kept.index.to_numpy() + 1)
    return kept.reset_index(drop=True)


def replicate_sessions(design: SimulationDesign, seed: int) -> pd.DataFrame:
    """A simulated study without its planted faults, with ``wai_total`` and ``phq9_total``."""
    sessions = drop_planted_faults(simulate(design, seed))
    return score(sessions, [get_instrument("wai"), get_instrument("phq9")]).sessions


def true_value(design: SimulationDesign, target: str) -> float:
    """The value of ``target`` in the generating model of ``design``."""
    values = {"wai_within_lag1": design.within_effect, "wai_between": design.between_effect,
              "therapist_variance": design.alliance_therapist_sd ** 2}
    return float(values[target])


def run_chunk(spec: ReplicateSpec, design: SimulationDesign, point: int,
              replicates: Sequence[int]) -> pd.DataFrame:
    """Run replicates ``replicates`` of design point ``point``; one row each.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`REPLICATE_COLUMNS`: the design point and replicate index; the target
        term's ``estimate``, ``se``, ``ci_low``, ``ci_high`` and ``p``; ``true_value``;
        ``covered`` (the interval contains the true value; missing without an interval),
        ``significant`` (p < alpha), ``converged`` and ``singular`` of the fit (of both fits
        for ``therapist_alliance``); ``n_obs`` and ``n_clients`` modelled; ``error`` (the
        message of a failed fit, else empty).
    """
    truth = true_value(design, spec.target)
    rows = [_row(spec, design, point, r, truth) for r in replicates]
    table = pd.DataFrame(rows, columns=list(REPLICATE_COLUMNS))
    return table.astype({"covered": "boolean", "significant": bool, "converged": bool,
                         "singular": bool, "n_obs": "int64", "n_clients": "int64"})


def _row(spec: ReplicateSpec, design: SimulationDesign, point: int, replicate: int,
         truth: float) -> dict[str, Any]:
    sessions = replicate_sessions(design, replicate_seed(spec.seed, point, replicate))
    base: dict[str, Any] = {"point": point, "replicate": replicate, "true_value": truth}
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            fit = FITTERS[spec.model, spec.engine](sessions, spec.target, spec.options)
    except FIT_FAILURES as exc:
        return {**base, "estimate": np.nan, "se": np.nan, "ci_low": np.nan,
                "ci_high": np.nan, "p": np.nan, "covered": None, "significant": False,
                "converged": False, "singular": False, "n_obs": 0, "n_clients": 0,
                "error": f"{type(exc).__name__}: {exc}"}
    has_interval = bool(np.isfinite(fit.ci_low) and np.isfinite(fit.ci_high))
    return {**base, "estimate": fit.estimate, "se": fit.se, "ci_low": fit.ci_low,
            "ci_high": fit.ci_high, "p": fit.p,
            "covered": (fit.ci_low <= truth <= fit.ci_high) if has_interval else None,
            "significant": bool(fit.p < spec.alpha), "converged": fit.converged,
            "singular": fit.singular, "n_obs": fit.n_obs, "n_clients": fit.n_clients,
            "error": ""}


# -- within and between effects -------------------------------------------------------------

def _from_params(result: ModelResult, target: str) -> TargetFit:
    row = result.params.set_index("term").loc[target]
    return TargetFit(float(row["estimate"]), float(row["se"]), float(row["ci_low"]),
                     float(row["ci_high"]), float(row["p"]), bool(result.fit["converged"]),
                     bool(result.fit["singular"]), int(result.fit["n_obs"]),
                     int(result.fit["n_clients"]))


def _within_between_statsmodels(sessions: pd.DataFrame, target: str,
                                options: MultilevelOptions) -> TargetFit:
    """The within/between model by statsmodels MixedLM: an independent check of the engine
    (the analyses fit it with the engine only)."""
    frame, outcome, predictors, note = within_between_frame(sessions, "wai", "phq9", options)
    result, _ = fit_mixed("within_between", frame, outcome, predictors,
                          random_part(options, options.time), options.reml, options.optimizers,
                          options.max_iter, options.ci_level, note)
    return _from_params(result, target)


def _within_between_engine(sessions: pd.DataFrame, target: str,
                           options: MultilevelOptions) -> TargetFit:
    """:func:`~alliance_analysis.multilevel.models.within_between_model` (the nested engine)."""
    return _from_params(within_between_model(sessions, "wai", "phq9", options), target)


# -- therapist variance of alliance ---------------------------------------------------------

def boundary_lrt_p(loglik_full: float, loglik_reduced: float) -> float:
    """p-value of a likelihood-ratio test of one variance against zero (a boundary value).

    ``LR = 2 (loglik_full - loglik_reduced)``, truncated at 0; under the null the statistic
    is an equal mixture of chi-square(0) and chi-square(1), so ``p = 0.5 P(chi2_1 > LR)``
    for ``LR > 0`` and 1 at ``LR = 0`` (Self & Liang, 1987; Stram & Lee, 1994).
    """
    lr = max(2.0 * (loglik_full - loglik_reduced), 0.0)
    return 1.0 if lr == 0.0 else float(0.5 * stats.chi2.sf(lr, 1))


def _therapist_engine(sessions: pd.DataFrame, target: str,
                      options: MultilevelOptions) -> TargetFit:
    common = {"random": ["1"], "client": CLIENT, "reml": options.reml,
              "ci_level": options.ci_level, "max_iter": options.max_iter}
    full = fit_nested(sessions, "wai_total", [], therapist=THERAPIST, therapist_random=["1"],
                      name="therapist_alliance", **common)
    reduced = fit_nested(sessions, "wai_total", [], name="client_alliance", **common)
    components = full.extra["variance_components"]
    row = components[components["level"] == "therapist"].iloc[0]
    return _therapist_fit(full, reduced, float(row["vcov"]), float(row["se"]),
                          float(row["ci_low"]), float(row["ci_high"]))


def _therapist_statsmodels(sessions: pd.DataFrame, target: str,
                           options: MultilevelOptions) -> TargetFit:
    three = RandomPart(THERAPIST, "1", "therapist", "(1 | therapist) + (1 | client)",
                       {"client": f"0 + C({CLIENT})"}, {"client": ("client", "(Intercept)")})
    two = RandomPart(CLIENT, "1", "client", "(1 | client)")
    fitting = (options.reml, options.optimizers, options.max_iter, options.ci_level)
    full, fitted = fit_mixed("therapist_alliance", sessions, "wai_total", [], three, *fitting)
    reduced, _ = fit_mixed("client_alliance", sessions, "wai_total", [], two, *fitting)
    variance, se, low, high = therapist_variance_interval(fitted, options.ci_level)
    return _therapist_fit(full, reduced, variance, se, low, high)


def _therapist_fit(full: ModelResult, reduced: ModelResult, variance: float, se: float,
                   low: float, high: float) -> TargetFit:
    return TargetFit(variance, se, low, high,
                     boundary_lrt_p(full.fit["loglik"], reduced.fit["loglik"]),
                     bool(full.fit["converged"] and reduced.fit["converged"]),
                     bool(full.fit["singular"]), int(full.fit["n_obs"]),
                     int(full.fit["n_clients"]))


def therapist_variance_interval(fitted: MixedFit, ci_level: float
                                ) -> tuple[float, float, float, float]:
    """Therapist variance of a statsmodels three-level null model, with SE and interval.

    Returns ``(variance, se, ci_low, ci_high)``. The interval is Wald on the log scale,
    ``variance * exp(+/- z se_log)``, with ``se_log`` from the observed information of the
    (RE)ML log-likelihood in ``phi = (log psi_t, log psi_c, log sigma2)`` (relative therapist
    and client variances and the residual variance; ``log variance = phi_1 + phi_3``) and
    ``se = variance * se_log``: the interval and SE the engine reports. statsmodels profiles
    ``sigma2`` out of its likelihood, so the full one is rebuilt from the profile:
    ``l(psi, s2) = l_p(psi) - m/2 [log(s2 / s2_hat(psi)) + s2_hat(psi) / s2 - 1]`` with
    ``m = n - p`` under REML and ``n`` under ML. A variance at zero (lme4's singularity
    rule) has no log-scale interval, nor has a fit whose information matrix is not positive
    definite: SE and interval are then missing.
    """
    model, result = fitted.model, fitted.result
    psi = np.array([np.asarray(result.cov_re_unscaled, dtype=float)[0, 0],
                    float(np.asarray(result.vcomp, dtype=float)[0] / result.scale)])
    variance = float(psi[0] * result.scale)
    if np.sqrt(max(psi[0], 0.0)) < SINGULAR_TOL:
        return variance, np.nan, np.nan, np.nan
    m = model.n_totobs - (model.k_fe if model.reml else 0)

    def loglik(phi: np.ndarray) -> float:
        rel = np.exp(phi[:2])
        params = MixedLMParams.from_components(cov_re=rel[:1, None], vcomp=rel[1:])
        fe_params, _ = model.get_fe_params(params.cov_re, params.vcomp)
        s2_hat = model.get_scale(fe_params, params.cov_re, params.vcomp)
        ratio = s2_hat / np.exp(phi[2])
        return float(model.loglike(params, profile_fe=True)
                     - m / 2 * (-np.log(ratio) + ratio - 1))

    phi = np.array([np.log(psi[0]), np.log(psi[1]), np.log(result.scale)])
    try:
        cov = np.linalg.inv(-numdiff.hessian(loglik, phi, HESSIAN_STEP))
    except np.linalg.LinAlgError:
        return variance, np.nan, np.nan, np.nan
    gradient = np.array([1.0, 0.0, 1.0])
    variance_log = float(gradient @ cov @ gradient)
    if not variance_log > 0:  # not a maximum: the likelihood is flat or the fit is off
        return variance, np.nan, np.nan, np.nan
    se_log = np.sqrt(variance_log)
    z = stats.norm.ppf(0.5 + ci_level / 2)
    return (variance, variance * se_log, variance * float(np.exp(-z * se_log)),
            variance * float(np.exp(z * se_log)))


#: The fitting function of each (model, engine).
FITTERS = {
    ("within_between", "statsmodels"): _within_between_statsmodels,
    ("within_between", "engine"): _within_between_engine,
    ("therapist_alliance", "statsmodels"): _therapist_statsmodels,
    ("therapist_alliance", "engine"): _therapist_engine,
}
