"""Reliable and clinically significant change (Jacobson & Truax, 1991).

Did a client change by more than the measurement error of the questionnaire (reliable change),
and did they end in the range of people without the problem (clinically significant change)?
:func:`reliable_change_criteria` fixes the threshold and the cut-off, :func:`pre_post_scores`
picks each client's pre and post score, :func:`classify_change` classifies each client, and
:func:`change_summary` counts them. The options of a run are applied by
:func:`alliance_analysis.change.markers.reliable_change`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from alliance_analysis.change.client_series import at_least, more_than, scored_series
from alliance_analysis.errors import AllianceDataError, AllianceParamsError
from alliance_analysis.instruments import Instrument

#: Change categories of :func:`classify_change`, best first.
CATEGORIES = ("recovered", "reliably improved", "unchanged", "reliably deteriorated")


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
    reliability_source
        Where :math:`r_{xx}` came from, for the caption ("" for ``published``).
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
    reliability_source: str = ""


def require_symptom_measure(instrument: Instrument) -> None:
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


def reliable_change_criteria(
        pre_scores: pd.Series, instrument: Instrument, *,
        method: Literal["published", "jacobson_truax"] = "published",
        reliability: float | None = None, sd_pre: float | None = None, z: float = 1.96,
        cutoff: Literal["published", "a", "b", "c"] = "published",
        clinical_mean: float | None = None, clinical_sd: float | None = None,
        functional_mean: float | None = None, functional_sd: float | None = None,
) -> ReliableChangeCriteria:
    """The threshold and cut-off of reliable and clinically significant change.

    Parameters
    ----------
    pre_scores
        The clients' pre scores: their SD is :math:`s_{pre}`, and their mean and SD the
        clinical norms, where those are not given.
    instrument
        The symptom measure; its published ``rci``, ``cutoff`` and ``reliability`` are used
        where asked for.
    method
        ``"published"``: the instrument's reliable-change threshold in points;
        ``"jacobson_truax"``: the index computed from :math:`s_{pre}` and the reliability.
    reliability
        :math:`r_{xx}`; None uses the instrument's: the reliability its ``rci`` was derived
        with (``reliability``) where the source gives one, else its published
        ``rc_reliability`` (PHQ-9: test-retest .84, Kroenke et al. 2001; GAD-7: test-retest
        .83, Spitzer et al. 2006; CORE-10: alpha .90, Barkham et al. 2013; see
        :mod:`alliance_analysis.instruments`).
    sd_pre
        :math:`s_{pre}`; None uses the SD (n - 1) of `pre_scores`.
    z
        Critical value of :math:`|RC|`.
    cutoff
        ``"published"`` (the instrument's caseness threshold) or Jacobson & Truax's ``"a"``,
        ``"b"``, ``"c"`` (:func:`jacobson_truax_cutoffs`).
    clinical_mean, clinical_sd
        Clinical norms (a, c); None uses the mean and SD of `pre_scores`.
    functional_mean, functional_sd
        Functional norms (b, c).

    Raises
    ------
    AllianceParamsError
        When a threshold, reliability or norm asked for is not available.

    Notes
    -----
    :math:`SE = s_{pre}\\sqrt{1 - r_{xx}}`, :math:`S_{diff} = \\sqrt{2 SE^2}`,
    :math:`RC = (x_{post} - x_{pre}) / S_{diff}`, reliable when :math:`|RC| > z`, i.e. when
    the change exceeds :math:`z \\cdot S_{diff}` points (Jacobson & Truax, 1991). Written
    out, :math:`RC = (x_2 - x_1) / (s_1 \\sqrt{2} \\sqrt{1 - r_{xx}})`, the standard form,
    which ``tests/test_change.py`` computes independently for every client of the demo
    (no R implementation was available to check against). With no pre score at
    all (an empty session table) there is nothing to classify: the quantities are NaN.

    References
    ----------
    .. [1] Jacobson, N. S., & Truax, P. (1991). Clinical significance: A statistical approach
       to defining meaningful change in psychotherapy research. Journal of Consulting and
       Clinical Psychology, 59(1), 12-19. https://doi.org/10.1037/0022-006X.59.1.12
    """
    require_symptom_measure(instrument)
    if method == "published":
        if instrument.rci is None:
            raise AllianceParamsError(
                f"change.reliable_change 'published': instrument {instrument.key!r} has no "
                "published reliable-change threshold (rci). Use reliable_change: "
                "jacobson_truax with a reliability, or give rci in custom_instruments")
        chosen: dict[str, Any] = {"method": "published", "threshold": float(instrument.rci)}
    else:
        chosen = _jacobson_truax(pre_scores, instrument, reliability, sd_pre, z)
    scores = pre_scores.dropna()
    if cutoff == "published":
        if instrument.cutoff is None:
            raise AllianceParamsError(
                f"change.cutoff 'published': instrument {instrument.key!r} has no published "
                "clinical cut-off. Use cutoff a, b or c with norms")
        value = float(instrument.cutoff)
    else:
        if cutoff in ("b", "c") and (functional_mean is None or functional_sd is None):
            raise AllianceParamsError(f"change.cutoff {cutoff!r} needs functional_mean and "
                                      "functional_sd")
        value = jacobson_truax_cutoffs(
            clinical_mean if clinical_mean is not None else float(scores.mean()),
            clinical_sd if clinical_sd is not None else float(scores.std(ddof=1)),
            functional_mean, functional_sd)[cutoff]
    return ReliableChangeCriteria(**chosen, cutoff=float(value), cutoff_rule=cutoff)


def _jacobson_truax(pre_scores: pd.Series, instrument: Instrument, reliability: float | None,
                    sd_pre: float | None, z: float) -> dict[str, Any]:
    if reliability is not None:
        r_xx, source = reliability, "set by change.reliability"
    elif instrument.reliability is not None:
        r_xx, source = instrument.reliability, (
            f"the reliability behind the {instrument.abbreviation()}'s published "
            "reliable-change threshold")
    elif instrument.rc_reliability is not None:
        r_xx = instrument.rc_reliability
        source = (f"the {instrument.abbreviation()}'s published "
                  f"{instrument.rc_reliability_source or 'reliability'}")
    else:
        raise AllianceParamsError(
            f"change.reliable_change 'jacobson_truax' needs a reliability and instrument "
            f"{instrument.key!r} ships none: set change.reliability (e.g. the test-retest "
            "reliability or alpha of the total in a comparable sample), or give "
            "rc_reliability in custom_instruments")
    scores = pre_scores.dropna()
    if sd_pre is None and scores.empty:  # nobody to classify: no threshold, and no error
        return {"method": "jacobson_truax", "threshold": np.nan, "z": z, "s_pre": np.nan,
                "reliability": float(r_xx), "se_measurement": np.nan, "s_diff": np.nan,
                "reliability_source": source}
    s_pre = sd_pre if sd_pre is not None else float(scores.std(ddof=1))
    if not np.isfinite(s_pre) or s_pre <= 0:
        raise AllianceDataError(f"the SD of the pre scores is {s_pre}: fewer than two clients "
                                "have a pre score, or all are equal. Give change.sd_pre")
    se = s_pre * np.sqrt(1 - r_xx)
    s_diff = float(np.sqrt(2 * se**2))
    return {"method": "jacobson_truax", "threshold": z * s_diff, "z": z, "s_pre": s_pre,
            "reliability": float(r_xx), "se_measurement": float(se), "s_diff": s_diff,
            "reliability_source": source}


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
    series_by_client = scored_series(sessions, score)
    rows = []
    for client in sorted(sessions["client_id"].astype(str).unique()):
        series = series_by_client.get(client, pd.Series(dtype=float))
        pre_s = pre_session if pre_session is not None else (
            int(series.index[0]) if len(series) else None)
        later = series[series.index > (pre_s or 0)]
        post_s = post_session if post_session is not None else (
            int(later.index[-1]) if len(later) else None)
        if pre_s is not None and post_s is not None and post_s <= pre_s:
            post_s = None  # no score after the pre-treatment one: change is not assessable
        rows.append({"client_id": client, "pre_session": pre_s, "post_session": post_s,
                     "pre": series.get(pre_s, np.nan),
                     "post": series.get(post_s, np.nan) if post_s is not None else np.nan})
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
        `pre_post` plus, for the Jacobson-Truax method only, ``rc`` (the index; missing
        without a pre and post score), then ``reliable_improvement``,
        ``reliable_deterioration``, ``clinical_pre``, ``clinical_post`` (boolean, missing
        without scores) and ``category`` (one of :data:`CATEGORIES`, missing when the client
        lacks a pre or post score). Under the published method the change in points
        (``change``) decides and no index is computed, so there is no ``rc`` column rather
        than a column that is empty by design.

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
    Crossing the cut-off without reliable change is *unchanged*. Comparisons allow
    :data:`alliance_analysis.change.client_series.EPS` (1e-9) for float rounding of prorated totals.
    """
    pre, post = pre_post["pre"], pre_post["post"]
    assessable = pre.notna() & post.notna()
    index: dict[str, pd.Series] = {}
    if criteria.method == "published":
        improved = at_least(pre - post, criteria.threshold)
        deteriorated = at_least(post - pre, criteria.threshold)
    else:
        rc = (post - pre) / criteria.s_diff
        improved, deteriorated = more_than(-rc, criteria.z), more_than(rc, criteria.z)
        index["rc"] = rc
    clinical_pre = at_least(pre, criteria.cutoff).astype("boolean").where(pre.notna())
    clinical_post = at_least(post, criteria.cutoff).astype("boolean").where(post.notna())
    recovered = improved & clinical_pre.fillna(False) & ~clinical_post.fillna(True)
    category = np.select([recovered, improved, deteriorated],
                         ["recovered", "reliably improved", "reliably deteriorated"],
                         default="unchanged")
    return pre_post.assign(
        **index,
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
