"""Each client's scores as a series indexed by session number: what every change marker reads.

Sudden gains, ruptures and pre/post scores all walk through one client's scored sessions in
order; :func:`scored_series` builds those series once, the same way for all. (Early alliance
is a client summary shared with the other model families:
:func:`alliance_analysis.data.clients.early_alliance`.)
:func:`at_least`, :func:`at_most`, :func:`more_than` and :func:`less_than` compare scores with
thresholds for every criterion.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import pandas as pd

from alliance_analysis.data.clients import runs
from alliance_analysis.errors import AllianceDataError

#: Slack of every threshold comparison. Scores are item means or prorated sums, whose float
#: differences can land a hair off a round threshold (2.3 - 1.8 = 0.49999999999999978 in
#: binary floating point); a criterion must not be decided by that rounding.
EPS = 1e-9

Values = TypeVar("Values", float, np.ndarray, pd.Series)


def at_least(values: Values, threshold: float) -> Values:
    """``values >= threshold``, with equality up to :data:`EPS` counting as equal."""
    return values >= threshold - EPS


def at_most(values: Values, threshold: float) -> Values:
    """``values <= threshold``, with equality up to :data:`EPS` counting as equal."""
    return values <= threshold + EPS


def more_than(values: Values, threshold: float) -> Values:
    """``values > threshold``, with equality up to :data:`EPS` not counting as more."""
    return values > threshold + EPS


def less_than(values: Values, threshold: float) -> Values:
    """``values < threshold``, with equality up to :data:`EPS` not counting as less."""
    return values < threshold - EPS


def scored_series(sessions: pd.DataFrame, score: str) -> dict[str, pd.Series]:
    """Each client's non-missing scores indexed by session number, in session order.

    Raises
    ------
    AllianceDataError
        When ``client_id``, ``session`` or `score` is not a column of `sessions`.
    """
    missing = [c for c in ("client_id", "session", score) if c not in sessions.columns]
    if missing:
        raise AllianceDataError(f"the session table lacks column(s) {missing}; its columns are "
                                f"{list(sessions.columns)}. Run the clean stage (01_clean) "
                                "with this instrument listed under `instruments:`")
    scored = sessions.loc[sessions[score].notna() & sessions["client_id"].notna(),
                          ["client_id", "session", score]]
    scored = scored.assign(session=scored["session"].astype(int)).sort_values(
        ["client_id", "session"], kind="stable")
    # each client's rows of the sorted arrays (ten times faster than a frame per client)
    clients = scored["client_id"].to_numpy()
    numbers = scored["session"].to_numpy()
    values = scored[score].to_numpy(dtype=float)
    return {str(clients[a]): pd.Series(values[a:b], index=pd.Index(numbers[a:b], name="session"),
                                       name=score)
            for a, b in runs(clients)}
