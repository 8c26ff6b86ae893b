"""Scoring rules as data: ``scoring:`` in the parameters, rounding, and the scoring ledger.

Every score the scoring rule decided (rather than the items alone) has exactly one ledger
entry: prorated scores (``prorated``), scores left missing because too few items were answered
(``too_few_items``) and complete scores changed by rounding (``rounded``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alliance_analysis.data.cleaning import CELL_COLUMNS, ledger_text
from alliance_analysis.data.scoring import (PRORATED_RULE, ROUNDED_RULE, SCORING_RULES,
                                            TOO_FEW_ITEMS_RULE, round_scores, score)
from alliance_analysis.instruments import Instrument, get_instrument
from alliance_analysis.params import parse_params


def _table(instrument: Instrument, rows: list[list[float | None]]) -> pd.DataFrame:
    """A session table with one row of item values per entry of `rows`, source_row 1, 2, ..."""
    items = pd.DataFrame(rows, columns=instrument.items(), dtype="float64")
    return pd.concat([pd.DataFrame({"source_row": range(1, len(rows) + 1)}), items], axis=1)


def _with(key: str, **fields) -> Instrument:
    """A shipped instrument with some fields changed, as ``scoring:`` changes them."""
    return Instrument.model_validate({**get_instrument(key).model_dump(), **fields})


def _phq9(tmp_path: Path, rule: dict) -> Instrument:
    """The PHQ-9 of a run whose parameters say ``scoring: {phq9: rule}``."""
    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    params = parse_params({"name": "t", "data": {"path": str(data)},
                           "scoring": {"phq9": rule}}, base_dir=tmp_path)
    return next(i for i in params.instrument_definitions() if i.key == "phq9")


# Eight of nine PHQ-9 items answered, summing to 4, 12 and 20: prorated sums S / 8 x 9 of
# 4.5, 13.5 and 22.5 (exact in binary floating point), each exactly half-way.
EIGHT_OF_NINE = [[1, 1, 1, 1, 0, 0, 0, 0, None],
                 [2, 2, 2, 2, 1, 1, 1, 1, None],
                 [3, 3, 3, 3, 2, 2, 2, 2, None]]


# --------------------------------------------------------------------------------------------
# The parameters reach the instruments
# --------------------------------------------------------------------------------------------

def test_scoring_section_changes_the_instrument(tmp_path: Path) -> None:
    phq9 = _phq9(tmp_path, {"min_items": 8, "rounding": "half_even"})
    assert (phq9.prorate_min_items, phq9.rounding, phq9.rounding_decimals) == (8, "half_even", 0)
    shipped = get_instrument("phq9")
    assert phq9.model_dump(exclude={"prorate_min_items", "rounding"}) == \
        shipped.model_dump(exclude={"prorate_min_items", "rounding"})


def test_measures_carry_the_scoring_rule(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("client_id,therapist_id,session\n")
    params = parse_params({"name": "t", "data": {"path": str(data)},
                           "scoring": {"wai": {"rounding": "half_up", "decimals": 1}}},
                          base_dir=tmp_path)
    alliance, symptoms = params.measures()
    assert (alliance.rounding, alliance.rounding_decimals) == ("half_up", 1)
    assert symptoms == get_instrument("phq9")


# --------------------------------------------------------------------------------------------
# Rounding
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("rounding", "expected"), [
    ("half_even", [12.0, 14.0, -12.0, 12.0, 13.0]),
    ("half_up", [13.0, 14.0, -13.0, 12.0, 13.0]),
    ("none", [12.5, 13.5, -12.5, 12.4, 12.6]),
])
def test_round_scores_halves(rounding: str, expected: list[float]) -> None:
    values = pd.Series([12.5, 13.5, -12.5, 12.4, 12.6, np.nan], name="s")
    rounded = round_scores(values, rounding)
    assert rounded.iloc[:5].tolist() == expected
    assert np.isnan(rounded.iloc[5]) and rounded.name == "s"


def test_round_scores_treats_floating_point_noise_as_the_half_it_is() -> None:
    noisy = pd.Series([12.499999999999998, 13.500000000000002])
    assert round_scores(noisy, "half_up").tolist() == [13.0, 14.0]
    assert round_scores(noisy, "half_even").tolist() == [12.0, 14.0]


@pytest.mark.parametrize(("rounding", "totals", "bands"), [
    ("half_even", [4.0, 14.0, 22.0], ["minimal", "moderate", "severe"]),
    ("half_up", [5.0, 14.0, 23.0], ["mild", "moderate", "severe"]),
])
def test_prorated_halves_round_by_the_rule(tmp_path: Path, rounding: str, totals: list[float],
                                           bands: list[str]) -> None:
    phq9 = _phq9(tmp_path, {"min_items": 8, "rounding": rounding})
    result = score(_table(phq9, EIGHT_OF_NINE), [phq9])
    assert result.sessions["phq9_total"].tolist() == totals
    assert result.sessions["phq9_band"].tolist() == bands  # banded after rounding
    words = "rounded half to even" if rounding == "half_even" else "rounded half up"
    assert result.prorated[["new_value", "reason"]].values.tolist() == [
        [ledger_text(total), f"8 of 9 items answered; sum prorated as mean x 9; {exact} {words}"]
        for total, exact in zip(totals, ["4.5", "13.5", "22.5"], strict=True)]
    assert result.rounded.empty  # prorated scores are not logged twice
    assert result.missing.empty


def test_too_few_items_leaves_the_score_missing_with_a_ledger_entry(tmp_path: Path) -> None:
    phq9 = _phq9(tmp_path, {"min_items": 8, "rounding": "half_even"})
    seven = [1, 1, 1, 1, 1, 1, 1, None, None]
    result = score(_table(phq9, [seven, [None] * 9]), [phq9])
    assert result.sessions["phq9_total"].isna().all()
    assert result.sessions["phq9_n_items"].tolist() == [7, 0]
    assert result.missing.to_dict("records") == [{
        "source_row": 1, "column": "phq9_total", "old_value": None, "new_value": None,
        "rule": TOO_FEW_ITEMS_RULE,
        "reason": "7 of 9 items answered; at least 8 needed for a score"}]  # row 2: not given
    assert result.prorated.empty and result.rounded.empty


def test_without_prorating_any_missing_item_is_too_few() -> None:
    srs = get_instrument("srs")  # prorate_min_items None: all 4 items needed
    result = score(_table(srs, [[5, 5, 5, None]]), [srs])
    assert result.missing["reason"].tolist() == [
        "3 of 4 items answered; at least 4 needed for a score"]


def test_mean_instrument_rounds_to_one_decimal_and_logs_complete_scores() -> None:
    wai = _with("wai", rounding="half_even", rounding_decimals=1)
    # total 39 / 12 = 3.25; goal (4, 6, 8, 11) = 3.25; task (1, 2, 10, 12) = 3.5;
    # bond (3, 5, 7, 9) = 3.0
    complete = [4, 4, 3, 4, 3, 3, 3, 3, 3, 3, 3, 3]
    result = score(_table(wai, [complete]), [wai])
    row = result.sessions.iloc[0]
    assert (row["wai_total"], row["wai_goal"], row["wai_task"], row["wai_bond"]) == \
        (3.2, 3.2, 3.5, 3.0)
    assert result.rounded.to_dict("records") == [
        {"source_row": 1, "column": column, "old_value": "3.25", "new_value": "3.2",
         "rule": ROUNDED_RULE, "reason": "rounded half to even to 1 decimal"}
        for column in ("wai_total", "wai_goal")]
    half_up = score(_table(wai, [complete]), [_with("wai", rounding="half_up",
                                                    rounding_decimals=1)])
    assert half_up.sessions.loc[0, "wai_total"] == 3.3
    assert half_up.rounded["new_value"].tolist() == ["3.3", "3.3"]


def test_a_long_mean_is_logged_without_floating_point_noise() -> None:
    wai = _with("wai", rounding="half_up", rounding_decimals=2)
    result = score(_table(wai, [[4, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 2]]), [wai])  # 43 / 12
    total = result.rounded[result.rounded.column == "wai_total"]
    assert total[["old_value", "new_value", "reason"]].values.tolist() == [
        ["3.583333333", "3.58", "rounded half up to 2 decimals"]]


def test_a_score_already_on_the_grid_is_not_logged() -> None:
    wai = _with("wai", rounding="half_even", rounding_decimals=1)
    # two 4s and two 3s in each subscale: every scale's mean is 3.5
    result = score(_table(wai, [[4, 3, 4, 4, 3, 3, 4, 4, 3, 4, 3, 3]]), [wai])
    assert result.sessions.loc[0, ["wai_goal", "wai_task", "wai_bond"]].tolist() == [3.5] * 3
    assert result.sessions.loc[0, "wai_total"] == 3.5
    assert result.rounded.empty


def test_ledger_gathers_every_rule_in_row_and_column_order(tmp_path: Path) -> None:
    phq9 = _phq9(tmp_path, {"min_items": 8, "rounding": "half_even"})
    wai = _with("wai", rounding="half_even", rounding_decimals=1)
    frame = _table(phq9, [EIGHT_OF_NINE[1], [1] * 7 + [None] * 2])
    frame = frame.join(_table(wai, [[4, 4, 3, 4, 3, 3, 3, 3, 3, 3, 3, 3], [3] * 12])
                       .drop(columns="source_row"))
    result = score(frame, [phq9, wai])
    ledger = result.ledger
    assert list(ledger.columns) == list(CELL_COLUMNS)
    assert ledger[["source_row", "column", "rule"]].values.tolist() == [
        [1, "phq9_total", PRORATED_RULE], [1, "wai_goal", ROUNDED_RULE],
        [1, "wai_total", ROUNDED_RULE], [2, "phq9_total", TOO_FEW_ITEMS_RULE]]
    assert result.counts() == {PRORATED_RULE: 1, TOO_FEW_ITEMS_RULE: 1, ROUNDED_RULE: 2}


def test_empty_ledger_keeps_the_cell_columns() -> None:
    phq9 = get_instrument("phq9")
    result = score(_table(phq9, [[1] * 9]), [phq9])
    for frame in (result.prorated, result.missing, result.rounded, result.ledger):
        assert frame.empty and list(frame.columns) == list(CELL_COLUMNS)


# --------------------------------------------------------------------------------------------
# Property: every ledger entry count equals the scores it describes
# --------------------------------------------------------------------------------------------

_ITEM = st.one_of(st.none(), st.integers(0, 4))


@st.composite
def _case(draw) -> tuple[Instrument, pd.DataFrame]:
    """A 10-item instrument (two subscales) with a random scoring rule and item table."""
    n_items = 10
    instrument = Instrument(
        key="x", name="test", construct="outcome", rater="client", n_items=n_items,
        item_min=0, item_max=4, scoring=draw(st.sampled_from(["sum", "mean"])),
        subscales={"a": [1, 2, 3, 4], "b": [5, 6, 7, 8, 9, 10]},
        reverse=draw(st.lists(st.integers(1, n_items), max_size=3, unique=True)),
        prorate_min_items=draw(st.one_of(st.none(), st.integers(1, n_items))),
        rounding=draw(st.sampled_from(["none", "half_even", "half_up"])),
        rounding_decimals=draw(st.integers(0, 2)), source="test")
    rows = draw(st.lists(st.lists(_ITEM, min_size=n_items, max_size=n_items),
                         min_size=1, max_size=25))
    return instrument, _table(instrument, rows)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_case())
def test_every_ledger_count_equals_the_scores_it_describes(case) -> None:
    instrument, frame = case
    result = score(frame, [instrument])
    sessions = result.sessions
    items = frame[instrument.items()].notna()
    given_ = items.any(axis=1)
    scales = {"x_total": instrument.items(), "x_a": instrument.subscale_items("a"),
              "x_b": instrument.subscale_items("b")}
    for column, names in scales.items():
        answered = items[names].sum(axis=1)
        n = len(names)
        minimum = n if instrument.prorate_min_items is None else \
            int(np.ceil(instrument.prorate_min_items * n / instrument.n_items - 1e-12))
        value = sessions[column]
        assert (value.isna() == (answered < minimum)).all()
        logged = {rule: set(part.loc[part.column == column, "source_row"])
                  for rule, part in ((PRORATED_RULE, result.prorated),
                                     (TOO_FEW_ITEMS_RULE, result.missing),
                                     (ROUNDED_RULE, result.rounded))}
        too_few = value.isna() & given_
        if column == "x_total":  # for the total, "given" is "at least one answered"
            assert (too_few == ((answered > 0) & (answered < minimum))).all()
        assert logged[TOO_FEW_ITEMS_RULE] == set(frame.loc[too_few, "source_row"])
        prorated = value.notna() & (answered < n)
        assert logged[PRORATED_RULE] == set(frame.loc[prorated, "source_row"])
        exact = _exact(frame, instrument, names)
        changed = value.notna() & (answered == n) & ((exact - value).abs() > 1e-9)
        assert logged[ROUNDED_RULE] == set(frame.loc[changed, "source_row"])
        on_grid = (value.dropna() * 10 ** instrument.rounding_decimals).round(6) % 1 == 0
        assert instrument.rounding == "none" or on_grid.all()
    ledger = result.ledger
    assert len(ledger) == sum(result.counts().values())
    assert set(ledger["rule"]) <= set(SCORING_RULES)
    assert not ledger.duplicated(["source_row", "column"]).any()  # one entry per score
    scored = ledger[ledger.rule != TOO_FEW_ITEMS_RULE]
    by_row = sessions.set_index("source_row")
    for entry in scored.itertuples():
        assert entry.new_value == ledger_text(float(by_row.loc[entry.source_row, entry.column]))


def _exact(frame: pd.DataFrame, instrument: Instrument, names: list[str]) -> pd.Series:
    """The unrounded score of complete rows, recomputed independently of scoring.py."""
    items = frame[names].astype("float64")
    reverse = [f"{instrument.key}_{i}" for i in instrument.reverse
               if f"{instrument.key}_{i}" in names]
    items[reverse] = instrument.item_min + instrument.item_max - items[reverse]
    return items.sum(axis=1) if instrument.scoring == "sum" else items.mean(axis=1)
