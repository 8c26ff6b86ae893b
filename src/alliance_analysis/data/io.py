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
(the cleaning ledger excludes it) and empty rows after the last data row are dropped. With
``data.skip_rows`` *k* (title lines above the header), the header is line or row *k* + 1 (or the
first non-empty one after it) and every number shifts by *k*: :attr:`RawData.header_line` says
where the header was found.

A CSV file is decoded as one encoding, never line by line: a file whose lines mix UTF-8 with
another encoding is refused, naming the lines that do not decode as UTF-8, rather than read with
the same word spelt two ways. :attr:`RawData.encoding` records the encoding used.
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
from alliance_analysis.data.schema import SOURCE_ROW
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
    encoding
        The text encoding the file was decoded with (CSV: declared or detected, e.g. ``utf-8``,
        ``utf-8-sig``, ``cp1252``; SPSS/Stata: as stored in the file); None for Excel and
        Parquet, which store text as Unicode.
    header_line
        The 1-based line (CSV) or sheet row (Excel) holding the header; 1 for other formats.
    """

    frame: pd.DataFrame
    path: Path
    sha256: str
    format: str
    value_labels: dict[str, dict[object, str]] = field(default_factory=dict)
    column_labels: dict[str, str] = field(default_factory=dict)
    encoding: str | None = None
    header_line: int = 1


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


def _lines(numbers: Sequence[int], limit: int = 10) -> str:
    """``line 3`` or ``lines 3, 5, 9`` (at most ``limit``, then how many more)."""
    shown = ", ".join(map(str, numbers[:limit]))
    more = f" and {len(numbers) - limit} more" if len(numbers) > limit else ""
    return f"line{'s' if len(numbers) > 1 else ''} {shown}{more}"


def _split_lines(data: bytes, encoding: str) -> tuple[list[int], list[int]]:
    """1-based lines with non-ASCII bytes that decode as ``encoding``, and those that do not."""
    good, bad = [], []
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.isascii():
            try:
                line.decode(encoding)
                good.append(number)
            except UnicodeDecodeError:
                bad.append(number)
    return good, bad


def _refuse_mixed(path: Path, data: bytes) -> None:
    """Refuse a file (not UTF-8 as a whole) some of whose lines are UTF-8 with non-ASCII text.

    Decoded as Windows-1252 or Latin-1, those lines would spell ``männlich`` as
    ``mÃ¤nnlich``: one category would become two without any trace.
    """
    utf8, other = _split_lines(data, "utf-8")
    if not utf8 or not other:
        return
    line = data.splitlines()[other[0] - 1]
    first = next(i for i, byte in enumerate(line) if byte >= 0x80)
    excerpt = line[max(first - 15, 0):first + 15].decode("cp1252", errors="replace")
    raise AllianceDataError(
        f"{path}: the lines of the file are in different text encodings: {_lines(utf8)} "
        f"{'is' if len(utf8) == 1 else 'are'} UTF-8, but {_lines(other)} "
        f"{'does' if len(other) == 1 else 'do'} not decode as UTF-8 (probably Windows-1252 or "
        f"Latin-1; line {other[0]} holds {excerpt!r}), so the same word would be read two "
        "ways (e.g. 'männlich' and 'mÃ¤nnlich'). Re-save the file as UTF-8 after correcting "
        "the lines that do not decode (in an editor that opens them correctly), or, if every "
        "line really is in one encoding, set data.encoding to it (utf-8, cp1252 or latin-1)"
    )


def _decode(path: Path, data: bytes, declared: str | None) -> tuple[str, str]:
    """The file's text and the encoding used: ``declared``, else detected (see :func:`read`)."""
    if declared:
        candidates = [declared]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        candidates = ["utf-16"]  # Excel's "Unicode text" export
    else:
        # Windows-1252 before Latin-1: Excel's CSV export on Windows writes cp1252, whose
        # curly quotes and euro sign are control characters in Latin-1.
        candidates = ["utf-8-sig", "cp1252", "latin-1"]
    text, used = None, "latin-1"
    for encoding in candidates:
        try:
            text, used = data.decode(encoding), encoding
            break
        except UnicodeDecodeError as exc:
            if declared:
                line = _line_of(data, exc.start)
                bad = (_split_lines(data, declared)[1] if "\n".encode(declared) == b"\n"
                       else [line])
                raise AllianceDataError(
                    f"{path}: cannot be decoded as {declared}: byte {exc.start} (line {line} "
                    f"of the file) is {data[exc.start:exc.start + 1]!r}; {_lines(bad)} of the "
                    f"file {'does' if len(bad) == 1 else 'do'} not decode. Set data.encoding to "
                    "the file's encoding (for example utf-8, latin-1 or cp1252), remove "
                    "data.encoding to detect it, or re-save the file as UTF-8"
                ) from None
            if encoding == "utf-8-sig":
                _refuse_mixed(path, data)
        except LookupError:
            raise AllianceDataError(
                f"{path}: unknown encoding '{declared}' in data.encoding. Use for example "
                "utf-8, utf-8-sig, latin-1 or cp1252"
            ) from None
    if text is None:  # only a failed utf-16 guess gets here; latin-1 decodes every byte
        text = data.decode("latin-1")
    if used == "utf-8-sig" and not declared and not data.startswith(codecs.BOM_UTF8):
        used = "utf-8"
    if "\x00" in text:
        raise AllianceDataError(
            f"{path}: the file contains NUL bytes, so it is not a text (CSV) file. If it is an "
            "Excel, SPSS, Stata or Parquet file, give it the right extension or set data.format"
        )
    return text.removeprefix("\ufeff"), used  # a BOM left by a declared utf-8/utf-16-le


def source_encoding(source: DataSource) -> str | None:
    """The encoding :func:`read_source` decodes ``source`` with (:attr:`RawData.encoding`).

    For the run's manifest: the file is decoded as :func:`read` does, but not parsed.

    Raises
    ------
    AllianceDataError
        As :func:`read` does when the file cannot be read or decoded.
    """
    path = Path(source.path)
    fmt = detect_format(path, source.format)
    if fmt == "csv":
        return _decode(path, _read_bytes(path), source.encoding)[1]
    if fmt in ("sav", "dta"):
        return _read_labelled(path, fmt, metadata_only=True)[3]
    return None


def _detect_delimiter(path: Path, text: str, declared: str | None, skipped: int = 0) -> str:
    """The delimiter of ``text`` (whose first line is line ``skipped`` + 1 of the file)."""
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
            later = next((n for n, line in enumerate(sample.splitlines()[1:20], start=1)
                          if any(delim in line for delim in _DELIMITERS)), None)
            title = (f" If it is a title above the header, set data.skip_rows: "
                     f"{skipped + later}." if later else "")
            raise AllianceDataError(
                f"{path}: line {skipped + 1} (the header) has no comma, semicolon or tab, so "
                f"the columns cannot be told apart: {first_line[:80]!r}.{title} Otherwise set "
                "data.delimiter in the parameters"
            ) from None
        return best


def _promote_header(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Use the first non-empty row of a header-less table as its column names.

    Rows after the header keep their positions (so ``source_row`` matches the file); empty rows
    after the last data row are dropped. Also returns the header's 0-based position.
    """
    filled = frame.notna().any(axis=1).to_numpy()
    if not filled.any():
        return pd.DataFrame(), 0
    first = int(filled.argmax())
    last = len(filled) - 1 - int(filled[::-1].argmax())
    header = frame.iloc[first]
    names = [f"Unnamed: {i}" if pd.isna(value) else str(value)
             for i, value in enumerate(header)]
    data = frame.iloc[first + 1:last + 1].copy()
    data.columns = names
    return data, first


def _too_few_lines(path: Path, skip_rows: int, what: str) -> AllianceDataError:
    return AllianceDataError(
        f"{path}: data.skip_rows is {skip_rows}, but no header is left after skipping that many "
        f"{what}. Set data.skip_rows to the number of {what} above the header (0 if none)")


def _read_csv(path: Path, data: bytes, delimiter: str | None, encoding: str | None,
              skip_rows: int = 0) -> tuple[pd.DataFrame, str, int]:
    """The table, the encoding used and the 1-based line of the header."""
    text, used = _decode(path, data, encoding)
    if not text.strip():
        raise AllianceDataError(f"{path}: the file is empty. Export the data with a header row")
    # Title lines (data.skip_rows), then blank lines before the header, which would set the
    # number of fields to 1: drop them, and count them so that line numbers in messages are
    # lines of the file.
    top = re.match(rf"(?:[^\r\n]*(?:\r\n|\r|\n|$)){{{skip_rows}}}", text)[0]
    leading = re.match(r"(?:[ \t]*(?:\r\n|\r|\n))*", text[len(top):])[0]
    skipped = skip_rows + len(re.findall(r"\r\n|\r|\n", leading))
    text = text[len(top) + len(leading):]
    if not text.strip():
        raise _too_few_lines(path, skip_rows, "lines")
    delim = _detect_delimiter(path, text, delimiter, skipped)
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
        title = (f" If the lines above line {int(found[2]) + skipped} are a title or notes, "
                 f"set data.skip_rows: {int(found[2]) + skipped - 1}."
                 if found and int(found[1]) < int(found[3]) and int(found[2]) <= 5 else "")
        raise AllianceDataError(
            f"{path}: the rows do not split into the same columns: {where}.{title} Check the "
            f"delimiter (detected {_DELIMITER_NAMES.get(delim, repr(delim))}; set "
            "data.delimiter) and the quoting of that line"
        ) from None
    frame, first = _promote_header(frame)
    return frame, used, skipped + first + 1


def _read_excel(path: Path, sheet: str | int | None,
                skip_rows: int = 0) -> tuple[pd.DataFrame, int]:
    """The table of one sheet and the 1-based sheet row of its header."""
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
    if skip_rows and not frame.iloc[skip_rows:].notna().any().any():
        raise _too_few_lines(path, skip_rows, "rows")
    frame, first = _promote_header(frame.iloc[skip_rows:])
    return frame, skip_rows + first + 1


def _read_labelled(path: Path, fmt: str,
                   metadata_only: bool = False) -> tuple[pd.DataFrame, dict, dict, str | None]:
    """Table, value labels, variable labels and stored encoding of an SPSS or Stata file."""
    import pyreadstat

    reader = pyreadstat.read_sav if fmt == "sav" else pyreadstat.read_dta
    try:
        frame, meta = reader(str(path), apply_value_formats=False, metadataonly=metadata_only)
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
    return frame, labels, column_labels, getattr(meta, "file_encoding", None) or None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AllianceDataError(
            f"{path}: cannot be opened ({type(exc).__name__}: {exc.strerror or exc}). "
            "Check that you may read it"
        ) from None


def read(path: str | Path, format: str = "auto", sheet: str | int | None = None,
         delimiter: str | None = None, encoding: str | None = None,
         skip_rows: int = 0) -> RawData:
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
        else Latin-1. A file some of whose lines are UTF-8 (with non-ASCII text) while others
        do not decode as UTF-8 is refused, naming those lines (a declared encoding is trusted).
    skip_rows
        CSV and Excel only: lines (rows of the sheet) above the header to skip, such as a
        title; blank ones count.

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
        When the file does not exist, cannot be parsed or decoded, mixes text encodings, has a
        column name twice, or holds no data rows; the message names the file and what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise AllianceDataError(f"{path}: is a folder, not a file. Check data.path in the "
                                "parameters")
    if not path.is_file():
        raise AllianceDataError(f"{path}: file not found. Check data.path in the parameters")
    fmt = detect_format(path, format)
    if skip_rows and fmt not in ("csv", "xlsx"):
        raise AllianceDataError(
            f"{path}: data.skip_rows ({skip_rows}) applies to CSV and Excel files only; this "
            f"file is read as {fmt}, whose column names are stored apart. Remove data.skip_rows")
    value_labels: dict = {}
    column_labels: dict = {}
    sha256 = None
    used = None
    header_line = 1
    if fmt == "csv":
        data = _read_bytes(path)
        sha256 = hashlib.sha256(data).hexdigest()  # the bytes that were parsed
        frame, used, header_line = _read_csv(path, data, delimiter, encoding, skip_rows)
    elif fmt == "xlsx":
        frame, header_line = _read_excel(path, sheet, skip_rows)
    elif fmt in ("sav", "dta"):
        frame, value_labels, column_labels, used = _read_labelled(path, fmt)
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
                   value_labels=value_labels, column_labels=column_labels, encoding=used,
                   header_line=header_line)


def read_source(source: DataSource) -> RawData:
    """Read the data file described by a run's ``data:`` parameters (see :func:`read`)."""
    return read(source.path, format=source.format, sheet=source.sheet,
                delimiter=source.delimiter, encoding=source.encoding,
                skip_rows=source.skip_rows)
