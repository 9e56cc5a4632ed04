"""Arrival generation, one-shot or in time chunks, with identical results.

Random draws (all from *fresh* generators of :class:`ratesim.rng.Streams`, so the arrivals
depend only on the specs, the duration and the seed, never on what else used ``streams``):

* ``"population"``: one uniform per user for the tier, then the scrapers (once, up front);
* ``"arrivals"``: standard exponentials, the gaps of a unit-rate process mapped through the
  inverse cumulative rate (an MMPP's state path comes from ``"arrivals"``' first spawned
  child, so it never interleaves with the gaps);
* ``"users"``, ``"routes"``: one uniform per request each, in time order;
* ``"trace_jitter"``: one uniform per trace row when a trace has ``jitter``.

Each stream is read in fixed blocks of ``BLOCK`` values and consumed strictly in order, and
each arrival time is an element-wise function of its own running sum, so **any** sequence of
chunk ends yields exactly the arrays of a one-shot run. Also, with the same seed, a run of
duration ``D1`` is a prefix of the run of duration ``D2 > D1``, for every kind (an MMPP path is
drawn as time advances, not for a given duration).

Times: an arrival at true time ``t`` seconds gets ``time_us = floor(t * 1e6)``, the microsecond
tick it falls in; several arrivals may share a tick (ties keep generation order).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..rng import Streams
from .arrivals import Arrivals
from .intensity import Intensity, MMPPRate, intensity_of
from .population import Population, build_population, draw_tiers, pick_by_weight
from .specs import MMPPTraffic, PopulationSpec, TraceTraffic, TrafficSpec, parse_traffic
from .trace import TraceTable, load_trace_table

#: Values drawn per call from a stream (fixed, so the draws never depend on chunking).
BLOCK = 1 << 16
#: Most arrivals transformed per inner step (bounds temporary memory on huge chunks).
MAX_BATCH = 1 << 20
_US = 1e6
_FAR_US = 9.0e18


class _Buffered:
    """A stream of values drawn ``BLOCK`` at a time and handed out strictly in order."""

    def __init__(self, draw: Callable[[int], np.ndarray]) -> None:
        self._draw = draw
        self._buf = np.zeros(0)
        self._pos = 0

    def peek(self, n: int) -> np.ndarray:
        """The next ``n`` values, without consuming them."""
        avail = len(self._buf) - self._pos
        if avail < n:
            blocks = -(-(n - avail) // BLOCK)
            fresh = [self._draw(BLOCK) for _ in range(blocks)]
            self._buf = np.concatenate([self._buf[self._pos :], *fresh])
            self._pos = 0
        return self._buf[self._pos : self._pos + n]

    def advance(self, n: int) -> None:
        """Consume ``n`` values (already peeked)."""
        self._pos += n

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` values, consumed."""
        out = self.peek(n)
        self.advance(n)
        return out


def _to_us(t_s: np.ndarray) -> np.ndarray:
    return np.floor(np.minimum(t_s * _US, _FAR_US)).astype(np.int64)


def _as_traffic(traffic: Any) -> TrafficSpec:
    return traffic if not isinstance(traffic, dict) else parse_traffic(traffic)


def _check_us(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (microseconds), got {value!r}")
    return int(value)


class ArrivalGenerator:
    """Generates the arrivals of ``[0, duration_us)`` in consecutive pieces.

    ``until(end_us)`` returns the arrivals from where the previous call stopped up to
    ``end_us`` (exclusive, capped at ``duration_us``). Whatever the sequence of ends, the
    pieces concatenate to the one-shot result. An ``end_us`` at or before the current position
    returns no arrivals and does not move the position.
    """

    def __init__(
        self,
        traffic: TrafficSpec,
        population: PopulationSpec | None,
        duration_us: int,
        streams: Streams,
    ) -> None:
        self.duration_us = _check_us("duration_us", duration_us, 0)
        if not isinstance(streams, Streams):
            raise ValueError(f"streams must be a ratesim.rng.Streams, got {streams!r}")
        self.position_us = 0
        self.traffic = _as_traffic(traffic)
        if population is None:
            population = PopulationSpec()
        elif isinstance(population, dict):
            population = PopulationSpec.model_validate(population)
        self.population = population
        self._trace: Arrivals | None = None
        if isinstance(self.traffic, TraceTraffic):
            self._trace = trace_arrivals(self.traffic, self.population, self.duration_us, streams)
            return
        self._pop: Population = build_population(self.population, streams)
        rng = streams.fresh("arrivals")
        path_rng = rng.spawn(1)[0] if isinstance(self.traffic, MMPPTraffic) else None
        self._rate: Intensity = intensity_of(self.traffic, path_rng)
        self._gaps = _Buffered(rng.standard_exponential)
        self._user_u = _Buffered(streams.fresh("users").random)
        self._route_u = _Buffered(streams.fresh("routes").random)
        self._s_last = 0.0
        self._t_last = 0

    @property
    def tier_names(self) -> tuple[str, ...]:
        """The tier code table of every piece."""
        return self._trace.tier_names if self._trace is not None else self._pop.tier_names

    @property
    def route_names(self) -> tuple[str, ...]:
        """The route code table of every piece."""
        return self._trace.route_names if self._trace is not None else self._pop.route_names

    @property
    def trace(self) -> Arrivals | None:
        """For trace traffic, every arrival of the run (the trace is read whole, up front);
        ``None`` for synthetic traffic."""
        return self._trace

    def mmpp_path(self) -> tuple[np.ndarray, np.ndarray] | None:
        """For MMPP traffic, the state path drawn so far: segment start times (s) and rates
        (per s); ``None`` for other kinds."""
        rate = getattr(self, "_rate", None)
        return rate.path if isinstance(rate, MMPPRate) else None

    def until(self, end_us: int) -> Arrivals:
        """The arrivals with ``position_us <= time_us < min(end_us, duration_us)``."""
        end = min(_check_us("end_us", end_us, 0), self.duration_us)
        start = self.position_us
        if end <= start:
            return self._empty()
        self.position_us = end
        if self._trace is not None:
            return self._trace.between(start, end)
        return self._synthetic(end)

    def _empty(self) -> Arrivals:
        if self._trace is not None:
            return self._trace.take(slice(0, 0))
        return Arrivals.empty(self._pop.tier_names, self._pop.route_names)

    def _synthetic(self, end_us: int) -> Arrivals:
        times = self._times_until(end_us)
        n = len(times)
        pop = self._pop
        user = pop.pick_users(self._user_u.take(n))
        route = pop.pick_routes(self._route_u.take(n))
        return Arrivals(
            time_us=times,
            user=user,
            tier=pop.tier[user],
            route=route,
            cost=pop.route_cost[route],
            abusive=pop.abusive[user],
            tier_names=pop.tier_names,
            route_names=pop.route_names,
        )

    def _times_until(self, end_us: int) -> np.ndarray:
        end_s = end_us / _US
        self._rate.ensure(end_s)
        out: list[np.ndarray] = []
        while True:
            expected = max(self._rate.cumulative(end_s) - self._s_last, 0.0)
            n = min(int(expected + 6.0 * math.sqrt(expected) + 64), MAX_BATCH)
            gaps = self._gaps.peek(n)
            # Sequential sums from the carried value: the same floats as a one-shot run.
            s = np.cumsum(np.concatenate(([self._s_last], gaps)))[1:]
            t_us = _to_us(self._rate.inverse(s))
            # A running maximum keeps times sorted across float rounding at segment edges.
            t_us = np.maximum.accumulate(np.concatenate(([self._t_last], t_us)))[1:]
            k = int(np.searchsorted(t_us, end_us, side="left"))
            if k:
                out.append(t_us[:k])
                self._s_last = float(s[k - 1])
                self._t_last = int(t_us[k - 1])
                self._gaps.advance(k)
            if k < n:
                break
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def generate_arrivals(
    traffic: TrafficSpec,
    population: PopulationSpec | None,
    duration_us: int,
    streams: Streams,
) -> Arrivals:
    """All arrivals of ``[0, duration_us)``; the same seed gives identical arrays, and equals
    the concatenation of :func:`iter_arrivals` for any ``chunk_us``."""
    return ArrivalGenerator(traffic, population, duration_us, streams).until(duration_us)


def iter_arrivals(
    traffic: TrafficSpec,
    population: PopulationSpec | None,
    duration_us: int,
    streams: Streams,
    chunk_us: int,
) -> Iterator[Arrivals]:
    """The arrivals in consecutive chunks ``[k * chunk_us, (k + 1) * chunk_us)`` (the last one
    cut at ``duration_us``); one chunk per interval, empty ones included, none when
    ``duration_us`` is 0. Their concatenation is identical to :func:`generate_arrivals`."""
    chunk = _check_us("chunk_us", chunk_us, 1)
    gen = ArrivalGenerator(traffic, population, duration_us, streams)
    for end in range(chunk, gen.duration_us + chunk, chunk):
        yield gen.until(min(end, gen.duration_us))


def expected_count(traffic: TrafficSpec, start_us: int, end_us: int) -> float:
    """The expected number of arrivals in ``[start_us, end_us)`` (MMPP: in steady state).

    Not defined for traces (``ValueError``)."""
    traffic = _as_traffic(traffic)
    if isinstance(traffic, TraceTraffic):
        raise ValueError("expected_count is not defined for trace traffic (kind='trace')")
    length_s = (end_us - start_us) / _US
    if isinstance(traffic, MMPPTraffic):
        rates = np.asarray(traffic.rates_per_s)
        sojourn = np.asarray(traffic.mean_sojourn_s)
        return float(np.dot(rates, sojourn) / sojourn.sum() * length_s)
    rate = intensity_of(traffic)
    return rate.cumulative(end_us / _US) - rate.cumulative(start_us / _US)


def _fill(
    table: TraceTable, spec: PopulationSpec, streams: Streams
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray, tuple[str, ...], np.ndarray]:
    """Tier, route and cost per row: from the trace, else from the population spec."""
    n = len(table)
    if table.tier is not None:
        tier, tier_names = table.tier, table.tier_names
    else:
        per_user = draw_tiers(spec, streams.fresh("population").random(len(table.user_names)))
        tier, tier_names = per_user[table.user], tuple(spec.tiers)
    if table.route is not None:
        route, route_names = table.route, table.route_names
    else:
        route_names = tuple(spec.routes)
        weights = np.fromiter(spec.routes.values(), dtype=np.float64, count=len(route_names))
        u = _Buffered(streams.fresh("routes").random).take(n)
        route = pick_by_weight(np.cumsum(weights), u).astype(np.int16)
    if table.cost is not None:
        cost = table.cost
    else:
        cost_of = np.array([spec.route_cost.get(r, 1) for r in route_names], dtype=np.int64)
        cost = cost_of[route] if n else np.zeros(0, dtype=np.int64)
    return tier, tier_names, route, route_names, cost


def trace_arrivals(
    traffic: TraceTraffic, population: PopulationSpec, duration_us: int, streams: Streams
) -> Arrivals:
    """A trace replayed as arrivals of ``[0, duration_us)``.

    Columns the trace lacks are filled from ``population``: tiers per user (drawn from
    ``"population"`` in order of first appearance), routes per request (``"routes"``), costs
    from ``route_cost``; no row is abusive unless the trace says so. Then, per row in time
    order, the jitter ``floor(u * jitter * 1e6)`` µs is added (``"trace_jitter"``), times are
    divided by ``speedup`` (floored), rows are re-sorted stably and cut at ``duration_us``.
    """
    table = load_trace_table(
        traffic.path,
        format=traffic.format,
        time_unit=traffic.time_unit,
        relative=traffic.relative,
    )
    n = len(table)
    tier, tier_names, route, route_names, cost = _fill(table, population, streams)
    time_us = table.time_us
    if traffic.jitter > 0:
        u = _Buffered(streams.fresh("trace_jitter").random).take(n)
        time_us = time_us + np.floor(u * (traffic.jitter * _US)).astype(np.int64)
    if traffic.speedup != 1.0:
        # Capped at the run's end before the cast: those rows are dropped below anyway, and a
        # slow replay of a long trace would otherwise overflow int64.
        slowed = np.minimum(time_us / traffic.speedup, float(duration_us))
        time_us = np.floor(slowed).astype(np.int64)
    order = np.argsort(time_us, kind="stable")
    keep = order[time_us[order] < duration_us]
    abusive = table.abusive if table.abusive is not None else np.zeros(n, dtype=np.bool_)
    return Arrivals(
        time_us=time_us[keep],
        user=table.user[keep],
        tier=tier[keep],
        route=route[keep],
        cost=cost[keep],
        abusive=abusive[keep],
        tier_names=tier_names,
        route_names=route_names,
        user_names=table.user_names,
    )
