"""Client-level summaries of the session table: one row per client.

Every model family reads clients' summaries of their sessions: the multilevel models (the
therapist-effects model, the early-alliance slope model), the SEM growth model (early alliance
predicting symptom change) and the change markers (dropout and early alliance). Each summary is
defined here once, so that the families (which never import each other) compute it the same way:

* :func:`client_table`: therapist, sessions attended, baseline and post-treatment score;
* :func:`early_alliance`: the mean and least-squares slope of a score over sessions ``1..k``.

Column names follow DESIGN.md ("The canonical session table"): :data:`CLIENT`,
:data:`THERAPIST`, ``session`` and the total score of instrument ``key`` in ``<key>_total``
(:func:`score_column`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError

CLIENT = "client_id"
THERAPIST = "therapist_id"

#: Columns of :func:`early_alliance`.
EARLY_COLUMNS = (CLIENT, "early_n", "early_alliance", "early_slope")


def score_column(key: str) -> str:
    """The column of the total score of instrument (or score) ``key``: ``<key>_total``."""
    return f"{key}_total"


def require_columns(sessions: pd.DataFrame, columns: Sequence[str], purpose: str) -> None:
    """Raise :class:`AllianceDataError` naming every column ``purpose`` needs but lacks."""
    missing = [c for c in columns if c not in sessions.columns]
    if missing:
        raise AllianceDataError(
            f"{purpose} needs the column(s) {missing}, which the session table lacks "
            f"(it has {list(sessions.columns)[:12]}...). Check the instruments of the run "
            "and that notebooks/01_clean has scored them")


def client_table(sessions: pd.DataFrame, symptoms: str) -> pd.DataFrame:
    """One row per client: therapist, sessions attended, baseline and post-treatment score.

    ``<symptoms>_baseline`` is the first observed score, ``<symptoms>_post`` the last
    observed score at a later session (missing when the client has only one observed
    score), ``n_sessions`` the number of attended sessions (rows). ``sessions`` must be in
    session order within client (first and last are taken in row order).
    """
    column = score_column(symptoms)
    require_columns(sessions, [CLIENT, THERAPIST, column], "client_table")
    grouped = sessions.groupby(CLIENT, sort=True)
    observed = sessions[sessions[column].notna()].groupby(CLIENT, sort=True)[column]
    table = pd.DataFrame({
        THERAPIST: grouped[THERAPIST].first(),
        "n_sessions": grouped.size(),
        f"{symptoms}_baseline": observed.first(),
        f"{symptoms}_post": observed.last().where(observed.count() >= 2),
    })
    table.index.name = CLIENT
    return table.reset_index()


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """``(start, end)`` of each run of equal consecutive values: in a table sorted by client,
    each client's rows (the groups of ``groupby(CLIENT)``, without a frame per client).

    The mixed-model engine has its own (``multilevel.engine.design._starts``): it depends on
    nothing of the package but its errors.
    """
    if not len(values):
        return []
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return list(zip(starts.tolist(), [*starts[1:].tolist(), len(values)], strict=True))


def early_alliance(sessions: pd.DataFrame, score: str, early_sessions: int) -> pd.DataFrame:
    """Each client's early alliance: level and change of a score over sessions ``1..k``.

    Parameters
    ----------
    sessions
        The canonical session table.
    score
        The score column, e.g. ``wai_total``.
    early_sessions
        The last session counted as early (k). Each model family has its own option for it
        (``multilevel.early_sessions``, ``sem.early_sessions``, ``change.early_sessions``).

    Returns
    -------
    pandas.DataFrame
        :data:`EARLY_COLUMNS` for every client of ``sessions``, sorted by client:
        ``early_n`` scores in sessions 1..k, ``early_alliance`` their mean (missing when
        there is none) and ``early_slope`` the least-squares slope of the score on session
        number (points per session; missing with fewer than two scores). Callers name the
        columns as their models do (``<key>_early`` in the multilevel and SEM models).

    Raises
    ------
    AllianceDataError
        When ``client_id``, ``session`` or ``score`` is not a column of ``sessions``.

    Notes
    -----
    :math:`\\text{slope} = \\sum (t - \\bar t)(a_t - \\bar a) / \\sum (t - \\bar t)^2` over
    the scored sessions t <= k. A client who stopped before session k contributes fewer
    early sessions: for dropouts the early window is partly their whole treatment.
    """
    require_columns(sessions, [CLIENT, "session", score], "early_alliance")
    early = sessions.loc[sessions["session"] <= early_sessions, [CLIENT, "session", score]]
    scored = early[early[score].notna()].sort_values([CLIENT, "session"], kind="stable")
    slopes = {}
    # missing clients dropped as groupby drops them
    scored = scored[scored[CLIENT].notna()]
    ids = scored[CLIENT].to_numpy()
    times = scored["session"].to_numpy(dtype=float)
    values = scored[score].to_numpy(dtype=float)
    for first, end in runs(ids):
        t, a = times[first:end], values[first:end]
        if len(t) >= 2:
            slopes[ids[first]] = float(np.sum((t - t.mean()) * (a - a.mean()))
                                       / np.sum((t - t.mean()) ** 2))
    clients = pd.Index(sorted(sessions[CLIENT].unique()), name=CLIENT)
    grouped = early.groupby(CLIENT, sort=True)[score]
    table = pd.DataFrame({
        "early_n": grouped.count().reindex(clients, fill_value=0).astype(int),
        "early_alliance": grouped.mean().reindex(clients).astype(float),
        "early_slope": pd.Series(slopes, dtype=float).reindex(clients),
    }, index=clients)
    return table.reset_index()[list(EARLY_COLUMNS)]
