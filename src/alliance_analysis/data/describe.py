"""Descriptive tables of a session dataset: the sample, attendance, missingness, correlations.

Every table is tidy and ready for the report; tables of client characteristics pass through
:func:`alliance_analysis.data.privacy.suppress_small_cells` before they can leave the workbench.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alliance_analysis.data.privacy import suppress_small_cells
from alliance_analysis.data.reliability import reliability_table
from alliance_analysis.instruments import Instrument
from alliance_analysis.params import RunParams


def _median_range(values: pd.Series) -> str:
    return f"{values.median():g} ({values.min():g}-{values.max():g})"


def sample_table(sessions: pd.DataFrame) -> pd.DataFrame:
    """The sample at a glance: therapists, clients, sessions and how they nest.

    Returns
    -------
    pandas.DataFrame
        ``quantity, value`` rows: therapists, clients, sessions, sessions per client and
        clients per therapist (median and range).
    """
    per_client = sessions.groupby("client_id").size()
    per_therapist = sessions.groupby("therapist_id")["client_id"].nunique()
    return pd.DataFrame([
        {"quantity": "therapists", "value": f"{sessions['therapist_id'].nunique()}"},
        {"quantity": "clients", "value": f"{sessions['client_id'].nunique()}"},
        {"quantity": "sessions", "value": f"{len(sessions)}"},
        {"quantity": "sessions per client, median (range)", "value": _median_range(per_client)},
        {"quantity": "clients per therapist, median (range)",
         "value": _median_range(per_therapist)},
    ])


def client_characteristics(sessions: pd.DataFrame, covariates: Sequence[str],
                           min_cell_size: int = 5) -> pd.DataFrame:
    """Counts and percentages of clients by each covariate, with small cells suppressed.

    Parameters
    ----------
    sessions
        The session table (covariates are client-level: the first session's value is used).
    covariates
        Columns to tabulate; absent ones are skipped.
    min_cell_size
        Counts from 1 to ``min_cell_size - 1`` are shown as ``"<k"`` (and one more cell per
        covariate where needed to stop recovery by subtraction); their percentages are hidden.

    Returns
    -------
    pandas.DataFrame
        ``characteristic, level, n, percent``.

    References
    ----------
    .. [1] Hundepool, A., et al. (2012). *Statistical Disclosure Control*. Wiley.
    """
    clients = sessions.sort_values("session").groupby("client_id").first()
    tables = []
    for covariate in (c for c in covariates if c in clients.columns):
        counts = clients[covariate].astype("string").fillna("(missing)").value_counts()
        table = pd.DataFrame({"characteristic": covariate, "level": counts.index.astype(str),
                              "n": counts.to_numpy()}).sort_values("level")
        table["percent"] = (100 * table["n"] / len(clients)).round(1)
        shown = suppress_small_cells(table, ["n"], k=min_cell_size)
        shown["percent"] = shown["percent"].where(shown["n"].map(
            lambda v: isinstance(v, (int, np.integer))), other="")
        tables.append(shown)
    if not tables:
        return pd.DataFrame(columns=["characteristic", "level", "n", "percent"])
    return pd.concat(tables, ignore_index=True)


def attendance(sessions: pd.DataFrame) -> pd.DataFrame:
    """Clients attending each session number, and clients whose last session it was.

    Returns
    -------
    pandas.DataFrame
        ``session, clients, percent_of_start, last_session`` (clients ending there).
    """
    counts = sessions.groupby("session")["client_id"].nunique()
    last = sessions.groupby("client_id")["session"].max().value_counts()
    table = pd.DataFrame({"session": counts.index.astype(int), "clients": counts.to_numpy()})
    start = sessions["client_id"].nunique()
    table["percent_of_start"] = (100 * table["clients"] / start).round(1)
    table["last_session"] = table["session"].map(last).fillna(0).astype(int)
    return table


def missingness(sessions: pd.DataFrame, instruments: Sequence[Instrument]) -> pd.DataFrame:
    """Share of attended sessions without a score, by session number and instrument.

    Returns
    -------
    pandas.DataFrame
        ``session, sessions`` (attended) and one ``<key>_missing_percent`` column per
        instrument.
    """
    grouped = sessions.groupby("session")
    table = pd.DataFrame({"sessions": grouped.size()})
    for instrument in instruments:
        missing = sessions[instrument.score_column()].isna().groupby(sessions["session"]).mean()
        table[f"{instrument.key}_missing_percent"] = (100 * missing).round(1)
    table.index = table.index.astype(int)
    return table.reset_index()


def subscale_correlations(sessions: pd.DataFrame, instrument: Instrument,
                          extra: Sequence[str] = ()) -> pd.DataFrame:
    """Correlations of an instrument's subscales (and extra scores), pooled and between clients.

    Pooled correlations use every session; between-client correlations use each client's
    mean, so they describe stable differences between clients (Curran & Bauer, 2011).

    Returns
    -------
    pandas.DataFrame
        ``level, variable`` and one column per variable (a long stack of two matrices).

    References
    ----------
    .. [1] Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
       between-person effects in longitudinal models of change. *Annual Review of
       Psychology, 62*, 583-619.
    """
    columns = [instrument.score_column(s) for s in instrument.subscales]
    columns += [c for c in extra if c in sessions.columns]
    pooled = sessions[columns].corr()
    between = sessions.groupby("client_id")[columns].mean().corr()
    frames = []
    for level, matrix in (("sessions (pooled)", pooled), ("client means", between)):
        frame = matrix.reset_index(names="variable")
        frame.insert(0, "level", level)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def trajectory_summary(sessions: pd.DataFrame, score: str,
                       ci_level: float = 0.95) -> pd.DataFrame:
    """Mean of a score at each session with a t-based confidence interval.

    Returns
    -------
    pandas.DataFrame
        ``session, n, mean, sd, ci_low, ci_high``. Later sessions hold only the clients still
        in treatment, so the curve mixes change with selective dropout: read it together with
        :func:`attendance`.
    """
    from scipy import stats

    grouped = sessions.groupby("session")[score]
    table = pd.DataFrame({"n": grouped.count(), "mean": grouped.mean(), "sd": grouped.std()})
    table = table[table["n"] > 1]
    half = stats.t.ppf(0.5 + ci_level / 2, table["n"] - 1) * table["sd"] / np.sqrt(table["n"])
    table["ci_low"] = table["mean"] - half
    table["ci_high"] = table["mean"] + half
    table.index = table.index.astype(int)
    return table.reset_index()


@dataclass(frozen=True)
class Description:
    """Every descriptive table of ``02_describe``, computed once (see :func:`describe_sessions`).

    Attributes
    ----------
    sample, characteristics, attendance, missingness, reliability, correlations
        The tables of :func:`sample_table`, :func:`client_characteristics` (small cells
        suppressed), :func:`attendance`, :func:`missingness`,
        :func:`alliance_analysis.data.reliability.reliability_table` and
        :func:`subscale_correlations`.
    trajectories
        :func:`trajectory_summary` of each instrument's total, by instrument key.
    sessions
        The session table described (figures draw individual trajectories from it).
    alliance, symptoms, instruments
        The run's alliance and symptom measures, and all its instruments.
    min_cell_size, seed
        The privacy threshold applied, and the seed of the figures' client samples.
    """

    sample: pd.DataFrame
    characteristics: pd.DataFrame
    attendance: pd.DataFrame
    missingness: pd.DataFrame
    reliability: pd.DataFrame
    correlations: pd.DataFrame
    trajectories: dict[str, pd.DataFrame]
    sessions: pd.DataFrame
    alliance: Instrument
    symptoms: Instrument
    instruments: tuple[Instrument, ...]
    min_cell_size: int
    seed: int

    def headline(self) -> dict[str, Any]:
        """Headline counts, keyed ``describe.*`` for ``results.json``."""
        return {"describe.therapists": self.sessions["therapist_id"].nunique(),
                "describe.clients": self.sessions["client_id"].nunique(),
                "describe.sessions": len(self.sessions)}


def describe_sessions(sessions: pd.DataFrame, params: RunParams) -> Description:
    """The describe stage as one call: every descriptive table of a run's session table.

    Parameters
    ----------
    sessions
        The processed session table (:func:`alliance_analysis.data.prepare.load_processed`).
    params
        The run parameters (instruments, covariates, ``privacy.min_cell_size``, the
        therapist-rated alliance of ``multilevel.therapist_rater``, the seed).
    """
    instruments = tuple(params.instrument_definitions())
    alliance, symptoms = params.measures()
    rater = params.multilevel.therapist_rater
    return Description(
        sample=sample_table(sessions),
        characteristics=client_characteristics(sessions, params.columns.covariates,
                                               params.privacy.min_cell_size),
        attendance=attendance(sessions),
        missingness=missingness(sessions, instruments),
        reliability=reliability_table(sessions, instruments),
        correlations=subscale_correlations(sessions, alliance,
                                           extra=[f"{rater}_total"] if rater else []),
        trajectories={i.key: trajectory_summary(sessions, i.score_column())
                      for i in (symptoms, alliance)},
        sessions=sessions, alliance=alliance, symptoms=symptoms, instruments=instruments,
        min_cell_size=params.privacy.min_cell_size, seed=params.seed)
