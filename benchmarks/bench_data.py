"""Seeded nested session datasets for the engine benchmark.

:func:`nested_sessions` draws sessions in clients in therapists from the two-level model of
project issue 10, ``symptoms ~ session + alliance_within_lag + alliance_between +
(1 + session | client)``, with a therapist intercept added (so the three-level model can be
fitted on the same data). Its true values follow :class:`alliance_analysis.data.simulate.
SimulationDesign`'s defaults (PHQ-9 scale). :mod:`alliance_analysis.data.simulate` itself draws
questionnaire items, dropout and planted faults, which must be cleaned and scored first;
this generator draws the model columns directly, so a 200,000-row dataset takes a fraction of
a second and has exactly the requested number of rows. Every column is drawn as a numpy array
(the IDs as text through a categorical of the distinct IDs), so 10,000,000 rows take about
1 GB and no Python list of rows.

A treatment ``arm`` (three levels, randomised by client) and a second outcome ``phq9``, which
adds arm differences in level and slope to ``symptoms``, serve the benchmark's model with a
factor and an interaction, ``phq9 ~ session * C(arm) + alliance_within + (1 + session ||
client_id) + (1 | therapist_id)``. They are drawn from a second seeded stream, so the other
columns are the same as without them.
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
#: Arms of the factor model and their differences from ``TAU`` in level and slope (``phq9``).
ARMS = {"CBT": (-0.5, -0.10), "PDT": (-0.3, -0.05), "TAU": (0.0, 0.0)}
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
        ``symptoms``, ``arm`` (text: ``CBT``, ``PDT`` or ``TAU``, one per client) and ``phq9``
        (``symptoms`` plus the arm's level and slope differences, :data:`ARMS`).
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
    arm_rng = np.random.default_rng([seed, 1])
    arm_code = arm_rng.integers(0, len(ARMS), clients)[client]
    level, slope = (np.array(v) for v in zip(*ARMS.values(), strict=True))
    phq9 = symptoms + level[arm_code] + slope[arm_code] * session
    return pd.DataFrame({
        "therapist_id": _text_ids("t", 5, therapist),
        "client_id": _text_ids("c", 6, client),
        "session": session.astype(float), "alliance": alliance,
        "alliance_between": between, "alliance_within": within,
        "alliance_within_lag": lag, "symptoms": symptoms,
        "arm": pd.Series(pd.Categorical.from_codes(arm_code, list(ARMS))).astype("str"),
        "phq9": phq9,
    })


def _text_ids(prefix: str, digits: int, codes: np.ndarray) -> pd.Series:
    """IDs such as ``c000017`` as pandas text, built from the distinct codes only."""
    labels = [f"{prefix}{i:0{digits}d}" for i in range(int(codes.max()) + 1)]
    return pd.Series(pd.Categorical.from_codes(codes, labels)).astype("str")


def model_rows(rows: int, clients: int, seed: int = 20261122) -> pd.DataFrame:
    """Exactly ``rows`` complete rows: :func:`nested_sessions` with ``rows + clients`` sessions,
    less each client's first session (whose lagged alliance is missing)."""
    return nested_sessions(rows + clients, clients, seed=seed).dropna().reset_index(drop=True)
