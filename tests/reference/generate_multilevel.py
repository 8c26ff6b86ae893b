"""Write the seeded multilevel datasets that ``multilevel_lme4.R`` fits.

Run from anywhere (paths are relative to this file)::

    ../../.venv/bin/python generate_multilevel.py

Outputs, next to this file:

``ml_threelevel.csv``
    Sessions nested in clients nested in therapists (unbalanced: 6-10 clients per
    therapist, 4-12 sessions per client).  Columns ``therapist, client, session, y``.
    Client IDs are unique across therapists.  ``session`` is 0 for a client's first
    session, so intercepts refer to the first session.
``ml_withinbetween.csv``
    Session-level alliance and symptom scores for a person-mean-centred lagged model.
    Columns ``client, therapist, session, alliance, symptoms, alliance_between,
    alliance_within, alliance_within_lag1``.  The three derived columns are computed
    here from the *rounded* ``alliance`` column exactly as written:
    ``alliance_between`` is the client's mean alliance over all of that client's
    sessions, ``alliance_within = alliance - alliance_between`` and
    ``alliance_within_lag1`` is ``alliance_within`` of the client's previous session
    (ordered by ``session``), missing (empty cell) at the client's first session.
``ml_truth.json``
    The generating parameters of both datasets.

Only numpy and pandas are used (no import from ``alliance_analysis``), so the
fixtures do not depend on the code they are meant to check.  Each dataset has its
own ``numpy.random.default_rng`` seed, so changing one leaves the other unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

SEED_THREELEVEL = 20261122
SEED_WITHINBETWEEN = 20261123

THREELEVEL = {
    "n_therapists": 30,
    "clients_per_therapist": [6, 10],  # inclusive range, uniform
    "sessions_per_client": [4, 12],  # inclusive range, uniform
    "beta": {"(Intercept)": 10.0, "session": -0.5},
    "therapist_sd": 1.0,
    "client_intercept_sd": 2.0,
    "client_slope_sd": 0.3,
    "client_intercept_slope_cor": -0.3,
    "residual_sd": 1.5,
    "y_decimals": 4,
}

WITHINBETWEEN = {
    "n_therapists": 25,
    "clients_per_therapist": 6,
    "sessions_per_client": [6, 16],  # inclusive range, uniform
    "alliance_grand_mean": 3.8,
    "alliance_therapist_sd": 0.2,
    "alliance_client_sd": 0.5,
    "alliance_within_ar1": 0.4,
    "alliance_within_innovation_sd": 0.35,
    "alliance_decimals": 3,
    # symptoms = b0 + u0 + (b_session + u1) * session
    #            + b_within_lag1 * alliance_within_lag1 (0 at the first session)
    #            + b_between * (alliance_between - alliance_grand_mean) + e
    "beta": {
        "(Intercept)": 20.0,
        "session": -0.6,
        "alliance_within_lag1": -2.0,
        "alliance_between": -3.0,
    },
    "client_intercept_sd": 4.0,
    "client_slope_sd": 0.3,
    "client_intercept_slope_cor": 0.2,
    "residual_sd": 2.5,
    "symptoms_decimals": 3,
}


def _intercept_slope(rng: np.random.Generator, n: int, sd0: float, sd1: float, rho: float) -> np.ndarray:
    cov = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    return rng.multivariate_normal(np.zeros(2), cov, size=n)


def make_threelevel(rng: np.random.Generator) -> pd.DataFrame:
    p = THREELEVEL
    rows = []
    client_no = 0
    for t in range(1, p["n_therapists"] + 1):
        v_t = rng.normal(0.0, p["therapist_sd"])
        n_clients = rng.integers(p["clients_per_therapist"][0], p["clients_per_therapist"][1] + 1)
        u = _intercept_slope(
            rng, n_clients, p["client_intercept_sd"], p["client_slope_sd"], p["client_intercept_slope_cor"]
        )
        for c in range(n_clients):
            client_no += 1
            n_sessions = rng.integers(p["sessions_per_client"][0], p["sessions_per_client"][1] + 1)
            session = np.arange(n_sessions)
            mu = p["beta"]["(Intercept)"] + v_t + u[c, 0] + (p["beta"]["session"] + u[c, 1]) * session
            y = mu + rng.normal(0.0, p["residual_sd"], size=n_sessions)
            for s, yy in zip(session, y):
                rows.append((f"t{t:02d}", f"c{client_no:03d}", int(s), round(float(yy), p["y_decimals"])))
    return pd.DataFrame(rows, columns=["therapist", "client", "session", "y"])


def add_within_between(df: pd.DataFrame) -> pd.DataFrame:
    """Person-mean centring and the within-client lag, ordered by session."""
    df = df.sort_values(["client", "session"], kind="stable").reset_index(drop=True)
    df["alliance_between"] = df.groupby("client")["alliance"].transform("mean")
    df["alliance_within"] = df["alliance"] - df["alliance_between"]
    df["alliance_within_lag1"] = df.groupby("client")["alliance_within"].shift(1)
    return df


def make_withinbetween(rng: np.random.Generator) -> pd.DataFrame:
    p = WITHINBETWEEN
    phi = p["alliance_within_ar1"]
    sd_innov = p["alliance_within_innovation_sd"]
    rows = []
    client_no = 0
    for t in range(1, p["n_therapists"] + 1):
        a_t = rng.normal(0.0, p["alliance_therapist_sd"])
        for _ in range(p["clients_per_therapist"]):
            client_no += 1
            mu_i = p["alliance_grand_mean"] + a_t + rng.normal(0.0, p["alliance_client_sd"])
            n_sessions = rng.integers(p["sessions_per_client"][0], p["sessions_per_client"][1] + 1)
            w = np.empty(n_sessions)
            w[0] = rng.normal(0.0, sd_innov / np.sqrt(1.0 - phi**2))  # stationary start
            for s in range(1, n_sessions):
                w[s] = phi * w[s - 1] + rng.normal(0.0, sd_innov)
            alliance = np.round(mu_i + w, p["alliance_decimals"])
            for s in range(n_sessions):
                rows.append((f"c{client_no:03d}", f"t{t:02d}", s, float(alliance[s])))
    df = pd.DataFrame(rows, columns=["client", "therapist", "session", "alliance"])
    df = add_within_between(df)

    clients = df["client"].unique()
    u = _intercept_slope(
        rng, len(clients), p["client_intercept_sd"], p["client_slope_sd"], p["client_intercept_slope_cor"]
    )
    u0 = pd.Series(u[:, 0], index=clients)[df["client"]].to_numpy()
    u1 = pd.Series(u[:, 1], index=clients)[df["client"]].to_numpy()
    b = p["beta"]
    lag = df["alliance_within_lag1"].fillna(0.0).to_numpy()
    mu = (
        b["(Intercept)"]
        + u0
        + (b["session"] + u1) * df["session"].to_numpy()
        + b["alliance_within_lag1"] * lag
        + b["alliance_between"] * (df["alliance_between"].to_numpy() - p["alliance_grand_mean"])
    )
    df["symptoms"] = np.round(mu + rng.normal(0.0, p["residual_sd"], size=len(df)), p["symptoms_decimals"])
    return df[
        [
            "client",
            "therapist",
            "session",
            "alliance",
            "symptoms",
            "alliance_between",
            "alliance_within",
            "alliance_within_lag1",
        ]
    ]


def main() -> None:
    three = make_threelevel(np.random.default_rng(SEED_THREELEVEL))
    three.to_csv(HERE / "ml_threelevel.csv", index=False, lineterminator="\n")

    wb = make_withinbetween(np.random.default_rng(SEED_WITHINBETWEEN))
    # Derived columns are written with the shortest repr that round-trips (pandas
    # default), so the CSV holds exactly the floats computed above.
    wb.to_csv(HERE / "ml_withinbetween.csv", index=False, na_rep="", lineterminator="\n")

    truth = {
        "generator": "generate_multilevel.py",
        "ml_threelevel.csv": {
            "seed": SEED_THREELEVEL,
            **THREELEVEL,
            "n_rows": len(three),
            "n_clients": int(three["client"].nunique()),
        },
        "ml_withinbetween.csv": {
            "seed": SEED_WITHINBETWEEN,
            **WITHINBETWEEN,
            "n_rows": len(wb),
            "n_clients": int(wb["client"].nunique()),
            "n_rows_with_lag": int(wb["alliance_within_lag1"].notna().sum()),
        },
    }
    (HERE / "ml_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    for name in ("ml_threelevel.csv", "ml_withinbetween.csv"):
        print(f"wrote {name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
