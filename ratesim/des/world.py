"""A scenario's world built from the components, run, and read back as plain arrays.

``World.build(scenario)`` assembles the gateway (nodes with their clocks, pools and layer
state; the load balancer), the network, the Redis model, the guards and the backend in one
SimPy environment, with the scenario's traffic as a process; ``world.run()`` runs it and
``world.data()`` checks conservation and returns the :class:`~ratesim.results.RunData`.
A SimPy user adds processes of their own to ``world.env`` between the two (see the guide).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from ..compile import (
    CompiledLayer,
    Draws,
    can_hold,
    compile_clients,
    compile_policy,
    draw_requests,
)
from ..conservation import check_attempts, check_conservation
from ..model.clock import NodeClock, redis_clock
from ..model.faults import fault_tables
from ..model.node import assign_nodes_live, hash_user_node
from ..model.redis_server import queue_depths
from ..model.topology import epoch_counts, slots_at
from ..ordering import PRIO_TICK
from ..policy import BACKEND_KINDS
from ..results import RunData
from ..rng import Streams
from ..scenario import Scenario
from ..traffic import Arrivals, generate_arrivals
from .backend import Backend
from .clients import Clients
from .events import At
from .events import now as now_us
from .gateway import Gateway, Node
from .guards import Guards
from .network import Network
from .pool import ConnectionPool
from .redis import Redis
from .requests import Request, RequestTable
from .source import scenario_traffic

TICK_US = 100_000


class World:
    """The components of one run (see the module docstring)."""

    def __init__(
        self,
        scenario: Scenario,
        arrivals: Arrivals,
        draws: Draws,
        layers: list[CompiledLayer],
        seed: int,
        env: simpy.Environment | None = None,
    ) -> None:
        self.scenario = scenario
        self.env = env if env is not None else simpy.Environment()
        if now_us(self.env) != 0:
            raise ValueError("World needs an environment at time 0 (µs of true time)")
        self.requests = RequestTable(scenario, arrivals, draws, layers, seed)
        self.layers = layers
        self.nodes = self._nodes()
        self.faults = fault_tables(scenario)
        self.redis = self._redis()
        self.network = (
            Network(self.requests.out_us, self.requests.back_us, self.faults)
            if self.redis is not None
            else None
        )
        self.guards = Guards(
            [cl.spec.algorithm.kind == "concurrency" for cl in layers], len(self.nodes)
        )
        self.backend: Backend | None = None
        self.gateway = Gateway(
            self.env,
            layers,
            self.requests,
            self.nodes,
            self.redis,
            self.network,
            self.guards,
            None,
            self._load_balancer(seed),
        )
        if scenario.backend is not None:
            self.backend = Backend(
                self.env, scenario.backend, self.requests.backend_us, self.gateway.backend_done
            )
            self.gateway.backend = self.backend
        if self.redis is not None:
            self.redis.on_script_flush = self._flush_scripts
        self.clients: Clients | None = None
        compiled = compile_clients(scenario, arrivals, seed)
        if compiled is not None:
            self.clients = Clients(
                self.env,
                self.requests,
                compiled,
                arrivals.time_us,
                [cl.spec.algorithm.kind in BACKEND_KINDS for cl in layers],
            )
            self.clients.submit = self.gateway.submit_retry
            self.gateway.clients = self.clients
        then = self.clients.arrive if self.clients is not None else None
        self.env.process(scenario_traffic(self.env, self.gateway, arrivals.time_us, then))

    @classmethod
    def build(
        cls,
        scenario: Scenario,
        seed: int | None = None,
        *,
        arrivals: Arrivals | None = None,
        env: simpy.Environment | None = None,
    ) -> World:
        """The world of ``scenario`` (its own traffic unless ``arrivals`` is given), with every
        draw made from ``seed`` (default: the scenario's) as :func:`ratesim.simulate` makes it."""
        seed = scenario.seed if seed is None else seed
        streams = Streams(seed)
        if arrivals is None:
            arrivals = generate_arrivals(
                scenario.traffic, scenario.population, scenario.duration_us, streams
            )
        layers = compile_policy(scenario, arrivals)
        return cls(
            scenario, arrivals, draw_requests(scenario, arrivals, streams), layers, seed, env
        )

    # --- assembly ---------------------------------------------------------------------------

    def _nodes(self) -> list[Node]:
        sc = self.scenario
        wait_us = round(sc.network.pool_max_wait_ms * 1000)
        nodes = []
        for k, spec in enumerate(sc.topology.clock_specs()):
            pool = ConnectionPool(self.env, sc.network.pool_size, wait_us, self._wait_over)
            clock = _reader(NodeClock(spec))
            nodes.append(Node(k, clock, pool, len(self.layers)))
        return nodes

    def _wait_over(self, i: int, got: bool) -> None:
        self.gateway._wait_over(i, got)

    def _redis(self) -> Redis | None:
        red = self.scenario.redis
        if red is None:
            return None
        specs = [cl.spec for cl in self.layers]
        return Redis(
            self.env,
            red.shards,
            len(self.layers),
            _reader(redis_clock(red)),
            self.faults,
            list(red.failovers),
            [round(s.drift_guard_ms * 1000) if s.drift_guard_ms else 0 for s in specs],
            [s.time_source == "redis" for s in specs],
        )

    def _flush_scripts(self) -> None:
        for node in self.nodes:
            node.scripts_cached = False

    def _load_balancer(self, seed: int) -> Callable[[Request], int]:
        """How ``Gateway.handle`` places a request that the scenario did not generate."""
        topo = self.scenario.topology
        n = topo.nodes
        if topo.changes:
            return self._live_balancer(seed)
        if topo.load_balancer == "random":
            rng = Streams(seed).get("client:nodes")
            return lambda req: int(rng.integers(0, n))
        if topo.load_balancer == "hash_user":
            return lambda req: int(hash_user_node(np.array([req.user]), n)[0])
        return lambda req: len(self.requests) % n

    def _live_balancer(self, seed: int) -> Callable[[Request], int]:
        """:meth:`_load_balancer` over the nodes live now (``topology.changes``), as
        :func:`ratesim.model.node.assign_nodes_live` places the scenario's requests."""
        topo = self.scenario.topology
        at_us, counts = topo.change_tables()
        rng = Streams(seed).get("client:nodes")

        def pick(req: Request) -> int:
            t = np.array([now_us(self.env)], dtype=np.int64)
            if topo.load_balancer == "round_robin":
                # the rotation over the live nodes, counted over every request so far
                e = np.searchsorted(at_us, t, side="right")
                live = int(epoch_counts(topo.nodes, counts)[e[0]])
                pos = np.array([len(self.requests) % live], dtype=np.int64)
                return int(slots_at(e, pos, topo.nodes, counts)[0])
            user = np.array([req.user], dtype=np.int64)
            return int(
                assign_nodes_live(topo.load_balancer, user, t, topo.nodes, at_us, counts, rng)[0]
            )

        return pick

    # --- running ----------------------------------------------------------------------------

    def run(self, until: int | None = None, progress: bool = False) -> None:
        """Run the environment (to ``until`` µs, or until nothing is left), with a progress
        bar of decided requests when ``progress``."""
        if not progress:
            self.env.run(until=until)
            return
        from tqdm import tqdm

        with tqdm(total=len(self.requests), unit="req", desc="simulating") as bar:
            self.env.process(self._ticks(bar))
            self.env.run(until=until)
            bar.total = len(self.requests)
            bar.update(self.gateway.done - bar.n)

    def _ticks(self, bar: Any) -> Generator[simpy.Event, Any, None]:
        while True:
            yield At(self.env, now_us(self.env) + TICK_US, PRIO_TICK)
            bar.update(self.gateway.done - bar.n)
            if self.env.peek() == float("inf"):
                return

    def data(self) -> RunData:
        """The run's raw arrays, rows sorted by arrival; checks conservation first."""
        self._check_conservation()
        req = self.requests
        arrivals, order = req.all_arrivals()
        self._order = order
        n = len(req)
        red = self.redis

        def rows(values: list[int], dtype: type[np.generic]) -> np.ndarray:
            a = np.array(values, dtype=dtype)
            return a if order is None else a[order]

        def columns(cols: list[list[int]], dtype: type[np.generic]) -> np.ndarray:
            if not cols:
                return np.zeros((n, 0), dtype=dtype)
            a = np.stack([np.array(c, dtype=dtype) for c in cols], axis=1)
            return a if order is None else a[order]

        depth_t = np.array(red.cmd_at if red else [], dtype=np.int64)
        fin = np.array(red.cmd_fin if red else [], dtype=np.int64)
        shards = np.array(red.cmd_shard, dtype=np.int64) if red and red.shards > 1 else None
        attempt = origin = None
        if self.clients is not None:
            attempt = rows(req.attempt, np.int64)
            origin = self.data_rows(rows(req.origin, np.int64))
        data = RunData(
            arrivals=arrivals,
            node=rows(req.node, np.int64),
            outcomes=columns(req.outcome, np.int8),
            remaining=columns(req.remaining, np.int64),
            decided_us=rows(req.decided, np.int64),
            rejected_by=rows(req.rejected_by, np.int16),
            pool_wait_us=rows(req.pool_wait, np.int64),
            depth_t_us=depth_t,
            depth=queue_depths(depth_t, fin, shards),
            backend_done_us=rows(self._backend_done(n), np.int64) if self.backend else None,
            held_us=rows(req.held, np.int64) if can_hold(self.layers) else None,
            store_breakers=self._store_breakers(),
            attempt=attempt,
            origin=origin,
        )
        if attempt is not None and origin is not None:
            check_attempts(attempt, origin, arrivals.time_us, data.decided_us, data.rejected_by)
        return data

    def _backend_done(self, n: int) -> list[int]:
        """The backend's completion time of each of the ``n`` rows (-1: never entered)."""
        assert self.backend is not None
        done = self.backend.done_us
        return done + [-1] * (n - len(done))

    def _store_breakers(self) -> np.ndarray | None:
        """Every node's store-breaker rows, ``(nodes, layers, SB_COLS)`` (``None``: no layer
        has a breaker)."""
        if not any(cl.spec.store_breaker for cl in self.layers):
            return None
        rows = [node.store_breakers for node in self.nodes]
        return np.array(rows, dtype=np.int64).reshape(len(self.nodes), len(self.layers), -1)

    def data_rows(self, table_rows: list[int] | np.ndarray) -> np.ndarray:
        """Where rows of the request table (``Decision.row``) are in :meth:`data`'s arrays
        (sorted by arrival: a client's requests are interleaved with the scenario's)."""
        rows = np.asarray(table_rows, dtype=np.int64)
        order = getattr(self, "_order", None)
        if order is None:
            return rows
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return inverse[rows]

    def _check_conservation(self) -> None:
        gw = self.gateway
        pools = sum(node.pool.outstanding for node in self.nodes)
        check_conservation(
            len(self.requests),
            gw.arrived,
            gw.done,
            np.array(self.requests.decided, dtype=np.int64),
            {
                "pool connections": pools,
                "pool waiters": sum(node.pool.waiting for node in self.nodes),
                "backend in flight": self.backend.in_flight if self.backend else 0,
                "held slots": self.guards.leftovers(),
            },
        )


def _reader(clock: NodeClock) -> Callable[[int], int] | None:
    """The clock's reading function, ``None`` for one that reads true time (then the
    components use the true instant as it is)."""
    return None if clock.is_perfect else clock.read


def run_world(
    scenario: Scenario,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    progress: bool = False,
    seed: int | None = None,
) -> RunData:
    """Build the world of ``scenario`` from these pieces, run it to the end, return its data."""
    world = World(scenario, arrivals, draws, layers, scenario.seed if seed is None else seed)
    world.run(progress=progress)
    return world.data()


__all__ = ["BACKEND_KINDS", "World", "run_world"]
