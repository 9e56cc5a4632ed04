"""The gateway algorithms (nginx, Kong/Envoy windows, Sentinel warm-up and pacing, Traefik's
reserve bucket) are portable like the others: numba and numpy ``int64`` runs agree with the
plain-Python kernel, and the Lua ports on a real redis-server decide exactly as ``MemoryStore``.

Expected values are the Python kernels' (portability, not semantics: ``test_alg_gateways.py``
checks the semantics against each gateway's documented behaviour).
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_kernels_numba import EPOCH_US, assert_ints, jitted, traffic
from test_redis_parity import assert_same, fresh_prefix, memory_decisions, traces

from ratesim.algorithms import (
    CalendarWindow,
    CountingFixedWindow,
    NginxLeakyBucket,
    ReserveTokenBucket,
    UniformPacer,
    WarmUpBucket,
)
from ratesim.algorithms.base import MAX_EXACT_INT, Algorithm
from ratesim.stores.redis_store import RedisStore

GATEWAY_ALGORITHMS: list[tuple[Algorithm, int]] = [
    # (algorithm, a characteristic duration in µs for the random traffic)
    (NginxLeakyBucket(1, "s", burst=5), 1_000_000),
    (NginxLeakyBucket(1, "m", burst=2, nodelay=True), 62_500_000),
    (NginxLeakyBucket(10, "s", burst=20, delay=8), 100_000),
    (NginxLeakyBucket(7, "m"), 8_000_000),
    (NginxLeakyBucket(10**6, "s", burst=10**3), 1_000),
    (CalendarWindow(3, "second"), 1_000_000),
    (CalendarWindow(4, "minute", count_rejected=True), 60_000_000),
    (CalendarWindow(5, "month"), 86_400_000_000 * 10),
    (CalendarWindow(2, "year", count_rejected=True), 86_400_000_000 * 120),
    (CountingFixedWindow(3, 0.05), 50_000),
    (CountingFixedWindow(2, 2592000), 86_400_000_000 * 10),
    (WarmUpBucket(10, 2), 300_000),
    (WarmUpBucket(100), 20_000),
    (WarmUpBucket(2, 5, 3), 400_000),
    (WarmUpBucket(7, 3, 5), 250_000),
    (ReserveTokenBucket(0.1, 1, 0.5), 10_000_000),
    (ReserveTokenBucket(10, 3, 0.05), 100_000),
    (ReserveTokenBucket(2.5, 4, 0), 400_000),
    (UniformPacer(10, 500), 100_000),
    (UniformPacer(3, 0), 333_000),
    (UniformPacer(5000, 20, resolution_us=1), 200),
]


@pytest.mark.parametrize(("alg", "scale"), GATEWAY_ALGORITHMS, ids=lambda x: repr(x))
def test_gateway_kernel_numba_and_int64_agree_with_python(alg: Algorithm, scale: int) -> None:
    kernel, p = alg.kernel, alg.params
    nb = jitted(kernel)
    lst = alg.new_state()
    arr = np.array(alg.new_state(), dtype=np.int64)
    arr_nb = np.array(alg.new_state(), dtype=np.int64)
    rng = random.Random(hash(repr(alg)) % 1000)
    for now, cost in traffic(rng, scale, alg.limit, 200):
        want = kernel(p, lst, now, cost)
        got_np = kernel(p, arr, np.int64(now), np.int64(cost))
        got_nb = nb(p, arr_nb, np.int64(now), cost)
        assert_ints(want)
        assert_ints(got_np)
        assert_ints(got_nb)
        assert tuple(int(x) for x in got_np) == want, (now, cost)
        assert tuple(int(x) for x in got_nb) == want, (now, cost)
        assert arr.tolist() == lst == arr_nb.tolist(), (now, cost)
        assert all(abs(v) < MAX_EXACT_INT for v in (*want, *lst)), (now, cost, want, lst)
        assert type(alg.expires_at_us(arr)) is int
        assert alg.expires_at_us(arr) == alg.expires_at_us(lst)


@st.composite
def gateway_algorithms(draw: st.DrawFn) -> Algorithm:
    kind = draw(st.sampled_from(["nginx", "calendar", "counting", "warm", "reserve", "pacer"]))
    if kind == "nginx":
        burst = draw(st.integers(0, 8))
        shaping = draw(st.sampled_from(["nodelay", "delay", "none"]))
        return NginxLeakyBucket(
            draw(st.integers(1, 3000)),
            draw(st.sampled_from(["s", "m"])),
            burst=burst,
            nodelay=shaping == "nodelay",
            delay=draw(st.integers(1, burst)) if shaping == "delay" and burst else 0,
        )
    if kind == "calendar":
        unit = draw(st.sampled_from(["second", "minute", "hour", "day", "month", "year"]))
        return CalendarWindow(draw(st.integers(1, 8)), unit, count_rejected=draw(st.booleans()))
    if kind == "counting":
        return CountingFixedWindow(draw(st.integers(1, 8)), draw(st.sampled_from([0.01, 1, 60])))
    if kind == "warm":
        return WarmUpBucket(draw(st.integers(2, 200)), draw(st.integers(1, 10)))
    if kind == "reserve":
        return ReserveTokenBucket(
            draw(st.sampled_from([0.1, 1, 10, 1000])),
            draw(st.integers(1, 6)),
            draw(st.sampled_from([0, 0.001, 0.5, 2])),
        )
    return UniformPacer(draw(st.integers(1, 1000)), draw(st.sampled_from([0, 20, 500])))


@pytest.mark.parametrize("mode", ["function", "script"])
def test_gateway_algorithms_redis_parity(redis_server, mode: str) -> None:
    @settings(
        max_examples=80,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(limiter=gateway_algorithms(), trace=traces(), sequential=st.booleans())
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

    check()


LONG_TRACE: list[Algorithm] = [
    NginxLeakyBucket(2000, "s", burst=20),
    CalendarWindow(600, "second", count_rejected=True),
    CountingFixedWindow(30, 0.01),
    WarmUpBucket(3000, 1),
    ReserveTokenBucket(1500, 40, 0.004),
    UniformPacer(4000, 3, resolution_us=1),
]


@pytest.mark.parametrize("limiter", LONG_TRACE, ids=repr)
def test_gateway_long_trace_parity(redis_url: str, limiter: Algorithm) -> None:
    """20k requests over 50 keys at epoch times, both outcomes well represented."""
    rng = np.random.default_rng(20261202)
    n = 20_000
    gaps = rng.exponential(150.0, n).astype(np.int64)
    back = rng.random(n) < 0.02
    gaps[back] = -rng.integers(0, 5_000, int(back.sum()))
    times = (EPOCH_US + np.cumsum(gaps)).tolist()
    keys = [f"k{int(x)}" for x in rng.zipf(1.3, n) % 50]
    costs = rng.choice([0, 1, 1, 1, 1, 2, 3, 100], n).tolist()
    store = RedisStore.from_url(redis_url, timeout_s=10)
    got = store.acquire_many(limiter, keys, times, costs, batch=2000)
    expected = memory_decisions(limiter, keys, times, costs)
    assert_same(expected, got, limiter)
    allowed = sum(d.allowed for d in expected)
    assert 0.05 * n < allowed < 0.95 * n, allowed


@pytest.mark.parametrize(("alg", "scale"), GATEWAY_ALGORITHMS, ids=lambda x: repr(x))
def test_expired_state_decides_like_an_unseen_key(alg: Algorithm, scale: int) -> None:
    """The stores drop a key once ``expires_at_us`` has passed: from then on its state must
    decide exactly as a fresh one, for any later time and cost (the contract in base.py)."""
    rng = random.Random(7)
    st_ = alg.new_state()
    now = EPOCH_US
    for _ in range(300):
        now += rng.randint(0, 3) * scale // rng.choice([1, 2, 4])
        alg.kernel(alg.params, st_, now, rng.choice([0, 1, 1, 2]))
        at = alg.expires_at_us(st_)
        if at >= 2**61:
            continue  # never expires: the store keeps it
        for later in (max(at, now), max(at, now) + rng.randint(0, 5 * scale)):
            for cost in (0, 1, 2):
                kept, fresh = list(st_), alg.new_state()
                got = alg.kernel(alg.params, kept, later, cost)
                want = alg.kernel(alg.params, fresh, later, cost)
                assert got == want, (now, at, later, cost, st_)
