"""Seeded nested session datasets for the engine benchmark.

:func:`nested_sessions` draws sessions in clients in therapists from the two-level model of
project issue 10, ``symptoms ~ session + alliance_within_lag + alliance_between +
(1 + session | client)``, with a therapist intercept added (so the three-level model can be
fitted on the same data). Its true values follow :class:`alliance_analysis.data.simulate.
SimulationDesign`'s defaults (PHQ-9 scale). :mod:`alliance_analysis.data.simulate` itself draws
questionnaire items, dropout and planted faults, which must be cleaned and scored first;
this generator draws the model columns directly, so a 200,000-row dataset takes a fraction of
a second and has exactly the requested number of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: True values of the generating model (PHQ-9 points; alliance on the WAI-SR 1-5 scale).
TRUTH = {
    "intercept": 14.0, "session": -0.3, "alliance_within_lag": -1.5,
    "alliance_between": -4.0, "client_intercept_sd": 3.5, "client_slope_sd": 0.15,
    "client_correlation": -0.2, "therapist_sd": 1.0, "residual_sd": 2.5,
    "alliance_mean": 3.8, "alliance_client_sd": 0.45, "alliance_session_sd": 0.30,
}
MIN_SESSIONS = 3


def nested_sessions(rows: int, clients: int, clients_per_therapist: int = 10,
                    seed: int = 20261122) -> pd.DataFrame:
    """A long table of ``rows`` sessions of ``clients`` clients (unbalanced), seeded.

    Parameters
    ----------
    rows, clients
        Number of session rows and of clients; each client has at least 3 sessions and
        the rest are shared out at random (multinomial), so group sizes vary.
    clients_per_therapist
        Clients per therapist (the last therapist may have fewer).
    seed
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame
        ``therapist_id, client_id, session`` (0 at the first session), ``alliance``,
        ``alliance_between`` (client mean), ``alliance_within`` (deviation from it),
        ``alliance_within_lag`` (previous session's deviation; missing at the first session),
        ``symptoms``.
    """
    if rows < MIN_SESSIONS * clients:
        raise ValueError(f"rows ({rows}) must be at least {MIN_SESSIONS} x clients ({clients})")
    rng = np.random.default_rng(seed)
    counts = MIN_SESSIONS + rng.multinomial(rows - MIN_SESSIONS * clients,
                                            np.full(clients, 1 / clients))
    client = np.repeat(np.arange(clients), counts)
    therapist = client // clients_per_therapist
    first = np.repeat(np.cumsum(counts) - counts, counts)
    session = np.arange(rows) - first
    t = TRUTH
    alliance = (t["alliance_mean"] + rng.normal(0, t["alliance_client_sd"], clients)[client]
                + rng.normal(0, t["alliance_session_sd"], rows))
    between = (np.bincount(client, alliance) / counts)[client]
    within = alliance - between
    lag = np.r_[np.nan, within[:-1]]
    lag[session == 0] = np.nan
    sd = np.array([t["client_intercept_sd"], t["client_slope_sd"]])
    corr = np.array([[1, t["client_correlation"]], [t["client_correlation"], 1]])
    effects = rng.multivariate_normal([0, 0], corr * np.outer(sd, sd), clients)
    therapist_effect = rng.normal(0, t["therapist_sd"], therapist.max() + 1)
    symptoms = (t["intercept"] + effects[client, 0] + therapist_effect[therapist]
                + (t["session"] + effects[client, 1]) * session
                + t["alliance_within_lag"] * np.nan_to_num(lag)
                + t["alliance_between"] * (between - t["alliance_mean"])
                + rng.normal(0, t["residual_sd"], rows))
    return pd.DataFrame({
        "therapist_id": [f"t{j:05d}" for j in therapist],
        "client_id": [f"c{i:06d}" for i in client],
        "session": session.astype(float), "alliance": alliance,
        "alliance_between": between, "alliance_within": within,
        "alliance_within_lag": lag, "symptoms": symptoms,
    })


def model_rows(rows: int, clients: int, seed: int = 20261122) -> pd.DataFrame:
    """Exactly ``rows`` complete rows: :func:`nested_sessions` with ``rows + clients`` sessions,
    less each client's first session (whose lagged alliance is missing)."""
    return nested_sessions(rows + clients, clients, seed=seed).dropna().reset_index(drop=True)
