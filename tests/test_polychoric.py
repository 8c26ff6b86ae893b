"""Polychoric correlations against psych and lavaan (tests/reference/sem_lavaan.json).

Reference: bfi N1-N5, complete cases (n = 2694), ``psych::polychoric`` 2.2.9 and
``lavaan::lavCor(ordered = )`` 0.6-14. Tolerances:

* thresholds: 1e-10 absolute (both packages use the same closed form, qnorm of the
  cumulative proportions);
* correlations vs lavaan: 1e-6 absolute (measured 3e-8);
* correlations vs psych: 1e-4 absolute, because psych and lavaan themselves differ by up
  to 1.7e-5 (optimizer precision, README of the fixtures);
* standard errors vs lavCor's: 1e-6 relative (measured 1.4e-7), with lavCor's N - 1
  divisor, which ``standard_errors()`` uses (with N the ratio was sqrt((N - 1) / N) for every
  row: project issue 16, defect 6).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.sem.polychoric import bivariate_normal_cdf, polychoric

from conftest import ROOT

FIXTURE = json.loads((ROOT / "tests/reference/sem_lavaan.json").read_text())["polychoric"]


@pytest.fixture(scope="module")
def bfi_result():
    items = pd.read_csv(ROOT / "data/reference/bfi.csv")[FIXTURE["items"]]
    return polychoric(items)


def _quad_cdf(h: float, k: float, rho: float) -> float:
    """Phi2 by numerical integration of phi(x) Phi((k - rho x) / s) over x < h."""
    s = np.sqrt(1 - rho * rho)
    return integrate.quad(lambda x: stats.norm.pdf(x) * stats.norm.cdf((k - rho * x) / s),
                          -np.inf, h, epsabs=1e-14, epsrel=1e-13)[0]


@pytest.mark.parametrize("rho", [-0.95, -0.4, 0.0, 0.3, 0.85, 0.99])
def test_bivariate_normal_cdf_is_exact(rho: float) -> None:
    points = [(0.3, -1.2), (-0.7, -0.2), (1.5, 2.0), (0.0, 0.6), (0.6, 0.0), (0.0, -0.6),
              (0.0, 0.0), (-2.5, 1.1)]
    h, k = np.array(points).T
    expected = [_quad_cdf(a, b, rho) for a, b in points]
    np.testing.assert_allclose(bivariate_normal_cdf(h, k, rho), expected, atol=1e-12)


def test_bivariate_normal_cdf_infinite_limits() -> None:
    h = np.array([np.inf, -np.inf, 0.4, np.inf, 0.3])
    k = np.array([0.5, 1.0, np.inf, np.inf, -np.inf])
    np.testing.assert_allclose(bivariate_normal_cdf(h, k, 0.4),
                               [stats.norm.cdf(0.5), 0.0, stats.norm.cdf(0.4), 1.0, 0.0],
                               atol=1e-15)


def test_thresholds_match_psych_and_lavaan(bfi_result) -> None:
    got = {f"{r.item}|{r.threshold}": r.estimate
           for r in bfi_result.thresholds.itertuples(index=False)}
    assert got.keys() == FIXTURE["lavaan"]["thresholds"].keys()
    for key, value in FIXTURE["lavaan"]["thresholds"].items():
        assert got[key] == pytest.approx(value, abs=1e-10)
    for item, taus in FIXTURE["psych"]["tau"].items():
        for t, value in taus.items():
            assert got[f"{item}|{t}"] == pytest.approx(value, abs=1e-10)


def test_correlations_match_lavaan_and_psych(bfi_result) -> None:
    items = FIXTURE["items"]
    lavaan = pd.DataFrame(FIXTURE["lavaan"]["rho"]).loc[items, items].to_numpy()
    psych = pd.DataFrame(FIXTURE["psych"]["rho"]).loc[items, items].to_numpy()
    assert bfi_result.n == FIXTURE["n"]
    np.testing.assert_allclose(bfi_result.rho.to_numpy(), lavaan, atol=1e-6)
    np.testing.assert_allclose(bfi_result.rho.to_numpy(), psych, atol=1e-4)


def test_correlations_are_not_pearson(bfi_result) -> None:
    """The fault reported for semopy's hetcor: silently returning Pearson correlations."""
    items = pd.read_csv(ROOT / "data/reference/bfi.csv")[FIXTURE["items"]].dropna()
    pearson = items.corr().to_numpy()
    assert np.max(np.abs(bfi_result.rho.to_numpy() - pearson)) > 0.02


def test_standard_errors_match_lavcor(bfi_result) -> None:
    """Muthen's (1984) asymptotic covariance: its diagonal gives lavCor's SEs."""
    se = bfi_result.standard_errors()
    checked = 0
    for row in FIXTURE["lavaan"]["estimates"]:
        sep = "|" if row["op"] == "|" else "~~"
        key = f"{row['lhs']}{sep}{row['rhs']}"
        if key in se.index:
            assert se[key] == pytest.approx(row["se"], rel=1e-6), key
            checked += 1
    assert checked == 25 + 10


def test_single_category_is_an_error() -> None:
    data = pd.DataFrame({"a": [1, 1, 1, 1], "b": [1, 2, 1, 2]})
    with pytest.raises(AllianceDataError, match="single observed category"):
        polychoric(data)
