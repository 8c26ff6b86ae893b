"""The anonymisation gate: identifiers are found by name and content, never echoed, and
stopped unless dropped or allowed; pseudonyms, days and small-cell suppression."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from alliance_analysis.data import privacy
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.options import PrivacyOptions
from alliance_analysis.data.privacy import (dates_to_days, gate, load_or_create_key, pseudonymise,
                                            suppress_small_cells)
from alliance_analysis.data.identifiers import find_identifiers

KEY = bytes(range(32))

IDENTIFIER_NAMES = [
    "name", "Name", "NAMES", "first_name", "FirstName", "first name", "lastName", "LAST-NAME",
    "full_name", "Surname", "sur_name", "forename", "given_name", "client_name", "patient name",
    "therapist_name", "username", "RecipientFirstName", "RecipientLastName", "NameFirst",
    "initials", "client_initials", "surname_initial", "first_initial",
    "email", "Email", "e-mail", "E_Mail_Address", "emailAddress", "RecipientEmail", "email_2",
    "phone", "Phone Number", "telephone", "tel", "Tel.", "tel_no", "mobile", "mobile_no",
    "home_phone", "cell_number", "fax",
    "address", "Street Address", "home_address", "address_line_1", "street", "postcode",
    "Post Code", "zip", "ZIP code", "ZIPCode", "postal_code",
    "DOB", "d.o.b.", "date_of_birth", "DateOfBirth", "birth date", "birthday", "client_dob",
    "ni_number", "National Insurance No", "national_insurance", "NHS number", "NHSNumber",
    "nhs_no", "nhs", "SSN", "social_security_number", "passport_no", "passport",
    "medical_record_number", "MRN", "record_number", "hospital_number", "insurance_number",
    "health_insurance_no", "IPAddress", "ip_address", "LocationLatitude", "LocationLongitude",
    "Vorname", "Nachname", "Geburtsdatum", "Straße", "PLZ", "Telefon",
]

DEMO_NAMES = [
    "therapist_id", "client_id", "session", "day", "age_band", "gender", "arm",
    *(f"wai_{n}" for n in range(1, 13)), *(f"wai_t_{n}" for n in range(1, 13)),
    *(f"phq9_{n}" for n in range(1, 10)), *(f"gad7_{n}" for n in range(1, 8)),
]
OTHER_HARMLESS_NAMES = [
    "source_row", "age", "site", "site_name", "clinic_name", "instrument_name", "filename",
    "city", "country", "date", "session_date", "birth_year", "year_of_birth", "diagnosis",
    "record_id", "chi_square", "nhs_trust", "social_security_benefits", "mobile_app_use",
    "email_consent", "phone_call_count", "initial_severity", "telehealth", "latency",
    "postcode_district", "hospital_site", "insurance", "ethnicity", "education", "medication",
    "therapist_gender", "condition", "wai_total", "phq9_total", "dropout", "notes_present",
]


def _one_empty_column(name: str) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([None, None], dtype=object)})


@pytest.mark.parametrize("name", IDENTIFIER_NAMES)
def test_identifier_names_are_found(name: str) -> None:
    findings = find_identifiers(_one_empty_column(name))
    assert [finding.column for finding in findings] == [name]
    assert findings[0].reason.startswith("name looks like")
    assert repr(name) in findings[0].reason


@pytest.mark.parametrize("name", DEMO_NAMES + OTHER_HARMLESS_NAMES)
def test_harmless_names_are_not_flagged(name: str) -> None:
    assert find_identifiers(_one_empty_column(name)) == []


def test_name_reason_says_what_kind() -> None:
    (finding,) = find_identifiers(_one_empty_column("Email"))
    assert finding.reason == "name looks like an e-mail address column ('Email')"


def test_demo_table_passes_untouched() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({name: rng.integers(1, 8, 20).astype(str) for name in DEMO_NAMES})
    frame["age_band"] = rng.choice(["18-25", "26-40", "41-65"], 20)
    frame["gender"] = rng.choice(["female", "male", "non-binary"], 20)
    frame.insert(0, "source_row", range(1, 21))
    assert find_identifiers(frame, skip=["client_id", "therapist_id"]) == []


# --- content -------------------------------------------------------------------------------------

def _frame(values: list[object], column: str = "x7") -> pd.DataFrame:
    """A table as io.read returns it: text cells, a source_row column, a harmless name."""
    return pd.DataFrame({"source_row": range(1, len(values) + 1),
                         column: pd.Series(values, dtype=object)})


def _only_reason(frame: pd.DataFrame, column: str = "x7") -> str:
    findings = find_identifiers(frame)
    assert [finding.column for finding in findings] == [column]
    return findings[0].reason


SECRET_EMAIL = "jane.doe@example.org"
SECRET_PHONE = "+44 7700 900123"


def test_emails_found_by_content_without_showing_them() -> None:
    reason = _only_reason(_frame(["n/a", None, SECRET_EMAIL, "write to j.x@mail.co.uk"]))
    assert "2 of 3 values contain e-mail addresses" in reason and "e.g. row 3" in reason
    assert SECRET_EMAIL not in reason and "mail.co.uk" not in reason


@pytest.mark.parametrize("phone", [SECRET_PHONE, "(020) 7946 0958", "07700900123",
                                   "0049-30-1234567", "+41791234567"])
def test_phone_numbers_found_by_content(phone: str) -> None:
    reason = _only_reason(_frame(["3", phone, "4"]))
    assert "1 of 3 values look like telephone numbers, e.g. row 2" in reason
    assert phone not in reason


@pytest.mark.parametrize("values", [
    ["1", "2", "7", "12"], ["3.5", "2.25", "12345678.5"], ["12345678", "98765432"],
    ["2024-01-15", "15-01-2024"], ["-1", "0", "1"], ["18-25", "26-40"],
])
def test_numbers_and_dates_are_not_phone_numbers(values: list[str]) -> None:
    assert find_identifiers(_frame(values)) == []


def test_urls_found_by_content() -> None:
    reason = _only_reason(_frame(["see https://social.example/jane", "none", "www.x.org/a"]))
    assert "2 of 3 values contain web addresses (URLs), e.g. row 1" in reason
    assert "social.example" not in reason


def test_free_text_found_by_content() -> None:
    notes = [f"Client {i} spoke about the argument with her sister at work" for i in range(5)]
    reason = _only_reason(_frame(["ok"] * 10 + notes))
    assert "5 of 15 values are long, mostly unique free text" in reason
    assert "e.g. row 11" in reason and "sister" not in reason


def test_repeated_long_labels_are_not_free_text() -> None:
    label = "Cognitive behavioural therapy, individual, weekly"
    assert find_identifiers(_frame([label] * 20)) == []


def _years_ago(years: float, days: int = 0) -> pd.Timestamp:
    return pd.Timestamp.today().normalize() - pd.Timedelta(days=round(365.25 * years) + days)


def test_dates_of_birth_found_by_content_in_mixed_formats() -> None:
    births = [_years_ago(age) for age in (24, 37, 52, 68, 45, 31)]
    texts = [births[0].strftime("%Y-%m-%d"), births[1].strftime("%d.%m.%Y"),
             births[2].strftime("%d/%m/%Y"), None, *(b.strftime("%Y-%m-%d") for b in births[3:])]
    reason = _only_reason(_frame(texts))
    assert "6 of 6 values are calendar dates" in reason and "dates of birth" in reason
    assert all(text not in reason for text in texts if text)


def test_dates_of_birth_of_a_similar_age_found_against_today() -> None:
    texts = [_years_ago(19, days=40 * i).strftime("%d.%m.%Y") for i in range(10)]
    assert "before today" in _only_reason(_frame(texts))


def test_date_typed_birth_dates_found() -> None:
    frame = pd.DataFrame({"x7": pd.to_datetime(["1950-03-01", "1971-07-12", "1990-11-30"])})
    assert "dates of birth" in _only_reason(frame)


def test_recent_session_dates_are_not_dates_of_birth() -> None:
    texts = [_years_ago(1, days=-7 * i).strftime("%Y-%m-%d") for i in range(30)]
    assert find_identifiers(_frame(texts)) == []


def test_skipped_columns_are_not_checked() -> None:
    frame = pd.DataFrame({"email": [SECRET_EMAIL], "visit": ["01.02.1960"], "z": ["1"]})
    assert find_identifiers(frame, skip=["email", "visit"]) == []


def test_example_rows_follow_source_row() -> None:
    frame = _frame([None, SECRET_EMAIL]).assign(source_row=[41, 42])
    assert "e.g. row 42" in _only_reason(frame)


# --- the gate ------------------------------------------------------------------------------------

@pytest.fixture
def raw() -> pd.DataFrame:
    return pd.DataFrame({
        "source_row": [1, 2, 3],
        "client_id": ["a", "b", "c"],
        "Email": [SECRET_EMAIL, None, "x@y.org"],
        "contact": ["none", SECRET_PHONE, "none"],
        "wai_1": ["3", "4", "5"],
    })


def test_gate_drops_listed_columns(raw: pd.DataFrame) -> None:
    result = gate(raw, PrivacyOptions(drop=("Email", "contact")), ["client_id"], "s.csv")
    assert list(result.frame.columns) == ["source_row", "client_id", "wai_1"]
    assert result.dropped == ("Email", "contact") and result.findings == ()
    assert "Email" in raw.columns  # the input is not changed


def test_gate_lets_allowed_columns_through_and_reports_them(raw: pd.DataFrame) -> None:
    options = PrivacyOptions(drop=("Email",), allow={"contact": "clinic switchboard number"})
    result = gate(raw, options, ["client_id"], "s.csv")
    assert "contact" in result.frame.columns
    assert result.allowed == {"contact": "clinic switchboard number"}
    assert [finding.column for finding in result.findings] == ["contact"]


def _pasted_block(message: str) -> str:
    lines = message.splitlines()
    start = lines.index("privacy:")
    end = lines.index("", start)
    return "\n".join(lines[start:end])


def test_gate_refuses_identifiers_naming_file_columns_reasons_and_fix(raw: pd.DataFrame) -> None:
    with pytest.raises(AllianceDataError) as err:
        gate(raw, PrivacyOptions(), ["client_id"], "data/sessions.csv")
    message = str(err.value)
    assert message.startswith("data/sessions.csv: 2 column(s) look like direct identifiers")
    assert "'Email': name looks like an e-mail address column" in message
    assert "'contact': 1 of 3 values look like telephone numbers, e.g. row 2" in message
    assert SECRET_EMAIL not in message and SECRET_PHONE not in message
    block = _pasted_block(message)
    pasted = PrivacyOptions.model_validate(yaml.safe_load(block)["privacy"])
    assert pasted.drop == ("Email", "contact") and pasted.allow == {}
    assert gate(raw, pasted, ["client_id"], "s.csv").dropped == ("Email", "contact")
    # Allowing instead: uncomment the column's line, write the reason, take it out of drop.
    edited = [line.replace("# ", "", 1) if "allow:" in line or '"contact"' in line else line
              for line in block.splitlines() if line != '  - "contact"']
    edited_yaml = "\n".join(edited).replace("<why this column identifies no one>", "clinic")
    options = PrivacyOptions.model_validate(yaml.safe_load(edited_yaml)["privacy"])
    assert gate(raw, options, ["client_id"], "s.csv").allowed == {"contact": "clinic"}


def test_gate_hint_keeps_existing_drop_and_allow(raw: pd.DataFrame) -> None:
    options = PrivacyOptions(drop=("Email",), allow={"wai_1": "an item"})
    with pytest.raises(AllianceDataError) as err:
        gate(raw, options, ["client_id"], "s.csv")
    pasted = yaml.safe_load(_pasted_block(str(err.value)))["privacy"]
    assert pasted == {"drop": ["Email", "contact"], "allow": {"wai_1": "an item"}}


@pytest.mark.parametrize(("options", "expected"), [
    (PrivacyOptions(drop=("E-mail",)), "privacy.drop lists column(s) not in the file: ['E-mail']"),
    (PrivacyOptions(drop=("Email", "contact"), allow={"phone": "x"}),
     "privacy.allow lists column(s) not in the file: ['phone']"),
    (PrivacyOptions(drop=("Email", "contact"), allow={"contact": "x"}), "both privacy.drop"),
    (PrivacyOptions(drop=("Email",), allow={"contact": " "}), "gives no reason"),
])
def test_gate_rejects_inconsistent_options(raw: pd.DataFrame, options: PrivacyOptions,
                                           expected: str) -> None:
    with pytest.raises(AllianceDataError) as err:
        gate(raw, options, ["client_id"], "s.csv")
    assert str(err.value).startswith("s.csv: ") and expected in str(err.value)
    if "not in the file" in expected:
        assert "['client_id', 'Email', 'contact', 'wai_1']" in str(err.value)


# --- pseudonyms and the key ----------------------------------------------------------------------

def test_pseudonyms_are_stable_keyed_and_keep_missing() -> None:
    values = pd.Series(["A1", None, "B2", "A1", np.nan], name="client_id")
    codes = pseudonymise(values, KEY, "C-")
    assert codes[0] == codes[3] != codes[2]
    assert codes[[1, 4]].isna().all() and codes.name == "client_id"
    assert all(len(code) == 12 and code.startswith("C-") for code in codes.dropna())
    assert codes.equals(pseudonymise(values, KEY, "C-"))
    other = pseudonymise(values, bytes(32), "C-")
    assert (other.dropna() != codes.dropna()).all()


def test_pseudonym_matches_the_documented_hmac() -> None:
    import hashlib
    import hmac

    expected = "T-" + hmac.new(KEY, b"7", hashlib.sha256).hexdigest()[:10]
    codes = pseudonymise(pd.Series([7, 7.0, "7"]), KEY, "T-")
    assert codes.tolist() == [expected] * 3


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=30, unique=True))
def test_pseudonyms_are_injective(values: list[str]) -> None:
    codes = pseudonymise(pd.Series(values, dtype=object), KEY, "C-")
    assert codes.nunique() == len(values)


def test_pseudonym_collision_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(privacy, "_code", lambda key, text: "0" * 10)
    with pytest.raises(AllianceDataError, match="two different values get the same pseudonym"):
        pseudonymise(pd.Series(["a", "b"], name="client_id"), KEY, "C-")


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "processed" / "demo" / "pseudonym.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and path.read_text().strip() == key.hex()
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == key
    assert load_or_create_key(tmp_path / "other.key") != key


@pytest.mark.parametrize(("content", "expected"), [
    ("not hex at all\n", "does not hold a hexadecimal key"),
    ("abcd\n", "the pseudonym key is 2 bytes"),
    ("", "the pseudonym key is 0 bytes"),
])
def test_malformed_key_file_is_an_error(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "pseudonym.key"
    path.write_text(content)
    with pytest.raises(AllianceDataError, match=expected) as err:
        load_or_create_key(path)
    assert str(path) in str(err.value)


def test_unreadable_key_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AllianceDataError, match="cannot read the pseudonym key file"):
        load_or_create_key(tmp_path)  # a folder, not a file


# --- dates to days -------------------------------------------------------------------------------

def test_dates_to_days_in_mixed_formats() -> None:
    frame = pd.DataFrame({
        "source_row": [1, 2, 3, 4, 5, 6],
        "client": ["a", "a", "a", "b", "b", "b"],
        "date": ["2024-01-05", "12.01.2024", "02/02/2024", " 2024-03-01", None, "1.3.2024"],
    }, index=[10, 11, 12, 20, 21, 22])
    days = dates_to_days(frame, "client", "date", "s.csv")
    assert days.dtype == "Int64" and days.name == "day"
    assert list(days.index) == [10, 11, 12, 20, 21, 22]
    assert days.tolist() == [0, 7, 28, 0, pd.NA, 0]


def test_dates_to_days_accepts_date_cells() -> None:
    frame = pd.DataFrame({"client": ["a", "a"],
                          "date": pd.Series([pd.Timestamp("2024-05-01"), "2024-05-15"],
                                            dtype=object)})
    assert dates_to_days(frame, "client", "date", "s.xlsx").tolist() == [0, 14]


def test_unparseable_date_names_row_column_and_value() -> None:
    frame = pd.DataFrame({"source_row": [7, 8, 9], "client": ["a", "a", "a"],
                          "visit": ["2024-01-05", "31.02.2024", "next week"]})
    with pytest.raises(AllianceDataError) as err:
        dates_to_days(frame, "client", "visit", "s.csv")
    message = str(err.value)
    assert message.startswith("s.csv: column 'visit' has 2 value(s) that are not calendar dates")
    assert "row 8: '31.02.2024'" in message and "row 9: 'next week'" in message


def test_dates_to_days_missing_column() -> None:
    with pytest.raises(AllianceDataError, match=r"column\(s\) \['date'\] not found"):
        dates_to_days(pd.DataFrame({"client": ["a"]}), "client", "date", "s.csv")


# --- small cells ---------------------------------------------------------------------------------

def test_primary_and_secondary_suppression() -> None:
    table = pd.DataFrame({
        "gender": ["female", "male", "non-binary", "not stated"],
        "cbt": [30, 12, 2, 7],    # one small cell: the next smallest (7) is hidden too
        "wait": [25, 0, 3, 1],    # two small cells: no secondary; zero stays 0
        "pct": [50.0, 20.0, 3.3, 11.7],
    })
    out = suppress_small_cells(table, ["cbt", "wait"], k=5)
    assert out["cbt"].tolist() == [30, 12, "<5", "[c]"]
    assert out["wait"].tolist() == [25, 0, "<5", "<5"]
    assert out["cbt"].dtype == object and out["pct"].equals(table["pct"])
    assert table["cbt"].tolist() == [30, 12, 2, 7]  # a copy


def test_suppression_threshold_and_missing_counts() -> None:
    table = pd.DataFrame({"n": [12.0, np.nan, 4.0, 10.0, 11.0]})
    out = suppress_small_cells(table, ["n"], k=10)["n"]
    assert pd.isna(out[1]) and out.drop(1).tolist() == [12, "<10", "[c]", 11]
    assert suppress_small_cells(table, ["n"], k=1)["n"].drop(1).tolist() == [12, 4, 10, 11]


def test_lone_small_count_with_no_other_cell_stays_primary_only() -> None:
    table = pd.DataFrame({"n": [0, 3, 0]})
    assert suppress_small_cells(table, ["n"])["n"].tolist() == [0, "<5", 0]


@pytest.mark.parametrize("bad", [[1.5, 2], [-1, 3], ["a", 3]])
def test_suppression_rejects_non_counts(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="whole counts"):
        suppress_small_cells(pd.DataFrame({"n": bad}), ["n"])


@pytest.mark.parametrize("values, what", [
    (["GZ988598A", "AB123456C", None], "UK National Insurance"),
    (["123-45-6789", "234-56-7890"], "US Social Security"),
    (["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32"], "IBAN"),
    (["943 476 5919", "401 023 2137"], "NHS numbers"),
    (["86095742719", "47036892816"], "German tax identification"),
    (["A123456780", "A123456780"], "German health-insurance"),
])
def test_national_identifiers_are_caught_by_content(values: list, what: str) -> None:
    frame = pd.DataFrame({"client_id": ["a", "b", "c"][:len(values)], "covariate": values})
    findings = find_identifiers(frame, skip=["client_id"])
    assert [f.column for f in findings] == ["covariate"]
    assert what in findings[0].reason


@pytest.mark.parametrize("values", [
    ["1234567890", "2345678901", "3456789012", "4567890123"],  # digits failing the checks
    ["AB12", "XY99"], ["10", "12"], ["CBT", "PDT"],
])
def test_look_alikes_pass(values: list) -> None:
    frame = pd.DataFrame({"code": values})
    assert find_identifiers(frame) == []


def test_columns_of_short_numbers_are_not_checked_by_value_but_others_are() -> None:
    """A column whose text cells are all short plain numbers (item scores) cannot hold an
    identifier by value and is skipped; one identifier among such numbers is still found."""
    from alliance_analysis.data.identifiers import _short_numbers, find_identifiers

    def column(*values: object) -> pd.Series:
        return pd.Series(values, dtype="str")

    scores = column("3", "2.5", "-1,25", "100", None, " 4 ")
    assert _short_numbers(scores, scores.dropna().str.strip())
    for cells in (("3", "07123 456789"), ("3", "a@b.de"), ("3", "1.1.1990"),
                  ("3", "1234567"), ("3", "4" * 31)):
        values = column(*cells)
        assert not _short_numbers(values, values)
    frame = pd.DataFrame({"item": column(*["3"] * 20, "someone@example.org")})
    assert [f.column for f in find_identifiers(frame)] == ["item"]
    assert find_identifiers(pd.DataFrame({"item": column(*["3", "2.5"] * 10)})) == []
