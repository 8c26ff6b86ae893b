"""The nested mixed-model engine against lme4, lmerTest and the published sleepstudy fit.

Reference values:

* ``tests/reference/multilevel_lme4.json``: lme4 1.1-31 fits (bobyqa) of four models, REML and
  ML (see ``tests/reference/README.md``);
* the published sleepstudy fit (Bates, Mächler, Bolker & Walker 2015, JSS 67(1), section 3);
* a few values computed for this file with R 4.2.2, lme4 1.1-31 and lmerTest 3.1-3 (the R
  code is in :data:`EXTRA_R`), for what the fixtures do not cover: lmerTest's covariance of
  the variance parameters, lme4's conditional variances of the random effects, a singular
  three-level model with a therapist slope, and sleepstudy with single-observation subjects.

Tolerances (from project issue 10): the engine's log-likelihood is no lower than lme4's minus
1e-6 (and no more than 1e-5 above it, which would mean a different likelihood); fixed effects
and their standard errors within 1e-4 relative; variance components within 1e-3 relative
(the optimizers' own tolerance; the engine agrees to about 1e-6 in practice).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from alliance_analysis.multilevel.engine.nested import fit_nested
from alliance_analysis.errors import ConvergenceWarning
from alliance_analysis.results import PARAM_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference"
LME4 = json.loads((REFERENCE / "multilevel_lme4.json").read_text(encoding="utf-8"))["cases"]

LOGLIK_BELOW = 1e-6
LOGLIK_ABOVE = 1e-5
FIXED_RTOL = 1e-4
VARIANCE_RTOL = 1e-3

EXTRA_R = """
library(lme4); library(lmerTest)
ctrl <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-12, maxfun = 1e5))
ss <- read.csv("data/reference/sleepstudy.csv"); ss$Subject <- factor(ss$Subject)
for (reml in c(TRUE, FALSE))  # lmerTest's covariance of (theta, sigma)
  print(lmerTest::lmer(Reaction ~ Days + (Days | Subject), ss, REML = reml,
                       control = lmerControl(optimizer = "bobyqa"))@vcov_varpar, digits = 10)
tl <- read.csv("tests/reference/ml_threelevel.csv")
for (reml in c(TRUE, FALSE)) {
  m <- lme4::lmer(y ~ session + (1 + session | client) + (1 + session | therapist), tl,
                  REML = reml, control = ctrl)
  print(c(logLik(m), fixef(m), isSingular(m)), digits = 15); print(VarCorr(m), digits = 15)
}
keep <- !((ss$Subject %in% c(308, 309) & ss$Days > 0) | (ss$Subject == 310 & ss$Days > 1) |
          (ss$Subject == 330 & ss$Days >= 5))
m <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss[keep, ], control = ctrl)
print(c(logLik(m), fixef(m), sqrt(diag(vcov(m)))), digits = 15)
m <- lme4::lmer(Reaction ~ Days + (Days | Subject), ss, control = lmerControl(optimizer = "bobyqa"))
print(attr(ranef(m, condVar = TRUE)$Subject, "postVar")[, , 1], digits = 12)
m <- lme4::lmer(y ~ session + (1 + session | client) + (1 | therapist), tl,
                control = lmerControl(optimizer = "bobyqa"))
re <- ranef(m, condVar = TRUE)
print(attr(re$client, "postVar")[, , 1], digits = 12)
print(attr(re$therapist, "postVar")[, , 1], digits = 12)
"""

#: lmerTest's ``vcov_varpar`` (covariance of theta_1..3 and sigma) for sleepstudy.
LMERTEST_VARPAR = {
    "REML": [[0.057651364539, -0.004497028864, 0.001812501529, -0.117657931730],
             [-0.004497028864, 0.005541556224, -0.001159463185, 0.009177772332],
             [0.001812501529, -0.001159463185, 0.002788178278, -0.025874779042],
             [-0.117657931730, 0.009177772332, -0.025874779042, 2.274100865686]],
    "ML": [[0.052893072656, -0.004329944824, 0.001802150389, -0.115606708505],
           [-0.004329944824, 0.005087407831, -0.001149133186, 0.009463825193],
           [0.001802150389, -0.001149133186, 0.002578674977, -0.025525951598],
           [-0.115606708505, 0.009463825193, -0.025525951598, 2.274101022987]],
}

#: lme4 fit of y ~ session + (1 + session | client) + (1 + session | therapist) on
#: ml_threelevel.csv: singular (therapist correlation -1).
THERAPIST_SLOPE = {
    "REML": {"loglik": -4159.91655467281, "fixed": [10.176164841673899, -0.536902789377987],
             "se": [0.2092224143617770, 0.0259822519698084],
             "variances": {("client", "(Intercept)", None): 3.9024547781077974,
                           ("client", "session", None): 0.0978514659747523,
                           ("client", "(Intercept)", "session"): -0.1517910409009579,
                           ("therapist", "(Intercept)", None): 0.7287903446164214,
                           ("residual", None, None): 2.2391527766879027}},
    "ML": {"loglik": -4156.44968097241, "fixed": [10.177177677081842, -0.536914639946069],
           "se": [0.2054948570439584, 0.0259014411188305],
           "variances": {("client", "(Intercept)", None): 3.902922051785679969,
                         ("client", "session", None): 0.097208444190991727,
                         ("client", "(Intercept)", "session"): -0.150952355009225159,
                         ("therapist", "(Intercept)", None): 0.682643708315900932,
                         ("residual", None, None): 2.239158037984520178}},
}

#: lme4's conditional variances (``attr(ranef(fit, condVar = TRUE)$g, "postVar")``) of the first
#: group, REML fits: sleepstudy subject 308; three-level correlated client c001, therapist t01.
CONDITIONAL_VARIANCE = {
    ("sleepstudy", "client", "308"): [[145.7050944309, -21.44442522755],
                                      [-21.4444252276, 5.31227351459]],
    ("threelevel_correlated", "client", "c001"): [[0.8378231621043, -0.0963248544609],
                                                  [-0.0963248544609, 0.0261134759195]],
    ("threelevel_correlated", "therapist", "t01"): [[0.28516137981]],
}

#: lme4 REML fit of sleepstudy without Days > 0 of subjects 308 and 309 (one observation
#: each), Days > 1 of 310 and Days >= 5 of 330 (149 rows).
SINGLE_OBSERVATION = {"loglik": -715.430121240131, "fixed": [253.3128669888483, 10.9322924180287],
                      "se": [6.91229580309903, 1.63855027890362],
                      "variances": {("client", "(Intercept)", None): 602.7206715596856,
                                    ("client", "Days", None): 32.2808468686380,
                                    ("client", "(Intercept)", "Days"): -50.7072843212662,
                                    ("residual", None, None): 619.1899102431901}}

CASES: dict[str, dict[str, Any]] = {
    "sleepstudy": {"outcome": "Reaction", "fixed": ["Days"], "random": ["1", "Days"],
                   "client": "Subject"},
    "threelevel_correlated": {"outcome": "y", "fixed": ["session"], "random": ["1", "session"],
                              "client": "client", "therapist": "therapist"},
    "threelevel_uncorrelated": {"outcome": "y", "fixed": ["session"],
                                "random": ["1", "session"], "client": "client",
                                "therapist": "therapist", "correlated": False},
    "withinbetween": {"outcome": "symptoms",
                      "fixed": ["session", "alliance_within_lag1", "alliance_between"],
                      "random": ["1", "session"], "client": "client"},
}
LEVEL = {"Subject": "client", "client": "client", "therapist": "therapist"}


def _read(case: str) -> pd.DataFrame:
    return pd.read_csv(ROOT / LME4[case]["data_file"])


def _components(result: Any) -> dict[tuple[str, str | None, str | None], float]:
    """The engine's variance components keyed by (level, term, term2)."""
    table = result.extra["variance_components"]
    return {tuple(None if pd.isna(v) else v for v in (row.level, row.term, row.term2)): row.vcov
            for row in table.itertuples()}


def _lme4_components(fit: dict[str, Any]) -> dict[tuple[str, str | None, str | None], float]:
    """lme4's variance components from the fixture, keyed as :func:`_components`."""
    out: dict[tuple[str, str | None, str | None], float] = {}
    for group, block in fit["random_effects"].items():
        if group == "Residual":
            out[("residual", None, None)] = block["variance"]
            continue
        for term, value in block["variances"].items():
            out[(LEVEL[group], term, None)] = value
        for pair, value in block["covariances"].items():
            first, second = pair.split(":")
            out[(LEVEL[group], first, second)] = value
    return out


def _assert_variances(result: Any, expected: dict[tuple[str, str | None, str | None], float]
                      ) -> None:
    ours = _components(result)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, rel=VARIANCE_RTOL), key


def _assert_loglik(ours: float, reference: float) -> None:
    assert ours >= reference - LOGLIK_BELOW
    assert ours <= reference + LOGLIK_ABOVE


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_lme4_fixtures(case: str, method: str) -> None:
    reference = LME4[case]["fits"][method]
    result = fit_nested(_read(case), reml=method == "REML", **CASES[case])
    _assert_loglik(result.fit["loglik"], reference["logLik"])
    fixed = reference["fixed_effects"]
    assert list(result.params["term"]) == list(fixed)
    np.testing.assert_allclose(result.params["estimate"], [v["estimate"] for v in fixed.values()],
                               rtol=FIXED_RTOL)
    np.testing.assert_allclose(result.params["se"], [v["se"] for v in fixed.values()],
                               rtol=FIXED_RTOL)
    _assert_variances(result, _lme4_components(reference))
    assert result.fit["aic"] == pytest.approx(reference["AIC"], abs=1e-5)
    assert result.fit["bic"] == pytest.approx(reference["BIC"], abs=1e-5)
    assert result.fit["n_obs"] == reference["nobs"]
    assert result.fit["n_dropped"] == reference["n_rows_dropped"]
    assert result.fit["converged"] and not result.fit["singular"]
    assert result.fit["max_scaled_gradient"] < 1e-3


@pytest.mark.parametrize("method", ["REML", "ML"])
@pytest.mark.parametrize("case", list(CASES))
def test_conditional_modes_match_lme4(case: str, method: str) -> None:
    """``ranef(fit)`` of every client and therapist, to 1e-6 of the largest mode."""
    reference = LME4[case]["fits"][method]["conditional_modes"]
    result = fit_nested(_read(case), reml=method == "REML", **CASES[case])
    table = result.extra["random_effects"]
    for group, terms in reference.items():
        for term, modes in terms.items():
            ours = table.query("level == @LEVEL[@group] and term == @term").set_index("group")
            expected = pd.Series(modes)
            assert sorted(ours.index) == sorted(expected.index)
            scale = expected.abs().max()
            np.testing.assert_allclose(ours.loc[expected.index, "estimate"], expected,
                                       atol=1e-6 * scale)


@pytest.mark.parametrize(("case", "level", "group"), list(CONDITIONAL_VARIANCE))
def test_conditional_variances_match_lme4(case: str, level: str, group: str) -> None:
    result = fit_nested(_read(case), **CASES[case])
    rows = result.extra["random_effects"].query("level == @level and group == @group")
    expected = np.sqrt(np.diag(CONDITIONAL_VARIANCE[case, level, group]))
    np.testing.assert_allclose(rows["se"], expected, rtol=1e-4)


def test_sleepstudy_published_values() -> None:
    """Bates et al. (2015), section 3: the printed digits of ``summary(fm1)``."""
    result = fit_nested(_read("sleepstudy"), "Reaction", ["Days"], random=["1", "Days"],
                        client="Subject")
    params = result.params.set_index("term")
    assert round(params.loc["(Intercept)", "estimate"], 3) == 251.405
    assert round(params.loc["(Intercept)", "se"], 3) == 6.825
    assert round(params.loc["Days", "estimate"], 3) == 10.467
    assert round(params.loc["Days", "se"], 3) == 1.546
    components = _components(result)
    assert round(components[("client", "(Intercept)", None)], 2) == 612.09
    assert round(components[("client", "Days", None)], 2) == 35.07
    correlation = result.extra["variance_components"].query("term2 == 'Days'")["sdcor"].item()
    assert round(correlation, 3) == 0.066
    assert round(components[("residual", None, None)], 2) == 654.94
    assert round(result.fit["reml_criterion"], 3) == 1743.628


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_variance_parameter_covariance_matches_lmertest(method: str) -> None:
    """``2 H^-1`` equals lmerTest's covariance of (theta, sigma) mapped to the variances."""
    reference = LME4["sleepstudy"]["fits"][method]
    t1, t2, t3 = reference["theta"].values()
    sigma = reference["sigma"]
    s2 = sigma**2
    # d(var_int, var_days, cov, sigma^2) / d(theta_1, theta_2, theta_3, sigma)
    jacobian = np.array([
        [2 * s2 * t1, 0, 0, 2 * sigma * t1**2],
        [0, 2 * s2 * t2, 2 * s2 * t3, 2 * sigma * (t2**2 + t3**2)],
        [s2 * t2, s2 * t1, 0, 2 * sigma * t1 * t2],
        [0, 0, 0, 2 * sigma],
    ])
    expected = jacobian @ np.array(LMERTEST_VARPAR[method]) @ jacobian.T
    result = fit_nested(_read("sleepstudy"), "Reaction", ["Days"], random=["1", "Days"],
                        client="Subject", reml=method == "REML")
    ours = result.extra["variance_parameters_cov"]
    assert list(ours.index) == ["client:(Intercept)", "client:Days", "client:(Intercept):Days",
                                "residual"]
    np.testing.assert_allclose(ours.to_numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(result.extra["variance_components"]["se"],
                               np.sqrt(np.diag(expected)), rtol=1e-4)


@pytest.mark.parametrize("method", ["REML", "ML"])
def test_singular_therapist_slope_matches_lme4(method: str) -> None:
    """A correlated therapist intercept and slope (correlation -1 at lme4's optimum)."""
    reference = THERAPIST_SLOPE[method]
    with pytest.warns(ConvergenceWarning, match="therapist session is perfectly correlated"):
        result = fit_nested(_read("threelevel_correlated"), "y", ["session"],
                            random=["1", "session"], client="client", therapist="therapist",
                            therapist_random=["1", "session"], reml=method == "REML")
    _assert_loglik(result.fit["loglik"], reference["loglik"])
    np.testing.assert_allclose(result.params["estimate"], reference["fixed"], rtol=FIXED_RTOL)
    np.testing.assert_allclose(result.params["se"], reference["se"], rtol=FIXED_RTOL)
    _assert_variances(result, reference["variances"])
    assert result.fit["singular"] and result.fit["converged"]
    correlation = result.extra["variance_components"].query(
        "level == 'therapist' and term2 == 'session'")["sdcor"].item()
    assert correlation == pytest.approx(-1, abs=1e-6)
    assert result.extra["variance_parameters_cov"].isna().all().all()


def test_single_observation_clients_match_lme4() -> None:
    data = _read("sleepstudy")
    drop = ((data.Subject.isin([308, 309]) & (data.Days > 0))
            | ((data.Subject == 310) & (data.Days > 1))
            | ((data.Subject == 330) & (data.Days >= 5)))
    result = fit_nested(data[~drop], "Reaction", ["Days"], random=["1", "Days"],
                        client="Subject")
    assert (result.fit["n_obs"], result.fit["n_clients"]) == (149, 18)
    _assert_loglik(result.fit["loglik"], SINGLE_OBSERVATION["loglik"])
    np.testing.assert_allclose(result.params["estimate"], SINGLE_OBSERVATION["fixed"],
                               rtol=FIXED_RTOL)
    np.testing.assert_allclose(result.params["se"], SINGLE_OBSERVATION["se"], rtol=FIXED_RTOL)
    _assert_variances(result, SINGLE_OBSERVATION["variances"])


def test_result_follows_the_conventions() -> None:
    result = fit_nested(_read("threelevel_uncorrelated"), **CASES["threelevel_uncorrelated"])
    assert tuple(result.params.columns[:6]) == PARAM_COLUMNS
    assert result.spec.startswith("y ~ session + (1 + session || client) + (1 | therapist)")
    for key in ("n_obs", "n_clients", "n_therapists", "loglik", "aic", "bic", "converged",
                "singular", "warnings", "optimizer", "gradient_norm"):
        assert key in result.fit
    assert (result.fit["n_clients"], result.fit["n_therapists"]) == (250, 30)
    table = result.extra["variance_components"]
    assert list(table["level"]) == ["client", "client", "therapist", "residual"]
    assert (table["ci_low"] < table["vcov"]).all() and (table["vcov"] < table["ci_high"]).all()
    assert result.to_markdown()
