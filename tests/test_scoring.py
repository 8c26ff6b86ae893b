"""Tests of scoring.py: hand-built scoring cases and reliability against psych and lavaan.

Reference values: ``tests/reference/psych_alpha.json``, written by ``tests/reference/psych_alpha.R``
(psych 2.2.9, lavaan 0.6-14, R 4.2.2) from the bfi neuroticism items N1-N5 in
``data/reference/bfi.csv``; the published psych::alpha output for those items is raw alpha .8140,
standardized .8147.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.data.cleaning import CELL_COLUMNS
from alliance_analysis.errors import AllianceDataError, AllianceParamsError, ConvergenceWarning
from alliance_analysis.instruments import Instrument, get_instrument
from alliance_analysis.data.scoring import score
from alliance_analysis.data.reliability import (RELIABILITY_COLUMNS, cronbach_alpha, omega_total,
                                                reliability_table)

ROOT = Path(__file__).resolve().parents[1]
NEUROTICISM = ["N1", "N2", "N3", "N4", "N5"]
PUBLISHED_TOL = 5e-5  # published values are printed to 4 decimals
# alpha, its Feldt interval and average_r are closed-form in the same covariances psych uses;
# they agree with psych to floating-point rounding (observed < 1e-14).
CLOSED_FORM_TOL = 1e-10
# omega: ours (scipy L-BFGS-B) and lavaan's ML optimizer stop at slightly different points
# (observed difference 2e-7).
OMEGA_TOL = 1e-5


@pytest.fixture(scope="module")
def bfi() -> pd.DataFrame:
    return pd.read_csv(ROOT / "data" / "reference" / "bfi.csv", index_col=0)[NEUROTICISM]


@pytest.fixture(scope="module")
def psych() -> dict:
    path = ROOT / "tests" / "reference" / "psych_alpha.json"
    return json.loads(path.read_text(encoding="utf-8"))["samples"]


def _table(instrument: Instrument, rows: list[list[float | None]], **extra) -> pd.DataFrame:
    """A session table with one row of item values per entry of `rows`, source_row 1, 2, ..."""
    items = pd.DataFrame(rows, columns=instrument.items(), dtype="float64")
    frame = pd.concat([pd.DataFrame({"source_row": range(1, len(rows) + 1)}), items], axis=1)
    return frame.assign(**extra)


# --------------------------------------------------------------------------------------------
# score
# --------------------------------------------------------------------------------------------

def test_core10_reverse_keyed_items_are_recoded_and_items_untouched():
    core10 = get_instrument("core10")  # items 2 and 3 reversed, 0..4, sum
    frame = _table(core10, [[0] * 10, [0, 4, 4, 0, 0, 0, 0, 0, 0, 0], [4] * 10])
    result = score(frame, [core10])
    assert result.sessions["core10_total"].tolist() == [8.0, 0.0, 32.0]
    pd.testing.assert_frame_equal(result.sessions[frame.columns], frame)
    assert result.prorated.empty


def test_sum_instrument_prorates_at_minimum_and_not_below():
    phq9 = get_instrument("phq9")  # prorate_min_items = 7 of 9
    seven = [3, 2, 2, 2, 2, 2, 2, None, None]  # 15 over 7 items -> 15 / 7 * 9
    six = [3, 2, 2, 2, 2, 2, None, None, None]
    result = score(_table(phq9, [seven, six]), [phq9])
    total = result.sessions["phq9_total"]
    assert total[0] == pytest.approx(15 / 7 * 9, abs=1e-12)
    assert np.isnan(total[1])
    assert result.sessions["phq9_n_items"].tolist() == [7, 6]
    assert result.prorated.to_dict("records") == [{
        "source_row": 1, "column": "phq9_total", "old_value": None,
        "new_value": str(15 / 7 * 9), "rule": "prorated",
        "reason": "7 of 9 items answered; sum prorated as mean x 9",
    }]


def test_mean_instrument_prorates_at_minimum_and_subscales_follow_their_own_minimum():
    wai = get_instrument("wai")  # mean, 10 of 12; subscales of 4 items need ceil(10/12*4) = 4
    ten = [4, 4, 4, 4, 4, 4, 4, 4, 2, 2, None, None]  # items 11 (goal) and 12 (task) missing
    nine = [4, 4, 4, 4, 4, 4, 4, 4, 2, None, None, None]
    result = score(_table(wai, [ten, nine]), [wai])
    scored = result.sessions
    assert scored.loc[0, "wai_total"] == pytest.approx(3.6, abs=1e-12)
    assert np.isnan(scored.loc[1, "wai_total"])
    assert np.isnan(scored.loc[0, "wai_goal"]) and np.isnan(scored.loc[0, "wai_task"])
    assert scored.loc[0, "wai_bond"] == 3.5  # items 3, 5, 7, 9: (4 + 4 + 4 + 2) / 4
    assert result.prorated[["source_row", "column", "new_value", "reason"]].values.tolist() == [
        [1, "wai_total", "3.6", "10 of 12 items answered; mean of the answered items"],
    ]


def test_subscale_minimum_is_the_scaled_minimum_rounded_up():
    scale = Instrument(key="x", name="test", construct="outcome", rater="client", n_items=10,
                       item_min=0, item_max=4, scoring="sum", prorate_min_items=7,
                       subscales={"a": [1, 2, 3, 4, 5], "b": [6, 7, 8, 9, 10]}, source="test")
    # subscale minimum: ceil(7 / 10 * 5) = ceil(3.5) = 4 of 5
    one_missing = [None, 1, 1, 1, 1, 2, 2, 2, 2, 2]
    two_missing = [None, None, 1, 1, 1, 2, 2, 2, 2, 2]
    result = score(_table(scale, [one_missing, two_missing]), [scale])
    assert result.sessions["x_a"].iloc[0] == 5.0  # 4 / 4 * 5
    assert np.isnan(result.sessions["x_a"].iloc[1])
    assert result.sessions["x_b"].tolist() == [10.0, 10.0]
    assert result.sessions["x_total"].tolist() == [pytest.approx(14 / 9 * 10), 13 / 8 * 10]
    entries = result.prorated[["source_row", "column", "reason"]].values.tolist()
    assert entries == [
        [1, "x_total", "9 of 10 items answered; sum prorated as mean x 10"],
        [2, "x_total", "8 of 10 items answered; sum prorated as mean x 10"],
        [1, "x_a", "4 of 5 items answered; sum prorated as mean x 5"],
    ]


def _phq9_items(total: int) -> list[int]:
    """PHQ-9 responses summing to `total`: as many 3s as fit, then the remainder."""
    threes, rest = divmod(total, 3)
    return [3] * threes + ([rest] if threes < 9 else []) + [0] * (8 - threes)


@pytest.mark.parametrize(("total", "band"), [
    (0, "minimal"), (4, "minimal"), (5, "mild"), (9, "mild"), (10, "moderate"),
    (14, "moderate"), (15, "moderately severe"), (19, "moderately severe"), (20, "severe"),
    (27, "severe"),
])
def test_phq9_bands_at_boundaries(total, band):
    phq9 = get_instrument("phq9")
    scored = score(_table(phq9, [_phq9_items(total)]), [phq9]).sessions
    assert scored.loc[0, "phq9_total"] == total
    assert scored.loc[0, "phq9_band"] == band


def test_band_is_an_ordered_categorical_in_band_order():
    phq9 = get_instrument("phq9")
    band = score(_table(phq9, [_phq9_items(12)]), [phq9]).sessions["phq9_band"]
    assert band.cat.ordered
    assert list(band.cat.categories) == [label for _, label in phq9.bands]


def test_all_items_missing_gives_missing_scores_and_no_ledger_entry():
    phq9, wai = get_instrument("phq9"), get_instrument("wai")
    frame = _table(phq9, [[None] * 9]).join(_table(wai, [[None] * 12]).drop(columns="source_row"))
    result = score(frame, [phq9, wai])
    row = result.sessions.iloc[0]
    for column in ["phq9_total", "wai_total", "wai_goal", "wai_task", "wai_bond"]:
        assert np.isnan(row[column])
    assert pd.isna(row["phq9_band"])
    assert (row["phq9_n_items"], row["wai_n_items"]) == (0, 0)
    assert result.prorated.empty
    assert list(result.prorated.columns) == list(CELL_COLUMNS)


def test_score_columns_follow_the_instruments_items():
    phq9, wai = get_instrument("phq9"), get_instrument("wai")
    wai_items = _table(wai, [[3] * 12]).drop(columns="source_row")
    frame = _table(phq9, [[1] * 9], session=1).join(wai_items)
    frame = frame.assign(age=30)
    columns = list(score(frame, [phq9, wai]).sessions.columns)
    assert columns == (["source_row", *phq9.items(), "phq9_total", "phq9_band", "phq9_n_items",
                        "session", *wai.items(), "wai_total", "wai_goal", "wai_task", "wai_bond",
                        "wai_n_items", "age"])


def test_nullable_integer_items_are_scored():
    gad7 = get_instrument("gad7")  # 6 of 7
    frame = _table(gad7, [[1, 1, 1, 1, 1, 1, None]]).astype({c: "Int64" for c in gad7.items()})
    result = score(frame, [gad7])
    assert result.sessions.loc[0, "gad7_total"] == 7.0
    assert result.prorated.loc[0, "new_value"] == "7"
    assert str(result.sessions["gad7_1"].dtype) == "Int64"


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.drop(columns="source_row"), "source_row"),
    (lambda f: f.drop(columns="phq9_4"), "phq9_4"),
    (lambda f: f.assign(phq9_2=[4]), "outside 0..3, first 4 at source_row 1"),
    (lambda f: f.assign(phq9_2=["2"]), "not numbers"),
    (lambda f: f.assign(phq9_total=[9]), "phq9_total"),
])
def test_unscorable_tables_are_refused(change, message):
    phq9 = get_instrument("phq9")
    with pytest.raises(AllianceDataError, match=message):
        score(change(_table(phq9, [[1] * 9])), [phq9])


# --------------------------------------------------------------------------------------------
# cronbach_alpha and omega_total
# --------------------------------------------------------------------------------------------

def test_alpha_pairwise_reproduces_published_and_psych_output(bfi, psych):
    result = cronbach_alpha(bfi, missing="pairwise")
    assert abs(result.alpha - 0.8140) <= PUBLISHED_TOL
    assert abs(result.std_alpha - 0.8147) <= PUBLISHED_TOL
    reference = psych["all_rows_pairwise"]["alpha"]
    _assert_matches_psych(result, reference)
    assert result.n == reference["ci.feldt"]["n.obs"] == 2800


def test_alpha_listwise_matches_psych_on_complete_cases(bfi, psych):
    result = cronbach_alpha(bfi)
    reference = psych["complete_cases"]["alpha"]
    _assert_matches_psych(result, reference)
    assert result.n == reference["n_rows"] == 2694


def _assert_matches_psych(result, reference: dict) -> None:
    total, feldt = reference["total"], reference["ci.feldt"]
    assert result.k == feldt["n.var"] == 5
    assert result.alpha == pytest.approx(total["raw_alpha"], abs=CLOSED_FORM_TOL)
    assert result.std_alpha == pytest.approx(total["std.alpha"], abs=CLOSED_FORM_TOL)
    assert result.average_r == pytest.approx(total["average_r"], abs=CLOSED_FORM_TOL)
    assert result.ci_low == pytest.approx(feldt["lower"], abs=CLOSED_FORM_TOL)
    assert result.ci_high == pytest.approx(feldt["upper"], abs=CLOSED_FORM_TOL)


def test_alpha_interval_narrows_with_the_confidence_level(bfi):
    wide, narrow = cronbach_alpha(bfi, ci=0.99), cronbach_alpha(bfi, ci=0.90)
    assert wide.ci_low < narrow.ci_low < narrow.alpha < narrow.ci_high < wide.ci_high


@pytest.mark.parametrize(("items", "message"), [
    (pd.DataFrame({"a": [1.0, 2.0, 3.0]}), "at least 2 items"),
    (pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [2.0, 2.0, 2.0]}), r"\['b'\] do not vary"),
    (pd.DataFrame({"a": [1.0, None], "b": [2.0, 3.0]}), "at least 2 cases"),
])
def test_alpha_refuses_what_it_cannot_estimate(items, message):
    with pytest.raises(AllianceDataError, match=message):
        cronbach_alpha(items)


@pytest.mark.parametrize("arguments", [{"ci": 1.0}, {"ci": 0}, {"missing": "available"}])
def test_alpha_refuses_bad_arguments(bfi, arguments):
    with pytest.raises(AllianceParamsError):
        cronbach_alpha(bfi, **arguments)


def test_omega_total_matches_one_factor_ml_cfa_from_lavaan(bfi, psych):
    # lavaan fitted N =~ N1..N5 by ML to the complete cases' covariances (std.lv = TRUE). ML is
    # scale-invariant, so standardizing lavaan's solution by its implied item SDs, which equal
    # the sample SDs at an ML optimum, gives the correlation-matrix solution omega_total fits.
    cfa = psych["complete_cases"]["omega_cfa"]
    loadings = np.array([cfa["loadings"][item] for item in NEUROTICISM])
    residuals = np.array([cfa["residual_variances"][item] for item in NEUROTICISM])
    sd = np.sqrt(loadings**2 + residuals)
    common = (loadings / sd).sum() ** 2
    expected = common / (common + (residuals / sd**2).sum())
    assert omega_total(bfi) == pytest.approx(expected, abs=OMEGA_TOL)


def test_omega_total_refuses_two_items_and_singular_correlations():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 3))
    with pytest.raises(AllianceDataError, match="at least 3 items"):
        omega_total(pd.DataFrame(x[:, :2], columns=["a", "b"]))
    collinear = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 0] + x[:, 1]})
    with pytest.raises(AllianceDataError, match="singular"):
        omega_total(collinear)


# --------------------------------------------------------------------------------------------
# reliability_table
# --------------------------------------------------------------------------------------------

def _simulated_core10(n_clients: int, n_sessions: int, seed: int = 7) -> pd.DataFrame:
    """One-factor CORE-10 responses, items 2 and 3 worded in the opposite direction."""
    core10 = get_instrument("core10")
    rng = np.random.default_rng(seed)
    level = np.repeat(rng.normal(size=n_clients), n_sessions)
    distress = level + rng.normal(scale=0.5, size=level.size)
    sign = np.where(np.isin(np.arange(1, 11), core10.reverse), -1.0, 1.0)
    raw = 2 + sign * distress[:, None] + rng.normal(scale=0.8, size=(level.size, 10))
    items = pd.DataFrame(np.clip(np.rint(raw), 0, 4), columns=core10.items())
    ids = pd.DataFrame({"source_row": np.arange(1, level.size + 1),
                        "client_id": np.repeat(np.arange(n_clients), n_sessions).astype(str),
                        "session": np.tile(np.arange(1, n_sessions + 1), n_clients)})
    return pd.concat([ids, items], axis=1)


def test_reliability_table_recodes_reverse_items_and_splits_occasions():
    core10 = get_instrument("core10")
    sessions = _simulated_core10(n_clients=120, n_sessions=3)
    sessions.loc[5, "core10_4"] = np.nan  # client 1, session 3: excluded listwise
    table = reliability_table(sessions, [core10])
    assert list(table.columns) == list(RELIABILITY_COLUMNS)
    assert table[["scale", "occasion", "n", "k"]].values.tolist() == [
        ["total", "baseline", 120, 10], ["total", "all sessions", 359, 10],
    ]
    recoded = sessions[core10.items()].copy()
    recoded[["core10_2", "core10_3"]] = 4 - recoded[["core10_2", "core10_3"]]
    baseline = recoded[sessions["session"] == 1]
    expected = cronbach_alpha(baseline)
    row = table.iloc[0]
    assert (row["alpha"], row["ci_low"], row["ci_high"]) == (
        expected.alpha, expected.ci_low, expected.ci_high)
    assert row["omega_total"] == omega_total(baseline)
    assert row["alpha"] > 0.8
    assert row["note"] == ""
    assert "repeated measures" in table.iloc[1]["note"]


def test_reliability_table_reports_why_a_value_is_missing():
    scale = Instrument(key="y", name="test", construct="alliance", rater="client", n_items=3,
                       item_min=1, item_max=5, scoring="mean",
                       subscales={"pair": [1, 2], "single": [3]}, source="test")
    sessions = _table(scale, [[1, 2, 3], [2, 2, 4], [4, 5, 5], [3, 3, 2]], session=[1, 1, 1, 2])
    with pytest.warns(ConvergenceWarning, match="doubtful"):  # all 4 sessions: a Heywood case
        table = reliability_table(sessions, [scale]).set_index(["scale", "occasion"])
    assert table.loc[("total", "baseline"), "n"] == 3
    assert np.isnan(table.loc[("total", "baseline"), "omega_total"])
    assert "singular" in table.loc[("total", "baseline"), "note"]
    assert not np.isnan(table.loc[("pair", "baseline"), "alpha"])
    assert table.loc[("pair", "baseline"), "note"] == "omega: needs at least 3 items; got 2"
    single = table.loc[("single", "baseline")]
    assert np.isnan(single["alpha"]) and np.isnan(single["omega_total"])
    assert single["note"] == "alpha and omega: needs at least 2 items; got 1"


def test_score_refuses_two_instruments_with_one_key():
    phq9 = get_instrument("phq9")
    with pytest.raises(AllianceParamsError, match="distinct keys"):
        score(_table(phq9, [[1] * 9]), [phq9, phq9])


def test_scores_left_missing_are_counted_per_instrument(tmp_path: Path) -> None:
    """Issue 20: the scores left missing for too few items, per instrument, in the headline."""
    from alliance_analysis.data.prepare import prepare
    from alliance_analysis.data.scoring import PRORATED_RULE, TOO_FEW_ITEMS_RULE
    from alliance_analysis.params import parse_params

    data = ROOT / "tests" / "bad_inputs" / "too_few_items.csv"  # rows 5 (PHQ-9) and 6 (WAI)
    params = parse_params({"name": "t", "data": {"path": str(data)},
                           "instruments": ["wai", "phq9"]}, base_dir=tmp_path)
    prepared = prepare(params, tmp_path / "processed")
    counts = prepared.score_counts().set_index("instrument")
    assert list(counts.columns) == ["scores_prorated", "scores_missing", "scores_rounded"]
    cells = prepared.ledger_cells
    for key in ("wai", "phq9"):
        scales = cells["column"].str.match(fr"{key}_(total|goal|task|bond)$")
        for rule, column in ((TOO_FEW_ITEMS_RULE, "scores_missing"),
                             (PRORATED_RULE, "scores_prorated")):
            assert counts.loc[key, column] == (scales & (cells["rule"] == rule)).sum()
    assert counts.loc["phq9", "scores_missing"] == 1 and counts.loc["wai", "scores_missing"] >= 1
    headline = prepared.headline()
    assert headline["clean.scores_missing"] == counts["scores_missing"].sum()
    assert headline["clean.scores_missing.wai"] == counts.loc["wai", "scores_missing"]
    assert headline["clean.scores_missing.phq9"] == 1
