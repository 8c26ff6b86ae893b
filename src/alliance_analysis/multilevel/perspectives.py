"""Client and therapist perspectives on the alliance: agreement and joint effects.

Where both the client (e.g. WAI-SR, 1-5) and the therapist (e.g. WAI-S therapist form, 1-7)
rate the alliance, :func:`rater_agreement` describes how far they agree, and
:func:`rater_within_between` asks whether each rater's view predicts next-session symptoms
when both are in one model. :func:`rater_models` runs both, or none when the run has no
therapist ratings. Their mixed models (the discrepancy's trajectory, the joint
within/between model) are :func:`~alliance_analysis.multilevel.models.growth_model` and
:func:`~alliance_analysis.multilevel.models.within_between_model`, fitted by the nested engine
like every mixed model of the analyses (t intervals with Satterthwaite df).

References
----------
.. [1] Bakdash, J. Z., & Marusich, L. R. (2017). Repeated measures correlation. Frontiers in
   Psychology, 8, 456.
.. [2] Zilcha-Mano, S. (2017). Is the alliance really therapeutic? American Psychologist,
   72(4), 311-325.
.. [3] Cohen, P., Cohen, J., Aiken, L. S., & West, S. G. (1999). The problem of units and the
   circumstance for POMP. Multivariate Behavioral Research, 34(3), 315-346.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from alliance_analysis.multilevel import derive
from alliance_analysis.multilevel.derive import CLIENT, score_column
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.multilevel.models import growth_model, within_between_model
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.results import ModelResult

#: Name of the session-level discrepancy score (``alliance_discrepancy_total``).
DISCREPANCY = "alliance_discrepancy"


def rater_agreement(sessions: pd.DataFrame, alliance: str, therapist_rater: str,
                    options: MultilevelOptions,
                    custom_instruments: Mapping[str, Any] | None = None) -> ModelResult:
    """Agreement of client and therapist alliance ratings.

    Computed on the sessions where both rated the alliance:

    ``between_dyad_r``
        Pearson correlation of the client means of the two ratings (do dyads the client sees
        as strong also look strong to the therapist?), Fisher-z interval, n = clients.
    ``within_dyad_r``
        Repeated-measures correlation (Bakdash & Marusich, 2017): the correlation of the
        two ratings after removing each client's means (do they move together from session
        to session?), with ``N - clients - 1`` degrees of freedom and a Fisher-z interval.
    ``discrepancy_mean``
        Mean over clients of the client's mean discrepancy, client minus therapist rating,
        both in POMP units (percent of the scale's maximum possible, 0-100, because the
        forms have different response scales; Cohen et al., 1999); t interval over clients.
    ``discrepancy_intercept``, ``discrepancy_slope``
        The discrepancy's trajectory: :func:`~alliance_analysis.multilevel.models.growth_model` of
        the session discrepancy (POMP points at the time origin, change per unit of time),
        with the options' random effects; its fit statistics and variance components are
        this result's ``fit`` and ``extra``.
    """
    client_col, therapist_col = score_column(alliance), score_column(therapist_rater)
    derive.require_columns(sessions, [client_col, therapist_col, CLIENT, "session"],
                           "rater_agreement")
    both = derive.in_session_order(sessions).dropna(subset=[client_col, therapist_col])
    if both[CLIENT].nunique() < 4:
        raise AllianceDataError(
            f"rater_agreement: only {both[CLIENT].nunique()} client(s) have sessions rated by "
            f"both {alliance} and {therapist_rater}; at least 4 are needed")
    both = both.assign(**{score_column(DISCREPANCY): (
        derive.pomp(both[client_col], get_instrument(alliance, custom_instruments))
        - derive.pomp(both[therapist_col], get_instrument(therapist_rater, custom_instruments)))})
    growth = growth_model(both, DISCREPANCY, options, name="rater_agreement")
    trajectory = growth.params.assign(term=growth.params["term"].map(
        {"(Intercept)": "discrepancy_intercept", options.time: "discrepancy_slope"}))
    rows = pd.DataFrame([
        _between_dyad(both, client_col, therapist_col, options.ci_level),
        _within_dyad(both, client_col, therapist_col, options.ci_level),
        _mean_discrepancy(both, options.ci_level),
    ])
    return replace(growth, params=pd.concat([rows, trajectory], ignore_index=True),
                   spec=f"agreement of {client_col} and {therapist_col}; trajectory: "
                        f"{growth.spec}")


def _correlation_row(term: str, r: float, df: int, ci_level: float) -> dict[str, Any]:
    """A correlation with its Fisher-z interval (SE 1/sqrt(df - 1)) and t-test p-value."""
    z = stats.norm.ppf(0.5 + ci_level / 2)
    half = z / np.sqrt(df - 1) if df > 1 else np.nan
    t = r * np.sqrt(df / (1 - r * r))
    return {"term": term, "estimate": r, "se": np.nan,
            "ci_low": np.tanh(np.arctanh(r) - half), "ci_high": np.tanh(np.arctanh(r) + half),
            "p": 2 * stats.t.sf(abs(t), df)}


def _between_dyad(both: pd.DataFrame, x: str, y: str, ci_level: float) -> dict[str, Any]:
    means = both.groupby(CLIENT)[[x, y]].mean()
    r = float(np.corrcoef(means[x], means[y])[0, 1])
    return _correlation_row("between_dyad_r", r, len(means) - 2, ci_level)


def _within_dyad(both: pd.DataFrame, x: str, y: str, ci_level: float) -> dict[str, Any]:
    centred = both[[x, y]] - both.groupby(CLIENT)[[x, y]].transform("mean")
    r = float((centred[x] * centred[y]).sum()
              / np.sqrt((centred[x] ** 2).sum() * (centred[y] ** 2).sum()))
    return _correlation_row("within_dyad_r", r, len(both) - both[CLIENT].nunique() - 1,
                            ci_level)


def _mean_discrepancy(both: pd.DataFrame, ci_level: float) -> dict[str, Any]:
    means = both.groupby(CLIENT)[score_column(DISCREPANCY)].mean()
    mean, se = float(means.mean()), float(means.std(ddof=1) / np.sqrt(len(means)))
    t = stats.t.ppf(0.5 + ci_level / 2, len(means) - 1)
    return {"term": "discrepancy_mean", "estimate": mean, "se": se,
            "ci_low": mean - t * se, "ci_high": mean + t * se,
            "p": 2 * stats.t.sf(abs(mean / se), len(means) - 1)}


def rater_within_between(sessions: pd.DataFrame, alliance: str, therapist_rater: str,
                         symptoms: str, options: MultilevelOptions) -> ModelResult:
    """Both raters' within- and between-client alliance effects in one model.

    :func:`~alliance_analysis.multilevel.models.within_between_model` with both alliance ratings:
    ``<symptoms>_total ~ time + <alliance>_within_lag1 + <alliance>_between
    + <rater>_within_lag1 + <rater>_between``. Each within effect is the change in next-session
    symptoms when that rater sees a better alliance than usual, holding the other rater's
    view constant (Zilcha-Mano, 2017). Name ``rater_within_between``.
    """
    return within_between_model(sessions, [alliance, therapist_rater], symptoms, options,
                                name="rater_within_between")


def rater_models(sessions: pd.DataFrame, alliance: str, symptoms: str,
                 options: MultilevelOptions,
                 custom_instruments: Mapping[str, Any] | None = None) -> list[ModelResult]:
    """:func:`rater_agreement` and :func:`rater_within_between`, when both raters exist.

    Returns an empty list when ``options.therapist_rater`` is None or its scores are not in
    the session table (a run without therapist ratings).
    """
    rater = options.therapist_rater
    if rater is None or score_column(rater) not in sessions.columns:
        return []
    return [rater_agreement(sessions, alliance, rater, options, custom_instruments),
            rater_within_between(sessions, alliance, rater, symptoms, options)]
