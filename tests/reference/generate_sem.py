"""Write the seeded panel data that ``sem_lavaan.R`` fits the RI-CLPM and CLPM to.

Run from anywhere (paths are relative to this file)::

    ../../.venv/bin/python generate_sem.py

Outputs, next to this file:

``sem_riclpm.csv``
    N = 500 people, 4 waves of alliance ``x1..x4`` and symptoms ``y1..y4``, simulated
    from a random-intercept cross-lagged panel model (Hamaker, Kuiper & Grasman 2015):
    ``x_t = mu_x[t] + RIx + wx_t`` and ``y_t = mu_y[t] + RIy + wy_t`` with stable
    between-person random intercepts (RIx, RIy) and within-person deviations that
    follow a first-order VAR:
    ``wx_t = a_x * wx_{t-1} + b_xy * wy_{t-1} + u_t`` and
    ``wy_t = b_yx * wx_{t-1} + a_y * wy_{t-1} + v_t``.
``sem_riclpm_missing.csv``
    The same values with each of the 8 cells of each row set missing (empty cell)
    independently with probability 0.10 (MCAR), for the ``missing = "fiml"`` fits.
``sem_riclpm_truth.json``
    The generating parameters (time-invariant) named as in the lavaan RI-CLPM
    syntax, the seeds, and the realised number of missing cells.

Only numpy and pandas are used (no import from ``alliance_analysis``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent

SEED_PANEL = 20261124
SEED_MISSING = 20261125
N = 500
WAVES = 4
P_MISSING = 0.10
DECIMALS = 4

TRUTH = {
    # grand means per wave (x = alliance on a 1-7 scale, y = symptoms)
    "mean_x": [4.8, 5.0, 5.1, 5.2],
    "mean_y": [14.0, 12.5, 11.5, 11.0],
    # between part: stable random intercepts
    "var_RIx": 0.36,
    "var_RIy": 9.0,
    "cor_RIx_RIy": -0.5,
    # within part, wave 1
    "var_wx1": 0.25,
    "var_wy1": 6.25,
    "cor_wx1_wy1": -0.2,
    # lagged effects of the within components (time-invariant)
    "a_x": 0.3,  # wx_t ~ wx_{t-1}
    "a_y": 0.4,  # wy_t ~ wy_{t-1}
    "b_yx": -1.0,  # wy_t ~ wx_{t-1}: alliance -> later symptoms
    "b_xy": -0.02,  # wx_t ~ wy_{t-1}: symptoms -> later alliance
    # innovations (residuals of wx_t, wy_t for t >= 2)
    "var_u": 0.2,
    "var_v": 5.0,
    "cor_u_v": -0.15,
}


def _cov2(var_a: float, var_b: float, cor: float) -> np.ndarray:
    c = cor * np.sqrt(var_a * var_b)
    return np.array([[var_a, c], [c, var_b]])


def simulate(rng: np.random.Generator) -> pd.DataFrame:
    t = TRUTH
    ri = rng.multivariate_normal(np.zeros(2), _cov2(t["var_RIx"], t["var_RIy"], t["cor_RIx_RIy"]), size=N)
    w = np.empty((N, WAVES, 2))
    w[:, 0, :] = rng.multivariate_normal(np.zeros(2), _cov2(t["var_wx1"], t["var_wy1"], t["cor_wx1_wy1"]), size=N)
    phi = np.array([[t["a_x"], t["b_xy"]], [t["b_yx"], t["a_y"]]])
    innov_cov = _cov2(t["var_u"], t["var_v"], t["cor_u_v"])
    for k in range(1, WAVES):
        w[:, k, :] = w[:, k - 1, :] @ phi.T + rng.multivariate_normal(np.zeros(2), innov_cov, size=N)
    x = np.asarray(t["mean_x"]) + ri[:, [0]] + w[:, :, 0]
    y = np.asarray(t["mean_y"]) + ri[:, [1]] + w[:, :, 1]
    cols = {f"x{k + 1}": np.round(x[:, k], DECIMALS) for k in range(WAVES)}
    cols.update({f"y{k + 1}": np.round(y[:, k], DECIMALS) for k in range(WAVES)})
    return pd.DataFrame(cols)


def make_missing(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    mask = rng.random(df.shape) < P_MISSING
    if mask.all(axis=1).any():  # lavaan drops rows with every value missing; keep N fixed
        raise RuntimeError("a row is entirely missing; change SEED_MISSING")
    return df.mask(mask)


def lavaan_truth() -> list[dict]:
    """The generating values, named as parameters of the RI-CLPM lavaan syntax."""
    t = TRUTH
    rows = [
        {"lhs": "RIx", "op": "~~", "rhs": "RIx", "value": t["var_RIx"]},
        {"lhs": "RIy", "op": "~~", "rhs": "RIy", "value": t["var_RIy"]},
        {"lhs": "RIx", "op": "~~", "rhs": "RIy", "value": t["cor_RIx_RIy"] * np.sqrt(t["var_RIx"] * t["var_RIy"])},
        {"lhs": "wx1", "op": "~~", "rhs": "wx1", "value": t["var_wx1"]},
        {"lhs": "wy1", "op": "~~", "rhs": "wy1", "value": t["var_wy1"]},
        {"lhs": "wx1", "op": "~~", "rhs": "wy1", "value": t["cor_wx1_wy1"] * np.sqrt(t["var_wx1"] * t["var_wy1"])},
    ]
    for k in range(2, WAVES + 1):
        rows += [
            {"lhs": f"wx{k}", "op": "~", "rhs": f"wx{k - 1}", "value": t["a_x"]},
            {"lhs": f"wx{k}", "op": "~", "rhs": f"wy{k - 1}", "value": t["b_xy"]},
            {"lhs": f"wy{k}", "op": "~", "rhs": f"wx{k - 1}", "value": t["b_yx"]},
            {"lhs": f"wy{k}", "op": "~", "rhs": f"wy{k - 1}", "value": t["a_y"]},
            {"lhs": f"wx{k}", "op": "~~", "rhs": f"wx{k}", "value": t["var_u"]},
            {"lhs": f"wy{k}", "op": "~~", "rhs": f"wy{k}", "value": t["var_v"]},
            {"lhs": f"wx{k}", "op": "~~", "rhs": f"wy{k}", "value": t["cor_u_v"] * np.sqrt(t["var_u"] * t["var_v"])},
        ]
    for k in range(1, WAVES + 1):
        rows += [
            {"lhs": f"x{k}", "op": "~1", "rhs": "", "value": t["mean_x"][k - 1]},
            {"lhs": f"y{k}", "op": "~1", "rhs": "", "value": t["mean_y"][k - 1]},
        ]
    return [{**r, "value": float(r["value"])} for r in rows]


def main() -> None:
    df = simulate(np.random.default_rng(SEED_PANEL))
    df.to_csv(HERE / "sem_riclpm.csv", index=False, lineterminator="\n")
    dm = make_missing(df, np.random.default_rng(SEED_MISSING))
    dm.to_csv(HERE / "sem_riclpm_missing.csv", index=False, na_rep="", lineterminator="\n")

    truth = {
        "generator": "generate_sem.py",
        "model": "RI-CLPM (Hamaker, Kuiper & Grasman 2015), time-invariant generating values",
        "seed_panel": SEED_PANEL,
        "seed_missing": SEED_MISSING,
        "n": N,
        "waves": WAVES,
        "decimals": DECIMALS,
        "x": "alliance",
        "y": "symptoms",
        "generating_values": TRUTH,
        "lavaan_parameters": lavaan_truth(),
        "missing": {
            "mechanism": "MCAR, each cell independently",
            "p": P_MISSING,
            "n_missing_cells": int(dm.isna().sum().sum()),
            "n_missing_by_column": {c: int(v) for c, v in dm.isna().sum().items()},
            "n_complete_rows": int(dm.notna().all(axis=1).sum()),
        },
    }
    (HERE / "sem_riclpm_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    for name in ("sem_riclpm.csv", "sem_riclpm_missing.csv"):
        print(f"wrote {name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
