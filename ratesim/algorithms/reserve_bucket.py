"""A token bucket that *holds* requests: x/time/rate's ``Reserve`` with a maximum delay (Traefik).

Traefik's ``RateLimit`` middleware (``pkg/middlewares/ratelimiter/rate_limiter.go``) calls
``Reserve()`` on an x/time/rate limiter (rate ``average / period``, ``burst``, starts full). The
reservation takes the tokens even when the bucket is short, so the bucket goes into debt, and
the request must wait ``-tokens / rate``; if that wait is at most ``max_delay`` Traefik sleeps
and forwards it (shaping), otherwise it cancels the reservation (the tokens come back) and
answers 429. ``ReserveTokenBucket(rate, burst, max_delay_s)`` is exactly that on integers:

* a request of ``cost <= burst`` with ``wait = ceil((cost * unit - tokens) / per_us)`` µs
  (0 when the bucket holds enough) passes iff ``wait <= max_delay_us``; it is debited (tokens may
  go negative, down to ``-max_delay * rate``) and held ``wait`` µs (the shaping contract of
  :mod:`ratesim.algorithms.shaping`: the delay is the admitted request's ``retry_after_us``);
* a rejected request changes nothing (Traefik's ``Cancel()`` at the same instant gives back
  exactly what the reservation took); its ``retry_after_us`` is ``wait - max_delay_us``, the
  time until the same request would be held no longer than ``max_delay`` (Traefik's own
  ``Retry-After`` header reports the whole ``ceil(wait)`` in seconds instead);
* ``cost > burst`` never passes (``-1``), ``cost = 0`` always passes at once.

x/time/rate waits ``durationFromTokens`` truncated to ns in float64; ratesim's wait is the exact
ceiling in µs. The rate is exact as in :class:`~ratesim.algorithms.TokenBucket` (``unit`` integer
units per token, ``per_us`` units per µs), and time going backwards follows x/time/rate: no
refill while ``now <= last``, a passing request sets ``last = now``.

Kernel parameters ``p = (unit, per_us, capacity, burst, max_delay_us)``; state ``[present,
last_us, tokens_units]`` (an absent key is a full bucket).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import CachedParamsAlgorithm, Kernel, State, require_int, seconds_to_us
from .token_bucket import MAX_REFILL_US, _continuous_params, exact_rate

ABSENT_EXPIRY_US = -(2**62)


def reserve_bucket_kernel(
    p: tuple[int, ...], state: State, now_us: int, cost: int, p0: int = 0, s0: int = 0
) -> tuple[int, int, int, int]:
    """One ``Reserve`` of ``cost`` at ``now_us``; returns ``(allowed, remaining,
    retry_or_delay_us, reset_after_us)`` (µs; an admitted request's third value is its hold)."""
    unit = p[p0 + 0]
    per_us = p[p0 + 1]
    capacity = p[p0 + 2]
    burst = p[p0 + 3]
    max_delay = p[p0 + 4]
    tokens = capacity
    last_us = now_us
    if state[s0 + 0] != 0:
        tokens = state[s0 + 2]
        last_us = state[s0 + 1]
        if now_us > last_us and tokens < capacity:
            missing = capacity - tokens
            elapsed = now_us - last_us
            # Compare before multiplying: a long idle gap must not overflow.
            if elapsed >= (missing + per_us - 1) // per_us:
                tokens = capacity
            else:
                tokens += elapsed * per_us
    allowed = 0
    retry_us = -1
    if cost <= burst:
        short = cost * unit - tokens
        wait = (short + per_us - 1) // per_us if short > 0 else 0
        if wait <= max_delay:
            allowed = 1
            retry_us = wait
            tokens -= cost * unit
            last_us = now_us
            state[s0 + 0] = 1
            state[s0 + 1] = now_us
            state[s0 + 2] = tokens
        else:
            retry_us = wait - max_delay
    remaining = tokens // unit if tokens > 0 else 0
    base = last_us if last_us > now_us else now_us
    reset_us = 0
    if tokens < capacity:
        reset_us = base - now_us + (capacity - tokens + per_us - 1) // per_us
    return allowed, remaining, retry_us, reset_us


@dataclass(frozen=True, slots=True)
class ReserveTokenBucket(CachedParamsAlgorithm):
    """x/time/rate ``Reserve`` + a maximum hold: ``rate`` tokens/s (> 0), capacity ``burst``
    (int >= 1), requests held up to ``max_delay_s`` seconds (>= 0) instead of rejected."""

    rate: float
    burst: int
    max_delay_s: float

    name: ClassVar[str] = "reserve_bucket"
    #: Admitted requests carry their hold in ``retry_after_us`` (see ratesim.algorithms.shaping).
    shapes: ClassVar[bool] = True

    def __post_init__(self) -> None:
        burst = require_int("burst", self.burst, minimum=1)
        rate = exact_rate(self.rate)
        if rate <= 0:
            raise ValueError(f"rate must be > 0 tokens per second, got {self.rate!r}")
        unit, per_us, capacity, _b, _f, _t = _continuous_params(rate, burst)
        max_delay_us = seconds_to_us("max_delay_s", self.max_delay_s, minimum_us=0)
        if max_delay_us >= MAX_REFILL_US or (max_delay_us + 1) * per_us >= MAX_REFILL_US:
            raise ValueError(f"max_delay_s={self.max_delay_s!r} is too long for exact integers")
        self._cache_params((unit, per_us, capacity, burst, max_delay_us))

    @property
    def kernel(self) -> Kernel:
        return reserve_bucket_kernel

    @property
    def state_size(self) -> int:
        return 3

    @property
    def limit(self) -> int:
        return self.burst

    def expires_at_us(self, state: State) -> int:
        """When the bucket is full again, counted from the stored ``last``."""
        unit, per_us, capacity, _burst, _max_delay = self._params
        if state[0] == 0 or state[2] >= capacity:
            return ABSENT_EXPIRY_US
        return int(state[1]) + -(-(capacity - int(state[2])) // per_us)
