"""The wait timeouts' ring beside the event heap (``ratesim.fast.heaps.push_timeout`` /
``feed_timeout``): events posted in any order, timeouts and others mixed, some timeouts out of
order, the ring small enough to fill, come out in key order, each exactly once - the order a
single sorted list of every posted event gives, computed here."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.fast.compact import prune_timeouts
from ratesim.fast.heaps import feed_timeout, grown_ring, pop, push, push_timeout
from ratesim.fast.layout import (
    C_COLS,
    C_HEAP,
    C_SEQ,
    C_TQ_HEAD,
    C_TQ_LEN,
    H_AT,
    H_I,
    H_KIND,
    H_PRIO,
    H_ROWS,
    H_SEQ,
    K_PROCEED,
    K_WAIT_TIMEOUT,
    R_COLS,
    R_WAITING,
    TQ_COLS,
    TQ_I,
)

# an operation: post a timeout (0) or another event (1) at now + delay, or take the next (2)
OPS = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, 5), st.integers(0, 3)),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS, ring=st.integers(1, 9), grow_at=st.integers(0, 120))
def test_events_come_out_in_key_order(
    ops: list[tuple[int, int, int, int]], ring: int, grow_at: int
) -> None:
    H = np.zeros((256, H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    TQ = np.zeros((ring, TQ_COLS), dtype=np.int64)
    R = np.zeros((4, R_COLS), dtype=np.int64)
    R[:, R_WAITING] = 1  # every request still waits: no timeout is dropped
    now = 0
    pending: list[tuple[int, int, int, int, int]] = []  # (at, prio, seq, kind, i) posted
    taken = 0

    def take() -> None:
        nonlocal now, taken
        feed_timeout(H, C, TQ, R)
        if not pending:
            assert C[C_HEAP] == 0 and C[C_TQ_LEN] == 0
            return
        row = H[0]
        got = (int(row[H_AT]), int(row[H_PRIO]), int(row[H_SEQ]), int(row[H_KIND]), int(row[H_I]))
        want = min(pending)  # one list of every event posted and not taken: its earliest
        assert got == want
        pending.remove(want)
        taken += 1
        now = got[0]
        pop(H, C)

    for k, (op, delay, prio, i) in enumerate(ops):
        if k == grow_at:  # a bounded run's tables grow: the ring is copied, in order
            TQ = grown_ring(TQ, C, 2 * TQ.shape[0])
        if op == 2:
            take()
            continue
        at = now + delay
        seq = int(C[C_SEQ])
        if op == 0:
            push_timeout(H, C, TQ, at, prio, i, 0)
            pending.append((at, prio, seq, K_WAIT_TIMEOUT, i))
        else:
            push(H, C, at, prio, K_PROCEED, i, 0, 0, 0)
            pending.append((at, prio, seq, K_PROCEED, i))
        assert C[C_SEQ] == seq + 1  # one sequence number a post, whichever holds the event
    while pending:
        take()
    assert C[C_HEAP] == 0 and C[C_TQ_LEN] == 0


def test_in_order_timeouts_stay_on_the_ring() -> None:
    """Timeouts posted in key order with room on the ring never enter the heap until due."""
    H = np.zeros((16, H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    TQ = np.zeros((8, TQ_COLS), dtype=np.int64)
    for k in range(8):
        push_timeout(H, C, TQ, 100 + k, 5, k, 0)
    assert C[C_TQ_LEN] == 8 and C[C_HEAP] == 0
    push_timeout(H, C, TQ, 200, 5, 9, 0)  # the ring is full: to the heap
    push(H, C, 50, 0, K_PROCEED, 0, 0, 0, 0)
    assert C[C_HEAP] == 2
    R = np.zeros((10, R_COLS), dtype=np.int64)
    R[:, R_WAITING] = 1
    feed_timeout(H, C, TQ, R)  # the heap's top (at 50) is earlier: nothing moves
    assert C[C_TQ_LEN] == 8 and C[C_HEAP] == 2


@settings(max_examples=150, deadline=None)
@given(
    waits=st.lists(st.booleans(), min_size=1, max_size=12),
    head=st.integers(0, 11),
    ring=st.integers(12, 14),
)
def test_stale_timeouts_are_dropped_the_rest_kept_in_order(
    waits: list[bool], head: int, ring: int
) -> None:
    """A timeout whose request no longer waits is dropped from the ring (pruned anywhere on
    it, or when it comes first), the others come out as posted, the ring wrapping."""
    n = len(waits)
    H = np.zeros((16, H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    TQ = np.zeros((ring, TQ_COLS), dtype=np.int64)
    C[C_TQ_HEAD] = head % ring  # start anywhere: the ring wraps
    R = np.zeros((n, R_COLS), dtype=np.int64)
    R[:, R_WAITING] = waits
    for i in range(n):
        push_timeout(H, C, TQ, 100 + i, 5, i, 0)
    assert C[C_TQ_LEN] == n and C[C_HEAP] == 0
    prune_timeouts(TQ, C, R)
    live = [i for i in range(n) if waits[i]]
    assert C[C_TQ_LEN] == len(live)
    ring_rows = [int(TQ[(int(C[C_TQ_HEAD]) + k) % ring, TQ_I]) for k in range(len(live))]
    assert ring_rows == live
    # a request that stops waiting now: its timeout is dropped when it comes first
    if live:
        R[live[0], R_WAITING] = 0
    out = []
    while True:
        feed_timeout(H, C, TQ, R)
        if C[C_HEAP] == 0:
            break
        out.append(int(H[0, H_I]))
        pop(H, C)
    assert out == live[1:]
