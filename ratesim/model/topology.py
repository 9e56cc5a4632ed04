"""Nodes that come and go (issue 13 item 3): the formulas both runners share.

A schedule is a sorted array of change times (µs, ``at_us``) and the live node count from each
time on (``nodes``); before the first change the scenario's ``nodes`` count holds. The spans
between changes are *epochs*: epoch ``e`` starts at ``at_us[e - 1]`` (epoch 0 at the run's
start), so a change takes effect at its instant (half-open, like fault windows).

**Slots.** A node that joins is a new gateway process with its own, fresh state (full local
buckets); a node that leaves takes its state with it. So nodes are numbered by *slot*: the
``base`` nodes are slots ``0 .. base-1``, every node added by a scale-out gets the next unused
slot, and a scale-in removes the most recently added live nodes first (what a Kubernetes
ReplicaSet does by default: the newest pods go first). A slot is never reused, so a node added
after a scale-in starts full even where an earlier node stood. The load balancer picks a
*position* ``0 .. live-1`` and :func:`slot_table` says which slot stands there in each epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba.extending import register_jitable

#: Envoy ``local_cluster_rate_limit`` on a continuous bucket: the rate is shared as tokens per
#: fill over a 1 s fill (µs); its token unit, common to every member count (see follow_params).
FOLLOW_CONTINUOUS_UNIT = 1_000_000


def live_nodes_at(
    t_us: int, base_nodes: int, at_us: npt.NDArray[np.int64], nodes: npt.NDArray[np.int64]
) -> int:
    """The live node count at ``t_us`` (µs): the last change with ``at_us <= t_us`` wins.

    A change takes effect at its instant (half-open, like fault windows).
    """
    n = base_nodes
    for i in range(at_us.shape[0]):
        if at_us[i] <= t_us:
            n = int(nodes[i])
        else:
            break
    return n


def epoch_at(t_us: int, at_us: npt.NDArray[np.int64]) -> int:
    """The epoch at ``t_us`` (µs): how many changes have taken effect (``at_us <= t_us``).

    Numba-compatible (the compiled runner calls it per decision of a ``follow`` layer)."""
    e = 0
    for i in range(at_us.shape[0]):
        if at_us[i] <= t_us:
            e = i + 1
        else:
            break
    return e


def epoch_counts(base_nodes: int, nodes: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The live node count of each epoch: ``[base, nodes[0], nodes[1], ...]`` (int64)."""
    return np.concatenate([[base_nodes], np.asarray(nodes, dtype=np.int64)]).astype(np.int64)


def slot_fills(
    base_nodes: int, nodes: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(keys, slot)``: each time a position gets a new node, ``keys = position * epochs +
    epoch`` (sorted) and the slot it gets; one entry per slot, so the size is the number of
    nodes the run starts, whatever the schedule (see the module docstring: new nodes take fresh
    slots, a scale-in drops the newest first)."""
    counts = epoch_counts(base_nodes, nodes)
    n_epochs = len(counts)
    keys = [p * n_epochs for p in range(base_nodes)]
    live = base_nodes
    for e in range(1, n_epochs):
        n = int(counts[e])
        keys += [p * n_epochs + e for p in range(live, n)]
        live = n
    k = np.array(keys, dtype=np.int64)
    # slots are numbered in the order nodes start: by epoch, then position
    start_order = np.lexsort((k // n_epochs, k % n_epochs))
    slot = np.empty(len(k), dtype=np.int64)
    slot[start_order] = np.arange(len(k), dtype=np.int64)
    order = np.argsort(k, kind="stable")
    return k[order], slot[order]


def slots_at(
    epoch: npt.NDArray[np.int64],
    position: npt.NDArray[np.int64],
    base_nodes: int,
    nodes: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """The slot at each ``position`` (live, ``< the epoch's count``) in each ``epoch``: the last
    node that position got at or before the epoch (:func:`slot_fills`)."""
    keys, slot = slot_fills(base_nodes, nodes)
    n_epochs = len(nodes) + 1
    q = np.asarray(position, dtype=np.int64) * n_epochs + np.asarray(epoch, dtype=np.int64)
    return slot[np.searchsorted(keys, q, side="right") - 1]


@register_jitable
def slot_of(keys: Any, slot: Any, n_epochs: int, epoch: int, position: int) -> int:
    """:func:`slots_at` for one ``(epoch, position)`` on :func:`slot_fills`' tables
    (numba-compatible: the compiled runner places a retry with it)."""
    return int(slot[np.searchsorted(keys, position * n_epochs + epoch, side="right") - 1])


def slot_table(base_nodes: int, nodes: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], int]:
    """``(slot_of, slots)``: ``slot_of[e, p]`` is the slot at position ``p`` in epoch ``e``
    (-1 past the epoch's live count) and ``slots`` the number of slots ever used: the whole
    table of :func:`slots_at`, for looking at a small schedule (it is epochs x nodes large)."""
    counts = epoch_counts(base_nodes, nodes)
    out = np.full((len(counts), int(counts.max())), -1, dtype=np.int64)
    for e, n in enumerate(counts):
        pos = np.arange(int(n), dtype=np.int64)
        out[e, : int(n)] = slots_at(np.full(int(n), e), pos, base_nodes, nodes)
    return out, len(slot_fills(base_nodes, nodes)[0])


def follow_share(tokens_per_fill: int, members: int) -> int:
    """Envoy ``local_cluster_rate_limit``: each of ``members`` nodes gets
    ``ceil(tokens_per_fill / members)`` tokens per fill (integers, never below 1 member)."""
    m = members if members > 0 else 1
    return -(-tokens_per_fill // m)


def follow_params(params: tuple[int, ...], rate_per_s: float, members: int) -> tuple[int, ...]:
    """A token bucket's kernel parameters (``ratesim.algorithms.token_bucket``) with its
    refill shared over ``members`` nodes as Envoy's ``local_cluster_rate_limit`` does.

    Ticker refill: ``tokens_per_fill`` becomes ``ceil(tokens_per_fill / members)``; the
    capacity (``max_tokens``) stays. Continuous refill: the rate (whole tokens per second,
    read as tokens per fill of a 1 s fill) becomes ``ceil(rate / members)`` per second, on
    the token unit :data:`FOLLOW_CONTINUOUS_UNIT` whatever the member count, so a bucket's
    state stays valid when the count changes under it (the kernel's decisions do not depend on
    the unit: scaling unit and rate by one factor changes none of its ceilings or floors)."""
    unit, per_us, capacity, burst, fill_us, per_fill = params
    if fill_us > 0:
        return (unit, per_us, capacity, burst, fill_us, follow_share(per_fill, members))
    share = follow_share(int(rate_per_s), members)
    u = FOLLOW_CONTINUOUS_UNIT
    return (u, share, burst * u, burst, 0, 0)


def per_node_ceiling(nodes: int, burst: int, rate_per_s: int, t_us: int) -> int:
    """The most a per-node bucket layer can admit over ``t_us`` µs from full buckets:
    ``N·b + N·r·t`` (rate in tokens/s, floored to whole tokens per node)."""
    return nodes * burst + nodes * (rate_per_s * t_us // 1_000_000)


def scale_out_ceiling(n0: int, n1: int, burst: int, rate_per_s: int, at_us: int, t_us: int) -> int:
    """The ceiling over ``[0, t_us)`` when the node count goes ``n0 → n1`` (n1 > n0) at ``at_us``
    and new nodes start with full buckets: the old nodes' ceiling over the whole run plus the
    new nodes' burst ``(n1 - n0)·b`` at the scale event and their refill after it."""
    old = per_node_ceiling(n0, burst, rate_per_s, t_us)
    added = n1 - n0
    after = t_us - at_us if t_us > at_us else 0
    return old + per_node_ceiling(added, burst, rate_per_s, after)
