"""The session simulator behind :func:`alliance_analysis.data.simulate.simulate`.

:func:`draw` draws a realistic long-format session table (therapists, clients, sessions,
dropout, missing questionnaires and items, a few planted data-entry faults) from a model whose
parameters are all known (:class:`SimulationDesign`), so that every analysis in the workbench
can be checked against the truth it should recover.

The generating model, in brief (``truth.json`` holds the full equations):

* alliance on the WAI-SR item-mean scale (1-5): therapist, client and session variation around
  a grand mean, with slow growth over sessions; WAI-SR items from three correlated factors
  (Goal, Task, Bond) around it, and a therapist-rated WAI-S (1-7) correlated with it;
* PHQ-9 total: a growth curve with random client intercepts and slopes and therapist
  intercepts, plus a *within-client* effect of last session's alliance deviation from the
  client's own mean and a different *between-client* effect of that mean;
  GAD-7 correlated with the PHQ-9;
* dropout after `min_sessions`, more likely when early alliance is low; missed
  questionnaires depending on the last observed PHQ-9 total, missing items depending on age
  band (both missing at random given observed data).

The alliance scores that drive symptoms are the *observed* WAI-SR item means (before
missingness), so the within/between decomposition a researcher computes from the data is the
one in the true model, up to the missing values.

References
----------
.. [1] Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
   between-person effects in longitudinal models of change. Annual Review of Psychology, 62,
   583-619.
.. [2] Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
   models of individual change in psychotherapy process research. Journal of Consulting and
   Clinical Psychology, 85(6), 537-549.
.. [3] Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling alliance-outcome
   correlations: Exploring the relative importance of therapist and patient variability in
   the alliance. Journal of Consulting and Clinical Psychology, 75(6), 842-852.
"""

from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alliance_analysis import __version__
from alliance_analysis.instruments import INSTRUMENTS

AGE_BANDS = ("18-25", "26-35", "36-50", "51-65", "66+")
AGE_BAND_PROBS = (0.22, 0.30, 0.28, 0.15, 0.05)
GENDERS = ("female", "male", "non-binary")
GENDER_PROBS = (0.62, 0.35, 0.03)
ARMS = ("CBT", "PDT")

# Item-level constants of the generating model (not design fields: they are vectors).
WAI_ITEM_OFFSETS = (0.10, -0.05, 0.15, -0.10, 0.05, 0.00, 0.10, -0.15, -0.05, 0.05, -0.10, 0.00)
WAI_T_ITEM_OFFSETS = (0.20, -0.10, 0.10, -0.20, 0.00, 0.10, -0.10, 0.20, 0.00, -0.20, 0.10, -0.10)
PHQ9_ITEM_LOG_WEIGHTS = (0.1, 0.1, 0.3, 0.4, 0.0, -0.1, 0.0, -0.3, -1.2)
GAD7_ITEM_LOG_WEIGHTS = (0.2, 0.1, 0.3, 0.1, -0.3, 0.1, -0.2)
ITEM_WEIGHT_SD = 0.3


class SimulationDesign(BaseModel):
    """Size of the simulated service and every true parameter of the generating model.

    The defaults give the demo dataset in ``data/demo``. Alliance parameters are on the WAI-SR
    item-mean scale (1-5); symptom parameters on the PHQ-9 total scale (0-27); ``*_logor``
    fields are log odds ratios; ``*_rate`` and ``dropout_hazard`` are baseline probabilities.
    Every field is an int or a float, so the command line exposes each as ``--field-name``.
    """

    model_config = ConfigDict(extra="forbid")

    therapists: int = Field(40, ge=1, description="number of therapists")
    clients_per_therapist: int = Field(10, ge=1, description="clients per therapist")
    min_sessions: int = Field(
        4, ge=3, description="sessions every client attends (at least the early sessions 1-3)"
    )
    max_sessions: int = Field(20, ge=1, description="most sessions a client attends")
    session_interval_days: float = Field(7.0, gt=0, description="mean days between sessions")
    session_interval_sd_days: float = Field(2.0, ge=0, description="SD of days between sessions")

    alliance_mean: float = Field(3.8, ge=1, le=5, description="grand mean, WAI-SR item mean")
    alliance_therapist_sd: float = Field(0.15, ge=0, description="therapist SD of alliance")
    alliance_client_sd: float = Field(0.45, ge=0, description="client SD of alliance")
    alliance_session_sd: float = Field(0.30, ge=0, description="within-client session SD")
    alliance_growth: float = Field(0.02, description="alliance change per session")
    wai_factor_sd: float = Field(0.20, ge=0, description="SD of Goal/Task/Bond around alliance")
    wai_item_sd: float = Field(0.45, ge=0, description="WAI-SR item noise SD before rounding")

    wai_t_mean: float = Field(5.3, ge=1, le=7, description="therapist-rated WAI-S mean (1-7)")
    wai_t_client_loading: float = Field(
        0.8, description="therapist-rated points per client-rated alliance point"
    )
    wai_t_therapist_sd: float = Field(0.4, ge=0, description="SD of therapist leniency")
    wai_t_session_sd: float = Field(0.5, ge=0, description="therapist rating session SD")
    wai_t_item_sd: float = Field(0.5, ge=0, description="WAI-S item noise SD before rounding")

    phq9_intercept: float = Field(14.0, description="mean PHQ-9 total at session 1")
    phq9_client_intercept_sd: float = Field(3.5, ge=0, description="client intercept SD")
    phq9_slope: float = Field(-0.3, description="mean PHQ-9 change per session")
    phq9_client_slope_sd: float = Field(0.15, ge=0, description="client slope SD")
    phq9_intercept_slope_corr: float = Field(
        -0.2, gt=-1, lt=1, description="correlation of client intercepts and slopes"
    )
    phq9_therapist_sd: float = Field(1.0, ge=0, description="therapist intercept SD")
    phq9_residual_sd: float = Field(2.5, ge=0, description="session residual SD")
    within_effect: float = Field(
        -1.5, description="PHQ-9 points per WAI-SR point of last session's within-client deviation"
    )
    between_effect: float = Field(
        -4.0, description="PHQ-9 points per WAI-SR point of the client's mean alliance"
    )

    gad7_intercept: float = Field(11.0, description="GAD-7 total when PHQ-9 is at its intercept")
    gad7_phq9_loading: float = Field(0.5, description="GAD-7 points per PHQ-9 point")
    gad7_residual_sd: float = Field(2.5, ge=0, description="GAD-7 residual SD")

    dropout_hazard: float = Field(
        0.12, gt=0, lt=1, description="chance of ending after each session from min_sessions"
    )
    dropout_early_alliance_logor: float = Field(
        -1.0, description="log odds ratio of ending per WAI-SR point of early alliance"
    )
    missed_questionnaire_rate: float = Field(
        0.06, gt=0, lt=1, description="chance the client's forms are missed at a session >= 2"
    )
    missed_previous_phq9_logor: float = Field(
        0.05, description="log odds ratio of missing forms per last observed PHQ-9 point"
    )
    therapist_missed_rate: float = Field(
        0.04, ge=0, lt=1, description="chance the therapist form is missed (at random)"
    )
    missing_item_rate: float = Field(
        0.01, gt=0, lt=1, description="chance an item is left blank (middle age band)"
    )
    missing_item_age_logor: float = Field(
        0.3, description="log odds ratio of a blank item per age band step"
    )

    @model_validator(mode="after")
    def _sessions_ordered(self) -> "SimulationDesign":
        if self.max_sessions < self.min_sessions:
            raise ValueError(
                f"max_sessions ({self.max_sessions}) must be at least "
                f"min_sessions ({self.min_sessions})"
            )
        return self


def draw(design: SimulationDesign, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Simulate a session dataset from known true parameters.

    Parameters
    ----------
    design : SimulationDesign
        Size and true parameters; the defaults give the demo dataset.
    seed : int
        Seed of the only random generator used, ``numpy.random.default_rng(seed)``.

    Returns
    -------
    (sessions, truth)
        ``sessions`` (long format, one row per client and session, with three planted
        data-entry faults) and ``truth`` (every true parameter, the equations, realised
        summaries such as the therapist-level ICC of alliance, and the faults).

    Notes
    -----
    For client i of therapist j at session t (t = 1..T_i)::

        alliance[i,t] = alliance_mean + v[j] + w[i] + alliance_growth*(t-1) + eps[i,t]
        wai_obs[i,t]  = mean of the 12 WAI-SR items generated around alliance[i,t]
        wai_between[i] = mean of wai_obs[i,t] over the sessions attended
        wai_within[i,t] = wai_obs[i,t] - wai_between[i]
        phq9[i,t] = phq9_intercept + u0[i] + u[j] + (phq9_slope + u1[i])*(t-1)
                    + within_effect*wai_within[i,t-1]          (0 at t = 1)
                    + between_effect*(wai_between[i] - alliance_mean) + e[i,t]

    The PHQ-9 total is the stochastic rounding of ``phq9`` clipped to 0..27, so its
    expectation equals ``phq9`` away from the bounds; items share out that total. Alliance is
    not affected by symptoms here, so a lagged, person-mean-centred mixed model recovers
    `within_effect` and `between_effect` without dynamic-panel bias ([1]_, [2]_).

    References
    ----------
    .. [1] Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
       between-person effects in longitudinal models of change. Annual Review of
       Psychology, 62, 583-619.
    .. [2] Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017).
       Dynamic models of individual change in psychotherapy process research. Journal of
       Consulting and Clinical Psychology, 85(6), 537-549.
    """
    rng = np.random.default_rng(seed)
    clients = _draw_clients(design, rng)
    alliance, alliance_parts = _draw_alliance(design, clients, rng)
    wai = _wai_items(design, alliance, rng)
    wai_obs = wai.mean(axis=2)
    n_sessions = _draw_session_counts(design, wai_obs, rng)
    attended = np.arange(design.max_sessions)[None, :] < n_sessions[:, None]
    wai_between, wai_within = _centre(wai_obs, attended)
    phq9_latent = _phq9_latent(design, clients, wai_between, wai_within, rng)
    phq9 = _share_out(phq9_latent, PHQ9_ITEM_LOG_WEIGHTS, 3, rng)
    gad7_latent = (
        design.gad7_intercept
        + design.gad7_phq9_loading * (phq9_latent - design.phq9_intercept)
        + rng.normal(0.0, design.gad7_residual_sd, phq9_latent.shape)
    )
    gad7 = _share_out(gad7_latent, GAD7_ITEM_LOG_WEIGHTS, 3, rng)
    wai_t = _wai_t_items(design, clients, alliance, rng)
    days = _draw_days(design, rng)
    items = {"wai": wai, "wai_t": wai_t, "phq9": phq9, "gad7": gad7}
    masked, missed = _apply_missingness(design, clients, items, rng)
    frame = _long_frame(design, clients, days, masked, attended)
    frame, faults = _plant_faults(frame, rng)
    realised = {
        "n_therapists": design.therapists,
        "n_clients": int(len(n_sessions)),
        "n_sessions_total": int(attended.sum()),
        "sessions_per_client_mean": float(n_sessions.mean()),
        "sessions_per_client_min": int(n_sessions.min()),
        "sessions_per_client_max": int(n_sessions.max()),
        "icc_alliance_therapist": _realised_icc(alliance_parts, attended),
        "wai_obs_mean": float(wai_obs[attended].mean()),
        "wai_obs_within_sd": float(wai_within[attended].std()),
        "wai_between_sd": float(wai_between.std()),
        "wai_t_wai_correlation": float(
            np.corrcoef(wai_t.mean(axis=2)[attended], wai_obs[attended])[0, 1]
        ),
        "phq9_latent_below_0_share": float((phq9_latent[attended] < 0).mean()),
        "phq9_latent_above_27_share": float((phq9_latent[attended] > 27).mean()),
        "phq9_gad7_total_correlation": float(
            np.corrcoef(phq9.sum(axis=2)[attended], gad7.sum(axis=2)[attended])[0, 1]
        ),
        **_missing_shares(masked, missed, attended),
    }
    return frame, _truth(design, seed, realised, faults, list(frame.columns))


def _draw_clients(design: SimulationDesign, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Therapist of each client, covariates, and the client and therapist random effects."""
    n = design.therapists * design.clients_per_therapist
    therapist = np.repeat(np.arange(design.therapists), design.clients_per_therapist)
    z0, z1 = rng.standard_normal(n), rng.standard_normal(n)
    r = design.phq9_intercept_slope_corr
    return {
        "therapist": therapist,
        "age": rng.choice(len(AGE_BANDS), size=n, p=AGE_BAND_PROBS),
        "gender": rng.choice(len(GENDERS), size=n, p=GENDER_PROBS),
        "arm": rng.integers(0, len(ARMS), size=n),
        "alliance_therapist": rng.normal(0.0, design.alliance_therapist_sd, design.therapists),
        "alliance_client": rng.normal(0.0, design.alliance_client_sd, n),
        "phq9_therapist": rng.normal(0.0, design.phq9_therapist_sd, design.therapists),
        "phq9_u0": design.phq9_client_intercept_sd * z0,
        "phq9_u1": design.phq9_client_slope_sd * (r * z0 + np.sqrt(1 - r**2) * z1),
        "wai_t_leniency": rng.normal(0.0, design.wai_t_therapist_sd, design.therapists),
    }


def _draw_alliance(
    design: SimulationDesign, clients: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Latent session alliance (clients x sessions) and its three variance components."""
    n, t = len(clients["therapist"]), design.max_sessions
    parts = {
        "therapist": clients["alliance_therapist"],
        "client": clients["alliance_client"],
        "session": rng.normal(0.0, design.alliance_session_sd, (n, t)),
    }
    alliance = (
        design.alliance_mean
        + parts["therapist"][clients["therapist"]][:, None]
        + parts["client"][:, None]
        + design.alliance_growth * np.arange(t)[None, :]
        + parts["session"]
    )
    return alliance, parts


def _wai_items(
    design: SimulationDesign, alliance: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """WAI-SR items 1-5 from Goal, Task and Bond factors around the session alliance."""
    wai = INSTRUMENTS["wai"]
    factor_of_item = np.empty(wai.n_items, dtype=int)
    for k, numbers in enumerate(wai.subscales.values()):
        factor_of_item[np.asarray(numbers) - 1] = k
    factors = alliance[..., None] + rng.normal(
        0.0, design.wai_factor_sd, alliance.shape + (len(wai.subscales),)
    )
    continuous = (
        factors[..., factor_of_item]
        + np.asarray(WAI_ITEM_OFFSETS)
        + rng.normal(0.0, design.wai_item_sd, alliance.shape + (wai.n_items,))
    )
    return np.clip(np.rint(continuous), wai.item_min, wai.item_max)


def _wai_t_items(
    design: SimulationDesign,
    clients: dict[str, np.ndarray],
    alliance: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Therapist-rated WAI-S items 1-7, correlated with but not equal to the client's view."""
    wai_t = INSTRUMENTS["wai_t"]
    latent = (
        design.wai_t_mean
        + design.wai_t_client_loading * (alliance - design.alliance_mean)
        + clients["wai_t_leniency"][clients["therapist"]][:, None]
        + rng.normal(0.0, design.wai_t_session_sd, alliance.shape)
    )
    continuous = (
        latent[..., None]
        + np.asarray(WAI_T_ITEM_OFFSETS)
        + rng.normal(0.0, design.wai_t_item_sd, alliance.shape + (wai_t.n_items,))
    )
    return np.clip(np.rint(continuous), wai_t.item_min, wai_t.item_max)


def _draw_session_counts(
    design: SimulationDesign, wai_obs: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sessions attended: dropout after `min_sessions`, likelier with low early alliance.

    Early alliance is the mean observed WAI-SR score over sessions 1-3, which every client
    attends (`min_sessions` >= 3).
    """
    early = wai_obs[:, :3].mean(axis=1)
    hazard = _expit(
        _logit(design.dropout_hazard)
        + design.dropout_early_alliance_logor * (early - design.alliance_mean)
    )
    ends = rng.random(wai_obs.shape) < hazard[:, None]
    ends[:, : design.min_sessions - 1] = False
    ends[:, design.max_sessions - 1] = True
    return ends.argmax(axis=1) + 1


def _centre(wai_obs: np.ndarray, attended: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Client means over attended sessions, and session deviations from them."""
    between = np.where(attended, wai_obs, 0.0).sum(axis=1) / attended.sum(axis=1)
    return between, wai_obs - between[:, None]


def _phq9_latent(
    design: SimulationDesign,
    clients: dict[str, np.ndarray],
    wai_between: np.ndarray,
    wai_within: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Continuous PHQ-9 total: growth curve plus lagged within and between alliance effects."""
    n, t = wai_within.shape
    time = np.arange(t)[None, :]
    within_lag = np.zeros_like(wai_within)
    within_lag[:, 1:] = wai_within[:, :-1]
    return (
        design.phq9_intercept
        + clients["phq9_u0"][:, None]
        + clients["phq9_therapist"][clients["therapist"]][:, None]
        + (design.phq9_slope + clients["phq9_u1"][:, None]) * time
        + design.within_effect * within_lag
        + design.between_effect * (wai_between[:, None] - design.alliance_mean)
        + rng.normal(0.0, design.phq9_residual_sd, (n, t))
    )


def _share_out(
    latent: np.ndarray, log_weights: tuple[float, ...], item_max: int, rng: np.random.Generator
) -> np.ndarray:
    """Integer items (0..item_max) whose sum is the stochastic rounding of the latent total.

    The latent total is clipped to 0..n_items*item_max and rounded up with probability equal
    to its fractional part, so the expected sum equals the latent total inside the bounds.
    The points are then dealt one at a time to items with room left, with probability
    proportional to ``exp(log_weight + N(0, ITEM_WEIGHT_SD^2))`` per row and item.
    """
    n_items = len(log_weights)
    clipped = np.clip(latent, 0.0, n_items * item_max)
    floor = np.floor(clipped)
    totals = (floor + (rng.random(latent.shape) < clipped - floor)).astype(int).ravel()
    weights = np.exp(
        np.asarray(log_weights) + rng.normal(0.0, ITEM_WEIGHT_SD, (totals.size, n_items))
    )
    counts = np.zeros((totals.size, n_items), dtype=int)
    for step in range(n_items * item_max):
        room = np.where(counts < item_max, weights, 0.0)
        cumulative = room.cumsum(axis=1)
        u = rng.random(totals.size) * cumulative[:, -1]
        choice = np.minimum((cumulative <= u[:, None]).sum(axis=1), n_items - 1)
        dealt = totals > step
        counts[np.flatnonzero(dealt), choice[dealt]] += 1
    return counts.reshape(latent.shape + (n_items,)).astype(float)


def _draw_days(design: SimulationDesign, rng: np.random.Generator) -> np.ndarray:
    """Days since the first session: 0, then roughly weekly gaps of at least one day."""
    n = design.therapists * design.clients_per_therapist
    gaps = np.rint(
        rng.normal(design.session_interval_days, design.session_interval_sd_days,
                   (n, design.max_sessions - 1))
    )
    days = np.zeros((n, design.max_sessions), dtype=int)
    days[:, 1:] = np.maximum(gaps, 1).astype(int).cumsum(axis=1)
    return days


def _apply_missingness(
    design: SimulationDesign,
    clients: dict[str, np.ndarray],
    items: dict[str, np.ndarray],
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Blank out missed questionnaires and items (NaN), missing at random given observed data.

    The client's forms (WAI-SR, PHQ-9, GAD-7) are missed together at a session >= 2 with a
    probability that rises with the PHQ-9 total of the last session whose forms came back;
    the therapist form is missed completely at random; each item on a returned form is left
    blank with a probability that rises with age band.

    Returns
    -------
    masked : dict
        The item arrays with NaN where missing.
    missed : dict
        Boolean arrays (clients x sessions): ``"client"`` and ``"therapist"`` forms missed.
    """
    n, t = items["phq9"].shape[:2]
    phq9_total = items["phq9"].sum(axis=2)
    u = rng.random((n, t))
    missed = {"client": np.zeros((n, t), dtype=bool)}
    last_returned = phq9_total[:, 0].copy()
    for s in range(1, t):
        p = _expit(
            _logit(design.missed_questionnaire_rate)
            + design.missed_previous_phq9_logor * (last_returned - design.phq9_intercept)
        )
        missed["client"][:, s] = u[:, s] < p
        last_returned = np.where(missed["client"][:, s], last_returned, phq9_total[:, s])
    missed["therapist"] = rng.random((n, t)) < design.therapist_missed_rate
    p_blank = _expit(
        _logit(design.missing_item_rate)
        + design.missing_item_age_logor * (clients["age"] - (len(AGE_BANDS) - 1) / 2)
    )
    masked = {}
    for key, values in items.items():
        form_missed = missed[INSTRUMENTS[key].rater]
        blank = rng.random(values.shape) < p_blank[:, None, None]
        masked[key] = np.where(blank | form_missed[..., None], np.nan, values)
    return masked, missed


def _missing_shares(
    masked: dict[str, np.ndarray], missed: dict[str, np.ndarray], attended: np.ndarray
) -> dict[str, float]:
    """Realised shares of missed forms (per attended session) and of blank returned items."""
    blank = returned = 0
    for key, values in masked.items():
        on_returned = values[attended & ~missed[INSTRUMENTS[key].rater]]
        blank += int(np.isnan(on_returned).sum())
        returned += on_returned.size
    return {
        "missed_client_forms_share": float(missed["client"][attended].mean()),
        "missed_therapist_form_share": float(missed["therapist"][attended].mean()),
        "blank_item_share_of_returned_forms": blank / returned,
    }


def _long_frame(
    design: SimulationDesign,
    clients: dict[str, np.ndarray],
    days: np.ndarray,
    items: dict[str, np.ndarray],
    attended: np.ndarray,
) -> pd.DataFrame:
    """One row per attended session, sorted by therapist, client and session."""
    client, session = np.nonzero(attended)
    t_width = max(2, len(str(design.therapists)))
    c_width = max(4, len(str(len(attended))))
    columns: dict[str, Any] = {
        "therapist_id": [f"T{j + 1:0{t_width}d}" for j in clients["therapist"][client]],
        "client_id": [f"C{i + 1:0{c_width}d}" for i in client],
        "session": session + 1,
        "day": days[client, session],
        "age_band": np.asarray(AGE_BANDS)[clients["age"][client]],
        "gender": np.asarray(GENDERS)[clients["gender"][client]],
        "arm": np.asarray(ARMS)[clients["arm"][client]],
    }
    for key, values in items.items():
        for k, name in enumerate(INSTRUMENTS[key].items()):
            columns[name] = pd.array(values[client, session, k], dtype="Int64")
    return pd.DataFrame(columns)


def _plant_faults(
    frame: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Plant three data-entry faults at rows drawn from `rng`, and describe them.

    A session 3 entered as ``"3.5"``; a PHQ-9 item entered as 7 (range 0-3); an exact copy
    of one row inserted right after it. Rows in the descriptions are 1-based data rows of
    ``sessions.csv`` (the header is not counted; the file line is row + 1).
    """
    frame = frame.copy()
    session_pos = int(rng.choice(np.flatnonzero(frame["session"].to_numpy() == 3)))
    phq9_items = INSTRUMENTS["phq9"].items()
    complete = frame[phq9_items].notna().all(axis=1).to_numpy(copy=True)
    complete[session_pos] = False
    range_pos = int(rng.choice(np.flatnonzero(complete)))
    range_column = phq9_items[int(rng.integers(len(phq9_items)))]
    others = np.setdiff1d(np.arange(len(frame)), [session_pos, range_pos])
    duplicate_pos = int(rng.choice(others))

    original_item = int(frame.at[range_pos, range_column])
    frame.at[range_pos, range_column] = 7
    sessions: list[Any] = [int(s) for s in frame["session"]]
    sessions[session_pos] = "3.5"
    frame["session"] = pd.Series(sessions, dtype=object)
    frame = pd.concat(
        [frame.iloc[: duplicate_pos + 1], frame.iloc[[duplicate_pos]],
         frame.iloc[duplicate_pos + 1:]],
        ignore_index=True,
    )

    def row(pos: int) -> int:
        return pos + 1 + int(pos > duplicate_pos)

    def where(pos: int) -> dict[str, Any]:
        return {"client_id": frame.at[row(pos) - 1, "client_id"], "row": row(pos)}

    duplicate_session = frame.at[duplicate_pos, "session"]
    faults = [
        {"kind": "non_integer_session", **where(session_pos), "session": 3,
         "column": "session", "value": "3.5",
         "description": "session 3 entered as 3.5"},
        {"kind": "out_of_range_item", **where(range_pos),
         "session": int(frame.at[row(range_pos) - 1, "session"]),
         "column": range_column, "value": 7,
         "description": f"{range_column} entered as 7 (range 0-3); the generated value was "
                        f"{original_item}"},
        {"kind": "duplicate_row", "client_id": frame.at[duplicate_pos, "client_id"],
         "row": duplicate_pos + 2, "session": duplicate_session, "column": None, "value": None,
         "description": f"exact copy of data row {duplicate_pos + 1}, inserted after it"},
    ]
    return frame, sorted(faults, key=lambda fault: fault["row"])


def _realised_icc(parts: dict[str, np.ndarray], attended: np.ndarray) -> float:
    """Therapist share of the variance of latent session alliance, from the realised draws.

    ``var(v_j) / (var(v_j) + var(w_i) + var(eps_it))`` with population variances of the
    drawn therapist and client effects and of the session residuals at attended sessions.
    """
    v = parts["therapist"].var()
    total = v + parts["client"].var() + parts["session"][attended].var()
    return float(v / total)


def _truth(
    design: SimulationDesign,
    seed: int,
    realised: dict[str, Any],
    faults: list[dict[str, Any]],
    columns: list[str],
) -> dict[str, Any]:
    """Everything needed to check an analysis of the simulated data against the truth."""
    d = design
    return {
        "seed": seed,
        "package_version": __version__,
        "design": d.model_dump(),
        "equations": _equations(),
        "recovery_model": {
            "formula": "phq9_total ~ session + wai_within_lag1 + wai_between",
            "groups": "client_id",
            "re_formula": "~session",
            "coefficients": {
                "Intercept": d.phq9_intercept - d.phq9_slope - d.between_effect * d.alliance_mean,
                "session": d.phq9_slope,
                "wai_within_lag1": d.within_effect,
                "wai_between": d.between_effect,
            },
            "note": (
                "wai_total is the WAI-SR item mean of complete rows, wai_between its client "
                "mean, wai_within the deviation from it, lagged one session within client; "
                "phq9_total the sum of complete PHQ-9 items. The truth centres on the mean "
                "over all attended sessions before missingness, so estimates differ slightly "
                "even without sampling error. The therapist intercept variance "
                "(phq9_therapist_sd) is not in this model and is absorbed by the client "
                "intercepts."
            ),
        },
        "constants": {
            "age_bands": dict(zip(AGE_BANDS, AGE_BAND_PROBS, strict=True)),
            "genders": dict(zip(GENDERS, GENDER_PROBS, strict=True)),
            "arms": {arm: 1 / len(ARMS) for arm in ARMS},
            "wai_item_offsets": list(WAI_ITEM_OFFSETS),
            "wai_t_item_offsets": list(WAI_T_ITEM_OFFSETS),
            "phq9_item_log_weights": list(PHQ9_ITEM_LOG_WEIGHTS),
            "gad7_item_log_weights": list(GAD7_ITEM_LOG_WEIGHTS),
            "item_weight_sd": ITEM_WEIGHT_SD,
            "covariate_effects": "none: age_band, gender and arm do not affect alliance or "
                                 "symptoms; age_band affects only blank items",
        },
        "realised": realised,
        "columns": columns,
        "faults": faults,
    }


def _equations() -> list[str]:
    """The generating model as text, one line per equation (indices: therapist j, client i,
    session t = 1..T_i)."""
    return [
        "alliance[i,t] = alliance_mean + v[j] + w[i] + alliance_growth*(t-1) + eps[i,t]; "
        "v ~ N(0, alliance_therapist_sd^2), w ~ N(0, alliance_client_sd^2), "
        "eps ~ N(0, alliance_session_sd^2)",
        "wai_k[i,t] = clip(round(alliance[i,t] + f[i,t,factor(k)] + wai_item_offsets[k] + "
        "e[i,t,k]), 1, 5); factors goal (items 4,6,8,11), task (1,2,10,12), bond (3,5,7,9); "
        "f ~ N(0, wai_factor_sd^2), e ~ N(0, wai_item_sd^2)",
        "wai_obs[i,t] = mean of wai_1..wai_12 at (i,t), before any missingness",
        "T_i: after each session t with min_sessions <= t < max_sessions the client ends with "
        "probability expit(logit(dropout_hazard) + dropout_early_alliance_logor*"
        "(early[i] - alliance_mean)), early[i] = mean of wai_obs[i,t] over t = 1..3; "
        "otherwise T_i = max_sessions",
        "wai_between[i] = mean of wai_obs[i,t] over t = 1..T_i; "
        "wai_within[i,t] = wai_obs[i,t] - wai_between[i]",
        "phq9_latent[i,t] = phq9_intercept + u0[i] + u[j] + (phq9_slope + u1[i])*(t-1) + "
        "within_effect*wai_within[i,t-1] + between_effect*(wai_between[i] - alliance_mean) + "
        "e[i,t]; the within term is 0 at t = 1; (u0, u1) bivariate normal with SDs "
        "phq9_client_intercept_sd, phq9_client_slope_sd and correlation "
        "phq9_intercept_slope_corr; u ~ N(0, phq9_therapist_sd^2); e ~ N(0, phq9_residual_sd^2)",
        "phq9_total[i,t] = stochastic rounding of clip(phq9_latent[i,t], 0, 27) (expectation "
        "phq9_latent inside the bounds); the points are dealt one at a time to items with "
        "room (max 3), with probability proportional to exp(phq9_item_log_weights[k] + "
        "N(0, item_weight_sd^2))",
        "gad7_latent[i,t] = gad7_intercept + gad7_phq9_loading*(phq9_latent[i,t] - "
        "phq9_intercept) + N(0, gad7_residual_sd^2); items as for the PHQ-9 within 0..21",
        "wai_t_k[i,t] = clip(round(wai_t_mean + wai_t_client_loading*(alliance[i,t] - "
        "alliance_mean) + l[j] + s[i,t] + wai_t_item_offsets[k] + N(0, wai_t_item_sd^2)), "
        "1, 7); l ~ N(0, wai_t_therapist_sd^2), s ~ N(0, wai_t_session_sd^2)",
        "day[i,1] = 0; day[i,t] = day[i,t-1] + max(1, round(N(session_interval_days, "
        "session_interval_sd_days^2)))",
        "client forms (wai, phq9, gad7) missed together at t >= 2 with probability "
        "expit(logit(missed_questionnaire_rate) + missed_previous_phq9_logor*(last returned "
        "phq9_total - phq9_intercept)); therapist form (wai_t) missed with probability "
        "therapist_missed_rate",
        "each item on a returned form blank with probability expit(logit(missing_item_rate) + "
        "missing_item_age_logor*(age band index - 2)), age band index 0 (18-25) .. 4 (66+)",
    ]


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))
