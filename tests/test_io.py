"""Reading session files (CSV, Excel, SPSS, Stata, Parquet), mapping the researcher's columns,
and the data errors of issue 3, each checked for a message that names the file and says what to
do. Every file is written here, in ``tmp_path``; the whole module runs in a few seconds."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from alliance_analysis.data import io, mapping
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.params import RunParams, parse_params
from alliance_analysis.data.prepare import prepare

WAI = get_instrument("wai")
PHQ9 = get_instrument("phq9")

HEADER = ["client_id", "therapist_id", "session", "site"]
ROWS = [["003", "T1", "1", "Zürich"], ["003", "T1", "2", "Zürich"], ["010", "T2", "1", "Bern"]]


def write_text_table(path: Path, rows: list[list[str]], delimiter: str = ",",
                     encoding: str = "utf-8") -> Path:
    """Write a header + rows as delimited text in ``encoding`` (no quoting needed here)."""
    text = "".join(delimiter.join(row) + "\n" for row in rows)
    path.write_bytes(text.encode(encoding))
    return path


def session_rows(clients: int = 2, sessions: int = 2) -> pd.DataFrame:
    """A tiny, valid session table as text: IDs, session, day, 12 WAI and 9 PHQ-9 items."""
    records = []
    for c in range(1, clients + 1):
        for s in range(1, sessions + 1):
            record = {"client_id": f"{c:03d}", "therapist_id": f"T{1 + c % 2}", "session": str(s),
                      "day": str(7 * (s - 1))}
            record |= {item: str(1 + (c + s + i) % 5) for i, item in enumerate(WAI.items())}
            record |= {item: str((c + s + i) % 4) for i, item in enumerate(PHQ9.items())}
            records.append(record)
    return pd.DataFrame(records, dtype=object)


def params_for(tmp_path: Path, data: Path, reading: dict | None = None,
               **extra: object) -> RunParams:
    """Parameters of a run on ``data`` (with ``reading``: more ``data:`` keys), WAI + PHQ-9."""
    raw = {"name": "t", "data": {"path": str(data), **(reading or {})},
           "instruments": ["wai", "phq9"],
           "alliance": "wai", "symptoms": "phq9", **extra}
    return parse_params(raw, base_dir=tmp_path)


def leftovers(folder: Path) -> list[str]:
    """Files in the processed folder other than the pseudonym key."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name != "pseudonym.key")


def data_error(match: str | None = None, **kwargs):
    return pytest.raises(AllianceDataError, match=match, **kwargs)


# --------------------------------------------------------------------------------------------
# CSV


@pytest.mark.parametrize("delimiter", [",", ";", "\t"], ids=["comma", "semicolon", "tab"])
def test_csv_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS], delimiter)
    raw = io.read(path)
    assert raw.format == "csv"
    assert list(raw.frame.columns) == ["source_row", *HEADER]
    assert raw.frame[HEADER].values.tolist() == ROWS


def test_csv_declared_delimiter_is_used(tmp_path: Path) -> None:
    # Commas inside the values would mislead detection; the declared ";" wins.
    path = write_text_table(tmp_path / "s.csv", [["client_id", "x"], ["a,b", "1,5"]], ";")
    raw = io.read(path, delimiter=";")
    assert raw.frame[["client_id", "x"]].values.tolist() == [["a,b", "1,5"]]


def test_semicolon_file_with_decimal_commas_is_detected(tmp_path: Path) -> None:
    rows = [["client_id", "x", "y"], ["1", "2,5", "3,5"], ["2", "1,0", "4,5"]]
    raw = io.read(write_text_table(tmp_path / "s.csv", rows, ";"))
    assert raw.frame["x"].tolist() == ["2,5", "1,0"]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "utf-16"])
def test_csv_encoding_is_detected(tmp_path: Path, encoding: str) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS], encoding=encoding)
    if encoding == "utf-8-sig":
        assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    raw = io.read(path)
    assert list(raw.frame.columns)[1] == "client_id"  # no BOM on the first name
    assert raw.frame["site"].tolist() == ["Zürich", "Zürich", "Bern"]


@pytest.mark.parametrize(("written", "declared"),
                         [("latin-1", "latin-1"), ("cp1252", "cp1252"), ("utf-8-sig", "utf-8")])
def test_csv_declared_encoding_is_used(tmp_path: Path, written: str, declared: str) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS], encoding=written)
    raw = io.read(path, encoding=declared)
    assert list(raw.frame.columns)[1] == "client_id"
    assert raw.frame["site"].iloc[0] == "Zürich"


def test_wrong_declared_encoding_names_file_byte_and_line(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS], encoding="latin-1")
    offset = path.read_bytes().index("ü".encode("latin-1"))
    with data_error() as caught:
        io.read(path, encoding="utf-8")
    message = str(caught.value)
    assert str(path) in message
    assert f"byte {offset}" in message and r"b'\xfc'" in message
    assert "line 2 of the file" in message
    assert "data.encoding" in message


def test_unknown_encoding_name(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS])
    with data_error(r"unknown encoding 'klingon'.*data\.encoding"):
        io.read(path, encoding="klingon")


def test_csv_cells_stay_text(tmp_path: Path) -> None:
    rows = [["client_id", "session", "wai_1", "note"],
            ["003", "01", "1.50", "NA"],
            ["0042", "2", "", " 7 "]]
    raw = io.read(write_text_table(tmp_path / "s.csv", rows))
    frame = raw.frame
    assert frame["client_id"].tolist() == ["003", "0042"]
    assert frame["session"].tolist() == ["01", "2"]
    assert frame.loc[0, "wai_1"] == "1.50" and pd.isna(frame.loc[1, "wai_1"])
    assert frame["note"].tolist() == ["NA", " 7 "]  # only empty cells are missing
    for column in ("client_id", "session", "wai_1", "note"):
        assert not pd.api.types.is_numeric_dtype(frame[column])


def test_source_row_numbers_data_rows_from_one(tmp_path: Path) -> None:
    rows = [HEADER, *ROWS, *ROWS]
    raw = io.read(write_text_table(tmp_path / "s.csv", rows))
    assert raw.frame["source_row"].tolist() == list(range(1, 7))
    assert raw.frame.index.tolist() == list(range(6))


def test_source_row_matches_the_file_line_despite_blank_lines(tmp_path: Path) -> None:
    # Line n + 1 of the file is source_row n: a blank line in the middle keeps its number
    # (as an empty row, for the ledger); blank lines before the header and at the end do not.
    path = tmp_path / "s.csv"
    path.write_text("\n\nclient_id,session\nA,1\n\nB,2\n,\n\n", encoding="utf-8")
    frame = io.read(path).frame
    assert frame["source_row"].tolist() == [1, 2, 3]
    assert frame["client_id"].tolist()[::2] == ["A", "B"]
    assert frame.iloc[1][["client_id", "session"]].isna().all()


def test_empty_header_cell_gets_a_name(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("client_id,,session,\nA,x,1,\n", encoding="utf-8")
    assert list(io.read(path).frame.columns) == [
        "source_row", "client_id", "Unnamed: 1", "session", "Unnamed: 3"]


def test_quoted_delimiters_and_line_breaks(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text('client_id,note\nA,"a, b"\nB,"two\nlines"\n', encoding="utf-8")
    assert io.read(path).frame["note"].tolist() == ["a, b", "two\nlines"]


def test_sha256_is_of_the_file_bytes(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS], encoding="utf-8-sig")
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert io.read(path).sha256 == expected
    assert io.file_sha256(path) == expected


def _write_every_format(folder: Path) -> list[Path]:
    frame = pd.DataFrame({"client_id": ["003", "010"], "session": [1.0, 2.0]})
    paths = [write_text_table(folder / "s.csv", [HEADER, *ROWS], ";", "latin-1"),
             folder / "s.xlsx", folder / "s.sav", folder / "s.dta", folder / "s.parquet"]
    frame.to_excel(paths[1], index=False)
    pyreadstat.write_sav(frame, str(paths[2]))
    pyreadstat.write_dta(frame, str(paths[3]))
    frame.to_parquet(paths[4])
    return paths


def test_reading_leaves_every_file_unchanged(tmp_path: Path) -> None:
    for path in _write_every_format(tmp_path):
        past = 1_600_000_000_000_000_000  # a fixed mtime, so a rewrite would show
        os.utime(path, ns=(past, past))
        before = path.read_bytes()
        raw = io.read(path)
        assert path.read_bytes() == before, path.name
        assert path.stat().st_mtime_ns == past, path.name
        assert raw.sha256 == hashlib.sha256(before).hexdigest(), path.name


def test_read_source_uses_the_data_parameters(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "s.dat", [HEADER, *ROWS], "\t", "latin-1")
    params = parse_params({"name": "t", "data": {"path": "s.dat", "format": "csv",
                                                  "delimiter": "\t", "encoding": "latin-1"}},
                          base_dir=tmp_path)
    raw = io.read_source(params.data)
    assert raw.path == path and raw.frame["site"].iloc[0] == "Zürich"


# --------------------------------------------------------------------------------------------
# Excel


@pytest.fixture
def workbook(tmp_path: Path) -> Path:
    path = tmp_path / "s.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as writer:
        pd.DataFrame({"notes": ["cover sheet"]}).to_excel(writer, sheet_name="README",
                                                          index=False)
        pd.DataFrame({"client_id": ["003", "NA"], "session": [1, 2], "wai_1": [4, None],
                      2024: ["a", "b"]}).to_excel(writer, sheet_name="sessions", index=False)
    return path


@pytest.mark.parametrize("sheet", ["sessions", 1])
def test_excel_sheet_by_name_or_index(workbook: Path, sheet: str | int) -> None:
    raw = io.read(workbook, sheet=sheet)
    assert raw.format == "xlsx"
    frame = raw.frame
    assert list(frame.columns) == ["source_row", "client_id", "session", "wai_1", "2024"]
    assert frame["client_id"].tolist() == ["003", "NA"]  # text kept, "NA" not made missing
    assert frame["session"].tolist() == [1, 2]
    assert frame.loc[0, "wai_1"] == 4 and pd.isna(frame.loc[1, "wai_1"])
    assert frame["source_row"].tolist() == [1, 2]


def test_excel_first_sheet_by_default(workbook: Path) -> None:
    assert list(io.read(workbook).frame.columns) == ["source_row", "notes"]


@pytest.mark.parametrize("sheet", ["Sessions", 2])
def test_excel_missing_sheet_lists_the_sheets(workbook: Path, sheet: str | int) -> None:
    with data_error() as caught:
        io.read(workbook, sheet=sheet)
    message = str(caught.value)
    assert str(workbook) in message and f"no sheet {sheet!r}" in message
    assert "0: 'README', 1: 'sessions'" in message and "data.sheet" in message


def test_excel_blank_row_keeps_row_numbers(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for values in (["client_id", "session"], ["A", 1], [None, None], ["B", 2]):
        sheet.append(values)
    path = tmp_path / "s.xlsx"
    book.save(path)
    frame = io.read(path).frame
    assert frame["source_row"].tolist() == [1, 2, 3]
    assert frame["client_id"].tolist()[::2] == ["A", "B"]


def test_corrupted_excel(tmp_path: Path) -> None:
    path = tmp_path / "s.xlsx"
    path.write_bytes(np.random.default_rng(1).bytes(2000))
    with data_error(r"s\.xlsx: cannot be read as an Excel \.xlsx file.*export it as CSV"):
        io.read(path)


# --------------------------------------------------------------------------------------------
# SPSS, Stata, Parquet


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_labelled_files_keep_value_and_column_labels(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"client_id": ["003", "010", "011"], "session": [1.0, 1.0, 2.0],
                          "gender": [1.0, 2.0, np.nan], "wai_1": [3.0, 5.0, 1.0]})
    path = tmp_path / f"s.{fmt}"
    writer = pyreadstat.write_sav if fmt == "sav" else pyreadstat.write_dta
    writer(frame, str(path),
           column_labels={"client_id": "Client code", "gender": "Gender of client",
                          "wai_1": "WAI-SR item 1", "session": ""},
           variable_value_labels={"gender": {1: "female", 2: "male"}})
    raw = io.read(path)
    assert raw.format == fmt
    assert raw.value_labels == {"gender": {1: "female", 2: "male"}}
    assert raw.column_labels == {"client_id": "Client code", "gender": "Gender of client",
                                 "wai_1": "WAI-SR item 1"}  # no entry for an unlabelled column
    assert raw.frame["client_id"].tolist() == ["003", "010", "011"]  # codes, not labels
    assert raw.frame["gender"].tolist()[:2] == [1.0, 2.0]
    assert pd.isna(raw.frame["gender"].iloc[2])
    assert raw.frame["source_row"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(("suffix", "kind"), [(".sav", "SPSS .sav"), (".dta", "Stata .dta"),
                                              (".parquet", "Parquet")])
def test_corrupted_binary_file(tmp_path: Path, suffix: str, kind: str) -> None:
    path = tmp_path / f"s{suffix}"
    path.write_bytes(np.random.default_rng(2).bytes(4096))
    with data_error() as caught:
        io.read(path)
    message = str(caught.value)
    assert str(path) in message and f"cannot be read as {kind}" in message
    assert "re-export it" in message


def test_parquet_keeps_types(tmp_path: Path) -> None:
    path = tmp_path / "s.parquet"
    pd.DataFrame({"client_id": ["003", "010"], "session": [1, 2],
                  "wai_1": [4.5, None]}).to_parquet(path)
    raw = io.read(path)
    assert raw.format == "parquet"
    assert raw.frame["client_id"].tolist() == ["003", "010"]
    assert raw.frame["session"].tolist() == [1, 2]
    assert raw.frame["wai_1"].iloc[0] == 4.5 and pd.isna(raw.frame["wai_1"].iloc[1])
    assert raw.frame["source_row"].tolist() == [1, 2]


# --------------------------------------------------------------------------------------------
# Reading errors


def test_file_not_found(tmp_path: Path) -> None:
    with data_error(r"missing\.csv: file not found\. Check data\.path"):
        io.read(tmp_path / "missing.csv")


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    with data_error("is a folder, not a file"):
        io.read(tmp_path)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{}", encoding="utf-8")
    with data_error(r"s\.json: cannot tell the file format from the extension '\.json'.*"
                    r"data\.format"):
        io.read(path)


def test_declared_format_overrides_the_extension(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "export.dat", [HEADER, *ROWS])
    assert io.read(path, format="csv").frame.shape == (3, 5)


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"], ids=["zero-bytes", "blank-lines"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(content)
    with data_error(r"s\.csv: the file is empty\. Export the data with a header row"):
        io.read(path)


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(",".join(HEADER) + "\n\n", encoding="utf-8")  # a trailing blank line
    with data_error(r"s\.csv: the file has a header \(4 columns\) but no data rows"):
        io.read(path)


def test_header_only_excel(tmp_path: Path) -> None:
    path = tmp_path / "s.xlsx"
    pd.DataFrame(columns=HEADER).to_excel(path, index=False)
    with data_error(r"s\.xlsx: the file has a header \(4 columns\) but no data rows"):
        io.read(path)


def test_row_with_more_fields_than_the_header(tmp_path: Path) -> None:
    # pandas would take the first column as an index and silently drop it.
    path = tmp_path / "s.csv"
    path.write_text("client_id,session\nA,1,extra\nB,2\n", encoding="utf-8")
    with data_error(r"s\.csv: the rows do not split into the same columns: line 2 of the "
                    r"file has 3 fields but the header has 2.*data\.delimiter"):
        io.read(path)


def test_ragged_row_line_counts_blank_lines_before_the_header(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("\n\nclient_id;session\nA;1\nB;2;3\n", encoding="utf-8")
    with data_error(r"line 5 of the file has 3 fields but the header has 2.*detected "
                    "semicolon"):
        io.read(path)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_repeated_column_name(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"s{suffix}"
    if suffix == ".csv":
        path.write_text("client_id,wai_1,wai_1\nA,1,2\n", encoding="utf-8")
    else:
        import openpyxl

        book = openpyxl.Workbook()
        book.active.append(["client_id", "wai_1", "wai_1"])
        book.active.append(["A", 1, 2])
        book.save(path)
    with data_error(r"names column\(s\) 'wai_1' more than once"):
        io.read(path)


def test_reserved_column_name(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "s.csv", [["source_row", "x"], ["1", "2"]])
    with data_error("reserves for row numbers. Rename it"):
        io.read(path)


def test_binary_file_with_a_csv_extension(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    pd.DataFrame({"a": [1]}).to_parquet(path)
    with data_error(r"s\.csv: the file contains NUL bytes.*set data\.format"):
        io.read(path)


def test_single_column_without_a_delimiter(tmp_path: Path) -> None:
    path = write_text_table(tmp_path / "s.csv", [["client_id"], ["A"]])
    with data_error(r"line 1 \(the header\) has no comma, semicolon or tab.*data\.delimiter"):
        io.read(path)


# --------------------------------------------------------------------------------------------
# Column mapping


def researcher_file(tmp_path: Path) -> Path:
    """Sessions under the researcher's own names: PID, TH, visit, WAI1.., phq_01.., site."""
    frame = session_rows()
    renamed = {"client_id": "PID", "therapist_id": "TH", "session": "visit"}
    renamed |= {f"wai_{n}": f"WAI{n}" for n in range(1, 13)}
    renamed |= {f"phq9_{n}": f"phq_{n:02d}" for n in range(1, 10)}
    frame = frame.rename(columns=renamed).assign(site="Zürich", notes="")
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    return path


RESEARCHER_PARAMS = {"columns": {"client_id": "PID", "therapist_id": "TH", "session": "visit",
                                 "covariates": ["site"]},
                     "items": {"wai": {"pattern": "WAI{n}"}, "phq9": {"pattern": "phq_{n:02d}"}}}


def test_map_researcher_names_by_pattern(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    raw = io.read(path)
    mapped = mapping.map_columns(raw, params_for(tmp_path, path, **RESEARCHER_PARAMS), [WAI, PHQ9])
    expected = ["source_row", "client_id", "therapist_id", "session", "day", "site",
                *WAI.items(), *PHQ9.items()]
    assert list(mapped.frame.columns) == expected
    assert mapped.source_columns["client_id"] == "PID"
    assert mapped.source_columns["session"] == "visit"
    assert mapped.source_columns["wai_12"] == "WAI12"
    assert mapped.source_columns["phq9_9"] == "phq_09"
    assert mapped.unused == ("notes",)
    assert mapped.frame["client_id"].tolist() == raw.frame["PID"].tolist()
    assert mapped.frame["phq9_3"].tolist() == raw.frame["phq_03"].tolist()
    assert mapped.frame["source_row"].tolist() == [1, 2, 3, 4]


def test_map_items_by_list(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    wai_columns = [f"WAI{n}" for n in (2, 1, *range(3, 13))]  # order as given, not sorted
    extra = {**RESEARCHER_PARAMS,
             "items": {"wai": {"columns": wai_columns}, "phq9": {"pattern": "phq_{n:02d}"}}}
    mapped = mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])
    assert mapped.source_columns["wai_1"] == "WAI2" and mapped.source_columns["wai_2"] == "WAI1"


def test_default_names_need_no_mapping(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    session_rows().to_csv(path, index=False)
    mapped = mapping.map_columns(io.read(path), params_for(tmp_path, path), [WAI, PHQ9])
    assert mapped.unused == ()
    assert mapped.source_columns["day"] == "day"


def test_neither_day_nor_date_in_the_file(tmp_path: Path) -> None:
    # The run needs the timing of sessions: the default day column absent and no date mapped
    # is refused before anything is written (it used to fail later with a KeyError).
    path = tmp_path / "s.csv"
    session_rows().drop(columns="day").to_csv(path, index=False)
    with data_error() as caught:
        mapping.map_columns(io.read(path), params_for(tmp_path, path), [WAI, PHQ9])
    message = str(caught.value)
    assert message.startswith(f"{path}: no column 'day' for day (parameter columns.day)")
    assert "columns: {day: <column in the file>}" in message
    assert "columns: {date: <column in the file>}" in message


def test_missing_required_column(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "columns": {"client_id": "client", "therapist_id": "TH",
                                              "session": "visit"}}
    with data_error() as caught:
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])
    message = str(caught.value)
    assert message.startswith(f"{path}: no column 'client' for client_id")
    assert "(parameter columns.client_id)" in message
    assert "The file's columns are: PID, TH, visit, day, WAI1" in message
    assert "columns: {client_id: <column in the file>}" in message


def test_missing_column_suggests_a_near_miss(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "columns": {"client_id": "pid", "therapist_id": "TH",
                                              "session": "visit"}}
    with data_error("Did you mean 'PID'"):
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])


def test_missing_explicit_covariate(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "columns": {**RESEARCHER_PARAMS["columns"],
                                              "covariates": ["site", "age_band"]}}
    with data_error(r"no column 'age_band' for age_band \(parameter columns\.covariates\)"):
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])


def test_missing_items_suggest_the_pattern(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {"columns": RESEARCHER_PARAMS["columns"]}  # items not mapped
    with data_error() as caught:
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])
    message = str(caught.value)
    assert str(path) in message
    assert "(wai) items not found: wai_1, wai_2" in message and "wai_12" in message
    assert "(parameter items.wai (not set))" in message
    assert "set items: {wai: {pattern: 'WAI{n}'}}" in message


def test_missing_items_zero_padded_suggestion(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "items": {"wai": {"pattern": "WAI{n}"}}}
    with data_error(r"as phq_01\.\.\.phq_09: set items: \{phq9: \{pattern: 'phq_\{n:02d\}'\}\}"):
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])


def test_missing_items_show_how_to_map(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "items": {"wai": {"pattern": "W{n}"},
                                            "phq9": {"pattern": "phq_{n:02d}"}}}
    with data_error() as caught:
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])
    message = str(caught.value)
    assert "items not found: W1, W2" in message and "(parameter items.wai)" in message
    assert "pattern: 'WAI{n}'" in message  # the file's WAI1..WAI12 are found and suggested


def test_item_list_of_the_wrong_length(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "items": {"wai": {"columns": ["WAI1", "WAI2"]},
                                            "phq9": {"pattern": "phq_{n:02d}"}}}
    with data_error(r"items\.wai\.columns lists 2 columns but .* has 12 items"):
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])


def test_item_pattern_that_cannot_be_filled(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "items": {"wai": {"pattern": "{scale}{n}"},
                                            "phq9": {"pattern": "phq_{n:02d}"}}}
    with data_error(r"items\.wai\.pattern '\{scale\}\{n\}' cannot be filled in"):
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])


def test_column_mapped_twice(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    extra = {**RESEARCHER_PARAMS, "columns": {"client_id": "PID", "therapist_id": "PID",
                                              "session": "visit"}}
    with data_error(r"s\.csv: column\(s\) of the file are mapped to more than one canonical "
                    r"column: 'PID' -> client_id, therapist_id"):
        mapping.map_columns(io.read(path), params_for(tmp_path, path, **extra), [WAI, PHQ9])


def test_wrong_delimiter_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    session_rows().to_csv(path, index=False, sep=";")
    raw = io.read(path, delimiter=",")
    assert raw.frame.shape[1] == 2  # source_row + one column holding whole lines
    with data_error() as caught:
        mapping.map_columns(raw, params_for(tmp_path, path), [WAI, PHQ9])
    message = str(caught.value)
    assert message.startswith(f"{path}: no column 'client_id' for client_id")
    assert "contain a semicolon" in message and "set data.delimiter to ';'" in message


# --------------------------------------------------------------------------------------------
# Errors through the whole clean stage (prepare): nothing half-written is left behind


def test_prepare_reads_a_researcher_file(tmp_path: Path) -> None:
    path = researcher_file(tmp_path)
    before = path.read_bytes()
    prepared = prepare(params_for(tmp_path, path, **RESEARCHER_PARAMS), tmp_path / "proc")
    assert len(prepared.sessions) == 4
    assert prepared.input_sha256 == hashlib.sha256(before).hexdigest()
    assert path.read_bytes() == before
    assert leftovers(tmp_path / "proc") == ["codebook.csv", "ledger_cells.csv",
                                            "ledger_rows.csv", "sessions.parquet"]


def test_text_in_an_item_goes_to_the_ledger(tmp_path: Path) -> None:
    frame = session_rows()
    frame.loc[2, "phq9_3"] = "three"
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    prepared = prepare(params_for(tmp_path, path), tmp_path / "proc")
    cells = prepared.ledger_cells
    entry = cells[cells["rule"] == "item_not_numeric"]
    assert entry[["source_row", "column", "old_value"]].values.tolist() == [
        [3, "phq9_3", "three"]]
    assert pd.isna(entry["new_value"].iloc[0])
    assert (prepared.ledger_rows["status"] == "kept").all()


def _all_phq9_empty(path: Path) -> Path:
    frame = session_rows()
    frame[PHQ9.items()] = ""
    frame.to_csv(path, index=False)
    return path


def _identifier(path: Path) -> Path:
    session_rows().assign(email="someone@example.org").to_csv(path, index=False)
    return path


def _wrong_delimiter(path: Path) -> Path:
    session_rows().to_csv(path, index=False, sep=";")
    return path


def _header_only(path: Path) -> Path:
    path.write_text(",".join(session_rows().columns) + "\n", encoding="utf-8")
    return path


def _missing_column(path: Path) -> Path:
    session_rows().drop(columns="therapist_id").to_csv(path, index=False)
    return path


def _latin1(path: Path) -> Path:
    session_rows().assign(site="Zürich").to_csv(path, index=False, encoding="latin-1")
    return path


def _corrupted_sav(path: Path) -> Path:
    path = path.with_suffix(".sav")
    path.write_bytes(np.random.default_rng(3).bytes(3000))
    return path


PREPARE_ERRORS = {
    "empty file": (lambda p: (p.write_bytes(b""), p)[1], {}, ["the file is empty"]),
    "header only": (_header_only, {}, ["header (25 columns) but no data rows"]),
    "missing required column": (_missing_column, {},
                                ["no column 'therapist_id'", "columns.therapist_id"]),
    "wrong delimiter": (_wrong_delimiter, {"delimiter": ","},
                        ["no column 'client_id'", "set data.delimiter to ';'"]),
    "unreadable encoding": (_latin1, {"encoding": "utf-8"},
                            ["cannot be decoded as utf-8", "byte", "data.encoding"]),
    "all items missing": (_all_phq9_empty, {},
                          ["(PHQ-9) (phq9) item is missing in every kept row",
                           "items.phq9"]),
    "identifier column": (_identifier, {}, ["'email'", "privacy"]),
    "corrupted sav": (_corrupted_sav, {}, ["cannot be read as SPSS .sav"]),
}


@pytest.mark.parametrize("case", list(PREPARE_ERRORS))
def test_prepare_errors_leave_nothing_behind(tmp_path: Path, case: str) -> None:
    write, reading, fragments = PREPARE_ERRORS[case]
    path = write(tmp_path / "s.csv")
    params = params_for(tmp_path, path, reading)
    processed = tmp_path / "proc"
    with data_error() as caught:
        prepare(params, processed)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert leftovers(processed) == []


def test_prepare_file_removed_after_the_parameters_were_read(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    session_rows().to_csv(path, index=False)
    params = params_for(tmp_path, path)
    path.unlink()
    with data_error(r"s\.csv: file not found"):
        prepare(params, tmp_path / "proc")
    assert leftovers(tmp_path / "proc") == []


def test_windows_1252_is_detected_before_latin_1(tmp_path: Path) -> None:
    path = tmp_path / "cp1252.csv"
    path.write_bytes("client_id,site\nC1,\u201cNord\u201d \u20ac\n".encode("cp1252"))
    assert io.read(path).frame.loc[0, "site"] == "\u201cNord\u201d \u20ac"


# --------------------------------------------------------------------------------------------
# Mixed encodings, title rows, folders, dates and the day/date mapping (issue 20)


def _mixed(path: Path) -> Path:
    """UTF-8 lines, except line 3, written in Latin-1 (as when two exports are pasted together)."""
    lines = ["client_id,gender\n", "1,männlich\n", "2,männlich\n", "3,weiblich\n", "4,männlich\n"]
    path.write_bytes(b"".join(line.encode("latin-1" if n == 3 else "utf-8")
                              for n, line in enumerate(lines, start=1)))
    return path


def test_mixed_encodings_are_refused_with_the_lines(tmp_path: Path) -> None:
    path = _mixed(tmp_path / "s.csv")
    with data_error() as caught:
        io.read(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: the lines of the file are in different text encodings")
    assert "lines 2, 5 are UTF-8, but line 3 does not decode as UTF-8" in message
    assert "line 3 holds '2,männlich" in message
    assert "Re-save the file as UTF-8" in message and "set data.encoding" in message


def test_declared_encoding_lists_every_line_that_does_not_decode(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes("a,b\n1,ü\n2,x\n3,ö\n".encode("latin-1"))
    with data_error(r"line 2 of the file\) is b'\\xfc'; lines 2, 4 of the file do not decode"):
        io.read(path, encoding="utf-8")
    # a declared single-byte encoding is trusted (the way out for a file in one encoding)
    assert io.read(_mixed(tmp_path / "m.csv"), encoding="cp1252").encoding == "cp1252"


@pytest.mark.parametrize(("written", "recorded"), [("utf-8", "utf-8"), ("utf-8-sig", "utf-8-sig"),
                                                   ("latin-1", "cp1252"), ("utf-16", "utf-16")])
def test_the_encoding_used_is_recorded(tmp_path: Path, written: str, recorded: str) -> None:
    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS], encoding=written)
    assert io.read(path).encoding == recorded
    params = params_for(tmp_path, path)
    assert io.source_encoding(params.data) == recorded  # what the run's manifest records


def test_binary_formats_record_their_encoding(tmp_path: Path) -> None:
    frame = pd.DataFrame({"client_id": ["a"], "session": [1.0]})
    pyreadstat.write_sav(frame, tmp_path / "s.sav")
    frame.to_parquet(tmp_path / "s.parquet")
    assert io.read(tmp_path / "s.sav").encoding.upper().replace("-", "") == "UTF8"
    assert io.read(tmp_path / "s.parquet").encoding is None


def test_skip_rows_skips_a_title_above_the_header(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Pilot study export\n\nclient_id,therapist_id,session\nA,T,1\nB,T,2\n")
    with data_error(r"line 1 \(the header\) has no comma.*If it is a title above the header, "
                    r"set data\.skip_rows: 2"):
        io.read(path)
    raw = io.read(path, skip_rows=1)  # the blank line after the title is skipped as before
    assert raw.header_line == 3 and raw.frame["client_id"].tolist() == ["A", "B"]
    assert raw.frame["source_row"].tolist() == [1, 2]


def test_ragged_line_after_a_title_suggests_skip_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Export;2024\nclient_id;therapist_id;session\nA;T;1\n")
    with data_error(r"line 2 of the file has 3 fields but the header has 2\. If the lines above "
                    r"line 2 are a title or notes, set data\.skip_rows: 1\."):
        io.read(path, delimiter=";")


def test_title_row_in_the_header_suggests_skip_rows(tmp_path: Path) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    for values in (["Pilot study"], [], ["client_id", "therapist_id", "session"], ["A", "T", 1]):
        sheet.append(values)
    path = tmp_path / "s.xlsx"
    book.save(path)
    params = params_for(tmp_path, path)
    with data_error(r"no column 'client_id' for client_id.*Row 3 of the sheet holds "
                    r"'client_id': if that is the header, below a title or notes, set "
                    r"data\.skip_rows: 2\."):
        mapping.map_columns(io.read(path), params, [WAI])
    raw = io.read(path, skip_rows=1)
    assert raw.header_line == 3 and raw.frame["client_id"].tolist() == ["A"]
    with data_error(r"data\.skip_rows is 9, but no header is left after skipping that many rows"):
        io.read(path, skip_rows=9)


def test_skip_rows_only_for_csv_and_excel(tmp_path: Path) -> None:
    pd.DataFrame({"client_id": ["a"]}).to_parquet(tmp_path / "s.parquet")
    with data_error(r"data\.skip_rows \(1\) applies to CSV and Excel files only"):
        io.read(tmp_path / "s.parquet", skip_rows=1)


def test_data_path_that_is_a_folder(tmp_path: Path) -> None:
    from alliance_analysis.errors import AllianceParamsError

    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "sessions.csv").write_text("client_id\n")
    with pytest.raises(AllianceParamsError, match=r"study is a folder, not a file \(files in "
                       r"it: sessions\.csv\)\. Give the path of the data file itself"):
        params_for(tmp_path, tmp_path / "study")


def test_neither_day_nor_date_mapped_is_a_parameter_error(tmp_path: Path) -> None:
    from alliance_analysis.errors import AllianceParamsError

    path = write_text_table(tmp_path / "s.csv", [HEADER, *ROWS])
    with pytest.raises(AllianceParamsError, match=r"neither columns\.day nor columns\.date"):
        params_for(tmp_path, path, columns={"day": None})
    assert params_for(tmp_path, path, columns={"day": None, "date": "d"}).columns.date == "d"


def test_bad_date_names_the_file_column(tmp_path: Path) -> None:
    frame = session_rows().drop(columns="day")
    frame["Datum"] = ["01.03.2025", "08.03.2025", "01.03.2025", "2025-13-01"]
    path = tmp_path / "s.csv"
    frame.to_csv(path, index=False)
    params = params_for(tmp_path, path, columns={"day": None, "date": "Datum"})
    with data_error(r"column 'Datum' has 1 value\(s\) that are not calendar dates.*"
                    r"row 4: '2025-13-01'"):
        prepare(params, tmp_path / "proc")
    assert leftovers(tmp_path / "proc") == []
