"""Cleaning: each rule on hand-built rows, and the ledger invariants on random dirty tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance_analysis.data.cleaning import CELL_COLUMNS, ROW_COLUMNS, clean
from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.options import CleaningOptions

PHQ9 = get_instrument("phq9")


def table(rows: list[dict]) -> pd.DataFrame:
    """Rows as read from a CSV: every cell text, items default to '1'."""
    frame = pd.DataFrame(rows)
    for item in PHQ9.items():
        if item not in frame:
            frame[item] = "1"
    frame.insert(0, "source_row", range(1, len(frame) + 1))
    return frame.astype({c: object for c in frame.columns if c != "source_row"})


def row(client: str | None, session: str, therapist: str = "T1", day: str = "0", **items: str) -> dict:
    return {"client_id": client, "therapist_id": therapist, "session": session, "day": day, **items}


def rules(result, status: str = "excluded") -> dict[int, str]:
    rows = result.ledger_rows
    return dict(zip(rows.loc[rows.status == status, "source_row"], rows.loc[rows.status == status, "rule"]))


def test_session_rules_exclude_with_reason() -> None:
    result = clean(table([row("A", "1"), row("A", "2.5"), row("A", "zero"), row("A", "0"),
                          row("A", None), row("A", "3.0")]), [PHQ9], CleaningOptions())
    assert rules(result) == {2: "session_not_integer", 3: "session_not_numeric",
                             4: "session_not_positive", 5: "session_missing"}
    assert list(result.sessions["session"]) == [1, 3]  # "3.0" is the whole number 3
    reasons = result.ledger_rows.set_index("source_row")["reason"]
    assert reasons[2] == "session '2.5' is not a whole number"


def test_items_out_of_range_or_text_become_missing_and_are_logged() -> None:
    result = clean(table([row("A", "1", phq9_1="7", phq9_2="abc", phq9_3="-1", phq9_4="3")]),
                   [PHQ9], CleaningOptions())
    cells = result.ledger_cells.set_index("column")
    assert cells.loc["phq9_1", ["old_value", "new_value", "rule"]].tolist() == ["7", None, "item_out_of_range"]
    assert cells.loc["phq9_2", "rule"] == "item_not_numeric"
    assert cells.loc["phq9_3", "rule"] == "item_out_of_range"
    assert "phq9_4" not in cells.index
    kept = result.sessions.iloc[0]
    assert np.isnan(kept["phq9_1"]) and np.isnan(kept["phq9_2"]) and kept["phq9_4"] == 3.0


def test_identical_duplicate_keeps_one() -> None:
    result = clean(table([row("A", "1"), row("A", "1"), row("A", "2")]), [PHQ9], CleaningOptions())
    assert rules(result) == {2: "duplicate_identical"}


@pytest.mark.parametrize("option, excluded", [("keep_first", {2}), ("keep_last", {1}),
                                              ("exclude_both", {1, 2})])
def test_conflicting_duplicates_follow_the_option(option: str, excluded: set[int]) -> None:
    frame = table([row("A", "1", phq9_1="0"), row("A", "1", phq9_1="3"), row("A", "2")])
    result = clean(frame, [PHQ9], CleaningOptions(duplicates=option))
    assert rules(result) == {r: "duplicate_conflicting" for r in excluded}


def test_date_order_flag_or_exclude() -> None:
    frame = table([row("A", "1", day="0"), row("A", "2", day="14"), row("A", "3", day="7")])
    flagged = clean(frame, [PHQ9], CleaningOptions())
    assert flagged.ledger_rows.set_index("source_row").loc[3, "flags"] == "date_order"
    assert len(flagged.sessions) == 3
    excluded = clean(frame, [PHQ9], CleaningOptions(date_order="exclude"))
    assert rules(excluded) == {3: "date_order"}


def test_client_with_two_therapists_flag_or_split() -> None:
    frame = table([row("A", "1", "T1"), row("A", "2", "T2"), row("B", "1", "T1")])
    flagged = clean(frame, [PHQ9], CleaningOptions())
    assert flagged.ledger_rows["flags"].tolist() == ["multiple_therapists"] * 2 + [""]
    split = clean(frame, [PHQ9], CleaningOptions(multiple_therapists="split"))
    assert sorted(split.sessions["client_id"]) == ["A@T1", "A@T2", "B"]
    assert (split.ledger_cells["rule"] == "multiple_therapists").sum() == 2


def test_min_sessions_excludes_short_clients() -> None:
    frame = table([row("A", "1"), row("A", "2"), row("B", "1")])
    result = clean(frame, [PHQ9], CleaningOptions(min_sessions=2))
    assert rules(result) == {3: "too_few_sessions"}


def test_missing_ids_and_whitespace() -> None:
    result = clean(table([row(None, "1"), row(" A ", "1"), row("A", "2", therapist="")]),
                   [PHQ9], CleaningOptions())
    assert rules(result) == {1: "missing_id", 3: "missing_id"}
    assert result.sessions["client_id"].tolist() == ["A"]
    assert result.ledger_cells.loc[0, ["old_value", "new_value"]].tolist() == [" A ", "A"]


def test_all_items_missing_is_an_error() -> None:
    frame = table([row("A", "1"), row("A", "2")])
    frame[PHQ9.items()] = np.nan
    with pytest.raises(AllianceDataError, match=r"every .*\(phq9\) item is missing.*items\.phq9"):
        clean(frame, [PHQ9], CleaningOptions(), source="f.csv")


def test_nothing_left_is_an_error() -> None:
    with pytest.raises(AllianceDataError, match="no row is left after cleaning"):
        clean(table([row("A", "x")]), [PHQ9], CleaningOptions())


def test_summary_counts_rules() -> None:
    result = clean(table([row("A", "1", phq9_1="9"), row("A", "1", phq9_1="9"), row("A", "x")]),
                   [PHQ9], CleaningOptions())
    summary = result.summary().set_index("rule")
    assert summary.loc["duplicate_identical", "rows_excluded"] == 1
    assert summary.loc["session_not_numeric", "rows_excluded"] == 1
    assert summary.loc["item_out_of_range", "cells_changed"] == 2


# --- property: nothing lost, nothing changed silently -------------------------------------

cell = st.one_of(st.none(), st.sampled_from(["0", "1", "2", "3", "3.0", "4", "-1", "x", " 2", "1.5"]))
session = st.one_of(st.none(), st.sampled_from(["1", "2", "3", "2.0", "0", "-2", "2.5", "a", "4"]))
ident = st.one_of(st.none(), st.sampled_from(["A", "B", "C", " A", "B "]))
therapist = st.sampled_from(["T1", "T2", None])
dirty_row = st.fixed_dictionaries({
    "client_id": ident, "therapist_id": therapist, "session": session,
    "day": st.one_of(st.none(), st.sampled_from(["0", "7", "3", "-4", "q"])),
    **{item: cell for item in PHQ9.items()},
})
options = st.builds(CleaningOptions,
                    duplicates=st.sampled_from(["keep_first", "keep_last", "exclude_both"]),
                    multiple_therapists=st.sampled_from(["flag", "split"]),
                    date_order=st.sampled_from(["flag", "exclude"]),
                    min_sessions=st.integers(1, 3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(dirty_row, min_size=1, max_size=25), opts=options)
def test_ledger_accounts_for_every_row_and_cell(rows: list[dict], opts: CleaningOptions) -> None:
    frame = pd.DataFrame(rows, dtype=object)
    frame.insert(0, "source_row", range(1, len(frame) + 1))
    try:
        result = clean(frame, [PHQ9], opts)
    except AllianceDataError as err:  # allowed only when nothing usable is left
        assert "no row is left" in str(err) or "item is missing in every kept row" in str(err)
        return
    ledger = result.ledger_rows
    assert list(ledger.columns) == list(ROW_COLUMNS)
    assert list(result.ledger_cells.columns) == list(CELL_COLUMNS)
    assert sorted(ledger["source_row"]) == list(range(1, len(frame) + 1))  # each row once
    assert (ledger["status"] == "kept").sum() + (ledger["status"] == "excluded").sum() == len(frame)
    assert set(result.sessions["source_row"]) == set(ledger.loc[ledger.status == "kept", "source_row"])
    assert (ledger.loc[ledger.status == "excluded", "rule"] != "").all()
    logged = set(zip(result.ledger_cells["source_row"], result.ledger_cells["column"]))
    original = frame.set_index("source_row")
    for _, kept in result.sessions.iterrows():
        for column in PHQ9.items() + ["day"]:
            before = pd.to_numeric(pd.Series([original.at[kept.source_row, column]]), errors="coerce")[0]
            after = kept[column]
            same = pd.isna(after) if pd.isna(before) else (not pd.isna(after) and before == after)
            assert same or (kept.source_row, column) in logged
        for column in ("client_id",):
            before = original.at[kept.source_row, column]
            assert before == kept[column] or (kept.source_row, column) in logged


@pytest.mark.parametrize("option, expected, new_value", [("missing", None, None),
                                                         ("round", 2.0, "2")])
def test_fractional_answers_on_whole_number_items_are_ledgered(option: str, expected,
                                                               new_value) -> None:
    from alliance_analysis.data.cleaning import clean
    from alliance_analysis.instruments import get_instrument

    wai = get_instrument("wai")
    frame = pd.DataFrame({"source_row": [1, 2], "client_id": ["a", "b"],
                          "therapist_id": ["t", "t"], "session": [1, 1],
                          **{item: [3.0, 3.0] for item in wai.items()}})
    frame.loc[0, "wai_1"] = 2.5
    result = clean(frame, [wai], CleaningOptions(fractional_items=option))
    value = result.sessions.loc[result.sessions["client_id"] == "a", "wai_1"].iloc[0]
    assert (pd.isna(value) if expected is None else value == expected)
    entry = result.ledger_cells[result.ledger_cells["rule"] == "item_not_integer"]
    assert entry[["source_row", "column", "old_value"]].values.tolist() == [[1, "wai_1", "2.5"]]
    assert (entry["new_value"].iloc[0] is None or pd.isna(entry["new_value"].iloc[0])
            if new_value is None else entry["new_value"].iloc[0] == new_value)


# --- decimal commas (issue 20) ----------------------------------------------------------------


def test_decimal_commas_are_refused_naming_column_rows_and_values() -> None:
    frame = table([row("A", "1", phq9_2="1,5"), row("A", "2", day="7,5"),
                   row("B", "1", phq9_2="2,0"), row("B", "2", phq9_2="0,5")])
    with pytest.raises(AllianceDataError) as caught:
        clean(frame, [PHQ9], CleaningOptions(), source="f.csv",
              source_columns={"phq9_2": "PHQ_2", "day": "Tag"})
    message = str(caught.value)
    assert message.startswith("f.csv: 4 number(s) are written with a decimal comma")
    assert "column 'PHQ_2' (phq9_2): row 1 '1,5', row 3 '2,0', row 4 '0,5'" in message
    assert "column 'Tag' (day): row 2 '7,5'" in message
    assert "set data.decimal: ','" in message


def test_decimal_comma_option_reads_them_and_keeps_the_text_in_the_ledger() -> None:
    frame = table([row("A", "1", phq9_2="2,0", phq9_3="7,5"),
                   row("A", "2", day="7,0", phq9_2="1", phq9_3="1")])
    result = clean(frame, [PHQ9], CleaningOptions(), decimal=",")
    sessions = result.sessions
    assert sessions["phq9_2"].tolist() == [2.0, 1.0] and sessions["day"].tolist() == [0, 7]
    cells = result.ledger_cells
    assert cells[["source_row", "column", "old_value", "rule"]].values.tolist() == [
        [1, "phq9_3", "7,5", "item_out_of_range"]]
    # thousands, text and numbers keep their usual handling
    mixed = table([row("A", "1", phq9_1="1.0", phq9_2="x,5")])
    result = clean(mixed, [PHQ9], CleaningOptions(), decimal=",")
    assert result.sessions.loc[0, "phq9_1"] == 1.0
    assert result.ledger_cells["rule"].tolist() == ["item_not_numeric"]
