"""Benchmark Monte Carlo power replicates: the nested engine against statsmodels (issue 11).

For a typical planned study (20 therapists x 8 clients, up to 12 sessions, the simulation's
other defaults) it times :func:`alliance_analysis.power.study.run_power` from an empty output
folder, for each model (``within_between``, ``therapist_alliance``) and engine (``engine``,
``statsmodels``), serially (``dask.scheduler: none``) and on a Dask ``LocalCluster`` of
``--workers`` single-threaded processes. A replicate is the whole job: simulate, drop the
planted faults, score, fit (two fits for ``therapist_alliance``), store. Replicates per
second = replicates / wall-clock seconds of the whole run, as a user sees it: for the cluster
that includes starting and closing it, which is also timed on its own (``startup_seconds``,
an empty cluster started and closed) and taken out in ``replicates_per_second_running``.

``--study`` also times the shipped study of ``params/power.yaml`` with ``--study-replicates``
replicates per design point (default 60: 6 design points x 60 replicates, the study of the
speed issue), serially and on the local cluster, ``--study-repeats`` times each (default 3),
alternating serial and cluster runs so that a machine that slows down or speeds up during
the benchmark does not favour either; it asserts that every run gives the same replicate
results and writes ``reports/bench/power_study.csv`` (one row per run) with the medians'
ratio: the target is the cluster's time at most 0.65 of the serial time.

Every timed run is a fresh Python process (this script with ``--one``), as ``alliance
power`` is: a local cluster then starts its fork server from nothing (a second cluster in
one process would find it running and start its workers in a fraction of the time). The
time is that of :func:`~alliance_analysis.power.study.run_power` in that process, after its
imports, as before.

Writes ``reports/bench/power.csv`` (and prints the table). Run from any directory::

    .venv/bin/python benchmarks/bench_power.py
    .venv/bin/python benchmarks/bench_power.py --engine-replicates 100 --workers 4
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import pandas as pd
from bench_machine import write_table  # the benchmark folder is on sys.path when run

from alliance_analysis.power.params import DaskSettings, parse_power_params
from alliance_analysis.power.study import run_power
from alliance_analysis.stats.dask_runner import dask_client

ROOT = Path(__file__).resolve().parents[1]
DESIGN = {"therapists": 20, "clients_per_therapist": 8, "max_sessions": 12}
MODELS = ("within_between", "therapist_alliance")


def in_fresh_process(*arguments: str) -> float:
    """Run this script with ``arguments`` in a new Python process; the seconds it prints."""
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the timed run failed:\n{done.stderr}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def timed_run(raw: dict[str, object], folder: Path) -> float:
    """Seconds of one power study (parameters ``raw``, relative to ``folder``) run from an
    empty output folder in a fresh process; its replicates are left in ``<out>.parquet``."""
    return in_fresh_process("--one", json.dumps(raw), str(folder))


def one_run(raw: dict[str, object], folder: Path) -> None:
    """The body of ``--one``: time ``run_power`` here, print ``{"seconds": ...}``."""
    params = parse_power_params(raw, folder)
    start = time.perf_counter()
    result = run_power(params, progress=False)
    seconds = time.perf_counter() - start
    result.replicates.to_parquet(folder / f"{raw['out']}.parquet", index=False)
    print(json.dumps({"seconds": seconds}))


def time_study(model: str, engine: str, scheduler: str, workers: int, replicates: int,
               folder: Path) -> dict[str, object]:
    """Run one power study from scratch; its timing as one table row."""
    dask = {"scheduler": scheduler, **({"workers": workers} if scheduler == "local" else {})}
    out = f"{model}-{engine}-{scheduler}"
    seconds = timed_run({"model": model, "engine": engine, "design": DESIGN,
                         "replicates": replicates,
                         "chunk_size": max(1, replicates // (2 * workers)), "dask": dask,
                         "out": out}, folder)
    rows = pd.read_parquet(folder / f"{out}.parquet")
    return {"model": model, "engine": engine, "scheduler": scheduler,
            "workers": workers if scheduler == "local" else 1, "replicates": replicates,
            "seconds": seconds, "replicates_per_second": replicates / seconds,
            "convergence_rate": float(rows["converged"].mean())}


def time_shipped_study(workers: int, replicates: int, repeats: int,
                       folder: Path) -> pd.DataFrame:
    """The study of ``params/power.yaml`` serially and on ``workers`` local workers,
    ``repeats`` times each, alternating; one row per run, the medians' ratio on each."""
    raw = yaml.safe_load((ROOT / "params" / "power.yaml").read_text(encoding="utf-8"))
    rows, reference = [], None
    for repeat in range(repeats):
        for scheduler in ("none", "local"):
            dask = {"scheduler": scheduler,
                    **({"workers": workers} if scheduler == "local" else {})}
            out = f"study-{scheduler}-{repeat}"
            seconds = timed_run({**raw, "replicates": replicates, "dask": dask, "out": out},
                                folder)
            replicates_table = pd.read_parquet(folder / f"{out}.parquet")
            reference = replicates_table if reference is None else reference
            rows.append({"study": "params/power.yaml", "scheduler": scheduler,
                         "workers": workers if scheduler == "local" else 1, "repeat": repeat,
                         "design_points": int(replicates_table["point"].nunique()),
                         "replicates": len(replicates_table), "seconds": seconds,
                         "identical": replicates_table.equals(reference)})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    medians = table.groupby("scheduler")["seconds"].median()
    table["median_seconds"] = table["scheduler"].map(medians)
    table["ratio_to_serial"] = table["median_seconds"] / medians["none"]
    table["identical"] = bool(table["identical"].all())
    return table


def cluster_startup(workers: int) -> float:
    """Seconds to start and close an empty LocalCluster of ``workers`` processes in a fresh
    process (its fork server started from nothing), every worker up."""
    return in_fresh_process("--startup", str(workers))


def one_startup(workers: int) -> None:
    """The body of ``--startup``: time a cluster's start and close here, print the seconds."""
    start = time.perf_counter()
    with dask_client(DaskSettings(scheduler="local", workers=workers)):
        pass  # dask_client returns once every worker of a new local cluster is up
    print(json.dumps({"seconds": time.perf_counter() - start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine-replicates", type=int, default=200)
    parser.add_argument("--statsmodels-replicates", type=int, default=40)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench" / "power.csv")
    parser.add_argument("--study", action="store_true",
                        help="also time the shipped study of params/power.yaml")
    parser.add_argument("--study-replicates", type=int, default=60)
    parser.add_argument("--study-repeats", type=int, default=3)
    parser.add_argument("--study-only", action="store_true", help="only the shipped study")
    parser.add_argument("--one", nargs=2, metavar=("PARAMS_JSON", "FOLDER"),
                        help=argparse.SUPPRESS)  # one timed run (timed_run's child process)
    parser.add_argument("--startup", type=int, help=argparse.SUPPRESS)  # cluster_startup's
    args = parser.parse_args()
    if args.one:
        one_run(json.loads(args.one[0]), Path(args.one[1]))
        return
    if args.startup:
        one_startup(args.startup)
        return
    if args.study or args.study_only:
        with tempfile.TemporaryDirectory(prefix="bench-power-study-") as tmp:
            study = time_shipped_study(args.workers, args.study_replicates,
                                       args.study_repeats, Path(tmp))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        study.to_csv(args.out.with_name("power_study.csv"), index=False, lineterminator="\n")
        print(study.round(3).to_string(index=False), flush=True)
        if args.study_only:
            return
    counts = {"engine": args.engine_replicates, "statsmodels": args.statsmodels_replicates}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-power-") as tmp:
        for model in MODELS:
            for engine, replicates in counts.items():
                for scheduler in ("none", "local"):
                    rows.append(time_study(model, engine, scheduler, args.workers,
                                           replicates, Path(tmp)))
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    startup = cluster_startup(args.workers)
    table["startup_seconds"] = [startup if s == "local" else 0.0 for s in table["scheduler"]]
    table["replicates_per_second_running"] = (table["replicates"]
                                              / (table["seconds"] - table["startup_seconds"]))
    serial = table[(table["engine"] == "statsmodels") & (table["scheduler"] == "none")]
    baseline = serial.set_index("model")["replicates_per_second"]
    table["speedup_vs_statsmodels_serial"] = (table["replicates_per_second"]
                                              / table["model"].map(baseline))
    write_table(table, args.out, f"design {DESIGN}")


if __name__ == "__main__":
    main()
