"""Traffic sources: the processes that bring requests to the gateway.

:func:`scenario_traffic` feeds a scenario's pre-generated arrivals, every request of one
instant in arrival order, before anything else of that instant but failovers and connection
returns (``PRIO_ARRIVAL``). A user's own source is any SimPy process that calls
:meth:`ratesim.des.Gateway.handle` - see the guide (``docs/guides/simpy-components.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from ..ordering import PRIO_ARRIVAL
from .events import At
from .gateway import Gateway


def scenario_traffic(
    env: simpy.Environment,
    gateway: Gateway,
    time_us: np.ndarray,
    then: Callable[[int], None] | None = None,
) -> Generator[simpy.Event, Any, None]:
    """Submit rows ``0 .. len(time_us) - 1`` of the gateway's request table at their arrival
    instants ``time_us`` (µs, sorted), one batch per distinct instant; ``then(t)`` after each
    batch (the retries due at ``t`` arrive next, :meth:`ratesim.des.clients.Clients.arrive`)."""
    if len(time_us) == 0:
        return
    instants, starts = np.unique(time_us, return_index=True)
    bounds = [*starts.tolist(), len(time_us)]
    for b, t in enumerate(instants.tolist()):
        yield At(env, t, PRIO_ARRIVAL)
        for i in range(bounds[b], bounds[b + 1]):
            gateway.submit(i)
        if then is not None:
            then(t)
