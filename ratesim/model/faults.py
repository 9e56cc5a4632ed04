"""Infrastructure faults as plain data: Redis outages, failovers, network partitions.

All windows are half-open in *true* time: a fault is active at ``t_us`` when
``start_us <= t_us < end_us`` (seconds in the spec, converted to the nearest µs). The engine
decides what a fault does; these specs only say when and where it is active:

* :class:`OutageSpec` — Redis (all shards, or the listed ``shards``) is down. ``"refused"``:
  connections fail at once (fast error). ``"blackhole"``: calls get no answer, so every call
  waits for the caller's timeout.
* :class:`FailoverSpec` — at ``at_s`` a replica is promoted: writes acknowledged in the last
  ``lost_writes_ms`` before it are lost (asynchronous replication), the server clock steps by
  ``clock_step_ms`` (the new primary's offset), and the script cache is emptied when
  ``flush_scripts`` (the first EVALSHA after it costs NOSCRIPT + reload).
* :class:`PartitionSpec` — the gateway ``nodes`` listed cannot reach Redis during the window;
  the other nodes carry on.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationInfo, field_validator

from ..bounds import MAX_NODES, DelayMs, RunS
from .clock import SpecModel, ms_to_us, s_to_us

NodeIndex = Annotated[int, Field(ge=0, lt=MAX_NODES)]
#: Redis Cluster has 16384 hash slots, so at most that many shards.
ShardIndex = Annotated[int, Field(ge=0, lt=16384)]


def _check_end(v: float, info: ValidationInfo) -> float:
    start = info.data.get("start_s")
    # Compared in whole µs, the unit the window is applied in, so it is never empty.
    if start is not None and s_to_us(v) <= s_to_us(start):
        raise ValueError(f"end_s must be > start_s ({start}) by at least 1 µs, got {v}")
    return v


def _check_unique(name: str, values: list[int] | None) -> list[int] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat an index, got {values}")
    return values


class _Window(SpecModel):
    """A half-open window ``[start_s, end_s)`` of true time, seconds."""

    start_s: Annotated[RunS, Field(ge=0.0)]
    end_s: RunS

    @field_validator("end_s")
    @classmethod
    def _end_after_start(cls, v: float, info: ValidationInfo) -> float:
        return _check_end(v, info)

    @property
    def start_us(self) -> int:
        """Window start, µs (inclusive)."""
        return s_to_us(self.start_s)

    @property
    def end_us(self) -> int:
        """Window end, µs (exclusive)."""
        return s_to_us(self.end_s)

    def active(self, t_us: int) -> bool:
        """True when ``start_us <= t_us < end_us``."""
        return self.start_us <= t_us < self.end_us


class OutageSpec(_Window):
    """Redis unreachable during ``[start_s, end_s)`` on ``shards`` (``None``: every shard)."""

    kind: Literal["refused", "blackhole"] = "refused"
    shards: Annotated[list[ShardIndex], Field(min_length=1, max_length=16384)] | None = None

    @field_validator("shards")
    @classmethod
    def _unique_shards(cls, v: list[int] | None) -> list[int] | None:
        return _check_unique("shards", v)

    def covers(self, t_us: int, shard: int) -> bool:
        """True when this outage hits ``shard`` at true time ``t_us``."""
        return self.active(t_us) and (self.shards is None or shard in self.shards)


class FailoverSpec(SpecModel):
    """A replica promotion at ``at_s`` with its losses (see the module docstring)."""

    at_s: Annotated[RunS, Field(ge=0.0)]
    lost_writes_ms: Annotated[DelayMs, Field(ge=0.0)] = 0.0
    #: Bounded with the Redis clock's own shift (``RedisSpec``: at most 2**51 µs in total).
    clock_step_ms: float = 0.0
    flush_scripts: bool = True

    @property
    def at_us(self) -> int:
        """Failover instant, µs of true time."""
        return s_to_us(self.at_s)

    @property
    def lost_writes_us(self) -> int:
        """Writes acknowledged in ``[at_us - lost_writes_us, at_us)`` are lost."""
        return ms_to_us(self.lost_writes_ms)


class PartitionSpec(_Window):
    """Gateway ``nodes`` (0-based) cut off from Redis during ``[start_s, end_s)``."""

    nodes: Annotated[list[NodeIndex], Field(min_length=1, max_length=MAX_NODES)]

    @field_validator("nodes")
    @classmethod
    def _unique_nodes(cls, v: list[int]) -> list[int]:
        _check_unique("nodes", v)
        return v


def outage_at(outages: list[OutageSpec], t_us: int, shard: int) -> str | None:
    """The kind (``"refused"`` / ``"blackhole"``) of the first listed outage hitting ``shard``
    at true time ``t_us`` (µs), or ``None`` when the shard is up."""
    for outage in outages:
        if outage.covers(t_us, shard):
            return outage.kind
    return None


def partitioned(partitions: list[PartitionSpec], t_us: int, node: int) -> bool:
    """True when gateway ``node`` cannot reach Redis at true time ``t_us`` (µs)."""
    return any(p.active(t_us) and node in p.nodes for p in partitions)


# --- the lookups both runners make, as int64 tables (numba-compatible plain Python) ----------

#: What :func:`outage_kind` says of a shard: reachable, refusing connections, or silent.
OUTAGE_UP, OUTAGE_REFUSED, OUTAGE_BLACKHOLE = 0, 1, 2


class FaultTables(NamedTuple):
    """A scenario's outages and partitions as int64 tables (times in µs of true time)."""

    outages: npt.NDArray[np.int64]  # (k, 3): start_us, end_us, OUTAGE_REFUSED / _BLACKHOLE
    outage_shards: npt.NDArray[np.int64]  # (k, shards): 1 where outage o hits the shard
    parts: npt.NDArray[np.int64]  # (m, 2): start_us, end_us
    part_nodes: npt.NDArray[np.int64]  # (m, nodes): 1 where partition p cuts the node off


def fault_tables(scenario: Any) -> FaultTables:
    """The :class:`FaultTables` of ``scenario`` (a ``Scenario``), outages in listed order (the
    first listed covering one wins)."""
    redis = scenario.redis
    nodes = scenario.topology.slots  # every node the run starts (topology.changes)
    n_shards = redis.shards if redis is not None else 1
    outages_list = list(redis.outages) if redis is not None else []
    outages = np.zeros((len(outages_list), 3), dtype=np.int64)
    outage_shards = np.zeros((len(outages_list), n_shards), dtype=np.int64)
    for o, outage in enumerate(outages_list):
        kind = OUTAGE_REFUSED if outage.kind == "refused" else OUTAGE_BLACKHOLE
        outages[o] = (outage.start_us, outage.end_us, kind)
        for sh in range(n_shards):
            outage_shards[o, sh] = outage.shards is None or sh in outage.shards
    parts_list = list(scenario.network.partitions)
    parts = np.zeros((len(parts_list), 2), dtype=np.int64)
    part_nodes = np.zeros((len(parts_list), nodes), dtype=np.int64)
    for p, part in enumerate(parts_list):
        parts[p] = (part.start_us, part.end_us)
        for nd in part.nodes:
            if nd < nodes:
                part_nodes[p, nd] = 1
    return FaultTables(outages, outage_shards, parts, part_nodes)


def outage_kind(outages: Any, outage_shards: Any, t_us: int, shard: int) -> int:
    """``OUTAGE_UP``, or the kind of the first listed outage covering ``shard`` at true time
    ``t_us`` (µs) - :func:`outage_at` over :class:`FaultTables` (numba-compatible)."""
    for o in range(outages.shape[0]):
        if outages[o, 0] <= t_us < outages[o, 1] and outage_shards[o, shard]:
            return int(outages[o, 2])
    return OUTAGE_UP


def is_partitioned(parts: Any, part_nodes: Any, t_us: int, node: int) -> bool:
    """True when gateway ``node`` cannot reach Redis at true time ``t_us`` (µs) -
    :func:`partitioned` over :class:`FaultTables` (numba-compatible)."""
    # a loop, not any(generator): numba compiles loops
    for p in range(parts.shape[0]):  # noqa: SIM110
        if parts[p, 0] <= t_us < parts[p, 1] and part_nodes[p, node]:
            return True
    return False
