"""Monte Carlo power (issue 11): parameters, replicates, statistics, Dask, resuming, report.

Replicate counts and tolerances
-------------------------------
The statistical checks are binomial: with R replicates a rate estimated at its true value p
has SD sqrt(p (1 - p) / R), and a check passes when the count lies in the central 99%
binomial band around the nominal rate (so a correct method fails it 1% of the time; the
seeds are fixed, so the outcome is reproducible, not flaky).

* Type I error (within effect 0, R = 200): count of p < .05 in [4, 18], i.e. the rate in
  [.02, .09] (SD .015). A liberal test at .10 or a conservative one at .01 falls outside.
* Coverage of 95% intervals (within effect -1.5, R = 200): count covering in [183, 196],
  i.e. [.915, .98] (SD .015).
* Boundary likelihood-ratio test of the therapist variance when it is 0 (R = 200): same band
  as the type I error. The naive chi-square(1) p-value would give about .025.
* Power for a large effect (within effect -4, about 7 SEs, R = 20): every replicate
  significant, since the chance of one miss is below 1e-10.

R = 200 resolves a type I error or coverage to about +/-.03 at 99%: enough to catch the
errors that matter (a missing term, a wrong SE, a naive boundary test), within the 3-minute
budget (about 40 s of fitting on two workers).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
import yaml
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from alliance_analysis import power
from alliance_analysis.power import run as power_run
from alliance_analysis import cli
from alliance_analysis.errors import AllianceDataError, AllianceParamsError, AllianceRunError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.power.params import PowerParams, load_power_params, parse_power_params
from alliance_analysis.power.replicate import (FITTERS, boundary_lrt_p, drop_planted_faults,
                                               replicate_seed, replicate_sessions)
from alliance_analysis.data.simulate import SimulationDesign, simulate
from alliance_analysis.stats import dask_cluster

ROOT = Path(__file__).resolve().parents[1]

#: A small study for which the fitted model is the generating one: independent client
#: intercepts and slopes, and (practically) no missed forms or blank items, so that the
#: person means the analysis computes are those of the truth.
CORRECT_MODEL = {"therapists": 8, "clients_per_therapist": 5, "max_sessions": 8,
                 "phq9_intercept_slope_corr": 0.0, "missed_questionnaire_rate": 1e-6,
                 "missing_item_rate": 1e-6}
SMALL = {"therapists": 6, "clients_per_therapist": 4, "max_sessions": 6}


def study(tmp_path: Path, **raw: Any) -> PowerParams:
    """Power parameters with a serial scheduler and the output under ``tmp_path``."""
    raw = {"design": SMALL, "replicates": 6, "chunk_size": 2, "out": "out",
           "dask": {"scheduler": "none"}, **raw}
    return parse_power_params(raw, tmp_path)


def band(n: int, p: float) -> tuple[float, float]:
    """Central 99% binomial band of a rate (counts / n)."""
    low, high = stats.binom.ppf([0.005, 0.995], n, p)
    return low / n, high / n


# -- parameters -----------------------------------------------------------------------------

def test_example_parameters_load_and_stay_small() -> None:
    params = load_power_params(ROOT / "params" / "power.yaml")
    assert params.out == (ROOT / "reports" / "power-demo").resolve()
    assert len(params.design_points()) * params.replicates <= 200  # the notebook's budget
    assert params.varying_fields() == ["clients_per_therapist", "within_effect"]


def test_grid_is_the_product_in_design_field_order(tmp_path: Path) -> None:
    params = study(tmp_path, design={"within_effect": [0.0, -1.0], "therapists": [4, 6]})
    points = [(d.therapists, d.within_effect) for d in params.design_points()]
    assert points == [(4, 0.0), (4, -1.0), (6, 0.0), (6, -1.0)]
    assert params.target_term() == "wai_within_lag1"


@pytest.mark.parametrize(("raw", "expected"), [
    ({"replicate": 5}, ["unknown key 'replicate'", "replicates"]),
    ({"dask": {"scheduler": "local", "worker": 2}}, ["unknown key 'dask.worker'", "workers"]),
    ({"replicates": "ten"}, ["key 'replicates'", "'ten'"]),
    ({"alpha": 1.5}, ["key 'alpha'", "less than 1", "1.5"]),
    ({"engine": "lme4"}, ["key 'engine'", "'engine' or 'statsmodels'", "'lme4'"]),
    ({"design": {"therapist": 5}}, ["unknown design field 'therapist'", "therapists"]),
    ({"design": {"therapists": [4, "many"]}}, ["design field 'therapists'", "'many'"]),
    ({"design": {"max_sessions": [3, 6]}}, ["design point 1", "max_sessions=3",
                                            "must be at least min_sessions"]),
    ({"model": "therapist_alliance", "target": "wai_between"},
     ["target 'wai_between'", "therapist_variance"]),
    ({"dask": {"scheduler": "cluster"}}, ["key 'dask.scheduler'", "tcp://", "'cluster'"]),
    ({"dask": {"scheduler": "tcp://h:8786", "workers": 2}}, ["workers applies to scheduler"]),
    ({"engine": "statsmodels", "multilevel": {"correlated_slope": True}},
     ["engine statsmodels", "correlated_slope", "use engine: engine"]),
])
def test_parameter_errors_name_key_value_and_what_is_allowed(
        tmp_path: Path, raw: dict[str, Any], expected: list[str]) -> None:
    with pytest.raises(AllianceParamsError) as caught:
        parse_power_params(raw, tmp_path, source="p.yaml")
    for text in ["p.yaml", *expected]:
        assert text in str(caught.value)


def test_parameter_file_errors(tmp_path: Path) -> None:
    with pytest.raises(AllianceParamsError, match="not found"):
        load_power_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("replicates: [1,\n", encoding="utf-8")
    with pytest.raises(AllianceParamsError, match="not valid YAML at line"):
        load_power_params(bad)
    bad.write_text("- 1\n", encoding="utf-8")
    with pytest.raises(AllianceParamsError, match="expected a mapping"):
        load_power_params(bad)


# -- one replicate --------------------------------------------------------------------------

def test_drop_planted_faults_removes_exactly_the_three_fault_rows() -> None:
    sim = simulate(SimulationDesign(**SMALL), seed=5)
    kept = drop_planted_faults(sim)
    rows = {fault["row"] for fault in sim.truth["faults"]}
    assert len(kept) == len(sim.sessions) - 3
    assert set(kept["source_row"]).isdisjoint(rows)
    assert kept["session"].dtype == "int64"
    assert not kept.duplicated(["client_id", "session"]).any()
    phq9 = kept[get_instrument("phq9").items()]
    assert ((phq9 >= 0) & (phq9 <= 3) | phq9.isna()).all().all()
    original = sim.sessions.iloc[kept["source_row"] - 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept.drop(columns=["source_row", "session"]),
                                  original.drop(columns=["session"]))


def test_replicate_seed_is_the_spawned_child() -> None:
    children = np.random.SeedSequence(42).spawn(3)[2].spawn(5)
    assert replicate_seed(42, 2, 4) == int(children[4].generate_state(1, np.uint64)[0])
    assert replicate_seed(42, 2, 4) != replicate_seed(42, 4, 2)


def test_boundary_lrt_halves_the_chi_square_p() -> None:
    assert boundary_lrt_p(-10.0, -10.0) == 1.0
    assert boundary_lrt_p(-10.0, -9.9) == 1.0  # a worse full fit is truncated at LR = 0
    assert boundary_lrt_p(-10.0, -12.0) == pytest.approx(0.5 * stats.chi2.sf(4.0, 1))


@pytest.mark.parametrize(("model", "target", "design", "seed", "rel"), [
    ("within_between", "wai_within_lag1", SMALL, 12, 1e-3),
    ("within_between", "wai_within_lag1", SMALL, 13, 1e-3),
    ("therapist_alliance", "therapist_variance", {**SMALL, "alliance_therapist_sd": 0.3}, 13,
     5e-3),
    ("therapist_alliance", "therapist_variance", {**SMALL, "alliance_therapist_sd": 0.3}, 14,
     5e-3),
])
def test_engine_agrees_with_statsmodels(model: str, target: str, design: dict[str, Any],
                                        seed: int, rel: float) -> None:
    """Same target, SE, interval and p from both engines on non-singular fits.

    The optimizers stop at slightly different points (statsmodels' L-BFGS at a looser
    gradient tolerance): estimates near zero differ by about 1e-5 absolute, and the upper end
    of a therapist-variance interval spanning several orders of magnitude by up to 2e-3
    relative; hence the tolerances.
    """
    sessions = replicate_sessions(SimulationDesign(**design), seed=seed)
    options = MultilevelOptions(inference="wald")  # statsmodels gives Wald z tests only
    fast = FITTERS[model, "engine"](sessions, target, options)
    slow = FITTERS[model, "statsmodels"](sessions, target, options)
    assert fast.converged and slow.converged and not fast.singular and not slow.singular
    for name in ("estimate", "se", "ci_low", "ci_high", "p"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), rel=rel, abs=1e-4), \
            name
    assert (fast.n_obs, fast.n_clients) == (slow.n_obs, slow.n_clients)


# -- performance measures -------------------------------------------------------------------

def test_performance_measures_by_hand() -> None:
    rows = pd.DataFrame({
        "point": 0, "replicate": range(5), "estimate": [1.0, 2.0, 3.0, 4.0, np.nan],
        "se": [1.0, 1.0, 2.0, 2.0, np.nan], "true_value": 2.0,
        "covered": pd.array([True, True, False, True, None], dtype="boolean"),
        "significant": [True, False, True, True, False],
        "converged": [True, True, True, True, False]})
    row = power.performance(rows, 0.95).iloc[0]
    assert (row["replicates"], row["converged"], row["convergence_rate"]) == (5, 4, 0.8)
    assert row["power"] == 0.75
    wilson = proportion_confint(3, 4, alpha=0.05, method="wilson")
    assert (row["power_ci_low"], row["power_ci_high"]) == pytest.approx(wilson, rel=1e-12)
    assert row["bias"] == pytest.approx(0.5)
    assert row["rmse"] == pytest.approx(np.sqrt(1.5))
    assert row["empirical_se"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert row["bias_mcse"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)
    assert row["model_se"] == pytest.approx(np.sqrt(2.5))
    assert row["coverage"] == 0.75
    assert row["coverage_mcse"] == pytest.approx(np.sqrt(0.75 * 0.25 / 4))
    assert row["interval_rate"] == 1.0


def test_wilson_interval_matches_statsmodels() -> None:
    for x, n in [(0, 20), (20, 20), (7, 30), (180, 200)]:
        assert power.wilson_interval(x, n, 0.9) == pytest.approx(
            proportion_confint(x, n, alpha=0.1, method="wilson"), rel=1e-12, abs=1e-15)


def test_smallest_adequate_design_per_scenario() -> None:
    summary = pd.DataFrame({
        "point": range(6), "therapists": 10, "clients_per_therapist": [3, 6, 9] * 2,
        "max_sessions": 10, "clients": [30, 60, 90] * 2,
        "within_effect": [-1.0] * 3 + [-1.5] * 3,
        "power": [0.3, 0.6, 0.75, 0.6, 0.85, 0.99],
        "power_ci_low": [0.2, 0.5, 0.6, 0.5, 0.81, 0.95],
        "power_ci_high": [0.4, 0.7, 0.85, 0.7, 0.9, 1.0]})
    table = power.smallest_adequate(summary, ["within_effect"], 0.8)
    assert table["within_effect"].tolist() == [-1.0, -1.5]
    assert pd.isna(table.loc[0, "point"]) and "extend the grid" in table.loc[0, "note"]
    assert (table.loc[1, "point"], table.loc[1, "clients"]) == (4, 60)
    assert bool(table.loc[1, "ci_low_reaches_target"])


# -- statistical behaviour ------------------------------------------------------------------

@pytest.fixture(scope="module")
def within_study(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Within effect 0 and -1.5 on the correct-model design, 200 replicates, two workers."""
    params = parse_power_params({
        "design": {**CORRECT_MODEL, "within_effect": [0.0, -1.5]}, "replicates": 200,
        "chunk_size": 25, "dask": {"scheduler": "local", "workers": 2}, "out": "within"},
        tmp_path_factory.mktemp("power"))
    return power.run_power(params, progress=False).summary.set_index("within_effect")


def test_type_one_error_near_alpha(within_study: pd.DataFrame) -> None:
    null = within_study.loc[0.0]
    assert null["convergence_rate"] == 1.0
    low, high = band(200, 0.05)
    assert low <= null["power"] <= high


def test_coverage_near_nominal_where_the_model_is_correct(within_study: pd.DataFrame) -> None:
    effect = within_study.loc[-1.5]
    low, high = band(200, 0.95)
    assert low <= effect["coverage"] <= high
    assert abs(effect["bias"]) < 3 * effect["bias_mcse"]
    assert abs(effect["se_relative_error"]) < 0.15  # SD of SE ratio ~ 1/sqrt(2R) = .05


def test_power_near_one_for_a_large_effect(tmp_path: Path) -> None:
    params = study(tmp_path, design={**CORRECT_MODEL, "within_effect": -4.0}, replicates=20,
                   chunk_size=10)
    row = power.run_power(params, progress=False).summary.iloc[0]
    assert row["power"] == 1.0 and row["convergence_rate"] == 1.0


def test_boundary_test_of_therapist_variance_holds_alpha(tmp_path: Path) -> None:
    params = parse_power_params({
        "model": "therapist_alliance", "replicates": 200, "chunk_size": 25,
        "design": {**SMALL, "therapists": 8, "alliance_therapist_sd": 0.0},
        "dask": {"scheduler": "local", "workers": 2}, "out": "therapist"}, tmp_path)
    row = power.run_power(params, progress=False).summary.iloc[0]
    low, high = band(200, 0.05)
    assert row["convergence_rate"] == 1.0
    assert low <= row["power"] <= high


# -- Dask, workers and resuming -------------------------------------------------------------

def test_same_results_serially_and_on_two_workers(tmp_path: Path) -> None:
    grid = {**SMALL, "clients_per_therapist": [4, 5]}
    serial = study(tmp_path, design=grid, out="serial")
    parallel = study(tmp_path, design=grid, out="parallel",
                     dask={"scheduler": "local", "workers": 2})
    one = power.run_power(serial, progress=False)
    two = power.run_power(parallel, progress=False)
    pd.testing.assert_frame_equal(one.replicates, two.replicates, check_exact=True)
    pd.testing.assert_frame_equal(one.summary, two.summary, check_exact=True)


def test_existing_scheduler_by_address_gives_the_same_results(tmp_path: Path) -> None:
    from distributed import LocalCluster

    serial = power.run_power(study(tmp_path, out="serial"), progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        remote = study(tmp_path, out="remote", dask={"scheduler": cluster.scheduler_address})
        one_worker = power.run_power(remote, progress=False)
    pd.testing.assert_frame_equal(one_worker.replicates, serial.replicates, check_exact=True)


def test_unreachable_scheduler_is_a_run_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 1)
    params = study(tmp_path, dask={"scheduler": "tcp://127.0.0.1:9"})
    with pytest.raises(AllianceRunError, match="cannot reach the Dask scheduler"):
        power.run_power(params, progress=False)


def test_a_failed_fit_is_recorded_not_raised(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(sessions: pd.DataFrame, target: str, options: MultilevelOptions) -> None:
        raise AllianceDataError("every optimizer failed")

    monkeypatch.setitem(FITTERS, ("within_between", "engine"), failing)
    result = power.run_power(study(tmp_path, replicates=2), progress=False)
    row = result.replicates.iloc[0]
    assert not row["converged"] and np.isnan(row["estimate"]) and pd.isna(row["covered"])
    assert row["error"] == "AllianceDataError: every optimizer failed"
    assert result.summary.loc[0, "convergence_rate"] == 0.0


def test_interrupted_run_resumes_with_only_the_missing_replicates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grid = {**SMALL, "within_effect": [0.0, -1.0]}
    reference = power.run_power(study(tmp_path, design=grid, out="whole"), progress=False)
    params = study(tmp_path, design=grid, out="interrupted")
    store, stored = power_run.store_chunk, []

    def store_then_stop(chunk: power_run.Chunk, rows: pd.DataFrame) -> Path:
        if len(stored) == 2:
            raise KeyboardInterrupt
        stored.append(chunk)
        return store(chunk, rows)

    monkeypatch.setattr(power_run, "store_chunk", store_then_stop)
    with pytest.raises(KeyboardInterrupt):
        power.run_power(params, progress=False)
    monkeypatch.undo()
    resumed = power.run_power(params, progress=False)
    assert (resumed.reused, resumed.computed) == (4, 8)
    pd.testing.assert_frame_equal(resumed.replicates, reference.replicates, check_exact=True)
    pd.testing.assert_frame_equal(resumed.summary, reference.summary, check_exact=True)


def test_deleted_chunks_and_more_replicates_compute_only_what_is_missing(
        tmp_path: Path) -> None:
    params = study(tmp_path)
    first = power.run_power(params, progress=False)
    files = sorted((tmp_path / "out" / "replicates").rglob("reps-*.parquet"))
    assert (first.computed, len(files)) == (6, 3)
    files[1].unlink()
    again = power.run_power(params, progress=False)
    assert (again.computed, again.reused) == (2, 4)
    pd.testing.assert_frame_equal(again.replicates, first.replicates, check_exact=True)
    more = power.run_power(params.model_copy(update={"replicates": 9}), progress=False)
    assert (more.computed, more.reused) == (3, 6)
    pd.testing.assert_frame_equal(more.replicates.iloc[:6], first.replicates,
                                  check_exact=True)


def test_a_changed_study_never_reuses_stored_rows(tmp_path: Path) -> None:
    params = study(tmp_path)
    power.run_power(params, progress=False)
    for change in ({"alpha": 0.01}, {"engine": "statsmodels"}, {"seed": 1},
                   {"multilevel": MultilevelOptions(reml=False)}):
        changed = params.model_copy(update=change)
        assert power_run.missing_chunks(changed, changed.design_points()), change


# -- report, command and notebook -----------------------------------------------------------

def test_main_power_writes_the_report_and_the_same_bytes_twice(tmp_path: Path) -> None:
    raw = {"design": {**SMALL, "clients_per_therapist": [3, 4], "within_effect": [0.0, -4.0]},
           "replicates": 4, "chunk_size": 2, "dask": {"scheduler": "none"}, "out": "report"}
    path = tmp_path / "power.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert cli.main_power(str(path), progress=False) == 0
    out = tmp_path / "report"
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["power.p003.power"] == 1.0  # within effect -4 with 4 clients per therapist
    assert results["power.smallest.1.clients"] == 18  # the smaller design already suffices
    assert results["power.smallest.0.point"] is None  # power of a zero effect stays low
    written = sorted(p for p in out.rglob("*") if p.is_file() and "replicates" not in p.parts)
    names = {p.relative_to(out).as_posix() for p in written}
    assert {"tables/power_summary.csv", "tables/power_smallest.md", "tables/power_grid.csv",
            "tables/power_replicates.csv", "figures/power_curve.png",
            "figures/power_curve.svg", "results.json"} <= names
    first = {p: p.read_bytes() for p in written}
    assert cli.main_power(str(path), progress=False) == 0
    assert {p: p.read_bytes() for p in written} == first


def test_main_power_reports_an_interruption(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "power.yaml"
    path.write_text("dask: {scheduler: none}\nreplicates: 2\n", encoding="utf-8")

    def interrupted(params: PowerParams, progress: bool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("alliance_analysis.power.study.run_power", interrupted)
    assert cli.main_power(str(path), progress=False) == 130


def test_notebook_runs_on_a_tiny_study(tmp_path: Path) -> None:
    notebook = ROOT / "notebooks" / "power.ipynb"
    cells = nbformat.read(notebook, as_version=4).cells
    assert [c.id for c in cells] == [f"cell-{k:02d}" for k in range(len(cells))]
    inspected = papermill.inspect_notebook(str(notebook))
    assert set(inspected) == {"params_file", "out_dir"}
    raw = {"design": {**SMALL, "clients_per_therapist": [3, 4]}, "replicates": 4,
           "chunk_size": 2, "dask": {"scheduler": "none"}}
    params_file = tmp_path / "power.yaml"
    params_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    papermill.execute_notebook(
        str(notebook), str(tmp_path / "power.ipynb"), cwd=str(ROOT / "notebooks"),
        parameters={"params_file": str(params_file), "out_dir": str(tmp_path / "out")},
        progress_bar=False, kernel_name="python3")
    assert (tmp_path / "out" / "figures" / "power_curve.png").is_file()
