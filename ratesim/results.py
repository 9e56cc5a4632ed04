"""What a run produced: per-request outcomes, time series, per-layer summary, oracle gap.

:class:`Result` wraps the raw arrays of a run (:class:`RunData`) and builds pandas views on
demand (each is computed once, then cached):

* ``requests`` - one row per request: ``time_us``, ``node``, ``user``, ``tier``, ``route``
  (categories), ``abusive``, ``cost``, ``layer:<name>`` (category, one of :data:`OUTCOMES`),
  ``admitted``, ``rejected_by`` (layer name or ``None``), ``latency_us`` (decision latency: from
  arrival to the final decision, pool and concurrency waits and shaping holds included),
  ``pool_wait_us``, with a shaping layer ``held_us`` (how long shaping layers held the request
  before forwarding it, ``ratesim.algorithms.shaping``), with a backend ``backend_rt_us``
  (arrival to backend completion, -1 if not admitted), and ``attempt`` (1 for a first try,
  ``k`` for the ``k - 1``-th retry of clients that retry) and ``origin`` (the row of the user
  request the attempt belongs to: its first attempt's row);
* ``user_requests`` - one row per user request (a first attempt and its retries), indexed by
  its first attempt's row: ``time_us``, ``user``, ``tier``, ``attempts``, ``admitted`` (its
  final outcome: the last attempt was admitted), ``rejected_by`` (the last attempt's),
  ``latency_us`` (what the user waited: first arrival to the last attempt's decision);
* ``timeseries`` - indexed by bin start ``time_s`` (bins of ``scenario.interval_s`` by arrival
  time): ``arrivals``, ``admitted``, ``rejected:<layer>``, ``shadow_rejected:<layer>``,
  ``remaining:<layer>`` (last value reported in the bin, NaN if none), ``redis_queue_depth``
  (max commands ahead of an arriving command in the bin), ``pool_wait_p99_us``,
  ``latency_p50_us``, ``latency_p99_us``, ``latency_p999_us``, with ``topology.changes``
  ``live_nodes`` (the nodes live at the bin's start), and with clients that retry ``retries``
  (the bin's arrivals that are retries: ``arrivals`` counts every attempt);
* ``summary`` - one row per layer: ``layer``, ``scope``, ``mode``, ``algorithm``, then counts
  of the requests that ``reached`` it by outcome, which add up to ``reached``: ``allowed``,
  ``limited`` (its limiter said no), ``shadow_rejected``, ``fail_open``, ``fail_closed``,
  ``local_allowed``, ``local_rejected``; ``rejected`` counts the final rejections the layer made
  (for an enforcing layer ``limited + fail_closed + local_rejected``; 0 for a shadow one) and
  ``local`` is ``local_allowed + local_rejected``. The decisions made on an error path, in
  Envoy's words: ``failure_mode_allowed = fail_open + local_allowed`` and
  ``failure_mode_denied = fail_closed + local_rejected`` (what the failure mode said, also on a
  shadow layer that then lets the request on), so ``allowed + limited + shadow_rejected +
  failure_mode_allowed + failure_mode_denied == reached``. ``breaker_short`` counts the
  failure-mode decisions a store breaker took without calling Redis (part of the two above),
  ``breaker_opens`` the times a node's breaker opened from closed, ``breaker_open_s`` the
  node-seconds breakers spent open or half-open (summed over nodes; a period still open at
  the end counts to the run's last decision); ``degraded_s`` is the time the layer answered by
  its failure mode: ``interval_s`` times the ``timeseries`` bins with a failure-mode decision
  of the layer (an open breaker decides every request of its node that way);
* ``totals`` - ``arrivals`` (attempts, retries included), ``admitted``, ``rejected`` (attempts),
  ``latency_p50_us``, ``latency_p99_us``, ``latency_p999_us`` (per attempt),
  ``failure_mode_allowed``, ``failure_mode_denied`` (summed over layers: decisions, so a
  request decided that way at two layers counts twice), then ``user_requests``, ``attempts``,
  ``retries``, ``attempts_per_request``, ``goodput`` (user requests finally admitted) and
  ``user_latency_p50_us`` / ``_p99_us`` / ``_p999_us`` (first attempt to final outcome; without
  retries every row is a user request); with a shaping layer
  also ``held`` (requests held) and ``held_p99_us``;
* ``oracle`` - the same arrivals through the intended policy, ideally executed (see
  :func:`ratesim.oracle.run_oracle`), as a Result;
* ``vs_oracle`` - rows ``(group, key)`` for the total, each layer, each tier and the abusive
  flag, columns ``over_admitted`` (system admitted, oracle rejected), ``wrongly_rejected``
  (system rejected, oracle admitted) and ``peak_excess`` (the largest, over every window of
  ``window_s`` = 1 s, of system admissions minus oracle admissions in the window, >= 0).
  A layer's row counts the requests the oracle rejected at that layer (over-admitted) or the
  system rejected at that layer (wrongly rejected). :meth:`Result.compare_oracle` takes
  another window.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from .aggregates import RunAggregates
    from .scenario import Scenario
    from .traffic import Arrivals

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

__all__ = [
    "ALLOWED",
    "FAIL_CLOSED",
    "FAIL_OPEN",
    "LOCAL_ALLOWED",
    "LOCAL_REJECTED",
    "NOT_REACHED",
    "OUTCOMES",
    "REJECTED",
    "SHADOW_REJECTED",
    "Result",
    "RunData",
    "window_max_sum",
    "window_max_sum_reference",
]


#: The per-layer time-series columns counted from outcome codes (``<label>:<layer>``).
FAILURE_COLUMNS = (
    (SHADOW_REJECTED, "shadow_rejected"),
    (FAIL_OPEN, "fail_open"),
    (FAIL_CLOSED, "fail_closed"),
    (LOCAL_ALLOWED, "local_allowed"),
    (LOCAL_REJECTED, "local_rejected"),
)

#: ``Result.summary``'s columns, in order.
SUMMARY_COLUMNS = [
    "layer",
    "scope",
    "mode",
    "algorithm",
    "reached",
    "allowed",
    "limited",
    "rejected",
    "shadow_rejected",
    "fail_open",
    "fail_closed",
    "local_allowed",
    "local_rejected",
    "local",
    "failure_mode_allowed",
    "failure_mode_denied",
    "breaker_short",
    "breaker_opens",
    "breaker_open_s",
    "degraded_s",
]


@dataclass
class RunData:
    """Raw per-request arrays of one run (row ``i`` = arrival ``i``).

    ``outcomes`` / ``remaining`` are ``(n, layers)``; ``remaining`` is -1 where the layer gave
    no figure. ``rejected_by`` is the rejecting layer's position or -1 (admitted).
    ``depth_t_us`` / ``depth`` sample the Redis queue depth at each command's arrival.
    ``store_breakers`` is each (node, layer)'s store breaker at the end of the run,
    ``(nodes, layers, SB_COLS)`` by the columns of :mod:`ratesim.model.store_breaker`
    (``None`` when no layer has one).
    """

    arrivals: Arrivals
    node: np.ndarray
    outcomes: np.ndarray
    remaining: np.ndarray
    decided_us: np.ndarray
    rejected_by: np.ndarray
    pool_wait_us: np.ndarray
    depth_t_us: np.ndarray
    depth: np.ndarray
    backend_done_us: np.ndarray | None = None
    #: µs each request was held by shaping layers (``ratesim.algorithms.shaping``), in its
    #: decision latency; ``None`` when no layer of the run can hold a request
    held_us: np.ndarray | None = None
    store_breakers: np.ndarray | None = None
    #: With clients that retry (else ``None``: every row a first try): each row's attempt
    #: (1 for a first try) and the row of the user request it belongs to (its first attempt).
    attempt: np.ndarray | None = None
    origin: np.ndarray | None = None


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def window_max_sum(time_us: np.ndarray, d: np.ndarray, window_us: int) -> int:
    """``max(0, max over windows [s, s + window_us) of sum(d))`` for events at ``time_us``.

    Times are integer µs, sorted. One compiled sorted pass
    (:func:`ratesim.fast.window_max_sorted`); its reference, the same starts tried with two
    ``searchsorted`` passes, is :func:`window_max_sum_reference`.
    """
    from .fast import window_max_sorted

    t = np.ascontiguousarray(time_us, dtype=np.int64)
    return int(
        window_max_sorted(
            t,
            np.ascontiguousarray(d, dtype=np.int64),
            np.arange(len(t), dtype=np.int64),
            0,
            len(t),
            int(window_us),
        )
    )


def window_max_sum_reference(time_us: np.ndarray, d: np.ndarray, window_us: int) -> int:
    """:func:`window_max_sum` in numpy, the obviously-correct twin the tests hold it to."""
    if len(d) == 0:
        return 0
    c = np.concatenate(([0], np.cumsum(d, dtype=np.int64)))
    # As a function of the window start s the sum is piecewise constant; it changes only where
    # an event enters (s = t - window + 1) or leaves (s = t + 1). Each piece starts at one of
    # those points, so they are the only starts to try.
    starts = np.concatenate((time_us + 1, time_us - window_us + 1))
    i = np.searchsorted(time_us, starts, side="left")
    j = np.searchsorted(time_us, starts + window_us, side="left")
    return max(0, int((c[j] - c[i]).max()))


@lru_cache(maxsize=64)
def _categories(names: tuple[str, ...]) -> pd.CategoricalDtype:
    """The categorical dtype of ``names``, built once: pandas checks the categories each time
    one is built, which cost most of a batch's frame (:class:`ratesim.sinks.ParquetSink`)."""
    return pd.CategoricalDtype(pd.Index(names))


def _categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical:
    """``codes`` into ``names`` as a categorical (all ``""`` when there are no names)."""
    if not names:
        return pd.Categorical.from_codes(
            np.zeros(len(codes), dtype=np.int64), dtype=_categories(("",))
        )
    return pd.Categorical.from_codes(codes.astype(np.int64), dtype=_categories(names))


def requests_frame(
    data: RunData, layer_names: list[str], first_row: int = 0, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """``Result.requests`` of ``data`` (the module docstring gives its columns), the rows being
    the run's rows from ``first_row`` on (a batch: a run without retries' ``origin`` is the row
    number) or, with ``rows``, the rows so numbered, which then index the frame (``row``)."""
    a = data.arrivals
    cols: dict[str, Any] = {
        "time_us": a.time_us,
        "node": data.node,
        "user": a.user,
        "tier": _categorical(a.tier, a.tier_names),
        "route": _categorical(a.route, a.route_names),
        "abusive": a.abusive,
        "cost": a.cost,
    }
    for pos, name in enumerate(layer_names):
        cols[f"layer:{name}"] = _categorical(data.outcomes[:, pos], tuple(OUTCOMES))
    cols["admitted"] = data.rejected_by < 0
    names = np.array([*layer_names, None], dtype=object)
    # object dtype keeps None for "admitted" (a string dtype would turn it into NaN)
    cols["rejected_by"] = pd.Series(names[data.rejected_by.astype(np.int64)], dtype=object)
    cols["latency_us"] = data.decided_us - a.time_us
    cols["pool_wait_us"] = data.pool_wait_us
    if data.held_us is not None:
        cols["held_us"] = data.held_us
    if data.backend_done_us is not None:
        done = data.backend_done_us
        cols["backend_rt_us"] = np.where(done >= 0, done - a.time_us, -1)
    if data.attempt is None or data.origin is None:  # every row its own first try
        cols["attempt"] = np.ones(len(a), dtype=np.int64)
        cols["origin"] = np.arange(first_row, first_row + len(a), dtype=np.int64)
    else:
        cols["attempt"], cols["origin"] = data.attempt, data.origin
    frame = pd.DataFrame(cols)
    if rows is not None:
        frame.index = pd.Index(rows, name="row")
    return frame


def gap_frame(gap: np.ndarray, layer_names: list[str], tier_names: tuple[str, ...]) -> pd.DataFrame:
    """The oracle gap's DataFrame (``Result.vs_oracle``) from its ``(groups, 3)`` numbers
    (:func:`ratesim.fast.oracle_gap`, or :class:`ratesim.oracle_stream.GapStream` streamed)."""
    keys = [("total", "all")]
    keys += [("layer", name) for name in layer_names]
    keys += [("tier", tier) for tier in tier_names]
    keys += [("abusive", "true"), ("abusive", "false")]
    frame = pd.DataFrame(gap, columns=["over_admitted", "wrongly_rejected", "peak_excess"])
    frame.insert(0, "key", [k for _, k in keys])
    frame.insert(0, "group", [g for g, _ in keys])
    return frame


class Result:
    """The outcome of ``ratesim.simulate`` (see the module docstring for every view)."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        data: RunData,
        oracle_fn: Callable[[], RunData] | None = None,
        engine: str = "event",
        *,
        aggregates: RunAggregates | None = None,
        rows: np.ndarray | None = None,
        requests_kind: str = "all",
        vs_oracle: pd.DataFrame | None = None,
    ) -> None:
        """``data``: every row of the run, or with ``requests_kind`` ``"sample"`` / ``"none"``
        (``ratesim.sampling``) only the rows numbered ``rows``; then ``aggregates`` (every
        row folded) gives the time series, summary and totals, and ``vs_oracle`` the oracle
        gap (1 s windows), both exact."""
        self.scenario = scenario
        self.seed = seed
        self.data = data
        #: The engine that ran it ("event", "fast", or "oracle"); both engines give the same run.
        self.engine = engine
        self._oracle_fn = oracle_fn
        #: Which per-request rows ``requests`` holds: "all", "sample" or "none".
        self.requests_kind = requests_kind
        self._aggregates = aggregates
        self._rows = rows
        self._gap_1s = vs_oracle
        self.layer_names = [layer.name for layer in scenario.policy.layers]

    def __repr__(self) -> str:
        t = self.totals
        return (
            f"Result({self.scenario.name!r}, seed={self.seed}, arrivals={t['arrivals']}, "
            f"admitted={t['admitted']}, rejected={t['rejected']})"
        )

    # --- raw views --------------------------------------------------------------------------

    @property
    def admitted(self) -> np.ndarray:
        """Bool per request: admitted by every enforce layer."""
        return self.data.rejected_by < 0

    @property
    def latency_us(self) -> np.ndarray:
        """Decision latency per request (µs)."""
        return self.data.decided_us - self.data.arrivals.time_us

    # --- DataFrames -------------------------------------------------------------------------

    @cached_property
    def requests(self) -> pd.DataFrame:
        # a sample: rows keep their numbers in the whole run
        return requests_frame(self.data, self.layer_names, rows=self._rows)

    @property
    def attempts(self) -> tuple[np.ndarray, np.ndarray]:
        """Each row's ``attempt`` and ``origin`` (a run without retries: 1 and its own row)."""
        d = self.data
        if d.attempt is None or d.origin is None:
            n = len(d.arrivals)
            return np.ones(n, dtype=np.int64), np.arange(n, dtype=np.int64)
        return d.attempt, d.origin

    def _finals(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each user request's first row, last row (its final outcome) and attempt count."""
        attempt, origin = self.attempts
        if self.data.attempt is None:
            rows = np.arange(len(attempt), dtype=np.int64)
            return rows, rows, attempt
        order = np.lexsort((attempt, origin))
        o = origin[order]
        last = np.append(o[1:] != o[:-1], True) if len(o) else np.zeros(0, dtype=bool)
        final = order[last]
        return o[last], final, attempt[final]

    def _whole(self, view: str) -> None:
        """Raise unless every row is held (``view`` needs them)."""
        if self.requests_kind != "all":
            raise ValueError(
                f"{view} needs every per-request row; this Result holds "
                f"requests={self.requests_kind!r} (run with requests='all')"
            )

    @cached_property
    def user_requests(self) -> pd.DataFrame:
        self._whole("user_requests")
        first, final, count = self._finals()
        req = self.requests
        d = self.data
        names = np.array([*self.layer_names, None], dtype=object)
        frame = pd.DataFrame(
            {
                "time_us": d.arrivals.time_us[first],
                "user": d.arrivals.user[first],
                "tier": req["tier"].to_numpy()[first],
                "attempts": count,
                "admitted": d.rejected_by[final] < 0,
                "rejected_by": pd.Series(
                    names[d.rejected_by[final].astype(np.int64)], dtype=object
                ).to_numpy(),
                "latency_us": d.decided_us[final] - d.arrivals.time_us[first],
            },
            index=pd.Index(first, name="origin"),
        )
        return frame

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        if self._aggregates is not None:
            return self._aggregates.timeseries()
        sc = self.scenario
        iv = sc.interval_us
        t = self.data.arrivals.time_us
        n_bins = max(1, -(-sc.duration_us // iv), int(t[-1] // iv) + 1 if len(t) else 0)
        b = t // iv
        cols: dict[str, Any] = {
            "arrivals": np.bincount(b, minlength=n_bins),
            "admitted": np.bincount(b, weights=self.admitted, minlength=n_bins).astype(np.int64),
        }
        rej = self.data.rejected_by
        outc = self.data.outcomes
        for pos, name in enumerate(self.layer_names):
            cols[f"rejected:{name}"] = np.bincount(b, weights=rej == pos, minlength=n_bins).astype(
                np.int64
            )
            for code, label in FAILURE_COLUMNS:
                cols[f"{label}:{name}"] = np.bincount(
                    b, weights=outc[:, pos] == code, minlength=n_bins
                ).astype(np.int64)
        for pos, name in enumerate(self.layer_names):
            rem = self.data.remaining[:, pos]
            sel = rem >= 0
            gauge = np.full(n_bins, np.nan)
            bs, vs = b[sel], rem[sel]
            if len(bs):
                last = np.flatnonzero(np.append(bs[1:] != bs[:-1], True))
                gauge[bs[last]] = vs[last]
            cols[f"remaining:{name}"] = gauge
        depth = np.zeros(n_bins, dtype=np.int64)
        if len(self.data.depth):
            db = np.minimum(self.data.depth_t_us // iv, n_bins - 1)
            np.maximum.at(depth, db, self.data.depth)
        cols["redis_queue_depth"] = depth
        frame = pd.DataFrame({"b": b, "pw": self.data.pool_wait_us, "lat": self.latency_us})
        grouped = frame.groupby("b")
        pw = grouped["pw"].quantile(0.99).reindex(range(n_bins))
        lat = grouped["lat"].quantile(np.array([0.5, 0.99, 0.999])).unstack()
        lat = lat.reindex(range(n_bins)) if len(lat) else pd.DataFrame(index=range(n_bins))
        cols["pool_wait_p99_us"] = pw.to_numpy(dtype=float)
        for q, label in ((0.5, "p50"), (0.99, "p99"), (0.999, "p999")):
            cols[f"latency_{label}_us"] = (
                lat[q].to_numpy(dtype=float) if q in lat else np.full(n_bins, np.nan)
            )
        if sc.topology.changes:  # nodes that come and go: the live count at each bin's start
            at_us, counts = sc.topology.change_tables()
            epoch = np.searchsorted(at_us, np.arange(n_bins, dtype=np.int64) * iv, side="right")
            cols["live_nodes"] = epoch_counts(sc.topology.nodes, counts)[epoch]
        if self.data.attempt is not None:  # clients that retry: the bin's arrivals that retry
            cols["retries"] = np.bincount(
                b, weights=self.data.attempt > 1, minlength=n_bins
            ).astype(np.int64)
        index = pd.Index(np.arange(n_bins) * sc.interval_s, name="time_s")
        return pd.DataFrame(cols, index=index)

    def _breaker_figures(self, pos: int) -> tuple[int, int, float]:
        """Layer ``pos``'s store breakers over every node: decisions short-circuited, openings,
        node-seconds open (:func:`ratesim.model.store_breaker.sb_open_us`)."""
        from .model.store_breaker import SB_COLS, SB_OPENS, SB_SHORT, sb_open_us

        sb = self.data.store_breakers
        if sb is None or self.scenario.policy.layers[pos].store_breaker is None:
            return 0, 0, 0.0
        decided = self.data.decided_us
        end = max(int(decided.max()) if len(decided) else 0, self.scenario.duration_us)
        rows = sb[:, pos, :]
        open_us = sum(sb_open_us(row, 0, end) for row in rows)
        assert rows.shape[1] == SB_COLS
        return int(rows[:, SB_SHORT].sum()), int(rows[:, SB_OPENS].sum()), open_us / 1e6

    def _degraded_s(self, failure_mode: np.ndarray) -> float:
        """``interval_s`` times the timeseries bins holding a ``failure_mode`` request."""
        iv = self.scenario.interval_us
        bins = np.unique(self.data.arrivals.time_us[failure_mode] // iv)
        return len(bins) * self.scenario.interval_s

    @cached_property
    def summary(self) -> pd.DataFrame:
        if self._aggregates is not None:
            return self._aggregates.summary()
        rows = []
        outc = self.data.outcomes
        for pos, layer in enumerate(self.scenario.policy.layers):
            o = outc[:, pos]
            fm_allowed = (o == FAIL_OPEN) | (o == LOCAL_ALLOWED)
            fm_denied = (o == FAIL_CLOSED) | (o == LOCAL_REJECTED)
            short, opens, open_s = self._breaker_figures(pos)
            rows.append(
                {
                    "layer": layer.name,
                    "scope": layer.scope,
                    "mode": layer.mode,
                    "algorithm": layer.algorithm.kind,
                    "reached": int((o != NOT_REACHED).sum()),
                    "allowed": int((o == ALLOWED).sum()),
                    "limited": int((o == REJECTED).sum()),
                    "rejected": int((self.data.rejected_by == pos).sum()),
                    "shadow_rejected": int((o == SHADOW_REJECTED).sum()),
                    "fail_open": int((o == FAIL_OPEN).sum()),
                    "fail_closed": int((o == FAIL_CLOSED).sum()),
                    "local_allowed": int((o == LOCAL_ALLOWED).sum()),
                    "local_rejected": int((o == LOCAL_REJECTED).sum()),
                    "local": int(((o == LOCAL_ALLOWED) | (o == LOCAL_REJECTED)).sum()),
                    "failure_mode_allowed": int(fm_allowed.sum()),
                    "failure_mode_denied": int(fm_denied.sum()),
                    "breaker_short": short,
                    "breaker_opens": opens,
                    "breaker_open_s": open_s,
                    "degraded_s": self._degraded_s(fm_allowed | fm_denied),
                }
            )
        return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)

    @cached_property
    def totals(self) -> dict[str, Any]:
        if self._aggregates is not None:
            return self._aggregates.totals()
        lat = self.latency_us
        adm = int(self.admitted.sum())
        n = len(self.data.arrivals)
        outc = self.data.outcomes
        first, final, _ = self._finals()
        users = len(first)
        user_lat = self.data.decided_us[final] - self.data.arrivals.time_us[first]
        out: dict[str, Any] = {
            "arrivals": n,
            "admitted": adm,
            "rejected": n - adm,
            "latency_p50_us": _pct(lat, 50),
            "latency_p99_us": _pct(lat, 99),
            "latency_p999_us": _pct(lat, 99.9),
            "failure_mode_allowed": int(((outc == FAIL_OPEN) | (outc == LOCAL_ALLOWED)).sum()),
            "failure_mode_denied": int(((outc == FAIL_CLOSED) | (outc == LOCAL_REJECTED)).sum()),
            "user_requests": users,
            "attempts": n,
            "retries": n - users,
            "attempts_per_request": n / users if users else float("nan"),
            "goodput": int((self.data.rejected_by[final] < 0).sum()),
            "user_latency_p50_us": _pct(user_lat, 50),
            "user_latency_p99_us": _pct(user_lat, 99),
            "user_latency_p999_us": _pct(user_lat, 99.9),
        }
        held = self.data.held_us
        if held is not None:
            out["held"] = int((held > 0).sum())
            out["held_p99_us"] = _pct(held, 99)
        return out

    # --- oracle -----------------------------------------------------------------------------

    @cached_property
    def oracle(self) -> Result | None:
        """The oracle's Result (``None`` for an oracle itself)."""
        if self._oracle_fn is None:
            return None
        self._whole("oracle")
        return Result(self.scenario, self.seed, self._oracle_fn(), engine="oracle")

    @cached_property
    def vs_oracle(self) -> pd.DataFrame:
        if self._gap_1s is not None:
            return self._gap_1s
        return self.compare_oracle(1.0)

    def compare_oracle(self, window_s: float = 1.0) -> pd.DataFrame:
        """The oracle gap with ``peak_excess`` over windows of ``window_s`` seconds."""
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s!r}")
        if self._gap_1s is not None and window_s == 1.0:
            return self._gap_1s
        oracle = self.oracle
        if oracle is None:
            raise ValueError("this Result is an oracle run; it has no oracle to compare with")
        w_us = max(1, round(window_s * 1_000_000))
        return gap_frame(self._gap(w_us), self.layer_names, self.data.arrivals.tier_names)

    def _gap(self, window_us: int) -> np.ndarray:
        """The oracle gap's numbers, a row per group (:func:`ratesim.fast.oracle_gap`)."""
        from .fast import oracle_gap

        oracle = self.oracle
        assert oracle is not None
        a = self.data.arrivals
        return oracle_gap(
            a.time_us,
            self.data.rejected_by,
            oracle.data.rejected_by,
            a.tier,
            a.abusive,
            len(self.layer_names),
            len(a.tier_names),
            window_us,
        )

    def compare_oracle_reference(self, window_s: float = 1.0) -> pd.DataFrame:
        """:meth:`compare_oracle` by masks and :func:`window_max_sum_reference`: the
        obviously-correct twin the tests hold the compiled one to."""
        oracle = self.oracle
        assert oracle is not None
        w_us = max(1, round(window_s * 1_000_000))
        sys_adm = self.admitted
        ora_adm = oracle.admitted
        over = sys_adm & ~ora_adm
        wrong = ~sys_adm & ora_adm
        d = sys_adm.astype(np.int64) - ora_adm.astype(np.int64)
        t = self.data.arrivals.time_us
        a = self.data.arrivals

        def row(group: str, key: str, mask: np.ndarray) -> dict[str, Any]:
            return {
                "group": group,
                "key": key,
                "over_admitted": int((over & mask).sum()),
                "wrongly_rejected": int((wrong & mask).sum()),
                "peak_excess": window_max_sum_reference(t[mask], d[mask], w_us),
            }

        rows = [row("total", "all", np.ones(len(a), dtype=bool))]
        for pos, name in enumerate(self.layer_names):
            at_layer = (oracle.data.rejected_by == pos) | (self.data.rejected_by == pos)
            rows.append(row("layer", name, at_layer))
        for code, tier in enumerate(a.tier_names):
            rows.append(row("tier", tier, a.tier == code))
        rows.append(row("abusive", "true", a.abusive))
        rows.append(row("abusive", "false", ~a.abusive))
        return pd.DataFrame(
            rows, columns=["group", "key", "over_admitted", "wrongly_rejected", "peak_excess"]
        )

    def peak_excess(self, window_s: float = 1.0) -> int:
        """Largest excess of system over oracle admissions in any window of ``window_s``."""
        df = self.compare_oracle(window_s)
        return int(df.loc[df["group"] == "total", "peak_excess"].iloc[0])
