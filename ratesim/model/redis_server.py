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
    commands still there at arrival ``a_k`` are ``k`` minus those finished by ``a_k``.
    """
    a = np.asarray(at, dtype=np.int64)
    f = np.asarray(fin, dtype=np.int64)
    depth = np.zeros(len(a), dtype=np.int64)
    groups = [np.arange(len(a))] if shard is None else None
    if groups is None:
        sh = np.asarray(shard, dtype=np.int64)
        groups = [np.flatnonzero(sh == s) for s in np.unique(sh)]
    for idx in groups:
        k = np.arange(len(idx))
        depth[idx] = k - np.searchsorted(f[idx], a[idx], side="right")
    return depth
