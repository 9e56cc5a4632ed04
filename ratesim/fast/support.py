"""What the fast engine models: :func:`unsupported` says why it cannot run a scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model.clock import NodeClock
from ..policy import BACKEND_KINDS
from .kernels import KERNELS

if TYPE_CHECKING:
    from ..compile import CompiledLayer
    from ..scenario import Scenario

#: Limiter state the fast engine allocates up front, at most (integers, 8 bytes each).
MAX_STATE_INTS = 2**28


def unsupported(scenario: Scenario, layers: list[CompiledLayer]) -> str | None:
    """Why the fast engine cannot run ``scenario`` (``None`` when it can)."""
    nodes = scenario.topology.nodes
    redis = scenario.redis
    failovers = len(redis.failovers) if redis is not None else 0
    size = 0
    for cl in layers:
        spec = cl.spec
        if not supports_layer(cl) or not all(_rate_supported(a) for a in cl.local_algs or ()):
            return f"layer {spec.name!r}: algorithm {spec.algorithm.kind!r}"
        per_key = max(a.state_size for a in cl.algs)
        if spec.scope == "node":
            size += nodes * cl.n_keys * per_key
        else:
            size += (1 + failovers) * cl.n_keys * per_key  # the table and its snapshots
        if cl.local_algs:
            size += nodes * cl.n_keys * max(a.state_size for a in cl.local_algs)
    if size > MAX_STATE_INTS:
        return f"{size:,} integers of limiter state (more than {MAX_STATE_INTS:,})"
    if redis is not None and NodeClock(redis.clock).slews:
        return "a Redis clock that slews (NTP slew steps)"
    for k, clock_spec in enumerate(scenario.topology.clock_specs()):
        if NodeClock(clock_spec).slews:
            return f"node {k}'s clock slews (NTP slew steps)"
    return None


def supports_layer(cl: CompiledLayer) -> bool:
    """True when every tier's algorithm of ``cl`` has a compiled kernel here, and every new key
    starts from the state the fast engine gives it (zeros for a rate algorithm, the first
    tier's initial state for a concurrency limit or a breaker)."""
    if cl.spec.algorithm.kind in BACKEND_KINDS:
        first = cl.algs[0].new_state()
        return all(a.new_state() == first for a in cl.algs)
    return all(_rate_supported(a) for a in cl.algs)


def _rate_supported(alg: Any) -> bool:
    """A rate algorithm with a compiled kernel whose new keys start at zeros."""
    return alg.kernel in KERNELS and not any(alg.new_state())
