"""The anonymisation gate: the workbench takes anonymised data and makes sure it stays so.

Every data file passes :func:`gate` straight after it is read. The gate drops the columns the
parameters list under ``privacy.drop``, then looks for direct identifiers in the rest
(:func:`find_identifiers`: names, e-mail addresses, telephone numbers, postal addresses, dates of
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

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.io import SOURCE_ROW
from alliance_analysis.params import PrivacyOptions

#: Formats of calendar session dates understood by :func:`dates_to_days`, tried in this order.
SESSION_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y")

#: Formats tried when looking for dates of birth: generous, since missing one is the worse error.
_DETECT_DATE_FORMATS = SESSION_DATE_FORMATS + (
    "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
)

#: Shown in place of a count suppressed only so that another cannot be recovered from a total.
SECONDARY_MARK = "[c]"

#: Length of the hexadecimal part of a pseudonym (40 bits: collisions need ~10^6 clients).
CODE_HEX_CHARS = 10

_KEY_BYTES = 32
_MIN_KEY_BYTES = 16

# --- (a) identifiers recognised by the column name ----------------------------------------------
# Names are normalised to lower-case words joined by "_" (see _normalise_name). A pattern must end
# the name (optionally followed by a number, as in "phone_2"): in English the last word of a
# compound name is its head, so "phone_number" is a phone number but "phone_call_count" is not.
_NUMBER = r"(?:_?(?:no|nr|num|number|nummer))"
_NAME_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("an e-mail address", (r"e_?mails?(?:_?addr(?:ess)?(?:es)?)?",)),
    ("an IP address", (r"ip_?addr(?:ess)?(?:es)?",)),
    ("a person's initials", (
        r"(?:(?:first|last|sur_?name|fore_?name|given|family|middle|name|client|patient)_?)?"
        r"initials",
        r"(?:first|last|sur_?name|fore_?name|given|family|middle|name)_?initial",
    )),
    ("a person's name", (
        r"^names?",
        r"(?:first|last|full|given|family|middle|maiden|nick|user|sur|fore|christian|client"
        r"|patient|participant|therapist|clinician|counsell?or|person|child|parent|carer"
        r"|caregiver|guardian|mother|father|partner|contact|kin|gp|doctor|recipient"
        r"|respondent)_?names?",
        r"name_?(?:first|last|full|given|family)",
        r"vor_?name", r"nach_?name",
    )),
    ("a telephone number", (
        r"(?:tele|cell|mobile|home|work|contact)?_?phone" + _NUMBER + "?s?",
        r"tel" + _NUMBER + "?", r"telefon" + _NUMBER + "?", r"fax" + _NUMBER + "?",
        r"mobile" + _NUMBER + "?", r"cell" + _NUMBER, r"handy" + _NUMBER,
    )),
    ("a street address or postcode", (
        r"addr(?:ess)?(?:es)?(?:_?line)?", r"adresse", r"anschrift", r"street", r"strasse",
        r"house" + _NUMBER, r"post_?code", r"postal_?code", r"zip(?:_?code)?", r"plz",
        r"postleitzahl",
    )),
    ("a date of birth", (
        r"dob", r"d_o_b", r"date_?of_?birth", r"birth_?(?:date|day|dt)",
        r"geburts_?(?:datum|tag)", r"geb_?datum",
    )),
    ("a national, insurance or health-record number", (
        r"ssn", r"social_?security" + _NUMBER + "?", r"national_?insurance" + _NUMBER + "?",
        r"ni" + _NUMBER, r"nino", r"nhs(?:_?(?:no|nr|num|number|id))?", r"chi" + _NUMBER,
        r"passport" + _NUMBER + "?", r"(?:medical|health|patient|case)_?records?" + _NUMBER + "?",
        r"mrn", r"record" + _NUMBER, r"hospital" + _NUMBER, r"insurance" + _NUMBER,
        r"(?:sozial)?versicherten?_?(?:nummer|nr)", r"(?:sozial)?versicherungs_?(?:nummer|nr)",
        r"driv(?:er|ing)_?licen[cs]e" + _NUMBER + "?", r"tax_?(?:id|code)" + _NUMBER + "?",
    )),
    ("a precise location", (
        r"latitude", r"longitude", r"lat", r"lon", r"lng", r"geo_?location", r"gps",
    )),
)
_NAME_PATTERNS = tuple(
    (label, re.compile(r"(?:^|_)(?:" + "|".join(patterns) + r")(?:_\d+)?$"))
    for label, patterns in _NAME_RULES
)

# --- (b) identifiers recognised by the values ---------------------------------------------------
_EMAIL = r"[^@\s<>()]+@[^@\s<>()]+\.[A-Za-z]{2,}"
_URL = r"(?i)(?:https?://|www\.)\S+"
# A whole value shaped like a telephone number: digits with + ( ) - and spaces. It must also
# have 7-15 digits and a cue (leading + 0 or "(", or separators between digits), and not be a
# date, so plain integers (scores, IDs) and decimals never count.
_PHONE_SHAPE = r"\+?\(?\d[\d\s\-()]*\d"
_PHONE_CUE = r"^[+0(]|\d[\s\-()]+\d"
_DASHED_DATE = r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-\d{2,4}"
_FREE_TEXT_CHARS = 30
_FREE_TEXT_SHARE = 0.2
_FREE_TEXT_UNIQUE = 0.5
_DOB_MIN_YEARS = 10


@dataclass(frozen=True)
class IdentifierFinding:
    """A column that looks like a direct identifier.

    Attributes
    ----------
    column
        The column's name in the data file.
    reason
        Why, in words, with an example row number but never the value itself, e.g.
        ``"37 of 40 values look like e-mail addresses, e.g. row 3"``.
    """

    column: str
    reason: str


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


def _normalise_name(name: object) -> str:
    """Lower-case words joined by ``_``: ``"RecipientFirstName"`` -> ``"recipient_first_name"``.

    CamelCase, letter/digit boundaries and any other separator split words; accents are removed
    and ``ß`` becomes ``ss``.
    """
    text = unicodedata.normalize("NFKD", str(name))
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = re.sub(r"([a-z])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"([A-Za-z])(\d)|(\d)([A-Za-z])", r"\1\3_\2\4", text)
    return re.sub(r"[^a-z0-9]+", "_", text.casefold()).strip("_")


def _name_finding(column: str) -> IdentifierFinding | None:
    name = _normalise_name(column)
    for label, pattern in _NAME_PATTERNS:
        if pattern.search(name):
            return IdentifierFinding(column, f"name looks like {label} column ({column!r})")
    return None


def _row_numbers(frame: pd.DataFrame) -> pd.Series:
    """1-based data row of each row: ``source_row`` when present, else the position + 1."""
    if SOURCE_ROW in frame.columns:
        return pd.Series(frame[SOURCE_ROW].to_numpy(), index=frame.index)
    return pd.Series(np.arange(1, len(frame) + 1), index=frame.index)


def _all_text(values: pd.Series) -> bool:
    """Whether every present cell is text (CSV columns always; Excel columns often)."""
    return pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")


def _text_values(values: pd.Series) -> pd.Series:
    """The non-empty text cells of a column, stripped (numbers and dates are left out)."""
    if _all_text(values):
        is_text = values.notna()
    else:
        is_text = values.map(lambda value: isinstance(value, str)).astype(bool)
    text = values[is_text].astype(str).str.strip()
    return text[text != ""]


def _parse_dates(values: pd.Series, formats: Sequence[str]) -> pd.Series:
    """Calendar dates of a column: date objects as they are, text tried against ``formats``.

    Returns a ``datetime64[us]`` series on the same (unique) index, ``NaT`` where nothing
    parsed. Each distinct text is parsed once.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values).dt.tz_localize(None).astype("datetime64[us]")
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    if not _all_text(values):
        is_date = values.map(lambda value: isinstance(value, (dt.date, np.datetime64)))
        is_date = is_date.astype(bool)
        if is_date.any():
            parsed[is_date] = pd.to_datetime(values[is_date]).astype("datetime64[us]")
    text = _text_values(values)
    codes, distinct = pd.factorize(text)
    dates = pd.Series(pd.NaT, index=range(len(distinct)), dtype="datetime64[us]")
    for fmt in formats:
        todo = dates.isna()
        if not todo.any():
            break
        dates[todo] = pd.to_datetime(pd.Series(distinct)[todo], format=fmt, errors="coerce")
    parsed[text.index] = dates.to_numpy()[codes]
    return parsed


def _share(count: int, total: int) -> str:
    return f"{count} of {total} values"


def _dob_reason(values: pd.Series, rows: pd.Series) -> str | None:
    n_present = int(values.notna().sum())
    dates = _parse_dates(values, _DETECT_DATE_FORMATS).dropna()
    if dates.empty or len(dates) < 0.5 * n_present:
        return None
    years = pd.Timedelta(days=365.25 * _DOB_MIN_YEARS)
    before_latest = dates < dates.max() - years
    before_today = dates < pd.Timestamp.today().normalize() - years
    if before_latest.mean() >= 0.5:
        old, anchor = before_latest, "the column's latest date"
    elif before_today.mean() >= 0.5:
        old, anchor = before_today, "today"
    else:
        return None
    return (f"{_share(len(dates), n_present)} are calendar dates, mostly more than "
            f"{_DOB_MIN_YEARS} years before {anchor}, as dates of birth are, "
            f"e.g. row {rows[old.idxmax()]} (a session-date column belongs in columns.date)")


def _text_reason(text: pd.Series, rows: pd.Series) -> str | None:
    n = len(text)
    codes, distinct = pd.factorize(text)  # each distinct text is checked once
    values = pd.Series(distinct, dtype=object).astype(str)
    checks = (
        (values.str.contains(_EMAIL, regex=True), "contain e-mail addresses"),
        (values.str.contains(_URL, regex=True), "contain web addresses (URLs)"),
        (values.str.fullmatch(_PHONE_SHAPE)
         & values.str.count(r"\d").between(7, 15)
         & values.str.contains(_PHONE_CUE, regex=True)
         & ~values.str.fullmatch(_DASHED_DATE), "look like telephone numbers"),
    )
    for flags, what in checks:
        hits = flags.to_numpy(dtype=bool)[codes]
        if hits.any():
            return f"{_share(int(hits.sum()), n)} {what}, e.g. row {rows[text.index[hits][0]]}"
    long_flags = (values.str.len() > _FREE_TEXT_CHARS) & values.str.contains(r"\s", regex=True)
    long = long_flags.to_numpy(dtype=bool)[codes]
    n_long = int(long.sum())
    if n_long and n_long >= _FREE_TEXT_SHARE * n \
            and int(long_flags.sum()) >= _FREE_TEXT_UNIQUE * n_long:
        return (f"{_share(n_long, n)} are long, mostly unique free text (over "
                f"{_FREE_TEXT_CHARS} characters), which can name people and places, "
                f"e.g. row {rows[text.index[long][0]]}")
    return None


def find_identifiers(frame: pd.DataFrame, skip: Collection[str] = ()) -> list[IdentifierFinding]:
    """Find the columns of a table that look like direct identifiers.

    Each column not in ``skip`` is checked first by its name, then, if the name is
    harmless, by its values; the first reason found is reported, so there is at most one
    finding per column.

    Parameters
    ----------
    frame
        The table as read (see :func:`alliance_analysis.io.read`). Example rows are numbered
        by its ``source_row`` column when present, else by position (1-based).
    skip
        Columns not to check: the mapped client and therapist ID columns (pseudonymised
        later) and the session-date column (turned into days since the first session).

    Returns
    -------
    list of IdentifierFinding
        In column order. Reasons name an example row, never the value.

    Notes
    -----
    *By name.* The name is split into lower-case words (``"RecipientFirstName"`` ->
    ``recipient first name``; case, separators, accents and ``ß`` do not matter) and matched
    against names of direct identifiers that must end the name (optionally followed by a
    number): a person's name or initials, e-mail address, telephone, street address or
    postcode, date of birth, national insurance / NHS / social security / passport / medical
    record / hospital / insurance number, IP address, latitude and longitude; a few German
    names (``Vorname``, ``Geburtsdatum``, ``PLZ``, ...) too. Requiring the identifier to be the
    last word avoids flagging ``email_consent`` or ``nhs_trust``; a bare ``name`` is an
    identifier but ``site_name`` is not. Quasi-identifiers (age band, gender, town, year of
    birth) are left to the researcher.

    *By value*, on text cells:

    - e-mail addresses and URLs (``http://``, ``https://``, ``www.``) anywhere in a cell;
    - whole cells shaped like telephone numbers: 7-15 digits with ``+``, spaces, dashes or
      parentheses and a leading ``+``, ``0`` or ``(`` or separators between digits, so plain
      integers, decimals and dates are not;
    - free text: at least 20% of the cells longer than 30 characters with a space, at
      least half of those distinct;

    and on dates (date-typed cells or text in a common date format) whether at least half
    parse and those are mostly more than 10 years before the column's latest date (birth dates
    span decades; the sessions of a study span a few years) or before today (a sample of
    similar age). An old archive's session dates pass the second test too: map them as
    ``columns.date`` or drop them.

    A single matching cell is enough for e-mail addresses, URLs and telephone numbers: one
    leaked address is one too many.

    References
    ----------
    .. [1] U.S. Department of Health and Human Services (2012). *Guidance regarding methods
       for de-identification of protected health information in accordance with the HIPAA
       Privacy Rule*, section on the Safe Harbor method, 45 CFR 164.514(b)(2).
    .. [2] Information Commissioner's Office (2012). *Anonymisation: managing data protection
       risk code of practice*. Wilmslow: ICO.
    .. [3] Neamatullah, I., Douglass, M. M., Lehman, L. H., et al. (2008). Automated
       de-identification of free-text medical records. *BMC Medical Informatics and Decision
       Making*, 8, 32. https://doi.org/10.1186/1472-6947-8-32

    Examples
    --------
    >>> frame = pd.DataFrame({"client_id": ["a1"], "Email": [None], "wai_1": ["4"]})
    >>> find_identifiers(frame, skip=["client_id"])[0].reason
    "name looks like an e-mail address column ('Email')"
    """
    skipped = set(skip) | {SOURCE_ROW}
    frame = frame.reset_index(drop=True)  # example rows are found by label below
    rows = _row_numbers(frame)
    findings = []
    for column in frame.columns:
        if column in skipped:
            continue
        finding = _name_finding(str(column))
        if finding is None:
            values = frame[column]
            reason = None
            if not pd.api.types.is_numeric_dtype(values):
                text = _text_values(values)
                reason = _text_reason(text, rows) if not text.empty else None
                reason = reason or _dob_reason(values, rows)
            finding = IdentifierFinding(str(column), reason) if reason else None
        if finding is not None:
            findings.append(finding)
    return findings


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
    parsed = _parse_dates(values, SESSION_DATE_FORMATS)
    present = values.notna() & values.map(lambda v: not isinstance(v, str) or v.strip() != "")
    bad = present.astype(bool) & parsed.isna()
    if bad.any():
        rows = _row_numbers(frame).to_numpy()[bad.to_numpy()]
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
