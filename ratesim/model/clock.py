"""Node clocks: what a gateway node (or a Redis server) reads when the true time is ``t``.

A clock maps *true* time (integer µs from run start) to *local* time (integer µs)::

    local(t) = t + offset_us + floor(t * drift / 10^6 + slewing correction) + done corrections

* ``offset_ms`` — a constant error, rounded to the nearest microsecond.
* ``drift_ppm`` — frequency error in parts per million: after one true second a +50 ppm clock
  reads 50 µs ahead. It is held as the exact integer ``drift_ppt`` in **parts per 10^12**
  (resolution 10^-6 ppm, so the rounding error is below 0.05 µs per day), and the drift term
  is floored, computed in exact integer arithmetic (no floats at read time).
* ``steps`` — NTP corrections. A step with ``slew_s == 0`` adds its full ``by_ms`` from
  ``at_s`` on (``t >= at``, inclusive). A slew spreads ``by_ms`` linearly over
  ``[at_s, at_s + slew_s)``: at ``at + u`` it has applied ``by * u / slew`` (exactly, inside the
  common floor above), and the full amount from ``at + slew`` on. Corrections add up, whatever
  their order in the list. **At most one slew is active at any instant** (the schema refuses
  overlapping slews, naming the two steps): a real NTP daemon slews one correction at a time,
  and two active slews would need integers wider than 64 bits to floor exactly (the sum of
  three fractions over a common denominator of ~164 bits), where one needs a 128-bit
  comparison that two int64 products emulate (:func:`_mul_ge`).

Time going backwards is a normal, modelled outcome, never an exception: a negative step makes
local time jump back by ``|by_ms|`` at ``at_s`` (NTP's step mode); only ``drift_ppm <= -10^6``
is refused, because such a clock would stand still or run backwards. Local time is non-decreasing
in true time whenever no jump step is negative and the total rate ``1 + drift + the active
slew's rate`` is never negative (a single floor over all fractional terms guarantees this; a
negative slew with ``|by_ms| <= slew_s * 1000 * (1 + drift)`` is the NTP way to keep it so).

One formula: :func:`clock_read` (numba-compatible plain Python over int64 tables) is the only
implementation. ``ratesim.fast.kernels`` compiles it once; :meth:`NodeClock.read`,
:meth:`NodeClock.read_many` and the compiled runner all call that compiled copy, so Python,
numba and the parity tests agree bit for bit. Exactness: every intermediate is an int64 proven
in range for true times ``|t| < CLOCK_LIMIT_US`` (2**61 µs, about 73,000 years) and clocks
whose offset plus corrections stay below it too (the schema refuses larger ones).
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Annotated, Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numba.extending import register_jitable
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..bounds import MAX_LIST, InstantS, RunS, check_clock_shift

US_PER_S = 1_000_000
US_PER_MS = 1_000
#: Denominator of ``drift_ppt``: drift is exact in parts per 10^12.
DRIFT_DEN = 10**12
#: True times, offsets and the sum of a clock's corrections stay below this (µs) in magnitude:
#: then every int64 intermediate of :func:`clock_read` is in range (see its comments).
CLOCK_LIMIT_US = 2**61
#: ``|by_us| * slew_us`` must stay below this so slew arithmetic is exact in int64 too.
_SLEW_PRODUCT_LIMIT = 2**62
#: The ``at_us`` of an unused row of a step table (rows are sorted, so a scan stops there).
NO_STEP = 2**63 - 1


class SpecModel(BaseModel):
    """Base of every ``ratesim.model`` spec: frozen, no unknown fields, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Cached: fault windows and spikes convert their bounds on every lookup, and exact Fraction
# arithmetic costs microseconds while a cache hit costs nanoseconds.
@lru_cache(maxsize=65536)
def ms_to_us(ms: float) -> int:
    """Milliseconds (a float) to the nearest whole microsecond (exact; ties to even)."""
    return round(Fraction(ms) * US_PER_MS)


@lru_cache(maxsize=65536)
def s_to_us(seconds: float) -> int:
    """Seconds (a float) to the nearest whole microsecond (exact; ties to even)."""
    return round(Fraction(seconds) * US_PER_S)


def _check_true_us(true_us: object) -> int:
    """An integer µs timestamp (numpy integers too); floats would silently lose exactness."""
    if isinstance(true_us, int | np.integer) and not isinstance(true_us, bool):
        return int(true_us)
    raise ValueError(f"true_us must be an integer number of µs, got {true_us!r}")


class ClockStep(SpecModel):
    """One NTP correction of ``by_ms`` at true time ``at_s``; ``slew_s > 0`` spreads it linearly."""

    at_s: Annotated[InstantS, Field(ge=0.0, description="true time of the correction, s")]
    by_ms: Annotated[float, Field(description="correction, ms (negative: clock set back)")]
    slew_s: Annotated[RunS, Field(ge=0.0, description="0: jump; >0: spread over this many s")] = 0.0

    @field_validator("slew_s")
    @classmethod
    def _slew_exact(cls, v: float, info: ValidationInfo) -> float:
        by_ms = info.data.get("by_ms")
        if by_ms is not None and abs(ms_to_us(by_ms)) * s_to_us(v) >= _SLEW_PRODUCT_LIMIT:
            raise ValueError(f"by_ms * slew_s too large to model exactly ({by_ms} ms over {v} s)")
        return v


class ClockSpec(SpecModel):
    """A clock: constant ``offset_ms``, frequency error ``drift_ppm`` and NTP ``steps``."""

    offset_ms: Annotated[float, Field(description="constant offset, ms")] = 0.0
    drift_ppm: Annotated[
        float, Field(gt=-1_000_000.0, le=1_000_000.0, description="frequency error, ppm")
    ] = 0.0
    steps: list[ClockStep] = Field(default_factory=list, max_length=MAX_LIST)

    @model_validator(mode="after")
    def _bounded_shift(self) -> ClockSpec:
        # Readings must stay within +-2**52 us (see ratesim.bounds for the derivation).
        check_clock_shift("offset_ms and steps", self.offset_ms, [s.by_ms for s in self.steps])
        return self

    @model_validator(mode="after")
    def _exact_in_int64(self) -> ClockSpec:
        """One slew at a time, and magnitudes within :data:`CLOCK_LIMIT_US` (module docstring)."""
        check_steps(ms_to_us(self.offset_ms), *_split_steps(self.steps))
        return self

    @classmethod
    def perfect(cls) -> ClockSpec:
        """A clock that reads true time exactly."""
        return cls()

    @property
    def drift_ppt(self) -> int:
        """``drift_ppm`` as an exact integer in parts per 10^12 (nearest, ties to even)."""
        return round(Fraction(self.drift_ppm) * 10**6)

    @property
    def is_perfect(self) -> bool:
        """True when every reading equals true time."""
        nonzero_steps = any(ms_to_us(s.by_ms) != 0 for s in self.steps)
        return ms_to_us(self.offset_ms) == 0 and self.drift_ppt == 0 and not nonzero_steps


def _split_steps(
    steps: list[ClockStep],
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]], list[int]]:
    """``(jumps, slews, indices)``: the nonzero steps in µs, ``(at_us, by_us)`` and
    ``(at_us, by_us, length_us)``, and each slew's index in ``steps`` (for messages)."""
    jumps: list[tuple[int, int]] = []
    slews: list[tuple[int, int, int]] = []
    where: list[int] = []
    for k, step in enumerate(steps):
        at_us, by_us, slew_us = s_to_us(step.at_s), ms_to_us(step.by_ms), s_to_us(step.slew_s)
        if by_us == 0:
            continue
        if slew_us == 0:
            jumps.append((at_us, by_us))
        else:
            slews.append((at_us, by_us, slew_us))
            where.append(k)
    return jumps, slews, where


def check_steps(
    offset_us: int,
    jumps: list[tuple[int, int]],
    slews: list[tuple[int, int, int]],
    where: list[int] | None = None,
) -> None:
    """Raise ``ValueError`` unless :func:`clock_read` is exact for this clock: no two slews
    active at one instant (named by their index in ``steps``, ``where``), and ``|offset|`` plus
    every ``|by|``, and every slew's end, below :data:`CLOCK_LIMIT_US` (all µs)."""
    names = where if where is not None else list(range(len(slews)))
    order = sorted(range(len(slews)), key=lambda s: slews[s])
    for a, b in zip(order, order[1:], strict=False):
        (a_at, _, a_len), (b_at, _, _) = slews[a], slews[b]
        if b_at < a_at + a_len:
            raise ValueError(
                f"steps {names[a]} and {names[b]} slew at the same time ([{a_at / 1e6:g} s, "
                f"{(a_at + a_len) / 1e6:g} s) and from {b_at / 1e6:g} s): at most one slew may be "
                "active at an instant (NTP slews one correction at a time, and overlapping slews "
                "cannot be floored exactly in 64-bit integers)"
            )
    total = abs(offset_us) + sum(abs(by) for _, by in jumps) + sum(abs(by) for _, by, _ in slews)
    if total >= CLOCK_LIMIT_US or any(at + ln >= CLOCK_LIMIT_US for at, _, ln in slews):
        raise ValueError(
            f"offset and steps too large to model exactly (|offset| + sum |by| = {total} µs; "
            f"the limit is {CLOCK_LIMIT_US} µs)"
        )


# --- the formula: numba-compatible plain Python, compiled by ratesim.fast.kernels -------------


@register_jitable
def _mul_wide(a: int, b: int) -> tuple[int, int]:
    """``(hi, lo)`` with ``a * b = hi * 2**62 + lo`` and ``0 <= lo < 2**62``, exactly in int64,
    for ``0 <= a, b < 2**62``."""
    # halves of 31 bits: every partial product is below 2**62 and their sums below 2**63
    a1 = a >> 31
    a0 = a & 0x7FFFFFFF
    b1 = b >> 31
    b0 = b & 0x7FFFFFFF
    mid = a1 * b0 + a0 * b1  # < 2 * 2**62
    lo = a0 * b0 + ((mid & 0x7FFFFFFF) << 31)  # < 2**62 + 2**62
    hi = a1 * b1 + (mid >> 31) + (lo >> 62)
    return hi, lo & 0x3FFFFFFFFFFFFFFF


@register_jitable
def _mul_ge(a: int, b: int, c: int, d: int) -> bool:
    """``a * b >= c * d`` exactly (products up to 2**124), for ``0 <= a, b, c, d < 2**62``."""
    ah, al = _mul_wide(a, b)
    ch, cl = _mul_wide(c, d)
    return ah > ch or (ah == ch and al >= cl)


@register_jitable  # callable from other compiled code (clock_read_many) as well as from Python
def clock_read(clocks: Any, jumps: Any, slews: Any, k: int, t: int) -> int:
    """Clock ``k``'s local time (µs) at true time ``t`` (µs, ``|t| < CLOCK_LIMIT_US``).

    The tables (int64, see :func:`clock_tables`): ``clocks[k] = (offset_us, drift_ppt)``;
    ``jumps[k, j] = (at_us, by_us)`` and ``slews[k, s] = (at_us, by_us, length_us)``, each
    sorted by ``at_us``, unused rows ``at_us = NO_STEP``; at most one slew active at ``t``.
    Written for numba (``ratesim.fast.kernels.clock_read`` is this, compiled) and exact in
    int64: each comment bounds what it computes.
    """
    local = t + clocks[k, 0]
    for j in range(jumps.shape[1]):
        if t < jumps[k, j, 0]:  # sorted (unused rows last, at NO_STEP): none later applies
            break
        local += jumps[k, j, 1]
    # floor divmod of t * drift by 10^12 without the product: both factors split in base 10^6
    # (|t| < 2**61 so |a| < 2.4e12; |drift| <= 10^12 so |c| <= 10^6 and 0 <= b, d < 10^6: every
    # partial product is below 2.4e18 < 2**63)
    n = clocks[k, 1]
    a = t // 1_000_000
    b = t - a * 1_000_000
    c = n // 1_000_000
    d = n - c * 1_000_000
    m = a * d + b * c
    m1 = m // 1_000_000
    rem = (m - m1 * 1_000_000) * 1_000_000 + b * d  # in [0, 2 * 10^12)
    q = a * c + m1
    if rem >= DRIFT_DEN:
        q += 1
        rem -= DRIFT_DEN
    # completed slews add their whole amount; the active one (at most one) its share, which
    # shares the drift's floor: floor(rem / 10^12 + s_rem / length) is 0 or 1
    s_len = 0
    s_rem = 0
    for s in range(slews.shape[1]):
        at = slews[k, s, 0]
        if t < at:  # sorted by start (unused rows last): none later has begun
            break
        length = slews[k, s, 2]
        if t >= at + length:  # at + length < 2**61 (the schema)
            local += slews[k, s, 1]
        else:
            # |by| * (t - at) < |by| * length < 2**62 (the schema)
            prod = slews[k, s, 1] * (t - at)
            sq = prod // length
            local += sq
            s_rem = prod - sq * length  # in [0, length)
            s_len = length
    if s_len and _mul_ge(rem, s_len, s_len - s_rem, DRIFT_DEN):
        q += 1  # rem * length + s_rem * 10^12 >= 10^12 * length: the fractions reach 1
    return local + q


def clock_read_many(clocks: Any, jumps: Any, slews: Any, k: int, ts: Any, out: Any) -> None:
    """``out[i] = clock_read(clocks, jumps, slews, k, ts[i])`` over 1-d int64 arrays."""
    for i in range(ts.shape[0]):
        out[i] = clock_read(clocks, jumps, slews, k, ts[i])


def clock_read_nodes(clocks: Any, jumps: Any, slews: Any, node: Any, ts: Any, out: Any) -> None:
    """``out[i] = clock_read(clocks, jumps, slews, node[i], ts[i])``: each request's arrival
    read on its own node's clock (the tables of every node, :func:`clock_tables`), in one
    pass over 1-d arrays (no mask and no gather per node)."""
    for i in range(ts.shape[0]):
        out[i] = clock_read(clocks, jumps, slews, node[i], ts[i])


class ClockTables(NamedTuple):
    """The int64 tables :func:`clock_read` reads, for clocks ``0 .. K-1`` (µs, parts per 10^12)."""

    clocks: npt.NDArray[np.int64]  # (K, 2): offset_us, drift_ppt
    jumps: npt.NDArray[np.int64]  # (K, J, 2): at_us, by_us (sorted; unused rows at NO_STEP)
    slews: npt.NDArray[np.int64]  # (K, S, 3): at_us, by_us, length_us (sorted; same)


def clock_tables(clocks: list[NodeClock]) -> ClockTables:
    """The tables of ``clocks`` (clock ``k`` is row ``k``), padded to the longest step lists."""
    n_j = max((len(c.jumps) for c in clocks), default=0) + 1
    n_s = max((len(c.slews) for c in clocks), default=0) + 1
    table = np.zeros((len(clocks), 2), dtype=np.int64)
    jumps = np.zeros((len(clocks), n_j, 2), dtype=np.int64)
    slews = np.ones((len(clocks), n_s, 3), dtype=np.int64)
    jumps[:, :, 0] = NO_STEP
    slews[:, :, 0] = NO_STEP
    for k, clock in enumerate(clocks):
        table[k] = (clock.offset_us, clock.drift_ppt)
        for j, jump in enumerate(clock.jumps):
            jumps[k, j] = jump
        for s, slew in enumerate(clock.slews):
            slews[k, s] = slew
    return ClockTables(table, jumps, slews)


def _compiled() -> Any:
    """``ratesim.fast.kernels``, where :func:`clock_read` is compiled (imported on first use:
    it imports this module)."""
    global _KERNELS
    if _KERNELS is None:
        from ..fast import kernels

        _KERNELS = kernels
    return _KERNELS


_KERNELS: Any = None


def check_clock_range(t_min: int, t_max: int) -> None:
    """Refuse true times outside the range :func:`clock_read` is exact in (µs)."""
    if t_min <= -CLOCK_LIMIT_US or t_max >= CLOCK_LIMIT_US:
        raise ValueError(
            f"true_us out of the exact range (|t| < {CLOCK_LIMIT_US} µs): {t_min} .. {t_max}"
        )


class NodeClock:
    """Reads a :class:`ClockSpec` at true times; pure and deterministic.

    ``read(true_us) -> int`` and ``read_many(true_us) -> ndarray[int64]`` (identical values),
    both the compiled :func:`clock_read`. ``extra_jumps``: more ``(at_us, by_us)`` jump steps
    on top of the spec's (a Redis failover's clock step: :func:`redis_clock`).
    """

    def __init__(
        self, spec: ClockSpec | None = None, extra_jumps: tuple[tuple[int, int], ...] = ()
    ) -> None:
        self.spec = spec if spec is not None else ClockSpec.perfect()
        self.offset_us = ms_to_us(self.spec.offset_ms)
        self.drift_ppt = self.spec.drift_ppt
        jumps, slews, where = _split_steps(self.spec.steps)
        jumps += [(at, by) for at, by in extra_jumps if by]
        check_steps(self.offset_us, jumps, slews, where)
        self.jumps: tuple[tuple[int, int], ...] = tuple(sorted(jumps))
        #: ``(start_us, by_us, length_us)`` per slew.
        self.slews: tuple[tuple[int, int, int], ...] = tuple(sorted(slews))
        self.tables = clock_tables([self])

    def __repr__(self) -> str:
        return f"NodeClock({self.spec!r})"

    @property
    def is_perfect(self) -> bool:
        """True when every reading equals true time."""
        return not (self.offset_us or self.drift_ppt or self.jumps or self.slews)

    def read(self, true_us: int | np.integer[Any]) -> int:
        """Local time in µs at true time ``true_us`` (µs); see the module docstring."""
        t = _check_true_us(true_us)
        check_clock_range(t, t)
        return int(_compiled().clock_read(*self.tables, 0, t))

    def read_many(self, true_us: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`read` over an array of true times (µs); same shape, int64."""
        t = np.asarray(true_us)
        if t.size and not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"true_us must be an integer array of µs, got dtype {t.dtype}")
        flat = np.ascontiguousarray(t.astype(np.int64).reshape(-1))
        out = np.empty_like(flat)
        if flat.size:
            check_clock_range(int(flat.min()), int(flat.max()))
            _compiled().clock_read_many(*self.tables, 0, flat, out)
        return out.reshape(t.shape)


def redis_clock(redis_spec: Any) -> NodeClock:
    """The Redis server's clock of ``redis_spec`` (a ``RedisSpec``, or ``None``: perfect), each
    failover's ``clock_step_ms`` folded in as a jump at its instant, rounded as
    ``round(clock_step_ms * 1000)`` µs (the event engine's own stepping, bit for bit)."""
    if redis_spec is None:
        return NodeClock()
    steps = tuple((f.at_us, round(f.clock_step_ms * 1000)) for f in redis_spec.failovers)
    return NodeClock(redis_spec.clock, extra_jumps=steps)
