"""The engine's memory-lean and batched paths give the results of the plain ones.

The nested engine works through the clients in runs of at most ``blocks.CHUNK_CELLS``
client-by-theta cells (so that 10,000,000 session rows fit in memory), computes each Hessian's
gradients in one batched call (``deviance.ComplexStep``), and lays the data out without
copying the ID columns. On the small three-level fixture (2,020 rows), these must not change
anything beyond rounding: the log-likelihood (1e-12), estimates, standard errors and variance
components (1e-9) and the conditional modes agree whatever the run length (a run of one
client or therapist, of a few clients, or all clients at once), and what rests on numerical
Hessians (Satterthwaite df, SEs of the variance components, their covariance) within 1e-6;
the batched Hessian equals the point-by-point central differences within 1e-8 (the
rounding of a finite-difference Hessian; the test says why not to the last bit).

Timing and the 10,000,000-row fit are in ``benchmarks/bench_engine.py --big``, not here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import nested_stats

from alliance_analysis.errors import AllianceDataError
from alliance_analysis.multilevel.engine import blocks
from alliance_analysis.multilevel.engine.deviance import (ComplexStep, Structure,
                                                          profiled_deviance, value_and_gradient)
from alliance_analysis.multilevel.engine.nested import fit_nested
from alliance_analysis.multilevel.engine.optimize import hessian

ROOT = Path(__file__).resolve().parents[1]
#: Rounding only: sums over clients in another order.
RTOL = 1e-9
#: What rests on a Hessian by central differences of gradients (see _assert_same).
HESSIAN_RTOL = 1e-6


def _data() -> pd.DataFrame:
    data = pd.read_csv(ROOT / "tests" / "reference" / "ml_threelevel.csv")
    rng = np.random.default_rng(7)
    return data.assign(x=rng.normal(size=len(data)))


def _fit(data: pd.DataFrame, three_level: bool, correlated: bool = True):
    return fit_nested(data, "y", ["session", "x"], random=["1", "session"], client="client",
                      therapist="therapist" if three_level else None,
                      correlated=correlated)


def _assert_same(first, second) -> None:
    assert first.fit["loglik"] == pytest.approx(second.fit["loglik"], rel=1e-12)
    for column in ("estimate", "se"):
        np.testing.assert_allclose(first.params[column], second.params[column], rtol=RTOL)
    np.testing.assert_allclose(first.extra["variance_components"]["vcov"],
                               second.extra["variance_components"]["vcov"], rtol=RTOL)
    # from Hessians by differences of gradients: rounding of the gradients divided by steps
    # of 1e-5 to 1e-4 (relative) leaves about 1e-8
    np.testing.assert_allclose(first.params["df"], second.params["df"], rtol=HESSIAN_RTOL)
    np.testing.assert_allclose(first.extra["variance_components"]["se"],
                               second.extra["variance_components"]["se"], rtol=HESSIAN_RTOL)
    np.testing.assert_allclose(first.extra["variance_parameters_cov"],
                               second.extra["variance_parameters_cov"], rtol=HESSIAN_RTOL,
                               atol=1e-12)
    pd.testing.assert_frame_equal(first.extra["random_effects"][["level", "group", "term"]],
                                  second.extra["random_effects"][["level", "group", "term"]])
    np.testing.assert_allclose(first.extra["random_effects"]["estimate"],
                               second.extra["random_effects"]["estimate"], rtol=1e-7,
                               atol=1e-10)


@pytest.mark.parametrize("three_level", [False, True])
@pytest.mark.parametrize("cells", [1, 37, 10**9])
def test_runs_of_clients_give_the_one_pass_results(monkeypatch, three_level: bool,
                                                   cells: int) -> None:
    """1 cell: one client (two levels) or one therapist (three levels) per run."""
    data = _data()
    monkeypatch.setattr(blocks, "CHUNK_CELLS", 10**12)
    whole = _fit(data, three_level)
    monkeypatch.setattr(blocks, "CHUNK_CELLS", cells)
    _assert_same(_fit(data, three_level), whole)


def test_runs_of_therapists_cover_every_client_once(monkeypatch) -> None:
    monkeypatch.setattr(blocks, "CHUNK_CELLS", 150)
    stats = nested_stats(_data())
    parts = blocks.client_runs(stats, k=3)
    assert len(parts) > 2
    assert sum(p.client_cross.shape[-1] for p in parts) == stats.client_cross.shape[-1]
    assert sum(p.upper_cross.shape[-1] for p in parts) == stats.upper_cross.shape[-1]
    for part in parts:
        assert part.upper_starts[0] == 0 and part.upper_starts.size == part.upper_cross.shape[-1]
    np.testing.assert_array_equal(np.concatenate([p.client_cross for p in parts], axis=-1),
                                  stats.client_cross)


def test_independent_effects_in_runs(monkeypatch) -> None:
    data = _data()
    monkeypatch.setattr(blocks, "CHUNK_CELLS", 10**12)
    whole = _fit(data, True, correlated=False)
    monkeypatch.setattr(blocks, "CHUNK_CELLS", 5)
    _assert_same(_fit(data, True, correlated=False), whole)


@pytest.mark.parametrize("three_level", [False, True])
def test_batched_hessian_is_the_point_by_point_one(three_level: bool) -> None:
    stats = nested_stats(_data(), three_level=three_level)
    structure = Structure(2, int(three_level), True, True, 3)
    theta = np.array([0.8, -0.1, 0.3, 0.5])[:structure.n_theta]

    def values(batch: np.ndarray) -> np.ndarray:
        return profiled_deviance(batch, stats, structure, reml=True)

    batched = hessian(ComplexStep(values), theta)
    plain = hessian(lambda point: value_and_gradient(values, point), theta)
    # 1e-8, not the last bit: the batched call evaluates the 2m directions with stacked
    # products whose rounding depends on the CPU's SIMD kernels (numpy dispatches at run
    # time). The gradients then differ in the 12th digit, and central differences divide
    # that by the step: on an AVX2 machine (2026-12-02) the two Hessians were 4.5e-10
    # relative apart, where the machine of the round before had them within 1e-12. Far
    # below what rests on them (Satterthwaite df and SEs, checked within 1e-6 above).
    np.testing.assert_allclose(batched, plain, rtol=1e-8, atol=1e-8 * np.abs(plain).max())


@pytest.mark.parametrize("kind", ["category", "int"])
def test_id_columns_of_any_type_give_the_same_fit(kind: str) -> None:
    """The IDs are sorted through their codes, never copied as text for every row."""
    data = _data()
    if kind == "category":
        typed = data.astype({"client": "category", "therapist": "category"})
    else:
        typed = data.assign(client=data["client"].str[1:].astype(int),
                            therapist=data["therapist"].str[1:].astype(int))
    first, second = _fit(data, True), _fit(typed, True)
    np.testing.assert_allclose(first.params["estimate"], second.params["estimate"],
                               rtol=1e-12)
    groups = first.extra["random_effects"]["group"]
    expected = groups.str[1:].astype(int).astype(str) if kind == "int" else groups
    assert list(second.extra["random_effects"]["group"]) == list(expected)


def test_crossed_clients_are_named_in_order_of_appearance() -> None:
    data = _data()
    moved = data["client"].isin(["c003", "c001"]) & (data["session"] == 0)
    data.loc[moved, "therapist"] = "t99"
    with pytest.raises(AllianceDataError, match=r"2 client\(s\).*\(e\.g\. c001, c003\)"):
        _fit(data, True)
