"""Epoch-aligned window counters: ``FixedWindow`` (Envoy ratelimit) and ``SlidingWindowCounter``.

Both cut time into windows ``[j * window_us, (j + 1) * window_us)``, ``j = floor(now_us /
window_us)`` (floor also for negative times: the kernels divide non-negative operands only). A
rejected request records nothing, and ``cost=0`` asks without recording (so a stored current
count of 0 always means "absent key"). Costs above ``limit`` never fit (``retry_after_us = -1``).

**FixedWindow** (semantics §7.1, §8.10). Allowed iff ``count + cost <= limit`` in the request's
window. Unlike Envoy's ratelimit service, which runs ``INCRBY`` first and compares afterwards (so
a rejected hit still counts and a big rejected request can block smaller ones for the rest of the
window), a rejected request here changes nothing. ``retry_after_us`` and ``reset_after_us`` are
the time to the window's end (``reset_after_us`` is 0 when nothing is counted).

Kernel parameters ``p = (limit, window_us)``. State (size 2)::

    state[0]   window index j of the stored count
    state[1]   cost admitted in window j (0 = absent key)

**SlidingWindowCounter** (Cloudflare §5, with the ``limits`` Redis flooring §6/§8.9). With
``prev`` and ``curr`` the cost admitted in windows ``j - 1`` and ``j`` and ``e = now - j *
window_us`` the time elapsed in window ``j``::

    weighted = floor(prev * (window_us - e) / window_us) + curr
    reject iff weighted + cost > limit

The floor is on the previous-window term only, as ``limits``' Lua does. It admits up to one unit
more than Cloudflare's unfloored estimate: with ``limit 50, prev 42, curr 18, e = 15 s`` of a
60 s window Cloudflare's 49.5 + 1 > 50 rejects, the floored 49 + 1 <= 50 admits.
Windows are epoch-aligned like Cloudflare's (``limits`` anchors them at a key's first hit and
clocks them with Redis TTLs; the arithmetic is the same). ``retry_after_us`` is the exact time
until the request would fit (no other traffic); ``reset_after_us`` the time until ``weighted``
is 0.

Kernel parameters ``p = (limit, window_us)``. State (size 3)::

    state[0]   window index j of ``curr``
    state[1]   curr: cost admitted in window j (0 = absent key)
    state[2]   prev: cost admitted in window j - 1

**Time going backwards** (both). A request whose window index is older than the stored one is
judged against the stored (newer) window, as if at its start (``e = 0``, so the sliding counter
counts the whole previous window), and an admitted cost is counted into that stored window. One
counter per key cannot hold an older window, and charging the newest one never lets the lagging
request hide from the count. ``retry_after_us`` is then measured on the caller's own clock (it
includes the lag). For requests in time order, the fixed window admits at most ``limit`` per
aligned window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import (
    MAX_EXACT_INT,
    MAX_LIMIT,
    Kernel,
    Params,
    State,
    WindowAlgorithm,
    require_int,
    seconds_to_us,
)

ABSENT_EXPIRY_US = -(2**62)
#: Longest window (2**51 us, about 71 years), as for the sliding log and the bucketed windows.
MAX_WINDOW_US = MAX_EXACT_INT // 4


def fixed_window_kernel(
    p: Params,
    state: State,
    now_us: int,
    cost: int,
    p0: int = 0,
    s0: int = 0,
) -> tuple[int, int, int, int]:
    """One request of ``cost`` at ``now_us``; returns ``(allowed, remaining, retry_after_us,
    reset_after_us)`` (microseconds)."""
    limit = p[p0]
    window_us = p[p0 + 1]
    j = now_us // window_us if now_us >= 0 else -((window_us - 1 - now_us) // window_us)
    idx = state[s0]
    count = state[s0 + 1]
    if count == 0 or j > idx:
        idx = j
        count = 0
    end_in_us = (idx + 1) * window_us - now_us
    reset_us = end_in_us if count > 0 else 0
    if cost > limit:
        return 0, limit - count, -1, reset_us
    if count + cost > limit:
        return 0, limit - count, end_in_us, reset_us
    if cost > 0:
        count += cost
        state[s0] = idx
        state[s0 + 1] = count
        reset_us = end_in_us
    return 1, limit - count, -1, reset_us


def sliding_counter_kernel(
    p: Params,
    state: State,
    now_us: int,
    cost: int,
    p0: int = 0,
    s0: int = 0,
) -> tuple[int, int, int, int]:
    """One request of ``cost`` at ``now_us``; returns ``(allowed, remaining, retry_after_us,
    reset_after_us)`` (microseconds)."""
    limit = p[p0]
    w = p[p0 + 1]
    j = now_us // w if now_us >= 0 else -((w - 1 - now_us) // w)
    idx = state[s0]
    curr = state[s0 + 1]
    prev = state[s0 + 2]
    if curr == 0:
        idx = j
        prev = 0
    elif j == idx + 1:
        prev = curr
        curr = 0
        idx = j
    elif j > idx + 1:
        prev = 0
        curr = 0
        idx = j
    start = idx * w
    elapsed = max(now_us - start, 0)
    weighted = (prev * (w - elapsed)) // w + curr
    allowed = 0
    retry_us = -1
    if cost <= limit:
        if weighted + cost <= limit:
            allowed = 1
            if cost > 0:
                curr += cost
                weighted += cost
                state[s0] = idx
                state[s0 + 1] = curr
                state[s0 + 2] = prev
        elif curr + cost <= limit:
            # Fits later in this window, once floor(prev * (w - e) / w) <= limit - cost - curr.
            room = limit - cost - curr
            retry_us = start + w - ((room + 1) * w - 1) // prev - now_us
        else:
            # Fits in the next window, where prev' = curr decays the same way.
            room = limit - cost
            retry_us = start + w + max(w - ((room + 1) * w - 1) // curr, 0) - now_us
    # Back to weighted == 0: floor(c * (w - e) / w) == 0 from e = w - (w - 1) // c on.
    if curr > 0:
        reset_us = start + 2 * w - (w - 1) // curr - now_us
    elif prev > 0:
        reset_us = max(start + w - (w - 1) // prev - now_us, 0)
    else:
        reset_us = 0
    return allowed, max(limit - weighted, 0), retry_us, reset_us


def _check_window(limit: int, window_s: float) -> int:
    """Validate ``limit`` and ``window_s``; return the window in microseconds."""
    require_int("limit", limit, minimum=1, below=MAX_LIMIT)
    window_us = seconds_to_us("window_s", window_s)
    if (limit + 2) * window_us >= MAX_EXACT_INT:
        raise ValueError(
            f"limit={limit} times window_s={window_s} exceeds 2**53 us (Lua could not "
            "represent the weighted count exactly)"
        )
    if window_us >= MAX_WINDOW_US:
        # Window ends two windows past now are computed: with |now_us| < 2**52 (epoch µs until
        # 2112) and window < 2**51 they stay below 2**53.
        raise ValueError(f"window_s={window_s} is too long to stay below 2**53 us (>= 2**51 us)")
    return window_us


@dataclass(frozen=True, slots=True)
class _EpochWindow(WindowAlgorithm):
    """Fields, validation and ``params = (limit, window_us)`` of both epoch-aligned counters."""

    # field() keeps dataclass from taking the base class's abstract ``limit`` as a default.
    limit: int = field()
    window_s: float = field()

    def __post_init__(self) -> None:
        self._cache_params((self.limit, _check_window(self.limit, self.window_s)))


@dataclass(frozen=True, slots=True)
class FixedWindow(_EpochWindow):
    """At most ``limit`` cost units per epoch-aligned window of ``window_s`` seconds.

    ``limit``: an int >= 1; ``window_s``: seconds, a whole number of microseconds.
    """

    name: ClassVar[str] = "fixed_window"

    @property
    def kernel(self) -> Kernel:
        return fixed_window_kernel

    @property
    def state_size(self) -> int:
        return 2

    def expires_at_us(self, state: State) -> int:
        """End of the stored window (the key is absent when nothing is counted)."""
        if state[1] == 0:
            return ABSENT_EXPIRY_US
        return (int(state[0]) + 1) * self.window_us


@dataclass(frozen=True, slots=True)
class SlidingWindowCounter(_EpochWindow):
    """Cloudflare's two-counter estimate of a sliding window, epoch-aligned, floored like
    ``limits``. ``limit``: an int >= 1; ``window_s``: seconds, a whole number of microseconds.
    """

    name: ClassVar[str] = "sliding_window_counter"

    @property
    def kernel(self) -> Kernel:
        return sliding_counter_kernel

    @property
    def state_size(self) -> int:
        return 3

    def expires_at_us(self, state: State) -> int:
        """When ``curr``, decayed as the next window's ``prev``, floors to 0 for good."""
        curr = int(state[1])
        if curr == 0:
            return ABSENT_EXPIRY_US
        w = self.window_us
        return (int(state[0]) + 2) * w - (w - 1) // curr
