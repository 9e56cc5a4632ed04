"""The compiled loop's memory traffic: software prefetches (:mod:`ratesim.fast.prefetch`) and the
compact ``LAT`` table (int32 when the draws fit, int64 otherwise), neither of which may change
a single result."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from test_fast_engine import assert_same

from ratesim import scenarios
from ratesim.compile import compile_policy, draw_requests
from ratesim.engine import run_events
from ratesim.fast.prefetch import prefetch
from ratesim.fast.run import _lat_dtype, run_fast
from ratesim.rng import Streams
from ratesim.traffic import generate_arrivals


@numba.njit
def _sum_with_prefetches(a: Any, b: Any, ahead: int) -> int:
    """The sum of ``a``, prefetching ``a`` ``ahead`` elements on (past its end at the last
    ones, before its start when ``ahead`` is negative) and ``b`` (2-D) far out of range."""
    total = 0
    for i in range(a.shape[0]):
        prefetch(a, i + ahead)
        prefetch(b, 1_000_000 * i - 7)
        total += a[i]
    return total


def test_a_prefetch_anywhere_neither_faults_nor_changes_data() -> None:
    a = np.arange(5000, dtype=np.int64) * 3 - 7
    b = np.zeros((4, 5), dtype=np.int8)
    for ahead in (0, 16, 10_000, -10_000):
        assert _sum_with_prefetches(a, b, ahead) == int(a.sum())
    assert not b.any()


class _Draws:
    def __init__(self, out: np.ndarray, back: np.ndarray, service: np.ndarray) -> None:
        self.lat_out_us, self.lat_back_us, self.service_us = out, back, service


def test_lat_is_int32_only_when_every_draw_fits_and_no_client_retries() -> None:
    small = np.array([[1, 2], [3, 2**31 - 1]], dtype=np.int64)
    big = small.copy()
    big[0, 1] = 2**31  # one past int32's range
    assert _lat_dtype(_Draws(small, small, small), True) is np.int32
    assert _lat_dtype(_Draws(small, small, big), True) is np.int64
    assert _lat_dtype(_Draws(small, -big - 1, small), True) is np.int64
    assert _lat_dtype(_Draws(small, small, small), False) is np.int64


def _runs(sc: Any, seed: int, bump: int) -> tuple[Any, Any]:
    """(event engine, compiled runner) on ``sc``'s draws with request 0's first service time
    raised to ``bump`` µs (out of int32's range when large enough)."""
    out = []
    for run in (run_events, run_fast):
        streams = Streams(seed)
        arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
        layers = compile_policy(sc, arr)
        draws = draw_requests(sc, arr, streams)
        draws.service_us[0, 0] = bump
        out.append(run(sc, arr, draws, layers, seed=seed))
    return out[0], out[1]


def test_a_draw_past_int32_takes_the_int64_table_and_the_same_results() -> None:
    sc = scenarios.get("exchange-surge", scale=0.005)
    runs = {bump: _runs(sc, 3, bump) for bump in (1000, 2**31 + 12345)}
    for a, b in runs.values():
        assert_same(a, b)
    # the huge service time reached both runs: the shard is busy past every later deadline
    small, huge = runs[1000][1], runs[2**31 + 12345][1]
    assert not np.array_equal(small.outcomes, huge.outcomes)
