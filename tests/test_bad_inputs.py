"""The bad-input corpus (issue 20): one file per fault in ``tests/bad_inputs/``.

Each fault goes through the command line's ``main`` in-process, as a user would meet it:
``alliance validate`` for parameter faults, ``alliance run`` for data faults and command-line
paths, ``alliance verify`` for a damaged run folder. Every case checks the exit status (2), the
message (the file, line or row, column, value and what to do, never a traceback) and that
nothing was written half-way: no run folder, no processed table, no staging folder left, and the
input files unchanged. Data faults that are not errors (a fractional answer, duplicated
sessions) complete the run and are checked in its ledgers: every input row kept or excluded with
a reason, every changed cell logged.

``alliance run`` executes notebooks with papermill, a kernel start of several seconds each; here
its notebook step is replaced by the clean stage run in-process (``prepare`` then
``report_clean``, exactly what ``notebooks/01_clean`` does), so the corpus runs in seconds while
the run's own checks, staging and error handling are the real ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis import pipeline
from alliance_analysis.cli import main
from alliance_analysis.data.io import file_sha256, read
from alliance_analysis.data.prepare import prepare
from alliance_analysis.params import load_params, parse_params

BAD = Path(__file__).resolve().parent / "bad_inputs"


def clean_stage(name: str, run_dir: Path, parameters: dict[str, str], kernels=None) -> None:
    """Stand-in for ``pipeline._execute``: the clean stage in-process, other stages skipped."""
    from alliance_analysis.report.clean import report_clean
    from alliance_analysis.report.runfolder import RunFolder

    if name == "01_clean":
        params = load_params(parameters["params_file"])
        report_clean(prepare(params, parameters["processed_dir"]), RunFolder(run_dir, name))


def corpus_hashes() -> dict[str, str]:
    return {path.name: file_sha256(path) for path in sorted(BAD.iterdir())}


@pytest.fixture
def alliance(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             tmp_path: Path):
    """Call the command line; return its exit status and what it printed to stderr."""
    monkeypatch.setattr(pipeline, "_execute", clean_stage)

    def call(command: str, params: Path, *options: str, raw: bool = False) -> tuple[int, str]:
        """``options`` replace the default ``--out``/``--processed`` of ``run``; ``raw`` keeps
        the message's lines (for a block to paste) instead of joining them into one."""
        before = corpus_hashes()
        extra = (["--out", str(tmp_path / "run"), "--processed", str(tmp_path / "processed")]
                 if command == "run" and not options else list(options))
        status = main([command, str(params), *extra])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert corpus_hashes() == before  # raw files are never changed
        return status, err if raw else " ".join(err.split())  # one line, whatever the width

    return call


def assert_nothing_written(folder: Path) -> None:
    """No run folder, no processed table and no staging folder in ``folder``."""
    assert not (folder / "run").exists()
    processed = folder / "processed"
    assert not processed.exists() or [p.name for p in processed.iterdir()] in ([],
                                                                             ["pseudonym.key"])
    assert not list(folder.glob("*.partial"))


def data_params(folder: Path, data: str, extra: str = "") -> Path:
    """Parameters of a run on ``tests/bad_inputs/<data>`` with WAI and PHQ-9."""
    path = folder / "params.yaml"
    path.write_text(f"name: bad\ndata:\n  path: {BAD / data}\ninstruments: [wai, phq9]\n{extra}",
                    encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Parameter faults: refused by validate, and by run before anything is written


def test_data_path_is_a_folder(alliance, tmp_path: Path) -> None:
    params = BAD / "data_path_is_folder.yaml"
    for command in ("validate", "run"):
        status, err = alliance(command, params)
        assert status == 2
        assert f"key 'data.path': {BAD} is a folder, not a file" in err
        assert "files in it: README.md, bad_date.csv" in err and "file not found" not in err
        assert "Give the path of the data file itself" in err
    assert_nothing_written(tmp_path)


def test_unknown_instrument_is_one_line_listing_the_known_ones(alliance, tmp_path: Path) -> None:
    status, err = alliance("validate", BAD / "unknown_instrument.yaml")
    assert status == 2
    assert "1 problem(s)" in err and "Unknown instrument 'phq-9'" in err
    assert "Known instruments: core10, gad7, phq9, srs, tasc, wai, wai_t" in err
    assert "custom_instruments" in err
    assert "sessions_ok.csv" not in err and "'name'" not in err  # no dump of the parameters
    assert len(err) < 400
    assert_nothing_written(tmp_path)


def test_neither_day_nor_date_is_refused_by_validate_and_run(alliance, tmp_path: Path) -> None:
    # It used to pass validate, then the run died with KeyError: "['day'] not in index".
    params = BAD / "no_day_or_date.yaml"
    for command in ("validate", "run"):
        status, err = alliance(command, params)
        assert status == 2
        assert str(params) in err and "key 'columns'" in err
        assert "neither columns.day nor columns.date is set" in err
        assert "Map columns.day (days since the first session) or columns.date" in err
    assert_nothing_written(tmp_path)


def test_missing_excel_sheet_lists_the_sheets(alliance, tmp_path: Path) -> None:
    params = BAD / "excel_missing_sheet.yaml"
    assert alliance("validate", params)[0] == 0  # the workbook is read by the run
    status, err = alliance("run", params)
    assert status == 2
    assert f"{BAD / 'excel_title_row.xlsx'}: has no sheet 'sessions'" in err
    assert "Its sheets are: 0: 'README', 1: 'Sessions'" in err and "data.sheet" in err
    assert_nothing_written(tmp_path)


def test_a_key_given_twice_is_refused_naming_it_and_its_lines(alliance, tmp_path: Path) -> None:
    # It used to take the last value silently.
    params = BAD / "duplicate_key.yaml"
    for command in ("validate", "run"):
        status, err = alliance(command, params)
        assert status == 2
        assert str(params) in err and "line 8" in err
        assert "the key 'alliance' is given twice (lines 6 and 8)" in err
        assert "YAML would keep only the last value. Remove one" in err
    assert_nothing_written(tmp_path)


def test_a_parameters_file_that_is_not_utf8_is_refused(alliance, tmp_path: Path) -> None:
    # It used to end in a UnicodeDecodeError traceback with exit 1.
    params = BAD / "not_utf8.yaml"
    for command in ("validate", "run"):
        status, err = alliance(command, params)
        assert status == 2
        assert f"{params}: not UTF-8 text (byte 0xe4 on line 2)" in err
        assert "Save the parameters file as UTF-8" in err
    assert_nothing_written(tmp_path)


def test_a_boolean_is_not_taken_for_a_number(alliance, tmp_path: Path) -> None:
    # `early_sessions: true` used to become 1 silently.
    params = BAD / "boolean_for_number.yaml"
    for command in ("validate", "run"):
        status, err = alliance(command, params)
        assert status == 2
        assert str(params) in err and "1 problem(s)" in err
        assert "key 'multilevel.early_sessions': Input should be a valid integer; got True" in err
    assert_nothing_written(tmp_path)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(params.read_text().replace("true", "1").replace("path: ", f"path: {BAD}/"))
    assert alliance("validate", fixed)[0] == 0


# --------------------------------------------------------------------------------------------
# Data faults: refused by the run's clean stage, before the processed table is written


DATA_FAULTS = {
    "mixed_encoding.csv": ("columns:\n  covariates: [gender]\n", [
        "mixed_encoding.csv: the lines of the file are in different text encodings",
        "lines 2, 3, 4, 10 are UTF-8", "but lines 8, 9 do not decode",
        "line 8 holds 'C3,T2,1,0,männlich", "Re-save the file as UTF-8",
        "set data.encoding"]),
    "decimal_comma.csv": ("", [
        "decimal_comma.csv: 2 number(s) are written with a decimal comma",
        "column 'wai_3': row 2 '3,5'", "column 'phq9_2': row 5 '1,5'",
        "set data.decimal: ','"]),
    "bad_date.csv": ("columns:\n  day: null\n  date: Sitzungsdatum\n", [
        "bad_date.csv: column 'Sitzungsdatum' has 1 value(s) that are not calendar dates",
        "row 5: '31.02.2025'", "Correct them in a copy of the file"]),
    "no_day_column.csv": ("", [
        "no_day_column.csv: no column 'day' for day (parameter columns.day)",
        "The file's columns are: client_id, therapist_id, session, gender",
        "columns: {day: <column in the file>}", "columns: {date: <column in the file>}"]),
    "excel_title_row.xlsx": ("  sheet: Sessions\n", [
        "excel_title_row.xlsx: no column 'client_id' for client_id",
        "Row 2 of the sheet holds 'client_id'", "set data.skip_rows: 1"]),
}


@pytest.mark.parametrize("fault", list(DATA_FAULTS))
def test_data_fault_exits_2_and_writes_nothing(alliance, tmp_path: Path, fault: str) -> None:
    extra, fragments = DATA_FAULTS[fault]
    if extra.startswith("  "):  # more data: keys
        params = data_params(tmp_path, fault)
        params.write_text(params.read_text().replace("instruments:", extra + "instruments:"))
    else:
        params = data_params(tmp_path, fault, extra)
    assert alliance("validate", params)[0] == 0  # validate reads no data
    status, err = alliance("run", params)
    assert status == 2
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert_nothing_written(tmp_path)


# --------------------------------------------------------------------------------------------
# The fixes the messages suggest work


def test_the_suggested_settings_read_the_files(tmp_path: Path) -> None:
    def prepared(data: str, **reading: object):
        raw = {"name": "t", "data": {"path": str(BAD / data), **reading},
               "instruments": ["wai", "phq9"]}
        return prepare(parse_params(raw, base_dir=tmp_path), tmp_path / data)

    commas = prepared("decimal_comma.csv", decimal=",")
    cells = commas.ledger_cells.set_index(["source_row", "column"])
    # 3,5 is read as 3.5, then set missing as a fractional answer: the ledger keeps the text
    assert cells.loc[(2, "wai_3"), ["old_value", "rule"]].tolist() == ["3.5", "item_not_integer"]
    assert commas.encoding == "utf-8"
    titled = prepared("excel_title_row.xlsx", sheet="Sessions", skip_rows=1)
    assert len(titled.sessions) == 12 and titled.encoding is None
    assert read(BAD / "excel_title_row.xlsx", sheet=1, skip_rows=1).header_line == 2
    # a declared encoding is trusted: the refusal's own way out for a file in one encoding
    assert read(BAD / "mixed_encoding.csv", encoding="cp1252").encoding == "cp1252"


def test_scores_left_missing_are_counted_alike_in_summary_and_results(
        alliance, tmp_path: Path) -> None:
    status, _ = alliance("run", data_params(tmp_path, "too_few_items.csv"))
    assert status == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    summary = pd.read_csv(tmp_path / "run" / "tables" / "cleaning_summary.csv").set_index("rule")
    cells = pd.read_csv(tmp_path / "run" / "tables" / "ledger_cells.csv")
    missing = cells[cells["rule"] == "too_few_items"]
    assert set(missing["source_row"]) == {5, 6}
    assert results["clean.scores_missing"] == summary.loc["too_few_items", "scores"] == len(missing)
    assert results["clean.scores_missing.phq9"] == (missing["column"] == "phq9_total").sum() == 1
    assert results["clean.scores_missing.wai"] == missing["column"].str.startswith("wai_").sum()
    assert results["clean.scores_missing.wai"] >= 1
    assert results["clean.cells_changed"] == summary["cells_changed"].sum()


# --------------------------------------------------------------------------------------------
# Command-line paths: --out or --processed that is a file, a truncated manifest for verify


def test_out_or_processed_that_is_a_file_is_refused(alliance, tmp_path: Path) -> None:
    # They used to end in a FileExistsError / NotADirectoryError traceback with exit 1.
    params = data_params(tmp_path, "sessions_ok.csv")
    a_file = tmp_path / "results.txt"
    a_file.write_bytes((BAD / "out_is_a_file.txt").read_bytes())
    processed = ["--processed", str(tmp_path / "processed")]
    cases = {
        ("--out", str(a_file), *processed):
            f"--out (the run folder): {a_file} is a file ({a_file}), not a folder",
        ("--out", str(a_file / "run"), *processed):
            f"--out (the run folder): {a_file / 'run'} lies under a file ({a_file}), not a folder",
        ("--out", str(tmp_path / "run"), "--processed", str(a_file)):
            f"--processed (the processed-data folder): {a_file} is a file ({a_file}), not a folder",
    }
    for options, message in cases.items():
        status, err = alliance("run", params, *options)
        assert status == 2
        assert message in err and "Give a folder path" in err
        assert a_file.read_bytes() == (BAD / "out_is_a_file.txt").read_bytes()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml", "results.txt"]


def test_verify_of_a_truncated_manifest_is_refused(alliance, tmp_path: Path) -> None:
    # It used to end in a JSONDecodeError traceback with exit 1.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    manifest = run_dir / "manifest.json"
    manifest.write_bytes((BAD / "truncated_manifest.json").read_bytes())
    status, err = alliance("verify", run_dir)
    assert status == 2
    assert f"{manifest}: not a readable manifest (Expecting value: line 83 column 5" in err
    assert "it may be truncated or edited" in err
    assert "Verify a complete run folder, or rerun the run" in err
    assert [p.name for p in tmp_path.rglob("*")] == ["run", "manifest.json"]
    assert manifest.read_bytes() == (BAD / "truncated_manifest.json").read_bytes()


# --------------------------------------------------------------------------------------------
# Empty data files: refused by the run's clean stage


@pytest.mark.parametrize("fault, message", [
    ("empty.csv", "empty.csv: the file is empty. Export the data with a header row"),
    ("header_only.csv", "header_only.csv: the file has a header (26 columns) but no data rows. "
                        "Check that the right file (or sheet) is given"),
])
def test_an_empty_data_file_is_refused(alliance, tmp_path: Path, fault: str,
                                       message: str) -> None:
    params = data_params(tmp_path, fault)
    assert alliance("validate", params)[0] == 0  # validate reads no data
    status, err = alliance("run", params)
    assert status == 2
    assert f"{BAD / message}" in err
    assert f"nothing was written to {tmp_path / 'run'}" in err
    assert_nothing_written(tmp_path)


# --------------------------------------------------------------------------------------------
# National identifiers in a covariate: refused by the privacy gate, with the block to paste


IDENTIFIERS = {
    "ni_number_covariate.csv": ("ref", "look like UK National Insurance numbers",
                                ["GZ988598A", "AB123456C", "JK654321B", "CE246810D"]),
    "iban_covariate.csv": ("account", "are IBANs (bank account numbers)",
                           ["DE89 3704 0044 0532 0130 00", "GB82 WEST 1234 5698 7654 32",
                            "NL91 ABNA 0417 1643 00", "FR14 2004 1010 0505 0001 3M02 606"]),
    "ssn_covariate.csv": ("code", "look like US Social Security numbers",
                          ["123-45-6789", "234-56-7890", "345-67-8901", "456-78-9012"]),
}


def assert_not_stored(folder: Path, values: list[str]) -> None:
    """None of ``values`` in any file under ``folder``, nor in a processed table."""
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(value.encode() in data for value in values), path
    for table in folder.rglob("*.parquet"):
        cells = pd.read_parquet(table).astype(str)
        assert not cells.isin(values).any().any(), table


@pytest.mark.parametrize("fault", list(IDENTIFIERS))
def test_national_identifiers_are_refused_with_a_privacy_block(alliance, tmp_path: Path,
                                                               fault: str) -> None:
    # UK National Insurance numbers used to pass the gate and be stored in clear.
    column, what, values = IDENTIFIERS[fault]
    params = data_params(tmp_path, fault, f"columns:\n  covariates: [{column}]\n")
    status, err = alliance("run", params, raw=True)
    assert status == 2
    line = " ".join(err.split())
    assert f"{BAD / fault}: 1 column(s) look like direct identifiers" in line
    assert f"- '{column}': 12 of 12 values {what}, e.g. row 1" in line
    assert "paste this as the privacy: section of the parameters file" in line
    block = f'privacy:\n  drop:\n  - "{column}"\n  # allow:\n    # "{column}": '
    assert block in err
    assert not any(value in err for value in values)  # the message never shows the values
    assert_nothing_written(tmp_path)
    assert_not_stored(tmp_path, values)
    # The block pasted as it stands (the covariate mapping removed with the column) runs.
    pasted = err[err.index("privacy:\n"):].split("\n\n")[0]
    params.write_text(params.read_text().replace(f"columns:\n  covariates: [{column}]\n", "")
                      + pasted + "\n")
    status, _ = alliance("run", params)
    assert status == 0
    assert column not in pd.read_parquet(tmp_path / "processed" / "sessions.parquet")
    assert_not_stored(tmp_path, values)


# --------------------------------------------------------------------------------------------
# Data faults that are ledgered, not refused: nothing is changed or dropped silently


@pytest.mark.parametrize("option, value, new_value", [
    ("", None, None), ("cleaning: {fractional_items: round}\n", 2.0, "2")])
def test_a_fractional_likert_answer_is_ledgered(alliance, tmp_path: Path, option: str,
                                                value: float | None,
                                                new_value: str | None) -> None:
    # 2.5 on a 1-5 whole-number item used to be kept without a ledger entry.
    status, _ = alliance("run", data_params(tmp_path, "fractional_likert.csv", option))
    assert status == 0
    tables = tmp_path / "run" / "tables"
    cells = pd.read_csv(tables / "ledger_cells.csv", dtype={"old_value": str, "new_value": str})
    entry = cells[cells["rule"] == "item_not_integer"]
    assert entry[["source_row", "column", "old_value"]].values.tolist() == [[2, "wai_3", "2.5"]]
    assert (pd.isna(entry["new_value"].iloc[0]) if new_value is None
            else entry["new_value"].iloc[0] == new_value)
    assert entry["reason"].iloc[0].startswith("a fractional answer on a whole-number item: ")
    summary = pd.read_csv(tables / "cleaning_summary.csv").set_index("rule")
    assert summary.loc["item_not_integer", "cells_changed"] == 1
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["clean.cells_changed"] == summary["cells_changed"].sum()
    assert results["clean.rows_kept"] == 12  # the row is kept; only the cell changed
    sessions = pd.read_parquet(tmp_path / "processed" / "sessions.parquet")
    kept = sessions.set_index("source_row").loc[2, "wai_3"]
    assert pd.isna(kept) if value is None else kept == value


@pytest.mark.parametrize("option, excluded", [
    ("", {6: "duplicate_conflicting", 9: "duplicate_identical"}),
    ("cleaning: {duplicates: exclude_both}\n",
     {5: "duplicate_conflicting", 6: "duplicate_conflicting", 9: "duplicate_identical"})])
def test_duplicated_sessions_are_each_kept_or_excluded_with_a_reason(
        alliance, tmp_path: Path, option: str, excluded: dict[int, str]) -> None:
    # Rows 5 and 6 are client C2's session 2 with different answers; rows 8 and 9 are one
    # session of C3 twice.
    status, _ = alliance("run", data_params(tmp_path, "duplicate_sessions.csv", option))
    assert status == 0
    rows = pd.read_csv(tmp_path / "run" / "tables" / "ledger_rows.csv")
    assert rows["source_row"].tolist() == list(range(1, 15))  # every input row, once
    out = rows[rows["status"] == "excluded"].set_index("source_row")
    assert out["rule"].to_dict() == excluded
    assert out["reason"].notna().all() and (out["reason"].str.len() > 10).all()
    if 5 not in excluded:
        assert out.loc[6, "reason"] == "conflicts with row 5, which is kept (keep_first)"
    kept = set(rows.loc[rows["status"] == "kept", "source_row"])
    assert kept == set(range(1, 15)) - set(excluded)
    sessions = pd.read_parquet(tmp_path / "processed" / "sessions.parquet")
    assert set(sessions["source_row"]) == kept and len(sessions) == len(kept)
    if 5 in kept:  # the first of the conflicting rows keeps its own answers
        assert sessions.set_index("source_row").loc[5, ["wai_1", "phq9_1"]].tolist() == [4, 3]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["clean.rows_input"] == 14
    assert (results["clean.rows_kept"], results["clean.rows_excluded"]) == (
        len(kept), len(excluded))
    summary = pd.read_csv(tmp_path / "run" / "tables" / "cleaning_summary.csv").set_index("rule")
    assert summary["rows_excluded"].to_dict() == pd.Series(excluded).value_counts().to_dict()
