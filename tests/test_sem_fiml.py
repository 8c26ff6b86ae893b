"""The FIML likelihood by pattern (alliance_analysis.sem.fiml) and its analytic derivatives.

Checked against independent computations, tolerances per quantity:

* -2 logL: the sum of every case's normal log-density on its observed variables
  (scipy), 1e-12 relative;
* gradient: Richardson's four-point differences of -2 logL (steps 1e-4 max(|theta|, 1)),
  1e-8 relative to the largest entry (measured <= 1.6e-9; steps of 1e-3 leave 4e-7, the
  differences' own error);
* expected information: the per-pattern loop the module replaced, 1e-11 relative;
* observed information: Richardson differences of the analytic gradient (lavaan's way),
  at the estimates and 1% away, 1e-9 relative to the largest entry (measured <= 1.8e-11),
  for an RI-CLPM (regressions among latent variables), the political democracy SEM with
  labelled (equal) loadings and latent regressions, and a CFA without a mean structure;
* standard errors against lavaan 0.6-14's (observed information, fixture
  ``riclpm_fiml``): 2e-6 relative (measured 5.2e-7; the rest is lavaan's convergence and
  its numerical Hessian);
* EM estimates of the saturated moments: the per-pattern EM of
  :mod:`alliance_analysis.sem.fit`, 1e-10 relative, and lavaan's unrestricted
  log-likelihood, 1e-10 relative.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance_analysis.sem import estimation, fiml
from alliance_analysis.sem.fit import _em, _loglik
from alliance_analysis.sem.models import fit_sem
from alliance_analysis.sem.syntax import riclpm_syntax

from conftest import ROOT

REF = json.loads((ROOT / "tests/reference/sem_lavaan.json").read_text())["models"]
X = [f"x{k}" for k in range(1, 5)]
Y = [f"y{k}" for k in range(1, 5)]
POLDEM = """
ind60 =~ x1 + x2 + x3
dem60 =~ y1 + a*y2 + b*y3 + c*y4
dem65 =~ y5 + a*y6 + b*y7 + c*y8
dem60 ~ ind60
dem65 ~ ind60 + dem60
y1 ~~ y5
y2 ~~ y4 + y6
y3 ~~ y7
y4 ~~ y8
y6 ~~ y8
"""
HS = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9\n"


def _poldem_missing() -> pd.DataFrame:
    """Political democracy with 8% of the cells blanked (seeded, MCAR)."""
    data = pd.read_csv(ROOT / "data/reference/PoliticalDemocracy.csv")
    columns = [c for c in data.columns if c[0] in "xy"]
    rng = np.random.default_rng(11)
    values = data[columns].to_numpy(dtype=float)
    values[rng.random(values.shape) < 0.08] = np.nan
    return pd.DataFrame(values, columns=columns)


CASES = {
    "riclpm_fiml": lambda: (riclpm_syntax(X, Y), True, "fiml",
                            pd.read_csv(ROOT / "tests/reference/sem_riclpm_missing.csv")),
    "poldem_fiml": lambda: (POLDEM, True, "fiml", _poldem_missing()),
    "hs_no_means": lambda: (HS, False, "listwise",
                            pd.read_csv(ROOT / "data/reference/HolzingerSwineford1939.csv")),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request):
    syntax, meanstructure, missing, data = CASES[request.param]()
    model = estimation.structure(syntax, meanstructure)
    moments = estimation.moments(data, model.observed, missing)
    est = estimation.fit(model, moments)
    assert est.converged
    return request.param, model, moments, data, est


def _richardson(function, x: np.ndarray, relative: float = 1e-4) -> np.ndarray:
    """Four-point differences ``[f(x-2h) - 8 f(x-h) + 8 f(x+h) - f(x+2h)] / (12 h)``,
    column j for coordinate j (lavaan's ``lav_model_hessian`` scheme)."""
    columns = []
    for j in range(len(x)):
        h = relative * max(abs(x[j]), 1.0)
        step = np.zeros(len(x))
        step[j] = h
        columns.append((function(x - 2 * step) - 8 * function(x - step)
                        + 8 * function(x + step) - function(x + 2 * step)) / (12 * h))
    return np.array(columns).T


def _points(est) -> list[np.ndarray]:
    """The estimates, and a point 1% away (derivatives away from the optimum)."""
    rng = np.random.default_rng(5)
    return [est.theta, est.theta * (1 + 0.01 * rng.standard_normal(len(est.theta)))]


def _reference_loop(model, moments, theta):
    """-2 logL, its gradient and the expected information pattern by pattern (the loop the
    vectorised code replaced)."""
    sigma, mean = estimation.implied(model, theta)
    d_sigma, d_mean = estimation.derivatives(model, theta)
    total, grad, info = 0.0, np.zeros(len(theta)), np.zeros((len(theta), len(theta)))
    for idx, n, xbar, cov in moments.patterns:
        sub = sigma[np.ix_(idx, idx)]
        inv = np.linalg.inv(sub)
        resid = np.zeros(len(idx)) if mean is None else xbar - mean[idx]
        spread = cov + np.outer(resid, resid)
        total += n * (len(idx) * np.log(2 * np.pi) + np.linalg.slogdet(sub)[1]
                      + np.trace(inv @ spread))
        ds, dm = d_sigma[:, idx][:, :, idx], d_mean[:, idx]
        grad += n * (np.einsum("ij,kij->k", inv - inv @ spread @ inv, ds)
                     - 2 * dm @ (inv @ resid))
        x = inv @ ds
        info += n * (0.5 * np.einsum("kij,lji->kl", x, x) + dm @ inv @ dm.T)
    return total, grad, info


def test_minus2_loglik_is_the_sum_of_the_case_densities(fitted) -> None:
    name, model, moments, data, est = fitted
    sigma, mean = estimation.implied(model, est.theta)
    values = data.loc[:, list(model.observed)].to_numpy(dtype=float)
    if not model.meanstructure:
        values = values[np.isfinite(values).all(axis=1)]
        mean = values.mean(axis=0)
    total = 0.0
    for row in values:
        idx = np.flatnonzero(np.isfinite(row))
        if len(idx):
            total += stats.multivariate_normal(mean[idx], sigma[np.ix_(idx, idx)]).logpdf(
                row[idx])
    assert estimation.minus2_loglik(model, moments, est.theta) == pytest.approx(-2 * total,
                                                                               rel=1e-12)
    assert est.loglik == pytest.approx(total, rel=1e-12)


def test_gradient_and_expected_information_equal_the_pattern_loop(fitted) -> None:
    _, model, moments, _, est = fitted
    for theta in _points(est):
        total, grad, info = _reference_loop(model, moments, theta)
        ours_grad, ours_info = estimation._gradient_information(model, moments, theta)
        assert estimation.minus2_loglik(model, moments, theta) == pytest.approx(total,
                                                                               rel=1e-12)
        scale = np.max(np.abs(grad))
        np.testing.assert_allclose(ours_grad, grad, rtol=0, atol=1e-11 * max(scale, 1.0))
        np.testing.assert_allclose(ours_info, info, rtol=0, atol=1e-11 * np.max(np.abs(info)))


def test_gradient_is_the_derivative_of_minus2_loglik(fitted) -> None:
    _, model, moments, _, est = fitted
    theta = _points(est)[1]
    numerical = _richardson(
        lambda t: np.atleast_1d(estimation.minus2_loglik(model, moments, t)), theta)[0]
    grad = estimation._gradient_information(model, moments, theta, information=False)[0]
    assert np.max(np.abs(grad - numerical)) <= 1e-8 * np.max(np.abs(grad))


def test_observed_information_is_the_derivative_of_the_gradient(fitted) -> None:
    _, model, moments, _, est = fitted
    for theta in _points(est):
        numerical = 0.5 * _richardson(
            lambda t: estimation._gradient_information(model, moments, t,
                                                       information=False)[0], theta)
        numerical = (numerical + numerical.T) / 2
        analytic = estimation.observed_information(model, moments, theta)
        np.testing.assert_array_equal(analytic, analytic.T)
        assert np.max(np.abs(analytic - numerical)) <= 1e-9 * np.max(np.abs(numerical))


def test_observed_information_of_several_groups_is_the_sum() -> None:
    syntax, _, _, data = CASES["poldem_fiml"]()
    model = estimation.structure(syntax, True)
    halves = (data.iloc[::2], data.iloc[1::2])
    groups = tuple(estimation.moments(h, model.observed, "fiml") for h in halves)
    theta = estimation.fit(model, estimation.moments(data, model.observed, "fiml")).theta
    total = estimation.observed_information((model, model), groups, theta)
    parts = sum(estimation.observed_information(model, g, theta) for g in groups)
    np.testing.assert_allclose(total, parts, rtol=1e-13, atol=0)


def test_fiml_standard_errors_match_lavaan_observed_information() -> None:
    data = pd.read_csv(ROOT / "tests/reference/sem_riclpm_missing.csv")
    result = fit_sem(riclpm_syntax(X, Y), data, "riclpm_fiml", missing="fiml",
                     meanstructure=True)
    lavaan = {}
    for row in REF["riclpm_fiml"]["parameters"]:
        if row["free"]:
            names = [f"w_{n[1:]}" if len(n) == 3 and n[0] == "w" else
                     f"ri_{n[-1]}" if n in ("RIx", "RIy") else n for n in (row["lhs"], row["rhs"])]
            lavaan[(names[0], row["op"], names[1])] = lavaan[(names[1], row["op"], names[0])] = row
    assert result.fit["information"] == "observed"
    free = result.params[result.params["free"]]
    ratios = [row.se / lavaan[(row.lhs, row.op, row.rhs)]["se"] for row in free.itertuples()]
    assert len(ratios) == REF["riclpm_fiml"]["npar"]
    assert np.max(np.abs(np.array(ratios) - 1)) <= 2e-6


def test_a_block_that_is_not_positive_definite_gives_infinity() -> None:
    patterns = ((np.array([0, 1]), 5, np.zeros(2), np.eye(2)),
                (np.array([1]), 3, np.zeros(1), np.eye(1)))
    data = fiml.stack(patterns, 2)
    assert np.isfinite(fiml.minus2_loglik(data, np.eye(2), np.zeros(2)))
    # variable 1's variance negative: the 1 x 1 block of the second pattern fails
    assert fiml.minus2_loglik(data, np.diag([2.0, -1.0]), np.zeros(2)) == np.inf


def test_patterns_are_grouped_once_in_numpys_order() -> None:
    rng = np.random.default_rng(3)
    for p in (1, 4, 12, 70):  # 70 > 62 columns: the fallback on np.unique of the rows
        observed = rng.random((200, p)) < 0.8
        values = np.where(observed, rng.standard_normal((200, p)), np.nan)
        keep = observed.any(axis=1)
        groups, cases = fiml.group_rows(values[keep], observed[keep])
        unique, inverse = np.unique(observed[keep], axis=0, return_inverse=True)
        assert len(groups) == len(unique) == len(cases)
        for g, ((idx, n, mean, cov), rows) in enumerate(zip(groups, cases)):
            expected = values[keep][inverse.ravel() == g][:, unique[g]]
            np.testing.assert_array_equal(idx, np.flatnonzero(unique[g]))
            np.testing.assert_array_equal(rows, expected)
            assert n == len(expected)
            np.testing.assert_allclose(mean, expected.mean(axis=0), rtol=1e-14)
            np.testing.assert_allclose(cov, np.cov(expected, rowvar=False, bias=True)
                                       .reshape(len(idx), len(idx)), rtol=1e-12, atol=1e-14)


def test_stacked_patterns_are_zero_padded() -> None:
    data = pd.read_csv(ROOT / "tests/reference/sem_riclpm_missing.csv")
    moments = estimation.moments(data, tuple(data.columns), "fiml")
    stacked = moments.stacked
    assert stacked is moments.stacked  # built once
    assert stacked.n.sum() == moments.n_obs == len(data)
    for g, (idx, n, xbar, cov) in enumerate(moments.patterns):
        assert stacked.n[g] == n and stacked.count[g] == len(idx)
        np.testing.assert_array_equal(stacked.mean[g, idx], xbar)
        np.testing.assert_array_equal(stacked.cov[g][np.ix_(idx, idx)], cov)
        missing = ~stacked.observed[g]
        assert not stacked.mean[g, missing].any() and not stacked.cov[g][missing].any()


def test_vectorised_em_equals_the_pattern_loop_and_lavaan() -> None:
    data = pd.read_csv(ROOT / "tests/reference/sem_riclpm_missing.csv")
    moments = estimation.moments(data, tuple(data.columns), "fiml")
    mean, cov, converged = fiml.em_saturated(moments.stacked)
    loop_mean, loop_cov, loop_converged = _em(moments, 1e-13, 100_000)
    assert converged and loop_converged
    np.testing.assert_allclose(mean, loop_mean, rtol=1e-10)
    np.testing.assert_allclose(cov, loop_cov, rtol=1e-10)
    lavaan = REF["riclpm_fiml"]["fit_measures_all"]["unrestricted.logl"]
    assert _loglik(moments, mean, cov) == pytest.approx(lavaan, rel=1e-10)
    assert not fiml.em_saturated(moments.stacked, max_iter=2)[2]


def test_information_pattern_by_pattern_for_many_variables(monkeypatch) -> None:
    """Above ``_KRON_MAX_VARIABLES`` the weighted traces are summed per pattern: same
    numbers."""
    syntax, meanstructure, missing, data = CASES["poldem_fiml"]()
    model = estimation.structure(syntax, meanstructure)
    moments = estimation.moments(data, model.observed, missing)
    theta = estimation.fit(model, moments).theta
    kron = (estimation._gradient_information(model, moments, theta)[1],
            estimation.observed_information(model, moments, theta))
    monkeypatch.setattr(fiml, "_KRON_MAX_VARIABLES", 2)
    loop = (estimation._gradient_information(model, moments, theta)[1],
            estimation.observed_information(model, moments, theta))
    for a, b in zip(kron, loop):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.max(np.abs(a)))
