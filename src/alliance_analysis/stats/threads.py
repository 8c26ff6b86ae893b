"""Byte-identical results whatever the number of BLAS threads.

A multi-threaded BLAS splits matrix products differently for different thread counts, so
sums are accumulated in a different order and the last bit of a result can change: two demo
runs, one with the default OpenBLAS threads and one with ``OPENBLAS_NUM_THREADS=1``, gave
different SRMR, CFA loadings and omegas. The estimators whose results are written to a
run folder therefore run with the BLAS (and OpenMP) pools limited to one thread, through
threadpoolctl, the maintained library for this (scikit-learn's own choice). The model
matrices of these fits are small (tens of rows), so one thread costs nothing measurable;
the multilevel engine's large products on session-level data are left to the pools, and
its results are checked for identity across thread counts in the tests.

References
----------
threadpoolctl: https://github.com/joblib/threadpoolctl
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from threadpoolctl import threadpool_limits

P = ParamSpec("P")
R = TypeVar("R")


def one_blas_thread(function: Callable[P, R]) -> Callable[P, R]:
    """Run ``function`` with the BLAS and OpenMP thread pools limited to one thread.

    The limits are restored afterwards (also on an error); nested calls are cheap.
    """
    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1):
            return function(*args, **kwargs)
    return wrapper
