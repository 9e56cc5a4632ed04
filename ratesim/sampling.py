"""Which per-request rows a :class:`ratesim.results.Result` keeps (``simulate(requests=...)``).

* ``"all"`` (the default): every row, as always;
* ``"sample"``: a seeded uniform sample of :data:`SAMPLE_ROWS` rows, in arrival order, keyed by
  their row numbers; a run of at most :data:`SAMPLE_ROWS` rows keeps every row (the threshold).
  The time series, summary, totals and the oracle gap are still exact, folded from every row
  (:mod:`ratesim.aggregates`, :mod:`ratesim.oracle_stream`);
* ``"none"``: no rows, the exact aggregates only;
* ``"auto"``: ``"all"`` up to :data:`AUTO_ALL_ROWS` rows, ``"sample"`` above.

The sample is a bottom-k sample: row ``r`` of a run with seed ``seed`` gets the 64-bit key
:func:`row_keys` (SplitMix64 of the seed, the sample's stream and ``r``,
:mod:`ratesim.model.counter`), and the sample is the :data:`SAMPLE_ROWS` rows with the smallest
keys (ties, 2**-64 likely, by row number). A row's key depends on nothing but its number and the
seed, so the sample needs no run length in advance and is the same whether the rows come whole
(:func:`sample_rows`) or in batches cut anywhere (:class:`RowSample`, a row consumer of the
bounded runner); every subset of ``k`` rows is equally likely. It draws from no stream of the
run, so choosing to sample changes no draw.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .model.counter import splitmix64
from .results import RunData
from .traffic import Arrivals

if TYPE_CHECKING:
    from .compile import CompiledLayer

REQUESTS = ("all", "sample", "none", "auto")
#: Rows a sample keeps (about 10 MB of DataFrame).
SAMPLE_ROWS = 100_000
#: ``"auto"`` keeps every row up to this many (a few hundred MB of DataFrame), a sample above.
AUTO_ALL_ROWS = 1_000_000
#: The sample's stream, apart from the run's (``ratesim.rng.Streams``): hashed into every key.
SAMPLE_STREAM = 0x5A301E


def resolve_requests(requests: str, rows: int) -> str:
    """``requests`` checked, and ``"auto"`` resolved for a run of ``rows`` rows."""
    if requests not in REQUESTS:
        raise ValueError(f"requests must be one of {', '.join(REQUESTS)}, got {requests!r}")
    if requests == "auto":  # read at call time, so a test may lower it
        return "all" if rows <= AUTO_ALL_ROWS else "sample"
    return requests


def row_keys(seed: int, first_row: int, n: int) -> np.ndarray:
    """The sample keys (uint64) of rows ``first_row .. first_row + n - 1`` of a run of seed
    ``seed``: ``splitmix64(splitmix64(seed ^ SAMPLE_STREAM) ^ row)``, wrapping at 2**64."""
    base = np.uint64(splitmix64((int(seed) ^ SAMPLE_STREAM) & 0xFFFFFFFFFFFFFFFF))
    rows = np.arange(first_row, first_row + n, dtype=np.uint64)
    return np.asarray(splitmix64(rows ^ base), dtype=np.uint64)


def _smallest(keys: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """Positions of the ``size`` smallest ``(key, row)`` pairs (all when fewer), in position
    order: the keys below the ``size``-th smallest, then those equal to it by row (O(n))."""
    if len(keys) <= size:
        return np.arange(len(keys))
    if size <= 0:
        return np.zeros(0, dtype=np.int64)
    kth = keys[np.argpartition(keys, size - 1)[size - 1]]
    below = np.flatnonzero(keys < kth)
    tied = np.flatnonzero(keys == kth)
    tied = tied[np.argsort(rows[tied], kind="stable")][: size - len(below)]
    return np.sort(np.concatenate((below, tied)))


def sample_rows(rows: int, seed: int, kind: str, size: int | None = None) -> np.ndarray:
    """The sorted row numbers ``kind`` keeps of a run of ``rows`` rows (a sample: ``size``
    rows, default :data:`SAMPLE_ROWS`, the bottom-k of :func:`row_keys`; every row when the run
    has at most ``size``)."""
    size = SAMPLE_ROWS if size is None else size
    if kind == "none":
        return np.zeros(0, dtype=np.int64)
    if kind == "all" or rows <= size:
        return np.arange(rows, dtype=np.int64)
    all_rows = np.arange(rows, dtype=np.int64)
    return np.sort(all_rows[_smallest(row_keys(seed, 0, rows), all_rows, size)])


def take_rows(data: RunData, rows: np.ndarray) -> RunData:
    """``data`` cut to ``rows`` (sorted row numbers); the Redis depth samples (per command,
    already folded into the aggregates) dropped. ``origin`` keeps the full run's row numbers."""
    kept = cut_run_data(data, rows)
    if data.attempt is None:  # without retries every row is its own first try
        kept = replace(kept, attempt=np.ones(len(rows), dtype=np.int64), origin=rows.copy())
    return kept


#: The per-row columns of a ``RunData`` (``None`` allowed for the last four); the Redis depth
#: samples are per sample, not per row, and a cut or a join of rows leaves them out.
_ROW_FIELDS = ("node", "outcomes", "remaining", "decided_us", "rejected_by", "pool_wait_us")
_OPTIONAL_ROW_FIELDS = ("backend_done_us", "held_us", "attempt", "origin")
_NO_DEPTHS = {"depth_t_us": np.zeros(0, dtype=np.int64), "depth": np.zeros(0, dtype=np.int64)}


def cut_run_data(data: RunData, rows: slice | np.ndarray) -> RunData:
    """Every per-row array of ``data`` at the positions ``rows`` (a slice, or an index that
    keeps time order); no Redis depth samples."""
    fields: dict[str, Any] = {f: getattr(data, f)[rows] for f in _ROW_FIELDS}
    for f in _OPTIONAL_ROW_FIELDS:
        column = getattr(data, f)
        fields[f] = None if column is None else column[rows]
    return replace(data, arrivals=data.arrivals.take(rows), **fields, **_NO_DEPTHS)


def concat_run_data(parts: list[RunData]) -> RunData:
    """The rows of ``parts`` (RunData of one run, no depth samples) one after the other."""
    first = parts[0]

    def cat(name: str) -> np.ndarray | None:
        if getattr(first, name) is None:
            return None
        return np.concatenate([getattr(p, name) for p in parts])

    fields: dict[str, Any] = {f: cat(f) for f in (*_ROW_FIELDS, *_OPTIONAL_ROW_FIELDS)}
    return replace(
        first,
        arrivals=Arrivals.concat([p.arrivals for p in parts]),
        **fields,
    )


class RowSample:
    """The bottom-k sample of :func:`sample_rows`, kept from a run's rows fed in batches (a
    row consumer: ``fold(data, layers, first_row)`` then ``finish()``), without knowing the
    run's length: :attr:`data` (after ``finish``; ``None`` when no row is kept) is the
    RunData of the kept rows in arrival order, ``origin`` their row numbers and ``attempt`` 1, as :func:`take_rows` gives, and
    :attr:`rows` their numbers, the same rows ``sample_rows(rows, seed, "sample", size)``
    keeps of the whole run.

    A batch's rows whose keys are below the current ``size``-th smallest key are taken as
    candidates; once more than ``size`` candidates wait, they are cut to the ``size``
    smallest (so memory is at most about ``2 * size`` rows and the work per row amortised
    O(1))."""

    def __init__(self, seed: int, size: int | None = None) -> None:
        self.seed = int(seed)
        self.size = SAMPLE_ROWS if size is None else int(size)
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {size!r}")
        self._parts: list[RunData] = []
        self._keys: list[np.ndarray] = []
        self._held = 0
        self._bar: np.uint64 | None = None  # keys at or above it can no longer get in
        self.data: RunData | None = None
        self.rows = np.zeros(0, dtype=np.int64)

    def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None:
        """The run's rows ``[first_row, first_row + len(data.arrivals))``."""
        n = len(data.arrivals)
        if n == 0 or self.size == 0:
            return
        keys = row_keys(self.seed, first_row, n)
        take = np.arange(n) if self._bar is None else np.flatnonzero(keys <= self._bar)
        if len(take) > self.size:  # only the batch's own bottom-k can be in the sample
            take = take[_smallest(keys[take], take, self.size)]
        if not len(take):
            return
        part = cut_run_data(data, take)
        rows = take.astype(np.int64) + first_row
        self._parts.append(replace(part, attempt=np.ones(len(take), dtype=np.int64), origin=rows))
        self._keys.append(keys[take])
        self._held += len(take)
        if self._held > 2 * self.size:
            self._compact()

    def _compact(self) -> None:
        """The candidates cut to the ``size`` smallest (key, row); the bar lowered to them."""
        if not self._parts:
            return
        whole = concat_run_data(self._parts)
        keys = np.concatenate(self._keys)
        assert whole.origin is not None
        pick = _smallest(keys, whole.origin, self.size)
        self._parts, self._keys = [cut_run_data(whole, pick)], [keys[pick]]
        self._held = len(pick)
        if len(pick) == self.size:  # full: only a smaller key (or an equal one) can get in
            self._bar = keys[pick].max()

    def finish(self) -> None:
        """The sample, in arrival order (:attr:`data`, :attr:`rows`)."""
        self._compact()
        if self._parts:
            self.data = self._parts[0]
            assert self.data.origin is not None
            self.rows = self.data.origin.copy()
