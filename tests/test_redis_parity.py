"""Parity: ``RedisStore(time_source="client")`` decides exactly as ``MemoryStore``, decision for
decision, for every store algorithm, on hypothesis traces and on long random traces.

The expected decisions come from ``MemoryStore`` running the Python kernels (the single source
of truth); the Redis side runs the Lua ports on a real redis-server. Traces step time backwards
too (by less than the stores' 60 s grace, within which both must keep state).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratesim.algorithms import (
    GCRA,
    BucketedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from ratesim.algorithms.base import Algorithm, Decision
from ratesim.stores import MemoryStore
from ratesim.stores.redis_store import RedisStore

_prefix_counter = itertools.count()

START_TIMES = [0, -5_000_000_000, 1_700_000_000_123_456, 4_000_000_000_000_000]  # |t| < 2**52


def fresh_prefix() -> str:
    """Each example writes under its own prefix, so examples never see each other's state."""
    return f"t{next(_prefix_counter)}:"


# -- limiter strategies --------------------------------------------------------------------------


@st.composite
def gcras(draw: st.DrawFn) -> GCRA:
    max_burst = draw(st.integers(0, 12))
    kind = draw(st.sampled_from(["sub_ms", "ms", "slow"]))
    period: float
    if kind == "sub_ms":
        # Emission intervals of 1..999 us (redis-cell #11/#12 territory).
        count, period = draw(st.integers(1001, 200_000)), 1
    elif kind == "ms":
        count, period = draw(st.integers(1, 1000)), draw(st.sampled_from([1, 2, 0.25]))
    else:
        count, period = draw(st.integers(1, 5)), draw(st.sampled_from([60, 3600]))
    return GCRA(max_burst, count, period)


@st.composite
def token_buckets(draw: st.DrawFn) -> TokenBucket:
    burst = draw(st.integers(0, 12))
    rate: float | Fraction
    if draw(st.booleans()):
        rate = draw(
            st.one_of(
                st.integers(0, 5000),
                st.sampled_from([0.5, 2.5, 1 / 3, 1e-3, 12_345.0]),
            )
        )
        return TokenBucket(float(rate), burst)
    per_fill = draw(st.integers(1, 4))
    fill_us = draw(st.sampled_from([100, 1000, 100_000, 1_000_000]))
    rate = Fraction(per_fill * 1_000_000, fill_us)
    # An exact rational rate: tokens per fill must be a whole number (x/time/rate's ticker).
    return TokenBucket(rate, burst, refill="ticker", fill_interval_s=fill_us / 1e6)  # type: ignore[arg-type]


limits = st.integers(1, 12)
windows_s = st.sampled_from([0.001, 0.02, 0.25, 1, 2.5, 60])


@st.composite
def bucketed(draw: st.DrawFn, double: bool) -> Algorithm:
    buckets = draw(st.sampled_from([1, 2, 4, 5, 10]))
    window_s = draw(st.sampled_from([0.001, 0.02, 1, 2]))
    if not double:
        return BucketedWindow(draw(limits), window_s, buckets)
    swap_s = draw(st.sampled_from([0.0005, 0.01, 0.5, 1, 3]))
    return DoubleBufferedWindow(draw(limits), window_s, buckets, swap_s)


LIMITER_STRATEGIES: dict[str, st.SearchStrategy[Algorithm]] = {
    "gcra": gcras(),
    "token_bucket": token_buckets(),
    "sliding_log": st.builds(SlidingWindowLog, limits, windows_s),
    "fixed_window": st.builds(FixedWindow, limits, windows_s),
    "sliding_window_counter": st.builds(SlidingWindowCounter, limits, windows_s),
    "bucketed_window": bucketed(double=False),
    "double_buffered_window": bucketed(double=True),
}


# -- traces --------------------------------------------------------------------------------------

steps = st.one_of(
    st.integers(0, 3),  # same instant / 1 us apart
    st.integers(0, 5_000),  # sub-ms and ms spacing
    st.integers(0, 3_000_000),  # up to a few seconds
    st.integers(-2_000_000, 0),  # time going backwards (within the grace)
    st.just(7_200_000_000),  # a long idle gap (state expires)
)
requests = st.tuples(steps, st.integers(0, 2), st.integers(0, 15))


@st.composite
def traces(draw: st.DrawFn) -> tuple[list[int], list[str], list[int]]:
    start = draw(st.sampled_from(START_TIMES))
    reqs = draw(st.lists(requests, min_size=1, max_size=60))
    times, keys, costs = [], [], []
    now = start
    for dt, k, c in reqs:
        now += dt
        times.append(now)
        keys.append(f"user{k}")
        # Mostly cost 1, sometimes 2-3, 0 (a peek) or large (often above the burst/limit).
        costs.append({7: 2, 8: 3, 9: 0}.get(c, 1) if c < 10 else c)
    return times, keys, costs


def memory_decisions(
    limiter: Algorithm, keys: list[str], times: list[int], costs: list[int]
) -> list[Decision]:
    store = MemoryStore(gc_every=1)  # collect as eagerly as possible: must not matter
    return [store.acquire(limiter, k, t, c) for k, t, c in zip(keys, times, costs, strict=True)]


def assert_same(expected: list[Decision], got: list[Decision], limiter: Algorithm) -> None:
    assert len(got) == len(expected)
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"{limiter!r}: request {i} differs: memory {e} vs redis {g}"


@pytest.mark.parametrize("mode", ["function", "script"])
@pytest.mark.parametrize("algo", sorted(LIMITER_STRATEGIES))
def test_hypothesis_parity(redis_server, algo: str, mode: str) -> None:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(limiter=LIMITER_STRATEGIES[algo], trace=traces(), sequential=st.booleans())
    def check(
        limiter: Algorithm, trace: tuple[list[int], list[str], list[int]], sequential: bool
    ) -> None:
        times, keys, costs = trace
        store = RedisStore.from_url(redis_server.url, timeout_s=5, prefix=fresh_prefix(), mode=mode)
        if sequential:
            got = [
                store.acquire(limiter, k, t, c) for k, t, c in zip(keys, times, costs, strict=True)
            ]
        else:
            got = store.acquire_many(limiter, keys, times, costs, batch=7)
        assert_same(memory_decisions(limiter, keys, times, costs), got, limiter)
        assert store.mode == mode

    check()


LONG_TRACE_LIMITERS: list[Algorithm] = [
    GCRA(20, 2_000, 1),  # T = 500 us: sub-millisecond
    TokenBucket(1_500, 40),
    SlidingWindowLog(40, 0.02),
    TokenBucket(1_000, 10, refill="ticker", fill_interval_s=0.01),
    SlidingWindowLog(300, 0.2),  # > 256 slots: the Lua reads the log slot by slot
    FixedWindow(30, 0.01),
    SlidingWindowCounter(30, 0.01),
    BucketedWindow(30, 0.02, 4),
    DoubleBufferedWindow(30, 0.02, 4, 0.005),
]


@pytest.mark.parametrize("limiter", LONG_TRACE_LIMITERS, ids=repr)
def test_long_trace_parity(redis_url: str, limiter: Algorithm) -> None:
    """Long traces over 50 keys, heavy enough that every branch of the kernels is taken.

    100k requests for the first three limiters, 25k for the others (the whole file must stay
    quick on a shared machine).
    """
    rng = np.random.default_rng(20260101)
    n = 100_000 if LONG_TRACE_LIMITERS.index(limiter) < 3 else 25_000
    gaps = rng.exponential(150.0, n).astype(np.int64)
    back = rng.random(n) < 0.02
    gaps[back] = -rng.integers(0, 5_000, int(back.sum()))
    times = (1_700_000_000_000_000 + np.cumsum(gaps)).tolist()
    keys = [f"k{int(x)}" for x in rng.zipf(1.3, n) % 50]
    costs = rng.choice([0, 1, 1, 1, 1, 2, 3, 100], n).tolist()
    store = RedisStore.from_url(redis_url, timeout_s=10)
    got = store.acquire_many(limiter, keys, times, costs, batch=2000)
    expected = memory_decisions(limiter, keys, times, costs)
    assert_same(expected, got, limiter)
    # The trace must exercise both outcomes, or parity would prove little.
    allowed = sum(d.allowed for d in expected)
    assert 0.05 * n < allowed < 0.95 * n
