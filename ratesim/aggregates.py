"""A run's time series, summary and totals folded batch by batch, exactly.

:class:`RunAggregates` takes the finished requests of a run in batches of consecutive rows, in
arrival order (any batch sizes), and gives the same ``timeseries``, ``summary`` and ``totals``
as :class:`ratesim.results.Result` computes from the whole per-request arrays, value for value
(``tests/test_aggregates.py`` holds them equal on every built-in and on random scenarios). Its
memory does not grow with the run's length:

* counts are per-bin integer arrays (a bin is ``scenario.interval_s`` of arrival time);
* the per-bin quantiles (``pool_wait_p99_us``, ``latency_p50/p99/p999_us``) are computed from a
  bin's raw values once the bin is closed (a batch reached a later bin), with the same pandas
  call the Result makes, so only the open bin's values are held;
* the run-wide quantiles (``latency_p*_us``, ``user_latency_p*_us``, ``held_p99_us``) come from
  exact value histograms (integer µs: distinct values, with counts), read the way
  ``numpy.percentile`` reads the sorted values (:func:`percentile_from_counts`); their size is
  the number of distinct latencies, bounded by the model's timeouts and waits, not by the run;
* the ``remaining:<layer>`` gauge is the last value reported in a bin, so batches must come in
  arrival order (the last row folded wins);
* the Redis queue depths are folded separately (:meth:`RunAggregates.fold_depth`), as their
  commands are sampled apart from the requests.

What it does not fold: the per-request rows themselves (``Result.requests``) and the oracle gap
(``vs_oracle``), which needs the oracle's run over the same arrivals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

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


class _Histogram:
    """An exact multiset of integers: sorted distinct values and their counts."""

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=np.int64)
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, x: np.ndarray) -> None:
        if not len(x):
            return
        v, c = np.unique(np.asarray(x, dtype=np.int64), return_counts=True)
        allv = np.concatenate((self.values, v))
        allc = np.concatenate((self.counts, c))
        self.values, inverse = np.unique(allv, return_inverse=True)
        self.counts = np.bincount(inverse, weights=allc, minlength=len(self.values)).astype(
            np.int64
        )

    def percentile(self, q: float) -> float:
        return percentile_from_counts(self.values, self.counts, q)


class _Bins:
    """Integer arrays indexed by bin that grow as later bins are met."""

    def __init__(self, n_bins: int) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self.n = n_bins

    def grow(self, n_bins: int) -> None:
        if n_bins <= self.n:
            return
        self.n = max(n_bins, 2 * self.n)
        for name, arr in self.arrays.items():
            grown = np.full(self.n, np.nan if arr.dtype.kind == "f" else 0, dtype=arr.dtype)
            grown[: len(arr)] = arr
            self.arrays[name] = grown

    def get(self, name: str, dtype: Any = np.int64) -> np.ndarray:
        if name not in self.arrays:
            self.arrays[name] = np.full(self.n, np.nan if dtype is float else 0, dtype=dtype)
        return self.arrays[name]

    def count(self, name: str, b: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add one to ``name`` at each bin of ``b`` (where ``mask``)."""
        arr = self.get(name)
        arr += np.bincount(b if mask is None else b[mask], minlength=self.n)


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
        self._bins = _Bins(self._min_bins)
        self._last_bin = -1  # the highest bin met (n_bins = _last_bin + 1 at least)
        self._depth_bins: dict[int, int] = {}  # bin (unclipped) -> max depth
        self._open: list[pd.DataFrame] = []  # raw (bin, pool wait, latency) of open bins
        self._closed: list[pd.DataFrame] = []  # the closed bins' quantiles
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
        admitted = rejected_by < 0
        self._fold_series(b, admitted, rejected_by, outcomes, remaining)
        lat = decided_us - time_us
        self._fold_quantiles(b, pool_wait_us, lat, top)
        for pos in range(self.n_layers):
            self.outcome_counts[pos] += np.bincount(outcomes[:, pos], minlength=len(OUTCOMES))
        self.rejected_counts += np.bincount(rejected_by + 1, minlength=self.n_layers + 1)
        self.arrivals += len(time_us)
        self.admitted += int(admitted.sum())
        self.latency.add(lat)
        self.max_decided_us = max(self.max_decided_us, int(decided_us.max()))
        if held_us is not None:
            self.has_held = True
            self.held_count += int((held_us > 0).sum())
            self.held.add(held_us)
        if attempt is None or final is None or first_time_us is None:
            self.user_requests += len(time_us)
            self.goodput += int(admitted.sum())
            self.user_latency.add(lat)
        else:
            self.has_retries = True
            self._bins.count("retries", b, attempt > 1)
            self.user_requests += int(final.sum())
            self.goodput += int((final & admitted).sum())
            self.user_latency.add((decided_us - first_time_us)[final])

    def _fold_series(
        self,
        b: np.ndarray,
        admitted: np.ndarray,
        rejected_by: np.ndarray,
        outcomes: np.ndarray,
        remaining: np.ndarray,
    ) -> None:
        """The per-bin counts and gauges of a batch (``b``: each row's bin)."""
        bins = self._bins
        bins.count("arrivals", b)
        bins.count("admitted", b, admitted)
        for pos, name in enumerate(self.layer_names):
            o = outcomes[:, pos]
            bins.count(f"rejected:{name}", b, rejected_by == pos)
            for code, label in FAILURE_COLUMNS:
                bins.count(f"{label}:{name}", b, o == code)
            fm = np.isin(o, _FAILURE_MODE)
            bins.count(f"degraded:{name}", b, fm)
            rem = remaining[:, pos]
            sel = rem >= 0
            bs, vs = b[sel], rem[sel]
            if len(bs):  # the last value reported in each bin of the batch wins
                last = np.flatnonzero(np.append(bs[1:] != bs[:-1], True))
                gauge = bins.get(f"remaining:{name}", float)
                gauge[bs[last]] = vs[last]

    def _fold_quantiles(self, b: np.ndarray, pw: np.ndarray, lat: np.ndarray, top: int) -> None:
        """Hold the batch's raw values of open bins; close (compute) every bin below ``top``."""
        self._open.append(pd.DataFrame({"b": b, "pw": pw, "lat": lat}))
        frame = pd.concat(self._open, ignore_index=True) if len(self._open) > 1 else self._open[0]
        done = frame["b"].to_numpy() < top
        if done.any():
            self._closed.append(_bin_quantiles(frame[done]))
            frame = frame[~done].reset_index(drop=True)
        self._open = [frame]

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
        if self._open and len(self._open[0]):
            self._closed.append(_bin_quantiles(self._open[0]))
        self._open = []
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

        def col(name: str, dtype: Any = np.int64) -> np.ndarray:
            return bins.get(name, dtype)[:n_bins].copy()

        cols: dict[str, Any] = {"arrivals": col("arrivals"), "admitted": col("admitted")}
        for name in self.layer_names:
            cols[f"rejected:{name}"] = col(f"rejected:{name}")
            for _, label in FAILURE_COLUMNS:
                cols[f"{label}:{name}"] = col(f"{label}:{name}")
        for name in self.layer_names:
            cols[f"remaining:{name}"] = col(f"remaining:{name}", float)
        depth = np.zeros(n_bins, dtype=np.int64)
        for k, v in self._depth_bins.items():  # commands past the last bin count in it
            j = min(k, n_bins - 1)
            depth[j] = max(depth[j], v)
        cols["redis_queue_depth"] = depth
        q = pd.concat(self._closed) if self._closed else pd.DataFrame(columns=["pw", *_QUANTILES])
        q = q.reindex(range(n_bins))
        cols["pool_wait_p99_us"] = q["pw"].to_numpy(dtype=float)
        for quant, label in zip(_QUANTILES, ("p50", "p99", "p999"), strict=True):
            cols[f"latency_{label}_us"] = q[quant].to_numpy(dtype=float)
        if sc.topology.changes:
            at_us, counts = sc.topology.change_tables()
            starts = np.arange(n_bins, dtype=np.int64) * self._iv
            epoch = np.searchsorted(at_us, starts, side="right")
            cols["live_nodes"] = epoch_counts(sc.topology.nodes, counts)[epoch]
        if self.has_retries:
            cols["retries"] = col("retries")
        index = pd.Index(np.arange(n_bins) * sc.interval_s, name="time_s")
        return pd.DataFrame(cols, index=index)

    def summary(self) -> pd.DataFrame:
        """As ``Result.summary``."""
        rows = []
        for pos, layer in enumerate(self.scenario.policy.layers):
            c = self.outcome_counts[pos]
            short, opens, open_s = self._breaker_figures(pos)
            degraded = int((self._bins.get(f"degraded:{layer.name}")[: self.n_bins] > 0).sum())
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


def _bin_quantiles(frame: pd.DataFrame) -> pd.DataFrame:
    """Per bin of ``frame`` (columns ``b``, ``pw``, ``lat``): the pool wait's p99 (``pw``) and
    the latency's quantiles (columns 0.5, 0.99, 0.999), by the same pandas calls as
    ``Result.timeseries`` (a group's quantile depends on its own rows only)."""
    grouped = frame.groupby("b")
    pw = grouped["pw"].quantile(0.99)
    lat = grouped["lat"].quantile(np.array(_QUANTILES)).unstack()
    out = pd.DataFrame({"pw": pw.astype(float)})
    for q in _QUANTILES:
        out[q] = lat[q].astype(float) if q in lat else np.nan
    return out


def _final_rows(attempt: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Bool per row: the row is its user request's last attempt (the highest ``attempt`` of
    its ``origin``)."""
    last = np.zeros(int(origin.max()) + 1 if len(origin) else 0, dtype=np.int64)
    np.maximum.at(last, origin, attempt)
    return attempt == last[origin]
