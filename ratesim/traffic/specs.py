"""Traffic and population specifications: plain data, validated by pydantic v2.

Rates are in requests per second (``*_per_s``), durations and instants in seconds (``*_s``)
from the start of the run. Bad values raise ``pydantic.ValidationError`` whose ``loc`` is the
field path (``("segments",)``, ``("tiers", "gold")``, ``("amplitude",)`` ...); inside a scenario
the path is prefixed by the scenario's field (``traffic.piecewise.segments``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationInfo, field_validator

from ..bounds import MAX_COST, MAX_FACTOR, MAX_LIST, MAX_RATE_PER_S, MAX_USERS, RunS, Text

#: Tier codes are ``int8`` and route codes ``int16`` in :class:`~ratesim.traffic.Arrivals`.
MAX_TIERS = 127
MAX_ROUTES = 32767
#: How far the tier shares may stray from summing to one.
SHARE_TOLERANCE = 1e-9

#: Bounds (see :mod:`ratesim.bounds`): rates up to 1e12 /s, instants and spans up to 1e7 s.
Rate = Annotated[float, Field(ge=0, le=MAX_RATE_PER_S, allow_inf_nan=False)]
Seconds = Annotated[RunS, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[RunS, Field(gt=0, allow_inf_nan=False)]
#: Most segments of a piecewise rate.
MAX_SEGMENTS = 100_000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class PoissonTraffic(_Spec):
    """Homogeneous Poisson arrivals at ``rate_per_s`` for the whole run."""

    kind: Literal["poisson"] = "poisson"
    rate_per_s: Rate


class RateSegment(_Spec):
    """Constant ``rate_per_s`` from the previous segment's end (or 0) until ``until_s``."""

    until_s: PositiveSeconds
    rate_per_s: Rate


class PiecewiseTraffic(_Spec):
    """Piecewise-constant Poisson rate; no arrivals after the last segment's ``until_s``."""

    kind: Literal["piecewise"] = "piecewise"
    segments: list[RateSegment] = Field(min_length=1, max_length=MAX_SEGMENTS)

    @field_validator("segments")
    @classmethod
    def _increasing(cls, segments: list[RateSegment]) -> list[RateSegment]:
        for i in range(1, len(segments)):
            prev, cur = segments[i - 1].until_s, segments[i].until_s
            if cur <= prev:
                raise ValueError(
                    f"segments[{i}].until_s = {cur} must be greater than "
                    f"segments[{i - 1}].until_s = {prev} (segments must increase)"
                )
        return segments


class FlashCrowdTraffic(_Spec):
    """Base rate, then a linear ramp to ``peak_factor`` x base, a plateau, a linear decay.

    The rate is ``base`` before ``start_s``; rises linearly over ``ramp_s`` to
    ``base * peak_factor``; holds for ``plateau_s``; falls linearly over ``decay_s`` back to
    ``base``, which it keeps for the rest of the run.
    """

    kind: Literal["flash_crowd"] = "flash_crowd"
    base_rate_per_s: Rate
    peak_factor: Annotated[float, Field(ge=0, le=MAX_FACTOR, allow_inf_nan=False)]
    start_s: Seconds
    ramp_s: Seconds = 0.0
    plateau_s: Seconds
    decay_s: Seconds = 0.0


class DiurnalTraffic(_Spec):
    """Sinusoidal rate ``mean * (1 + amplitude * sin(2 pi (t - phase_s) / period_s))``.

    The cycle is at its mean and rising at ``t = phase_s``, at its peak a quarter period later.
    The sinusoid is interpolated linearly between 4096 knots per period (relative rate error
    below ``3e-7 * amplitude``), which lets arrivals be drawn by exact inversion.
    """

    kind: Literal["diurnal"] = "diurnal"
    mean_rate_per_s: Rate
    amplitude: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
    period_s: PositiveSeconds
    phase_s: RunS = 0.0


class MMPPTraffic(_Spec):
    """Markov-modulated Poisson process (two states = on-off bursts).

    In state ``i`` arrivals are Poisson at ``rates_per_s[i]``; the state lasts an exponential
    time of mean ``mean_sojourn_s[i]`` and then jumps to one of the *other* states, uniformly.
    ``initial_state=None`` starts in steady state (state ``i`` with probability proportional to
    ``mean_sojourn_s[i]``), so the mean rate is the same at every instant.
    """

    kind: Literal["mmpp"] = "mmpp"
    rates_per_s: list[Rate] = Field(min_length=1, max_length=MAX_LIST)
    mean_sojourn_s: list[PositiveSeconds] = Field(min_length=1, max_length=MAX_LIST)
    initial_state: Annotated[int, Field(ge=0)] | None = None

    @field_validator("mean_sojourn_s")
    @classmethod
    def _same_length(cls, value: list[float], info: ValidationInfo) -> list[float]:
        rates = info.data.get("rates_per_s")
        if rates is not None and len(rates) != len(value):
            raise ValueError(
                f"mean_sojourn_s has {len(value)} entries but rates_per_s has {len(rates)}"
            )
        return value

    @field_validator("initial_state")
    @classmethod
    def _known_state(cls, value: int | None, info: ValidationInfo) -> int | None:
        rates = info.data.get("rates_per_s")
        if value is not None and rates is not None and value >= len(rates):
            raise ValueError(f"initial_state = {value} but there are only {len(rates)} states")
        return value


class TraceTraffic(_Spec):
    """Replay of a recorded trace (CSV or Parquet), see :func:`ratesim.traffic.read_trace`.

    ``time_unit`` is the unit of the ``time`` column. ``jitter`` (seconds) adds a uniform
    offset in ``[0, jitter)`` to every row, drawn from the ``"trace_jitter"`` stream: set it to
    ``1.0`` for a trace with 1-s timestamps. ``relative`` makes times relative to the earliest
    row; otherwise they are taken as time since the run start and must not be negative.
    ``speedup`` (1e-6 to 1e6) divides the (jittered) trace times: 2.0 replays twice as fast. A
    relative ``path`` is taken from the scenario file's directory when the scenario is loaded
    from a file (:func:`ratesim.scenario.load_scenario` makes it absolute), else from the current
    directory.
    """

    kind: Literal["trace"] = "trace"
    path: Text = Field(min_length=1, max_length=4096)
    format: Literal["auto", "csv", "parquet"] = "auto"
    time_unit: Literal["s", "ms", "us"] = "s"
    jitter: Seconds = 0.0
    relative: bool = True
    speedup: Annotated[float, Field(ge=1e-6, le=1e6, allow_inf_nan=False)] = 1.0


TrafficSpec = Annotated[
    PoissonTraffic
    | PiecewiseTraffic
    | FlashCrowdTraffic
    | DiurnalTraffic
    | MMPPTraffic
    | TraceTraffic,
    Field(discriminator="kind"),
]

_TRAFFIC_ADAPTER: TypeAdapter[TrafficSpec] = TypeAdapter(TrafficSpec)


def parse_traffic(data: Any) -> TrafficSpec:
    """Validate a mapping (e.g. from YAML) into the right traffic model by its ``kind``."""
    return _TRAFFIC_ADAPTER.validate_python(data)


class PopulationSpec(_Spec):
    """Who sends the requests.

    User ``u`` (codes ``0 .. users-1``) has Zipf popularity weight ``(u + 1) ** -zipf_s``, so
    user 0 is the most popular. Each user's tier is drawn once from ``tiers`` (shares of
    *users*, summing to 1). ``round(abusive_share * users)`` users, chosen at random, are
    scrapers whose weight is multiplied by ``abusive_weight``. Each request's user is drawn in
    proportion to weight; its route is drawn from ``routes`` (relative weights) and its cost is
    ``route_cost.get(route, 1)``.
    """

    users: Annotated[int, Field(ge=1, le=MAX_USERS)] = 1000
    zipf_s: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] = 1.1
    tiers: dict[Text, Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"silver": 1.0}, min_length=1
    )
    routes: dict[Text, Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"/": 1.0}, min_length=1
    )
    route_cost: dict[Text, Annotated[int, Field(ge=1, le=MAX_COST)]] = Field(default_factory=dict)
    abusive_share: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    abusive_weight: Annotated[float, Field(gt=0, le=MAX_FACTOR, allow_inf_nan=False)] = 10.0

    @field_validator("tiers")
    @classmethod
    def _shares_sum_to_one(cls, tiers: dict[str, float]) -> dict[str, float]:
        if len(tiers) > MAX_TIERS:
            raise ValueError(f"at most {MAX_TIERS} tiers, got {len(tiers)}")
        total = math.fsum(tiers.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"tier shares must sum to 1 (within 1e-9), got {total!r}")
        return tiers

    @field_validator("routes")
    @classmethod
    def _some_route(cls, routes: dict[str, float]) -> dict[str, float]:
        if len(routes) > MAX_ROUTES:
            raise ValueError(f"at most {MAX_ROUTES} routes, got {len(routes)}")
        if math.fsum(routes.values()) <= 0:
            raise ValueError("route weights must not all be zero")
        return routes

    @field_validator("route_cost")
    @classmethod
    def _known_routes(cls, costs: dict[str, int], info: ValidationInfo) -> dict[str, int]:
        routes = info.data.get("routes")
        if routes is not None:
            unknown = sorted(set(costs) - set(routes))
            if unknown:
                raise ValueError(f"route_cost names routes not in routes: {unknown}")
        return costs


def scale_traffic(traffic: TrafficSpec, factor: float) -> TrafficSpec:
    """A copy of ``traffic`` with every rate multiplied by ``factor`` (> 0); the shape in time
    is unchanged. Traces cannot be scaled this way (``ValueError``): use ``speedup``."""
    if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
    if isinstance(traffic, PoissonTraffic):
        return traffic.model_copy(update={"rate_per_s": traffic.rate_per_s * factor})
    if isinstance(traffic, PiecewiseTraffic):
        segments = [
            s.model_copy(update={"rate_per_s": s.rate_per_s * factor}) for s in traffic.segments
        ]
        return traffic.model_copy(update={"segments": segments})
    if isinstance(traffic, FlashCrowdTraffic):
        return traffic.model_copy(update={"base_rate_per_s": traffic.base_rate_per_s * factor})
    if isinstance(traffic, DiurnalTraffic):
        return traffic.model_copy(update={"mean_rate_per_s": traffic.mean_rate_per_s * factor})
    if isinstance(traffic, MMPPTraffic):
        return traffic.model_copy(update={"rates_per_s": [r * factor for r in traffic.rates_per_s]})
    raise ValueError(f"cannot scale the rate of {type(traffic).__name__}; use speedup for traces")
