"""Reading session data files: CSV, Excel, SPSS, Stata and Parquet.

Every reader returns a :class:`RawData` holding the table exactly as read (CSV cells as text, so
nothing is coerced before the cleaning ledger can log it), the 1-based data row number of each
row in the file, the file's SHA-256, and for SPSS/Stata the value and variable labels. Raw files
are only ever opened for reading.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import Instrument
from alliance_analysis.params import DataSource, RunParams

#: Extensions understood by ``format: auto``.
EXTENSIONS = {
    ".csv": "csv", ".tsv": "csv", ".txt": "csv",
    ".xlsx": "xlsx", ".xlsm": "xlsx",
    ".sav": "sav", ".zsav": "sav",
    ".dta": "dta",
    ".parquet": "parquet", ".pq": "parquet",
}

#: Column holding each row's 1-based data row number in the source file (header not counted).
SOURCE_ROW = "source_row"

_SNIFF_BYTES = 64 * 1024


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


def _detect_encoding(path: Path, sample: bytes, declared: str | None) -> str:
    if b"\x00" in sample:
        raise AllianceDataError(
            f"{path}: the file contains NUL bytes, so it is not a text (CSV) file. If it is an "
            "Excel, SPSS, Stata or Parquet file, give it the right extension or set data.format"
        )
    candidates = [declared] if declared else ["utf-8-sig", "latin-1"]
    for encoding in candidates:
        try:
            with open(path, encoding=encoding) as handle:
                handle.read()
            return encoding
        except UnicodeDecodeError as exc:
            if declared:
                raise AllianceDataError(
                    f"{path}: cannot be decoded as {declared} (byte {exc.start}: "
                    f"{exc.object[exc.start:exc.start + 1]!r}). Set data.encoding to the file's "
                    "encoding (for example utf-8 or latin-1), or remove it to detect it"
                ) from None
        except LookupError:
            raise AllianceDataError(
                f"{path}: unknown encoding '{declared}' in data.encoding. Use for example "
                "utf-8, utf-8-sig, latin-1 or cp1252"
            ) from None
    return "latin-1"  # latin-1 decodes every byte sequence, so the loop cannot fall through


def _detect_delimiter(path: Path, text: str, declared: str | None) -> str:
    if declared:
        return declared
    first_line = text.splitlines()[0] if text else ""
    try:
        return csv.Sniffer().sniff(text, delimiters=",;\t").delimiter
    except csv.Error:
        counts = {delim: first_line.count(delim) for delim in ",;\t"}
        best = max(counts, key=counts.__getitem__)
        if counts[best] == 0:
            raise AllianceDataError(
                f"{path}: row 1 (the header) has no comma, semicolon or tab, so the columns "
                f"cannot be told apart: {first_line[:80]!r}. Set data.delimiter in the parameters"
            ) from None
        return best


def _read_csv(path: Path, delimiter: str | None, encoding: str | None) -> pd.DataFrame:
    with open(path, "rb") as handle:
        sample = handle.read(_SNIFF_BYTES)
    if not sample.strip():
        raise AllianceDataError(f"{path}: the file is empty. Export the data with a header row")
    enc = _detect_encoding(path, sample, encoding)
    text = sample.decode(enc, errors="ignore")
    delim = _detect_delimiter(path, text, delimiter)
    try:
        # Everything as text: coercion happens in cleaning, where each change is logged.
        return pd.read_csv(path, sep=delim, encoding=enc, dtype=str, keep_default_na=False,
                           na_values=[""], skip_blank_lines=True)
    except pd.errors.ParserError as exc:
        raise AllianceDataError(
            f"{path}: the rows do not split into the same columns ({exc}). Check the delimiter "
            f"(detected {delim!r}; set data.delimiter) and quoting"
        ) from None


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
    return frame, labels, dict(zip(meta.column_names, meta.column_labels or [], strict=False))


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
        CSV only; detected when not given (``,`` ``;`` or tab; UTF-8 with or without BOM,
        else Latin-1).

    Returns
    -------
    RawData

    Raises
    ------
    AllianceDataError
        When the file does not exist, cannot be parsed, or holds no data rows; the message
        names the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise AllianceDataError(f"{path}: file not found. Check data.path in the parameters")
    fmt = detect_format(path, format)
    value_labels: dict = {}
    column_labels: dict = {}
    if fmt == "csv":
        frame = _read_csv(path, delimiter, encoding)
    elif fmt == "xlsx":
        try:
            frame = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=object)
        except (ValueError, KeyError) as exc:
            raise AllianceDataError(
                f"{path}: cannot read sheet {sheet!r} ({exc}). Set data.sheet to a sheet name "
                "or 0-based index"
            ) from None
        except Exception as exc:  # openpyxl raises zipfile/XML errors for damaged files
            raise AllianceDataError(
                f"{path}: cannot be read as an Excel .xlsx file ({type(exc).__name__}: {exc}). "
                "Re-save it from Excel or export it as CSV"
            ) from None
    elif fmt in ("sav", "dta"):
        frame, value_labels, column_labels = _read_labelled(path, fmt)
    else:
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid and OSError variants
            raise AllianceDataError(
                f"{path}: cannot be read as Parquet ({type(exc).__name__}: {exc})"
            ) from None
    frame = frame.reset_index(drop=True)
    if frame.shape[1] == 0:
        raise AllianceDataError(f"{path}: no columns found. Export the data with a header row")
    if frame.empty:
        raise AllianceDataError(
            f"{path}: the file has a header ({frame.shape[1]} columns) but no data rows"
        )
    if SOURCE_ROW in frame.columns:
        raise AllianceDataError(
            f"{path}: has a column named '{SOURCE_ROW}', which the workbench reserves for row "
            "numbers. Rename it"
        )
    frame.insert(0, SOURCE_ROW, range(1, len(frame) + 1))
    return RawData(frame=frame, path=path, sha256=file_sha256(path), format=fmt,
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

    Raises
    ------
    AllianceDataError
        A required or explicitly mapped column is missing from the file: the message names the
        file, the column, the parameter that maps it, and the columns the file has.
    """
    columns = params.columns
    present = [c for c in raw.frame.columns if c != SOURCE_ROW]

    def missing(canonical: str, source: str, key: str) -> AllianceDataError:
        return AllianceDataError(
            f"{raw.path}: no column '{source}' for {canonical} (parameter {key}). The file's "
            f"columns are: {', '.join(present)}. Map the right one in the parameters"
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
        sources = item_map.source_columns(instrument.n_items) if item_map else instrument.items()
        if len(sources) != instrument.n_items:
            raise AllianceDataError(
                f"parameter items.{instrument.key}.columns lists {len(sources)} columns but "
                f"{instrument.name} has {instrument.n_items} items. List one column per item"
            )
        absent = [s for s in sources if s not in present]
        if absent:
            key = f"items.{instrument.key}" if item_map else f"items.{instrument.key} (not set)"
            raise AllianceDataError(
                f"{raw.path}: {instrument.name} ({instrument.key}) items not found: "
                f"{', '.join(absent)} (parameter {key}). The file's columns are: "
                f"{', '.join(present)}. Map the items with items: {{{instrument.key}: "
                "{pattern: 'NAME{n}'}} or a list of columns"
            )
        mapping.update(zip(instrument.items(), sources, strict=True))
    duplicated = {s for s in mapping.values() if list(mapping.values()).count(s) > 1}
    if duplicated:
        raise AllianceDataError(
            f"{raw.path}: column(s) {', '.join(sorted(duplicated))} are mapped to more than "
            "one canonical column. Check columns: and items: in the parameters"
        )
    frame = raw.frame[[SOURCE_ROW, *mapping.values()]].copy()
    frame.columns = [SOURCE_ROW, *mapping.keys()]
    unused = tuple(c for c in present if c not in mapping.values())
    return MappedData(frame=frame, source_columns=mapping, unused=unused)
