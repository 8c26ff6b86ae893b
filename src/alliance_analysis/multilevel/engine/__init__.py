"""The nested mixed-model engine: lme4's profiled REML/ML deviance from per-client sufficient
statistics, for sessions in clients in therapists.

Modules: :mod:`~alliance_analysis.multilevel.engine.nested` (:func:`fit_nested`, the entry
point), :mod:`~alliance_analysis.multilevel.engine.design` (the data and design matrices),
:mod:`~alliance_analysis.multilevel.engine.layout` (the covariance parameters' layout and the
data's sufficient statistics), :mod:`~alliance_analysis.multilevel.engine.blocks` (the
blocked factorisation, batched over clients and parameter vectors),
:mod:`~alliance_analysis.multilevel.engine.small` (batched algebra of small matrices),
:mod:`~alliance_analysis.multilevel.engine.deviance` (the profiled deviance and its
gradient), :mod:`~alliance_analysis.multilevel.engine.satterthwaite` (the curvature, the
Satterthwaite df), :mod:`~alliance_analysis.multilevel.engine.modes` (conditional modes) and
:mod:`~alliance_analysis.multilevel.engine.optimize` (the bounded optimizer and its checks).

May import: :mod:`alliance_analysis.multilevel.derive`, results, errors; nothing else of the
multilevel family (the models call the engine, not the other way round).
"""

from alliance_analysis.multilevel.engine.nested import fit_nested

__all__ = ["fit_nested"]
