"""Student tutorials: the helpers recover the truths they teach, and every notebook runs."""

from __future__ import annotations

import ast
import re
import time
import warnings
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
from matplotlib.figure import Figure

from alliance_analysis.teaching import tutorials
from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.multilevel.models import within_between_model
from alliance_analysis.options import MultilevelOptions
from alliance_analysis.pipeline import KERNEL_ARGUMENTS
from alliance_analysis.options import SemOptions
from alliance_analysis.sem.panel import fit_panel
from alliance_analysis.data.simulate import PanelDesign, SimulationDesign, simulate

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "notebooks" / "tutorials"
NAMES = ("01_within_or_between", "02_therapist_effects", "03_riclpm_vs_clpm",
         "04_change_markers")
#: The issue asks for "under a minute on a laptop"; each takes about 10 s on the 2-core
#: development machine, kernel start included.
MAX_SECONDS = 60
OPTIONS = MultilevelOptions(client_slope=False)


# --- the notebooks ----------------------------------------------------------------------------

def test_the_four_tutorials_are_there() -> None:
    assert sorted(p.stem for p in TUTORIALS.glob("*.ipynb")) == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_commit_ready_and_ends_with_hidden_answers(name: str) -> None:
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert [c.id for c in notebook.cells] == [f"cell-{i:02d}" for i in range(len(notebook.cells))]
    tags = [c.metadata.get("tags", []) for c in notebook.cells]
    assert sum("parameters" in t for t in tags) == 1 and "parameters" in tags[1]
    answers = notebook.cells[-1]
    assert "answers" in answers.metadata["tags"]
    assert answers.metadata["jupyter"] == {"source_hidden": True}
    assert "Questions" in notebook.cells[-2].source and "Exercises" in "".join(
        c.source for c in notebook.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_plain_scalars_and_all_used(name: str) -> None:
    """A student changes these: each is a literal (signed numbers allowed) used later on."""
    notebook = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    later = "\n".join(c.source for c in notebook.cells[2:] if c.cell_type == "code")
    for node in ast.parse(notebook.cells[1].source).body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1
        value = ast.literal_eval(node.value)
        assert type(value) in (int, float, str, bool), ast.unparse(node)
        assert re.search(rf"\b{node.targets[0].id}\b", later), node.targets[0].id


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_tutorial_runs_top_to_bottom_without_warnings(name: str, tmp_path: Path) -> None:
    before = sorted(p.name for p in TUTORIALS.iterdir())
    start = time.perf_counter()
    papermill.execute_notebook(
        str(TUTORIALS / f"{name}.ipynb"), str(tmp_path / f"{name}.ipynb"), kernel_name="python3",
        cwd=str(TUTORIALS), progress_bar=False, log_output=False,
        extra_arguments=KERNEL_ARGUMENTS)
    seconds = time.perf_counter() - start
    assert seconds < MAX_SECONDS, f"{name} took {seconds:.0f} s"
    executed = nbformat.read(tmp_path / f"{name}.ipynb", as_version=4)
    stderr = [o.text for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "stream" and o.name == "stderr"]
    assert stderr == [], stderr  # the defaults give no warnings to puzzle a student
    images = [o for c in executed.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images or name == "03_riclpm_vs_clpm"  # figures are shown, not just named
    assert sorted(p.name for p in TUTORIALS.iterdir()) == before  # nothing written there
    shown = [o.get("data", {}).get("text/plain", "") + o.get("text", "")
             for c in executed.cells if c.cell_type == "code" for o in c.outputs]
    for text in shown:  # numbers read as a table would print them, no Python reprs
        assert not re.search(r"np\.float64|\d\.\d{7,}|\{'|e-\d\d", text), text[:300]
        assert "..." not in text, text[:300]  # no text cut by pandas


def test_tutorial_1_says_why_its_between_effect_is_positive() -> None:
    notebook = nbformat.read(TUTORIALS / "01_within_or_between.ipynb", as_version=4)
    text = " ".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "Why is the default `between_effect` positive?" in text
    assert "opposite signs" in text and "-4.0" in text  # the simulation's own default


# --- shared helpers ---------------------------------------------------------------------------

def test_truth_table_marks_coverage() -> None:
    table = tutorials.truth_table([("a", 1.0, 0.9, 0.5, 1.5), ("b", 1.0, 2.0, 1.5, 2.5),
                                   ("c", 0.0, 0.1, np.nan, np.nan)])
    assert list(table.columns) == list(tutorials.TRUTH_COLUMNS)
    assert table["covered"].tolist()[:2] == [True, False] and pd.isna(table["covered"][2])


def test_scored_sessions_leaves_nothing_on_disk(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    design = SimulationDesign(therapists=3, clients_per_therapist=3, max_sessions=6)
    sessions, truth = tutorials.scored_sessions(design, seed=4)
    assert {"wai_total", "phq9_total", "client_id", "therapist_id"} <= set(sessions.columns)
    assert not sessions.duplicated(["client_id", "session"]).any()  # the planted faults went
    assert truth["design"]["therapists"] == 3 and list(tmp_path.iterdir()) == []


# --- tutorial 1 -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def within_between_data() -> tuple[pd.DataFrame, float, float]:
    within, between = -1.5, 2.0
    design = SimulationDesign(therapists=30, clients_per_therapist=10, max_sessions=12,
                              within_effect=within, between_effect=between)
    return tutorials.scored_sessions(design, seed=11)[0], within, between


def test_naive_pooled_slope_is_the_blend_not_either_effect(within_between_data) -> None:
    sessions, within, between = within_between_data
    naive = tutorials.naive_pooled(sessions, "wai", "phq9")
    slope, low, high = tutorials.estimate(naive, "wai_lag1")
    blend = tutorials.pooled_blend(sessions, "wai", within, between)
    assert 0.5 < blend["between_share"] < 0.8  # the alliance's client share, ~ its ICC
    assert within < slope < between  # between the two truths ...
    assert not low <= within <= high and not low <= between <= high  # ... and neither
    assert abs(slope - blend["expected_slope"]) < 0.35  # within ~1.5 naive SEs of the blend


def test_person_mean_centring_recovers_both_effects(within_between_data) -> None:
    sessions, within, between = within_between_data
    model = within_between_model(sessions, "wai", "phq9", OPTIONS)
    table = tutorials.truth_table([
        ("within", within, *tutorials.estimate(model, "wai_within_lag1")),
        ("between", between, *tutorials.estimate(model, "wai_between"))])
    assert table["covered"].all()
    assert abs(table["estimate"][0] - within) < 0.5 and abs(table["estimate"][1] - between) < 1


def test_within_between_picture_draws_three_kinds_of_line(within_between_data) -> None:
    sessions = within_between_data[0]
    model = within_between_model(sessions, "wai", "phq9", OPTIONS)
    naive = tutorials.naive_pooled(sessions, "wai", "phq9")
    fig = tutorials.within_between_picture(sessions, model, naive, "wai", "phq9", n_clients=4)
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(s.startswith("between") for s in labels)
    assert any(s.startswith("naive") for s in labels)
    assert any(s.startswith("within") for s in labels)


# --- tutorial 2 -------------------------------------------------------------------------------

def test_therapist_sd_for_icc_gives_that_icc() -> None:
    sd = tutorials.therapist_sd_for_icc(0.05, 0.45, 0.30)
    design = SimulationDesign(alliance_therapist_sd=sd)
    assert tutorials.design_iccs(design)["therapist"] == pytest.approx(0.05, rel=1e-12)
    assert tutorials.therapist_sd_for_icc(0.0, 0.45, 0.30) == 0.0
    with pytest.raises(AllianceParamsError, match="ICC must be in"):
        tutorials.therapist_sd_for_icc(1.0, 0.45, 0.30)


def test_icc_arithmetic() -> None:
    assert tutorials.design_effect(0.05, 1) == 1 and tutorials.design_effect(0.05, 11) == 1.5
    assert tutorials.therapist_mean_reliability(0.05, 1) == pytest.approx(0.05)
    assert tutorials.therapist_mean_reliability(0.05, 19) == pytest.approx(0.5)
    meaning = tutorials.icc_meaning(0.05, 11).set_index("quantity")["value"]
    assert meaning["therapist SD, in SDs of the score"] == pytest.approx(np.sqrt(0.05))
    assert meaning["design effect with 11 clients per therapist"] == pytest.approx(1.5)
    assert meaning["gap between the 90th- and 10th-percentile therapist, in SDs"] == \
        pytest.approx(0.5731, abs=1e-4)


def test_parse_designs() -> None:
    assert tutorials.parse_designs("60x4, 20X12,8x30") == [(60, 4), (20, 12), (8, 30)]
    for bad in ("60*4", "60x", "0x4", "60x4x2"):
        with pytest.raises(AllianceParamsError, match="THERAPISTSxCLIENTS"):
            tutorials.parse_designs(bad)


def test_therapist_client_model_recovers_equal_parts() -> None:
    design = SimulationDesign(therapists=30, clients_per_therapist=8, max_sessions=10,
                              alliance_therapist_sd=tutorials.therapist_sd_for_icc(
                                  0.05, 0.45, 0.30), between_effect=-3.0)
    sessions, _ = tutorials.scored_sessions(design, seed=10)
    model = tutorials.therapist_client_model(sessions, "wai", "phq9", OPTIONS)
    est = model.params.set_index("term")["estimate"]
    assert est["therapist_minus_client"] == pytest.approx(
        est["wai_therapist_mean"] - est["wai_client_deviation"], abs=1e-9)
    table = tutorials.truth_table([
        ("within", -1.5, *tutorials.estimate(model, "wai_within_lag1")),
        ("therapist", -3.0, *tutorials.estimate(model, "wai_therapist_mean")),
        ("client", -3.0, *tutorials.estimate(model, "wai_client_deviation")),
        ("difference", 0.0, *tutorials.estimate(model, "therapist_minus_client"))])
    assert table["covered"].all()
    width = table["ci_high"] - table["ci_low"]
    assert width[1] > 2 * width[2]  # 30 therapist means say less than 240 clients
    with pytest.raises(AllianceParamsError, match="therapist_level"):
        tutorials.therapist_client_model(sessions, "wai", "phq9",
                                         MultilevelOptions(therapist_level=False))


def test_compare_designs_few_therapists_know_little_about_therapists() -> None:
    base = SimulationDesign(max_sessions=8, between_effect=-3.0)
    table = tutorials.compare_designs("24x4, 4x24", base, seed=10, options=OPTIONS)
    assert table["clients"].tolist() == [96, 96]
    assert table["therapist_part_ci_width"][1] > 2 * table["therapist_part_ci_width"][0]
    assert table["reliability_of_therapist_mean"][1] > table["reliability_of_therapist_mean"][0]


# --- tutorial 3 -------------------------------------------------------------------------------

def test_simulate_panel_is_seeded_and_has_the_design_variances() -> None:
    design = PanelDesign(clients=4000, waves=4)
    sim = simulate(design, seed=5)
    again = simulate(design, seed=5)
    pd.testing.assert_frame_equal(sim.sessions, again.sessions)
    assert len(sim.sessions) == 16000
    implied = (np.array(sim.truth["random_intercept_covariance"])
               + np.array(sim.truth["stationary_within_covariance"]))
    observed = sim.sessions.loc[sim.sessions["session"] == 3, ["wai_total", "phq9_total"]]
    np.testing.assert_allclose(np.cov(observed.T), implied, rtol=0.1)


def test_panel_design_refuses_an_explosive_process() -> None:
    with pytest.raises(ValueError, match="explode"):
        PanelDesign(ar_alliance=0.9, cl_alliance_to_symptoms=5.0,
                              cl_symptoms_to_alliance=0.1)


def test_clpm_limits() -> None:
    no_stable = PanelDesign(ri_alliance_sd=0, ri_symptoms_sd=0)
    limits = tutorials.clpm_limits(no_stable)
    np.testing.assert_allclose(limits["clpm_limit"], limits["within_truth"], atol=1e-12)
    default = tutorials.clpm_limits(PanelDesign()).set_index("path")
    assert default.loc["wai -> phq9", "clpm_limit"] == pytest.approx(-0.5822, abs=1e-4)
    assert default.loc["wai -> wai", "clpm_limit"] > 0.7


def test_clpm_shows_a_spurious_cross_lag_that_the_riclpm_does_not() -> None:
    """Stable, correlated client levels and NO within-client cross-lagged effect.

    Tolerances (1000 clients, 5 waves, seed 1): the RI-CLPM's alliance -> symptoms path is
    within 0.3 PHQ-9 points per WAI-SR point of 0 (its SE is about 0.22) and its interval
    covers 0; the CLPM's is below -0.3 with an interval excluding 0, and within 0.25 of its
    large-sample limit (-0.58, :func:`tutorials.clpm_limits`).
    """
    design = PanelDesign(clients=1000)
    sim = simulate(design, seed=1)
    options = SemOptions(waves=(1, 2, 3, 4, 5), constrain_autoregressive=True,
                         constrain_crosslagged=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both models must fit cleanly
        panel = fit_panel(sim.sessions, get_instrument("wai"), get_instrument("phq9"), options)
    table = tutorials.panel_truth_table(panel, sim.truth).set_index(["model", "parameter"])
    riclpm, clpm = table.loc[("RI-CLPM", "wai -> phq9")], table.loc[("CLPM", "wai -> phq9")]
    assert abs(riclpm["estimate"]) < 0.3 and riclpm["covered"]
    assert clpm["estimate"] < -0.3 and clpm["ci_high"] < 0 and not clpm["covered"]
    limit = tutorials.clpm_limits(design).set_index("path").loc["wai -> phq9", "clpm_limit"]
    assert clpm["estimate"] == pytest.approx(limit, abs=0.25)
    assert table.loc[("RI-CLPM", "wai -> wai"), "covered"]
    assert not table.loc[("CLPM", "wai -> wai"), "covered"]
    assert len(table) == 8 + 3  # constrained paths: one row per path and model, 3 RI rows


def test_panel_truth_table_lists_free_paths_per_lag() -> None:
    sim = simulate(PanelDesign(clients=200, waves=3), seed=2)
    panel = fit_panel(sim.sessions, get_instrument("wai"), get_instrument("phq9"),
                      SemOptions(waves=(1, 2, 3)))
    table = tutorials.panel_truth_table(panel, sim.truth)
    assert len(table) == 2 * 4 * 2 + 3
    assert "wai -> phq9 (sessions 1->2)" in set(table["parameter"])


# --- tutorial 4 -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def caseload() -> pd.DataFrame:
    design = SimulationDesign(therapists=8, clients_per_therapist=5, min_sessions=6,
                              max_sessions=12, phq9_residual_sd=1.5, alliance_session_sd=0.15)
    return tutorials.scored_sessions(design, seed=2)[0]


def test_plant_events_changes_only_the_planted_scores(caseload: pd.DataFrame) -> None:
    marked, planted = tutorials.plant_events(caseload, seed=3, gains=2, gain_size=9,
                                             gain_session=6, ruptures=2, rupture_size=1.2,
                                             rupture_session=5)
    assert list(planted.columns) == list(tutorials.PLANTED_COLUMNS)
    assert planted["event"].tolist() == ["sudden gain"] * 2 + ["rupture"] * 2
    assert planted["client_id"].is_unique
    before = caseload.sort_values(["client_id", "session"]).reset_index(drop=True)
    diff_phq9 = before["phq9_total"] - marked["phq9_total"]
    diff_wai = before["wai_total"] - marked["wai_total"]
    gains = marked["client_id"].isin(planted["client_id"][:2]) & (marked["session"] >= 6)
    dips = marked["client_id"].isin(planted["client_id"][2:]) & (marked["session"] == 5)
    assert (diff_phq9[~gains].fillna(0) == 0).all() and (diff_wai[~dips].fillna(0) == 0).all()
    assert (diff_phq9[gains].dropna() > 0).all() and np.allclose(diff_wai[dips], 1.2)
    at_gain = gains & (marked["session"] == 6)
    assert np.allclose(diff_phq9[at_gain], 9)  # eligible clients have room for the full step
    again = tutorials.plant_events(caseload, seed=3, gains=2, gain_size=9, gain_session=6,
                                   ruptures=2, rupture_size=1.2, rupture_session=5)
    pd.testing.assert_frame_equal(again[1], planted)
    with pytest.raises(AllianceParamsError, match="only .* clients"):
        tutorials.plant_events(caseload, seed=3, gains=100)


def test_planted_events_are_detected_and_chance_events_counted(caseload: pd.DataFrame) -> None:
    from alliance_analysis.change.markers import analyse_change
    from alliance_analysis.options import ChangeOptions

    marked, planted = tutorials.plant_events(caseload, seed=3, gains=3, gain_size=12,
                                             ruptures=3, rupture_size=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the change models on 40 clients are not the point
        report = analyse_change(marked, ChangeOptions(), get_instrument("phq9"),
                                get_instrument("wai"))
    found = tutorials.planted_vs_detected(planted, report.tables)
    assert len(found) == 3 + 3 * 2  # one gain criterion, two rupture criteria
    assert found["detected"].all(), found
    chance = tutorials.chance_events(planted, report.tables)
    assert chance["criterion"].tolist() == ["Tang & DeRubeis", "sd1", "sd2"]
    assert (chance["clients_without_planted_event"] == 37).all()
    assert chance.set_index("criterion").loc["sd1", "percent"] > 50  # 1 SD flags most


def test_chance_reliable_change_is_five_percent_at_the_jacobson_truax_threshold() -> None:
    sd = 2.5
    assert tutorials.chance_reliable_change(sd, 1.96 * np.sqrt(2) * sd) == \
        pytest.approx(0.05, abs=1e-3)
    assert tutorials.chance_reliable_change(sd, 6) == pytest.approx(0.0897, abs=1e-4)
