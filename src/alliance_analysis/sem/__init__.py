"""Structural equation models: CFA of the alliance items, RI-CLPM and CLPM of alliance and
symptoms, latent growth; ML/FIML and DWLS estimation and fit statistics by lavaan's conventions.

Modules: :mod:`~alliance_analysis.sem.models` (fitting a model from lavaan syntax; the CFAs),
:mod:`~alliance_analysis.sem.panel` (RI-CLPM, CLPM, growth),
:mod:`~alliance_analysis.sem.syntax` (generated syntax),
:mod:`~alliance_analysis.sem.estimation` (ML and FIML),
:mod:`~alliance_analysis.sem.fiml` (FIML over missing-data patterns at once: likelihood,
gradient, information, the saturated model's EM), :mod:`~alliance_analysis.sem.fit`
(fit statistics), :mod:`~alliance_analysis.sem.ordinal` and
:mod:`~alliance_analysis.sem.polychoric` (ordinal items), and
:mod:`~alliance_analysis.sem.parameters` (the tidy parameter table).

May import: data, stats, options, params, instruments, results, errors. Never
:mod:`alliance_analysis.multilevel` or :mod:`alliance_analysis.change`, nor the report.
"""

from alliance_analysis.options import SemOptions
from alliance_analysis.sem.models import CfaComparison, fit_cfa, fit_sem, fit_sem_ordinal
from alliance_analysis.sem.invariance import fit_invariance, longitudinal_syntax
from alliance_analysis.sem.panel import (PanelComparison, SemResults, fit_growth, fit_panel,
                                         wide_panel)

__all__ = ["CfaComparison", "PanelComparison", "SemOptions", "SemResults", "fit_cfa",
           "fit_growth", "fit_invariance", "fit_panel", "fit_sem", "fit_sem_ordinal",
           "longitudinal_syntax", "wide_panel"]
