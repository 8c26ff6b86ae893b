"""Change and process markers: reliable change, sudden gains, alliance ruptures, dropout.

The events clinicians read session-by-session data through, each following its paper, with
every threshold a parameter of :class:`ChangeOptions` (``change:`` in the run parameters):

- reliable and clinically significant change (Jacobson & Truax, 1991): :func:`reliable_change`
  (:mod:`alliance_analysis.change.reliable_change`);
- sudden gains (Tang & DeRubeis, 1999) and their mirror image, sudden losses (Lutz et al.,
  2013): :mod:`alliance_analysis.change.sudden_gains`;
- alliance ruptures and repairs (Stiles et al., 2004): :mod:`alliance_analysis.change.ruptures`;
- early alliance and dropout: :mod:`alliance_analysis.change.dropout`.

:func:`analyse_change` runs them all on the session table and returns a :class:`ChangeReport`
(tidy tables, their captions stating the criteria, the models and the headline counts);
:func:`report_change` writes it to the run folder, so the notebook stays thin.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alliance_analysis.change import dropout as dropout_mod
from alliance_analysis.change import reliable_change as rc_mod
from alliance_analysis.change import ruptures as ruptures_mod
from alliance_analysis.change import sudden_gains as gains_mod
from alliance_analysis.data.clients import early_alliance
from alliance_analysis.errors import AllianceDataError, AllianceParamsError
from alliance_analysis.instruments import Instrument
from alliance_analysis.change.reliable_change import CATEGORIES, ReliableChange, ReliableChangeCriteria
from alliance_analysis.options import ChangeOptions
from alliance_analysis.results import ModelResult


def reliable_change(sessions: pd.DataFrame, instrument: Instrument,
                    options: ChangeOptions) -> ReliableChange:
    """Reliable and clinically significant change of each client (Jacobson & Truax, 1991).

    Parameters
    ----------
    sessions
        The canonical session table with the instrument's total (e.g. ``phq9_total``).
    instrument
        The symptom measure (lower = better).
    options
        The change options (method, reliability, cut-off, norms, pre and post sessions).

    Returns
    -------
    ReliableChange
        ``table`` (see :func:`alliance_analysis.change.reliable_change.classify_change`) and
        ``criteria`` (:class:`~alliance_analysis.change.reliable_change.ReliableChangeCriteria`).

    Notes
    -----
    :math:`SE = s_{pre}\\sqrt{1 - r_{xx}}`, :math:`S_{diff} = \\sqrt{2 SE^2}`,
    :math:`RC = (x_{post} - x_{pre}) / S_{diff}`, reliable when :math:`|RC| > 1.96`;
    or, with ``reliable_change: published``, a change of at least the instrument's published
    threshold (PHQ-9: 6 points; GAD-7: 4). Cut-off: the published caseness threshold
    (PHQ-9: 10; GAD-7: 8) or Jacobson & Truax's a, b or c
    (:func:`alliance_analysis.change.reliable_change.jacobson_truax_cutoffs`). Pre and post are each
    client's first and last scored sessions unless ``pre_session``/``post_session`` are set.

    References
    ----------
    .. [1] Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
       to defining meaningful change in psychotherapy research. Journal of Consulting and
       Clinical Psychology, 59(1), 12-19. https://doi.org/10.1037/0022-006X.59.1.12
    .. [2] Clark, D. M. (2011). Implementing NICE guidelines for the psychological treatment
       of depression and anxiety disorders: The IAPT experience. International Review of
       Psychiatry, 23(4), 318-327 (the published PHQ-9 and GAD-7 thresholds).
    """
    rc_mod.require_symptom_measure(instrument)
    pre_post = rc_mod.pre_post_scores(sessions, instrument.score_column(),
                                      options.pre_session, options.post_session)
    criteria = rc_mod.reliable_change_criteria(
        pre_post["pre"], instrument, method=options.reliable_change,
        reliability=options.reliability, sd_pre=options.sd_pre, z=options.rc_z,
        cutoff=options.cutoff, clinical_mean=options.clinical_mean,
        clinical_sd=options.clinical_sd, functional_mean=options.functional_mean,
        functional_sd=options.functional_sd)
    return ReliableChange(rc_mod.classify_change(pre_post, criteria), criteria)


def sudden_gain_threshold(instrument: Instrument, options: ChangeOptions) -> float:
    """Criterion 1 of sudden gains in points: ``sudden_gain_min``, else the instrument's
    published reliable-change threshold.

    Raises
    ------
    AllianceParamsError
        When neither is available.
    """
    if options.sudden_gain_min is not None:
        return float(options.sudden_gain_min)
    if instrument.rci is None:
        raise AllianceParamsError(
            f"change.sudden_gain_min is not set and instrument {instrument.key!r} has no "
            "published reliable-change threshold to use instead: set sudden_gain_min (points)")
    return float(instrument.rci)


def _sessions_text(options: ChangeOptions) -> str:
    pre = (f"session {options.pre_session}" if options.pre_session is not None
           else "each client's first scored session")
    post = (f"session {options.post_session}" if options.post_session is not None
            else "their last scored session")
    return f"from {pre} to {post}"


def _reliable_text(symptoms: Instrument, options: ChangeOptions,
                   criteria: ReliableChangeCriteria) -> str:
    """What decides reliable change under the method applied, and why ``rc`` is (not) there."""
    abbreviation = symptoms.abbreviation()
    if criteria.method == "published":
        return (f"decided by the change in points (post - pre): a change of at least "
                f"{criteria.threshold:g} points, the {abbreviation}'s published reliable-change "
                "threshold, is reliable. No Jacobson-Truax index is computed under this "
                "method, so the per-client table has no rc column (reliable_change: "
                "jacobson_truax adds it, from the pre-score SD and the instrument's "
                "reliability)")
    reliability = f"r_xx = {criteria.reliability:.2f} is {criteria.reliability_source}"
    if not np.isfinite(criteria.s_diff):
        return ("the Jacobson-Truax index (column rc), not computed: no client has a pre "
                f"score. {reliability}")
    s_pre = "set by change.sd_pre" if options.sd_pre is not None else "the SD of the pre scores"
    return (f"decided by the Jacobson-Truax index in column rc, RC = (post - pre) / S_diff, "
            f"S_diff = sqrt(2) x s_pre x sqrt(1 - r_xx) = {criteria.s_diff:.2f}: |RC| > "
            f"{criteria.z:g}, i.e. a change of more than {criteria.threshold:.2f} points, is "
            f"reliable. s_pre = {criteria.s_pre:.2f} is {s_pre}; {reliability}")


def _rc_caption(symptoms: Instrument, options: ChangeOptions,
                criteria: ReliableChangeCriteria) -> str:
    reliable = _reliable_text(symptoms, options, criteria)
    rules = {"published": "the instrument's published caseness threshold",
             "a": "Jacobson-Truax a: 2 SD below the clinical mean",
             "b": "Jacobson-Truax b: 2 SD above the functional mean",
             "c": "Jacobson-Truax c: between the clinical and functional distributions"}
    return (f"Reliable and clinically significant change on the {symptoms.name} "
            f"{_sessions_text(options)} (Jacobson & Truax, 1991). Reliable change: {reliable}. "
            f"Clinical range: {round(criteria.cutoff, 2):g} or above "
            f"({rules[criteria.cutoff_rule]}). "
            "Recovered: reliable improvement from the clinical to the non-clinical range; "
            "clients who started below the cut-off can be reliably improved but not "
            "recovered. Lower scores are better.")


def _sudden_caption(symptoms: Instrument, options: ChangeOptions,
                    identify: Literal["gain", "loss"]) -> str:
    cv = options.sudden_gain_critical
    if identify == "gain":
        head = f"Sudden gains on the {symptoms.name} (Tang & DeRubeis, 1999)"
        moves, first, second = "falls", "n-2..n", "n+1..n+3"
    else:
        head = (f"Sudden losses (sudden worsening) on the {symptoms.name}, the mirror image "
                "of sudden gains (Lutz et al., 2013; as the R package suddengains identifies "
                "them, with criterion 2 applied to the rise)")
        moves, first, second = "rises", "n+1..n+3", "n-2..n"
    return (f"{head}: between sessions n and n+1 the score {moves} by at least "
            f"{sudden_gain_threshold(symptoms, options):g} points (criterion 1) and by at "
            f"least {options.sudden_gain_relative:.0%} of the score at session n (criterion "
            f"2), and the mean of sessions {first} exceeds the mean of sessions {second} by "
            f"more than {cv[0]:.3f} times their pooled SD ({cv[1]:.3f} when one and "
            f"{cv[2]:.3f} when two of the four outer scores are missing; exact t quantiles, "
            "printed to three decimals; at least two scores on each side; Lutz et al., 2013) "
            "(criterion 3). Reversal: a later score gives back at least "
            f"{options.sudden_gain_reversal:.0%} of the {identify}. Lower scores are better.")


def _ruptures_caption(alliance: Instrument, options: ChangeOptions) -> str:
    rules = [f"more than {k:g} SD below the client's own mean ({ruptures_mod.criterion_label(k)})"
             for k in options.rupture_sd]
    if options.rupture_drop is not None:
        rules.append(f"at least {options.rupture_drop:g} points below the previous scored "
                     "session (drop)")
    return (f"Alliance ruptures on the {alliance.name}: a session whose alliance is "
            + "; or ".join(rules) + ", each criterion counted separately; consecutive "
            "sessions meeting a criterion are one rupture. Repair: alliance back at or above "
            "its level in the session before the rupture within "
            f"{options.repair_within} sessions of its start (the V-shaped rupture-repair "
            "pattern; Stiles et al., 2004). Clients with fewer than "
            f"{options.rupture_min_scores} alliance scores are not assessed.")


def _dropout_caption(alliance: Instrument, options: ChangeOptions) -> str:
    return (f"Dropout: {dropout_rule(options)}. Early alliance: mean {alliance.name} over sessions "
            f"1-{options.early_sessions}; early change: least-squares slope over the same "
            "sessions (points per session, at least two scores). The model includes clients "
            f"who attended at least {options.early_sessions} sessions.")


@dataclass(frozen=True)
class Caption:
    """A table's title and the criteria it applies (APA: title above, note below)."""

    title: str
    note: str

    def __str__(self) -> str:
        return f"{self.title}. {self.note}"


def change_captions(options: ChangeOptions, symptoms: Instrument, alliance: Instrument,
                    criteria: ReliableChangeCriteria) -> dict[str, Caption]:
    """The caption of every change table and model, stating the criteria it applies.

    Parameters
    ----------
    options
        The change options.
    symptoms, alliance
        The symptom and alliance instruments.
    criteria
        The reliable-change criteria actually applied (the Jacobson-Truax threshold depends
        on the sample's SD unless given).

    Returns
    -------
    dict
        Name -> :class:`Caption` for every table of :class:`ChangeReport` and every model
        (``rupture_outcome_<criterion>``, ``dropout_early_alliance``).
    """
    rc = _rc_caption(symptoms, options, criteria)
    gains = _sudden_caption(symptoms, options, "gain")
    losses = _sudden_caption(symptoms, options, "loss")
    ruptures = _ruptures_caption(alliance, options)
    dropout = _dropout_caption(alliance, options)
    captions = {
        "change_reliable": Caption("Reliable and clinically significant change per client", rc),
        "change_reliable_summary": Caption("Reliable and clinically significant change", rc),
        "change_sudden_gains": Caption("Sudden gains", gains),
        "change_sudden_gains_clients": Caption("Sudden gains per client", gains),
        "change_sudden_losses": Caption("Sudden losses", losses),
        "change_sudden_losses_clients": Caption("Sudden losses per client", losses),
        "change_ruptures": Caption("Alliance ruptures and repairs", ruptures),
        "change_rupture_counts": Caption("Alliance ruptures per client and criterion",
                                         ruptures),
        "change_ruptures_summary": Caption("Alliance ruptures and repairs by criterion",
                                           ruptures),
        "change_dropout": Caption("Dropout and early alliance per client", dropout),
        "dropout_early_alliance": Caption(
            "Logistic regression of dropout on early alliance level and change",
            dropout + " Estimates are log odds; odds ratios per point of early alliance and "
            "per point per session of early change."),
    }
    for label in ruptures_mod.criteria_labels(options.rupture_sd, options.rupture_drop):
        captions[f"rupture_outcome_{label}"] = Caption(
            f"Symptom change and resolved ruptures ({label})",
            f"OLS of symptom change (post - pre; negative = improvement) on any repaired "
            f"rupture under criterion {label} (1 = at least one), controlling the pre score. "
            + ruptures)
    return captions


@dataclass(frozen=True)
class ChangeReport:
    """Every change and process marker of a run.

    Attributes
    ----------
    tables
        Tidy tables by name (keys of :func:`change_captions`).
    captions
        Table or model name -> :class:`Caption` stating its criteria.
    models
        ``rupture_outcome_<criterion>`` and ``dropout_early_alliance`` model results.
    criteria
        The reliable-change criteria applied.
    sessions
        The session table the markers were found in (figures draw example trajectories).
    symptoms, alliance
        The instruments of the symptom and alliance scores.
    notes
        What a reader must know about the data before reading the tables (e.g. an empty
        session table); also appended to every caption. Empty when there is nothing to say.
    """

    tables: Mapping[str, pd.DataFrame]
    captions: Mapping[str, Caption]
    models: Mapping[str, ModelResult]
    criteria: ReliableChangeCriteria
    sessions: pd.DataFrame
    symptoms: Instrument
    alliance: Instrument
    notes: tuple[str, ...] = ()

    def models_table(self) -> pd.DataFrame:
        """Every model's estimates in one table (``ModelResult.to_table`` rows, stacked)."""
        return pd.concat([model.to_table() for model in self.models.values()],
                         ignore_index=True)

    def headline(self) -> dict[str, Any]:
        """Headline numbers for ``results.json``, keyed ``change.*``.

        Always the same keys, whatever the data: ``change.n_clients`` and ``change.empty``
        (True when the session table has no rows: every table is empty and the counts are
        0, percentages missing); ``change.rci.*`` (threshold, cut-off, counts and
        percentages per category); ``change.sudden_gains.{n, n_clients, n_reversals}`` and
        ``change.sudden_losses.{n, n_clients, n_reversals}``;
        ``change.ruptures.<criterion>.{n, n_clients, n_repaired}``;
        ``change.dropout.{n, percent}``; and each model's convergence and estimates.
        """
        summary = self.tables["change_reliable_summary"].set_index("category")
        n_clients = len(self.tables["change_reliable"])
        values: dict[str, Any] = {
            "change.n_clients": n_clients,
            "change.empty": len(self.sessions) == 0,
            "change.rci.threshold": self.criteria.threshold,
            "change.rci.cutoff": self.criteria.cutoff,
            "change.rci.n_assessed": int(summary.loc[list(CATEGORIES), "n"].sum()),
            "change.rci.n_clinical_pre": int(summary.loc[list(CATEGORIES),
                                                         "n_clinical_pre"].sum()),
        }
        for category in CATEGORIES:
            key = category.replace("reliably ", "reliably_")
            values[f"change.rci.{key}.n"] = int(summary.loc[category, "n"])
            values[f"change.rci.{key}.percent"] = summary.loc[category, "percent"]
        for kind in ("gains", "losses"):
            events = self.tables[f"change_sudden_{kind}"]
            values.update({f"change.sudden_{kind}.n": len(events),
                           f"change.sudden_{kind}.n_clients": int(events["client_id"].nunique()),
                           f"change.sudden_{kind}.n_reversals": int(events["reversal"].sum())})
        for row in self.tables["change_ruptures_summary"].itertuples():
            values.update({f"change.ruptures.{row.criterion}.n": row.n_ruptures,
                           f"change.ruptures.{row.criterion}.n_clients": row.n_clients,
                           f"change.ruptures.{row.criterion}.n_repaired": row.n_repaired})
        dropout = self.tables["change_dropout"]
        n_dropout = int(dropout["dropout"].sum())
        values.update({"change.dropout.n": n_dropout,
                       "change.dropout.percent": round(100 * n_dropout / len(dropout), 1)
                       if len(dropout) else np.nan})
        for model in self.models.values():
            values[f"change.{model.name}.converged"] = bool(model.fit["converged"])
            for row in model.params.itertuples():
                if row.term != "(Intercept)":
                    values[f"change.{model.name}.{row.term}.estimate"] = row.estimate
        return values


def analyse_change(sessions: pd.DataFrame, options: ChangeOptions, symptoms: Instrument,
                   alliance: Instrument) -> ChangeReport:
    """Reliable change, sudden gains and losses, ruptures and repairs, and dropout, in one call.

    Parameters
    ----------
    sessions
        The canonical session table (``load_processed``); it may have no rows.
    options
        ``params.change``.
    symptoms
        The symptom instrument (lower = better), e.g. PHQ-9.
    alliance
        The alliance instrument (higher = better), e.g. WAI-SR.

    Returns
    -------
    ChangeReport
        Tables ``change_reliable`` (:func:`reliable_change`), ``change_reliable_summary``
        (:func:`change_summary`), ``change_sudden_gains``
        (:func:`alliance_analysis.change.sudden_gains.sudden_gains`),
        ``change_sudden_gains_clients`` (:func:`~alliance_analysis.change.sudden_gains.gains_by_client`),
        ``change_sudden_losses`` (:func:`~alliance_analysis.change.sudden_gains.sudden_losses`),
        ``change_sudden_losses_clients``
        (:func:`~alliance_analysis.change.sudden_gains.losses_by_client`),
        ``change_ruptures`` (:func:`alliance_analysis.change.ruptures.ruptures`),
        ``change_rupture_counts`` and ``change_ruptures_summary``, and ``change_dropout``
        (dropout and early alliance per client); models ``rupture_outcome_<criterion>`` and
        ``dropout_early_alliance``; captions for every table; and `notes`.

    Raises
    ------
    AllianceDataError
        When the session table has rows but lacks a column the markers read (the message
        lists them). A table without rows may lack any column.

    Warns
    -----
    UserWarning
        When the session table has no rows: every table is then empty (with its columns),
        the rupture summary lists each criterion with zero counts, the models are flagged as
        not fitted, and the note says so in every caption and in the report's `notes`.
    """
    symptom_col, alliance_col = symptoms.score_column(), alliance.score_column()
    sessions = _require_columns(
        sessions, ["client_id", "therapist_id", "session", symptom_col, alliance_col]
        + ([str(options.dropout_column)] if options.dropout == "column" else []))
    notes = _notes(sessions, symptoms)
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=2)
    n_therapists = int(sessions["therapist_id"].nunique())
    clients = sorted(sessions["client_id"].astype(str).unique())
    change = reliable_change(sessions, symptoms, options)
    minimum = sudden_gain_threshold(symptoms, options)
    sudden = {identify: scan(sessions, symptom_col, minimum, options.sudden_gain_relative,
                             options.sudden_gain_critical, options.sudden_gain_reversal)
              for identify, scan in (("gains", gains_mod.sudden_gains),
                                     ("losses", gains_mod.sudden_losses))}
    labels = ruptures_mod.criteria_labels(options.rupture_sd, options.rupture_drop)
    events = ruptures_mod.ruptures(sessions, alliance_col, options.rupture_sd,
                                   options.rupture_drop, options.repair_within,
                                   options.rupture_min_scores)
    counts = ruptures_mod.rupture_counts(events, sessions, alliance_col, labels,
                                         options.rupture_min_scores)
    dropout = _dropout_table(sessions, change.table, alliance_col, options)
    models = {f"rupture_outcome_{label}": ruptures_mod.rupture_outcome(
        counts, change.table, label, options.ci_level, n_therapists) for label in labels}
    models["dropout_early_alliance"] = dropout_mod.dropout_model(
        dropout, options.early_sessions, options.ci_level, n_therapists)
    tables = {"change_reliable": change.table, "change_reliable_summary": change.summary(),
              "change_sudden_gains": sudden["gains"],
              "change_sudden_gains_clients": gains_mod.gains_by_client(sudden["gains"],
                                                                       clients),
              "change_sudden_losses": sudden["losses"],
              "change_sudden_losses_clients": gains_mod.losses_by_client(sudden["losses"],
                                                                         clients),
              "change_ruptures": events, "change_rupture_counts": counts,
              "change_ruptures_summary": ruptures_mod.rupture_summary(counts, events, labels),
              "change_dropout": dropout}
    captions = change_captions(options, symptoms, alliance, change.criteria)
    if notes:
        captions = {name: Caption(c.title, f"{c.note} Note: {' '.join(notes)}")
                    for name, c in captions.items()}
    return ChangeReport(tables=tables, captions=captions, models=models,
                        criteria=change.criteria, sessions=sessions, symptoms=symptoms,
                        alliance=alliance, notes=notes)


def _require_columns(sessions: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """`sessions`, refused when it has rows but lacks one of `columns`; a table without rows
    gets the missing ones as empty columns (ids as text, the rest as numbers)."""
    missing = [c for c in dict.fromkeys(columns) if c not in sessions.columns]
    if missing and len(sessions) == 0:
        return sessions.assign(**{c: pd.Series(dtype="str" if c.endswith("_id") else float)
                                  for c in missing})
    if missing:
        raise AllianceDataError(
            f"the change stage needs column(s) {missing}, which the session table lacks; its "
            f"columns are {list(sessions.columns)}. Run the clean stage (01_clean) with the "
            "symptom and alliance instruments listed under `instruments:`, or check "
            "`symptoms:`, `alliance:` and change.dropout_column in the parameters")
    return sessions


def _notes(sessions: pd.DataFrame, symptoms: Instrument) -> tuple[str, ...]:
    """What the reader must know about the data before reading the change tables."""
    if len(sessions) == 0:
        note = ("The session table has no rows, so no change marker could be sought: every "
                "change table is empty, the counts are 0 and the models are flagged as not "
                "fitted. Check the cleaning ledger (tables/ledger_rows.csv) for excluded rows.")
        return (note,)
    if sessions[symptoms.score_column()].isna().all():
        note = (f"No session has a {symptoms.abbreviation()} score, so reliable change and "
                "sudden gains and losses could not be assessed for any client.")
        return (note,)
    return ()


def _status(sessions: pd.DataFrame, change: pd.DataFrame,
            options: ChangeOptions) -> pd.DataFrame:
    if options.dropout == "sessions":
        improved = change.set_index("client_id")["reliable_improvement"]
        return dropout_mod.dropout_by_sessions(sessions, improved, options.dropout_sessions)
    return dropout_mod.dropout_from_column(sessions, str(options.dropout_column))


def dropout_status(sessions: pd.DataFrame, options: ChangeOptions,
                   symptoms: Instrument) -> pd.DataFrame:
    """Each client's dropout status by the run's one definition (``change:`` options).

    ``dropout: sessions``: the last session is below ``dropout_sessions`` and the client did
    not reliably improve (:func:`alliance_analysis.change.dropout.dropout_by_sessions`);
    ``dropout: column``: the data's 0/1 column. Both the change markers and the multilevel
    dropout model use this, so a run has a single definition of dropout.

    Returns
    -------
    pandas.DataFrame
        ``client_id, last_session, dropout`` (and ``reliably_improved`` for ``sessions``).
    """
    change = reliable_change(sessions, symptoms, options) if options.dropout == "sessions" \
        else None
    return _status(sessions, change.table if change is not None else pd.DataFrame(), options)


def dropout_rule(options: ChangeOptions) -> str:
    """The run's dropout definition in words, for captions and readings."""
    if options.dropout == "sessions":
        return (f"last attended session before session {options.dropout_sessions} without "
                "reliable improvement")
    return f"the data's column {options.dropout_column!r} (1 = dropped out)"


def _dropout_table(sessions: pd.DataFrame, change: pd.DataFrame, alliance_col: str,
                   options: ChangeOptions) -> pd.DataFrame:
    """Dropout status and early alliance per client."""
    early = early_alliance(sessions, alliance_col, options.early_sessions)
    early = early.assign(client_id=early["client_id"].astype(str))
    return _status(sessions, change, options).merge(early, on="client_id", how="left")


