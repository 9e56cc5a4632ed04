"""The sliding log's state in the compiled runner: a ring per key that grows, in a pool.

:class:`~ratesim.algorithms.sliding_log.SlidingWindowLog`'s own state is ``limit + 2``
integers per key (a ring of ``limit`` stamps), the layout the stores and the Lua keep. The
compiled runner instead gives a key a block in a pool that holds only what the key has
admitted: ``count, head, cap`` then a ring of ``cap`` stamps (see
:func:`~ratesim.algorithms.sliding_log.sliding_ring_kernel`, the original kernel's twin on
this block). A key's entry in its layer's state table (``STATE`` or ``GSTATE``, one integer for
a sliding log) is its block's offset in the pool, 0 before its first request.

A ring starts at ``min(limit, FIRST_CAP)`` stamps and doubles (clamped at ``limit``): before
each kernel call :func:`ensure_log_room` makes sure the ring can hold ``min(limit, count +
cost)`` entries, the most an admission leaves, moving the entries (oldest first) to a new block
elsewhere in the pool when it cannot. A key that admitted ``a`` cost units so holds
``min(limit, a)`` entries in a ring of fewer than ``2 a`` stamps (or ``FIRST_CAP``), instead of
``limit + 2`` integers. A ring a key outgrew (its capacity ``FIRST_CAP << k``, as every ring
that can grow) goes on the free list of its class ``k`` and is the next ring of that capacity
any key of the pool needs; only rings no free one fits are taken at the pool's end.

The pools travel in one numba typed list (``World.LOGS``): ``NODE_POOL`` for the node-side
tables (node layers, local fallbacks), ``REDIS_POOL`` for the Redis-side ones, then one per
failover (``SNAP_POOLS + j``): the Redis pool as failover ``j``'s snapshot saw it. A pool grows
(doubles) inside the compiled loop when a block does not fit, so there is no size to guess
beforehand. The pool's header holds ``pool[POOL_USED]``, where its next block at the end goes,
and the free lists' heads ``pool[POOL_FREE + k]`` (a free block's first integer links the next,
0 ends the list); a snapshot and its restore carry the header, so blocks made after the
snapshot are given back.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from numba.typed import List

from ..algorithms.sliding_log import (
    MAX_LOG_LIMIT,
    RING_CAP,
    RING_COUNT,
    RING_HEAD,
    RING_STAMPS,
    sliding_log_kernel,
    sliding_ring_kernel,
)
from .kernels import kernel_code, rate_kernel

#: The pools of ``World.LOGS`` by index (``SNAP_POOLS + j``: failover ``j``'s snapshot).
NODE_POOL, REDIS_POOL, SNAP_POOLS = 0, 1, 2
#: A new key's ring: this many stamps (or ``limit`` if smaller), doubled when outgrown.
FIRST_CAP = 8
#: ``pool[POOL_USED]``: the offset of the pool's next block at its end; ``pool[POOL_FREE + k]``:
#: the first free ring of capacity ``FIRST_CAP << k`` (0: none), for every ``k`` a ring that can
#: still grow may have (``FIRST_CAP << k < MAX_LOG_LIMIT``); blocks start at ``POOL_HEAD``.
POOL_USED, POOL_FREE = 0, 1
#: ``pool[POOL_USED]`` of an array the pool grew out of: bind ``LOGS[w]`` again.
STALE = -1
FREE_CLASSES = next(k for k in range(64) if FIRST_CAP << k >= MAX_LOG_LIMIT)
POOL_HEAD = POOL_FREE + FREE_CLASSES
#: ``rate_kernel``'s code for the sliding log: the kernel :func:`table_kernel` runs on a ring.
LOG_CODE = kernel_code(sliding_log_kernel)

_ring = numba.njit(cache=True)(sliding_ring_kernel)
#: The ring kernel compiled (``ratesim.fast.loop.run`` calls it when a ring has room).
ring_kernel = _ring


def is_log(alg: Any) -> bool:
    """True when ``alg``'s state lives in a pool here (a sliding log)."""
    return getattr(alg, "kernel", None) is sliding_log_kernel


def table_size(alg: Any) -> int:
    """Integers per key ``alg`` takes in the compiled runner's state tables: one (the ring's
    offset) for a sliding log, its ``state_size`` otherwise."""
    return 1 if is_log(alg) else int(alg.state_size)


def first_rings(keys: int, algs: list[Any]) -> int:
    """Integers for a first ring (of the largest of ``algs``, the sliding logs among them) for
    each of ``keys``: what a pool starts with room for (0 when none is a sliding log)."""
    caps = [min(int(a.params[0]), FIRST_CAP) for a in algs if is_log(a)]
    return keys * (RING_STAMPS + max(caps)) if caps else 0


@numba.njit(cache=True)
def _empty_pool(ints: int) -> Any:
    pool = np.zeros(POOL_HEAD + ints, dtype=np.int64)
    pool[POOL_USED] = POOL_HEAD
    return pool


@numba.njit(cache=True)
def new_pools(node_ints: int, redis_ints: int, failovers: int) -> Any:
    """The typed list of pools a run starts with (``World.LOGS``): the node-side and the
    Redis-side pools with room for ``node_ints`` and ``redis_ints`` integers of rings, then an
    empty snapshot per failover (a restore before any snapshot brings back an empty pool)."""
    pools = List()
    pools.append(_empty_pool(node_ints))
    pools.append(_empty_pool(redis_ints))
    for _ in range(failovers):
        pools.append(_empty_pool(0))
    return pools


@numba.njit(cache=True)
def ring_capacity(limit: int, need: int) -> int:
    """The smallest ring of the doubling sequence ``min(limit, FIRST_CAP)``, doubled and
    clamped at ``limit``, that holds ``need`` (<= ``limit``) stamps."""
    cap = min(limit, FIRST_CAP)
    while cap < need:
        cap = min(limit, 2 * cap)
    return cap


@numba.njit(cache=True)
def _grow_pool(LOGS: Any, w: int, end: int) -> Any:
    """Pool ``w`` with room for ``end`` integers at least (doubled; its contents copied); the
    old array is marked stale (``POOL_USED`` -1) for callers that hold it bound."""
    old = LOGS[w]
    pool = np.zeros(max(end, 2 * old.shape[0]), dtype=np.int64)
    pool[: old.shape[0]] = old
    old[POOL_USED] = STALE
    LOGS[w] = pool
    return pool


@numba.njit(cache=True)
def _free_class(cap: int) -> int:
    """``k`` when ``cap == FIRST_CAP << k`` for a free-list class, else -1."""
    k = 0
    c = FIRST_CAP
    while c < cap and k < FREE_CLASSES - 1:
        c *= 2
        k += 1
    return k if c == cap else -1


@numba.njit(cache=True)
def _take_block(LOGS: Any, w: int, cap: int) -> int:
    """A block for a ring of ``cap`` stamps in pool ``w``: a free one of its class, else one
    at the pool's end (the pool grown when it is full)."""
    pool = LOGS[w]
    k = _free_class(cap)
    if k >= 0 and pool[POOL_FREE + k]:
        nb = pool[POOL_FREE + k]
        pool[POOL_FREE + k] = pool[nb]
        return nb
    nb = pool[POOL_USED]
    end = nb + RING_STAMPS + cap
    if end > pool.shape[0]:
        pool = _grow_pool(LOGS, w, end)
    pool[POOL_USED] = end
    return nb


@numba.njit(cache=True, inline="always")
def ring_has_room(count: int, cap: int, limit: int, cost: int) -> bool:
    """Whether a ring of ``cap`` stamps holding ``count`` can take the admission of ``cost``
    without growing: it needs ``min(limit, count + cost)`` slots (none beyond ``count`` for a
    cost above ``limit``, which is refused). Scalars only, so the loop's sites that write
    :func:`table_kernel` out call it without a reference count."""
    need = count + cost if cost <= limit else 0
    return cap >= min(need, limit)


@numba.njit(cache=True, inline="always")
def _ring_with_room(pool: Any, S: Any, s0: int, limit: int, cost: int) -> int:
    """The offset of the ring of the key whose table entry is ``S[s0]`` if it can hold
    ``min(limit, count + cost)`` entries already, else 0 (no ring yet, or too small)."""
    b = S[s0]
    if b == 0:
        return 0
    return b if ring_has_room(pool[b + RING_COUNT], pool[b + RING_CAP], limit, cost) else 0


@numba.njit(cache=True)
def _make_room(LOGS: Any, w: int, S: Any, s0: int, limit: int, cost: int) -> int:
    """:func:`ensure_log_room` when the key has no ring or one too small: a first ring, or
    the entries moved (oldest first) to a larger one, the old one freed; ``S[s0]`` updated."""
    pool = LOGS[w]
    b = S[s0]
    count = pool[b + RING_COUNT] if b else 0
    need = count + cost if cost <= limit else count
    cap = ring_capacity(limit, max(min(need, limit), 1))
    nb = _take_block(LOGS, w, cap)
    pool = LOGS[w]  # grown, maybe
    pool[nb + RING_COUNT] = count
    pool[nb + RING_HEAD] = count % cap
    pool[nb + RING_CAP] = cap
    if b:
        old_cap = pool[b + RING_CAP]
        first = pool[b + RING_HEAD] - count + old_cap  # the oldest entry's slot (+ old_cap)
        for k in range(count):
            pool[nb + RING_STAMPS + k] = pool[b + RING_STAMPS + (first + k) % old_cap]
        c = _free_class(old_cap)  # every ring that can grow has a class; -1 only if none
        if c >= 0:
            pool[b] = pool[POOL_FREE + c]
            pool[POOL_FREE + c] = b
    S[s0] = nb
    return nb


@numba.njit(cache=True)
def ensure_log_room(LOGS: Any, w: int, S: Any, s0: int, limit: int, cost: int) -> int:
    """The offset in pool ``w`` of the ring of the key whose table entry is ``S[s0]``, made
    able to hold ``min(limit, count + cost)`` entries first (a new key gets its first ring;
    a ring too small is moved, oldest entry first, to a larger block, and ``S[s0]``
    updated). A cost above ``limit`` is rejected without writing: no room for it."""
    b = _ring_with_room(LOGS[w], S, s0, limit, cost)
    return b if b else _make_room(LOGS, w, S, s0, limit, cost)


@numba.njit(cache=True)
def _log_with_room(
    P: Any, p0: int, S: Any, s0: int, LOGS: Any, w: int, now: int, cost: int
) -> tuple[int, int, int, int]:
    """:func:`table_kernel` for a sliding log whose ring needs room made (or whose caller's
    pool binding is stale): the pool read from ``LOGS``, room made, then the kernel."""
    b0 = ensure_log_room(LOGS, w, S, s0, P[p0], cost)
    return _ring(P, LOGS[w], now, cost, p0, b0)


#: :func:`table_kernel`'s sliding-log path when room must be made (for callers that write
#: ``table_kernel`` out, ``ratesim.fast.loop.run``).
log_with_room = _log_with_room


@numba.njit(cache=True, inline="always")
def table_kernel(
    kind: int,
    P: Any,
    p0: int,
    S: Any,
    s0: int,
    pool: Any,
    LOGS: Any,
    w: int,
    now: int,
    cost: int,
) -> tuple[int, int, int, int]:
    """``rate_kernel`` on the key whose state table entry is ``S[s0]``: a sliding log's ring
    is in pool ``w`` of ``LOGS`` (room made first, :func:`ensure_log_room`), any other state
    in ``S`` itself. ``pool``: the caller's binding of ``LOGS[w]``, used unless it is stale
    (the pool grew since). Measured on the flagship's sliding log alone (ns a request, best
    of 7, one process): reading the list's item each call cost about 13 ns, and this function
    called rather than inlined about 35 ns more (80 against 55, the flat ``limit + 2`` kernel's
    57); so the loop binds the pools once and again only after they grow (see
    :func:`ratesim.fast.loop.run`), this is inlined at its call sites, and the rare calls that
    need the list (room to make, a stale binding) go to a function of their own."""
    if kind == LOG_CODE:
        if pool[POOL_USED] != STALE:
            b0 = _ring_with_room(pool, S, s0, P[p0], cost)
            if b0:
                return _ring(P, pool, now, cost, p0, b0)
        return _log_with_room(P, p0, S, s0, LOGS, w, now, cost)
    return rate_kernel(kind, P, p0, S, s0, now, cost)


@numba.njit(cache=True)
def snapshot_pool(LOGS: Any, j: int) -> None:
    """Failover ``j``'s snapshot of the Redis-side pool (its used part)."""
    pool = LOGS[REDIS_POOL]
    LOGS[SNAP_POOLS + j] = pool[: pool[POOL_USED]].copy()


@numba.njit(cache=True)
def restore_pool(LOGS: Any, j: int) -> None:
    """The Redis-side pool as failover ``j``'s snapshot saw it (blocks made since given
    back: the pool's next block is where it was then)."""
    snap = LOGS[SNAP_POOLS + j]
    pool = LOGS[REDIS_POOL]
    if pool.shape[0] < snap.shape[0]:
        pool = _grow_pool(LOGS, REDIS_POOL, snap.shape[0])
    pool[: snap.shape[0]] = snap
