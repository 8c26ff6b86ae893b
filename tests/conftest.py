"""Shared fixtures: paths of the project and a small dataset for end-to-end runs."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    """The project's top-level folder."""
    return ROOT


def write_params(folder: Path, data: Path, name: str = "t", extra: str = "") -> Path:
    """Write a minimal parameters file pointing at ``data``; returns its path."""
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ndata:\n  path: {data}\n{extra}", encoding="utf-8")
    return path


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    """A small simulated study (6 therapists x 5 clients, with the planted faults) as CSV."""
    from alliance_analysis.simulate import SimulationDesign, simulate, write

    design = SimulationDesign(therapists=6, clients_per_therapist=5, max_sessions=10)
    return write(simulate(design, seed=3), tmp_path / "study")["sessions"]
