"""The oracle's sliding-log kernel (``ratesim.fast.oracle.ring_kernel_oldest_first``): the
ring twin's search begun at the oldest entry, held to the algorithm's own kernel on its
``limit + 2`` integers (the reference) and to the ring twin it replaces, answer for answer and
entry for entry, time going backwards included."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratesim.algorithms.sliding_log import (
    RING_CAP,
    RING_COUNT,
    RING_HEAD,
    RING_STAMPS,
    SlidingWindowLog,
    sliding_log_kernel,
)
from ratesim.fast.logpool import NODE_POOL, ensure_log_room, new_pools, ring_kernel
from ratesim.fast.oracle import ring_kernel_oldest_first


def entries(pool: Any, b: int) -> list[int]:
    """A ring block's entries at ``pool[b:]``, newest first (the block's slot formula)."""
    count, head, cap = pool[b + RING_COUNT], pool[b + RING_HEAD], pool[b + RING_CAP]
    return [int(pool[b + RING_STAMPS + (head - 1 - i) % cap]) for i in range(count)]


def original_entries(state: list[int], limit: int) -> list[int]:
    """The original log's entries, newest first."""
    count, head = state[0], state[1]
    return [state[2 + (head - 1 - i + limit) % limit] for i in range(count)]


STEPS = st.lists(
    st.tuples(
        st.integers(0, 2),  # which key
        st.integers(-40, 80),  # clock step (µs), backwards too
        st.integers(0, 100),  # cost, mapped onto 0 .. limit + 2 below
    ),
    min_size=1,
    max_size=150,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.integers(1, 70), window_us=st.integers(1, 300), steps=STEPS)
def test_the_oldest_first_search_gives_the_original_kernels_answers(
    limit: int, window_us: int, steps: list[tuple[int, int, int]]
) -> None:
    """Three keys, each on two rings in two pools (room made alike), one run by the ring
    twin, one by the oldest-first kernel: the same answers as the original, the same entries."""
    alg = SlidingWindowLog(limit=limit, window_s=window_us / 1e6)
    p = np.array(alg.params, dtype=np.int64)
    originals = [alg.new_state() for _ in range(3)]
    tables = [np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)]
    logs = [new_pools(16, 0, 0), new_pools(16, 0, 0)]
    now = [500, 500, 500]
    for key, dt, c in steps:
        now[key] += dt
        cost = c * (limit + 3) // 101  # 0 .. limit + 2: above the limit too
        want = sliding_log_kernel(alg.params, originals[key], now[key], cost)
        got = []
        for side, kern in enumerate((ring_kernel, ring_kernel_oldest_first)):
            b = ensure_log_room(logs[side], NODE_POOL, tables[side], key, limit, cost)
            got.append(tuple(kern(p, logs[side][NODE_POOL], now[key], cost, 0, b)))
        assert got[0] == want
        assert got[1] == want
        ring = [entries(logs[s][NODE_POOL], tables[s][key]) for s in (0, 1)]
        assert ring[0] == ring[1] == original_entries(originals[key], limit)


def test_a_full_ring_with_many_entries_expired_at_once() -> None:
    """A full 1000-stamp log, then a request after a long gap that expires all but the
    newest 10 entries (the gallop runs far, then the binary search), then one that expires
    them all: the original's answers each time."""
    limit, window = 1000, 10_000
    alg = SlidingWindowLog(limit=limit, window_s=window / 1e6)
    p = np.array(alg.params, dtype=np.int64)
    state = alg.new_state()
    table = np.zeros(1, dtype=np.int64)
    logs = new_pools(0, 0, 0)
    times = [*range(0, 1000), 999 + window - 10, 999 + window - 10, 10 * window]
    for t in times:
        want = sliding_log_kernel(alg.params, state, t, 1)
        b = ensure_log_room(logs, NODE_POOL, table, 0, limit, 1)
        assert tuple(ring_kernel_oldest_first(p, logs[NODE_POOL], t, 1, 0, b)) == want
    assert want == (1, limit - 1, -1, window)  # every earlier entry out: the window holds one
    assert entries(logs[NODE_POOL], table[0]) == original_entries(state, limit)
