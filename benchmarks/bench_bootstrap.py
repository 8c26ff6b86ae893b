"""Benchmark the parametric bootstrap of a ``models:`` entry: serially and on Dask.

One simulated study of a typical size (20 therapists x 8 clients, up to 12 sessions, the
simulation's other defaults, without its planted faults, scored) and the README's
within-between growth model with a therapist intercept::

    phq9_total ~ I(session - 1) + wai_total_within_lag1 + wai_total_between
                 + (1 + I(session - 1) | client_id) + (1 | therapist_id)

are fitted once; then :func:`alliance_analysis.multilevel.bootstrap.bootstrap_random` runs
``--samples`` samples three ways:

- ``none``: serially in this process (``dask: none``);
- ``local``: on a Dask ``LocalCluster`` of ``--workers`` single-threaded processes
  (``dask: {scheduler: local}``), started and closed by the call, as a researcher's run
  does; its ``startup_seconds`` (an empty cluster started and closed, timed on its own) are
  taken out in ``seconds_running``;
- ``address``: on such a cluster already running, reached by its address
  (``dask: {scheduler: tcp://...}``).

The interval tables must be identical to the last bit (the script stops otherwise).
``seconds`` is wall-clock time of the call; ``cpu_seconds`` the CPU time it used in this
process plus (``address``) in the workers, which does not depend on what else the machine is
running (wall-clock does: ``load_average`` is the 1-minute load when the script started);
``speedup`` is serial seconds / these seconds.

Writes ``reports/bench/bootstrap.csv`` (and prints the table). Run from any directory::

    .venv/bin/python benchmarks/bench_bootstrap.py
    .venv/bin/python benchmarks/bench_bootstrap.py --samples 1000 --workers 4
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from bench_machine import write_table  # the benchmark folder is on sys.path when run
from bench_power import cluster_startup

from alliance_analysis.data.simulate import SimulationDesign
from alliance_analysis.multilevel.bootstrap import CHUNK_SIZE, bootstrap_random
from alliance_analysis.multilevel.specified import fit_model, prepare_model
from alliance_analysis.power.replicate import replicate_sessions
from alliance_analysis.specs import DaskSettings, ModelSpec
from alliance_analysis.stats.dask_runner import dask_client

if TYPE_CHECKING:
    from distributed import Client

ROOT = Path(__file__).resolve().parents[1]
DESIGN = {"therapists": 20, "clients_per_therapist": 8, "max_sessions": 12}
FORMULA = ("phq9_total ~ I(session - 1) + wai_total_within_lag1 + wai_total_between"
           " + (1 + I(session - 1) | client_id) + (1 | therapist_id)")
DATA_SEED, BOOTSTRAP_SEED = 7, 1


def timed_bootstrap(sessions: pd.DataFrame, samples: int, dask: DaskSettings | None,
                    chunk_size: int) -> tuple[pd.DataFrame, float, float]:
    """The bootstrap's interval table, the seconds it took and its CPU seconds here."""
    spec = ModelSpec(formula=FORMULA)
    prepared = prepare_model(sessions, "growth", spec)
    result = fit_model(sessions, "growth", spec)
    start, cpu = time.perf_counter(), time.process_time()
    table = bootstrap_random(prepared, result, reml=spec.reml, samples=samples,
                             seed=BOOTSTRAP_SEED, dask=dask, chunk_size=chunk_size)
    return table, time.perf_counter() - start, time.process_time() - cpu


def worker_cpu(client: Client) -> float:
    """CPU seconds used so far by every worker process of ``client``'s cluster."""
    return float(sum(client.run(time.process_time).values()))


def _import_bootstrap() -> bool:
    import alliance_analysis.multilevel.bootstrap  # noqa: F401

    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "reports" / "bench" / "bootstrap.csv")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    sessions = replicate_sessions(SimulationDesign(**DESIGN), DATA_SEED)
    common = {"rows": len(sessions), "clients": int(sessions["client_id"].nunique()),
              "samples": args.samples, "chunk_size": args.chunk_size}
    serial, seconds, cpu = timed_bootstrap(sessions, args.samples, None, args.chunk_size)
    rows = [{"scheduler": "none", "workers": 1, "seconds": seconds, "cpu_seconds": cpu,
             "startup_seconds": 0.0}]
    print(rows[-1], flush=True)
    local = DaskSettings(scheduler="local", workers=args.workers)
    on_dask, seconds, _ = timed_bootstrap(sessions, args.samples, local, args.chunk_size)
    pd.testing.assert_frame_equal(on_dask, serial, check_exact=True)
    rows.append({"scheduler": "local", "workers": args.workers, "seconds": seconds,
                 "cpu_seconds": float("nan"), "startup_seconds": cluster_startup(args.workers)})
    print(rows[-1], flush=True)
    with dask_client(local) as client:
        address = DaskSettings(scheduler=client.scheduler.address)
        client.run(_import_bootstrap)  # as a running cluster would have, from earlier work
        before = worker_cpu(client)
        on_dask, seconds, cpu = timed_bootstrap(sessions, args.samples, address,
                                                args.chunk_size)
        cpu += worker_cpu(client) - before
    pd.testing.assert_frame_equal(on_dask, serial, check_exact=True)
    rows.append({"scheduler": "address", "workers": args.workers, "seconds": seconds,
                 "cpu_seconds": cpu, "startup_seconds": 0.0})
    print(rows[-1], flush=True)
    table = pd.DataFrame([{**row, **common} for row in rows])
    table["seconds_running"] = table["seconds"] - table["startup_seconds"]
    table["samples_per_second"] = table["samples"] / table["seconds"]
    table["speedup"] = table["seconds"].iloc[0] / table["seconds"]
    table["speedup_running"] = table["seconds"].iloc[0] / table["seconds_running"]
    table["identical"] = True
    table["converged"] = int(serial["n_samples"].min())
    table["load_average"] = load
    write_table(table, args.out, f"design {DESIGN}")


if __name__ == "__main__":
    main()
