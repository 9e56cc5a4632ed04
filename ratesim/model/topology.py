"""Nodes that come and go (issue 13 item 3): the formulas both runners are to share.

Not yet wired into the runners. A schedule is a sorted array of change times (µs) and the live
node count from each time on; before the first change the scenario's ``nodes`` count holds.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


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


def follow_share(tokens_per_fill: int, members: int) -> int:
    """Envoy ``local_cluster_rate_limit``: each of ``members`` nodes gets
    ``ceil(tokens_per_fill / members)`` tokens per fill (integers, never below 1 member)."""
    m = members if members > 0 else 1
    return -(-tokens_per_fill // m)


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
