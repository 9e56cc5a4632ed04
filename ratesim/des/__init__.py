"""The gateway as public SimPy components: the reference model of a scenario.

``simulate(scenario, engine="event")`` builds these from the scenario and runs them; a SimPy
user builds them the same way (:meth:`World.build`) and composes them with processes of their
own, in the same environment::

    world = World.build(scenario)
    env, gateway = world.env, world.gateway

    def client(env):
        decision = yield gateway.handle(Request(user=7))
        if not decision.admitted:
            yield env.timeout(decision.retry_after_us)
            yield gateway.handle(Request(user=7))

    env.process(client(env))
    world.run()
    data = world.data()

One idea per module: :mod:`~ratesim.des.events` (events at an instant and priority),
:mod:`~ratesim.des.gateway` (nodes, load balancing, the walk through the layers),
:mod:`~ratesim.des.pool` (connection pools), :mod:`~ratesim.des.network` (latency,
partitions), :mod:`~ratesim.des.redis` (shards, faults, failovers), :mod:`~ratesim.des.guards`
(concurrency and breaker layers), :mod:`~ratesim.des.backend` (servers slowed by load),
:mod:`~ratesim.des.source` (traffic), :mod:`~ratesim.des.clients` (clients that retry),
:mod:`~ratesim.des.requests` (requests, decisions and
their table), :mod:`~ratesim.des.world` (assembly, run, results).

Time is integer microseconds of true time (``env.now``); the order of everything at one
instant is :mod:`ratesim.ordering`'s, shared with the compiled runner (:mod:`ratesim.fast`),
which gives the very same run, request by request.
"""

from .backend import Backend
from .clients import Clients
from .events import At, call_at, now_or_at
from .gateway import Gateway, Node
from .guards import Guards
from .network import Network
from .pool import ConnectionPool
from .redis import Command, Redis
from .requests import Decision, Request, RequestTable
from .source import scenario_traffic
from .world import World, run_world

__all__ = [
    "At",
    "Backend",
    "Clients",
    "Command",
    "ConnectionPool",
    "Decision",
    "Gateway",
    "Guards",
    "Network",
    "Node",
    "Redis",
    "Request",
    "RequestTable",
    "World",
    "call_at",
    "now_or_at",
    "run_world",
    "scenario_traffic",
]
