"""The fast engine: the event engine's run loop compiled with numba.

``simulate(scenario, engine="fast")`` runs this loop; ``engine="auto"`` (the default) runs it
whenever the scenario is one it supports (:func:`unsupported` gives the reason when not) and
the event engine otherwise.

It is the same discrete-event model as :func:`ratesim.engine.run_events`, not an
approximation: the same draws (made by the engine, per request, before the run), the same
events keyed ``(time, priority, sequence)`` exactly as the event engine keys them, processed in
the same order, through the same kernels (the algorithms' module-level functions, compiled by
``numba.njit``). So both engines return identical per-request outcomes, decision times, pool
waits and Redis queue samples for the same scenario and seed (``tests/test_fast_engine.py``
checks this on every supported built-in and on random scenarios).

The events it knows are all of the event engine's, keyed the same way:

* an arrival batch (every request arriving at one instant, in arrival order);
* a command reaching its Redis shard (FIFO per shard, Lindley's recursion), including commands
  whose caller already gave up (they still charge the state);
* a pooled connection handed to a waiting request, a pool-wait timeout, a request resuming at a
  later instant (a node layer after a global one, or after a failure mode decided), a local
  fallback deciding at a later instant;
* a failover's snapshot and restore of the Redis state (its clock step is a jump of the Redis
  clock; a script flush makes each node's next command pay the NOSCRIPT round trip);
* a concurrency wait timing out, a request entering and leaving the backend, and the slots and
  breaker passes it held being given back (a freed slot handed to the oldest waiter, whose walk
  through the layers then continues, in the event engine's order).

What it does not model (the event engine does; :func:`unsupported` names the first one a
scenario uses): NTP slews on node or Redis clocks (their exact arithmetic needs integers wider
than 64 bits), and more than :data:`MAX_STATE_INTS` integers of limiter state (allocated up
front, where the event engine allocates a key's state when first seen).

Layout: everything lives in int64 numpy arrays (per-request columns, per-layer state tables laid
end to end, the event heap as parallel arrays). The loop runs in calls of at most one time
chunk each, so that Python can show progress and grow the event heap between calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from .algorithms.breaker import breaker_on_complete, breaker_release_probe, breaker_try_pass
from .algorithms.bucketed import bucketed_kernel, double_buffered_kernel
from .algorithms.concurrency import (
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)
from .algorithms.gcra import gcra_kernel
from .algorithms.sliding_log import sliding_log_kernel
from .algorithms.token_bucket import token_bucket_kernel
from .algorithms.window_counter import fixed_window_kernel, sliding_counter_kernel
from .model.clock import NodeClock
from .model.redis_server import queue_depths
from .policy import BACKEND_KINDS
from .results import RunData

if TYPE_CHECKING:
    from .engine import CompiledLayer, Draws
    from .scenario import Scenario
    from .traffic import Arrivals

#: Limiter state the fast engine allocates up front, at most (integers, 8 bytes each).
MAX_STATE_INTS = 2**28

# Kernel codes (the order of the dispatch in ``_kernel``).
_KERNELS = (
    gcra_kernel,
    token_bucket_kernel,
    sliding_log_kernel,
    fixed_window_kernel,
    sliding_counter_kernel,
    bucketed_kernel,
    double_buffered_kernel,
)
_gcra = numba.njit(cache=True)(gcra_kernel)
_tb = numba.njit(cache=True)(token_bucket_kernel)
_log = numba.njit(cache=True)(sliding_log_kernel)
_fixed = numba.njit(cache=True)(fixed_window_kernel)
_counter = numba.njit(cache=True)(sliding_counter_kernel)
_bucketed = numba.njit(cache=True)(bucketed_kernel)
_double = numba.njit(cache=True)(double_buffered_kernel)
_conc_acquire = numba.njit(cache=True)(concurrency_acquire)
_conc_complete = numba.njit(cache=True)(concurrency_complete)
_conc_cancel = numba.njit(cache=True)(concurrency_cancel_wait)
_br_try_pass = numba.njit(cache=True)(breaker_try_pass)
_br_on_complete = numba.njit(cache=True)(breaker_on_complete)
_br_release_probe = numba.njit(cache=True)(breaker_release_probe)
# concurrency codes and state indices, breaker state (ratesim.algorithms.concurrency / breaker)
_ADMIT, _QUEUE, _HANDOFF = 1, 2, 3
_IN_FLIGHT, _QUEUED = 0, 1
_BREAKER_OPEN = 1

# Outcome codes (ratesim.results) and the engine's priorities, as plain ints for numba.
_ALLOWED, _REJECTED, _SHADOW_REJECTED, _FAIL_OPEN, _FAIL_CLOSED = 1, 2, 3, 4, 5
_LOCAL_ALLOWED, _LOCAL_REJECTED = 6, 7
_STRIDE = 64  # ratesim.engine.PRIO_STRIDE
_PRIO_FAILOVER = -3
_PRIO_RELEASE = -2
_PRIO_ARRIVAL = -1

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
# HOLD values: what request i holds at layer pos until its backend call ends
H_NONE, H_SLOT, H_PASS, H_PROBE = 0, 1, 2, 3
# continuation ops
OP_DONE, OP_PROCEED, OP_RESUME, OP_SEND, OP_FAIL, OP_FINISH = range(6)
# loop status
ST_LIMIT, ST_FINISHED, ST_GROW = 0, 1, 2


def unsupported(scenario: Scenario, layers: list[CompiledLayer]) -> str | None:
    """Why the fast engine cannot run ``scenario`` (``None`` when it can)."""
    nodes = scenario.topology.nodes
    redis = scenario.redis
    failovers = len(redis.failovers) if redis is not None else 0
    size = 0
    for cl in layers:
        spec = cl.spec
        if not supports_layer(cl) or (
            cl.local_algs and not all(a.kernel in _KERNELS for a in cl.local_algs)
        ):
            return f"layer {spec.name!r}: algorithm {spec.algorithm.kind!r}"
        per_key = max(a.state_size for a in cl.algs)
        if spec.scope == "node":
            size += nodes * cl.n_keys * per_key
        else:
            size += (1 + failovers) * cl.n_keys * per_key  # the table and its snapshots
        if cl.local_algs:
            size += nodes * cl.n_keys * max(a.state_size for a in cl.local_algs)
    if size > MAX_STATE_INTS:
        return f"{size:,} integers of limiter state (more than {MAX_STATE_INTS:,})"
    if redis is not None and NodeClock(redis.clock).slews:
        return "a Redis clock that slews (NTP slew steps)"
    for k, clock_spec in enumerate(scenario.topology.clock_specs()):
        if NodeClock(clock_spec).slews:
            return f"node {k}'s clock slews (NTP slew steps)"
    return None


# ---------------------------------------------------------------- compiled helpers


@numba.njit(cache=True)
def _kernel(kind: int, p: Any, st: Any, now: int, cost: int) -> tuple[int, int, int, int]:
    if kind == 0:
        return _gcra(p, st, now, cost)
    if kind == 1:
        return _tb(p, st, now, cost)
    if kind == 2:
        return _log(p, st, now, cost)
    if kind == 3:
        return _fixed(p, st, now, cost)
    if kind == 4:
        return _counter(p, st, now, cost)
    if kind == 5:
        return _bucketed(p, st, now, cost)
    return _double(p, st, now, cost)


@numba.njit(cache=True)
def _clock(NV: Any, JUMPS: Any, nd: int, t: int) -> int:
    """``NodeClock.read`` for a clock without slews (offset, drift, jumps)."""
    if NV[nd, N_PERFECT]:
        return t
    local = t + NV[nd, N_OFF]
    for j in range(JUMPS.shape[1]):
        at = JUMPS[nd, j, 0]
        if at == -1 and JUMPS[nd, j, 1] == 0:
            break
        if t >= at:
            local += JUMPS[nd, j, 1]
    # floor(t * drift / 10^12) without int64 overflow: split both factors in base 10^6
    n = NV[nd, N_DRIFT]
    base = 1_000_000
    a = t // base
    b = t - a * base
    c = n // base
    d = n - c * base
    m = a * d + b * c
    m1 = m // base
    m0 = m - m1 * base
    rem = m0 * base + b * d
    q = a * c + m1
    if rem >= 1_000_000_000_000:
        q += 1
    return local + q


@numba.njit(cache=True)
def _less(H: Any, x: int, y: int) -> bool:
    if H[x, H_AT] != H[y, H_AT]:
        return H[x, H_AT] < H[y, H_AT]
    if H[x, H_PRIO] != H[y, H_PRIO]:
        return H[x, H_PRIO] < H[y, H_PRIO]
    return H[x, H_SEQ] < H[y, H_SEQ]


@numba.njit(cache=True)
def _swap(H: Any, x: int, y: int) -> None:
    for r in range(H_ROWS):
        tmp = H[x, r]
        H[x, r] = H[y, r]
        H[y, r] = tmp


@numba.njit(cache=True)
def _room(C: Any, width: int) -> int:
    """Events one event (an arrival batch of ``width`` requests) may push at the most: every
    pool release turned into an event, plus, per request walk (those of the batch, and one per
    concurrency waiter a hand-off may wake), a command per layer and four more."""
    return C[C_RHEAP_TOTAL] + (C[C_LAYERS] + 4) * (width + C[C_WAITERS] + 1)


@numba.njit(cache=True)
def _push(
    H: Any, C: Any, at: int, prio: int, kind: int, i: int, pos: int, cnow: int, dl: int
) -> None:
    """Add an event (its sequence number from the shared counter, as SimPy's ``_eid``)."""
    j = C[C_HEAP]
    if j == H.shape[0]:  # _run reserves room before each event; this is a bug, never UB
        raise RuntimeError("ratesim.fast: event heap overflow")
    C[C_HEAP] = j + 1
    H[j, H_AT] = at
    H[j, H_PRIO] = prio
    H[j, H_SEQ] = C[C_SEQ]
    C[C_SEQ] += 1
    H[j, H_KIND] = kind
    H[j, H_I] = i
    H[j, H_POS] = pos
    H[j, H_CNOW] = cnow
    H[j, H_DL] = dl
    while j > 0:
        parent = (j - 1) >> 1
        if _less(H, j, parent):
            _swap(H, j, parent)
            j = parent
        else:
            break


@numba.njit(cache=True)
def _pop(H: Any, C: Any) -> None:
    """Remove the earliest event (column 0), after the caller has read it."""
    last = C[C_HEAP] - 1
    C[C_HEAP] = last
    if last == 0:
        return
    for r in range(H_ROWS):
        H[0, r] = H[last, r]
    j = 0
    while True:
        left = 2 * j + 1
        if left >= last:
            break
        m = left
        if left + 1 < last and _less(H, left + 1, left):
            m = left + 1
        if _less(H, m, j):
            _swap(H, m, j)
            j = m
        else:
            break


@numba.njit(cache=True)
def _rheap_push(RH: Any, NV: Any, C: Any, nd: int, y: int) -> None:
    j = NV[nd, N_RLEN]
    NV[nd, N_RLEN] = j + 1
    C[C_RHEAP_TOTAL] += 1
    RH[nd, j] = y
    while j > 0:
        parent = (j - 1) >> 1
        if RH[nd, j] < RH[nd, parent]:
            tmp = RH[nd, j]
            RH[nd, j] = RH[nd, parent]
            RH[nd, parent] = tmp
            j = parent
        else:
            break


@numba.njit(cache=True)
def _rheap_pop(RH: Any, NV: Any, C: Any, nd: int) -> None:
    last = NV[nd, N_RLEN] - 1
    NV[nd, N_RLEN] = last
    C[C_RHEAP_TOTAL] -= 1
    RH[nd, 0] = RH[nd, last]
    j = 0
    while True:
        left = 2 * j + 1
        if left >= last:
            break
        m = left
        if left + 1 < last and RH[nd, left + 1] < RH[nd, left]:
            m = left + 1
        if RH[nd, m] < RH[nd, j]:
            tmp = RH[nd, m]
            RH[nd, m] = RH[nd, j]
            RH[nd, j] = tmp
            j = m
        else:
            break


@numba.njit(cache=True)
def _outage(OUTAGES: Any, OUT_SHARDS: Any, t: int, sh: int) -> int:
    """0 up, 1 refused, 2 blackhole: the first listed outage covering shard ``sh`` at ``t``."""
    for o in range(OUTAGES.shape[0]):
        if OUTAGES[o, 0] <= t < OUTAGES[o, 1] and OUT_SHARDS[o, sh]:
            return OUTAGES[o, 2]
    return 0


@numba.njit(cache=True)
def _partitioned(PARTS: Any, PART_NODES: Any, t: int, nd: int) -> bool:
    # a loop, not any(generator): numba compiles loops
    for o in range(PARTS.shape[0]):  # noqa: SIM110
        if PARTS[o, 0] <= t < PARTS[o, 1] and PART_NODES[o, nd]:
            return True
    return False


@numba.njit(cache=True)
def _node_kernel(
    pos: int,
    row: int,
    off: int,
    size: int,
    i: int,
    now: int,
    R: Any,
    KEYS: Any,
    LY: Any,
    KK: Any,
    PP: Any,
    STATE: Any,
) -> tuple[int, int]:
    """Layer ``pos``'s kernel on request ``i``'s node table (``row``: ``pos`` for the layer's
    own algorithms, ``n_layers + pos`` for its local fallback) at local time ``now``."""
    tr = R[i, R_TIER]
    s0 = off + (R[i, R_NODE] * LY[pos, L_NKEYS] + KEYS[pos, i]) * size
    ok, rem, _, _ = _kernel(KK[row, tr], PP[row, tr], STATE[s0 : s0 + size], now, R[i, R_COST])
    return ok, rem


@numba.njit(cache=True)
def _backend_start(i: int, y: int, R: Any, H: Any, C: Any, BKF: Any) -> None:
    """Admitted request ``i`` enters the backend at ``y`` (== now); its completion is an event
    after its base service time slowed by the load (float arithmetic as the event engine's)."""
    C[C_BK_INFLIGHT] += 1
    slowdown = 1.0 + BKF[0] * (C[C_BK_INFLIGHT] - 1) / BKF[1]
    done = y + round(R[i, R_BK] * slowdown)
    _push(H, C, done, i * _STRIDE + _STRIDE - 1, K_BACKEND_DONE, i, 0, 0, 0)


@numba.njit(cache=True)
def _release_held(
    i: int,
    y: int,
    completed: bool,
    R: Any,
    KEYS: Any,
    OUT: Any,
    REM: Any,
    LY: Any,
    PP: Any,
    STATE: Any,
    NV: Any,
    JUMPS: Any,
    PRL: Any,
    CQ: Any,
    STACK: Any,
    C: Any,
) -> None:
    """Give back request ``i``'s concurrency slots and report to its breakers at ``y`` (==
    now), in layer order (the order it took them); a slot handed to a waiter puts the waiter's
    ``proceed`` on the continuation stack, first hand-off on top."""
    R[i, R_HOLDS] = 0
    nd = R[i, R_NODE]
    local_now = R[i, R_CLK] if y == R[i, R_T] else _clock(NV, JUMPS, nd, y)
    tr = R[i, R_TIER]
    first = C[C_STACK]
    for pos in range(LY.shape[0]):
        h = PRL[0, i, pos]
        if h == H_NONE:
            continue
        PRL[0, i, pos] = H_NONE
        k = KEYS[pos, i]
        size = LY[pos, L_SIZE]
        s0 = LY[pos, L_OFF] + (nd * LY[pos, L_NKEYS] + k) * size
        st = STATE[s0 : s0 + size]
        p = PP[pos, tr]
        if h == H_SLOT:
            if _conc_complete(p, st, local_now) == _HANDOFF:
                e = LY[pos, L_QOFF] + nd * LY[pos, L_NKEYS] + k
                w = CQ[0, e]
                while True:  # skip waiters that already gave up
                    CQ[0, e] = PRL[2, w, pos]
                    if CQ[0, e] < 0:
                        CQ[1, e] = -1
                    if R[w, R_CWAIT] == pos + 1:  # else it gave up or moved on
                        break
                    w = CQ[0, e]
                R[w, R_CWAIT] = 0
                C[C_WAITERS] -= 1
                OUT[pos, w] = _ALLOWED
                REM[pos, w] = 0
                PRL[0, w, pos] = H_SLOT
                R[w, R_HOLDS] += 1
                c = C[C_STACK]
                C[C_STACK] = c + 1
                STACK[c, 0] = OP_PROCEED
                STACK[c, 1] = w
                STACK[c, 2] = pos + 1
                STACK[c, 3] = y
        elif completed:
            _br_on_complete(p, st, local_now, local_now - PRL[1, i, pos], 0)
        elif h == H_PROBE:
            _br_release_probe(p, st, local_now)
    # the first hand-off runs first: reverse this call's entries on the stack
    lo = first
    hi = C[C_STACK] - 1
    while lo < hi:
        for col in range(4):
            tmp = STACK[lo, col]
            STACK[lo, col] = STACK[hi, col]
            STACK[hi, col] = tmp
        lo += 1
        hi -= 1


@numba.njit(cache=True, inline="always")
def _continue(op: int, i: int, pos: int, x: int, cur: int, ctx: Any) -> None:
    """Run request ``i``'s continuation ``op`` (the engine's ``proceed`` / ``resume`` / send /
    ``fail`` / ``finish``, which only ever call one another last) at the current instant
    ``cur``; ``x`` is the instant the op is for (``>= cur``), ``pos`` its layer (for
    ``OP_FINISH``: the rejecting layer or -1). Continuations a hand-off left on ``STACK`` run
    next, last pushed first (the event engine's nested calls, in the same order)."""
    (
        R,
        KEYS,
        APPLIES,
        OUT,
        REM,
        LY,
        KK,
        PP,
        STATE,
        LAT,
        SHARD,
        NV,
        JUMPS,
        RH,
        H,
        C,
        OUTAGES,
        OUT_SHARDS,
        PARTS,
        PART_NODES,
        PRL,
        CQ,
        STACK,
        BKF,
    ) = ctx
    n_layers = LY.shape[0]
    while True:
        if op == OP_DONE:
            c = C[C_STACK]
            if c == 0:
                break
            c -= 1
            C[C_STACK] = c
            op = STACK[c, 0]
            i = STACK[c, 1]
            pos = STACK[c, 2]
            x = STACK[c, 3]
            continue
        if op in (OP_PROCEED, OP_RESUME):
            if op == OP_RESUME and x == cur:
                op = OP_PROCEED
            while pos < n_layers and not APPLIES[pos, i]:
                pos += 1
            if pos == n_layers:
                op = OP_FINISH
                pos = -1
                continue
            if op == OP_RESUME:
                if R[i, R_CONN] == 1 and not LY[pos, L_IS_NODE]:
                    op = OP_SEND
                else:
                    _push(H, C, x, i * _STRIDE + pos, K_PROCEED, i, pos, 0, 0)
                    op = OP_DONE
                continue
            if LY[pos, L_IS_NODE] and LY[pos, L_GUARD_KIND]:
                # a concurrency limit or a circuit breaker (the engine's ``run_guard_layer``)
                nd = R[i, R_NODE]
                k = KEYS[pos, i]
                size = LY[pos, L_SIZE]
                s0 = LY[pos, L_OFF] + (nd * LY[pos, L_NKEYS] + k) * size
                st = STATE[s0 : s0 + size]
                p = PP[pos, R[i, R_TIER]]
                local_now = R[i, R_CLK] if x == R[i, R_T] else _clock(NV, JUMPS, nd, x)
                if LY[pos, L_GUARD_KIND] == G_CONCURRENCY:
                    code = _conc_acquire(p, st, local_now)
                    if code == _ADMIT:
                        OUT[pos, i] = _ALLOWED
                        REM[pos, i] = p[0] - st[_IN_FLIGHT]
                        PRL[0, i, pos] = H_SLOT
                        R[i, R_HOLDS] += 1
                        pos += 1
                        continue
                    if code == _QUEUE:
                        e = LY[pos, L_QOFF] + nd * LY[pos, L_NKEYS] + k
                        PRL[2, i, pos] = -1
                        if CQ[1, e] >= 0:
                            PRL[2, CQ[1, e], pos] = i
                        else:
                            CQ[0, e] = i
                        CQ[1, e] = i
                        R[i, R_CWAIT] = pos + 1
                        C[C_WAITERS] += 1
                        _push(H, C, x + p[1], i * _STRIDE + pos, K_CONC_TIMEOUT, i, pos, 0, 0)
                        op = OP_DONE
                        continue
                else:
                    probe = st[0] == _BREAKER_OPEN
                    if _br_try_pass(p, st, local_now):
                        OUT[pos, i] = _ALLOWED
                        PRL[0, i, pos] = H_PROBE if probe else H_PASS
                        PRL[1, i, pos] = local_now
                        R[i, R_HOLDS] += 1
                        pos += 1
                        continue
                OUT[pos, i] = _REJECTED
                op = OP_FINISH
                continue
            if LY[pos, L_IS_NODE]:
                # a node rate layer after a global one, at the node's clock now
                local_now = R[i, R_CLK] if x == R[i, R_T] else _clock(NV, JUMPS, R[i, R_NODE], x)
                ok, rem = _node_kernel(
                    pos,
                    pos,
                    LY[pos, L_OFF],
                    LY[pos, L_SIZE],
                    i,
                    local_now,
                    R,
                    KEYS,
                    LY,
                    KK,
                    PP,
                    STATE,
                )
                REM[pos, i] = rem
                if ok:
                    OUT[pos, i] = _ALLOWED
                    pos += 1
                elif LY[pos, L_SHADOW]:
                    OUT[pos, i] = _SHADOW_REJECTED
                    pos += 1
                else:
                    OUT[pos, i] = _REJECTED
                    op = OP_FINISH
                continue
            # a global layer: borrow a connection first (the engine's ``acquire``)
            if R[i, R_CONN] == 0:
                nd = R[i, R_NODE]
                while NV[nd, N_RLEN] > 0 and RH[nd, 0] <= x:
                    _rheap_pop(RH, NV, C, nd)
                    NV[nd, N_IN_USE] -= 1
                if NV[nd, N_LIVE] == 0 and NV[nd, N_IN_USE] < C[C_POOL_SIZE]:
                    NV[nd, N_IN_USE] += 1
                    R[i, R_CONN] = 1
                elif C[C_POOL_WAIT] == 0:
                    R[i, R_CONN] = 2
                else:
                    R[i, R_WNEXT] = -1
                    if NV[nd, N_WTAIL] >= 0:
                        R[NV[nd, N_WTAIL], R_WNEXT] = i
                    else:
                        NV[nd, N_WHEAD] = i
                    NV[nd, N_WTAIL] = i
                    R[i, R_WAITING] = 1
                    R[i, R_WAIT_POS] = pos
                    R[i, R_WAIT_SINCE] = x
                    NV[nd, N_LIVE] += 1
                    if NV[nd, N_LIVE] == 1 and NV[nd, N_RLEN] > 0:
                        # releases now need events, to hand their connection over on time
                        for j in range(NV[nd, N_RLEN]):
                            _push(H, C, RH[nd, j], _PRIO_RELEASE, K_RELEASE, nd, 0, 0, 0)
                        C[C_RHEAP_TOTAL] -= NV[nd, N_RLEN]
                        NV[nd, N_RLEN] = 0
                    _push(H, C, x + C[C_POOL_WAIT], i * _STRIDE + pos, K_WAIT_TIMEOUT, i, pos, 0, 0)
                    op = OP_DONE
                    continue
            if R[i, R_CONN] == 2:
                op = OP_FAIL
                continue
            op = OP_SEND
        elif op == OP_SEND:
            g = LY[pos, L_GIDX]
            deadline = x + LY[pos, L_TMO]
            a = x + LAT[g, 0, i]
            nd = R[i, R_NODE]
            if PARTS.shape[0] and _partitioned(PARTS, PART_NODES, x, nd):
                op = OP_FAIL
                x = deadline
                continue
            if OUTAGES.shape[0]:
                kind = _outage(OUTAGES, OUT_SHARDS, a, SHARD[g, i])
                if kind == 1:
                    op = OP_FAIL
                    x = min(a + LAT[g, 1, i], deadline)
                    continue
                if kind == 2:
                    op = OP_FAIL
                    x = deadline
                    continue
            client_now = x
            if LY[pos, L_CLIENT_TIME]:
                client_now = R[i, R_CLK] if x == R[i, R_T] else _clock(NV, JUMPS, nd, x)
            if NV[nd, N_RELOAD]:
                # NOSCRIPT: the error comes back, the script is loaded, the call goes out again
                NV[nd, N_RELOAD] = 0
                a += LAT[g, 1, i] + LAT[g, 0, i]
            late = a > deadline
            kind = K_SERVE_LATE if late else K_SERVE
            _push(H, C, a, i * _STRIDE + pos, kind, i, pos, client_now, deadline)
            if late:
                op = OP_FAIL
                x = deadline
            else:
                op = OP_DONE
        elif op == OP_FAIL:
            if LY[pos, L_LOCAL]:
                if x != cur:
                    _push(H, C, x, i * _STRIDE + pos, K_FAIL_LOCAL, i, pos, 0, 0)
                    op = OP_DONE
                    continue
                # the node-local fallback limiter decides (the engine's ``fail_local``)
                local_now = _clock(NV, JUMPS, R[i, R_NODE], x)
                ok, rem = _node_kernel(
                    pos,
                    n_layers + pos,
                    LY[pos, L_LOFF],
                    LY[pos, L_LSIZE],
                    i,
                    local_now,
                    R,
                    KEYS,
                    LY,
                    KK,
                    PP,
                    STATE,
                )
                REM[pos, i] = rem
                if ok:
                    OUT[pos, i] = _LOCAL_ALLOWED
                    op = OP_RESUME
                    pos += 1
                else:
                    OUT[pos, i] = _LOCAL_REJECTED
                    if LY[pos, L_SHADOW]:
                        op = OP_RESUME
                        pos += 1
                    else:
                        op = OP_FINISH
            elif LY[pos, L_CLOSED]:
                OUT[pos, i] = _FAIL_CLOSED
                if LY[pos, L_SHADOW]:
                    op = OP_RESUME
                    pos += 1
                else:
                    op = OP_FINISH
            else:
                OUT[pos, i] = _FAIL_OPEN
                op = OP_RESUME
                pos += 1
        else:  # OP_FINISH at x, rejected by layer pos (-1: admitted)
            R[i, R_DECIDED] = x
            R[i, R_REJ] = pos
            C[C_DONE] += 1
            if R[i, R_CONN] == 1:
                R[i, R_CONN] = 3
                nd = R[i, R_NODE]
                if NV[nd, N_LIVE]:
                    _push(H, C, x, _PRIO_RELEASE, K_RELEASE, nd, 0, 0, 0)
                else:
                    _rheap_push(RH, NV, C, nd, x)
            if C[C_BACKEND]:
                if pos < 0:
                    if x == cur:
                        _backend_start(i, x, R, H, C, BKF)
                    else:
                        _push(H, C, x, i * _STRIDE + _STRIDE - 2, K_BACKEND_START, i, 0, 0, 0)
                elif R[i, R_HOLDS]:
                    if x == cur:
                        _release_held(
                            i,
                            x,
                            False,
                            R,
                            KEYS,
                            OUT,
                            REM,
                            LY,
                            PP,
                            STATE,
                            NV,
                            JUMPS,
                            PRL,
                            CQ,
                            STACK,
                            C,
                        )
                    else:
                        _push(H, C, x, i * _STRIDE + _STRIDE - 2, K_RELEASE_HELD, i, 0, 0, 0)
            op = OP_DONE


@numba.njit(cache=True)
def _prefix(
    R: Any,
    KEYS: Any,
    APPLIES: Any,
    OUT: Any,
    REM: Any,
    LY: Any,
    KK: Any,
    PP: Any,
    STATE: Any,
    n_pre: int,
) -> None:
    """Leading node rate layers, each over all requests in arrival order (as the engine's
    ``prefix_layer``)."""
    n = R.shape[0]
    for pos in range(n_pre):
        off = LY[pos, L_OFF]
        size = LY[pos, L_SIZE]
        n_keys = LY[pos, L_NKEYS]
        shadow = LY[pos, L_SHADOW]
        for i in range(n):
            if R[i, R_PRE_REJ] >= 0 or not APPLIES[pos, i]:
                continue
            tr = R[i, R_TIER]
            s0 = off + (R[i, R_NODE] * n_keys + KEYS[pos, i]) * size
            ok, rem, _, _ = _kernel(
                KK[pos, tr], PP[pos, tr], STATE[s0 : s0 + size], R[i, R_CLK], R[i, R_COST]
            )
            REM[pos, i] = rem
            if ok:
                OUT[pos, i] = _ALLOWED
            elif shadow:
                OUT[pos, i] = _SHADOW_REJECTED
            else:
                OUT[pos, i] = _REJECTED
                R[i, R_PRE_REJ] = pos


@numba.njit(cache=True)
def _run(limit: int, world: Any) -> int:
    """Process events in key order while they come before ``limit`` (µs of true time).

    Returns ``ST_FINISHED`` when nothing is left, ``ST_LIMIT`` at the limit, ``ST_GROW`` when
    the event heap needs more room before the next event (the caller grows ``H`` and calls
    again; nothing of that event has run)."""
    (
        INST,
        BOUNDS,
        R,
        KEYS,
        APPLIES,
        OUT,
        REM,
        LY,
        KK,
        PP,
        STATE,
        GSTATE,
        SNAP,
        FO_FLUSH,
        LAT,
        SHARD,
        NV,
        JUMPS,
        RH,
        BUSY,
        CMD,
        H,
        C,
        OUTAGES,
        OUT_SHARDS,
        PARTS,
        PART_NODES,
        PRL,
        CQ,
        STACK,
        BKF,
    ) = world
    ctx = (
        R,
        KEYS,
        APPLIES,
        OUT,
        REM,
        LY,
        KK,
        PP,
        STATE,
        LAT,
        SHARD,
        NV,
        JUMPS,
        RH,
        H,
        C,
        OUTAGES,
        OUT_SHARDS,
        PARTS,
        PART_NODES,
        PRL,
        CQ,
        STACK,
        BKF,
    )
    n_batches = INST.shape[0]
    n_pre = C[C_PRE]
    sharded = C[C_SHARDS] > 1
    n_nodes = NV.shape[0] - 1
    while True:
        b = C[C_BATCH]
        hn = C[C_HEAP]
        if b < n_batches:
            take_arrival = (
                hn == 0
                or INST[b] < H[0, H_AT]
                or (INST[b] == H[0, H_AT] and H[0, H_PRIO] > _PRIO_ARRIVAL)
            )
        elif hn:
            take_arrival = False
        else:
            return ST_FINISHED
        at = INST[b] if take_arrival else H[0, H_AT]
        if at >= limit:
            return ST_LIMIT
        width = BOUNDS[b + 1] - BOUNDS[b] if take_arrival else 1
        if H.shape[0] - hn < _room(C, width):
            return ST_GROW
        cur = at
        if take_arrival:
            C[C_BATCH] = b + 1
            for i in range(BOUNDS[b], BOUNDS[b + 1]):
                C[C_ARRIVED] += 1
                rej = R[i, R_PRE_REJ]
                if rej < 0:
                    op = OP_PROCEED
                    pos = n_pre
                else:
                    op = OP_FINISH
                    pos = rej
                _continue(op, i, pos, cur, cur, ctx)
            continue
        kind = H[0, H_KIND]
        i = H[0, H_I]
        pos = H[0, H_POS]
        cnow = H[0, H_CNOW]
        dl = H[0, H_DL]
        _pop(H, C)
        op = OP_DONE
        x = cur
        if kind in (K_SERVE, K_SERVE_LATE):
            late = kind == K_SERVE_LATE
            g = LY[pos, L_GIDX]
            sh = SHARD[g, i] if sharded else 0
            start = BUSY[sh]
            if cur > start:
                start = cur
            fin = start + LAT[g, 2, i]
            BUSY[sh] = fin
            c = C[C_CMD]
            C[C_CMD] = c + 1
            CMD[0, c] = cur
            CMD[1, c] = fin
            CMD[2, c] = sh
            reply = fin + LAT[g, 1, i]
            server_now = start if NV[n_nodes, N_PERFECT] else _clock(NV, JUMPS, n_nodes, start)
            guard = LY[pos, L_GUARD]
            if guard and abs(cnow - server_now) > guard:
                if not late:
                    op = OP_FAIL
                    x = min(reply, dl)
            else:
                size = LY[pos, L_SIZE]
                s0 = LY[pos, L_OFF] + KEYS[pos, i] * size
                tr = R[i, R_TIER]
                now_k = server_now if LY[pos, L_REDIS_TIME] else cnow
                ok, rem, _, _ = _kernel(
                    KK[pos, tr], PP[pos, tr], GSTATE[s0 : s0 + size], now_k, R[i, R_COST]
                )
                if late:
                    pass
                elif reply > dl:
                    op = OP_FAIL
                    x = dl
                else:
                    REM[pos, i] = rem
                    x = reply
                    if ok:
                        OUT[pos, i] = _ALLOWED
                        op = OP_RESUME
                        pos += 1
                    elif LY[pos, L_SHADOW]:
                        OUT[pos, i] = _SHADOW_REJECTED
                        op = OP_RESUME
                        pos += 1
                    else:
                        OUT[pos, i] = _REJECTED
                        op = OP_FINISH
        elif kind == K_RELEASE:
            nd = i
            NV[nd, N_IN_USE] -= 1
            while NV[nd, N_WHEAD] >= 0:
                w = NV[nd, N_WHEAD]
                NV[nd, N_WHEAD] = R[w, R_WNEXT]
                if NV[nd, N_WHEAD] < 0:
                    NV[nd, N_WTAIL] = -1
                if R[w, R_WAITING]:
                    R[w, R_WAITING] = 0
                    NV[nd, N_LIVE] -= 1
                    NV[nd, N_IN_USE] += 1
                    R[w, R_CONN] = 1
                    R[w, R_POOL_WAIT] = cur - R[w, R_WAIT_SINCE]
                    op = OP_PROCEED
                    i = w
                    pos = R[w, R_WAIT_POS]
                    break
        elif kind == K_WAIT_TIMEOUT:
            if R[i, R_WAITING]:
                R[i, R_WAITING] = 0
                NV[R[i, R_NODE], N_LIVE] -= 1
                R[i, R_CONN] = 2
                R[i, R_POOL_WAIT] = cur - R[i, R_WAIT_SINCE]
                op = OP_PROCEED
                pos = R[i, R_WAIT_POS]
        elif kind == K_PROCEED:
            op = OP_PROCEED
        elif kind == K_FAIL_LOCAL:
            op = OP_FAIL
        elif kind == K_SNAPSHOT:
            SNAP[i, :] = GSTATE
        elif kind == K_FAILOVER:  # the state as it was at the snapshot comes back
            GSTATE[:] = SNAP[i, :]
            if FO_FLUSH[i]:
                NV[:n_nodes, N_RELOAD] = 1
        elif kind == K_CONC_TIMEOUT:
            if R[i, R_CWAIT] == pos + 1:
                R[i, R_CWAIT] = 0
                C[C_WAITERS] -= 1
                nd = R[i, R_NODE]
                size = LY[pos, L_SIZE]
                s0 = LY[pos, L_OFF] + (nd * LY[pos, L_NKEYS] + KEYS[pos, i]) * size
                local_now = R[i, R_CLK] if cur == R[i, R_T] else _clock(NV, JUMPS, nd, cur)
                _conc_cancel(PP[pos, R[i, R_TIER]], STATE[s0 : s0 + size], local_now)
                OUT[pos, i] = _REJECTED
                op = OP_FINISH
        elif kind == K_BACKEND_START:
            _backend_start(i, cur, R, H, C, BKF)
        else:  # K_RELEASE_HELD, K_BACKEND_DONE
            completed = kind == K_BACKEND_DONE
            if completed:
                C[C_BK_INFLIGHT] -= 1
                R[i, R_BK_DONE] = cur
            _release_held(
                i, cur, completed, R, KEYS, OUT, REM, LY, PP, STATE, NV, JUMPS, PRL, CQ, STACK, C
            )
        if op != OP_DONE or C[C_STACK]:
            _continue(op, i, pos, x, cur, ctx)


# ---------------------------------------------------------------- the Python side


def _kernel_code(kernel: object) -> int:
    return _KERNELS.index(kernel)


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
    n_layers = len(layers)
    nodes = scenario.topology.nodes
    redis = scenario.redis
    net = scenario.network
    n_tiers = max(1, len(arrivals.tier_names))
    g_count = draws.lat_out_us.shape[1]

    clocks = [NodeClock(spec) for spec in scenario.topology.clock_specs()]
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
    R[:, R_DECIDED] = -1
    R[:, R_REJ] = -1
    R[:, R_WNEXT] = -1
    R[:, R_PRE_REJ] = -1

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
        for row, algs in ((pos, cl.algs), (n_layers + pos, cl.local_algs or [])):
            for tr, alg in enumerate(algs[:n_tiers]):
                KK[row, tr] = _kernel_code(alg.kernel) if gk == G_RATE else -1
                PP[row, tr, : len(alg.params)] = alg.params
        if cl.shard is not None:
            SHARD[cl.gidx] = np.frombuffer(cl.shard, dtype=np.int64)
    STATE = np.zeros(off, dtype=np.int64)
    for start, entries, state in initial:
        if any(state):
            STATE[start : start + entries * len(state)] = np.tile(state, entries)
    GSTATE = np.zeros(g_off, dtype=np.int64)
    n_guards = len(initial)
    PRL = np.zeros((3, n, n_layers) if n_guards else (3, 1, 1), dtype=np.int64)
    CQ = np.full((2, max(q_off, 1)), -1, dtype=np.int64)
    STACK = np.zeros((n * n_guards + 1, 4), dtype=np.int64)
    backend = scenario.backend
    BKF = np.array(
        [backend.load_factor, backend.servers] if backend is not None else [0.0, 1.0],
        dtype=np.float64,
    )
    failovers = sorted(redis.failovers, key=lambda f: f.at_us) if redis is not None else []
    SNAP = np.zeros((len(failovers), g_off), dtype=np.int64)
    FO_FLUSH = np.array([f.flush_scripts for f in failovers], dtype=np.bool_)
    OUT = np.zeros((n_layers, n), dtype=np.int8)
    REM = np.full((n_layers, n), -1, dtype=np.int64)

    LAT = np.zeros((max(g_count, 1), 3, n), dtype=np.int64)
    if g_count:
        LAT[:g_count, 0] = draws.lat_out_us.T
        LAT[:g_count, 1] = draws.lat_back_us.T
        LAT[:g_count, 2] = draws.service_us.T
    node_np = draws.node
    R[:, R_BK_DONE] = -1
    if backend is not None:
        R[:, R_BK] = draws.backend_us
    del draws

    # clocks: one row per node, then the Redis server's (failover clock steps are its jumps,
    # as the engine's stepped reader adds them)
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
    pool_size = net.pool_size
    RH = np.zeros((nodes, pool_size + 1), dtype=np.int64)
    n_shards = redis.shards if redis is not None else 1
    BUSY = np.zeros(n_shards, dtype=np.int64)
    CMD = np.zeros((3, n * g_count), dtype=np.int64)
    H = np.zeros((max(1, heap_size, 2 * len(failovers) + 1), H_ROWS), dtype=np.int64)
    C = np.zeros(C_COLS, dtype=np.int64)
    C[C_POOL_SIZE] = pool_size
    C[C_POOL_WAIT] = round(net.pool_max_wait_ms * 1000)
    n_pre = 0  # leading node rate layers (not guards): they run up front, in _prefix
    while (
        n_pre < n_layers
        and layers[n_pre].spec.scope == "node"
        and layers[n_pre].spec.algorithm.kind not in BACKEND_KINDS
    ):
        n_pre += 1
    C[C_PRE] = n_pre
    C[C_SHARDS] = n_shards
    C[C_BACKEND] = backend is not None
    C[C_LAYERS] = n_layers
    # failovers: a snapshot at ``at - lost_writes`` and the restore at ``at``, posted in this
    # order before the run as the event engine posts them
    for j, f in enumerate(failovers):
        _push(H, C, max(0, f.at_us - f.lost_writes_us), _PRIO_FAILOVER, K_SNAPSHOT, j, 0, 0, 0)
        _push(H, C, f.at_us, _PRIO_FAILOVER, K_FAILOVER, j, 0, 0, 0)

    outages = list(redis.outages) if redis is not None else []
    OUTAGES = np.zeros((len(outages), 3), dtype=np.int64)
    OUT_SHARDS = np.zeros((len(outages), n_shards), dtype=np.bool_)
    for o, outage in enumerate(outages):
        OUTAGES[o] = (outage.start_us, outage.end_us, 1 if outage.kind == "refused" else 2)
        for sh in range(n_shards):
            OUT_SHARDS[o, sh] = outage.shards is None or sh in outage.shards
    parts = list(net.partitions)
    PARTS = np.zeros((len(parts), 2), dtype=np.int64)
    PART_NODES = np.zeros((len(parts), nodes), dtype=np.bool_)
    for o, part in enumerate(parts):
        PARTS[o] = (part.start_us, part.end_us)
        for nd in part.nodes:
            if nd < nodes:
                PART_NODES[o, nd] = True

    if n:
        instants, starts = np.unique(arrivals.time_us, return_index=True)
        INST = instants.astype(np.int64)
        BOUNDS = np.append(starts, n).astype(np.int64)
    else:
        INST = np.zeros(0, dtype=np.int64)
        BOUNDS = np.zeros(1, dtype=np.int64)

    _prefix(R, KEYS, APPLIES, OUT, REM, LY, KK, PP, STATE, n_pre)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, unit="req", desc="simulating")
    # what _run works on, in the order it unpacks it (H, the event heap, can be replaced)
    world: list[Any] = [
        INST,
        BOUNDS,
        R,
        KEYS,
        APPLIES,
        OUT,
        REM,
        LY,
        KK,
        PP,
        STATE,
        GSTATE,
        SNAP,
        FO_FLUSH,
        LAT,
        SHARD,
        NV,
        JUMPS,
        RH,
        BUSY,
        CMD,
        H,
        C,
        OUTAGES,
        OUT_SHARDS,
        PARTS,
        PART_NODES,
        PRL,
        CQ,
        STACK,
        BKF,
    ]
    h_slot = 21
    assert world[h_slot] is H
    limit = chunk_us if progress else 2**62
    try:
        while True:
            status = _run(limit, tuple(world))
            if status == ST_FINISHED:
                break
            if status == ST_GROW:
                need = int(_room(C, int(np.diff(BOUNDS).max(initial=1))))
                grown = np.zeros((2 * H.shape[0] + need, H_ROWS), dtype=np.int64)
                grown[: H.shape[0]] = H
                H = world[h_slot] = grown
                continue
            if bar is not None:
                bar.update(int(C[C_DONE]) - bar.n)
            limit += chunk_us
    finally:
        if bar is not None:
            bar.update(int(C[C_DONE]) - bar.n)
            bar.close()

    done, arrived = int(C[C_DONE]), int(C[C_ARRIVED])
    decided = R[:, R_DECIDED].copy()
    if arrived != n or done != n or (n and decided.min() < 0):
        raise AssertionError(
            f"conservation violated: {n} arrivals, {arrived} arrived, {done} decided "
            f"({arrived - done} in flight)"
        )
    if (NV[:nodes, N_IN_USE] != NV[:nodes, N_RLEN]).any() or NV[:nodes, N_LIVE].any():
        raise AssertionError("conservation violated: a node's pool not returned")
    if C[C_BK_INFLIGHT] or R[:, R_HOLDS].any() or R[:, R_CWAIT].any():
        raise AssertionError("conservation violated: requests left in the backend or holding slots")
    for pos, cl in enumerate(layers):
        if LY[pos, L_GUARD_KIND] == G_CONCURRENCY:
            start, size = int(LY[pos, L_OFF]), int(LY[pos, L_SIZE])
            table = STATE[start : start + nodes * cl.n_keys * size].reshape(-1, size)
            if table[:, _IN_FLIGHT].any() or table[:, _QUEUED].any():
                raise AssertionError(f"conservation violated: layer {pos} slots held")
    n_cmd = int(C[C_CMD])
    depth_t = CMD[0, :n_cmd].copy()
    shard_arr = CMD[2, :n_cmd].copy() if n_shards > 1 else None
    return RunData(
        arrivals=arrivals,
        node=node_np,
        outcomes=np.ascontiguousarray(OUT.T),
        remaining=np.ascontiguousarray(REM.T),
        decided_us=decided,
        rejected_by=R[:, R_REJ].astype(np.int16),
        pool_wait_us=R[:, R_POOL_WAIT].copy(),
        depth_t_us=depth_t,
        depth=queue_depths(depth_t, CMD[1, :n_cmd].copy(), shard_arr),
        backend_done_us=R[:, R_BK_DONE].copy() if backend is not None else None,
    )


@numba.njit(cache=True)
def _oracle_layer(
    todo: Any,
    keys: Any,
    tier: Any,
    t_us: Any,
    cost: Any,
    kk: Any,
    pp: Any,
    size: int,
    n_keys: int,
    oks: Any,
    rems: Any,
) -> None:
    state = np.zeros(n_keys * size, dtype=np.int64)
    for j in range(todo.shape[0]):
        i = todo[j]
        s0 = keys[i] * size
        tr = tier[i]
        ok, rem, _, _ = _kernel(kk[tr], pp[tr], state[s0 : s0 + size], t_us[i], cost[i])
        oks[j] = ok
        rems[j] = rem


def oracle_layer(
    cl: CompiledLayer, todo: np.ndarray, arrivals: Arrivals
) -> tuple[np.ndarray, np.ndarray]:
    """One rate layer of the oracle (see :func:`ratesim.engine.run_oracle`), compiled: the
    kernel over the requests ``todo`` (arrival order) on one shared table; returns the
    (allowed, remaining) of each as int64 arrays."""
    n_tiers = max(1, len(arrivals.tier_names))
    size = max(a.state_size for a in cl.algs)
    max_p = max(len(a.params) for a in cl.algs)
    kk = np.zeros(n_tiers, dtype=np.int64)
    pp = np.zeros((n_tiers, max_p), dtype=np.int64)
    for tr in range(n_tiers):
        alg = cl.algs[tr if tr < len(cl.algs) else 0]
        kk[tr] = _kernel_code(alg.kernel)
        pp[tr, : len(alg.params)] = alg.params
    oks = np.zeros(len(todo), dtype=np.int64)
    rems = np.zeros(len(todo), dtype=np.int64)
    _oracle_layer(
        np.asarray(todo, dtype=np.int64),
        np.asarray(cl.keys, dtype=np.int64),
        arrivals.tier.astype(np.int64),
        arrivals.time_us.astype(np.int64),
        arrivals.cost.astype(np.int64),
        kk,
        pp,
        size,
        cl.n_keys,
        oks,
        rems,
    )
    return oks, rems


def supports_layer(cl: CompiledLayer) -> bool:
    """True when every tier's algorithm of ``cl`` has a compiled kernel here, and every new key
    starts from the state the fast engine gives it (zeros for a rate algorithm, the first
    tier's initial state for a concurrency limit or a breaker)."""
    if cl.spec.algorithm.kind in BACKEND_KINDS:
        first = cl.algs[0].new_state()
        return all(a.new_state() == first for a in cl.algs)
    return all(a.kernel in _KERNELS and not any(a.new_state()) for a in cl.algs)
