"""A run's time series, summary and totals folded batch by batch, exactly.

:class:`RunAggregates` takes the finished requests of a run in batches of consecutive rows, in
arrival order (any batch sizes), and gives the same ``timeseries``, ``summary`` and ``totals``
as :class:`ratesim.results.Result` computes from the whole per-request arrays, value for value
(``tests/test_aggregates.py`` holds them equal on every built-in and on random scenarios). Its
memory does not grow with the run's length:

* counts are per-bin integer arrays (a bin is ``scenario.interval_s`` of arrival time);
* the per-bin quantiles (``pool_wait_p99_us``, ``latency_p50/p99/p999_us``) are computed from a
  bin's raw values once the bin is closed (a batch reached a later bin), by the formula of the
  pandas call the Result makes (compiled, :func:`ratesim.fast.fold.close_bins`: the same
  floats), so only the open bin's values are held;
* the run-wide quantiles (``latency_p*_us``, ``user_latency_p*_us``, ``held_p99_us``) come from
  exact value histograms (integer µs: a dense count per value below :data:`DENSE_MAX`, the
  rest as distinct values with counts), read the way ``numpy.percentile`` reads the sorted
  values (:func:`percentile_from_counts`); their size is bounded by the model's timeouts and
  waits, not by the run;
* the ``remaining:<layer>`` gauge is the last value reported in a bin, so batches must come in
  arrival order (the last row folded wins);
* the Redis queue depths are folded separately (:meth:`RunAggregates.fold_depth`), as their
  commands are sampled apart from the requests.

The fold of a batch is compiled (:mod:`ratesim.fast.fold`: counts, gauges and histograms in
one pass each, no ``np.unique`` / ``np.isin`` / pandas per batch). What it does not fold: the per-request rows themselves (``Result.requests``) and the oracle gap
(``vs_oracle``), which needs the oracle's run over the same arrivals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .fast.fold import (
    C_ADMITTED,
    C_ARRIVALS,
    C_LAYERS,
    C_RETRIES,
    LAYER_ROWS,
    close_bins,
    fold_series,
    hist_add,
    is_ascending,
)
from .model.topology import epoch_counts
from .outcomes import (
    ALLOWED,
    FAIL_CLOSED,
    FAIL_OPEN,
    LOCAL_ALLOWED,
    LOCAL_REJECTED,
    NOT_REACHED,
    OUTCOMES,
    REJECTED,
    SHADOW_REJECTED,
)
from .results import FAILURE_COLUMNS, SUMMARY_COLUMNS

if TYPE_CHECKING:
    from .results import RunData
    from .scenario import Scenario

_QUANTILES = (0.5, 0.99, 0.999)
#: The outcomes decided by a layer's failure mode (its ``degraded_s`` bins).
_FAILURE_MODE = np.array([FAIL_OPEN, LOCAL_ALLOWED, FAIL_CLOSED, LOCAL_REJECTED])
#: Per outcome code: one decided by a failure mode (the compiled fold's lookup).
_DEGRADED = np.isin(np.arange(len(OUTCOMES)), _FAILURE_MODE)
#: Per outcome code: its failure column (``FAILURE_COLUMNS`` order), -1 for none.
_FAILURE_COL = np.full(len(OUTCOMES), -1, dtype=np.int64)
_FAILURE_COL[[code for code, _ in FAILURE_COLUMNS]] = np.arange(len(FAILURE_COLUMNS))
_QS = np.array(_QUANTILES)
_PW_Q = np.array([0.99])  # the pool wait's per-bin quantile


def percentile_from_counts(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """``numpy.percentile(x, q)`` (method ``linear``) of the multiset holding ``values[i]``
    ``counts[i]`` times (``values`` sorted, distinct); NaN when it is empty.

    The same arithmetic as numpy's: the virtual index ``q / 100 * (n - 1)``, its floor and the
    next order statistic, and numpy's ``_lerp`` (from the upper end when the weight is >= 0.5),
    so the float is the same bit for bit."""
    n = int(counts.sum())
    if n == 0:
        return float("nan")
    virtual = np.float64(q) / 100 * (n - 1)
    prev = int(np.floor(virtual))
    gamma = virtual - prev
    nxt = min(prev + 1, n - 1)
    ends = np.cumsum(counts)  # order statistic k lies in the first value whose end > k
    a = np.float64(values[int(np.searchsorted(ends, prev, side="right"))])
    b = np.float64(values[int(np.searchsorted(ends, nxt, side="right"))])
    diff = b - a
    return float(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)


#: The dense part of a value histogram covers ``0 <= value < DENSE_MAX`` (µs; 32 MiB of counts
#: at most, and only the pages written are mapped); values outside are kept sparse.
DENSE_MAX = 1 << 22


class _Histogram:
    """An exact multiset of integers: a dense count per value in ``[0, len(dense))`` (grown in
    powers of two up to :data:`DENSE_MAX` as larger values come, counted by the compiled
    :func:`ratesim.fast.fold.hist_add`: no sort per batch) and the values outside it as sorted
    distinct values with their counts (``np.unique``, the rare ones)."""

    def __init__(self) -> None:
        self.dense = np.zeros(0, dtype=np.int64)
        self.values = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)
        self._table: tuple[np.ndarray, np.ndarray] | None = None  # table() until the next add

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        self._table = None
        x = np.asarray(x)
        hi = int(x.max())
        if len(self.dense) <= hi < DENSE_MAX:
            grown = np.zeros(max(1024, 1 << hi.bit_length()), dtype=np.int64)
            grown[: len(self.dense)] = self.dense
            self.dense = grown
        if hist_add(self.dense, x):
            self._add_sparse(x[(x < 0) | (x >= len(self.dense))])

    def _add_sparse(self, x: np.ndarray) -> None:
        """The values outside the dense range, merged into ``values`` / ``counts``."""
        self.values, self.counts = _merge_counts(
            self.values, self.counts, *np.unique(np.asarray(x, dtype=np.int64), return_counts=True)
        )

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """The multiset as sorted distinct values and their counts (dense and sparse merged:
        the dense range may have grown over values once kept sparse)."""
        if self._table is None:
            nz = np.flatnonzero(self.dense)
            self._table = _merge_counts(
                self.values, self.counts, nz.astype(np.int64), self.dense[nz]
            )
        return self._table

    def percentile(self, q: float) -> float:
        return percentile_from_counts(*self.table(), q)


def _merge_counts(
    v1: np.ndarray, c1: np.ndarray, v2: np.ndarray, c2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two (sorted distinct values, counts) multisets as one."""
    if not len(v1):
        return v2, c2
    if not len(v2):
        return v1, c1
    values, inverse = np.unique(np.concatenate((v1, v2)), return_inverse=True)
    counts = np.zeros(len(values), dtype=np.int64)
    np.add.at(counts, inverse, np.concatenate((c1, c2)))
    return values, counts


class _Bins:
    """The per-bin tables, grown as later bins are met: ``counts`` (int64, rows as
    :mod:`ratesim.fast.fold`'s ``C_*`` and ``LAYER_ROWS`` per layer), ``gauges`` (float, a row
    per layer, NaN where no value was reported) and ``quant`` (float, the pool wait's p99 then
    the latency's ``_QUANTILES``; NaN for a bin without rows)."""

    def __init__(self, n_bins: int, n_layers: int) -> None:
        self.n = n_bins
        self.counts = np.zeros((C_LAYERS + n_layers * LAYER_ROWS, n_bins), dtype=np.int64)
        self.gauges = np.full((n_layers, n_bins), np.nan)
        self.quant = np.full((1 + len(_QUANTILES), n_bins), np.nan)

    def grow(self, n_bins: int) -> None:
        if n_bins <= self.n:
            return
        old = self.n
        self.n = max(n_bins, 2 * self.n)
        for name in ("counts", "gauges", "quant"):
            arr = getattr(self, name)
            grown = np.full((arr.shape[0], self.n), np.nan if arr.dtype.kind == "f" else 0)
            grown = grown.astype(arr.dtype)
            grown[:, :old] = arr
            setattr(self, name, grown)

    def layer_row(self, pos: int, k: int) -> np.ndarray:
        """Layer ``pos``'s count row ``k`` (0 rejected, 1-5 the failure columns, 6 degraded)."""
        return self.counts[C_LAYERS + pos * LAYER_ROWS + k]


class RunAggregates:
    """The aggregates of one run, folded from batches of finished requests (module docstring).

    ``fold`` takes consecutive rows in arrival order; ``fold_depth`` the Redis commands' queue
    depths; ``finish`` (once) the end state the summary needs."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.layer_names = [layer.name for layer in scenario.policy.layers]
        self.n_layers = len(self.layer_names)
        iv = scenario.interval_us
        self._iv = iv
        self._min_bins = max(1, -(-scenario.duration_us // iv))
        self._bins = _Bins(self._min_bins, self.n_layers)
        self._last_bin = -1  # the highest bin met (n_bins = _last_bin + 1 at least)
        self._depth_bins: dict[int, int] = {}  # bin (unclipped) -> max depth
        # raw (bin, pool wait, latency) of the open bin's rows (a closed bin's quantiles are
        # in the bins' ``quant``)
        self._open = (np.zeros(0, dtype=np.int64),) * 3
        self.outcome_counts = np.zeros((self.n_layers, len(OUTCOMES)), dtype=np.int64)
        self.rejected_counts = np.zeros(self.n_layers + 1, dtype=np.int64)
        self.latency = _Histogram()
        self.user_latency = _Histogram()
        self.held = _Histogram()
        self.arrivals = 0
        self.admitted = 0
        self.user_requests = 0
        self.goodput = 0
        self.held_count = 0
        self.has_held = False
        self.has_retries = False
        self.max_decided_us = 0
        self.store_breakers: np.ndarray | None = None

    # --- folding ----------------------------------------------------------------------------

    def fold(
        self,
        time_us: np.ndarray,
        rejected_by: np.ndarray,
        outcomes: np.ndarray,
        remaining: np.ndarray,
        decided_us: np.ndarray,
        pool_wait_us: np.ndarray,
        held_us: np.ndarray | None = None,
        attempt: np.ndarray | None = None,
        final: np.ndarray | None = None,
        first_time_us: np.ndarray | None = None,
    ) -> None:
        """Fold a batch of finished requests (rows in arrival order, after every row folded
        before). ``outcomes`` / ``remaining``: ``(rows, layers)``; times in µs. With clients
        that retry, ``attempt`` (1: a first try), ``final`` (the row is its user request's last
        attempt) and ``first_time_us`` (its user request's first arrival)."""
        if not len(time_us):
            return
        b = np.asarray(time_us, dtype=np.int64) // self._iv
        top = int(b[-1])
        self._bins.grow(top + 1)
        self._last_bin = max(self._last_bin, top)
        bins = self._bins
        n_admitted = fold_series(
            b, rejected_by, outcomes, remaining, _FAILURE_COL, _DEGRADED,
            bins.counts, bins.gauges, self.outcome_counts, self.rejected_counts,
        )  # fmt: skip
        lat = decided_us - time_us
        self._fold_quantiles(b, pool_wait_us, lat, top)
        self.arrivals += len(time_us)
        self.admitted += n_admitted
        self.latency.add(lat)
        self.max_decided_us = max(self.max_decided_us, int(decided_us.max()))
        if held_us is not None:
            self.has_held = True
            self.held_count += int(np.count_nonzero(held_us > 0))
            self.held.add(held_us)
        if attempt is None or final is None or first_time_us is None:
            self.user_requests += len(time_us)
            self.goodput += n_admitted
            self.user_latency.add(lat)
        else:
            self.has_retries = True
            bins.counts[C_RETRIES] += np.bincount(b[attempt > 1], minlength=bins.n)
            self.user_requests += int(final.sum())
            self.goodput += int((final & (rejected_by < 0)).sum())
            self.user_latency.add((decided_us - first_time_us)[final])

    def _fold_quantiles(self, b: np.ndarray, pw: np.ndarray, lat: np.ndarray, top: int) -> None:
        """Hold the batch's raw values of the open bin; close (compute) every bin below
        ``top`` (compiled, :func:`ratesim.fast.fold.close_bins`: pandas' quantile formula)."""
        ob, opw, olat = self._open
        if is_ascending(b) and (not len(ob) or ob[0] == ob[-1] <= b[0]):
            self._fold_quantiles_in_order(b, pw, lat, top)
            return
        if len(ob):
            b, pw, lat = (
                np.concatenate((ob, b)),
                np.concatenate((opw, pw)),
                np.concatenate((olat, lat)),
            )
        if not is_ascending(b):  # rows out of bin order: a bin's quantiles ignore row order
            order = np.argsort(b, kind="stable")
            b, pw, lat = b[order], pw[order], lat[order]
        cut = close_bins(b, pw, lat, top, _PW_Q, _QS, self._bins.quant)
        self._open = (b[cut:].copy(), np.array(pw[cut:]), np.array(lat[cut:]))

    def _fold_quantiles_in_order(
        self, b: np.ndarray, pw: np.ndarray, lat: np.ndarray, top: int
    ) -> None:
        """:meth:`_fold_quantiles` for a batch in bin order whose held rows are of one bin at
        or before its first (arrival order: always): only the held bin's rows are joined to
        the batch's rows of that bin, the other bins closed on the batch itself (the whole
        batch was copied to join it to the held rows: 3 copies of a batch, per batch)."""
        ob, opw, olat = self._open
        k = 0
        if len(ob):
            k = int(np.searchsorted(b, ob[0], side="right"))  # the batch's rows of that bin
            joined = (
                np.concatenate((ob, b[:k])),
                np.concatenate((opw, pw[:k])),
                np.concatenate((olat, lat[:k])),
            )
            if k == len(b):  # the held bin is the batch's last: still open
                self._open = joined
                return
            close_bins(*joined, top, _PW_Q, _QS, self._bins.quant)  # below top: closed
        cut = k + close_bins(b[k:], pw[k:], lat[k:], top, _PW_Q, _QS, self._bins.quant)
        self._open = (b[cut:].copy(), np.array(pw[cut:]), np.array(lat[cut:]))

    def fold_depth(self, depth_t_us: np.ndarray, depth: np.ndarray) -> None:
        """Fold Redis commands' queue depths (each command's arrival µs and depth)."""
        if not len(depth):
            return
        db = np.asarray(depth_t_us, dtype=np.int64) // self._iv
        uniq, inverse = np.unique(db, return_inverse=True)
        best = np.zeros(len(uniq), dtype=np.int64)
        np.maximum.at(best, inverse, np.asarray(depth, dtype=np.int64))
        for k, v in zip(uniq.tolist(), best.tolist(), strict=True):
            self._depth_bins[k] = max(self._depth_bins.get(k, 0), v)

    def finish(self, store_breakers: np.ndarray | None = None) -> None:
        """The run's end: close the open bins; ``store_breakers`` as :class:`RunData` holds
        them."""
        ob, opw, olat = self._open
        if len(ob):
            self._bins.grow(int(ob.max()) + 1)
            close_bins(ob, opw, olat, int(ob.max()) + 1, _PW_Q, _QS, self._bins.quant)
        self._open = (np.zeros(0, dtype=np.int64),) * 3
        self.store_breakers = store_breakers

    @classmethod
    def from_run_data(
        cls, scenario: Scenario, data: RunData, batch_rows: int | np.ndarray = 65536
    ) -> RunAggregates:
        """Fold ``data`` (a whole run) in batches of ``batch_rows`` rows (or at the given row
        boundaries): what a streamed run folds, from the full arrays."""
        agg = cls(scenario)
        agg.fold_run_data(data, batch_rows)
        return agg

    def fold_run_data(self, data: RunData, batch_rows: int | np.ndarray = 65536) -> None:
        """Fold every row of ``data``, its depths and its end state (then :meth:`finish`)."""
        n = len(data.arrivals)
        if isinstance(batch_rows, int):
            cuts = np.arange(0, n, max(1, batch_rows))
        else:
            cuts = np.asarray(batch_rows, dtype=np.int64)
        edges = np.unique(np.concatenate(([0], cuts[(cuts > 0) & (cuts < n)], [n])))
        final = first_t = None
        if data.attempt is not None and data.origin is not None:
            final = _final_rows(data.attempt, data.origin)
            first_t = data.arrivals.time_us[data.origin]
        for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
            s = slice(lo, hi)
            self.fold(
                data.arrivals.time_us[s],
                data.rejected_by[s].astype(np.int64),
                data.outcomes[s].astype(np.int64),
                data.remaining[s],
                data.decided_us[s],
                data.pool_wait_us[s],
                None if data.held_us is None else data.held_us[s],
                None if data.attempt is None else data.attempt[s],
                None if final is None else final[s],
                None if first_t is None else first_t[s],
            )
        self.fold_depth(data.depth_t_us, data.depth)
        self.finish(data.store_breakers)

    # --- views ------------------------------------------------------------------------------

    @property
    def n_bins(self) -> int:
        return max(self._min_bins, self._last_bin + 1)

    def timeseries(self) -> pd.DataFrame:
        """As ``Result.timeseries``."""
        sc = self.scenario
        n_bins = self.n_bins
        bins = self._bins

        cols: dict[str, Any] = {
            "arrivals": bins.counts[C_ARRIVALS, :n_bins].copy(),
            "admitted": bins.counts[C_ADMITTED, :n_bins].copy(),
        }
        for pos, name in enumerate(self.layer_names):
            cols[f"rejected:{name}"] = bins.layer_row(pos, 0)[:n_bins].copy()
            for k, (_, label) in enumerate(FAILURE_COLUMNS):
                cols[f"{label}:{name}"] = bins.layer_row(pos, 1 + k)[:n_bins].copy()
        for pos, name in enumerate(self.layer_names):
            cols[f"remaining:{name}"] = bins.gauges[pos, :n_bins].copy()
        depth = np.zeros(n_bins, dtype=np.int64)
        for k, v in self._depth_bins.items():  # commands past the last bin count in it
            j = min(k, n_bins - 1)
            depth[j] = max(depth[j], v)
        cols["redis_queue_depth"] = depth
        cols["pool_wait_p99_us"] = bins.quant[0, :n_bins].copy()
        for k, label in enumerate(("p50", "p99", "p999")):
            cols[f"latency_{label}_us"] = bins.quant[1 + k, :n_bins].copy()
        if sc.topology.changes:
            at_us, counts = sc.topology.change_tables()
            starts = np.arange(n_bins, dtype=np.int64) * self._iv
            epoch = np.searchsorted(at_us, starts, side="right")
            cols["live_nodes"] = epoch_counts(sc.topology.nodes, counts)[epoch]
        if self.has_retries:
            cols["retries"] = bins.counts[C_RETRIES, :n_bins].copy()
        index = pd.Index(np.arange(n_bins) * sc.interval_s, name="time_s")
        return pd.DataFrame(cols, index=index)

    def summary(self) -> pd.DataFrame:
        """As ``Result.summary``."""
        rows = []
        for pos, layer in enumerate(self.scenario.policy.layers):
            c = self.outcome_counts[pos]
            short, opens, open_s = self._breaker_figures(pos)
            degraded_bins = self._bins.layer_row(pos, LAYER_ROWS - 1)[: self.n_bins]
            degraded = int(np.count_nonzero(degraded_bins))
            rows.append(
                {
                    "layer": layer.name,
                    "scope": layer.scope,
                    "mode": layer.mode,
                    "algorithm": layer.algorithm.kind,
                    "reached": int(c.sum() - c[NOT_REACHED]),
                    "allowed": int(c[ALLOWED]),
                    "limited": int(c[REJECTED]),
                    "rejected": int(self.rejected_counts[pos + 1]),
                    "shadow_rejected": int(c[SHADOW_REJECTED]),
                    "fail_open": int(c[FAIL_OPEN]),
                    "fail_closed": int(c[FAIL_CLOSED]),
                    "local_allowed": int(c[LOCAL_ALLOWED]),
                    "local_rejected": int(c[LOCAL_REJECTED]),
                    "local": int(c[LOCAL_ALLOWED] + c[LOCAL_REJECTED]),
                    "failure_mode_allowed": int(c[FAIL_OPEN] + c[LOCAL_ALLOWED]),
                    "failure_mode_denied": int(c[FAIL_CLOSED] + c[LOCAL_REJECTED]),
                    "breaker_short": short,
                    "breaker_opens": opens,
                    "breaker_open_s": open_s,
                    "degraded_s": degraded * self.scenario.interval_s,
                }
            )
        return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)

    def _breaker_figures(self, pos: int) -> tuple[int, int, float]:
        """As ``Result._breaker_figures``: short-circuits, openings, node-seconds open."""
        from .model.store_breaker import SB_OPENS, SB_SHORT, sb_open_us

        sb = self.store_breakers
        if sb is None or self.scenario.policy.layers[pos].store_breaker is None:
            return 0, 0, 0.0
        end = max(self.max_decided_us, self.scenario.duration_us)
        rows = sb[:, pos, :]
        open_us = sum(sb_open_us(row, 0, end) for row in rows)
        return int(rows[:, SB_SHORT].sum()), int(rows[:, SB_OPENS].sum()), open_us / 1e6

    def totals(self) -> dict[str, Any]:
        """As ``Result.totals``."""
        n, users = self.arrivals, self.user_requests
        c = self.outcome_counts
        out: dict[str, Any] = {
            "arrivals": n,
            "admitted": self.admitted,
            "rejected": n - self.admitted,
            "latency_p50_us": self.latency.percentile(50),
            "latency_p99_us": self.latency.percentile(99),
            "latency_p999_us": self.latency.percentile(99.9),
            "failure_mode_allowed": int(c[:, FAIL_OPEN].sum() + c[:, LOCAL_ALLOWED].sum()),
            "failure_mode_denied": int(c[:, FAIL_CLOSED].sum() + c[:, LOCAL_REJECTED].sum()),
            "user_requests": users,
            "attempts": n,
            "retries": n - users,
            "attempts_per_request": n / users if users else float("nan"),
            "goodput": self.goodput,
            "user_latency_p50_us": self.user_latency.percentile(50),
            "user_latency_p99_us": self.user_latency.percentile(99),
            "user_latency_p999_us": self.user_latency.percentile(99.9),
        }
        if self.has_held:
            out["held"] = self.held_count
            out["held_p99_us"] = self.held.percentile(99)
        return out


def _final_rows(attempt: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Bool per row: the row is its user request's last attempt (the highest ``attempt`` of
    its ``origin``)."""
    last = np.zeros(int(origin.max()) + 1 if len(origin) else 0, dtype=np.int64)
    np.maximum.at(last, origin, attempt)
    return attempt == last[origin]
