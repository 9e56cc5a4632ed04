"""The gateway algorithms (nginx, Kong, Envoy, Sentinel, Traefik) run on the compiled runner
and give the components' run, request by request, as node and as global layers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_engine_helpers import make_scenario

from ratesim import simulate
from ratesim.compile import compile_policy
from ratesim.fast import unsupported
from ratesim.model.clock import ClockSpec
from ratesim.model.latency import LognormalLatency
from ratesim.policy import (
    CalendarWindowSpec,
    CountingFixedWindowSpec,
    LayerSpec,
    NginxLeakySpec,
    PacerSpec,
    ReserveBucketSpec,
    WarmUpSpec,
)
from ratesim.rng import Streams
from ratesim.traffic import PopulationSpec, generate_arrivals

GATEWAY_ALGORITHMS: list[Any] = [
    NginxLeakySpec(rate=300, burst=4),
    NginxLeakySpec(rate=200, burst=6, delay=2),
    NginxLeakySpec(rate=500, burst=3, nodelay=True),
    CalendarWindowSpec(limit=20, unit="second"),
    CalendarWindowSpec(limit=15, unit="second", count_rejected=True),
    CountingFixedWindowSpec(limit=8, window_s=0.05),
    WarmUpSpec(count=400, warm_up_s=1, cold_factor=3),
    ReserveBucketSpec(rate=300.0, burst=3, max_delay_s=0.002),
    PacerSpec(count=500, max_queue_ms=5),
]


def scenario(alg: Any, scope: str) -> Any:
    layers = [
        LayerSpec(
            name="gw",
            algorithm=alg,
            scope=scope,
            key="{user}",
            timeout_ms=1.0,
            failure_mode="open",
        )
    ]
    return make_scenario(
        layers,
        nodes=2,
        duration_s=0.6,
        rate_per_s=2500.0,
        topology={"clocks": [ClockSpec(offset_ms=0.4, drift_ppm=80.0), ClockSpec()]},
        network={"latency": LognormalLatency(median_ms=0.2, sigma=0.8)},
        population=PopulationSpec(users=4),
    )


@pytest.mark.parametrize("scope", ["node", "global"])
@pytest.mark.parametrize("alg", GATEWAY_ALGORITHMS, ids=lambda a: a.kind)
def test_gateway_algorithm_same_run_on_both_runners(alg: Any, scope: str) -> None:
    sc = scenario(alg, scope)
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, Streams(sc.seed))
    assert unsupported(sc, compile_policy(sc, arr)) is None
    event = simulate(sc, engine="event")
    fast = simulate(sc, engine="fast")
    assert fast.engine == "fast"
    for f in ("outcomes", "remaining", "decided_us", "rejected_by", "pool_wait_us", "depth"):
        np.testing.assert_array_equal(getattr(event.data, f), getattr(fast.data, f), err_msg=f)
    o = event.data.outcomes[:, 0]
    assert (o == 1).sum() > 0 and (o == 2).sum() > 0  # the limit both admitted and refused
