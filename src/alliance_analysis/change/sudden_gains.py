"""Sudden gains (Tang & DeRubeis, 1999) in session-by-session symptom scores.

A sudden gain is a large, stable drop in symptoms between two consecutive sessions.
:func:`check_interval` applies the three criteria to one interval; :func:`sudden_gains` scans
every client's sessions and lists the gains with their reversals; :func:`gains_by_client`
summarises them per client. Thresholds are plain arguments (``change:`` in the run parameters
sets them, see :class:`alliance_analysis.options.ChangeOptions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance_analysis.change.client_series import at_least, more_than, scored_series

#: Critical values of criterion 3 for df = 4, 3, 2: two-tailed t at alpha .05 (Tang &
#: DeRubeis 1999 with all six neighbouring scores; Lutz et al. 2013 with one or two missing).
CRITICAL_VALUES = (2.776, 3.182, 4.303)

#: Columns of :func:`sudden_gains`.
GAIN_COLUMNS = ("client_id", "pregain_session", "postgain_session", "pregain_score",
                "postgain_score", "gain", "relative_gain", "mean_pre", "mean_post", "n_pre",
                "n_post", "pooled_sd", "critical_value", "reversal", "reversal_session")


@dataclass(frozen=True)
class IntervalCheck:
    """The three sudden-gain criteria applied to one session-to-session interval.

    Attributes
    ----------
    gain
        Pre-gain score minus post-gain score (positive = improvement).
    relative_gain
        ``gain / pregain score`` (NaN when the pre-gain score is 0).
    criterion1, criterion2
        Absolute and relative criteria met.
    criterion3
        Stability criterion met; None when fewer than two scores are available on either side.
    mean_pre, mean_post, pooled_sd, n_pre, n_post, critical_value
        The quantities of criterion 3 (NaN when it cannot be assessed).
    """

    gain: float
    relative_gain: float
    criterion1: bool
    criterion2: bool
    criterion3: bool | None
    mean_pre: float
    mean_post: float
    pooled_sd: float
    n_pre: int
    n_post: int
    critical_value: float

    @property
    def is_gain(self) -> bool:
        """All three criteria met (an unassessable criterion 3 is not met)."""
        return self.criterion1 and self.criterion2 and self.criterion3 is True


def check_interval(pre_values: Sequence[float], post_values: Sequence[float], min_gain: float,
                   relative: float = 0.25,
                   critical_values: Sequence[float] = CRITICAL_VALUES) -> IntervalCheck:
    """Apply Tang & DeRubeis's three sudden-gain criteria to one interval n -> n+1.

    Parameters
    ----------
    pre_values
        Scores at sessions n-2, n-1, n (NaN where missing); the score at n is required.
    post_values
        Scores at sessions n+1, n+2, n+3 (NaN where missing); the score at n+1 is required.
    min_gain
        Criterion 1: the smallest gain in points.
    relative
        Criterion 2: the smallest gain as a fraction of the pre-gain score.
    critical_values
        Criterion 3 critical values for 6, 5 and 4 available scores (df 4, 3, 2).

    Returns
    -------
    IntervalCheck

    Raises
    ------
    ValueError
        When the scores at n or n+1 are missing, or a side does not hold three values.

    Notes
    -----
    With :math:`x_n` the score at session n and gain :math:`g = x_n - x_{n+1}`:

    1. :math:`g \\ge` `min_gain` (Tang & DeRubeis: 7 BDI points);
    2. :math:`g \\ge` `relative` :math:`\\cdot x_n` (25% of the pre-gain score);
    3. :math:`\\bar x_{pre} - \\bar x_{post} > t_{crit} \\cdot s_p`, where
       :math:`\\bar x_{pre}` is the mean of the available scores of sessions n-2..n,
       :math:`\\bar x_{post}` of sessions n+1..n+3, and
       :math:`s_p = \\sqrt{((n_1 - 1) s_1^2 + (n_2 - 1) s_2^2) / (n_1 + n_2 - 2)}` their
       pooled SD. :math:`t_{crit}` is 2.776 (two-tailed t, alpha .05, df = 4) with all six
       scores, and with one or two of the four outer scores missing 3.182 (df = 3) or 4.303
       (df = 2) (Lutz et al., 2013). With fewer than two scores on a side the criterion
       cannot be assessed and the interval is not a gain.

    Criterion 3 compares the mean difference with the pooled SD itself, not with its standard
    error (there is no :math:`\\sqrt{1/n_1 + 1/n_2}` factor): this is the criterion as
    published and as implemented in the reference R package suddengains
    (``check_interval``, ``identify_sg``), not a two-sample t-test. Every comparison allows
    :data:`alliance_analysis.change.client_series.EPS` (1e-9) for float rounding of prorated totals.

    References
    ----------
    .. [1] Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in
       cognitive-behavioral therapy for depression. Journal of Consulting and Clinical
       Psychology, 67(6), 894-904. https://doi.org/10.1037/0022-006X.67.6.894
    .. [2] Lutz, W., Ehrlich, T., Rubel, J., Hallwachs, N., Röttger, M.-A., Jorasz, C.,
       Mocanu, S., Vocks, S., Schulte, D., & Tschitsaz-Stucki, A. (2013). The ups and downs of
       psychotherapy: Sudden gains and sudden losses identified with session reports.
       Psychotherapy Research, 23(1), 14-24. https://doi.org/10.1080/10503307.2012.693837
    .. [3] Wiedemann, M., Thew, G. R., Stott, R., & Ehlers, A. (2020). suddengains: An R
       package to identify sudden gains in longitudinal data. PLOS ONE, 15(3), e0230276.

    Examples
    --------
    >>> check = check_interval([20, 21, 20], [12, 11, 12], min_gain=6)
    >>> check.gain, check.criterion1, check.criterion2, check.criterion3
    (8.0, True, True, True)
    """
    pre = np.asarray(pre_values, dtype=float)
    post = np.asarray(post_values, dtype=float)
    if pre.shape != (3,) or post.shape != (3,):
        raise ValueError("pre_values and post_values must each hold three scores "
                         f"(n-2, n-1, n and n+1, n+2, n+3); got {pre.tolist()}, {post.tolist()}")
    if np.isnan(pre[-1]) or np.isnan(post[0]):
        raise ValueError("the scores at sessions n and n+1 are required; "
                         f"got {pre[-1]} and {post[0]}")
    pregain = float(pre[-1])
    gain = pregain - float(post[0])
    relative_gain = gain / pregain if pregain != 0 else np.nan
    pre, post = pre[~np.isnan(pre)], post[~np.isnan(post)]
    n_pre, n_post = len(pre), len(post)
    criterion3: bool | None = None
    mean_pre = mean_post = pooled_sd = critical = np.nan
    if n_pre >= 2 and n_post >= 2:
        df = n_pre + n_post - 2
        critical = float(critical_values[4 - df])
        mean_pre, mean_post = float(pre.mean()), float(post.mean())
        pooled_sd = float(np.sqrt(((n_pre - 1) * pre.var(ddof=1)
                                   + (n_post - 1) * post.var(ddof=1)) / df))
        criterion3 = bool(more_than(mean_pre - mean_post, critical * pooled_sd))
    return IntervalCheck(gain=gain, relative_gain=float(relative_gain),
                         criterion1=bool(at_least(gain, min_gain)),
                         criterion2=bool(at_least(gain, relative * pregain)),
                         criterion3=criterion3, mean_pre=mean_pre, mean_post=mean_post,
                         pooled_sd=pooled_sd, n_pre=n_pre, n_post=n_post,
                         critical_value=critical)


def _reversal(series: pd.Series, postgain_session: int, postgain: float, gain: float,
              reversal: float) -> int | None:
    """First session after n+1 whose score gives back at least `reversal` of the gain."""
    later = series[series.index > postgain_session]
    hit = later[at_least(later, postgain + reversal * gain)]
    return int(hit.index[0]) if len(hit) else None


def sudden_gains(sessions: pd.DataFrame, score: str, min_gain: float, relative: float = 0.25,
                 critical_values: Sequence[float] = CRITICAL_VALUES,
                 reversal: float = 0.5) -> pd.DataFrame:
    """Every sudden gain of every client, with its reversal.

    Each interval between sessions n and n+1 that both have a score is checked with
    :func:`check_interval`; neighbouring scores are looked up by session number (a session
    without a score counts as missing).

    Parameters
    ----------
    sessions
        The canonical session table (``client_id``, ``session`` and `score`).
    score
        The symptom score (lower = better), e.g. ``phq9_total``.
    min_gain, relative, critical_values
        The criteria (see :func:`check_interval`).
    reversal
        A gain is reversed when a later score (session n+2 or after) is at or above the
        post-gain score plus this fraction of the gain.

    Returns
    -------
    pandas.DataFrame
        One row per gain, columns :data:`GAIN_COLUMNS`: ``pregain_session`` (n),
        ``postgain_session`` (n+1), ``pregain_score``, ``postgain_score``, ``gain``
        (pre - post, points), ``relative_gain`` (gain / pre-gain score), ``mean_pre``,
        ``mean_post``, ``n_pre``, ``n_post``, ``pooled_sd``, ``critical_value`` (criterion 3),
        ``reversal`` (bool) and ``reversal_session`` (first reversing session, or missing).
        A client may have several gains; all are listed, in session order.

    Notes
    -----
    Reversal after Tang & DeRubeis (1999): the client loses at least half of the gain,
    i.e. a later score :math:`x_s \\ge x_{n+1} + 0.5\\,g` for some :math:`s \\ge n+2`,
    until the client's last session. The R package suddengains uses a strict ``>``; "at
    least 50%" reads as ``>=``, which is used here.

    References
    ----------
    .. [1] Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in
       cognitive-behavioral therapy for depression. Journal of Consulting and Clinical
       Psychology, 67(6), 894-904.
    .. [2] Lutz, W., et al. (2013). The ups and downs of psychotherapy: Sudden gains and
       sudden losses identified with session reports. Psychotherapy Research, 23(1), 14-24.
    """
    rows = []
    for client, series in scored_series(sessions, score).items():
        values = series.to_dict()
        for n in series.index:
            if n + 1 not in values:
                continue
            pre = [values.get(s, np.nan) for s in (n - 2, n - 1, n)]
            post = [values.get(s, np.nan) for s in (n + 1, n + 2, n + 3)]
            check = check_interval(pre, post, min_gain, relative, critical_values)
            if not check.is_gain:
                continue
            reversed_at = _reversal(series, n + 1, post[0], check.gain, reversal)
            rows.append({"client_id": client, "pregain_session": n, "postgain_session": n + 1,
                         "pregain_score": pre[-1], "postgain_score": post[0],
                         "gain": check.gain, "relative_gain": check.relative_gain,
                         "mean_pre": check.mean_pre, "mean_post": check.mean_post,
                         "n_pre": check.n_pre, "n_post": check.n_post,
                         "pooled_sd": check.pooled_sd, "critical_value": check.critical_value,
                         "reversal": reversed_at is not None,
                         "reversal_session": reversed_at})
    table = pd.DataFrame(rows, columns=list(GAIN_COLUMNS))
    for column in ("pregain_session", "postgain_session", "n_pre", "n_post",
                   "reversal_session"):
        table[column] = table[column].astype("Int64")
    return table.astype({"client_id": "str", "reversal": "bool"})


def gains_by_client(gains: pd.DataFrame, clients: Sequence[str]) -> pd.DataFrame:
    """Sudden gains per client, every client listed (zero gains included).

    Parameters
    ----------
    gains
        The output of :func:`sudden_gains`.
    clients
        Every client to list.

    Returns
    -------
    pandas.DataFrame
        ``client_id, n_gains, any_gain, first_pregain_session, first_gain, largest_gain,
        n_reversals``: the first gain is the earliest, as most studies analyse.
    """
    first = gains.sort_values(["client_id", "pregain_session"]).groupby("client_id").first()
    grouped = gains.groupby("client_id")
    table = pd.DataFrame(index=pd.Index(sorted(map(str, clients)), name="client_id"))
    table["n_gains"] = grouped.size().reindex(table.index, fill_value=0).astype(int)
    table["any_gain"] = table["n_gains"] > 0
    table["first_pregain_session"] = first["pregain_session"].reindex(table.index)
    table["first_gain"] = first["gain"].reindex(table.index)
    table["largest_gain"] = grouped["gain"].max().reindex(table.index)
    table["n_reversals"] = grouped["reversal"].sum().reindex(table.index, fill_value=0).astype(
        int)
    table["first_pregain_session"] = table["first_pregain_session"].astype("Int64")
    return table.reset_index()
