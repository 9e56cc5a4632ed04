"""The simulated world: pure building blocks (clocks, latency, cluster routing, faults, backend).

Names are resolved lazily (PEP 562), so importing a sibling module such as
``ratesim.model.redis_server`` does not import these, and vice versa.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # clock
    "ClockSpec": "clock",
    "ClockStep": "clock",
    "NodeClock": "clock",
    "SpecModel": "clock",
    "ms_to_us": "clock",
    "s_to_us": "clock",
    # latency
    "LatencySpec": "latency",
    "ConstantLatency": "latency",
    "UniformLatency": "latency",
    "NormalLatency": "latency",
    "LognormalLatency": "latency",
    "EmpiricalLatency": "latency",
    "MixtureLatency": "latency",
    "MixtureComponent": "latency",
    "SpikeSpec": "latency",
    "apply_spikes": "latency",
    "draws_per_sample": "latency",
    "mean_us": "latency",
    "parse_latency": "latency",
    "sample_us": "latency",
    # cluster
    "SLOTS": "cluster",
    "crc16_xmodem": "cluster",
    "key_slot": "cluster",
    "shard_of": "cluster",
    "shard_of_slot": "cluster",
    "slot_ranges": "cluster",
    # faults
    "FailoverSpec": "faults",
    "OutageSpec": "faults",
    "PartitionSpec": "faults",
    "outage_at": "faults",
    "partitioned": "faults",
    # backend
    "BackendSpec": "backend",
    "service_time_us": "backend",
}

__all__ = [
    "BackendSpec",
    "ClockSpec",
    "ClockStep",
    "ConstantLatency",
    "EmpiricalLatency",
    "FailoverSpec",
    "LatencySpec",
    "LognormalLatency",
    "MixtureComponent",
    "MixtureLatency",
    "NodeClock",
    "NormalLatency",
    "OutageSpec",
    "PartitionSpec",
    "SLOTS",
    "SpecModel",
    "SpikeSpec",
    "UniformLatency",
    "apply_spikes",
    "crc16_xmodem",
    "draws_per_sample",
    "key_slot",
    "mean_us",
    "ms_to_us",
    "outage_at",
    "parse_latency",
    "partitioned",
    "s_to_us",
    "sample_us",
    "service_time_us",
    "shard_of",
    "shard_of_slot",
    "slot_ranges",
]

if TYPE_CHECKING:
    from .backend import BackendSpec, service_time_us
    from .clock import ClockSpec, ClockStep, NodeClock, SpecModel, ms_to_us, s_to_us
    from .cluster import SLOTS, crc16_xmodem, key_slot, shard_of, shard_of_slot, slot_ranges
    from .faults import FailoverSpec, OutageSpec, PartitionSpec, outage_at, partitioned
    from .latency import (
        ConstantLatency,
        EmpiricalLatency,
        LatencySpec,
        LognormalLatency,
        MixtureComponent,
        MixtureLatency,
        NormalLatency,
        SpikeSpec,
        UniformLatency,
        apply_spikes,
        draws_per_sample,
        mean_us,
        parse_latency,
        sample_us,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ratesim.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
