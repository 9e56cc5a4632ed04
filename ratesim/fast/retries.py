"""Clients that retry, in the compiled runner: the loop's two hooks and their tables.

The event runner's :mod:`ratesim.des.clients`, on the tables of :mod:`ratesim.fast.layout`:

* :func:`client_refused` - at a final refusal, the tier's policy
  (:func:`ratesim.model.retry.retry_at_us`, the formula both runners share) says whether the
  client tries again and when; a retry to come is one ``K_RETRY`` event keyed
  ``(arrival, PRIO_ARRIVAL, origin)`` and its user request's row of ``PEND``;
* :func:`retry_arrivals` - the retries of one instant arrive together, after the scenario's
  arrivals of that instant, by origin: each becomes the next row of the request tables (its
  user request's keys, its own node and draws), then the loop walks them as an arrival batch.

A retry's draws come from :func:`ratesim.compile.draw_retries` (Python: the latency
distributions' inverse CDFs are scipy's), so the loop returns ``ST_RETRY`` before a retry
arrives whose draws are not made yet (or when the request tables need more rows), and
:func:`fill_and_grow` makes them (for every retry pending) and grows the tables; the loop then
resumes where it stopped. Each return costs about 0.3 ms (measured on ``retry-storm``, mostly
numpy's overhead on a few draws), so once an attempt level has cost as many returns as drawing
it for every user request would (about 1 µs a request), :func:`fill_and_grow` draws the whole
level (``LPLAT``) and later retries of that attempt take their draws from it in the loop, with
no return (not under latency spikes: those apply by the retry's arrival time, known only once
it is made). A run without clients never takes either hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from ..model.counter import STREAM_JITTER, STREAM_NODE, counter_u64, u24_of, unit_of
from ..model.retry import CL_BUDGET, CL_MAX_ATTEMPTS, retry_at_us, retry_position
from ..model.topology import slot_of
from ..ordering import PRIO_ARRIVAL
from ..outcomes import FAIL_CLOSED
from .heaps import pop, push_seq
from .kernels import clock_read, epoch_at
from .layout import (
    C_CLIENTS,
    C_HEAP,
    C_LB,
    C_PENDING,
    C_PRE,
    C_ROWS,
    C_UNFILLED,
    C_USERS,
    G_RATE,
    H_AT,
    H_I,
    H_KIND,
    H_POS,
    K_RETRY,
    L_GUARD_KIND,
    L_IS_NODE,
    L_LOCAL,
    N_PERFECT,
    R_ATTEMPT,
    R_BK,
    R_BK_DONE,
    R_CLK,
    R_COLS,
    R_COST,
    R_DECIDED,
    R_NODE,
    R_ORIGIN,
    R_PRE_REJ,
    R_REJ,
    R_RETRY,
    R_T,
    R_TIER,
    R_WNEXT,
    World,
)

if TYPE_CHECKING:
    from ..scenario import Scenario


@numba.njit(cache=True)
def _count_le(T: Any, lo: int, hi: int, t: int) -> int:
    """How many of the sorted ``T[lo:hi]`` are ``<= t`` (a binary search, no view)."""
    a, b = lo, hi
    while a < b:
        m = (a + b) >> 1
        if T[m] <= t:
            a = m + 1
        else:
            b = m
    return a - lo


@numba.njit(cache=True)
def _push_keyed(H: Any, C: Any, at: int, seq: int, origin: int, attempt: int) -> None:
    """A ``K_RETRY`` event at ``(at, PRIO_ARRIVAL, seq)``: the heap's ``push`` with the
    sequence number given (the origin: retries of one instant arrive by origin)."""
    push_seq(H, C, at, PRIO_ARRIVAL, seq, K_RETRY, origin, attempt, 0, 0)


@numba.njit(cache=True)
def client_refused(
    i: int,
    y: int,
    pos: int,
    R: Any,
    OUT: Any,
    LY: Any,
    CL: Any,
    FIRST_T: Any,
    T_OFF: Any,
    SENT: Any,
    SEED: Any,
    PEND: Any,
    H: Any,
    C: Any,
    PLAT: Any,
    PBK: Any,
    LIDX: Any,
    LPLAT: Any,
    LPBK: Any,
) -> None:
    """Row ``i`` was refused by layer ``pos`` at ``y`` (µs): its client's reaction (the event
    runner's ``Clients.refused``)."""
    origin = R[i, R_ORIGIN]
    attempt = R[i, R_ATTEMPT]
    tier = R[i, R_TIER]
    is_error = OUT[pos, i] == FAIL_CLOSED or LY[pos, L_GUARD_KIND] != G_RATE
    retry_after = -1 if is_error else R[i, R_RETRY]
    budget = CL[tier, CL_BUDGET] >= 0
    requests = _count_le(FIRST_T, T_OFF[tier], T_OFF[tier + 1], y) if budget else 0
    h = counter_u64(
        SEED[0], np.uint64(origin), np.uint64(attempt + 1), np.uint64(STREAM_JITTER), np.uint64(0)
    )
    u24 = int(u24_of(h))
    t = retry_at_us(
        CL[tier], is_error, y, retry_after, attempt, R[origin, R_T], u24, requests, SENT[tier]
    )
    if t < 0:
        return
    if budget:
        SENT[tier] += 1
    PEND[origin, 0] = t
    PEND[origin, 1] = attempt + 1
    PEND[origin, 2] = 0
    C[C_PENDING] += 1
    level = LIDX[attempt + 1]
    if level >= 0:  # the whole attempt level is drawn: take this retry's draws from it
        for g in range(PLAT.shape[0]):
            for c in range(3):
                PLAT[g, c, origin] = LPLAT[level, g, c, origin]
        PBK[origin] = LPBK[level, origin]
        PEND[origin, 2] = 1
    else:
        C[C_UNFILLED] += 1
    _push_keyed(H, C, t, origin, origin, attempt + 1)


@numba.njit(cache=True)
def retry_arrivals(cur: int, world: World) -> None:
    """Every retry due at ``cur`` (the heap's top events, ``K_RETRY`` at ``cur``) becomes the
    next row of the request tables, by origin; the caller walks rows ``C_ROWS`` (before) ..
    ``C_ROWS`` (after) as an arrival batch. Needs every pending retry's draws made and room
    for every pending retry's row (the loop returns ``ST_RETRY`` first)."""
    R, H, C, PEND = world.R, world.H, world.C, world.PEND
    KEYS, LKEYS, APPLIES, OUT, REM = world.KEYS, world.LKEYS, world.APPLIES, world.OUT, world.REM
    LAT, SHARD, PLAT, PBK, NK, LY = (
        world.LAT,
        world.SHARD,
        world.PLAT,
        world.PBK,
        world.NK,
        world.LY,
    )
    NV, SEED, LIVE = world.NV, world.SEED, world.LIVE
    e = epoch_at(cur, world.TOPO_AT)  # the nodes live now
    any_local = LKEYS.shape[1] == R.shape[0]
    while C[C_HEAP] and H[0, H_AT] == cur and H[0, H_KIND] == K_RETRY:
        origin = H[0, H_I]
        attempt = H[0, H_POS]
        pop(H, C)
        r = C[C_ROWS]
        C[C_ROWS] = r + 1
        C[C_PENDING] -= 1
        PEND[origin, 0] = -1
        onode = R[origin, R_NODE]
        u = unit_of(
            counter_u64(
                SEED[0], np.uint64(origin), np.uint64(attempt), np.uint64(STREAM_NODE), np.uint64(0)
            )
        )
        p = retry_position(C[C_LB], r, world.UHASH[origin], u, LIVE[e])
        nd = slot_of(world.SLOT_KEYS, world.SLOT_OF, LIVE.shape[0], e, p)
        for col in range(R_COLS):
            R[r, col] = 0
        R[r, R_T] = cur
        R[r, R_CLK] = (
            cur if NV[nd, N_PERFECT] else clock_read(world.CK, world.JUMPS, world.SLEWS, nd, cur)
        )
        R[r, R_NODE] = nd
        R[r, R_TIER] = R[origin, R_TIER]
        R[r, R_COST] = R[origin, R_COST]
        R[r, R_DECIDED] = -1
        R[r, R_REJ] = -1
        R[r, R_WNEXT] = -1
        R[r, R_PRE_REJ] = -1
        R[r, R_BK_DONE] = -1
        R[r, R_RETRY] = -1
        R[r, R_BK] = PBK[origin]
        R[r, R_ATTEMPT] = attempt
        R[r, R_ORIGIN] = origin
        shift = nd - onode  # node-side slots are node * NK + key
        for pos in range(LY.shape[0]):
            APPLIES[pos, r] = APPLIES[pos, origin]
            OUT[pos, r] = 0
            REM[pos, r] = -1
            k = KEYS[pos, origin]
            KEYS[pos, r] = k + shift * NK[pos] if LY[pos, L_IS_NODE] else k
            if any_local and LY[pos, L_LOCAL]:
                LKEYS[pos, r] = LKEYS[pos, origin] + shift * NK[pos]
        for g in range(LAT.shape[0]):
            for c in range(3):
                LAT[g, c, r] = PLAT[g, c, origin]
            SHARD[g, r] = SHARD[g, origin]


# --- Python side: the tables, their growth, the draws ---------------------------------------


def client_counters(C: np.ndarray, lb: int, users: int) -> None:
    """Set the clients' counters of a run of ``users`` user requests, load balancer ``lb``."""
    C[C_CLIENTS] = 1
    C[C_PRE] = 0  # retries walk the leading node layers in the loop, in time order
    C[C_ROWS] = users
    C[C_USERS] = users
    C[C_LB] = lb


def client_tables(
    scenario: Scenario, compiled: Any, n: int, g: int, layers: Any, user: np.ndarray
) -> dict[str, Any]:
    """The clients' World fields for a run of ``n`` user requests (users ``user``) and ``g``
    global layers (``compiled``: :class:`ratesim.compile.CompiledClients`, ``None``:
    placeholders)."""
    from ..compile import retry_node_tables
    from ..model.node import user_hash

    if compiled is None:
        return {
            "CL": np.zeros((1, 9), dtype=np.int64),
            "FIRST_T": np.zeros(1, dtype=np.int64),
            "T_OFF": np.zeros(2, dtype=np.int64),
            "SENT": np.zeros(1, dtype=np.int64),
            "SEED": np.zeros(1, dtype=np.uint64),
            "PEND": np.zeros((1, 3), dtype=np.int64),
            "PLAT": np.zeros((1, 3, 1), dtype=np.int64),
            "PBK": np.zeros(1, dtype=np.int64),
            "NK": np.zeros(max(1, len(layers)), dtype=np.int64),
            "LIDX": np.full(2, -1, dtype=np.int64),
            "LPLAT": np.zeros((1, 1, 3, 1), dtype=np.int64),
            "LPBK": np.zeros((1, 1), dtype=np.int64),
            "LIVE": np.ones(1, dtype=np.int64),
            "SLOT_KEYS": np.zeros(1, dtype=np.int64),
            "SLOT_OF": np.zeros(1, dtype=np.int64),
            "UHASH": np.zeros(1, dtype=np.int64),
        }
    pend = np.zeros((n, 3), dtype=np.int64)
    pend[:, 0] = -1
    _, live, keys, slot = retry_node_tables(scenario)
    return {
        "CL": compiled.table,
        "FIRST_T": compiled.first_t,
        "T_OFF": compiled.t_off,
        "SENT": np.zeros(compiled.table.shape[0], dtype=np.int64),
        "SEED": np.array([compiled.seed], dtype=np.uint64),
        "PEND": pend,
        "PLAT": np.zeros((max(g, 1), 3, n), dtype=np.int64),
        "PBK": np.zeros(n, dtype=np.int64),
        "NK": np.array([cl.n_keys for cl in layers], dtype=np.int64),
        "LIDX": np.full(int(compiled.table[:, CL_MAX_ATTEMPTS].max()) + 1, -1, dtype=np.int64),
        "LPLAT": np.zeros((0, max(g, 1), 3, n), dtype=np.int64),
        "LPBK": np.zeros((0, n), dtype=np.int64),
        "LIVE": live,
        "SLOT_KEYS": keys,
        "SLOT_OF": slot,
        "UHASH": user_hash(user),
    }


#: A return to Python for a few retries' draws costs about this many draws of a whole level
#: (0.3 ms against 1 µs a user request, measured): the break-even of :func:`fill_and_grow`.
RETURN_COST_DRAWS = 300


def fill_and_grow(
    world: World, scenario: Scenario, seed: int, user: np.ndarray, returns: dict[int, int]
) -> World:
    """Make the draws of every pending retry without them - a whole attempt level at once
    when returns for that level have cost as much (``returns``: the count so far, by attempt,
    updated) - and give the request tables room for every pending retry's row; returns the
    world with its grown tables."""
    C, PEND = world.C, world.PEND
    if C[C_UNFILLED]:
        sel = np.flatnonzero((PEND[:, 0] >= 0) & (PEND[:, 2] == 0))
        n = len(user)
        levels = [] if scenario.network.spikes else np.unique(PEND[sel, 1]).tolist()
        for k in levels:
            returns[k] = returns.get(k, 0) + 1
            if returns[k] * RETURN_COST_DRAWS >= n:
                world = _draw_level(world, scenario, seed, user, int(k))
        level = world.LIDX[PEND[sel, 1]]
        drawn = level >= 0
        if drawn.any():
            s, at = sel[drawn], level[drawn]
            world.PLAT[:, :, s] = np.moveaxis(world.LPLAT[at, :, :, s], 0, -1)
            world.PBK[s] = world.LPBK[at, s]
        rest = sel[~drawn]
        if len(rest):
            _draw_into(
                world.PLAT, world.PBK, rest, PEND[rest, 1], PEND[rest, 0], scenario, seed, user
            )
        PEND[sel, 2] = 1
        C[C_UNFILLED] = 0
    cap = world.R.shape[0]
    need = int(C[C_ROWS] + C[C_PENDING])
    if need <= cap:
        return world
    new = max(2 * cap, need + 1024)
    return world._replace(**_grown(world, cap, new))


def _draw_into(
    PLAT: np.ndarray,
    PBK: np.ndarray,
    rows: np.ndarray,
    attempt: np.ndarray,
    time_us: np.ndarray,
    scenario: Scenario,
    seed: int,
    user: np.ndarray,
) -> None:
    """The draws of attempts ``attempt`` of user requests ``rows`` (arriving at ``time_us``)
    into ``PLAT[:, :, rows]`` and ``PBK[rows]``."""
    from ..compile import draw_retries

    d = draw_retries(scenario, seed, rows, attempt, time_us, np.zeros(len(rows)), user[rows])
    g = d.lat_out_us.shape[1]
    if g:
        PLAT[:g, 0, rows] = d.lat_out_us.T
        PLAT[:g, 1, rows] = d.lat_back_us.T
        PLAT[:g, 2, rows] = d.service_us.T
    if len(d.backend_us):
        PBK[rows] = d.backend_us


def _draw_level(world: World, scenario: Scenario, seed: int, user: np.ndarray, k: int) -> World:
    """Attempt ``k``'s draws for every user request, as a new level of ``LPLAT`` (no spikes:
    the draws do not depend on the arrival time then)."""
    n = len(user)
    level = world.LPLAT.shape[0]
    LPLAT = np.concatenate([world.LPLAT, np.zeros((1, *world.LPLAT.shape[1:]), np.int64)])
    LPBK = np.concatenate([world.LPBK, np.zeros((1, n), np.int64)])
    rows = np.arange(n)
    _draw_into(
        LPLAT[level], LPBK[level], rows, np.full(n, k), np.zeros(n, np.int64), scenario, seed, user
    )
    world.LIDX[k] = level
    return world._replace(LPLAT=LPLAT, LPBK=LPBK)


def _grown(world: World, cap: int, new: int) -> dict[str, np.ndarray]:
    """The row tables of ``world`` with ``new`` rows of room instead of ``cap``."""

    def more(a: np.ndarray, axis: int, per_row: int = 1, fill: int = 0) -> np.ndarray:
        shape = list(a.shape)
        old = shape[axis]
        shape[axis] = (old // cap) * new + (old % cap) if cap else new * per_row
        out = np.full(shape, fill, dtype=a.dtype)
        out[tuple(slice(0, s) for s in a.shape)] = a
        return out

    out = {
        "R": more(world.R, 0),
        "KEYS": more(world.KEYS, 1),
        "APPLIES": more(world.APPLIES, 1),
        "OUT": more(world.OUT, 1),
        "REM": more(world.REM, 1, fill=-1),
        "LAT": more(world.LAT, 2),
        "SHARD": more(world.SHARD, 1),
        "CMD": more(world.CMD, 1),
        "STACK": more(world.STACK, 0),
    }
    if world.LKEYS.shape[1] == cap:
        out["LKEYS"] = more(world.LKEYS, 1)
    if world.PRL.shape[1] == cap:
        out["PRL"] = more(world.PRL, 1)
    return out
