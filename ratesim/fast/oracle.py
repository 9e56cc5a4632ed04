"""The oracle's layer loop and its gap, compiled (see :func:`ratesim.oracle.run_oracle` and
``Result.compare_oracle``)."""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..algorithms.sliding_log import RING_CAP, RING_COUNT, RING_HEAD, RING_STAMPS
from ..outcomes import ALLOWED, REJECTED, SHADOW_REJECTED
from .kernels import GCRA_CODE, TB_CODE, gcra_inline, rate_kernel, tb_inline
from .logpool import (
    LOG_CODE,
    NODE_POOL,
    POOL_USED,
    STALE,
    log_with_room,
    ring_has_room,
)
from .prefetch import prefetch

#: Rows ahead whose state :func:`oracle_layer_rows` prefetches (a sliding log's ring header
#: at this distance, its oldest and newest entries' lines at half of it).
ROWS_AHEAD = 16


@numba.njit(cache=True, nogil=True, inline="always")
def ring_kernel_oldest_first(
    p: Any, pool: Any, now_us: int, cost: int, p0: int, b0: int
) -> tuple[int, int, int, int]:
    """:func:`ratesim.algorithms.sliding_log.sliding_ring_kernel` (same arguments, same
    answers and writes) with the search for the entries still in the window begun at the
    ring's oldest end: a galloping search (1, 2, 4, ... entries newer) then a binary one
    between the last two probes. A ring's stamps never decrease from its oldest entry to its
    newest (a stamp is ``max(now, newest)``), so both searches count the same entries.

    The oracle takes a key's requests in time order, so few entries leave the window between
    two of them and the search reads the oldest entry's line and the next, where the binary
    search from the middle read a dozen lines of a cold ring of thousands of stamps.

    Inlined in :func:`oracle_layer_rows` (called, it cost the pass a call in its loop: every
    layer's pass was slower, 112 against 74 ns a request for the four at exchange-surge
    scale 4, measured)."""
    limit = p[p0]
    window_us = p[p0 + 1]
    count = pool[b0 + RING_COUNT]
    head = pool[b0 + RING_HEAD]
    cap = pool[b0 + RING_CAP]
    r0 = b0 + RING_STAMPS
    cutoff = now_us - window_us
    # entry i (0 the newest) sits in slot head - 1 - i, plus cap when negative
    in_window = count
    s = head - count
    if count > 0 and pool[r0 + (s + cap if s < 0 else s)] <= cutoff:
        hi = count - 1  # the first entry (newest first) out of the window is at or before hi
        step = 1
        lo = hi - step
        while lo >= 0:
            s = head - 1 - lo
            if pool[r0 + (s + cap if s < 0 else s)] > cutoff:
                break
            hi = lo
            step *= 2
            lo = hi - step
        lo = max(lo + 1, 0)  # entries before lo are in the window (or none), hi is out
        while lo < hi:
            mid = (lo + hi) >> 1
            s = head - 1 - mid
            if pool[r0 + (s + cap if s < 0 else s)] > cutoff:
                lo = mid + 1
            else:
                hi = mid
        in_window = lo
    newest = pool[r0 + (head - 1 + cap if head == 0 else head - 1)]
    reset_us = newest + window_us - now_us if in_window > 0 else 0
    if cost > limit:
        return 0, limit - in_window, -1, reset_us
    if in_window + cost > limit:
        # limit - cost < in_window <= count <= cap: the entry is held
        s = head - 1 - (limit - cost)
        blocking = pool[r0 + (s + cap if s < 0 else s)]
        return 0, limit - in_window, blocking + window_us - now_us, reset_us
    if cost > 0:
        stamp = now_us
        if count > 0 and newest > now_us:
            stamp = newest
        for _ in range(cost):
            pool[r0 + head] = stamp
            head += 1
            if head == cap:
                head = 0
        pool[b0 + RING_HEAD] = head
        pool[b0 + RING_COUNT] = min(count + cost, cap)
        in_window += cost
        reset_us = stamp + window_us - now_us
    return 1, limit - in_window, -1, reset_us


@numba.njit(cache=True, nogil=True)
def oracle_layer_rows(
    pos: int,
    shadow: bool,
    applies: Any,
    keys: Any,
    tier: Any,
    t_us: Any,
    cost: Any,
    kk: Any,
    pp: Any,
    size: int,
    state: Any,
    logs: Any,
    outcomes: Any,
    remaining: Any,
    rejected_by: Any,
) -> None:
    """Rate layer ``pos`` of the oracle over a batch, in one pass: every row not rejected by
    an earlier layer (``rejected_by < 0``) and that the layer applies to (``applies``, or
    every row when it is empty) decided on its key's state (at ``keys * size`` in ``state``, a table the
    caller keeps across batches; a sliding log's rings in the first pool of ``logs``, which
    grows here and is kept too), its outcome (``ALLOWED``, else ``SHADOW_REJECTED`` for a ``shadow`` layer or
    ``REJECTED``, which also sets ``rejected_by``) and remaining written to column ``pos``.
    No index array of the live rows and no second pass to write the decisions.

    ``table_kernel`` is written out here, as in ``ratesim.fast.loop`` (called, or inlined
    with its arrays, it cost numba's array passing and reference counts at every row): the
    GCRA and the token bucket inline, a sliding log's ring called directly when it has room."""
    width = pp.shape[1]
    pf = pp.reshape(-1)
    pool = logs[NODE_POOL]
    every = applies.shape[0] == 0
    denied = SHADOW_REJECTED if shadow else REJECTED
    for i in range(keys.shape[0]):
        if rejected_by[i] >= 0 or not (every or applies[i]):
            continue
        tr = tier[i]
        code = kk[tr]
        p0 = tr * width
        s0 = keys[i] * size
        now = t_us[i]
        c = cost[i]
        if code != LOG_CODE and i + ROWS_AHEAD < keys.shape[0]:
            prefetch(state, keys[i + ROWS_AHEAD] * size)  # a key's state: a line of a table
        if code == GCRA_CODE:
            ok, rem, _, _ = gcra_inline(pf, state, now, c, p0, s0)
        elif code == TB_CODE:
            ok, rem, _, _ = tb_inline(pf, state, now, c, p0, s0)
        elif code == LOG_CODE:
            if pool[POOL_USED] == STALE:  # the pool grew: bind the new one
                pool = logs[NODE_POOL]
            # the rings are cold (a user's, in arrival order): the header of the row
            # ROWS_AHEAD on, then, from the header of the row ROWS_AHEAD // 2 on (prefetched
            # by now), the lines of its oldest and newest entries (what the kernel reads)
            for step in range(2):
                j = i + (ROWS_AHEAD if step == 0 else ROWS_AHEAD // 2)
                if j >= keys.shape[0]:
                    continue
                pb = state[keys[j] * size]
                if pb <= 0 or pb + RING_STAMPS > pool.shape[0]:
                    continue  # no ring yet
                if step == 0:
                    prefetch(pool, pb)
                    continue
                h = pool[pb + RING_HEAD]
                o = h - pool[pb + RING_COUNT]  # the oldest entry's slot, the newest's
                prefetch(pool, pb + RING_STAMPS + (o + pool[pb + RING_CAP] if o < 0 else o))
                prefetch(pool, pb + RING_STAMPS + h)
            b0 = state[s0]  # logpool._ring_with_room: the ring, if it has room
            if b0 and not ring_has_room(pool[b0 + RING_COUNT], pool[b0 + RING_CAP], pf[p0], c):
                b0 = 0
            if b0:
                ok, rem, _, _ = ring_kernel_oldest_first(pf, pool, now, c, p0, b0)
            else:
                ok, rem, _, _ = log_with_room(pf, p0, state, s0, logs, NODE_POOL, now, c)
        else:
            ok, rem, _, _ = rate_kernel(code, pf, p0, state, s0, now, c)
        remaining[i, pos] = rem
        if ok:
            outcomes[i, pos] = ALLOWED
        else:
            outcomes[i, pos] = denied
            if not shadow:
                rejected_by[i] = pos


@numba.njit(cache=True, nogil=True)
def window_max_sorted(t: Any, d: Any, idx: Any, lo: int, hi: int, window_us: int) -> int:
    """``max(0, max over windows [s, s + window_us) of sum(d))`` over the events
    ``idx[lo:hi]`` (their times ``t[idx[k]]`` ascending, µs), in one sorted pass.

    The window sum, as a function of the start ``s``, only changes where an event enters
    (``s = t - window_us + 1``) or leaves (``s = t + 1``), so those are the only starts to try;
    both sequences are ascending in ``t``, so they are merged, and the window's two edges
    (``j``: first event at or after ``s + window_us``, ``i``: first at or after ``s``) only move
    forward, the running sum updated as they pass events (O(events), no ``searchsorted``)."""
    best = 0
    run = 0
    i = lo
    j = lo
    a = lo  # next leave-start candidate t[idx[a]] + 1
    b = lo  # next enter-start candidate t[idx[b]] - window_us + 1
    while a < hi or b < hi:
        if b < hi and (a >= hi or t[idx[b]] - window_us + 1 <= t[idx[a]] + 1):
            s = t[idx[b]] - window_us + 1
            b += 1
        else:
            s = t[idx[a]] + 1
            a += 1
        # the right edge first: it is never behind the left one (s + window_us > s)
        while j < hi and t[idx[j]] < s + window_us:
            run += d[idx[j]]
            j += 1
        while i < hi and t[idx[i]] < s:
            run -= d[idx[i]]
            i += 1
        if run > best:
            best = run
    return best


def oracle_gap(
    t_us: np.ndarray,
    sys_rejected_by: np.ndarray,
    oracle_rejected_by: np.ndarray,
    tier: np.ndarray,
    abusive: np.ndarray,
    n_layers: int,
    n_tiers: int,
    window_us: int,
) -> np.ndarray:
    """The oracle gap of a run, compiled: an ``(groups, 3)`` int64 array of ``over_admitted``,
    ``wrongly_rejected`` and ``peak_excess`` (over windows of ``window_us`` µs) for the groups
    total, each layer, each tier (``n_tiers``, 0 for a run without tier names), abusive and
    not abusive, in that order (see ``Result.compare_oracle``). ``t_us``: arrival times
    (sorted); ``*_rejected_by``: the rejecting layer per request or -1.

    The streamed gap (:func:`gap_fold`, :func:`gap_finish`) fed the whole run as one batch:
    only the requests where the system and the oracle disagree count or move a window sum
    (see :func:`disagreements`)."""
    tt, dd, p = new_gap(n_layers, n_tiers)
    if len(t_us):
        tt, dd = gap_fold(
            np.ascontiguousarray(t_us, dtype=np.int64),
            np.ascontiguousarray(sys_rejected_by),
            np.ascontiguousarray(oracle_rejected_by),
            np.ascontiguousarray(tier),
            np.ascontiguousarray(abusive),
            n_layers,
            n_tiers,
            window_us,
            tt,
            dd,
            p,
        )
    return np.asarray(gap_finish(window_us, GAP_END_US, tt, dd, p))


def disagreements(sys_rejected_by: np.ndarray, oracle_rejected_by: np.ndarray) -> np.ndarray:
    """The rows where one of the system and the oracle admitted and the other rejected.

    Only they matter to the gap: a row both admitted or both rejected has ``d = 0``, so it adds
    to neither count, and the window sum, piecewise constant in the window's start, changes
    only where a row with ``d != 0`` enters or leaves; every piece starts at one of those
    starts, so the maximum over them is the maximum over all starts."""
    return np.flatnonzero((sys_rejected_by < 0) != (oracle_rejected_by < 0))


# --- the gap streamed in one compiled pass per batch (ratesim.oracle_stream.GapStream) -----

#: Columns of a streamed gap's per-group cursor table ``P`` (``(groups, GAP_COLS)`` int64):
#: events pushed (absolute count), the ring's first live event, the next leave-start and
#: enter-start candidates (``t[a] + 1``, ``t[b] - window_us + 1``), the window's edges (first
#: event at or after ``s``, first at or after ``s + window_us``), the window's sum, and the
#: group's over-admitted, wrongly-rejected and peak so far. Event indexes are absolute: event
#: ``k`` sits in ring slot ``k & (cap - 1)``.
GAP_N, GAP_LO, GAP_A, GAP_B, GAP_I, GAP_J, GAP_RUN, GAP_OVER, GAP_WRONG, GAP_PEAK = range(10)
GAP_COLS = 10
#: A time after every run's last arrival (µs): the starts :func:`gap_finish` tries up to.
GAP_END_US = np.iinfo(np.int64).max // 4
#: A streamed gap's first ring capacity (events a group; doubles when full).
GAP_RING0 = 64


def new_gap(n_layers: int, n_tiers: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An empty streamed gap: the rings (times µs, signs) and the cursors of every group
    (total, each layer, each tier, abusive and not)."""
    g_count = 1 + n_layers + n_tiers + 2
    tt = np.zeros((g_count, GAP_RING0), dtype=np.int64)
    dd = np.zeros((g_count, GAP_RING0), dtype=np.int8)
    return tt, dd, np.zeros((g_count, GAP_COLS), dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _gap_advance(g: int, upto: int, window_us: int, tt: Any, dd: Any, p: Any) -> None:
    """Group ``g``'s window sum at every start candidate ``s <= upto`` not tried yet (the
    merge of :func:`window_max_sorted`, its cursors kept in ``p[g]`` between calls), the peak
    raised; then the ring's tail moved past the events no later start needs.

    ``upto``: a start whose window ``[s, s + window_us)`` is complete, every event before its
    end pushed. Events come in ascending time, so a later event's candidates are all after
    ``upto`` (its enter start ``t - window_us + 1 > upto`` once ``t >= upto + window_us``)."""
    mask = tt.shape[1] - 1
    n = p[g, GAP_N]
    a = p[g, GAP_A]
    b = p[g, GAP_B]
    i = p[g, GAP_I]
    j = p[g, GAP_J]
    run = p[g, GAP_RUN]
    peak = p[g, GAP_PEAK]
    while a < n or b < n:
        # only a start where the sum rises can begin a peak: an event of d = +1 entering
        # (``b``) or one of d = -1 leaving (``a``); the others are passed over untried
        if b < n and (a >= n or tt[g, b & mask] - window_us + 1 <= tt[g, a & mask] + 1):
            if dd[g, b & mask] < 0:
                b += 1
                continue
            s = tt[g, b & mask] - window_us + 1
            if s > upto:  # candidates ascend: the later ones wait for their windows
                break
            b += 1
        else:
            if dd[g, a & mask] > 0:
                a += 1
                continue
            s = tt[g, a & mask] + 1
            if s > upto:
                break
            a += 1
        # the right edge first: it is never behind the left one (s + window_us > s)
        while j < n and tt[g, j & mask] < s + window_us:
            run += dd[g, j & mask]
            j += 1
        while i < n and tt[g, i & mask] < s:
            run -= dd[g, i & mask]
            i += 1
        if run > peak:
            peak = run
    p[g, GAP_A] = a
    p[g, GAP_B] = b
    p[g, GAP_I] = i
    p[g, GAP_J] = j
    p[g, GAP_RUN] = run
    p[g, GAP_PEAK] = peak
    p[g, GAP_LO] = min(i, min(a, b))  # j >= i: no cursor reads an event before that


@numba.njit(cache=True)
def _gap_grow(tt: Any, dd: Any, p: Any) -> tuple[Any, Any]:
    """The rings at twice the capacity, each group's live events in their new slots."""
    cap = tt.shape[1] * 2
    nt = np.zeros((tt.shape[0], cap), dtype=tt.dtype)
    nd = np.zeros((dd.shape[0], cap), dtype=dd.dtype)
    old = tt.shape[1] - 1
    for g in range(tt.shape[0]):
        for k in range(p[g, GAP_LO], p[g, GAP_N]):
            nt[g, k & (cap - 1)] = tt[g, k & old]
            nd[g, k & (cap - 1)] = dd[g, k & old]
    return nt, nd


@numba.njit(cache=True, inline="always")
def _gap_group(q: int, layer: int, tr: int, abusive: bool, nl: int, nt: int) -> int:
    """A disagreement's ``q``-th group (0-3; scalars only, so inlining costs no reference
    count): the total, the one layer that rejected it (one of the two rejected, so only one
    layer is involved), its tier (-1: a run without tiers), its abusive flag; groups are
    numbered total, layers, tiers, abusive, not abusive."""
    if q == 0:
        return 0
    if q == 1:
        return 1 + layer
    if q == 2:
        return 1 + nl + tr if nt > 0 else -1
    return 1 + nl + nt + (0 if abusive else 1)


@numba.njit(cache=True, nogil=True)
def _gap_pass(
    r0: int,
    t_us: Any,
    sys_rej: Any,
    ora_rej: Any,
    tier: Any,
    abusive: Any,
    nl: int,
    nt: int,
    window_us: int,
    tt: Any,
    dd: Any,
    p: Any,
) -> int:
    """:func:`gap_fold`'s pass over rows ``r0 ..`` on rings that stay the same arrays: each
    disagreement pushed on its groups' rings, a full ring first freed of the events no later
    start needs (its starts before ``t - window_us`` tried: their windows are complete).
    Returns the row count when every row is pushed, else the first row (none of its pushes
    done) one of whose rings is still full: the caller grows the rings and calls again.

    The rings are never rebound here: reassigned in the loop, numba counted references on
    them at every push (32 against 16 ns a request at exchange-surge scale 4)."""
    mask = tt.shape[1] - 1
    for r in range(r0, t_us.shape[0]):
        s_ok = sys_rej[r] < 0
        if s_ok == (ora_rej[r] < 0):
            continue
        t = t_us[r]
        layer = ora_rej[r] if s_ok else sys_rej[r]
        for q in range(4):
            g = _gap_group(q, layer, tier[r], abusive[r], nl, nt)
            if g >= 0 and p[g, GAP_N] - p[g, GAP_LO] > mask:
                _gap_advance(g, t - window_us, window_us, tt, dd, p)
                if p[g, GAP_N] - p[g, GAP_LO] > mask:
                    return r
        d = 1 if s_ok else -1
        col = GAP_OVER if s_ok else GAP_WRONG
        for q in range(4):
            g = _gap_group(q, layer, tier[r], abusive[r], nl, nt)
            if g < 0:
                continue
            k = p[g, GAP_N] & mask
            tt[g, k] = t
            dd[g, k] = d
            p[g, col] += 1
            p[g, GAP_N] += 1
    return t_us.shape[0]


@numba.njit(cache=True, nogil=True)
def gap_fold(
    t_us: Any,
    sys_rej: Any,
    ora_rej: Any,
    tier: Any,
    abusive: Any,
    nl: int,
    nt: int,
    window_us: int,
    tt: Any,
    dd: Any,
    p: Any,
) -> tuple[Any, Any]:
    """The next rows of a run (arrival order: times ``t_us`` µs, rejecting layers or -1,
    tiers, abusive flags) folded into a streamed gap, in one pass: each row where the system
    and the oracle disagree (``d = +1`` system admitted, ``-1`` oracle admitted) counted in its
    groups and pushed on their rings (``tt`` times, ``dd`` signs, ``(groups, cap)``,
    ``cap`` a power of two), after the group's starts complete before it were tried; at the end
    every group's starts up to the last arrival minus ``window_us`` tried (later rows may still
    come at that arrival). Returns the rings (new ones when they grew); ``p``: cursors
    (``GAP_*``), updated in place. Rows that agree cost a comparison."""
    r = 0
    n = t_us.shape[0]
    while r < n:
        r = _gap_pass(r, t_us, sys_rej, ora_rej, tier, abusive, nl, nt, window_us, tt, dd, p)
        if r < n:  # a ring still full once freed: twice the room for every group
            tt, dd = _gap_grow(tt, dd, p)
    if t_us.shape[0]:
        upto = t_us[t_us.shape[0] - 1] - window_us
        for g in range(p.shape[0]):
            _gap_advance(g, upto, window_us, tt, dd, p)
    return tt, dd


@numba.njit(cache=True, nogil=True)
def gap_finish(window_us: int, end_us: int, tt: Any, dd: Any, p: Any) -> Any:
    """Every group's starts up to ``end_us`` tried (the run is over); the ``(groups, 3)``
    over, wrong, peak array."""
    out = np.empty((p.shape[0], 3), dtype=np.int64)
    for g in range(p.shape[0]):
        _gap_advance(g, end_us, window_us, tt, dd, p)
        out[g, 0] = p[g, GAP_OVER]
        out[g, 1] = p[g, GAP_WRONG]
        out[g, 2] = p[g, GAP_PEAK]
    return out
