"""Direct identifiers in a data file, found by column name and by content.

:func:`find_identifiers` is the detector behind the anonymisation gate
(:func:`alliance_analysis.data.privacy.gate`): names, e-mail addresses, telephone numbers,
postal addresses, dates of birth, national and health-record numbers, IP addresses, precise
locations, URLs and free text. Messages name the column and an example row, never the value.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from alliance_analysis.data.schema import SOURCE_ROW

#: Formats of calendar session dates understood by :func:`dates_to_days`, tried in this order.
SESSION_DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y")

#: Formats tried when looking for dates of birth: generous, since missing one is the worse error.
_DETECT_DATE_FORMATS = SESSION_DATE_FORMATS + (
    "%m/%d/%Y", "%Y/%m/%d", "%d-%m-%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S",
)


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


def row_numbers(frame: pd.DataFrame) -> pd.Series:
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


def parse_dates(values: pd.Series, formats: Sequence[str]) -> pd.Series:
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
    dates = parse_dates(values, _DETECT_DATE_FORMATS).dropna()
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
        The table as read (see :func:`alliance_analysis.data.io.read`). Example rows are numbered
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
    rows = row_numbers(frame)
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


