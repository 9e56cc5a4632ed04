"""What the fast engine models: :func:`unsupported` says why it cannot run a scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..policy import BACKEND_KINDS
from .kernels import KERNELS

if TYPE_CHECKING:
    from ..compile import CompiledLayer
    from ..scenario import Scenario


def unsupported(scenario: Scenario, layers: list[CompiledLayer]) -> str | None:
    """Why the fast engine cannot run ``scenario`` (``None`` when it can).

    The one thing it can refuse is a layer whose algorithm has no compiled kernel here (or
    whose new keys would start from a state the fast engine does not give them: see
    :func:`supports_layer`); every built-in algorithm has one, so today this is ``None`` for
    every valid scenario. Clocks of any kind (offsets, drift, jumps, slews) and limiter state
    of any size are modelled (state is allocated per (node, key) pair the run meets)."""
    del scenario  # nothing else of the scenario is out of reach
    for cl in layers:
        if not supports_layer(cl) or not all(_rate_supported(a) for a in cl.local_algs or ()):
            return f"layer {cl.spec.name!r}: algorithm {cl.spec.algorithm.kind!r}"
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
