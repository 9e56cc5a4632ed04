"""The fast engine's two heaps: events keyed ``(time, priority, sequence)`` (one row of ``H``
per event) and, per node, the times its borrowed connections come back; and beside the event
heap, the ring of the pools' wait timeouts (``TQ``, :func:`push_timeout`).

Why a ring: a request that waits for a connection posts its timeout ``pool_max_wait`` later,
so at a saturated pool nearly every queued event is a timeout (at the seed's surge, scale
25, about 433,000 of 434,000), and each pop sifted through that many rows, most of them out
of the caches. Posted at nondecreasing times with one delay, the timeouts come in key order
(nearly always): such a one is appended to the ring, and the ring's head enters the heap only
when it is the earliest event (:func:`feed_timeout`, called before each pick), so the heap
holds the few other events. A timeout that would break the ring's order (a step taken ahead
of the current instant, a tie of instants) or finds it full goes to the heap directly. Every
event is in one of the two, the ring is sorted, so the heap's top after a feed is the
earliest event of both: the same order, event for event."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from .layout import (
    C_HEAP,
    C_LAYERS,
    C_OVERFLOW,
    C_RHEAP_TOTAL,
    C_SEQ,
    C_TQ_HEAD,
    C_TQ_LEN,
    C_WAITERS,
    H_AT,
    H_CNOW,
    H_DL,
    H_I,
    H_KIND,
    H_POS,
    H_PRIO,
    H_ROWS,
    H_SEQ,
    K_WAIT_TIMEOUT,
    N_RLEN,
    R_WAITING,
    TQ_AT,
    TQ_I,
    TQ_POS,
    TQ_PRIO,
    TQ_SEQ,
)
from .prefetch import prefetch


@numba.njit(cache=True, inline="always")
def less(H: Any, x: int, y: int) -> bool:
    """Row ``x``'s event comes before row ``y``'s."""
    if H[x, H_AT] != H[y, H_AT]:
        return H[x, H_AT] < H[y, H_AT]
    if H[x, H_PRIO] != H[y, H_PRIO]:
        return H[x, H_PRIO] < H[y, H_PRIO]
    return H[x, H_SEQ] < H[y, H_SEQ]


@numba.njit(cache=True, inline="always")
def _key_less(at: int, prio: int, seq: int, H: Any, y: int) -> bool:
    """The key ``(at, prio, seq)`` comes before row ``y``'s event."""
    if at != H[y, H_AT]:
        return at < H[y, H_AT]
    if prio != H[y, H_PRIO]:
        return prio < H[y, H_PRIO]
    return seq < H[y, H_SEQ]


@numba.njit(cache=True, inline="always")
def _row_less(H: Any, x: int, at: int, prio: int, seq: int) -> bool:
    """Row ``x``'s event comes before the key ``(at, prio, seq)``."""
    if H[x, H_AT] != at:
        return H[x, H_AT] < at
    if H[x, H_PRIO] != prio:
        return H[x, H_PRIO] < prio
    return H[x, H_SEQ] < seq


@numba.njit(cache=True, inline="always")
def _move(H: Any, dst: int, src: int) -> None:
    """Copy row ``src`` of ``H`` onto row ``dst`` (a hole moving, instead of a swap)."""
    for r in range(H_ROWS):
        H[dst, r] = H[src, r]


@numba.njit(cache=True)
def room(C: Any, width: int) -> int:
    """Events one event (an arrival batch of ``width`` requests) may push at the most: every
    pool release turned into an event, plus, per request walk (those of the batch, and one per
    concurrency waiter a hand-off may wake), a command per layer and five more (one of them a
    client's retry)."""
    return C[C_RHEAP_TOTAL] + (C[C_LAYERS] + 5) * (width + C[C_WAITERS] + 1)


@numba.njit(cache=True)
def push(
    H: Any, C: Any, at: int, prio: int, kind: int, i: int, pos: int, cnow: int, dl: int
) -> None:
    """Add an event (its sequence number from the shared counter, as SimPy's ``_eid``)."""
    seq = C[C_SEQ]
    C[C_SEQ] += 1
    _insert(H, C, at, prio, seq, kind, i, pos, cnow, dl)


@numba.njit(cache=True)
def push_seq(
    H: Any, C: Any, at: int, prio: int, seq: int, kind: int, i: int, pos: int, cnow: int, dl: int
) -> None:
    """Add an event keyed ``(at, prio, seq)`` with the sequence number given."""
    _insert(H, C, at, prio, seq, kind, i, pos, cnow, dl)


@numba.njit(cache=True, inline="always")
def _insert(
    H: Any, C: Any, at: int, prio: int, seq: int, kind: int, i: int, pos: int, cnow: int, dl: int
) -> None:
    """:func:`push_seq`'s body, inlined in both pushes (one function, no call between them).

    A full heap is a bug (``run`` reserves room before each event): ``C[C_OVERFLOW]`` is set,
    which ``run`` raises on before its next event, and the event sifts up from the last row
    (overwriting it, never past the table). Neither a raise nor a branch around the insert:
    either made numba keep reference counts on ``H`` and ``C``, taken and dropped on every
    push (8 atomic operations a push through ``push``; with the callers' others about 19% of
    the loop's samples, measured with ``perf``)."""
    n = H.shape[0]
    j = C[C_HEAP]
    if j >= n:
        C[C_OVERFLOW] = 1
    j = min(j, n - 1)
    C[C_HEAP] = j + 1
    # sift up with a hole: parents after the new key move down a row, it is written once
    while j > 0:
        parent = (j - 1) >> 1
        if not _key_less(at, prio, seq, H, parent):
            break
        _move(H, j, parent)
        j = parent
    H[j, H_AT] = at
    H[j, H_PRIO] = prio
    H[j, H_SEQ] = seq
    H[j, H_KIND] = kind
    H[j, H_I] = i
    H[j, H_POS] = pos
    H[j, H_CNOW] = cnow
    H[j, H_DL] = dl


@numba.njit(cache=True)
def push_timeout(H: Any, C: Any, TQ: Any, at: int, prio: int, i: int, pos: int) -> None:
    """Post request ``i``'s wait timeout at layer ``pos`` (``K_WAIT_TIMEOUT``, keyed ``(at,
    prio)`` and the next sequence number): on the ring when it comes after the ring's last
    and the ring has room, else on the heap (module docstring)."""
    seq = C[C_SEQ]
    C[C_SEQ] += 1
    n = TQ.shape[0]
    length = C[C_TQ_LEN]
    if length < n:
        j = C[C_TQ_HEAD] + length
        if j >= n:
            j -= n
        last = j - 1 if j > 0 else n - 1
        # the ring's key columns are the heap's (layout): the heap's comparison serves
        if length == 0 or _row_less(TQ, last, at, prio, seq):
            TQ[j, TQ_AT] = at
            TQ[j, TQ_PRIO] = prio
            TQ[j, TQ_SEQ] = seq
            TQ[j, TQ_I] = i
            TQ[j, TQ_POS] = pos
            C[C_TQ_LEN] = length + 1
            return
    _insert(H, C, at, prio, seq, K_WAIT_TIMEOUT, i, pos, 0, 0)


@numba.njit(cache=True)
def feed_timeout(H: Any, C: Any, TQ: Any, R: Any) -> None:
    """Move the ring's first timeout into the heap when it comes before the heap's top (or
    the heap is empty): then the heap's top is the earliest event of both. The caller makes
    sure the heap has a row free. Timeouts first on the ring whose request no longer waits
    are dropped: a request waits for a connection once at most (``R_CONN`` never returns to
    0), so such a timeout would change nothing when it fires (:func:`stale`)."""
    h = C[C_TQ_HEAD]
    while C[C_TQ_LEN] and stale(TQ, h, R):
        h = ring_next(h, TQ.shape[0])
        C[C_TQ_HEAD] = h
        C[C_TQ_LEN] -= 1
    if C[C_TQ_LEN] == 0:
        return
    at = TQ[h, TQ_AT]
    prio = TQ[h, TQ_PRIO]
    seq = TQ[h, TQ_SEQ]
    if C[C_HEAP] > 0 and not _key_less(at, prio, seq, H, 0):
        return
    _insert(H, C, at, prio, seq, K_WAIT_TIMEOUT, TQ[h, TQ_I], TQ[h, TQ_POS], 0, 0)
    C[C_TQ_HEAD] = ring_next(h, TQ.shape[0])
    C[C_TQ_LEN] -= 1


@numba.njit(cache=True, inline="always")
def ring_next(j: int, n: int) -> int:
    """The ring row after row ``j`` of ``n`` (scalars only: inlined at no reference count)."""
    return j + 1 if j + 1 < n else 0


@numba.njit(cache=True, inline="always")
def stale(TQ: Any, j: int, R: Any) -> bool:
    """The timeout in row ``j`` of the ring is for a request that no longer waits (it was
    handed a connection): when it fires, the loop does nothing."""
    return R[TQ[j, TQ_I], R_WAITING] == 0


def grown_ring(TQ: Any, C: Any, rows: int) -> Any:
    """The wait timeouts' ring with ``rows`` rows (at least its length), its timeouts first in
    order from row 0 (``C_TQ_HEAD`` set to 0)."""
    length = int(C[C_TQ_LEN])
    out = np.zeros((max(rows, length, 1), TQ.shape[1]), dtype=TQ.dtype)
    idx = (int(C[C_TQ_HEAD]) + np.arange(length)) % TQ.shape[0]
    out[:length] = TQ[idx]
    C[C_TQ_HEAD] = 0
    return out


@numba.njit(cache=True)
def pop(H: Any, C: Any) -> None:
    """Remove the earliest event (row 0), after the caller has read it: the last row sifts
    down from the top with a hole (children before it move up a row; it is written once),
    the same rows in the same places as swapping it down."""
    last = C[C_HEAP] - 1
    C[C_HEAP] = last
    if last == 0:
        return
    at = H[last, H_AT]
    prio = H[last, H_PRIO]
    seq = H[last, H_SEQ]
    j = 0
    while True:
        m = 2 * j + 1
        if m >= last:
            break
        # the grandchildren's rows (2m + 1 .. 2m + 4, one line each), asked for while the
        # children are compared: the next level's loads then overlap this level's (a large
        # heap: the wait timeouts stay on their ring, but other events can be many)
        prefetch(H, (2 * m + 1) * H_ROWS)
        prefetch(H, (2 * m + 2) * H_ROWS)
        prefetch(H, (2 * m + 3) * H_ROWS)
        prefetch(H, (2 * m + 4) * H_ROWS)
        if m + 1 < last and less(H, m + 1, m):
            m += 1
        if not _row_less(H, m, at, prio, seq):
            break
        _move(H, j, m)
        j = m
    _move(H, j, last)


@numba.njit(cache=True)
def rheap_push(RH: Any, NV: Any, C: Any, nd: int, y: int) -> None:
    """Node ``nd``'s connection comes back at ``y`` (µs): onto its release heap."""
    j = NV[nd, N_RLEN]
    NV[nd, N_RLEN] = j + 1
    C[C_RHEAP_TOTAL] += 1
    while j > 0:
        parent = (j - 1) >> 1
        if y >= RH[nd, parent]:
            break
        RH[nd, j] = RH[nd, parent]
        j = parent
    RH[nd, j] = y


@numba.njit(cache=True)
def rheap_pop(RH: Any, NV: Any, C: Any, nd: int) -> None:
    """Remove node ``nd``'s earliest connection release (``RH[nd, 0]``)."""
    last = NV[nd, N_RLEN] - 1
    NV[nd, N_RLEN] = last
    C[C_RHEAP_TOTAL] -= 1
    y = RH[nd, last]
    j = 0
    while True:
        m = 2 * j + 1
        if m >= last:
            break
        if m + 1 < last and RH[nd, m + 1] < RH[nd, m]:
            m += 1
        if RH[nd, m] >= y:
            break
        RH[nd, j] = RH[nd, m]
        j = m
    RH[nd, j] = y
