"""The fast engine's array layouts: the columns of its tables, the codes of its events, and the
:class:`World` that holds every table.

Every table is an int64 numpy array; these names index it. Rows of ``R`` are requests, rows of
``LY`` layers, rows of ``NV`` gateway nodes (then one for the Redis server's clock), rows of
``H`` queued events; ``C`` holds the loop's counters.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class World(NamedTuple):
    """Everything the compiled loop works on, by name (numba compiles a ``NamedTuple`` into a
    struct whose fields it reads by static offset: naming them costs nothing, measured).

    All int64 unless noted; ``n`` requests, ``L`` layers, times in µs."""

    INST: Any  # (batches,): the distinct arrival instants, ascending
    BOUNDS: Any  # (batches + 1,): batch b is requests BOUNDS[b] .. BOUNDS[b + 1] - 1
    R: Any  # (n, R_COLS): per-request columns
    KEYS: Any  # (L, n): a global layer's key; a node layer's (node, key) slot in its table
    LKEYS: Any  # (L, n) or (1, 1): the (node, key) slot in a layer's local-fallback table
    APPLIES: Any  # (L, n) int8: 1 where the layer applies to the request
    OUT: Any  # (L, n) int8: outcome codes
    REM: Any  # (L, n): remaining allowance reported (-1: none)
    LY: Any  # (L, LY_COLS): per-layer columns
    KK: Any  # (2L [+ E per follow layer], tiers): kernel code per tier (rows L ..: the local
    # fallbacks; rows 2L ..: the follow layers, one per epoch of the node schedule: L_FOLLOW)
    PP: Any  # (rows of KK, tiers, params): integer parameters per tier
    PF: Any  # PP flattened (the same memory): the rate kernels read it at an offset
    STATE: Any  # node-side state tables (node layers, local fallbacks), end to end
    GSTATE: Any  # Redis-side state tables (global layers), end to end
    SNAP: Any  # (failovers, len(GSTATE)): the state each failover brings back
    LOGS: Any  # typed list of int64 pools: the sliding logs' rings (ratesim.fast.logpool)
    FO_FLUSH: Any  # (failovers,) bool: the failover empties the script cache
    LAT: Any  # (g, 3, n) int32, int64 when a draw is out of its range or clients retry:
    # per global layer: latency out, latency back, service time
    SHARD: Any  # (g, n): the shard of each request's command
    NV: Any  # (nodes + 1, NV_COLS): per node (last row: the Redis server's clock)
    CK: Any  # (nodes + 1, 2): each clock's offset_us, drift_ppt (model.clock.ClockTables)
    JUMPS: Any  # (nodes + 1, J, 2): each clock's jump steps
    SLEWS: Any  # (nodes + 1, S, 3): each clock's slews
    RH: Any  # (nodes, pool + 1): per node, a heap of the times its connections come back
    BUSY: Any  # (shards,): when each shard is next free
    CMD: Any  # (3, commands): per executed command: arrival, finish, shard
    H: Any  # (room, H_ROWS): the event heap (replaced when it grows)
    C: Any  # (C_COLS,): counters
    TQ: Any  # (room, TQ_COLS): the pools' wait timeouts in key order, a ring (C_TQ_HEAD, C_TQ_LEN)
    OUTAGES: Any  # model.faults.FaultTables.outages
    OUT_SHARDS: Any  # model.faults.FaultTables.outage_shards
    PARTS: Any  # model.faults.FaultTables.parts
    PART_NODES: Any  # model.faults.FaultTables.part_nodes
    PRL: Any  # (3, n, L) or (3, 1, 1): holds, breaker pass times, wait-queue links
    CQ: Any  # (2, queues): head and tail of each concurrency wait queue
    STACK: Any  # (entries, 4): the continuation stack of slot hand-offs
    BKF: Any  # (2,) float64: backend load_factor, servers
    TOPO_AT: Any  # (changes,): topology.changes instants (µs), for local_share: follow layers
    SHP: Any  # (rows of KK, tiers): 1 where the row's algorithm holds what it admits (shaping)
    SB: Any  # (nodes * L * SB_COLS,): the store breakers, a row per (node, layer) (model.store_breaker)
    # clients that retry (ratesim.fast.retries; tiny placeholders in a run without them)
    CL: Any  # (tiers, CL_COLS): each tier's compiled client policy (model.retry.CL_*)
    FIRST_T: Any  # (n,): the user requests' arrival times, by tier (CompiledClients.first_t)
    T_OFF: Any  # (tiers + 1,): where each tier's times start in FIRST_T
    SENT: Any  # (tiers,): retries each tier's clients have sent (the budget's withdrawals)
    SEED: Any  # (1,) uint64: the run's seed (the retries' jitter)
    PEND: Any  # (n, 3): per user request, its pending retry: arrival, attempt, draws filled
    PLAT: Any  # (g, 3, n): the pending retry's latencies and service times (as LAT)
    PBK: Any  # (n,): the pending retry's backend base service time
    LIDX: Any  # (max attempts + 1,): attempt k's draws for every user request are LPLAT[LIDX[k]]
    LPLAT: Any  # (levels, g, 3, n): whole attempt levels drawn at once (as PLAT); -1 in LIDX: none
    LPBK: Any  # (levels, n): the same for the backend base service time
    NK: Any  # (L,): each layer's key count (a node-side slot is node * NK + key)
    LIVE: Any  # (epochs,): the live node count of each epoch of the node schedule
    SLOT_KEYS: Any  # model.topology.slot_fills' keys: where a retry's position's node is
    SLOT_OF: Any  # ... and its slots
    UHASH: Any  # (n,): each user request's user hash (model.node.user_hash; hash_user)


# per-request columns of R
(
    R_T,
    R_CLK,
    R_NODE,
    R_TIER,
    R_COST,
    R_DECIDED,
    R_REJ,
    R_POOL_WAIT,
    R_CONN,
    R_WAITING,
    R_WAIT_POS,
    R_WAIT_SINCE,
    R_WNEXT,
    R_PRE_REJ,
    R_CWAIT,
    R_HOLDS,
    R_BK,
    R_BK_DONE,
    R_HELD,
    R_ATTEMPT,
    R_ORIGIN,
    R_RETRY,
) = range(22)
R_COLS = 22
# R_HELD: µs the request was held by shaping layers (ratesim.algorithms.shaping)
# (R_ATTEMPT: 1 for a first try; R_ORIGIN: the row of the user request; R_RETRY: the wait the
# rejecting layer's limiter gave, -1 none - clients that retry only)
# per-layer columns of LY (L_NKEYS: the entries of the layer's table, a global layer's keys or a
# node layer's (node, key) slots; L_OFF / L_LOFF / L_QOFF: where its tables start)
(
    L_GIDX,
    L_SHADOW,
    L_TMO,
    L_REDIS_TIME,
    L_GUARD,
    L_CLIENT_TIME,
    L_CLOSED,
    L_OFF,
    L_SIZE,
    L_NKEYS,
    L_IS_NODE,
    L_LOCAL,
    L_LOFF,
    L_LSIZE,
    L_GUARD_KIND,
    L_QOFF,
    L_FOLLOW,
    L_SB_FAILS,
    L_SB_COOL,
) = range(19)
LY_COLS = 19
# L_FOLLOW: 0, or for a ``local_share: follow`` layer the KK / PP row of its epoch 0; its row in
# epoch e of the node schedule is ``LY[pos, L_FOLLOW] + e`` (model.topology.epoch_at)
# (L_SB_FAILS / L_SB_COOL: a global layer's store breaker, its threshold k (0: no breaker) and
# its cooldown in µs)
# per-node columns of NV
# (rows 0 .. nodes-1: the gateway nodes; row ``nodes``: the Redis server's clock)
N_IN_USE, N_LIVE, N_WHEAD, N_WTAIL, N_RLEN, N_PERFECT, N_RELOAD = range(7)
NV_COLS = 7
# counters in C
(
    C_BATCH,
    C_DONE,
    C_ARRIVED,
    C_SEQ,
    C_HEAP,
    C_CMD,
    C_RHEAP_TOTAL,
    C_POOL_SIZE,
    C_POOL_WAIT,
    C_PRE,
    C_SHARDS,
    C_BACKEND,
    C_BK_INFLIGHT,
    C_STACK,
    C_WAITERS,
    C_LAYERS,
    C_CLIENTS,
    C_ROWS,
    C_PENDING,
    C_UNFILLED,
    C_LB,
    C_USERS,
    C_GLOGS,
    C_OVERFLOW,
    C_TQ_HEAD,
    C_TQ_LEN,
) = range(26)
C_COLS = 26
# (C_TQ_HEAD / C_TQ_LEN: the first row and the length of the ring of wait timeouts, TQ)
# (C_OVERFLOW: 1 when a push found the event heap full, a bug ``run`` raises on)
# (C_GLOGS: 1 when a global layer has a sliding log: the loop prefetches its rings)
# (clients that retry: C_CLIENTS set; C_ROWS rows of R in use; C_PENDING retries to come,
# C_UNFILLED of them without their draws yet; C_LB the load balancer's code; C_USERS the
# scenario's user requests, rows 0 .. C_USERS - 1)
# event heap: one row of H per event, these columns
H_AT, H_PRIO, H_SEQ, H_KIND, H_I, H_POS, H_CNOW, H_DL = range(8)
H_ROWS = 8
# the wait timeouts' ring (ratesim.fast.heaps.push_timeout): the key and the request, as H's
TQ_AT, TQ_PRIO, TQ_SEQ, TQ_I, TQ_POS = range(5)
TQ_COLS = 5
# the key in the same columns as H's, so that one comparison serves both
assert (TQ_AT, TQ_PRIO, TQ_SEQ) == (H_AT, H_PRIO, H_SEQ)
#: Rows of ``TQ`` at most (the timeouts past them go to the heap): 40 MiB.
TQ_MAX = 1 << 20
# event kinds
K_SERVE, K_SERVE_LATE, K_RELEASE, K_WAIT_TIMEOUT, K_PROCEED, K_FAIL_LOCAL = range(6)
K_SNAPSHOT, K_FAILOVER, K_CONC_TIMEOUT, K_BACKEND_START, K_RELEASE_HELD, K_BACKEND_DONE = range(
    6, 12
)
# a store breaker hears of a call's failure (then the failure mode decides) / of an answer
# (H_CNOW: the op the answer continues with)
K_STORE_FAIL, K_STORE_ANSWER = 12, 13
#: A retry's arrival (``H_I``: the origin row, ``H_POS``: the attempt; keyed at
#: ``PRIO_ARRIVAL`` with the origin as its sequence number, so retries of one instant arrive
#: after its scenario arrivals, by origin)
K_RETRY = 14
# guard kinds (LY[:, L_GUARD_KIND]): a rate layer, a concurrency limit, a circuit breaker
G_RATE, G_CONCURRENCY, G_BREAKER = 0, 1, 2
# PRL[0, i, pos]: what request i holds at guard layer pos until its backend call ends
# (PRL[1]: the local time a breaker let it pass; PRL[2]: the next waiter in the layer's queue)
H_NONE, H_SLOT, H_PASS, H_PROBE = 0, 1, 2, 3
# continuation ops
OP_DONE, OP_PROCEED, OP_RESUME, OP_SEND, OP_FAIL, OP_FINISH = range(6)
# the failure mode decides at once, no call made (an open store breaker)
OP_MODE = 6
# loop status
ST_LIMIT, ST_FINISHED, ST_GROW = 0, 1, 2
#: The next retries need their draws made, or rows to arrive in (``ratesim.fast.retries``)
ST_RETRY = 3
#: Load balancer codes (C_LB)
LB_ROUND_ROBIN, LB_RANDOM, LB_HASH_USER = 0, 1, 2
