"""Mixed (multilevel) models of alliance and symptom change.

Sessions are nested in clients, clients in therapists. This module fits the models alliance
papers report, each returning a :class:`~alliance_analysis.results.ModelResult`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Optimizers tried in order; the first converged fit with the best log-likelihood is kept.
DEFAULT_OPTIMIZERS = ("lbfgs", "bfgs", "powell", "nm")


class MultilevelOptions(BaseModel):
    """Choices of the multilevel models (``multilevel:`` in the run parameters).

    The defaults run the demo: a three-level model (sessions in clients in therapists) with
    a client random slope of session independent of the client intercept, fitted by REML.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reml: bool = Field(
        True, description="REML (unbiased variance components; compare models with different "
        "random effects only) or ML (needed to compare models with different fixed effects "
        "by likelihood ratio, AIC or BIC)")
    time: Literal["session", "log_session", "day"] = Field(
        "session", description="time metric of growth: session number, log of session number "
        "(fast early change), or days since the client's first session")
    time_origin: int = Field(
        1, ge=1, description="session at which time is 0, so the intercept is the expected "
        "level at this session (for 'day': day 0 is the client's first session)")
    therapist_level: bool = Field(
        True, description="add a random therapist intercept (three levels: sessions in "
        "clients in therapists)")
    client_slope: bool = Field(
        True, description="random client slope of time (clients change at different rates)")
    correlated_slope: bool = Field(
        False, description="let the client intercept and slope correlate, as lme4's "
        "(1 + time | client); statsmodels can fit this only with therapist_level false")
    lagged_outcome: bool = Field(
        False, description="within/between models: add the current symptom level (session "
        "t) as a covariate of symptoms at t+1 (see the Nickell-bias note in the docs)")
    detrend: bool = Field(
        False, description="within/between models: split alliance around each client's own "
        "linear trend instead of their mean (Falkenström et al. 2017)")
    early_sessions: int = Field(
        5, ge=1, description="early alliance is the client's mean alliance over sessions "
        "1..early_sessions")
    dropout_sessions: int = Field(
        8, ge=2, description="premature dropout: the client attended fewer sessions than "
        "this (clients still in treatment when the data end also count; set it to the planned "
        "minimum dose of treatment)")
    therapist_rater: str | None = Field(
        "wai_t", description="the therapist-rated alliance instrument for the client-therapist "
        "perspective models; None skips them")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of every interval")
    icc_ci: Literal["delta", "bootstrap"] = Field(
        "delta", description="CI of intraclass correlations: delta method on the logit scale "
        "(fast) or seeded parametric bootstrap (slower, better in few therapists)")
    bootstrap_samples: int = Field(
        200, ge=10, description="parametric bootstrap replications when icc_ci is 'bootstrap'")
    optimizers: tuple[str, ...] = Field(
        DEFAULT_OPTIMIZERS, min_length=1, description="statsmodels MixedLM optimizers tried in "
        "order; later ones only when the earlier fail to converge")
    max_iter: int = Field(
        1000, ge=1, description="maximum iterations of each optimizer attempt")
