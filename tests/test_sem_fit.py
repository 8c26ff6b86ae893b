"""Fit-statistic conventions (lavaan's, not semopy's) tested explicitly.

semopy 2.3.11 divides RMSEA by N - 1, leaves CFI uncapped (1.00403 where lavaan prints
1.000) and reports a wrong log-likelihood. Each test below pins one convention with
numbers from the lavaan fixtures (tests/reference/sem_lavaan.json); tolerances 1e-9
relative unless stated.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from alliance_analysis.sem import estimation as sem_estimation
from alliance_analysis.sem.fit import cfi, rmsea_with_ci, saturated, srmr_bentler, tli

from conftest import ROOT

REF = json.loads((ROOT / "tests/reference/sem_lavaan.json").read_text())["models"]


def test_rmsea_uses_n_not_n_minus_1() -> None:
    fit = REF["hs_cfa"]["fit_measures_all"]
    chi2, df, n = fit["chisq"], fit["df"], REF["hs_cfa"]["nobs"]
    rmsea, low, high = rmsea_with_ci(chi2, df, n)
    assert rmsea == pytest.approx(np.sqrt((chi2 - df) / (df * n)), rel=1e-12)
    assert rmsea == pytest.approx(fit["rmsea"], rel=1e-9)
    semopy_style = np.sqrt((chi2 - df) / (df * (n - 1)))
    assert abs(rmsea - semopy_style) > 1e-4  # the N - 1 version is visibly different
    assert low == pytest.approx(fit["rmsea.ci.lower"], rel=1e-7)
    assert high == pytest.approx(fit["rmsea.ci.upper"], rel=1e-7)


def test_rmsea_interval_inverts_the_noncentral_chi_square() -> None:
    chi2, df, n = 40.0, 10, 250
    _, low, high = rmsea_with_ci(chi2, df, n)
    assert stats.ncx2.cdf(chi2, df, low ** 2 * n * df) == pytest.approx(0.95, abs=1e-9)
    assert stats.ncx2.cdf(chi2, df, high ** 2 * n * df) == pytest.approx(0.05, abs=1e-9)


def test_rmsea_bounds_are_zero_for_a_small_chi_square_and_nan_without_df() -> None:
    assert rmsea_with_ci(2.0, 10, 300) == (0.0, 0.0, pytest.approx(0.0))
    assert all(np.isnan(v) for v in rmsea_with_ci(0.0, 0, 300))


def test_cfi_is_capped_at_one_and_tli_is_not() -> None:
    """RI-CLPM (FIML): chi-square below its df; lavaan prints CFI 1 and TLI 1.0014."""
    fit = REF["riclpm_fiml"]["fit_measures_all"]
    args = (fit["chisq"], fit["df"], fit["baseline.chisq"], fit["baseline.df"])
    assert fit["chisq"] < fit["df"]
    assert cfi(*args) == 1.0 == fit["cfi"]
    uncapped = 1 - (fit["chisq"] - fit["df"]) / (fit["baseline.chisq"] - fit["baseline.df"])
    assert uncapped == pytest.approx(fit["rni"], rel=1e-9) and uncapped > 1
    assert tli(*args) == pytest.approx(fit["tli"], rel=1e-9) and tli(*args) > 1


def test_cfi_and_tli_of_a_misfitting_model() -> None:
    fit = REF["hs_cfa"]["fit_measures_all"]
    args = (fit["chisq"], fit["df"], fit["baseline.chisq"], fit["baseline.df"])
    assert cfi(*args) == pytest.approx(fit["cfi"], rel=1e-12)
    assert tli(*args) == pytest.approx(fit["tli"], rel=1e-12)


def test_loglik_uses_the_n_likelihood() -> None:
    """logL = -N/2 (p log 2 pi + log|Sigma| + tr(Sigma^-1 S)) with S's divisor N."""
    data = pd.read_csv(ROOT / "data/reference/HolzingerSwineford1939.csv")
    model = sem_estimation.structure(REF["hs_cfa"]["syntax"], meanstructure=False)
    moments = sem_estimation.moments(data, model.observed, "listwise")
    est = sem_estimation.fit(model, moments)
    sigma, _ = sem_estimation.implied(model, est.theta)
    x = data[list(model.observed)].to_numpy()
    s_n = np.cov(x, rowvar=False, bias=True)
    n, p = x.shape
    by_hand = -n / 2 * (p * np.log(2 * np.pi) + np.linalg.slogdet(sigma)[1]
                        + np.trace(np.linalg.solve(sigma, s_n)))
    assert est.loglik == pytest.approx(by_hand, rel=1e-12)
    assert est.loglik == pytest.approx(REF["hs_cfa"]["fit_measures"]["logl"], rel=1e-9)


def test_saturated_model_of_complete_data_is_the_sample_moments() -> None:
    data = pd.read_csv(ROOT / "tests/reference/sem_riclpm.csv")
    moments = sem_estimation.moments(data, tuple(data.columns), "fiml")
    mean, cov, loglik, converged = saturated(moments)
    assert converged
    np.testing.assert_allclose(mean, data.mean().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(data.to_numpy(), rowvar=False, bias=True),
                               rtol=1e-12)
    assert loglik == pytest.approx(REF["riclpm"]["fit_measures_all"]["unrestricted.logl"],
                                   rel=1e-10)


def test_saturated_model_under_fiml_is_the_em_solution() -> None:
    data = pd.read_csv(ROOT / "tests/reference/sem_riclpm_missing.csv")
    moments = sem_estimation.moments(data, tuple(data.columns), "fiml")
    _, _, loglik, converged = saturated(moments)
    assert converged
    assert loglik == pytest.approx(REF["riclpm_fiml"]["fit_measures_all"]["unrestricted.logl"],
                                   rel=1e-10)


def test_srmr_is_bentlers_with_means_when_the_model_has_them() -> None:
    cov = np.array([[1.0, 0.5], [0.5, 2.0]])
    sigma = np.array([[1.0, 0.3], [0.3, 2.0]])
    resid = 0.2 / np.sqrt(2.0)
    assert srmr_bentler(cov, sigma, None, None) == pytest.approx(np.sqrt(resid ** 2 / 3))
    mean_resid = np.array([0.1, 0.0])
    assert srmr_bentler(cov, sigma, mean_resid, np.zeros(2)) == pytest.approx(
        np.sqrt((resid ** 2 + 0.1 ** 2) / 5))
