"""A limiter policy as data: ordered layers, each an algorithm on keyed state.

A :class:`PolicySpec` is an ordered list of :class:`LayerSpec`. Each layer names an algorithm
(``{kind: gcra | token_bucket | sliding_log | sliding_counter | fixed_window | bucketed_window |
double_buffered | nginx_leaky | calendar_window | counting_fixed_window | warm_up |
reserve_bucket | pacer, ...params}``), a scope (``node``: in-process state per gateway node;
``global``: one state in the Redis model), a key template (``"{user}"``, ``"{route}"``,
``"{tier}:{user}"``, ``"*"``), per-tier parameter overrides, a mode (``enforce`` rejects;
``shadow`` only counts what it would reject), and for global layers a decision timeout, a
failure mode (``open`` / ``closed`` / ``local``), the local fallback's share of the global limit,
the time source (``client``: the node's clock reading; ``redis``: the Redis server's clock) and
an optional ``store_breaker`` (:class:`StoreBreakerSpec`: after ``failures`` consecutive errors
or timeouts of its Redis calls a node stops calling for ``cooldown_ms`` and takes the failure
mode at once).

The order of the layers is the degradation order: a request rejected by an enforce layer is not
seen by later layers. A layer with ``routes`` set only sees requests on those routes.

This module never re-implements an algorithm: :meth:`AlgorithmSpec.build` returns the real
:mod:`ratesim.algorithms` object, whose kernel the engine runs. All durations in the specs are
seconds or milliseconds (named ``*_s`` / ``*_ms``); the built algorithms work in integer µs.
"""

from __future__ import annotations

import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .algorithms import (
    GCRA,
    Algorithm,
    BucketedWindow,
    CalendarWindow,
    CircuitBreaker,
    ConcurrencyLimit,
    CountingFixedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    NginxLeakyBucket,
    ReserveTokenBucket,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
    UniformPacer,
    WarmUpBucket,
)
from .bounds import (
    MAX_BUCKETS,
    MAX_LAYERS,
    MAX_LIMIT,
    MAX_NAME_CHARS,
    DelayMs,
    DelayS,
    Text,
)
from .model.topology import FOLLOW_CONTINUOUS_UNIT
from .traffic.specs import MAX_ROUTES, MAX_TIERS

KEY_FIELDS = ("user", "tier", "route")

#: A count a kernel compares with a sum: below 2**52 (see :mod:`ratesim.bounds`).
Count = Annotated[int, Field(lt=MAX_LIMIT)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _AlgBase(_Spec):
    """Shared behaviour of the algorithm specs: build, override, scale."""

    def build(self) -> Any:
        """The :mod:`ratesim.algorithms` object these parameters describe."""
        raise NotImplementedError

    def scaled(self, factor: float) -> _AlgBase:
        """The same algorithm with its rate and capacity multiplied by ``factor`` (> 0).

        Used for the ``local`` failure mode (a node's share of a global limit) and for
        built-in scenario scaling. Counts are rounded and kept >= 1 (bursts >= 0).
        """
        raise NotImplementedError

    def with_overrides(self, overrides: dict[str, Any]) -> _AlgBase:
        """A validated copy with ``overrides`` applied (``kind`` may not change)."""
        if "kind" in overrides and overrides["kind"] != getattr(self, "kind", None):
            raise ValueError(f"a tier override cannot change the algorithm kind: {overrides!r}")
        data = self.model_dump()
        data.update(overrides)
        return type(self).model_validate(data)


def _scale_count(n: int, factor: float, minimum: int = 1) -> int:
    return max(minimum, round(n * factor))


class GcraSpec(_AlgBase):
    """GCRA / ``CL.THROTTLE``: ``max_burst + 1`` at once, ``count_per_period`` per ``period_s``."""

    kind: Literal["gcra"] = "gcra"
    max_burst: Annotated[Count, Field(ge=0)]
    count_per_period: Annotated[Count, Field(ge=1)]
    period_s: Annotated[float, Field(gt=0)] = 1.0

    def build(self) -> Algorithm:
        return GCRA(self.max_burst, self.count_per_period, self.period_s)

    def scaled(self, factor: float) -> GcraSpec:
        return self.model_copy(
            update={
                "max_burst": _scale_count(self.max_burst, factor, 0),
                "count_per_period": _scale_count(self.count_per_period, factor),
            }
        )


class TokenBucketSpec(_AlgBase):
    """Token bucket (x/time/rate): ``rate`` tokens per second, capacity ``burst``."""

    kind: Literal["token_bucket"] = "token_bucket"
    rate: Annotated[float, Field(gt=0, le=1e12)]
    burst: Annotated[Count, Field(ge=1)]
    refill: Literal["continuous", "ticker"] = "continuous"
    fill_interval_s: Annotated[float, Field(gt=0)] | None = None

    def build(self) -> Algorithm:
        return TokenBucket(
            self.rate, self.burst, refill=self.refill, fill_interval_s=self.fill_interval_s
        )

    def scaled(self, factor: float) -> TokenBucketSpec:
        return self.model_copy(
            update={"rate": self.rate * factor, "burst": _scale_count(self.burst, factor)}
        )


class _WindowSpec(_AlgBase):
    limit: Annotated[Count, Field(ge=1)]
    window_s: Annotated[float, Field(gt=0)]

    def scaled(self, factor: float) -> _WindowSpec:
        return self.model_copy(update={"limit": _scale_count(self.limit, factor)})


class SlidingLogSpec(_WindowSpec):
    """Exact sliding log (the seed's sorted set): at most ``limit`` per ``window_s``."""

    kind: Literal["sliding_log"] = "sliding_log"

    def build(self) -> Algorithm:
        return SlidingWindowLog(self.limit, self.window_s)


class SlidingCounterSpec(_WindowSpec):
    """Cloudflare's two-counter sliding-window estimate."""

    kind: Literal["sliding_counter"] = "sliding_counter"

    def build(self) -> Algorithm:
        return SlidingWindowCounter(self.limit, self.window_s)


class FixedWindowSpec(_WindowSpec):
    """Epoch-aligned fixed window (Envoy ratelimit)."""

    kind: Literal["fixed_window"] = "fixed_window"

    def build(self) -> Algorithm:
        return FixedWindow(self.limit, self.window_s)


class BucketedWindowSpec(_WindowSpec):
    """Sentinel's LeapArray: ``buckets`` sub-windows over ``window_s``."""

    kind: Literal["bucketed_window"] = "bucketed_window"
    buckets: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] = 10

    def build(self) -> Algorithm:
        return BucketedWindow(self.limit, self.window_s, self.buckets)


class DoubleBufferedSpec(_WindowSpec):
    """The seed's active/pending buffers, swapped every ``swap_interval_s``."""

    kind: Literal["double_buffered"] = "double_buffered"
    buckets: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] = 10
    swap_interval_s: Annotated[float, Field(gt=0)] = 0.1

    def build(self) -> Algorithm:
        return DoubleBufferedWindow(self.limit, self.window_s, self.buckets, self.swap_interval_s)


# -- the gateway algorithms of the importers (ratesim.importers; issue 12) ---------------------


class NginxLeakySpec(_AlgBase):
    """nginx ``limit_req``: ``rate`` r/s or r/m (``unit``), ``burst``, ``nodelay`` / ``delay``.

    An idle key admits ``burst + 1`` at once; without ``nodelay`` the admitted excess beyond
    ``delay`` is held (shaping: see :mod:`ratesim.algorithms.shaping`)."""

    kind: Literal["nginx_leaky"] = "nginx_leaky"
    rate: Annotated[int, Field(ge=1)]
    unit: Literal["s", "m"] = "s"
    burst: Annotated[int, Field(ge=0)] = 0
    nodelay: bool = False
    delay: Annotated[int, Field(ge=0)] = 0

    def build(self) -> Algorithm:
        return NginxLeakyBucket(self.rate, self.unit, self.burst, self.nodelay, self.delay)

    def scaled(self, factor: float) -> NginxLeakySpec:
        return self.model_copy(
            update={
                "rate": _scale_count(self.rate, factor),
                "burst": _scale_count(self.burst, factor, 0),
                "delay": min(
                    _scale_count(self.delay, factor, 0), _scale_count(self.burst, factor, 0)
                ),
            }
        )


class CalendarWindowSpec(_AlgBase):
    """Kong ``rate-limiting``: ``limit`` per UTC calendar ``unit`` (second .. year);
    ``count_rejected`` for Kong's ``redis`` policy with ``sync_rate: -1``."""

    kind: Literal["calendar_window"] = "calendar_window"
    limit: Annotated[int, Field(ge=1)]
    unit: Literal["second", "minute", "hour", "day", "week", "month", "year"]
    count_rejected: bool = False

    def build(self) -> Algorithm:
        return CalendarWindow(self.limit, self.unit, self.count_rejected)

    def scaled(self, factor: float) -> CalendarWindowSpec:
        return self.model_copy(update={"limit": _scale_count(self.limit, factor)})


class CountingFixedWindowSpec(_WindowSpec):
    """Envoy ratelimit: epoch-aligned fixed windows where rejected hits count too."""

    kind: Literal["counting_fixed_window"] = "counting_fixed_window"

    def build(self) -> Algorithm:
        return CountingFixedWindow(self.limit, self.window_s)


class WarmUpSpec(_AlgBase):
    """Sentinel warm-up (``controlBehavior: 1``): ``count`` QPS once warm, ``count /
    cold_factor`` when cold, over ``warm_up_s``."""

    kind: Literal["warm_up"] = "warm_up"
    count: Annotated[int, Field(ge=1)]
    warm_up_s: Annotated[int, Field(ge=1)] = 10
    cold_factor: Annotated[int, Field(ge=2)] = 3

    def build(self) -> Algorithm:
        return WarmUpBucket(self.count, self.warm_up_s, self.cold_factor)

    def scaled(self, factor: float) -> WarmUpSpec:
        return self.model_copy(update={"count": _scale_count(self.count, factor)})


class ReserveBucketSpec(_AlgBase):
    """Traefik ``RateLimit``: an x/time/rate bucket (``rate`` /s, ``burst``) whose requests are
    held up to ``max_delay_s`` instead of rejected (shaping)."""

    kind: Literal["reserve_bucket"] = "reserve_bucket"
    rate: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)] = 1
    max_delay_s: Annotated[float, Field(ge=0)]

    def build(self) -> Algorithm:
        return ReserveTokenBucket(self.rate, self.burst, self.max_delay_s)

    def scaled(self, factor: float) -> ReserveBucketSpec:
        return self.model_copy(
            update={"rate": self.rate * factor, "burst": _scale_count(self.burst, factor)}
        )


class PacerSpec(_AlgBase):
    """Sentinel throttling (``controlBehavior: 2``): ``count`` per second, evenly spaced, a
    request queued at most ``max_queue_ms`` (shaping) or rejected."""

    kind: Literal["pacer"] = "pacer"
    count: Annotated[int, Field(ge=1)]
    max_queue_ms: Annotated[int, Field(ge=0)] = 500
    resolution_us: Literal[1, 1000] = 1000

    def build(self) -> Algorithm:
        return UniformPacer(self.count, self.max_queue_ms, self.resolution_us)

    def scaled(self, factor: float) -> PacerSpec:
        return self.model_copy(update={"count": _scale_count(self.count, factor)})


class ConcurrencySpec(_AlgBase):
    """At most ``max_in_flight`` requests in the backend at once (per node and key); others
    wait FIFO up to ``max_wait_s`` (0: rejected at once). Needs a scenario ``backend``: a slot
    is held from admission by this layer until the backend completes the request."""

    kind: Literal["concurrency"] = "concurrency"
    max_in_flight: Annotated[Count, Field(ge=1)]
    max_wait_s: Annotated[DelayS, Field(ge=0)] = 0.0
    max_queue: Annotated[Count, Field(ge=0)] | None = None

    def build(self) -> ConcurrencyLimit:
        return ConcurrencyLimit(self.max_in_flight, self.max_wait_s, self.max_queue)

    def scaled(self, factor: float) -> ConcurrencySpec:
        return self.model_copy(update={"max_in_flight": _scale_count(self.max_in_flight, factor)})


class BreakerSpec(_AlgBase):
    """Sentinel 1.8 circuit breaker on the backend's completions (per node and key): slow-call
    ratio (``rt > max_rt_s``) or error ratio / count over ``stat_interval_s``, OPEN for
    ``open_s``, then one probe. Needs a scenario ``backend``."""

    kind: Literal["circuit_breaker"] = "circuit_breaker"
    grade: Literal["slow_ratio", "error_ratio", "error_count"] = "slow_ratio"
    threshold: Annotated[float, Field(ge=0)]
    max_rt_s: Annotated[float, Field(gt=0)] | None = None
    min_requests: Annotated[Count, Field(ge=1)] = 5
    stat_interval_s: Annotated[float, Field(gt=0)] = 1.0
    open_s: Annotated[float, Field(gt=0)] = 10.0

    def build(self) -> CircuitBreaker:
        return CircuitBreaker(
            grade=self.grade,
            threshold=self.threshold,
            max_rt_s=self.max_rt_s,
            min_requests=self.min_requests,
            stat_interval_s=self.stat_interval_s,
            open_s=self.open_s,
        )

    def scaled(self, factor: float) -> BreakerSpec:
        return self  # a ratio threshold does not scale with traffic


#: Layer kinds that act on backend completions rather than on a rate.
BACKEND_KINDS = ("concurrency", "circuit_breaker")

AlgorithmSpec = Annotated[
    GcraSpec
    | TokenBucketSpec
    | SlidingLogSpec
    | SlidingCounterSpec
    | FixedWindowSpec
    | BucketedWindowSpec
    | DoubleBufferedSpec
    | NginxLeakySpec
    | CalendarWindowSpec
    | CountingFixedWindowSpec
    | WarmUpSpec
    | ReserveBucketSpec
    | PacerSpec
    | ConcurrencySpec
    | BreakerSpec,
    Field(discriminator="kind"),
]


def key_fields(template: str) -> tuple[str, ...]:
    """The request attributes a key template uses, in ``KEY_FIELDS`` order.

    ``"*"`` (one key for everything) uses none. Raises ``ValueError`` naming the template for an
    unknown field, a format spec, or an empty template.
    """
    if template == "*":
        return ()
    if not template:
        raise ValueError("key template must not be empty (use '*' for one shared key)")
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"key template {template!r} is malformed: {exc}") from None
    for _literal, field, spec, conv in parsed:
        if field is None:
            continue
        if field not in KEY_FIELDS or spec or conv:
            raise ValueError(
                f"key template {template!r}: unknown field {{{field}}}; "
                f"use {{user}}, {{tier}}, {{route}} or '*'"
            )
        used.add(field)
    return tuple(f for f in KEY_FIELDS if f in used)


def render_key(template: str, user: int | str, tier: str, route: str) -> str:
    """The key string of one request (``"*"`` stays ``"*"``)."""
    if template == "*":
        return "*"
    return template.format(user=user, tier=tier, route=route)


class StoreBreakerSpec(_Spec):
    """A circuit breaker on a global layer's store path (envoyproxy/ratelimit#978), one per
    gateway node (each node has its own Redis client).

    After ``failures`` consecutive errors or timeouts of the layer's calls, the node stops
    calling Redis for ``cooldown_ms`` (its decisions take the layer's failure mode at once);
    then one call is let through as a probe (the others keep taking the failure mode while it
    is in flight): an answer closes the breaker, a failure opens it for another cooldown. The
    arithmetic is :mod:`ratesim.model.store_breaker`.
    """

    failures: Annotated[int, Field(ge=1, le=1_000_000)]
    cooldown_ms: Annotated[DelayMs, Field(gt=0)]

    @property
    def cooldown_us(self) -> int:
        """The cooldown in integer µs (at least 1)."""
        return max(1, round(self.cooldown_ms * 1000))


class LayerSpec(_Spec):
    """One layer of a policy (see the module docstring for the fields' meaning).

    ``timeout_ms`` bounds the wait for a global layer's reply (the command may still execute on
    the server after the caller gave up). ``local_share`` is the fraction of the global limit a
    node's fallback limiter gets under ``failure_mode="local"`` (``None``: ``1 / nodes``); on a
    node-scoped token bucket, ``local_share: follow`` shares its refill over the live nodes as
    Envoy's ``local_cluster_rate_limit`` does (``ceil(tokens_per_fill / members)`` each, see
    :func:`ratesim.model.topology.follow_params`), following ``topology.changes``.
    ``drift_guard_ms`` (client time only) makes the server refuse a call whose client timestamp
    differs from the Redis clock by more than this (the seed's error -3), which then goes to the
    failure mode.
    """

    name: Annotated[Text, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    algorithm: AlgorithmSpec
    scope: Literal["node", "global"] = "node"
    key: Annotated[Text, Field(max_length=1000)] = "{user}"
    tiers: dict[Text, dict[str, Any]] = Field(default_factory=dict, max_length=MAX_TIERS)
    routes: Annotated[list[Text], Field(max_length=MAX_ROUTES)] | None = None
    mode: Literal["enforce", "shadow"] = "enforce"
    timeout_ms: Annotated[DelayMs, Field(gt=0)] = 100.0
    failure_mode: Literal["open", "closed", "local"] = "open"
    local_share: Annotated[float, Field(gt=0, le=1)] | Literal["follow"] | None = None
    time_source: Literal["client", "redis"] = "client"
    drift_guard_ms: Annotated[DelayMs, Field(gt=0)] | None = None
    store_breaker: StoreBreakerSpec | None = None

    @field_validator("key")
    @classmethod
    def _check_key(cls, v: str) -> str:
        key_fields(v)
        return v

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if ":" in v or v != v.strip():
            raise ValueError(f"layer name {v!r} must not contain ':' or surrounding spaces")
        return v

    @model_validator(mode="after")
    def _check_backend_kinds(self) -> LayerSpec:
        if self.algorithm.kind in BACKEND_KINDS and (
            self.scope != "node" or self.mode != "enforce"
        ):
            raise ValueError(
                f"a {self.algorithm.kind} layer must have scope 'node' and mode 'enforce' "
                f"(it holds requests until the backend completes them), got scope "
                f"{self.scope!r}, mode {self.mode!r}"
            )
        return self

    @model_validator(mode="after")
    def _check_follow(self) -> LayerSpec:
        if self.local_share != "follow":
            return self
        if self.scope != "node" or self.algorithm.kind != "token_bucket":
            raise ValueError(
                "local_share: 'follow' (Envoy's local_cluster_rate_limit) shares a node-scoped "
                f"token_bucket's refill over the nodes; this layer is a {self.scope} "
                f"{self.algorithm.kind}"
            )
        for tier in ["", *self.tiers]:
            alg = self.algorithm_for(tier)
            assert isinstance(alg, TokenBucketSpec)
            label = f"tiers.{tier}" if tier else "algorithm"
            if alg.refill == "continuous" and alg.rate != int(alg.rate):
                raise ValueError(
                    f"local_share: 'follow' on a continuous bucket shares whole tokens per "
                    f"second; {label}.rate is {alg.rate:g} (use a whole number, or refill: "
                    "ticker with fill_interval_s)"
                )
            if alg.refill == "continuous" and alg.burst * FOLLOW_CONTINUOUS_UNIT >= 2**53:
                raise ValueError(f"local_share: 'follow': {label}.burst is too large")
        return self

    @model_validator(mode="after")
    def _check_store_breaker(self) -> LayerSpec:
        if self.store_breaker is not None and self.scope != "global":
            raise ValueError(
                "store_breaker: only a global layer calls the store (this layer has scope "
                f"{self.scope!r})"
            )
        return self

    @model_validator(mode="after")
    def _check_tiers(self) -> LayerSpec:
        try:
            self.algorithm.build()
        except ValueError as exc:
            # The schema bounds each field; the algorithm checks what fields do together
            # (a tolerance, a state size per key, a bucket ring's sums), naming the parameter.
            raise ValueError(f"algorithm: {exc}") from None
        for tier, overrides in self.tiers.items():
            try:
                self.algorithm.with_overrides(overrides).build()
            except ValueError as exc:
                text = str(exc)
                if len(text) > 500:  # a pydantic error quoting a huge value
                    text = text[:500] + "..."
                shown = repr(overrides)
                shown = shown if len(shown) <= 200 else shown[:200] + "...}"
                raise ValueError(f"tiers.{tier}: invalid override {shown}: {text}") from None
        return self

    def algorithm_for(self, tier: str) -> _AlgBase:
        """The algorithm spec that applies to requests of ``tier``."""
        overrides = self.tiers.get(tier)
        return self.algorithm if overrides is None else self.algorithm.with_overrides(overrides)

    def scaled(self, factor: float) -> LayerSpec:
        """This layer with every tier's rate and capacity multiplied by ``factor``."""
        tiers = {
            t: self.algorithm_for(t).scaled(factor).model_dump(exclude={"kind"}) for t in self.tiers
        }
        return self.model_copy(update={"algorithm": self.algorithm.scaled(factor), "tiers": tiers})


class PolicySpec(_Spec):
    """Ordered layers; names must be unique (they name result columns)."""

    layers: list[LayerSpec] = Field(default_factory=list, max_length=MAX_LAYERS)

    @field_validator("layers")
    @classmethod
    def _unique_names(cls, v: list[LayerSpec]) -> list[LayerSpec]:
        seen: set[str] = set()
        for layer in v:
            if layer.name in seen:
                raise ValueError(f"duplicate layer name {layer.name!r}")
            seen.add(layer.name)
        return v

    def layer(self, name: str) -> LayerSpec:
        """The layer called ``name`` (``KeyError`` if absent)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def build_tier_algorithms(layer: LayerSpec, tier_names: tuple[str, ...]) -> list[Any]:
    """One built algorithm per tier code (index = code into ``tier_names``).

    Tiers without an override share one object (same parameters, same state layout).
    """
    base = layer.algorithm.build()
    return [base if t not in layer.tiers else layer.algorithm_for(t).build() for t in tier_names]


def build_local_algorithms(
    layer: LayerSpec, tier_names: tuple[str, ...], nodes: int
) -> list[Algorithm]:
    """The node-local fallback limiters of a ``failure_mode="local"`` layer, one per tier code.

    Each is the tier's algorithm scaled by ``local_share`` (default ``1 / nodes``).
    """
    share = 1.0 / nodes if layer.local_share in (None, "follow") else float(layer.local_share)
    return [layer.algorithm_for(t).scaled(share).build() for t in tier_names]


def state_key_fields(layer: LayerSpec) -> tuple[str, ...]:
    """The request attributes that select a layer's state, in ``KEY_FIELDS`` order.

    The key template's fields, plus ``tier`` when the layer has per-tier overrides: each tier's
    parameters get their own state, as if the tier were part of the key (the engine's
    ``key_ids`` and :func:`ratesim.replay` both follow this).
    """
    fields = set(key_fields(layer.key))
    if layer.tiers:
        fields.add("tier")
    return tuple(f for f in KEY_FIELDS if f in fields)


def request_fields(layer: LayerSpec) -> tuple[str, ...]:
    """Every request attribute ``layer`` reads: its state key fields, plus ``route`` when a
    ``routes`` filter decides which requests it sees (``KEY_FIELDS`` order)."""
    fields = set(state_key_fields(layer))
    if layer.routes is not None:
        fields.add("route")
    return tuple(f for f in KEY_FIELDS if f in fields)


def layer_applies(layer: LayerSpec, route: str) -> bool:
    """Whether ``layer`` sees a request on ``route`` (always, without a ``routes`` filter)."""
    return layer.routes is None or route in layer.routes


def state_key(layer: LayerSpec, user: int | str, tier: str, route: str) -> str:
    """The name of the state one request uses in ``layer``, distinct across layers.

    ``"<layer name>:<rendered key>"`` (``"*"`` renders as ``*``), with ``":<tier>"`` appended
    when the tier selects state (:func:`state_key_fields`) but the template lacks ``{tier}``.
    Layer names hold no ``':'``, so two layers never share a state key.
    """
    rendered = render_key(layer.key, user, tier, route)
    if layer.tiers and "tier" not in key_fields(layer.key):
        rendered = f"{rendered}:{tier}"
    return f"{layer.name}:{rendered}"
