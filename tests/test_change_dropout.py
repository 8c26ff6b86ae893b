"""Early alliance and dropout: hand-computed early slopes, both dropout definitions, and the
logistic model against R's glm (including the separation flag)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.stats.regression import fit_logit
from alliance_analysis.change.dropout import (dropout_by_sessions, dropout_from_column,
                                              dropout_model)
from alliance_analysis.data.clients import early_alliance
from alliance_analysis.errors import AllianceDataError, ConvergenceWarning


def _sessions(scores: dict[str, dict[int, float | None]], **columns: dict[str, object]
              ) -> pd.DataFrame:
    rows = [{"client_id": client, "therapist_id": "T1", "session": session, "wai_total": value,
             **{name: by_client[client] for name, by_client in columns.items()}}
            for client, by_session in scores.items() for session, value in by_session.items()]
    return pd.DataFrame(rows).astype({"session": "Int64", "wai_total": "float"})


def test_early_alliance_mean_and_slope_by_hand() -> None:
    """A: sessions 1-5 at 3, 3.5, 4, 4.5, 5 (session 6 is not early): mean 4, slope 0.5.
    B: session 3 unscored; t = 1, 2, 4, 5 (mean 3), a = 3, 3.5, 4.5, 5 (mean 4):
    sum (t - 3)(a - 4) = (-2)(-1) + (-1)(-0.5) + (1)(0.5) + (2)(1) = 5, sum (t - 3)^2 = 10,
    slope 0.5. C: one early score: mean 4.2, slope missing."""
    sessions = _sessions({"A": {1: 3, 2: 3.5, 3: 4, 4: 4.5, 5: 5, 6: 1},
                          "B": {1: 3, 2: 3.5, 3: None, 4: 4.5, 5: 5},
                          "C": {1: 4.2}})
    early = early_alliance(sessions, "wai_total", 5).set_index("client_id")
    assert early["early_n"].tolist() == [5, 4, 1]
    assert early["early_alliance"].to_numpy() == pytest.approx([4, 4, 4.2], rel=1e-12)
    assert early.loc["A", "early_slope"] == pytest.approx(0.5, rel=1e-12)
    assert early.loc["B", "early_slope"] == pytest.approx(0.5, rel=1e-12)
    assert np.isnan(early.loc["C", "early_slope"])


def test_dropout_by_sessions_spares_early_improvers() -> None:
    """k = 8: A ends at session 5 unimproved (dropout); B ends at 5 reliably improved (not a
    dropout); C ends at session 8 (completer); D ends at 7 with no change verdict (dropout)."""
    sessions = _sessions({"A": {1: 4, 5: 4}, "B": {1: 4, 5: 4}, "C": {1: 4, 8: 4},
                          "D": {7: 4}})
    improved = pd.Series({"A": False, "B": True, "C": False, "D": None}, dtype="boolean")
    table = dropout_by_sessions(sessions, improved, 8).set_index("client_id")
    assert table["last_session"].tolist() == [5, 5, 8, 7]
    assert table["dropout"].tolist() == [True, False, False, True]


def test_dropout_from_column_and_its_checks() -> None:
    sessions = _sessions({"A": {1: 4, 2: 4}, "B": {1: 4}}, ended_early={"A": 1, "B": 0})
    assert dropout_from_column(sessions, "ended_early")["dropout"].tolist() == [True, False]
    with pytest.raises(AllianceDataError, match="not in the session table"):
        dropout_from_column(sessions, "nope")
    bad = sessions.assign(ended_early=[1, 0, 0])  # differs between A's sessions
    with pytest.raises(AllianceDataError, match="same in every session"):
        dropout_from_column(bad, "ended_early")
    with pytest.raises(AllianceDataError, match="must be 0/1"):
        dropout_from_column(sessions.assign(ended_early=[2, 2, 0]), "ended_early")


# R reference: R 4.2.2, glm(y ~ x1 + x2, family = binomial,
# control = glm.control(epsilon = 1e-14, maxit = 100)) on the 30 clients below;
# coef(summary(m)), confint.default(m) (Wald), logLik(m), AIC(m), BIC(m). The tight epsilon
# matters: with R's default (1e-8) IRLS stops one step early and its standard errors, computed
# from that step's weights, differ from the Hessian at the estimate by about 5e-6 (relative).
X1 = [4.53, 4.89, 2.72, 3.93, 4.51, 4.68, 4.33, 4.75, 4.14, 4.28, 4.09, 3.46, 3.58, 4.19, 3.71,
      4.64, 4.65, 4.9, 3.99, 4.69, 3.55, 3.59, 4.04, 4.14, 3.2, 3.13, 4.18, 3.57, 4.6, 4.2]
X2 = [0.05, 0.03, 0.13, -0.02, 0.16, -0.08, -0.03, -0.1, 0.09, 0.01, -0.13, 0.3, -0.05, -0.02,
      0.06, 0.26, -0.02, 0.11, 0.01, -0.22, 0.12, 0.15, -0.04, -0.0, -0.23, -0.23, -0.06, 0.09,
      -0.07, 0.04]
Y = [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0]
R_GLM = {  # term: (estimate, se, ci_low, ci_high, p)
    "(Intercept)": (10.42912185245, 4.55999188086, 1.49170199618, 19.366541708723,
                    0.0221904422017),
    "early_alliance": (-2.85528280449, 1.16059150453, -5.13000035412, -0.580565254858,
                       0.0138861081635),
    "early_slope": (6.26846844126, 4.25325578625, -2.06775971684, 14.604696599352,
                    0.1405341778701),
}


def _table() -> pd.DataFrame:
    return pd.DataFrame({"client_id": [f"C{i:02d}" for i in range(30)], "last_session": 6,
                         "dropout": [bool(y) for y in Y], "early_alliance": X1,
                         "early_slope": X2})


def test_dropout_model_matches_r_glm() -> None:
    """Tolerance 1e-8 relative: R printed 12 significant digits, and both fits are converged
    far below that (statsmodels Newton: change in parameters < 1e-8, quadratic)."""
    result = dropout_model(_table(), early_sessions=5)
    params = result.params.set_index("term")
    for term, expected in R_GLM.items():
        got = params.loc[term, ["estimate", "se", "ci_low", "ci_high", "p"]].to_numpy(float)
        assert got == pytest.approx(expected, rel=1e-8), term
    assert params["odds_ratio"].to_numpy() == pytest.approx(np.exp(params["estimate"]),
                                                            rel=1e-12)
    assert params["or_ci_low"].to_numpy() == pytest.approx(np.exp(params["ci_low"]),
                                                           rel=1e-12)
    assert result.fit["loglik"] == pytest.approx(-12.6076828526, rel=1e-8)
    assert result.fit["aic"] == pytest.approx(31.2153657052, rel=1e-8)
    assert result.fit["bic"] == pytest.approx(35.4189578502, rel=1e-8)
    assert result.fit["converged"] and result.fit["warnings"] == []
    assert (result.fit["n_obs"], result.fit["n_events"]) == (30, 9)


def test_dropout_model_keeps_clients_with_a_full_early_window() -> None:
    table = _table().assign(last_session=[4] * 5 + [6] * 25)  # 5 clients left before session 5
    assert dropout_model(table, early_sessions=5).fit["n_obs"] == 25


def test_separation_is_flagged_not_hidden() -> None:
    """Dropout exactly when early alliance < 4.5: complete separation, no finite MLE."""
    data = pd.DataFrame({"x": [3.0, 3.5, 4.0, 4.4, 4.6, 5.0, 5.5, 6.0],
                         "z": [0.1, 0.3, 0.2, 0.5, 0.1, 0.2, 0.3, 0.4],
                         "y": [1, 1, 1, 1, 0, 0, 0, 0]})
    with pytest.warns(ConvergenceWarning, match="separation"):
        result = fit_logit("separated", data, "y", ["x", "z"])
    assert not result.fit["converged"]
    assert any("separation" in w for w in result.fit["warnings"])


def test_single_outcome_value_cannot_be_fitted() -> None:
    table = _table().assign(dropout=False)
    with pytest.warns(ConvergenceWarning, match="single value"):
        result = dropout_model(table, early_sessions=5)
    assert not result.fit["converged"] and result.params["odds_ratio"].isna().all()
