"""The parametric bootstrap on Dask: the same intervals to the last bit, wherever it runs.

:func:`alliance_analysis.multilevel.bootstrap.bootstrap_random` refits its samples in chunks
through :mod:`alliance_analysis.stats.dask_runner`, the machinery of the power studies.
Each sample draws from its own stream (child ``b`` of the seed) with one BLAS thread, so the
intervals must be identical (``check_exact``) serially, on one worker and on two, whatever
the chunk size. One local cluster is shared by the module (starting one costs seconds); it
is reached by its address, as a researcher's running scheduler would be.

The model is the reference data's small growth model (random intercept and slope of
session per client, correlated, and a therapist intercept), 20 samples.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.multilevel.bootstrap import bootstrap_random, sample_rng
from alliance_analysis.multilevel.specified import fit_model, prepare_model
from alliance_analysis.params import parse_params
from alliance_analysis.specs import DaskSettings, ModelSpec
from alliance_analysis.stats.dask_runner import (LOCAL_WORKER_CONFIG, chunked, dask_client,
                                                 run_chunks)

HERE = Path(__file__).parent / "reference"
CASE = "growth_small_ml"
SAMPLES, SEED = 20, 5


def _spec(**extra: object) -> ModelSpec:
    formula = json.loads((HERE / "formulas_lmertest.json").read_text())["cases"][CASE]["formula"]
    return ModelSpec(formula=formula, reml=False, **extra)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(HERE / "formulas_threelevel.csv")


@pytest.fixture(scope="module")
def fitted(data: pd.DataFrame) -> tuple:
    spec = _spec()
    return prepare_model(data, CASE, spec), fit_model(data, CASE, spec)


@pytest.fixture(scope="module")
def serial(fitted: tuple) -> pd.DataFrame:
    prepared, result = fitted
    return bootstrap_random(prepared, result, reml=False, samples=SAMPLES, seed=SEED)


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """One local cluster of single-threaded worker processes, one worker to start with,
    configured as :func:`dask_client` configures its own; the environment its nannies write
    into this process is put back afterwards."""
    import dask
    from distributed import LocalCluster

    environment = dict(os.environ)
    try:
        with (dask.config.set(LOCAL_WORKER_CONFIG),
              LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           dashboard_address=None,
                           scheduler_kwargs={"dashboard_address": ":0"}) as local):
            yield local
    finally:
        os.environ.clear()
        os.environ.update(environment)


def _with_workers(cluster: object, workers: int) -> DaskSettings:
    """Settings reaching ``cluster`` by its address, once it has ``workers`` workers."""
    from distributed import Client

    cluster.scale(workers)
    with Client(cluster.scheduler_address) as client:
        deadline = time.monotonic() + 60
        while len(client.nthreads()) != workers:
            assert time.monotonic() < deadline, f"the cluster did not reach {workers} workers"
            time.sleep(0.1)
    return DaskSettings(scheduler=cluster.scheduler_address)


def test_serial_intervals_do_not_depend_on_the_chunk_size(fitted: tuple,
                                                          serial: pd.DataFrame) -> None:
    prepared, result = fitted
    for size in (1, SAMPLES + 5):
        again = bootstrap_random(prepared, result, reml=False, samples=SAMPLES, seed=SEED,
                                 chunk_size=size)
        pd.testing.assert_frame_equal(again, serial, check_exact=True)
    assert (serial["n_samples"] > 0).all()
    assert (serial["ci_low"] <= serial["ci_high"]).all()


@pytest.mark.parametrize(("workers", "chunk_size"), [(1, 3), (1, 7), (2, 3), (2, 7)])
def test_dask_intervals_equal_the_serial_ones(fitted: tuple, serial: pd.DataFrame,
                                              cluster: object, workers: int,
                                              chunk_size: int) -> None:
    prepared, result = fitted
    on_dask = bootstrap_random(prepared, result, reml=False, samples=SAMPLES, seed=SEED,
                               dask=_with_workers(cluster, workers), chunk_size=chunk_size)
    pd.testing.assert_frame_equal(on_dask, serial, check_exact=True)


def test_a_models_dask_setting_reaches_the_bootstrap(data: pd.DataFrame, cluster: object,
                                                     serial: pd.DataFrame) -> None:
    """``dask:`` under a model: fit_model hands it to the bootstrap (same intervals)."""
    settings = _with_workers(cluster, 2)
    spec = _spec(bootstrap_samples=SAMPLES, dask=settings)
    remote = fit_model(data, CASE, spec, seed=SEED).extra["random_intervals"]
    assert list(remote["group"].unique()) == ["client_id", "therapist_id", "Residual"]
    pd.testing.assert_frame_equal(remote.drop(columns="group"), serial, check_exact=True)


def test_sample_streams_are_the_spawned_children_of_the_seed() -> None:
    """Sample b draws from SeedSequence(seed).spawn(n)[b], as the serial bootstrap always
    did: running in chunks did not change a single draw."""
    children = np.random.SeedSequence(SEED).spawn(12)
    for b in (0, 5, 11):
        expected = np.random.default_rng(children[b]).normal(size=4)
        np.testing.assert_array_equal(sample_rng(SEED, b).normal(size=4), expected)


def test_run_chunks_returns_results_in_call_order_serially_and_on_dask(cluster: object) -> None:
    calls = [(np.array(chunk),) for chunk in chunked(range(10), 3)]
    assert [len(c) for (c,) in calls] == [3, 3, 3, 1]
    seen: list[int] = []
    serial = run_chunks(np.multiply, calls, (2.0,), on_done=lambda i, _: seen.append(i))
    assert [r.tolist() for r in serial] == [[0.0, 2.0, 4.0], [6.0, 8.0, 10.0],
                                            [12.0, 14.0, 16.0], [18.0]]
    assert seen == [0, 1, 2, 3]
    with dask_client(_with_workers(cluster, 2)) as client:
        seen.clear()
        on_dask = run_chunks(np.multiply, calls, (2.0,), client=client, name="test",
                             on_done=lambda i, _: seen.append(i))
    assert [r.tolist() for r in on_dask] == [r.tolist() for r in serial]
    assert sorted(seen) == [0, 1, 2, 3]


def _worker_settings() -> tuple[str | None, str | None, bool]:
    import os

    import dask

    return (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OPENBLAS_NUM_THREADS"),
            bool(dask.config.get("distributed.worker.profile.enabled")))


def test_a_local_cluster_leaves_this_process_as_it_found_it(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Workers without the trim threshold that doubles a refit's CPU time, one BLAS thread,
    no profiler; and this process's environment, which the nannies write into before they
    start their workers, put back on exit."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    before = dict(os.environ)
    with dask_client(DaskSettings(scheduler="local", workers=1)) as client:
        assert client.submit(_worker_settings, pure=False).result() == (None, "1", False)
    assert dict(os.environ) == before


def test_dask_without_bootstrap_samples_is_refused_naming_the_model() -> None:
    with pytest.raises(ValueError, match="set bootstrap_samples"):
        _spec(dask=DaskSettings(scheduler="local"))
    raw = {"models": {"growth": {"formula": "phq9_total ~ session + (1 | client_id)",
                                 "dask": {"scheduler": "local", "workers": 2}}}}
    with pytest.raises(AllianceParamsError, match=r"models\.growth.*set bootstrap_samples"):
        parse_params(raw, Path.cwd())
    assert _spec(bootstrap_samples=10).dask is None
