"""Mapping a researcher's columns to the canonical session table.

:func:`map_columns` renames the columns of a file read by :mod:`alliance_analysis.data.io`
(:class:`~alliance_analysis.data.io.RawData`) to the canonical names the parameters map them
to (IDs, session, day or date, covariates, each instrument's items), names the categories of
labelled SPSS/Stata covariates by their value labels (:func:`apply_labels`), and refuses a
mapping that does not fit the file with the columns there are, near misses and hints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

# the delimiter names, for a hint when a whole header row landed in one column
from alliance_analysis.data.io import _DELIMITER_NAMES, _DELIMITERS, RawData
from alliance_analysis.data.schema import SOURCE_ROW
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import Instrument
from alliance_analysis.params import RunParams


#: Canonical identifier columns every session table must have.
REQUIRED = ("client_id", "therapist_id", "session")


@dataclass(frozen=True)
class MappedData:
    """A raw table with its columns renamed to the canonical names.

    Attributes
    ----------
    frame
        ``source_row``, the canonical ID columns, ``day``/``date`` if present, covariates,
        then each instrument's items ``<key>_1..<key>_<n>``; unmapped columns are left out.
    source_columns
        ``{canonical column: column in the researcher's file}``.
    unused
        Columns of the file the run does not use.
    labelled
        Covariates whose SPSS/Stata value labels replaced their codes (:func:`apply_labels`),
        ``{canonical column: {code as text: label}}``.
    """

    frame: pd.DataFrame
    source_columns: dict[str, str]
    unused: tuple[str, ...]
    labelled: dict[str, dict[str, str]] = field(default_factory=dict)


def _code_text(code: object) -> str:
    """A code as text: ``2.0`` -> ``"2"`` (SPSS stores numbers as doubles)."""
    if isinstance(code, float) and code.is_integer():
        return str(int(code))
    return str(code)


def apply_labels(frame: pd.DataFrame, columns: Sequence[str],
                 value_labels: dict[str, dict[object, str]],
                 source_columns: dict[str, str]) -> tuple[pd.DataFrame, dict[str, dict[str, str]]]:
    """Name the categories of labelled SPSS/Stata covariates by their value labels.

    A covariate such as ``gender`` stored as codes 1 and 2 with the value labels
    ``1 = female, 2 = male`` becomes the text ``female``/``male``, so that every table names
    the categories (not ``1.0`` and ``2.0``). A code without a label is kept as its text
    (``3``); a missing value stays missing. Only the listed columns change: questionnaire
    items, IDs, session numbers and days keep their numeric codes, even when the file labels
    them (items are numbers to be scored; labelled IDs could name people).

    Parameters
    ----------
    frame
        The mapped table (canonical column names).
    columns
        The canonical columns that may take labels (the run's covariates).
    value_labels
        ``{column in the file: {code: label}}``, as read (:attr:`RawData.value_labels`).
    source_columns
        ``{canonical column: column in the file}``.

    Returns
    -------
    (frame, applied)
        The table with labels in place of codes, and ``{canonical column: {code as text:
        label}}`` for each column that changed (recorded in the codebook).
    """
    applied: dict[str, dict[str, str]] = {}
    out = frame
    for column in columns:
        labels = value_labels.get(source_columns.get(column, ""), {})
        if column not in frame.columns or not labels:
            continue
        if out is frame:
            out = frame.copy()
        lookup = {_code_text(code): str(label) for code, label in labels.items()}
        out[column] = frame[column].map(
            lambda v, lookup=lookup: v if pd.isna(v) else lookup.get(_code_text(v),
                                                                     _code_text(v)))
        applied[column] = lookup
    return out, applied


def _near_misses(source: str, present: Sequence[str]) -> list[str]:
    """Columns of the file equal to ``source`` but for case or surrounding spaces."""
    wanted = source.strip().casefold()
    return [c for c in present if c != source and c.strip().casefold() == wanted]


def _delimiter_hint(raw: RawData, present: Sequence[str]) -> str:
    """A hint when a CSV seems split at the wrong delimiter (names holding ``,`` ``;`` or tab)."""
    if raw.format != "csv":
        return ""
    for delim in _DELIMITERS:
        if any(delim in column for column in present):
            return (f" The column name(s) contain a {_DELIMITER_NAMES[delim]}, so the file was "
                    f"probably split at the wrong delimiter: set data.delimiter to {delim!r} "
                    "(or remove data.delimiter to detect it).")
    return ""


def _title_hint(raw: RawData, source: str) -> str:
    """A hint when ``source`` is a cell of an early data row: the header is below a title."""
    if raw.format not in ("csv", "xlsx"):
        return ""
    where = "Line {} of the file" if raw.format == "csv" else "Row {} of the sheet"
    for row in raw.frame.head(20).itertuples(index=False):  # row[0] is the source_row
        if source in (str(value).strip() for value in row[1:]):
            line = raw.header_line + row[0]
            return (f" {where.format(line)} holds '{source}': if that is the header, below a "
                    f"title or notes, set data.skip_rows: {line - 1}.")
    return ""


def _suggest_pattern(instrument: Instrument, present: Sequence[str]) -> str | None:
    """An ``items:`` pattern matching columns named like the instrument's items, if any.

    A column name ``<prefix><number>`` counts when the prefix, lower-cased and without
    non-alphanumerics, equals the instrument key likewise reduced, with or without its trailing
    digits (``WAI7``, ``Wai-07``, ``PHQ_3``, ``phq9_3``; not ``wai_item7``), and the numbers
    1..n_items are all present with one width.
    """
    def reduced(text: str) -> str:
        return re.sub(r"[^0-9a-z]", "", text.casefold())

    key = reduced(instrument.key)
    accepted = {key, key.rstrip("0123456789")} - {""}
    found: dict[tuple[str, int], dict[int, str]] = {}
    for column in present:
        match = re.fullmatch(r"(.*?\D)(\d+)", column)
        if match and reduced(match[1]) in accepted:
            width = len(match[2]) if match[2].startswith("0") else 0
            found.setdefault((match[1], width), {})[int(match[2])] = column
    for (prefix, width), numbers in sorted(found.items()):
        if all(n in numbers for n in range(1, instrument.n_items + 1)):
            number = f"{{n:0{width}d}}" if width else "{n}"
            return prefix.replace("{", "{{").replace("}", "}}") + number
    return None


def map_columns(raw: RawData, params: RunParams, instruments: Sequence[Instrument]) -> MappedData:
    """Rename the researcher's columns to the canonical names of DESIGN.md.

    Parameters
    ----------
    raw
        The file as read.
    params
        The run parameters: ``columns:`` maps the ID, session, day/date and covariate columns;
        ``items:`` maps each instrument's items by list or pattern (default ``<key>_<n>``).
    instruments
        The instruments of the run.

    Returns
    -------
    MappedData
        Covariates of an SPSS or Stata file name their categories by the file's value labels
        (:func:`apply_labels`); items keep their numeric codes.

    Raises
    ------
    AllianceDataError
        A required or explicitly mapped column is missing from the file: the message names the
        file, the column, the parameter that maps it, and the columns the file has (with a hint
        when a column differs only in case or spaces, when a CSV looks split at the wrong
        delimiter, when the header seems to lie below a title (``data.skip_rows``), or when the
        items exist under another name, with the pattern to use). Neither ``day`` (by default
        the file's ``day`` column) nor ``date`` found is an error too. Also
        when an ``items:`` entry does not give one column per item, or one column of the file
        is mapped to more than one canonical column.
    """
    columns = params.columns
    present = [c for c in raw.frame.columns if c != SOURCE_ROW]
    listed = ", ".join(repr(c) if c != c.strip() else c for c in present)

    def missing(canonical: str, source: str, key: str) -> AllianceDataError:
        near = _near_misses(source, present)
        hint = (f" Did you mean {' or '.join(map(repr, near))}? Column names must match "
                "exactly (case and spaces)." if near else "")
        return AllianceDataError(
            f"{raw.path}: no column '{source}' for {canonical} (parameter {key}). The file's "
            f"columns are: {listed}.{hint}{_delimiter_hint(raw, present)}"
            f"{_title_hint(raw, source)} Map the right one in the parameters, e.g. columns: "
            f"{{{canonical}: <column in the file>}}"
        )

    mapping: dict[str, str] = {}
    for canonical in REQUIRED:
        source = getattr(columns, canonical)
        if source not in present:
            raise missing(canonical, source, f"columns.{canonical}")
        mapping[canonical] = source
    explicit = columns.model_fields_set
    for canonical in ("day", "date", *columns.covariates):
        source = getattr(columns, canonical) if canonical in ("day", "date") else canonical
        if source is None:
            continue
        if source in present:
            mapping[canonical] = source
        elif canonical in explicit or (canonical in columns.covariates
                                       and "covariates" in explicit):
            key = canonical if canonical in ("day", "date") else "covariates"
            raise missing(canonical, source, f"columns.{key}")
    if "day" not in mapping and "date" not in mapping:  # the run needs the sessions' timing
        raise AllianceDataError(f"{missing('day', columns.day, 'columns.day')}, or the column "
                                "of session dates: columns: {date: <column in the file>}")
    for instrument in instruments:
        item_map = params.items.get(instrument.key)
        key = f"items.{instrument.key}"
        if item_map is not None and item_map.columns is None and item_map.pattern is None:
            raise AllianceDataError(
                f"parameter {key} gives neither columns nor pattern. Give one, e.g. "
                f"{key}: {{pattern: 'NAME{{n}}'}}, or remove {key} to use "
                f"{instrument.key}_1..{instrument.key}_{instrument.n_items}"
            )
        try:
            sources = (item_map.source_columns(instrument.n_items) if item_map
                       else instrument.items())
        except (KeyError, IndexError, ValueError) as exc:
            raise AllianceDataError(
                f"parameter {key}.pattern {item_map.pattern!r} cannot be filled in "
                f"({type(exc).__name__}: {exc}). Use {{n}} for the item number (or e.g. "
                "{n:02d} for 01, 02, ...) and double any other brace: {{ }}"
            ) from None
        if len(sources) != instrument.n_items:
            raise AllianceDataError(
                f"parameter {key}.columns lists {len(sources)} columns but "
                f"{instrument.name} has {instrument.n_items} items. List one column per item"
            )
        absent = [s for s in sources if s not in present]
        if absent:
            shown = key if item_map else f"{key} (not set)"
            guess = _suggest_pattern(instrument, present)
            how = (f"The file seems to hold them as {guess.format(n=1)}..."
                   f"{guess.format(n=instrument.n_items)}: set items: {{{instrument.key}: "
                   f"{{pattern: '{guess}'}}}}" if guess and guess.format(n=1) not in sources
                   else f"Map the items with items: {{{instrument.key}: {{pattern: "
                   f"'NAME{{n}}'}}}} or items: {{{instrument.key}: {{columns: [first, "
                   "second, ...]}}, one column per item in order")
            raise AllianceDataError(
                f"{raw.path}: {instrument.name} ({instrument.key}) items not found: "
                f"{', '.join(absent)} (parameter {shown}). The file's columns are: "
                f"{listed}.{_delimiter_hint(raw, present)} {how}"
            )
        mapping.update(zip(instrument.items(), sources, strict=True))
    targets: dict[str, list[str]] = {}
    for canonical, source in mapping.items():
        targets.setdefault(source, []).append(canonical)
    duplicated = {source: names for source, names in targets.items() if len(names) > 1}
    if duplicated:
        detail = "; ".join(f"'{source}' -> {', '.join(names)}"
                           for source, names in sorted(duplicated.items()))
        raise AllianceDataError(
            f"{raw.path}: column(s) of the file are mapped to more than one canonical column: "
            f"{detail}. Each column can hold one thing: check columns: and items: in the "
            "parameters"
        )
    frame = raw.frame[[SOURCE_ROW, *mapping.values()]].copy()
    frame.columns = [SOURCE_ROW, *mapping.keys()]
    frame, labelled = apply_labels(frame, columns.covariates, raw.value_labels, mapping)
    unused = tuple(c for c in present if c not in mapping.values())
    return MappedData(frame=frame, source_columns=mapping, unused=unused, labelled=labelled)
