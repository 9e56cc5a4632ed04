"""Running a scenario on the fast engine: its tables built from the scenario, the loop driven
in chunks (progress, heap growth), the conservation checks and the :class:`RunData`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..algorithms.concurrency import IN_FLIGHT, QUEUED
from ..compile import LB_CODES, can_hold, compile_clients
from ..conservation import check_conservation
from ..model.clock import NodeClock, clock_tables, redis_clock
from ..model.faults import fault_tables
from ..model.redis_server import SNAPSHOT, failover_schedule, queue_depths
from ..model.store_breaker import SB_COLS, SB_PROBE
from ..ordering import PRIO_FAILOVER
from ..policy import BACKEND_KINDS
from ..results import RunData
from .heaps import push, room
from .kernels import fill_tier_rows
from .layout import (
    C_ARRIVED,
    C_BACKEND,
    C_BK_INFLIGHT,
    C_CLIENTS,
    C_CMD,
    C_COLS,
    C_DONE,
    C_GLOGS,
    C_LAYERS,
    C_POOL_SIZE,
    C_POOL_WAIT,
    C_PRE,
    C_ROWS,
    C_SHARDS,
    G_BREAKER,
    G_CONCURRENCY,
    G_RATE,
    H_ROWS,
    K_FAILOVER,
    K_SNAPSHOT,
    L_GUARD_KIND,
    L_NKEYS,
    L_OFF,
    L_SIZE,
    LY_COLS,
    N_IN_USE,
    N_LIVE,
    N_PERFECT,
    N_RLEN,
    N_WHEAD,
    N_WTAIL,
    NV_COLS,
    R_ATTEMPT,
    R_BK_DONE,
    R_COLS,
    R_COST,
    R_CWAIT,
    R_DECIDED,
    R_HELD,
    R_HOLDS,
    R_NODE,
    R_ORIGIN,
    R_POOL_WAIT,
    R_REJ,
    R_RETRY,
    R_T,
    R_TIER,
    ST_FINISHED,
    ST_GROW,
    ST_RETRY,
    TQ_COLS,
    TQ_MAX,
    World,
)
from .logpool import first_rings, is_log, new_pools, table_size
from .loop import prefix, run
from .retries import client_counters, client_tables, fill_and_grow
from .rows import fill_rows, local_clock_us, request_rows
from .stream import fold_decided
from .support import unsupported

if TYPE_CHECKING:
    from ..aggregates import RunAggregates
    from ..compile import CompiledClients, CompiledLayer, Draws
    from ..scenario import Scenario
    from ..traffic import Arrivals


@dataclass
class _Tables:
    """Per-layer tables: keys (and node-side slots), applicability, layer columns, kernels and
    parameters, shards, limiter state (node side, Redis side and its failover snapshots) and the
    guard layers' per-request holds, wait queues and hand-off stack."""

    KEYS: np.ndarray
    LKEYS: np.ndarray
    APPLIES: np.ndarray
    LY: np.ndarray
    KK: np.ndarray
    PP: np.ndarray
    SHARD: np.ndarray
    STATE: np.ndarray
    GSTATE: np.ndarray
    SNAP: np.ndarray
    SHP: np.ndarray
    LOGS: Any
    PRL: np.ndarray
    CQ: np.ndarray
    STACK: np.ndarray


def run_fast(
    scenario: Scenario,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    progress: bool = False,
    chunk_us: int = 1_000_000,
    heap_size: int = 4096,
    *,
    seed: int | None = None,
    fold: RunAggregates | None = None,
) -> RunData:
    """Run ``scenario`` on the compiled loop; same contract (and same result) as
    :func:`ratesim.engine.run_events`. Raise ``ValueError`` if :func:`unsupported` says so.

    ``chunk_us``: simulated µs per call of the loop while a progress bar is shown;
    ``heap_size``: initial room of the event heap (it grows as needed); ``seed`` (default: the
    scenario's) keys the draws of retries. ``fold``: aggregates the run folds its requests
    into as it goes (:mod:`ratesim.fast.stream`; the loop then always runs in chunks of
    ``chunk_us``), finished with the run's depths and store breakers; with clients that retry
    (rows appended out of arrival order) the finished run's rows are folded instead."""
    reason = unsupported(scenario, layers)
    if reason is not None:
        raise ValueError(f"the fast engine does not model {reason}")
    node_np = draws.node
    seed = scenario.seed if seed is None else seed
    clients = compile_clients(scenario, arrivals, seed)
    world, T = _world(scenario, arrivals, draws, layers, heap_size, clients)
    del draws  # the engine handed them over; free them before the run
    R, C = world.R, world.C
    prefix(
        R, T.KEYS, T.APPLIES, world.OUT, world.REM, T.LY, T.KK, T.PP, world.PF, T.STATE,
        T.LOGS, int(C[C_PRE]), world.TOPO_AT, T.SHP, 0, len(arrivals),
    )  # fmt: skip
    folded = 0

    def on_chunk(w: World) -> None:
        nonlocal folded
        assert fold is not None
        folded = fold_decided(w, fold, folded, can_hold(layers))

    streamed = fold is not None and clients is None
    world = _drive(
        world, len(arrivals), progress, chunk_us, (scenario, seed, arrivals.user),
        on_chunk if streamed else None,
    )  # fmt: skip
    if clients is not None:
        data = _client_run_data(world, T, scenario, arrivals, can_hold(layers))
        data.store_breakers = _store_breakers(world.SB, layers, scenario.topology.slots)
        if fold is not None:
            fold.fold_run_data(data)
        return data
    R, CMD = world.R, world.CMD

    _check_conservation(R, world.NV, C, T, scenario.topology.slots)
    n_cmd = int(C[C_CMD])
    depth_t = CMD[0, :n_cmd].copy()
    shard_arr = CMD[2, :n_cmd].copy() if world.BUSY.shape[0] > 1 else None
    data = RunData(
        arrivals=arrivals,
        node=node_np,
        outcomes=np.ascontiguousarray(world.OUT.T),
        remaining=np.ascontiguousarray(world.REM.T),
        decided_us=R[:, R_DECIDED].copy(),
        rejected_by=R[:, R_REJ].astype(np.int16),
        pool_wait_us=R[:, R_POOL_WAIT].copy(),
        depth_t_us=depth_t,
        depth=queue_depths(depth_t, CMD[1, :n_cmd].copy(), shard_arr),
        backend_done_us=R[:, R_BK_DONE].copy() if scenario.backend is not None else None,
        held_us=R[:, R_HELD].copy() if can_hold(layers) else None,
        store_breakers=_store_breakers(world.SB, layers, scenario.topology.slots),
    )
    if fold is not None:
        on_chunk(world)
        fold.fold_depth(data.depth_t_us, data.depth)
        fold.finish(data.store_breakers)
    return data


def _store_breaker_table(layers: list[CompiledLayer], nodes: int) -> np.ndarray:
    """``SB``: a closed breaker per (node, layer) (a placeholder row when no layer has one)."""
    rows = nodes * len(layers) if any(cl.spec.store_breaker for cl in layers) else 1
    SB = np.zeros((rows, SB_COLS), dtype=np.int64)
    SB[:, SB_PROBE] = -1
    return SB.reshape(-1)


def _store_breakers(SB: np.ndarray, layers: list[CompiledLayer], nodes: int) -> np.ndarray | None:
    """The run's final store-breaker rows as ``(nodes, layers, SB_COLS)`` (``None``: no layer
    has a breaker), as :class:`RunData` holds them."""
    if not any(cl.spec.store_breaker for cl in layers):
        return None
    return SB.reshape(nodes, len(layers), SB_COLS).copy()


def _world(
    scenario: Scenario,
    arrivals: Arrivals,
    draws: Draws,
    layers: list[CompiledLayer],
    heap_size: int,
    clients: CompiledClients | None = None,
) -> tuple[World, _Tables]:
    """Every table of the run, as the :class:`World` the loop works on (and the layer tables
    the caller checks afterwards), the failovers' events already posted; with ``clients``
    that retry, the request tables have room for retries (and grow on demand)."""
    n = len(arrivals)
    users = n
    if clients is not None:
        n = users + max(64, users // 4)  # rows of room: retries are appended
    redis = scenario.redis
    g_count = draws.lat_out_us.shape[1]
    failovers = sorted(redis.failovers, key=lambda f: f.at_us) if redis is not None else []
    clocks = [NodeClock(spec) for spec in scenario.topology.clock_specs()]
    R = _request_table(arrivals, draws, clocks, n)
    T = _layer_tables(
        layers,
        R[:, R_NODE],
        max(1, len(arrivals.tier_names)),
        g_count,
        len(failovers),
        len(clocks) if clients is not None else 0,
        users,
    )
    LAT = np.zeros((max(g_count, 1), 3, n), dtype=_lat_dtype(draws, clients is None))
    if g_count:
        LAT[:g_count, 0, :users] = draws.lat_out_us.T
        LAT[:g_count, 1, :users] = draws.lat_back_us.T
        LAT[:g_count, 2, :users] = draws.service_us.T
    H, C = _heap_and_counters(scenario, layers, failovers, heap_size)
    if clients is not None:
        client_counters(C, LB_CODES[scenario.topology.load_balancer], users)
    n = users
    if n:
        instants, starts = np.unique(arrivals.time_us, return_index=True)
        INST = instants.astype(np.int64)
        BOUNDS = np.append(starts, n).astype(np.int64)
    else:
        INST = np.zeros(0, dtype=np.int64)
        BOUNDS = np.zeros(1, dtype=np.int64)
    world = assemble_world(
        scenario, layers, T, R, LAT, (INST, BOUNDS), (H, C), clocks, failovers, g_count,
        client_tables(scenario, clients, users, g_count, layers, arrivals.user),
    )  # fmt: skip
    return world, T


def assemble_world(
    scenario: Scenario,
    layers: list[CompiledLayer],
    T: _Tables,
    R: np.ndarray,
    LAT: np.ndarray,
    batches: tuple[np.ndarray, np.ndarray],
    heap: tuple[np.ndarray, np.ndarray],
    clocks: list[NodeClock],
    failovers: list[Any],
    g_count: int,
    client_fields: dict[str, Any],
) -> World:
    """The :class:`World` of a run from its request table ``R``, latencies ``LAT``, layer
    tables ``T``, arrival ``batches`` (INST, BOUNDS), ``heap`` (H, C), clocks, sorted
    failovers, the ``g_count`` global layers and the clients' fields (:func:`ratesim.fast.retries.client_tables`); the
    per-request tables have ``R``'s rows."""
    redis = scenario.redis
    backend = scenario.backend
    INST, BOUNDS = batches
    H, C = heap
    ck = clock_tables([*clocks, redis_clock(redis)])
    faults = fault_tables(scenario)
    return World(
        INST=INST,
        BOUNDS=BOUNDS,
        R=R,
        KEYS=T.KEYS,
        LKEYS=T.LKEYS,
        APPLIES=T.APPLIES,
        OUT=np.zeros((len(layers), R.shape[0]), dtype=np.int8),
        REM=np.full((len(layers), R.shape[0]), -1, dtype=np.int64),
        LY=T.LY,
        KK=T.KK,
        PP=T.PP,
        PF=T.PP.reshape(-1),
        STATE=T.STATE,
        GSTATE=T.GSTATE,
        SNAP=T.SNAP,
        LOGS=T.LOGS,
        FO_FLUSH=np.array([f.flush_scripts for f in failovers], dtype=np.bool_),
        LAT=LAT,
        SHARD=T.SHARD,
        NV=_node_table(clocks, redis),
        CK=ck.clocks,
        JUMPS=ck.jumps,
        SLEWS=ck.slews,
        RH=np.zeros((len(clocks), scenario.network.pool_size + 1), dtype=np.int64),
        BUSY=np.zeros(redis.shards if redis is not None else 1, dtype=np.int64),
        CMD=np.zeros((3, R.shape[0] * g_count), dtype=np.int64),
        H=H,
        C=C,
        TQ=np.zeros((timeout_room(R.shape[0]), TQ_COLS), dtype=np.int64),
        OUTAGES=faults.outages,
        OUT_SHARDS=faults.outage_shards,
        PARTS=faults.parts,
        PART_NODES=faults.part_nodes,
        PRL=T.PRL,
        CQ=T.CQ,
        STACK=T.STACK,
        BKF=np.array(
            [backend.load_factor, backend.servers] if backend is not None else [0.0, 1.0],
            dtype=np.float64,
        ),
        TOPO_AT=scenario.topology.change_tables()[0],
        SHP=T.SHP,
        SB=_store_breaker_table(layers, scenario.topology.slots),
        **client_fields,
    )


def timeout_room(rows: int) -> int:
    """Rows of the wait timeouts' ring for request tables of ``rows`` rows: one a request at
    the most (a request waits once at a time, and a stale timeout pins its row), capped at
    :data:`TQ_MAX` (the ones past it go to the event heap)."""
    return max(1, min(rows, TQ_MAX))


def _lat_dtype(draws: Draws, compact: bool) -> type:
    """``LAT``'s dtype: int32 (half the memory the loop streams through) when ``compact`` and
    every drawn latency and service time fits, else int64. Runs with clients that retry keep
    int64: their retries' draws are copied in during the run, past this check."""
    if not compact:
        return np.int64
    limit = np.iinfo(np.int32)
    for a in (draws.lat_out_us, draws.lat_back_us, draws.service_us):
        if a.size and (a.min() < limit.min or a.max() > limit.max):
            return np.int64
    return np.int32


def _heap_and_counters(
    scenario: Scenario, layers: list[CompiledLayer], failovers: list[Any], heap_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The event heap ``H`` (with ``heap_size`` rows of room at least) holding the failovers'
    events, and the counters ``C`` set up for the run (``failovers``: sorted by instant)."""
    net = scenario.network
    H = np.zeros((max(1, heap_size, 2 * len(failovers) + 1), H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    C[C_POOL_SIZE] = net.pool_size
    C[C_POOL_WAIT] = round(net.pool_max_wait_ms * 1000)
    C[C_PRE] = _prefix_length(layers)
    C[C_SHARDS] = scenario.redis.shards if scenario.redis is not None else 1
    C[C_BACKEND] = scenario.backend is not None
    C[C_LAYERS] = len(layers)
    C[C_GLOGS] = any(is_log(a) for cl in layers if cl.spec.scope != "node" for a in cl.algs)
    # each failover's snapshot and restore, posted before the run as the event engine posts
    # them (``j`` indexes SNAP and FO_FLUSH, which follow the same sorted order)
    for at_us, op, j in failover_schedule(failovers):
        push(H, C, at_us, PRIO_FAILOVER, K_SNAPSHOT if op == SNAPSHOT else K_FAILOVER, j, 0, 0, 0)
    return H, C


#: Said once a process, before the compiled loop's first call while a progress bar is shown: a
#: first run on a machine compiles it (measured about 35 s on a busy 2-core machine), later
#: runs load numba's cache (about 1 s).
COMPILING_MESSAGE = (
    "preparing the compiled runner: the first run on this machine compiles it, once "
    "(about half a minute); later runs load it from the cache"
)


def _drive(
    world: World,
    n: int,
    progress: bool,
    chunk_us: int,
    retry_inputs: tuple[Scenario, int, np.ndarray],
    on_chunk: Callable[[World], None] | None = None,
) -> World:
    """Call the loop until the run is over: one time chunk a call while a progress bar is
    shown, a larger event heap whenever the loop asks for one, and (clients that retry) the
    draws and rows of retries; returns the world as it ends (its tables may have grown).
    ``retry_inputs``: (scenario, seed, user codes) for the retries' draws; ``on_chunk``
    (called after each chunk but the last) streams the run: the loop then runs in chunks
    with or without a bar."""
    C, BOUNDS = world.C, world.BOUNDS
    bar = None
    returns: dict[int, int] = {}  # ST_RETRY returns by attempt (fast.retries.fill_and_grow)
    if progress and not run.signatures:
        print(COMPILING_MESSAGE, file=sys.stderr, flush=True)
    limit = chunk_us if progress or on_chunk is not None else 2**62
    try:
        while True:
            status = run(limit, world)
            if progress and bar is None:
                # the bar starts after the first chunk, so numba's one-off compile (or cache
                # load) is not counted in its rate and ETA
                from tqdm import tqdm

                bar = tqdm(total=n, initial=int(C[C_DONE]), unit="req", desc="simulating")
            if status == ST_FINISHED:
                return world
            if status == ST_RETRY:
                scenario, seed, user = retry_inputs
                world = fill_and_grow(world, scenario, seed, user, returns)
                C = world.C
                continue
            if status == ST_GROW:
                world = grow_heap(world, int(np.diff(BOUNDS).max(initial=1)))
                continue
            if on_chunk is not None:
                on_chunk(world)
            if bar is not None:
                if C[C_CLIENTS]:  # retries are requests too: the total grows with them
                    bar.total = max(int(bar.total or 0), int(C[C_ROWS]))
                bar.update(int(C[C_DONE]) - bar.n)
            limit += chunk_us
    finally:
        if bar is not None:
            if C[C_CLIENTS]:
                bar.total = max(int(bar.total or 0), int(C[C_ROWS]))
            bar.update(int(C[C_DONE]) - bar.n)
            bar.close()


def grow_heap(world: World, width: int) -> World:
    """``world`` with a larger event heap: twice the room, plus what one event (an arrival
    batch of ``width`` requests at the most) may push (:func:`ratesim.fast.heaps.room`)."""
    H = world.H
    need = int(room(world.C, width))
    grown = np.zeros((2 * H.shape[0] + need, H_ROWS), dtype=H.dtype)
    grown[: H.shape[0]] = H
    return world._replace(H=grown)


def _request_table(
    arrivals: Arrivals, draws: Draws, clocks: list[NodeClock], rows: int | None = None
) -> np.ndarray:
    """``R``: one row per request (its arrival, node, tier, cost, local clock at arrival and
    backend base time; the loop fills in the rest), with ``rows`` rows of room (retries)."""
    if rows is None:
        return request_rows(arrivals, draws, clocks)
    n = len(arrivals)
    R = np.zeros((rows, R_COLS), dtype=np.int64)
    fill_rows(R[:n], arrivals, draws, local_clock_us(arrivals, draws, clocks))
    Q = R[:n]  # clients that retry: attempts and origins
    Q[:, R_ATTEMPT] = 1
    Q[:, R_ORIGIN] = np.arange(n)
    Q[:, R_RETRY] = -1
    return R


def _prefix_length(layers: list[CompiledLayer]) -> int:
    """How many leading node rate layers (not guards) there are: they run up front. The first
    that can hold a request (shaping) ends them: the layers after it see the request later."""
    n_pre = 0
    while (
        n_pre < len(layers)
        and layers[n_pre].spec.scope == "node"
        and layers[n_pre].spec.algorithm.kind not in BACKEND_KINDS
    ):
        n_pre += 1
        if any(layers[n_pre - 1].holds):
            break
    return n_pre


def _node_slots(cl: CompiledLayer, node: np.ndarray, grid: int = 0) -> tuple[np.ndarray, int]:
    """Each request's slot in a node-side table of ``cl`` (one slot per (node, key) pair that
    a request the layer applies to carries; 0 where it does not apply) and the slot count.

    Only the pairs the run meets get a state (as the event engine creates a key's state when
    first seen), so a table holds at most one state per request: no cap on keys or nodes.
    With ``grid`` nodes (clients that retry: a retry may meet a pair no first attempt did)
    every pair has its slot, ``node * n_keys + key``."""
    pair = node * cl.n_keys + cl.keys
    if grid:
        return np.where(_applies(cl, len(pair)), pair, 0), grid * cl.n_keys
    slots = np.zeros(len(pair), dtype=np.int64)
    sel = _applies(cl, len(pair))
    uniq, inverse = np.unique(pair[sel], return_inverse=True)
    slots[sel] = inverse
    return slots, len(uniq)


def _applies(cl: CompiledLayer, n: int) -> np.ndarray:
    """Where ``cl`` applies, as booleans over its ``n`` requests."""
    return np.ones(n, dtype=bool) if cl.applies_np is None else cl.applies_np.astype(bool)


def _request_columns(
    cl: CompiledLayer,
    pos: int,
    node: np.ndarray,
    grid: int,
    KEYS: np.ndarray,
    LKEYS: np.ndarray,
    APPLIES: np.ndarray,
) -> int:
    """Layer ``pos``'s columns of the user requests (the first ``len(node)``) in ``KEYS``,
    ``LKEYS`` and ``APPLIES``; returns its node-side table's slot count (0: none)."""
    users = len(node)
    is_node = cl.spec.scope == "node"
    entries = 0
    if is_node or cl.local_algs:
        slots, entries = _node_slots(cl, node, grid)
        (KEYS if is_node else LKEYS)[pos, :users] = slots
    if not is_node:
        KEYS[pos, :users] = cl.keys
    if cl.applies_np is not None:
        APPLIES[pos, :users] = cl.applies_np
    return entries


def _first_rings(cl: CompiledLayer, is_node: bool, entries: int) -> tuple[int, int]:
    """The integers of ``cl``'s sliding logs' first rings (``ratesim.fast.logpool``: a log's
    entry in its table is its ring's offset in a pool), node side and Redis side; ``entries``:
    the slots of its node-side table."""
    local = first_rings(entries, list(cl.local_algs)) if cl.local_algs else 0
    if is_node:
        return first_rings(entries, list(cl.algs)) + local, 0
    return local, first_rings(cl.n_keys, list(cl.algs))


def _layer_tables(
    layers: list[CompiledLayer],
    node: np.ndarray,
    n_tiers: int,
    g_count: int,
    failovers: int,
    grid: int = 0,
    users: int | None = None,
) -> _Tables:
    """Every layer's columns and state tables, laid end to end (see :class:`_Tables`);
    ``node``: each request's gateway node (rows past ``users`` are room for retries; ``grid``:
    the node count when every (node, key) pair needs its slot, see :func:`_node_slots`)."""
    n = len(node)
    users = n if users is None else users
    n_layers = len(layers)
    KEYS = np.zeros((n_layers, n), dtype=np.int64)
    any_local = any(cl.local_algs for cl in layers)
    LKEYS = np.zeros((n_layers, n) if any_local else (1, 1), dtype=np.int64)
    APPLIES = np.ones((n_layers, n), dtype=np.int8)
    LY = np.zeros((n_layers, LY_COLS), dtype=np.int64)
    every_alg = [a for cl in layers for a in (*cl.algs, *(cl.local_algs or ()))]
    max_p = max((len(a.params) for a in every_alg), default=1)
    # row pos: layer pos's algorithm per tier; row n_layers + pos: its local fallback's;
    # then, per follow layer, one row per epoch of the node schedule (from LY[pos, L_FOLLOW])
    rows = 2 * n_layers + sum(len(cl.follow) for cl in layers if cl.follow)
    KK = np.zeros((rows, n_tiers), dtype=np.int64)
    PP = np.zeros((rows, n_tiers, max_p), dtype=np.int64)
    SHP = np.zeros((rows, n_tiers), dtype=np.int64)
    follow_row = 2 * n_layers  # where the next follow layer's rows start
    SHARD = np.zeros((max(g_count, 1), n), dtype=np.int64)
    off = 0  # node-side tables (node layers, local fallbacks) in STATE
    g_off = 0  # Redis-side tables (global layers) in GSTATE
    q_off = 0  # concurrency wait queues, one per slot
    node_logs = redis_logs = 0  # the sliding logs' first rings, node side and Redis side
    guard_kind = {"concurrency": G_CONCURRENCY, "circuit_breaker": G_BREAKER}
    initial: list[tuple[int, int, list[int]]] = []  # guard tables: (offset, entries, state)
    for pos, cl in enumerate(layers):
        spec = cl.spec
        is_node = spec.scope == "node"
        # slots of the node-side table (the layer's own, or its local fallback's)
        entries = _request_columns(cl, pos, node[:users], grid, KEYS, LKEYS, APPLIES)
        size = max(table_size(a) for a in cl.algs)
        l_size = max(table_size(a) for a in cl.local_algs) if cl.local_algs else 0
        rings = _first_rings(cl, is_node, entries)
        node_logs, redis_logs = node_logs + rings[0], redis_logs + rings[1]
        gk = guard_kind.get(spec.algorithm.kind, G_RATE)
        LY[pos] = (
            cl.gidx,
            spec.mode == "shadow",
            round(spec.timeout_ms * 1000),
            spec.time_source == "redis",
            round(spec.drift_guard_ms * 1000) if spec.drift_guard_ms else 0,
            spec.time_source == "client" or bool(spec.drift_guard_ms),
            spec.failure_mode == "closed",
            off if is_node else g_off,
            size,
            entries if is_node else cl.n_keys,
            is_node,
            bool(cl.local_algs),
            off + (entries * size if is_node else 0),
            l_size,
            gk,
            q_off,
            follow_row if cl.follow is not None else 0,
            spec.store_breaker.failures if spec.store_breaker else 0,
            spec.store_breaker.cooldown_us if spec.store_breaker else 0,
        )
        if gk != G_RATE:
            initial.append((off, entries, list(cl.algs[0].new_state())))
        if gk == G_CONCURRENCY:
            q_off += entries
        if is_node:
            off += entries * size
        else:
            g_off += cl.n_keys * size
        off += entries * l_size
        fill_tier_rows(KK[pos], PP[pos], cl.algs, rate=gk == G_RATE)
        fill_tier_rows(KK[n_layers + pos], PP[n_layers + pos], cl.local_algs or [])
        SHP[pos, : len(cl.holds)] = cl.holds[:n_tiers]
        SHP[n_layers + pos, : len(cl.local_holds)] = cl.local_holds[:n_tiers]
        for epoch_algs in cl.follow or ():
            fill_tier_rows(KK[follow_row], PP[follow_row], epoch_algs)
            follow_row += 1
        if cl.shard is not None and users:
            SHARD[cl.gidx, :users] = np.frombuffer(cl.shard, dtype=np.int64)
    STATE = np.zeros(off, dtype=np.int64)
    for start, entries, state in initial:
        if any(state):
            STATE[start : start + entries * len(state)] = np.tile(state, entries)
    n_guards = len(initial)
    return _Tables(
        KEYS=KEYS,
        LKEYS=LKEYS,
        APPLIES=APPLIES,
        LY=LY,
        KK=KK,
        PP=PP,
        SHARD=SHARD,
        STATE=STATE,
        GSTATE=np.zeros(g_off, dtype=np.int64),
        SNAP=np.zeros((failovers, g_off), dtype=np.int64),
        SHP=SHP,
        LOGS=new_pools(node_logs, redis_logs, failovers),
        PRL=np.zeros((3, n, n_layers) if n_guards else (3, 1, 1), dtype=np.int64),
        CQ=np.full((2, max(q_off, 1)), -1, dtype=np.int64),
        STACK=np.zeros((n * n_guards + 1, 4), dtype=np.int64),
    )


def _node_table(clocks: list[NodeClock], redis: Any) -> np.ndarray:
    """``NV``: a row per node, then one for the Redis server (its clock's perfect flag)."""
    nodes = len(clocks)
    NV = np.zeros((nodes + 1, NV_COLS), dtype=np.int64)
    NV[:, N_WHEAD] = -1
    NV[:, N_WTAIL] = -1
    for k, clock in enumerate([*clocks, redis_clock(redis)]):
        NV[k, N_PERFECT] = clock.is_perfect
    return NV


def _check_conservation(
    R: np.ndarray, NV: np.ndarray, C: np.ndarray, T: _Tables, nodes: int
) -> None:
    """Every arrival has one final decision; nothing in flight; pools and slots whole."""
    _check_conservation_counts(R.shape[0], int(C[C_ARRIVED]), int(C[C_DONE]), R, NV, C, T, nodes)


def _check_conservation_counts(
    n: int,
    arrived: int,
    done: int,
    R: np.ndarray,
    NV: np.ndarray,
    C: np.ndarray,
    T: _Tables,
    nodes: int,
) -> None:
    """:func:`_check_conservation` for a run of ``n`` requests (``arrived`` and ``done`` of
    them), ``R`` the rows still in its tables (a bounded run: none once over)."""
    held = 0
    for pos in range(T.LY.shape[0]):
        if T.LY[pos, L_GUARD_KIND] == G_CONCURRENCY:
            start, size = int(T.LY[pos, L_OFF]), int(T.LY[pos, L_SIZE])
            table = T.STATE[start : start + int(T.LY[pos, L_NKEYS]) * size].reshape(-1, size)
            held += int(table[:, IN_FLIGHT].sum() + table[:, QUEUED].sum())
    pool = NV[:nodes]
    check_conservation(
        n,
        arrived,
        done,
        R[:, R_DECIDED],
        {
            "pool connections": int(np.abs(pool[:, N_IN_USE] - pool[:, N_RLEN]).sum()),
            "pool waiters": int(pool[:, N_LIVE].sum()),
            "backend in flight": int(C[C_BK_INFLIGHT]),
            "held slots": int((R[:, R_HOLDS] != 0).sum()) + held,
            "concurrency waiters": int((R[:, R_CWAIT] != 0).sum()),
        },
    )


def _client_run_data(
    world: World, T: _Tables, scenario: Scenario, arrivals: Arrivals, holds: bool
) -> RunData:
    """The :class:`RunData` of a run with clients that retry: its rows (the user requests,
    then the retries as they arrived) checked for conservation, then sorted by arrival (stable,
    as the event runner's ``RequestTable.all_arrivals``), origins renumbered to match."""
    from ..conservation import check_attempts
    from ..traffic import Arrivals as _Arrivals

    C = world.C
    rows = int(C[C_ROWS])
    R = world.R[:rows]
    _check_conservation(R, world.NV, C, T, scenario.topology.slots)
    origin = R[:, R_ORIGIN]
    t = R[:, R_T]
    order = None if rows == len(arrivals) else np.argsort(t, kind="stable")

    def rows_of(a: np.ndarray) -> np.ndarray:
        return a if order is None else a[order]

    if order is None:
        all_arrivals = arrivals
        new_origin = origin.copy()
    else:
        all_arrivals = _Arrivals(
            time_us=t[order],
            user=arrivals.user[origin][order],
            tier=R[order, R_TIER],
            route=arrivals.route[origin][order],
            cost=R[order, R_COST],
            abusive=arrivals.abusive[origin][order],
            tier_names=arrivals.tier_names,
            route_names=arrivals.route_names,
            user_names=arrivals.user_names,
        )
        inverse = np.empty(rows, dtype=np.int64)
        inverse[order] = np.arange(rows)
        new_origin = inverse[origin[order]]
    attempt = rows_of(R[:, R_ATTEMPT]).copy()
    decided = rows_of(R[:, R_DECIDED]).copy()
    rejected = rows_of(R[:, R_REJ]).astype(np.int16)
    check_attempts(attempt, new_origin, all_arrivals.time_us, decided, rejected)
    n_cmd = int(C[C_CMD])
    CMD = world.CMD
    depth_t = CMD[0, :n_cmd].copy()
    shard_arr = CMD[2, :n_cmd].copy() if world.BUSY.shape[0] > 1 else None
    return RunData(
        arrivals=all_arrivals,
        node=rows_of(R[:, R_NODE]).copy(),
        outcomes=np.ascontiguousarray(rows_of(world.OUT[:, :rows].T)),
        remaining=np.ascontiguousarray(rows_of(world.REM[:, :rows].T)),
        decided_us=decided,
        rejected_by=rejected,
        pool_wait_us=rows_of(R[:, R_POOL_WAIT]).copy(),
        depth_t_us=depth_t,
        depth=queue_depths(depth_t, CMD[1, :n_cmd].copy(), shard_arr),
        backend_done_us=rows_of(R[:, R_BK_DONE]).copy() if scenario.backend is not None else None,
        held_us=rows_of(R[:, R_HELD]).copy() if holds else None,
        attempt=attempt,
        origin=new_origin,
    )
