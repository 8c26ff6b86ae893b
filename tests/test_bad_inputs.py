"""The bad-input corpus (issue 20): one file per fault in ``tests/bad_inputs/``.

Each fault goes through the command line's ``main`` in-process, as a user would meet it:
``alliance validate`` for parameter faults, ``alliance run`` for data faults. Every case checks
the exit status (2), the message (the file, line or row, column, value and what to do, never a
traceback) and that nothing was written half-way: no run folder, no processed table, no
staging folder left, and the input files unchanged.

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


def clean_stage(name: str, run_dir: Path, parameters: dict[str, str]) -> None:
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

    def call(command: str, params: Path) -> tuple[int, str]:
        before = corpus_hashes()
        extra = (["--out", str(tmp_path / "run"), "--processed", str(tmp_path / "processed")]
                 if command == "run" else [])
        status = main([command, str(params), *extra])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        assert corpus_hashes() == before  # raw files are never changed
        return status, " ".join(err.split())  # one line, whatever the console width

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
