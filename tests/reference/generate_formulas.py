"""Write the seeded three-level dataset that ``formulas_lmertest.R`` fits.

Run from anywhere (paths are relative to this file)::

    ../../.venv/bin/python generate_formulas.py

Outputs, next to this file:

``formulas_threelevel.csv``
    Sessions nested in clients nested in therapists (25 therapists, 6-10 clients per
    therapist, 4-14 sessions per client).  Columns ``therapist_id, client_id, session,
    arm, gender, age, alliance, symptoms``.  Therapist IDs (``t01``...) and client IDs
    (``c001``..., unique across therapists) are strings.  ``session`` starts at 1.
    ``arm`` (``CBT``, ``PDT``, ``IPT``), ``gender`` (``f``, ``m``) and ``age`` are
    constant within a client.  ``alliance`` (1-5) is never missing; about 3% of the
    ``symptoms`` cells are empty (MCAR), so ``na.omit`` drops those rows.
``formulas_truth.json``
    The generating parameters, the seed and the counts of rows, clients and missing cells.

Generating model for a client ``i`` of therapist ``t`` at session ``s``::

    alliance = clip(alliance_mean + a_t + a_i + alliance_growth * (s - 1) + e_a, 1, 5)
    symptoms = b0 + b_session * s + b_arm[arm] + b_session_arm[arm] * s
               + b_gender_m * [gender == m] + b_alliance * alliance
               + v_t + u0_i + u1_i * s + e

with ``(u0_i, u1_i)`` bivariate normal (correlated), ``v_t`` the therapist intercept.
The number of sessions depends on the client's alliance level: a client "drops out"
(4-7 sessions) with probability ``logistic(dropout_logit_intercept +
dropout_logit_alliance * (a_t + a_i))``, otherwise has 8-14 sessions; this gives the
client-level dropout GLM in ``formulas_lmertest.R`` something to find.

Only numpy and pandas are used (no import from ``alliance_analysis``), so the fixtures
do not depend on the code they are meant to check.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

SEED = 20261201

PARAMS = {
    "n_therapists": 25,
    "clients_per_therapist": [6, 10],  # inclusive range, uniform
    "sessions_dropout": [4, 7],  # inclusive range, uniform, for clients who drop out
    "sessions_completer": [8, 14],  # inclusive range, uniform, for the others
    "dropout_logit_intercept": -0.6,
    "dropout_logit_alliance": -2.0,  # per alliance point of a_t + a_i
    "arm_levels": ["CBT", "PDT", "IPT"],  # CBT is the reference level
    "arm_probabilities": [1 / 3, 1 / 3, 1 / 3],
    "gender_levels": ["f", "m"],
    "gender_probabilities": [0.65, 0.35],
    "age_range": [18, 70],  # inclusive, uniform integers
    "alliance_mean": 3.6,
    "alliance_therapist_sd": 0.2,
    "alliance_client_sd": 0.45,
    "alliance_growth": 0.03,  # per session
    "alliance_session_sd": 0.35,
    "alliance_clip": [1.0, 5.0],
    "alliance_decimals": 2,
    "beta": {
        "(Intercept)": 30.0,
        "session": -0.8,
        "armPDT": 1.0,
        "armIPT": -0.5,
        "session:armPDT": 0.25,
        "session:armIPT": 0.15,
        "genderm": 0.8,
        "alliance": -2.0,
    },
    "therapist_sd": 1.5,
    "client_intercept_sd": 3.0,
    "client_slope_sd": 0.35,
    "client_intercept_slope_cor": -0.4,
    "residual_sd": 2.0,
    "symptoms_decimals": 3,
    "symptoms_missing_fraction": 0.03,  # MCAR, exact count = round(fraction * n_rows)
}


def make_data(rng: np.random.Generator) -> pd.DataFrame:
    p = PARAMS
    b = p["beta"]
    sd0, sd1, rho = p["client_intercept_sd"], p["client_slope_sd"], p["client_intercept_slope_cor"]
    cov_u = np.array([[sd0**2, rho * sd0 * sd1], [rho * sd0 * sd1, sd1**2]])
    rows = []
    client_no = 0
    for t in range(1, p["n_therapists"] + 1):
        v_t = rng.normal(0.0, p["therapist_sd"])
        a_t = rng.normal(0.0, p["alliance_therapist_sd"])
        n_clients = int(rng.integers(p["clients_per_therapist"][0], p["clients_per_therapist"][1] + 1))
        for _ in range(n_clients):
            client_no += 1
            arm = str(rng.choice(p["arm_levels"], p=p["arm_probabilities"]))
            gender = str(rng.choice(p["gender_levels"], p=p["gender_probabilities"]))
            age = int(rng.integers(p["age_range"][0], p["age_range"][1] + 1))
            a_i = rng.normal(0.0, p["alliance_client_sd"])
            u0, u1 = rng.multivariate_normal(np.zeros(2), cov_u)
            logit = p["dropout_logit_intercept"] + p["dropout_logit_alliance"] * (a_t + a_i)
            drops_out = rng.random() < 1.0 / (1.0 + np.exp(-logit))
            lo, hi = p["sessions_dropout"] if drops_out else p["sessions_completer"]
            n_sessions = int(rng.integers(lo, hi + 1))
            session = np.arange(1, n_sessions + 1)
            alliance = p["alliance_mean"] + a_t + a_i + p["alliance_growth"] * (session - 1)
            alliance = alliance + rng.normal(0.0, p["alliance_session_sd"], size=n_sessions)
            alliance = np.round(np.clip(alliance, *p["alliance_clip"]), p["alliance_decimals"])
            mu = (
                b["(Intercept)"]
                + b["session"] * session
                + (b["armPDT"] + b["session:armPDT"] * session if arm == "PDT" else 0.0)
                + (b["armIPT"] + b["session:armIPT"] * session if arm == "IPT" else 0.0)
                + (b["genderm"] if gender == "m" else 0.0)
                + b["alliance"] * alliance
                + v_t
                + u0
                + u1 * session
            )
            y = np.round(mu + rng.normal(0.0, p["residual_sd"], size=n_sessions), p["symptoms_decimals"])
            for s, al, yy in zip(session, alliance, y):
                rows.append((f"t{t:02d}", f"c{client_no:03d}", int(s), arm, gender, age, float(al), float(yy)))
    df = pd.DataFrame(
        rows,
        columns=["therapist_id", "client_id", "session", "arm", "gender", "age", "alliance", "symptoms"],
    )
    n_missing = int(round(p["symptoms_missing_fraction"] * len(df)))
    missing = rng.choice(len(df), size=n_missing, replace=False)
    df.loc[np.sort(missing), "symptoms"] = np.nan
    return df


def main() -> None:
    df = make_data(np.random.default_rng(SEED))
    df.to_csv(HERE / "formulas_threelevel.csv", index=False, na_rep="", lineterminator="\n")

    clients = df.groupby("client_id", sort=True).agg(
        arm=("arm", "first"), gender=("gender", "first"), n_sessions=("session", "size")
    )
    truth = {
        "generator": "generate_formulas.py",
        "formulas_threelevel.csv": {
            "seed": SEED,
            **PARAMS,
            "n_rows": len(df),
            "n_therapists_observed": int(df["therapist_id"].nunique()),
            "n_clients": int(df["client_id"].nunique()),
            "n_symptoms_missing": int(df["symptoms"].isna().sum()),
            "n_rows_complete": int(df["symptoms"].notna().sum()),
            "n_clients_by_arm": {a: int((clients["arm"] == a).sum()) for a in PARAMS["arm_levels"]},
            "n_clients_by_gender": {g: int((clients["gender"] == g).sum()) for g in PARAMS["gender_levels"]},
            "n_clients_fewer_than_8_sessions": int((clients["n_sessions"] < 8).sum()),
        },
    }
    (HERE / "formulas_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    for name in ("formulas_threelevel.csv", "formulas_truth.json"):
        print(f"wrote {name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
