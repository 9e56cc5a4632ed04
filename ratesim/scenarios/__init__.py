"""Built-in scenarios: ``get(name, scale=1.0) -> Scenario`` and ``names()``.

``scale`` multiplies the traffic rates, the user population and the aggregate limits (per-node
and site-wide ones); per-user limits stay as written, since more traffic means more users, not
busier ones. The Redis model is *not* scaled: one Redis executes about 10^5 commands per second
whatever the traffic, which is the point the flagship scenario makes as it grows.

* ``exchange-surge`` - a crypto-exchange gateway from a public engineering write-up: 4 nodes,
  an ordinary peak then a 17.3x flash crowd, the article's layers and tiers. About 0.5 M
  requests at ``scale=1``; ``scale=25`` is the article's 860k QPS peak.
* ``single-node-ideal`` - one node, perfect clocks, zero latency: equals its oracle exactly.
* ``clock-skew`` - four nodes whose clocks disagree by tens of ms sharing one GCRA with
  client-supplied time.
* ``redis-saturation`` - traffic that pushes a single Redis past 1 / service time.
* ``redis-outage`` - a refused outage and a black hole, with the local fallback.
* ``autoscale`` - per-node buckets while nodes are added mid-surge (new nodes start full), and
  a ``local_share: follow`` twin in shadow that shares the refill over the live nodes.
* ``redis-failover``, ``latency-spike`` (and ``-closed`` / ``-local`` / ``-breaker``),
  ``slow-backend-breaker``
  - bad days on the store path and at the backend (:mod:`ratesim.scenarios.bad_days`).
* ``retry-storm`` - clients that retry (issue 13): a one-second surge at 3x a site-wide limit,
  the clients retrying every rejection immediately (up to 10 attempts in a 1.5 s deadline).
  :func:`retry_storm` builds the other variants: ``reaction="retry_after"`` (honour
  ``Retry-After``) and ``"backoff"`` (exponential backoff with full jitter); see
  ``docs/guides/simulation.md`` for the three side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..clients import ClientsSpec
from ..model.clock import ClockSpec
from ..model.faults import OutageSpec
from ..model.latency import ConstantLatency, LognormalLatency, SpikeSpec
from ..policy import GcraSpec, LayerSpec, PolicySpec, SlidingLogSpec, TokenBucketSpec
from ..scenario import (
    NetworkSpec,
    RedisSpec,
    ScaleChange,
    Scenario,
    ScenarioError,
    TopologySpec,
)
from ..traffic import (
    FlashCrowdTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
    PopulationSpec,
    RateSegment,
)
from .bad_days import SPIKE_BREAKER, latency_spike, redis_failover, slow_backend_breaker

ORDER_ROUTE = "/api/v3/order"


def _n(x: float) -> int:
    return max(1, round(x))


def exchange_surge(scale: float = 1.0) -> Scenario:
    """The seed's exchange gateway through a 17.3x surge (see the module docstring).

    Layer ``node_bucket`` is in shadow mode: the article calls the local token bucket a
    "fallback cache layer that does not take part in the final decision", so it counts what it
    would reject (its ``shadow_rejected`` column is the seed's ``rate_limited_total`` for it)
    without rejecting. The three Redis layers use the Redis clock (redis-cell and a sorted set
    scored by ``TIME``) and fail open after 100 ms, as the article's gateway does.
    """
    return Scenario(
        name="exchange-surge",
        description=(
            "Crypto-exchange gateway on the first spot-Bitcoin-ETF trading day: 4 nodes, local "
            "token bucket (shadow), per-tier GCRA quotas, per-user 3000/60 s sliding log and a "
            "site-wide order GCRA in one Redis; ordinary peak then a 17.3x surge."
        ),
        duration_s=30.0,
        seed=20240111,
        interval_s=1.0,
        topology=TopologySpec(
            nodes=4,
            load_balancer="round_robin",
            clocks=[
                ClockSpec(),
                ClockSpec(offset_ms=0.4, drift_ppm=20.0),
                ClockSpec(offset_ms=-0.7, drift_ppm=-15.0),
                ClockSpec(offset_ms=1.1, drift_ppm=5.0),
            ],
        ),
        network=NetworkSpec(
            latency=LognormalLatency(median_ms=0.25, sigma=0.5),
            spikes=[SpikeSpec(start_s=14.0, end_s=15.0, factor=8.0)],
            pool_size=200,
            pool_max_wait_ms=500.0,
        ),
        redis=RedisSpec(shards=1, service_time=ConstantLatency(ms=0.01)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="node_bucket",
                    algorithm=TokenBucketSpec(rate=5000.0 * scale, burst=_n(5000 * scale)),
                    scope="node",
                    key="*",
                    mode="shadow",
                ),
                LayerSpec(
                    name="tier_quota",
                    algorithm=GcraSpec(max_burst=100, count_per_period=200, period_s=1.0),
                    scope="global",
                    key="{tier}:{user}",
                    tiers={
                        "gold": {"max_burst": 500, "count_per_period": 1000},
                        "platinum": {"max_burst": 2000, "count_per_period": 5000},
                    },
                    time_source="redis",
                    timeout_ms=100.0,
                    failure_mode="open",
                ),
                LayerSpec(
                    name="user_window",
                    algorithm=SlidingLogSpec(limit=3000, window_s=60.0),
                    scope="global",
                    key="{user}",
                    time_source="redis",
                    timeout_ms=100.0,
                    failure_mode="open",
                ),
                LayerSpec(
                    name="site_orders",
                    algorithm=GcraSpec(
                        max_burst=_n(1000 * scale) - 1,
                        count_per_period=_n(2000 * scale),
                        period_s=1.0,
                    ),
                    scope="global",
                    key="*",
                    routes=[ORDER_ROUTE],
                    time_source="redis",
                    timeout_ms=100.0,
                    failure_mode="open",
                ),
            ]
        ),
        traffic=FlashCrowdTraffic(
            base_rate_per_s=2000.0 * scale,
            peak_factor=17.3,
            start_s=8.0,
            ramp_s=2.0,
            plateau_s=10.0,
            decay_s=4.0,
        ),
        population=PopulationSpec(
            users=_n(2000 * scale),
            zipf_s=0.9,
            tiers={"platinum": 0.02, "gold": 0.18, "silver": 0.8},
            routes={"/api/v3/ticker": 0.6, "/api/v3/depth": 0.3, ORDER_ROUTE: 0.1},
            abusive_share=0.005,
            abusive_weight=50.0,
        ),
    )


def single_node_ideal(scale: float = 1.0) -> Scenario:
    """One node, perfect clocks, zero latency and service time: the oracle, exactly."""
    return Scenario(
        name="single-node-ideal",
        description="One node, perfect clocks, zero latency: decisions equal the oracle's.",
        duration_s=10.0,
        seed=1,
        topology=TopologySpec(nodes=1),
        network=NetworkSpec(latency=ConstantLatency(ms=0.0)),
        redis=RedisSpec(service_time=ConstantLatency(ms=0.0)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="node_bucket",
                    algorithm=TokenBucketSpec(rate=1500.0 * scale, burst=_n(300 * scale)),
                    key="*",
                ),
                LayerSpec(
                    name="user_gcra",
                    algorithm=GcraSpec(max_burst=20, count_per_period=50),
                    scope="global",
                    key="{user}",
                ),
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=2000.0 * scale),
        population=PopulationSpec(users=_n(200 * scale), zipf_s=1.1),
    )


def clock_skew(scale: float = 1.0) -> Scenario:
    """Four nodes, clocks off by up to 200 ms, one site-wide GCRA fed client time."""
    return Scenario(
        name="clock-skew",
        description=(
            "Four gateway nodes whose clocks disagree (0, +50, -50, +200 ms) share one global "
            "GCRA with client-supplied timestamps: leading clocks over-admit, lagging ones are "
            "starved."
        ),
        duration_s=20.0,
        seed=7,
        topology=TopologySpec(
            nodes=4,
            clocks=[
                ClockSpec(),
                ClockSpec(offset_ms=50.0),
                ClockSpec(offset_ms=-50.0),
                ClockSpec(offset_ms=200.0, drift_ppm=100.0),
            ],
        ),
        network=NetworkSpec(latency=LognormalLatency(median_ms=0.3, sigma=0.4)),
        redis=RedisSpec(service_time=ConstantLatency(ms=0.01)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="site_gcra",
                    algorithm=GcraSpec(
                        max_burst=_n(100 * scale), count_per_period=_n(1000 * scale)
                    ),
                    scope="global",
                    key="*",
                    time_source="client",
                )
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=3000.0 * scale),
        population=PopulationSpec(users=_n(500 * scale)),
    )


def redis_saturation(scale: float = 1.0) -> Scenario:
    """A single Redis (20 µs per command: 50k/s) pushed to 60k commands/s for 3 s."""
    return Scenario(
        name="redis-saturation",
        description=(
            "Per-user GCRA in one Redis with a 20 us service time (50k commands/s). Traffic "
            "steps from 20k to 60k requests/s: the queue grows ~10k commands per second, the "
            "decision latency passes the 100 ms timeout and the layer fails open."
        ),
        duration_s=8.0,
        seed=3,
        topology=TopologySpec(nodes=2),
        network=NetworkSpec(latency=ConstantLatency(ms=0.2), pool_size=100_000),
        redis=RedisSpec(service_time=ConstantLatency(ms=0.02)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="user_gcra",
                    algorithm=GcraSpec(max_burst=50, count_per_period=100),
                    scope="global",
                    key="{user}",
                    timeout_ms=100.0,
                    failure_mode="open",
                )
            ]
        ),
        traffic=PiecewiseTraffic(
            segments=[
                RateSegment(until_s=3.0, rate_per_s=20_000.0 * scale),
                RateSegment(until_s=6.0, rate_per_s=60_000.0 * scale),
                RateSegment(until_s=8.0, rate_per_s=20_000.0 * scale),
            ]
        ),
        population=PopulationSpec(users=_n(5000 * scale)),
    )


def redis_outage(scale: float = 1.0) -> Scenario:
    """A refused outage (3-5 s) then a black hole (7-9 s) under a local fallback."""
    return Scenario(
        name="redis-outage",
        description=(
            "Site-wide GCRA with failure_mode=local (each node falls back to 1/N of the limit): "
            "Redis refuses connections from 3 to 5 s and black-holes them from 7 to 9 s."
        ),
        duration_s=12.0,
        seed=5,
        topology=TopologySpec(nodes=4),
        network=NetworkSpec(latency=LognormalLatency(median_ms=0.3, sigma=0.4)),
        redis=RedisSpec(
            service_time=ConstantLatency(ms=0.01),
            outages=[
                OutageSpec(start_s=3.0, end_s=5.0, kind="refused"),
                OutageSpec(start_s=7.0, end_s=9.0, kind="blackhole"),
            ],
        ),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="site_gcra",
                    algorithm=GcraSpec(
                        max_burst=_n(200 * scale), count_per_period=_n(2000 * scale)
                    ),
                    scope="global",
                    key="*",
                    timeout_ms=50.0,
                    failure_mode="local",
                )
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=3000.0 * scale),
        population=PopulationSpec(users=_n(500 * scale)),
    )


def autoscale(scale: float = 1.0) -> Scenario:
    """Per-node buckets through a surge that an autoscaler answers with more nodes (3 -> 6 at
    12 s, back to 3 at 24 s); a shadow twin shares its refill over the live nodes."""
    return Scenario(
        name="autoscale",
        description=(
            "Per-node token buckets (Envoy local_ratelimit: 200 tokens, 100/s per node) on 3 "
            "nodes: the site admits 300/s (the oracle, one bucket for the site, 100/s). A 4x "
            "surge from 8 s; the autoscaler adds 3 nodes at 12 s, each starting with a full "
            "bucket (a 600-token burst at the scale event) and doubling the admitted rate to "
            "600/s, and removes them at 24 s. The shadow layer node_share is a site budget of "
            "300/s with local_share: follow (local_cluster_rate_limit: ceil(tokens_per_fill / "
            "members) per node): its refill stays at 300/s on 3 nodes and on 6."
        ),
        duration_s=30.0,
        seed=13,
        topology=TopologySpec(
            nodes=3,
            load_balancer="round_robin",
            changes=[ScaleChange(at_s=12.0, nodes=6), ScaleChange(at_s=24.0, nodes=3)],
        ),
        redis=None,
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="node_share",
                    algorithm=TokenBucketSpec(
                        rate=float(_n(300 * scale)),
                        burst=_n(200 * scale),
                        refill="ticker",
                        fill_interval_s=1.0,
                    ),
                    key="*",
                    mode="shadow",
                    local_share="follow",
                ),
                LayerSpec(
                    name="node_bucket",
                    algorithm=TokenBucketSpec(rate=float(_n(100 * scale)), burst=_n(200 * scale)),
                    key="*",
                ),
            ]
        ),
        traffic=FlashCrowdTraffic(
            base_rate_per_s=250.0 * scale,
            peak_factor=4.0,
            start_s=8.0,
            ramp_s=2.0,
            plateau_s=12.0,
            decay_s=4.0,
        ),
        population=PopulationSpec(users=_n(500 * scale)),
    )


#: The client reactions :func:`retry_storm` runs (``ratesim.clients`` policies).
RETRY_STORM_REACTIONS: dict[str, dict[str, Any]] = {
    "immediate": {"kind": "immediate"},
    "retry_after": {"kind": "retry_after"},
    "backoff": {"kind": "backoff", "base_ms": 100.0, "cap_ms": 2000.0},
}


def retry_storm(scale: float = 1.0, reaction: str = "immediate") -> Scenario:
    """Clients retrying through a surge: 600 requests/s, 3000/s from 4 to 5 s, against a
    site-wide GCRA of 1000/s (burst 101); every refusal (a rejection, or an error: the layer
    fails closed) is retried by ``reaction`` (one of :data:`RETRY_STORM_REACTIONS`), up to 10
    attempts within a 1.5 s deadline."""
    if reaction not in RETRY_STORM_REACTIONS:
        raise ScenarioError(
            f"retry_storm: reaction must be one of {', '.join(RETRY_STORM_REACTIONS)}, "
            f"got {reaction!r}"
        )
    return Scenario(
        name="retry-storm",
        description=(
            "A 1 s surge at 3x a site-wide GCRA (fail closed, no pool wait); clients retry "
            f"every refusal ({reaction}), at most 10 attempts within 1.5 s of the first."
        ),
        duration_s=12.0,
        interval_s=0.1,  # the storm lasts a second: bins fine enough to see retries come back
        seed=13,
        topology=TopologySpec(nodes=4),
        network=NetworkSpec(
            latency=LognormalLatency(median_ms=0.3, sigma=0.4), pool_max_wait_ms=0.0
        ),
        redis=RedisSpec(service_time=ConstantLatency(ms=0.01)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="site",
                    algorithm=GcraSpec(
                        max_burst=_n(100 * scale), count_per_period=_n(1000 * scale)
                    ),
                    scope="global",
                    key="*",
                    timeout_ms=50.0,
                    failure_mode="closed",
                )
            ]
        ),
        traffic=PiecewiseTraffic(
            segments=[
                RateSegment(until_s=4.0, rate_per_s=600.0 * scale),
                RateSegment(until_s=5.0, rate_per_s=3000.0 * scale),
                RateSegment(until_s=12.0, rate_per_s=600.0 * scale),
            ]
        ),
        population=PopulationSpec(users=_n(2000 * scale)),
        clients=ClientsSpec(
            on_reject=RETRY_STORM_REACTIONS[reaction],  # type: ignore[arg-type]
            on_error=RETRY_STORM_REACTIONS[reaction],  # type: ignore[arg-type]
            max_attempts=10,
            deadline_ms=1500.0,
        ),
    )


_BUILTINS: dict[str, Callable[[float], Scenario]] = {
    "exchange-surge": exchange_surge,
    "single-node-ideal": single_node_ideal,
    "clock-skew": clock_skew,
    "redis-saturation": redis_saturation,
    "redis-outage": redis_outage,
    "autoscale": autoscale,
    "redis-failover": redis_failover,
    "latency-spike": latency_spike,
    "latency-spike-closed": lambda scale: latency_spike(scale, "closed"),
    "latency-spike-local": lambda scale: latency_spike(scale, "local"),
    "latency-spike-breaker": lambda scale: latency_spike(scale, "open", SPIKE_BREAKER),
    "slow-backend-breaker": slow_backend_breaker,
    "retry-storm": retry_storm,
}


def names() -> list[str]:
    """The built-in scenario names, flagship first."""
    return list(_BUILTINS)


def get(name: str, scale: float = 1.0) -> Scenario:
    """The built-in scenario ``name`` at ``scale`` (> 0); ``ScenarioError`` if unknown."""
    if name not in _BUILTINS:
        raise ScenarioError(f"unknown built-in scenario {name!r}; known: {', '.join(names())}")
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not scale > 0:
        raise ValueError(f"scale must be a number > 0, got {scale!r}")
    return _BUILTINS[name](float(scale))


__all__ = ["RETRY_STORM_REACTIONS", "get", "names", "retry_storm"]
