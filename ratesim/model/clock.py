"""Node clocks: what a gateway node (or a Redis server) reads when the true time is ``t``.

A clock maps *true* time (integer µs from run start) to *local* time (integer µs)::

    local(t) = t + offset_us + floor(t * drift / 10^6 + slewing corrections) + done corrections

* ``offset_ms`` — a constant error, rounded to the nearest microsecond.
* ``drift_ppm`` — frequency error in parts per million: after one true second a +50 ppm clock
  reads 50 µs ahead. It is held as the exact integer ``drift_ppt`` in **parts per 10^12**
  (resolution 10^-6 ppm, so the rounding error is below 0.05 µs per day), and the drift term
  is floored, computed in exact integer arithmetic (no floats at read time).
* ``steps`` — NTP corrections. A step with ``slew_s == 0`` adds its full ``by_ms`` from
  ``at_s`` on (``t >= at``, inclusive). A slew spreads ``by_ms`` linearly over
  ``[at_s, at_s + slew_s)``: at ``at + u`` it has applied ``by * u / slew`` (exactly, inside the
  common floor above), and the full amount from ``at + slew`` on. Corrections add up, whatever
  their order in the list; overlapping slews simply add.

Time going backwards is a normal, modelled outcome, never an exception: a negative step makes
local time jump back by ``|by_ms|`` at ``at_s`` (NTP's step mode); only ``drift_ppm <= -10^6``
is refused, because such a clock would stand still or run backwards. Local time is non-decreasing
in true time whenever no jump step is negative and the total rate ``1 + drift + sum of active
slew rates`` is never negative (a single floor over all fractional terms guarantees this; a
negative slew with ``|by_ms| <= slew_s * 1000 * (1 + drift)`` is the NTP way to keep it so).

Exactness: :meth:`NodeClock.read` (Python integers) and :meth:`NodeClock.read_many` (int64
numpy) give identical integers. The vectorised path splits products so they cannot overflow,
is used for ``|t| < 2**53`` (about 285 years), and hands the rare hard cases to the scalar
path: huge times, overlapping slews, and float near-ties when adding a slew's fraction.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ..bounds import MAX_LIST, InstantS, RunS, check_clock_shift

US_PER_S = 1_000_000
US_PER_MS = 1_000
#: Denominator of ``drift_ppt``: drift is exact in parts per 10^12.
DRIFT_DEN = 10**12
#: Above this magnitude, true times leave the vectorised int64 path (exactness bound).
_VECTOR_LIMIT = 2**53
#: ``|by_us| * slew_us`` must stay below this so slew arithmetic is exact in int64 too.
_SLEW_PRODUCT_LIMIT = 2**62


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


def _drift_divmod(
    t: npt.NDArray[np.int64], n: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``divmod(t * n, 10**12)`` elementwise, exactly, without int64 overflow.

    Valid for ``|t| < 2**53`` and ``|n| <= 10**12``: ``t`` and ``n`` are split in base 10^6 so
    that every partial product stays below 2**63. The remainder is in ``[0, 10**12)``.
    """
    base = 10**6
    a, b = np.divmod(t, base)  # t = a*base + b, 0 <= b < base
    c, d = divmod(n, base)  # n = c*base + d, 0 <= d < base
    # t*n = a*c*base^2 + m*base + b*d with m = a*d + b*c = m1*base + m0.
    m1, m0 = np.divmod(a * d + b * c, base)
    rem = m0 * base + b * d  # in [0, 2 * base^2)
    carry = rem >= DRIFT_DEN
    return a * c + m1 + carry, rem - carry * np.int64(DRIFT_DEN)


#: Float comparisons closer than this to a tie fall back to exact integer arithmetic.
_TIE_MARGIN = 1e-9


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


class NodeClock:
    """Reads a :class:`ClockSpec` at true times; pure and deterministic.

    ``read(true_us) -> int`` and ``read_many(true_us) -> ndarray[int64]`` (identical values).
    """

    def __init__(self, spec: ClockSpec | None = None) -> None:
        self.spec = spec if spec is not None else ClockSpec.perfect()
        self.offset_us = ms_to_us(self.spec.offset_ms)
        self.drift_ppt = self.spec.drift_ppt
        jumps: list[tuple[int, int]] = []
        slews: list[tuple[int, int, int]] = []
        for step in self.spec.steps:
            at_us, by_us, slew_us = s_to_us(step.at_s), ms_to_us(step.by_ms), s_to_us(step.slew_s)
            if by_us == 0:
                continue
            if slew_us == 0:
                jumps.append((at_us, by_us))
            else:
                slews.append((at_us, by_us, slew_us))
        self.jumps: tuple[tuple[int, int], ...] = tuple(sorted(jumps))
        #: ``(start_us, by_us, length_us)`` per slew.
        self.slews: tuple[tuple[int, int, int], ...] = tuple(sorted(slews))

    def __repr__(self) -> str:
        return f"NodeClock({self.spec!r})"

    def read(self, true_us: int | np.integer[Any]) -> int:
        """Local time in µs at true time ``true_us`` (µs); see the module docstring."""
        t = _check_true_us(true_us)
        local = t + self.offset_us
        for at_us, by_us in self.jumps:
            if t >= at_us:
                local += by_us
        # All fractional terms share one floor: num / den with den = 10^12 * active slew lengths.
        num, den = t * self.drift_ppt, DRIFT_DEN
        for at_us, by_us, slew_us in self.slews:
            if t >= at_us + slew_us:
                local += by_us
            elif t >= at_us:
                num, den = num * slew_us + by_us * (t - at_us) * den, den * slew_us
        return local + num // den

    @staticmethod
    def _add_slew(
        out: npt.NDArray[np.int64],
        flat: npt.NDArray[np.int64],
        drift_r: npt.NDArray[np.int64],
        inside: npt.NDArray[np.bool_],
        at_us: int,
        by_us: int,
        slew_us: int,
    ) -> npt.NDArray[np.bool_]:
        """Add one slew's share where it is the only active one; return the near-tie mask.

        ``floor(drift_r / 10^12 + slew_r / slew_us)`` is 0 or 1 (both fractions are in
        [0, 1)); a float comparison decides it unless the two sides are within a hair of each
        other, in which case the element is flagged for the exact path.
        """
        idx = np.flatnonzero(inside)
        slew_q, slew_r = np.divmod(np.int64(by_us) * (flat[idx] - at_us), slew_us)
        x = drift_r[idx] / DRIFT_DEN
        y = (slew_us - slew_r) / slew_us
        out[idx] += slew_q + (x >= y)
        tie = np.zeros(flat.shape, dtype=bool)
        tie[idx] = np.abs(x - y) <= _TIE_MARGIN
        return tie

    def read_many(self, true_us: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Vectorised :meth:`read` over an array of true times (µs); same shape, int64."""
        t = np.asarray(true_us)
        if t.size and not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"true_us must be an integer array of µs, got dtype {t.dtype}")
        t = t.astype(np.int64)
        flat = t.reshape(-1)
        out = flat + np.int64(self.offset_us)
        for at_us, by_us in self.jumps:
            out += np.where(flat >= at_us, np.int64(by_us), np.int64(0))
        drift_q, drift_r = _drift_divmod(
            np.clip(flat, -_VECTOR_LIMIT, _VECTOR_LIMIT), self.drift_ppt
        )
        out += drift_q
        slow = np.abs(flat) >= _VECTOR_LIMIT
        active = np.zeros(flat.shape, dtype=np.int64)
        for at_us, by_us, slew_us in self.slews:
            out += np.where(flat >= at_us + slew_us, np.int64(by_us), np.int64(0))
            inside = (flat >= at_us) & (flat < at_us + slew_us)
            active += inside
            if inside.any():
                slow |= self._add_slew(out, flat, drift_r, inside, at_us, by_us, slew_us)
        # Overlapping slews (and near-ties, and huge times) take the exact scalar path.
        slow |= active > 1
        for i in np.flatnonzero(slow):
            out[i] = self.read(int(flat[i]))
        return out.reshape(t.shape)
