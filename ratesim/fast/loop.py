"""The fast engine's event loop: the event engine's ``proceed`` / ``resume`` / send / serve /
``fail`` / ``finish`` and its rarer events, compiled with numba, on the tables of
:mod:`ratesim.fast.layout` (handed over as one :class:`~ratesim.fast.layout.World`)."""

from __future__ import annotations

from typing import Any

import numba

from ..algorithms.breaker import OPEN
from ..algorithms.breaker import STATE as BREAKER_STATE
from ..algorithms.concurrency import ADMIT, HANDOFF, IN_FLIGHT, QUEUE
from ..algorithms.sliding_log import RING_CAP, RING_COUNT, RING_HEAD, RING_STAMPS
from ..model.faults import OUTAGE_BLACKHOLE, OUTAGE_REFUSED
from ..model.store_breaker import SB_COLS
from ..ordering import PRIO_ARRIVAL, PRIO_BACKEND, PRIO_RELEASE, PRIO_STRIDE
from ..outcomes import (
    ALLOWED,
    FAIL_CLOSED,
    FAIL_OPEN,
    LOCAL_ALLOWED,
    LOCAL_REJECTED,
    REJECTED,
    SHADOW_REJECTED,
)
from .heaps import feed_timeout, pop, push, push_timeout, rheap_pop, rheap_push, room
from .kernels import (
    GCRA_CODE,
    TB_CODE,
    br_on_complete,
    br_release_probe,
    br_try_pass,
    clock_read,
    conc_acquire,
    conc_cancel,
    conc_complete,
    epoch_at,
    gcra_inline,
    hold,
    outage,
    partitioned,
    rate_kernel,
    sb_gate,
    sb_observe,
    slowed,
    tb_inline,
)
from .layout import (
    C_ARRIVED,
    C_BACKEND,
    C_BATCH,
    C_BK_INFLIGHT,
    C_CLIENTS,
    C_CMD,
    C_DONE,
    C_GLOGS,
    C_HEAP,
    C_OVERFLOW,
    C_PENDING,
    C_POOL_SIZE,
    C_POOL_WAIT,
    C_PRE,
    C_RHEAP_TOTAL,
    C_ROWS,
    C_SHARDS,
    C_STACK,
    C_TQ_LEN,
    C_UNFILLED,
    C_WAITERS,
    G_CONCURRENCY,
    H_AT,
    H_CNOW,
    H_DL,
    H_I,
    H_KIND,
    H_NONE,
    H_PASS,
    H_POS,
    H_PRIO,
    H_PROBE,
    H_SLOT,
    K_BACKEND_DONE,
    K_BACKEND_START,
    K_CONC_TIMEOUT,
    K_FAIL_LOCAL,
    K_FAILOVER,
    K_PROCEED,
    K_RELEASE,
    K_RELEASE_HELD,
    K_RETRY,
    K_SERVE,
    K_SERVE_LATE,
    K_SNAPSHOT,
    K_STORE_ANSWER,
    K_STORE_FAIL,
    K_WAIT_TIMEOUT,
    L_CLIENT_TIME,
    L_CLOSED,
    L_FOLLOW,
    L_GIDX,
    L_GUARD,
    L_GUARD_KIND,
    L_IS_NODE,
    L_LOCAL,
    L_LOFF,
    L_LSIZE,
    L_OFF,
    L_QOFF,
    L_REDIS_TIME,
    L_SB_COOL,
    L_SB_FAILS,
    L_SHADOW,
    L_SIZE,
    L_TMO,
    N_IN_USE,
    N_LIVE,
    N_PERFECT,
    N_RELOAD,
    N_RLEN,
    N_WHEAD,
    N_WTAIL,
    OP_DONE,
    OP_FAIL,
    OP_FINISH,
    OP_MODE,
    OP_PROCEED,
    OP_RESUME,
    OP_SEND,
    R_BK,
    R_BK_DONE,
    R_CLK,
    R_CONN,
    R_COST,
    R_CWAIT,
    R_DECIDED,
    R_HELD,
    R_HOLDS,
    R_NODE,
    R_POOL_WAIT,
    R_PRE_REJ,
    R_REJ,
    R_RETRY,
    R_T,
    R_TIER,
    R_WAIT_POS,
    R_WAIT_SINCE,
    R_WAITING,
    R_WNEXT,
    ST_FINISHED,
    ST_GROW,
    ST_LIMIT,
    ST_RETRY,
    World,
)
from .logpool import (
    LOG_CODE,
    NODE_POOL,
    POOL_USED,
    REDIS_POOL,
    STALE,
    log_with_room,
    restore_pool,
    ring_has_room,
    ring_kernel,
    snapshot_pool,
)
from .prefetch import prefetch
from .retries import client_refused, retry_arrivals

#: Arrivals ahead whose per-request table lines the loop prefetches (``ratesim.fast.prefetch``)
PF_AHEAD = 16


@numba.njit(cache=True, inline="always")
def _p0(shape: tuple[int, int, int], row: int, tr: int) -> int:
    """Where row ``row``'s parameters for tier ``tr`` start in ``PP`` flattened (``PF``),
    ``shape``: ``PP.shape`` (a function inlined by numba taking an array costs a reference
    count taken and dropped on it at each call: the hot paths pass none)."""
    return (row * shape[1] + tr) * shape[2]


@numba.njit(cache=True, inline="always")
def _rate_row(LY: Any, TOPO_AT: Any, pos: int, t: int) -> int:
    """The KK / PP row of node rate layer ``pos`` at true time ``t`` (µs): ``pos``, or for a
    ``local_share: follow`` layer its row in the node schedule's epoch at ``t``."""
    if not LY[pos, L_FOLLOW]:
        return pos
    return LY[pos, L_FOLLOW] + epoch_at(t, TOPO_AT)


@numba.njit(cache=True, nogil=True)
def _node_kernel(
    row: int,
    s0: int,
    i: int,
    now: int,
    R: Any,
    KK: Any,
    PP: Any,
    PF: Any,
    STATE: Any,
    NPOOL: Any,
    LOGS: Any,
) -> tuple[int, int, int]:
    """A node-side kernel (``row``: layer ``pos`` for its own algorithms, ``n_layers + pos``
    for its local fallback) on request ``i``'s state at ``STATE[s0:]`` (a sliding log's ring
    in the node-side pool of ``LOGS``, bound as ``NPOOL``), at local time ``now`` (µs);
    ``PF``: ``PP`` flattened (the kernel reads its parameters at an offset). Returns
    ``(allowed, remaining, retry_after_us)``."""
    tr = R[i, R_TIER]
    code = KK[row, tr]
    p0 = _p0(PP.shape, row, tr)
    cost = R[i, R_COST]
    # table_kernel written out, as in ``run`` (inlined by numba it kept reference counts on
    # its tables at every call)
    if code == LOG_CODE:
        # logpool._ring_with_room: the ring, if it has room for the admission
        b0 = STATE[s0] if NPOOL[POOL_USED] != STALE else 0
        if b0 and not ring_has_room(NPOOL[b0 + RING_COUNT], NPOOL[b0 + RING_CAP], PF[p0], cost):
            b0 = 0
        if b0:
            ok, rem, rt, _ = ring_kernel(PF, NPOOL, now, cost, p0, b0)
        else:
            ok, rem, rt, _ = log_with_room(PF, p0, STATE, s0, LOGS, NODE_POOL, now, cost)
    else:
        ok, rem, rt, _ = rate_kernel(code, PF, p0, STATE, s0, now, cost)
    return ok, rem, rt


@numba.njit(cache=True, nogil=True)
def _backend_start(i: int, y: int, R: Any, H: Any, C: Any, BKF: Any) -> None:
    """Admitted request ``i`` enters the backend at ``y`` (== now); its completion is an event
    after its base service time slowed by the load (``model.backend.slowed_service_us``)."""
    C[C_BK_INFLIGHT] += 1
    done = y + slowed(R[i, R_BK], C[C_BK_INFLIGHT], BKF[0], BKF[1])
    push(H, C, done, i * PRIO_STRIDE + PRIO_BACKEND + 1, K_BACKEND_DONE, i, 0, 0, 0)


@numba.njit(cache=True, nogil=True)
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
    CK: Any,
    JUMPS: Any,
    SLEWS: Any,
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
    local_now = (
        R[i, R_CLK]
        if y == R[i, R_T]
        else (y if NV[nd, N_PERFECT] else clock_read(CK, JUMPS, SLEWS, nd, y))
    )
    tr = R[i, R_TIER]
    first = C[C_STACK]
    for pos in range(LY.shape[0]):
        h = PRL[0, i, pos]
        if h == H_NONE:
            continue
        PRL[0, i, pos] = H_NONE
        k = KEYS[pos, i]  # the (node, key) pair's slot
        size = LY[pos, L_SIZE]
        s0 = LY[pos, L_OFF] + k * size
        st = STATE[s0 : s0 + size]
        p = PP[pos, tr]
        if h == H_SLOT:
            if conc_complete(p, st, local_now) == HANDOFF:
                e = LY[pos, L_QOFF] + k
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
                OUT[pos, w] = ALLOWED
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
            br_on_complete(p, st, local_now, local_now - PRL[1, i, pos], 0)
        elif h == H_PROBE:
            br_release_probe(p, st, local_now)
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


@numba.njit(cache=True, nogil=True)
def prefix(
    R: Any,
    KEYS: Any,
    APPLIES: Any,
    OUT: Any,
    REM: Any,
    LY: Any,
    KK: Any,
    PP: Any,
    PF: Any,
    STATE: Any,
    LOGS: Any,
    n_pre: int,
    TOPO_AT: Any,
    SHP: Any,
    lo: int,
    hi: int,
) -> None:
    """Leading node rate layers, each over requests ``lo .. hi - 1`` in arrival order (as the
    engine's ``prefix_layer``); only the last can hold (shaping): ``R_HELD`` says how long. A
    sliding log's rings are in the node-side pool of ``LOGS``. Whole tables and a row range,
    not views: a view of some rows is contiguous or not by the range, and each layout is
    another compilation of this function."""
    NPOOL = LOGS[NODE_POOL]
    pshape = PP.shape
    for pos in range(n_pre):
        follow = LY[pos, L_FOLLOW]
        off = LY[pos, L_OFF]
        size = LY[pos, L_SIZE]
        shadow = LY[pos, L_SHADOW]
        for i in range(lo, hi):
            if R[i, R_PRE_REJ] >= 0 or not APPLIES[pos, i]:
                continue
            tr = R[i, R_TIER]
            s0 = off + KEYS[pos, i] * size
            row = pos if not follow else follow + epoch_at(R[i, R_T], TOPO_AT)  # _rate_row
            if NPOOL[POOL_USED] == STALE:  # the pool grew: bind the new one
                NPOOL = LOGS[NODE_POOL]
            # table_kernel written out, as in ``run`` (inlined by numba it kept reference
            # counts on its tables at every call)
            code = KK[row, tr]
            p0 = (row * pshape[1] + tr) * pshape[2]  # _p0
            cost = R[i, R_COST]
            now = R[i, R_CLK]
            if code == LOG_CODE:
                b0 = STATE[s0]  # logpool._ring_with_room (the binding is fresh: checked above)
                if b0 and not ring_has_room(
                    NPOOL[b0 + RING_COUNT], NPOOL[b0 + RING_CAP], PF[p0], cost
                ):
                    b0 = 0
                if b0:
                    ok, rem, rt, _ = ring_kernel(PF, NPOOL, now, cost, p0, b0)
                else:
                    ok, rem, rt, _ = log_with_room(PF, p0, STATE, s0, LOGS, NODE_POOL, now, cost)
            elif code == TB_CODE:
                ok, rem, rt, _ = tb_inline(PF, STATE, now, cost, p0, s0)
            else:
                ok, rem, rt, _ = rate_kernel(code, PF, p0, STATE, s0, now, cost)
            REM[pos, i] = rem
            if ok:
                OUT[pos, i] = ALLOWED
                R[i, R_HELD] += hold(SHP[row, tr], ok, rt)
            elif shadow:
                OUT[pos, i] = SHADOW_REJECTED
            else:
                OUT[pos, i] = REJECTED
                R[i, R_PRE_REJ] = pos


@numba.njit(cache=True, nogil=True)
def run(limit: int, world: World) -> int:
    """Process events in key order while they come before ``limit`` (µs of true time).

    Returns ``ST_FINISHED`` when nothing is left, ``ST_LIMIT`` at the limit, ``ST_GROW`` when
    the event heap needs more room before the next event (the caller grows ``H`` and calls
    again; nothing of that event has run).

    Each step takes the next arrival of the batch in hand, or else the next event (an
    arrival batch, or a queued event dispatched by kind), then runs the request's
    continuation (the engine's ``proceed`` / ``resume`` / send / ``fail`` / ``finish``, which
    only ever call one another last) at the current instant until it waits for an event;
    continuations a hand-off left on ``STACK`` run next, last pushed first (the event
    engine's nested calls, in the same order).

    One long function on purpose (a documented exception to the length rule), measured:

    * the event dispatch split into inlined functions (a command at its shard, the other
      events) ran the flagship's loop 1.4-1.7x slower (best of 5, interleaved: 1.5-1.7 s
      against 1.0-1.2 s), each call re-reading its tables from the :class:`World`;
    * the continuation was an inlined ``_continue(op, i, pos, x, cur, world)`` called from
      two places: each call bound its 28 tables from the ``World`` again, a numba reference
      count taken and dropped per table per call (atomic operations, most of the loop's
      time); written here once, on the tables bound once per call of ``run``, the flagship's
      loop went from 1.49 to 0.85 µs a request (scale 1, best of 4, same machine and load);
      with explicit table arguments instead (not inlined: numba's inliner refuses that
      many) it was no faster than the tuple."""
    # the tables by name, bound once a call
    INST = world.INST
    BOUNDS = world.BOUNDS
    R = world.R
    KEYS = world.KEYS
    OUT = world.OUT
    REM = world.REM
    LY = world.LY
    KK = world.KK
    PP = world.PP
    PF = world.PF
    STATE = world.STATE
    GSTATE = world.GSTATE
    SNAP = world.SNAP
    LOGS = world.LOGS
    NPOOL = LOGS[NODE_POOL]  # the pools bound once, again when one grew (ratesim.fast.logpool)
    RPOOL = LOGS[REDIS_POOL]
    FO_FLUSH = world.FO_FLUSH
    LAT = world.LAT
    SHARD = world.SHARD
    NV = world.NV
    CK = world.CK
    JUMPS = world.JUMPS
    SLEWS = world.SLEWS
    BUSY = world.BUSY
    CMD = world.CMD
    H = world.H
    C = world.C
    TQ = world.TQ
    PRL = world.PRL
    CQ = world.CQ
    STACK = world.STACK
    BKF = world.BKF
    LKEYS = world.LKEYS
    APPLIES = world.APPLIES
    RH = world.RH
    OUTAGES = world.OUTAGES
    OUT_SHARDS = world.OUT_SHARDS
    PARTS = world.PARTS
    PART_NODES = world.PART_NODES
    TOPO_AT = world.TOPO_AT
    SHP = world.SHP
    SB = world.SB
    n_layers = LY.shape[0]
    n_batches = INST.shape[0]
    r_cols = R.shape[1]  # the prefetches' strides (the tables grow only between calls)
    n_rows = KEYS.shape[1]
    lat_rows = LAT.shape[0] * 3
    lat_cols = LAT.shape[2]
    lat_ahead = LAT.shape[0] * PF_AHEAD
    cmd_cols = CMD.shape[1]
    n_pre = C[C_PRE]
    sharded = C[C_SHARDS] > 1
    n_nodes = NV.shape[0] - 1
    nxt = 0  # the next arrival of the batch in hand (requests nxt .. end - 1 left)
    end = 0
    cur = 0
    rnxt = 0  # clients: the retries that arrive right after the batch in hand (rnxt .. rend - 1)
    rend = 0
    while True:
        if C[C_OVERFLOW]:  # a push found the heap full (never: room is reserved per event)
            raise RuntimeError("ratesim.fast: event heap overflow")
        if NPOOL[POOL_USED] == STALE:
            NPOOL = LOGS[NODE_POOL]
        if RPOOL[POOL_USED] == STALE:
            RPOOL = LOGS[REDIS_POOL]
        if nxt >= end and rnxt < rend:
            nxt = rnxt
            end = rend
            rnxt = rend
        if nxt < end:
            # the batch's next arrival walks through its layers at once, in arrival order
            i = nxt
            nxt += 1
            C[C_ARRIVED] += 1
            # prefetches written out (ratesim.fast.prefetch; as calls they pushed ~60 words
            # of array structures an arrival): request i + PF_AHEAD's lines of the
            # per-request tables, the command table a few requests on, then (global sliding
            # logs) ring headers PF_AHEAD // 2 arrivals on and this arrival's ring stamps
            pj = i + PF_AHEAD
            for k in range(0, r_cols, 8):  # a row spans 2-4 lines: one touch every 64 bytes
                prefetch(R, pj * r_cols + k)
            for k in range(n_layers):
                prefetch(KEYS, k * n_rows + pj)
                prefetch(REM, k * n_rows + pj)
                prefetch(OUT, k * n_rows + pj)
                prefetch(APPLIES, k * n_rows + pj)
            for k in range(lat_rows):
                prefetch(LAT, k * lat_cols + pj)
            pj = C[C_CMD] + lat_ahead
            for k in range(3):
                prefetch(CMD, k * cmd_cols + pj)
            if C[C_GLOGS]:
                for step in range(2):
                    pj = i + PF_AHEAD // 2 if step == 0 else i
                    if pj >= R.shape[0]:
                        continue
                    ptr = R[pj, R_TIER]
                    for k in range(n_layers):
                        if LY[k, L_IS_NODE] or KK[k, ptr] != LOG_CODE:
                            continue
                        e = LY[k, L_OFF] + KEYS[k, pj] * LY[k, L_SIZE]
                        if e < 0 or e >= GSTATE.shape[0]:
                            continue  # a row not filled yet (room for retries)
                        pb = GSTATE[e]
                        if pb <= 0 or pb + RING_STAMPS > RPOOL.shape[0]:
                            continue  # no ring yet (or a stale binding: a hint missed)
                        if step == 0:
                            prefetch(RPOOL, pb)
                            continue
                        ph = RPOOL[pb + RING_HEAD]
                        po = ph - RPOOL[pb + RING_COUNT]
                        prefetch(
                            RPOOL, pb + RING_STAMPS + (po + RPOOL[pb + RING_CAP] if po < 0 else po)
                        )
                        prefetch(RPOOL, pb + RING_STAMPS + ph)
            x = cur
            rej = R[i, R_PRE_REJ]
            if rej < 0:
                op = OP_PROCEED
                pos = n_pre
                if R[i, R_HELD]:  # shaping: held by the last leading layer, then on
                    op = OP_RESUME
                    x = cur + R[i, R_HELD]
            else:
                op = OP_FINISH
                pos = rej
        else:
            if C[C_TQ_LEN]:
                # the wait timeouts' ring: its head into the heap when it is the earliest
                # event (ratesim.fast.heaps), with a row free for it
                if C[C_HEAP] >= H.shape[0]:
                    return ST_GROW
                feed_timeout(H, C, TQ, R)
            b = C[C_BATCH]
            hn = C[C_HEAP]
            if b < n_batches:
                take_arrival = (
                    hn == 0
                    or INST[b] < H[0, H_AT]
                    or (INST[b] == H[0, H_AT] and H[0, H_PRIO] >= PRIO_ARRIVAL)
                )
            elif hn:
                take_arrival = False
            else:
                return ST_FINISHED
            at = INST[b] if take_arrival else H[0, H_AT]
            if at >= limit:
                return ST_LIMIT
            width = BOUNDS[b + 1] - BOUNDS[b] if take_arrival else 1
            # clients: the instant's retries (the only heap events at PRIO_ARRIVAL) arrive as a
            # batch, right after the instant's scenario arrivals when it has some
            retry = hn > 0 and H[0, H_AT] == at and H[0, H_KIND] == K_RETRY
            if retry:
                width += C[C_PENDING]
                if C[C_UNFILLED] or C[C_ROWS] + C[C_PENDING] > R.shape[0]:
                    return ST_RETRY  # their draws, or rows for them, first (fast.retries)
            if H.shape[0] - hn < room(C, width):
                return ST_GROW
            cur = at
            if take_arrival:
                C[C_BATCH] = b + 1
                nxt = BOUNDS[b]
                end = BOUNDS[b + 1]
                if retry:
                    rnxt = C[C_ROWS]
                    retry_arrivals(cur, world)
                    rend = C[C_ROWS]
                continue
            if retry:
                nxt = C[C_ROWS]
                retry_arrivals(cur, world)
                end = C[C_ROWS]
                continue
            kind = H[0, H_KIND]
            i = H[0, H_I]
            pos = H[0, H_POS]
            cnow = H[0, H_CNOW]
            dl = H[0, H_DL]
            pop(H, C)
            op = OP_DONE
            x = cur
            if kind in (K_SERVE, K_SERVE_LATE):
                late = kind == K_SERVE_LATE
                gpos = pos
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
                server_now = (
                    start
                    if NV[n_nodes, N_PERFECT]
                    else clock_read(CK, JUMPS, SLEWS, n_nodes, start)
                )
                guard = LY[pos, L_GUARD]
                if guard and abs(cnow - server_now) > guard:
                    if not late:
                        op = OP_FAIL
                        x = min(reply, dl)
                else:
                    s0 = LY[pos, L_OFF] + KEYS[pos, i] * LY[pos, L_SIZE]
                    tr = R[i, R_TIER]
                    now_k = server_now if LY[pos, L_REDIS_TIME] else cnow
                    # table_kernel written out (inlined by numba it cost reference counts on
                    # its tables at every call: 28 against 1.4 ns a GCRA call, bare loop), the
                    # GCRA inline, a sliding log's ring as table_kernel finds it
                    code = KK[pos, tr]
                    p0 = _p0(PP.shape, pos, tr)
                    cost = R[i, R_COST]
                    if code == GCRA_CODE:
                        ok, rem, rt, _ = gcra_inline(PF, GSTATE, now_k, cost, p0, s0)
                    elif code == LOG_CODE:
                        # logpool._ring_with_room: the ring, if it has room for the admission
                        b0 = GSTATE[s0] if RPOOL[POOL_USED] != STALE else 0
                        if b0 and not ring_has_room(
                            RPOOL[b0 + RING_COUNT], RPOOL[b0 + RING_CAP], PF[p0], cost
                        ):
                            b0 = 0
                        if b0:
                            ok, rem, rt, _ = ring_kernel(PF, RPOOL, now_k, cost, p0, b0)
                        else:
                            ok, rem, rt, _ = log_with_room(
                                PF, p0, GSTATE, s0, LOGS, REDIS_POOL, now_k, cost
                            )
                    else:
                        ok, rem, rt, _ = rate_kernel(code, PF, p0, GSTATE, s0, now_k, cost)
                    if late:
                        pass
                    elif reply > dl:
                        op = OP_FAIL
                        x = dl
                    else:
                        REM[pos, i] = rem
                        x = reply
                        d = 0
                        if ok:
                            OUT[pos, i] = ALLOWED
                            op = OP_RESUME
                            d = hold(SHP[pos, tr], ok, rt)  # shaping: held, then on
                            R[i, R_HELD] += d
                            x += d
                            pos += 1
                        elif LY[pos, L_SHADOW]:
                            OUT[pos, i] = SHADOW_REJECTED
                            op = OP_RESUME
                            pos += 1
                        else:
                            OUT[pos, i] = REJECTED
                            R[i, R_RETRY] = rt  # clients: the Retry-After
                            op = OP_FINISH
                        if LY[gpos, L_SB_FAILS]:
                            # store breaker: it hears of the answer when the answer arrives (a
                            # shaping hold starts then: the event carries it in H_DL)
                            if reply != cur:
                                push(
                                    H, C, reply, i * PRIO_STRIDE + gpos, K_STORE_ANSWER, i, gpos,
                                    op, d,
                                )  # fmt: skip
                                op = OP_DONE
                            else:
                                o = (R[i, R_NODE] * n_layers + gpos) * SB_COLS
                                sb_observe(SB, o, LY[gpos, L_SB_FAILS], i, 1, reply)
            elif kind == K_STORE_ANSWER:
                o = (R[i, R_NODE] * n_layers + pos) * SB_COLS
                sb_observe(SB, o, LY[pos, L_SB_FAILS], i, 1, cur)
                op = cnow
                if op == OP_RESUME:
                    pos += 1
                    x = cur + dl  # a shaping layer's hold, from the answer on
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
                        op = OP_SEND  # what proceed does at a global layer holding a connection
                        i = w
                        pos = R[w, R_WAIT_POS]
                        break
            elif kind == K_WAIT_TIMEOUT:
                if R[i, R_WAITING]:
                    R[i, R_WAITING] = 0
                    NV[R[i, R_NODE], N_LIVE] -= 1
                    R[i, R_CONN] = 2
                    R[i, R_POOL_WAIT] = cur - R[i, R_WAIT_SINCE]
                    op = OP_FAIL  # what proceed does at a global layer with no connection
                    pos = R[i, R_WAIT_POS]
            elif kind == K_PROCEED:
                op = OP_PROCEED
            elif kind in (K_FAIL_LOCAL, K_STORE_FAIL):
                op = OP_FAIL
            elif kind == K_SNAPSHOT:
                SNAP[i, :] = GSTATE
                snapshot_pool(LOGS, i)
            elif kind == K_FAILOVER:  # the state as it was at the snapshot comes back
                GSTATE[:] = SNAP[i, :]
                restore_pool(LOGS, i)
                if FO_FLUSH[i]:
                    NV[:n_nodes, N_RELOAD] = 1
            elif kind == K_CONC_TIMEOUT:
                if R[i, R_CWAIT] == pos + 1:
                    R[i, R_CWAIT] = 0
                    C[C_WAITERS] -= 1
                    nd = R[i, R_NODE]
                    size = LY[pos, L_SIZE]
                    s0 = LY[pos, L_OFF] + KEYS[pos, i] * size
                    local_now = (
                        R[i, R_CLK]
                        if cur == R[i, R_T]
                        else (cur if NV[nd, N_PERFECT] else clock_read(CK, JUMPS, SLEWS, nd, cur))
                    )
                    conc_cancel(PP[pos, R[i, R_TIER]], STATE[s0 : s0 + size], local_now)
                    OUT[pos, i] = REJECTED
                    op = OP_FINISH
            elif kind == K_BACKEND_START:
                _backend_start(i, cur, R, H, C, BKF)
            else:  # K_RELEASE_HELD, K_BACKEND_DONE
                completed = kind == K_BACKEND_DONE
                if completed:
                    C[C_BK_INFLIGHT] -= 1
                    R[i, R_BK_DONE] = cur
                if R[i, R_HOLDS]:  # else nothing to give back (and no PRL rows: no guards)
                    _release_held(
                        i, cur, completed, R, KEYS, OUT, REM, LY, PP, STATE, NV, CK, JUMPS, SLEWS, PRL,
                        CQ, STACK, C,
                    )  # fmt: skip
            if op == OP_DONE and C[C_STACK] == 0:
                continue
        # the continuation of request i (op at x, layer pos): the engine's proceed /
        # resume / send / fail / finish, which only ever call one another last, run here
        # until it waits for an event; hand-offs left on STACK run next, last pushed first
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
                    if R[i, R_CONN] == 1 and not LY[pos, L_IS_NODE] and not LY[pos, L_SB_FAILS]:
                        op = OP_SEND
                    else:
                        push(H, C, x, i * PRIO_STRIDE + pos, K_PROCEED, i, pos, 0, 0)
                        op = OP_DONE
                    continue
                if LY[pos, L_IS_NODE] and LY[pos, L_GUARD_KIND]:
                    # a concurrency limit or a circuit breaker (the engine's ``run_guard_layer``)
                    nd = R[i, R_NODE]
                    k = KEYS[pos, i]  # the (node, key) pair's slot
                    size = LY[pos, L_SIZE]
                    s0 = LY[pos, L_OFF] + k * size
                    st = STATE[s0 : s0 + size]
                    p = PP[pos, R[i, R_TIER]]
                    local_now = (
                        R[i, R_CLK]
                        if x == R[i, R_T]
                        else (x if NV[nd, N_PERFECT] else clock_read(CK, JUMPS, SLEWS, nd, x))
                    )
                    if LY[pos, L_GUARD_KIND] == G_CONCURRENCY:
                        code = conc_acquire(p, st, local_now)
                        if code == ADMIT:
                            OUT[pos, i] = ALLOWED
                            REM[pos, i] = p[0] - st[IN_FLIGHT]
                            PRL[0, i, pos] = H_SLOT
                            R[i, R_HOLDS] += 1
                            pos += 1
                            continue
                        if code == QUEUE:
                            e = LY[pos, L_QOFF] + k
                            PRL[2, i, pos] = -1
                            if CQ[1, e] >= 0:
                                PRL[2, CQ[1, e], pos] = i
                            else:
                                CQ[0, e] = i
                            CQ[1, e] = i
                            R[i, R_CWAIT] = pos + 1
                            C[C_WAITERS] += 1
                            push(
                                H, C, x + p[1], i * PRIO_STRIDE + pos, K_CONC_TIMEOUT, i, pos, 0, 0
                            )
                            op = OP_DONE
                            continue
                    else:
                        probe = st[BREAKER_STATE] == OPEN
                        if br_try_pass(p, st, local_now):
                            OUT[pos, i] = ALLOWED
                            PRL[0, i, pos] = H_PROBE if probe else H_PASS
                            PRL[1, i, pos] = local_now
                            R[i, R_HOLDS] += 1
                            pos += 1
                            continue
                    OUT[pos, i] = REJECTED
                    op = OP_FINISH
                    continue
                if LY[pos, L_IS_NODE]:
                    # a node rate layer after a global one, at the node's clock now
                    nd = R[i, R_NODE]
                    local_now = (
                        R[i, R_CLK]
                        if x == R[i, R_T]
                        else (x if NV[nd, N_PERFECT] else clock_read(CK, JUMPS, SLEWS, nd, x))
                    )
                    s0 = LY[pos, L_OFF] + KEYS[pos, i] * LY[pos, L_SIZE]
                    row = _rate_row(LY, TOPO_AT, pos, x)
                    ok, rem, rt = _node_kernel(
                        row, s0, i, local_now, R, KK, PP, PF, STATE, NPOOL, LOGS
                    )
                    REM[pos, i] = rem
                    if ok:
                        OUT[pos, i] = ALLOWED
                        pos += 1
                        d = hold(SHP[row, R[i, R_TIER]], ok, rt)
                        if d:  # shaping: held, then on from the next layer
                            R[i, R_HELD] += d
                            op = OP_RESUME
                            x += d
                    elif LY[pos, L_SHADOW]:
                        OUT[pos, i] = SHADOW_REJECTED
                        pos += 1
                    else:
                        OUT[pos, i] = REJECTED
                        R[i, R_RETRY] = rt  # clients: the Retry-After
                        op = OP_FINISH
                    continue
                if LY[pos, L_SB_FAILS]:
                    # a store breaker in front of the call: open, it takes the failure mode now
                    o = (R[i, R_NODE] * n_layers + pos) * SB_COLS
                    if sb_gate(SB, o, LY[pos, L_SB_COOL], i, x) == 0:
                        op = OP_MODE
                        continue
                # a global layer: borrow a connection first (the engine's ``acquire``)
                if R[i, R_CONN] == 0:
                    nd = R[i, R_NODE]
                    while NV[nd, N_RLEN] > 0 and RH[nd, 0] <= x:
                        rheap_pop(RH, NV, C, nd)
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
                                push(H, C, RH[nd, j], PRIO_RELEASE, K_RELEASE, nd, 0, 0, 0)
                            C[C_RHEAP_TOTAL] -= NV[nd, N_RLEN]
                            NV[nd, N_RLEN] = 0
                        push_timeout(H, C, TQ, x + C[C_POOL_WAIT], i * PRIO_STRIDE + pos, i, pos)
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
                if PARTS.shape[0] and partitioned(PARTS, PART_NODES, x, nd):
                    op = OP_FAIL
                    x = deadline
                    continue
                if OUTAGES.shape[0]:
                    kind = outage(OUTAGES, OUT_SHARDS, a, SHARD[g, i])
                    if kind == OUTAGE_REFUSED:
                        op = OP_FAIL
                        x = min(a + LAT[g, 1, i], deadline)
                        continue
                    if kind == OUTAGE_BLACKHOLE:
                        op = OP_FAIL
                        x = deadline
                        continue
                client_now = x
                if LY[pos, L_CLIENT_TIME]:
                    client_now = (
                        R[i, R_CLK]
                        if x == R[i, R_T]
                        else (x if NV[nd, N_PERFECT] else clock_read(CK, JUMPS, SLEWS, nd, x))
                    )
                if NV[nd, N_RELOAD]:
                    # NOSCRIPT: the error comes back, the script is loaded, the call goes out again
                    NV[nd, N_RELOAD] = 0
                    a += LAT[g, 1, i] + LAT[g, 0, i]
                late = a > deadline
                kind = K_SERVE_LATE if late else K_SERVE
                push(H, C, a, i * PRIO_STRIDE + pos, kind, i, pos, client_now, deadline)
                if late:
                    op = OP_FAIL
                    x = deadline
                else:
                    op = OP_DONE
            elif op in (OP_FAIL, OP_MODE):
                if op == OP_FAIL and LY[pos, L_SB_FAILS]:
                    # a failed call: its store breaker hears of it when the caller learns it
                    if x != cur:
                        push(H, C, x, i * PRIO_STRIDE + pos, K_STORE_FAIL, i, pos, 0, 0)
                        op = OP_DONE
                        continue
                    o = (R[i, R_NODE] * n_layers + pos) * SB_COLS
                    sb_observe(SB, o, LY[pos, L_SB_FAILS], i, 0, x)
                if LY[pos, L_LOCAL]:
                    if x != cur:
                        push(H, C, x, i * PRIO_STRIDE + pos, K_FAIL_LOCAL, i, pos, 0, 0)
                        op = OP_DONE
                        continue
                    # the node-local fallback limiter decides (the engine's ``fail_local``)
                    nd = R[i, R_NODE]
                    local_now = x if NV[nd, N_PERFECT] else clock_read(CK, JUMPS, SLEWS, nd, x)
                    s0 = LY[pos, L_LOFF] + LKEYS[pos, i] * LY[pos, L_LSIZE]
                    row = n_layers + pos
                    ok, rem, rt = _node_kernel(
                        row, s0, i, local_now, R, KK, PP, PF, STATE, NPOOL, LOGS
                    )
                    REM[pos, i] = rem
                    if ok:
                        OUT[pos, i] = LOCAL_ALLOWED
                        op = OP_RESUME
                        d = hold(SHP[row, R[i, R_TIER]], ok, rt)  # shaping: held, then on
                        R[i, R_HELD] += d
                        x += d
                        pos += 1
                    else:
                        OUT[pos, i] = LOCAL_REJECTED
                        R[i, R_RETRY] = rt  # clients: the Retry-After
                        if LY[pos, L_SHADOW]:
                            op = OP_RESUME
                            pos += 1
                        else:
                            op = OP_FINISH
                elif LY[pos, L_CLOSED]:
                    OUT[pos, i] = FAIL_CLOSED
                    if LY[pos, L_SHADOW]:
                        op = OP_RESUME
                        pos += 1
                    else:
                        op = OP_FINISH
                else:
                    OUT[pos, i] = FAIL_OPEN
                    op = OP_RESUME
                    pos += 1
            else:  # OP_FINISH at x, rejected by layer pos (-1: admitted)
                R[i, R_DECIDED] = x
                R[i, R_REJ] = pos
                C[C_DONE] += 1
                if pos >= 0 and C[C_CLIENTS]:
                    client_refused(
                        i, x, pos, R, OUT, LY, world.CL, world.FIRST_T, world.T_OFF, world.SENT,
                        world.SEED, world.PEND, H, C, world.PLAT, world.PBK, world.LIDX,
                        world.LPLAT, world.LPBK,
                    )  # fmt: skip
                if R[i, R_CONN] == 1:
                    R[i, R_CONN] = 3
                    nd = R[i, R_NODE]
                    if NV[nd, N_LIVE]:
                        push(H, C, x, PRIO_RELEASE, K_RELEASE, nd, 0, 0, 0)
                    else:
                        rheap_push(RH, NV, C, nd, x)
                if C[C_BACKEND]:
                    if pos < 0:
                        if x == cur:
                            _backend_start(i, x, R, H, C, BKF)
                        else:
                            push(
                                H, C, x, i * PRIO_STRIDE + PRIO_BACKEND, K_BACKEND_START, i, 0, 0, 0
                            )
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
                                CK,
                                JUMPS,
                                SLEWS,
                                PRL,
                                CQ,
                                STACK,
                                C,
                            )
                        else:
                            push(
                                H, C, x, i * PRIO_STRIDE + PRIO_BACKEND, K_RELEASE_HELD, i, 0, 0, 0
                            )
                op = OP_DONE
