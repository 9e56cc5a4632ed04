"""Property tests for the bucket algorithms (GCRA and TokenBucket, both refill modes).

Bounds are stated and computed here, independently of the code under test:

* continuous token bucket (``rate`` tokens/s, ``burst``): the cost admitted in any closed
  interval ``[a, b]`` is at most ``burst + rate * (b - a)`` (tokens before the first request at
  ``a`` are at most ``burst``; refill over ``(a, b]`` is ``rate * (b - a)``);
* GCRA: the same with ``burst = max_burst + 1`` and ``rate = 1 / T``, ``T`` the *truncated*
  emission interval ``period_us // count`` (truncation makes GCRA slightly faster than
  ``count / period``, never slower);
* ticker token bucket (``tokens_per_fill`` every ``F`` µs, ticks at multiples of ``F``): at most
  ``burst + tokens_per_fill * (floor(b / F) - floor(a / F))``, the number of ticks in ``(a, b]``.
  ``burst + rate * (b - a)`` does *not* hold for the ticker: a whole fill lands at the tick
  (see ``test_ticker_exceeds_the_continuous_arrival_curve`` in test_token_bucket.py).

The arrival-curve bounds assume a clock that does not go back: x/time/rate credits an interval
again when time jumps backwards (golang/go#56287), which the state-invariance properties below
exercise with unsorted times.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim import GCRA, TokenBucket
from ratesim.algorithms.base import Algorithm
from ratesim.algorithms.token_bucket import ABSENT_EXPIRY_US, NEVER_EXPIRES_US

US = 1_000_000
SETTINGS = settings(max_examples=120, deadline=None)

Request = tuple[int, int]  # (now_us, cost)


def run(limiter: Algorithm, requests: list[Request]) -> list[Request]:
    """Feed ``requests`` in order to one key; return the admitted ones."""
    state = limiter.new_state()
    return [(t, c) for t, c in requests if limiter.step(state, t, c).allowed]


def assert_arrival_curve(admitted: list[Request], bound: Callable[[int, int], Fraction]) -> None:
    """Every closed interval [a, b] between admitted requests (sorted by time) stays in bound.

    Starting at every index covers the first request of each same-time group, so the sums
    include all requests at ``a``; accumulating to every later index covers all of ``b``'s.
    """
    for i, (a, _) in enumerate(admitted):
        total = 0
        for b, cost in admitted[i:]:
            total += cost
            assert total <= bound(a, b), (a, b, total)


@st.composite
def sorted_arrivals(draw: st.DrawFn, scale_us: int, max_cost: int) -> list[Request]:
    """Non-decreasing times (bursts of equal times included) with costs 0..max_cost."""
    start = draw(st.integers(-(10**12), 10**12))
    gaps = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(0, scale_us), st.integers(0, 4 * scale_us)),
            min_size=1,
            max_size=50,
        )
    )
    costs = draw(st.lists(st.integers(0, max_cost), min_size=len(gaps), max_size=len(gaps)))
    out, now = [], start
    for gap, cost in zip(gaps, costs, strict=True):
        now += gap
        out.append((now, cost))
    return out


@st.composite
def any_order_arrivals(draw: st.DrawFn, scale_us: int, max_cost: int) -> list[Request]:
    """Times that also step backwards (skewed callers), costs 0..max_cost."""
    steps = draw(
        st.lists(
            st.tuples(st.integers(-2 * scale_us, 4 * scale_us), st.integers(0, max_cost)),
            min_size=1,
            max_size=40,
        )
    )
    out, now = [], draw(st.integers(-(10**9), 10**9))
    for step, cost in steps:
        now += step
        out.append((now, cost))
    return out


# ----------------------------------------------------------------------- parameter draws


@st.composite
def continuous_buckets(draw: st.DrawFn) -> tuple[TokenBucket, Fraction, int]:
    """A continuous bucket from an exact rate (denominator <= 1000) passed as a float."""
    rate = Fraction(draw(st.integers(1, 5000)), draw(st.integers(1, 1000)))
    burst = draw(st.integers(0, 8))
    tb = TokenBucket(float(rate), burst)
    assert tb.rate_fraction == rate  # the float round-trips to the intended fraction
    return tb, rate, int(US / rate) + 1


@st.composite
def ticker_buckets(draw: st.DrawFn) -> tuple[TokenBucket, int, int]:
    fill_us = draw(st.one_of(st.integers(1, 2_000), st.integers(2_000, 1_000_000)))
    per_fill = draw(st.integers(1, 5))
    burst = draw(st.integers(0, 8))
    rate = Fraction(per_fill * US, fill_us)
    tb = TokenBucket(float(rate), burst, refill="ticker", fill_interval_s=fill_us / US)
    assert (tb.fill_interval_us, tb.tokens_per_fill) == (fill_us, per_fill)
    return tb, fill_us, per_fill


@st.composite
def gcras(draw: st.DrawFn) -> tuple[GCRA, int]:
    """Any GCRA (period in whole µs, sub-ms emission intervals included) and its truncated T."""
    period_us = draw(st.one_of(st.integers(1, 5_000), st.integers(5_000, 5 * US)))
    count = draw(st.integers(1, min(period_us, 50)))
    gcra = GCRA(draw(st.integers(0, 6)), count, period_us / US)
    return gcra, period_us // count


@st.composite
def integral_pairs(draw: st.DrawFn) -> tuple[GCRA, TokenBucket, int]:
    """GCRA(max_burst, count, period) with integral T = period/count, and the equivalent
    TokenBucket(rate=count/period, burst=max_burst+1)."""
    emission_us = draw(
        st.one_of(
            st.integers(1, 999),  # sub-millisecond emission intervals
            st.integers(1_000, US),
            st.sampled_from([2 * US, 3 * US, 60 * US, 3_600 * US]),
        )
    )
    count = draw(st.integers(1, 20))
    max_burst = draw(st.integers(0, 8))
    period_s = emission_us * count / US
    gcra = GCRA(max_burst, count, period_s)
    assert gcra.emission_interval_us == emission_us
    tb = TokenBucket(count / period_s, max_burst + 1)
    unit, per_us = tb.params[0], tb.params[1]
    assert Fraction(unit, per_us) == emission_us  # one token per T µs, exactly
    return gcra, tb, emission_us


def any_bucket() -> st.SearchStrategy[tuple[Algorithm, int]]:
    """Any of the three kinds, with a time scale (µs per token) for drawing arrivals."""
    return st.one_of(
        continuous_buckets().map(lambda x: (x[0], x[2])),
        ticker_buckets().map(lambda x: (x[0], x[1] // x[2] + 1)),
        gcras().map(lambda x: (x[0], x[1])),
        st.integers(0, 4).map(lambda b: (TokenBucket(0, b), 1_000)),
    )


# ------------------------------------------------------------------------ arrival curves


@SETTINGS
@given(data=st.data(), bucket=continuous_buckets())
def test_continuous_bucket_arrival_curve(
    data: st.DataObject, bucket: tuple[TokenBucket, Fraction, int]
) -> None:
    tb, rate, scale = bucket
    arrivals = data.draw(sorted_arrivals(scale, tb.burst + 1))
    admitted = run(tb, arrivals)
    assert_arrival_curve(admitted, lambda a, b: tb.burst + rate * Fraction(b - a, US))


@SETTINGS
@given(data=st.data(), bucket=ticker_buckets())
def test_ticker_bucket_arrival_curve(
    data: st.DataObject, bucket: tuple[TokenBucket, int, int]
) -> None:
    tb, fill_us, per_fill = bucket
    arrivals = data.draw(sorted_arrivals(fill_us // per_fill + 1, tb.burst + 1))
    admitted = run(tb, arrivals)
    # Python's // floors for negative times too: ticks in (a, b] at multiples of fill_us.
    assert_arrival_curve(
        admitted, lambda a, b: Fraction(tb.burst + per_fill * (b // fill_us - a // fill_us))
    )


@SETTINGS
@given(data=st.data(), pair=gcras())
def test_gcra_arrival_curve(data: st.DataObject, pair: tuple[GCRA, int]) -> None:
    gcra, emission_us = pair
    arrivals = data.draw(sorted_arrivals(emission_us, gcra.max_burst + 2))
    admitted = run(gcra, arrivals)
    limit = gcra.max_burst + 1
    assert_arrival_curve(admitted, lambda a, b: limit + Fraction(b - a, emission_us))


@SETTINGS
@given(data=st.data(), bucket=continuous_buckets())
def test_bound_is_approached_by_saturating_traffic(
    data: st.DataObject, bucket: tuple[TokenBucket, Fraction, int]
) -> None:
    """A full burst at 0, then one request at each ceil(k / rate): all pass, so the admitted
    count comes within one token of ``burst + rate * t`` (the curve checks are not vacuous).
    Burst >= 2 so the sub-µs surplus of each ceiled time is kept, not capped away."""
    tb_drawn, rate, _scale = bucket
    tb = TokenBucket(float(rate), max(2, tb_drawn.burst))
    n = data.draw(st.integers(1, 20))
    times = [0] * tb.burst + [-(-k * US * rate.denominator // rate.numerator) for k in range(1, n)]
    assert len(run(tb, [(t, 1) for t in times])) == len(times)


# ----------------------------------------------------------------- GCRA == TokenBucket


@SETTINGS
@given(data=st.data(), pair=integral_pairs())
def test_gcra_equals_token_bucket_on_unit_cost(
    data: st.DataObject, pair: tuple[GCRA, TokenBucket, int]
) -> None:
    gcra, tb, emission_us = pair
    arrivals = data.draw(sorted_arrivals(emission_us, 1))
    g_state, t_state = gcra.new_state(), tb.new_state()
    for now, _ in arrivals:
        g = gcra.step(g_state, now, 1)
        t = tb.step(t_state, now, 1)
        assert (g.allowed, g.remaining) == (t.allowed, t.remaining)
        assert g.retry_after_us == t.retry_after_us  # both -1 when allowed
        assert g.reset_after_us == t.reset_after_us
        assert g.limit == t.limit


@SETTINGS
@given(data=st.data(), pair=integral_pairs())
def test_gcra_equals_token_bucket_for_any_cost(
    data: st.DataObject, pair: tuple[GCRA, TokenBucket, int]
) -> None:
    """With integral T the match holds for every cost: q tokens are ``q * T`` of TAT, cost 0 is
    a peek in both, and ``cost > burst`` is refused with retry -1 by both."""
    gcra, tb, emission_us = pair
    arrivals = data.draw(sorted_arrivals(emission_us, tb.burst + 2))
    g_state, t_state = gcra.new_state(), tb.new_state()
    for now, cost in arrivals:
        g = gcra.step(g_state, now, cost)
        t = tb.step(t_state, now, cost)
        assert g == t


def test_equivalence_needs_a_clock_that_does_not_go_back() -> None:
    """§8.7 jump backwards: x/time/rate admits a third request at t0, GCRA refuses it."""
    tb, gcra = TokenBucket(10, 3), GCRA(2, 10, 1)
    t0, t1 = 0, 100_000
    t_state, g_state = tb.new_state(), gcra.new_state()
    seq = [(t1, True, True), (t0, True, True), (t0, True, False)]
    for now, tb_ok, gcra_ok in seq:
        assert tb.step(t_state, now).allowed is tb_ok
        assert gcra.step(g_state, now).allowed is gcra_ok


# -------------------------------------------------------------- state and timing facts


@SETTINGS
@given(data=st.data(), bucket=any_bucket())
def test_rejected_request_changes_nothing(
    data: st.DataObject, bucket: tuple[Algorithm, int]
) -> None:
    limiter, scale = bucket
    state = limiter.new_state()
    for now, cost in data.draw(any_order_arrivals(scale, limiter.limit + 2)):
        before = list(state)
        if not limiter.step(state, now, cost).allowed:
            assert state == before


@SETTINGS
@given(data=st.data(), bucket=any_bucket())
def test_retry_after_is_exact(data: st.DataObject, bucket: tuple[Algorithm, int]) -> None:
    """A rejected request with ``retry_after_us = r >= 0`` passes at ``now + r`` and not at
    ``now + r - 1`` (clock moving forward from ``now``, even when ``now`` lies in the past)."""
    limiter, scale = bucket
    state = limiter.new_state()
    for now, cost in data.draw(any_order_arrivals(scale, limiter.limit + 1)):
        d = limiter.step(state, now, cost)
        if d.allowed or d.retry_after_us < 0:
            continue
        r = d.retry_after_us
        assert r >= 1
        assert limiter.step(list(state), now + r, cost).allowed
        assert not limiter.step(list(state), now + r - 1, cost).allowed


BUCKETS_ONLY = st.one_of(
    continuous_buckets().map(lambda x: (x[0], x[2])),
    ticker_buckets().map(lambda x: (x[0], x[1] // x[2] + 1)),
)


@SETTINGS
@given(data=st.data(), bucket=BUCKETS_ONLY)
def test_reset_after_is_when_full(data: st.DataObject, bucket: tuple[TokenBucket, int]) -> None:
    tb, scale = bucket
    state = tb.new_state()
    for now, cost in data.draw(any_order_arrivals(scale, tb.burst + 1)):
        d = tb.step(state, now, cost)
        r = d.reset_after_us
        assert r >= 0
        assert tb.tokens_at(state, now + r) == tb.burst
        if r > 0:
            assert tb.tokens_at(state, now + r - 1) < tb.burst


@SETTINGS
@given(data=st.data(), bucket=BUCKETS_ONLY)
def test_expires_at_decides_like_an_absent_key(
    data: st.DataObject, bucket: tuple[TokenBucket, int]
) -> None:
    """From ``expires_at_us`` on (and at any time for a full bucket, even before ``last``), the
    state gives the same decisions and next state as a new key; one µs earlier it is not full."""
    tb, scale = bucket
    state = tb.new_state()
    for now, cost in data.draw(any_order_arrivals(scale, tb.burst + 1)):
        tb.step(state, now, cost)
    expiry = tb.expires_at_us(state)
    assert expiry != NEVER_EXPIRES_US  # rate > 0 here
    if expiry == ABSENT_EXPIRY_US:
        probes = [state[1] - 10 * scale, state[1], state[1] + 1]
    else:
        probes = [expiry, expiry + 1, expiry + data.draw(st.integers(0, 10**12))]
        assert tb.tokens_at(state, expiry - 1) < tb.burst
    for t in probes:
        for cost in range(tb.burst + 2):
            fresh, aged = tb.new_state(), list(state)
            d = tb.step(aged, t, cost)
            assert d == tb.step(fresh, t, cost)
            if d.allowed:
                assert aged == fresh
