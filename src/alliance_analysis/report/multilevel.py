"""Writing, recording and reading aloud the multilevel results.

:func:`report_model` writes a model's tables to the run folder and records its headline
numbers in ``results.json`` under stable keys; :func:`reading` turns the estimates into
plain-language sentences for a student; :func:`show` returns what a notebook cell shows, and
:func:`report_multilevel` writes the whole stage. ``notebooks/03_multilevel`` calls only these, so every number it shows comes from
a function the tests reach.

Stable names, for a model named ``<name>`` (e.g. ``within_between``):

* tables ``multilevel_<name>`` (fixed effects), ``multilevel_<name>_variance_components``,
  ``multilevel_<name>_icc`` (when the model has ICCs); :func:`report_fits` writes
  ``multilevel_fit`` (one row per model) and ``multilevel_optimizer_attempts``;
* keys ``multilevel.<name>.<term>.<estimate|se|ci_low|ci_high|p>``,
  ``multilevel.<name>.fit.<n_obs|n_clients|n_therapists|loglik|aic|bic|converged|singular|
  optimizer>``, ``multilevel.<name>.variance.<level>.<term>`` and
  ``multilevel.<name>.icc.<measure>.<level>.<icc|ci_low|ci_high>``.

Every table and figure has a caption naming the model in words (:data:`DESCRIPTIONS`), and
the coefficient figures name the terms by the ``labels:`` of the parameters
(:func:`alliance_analysis.report.models.label_term`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from IPython.display import Markdown

from alliance_analysis.change.markers import dropout_rule
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.multilevel.models import MultilevelResults
from alliance_analysis.results import ModelResult, is_estimated
from alliance_analysis.report import plots
from alliance_analysis.report.models import relabelled
from alliance_analysis.report.runfolder import RunFolder

if TYPE_CHECKING:
    from alliance_analysis.params import RunParams

#: Statistics of each term recorded in ``results.json``.
RECORDED_STATS = ("estimate", "se", "ci_low", "ci_high", "p")
#: Fit statistics recorded in ``results.json``.
RECORDED_FIT = ("n_obs", "n_clients", "n_therapists", "loglik", "aic", "bic", "converged",
                "singular", "optimizer")
TIME_UNITS = {"session": "per session", "day": "per day",
              "log_session": "per unit of log(session) (session 1 to 2.7, 2.7 to 7.4, ...)"}


#: What each built-in model is, for the captions: ``<part> of <description>``.
DESCRIPTIONS = {
    "growth": "the symptom growth model (symptom scores over sessions, clients' own starting "
              "levels and slopes, therapists' own levels)",
    "within_between": "the within/between model (a client's alliance at the previous session "
                      "above their own average, and their average alliance, predicting "
                      "next-session symptoms)",
    "therapist_effects": "the therapist-effects model (the therapist's mean and the client's "
                         "deviation of early alliance predicting end-of-treatment symptoms, "
                         "at the same baseline severity)",
    "alliance_growth": "the alliance growth model (alliance scores over sessions)",
    "early_alliance_slope": "the early-alliance model (early alliance and its interaction "
                            "with time predicting symptom change)",
    "dropout": "the dropout model (logistic regression of premature dropout on early alliance "
               "and baseline severity)",
    "rater_agreement": "the client-therapist agreement model (between- and within-dyad "
                       "correlations and the rating gap on the 0-100 POMP scale)",
    "rater_within_between": "the two-perspective model (client- and therapist-rated alliance "
                            "at the previous session predicting next-session symptoms)",
}
#: What each extra table of a model holds, for its caption and note.
EXTRA_TABLES = {
    "variance_components": ("Variance components of",
                            "vcov: variance (or covariance, with term2) of each level's random "
                            "effects and the residual variance; sdcor: SD (or correlation); "
                            "intervals Wald, on the log scale for variances."),
    "icc": ("Intraclass correlations of",
            "Share of the variance at each level (ICC) with its confidence interval "
            "(multilevel.icc_ci)."),
}


def describe(name: str) -> str:
    """The model a table or figure shows, in words a reader of a paper understands."""
    return DESCRIPTIONS.get(name, f"the {name.replace('_', ' ')} model")


def report_model(run: RunFolder, result: ModelResult) -> dict[str, Any]:
    """Write the model's tables and record its headline numbers; returns what was recorded.

    Every table has a caption naming the model (:func:`describe`).
    """
    flags = [result.flags()]
    columns = result.params.columns
    tests = ("; Wald z tests of the log odds, odds ratios in odds_ratio"
             if "odds_ratio" in columns else
             "; t tests with Satterthwaite's df, as lmerTest" if "df" in columns else "")
    run.write_table(f"multilevel_{result.name}", result.to_table(), flags=flags,
                    caption=f"Estimates of {describe(result.name)}",
                    note=f"Estimates with their confidence intervals and p-values{tests}; "
                         "converged: whether the fit passed its convergence check. Model: "
                         f"{result.spec}.")
    for key, (part, note) in EXTRA_TABLES.items():
        if key in result.extra:
            run.write_table(f"multilevel_{result.name}_{key}", result.extra[key], flags=flags,
                            caption=f"{part} {describe(result.name)}", note=note)
    return run.record(headline(result))


def headline(result: ModelResult) -> dict[str, Any]:
    """The model's numbers by stable ``results.json`` key (see the module notes)."""
    prefix = f"multilevel.{result.name}"
    values: dict[str, Any] = {}
    for row in result.params.itertuples(index=False):
        for stat in RECORDED_STATS:
            values[f"{prefix}.{row.term}.{stat}"] = getattr(row, stat)
    for key in RECORDED_FIT:
        if key in result.fit:
            values[f"{prefix}.fit.{key}"] = result.fit[key]
    for row in result.extra.get("variance_components", pd.DataFrame()).itertuples(index=False):
        term = "residual" if row.level == "residual" else (
            row.term if pd.isna(row.term2) else f"{row.term}:{row.term2}")
        values[f"{prefix}.variance.{row.level}.{term}"] = row.vcov
    for row in result.extra.get("icc", pd.DataFrame()).itertuples(index=False):
        for stat in ("icc", "ci_low", "ci_high"):
            values[f"{prefix}.icc.{row.measure}.{row.level}.{stat}"] = getattr(row, stat)
    return values


def report_fits(run: RunFolder, results: Sequence[ModelResult]) -> pd.DataFrame:
    """Write ``multilevel_fit`` (one row per model) and ``multilevel_optimizer_attempts``."""
    fits = pd.concat([r.fit_table() for r in results], ignore_index=True)
    run.write_table("multilevel_fit", fits, flags=[r.flags() for r in results],
                    caption="Fit of the built-in multilevel models: sample sizes, "
                            "log-likelihood, AIC, BIC, optimizer, convergence and singularity",
                    note="REML fits give the REML log-likelihood, AIC and BIC, as lme4: they "
                         "compare only models with the same fixed effects fitted on the same "
                         "rows.")
    attempts = [r.extra["optimizer_attempts"].assign(model=r.name) for r in results
                if "optimizer_attempts" in r.extra]
    if attempts:
        run.write_table("multilevel_optimizer_attempts", pd.concat(attempts, ignore_index=True),
                        caption="Every optimizer run of every multilevel model and the checks "
                                "it passed",
                        note="The kept run reached the lowest deviance and passed lme4's "
                             "scaled-gradient check; the others are listed to show that the "
                             "optimum was checked.")
    return fits


def report_multilevel(results: MultilevelResults, run: RunFolder) -> pd.DataFrame:
    """Write the multilevel stage: every model's tables and numbers, the fit table, the figures.

    For each model :func:`report_model`; then :func:`report_fits` over all of them and
    :func:`write_figures`. Returns the fit table (one row per model), for the notebook to
    show; the notebook shows the figures as written (``run.figure(name)``).
    """
    for result in results.models.values():
        report_model(run, result)
    fits = report_fits(run, list(results.models.values()))
    write_figures(run, results.models, results.params)
    return fits


def show(result: ModelResult, params: RunParams) -> Markdown:
    """A model's plain-language reading, its tables and its fit, for a notebook to show."""
    parts = [reading(result, params), result.to_markdown()]
    for key, title in (("variance_components", "Variance components"),
                       ("icc", "Intraclass correlations")):
        if key in result.extra:
            parts.append(f"**{title}**\n\n" + result.extra[key].to_markdown(
                index=False, floatfmt=".4g"))
    fit = result.fit
    parts.append(f"*Fit:* {fit['n_obs']} observations, {fit['n_clients']} clients, "
                 f"{fit['n_therapists']} therapists; {fit.get('method', '')} log-likelihood "
                 f"{fit['loglik']:.2f}; optimizer {fit['optimizer']}; converged "
                 f"{fit['converged']}; singular {fit['singular']}.  \n*Model:* `{result.spec}`")
    return Markdown("\n\n".join(parts))


def present(run: RunFolder, result: ModelResult, params: RunParams) -> Markdown:
    """Report one model (:func:`report_model`) and return what :func:`show` shows."""
    report_model(run, result)
    return show(result, params)


def show_models(results: Sequence[ModelResult], params: RunParams,
                none: str = "No models to show.") -> Markdown:
    """:func:`show` for several models in one output; ``none`` when there are none."""
    return Markdown("\n\n---\n\n".join(show(r, params).data for r in results) or none)


def reading(result: ModelResult, params: RunParams) -> str:
    """Plain-language reading of a model's estimates, for a student (Markdown text).

    Starts with a warning when the fit did not converge or is singular. Models are
    recognised by their stable name; any other result gets a generic list of effects.
    """
    if not is_estimated(result):
        reason = "; ".join(w.removeprefix("NOT ESTIMABLE: ") for w in result.fit["warnings"]
                           if w.startswith("NOT ESTIMABLE"))
        return (f"**Not estimable: {reason}.** The data cannot identify this model, so it "
                "has no estimates; the other analyses of the run are unaffected.")
    words = _Words(params)
    text = _READERS.get(result.name, _generic)(result, words)
    return _caution(result) + text


class _Words:
    """Labels and settings the readings need, from the run parameters."""

    def __init__(self, params: RunParams) -> None:
        self.options = params.multilevel
        self.alliance, self.symptoms = params.alliance, params.symptoms
        self.rater = params.multilevel.therapist_rater
        self.level = f"{100 * params.multilevel.ci_level:g}%"
        self.dropout_rule = dropout_rule(params.change)
        self._custom = params.custom_instruments

    def label(self, key: str | None) -> str:
        """Short name of an instrument, e.g. ``PHQ-9``; the key itself when unknown."""
        try:
            return get_instrument(str(key), self._custom).abbreviation()
        except AllianceParamsError:
            return str(key)

    def ci(self, row: pd.Series, digits: int = 2) -> str:
        text = f"{self.level} CI {row.ci_low:.{digits}f} to {row.ci_high:.{digits}f}"
        if row.ci_low <= 0 <= row.ci_high:
            text += "; the interval includes zero, so the data are also consistent with no effect"
        return text


def _row(result: ModelResult, term: str) -> pd.Series:
    return result.params.set_index("term").loc[term].rename(term)


def _time_term(result: ModelResult) -> str:
    return next(t for t in TIME_UNITS if t in set(result.params["term"]))


def _fewer(value: float, unit: str, digits: int = 2) -> str:
    return f"{abs(value):.{digits}f} {'fewer' if value < 0 else 'more'} {unit}"


def _caution(result: ModelResult) -> str:
    fit = result.fit
    notes = []
    if not fit["converged"]:
        notes.append("**Caution: this fit did not converge; do not interpret the numbers "
                     "below.** See the warnings under the table.")
    if fit.get("singular"):
        notes.append("**Singular fit:** a variance is estimated at zero (or a correlation at "
                     "+/-1), so the random part is more complex than the data support. Fixed "
                     "effects are usually still fine; refit with a simpler random part (e.g. "
                     "`client_slope: false`) to check.")
    return "\n\n".join(notes) + ("\n\n" if notes else "")


def _growth(result: ModelResult, w: _Words) -> str:
    measure = w.label(w.symptoms if result.name == "growth" else w.alliance)
    time = _time_term(result)
    start, slope = _row(result, "(Intercept)"), _row(result, time)
    origin = "the client's first session" if time == "day" else \
        f"session {w.options.time_origin}"
    text = (f"At {origin} the average {measure} score is {start.estimate:.2f} "
            f"({w.ci(start)}). It changes by {slope.estimate:+.3f} points {TIME_UNITS[time]} "
            f"({w.ci(slope, 3)}).")
    return text + _spread(result)


def _spread(result: ModelResult) -> str:
    vc = result.extra.get("variance_components")
    if vc is None:
        return ""
    sds = [f"{row.level} {row.term}: SD {row.sdcor:.3g}"
           for row in vc.itertuples(index=False) if row.level != "residual"
           and pd.isna(row.term2)]
    return (" Around this average, clients and therapists differ (" + "; ".join(sds) +
            "), and sessions scatter around each client's own line.") if sds else ""


def _within_between(result: ModelResult, w: _Words) -> str:
    a, s = w.label(w.alliance), w.label(w.symptoms)
    within, between = _row(result, f"{w.alliance}_within_lag1"), \
        _row(result, f"{w.alliance}_between")
    own = "their own trend" if w.options.detrend else "their own average"
    held = f", at the same {s} level this session" if w.options.lagged_outcome else ""
    return (f"A client whose {a} alliance is one point above {own} has "
            f"{_fewer(within.estimate, s + ' points')} at the next session{held} "
            f"({w.ci(within)}). This within-client effect is the one that speaks to the "
            f"alliance being therapeutic for a given client. Between clients, one whose "
            f"average alliance is one point higher has {_fewer(between.estimate, s + ' points')}"
            f" ({w.ci(between)}); this between-client difference also carries everything that "
            "makes some clients both bond well and improve.")


def _therapist_effects(result: ModelResult, w: _Words) -> str:
    a, s = w.label(w.alliance), w.label(w.symptoms)
    therapist = _row(result, f"{w.alliance}_therapist_mean")
    client = _row(result, f"{w.alliance}_client_deviation")
    difference = _row(result, "therapist_minus_client")
    text = (f"At the same baseline severity, clients of a therapist whose clients rate the "
            f"early {a} alliance one point higher on average end treatment with "
            f"{_fewer(therapist.estimate, s + ' points')} ({w.ci(therapist)}). A client who "
            f"rates the alliance one point above their therapist's average ends with "
            f"{_fewer(client.estimate, s + ' points')} ({w.ci(client)}). The therapist part "
            f"minus the client part is {difference.estimate:+.2f} ({w.ci(difference)}); "
            "Baldwin, Wampold and Imel (2007) found that the therapist part carries the "
            "alliance-outcome relation (a negative difference here).")
    return text + _icc_sentence(result)


def _icc_sentence(result: ModelResult) -> str:
    icc = result.extra.get("icc")
    if icc is None:
        return ""
    parts = [f"{row.measure} {row.level} {100 * row.icc:.1f}%"
             + (f" ({100 * row.ci_low:.1f} to {100 * row.ci_high:.1f})"
                if np.isfinite(row.ci_low) else "")
             for row in icc.itertuples(index=False)]
    return " Share of the variance at each level (ICC, with CI): " + "; ".join(parts) + "."


def _alliance_growth(result: ModelResult, w: _Words) -> str:
    return _growth(result, w) + _icc_sentence(result) + (
        " A therapist ICC above zero means some therapists form better alliances with all "
        "their clients.")


def _early_slope(result: ModelResult, w: _Words) -> str:
    a, s = w.label(w.alliance), w.label(w.symptoms)
    time = _time_term(result)
    slope = _row(result, time)
    interaction = _row(result, f"{time}:{w.alliance}_early")
    text = (f"For a client with average early {a} alliance (sessions 1-"
            f"{w.options.early_sessions}), {s} changes by {slope.estimate:+.3f} points "
            f"{TIME_UNITS[time]}. Each point of early alliance above average changes this "
            f"slope by {interaction.estimate:+.3f} ({w.ci(interaction, 3)})")
    if interaction.ci_low > 0 or interaction.ci_high < 0:
        same_sign = interaction.estimate * slope.estimate > 0
        text += f": {'faster' if same_sign else 'slower'} change with a better early alliance"
    return text + "."


def _dropout(result: ModelResult, w: _Words) -> str:
    fit = result.fit
    share = 100 * fit["n_dropouts"] / max(fit["n_obs"], 1)
    text = (f"Of {fit['n_obs']} clients who reached session {w.options.early_sessions} "
            f"sessions, {fit['n_dropouts']} ({share:.0f}%) dropped out "
            f"({w.dropout_rule}).")
    if not fit["converged"]:
        return text
    row = _row(result, f"{w.alliance}_early")
    return text + (f" Each point of early {w.label(w.alliance)} alliance multiplies the odds "
                   f"of dropping out by {row.odds_ratio:.2f} ({w.level} CI "
                   f"{row.or_ci_low:.2f} to {row.or_ci_high:.2f}), at the same baseline "
                   "severity; below 1 means a better early alliance goes with staying.")


def _agreement(result: ModelResult, w: _Words) -> str:
    between, within = _row(result, "between_dyad_r"), _row(result, "within_dyad_r")
    mean, slope = _row(result, "discrepancy_mean"), _row(result, "discrepancy_slope")
    who = "higher" if mean.estimate > 0 else "lower"
    return (f"Between dyads, clients' and therapists' average alliance ratings correlate "
            f"r = {between.estimate:.2f} ({w.ci(between)}); within dyads, their "
            f"session-to-session changes correlate r = {within.estimate:.2f} ({w.ci(within)}). "
            f"On a common 0-100 scale (POMP) clients rate the alliance "
            f"{abs(mean.estimate):.1f} points {who} than their therapists ({w.ci(mean)}); "
            f"the gap (client minus therapist) changes by {slope.estimate:+.2f} points "
            f"{TIME_UNITS[w.options.time]} ({w.ci(slope)}).")


def _rater_within_between(result: ModelResult, w: _Words) -> str:
    s = w.label(w.symptoms)
    client = _row(result, f"{w.alliance}_within_lag1")
    therapist = _row(result, f"{w.rater}_within_lag1")
    return (f"With both views in one model: a session the client rates one point above their "
            f"own average is followed by {_fewer(client.estimate, s + ' points')} "
            f"({w.ci(client)}), holding the therapist's view constant; a session the "
            f"therapist rates one point above their average for this client is followed by "
            f"{_fewer(therapist.estimate, s + ' points')} ({w.ci(therapist)}), holding the "
            "client's view constant.")


def _generic(result: ModelResult, w: _Words) -> str:
    rows = [f"`{row.term}` {row.estimate:+.3f} ({w.ci(row)})"
            for _, row in result.params.iterrows() if row.term != "(Intercept)"]
    return "Estimated effects: " + "; ".join(rows) + "."


_READERS: Mapping[str, Callable[[ModelResult, _Words], str]] = {
    "growth": _growth, "within_between": _within_between,
    "therapist_effects": _therapist_effects, "alliance_growth": _alliance_growth,
    "early_alliance_slope": _early_slope, "dropout": _dropout,
    "rater_agreement": _agreement, "rater_within_between": _rater_within_between,
}


def write_figures(run: RunFolder, results: Mapping[str, ModelResult],
                  params: RunParams) -> dict[str, Any]:
    """Draw and save the multilevel figures; return them by stable name.

    ``multilevel_within_between`` (the two alliance effects side by side), a caterpillar
    plot of the therapists' random intercepts for the symptom growth model and for the
    alliance growth model (``multilevel_therapists_<key>``) when the model has a therapist
    level, and a coefficient plot of every model (``multilevel_coefficients_<name>``).

    Parameters
    ----------
    run
        The run folder.
    results
        The fitted models by name (``growth``, ``within_between``, ``alliance_growth``, ...).
    params
        The run parameters (for the instruments).
    """
    alliance, symptoms = params.measures()
    figures: dict[str, Any] = {}
    shows: dict[str, ModelResult] = {}
    if "within_between" in results:
        figures["multilevel_within_between"] = (
            plots.within_between(results["within_between"], alliance, symptoms)
            if is_estimated(results["within_between"])
            else plots.not_estimable(results["within_between"]))
        shows["multilevel_within_between"] = results["within_between"]
    for name, instrument in (("growth", symptoms), ("alliance_growth", alliance)):
        result = results.get(name)
        intercepts = result.extra.get("group_intercepts") if result is not None else None
        if intercepts is not None and len(intercepts) and \
                intercepts["level"].iloc[0] == "therapist_id":
            figures[f"multilevel_therapists_{instrument.key}"] = plots.caterpillar(
                intercepts, f"{instrument.abbreviation()} total",
                f"Therapists' random intercepts ({name} model)")
            shows[f"multilevel_therapists_{instrument.key}"] = result
    captions = {
        "multilevel_within_between": f"Within- and between-client effects of the "
        f"{alliance.abbreviation()} alliance on next-session {symptoms.abbreviation()} "
        "symptoms, with their confidence intervals",
        **{f"multilevel_therapists_{instrument.key}": f"Therapists' random intercepts of "
           f"{instrument.abbreviation()} (deviation from the average therapist) with their "
           f"{100 * params.multilevel.ci_level:g}% intervals, from the "
           + ("symptom" if instrument is symptoms else "alliance") + " growth model"
           for instrument in (symptoms, alliance)}}
    for name, result in results.items():
        figures[f"multilevel_coefficients_{name}"] = plots.coefficients(
            relabelled(result, params.labels), exclude=("(Intercept)", "Intercept"),
            outcome=plots.outcome_label(plots.outcome_of(result),
                                        params.instrument_definitions()))
        shows[f"multilevel_coefficients_{name}"] = result
        captions[f"multilevel_coefficients_{name}"] = (
            f"Estimates of {describe(name)} with their confidence intervals (intercept not "
            "shown)")
    for name, figure in figures.items():
        run.write_figure(name, figure, caption=captions[name], flags=[shows[name].flags()])
    return figures
