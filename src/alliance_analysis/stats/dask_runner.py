"""Chunks of seeded work, run in this process or on Dask with the same results.

The Monte Carlo parts of the package (power replicates, the specification curve and its
joint test, parametric-bootstrap intervals) all do the same thing: call one function on
chunks of work items (replicates, specifications, bootstrap samples) and collect what comes
back. This module holds that machinery once, below the model families, so each of them can
use it:

- :func:`dask_client` starts a :class:`distributed.LocalCluster` or connects to a running
  scheduler, and closes both whatever happens (``try/finally``, also on Ctrl-C);
  :func:`optional_client` gives ``None`` for ``scheduler: none`` and otherwise starts the
  client in the background (both in :mod:`alliance_analysis.stats.dask_cluster`, importable
  from here);
- :func:`run_chunks` calls ``function(*shared, *call)`` for each chunk: one after another in
  this process without a client, or as Dask tasks (the shared arguments sent to every
  worker once, with ``scatter``) with one; the results come back in chunk order, and a
  callback sees each as soon as it is done (to store it, to advance a bar). Given a client
  that is still starting, it runs chunks here meanwhile and hands the rest to the workers
  the moment they are up (:func:`run_with_head_start`);
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

import queue
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from alliance_analysis.stats.dask_cluster import (  # re-exported: the runs' one import
    CONNECT_TIMEOUT,
    LOCAL_WORKER_CONFIG,
    StartingClient,
    dask_client,
    optional_client,
)

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["CONNECT_TIMEOUT", "LOCAL_WORKER_CONFIG", "StartingClient", "chunked",
           "dask_client", "optional_client", "progress_bar", "run_chunks",
           "run_with_head_start"]

#: Seconds a thread may hold the GIL while another waits for it, during a head start
#: (:func:`run_with_head_start`; Python's default is 0.005). The cluster starts in threads of
#: this process (its event loop: the scheduler, the nannies) that take the GIL for a moment
#: at every step; while this thread computes, each such step waited up to the full default
#: interval, and the start of a 2-worker cluster took 18-26 s instead of 3-4 s beside a
#: busy pure-Python loop (6.9 s at 0.001, 4.6 s at 0.00005).
HEAD_START_SWITCH_INTERVAL = 0.00005

R = TypeVar("R")
T = TypeVar("T")


def chunked(items: Sequence[T], size: int) -> list[tuple[T, ...]]:
    """``items`` cut into consecutive tuples of ``size`` (the last one shorter)."""
    if size < 1:
        raise ValueError(f"chunked: size must be at least 1, not {size}")
    return [tuple(items[k:k + size]) for k in range(0, len(items), size)]


def run_chunks(function: Callable[..., R], calls: Sequence[tuple[Any, ...]],
               shared: tuple[Any, ...] = (), *, client: Client | StartingClient | None = None,
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
        A Dask client (:func:`dask_client`); a client still starting
        (:func:`optional_client`), which first runs chunks here
        (:func:`run_with_head_start`); or None to run the chunks one after another here.
    name
        Prefix of the Dask task keys (shown on the dashboard).
    keys
        The task keys, one per call, instead of ``name`` and a fresh random token.
    on_done
        Called with ``(index of the call, its result)`` as each chunk finishes, always in
        the calling thread: in call order here, in order of completion on Dask. An
        exception it raises stops the run.

    Returns
    -------
    list
        The results in call order, whatever order and place they finished in.
    """
    if keys is not None and len(keys) != len(calls):
        raise ValueError(f"run_chunks: {len(keys)} keys for {len(calls)} calls")
    if keys is None:
        token = uuid.uuid4().hex[:12]
        keys = [f"{name}-{token}-{index}" for index in range(len(calls))]
    if isinstance(client, StartingClient):
        return run_with_head_start(function, calls, shared, client, keys, on_done)
    results: list[Any] = [None] * len(calls)
    if client is None:
        for index, call in enumerate(calls):
            results[index] = function(*shared, *call)
            if on_done is not None:
                on_done(index, results[index])
        return results
    futures = _submit(client, function, calls, shared, keys, range(len(calls)))
    _collect(client, futures, results, on_done)
    return results


def run_with_head_start(function: Callable[..., R], calls: Sequence[tuple[Any, ...]],
                        shared: tuple[Any, ...], starting: StartingClient,
                        keys: Sequence[str],
                        on_done: Callable[[int, R], None] | None = None) -> list[R]:
    """:func:`run_chunks` on a client that is still starting: chunks run here meanwhile.

    This process takes the chunks one at a time, in call order, and runs them itself until
    the client is up. At that moment the starting thread takes every chunk not yet begun
    and submits them to the workers (:meth:`StartingClient.when_started`); this process
    finishes the chunk in hand and then collects the workers' results. Nothing is computed
    twice, and since a chunk's result does not depend on where it runs (module notes), the
    results are those of any other run. A start that fails is raised after the chunk in
    hand: no chunk is run here in its place.

    Why: starting a local cluster takes seconds, during which a core would otherwise wait
    (the fork server's imports take one; :mod:`alliance_analysis.stats.dask_cluster`).
    """
    results: list[Any] = [None] * len(calls)
    pending = deque(range(len(calls)))
    lock = threading.Lock()
    handed: queue.SimpleQueue[dict[Future, int] | BaseException] = queue.SimpleQueue()

    def hand_over(client: Client) -> None:
        with lock:
            rest = list(pending)
            pending.clear()
        try:
            handed.put(_submit(client, function, calls, shared, keys, rest) if rest else {})
        except BaseException as exc:  # raised in the waiting thread
            handed.put(exc)

    starting.when_started(hand_over)
    ran_here = 0
    try:
        with _short_switch_interval():
            while True:
                error = starting.failed()
                if error is not None:
                    raise error
                with lock:
                    if not pending:
                        break
                    index = pending.popleft()
                results[index] = function(*shared, *calls[index])
                ran_here += 1
                if on_done is not None:
                    on_done(index, results[index])
    finally:  # stopped here (an error, Ctrl-C): the workers get nothing more
        with lock:
            pending.clear()
    if ran_here == len(calls):
        return results
    futures = handed.get()  # hand_over took the rest: its futures, or why it failed
    if isinstance(futures, BaseException):
        raise futures
    _collect(starting.result(), futures, results, on_done)
    return results


_switch_lock = threading.Lock()
_switch_users = 0
_switch_saved = 0.005


@contextmanager
def _short_switch_interval() -> Iterator[None]:
    """:data:`HEAD_START_SWITCH_INTERVAL` while any head start runs (in any thread); the
    interval found before the first is put back after the last."""
    global _switch_users, _switch_saved
    with _switch_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(HEAD_START_SWITCH_INTERVAL)
        _switch_users += 1
    try:
        yield
    finally:
        with _switch_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


def _submit(client: Client, function: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
            shared: tuple[Any, ...], keys: Sequence[str],
            indices: Sequence[int]) -> dict[Future, int]:
    """Submit the calls at ``indices`` as Dask tasks; their futures and indices."""
    scattered = client.scatter(list(shared), broadcast=True) if shared else []
    return {client.submit(function, *scattered, *calls[index], key=keys[index],
                          pure=False): index for index in indices}


def _collect(client: Client, futures: dict[Future, int], results: list[Any],
             on_done: Callable[[int, Any], None] | None) -> None:
    """Wait for ``futures``, storing each result at its call's index as it finishes."""
    if not futures:
        return
    from distributed import as_completed

    try:
        for future in as_completed(futures):
            index = futures[future]
            results[index] = future.result()
            if on_done is not None:
                on_done(index, results[index])
    finally:
        client.cancel([f for f in futures if not f.done()])


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
