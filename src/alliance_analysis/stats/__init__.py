"""Statistical building blocks shared by the model families: client-level regressions
(:mod:`~alliance_analysis.stats.regression`: ordinary least squares and the one logistic
fit, as :class:`~alliance_analysis.results.ModelResult`) and the one numerical Hessian
(:mod:`~alliance_analysis.stats.numdiff`).

May import: :mod:`alliance_analysis.results`, :mod:`alliance_analysis.errors`.
"""
