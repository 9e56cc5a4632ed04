"""Every kernel compiles with ``numba.njit`` on an int64 array state and agrees with Python.

One test per kernel family (rate algorithms, concurrency, breaker). Each drives the plain-Python
kernel on a list, the plain-Python kernel on an ``np.int64`` array with ``np.int64`` times, and
the jitted kernel on another ``np.int64`` array, through the same random traffic: negative and
epoch-scale times, clocks stepping backwards, huge idle gaps, costs 0, at and above the limit.
Parameters include the largest each constructor accepts, where every value must stay exact.

The expected values are the plain-Python kernel's: this file checks portability (numba, numpy),
not semantics, which the per-algorithm files check against the reference.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pytest

from ratesim import GCRA, TokenBucket
from ratesim.algorithms import (
    BucketedWindow,
    CircuitBreaker,
    ConcurrencyLimit,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
)
from ratesim.algorithms.base import MAX_EXACT_INT, Algorithm
from ratesim.algorithms.breaker import (
    breaker_on_complete,
    breaker_release_probe,
    breaker_try_pass,
)
from ratesim.algorithms.concurrency import (
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)

#: Unix-epoch microseconds in 2025-11: the magnitude a real clock hands the kernels.
EPOCH_US = 1_764_000_000_000_000
#: One key's times stay within this distance of its first one (35 years either way): with
#: ``|now_us| < 2**52`` and durations below 2**51 every value then stays below 2**53.
TIME_BAND_US = 2**50


@functools.cache
def jitted(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """Compile each kernel once per test session."""
    return numba.njit(kernel)


RATE_ALGORITHMS: list[Algorithm] = [
    GCRA(4, 1, 1),
    GCRA(3, 7, 2),
    GCRA(2**51 - 2, 1_000_000, 1),  # T = 1 us, the largest tolerance accepted
    GCRA(0, 1, 2_000_000_000),  # T = 2e15 us
    TokenBucket(10, 3),
    TokenBucket(0, 2),
    TokenBucket(2.5, 4),
    TokenBucket(1e6 / 7, 3 * 10**14),  # 7 units per token, refill ~2.1e15 us
    TokenBucket(1e-9, 1),  # one token per 1e15 us
    TokenBucket(20, 4, refill="ticker", fill_interval_s=0.1),
    TokenBucket(5e-10, 1, refill="ticker", fill_interval_s=2e9),
    SlidingWindowLog(4, 0.000050),
    SlidingWindowLog(3, 2e9),
    FixedWindow(4, 0.000050),
    FixedWindow(2, 2e9),
    SlidingWindowCounter(4, 0.000050),
    SlidingWindowCounter(2, 2e9),
    SlidingWindowCounter(10**6, 9_000.0),
    BucketedWindow(4, 0.000050, 5),
    BucketedWindow(3, 2e9, 4),
    DoubleBufferedWindow(4, 0.000050, 5, 0.000015),
    DoubleBufferedWindow(3, 2e9, 4, 1.5e9),
]


def time_scale(alg: Algorithm) -> int:
    """A characteristic duration of ``alg`` in us (emission interval, refill, window)."""
    p = alg.params
    if isinstance(alg, GCRA):
        return int(p[0])
    if isinstance(alg, TokenBucket):
        if p[4]:
            return int(p[4])
        return int(p[0] // p[1]) if p[1] else 1_000
    return max(int(p[1]) // 3, 1)


def traffic(rng: random.Random, scale_us: int, limit: int, n: int) -> list[tuple[int, int]]:
    """(now_us, cost) pairs: forward, backward and huge jumps, epoch-scale and negative."""
    start = rng.choice([0, -EPOCH_US, EPOCH_US, -7])
    now = start
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            now += rng.choice([10**12, 10**14])
        elif r < 0.2:
            now -= rng.randint(0, 6) * scale_us // rng.choice([1, 2])
        else:
            now += rng.randint(0, 3) * scale_us // rng.choice([1, 2, 3])
        if abs(now - start) >= TIME_BAND_US:
            now = start + rng.randint(-scale_us, scale_us)
        cost = rng.choice([0, 1, 1, 1, 2, limit, limit + 1, rng.randint(0, limit + 2)])
        out.append((now, cost))
    return out


def assert_ints(values: tuple[Any, ...]) -> None:
    for v in values:
        assert isinstance(v, int | np.integer), (type(v), values)


@pytest.mark.parametrize("alg", RATE_ALGORITHMS, ids=repr)
def test_rate_kernel_numba_and_int64_agree_with_python(alg: Algorithm) -> None:
    kernel, p = alg.kernel, alg.params
    nb = jitted(kernel)
    lst = alg.new_state()
    arr = np.array(alg.new_state(), dtype=np.int64)
    arr_nb = np.array(alg.new_state(), dtype=np.int64)
    rng = random.Random(hash(repr(alg)) % 1000)
    for now, cost in traffic(rng, time_scale(alg), alg.limit, 150):
        want = kernel(p, lst, now, cost)
        got_np = kernel(p, arr, np.int64(now), np.int64(cost))
        got_nb = nb(p, arr_nb, np.int64(now), cost)
        assert_ints(want)
        assert_ints(got_np)
        assert_ints(got_nb)
        assert tuple(int(x) for x in got_np) == want, (now, cost)
        assert tuple(int(x) for x in got_nb) == want, (now, cost)
        assert arr.tolist() == lst == arr_nb.tolist(), (now, cost)
        # The Lua port mirrors these values as doubles: all must be exact there.
        assert all(abs(v) < MAX_EXACT_INT for v in (*want, *lst)), (now, cost, want, lst)
        expires = alg.expires_at_us(arr)
        assert type(expires) is int
        assert expires == alg.expires_at_us(lst)


CONCURRENCY = [
    ConcurrencyLimit(3),
    ConcurrencyLimit(2, max_wait_s=0.2, max_queue=3),
    ConcurrencyLimit(1, max_wait_s=0.5),
]


@pytest.mark.parametrize("limiter", CONCURRENCY, ids=repr)
def test_concurrency_kernels_numba_agree_with_python(limiter: ConcurrencyLimit) -> None:
    fns = (concurrency_acquire, concurrency_complete, concurrency_cancel_wait)
    p = limiter.params
    lst = limiter.new_state()
    arr = np.array(lst, dtype=np.int64)
    rng = random.Random(11)
    now = -EPOCH_US
    for _ in range(300):
        now += rng.randint(-1_000, 5_000)
        which = rng.choice([0, 0, 1, 1, 2])
        want = fns[which](p, lst, now)
        got = jitted(fns[which])(p, arr, np.int64(now))
        assert isinstance(got, int | np.integer)
        assert int(got) == want
        assert arr.tolist() == lst


BREAKERS = [
    CircuitBreaker("slow_ratio", 0.5, max_rt_s=0.2, min_requests=3, stat_interval_s=1.0),
    CircuitBreaker("slow_ratio", 1.0, max_rt_s=0.0, min_requests=2, open_s=0.5),
    CircuitBreaker("error_ratio", 0.3, min_requests=2, stat_interval_s=0.5, open_s=1.0),
    CircuitBreaker("error_count", 2, min_requests=1, stat_interval_s=2.0, open_s=3.0),
]


@pytest.mark.parametrize("breaker", BREAKERS, ids=repr)
def test_breaker_kernels_numba_agree_with_python(breaker: CircuitBreaker) -> None:
    p = breaker.params
    lst = breaker.new_state()
    arr = np.array(lst, dtype=np.int64)
    rng = random.Random(5)
    now = rng.choice([-EPOCH_US, EPOCH_US])
    for _ in range(400):
        now += rng.randint(-300_000, 600_000)
        op = rng.choice(["pass", "pass", "done", "done", "release"])
        if op == "pass":
            want = breaker_try_pass(p, lst, now)
            got = jitted(breaker_try_pass)(p, arr, np.int64(now))
        elif op == "done":
            rt = rng.choice([-5, 0, 100_000, 200_000, 200_001, 900_000])
            err = rng.randint(0, 1)
            want = breaker_on_complete(p, lst, now, rt, err)
            got = jitted(breaker_on_complete)(p, arr, np.int64(now), np.int64(rt), err)
        else:
            want = breaker_release_probe(p, lst, now)
            got = jitted(breaker_release_probe)(p, arr, np.int64(now))
        assert isinstance(got, int | np.integer)
        assert int(got) == want
        assert arr.tolist() == lst
