"""The streamed aggregates (``ratesim.aggregates``) equal the Result's views computed from the
full per-request arrays, value for value, whatever the batch boundaries: on every built-in and
on the random parity scenarios (with and without clients that retry)."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fast_engine import assert_same, scenarios, scenarios_with_clients

import ratesim.scenarios as builtin
from ratesim.aggregates import RunAggregates, percentile_from_counts
from ratesim.engine import compile_policy, draw_requests, simulate
from ratesim.fast import run_fast
from ratesim.fast.layout import C_ARRIVED, C_COLS, R_COLS, R_DECIDED, R_REJ, R_T
from ratesim.fast.stream import fold_decided
from ratesim.results import Result, RunData
from ratesim.rng import Streams
from ratesim.scenario import Scenario
from ratesim.traffic import generate_arrivals


def _same_totals(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert list(a) == list(b)
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) and math.isnan(x):
            assert isinstance(y, float) and math.isnan(y), k
        else:
            assert x == y and type(x) is type(y), (k, x, y)


def assert_folds_equal(res: Result, cuts: int | np.ndarray) -> None:
    agg = RunAggregates.from_run_data(res.scenario, res.data, cuts)
    pd.testing.assert_frame_equal(agg.timeseries(), res.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(agg.summary(), res.summary, check_exact=True)
    _same_totals(agg.totals(), res.totals)


@pytest.mark.parametrize("name", builtin.names())
def test_builtins_fold_to_the_full_arrays_views(name: str) -> None:
    res = simulate(builtin.get(name, 0.05), seed=3)
    n = len(res.data.arrivals)
    assert n > 100
    rng = np.random.default_rng(7)
    # one batch, batches cut at random rows, and batches of one bin's worth or less
    for cuts in (n, np.sort(rng.integers(0, n, 25)), max(1, n // 97)):
        assert_folds_equal(res, cuts)


def _check_random(sc: Scenario, seed: int, data: st.DataObject) -> None:
    res = simulate(sc, seed=seed, engine="fast")
    n = len(res.data.arrivals)
    cuts = np.array(data.draw(st.lists(st.integers(0, max(n, 1)), max_size=12)), dtype=np.int64)
    assert_folds_equal(res, np.sort(cuts))
    assert_folds_equal(res, 1 + n // 5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_scenarios_fold_to_the_full_arrays_views(
    sc: Scenario, seed: int, data: st.DataObject
) -> None:
    _check_random(sc, seed, data)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios_with_clients(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_scenarios_with_retries_fold_to_the_full_arrays_views(
    sc: Scenario, seed: int, data: st.DataObject
) -> None:
    _check_random(sc, seed, data)


@given(
    x=st.lists(st.integers(-5, 10**7), min_size=1, max_size=300),
    q=st.sampled_from([0.0, 1.0, 50.0, 99.0, 99.9, 100.0]),
)
def test_percentile_from_counts_is_numpys(x: list[int], q: float) -> None:
    v, c = np.unique(np.array(x, dtype=np.int64), return_counts=True)
    assert percentile_from_counts(v, c, q) == float(np.percentile(np.array(x), q))


def test_percentile_from_counts_by_hand() -> None:
    # 0,0,0,10: the 50th percentile's virtual index is 1.5 -> halfway between 0 and 0 -> 0;
    # the 90th: index 2.7 -> 0 + 0.7 * (10 - 0) = 7
    v, c = np.array([0, 10]), np.array([3, 1])
    assert percentile_from_counts(v, c, 50) == 0.0
    assert percentile_from_counts(v, c, 90) == pytest.approx(7.0)
    assert math.isnan(percentile_from_counts(v[:0], c[:0], 50))


# --- folded inside the compiled runner's stream ---------------------------------------------


def _run_fast(sc: Scenario, seed: int, **kw: Any) -> RunData:
    streams = Streams(seed)
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
    layers = compile_policy(sc, arr)
    return run_fast(sc, arr, draw_requests(sc, arr, streams), layers, seed=seed, **kw)


def assert_stream_equal(sc: Scenario, seed: int, chunk_us: int) -> RunAggregates:
    """The run streamed in chunks of ``chunk_us`` folds to the full arrays' views, and the
    run itself is the one the unstreamed runner makes."""
    agg = RunAggregates(sc)
    streamed = _run_fast(sc, seed, fold=agg, chunk_us=chunk_us)
    plain = _run_fast(sc, seed)
    assert_same(plain, streamed)
    res = Result(sc, seed, plain, engine="fast")
    pd.testing.assert_frame_equal(agg.timeseries(), res.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(agg.summary(), res.summary, check_exact=True)
    _same_totals(agg.totals(), res.totals)
    return agg


@pytest.mark.parametrize("name", builtin.names())
def test_builtins_streamed_in_the_loop_fold_to_the_full_arrays_views(name: str) -> None:
    # chunks of 0.0997 s: not aligned with the bins, requests in flight across their ends
    sc = builtin.get(name, 0.05)
    agg = assert_stream_equal(sc, 5, 99_700)
    assert agg.arrivals > 100


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sc=scenarios(),
    seed=st.integers(0, 2**32 - 1),
    chunk_us=st.sampled_from([211, 997, 20_000, 10**9]),
)
def test_random_scenarios_streamed_in_the_loop_fold_to_the_full_arrays_views(
    sc: Scenario, seed: int, chunk_us: int
) -> None:
    assert_stream_equal(sc, seed, chunk_us)


def test_stream_folds_only_decided_rows_in_arrival_order() -> None:
    """A prefix stops at the first undecided row: the rows after it wait, even if decided."""
    sc = builtin.get("single-node-ideal", 0.05)
    streams = Streams(1)
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
    layers = compile_policy(sc, arr)
    data = run_fast(sc, arr, draw_requests(sc, arr, streams), layers, seed=1)
    n = len(arr)
    world = SimpleNamespace(
        R=np.zeros((n, R_COLS), dtype=np.int64),
        C=np.zeros(C_COLS, dtype=np.int64),
        OUT=np.ascontiguousarray(data.outcomes.T).astype(np.int8),
        REM=np.ascontiguousarray(data.remaining.T),
    )
    world.R[:, R_T] = arr.time_us
    world.R[:, R_DECIDED] = data.decided_us
    world.R[:, R_REJ] = data.rejected_by
    world.R[5, R_DECIDED] = -1  # row 5 still in flight
    world.C[C_ARRIVED] = n
    agg = RunAggregates(sc)
    assert fold_decided(world, agg, 0, False) == 5  # type: ignore[arg-type]
    assert agg.arrivals == 5
    assert fold_decided(world, agg, 5, False) == 5  # type: ignore[arg-type]
    world.R[5, R_DECIDED] = data.decided_us[5]
    world.C[C_ARRIVED] = 40  # only 40 rows have arrived
    assert fold_decided(world, agg, 5, False) == 40  # type: ignore[arg-type]
    assert agg.arrivals == 40


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios_with_clients(), seed=st.integers(0, 2**32 - 1))
def test_random_scenarios_with_retries_through_run_fast_fold_to_the_same_views(
    sc: Scenario, seed: int
) -> None:
    # clients that retry: run_fast folds the finished run's sorted rows
    assert_stream_equal(sc, seed, 997)


@pytest.mark.parametrize("seed", range(4))
def test_the_bins_quantiles_whatever_the_batches_in_or_out_of_bin_order(seed: int) -> None:
    # batches inside one bin, ending on a bin's edge, spanning several, and (half the seeds)
    # one batch out of bin order first (its held rows then span bins): every bin's quantiles
    # are those of the run folded as one batch
    rng = np.random.default_rng(seed)
    sc = builtin.get("exchange-surge", 0.05)
    iv, n_layers = sc.interval_us, len(sc.policy.layers)
    n = 3000
    t = np.sort(rng.integers(0, 6 * iv, n)).astype(np.int64)
    if seed % 2:
        t[:40] = rng.permutation(t[:40])[::-1]  # rows out of bin order at the start
    cols = (
        t,
        rng.integers(-1, n_layers, n),
        rng.integers(0, 3, (n, n_layers)),
        rng.integers(-1, 9, (n, n_layers)),
        t + rng.integers(0, 5_000, n),
        rng.integers(0, 300, n),
    )
    edges = np.searchsorted(t, np.arange(7) * iv)  # on the bins' edges, and a row off them
    near = np.concatenate((edges[1::2] - 1, edges[::2] + 1, rng.integers(0, n, 12)))
    cuts = np.unique(np.clip(np.concatenate(([0, 40, n], edges, near)), 0, n))
    whole, parts = RunAggregates(sc), RunAggregates(sc)
    whole.fold(*cols)
    for lo, hi in zip(cuts[:-1], cuts[1:], strict=True):
        parts.fold(*(c[lo:hi] for c in cols))
    whole.finish()
    parts.finish()
    pd.testing.assert_frame_equal(parts.timeseries(), whole.timeseries(), check_exact=True)
