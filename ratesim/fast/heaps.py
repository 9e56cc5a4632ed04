"""The fast engine's two heaps: events keyed ``(time, priority, sequence)`` (one row of ``H``
per event) and, per node, the times its borrowed connections come back."""

from __future__ import annotations

from typing import Any

import numba

from .layout import (
    C_HEAP,
    C_LAYERS,
    C_RHEAP_TOTAL,
    C_SEQ,
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
    N_RLEN,
)


@numba.njit(cache=True)
def less(H: Any, x: int, y: int) -> bool:
    if H[x, H_AT] != H[y, H_AT]:
        return H[x, H_AT] < H[y, H_AT]
    if H[x, H_PRIO] != H[y, H_PRIO]:
        return H[x, H_PRIO] < H[y, H_PRIO]
    return H[x, H_SEQ] < H[y, H_SEQ]


@numba.njit(cache=True)
def swap(H: Any, x: int, y: int) -> None:
    for r in range(H_ROWS):
        tmp = H[x, r]
        H[x, r] = H[y, r]
        H[y, r] = tmp


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
    push_seq(H, C, at, prio, seq, kind, i, pos, cnow, dl)


@numba.njit(cache=True)
def push_seq(
    H: Any, C: Any, at: int, prio: int, seq: int, kind: int, i: int, pos: int, cnow: int, dl: int
) -> None:
    """Add an event keyed ``(at, prio, seq)`` with the sequence number given."""
    j = C[C_HEAP]
    if j == H.shape[0]:  # _run reserves room before each event; this is a bug, never UB
        raise RuntimeError("ratesim.fast: event heap overflow")
    C[C_HEAP] = j + 1
    H[j, H_AT] = at
    H[j, H_PRIO] = prio
    H[j, H_SEQ] = seq
    H[j, H_KIND] = kind
    H[j, H_I] = i
    H[j, H_POS] = pos
    H[j, H_CNOW] = cnow
    H[j, H_DL] = dl
    while j > 0:
        parent = (j - 1) >> 1
        if less(H, j, parent):
            swap(H, j, parent)
            j = parent
        else:
            break


@numba.njit(cache=True)
def pop(H: Any, C: Any) -> None:
    """Remove the earliest event (row 0), after the caller has read it."""
    last = C[C_HEAP] - 1
    C[C_HEAP] = last
    if last == 0:
        return
    for r in range(H_ROWS):
        H[0, r] = H[last, r]
    j = 0
    while True:
        left = 2 * j + 1
        if left >= last:
            break
        m = left
        if left + 1 < last and less(H, left + 1, left):
            m = left + 1
        if less(H, m, j):
            swap(H, m, j)
            j = m
        else:
            break


@numba.njit(cache=True)
def rheap_push(RH: Any, NV: Any, C: Any, nd: int, y: int) -> None:
    j = NV[nd, N_RLEN]
    NV[nd, N_RLEN] = j + 1
    C[C_RHEAP_TOTAL] += 1
    RH[nd, j] = y
    while j > 0:
        parent = (j - 1) >> 1
        if RH[nd, j] < RH[nd, parent]:
            tmp = RH[nd, j]
            RH[nd, j] = RH[nd, parent]
            RH[nd, parent] = tmp
            j = parent
        else:
            break


@numba.njit(cache=True)
def rheap_pop(RH: Any, NV: Any, C: Any, nd: int) -> None:
    last = NV[nd, N_RLEN] - 1
    NV[nd, N_RLEN] = last
    C[C_RHEAP_TOTAL] -= 1
    RH[nd, 0] = RH[nd, last]
    j = 0
    while True:
        left = 2 * j + 1
        if left >= last:
            break
        m = left
        if left + 1 < last and RH[nd, left + 1] < RH[nd, left]:
            m = left + 1
        if RH[nd, m] < RH[nd, j]:
            tmp = RH[nd, m]
            RH[nd, m] = RH[nd, j]
            RH[nd, j] = tmp
            j = m
        else:
            break
