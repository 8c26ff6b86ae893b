"""Sudden gains and sudden losses (Tang & DeRubeis, 1999; Lutz et al., 2013) in
session-by-session symptom scores.

A sudden gain is a large, stable drop in symptoms between two consecutive sessions; a sudden
loss is its mirror image, a large, stable rise (a sudden worsening, on a measure where lower
is better). :func:`check_interval` applies the three criteria to one interval in either
direction; :func:`sudden_gains` and :func:`sudden_losses` scan every client's sessions and list
the events with their reversals; :func:`gains_by_client` and :func:`losses_by_client`
summarise them per client. Thresholds are plain arguments (``change:`` in the run parameters
sets them, see :class:`alliance_analysis.options.ChangeOptions`); losses use the same
thresholds as gains, as the R package suddengains does (``identify = "sl"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from alliance_analysis.change.client_series import at_least, at_most, more_than, scored_series

#: Critical values of criterion 3 for df = 4, 3, 2: the exact two-tailed t quantiles at alpha
#: .05 (``scipy.stats.t.ppf(0.975, (4, 3, 2))``, R's ``abs(qt(.025, df))`` as suddengains
#: computes them), which Tang & DeRubeis (1999; all six neighbouring scores) and Lutz et al.
#: (2013; one or two missing) print to three decimals as 2.776, 3.182 and 4.303.
CRITICAL_VALUES = (2.7764451051977934, 3.1824463052837078, 4.302652729749462)

#: Columns of :func:`sudden_gains`.
GAIN_COLUMNS = ("client_id", "pregain_session", "postgain_session", "pregain_score",
                "postgain_score", "gain", "relative_gain", "mean_pre", "mean_post", "n_pre",
                "n_post", "pooled_sd", "critical_value", "reversal", "reversal_session")

#: Columns of :func:`sudden_losses`.
LOSS_COLUMNS = ("client_id", "preloss_session", "postloss_session", "preloss_score",
                "postloss_score", "loss", "relative_loss", "mean_pre", "mean_post", "n_pre",
                "n_post", "pooled_sd", "critical_value", "reversal", "reversal_session")

Identify = Literal["gain", "loss"]


@dataclass(frozen=True)
class IntervalCheck:
    """The three sudden-gain (or sudden-loss) criteria applied to one interval n -> n+1.

    Attributes
    ----------
    identify
        ``"gain"`` (a drop in symptoms) or ``"loss"`` (a rise).
    magnitude
        The change in the direction looked for, in points: :math:`x_n - x_{n+1}` for a gain,
        :math:`x_{n+1} - x_n` for a loss (positive = that direction; suddengains'
        ``sg_magnitude``, whose sign is negative for losses).
    relative_magnitude
        ``magnitude / x_n`` (NaN when :math:`x_n` is 0).
    criterion1, criterion2
        Absolute and relative criteria met.
    criterion3
        Stability criterion met; None when fewer than two scores are available on either side.
    mean_pre, mean_post, pooled_sd, n_pre, n_post, critical_value
        The quantities of criterion 3 (NaN when it cannot be assessed).
    """

    identify: Identify
    magnitude: float
    relative_magnitude: float
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
    def is_sudden(self) -> bool:
        """All three criteria met (an unassessable criterion 3 is not met)."""
        return self.criterion1 and self.criterion2 and self.criterion3 is True


def check_interval(pre_values: Sequence[float], post_values: Sequence[float],
                   min_change: float, relative: float = 0.25,
                   critical_values: Sequence[float] = CRITICAL_VALUES,
                   identify: Identify = "gain") -> IntervalCheck:
    """Apply Tang & DeRubeis's three criteria to one interval n -> n+1, for a sudden gain or
    (mirrored) a sudden loss.

    Parameters
    ----------
    pre_values
        Scores at sessions n-2, n-1, n (NaN where missing); the score at n is required.
    post_values
        Scores at sessions n+1, n+2, n+3 (NaN where missing); the score at n+1 is required.
    min_change
        Criterion 1: the smallest change in points, positive in both directions (suddengains
        takes a negative ``sg_crit1_cutoff`` for losses).
    relative
        Criterion 2: the smallest change as a fraction of the score at session n.
    critical_values
        Criterion 3 critical values for 6, 5 and 4 available scores (df 4, 3, 2).
    identify
        ``"gain"``: a fall in symptoms (improvement); ``"loss"``: a rise (worsening).

    Returns
    -------
    IntervalCheck

    Raises
    ------
    ValueError
        When the scores at n or n+1 are missing, a side does not hold three values, or
        `identify` is neither ``"gain"`` nor ``"loss"``.

    Notes
    -----
    With :math:`x_n` the score at session n, the magnitude is :math:`m = x_n - x_{n+1}` for a
    gain and :math:`m = x_{n+1} - x_n` for a loss, and

    1. :math:`m \\ge` `min_change` (Tang & DeRubeis: 7 BDI points);
    2. :math:`m \\ge` `relative` :math:`\\cdot x_n` (25% of the score before the change);
    3. :math:`\\bar x_{pre} - \\bar x_{post} > t_{crit} \\cdot s_p` for a gain, and
       :math:`\\bar x_{post} - \\bar x_{pre} > t_{crit} \\cdot s_p` for a loss, where
       :math:`\\bar x_{pre}` is the mean of the available scores of sessions n-2..n,
       :math:`\\bar x_{post}` of sessions n+1..n+3, and
       :math:`s_p = \\sqrt{((n_1 - 1) s_1^2 + (n_2 - 1) s_2^2) / (n_1 + n_2 - 2)}` their
       pooled SD. :math:`t_{crit}` is the two-tailed .05 t quantile with
       :math:`n_1 + n_2 - 2` df: 2.7764... (df 4) with all six scores, and with one or two of
       the four outer scores missing 3.1824... (df 3) or 4.3026... (df 2) (Lutz et al.,
       2013). With fewer than two scores on a side the criterion cannot be assessed and the
       interval is not sudden.

    Criterion 3 compares the mean difference with the pooled SD itself, not with its standard
    error (there is no :math:`\\sqrt{1/n_1 + 1/n_2}` factor): this is the criterion as
    published and as implemented in the R package suddengains 0.7.2 (``check_interval``,
    ``identify_sg``, ``identify_sl``), not a two-sample t-test. Criteria 1 and 3 of losses
    are suddengains' (``identify = "sl"``). Criterion 2 of losses is the mirror image of
    that of gains, a rise of at least 25% of the score before it (Lutz et al., 2013):
    suddengains 0.7.2 tests :math:`x_n - x_{n+1} \\le 0.25\\,x_n` for losses, which every
    rise meets, so its criterion 2 of losses never excludes one. Every comparison allows
    :data:`alliance_analysis.change.client_series.EPS` (1e-9) for float rounding of prorated
    totals.

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
    >>> check = check_interval([20, 21, 20], [12, 11, 12], min_change=6)
    >>> check.magnitude, check.criterion1, check.criterion2, check.criterion3
    (8.0, True, True, True)
    >>> check_interval([12, 11, 12], [20, 21, 20], min_change=6, identify="loss").is_sudden
    True
    """
    if identify not in ("gain", "loss"):
        raise ValueError(f"identify must be 'gain' or 'loss'; got {identify!r}")
    pre = np.asarray(pre_values, dtype=float)
    post = np.asarray(post_values, dtype=float)
    if pre.shape != (3,) or post.shape != (3,):
        raise ValueError("pre_values and post_values must each hold three scores "
                         f"(n-2, n-1, n and n+1, n+2, n+3); got {pre.tolist()}, {post.tolist()}")
    if np.isnan(pre[-1]) or np.isnan(post[0]):
        raise ValueError("the scores at sessions n and n+1 are required; "
                         f"got {pre[-1]} and {post[0]}")
    sign = 1.0 if identify == "gain" else -1.0  # +1: a fall is the direction looked for
    before = float(pre[-1])
    magnitude = sign * (before - float(post[0]))
    relative_magnitude = magnitude / before if before != 0 else np.nan
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
        criterion3 = bool(more_than(sign * (mean_pre - mean_post), critical * pooled_sd))
    return IntervalCheck(identify=identify, magnitude=magnitude,
                         relative_magnitude=float(relative_magnitude),
                         criterion1=bool(at_least(magnitude, min_change)),
                         criterion2=bool(at_least(magnitude, relative * before)),
                         criterion3=criterion3, mean_pre=mean_pre, mean_post=mean_post,
                         pooled_sd=pooled_sd, n_pre=n_pre, n_post=n_post,
                         critical_value=critical)


def _reversal(series: pd.Series, post_session: int, post_score: float, magnitude: float,
              reversal: float, identify: Identify) -> int | None:
    """First session after n+1 whose score gives back at least `reversal` of the change."""
    later = series[series.index > post_session]
    if identify == "gain":
        hit = later[at_least(later, post_score + reversal * magnitude)]
    else:
        hit = later[at_most(later, post_score - reversal * magnitude)]
    return int(hit.index[0]) if len(hit) else None


def _scan(sessions: pd.DataFrame, score: str, identify: Identify, min_change: float,
          relative: float, critical_values: Sequence[float], reversal: float) -> pd.DataFrame:
    """Every sudden gain or loss of every client (columns :data:`GAIN_COLUMNS` or
    :data:`LOSS_COLUMNS`)."""
    word = identify  # "gain" or "loss": the column stems
    sign = 1.0 if identify == "gain" else -1.0
    rows = []
    for client, series in scored_series(sessions, score).items():
        values = series.to_dict()
        for n in series.index:
            if n + 1 not in values:
                continue
            # criterion 1 (the change is at least min_change) computed as check_interval
            # computes it: an interval that misses it is not sudden, so it is not checked
            if not at_least(sign * (float(values[n]) - float(values[n + 1])), min_change):
                continue
            pre = [values.get(s, np.nan) for s in (n - 2, n - 1, n)]
            post = [values.get(s, np.nan) for s in (n + 1, n + 2, n + 3)]
            check = check_interval(pre, post, min_change, relative, critical_values, identify)
            if not check.is_sudden:
                continue
            reversed_at = _reversal(series, n + 1, post[0], check.magnitude, reversal,
                                    identify)
            rows.append({"client_id": client, f"pre{word}_session": n,
                         f"post{word}_session": n + 1, f"pre{word}_score": pre[-1],
                         f"post{word}_score": post[0], word: check.magnitude,
                         f"relative_{word}": check.relative_magnitude,
                         "mean_pre": check.mean_pre, "mean_post": check.mean_post,
                         "n_pre": check.n_pre, "n_post": check.n_post,
                         "pooled_sd": check.pooled_sd, "critical_value": check.critical_value,
                         "reversal": reversed_at is not None,
                         "reversal_session": reversed_at})
    columns = GAIN_COLUMNS if identify == "gain" else LOSS_COLUMNS
    table = pd.DataFrame(rows, columns=list(columns))
    for column in (f"pre{word}_session", f"post{word}_session", "n_pre", "n_post",
                   "reversal_session"):
        table[column] = table[column].astype("Int64")
    for column in (f"pre{word}_score", f"post{word}_score", word, f"relative_{word}",
                   "mean_pre", "mean_post", "pooled_sd", "critical_value"):
        table[column] = table[column].astype(float)
    return table.astype({"client_id": "str", "reversal": "bool"})


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
        The criteria (``min_change``, `relative`, `critical_values` of
        :func:`check_interval`).
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
    until the client's last session. The R package suddengains (``create_bysg``) uses a
    strict ``>``; "at least 50%" reads as ``>=``, which is used here.

    References
    ----------
    .. [1] Tang, T. Z., & DeRubeis, R. J. (1999). Sudden gains and critical sessions in
       cognitive-behavioral therapy for depression. Journal of Consulting and Clinical
       Psychology, 67(6), 894-904.
    .. [2] Lutz, W., et al. (2013). The ups and downs of psychotherapy: Sudden gains and
       sudden losses identified with session reports. Psychotherapy Research, 23(1), 14-24.
    """
    return _scan(sessions, score, "gain", min_gain, relative, critical_values, reversal)


def sudden_losses(sessions: pd.DataFrame, score: str, min_loss: float, relative: float = 0.25,
                  critical_values: Sequence[float] = CRITICAL_VALUES,
                  reversal: float = 0.5) -> pd.DataFrame:
    """Every sudden loss (a sudden worsening) of every client, with its reversal.

    The mirror image of :func:`sudden_gains`: on a symptom measure (lower = better) a sudden
    loss is a large, stable *rise* between sessions n and n+1, checked with
    :func:`check_interval` (``identify="loss"``) and the same thresholds as gains.

    Parameters
    ----------
    sessions
        The canonical session table (``client_id``, ``session`` and `score`).
    score
        The symptom score (lower = better), e.g. ``phq9_total``.
    min_loss
        Criterion 1: the smallest rise in points (positive; suddengains' negative
        ``sg_crit1_cutoff``).
    relative, critical_values
        Criteria 2 and 3 (see :func:`check_interval`).
    reversal
        A loss is reversed when a later score (session n+2 or after) is at or below the
        post-loss score minus this fraction of the loss.

    Returns
    -------
    pandas.DataFrame
        One row per loss, columns :data:`LOSS_COLUMNS`: ``preloss_session`` (n),
        ``postloss_session`` (n+1), ``preloss_score``, ``postloss_score``, ``loss``
        (post - pre, points of worsening, positive), ``relative_loss`` (loss / pre-loss
        score), ``mean_pre``, ``mean_post``, ``n_pre``, ``n_post``, ``pooled_sd``,
        ``critical_value`` (criterion 3), ``reversal`` (bool) and ``reversal_session``.

    Notes
    -----
    Criterion 2 requires the rise to be at least `relative` (25%) of the pre-loss score, the
    mirror image of the gain criterion; see :func:`check_interval` for how this differs from
    suddengains 0.7.2. Reversal as suddengains' ``create_bysg(identify = "sl")`` defines it,
    mirrored: a later score :math:`x_s \\le x_{n+1} - 0.5\\,l` (suddengains: strict ``<``).

    References
    ----------
    .. [1] Lutz, W., et al. (2013). The ups and downs of psychotherapy: Sudden gains and
       sudden losses identified with session reports. Psychotherapy Research, 23(1), 14-24.
    .. [2] Wiedemann, M., Thew, G. R., Stott, R., & Ehlers, A. (2020). suddengains: An R
       package to identify sudden gains in longitudinal data. PLOS ONE, 15(3), e0230276
       (``identify_sl``, ``create_bysg``).
    """
    return _scan(sessions, score, "loss", min_loss, relative, critical_values, reversal)


def _by_client(events: pd.DataFrame, clients: Sequence[str], word: str) -> pd.DataFrame:
    first = events.sort_values(["client_id", f"pre{word}_session"]).groupby("client_id").first()
    grouped = events.groupby("client_id")
    table = pd.DataFrame(index=pd.Index(sorted(map(str, clients)), name="client_id"))
    count = {"gain": "n_gains", "loss": "n_losses"}[word]
    table[count] = grouped.size().reindex(table.index, fill_value=0).astype(int)
    table[f"any_{word}"] = table[count] > 0
    table[f"first_pre{word}_session"] = first[f"pre{word}_session"].reindex(
        table.index).astype("Int64")
    table[f"first_{word}"] = first[word].reindex(table.index).astype(float)
    table[f"largest_{word}"] = grouped[word].max().reindex(table.index).astype(float)
    table["n_reversals"] = grouped["reversal"].sum().reindex(table.index, fill_value=0).astype(
        int)
    return table.reset_index()


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
    return _by_client(gains, clients, "gain")


def losses_by_client(losses: pd.DataFrame, clients: Sequence[str]) -> pd.DataFrame:
    """Sudden losses per client, every client listed (zero losses included).

    Parameters
    ----------
    losses
        The output of :func:`sudden_losses`.
    clients
        Every client to list.

    Returns
    -------
    pandas.DataFrame
        ``client_id, n_losses, any_loss, first_preloss_session, first_loss, largest_loss,
        n_reversals``.
    """
    return _by_client(losses, clients, "loss")
