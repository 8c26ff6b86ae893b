"""Sudden losses (the mirror image of sudden gains; Lutz et al. 2013, suddengains' identify_sl):
hand-built intervals at each criterion's boundary, the reversal, and every client of a
simulated caseload and of the demo checked against an independent implementation written
out below with plain loops (a wide score matrix, as R's suddengains works, the t critical
values from scipy at run time, the means and SDs from the standard library).

The R package suddengains 0.7.2 was not installed where these tests were written, and its
criterion 2 for losses (``x_n - x_{n+1} <= 0.25 * x_n``) is met by every rise; the reference
below applies the criterion this project uses, the mirror image of the gains criterion (the
rise is at least 25% of the pre-loss score). Tolerances: 1e-12 relative (float arithmetic
only).
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance_analysis.change.sudden_gains import (CRITICAL_VALUES, LOSS_COLUMNS,
                                                   check_interval, losses_by_client,
                                                   sudden_gains, sudden_losses)

NAN = float("nan")


def _sessions(scores: dict[str, dict[int, float]]) -> pd.DataFrame:
    rows = [{"client_id": client, "therapist_id": "T1", "session": session, "phq9_total": value}
            for client, by_session in scores.items() for session, value in by_session.items()]
    return pd.DataFrame(rows).astype({"session": "Int64"})


# Criterion 1: rise >= 6. Pre [12, 12, 12] (mean 12, SD 0), post [x, x, x] (SD 0): criterion 3
# holds for any rise; criterion 2 needs a rise >= 3 (25% of 12).
@pytest.mark.parametrize(("postloss", "expected"), [(18.0, True), (17.99, False)])
def test_criterion1_absolute_rise(postloss: float, expected: bool) -> None:
    check = check_interval([12, 12, 12], [postloss] * 3, min_change=6, identify="loss")
    assert check.magnitude == pytest.approx(postloss - 12, rel=1e-12)
    assert check.criterion1 is expected and check.criterion2 and check.criterion3
    assert check.is_sudden is expected


# Criterion 2 on the rise: a rise of 6 from 24 is exactly 25% (in); from 24.04 it is 24.96%
# (out). suddengains 0.7.2 would accept both (any rise passes its criterion 2 for losses).
@pytest.mark.parametrize(("preloss", "expected"), [(24.0, True), (24.04, False)])
def test_criterion2_relative_rise(preloss: float, expected: bool) -> None:
    check = check_interval([preloss] * 3, [preloss + 6] * 3, min_change=6, identify="loss")
    assert check.criterion1 and check.criterion3
    assert check.criterion2 is expected
    assert check.relative_magnitude == pytest.approx(6 / preloss, rel=1e-12)


# Criterion 3 with all six scores (df 4). Pre [8, 12, 10]: mean 10, variance 4. Post
# [x, x + 2, x - 2]: mean x, variance 4; pooled SD 2. The rise of the means, x - 10, must
# exceed 2.7764451 * 2 = 5.5528902.
@pytest.mark.parametrize(("postloss", "expected"), [(15.56, True), (15.55, False)])
def test_criterion3_all_scores(postloss: float, expected: bool) -> None:
    check = check_interval([8, 12, 10], [postloss, postloss + 2, postloss - 2], min_change=5,
                           identify="loss")
    assert check.critical_value == pytest.approx(stats.t.ppf(0.975, 4), rel=1e-12)
    assert check.pooled_sd == pytest.approx(2.0, rel=1e-12)
    assert check.criterion1 and check.criterion2  # rise 5.56 / 5.55 >= 5 and >= 2.5
    assert check.criterion3 is expected


# Two outer scores missing (df 2). Pre [NaN, 8, 12]: mean 10, variance 8. Post [x, x + 2,
# NaN]: mean x + 1, variance 2; pooled SD sqrt(5); 4.3026527 * sqrt(5) = 9.6210315.
@pytest.mark.parametrize(("postloss", "expected"), [(18.63, True), (18.62, False)])
def test_criterion3_two_missing(postloss: float, expected: bool) -> None:
    check = check_interval([NAN, 8, 12], [postloss, postloss + 2, NAN], min_change=5,
                           identify="loss")
    assert (check.n_pre, check.n_post) == (2, 2)
    assert check.critical_value == pytest.approx(stats.t.ppf(0.975, 2), rel=1e-12)
    assert check.criterion3 is expected  # 9.63 > 9.6210 in; 9.62 out


def test_a_fall_is_not_a_loss_and_a_rise_is_not_a_gain() -> None:
    assert check_interval([20, 20, 20], [10, 10, 10], 6).is_sudden
    assert not check_interval([20, 20, 20], [10, 10, 10], 6, identify="loss").is_sudden
    assert not check_interval([10, 10, 10], [20, 20, 20], 6).is_sudden
    with pytest.raises(ValueError, match="'gain' or 'loss'"):
        check_interval([10, 10, 10], [20, 20, 20], 6, identify="sl")  # type: ignore[arg-type]


def test_sudden_losses_table_and_reversal() -> None:
    """Client A: loss 10 -> 18 between sessions 3 and 4 (pre [9, 10, 10], post [18, 19, 18]);
    the loss is 8, so a later score <= 18 - 4 = 14 reverses it: session 8 scores exactly 14.
    Client B: the same loss, lowest later score 14.1 (not reversed). Client G: a sudden gain,
    which is not a loss."""
    a = {1: 9, 2: 10, 3: 10, 4: 18, 5: 19, 6: 18, 7: 17, 8: 14}
    b = {**a, 8: 14.1}
    g = {1: 20, 2: 21, 3: 20, 4: 12, 5: 11, 6: 12}
    losses = sudden_losses(_sessions({"A": a, "B": b, "G": g}), "phq9_total", min_loss=6)
    assert list(losses.columns) == list(LOSS_COLUMNS)
    assert losses["client_id"].tolist() == ["A", "B"]
    first = losses.iloc[0]
    assert (first["preloss_session"], first["postloss_session"]) == (3, 4)
    assert (first["preloss_score"], first["postloss_score"], first["loss"]) == (10, 18, 8)
    assert first["relative_loss"] == pytest.approx(0.8, rel=1e-12)
    assert first["mean_post"] == pytest.approx(55 / 3, rel=1e-12)
    assert first["reversal"] and first["reversal_session"] == 8
    assert not losses.iloc[1]["reversal"] and pd.isna(losses.iloc[1]["reversal_session"])
    per_client = losses_by_client(losses, ["A", "B", "G"]).set_index("client_id")
    assert per_client["n_losses"].tolist() == [1, 1, 0]
    assert per_client.loc["A", "largest_loss"] == 8 and per_client.loc["A", "n_reversals"] == 1
    assert pd.isna(per_client.loc["G", "first_preloss_session"])


def test_no_losses_gives_typed_empty_table() -> None:
    losses = sudden_losses(_sessions({"A": {1: 10, 2: 10, 3: 10}}), "phq9_total", 6)
    assert losses.empty and list(losses.columns) == list(LOSS_COLUMNS)
    assert losses["reversal"].dtype == np.dtype(bool)
    assert str(losses["preloss_session"].dtype) == "Int64"


# --- the independent reference ------------------------------------------------------------

def reference_events(wide: dict[str, list[float]], identify: str, min_change: float,
                     pct: float = 0.25, alpha: float = 0.05,
                     reversal: float = 0.5) -> dict[tuple[str, int], dict[str, float]]:
    """Sudden gains or losses by plain loops over each client's scores at sessions 1..K
    (``wide[client][k - 1]`` is session k, NaN where missing), as suddengains' identify_sg /
    identify_sl and create_bysg do, with criterion 2 of losses on the rise and reversals at
    "at least half" (>=, <=). Keyed (client, session before the change)."""
    found = {}
    for client, x in wide.items():
        k = len(x)
        for j in range(1, k):  # the interval from session j to session j + 1
            before, after = x[j - 1], x[j]
            if math.isnan(before) or math.isnan(after):
                continue
            pre = [x[i] for i in range(max(0, j - 3), j) if not math.isnan(x[i])]
            post = [x[i] for i in range(j, min(k, j + 3)) if not math.isnan(x[i])]
            if len(pre) < 2 or len(post) < 2:
                continue
            if identify == "gain":
                size, mean_difference = before - after, statistics.mean(pre) - statistics.mean(post)
            else:
                size, mean_difference = after - before, statistics.mean(post) - statistics.mean(pre)
            df = len(pre) + len(post) - 2
            critical = stats.t.ppf(1 - alpha / 2, df)
            pooled = math.sqrt(((len(pre) - 1) * statistics.variance(pre)
                                + (len(post) - 1) * statistics.variance(post)) / df)
            if not (size >= min_change and size >= pct * before
                    and mean_difference > critical * pooled):
                continue
            reversed_at = None
            for i in range(j + 1, k):  # sessions j + 2 .. K
                if math.isnan(x[i]):
                    continue
                back = x[i] >= after + reversal * size if identify == "gain" \
                    else x[i] <= after - reversal * size
                if back:
                    reversed_at = i + 1
                    break
            found[(client, j)] = {"size": size, "mean_pre": statistics.mean(pre),
                                  "mean_post": statistics.mean(post), "pooled_sd": pooled,
                                  "critical_value": critical, "n_pre": len(pre),
                                  "n_post": len(post), "reversal_session": reversed_at}
    return found


def _wide(sessions: pd.DataFrame, score: str) -> dict[str, list[float]]:
    scored = sessions.dropna(subset=[score])
    wide = {}
    for client, part in scored.groupby(scored["client_id"].astype(str)):
        last = int(part["session"].max())
        x = [NAN] * last
        for session, value in zip(part["session"].astype(int), part[score], strict=True):
            x[session - 1] = float(value)
        wide[client] = x
    return wide


def _caseload(seed: int = 11, n_clients: int = 150) -> pd.DataFrame:
    """Integer PHQ-9 totals with gradual change, noise, planted steps up and down, missed
    sessions (no row) and unscored sessions (a row without a score)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clients):
        n_sessions = int(rng.integers(5, 17))
        level, slope = rng.normal(14, 4), rng.normal(-0.4, 0.4)
        step_at, step = int(rng.integers(3, 12)), float(rng.choice([-9, -6, 0, 6, 9]))
        for session in range(1, n_sessions + 1):
            if rng.random() < 0.07:
                continue  # a missed session
            value = level + slope * session + (step if session >= step_at else 0)
            value = float(np.clip(round(value + rng.normal(0, 1.5)), 0, 27))
            rows.append({"client_id": f"C{i:03d}", "therapist_id": f"T{i % 7}",
                         "session": session,
                         "phq9_total": value if rng.random() > 0.05 else NAN})
    return pd.DataFrame(rows).astype({"session": "Int64"})


def _check_against_reference(sessions: pd.DataFrame, identify: str, min_change: float) -> int:
    scan = sudden_losses if identify == "loss" else sudden_gains
    table = scan(sessions, "phq9_total", min_change, 0.25, CRITICAL_VALUES, 0.5)
    expected = reference_events(_wide(sessions, "phq9_total"), identify, min_change)
    got = {(row.client_id, int(getattr(row, f"pre{identify}_session"))): row
           for row in table.itertuples()}
    assert sorted(got) == sorted(expected)  # the same events, client by client
    for key, want in expected.items():
        row = got[key]
        assert getattr(row, identify) == pytest.approx(want["size"], rel=1e-12), key
        for name in ("mean_pre", "mean_post", "pooled_sd", "critical_value"):
            assert getattr(row, name) == pytest.approx(want[name], rel=1e-12), (key, name)
        assert (row.n_pre, row.n_post) == (want["n_pre"], want["n_post"]), key
        assert (None if pd.isna(row.reversal_session) else int(row.reversal_session)) \
            == want["reversal_session"], key
        assert bool(row.reversal) == (want["reversal_session"] is not None), key
    return len(expected)


@pytest.mark.parametrize("min_change", [6, 3])
@pytest.mark.parametrize("identify", ["loss", "gain"])
def test_simulated_caseload_matches_the_reference(identify: str, min_change: float) -> None:
    """With 3 points criterion 2 decides too (25% of a pre score above 12 exceeds 3): the
    caseload has 22 losses with it and 29 without, 42 gains with it and 56 without."""
    n = _check_against_reference(_caseload(), identify, min_change)
    assert n >= 10  # the caseload has enough events for the comparison to mean something


@pytest.fixture(scope="module")
def demo_sessions(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The demo's scored session table (the clean stage run on data/demo)."""
    from alliance_analysis.data.prepare import prepare
    from alliance_analysis.params import load_params

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "params" / "demo.yaml")
    return prepare(params, tmp_path_factory.mktemp("processed")).sessions


@pytest.mark.parametrize("min_change", [6, 3])
@pytest.mark.parametrize("identify", ["loss", "gain"])
def test_demo_matches_the_reference(demo_sessions: pd.DataFrame, identify: str,
                                    min_change: float) -> None:
    """Every demo client (400), with the demo's criterion 1 (the PHQ-9's 6 points) and with 3
    points, where criterion 2 decides too."""
    assert _check_against_reference(demo_sessions, identify, min_change) >= 5
