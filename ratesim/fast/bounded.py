"""The compiled runner with bounded request tables: a run fed and decided time chunk by time
chunk, its memory bounded by a chunk's requests plus those still in flight (and the limiter
state, which is run-long), not by the run's length.

Per chunk ``[k * chunk_us, (k + 1) * chunk_us)`` (:mod:`ratesim.chunks`, or :func:`ratesim.fast.chunks.slice_chunks`):

1. the chunk's rows are appended after the rows still in flight (the tables grow on demand),
   the leading node layers (``loop.prefix``) decide them, and the loop runs to the chunk's end
   on the chunk's arrival instants (``INST`` / ``BOUNDS``, the batch counter reset);
2. the Redis commands it executed are folded into the queue depths (:class:`DepthCarry`
   keeps each shard's queue across the cut, so a depth is the whole run's) and forgotten;
3. the longest prefix of finished rows (decided, and named by nothing the loop keeps:
   :func:`ratesim.fast.compact.first_pinned`) goes, in arrival order, to the aggregates and
   to every row consumer (:class:`ratesim.oracle_stream.RowConsumer`);
4. the tables are compacted: the rows still in flight move to the front and every row index
   the loop keeps is renumbered (:mod:`ratesim.fast.compact`).

The stages overlap (:mod:`ratesim.fast.pipeline`, ``threads=`` / :data:`THREADS`): the next
step's inputs and its own tables (:meth:`_Bounded.prepare`) are made on one background thread
while the compiled loop (``nogil``) decides the current step, and the rows released by earlier
steps (copied out of the tables first) are folded on another, in order: the same results as
the sequential path, whatever the threads' timing. At most a step made ahead and
:data:`ratesim.fast.pipeline.MAX_PENDING` steps' released rows are held beside the tables.

Node-side limiter slots are numbered ``node * n_keys + key`` (grid mode), stable across
chunks. Runs with clients that retry keep whole tables (their rows arrive out of order:
:func:`ratesim.fast.run.run_fast`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..compile import can_hold
from ..model.clock import NodeClock
from ..model.redis_server import queue_depths
from ..results import RunData
from .chunks import cut_layer, join_layers
from .compact import (
    first_pinned,
    move_rows_down,
    prune_timeouts,
    prune_waiters,
    renumber,
    take_columns,
)
from .heaps import grown_ring
from .layout import (
    C_ARRIVED,
    C_BATCH,
    C_CMD,
    C_DONE,
    C_HEAP,
    C_PRE,
    C_STACK,
    G_RATE,
    L_GUARD_KIND,
    R_BK_DONE,
    R_COLS,
    R_DECIDED,
    R_HELD,
    R_NODE,
    R_POOL_WAIT,
    R_REJ,
    R_T,
    ST_FINISHED,
    ST_GROW,
    ST_LIMIT,
    World,
)
from .loop import prefix, run
from .pending import PendingInputs
from .pipeline import Pipeline
from .retries import client_tables
from .rows import fill_rows, local_clock_us
from .run import (
    _check_conservation_counts,
    _heap_and_counters,
    _layer_tables,
    _request_columns,
    _store_breakers,
    assemble_world,
    grow_heap,
    timeout_room,
)
from .support import unsupported

if TYPE_CHECKING:
    from ..aggregates import RunAggregates
    from ..chunks import Chunk
    from ..compile import CompiledLayer
    from ..oracle_stream import RowConsumer
    from ..scenario import Scenario

#: Rows the tables start with room for (they grow by half again when a chunk needs more).
MIN_ROWS = 1024


@dataclass
class BoundedRun:
    """What a bounded run says of itself once over: its ``rows`` (requests), the store
    breakers' end state (as :attr:`RunData.store_breakers`), the steps it ran (``chunks``:
    chunks joined into steps of ``min_rows`` rows) and the most rows its tables held at once
    (``peak_rows``)."""

    rows: int
    store_breakers: np.ndarray | None
    chunks: int
    peak_rows: int


class DepthCarry:
    """Redis queue depths computed chunk by chunk, equal to
    :func:`ratesim.model.redis_server.queue_depths` over the whole run's commands.

    A command's depth is the commands ahead of it on its shard still queued or in service when
    it arrives: on one shard (FIFO) finishes never decrease, so it is its index among the
    shard's commands minus those finished by its arrival. Arrivals never decrease either, so
    a command finished by a chunk's last arrival is finished for every later one: each shard
    carries only the finishes after that (``fins``) into the next chunk."""

    def __init__(self) -> None:
        self.fins: dict[int, np.ndarray] = {}

    def depths(self, at: np.ndarray, fin: np.ndarray, shard: np.ndarray | None) -> np.ndarray:
        """The depths of a chunk's commands (arrival and finish µs, shard; in execution
        order, after every command of the chunks before)."""
        depth = np.zeros(len(at), dtype=np.int64)
        if not len(at):
            return depth
        if shard is None:
            groups = [(0, np.arange(len(at)))]
        else:
            groups = [(int(s), np.flatnonzero(shard == s)) for s in np.unique(shard)]
        for s, idx in groups:
            carried = self.fins.get(s, np.zeros(0, dtype=np.int64))
            f = np.concatenate((carried, fin[idx]))
            a = at[idx]
            # the carried commands as arrived before any of this chunk's (their depths unused):
            # each command's depth is then its shard's, in one merge (queue_depths)
            before = np.full(len(carried), np.iinfo(np.int64).min, dtype=np.int64)
            depth[idx] = queue_depths(np.concatenate((before, a)), f, None)[len(carried) :]
            self.fins[s] = f[np.searchsorted(f, a[-1], side="right") :]
        return depth


@dataclass
class _Step:
    """One step's inputs (``chunk``, its time span's ``end`` µs) and what is made from them
    alone ahead of the loop (:meth:`_Bounded.prepare`): the requests' clock readings
    (``clk``), each global layer's shards (``gidx``, shard per row), the arrival instants
    and the row each starts at. Its rows are written straight into the run's tables when it
    is appended (a table of its own, then copied in, cost fresh pages and one more pass)."""

    chunk: Chunk
    end: int
    clk: np.ndarray
    shards: list[tuple[int, np.ndarray]]
    instants: np.ndarray
    starts: np.ndarray


class _Bounded:
    """The tables of a bounded run and what it has done so far (``used`` rows in the tables,
    the first of them the run's row ``base``)."""

    def __init__(self, scenario: Scenario, first: Chunk, heap_size: int) -> None:
        arrivals, _, layers = first
        self.scenario = scenario
        self.layers = layers
        self.holds = can_hold(layers)
        self.clocks = [NodeClock(spec) for spec in scenario.topology.clock_specs()]
        redis = scenario.redis
        failovers = sorted(redis.failovers, key=lambda f: f.at_us) if redis is not None else []
        self.g = int(first[1].lat_out_us.shape[1])  # global layers with draws
        cap = MIN_ROWS
        T = _layer_tables(
            [cut_layer(cl, 0, 0) for cl in layers], np.zeros(cap, dtype=np.int64), max(1, len(arrivals.tier_names)), self.g,
            len(failovers), len(self.clocks), 0,
        )  # fmt: skip
        self.T = T
        self.guards = int((T.LY[:, L_GUARD_KIND] != G_RATE).sum())
        self.any_local = any(cl.local_algs for cl in layers)
        H, C = _heap_and_counters(scenario, layers, failovers, heap_size)
        R = np.zeros((cap, R_COLS), dtype=np.int64)
        LAT = np.zeros((max(self.g, 1), 3, cap), dtype=np.int64)
        zero = np.zeros(0, dtype=np.int64)
        self.world: World = assemble_world(
            scenario, layers, T, R, LAT, (zero, np.zeros(1, dtype=np.int64)), (H, C),
            self.clocks, failovers, self.g, client_tables(scenario, None, 0, self.g, layers, zero),
        )  # fmt: skip
        self.cap = cap
        self.used = 0
        self.base = 0
        self.peak = 0
        self.width = 1  # the widest arrival batch so far (heap growth)
        self.pending = PendingInputs()  # the inputs of the rows in the tables (consumers)
        self.depth = DepthCarry()

    # --- the tables' rows -----------------------------------------------------------------

    def _row_tables(self) -> list[tuple[str, int]]:
        """The World's per-request tables and their row axis (the placeholders of tables a
        run does not use are left out)."""
        out = [("R", 0), ("KEYS", 1), ("APPLIES", 1), ("OUT", 1), ("REM", 1), ("LAT", 2)]
        out.append(("SHARD", 1))
        if self.any_local:
            out.append(("LKEYS", 1))
        if self.guards:
            out.append(("PRL", 1))
        return out

    def grow(self, need: int) -> None:
        """Room for ``need`` rows at least (by half again): every per-request table grown,
        its ``used`` rows copied, dtypes kept; the command log and stack resized."""
        cap = max(need, self.cap + self.cap // 2)
        w = self.world
        fields: dict[str, np.ndarray] = {}
        for name, axis in self._row_tables():
            old = getattr(w, name)
            shape = list(old.shape)
            shape[axis] = cap
            new = np.zeros(shape, dtype=old.dtype)
            keep = [slice(None)] * old.ndim
            keep[axis] = slice(0, self.used)
            new[tuple(keep)] = old[tuple(keep)]
            fields[name] = new
        fields["CMD"] = np.zeros((3, cap * self.g), dtype=w.CMD.dtype)
        fields["TQ"] = grown_ring(w.TQ, w.C, timeout_room(cap))
        fields["STACK"] = np.zeros((cap * self.guards + 1, 4), dtype=w.STACK.dtype)
        self.world = w._replace(**fields)
        self.cap = cap

    def prepare(self, step: tuple[Chunk, int]) -> _Step:
        """What a step needs made from its chunk alone (:class:`_Step`): made on the
        generating thread while the loop decides the step before (it reads nothing the loop
        writes)."""
        chunk, end = step
        arrivals, draws, layers = chunk
        shards = [
            (cl.gidx, np.frombuffer(cl.shard, dtype=np.int64))
            for cl in layers
            if cl.shard is not None and len(cl.shard)
        ]
        # arrivals are in time order: an instant starts where the time changes
        t = arrivals.time_us
        m = len(t)
        starts = np.flatnonzero(np.concatenate(([True], t[1:] != t[:-1]))) if m else t[:0]
        clk = local_clock_us(arrivals, draws, self.clocks)
        return _Step(chunk, end, clk, shards, t[starts].astype(np.int64), starts.astype(np.int64))

    def append(self, step: _Step, keep_inputs: bool) -> None:
        """Add a step's rows after the rows in the tables, decided by the leading node layers
        (``loop.prefix``, on the step's own rows: a step's rows come after every earlier
        one, as the whole run takes them), with the step's arrival batches set up."""
        arrivals, draws, layers = step.chunk
        m = len(arrivals)
        if self.used + m > self.cap:
            self.grow(self.used + m)
        w = self.world
        rows = slice(self.used, self.used + m)
        self._write_rows(step, rows)
        prefix(
            w.R, w.KEYS, w.APPLIES, w.OUT, w.REM, w.LY, w.KK, w.PP, w.PF, w.STATE, w.LOGS,
            int(w.C[C_PRE]), w.TOPO_AT, w.SHP, self.used, self.used + m,
        )  # fmt: skip
        bounds = np.append(step.starts, m) + self.used
        if m:
            self.width = max(self.width, int(np.diff(bounds).max()))
        self.world = w._replace(INST=step.instants, BOUNDS=bounds)
        self.world.C[C_BATCH] = 0
        if keep_inputs:
            self.pending.add(arrivals, layers)
        self.used += m
        self.peak = max(self.peak, self.used)

    def _write_rows(self, step: _Step, rows: slice) -> None:
        """A step's rows of every per-request table, written in place (rows ``rows``)."""
        arrivals, draws, layers = step.chunk
        w = self.world
        fill_rows(w.R[rows], arrivals, draws, step.clk)
        w.APPLIES[:, rows] = 1
        for pos, cl in enumerate(layers):
            _request_columns(
                cl, pos, draws.node, len(self.clocks), w.KEYS[:, rows],
                w.LKEYS[:, rows] if self.any_local else w.LKEYS, w.APPLIES[:, rows],
            )  # fmt: skip
        w.OUT[:, rows] = 0
        w.REM[:, rows] = -1
        if self.g:
            w.LAT[: self.g, 0, rows] = draws.lat_out_us.T
            w.LAT[: self.g, 1, rows] = draws.lat_back_us.T
            w.LAT[: self.g, 2, rows] = draws.service_us.T
        w.SHARD[:, rows] = 0
        for gidx, shard in step.shards:
            w.SHARD[gidx, rows] = shard
        if self.guards:
            w.PRL[:, rows, :] = 0

    # --- one chunk ------------------------------------------------------------------------

    def run_to(self, limit: int) -> int:
        """Run the loop until ``limit`` (µs of true time) or the end; returns the status."""
        while True:
            status = int(run(limit, self.world))
            if status == ST_GROW:
                self.world = grow_heap(self.world, self.width)
                continue
            if status not in (ST_LIMIT, ST_FINISHED):
                raise AssertionError(f"bounded run: unexpected loop status {status}")
            return status

    def depth_job(self, agg: RunAggregates | None) -> Callable[[], None] | None:
        """The commands the chunk executed, dropped; the job that folds them into ``agg``'s
        queue depths (``None``: nothing to fold). The job holds copies of the commands."""
        w = self.world
        n_cmd = int(w.C[C_CMD])
        w.C[C_CMD] = 0
        if not n_cmd or agg is None:
            return None
        at = w.CMD[0, :n_cmd].astype(np.int64)
        fin = w.CMD[1, :n_cmd].astype(np.int64)
        shard = w.CMD[2, :n_cmd].astype(np.int64) if w.BUSY.shape[0] > 1 else None
        depth = self.depth
        return lambda: agg.fold_depth(at, depth.depths(at, fin, shard))

    def release(
        self, agg: RunAggregates | None, consumers: Sequence[RowConsumer]
    ) -> Callable[[], None] | None:
        """Compact the tables past their finished head (module docstring); returns the job that
        hands that head on (``None``: no row finished), holding copies of its rows."""
        w = self.world
        if int(w.C[C_STACK]) != 0:
            raise AssertionError("bounded run: the hand-off stack is not empty between chunks")
        waiting = int(prune_waiters(w.R, w.NV, w.CQ, w.PRL, w.LY))
        prune_timeouts(w.TQ, w.C, w.R)
        n_heap = int(w.C[C_HEAP])
        cut = int(first_pinned(w.R, self.used, w.H, n_heap, w.TQ, w.C, waiting, w.CQ, w.SB))
        if cut == 0:
            return None
        job = self._emit(cut, agg, consumers)
        renumber(cut, self.used, w.R, w.H, n_heap, w.TQ, w.C, w.NV, w.CQ, w.PRL, w.SB)
        for name, axis in self._row_tables():
            move_rows_down(getattr(w, name), axis, cut, self.used)
        self.used -= cut
        self.base += cut
        self.pending.drop(self.base)
        return job

    def _emit(
        self, cut: int, agg: RunAggregates | None, consumers: Sequence[RowConsumer]
    ) -> Callable[[], None]:
        """The job that hands rows ``0 .. cut - 1`` of the tables (the run's ``base ..``) to
        ``agg`` then to the ``consumers``, with copies of those rows (the tables are
        overwritten once compacted; the job may run later, on another thread)."""
        w = self.world
        s = slice(0, cut)
        # only the columns the folds read, each copied to a contiguous row of ``Rc``
        names = [R_T, R_REJ, R_DECIDED, R_POOL_WAIT, R_NODE, R_HELD, R_BK_DONE]
        Rc = take_columns(w.R, cut, np.array(names, dtype=np.int64))
        col = {name: Rc[i] for i, name in enumerate(names)}
        outcomes = w.OUT[:, s].T.copy()  # C order: a one-layer view would pass for contiguous
        remaining = w.REM[:, s].T.copy()
        held = col[R_HELD] if self.holds else None
        base = self.base
        data: RunData | None = None
        layers: list[CompiledLayer] = []
        if consumers:
            arrivals, layers = self.pending.take(base, base + cut)
            data = RunData(
                arrivals=arrivals,
                node=col[R_NODE],
                outcomes=outcomes,
                remaining=remaining,
                decided_us=col[R_DECIDED],
                rejected_by=col[R_REJ].astype(np.int16),
                pool_wait_us=col[R_POOL_WAIT],
                depth_t_us=np.zeros(0, dtype=np.int64),
                depth=np.zeros(0, dtype=np.int64),
                backend_done_us=col[R_BK_DONE] if self.scenario.backend is not None else None,
                held_us=held,
            )

        def job() -> None:
            if agg is not None:
                agg.fold(
                    col[R_T], col[R_REJ], outcomes, remaining,
                    col[R_DECIDED], col[R_POOL_WAIT], held,
                )  # fmt: skip
            if data is not None:
                for consumer in consumers:
                    consumer.fold(data, layers, base)

        return job

    def check(self) -> None:
        """Conservation at the end: every arrival decided and handed on, nothing in flight."""
        w = self.world
        if self.used:
            raise AssertionError(f"conservation violated: {self.used} rows left in flight")
        _check_conservation_counts(
            self.base, int(w.C[C_ARRIVED]), int(w.C[C_DONE]), w.R[:0], w.NV, w.C, self.T,
            self.scenario.topology.slots,
        )  # fmt: skip


#: A step of the bounded runner takes consecutive chunks until it holds this many rows at least
#: (or the run ends): each step costs a few ms whatever its size (the loop's call, the folds),
#: so a sparse run in short chunks would spend its time there (measured: 600 s of
#: exchange-surge at scale 1, 1.6M requests in 2,400 chunks of 0.25 s, 38 s of CPU, against
#: 5.4 s for its 30 s, 0.48M requests in 120 chunks).
MIN_STEP_ROWS = 131_072

#: Whether :func:`run_bounded` pipelines its stages on background threads by default
#: (:class:`ratesim.fast.pipeline.Pipeline`); ``False``: all inline, the sequential reference.
THREADS = True


def _steps(chunks: Iterable[Chunk], chunk_us: int, min_rows: int) -> Iterator[tuple[Chunk, int]]:
    """Consecutive ``chunks`` joined until a step holds ``min_rows`` rows (the last step may
    hold fewer), each with the end of its time span (µs; ``2**62`` for the last step)."""
    it = iter(chunks)
    parts: list[Chunk] = []
    rows = 0
    k = 0
    nxt = next(it, None)
    while nxt is not None:
        parts.append(nxt)
        rows += len(nxt[0])
        k += 1
        nxt = next(it, None)
        if nxt is None:
            yield _join(parts), 2**62
        elif rows >= min_rows:
            yield _join(parts), k * chunk_us
            parts, rows = [], 0


def _join(parts: list[Chunk]) -> Chunk:
    """Consecutive chunks as one."""
    if len(parts) == 1:
        return parts[0]
    from ..traffic import Arrivals as _Arrivals

    arrivals = _Arrivals.concat([a for a, _, _ in parts])
    draws = parts[0][1]
    draws = replace(
        draws,
        **{
            name: np.concatenate([getattr(d, name) for _, d, _ in parts])
            for name in ("node", "lat_out_us", "lat_back_us", "service_us", "backend_us")
        },
    )
    return arrivals, draws, join_layers([layers for _, _, layers in parts])


def run_bounded(
    scenario: Scenario,
    chunks: Iterable[Chunk],
    chunk_us: int,
    *,
    fold: RunAggregates | None = None,
    consumers: Sequence[RowConsumer] = (),
    heap_size: int = 4096,
    progress: bool = False,
    min_rows: int | None = None,
    threads: bool | None = None,
) -> BoundedRun:
    """Run ``scenario`` (no clients that retry) on the compiled loop from its time ``chunks``
    of ``chunk_us`` µs (chunk ``k`` holds the arrivals in ``[k * chunk_us, (k + 1) *
    chunk_us)``, :mod:`ratesim.fast.chunks`), folding every request into ``fold`` (its
    depths and end state included; ``finish`` called) and handing it to each of
    ``consumers`` (``finish`` called); the same run as :func:`ratesim.fast.run.run_fast`.
    Consecutive chunks are run as one step until it holds ``min_rows`` rows (default
    :data:`MIN_STEP_ROWS`; 0: a step per chunk); the tables hold about a step's rows plus those
    in flight. ``threads`` (default :data:`THREADS`): make the next step's inputs and fold the
    released rows on two background threads while the loop decides (:mod:`.pipeline`; the
    same results, in the same order, as without)."""
    if scenario.clients is not None and scenario.clients.any_retries:
        raise ValueError("the bounded runner does not take clients that retry (use run_fast)")
    use_threads = THREADS if threads is None else threads
    with Pipeline(use_threads) as pipe:
        raw = _steps(chunks, chunk_us, MIN_STEP_ROWS if min_rows is None else min_rows)
        first = next(raw, None)
        if first is None:
            raise ValueError("run_bounded: no chunks (a run has one at least)")
        reason = unsupported(scenario, first[0][2])
        if reason is not None:
            raise ValueError(f"the fast engine does not model {reason}")
        state = _Bounded(scenario, first[0], heap_size)
        steps = pipe.ahead(map(state.prepare, raw))
        box = [first]  # handed on, not kept here: a step's arrays are freed once appended
        del first
        k = _run_steps(state, box, steps, pipe, fold, consumers, _bar(progress))
    state.check()
    breakers = _store_breakers(state.world.SB, state.layers, scenario.topology.slots)
    if fold is not None:
        fold.finish(breakers)
    for consumer in consumers:
        consumer.finish()
    return BoundedRun(state.base, breakers, k, state.peak)


def _run_steps(
    state: _Bounded,
    box: list[tuple[Chunk, int]],
    steps: Iterator[_Step],
    pipe: Pipeline,
    fold: RunAggregates | None,
    consumers: Sequence[RowConsumer],
    bar: Any,
) -> int:
    """Every step decided in turn (the next made ahead, the rows released folded behind, by
    ``pipe``), all folds done on return; returns the steps run. ``box`` holds the first
    step (taken out: nothing keeps a step once it is appended)."""
    k = 0
    step: _Step | None = state.prepare(box.pop())
    while step is not None:
        state.append(step, bool(consumers))
        end = step.end
        step = None  # its tables are in the run's now: freed before the loop runs
        state.run_to(end)
        _submit(pipe, state.depth_job(fold))
        _submit(pipe, state.release(fold, consumers))  # no name here keeps its rows
        if bar is not None:
            bar.update(state.base - bar.n)
        step = next(steps, None)
        k += 1
    pipe.drain()
    if bar is not None:
        bar.close()
    return k


def _submit(pipe: Pipeline, job: Callable[[], None] | None) -> None:
    """``job`` to ``pipe`` (``None``: nothing to do)."""
    if job is not None:
        pipe.submit(job)


def _bar(progress: bool) -> Any:
    """A progress bar of requests handed on (``None``: no bar)."""
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(unit="req", desc="simulating")


__all__ = ["BoundedRun", "DepthCarry", "run_bounded"]
