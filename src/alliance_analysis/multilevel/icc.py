"""Intraclass correlations of multilevel data, with confidence intervals.

The ICC of a level is the share of the total variance that lies at that level, from a model
with random intercepts only: for sessions in clients in therapists with variances
``tau_t`` (therapist), ``tau_c`` (client) and ``sigma2`` (session)::

    ICC_therapist = tau_t / (tau_t + tau_c + sigma2)
    ICC_client    = tau_c / (tau_t + tau_c + sigma2)

ICC_therapist is also the correlation of two sessions of different clients of one therapist;
ICC_therapist + ICC_client that of two sessions of the same client [1]_.

Every model here is fitted by the nested engine
(:func:`alliance_analysis.multilevel.engine.nested.fit_nested`, lme4's profiled REML/ML, to
lme4's optimum); the variances are its variance components. statsmodels MixedLM is no longer
used (project issue 15: it gave one null model's therapist variance 145 times too small).
:func:`fit_random_intercepts` fits a random-intercepts model at the levels asked for
(therapist and client, client only, or therapist only for one row per client) and keeps what
the intervals need.

Confidence intervals, by ``MultilevelOptions.icc_ci``:

``"delta"`` (default)
    Delta method on the logit scale: the covariance of the variance components is the
    engine's ``extra["variance_parameters_cov"]`` (``2 H^-1``, ``H`` the Hessian of the
    (RE)ML deviance in the variances and the residual variance, fixed effects profiled out);
    the gradient of ``logit(ICC_k) = log tau_k - log(total - tau_k)`` carries it over, and the
    interval is back-transformed, so it stays inside (0, 1). (The same interval, up to
    numerical differentiation, as the earlier one from the profile likelihood in the log
    relative variances: the inverse of a profile Hessian is the matching block of the full
    inverse information.)

    *At the boundary* the delta interval is uninformative: with a variance estimated at zero
    (a singular fit, lme4's ``isSingular``) there is no information matrix, and with a
    variance near zero its log has a huge SE and the interval runs from ~0 to ~1. In both
    cases (singular fit, no finite information matrix, or an SE of a level's log variance
    above :data:`BOUNDARY_SE_LOG`) the model's ICCs get the parametric bootstrap interval
    below instead, ``ci_method`` says ``bootstrap`` and the note says why (and recommends
    ``icc_ci: bootstrap`` for every ICC).
``"bootstrap"``
    Parametric bootstrap: ``bootstrap_samples`` datasets are simulated from the fitted model
    (its fixed part, normal random intercepts with the estimated variances and normal
    residuals, seeded ``numpy.random.default_rng(seed)``), the model is refitted to each by
    the engine (deterministic), and the percentile interval of the ICCs is reported, as
    lme4's ``bootMer`` / ``confint(method = "boot")``. Refits that do not converge are left
    out and counted in the note; singular refits are kept (their variance is 0, a legitimate
    estimate). Slower; better with few therapists, where the likelihood is far from quadratic.

References
----------
.. [1] Raudenbush, S. W., & Bryk, A. S. (2002). Hierarchical linear models (2nd ed.). Sage.
.. [2] Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling alliance-outcome
   correlations. Journal of Consulting and Clinical Psychology, 75(6), 842-852.
.. [3] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import expit, logit

from alliance_analysis.errors import AllianceDataError, ConvergenceWarning
from alliance_analysis.multilevel.derive import CLIENT, THERAPIST, score_column
from alliance_analysis.multilevel.engine.nested import SINGULAR_TOL, NestedRefit, fit_nested
from alliance_analysis.results import ModelResult, warn_if_flagged

if TYPE_CHECKING:
    from alliance_analysis.options import MultilevelOptions

#: Columns of every ICC table (``variance``: the level's variance component).
ICC_COLUMNS = ("measure", "level", "icc", "variance", "ci_low", "ci_high", "ci_method",
               "converged", "note")
#: Above this SE of a level's log variance the delta-method interval is taken as
#: uninformative (its interval of the variance spans more than a factor e^(2*1.96*2) ~ 2500).
BOUNDARY_SE_LOG = 2.0
#: The grouping column of each level.
LEVEL_COLUMN = {"therapist": THERAPIST, "client": CLIENT}
#: The random-intercept structures :func:`fit_random_intercepts` fits (top level first).
LEVELS = (("therapist", "client"), ("client",), ("therapist",))
#: The engine's grouping of each structure: for one row per client with a therapist intercept,
#: the engine's lower level is the therapist (its "client" level is then named "therapist").
ENGINE_GROUPS = {("therapist", "client"): {"client": CLIENT, "therapist": THERAPIST},
                 ("client",): {"client": CLIENT}, ("therapist",): {"client": THERAPIST}}
#: Failures of one bootstrap refit that leave it out (counted) instead of stopping.
REFIT_FAILURES = (AllianceDataError, np.linalg.LinAlgError, ValueError, FloatingPointError)


@dataclass(frozen=True)
class InterceptModel:
    """A random-intercepts model fitted by the engine, and what its ICC intervals need.

    Attributes
    ----------
    result
        The engine's result, its levels named ``therapist`` / ``client`` by the researcher's
        grouping (also for a therapist-only model fitted on one row per client).
    data
        The complete rows fitted (every model variable and grouping column present).
    outcome, predictors
        Outcome column and fixed-effect terms (besides the intercept).
    levels
        The random-intercept levels, top first (one of :data:`LEVELS`).
    reml, ci_level, max_iter
        How it was fitted (refits use the same).
    """

    result: ModelResult
    data: pd.DataFrame
    outcome: str
    predictors: tuple[str, ...]
    levels: tuple[str, ...]
    reml: bool
    ci_level: float
    max_iter: int

    def variances(self) -> np.ndarray:
        """The level variances (in :attr:`levels` order), then the residual variance."""
        return level_variances(self.result, self.levels)

    def fixed_part(self) -> np.ndarray:
        """``X beta`` of :attr:`data` at the estimates."""
        beta = self.result.params.set_index("term")["estimate"]
        mean = np.full(len(self.data), float(beta["(Intercept)"]))
        for term in self.predictors:
            column = np.ones(len(self.data))
            for part in term.split(":"):
                column = column * self.data[part.strip()].to_numpy(dtype=float)
            mean += float(beta[term]) * column
        return mean

    def refit(self, data: pd.DataFrame, inference: Literal["satterthwaite", "wald"] = "wald",
              name: str | None = None) -> ModelResult:
        """The same model fitted to other data (e.g. a simulated outcome), warnings muted."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _fit_levels(data, self.outcome, self.predictors, self.levels, self.reml,
                               self.ci_level, self.max_iter, name or self.result.name,
                               inference)

    def refitter(self) -> NestedRefit:
        """The model laid out once for refits to new outcomes (one value per row of
        :attr:`data`); its variances in :func:`refit_level_variances`."""
        return NestedRefit(self.data, self.outcome, list(self.predictors), random=["1"],
                           therapist_random=["1"], reml=self.reml, max_iter=self.max_iter,
                           **ENGINE_GROUPS[self.levels])


def refit_level_variances(refitter: NestedRefit, y: np.ndarray,
                          levels: Sequence[str]) -> tuple[np.ndarray, bool]:
    """The level variances (``levels`` order) and residual variance of the model of
    :meth:`InterceptModel.refitter` refitted to outcome ``y``, and whether it converged: the
    numbers :func:`level_variances` gives of ``model.refit`` with that outcome."""
    refit = refitter.variances(y)
    engine_levels = {"client": refit.client_cov, "therapist": refit.therapist_cov}
    if tuple(levels) == ("therapist",):
        engine_levels = {"therapist": refit.client_cov}
    return (np.array([float(engine_levels[level][0, 0]) for level in levels] + [refit.sigma2]),
            refit.converged)


def level_variances(result: ModelResult, levels: Sequence[str]) -> np.ndarray:
    """The random-intercept variance of each level, then the residual variance."""
    vc = result.extra["variance_components"]
    intercepts = vc[vc["term"] == "(Intercept)"].set_index("level")["vcov"]
    residual = float(vc.loc[vc["level"] == "residual", "vcov"].iloc[0])
    return np.array([float(intercepts[level]) for level in levels] + [residual])


def fit_random_intercepts(frame: pd.DataFrame, outcome: str, predictors: Sequence[str],
                          levels: Sequence[str], options: MultilevelOptions,
                          name: str) -> InterceptModel:
    """Fit ``outcome ~ predictors`` with random intercepts at ``levels`` by the engine.

    Parameters
    ----------
    frame
        Rows of the model (sessions, or one row per client for a therapist-only model); rows
        missing a model variable or grouping column are dropped (the engine counts them).
    outcome, predictors
        Outcome column and fixed-effect terms (numeric columns or products ``"a:b"``).
    levels
        ``("therapist", "client")``: sessions in clients in therapists, lme4's
        ``(1 | therapist) + (1 | client)``; ``("client",)``: ``(1 | client)``;
        ``("therapist",)``: ``(1 | therapist)``, e.g. one row per client.
    options
        ``reml``, ``ci_level``, ``max_iter``.
    name
        Stable name of the result.
    """
    levels = tuple(levels)
    predictors = tuple(predictors)
    result = _fit_levels(frame, outcome, predictors, levels, options.reml, options.ci_level,
                         options.max_iter, name, "satterthwaite")
    used = [outcome, *{p.strip() for t in predictors for p in t.split(":")},
            *(LEVEL_COLUMN[level] for level in levels)]
    data = frame.dropna(subset=list(dict.fromkeys(used))).reset_index(drop=True)
    return InterceptModel(result, data, outcome, predictors, levels, options.reml,
                          options.ci_level, options.max_iter)


def nested_only(name: str, error: AllianceDataError) -> AllianceDataError:
    """The engine's error for a crossed design, restated for the analyses.

    The engine covers nested designs only (each client seen by one therapist) and its message
    points to statsmodels; the analyses no longer fall back to statsmodels (project issue 15),
    so a crossed design stops here with what to change. Other errors pass unchanged.
    """
    if "crossed" not in str(error):
        return error
    return AllianceDataError(
        f"{name}: some clients are seen by more than one therapist (clients and therapists "
        "are crossed, not nested). Every mixed model of the analyses is fitted by the nested "
        "engine, which needs each client to have one therapist; statsmodels is no longer used "
        "as a fallback. Set cleaning: multiple_therapists: split (one client per therapist) "
        "or multilevel: therapist_level: false (sessions in clients only). Engine: "
        + str(error).split(" Fit it with statsmodels")[0])


def _fit_levels(frame: pd.DataFrame, outcome: str, predictors: Sequence[str],
                levels: tuple[str, ...], reml: bool, ci_level: float, max_iter: int,
                name: str, inference: Literal["satterthwaite", "wald"]) -> ModelResult:
    """The engine call for ``levels``, with the levels named by the researcher's grouping."""
    try:
        return _fit_levels_unchecked(frame, outcome, predictors, levels, reml, ci_level,
                                     max_iter, name, inference)
    except AllianceDataError as exc:
        raise nested_only(name, exc) from exc


def _fit_levels_unchecked(frame: pd.DataFrame, outcome: str, predictors: Sequence[str],
                          levels: tuple[str, ...], reml: bool, ci_level: float, max_iter: int,
                          name: str, inference: Literal["satterthwaite", "wald"]) -> ModelResult:
    if levels not in LEVELS:
        raise ValueError(f"fit_random_intercepts: levels must be one of {LEVELS}, not {levels}")
    common = {"random": ["1"], "therapist_random": ["1"], "reml": reml, "ci_level": ci_level,
              "max_iter": max_iter, "name": name, "inference": inference,
              **ENGINE_GROUPS[levels]}
    if levels != ("therapist",):
        return fit_nested(frame, outcome, list(predictors), **common)
    # One row per client with a therapist intercept: the engine's lower grouping factor is the
    # therapist (its docstring allows this); its "client" level is renamed "therapist".
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit_nested(frame, outcome, list(predictors), **common)
    for message in caught:
        if not issubclass(message.category, ConvergenceWarning):
            warnings.warn_explicit(message.message, message.category, message.filename,
                                   message.lineno)
    relabelled = relabel_client_as_therapist(result, frame, outcome, predictors)
    warn_if_flagged(relabelled)
    return relabelled


def relabel_client_as_therapist(result: ModelResult, frame: pd.DataFrame, outcome: str,
                                predictors: Sequence[str]) -> ModelResult:
    """An engine fit grouped by therapist at its lower level, with that level named
    ``therapist``, and ``n_clients`` / ``n_therapists`` counted as the researcher means them
    (clients = rows' distinct client IDs, therapists = the engine's groups)."""
    extra = dict(result.extra)
    for key in ("variance_components", "random_effects"):
        extra[key] = extra[key].assign(level=extra[key]["level"].replace("client", "therapist"))
    cov = extra["variance_parameters_cov"]
    rename = {k: k.replace("client:", "therapist:", 1) for k in cov.index}
    extra["variance_parameters_cov"] = cov.rename(index=rename, columns=rename)
    used = [outcome, *{p.strip() for t in predictors for p in t.split(":")}, THERAPIST]
    complete = frame.dropna(subset=list(dict.fromkeys(used)))
    fit = dict(result.fit)
    fit["n_therapists"] = result.fit["n_clients"]
    fit["n_clients"] = int(complete[CLIENT].nunique()) if CLIENT in complete else len(complete)
    fit["warnings"] = [w.replace("SINGULAR FIT: client ", "SINGULAR FIT: therapist ")
                       for w in result.fit["warnings"]]
    return replace(result, fit=fit, extra=extra)


def null_model_iccs(sessions: pd.DataFrame, score: str, options: MultilevelOptions,
                    seed: int) -> pd.DataFrame:
    """ICCs of a session-level score at the therapist and client levels.

    Fits ``<score>_total ~ 1`` with random therapist and client intercepts (client only when
    ``options.therapist_level`` is false) by the engine, REML or ML as the options say, and
    returns one row per level (columns :data:`ICC_COLUMNS`).
    """
    levels = ("therapist", "client") if options.therapist_level else ("client",)
    model = fit_random_intercepts(sessions, score_column(score), [], levels, options,
                                  f"icc_{score}")
    return intercept_iccs(model, score_column(score), options, seed)


def intercept_iccs(model: InterceptModel, measure: str, options: MultilevelOptions,
                   seed: int) -> pd.DataFrame:
    """ICC of each level of a fitted random-intercepts model, with its interval.

    Parameters
    ----------
    model
        From :func:`fit_random_intercepts` (its predictors make the ICCs conditional on them).
    measure
        Label of the outcome, for the table.
    options
        ``icc_ci``, ``bootstrap_samples`` and ``ci_level``.
    seed
        Seed of the parametric bootstrap.

    Returns
    -------
    pandas.DataFrame
        One row per level: :data:`ICC_COLUMNS`. ``ci_method`` is the method actually used
        (``bootstrap`` also for a ``delta`` request at the boundary, with the reason in
        ``note``).
    """
    variances = model.variances()
    icc = variances[:-1] / variances.sum()
    method = options.icc_ci
    if method == "delta":
        boundary = boundary_reason(model)
        if boundary:
            low, high, note = _bootstrap_interval(model, options, seed)
            method = "bootstrap"
            note = (f"delta method uninformative at the boundary ({boundary}): parametric "
                    f"bootstrap interval instead ({note}); set icc_ci: bootstrap to use it "
                    "for every ICC")
        else:
            low, high, note = _delta_interval(model, options.ci_level)
    else:
        low, high, note = _bootstrap_interval(model, options, seed)
    return pd.DataFrame({
        "measure": measure, "level": list(model.levels), "icc": icc,
        "variance": variances[:-1], "ci_low": low, "ci_high": high, "ci_method": method,
        "converged": bool(model.result.fit["converged"]), "note": note,
    }, columns=list(ICC_COLUMNS))


def boundary_reason(model: InterceptModel) -> str:
    """Why the delta method is uninformative for this model ('' when it is fine).

    A singular fit (a level's SD below ``1e-4`` residual SDs, lme4's rule), no finite
    information matrix of the variances, or a level whose log variance has an SE above
    :data:`BOUNDARY_SE_LOG`.
    """
    variances = model.variances()
    zero = [level for level, v in zip(model.levels, variances[:-1], strict=True)
            if np.sqrt(max(v, 0.0) / variances[-1]) < SINGULAR_TOL]
    if zero or model.result.fit.get("singular"):
        which = ", ".join(f"{level} variance ~0" for level in zero) or "a variance ~0"
        return f"{which}, singular fit"
    cov = _variance_cov(model)
    if not np.all(np.isfinite(cov)):
        return "no finite information matrix of the variances"
    se_log = np.sqrt(np.clip(np.diag(cov)[:-1], 0.0, None)) / variances[:-1]
    near = [f"{level} variance near 0 (SE of its log {s:.1f})"
            for level, s in zip(model.levels, se_log, strict=True) if s > BOUNDARY_SE_LOG]
    return "; ".join(near)


def _variance_cov(model: InterceptModel) -> np.ndarray:
    """Covariance of (level variances..., residual variance) from the engine."""
    keys = [f"{level}:(Intercept)" for level in model.levels] + ["residual"]
    return model.result.extra["variance_parameters_cov"].loc[keys, keys].to_numpy(dtype=float)


def _delta_interval(model: InterceptModel,
                    ci_level: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Delta-method interval of every ICC on the logit scale (see the module notes)."""
    variances = model.variances()
    cov = _variance_cov(model)
    total = variances.sum()
    z = stats.norm.ppf(0.5 + ci_level / 2)
    k_levels = len(model.levels)
    low, high = np.full(k_levels, np.nan), np.full(k_levels, np.nan)
    for k in range(k_levels):
        gradient = np.full(variances.size, -1.0 / (total - variances[k]))
        gradient[k] = 1.0 / variances[k]
        variance = float(gradient @ cov @ gradient)
        if variance > 0:
            centre = logit(variances[k] / total)
            low[k] = expit(centre - z * np.sqrt(variance))
            high[k] = expit(centre + z * np.sqrt(variance))
    note = "" if np.all(np.isfinite(low)) else \
        "the information matrix is not positive definite: no delta-method interval"
    return low, high, note


def bootstrap_variances(model: InterceptModel, samples: int,
                        seed: int) -> tuple[np.ndarray, int]:
    """Variances re-estimated on ``samples`` datasets simulated from the fitted model.

    Returns ``(draws, failed)``: one row per kept refit (level variances, then the residual
    variance), and how many refits failed or did not converge (left out). Deterministic for
    a given seed: ``numpy.random.default_rng(seed)`` draws, for each dataset in turn, the
    residuals and then each level's intercepts (in :attr:`InterceptModel.levels` order).
    """
    rng = np.random.default_rng(seed)
    mean = model.fixed_part()
    variances = model.variances()
    codes = [pd.factorize(model.data[LEVEL_COLUMN[level]])[0] for level in model.levels]
    refitter = model.refitter()  # the design laid out once, as lme4's refit(object, newresp)
    draws, failed = [], 0
    for _ in range(samples):
        y = mean + rng.normal(0.0, np.sqrt(variances[-1]), mean.size)
        for code, variance in zip(codes, variances[:-1], strict=True):
            y = y + rng.normal(0.0, np.sqrt(max(variance, 0.0)), code.max() + 1)[code]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                draw, converged = refit_level_variances(refitter, y, model.levels)
        except REFIT_FAILURES:
            failed += 1
            continue
        if not converged:
            failed += 1
            continue
        draws.append(draw)
    return np.array(draws).reshape(-1, variances.size), failed


def _bootstrap_interval(model: InterceptModel, options: MultilevelOptions,
                        seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Percentile interval of the ICCs over parametric bootstrap refits."""
    draws, failed = bootstrap_variances(model, options.bootstrap_samples, seed)
    if not len(draws):
        empty = np.full(len(model.levels), np.nan)
        return empty, empty, "no bootstrap refit converged"
    iccs = draws[:, :-1] / draws.sum(axis=1, keepdims=True)
    alpha = (1 - options.ci_level) / 2
    low, high = np.quantile(iccs, [alpha, 1 - alpha], axis=0)
    note = f"{len(draws)} bootstrap refits, seed {seed}" + (
        f"; {failed} refit(s) did not converge and were left out" if failed else "")
    return low, high, note
