"""Starting Dask workers: from a preloaded fork server, with chunks run here meanwhile.

:mod:`alliance_analysis.stats.dask_cluster` starts a local cluster in a background thread,
its workers forked from a fork server that imported the work functions' modules once;
:func:`alliance_analysis.stats.dask_runner.run_with_head_start` runs chunks in this process
until the workers are up and hands them the rest. What must hold: every chunk runs exactly
once, the results come back in call order (identical to a serial run), ``on_done`` is called
in the calling thread, a start that fails is raised (never replaced by a serial run), and
this process is left as it was found (environment, GIL switch interval).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings

import pytest

from alliance_analysis.errors import AllianceRunError
from alliance_analysis.multilevel.bootstrap import refit_samples
from alliance_analysis.power.replicate import run_chunk
from alliance_analysis.robustness.curve import fit_chunk, null_resample
from alliance_analysis.specs import DaskSettings
from alliance_analysis.stats import dask_cluster
from alliance_analysis.stats.dask_cluster import (LOCAL_WORKER_CONFIG, WORKER_PRELOAD,
                                                  StartingClient,
                                                  optional_client, worker_start_method)
from alliance_analysis.stats.dask_runner import run_chunks

#: A scheduler address where nothing listens (port 9, "discard", is closed here).
NOWHERE = "tcp://127.0.0.1:9"


def _slow_pid(seconds: float, index: int) -> tuple[int, int]:
    """A chunk that takes ``seconds``: its index and the process that ran it."""
    time.sleep(seconds)
    return index, os.getpid()


def test_the_fork_server_preloads_every_function_the_package_runs_on_dask() -> None:
    for function in (run_chunk, refit_samples, fit_chunk, null_resample):
        assert function.__module__ in WORKER_PRELOAD, function.__qualname__
    assert WORKER_PRELOAD[0] == "distributed"


@pytest.mark.skipif(worker_start_method() != "forkserver", reason="no fork server here")
def test_local_workers_are_forked_from_the_preloaded_fork_server() -> None:
    """The workers' parent is the fork server, not this process, and they hold the work
    modules before any task imported them (checked by ``eval`` of a string, so that no
    function of a test module is shipped and imported)."""
    starting = StartingClient(DaskSettings(scheduler="local", workers=2))
    try:
        client = starting.result()
        parents = client.run(os.getppid)
        loaded = client.run(eval, f"all(m in __import__('sys').modules "
                                  f"for m in {list(WORKER_PRELOAD)})")
    finally:
        starting.close()
    assert len(parents) == 2 and os.getpid() not in parents.values()
    assert len(set(parents.values())) == 1  # one server forked both
    assert all(loaded.values())


def test_head_start_runs_chunks_here_until_the_workers_are_up() -> None:
    """Chunk 0 starts here at once; the workers take chunks once they are up; each chunk
    runs once; results in call order; ``on_done`` in this thread for every chunk."""
    calls = [(0.25, index) for index in range(24)]
    seen: list[tuple[int, int]] = []
    interval = sys.getswitchinterval()
    with optional_client(DaskSettings(scheduler="local", workers=2)) as client:
        assert isinstance(client, StartingClient)
        results = run_chunks(_slow_pid, calls, client=client, name="head-start",
                             on_done=lambda i, _: seen.append((i, threading.get_ident())))
    assert [index for index, _ in results] == list(range(24))
    pids = [pid for _, pid in results]
    assert pids[0] == os.getpid()
    assert set(pids) - {os.getpid()}, "no chunk ran on a worker"
    assert sorted(i for i, _ in seen) == list(range(24))
    assert {thread for _, thread in seen} == {threading.get_ident()}
    assert sys.getswitchinterval() == interval


def test_a_client_already_up_takes_every_chunk() -> None:
    with optional_client(DaskSettings(scheduler="local", workers=1)) as client:
        client.result()
        results = run_chunks(_slow_pid, [(0.0, i) for i in range(4)], client=client)
    assert [i for i, _ in results] == [0, 1, 2, 3]
    assert os.getpid() not in {pid for _, pid in results}


def test_a_failed_start_stops_the_run_after_the_chunk_in_hand(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreachable scheduler is raised as soon as the start gives up, not after every
    chunk has been computed here instead."""
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 1)
    done: list[int] = []
    start = time.monotonic()
    with pytest.raises(AllianceRunError, match="cannot reach the Dask scheduler"):
        with optional_client(DaskSettings(scheduler=NOWHERE)) as client:
            run_chunks(_slow_pid, [(0.5, i) for i in range(40)], client=client,
                       on_done=lambda i, _: done.append(i))
    assert 0 < len(done) < 40
    assert time.monotonic() - start < 15


def test_a_failed_start_is_raised_even_when_every_chunk_ran_here(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Work finished before the start failed: the Dask setting still does not work, and
    the run says so on leaving the client."""
    monkeypatch.setattr(dask_cluster, "CONNECT_TIMEOUT", 1)
    with pytest.raises(AllianceRunError, match="cannot reach the Dask scheduler"):
        with optional_client(DaskSettings(scheduler=NOWHERE)) as client:
            results = run_chunks(_slow_pid, [(0.0, 0)], client=client)
            assert results == [(0, os.getpid())]


@pytest.mark.skipif(worker_start_method() != "forkserver", reason="no fork server here")
def test_each_cluster_gets_a_fresh_fork_server_and_stops_it() -> None:
    """A later cluster does not reuse the first one's server (its imports, its
    environment); none is left running after a cluster closes."""
    from multiprocessing import forkserver

    servers = []
    for _ in range(2):
        starting = StartingClient(DaskSettings(scheduler="local", workers=1))
        try:
            servers.append(set(starting.result().run(os.getppid).values()))
        finally:
            starting.close()
        assert forkserver._forkserver._forkserver_pid is None
    assert servers[0] != servers[1]


def test_a_head_start_stopped_by_ctrl_c_ends_at_once_and_cleans_up() -> None:
    """Ctrl-C after the first chunk here ends the run (the chunks not begun are not handed
    to the workers) and leaves the switch interval and the environment as they were."""
    calls = [(0.2, i) for i in range(6)]
    interval, environment = sys.getswitchinterval(), dict(os.environ)

    def stop(index: int, _: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with optional_client(DaskSettings(scheduler="local", workers=1)) as client:
            run_chunks(_slow_pid, calls, client=client, on_done=stop)
    assert sys.getswitchinterval() == interval
    assert dict(os.environ) == environment


def test_a_head_start_raises_no_warning_and_leaves_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One cluster for three checks (each start costs seconds):

    - the start runs beside fits that record every warning raised in the process
      (``catch_warnings(record=True)``): it must raise none of its own;
    - the workers get :data:`LOCAL_WORKER_CONFIG` from their nannies (fewer wake-ups);
    - the environment the nannies write into this process is put back on exit.
    """
    import dask

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = dict(os.environ)
    keys = ("distributed.admin.tick.interval", "distributed.worker.memory.monitor-interval",
            "distributed.worker.profile.enabled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with optional_client(DaskSettings(scheduler="local", workers=1)) as client:
            run_chunks(_slow_pid, [(0.1, i) for i in range(3)], client=client)
            seen = [client.result().run(dask.config.get, key) for key in keys]
    assert [str(w.message) for w in caught] == []
    assert [list(values.values()) for values in seen] == [["1s"], ["500ms"], [False]]
    assert [LOCAL_WORKER_CONFIG[key] for key in keys] == ["1s", "500ms", False]
    assert dict(os.environ) == before
