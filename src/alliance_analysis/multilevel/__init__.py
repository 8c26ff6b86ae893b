"""Multilevel (mixed) models: sessions in clients in therapists.

Modules: :mod:`~alliance_analysis.multilevel.models` (growth, within/between, therapist
effects, alliance as outcome), :mod:`~alliance_analysis.multilevel.derive` (derived
columns: time codes, person-mean centring, detrending, lags; client summaries come from
:mod:`alliance_analysis.data.clients`),
:mod:`~alliance_analysis.multilevel.icc` (intraclass correlations),
:mod:`~alliance_analysis.multilevel.perspectives` (client and therapist ratings),
:mod:`~alliance_analysis.multilevel.specified` (the researcher's own models, ``models:``),
:mod:`~alliance_analysis.multilevel.bootstrap` (parametric-bootstrap intervals),
:mod:`~alliance_analysis.multilevel.r2` (marginal and conditional R2, Nakagawa et al.),
:mod:`~alliance_analysis.multilevel.engine` (the nested engine that fits every linear mixed
model: lme4's profiled REML/ML, Satterthwaite df) and
:mod:`~alliance_analysis.multilevel.mixedfit` (statsmodels MixedLM, kept only as an
independent check for the tests, the tutorials and the power study).

May import: data, stats, options, params, instruments, results, errors. Never
:mod:`alliance_analysis.sem` or :mod:`alliance_analysis.change` (the model families are
independent), nor the report or the pipeline.
"""

from alliance_analysis.multilevel.icc import null_model_iccs
from alliance_analysis.multilevel.models import (MultilevelResults, alliance_growth,
                                                 early_alliance_slope, growth_model,
                                                 random_part, therapist_effects,
                                                 within_between_model)
from alliance_analysis.multilevel.perspectives import rater_models
from alliance_analysis.options import MultilevelOptions

__all__ = ["MultilevelOptions", "MultilevelResults", "alliance_growth", "early_alliance_slope",
           "growth_model", "null_model_iccs", "random_part", "rater_models",
           "therapist_effects", "within_between_model"]
