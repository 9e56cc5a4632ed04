"""ConcurrencyLimit: the seed's "50 in flight, queue wait <= 200 ms" (DIGEST row 6)."""

from __future__ import annotations

import random

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.algorithms import ConcurrencyLimit
from ratesim.algorithms.concurrency import (
    ADMIT,
    ADMITTED,
    CANCELLED,
    CANCELLED_WAITS,
    COMPLETED,
    HANDOFF,
    IN_FLIGHT,
    INVALID,
    QUEUE,
    QUEUED,
    REJECT,
    REJECTED,
    RELEASE,
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)


def test_codes_are_distinct() -> None:
    codes = [REJECT, ADMIT, QUEUE, HANDOFF, RELEASE, CANCELLED, INVALID]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": -3}, "max_in_flight"),
        ({"max_in_flight": 2.5}, "max_in_flight"),
        ({"max_in_flight": True}, "max_in_flight"),
        ({"max_in_flight": 5, "max_wait_s": -0.1}, "max_wait_s"),
        ({"max_in_flight": 5, "max_wait_s": float("nan")}, "max_wait_s"),
        ({"max_in_flight": 5, "max_wait_s": "0.2"}, "max_wait_s"),
        ({"max_in_flight": 5, "max_wait_s": 0.2, "max_queue": -1}, "max_queue"),
        ({"max_in_flight": 5, "max_wait_s": 0.2, "max_queue": 1.0}, "max_queue"),
        ({"max_in_flight": 5, "max_wait_s": 0.0, "max_queue": 3}, "max_queue"),
    ],
)
def test_bad_parameters_raise_naming_them(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ConcurrencyLimit(**kwargs)  # type: ignore[arg-type]


def test_params_and_deadline() -> None:
    lim = ConcurrencyLimit(50, max_wait_s=0.2)
    assert lim.max_wait_us == 200_000
    assert lim.params == (50, 200_000, -1)
    assert lim.deadline_us(1_000_000) == 1_200_000
    assert ConcurrencyLimit(3).params == (3, 0, 0)
    assert ConcurrencyLimit(3, 0.0, max_queue=0).params == (3, 0, 0)
    assert ConcurrencyLimit(3, 0.5, max_queue=7).params == (3, 500_000, 7)


def test_no_wait_means_no_queue_sentinel_thread_grade() -> None:
    # Sentinel thread grade: block iff curThreadNum + 1 > count.
    lim = ConcurrencyLimit(3)
    s = lim.new_state()
    codes = [lim.acquire(s, t) for t in range(5)]
    assert codes == [ADMIT, ADMIT, ADMIT, REJECT, REJECT]
    assert s[IN_FLIGHT] == 3 and s[QUEUED] == 0 and s[REJECTED] == 2
    assert lim.complete(s, 10) == RELEASE
    assert lim.acquire(s, 11) == ADMIT
    assert lim.acquire(s, 12) == REJECT


def test_queue_handoff_and_release() -> None:
    lim = ConcurrencyLimit(2, max_wait_s=0.2, max_queue=2)
    s = lim.new_state()
    assert [lim.acquire(s, 0) for _ in range(5)] == [ADMIT, ADMIT, QUEUE, QUEUE, REJECT]
    assert (s[IN_FLIGHT], s[QUEUED]) == (2, 2)
    # A completion passes its slot to the oldest waiter: in flight stays 2.
    assert lim.complete(s, 50_000) == HANDOFF
    assert (s[IN_FLIGHT], s[QUEUED], s[ADMITTED], s[COMPLETED]) == (2, 1, 3, 1)
    # Room in the queue again.
    assert lim.acquire(s, 60_000) == QUEUE
    assert lim.cancel_wait(s, 200_000) == CANCELLED
    assert lim.complete(s, 210_000) == HANDOFF
    assert (s[IN_FLIGHT], s[QUEUED]) == (2, 0)
    assert lim.complete(s, 220_000) == RELEASE
    assert lim.complete(s, 230_000) == RELEASE
    assert (s[IN_FLIGHT], s[QUEUED]) == (0, 0)
    assert (s[ADMITTED], s[COMPLETED], s[REJECTED], s[CANCELLED_WAITS]) == (4, 4, 1, 1)


def test_unbounded_queue_when_max_queue_is_none() -> None:
    lim = ConcurrencyLimit(1, max_wait_s=0.2)
    s = lim.new_state()
    assert lim.acquire(s, 0) == ADMIT
    assert all(lim.acquire(s, 0) == QUEUE for _ in range(1000))
    assert s[QUEUED] == 1000 and s[REJECTED] == 0


def test_misuse_raises_and_kernel_leaves_state_alone() -> None:
    lim = ConcurrencyLimit(2, max_wait_s=0.1)
    s = lim.new_state()
    with pytest.raises(ValueError, match="in_flight"):
        lim.complete(s, 0)
    with pytest.raises(ValueError, match="queued"):
        lim.cancel_wait(s, 0)
    assert concurrency_complete(lim.params, s, 0) == INVALID
    assert concurrency_cancel_wait(lim.params, s, 0) == INVALID
    assert s == lim.new_state()
    with pytest.raises(ValueError, match="now_us"):
        lim.acquire(s, 1.5)  # type: ignore[arg-type]


def test_time_going_backwards_changes_nothing() -> None:
    lim = ConcurrencyLimit(2, max_wait_s=0.2, max_queue=1)
    ops = ["a", "a", "a", "a", "c", "c", "a", "a", "x", "c"]
    expected = [ADMIT, ADMIT, QUEUE, REJECT, HANDOFF, RELEASE, ADMIT, QUEUE, CANCELLED, RELEASE]

    def run(times: list[int]) -> tuple[list[int], list[int]]:
        s = lim.new_state()
        fns = {"a": lim.acquire, "c": lim.complete, "x": lim.cancel_wait}
        return [fns[o](s, t) for o, t in zip(ops, times, strict=True)], s

    forward = run(list(range(0, 1000, 100)))
    backward = run([5_000_000 - 700_000 * i for i in range(10)])
    assert forward == backward
    assert forward[0] == expected
    assert forward[1][:2] == [1, 0]


class Reference:
    """Independent model with request identities and an explicit FIFO of waiters."""

    def __init__(self, max_in_flight: int, waits: bool, max_queue: int | None) -> None:
        self.max_in_flight = max_in_flight
        self.waits = waits
        self.max_queue = max_queue
        self.in_flight: set[int] = set()
        self.queue: list[int] = []
        self.done: set[int] = set()
        self.next_id = 0

    def arrive(self) -> int:
        rid = self.next_id
        self.next_id += 1
        if len(self.in_flight) < self.max_in_flight:
            self.in_flight.add(rid)
            return ADMIT
        room = self.max_queue is None or len(self.queue) < self.max_queue
        if self.waits and room:
            self.queue.append(rid)
            return QUEUE
        return REJECT

    def finish(self, rid: int) -> int:
        self.in_flight.remove(rid)
        self.done.add(rid)
        if self.queue:
            self.in_flight.add(self.queue.pop(0))
            return HANDOFF
        return RELEASE


@settings(max_examples=60, deadline=None)
@given(
    max_in_flight=st.integers(1, 6),
    wait_ms=st.sampled_from([0, 1, 200]),
    max_queue=st.one_of(st.none(), st.integers(0, 5)),
    ops=st.lists(st.tuples(st.sampled_from("acx"), st.integers(0, 10**6)), max_size=120),
)
def test_matches_reference_and_holds_invariants(
    max_in_flight: int, wait_ms: int, max_queue: int | None, ops: list[tuple[str, int]]
) -> None:
    if wait_ms == 0 and max_queue:
        max_queue = 0
    lim = ConcurrencyLimit(max_in_flight, max_wait_s=wait_ms / 1000, max_queue=max_queue)
    ref = Reference(max_in_flight, wait_ms > 0, max_queue)
    s = lim.new_state()
    bound = 0 if wait_ms == 0 else (max_queue if max_queue is not None else 10**9)
    arrivals = handoffs = 0
    for t, (op, pick) in enumerate(ops):
        if op == "a":
            arrivals += 1
            assert lim.acquire(s, t) == ref.arrive()
        elif op == "c" and ref.in_flight:
            rid = sorted(ref.in_flight)[pick % len(ref.in_flight)]
            code = ref.finish(rid)
            assert lim.complete(s, t) == code
            handoffs += code == HANDOFF
        elif op == "x" and ref.queue:
            # A timeout may hit any waiter (they queued at different times).
            ref.queue.pop(pick % len(ref.queue))
            assert lim.cancel_wait(s, t) == CANCELLED
        assert s[IN_FLIGHT] == len(ref.in_flight) <= max_in_flight
        assert s[QUEUED] == len(ref.queue) <= bound
        assert s[QUEUED] == 0 or s[IN_FLIGHT] == max_in_flight
        assert s[ADMITTED] == s[COMPLETED] + s[IN_FLIGHT] == len(ref.done) + len(ref.in_flight)
        # Every arrival is admitted at once, rejected, or went through the queue.
        direct = s[ADMITTED] - handoffs
        assert arrivals == direct + s[REJECTED] + s[QUEUED] + handoffs + s[CANCELLED_WAITS]


def test_numba_kernels_agree_with_python() -> None:
    lim = ConcurrencyLimit(4, max_wait_s=0.2, max_queue=3)
    fns = (concurrency_acquire, concurrency_complete, concurrency_cancel_wait)
    jitted = tuple(numba.njit(f) for f in fns)
    rnd = random.Random(7)
    py_state = lim.new_state()
    nb_state = np.zeros(lim.state_size, dtype=np.int64)
    for t in range(400):
        i = rnd.choice([0, 0, 1, 2])
        a = fns[i](lim.params, py_state, t)
        b = jitted[i](lim.params, nb_state, t)
        assert a == b
        assert py_state == nb_state.tolist()
    assert py_state[ADMITTED] > 0 and py_state[REJECTED] > 0 and py_state[CANCELLED_WAITS] > 0
