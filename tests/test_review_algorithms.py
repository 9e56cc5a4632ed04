"""Regression tests from the adversarial review of ``ratesim.algorithms`` and ``MemoryStore``.

Each bug test names the input that went wrong before the fix. Expected values are derived here
from semantics.md or from the exactness contract (every value the kernels and their Lua port
touch stays below 2**53 for times ``|now_us| < 2**52``), never copied from a run.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim import GCRA, MemoryStore, TokenBucket
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
from ratesim.algorithms.breaker import breaker_on_complete

S = 1_000_000
#: Unix-epoch microseconds in 2025-11.
EPOCH_US = 1_764_000_000_000_000
#: The top of the documented time range (Unix-epoch microseconds in 2112).
TIME_TOP_US = 2**52 - 1
SETTINGS = settings(max_examples=60, deadline=None)


# ------------------------------------------------------------- 2**53 bounds (bug: too loose)


def test_gcra_tolerance_is_bounded_so_the_tat_stays_exact() -> None:
    """Bug: GCRA(2**53 - 2, 1_000_000, 1) (T = 1 us, DVT = 2**53 - 1) was accepted; five
    requests at now = EPOCH_US wrote TAT = now + 5 > ... and a full burst TAT = now + DVT
    ~ 1.08e16 > 2**53, which the Lua port (doubles) cannot hold exactly."""
    with pytest.raises(ValueError, match=r"max_burst=9007199254740990"):
        GCRA(2**53 - 2, 1_000_000, 1)
    with pytest.raises(ValueError, match="max_burst"):
        GCRA(2**51 - 1, 1_000_000, 1)  # DVT = 2**51 exactly
    widest = GCRA(2**51 - 2, 1_000_000, 1)  # DVT = 2**51 - 1: accepted
    assert widest.tolerance_us == 2**51 - 1
    state = widest.new_state()
    d = widest.step(state, TIME_TOP_US, 2**51 - 1)  # the whole burst at the latest time
    assert d.allowed and d.remaining == 0
    assert state[1] == TIME_TOP_US + 2**51 - 1 < MAX_EXACT_INT
    d = widest.step(state, TIME_TOP_US, 2**51 - 1)  # new_tat = TAT + DVT, still exact
    assert not d.allowed and d.retry_after_us == 2**51 - 1


def test_token_bucket_refill_time_is_bounded() -> None:
    """Bug: TokenBucket(1, 9_000_000_000) (9e15 us to refill) was accepted; an emptied bucket
    reported reset instants ~9e15 us past now, beyond 2**53 at epoch-scale times."""
    with pytest.raises(ValueError, match="burst=9000000000"):
        TokenBucket(1, 9_000_000_000)
    with pytest.raises(ValueError, match="burst=9000000000"):
        TokenBucket(1, 9_000_000_000, refill="ticker", fill_interval_s=1)
    # 1 token/s: refill of b tokens takes b * 1e6 us; 2**51 us is 2_251_799_813.69 tokens.
    TokenBucket(1, 2_251_799_813)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1, 2_251_799_814)
    tb = TokenBucket(1, 2_251_799_813)
    state = tb.new_state()
    assert tb.step(state, TIME_TOP_US, 2_251_799_813).allowed
    d = tb.step(state, TIME_TOP_US, 1)
    assert d.reset_after_us == 2_251_799_813 * S and TIME_TOP_US + d.reset_after_us < 2**53


def test_token_bucket_rate_plus_capacity_is_bounded() -> None:
    """Bug: TokenBucket(5e21, 2**52) was accepted (per_us 5e15 and capacity 4.5e15 each below
    2**53) but ``need - tokens + per_us - 1`` reached 9.5e15 > 2**53."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(5e21, 2**52)


def test_window_counters_bound_the_window() -> None:
    """Bug: SlidingWindowCounter(1, 3e9) (3 * 3e15 < 2**53 passed) computes window ends
    ``start + 2 * window`` ~ 1.05e16 > 2**53 at now = 2**52 - 1."""
    for cls in (FixedWindow, SlidingWindowCounter):
        with pytest.raises(ValueError, match="window_s=3000000000.0"):
            cls(1, 3e9)
        alg = cls(2, 2e9)  # 2e15 us < 2**51: accepted
        # One key's clock readings within 2**50 us (35 years) of each other, at either end.
        for times in (
            (TIME_TOP_US, TIME_TOP_US - 1, TIME_TOP_US - 2**50, TIME_TOP_US),
            (-TIME_TOP_US, -TIME_TOP_US + 2**50, -TIME_TOP_US, -TIME_TOP_US + 1),
        ):
            state = alg.new_state()
            for now in times:
                result = alg.kernel(alg.params, state, now, 1)
                assert all(abs(v) < MAX_EXACT_INT for v in (*result, *state)), (now, result)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"grade": "error_count", "threshold": 1e30}, "threshold"),
        ({"grade": "error_ratio", "threshold": 0.5, "open_s": 1e13}, "open_s"),
        ({"grade": "error_ratio", "threshold": 0.5, "stat_interval_s": 3e9}, "stat_interval_s"),
        ({"grade": "slow_ratio", "threshold": 0.5, "max_rt_s": 3e9}, "max_rt_s"),
        ({"grade": "error_ratio", "threshold": 0.5, "min_requests": 2**63}, "min_requests"),
    ],
)
def test_breaker_parameters_are_bounded(kwargs: dict[str, object], name: str) -> None:
    """Bug: these were accepted; 1e30 or 1e19 us do not fit the int64 params numba needs (the
    first made ``numba.njit(breaker_on_complete)`` fail to type the params tuple)."""
    with pytest.raises(ValueError, match=name):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_breaker_at_its_largest_parameters_compiles_with_numba() -> None:
    br = CircuitBreaker("error_count", 2**53 - 1, min_requests=1, open_s=2e9)
    state = np.array(br.new_state(), dtype=np.int64)
    code = numba.njit(breaker_on_complete)(br.params, state, EPOCH_US, 0, 1)
    assert code == 0  # one error is not > 2**53 - 1


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_in_flight": 2**63}, "max_in_flight"),
        ({"max_in_flight": 1, "max_wait_s": 1e10}, "max_wait_s"),
        ({"max_in_flight": 1, "max_wait_s": 1.0, "max_queue": 2**64}, "max_queue"),
    ],
)
def test_concurrency_parameters_are_bounded(kwargs: dict[str, object], name: str) -> None:
    """Bug: accepted, but 2**63 does not fit an int64 params tuple (numba)."""
    with pytest.raises(ValueError, match=name):
        ConcurrencyLimit(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------- GCRA == TokenBucket for every whole emission interval


@SETTINGS
@given(
    emission_us=st.one_of(
        st.integers(1, 2_000), st.integers(1_000_001, 10**10), st.sampled_from([1_000_003])
    ),
    count=st.integers(1, 20),
    max_burst=st.integers(0, 8),
)
def test_token_bucket_reads_a_whole_emission_interval_exactly(
    emission_us: int, count: int, max_burst: int
) -> None:
    """Bug: TokenBucket(count / period) rounded the rate to a denominator <= 10**6, so for
    e.g. T = 1_000_003 us one token was 1_000_002.9999985 us and, after 10**6 saturated cycles,
    the bucket admitted 1 us before GCRA (issue 2 asks for identical decisions whenever T is a
    whole number of microseconds)."""
    period_s = emission_us * count / S
    gcra = GCRA(max_burst, count, period_s)
    assert gcra.emission_interval_us == emission_us
    tb = TokenBucket(count / period_s, max_burst + 1)
    assert Fraction(tb.params[0], tb.params[1]) == emission_us


@SETTINGS
@given(
    emission_us=st.integers(1_000_001, 3_000_000),
    max_burst=st.integers(0, 4),
    gaps=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    jitter=st.lists(st.integers(-2, 2), min_size=40, max_size=40),
)
def test_gcra_and_token_bucket_agree_for_awkward_long_intervals(
    emission_us: int, max_burst: int, gaps: list[int], jitter: list[int]
) -> None:
    """Unit-cost traffic near multiples of T (time never going back), on the two limiters:
    identical decisions. Before the fix ``reset_after_us`` already differed here (the token
    period was not T), and ``allowed`` after ~10**6 saturated cycles."""
    gcra = GCRA(max_burst, 1, emission_us / S)
    tb = TokenBucket(S / emission_us, max_burst + 1)
    g_state, t_state = gcra.new_state(), tb.new_state()
    now = EPOCH_US
    for gap, dt in zip(gaps, jitter, strict=False):
        now += max(gap * emission_us + dt, 0)  # forward only: backwards they differ by design
        assert gcra.step(g_state, now) == tb.step(t_state, now)


# ------------------------------------------------------------------------- input validation

RATE_ALGORITHMS: list[Algorithm] = [
    GCRA(4, 1, 1),
    TokenBucket(10, 3),
    TokenBucket(10, 3, refill="ticker", fill_interval_s=0.1),
    SlidingWindowLog(4, 1.0),
    FixedWindow(4, 1.0),
    SlidingWindowCounter(4, 1.0),
    BucketedWindow(4, 1.0, 2),
    DoubleBufferedWindow(4, 1.0, 2, 0.25),
]


@pytest.mark.parametrize("alg", RATE_ALGORITHMS, ids=repr)
@pytest.mark.parametrize(
    ("now", "cost", "name", "shown"),
    [
        (1.5, 1, "now_us", "1.5"),
        (1e6, 1, "now_us", "1000000.0"),
        (np.float64(2.0), 1, "now_us", "2.0"),
        (True, 1, "now_us", "True"),
        ("3", 1, "now_us", "'3'"),
        (None, 1, "now_us", "None"),
        (0, -1, "cost", "-1"),
        (0, 1.0, "cost", "1.0"),
        (0, True, "cost", "True"),
    ],
)
def test_every_algorithm_rejects_bad_times_and_costs(
    alg: Algorithm, now: object, cost: object, name: str, shown: str
) -> None:
    """Issue 2 Build 4 for every rate algorithm: the message names the parameter and value."""
    with pytest.raises(ValueError, match=name) as info:
        alg.step(alg.new_state(), now, cost)  # type: ignore[arg-type]
    assert shown in str(info.value)
    with pytest.raises(ValueError, match=name):
        MemoryStore().acquire(alg, "k", now, cost)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", RATE_ALGORITHMS, ids=repr)
def test_numpy_times_and_costs_are_accepted_as_ints(alg: Algorithm) -> None:
    d_np = alg.step(alg.new_state(), np.int64(-3 * S), np.int64(1))
    d_py = alg.step(alg.new_state(), -3 * S, 1)
    assert d_np == d_py
    assert MemoryStore().acquire(alg, "k", np.int64(-3 * S), np.int32(1)) == d_py


# ----------------------------------------------------- semantics.md §8.5, redis-cell rounding


def test_dragonfly_vector_sequence_with_redis_cell_rounding() -> None:
    """§8.5 restated for redis-cell v0.4+ (the section's last line): ``foo 4 1 10`` at one
    instant gives reset 10/20/.../50 (Dragonfly: 11/.../51), then [1,5,0,10,50], then the peek
    [0,5,0,-1,50]."""
    gcra = GCRA(4, 1, 10)
    store = MemoryStore()
    now = 77 * S
    assert store.acquire(gcra, "foo", now, 6).throttle_reply() == (1, 5, 5, -1, 0)
    for r in range(4, -1, -1):
        assert store.acquire(gcra, "foo", now).throttle_reply() == (0, 5, r, -1, 10 * (5 - r))
    assert store.acquire(gcra, "foo", now).throttle_reply() == (1, 5, 0, 10, 50)
    assert store.acquire(gcra, "foo", now, 0).throttle_reply() == (0, 5, 0, -1, 50)


def test_dragonfly_vector_quantity_sequence_with_redis_cell_rounding() -> None:
    """§8.5: ``foo 4 1 10 2`` then ``foo 4 1 10 5``: redis-cell gives [0,5,3,-1,20] and
    [1,5,3,20,20] (Dragonfly 21, 21)."""
    gcra = GCRA(4, 1, 10)
    store = MemoryStore()
    assert store.acquire(gcra, "foo", 5 * S, 2).throttle_reply() == (0, 5, 3, -1, 20)
    assert store.acquire(gcra, "foo", 5 * S, 5).throttle_reply() == (1, 5, 3, 20, 20)


# --------------------------------------------------- per-key arrival curves through the store


@st.composite
def keyed_traffic(draw: st.DrawFn, scale_us: int) -> list[tuple[int, int, int]]:
    """(key, now_us, cost) with non-decreasing times, three interleaved keys."""
    n = draw(st.integers(1, 60))
    out, now = [], draw(st.integers(-(10**12), 10**12))
    for _ in range(n):
        now += draw(st.one_of(st.just(0), st.integers(0, 3 * scale_us)))
        out.append((draw(st.integers(0, 2)), now, draw(st.integers(0, 3))))
    return out


def bucket_limiters() -> st.SearchStrategy[tuple[Algorithm, Fraction, int]]:
    """(limiter, burst, token period in us as a Fraction) for GCRA and continuous buckets."""
    gcra = st.builds(
        lambda mb, t_us: (GCRA(mb, 1, t_us / S), Fraction(mb + 1), Fraction(t_us)),
        st.integers(0, 5),
        st.integers(1, 5_000),
    )
    bucket = st.builds(
        lambda b, n, d: (TokenBucket(float(Fraction(n, d)), b), Fraction(b), Fraction(S * d, n)),
        st.integers(0, 5),
        st.integers(1, 3_000),
        st.integers(1, 50),
    )
    return st.one_of(gcra, bucket)


@SETTINGS
@given(data=st.data(), lim=bucket_limiters())
def test_arrival_curve_holds_per_key_through_the_memory_store(
    data: st.DataObject, lim: tuple[Algorithm, Fraction, Fraction]
) -> None:
    """Issue 2: at most ``burst + rate * (b - a)`` per key in any [a, b], with keys
    interleaved and the store collecting on every call (grace 0)."""
    limiter, burst, period_us = lim
    traffic = data.draw(keyed_traffic(int(period_us) + 1))
    store = MemoryStore(grace_us=0, gc_every=1)
    admitted: dict[int, list[tuple[int, int]]] = {0: [], 1: [], 2: []}
    for key, now, cost in traffic:
        if store.acquire(limiter, key, now, cost).allowed:
            admitted[key].append((now, cost))
    for reqs in admitted.values():
        for i, (a, _) in enumerate(reqs):
            total = 0
            for b, cost in reqs[i:]:
                total += cost
                assert total <= burst + (b - a) / period_us, (a, b, total)


# ------------------------------------------------ MemoryStore GC within the grace (any order)

ALL_ALGORITHMS: list[Algorithm] = [
    GCRA(2, 1, 0.00001),
    TokenBucket(100_000, 3),
    TokenBucket(0, 2),
    TokenBucket(100_000, 2, refill="ticker", fill_interval_s=0.00002),
    SlidingWindowLog(3, 0.00004),
    FixedWindow(3, 0.00004),
    SlidingWindowCounter(3, 0.00004),
    BucketedWindow(3, 0.00004, 4),
    DoubleBufferedWindow(3, 0.00004, 4, 0.000015),
]


@SETTINGS
@given(
    alg=st.sampled_from(ALL_ALGORITHMS),
    grace_us=st.integers(0, 60),
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 80), st.integers(0, 61), st.integers(0, 4)),
        min_size=1,
        max_size=80,
    ),
)
def test_collection_never_changes_a_decision_within_the_grace(
    alg: Algorithm, grace_us: int, steps: list[tuple[int, int, int, int]]
) -> None:
    """Clocks that lag the newest time seen by less than the grace: a store collecting on every
    call decides exactly like one that never collects, in any order of times."""
    collecting = MemoryStore(grace_us=grace_us, gc_every=1)
    keeping = MemoryStore(grace_us=2**62, gc_every=10**9)
    newest = 0
    for key, advance, lag, cost in steps:
        newest += advance
        now = newest - lag % (grace_us + 1)  # lag <= grace
        assert collecting.acquire(alg, key, now, cost) == keeping.acquire(alg, key, now, cost)
    assert len(collecting) <= len(keeping)


def test_collection_does_drop_dead_keys_of_every_algorithm() -> None:
    """The property above is not vacuous: idle keys of each algorithm do get collected."""
    for alg in ALL_ALGORITHMS:
        store = MemoryStore(grace_us=10, gc_every=1)
        for key in range(5):
            store.acquire(alg, key, 0)
        store.acquire(alg, "late", 10**9)
        store.collect(10**9)
        assert len(store) == 1 or alg == TokenBucket(0, 2), alg
        if alg == TokenBucket(0, 2):
            assert len(store) == 6  # a bucket that never refills never expires


def test_no_kernel_result_is_a_float_on_numpy_input() -> None:
    """State as an int64 array and now_us as np.int64 (the fast engine's types)."""
    for alg in RATE_ALGORITHMS:
        state = np.array(alg.new_state(), dtype=np.int64)
        for now in (np.int64(-7), np.int64(EPOCH_US), np.int64(EPOCH_US - 3 * S)):
            for cost in (0, 1, alg.limit + 1):
                result = alg.kernel(alg.params, state, now, cost)
                assert all(isinstance(v, int | np.integer) for v in result), (alg, result)
                assert not any(isinstance(v, float | np.floating) for v in result)
        assert state.dtype == np.int64
        assert math.isfinite(float(alg.expires_at_us(state)))


@pytest.mark.parametrize(
    ("kwargs", "name", "shown"),
    [
        ({"grace_us": 1.5}, "grace_us", "1.5"),
        ({"grace_us": True}, "grace_us", "True"),
        ({"gc_every": 2.0}, "gc_every", "2.0"),
        ({"gc_every": -3}, "gc_every", "-3"),
    ],
)
def test_memory_store_parameters_must_be_integers(
    kwargs: dict[str, object], name: str, shown: str
) -> None:
    """Bug: MemoryStore(grace_us=1.5) and MemoryStore(gc_every=2.0) were accepted (only the
    sign was checked), so the GC horizon became a float."""
    with pytest.raises(ValueError, match=name) as info:
        MemoryStore(**kwargs)  # type: ignore[arg-type]
    assert shown in str(info.value)


def test_memory_store_collect_validates_now() -> None:
    """Bug: MemoryStore().collect(1.5) compared float horizons; now it names now_us."""
    store = MemoryStore()
    store.acquire(GCRA(1, 1, 1), "k", 0)
    with pytest.raises(ValueError, match="now_us"):
        store.collect(1.5)  # type: ignore[arg-type]
    assert store.collect(np.int64(10**12)) == 1  # type: ignore[arg-type]


def test_token_bucket_unit_is_bounded_even_at_burst_zero() -> None:
    """Bug (found in review of the whole-T rate reading): TokenBucket(1e-30, 0) was accepted
    with 10**36 units per token, which no int64 params tuple (numba) or double holds."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(1e-30, 0)
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(1e-12, 0)  # 10**18 units per token
    tb = TokenBucket(1e-7, 0)  # one token per 10**13 us: 10**13 units, fine
    assert tb.params[0] == 10**13
    state = np.array(tb.new_state(), dtype=np.int64)
    assert tb.kernel(tb.params, state, np.int64(EPOCH_US), 1) == (0, 0, -1, 0)
