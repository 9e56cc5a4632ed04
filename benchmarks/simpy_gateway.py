"""The simplest hand-written SimPy model of a scenario's gateway: the benchmark's yardstick.

What a SimPy user would write first: a process per request, ``simpy.Resource`` for each node's
connection pool and for each Redis shard (one thread: capacity 1), ``env.timeout`` for every
latency and service time, and the algorithms' own kernels for the decisions. It has no
decision timeouts, failure modes, faults, guards or backend (the flagship needs none of them),
so it does less than the components; ``bench_simulation.py`` checks that the components
(``engine="event"``) are at least as fast.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from ratesim.compile import CompiledLayer, Draws
from ratesim.model.clock import NodeClock
from ratesim.scenario import Scenario
from ratesim.traffic import Arrivals


def run_handwritten(
    scenario: Scenario, arrivals: Arrivals, draws: Draws, layers: list[CompiledLayer]
) -> int:
    """Run the hand-written model; returns the number of admitted requests."""
    env = simpy.Environment()
    n_nodes = scenario.topology.nodes
    redis = scenario.redis
    pools = [simpy.Resource(env, capacity=scenario.network.pool_size) for _ in range(n_nodes)]
    shards = [simpy.Resource(env, capacity=1) for _ in range(redis.shards if redis else 1)]
    clocks = [NodeClock(spec).read for spec in scenario.topology.clock_specs()]
    state: list[list[dict[int, Any]]] = [[{} for _ in range(n_nodes)] for _ in layers]
    times, tiers, costs = arrivals.time_us.tolist(), arrivals.tier.tolist(), arrivals.cost.tolist()
    nodes = draws.node.tolist()
    out, back, svc = (
        draws.lat_out_us.tolist(),
        draws.lat_back_us.tolist(),
        draws.service_us.tolist(),
    )
    admitted = 0

    def decide(pos: int, i: int, table: dict[int, Any], now: int) -> bool:
        cl = layers[pos]
        alg = cl.algs[tiers[i]]
        k = int(cl.keys[i])
        st = table.get(k)
        if st is None:
            st = table[k] = alg.new_state()
        ok = alg.kernel(alg.params, st, now, costs[i])[0]
        return bool(ok) or cl.spec.mode == "shadow"

    def request(i: int) -> Generator[simpy.Event, Any, None]:
        nonlocal admitted
        nd = nodes[i]
        for pos, cl in enumerate(layers):
            if cl.applies_np is not None and not cl.applies_np[i]:
                continue
            if cl.spec.scope == "node":
                if not decide(pos, i, state[pos][nd], clocks[nd](int(env.now))):
                    return
                continue
            g = cl.gidx
            with pools[nd].request() as conn:
                yield conn
                sent = clocks[nd](int(env.now))
                yield env.timeout(out[i][g])
                shard = shards[cl.shard[i] if cl.shard is not None else 0]
                with shard.request() as thread:
                    yield thread
                    ok = decide(pos, i, state[pos][0], sent)
                    yield env.timeout(svc[i][g])
                yield env.timeout(back[i][g])
            if not ok:
                return
        admitted += 1

    def source() -> Generator[simpy.Event, Any, None]:
        for i, t in enumerate(times):
            if t > env.now:
                yield env.timeout(t - env.now)
            env.process(request(i))

    env.process(source())
    env.run()
    return admitted
