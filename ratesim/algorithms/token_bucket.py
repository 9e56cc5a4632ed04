"""Token bucket with golang.org/x/time/rate semantics, on exact integers (semantics.md §3).

``TokenBucket(rate, burst)`` is ``rate.NewLimiter(rate, burst)`` driven by ``AllowN(t, cost)``:
the bucket holds at most ``burst`` tokens and starts full; a request of ``cost`` passes iff
``cost <= burst`` and the bucket holds ``cost`` tokens; only a passing request commits (``last =
now``, tokens debited), a failed one changes nothing. ``burst=0`` admits no request of positive
cost; ``rate=0`` lets the first ``burst`` tokens through and never refills. ``cost=0`` always
passes.

**Exact accounting.** x/time/rate computes tokens in float64; we do not. The rate is taken as an
exact rational ``n/d`` tokens per second: ``Fraction(rate).limit_denominator(10**6)``, or one
token every whole ``T = round(10**6 / rate)`` microseconds when that reads the given number more
closely (a rate either reading moves by more than 1e-9 relative is refused). One token is ``S =
d * 10**6`` *units* and the bucket gains ``n`` units per microsecond (``S`` and ``n`` reduced by
their gcd). All state is integer units, below 2**53 (Lua-exact), and a bucket takes less than
2**51 µs (about 71 years) to refill, so retry/reset instants stay below 2**53 for ``|now_us| <
2**52``. Consequence: when ``1/rate`` is a whole number ``T`` of microseconds, ``S = T * n`` and
``TokenBucket(rate, burst)`` decides *exactly* like ``GCRA(burst - 1, count, period)`` with ``T =
period / count``: same ``allowed``, ``remaining``, ``retry_after_us`` and ``reset_after_us`` for
every cost (0 is a peek in both, ``cost > burst`` gets -1 in both), because the token count is
``(DVT - (TAT - now)) / T``. The exception is time going backwards (GCRA gives a lagging caller
*less* capacity, x/time/rate credits the interval again, see below).

**Ticker refill** (``refill="ticker"``): the seed's ``time.Ticker`` and Envoy's local rate limit
(``tokens_per_fill`` every ``fill_interval``). Whole tokens arrive in packets of
``tokens_per_fill = rate * fill_interval_s`` (must be a whole number >= 1) at every multiple of
``fill_interval_us`` since time 0 of the caller's clock; a tick at time ``t`` counts for a request
at ``t``. A request at ``now`` after one at ``last`` gains the ticks in ``(last, now]``.

**Time going backwards** (``now < last``), exactly as x/time/rate documents: the elapsed time
counts as zero (nothing accrues), and a *successful* request then sets ``last = now``, moving it
back, so the interval between the new and the old ``last`` is credited again on the next forward
step (golang/go#56287: a clock that jumps back can mint tokens). Ticker mode does the same with
ticks: no tick accrues at ``now <= last``, a success sets ``last = now``, and the ticks in
``(now, old last]`` are credited again. Never an exception. ``retry_after_us`` and
``reset_after_us`` assume the clock moves forward from ``now``: while ``now < last`` nothing
accrues until ``last``, so they count from ``last`` when the request does not commit.

Kernel parameters ``p = (unit, per_us, capacity, burst, fill_us, per_fill)``: units per token;
units gained per microsecond (continuous; 0 in ticker mode or at rate 0); ``capacity =
burst * unit``; ``burst``; the tick period in µs (0 = continuous); tokens per tick (ticker).
State ``[present, last_us, tokens_units]``; an absent key is a full bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

from .base import (
    MAX_EXACT_INT,
    US_PER_S,
    CachedParamsAlgorithm,
    Kernel,
    Params,
    State,
    require_int,
    seconds_to_us,
)

#: ``expires_at_us`` of a state that already decides like an absent key.
ABSENT_EXPIRY_US = -(2**62)
#: ``expires_at_us`` of a state that never refills (rate 0): keep it forever.
NEVER_EXPIRES_US = 2**62
#: Denominator bound for the rational rate (tokens per second).
MAX_RATE_DENOMINATOR = 10**6
#: Largest relative change the rational approximation may make to the given rate.
RATE_TOLERANCE = Fraction(1, 10**9)

REFILL_MODES = ("continuous", "ticker")
#: Longest time a bucket may take to refill from empty (2**51 us, about 71 years): retry and
#: reset instants are ``now`` plus at most this, and with ``|now_us| < 2**52`` (Unix-epoch
#: microseconds until 2112) every intermediate stays below 2**53, exact in the Lua port.
MAX_REFILL_US = MAX_EXACT_INT // 4


def token_bucket_kernel(
    p: Params,
    state: State,
    now_us: int,
    cost: int,
    p0: int = 0,
    s0: int = 0,
) -> tuple[int, int, int, int]:
    """One ``AllowN(now, cost)`` on ``state``; returns ``(allowed, remaining, retry, reset)``.

    ``remaining`` is whole tokens left (floor); ``retry_after_us`` the µs until ``cost`` tokens
    are there (ceil; -1 when allowed, when ``cost > burst``, or when the bucket never refills);
    ``reset_after_us`` the µs until the bucket is full (0 if full, -1 if it never refills).
    """
    unit = p[p0]
    per_us = p[p0 + 1]
    capacity = p[p0 + 2]
    burst = p[p0 + 3]
    fill_us = p[p0 + 4]
    per_fill = p[p0 + 5]
    tokens = capacity
    # Refill after now is counted from base_us: now, or the stored last if it lies ahead.
    base_us = now_us
    if state[s0] != 0:
        tokens = state[s0 + 2]
        last_us = state[s0 + 1]
        if now_us <= last_us:
            base_us = last_us
        elif tokens < capacity:
            missing = capacity - tokens
            if fill_us > 0:
                # Floor division written for non-negative operands only (C and Python agree).
                now_tick = (
                    now_us // fill_us if now_us >= 0 else -((fill_us - 1 - now_us) // fill_us)
                )
                last_tick = (
                    last_us // fill_us if last_us >= 0 else -((fill_us - 1 - last_us) // fill_us)
                )
                ticks = now_tick - last_tick
                # Compare before multiplying: a long idle gap must not overflow int64.
                if ticks >= (missing + per_fill - 1) // per_fill:
                    tokens = capacity
                else:
                    tokens += ticks * per_fill
            elif per_us > 0:
                elapsed = now_us - last_us
                if elapsed >= (missing + per_us - 1) // per_us:
                    tokens = capacity
                else:
                    tokens += elapsed * per_us
    allowed = 0
    retry_after_us = -1
    # cost > burst never fits; checking it first also keeps cost * unit below 2**53.
    if cost <= burst:
        need = cost * unit
        if tokens >= need:
            allowed = 1
            tokens -= need
            base_us = now_us
            state[s0] = 1
            state[s0 + 1] = now_us
            state[s0 + 2] = tokens
        elif fill_us > 0:
            base_tick = (
                base_us // fill_us if base_us >= 0 else -((fill_us - 1 - base_us) // fill_us)
            )
            fills = (need - tokens + per_fill - 1) // per_fill
            retry_after_us = (base_tick + fills) * fill_us - now_us
        elif per_us > 0:
            retry_after_us = base_us - now_us + (need - tokens + per_us - 1) // per_us
    remaining = tokens // unit
    if tokens >= capacity:
        reset_after_us = 0
    elif fill_us > 0:
        base_tick = base_us // fill_us if base_us >= 0 else -((fill_us - 1 - base_us) // fill_us)
        fills = (capacity - tokens + per_fill - 1) // per_fill
        reset_after_us = (base_tick + fills) * fill_us - now_us
    elif per_us > 0:
        reset_after_us = base_us - now_us + (capacity - tokens + per_us - 1) // per_us
    else:
        reset_after_us = -1
    return allowed, remaining, retry_after_us, reset_after_us


def exact_rate(rate: object) -> Fraction:
    """``rate`` (tokens/s) as the rational the kernel uses; ``ValueError`` if it is not usable."""
    if isinstance(rate, bool) or not isinstance(rate, int | float | Fraction):
        raise ValueError(f"rate must be a number of tokens per second, got {rate!r}")
    if isinstance(rate, float) and not math.isfinite(rate):
        raise ValueError(f"rate must be finite, got {rate!r}")
    given = Fraction(rate)
    if given < 0:
        raise ValueError(f"rate must be >= 0, got {rate!r}")
    approx = given.limit_denominator(MAX_RATE_DENOMINATOR)
    if given > 0:
        # One token every whole number of µs is always exact (unit / per_us == T), whatever
        # the denominator of 10**6 / T: prefer it when it is the closer reading of the float,
        # so TokenBucket(count / period, b) matches GCRA whenever period / count is whole µs.
        period_us = round(US_PER_S / given)
        if period_us >= 1:
            whole = Fraction(US_PER_S, period_us)
            if abs(whole - given) < abs(approx - given):
                approx = whole
    if abs(approx - given) > RATE_TOLERANCE * given:
        raise ValueError(
            f"rate={rate!r} tokens/s is not within 1e-9 of a fraction with denominator <= "
            f"{MAX_RATE_DENOMINATOR} or of one token per whole µs (nearest: {approx}); integer "
            "accounting cannot represent it"
        )
    return approx


def _continuous_params(rate: Fraction, burst: int) -> tuple[int, ...]:
    unit = rate.denominator * US_PER_S
    per_us = rate.numerator
    g = math.gcd(unit, per_us)
    unit //= g
    per_us //= g
    if unit >= MAX_EXACT_INT:
        # Even at burst 0 the kernel divides by unit: it must fit int64 and a Lua double.
        raise ValueError(
            f"rate={rate} tokens/s needs {unit} integer units per token (>= 2**53); "
            "use a rate of at least one token per 2**53 / 10**6 s"
        )
    if burst * unit >= MAX_EXACT_INT:
        raise ValueError(
            f"burst={burst} at rate={rate} tokens/s needs {burst * unit} integer units "
            "(>= 2**53, not exact in Lua); lower burst or use a rate with a smaller denominator"
        )
    if per_us >= MAX_EXACT_INT - burst * unit:
        raise ValueError(f"rate={rate} tokens/s is too large for integer accounting")
    if per_us > 0 and -(-burst * unit // per_us) >= MAX_REFILL_US:
        raise ValueError(
            f"burst={burst} at rate={rate} tokens/s takes >= 2**51 us to refill from empty; "
            "retry/reset times past now would leave the 2**53 range Lua represents exactly"
        )
    return (unit, per_us, burst * unit, burst, 0, 0)


def _ticker_params(rate: Fraction, burst: int, fill_interval_s: float) -> tuple[int, ...]:
    fill_us = seconds_to_us("fill_interval_s", fill_interval_s)
    per_fill = rate * fill_us / US_PER_S
    if per_fill.denominator != 1 or per_fill < 1:
        raise ValueError(
            f"rate={float(rate)!r} tokens/s * fill_interval_s={fill_interval_s!r} gives "
            f"{float(per_fill)!r} tokens per fill; ticker refill needs a whole number >= 1"
        )
    fills_to_full = -(-burst // int(per_fill))
    if burst + int(per_fill) >= MAX_EXACT_INT or fills_to_full * fill_us >= MAX_REFILL_US:
        raise ValueError(
            f"burst={burst} with fill_interval_s={fill_interval_s!r} and rate={float(rate)!r} "
            "takes >= 2**51 us to refill (or needs >= 2**53 tokens): tick times past now would "
            "leave the 2**53 range Lua represents exactly"
        )
    return (1, 0, burst, burst, fill_us, int(per_fill))


@dataclass(frozen=True, slots=True)
class TokenBucket(CachedParamsAlgorithm):
    """x/time/rate ``NewLimiter(rate, burst)`` + ``AllowN``, with exact integer accounting.

    ``rate`` in tokens per second (>= 0), ``burst`` the capacity in tokens (int >= 0, reported as
    ``Decision.limit``). ``refill="continuous"`` refills smoothly; ``refill="ticker"`` adds
    ``rate * fill_interval_s`` whole tokens at each multiple of ``fill_interval_s`` since time 0
    (``fill_interval_s`` is required there and refused for continuous refill). Time going
    backwards follows x/time/rate (see the module docstring): a successful request moves
    ``last`` back and the interval is credited again.
    """

    rate: float
    burst: int
    refill: str = "continuous"
    fill_interval_s: float | None = None

    name: ClassVar[str] = "token_bucket"

    def __post_init__(self) -> None:
        burst = require_int("burst", self.burst, minimum=0)
        rate = exact_rate(self.rate)
        if self.refill == "continuous":
            if self.fill_interval_s is not None:
                raise ValueError(
                    f"fill_interval_s={self.fill_interval_s!r} is only valid with refill='ticker'"
                )
            params = _continuous_params(rate, burst)
        elif self.refill == "ticker":
            if self.fill_interval_s is None:
                raise ValueError("refill='ticker' needs fill_interval_s, got None")
            params = _ticker_params(rate, burst, self.fill_interval_s)
        else:
            raise ValueError(f"refill must be one of {REFILL_MODES}, got {self.refill!r}")
        self._cache_params(params)

    @property
    def rate_fraction(self) -> Fraction:
        """The exact rate the kernel uses, in tokens per second."""
        return exact_rate(self.rate)

    @property
    def fill_interval_us(self) -> int:
        """Tick period in µs (0 for continuous refill)."""
        return self._params[4]

    @property
    def tokens_per_fill(self) -> int:
        """Whole tokens added per tick (0 for continuous refill)."""
        return self._params[5]

    @property
    def kernel(self) -> Kernel:
        return token_bucket_kernel

    @property
    def state_size(self) -> int:
        return 3

    @property
    def limit(self) -> int:
        return self.burst

    def tokens_at(self, state: State, now_us: int) -> Fraction:
        """Tokens the bucket holds at ``now_us`` (x/time/rate ``TokensAt``); ``state`` untouched.

        Runs the kernel with cost 0 (which always commits the advanced count) on a copy.
        """
        probe = [int(v) for v in state]
        token_bucket_kernel(self._params, probe, now_us, 0)
        return Fraction(probe[2], self._params[0])

    def expires_at_us(self, state: State) -> int:
        """When the bucket is full again, counted from the stored ``last`` (see below).

        A full bucket decides like an absent key at any time, including ``now < last``. A bucket
        short of tokens is full for every ``now >= last + time to refill``; that instant is
        ``> last``, so a clock stepping back before it cannot reach a ``last`` that x/time/rate
        moved backwards. A bucket that never refills (rate 0) never expires.
        """
        _unit, per_us, capacity, _burst, fill_us, per_fill = self._params
        if state[0] == 0 or state[2] >= capacity:
            return ABSENT_EXPIRY_US
        last_us = int(state[1])
        missing = capacity - int(state[2])
        if fill_us > 0:
            return (last_us // fill_us + -(-missing // per_fill)) * fill_us
        if per_us == 0:
            return NEVER_EXPIRES_US
        return last_us + -(-missing // per_us)
