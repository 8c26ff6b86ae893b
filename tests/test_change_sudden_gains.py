"""Sudden gains (Tang & DeRubeis 1999; Lutz et al. 2013): hand-built intervals just inside and
just outside each criterion, the adjusted critical values, and reversals.

Every expected value below is worked out by hand in the comments; comparisons of computed
quantities use a relative tolerance of 1e-12 (float arithmetic only).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.change.sudden_gains import check_interval, gains_by_client, sudden_gains

NAN = float("nan")


# Criterion 1: gain >= min_gain (6). Pre [20, 20, 20], post [x, x, x]: SDs 0, so criterion 3
# holds for any positive gain; criterion 2 needs gain >= 5 (25% of 20).
@pytest.mark.parametrize(("postgain", "expected"), [(14.0, True), (14.01, False)])
def test_criterion1_absolute_gain(postgain: float, expected: bool) -> None:
    check = check_interval([20, 20, 20], [postgain] * 3, min_change=6)
    assert check.criterion1 is expected  # gain 6 (at the threshold: in) or 5.99 (out)
    assert check.criterion2 and check.criterion3
    assert check.is_sudden is expected


# Criterion 2: gain >= 25% of the pre-gain score. Gain 6 from 24 is exactly 25%; from 24.04
# it is 6 / 24.04 = 24.96%.
@pytest.mark.parametrize(("pregain", "expected"), [(24.0, True), (24.04, False)])
def test_criterion2_relative_gain(pregain: float, expected: bool) -> None:
    check = check_interval([pregain] * 3, [pregain - 6] * 3, min_change=6)
    assert check.criterion1 and check.criterion3
    assert check.criterion2 is expected
    assert check.relative_magnitude == pytest.approx(6 / pregain, rel=1e-12)


# Criterion 3 with all six scores (df 4: the exact t quantile 2.7764451, printed 2.776). Pre
# [22, 18, 20]: mean 20, variance (4 + 4 + 0) / 2 = 4. Post [x, x + 2, x - 2]: mean x,
# variance 4. Pooled SD sqrt((2*4 + 2*4) / 4) = 2, so the mean difference 20 - x must exceed
# 2.7764451 * 2 = 5.5528902.
@pytest.mark.parametrize(("postgain", "expected"), [(14.44, True), (14.45, False)])
def test_criterion3_all_scores(postgain: float, expected: bool) -> None:
    check = check_interval([22, 18, 20], [postgain, postgain + 2, postgain - 2], min_change=5)
    assert (check.n_pre, check.n_post) == (3, 3)
    assert check.critical_value == pytest.approx(stats.t.ppf(0.975, 4), rel=1e-15)
    assert check.pooled_sd == pytest.approx(2.0, rel=1e-12)
    assert check.mean_pre - check.mean_post == pytest.approx(20 - postgain, rel=1e-12)
    assert check.criterion1 and check.criterion2  # gain 5.56 / 5.55 >= 5 and >= 25% of 20
    assert check.criterion3 is expected  # 5.56 > 5.552 in, 5.55 out


# One neighbour missing (df 3, 3.1824463; Lutz et al. 2013). Pre [NaN, 22, 18]: mean 20,
# variance (4 + 4) / 1 = 8. Post [x, x + 2, x - 2]: mean x, variance 4. Pooled SD
# sqrt((1*8 + 2*4) / 3) = sqrt(16/3) = 2.309401; critical 3.1824463 * 2.309401 = 7.349546.
@pytest.mark.parametrize(("postgain", "expected"), [(12.6, True), (12.7, False)])
def test_criterion3_one_missing(postgain: float, expected: bool) -> None:
    check = check_interval([NAN, 22, 18], [postgain, postgain + 2, postgain - 2], min_change=5)
    assert (check.n_pre, check.n_post) == (2, 3)
    assert check.critical_value == pytest.approx(stats.t.ppf(0.975, 3), rel=1e-15)
    assert check.pooled_sd == pytest.approx(math.sqrt(16 / 3), rel=1e-12)
    assert check.criterion1 and check.criterion2  # gain 18 - 12.6 = 5.4 >= 5 and >= 4.5
    assert check.criterion3 is expected  # 7.4 > 7.3495 in; 7.3 out
    # 7.3 would pass with the unadjusted 2.776 (2.776 * 2.309401 = 6.411): the adjustment bites
    assert 20 - 12.7 > 2.776 * math.sqrt(16 / 3)


# Two neighbours missing (df 2, 4.3026527). Pre [NaN, 22, 18]: mean 20, variance 8. Post
# [x, x + 2, NaN]: mean x + 1, variance 2. Pooled SD sqrt((8 + 2) / 2) = sqrt(5) = 2.236068;
# critical 4.3026527 * 2.236068 = 9.621032. Mean difference 20 - (x + 1) = 19 - x.
@pytest.mark.parametrize(("postgain", "expected"), [(9.3, True), (9.4, False)])
def test_criterion3_two_missing(postgain: float, expected: bool) -> None:
    check = check_interval([NAN, 22, 18], [postgain, postgain + 2, NAN], min_change=5)
    assert (check.n_pre, check.n_post) == (2, 2)
    assert check.critical_value == pytest.approx(stats.t.ppf(0.975, 2), rel=1e-15)
    assert check.pooled_sd == pytest.approx(math.sqrt(5), rel=1e-12)
    assert check.criterion3 is expected  # 9.7 > 9.6210 in; 9.6 out


def test_criterion3_needs_two_scores_each_side() -> None:
    check = check_interval([NAN, NAN, 20], [10, 10, 10], min_change=5)
    assert check.criterion3 is None and not check.is_sudden
    assert check.criterion1 and check.criterion2  # the other two hold: only 3 is missing


def test_interval_requires_scores_at_n_and_n_plus_1() -> None:
    with pytest.raises(ValueError, match="sessions n and n\\+1"):
        check_interval([20, 20, NAN], [10, 10, 10], min_change=5)


def _sessions(scores: dict[str, dict[int, float]], column: str = "phq9_total") -> pd.DataFrame:
    rows = [{"client_id": client, "therapist_id": "T1", "session": session, column: value}
            for client, by_session in scores.items() for session, value in by_session.items()]
    frame = pd.DataFrame(rows)
    return frame.astype({"session": "Int64"})


def test_sudden_gains_table_and_reversal() -> None:
    """Client A: gain 20 -> 12 between sessions 3 and 4; pre [20, 21, 20] (mean 20.333, SD
    0.577), post [12, 11, 12] (mean 11.667, SD 0.577): pooled SD 0.577, 2.776 * 0.577 = 1.60 <
    8.67. Reversal: the gain is 8, so a later score >= 12 + 4 = 16 reverses it; session 8
    scores exactly 16 (at least half the gain lost: reversed). Client B: the same gain but the
    highest later score is 15.9 (not reversed). Client C: session 4 unscored, so no interval
    3 -> 4 is checked, and 3 -> 5 is not consecutive."""
    a = {1: 20, 2: 21, 3: 20, 4: 12, 5: 11, 6: 12, 7: 13, 8: 16}
    b = {**a, 8: 15.9}
    c = {1: 20, 2: 21, 3: 20, 5: 11, 6: 12, 7: 13}
    gains = sudden_gains(_sessions({"A": a, "B": b, "C": c}), "phq9_total", min_gain=6)
    assert gains["client_id"].tolist() == ["A", "B"]
    first = gains.iloc[0]
    assert (first["pregain_session"], first["postgain_session"]) == (3, 4)
    assert (first["pregain_score"], first["postgain_score"], first["gain"]) == (20, 12, 8)
    assert first["mean_pre"] == pytest.approx(61 / 3, rel=1e-12)
    assert first["pooled_sd"] == pytest.approx(math.sqrt(1 / 3), rel=1e-12)
    assert first["reversal"] and first["reversal_session"] == 8
    assert not gains.iloc[1]["reversal"] and pd.isna(gains.iloc[1]["reversal_session"])


def test_gains_by_client_lists_everyone() -> None:
    a = {1: 20, 2: 21, 3: 20, 4: 12, 5: 11, 6: 12}
    sessions = _sessions({"A": a, "Z": {1: 10, 2: 10, 3: 10}})
    table = gains_by_client(sudden_gains(sessions, "phq9_total", 6), ["A", "Z"])
    assert table["n_gains"].tolist() == [1, 0]
    assert table["first_pregain_session"].tolist()[0] == 3
    assert pd.isna(table["first_pregain_session"].iloc[1])
    assert table["any_gain"].tolist() == [True, False]


def test_missing_score_column_is_a_data_error() -> None:
    with pytest.raises(AllianceDataError, match="gad7_total"):
        sudden_gains(_sessions({"A": {1: 1.0}}), "gad7_total", 4)


def test_no_gains_gives_typed_empty_table() -> None:
    gains = sudden_gains(_sessions({"A": {1: 10, 2: 10, 3: 10}}), "phq9_total", 6)
    assert gains.empty and gains["reversal"].dtype == np.dtype(bool)
    assert str(gains["pregain_session"].dtype) == "Int64"


def test_float_rounding_does_not_decide_criterion1() -> None:
    """8.2 - 2.2 is 5.999999999999999 in binary floating point: still a gain of 6 points."""
    assert 8.2 - 2.2 < 6
    assert check_interval([8.2] * 3, [2.2] * 3, min_change=6).criterion1


def test_default_critical_values_are_exact_t_quantiles() -> None:
    """The module default equals ChangeOptions' default: the exact two-tailed .05 t quantiles
    for df 4, 3, 2 (R: abs(qt(.025, df)), as suddengains computes them)."""
    from alliance_analysis.change.sudden_gains import CRITICAL_VALUES
    from alliance_analysis.options import ChangeOptions

    assert CRITICAL_VALUES == pytest.approx(tuple(stats.t.ppf(0.975, (4, 3, 2))), rel=1e-15)
    assert CRITICAL_VALUES == ChangeOptions().sudden_gain_critical
