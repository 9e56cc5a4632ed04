"""Sentinel's throttling (``controlBehavior: 2``, ``RateLimiterController``): uniform pacing.

Requests are spaced ``cost_ms = round(1000 * acquire / count)`` ms apart (Java ``Math.round``,
half up) behind ``latestPassedTime``; a request that would wait more than ``maxQueueingTimeMs``
is rejected, the others are queued (held, then forwarded: shaping, see
:mod:`ratesim.algorithms.shaping`). Sentinel 1.8, in ms::

    expected = latest + cost_ms
    expected <= now:  pass at once, latest = now
    otherwise:        wait = expected - now
                      wait > max_queue_ms: reject (nothing changes)
                      else: latest = expected, pass after wait ms

``latest`` starts at -1 in Sentinel, i.e. long ago on an epoch clock: ratesim's unseen key lets
its first request through at once, whatever the clock's epoch. ``count: 10`` and
``maxQueueingTimeMs: 500`` turn a burst of 10 at one instant into one at once, five held
100, 200, ..., 500 ms, and four rejected.

``UniformPacer(count, max_queue_ms, resolution_us=1000)``: Sentinel's millisecond clock is
``floor(now_us / 1000)``. For rates above 1000/s newer Sentinel versions pace in nanoseconds;
``resolution_us=1`` paces in µs (``cost = round(10**6 * acquire / count)`` µs), ratesim's finest
exact reading of that. ``cost = 0`` always passes at once (Sentinel: ``acquireCount <= 0``).
**Time going backwards**: the wait is measured from the caller's clock to ``latest``, so a
lagging caller waits longer (and is rejected sooner), as Sentinel's wall-clock
``latestPassedTime`` does.

A cost spaced more than 60 s (``round(1000 * cost / count) > 60000`` ms) is refused (``-1``):
Sentinel would pass it on an idle key, but no realistic request asks for it, and the bound makes
a key idle for 60 s decide exactly like an unseen one.

Kernel parameters ``p = (count, max_queue_units, resolution_us, max_cost)``; state ``[present,
latest_units]``. ``remaining`` is how many more cost-1 requests could queue right now,
``retry_after_us`` (rejected) the time until this request's wait would be within the queue bound,
``reset_after_us`` the time until ``latest`` no longer delays a request of cost 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import MAX_EXACT_INT, CachedParamsAlgorithm, Kernel, State, require_int

ABSENT_EXPIRY_US = -(2**62)
#: Longest spacing one request may ask for (s): a cost spaced further apart is refused (``-1``),
#: so a key idle this long after its last pass decides like an unseen one (exact expiry).
MAX_SPACING_S = 60


def pacer_kernel(
    p: tuple[int, ...], state: State, now_us: int, cost: int, p0: int = 0, s0: int = 0
) -> tuple[int, int, int, int]:
    """One request of ``cost`` at ``now_us``; returns ``(allowed, remaining,
    retry_or_delay_us, reset_after_us)`` (µs; an admitted request's third value is its hold)."""
    count = p[p0 + 0]
    max_q = p[p0 + 1]
    res = p[p0 + 2]
    max_cost = p[p0 + 3]
    per_s = 1_000_000 // res
    t = now_us // res if now_us >= 0 else -((res - 1 - now_us) // res)
    allowed = 1
    retry_us = 0
    if cost > max_cost:
        allowed = 0
        retry_us = -1
    elif cost > 0:
        # Math.round(cost / count * per_s): half up, exact on integers.
        step = (2 * per_s * cost + count) // (2 * count)
        if state[s0 + 0] == 0 or state[s0 + 1] + step <= t:
            state[s0 + 0] = 1
            state[s0 + 1] = t
        elif state[s0 + 1] + step - t > max_q:
            allowed = 0
            retry_us = (state[s0 + 1] + step - max_q) * res - now_us
        else:
            state[s0 + 1] = state[s0 + 1] + step
            retry_us = (state[s0 + 1] - t) * res
    one = (2 * per_s + count) // (2 * count)
    remaining = 1 + max_q // one
    reset_us = 0
    if state[s0 + 0] != 0 and state[s0 + 1] + one > t:
        d = max_q + t - state[s0 + 1]
        remaining = d // one if d >= 0 else 0
        reset_us = (state[s0 + 1] + one) * res - now_us
    return allowed, remaining, retry_us, reset_us


@dataclass(frozen=True, slots=True)
class UniformPacer(CachedParamsAlgorithm):
    """Sentinel ``FlowRule`` ``controlBehavior: 2``: ``count`` per second, paced, queueing at most
    ``max_queue_ms`` (int ms >= 0); ``resolution_us`` 1000 (ms, Sentinel's) or 1 (µs)."""

    count: int
    max_queue_ms: int = 500
    resolution_us: int = 1000

    name: ClassVar[str] = "pacer"
    #: Admitted requests carry their hold in ``retry_after_us`` (see ratesim.algorithms.shaping).
    shapes: ClassVar[bool] = True

    def __post_init__(self) -> None:
        count = require_int("count", self.count, minimum=1)
        max_q = require_int("max_queue_ms", self.max_queue_ms, minimum=0)
        if self.resolution_us not in (1, 1000):
            raise ValueError(f"resolution_us must be 1000 or 1, got {self.resolution_us!r}")
        max_q_units = max_q * 1000 // self.resolution_us
        if 2 * 1_000_000 // self.resolution_us < count:
            raise ValueError(
                f"count={count} per second spaces requests less than half a unit apart at "
                f"resolution_us={self.resolution_us}: use resolution_us=1"
            )
        if count >= MAX_EXACT_INT // 4 or max_q_units >= MAX_EXACT_INT // 4:
            raise ValueError("count or max_queue_ms is too large for exact integers")
        per_s = 1_000_000 // self.resolution_us
        # The largest cost with round(cost * per_s / count) <= MAX_SPACING_S * per_s.
        max_cost = (2 * count * (MAX_SPACING_S * per_s + 1) - count - 1) // (2 * per_s)
        self._cache_params((count, max_q_units, self.resolution_us, max_cost))

    @property
    def kernel(self) -> Kernel:
        return pacer_kernel

    @property
    def state_size(self) -> int:
        return 2

    @property
    def limit(self) -> int:
        return self.count

    def expires_at_us(self, state: State) -> int:
        """``MAX_SPACING_S`` after ``latest``: every accepted cost then passes at once."""
        if state[0] == 0:
            return ABSENT_EXPIRY_US
        res = self._params[2]
        return (int(state[1]) + MAX_SPACING_S * (1_000_000 // res)) * res
