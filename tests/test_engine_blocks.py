"""The engine's evaluation of the block factorisation against the per-client one.

Each evaluation of the deviance reduces a client's block to a ``q x q`` weight matrix in the
client's own orthonormal coordinates and sums over clients with one matrix product
(``blocks.eliminate``); the conditional modes still use the per-client factors ``L_i`` and
``B_i`` (``blocks.client_step``, ``blocks.therapist_step``), the textbook form (Bates et al.
2015, section 3). Both must give the same system ``F`` and ``log|L|^2``: within 1e-12
(relative to ``F``'s scale) on the three-level fixture with a single-observation client (whose
random slope has no data), two and three levels, correlated and independent effects, one,
two and three client random effects.

Also here: the shortcuts the evaluation takes at complex-step points (the logarithm and square
root, the criterion from ``F``) equal the plain complex arithmetic; a sign flip of a factor's
column (``Structure.canonical``) keeps the covariance matrices; and the gradient is as accurate
as the per-client factorisation's, checked against that factorisation in extended precision
(x86-64 ``long double``; skipped where ``numpy.longdouble`` is float64).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import nested_stats

from alliance_analysis.multilevel.engine import deviance, small
from alliance_analysis.multilevel.engine.blocks import client_step, eliminate, therapist_step
from alliance_analysis.multilevel.engine.deviance import (COMPLEX_STEP, Structure,
                                                          profiled_deviance,
                                                          value_and_gradient)
from alliance_analysis.multilevel.engine.layout import NestedStats
from alliance_analysis.multilevel.engine.small import outer_sum

ROOT = Path(__file__).resolve().parents[1]


def _data() -> pd.DataFrame:
    data = pd.read_csv(ROOT / "tests" / "reference" / "ml_threelevel.csv")
    rng = np.random.default_rng(11)
    data = data.assign(x=rng.normal(size=len(data)), z=rng.normal(size=len(data)))
    # one client seen once: its random slope has no data (a zero pivot of Z_i'Z_i)
    single = data["client"] == data["client"].iloc[0]
    return pd.concat([data[single].head(1), data[~single]], ignore_index=True)


CASES = [(["1"], False, True), (["1", "session"], False, True),
         (["1", "session"], True, True), (["1", "session"], True, False),
         (["1", "session", "z"], True, True), (["1", "session", "z"], False, False),
         (["1", "session"], 2, True)]


@pytest.mark.parametrize(("random", "three_level", "correlated"), CASES)
def test_weights_form_is_the_per_client_factorisation(random: list[str], three_level: int,
                                                      correlated: bool) -> None:
    """``three_level`` 2: a therapist intercept and slope."""
    stats = nested_stats(_data(), random, bool(three_level), therapist_slope=three_level == 2)
    structure = Structure(len(random), int(three_level), correlated, True, 3)
    rng = np.random.default_rng(3)
    for _ in range(3):
        theta = rng.uniform(0.2, 1.5, structure.n_theta)
        theta[structure.lower_bounds() < 0] -= 0.8
        logdet, f = eliminate(theta[None], stats, structure)
        expected_logdet, expected_f = _per_client(theta, stats, structure)
        assert logdet[0] == pytest.approx(expected_logdet, rel=1e-12)
        np.testing.assert_allclose(f[:, :, 0], expected_f, rtol=0,
                                   atol=1e-12 * np.abs(expected_f).max())


def test_complex_step_shortcuts_equal_complex_arithmetic() -> None:
    rng = np.random.default_rng(5)
    z = rng.uniform(0.1, 50, (4, 30)) + 1j * COMPLEX_STEP * rng.normal(size=(4, 30))
    for fast, plain in ((small.log, np.log), (small.sqrt, np.sqrt)):
        np.testing.assert_allclose(fast(z).real, plain(z).real, rtol=1e-15)
        np.testing.assert_allclose(fast(z).imag, plain(z).imag, rtol=1e-13)
        np.testing.assert_array_equal(fast(z.real), plain(z.real))


@pytest.mark.parametrize("three_level", [False, True])
def test_criterion_from_lapack_equals_the_complex_factorisation(three_level: bool) -> None:
    """``_criterion_parts`` (LAPACK on the real parts, first-order imaginary parts) against
    the element-by-element complex Cholesky factorisation."""
    stats = nested_stats(_data(), ["1", "session"], three_level)
    structure = Structure(2, int(three_level), True, True, 3)
    theta = np.array([0.9, -0.2, 0.4, 0.6])[:structure.n_theta]
    batch = theta[None, :] + 1j * COMPLEX_STEP * np.vstack([np.zeros(theta.size),
                                                             np.eye(theta.size)])
    _, f = eliminate(batch, stats, structure)
    logdet_x, r2 = deviance._criterion_parts(f, 3)
    chol = small.cholesky(f)
    expected_logdet = 2 * sum(np.log(chol[i, i]) for i in range(3))
    expected_r2 = chol[3, 3] ** 2
    np.testing.assert_allclose(logdet_x.real, expected_logdet.real, rtol=1e-13)
    np.testing.assert_allclose(r2.real, expected_r2.real, rtol=1e-12)
    np.testing.assert_allclose(logdet_x.imag / COMPLEX_STEP,
                               expected_logdet.imag / COMPLEX_STEP, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(r2.imag / COMPLEX_STEP, expected_r2.imag / COMPLEX_STEP,
                               rtol=1e-9, atol=1e-9 * abs(expected_r2.real[0]))


def test_canonical_theta_keeps_the_covariance_matrices() -> None:
    structure = Structure(3, 2, True, True, 2)
    theta = np.array([-0.7, 0.3, -0.2, 0.5, 0.1, -0.4, -1.1, 0.6, 0.8])
    canonical = structure.canonical(theta)
    for before, after in zip(structure.factors(theta), structure.factors(canonical),
                             strict=True):
        np.testing.assert_allclose(before @ before.T, after @ after.T, rtol=1e-15)
        assert np.all(np.diag(after) >= 0)
    assert np.all(canonical >= structure.lower_bounds())


@pytest.mark.skipif(np.finfo(np.longdouble).eps > 1e-17,
                    reason="numpy.longdouble is float64 here: no extended-precision reference")
@pytest.mark.parametrize("three_level", [False, True])
def test_gradient_is_as_accurate_as_the_per_client_factorisation(three_level: bool) -> None:
    """Both forms' complex-step gradients against the per-client form in long double: the
    weights form's error is within 5 times the per-client form's float64 error (both are
    rounding, about 1e-13 of the gradient's scale here)."""
    stats = nested_stats(_data(), ["1", "session"], three_level)
    structure = Structure(2, int(three_level), True, True, 3)
    theta = np.array([0.9, -0.2, 0.4, 0.6])[:structure.n_theta]

    def per_client(batch: np.ndarray, cross: np.ndarray, upper: np.ndarray) -> np.ndarray:
        values = []
        for point in batch:
            wide = NestedStats(cross, upper, stats.upper_starts, stats.n_obs,
                               stats.client_root, stats.therapist_products,
                               stats.fixed_products)
            logdet, f = _per_client(point, wide, structure)
            values.append(logdet + deviance_from(f, stats.n_obs - 3))
        return np.array(values)

    wide = (stats.client_cross.astype(np.longdouble), stats.upper_cross.astype(np.longdouble))
    _, reference = value_and_gradient(lambda b: per_client(b, *wide),
                                      theta.astype(np.longdouble))
    _, plain = value_and_gradient(lambda b: per_client(b, stats.client_cross,
                                                       stats.upper_cross), theta)
    _, ours = value_and_gradient(lambda b: profiled_deviance(b, stats, structure, True), theta)
    reference = reference.astype(float)
    scale = np.abs(reference).max()
    plain_error = max(np.abs(plain - reference).max(), 1e-14 * scale)
    assert np.abs(ours - reference).max() <= 5 * plain_error


def _per_client(theta: np.ndarray, stats: NestedStats,
                structure: Structure) -> tuple[complex, np.ndarray]:
    """``log|L|^2`` and ``F`` from the per-client factors ``L_i``, ``B_i`` (textbook form), at
    one real or complex point."""
    qt = structure.q_therapist
    low, b = client_step(theta[None, :structure.n_client_theta], stats.client_cross,
                         structure)
    logdet = 2 * sum(np.sum(np.log(low[i, i])) for i in range(low.shape[0]))
    if not qt:
        return logdet, stats.upper_cross[:, :, 0] - outer_sum(b, (3,))[:, :, 0]
    low_t, b_t, schur = therapist_step(b, theta[None], np.zeros(1, dtype=int), stats,
                                       structure)
    logdet = logdet + 2 * sum(np.sum(np.log(low_t[i, i])) for i in range(qt))
    return logdet, np.sum(schur[qt:, qt:, 0], axis=-1) - outer_sum(b_t, (3,))[:, :, 0]


def deviance_from(f: np.ndarray, n: int) -> complex:
    """REML terms of ``F`` (3 fixed effects) by the element-by-element factorisation."""
    chol = small.cholesky(f[..., None])[..., 0]
    r2 = chol[3, 3] ** 2
    return 2 * sum(np.log(chol[i, i]) for i in range(3)) + n * (1 + np.log(2 * np.pi * r2 / n))


def _random_design(seed: int) -> pd.DataFrame:
    """A random unbalanced three-level design: 4 to 9 therapists of 1 to 6 clients, each seen
    1 to 12 times (``y``, ``session``, ``x`` as the fixture's)."""
    rng = np.random.default_rng(seed)
    rows = []
    for therapist in range(rng.integers(4, 10)):
        for client in range(rng.integers(1, 7)):
            for session in range(rng.integers(1, 13)):
                rows.append((f"t{therapist}", f"t{therapist}c{client}", float(session)))
    data = pd.DataFrame(rows, columns=["therapist", "client", "session"])
    effects = {c: rng.normal(size=2) for c in data["client"].unique()}
    offsets = {t: rng.normal() for t in data["therapist"].unique()}
    return data.assign(x=rng.normal(size=len(data)), y=[
        3 + effects[c][0] + offsets[t] + (0.5 + 0.2 * effects[c][1]) * s + rng.normal()
        for t, c, s in zip(data["therapist"], data["client"], data["session"], strict=True)])


REVERSE_CASES = [(["1"], True, False), (["1", "session"], True, False),
                 (["1", "session"], False, False), (["1"], True, True),
                 (["1", "session"], True, True), (["1", "session"], False, True)]


@pytest.mark.parametrize(("random", "correlated", "three_level"), REVERSE_CASES)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("design", ["fixture", 1, 2])
def test_reverse_gradient_equals_the_complex_step(random: list[str], correlated: bool,
                                                  three_level: bool, reml: bool,
                                                  design: str | int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``gradient.ReverseGradient`` (real, reverse mode) against the complex step, for the
    profiled deviance in ``theta`` and the deviance in ``(theta, sigma)``, two levels and three
    (a therapist intercept), on the fixture and on random designs (the second in runs of a few
    therapists, ``blocks.CHUNK_CELLS``): values 1e-12, gradients 1e-10 of their scale (both
    exact; rounding)."""
    from alliance_analysis.multilevel.engine import blocks
    from alliance_analysis.multilevel.engine.gradient import ReverseGradient

    if design == 2:
        monkeypatch.setattr(blocks, "CHUNK_CELLS", 40)
    data = _data() if design == "fixture" else _random_design(design)
    stats = nested_stats(data, random, three_level)
    structure = Structure(len(random), int(three_level), correlated, True, 3)
    rng = np.random.default_rng(8)
    points = rng.uniform(0.3, 1.2, (3, structure.n_theta))
    points[:, structure.lower_bounds() < 0] -= 0.6
    profiled = ReverseGradient(stats, structure, reml)
    values, grads = profiled.evaluate(points)
    for point, value, grad in zip(points, values, grads, strict=True):
        expected_value, expected = value_and_gradient(
            lambda b: profiled_deviance(b, stats, structure, reml), point)
        assert value == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-10 * np.abs(expected).max())
    with_sigma = np.column_stack([points, rng.uniform(2, 4, 3)])
    values, grads = ReverseGradient(stats, structure, reml, sigma=True).evaluate(with_sigma)
    for point, value, grad in zip(with_sigma, values, grads, strict=True):
        expected_value, expected = value_and_gradient(
            lambda b: deviance.deviance(b[:, :-1], b[:, -1] ** 2, stats, structure, reml),
            point)
        assert value == pytest.approx(expected_value, rel=1e-12)
        np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


@pytest.mark.parametrize("three_level", [False, True])
def test_fits_are_identical_whatever_the_blas_threads(three_level: bool) -> None:
    """The evaluation's matrix products and small LAPACK factorisations run through BLAS: a fit
    with one BLAS thread and with two gives the same bits (the byte-identity promise)."""
    from threadpoolctl import threadpool_limits

    from alliance_analysis.multilevel.engine.nested import fit_nested

    data = _data()
    results = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            results.append(fit_nested(data, "y", ["session", "x"], random=["1", "session"],
                                      client="client",
                                      therapist="therapist" if three_level else None))
    first, second = results
    pd.testing.assert_frame_equal(first.params, second.params, check_exact=True)
    pd.testing.assert_frame_equal(first.extra["variance_components"],
                                  second.extra["variance_components"], check_exact=True)
    assert first.fit["loglik"] == second.fit["loglik"]
