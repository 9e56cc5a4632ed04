"""The network between gateway nodes and Redis: per-command latencies, spikes, partitions.

Latencies are drawn per (request, global layer, direction) before the run (see
:mod:`ratesim.engine` for the draw order), with the scenario's latency spikes applied by the
request's arrival time; a partition cuts a node off Redis for a window of true time.
"""

from __future__ import annotations

from ..model.faults import FaultTables, is_partitioned


class Network:
    """Latency out and back of request ``i``'s command for global layer ``g``, in µs, and
    whether a node can reach Redis at a true instant."""

    def __init__(
        self, out_us: list[list[int]], back_us: list[list[int]], faults: FaultTables
    ) -> None:
        #: ``out_us[g][i]`` / ``back_us[g][i]``: µs from the node to Redis and back.
        self.out_us = out_us
        self.back_us = back_us
        self.faults = faults
        self._any = len(faults.parts) > 0

    def cut_off(self, node: int, t_us: int) -> bool:
        """True when ``node`` cannot reach Redis at true time ``t_us``."""
        f = self.faults
        return self._any and is_partitioned(f.parts, f.part_nodes, t_us, node)
