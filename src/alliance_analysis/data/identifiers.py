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
    # A format matches only text holding its literal separators (pandas parses an explicit
    # format strictly): text with fewer "-", "." and "/" than every format has (item scores
    # such as "3" or "2.5") is no date, and is not tried against each format.
    needed = min((sum(fmt.count(c) for c in "-./") for fmt in formats), default=0)
    possible = pd.Series(distinct).str.count(r"[-./]").to_numpy() >= needed
    for fmt in formats:
        todo = dates.isna() & possible
        if not todo.any():
            break
        dates[todo] = pd.to_datetime(pd.Series(distinct)[todo], format=fmt, errors="coerce")
    parsed[text.index] = dates.to_numpy()[codes]
    return parsed


#: A short plain number written as text: at most three digits, a decimal point or comma,
#: at most three more (item scores, totals, counts, as a CSV file holds them).
_SHORT_NUMBER = re.compile(r"[+-]?\d{1,3}(?:[.,]\d{1,3})?")


def _short_numbers(values: pd.Series, text: pd.Series) -> bool:
    """Whether every present cell of a column is text holding a short plain number.

    No check by value can match such a column, so it is not checked (most columns of a
    session table, each otherwise parsed against every identifier and date format): the
    national identifiers have letters or at least eight digits, telephone numbers seven
    digits or more, e-mail addresses and URLs letters, the date formats two separators and
    free text over thirty characters.
    """
    return _all_text(values) and all(_SHORT_NUMBER.fullmatch(value)
                                     for value in text.unique())


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


# --- (c) national identifiers by their shape and check digits ---------------------------------
_UK_NINO = re.compile(r"(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                      r"\d{6}[A-D]")
_US_SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")
_IBAN = re.compile(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}")


def _compact(value: str) -> str:
    return re.sub(r"[\s.\-/]", "", value).upper()


def uk_nino(value: str) -> bool:
    """A UK National Insurance number (HMRC's prefix rules: two letters, six digits, A-D)."""
    return bool(_UK_NINO.fullmatch(_compact(value)))


def us_ssn(value: str) -> bool:
    """A US Social Security number written ``ddd-dd-dddd`` (no 000, 666 or 9xx area)."""
    return bool(_US_SSN.fullmatch(value.strip()))


def iban(value: str) -> bool:
    """An IBAN with a valid ISO 13616 check (mod 97 = 1)."""
    compact = _compact(value)
    if not _IBAN.fullmatch(compact):
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def nhs_number(value: str) -> bool:
    """An NHS number: ten digits whose last is the modulus-11 check of the first nine."""
    digits = _compact(value)
    if not re.fullmatch(r"\d{10}", digits):
        return False
    check = 11 - sum(int(d) * w for d, w in zip(digits[:9], range(10, 1, -1))) % 11
    return (0 if check == 11 else check) == int(digits[9]) and check != 10


def german_tax_id(value: str) -> bool:
    """A German tax identification number (Steuer-ID): 11 digits, ISO 7064 MOD 11,10 check."""
    digits = _compact(value)
    if not re.fullmatch(r"[1-9]\d{10}", digits):
        return False
    product = 10
    for d in digits[:10]:
        total = (int(d) + product) % 10 or 10
        product = (2 * total) % 11
    return (11 - product) % 10 == int(digits[10])


def german_insurance_number(value: str) -> bool:
    """A German health-insurance number (KVNR): a letter, nine digits, the last a check digit
    of the letter's number (A = 01) and the first eight digits, weights 1, 2 alternating."""
    compact = _compact(value)
    if not re.fullmatch(r"[A-Z]\d{9}", compact):
        return False
    numbers = f"{ord(compact[0]) - 64:02d}" + compact[1:9]
    total = 0
    for i, d in enumerate(numbers):
        product = int(d) * (1 if i % 2 == 0 else 2)
        total += product // 10 + product % 10
    return total % 10 == int(compact[9])


#: (check, what a hit means); a column is refused when a hit is found, and for the number-only
#: shapes (NHS, Steuer-ID) when most values with the shape pass the check digit (random digit
#: strings pass about 1 time in 10).
NATIONAL_IDENTIFIERS = (
    (uk_nino, "look like UK National Insurance numbers", False),
    (us_ssn, "look like US Social Security numbers", False),
    (iban, "are IBANs (bank account numbers)", False),
    (german_insurance_number, "look like German health-insurance numbers (KVNR)", False),
    (nhs_number, "look like NHS numbers (check digit valid)", True),
    (german_tax_id, "look like German tax identification numbers (check digit valid)", True),
)


def _national_reason(values: pd.Series, codes: np.ndarray, rows: pd.Series,
                     text: pd.Series) -> str | None:
    n = len(text)
    for check, what, by_share in NATIONAL_IDENTIFIERS:
        flags = values.map(check).to_numpy(dtype=bool)
        hits = flags[codes]
        if not hits.any():
            continue
        if by_share:
            shaped = values.map(lambda v: bool(re.fullmatch(r"\d{10,11}", _compact(v))))
            shaped = shaped.to_numpy(dtype=bool)[codes]
            if hits.sum() < 0.8 * shaped.sum() or shaped.sum() < 0.5 * n:
                continue
        return f"{_share(int(hits.sum()), n)} {what}, e.g. row {rows[text.index[hits][0]]}"
    return None


def _text_reason(text: pd.Series, rows: pd.Series) -> str | None:
    n = len(text)
    codes, distinct = pd.factorize(text)  # each distinct text is checked once
    values = pd.Series(distinct, dtype=object).astype(str)
    national = _national_reason(values, codes, rows, text)
    if national:
        return national
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
                if _short_numbers(values, text):  # no check by value can match
                    continue
                reason = _text_reason(text, rows) if not text.empty else None
                reason = reason or _dob_reason(values, rows)
            finding = IdentifierFinding(str(column), reason) if reason else None
        if finding is not None:
            findings.append(finding)
    return findings


