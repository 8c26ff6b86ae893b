"""Generated model syntax: RI-CLPM / CLPM for K waves, CFA models, latent growth.

Counting rules checked (K waves, two variables):
RI-CLPM free parameters = 2K intercepts + 3 (random intercepts) + 3 (wave-1 within
(co)variances) + 4(K - 1) lagged paths + 3(K - 1) innovation (co)variances; the CLPM has 3
fewer. Sample moments = 2K(2K + 1)/2 + 2K. Each equality constraint over waves removes
2(K - 2) parameters.
"""

from __future__ import annotations

import pytest

from alliance_analysis.errors import AllianceParamsError
from alliance_analysis.instruments import get_instrument
from alliance_analysis.sem.estimation import structure
from alliance_analysis.sem.syntax import cfa_syntax, growth_syntax, riclpm_syntax


def _columns(k: int) -> tuple[list[str], list[str]]:
    return [f"wai_s{t}" for t in range(1, k + 1)], [f"phq9_s{t}" for t in range(1, k + 1)]


@pytest.mark.parametrize("k", [3, 4, 5])
def test_riclpm_syntax_for_k_waves(k: int) -> None:
    x, y = _columns(k)
    text = riclpm_syntax(x, y, x_name="wai", y_name="phq9")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "ri_wai =~ " + " + ".join(f"1*{c}" for c in x) in lines
    assert "ri_phq9 =~ " + " + ".join(f"1*{c}" for c in y) in lines
    for t in range(2, k + 1):
        assert f"w_wai_s{t} ~ w_wai_s{t - 1} + w_phq9_s{t - 1}" in lines
        assert f"w_phq9_s{t} ~ w_wai_s{t - 1} + w_phq9_s{t - 1}" in lines
    assert sum("~~ 0*" in line for line in lines) == 2 * k + 4  # residuals 0; RI _|_ wave 1
    model = structure(text, meanstructure=True)
    assert model.n_free == 2 * k + 6 + 7 * (k - 1)
    moments = 2 * k * (2 * k + 1) // 2 + 2 * k
    assert moments - model.n_free == {3: 1, 4: 9, 5: 21}[k]  # df = 2K^2 - 6K + 1
    assert set(model.observed) == set(x + y)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_clpm_has_three_fewer_parameters(k: int) -> None:
    x, y = _columns(k)
    riclpm = structure(riclpm_syntax(x, y), meanstructure=True)
    clpm = structure(riclpm_syntax(x, y, random_intercepts=False), meanstructure=True)
    assert riclpm.n_free - clpm.n_free == 3
    assert "ri_" not in riclpm_syntax(x, y, random_intercepts=False)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_equality_constraints_use_one_label_per_path(k: int) -> None:
    x, y = _columns(k)
    free = structure(riclpm_syntax(x, y), meanstructure=True).n_free
    ar = structure(riclpm_syntax(x, y, constrain_autoregressive=True), meanstructure=True)
    both = structure(riclpm_syntax(x, y, constrain_autoregressive=True,
                                   constrain_crosslagged=True), meanstructure=True)
    assert free - ar.n_free == 2 * (k - 2)
    assert free - both.n_free == 4 * (k - 2)
    assert {"ar_x", "ar_y", "cl_xy", "cl_yx"} <= set(both.names)
    text = riclpm_syntax(x, y, constrain_crosslagged=True)
    assert f"w_phq9_s{k} ~ cl_xy*w_wai_s{k - 1} + w_phq9_s{k - 1}" in text


def test_riclpm_needs_three_waves_and_equal_lengths() -> None:
    with pytest.raises(AllianceParamsError, match="at least 3 waves"):
        riclpm_syntax(["a1", "a2"], ["b1", "b2"])
    with pytest.raises(AllianceParamsError, match="same number"):
        riclpm_syntax(["a1", "a2", "a3"], ["b1", "b2"])
    assert "w_b2 ~ w_a1 + w_b1" in riclpm_syntax(["a1", "a2"], ["b1", "b2"],
                                                 random_intercepts=False)


def test_cfa_syntax_follows_the_instrument_subscales() -> None:
    wai = get_instrument("wai")
    one = cfa_syntax(wai, "one_factor")
    assert one == "alliance =~ " + " + ".join(f"wai_{i}" for i in range(1, 13)) + "\n"
    three = cfa_syntax(wai, "three_factor").splitlines()
    assert three == ["goal =~ wai_4 + wai_6 + wai_8 + wai_11",
                     "task =~ wai_1 + wai_2 + wai_10 + wai_12",
                     "bond =~ wai_3 + wai_5 + wai_7 + wai_9"]
    bifactor = cfa_syntax(wai, "bifactor").splitlines()
    assert bifactor[0] == one.strip() and bifactor[1:4] == three
    assert sum("~~ 0*" in line for line in bifactor) == 6  # all four factors orthogonal
    # 24 loadings - 4 markers + 4 factor variances + 12 residual variances
    assert structure(cfa_syntax(wai, "bifactor"), meanstructure=False).n_free == 36
    with pytest.raises(AllianceParamsError, match="subscales"):
        cfa_syntax(get_instrument("phq9"), "three_factor")


def test_growth_syntax() -> None:
    text = growth_syntax(["p1", "p2", "p3"], [0, 1, 2.5], predictor="early")
    lines = text.splitlines()
    assert "icept =~ 1*p1 + 1*p2 + 1*p3" in lines
    assert "slope =~ 0*p1 + 1*p2 + 2.5*p3" in lines
    assert {"p1 ~ 0*1", "early_lv =~ 1*early", "slope ~ early_lv",
            "icept ~ early_lv"} <= set(lines)
    model = structure(text, meanstructure=True)
    # 2 latent means, 3 (co)variances, 3 residual variances, predictor mean and variance, 2 paths
    assert model.n_free == 12
    with pytest.raises(AllianceParamsError, match=">= 3 measures"):
        growth_syntax(["p1", "p2"], [0, 1])
