"""Simulated datasets with known true parameters: one entry point, :func:`simulate`.

Every analysis in the workbench can be checked against the truth it should recover, on data
drawn from a model whose parameters are all known. The design says which model:

* :class:`SimulationDesign`: a realistic long-format session table (therapists, clients,
  sessions, dropout, missing questionnaires and items, a few planted data-entry faults), the
  demo dataset and the power studies' replicates
  (:mod:`alliance_analysis.data.simulate_sessions`, where the generating model is described);
* :class:`PanelDesign`: a panel of scored alliance and symptoms from a random-intercept
  cross-lagged panel model, for the RI-CLPM tutorial
  (:mod:`alliance_analysis.data.simulate_panel`).

:func:`write` saves a simulated table and its truth as ``sessions.csv`` and ``truth.json``,
byte-identical for the same design and seed.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alliance_analysis.data import simulate_panel, simulate_sessions
from alliance_analysis.data.simulate_panel import PanelDesign
from alliance_analysis.data.simulate_sessions import SimulationDesign

__all__ = ["DEFAULT_SEED", "PanelDesign", "SimulatedData", "SimulationDesign", "simulate",
           "write"]

DEFAULT_SEED = 20261122
SIGNIFICANT_DIGITS = 10


@dataclass(frozen=True)
class SimulatedData:
    """A simulated session table and the truth behind it.

    Attributes
    ----------
    sessions : pandas.DataFrame
        One row per client and session. From a :class:`SimulationDesign`: columns as in
        ``data/README.md``; item columns are nullable ``Int64``; because of the planted
        faults, ``session`` has dtype object: Python ints except one string such as
        ``"3.5"``, and one row is an exact duplicate. From a :class:`PanelDesign`: scored
        ``wai_total`` and ``phq9_total`` only (see
        :func:`alliance_analysis.data.simulate_panel.draw`).
    truth : dict
        Design, seed and what else the design knows: for a :class:`SimulationDesign` the
        package version, equations, realised summaries and faults, as written to
        ``truth.json``; for a :class:`PanelDesign` the random-intercept and stationary
        within-client covariances.
    """

    sessions: pd.DataFrame
    truth: dict[str, Any]


def simulate(design: SimulationDesign | PanelDesign | None = None,
             seed: int = DEFAULT_SEED) -> SimulatedData:
    """Simulate a dataset from known true parameters.

    Parameters
    ----------
    design : SimulationDesign or PanelDesign, optional
        Which model, its size and its true parameters; the default (``SimulationDesign()``)
        gives the demo dataset.
    seed : int
        Seed of the only random generator used, ``numpy.random.default_rng(seed)``.

    Returns
    -------
    SimulatedData
        The session table and the truth behind it: for a :class:`SimulationDesign` see
        :func:`alliance_analysis.data.simulate_sessions.draw`, for a :class:`PanelDesign`
        :func:`alliance_analysis.data.simulate_panel.draw`.
    """
    if isinstance(design, PanelDesign):
        sessions, truth = simulate_panel.draw(design, seed)
    else:
        sessions, truth = simulate_sessions.draw(design or SimulationDesign(), seed)
    return SimulatedData(sessions=sessions, truth=truth)


def write(sim: SimulatedData, out_dir: str | Path) -> dict[str, Path]:
    """Write ``sessions.csv`` and ``truth.json`` into `out_dir` (created if needed).

    The files are byte-identical for the same design and seed: Unix line endings, missing
    items as empty cells, JSON with sorted keys, two-space indent and floats rounded to 10
    significant digits.

    Returns
    -------
    dict
        ``{"sessions": path of sessions.csv, "truth": path of truth.json}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"sessions": out / "sessions.csv", "truth": out / "truth.json"}
    sim.sessions.to_csv(paths["sessions"], index=False, lineterminator="\n")
    text = json.dumps(_rounded(sim.truth), indent=2, sort_keys=True, ensure_ascii=False)
    paths["truth"].write_text(text + "\n", encoding="utf-8", newline="\n")
    return paths


def _rounded(value: Any) -> Any:
    """Floats rounded to SIGNIFICANT_DIGITS, recursively, for stable JSON across platforms."""
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(item) for item in value]
    if isinstance(value, float | np.floating):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, np.integer):
        return int(value)
    return value
