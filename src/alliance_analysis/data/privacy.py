"""The anonymisation gate: the workbench takes anonymised data and makes sure it stays so.

Every data file passes :func:`gate` straight after it is read. The gate drops the columns the
parameters list under ``privacy.drop``, then looks for direct identifiers in the rest
(:func:`~alliance_analysis.data.identifiers.find_identifiers`: names, e-mail addresses, telephone numbers, postal addresses, dates of
birth, national and health-record numbers, IP addresses, precise locations, URLs and free text).
A column that looks like one stops the run unless the parameters either drop it or allow it with
a reason, which the run's manifest records. Messages name the file, the column and an example
row, never the identifying value itself.

The remaining steps keep the data anonymous on the way to ``reports/``:

- :func:`pseudonymise` replaces client and therapist codes by keyed hashes
  (:func:`load_or_create_key` keeps the secret key beside the processed data, never in a report);
- :func:`dates_to_days` turns calendar session dates into days since each client's first
  session, so no calendar date leaves the processed table;
- :func:`suppress_small_cells` hides counts below ``privacy.min_cell_size`` in tables of client
  characteristics.

Detection is a safety net, not a proof of anonymity: it cannot see quasi-identifiers (a rare
diagnosis in a small town) or identifiers written in a way it does not know. The researcher
remains responsible for sharing only data their ethics approval and data-protection law allow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.data.schema import SOURCE_ROW
from alliance_analysis.data.identifiers import (SESSION_DATE_FORMATS, IdentifierFinding,
                                              find_identifiers, parse_dates, row_numbers)
from alliance_analysis.options import PrivacyOptions

#: Shown in place of a count suppressed only so that another cannot be recovered from a total.
SECONDARY_MARK = "[c]"

#: Length of the hexadecimal part of a pseudonym (40 bits: collisions need ~10^6 clients).
CODE_HEX_CHARS = 10

_KEY_BYTES = 32
_MIN_KEY_BYTES = 16

@dataclass(frozen=True)
class GateResult:
    """What :func:`gate` let through.

    Attributes
    ----------
    frame
        The table without the dropped columns (a copy).
    dropped
        The columns dropped, as listed in ``privacy.drop``.
    allowed
        ``{column: reason}`` for each column the parameters allow, for the run's manifest.
    findings
        Every identifier finding, including those on allowed columns.
    """

    frame: pd.DataFrame
    dropped: tuple[str, ...]
    allowed: dict[str, str]
    findings: tuple[IdentifierFinding, ...]


def _privacy_block(options: PrivacyOptions, columns: list[str]) -> str:
    """The ``privacy:`` YAML that drops ``columns``, with commented lines to allow them."""
    quote = partial(json.dumps, ensure_ascii=False)  # a JSON string is a YAML scalar
    lines = ["privacy:", "  drop:"]
    lines += [f"  - {quote(column)}" for column in (*options.drop, *columns)]
    lines.append("  allow:" if options.allow else "  # allow:")
    lines += [f"    {quote(column)}: {quote(reason)}" for column, reason in options.allow.items()]
    lines += [f"    # {quote(column)}: \"<why this column identifies no one>\""
              for column in columns]
    return "\n".join(lines)


def _refusal(source: str, unresolved: list[IdentifierFinding], options: PrivacyOptions) -> str:
    listing = "\n".join(f"  - {finding.column!r}: {finding.reason}" for finding in unresolved)
    block = _privacy_block(options, [finding.column for finding in unresolved])
    return (
        f"{source}: {len(unresolved)} column(s) look like direct identifiers (names, contact "
        "details, dates of birth, record numbers, free text), which must not enter the "
        f"workbench:\n{listing}\n"
        "The workbench takes anonymised data only (values are not shown here, as they may "
        "identify someone). Drop each column on reading: paste this as the privacy: section of "
        "the parameters file (its other keys, if any, stay as they are):\n\n"
        f"{block}\n\n"
        "A column that identifies no one can be allowed instead: move it from drop to allow "
        "(delete the '# ' of its line and, if there, of allow:) and write why; the reason is "
        "recorded in the run's manifest.\n"
    )


def gate(frame: pd.DataFrame, options: PrivacyOptions, skip: Collection[str],
         source: str) -> GateResult:
    """Let a table into the workbench only without direct identifiers.

    Drops the columns in ``options.drop``, looks for identifiers in the rest with
    :func:`find_identifiers`, and refuses the data while any finding is on a column that
    ``options.allow`` does not list.

    Parameters
    ----------
    frame
        The table as read.
    options
        The run's ``privacy:`` parameters.
    skip
        Columns not to check (the client and therapist ID columns, the session-date column).
    source
        The data file's name, for messages.

    Returns
    -------
    GateResult

    Raises
    ------
    AllianceDataError
        When ``privacy.drop`` or ``privacy.allow`` names a column the file does not have, a
        column is both dropped and allowed, an allowed column has no reason, or a column
        looks like a direct identifier and is neither dropped nor allowed. The last message
        lists each such column and why, and the YAML to paste into the parameters file.

    References
    ----------
    .. [1] Information Commissioner's Office (2012). *Anonymisation: managing data protection
       risk code of practice*. Wilmslow: ICO.
    .. [2] U.S. Department of Health and Human Services (2012). *Guidance regarding methods
       for de-identification of protected health information in accordance with the HIPAA
       Privacy Rule*, 45 CFR 164.514(b)(2).
    """
    present = [str(column) for column in frame.columns if column != SOURCE_ROW]
    for key, listed in (("drop", options.drop), ("allow", list(options.allow))):
        unknown = [column for column in listed if column not in frame.columns]
        if unknown:
            raise AllianceDataError(
                f"{source}: privacy.{key} lists column(s) not in the file: {unknown}. "
                f"The file's columns are: {present}. Correct the names (they are "
                "case-sensitive) or remove them"
            )
    both = [column for column in options.drop if column in options.allow]
    if both:
        raise AllianceDataError(
            f"{source}: column(s) {both} are listed under both privacy.drop and privacy.allow. "
            "Keep each under one of them"
        )
    unexplained = [column for column, reason in options.allow.items() if not reason.strip()]
    if unexplained:
        raise AllianceDataError(
            f"{source}: privacy.allow gives no reason for column(s) {unexplained}. Write why "
            "each identifies no one (the reason is recorded in the run's manifest)"
        )
    kept = frame.drop(columns=list(options.drop))
    findings = find_identifiers(kept, skip)
    unresolved = [finding for finding in findings if finding.column not in options.allow]
    if unresolved:
        raise AllianceDataError(_refusal(source, unresolved, options))
    return GateResult(frame=kept, dropped=tuple(options.drop), allowed=dict(options.allow),
                      findings=tuple(findings))


def load_or_create_key(path: Path) -> bytes:
    """The secret key of the pseudonym hash, read from ``path`` or created there.

    The file holds the key as hexadecimal text. A missing file is created (with its folders)
    holding 32 random bytes from :mod:`secrets`, readable by its owner only (mode ``0o600``).

    Keep the key with the processed data and out of version control and reports: with it,
    anyone can check whether a guessed client code belongs to the data. Keep it as long as
    new data must get the same pseudonyms; a new key gives every client a new code.

    Parameters
    ----------
    path
        The key file (``privacy.key_file``; by default ``<processed>/pseudonym.key``).

    Returns
    -------
    bytes
        The key (at least 16 bytes).

    Raises
    ------
    AllianceDataError
        When the file cannot be read or written, or does not hold at least 32 hexadecimal
        digits.

    References
    ----------
    .. [1] Barker, E. (2020). *Recommendation for key management, part 1: general*. NIST
       Special Publication 800-57 Part 1 Revision 5 (keys of at least 128 bits).
    """
    path = Path(path)
    if not path.exists():
        key = secrets.token_bytes(_KEY_BYTES)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "w", encoding="ascii") as out:
                out.write(key.hex() + "\n")
        except OSError as exc:
            raise AllianceDataError(
                f"{path}: cannot create the pseudonym key file ({exc.strerror or exc}). Set "
                "privacy.key_file to a writable place outside version control"
            ) from None
        return key
    try:
        text = path.read_text(encoding="ascii").strip()
        key = bytes.fromhex(text)
    except OSError as exc:
        raise AllianceDataError(
            f"{path}: cannot read the pseudonym key file ({exc.strerror or exc}). Check that it "
            "is a file you may read, or set privacy.key_file"
        ) from None
    except ValueError:  # UnicodeDecodeError is a ValueError too
        raise AllianceDataError(
            f"{path}: the pseudonym key file does not hold a hexadecimal key. Restore the "
            "original key file (the same key gives the same pseudonyms), or move this file "
            "away to create a new key (all pseudonyms then change)"
        ) from None
    if len(key) < _MIN_KEY_BYTES:
        raise AllianceDataError(
            f"{path}: the pseudonym key is {len(key)} bytes; at least {_MIN_KEY_BYTES} bytes "
            f"({2 * _MIN_KEY_BYTES} hexadecimal digits) are needed. Restore the original key "
            "file, or move this one away to create a new key"
        )
    return key


def _code(key: bytes, text: str) -> str:
    """The hexadecimal part of the pseudonym of ``text``."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:CODE_HEX_CHARS]


def _as_text(value: object) -> str:
    """``str(value)``, with whole floats as integers, so 101 read from SPSS is ``"101"``."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def pseudonymise(values: pd.Series, key: bytes, prefix: str) -> pd.Series:
    """Replace identifiers by stable pseudonyms: ``prefix`` + keyed hash.

    Parameters
    ----------
    values
        Client or therapist codes. Whole floats count as integers (``101.0`` is ``"101"``).
    key
        Secret key (see :func:`load_or_create_key`).
    prefix
        Put before the hash, e.g. ``"C-"`` for clients and ``"T-"`` for therapists.

    Returns
    -------
    pandas.Series
        Text codes such as ``"C-3fa9c01b2e"`` on the same index; missing values stay missing.
        The same value and key always give the same code.

    Raises
    ------
    AllianceDataError
        When two different values get the same code (about one chance in 10^5 for 5,000
        distinct values, as 40 bits are kept); a new key then gives new codes.

    Notes
    -----
    The code is the first 10 hexadecimal digits of HMAC-SHA256 with the secret key over the
    value's text. Unlike a plain hash, a keyed hash cannot be reversed by hashing every
    possible client number; whoever holds the key can, so the key never leaves the processed
    data folder. The result is pseudonymous, not anonymous, data in the sense of GDPR
    Article 4(5).

    References
    ----------
    .. [1] Krawczyk, H., Bellare, M., & Canetti, R. (1997). *HMAC: keyed-hashing for message
       authentication*. RFC 2104.
    .. [2] ENISA (2019). *Pseudonymisation techniques and best practices*. European Union
       Agency for Cybersecurity.
    """
    present = values.dropna()
    texts = {value: _as_text(value) for value in present.unique()}
    codes: dict[str, str] = {}
    for text in set(texts.values()):
        code = prefix + _code(key, text)
        if code in codes:
            raise AllianceDataError(
                f"column {values.name!r}: two different values get the same pseudonym {code}. "
                "Create a new key (move the pseudonym key file away) and rerun"
            )
        codes[code] = text
    by_text = {text: code for code, text in codes.items()}
    known = values.notna().to_numpy()
    result = pd.Series(np.nan, index=values.index, name=values.name, dtype="str")
    result[known] = [by_text[texts[value]] for value in values[known]]
    return result


def dates_to_days(frame: pd.DataFrame, client: str, date: str, source: str) -> pd.Series:
    """Days since each client's first dated session, from calendar session dates.

    Parameters
    ----------
    frame
        The session table (one row per session).
    client
        Column of the client codes.
    date
        Column of the session dates: date-typed cells, or text as ``yyyy-mm-dd``,
        ``dd.mm.yyyy`` or ``dd/mm/yyyy`` (day first; formats may be mixed).
    source
        The data file's name, for messages.

    Returns
    -------
    pandas.Series
        Nullable ``Int64`` named ``day``: 0 at the client's first dated session. Missing dates,
        and rows without a client, stay missing.

    Raises
    ------
    AllianceDataError
        When a column is missing or a date cannot be read; the message names the rows (by
        ``source_row`` when present, else by 1-based position), the column and the values.

    Notes
    -----
    Calendar dates linked to a person are identifying (HIPAA Safe Harbor removes every date
    element but the year); days since the first session keep the spacing of sessions,
    which the models need, and drop the calendar. ``03/04/2024`` is read as 3 April.

    References
    ----------
    .. [1] U.S. Department of Health and Human Services (2012). *Guidance regarding methods
       for de-identification of protected health information in accordance with the HIPAA
       Privacy Rule*, 45 CFR 164.514(b)(2)(i)(C).
    """
    missing = [column for column in (client, date) if column not in frame.columns]
    if missing:
        raise AllianceDataError(
            f"{source}: column(s) {missing} not found; the file's columns are "
            f"{[str(c) for c in frame.columns]}. Check columns.client_id and columns.date"
        )
    values = frame[date].reset_index(drop=True)
    parsed = parse_dates(values, SESSION_DATE_FORMATS)
    present = values.notna() & values.map(lambda v: not isinstance(v, str) or v.strip() != "")
    bad = present.astype(bool) & parsed.isna()
    if bad.any():
        rows = row_numbers(frame).to_numpy()[bad.to_numpy()]
        shown = [f"row {row}: {value!r}" for row, value in zip(rows, values[bad])][:5]
        more = f" and {int(bad.sum()) - 5} more" if bad.sum() > 5 else ""
        raise AllianceDataError(
            f"{source}: column {date!r} has {int(bad.sum())} value(s) that are not calendar "
            f"dates in the formats yyyy-mm-dd, dd.mm.yyyy or dd/mm/yyyy: "
            f"{'; '.join(shown)}{more}. Correct them in a copy of the file, or leave the "
            "cells empty"
        )
    first = parsed.groupby(frame[client].reset_index(drop=True)).transform("min")
    days = (parsed - first).dt.days.astype("Int64")
    return days.set_axis(frame.index).rename("day")


def suppress_small_cells(table: pd.DataFrame, count_columns: Sequence[str],
                         k: int = 5) -> pd.DataFrame:
    """Hide small counts in a table of client characteristics before it is reported.

    Parameters
    ----------
    table
        One row per category (e.g. gender by arm), counts in ``count_columns``.
    count_columns
        The columns holding counts (whole numbers >= 0; missing allowed).
    k
        Smallest count shown (``privacy.min_cell_size``).

    Returns
    -------
    pandas.DataFrame
        A copy in which each count column has object dtype: counts from 1 to ``k - 1`` read
        ``"<k"`` (primary suppression); zeros, missing values and other counts are unchanged
        except as below.

    Raises
    ------
    ValueError
        When a count column is missing, holds anything but whole numbers >= 0, or ``k < 1``.

    Notes
    -----
    *Secondary suppression.* If a column has exactly one suppressed count, a reader could
    recover it by subtracting the shown counts from the column total (often the sample size
    of an arm). The smallest other non-zero count of that column is then hidden too, shown as
    ``"[c]"`` (it is not below ``k``, so ``"<k"`` would be untrue); the two hidden counts are
    then known only as a sum. Zeros stay shown: hiding a zero protects no one. If the column
    has no other non-zero count, its total equals the hidden count, so do not report that
    total. Row totals are not considered: a table whose rows are also summed needs the same
    care by row.

    References
    ----------
    .. [1] Hundepool, A., Domingo-Ferrer, J., Franconi, L., Giessing, S., Schulte Nordholt,
       E., Spicer, K., & de Wolf, P.-P. (2012). *Statistical Disclosure Control*. Chichester:
       Wiley, chapter 4 (magnitude and frequency tables; primary and secondary suppression).
    .. [2] Information Standards Board for Health and Social Care (2013). *Anonymisation
       standard for publishing health and social care data* (ISB1523). NHS Digital.

    Examples
    --------
    >>> table = pd.DataFrame({"gender": ["female", "male", "other"], "n": [30, 12, 2]})
    >>> suppress_small_cells(table, ["n"])["n"].tolist()
    [30, '[c]', '<5']
    """
    if k < 1:
        raise ValueError(f"k (the smallest count shown) must be at least 1; got {k}")
    missing = [column for column in count_columns if column not in table.columns]
    if missing:
        raise ValueError(f"count column(s) {missing} not in the table {list(table.columns)}")
    out = table.copy()
    for column in count_columns:
        counts = pd.to_numeric(table[column], errors="coerce")
        given = table[column].notna()
        whole = counts.notna() & (counts >= 0) & (counts % 1 == 0)
        if not whole[given].all():
            raise ValueError(f"column {column!r} must hold whole counts >= 0; got "
                             f"{table[column][given & ~whole].tolist()}")
        small = ((counts >= 1) & (counts < k)).to_numpy()
        complement = np.zeros(len(counts), dtype=bool)
        if small.sum() == 1:
            others = np.where(~small & (counts > 0).to_numpy(), counts.to_numpy(), np.inf)
            if np.isfinite(others).any():
                complement[int(np.argmin(others))] = True
        shown = [int(count) if given_ else value
                 for count, value, given_ in zip(counts, table[column], given)]
        shown = [f"<{k}" if is_small else SECONDARY_MARK if is_complement else value
                 for value, is_small, is_complement in zip(shown, small, complement)]
        out[column] = pd.Series(shown, index=table.index, dtype=object)
    return out
