"""Retry arithmetic (ratesim.model.retry) against values computed here from the definitions."""

import math

from numba import njit

from ratesim.model import retry


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    for wait in (0, -5, 1, 999_999, 1_000_000, 1_000_001, 2_500_000):
        assert retry.retry_after_s(wait) == max(0, math.ceil(wait / 1_000_000))


def test_backoff_full_jitter() -> None:
    base, cap = 100_000, 1_000_000
    for attempt in range(2, 12):
        ceiling = min(cap, base * 2 ** (attempt - 2))
        for u in (0, 1, 1 << 23, (1 << 24) - 1):
            assert retry.backoff_delay_us(base, cap, attempt, u) == ceiling * u // 2**24
    assert retry.backoff_delay_us(base, cap, 5, (1 << 24) - 1) < 800_000


def test_budget_and_deadline() -> None:
    # Finagle's percentCanRetry: 20 % = one retry per 5 user requests (deposits)
    assert retry.budget_allows(0, 5, 20)  # 1 retry of 5 requests = 20 %
    assert not retry.budget_allows(0, 4, 20)  # 1 of 4 = 25 %
    assert not retry.budget_allows(1, 9, 20)  # 2 of 9
    assert retry.budget_allows(1, 10, 20)  # 2 of 10
    assert not retry.budget_allows(0, 10**6, 0)  # 0 %: never
    assert retry.deadline_allows(10, 5, 15)
    assert not retry.deadline_allows(10, 5, 16)


def test_compiles_under_numba() -> None:
    f = njit(lambda b, c, k, u: retry.backoff_delay_us(b, c, k, u))
    assert f(100, 1000, 3, 1 << 23) == 100


def test_counter_generator_is_splitmix64_and_compiles() -> None:
    from ratesim.model import counter

    # SplitMix64 reference values: the first outputs of java.util.SplittableRandom-style
    # seeding from 0 are splitmix64(0), splitmix64(gamma), ... (gamma = 0x9E3779B97F4A7C15)
    assert counter.splitmix64(0) == 0xE220A8397B1DCDAF
    assert counter.splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    f = njit(lambda s, o, a, st, k: counter.counter_u64(s, o, a, st, k))
    import numpy as np

    for args in ((0, 0, 2, 1, 0), (7, 12345, 3, 2, 5), (2**64 - 1, 10**9, 9, 5, 0)):
        assert counter.counter_u64(*args) == int(f(*(np.uint64(a) for a in args)))
    origins = np.arange(1000)
    u = counter.uniforms(1, origins, np.full(1000, 3), counter.STREAM_LATENCY, 0)
    assert ((u >= 0) & (u < 1)).all() and 0.45 < u.mean() < 0.55
    # the array form is the scalar one, element by element
    h = counter.counter_u64(1, 17, 3, counter.STREAM_LATENCY, 0)
    assert u[17] == (h >> 11) / 2.0**53
    # a different attempt gives different numbers (nothing shared between attempts)
    assert not np.array_equal(
        u, counter.uniforms(1, origins, np.full(1000, 4), counter.STREAM_LATENCY, 0)
    )
