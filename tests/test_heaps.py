"""The event heap (``ratesim.fast.heaps``) against Python's ``heapq`` on the same keys: pushes
and pops interleaved, the events out in ``(time, priority, sequence)`` order with their
payloads."""

from __future__ import annotations

import heapq

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.fast.heaps import pop, push
from ratesim.fast.layout import C_COLS, C_HEAP, H_AT, H_DL, H_I, H_PRIO, H_ROWS, H_SEQ

OPS = st.lists(
    st.one_of(st.tuples(st.integers(0, 40), st.integers(-3, 5)), st.just(None)), max_size=300
)


@settings(max_examples=200, deadline=None)
@given(ops=OPS)
def test_events_come_out_in_key_order(ops: list[tuple[int, int] | None]) -> None:
    H = np.zeros((len(ops) + 1, H_ROWS), dtype=np.int64)  # exactly the room: rows at the end
    C = np.zeros(C_COLS, dtype=np.int64)
    ref: list[tuple[int, int, int]] = []
    seq = 0
    for op in ops:
        if op is None:
            if not ref:
                continue
            want = heapq.heappop(ref)
            got = (int(H[0, H_AT]), int(H[0, H_PRIO]), int(H[0, H_SEQ]))
            assert got == want
            assert H[0, H_I] == want[2] and H[0, H_DL] == -want[2]  # the payload moved with it
            pop(H, C)
        else:
            at, prio = op
            push(H, C, at, prio, 0, seq, 0, 0, -seq)
            heapq.heappush(ref, (at, prio, seq))
            seq += 1
        assert C[C_HEAP] == len(ref)
