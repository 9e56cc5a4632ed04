"""The first row a bounded run still needs (``ratesim.fast.compact.first_pinned``) against its
definition counted here: the lowest row that is undecided, holds a slot or a wait, or is named
by a queued event (in the heap or on the wait timeouts' ring), a wait list, a concurrency
queue or a store breaker's probe."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.fast.compact import first_pinned
from ratesim.fast.heaps import push, push_timeout
from ratesim.fast.layout import (
    C_COLS,
    C_HEAP,
    H_ROWS,
    K_PROCEED,
    K_RELEASE,
    R_COLS,
    R_CWAIT,
    R_DECIDED,
    R_HOLDS,
    R_WAITING,
    TQ_COLS,
)
from ratesim.model.store_breaker import SB_COLS, SB_PROBE

ROWS = 40


@settings(max_examples=300, deadline=None)
@given(
    flagged=st.dictionaries(st.integers(0, ROWS - 1), st.integers(0, 3), max_size=4),
    events=st.lists(st.tuples(st.integers(0, ROWS - 1), st.booleans()), max_size=5),
    timeouts=st.lists(st.integers(0, ROWS - 1), max_size=5),
    waiting=st.one_of(st.just(2**62), st.integers(0, ROWS - 1)),
    queued=st.lists(st.integers(-1, ROWS - 1), min_size=2, max_size=2),
    probe=st.integers(-1, ROWS - 1),
    ring=st.integers(1, 6),
)
def test_first_pinned_is_the_lowest_row_anything_names(
    flagged: dict[int, int],
    events: list[tuple[int, bool]],
    timeouts: list[int],
    waiting: int,
    queued: list[int],
    probe: int,
    ring: int,
) -> None:
    R = np.zeros((ROWS, R_COLS), dtype=np.int64)  # every row decided at 0, holding nothing
    for row, what in flagged.items():
        col = (R_DECIDED, R_HOLDS, R_CWAIT, R_WAITING)[what]
        R[row, col] = -1 if col == R_DECIDED else 1
    H = np.zeros((16, H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    TQ = np.zeros((ring, TQ_COLS), dtype=np.int64)
    named = [ROWS, waiting]
    for row, is_request in events:
        # a release names a node, not a row (its H_I is not a row)
        push(H, C, 10, 5, K_PROCEED if is_request else K_RELEASE, row, 0, 0, 0)
        if is_request:
            named.append(row)
    for k, row in enumerate(timeouts):  # in key order: on the ring while it has room
        push_timeout(H, C, TQ, 100 + k, 5, row, 0)
        named.append(row)
    CQ = np.array([[queued[0]], [queued[1]]], dtype=np.int64)
    named += [q for q in queued if q >= 0]
    SB = np.full(SB_COLS, -1, dtype=np.int64)
    SB[SB_PROBE] = probe
    if probe >= 0:
        named.append(probe)
    named += list(flagged)
    got = first_pinned(R, ROWS, H, int(C[C_HEAP]), TQ, C, waiting, CQ, SB)
    assert got == min(named)
