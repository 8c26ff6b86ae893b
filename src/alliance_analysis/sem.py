"""Structural equation models of the alliance: measurement, dynamics and growth.

This module holds the options of the SEM stage (:class:`SemOptions`, wired into the run
parameters as ``params.sem``) and the model functions built on semopy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class SemOptions(BaseModel):
    """Options of the structural equation models (``sem:`` in the parameters file).

    The defaults run the demo. Sessions are the session numbers of the canonical table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cfa_session: int = Field(
        1, ge=1, description="session whose alliance items the CFA models")
    estimator: Literal["ML", "DWLS"] = Field(
        "ML", description="CFA estimator: 'ML' treats the Likert items as continuous; 'DWLS' "
        "fits polychoric correlations (ordinal items; robust SEs and chi-square not reported)")
    waves: tuple[int, ...] = Field(
        (1, 2, 3, 4), description="sessions used as the panel waves of the RI-CLPM and CLPM "
        "(at least 3, increasing)")
    constrain_autoregressive: bool = Field(
        False, description="constrain each variable's autoregressive path equal over waves")
    constrain_crosslagged: bool = Field(
        False, description="constrain each cross-lagged path equal over waves")
    missing: Literal["fiml", "listwise"] = Field(
        "fiml", description="missing waves: full-information ML, or drop incomplete clients")
    growth_sessions: tuple[int, ...] = Field(
        (1, 2, 3, 4, 5, 6), description="sessions of the symptom latent growth model "
        "(at least 3, increasing); the slope loading is the session number minus the first")
    early_sessions: int = Field(
        3, ge=1, description="early alliance = the client's mean alliance over sessions "
        "1..early_sessions; it predicts the growth slope")

    @field_validator("waves", "growth_sessions", mode="before")
    @classmethod
    def _list_to_tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("waves", "growth_sessions")
    @classmethod
    def _increasing_sessions(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) < 3:
            raise ValueError("needs at least 3 sessions (fewer cannot identify the model)")
        if value[0] < 1 or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError("must be session numbers >= 1 in increasing order, e.g. [1, 2, 3]")
        return value
