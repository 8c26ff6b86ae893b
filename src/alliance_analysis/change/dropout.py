"""Early alliance and dropout: who leaves therapy early, and does the early alliance tell?

:func:`alliance_analysis.data.clients.early_alliance` summarises each client's first sessions
(mean level and change), :func:`dropout_by_sessions` and :func:`dropout_from_column` define
dropout, and :func:`dropout_model` relates the two in a logistic regression: the change
markers' model, and (through :func:`dropout_severity_model`, with baseline severity and
therapist-clustered SEs) the multilevel stage's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pandas as pd

from alliance_analysis.data.clients import (CLIENT, THERAPIST, client_table, early_alliance,
                                            require_columns, score_column)
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.results import ModelResult
from alliance_analysis.stats.regression import fit_logit

#: Predictors of :func:`dropout_model`.
PREDICTORS = ("early_alliance", "early_slope")


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
        recovered), e.g. from :func:`alliance_analysis.change.markers.reliable_change`; a missing value
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
                  n_therapists: int | None = None, *, predictors: Sequence[str] = PREDICTORS,
                  cluster: str | None = None, centre: bool = False,
                  name: str = "dropout_early_alliance", note: str = "") -> ModelResult:
    """Logistic regression of dropout on client-level predictors (early alliance by default).

    The project's one dropout model: the change markers fit it on early alliance level and
    change (:data:`PREDICTORS`); the multilevel stage on early alliance and baseline
    severity, centred, with therapist-clustered SEs (:func:`dropout_severity_model`).

    Parameters
    ----------
    table
        One row per client with ``dropout``, ``last_session`` and the predictors (see
        :func:`alliance_analysis.data.clients.early_alliance`), and the ``cluster`` column
        when given.
    early_sessions
        k of the early window: only clients who reached session k (``last_session >= k``)
        are modelled, so that their early alliance was measured over the whole window and
        before they left; clients with a missing predictor (e.g. fewer than two early
        alliance scores for the slope) are left out too.
    ci_level
        Confidence level of the Wald intervals.
    n_therapists
        For the fit table (without ``cluster``).
    predictors
        The predictor columns.
    cluster
        Cluster column of the standard errors (e.g. ``therapist_id``), see
        :func:`alliance_analysis.stats.regression.fit_logit`; ``None``: clients independent.
    centre
        Centre each predictor at its mean over the modelled clients, so that the intercept is
        the log odds of a client average on every predictor.
    name
        Stable model name.
    note
        Appended to the spec.

    Returns
    -------
    ModelResult
        ``logit P(dropout) = b0 + b1 x1 + ...``, with odds ratios per unit of each predictor
        (see :func:`alliance_analysis.stats.regression.fit_logit`); flagged when the fit does
        not converge or the outcome is separated, and not estimable when nobody or
        everybody modelled dropped out.

    Notes
    -----
    Without ``centre`` the intercept of the early-alliance model is the log odds at an
    alliance of 0, outside the scale; read the slopes.
    """
    predictors = list(predictors)
    modelled = table[table["last_session"] >= early_sessions].dropna(
        subset=[*predictors, "dropout"])
    data = modelled.assign(dropout=modelled["dropout"].astype(float))
    if centre:
        data = data.assign(**{p: data[p] - data[p].mean() for p in predictors})
    notes = [note] * bool(note) + ["predictors centred"] * centre + (
        [f"SEs clustered by {cluster}"] if cluster else [])
    return fit_logit(name, data, "dropout", predictors, ci_level=ci_level,
                     n_therapists=n_therapists, cluster=cluster, note="; ".join(notes))


def dropout_severity_model(sessions: pd.DataFrame, alliance: str, symptoms: str,
                           early_sessions: int, dropout: pd.DataFrame, ci_level: float = 0.95,
                           definition: str = "") -> ModelResult:
    """The multilevel stage's dropout model: early alliance and baseline severity.

    :func:`dropout_model` named ``dropout``:
    ``logit P(dropout) = b0 + b1 <alliance>_early + b2 <symptoms>_baseline``, both predictors
    centred at the mean over the modelled clients (those who reached session
    ``early_sessions``), with standard errors clustered by therapist (clients of one
    therapist are not independent; with fewer than about 30 therapists these SEs are
    somewhat liberal). ``<alliance>_early`` is the client's mean alliance over sessions
    ``1..early_sessions`` (:func:`alliance_analysis.data.clients.early_alliance`),
    ``<symptoms>_baseline`` the first observed symptom score
    (:func:`alliance_analysis.data.clients.client_table`).

    Parameters
    ----------
    sessions
        The canonical session table.
    alliance, symptoms
        Instrument keys (columns ``<key>_total``).
    early_sessions
        The multilevel options' ``early_sessions``.
    dropout
        Each client's status, ``client_id, last_session, dropout`` (bool): the run's single
        definition, :func:`alliance_analysis.change.markers.dropout_status`.
    ci_level
        Confidence level of the Wald intervals.
    definition
        The definition in words, for the model's note
        (:func:`alliance_analysis.change.markers.dropout_rule`).

    Returns
    -------
    ModelResult
        Log-odds ``estimate`` per term with ``odds_ratio``, ``or_ci_low``, ``or_ci_high``;
        ``fit`` in the multilevel fit table's terms: ``n_obs, n_clients, n_therapists,
        method, n_dropouts, optimizer, singular, loglik, aic, bic, converged, warnings``.
        When nobody or everybody dropped out the model cannot be estimated: missing
        estimates, ``converged`` false, the reason (``NOT ESTIMABLE``) in ``warnings``.
    """
    require_columns(sessions, [score_column(alliance), score_column(symptoms), CLIENT,
                               THERAPIST, "session"], "dropout_severity_model")
    ordered = sessions.sort_values([CLIENT, "session"], kind="stable")
    early = early_alliance(ordered, score_column(alliance), early_sessions)
    clients = client_table(ordered, symptoms).merge(early, on=CLIENT, how="left")
    clients = clients.assign(**{CLIENT: clients[CLIENT].astype(str)}).rename(
        columns={"early_alliance": f"{alliance}_early"})
    status = dropout.assign(**{CLIENT: dropout[CLIENT].astype(str)})[
        [CLIENT, "last_session", "dropout"]]
    table = clients.merge(status, on=CLIENT, how="left")
    result = dropout_model(
        table, early_sessions, ci_level, predictors=[f"{alliance}_early", f"{symptoms}_baseline"],
        cluster=THERAPIST, centre=True, name="dropout",
        note=f"dropout = {definition or 'as given'}; clients who reached session "
             f"{early_sessions}")
    fit = result.fit
    return replace(result, fit={
        "n_obs": fit["n_obs"], "n_clients": fit["n_clients"],
        "n_therapists": fit["n_therapists"], "method": "ML", "n_dropouts": fit["n_events"],
        "optimizer": "Newton-Raphson", "singular": False, "loglik": fit["loglik"],
        "aic": fit["aic"], "bic": fit["bic"], "converged": fit["converged"],
        "warnings": fit["warnings"]})
