"""Property tests (hypothesis) for the window-family algorithms.

Small windows (tens of microseconds) make boundaries, collisions and clock jumps frequent. The
oracles here are brute-force restatements of each algorithm's documented rule over the history
of admitted requests, not the kernels.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.algorithms.base import Algorithm
from ratesim.algorithms.bucketed import BucketedWindow, DoubleBufferedWindow
from ratesim.algorithms.sliding_log import SlidingWindowLog
from ratesim.algorithms.window_counter import FixedWindow, SlidingWindowCounter

SETTINGS = settings(max_examples=150, deadline=None)

limits = st.integers(1, 6)
bucket_counts = st.integers(1, 5)
bucket_lengths = st.integers(2, 12)
starts = st.integers(-100, 100)


def seconds(us: int) -> float:
    return us / 1_000_000


@st.composite
def algorithms(draw: st.DrawFn) -> Algorithm:
    kind = draw(st.sampled_from(["log", "fixed", "counter", "bucketed", "double"]))
    limit = draw(limits)
    n = draw(bucket_counts)
    window_us = n * draw(bucket_lengths)
    if kind == "log":
        return SlidingWindowLog(limit, seconds(window_us))
    if kind == "fixed":
        return FixedWindow(limit, seconds(window_us))
    if kind == "counter":
        return SlidingWindowCounter(limit, seconds(window_us))
    if kind == "bucketed":
        return BucketedWindow(limit, seconds(window_us), n)
    swap_us = draw(st.integers(1, 2 * window_us))
    return DoubleBufferedWindow(limit, seconds(window_us), n, seconds(swap_us))


def window_of(alg: Algorithm) -> int:
    return int(alg.params[1])


def ops(backwards: bool) -> st.SearchStrategy[list[tuple[int, int]]]:
    """(time step in units of window/8, cost) pairs; steps may be negative when backwards."""
    step = st.integers(-12 if backwards else 0, 12)
    return st.lists(st.tuples(step, st.integers(0, 7)), max_size=40)


def window_cases(backwards: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@given`` for one window algorithm: ``limit``, ``window_us`` (2..60), ``start``, ``moves``."""
    return given(
        limit=limits, window_us=st.integers(2, 60), start=starts, moves=ops(backwards=backwards)
    )


def double_buffer_cases() -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@given`` for DoubleBufferedWindow: ``limit``, ``n`` buckets of ``bucket_us``,
    ``swap_us`` (1..40), ``start``, ``moves`` in time order."""
    return given(
        limit=limits,
        n=bucket_counts,
        bucket_us=bucket_lengths,
        swap_us=st.integers(1, 40),
        start=starts,
        moves=ops(backwards=False),
    )


def run(
    alg: Algorithm, start: int, moves: list[tuple[int, int]], on_step: Callable[..., None]
) -> list[int]:
    """Step ``alg`` through ``moves`` from a fresh state; call ``on_step(state_before, t, cost,
    result, state_after)``; return the final state."""
    state = alg.new_state()
    t = start
    unit = max(window_of(alg) // 8, 1)
    for dt, cost in moves:
        t += dt * unit
        before = list(state)
        result = alg.kernel(alg.params, state, t, cost)
        on_step(before, t, cost, result, list(state))
    return state


def ignore(*_: object) -> None:
    pass


@SETTINGS
@given(
    alg=algorithms(),
    start=starts,
    moves=ops(backwards=True),
    later=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 7)), min_size=1, max_size=25),
)
def test_expired_state_decides_like_an_absent_key(
    alg: Algorithm, start: int, moves: list[tuple[int, int]], later: list[tuple[int, int]]
) -> None:
    """From expires_at on (in any order of later times), the state equals a fresh one."""
    state = run(alg, start, moves, ignore)
    expires = alg.expires_at_us(state)
    base = expires if expires > -(2**61) else start
    fresh = alg.new_state()
    for offset, cost in later:
        t = base + offset
        assert alg.kernel(alg.params, state, t, cost) == alg.kernel(alg.params, fresh, t, cost)


@SETTINGS
@given(alg=algorithms(), start=starts, moves=ops(backwards=True))
def test_rejected_requests_and_peeks_change_nothing(
    alg: Algorithm, start: int, moves: list[tuple[int, int]]
) -> None:
    def check(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        allowed, remaining, retry, reset = result
        assert 0 <= remaining <= alg.limit
        assert reset >= 0
        if not allowed or cost == 0:
            assert after == before
        if allowed or cost > alg.limit:
            assert retry == -1
        else:
            assert retry > 0

    run(alg, start, moves, check)


@SETTINGS
@given(alg=algorithms(), start=starts, moves=ops(backwards=True))
def test_retry_after_and_reset_after_are_exact(
    alg: Algorithm, start: int, moves: list[tuple[int, int]]
) -> None:
    """With no other traffic: the rejected request passes at now + retry, not 1 us before;
    a full-limit request passes at now + reset, not 1 us before."""
    kernel, p = alg.kernel, alg.params

    def check(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        allowed, _, retry, reset = result
        if not allowed and retry > 0:
            assert kernel(p, list(after), t + retry, cost)[0] == 1
            assert kernel(p, list(after), t + retry - 1, cost)[0] == 0
        assert kernel(p, list(after), t + reset, alg.limit)[0] == 1
        if reset > 0:
            assert kernel(p, list(after), t + reset - 1, alg.limit)[0] == 0

    run(alg, start, moves, check)


@SETTINGS
@given(alg=algorithms(), start=starts, moves=ops(backwards=False))
def test_expires_at_is_the_reset_instant(
    alg: Algorithm, start: int, moves: list[tuple[int, int]]
) -> None:
    def check(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        if result[0] and cost > 0:
            assert alg.expires_at_us(after) == t + result[3]

    run(alg, start, moves, check)


def admitted_history(
    alg: Algorithm, start: int, moves: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    admitted: list[tuple[int, int]] = []

    def record(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        if result[0] and cost > 0:
            admitted.append((t, cost))

    run(alg, start, moves, record)
    return admitted


def max_in_half_open(admitted: list[tuple[int, int]], length: int) -> int:
    """Largest admitted cost in any interval (x - length, x]."""
    return max((sum(c for s, c in admitted if t - length < s <= t) for t, _ in admitted), default=0)


@SETTINGS
@window_cases(backwards=True)
def test_sliding_log_never_exceeds_limit_in_any_window(
    limit: int, window_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    """In any order of caller times, at most limit units in any (x - window, x]."""
    alg = SlidingWindowLog(limit, seconds(window_us))
    assert max_in_half_open(admitted_history(alg, start, moves), window_us) <= limit


@SETTINGS
@window_cases(backwards=False)
def test_sliding_log_matches_brute_force_log(
    limit: int, window_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    alg = SlidingWindowLog(limit, seconds(window_us))
    log: list[tuple[int, int]] = []

    def check(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        in_window = sum(c for s, c in log if s > t - window_us)
        expect = cost <= limit and in_window + cost <= limit
        assert result[0] == int(expect)
        if expect and cost > 0:
            log.append((t, cost))
        assert result[1] == limit - in_window - (cost if expect else 0)

    run(alg, start, moves, check)


@SETTINGS
@window_cases(backwards=False)
def test_fixed_window_at_most_limit_per_aligned_window(
    limit: int, window_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    alg = FixedWindow(limit, seconds(window_us))
    per_window: dict[int, int] = {}
    for t, c in admitted_history(alg, start, moves):
        per_window[t // window_us] = per_window.get(t // window_us, 0) + c
    assert all(v <= limit for v in per_window.values())


@SETTINGS
@window_cases(backwards=False)
def test_sliding_counter_matches_weighted_formula(
    limit: int, window_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    """Decisions equal floor(prev * (W - e) / W) + curr + cost <= limit over the history."""
    alg = SlidingWindowCounter(limit, seconds(window_us))
    per_window: dict[int, int] = {}

    def check(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        j = t // window_us
        elapsed = t - j * window_us
        prev, curr = per_window.get(j - 1, 0), per_window.get(j, 0)
        weighted = prev * (window_us - elapsed) // window_us + curr
        expect = cost <= limit and weighted + cost <= limit
        assert result[0] == int(expect)
        if expect:
            per_window[j] = curr + cost

    run(alg, start, moves, check)


@SETTINGS
@given(
    limit=limits,
    n=bucket_counts,
    bucket_us=bucket_lengths,
    start=starts,
    moves=ops(backwards=False),
)
def test_bucketed_at_most_limit_per_aligned_span_of_buckets(
    limit: int, n: int, bucket_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    alg = BucketedWindow(limit, seconds(n * bucket_us), n)
    admitted = admitted_history(alg, start, moves)
    for t, _ in admitted:
        first = t // bucket_us
        for k in range(first - n + 1, first + 1):
            lo, hi = k * bucket_us, (k + n) * bucket_us
            assert sum(c for s, c in admitted if lo <= s < hi) <= limit


@SETTINGS
@double_buffer_cases()
def test_double_buffer_admission_bound(
    limit: int, n: int, bucket_us: int, swap_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    """At most limit in any half-open interval of G = W - swap - bucket + 2 us, and so at most
    ceil(W / G) * limit in any window of W."""
    alg = DoubleBufferedWindow(limit, seconds(n * bucket_us), n, seconds(swap_us))
    g = alg.admission_bound_us()
    admitted = admitted_history(alg, start, moves)
    if g > 0:
        assert max_in_half_open(admitted, g) <= limit
        window_us = n * bucket_us
        assert max_in_half_open(admitted, window_us) <= -(-window_us // g) * limit


@SETTINGS
@double_buffer_cases()
def test_double_buffer_matches_lagged_bucket_model(
    limit: int, n: int, bucket_us: int, swap_us: int, start: int, moves: list[tuple[int, int]]
) -> None:
    """Restated from the docstring: a request at t is charged to bucket floor(sw(t) / B) and
    counts while floor(sw(now) / B) - n < its bucket, sw(x) the last swap instant <= x."""
    alg = DoubleBufferedWindow(limit, seconds(n * bucket_us), n, seconds(swap_us))
    charged: list[tuple[int, int]] = []

    def head(t: int) -> int:
        return (t // swap_us * swap_us) // bucket_us

    def check(before: list[int], t: int, cost: int, result: tuple[int, ...], after: list[int]):
        view = sum(c for b, c in charged if b > head(t) - n)
        expect = cost <= limit and view + cost <= limit
        assert result[0] == int(expect)
        if expect and cost > 0:
            charged.append((head(t), cost))

    run(alg, start, moves, check)
