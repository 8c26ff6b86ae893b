"""Alliance ruptures and repairs: hand-built clients just inside and outside each criterion.

The SD criterion is checked with series whose dips sit a known number of client SDs below the
client mean, derived by hand: k equal dips of depth d among n scores otherwise equal to c give
mean c - k d / n and SD d sqrt(k (n - k) / (n (n - 1))), so each dip is
sqrt((n - k)(n - 1) / (k n)) SDs below the mean, whatever c and d are:

    one dip in 6 scores: sqrt(5 * 5 / 6)  = 2.041 SD   (inside 2 SD)
    one dip in 5 scores: sqrt(4 * 4 / 5)  = 1.789 SD   (inside 1 SD, outside 2 SD)
    two dips in 5:       sqrt(3 * 4 / 10) = 1.095 SD   (inside 1 SD)
    two dips in 4:       sqrt(2 * 3 / 8)  = 0.866 SD   (outside 1 SD)

Values are multiples of 1/4, exact in binary floating point.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from alliance_analysis.errors import AllianceParamsError, ConvergenceWarning
from alliance_analysis.change.ruptures import (criteria_labels, criterion_label, rupture_counts,
                                        rupture_outcome, rupture_summary, ruptures)


def _sessions(scores: dict[str, list[float | None]]) -> pd.DataFrame:
    rows = [{"client_id": client, "therapist_id": "T1", "session": i + 1, "wai_total": value}
            for client, values in scores.items() for i, value in enumerate(values)]
    return pd.DataFrame(rows).astype({"session": "Int64", "wai_total": "float"})


def _events(scores: dict[str, list[float | None]], **kwargs: object) -> pd.DataFrame:
    return ruptures(_sessions(scores), "wai_total", **kwargs)


@pytest.mark.parametrize(("values", "sd1", "sd2"), [
    ([4, 4, 3, 4, 4, 4], [3], [3]),          # one dip in 6: 2.041 SD, inside 2 SD
    ([4, 4, 3, 4, 4], [3], []),              # one dip in 5: 1.789 SD, inside 1 but not 2 SD
    ([4, 3, 4, 3, 4], [2, 4], []),           # two dips in 5: 1.095 SD each, inside 1 SD
    ([4, 3, 4, 3], [], []),                  # two dips in 4: 0.866 SD, outside 1 SD
])
def test_sd_criteria(values: list[float], sd1: list[int], sd2: list[int]) -> None:
    events = _events({"A": values})
    assert events.loc[events["criterion"] == "sd1", "rupture_session"].tolist() == sd1
    assert events.loc[events["criterion"] == "sd2", "rupture_session"].tolist() == sd2


def test_dip_depth_in_sds_matches_hand_formula() -> None:
    events = _events({"A": [4, 4, 3, 4, 4, 4]})
    row = events.iloc[0]
    assert row["client_mean"] == pytest.approx(4 - 1 / 6, rel=1e-12)
    assert row["client_sd"] == pytest.approx(math.sqrt(1 / 6), rel=1e-12)  # sqrt(1*5/(6*5))
    depth = (row["client_mean"] - row["alliance"]) / row["client_sd"]
    assert depth == pytest.approx(math.sqrt(25 / 6), rel=1e-12)


def test_drop_criterion_at_and_below_threshold() -> None:
    """Drops of 0.5 (session 2) and 1.0 (session 4) from the previous session."""
    values = {"A": [4, 3.5, 4, 3, 4]}
    at = _events(values, sd_multiples=(9.0,), drop=0.5)  # sd 9: no SD rupture at all
    assert at.loc[at["criterion"] == "drop", "rupture_session"].tolist() == [2, 4]
    above = _events(values, sd_multiples=(9.0,), drop=0.75)
    assert above.loc[above["criterion"] == "drop", "rupture_session"].tolist() == [4]


def test_consecutive_sessions_are_one_rupture_repaired_at_pre_level() -> None:
    """Drops at sessions 2 and 3 form one rupture (2-3); the pre-rupture level is session 1's
    4.0, regained at session 4 (exactly 4.0 counts: at or above)."""
    events = _events({"A": [4, 3, 2, 4, 4]}, sd_multiples=(9.0,), drop=1.0)
    row = events.iloc[0]
    assert (row["rupture_session"], row["end_session"], row["n_sessions"]) == (2, 3, 2)
    assert (row["alliance"], row["lowest"], row["pre_rupture_level"]) == (3, 2, 4)
    assert row["pre_rupture_session"] == 1
    assert row["repaired"] and row["repair_session"] == 4


@pytest.mark.parametrize(("window", "back", "repaired"), [
    (3, 4.0, True),    # back to the pre-rupture level at session 3 + 3 = 6: inside the window
    (2, 4.0, False),   # the same return is one session too late for a 2-session window
    (3, 3.75, False),  # back to just below the pre-rupture level: not repaired
])
def test_repair_window_and_level(window: int, back: float, repaired: bool) -> None:
    values = {"A": [4, 4, 2.5, 3.25, 3.5, back, 3.5, 3.5]}
    events = _events(values, sd_multiples=(9.0,), drop=1.5, repair_within=window)
    row = events.iloc[0]
    assert (row["rupture_session"], row["pre_rupture_level"]) == (3, 4.0)
    assert bool(row["repaired"]) is repaired
    assert bool(row["window_complete"])  # the data reach session 3 + window


def test_rupture_at_first_session_has_no_repair_verdict() -> None:
    events = _events({"A": [1, 4, 4, 4, 4, 4]})  # one dip in 6 scores: 2.04 SD, session 1
    assert events["rupture_session"].tolist() == [1, 1]  # sd1 and sd2
    assert events["repaired"].isna().all() and events["pre_rupture_session"].isna().all()


def test_unrepaired_rupture_near_the_end_is_marked_incomplete() -> None:
    events = _events({"A": [4, 4, 4, 4, 3]})  # one dip in 5: 1.789 SD, at the last session
    row = events.iloc[0]
    assert not row["repaired"] and not row["window_complete"]


def test_counts_summary_and_assessment() -> None:
    sessions = _sessions({"A": [4, 4, 3, 4, 4, 4], "B": [4, 4, 4, 4], "C": [4, None, 3]})
    events = ruptures(sessions, "wai_total")
    counts = rupture_counts(events, sessions, "wai_total", ["sd1", "sd2"])
    sd1 = counts[counts["criterion"] == "sd1"].set_index("client_id")
    assert sd1.loc["A", "n_ruptures"] == 1 and sd1.loc["A", "n_repaired"] == 1
    assert sd1.loc["B", "n_ruptures"] == 0 and not sd1.loc["B", "any_resolved"]
    assert not sd1.loc["C", "assessed"] and pd.isna(sd1.loc["C", "n_ruptures"])  # 2 scores
    summary = rupture_summary(counts, events).set_index("criterion")
    assert summary.loc["sd1", "n_assessed"] == 2 and summary.loc["sd1", "n_clients"] == 1
    assert summary.loc["sd2", "percent_repaired"] == 100.0


def test_labels() -> None:
    assert [criterion_label(k) for k in (1.0, 2.0, 1.5)] == ["sd1", "sd2", "sd1_5"]
    assert criteria_labels((1.0, 2.0), 0.5) == ["sd1", "sd2", "drop"]
    with pytest.raises(AllianceParamsError, match="must differ"):
        criteria_labels((1.0, 1.0), None)


# R reference for the outcome model: R 4.2.2, `lm(change ~ resolved + pre)` on the 20 clients
# below; coef(summary(m)), confint(m), logLik(m), AIC(m), BIC(m), summary(m)$r.squared.
RESOLVED = [0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1]
PRE = [21, 13, 10, 16, 15, 18, 23, 12, 21, 10, 13, 20, 11, 18, 15, 16, 23, 21, 21, 16]
CHANGE = [-8.9, -8.4, -3.8, -6.8, -12.3, -9.8, -10.3, -7.2, -10.8, -2.9, -1.2, -8.7, -7.5,
          -4.2, -4.3, -5.7, -7.3, -5.2, -8.9, -9.2]
R_LM = {  # term: (estimate, se, ci_low, ci_high, p)
    "(Intercept)": (-1.803114186851, 2.429549764426, -6.929016126959, 3.3227877532567,
                    0.4681215361259),
    "any_resolved": (-1.136307464162, 1.218560745346, -3.707245907229, 1.4346309789048,
                     0.3641340604764),
    "pre": (-0.284799802274, 0.145635359282, -0.592063551971, 0.0224639474233,
            0.0671572402442),
}


def test_rupture_outcome_matches_r_lm() -> None:
    """Tolerance 1e-8 relative: R printed 12-13 significant digits; both are exact OLS."""
    ids = [f"C{i:02d}" for i in range(20)]
    counts = pd.DataFrame({"client_id": ids, "criterion": "sd1", "assessed": True,
                           "any_resolved": pd.array([bool(r) for r in RESOLVED], "boolean")})
    change = pd.DataFrame({"client_id": ids, "pre": PRE, "change": CHANGE})
    result = rupture_outcome(counts, change, "sd1", n_therapists=4)
    assert result.name == "rupture_outcome_sd1"
    params = result.params.set_index("term")
    for term, expected in R_LM.items():
        got = params.loc[term, ["estimate", "se", "ci_low", "ci_high", "p"]].to_numpy(float)
        assert got == pytest.approx(expected, rel=1e-8), term
    assert result.fit["loglik"] == pytest.approx(-46.118652052, rel=1e-8)
    assert result.fit["aic"] == pytest.approx(100.237304104, rel=1e-8)
    assert result.fit["bic"] == pytest.approx(104.220233198, rel=1e-8)
    assert result.fit["r2"] == pytest.approx(0.257465402267, rel=1e-8)
    assert result.fit["converged"] and result.fit["n_therapists"] == 4


def test_rupture_outcome_without_any_resolved_rupture_is_flagged() -> None:
    counts = pd.DataFrame({"client_id": ["A", "B", "C", "D"], "criterion": "sd2",
                           "assessed": True, "any_resolved": pd.array([False] * 4, "boolean")})
    change = pd.DataFrame({"client_id": ["A", "B", "C", "D"], "pre": [10, 12, 14, 16],
                           "change": [-1, -2, -3, -5]})
    with pytest.warns(ConvergenceWarning, match="any_resolved"):
        result = rupture_outcome(counts, change, "sd2")
    assert not result.fit["converged"] and result.params["estimate"].isna().all()
    assert "any_resolved" in result.fit["warnings"][0]


def test_float_rounding_does_not_decide_a_threshold() -> None:
    """2.3 - 1.8 is 0.49999999999999978 in binary floating point: still a drop of 0.5."""
    assert 2.3 - 1.8 < 0.5
    events = _events({"A": [2.3, 1.8, 2.3, 2.3]}, sd_multiples=(9.0,), drop=0.5)
    assert events["rupture_session"].tolist() == [2]


def test_no_ruptures_at_all_counts_zero() -> None:
    sessions = _sessions({"A": [4, 4, 4, 4], "B": [3.5, 3.5, 3.5]})
    events = ruptures(sessions, "wai_total")
    counts = rupture_counts(events, sessions, "wai_total", ["sd1", "sd2"])
    assert events.empty and counts["n_ruptures"].tolist() == [0, 0, 0, 0]
    assert rupture_summary(counts, events)["n_ruptures"].tolist() == [0, 0]
