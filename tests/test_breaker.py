"""CircuitBreaker: Sentinel 1.8 semantics (semantics.md §4.3, vectors §8.8)."""

from __future__ import annotations

import random
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.algorithms import CircuitBreaker
from ratesim.algorithms.breaker import (
    BAD,
    BUCKET_START_US,
    CLOSED,
    HALF_OPEN,
    NEXT_RETRY_US,
    OPEN,
    TOTAL,
    TRIPS,
    breaker_on_complete,
    breaker_release_probe,
    breaker_try_pass,
    state_name,
)

MS = 1_000
S = 1_000_000


def sentinel_example(slow_ratio: float = 0.5) -> CircuitBreaker:
    """§8.8: count=200 ms, slowRatio, minRequestAmount=5, statInterval=1000, timeWindow=10."""
    return CircuitBreaker(
        "slow_ratio", slow_ratio, max_rt_s=0.2, min_requests=5, stat_interval_s=1.0, open_s=10.0
    )


def complete_all(cb: CircuitBreaker, s: list[int], rts_ms: list[int], t0_us: int) -> list[str]:
    """Complete one call per RT, 100 ms apart from ``t0_us``; the state name after each."""
    names = []
    for i, rt in enumerate(rts_ms):
        cb.on_complete(s, t0_us + i * 100 * MS, rt * MS)
        names.append(cb.state_name(s))
    return names


def tripped_example() -> tuple[CircuitBreaker, list[int]]:
    cb = sentinel_example()
    s = cb.new_state()
    names = complete_all(cb, s, [300, 300, 300, 50, 50], 100 * MS)
    assert names == ["CLOSED"] * 4 + ["OPEN"]
    return cb, s


def test_slow_ratio_example_opens_at_fifth_completion() -> None:
    cb, s = tripped_example()
    # ratio 3/5 = 0.6 > 0.5; the 5th completion was at 0.5 s.
    assert s[NEXT_RETRY_US] == 500 * MS + 10 * S
    assert s[TRIPS] == 1
    assert (s[TOTAL], s[BAD]) == (5, 3)


def test_requests_during_open_are_blocked_then_one_probe() -> None:
    cb, s = tripped_example()
    for t in (500 * MS, 600 * MS, 5 * S, 10 * S + 499_999):
        assert not cb.try_pass(s, t)
        assert state_name(s) == "OPEN"
    assert cb.try_pass(s, 10 * S + 500 * MS)  # now >= nextRetry: the probe
    assert state_name(s) == "HALF_OPEN"
    assert not cb.try_pass(s, 10 * S + 500 * MS)
    assert not cb.try_pass(s, 30 * S)


def test_good_probe_closes_and_resets_the_bucket() -> None:
    cb, s = tripped_example()
    # Late slow completions while OPEN are counted but change no state.
    for i in range(4):
        assert cb.on_complete(s, 10 * S + 200 * MS + i, 900 * MS) == OPEN
    assert s[NEXT_RETRY_US] == 10_500 * MS
    assert cb.try_pass(s, 10_500 * MS)
    assert cb.on_complete(s, 10_550 * MS, 50 * MS) == CLOSED
    assert (s[TOTAL], s[BAD]) == (0, 0)
    # Without the reset the bucket would hold 6 calls, 5 slow, and trip here.
    assert cb.on_complete(s, 10_600 * MS, 300 * MS) == CLOSED
    assert cb.try_pass(s, 10_601 * MS)


def test_bad_probe_reopens_for_another_open_period() -> None:
    cb, s = tripped_example()
    assert cb.try_pass(s, 10_500 * MS)
    assert cb.on_complete(s, 10_800 * MS, 300 * MS) == OPEN
    assert s[NEXT_RETRY_US] == 20_800 * MS
    assert s[TRIPS] == 2
    assert not cb.try_pass(s, 20_799_999)
    assert cb.try_pass(s, 20_800 * MS)


def test_slow_ratio_one_trips_when_all_slow() -> None:
    cb = sentinel_example(slow_ratio=1.0)
    s = cb.new_state()
    assert complete_all(cb, s, [300] * 5, 0)[-1] == "OPEN"
    s = cb.new_state()
    assert complete_all(cb, s, [300, 300, 300, 300, 50], 0)[-1] == "CLOSED"


def test_fewer_than_min_requests_never_trip() -> None:
    cb = sentinel_example()
    s = cb.new_state()
    assert complete_all(cb, s, [300] * 4, 0) == ["CLOSED"] * 4


def test_ratio_equal_to_threshold_does_not_trip_and_rt_equal_max_is_not_slow() -> None:
    cb = sentinel_example(slow_ratio=0.6)
    s = cb.new_state()
    assert complete_all(cb, s, [300, 300, 300, 50, 50], 0)[-1] == "CLOSED"  # 0.6 is not > 0.6
    cb = sentinel_example()
    s = cb.new_state()
    assert complete_all(cb, s, [200, 200, 200, 200, 200], 0)[-1] == "CLOSED"
    assert s[BAD] == 0
    assert complete_all(cb, s, [201], 600 * MS) == ["CLOSED"]  # 201 ms is slow: 1/6 <= 0.5
    assert s[BAD] == 1


def test_error_ratio() -> None:
    cb = CircuitBreaker("error_ratio", 0.5, min_requests=5)
    s = cb.new_state()
    errors = [1, 0, 1, 0]
    for i, e in enumerate(errors):
        assert cb.on_complete(s, i * MS, 10 * S, e) == CLOSED  # RT is irrelevant here
    assert cb.on_complete(s, 5 * MS, 0, True) == OPEN  # 3/5 > 0.5
    # Exception ratio uses '>' only: 100% errors with threshold 1.0 never trips.
    cb = CircuitBreaker("error_ratio", 1.0)
    s = cb.new_state()
    assert all(cb.on_complete(s, i, 0, 1) == CLOSED for i in range(10))


def test_error_count() -> None:
    cb = CircuitBreaker("error_count", 2, min_requests=5)
    s = cb.new_state()
    codes = [cb.on_complete(s, i * MS, 0, e) for i, e in enumerate([1, 1, 1, 0])]
    assert codes == [CLOSED] * 4  # 3 errors but only 4 calls
    assert cb.on_complete(s, 5 * MS, 0, 0) == OPEN  # 5 calls, 3 errors > 2
    s = cb.new_state()
    assert [cb.on_complete(s, i, 0, e) for i, e in enumerate([1, 1, 0, 0, 0, 0])][-1] == CLOSED
    # A fractional count: errors > 2.5 iff errors >= 3.
    cb = CircuitBreaker("error_count", 2.5, min_requests=1)
    s = cb.new_state()
    assert [cb.on_complete(s, i, 0, 1) for i in range(3)] == [CLOSED, CLOSED, OPEN]


def test_slow_grade_ignores_error_flag() -> None:
    cb = sentinel_example()
    s = cb.new_state()
    for i in range(10):
        cb.on_complete(s, i * MS, 10 * MS, error=1)
    assert state_name(s) == "CLOSED" and s[BAD] == 0


def test_tumbling_window_resets_at_interval_boundaries() -> None:
    cb = sentinel_example()
    s = cb.new_state()
    for t in (100, 200, 300, 400):
        cb.on_complete(s, t * MS, 300 * MS)
    # Still inside [0, 1 s): the 5th slow call trips.
    s2 = list(s)
    assert cb.on_complete(s2, S - 1, 300 * MS) == OPEN
    # At exactly 1 s a new bucket starts: 1 call, no trip.
    assert cb.on_complete(s, S, 300 * MS) == CLOSED
    assert (s[BUCKET_START_US], s[TOTAL], s[BAD]) == (S, 1, 1)
    # A gap of several intervals lands in the aligned bucket.
    cb.on_complete(s, 7_300 * MS, 300 * MS)
    assert (s[BUCKET_START_US], s[TOTAL]) == (7 * S, 1)


def test_seed_breaker_ten_second_window() -> None:
    # RT > 1 s is slow, > 30% over a 10 s tumbling window opens, probe 10 s later.
    cb = CircuitBreaker("slow_ratio", 0.3, max_rt_s=1.0, stat_interval_s=10.0, open_s=10.0)
    s = cb.new_state()
    rts = [100] * 5 + [1500, 1500] + [100] * 3  # at most 2/7 = 0.29 slow along the way
    for i, rt in enumerate(rts):
        cb.on_complete(s, i * S, rt * MS)
    assert state_name(s) == "CLOSED"
    cb.on_complete(s, 9_500 * MS, 1001 * MS)  # 3/11 = 0.27: still closed
    assert state_name(s) == "CLOSED"
    cb.on_complete(s, 9_600 * MS, 1001 * MS)  # 4/12 = 0.33 > 0.3
    assert state_name(s) == "OPEN" and s[NEXT_RETRY_US] == 19_600 * MS


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"grade": "rt", "threshold": 0.5, "max_rt_s": 0.2}, "grade"),
        ({"grade": "slow_ratio", "threshold": -0.1, "max_rt_s": 0.2}, "threshold"),
        ({"grade": "slow_ratio", "threshold": 1.5, "max_rt_s": 0.2}, "threshold"),
        ({"grade": "error_ratio", "threshold": 1.01}, "threshold"),
        ({"grade": "error_count", "threshold": -1}, "threshold"),
        ({"grade": "error_ratio", "threshold": float("nan")}, "threshold"),
        ({"grade": "error_ratio", "threshold": "0.5"}, "threshold"),
        ({"grade": "slow_ratio", "threshold": 0.5}, "max_rt_s"),
        ({"grade": "slow_ratio", "threshold": 0.5, "max_rt_s": -0.001}, "max_rt_s"),
        ({"grade": "error_ratio", "threshold": 0.5, "max_rt_s": 1.0}, "max_rt_s"),
        ({"grade": "error_ratio", "threshold": 0.5, "open_s": 0}, "open_s"),
        ({"grade": "error_ratio", "threshold": 0.5, "open_s": -10}, "open_s"),
        ({"grade": "error_ratio", "threshold": 0.5, "min_requests": 0}, "min_requests"),
        ({"grade": "error_ratio", "threshold": 0.5, "min_requests": 2.0}, "min_requests"),
        ({"grade": "error_ratio", "threshold": 0.5, "stat_interval_s": 0}, "stat_interval_s"),
    ],
)
def test_bad_parameters_raise_naming_them(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


def test_bad_call_arguments_raise() -> None:
    cb = sentinel_example()
    s = cb.new_state()
    with pytest.raises(ValueError, match="error"):
        cb.on_complete(s, 0, 10, error=2)
    with pytest.raises(ValueError, match="rt_us"):
        cb.on_complete(s, 0, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="now_us"):
        cb.try_pass(s, 1.0)  # type: ignore[arg-type]


def test_params_store_thresholds_as_integers() -> None:
    assert sentinel_example().params == (0, 500_000, 200_000, 5, S, 10 * S)
    assert CircuitBreaker("error_ratio", 0.25).params == (1, 250_000, 0, 5, S, 10 * S)
    assert CircuitBreaker("error_count", 3.9, open_s=1.5).params == (2, 3, 0, 5, S, 1_500_000)
    with pytest.raises(ValueError, match="count threshold"):
        _ = CircuitBreaker("error_count", 3).threshold_ppm


def test_release_probe_reverts_without_moving_next_retry() -> None:
    cb, s = tripped_example()
    assert not cb.release_probe(s, 10 * S)  # OPEN, not HALF_OPEN: nothing to undo
    assert cb.try_pass(s, 10_700 * MS)
    assert cb.release_probe(s, 10_700 * MS)
    assert state_name(s) == "OPEN" and s[NEXT_RETRY_US] == 10_500 * MS
    assert cb.try_pass(s, 10_701 * MS)  # the next call probes at once
    assert state_name(s) == "HALF_OPEN"
    closed = cb.new_state()
    assert not cb.release_probe(closed, 0) and state_name(closed) == "CLOSED"


def test_any_completion_in_half_open_decides_like_sentinel() -> None:
    # Sentinel does not tell the probe from an older call that finishes late.
    cb, s = tripped_example()
    assert cb.try_pass(s, 10_500 * MS)
    assert cb.on_complete(s, 10_510 * MS, 20 * MS) == CLOSED


def test_time_going_backwards() -> None:
    cb = sentinel_example()
    s = cb.new_state()
    for t in (1_100, 1_200, 1_300):
        cb.on_complete(s, t * MS, 300 * MS)
    # Completions stamped before the current bucket [1 s, 2 s) count into it.
    cb.on_complete(s, 500 * MS, 50 * MS)
    assert (s[BUCKET_START_US], s[TOTAL], s[BAD]) == (S, 4, 3)
    assert cb.on_complete(s, 400 * MS, 50 * MS) == OPEN  # 3/5 > 0.5
    assert s[NEXT_RETRY_US] == 10_400 * MS
    # try_pass before next_retry stays OPEN, however far back.
    assert not cb.try_pass(s, -50 * S)
    assert not cb.try_pass(s, 10_399 * MS)
    assert state_name(s) == "OPEN"
    # A negative RT (clock stepped between start and end) is not slow.
    cb2 = CircuitBreaker("slow_ratio", 0.0, max_rt_s=0.0, min_requests=1)
    s2 = cb2.new_state()
    assert cb2.on_complete(s2, 0, -5) == CLOSED
    assert cb2.on_complete(s2, 1, 1) == OPEN  # rt 1 us > 0: 1/2 > 0


def test_negative_times_align_buckets_by_floor() -> None:
    cb = sentinel_example()
    s = cb.new_state()
    cb.on_complete(s, -1, 0)
    assert s[BUCKET_START_US] == -S
    cb.on_complete(s, -S - 1, 0)  # earlier than the bucket: counted into it
    assert (s[BUCKET_START_US], s[TOTAL]) == (-S, 2)
    cb.on_complete(s, 0, 0)
    assert (s[BUCKET_START_US], s[TOTAL]) == (0, 1)


class Reference:
    """Sentinel's rules written with Fractions and explicit transitions, for comparison."""

    def __init__(self, grade: str, threshold: Fraction, max_rt: int, min_req: int) -> None:
        self.grade, self.threshold, self.max_rt, self.min_req = grade, threshold, max_rt, min_req
        self.interval, self.open_for = S, 10 * S
        self.state, self.next_retry = "CLOSED", 0
        self.window: int | None = None
        self.total = self.bad = 0

    def try_pass(self, now: int) -> bool:
        if self.state == "CLOSED":
            return True
        if self.state == "OPEN" and now >= self.next_retry:
            self.state = "HALF_OPEN"
            return True
        return False

    def complete(self, now: int, rt: int, err: int) -> None:
        w = now // self.interval
        if self.window is None or w > self.window:
            self.window, self.total, self.bad = w, 0, 0
        is_bad = rt > self.max_rt if self.grade == "slow_ratio" else err == 1
        self.total += 1
        self.bad += is_bad
        if self.state == "HALF_OPEN":
            if is_bad:
                self.state, self.next_retry = "OPEN", now + self.open_for
            else:
                self.state, self.total, self.bad = "CLOSED", 0, 0
        elif self.state == "CLOSED" and self.total >= self.min_req:
            if self.grade == "error_count":
                trip = self.bad > self.threshold
            else:
                ratio = Fraction(self.bad, self.total)
                trip = ratio > self.threshold or (
                    self.grade == "slow_ratio" and ratio == self.threshold == 1
                )
            if trip:
                self.state, self.next_retry = "OPEN", now + self.open_for


@settings(max_examples=60, deadline=None)
@given(
    grade=st.sampled_from(["slow_ratio", "error_ratio", "error_count"]),
    threshold_pct=st.integers(0, 100),
    min_req=st.integers(1, 6),
    events=st.lists(
        st.tuples(
            st.integers(0, 800 * MS),  # time step
            st.booleans(),  # try_pass or complete
            st.integers(0, 400 * MS),  # rt
            st.integers(0, 1),  # error
        ),
        max_size=150,
    ),
)
def test_matches_reference_and_lets_one_probe_per_open(
    grade: str,
    threshold_pct: int,
    min_req: int,
    events: list[tuple[int, bool, int, int]],
) -> None:
    threshold = threshold_pct / 100 if grade != "error_count" else threshold_pct % 7
    max_rt = 0.2 if grade == "slow_ratio" else None
    cb = CircuitBreaker(grade, threshold, max_rt_s=max_rt, min_requests=min_req)
    ref = Reference(
        grade,
        Fraction(threshold_pct, 100) if grade != "error_count" else Fraction(threshold),
        200 * MS,
        min_req,
    )
    s = cb.new_state()
    now = 0
    for step, is_try, rt, err in events:
        now += step
        before = state_name(s)
        if is_try:
            passed = cb.try_pass(s, now)
            assert passed == ref.try_pass(now)
            # Outside CLOSED the only pass is the probe: OPEN -> HALF_OPEN.
            if passed and before != "CLOSED":
                assert (before, state_name(s)) == ("OPEN", "HALF_OPEN")
        else:
            cb.on_complete(s, now, rt, err)
            ref.complete(now, rt, err)
        assert state_name(s) == ref.state
        assert (s[TOTAL], s[BAD]) == (ref.total, ref.bad)
        if ref.state != "CLOSED":
            assert s[NEXT_RETRY_US] == ref.next_retry


def test_numba_kernels_agree_with_python() -> None:
    cb = CircuitBreaker("slow_ratio", 0.4, max_rt_s=0.2, min_requests=3, open_s=2.0)
    try_nb = numba.njit(breaker_try_pass)
    done_nb = numba.njit(breaker_on_complete)
    release_nb = numba.njit(breaker_release_probe)
    rnd = random.Random(3)
    py_state = cb.new_state()
    nb_state = np.array(cb.new_state(), dtype=np.int64)
    now = -3 * S
    seen = set()
    for _ in range(2000):
        now += rnd.randrange(-50 * MS, 300 * MS)
        op = rnd.random()
        if op < 0.5:
            assert breaker_try_pass(cb.params, py_state, now) == try_nb(cb.params, nb_state, now)
        elif op < 0.95:
            rt, err = rnd.randrange(-10, 400 * MS), rnd.randrange(2)
            a = breaker_on_complete(cb.params, py_state, now, rt, err)
            assert a == done_nb(cb.params, nb_state, now, rt, err)
        else:
            a = breaker_release_probe(cb.params, py_state, now)
            assert a == release_nb(cb.params, nb_state, now)
        assert py_state == nb_state.tolist()
        seen.add(py_state[0])
    assert seen == {CLOSED, OPEN, HALF_OPEN}
