"""The clean stage on the demo data: every planted fault is caught and logged, nothing is lost."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from alliance_analysis.data.prepare import load_processed, prepare
from alliance_analysis.data.scoring import SCORING_RULES
from alliance_analysis.params import load_params, parse_params, read_yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("processed")
    return prepare(load_params(ROOT / "params" / "demo.yaml"), folder), folder


def test_every_planted_fault_is_in_the_ledger(demo) -> None:
    prepared, _ = demo
    faults = json.loads((ROOT / "data" / "demo" / "truth.json").read_text())["faults"]
    rows = prepared.ledger_rows.set_index("source_row")
    cells = prepared.ledger_cells
    expected_rule = {"non_integer_session": "session_not_integer",
                     "duplicate_row": "duplicate_identical"}
    for fault in faults:
        if fault["kind"] == "out_of_range_item":
            hit = cells[(cells.source_row == fault["row"]) & (cells.column == fault["column"])]
            assert hit[["old_value", "new_value", "rule"]].values.tolist() == [
                [str(fault["value"]), None, "item_out_of_range"]]
        else:
            assert rows.loc[fault["row"], "status"] == "excluded"
            assert rows.loc[fault["row"], "rule"] == expected_rule[fault["kind"]]
    assert prepared.headline()["clean.rows_excluded"] == 2


def test_rows_add_up_and_ids_are_pseudonymised(demo) -> None:
    prepared, folder = demo
    raw_rows = len((ROOT / "data" / "demo" / "sessions.csv").read_text().splitlines()) - 1
    headline = prepared.headline()
    assert headline["clean.rows_input"] == raw_rows
    assert headline["clean.rows_kept"] + headline["clean.rows_excluded"] == raw_rows
    assert prepared.sessions["client_id"].str.match(r"^C-[0-9a-f]{10}$").all()
    assert prepared.sessions["therapist_id"].str.match(r"^T-[0-9a-f]{10}$").all()
    raw = pd.read_csv(ROOT / "data" / "demo" / "sessions.csv", dtype=str)
    assert not set(raw["client_id"]) & set(prepared.ledger_rows["client_id"].dropna())
    assert (folder / "pseudonym.key").is_file()


def test_every_prorated_score_has_a_ledger_entry(demo) -> None:
    prepared, _ = demo
    sessions = prepared.sessions
    prorated = prepared.ledger_cells[prepared.ledger_cells.rule == "prorated"]
    for key, n_items in (("phq9", 9), ("wai", 12)):
        partial = sessions[(sessions[f"{key}_n_items"] < n_items)
                           & sessions[f"{key}_total"].notna()]
        logged = prorated[prorated.column == f"{key}_total"]
        assert set(partial["source_row"]) == set(logged["source_row"])


def test_every_score_left_missing_for_too_few_items_has_a_ledger_entry(demo) -> None:
    prepared, _ = demo
    sessions = prepared.sessions
    missing = prepared.ledger_cells[prepared.ledger_cells.rule == "too_few_items"]
    assert missing[["old_value", "new_value"]].isna().all().all()
    for instrument in prepared.instruments:
        given = sessions[f"{instrument.key}_n_items"] > 0
        columns = [instrument.score_column()]
        columns += [instrument.score_column(name) for name in instrument.subscales]
        for column in columns:
            expected = sessions.loc[given & sessions[column].isna(), "source_row"]
            logged = missing.loc[missing.column == column, "source_row"]
            assert sorted(expected) == sorted(logged), column
    not_given = sessions.loc[sessions["phq9_n_items"] == 0, "source_row"]
    assert not set(not_given) & set(missing.loc[missing.column == "phq9_total", "source_row"])


def test_headline_counts_agree_with_the_cleaning_summary(demo) -> None:
    prepared, _ = demo
    headline, summary = prepared.headline(), prepared.summary().set_index("rule")
    assert headline["clean.cells_changed"] == summary["cells_changed"].sum()
    assert headline["clean.rows_excluded"] == summary["rows_excluded"].sum()
    scores = summary["scores"].reindex(list(SCORING_RULES), fill_value=0)
    assert (headline["clean.scores_prorated"], headline["clean.scores_missing"],
            headline["clean.scores_rounded"]) == tuple(scores)
    assert (summary.loc[~summary.index.isin(SCORING_RULES), "scores"] == 0).all()
    cells = prepared.ledger_cells
    assert headline["clean.cells_changed"] == (~cells.rule.isin(SCORING_RULES)).sum()
    assert headline["clean.cells_changed"] + scores.sum() == len(cells)
    # the demo has no scoring: section, so nothing is rounded
    assert headline["clean.scores_rounded"] == 0


def test_scoring_section_rounds_scores_and_logs_them(demo, tmp_path: Path) -> None:
    prepared, folder = demo
    raw, base = read_yaml(ROOT / "params" / "demo.yaml")
    raw["scoring"] = {"phq9": {"min_items": 8, "rounding": "half_even"},
                      "wai": {"rounding": "half_up", "decimals": 1}}
    (tmp_path / "pseudonym.key").write_bytes((folder / "pseudonym.key").read_bytes())
    rounded = prepare(parse_params(raw, base_dir=base), tmp_path)
    sessions, cells = rounded.sessions, rounded.ledger_cells
    assert ((sessions["phq9_total"].dropna() % 1) == 0).all()
    assert ((sessions["wai_total"].dropna() * 10).round(9) % 1 == 0).all()
    logged = cells[cells.rule == "rounded"]
    assert set(logged["column"]) <= {"wai_total", "wai_goal", "wai_task", "wai_bond"}
    assert len(logged) == rounded.headline()["clean.scores_rounded"] > 0
    by_row = sessions.set_index("source_row")
    for entry in logged.itertuples():
        assert float(entry.new_value) == by_row.loc[entry.source_row, entry.column]
        assert float(entry.old_value) != float(entry.new_value)
    # 7 of 9 PHQ-9 items was enough before (prorate_min_items 7), no longer with min_items 8
    seven = prepared.sessions["phq9_n_items"] == 7
    assert seven.sum() > 0
    assert prepared.sessions.loc[seven, "phq9_total"].notna().all()
    assert by_row.loc[prepared.sessions.loc[seven, "source_row"], "phq9_total"].isna().all()
    headline = rounded.headline()
    assert headline["clean.scores_missing"] > prepared.headline()["clean.scores_missing"]
    assert headline["clean.cells_changed"] == prepared.headline()["clean.cells_changed"]


def test_codebook_describes_every_column(demo) -> None:
    prepared, _ = demo
    used = prepared.codebook[prepared.codebook.status == "used"]
    assert list(used["column"]) == list(prepared.sessions.columns)
    assert used["meaning"].str.len().gt(0).all()


def test_processed_files_written_and_reloadable(demo) -> None:
    prepared, folder = demo
    assert sorted(p.name for p in folder.iterdir()) == [
        "codebook.csv", "ledger_cells.csv", "ledger_rows.csv", "pseudonym.key",
        "sessions.parquet"]
    pd.testing.assert_frame_equal(load_processed(folder), prepared.sessions)


def test_same_key_same_bytes(demo, tmp_path: Path) -> None:
    _, folder = demo
    again = tmp_path / "again"
    again.mkdir()
    (again / "pseudonym.key").write_bytes((folder / "pseudonym.key").read_bytes())
    prepare(load_params(ROOT / "params" / "demo.yaml"), again)
    for name in ("sessions.parquet", "ledger_rows.csv", "ledger_cells.csv", "codebook.csv"):
        assert (again / name).read_bytes() == (folder / name).read_bytes(), name
