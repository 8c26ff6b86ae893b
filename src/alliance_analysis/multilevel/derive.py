"""Derived model columns: time codes, person-mean centring, detrending, lags.

Every column is named as in DESIGN.md ("The canonical session table"): for a score key
``wai`` (column ``wai_total``) the client mean is ``wai_between``, the session deviation from it
``wai_within``, and the value at the client's previous attended session ``wai_lag1`` /
``wai_within_lag1``. Functions return new tables; the input is never changed. Client-level
summaries (baseline and post scores, early alliance) are shared with the other model families
and live in :mod:`alliance_analysis.data.clients`.

References
----------
.. [1] Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
   between-person effects in longitudinal models of change. Annual Review of Psychology, 62,
   583-619.
.. [2] Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
   models of individual change in psychotherapy process research. Journal of Consulting and
   Clinical Psychology, 85(6), 537-549.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from alliance_analysis.data.clients import CLIENT, THERAPIST, require_columns, score_column
from alliance_analysis.instruments import Instrument

__all__ = ["CLIENT", "THERAPIST", "add_lag", "code_time", "count_lag_gaps", "detrend",
           "in_session_order", "person_mean_centre", "pomp", "require_columns", "rows_where",
           "score_column"]


def in_session_order(sessions: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by client and session, with a fresh index; ``session`` as float."""
    ordered = sessions.sort_values([CLIENT, "session"], kind="stable").reset_index(drop=True)
    return ordered.assign(session=ordered["session"].astype("float64"))


def code_time(sessions: pd.DataFrame, time: str, origin: int) -> pd.Series:
    """Time since the origin in the chosen metric, named after it.

    ``session``: ``session - origin`` (0 at the origin session); ``log_session``:
    ``log(session - origin + 1)`` (0 at the origin, steps shrinking as sessions go on, for
    the fast early change typical of psychotherapy; sessions before the origin are missing,
    and so left out of the model); ``day``: days since the client's first session, as
    recorded in ``day`` (the origin does not apply).
    """
    session = sessions["session"].astype("float64")
    if time == "session":
        values = session - origin
    elif time == "log_session":
        values = np.log((session - origin + 1.0).where(session >= origin))
    else:
        require_columns(sessions, ["day"], "time: day")
        values = sessions["day"].astype("float64")
    return pd.Series(values.to_numpy(), index=sessions.index, name=time)


def person_mean_centre(sessions: pd.DataFrame, key: str) -> pd.DataFrame:
    """Add ``<key>_between`` (client mean of all observed scores) and ``<key>_within``.

    ``<key>_within = <key>_total - <key>_between`` is the state-like part (this session
    against the client's own average), ``<key>_between`` the trait-like part (Curran &
    Bauer, 2011). The client mean is raw, not grand-mean centred, as in the lme4 reference
    fixtures.
    """
    column = score_column(key)
    between = sessions.groupby(CLIENT, sort=False)[column].transform("mean")
    return sessions.assign(**{f"{key}_between": between,
                              f"{key}_within": sessions[column] - between})


def detrend(sessions: pd.DataFrame, key: str) -> pd.DataFrame:
    """Add ``<key>_between``, ``<key>_trend`` and a detrended ``<key>_within``.

    Each client's scores are regressed on session number by least squares; ``<key>_within``
    is the residual (the deviation from the client's *own trend*, not from their mean), so
    that steady growth of alliance over treatment does not masquerade as session-to-session
    fluctuation (Falkenström et al., 2017). ``<key>_trend`` is the client's slope per
    session (a between-client variable). Clients with fewer than three observed scores have
    no residual to speak of: their ``<key>_within`` and ``<key>_trend`` are missing.
    """
    column = score_column(key)
    observed = sessions[sessions[column].notna()]
    x = observed["session"].astype("float64")
    y = observed[column].astype("float64")
    grouped = pd.DataFrame({CLIENT: observed[CLIENT], "x": x, "y": y,
                            "xx": x * x, "xy": x * y}).groupby(CLIENT, sort=False)
    sums, counts = grouped.sum(), grouped.size()
    sxx = sums["xx"] - sums["x"] ** 2 / counts
    sxy = sums["xy"] - sums["x"] * sums["y"] / counts
    slope = (sxy / sxx).where((counts >= 3) & (sxx > 0))
    mean_x, mean_y = sums["x"] / counts, sums["y"] / counts
    client = sessions[CLIENT]
    fitted = (client.map(mean_y)
              + client.map(slope) * (sessions["session"].astype("float64") - client.map(mean_x)))
    return sessions.assign(**{f"{key}_between": client.map(mean_y),
                              f"{key}_trend": client.map(slope),
                              f"{key}_within": sessions[column] - fitted})


def add_lag(sessions: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Add ``<column>_lag1``: the value at the client's previous attended session.

    ``sessions`` must be in session order within client (:func:`in_session_order`). The lag is
    the previous *row* of the same client, i.e. the previous attended session, also when
    session numbers skip (a gap such as 3 -> 5 is counted by :func:`count_lag_gaps`). A
    missing value at the previous session gives a missing lag: we never reach further back,
    which would silently mix lags of different lengths. The first session has no lag. The
    name drops a ``_total`` suffix (``wai_total`` -> ``wai_lag1``).
    """
    previous = sessions.groupby(CLIENT, sort=False)[list(columns)].shift(1)
    return sessions.assign(**{f"{c.removesuffix('_total')}_lag1": previous[c] for c in columns})


def count_lag_gaps(sessions: pd.DataFrame) -> int:
    """Rows whose previous attended session is not the session number just before."""
    step = sessions.groupby(CLIENT, sort=False)["session"].diff()
    return int((step > 1).sum())


def pomp(scores: pd.Series, instrument: Instrument) -> pd.Series:
    """Percent of maximum possible (0-100) on ``instrument``'s total-score range.

    Puts ratings on different response scales (WAI-SR 1-5, WAI-S 1-7) on one metric so that
    their difference is meaningful (Cohen, Cohen, Aiken & West, 1999).
    """
    factor = 1 if instrument.scoring == "mean" else instrument.n_items
    low, high = instrument.item_min * factor, instrument.item_max * factor
    return 100 * (scores.astype("float64") - low) / (high - low)


def rows_where(frame: pd.DataFrame, where: str) -> Any:
    """``frame.query(where, engine="python")``, evaluated on the columns ``where`` names.

    pandas' query makes a Series of every column of the frame to resolve names (here about
    a hundred, for a condition naming one or two): the condition is evaluated on the columns
    whose names occur in its text (every column it names, and maybe a few more) and the rows
    it keeps are taken from the whole frame by their (unique) labels.
    """
    if not frame.index.is_unique:
        return frame.query(where, engine="python")
    named = [c for c in frame.columns if str(c) in where]
    kept = frame[named].query(where, engine="python")
    return frame.loc[kept.index] if isinstance(kept, pd.DataFrame) else kept
