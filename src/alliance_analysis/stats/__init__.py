"""Statistical building blocks shared by the model families: client-level regressions
(:mod:`~alliance_analysis.stats.regression`: ordinary least squares and the one logistic
fit, as :class:`~alliance_analysis.results.ModelResult`), the one numerical Hessian
(:mod:`~alliance_analysis.stats.numdiff`), one-thread BLAS for byte-identical results
(:mod:`~alliance_analysis.stats.threads`) and the one runner of chunked, seeded work in this
process or on Dask (:mod:`~alliance_analysis.stats.dask_runner`: power studies, the
specification curve, parametric bootstraps).

May import: :mod:`alliance_analysis.results`, :mod:`alliance_analysis.errors`,
:mod:`alliance_analysis.specs` (the Dask settings).
"""
