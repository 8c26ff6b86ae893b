"""The optimizer strategy of the engine on functions whose optimum is known."""

from __future__ import annotations

import numpy as np

from alliance_analysis.multilevel.engine.optimize import GRADIENT_TOL, minimise

NO_BOUNDS = np.array([-np.inf, -np.inf])


def _rosenbrock(batch: np.ndarray) -> np.ndarray:
    x, y = batch[:, 0], batch[:, 1]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def _rosenbrock_value_grad(point: np.ndarray) -> tuple[float, np.ndarray]:
    x, y = point
    gradient = np.array([-2 * (1 - x) - 400 * x * (y - x**2), 200 * (y - x**2)])
    return float(_rosenbrock(point[None])[0]), gradient


def test_tnc_then_newton_reaches_the_optimum() -> None:
    kept, attempts = minimise(_rosenbrock_value_grad, _rosenbrock, np.array([-1.2, 1.0]),
                              NO_BOUNDS, max_iter=200)
    assert len(attempts) == 1 and kept.method.startswith("TNC")
    np.testing.assert_allclose(kept.x, [1, 1], atol=1e-8)
    assert kept.ok and kept.max_scaled_gradient < GRADIENT_TOL


def test_powell_takes_over_when_tnc_fails_the_gradient_check() -> None:
    kept, attempts = minimise(_rosenbrock_value_grad, _rosenbrock, np.array([-1.2, 1.0]),
                              NO_BOUNDS, max_iter=5)
    assert [a.method.split("+")[0] for a in attempts] == ["TNC", "Powell"]
    assert not attempts[0].ok and kept is attempts[1] and kept.ok
    np.testing.assert_allclose(kept.x, [1, 1], atol=1e-6)


def test_a_saddle_on_the_bound_is_left() -> None:
    """``(x^2 - 1)^2`` is even: its gradient is 0 at the bound x = 0, a local maximum."""

    def values(batch: np.ndarray) -> np.ndarray:
        return (batch[:, 0] ** 2 - 1) ** 2

    def value_grad(point: np.ndarray) -> tuple[float, np.ndarray]:
        return float(values(point[None])[0]), np.array([4 * point[0] * (point[0] ** 2 - 1)])

    kept, _ = minimise(value_grad, values, np.array([0.0]), np.array([0.0]), max_iter=100)
    assert "restarted off the boundary" in kept.method
    np.testing.assert_allclose(kept.x, [1.0], atol=1e-8)


def test_an_unbounded_run_stopping_near_the_bound_on_a_saddle_is_restarted() -> None:
    """With ``canonical``, TNC's first run ignores the bound; started next to the local
    maximum of the even ``(x^2 - 1)^2`` at 0, it stops there (gradient ~1e-17), inside the
    bound; that point counts as held, and is left as on the bound."""

    def values(batch: np.ndarray) -> np.ndarray:
        return (batch[:, 0] ** 2 - 1) ** 2

    def value_grad(point: np.ndarray) -> tuple[float, np.ndarray]:
        return float(values(point[None])[0]), np.array([4 * point[0] * (point[0] ** 2 - 1)])

    kept, _ = minimise(value_grad, values, np.array([-1e-17]), np.array([0.0]), max_iter=100,
                       canonical=np.abs)
    assert "restarted off the boundary" in kept.method
    np.testing.assert_allclose(kept.x, [1.0], atol=1e-8)


def test_the_last_newton_steps_follow_the_exact_gradient_below_rounding() -> None:
    """A quadratic whose value is huge (1e12) next to its curvature: the decrease of the last
    steps is below the value's rounding, yet polishing still reaches the optimum through the
    gradient (before, it stopped up to 1e-3 away)."""
    centre = np.array([0.3, -0.2])

    def values(batch: np.ndarray) -> np.ndarray:
        return 1e12 + 1e-4 * np.sum((batch - centre) ** 2, axis=1)

    def value_grad(point: np.ndarray) -> tuple[float, np.ndarray]:
        return float(values(point[None])[0]), 2e-4 * (point - centre)

    kept, _ = minimise(value_grad, values, np.array([0.31, -0.19]), NO_BOUNDS, max_iter=100)
    np.testing.assert_allclose(kept.x, centre, atol=1e-9)
