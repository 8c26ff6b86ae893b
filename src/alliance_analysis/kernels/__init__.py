"""Notebook kernels for the stages of a run: started ahead of their stage
(:mod:`~alliance_analysis.kernels.pool`) and forked from one process that imported the
scientific stack once (:mod:`~alliance_analysis.kernels.forking`)."""

from alliance_analysis.kernels.pool import (KernelPool, blas_environment, execute_in,
                                           notebook_modules)

__all__ = ["KernelPool", "blas_environment", "execute_in", "notebook_modules"]
