"""Questionnaire scores.

:func:`score` turns item columns into totals, subscale scores and severity bands, following each
:class:`~alliance_analysis.instruments.Instrument`'s scoring rule (with the run's ``scoring:``
changes), and writes a ledger entry for every score the rule decided rather than the items
alone: each score prorated from incomplete items (rule ``prorated``), each score left missing
because too few items were answered (``too_few_items``) and each complete score changed by the
instrument's rounding (``rounded``). Their reliability is
:mod:`alliance_analysis.data.reliability`.

Examples
--------
>>> import pandas as pd
>>> from alliance_analysis.instruments import get_instrument
>>> phq9 = get_instrument("phq9")
>>> rows = pd.DataFrame({"source_row": [1, 2, 3], **{c: [1, 2, 1] for c in phq9.items()}})
>>> rows.loc[1, "phq9_9"] = None
>>> rows.loc[2, ["phq9_1", "phq9_2", "phq9_3"]] = None
>>> result = score(rows, [phq9])
>>> result.sessions[["phq9_total", "phq9_band", "phq9_n_items"]]
   phq9_total          phq9_band  phq9_n_items
0         9.0               mild             9
1        18.0  moderately severe             8
2         NaN                NaN             6
>>> result.ledger[["source_row", "column", "new_value", "rule"]]
   source_row      column new_value           rule
0           2  phq9_total        18       prorated
1           3  phq9_total      None  too_few_items
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from alliance_analysis.data.cleaning import CELL_COLUMNS, ledger_text
from alliance_analysis.errors import AllianceDataError, AllianceParamsError
from alliance_analysis.instruments import Instrument
from alliance_analysis.data.schema import SOURCE_ROW

#: Ledger rule of a score computed from fewer than all its items.
PRORATED_RULE = "prorated"
#: Ledger rule of a score left missing because fewer than its minimum of items were answered.
TOO_FEW_ITEMS_RULE = "too_few_items"
#: Ledger rule of a complete (not prorated) score changed by the instrument's rounding.
ROUNDED_RULE = "rounded"
#: Every rule of the scoring ledger entries (all other ``ledger_cells`` rules are cleaning's).
SCORING_RULES = (PRORATED_RULE, TOO_FEW_ITEMS_RULE, ROUNDED_RULE)

#: Decimals a score is snapped to before rounding and before telling whether rounding changed
#: it, so that floating-point noise (12.499999999999998 for an exact 12.5) is neither rounded
#: the wrong way nor logged as a change.
_SNAP_DECIMALS = 9


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoreResult:
    """The scored session table and the ledger entries of its scores.

    Every ledger frame has the cleaning ledger's cell columns ``source_row, column,
    old_value, new_value, rule, reason`` (:data:`alliance_analysis.data.cleaning.CELL_COLUMNS`)
    and holds one row per score (``column`` is the score column, e.g. ``phq9_total`` or
    ``wai_goal``), in instrument, then scale, then row order.

    Attributes
    ----------
    sessions : pandas.DataFrame
        The input table plus, after each instrument's item columns, ``<key>_total``, one
        ``<key>_<subscale>`` per subscale, ``<key>_band`` (only for instruments with bands) and
        ``<key>_n_items``.
    prorated : pandas.DataFrame
        Rule ``prorated``: one row per score computed from fewer than all its items
        (``old_value`` None, ``new_value`` the score, after any rounding).
    missing : pandas.DataFrame
        Rule ``too_few_items``: one row per score left missing because fewer items than its
        minimum were answered, in a row where at least one item of the instrument was answered
        (``old_value`` and ``new_value`` None). A row with no item of the instrument answered
        (the questionnaire was not given) has no entry.
    rounded : pandas.DataFrame
        Rule ``rounded``: one row per score computed from all its items that the instrument's
        ``rounding`` changed (``old_value`` the exact score, ``new_value`` the rounded one).
        Prorated scores that were rounded are not repeated here: their ``prorated`` entry says
        so.
    """

    sessions: pd.DataFrame
    prorated: pd.DataFrame
    missing: pd.DataFrame
    rounded: pd.DataFrame

    @property
    def ledger(self) -> pd.DataFrame:
        """Every scoring ledger entry (prorated, too_few_items, rounded), ordered by
        ``source_row`` and ``column``; what the clean stage appends to ``ledger_cells``."""
        parts = [part for part in (self.prorated, self.missing, self.rounded) if not part.empty]
        if not parts:
            return self.prorated.copy()
        entries = pd.concat(parts, ignore_index=True)
        entries = entries.sort_values([SOURCE_ROW, "column"], kind="stable")
        return entries.reset_index(drop=True)

    def counts(self) -> dict[str, int]:
        """Number of ledger entries by rule: ``{"prorated": .., "too_few_items": ..,
        "rounded": ..}``."""
        return {PRORATED_RULE: len(self.prorated), TOO_FEW_ITEMS_RULE: len(self.missing),
                ROUNDED_RULE: len(self.rounded)}


def score(sessions: pd.DataFrame, instruments: Sequence[Instrument]) -> ScoreResult:
    """Score questionnaires: totals, subscales, severity bands and answered-item counts.

    Parameters
    ----------
    sessions : pandas.DataFrame
        The cleaned session table with a ``source_row`` column and the item columns
        ``<key>_1`` .. ``<key>_<n_items>`` of every instrument (numeric, missing as NA).
    instruments : sequence of Instrument
        The questionnaires to score, with the run's ``scoring:`` changes applied
        (:meth:`alliance_analysis.params.RunParams.instrument_definitions`).

    Returns
    -------
    ScoreResult
        ``sessions``: a copy of the input with, inserted after each instrument's last item
        column,

        - ``<key>_total``: the total score (float; missing when too few items were answered),
        - ``<key>_<subscale>``: each subscale score, scored like the total,
        - ``<key>_band``: the severity band of the total (ordered categorical), only when the
          instrument has ``bands``,
        - ``<key>_n_items``: how many of the instrument's items were answered (int).

        and the ledger entries of the scores (item columns are never changed):

        - ``prorated``: rule ``prorated``, ``old_value`` None, ``new_value`` the score as text,
          ``reason`` e.g. "8 of 9 items answered; sum prorated as mean x 9" (plus e.g.
          "; 13.5 rounded half to even" when the rounding changed it);
        - ``missing``: rule ``too_few_items``, ``old_value`` and ``new_value`` None,
          ``reason`` e.g. "6 of 9 items answered; at least 7 needed for a score";
        - ``rounded``: rule ``rounded``, ``old_value`` the exact score, ``new_value`` the
          rounded one, ``reason`` e.g. "rounded half to even to 1 decimal".

        :attr:`ScoreResult.ledger` gives all of them in one table.

    Raises
    ------
    AllianceDataError
        If ``source_row`` or an item column is missing, an item column is not numeric, an item
        value lies outside the instrument's response range, or a score column already exists
        or would be created twice (e.g. a subscale named like another instrument's column).
    AllianceParamsError
        If two instruments share a key.

    Notes
    -----
    For each scale (the total, or one subscale of :math:`m` items):

    1. Reverse-keyed items are recoded as ``item_min + item_max - x``.
    2. If all :math:`m` items are answered, the score is their sum (``scoring="sum"``) or
       mean (``scoring="mean"``).
    3. If some are missing and at least :math:`m_{min}` are answered, the score is *prorated*:
       the mean of the answered items, times :math:`m` for sum scoring (ledger rule
       ``prorated``). Otherwise it is missing (ledger rule ``too_few_items``, unless no item
       of the instrument was answered at all, i.e. the questionnaire was not given).
    4. With the instrument's ``rounding`` set, the score is rounded to ``rounding_decimals``
       decimals by :func:`round_scores` (ledger rule ``rounded`` for a complete score it
       changed; a prorated score's entry notes its rounding instead).

    For the total, :math:`m_{min}` is the instrument's ``prorate_min_items`` (or all items when
    it is None). For a subscale of :math:`m` of the instrument's :math:`n` items,
    :math:`m_{min} = \\lceil \\text{prorate\\_min\\_items} \\cdot m / n \\rceil`: the instrument's
    answered-item proportion, rounded up. This scaling is a project convention, not a published
    rule; e.g. the WAI-SR (10 of 12) then requires all 4 items of each subscale.

    Bands are assigned to the total, prorated or not, after any rounding: the band whose lower
    bound is the largest one at or below the total (a total below the first bound has no band).

    References
    ----------
    .. [1] Kroenke, K., Spitzer, R. L., & Williams, J. B. W. (2001). The PHQ-9: Validity of a
       brief depression severity measure. Journal of General Internal Medicine, 16(9), 606-613.
    .. [2] Barkham, M., et al. (2013). The CORE-10: A short measure of psychological distress
       for routine use in the psychological therapies. Counselling and Psychotherapy Research,
       13(1), 3-13. (prorating at most one missing item as the mean of the answered items)
    """
    _check_scoring_input(sessions, instruments)
    scored = sessions
    entries: dict[str, list[dict]] = {rule: [] for rule in SCORING_RULES}
    for instrument in instruments:
        columns, instrument_entries = _score_instrument(sessions, instrument)
        scored = _insert_after(scored, instrument.items(), columns)
        for rule, rows in instrument_entries.items():
            entries[rule].extend(rows)
    ledgers = {rule: pd.DataFrame(rows, columns=list(CELL_COLUMNS)).astype({SOURCE_ROW: "int64"})
               for rule, rows in entries.items()}
    return ScoreResult(sessions=scored, prorated=ledgers[PRORATED_RULE],
                       missing=ledgers[TOO_FEW_ITEMS_RULE], rounded=ledgers[ROUNDED_RULE])


def _score_instrument(
    sessions: pd.DataFrame, instrument: Instrument
) -> tuple[dict[str, pd.Series], dict[str, list[dict]]]:
    """The score columns of one instrument and its ledger entries by rule."""
    items = recoded_items(sessions, instrument)
    given = items.notna().any(axis=1)
    scales = {instrument.score_column(): instrument.items()}
    scales |= {instrument.score_column(name): instrument.subscale_items(name)
               for name in instrument.subscales}
    columns: dict[str, pd.Series] = {}
    entries: dict[str, list[dict]] = {rule: [] for rule in SCORING_RULES}
    source_row = sessions[SOURCE_ROW]
    for column, names in scales.items():
        minimum = _min_items(instrument, len(names))
        exact, answered = _scale_score(items[names], minimum, instrument.scoring)
        value = round_scores(exact, instrument.rounding, instrument.rounding_decimals)
        columns[column] = value
        changed = _rounding_changed(exact, value)
        complete = answered == len(names)
        entries[PRORATED_RULE] += _prorated_entries(
            source_row, column, value, answered, len(names), instrument.scoring,
            _rounding_text(exact, value, instrument))
        entries[TOO_FEW_ITEMS_RULE] += _too_few_entries(
            source_row, column, exact.isna() & given, answered, len(names), minimum)
        entries[ROUNDED_RULE] += _rounded_entries(
            source_row, column, exact, value, changed & complete, instrument)
    if instrument.bands:
        columns[f"{instrument.key}_band"] = _band(columns[instrument.score_column()], instrument)
    columns[f"{instrument.key}_n_items"] = items.notna().sum(axis=1).astype("int64")
    return columns, entries


def recoded_items(sessions: pd.DataFrame, instrument: Instrument) -> pd.DataFrame:
    """The instrument's items as floats, reverse-keyed items recoded as min + max - x."""
    items = pd.DataFrame(
        {c: sessions[c].to_numpy(dtype="float64", na_value=np.nan) for c in instrument.items()},
        index=sessions.index,
    )
    reverse = [f"{instrument.key}_{i}" for i in instrument.reverse]
    items[reverse] = instrument.item_min + instrument.item_max - items[reverse]
    return items


def _min_items(instrument: Instrument, n_scale_items: int) -> int:
    """Fewest answered items for a score of `n_scale_items` items (see :func:`score`)."""
    if instrument.prorate_min_items is None:
        return n_scale_items
    return -(-instrument.prorate_min_items * n_scale_items // instrument.n_items)  # ceiling


def _scale_score(
    items: pd.DataFrame, minimum: int, scoring: Literal["sum", "mean"]
) -> tuple[pd.Series, pd.Series]:
    """Score one scale by the rule in :func:`score`; also return the answered-item counts."""
    answered = items.notna().sum(axis=1)
    mean = items.mean(axis=1, skipna=True)
    if scoring == "mean":
        value = mean
    else:
        value = items.sum(axis=1, skipna=True).where(answered == items.shape[1],
                                                     mean * items.shape[1])
    return value.where(answered >= minimum).astype("float64"), answered


def _prorated_entries(
    source_row: pd.Series, column: str, value: pd.Series, answered: pd.Series, n_items: int,
    scoring: Literal["sum", "mean"], rounded: pd.Series | None = None,
) -> list[dict]:
    """Ledger entries for the scores of `column` computed from fewer than `n_items` items.

    ``rounded`` holds, where the instrument's rounding changed a score, the text saying so
    (e.g. "13.5 rounded half to even").
    """
    rule = (f"sum prorated as mean x {n_items}" if scoring == "sum"
            else "mean of the answered items")
    prorated = value.notna() & (answered < n_items)
    notes = rounded if rounded is not None else pd.Series("", index=value.index)
    return [
        {"source_row": int(source_row[i]), "column": column, "old_value": None,
         "new_value": ledger_text(float(value[i])), "rule": PRORATED_RULE,
         "reason": f"{answered[i]} of {n_items} items answered; {rule}"
                   + (f"; {notes[i]}" if notes[i] else "")}
        for i in value.index[prorated]
    ]


def _too_few_entries(source_row: pd.Series, column: str, missing: pd.Series,
                     answered: pd.Series, n_items: int, minimum: int) -> list[dict]:
    """Ledger entries for the scores of `column` left missing (where `missing`) because
    fewer than `minimum` of its `n_items` items were answered."""
    return [
        {"source_row": int(source_row[i]), "column": column, "old_value": None,
         "new_value": None, "rule": TOO_FEW_ITEMS_RULE,
         "reason": f"{answered[i]} of {n_items} items answered; at least {minimum} needed "
                   f"for a score"}
        for i in missing.index[missing]
    ]


def _rounded_entries(source_row: pd.Series, column: str, exact: pd.Series,
                     value: pd.Series, changed: pd.Series, instrument: Instrument) -> list[dict]:
    """Ledger entries for the complete scores of `column` that rounding changed (`changed`)."""
    if not changed.any():
        return []
    reason = f"{_ROUNDING_WORDS[instrument.rounding]} to {_decimals_text(instrument)}"
    return [
        {"source_row": int(source_row[i]), "column": column,
         "old_value": _exact_text(exact[i]), "new_value": ledger_text(float(value[i])),
         "rule": ROUNDED_RULE, "reason": reason}
        for i in changed.index[changed]
    ]


#: How each rounding rule reads in the ledger.
_ROUNDING_WORDS = {"half_even": "rounded half to even", "half_up": "rounded half up"}


def round_scores(values: pd.Series, rounding: Literal["none", "half_even", "half_up"],
                 decimals: int = 0) -> pd.Series:
    """Scores rounded as a service's export rounds them (``scoring:`` in the parameters).

    Parameters
    ----------
    values : pandas.Series
        Scores (missing stays missing).
    rounding : {"none", "half_even", "half_up"}
        How a score exactly halfway between two neighbours at `decimals` decimals is rounded;
        every other score goes to the nearer neighbour.

        - ``"none"``: scores are returned unchanged.
        - ``"half_even"``: a half goes to the even neighbour (12.5 -> 12, 13.5 -> 14; "banker's
          rounding"). This is the default rounding of IEEE 754 [1]_ and what R's ``round()``
          does [2]_ (and Python's ``round()`` and NumPy's ``np.round``).
        - ``"half_up"``: a half goes away from zero (12.5 -> 13, 13.5 -> 14, -12.5 -> -13).
          This is SPSS's ``RND()`` [3]_ and Excel's ``ROUND`` [4]_.
    decimals : int, default 0
        Decimals kept (0: whole points; 1: e.g. an item mean of 3.25 -> 3.2 under
        ``"half_even"``, 3.3 under ``"half_up"``).

    Returns
    -------
    pandas.Series
        The rounded scores, same index and name.

    Notes
    -----
    The scores are first rounded to 9 decimals, so that a prorated sum such as
    ``mean x 9 = 12.499999999999998`` (floating-point noise of an exact 12.5) counts as the half
    it is. Which rule a service used matters only for scores that land on a half, which
    prorated sums (mean x n) and item means often do; a researcher matching a service's export
    states the rule under ``scoring:`` in the parameters.

    References
    ----------
    .. [1] IEEE (2019). IEEE Standard for Floating-Point Arithmetic (IEEE Std 754-2019),
       section 4.3.3: roundTiesToEven is the default rounding-direction attribute.
    .. [2] R Core Team. ``?Round`` (R documentation, base package): "Note that for rounding
       off a 5, the IEC 60559 standard (see also 'IEEE 754') is expected to be used, 'go to
       the even digit'."
    .. [3] IBM SPSS Statistics Command Syntax Reference, ``RND(numexpr)``: "Numeric. Returns
       the integer that results from rounding the absolute value of numexpr and then
       reaffixing the sign. Numbers ending in .5 are rounded away from zero."
    .. [4] Microsoft Support, "ROUND function" (Excel): ``=ROUND(2.5, 0)`` is 3 and
       ``=ROUND(-2.5, 0)`` is -3; halves are rounded away from zero.
    """
    if rounding == "none":
        return values
    scale = 10.0 ** decimals
    shifted = np.round(values.to_numpy(dtype="float64") * scale, _SNAP_DECIMALS)
    if rounding == "half_even":
        rounded = np.round(shifted)
    else:
        rounded = np.sign(shifted) * np.floor(np.abs(shifted) + 0.5)
    return pd.Series(rounded / scale, index=values.index, name=values.name)


def _rounding_changed(exact: pd.Series, rounded: pd.Series) -> pd.Series:
    """Where rounding changed a score by more than floating-point noise."""
    difference = (exact - rounded).abs()
    return exact.notna() & (difference > 10.0 ** -_SNAP_DECIMALS)


def _exact_text(value: float) -> str | None:
    """An exact score for the ledger, without floating-point noise (see :func:`round_scores`)."""
    return ledger_text(float(np.round(value, _SNAP_DECIMALS)))


def _decimals_text(instrument: Instrument) -> str:
    """What the instrument's rounding keeps: "whole points", "1 decimal", "2 decimals", ..."""
    decimals = instrument.rounding_decimals
    if decimals == 0:
        return "whole points"
    return f"{decimals} decimal" + ("s" if decimals > 1 else "")


def _rounding_text(exact: pd.Series, rounded: pd.Series, instrument: Instrument) -> pd.Series:
    """Per score, the ledger's words for a rounding that changed it ("" where none did)."""
    if instrument.rounding == "none":
        return pd.Series("", index=exact.index)
    changed = _rounding_changed(exact, rounded)
    words = _ROUNDING_WORDS[instrument.rounding]
    return pd.Series([f"{_exact_text(e)} {words}" if c else ""
                      for e, c in zip(exact, changed, strict=True)], index=exact.index)


def _band(total: pd.Series, instrument: Instrument) -> pd.Series:
    """Severity band of each total: the label of the largest lower bound at or below it."""
    lows = [float(low) for low, _ in instrument.bands]
    labels = [label for _, label in instrument.bands]
    return pd.cut(total, bins=[*lows, np.inf], right=False, labels=labels)


def _insert_after(
    frame: pd.DataFrame, after: Sequence[str], columns: dict[str, pd.Series]
) -> pd.DataFrame:
    """A copy of `frame` with `columns` placed right after the last of the `after` columns."""
    order = list(frame.columns)
    position = max(order.index(c) for c in after) + 1
    new_order = order[:position] + list(columns) + order[position:]
    return pd.concat([frame, pd.DataFrame(columns, index=frame.index)], axis=1)[new_order]


def _check_scoring_input(sessions: pd.DataFrame, instruments: Sequence[Instrument]) -> None:
    """Raise if the table cannot be scored with these instruments (see :func:`score`)."""
    if SOURCE_ROW not in sessions.columns:
        raise AllianceDataError(
            f"The session table has no {SOURCE_ROW!r} column; score the output of "
            f"cleaning.clean(), which keeps it."
        )
    keys = [instrument.key for instrument in instruments]
    if len(set(keys)) < len(keys):
        raise AllianceParamsError(f"Instruments must have distinct keys; got {keys}.")
    new = [c for instrument in instruments for c in _score_columns(instrument)]
    clashes = sorted({c for c in new if new.count(c) > 1 or c in sessions.columns})
    if clashes:
        raise AllianceDataError(
            f"Score columns {clashes} already exist in the session table or would be created "
            f"twice. Drop or rename those columns (or the subscales) before scoring."
        )
    for instrument in instruments:
        _check_items(sessions, instrument)


def _score_columns(instrument: Instrument) -> list[str]:
    """Every column :func:`score` adds for `instrument`."""
    columns = [instrument.score_column()]
    columns += [instrument.score_column(name) for name in instrument.subscales]
    columns += [f"{instrument.key}_band"] if instrument.bands else []
    return columns + [f"{instrument.key}_n_items"]


def _check_items(sessions: pd.DataFrame, instrument: Instrument) -> None:
    """Raise if an item column is absent, not numeric, or holds an out-of-range value."""
    absent = [c for c in instrument.items() if c not in sessions.columns]
    if absent:
        raise AllianceDataError(
            f"Instrument {instrument.key!r} needs item columns {absent}, which the session "
            f"table does not have. Map them under 'columns:' in the parameters file."
        )
    for column in instrument.items():
        values = sessions[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise AllianceDataError(
                f"Item column {column!r} has dtype {values.dtype}, not numbers; run "
                f"cleaning.clean() first, which converts items and logs what it could not."
            )
        outside = values.notna() & ~values.between(instrument.item_min, instrument.item_max)
        if outside.any():
            first = outside.idxmax()
            raise AllianceDataError(
                f"Item column {column!r} has {int(outside.sum())} value(s) outside "
                f"{instrument.item_min}..{instrument.item_max}, first {values[first]} at "
                f"source_row {sessions.loc[first, SOURCE_ROW]}. Run cleaning.clean() first, "
                f"which sets out-of-range items to missing and logs them."
            )


def score_summary(sessions: pd.DataFrame, instruments: Sequence[Instrument]) -> pd.DataFrame:
    """Descriptive statistics of every score over all sessions.

    Parameters
    ----------
    sessions : pandas.DataFrame
        A scored session table (:func:`score`).
    instruments : sequence of Instrument
        The instruments whose scores to describe.

    Returns
    -------
    pandas.DataFrame
        One row per score: ``instrument, score, range`` (the possible range), ``n`` (sessions
        with a score), ``mean, sd, min, max``.
    """
    rows = []
    for instrument in instruments:
        low, high = instrument.total_range()
        scales = [instrument.score_column()]
        scales += [instrument.score_column(name) for name in instrument.subscales]
        for column in scales:
            values = sessions[column].dropna()
            rows.append({"instrument": instrument.key, "score": column,
                         "range": f"{low:g}-{high:g}" if column == instrument.score_column()
                         else "", "n": len(values), "mean": values.mean(),
                         "sd": values.std(), "min": values.min(), "max": values.max()})
    return pd.DataFrame(rows)
