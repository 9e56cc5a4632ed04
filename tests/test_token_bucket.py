"""TokenBucket: x/time/rate vectors (semantics.md §8.7), burst 0, rate 0, ticker refill, errors.

Expected values are typed from golang/time:rate/rate_test.go as restated in semantics.md §8.7
(steps ``t_k = t0 + k * 100 ms``, each ``(k, tokens before, n, ok)``), or derived by hand from
the documented semantics (noted where so).
"""

from __future__ import annotations

import math
import random
from fractions import Fraction

import numba
import numpy as np
import pytest

from ratesim import GCRA, MemoryStore, TokenBucket
from ratesim.algorithms.token_bucket import (
    ABSENT_EXPIRY_US,
    NEVER_EXPIRES_US,
    token_bucket_kernel,
)

STEP_US = 100_000  # 100 ms, the spacing of the x/time/rate test times

# (k, tokens before, n, ok) with t = t0 + k * 100 ms.
LIMITER_10_1 = [
    (0, 1, 1, True),
    (0, 0, 1, False),
    (0, 0, 1, False),
    (1, 1, 1, True),
    (1, 0, 1, False),
    (1, 0, 1, False),
    (2, 1, 2, False),
    (2, 1, 1, True),
    (2, 0, 1, False),
]
LIMITER_10_3 = [
    (0, 3, 2, True),
    (0, 1, 2, False),
    (0, 1, 1, True),
    (0, 0, 1, False),
    (1, 1, 4, False),
    (2, 2, 1, True),
    (3, 2, 1, True),
    (4, 2, 1, True),
    (4, 1, 1, True),
    (4, 0, 1, False),
    (4, 0, 1, False),
    (9, 3, 3, True),
    (9, 0, 0, True),
]
JUMP_BACKWARDS_10_3 = [
    (1, 3, 1, True),
    (0, 2, 1, True),
    (0, 1, 1, True),
    (0, 0, 1, False),
    (0, 0, 1, False),
    (1, 1, 1, True),
    (1, 0, 1, False),
    (1, 0, 1, False),
    (2, 1, 1, True),
    (2, 0, 1, False),
    (2, 0, 1, False),
]

# t0 values: zero, a Unix-epoch-sized instant in µs, and a negative (relative clocks).
T0_VALUES = [0, 1_700_000_000_123_456, -987_654_321]


@pytest.mark.parametrize("t0", T0_VALUES)
@pytest.mark.parametrize(
    ("rate", "burst", "steps"),
    [
        pytest.param(10, 1, LIMITER_10_1, id="NewLimiter(10,1)"),
        pytest.param(10, 3, LIMITER_10_3, id="NewLimiter(10,3)"),
        pytest.param(10, 3, JUMP_BACKWARDS_10_3, id="jump-backwards"),
    ],
)
def test_x_time_rate_vectors(
    rate: int, burst: int, steps: list[tuple[int, int, int, bool]], t0: int
) -> None:
    tb = TokenBucket(rate, burst)
    store = MemoryStore()
    for k, tokens_before, n, ok in steps:
        now = t0 + k * STEP_US
        state = store.state_of(tb, "k") or tb.new_state()
        assert tb.tokens_at(state, now) == tokens_before, (k, n)
        d = store.acquire(tb, "k", now, n)
        assert d.allowed is ok, (k, n)
        assert d.limit == burst
        assert d.remaining == (tokens_before - n if ok else tokens_before)


def test_rejected_in_the_past_waits_for_last() -> None:
    """A failed request before ``last`` changes nothing; refill resumes only after ``last``."""
    tb = TokenBucket(10, 3)
    state = tb.new_state()
    t0, t1 = 0, STEP_US
    assert tb.step(state, t1, 3).allowed  # empty at t1
    assert not tb.step(state, t0, 1).allowed  # going back: nothing accrues, nothing moves
    assert state[1] == t1
    # Time stepping back never raises, and a rejected request there waits for last first.
    d = tb.step(state, t0, 1)
    assert d.retry_after_us == (t1 - t0) + STEP_US
    assert d.reset_after_us == (t1 - t0) + 3 * STEP_US


def test_backwards_success_moves_last_back() -> None:
    tb = TokenBucket(10, 3)
    state = tb.new_state()
    assert tb.step(state, 5 * STEP_US, 1).allowed
    assert tb.step(state, 2 * STEP_US, 1).allowed  # 1 token left, last moved back to t2
    assert state[1] == 2 * STEP_US
    # At t5 the bucket is credited (t2, t5] = 3 tokens again: full (capped at 3).
    assert tb.tokens_at(state, 5 * STEP_US) == 3
    # expires_at counts from the moved-back last: full again 2 tokens after t2.
    assert tb.expires_at_us(state) == 4 * STEP_US


def test_rounding_regression_34861() -> None:
    """``NewLimiter(0.7692307692307693, 1).Allow()`` is true; with exact 10/13 tokens/s the next
    token arrives exactly 1.3 s later [derived]."""
    tb = TokenBucket(0.7692307692307693, 1)
    assert tb.rate_fraction == Fraction(10, 13)
    state = tb.new_state()
    assert tb.step(state, 0).allowed
    d = tb.step(state, 1_299_999)
    assert not d.allowed
    assert d.retry_after_us == 1
    assert tb.step(state, 1_300_000).allowed


def test_rate_zero_first_burst_pass_then_nothing() -> None:
    """``NewLimiter(0,1)``: Allow true, then false forever; no refill, no retry time."""
    tb = TokenBucket(0, 1)
    store = MemoryStore(grace_us=0, gc_every=1)
    assert store.acquire(tb, "k", 0).allowed
    for now in (0, 1, 10**6, 10**12):
        d = store.acquire(tb, "k", now)
        assert (d.allowed, d.remaining, d.retry_after_us, d.reset_after_us) == (False, 0, -1, -1)
    state = store.state_of(tb, "k")
    assert state is not None  # never collected: it would come back full
    assert tb.expires_at_us(state) == NEVER_EXPIRES_US


def test_rate_zero_burst_three() -> None:
    tb = TokenBucket(0, 3)
    state = tb.new_state()
    assert [tb.step(state, t).allowed for t in range(5)] == [True, True, True, False, False]


@pytest.mark.parametrize("rate", [0, 10, 1e6])
def test_burst_zero_admits_nothing(rate: float) -> None:
    tb = TokenBucket(rate, 0)
    state = tb.new_state()
    for now in (0, 10**6, 10**9):
        d = tb.step(state, now, 1)
        assert (d.allowed, d.limit, d.remaining, d.retry_after_us) == (False, 0, 0, -1)
    assert tb.step(state, 0, 0).allowed  # cost 0 passes (0 <= burst), as in x/time/rate


def test_cost_above_burst_never_fits() -> None:
    tb = TokenBucket(10, 3)
    state = tb.new_state()
    d = tb.step(state, 0, 4)
    assert (d.allowed, d.remaining, d.retry_after_us, d.reset_after_us) == (False, 3, -1, 0)
    assert state == tb.new_state()


def test_decision_fields_continuous() -> None:
    """[derived] 10 tokens/s, burst 5: a token per 100 ms."""
    tb = TokenBucket(10, 5)
    state = tb.new_state()
    d = tb.step(state, 0, 3)
    assert (d.allowed, d.remaining, d.retry_after_us, d.reset_after_us) == (True, 2, -1, 300_000)
    d = tb.step(state, 50_000, 3)  # 2.5 tokens: half a token short
    assert (d.allowed, d.remaining, d.retry_after_us, d.reset_after_us) == (
        False,
        2,
        50_000,
        250_000,
    )
    assert tb.step(state, 100_000, 3).allowed


def test_retry_after_ceils_to_whole_microseconds() -> None:
    """3 tokens/s: a token per 333333.33 µs, so waits are ceiled to whole µs [derived]."""
    tb = TokenBucket(3, 2)
    state = tb.new_state()
    assert tb.step(state, 0, 2).allowed
    d = tb.step(state, 0)
    assert (d.retry_after_us, d.reset_after_us) == (333_334, 666_667)
    assert not tb.step(state, 333_333).allowed
    assert tb.step(state, 333_334).allowed
    # No drift: the fractional surplus is kept, tokens(t) = 2 - taken + 3 t / 1e6 (below burst).
    assert tb.tokens_at(state, 666_667) == 2 - 3 + Fraction(3 * 666_667, 10**6)
    assert not tb.step(state, 666_666).allowed
    assert tb.step(state, 666_667).allowed


def test_huge_idle_gap_does_not_overflow() -> None:
    tb = TokenBucket(1e6, 5)
    state = tb.new_state()
    # The widest gap the store accepts: from -2**52 to 2**52 us (elapsed * rate would be 2**73).
    assert tb.step(state, -(2**52) + 1, 5).allowed
    d = tb.step(state, 2**52 - 1, 5)
    assert (d.allowed, d.remaining) == (True, 0)
    with pytest.raises(ValueError, match="now_us"):
        tb.step(state, 2**61, 5)


def test_expires_at_is_when_full() -> None:
    tb = TokenBucket(10, 3)
    state = tb.new_state()
    assert tb.expires_at_us(state) == ABSENT_EXPIRY_US
    tb.step(state, 1_000, 3)
    assert tb.expires_at_us(state) == 1_000 + 300_000
    assert tb.tokens_at(state, 300_999) < 3
    assert tb.tokens_at(state, 301_000) == 3
    tb.step(state, 0, 0)  # cost 0 going back in time: commits last=0 with 0 tokens
    assert tb.expires_at_us(state) == 300_000


# --------------------------------------------------------------------------------- ticker


def test_ticker_ten_qps_exact_counts() -> None:
    """The seed: ``time.NewTicker(time.Second / 10)`` adds 1 token every 100 ms [derived]."""
    tb = TokenBucket(10, 1, refill="ticker", fill_interval_s=0.1)
    assert (tb.fill_interval_us, tb.tokens_per_fill) == (100_000, 1)
    state = tb.new_state()
    admitted = [t for t in range(0, 1_000_000, 1_000) if tb.step(state, t).allowed]
    assert admitted == list(range(0, 1_000_000, 100_000))


def test_ticker_refills_on_ticks_not_continuously() -> None:
    """[derived] A bucket emptied at 50 ms refills at the 100 ms tick (continuous: at 150 ms)."""
    ticker = TokenBucket(10, 1, refill="ticker", fill_interval_s=0.1)
    smooth = TokenBucket(10, 1)
    s_t, s_c = ticker.new_state(), smooth.new_state()
    assert ticker.step(s_t, 50_000).allowed and smooth.step(s_c, 50_000).allowed
    d = ticker.step(s_t, 99_999)
    assert (d.allowed, d.retry_after_us, d.reset_after_us) == (False, 1, 1)
    assert smooth.step(s_c, 99_999).retry_after_us == 50_001
    assert ticker.step(s_t, 100_000).allowed
    assert not smooth.step(s_c, 100_000).allowed
    assert smooth.step(s_c, 150_000).allowed


def test_ticker_burst_three_table() -> None:
    """[derived] 10 tokens/s in 1-token ticks every 100 ms, burst 3."""
    tb = TokenBucket(10, 3, refill="ticker", fill_interval_s=0.1)
    state = tb.new_state()
    assert tb.step(state, 50_000, 3).allowed
    assert not tb.step(state, 99_999, 1).allowed
    assert tb.step(state, 100_000, 1).allowed
    assert not tb.step(state, 100_000, 1).allowed
    d = tb.step(state, 350_000, 3)  # ticks at 200 ms and 300 ms: 2 tokens
    assert (d.allowed, d.remaining, d.retry_after_us, d.reset_after_us) == (
        False,
        2,
        50_000,
        50_000,
    )
    d = tb.step(state, 350_000, 2)
    assert (d.allowed, d.remaining, d.reset_after_us) == (True, 0, 250_000)
    assert tb.expires_at_us(state) == 600_000
    assert tb.tokens_at(state, 599_999) == 2
    assert tb.tokens_at(state, 600_000) == 3
    assert tb.tokens_at(state, 10**12) == 3


def test_ticker_several_tokens_per_fill() -> None:
    """[derived] Envoy-style ``tokens_per_fill=5`` every 100 ms, ``max_tokens=8``."""
    tb = TokenBucket(50, 8, refill="ticker", fill_interval_s=0.1)
    assert tb.tokens_per_fill == 5
    state = tb.new_state()
    assert tb.step(state, 10_000, 8).allowed
    assert tb.tokens_at(state, 100_000) == 5
    assert tb.tokens_at(state, 200_000) == 8  # capped
    d = tb.step(state, 150_000, 6)
    assert (d.allowed, d.remaining, d.retry_after_us) == (False, 5, 50_000)


def test_ticker_negative_times_tick_at_multiples() -> None:
    tb = TokenBucket(10, 1, refill="ticker", fill_interval_s=0.1)
    state = tb.new_state()
    assert tb.step(state, -150_000).allowed
    d = tb.step(state, -100_001)
    assert (d.allowed, d.retry_after_us) == (False, 1)
    assert tb.step(state, -100_000).allowed
    assert tb.expires_at_us(state) == 0


def test_ticker_time_backwards_credits_ticks_again() -> None:
    """Ticker analogue of golang/go#56287: ticks in (now, old last] count again."""
    tb = TokenBucket(10, 2, refill="ticker", fill_interval_s=0.1)
    state = tb.new_state()
    assert tb.step(state, 250_000).allowed  # 1 left, last = 250 ms
    assert tb.step(state, 150_000).allowed  # back in time: no tick accrues; last = 150 ms
    assert state[1:] == [150_000, 0]
    assert tb.step(state, 250_000).allowed  # the 200 ms tick is credited again
    d = tb.step(state, 150_000)  # rejected in the past: waits for the tick after last
    assert (d.allowed, d.retry_after_us) == (False, 300_000 - 150_000)


def test_ticker_exceeds_the_continuous_arrival_curve() -> None:
    """A ticker admits a whole fill at a tick: 2 requests 1 µs apart at 10/s, burst 1, which is
    above ``burst + rate * t`` (= 1.00001). The right bound counts ticks, see the properties."""
    tb = TokenBucket(10, 1, refill="ticker", fill_interval_s=0.1)
    state = tb.new_state()
    assert tb.step(state, 99_999).allowed
    assert tb.step(state, 100_000).allowed
    assert 1 + Fraction(10) * Fraction(1, 10**6) < 2


# --------------------------------------------------------------------- GCRA equivalence


def test_equivalent_to_gcra_on_the_redis_cell_vector() -> None:
    """§8.1 (``CL.THROTTLE foo 4 1 1``) replayed on TokenBucket(1, 5): same decisions."""
    rows = [
        (0, 6, False, 5),
        (0, 1, True, 4),
        (0, 1, True, 3),
        (0, 1, True, 2),
        (0, 1, True, 1),
        (0, 1, True, 0),
        (0, 1, False, 0),
        (3000, 1, True, 2),
        (3100, 1, True, 1),
        (4000, 1, True, 1),
        (8000, 1, True, 4),
        (9500, 1, True, 4),
        (9500, 0, True, 4),
        (9500, 2, True, 2),
        (9500, 5, False, 2),
    ]
    tb = TokenBucket(1, 5)
    state = tb.new_state()
    for t_ms, q, allowed, remaining in rows:
        d = tb.step(state, t_ms * 1000, q)
        assert (d.allowed, d.remaining) == (allowed, remaining), (t_ms, q)


def test_gcra_equivalence_holds_for_a_long_awkward_emission_interval() -> None:
    """T = 1_000_003 µs: 10**6/T has denominator 1_000_003 > 10**6. The rate count/period
    (a float) is read as exactly one token per T µs (review fix: it used to be rounded to a
    denominator <= 10**6, and after ``per_us`` saturated cycles the bucket admitted 1 µs before
    GCRA). Now the token period is T exactly and the two agree at that late instant too."""
    big_t = 1_000_003
    tb = TokenBucket(1e6 / big_t, 2)
    unit, per_us = tb.params[0], tb.params[1]
    assert Fraction(unit, per_us) == big_t
    gcra = GCRA(1, 1, big_t / 1e6)
    assert gcra.emission_interval_us == big_t
    state, g_state = tb.new_state(), gcra.new_state()
    assert tb.step(state, 0, 2).allowed and gcra.step(g_state, 0, 2).allowed
    for c in range(1, 5):  # one request per T: both admit, and no surplus unit builds up
        assert tb.step(state, c * big_t).allowed and gcra.step(g_state, c * big_t).allowed
        assert state[1:] == [c * big_t, 0]
        assert g_state[1] == (c + 2) * big_t
    # Where the rounded rate used to diverge (after 1_000_000 cycles): both reject 1 µs early.
    c = 1_000_000
    state = [1, c * big_t, 0]
    g_state = [1, (c + 2) * big_t]
    now = (c + 1) * big_t - 1
    assert not tb.step(state, now).allowed
    assert not gcra.step(g_state, now).allowed
    assert tb.step(state, now + 1).allowed and gcra.step(g_state, now + 1).allowed


# ------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"rate": -1, "burst": 1}, "rate"),
        ({"rate": math.nan, "burst": 1}, "rate"),
        ({"rate": math.inf, "burst": 1}, "rate"),
        ({"rate": -math.inf, "burst": 1}, "rate"),
        ({"rate": "10", "burst": 1}, "rate"),
        ({"rate": True, "burst": 1}, "rate"),
        ({"rate": 1e-10, "burst": 1}, "rate"),  # one token per 10**16 us: refill >= 2**51 us
        ({"rate": 1e22, "burst": 1}, "rate"),
        ({"rate": 10, "burst": -1}, "burst"),
        ({"rate": 10, "burst": 1.5}, "burst"),
        ({"rate": 10, "burst": True}, "burst"),
        ({"rate": 10, "burst": "3"}, "burst"),
        ({"rate": 1 / 3, "burst": 10**10}, "burst"),  # 10**10 * 3e6 units >= 2**53
        ({"rate": 10, "burst": 1, "refill": "leaky"}, "refill"),
        ({"rate": 10, "burst": 1, "fill_interval_s": 0.1}, "fill_interval_s"),
        ({"rate": 10, "burst": 1, "refill": "ticker"}, "fill_interval_s"),
        ({"rate": 10, "burst": 1, "refill": "ticker", "fill_interval_s": 0}, "fill_interval_s"),
        ({"rate": 10, "burst": 1, "refill": "ticker", "fill_interval_s": -1}, "fill_interval_s"),
        ({"rate": 10, "burst": 1, "refill": "ticker", "fill_interval_s": 1e-7}, "fill_interval_s"),
        ({"rate": 10, "burst": 1, "refill": "ticker", "fill_interval_s": "x"}, "fill_interval_s"),
        ({"rate": 15, "burst": 1, "refill": "ticker", "fill_interval_s": 0.1}, "tokens per fill"),
        ({"rate": 5, "burst": 1, "refill": "ticker", "fill_interval_s": 0.1}, "tokens per fill"),
        ({"rate": 0, "burst": 1, "refill": "ticker", "fill_interval_s": 0.1}, "tokens per fill"),
        ({"rate": -10, "burst": 1, "refill": "ticker", "fill_interval_s": 0.1}, "rate"),
        ({"rate": 10, "burst": 2**53, "refill": "ticker", "fill_interval_s": 0.1}, "burst"),
    ],
)
def test_validation_errors_name_the_parameter(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        TokenBucket(**kwargs)  # type: ignore[arg-type]


def test_rate_within_tolerance_is_accepted_as_the_fraction() -> None:
    assert TokenBucket(1.0000000001, 1).rate_fraction == 1
    assert TokenBucket(Fraction(7, 3), 1).rate_fraction == Fraction(7, 3)
    assert TokenBucket(0.1, 1).rate_fraction == Fraction(1, 10)


@pytest.mark.parametrize(
    ("now", "cost", "name"),
    [(1.5, 1, "now_us"), (True, 1, "now_us"), (0, -1, "cost"), (0, 1.0, "cost")],
)
def test_bad_step_arguments(now: object, cost: object, name: str) -> None:
    tb = TokenBucket(10, 1)
    with pytest.raises(ValueError, match=name):
        tb.step(tb.new_state(), now, cost)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        MemoryStore().acquire(tb, "k", now, cost)  # type: ignore[arg-type]


def test_equal_parameters_hash_alike_and_repr_hides_cache() -> None:
    assert TokenBucket(10, 3) == TokenBucket(10.0, 3)
    assert hash(TokenBucket(10, 3)) == hash(TokenBucket(10.0, 3))
    assert TokenBucket(10, 3) != TokenBucket(10, 3, "ticker", 0.1)
    assert "_params" not in repr(TokenBucket(10, 3))


# --------------------------------------------------------------- kernel portability


def _random_traffic(seed: int, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    now, out = 0, []
    for _ in range(n):
        now += rng.choice([0, 0, 1, 999, 30_000, 100_000, -50_000])
        out.append((now, rng.randint(0, 4)))
    return out


LIMITERS = [
    TokenBucket(10, 3),
    TokenBucket(3, 2),
    TokenBucket(0, 2),
    TokenBucket(20, 4, refill="ticker", fill_interval_s=0.1),
]


@pytest.mark.parametrize("tb", LIMITERS, ids=repr)
def test_kernel_same_on_list_and_int64_array(tb: TokenBucket) -> None:
    lst = tb.new_state()
    arr = np.array(tb.new_state(), dtype=np.int64)
    for now, cost in _random_traffic(7, 400):
        a = token_bucket_kernel(tb.params, lst, now, cost)
        b = token_bucket_kernel(tb.params, arr, np.int64(now), cost)
        assert a == tuple(int(x) for x in b)
        assert lst == arr.tolist()


def test_kernel_compiles_with_numba_and_agrees() -> None:
    jitted = numba.njit(cache=False)(token_bucket_kernel)
    for tb in LIMITERS:
        lst = tb.new_state()
        arr = np.array(tb.new_state(), dtype=np.int64)
        for now, cost in _random_traffic(11, 300):
            a = token_bucket_kernel(tb.params, lst, now, cost)
            b = jitted(tb.params, arr, now, cost)
            assert a == tuple(int(x) for x in b)
            assert lst == arr.tolist()
