"""Dask clients for the Monte Carlo runs: a local cluster started in the background, or a
running scheduler.

:func:`dask_client` starts a :class:`distributed.LocalCluster` (``scheduler: local``) or
connects to a running scheduler (an address), and closes both whatever happens
(``try/finally``, also on Ctrl-C). :func:`optional_client` gives ``None`` for ``scheduler:
none``, and otherwise a :class:`StartingClient`: the same client, started in a background
thread, so that :func:`alliance_analysis.stats.dask_runner.run_chunks` can run the first
chunks in this process while the workers start (the *head start*) and hand the rest to the
workers the moment they are up.

Why the workers start from a fork server
----------------------------------------
Measured on the 2-core machine (``benchmarks/bench_power.py``), Dask's default of *spawning*
each worker as a new interpreter cost every local run about 5 seconds: 1.0 s to start the
cluster, 2.8 s while both workers imported the scientific stack at the same time (both cores
busy, nothing computed), 0.9 s to shut the interpreters down. A study of 60 s serially took
34.6 s on two workers (0.64 of the serial time; two cores can give at most 0.5). Where the
platform has it (Linux, macOS), the workers are now forked from a *fork server*
(:mod:`multiprocessing`'s ``forkserver`` start method, which Dask supports through
``distributed.worker.multiprocessing-method``): one fresh, single-threaded interpreter that
imports :data:`WORKER_PRELOAD` once and forks every worker from itself, so the workers start
with the work functions' modules already imported and close in 0.04 s. The server's imports
take one core for about 3 seconds; the head start computes on the other. (Forking the
workers from this process instead would start them in 0.2 s, but this process runs threads,
a notebook kernel's among them, and forking a multi-threaded process can leave a lock held
forever in the child; Python 3.14 made the fork server its default on Linux for that
reason.) Each local cluster gets a fork server of its own: one already running is stopped
before the cluster starts and the cluster's is stopped when it closes. A server kept for the
life of a process (a notebook kernel) would serve later clusters the code it imported first,
after the package was edited, and the environment it was started with; a fresh one takes
the package as it is now and the environment the nannies set before their first worker
(``OMP_NUM_THREADS=1`` and friends), which every worker forked from it inherits. A worker
that dies and is restarted by its nanny is spawned (Dask's default) without the preload.

Threads
-------
The start runs in a background thread of this process while the calling thread computes.
What the two share is process-wide: ``warnings`` filters and records (a fit here records
its warnings with ``warnings.catch_warnings(record=True)``, which would also catch one
raised by the start; importing, starting and closing a cluster raise none, a test checks),
``dask.config`` (set by the start around the cluster's creation only; the package sets it
nowhere else) and ``os.environ`` (written by the nannies and put back by :meth:`close`).

References
----------
Dask distributed: https://distributed.dask.org (``LocalCluster``, ``Client``, the
``distributed.worker.multiprocessing-method`` setting).
Python, "Contexts and start methods":
https://docs.python.org/3/library/multiprocessing.html#contexts-and-start-methods
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from alliance_analysis.errors import AllianceRunError

if TYPE_CHECKING:
    from distributed import Client, LocalCluster

    from alliance_analysis.specs import DaskSettings

__all__ = ["CONNECT_TIMEOUT", "LOCAL_WORKER_CONFIG", "WORKER_PRELOAD", "StartingClient",
           "dask_client", "optional_client", "worker_start_method"]

#: Seconds to wait for an existing Dask scheduler to answer.
CONNECT_TIMEOUT = 30
#: Dask settings of a local cluster's workers (see :func:`dask_client`).
LOCAL_WORKER_CONFIG = {
    # Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers to return memory to the system
    # sooner. Any fixed trim threshold also switches off glibc's adaptive mmap threshold, so
    # every large numpy array is mapped and unmapped afresh: it nearly doubled the CPU time
    # of bootstrap refits (0.8 -> 1.4 s for ten refits of benchmarks/bench_bootstrap.py's
    # model, in a plain process with only this variable set).
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # The statistical profiler samples the running task every 10 ms for the dashboard,
    # which these clusters do not start.
    "distributed.worker.profile.enabled": False,
    # Periodic bookkeeping, slowed down: an idle 2-worker cluster took 84 ms of CPU per
    # second in this process (its scheduler and nannies) and 30 ms in each worker, mostly
    # the event-loop "tick" every 20 ms in each of them and the memory monitors every 100 ms;
    # taken from the cores the replicates run on, it slowed every chunk. With these three,
    # 17 ms and 5.5 ms. The tick only measures how long the event loop was blocked (a warning
    # from 3 s on, still given); the system monitor feeds the dashboard; the memory monitor
    # pauses a worker near its memory limit and the nanny restarts it above 95%: they react
    # within 0.5 s instead of 0.1 s.
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}
#: What the fork server imports once for every local worker: Dask's worker and the modules
#: of every function the package runs on Dask (power replicates, bootstrap refits, the
#: specification curve and its joint test; a test checks the list). Together they take
#: about 3 s to import, the same as any one of them: they share the scientific stack.
WORKER_PRELOAD = ("distributed", "alliance_analysis.power.replicate",
                  "alliance_analysis.multilevel.bootstrap", "alliance_analysis.robustness.curve")


def worker_start_method() -> str:
    """How a local cluster starts its workers: ``forkserver`` where the platform has it
    (Linux, macOS), else ``spawn`` (Windows), Dask's default."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def _stop_fork_server() -> None:
    """Stop this process's fork server if one runs; the next worker starts a fresh one.

    Workers forked earlier do not depend on it. ``ForkServer._stop`` is the standard
    library's own (its tests use it; present from Python 3.8 to 3.14): there is no public
    way to restart the server with other modules or another environment.
    """
    from multiprocessing import forkserver

    forkserver._forkserver._stop()


def _local_cluster(workers: int) -> LocalCluster:
    import dask
    from distributed import LocalCluster
    from distributed.utils import get_mp_context

    method = worker_start_method()
    with dask.config.set({**LOCAL_WORKER_CONFIG,
                          "distributed.worker.multiprocessing-method": method}):
        if method == "forkserver":
            _stop_fork_server()
            # The first call sets Dask's own preload list (its dependencies) once per
            # process; ours replaces it and Dask does not set it again.
            get_mp_context().set_forkserver_preload(list(WORKER_PRELOAD))
        # no dashboard; the scheduler's small HTTP server (health checks) on a free port,
        # not on 8787 with a warning when another cluster holds that one
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})


class StartingClient:
    """A Dask client being started in a background thread (see the module notes).

    The thread starts a local cluster and its client, or connects to the scheduler at the
    given address. :meth:`when_started` registers work to hand over once it is up,
    :meth:`failed` tells without waiting whether the start failed, :meth:`result` waits for
    the client. :meth:`close` closes the client and the cluster (once the start has
    finished: the thread closes them itself if the start is still running, so an interrupted
    close leaves nothing behind), stops the cluster's fork server, and puts back the
    environment the cluster's nannies wrote into this process (``OMP_NUM_THREADS=1``,
    ``PYTHONHASHSEED`` ...), so processes started later (a notebook, a stage of the
    pipeline) do not inherit it.
    """

    def __init__(self, settings: DaskSettings) -> None:
        self.settings = settings
        self.client: Client | None = None
        self.cluster: LocalCluster | None = None
        self.error: BaseException | None = None
        self._environment = dict(os.environ)
        self._lock = threading.Lock()
        self._started = threading.Event()
        self._closing = False
        self._closed = False
        self._callbacks: list[Callable[[Client], None]] = []
        self._thread = threading.Thread(target=self._start, name="dask-client-start",
                                        daemon=True)
        self._thread.start()

    def _start(self) -> None:
        from distributed import Client

        try:
            if self.settings.scheduler == "local":
                self.cluster = _local_cluster(self.settings.workers or os.cpu_count() or 1)
                self.client = Client(self.cluster)
            else:
                try:
                    self.client = Client(self.settings.scheduler, timeout=CONNECT_TIMEOUT)
                except (OSError, TimeoutError) as exc:
                    raise AllianceRunError(
                        f"cannot reach the Dask scheduler at {self.settings.scheduler} "
                        f"({type(exc).__name__}: {exc}). Start it (`dask scheduler`) and its "
                        "workers, check the address under dask.scheduler, or use "
                        "scheduler: local") from None
        except BaseException as exc:  # handed to the thread that waits (result, failed)
            self.error = exc
        with self._lock:
            self._started.set()
            callbacks, self._callbacks = self._callbacks, []
            closing = self._closing
        if closing:  # close() was called while this thread was starting
            self._shut()
            return
        if self.error is None:
            for callback in callbacks:
                self._call(callback)

    def _call(self, callback: Callable[[Client], None]) -> None:
        try:
            callback(self.client)  # type: ignore[arg-type]
        except BaseException as exc:  # a callback's failure is the run's: failed() says it
            self.error = self.error or exc

    def when_started(self, callback: Callable[[Client], None]) -> None:
        """Call ``callback(client)`` once the client is up: now, in this thread, if it is
        already; else in the starting thread as soon as it is. Never if the start fails."""
        with self._lock:
            if not self._started.is_set():
                self._callbacks.append(callback)
                return
        if self.error is None:
            self._call(callback)

    def failed(self) -> BaseException | None:
        """The exception the start (or a callback) raised, if any, without waiting."""
        return self.error if self._started.is_set() else None

    def result(self) -> Client:
        """The client, once it is up; raises what the start raised."""
        self._started.wait()
        if self.error is not None:
            raise self.error
        assert self.client is not None
        return self.client

    def close(self) -> None:
        """Close the client and the cluster, stop the fork server, put the environment
        back; waits for a start still running (which then closes them itself)."""
        with self._lock:
            self._closing = True
            started = self._started.is_set()
        try:
            self._thread.join()
        finally:
            if started:
                self._shut()

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
                if worker_start_method() == "forkserver":
                    _stop_fork_server()
        finally:
            for key in set(os.environ) - set(self._environment):
                del os.environ[key]
            for key, value in self._environment.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Client]:
    """A Dask client on a new local cluster or an existing scheduler, closed on exit.

    ``scheduler: local`` starts a :class:`distributed.LocalCluster` of single-threaded worker
    processes (``workers`` of them, or one per core) without a dashboard, with
    :data:`LOCAL_WORKER_CONFIG`, forked from the fork server (module notes); an address
    connects to a running scheduler (its workers need this package installed, and run as
    they were started: ``dask worker`` sets the trim threshold this module leaves out).
    Returns once the client is up (:func:`optional_client` returns at once).

    Raises
    ------
    AllianceRunError
        When the scheduler at the given address does not answer within
        :data:`CONNECT_TIMEOUT` seconds.
    """
    starting = StartingClient(settings)
    try:
        yield starting.result()
    finally:
        starting.close()


@contextmanager
def optional_client(settings: DaskSettings | None) -> Iterator[StartingClient | None]:
    """``None`` (run serially) for no settings or ``scheduler: none``; else a
    :class:`StartingClient` for ``settings``, closed on exit.

    A start that fails is raised by the run that uses the client; if the run finished
    without it (every chunk ran in this process while the workers were starting), it is
    raised here on exit: a Dask setting that does not work is never passed over in silence.
    """
    if settings is None or settings.scheduler == "none":
        yield None
        return
    starting = StartingClient(settings)
    try:
        yield starting
    finally:
        starting.close()
    if starting.error is not None:
        raise starting.error
