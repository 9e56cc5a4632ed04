"""The fast engine's array layouts: the columns of its tables and the codes of its events.

Every table is an int64 numpy array; these names index it. Rows of ``R`` are requests, rows of
``LY`` layers, rows of ``NV`` gateway nodes (then one for the Redis server's clock), rows of
``H`` queued events; ``C`` holds the loop's counters.
"""

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
) = range(18)
R_COLS = 18
# per-layer columns of LY
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
) = range(16)
LY_COLS = 16
# per-node columns of NV
# (rows 0 .. nodes-1: the gateway nodes; row ``nodes``: the Redis server's clock)
N_IN_USE, N_LIVE, N_WHEAD, N_WTAIL, N_RLEN, N_OFF, N_DRIFT, N_PERFECT, N_RELOAD = range(9)
NV_COLS = 9
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
) = range(16)
C_COLS = 16
# event heap: one row of H per event, these columns
H_AT, H_PRIO, H_SEQ, H_KIND, H_I, H_POS, H_CNOW, H_DL = range(8)
H_ROWS = 8
# event kinds
K_SERVE, K_SERVE_LATE, K_RELEASE, K_WAIT_TIMEOUT, K_PROCEED, K_FAIL_LOCAL = range(6)
K_SNAPSHOT, K_FAILOVER, K_CONC_TIMEOUT, K_BACKEND_START, K_RELEASE_HELD, K_BACKEND_DONE = range(
    6, 12
)
# guard kinds (LY[:, L_GUARD_KIND]): a rate layer, a concurrency limit, a circuit breaker
G_RATE, G_CONCURRENCY, G_BREAKER = 0, 1, 2
# PRL[0, i, pos]: what request i holds at guard layer pos until its backend call ends
# (PRL[1]: the local time a breaker let it pass; PRL[2]: the next waiter in the layer's queue)
H_NONE, H_SLOT, H_PASS, H_PROBE = 0, 1, 2, 3
# continuation ops
OP_DONE, OP_PROCEED, OP_RESUME, OP_SEND, OP_FAIL, OP_FINISH = range(6)
# loop status
ST_LIMIT, ST_FINISHED, ST_GROW = 0, 1, 2
