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

import heapq
from array import array
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import simpy

from .algorithms import Algorithm
from .algorithms.breaker import (
    OPEN,
    breaker_on_complete,
    breaker_release_probe,
    breaker_try_pass,
)
from .algorithms.breaker import STATE as BREAKER_STATE
from .algorithms.concurrency import (
    ADMIT,
    HANDOFF,
    IN_FLIGHT,
    QUEUE,
    QUEUED,
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)
from .compile import CompiledLayer, Draws, _q, compile_policy, draw_requests, key_ids, shards_of
from .model.clock import NodeClock
from .model.faults import FailoverSpec, outage_at, partitioned
from .model.redis_server import queue_depths
from .oracle import run_oracle
from .ordering import (
    MAX_LAYERS,
    NEVER_US,
    PRIO_ARRIVAL,
    PRIO_BACKEND,
    PRIO_FAILOVER,
    PRIO_RELEASE,
    PRIO_STRIDE,
    PRIO_TICK,
)
from .outcomes import (
    ALLOWED,
    FAIL_CLOSED,
    FAIL_OPEN,
    LOCAL_ALLOWED,
    LOCAL_REJECTED,
    REJECTED,
    SHADOW_REJECTED,
)
from .policy import BACKEND_KINDS
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
TICK_US = 100_000


def _clock_reader(clock: NodeClock) -> Callable[[int], int] | None:
    """``None`` for a perfect clock (the engine then uses true time directly)."""
    spec = getattr(clock, "spec", None)
    if spec is not None and getattr(spec, "is_perfect", False):
        return None
    return clock.read


def _stepped_reader(
    base: Callable[[int], int] | None, failovers: list[FailoverSpec]
) -> Callable[[int], int]:
    """The Redis clock with each failover's ``clock_step_ms`` added from its instant on."""
    steps = [(f.at_us, round(f.clock_step_ms * 1000)) for f in failovers]

    def read(t: int) -> int:
        now = t if base is None else base(t)
        for at, step in steps:
            if t >= at:
                now += step
        return now

    return read


def _columns(cols: list[array[int]], dtype: type[np.generic], n: int) -> np.ndarray:
    """Per-layer arrays as one ``(n, layers)`` numpy array of ``dtype``."""
    if not cols:
        return np.zeros((n, 0), dtype=dtype)
    return np.stack([np.frombuffer(c, dtype=dtype) for c in cols], axis=1)


def _uniform(algs: list[Algorithm]) -> bool:
    """True when every tier runs the very same algorithm (so one state shape and kernel)."""
    return all(a == algs[0] for a in algs)


class _Call:
    """A bare, already-triggered event for SimPy's queue: one callback, its payload and its
    integer time ``at`` (µs). ``Environment.step`` only needs ``callbacks`` and ``_ok``; a
    slotted object is several times cheaper to create than a ``simpy.Event``."""

    __slots__ = ("_ok", "_value", "at", "callbacks")

    def __init__(self, fn: Callable[[_Call], None], value: Any, at: int) -> None:
        self.callbacks: list[Callable[[_Call], None]] | None = [fn]
        self._value = value
        self._ok = True
        self.at = at


class _Pump(_Call):
    """The event that runs queued arrivals and Redis commands (see ``run_events``)."""

    __slots__ = ("key",)
    key: tuple[int, int, int]


def run_events(
    scenario: Scenario,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    progress: bool = False,
) -> RunData:
    """Run the event simulation and return the raw per-request outcomes.

    Asserts conservation: every arrival gets exactly one final decision, nothing is left in
    flight, every borrowed connection is returned.
    """
    n = len(arrivals)
    n_layers = len(layers)
    if n_layers > MAX_LAYERS:
        raise ScenarioError(f"policy.layers: at most {MAX_LAYERS} layers, got {n_layers}")
    env = simpy.Environment()
    queue: list[Any] = env._queue
    heappush = heapq.heappush
    heappop = heapq.heappop
    eid = env._eid
    cur = 0  # the current instant (µs), set by every callback from its event's ``at``

    def post(fn: Callable[[_Call], None], value: Any, prio: int, at: int) -> None:
        heappush(queue, (at, prio, next(eid), _Call(fn, value, at)))

    nodes = scenario.topology.nodes
    redis = scenario.redis
    net = scenario.network

    # Per-request inputs and outputs are flat int64 arrays (``array('q')``: 8 bytes a value, no
    # Python int object kept per entry); small-valued ones (node, tier, cost) stay lists.
    t_arr = _q(arrivals.time_us)
    node_of: list[int] = draws.node.tolist()
    tier_of: list[int] = arrivals.tier.tolist()
    cost_of: list[int] = arrivals.cost.tolist()
    lat_out = [_q(draws.lat_out_us[:, g]) for g in range(draws.lat_out_us.shape[1])]
    lat_back = [_q(draws.lat_back_us[:, g]) for g in range(draws.lat_back_us.shape[1])]
    service = [_q(draws.service_us[:, g]) for g in range(draws.service_us.shape[1])]
    bk_base = _q(draws.backend_us)
    node_np = draws.node
    # Nothing else needs the draws: ``simulate`` passes them as a bare argument, so this frees
    # their arrays now rather than when the run ends (they are as large as the copies above).
    del draws

    clocks = [NodeClock(spec) for spec in scenario.topology.clock_specs()]
    readers = [_clock_reader(c) for c in clocks]
    clk_at_arrival = arrivals.time_us.copy()
    for k, c in enumerate(clocks):
        if readers[k] is not None:
            sel = node_np == k
            clk_at_arrival[sel] = c.read_many(arrivals.time_us[sel])
    clk_arr = _q(clk_at_arrival)
    del clk_at_arrival
    redis_read = _clock_reader(NodeClock(redis.clock)) if redis is not None else None
    failovers = sorted(redis.failovers, key=lambda f: f.at_us) if redis is not None else []
    if any(f.clock_step_ms for f in failovers):
        redis_read = _stepped_reader(redis_read, failovers)
    script_reload = [False] * nodes  # the node's next command meets an empty script cache
    outages = list(redis.outages) if redis is not None else []
    partitions = list(net.partitions)

    # per layer: outcome code, remaining, state tables
    outcome = [array("b", bytes(n)) for _ in range(n_layers)]
    remaining = [array("q", [-1]) * n for _ in range(n_layers)]
    # state tables: lists indexed by the layer's dense key id (None: key never seen)
    node_tables: list[list[list[Any]]] = [
        [[None] * cl.n_keys for _ in range(nodes)] if cl.spec.scope == "node" else []
        for cl in layers
    ]
    global_tables: list[list[Any]] = [
        [None] * cl.n_keys if cl.spec.scope == "global" else [] for cl in layers
    ]
    local_tables: list[list[list[Any]]] = [
        [[None] * cl.n_keys for _ in range(nodes)] if cl.local_algs is not None else []
        for cl in layers
    ]
    decided = array("q", [-1]) * n
    rejected_by = array("h", [-1]) * n
    pool_wait = array("q", [0]) * n
    conn = bytearray(n)  # 0 none yet, 1 held, 2 unavailable, 3 returned
    waiting = bytearray(n)  # 1 while parked in its node's pool wait queue
    wait_pos = array("q", [0]) * n
    wait_since = array("q", [0]) * n
    cmd_at = array("q")  # per executed command: server arrival, finish, shard
    cmd_fin = array("q")
    cmd_shard: list[int] = []

    n_shards = redis.shards if redis is not None else 1
    busy_until = [0] * n_shards
    pool_size = net.pool_size
    pool_wait_max = round(net.pool_max_wait_ms * 1000)
    in_use = [0] * nodes
    release_heap: list[list[int]] = [[] for _ in range(nodes)]
    waiters: list[deque[int]] = [deque() for _ in range(nodes)]
    live_waiters = [0] * nodes
    arrived = 0
    done = 0

    specs = [cl.spec for cl in layers]
    # kernels and their integer parameters per (layer, tier), looked up once
    # kind: 0 a rate algorithm (kernel), 1 a concurrency limit, 2 a circuit breaker
    kind_of = [
        BACKEND_KINDS.index(s.algorithm.kind) + 1 if s.algorithm.kind in BACKEND_KINDS else 0
        for s in specs
    ]
    kern = [[a.kernel for a in cl.algs] if not kind_of[p] else [] for p, cl in enumerate(layers)]
    par = [[a.params for a in cl.algs] for cl in layers]
    backend = scenario.backend
    bk_done = array("q", [-1]) * n
    bk_inflight = 0
    # per request: the concurrency slots / breaker passes it holds until the backend completes
    held: list[list[tuple[Any, ...]] | None] = [None] * n
    # layer position + 1 while waiting for a slot of that concurrency layer, else 0: a request
    # can wait at one layer, be handed a slot, then wait at a later one, and the first layer's
    # timeout (still queued) must then leave it alone
    cwait = bytearray(n)
    cqueues: list[list[dict[int, deque[int]]]] = [[{} for _ in range(nodes)] for _ in layers]
    is_node = [s.scope == "node" for s in specs]
    is_shadow = [s.mode == "shadow" for s in specs]
    applies: list[list[bool] | None] = [
        None if cl.applies_np is None else cl.applies_np.tolist() for cl in layers
    ]
    keys: list[list[int]] = [cl.keys.tolist() for cl in layers]
    algs = [cl.algs for cl in layers]
    timeout_us = [round(s.timeout_ms * 1000) for s in specs]
    use_redis_time = [s.time_source == "redis" for s in specs]
    guard_us = [round(s.drift_guard_ms * 1000) if s.drift_guard_ms else 0 for s in specs]
    needs_client_time = [s.time_source == "client" or bool(s.drift_guard_ms) for s in specs]
    gidx = [cl.gidx for cl in layers]

    def finish(i: int, y: int, rej: int) -> None:
        nonlocal done
        decided[i] = y
        rejected_by[i] = rej
        done += 1
        if conn[i] == 1:
            conn[i] = 3
            nd = node_of[i]
            if live_waiters[nd]:
                post(on_release, nd, PRIO_RELEASE, y)
            else:
                heappush(release_heap[nd], y)
        if backend is None:
            return
        if rej < 0:
            if y == cur:
                backend_start(i, y)
            else:
                post(on_backend_start, i, i * PRIO_STRIDE + PRIO_BACKEND, y)
        elif held[i] is not None:
            if y == cur:
                release_held(i, y, False)
            else:
                post(on_release_held, i, i * PRIO_STRIDE + PRIO_BACKEND, y)

    def local_clock(i: int, x: int) -> int:
        rd = readers[node_of[i]]
        return x if rd is None else (clk_arr[i] if x == t_arr[i] else rd(x))

    def run_guard_layer(i: int, pos: int, x: int) -> int:
        """A concurrency or breaker layer at ``x`` (== now): 1 pass, 0 reject, 2 parked."""
        nd = node_of[i]
        alg = algs[pos][tier_of[i]]
        p = alg.params
        table = node_tables[pos][nd]
        k = keys[pos][i]
        st = table[k]
        if st is None:
            st = table[k] = alg.new_state()
        local_now = local_clock(i, x)
        if kind_of[pos] == 1:
            code = concurrency_acquire(p, st, local_now)
            if code == ADMIT:
                outcome[pos][i] = ALLOWED
                remaining[pos][i] = p[0] - st[IN_FLIGHT]
                hold(i, (1, pos, p, st, nd, k))
                return 1
            if code == QUEUE:
                cqueues[pos][nd].setdefault(k, deque()).append(i)
                cwait[i] = pos + 1
                post(on_conc_timeout, (i, pos, st), i * PRIO_STRIDE + pos, x + p[1])
                return 2
        else:
            probe = st[BREAKER_STATE] == OPEN
            if breaker_try_pass(p, st, local_now):
                outcome[pos][i] = ALLOWED
                hold(i, (2, pos, p, st, local_now, probe))
                return 1
        outcome[pos][i] = REJECTED
        return 0

    def hold(i: int, h: tuple[Any, ...]) -> None:
        hs = held[i]
        if hs is None:
            held[i] = [h]
        else:
            hs.append(h)

    def on_conc_timeout(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        w, pos, st = ev._value
        if cwait[w] != pos + 1:
            return
        cwait[w] = 0
        concurrency_cancel_wait(par[pos][tier_of[w]], st, local_clock(w, cur))
        outcome[pos][w] = REJECTED
        finish(w, cur, pos)

    def release_held(i: int, y: int, completed: bool) -> None:
        """Give back request ``i``'s slots and report to its breakers, at ``y`` (== now)."""
        hs = held[i]
        held[i] = None
        if hs is None:
            return
        local_now = local_clock(i, y)
        handoffs = []
        for h in hs:
            if h[0] == 1:
                _, pos, p, st, nd, k = h
                if concurrency_complete(p, st, local_now) == HANDOFF:
                    dq = cqueues[pos][nd][k]
                    w = dq.popleft()
                    while cwait[w] != pos + 1:  # skip waiters that gave up or moved on
                        w = dq.popleft()
                    cwait[w] = 0
                    outcome[pos][w] = ALLOWED
                    remaining[pos][w] = 0
                    hold(w, h)
                    handoffs.append((w, pos))
            else:
                _, pos, p, st, t_pass, probe = h
                if completed:
                    breaker_on_complete(p, st, local_now, local_now - t_pass, 0)
                elif probe:
                    breaker_release_probe(p, st, local_now)
        for w, pos in handoffs:
            proceed(w, pos + 1, y)

    def on_release_held(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        release_held(ev._value, cur, False)

    def backend_start(i: int, y: int) -> None:
        """An admitted request enters the backend at ``y`` (== now)."""
        nonlocal bk_inflight
        assert backend is not None
        bk_inflight += 1
        slowdown = 1.0 + backend.load_factor * (bk_inflight - 1) / backend.servers
        post(
            on_backend_done, i, i * PRIO_STRIDE + PRIO_BACKEND + 1, y + round(bk_base[i] * slowdown)
        )

    def on_backend_start(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        backend_start(ev._value, cur)

    def on_backend_done(ev: _Call) -> None:
        nonlocal cur, bk_inflight
        cur = ev.at
        i = ev._value
        bk_inflight -= 1
        bk_done[i] = cur
        release_held(i, cur, True)

    def make_node_layer(pos: int) -> Callable[[int, int], bool]:
        """Node rate layer ``pos`` as ``fn(i, x) -> passed``, its per-layer lookups bound once."""
        tables = node_tables[pos]
        keys_p, outcome_p, remaining_p = keys[pos], outcome[pos], remaining[pos]
        algs_p, kern_p, par_p = algs[pos], kern[pos], par[pos]
        miss = SHADOW_REJECTED if is_shadow[pos] else REJECTED
        kn, pr, alg0 = kern_p[0], par_p[0], algs_p[0]
        uniform = _uniform(algs_p)

        def run(i: int, x: int) -> bool:
            """Evaluate the layer for request ``i`` at true time ``x`` (== now); False if
            rejected."""
            nd = node_of[i]
            rd = readers[nd]
            local_now = x if rd is None else (clk_arr[i] if x == t_arr[i] else rd(x))
            table = tables[nd]
            k = keys_p[i]
            st = table[k]
            if uniform:
                if st is None:
                    st = table[k] = alg0.new_state()
                ok, rem, _, _ = kn(pr, st, local_now, cost_of[i])
            else:
                tr = tier_of[i]
                if st is None:
                    st = table[k] = algs_p[tr].new_state()
                ok, rem, _, _ = kern_p[tr](par_p[tr], st, local_now, cost_of[i])
            remaining_p[i] = rem
            if ok:
                outcome_p[i] = ALLOWED
                return True
            outcome_p[i] = miss
            return miss == SHADOW_REJECTED

        return run

    def proceed(i: int, pos: int, x: int) -> None:
        """Walk request ``i`` through layers from ``pos`` at true time ``x`` (== the current instant)."""
        while pos < n_layers:
            ap = applies[pos]
            if ap is not None and not ap[i]:
                pos += 1
                continue
            if is_node[pos]:
                if kind_of[pos]:
                    code = run_guard_layer(i, pos, x)
                    if code == 2:
                        return  # waiting for a concurrency slot
                    if code == 0:
                        finish(i, x, pos)
                        return
                elif not node_fn[pos](i, x):
                    finish(i, x, pos)
                    return
                pos += 1
                continue
            if conn[i] == 0 and not acquire(i, pos, x):
                return  # parked in the pool's wait queue
            if conn[i] == 2:
                fail(i, pos, x)
                return
            sends[pos](i, x)
            return
        finish(i, x, -1)

    def resume(i: int, pos: int, x: int) -> None:
        """Continue request ``i`` at layer ``pos`` at true time ``x >= the current instant``."""
        if x == cur:
            proceed(i, pos, x)
            return
        while pos < n_layers:
            ap = applies[pos]
            if ap is None or ap[i]:
                break
            pos += 1
        if pos == n_layers:
            finish(i, x, -1)
        elif not is_node[pos] and conn[i] == 1:
            sends[pos](i, x)
        else:
            post(on_proceed, (i, pos), i * PRIO_STRIDE + pos, x)

    def on_proceed(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        i, pos = ev._value
        proceed(i, pos, cur)

    def acquire(i: int, pos: int, x: int) -> bool:
        """Borrow a connection at ``x`` (== the current instant); False when the request must wait."""
        nd = node_of[i]
        heap = release_heap[nd]
        while heap and heap[0] <= x:
            heappop(heap)
            in_use[nd] -= 1
        if not live_waiters[nd] and in_use[nd] < pool_size:
            in_use[nd] += 1
            conn[i] = 1
            return True
        if pool_wait_max == 0:
            conn[i] = 2
            return True
        waiters[nd].append(i)
        waiting[i] = 1
        wait_pos[i] = pos
        wait_since[i] = x
        live_waiters[nd] += 1
        if live_waiters[nd] == 1 and heap:
            # releases now need events, to hand their connection to the waiter on time
            for r in heap:
                post(on_release, nd, PRIO_RELEASE, r)
            heap.clear()
        post(on_wait_timeout, i, i * PRIO_STRIDE + pos, x + pool_wait_max)
        return False

    def on_release(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        nd = ev._value
        in_use[nd] -= 1
        q = waiters[nd]
        while q:
            w = q.popleft()
            if waiting[w]:
                waiting[w] = 0
                live_waiters[nd] -= 1
                in_use[nd] += 1
                conn[w] = 1
                pool_wait[w] = cur - wait_since[w]
                proceed(w, wait_pos[w], cur)
                return

    def on_wait_timeout(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        w = ev._value
        if not waiting[w]:
            return
        waiting[w] = 0
        live_waiters[node_of[w]] -= 1
        conn[w] = 2
        pool_wait[w] = cur - wait_since[w]
        proceed(w, wait_pos[w], cur)

    reload_possible = any(f.flush_scripts for f in failovers)
    # Redis commands in flight and the pump that runs them (see "Arrivals and Redis commands")
    srv: list[tuple[Any, ...]] = []
    running = _Pump(lambda ev: None, None, -1)  # marks "the pump is running now"
    pump: _Pump | None = None  # the live pump (queued), ``running`` or None
    dead: dict[tuple[int, int, int], _Pump] = {}  # queued pumps that must do nothing

    def make_send(pos: int) -> Callable[[int, int], None]:
        """Global layer ``pos``'s client side as ``fn(i, x)``: send request ``i``'s command at
        true time ``x >= the current instant``."""
        g = gidx[pos]
        lat_out_g, lat_back_g, shard_p = lat_out[g], lat_back[g], shard_tbl[pos]
        tmo = timeout_us[pos]
        serve_p = serves[pos]
        client_time = needs_client_time[pos]
        faulty = bool(partitions or outages)

        def send(i: int, x: int) -> None:
            nonlocal pump
            deadline = x + tmo
            a = x + lat_out_g[i]
            if faulty:
                if partitions and partitioned(partitions, x, node_of[i]):
                    fail(i, pos, deadline)
                    return
                kind = outage_at(outages, a, shard_p[i]) if outages else None
                if kind == "refused":
                    fail(i, pos, min(a + lat_back_g[i], deadline))
                    return
                if kind == "blackhole":
                    fail(i, pos, deadline)
                    return
            client_now = x
            if client_time:
                rd = readers[node_of[i]]
                if rd is not None:
                    client_now = rd(x)
            if reload_possible and script_reload[node_of[i]]:
                # NOSCRIPT: the error comes back, the script is loaded, the call goes out again
                script_reload[node_of[i]] = False
                a += lat_back_g[i] + lat_out_g[i]
            late = a > deadline
            entry = (a, i * PRIO_STRIDE + pos, next(eid), serve_p, i, client_now, deadline, late)
            heappush(srv, entry)
            if pump is not running and (pump is None or entry < pump.key):
                if pump is not None:
                    dead[pump.key] = pump
                post_pump(a, entry[1], entry[2])
            if late:
                fail(i, pos, deadline)

        return send

    shard_tbl = [cl.shard if cl.shard is not None else [] for cl in layers]

    def make_serve(pos: int) -> Callable[[int, int, int, int, bool], None]:
        """Global layer ``pos``'s server side as ``fn(a, i, client_now, deadline, charge_only)``."""
        g = gidx[pos]
        shard_p, service_g, lat_back_g = shard_tbl[pos], service[g], lat_back[g]
        guard = guard_us[pos]
        redis_time = use_redis_time[pos]
        table = global_tables[pos]
        keys_p, outcome_p, remaining_p = keys[pos], outcome[pos], remaining[pos]
        algs_p, kern_p, par_p = algs[pos], kern[pos], par[pos]
        kn, pr, alg0 = kern_p[0], par_p[0], algs_p[0]
        uniform = _uniform(algs_p)
        shadow = is_shadow[pos]
        sharded = n_shards > 1
        nxt = pos + 1
        at_append, fin_append = cmd_at.append, cmd_fin.append

        def serve(a: int, i: int, client_now: int, deadline: int, charge_only: bool) -> None:
            """The command of request ``i`` reaches its shard at ``a`` (== now)."""
            sh = shard_p[i] if sharded else 0
            start = busy_until[sh]
            if a > start:
                start = a
            fin = start + service_g[i]
            busy_until[sh] = fin
            at_append(a)
            fin_append(fin)
            if sharded:
                cmd_shard.append(sh)
            server_now = start if redis_read is None else redis_read(start)
            reply = fin + lat_back_g[i]
            if guard and abs(client_now - server_now) > guard:
                if not charge_only:
                    fail(i, pos, min(reply, deadline))
                return
            k = keys_p[i]
            st = table[k]
            now_k = server_now if redis_time else client_now
            if uniform:
                if st is None:
                    st = table[k] = alg0.new_state()
                ok, rem, _, _ = kn(pr, st, now_k, cost_of[i])
            else:
                tr = tier_of[i]
                if st is None:
                    st = table[k] = algs_p[tr].new_state()
                ok, rem, _, _ = kern_p[tr](par_p[tr], st, now_k, cost_of[i])
            if charge_only:
                return
            if reply > deadline:
                fail(i, pos, deadline)
                return
            remaining_p[i] = rem
            if ok:
                outcome_p[i] = ALLOWED
            elif shadow:
                outcome_p[i] = SHADOW_REJECTED
            else:
                outcome_p[i] = REJECTED
                finish(i, reply, pos)
                return
            if reply == cur:
                proceed(i, nxt, reply)
                return
            p = nxt  # resume(i, nxt, reply), inlined
            while p < n_layers:
                ap = applies[p]
                if ap is None or ap[i]:
                    break
                p += 1
            if p == n_layers:
                finish(i, reply, -1)
            elif not is_node[p] and conn[i] == 1:
                sends[p](i, reply)
            else:
                post(on_proceed, (i, p), i * PRIO_STRIDE + p, reply)

        return serve

    def fail(i: int, pos: int, y: int) -> None:
        """Layer ``pos`` could not be asked; its failure mode decides at true time ``y``."""
        mode = specs[pos].failure_mode
        if mode == "local" and y != cur:
            post(on_fail_local, (i, pos), i * PRIO_STRIDE + pos, y)
            return
        if mode == "open":
            outcome[pos][i] = FAIL_OPEN
            resume(i, pos + 1, y)
        elif mode == "closed":
            outcome[pos][i] = FAIL_CLOSED
            if is_shadow[pos]:
                resume(i, pos + 1, y)
            else:
                finish(i, y, pos)
        else:
            fail_local(i, pos, y)

    def on_fail_local(ev: _Call) -> None:
        nonlocal cur
        cur = ev.at
        i, pos = ev._value
        fail_local(i, pos, cur)

    def fail_local(i: int, pos: int, y: int) -> None:
        nd = node_of[i]
        rd = readers[nd]
        local_now = y if rd is None else rd(y)
        local_algs = layers[pos].local_algs
        assert local_algs is not None
        alg = local_algs[tier_of[i]]
        table = local_tables[pos][nd]
        k = keys[pos][i]
        st = table[k]
        if st is None:
            st = table[k] = alg.new_state()
        ok, rem, _, _ = alg.kernel(alg.params, st, local_now, cost_of[i])
        remaining[pos][i] = rem
        if ok:
            outcome[pos][i] = LOCAL_ALLOWED
        elif is_shadow[pos]:
            outcome[pos][i] = LOCAL_REJECTED
        else:
            outcome[pos][i] = LOCAL_REJECTED
            finish(i, y, pos)
            return
        resume(i, pos + 1, y)

    def prefix_layer(pos: int, todo: range | list[int], rej: array[int]) -> list[int]:
        """Node rate layer ``pos`` for the requests ``todo`` at their arrival instants, in
        arrival order (what ``make_node_layer``'s function does, in one loop); returns those
        that go on, marks the others rejected by ``pos`` in ``rej``."""
        tables = node_tables[pos]
        keys_p, outcome_p, remaining_p = keys[pos], outcome[pos], remaining[pos]
        algs_p, kern_p, par_p = algs[pos], kern[pos], par[pos]
        ap = applies[pos]
        shadow = is_shadow[pos]
        passed: list[int] = []
        keep = passed.append
        for i in todo:
            if ap is not None and not ap[i]:
                keep(i)
                continue
            nd = node_of[i]
            local_now = t_arr[i] if readers[nd] is None else clk_arr[i]
            table = tables[nd]
            k = keys_p[i]
            st = table[k]
            tr = tier_of[i]
            if st is None:
                st = table[k] = algs_p[tr].new_state()
            ok, rem, _, _ = kern_p[tr](par_p[tr], st, local_now, cost_of[i])
            remaining_p[i] = rem
            if ok:
                outcome_p[i] = ALLOWED
                keep(i)
            elif shadow:
                outcome_p[i] = SHADOW_REJECTED
                keep(i)
            else:
                outcome_p[i] = REJECTED
                rej[i] = pos
        return passed

    node_fn: list[Any] = [
        make_node_layer(p) if is_node[p] and not kind_of[p] else None for p in range(n_layers)
    ]
    # Leading node rate layers run only at arrival, each on tables nothing else touches, so
    # their kernel calls per table are in arrival order whatever else happens: run them up
    # front, layer by layer (``pre_rej[i]``: the rejecting layer, -1 if passed).
    n_pre = 0
    while n_pre < n_layers and is_node[n_pre] and not kind_of[n_pre]:
        n_pre += 1
    pre_rej = array("h", [-1]) * (n if n_pre else 0)
    todo: range | list[int] = range(n)
    for p in range(n_pre):
        todo = prefix_layer(p, todo, pre_rej)
    serves: list[Any] = [make_serve(p) if not is_node[p] else None for p in range(n_layers)]
    sends: list[Any] = [make_send(p) if not is_node[p] else None for p in range(n_layers)]

    # Arrivals and Redis commands bypass SimPy's queue: arrivals are a sorted list (one batch
    # per distinct instant, key ``(instant, PRIO_ARRIVAL)``), commands a plain heap ``srv`` of
    # ``(at, prio, seq, payload...)`` with ``seq`` from SimPy's own event counter. One "pump"
    # event, keyed like the earliest of the two, runs them in merged key order for as long as
    # they come strictly before SimPy's next event: exactly the order the same items would
    # have had as SimPy events, at a fraction of the cost. While the pump is queued, a command
    # pushed ahead of it gets a new pump; the old one is dead (ignored when it fires).
    if n:
        instants, starts = np.unique(arrivals.time_us, return_index=True)
        bounds: list[int] = [*starts.tolist(), n]
        inst: list[int] = instants.tolist()
    else:
        bounds, inst = [0], []
    n_batches = len(inst)
    b_next = 0  # the next arrival batch

    def post_pump(k0: int, k1: int, k2: int) -> None:
        nonlocal pump
        key = (k0, k1, k2)
        ev = dead.pop(key, None)  # revive a dead pump at the same key rather than duplicate it
        if ev is None:
            ev = _Pump(on_pump, None, k0)
            ev.key = key
            heappush(queue, (k0, k1, k2, ev))
        pump = ev

    def on_pump(ev: _Call) -> None:
        nonlocal pump, cur, b_next, arrived
        if ev is not pump:
            dead.pop(ev.key, None)  # type: ignore[attr-defined]
            return
        pump = running
        b = b_next
        while True:
            if srv:
                s0 = srv[0]
                take_arrival = b < n_batches and inst[b] <= s0[0]
            elif b < n_batches:
                take_arrival = True
            else:
                b_next = b
                pump = None
                return
            if queue:  # SimPy has events too: stop before the first one that comes earlier
                q0 = queue[0]
                while type(q0[3]) is _Pump:  # every queued pump is dead while this one runs
                    heappop(queue)
                    dead.pop(q0[3].key, None)
                    if not queue:
                        break
                    q0 = queue[0]
                else:
                    if take_arrival:
                        now = inst[b]
                        if q0[0] < now or (q0[0] == now and q0[1] < PRIO_ARRIVAL):
                            b_next = b
                            pump = None
                            post_pump(now, PRIO_ARRIVAL, next(eid))
                            return
                    elif q0 < s0:
                        b_next = b
                        pump = None
                        post_pump(s0[0], s0[1], s0[2])
                        return
            if take_arrival:
                cur = now = inst[b]
                lo, hi = bounds[b], bounds[b + 1]
                b += 1
                arrived += hi - lo
                if n_pre:
                    for i in range(lo, hi):
                        if pre_rej[i] < 0:
                            proceed(i, n_pre, now)
                        else:
                            finish(i, now, pre_rej[i])
                else:
                    for i in range(lo, hi):
                        proceed(i, 0, now)
            else:
                heappop(srv)
                cur = a = s0[0]
                s0[3](a, s0[4], s0[5], s0[6], s0[7])
                # the common case in a tight loop: commands only, up to the next arrival
                # instant (which goes first at equal times), while SimPy has nothing queued
                limit = inst[b] if b < n_batches else NEVER_US
                while srv and not queue:
                    s0 = srv[0]
                    if s0[0] >= limit:
                        break
                    heappop(srv)
                    cur = a = s0[0]
                    s0[3](a, s0[4], s0[5], s0[6], s0[7])

    if n_batches:
        post_pump(inst[0], PRIO_ARRIVAL, next(eid))

    # Failovers: the state as it was at ``at - lost_writes`` comes back at ``at`` (writes are
    # timed at the command's arrival at its shard); both events precede everything else at
    # their instant.
    snapshots: dict[int, list[list[Any]]] = {}

    def on_snapshot(ev: _Call) -> None:
        snapshots[ev._value] = [
            [None if st is None else list(st) for st in t] for t in global_tables
        ]

    def on_failover(ev: _Call) -> None:
        j = ev._value
        for table, saved in zip(global_tables, snapshots.pop(j), strict=True):
            table[:] = saved
        if failovers[j].flush_scripts:
            script_reload[:] = [True] * nodes

    for j, f in enumerate(failovers):
        post(on_snapshot, j, PRIO_FAILOVER, max(0, f.at_us - f.lost_writes_us))
        post(on_failover, j, PRIO_FAILOVER, f.at_us)
    if progress:
        from tqdm import tqdm

        with tqdm(total=n, unit="req", desc="simulating") as bar:

            def on_tick(ev: _Call) -> None:
                bar.update(done - bar.n)
                if queue:  # only while the simulation has something left to do
                    post(on_tick, None, PRIO_TICK, max(ev.at + TICK_US, queue[0][0]))

            post(on_tick, None, PRIO_TICK, 0)
            env.run()
            bar.update(done - bar.n)
    else:
        env.run()

    # conservation: every arrival has one final decision; nothing in flight; pools whole
    if arrived != n or done != n or min(decided, default=0) < 0:
        raise AssertionError(
            f"conservation violated: {n} arrivals, {arrived} arrived, {done} decided "
            f"({arrived - done} in flight)"
        )
    for nd in range(nodes):
        if in_use[nd] != len(release_heap[nd]) or live_waiters[nd] != 0:
            raise AssertionError(f"conservation violated: node {nd} pool not returned")
    if bk_inflight or any(h is not None for h in held) or any(cwait):
        raise AssertionError("conservation violated: requests left in the backend or holding slots")
    for pos in range(n_layers):
        if kind_of[pos] == 1:
            for table in node_tables[pos]:
                for st in table:
                    if st is not None and (st[IN_FLIGHT] or st[QUEUED]):
                        raise AssertionError(f"conservation violated: layer {pos} slots held")
    depth_t = np.frombuffer(cmd_at, dtype=np.int64)
    shard_arr = np.array(cmd_shard, dtype=np.int64) if n_shards > 1 else None
    return RunData(
        arrivals=arrivals,
        node=node_np,
        outcomes=_columns(outcome, np.int8, n),
        remaining=_columns(remaining, np.int64, n),
        decided_us=np.frombuffer(decided, dtype=np.int64),
        rejected_by=np.frombuffer(rejected_by, dtype=np.int16),
        pool_wait_us=np.frombuffer(pool_wait, dtype=np.int64),
        depth_t_us=depth_t,
        depth=queue_depths(depth_t, np.frombuffer(cmd_fin, dtype=np.int64), shard_arr),
        backend_done_us=np.frombuffer(bk_done, dtype=np.int64) if backend is not None else None,
    )


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
