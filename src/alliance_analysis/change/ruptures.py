"""Alliance ruptures and repairs in session-by-session alliance ratings.

A rupture is a session in which the client's alliance rating dips well below their own usual
level; a repair is its return to where it was before the dip, the V-shaped rupture-repair
pattern (Stiles et al., 2004). :func:`ruptures` lists every rupture of every client under
each criterion, :func:`rupture_counts` counts them per client, and
:func:`rupture_outcome` asks whether clients with a resolved rupture changed more.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from alliance_analysis.stats.regression import fit_ols
from alliance_analysis.change.client_series import at_least, less_than, scored_series
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.results import ModelResult

#: Columns of :func:`ruptures`.
RUPTURE_COLUMNS = ("client_id", "criterion", "rupture_session", "end_session", "n_sessions",
                   "alliance", "lowest", "client_mean", "client_sd", "threshold",
                   "pre_rupture_session", "pre_rupture_level", "repaired", "repair_session",
                   "window_complete")

#: Columns of :func:`rupture_counts`.
COUNT_COLUMNS = ("client_id", "criterion", "n_scores", "assessed", "n_ruptures",
                 "n_repaired", "any_rupture", "any_resolved")

#: Columns of :func:`rupture_summary`.
SUMMARY_COLUMNS = ("criterion", "n_assessed", "n_ruptures", "n_clients", "percent_clients",
                   "n_repaired", "percent_repaired", "n_clients_resolved",
                   "n_unassessable_repair")


def criterion_label(sd_multiple: float) -> str:
    """Stable label of an SD criterion: 1.0 -> ``sd1``, 2.0 -> ``sd2``, 1.5 -> ``sd1_5``."""
    return "sd" + f"{sd_multiple:g}".replace(".", "_")


def criteria_labels(sd_multiples: Sequence[float], drop: float | None) -> list[str]:
    """Labels of every rupture criterion in use, in the order they are reported."""
    labels = [criterion_label(k) for k in sd_multiples]
    if len(set(labels)) != len(labels):
        raise AllianceParamsError(f"change.rupture_sd: the SD multiples must differ; got "
                                  f"{list(sd_multiples)}")
    return labels + (["drop"] if drop is not None else [])


def _runs(flagged: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) positions of each run of consecutive True values."""
    runs, start = [], None
    for i, value in enumerate(flagged):
        if value and start is None:
            start = i
        if not value and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, len(flagged) - 1))
    return runs


def _episodes(series: pd.Series, flagged: np.ndarray, repair_within: int) -> list[dict]:
    """One rupture per run of consecutive flagged scores, with its repair."""
    sessions, values = series.index.to_numpy(), series.to_numpy()
    last_session = int(sessions[-1])
    rows = []
    for first, last in _runs(flagged):
        start = int(sessions[first])
        row = {"rupture_session": start, "end_session": int(sessions[last]),
               "n_sessions": last - first + 1, "alliance": float(values[first]),
               "lowest": float(values[first:last + 1].min()),
               "pre_rupture_session": None, "pre_rupture_level": np.nan,
               "repaired": pd.NA, "repair_session": None,
               "window_complete": last_session >= start + repair_within}
        if first > 0:
            level = float(values[first - 1])
            window = series[(series.index > start) & (series.index <= start + repair_within)]
            back = window[at_least(window, level)]
            row.update(pre_rupture_session=int(sessions[first - 1]), pre_rupture_level=level,
                       repaired=bool(len(back)),
                       repair_session=int(back.index[0]) if len(back) else None)
        rows.append(row)
    return rows


def ruptures(sessions: pd.DataFrame, alliance: str, sd_multiples: Sequence[float] = (1.0, 2.0),
             drop: float | None = None, repair_within: int = 3,
             min_scores: int = 3) -> pd.DataFrame:
    """Every alliance rupture of every client, under each criterion, with its repair.

    Parameters
    ----------
    sessions
        The canonical session table (``client_id``, ``session`` and `alliance`).
    alliance
        The alliance score (higher = stronger alliance), e.g. ``wai_total``.
    sd_multiples
        SD criteria: a session is a rupture session when its alliance is *more than* k of the
        client's SDs below the client's mean, for each k (labels ``sd1``, ``sd2``, ...).
    drop
        Drop criterion (label ``drop``): alliance falls by at least this many points from the
        client's previous scored session. None: not used.
    repair_within
        Sessions after the start of a rupture within which the alliance must return to the
        pre-rupture level for the rupture to count as repaired.
    min_scores
        Clients with fewer alliance scores are not assessed (a client SD from two scores says
        little).

    Returns
    -------
    pandas.DataFrame
        One row per rupture, columns :data:`RUPTURE_COLUMNS`: ``criterion``,
        ``rupture_session`` (first session of the rupture), ``end_session`` and
        ``n_sessions`` (consecutive scored sessions meeting the criterion form one rupture),
        ``alliance`` (at the first session), ``lowest`` (lowest in the rupture),
        ``client_mean``, ``client_sd``, ``threshold`` (mean - k SD; NaN for ``drop``),
        ``pre_rupture_session`` and ``pre_rupture_level`` (the client's last scored session
        before the rupture and its alliance), ``repaired`` (bool; missing when the rupture is
        at the client's first scored session, so there is no pre-rupture level),
        ``repair_session`` (first session at or above the pre-rupture level), and
        ``window_complete`` (the client's data reach ``rupture_session + repair_within``;
        False means an unrepaired rupture may only lack follow-up).

    Notes
    -----
    With :math:`\\bar a_i` and :math:`s_i` the mean and SD (n - 1 denominator) of client i's
    alliance over all their scored sessions, session t is a rupture session under criterion k
    when :math:`a_{it} < \\bar a_i - k s_i`; under the drop criterion when
    :math:`a_{i,t^-} - a_{it} \\ge d`, :math:`t^-` the previous scored session. Runs of
    consecutive scored rupture sessions are one rupture. The rupture is repaired when some
    session s with :math:`t_0 < s \\le t_0 + w` has :math:`a_{is} \\ge a_{i,t_0^-}`, the
    level before the rupture began (the V shape). Comparisons allow
    :data:`alliance_analysis.change.client_series.EPS` (1e-9) for float rounding of item means.

    This is a session-report operationalisation of the V-shaped rupture-repair sequence
    (Stiles et al., 2004); studies differ in the SD multiple (1 or 2 SD), in whether the SD
    is the client's or the sample's, and in the level a repair must regain (Gumz et al.,
    2012, compare them). Ruptures identified from questionnaire dips are not the same as
    ruptures coded from session recordings (Eubanks, Muran & Safran, 2018). The client's mean
    is taken over the whole treatment: when alliance grows over sessions, as it usually does,
    early sessions fall below that mean without any rupture, so read early "ruptures" (and
    the 1 SD criterion, which a normal session-to-session scatter alone meets in about one
    session in six) with care.

    References
    ----------
    .. [1] Stiles, W. B., Glick, M. J., Osatuke, K., Hardy, G. E., Shapiro, D. A., Agnew-Davies,
       R., Rees, A., & Barkham, M. (2004). Patterns of alliance development and the
       rupture-repair hypothesis: Are productive relationships U-shaped or V-shaped? Journal
       of Counseling Psychology, 51(1), 81-92. https://doi.org/10.1037/0022-0167.51.1.81
    .. [2] Eubanks, C. F., Muran, J. C., & Safran, J. D. (2018). Alliance rupture repair: A
       meta-analysis. Psychotherapy, 55(4), 508-519. https://doi.org/10.1037/pst0000185
    .. [3] Gumz, A., Brähler, E., Geyer, M., & Erices, R. (2012). Crisis-repair sequences:
       Considerations on the classification and assessment of breaches in the therapeutic
       relationship. BMC Medical Research Methodology, 12, 10.
    """
    labels = criteria_labels(sd_multiples, drop)
    rows = []
    for client, series in scored_series(sessions, alliance).items():
        if len(series) < min_scores:
            continue
        values = series.to_numpy()
        mean, sd = float(values.mean()), float(values.std(ddof=1))
        rules = {label: (less_than(values, mean - k * sd), mean - k * sd)
                 for label, k in zip(labels, sd_multiples)}
        if drop is not None:
            falls = np.concatenate([[False], at_least(values[:-1] - values[1:], drop)])
            rules["drop"] = (falls, np.nan)
        for label, (flagged, threshold) in rules.items():
            for episode in _episodes(series, flagged, repair_within):
                rows.append({"client_id": client, "criterion": label, **episode,
                             "client_mean": mean, "client_sd": sd, "threshold": threshold})
    table = pd.DataFrame(rows, columns=list(RUPTURE_COLUMNS))
    for column in ("rupture_session", "end_session", "n_sessions", "pre_rupture_session",
                   "repair_session"):
        table[column] = table[column].astype("Int64")
    order = {label: i for i, label in enumerate(labels)}
    table = table.astype({"client_id": "str", "repaired": "boolean",
                          "window_complete": "bool"})
    return table.sort_values(["criterion", "client_id", "rupture_session"],
                             key=lambda c: c.map(order) if c.name == "criterion" else c,
                             kind="stable").reset_index(drop=True)


def rupture_counts(events: pd.DataFrame, sessions: pd.DataFrame, alliance: str,
                   labels: Sequence[str], min_scores: int = 3) -> pd.DataFrame:
    """Ruptures and repairs per client and criterion; every client listed.

    Parameters
    ----------
    events
        The output of :func:`ruptures`.
    sessions
        The session table (to list every client and count their alliance scores).
    alliance
        The alliance score column.
    labels
        The criteria (see :func:`criteria_labels`).
    min_scores
        As in :func:`ruptures`: clients with fewer scores have ``assessed`` False and missing
        counts.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COUNT_COLUMNS`: ``n_scores`` (alliance scores), ``assessed``,
        ``n_ruptures``, ``n_repaired``, ``any_rupture`` and ``any_resolved`` (at least one
        repaired rupture).
    """
    n_scores = sessions[sessions[alliance].notna()].groupby("client_id").size()
    clients = pd.Index(sorted(sessions["client_id"].astype(str).unique()), name="client_id")
    n_scores = n_scores.rename(index=str).reindex(clients, fill_value=0)
    tables = []
    for label in labels:
        mine = events[events["criterion"] == label]
        table = pd.DataFrame({"criterion": label, "n_scores": n_scores.astype(int),
                              "assessed": n_scores >= min_scores}, index=clients)
        counts = mine.groupby("client_id").size().reindex(clients, fill_value=0)
        repaired = mine["repaired"].fillna(False).astype(int).groupby(mine["client_id"]).sum()
        repaired = repaired.reindex(clients, fill_value=0)
        table["n_ruptures"] = counts.where(table["assessed"]).astype("Int64")
        table["n_repaired"] = repaired.where(table["assessed"]).astype("Int64")
        table["any_rupture"] = (table["n_ruptures"] > 0).astype("boolean")
        table["any_resolved"] = (table["n_repaired"] > 0).astype("boolean")
        tables.append(table.reset_index())
    return pd.concat(tables, ignore_index=True)[list(COUNT_COLUMNS)]


def rupture_summary(counts: pd.DataFrame, events: pd.DataFrame,
                    labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per criterion: clients assessed, ruptures, clients with one, repairs.

    Parameters
    ----------
    counts, events
        The outputs of :func:`rupture_counts` and :func:`ruptures`.
    labels
        The criteria to report, one row each even without any client (an empty session
        table gives zero counts); None: those in `counts`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`: ``criterion, n_assessed, n_ruptures, n_clients,
        percent_clients, n_repaired, percent_repaired, n_clients_resolved,
        n_unassessable_repair`` (ruptures at a client's first scored session, which have no
        pre-rupture level). Percentages are missing when their denominator is 0.
    """
    if labels is None:
        labels = list(dict.fromkeys(counts["criterion"]))
    rows = []
    for label in labels:
        table = counts[counts["criterion"] == label]
        assessed = table[table["assessed"]]
        mine = events[events["criterion"] == label]
        n_ruptures = len(mine)
        n_repaired = int(mine["repaired"].fillna(False).sum())
        rows.append({"criterion": label, "n_assessed": len(assessed), "n_ruptures": n_ruptures,
                     "n_clients": int(assessed["any_rupture"].sum()),
                     "percent_clients": _percent(int(assessed["any_rupture"].sum()),
                                                 len(assessed)),
                     "n_repaired": n_repaired,
                     "percent_repaired": _percent(n_repaired, n_ruptures),
                     "n_clients_resolved": int(assessed["any_resolved"].sum()),
                     "n_unassessable_repair": int(mine["repaired"].isna().sum())})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _percent(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else np.nan


def rupture_outcome(counts: pd.DataFrame, change: pd.DataFrame, label: str,
                    ci_level: float = 0.95, n_therapists: int | None = None) -> ModelResult:
    """Do clients with a resolved rupture change more? OLS of symptom change.

    Parameters
    ----------
    counts
        The output of :func:`rupture_counts`.
    change
        Per-client symptom change with ``client_id``, ``pre`` and ``change`` (post - pre),
        e.g. the table of :func:`alliance_analysis.change.markers.reliable_change`.
    label
        The rupture criterion (e.g. ``sd1``).
    ci_level
        Confidence level.
    n_therapists
        For the fit table.

    Returns
    -------
    ModelResult
        Named ``rupture_outcome_<label>``; model
        ``change ~ any_resolved + pre`` over assessed clients with a pre and post score:
        ``any_resolved`` (0/1) estimates the difference in symptom change (post - pre;
        negative = more improvement) between clients with at least one repaired rupture and
        all other clients (no rupture, or unrepaired ruptures only), at equal baseline.

    Notes
    -----
    Ruptures and symptom change are measured over the same sessions, so this is an
    association, not an effect of repair on outcome; clients who stay longer have more
    sessions in which a rupture (and its repair) can be seen. The meta-analysis of Eubanks,
    Muran & Safran (2018) found rupture resolution related to better outcome (r = .29).

    References
    ----------
    .. [1] Eubanks, C. F., Muran, J. C., & Safran, J. D. (2018). Alliance rupture repair: A
       meta-analysis. Psychotherapy, 55(4), 508-519.
    """
    mine = counts[(counts["criterion"] == label) & counts["assessed"]]
    data = mine[["client_id", "any_resolved"]].merge(
        change[["client_id", "pre", "change"]], on="client_id", how="inner")
    data = data.assign(any_resolved=data["any_resolved"].astype(float))
    return fit_ols(f"rupture_outcome_{label}", data, "change", ["any_resolved", "pre"],
                   ci_level=ci_level, n_therapists=n_therapists)
