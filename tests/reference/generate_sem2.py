"""Write the seeded data that ``sem2_lavaan.R`` fits (SEM extensions: MLR, FIML, WLSMV,
measurement invariance, RI-CLPM extensions).

Run from anywhere (paths are relative to this file)::

    ../../.venv/bin/python generate_sem2.py

Outputs, next to this file:

``sem2_hs_missing.csv``
    ``id, school, x1..x9`` of the public Holzinger & Swineford (1939) data
    (``data/reference/HolzingerSwineford1939.csv``, 301 rows) with each of the
    9 x-cells of each row set missing (empty cell) independently with probability
    0.10 (MCAR). The observed values are copied as text, byte for byte.
``sem2_ordinal.csv``
    N = 500, ``group`` (``g1``/``g2``, 250 each) and six ordinal items ``u1..u6``
    from a two-factor model for latent responses (``F1 -> u1..u3`` with 5 categories,
    ``F2 -> u4..u6`` with 4 categories) plus one cross-loading (``F2 -> u3``) that the
    fitted CFA omits, thresholds equal in both groups; in ``g2`` the factor means are
    shifted.
``sem2_longitudinal.csv``
    N = 400, one factor measured by four continuous items (roughly 1-5) at three
    occasions, columns ``i1_t1 .. i4_t1, i1_t2 .. i4_t3``, loadings and intercepts
    invariant over time, a small increase of the factor mean, and item-specific
    stable components (so the same item's residuals correlate across occasions).
``sem2_riclpm.csv``
    N = 600, ``id, group, z, x1..x5, y1..y5``: a 5-wave RI-CLPM in which the
    time-invariant covariate ``z`` predicts both random intercepts, two groups
    (``g1``/``g2``, 300 each) that differ only in the grand means of y, and 8% of
    the x/y cells MCAR-missing (``z`` and ``group`` are complete).
``sem2_truth.json``
    Seeds, generating values and missing-cell counts of all four files.

Only numpy and pandas are used (no import from ``alliance_analysis``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "data" / "reference"

SEED_HS_MISSING = 20261201
SEED_ORDINAL = 20261202
SEED_LONGITUDINAL = 20261203
SEED_RICLPM = 20261204
SEED_RICLPM_MISSING = 20261205

DECIMALS = 4

# ---- Holzinger-Swineford with MCAR cells ----------------------------------------------
HS_ITEMS = [f"x{k}" for k in range(1, 10)]
HS_P_MISSING = 0.10

# ---- ordinal two-factor data ----------------------------------------------------------
ORD = {
    "n_per_group": 250,
    "groups": ["g1", "g2"],
    "loadings": {"u1": 0.8, "u2": 0.7, "u3": 0.6, "u4": 0.75, "u5": 0.65, "u6": 0.7},
    "factor_of": {"u1": "F1", "u2": "F1", "u3": "F1", "u4": "F2", "u5": "F2", "u6": "F2"},
    # not in the fitted two-factor CFA: a deliberate misspecification, so that the fit
    # indices (scaled and robust CFI/TLI/RMSEA) are not at their bounds of 1 and 0
    "cross_loadings": {"u3": {"F2": 0.3}},
    "factor_cor": 0.4,
    "factor_var": 1.0,
    # latent responses u* = lambda F (+ cross-loading) + e, Var(e) chosen so that
    # Var(u*) = 1 in g1
    "thresholds": {
        "u1": [-1.5, -0.5, 0.3, 1.2],
        "u2": [-1.2, -0.3, 0.5, 1.4],
        "u3": [-1.0, 0.0, 0.8, 1.6],
        "u4": [-0.8, 0.2, 1.1],
        "u5": [-1.1, -0.1, 0.9],
        "u6": [-0.6, 0.4, 1.3],
    },
    "factor_means": {"g1": [0.0, 0.0], "g2": [0.3, -0.2]},
    "category_coding": "1 = below the first threshold, ..., K = above the last",
}

# ---- longitudinal one-factor data -----------------------------------------------------
LONG = {
    "n": 400,
    "occasions": 3,
    "items": ["i1", "i2", "i3", "i4"],
    "loadings": [0.8, 0.7, 0.6, 0.75],  # invariant over occasions
    "intercepts": [3.0, 2.8, 3.2, 3.1],  # invariant over occasions
    "factor_means": [0.0, 0.15, 0.30],
    "factor_variances": [0.8, 0.8, 0.8],
    "factor_correlations": {"F1,F2": 0.6, "F2,F3": 0.6, "F1,F3": 0.45},
    # residual = stable item-specific part (same draw at every occasion) + occasion part
    "item_specific_variance": [0.08, 0.06, 0.10, 0.07],
    "occasion_residual_variance": [0.30, 0.35, 0.40, 0.30],
}

# ---- RI-CLPM with a covariate and two groups ------------------------------------------
RI = {
    "n_per_group": 300,
    "groups": ["g1", "g2"],
    "waves": 5,
    "mean_x": [4.8, 5.0, 5.1, 5.2, 5.3],
    "mean_y": [14.0, 12.5, 11.5, 11.0, 10.8],
    "group_shift_mean_y": {"g1": 0.0, "g2": -1.0},  # added to every mean_y in that group
    "z": "standard normal, independent of group",
    # random intercepts: RIx = gamma_x z + dx, RIy = gamma_y z + dy
    "gamma_x": 0.3,
    "gamma_y": -1.2,
    "var_dx": 0.27,
    "var_dy": 7.5,
    "cor_dx_dy": -0.4,
    # within part, wave 1
    "var_wx1": 0.25,
    "var_wy1": 6.25,
    "cor_wx1_wy1": -0.2,
    # lagged effects, the same in both groups and at every wave
    "a_x": 0.3,
    "a_y": 0.4,
    "b_yx": -1.0,  # wy_t ~ wx_{t-1}
    "b_xy": -0.02,  # wx_t ~ wy_{t-1}
    "var_u": 0.2,
    "var_v": 5.0,
    "cor_u_v": -0.15,
    "p_missing": 0.08,
}


def _cov2(var_a: float, var_b: float, cor: float) -> np.ndarray:
    c = cor * np.sqrt(var_a * var_b)
    return np.array([[var_a, c], [c, var_b]])


def _first_row_in_first_group(groups: np.ndarray, first: str) -> np.ndarray:
    """Swap labels so that row 1 is in the first group (lavaan numbers groups in order of
    appearance); the group sizes stay as they are."""
    groups = groups.copy()
    if groups[0] != first:
        j = int(np.flatnonzero(groups == first)[0])
        groups[0], groups[j] = groups[j], groups[0]
    return groups


def _no_empty_rows(mask: np.ndarray, what: str) -> None:
    if mask.all(axis=1).any():  # lavaan drops rows with every value missing; keep N fixed
        raise RuntimeError(f"{what}: a row is entirely missing; change the seed")


def hs_missing(rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    hs = pd.read_csv(DATA / "HolzingerSwineford1939.csv", dtype=str, keep_default_na=False)
    out = hs[["id", "school", *HS_ITEMS]].copy()
    mask = rng.random((len(out), len(HS_ITEMS))) < HS_P_MISSING
    _no_empty_rows(mask, "sem2_hs_missing")
    vals = out[HS_ITEMS].to_numpy(dtype=object)
    vals[mask] = ""
    out[HS_ITEMS] = vals
    info = {
        "source": "data/reference/HolzingerSwineford1939.csv (columns id, school, x1..x9; values copied as text)",
        "seed_missing": SEED_HS_MISSING,
        "mechanism": "MCAR, each x cell independently",
        "p": HS_P_MISSING,
        "n": int(len(out)),
        "n_missing_cells": int(mask.sum()),
        "n_missing_by_column": {c: int(v) for c, v in zip(HS_ITEMS, mask.sum(axis=0))},
        "n_complete_rows": int((~mask.any(axis=1)).sum()),
    }
    return out, info


def ordinal(rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    o = ORD
    items = list(o["loadings"])
    n = o["n_per_group"] * len(o["groups"])
    groups = np.repeat(o["groups"], o["n_per_group"])
    groups = groups[rng.permutation(n)]
    groups = _first_row_in_first_group(groups, o["groups"][0])
    phi = np.array([[1.0, o["factor_cor"]], [o["factor_cor"], 1.0]]) * o["factor_var"]
    eta = rng.multivariate_normal(np.zeros(2), phi, size=n)
    for g, mu in o["factor_means"].items():
        eta[groups == g] += np.asarray(mu)
    cols = {"id": np.arange(1, n + 1), "group": groups}
    for it in items:
        lam = np.zeros(2)
        lam[0 if o["factor_of"][it] == "F1" else 1] = o["loadings"][it]
        for fac, val in o["cross_loadings"].get(it, {}).items():
            lam[0 if fac == "F1" else 1] = val
        common = float(lam @ phi @ lam)
        ystar = eta @ lam + rng.normal(0.0, np.sqrt(1.0 - common), size=n)
        cols[it] = 1 + np.searchsorted(np.asarray(o["thresholds"][it]), ystar, side="right")
    df = pd.DataFrame(cols)
    for g in o["groups"]:  # multigroup WLSMV needs every category in every group
        sub = df[df["group"] == g]
        for it in items:
            if sub[it].nunique() != len(o["thresholds"][it]) + 1:
                raise RuntimeError(f"{it} lacks a category in {g}; change SEED_ORDINAL")
    counts = {g: {it: {str(k): int(v) for k, v in df.loc[df["group"] == g, it].value_counts().sort_index().items()}
                  for it in items} for g in o["groups"]}
    return df, {"seed": SEED_ORDINAL, "n": n, "generating_values": o, "category_counts": counts}


def longitudinal(rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    lg = LONG
    n, occ, items = lg["n"], lg["occasions"], lg["items"]
    sd = np.sqrt(np.asarray(lg["factor_variances"]))
    r = lg["factor_correlations"]
    cor = np.array([[1.0, r["F1,F2"], r["F1,F3"]], [r["F1,F2"], 1.0, r["F2,F3"]], [r["F1,F3"], r["F2,F3"], 1.0]])
    eta = rng.multivariate_normal(np.asarray(lg["factor_means"]), cor * np.outer(sd, sd), size=n)
    spec = rng.normal(0.0, np.sqrt(lg["item_specific_variance"]), size=(n, len(items)))
    cols = {}
    for t in range(occ):
        e = rng.normal(0.0, np.sqrt(lg["occasion_residual_variance"]), size=(n, len(items)))
        y = np.asarray(lg["intercepts"]) + eta[:, [t]] * np.asarray(lg["loadings"]) + spec + e
        for j, it in enumerate(items):
            cols[f"{it}_t{t + 1}"] = np.round(y[:, j], DECIMALS)
    df = pd.DataFrame(cols)
    implied = {
        "residual_variance_per_item": [a + b for a, b in zip(lg["item_specific_variance"], lg["occasion_residual_variance"])],
        "residual_covariance_same_item_across_occasions": lg["item_specific_variance"],
    }
    return df, {"seed": SEED_LONGITUDINAL, "n": n, "decimals": DECIMALS, "generating_values": lg, "implied": implied}


def riclpm(rng: np.random.Generator, rng_missing: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    t = RI
    waves = t["waves"]
    n = t["n_per_group"] * len(t["groups"])
    groups = np.repeat(t["groups"], t["n_per_group"])
    groups = groups[rng.permutation(n)]
    groups = _first_row_in_first_group(groups, t["groups"][0])
    z = rng.normal(0.0, 1.0, size=n)
    d = rng.multivariate_normal(np.zeros(2), _cov2(t["var_dx"], t["var_dy"], t["cor_dx_dy"]), size=n)
    rix = t["gamma_x"] * z + d[:, 0]
    riy = t["gamma_y"] * z + d[:, 1]
    w = np.empty((n, waves, 2))
    w[:, 0, :] = rng.multivariate_normal(np.zeros(2), _cov2(t["var_wx1"], t["var_wy1"], t["cor_wx1_wy1"]), size=n)
    phi = np.array([[t["a_x"], t["b_xy"]], [t["b_yx"], t["a_y"]]])
    innov = _cov2(t["var_u"], t["var_v"], t["cor_u_v"])
    for k in range(1, waves):
        w[:, k, :] = w[:, k - 1, :] @ phi.T + rng.multivariate_normal(np.zeros(2), innov, size=n)
    shift = np.array([t["group_shift_mean_y"][g] for g in groups])
    x = np.asarray(t["mean_x"]) + rix[:, None] + w[:, :, 0]
    y = np.asarray(t["mean_y"]) + shift[:, None] + riy[:, None] + w[:, :, 1]
    cols = {"id": np.arange(1, n + 1), "group": groups, "z": np.round(z, DECIMALS)}
    cols.update({f"x{k + 1}": np.round(x[:, k], DECIMALS) for k in range(waves)})
    cols.update({f"y{k + 1}": np.round(y[:, k], DECIMALS) for k in range(waves)})
    df = pd.DataFrame(cols)
    xy = [f"x{k}" for k in range(1, waves + 1)] + [f"y{k}" for k in range(1, waves + 1)]
    mask = rng_missing.random((n, len(xy))) < t["p_missing"]
    _no_empty_rows(mask, "sem2_riclpm")
    df[xy] = df[xy].mask(mask)
    info = {
        "seed": SEED_RICLPM,
        "seed_missing": SEED_RICLPM_MISSING,
        "n": n,
        "decimals": DECIMALS,
        "generating_values": t,
        "implied": {
            "var_RIx": t["gamma_x"] ** 2 + t["var_dx"],
            "var_RIy": t["gamma_y"] ** 2 + t["var_dy"],
            "cov_RIx_RIy_residual": t["cor_dx_dy"] * float(np.sqrt(t["var_dx"] * t["var_dy"])),
            "cov_wx1_wy1": t["cor_wx1_wy1"] * float(np.sqrt(t["var_wx1"] * t["var_wy1"])),
            "cov_u_v": t["cor_u_v"] * float(np.sqrt(t["var_u"] * t["var_v"])),
        },
        "missing": {
            "mechanism": "MCAR, each x/y cell independently; z and group complete",
            "p": t["p_missing"],
            "n_missing_cells": int(mask.sum()),
            "n_missing_by_column": {c: int(v) for c, v in zip(xy, mask.sum(axis=0))},
            "n_complete_rows": int((~mask.any(axis=1)).sum()),
        },
    }
    return df, info


def main() -> None:
    hs, hs_info = hs_missing(np.random.default_rng(SEED_HS_MISSING))
    hs.to_csv(HERE / "sem2_hs_missing.csv", index=False, lineterminator="\n")
    od, od_info = ordinal(np.random.default_rng(SEED_ORDINAL))
    od.to_csv(HERE / "sem2_ordinal.csv", index=False, lineterminator="\n")
    lg, lg_info = longitudinal(np.random.default_rng(SEED_LONGITUDINAL))
    lg.to_csv(HERE / "sem2_longitudinal.csv", index=False, lineterminator="\n")
    ri, ri_info = riclpm(np.random.default_rng(SEED_RICLPM), np.random.default_rng(SEED_RICLPM_MISSING))
    ri.to_csv(HERE / "sem2_riclpm.csv", index=False, na_rep="", lineterminator="\n")

    truth = {
        "generator": "generate_sem2.py",
        "sem2_hs_missing.csv": hs_info,
        "sem2_ordinal.csv": od_info,
        "sem2_longitudinal.csv": lg_info,
        "sem2_riclpm.csv": ri_info,
    }
    (HERE / "sem2_truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    for name in ("sem2_hs_missing.csv", "sem2_ordinal.csv", "sem2_longitudinal.csv", "sem2_riclpm.csv", "sem2_truth.json"):
        print(f"wrote {name}: {(HERE / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
