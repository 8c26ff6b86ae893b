"""Early alliance and dropout: who leaves therapy early, and does the early alliance tell?

:func:`early_alliance` summarises each client's first sessions (mean level and change),
:func:`dropout_by_sessions` and :func:`dropout_from_column` define dropout, and
:func:`dropout_model` relates the two in a logistic regression.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alliance_analysis.client_models import fit_logit
from alliance_analysis.client_series import scored_series
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.results import ModelResult

#: Predictors of :func:`dropout_model`.
PREDICTORS = ("early_alliance", "early_slope")


def early_alliance(sessions: pd.DataFrame, alliance: str, early_sessions: int = 5
                   ) -> pd.DataFrame:
    """Each client's early alliance level and change over sessions 1..`early_sessions`.

    Parameters
    ----------
    sessions
        The canonical session table.
    alliance
        The alliance score column, e.g. ``wai_total``.
    early_sessions
        The last session counted as early (k).

    Returns
    -------
    pandas.DataFrame
        ``client_id, early_n, early_alliance, early_slope`` for every client: ``early_n``
        alliance scores in sessions 1..k, their mean, and the least-squares slope of alliance
        on session number (points per session; missing with fewer than two scores).

    Notes
    -----
    :math:`\\text{slope} = \\sum (t - \\bar t)(a_t - \\bar a) / \\sum (t - \\bar t)^2` over
    the scored sessions t <= k. A client who stopped before session k contributes fewer
    early sessions: for dropouts the early window is partly their whole treatment.
    """
    clients = sorted(sessions["client_id"].astype(str).unique())
    rows = []
    series_by_client = scored_series(sessions, alliance)
    for client in clients:
        early = series_by_client.get(client, pd.Series(dtype=float))
        early = early[early.index <= early_sessions]
        t, a = early.index.to_numpy(dtype=float), early.to_numpy()
        slope = (float(np.sum((t - t.mean()) * (a - a.mean())) / np.sum((t - t.mean()) ** 2))
                 if len(early) >= 2 else np.nan)
        rows.append({"client_id": client, "early_n": len(early),
                     "early_alliance": float(a.mean()) if len(early) else np.nan,
                     "early_slope": slope})
    return pd.DataFrame(rows)


def last_sessions(sessions: pd.DataFrame) -> pd.Series:
    """Each client's last attended session number (the highest session in the table)."""
    return sessions.groupby("client_id")["session"].max().rename(index=str).astype(int)


def dropout_by_sessions(sessions: pd.DataFrame, improved: pd.Series, min_sessions: int
                        ) -> pd.DataFrame:
    """Dropout: fewer than `min_sessions` sessions, without reliable improvement.

    Parameters
    ----------
    sessions
        The canonical session table; a client's attended sessions are counted by their last
        session number (a session row without questionnaires still counts as attended).
    improved
        Per client (index ``client_id``): True when the client reliably improved (including
        recovered), e.g. from :func:`alliance_analysis.change.reliable_change`; a missing value
        counts as not improved.
    min_sessions
        k: a client whose last session is below k ended early.

    Returns
    -------
    pandas.DataFrame
        ``client_id, last_session, reliably_improved, dropout`` (bool).

    Notes
    -----
    Clients who end early *with* reliable improvement are counted as finishing, not as
    dropouts: they may have left because they were better. Clients still in treatment when
    the data end are indistinguishable from dropouts here; use a dropout column when the
    service records the reason for ending.
    """
    last = last_sessions(sessions)
    better = improved.rename(index=str).reindex(last.index).astype("boolean").fillna(False)
    return pd.DataFrame({"client_id": last.index, "last_session": last.to_numpy(),
                         "reliably_improved": better.to_numpy(dtype=bool),
                         "dropout": ((last < min_sessions) & ~better).to_numpy(dtype=bool)})


def dropout_from_column(sessions: pd.DataFrame, column: str) -> pd.DataFrame:
    """Dropout from a client-level 0/1 (or True/False) column of the data.

    Returns
    -------
    pandas.DataFrame
        ``client_id, last_session, dropout`` (bool).

    Raises
    ------
    AllianceDataError
        When the column is missing, holds values other than 0/1, is missing for a client, or
        differs between sessions of one client.
    """
    if column not in sessions.columns:
        raise AllianceDataError(f"change.dropout_column: column {column!r} is not in the session "
                                f"table (columns: {list(sessions.columns)}). List it under "
                                "`columns: covariates:` so the clean stage keeps it")
    values = pd.to_numeric(sessions[column].astype("float"), errors="coerce")
    bad = sessions.loc[values.isna() | ~values.isin((0.0, 1.0)), ["client_id", column]]
    if len(bad):
        raise AllianceDataError(f"change.dropout_column {column!r} must be 0/1 in every row; "
                                f"{len(bad)} row(s) are not, e.g. client "
                                f"{bad.iloc[0]['client_id']}: {bad.iloc[0][column]!r}")
    per_client = values.groupby(sessions["client_id"].astype(str)).agg(["min", "max"])
    varying = per_client.index[per_client["min"] != per_client["max"]]
    if len(varying):
        raise AllianceDataError(f"change.dropout_column {column!r} must be the same in every "
                                f"session of a client; {len(varying)} client(s) differ, e.g. "
                                f"{varying[0]}")
    last = last_sessions(sessions)
    return pd.DataFrame({"client_id": last.index, "last_session": last.to_numpy(),
                         "dropout": per_client["max"].reindex(last.index).to_numpy() == 1.0})


def dropout_model(table: pd.DataFrame, early_sessions: int, ci_level: float = 0.95,
                  n_therapists: int | None = None) -> ModelResult:
    """Logistic regression of dropout on early alliance level and change.

    Parameters
    ----------
    table
        One row per client with ``dropout``, ``last_session`` and :data:`PREDICTORS` (see
        :func:`early_alliance`).
    early_sessions
        k of :func:`early_alliance`: only clients who attended at least k sessions are
        modelled, so that their early alliance was measured over the whole window and before
        they left; clients with a missing predictor (fewer than two early alliance scores)
        are left out too.
    ci_level
        Confidence level of the Wald intervals.
    n_therapists
        For the fit table.

    Returns
    -------
    ModelResult
        Named ``dropout_early_alliance``: ``logit P(dropout) = b0 + b1 early_alliance +
        b2 early_slope``, with odds ratios per point of early alliance and per point-per-session
        of early change (see :func:`alliance_analysis.client_models.fit_logit`); flagged when
        the fit does not converge or the outcome is separated.

    Notes
    -----
    Clients are treated as independent (no therapist clustering), and the predictors are not
    centred, so the intercept is the log odds at an alliance of 0, outside the scale; read the
    slopes. :func:`alliance_analysis.multilevel.dropout_model` is a related model (dropout as
    fewer sessions only, early alliance and baseline severity, therapist-clustered SEs).
    """
    modelled = table[table["last_session"] >= early_sessions]
    data = modelled.assign(dropout=modelled["dropout"].astype(float))
    return fit_logit("dropout_early_alliance", data, "dropout", list(PREDICTORS),
                     ci_level=ci_level, n_therapists=n_therapists)
