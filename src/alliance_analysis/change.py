"""Change and process markers: reliable change, sudden gains, alliance ruptures, dropout.

The events clinicians read session-by-session data through, each following its paper, with
every threshold a parameter of :class:`ChangeOptions` (``change:`` in the run parameters):

- reliable and clinically significant change (Jacobson & Truax, 1991): :func:`reliable_change`;
- sudden gains (Tang & DeRubeis, 1999): :mod:`alliance_analysis.sudden_gains`;
- alliance ruptures and repairs (Stiles et al., 2004): :mod:`alliance_analysis.ruptures`;
- early alliance and dropout: :mod:`alliance_analysis.dropout`.

:func:`analyse_change` runs them all on the session table and returns a :class:`ChangeReport`
(tidy tables, their captions stating the criteria, the models and the headline counts);
:func:`report_change` writes it to the run folder, so the notebook stays thin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alliance_analysis import dropout as dropout_mod
from alliance_analysis import ruptures as ruptures_mod
from alliance_analysis import sudden_gains as gains_mod
from alliance_analysis.errors import AllianceDataError, AllianceParamsError
from alliance_analysis.instruments import Instrument
from alliance_analysis.results import ModelResult
from alliance_analysis.runfolder import RunFolder

#: Change categories of :func:`reliable_change`, best first.
CATEGORIES = ("recovered", "reliably improved", "unchanged", "reliably deteriorated")


class ChangeOptions(BaseModel):
    """Choices of the change and process markers (``change:`` in the run parameters).

    The defaults run the demo: reliable change and caseness from the instrument's published
    thresholds (PHQ-9: 6 points and 10), sudden gains by Tang & DeRubeis (1999) with the
    reliable-change threshold as the absolute criterion, ruptures at 1 and 2 client SDs below
    the client's own mean alliance, repair within 3 sessions, dropout as fewer than 8 sessions
    without reliable improvement.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reliable_change: Literal["published", "jacobson_truax"] = Field(
        "published", description="reliable change from the instrument's published threshold "
        "in points ('published'), or the Jacobson & Truax (1991) index computed from the "
        "pre-treatment SD and the reliability ('jacobson_truax')")
    reliability: float | None = Field(
        None, gt=0, lt=1, description="reliability r_xx for 'jacobson_truax'; None uses the "
        "instrument's reliability")
    sd_pre: float | None = Field(
        None, gt=0, description="pre-treatment SD s_pre for 'jacobson_truax'; None uses the SD "
        "of the sample's pre scores")
    rc_z: float = Field(
        1.96, gt=0, description="|RC| must exceed this for reliable change (1.96: p < .05)")
    cutoff: Literal["published", "a", "b", "c"] = Field(
        "published", description="clinical cut-off: the instrument's published caseness "
        "threshold, or Jacobson & Truax's a (2 SD beyond the clinical mean), b (within 2 SD of "
        "the functional mean) or c (between the two distributions)")
    clinical_mean: float | None = Field(
        None, description="mean of the clinical population (cut-offs a, c); None uses the "
        "sample's pre scores")
    clinical_sd: float | None = Field(
        None, gt=0, description="SD of the clinical population (cut-offs a, c); None uses the "
        "sample's pre scores")
    functional_mean: float | None = Field(
        None, description="mean of the functional (non-clinical) population (cut-offs b, c)")
    functional_sd: float | None = Field(
        None, gt=0, description="SD of the functional population (cut-offs b, c)")
    pre_session: int | None = Field(
        None, ge=1, description="session of the pre score; None: each client's first scored "
        "session")
    post_session: int | None = Field(
        None, ge=1, description="session of the post score; None: each client's last scored "
        "session")
    sudden_gain_min: float | None = Field(
        None, gt=0, description="sudden gains criterion 1, the smallest gain in points; None "
        "uses the instrument's published reliable-change threshold (PHQ-9: 6)")
    sudden_gain_relative: float = Field(
        0.25, gt=0, lt=1, description="sudden gains criterion 2: the gain is at least this "
        "fraction of the pre-gain score")
    sudden_gain_critical: tuple[float, float, float] = Field(
        (2.776, 3.182, 4.303), description="sudden gains criterion 3: critical values with "
        "all 6 neighbouring scores (df 4), one missing (df 3) and two missing (df 2)")
    sudden_gain_reversal: float = Field(
        0.5, gt=0, le=1, description="a gain is reversed when a later score gives back at "
        "least this fraction of it")
    rupture_sd: tuple[float, ...] = Field(
        (1.0, 2.0), min_length=1, description="a rupture is a session whose alliance falls "
        "more than this many of the client's SDs below the client's mean; one count each")
    rupture_drop: float | None = Field(
        None, gt=0, description="also a rupture: alliance drops by at least this many points "
        "from the previous session; None: not used")
    rupture_min_scores: int = Field(
        3, ge=3, description="clients with fewer alliance scores are not assessed for "
        "ruptures (their own SD is too uncertain)")
    repair_within: int = Field(
        3, ge=1, description="a rupture is repaired when alliance returns to its pre-rupture "
        "level within this many sessions")
    early_sessions: int = Field(
        5, ge=2, description="early alliance: mean and slope over sessions 1..early_sessions")
    dropout: Literal["sessions", "column"] = Field(
        "sessions", description="dropout: fewer than dropout_sessions sessions without "
        "reliable improvement ('sessions'), or a 0/1 column of the data ('column')")
    dropout_sessions: int = Field(
        8, ge=2, description="'sessions' dropout: the client's last session is below this")
    dropout_column: str | None = Field(
        None, description="'column' dropout: the client-level 0/1 column")
    ci_level: float = Field(0.95, gt=0, lt=1, description="confidence level of the models")

    @model_validator(mode="after")
    def _consistent(self) -> ChangeOptions:
        problems = []
        if self.cutoff in ("b", "c") and (self.functional_mean is None
                                         or self.functional_sd is None):
            problems.append(f"cutoff {self.cutoff!r} needs functional_mean and functional_sd "
                            "(norms of a non-clinical population)")
        if (self.pre_session is not None and self.post_session is not None
                and self.post_session <= self.pre_session):
            problems.append(f"post_session ({self.post_session}) must come after pre_session "
                            f"({self.pre_session})")
        if self.dropout == "column" and self.dropout_column is None:
            problems.append("dropout 'column' needs dropout_column (the 0/1 column's name)")
        if problems:
            raise ValueError("; ".join(problems))
        return self


@dataclass(frozen=True)
class ReliableChangeCriteria:
    """The reliable-change threshold and clinical cut-off actually applied.

    Attributes
    ----------
    method
        ``"published"`` or ``"jacobson_truax"``.
    threshold
        Points of change needed: a change of at least this (``published``), or of more than
        this (``jacobson_truax``: :math:`z \\cdot S_{diff}`), is reliable.
    cutoff
        Clinical cut-off: scores at or above it are in the clinical range.
    cutoff_rule
        ``"published"``, ``"a"``, ``"b"`` or ``"c"``.
    z
        Critical value of the Jacobson-Truax index (NaN for ``published``).
    s_pre, reliability, se_measurement, s_diff
        The Jacobson-Truax quantities (NaN for ``published``).
    """

    method: str
    threshold: float
    cutoff: float
    cutoff_rule: str
    z: float = np.nan
    s_pre: float = np.nan
    reliability: float = np.nan
    se_measurement: float = np.nan
    s_diff: float = np.nan


def _require_symptom_measure(instrument: Instrument) -> None:
    if instrument.construct not in ("symptoms", "outcome"):
        raise AllianceParamsError(
            f"reliable change and sudden gains are computed on a symptom or outcome measure "
            f"(lower = better); {instrument.key!r} is an {instrument.construct} measure. Set "
            "`symptoms:` in the parameters to the outcome instrument")


def jacobson_truax_cutoffs(clinical_mean: float, clinical_sd: float,
                           functional_mean: float | None = None,
                           functional_sd: float | None = None) -> dict[str, float]:
    """Jacobson & Truax's cut-offs a, b and c for a measure on which lower is better.

    Returns
    -------
    dict
        ``{"a": ..., "b": ..., "c": ...}``; b and c are NaN without functional norms.

    Notes
    -----
    With clinical (dysfunctional) norms :math:`M_1, s_1` and functional norms
    :math:`M_0, s_0`, for a symptom measure (functional scores are lower):

    - a = :math:`M_1 - 2 s_1`, two SDs beyond the clinical mean towards health;
    - b = :math:`M_0 + 2 s_0`, within two SDs of the functional mean;
    - c = :math:`(s_0 M_1 + s_1 M_0) / (s_0 + s_1)`, where the two distributions meet
      (the point equally far, in SD units, from both means).

    References
    ----------
    .. [1] Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
       to defining meaningful change in psychotherapy research. Journal of Consulting and
       Clinical Psychology, 59(1), 12-19. https://doi.org/10.1037/0022-006X.59.1.12

    Examples
    --------
    >>> jacobson_truax_cutoffs(20.0, 5.0, 5.0, 4.0)
    {'a': 10.0, 'b': 13.0, 'c': 11.666666666666666}
    """
    a = clinical_mean - 2 * clinical_sd
    if functional_mean is None or functional_sd is None:
        return {"a": a, "b": np.nan, "c": np.nan}
    b = functional_mean + 2 * functional_sd
    c = (functional_sd * clinical_mean + clinical_sd * functional_mean) / (
        functional_sd + clinical_sd)
    return {"a": a, "b": b, "c": c}


def reliable_change_criteria(pre_scores: pd.Series, instrument: Instrument,
                             options: ChangeOptions) -> ReliableChangeCriteria:
    """The threshold and cut-off of reliable and clinically significant change.

    Parameters
    ----------
    pre_scores
        The clients' pre scores: their SD is :math:`s_{pre}` (and their mean and SD the
        clinical norms) when the options do not give them.
    instrument
        The symptom measure; its published ``rci``, ``cutoff`` and ``reliability`` are used
        where the options ask for them.
    options
        ``reliable_change``, ``reliability``, ``sd_pre``, ``rc_z``, ``cutoff`` and the norms.

    Raises
    ------
    AllianceParamsError
        When a threshold or norm the options ask for is not available.

    Notes
    -----
    Jacobson & Truax (1991): :math:`SE = s_{pre}\\sqrt{1 - r_{xx}}`,
    :math:`S_{diff} = \\sqrt{2 SE^2}`, :math:`RC = (x_{post} - x_{pre}) / S_{diff}`, reliable
    when :math:`|RC| >` `rc_z` (1.96), i.e. when the change exceeds
    :math:`1.96 \\cdot S_{diff}` points.
    """
    _require_symptom_measure(instrument)
    if options.reliable_change == "published":
        if instrument.rci is None:
            raise AllianceParamsError(
                f"change.reliable_change 'published': instrument {instrument.key!r} has no "
                "published reliable-change threshold (rci). Use reliable_change: "
                "jacobson_truax with a reliability, or give rci in custom_instruments")
        method: dict[str, Any] = {"method": "published", "threshold": float(instrument.rci)}
    else:
        reliability = options.reliability or instrument.reliability
        if reliability is None:
            raise AllianceParamsError(
                f"change.reliable_change 'jacobson_truax' needs a reliability: set "
                f"change.reliability (e.g. the test-retest or alpha of {instrument.key!r} in "
                "a comparable sample)")
        s_pre = options.sd_pre or float(pre_scores.dropna().std(ddof=1))
        if not np.isfinite(s_pre) or s_pre <= 0:
            raise AllianceDataError(f"the SD of the pre scores is {s_pre}: fewer than two "
                                    "clients have a pre score. Give change.sd_pre from norms")
        se = s_pre * np.sqrt(1 - reliability)
        s_diff = float(np.sqrt(2 * se**2))
        method = {"method": "jacobson_truax", "threshold": options.rc_z * s_diff,
                  "z": options.rc_z, "s_pre": s_pre, "reliability": reliability,
                  "se_measurement": float(se), "s_diff": s_diff}
    return ReliableChangeCriteria(**method, cutoff=_cutoff(pre_scores, instrument, options),
                                  cutoff_rule=options.cutoff)


def _cutoff(pre_scores: pd.Series, instrument: Instrument, options: ChangeOptions) -> float:
    if options.cutoff == "published":
        if instrument.cutoff is None:
            raise AllianceParamsError(
                f"change.cutoff 'published': instrument {instrument.key!r} has no published "
                "clinical cut-off. Use cutoff a, b or c with norms")
        return float(instrument.cutoff)
    scores = pre_scores.dropna()
    clinical_mean = (options.clinical_mean if options.clinical_mean is not None
                     else float(scores.mean()))
    clinical_sd = options.clinical_sd or float(scores.std(ddof=1))
    cutoffs = jacobson_truax_cutoffs(clinical_mean, clinical_sd, options.functional_mean,
                                     options.functional_sd)
    return float(cutoffs[options.cutoff])


def pre_post_scores(sessions: pd.DataFrame, score: str, pre_session: int | None = None,
                    post_session: int | None = None) -> pd.DataFrame:
    """Each client's pre and post score.

    Parameters
    ----------
    sessions
        The canonical session table.
    score
        The score column.
    pre_session, post_session
        Sessions to compare; None takes each client's first scored session (pre) and last
        scored session after it (post).

    Returns
    -------
    pandas.DataFrame
        ``client_id, pre_session, post_session, pre, post, change`` (post - pre) for every
        client; scores are missing where the client has no score at that session (or only
        one scored session).
    """
    series_by_client = gains_mod.scored_series(sessions, score)
    rows = []
    for client in sorted(sessions["client_id"].astype(str).unique()):
        series = series_by_client.get(client, pd.Series(dtype=float))
        pre_s = pre_session if pre_session is not None else (
            int(series.index[0]) if len(series) else None)
        later = series[series.index > (pre_s or 0)]
        post_s = post_session if post_session is not None else (
            int(later.index[-1]) if len(later) else None)
        rows.append({"client_id": client, "pre_session": pre_s, "post_session": post_s,
                     "pre": series.get(pre_s, np.nan), "post": series.get(post_s, np.nan)})
    table = pd.DataFrame(rows, columns=["client_id", "pre_session", "post_session", "pre",
                                        "post"])
    table = table.astype({"pre_session": "Int64", "post_session": "Int64", "pre": float,
                          "post": float})
    return table.assign(change=table["post"] - table["pre"])


def classify_change(pre_post: pd.DataFrame, criteria: ReliableChangeCriteria) -> pd.DataFrame:
    """Classify each client's change as recovered, reliably improved, unchanged or
    reliably deteriorated.

    Parameters
    ----------
    pre_post
        Output of :func:`pre_post_scores`.
    criteria
        Output of :func:`reliable_change_criteria`.

    Returns
    -------
    pandas.DataFrame
        `pre_post` plus ``rc`` (Jacobson-Truax index; NaN for the published method),
        ``reliable_improvement``, ``reliable_deterioration``, ``clinical_pre``,
        ``clinical_post`` (boolean, missing without scores) and ``category`` (one of
        :data:`CATEGORIES`, missing when the client lacks a pre or post score).

    Notes
    -----
    Lower scores are better. Reliable improvement: ``pre - post >= threshold`` (published
    method; e.g. PHQ-9 6 points) or :math:`RC < -z` (Jacobson-Truax); reliable deterioration
    the mirror image. A score is in the clinical range when at or above the cut-off.
    *Recovered*: reliable improvement *and* moving from the clinical range at pre to the
    non-clinical range at post (Jacobson & Truax's "recovered"; IAPT's "reliable recovery").
    Clients who start below the cut-off cannot recover: a reliable improvement makes them
    *reliably improved*, and ``clinical_pre`` False marks them, so that recovery rates can be
    computed among clients who started in the clinical range (see :func:`change_summary`).
    Crossing the cut-off without reliable change is *unchanged*.
    """
    pre, post = pre_post["pre"], pre_post["post"]
    assessable = pre.notna() & post.notna()
    if criteria.method == "published":
        rc = pd.Series(np.nan, index=pre_post.index)
        improved = (pre - post) >= criteria.threshold
        deteriorated = (post - pre) >= criteria.threshold
    else:
        rc = (post - pre) / criteria.s_diff
        improved, deteriorated = rc < -criteria.z, rc > criteria.z
    clinical_pre = (pre >= criteria.cutoff).astype("boolean").where(pre.notna())
    clinical_post = (post >= criteria.cutoff).astype("boolean").where(post.notna())
    recovered = improved & clinical_pre.fillna(False) & ~clinical_post.fillna(True)
    category = np.select([recovered, improved, deteriorated],
                         ["recovered", "reliably improved", "reliably deteriorated"],
                         default="unchanged")
    return pre_post.assign(
        rc=rc,
        reliable_improvement=improved.astype("boolean").where(assessable),
        reliable_deterioration=deteriorated.astype("boolean").where(assessable),
        clinical_pre=clinical_pre, clinical_post=clinical_post,
        category=pd.Series(category, index=pre_post.index, dtype="str").where(assessable))


@dataclass(frozen=True)
class ReliableChange:
    """Per-client reliable and clinically significant change, and the criteria used."""

    table: pd.DataFrame
    criteria: ReliableChangeCriteria

    def summary(self) -> pd.DataFrame:
        """Counts per category; see :func:`change_summary`."""
        return change_summary(self.table)


def reliable_change(sessions: pd.DataFrame, instrument: Instrument,
                    options: ChangeOptions) -> ReliableChange:
    """Reliable and clinically significant change of each client (Jacobson & Truax, 1991).

    Parameters
    ----------
    sessions
        The canonical session table with the instrument's total (e.g. ``phq9_total``).
    instrument
        The symptom measure (lower = better).
    options
        The change options (method, reliability, cut-off, norms, pre and post sessions).

    Returns
    -------
    ReliableChange
        ``table`` (see :func:`classify_change`) and ``criteria``
        (:class:`ReliableChangeCriteria`).

    Notes
    -----
    :math:`SE = s_{pre}\\sqrt{1 - r_{xx}}`, :math:`S_{diff} = \\sqrt{2 SE^2}`,
    :math:`RC = (x_{post} - x_{pre}) / S_{diff}`, reliable when :math:`|RC| > 1.96`;
    or, with ``reliable_change: published``, a change of at least the instrument's published
    threshold (PHQ-9: 6 points; GAD-7: 4). Cut-off: the published caseness threshold
    (PHQ-9: 10; GAD-7: 8) or Jacobson & Truax's a, b or c
    (:func:`jacobson_truax_cutoffs`). Pre and post are each client's first and last scored
    sessions unless ``pre_session``/``post_session`` are set.

    References
    ----------
    .. [1] Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
       to defining meaningful change in psychotherapy research. Journal of Consulting and
       Clinical Psychology, 59(1), 12-19. https://doi.org/10.1037/0022-006X.59.1.12
    .. [2] Clark, D. M. (2011). Implementing NICE guidelines for the psychological treatment
       of depression and anxiety disorders: The IAPT experience. International Review of
       Psychiatry, 23(4), 318-327 (the published PHQ-9 and GAD-7 thresholds).
    """
    _require_symptom_measure(instrument)
    pre_post = pre_post_scores(sessions, instrument.score_column(), options.pre_session,
                               options.post_session)
    criteria = reliable_change_criteria(pre_post["pre"], instrument, options)
    return ReliableChange(classify_change(pre_post, criteria), criteria)


def change_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Counts and percentages of clients per change category.

    Returns
    -------
    pandas.DataFrame
        ``category, n, percent, n_clinical_pre, percent_clinical_pre``: one row per category
        of :data:`CATEGORIES` (percent of clients with a pre and post score; the
        ``_clinical_pre`` columns among clients who started in the clinical range, the usual
        denominator of recovery rates), then ``not assessable`` (no pre or no post score).
    """
    assessed = table[table["category"].notna()]
    clinical = assessed[assessed["clinical_pre"].fillna(False).astype(bool)]
    rows = [{"category": category,
             "n": int((assessed["category"] == category).sum()),
             "percent": _percent(int((assessed["category"] == category).sum()), len(assessed)),
             "n_clinical_pre": int((clinical["category"] == category).sum()),
             "percent_clinical_pre": _percent(int((clinical["category"] == category).sum()),
                                              len(clinical))}
            for category in CATEGORIES]
    rows.append({"category": "not assessable", "n": len(table) - len(assessed),
                 "percent": np.nan, "n_clinical_pre": pd.NA, "percent_clinical_pre": np.nan})
    summary = pd.DataFrame(rows)
    return summary.astype({"n_clinical_pre": "Int64"})


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else np.nan
