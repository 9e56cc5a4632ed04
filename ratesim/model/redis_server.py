"""The Redis server model's pure arithmetic (the engines own the events).

One shard is one thread executing commands in arrival order, each for its service time:
Lindley's recursion ``start = max(arrival, busy_until)``, ``finish = start + service``. So a
shard saturates at ``1 / mean service`` commands per second and beyond that its queue - and
every caller's latency - grows without bound. The engine runs that recursion inline, per
command, in its hot path; this module keeps the after-the-fact arithmetic. All times are
integer microseconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: What a failover event does: save the Redis state (the replica's view), or bring it back.
SNAPSHOT, RESTORE = 0, 1


def failover_schedule(failovers: Sequence[Any]) -> list[tuple[int, int, int]]:
    """``(at_us, op, j)`` for the failovers (``FailoverSpec``; ``j``: index in ``failovers``),
    in the order both runners post them, all at ``PRIO_FAILOVER``: for each failover in order
    of ``at_us`` (stable), its ``SNAPSHOT`` at ``max(0, at_us - lost_writes_us)`` (writes
    acknowledged after it are lost), then its ``RESTORE`` at ``at_us``."""
    order = sorted(range(len(failovers)), key=lambda j: failovers[j].at_us)
    out: list[tuple[int, int, int]] = []
    for j in order:
        f = failovers[j]
        out.append((max(0, f.at_us - f.lost_writes_us), SNAPSHOT, j))
        out.append((f.at_us, RESTORE, j))
    return out


def queue_depths(
    at: Sequence[int] | np.ndarray,
    fin: Sequence[int] | np.ndarray,
    shard: Sequence[int] | np.ndarray | None,
) -> np.ndarray:
    """Commands ahead of each command when it reached its shard (waiting or in service).

    Commands are listed in execution order; on one shard (FIFO) finishes never decrease, so the
    commands still there at arrival ``a_k`` are ``k`` minus those finished by ``a_k``: a
    binary search of ``a_k`` in the shard's finishes. When arrivals never decrease either (the
    runners' logs), the compiled :func:`depths_merged` makes one merge pass instead.
    """
    a = np.ascontiguousarray(at, dtype=np.int64)
    f = np.ascontiguousarray(fin, dtype=np.int64)
    sh = None if shard is None else np.ascontiguousarray(shard, dtype=np.int64)
    if len(a) and (sh is None or 0 <= int(sh.min()) <= int(sh.max()) < len(a)):
        from ..fast.kernels import depths_merged as _merged

        depth = np.empty(len(a), dtype=np.int64)
        n_shards = 1 if sh is None else int(sh.max()) + 1
        if _merged(a, f, np.zeros(0, dtype=np.int64) if sh is None else sh, n_shards, depth):
            return depth
    return _depths_searched(a, f, sh)


def _depths_searched(a: np.ndarray, f: np.ndarray, sh: np.ndarray | None) -> np.ndarray:
    """:func:`queue_depths` by a binary search per command (any order of arrivals)."""
    depth = np.zeros(len(a), dtype=np.int64)
    groups = [np.arange(len(a))] if sh is None else [np.flatnonzero(sh == s) for s in np.unique(sh)]
    for idx in groups:
        k = np.arange(len(idx))
        depth[idx] = k - np.searchsorted(f[idx], a[idx], side="right")
    return depth


def depths_merged(at: Any, fin: Any, shard: Any, n_shards: int, depth: Any) -> bool:
    """:func:`queue_depths` into ``depth`` by one merge per shard (numba-compatible; compiled
    as ``ratesim.fast.kernels.depths_merged``): each shard's finished count only grows while
    its arrivals do. ``shard`` empty: one shard. Returns ``False`` (``depth`` unspecified)
    when a shard's arrivals or finishes decrease somewhere: then the merge is not the binary
    search's answer and the caller searches instead."""
    n = at.shape[0]
    one = shard.shape[0] == 0
    # each shard's commands in order (a counting sort), then a merge over each
    start = np.zeros(n_shards + 1, dtype=np.int64)
    for k in range(n):
        start[(0 if one else shard[k]) + 1] += 1
    for s in range(n_shards):
        start[s + 1] += start[s]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for k in range(n):
        s = 0 if one else shard[k]
        order[fill[s]] = k
        fill[s] += 1
    for s in range(n_shards):
        lo, hi = start[s], start[s + 1]
        done = lo  # the shard's commands finished by the current arrival: order[lo:done]
        for q in range(lo, hi):
            k = order[q]
            if q > lo and (at[k] < at[order[q - 1]] or fin[k] < fin[order[q - 1]]):
                return False
            while done < hi and fin[order[done]] <= at[k]:
                done += 1
            depth[k] = (q - lo) - (done - lo)
    return True
