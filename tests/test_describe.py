"""Descriptive tables and figures: counts add up, small cells are hidden, figures are stable."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from alliance_analysis.data import describe
from alliance_analysis.report import plots
from alliance_analysis.instruments import get_instrument
from alliance_analysis.results import ModelResult


@pytest.fixture
def sessions() -> pd.DataFrame:
    rows = []
    for c in range(12):
        for s in range(1, 3 + c % 4):
            rows.append({"client_id": f"C{c:02d}", "therapist_id": f"T{c % 3}", "session": s,
                         "phq9_total": 20.0 - s - c % 5, "wai_total": 3.0 + 0.1 * s,
                         "wai_goal": 3.0 + 0.1 * s, "wai_task": 3.1 + 0.05 * s + c % 2 * 0.1,
                         "wai_bond": 3.2 + 0.02 * c, "gender": "female" if c < 9 else "male",
                         "arm": "A" if c % 2 else "B"})
    frame = pd.DataFrame(rows)
    frame.loc[3, "phq9_total"] = float("nan")
    return frame


def test_sample_table_counts(sessions: pd.DataFrame) -> None:
    table = describe.sample_table(sessions).set_index("quantity")["value"]
    assert table["therapists"] == "3" and table["clients"] == "12"
    assert table["sessions"] == str(len(sessions))
    assert table["sessions per client, median (range)"] == "3.5 (2-5)"


def test_client_characteristics_suppress_small_cells(sessions: pd.DataFrame) -> None:
    table = describe.client_characteristics(sessions, ["gender", "arm", "absent"], 5)
    gender = table[table.characteristic == "gender"].set_index("level")
    assert gender.loc["male", "n"] == "<5" and gender.loc["male", "percent"] == ""
    assert gender.loc["female", "n"] == "[c]"  # else 12 - 9 would reveal the small cell
    arm = table[table.characteristic == "arm"].set_index("level")
    assert arm.loc["A", "n"] == 6 and arm.loc["A", "percent"] == 50.0
    assert "absent" not in set(table.characteristic)


def test_attendance_and_missingness(sessions: pd.DataFrame) -> None:
    attendance = describe.attendance(sessions).set_index("session")
    assert attendance.loc[1, "clients"] == 12 and attendance["last_session"].sum() == 12
    assert attendance.loc[2, "last_session"] == 3  # clients 0, 4, 8 end at session 2
    missing = describe.missingness(sessions, [get_instrument("phq9")]).set_index("session")
    assert missing.loc[2, "phq9_missing_percent"] == round(100 / 12, 1)


def test_trajectory_summary_ci(sessions: pd.DataFrame) -> None:
    table = describe.trajectory_summary(sessions, "phq9_total").set_index("session")
    one = sessions.loc[sessions.session == 1, "phq9_total"]
    assert table.loc[1, "mean"] == pytest.approx(one.mean())
    assert table.loc[1, "ci_low"] < one.mean() < table.loc[1, "ci_high"]


def test_figures_are_byte_identical(sessions: pd.DataFrame, tmp_path: Path) -> None:
    phq9, wai = get_instrument("phq9"), get_instrument("wai")
    digests = []
    for attempt in ("a", "b"):
        summaries = {i.key: describe.trajectory_summary(sessions, i.score_column())
                     for i in (wai, phq9)}
        figures = plots.describe_figures(sessions, wai, phq9, [wai, phq9],
                                         describe.attendance(sessions), summaries, seed=1)
        for name, fig in figures.items():
            plots.save(fig, tmp_path / attempt, name)
        digests.append({p.name: p.read_bytes() for p in sorted((tmp_path / attempt).iterdir())})
    assert digests[0] == digests[1] and len(digests[0]) == 10


def test_save_writes_savefig_bytes(sessions: pd.DataFrame, tmp_path: Path) -> None:
    """plots.save runs the constrained layout once for both files: the SVG's bytes are
    exactly those of savefig printing it from the layout savefig made for the PNG, and the
    PNG holds exactly the pixels, size and resolution of savefig's PNG (its own encoder
    filters the rows differently, so its bytes differ)."""
    import matplotlib as mpl

    from alliance_analysis.report import figure_files

    phq9, wai = get_instrument("phq9"), get_instrument("wai")

    def figures() -> dict[str, Figure]:
        summaries = {i.key: describe.trajectory_summary(sessions, i.score_column())
                     for i in (wai, phq9)}
        params = pd.DataFrame({"term": ["Intercept", "x", "z"], "estimate": [1.0, 0.5, -0.2],
                               "se": [0.1, 0.1, 0.3], "ci_low": [0.8, 0.3, -0.8],
                               "ci_high": [1.2, 0.7, 0.4], "p": [0.01, 0.02, 0.5]})
        lifted = Figure(layout="constrained")  # a title lifted over top tick labels
        axes = lifted.subplots(1, 2)
        for ax in axes:
            ax.plot([0, 1e6], [0, 2e6])
            ax.xaxis.tick_top()
            ax.set_title("lifted over the tick labels")
        axes[1].set_in_layout(False)  # in the grid, left out by the layout
        inset = lifted.add_axes((0.6, 0.2, 0.2, 0.2))  # outside the layout's grid
        inset.xaxis.tick_top()
        inset.set_title("inset")
        lower = Figure(layout="constrained")  # titles at the top, a twin and an offset text
        left, right = lower.subplots(1, 2)
        left.plot([0, 1], [0, 1])
        left.twinx().plot([0, 1], [1, 0])
        right.plot([0, 1], [1e6, 1e6 + 1])
        for ax in (left, right):
            ax.set_title("title")
        return {"lifted": lifted, "lower": lower,
                **plots.describe_figures(sessions, wai, phq9, [wai, phq9],
                                         describe.attendance(sessions), summaries, seed=1),
                "coefficients": plots.coefficients(
                    ModelResult("m", params, {"converged": True, "warnings": []}, "y ~ x + z"))}

    for name, fig in figures().items():
        engine = fig.get_layout_engine()
        plots.save(fig, tmp_path / "save", name)
        assert fig.get_layout_engine() is engine is not None  # the figure's engine is kept
        if name == "lifted":  # placed anew by each drawing, as savefig places them
            assert all(ax.title.get_position()[1] > 1 for ax in fig.axes)
        if name == "lower":  # the right axes has a y offset text: its title is placed anew
            assert fig.axes[1].yaxis.offsetText.get_text()
            assert all(ax._autotitlepos for ax in fig.axes)  # restored
    for name, fig in figures().items():  # new figures: a layout run twice moves by rounding
        with mpl.rc_context(figure_files.RC):
            fig.savefig(tmp_path / f"{name}.png", dpi=300, metadata={"Software": None})
            fig.set_layout_engine("none")
            fig.savefig(tmp_path / f"{name}.svg", metadata={"Date": None, "Creator": None})
        assert ((tmp_path / "save" / f"{name}.svg").read_bytes()
                == (tmp_path / f"{name}.svg").read_bytes()), name
        _assert_same_png(tmp_path / "save" / f"{name}.png", tmp_path / f"{name}.png")


def _assert_same_png(ours: Path, theirs: Path) -> None:
    """The two PNG files hold the same pixels, mode, size and metadata (resolution)."""
    import numpy as np
    from PIL import Image

    with Image.open(ours) as a, Image.open(theirs) as b:
        assert (a.mode, a.size, a.info) == (b.mode, b.size, b.info), ours.name
        assert np.array_equal(np.asarray(a), np.asarray(b)), ours.name


def test_coefficient_plot_flags_non_convergence() -> None:
    params = pd.DataFrame({"term": ["Intercept", "x"], "estimate": [1.0, 0.5], "se": [0.1, 0.1],
                           "ci_low": [0.8, 0.3], "ci_high": [1.2, 0.7], "p": [0.01, 0.02]})
    result = ModelResult("m", params, {"converged": False, "warnings": ["w"]}, "y ~ x")
    fig = plots.coefficients(result)
    assert "did NOT converge" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["x"]


def test_change_and_model_figures() -> None:
    phq9 = get_instrument("phq9")
    table = pd.DataFrame({"pre": [15.0, 12.0, 8.0], "post": [5.0, 12.0, 16.0],
                          "category": ["recovered", "unchanged", "reliably deteriorated"]})
    fig = plots.reliable_change(table, phq9, threshold=6, cutoff=10)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "recovered (1)" in labels and "clinical cut-off (10)" in labels
    intercepts = pd.DataFrame({"level": "therapist_id", "group": ["a", "b"],
                               "estimate": [0.5, -0.5], "ci_low": [0.0, -1.0],
                               "ci_high": [1.0, 0.0]})
    assert "therapists" in plots.caterpillar(intercepts, "PHQ-9").axes[0].get_xlabel()


def test_example_trajectories_mark_events(sessions: pd.DataFrame) -> None:
    events = pd.DataFrame({"client_id": ["C01", "C02"], "postgain_session": [2, 3]})
    fig = plots.example_trajectories(sessions, "phq9_total", events, "postgain_session",
                                     "PHQ-9", "gains")
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["C01", "C02"]


def test_panel_path_diagram_labels_every_lagged_path() -> None:
    rows = []
    for model in ("riclpm", "clpm"):
        for (a, b) in (("wai", "wai"), ("phq9", "phq9"), ("wai", "phq9"), ("phq9", "wai")):
            for wave in (1, 2):
                rows.append({"model": model, "path": f"{a} -> {b}", "from_session": wave,
                             "to_session": wave + 1, "std_estimate": -0.25 if a != b else 0.4,
                             "p": 0.01 if a == "wai" else 0.5})
    fig = plots.panel_path_diagram(pd.DataFrame(rows), "riclpm", "wai", "alliance",
                                   "symptoms")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert {"wA1", "wA3", "wS2"} <= set(texts) and texts.count("-0.25") == 4
    arrows = [t.arrow_patch for t in fig.axes[0].texts if getattr(t, "arrow_patch", None)]
    assert len(arrows) == 8  # 2 lags x (2 autoregressive + 2 cross-lagged)
    assert sum(a.get_linestyle() == "--" for a in arrows) == 4  # the p >= .05 paths
    assert "within-person" in fig.axes[0].get_title()


def test_save_without_a_layout_engine_keeps_savefigs_pixels_and_the_canvas(
        tmp_path: Path) -> None:
    """A figure without a layout engine, saved under non-default savefig rcParams
    (transparent, another face colour): the PNG holds savefig's pixels, and the figure keeps
    the canvas it had."""
    import matplotlib as mpl

    from alliance_analysis.report import figure_files

    for rc in ({"savefig.transparent": True}, {"savefig.facecolor": "0.9"}):
        fig = Figure(figsize=(3, 2))
        fig.add_subplot().plot([0, 1, 3], [2, 0, 1])
        canvas = fig.canvas
        with mpl.rc_context(rc):
            plots.save(fig, tmp_path / "save", "plain")
            assert fig.canvas is canvas and fig.get_layout_engine() is None
            with mpl.rc_context(figure_files.RC):
                fig.savefig(tmp_path / "plain.png", dpi=300, metadata={"Software": None})
        _assert_same_png(tmp_path / "save" / "plain.png", tmp_path / "plain.png")
