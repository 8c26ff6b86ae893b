"""Benchmark the demo report: ``alliance run params/demo.yaml`` end to end, as a user waits.

Each run is the command line in a fresh process (``.venv/bin/alliance run``), timed by the
wall clock from start to exit, into a new output folder. *Cold* runs start without the
processed folder and its cache (the first ``make report`` on a new machine: every
robustness specification is fitted); *warm* runs reuse the processed folder of the previous
run and its robustness cache (every later ``make report``). Runs alternate cold and warm so
that a busy moment of the machine does not fall on one kind only; the time is the median of
``--repeats`` runs of each kind. Per-stage seconds come from each run's ``manifest.json``
(medians). With ``--jobs`` several values (default 1 and the number of cores) are compared:
1 runs the stages one after the other, more run the stages after ``01_clean`` side by side.

Writes ``reports/bench/report.csv`` (one row per run) and ``report_stages.csv`` (medians of
the stage seconds) and prints the medians. Run from any directory::

    .venv/bin/python benchmarks/bench_report.py
    .venv/bin/python benchmarks/bench_report.py --repeats 1 --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ALLIANCE = Path(sys.executable).with_name("alliance")


def one_run(out: Path, processed: Path, jobs: int) -> tuple[float, dict[str, float]]:
    """Wall-clock seconds of one ``alliance run`` and the stage seconds of its manifest."""
    start = time.perf_counter()
    subprocess.run([str(ALLIANCE), "run", str(ROOT / "params" / "demo.yaml"), "--out", str(out),
                    "--processed", str(processed), "--jobs", str(jobs)],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    seconds = time.perf_counter() - start
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return seconds, manifest.get("seconds", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        for jobs in args.jobs:
            processed = Path(tmp) / f"processed-{jobs}"
            for repeat in range(args.repeats):
                for kind in ("cold", "warm"):
                    if kind == "cold":
                        shutil.rmtree(processed, ignore_errors=True)
                        shutil.rmtree(processed.with_name(processed.name + ".cache"),
                                      ignore_errors=True)
                    out = Path(tmp) / f"run-{jobs}-{repeat}-{kind}"
                    seconds, stages = one_run(out, processed, jobs)
                    rows.append({"jobs": jobs, "kind": kind, "repeat": repeat,
                                 "seconds": seconds, **{f"stage_{k}": v
                                                        for k, v in stages.items()}})
                    shutil.rmtree(out)
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "report.csv", index=False, lineterminator="\n")
    medians = table.drop(columns="repeat").groupby(["jobs", "kind"]).median().reset_index()
    medians.to_csv(args.out / "report_stages.csv", index=False, lineterminator="\n")
    print(f"\n{os.cpu_count()} cores; median of {args.repeats} runs each")
    print(medians.round(1).to_string(index=False))
    print(f"written to {args.out / 'report.csv'} and report_stages.csv")


if __name__ == "__main__":
    main()
