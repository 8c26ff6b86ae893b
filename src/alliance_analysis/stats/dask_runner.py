"""Chunks of seeded work, run in this process or on Dask with the same results.

The Monte Carlo parts of the package (power replicates, the specification curve and its
joint test, parametric-bootstrap intervals) all do the same thing: call one function on
chunks of work items (replicates, specifications, bootstrap samples) and collect what comes
back. This module holds that machinery once, below the model families, so each of them can
use it:

- :func:`dask_client` starts a :class:`distributed.LocalCluster` or connects to a running
  scheduler, and closes both whatever happens (``try/finally``, also on Ctrl-C);
  :func:`optional_client` gives ``None`` for ``scheduler: none``;
- :func:`run_chunks` calls ``function(*shared, *call)`` for each chunk: one after another in
  this process without a client, or as Dask tasks (the shared arguments sent to every
  worker once, with ``scatter``) with one; the results come back in chunk order, and a
  callback sees each as soon as it is done (to store it, to advance a bar);
- :func:`progress_bar` is the bar the runs show on standard error.

Results independent of the workers
----------------------------------
Nothing here draws random numbers. The work functions do, and they must derive each work
item's random stream from the run's seed and the item's index only (for example
``numpy.random.SeedSequence(seed, spawn_key=(i,))``, which is child ``i`` of
``SeedSequence(seed).spawn``), never from a generator passed from one item to the next.
Then an item's result does not depend on which chunk, process or order it ran in, and
since :func:`run_chunks` returns the results in chunk order, neither does anything
computed from them. A multi-threaded BLAS can change the last bit of a product with the
number of its threads, and that number differs between this process and a worker (a local
cluster's nannies start their workers with ``OMP_NUM_THREADS=1`` and friends; a remote
worker has whatever it was given): a work function whose results must be the same to the
last bit everywhere runs with one BLAS thread
(:func:`alliance_analysis.stats.threads.one_blas_thread`).

References
----------
Dask distributed: https://distributed.dask.org (``Client.scatter``, ``as_completed``).
NumPy, "Parallel random number generation":
https://numpy.org/doc/stable/reference/random/parallel.html
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from alliance_analysis.errors import AllianceRunError

if TYPE_CHECKING:
    from distributed import Client

    from alliance_analysis.specs import DaskSettings

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
}

R = TypeVar("R")
T = TypeVar("T")


@contextmanager
def dask_client(settings: DaskSettings) -> Iterator[Client]:
    """A Dask client on a new local cluster or an existing scheduler, closed on exit.

    ``scheduler: local`` starts a :class:`distributed.LocalCluster` of single-threaded worker
    processes (``workers`` of them, or one per core) without a dashboard, with
    :data:`LOCAL_WORKER_CONFIG`; an address connects to a running scheduler (its workers
    need this package installed, and run as they were started: ``dask worker`` sets the
    trim threshold this module leaves out).

    A local cluster's nannies write their workers' environment (``OMP_NUM_THREADS=1``,
    ``PYTHONHASHSEED`` ...) into this process's ``os.environ`` before starting them; it is
    put back as it was when the client closes, so processes started later (a notebook, a
    stage of the pipeline) do not inherit it.

    Raises
    ------
    AllianceRunError
        When the scheduler at the given address does not answer within
        :data:`CONNECT_TIMEOUT` seconds.
    """
    import dask
    from distributed import Client, LocalCluster

    cluster = client = None
    environment = dict(os.environ)
    try:
        if settings.scheduler == "local":
            with dask.config.set(LOCAL_WORKER_CONFIG):
                # no dashboard; the scheduler's small HTTP server (health checks) on a free
                # port, not on 8787 with a warning when another cluster holds that one
                cluster = LocalCluster(n_workers=settings.workers or os.cpu_count() or 1,
                                       threads_per_worker=1, processes=True,
                                       dashboard_address=None,
                                       scheduler_kwargs={"dashboard_address": ":0"})
            client = Client(cluster)
        else:
            try:
                client = Client(settings.scheduler, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                raise AllianceRunError(
                    f"cannot reach the Dask scheduler at {settings.scheduler} "
                    f"({type(exc).__name__}: {exc}). Start it (`dask scheduler`) and its "
                    "workers, check the address under dask.scheduler, or use "
                    "scheduler: local") from None
        yield client
    finally:
        try:
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        finally:
            for key in set(os.environ) - set(environment):
                del os.environ[key]
            for key, value in environment.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value


@contextmanager
def optional_client(settings: DaskSettings | None) -> Iterator[Client | None]:
    """:func:`dask_client` for ``settings``; ``None`` (run serially) for no settings or
    ``scheduler: none``."""
    if settings is None or settings.scheduler == "none":
        yield None
    else:
        with dask_client(settings) as client:
            yield client


def chunked(items: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """``items`` cut into consecutive tuples of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError(f"chunked: size must be at least 1, not {size}")
    return [tuple(items[k:k + size]) for k in range(0, len(items), size)]


def run_chunks(function: Callable[..., R], calls: Sequence[tuple[Any, ...]],
               shared: tuple[Any, ...] = (), *, client: Client | None = None,
               name: str = "chunk", keys: Sequence[str] | None = None,
               on_done: Callable[[int, R], None] | None = None) -> list[R]:
    """``function(*shared, *call)`` for every call, in this process or on Dask.

    Parameters
    ----------
    function
        A module-level function (Dask's workers import it by name).
    calls
        The arguments of each chunk (after the shared ones), e.g. ``(samples,)``.
    shared
        Arguments every chunk takes first (data, a fitted model). On Dask each is sent to
        every worker once (``scatter(broadcast=True)``) instead of with every task.
    client
        A Dask client (:func:`dask_client`), or None to run the chunks one after another
        here.
    name
        Prefix of the Dask task keys (shown on the dashboard).
    keys
        The task keys, one per call, instead of ``name`` and a fresh random token.
    on_done
        Called with ``(index of the call, its result)`` as each chunk finishes: in call order
        here, in order of completion on Dask. An exception it raises stops the run.

    Returns
    -------
    list
        The results in call order, whatever order they finished in.
    """
    if keys is not None and len(keys) != len(calls):
        raise ValueError(f"run_chunks: {len(keys)} keys for {len(calls)} calls")
    results: list[Any] = [None] * len(calls)
    if client is None:
        for index, call in enumerate(calls):
            results[index] = function(*shared, *call)
            if on_done is not None:
                on_done(index, results[index])
        return results
    if not calls:
        return results
    from distributed import as_completed

    scattered = client.scatter(list(shared), broadcast=True) if shared else []
    if keys is None:
        token = uuid.uuid4().hex[:12]
        keys = [f"{name}-{token}-{index}" for index in range(len(calls))]
    futures = {client.submit(function, *scattered, *call, key=key, pure=False): index
               for index, (call, key) in enumerate(zip(calls, keys, strict=True))}
    try:
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            if on_done is not None:
                on_done(index, results[index])
    finally:
        client.cancel([f for f in futures if not f.done()])
    return results


@contextmanager
def progress_bar(total: int, reused: int, show: bool, what: str = "replicates"
                 ) -> Iterator[Callable[[int], None]]:
    """A rich progress bar of ``what``; yields the function that advances it.

    ``reused`` (items found already stored) is named in the label. In a terminal the bar is
    redrawn live on standard error. In a notebook rich's live bar needs ipywidgets, and
    redrawing as text would print a line per update, so the bar is printed once, as text,
    when the run finishes.
    """
    label = what + (f" ({reused} already stored)" if reused else "")
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    in_notebook = Console().is_jupyter
    console = Console(stderr=True, force_jupyter=False,
                      force_terminal=False if in_notebook else None)
    with Progress(*columns, console=console, disable=not show) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
