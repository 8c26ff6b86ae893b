"""Reliable and clinically significant change (Jacobson & Truax 1991) against a worked example
computed by hand, the published PHQ-9 thresholds at their boundaries, the change options, and
the whole stage (analyse_change, report_change) on a small seeded dataset."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from alliance_analysis.change.markers import (analyse_change, change_captions, reliable_change,
                                              sudden_gain_threshold)
from alliance_analysis.report.change import report_change
from alliance_analysis.options import ChangeOptions
from alliance_analysis.errors import AllianceDataError, AllianceParamsError, ConvergenceWarning
from alliance_analysis.instruments import get_instrument
from alliance_analysis.params import load_params, parse_params
from alliance_analysis.change.reliable_change import CATEGORIES, jacobson_truax_cutoffs
from alliance_analysis.report.runfolder import RunFolder

PHQ9, WAI = get_instrument("phq9"), get_instrument("wai")


def _sessions(scores: dict[str, dict[int, float | None]]) -> pd.DataFrame:
    rows = [{"client_id": client, "therapist_id": "T1", "session": session, "phq9_total": value}
            for client, by_session in scores.items() for session, value in by_session.items()]
    return pd.DataFrame(rows).astype({"session": "Int64", "phq9_total": "float"})


# Worked example (Jacobson & Truax 1991), by hand:
#   s_pre = 5, r_xx = 0.84:  SE = 5 * sqrt(1 - 0.84) = 5 * 0.4 = 2
#   S_diff = sqrt(2 * 2^2) = sqrt(8) = 2.828427;  1.96 * S_diff = 5.543717 points
#   norms: clinical M1 = 18, s1 = 5; functional M0 = 4, s0 = 3
#   a = 18 - 2 * 5 = 8;  b = 4 + 2 * 3 = 10;  c = (3 * 18 + 5 * 4) / (3 + 5) = 74 / 8 = 9.25
# Clients (pre -> post; RC = (post - pre) / 2.828427; cut-off c = 9.25):
#   R  16 -> 8     RC = -8 / 2.828427 = -2.828427  reliable; 16 >= 9.25 -> 8 < 9.25: recovered
#   I  20 -> 12    RC = -2.828427                  reliable; ends at 12 >= 9.25: improved
#   U  15 -> 11    RC = -4 / 2.828427 = -1.414214  unchanged
#   D  10 -> 16    RC = 6 / 2.828427 = 2.121320    reliably deteriorated
#   N   8 -> 2     RC = -2.121320  reliable, but started below 9.25: improved, not recovered
#   J  15 -> 9.5   RC = -5.5 / 2.828427 = -1.944544  |RC| < 1.96: unchanged (just outside)
#   K  15 -> 9.4   RC = -5.6 / 2.828427 = -1.979899  reliable (just inside); 9.4 >= 9.25: improved
#   S  one score   not assessable
JT = ChangeOptions(reliable_change="jacobson_truax", reliability=0.84, sd_pre=5.0, cutoff="c",
                   clinical_mean=18, clinical_sd=5, functional_mean=4, functional_sd=3)
WORKED = {"R": (16, 8, -8, "recovered"), "I": (20, 12, -8, "reliably improved"),
          "U": (15, 11, -4, "unchanged"), "D": (10, 16, 6, "reliably deteriorated"),
          "N": (8, 2, -6, "reliably improved"), "J": (15, 9.5, -5.5, "unchanged"),
          "K": (15, 9.4, -5.6, "reliably improved")}


def test_jacobson_truax_worked_example() -> None:
    """Tolerance 1e-12 relative: the arithmetic above is exact up to float rounding."""
    scores = {c: {1: pre, 2: 99.0, 6: post} for c, (pre, post, _, _) in WORKED.items()}
    scores = {c: {s: v for s, v in by.items() if s != 2} for c, by in scores.items()}
    scores["S"] = {1: 14}
    result = reliable_change(_sessions(scores), PHQ9, JT)
    criteria = result.criteria
    assert criteria.se_measurement == pytest.approx(2.0, rel=1e-12)
    assert criteria.s_diff == pytest.approx(math.sqrt(8), rel=1e-12)
    assert criteria.threshold == pytest.approx(1.96 * math.sqrt(8), rel=1e-12)
    assert criteria.cutoff == pytest.approx(9.25, rel=1e-12)
    table = result.table.set_index("client_id")
    for client, (pre, post, change, category) in WORKED.items():
        row = table.loc[client]
        assert (row["pre_session"], row["post_session"]) == (1, 6)
        assert row["change"] == pytest.approx(change, rel=1e-12)
        assert row["rc"] == pytest.approx(change / math.sqrt(8), rel=1e-12)
        assert row["category"] == category, client
    assert not table.loc["N", "clinical_pre"]  # started in the non-clinical range
    assert pd.isna(table.loc["S", "category"]) and pd.isna(table.loc["S", "post"])


def test_jacobson_truax_cutoffs_by_hand() -> None:
    assert jacobson_truax_cutoffs(18, 5, 4, 3) == pytest.approx({"a": 8, "b": 10, "c": 9.25})
    assert np.isnan(jacobson_truax_cutoffs(18, 5)["c"])


def test_cutoff_a_from_the_sample_when_no_norms() -> None:
    """Pre scores 10, 20 (mean 15, SD sqrt(50) = 7.0711): a = 15 - 2 * 7.0711 = 0.8579."""
    options = ChangeOptions(cutoff="a")
    result = reliable_change(_sessions({"A": {1: 10, 2: 5}, "B": {1: 20, 2: 5}}), PHQ9, options)
    assert result.criteria.cutoff == pytest.approx(15 - 2 * math.sqrt(50), rel=1e-12)


# Published PHQ-9 thresholds (reliable change: at least 6 points; caseness: 10 or above).
@pytest.mark.parametrize(("pre", "post", "category"), [
    (15, 9, "recovered"),               # a 6-point drop is reliable; 9 is below caseness
    (15, 10, "unchanged"),              # 5 points: not reliable (and 10 is still a case)
    (16, 10, "reliably improved"),      # reliable, but ends at 10: still a case
    (10, 4, "recovered"),               # 10 is a case at pre (at or above the cut-off)
    (9, 3, "reliably improved"),        # starts below caseness: cannot recover
    (14, 20, "reliably deteriorated"),  # up by 6
    (14, 19, "unchanged"),              # up by 5
])
def test_published_phq9_thresholds(pre: float, post: float, category: str) -> None:
    result = reliable_change(_sessions({"A": {1: pre, 4: post}}), PHQ9, ChangeOptions())
    assert result.table["category"].tolist() == [category]
    assert "rc" not in result.table.columns  # no Jacobson-Truax index in this mode
    assert (result.criteria.threshold, result.criteria.cutoff) == (6, 10)


def test_float_rounding_does_not_decide_reliable_change() -> None:
    """10.2 - 4.2 is 5.999999999999999 in binary floating point: still a 6-point change."""
    assert 10.2 - 4.2 < 6
    table = reliable_change(_sessions({"A": {1: 10.2, 2: 4.2}}), PHQ9, ChangeOptions()).table
    assert table["category"].tolist() == ["recovered"]


def test_chosen_sessions_and_missing_scores() -> None:
    sessions = _sessions({"A": {1: 20, 2: 18, 3: 8, 4: 20}, "B": {1: 20, 2: None, 4: 8}})
    table = reliable_change(sessions, PHQ9, ChangeOptions(pre_session=1, post_session=3)).table
    assert table.set_index("client_id").loc["A", "category"] == "recovered"  # 20 -> 8
    assert pd.isna(table.set_index("client_id").loc["B", "category"])  # B has no session 3
    last = reliable_change(sessions, PHQ9, ChangeOptions()).table.set_index("client_id")
    assert (last.loc["A", "post_session"], last.loc["B", "post_session"]) == (4, 4)


def test_summary_counts_and_clinical_denominator() -> None:
    scores = {c: {1: pre, 6: post} for c, (pre, post, _, _) in WORKED.items()}
    summary = reliable_change(_sessions(scores), PHQ9, JT).summary().set_index("category")
    assert summary.loc[list(CATEGORIES), "n"].tolist() == [1, 3, 2, 1]
    assert summary.loc["recovered", "percent"] == round(100 / 7, 1)
    # six clients start at or above 9.25 (all but N), one of whom recovered
    assert summary.loc["recovered", "percent_clinical_pre"] == round(100 / 6, 1)


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="functional_mean"):
        ChangeOptions(cutoff="c")
    with pytest.raises(ValidationError, match="must come after"):
        ChangeOptions(pre_session=4, post_session=2)
    with pytest.raises(ValidationError, match="dropout_column"):
        ChangeOptions(dropout="column")
    with pytest.raises(ValidationError, match="early_sessions"):
        ChangeOptions(early_sessions=8, dropout_sessions=8)
    with pytest.raises(ValidationError, match="extra"):
        ChangeOptions(rci=6)  # type: ignore[call-arg]


def test_missing_thresholds_are_params_errors() -> None:
    sessions = _sessions({"A": {1: 20, 2: 10}, "B": {1: 15, 2: 12}})
    no_reliability = get_instrument("phq9", {"phq9": {**PHQ9.model_dump(exclude={"key"}),
                                                      "rc_reliability": None}})
    with pytest.raises(AllianceParamsError, match="needs a reliability.*rc_reliability"):
        reliable_change(sessions, no_reliability,
                        ChangeOptions(reliable_change="jacobson_truax"))
    with pytest.raises(AllianceParamsError, match="alliance measure"):
        reliable_change(sessions, WAI, ChangeOptions())
    assert sudden_gain_threshold(PHQ9, ChangeOptions()) == 6  # the published RCI
    assert sudden_gain_threshold(PHQ9, ChangeOptions(sudden_gain_min=7)) == 7


def test_run_parameters_carry_the_change_options(root: Path) -> None:
    params = load_params(root / "params" / "demo.yaml")
    assert isinstance(params.change, ChangeOptions)
    raw = {"name": "t", "data": {"path": "../data/demo/sessions.csv"},
           "change": {"rupture_sd": [1, 1.5, 2], "rupture_drop": 0.5, "sudden_gain_min": 7}}
    change = parse_params(raw, root / "params").change  # YAML lists become tuples
    assert change.rupture_sd == (1.0, 1.5, 2.0) and change.sudden_gain_min == 7
    with pytest.raises(AllianceParamsError, match="change.rci"):
        parse_params({**raw, "change": {"rci": 6}}, root / "params")


def _study(seed: int = 5, n_clients: int = 60) -> pd.DataFrame:
    """A small seeded session table: improving symptoms, alliance with noise and dips."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_clients):
        n_sessions = int(rng.integers(3, 13))
        level, slope = rng.normal(16, 4), rng.normal(-0.8, 0.5)
        alliance = rng.normal(3.8, 0.4)
        for session in range(1, n_sessions + 1):
            rows.append({"client_id": f"C{i:03d}", "therapist_id": f"T{i % 6}",
                         "session": session,
                         "phq9_total": float(np.clip(round(level + slope * session
                                                           + rng.normal(0, 2)), 0, 27)),
                         "wai_total": float(np.clip(alliance + 0.03 * session
                                                    + rng.normal(0, 0.35), 1, 5))})
    return pd.DataFrame(rows).astype({"session": "Int64"})


def test_analyse_and_report_change(tmp_path: Path) -> None:
    options = ChangeOptions(rupture_drop=0.5)
    report = analyse_change(_study(), options, PHQ9, WAI)
    assert set(report.tables) <= set(report.captions)
    assert set(report.models) == {"rupture_outcome_sd1", "rupture_outcome_sd2",
                                  "rupture_outcome_drop", "dropout_early_alliance"}
    recorded = report_change(report, RunFolder(tmp_path))
    stored = json.loads((tmp_path / "results.json").read_text())
    for key in ("change.rci.recovered.n", "change.sudden_gains.n_clients",
                "change.sudden_losses.n", "change.sudden_losses.n_clients",
                "change.sudden_losses.n_reversals", "change.ruptures.sd1.n",
                "change.ruptures.sd2.n", "change.ruptures.drop.n", "change.dropout.n"):
        assert stored[key] == recorded[key]
    assert stored["change.sudden_losses.n"] == len(report.tables["change_sudden_losses"])
    assert stored["change.empty"] is False and stored["change.n_clients"] == 60
    n_clients = report.tables["change_reliable"]["client_id"].nunique()
    assert n_clients == 60 and stored["change.rci.n_assessed"] == 60
    assert sum(stored[f"change.rci.{c.replace('reliably ', 'reliably_')}.n"]
               for c in CATEGORIES) == 60
    tables = tmp_path / "tables"
    assert (tables / "change_reliable_summary.md").read_text().count("at least 6 points") == 1
    assert (tables / "change_model_dropout_early_alliance.csv").exists()
    assert (tables / "change_sudden_losses.csv").exists()
    assert (tables / "change_sudden_losses_clients.csv").exists()
    captions = pd.read_csv(tables / "change_captions.csv")
    assert set(captions["table"]) == set(report.captions)


def test_captions_state_the_criteria() -> None:
    options = ChangeOptions(sudden_gain_min=7, rupture_sd=(1.5,), rupture_drop=0.75,
                            repair_within=2, dropout_sessions=10)
    report = analyse_change(_study(n_clients=20), options, PHQ9, WAI)
    captions = change_captions(options, PHQ9, WAI, report.criteria)
    gains = str(captions["change_sudden_gains"])
    assert "at least 7 points" in gains and "25%" in gains and "2.776" in gains
    assert "3.182" in gains and "4.303" in gains and "50%" in gains
    ruptures = captions["change_ruptures"].note
    assert "1.5 SD" in ruptures and "0.75 points" in ruptures and "within 2 sessions" in ruptures
    assert "before session 10" in captions["change_dropout"].note
    assert "at least 6 points" in captions["change_reliable"].note


def test_analysis_is_deterministic() -> None:
    first = analyse_change(_study(), ChangeOptions(), PHQ9, WAI)
    second = analyse_change(_study(), ChangeOptions(), PHQ9, WAI)
    assert first.headline() == second.headline()
    for name, table in first.tables.items():
        pd.testing.assert_frame_equal(table, second.tables[name])


def test_post_session_without_a_later_score_is_not_assessable() -> None:
    """A client whose first score is at post_session has no change to report (not 0)."""
    from alliance_analysis.change.reliable_change import pre_post_scores

    sessions = pd.DataFrame({"client_id": ["a", "a", "b", "b"], "session": [3, 5, 1, 3],
                             "phq9_total": [10.0, 8.0, 12.0, 9.0]})
    table = pre_post_scores(sessions, "phq9_total", post_session=3).set_index("client_id")
    assert pd.isna(table.loc["a", "change"]) and pd.isna(table.loc["a", "post_session"])
    assert table.loc["b", "change"] == -3.0


def test_sudden_gain_critical_values_are_exact_t_quantiles() -> None:
    from scipy import stats

    assert ChangeOptions().sudden_gain_critical == pytest.approx(
        tuple(stats.t.ppf(0.975, (4, 3, 2))), rel=1e-15)


EMPTY_COLUMNS = ["client_id", "therapist_id", "session", "phq9_total", "wai_total"]


@pytest.mark.parametrize("method", ["published", "jacobson_truax"])
def test_an_empty_session_table_gives_empty_outputs_with_a_note(tmp_path: Path,
                                                                 method: str) -> None:
    """Issue 20: an empty session table crashed the stage (KeyError 'client_id' in the
    dropout table, later ZeroDivisionError in the headline). Now: every table empty with its
    columns, zero counts, flagged models, a note in every caption and in the run's index."""
    empty = pd.DataFrame({c: pd.Series(dtype="object" if c.endswith("_id") else "float64")
                          for c in EMPTY_COLUMNS})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = analyse_change(empty, ChangeOptions(reliable_change=method), PHQ9, WAI)
    messages = [str(w.message) for w in caught]
    assert any("session table has no rows" in m for m in messages)
    assert sum(issubclass(w.category, ConvergenceWarning) for w in caught) == 3  # the models
    assert all(len(report.tables[name]) == 0 for name in report.tables
               if name not in ("change_reliable_summary", "change_ruptures_summary"))
    assert list(report.tables["change_sudden_losses"].columns)[:3] == [
        "client_id", "preloss_session", "postloss_session"]
    summary = report.tables["change_ruptures_summary"]
    assert summary["criterion"].tolist() == ["sd1", "sd2"]
    assert summary["n_ruptures"].tolist() == [0, 0]
    assert all(not model.fit["converged"] for model in report.models.values())
    assert report.notes and all("no rows" in c.note for c in report.captions.values())
    recorded = report_change(report, RunFolder(tmp_path))
    stored = json.loads((tmp_path / "results.json").read_text())
    assert stored["change.empty"] is True and stored["change.n_clients"] == 0
    assert stored["change.sudden_losses.n"] == stored["change.sudden_gains.n"] == 0
    assert stored["change.dropout.percent"] is None and recorded["change.rci.n_assessed"] == 0
    index = json.loads((tmp_path / "outputs.json").read_text())["tables"]
    assert any("no rows" in w for f in index["change_reliable"]["flags"] for w in f["warnings"])
    assert pd.read_csv(tmp_path / "tables" / "change_sudden_losses.csv").empty


def test_an_empty_table_without_columns_is_empty_not_an_error() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = analyse_change(pd.DataFrame(), ChangeOptions(), PHQ9, WAI)
    assert any("no rows" in str(w.message) for w in caught)
    assert report.headline()["change.n_clients"] == 0


def test_missing_columns_of_a_table_with_rows_are_named() -> None:
    sessions = _study(n_clients=5).drop(columns=["therapist_id", "wai_total"])
    with pytest.raises(AllianceDataError, match=r"\['therapist_id', 'wai_total'\]"):
        analyse_change(sessions, ChangeOptions(), PHQ9, WAI)


def test_shipped_reliabilities_cite_their_source() -> None:
    """The Jacobson-Truax index needs r_xx; the symptom measures ship a published one:
    PHQ-9 test-retest .84 (Kroenke et al. 2001), GAD-7 test-retest .83 (Spitzer et al. 2006),
    CORE-10 alpha .90 (Barkham et al. 2013)."""
    for key, value, author in (("phq9", 0.84, "Kroenke"), ("gad7", 0.83, "Spitzer"),
                               ("core10", 0.90, "Barkham")):
        instrument = get_instrument(key)
        assert instrument.rc_reliability == value and instrument.reliability is None
        assert author in instrument.rc_reliability_source and author in instrument.source


def test_reliability_precedence() -> None:
    """change.reliability, else the reliability behind the rci, else the published one."""
    sessions = _sessions({"A": {1: 20, 2: 10}, "B": {1: 15, 2: 12}, "C": {1: 10, 2: 11}})
    jt = ChangeOptions(reliable_change="jacobson_truax")
    assert reliable_change(sessions, PHQ9, jt).criteria.reliability == 0.84
    assert reliable_change(sessions, PHQ9, jt.model_copy(update={"reliability": 0.7})
                           ).criteria.reliability == 0.7
    behind_rci = get_instrument("phq9", {"phq9": {**PHQ9.model_dump(exclude={"key"}),
                                                  "reliability": 0.8}})
    criteria = reliable_change(sessions, behind_rci, jt).criteria
    assert criteria.reliability == 0.8 and "behind" in criteria.reliability_source


@pytest.fixture(scope="module")
def demo_sessions(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The demo's scored session table (the clean stage run on data/demo)."""
    from alliance_analysis.data.prepare import prepare

    params = load_params(Path(__file__).resolve().parents[1] / "params" / "demo.yaml")
    return prepare(params, tmp_path_factory.mktemp("processed")).sessions


def test_jacobson_truax_on_the_demo_matches_the_standard_formula(
        demo_sessions: pd.DataFrame) -> None:
    """reliable_change: jacobson_truax runs on the demo with the shipped PHQ-9 reliability,
    and every client's RC equals (x2 - x1) / (SD1 sqrt(2) sqrt(1 - r)), written out here with
    the standard library: SD1 the SD (n - 1) of the first scores, r = .84. Tolerance 1e-12
    relative."""
    import statistics

    options = ChangeOptions(reliable_change="jacobson_truax")
    result = reliable_change(demo_sessions, PHQ9, options)
    scored = demo_sessions.dropna(subset=["phq9_total"]).sort_values(["client_id", "session"])
    first = scored.groupby("client_id")["phq9_total"].first()
    last = scored.groupby("client_id")["phq9_total"].last()
    sd1 = statistics.stdev(first.tolist())
    table = result.table.set_index("client_id")
    assert len(table) == 400 and table["rc"].notna().all()
    for client in table.index:
        rc = (last[client] - first[client]) / (sd1 * math.sqrt(2) * math.sqrt(1 - 0.84))
        assert table.loc[client, "rc"] == pytest.approx(rc, rel=1e-12, abs=1e-12), client
        reliable = abs(rc) > 1.96
        assert (table.loc[client, "category"] != "unchanged") == reliable, client
    caption = change_captions(options, PHQ9, WAI, result.criteria)["change_reliable"].note
    assert "column rc" in caption and "Kroenke" in caption and "0.84" in caption


def test_published_method_explains_the_missing_rc_column(demo_sessions: pd.DataFrame) -> None:
    result = reliable_change(demo_sessions, PHQ9, ChangeOptions())
    assert "rc" not in result.table.columns
    caption = change_captions(ChangeOptions(), PHQ9, WAI, result.criteria)["change_reliable"]
    assert "at least 6 points" in caption.note and "no rc column" in caption.note


def test_scored_series_are_each_clients_groupby_series() -> None:
    """Cut from the sorted arrays, the series equal pandas' groupby of the scored rows: same
    clients in order, same session index and values (missing scores and clients dropped)."""
    from alliance_analysis.change.client_series import scored_series

    rng = np.random.default_rng(5)
    n = 200
    sessions = pd.DataFrame({
        "client_id": pd.array(rng.choice(["b", "a", "c10", "c2", None], n), dtype="str"),
        "session": pd.array(rng.integers(1, 15, n), dtype="Int64"),
        "score": np.where(rng.random(n) < 0.2, np.nan, rng.normal(12, 4, n))})
    sessions = sessions.iloc[rng.permutation(n)]
    got = scored_series(sessions, "score")
    scored = sessions[sessions["score"].notna()].assign(
        session=lambda d: d["session"].astype(int)).sort_values(["client_id", "session"],
                                                                kind="stable")
    expected = {str(client): group.set_index("session")["score"].astype(float)
                for client, group in scored.groupby("client_id", sort=True)}
    assert list(got) == list(expected)
    for client, series in expected.items():
        pd.testing.assert_series_equal(got[client], series, check_exact=True)
