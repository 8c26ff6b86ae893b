"""Mixed (multilevel) models of alliance and symptom change.

Sessions are nested in clients and clients in therapists. Each function takes the canonical
session table (:func:`alliance_analysis.prepare.load_processed`), instrument keys (``"wai"``,
``"phq9"``: the modelled columns are ``<key>_total``) and :class:`MultilevelOptions`, and
returns a :class:`~alliance_analysis.results.ModelResult` with the fixed effects under the
researcher's names (``session``, ``wai_within_lag1``, ``wai_between``, ...), the variance
components and their correlations (``extra["variance_components"]``), ICCs where the model
has them (``extra["icc"]``), and the fit: numbers of sessions, clients and therapists,
log-likelihood, AIC/BIC (ML only), the optimizer used, ``converged``, ``singular`` and every
warning. How each fit is checked is described in :mod:`alliance_analysis.mixedfit`.

The model families (project issue 4):

* symptom change: :func:`growth_model`;
* within- and between-client alliance effects: :func:`within_between_model`;
* therapist effects: :func:`therapist_effects`;
* alliance as the outcome: :func:`alliance_growth`, :func:`early_alliance_slope`,
  :func:`dropout_model`;
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

import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats
from statsmodels.genmod.families import Binomial
from statsmodels.genmod.generalized_linear_model import GLM

from alliance_analysis import derive
from alliance_analysis.derive import CLIENT, THERAPIST, score_column
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.icc import intercept_iccs, null_model_iccs
from alliance_analysis.mixedfit import REML_AIC_NOTE, MixedFit, RandomPart, fit_mixed
from alliance_analysis.results import ModelResult

#: Optimizers tried in order (see :mod:`alliance_analysis.mixedfit` for why L-BFGS first).
DEFAULT_OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")


class MultilevelOptions(BaseModel):
    """Choices of the multilevel models (``multilevel:`` in the run parameters).

    The defaults run the demo: a three-level model (sessions in clients in therapists) with
    a client random slope of session independent of the client intercept, fitted by REML,
    time counted in sessions from session 1. Every field is a plain value, e.g.::

        multilevel:
          reml: false            # ML, to compare fixed effects by AIC/BIC
          therapist_level: false
          correlated_slope: true # lme4's (1 + session | client)

    *Premature dropout* is defined once per run, under ``change:`` (``dropout``,
    ``dropout_sessions``, ``dropout_column``; see
    :func:`alliance_analysis.change.dropout_status`). ``early_sessions`` must be below the
    dropout session, so that early alliance is measured before
    the dropout it predicts.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reml: bool = Field(
        True, description="REML (unbiased variance components; compare models with different "
        "random effects only) or ML (needed to compare models with different fixed effects "
        "by likelihood ratio, AIC or BIC)")
    time: Literal["session", "log_session", "day"] = Field(
        "session", description="time metric of growth: session number, log of session number "
        "(fast early change), or days since the client's first session")
    time_origin: int = Field(
        1, ge=1, description="session at which time is 0, so the intercept is the expected "
        "level at this session (for 'day': day 0 is the client's first session)")
    therapist_level: bool = Field(
        True, description="add a random therapist intercept (three levels: sessions in "
        "clients in therapists)")
    client_slope: bool = Field(
        True, description="random client slope of time (clients change at different rates)")
    correlated_slope: bool = Field(
        False, description="let the client intercept and slope correlate, as lme4's "
        "(1 + time | client); statsmodels can fit this only with therapist_level false")
    lagged_outcome: bool = Field(
        False, description="within/between models: add the current symptom level (session "
        "t) as a covariate of symptoms at t+1 (see the Nickell-bias note in the docs)")
    detrend: bool = Field(
        False, description="within/between models: split alliance around each client's own "
        "linear trend instead of their mean (Falkenström et al. 2017)")
    early_sessions: int = Field(
        5, ge=1, description="early alliance is the client's mean alliance over sessions "
        "1..early_sessions")
    therapist_rater: str | None = Field(
        "wai_t", description="the therapist-rated alliance instrument for the client-therapist "
        "perspective models; None skips them")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of every interval")
    icc_ci: Literal["delta", "bootstrap"] = Field(
        "delta", description="CI of intraclass correlations: delta method on the logit scale "
        "(fast) or seeded parametric bootstrap (slower, better in few therapists)")
    bootstrap_samples: int = Field(
        200, ge=10, description="parametric bootstrap replications when icc_ci is 'bootstrap'")
    optimizers: tuple[Literal["lbfgs", "bfgs", "cg", "powell", "nm"], ...] = Field(
        DEFAULT_OPTIMIZERS, min_length=1, description="statsmodels MixedLM optimizers tried in "
        "order; a later one only when the earlier fail to converge or to reach a zero gradient")
    engine: Literal["statsmodels", "engine"] = Field(
        "statsmodels", description="fitter of the growth, within/between and early-alliance "
        "models: statsmodels MixedLM, or the project's nested engine (alliance_analysis.engine: "
        "lme4's profiled REML/ML, 10-100x faster, and able to fit a correlated client intercept "
        "and slope beside a therapist intercept); therapist-effect, ICC and perspective models "
        "always use statsmodels")
    max_iter: int = Field(
        1000, ge=1, description="maximum iterations of each optimizer attempt")


def random_part(options: MultilevelOptions, time: str | None) -> RandomPart:
    """The random effects the options ask for, in statsmodels' and lme4's terms.

    ``time`` is the time column for a client slope (``None``: intercepts only). Two levels:
    clients are statsmodels' groups, with a correlated ``re_formula`` or an independent slope
    variance component. Three levels: therapists are the groups and each client's intercept
    (and slope) is a variance component, the structure of lme4's
    ``(1 | therapist) + (1 | client) + (0 + time | client)``.

    Raises
    ------
    AllianceParamsError
        For a correlated client intercept and slope together with a therapist level, which
        statsmodels cannot express.
    """
    slope = options.client_slope and time is not None
    if options.therapist_level and slope and options.correlated_slope:
        if options.engine == "engine":  # fitted by the engine; no statsmodels form exists
            return RandomPart(THERAPIST, "1", "therapist",
                              f"(1 | therapist) + (1 + {time} | client)")
        raise AllianceParamsError(
            "multilevel: statsmodels cannot fit a correlated client intercept and slope "
            f"(lme4: (1 + {time} | client)) together with a therapist intercept; MixedLM "
            "allows correlated random effects only at its top grouping level and nests "
            "clients in therapists as independent variance components. Set one of: "
            "correlated_slope: false (three levels, client intercept and slope independent), "
            "therapist_level: false (two levels, correlated intercept and slope), or "
            "client_slope: false; or engine: engine, whose nested mixed-model engine fits it")
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
         random: RandomPart, options: MultilevelOptions, note: str = "") -> ModelResult:
    if options.engine == "engine":
        return _fit_engine(name, frame, outcome, predictors, options, note)
    result, _ = fit_mixed(name, frame, outcome, predictors, random, options.reml,
                          options.optimizers, options.max_iter, options.ci_level, note)
    return result


def _fit_engine(name: str, frame: pd.DataFrame, outcome: str, predictors: Sequence[str],
                options: MultilevelOptions, note: str) -> ModelResult:
    """The same model through :func:`alliance_analysis.engine.fit_nested`.

    Results follow the statsmodels route's conventions: AIC/BIC empty under REML (with the
    same note), and ``extra["group_intercepts"]`` holds the top level's random intercepts.
    """
    from alliance_analysis.engine import fit_nested

    random = ["1", options.time] if options.client_slope else ["1"]
    result = fit_nested(frame, outcome, list(predictors), random=random, client=CLIENT,
                        therapist=THERAPIST if options.therapist_level else None,
                        correlated=options.correlated_slope, reml=options.reml,
                        ci_level=options.ci_level, max_iter=options.max_iter, name=name)
    fit = dict(result.fit)
    if options.reml:
        fit.update(aic=np.nan, bic=np.nan, note=REML_AIC_NOTE)
    effects = result.extra["random_effects"]
    top = "therapist" if options.therapist_level else "client"
    intercepts = effects[(effects["level"] == top) & (effects["term"] == "(Intercept)")]
    intercepts = intercepts.drop(columns="term").assign(
        level=THERAPIST if options.therapist_level else CLIENT)
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
        The multilevel options (time, levels, slope, REML/ML, optimizers).
    name
        Stable name of the result.

    Returns
    -------
    ModelResult
        Terms ``(Intercept)`` (expected score at the origin) and the time term (change per
        unit of time); variance components by level.

    Raises
    ------
    AllianceParamsError
        When a correlated client slope is asked for with a therapist level.

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
    return _fit(name, frame, outcome, [options.time], random_part(options, options.time),
                options, _time_note(options))


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
    return _fit(name, frame, outcome, predictors, random_part(options, options.time),
                options, note)


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
    (Raudenbush & Bryk's contextual effect), with its Wald SE: an interval away from
    zero says the therapist and client parts of the alliance relate differently to outcome;
    with symptoms as the outcome a negative difference means the therapist part is the
    stronger, as Baldwin et al. found.

    ``extra["icc"]`` holds intraclass correlations (see :mod:`alliance_analysis.icc` for the
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
        optimizers.
    seed
        Seed of the parametric bootstrap (used when ``icc_ci`` is ``"bootstrap"``).
    """
    derive.require_columns(sessions, [score_column(alliance), score_column(symptoms), CLIENT,
                                      THERAPIST, "session"], "therapist_effects")
    ordered = derive.in_session_order(sessions)
    clients = derive.client_table(ordered, symptoms).merge(
        derive.early_mean(ordered, alliance, options.early_sessions), on=CLIENT, how="left")
    early = f"{alliance}_early"
    therapist_mean = clients.groupby(THERAPIST)[early].transform("mean")
    clients = clients.assign(**{f"{alliance}_therapist_mean": therapist_mean,
                                f"{alliance}_client_deviation": clients[early] - therapist_mean})
    terms = [f"{symptoms}_baseline", f"{alliance}_therapist_mean",
             f"{alliance}_client_deviation"]
    random = RandomPart(THERAPIST, "1", "therapist", "(1 | therapist)")
    result, fitted = fit_mixed(
        "therapist_effects", clients, f"{symptoms}_post", terms, random, options.reml,
        options.optimizers, options.max_iter, options.ci_level,
        f"one row per client; early alliance = mean of sessions 1-{options.early_sessions}")
    difference = fixed_effect_difference(fitted, terms[1], terms[2], options.ci_level)
    params = pd.concat([result.params, difference], ignore_index=True)
    icc = pd.concat([
        null_model_iccs(ordered, alliance, options, seed),
        null_model_iccs(ordered, symptoms, options, seed + 1),
        intercept_iccs(fitted, f"{symptoms}_post_adjusted", options, seed + 2),
    ], ignore_index=True)
    return replace(result, params=params, extra={**result.extra, "icc": icc})


def fixed_effect_difference(fitted: MixedFit, first: str, second: str,
                            ci_level: float) -> pd.DataFrame:
    """``first - second`` of two fixed effects with its Wald SE, interval and p-value."""
    cov = fitted.fixed_cov()
    estimate = fitted.result.fe_params[first] - fitted.result.fe_params[second]
    se = float(np.sqrt(cov.loc[first, first] + cov.loc[second, second]
                       - 2 * cov.loc[first, second]))
    z = stats.norm.ppf(0.5 + ci_level / 2)
    return pd.DataFrame([{"term": "therapist_minus_client", "estimate": estimate, "se": se,
                          "ci_low": estimate - z * se, "ci_high": estimate + z * se,
                          "p": 2 * stats.norm.sf(abs(estimate / se))}])


def alliance_growth(sessions: pd.DataFrame, alliance: str, options: MultilevelOptions,
                    seed: int) -> ModelResult:
    """Alliance over sessions: average growth, its variance components and ICCs.

    :func:`growth_model` with alliance as the outcome (name ``alliance_growth``), plus
    ``extra["icc"]``: the share of alliance variance between therapists and between clients
    (null model, :func:`alliance_analysis.icc.null_model_iccs`). A therapist ICC well above
    zero means some therapists form better alliances with all their clients (Baldwin et al., 2007).
    """
    result = growth_model(sessions, alliance, options, name="alliance_growth")
    icc = null_model_iccs(derive.in_session_order(sessions), alliance, options, seed)
    return replace(result, extra={**result.extra, "icc": icc})


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
    early = derive.early_mean(ordered, alliance, options.early_sessions)
    name = f"{alliance}_early"
    frame = _with_time(ordered, options)
    frame = frame.assign(**{name: frame[CLIENT].map(early - early.mean())})
    return _fit("early_alliance_slope", frame, score_column(symptoms),
                [options.time, name, f"{options.time}:{name}"],
                random_part(options, options.time), options,
                f"{_time_note(options)}; {name} = mean of sessions 1-{options.early_sessions}, "
                "centred at the client mean")


def dropout_model(sessions: pd.DataFrame, alliance: str, symptoms: str,
                  options: MultilevelOptions, dropout: pd.DataFrame,
                  definition: str = "") -> ModelResult:
    """Logistic model of premature dropout on early alliance and baseline severity.

    Only clients who attended at least ``early_sessions`` sessions are modelled, so that
    their early alliance (mean of sessions ``1..early_sessions``) was measured in full and
    before they left. ``dropout ~ <alliance>_early + <symptoms>_baseline``, both centred at
    the mean over the modelled clients, by maximum likelihood (statsmodels GLM, binomial,
    logit link) with standard errors clustered by therapist (clients of one therapist are not
    independent; with fewer than about 30 therapists these SEs are somewhat liberal).

    Parameters
    ----------
    sessions
        The canonical session table.
    alliance, symptoms
        Instrument keys.
    options
        The multilevel options (``early_sessions``, ``ci_level``).
    dropout
        Each client's status, ``client_id, dropout`` (bool): the run's single definition,
        :func:`alliance_analysis.change.dropout_status`.
    definition
        The definition in words, for the model's note (:func:`alliance_analysis.change.dropout_rule`).

    Returns
    -------
    ModelResult
        Log-odds ``estimate`` per term with ``odds_ratio``, ``or_ci_low``, ``or_ci_high``;
        ``fit`` adds ``n_dropouts``. When nobody or everybody dropped out the model cannot
        be estimated: the result then has missing estimates and ``converged`` false, with
        the reason in ``warnings``.
    """
    derive.require_columns(sessions, [score_column(alliance), score_column(symptoms), CLIENT,
                                      THERAPIST, "session"], "dropout_model")
    ordered = derive.in_session_order(sessions)
    clients = derive.client_table(ordered, symptoms).merge(
        derive.early_mean(ordered, alliance, options.early_sessions), on=CLIENT, how="left")
    status = dropout.assign(**{CLIENT: dropout["client_id"].astype(str)})[[CLIENT, "dropout"]]
    clients = clients.assign(**{CLIENT: clients[CLIENT].astype(str)}).merge(
        status, on=CLIENT, how="left")
    terms = [f"{alliance}_early", f"{symptoms}_baseline"]
    clients = clients[clients["n_sessions"] >= options.early_sessions].dropna(
        subset=[*terms, "dropout"])
    clients = clients.assign(dropout=clients["dropout"].astype(float))
    clients = clients.assign(**{t: clients[t] - clients[t].mean() for t in terms})
    return _fit_logistic(
        "dropout", clients, "dropout", terms, options.ci_level,
        f"dropout = {definition or 'as given'}; clients with at least {options.early_sessions} "
        "sessions; predictors centred; SEs clustered by therapist")


def _fit_logistic(name: str, data: pd.DataFrame, outcome: str, terms: Sequence[str],
                  ci_level: float, note: str) -> ModelResult:
    """Binomial GLM (logit link) with therapist-clustered SEs, as a ModelResult."""
    formula = f"{outcome} ~ " + " + ".join(terms)
    fit = {"n_obs": len(data), "n_clients": int(data[CLIENT].nunique()),
           "n_therapists": int(data[THERAPIST].nunique()), "method": "ML",
           "n_dropouts": int(data[outcome].sum()), "optimizer": "IRLS", "singular": False}
    events = fit["n_dropouts"]
    if events in (0, len(data)):
        empty = pd.DataFrame({"term": ["(Intercept)", *terms], "estimate": np.nan,
                              "se": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p": np.nan})
        reason = (f"NOT ESTIMABLE: {events} of {len(data)} clients dropped out; a logistic "
                  "model needs both outcomes")
        return ModelResult(name, empty, {**fit, "loglik": np.nan, "aic": np.nan,
                                         "bic": np.nan, "converged": False,
                                         "warnings": [reason]}, f"{formula}; {note}")
    groups = pd.factorize(data[THERAPIST])[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = GLM.from_formula(formula, data, family=Binomial())
        result = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    estimate, se = result.params.to_numpy(), result.bse.to_numpy()
    z = stats.norm.ppf(0.5 + ci_level / 2)
    params = pd.DataFrame({
        "term": ["(Intercept)" if t == "Intercept" else t for t in result.params.index],
        "estimate": estimate, "se": se, "ci_low": estimate - z * se,
        "ci_high": estimate + z * se, "p": result.pvalues.to_numpy(),
        "odds_ratio": np.exp(estimate), "or_ci_low": np.exp(estimate - z * se),
        "or_ci_high": np.exp(estimate + z * se)})
    converged = bool(result.converged) and bool(np.all(np.isfinite(se)))
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    if not converged:
        messages.insert(0, "NOT CONVERGED: the logistic model's IRLS did not converge "
                           "(separation?); do not interpret the estimates")
    return ModelResult(name, params, {**fit, "loglik": float(result.llf),
                                      "aic": float(result.aic), "bic": float(result.bic_llf),
                                      "converged": converged, "warnings": messages},
                       f"{formula} [statsmodels GLM, binomial, logit; {note}]")
