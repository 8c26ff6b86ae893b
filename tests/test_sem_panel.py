"""Panel models from the session table: reshaping, recovery of known effects, reports.

Recovery: a seeded RI-CLPM panel (the generating model of tests/reference/generate_sem.py,
N = 4000, 5 waves, time-invariant effects) is fitted with the lagged paths constrained equal
over waves. Each estimate must lie within 3 of its reported standard errors of the truth and
within a stated absolute tolerance (0.05 for the autoregressive paths, 0.2 for alliance ->
symptoms, 0.01 for symptoms -> alliance; about 3-4 SE at this N). Once with complete data
(listwise = all cases), once with 15% of cells missing completely at random (FIML).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.report.runfolder import RunFolder
from alliance_analysis.sem.models import fit_cfa, fit_sem
from alliance_analysis.options import SemOptions
from alliance_analysis.sem.panel import fit_growth, fit_panel, growth_data, wide_panel
from alliance_analysis.report.sem import write_cfa, write_growth, write_panel
from alliance_analysis.sem.syntax import riclpm_syntax

TRUTH = {"ar_x": 0.3, "ar_y": 0.4, "cl_xy": -1.0, "cl_yx": -0.02}
TOLERANCE = {"ar_x": 0.05, "ar_y": 0.05, "cl_xy": 0.2, "cl_yx": 0.01}


def riclpm_panel(n: int, waves: int, seed: int, p_missing: float = 0.0) -> pd.DataFrame:
    """Wide panel x1..xK (alliance), y1..yK (symptoms) from a known RI-CLPM."""
    rng = np.random.default_rng(seed)
    intercepts = rng.multivariate_normal([0, 0], [[0.36, -0.9], [-0.9, 9.0]], size=n)
    within = np.empty((n, waves, 2))
    within[:, 0] = rng.multivariate_normal([0, 0], [[0.25, -0.25], [-0.25, 6.25]], size=n)
    phi = np.array([[TRUTH["ar_x"], TRUTH["cl_yx"]], [TRUTH["cl_xy"], TRUTH["ar_y"]]])
    for t in range(1, waves):
        within[:, t] = (within[:, t - 1] @ phi.T
                        + rng.multivariate_normal([0, 0], [[0.2, -0.15], [-0.15, 5.0]], size=n))
    x = 4.8 + 0.1 * np.arange(waves) + intercepts[:, [0]] + within[:, :, 0]
    y = 14.0 - np.arange(waves) + intercepts[:, [1]] + within[:, :, 1]
    data = pd.DataFrame({**{f"x{t + 1}": x[:, t] for t in range(waves)},
                         **{f"y{t + 1}": y[:, t] for t in range(waves)}})
    return data.mask(rng.random(data.shape) < p_missing) if p_missing else data


@pytest.mark.parametrize(("p_missing", "missing"), [(0.0, "listwise"), (0.15, "fiml")])
def test_recovers_true_lagged_effects(p_missing: float, missing: str) -> None:
    data = riclpm_panel(4000, 5, seed=20261130, p_missing=p_missing)
    x, y = [f"x{t}" for t in range(1, 6)], [f"y{t}" for t in range(1, 6)]
    syntax = riclpm_syntax(x, y, constrain_autoregressive=True, constrain_crosslagged=True)
    result = fit_sem(syntax, data, "recovery", missing=missing, meanstructure=True)
    assert result.fit["converged"] and result.fit["n_obs"] == 4000
    estimates = result.params.loc[result.params["label"] != ""].drop_duplicates("label")
    assert set(estimates["label"]) == set(TRUTH)
    for row in estimates.itertuples(index=False):
        error = abs(row.estimate - TRUTH[row.label])
        assert error < 3 * row.se and error < TOLERANCE[row.label], (row.label, row.estimate)


def sessions_table(n_clients: int = 300, n_sessions: int = 8, seed: int = 11) -> pd.DataFrame:
    """A canonical-looking session table: WAI items from three correlated facets of a
    client's alliance, symptoms lowered by the previous session's within-client alliance
    (-1.5 per point), dropout after session 4, and a few missed questionnaires."""
    rng = np.random.default_rng(seed)
    rows = []
    wai = get_instrument("wai")
    facet_of = {i: name for name, items in wai.subscales.items() for i in items}
    for c in range(n_clients):
        level = rng.normal(3.8, 0.45)
        last = int(rng.integers(4, n_sessions + 1))
        symptom_level = 14 - 3.0 * (level - 3.8) + rng.normal(0, 3)
        previous = 0.0
        for s in range(1, last + 1):
            deviation = rng.normal(0, 0.3)
            facets = {name: rng.normal(0, 0.2) for name in wai.subscales}
            items = {f"wai_{i}": float(np.clip(np.round(level + deviation + facets[facet_of[i]]
                                                        + rng.normal(0, 0.45)), 1, 5))
                     for i in range(1, 13)}
            phq = float(np.clip(symptom_level - 0.3 * (s - 1) - 1.5 * previous
                                + rng.normal(0, 2.5), 0, 27))
            previous = deviation
            row = {"client_id": f"c{c:03d}", "session": s, **items,
                   "wai_total": float(np.mean(list(items.values()))), "phq9_total": phq}
            if rng.random() < 0.05:
                row.update({"wai_total": np.nan, "phq9_total": np.nan,
                            **{f"wai_{i}": np.nan for i in range(1, 13)}})
            rows.append(row)
    table = pd.DataFrame(rows)
    table["session"] = table["session"].astype("Int64")
    return table


@pytest.fixture(scope="module")
def sessions() -> pd.DataFrame:
    return sessions_table()


def test_wide_panel_one_row_per_client_and_nan_for_missed_sessions(sessions) -> None:
    wide = wide_panel(sessions, {"wai": "wai_total", "phq9": "phq9_total"}, (1, 4, 8))
    assert list(wide.columns) == ["wai_s1", "wai_s4", "wai_s8", "phq9_s1", "phq9_s4", "phq9_s8"]
    assert wide.index.name == "client_id" and wide.index.is_unique
    assert len(wide) == sessions["client_id"].nunique()
    row = sessions.loc[(sessions["client_id"] == "c005") & (sessions["session"] == 4)]
    assert wide.loc["c005", "phq9_s4"] == pytest.approx(row["phq9_total"].iloc[0], nan_ok=True)
    attended = sessions.groupby("client_id")["session"].max()
    assert wide.loc[attended < 8, "wai_s8"].isna().all()


def test_wide_panel_rejects_duplicated_sessions(sessions) -> None:
    doubled = pd.concat([sessions, sessions.iloc[[0]]])
    with pytest.raises(AllianceDataError, match="duplicated client-session"):
        wide_panel(doubled, {"wai": "wai_total"}, (1, 2, 3))


def test_growth_data_centres_early_alliance(sessions) -> None:
    options = SemOptions(growth_sessions=(1, 2, 3, 4), early_sessions=2)
    data = growth_data(sessions, get_instrument("phq9"), get_instrument("wai"), options)
    assert data["wai_early"].mean() == pytest.approx(0.0, abs=1e-12)
    first = sessions.loc[sessions["session"] <= 2].groupby("client_id")["wai_total"].mean()
    np.testing.assert_allclose(data["wai_early"], (first - first.mean()).reindex(data.index))


def test_panel_models_and_reading(sessions) -> None:
    panel = fit_panel(sessions, get_instrument("wai"), get_instrument("phq9"), SemOptions())
    assert panel.riclpm.fit["converged"] and panel.clpm.fit["converged"]
    assert panel.riclpm.fit["df"] == 9 and panel.clpm.fit["df"] == 12
    lagged = panel.lagged()
    assert len(lagged) == 2 * 4 * 3
    assert set(lagged["path"]) == {"wai -> phq9", "phq9 -> wai", "wai -> wai", "phq9 -> phq9"}
    within = lagged.query("model == 'riclpm' and path == 'wai -> phq9'")
    assert (within["estimate"] < 0).all()  # generated: -1.5 per point of within alliance
    table = panel.side_by_side()
    assert list(table.columns) == ["path", "kind", "riclpm_std", "riclpm_significant",
                                   "clpm_std", "clpm_significant"]
    text = panel.reading()
    assert "RI-CLPM: when a client's wai is above their own usual level" in text
    assert "CLPM fits worse by chi-square" in text
    comparison = panel.comparison()
    assert comparison["df_diff"] == 3


def test_constrained_panel_has_one_estimate_per_path(sessions) -> None:
    options = SemOptions(constrain_autoregressive=True, constrain_crosslagged=True)
    panel = fit_panel(sessions, get_instrument("wai"), get_instrument("phq9"), options)
    assert panel.riclpm.fit["df"] == 9 + 8
    per_path = panel.lagged().groupby(["model", "path"])["estimate"].nunique()
    assert (per_path == 1).all()


def test_listwise_panel_reports_dropped_clients(sessions) -> None:
    options = SemOptions(missing="listwise", waves=(1, 2, 3, 4, 5))
    panel = fit_panel(sessions, get_instrument("wai"), get_instrument("phq9"), options)
    wide = wide_panel(sessions, {"wai": "wai_total", "phq9": "phq9_total"}, options.waves)
    complete = int(wide.notna().all(axis=1).sum())
    assert panel.riclpm.fit["n_obs"] == complete
    assert panel.riclpm.fit["n_dropped"] == len(wide) - complete > 0


def test_stage_writes_tables_and_headline_numbers(sessions, tmp_path) -> None:
    """The notebook's calls, end to end, into a run folder."""
    options = SemOptions(growth_sessions=(1, 2, 3, 4), early_sessions=2)
    wai, phq9 = get_instrument("wai"), get_instrument("phq9")
    run = RunFolder(tmp_path / "run")
    cfa_values = write_cfa(run, fit_cfa(sessions, wai, 1))
    panel_values = write_panel(run, fit_panel(sessions, wai, phq9, options))
    growth = fit_growth(sessions, phq9, wai, options)
    growth_values = write_growth(run, growth)
    for name in ("sem_cfa_fit", "sem_cfa_loadings", "sem_cfa_omega", "sem_riclpm", "sem_clpm",
                 "sem_panel_fit", "sem_panel_lagged", "sem_growth", "sem_growth_fit"):
        assert (run.path / "tables" / f"{name}.csv").is_file(), name
    assert "lavaan's conventions" in (run.path / "tables" / "sem_cfa_fit.md").read_text()
    stored = run.results()
    for key in ("sem.cfa.three_factor.cfi", "sem.cfa.bifactor.omega_h",
                "sem.riclpm.wai_to_phq9.std_estimate", "sem.riclpm.wai_to_phq9.s1_s2.p",
                "sem.clpm.phq9_to_wai.estimate", "sem.panel.p_diff",
                "sem.growth.slope_on_early_alliance.estimate", "sem.growth.slope_mean"):
        assert key in stored, key
    assert stored.keys() >= {**cfa_values, **panel_values, **growth_values}.keys()
    assert growth.fit["converged"]
    assert stored["sem.growth.slope_mean"] == pytest.approx(-0.3, abs=0.15)  # generated -0.3
