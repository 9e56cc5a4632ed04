"""Built-in scenarios of bad days on the store path and at the backend (issue 13).

* ``redis-failover`` - a replica promotion in the middle of a surge that loses the last 100 ms
  of writes (and the script cache): the site-wide limit over-admits about ``rate x lost
  window`` (``tests/test_store_breaker.py`` derives it).
* ``latency-spike`` / ``latency-spike-closed`` / ``latency-spike-local`` - the network to
  Redis gains 100 ms each way for 2 s (every call's round trip passes the 100 ms decision
  timeout), run under fail open, fail closed and the local fallback: :func:`latency_spike`
  takes the failure mode as a parameter, the three names are its variants;
  ``latency-spike-breaker`` is fail open behind a store breaker per node (5 failures, 500 ms
  cooldown): one timeout per cooldown instead of one per request.
* ``slow-backend-breaker`` - the seed's three layers in front of a backend that slows with
  load (QPS limit, 50 in flight, a slow-call-ratio breaker): the breaker's slow-call threshold
  (``max_rt_s``) must sit below the backend's response time when the concurrency limit is
  saturated, or it never fires (:func:`saturation_rt_s`); :func:`slow_backend_breaker` takes
  the threshold as a parameter.
"""

from __future__ import annotations

from typing import Literal

from ..model.backend import BackendSpec, slowed_service_us
from ..model.faults import FailoverSpec
from ..model.latency import ConstantLatency, LognormalLatency, SpikeSpec
from ..policy import (
    BreakerSpec,
    ConcurrencySpec,
    GcraSpec,
    LayerSpec,
    PolicySpec,
    StoreBreakerSpec,
    TokenBucketSpec,
)
from ..scenario import NetworkSpec, RedisSpec, Scenario, TopologySpec
from ..traffic import FlashCrowdTraffic, PoissonTraffic, PopulationSpec


def _n(x: float) -> int:
    return max(1, round(x))


def redis_failover(scale: float = 1.0) -> Scenario:
    """A failover at 7 s, inside a 6x surge, losing 100 ms of writes (see the module docstring).

    Per-user GCRA then a site-wide GCRA of 5000/s, both in Redis with the Redis clock; the
    surge keeps the site-wide limit saturated, so every admission it made in the lost 100 ms
    is made again after the promotion: about ``5000/s x 0.1 s = 500`` requests over the limit.
    """
    return Scenario(
        name="redis-failover",
        description=(
            "A Redis replica promotion at 7 s, during a 6x surge, loses the last 100 ms of "
            "writes and the script cache: the saturated site-wide GCRA (5000/s) admits again "
            "what it admitted in the lost window, about 500 requests over its limit."
        ),
        duration_s=12.0,
        seed=13,
        topology=TopologySpec(nodes=4),
        network=NetworkSpec(latency=LognormalLatency(median_ms=0.3, sigma=0.4)),
        redis=RedisSpec(
            service_time=ConstantLatency(ms=0.005),
            failovers=[FailoverSpec(at_s=7.0, lost_writes_ms=100.0, flush_scripts=True)],
        ),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="user_gcra",
                    algorithm=GcraSpec(max_burst=20, count_per_period=50),
                    scope="global",
                    key="{user}",
                    time_source="redis",
                ),
                LayerSpec(
                    name="site_gcra",
                    algorithm=GcraSpec(
                        max_burst=_n(500 * scale), count_per_period=_n(5000 * scale)
                    ),
                    scope="global",
                    key="*",
                    time_source="redis",
                ),
            ]
        ),
        traffic=FlashCrowdTraffic(
            base_rate_per_s=2500.0 * scale,
            peak_factor=6.0,
            start_s=3.0,
            ramp_s=1.0,
            plateau_s=6.0,
            decay_s=1.0,
        ),
        population=PopulationSpec(users=_n(3000 * scale), zipf_s=0.8),
    )


#: The latency spike's window (s) and the one-way latency it adds (ms).
SPIKE_START_S, SPIKE_END_S, SPIKE_ADD_MS = 4.0, 6.0, 100.0


#: The store breaker of ``latency-spike-breaker``.
SPIKE_BREAKER = StoreBreakerSpec(failures=5, cooldown_ms=500.0)


def latency_spike(
    scale: float = 1.0,
    failure_mode: Literal["open", "closed", "local"] = "open",
    store_breaker: StoreBreakerSpec | None = None,
) -> Scenario:
    """Redis 200 ms further away (round trip) for 2 s, under ``failure_mode`` (and a store
    breaker on the global layer when ``store_breaker`` is given).

    Four nodes, a per-node token bucket then a site-wide GCRA (2000/s, burst 200) with a
    100 ms decision timeout. Every request arriving in ``[4, 6)`` s waits the full timeout and
    takes the failure mode: ``open`` admits it, ``closed`` rejects it, ``local`` hands it to
    the node's own GCRA with 1/4 of the limit. The pool (400 connections a node) holds the
    spike's calls in flight, so no request outside the window waits for one.
    """
    suffix = "" if failure_mode == "open" else f"-{failure_mode}"
    suffix += "-breaker" if store_breaker is not None else ""
    return Scenario(
        name=f"latency-spike{suffix}",
        description=(
            "The network to Redis gains 100 ms each way from 4 to 6 s (a 200 ms spike in the "
            f"round trip, past the 100 ms decision timeout) under failure_mode={failure_mode}"
            + (
                f", behind a store breaker ({store_breaker.failures} failures, "
                f"{store_breaker.cooldown_ms:g} ms cooldown)."
                if store_breaker is not None
                else "."
            )
        ),
        duration_s=10.0,
        seed=17,
        topology=TopologySpec(nodes=4),
        network=NetworkSpec(
            latency=LognormalLatency(median_ms=0.25, sigma=0.4),
            spikes=[SpikeSpec(start_s=SPIKE_START_S, end_s=SPIKE_END_S, add_ms=SPIKE_ADD_MS)],
            pool_size=400,
        ),
        redis=RedisSpec(service_time=ConstantLatency(ms=0.01)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="node_bucket",
                    algorithm=TokenBucketSpec(rate=1200.0 * scale, burst=_n(100 * scale)),
                    key="*",
                ),
                LayerSpec(
                    name="site_gcra",
                    algorithm=GcraSpec(
                        max_burst=_n(200 * scale), count_per_period=_n(2000 * scale)
                    ),
                    scope="global",
                    key="*",
                    timeout_ms=100.0,
                    failure_mode=failure_mode,
                    store_breaker=store_breaker,
                ),
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=3000.0 * scale),
        population=PopulationSpec(users=_n(1000 * scale)),
    )


#: The backend of ``slow-backend-breaker``: base service time (ms), servers, load factor.
BACKEND_MS, BACKEND_SERVERS, BACKEND_LOAD = 50.0, 20, 1.0
#: Gateway nodes and the concurrency limit per node.
NODES, MAX_IN_FLIGHT = 2, 50


def saturation_rt_s() -> float:
    """The backend's response time (s) with the concurrency limit saturated on every node
    (``NODES * MAX_IN_FLIGHT`` in flight): the longest a request admitted by the limit can take
    (:func:`ratesim.model.backend.slowed_service_us`)."""
    base_us = round(BACKEND_MS * 1000)
    in_flight = NODES * MAX_IN_FLIGHT
    return slowed_service_us(base_us, in_flight, BACKEND_LOAD, BACKEND_SERVERS) / 1e6


def slow_backend_breaker(scale: float = 1.0, max_rt_s: float = 0.12) -> Scenario:
    """The seed's "three layers" before a backend that slows with load (module docstring).

    Per node: a QPS limit (token bucket), a concurrency limit of 50 in flight (waits up to
    200 ms), then a Sentinel slow-call-ratio breaker (a call slower than ``max_rt_s`` is slow;
    30% slow over 10 s opens it for 10 s). The backend (20 servers, 50 ms, slowed by load)
    takes :func:`saturation_rt_s` (about 0.30 s) with both nodes' limits full: ``max_rt_s``
    below that trips the breaker before the concurrency limit saturates; above, the breaker
    never sees a slow call.
    """
    return Scenario(
        name="slow-backend-breaker",
        description=(
            "QPS limit, 50 in flight and a slow-call breaker (RT > "
            f"{max_rt_s * 1000:g} ms, 30% over 10 s) per node before a backend that slows with "
            "load: the breaker fires only if its threshold sits below the backend's response "
            "time at the concurrency limit's saturation (about 300 ms)."
        ),
        duration_s=30.0,
        seed=29,
        topology=TopologySpec(nodes=NODES),
        backend=BackendSpec(
            servers=BACKEND_SERVERS,
            service_time=ConstantLatency(ms=BACKEND_MS),
            load_factor=BACKEND_LOAD,
        ),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="qps",
                    algorithm=TokenBucketSpec(rate=400.0 * scale, burst=_n(100 * scale)),
                    key="*",
                ),
                LayerSpec(
                    name="concurrency",
                    algorithm=ConcurrencySpec(max_in_flight=MAX_IN_FLIGHT, max_wait_s=0.2),
                    key="*",
                ),
                LayerSpec(
                    name="breaker",
                    algorithm=BreakerSpec(
                        grade="slow_ratio",
                        threshold=0.3,
                        max_rt_s=max_rt_s,
                        min_requests=5,
                        stat_interval_s=10.0,
                        open_s=10.0,
                    ),
                    key="*",
                ),
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=200.0 * scale),
        population=PopulationSpec(users=_n(500 * scale)),
    )


__all__ = [
    "SPIKE_BREAKER",
    "latency_spike",
    "redis_failover",
    "saturation_rt_s",
    "slow_backend_breaker",
]
