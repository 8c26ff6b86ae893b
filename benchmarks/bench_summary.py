"""Summarise ``make bench``: each speed target with what was measured, met or missed.

Reads what the other benchmark scripts wrote into ``reports/bench/`` (``bench_engine.csv``,
``bench_engine_big.csv``, ``power.csv``, ``sem.csv``, ``bootstrap.csv``, ``report_stages.csv``)
and writes ``reports/bench/summary.md`` (the machine, then one row per target: the measured
ratio or time, the target, met or not) and ``reports/bench/targets.png`` (each measured value
as a share of its target: below 1 is met). A target whose benchmark did not run (e.g. lme4 or
lavaan not installed) says so instead of a number. Nothing is timed here.

Run from any directory after the benchmarks::

    .venv/bin/python benchmarks/bench_summary.py
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from bench_machine import machine  # the benchmark folder is on sys.path when run

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measured:
    """One target and what the benchmarks measured for it."""

    target: str
    what: str
    value: float | None
    limit: float
    unit: str
    detail: str = ""
    #: A target that is a yes/no (identical results), not a limit on the value.
    passed: bool | None = None

    @property
    def met(self) -> str:
        if self.passed is not None:
            return "met" if self.passed else "MISSED"
        if self.value is None:
            return "not measured"
        if self.limit == float("inf"):
            return ""
        return "met" if self.value <= self.limit else "MISSED"


def machine_and_r() -> str:
    """:func:`bench_machine.machine` and the R, lme4 and lavaan versions the numbers used."""
    r = "R not installed"
    if shutil.which("Rscript"):
        script = ('cat(R.version.string, "; lme4", tryCatch(as.character(packageVersion('
                  '"lme4")), error=function(e) "absent"), "; lavaan", tryCatch(as.character('
                  'packageVersion("lavaan")), error=function(e) "absent"))')
        r = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True).stdout
    return f"{machine()}; {r.strip()}"


def _read(folder: Path, name: str) -> pd.DataFrame | None:
    path = folder / name
    return pd.read_csv(path) if path.is_file() else None


def power(folder: Path) -> list[Measured]:
    """Target 1 on the shipped study (``power_study.csv``, ``bench_power.py --study``); the
    replicates per second of ``power.csv`` beside it, for information."""
    out = []
    study = _read(folder, "power_study.csv")
    if study is None:
        out.append(Measured("1 Power on Dask", "shipped study: 2 workers' time / serial time",
                            None, 0.65, "x", "benchmarks/bench_power.py --study did not run"))
    else:
        local = study[study["scheduler"] == "local"].iloc[0]
        serial = study[study["scheduler"] == "none"].iloc[0]
        out.append(Measured(
            "1 Power on Dask", f"params/power.yaml, {int(local['design_points'])} design points "
            f"x {int(local['replicates']) // int(local['design_points'])} replicates: "
            f"{int(local['workers'])} workers' time / serial time",
            local["ratio_to_serial"] if bool(local["identical"]) else None, 0.65, "x",
            f"{serial['median_seconds']:.1f} s serial, {local['median_seconds']:.1f} s on Dask "
            f"(medians of {int((study['scheduler'] == 'local').sum())} runs, alternating, each "
            "a fresh process; cluster start included); identical replicates: "
            f"{bool(local['identical'])}"))
    table = _read(folder, "power.csv")
    if table is not None:
        for model, rows in table[table["engine"] == "engine"].groupby("model", sort=False):
            serial = rows.loc[rows["scheduler"] == "none", "seconds"].iloc[0]
            local = rows.loc[rows["scheduler"] == "local"].iloc[0]
            out.append(Measured(
                "1 Power on Dask", f"{model}, {int(local['replicates'])} replicates of one "
                "design: Dask time / serial time", local["seconds"] / serial, float("inf"), "x",
                f"{serial:.1f} s serial, {local['seconds']:.1f} s on Dask (start-up "
                f"{local['startup_seconds']:.1f} s)"))
    return out


def sem(folder: Path) -> list[Measured]:
    table = _read(folder, "sem.csv")
    if table is None or table["lavaan_seconds"].isna().all():
        return [Measured("2 SEM FIML vs lavaan", "ours / lavaan", None, 0.5, "x",
                         "benchmarks/bench_sem.py did not run, or lavaan is not installed")]
    return [Measured("2 SEM FIML vs lavaan", f"{row.model}: ours / lavaan", row.ratio, 0.5, "x",
                     f"{row.ours_seconds:.3f} s vs {row.lavaan_seconds:.3f} s, "
                     f"{int(row.patterns)} patterns")
            for row in table.itertuples() if "FIML" in row.model]


def engine(folder: Path) -> list[Measured]:
    table = _read(folder, "bench_engine.csv")
    if table is None or "ratio_to_lme4" not in table.columns:
        return [Measured("3 LMM vs lme4", "engine / lme4", None, 0.2, "x",
                         "benchmarks/bench_engine.py did not run")]
    rows = table[(table["method"] == "engine") & (table["rows"] >= 15_000)
                 & table["ratio_to_lme4"].notna()]
    if rows.empty:
        return [Measured("3 LMM vs lme4", "engine / lme4", None, 0.2, "x",
                         "no lme4 times (R or lme4 not installed)")]
    return [Measured("3 LMM vs lme4", f"{row.model}, {int(row.rows):,} rows: engine / lme4",
                     row.ratio_to_lme4, 0.2, "x", f"{row.seconds:.2f} s")
            for row in rows.itertuples()]


def big(folder: Path) -> list[Measured]:
    table = _read(folder, "bench_engine_big.csv")
    if table is None:
        return [Measured("4 10 million rows", "fits in one process", None, 24 * 1024, "MB",
                         "benchmarks/bench_engine.py --big did not run")]
    out = []
    for row in table.itertuples():
        if row.method == "engine":
            fitted = isinstance(row.converged, bool) or str(row.converged) == "True"
            out.append(Measured(
                "4 10 million rows", f"{int(row.rows):,} rows: peak memory",
                row.peak_rss_mb if fitted else None, 24 * 1024, "MB",
                f"{row.seconds:.0f} s" if fitted else str(row.note)))
        elif row.method == "lme4" and pd.notna(row.seconds):
            out.append(Measured("4 10 million rows", f"lme4 at {int(row.rows):,} rows: time",
                                row.seconds, float("inf"), "s", "for comparison"))
    return out


def report(folder: Path) -> list[Measured]:
    table = _read(folder, "report_stages.csv")
    if table is None:
        return [Measured("5 Demo report", "wall seconds", None, 20, "s",
                         "benchmarks/bench_report.py did not run")]
    return [Measured("5 Demo report", f"{row.kind} run, --jobs {int(row.jobs)}", row.seconds,
                     20, "s", "cold: first run, every robustness fit; warm: its cache reused")
            for row in table.itertuples()]


def bootstrap(folder: Path) -> list[Measured]:
    table = _read(folder, "bootstrap.csv")
    if table is None:
        return [Measured("6 Bootstrap on Dask", "results identical on Dask and serially", None,
                         float("inf"), "x", "benchmarks/bench_bootstrap.py did not run")]
    serial = table.loc[table["scheduler"] == "none", "seconds"].iloc[0]
    return [Measured("6 Bootstrap on Dask",
                     f"{int(row.workers)} workers: identical intervals; time / serial",
                     row.seconds / serial, float("inf"), "x",
                     f"{int(row.samples)} samples: {serial:.1f} s serial, {row.seconds:.1f} s "
                     f"on Dask (start-up {row.startup_seconds:.1f} s)",
                     passed=bool(row.identical))
            for row in table.itertuples() if row.scheduler != "none"]


def plot(measured: list[Measured], path: Path) -> None:
    """Each measured value as a share of its target (below 1: met)."""
    from matplotlib.figure import Figure

    shown = [m for m in measured if m.value is not None and m.limit != float("inf")]
    fig = Figure(figsize=(8, 0.35 * len(shown) + 1.2), layout="constrained")
    ax = fig.add_subplot()
    shares = [m.value / m.limit for m in shown]
    ax.barh(range(len(shown)), shares,
            color=["#029e73" if s <= 1 else "#d55e00" for s in shares])
    ax.axvline(1, color="0.2", linestyle="--", linewidth=1)
    ax.set_yticks(range(len(shown)), [f"{m.target}: {m.what}" for m in shown],
                  fontsize="small")
    ax.invert_yaxis()
    ax.set_xlabel("measured / target (below 1: target met)")
    fig.savefig(path, dpi=150, metadata={"Software": None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=ROOT / "reports" / "bench")
    args = parser.parse_args()
    measured = [*power(args.folder), *sem(args.folder), *engine(args.folder),
                *big(args.folder), *report(args.folder), *bootstrap(args.folder)]
    table = pd.DataFrame([{"target": m.target, "measured": m.what,
                           "value": "" if m.value is None else f"{m.value:.3g} {m.unit}",
                           "limit": "" if m.limit == float("inf") else f"{m.limit:g} {m.unit}",
                           "result": m.met,
                           "detail": m.detail} for m in measured])
    args.folder.mkdir(parents=True, exist_ok=True)
    text = ("# Speed targets (`make bench`)\n\nMachine: " + machine_and_r() + "\n\n"
            + table.to_markdown(index=False) + "\n")
    (args.folder / "summary.md").write_text(text, encoding="utf-8")
    plot(measured, args.folder / "targets.png")
    print(text)
    print(f"written to {args.folder / 'summary.md'} and targets.png")


if __name__ == "__main__":
    main()
