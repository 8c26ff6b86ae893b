"""Mixed (multilevel) models of alliance and symptom change.

Sessions are nested in clients and clients in therapists. Each function takes the canonical
session table (:func:`alliance_analysis.data.prepare.load_processed`), instrument keys (``"wai"``,
``"phq9"``: the modelled columns are ``<key>_total``) and :class:`MultilevelOptions`, and
returns a :class:`~alliance_analysis.results.ModelResult` with the fixed effects under the
researcher's names (``session``, ``wai_within_lag1``, ``wai_between``, ...), the variance
components and their correlations (``extra["variance_components"]``), ICCs where the model
has them (``extra["icc"]``), and the fit: numbers of sessions, clients and therapists,
log-likelihood, AIC/BIC (ML only), the optimizer used, ``converged``, ``singular`` and every
warning.

Every linear mixed model here is fitted by the nested engine,
:func:`alliance_analysis.multilevel.engine.nested.fit_nested` (lme4's profiled REML/ML deviance,
to lme4's optimum, with lme4's convergence and singularity checks and lmerTest's
Satterthwaite df: the ``params`` tables have ``df`` and ``t`` columns, and their intervals and
p-values are t-based). statsmodels MixedLM is retired from the analyses (project issue 15): it
was off by up to 0.63% in variance components while reporting convergence, missed singular
fits, and gave one null model's therapist variance 145 times too small.
:func:`random_part` still translates the options into statsmodels' terms, for the tutorials
and for independent checks in the tests (:mod:`alliance_analysis.multilevel.mixedfit`).

The engine fits nested designs only (every client with one therapist); a crossed design
(clients seen by several therapists) stops with the engine's error rather than falling back
to another fitter (``cleaning: multiple_therapists: split`` makes the data nested).

The model families (project issue 4):

* symptom change: :func:`growth_model`;
* within- and between-client alliance effects: :func:`within_between_model`;
* therapist effects: :func:`therapist_effects`;
* alliance as the outcome: :func:`alliance_growth`, :func:`early_alliance_slope` (the
  stage's logistic dropout model, early alliance and baseline severity with
  therapist-clustered SEs, is :func:`alliance_analysis.change.dropout.dropout_severity_model`,
  shared with the change markers; ``notebooks/03_multilevel`` calls it);
* client and therapist perspectives: :func:`rater_agreement`, :func:`rater_within_between`
  (both through :func:`rater_models`).

References
----------
.. [1] Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
   models using lme4. Journal of Statistical Software, 67(1), 1-48.
.. [2] Raudenbush, S. W., & Bryk, A. S. (2002). Hierarchical linear models (2nd ed.). Sage.
.. [3] Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
   between-person effects in longitudinal models of change. Annual Review of Psychology, 62,
   583-619.
.. [4] Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
   models of individual change in psychotherapy process research. Journal of Consulting and
   Clinical Psychology, 85(6), 537-549.
.. [5] Zilcha-Mano, S. (2017). Is the alliance really therapeutic? Revisiting this question in
   light of recent methodological advances. American Psychologist, 72(4), 311-325.
.. [6] Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling alliance-outcome
   correlations: Exploring the relative importance of therapist and patient variability in
   the alliance. Journal of Consulting and Clinical Psychology, 75(6), 842-852.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.data.clients import client_table, early_alliance
from alliance_analysis.multilevel import derive
from alliance_analysis.multilevel.derive import CLIENT, THERAPIST, score_column
from alliance_analysis.errors import AllianceDataError, AllianceParamsError, NotEstimableError
from alliance_analysis.multilevel.engine.nested import fit_nested
from alliance_analysis.multilevel.icc import (InterceptModel, fit_random_intercepts,
                                              intercept_iccs, nested_only, null_model_iccs)
from alliance_analysis.multilevel.mixedfit import REML_AIC_NOTE, MixedFit, RandomPart
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.params import RunParams
from alliance_analysis.results import ModelResult, not_estimable


@dataclass(frozen=True)
class MultilevelResults:
    """The models of the multilevel stage, by stable name in the order fitted.

    Attributes
    ----------
    models
        ``{name: ModelResult}`` (``growth``, ``within_between``, ``therapist_effects``, ...).
    params
        The run parameters the models were fitted under (their instruments name the
        readings and figures).
    """

    models: dict[str, ModelResult]
    params: RunParams


def flag_not_estimable(default_name: str) -> Callable:
    """Turn a model the data cannot identify into a flagged result instead of an error.

    Degenerate but real data (one therapist, one client, an outcome without variance,
    collinear terms: :class:`~alliance_analysis.errors.NotEstimableError`, or a numerical
    breakdown) must not stop a run: the model comes back as
    :func:`~alliance_analysis.results.not_estimable` with the reason, and the report flags it.
    Mistakes of the parameters (a missing column, a crossed design) still raise.
    """
    def decorate(function: Callable[..., ModelResult]) -> Callable[..., ModelResult]:
        @functools.wraps(function)
        def wrapper(sessions: pd.DataFrame, *args: Any, **kwargs: Any) -> ModelResult:
            try:
                return function(sessions, *args, **kwargs)
            except (NotEstimableError, np.linalg.LinAlgError) as exc:
                bound = inspect.signature(function).bind(sessions, *args, **kwargs)
                name = bound.arguments.get("name", default_name)
                reason = str(exc).removeprefix("fit_nested: ")
                if isinstance(exc, np.linalg.LinAlgError):
                    reason = f"the fit broke down numerically ({exc})"
                return not_estimable(
                    name, reason, n_obs=len(sessions),
                    n_clients=int(sessions[CLIENT].nunique()) if CLIENT in sessions else 0,
                    n_therapists=(int(sessions[THERAPIST].nunique()) if THERAPIST in sessions
                                  else 0))
        return wrapper
    return decorate


def random_part(options: MultilevelOptions, time: str | None) -> RandomPart:
    """The random effects the options ask for, in statsmodels' and lme4's terms.

    Not used by the analyses (they fit every model with the nested engine, see the module
    notes): this is the statsmodels translation for the tutorials
    (:mod:`alliance_analysis.teaching.tutorials`), the power study's statsmodels check and
    the tests' independent statsmodels fits.

    ``time`` is the time column for a client slope (``None``: intercepts only). Two levels:
    clients are statsmodels' groups, with a correlated ``re_formula`` or an independent slope
    variance component. Three levels: therapists are the groups and each client's intercept
    (and slope) is a variance component, the structure of lme4's
    ``(1 | therapist) + (1 | client) + (0 + time | client)``.

    Raises
    ------
    AllianceParamsError
        For a correlated client intercept and slope together with a therapist level, which
        statsmodels cannot express (the analyses fit it with the engine).
    """
    slope = options.client_slope and time is not None
    if options.therapist_level and slope and options.correlated_slope:
        raise AllianceParamsError(
            "multilevel: statsmodels cannot fit a correlated client intercept and slope "
            f"(lme4: (1 + {time} | client)) together with a therapist intercept; MixedLM "
            "allows correlated random effects only at its top grouping level and nests "
            "clients in therapists as independent variance components. Set one of: "
            "correlated_slope: false (three levels, client intercept and slope independent), "
            "therapist_level: false (two levels, correlated intercept and slope), or "
            "client_slope: false (the analyses' nested engine fits all of them)")
    if options.therapist_level:
        vc = {"client": f"0 + C({CLIENT})"}
        terms = {"client": ("client", "(Intercept)")}
        lme4 = "(1 | therapist) + (1 | client)"
        if slope:
            vc[f"client_{time}"] = f"0 + C({CLIENT}):{time}"
            terms[f"client_{time}"] = ("client", time)
            lme4 += f" + (0 + {time} | client)"
        return RandomPart(THERAPIST, "1", "therapist", lme4, vc, terms)
    if not slope:
        return RandomPart(CLIENT, "1", "client", "(1 | client)")
    if options.correlated_slope:
        return RandomPart(CLIENT, f"1 + {time}", "client", f"(1 + {time} | client)")
    return RandomPart(CLIENT, "1", "client", f"(1 | client) + (0 + {time} | client)",
                      {time: f"0 + {time}"}, {time: ("client", time)})


def _fit(name: str, frame: pd.DataFrame, outcome: str, predictors: Sequence[str],
         options: MultilevelOptions, note: str = "") -> ModelResult:
    """``outcome ~ predictors`` with the options' random part, by the nested engine.

    Random part: a client intercept, plus a client slope of ``options.time`` when
    ``client_slope`` (correlated with the intercept when ``correlated_slope``, lme4's
    ``(1 + time | client)``, else ``(1 + time || client)``), and a therapist intercept when
    ``therapist_level``: every combination, including the correlated slope beside a therapist
    intercept that statsmodels could not express.
    """
    random = ["1", options.time] if options.client_slope else ["1"]
    try:
        result = fit_nested(frame, outcome, list(predictors), random=random, client=CLIENT,
                            therapist=THERAPIST if options.therapist_level else None,
                            correlated=options.correlated_slope, reml=options.reml,
                            ci_level=options.ci_level, max_iter=options.max_iter, name=name,
                            inference=options.inference)
    except AllianceDataError as exc:  # a crossed design: no fallback to statsmodels
        raise nested_only(name, exc) from exc
    return _conventions(result, options, THERAPIST if options.therapist_level else CLIENT,
                        note)


def _conventions(result: ModelResult, options: MultilevelOptions, top: str,
                 note: str) -> ModelResult:
    """The analyses' result conventions on an engine fit.

    AIC and BIC empty under REML (with :data:`~alliance_analysis.multilevel.mixedfit.REML_AIC_NOTE`;
    the engine reports lme4's REML-likelihood AIC, not comparable across fixed effects),
    ``extra["group_intercepts"]``: the random intercepts of the top level ``top`` (column
    ``therapist_id`` or ``client_id``), ``level, group, estimate, se, ci_low, ci_high``
    sorted by estimate (the caterpillar plots), and ``note`` appended to the spec.
    """
    fit = dict(result.fit)
    if options.reml:
        fit.update(aic=np.nan, bic=np.nan, note=REML_AIC_NOTE)
    effects = result.extra["random_effects"]
    level = "therapist" if top == THERAPIST else "client"
    intercepts = effects[(effects["level"] == level) & (effects["term"] == "(Intercept)")]
    intercepts = intercepts.drop(columns="term").assign(level=top)
    intercepts = intercepts.sort_values(["estimate", "group"]).reset_index(drop=True)
    spec = result.spec + (f"; {note}" if note else "")
    return replace(result, fit=fit, spec=spec,
                   extra={**result.extra, "group_intercepts": intercepts})


def _with_time(ordered: pd.DataFrame, options: MultilevelOptions) -> pd.DataFrame:
    """Sessions (in session order) with the options' time column; for ``time: session``
    this replaces the raw session number by the coded one."""
    return ordered.assign(**{options.time: derive.code_time(ordered, options.time,
                                                            options.time_origin)})


def _time_note(options: MultilevelOptions) -> str:
    if options.time == "day":
        return "time: days since the client's first session"
    return f"time: {options.time} coded 0 at session {options.time_origin}"


@flag_not_estimable("growth")
def growth_model(sessions: pd.DataFrame, score: str, options: MultilevelOptions,
                 name: str = "growth") -> ModelResult:
    """Growth curve of a score over time: the average trajectory and how clients differ.

    Fits ``<score>_total ~ time`` with a random client intercept and (optionally) slope, and
    optionally a random therapist intercept (sessions in clients in therapists), by REML or
    ML. Time is the session number, its log, or days since the first session, coded 0 at
    ``options.time_origin`` so that the intercept is the expected score at that session.

    Parameters
    ----------
    sessions
        The canonical session table.
    score
        Instrument key of the outcome, e.g. ``"phq9"`` (column ``phq9_total``).
    options
        The multilevel options (time, levels, slope, REML/ML, iterations).
    name
        Stable name of the result.

    Returns
    -------
    ModelResult
        Terms ``(Intercept)`` (expected score at the origin) and the time term (change per
        unit of time); variance components by level.

    Notes
    -----
    Level 1: ``y_ti = pi_0i + pi_1i * time_ti + e_ti``; level 2: ``pi_0i = b00 + r0i``,
    ``pi_1i = b10 + r1i``; level 3 adds a therapist intercept ``u_j`` (Raudenbush & Bryk,
    2002). Checked against lme4 on ``sleepstudy`` and a three-level fixture
    (``tests/test_multilevel.py``).
    """
    outcome = score_column(score)
    derive.require_columns(sessions, [outcome, CLIENT, THERAPIST, "session"], "growth_model")
    frame = _with_time(derive.in_session_order(sessions), options)
    return _fit(name, frame, outcome, [options.time], options, _time_note(options))


@flag_not_estimable("within_between")
def within_between_model(sessions: pd.DataFrame, alliance: str | Sequence[str], symptoms: str,
                         options: MultilevelOptions,
                         name: str = "within_between") -> ModelResult:
    """Within- and between-client effects of alliance on next-session symptoms.

    Alliance is split into each client's mean (``<alliance>_between``, trait-like: clients
    who form better alliances in general) and the session's deviation from it
    (``<alliance>_within``, state-like: a better alliance than usual for this client;
    Curran & Bauer, 2011; Zilcha-Mano, 2017). The deviation at the previous attended
    session predicts symptoms now:
    ``<symptoms>_total ~ time + <alliance>_within_lag1 + <alliance>_between``, with random
    effects as in :func:`growth_model`. The within effect is the one that speaks to the
    alliance being therapeutic for a given client; the between effect mixes that with
    everything that makes some clients both bond well and improve.

    Parameters
    ----------
    sessions
        The canonical session table.
    alliance
        Alliance instrument key(s); several (e.g. client and therapist ratings) enter the
        model together.
    symptoms
        Symptom instrument key (the outcome).
    options
        ``lagged_outcome`` adds ``<symptoms>_lag1`` (symptoms at the previous session);
        ``detrend`` centres alliance around each client's own linear trend instead of their
        mean and adds the client's alliance slope ``<alliance>_trend`` (Falkenström et al., 2017).
    name
        Stable name of the result.

    Returns
    -------
    ModelResult
        Terms ``(Intercept)``, the time term, ``<alliance>_within_lag1``,
        ``<alliance>_between`` (raw client mean, so the intercept is at alliance 0 and not
        interpretable by itself), and ``<alliance>_trend`` / ``<symptoms>_lag1`` when asked.

    Notes
    -----
    *Lag.* The lag is the previous attended session of the same client (the previous row in
    session order), also across a gap in session numbers; the number of such gaps is given in
    the spec. A missing score at the previous session gives a missing lag (never reached
    further back), so that row is dropped. Each client's first session has no lag.

    *Person means* use every observed score of the client, including sessions after the last
    modelled one, as in the lme4 fixture this is validated against.

    *Lagged outcome and person-mean centring.* Adding the previous symptom level to a model
    with client random intercepts (or person-mean-centred predictors) is a dynamic panel
    model, and in short series its estimates are biased: the lagged outcome is correlated
    with the client's intercept, and after person-mean centring with the error, a bias of
    order ``-(1 + rho) / (T - 1)`` in the autoregression that spills into the alliance
    coefficients [1]_. With the 8-15 sessions typical of psychotherapy the bias is not
    negligible [2]_. Treat ``lagged_outcome: true`` as a sensitivity analysis, and consider
    the detrended variant, which Falkenström et al. recommend for alliance that grows over
    treatment (a person mean of a trending variable confounds the within part with time).

    References
    ----------
    .. [1] Nickell, S. (1981). Biases in dynamic models with fixed effects. Econometrica,
       49(6), 1417-1426.
    .. [2] Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017).
       Dynamic models of individual change in psychotherapy process research. Journal of
       Consulting and Clinical Psychology, 85(6), 537-549.
    """
    frame, outcome, predictors, note = within_between_frame(sessions, alliance, symptoms,
                                                            options)
    return _fit(name, frame, outcome, predictors, options, note)


def within_between_frame(sessions: pd.DataFrame, alliance: str | Sequence[str], symptoms: str,
                         options: MultilevelOptions) -> tuple[pd.DataFrame, str, list[str], str]:
    """The rows, outcome, predictors and note of :func:`within_between_model`.

    Shared with the power study's independent statsmodels check of the same model.
    """
    keys = [alliance] if isinstance(alliance, str) else list(alliance)
    outcome = score_column(symptoms)
    derive.require_columns(sessions, [outcome, *map(score_column, keys), CLIENT, "session"],
                           "within_between_model")
    frame = derive.in_session_order(sessions)
    predictors = [options.time]
    for key in keys:
        frame = derive.detrend(frame, key) if options.detrend else \
            derive.person_mean_centre(frame, key)
        predictors += [f"{key}_within_lag1", f"{key}_between"]
        predictors += [f"{key}_trend"] if options.detrend else []
    lagged = [f"{key}_within" for key in keys] + ([outcome] if options.lagged_outcome else [])
    frame = derive.add_lag(frame, lagged)
    predictors += [f"{symptoms}_lag1"] if options.lagged_outcome else []
    gaps = derive.count_lag_gaps(frame)
    frame = _with_time(frame, options)
    note = (f"{_time_note(options)}; lag = previous attended session ({gaps} lag(s) across "
            "a gap in session numbers); alliance "
            + ("detrended within client" if options.detrend else "person-mean centred"))
    return frame, outcome, predictors, note


@flag_not_estimable("therapist_effects")
def therapist_effects(sessions: pd.DataFrame, alliance: str, symptoms: str,
                      options: MultilevelOptions, seed: int) -> ModelResult:
    """Therapist and client contributions to the alliance-outcome relation.

    Following Baldwin, Wampold & Imel (2007): each client's early alliance (mean of
    sessions ``1..early_sessions``, measured before most change has happened) is split into
    the therapist's mean over their clients (``<alliance>_therapist_mean``) and the client's
    deviation from it (``<alliance>_client_deviation``); the post-treatment score (last
    observed) is regressed on both, controlling for baseline severity (first observed
    score), with a random therapist intercept::

        <symptoms>_post ~ <symptoms>_baseline + <alliance>_therapist_mean
                          + <alliance>_client_deviation + (1 | therapist)

    The row ``therapist_minus_client`` is the difference of the two alliance coefficients
    (Raudenbush & Bryk's contextual effect), with its SE, Satterthwaite df and t interval
    (:func:`contextual_difference`): an interval away from
    zero says the therapist and client parts of the alliance relate differently to outcome;
    with symptoms as the outcome a negative difference means the therapist part is the
    stronger, as Baldwin et al. found.

    ``extra["icc"]`` holds intraclass correlations (see :mod:`alliance_analysis.multilevel.icc` for the
    definitions and CI methods): of the alliance and symptom session scores at the therapist
    and client levels (null three-level models), and of the post-treatment score at the
    therapist level given the model's predictors (``<symptoms>_post_adjusted``). Clients
    with a single observed symptom score or no early alliance are left out.

    Parameters
    ----------
    sessions
        The canonical session table.
    alliance, symptoms
        Instrument keys.
    options
        ``early_sessions``, ``icc_ci``, ``bootstrap_samples``, ``ci_level``, ``reml``,
        ``max_iter``.
    seed
        Seed of the parametric bootstrap (used when ``icc_ci`` is ``"bootstrap"``, and for
        a delta-method request at the boundary).
    """
    derive.require_columns(sessions, [score_column(alliance), score_column(symptoms), CLIENT,
                                      THERAPIST, "session"], "therapist_effects")
    ordered = derive.in_session_order(sessions)
    clients = client_table(ordered, symptoms).merge(
        _early_mean(ordered, alliance, options), on=CLIENT, how="left")
    early = f"{alliance}_early"
    therapist_mean = clients.groupby(THERAPIST)[early].transform("mean")
    clients = clients.assign(**{f"{alliance}_therapist_mean": therapist_mean,
                                f"{alliance}_client_deviation": clients[early] - therapist_mean})
    terms = [f"{symptoms}_baseline", f"{alliance}_therapist_mean",
             f"{alliance}_client_deviation"]
    outcome = f"{symptoms}_post"
    note = f"one row per client; early alliance = mean of sessions 1-{options.early_sessions}"
    # One row per client with a therapist intercept, lme4's (1 | therapist): the engine's
    # lower grouping factor is the therapist (fit_random_intercepts names the level).
    fitted = fit_random_intercepts(clients, outcome, terms, ("therapist",), options,
                                   "therapist_effects")
    result = _conventions(fitted.result, options, THERAPIST, note)
    difference = contextual_difference(clients, fitted, terms[1], terms[2], early, options)
    params = pd.concat([result.params, difference], ignore_index=True)
    icc = pd.concat([
        null_model_iccs(ordered, alliance, options, seed),
        null_model_iccs(ordered, symptoms, options, seed + 1),
        intercept_iccs(fitted, f"{symptoms}_post_adjusted", options, seed + 2),
    ], ignore_index=True)
    fit = dict(result.fit)
    fit["warnings"] = list(fit["warnings"]) + difference.attrs.get("warnings", [])
    return replace(result, params=params, fit=fit, extra={**result.extra, "icc": icc})


def contextual_difference(clients: pd.DataFrame, fitted: InterceptModel, first: str,
                          second: str, total: str, options: MultilevelOptions) -> pd.DataFrame:
    """``first - second`` of two fixed effects, with the engine's SE, Satterthwaite df,
    t interval and p-value, as the row ``therapist_minus_client``.

    ``first`` and ``second`` must add up to the column ``total`` (therapist mean + client
    deviation = the client's early alliance). Since ``b1 x1 + b2 x2 = (b1 - b2) x1 + b2
    (x1 + x2)``, the model refitted with ``total`` in place of ``second`` has the difference
    as the coefficient of ``first`` (Raudenbush & Bryk's contextual effect): the same
    likelihood and variance components, and the estimate, SE and Satterthwaite df of the
    contrast (lmerTest's ``contest`` of ``L = (0, 0, 1, -1)``). When the refit's
    log-likelihood differs from the fit's by more than 1e-6, the row's table carries a
    warning (``attrs["warnings"]``).
    """
    predictors = [first if t == first else total if t == second else t
                  for t in fitted.predictors]
    with warnings.catch_warnings():  # its flags are the model's own, already raised
        warnings.simplefilter("ignore")
        refit = fit_random_intercepts(clients, fitted.outcome, predictors, fitted.levels,
                                      options, fitted.result.name).result
    row = refit.params.set_index("term").loc[[first]].reset_index()
    row["term"] = "therapist_minus_client"
    gap = abs(refit.fit["loglik"] - fitted.result.fit["loglik"])
    if gap > 1e-6 * max(1.0, abs(fitted.result.fit["loglik"])):
        row.attrs["warnings"] = [
            f"therapist_minus_client: the reparametrised refit's log-likelihood differs by "
            f"{gap:.2g} from the model's; its SE and df may be off"]
    return row


def fixed_effect_difference(fitted: MixedFit, first: str, second: str,
                            ci_level: float) -> pd.DataFrame:
    """``first - second`` of two fixed effects of a statsmodels fit, with its Wald SE,
    interval and p-value (for the tutorials' statsmodels models; the analyses use
    :func:`contextual_difference`)."""
    cov = fitted.fixed_cov()
    estimate = fitted.result.fe_params[first] - fitted.result.fe_params[second]
    se = float(np.sqrt(cov.loc[first, first] + cov.loc[second, second]
                       - 2 * cov.loc[first, second]))
    z = stats.norm.ppf(0.5 + ci_level / 2)
    return pd.DataFrame([{"term": "therapist_minus_client", "estimate": estimate, "se": se,
                          "ci_low": estimate - z * se, "ci_high": estimate + z * se,
                          "p": 2 * stats.norm.sf(abs(estimate / se))}])


def _early_mean(ordered: pd.DataFrame, alliance: str, options: MultilevelOptions) -> pd.Series:
    """Each client's mean alliance over sessions ``1..early_sessions`` as ``<alliance>_early``
    (index: client), from :func:`alliance_analysis.data.clients.early_alliance`."""
    early = early_alliance(ordered, score_column(alliance), options.early_sessions)
    return early.set_index(CLIENT)["early_alliance"].rename(f"{alliance}_early")


@flag_not_estimable("alliance_growth")
def alliance_growth(sessions: pd.DataFrame, alliance: str, options: MultilevelOptions,
                    seed: int) -> ModelResult:
    """Alliance over sessions: average growth, its variance components and ICCs.

    :func:`growth_model` with alliance as the outcome (name ``alliance_growth``), plus
    ``extra["icc"]``: the share of alliance variance between therapists and between clients
    (null model, :func:`alliance_analysis.multilevel.icc.null_model_iccs`). A therapist ICC well above
    zero means some therapists form better alliances with all their clients (Baldwin et al., 2007).
    """
    result = growth_model(sessions, alliance, options, name="alliance_growth")
    icc = null_model_iccs(derive.in_session_order(sessions), alliance, options, seed)
    return replace(result, extra={**result.extra, "icc": icc})


@flag_not_estimable("early_alliance_slope")
def early_alliance_slope(sessions: pd.DataFrame, alliance: str, symptoms: str,
                         options: MultilevelOptions) -> ModelResult:
    """Does early alliance predict how fast symptoms change? (cross-level interaction).

    ``<symptoms>_total ~ time * <alliance>_early`` with the random effects of the options,
    where ``<alliance>_early`` is the client's mean alliance over sessions
    ``1..early_sessions``, centred at the mean over clients (so the time term is the slope
    of a client with average early alliance). The interaction ``time:<alliance>_early`` is
    the change in the symptom slope per point of early alliance: negative means clients with
    a better early alliance improve faster (Raudenbush & Bryk, 2002).

    Notes
    -----
    All sessions are modelled, so symptoms of the early sessions share time with the early
    alliance measurement; early symptom change may itself lift alliance (the reverse
    direction), which this model cannot rule out (Zilcha-Mano, 2017).
    """
    derive.require_columns(sessions, [score_column(alliance), score_column(symptoms), CLIENT,
                                      "session"], "early_alliance_slope")
    ordered = derive.in_session_order(sessions)
    early = _early_mean(ordered, alliance, options)
    name = f"{alliance}_early"
    frame = _with_time(ordered, options)
    frame = frame.assign(**{name: frame[CLIENT].map(early - early.mean())})
    return _fit("early_alliance_slope", frame, score_column(symptoms),
                [options.time, name, f"{options.time}:{name}"], options,
                f"{_time_note(options)}; {name} = mean of sessions 1-{options.early_sessions}, "
                "centred at the client mean")
