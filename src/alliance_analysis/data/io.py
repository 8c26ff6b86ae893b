"""Reading session data files: CSV, Excel, SPSS, Stata and Parquet.

Every reader returns a :class:`RawData` holding the table exactly as read (CSV cells as text, so
nothing is coerced before the cleaning ledger can log it), the 1-based data row number of each
row in the file, the file's SHA-256, and for SPSS/Stata the value and variable labels. Raw files
are only ever opened for reading.

Column names are always text, exactly as in the file's header (a header cell left empty becomes
``Unnamed: <position>``, as pandas names it); a name that occurs twice is an error rather than
being silently renamed. In CSV and Excel files the row number counts every line after the header,
blank ones included, so ``source_row`` *n* is line *n* + 1 of the file (for CSV without line
breaks inside quoted cells) and row *n* + 1 of the sheet; an all-empty row in the middle is kept
(the cleaning ledger excludes it) and empty rows after the last data row are dropped.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import pandas as pd

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import Instrument
from alliance_analysis.data.schema import SOURCE_ROW
from alliance_analysis.params import RunParams
from alliance_analysis.options import DataSource

#: Extensions understood by ``format: auto``.
EXTENSIONS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".sav": "sav", ".zsav": "sav",
    ".dta": "dta",
    ".parquet": "parquet", ".pq": "parquet",
}


_SNIFF_CHARS = 64 * 1024  # characters of text the delimiter is detected from
_DELIMITERS = ",;\t"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass(frozen=True)
class RawData:
    """A data file as read, before any cleaning.

    Attributes
    ----------
    frame
        The table, with a ``source_row`` column (1-based data row in the file).
    path
        The file read.
    sha256
        SHA-256 of the file's bytes.
    format
        One of ``csv``, ``xlsx``, ``sav``, ``dta``, ``parquet``.
    value_labels
        For SPSS/Stata: ``{column: {value: label}}``.
    column_labels
        For SPSS/Stata: ``{column: variable label}``.
    """

    frame: pd.DataFrame
    path: Path
    sha256: str
    format: str
    value_labels: dict[str, dict[object, str]] = field(default_factory=dict)
    column_labels: dict[str, str] = field(default_factory=dict)


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def detect_format(path: Path, declared: str = "auto") -> str:
    """The reader to use for ``path``: ``declared`` unless it is ``auto``.

    Raises
    ------
    AllianceDataError
        When the extension is not one the workbench reads.
    """
    if declared != "auto":
        return declared
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise AllianceDataError(
            f"{path}: cannot tell the file format from the extension '{path.suffix}'. "
            f"Use one of {sorted(EXTENSIONS)} or set data.format in the parameters "
            "(csv, xlsx, sav, dta, parquet)"
        )
    return fmt


def _line_of(data: bytes, offset: int) -> int:
    """1-based line of the file holding byte ``offset``."""
    return data.count(b"\n", 0, offset) + 1


def _decode(path: Path, data: bytes, declared: str | None) -> str:
    """The file's text: decoded as ``declared``, else detected (see :func:`read`)."""
    if declared:
        candidates = [declared]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]  # Excel's "Unicode text" export
    else:
        # Windows-1252 before Latin-1: Excel's CSV export on Windows writes cp1252, whose
        # curly quotes and euro sign are control characters in Latin-1.
        candidates = ["utf-8-sig", "cp1252", "latin-1"]
    text = None
    for encoding in candidates:
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError as exc:
            if declared:
                line = _line_of(data, exc.start)
                raise AllianceDataError(
                    f"{path}: cannot be decoded as {declared}: byte {exc.start} (line {line} "
                    f"of the file) is {data[exc.start:exc.start + 1]!r}. Set data.encoding to "
                    "the file's encoding (for example utf-8, latin-1 or cp1252), or remove "
                    "data.encoding to detect it"
                ) from None
        except LookupError:
            raise AllianceDataError(
                f"{path}: unknown encoding '{declared}' in data.encoding. Use for example "
                "utf-8, utf-8-sig, latin-1 or cp1252"
            ) from None
    if text is None:  # only a failed utf-16 guess gets here; latin-1 decodes every byte
        text = data.decode("latin-1")
    if "\x00" in text:
        raise AllianceDataError(
            f"{path}: the file contains NUL bytes, so it is not a text (CSV) file. If it is an "
            "Excel, SPSS, Stata or Parquet file, give it the right extension or set data.format"
        )
    return text.removeprefix("\ufeff")  # a BOM left by a declared utf-8/utf-16-le


def _detect_delimiter(path: Path, text: str, declared: str | None) -> str:
    if declared:
        return declared
    sample = text[:_SNIFF_CHARS]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[:sample.rindex("\n")]  # whole lines only
    first_line = sample.splitlines()[0] if sample else ""
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        counts = {delim: first_line.count(delim) for delim in _DELIMITERS}
        best = max(counts, key=counts.__getitem__)
        if counts[best] == 0:
            raise AllianceDataError(
                f"{path}: line 1 (the header) has no comma, semicolon or tab, so the columns "
                f"cannot be told apart: {first_line[:80]!r}. Set data.delimiter in the "
                "parameters"
            ) from None
        return best


def _promote_header(frame: pd.DataFrame) -> pd.DataFrame:
    """Use the first non-empty row of a header-less table as its column names.

    Rows after the header keep their positions (so ``source_row`` matches the file); empty rows
    after the last data row are dropped.
    """
    filled = frame.notna().any(axis=1).to_numpy()
    if not filled.any():
        return pd.DataFrame()
    first = int(filled.argmax())
    last = len(filled) - 1 - int(filled[::-1].argmax())
    header = frame.iloc[first]
    names = [f"Unnamed: {i}" if pd.isna(value) else str(value)
             for i, value in enumerate(header)]
    data = frame.iloc[first + 1:last + 1].copy()
    data.columns = names
    return data


def _read_csv(path: Path, data: bytes, delimiter: str | None,
              encoding: str | None) -> pd.DataFrame:
    text = _decode(path, data, encoding)
    if not text.strip():
        raise AllianceDataError(f"{path}: the file is empty. Export the data with a header row")
    # Blank lines before the header would set the number of fields to 1: drop them, and
    # count them so that line numbers in messages are lines of the file.
    leading = re.match(r"(?:[ \t]*(?:\r\n|\r|\n))*", text)[0]
    skipped = len(re.findall(r"\r\n|\r|\n", leading))
    text = text[len(leading):]
    delim = _detect_delimiter(path, text, delimiter)
    try:
        # Everything as text: coercion happens in cleaning, where each change is logged.
        # header=None: the header is read as a row, so a repeated name is not renamed and a
        # row with more fields than the header is an error (not silently taken as an index).
        frame = pd.read_csv(StringIO(text), sep=delim, header=None, dtype=str,
                            keep_default_na=False, na_values=[""], skip_blank_lines=False)
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        where = (f"line {int(found[2]) + skipped} of the file has {found[3]} fields but the "
                 f"header has {found[1]}" if found else str(exc).strip())
        raise AllianceDataError(
            f"{path}: the rows do not split into the same columns: {where}. Check the "
            f"delimiter (detected {_DELIMITER_NAMES.get(delim, repr(delim))}; set "
            "data.delimiter) and the quoting of that line"
        ) from None
    return _promote_header(frame)


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    try:
        book = pd.ExcelFile(path, engine="openpyxl")
    except Exception as exc:  # openpyxl raises zipfile/XML errors for damaged files
        raise AllianceDataError(
            f"{path}: cannot be read as an Excel .xlsx file ({type(exc).__name__}: {exc}). "
            "Re-save it from Excel or export it as CSV"
        ) from None
    with book:
        names = list(book.sheet_names)
        chosen = 0 if sheet is None else sheet
        if ((isinstance(chosen, int) and not 0 <= chosen < len(names))
                or (isinstance(chosen, str) and chosen not in names)):
            raise AllianceDataError(
                f"{path}: has no sheet {chosen!r}. Its sheets are: "
                + ", ".join(f"{i}: {name!r}" for i, name in enumerate(names))
                + ". Set data.sheet to one of the names or its 0-based index"
            )
        try:
            # Text such as "NA" stays text (as in CSV); only empty cells are missing.
            frame = pd.read_excel(book, sheet_name=chosen, header=None, dtype=object,
                                  keep_default_na=False, na_values=[""])
        except Exception as exc:
            raise AllianceDataError(
                f"{path}: cannot read sheet {chosen!r} ({type(exc).__name__}: {exc}). "
                "Re-save it from Excel or export it as CSV"
            ) from None
    return _promote_header(frame)


def _read_labelled(path: Path, fmt: str) -> tuple[pd.DataFrame, dict, dict]:
    import pyreadstat

    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    try:
        frame, meta = reader(str(path), apply_value_formats=False)
    except Exception as exc:  # pyreadstat raises its own ReadstatError and OSError variants
        raise AllianceDataError(
            f"{path}: cannot be read as {'SPSS .sav' if fmt == 'sav' else 'Stata .dta'} "
            f"({type(exc).__name__}: {exc}). The file may be corrupted or of another format; "
            "re-export it or set data.format"
        ) from None
    labels = {
        column: dict(meta.value_labels[name])
        for column, name in meta.variable_to_label.items()
        if name in meta.value_labels
    }
    column_labels = {
        column: label
        for column, label in zip(meta.column_names, meta.column_labels or [], strict=False)
        if label  # pyreadstat gives None (SPSS) or "" (Stata) for a column without a label
    }
    return frame, labels, column_labels


def read(path: str | Path, format: str = "auto", sheet: str | int | None = None,
         delimiter: str | None = None, encoding: str | None = None) -> RawData:
    """Read a session data file without changing it.

    Parameters
    ----------
    path
        The file.
    format
        ``auto`` (from the extension), ``csv``, ``xlsx``, ``sav``, ``dta`` or ``parquet``.
    sheet
        Excel sheet name or 0-based index (first sheet by default).
    delimiter, encoding
        CSV only; detected when not given: the delimiter is ``,`` ``;`` or tab
        (:class:`csv.Sniffer`, else the one most frequent in the header); the encoding is
        UTF-16 when the file starts with a UTF-16 byte-order mark (Excel's "Unicode text"),
        else UTF-8 with or without BOM when the whole file decodes as UTF-8, else Windows-1252,
        else Latin-1.

    Returns
    -------
    RawData
        CSV cells are text (``"003"`` stays ``"003"``) and only empty cells are missing
        (``NA`` stays text, for the cleaning ledger to log); Excel cells keep the type Excel
        stores, with the same rule for missing; SPSS, Stata and Parquet columns keep their
        stored types. SPSS user-missing values are read as missing (pyreadstat's default).

    Raises
    ------
    AllianceDataError
        When the file does not exist, cannot be parsed, has a column name twice, or holds no
        data rows; the message names the file and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise AllianceDataError(f"{path}: is a folder, not a file. Check data.path in the "
                                "parameters")
    if not path.is_file():
        raise AllianceDataError(f"{path}: file not found. Check data.path in the parameters")
    fmt = detect_format(path, format)
    value_labels: dict = {}
    column_labels: dict = {}
    sha256 = None
    if fmt == "csv":
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AllianceDataError(
                f"{path}: cannot be opened ({type(exc).__name__}: {exc.strerror or exc}). "
                "Check that you may read it"
            ) from None
        sha256 = hashlib.sha256(data).hexdigest()  # the bytes that were parsed
        frame = _read_csv(path, data, delimiter, encoding)
    elif fmt == "xlsx":
        frame = _read_excel(path, sheet)
    elif fmt in ("sav", "dta"):
        frame, value_labels, column_labels = _read_labelled(path, fmt)
    else:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError variants
            raise AllianceDataError(
                f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc}). The file "
                "may be corrupted or of another format; re-export it or set data.format"
            ) from None
    frame = frame.reset_index(drop=True)
    frame.columns = [str(column) for column in frame.columns]
    if frame.shape[1] == 0:
        raise AllianceDataError(f"{path}: no columns found. Export the data with a header row")
    repeated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if repeated:
        raise AllianceDataError(
            f"{path}: the header names column(s) {', '.join(map(repr, repeated))} more than "
            "once, so it is unclear which one holds the data. Rename the copies in the file "
            "(or a copy of it)"
        )
    if frame.empty:
        raise AllianceDataError(
            f"{path}: the file has a header ({frame.shape[1]} columns) but no data rows. "
            "Check that the right file (or sheet) is given and that the export kept the data"
        )
    if SOURCE_ROW in frame.columns:
        raise AllianceDataError(
            f"{path}: has a column named '{SOURCE_ROW}', which the workbench reserves for row "
            "numbers. Rename it"
        )
    frame.insert(0, SOURCE_ROW, range(1, len(frame) + 1))
    return RawData(frame=frame, path=path, sha256=sha256 or file_sha256(path), format=fmt,
                   value_labels=value_labels, column_labels=column_labels)


def read_source(source: DataSource) -> RawData:
    """Read the data file described by a run's ``data:`` parameters (see :func:`read`)."""
    return read(source.path, format=source.format, sheet=source.sheet,
                delimiter=source.delimiter, encoding=source.encoding)


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
    """

    frame: pd.DataFrame
    source_columns: dict[str, str]
    unused: tuple[str, ...]


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

    Raises
    ------
    AllianceDataError
        A required or explicitly mapped column is missing from the file: the message names the
        file, the column, the parameter that maps it, and the columns the file has (with a hint
        when a column differs only in case or spaces, when a CSV looks split at the wrong
        delimiter, or when the items exist under another name, with the pattern to use). Also
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
            f"columns are: {listed}.{hint}{_delimiter_hint(raw, present)} Map the right one in "
            f"the parameters, e.g. columns: {{{canonical}: <column in the file>}}"
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
    unused = tuple(c for c in present if c not in mapping.values())
    return MappedData(frame=frame, source_columns=mapping, unused=unused)
