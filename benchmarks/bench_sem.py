"""Benchmark the SEM fits against lavaan (project issue "Faster where users wait", target 2).

Fits, on seeded data shaped like a practice-network export (667 clients):

* ``RI-CLPM 5 waves FIML``: the random-intercept cross-lagged panel model of alliance and
  symptoms over 5 sessions (:func:`alliance_analysis.sem.syntax.riclpm_syntax`), with
  monotone attrition over the sessions, scattered missed sessions and single missing
  questionnaires (about 70 patterns of observed variables);
* ``3-factor CFA FIML``: Goal, Task and Bond of the 12 WAI-SR items, with scattered missing
  items and a few clients who skipped the second half of the form;
* ``3-factor CFA ML complete``: the same model on complete items (reference).

Timed: ours is :func:`alliance_analysis.sem.models.fit_sem` end to end from the DataFrame
(``missing="fiml"`` or ``"listwise"``, ``meanstructure=True``: parsing, patterns,
estimation, standard errors from the observed (FIML) or expected information, every fit
statistic with the EM saturated model, the parameter table), in this process after an
untimed warm-up fit. lavaan's is the ``sem()`` call of ``bench_sem_lavaan.R`` (same CSV,
same syntax, ``missing = "fiml"`` or ``"listwise"``, ``meanstructure = TRUE``,
``estimator = "ML"``; its h1 and baseline models and standard errors are computed inside
that call), in one R process per model after an untimed warm-up fit. The two are
interleaved, one fit of each in turn (the first alternating), so that both see the same
load on a shared machine; each time is the median of ``--repeats`` fits and ``ratio`` is
ours / lavaan (below 1: ours faster).

The estimates are compared over the free parameters (matched by ``lhs, op, rhs``): the
largest absolute difference of the estimates and of the standard errors, and the difference
of the log-likelihoods (ours - lavaan). Without ``Rscript`` or the R packages lavaan and
jsonlite, our times are written with a note that lavaan was not found.

Run from any directory::

    .venv/bin/python benchmarks/bench_sem.py             # writes reports/bench/sem.csv, .md
    .venv/bin/python benchmarks/bench_sem.py --repeats 3 --no-lavaan
"""

from __future__ import annotations

import argparse
import json
import queue
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_machine import machine  # the benchmark folder is on sys.path when run

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

WAVES = 5
CLIENTS = 667
ALLIANCE = [f"alliance_{t}" for t in range(1, WAVES + 1)]
SYMPTOMS = [f"symptoms_{t}" for t in range(1, WAVES + 1)]
SUBSCALES = {"Goal": ["wai_4", "wai_6", "wai_8", "wai_11"],
             "Task": ["wai_1", "wai_2", "wai_10", "wai_12"],
             "Bond": ["wai_3", "wai_5", "wai_7", "wai_9"]}
#: Columns of ``sem.csv``; ``ratio`` is ours / lavaan, the differences ours - lavaan.
COLUMNS = ["model", "rows", "patterns", "parameters", "ours_seconds", "lavaan_seconds", "ratio",
           "loglik_difference", "max_estimate_difference", "max_se_difference", "ours_loglik",
           "lavaan_loglik", "ours_iterations", "lavaan_iterations", "note"]
CFA_SYNTAX = "".join(f"{factor} =~ {' + '.join(items)}\n" for factor, items in SUBSCALES.items())


# -- seeded data -------------------------------------------------------------------------------

def panel_data(clients: int = CLIENTS, seed: int = 20260315) -> pd.DataFrame:
    """Alliance (WAI-SR total, 1-5) and symptoms (PHQ-9) at 5 sessions, one row per client.

    Drawn from an RI-CLPM: stable person means (alliance and symptoms correlated -0.36),
    within-person deviations following a cross-lagged regression (alliance -> symptoms
    -1.2, autoregression 0.35-0.4). Missing as in a practice network's export: each client
    attends sessions 1..K (K - 1 geometric, 13% dropout per session, so about 40% are gone
    by session 5), misses an attended session with probability 5%, and leaves one of the
    two questionnaires of a session blank with probability 3% each; about 70 patterns.
    """
    rng = np.random.default_rng(seed)
    intercepts = rng.multivariate_normal([0, 0], [[0.16, -0.5], [-0.5, 12.0]], size=clients)
    within = np.zeros((clients, WAVES, 2))
    within[:, 0] = rng.multivariate_normal([0, 0], [[0.09, -0.2], [-0.2, 9.0]], size=clients)
    lagged = np.array([[0.35, -0.01], [-1.2, 0.4]])
    for t in range(1, WAVES):
        within[:, t] = within[:, t - 1] @ lagged.T + rng.multivariate_normal(
            [0, 0], [[0.06, -0.1], [-0.1, 6.0]], size=clients)
    means = np.column_stack([3.6 + 0.05 * np.arange(WAVES), 14 - 0.8 * np.arange(WAVES)])
    alliance = means[:, 0] + intercepts[:, [0]] + within[:, :, 0]
    symptoms = means[:, 1] + intercepts[:, [1]] + within[:, :, 1]
    last = np.minimum(WAVES, 1 + rng.geometric(0.13, size=clients))
    attended = (np.arange(WAVES) < last[:, None]) & (rng.random((clients, WAVES)) > 0.05)
    attended[:, 0] |= ~attended.any(axis=1)
    alliance[~(attended & (rng.random((clients, WAVES)) > 0.03))] = np.nan
    symptoms[~(attended & (rng.random((clients, WAVES)) > 0.03))] = np.nan
    return pd.DataFrame(np.column_stack([alliance, symptoms]), columns=ALLIANCE + SYMPTOMS)


def cfa_data(clients: int = CLIENTS, missing: bool = True, seed: int = 20260312
             ) -> pd.DataFrame:
    """The 12 WAI-SR items at one session from three correlated factors (Goal, Task,
    Bond; correlations 0.6-0.8), loadings 0.7-1.1 and residual SD 0.5 around 3.7.

    With ``missing``: each item blank with probability 3%, and 4% of the clients leave the
    second half of the form (6 items) blank.
    """
    rng = np.random.default_rng(seed)
    phi = np.array([[0.5, 0.4, 0.3], [0.4, 0.55, 0.3], [0.3, 0.3, 0.45]])
    factors = rng.multivariate_normal(np.zeros(3), phi, size=clients)
    items = [item for group in SUBSCALES.values() for item in group]
    loadings = rng.uniform(0.7, 1.1, len(items))
    factor_of = np.repeat(np.arange(3), 4)
    values = (3.7 + rng.normal(0, 0.2, len(items)) + factors[:, factor_of] * loadings
              + rng.normal(0, 0.5, (clients, len(items))))
    if missing:
        blank = rng.random(values.shape) < 0.03
        blank[rng.random(clients) < 0.04, 6:] = True
        values = np.where(blank, np.nan, values)
    columns = [f"wai_{k}" for k in range(1, 13)]
    order = [items.index(c) for c in columns]
    return pd.DataFrame(values[:, order], columns=columns)


@dataclass(frozen=True)
class Case:
    """One benchmark fit: model syntax, data and missing-data handling."""

    name: str
    syntax: str
    data: Callable[[], pd.DataFrame]
    missing: str


def cases() -> list[Case]:
    from alliance_analysis.sem.syntax import riclpm_syntax

    return [Case("RI-CLPM 5 waves FIML", riclpm_syntax(ALLIANCE, SYMPTOMS, "x", "y"),
                 panel_data, "fiml"),
            Case("3-factor CFA FIML", CFA_SYNTAX, cfa_data, "fiml"),
            Case("3-factor CFA ML complete", CFA_SYNTAX, lambda: cfa_data(missing=False),
                 "listwise")]


# -- the two fitters ---------------------------------------------------------------------------

def ours(case: Case, data: pd.DataFrame) -> Any:
    """Our fit (warnings, e.g. of a poor fit, are kept out of the benchmark's output)."""
    from alliance_analysis.sem.models import fit_sem

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit_sem(case.syntax, data, case.name, missing=case.missing, meanstructure=True)


class Lavaan:
    """``bench_sem_lavaan.R`` in one R process, driven one fit at a time."""

    def __init__(self, csv: Path, model: Path, missing: str, out: Path, timeout: float):
        self.out, self.timeout = out, timeout
        self.log = out.with_suffix(".log")  # R's messages: a file, so no pipe fills up
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["Rscript", str(HERE / "bench_sem_lavaan.R"), str(csv), str(model), missing,
                 str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self._expect("ready")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def _expect(self, what: str = "") -> str:
        try:
            line = self.lines.get(timeout=self.timeout)
        except queue.Empty:
            self.process.kill()
            raise RuntimeError(f"lavaan stopped after {self.timeout:.0f} s (--timeout)") from None
        if not line or (what and line != what):
            self.process.kill()
            self.process.wait()
            error = self.log.read_text(errors="replace")
            raise RuntimeError(f"Rscript failed: {error.strip()[-300:]}")
        return line

    def fit(self) -> float:
        """Time one fit; its elapsed seconds as R measured them."""
        assert self.process.stdin is not None
        self.process.stdin.write("fit\n")
        self.process.stdin.flush()
        return float(self._expect())

    def close(self) -> dict[str, Any]:
        """Stop R and read its results (estimates of the last fit)."""
        assert self.process.stdin is not None
        self.process.stdin.write("end\n")
        self.process.stdin.close()
        self.process.wait(timeout=self.timeout)
        return json.loads(self.out.read_text())


def lavaan_available() -> str:
    """Why lavaan cannot be used, or '' when it can."""
    if shutil.which("Rscript") is None:
        return "Rscript not found: lavaan skipped"
    check = subprocess.run(["Rscript", "-e", "library(lavaan); library(jsonlite)"],
                           capture_output=True, text=True)
    return ("" if check.returncode == 0
            else "R package lavaan or jsonlite not found: lavaan skipped")


# -- the benchmark -----------------------------------------------------------------------------

def run_case(case: Case, folder: Path, repeats: int, skip_lavaan: str,
             timeout: float) -> dict[str, Any]:
    """Interleaved timings of ours and lavaan's on one case, and their differences."""
    data = case.data()
    observed = data.notna().to_numpy()
    used = observed.any(axis=1) if case.missing == "fiml" else observed.all(axis=1)
    ours(case, data)  # imports and first-call set-up, outside the timing
    lavaan = None
    note = skip_lavaan
    if not skip_lavaan:
        csv, model = folder / "data.csv", folder / "model.lav"
        data.to_csv(csv, index=False)
        model.write_text(case.syntax, encoding="utf-8")
        try:
            lavaan = Lavaan(csv, model, case.missing, folder / "lavaan.json", timeout)
        except RuntimeError as error:
            note = str(error)
    ours_times, lavaan_times, result = [], [], None
    for k in range(repeats):
        for method in (("ours", "lavaan") if k % 2 == 0 else ("lavaan", "ours")):
            if method == "ours":
                start = time.perf_counter()
                result = ours(case, data)
                ours_times.append(time.perf_counter() - start)
            elif lavaan is not None:
                try:
                    lavaan_times.append(lavaan.fit())
                except RuntimeError as error:
                    lavaan, note = None, str(error)
    reference = None
    if lavaan is not None:
        reference = lavaan.close()
        note = reference["version"]
    row = {"model": case.name, "rows": int(used.sum()),
           "patterns": len(np.unique(observed[used], axis=0)),
           "parameters": int(result.fit["npar"]),
           "ours_seconds": statistics.median(ours_times),
           "lavaan_seconds": statistics.median(lavaan_times) if lavaan_times else np.nan,
           "ours_loglik": result.fit["loglik"], "ours_iterations": result.fit["iterations"]}
    row["ratio"] = row["ours_seconds"] / row["lavaan_seconds"]
    row.update(_differences(result.params, result.fit["loglik"], reference))
    row["note"] = note
    return row


def _differences(params: pd.DataFrame, loglik: float, reference: dict[str, Any] | None
                 ) -> dict[str, Any]:
    """Largest |ours - lavaan| of the free estimates and SEs, and the log-likelihoods'."""
    if reference is None:
        return {"lavaan_loglik": np.nan, "lavaan_iterations": np.nan,
                "loglik_difference": np.nan, "max_estimate_difference": np.nan,
                "max_se_difference": np.nan}
    lavaan = {}
    for row in reference["parameters"]:
        lavaan[(row["lhs"], row["op"], row["rhs"])] = row
        if row["op"] == "~~":
            lavaan[(row["rhs"], row["op"], row["lhs"])] = row
    free = params[params["free"]]
    matched = [lavaan[key] for key in zip(free["lhs"], free["op"], free["rhs"], strict=True)]
    if len(matched) != len(reference["parameters"]):
        raise RuntimeError("the free parameters of the two fits differ")
    est = np.array([r["est"] for r in matched])
    se = np.array([r["se"] for r in matched])
    return {"lavaan_loglik": reference["loglik"], "lavaan_iterations": reference["iterations"],
            "loglik_difference": loglik - reference["loglik"],
            "max_estimate_difference": float(np.max(np.abs(free["estimate"] - est))),
            "max_se_difference": float(np.max(np.abs(free["se"] - se)))}


def write(results: pd.DataFrame, out: Path, header: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    results.to_csv(out / "sem.csv", index=False)
    shown = results.drop(columns=["note"])
    notes = [f"- {r.model}: {r.note}" for r in results.itertuples() if r.note]
    text = ("\n".join(header) + "\n\n" + shown.to_markdown(index=False, floatfmt=".4g")
            + "\n\nNotes:\n\n" + "\n".join(notes) + "\n")
    (out / "sem.md").write_text(text, encoding="utf-8")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed fits per method and model; the median is reported")
    parser.add_argument("--no-lavaan", action="store_true", help="do not call Rscript")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for one lavaan fit")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench",
                        help="output folder (default: reports/bench)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.perf_counter()
    skip = "--no-lavaan given: lavaan skipped" if args.no_lavaan else lavaan_available()
    rows = []
    for case in cases():
        print(f"{case.name:26s}", end=" ", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            row = run_case(case, Path(folder), args.repeats, skip, args.timeout)
        print(f"ours {row['ours_seconds']:7.3f} s  lavaan {row['lavaan_seconds']:7.3f} s  "
              f"ratio {row['ratio']:.3f}")
        rows.append(row)
    results = pd.DataFrame(rows, columns=COLUMNS)
    header = ["# SEM benchmark (`benchmarks/bench_sem.py`)", "",
              f"Machine: {machine()}.",
              f"Total benchmark time {time.perf_counter() - started:.0f} s. Times are medians "
              f"of {args.repeats} fits, ours and lavaan's interleaved; ratio = ours / lavaan."]
    write(results, args.out, header)
    print("\n" + "\n".join(header[2:]))
    print("\n" + results[["model", "rows", "patterns", "ours_seconds", "lavaan_seconds",
                          "ratio", "max_estimate_difference",
                          "loglik_difference"]].to_string(index=False))
    print(f"\nwrote {args.out / 'sem.csv'} and sem.md")


if __name__ == "__main__":
    main()
