"""Moving the bounded runner's request tables down: the finished head of the tables dropped, the
rows still in flight renumbered to start at row 0 (:mod:`ratesim.fast.bounded`).

Between two time chunks the loop's state names request rows in these places (an audit of
:mod:`ratesim.fast.loop`, :mod:`ratesim.fast.kernels` and :mod:`ratesim.fast.layout`):

* the event heap ``H`` and the wait timeouts' ring ``TQ`` (``TQ_I``, ``TQ_PRIO``): a request
  event's ``H_I`` is its row and its ``H_PRIO`` is
  ``row * PRIO_STRIDE + pos`` (or ``+ PRIO_BACKEND (+ 1)``); ``K_RELEASE`` (``H_I``: a node),
  ``K_SNAPSHOT`` / ``K_FAILOVER`` (a failover) and ``K_RETRY`` (clients, never bounded) carry
  no row and a negative constant priority;
* the pools' wait lists: ``NV[node, N_WHEAD]`` / ``N_WTAIL`` and each member's ``R_WNEXT``;
* the concurrency wait queues: ``CQ[0 / 1, queue]`` (head, tail) and each member's
  ``PRL[2, row, pos]``;
* the store breakers' probe in flight: ``SB[... + SB_PROBE]``;
* the hand-off stack ``STACK[:, 1]``: always empty between two calls of the loop (a
  continuation runs until it waits for an event), checked by the caller.

Everything else is times (``RH``, ``BUSY``, ``CMD``, ``PRL[1]``), counts, or state addressed by
key. A shift by the same ``cut`` keeps every order: request priorities stay >= 0, above the
constant ones, and among themselves in the same order.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..model.store_breaker import SB_COLS, SB_PROBE
from ..ordering import PRIO_STRIDE
from .heaps import ring_next, stale
from .layout import (
    C_TQ_HEAD,
    C_TQ_LEN,
    G_CONCURRENCY,
    H_I,
    H_KIND,
    H_PRIO,
    K_FAILOVER,
    K_RELEASE,
    K_RETRY,
    K_SNAPSHOT,
    L_GUARD_KIND,
    L_NKEYS,
    L_QOFF,
    N_WHEAD,
    N_WTAIL,
    R_CWAIT,
    R_DECIDED,
    R_HOLDS,
    R_WAITING,
    R_WNEXT,
    TQ_I,
    TQ_PRIO,
)


@numba.njit(cache=True)
def _row_event(kind: int) -> bool:
    """Whether an event of ``kind`` names a request row (``H_I``) in its key."""
    return kind != K_RELEASE and kind != K_SNAPSHOT and kind != K_FAILOVER and kind != K_RETRY


@numba.njit(cache=True)
def prune_waiters(R: Any, NV: Any, CQ: Any, PRL: Any, LY: Any) -> int:
    """Unlink the members of the pools' wait lists that no longer wait (``R_WAITING`` 0: they
    timed out) and of the concurrency queues that no longer wait there (``R_CWAIT`` is not
    ``pos + 1``). The loop skips such members when it next walks the list, so dropping them
    now changes nothing it does; it only stops a stale member from pinning its row. Returns
    the lowest row left on a pool's wait list (``2**62``: none), for :func:`first_pinned`."""
    lowest = 2**62
    for nd in range(NV.shape[0]):
        head = -1
        prev = -1
        w = NV[nd, N_WHEAD]
        while w >= 0:
            nxt = R[w, R_WNEXT]
            if R[w, R_WAITING]:
                if prev < 0:
                    head = w
                else:
                    R[prev, R_WNEXT] = w
                prev = w
                lowest = min(lowest, w)
            w = nxt
        if prev >= 0:
            R[prev, R_WNEXT] = -1
        NV[nd, N_WHEAD] = head
        NV[nd, N_WTAIL] = prev
    for pos in range(LY.shape[0]):
        if LY[pos, L_GUARD_KIND] != G_CONCURRENCY:
            continue
        q0 = LY[pos, L_QOFF]
        for e in range(q0, q0 + LY[pos, L_NKEYS]):
            head = -1
            prev = -1
            w = CQ[0, e]
            while w >= 0:
                nxt = PRL[2, w, pos]
                if R[w, R_CWAIT] == pos + 1:
                    if prev < 0:
                        head = w
                    else:
                        PRL[2, prev, pos] = w
                    prev = w
                w = nxt
            if prev >= 0:
                PRL[2, prev, pos] = -1
            CQ[0, e] = head
            CQ[1, e] = prev
    return lowest


@numba.njit(cache=True)
def first_pinned(
    R: Any, rows: int, H: Any, n_heap: int, TQ: Any, C: Any, waiting: int, CQ: Any, SB: Any
) -> int:
    """The first of rows ``0 .. rows - 1`` the run still needs (``rows`` when none): one not
    decided yet, holding a slot or a connection wait, named by a queued event (the heap's
    first ``n_heap`` rows, the wait timeouts' ring ``TQ``), a wait list (``waiting``: the
    lowest row on one, what :func:`prune_waiters` returns: call it first) or queue, or a
    store breaker's probe. Every row before it is finished: no output of it changes any more
    and nothing will read it."""
    cut = min(rows, waiting)
    j = C[C_TQ_HEAD]
    for _ in range(C[C_TQ_LEN]):
        cut = min(cut, TQ[j, TQ_I])
        j = ring_next(j, TQ.shape[0])
    for i in range(cut):  # below the bounds so far only: a row's own state lowers it
        if R[i, R_DECIDED] < 0 or R[i, R_HOLDS] != 0 or R[i, R_CWAIT] != 0 or R[i, R_WAITING]:
            cut = i
            break
    for j in range(n_heap):
        if _row_event(H[j, H_KIND]) and H[j, H_I] < cut:
            cut = H[j, H_I]
    for e in range(CQ.shape[1]):
        for side in range(2):
            if 0 <= CQ[side, e] < cut:
                cut = CQ[side, e]
    for o in range(0, SB.shape[0], SB_COLS):
        if 0 <= SB[o + SB_PROBE] < cut:
            cut = SB[o + SB_PROBE]
    return cut


@numba.njit(cache=True)
def renumber(
    cut: int,
    rows: int,
    R: Any,
    H: Any,
    n_heap: int,
    TQ: Any,
    C: Any,
    NV: Any,
    CQ: Any,
    PRL: Any,
    SB: Any,
) -> None:
    """Subtract ``cut`` from every row index the loop keeps (module docstring), before rows
    ``cut .. rows - 1`` move down to ``0 ..``: ``H_I`` and ``H_PRIO`` of request events (in
    the heap and the wait timeouts' ring ``TQ``), the
    wait lists' heads and tails (``NV``) and links (``R_WNEXT``), the concurrency queues'
    heads and tails (``CQ``) and links (``PRL[2]``), the store breakers' probes (``SB``). A
    link below ``cut`` is stale (its row left every list: the loop never reads it again) and
    becomes -1."""
    shift = cut * PRIO_STRIDE
    for j in range(n_heap):
        if _row_event(H[j, H_KIND]):
            H[j, H_I] -= cut
            H[j, H_PRIO] -= shift
    j = C[C_TQ_HEAD]
    for _ in range(C[C_TQ_LEN]):  # wait timeouts: request events all
        TQ[j, TQ_I] -= cut
        TQ[j, TQ_PRIO] -= shift
        j = ring_next(j, TQ.shape[0])
    for nd in range(NV.shape[0]):
        for col in (N_WHEAD, N_WTAIL):
            if NV[nd, col] >= 0:
                NV[nd, col] -= cut
    for e in range(CQ.shape[1]):
        for side in range(2):
            if CQ[side, e] >= 0:
                CQ[side, e] -= cut
    for o in range(0, SB.shape[0], SB_COLS):
        if SB[o + SB_PROBE] >= 0:
            SB[o + SB_PROBE] -= cut
    for i in range(cut, rows):
        w = R[i, R_WNEXT]
        R[i, R_WNEXT] = w - cut if w >= cut else -1
    if PRL.shape[1] >= rows:  # else the placeholder (no guard layer)
        for i in range(cut, rows):
            for pos in range(PRL.shape[2]):
                w = PRL[2, i, pos]
                PRL[2, i, pos] = w - cut if w >= cut else -1


@numba.njit(cache=True, nogil=True)
def _shift_left(table: Any, by: int, length: int) -> None:
    """In every row of the 2-D ``table``, columns ``by .. by + length - 1`` moved to
    ``0 .. length - 1`` (a forward copy: a column is read before it is overwritten)."""
    for r in range(table.shape[0]):
        for i in range(length):
            table[r, i] = table[r, i + by]


def move_rows_down(table: Any, axis: int, cut: int, rows: int) -> None:
    """Rows ``cut .. rows - 1`` of ``table`` along ``axis`` moved to ``0 .. rows - cut - 1``,
    in place: no temporary (numpy's overlapping assignment copies the source first, one
    more pass and fresh pages over every row still in flight, each step). ``table`` is
    C-contiguous, so the axes after ``axis`` travel with each row."""
    if not table.flags.c_contiguous:
        raise ValueError("move_rows_down needs a C-contiguous table")
    inner = 1
    for size in table.shape[axis + 1 :]:
        inner *= int(size)
    outer = 1
    for size in table.shape[:axis]:
        outer *= int(size)
    _shift_left(table.reshape(outer, -1), cut * inner, (rows - cut) * inner)


@numba.njit(cache=True, nogil=True)
def take_columns(R: Any, rows: int, cols: Any) -> Any:
    """Columns ``cols`` of ``R``'s rows ``0 .. rows - 1``, one contiguous row each (int64
    ``(len(cols), rows)``): one pass over the rows (a gather per column would read every
    row's cache line once per column)."""
    out = np.empty((cols.shape[0], rows), dtype=np.int64)
    for i in range(rows):
        for j in range(cols.shape[0]):
            out[j, i] = R[i, cols[j]]
    return out


@numba.njit(cache=True, nogil=True)
def prune_timeouts(TQ: Any, C: Any, R: Any) -> None:
    """Drop the wait timeouts on the ring whose request no longer waits (``heaps.stale``:
    each would change nothing when it fires), keeping the others in order: a stale timeout
    would otherwise pin its row until it fires, ``pool_max_wait`` after the wait began."""
    n = TQ.shape[0]
    src = C[C_TQ_HEAD]
    dst = src
    kept = 0
    for _ in range(C[C_TQ_LEN]):
        if not stale(TQ, src, R):
            if dst != src:
                for col in range(TQ.shape[1]):
                    TQ[dst, col] = TQ[src, col]
            dst = ring_next(dst, n)
            kept += 1
        src = ring_next(src, n)
    C[C_TQ_LEN] = kept
