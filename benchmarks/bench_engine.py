"""Benchmark the nested mixed-model engine against statsmodels and lme4 (project issue 10).

Fits ``symptoms ~ session + alliance_within_lag + alliance_between + (1 + session | client)``
by REML on seeded datasets (:mod:`bench_data`) of 1,000 to 200,000 rows with

* ``engine``: :func:`alliance_analysis.multilevel.engine.nested.fit_nested`, end to end from the DataFrame
  (validation, sorting, sufficient statistics, optimisation, SEs and the covariance of the
  variance parameters);
* ``statsmodels default`` and ``statsmodels lbfgs``: ``MixedLM.from_formula(...).fit(reml=True)``
  with its default optimizer chain, and with ``method="lbfgs"`` (model construction included);
* ``lme4``: ``lmer`` with its defaults through ``Rscript`` (``bench_lme4.R``), when R and
  lme4 are installed (skipped with a note otherwise); only the ``lmer`` call is timed.

Each Python fit runs in a fresh process (``multiprocessing`` spawn), so imports and caches
are outside the timing and every method starts from the same state; the time is the median
of ``--repeats`` fits (statsmodels: one fit), after an untimed warm-up fit on 300 rows.
``cpu_seconds`` is the median CPU time of the same fits (user + system of the whole process,
every thread; R's ``system.time`` user + system for lme4) and ``cpu_ratio_to_lme4`` its ratio:
on a machine busy with other work, elapsed times depend on what else ran at that moment, CPU
times much less (the two ratios agree on an idle machine, the engine being single-threaded
and lme4 too). Peak
memory is the growth of the process's peak resident set over the timed fits (Linux, reset
through ``/proc/self/clear_refs``; ``tracemalloc``'s peak elsewhere): a few MB are at the
resolution of this measure. lme4 reports the growth of R's ``gc()`` "max used" over its fits.

Estimates are compared with a tight lme4 fit (bobyqa, ``rhoend = 1e-10``; untimed, the row
``lme4 tight``), or with the engine's without R: the largest relative difference of the
fixed effects and of the variance components, and the difference in REML log-likelihood.

statsmodels' default fit takes minutes above 100,000 rows, so it is skipped above
``--statsmodels-default-max-rows`` (default 100,000; the skip is written in the table).
Two more models are fitted (engine and lme4 only; ``--two-level-only`` skips both):

* ``three-level``: ``+ (1 | therapist_id)`` (statsmodels cannot express it with a correlated
  client intercept and slope);
* ``factor-interaction``: ``phq9 ~ session * C(arm) + alliance_within + (1 + session ||
  client_id) + (1 | therapist_id)``, a treatment factor, its interaction with time and
  independent client effects, as researchers write it in ``models:``. The engine's time is
  that of :func:`alliance_analysis.multilevel.specified.fit_model` with a
  :class:`~alliance_analysis.options.ModelSpec` (the path users take: derived columns, the
  formulaic design, the fit, Satterthwaite df and R2); lme4 fits ``phq9 ~ session * arm +
  alliance_within + (1 + session || client_id) + (1 | therapist_id)``. Fixed-effect names
  are compared as lme4 writes them (``C(arm)[T.PDT]`` is ``armPDT``).

``--big`` benchmarks scale instead: the two-level model on 1,000,000 rows (50,000 clients)
and 10,000,000 rows (500,000 clients, 20 sessions each on average), the engine in a fresh
process with its time and peak memory, lme4 beside it up to ``--lme4-max-rows`` (default
1,000,000). Its results go to ``bench_engine_big.csv`` and ``.md`` (one fit each unless
``--repeats`` is given). ``peak_rss_mb`` is the process's whole peak resident set (Python,
the libraries and the data included), the figure that must fit in the machine's memory.

Run from any directory::

    .venv/bin/python benchmarks/bench_engine.py            # writes reports/bench/
    .venv/bin/python benchmarks/bench_engine.py --sizes 1000 15000 --no-lme4
    .venv/bin/python benchmarks/bench_engine.py --big      # 1M and 10M rows (~15 min)
"""

from __future__ import annotations

import argparse
import json
import re
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_data import model_rows  # noqa: E402  (the benchmark folder is not a package)
from bench_machine import machine  # noqa: E402

#: (rows, clients) of each size, as in project issue 10's table; 1,000 and 50,000 rows added.
CLIENTS = {1_000: 67, 15_000: 1_000, 50_000: 2_500, 100_000: 5_000, 200_000: 10_000}
#: (rows, clients) of ``--big``: 20 sessions per client on average.
BIG = {1_000_000: 50_000, 10_000_000: 500_000}
OUTCOME = "symptoms"
FIXED = ("session", "alliance_within_lag", "alliance_between")
TWO_LEVEL = f"{OUTCOME} ~ {' + '.join(FIXED)} + (1 + session | client_id)"
THREE_LEVEL = TWO_LEVEL + " + (1 | therapist_id)"
#: The factor model as ``models:`` states it, and as lme4 writes it.
FACTOR = ("phq9 ~ session * C(arm) + alliance_within + (1 + session || client_id) "
          "+ (1 | therapist_id)")
FACTOR_LME4 = FACTOR.replace("C(arm)", "arm")
#: Model name -> lme4 formula.
MODELS = {"two-level": TWO_LEVEL, "three-level": THREE_LEVEL, "factor-interaction": FACTOR_LME4}
PYTHON_METHODS = ("engine", "statsmodels default", "statsmodels lbfgs")


@dataclass(frozen=True)
class Run:
    """One method on one dataset: timings, memory and estimates (or why it was skipped)."""

    model: str
    rows: int
    clients: int
    method: str
    seconds: float = float("nan")
    cpu_seconds: float = float("nan")
    peak_mb: float = float("nan")
    peak_rss_mb: float = float("nan")
    loglik: float = float("nan")
    fixed: dict[str, float] | None = None
    variances: dict[str, float] | None = None
    converged: bool | None = None
    evaluations: int | None = None
    note: str = ""


# -- the fits, each in a fresh process -------------------------------------------------------

def _engine(data: pd.DataFrame, model: str) -> dict[str, Any]:
    from alliance_analysis.multilevel.engine.nested import fit_nested
    from alliance_analysis.multilevel.specified import fit_model
    from alliance_analysis.options import ModelSpec

    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        if model == "factor-interaction":
            result = fit_model(data, "bench", ModelSpec(formula=FACTOR))
        else:
            result = fit_nested(data, OUTCOME, list(FIXED), random=["1", "session"],
                                client="client_id",
                                therapist="therapist_id" if model == "three-level" else None)
    table = result.extra["variance_components"]
    keys = [":".join(str(v) for v in (row.level, row.term, row.term2) if isinstance(v, str))
            for row in table.itertuples()]
    return {"loglik": result.fit["loglik"],
            "fixed": {_canonical(term): value for term, value
                      in zip(result.params["term"], result.params["estimate"], strict=True)},
            "variances": dict(zip(keys, table["vcov"], strict=True)),
            "converged": bool(result.fit["converged"]),
            "evaluations": int(result.fit["evaluations"]),
            "note": "; ".join(result.fit["warnings"])}


def _statsmodels(data: pd.DataFrame, method: str | None) -> dict[str, Any]:
    from statsmodels.regression.mixed_linear_model import MixedLM

    formula = f"{OUTCOME} ~ {' + '.join(FIXED)}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MixedLM.from_formula(formula, data, groups="client_id", re_formula="~session")
        result = model.fit(reml=True, **({"method": method} if method else {}))
    cov = result.cov_re.to_numpy()
    fixed = {("(Intercept)" if k == "Intercept" else k): v for k, v in result.fe_params.items()}
    return {"loglik": float(result.llf), "fixed": fixed,
            "variances": {"client:(Intercept)": cov[0, 0], "client:session": cov[1, 1],
                          "client:(Intercept):session": cov[0, 1], "residual": result.scale},
            "converged": bool(result.converged),
            "note": "; ".join(sorted({str(w.message)[:80] for w in caught}))}


def _canonical(term: str) -> str:
    """A fixed-effect name as lme4 writes it: ``C(arm)[T.PDT]`` -> ``armPDT``, the parts of an
    interaction in sorted order (formulaic and R may order them differently)."""
    parts = [re.sub(r"^C\((\w+)\)\[T\.(.+)\]$", r"\1\2", part) for part in term.split(":")]
    return ":".join(sorted(parts))


def _fitter(method: str, model: str) -> Callable[[pd.DataFrame], dict[str, Any]]:
    if method == "engine":
        return lambda data: _engine(data, model)
    return lambda data: _statsmodels(data, "lbfgs" if method.endswith("lbfgs") else None)


def _child(method: str, model: str, path: str, repeats: int, conn: Any) -> None:
    """Fit in this fresh process and send back times, peak memory and estimates."""
    fit = _fitter(method, model)
    data = pd.read_pickle(path)
    fit(data.head(300))  # imports and first-call set-up, outside the timing
    memory = _PeakMemory()
    times, cpu, out = [], [], {}
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fit(data)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    conn.send({**out, "seconds": statistics.median(times),
               "cpu_seconds": statistics.median(cpu), "peak_mb": memory.peak_mb(),
               "peak_rss_mb": memory.peak_rss_mb()})


class _PeakMemory:
    """Growth of the peak resident set from now (Linux), or tracemalloc's peak."""

    def __init__(self) -> None:
        self.proc = Path("/proc/self/clear_refs")
        if self.proc.exists():
            self.proc.write_text("5")  # reset VmHWM to the current resident set
            self.start = self._status("VmRSS")
        else:
            tracemalloc.start()

    @staticmethod
    def _status(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return float(line.split()[1]) / 1024
        raise KeyError(field)

    def peak_mb(self) -> float:
        if self.proc.exists():
            return self._status("VmHWM") - self.start
        return tracemalloc.get_traced_memory()[1] / 2**20

    def peak_rss_mb(self) -> float:
        """The process's peak resident set since the reset (Linux; NaN elsewhere)."""
        return self._status("VmHWM") if self.proc.exists() else float("nan")


def _run_python(method: str, model: str, path: Path, repeats: int,
                timeout: float) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(method, model, str(path), repeats, send))
    process.start()
    try:
        if not receive.poll(timeout):
            process.kill()
            return {"note": f"stopped after {timeout:.0f} s (--timeout)"}
        return receive.recv()
    finally:
        process.join()


def _run_lme4(formula: str, csv: Path, repeats: int,
              timeout: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """lme4's timed default fits and its untimed tight fit (or two notes of why not)."""
    out = csv.with_suffix(".lme4.json")
    try:
        subprocess.run(["Rscript", str(HERE / "bench_lme4.R"), str(csv), formula, str(repeats),
                        str(out)], check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        note = {"note": f"stopped after {timeout:.0f} s (--timeout)"}
        return note, note
    except subprocess.CalledProcessError as error:
        note = {"note": f"Rscript failed: {error.stderr.strip()[-200:]}"}
        return note, note
    result = json.loads(out.read_text())
    times = np.atleast_1d(result["times"])  # one fit: a number in the JSON
    timed = {"seconds": float(np.median(times)),
             "cpu_seconds": float(np.median(np.atleast_1d(result.get("cpu", np.nan)))),
             "peak_mb": result["peak_mb"],
             **_lme4_estimates(result), "version": result["version"]}
    tight = {**_lme4_estimates(result["reference"]),
             "note": "untimed bobyqa fit (rhoend 1e-10): the reference of the differences"}
    return timed, tight


def _lme4_estimates(fit: dict[str, Any]) -> dict[str, Any]:
    """Estimates of one lme4 fit, with the engine's names of the variance components."""
    rename = {"client_id": "client", "therapist_id": "therapist"}
    variances = {}
    for key, value in fit["variances"].items():
        group, _, rest = key.partition(":")
        group = re.sub(r"\.\d+$", "", group)  # lme4's client_id.1 of a || term
        variances[":".join(filter(None, (rename.get(group, group), rest)))] = value
    fixed = {_canonical(term): value for term, value in fit["fixed"].items()}
    return {"loglik": fit["loglik"], "fixed": fixed, "variances": variances,
            "converged": fit["converged"], "note": "; ".join(fit["warnings"])[:200]}


def lme4_available() -> str:
    """Why lme4 cannot be used, or '' when it can."""
    if shutil.which("Rscript") is None:
        return "Rscript not found: lme4 skipped"
    check = subprocess.run(["Rscript", "-e", "library(lme4); library(jsonlite)"],
                           capture_output=True, text=True)
    return "" if check.returncode == 0 else "R package lme4 or jsonlite missing: lme4 skipped"


# -- the benchmark -----------------------------------------------------------------------------

def benchmark(args: argparse.Namespace) -> tuple[list[Run], str]:
    """Every method on every size; returns the runs and the lme4 version (or skip note)."""
    skip_lme4 = "--no-lme4 given: lme4 skipped" if args.no_lme4 else lme4_available()
    lme4_version = skip_lme4
    models = ["two-level"] + ([] if args.two_level_only or args.big
                              else ["three-level", "factor-interaction"])
    sizes = args.sizes or list(BIG if args.big else CLIENTS)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for rows in sizes:
            clients = {**CLIENTS, **BIG}.get(rows, max(2, rows // 20))
            pickle, csv = Path(folder) / f"{rows}.pkl", Path(folder) / f"{rows}.csv"
            data = model_rows(rows, clients)
            data.to_pickle(pickle)
            if not skip_lme4 and rows <= args.lme4_max_rows:
                data.to_csv(csv, index=False)
            del data  # the fits read the pickle in their own processes
            for model in models:
                for method in (*PYTHON_METHODS, "lme4"):
                    print(f"{model:18s} {rows:>10,d} rows  {method:20s}", end=" ", flush=True)
                    fits, version = _fit(method, model, rows, clients, pickle, csv,
                                         skip_lme4, args)
                    lme4_version = version or lme4_version
                    print(f"{fits[0].seconds:8.3f} s  {fits[0].peak_rss_mb:8.0f} MB  "
                          f"{fits[0].note[:60]}")
                    runs += fits
            pickle.unlink()
            csv.unlink(missing_ok=True)
    return runs, lme4_version


def _fit(method: str, model: str, rows: int, clients: int, pickle: Path, csv: Path,
         skip_lme4: str, args: argparse.Namespace) -> tuple[list[Run], str]:
    """The runs of one method on one dataset (lme4: timed and tight), and lme4's version."""
    note = _skip(method, rows, model, skip_lme4, args)
    if note:
        return [Run(model, rows, clients, method, note=note)], ""
    if method == "lme4":
        timed, tight = _run_lme4(MODELS[model], csv, args.repeats, args.timeout)
        version = timed.pop("version", "")
        return [Run(model, rows, clients, method, **timed),
                Run(model, rows, clients, "lme4 tight", **tight)], version
    out = _run_python(method, model, pickle, args.repeats if method == "engine" else 1,
                      args.timeout)
    return [Run(model, rows, clients, method, **out)], ""


def _skip(method: str, rows: int, model: str, skip_lme4: str,
          args: argparse.Namespace) -> str:
    if method == "lme4":
        if not skip_lme4 and rows > args.lme4_max_rows:
            return f"skipped above {args.lme4_max_rows:,d} rows (--lme4-max-rows)"
        return skip_lme4
    if args.big and method.startswith("statsmodels"):
        return "statsmodels not run with --big"
    if args.no_statsmodels and method.startswith("statsmodels"):
        return "--no-statsmodels given: statsmodels skipped"
    if model == "three-level" and method.startswith("statsmodels"):
        return "statsmodels cannot fit a correlated client intercept and slope in therapists"
    if model == "factor-interaction" and method.startswith("statsmodels"):
        return "statsmodels: not run for the factor model (engine and lme4 only)"
    if method == "statsmodels default" and rows > args.statsmodels_default_max_rows:
        return (f"skipped above {args.statsmodels_default_max_rows:,d} rows "
                "(--statsmodels-default-max-rows)")
    return ""


def table(runs: list[Run]) -> pd.DataFrame:
    """One row per run, with differences from lme4's estimates (or the engine's)."""
    rows = []
    for run in runs:
        reference = _reference(runs, run)
        rows.append({
            "model": run.model, "rows": run.rows, "clients": run.clients, "method": run.method,
            "seconds": run.seconds, "peak_mb": run.peak_mb, "peak_rss_mb": run.peak_rss_mb,
            "ratio_to_lme4": run.seconds / _seconds(runs, run, "lme4"),
            "cpu_seconds": run.cpu_seconds,
            "cpu_ratio_to_lme4": run.cpu_seconds / _seconds(runs, run, "lme4", "cpu_seconds"),
            "loglik": run.loglik, "converged": run.converged, "evaluations": run.evaluations,
            "reference": reference.method if reference else "",
            "loglik_minus_reference": run.loglik - reference.loglik if reference else np.nan,
            "max_rel_diff_fixed": _max_rel(run.fixed, reference.fixed if reference else None),
            "max_rel_diff_variances": _max_rel(run.variances,
                                               reference.variances if reference else None),
            "note": run.note,
        })
    return pd.DataFrame(rows)


def _reference(runs: list[Run], run: Run) -> Run | None:
    for method in ("lme4 tight", "engine"):
        for other in runs:
            if (other.model, other.rows, other.method) == (run.model, run.rows, method) \
                    and other.fixed and other is not run:
                return other
    return None


def _seconds(runs: list[Run], run: Run, method: str, field: str = "seconds") -> float:
    return next((getattr(r, field) for r in runs if (r.model, r.rows, r.method)
                 == (run.model, run.rows, method)), float("nan"))


def _max_rel(ours: dict[str, float] | None, reference: dict[str, float] | None) -> float:
    if not ours or not reference:
        return float("nan")
    return max(abs(ours.get(k, np.nan) - v) / abs(v) for k, v in reference.items())


def plot(results: pd.DataFrame, path: Path) -> None:
    """Log-log plot of fit time against rows, one line per model and method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for (model, method), group in results.dropna(subset=["seconds"]).groupby(
            ["model", "method"], sort=False):
        axes.loglog(group["rows"], group["seconds"], marker="o",
                    linestyle={"two-level": "-", "three-level": "--"}.get(model, ":"),
                    label=f"{method} ({model})")
    sizes = np.array(sorted(results["rows"].unique()), dtype=float)
    axes.loglog(sizes, sizes / sizes[-1], color="0.8", linewidth=4, zorder=0,
                label="linear in rows (slope 1)")
    axes.set_xlabel("session rows")
    axes.set_ylabel("fit time (s)")
    axes.set_title("REML fits of symptoms ~ session + alliance + (1 + session | client)\n"
                   "dashed: + (1 | therapist); dotted: the factor-interaction model",
                   fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write(results: pd.DataFrame, out: Path, header: list[str], stem: str = "bench_engine"
          ) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / f"{stem}.csv", index=False)
    shown = results.drop(columns=["note", "reference"]).copy()
    markdown = shown.to_markdown(index=False, floatfmt=".4g")
    notes = [f"- {r.model}, {r.rows:,d} rows, {r.method}: {r.note}"
             for r in results.itertuples() if r.note]
    text = "\n".join(header) + "\n\n" + markdown + "\n\nNotes:\n\n" + "\n".join(notes) + "\n"
    (out / f"{stem}.md").write_text(text, encoding="utf-8")
    plot(results, out / f"{stem}.png")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None,
                        help=f"numbers of rows (default: {list(CLIENTS)}; with --big "
                        f"{list(BIG)})")
    parser.add_argument("--repeats", type=int, default=None,
                        help="fits per size for the engine and lme4; the median is reported "
                        "(default 3; 1 with --big)")
    parser.add_argument("--big", action="store_true",
                        help="the two-level model at 1,000,000 and 10,000,000 rows, with peak "
                        "memory; writes bench_engine_big.*")
    parser.add_argument("--lme4-max-rows", type=int, default=None,
                        help="skip lme4 above this many rows (default: 1,000,000 with --big, "
                        "no limit otherwise)")
    parser.add_argument("--statsmodels-default-max-rows", type=int, default=100_000,
                        help="skip statsmodels' default fit above this many rows")
    parser.add_argument("--two-level-only", action="store_true",
                        help="skip the three-level model with + (1 | therapist)")
    parser.add_argument("--no-lme4", action="store_true", help="do not call Rscript")
    parser.add_argument("--no-statsmodels", action="store_true",
                        help="engine and lme4 only")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before one method's fits are stopped (default 600; "
                        "3,600 with --big)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench",
                        help="output folder (default: reports/bench)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.big else 3)
    args.timeout = args.timeout or (3600 if args.big else 600)
    args.lme4_max_rows = args.lme4_max_rows or (1_000_000 if args.big else 10**12)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    runs, lme4_version = benchmark(args)
    results = table(runs)
    header = ["# Engine benchmark (`benchmarks/bench_engine.py`)", "",
              f"Machine: {machine()}; {lme4_version}.",
              f"Total benchmark time {time.perf_counter() - started:.0f} s. Times are medians "
              f"of {args.repeats} fits for the engine and lme4, one fit for statsmodels."]
    stem = "bench_engine_big" if args.big else "bench_engine"
    write(results, args.out, header, stem)
    ratios = results.query("method == 'engine'")[["model", "rows", "seconds", "peak_rss_mb",
                                                  "ratio_to_lme4", "cpu_ratio_to_lme4"]]
    print("\n" + "\n".join(header[2:]))
    print("\nengine / lme4 time:\n" + ratios.to_string(index=False))
    print(f"\nwrote {args.out / (stem + '.md')}, .csv and .png")


if __name__ == "__main__":
    main()
