"""Cleaning rules and the ledger that records every decision.

The cleaner takes the mapped session table that passed the anonymisation gate and applies each
rule in turn (client and therapist codes are pseudonymised after cleaning, by
:func:`alliance_analysis.data.prepare.prepare`). It never drops or changes anything silently:

* every input row ends in ``ledger_rows`` as ``kept`` or ``excluded``, with the rule and a
  reason (kept rows may also carry flags, e.g. ``multiple_therapists``);
* every changed cell ends in ``ledger_cells`` with its row, column, old value, new value, rule
  and reason.

So ``kept + excluded == input rows`` always, and every kept value equals the input value unless
a ledger entry says otherwise (both are checked by a property-based test).

Rules, in order (configurable ones take their choice from ``cleaning:`` in the parameters):

========================  ==================================================================
rule                      what it does
========================  ==================================================================
``missing_id``            row without a client or therapist ID: excluded
``session_missing``       row without a session number: excluded
``session_not_numeric``   session number that is not a number: excluded
``session_not_integer``   session number with a fraction (e.g. 3.5): excluded
``session_not_positive``  session number 0 or below: excluded
``strip_whitespace``      leading/trailing spaces removed from an ID or covariate (logged)
``item_not_numeric``      item value that is not a number: set missing (logged)
``item_out_of_range``     item value outside the instrument's response range: set missing
``item_not_integer``      fractional answer (2.5) on a whole-number item: set missing, or
                          rounded half to even (``cleaning.fractional_items``; logged)
``day_not_numeric``       ``day`` that is not a number: set missing
``day_negative``          negative ``day``: set missing
``duplicate_identical``   a repeated (client, session) row identical to the first: excluded
``duplicate_conflicting`` repeated (client, session) rows that differ: keep first, keep last,
                          or exclude all (``cleaning.duplicates``)
``date_order``            a session whose ``day`` is earlier than an earlier session's: flagged
                          or excluded (``cleaning.date_order``)
``multiple_therapists``   a client seen by more than one therapist: flagged, or split into one
                          client per therapist (``cleaning.multiple_therapists``; logged)
``too_few_sessions``      clients with fewer than ``cleaning.min_sessions`` kept sessions:
                          excluded
========================  ==================================================================

Numbers written with a decimal comma (``3,5``) in item or ``day`` cells are read as 3.5 when
``data.decimal`` is ``","``; with the default ``"."`` they stop the clean stage with a message
naming the columns, rows and values (they would otherwise all become "not a number").
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import Instrument
from alliance_analysis.data.schema import SOURCE_ROW
from alliance_analysis.options import CleaningOptions

#: Columns of ``ledger_rows.csv``.
ROW_COLUMNS = ("source_row", "client_id", "session", "status", "rule", "reason", "flags")
#: Columns of ``ledger_cells.csv``.
CELL_COLUMNS = ("source_row", "column", "old_value", "new_value", "rule", "reason")

KEPT, EXCLUDED = "kept", "excluded"

#: A number written with a decimal comma: ``3,5``, ``-0,25``, ``,5``.
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")


def ledger_text(value: Any) -> str | None:
    """A cell as text for the ledgers (None for missing; whole floats without ``.0``)."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Ledger:
    """Collects row decisions and cell changes while the rules run."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.status = pd.Series(KEPT, index=frame.index, dtype=object)
        self.rule = pd.Series("", index=frame.index, dtype=object)
        self.reason = pd.Series("", index=frame.index, dtype=object)
        self.flags: dict[Any, list[str]] = {}
        self.cells: list[dict[str, Any]] = []
        self.source_row = frame[SOURCE_ROW]

    def kept(self) -> pd.Series:
        return self.status == KEPT

    def exclude(self, mask: pd.Series, rule: str, reasons: pd.Series | str) -> None:
        mask = mask & self.kept()
        self.status[mask] = EXCLUDED
        self.rule[mask] = rule
        self.reason[mask] = reasons[mask] if isinstance(reasons, pd.Series) else reasons

    def flag(self, mask: pd.Series, rule: str) -> None:
        for index in mask[mask & self.kept()].index:
            self.flags.setdefault(index, []).append(rule)

    def change(self, index: Any, column: str, old: Any, new: Any, rule: str, reason: str) -> None:
        self.cells.append({"source_row": int(self.source_row[index]), "column": column,
                           "old_value": ledger_text(old), "new_value": ledger_text(new),
                           "rule": rule, "reason": reason})


@dataclass(frozen=True)
class CleanResult:
    """The cleaned session table and its ledgers.

    Attributes
    ----------
    sessions
        Kept rows, canonical dtypes, sorted by client and session, with ``source_row``.
    ledger_rows
        One row per input row: ``source_row, client_id, session, status, rule, reason, flags``.
    ledger_cells
        One row per changed cell: ``source_row, column, old_value, new_value, rule, reason``.
    """

    sessions: pd.DataFrame
    ledger_rows: pd.DataFrame
    ledger_cells: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """Counts by rule: rows excluded, rows flagged and cells changed."""
        rows = self.ledger_rows
        excluded = rows.loc[rows["status"] == EXCLUDED, "rule"].value_counts()
        flagged = rows["flags"].str.split(";").explode().loc[lambda s: s.ne("") & s.notna()]
        cells = self.ledger_cells["rule"].value_counts()
        table = pd.DataFrame({"rows_excluded": excluded, "rows_flagged": flagged.value_counts(),
                              "cells_changed": cells}).fillna(0).astype(int)
        table.index.name = "rule"
        return table.sort_index().reset_index()


def _strip(frame: pd.DataFrame, columns: Sequence[str], ledger: _Ledger) -> None:
    for column in columns:
        values = frame[column]
        text = values.where(values.isna(), values.astype(str))
        stripped = text.str.strip()
        changed = text.notna() & stripped.ne(text)
        for index in changed[changed].index:
            ledger.change(index, column, text[index], stripped[index], "strip_whitespace",
                          "leading or trailing spaces removed")
        frame[column] = stripped.replace("", np.nan)


def _ids(frame: pd.DataFrame, ledger: _Ledger) -> None:
    for column in ("client_id", "therapist_id"):
        values = frame[column]
        # IDs stored as numbers (SPSS, Stata, Excel) become text without a trailing ".0".
        frame[column] = values.map(ledger_text, na_action="ignore").astype(object)
    _strip(frame, ["client_id", "therapist_id"], ledger)
    for column in ("client_id", "therapist_id"):
        ledger.exclude(frame[column].isna(), "missing_id", f"no {column}")


def _sessions(frame: pd.DataFrame, ledger: _Ledger) -> None:
    raw = frame["session"]
    number = pd.to_numeric(raw, errors="coerce")
    shown = raw.map(lambda v: repr(ledger_text(v)))
    ledger.exclude(raw.isna(), "session_missing", "no session number")
    ledger.exclude(number.isna(), "session_not_numeric", "session " + shown + " is not a number")
    ledger.exclude(number.notna() & (number % 1 != 0), "session_not_integer",
                   "session " + shown + " is not a whole number")
    ledger.exclude(number <= 0, "session_not_positive", "session " + shown + " is not 1 or more")
    frame["session"] = number.where(ledger.kept()).astype("Int64")


def _comma_decimals(frame: pd.DataFrame, columns: Sequence[str], ledger: _Ledger, source: str,
                    source_columns: Mapping[str, str]) -> None:
    """Refuse numbers written with a decimal comma while ``data.decimal`` is ``"."``."""
    found = {}
    for column in columns:
        values = frame.loc[ledger.kept(), column]
        if pd.api.types.is_numeric_dtype(values):  # no text cell at all
            continue
        # the text cells (others give NaN here), stripped, matched in one vectorised pass
        text = values.where(values.map(type) == str).str.strip()
        hits = values[text.str.fullmatch(_DECIMAL_COMMA).fillna(False).astype(bool)]
        if len(hits):
            found[column] = hits
    if not found:
        return
    parts = []
    for column, hits in list(found.items())[:5]:
        name = source_columns.get(column, column)
        shown = ", ".join(f"row {ledger.source_row[i]} {value!r}"
                          for i, value in hits.head(3).items())
        parts.append(f"column '{name}'{f' ({column})' if name != column else ''}: {shown}"
                     + (f" and {len(hits) - 3} more" if len(hits) > 3 else ""))
    more = f"; and {len(found) - 5} more columns" if len(found) > 5 else ""
    raise AllianceDataError(
        f"{source}: {sum(map(len, found.values()))} number(s) are written with a decimal comma, "
        f"which would be read as not a number and set missing: {'; '.join(parts)}{more}. If "
        "the file writes decimals with a comma, set data.decimal: ',' in the parameters (3,5 is "
        "then read as 3.5); if the commas are typos or separate thousands, correct these cells "
        "in a copy of the file"
    )


def _numeric(frame: pd.DataFrame, column: str, ledger: _Ledger, rule: str,
             low: float | None = None, high: float | None = None, range_rule: str = "",
             decimal: str = ".") -> None:
    raw = frame[column]
    text = raw if decimal == "." else raw.map(
        lambda v: v.strip().replace(",", ".") if isinstance(v, str)
        and _DECIMAL_COMMA.fullmatch(v.strip()) else v)
    number = pd.to_numeric(text, errors="coerce")
    bad = raw.notna() & number.isna()
    for index in bad[bad & ledger.kept()].index:
        ledger.change(index, column, raw[index], None, rule, "not a number")
    if low is not None or high is not None:
        out = number.notna() & ((number < low) if low is not None else False)
        if high is not None:
            out |= number.notna() & (number > high)
        allowed = f"{low:g} to {high:g}" if high is not None else f"{low:g} or more"
        for index in out[out & ledger.kept()].index:
            ledger.change(index, column, raw[index], None, range_rule, f"outside {allowed}")
        number = number.mask(out)
    frame[column] = number.astype(float)


def _whole(frame: pd.DataFrame, column: str, ledger: _Ledger, option: str) -> None:
    """Fractional answers on a whole-number item: missing, or rounded half to even."""
    number = frame[column]
    fractional = number.notna() & (number != np.round(number))
    for index in fractional[fractional & ledger.kept()].index:
        value = float(number[index])
        new = None if option == "missing" else float(np.round(value))
        ledger.change(index, column, value, new, "item_not_integer",
                      "a fractional answer on a whole-number item: "
                      + ("set missing" if new is None else "rounded half to even"))
    frame[column] = number.mask(fractional) if option == "missing" else number.where(
        ~fractional, np.round(number))


def _duplicates(frame: pd.DataFrame, ledger: _Ledger, option: str) -> None:
    kept = frame[ledger.kept()]
    key = ["client_id", "session"]
    repeated = kept[kept.duplicated(key, keep=False)]
    if repeated.empty:
        return
    content = [c for c in kept.columns if c != SOURCE_ROW]
    identical = repeated.duplicated(content, keep="first")
    ledger.exclude(frame.index.isin(identical[identical].index), "duplicate_identical",
                   "same client, session and values as an earlier row")
    rest = frame[ledger.kept()]
    conflicting = rest[rest.duplicated(key, keep=False)]
    if conflicting.empty:
        return
    first_row = conflicting.groupby(key)[SOURCE_ROW].transform("min")
    last_row = conflicting.groupby(key)[SOURCE_ROW].transform("max")
    if option == "keep_first":
        drop = conflicting[SOURCE_ROW] != first_row
        reason = "conflicts with row " + first_row.astype(str) + ", which is kept (keep_first)"
    elif option == "keep_last":
        drop = conflicting[SOURCE_ROW] != last_row
        reason = "conflicts with row " + last_row.astype(str) + ", which is kept (keep_last)"
    else:
        drop = pd.Series(True, index=conflicting.index)
        reason = pd.Series("conflicting rows for this client and session (exclude_both)",
                           index=conflicting.index)
    mask = frame.index.isin(drop[drop].index)
    ledger.exclude(pd.Series(mask, index=frame.index), "duplicate_conflicting",
                   reason.reindex(frame.index, fill_value=""))


def _date_order(frame: pd.DataFrame, ledger: _Ledger, option: str) -> None:
    if "day" not in frame.columns:
        return
    kept = frame[ledger.kept()].sort_values(["client_id", "session"])
    # the latest day of each client's earlier sessions (a cumulative maximum shifted by one
    # within the client), with groupby's own cummax and shift rather than one per client
    earlier_max = kept.groupby("client_id")["day"].cummax().groupby(kept["client_id"]).shift(1)
    backwards = kept["day"] < earlier_max
    mask = pd.Series(frame.index.isin(backwards[backwards].index), index=frame.index)
    if option == "exclude":
        ledger.exclude(mask, "date_order", "day is earlier than an earlier session's day")
    else:
        ledger.flag(mask, "date_order")


def _therapists(frame: pd.DataFrame, ledger: _Ledger, option: str) -> None:
    kept = frame[ledger.kept()]
    count = kept.groupby("client_id")["therapist_id"].transform("nunique")
    several = pd.Series(frame.index.isin(count[count > 1].index), index=frame.index)
    if not several.any():
        return
    if option == "flag":
        ledger.flag(several, "multiple_therapists")
        return
    for index in several[several].index:
        new = f"{frame.at[index, 'client_id']}@{frame.at[index, 'therapist_id']}"
        ledger.change(index, "client_id", frame.at[index, "client_id"], new,
                      "multiple_therapists", "client seen by several therapists: split")
        frame.at[index, "client_id"] = new


def _min_sessions(frame: pd.DataFrame, ledger: _Ledger, minimum: int) -> None:
    kept = frame[ledger.kept()]
    count = kept.groupby("client_id")["session"].transform("size")
    few = pd.Series(frame.index.isin(count[count < minimum].index), index=frame.index)
    ledger.exclude(few, "too_few_sessions", f"client has fewer than {minimum} kept sessions")


def clean(frame: pd.DataFrame, instruments: Sequence[Instrument], options: CleaningOptions,
          covariates: Sequence[str] = (), source: str = "data", decimal: str = ".",
          source_columns: Mapping[str, str] | None = None) -> CleanResult:
    """Apply the cleaning rules and return the kept rows with both ledgers.

    Parameters
    ----------
    frame
        The mapped session table (:func:`alliance_analysis.data.mapping.map_columns`) with
        ``source_row``, ``client_id``, ``therapist_id``, ``session``, optionally ``day``,
        covariates and item columns.
    instruments
        The instruments whose items are in the table (for the response ranges).
    options
        The configurable rules (``cleaning:`` in the parameters).
    covariates
        Client-level covariate columns (whitespace is stripped and logged).
    source
        The data file, for error messages.
    decimal
        The decimal mark of numbers written as text in item and ``day`` cells (``data.decimal``):
        ``"."``, or ``","`` to read ``3,5`` as 3.5 (the ledger keeps the text as written).
    source_columns
        ``{canonical column: column in the file}``, to name the file's columns in messages.

    Returns
    -------
    CleanResult

    Raises
    ------
    AllianceDataError
        When no row is left, an instrument has no valid item value in any kept row (usually
        a wrong item mapping), or, with ``decimal="."``, an item or ``day`` cell holds a number
        with a decimal comma (the message names the columns, rows and values).
    """
    work = frame.copy()
    ledger = _Ledger(work)
    _ids(work, ledger)
    _sessions(work, ledger)
    present = [c for c in covariates if c in work.columns]
    _strip(work, present, ledger)
    numeric = [item for instrument in instruments for item in instrument.items()]
    numeric += ["day"] if "day" in work.columns else []
    if decimal == ".":
        _comma_decimals(work, numeric, ledger, source, source_columns or {})
    for instrument in instruments:
        for item in instrument.items():
            _numeric(work, item, ledger, "item_not_numeric", instrument.item_min,
                     instrument.item_max, "item_out_of_range", decimal)
            if instrument.integer_items:
                _whole(work, item, ledger, options.fractional_items)
    if "day" in work.columns:
        _numeric(work, "day", ledger, "day_not_numeric", 0, None, "day_negative", decimal)
    _duplicates(work, ledger, options.duplicates)
    _date_order(work, ledger, options.date_order)
    _therapists(work, ledger, options.multiple_therapists)
    _min_sessions(work, ledger, options.min_sessions)

    kept = ledger.kept()
    if not kept.any():
        counts = ledger.rule[~kept].value_counts().to_dict()
        raise AllianceDataError(
            f"{source}: no row is left after cleaning ({counts}). Check the column mapping "
            "and the cleaning parameters"
        )
    sessions = work[kept].sort_values(["client_id", "session", SOURCE_ROW]).reset_index(drop=True)
    if "day" in sessions.columns:
        sessions["day"] = sessions["day"].astype("Int64") if (
            sessions["day"].dropna() % 1 == 0).all() else sessions["day"]
    for instrument in instruments:
        if sessions[instrument.items()].isna().all().all():
            raise AllianceDataError(
                f"{source}: every {instrument.name} ({instrument.key}) item is missing in every "
                f"kept row. Check the item mapping (items.{instrument.key}) and the response "
                f"range {instrument.item_min}-{instrument.item_max}"
            )
    rows = pd.DataFrame({
        "source_row": work[SOURCE_ROW].astype(int),
        "client_id": work["client_id"],
        "session": frame["session"].map(ledger_text),
        "status": ledger.status,
        "rule": ledger.rule,
        "reason": ledger.reason,
        "flags": pd.Series({i: ";".join(f) for i, f in ledger.flags.items()},
                           index=work.index, dtype=object).fillna(""),
    }).sort_values("source_row").reset_index(drop=True)
    cells = pd.DataFrame(ledger.cells, columns=list(CELL_COLUMNS))
    cells = cells.sort_values(["source_row", "column"], kind="stable").reset_index(drop=True)
    return CleanResult(sessions=sessions, ledger_rows=rows, ledger_cells=cells)

