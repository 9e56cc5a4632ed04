"""The event engine: a scenario's world as a SimPy discrete-event simulation.

``simulate(scenario, seed=None, progress=False) -> Result``.

What is modelled (all times integer microseconds of *true* time):

* **Arrivals** come pre-generated (:func:`ratesim.traffic.generate_arrivals`), and are routed to
  gateway nodes by the load balancer: ``round_robin`` (request ``i`` goes to node ``i % N`` in
  arrival order), ``random`` (stream ``"nodes"``) or ``hash_user`` (:func:`ratesim.model.node.hash_user_node`).
* **Node-scoped layers** run inline on the node's own state table at the node's clock reading.
* **Global layers** are one command to the Redis model. The request borrows one connection from
  its node's pool for all its global calls (acquired when it reaches its first global layer,
  returned when its decision is final); an exhausted pool makes it wait FIFO up to
  ``pool_max_wait_ms``, after which every global layer it reaches takes its failure mode. The
  command travels ``lat_out`` to the shard that owns its key (hash slot of the hash-tagged key),
  waits behind earlier commands (one FIFO thread per shard: ``start = max(arrival, busy_until)``,
  ``finish = start + service`` - Lindley's recursion), executes the algorithm's kernel at
  ``start`` (``now_us`` = the node's clock at send time for ``time_source="client"``, the Redis
  clock at ``start`` for ``"redis"``), and replies ``lat_back`` after ``finish``. If the reply
  would come after ``send + timeout``, the caller gives up at the timeout and the layer's
  failure mode decides (``open``: pass on; ``closed``: reject; ``local``: a node-local limiter
  with ``local_share`` of the limit decides) - but the command still executed on the server and
  charged the state, as a real one would. A shard in a ``refused`` outage answers with an error
  after one round trip; a ``blackhole`` outage (or a network partition of the node) never
  answers, so the caller waits for the whole timeout; neither executes the command. A
  failover at ``at`` restores every key to its state at ``at - lost_writes`` (asynchronous
  replication loses the last writes; a write is timed at its command's arrival at the shard),
  steps the Redis clock by ``clock_step_ms``, and with ``flush_scripts`` makes each node's next
  command pay one extra round trip (NOSCRIPT, then the script is sent again).

Event economy: node layers are plain function calls; replies are not events: the continuation
runs directly at its future instant when nothing shared is touched there (recording the outcome,
sending the next command, finishing), and only becomes an event when it must touch state at that
instant (a node-scoped layer after a global one, a local fallback, a pool hand-off while requests
wait). Events are plain callbacks, never generator processes. The two kinds of work that make up
almost all of a run - the arrivals (one batch per distinct instant) and the commands reaching
Redis (which fix each shard's FIFO order) - are keyed exactly like SimPy events but kept out of
SimPy's queue: arrivals are a sorted list, commands a plain heap, and one "pump" event runs both
in key order for as long as they come before SimPy's next event (see ``run_events``). The order
of everything is the one they would have as SimPy events; SimPy's queue only carries the rarer
events (pool hand-offs and wait timeouts, fallbacks, node layers after global ones, backend,
failovers, progress ticks).

Per-request inputs and outputs are flat integer arrays, state tables are lists indexed by a
dense per-layer key id (``np.unique`` of the key, computed once), and each layer's hot path is a
closure with its lookups bound once (``make_node_layer``, ``make_send``, ``make_serve``). Leading
node rate layers (before any global or guard layer) only ever run at arrival, on tables nothing
else touches, so they run up front, layer by layer, in arrival order (``prefix_layer``).

Tie-breaking at one instant (engine-independent, so the fast engine can reproduce it):
connection releases that hand a connection to a waiter first, then the arrivals of that instant
(in arrival order), then every per-request event ordered by ``(request index, layer position)``.

Random draws, all at generation time, per request in arrival order, from per-purpose
:class:`ratesim.rng.Streams` (so a second engine reproduces the very same run from the seed):

1. traffic: ``generate_arrivals`` (streams ``"arrivals"``, ``"users"``, ``"routes"``,
   ``"population"``, ``"trace_jitter"``);
2. ``"nodes"`` (``random`` load balancer only): ``integers(0, N, size=n)``;
3. ``"latency"``: ``sample_us(network.latency, rng, n * G * 2)`` reshaped ``(n, G, 2)``:
   request-major, then global layer in policy order, then out / back; spikes are applied by the
   request's arrival time (:func:`ratesim.model.latency.apply_spikes`);
4. ``"service"``: ``sample_us(redis.service_time, rng, n * G)`` reshaped ``(n, G)``;
5. ``"backend"`` (scenarios with a backend only): ``sample_us(backend.service_time, rng, n)``,
   each admitted request's base service time (slowed by load, see
   :mod:`ratesim.model.backend`).

``G`` is the number of global layers; draws are made for every (request, global layer) pair
whether or not the request reaches that layer, so no draw depends on a decision.
"""

from __future__ import annotations

from pathlib import Path

from .compile import CompiledLayer, Draws, compile_policy, draw_requests, key_ids, shards_of
from .des.world import run_world
from .oracle import run_oracle
from .ordering import (
    MAX_LAYERS,
    PRIO_ARRIVAL,
    PRIO_BACKEND,
    PRIO_FAILOVER,
    PRIO_RELEASE,
    PRIO_STRIDE,
)
from .results import Result, RunData
from .rng import Streams
from .scenario import Scenario, ScenarioError, load_scenario
from .traffic import Arrivals, generate_arrivals

__all__ = [
    "ENGINES",
    "PRIO_ARRIVAL",
    "PRIO_BACKEND",
    "PRIO_FAILOVER",
    "PRIO_RELEASE",
    "PRIO_STRIDE",
    "CompiledLayer",
    "Draws",
    "compile_policy",
    "draw_requests",
    "key_ids",
    "run_events",
    "run_oracle",
    "shards_of",
    "simulate",
]

#: The engines ``simulate`` knows ("auto": the fast one when it models the scenario).
ENGINES = ("auto", "event", "fast")


def run_events(
    scenario: Scenario,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    progress: bool = False,
) -> RunData:
    """Run the scenario's world as the SimPy components of :mod:`ratesim.des` and return the
    raw per-request outcomes (conservation checked)."""
    if len(layers) > MAX_LAYERS:
        raise ScenarioError(f"policy.layers: at most {MAX_LAYERS} layers, got {len(layers)}")
    return run_world(scenario, arrivals, draws, layers, progress)


def simulate(
    scenario: Scenario | str | Path,
    seed: int | None = None,
    progress: bool = False,
    *,
    engine: str = "auto",
    arrivals: Arrivals | None = None,
) -> Result:
    """Run ``scenario`` on the event engine and return its :class:`~ratesim.results.Result`.

    ``scenario`` is a :class:`~ratesim.scenario.Scenario`, the name of a built-in scenario, or
    the path of a YAML file. ``seed=None`` uses ``scenario.seed``. ``engine``: ``"event"`` (or
    ``"auto"``); the fast engine is a separate issue. ``arrivals`` replaces the generated
    traffic (the other draws still come from the seed's streams), for tests and parity checks.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if isinstance(scenario, str | Path):
        scenario = _resolve(scenario)
    if not isinstance(scenario, Scenario):
        raise ValueError(f"scenario must be a ratesim Scenario, got {type(scenario).__name__}")
    try:
        scenario = Scenario.model_validate(scenario.model_dump())
    except ValueError as exc:
        raise ScenarioError(f"scenario {scenario.name!r} cannot run: {exc}") from None
    seed = scenario.seed if seed is None else seed
    streams = Streams(seed)
    if arrivals is None:
        arrivals = generate_arrivals(
            scenario.traffic, scenario.population, scenario.duration_us, streams
        )
    layers = compile_policy(scenario, arrivals)  # draws nothing: the draw order is unchanged
    if engine != "event":
        from .fast import run_fast, unsupported

        reason = unsupported(scenario, layers)
        if reason is None:
            engine = "fast"
        elif engine == "fast":
            raise ScenarioError(
                f"scenario {scenario.name!r}: the fast engine does not model {reason}; "
                "use engine='event' (or 'auto')"
            )
        else:
            engine = "event"
    # the draws go straight in, so that the run can free them once converted
    run = run_fast if engine == "fast" else run_events
    data = run(scenario, arrivals, draw_requests(scenario, arrivals, streams), layers, progress)
    return Result(
        scenario, seed, data, oracle_fn=lambda: run_oracle(arrivals, layers), engine=engine
    )


def _resolve(ref: str | Path) -> Scenario:
    """A built-in scenario by name, else a YAML file by path."""
    from . import scenarios

    if isinstance(ref, str) and ref in scenarios.names():
        return scenarios.get(ref)
    return load_scenario(ref)
