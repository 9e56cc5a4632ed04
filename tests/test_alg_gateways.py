"""Semantics of the gateway algorithms, the expected values derived here from each gateway's
documented (source-read) behaviour, `configs-and-traffic.md` §3.7 and `semantics.md` §4.

Every test states the gateway's rule and computes the expected numbers from it, independently of
the kernel under test.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.algorithms import (
    CalendarWindow,
    CountingFixedWindow,
    NginxLeakyBucket,
    ReserveTokenBucket,
    UniformPacer,
    WarmUpBucket,
    shaping_delay_us,
)
from ratesim.algorithms.base import Algorithm
from ratesim.stores import MemoryStore

S = 1_000_000
EPOCH_US = 1_764_000_000_000_000  # 2025-11-24 16:00:00 UTC, a whole second


def run(alg: Algorithm, times_us: list[int], cost: int = 1) -> list[tuple[bool, int]]:
    """``(allowed, hold or retry µs)`` per request, one key, through ``MemoryStore``."""
    store = MemoryStore()
    out = []
    for t in times_us:
        d = store.acquire(alg, "k", t, cost)
        out.append((d.allowed, d.retry_after_us))
    return out


# -- nginx limit_req ---------------------------------------------------------------------------


def nginx_reference(rate_milli: int, burst: int, times_ms: list[int]) -> list[bool]:
    """ngx_http_limit_req_lookup for one key, forward time: the module's arithmetic verbatim."""
    excess, last, out = None, 0, []
    for now in times_ms:
        if excess is None:
            out.append(True)
            excess, last = 0, now
            continue
        ms = now - last
        e = max(excess - rate_milli * ms // 1000 + 1000, 0)
        if e > burst * 1000:
            out.append(False)
            continue
        out.append(True)
        excess = e
        if ms:
            last = now
    return out


def test_nginx_rate_1rs_burst_5_admits_6_at_once_then_one_per_second() -> None:
    alg = NginxLeakyBucket(1, "s", burst=5, nodelay=True)
    at_once = run(alg, [EPOCH_US] * 10)
    assert [a for a, _ in at_once] == [True] * 6 + [False] * 4  # burst + 1, not burst
    # Then one per second: at +1 s exactly one more, at +1.5 s none, at +2 s one.
    store = MemoryStore()
    for _ in range(6):
        store.acquire(alg, "k", EPOCH_US)
    got = [store.acquire(alg, "k", EPOCH_US + dt_us).allowed for dt_us in
           (999_000, 1_000_000, 1_000_000, 1_500_000, 2_000_000, 2_000_000)]  # fmt: skip
    assert got == [False, True, False, False, True, False]


def test_nginx_1rm_is_16_milli_requests_so_one_per_62_5_s() -> None:
    alg = NginxLeakyBucket(1, "m")
    assert alg.rate_milli == 1 * 1000 // 60 == 16
    # 16 * ms / 1000 >= 1000 needs ms >= 62_500: the second request passes 62.5 s after the first.
    got = run(alg, [EPOCH_US, EPOCH_US + 62_499_000, EPOCH_US + 62_500_000])
    assert [a for a, _ in got] == [True, False, True]


def test_nginx_without_nodelay_holds_the_excess_at_the_rate() -> None:
    # burst=5, no nodelay: the k-th request of a burst has excess (k-1)*1000 and is held
    # (excess - 0) * 1000 / rate_milli ms = (k-1) s at 1r/s; delay=2 forwards 2 at once.
    held = run(NginxLeakyBucket(1, "s", burst=5), [EPOCH_US] * 7)
    assert held == [(True, k * S) for k in range(6)] + [(False, 1 * S)]
    hybrid = run(NginxLeakyBucket(1, "s", burst=5, delay=2), [EPOCH_US] * 6)
    assert [d for _, d in hybrid] == [0, 0, 0, 1 * S, 2 * S, 3 * S]
    assert NginxLeakyBucket(1, "s", burst=5, nodelay=True).shapes is False
    alg = NginxLeakyBucket(1, "s", burst=5)
    assert shaping_delay_us(alg, True, 3 * S) == 3 * S


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(1, 3000),
    unit=st.sampled_from(["s", "m"]),
    burst=st.integers(0, 6),
    gaps=st.lists(st.integers(0, 3_000), min_size=1, max_size=60),
)
def test_nginx_matches_the_module_arithmetic(rate: int, unit: str, burst: int,
                                             gaps: list[int]) -> None:  # fmt: skip
    alg = NginxLeakyBucket(rate, unit, burst=burst, nodelay=True)
    times_ms, t = [], 1_764_000_000_000
    for g in gaps:
        t += g
        times_ms.append(t)
    want = nginx_reference(rate * 1000 // (1 if unit == "s" else 60), burst, times_ms)
    assert [a for a, _ in run(alg, [x * 1000 for x in times_ms])] == want


def test_nginx_clock_step_back_counts_as_zero_elapsed() -> None:
    alg = NginxLeakyBucket(1, "s", burst=1, nodelay=True)
    store = MemoryStore()
    assert store.acquire(alg, "k", EPOCH_US + 10 * S).allowed  # excess 0
    # 5 s back: 0 ms elapsed, excess 1000 <= 1000 passes; then 2000 > 1000 is rejected.
    assert store.acquire(alg, "k", EPOCH_US + 5 * S).allowed
    assert not store.acquire(alg, "k", EPOCH_US + 5 * S).allowed


# -- Kong calendar windows and Envoy's counted hits ---------------------------------------------


def utc_us(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp()) * S  # type: ignore[misc]


def test_kong_month_window_is_the_calendar_month() -> None:
    alg = CalendarWindow(2, "month")
    store = MemoryStore()
    feb_end = utc_us(2024, 2, 29, 23, 59, 59)
    assert [store.acquire(alg, "k", feb_end).allowed for _ in range(3)] == [True, True, False]
    # retry: until 1 March 00:00 UTC, one second later (2024 is a leap year).
    assert store.acquire(alg, "k", feb_end).retry_after_us == 1 * S
    assert store.acquire(alg, "k", utc_us(2024, 3, 1)).allowed
    year = CalendarWindow(1, "year")
    d = MemoryStore().acquire(year, "k", utc_us(2023, 12, 31, 12))
    assert d.reset_after_us == 12 * 3600 * S


def test_counted_rejections_use_up_the_window() -> None:
    # Envoy: INCRBY then compare, OVER_LIMIT iff count after > limit. 3/minute at 125 s: key
    # window 120; hits 1-3 OK, 4 over; reset = 60 - 125 % 60 = 55 s (semantics §8.10).
    alg = CountingFixedWindow(3, 60)
    store = MemoryStore()
    got = [store.acquire(alg, "k", 125 * S) for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert got[-1].reset_after_us == 55 * S
    # A cost-3 request over the limit still counts: in Kong's local policy it would not.
    envoy, kong = CountingFixedWindow(5, 60), CalendarWindow(5, "minute")
    for alg2, second in ((envoy, False), (kong, True)):
        s2 = MemoryStore()
        assert s2.acquire(alg2, "k", 0, 4).allowed
        assert not s2.acquire(alg2, "k", 0, 3).allowed
        assert s2.acquire(alg2, "k", 0, 1).allowed is second


def test_a_lagging_clock_counts_into_its_own_window() -> None:
    # Two replicas sharing Redis, one 2 s behind: per-window keys, so at the boundary each
    # window's key gets its own count (the documented doubling of fixed windows under skew).
    alg = CountingFixedWindow(2, 60)
    store = MemoryStore()
    lead = [store.acquire(alg, "k", 60 * S + 500_000).allowed for _ in range(2)]
    lag = [store.acquire(alg, "k", 58 * S + 500_000).allowed for _ in range(3)]
    assert lead == [True, True] and lag == [True, True, False]


# -- Sentinel -------------------------------------------------------------------------------------


def test_sentinel_throttling_burst_of_10() -> None:
    # count 10: cost round(1000 / 10) = 100 ms; maxQueueingTimeMs 500: one now, five after
    # 100..500 ms, four rejected (semantics §8.8).
    got = run(UniformPacer(10, 500), [EPOCH_US] * 10)
    assert got[:6] == [(True, k * 100_000) for k in range(6)]
    assert [a for a, _ in got[6:]] == [False] * 4


def test_sentinel_warm_up_constants_and_cold_start() -> None:
    # count 100, warm-up 10 s, cold 3: warningToken = 1000 // 2 = 500, maxToken = 500 + 2000 // 4
    # = 1000; a cold start holds maxToken, so the bound is 1 / (500 * 4e-5 + 0.01) = 33.3 QPS.
    alg = WarmUpBucket(100, 10, 3)
    assert (alg.warning_token, alg.max_token) == (500, 1000)
    admitted = sum(a for a, _ in run(alg, [EPOCH_US + i * 1000 for i in range(100)]))
    assert admitted == 33


def test_sentinel_warm_up_rises_towards_count() -> None:
    # Each second the stored tokens drop by the previous second's passes (and refill at count/s
    # only while below warning, or above it when the previous QPS < count // cold = 33).
    alg = WarmUpBucket(100, 10, 3)
    store = MemoryStore()
    per_second = []
    for s in range(40):
        base = EPOCH_US + s * S
        per_second.append(
            sum(store.acquire(alg, "k", base + i * 2_000).allowed for i in range(200))
        )
    assert per_second[0] == 33
    assert per_second == sorted(per_second)  # warming up never lowers the admitted rate
    assert per_second[-1] == 100


# -- Traefik -----------------------------------------------------------------------------------


def test_traefik_six_per_minute_burst_1_is_one_per_10_s() -> None:
    # r = 6 / 60 s = 0.1/s, burst 1, maxDelay 500 ms (r < 1): one request a second gets one
    # through every 10 s; one arriving 9.6 s after the last is held 400 ms.
    alg = ReserveTokenBucket(6 / 60, 1, 0.5)
    got = run(alg, [EPOCH_US + i * S for i in range(31)])
    assert [i for i, (a, _) in enumerate(got) if a] == [0, 10, 20, 30]
    held = run(alg, [EPOCH_US, EPOCH_US + 9_600_000])
    assert held == [(True, 0), (True, 400_000)]
    assert run(alg, [EPOCH_US, EPOCH_US + 9_400_000])[1] == (False, 100_000)


@pytest.mark.parametrize("alg", [ReserveTokenBucket(10, 3, 0.05), NginxLeakyBucket(10, "s", 3)])
def test_shaped_requests_leave_at_the_rate(alg: Algorithm) -> None:
    # Arrival curve of the *forwarded* requests (decision time + hold): any window of t seconds
    # holds at most burst + 1 + rate * t of them (+1 for the boundary).
    times = [EPOCH_US + i * 20_000 for i in range(200)]
    fwd = sorted(t + d for t, (a, d) in zip(times, run(alg, times), strict=True) if a)
    for i in range(len(fwd)):
        for j in range(i, len(fwd)):
            span = fwd[j] - fwd[i]
            assert j - i + 1 <= 4 + 1 + 10 * span // S + 1


@settings(max_examples=80, deadline=None)
@given(
    rate=st.integers(1, 50),
    burst=st.integers(0, 5),
    gaps=st.lists(st.integers(0, 400_000), min_size=2, max_size=80),
)
def test_nginx_arrival_curve(rate: int, burst: int, gaps: list[int]) -> None:
    # From nginx's bookkeeping: between two admitted requests i < j, excess grew by 1000 per
    # admission and drained at most rate_milli * (ms_j - ms_i) / 1000, and never exceeds
    # burst * 1000, so j - i + 1 <= burst + 1 + rate_milli * (ms_j - ms_i) / 10**6.
    alg = NginxLeakyBucket(rate, "s", burst=burst, nodelay=True)
    times, t = [], EPOCH_US
    for g in gaps:
        t += g
        times.append(t)
    ok = [t // 1000 for t, (a, _) in zip(times, run(alg, times), strict=True) if a]
    for i in range(len(ok)):
        for j in range(i, len(ok)):
            assert (j - i + 1 - burst - 1) * 10**6 <= rate * 1000 * (ok[j] - ok[i])


@settings(max_examples=60, deadline=None)
@given(
    unit=st.sampled_from(["second", "minute", "month"]),
    limit=st.integers(1, 6),
    counted=st.booleans(),
    gaps=st.lists(st.integers(0, 40 * S), min_size=1, max_size=80),
)
def test_calendar_windows_admit_at_most_limit_per_window(unit: str, limit: int, counted: bool,
                                                         gaps: list[int]) -> None:  # fmt: skip
    # Kong: each UTC calendar window counts on its own; in time order no window admits more
    # than its limit, and with counted rejections the k-th hit of a window passes iff k <= limit.
    alg = CalendarWindow(limit, unit, count_rejected=counted)
    t = EPOCH_US
    per_window: dict[object, tuple[int, int]] = {}
    store = MemoryStore()
    for g in gaps:
        t = t + g * (1 if unit != "month" else 86_400)
        d = dt.datetime.fromtimestamp(t // S, dt.UTC)
        key = {"second": t // S, "minute": t // (60 * S), "month": (d.year, d.month)}[unit]
        hits, ok = per_window.get(key, (0, 0))
        allowed = store.acquire(alg, "k", t).allowed
        per_window[key] = (hits + 1, ok + allowed)
        assert allowed == (ok < limit)  # cost 1: rejected ones never push `ok` over
    assert all(ok <= limit for _h, ok in per_window.values())
