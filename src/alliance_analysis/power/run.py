"""Running the replicates of a power study: stored chunk by chunk, on Dask or serially.

Storage (what makes a run resumable)
------------------------------------
Each design point has its own folder ``<out>/replicates/p<point>-<key>/``, where ``key`` is a
hash of everything that decides its replicates' rows (package version, model, target,
engine, model options, alpha, root seed, the point's index and its full design). Each
finished chunk of replicates is written there as ``reps-<first>-<last>.parquet`` the moment
it completes (to a temporary name, then renamed, so a chunk file is whole or absent). A
rerun reads what is stored, computes only the replicates that are missing, and so resumes an
interrupted run, or extends a finished one when ``replicates`` grows. Change anything that
enters the key and the point gets a new folder: stored rows are never mixed with rows of a
different study. Rows are read back in ``(point, replicate)`` order, so the results do not
depend on which chunks were stored in which run.

Execution
---------
``dask.scheduler: none`` runs the chunks one after another in this process; ``local``
starts a :class:`distributed.LocalCluster` of single-threaded worker processes (one per
core unless ``dask.workers``); an address connects to a running scheduler. The client and
the cluster are closed whatever happens (``try/finally``), also on Ctrl-C. Chunks are
stored by this process as they come back, so workers need no shared file system. The
machinery (client, chunks, progress bar) is shared with the specification curve and the
parametric bootstrap: :mod:`alliance_analysis.stats.dask_runner` (:func:`dask_client` and
:func:`progress_bar` are importable from here as before).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from alliance_analysis import __version__
from alliance_analysis.power.params import PowerParams
from alliance_analysis.power.replicate import REPLICATE_COLUMNS, ReplicateSpec, run_chunk
from alliance_analysis.data.simulate import SimulationDesign
from alliance_analysis.stats.dask_runner import (  # dask_client, progress_bar: re-exported
    dask_client,
    optional_client,
    progress_bar,
    run_chunks,
)

__all__ = ["Chunk", "ExecutionCounts", "all_rows", "dask_client", "execute", "missing_chunks",
           "point_folder", "progress_bar", "replicate_spec", "store_chunk", "stored_rows"]


@dataclass(frozen=True)
class Chunk:
    """Replicates of one design point computed (and stored) together."""

    point: int
    folder: Path
    replicates: tuple[int, ...]

    @property
    def file(self) -> Path:
        return self.folder / f"reps-{self.replicates[0]:05d}-{self.replicates[-1]:05d}.parquet"


@dataclass(frozen=True)
class ExecutionCounts:
    """How many replicates a call computed and how many it found stored."""

    computed: int
    reused: int


def replicate_spec(params: PowerParams) -> ReplicateSpec:
    """What every replicate of the study fits and how it is judged."""
    return ReplicateSpec(params.model, params.target_term(), params.engine, params.multilevel,
                         params.alpha, params.seed)


def point_folder(params: PowerParams, point: int, design: SimulationDesign) -> Path:
    """The folder of design point ``point``'s stored chunks (see the module notes)."""
    identity = {"version": __version__, "model": params.model, "target": params.target_term(),
                "engine": params.engine, "options": params.multilevel.model_dump(mode="json"),
                "alpha": params.alpha, "seed": params.seed, "point": point,
                "design": design.model_dump(mode="json")}
    text = json.dumps(identity, sort_keys=True)
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return params.output_dir() / "replicates" / f"p{point:03d}-{key}"


def stored_rows(folder: Path) -> pd.DataFrame:
    """Every replicate row stored in ``folder``, in replicate order (empty if none)."""
    files = sorted(folder.glob("reps-*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(REPLICATE_COLUMNS))
    rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    return rows.sort_values("replicate", kind="stable").reset_index(drop=True)


def missing_chunks(params: PowerParams, designs: Sequence[SimulationDesign]) -> list[Chunk]:
    """The chunks of replicates ``0..replicates-1`` not yet stored, point by point."""
    chunks = []
    for point, design in enumerate(designs):
        folder = point_folder(params, point, design)
        done = set(stored_rows(folder)["replicate"].astype(int))
        todo = [r for r in range(params.replicates) if r not in done]
        chunks += [Chunk(point, folder, tuple(todo[k:k + params.chunk_size]))
                   for k in range(0, len(todo), params.chunk_size)]
    return chunks


def store_chunk(chunk: Chunk, rows: pd.DataFrame) -> Path:
    """Write one chunk's rows atomically (temporary file, then rename); return the path."""
    chunk.folder.mkdir(parents=True, exist_ok=True)
    partial = chunk.file.with_suffix(".partial")
    rows.to_parquet(partial, index=False)
    os.replace(partial, chunk.file)
    return chunk.file


def all_rows(params: PowerParams, designs: Sequence[SimulationDesign]) -> pd.DataFrame:
    """The stored rows of replicates ``0..replicates-1`` of every point, in order."""
    parts = []
    for point, design in enumerate(designs):
        rows = stored_rows(point_folder(params, point, design))
        parts.append(rows[rows["replicate"] < params.replicates])
    return pd.concat(parts, ignore_index=True)


def execute(params: PowerParams, designs: Sequence[SimulationDesign],
            progress: bool = True) -> ExecutionCounts:
    """Compute and store every replicate that is not stored yet.

    Parameters
    ----------
    params
        The study.
    designs
        Its design points (:meth:`PowerParams.design_points`).
    progress
        Show a progress bar of the replicates to compute (on standard error).

    Returns
    -------
    ExecutionCounts
        Replicates computed now, and replicates found already stored.
    """
    chunks = missing_chunks(params, designs)
    computed = sum(len(c.replicates) for c in chunks)
    counts = ExecutionCounts(computed, params.replicates * len(designs) - computed)
    if not chunks:
        return counts
    spec = replicate_spec(params)

    def store(index: int, rows: pd.DataFrame) -> None:
        store_chunk(chunks[index], rows)
        advance(len(chunks[index].replicates))

    calls = [(designs[c.point], c.point, c.replicates) for c in chunks]
    keys = [f"power-{c.file.parent.name}-{c.replicates[0]}" for c in chunks]
    with (progress_bar(computed, counts.reused, progress) as advance,
          optional_client(params.dask) as client):
        run_chunks(run_chunk, calls, (spec,), client=client, keys=keys, on_done=store)
    return counts
