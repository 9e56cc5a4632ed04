"""GCRA against redis-cell's ``CL.THROTTLE`` vectors (semantics.md §8.1-§8.4, v0.4+ rounding).

Every expected reply below is typed from semantics.md, not produced by running the code.
"""

from __future__ import annotations

import random

import numba
import numpy as np
import pytest

from ratesim import GCRA, Decision, MemoryStore
from ratesim.algorithms import cell_seconds
from ratesim.algorithms.gcra import gcra_kernel

S = 1_000_000  # µs per second
MS = 1_000  # µs per millisecond

# §8.1 brandur/redis-cell:src/cell/mod.rs `it_rate_limits`, CL.THROTTLE foo 4 1 1 <q>.
# (t_ms, q, reply, exact reset_after_us, exact retry_after_us)
IT_RATE_LIMITS = [
    (0, 6, (1, 5, 5, -1, 0), 0, -1),
    (0, 1, (0, 5, 4, -1, 1), 1 * S, -1),
    (0, 1, (0, 5, 3, -1, 2), 2 * S, -1),
    (0, 1, (0, 5, 2, -1, 3), 3 * S, -1),
    (0, 1, (0, 5, 1, -1, 4), 4 * S, -1),
    (0, 1, (0, 5, 0, -1, 5), 5 * S, -1),
    (0, 1, (1, 5, 0, 1, 5), 5 * S, 1 * S),
    (3000, 1, (0, 5, 2, -1, 3), 3000 * MS, -1),
    (3100, 1, (0, 5, 1, -1, 4), 3900 * MS, -1),
    (4000, 1, (0, 5, 1, -1, 4), 4000 * MS, -1),
    (8000, 1, (0, 5, 4, -1, 1), 1000 * MS, -1),
    (9500, 1, (0, 5, 4, -1, 1), 1000 * MS, -1),
    (9500, 0, (0, 5, 4, -1, 1), 1 * S, -1),
    (9500, 2, (0, 5, 2, -1, 3), 3 * S, -1),
    (9500, 5, (1, 5, 2, 3, 3), 3 * S, 3 * S),
]


@pytest.mark.parametrize("t0", [0, 1_700_000_000 * S])
@pytest.mark.parametrize("row", range(len(IT_RATE_LIMITS)))
def test_it_rate_limits(row: int, t0: int) -> None:
    """Replay rows 0..row-1 on a MemoryStore, then check row ``row`` exactly."""
    gcra = GCRA(4, 1, 1)
    store = MemoryStore()
    for t_ms, q, _reply, _reset, _retry in IT_RATE_LIMITS[:row]:
        store.acquire(gcra, "foo", t0 + t_ms * MS, q)
    t_ms, q, reply, reset_us, retry_us = IT_RATE_LIMITS[row]
    d = store.acquire(gcra, "foo", t0 + t_ms * MS, q)
    assert d.throttle_reply() == reply
    assert (d.reset_after_us, d.retry_after_us) == (reset_us, retry_us)


def test_readme_17_calls_at_one_instant() -> None:
    """§8.2 ``CL.THROTTLE key 15 30 60 1`` x 17: call k -> [0,16,16-k,-1,2k], call 17 limited."""
    gcra = GCRA(15, 30, 60)
    store = MemoryStore()
    now = 42 * S
    for k in range(1, 17):
        d = store.acquire(gcra, "key", now)
        assert d.throttle_reply() == (0, 16, 16 - k, -1, 2 * k)
        assert d.reset_after_us == 2 * k * S
    d = store.acquire(gcra, "key", now)
    assert d.throttle_reply() == (1, 16, 0, 2, 32)
    assert d.retry_after_us == 2 * S


@pytest.mark.parametrize("spacing_us", [0, 1, 1_000, 250_000])
def test_e2e_user123(spacing_us: int) -> None:
    """§8.3 ``CL.THROTTLE user123 0 1 2 1``: allowed, limited, then allowed 2 s later."""
    gcra = GCRA(0, 1, 2)
    store = MemoryStore()
    assert store.acquire(gcra, "user123", 0).throttle_reply() == (0, 1, 0, -1, 2)
    second = spacing_us
    assert store.acquire(gcra, "user123", second).throttle_reply() == (1, 1, 0, 2, 2)
    assert store.acquire(gcra, "user123", second + 2 * S).throttle_reply() == (0, 1, 0, -1, 2)


@pytest.mark.parametrize(
    ("args", "q", "reply"),
    [
        ((5, 5, 3600), 1, (0, 6, 5, -1, 720)),  # issue #37
        ((4, 500_000, 1), 2, (0, 5, 3, -1, 0)),  # T = 2 µs, reset 4 µs truncates to 0
        ((1000, 1000, 60), 1, (0, 1001, 1000, -1, 1)),  # T = 60 ms
    ],
)
def test_other_first_replies(args: tuple[int, int, int], q: int, reply: tuple[int, ...]) -> None:
    gcra = GCRA(*args)
    assert MemoryStore().acquire(gcra, "f", 123 * S, q).throttle_reply() == reply


def test_sub_millisecond_wait_rounds_to_zero() -> None:
    """§8.4 ``0 1 2`` at t=0 then t=1.9995 s: the 0.5 ms wait reports as 0 s."""
    gcra = GCRA(0, 1, 2)
    store = MemoryStore()
    store.acquire(gcra, "f", 0)
    d = store.acquire(gcra, "f", 1_999_500)
    assert d.throttle_reply() == (1, 1, 0, 0, 0)
    assert (d.retry_after_us, d.reset_after_us) == (500, 500)


def test_one_two_one_sequence() -> None:
    """§8.4 ``CL.THROTTLE f 1 2 1``: three calls at t=0, one at t=1.1 s."""
    gcra = GCRA(1, 2, 1)
    store = MemoryStore()
    replies = [store.acquire(gcra, "f", 0).throttle_reply() for _ in range(3)]
    assert replies == [(0, 2, 1, -1, 1), (0, 2, 0, -1, 1), (1, 2, 0, 1, 1)]
    assert store.acquire(gcra, "f", 1_100_000).throttle_reply() == (0, 2, 1, -1, 1)


def test_peek_on_missing_key() -> None:
    """§1.3 [derived]: quantity 0 on a missing key is allowed, full remaining, reset 0."""
    d = MemoryStore().acquire(GCRA(4, 1, 1), "k", 0, 0)
    assert d.throttle_reply() == (0, 5, 5, -1, 0)


@pytest.mark.parametrize(
    ("duration_us", "seconds"),
    [
        (2_000_400, 2),  # 2.0004 s: sub-ms remainder dropped
        (2_001_000, 3),  # 2.001 s
        (500, 0),  # 0.0005 s
        (0, 0),
        (999, 0),
        (1_000, 1),
        (999_999, 1),
        (1_000_000, 1),
        (2_000_000, 2),
        (-1, -1),
    ],
)
def test_cell_seconds_rounding(duration_us: int, seconds: int) -> None:
    assert cell_seconds(duration_us) == seconds
    d = Decision(False, 5, 0, duration_us, duration_us)
    assert d.throttle_reply() == (1, 5, 0, seconds, seconds)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((10, 0, 1), "count_per_period"),  # "Zero rates are not supported"
        ((10, 1, 0), "period_s"),  # "Zero rates are not supported"
        ((-1, 1, 1), "max_burst"),
        ((True, 1, 1), "max_burst"),
        ((1.5, 1, 1), "max_burst"),
        ((1, True, 1), "count_per_period"),
        ((1, -3, 1), "count_per_period"),
        ((1, 1, True), "period_s"),
        ((1, 1, -1), "period_s"),
        ((1, 1, float("nan")), "period_s"),
        ((1, 1, 1e-7), "period_s"),  # not a whole number of microseconds
        ((1, 3, 1e-6), "count_per_period"),  # emission interval below 1 µs
    ],
)
def test_invalid_parameters(args: tuple[object, object, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        GCRA(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "cost", "name"),
    [
        (1.5, 1, "now_us"),
        (1e6, 1, "now_us"),
        (True, 1, "now_us"),
        (0, -1, "cost"),
        (0, True, "cost"),
    ],
)
def test_invalid_call_arguments(now: object, cost: object, name: str) -> None:
    gcra = GCRA(4, 1, 1)
    with pytest.raises(ValueError, match=name):
        MemoryStore().acquire(gcra, "k", now, cost)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=name):
        gcra.step(gcra.new_state(), now, cost)  # type: ignore[arg-type]


def _admitted_now(gcra: GCRA, state: list[int], now: int) -> int:
    count = 0
    while gcra.step(state, now).allowed:
        count += 1
    return count


def test_time_backwards_gives_a_lagging_caller_less_capacity() -> None:
    """[derived] 5 at rest, 1/s. After 3 at t=10 s the TAT is 13 s: a caller at 10 s has 2
    left, one whose clock lags by 1 s sees the TAT 4 s ahead and has 1, one lagging by 10 s has
    none and is told to wait 9 s. Never an exception."""
    gcra = GCRA(4, 1, 1)
    state = gcra.new_state()
    for _ in range(3):
        assert gcra.step(state, 10 * S).allowed
    assert _admitted_now(gcra, list(state), 10 * S) == 2
    assert _admitted_now(gcra, list(state), 9 * S) == 1
    assert _admitted_now(gcra, list(state), 0) == 0
    d = gcra.step(list(state), 0)
    assert (d.allowed, d.retry_after_us, d.reset_after_us) == (False, 9 * S, 13 * S)
    # A lagging writer's TAT is respected by the leader: no extra capacity appears.
    lag = list(state)
    assert gcra.step(lag, 9 * S).allowed  # TAT 14 s
    assert _admitted_now(gcra, lag, 10 * S) == 1


def test_expires_at_is_the_tat() -> None:
    gcra = GCRA(4, 1, 1)
    state = gcra.new_state()
    gcra.step(state, 5 * S, 2)
    assert gcra.expires_at_us(state) == 7 * S
    assert gcra.expires_at_us(gcra.new_state()) < -(2**60)


def test_kernel_on_int64_array_and_numba() -> None:
    gcra = GCRA(3, 7, 2)
    jitted = numba.njit(cache=False)(gcra_kernel)
    rng = random.Random(3)
    lst = gcra.new_state()
    arr = np.array(gcra.new_state(), dtype=np.int64)
    arr2 = np.array(gcra.new_state(), dtype=np.int64)
    now = 0
    for _ in range(300):
        now += rng.choice([0, 1, 285_714, 100_000, -200_000])
        cost = rng.randint(0, 5)
        a = gcra_kernel(gcra.params, lst, now, cost)
        b = gcra_kernel(gcra.params, arr, now, cost)
        c = jitted(gcra.params, arr2, now, cost)
        assert a == tuple(int(x) for x in b) == tuple(int(x) for x in c)
        assert lst == arr.tolist() == arr2.tolist()
