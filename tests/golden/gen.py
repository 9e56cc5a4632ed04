"""Golden runs: digests of every output array of a fixed set of runs.

The set is every built-in scenario (the flagship at scale 0.1) and 40 random scenarios drawn
from a seeded NumPy generator over the same feature pools as the parity suite's hypothesis
strategy (``random_scenario``), slewing clocks included. ``python tests/golden/gen.py`` writes
``tests/golden/digests.json``; ``tests/test_golden.py`` recomputes the digests on every runner
and compares. The file was written by the code as it stood before the simulation was reshaped
(issue 8), so a match means the reshaped runners produce the very same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from test_engine_helpers import make_scenario  # noqa: E402

import ratesim.scenarios as builtin  # noqa: E402
from ratesim.model.backend import BackendSpec  # noqa: E402
from ratesim.model.clock import ClockSpec, ClockStep  # noqa: E402
from ratesim.model.faults import FailoverSpec, OutageSpec, PartitionSpec  # noqa: E402
from ratesim.model.latency import (  # noqa: E402
    ConstantLatency,
    LognormalLatency,
    UniformLatency,
)
from ratesim.policy import (  # noqa: E402
    BreakerSpec,
    BucketedWindowSpec,
    ConcurrencySpec,
    DoubleBufferedSpec,
    FixedWindowSpec,
    GcraSpec,
    LayerSpec,
    SlidingCounterSpec,
    SlidingLogSpec,
    TokenBucketSpec,
)
from ratesim.scenario import Scenario  # noqa: E402
from ratesim.traffic import PopulationSpec  # noqa: E402

FIELDS = (
    "node",
    "outcomes",
    "remaining",
    "decided_us",
    "rejected_by",
    "pool_wait_us",
    "depth_t_us",
    "depth",
    "backend_done_us",
)
N_RANDOM = 40
BUILTINS = (
    "exchange-surge@0.1",
    "single-node-ideal",
    "clock-skew",
    "redis-saturation",
    "redis-outage",
)


def _algorithms() -> list[Any]:
    return [
        GcraSpec(max_burst=3, count_per_period=200),
        GcraSpec(max_burst=0, count_per_period=500),
        TokenBucketSpec(rate=300.0, burst=4),
        TokenBucketSpec(rate=3000.0, burst=24, refill="ticker", fill_interval_s=0.004),
        SlidingLogSpec(limit=5, window_s=0.02),
        FixedWindowSpec(limit=6, window_s=0.01),
        SlidingCounterSpec(limit=6, window_s=0.01),
        BucketedWindowSpec(limit=6, window_s=0.02, buckets=4),
        DoubleBufferedSpec(limit=6, window_s=0.02, buckets=4, swap_interval_s=0.005),
    ]


def _pick(rng: np.random.Generator, items: list[Any] | tuple[Any, ...]) -> Any:
    return items[int(rng.integers(len(items)))]


def _clock(rng: np.random.Generator, slews: bool) -> ClockSpec:
    steps = []
    for _ in range(int(rng.integers(0, 3))):
        slew = _pick(rng, [0.0, 0.0, 0.03]) if slews else 0.0
        steps.append(
            ClockStep(at_s=_pick(rng, [0.05, 0.1, 0.2]), by_ms=_pick(rng, [-2.0, 1.5]), slew_s=slew)
        )
    if slews and steps:  # at most one slew active at a time
        seen: list[tuple[float, float]] = []
        for k, s in enumerate(steps):
            if s.slew_s and any(a < s.at_s + s.slew_s and s.at_s < b for a, b in seen):
                steps[k] = ClockStep(at_s=s.at_s, by_ms=s.by_ms)
            elif s.slew_s:
                seen.append((s.at_s, s.at_s + s.slew_s))
    return ClockSpec(
        offset_ms=_pick(rng, [0.0, 0.6, -1.3]),
        drift_ppm=_pick(rng, [0.0, 120.0, -75.5]),
        steps=steps,
    )


def _global_layer(rng: np.random.Generator, index: int) -> LayerSpec:
    alg = _pick(rng, _algorithms())
    tiers = {}
    if isinstance(alg, GcraSpec) and rng.integers(2):
        tiers = {"gold": {"max_burst": 9, "count_per_period": 900}}
    return LayerSpec(
        name=f"g{index}",
        algorithm=alg,
        scope="global",
        key=_pick(rng, ["*", "{user}", "{tier}:{user}", "{route}"]),
        tiers=tiers,
        routes=_pick(rng, [None, ["/a"], ["/b", "/c"]]),
        mode=_pick(rng, ["enforce", "enforce", "shadow"]),
        timeout_ms=_pick(rng, [0.3, 1.0, 50.0]),
        failure_mode=_pick(rng, ["open", "closed", "local"]),
        time_source=_pick(rng, ["client", "redis"]),
        drift_guard_ms=_pick(rng, [None, None, 0.8]),
    )


def _guards(rng: np.random.Generator, layers: list[LayerSpec]) -> BackendSpec | None:
    if not rng.integers(2):
        return None
    backend = BackendSpec(
        servers=int(rng.integers(1, 4)),
        service_time=_pick(rng, [ConstantLatency(ms=1.5), UniformLatency(low_ms=0.0, high_ms=4.0)]),
        load_factor=_pick(rng, [0.0, 0.5]),
    )
    for k in range(int(rng.integers(1, 3))):
        guard = _pick(
            rng,
            [
                ConcurrencySpec(max_in_flight=2),
                ConcurrencySpec(max_in_flight=3, max_wait_s=0.002),
                ConcurrencySpec(max_in_flight=1, max_wait_s=0.003, max_queue=2),
                BreakerSpec(
                    threshold=0.3, max_rt_s=0.002, min_requests=3, stat_interval_s=0.02, open_s=0.01
                ),
            ],
        )
        where = int(rng.integers(0, len(layers) + 1))
        key = _pick(rng, ["*", "{user}", "{tier}"])
        layers.insert(where, LayerSpec(name=f"guard{k}", algorithm=guard, key=key))
    return backend


def random_scenario(seed: int) -> Scenario:
    """A random small scenario (every feature of the simulation may appear), fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    slews = seed % 4 == 3  # every fourth one has slewing clocks
    nodes = int(rng.integers(1, 4))
    layers: list[LayerSpec] = []
    if rng.integers(2):
        layers.append(
            LayerSpec(
                name="node_tb",
                algorithm=TokenBucketSpec(rate=400.0, burst=5),
                key=_pick(rng, ["*", "{user}"]),
                mode=_pick(rng, ["enforce", "shadow"]),
            )
        )
    layers += [_global_layer(rng, k) for k in range(int(rng.integers(1, 4)))]
    if rng.integers(2):
        layers.append(
            LayerSpec(
                name="node_after",
                algorithm=_pick(rng, _algorithms()),
                key=_pick(rng, ["*", "{user}"]),
                mode=_pick(rng, ["enforce", "shadow"]),
            )
        )
    latency = _pick(
        rng,
        [
            ConstantLatency(ms=0.0),
            ConstantLatency(ms=0.2),
            UniformLatency(low_ms=0.0, high_ms=0.6),
            LognormalLatency(median_ms=0.2, sigma=1.0),
        ],
    )
    service = _pick(rng, [ConstantLatency(ms=0.0), ConstantLatency(ms=0.4)])
    outages = []
    if rng.integers(2):
        outages.append(
            OutageSpec(
                start_s=0.05,
                end_s=0.09,
                kind=_pick(rng, ["refused", "blackhole"]),
                shards=_pick(rng, [None, [0]]),
            )
        )
    partitions = []
    if rng.integers(2):
        partitions.append(PartitionSpec(start_s=0.1, end_s=0.13, nodes=[0]))
    failovers = []
    if rng.integers(2):
        failovers.append(
            FailoverSpec(
                at_s=_pick(rng, [0.07, 0.15]),
                lost_writes_ms=_pick(rng, [0.0, 20.0]),
                clock_step_ms=_pick(rng, [0.0, 1.5, -2.0]),
                flush_scripts=bool(rng.integers(2)),
            )
        )
    backend = _guards(rng, layers)
    return make_scenario(
        layers,
        nodes=nodes,
        duration_s=0.25,
        backend=backend,
        rate_per_s=_pick(rng, [400.0, 2500.0]),
        topology={
            "load_balancer": _pick(rng, ["round_robin", "random", "hash_user"]),
            "clocks": [_clock(rng, slews) for _ in range(nodes)],
        },
        network={
            "latency": latency,
            "partitions": partitions,
            "pool_size": int(rng.integers(1, 5)),
            "pool_max_wait_ms": _pick(rng, [0.0, 0.5, 5.0]),
        },
        redis={
            "service_time": service,
            "shards": int(rng.integers(1, 4)),
            "outages": outages,
            "failovers": failovers,
            "clock": _clock(rng, slews),
        },
        population=PopulationSpec(
            users=_pick(rng, [1, 7]),
            tiers={"gold": 0.3, "silver": 0.7},
            routes={"/a": 0.5, "/b": 0.3, "/c": 0.2},
            route_cost={"/c": 2},
        ),
    )


def golden_scenarios() -> dict[str, tuple[Scenario, int]]:
    """Name -> (scenario, seed) of every golden run."""
    out: dict[str, tuple[Scenario, int]] = {}
    for name in BUILTINS:
        base, _, scale = name.partition("@")
        sc = builtin.get(base, scale=float(scale or 1.0))
        out[name] = (sc, sc.seed)
    for k in range(N_RANDOM):
        out[f"random-{k}"] = (random_scenario(k), 1000 + k)
    return out


def digests(data: Any) -> dict[str, str]:
    """sha256 of each output array's dtype, shape and bytes."""
    out = {}
    for f in FIELDS:
        a = getattr(data, f)
        if a is None:
            out[f] = "none"
            continue
        a = np.ascontiguousarray(a)
        h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
        out[f] = h.hexdigest()[:24]
    return out


def main() -> None:
    from ratesim import simulate

    table = {}
    for name, (sc, seed) in golden_scenarios().items():
        r = simulate(sc, seed=seed, engine="event")
        table[name] = {"run": digests(r.data), "oracle": digests(r.oracle.data)}  # type: ignore[union-attr]
        print(name, len(r.data.decided_us))
    (HERE / "digests.json").write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
