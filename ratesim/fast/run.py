"""Running a scenario on the fast engine: its tables built from the scenario, the loop driven
in chunks (progress, heap growth), the conservation checks and the :class:`RunData`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..algorithms.concurrency import IN_FLIGHT, QUEUED
from ..model.clock import NodeClock
from ..model.redis_server import queue_depths
from ..ordering import PRIO_FAILOVER
from ..policy import BACKEND_KINDS
from ..results import RunData
from .heaps import push, room
from .kernels import fill_tier_rows
from .layout import (
    C_ARRIVED,
    C_BACKEND,
    C_BK_INFLIGHT,
    C_CMD,
    C_COLS,
    C_DONE,
    C_LAYERS,
    C_POOL_SIZE,
    C_POOL_WAIT,
    C_PRE,
    C_SHARDS,
    G_BREAKER,
    G_CONCURRENCY,
    G_RATE,
    H_ROWS,
    K_FAILOVER,
    K_SNAPSHOT,
    L_GUARD_KIND,
    L_OFF,
    L_SIZE,
    LY_COLS,
    N_DRIFT,
    N_IN_USE,
    N_LIVE,
    N_OFF,
    N_PERFECT,
    N_RLEN,
    N_WHEAD,
    N_WTAIL,
    NV_COLS,
    R_BK,
    R_BK_DONE,
    R_CLK,
    R_COLS,
    R_COST,
    R_CWAIT,
    R_DECIDED,
    R_HOLDS,
    R_NODE,
    R_POOL_WAIT,
    R_PRE_REJ,
    R_REJ,
    R_T,
    R_TIER,
    R_WNEXT,
    ST_FINISHED,
    ST_GROW,
)
from .loop import prefix, run
from .support import unsupported

if TYPE_CHECKING:
    from ..compile import CompiledLayer, Draws
    from ..scenario import Scenario
    from ..traffic import Arrivals


@dataclass
class _Tables:
    """Per-layer tables: keys, applicability, layer columns, kernels and parameters, shards,
    limiter state (node side, Redis side and its failover snapshots) and the guard layers'
    per-request holds, wait queues and hand-off stack."""

    KEYS: np.ndarray
    APPLIES: np.ndarray
    LY: np.ndarray
    KK: np.ndarray
    PP: np.ndarray
    SHARD: np.ndarray
    STATE: np.ndarray
    GSTATE: np.ndarray
    SNAP: np.ndarray
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
) -> RunData:
    """Run ``scenario`` on the compiled loop; same contract (and same result) as
    :func:`ratesim.engine.run_events`. Raise ``ValueError`` if :func:`unsupported` says so.

    ``chunk_us``: simulated µs per call of the loop while a progress bar is shown;
    ``heap_size``: initial room of the event heap (it grows as needed)."""
    reason = unsupported(scenario, layers)
    if reason is not None:
        raise ValueError(f"the fast engine does not model {reason}")
    n = len(arrivals)
    nodes = scenario.topology.nodes
    redis = scenario.redis
    net = scenario.network
    backend = scenario.backend
    g_count = draws.lat_out_us.shape[1]
    failovers = sorted(redis.failovers, key=lambda f: f.at_us) if redis is not None else []
    n_shards = redis.shards if redis is not None else 1

    clocks = [NodeClock(spec) for spec in scenario.topology.clock_specs()]
    R = _request_table(arrivals, draws, clocks)
    T = _layer_tables(layers, n, nodes, max(1, len(arrivals.tier_names)), g_count, len(failovers))
    LAT = np.zeros((max(g_count, 1), 3, n), dtype=np.int64)
    if g_count:
        LAT[:g_count, 0] = draws.lat_out_us.T
        LAT[:g_count, 1] = draws.lat_back_us.T
        LAT[:g_count, 2] = draws.service_us.T
    node_np = draws.node
    del draws  # the engine handed them over; free them before the run

    NV, JUMPS = _clock_table(clocks, redis, failovers)
    OUTAGES, OUT_SHARDS, PARTS, PART_NODES = _fault_tables(scenario, n_shards)
    FO_FLUSH = np.array([f.flush_scripts for f in failovers], dtype=np.bool_)
    BKF = np.array(
        [backend.load_factor, backend.servers] if backend is not None else [0.0, 1.0],
        dtype=np.float64,
    )
    RH = np.zeros((nodes, net.pool_size + 1), dtype=np.int64)
    BUSY = np.zeros(n_shards, dtype=np.int64)
    CMD = np.zeros((3, n * g_count), dtype=np.int64)
    H = np.zeros((max(1, heap_size, 2 * len(failovers) + 1), H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    C[C_POOL_SIZE] = net.pool_size
    C[C_POOL_WAIT] = round(net.pool_max_wait_ms * 1000)
    C[C_PRE] = _prefix_length(layers)
    C[C_SHARDS] = n_shards
    C[C_BACKEND] = backend is not None
    C[C_LAYERS] = len(layers)
    # failovers: a snapshot at ``at - lost_writes`` and the restore at ``at``, posted in this
    # order before the run as the event engine posts them
    for j, f in enumerate(failovers):
        push(H, C, max(0, f.at_us - f.lost_writes_us), PRIO_FAILOVER, K_SNAPSHOT, j, 0, 0, 0)
        push(H, C, f.at_us, PRIO_FAILOVER, K_FAILOVER, j, 0, 0, 0)
    if n:
        instants, starts = np.unique(arrivals.time_us, return_index=True)
        INST = instants.astype(np.int64)
        BOUNDS = np.append(starts, n).astype(np.int64)
    else:
        INST = np.zeros(0, dtype=np.int64)
        BOUNDS = np.zeros(1, dtype=np.int64)

    OUT = np.zeros((len(layers), n), dtype=np.int8)
    REM = np.full((len(layers), n), -1, dtype=np.int64)
    prefix(R, T.KEYS, T.APPLIES, OUT, REM, T.LY, T.KK, T.PP, T.STATE, int(C[C_PRE]))
    # what ``loop.run`` works on, in the order it unpacks it
    world: list[Any] = [
        INST, BOUNDS, R, T.KEYS, T.APPLIES, OUT, REM, T.LY, T.KK, T.PP, T.STATE, T.GSTATE,
        T.SNAP, FO_FLUSH, LAT, T.SHARD, NV, JUMPS, RH, BUSY, CMD, H, C, OUTAGES, OUT_SHARDS,
        PARTS, PART_NODES, T.PRL, T.CQ, T.STACK, BKF,
    ]  # fmt: skip
    _drive(world, n, progress, chunk_us)

    _check_conservation(R, NV, C, T, layers, nodes)
    n_cmd = int(C[C_CMD])
    depth_t = CMD[0, :n_cmd].copy()
    shard_arr = CMD[2, :n_cmd].copy() if n_shards > 1 else None
    return RunData(
        arrivals=arrivals,
        node=node_np,
        outcomes=np.ascontiguousarray(OUT.T),
        remaining=np.ascontiguousarray(REM.T),
        decided_us=R[:, R_DECIDED].copy(),
        rejected_by=R[:, R_REJ].astype(np.int16),
        pool_wait_us=R[:, R_POOL_WAIT].copy(),
        depth_t_us=depth_t,
        depth=queue_depths(depth_t, CMD[1, :n_cmd].copy(), shard_arr),
        backend_done_us=R[:, R_BK_DONE].copy() if backend is not None else None,
    )


#: Where the event heap ``H`` sits in ``world`` (it is replaced when it grows).
_H_SLOT = 21
_C_SLOT = 22
_BOUNDS_SLOT = 1


def _drive(world: list[Any], n: int, progress: bool, chunk_us: int) -> None:
    """Call the loop until the run is over: one time chunk a call while a progress bar is
    shown, and a larger event heap whenever the loop asks for one."""
    C, BOUNDS = world[_C_SLOT], world[_BOUNDS_SLOT]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="req", desc="simulating")
    limit = chunk_us if progress else 2**62
    try:
        while True:
            status = run(limit, tuple(world))
            if status == ST_FINISHED:
                return
            if status == ST_GROW:
                H = world[_H_SLOT]
                need = int(room(C, int(np.diff(BOUNDS).max(initial=1))))
                grown = np.zeros((2 * H.shape[0] + need, H_ROWS), dtype=np.int64)
                grown[: H.shape[0]] = H
                world[_H_SLOT] = grown
                continue
            if bar is not None:
                bar.update(int(C[C_DONE]) - bar.n)
            limit += chunk_us
    finally:
        if bar is not None:
            bar.update(int(C[C_DONE]) - bar.n)
            bar.close()


def _request_table(arrivals: Arrivals, draws: Draws, clocks: list[NodeClock]) -> np.ndarray:
    """``R``: one row per request (its arrival, node, tier, cost, local clock at arrival and
    backend base time; the loop fills in the rest)."""
    n = len(arrivals)
    R = np.zeros((n, R_COLS), dtype=np.int64)
    R[:, R_T] = arrivals.time_us
    R[:, R_NODE] = draws.node
    R[:, R_TIER] = arrivals.tier
    R[:, R_COST] = arrivals.cost
    R[:, R_CLK] = arrivals.time_us
    for k, clock in enumerate(clocks):
        if not clock.spec.is_perfect:
            sel = draws.node == k
            R[sel, R_CLK] = clock.read_many(arrivals.time_us[sel])
    for col in (R_DECIDED, R_REJ, R_WNEXT, R_PRE_REJ, R_BK_DONE):
        R[:, col] = -1
    if len(draws.backend_us):
        R[:, R_BK] = draws.backend_us
    return R


def _prefix_length(layers: list[CompiledLayer]) -> int:
    """How many leading node rate layers (not guards) there are: they run up front."""
    n_pre = 0
    while (
        n_pre < len(layers)
        and layers[n_pre].spec.scope == "node"
        and layers[n_pre].spec.algorithm.kind not in BACKEND_KINDS
    ):
        n_pre += 1
    return n_pre


def _layer_tables(
    layers: list[CompiledLayer], n: int, nodes: int, n_tiers: int, g_count: int, failovers: int
) -> _Tables:
    """Every layer's columns and state tables, laid end to end (see :class:`_Tables`)."""
    n_layers = len(layers)
    KEYS = np.zeros((n_layers, n), dtype=np.int64)
    APPLIES = np.ones((n_layers, n), dtype=np.int8)
    LY = np.zeros((n_layers, LY_COLS), dtype=np.int64)
    every_alg = [a for cl in layers for a in (*cl.algs, *(cl.local_algs or ()))]
    max_p = max((len(a.params) for a in every_alg), default=1)
    # row pos: layer pos's algorithm per tier; row n_layers + pos: its local fallback's
    KK = np.zeros((2 * n_layers, n_tiers), dtype=np.int64)
    PP = np.zeros((2 * n_layers, n_tiers, max_p), dtype=np.int64)
    SHARD = np.zeros((max(g_count, 1), n), dtype=np.int64)
    off = 0  # node-side tables (node layers, local fallbacks) in STATE
    g_off = 0  # Redis-side tables (global layers) in GSTATE
    q_off = 0  # concurrency wait queues, one per (layer, node, key)
    guard_kind = {"concurrency": G_CONCURRENCY, "circuit_breaker": G_BREAKER}
    initial: list[tuple[int, int, list[int]]] = []  # guard tables: (offset, entries, state)
    for pos, cl in enumerate(layers):
        spec = cl.spec
        KEYS[pos] = cl.keys
        if cl.applies_np is not None:
            APPLIES[pos] = cl.applies_np
        size = max(a.state_size for a in cl.algs)
        is_node = spec.scope == "node"
        l_size = max(a.state_size for a in cl.local_algs) if cl.local_algs else 0
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
            cl.n_keys,
            is_node,
            bool(cl.local_algs),
            off + (nodes * cl.n_keys * size if is_node else 0),
            l_size,
            gk,
            q_off,
        )
        if gk != G_RATE:
            initial.append((off, nodes * cl.n_keys, list(cl.algs[0].new_state())))
        if gk == G_CONCURRENCY:
            q_off += nodes * cl.n_keys
        if is_node:
            off += nodes * cl.n_keys * size
        else:
            g_off += cl.n_keys * size
        off += nodes * cl.n_keys * l_size
        fill_tier_rows(KK[pos], PP[pos], cl.algs, rate=gk == G_RATE)
        fill_tier_rows(KK[n_layers + pos], PP[n_layers + pos], cl.local_algs or [])
        if cl.shard is not None:
            SHARD[cl.gidx] = np.frombuffer(cl.shard, dtype=np.int64)
    STATE = np.zeros(off, dtype=np.int64)
    for start, entries, state in initial:
        if any(state):
            STATE[start : start + entries * len(state)] = np.tile(state, entries)
    n_guards = len(initial)
    return _Tables(
        KEYS=KEYS,
        APPLIES=APPLIES,
        LY=LY,
        KK=KK,
        PP=PP,
        SHARD=SHARD,
        STATE=STATE,
        GSTATE=np.zeros(g_off, dtype=np.int64),
        SNAP=np.zeros((failovers, g_off), dtype=np.int64),
        PRL=np.zeros((3, n, n_layers) if n_guards else (3, 1, 1), dtype=np.int64),
        CQ=np.full((2, max(q_off, 1)), -1, dtype=np.int64),
        STACK=np.zeros((n * n_guards + 1, 4), dtype=np.int64),
    )


def _clock_table(
    clocks: list[NodeClock], redis: Any, failovers: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """``NV`` (a row per node, then the Redis server's) and ``JUMPS`` (each clock's NTP steps;
    a failover's clock step is a jump of the Redis clock, as the event engine adds it)."""
    nodes = len(clocks)
    redis_clock = NodeClock(redis.clock if redis is not None else None)
    redis_jumps = [
        *redis_clock.jumps,
        *((f.at_us, round(f.clock_step_ms * 1000)) for f in failovers if f.clock_step_ms),
    ]
    all_clocks = [(c, list(c.jumps), c.spec.is_perfect) for c in clocks]
    all_clocks.append((redis_clock, redis_jumps, redis_clock.spec.is_perfect and not redis_jumps))
    NV = np.zeros((nodes + 1, NV_COLS), dtype=np.int64)
    NV[:, N_WHEAD] = -1
    NV[:, N_WTAIL] = -1
    max_jumps = max(len(jumps) for _, jumps, _ in all_clocks)
    JUMPS = np.zeros((nodes + 1, max_jumps + 1, 2), dtype=np.int64)
    JUMPS[:, :, 0] = -1
    for k, (clock, jumps, perfect) in enumerate(all_clocks):
        NV[k, N_OFF] = clock.offset_us
        NV[k, N_DRIFT] = clock.drift_ppt
        NV[k, N_PERFECT] = perfect
        for j, (at_us, by_us) in enumerate(jumps):
            JUMPS[k, j] = (at_us, by_us)
    return NV, JUMPS


def _fault_tables(
    scenario: Scenario, n_shards: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Outage windows (start, end, 1 refused / 2 blackhole) with the shards each hits, and
    partition windows with the nodes each cuts off."""
    redis = scenario.redis
    nodes = scenario.topology.nodes
    outages = list(redis.outages) if redis is not None else []
    OUTAGES = np.zeros((len(outages), 3), dtype=np.int64)
    OUT_SHARDS = np.zeros((len(outages), n_shards), dtype=np.bool_)
    for o, outage in enumerate(outages):
        OUTAGES[o] = (outage.start_us, outage.end_us, 1 if outage.kind == "refused" else 2)
        for sh in range(n_shards):
            OUT_SHARDS[o, sh] = outage.shards is None or sh in outage.shards
    parts = list(scenario.network.partitions)
    PARTS = np.zeros((len(parts), 2), dtype=np.int64)
    PART_NODES = np.zeros((len(parts), nodes), dtype=np.bool_)
    for o, part in enumerate(parts):
        PARTS[o] = (part.start_us, part.end_us)
        for nd in part.nodes:
            if nd < nodes:
                PART_NODES[o, nd] = True
    return OUTAGES, OUT_SHARDS, PARTS, PART_NODES


def _check_conservation(
    R: np.ndarray,
    NV: np.ndarray,
    C: np.ndarray,
    T: _Tables,
    layers: list[CompiledLayer],
    nodes: int,
) -> None:
    """Every arrival has one final decision; nothing in flight; pools and slots whole."""
    n = R.shape[0]
    done, arrived = int(C[C_DONE]), int(C[C_ARRIVED])
    if arrived != n or done != n or (n and R[:, R_DECIDED].min() < 0):
        raise AssertionError(
            f"conservation violated: {n} arrivals, {arrived} arrived, {done} decided "
            f"({arrived - done} in flight)"
        )
    if (NV[:nodes, N_IN_USE] != NV[:nodes, N_RLEN]).any() or NV[:nodes, N_LIVE].any():
        raise AssertionError("conservation violated: a node's pool not returned")
    if C[C_BK_INFLIGHT] or R[:, R_HOLDS].any() or R[:, R_CWAIT].any():
        raise AssertionError("conservation violated: requests left in the backend or holding slots")
    for pos, cl in enumerate(layers):
        if T.LY[pos, L_GUARD_KIND] == G_CONCURRENCY:
            start, size = int(T.LY[pos, L_OFF]), int(T.LY[pos, L_SIZE])
            table = T.STATE[start : start + nodes * cl.n_keys * size].reshape(-1, size)
            if table[:, IN_FLIGHT].any() or table[:, QUEUED].any():
                raise AssertionError(f"conservation violated: layer {pos} slots held")
