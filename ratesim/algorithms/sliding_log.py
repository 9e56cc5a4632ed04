"""Exact sliding-window log: the seed's Redis sorted set, ``limits``' moving window (§6).

A request of ``cost`` c is allowed iff the cost units admitted in the window, plus c, fit in
``limit``. Costs above ``limit`` never fit (``retry_after_us = -1``). A rejected request records
nothing.

**Window boundary.** An admitted unit stamped ``s`` counts at ``now`` iff ``s > now - window_us``:
the half-open window ``(now - window_us, now]`` that the seed's ``ZREMRANGEBYSCORE key -inf
now-window`` leaves behind. ``limits`` keeps entries with ``s >= now - window`` (closed at the old
end); the two differ only for an entry exactly one window old. So the log admits at most ``limit``
cost units in any half-open interval of ``window_us`` microseconds.

**Time going backwards.** Entries stamped after ``now`` (written by a leading clock) count too:
the log never forgets an admitted request early. The log is kept sorted: a request whose ``now``
is older than the newest entry is stamped with the newest entry's time instead (it is remembered
for up to the clock lag longer than its own clock says). Being sorted, the log answers "how many
entries are in the window" by a binary search, and "when does this request fit" by looking at a
single entry, like ``limits``' ``LINDEX key (limit - cost)``. With these two rules, for *any*
order of timestamps, the admitted cost in any half-open interval of ``window_us`` of the callers'
own clocks stays at most ``limit``.

Kernel parameters ``p = (limit, window_us)``.

State (``state_size = limit + 2``), a ring of the ``limit`` most recent stamps::

    state[0]       count: entries held, 0..limit (0 = absent key)
    state[1]       head: ring slot the next entry is written to, 0..limit-1
    state[2 + k]   stamp (us) in ring slot k, k = 0..limit-1; a cost-c request writes c copies

The i-th newest entry (i = 0 is the newest, i < count) is in slot ``(head - 1 - i + limit) %
limit``; stamps never decrease from oldest to newest.

``retry_after_us`` is the time until this request would fit (no other traffic): the moment the
``(limit - cost)``-th newest entry leaves the window. ``reset_after_us`` is the time until no
entry is left in the window (``newest + window - now``, 0 when there is none).

This is the state the stores, the Lua and the event engine keep. The compiled runner keeps the
same log in a ring sized to what the key admitted, grown on demand (:mod:`ratesim.fast.logpool`),
decided by :func:`sliding_ring_kernel`, this kernel's twin on that ring.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import (
    MAX_EXACT_INT,
    MAX_STATE_INTS_PER_KEY,
    Kernel,
    Params,
    State,
    WindowAlgorithm,
    require_int,
    seconds_to_us,
)

#: Largest ``limit``: the log holds ``limit + 2`` integers per key.
MAX_LOG_LIMIT = MAX_STATE_INTS_PER_KEY - 2

ABSENT_EXPIRY_US = -(2**62)


def sliding_log_kernel(
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
    count = state[s0]
    head = state[s0 + 1]
    cutoff = now_us - window_us
    # Entries stamped after the cutoff are the newest ones: binary search for how many.
    lo = 0
    hi = count
    while lo < hi:
        mid = (lo + hi) // 2
        if state[s0 + 2 + (head - 1 - mid + limit) % limit] > cutoff:
            lo = mid + 1
        else:
            hi = mid
    in_window = lo
    newest = state[s0 + 2 + (head - 1 + limit) % limit]
    reset_us = newest + window_us - now_us if in_window > 0 else 0
    if cost > limit:
        return 0, limit - in_window, -1, reset_us
    if in_window + cost > limit:
        # The request fits once the (limit - cost)-th newest entry (0-based) leaves the window.
        blocking = state[s0 + 2 + (head - 1 - (limit - cost) + limit) % limit]
        return 0, limit - in_window, blocking + window_us - now_us, reset_us
    if cost > 0:
        stamp = now_us
        if count > 0 and newest > now_us:
            stamp = newest
        for _ in range(cost):
            state[s0 + 2 + head] = stamp
            head += 1
            if head == limit:
                head = 0
        state[s0 + 1] = head
        state[s0] = min(count + cost, limit)
        in_window += cost
        reset_us = stamp + window_us - now_us
    return 1, limit - in_window, -1, reset_us


#: The ring twin's block: ``count, head, cap`` then ``cap`` stamps (see
#: :func:`sliding_ring_kernel`).
RING_COUNT, RING_HEAD, RING_CAP, RING_STAMPS = 0, 1, 2, 3


def sliding_ring_kernel(
    p: Params,
    pool: State,
    now_us: int,
    cost: int,
    p0: int = 0,
    b0: int = 0,
) -> tuple[int, int, int, int]:
    """:func:`sliding_log_kernel` on a ring of any capacity ``cap <= limit`` (the compiled
    runner's representation, :mod:`ratesim.fast.logpool`): the same decisions and the same
    ``(allowed, remaining, retry_after_us, reset_after_us)`` (microseconds).

    The block at ``pool[b0:]`` is ``count, head, cap`` then ``cap`` stamps: the log's
    ``count`` newest entries (``count <= cap``), the i-th newest in ring slot ``(head - 1 - i)
    % cap``. The original's ring has ``cap = limit`` always; this one may be smaller, since a
    key that has admitted ``a`` cost units holds ``min(limit, a)`` entries. The caller makes
    sure, before the call, that ``cap >= min(limit, count + cost)`` (the room an admission
    writes); then an admission overwrites only entries the original forgets too (``cap ==
    limit``, wrapping) or none, so the logical sequence of entries, newest first, is the
    original's at every step and so is every decision (held to it by
    ``tests/test_sliding_ring.py``)."""
    limit = p[p0]
    window_us = p[p0 + 1]
    count = pool[b0 + RING_COUNT]
    head = pool[b0 + RING_HEAD]
    cap = pool[b0 + RING_CAP]
    r0 = b0 + RING_STAMPS
    cutoff = now_us - window_us
    # the i-th newest entry's slot is head - 1 - i, plus cap when negative (0 <= head < cap,
    # 0 <= i < count <= cap): one compare, not a division, per probe (the search's cost)
    lo = 0
    hi = count
    while lo < hi:
        mid = (lo + hi) >> 1
        s = head - 1 - mid
        if pool[r0 + (s + cap if s < 0 else s)] > cutoff:
            lo = mid + 1
        else:
            hi = mid
    in_window = lo
    newest = pool[r0 + (head - 1 + cap if head == 0 else head - 1)]
    reset_us = newest + window_us - now_us if in_window > 0 else 0
    if cost > limit:
        return 0, limit - in_window, -1, reset_us
    if in_window + cost > limit:
        # limit - cost < in_window <= count <= cap: the entry is held
        s = head - 1 - (limit - cost)
        blocking = pool[r0 + (s + cap if s < 0 else s)]
        return 0, limit - in_window, blocking + window_us - now_us, reset_us
    if cost > 0:
        stamp = now_us
        if count > 0 and newest > now_us:
            stamp = newest
        for _ in range(cost):
            pool[r0 + head] = stamp
            head += 1
            if head == cap:
                head = 0
        pool[b0 + RING_HEAD] = head
        pool[b0 + RING_COUNT] = min(count + cost, cap)
        in_window += cost
        reset_us = stamp + window_us - now_us
    return 1, limit - in_window, -1, reset_us


@dataclass(frozen=True, slots=True)
class SlidingWindowLog(WindowAlgorithm):
    """At most ``limit`` cost units in any window ``(now - window_s, now]`` (exact log).

    ``limit``: cost units per window (an int >= 1); ``window_s``: window length in seconds (a
    whole number of microseconds). ``cost=0`` asks without recording.
    """

    # field() keeps dataclass from taking the base class's abstract ``limit`` as a default.
    limit: int = field()
    window_s: float = field()

    name: ClassVar[str] = "sliding_log"

    def __post_init__(self) -> None:
        require_int("limit", self.limit, minimum=1)
        if self.limit > MAX_LOG_LIMIT:
            # State is limit + 2 integers per key, allocated at the key's first request.
            raise ValueError(
                f"limit={self.limit} needs {self.limit + 2} integers of state per key; a sliding "
                f"log allows limit <= {MAX_LOG_LIMIT} ({MAX_STATE_INTS_PER_KEY} integers, 8 MiB "
                "per key). For larger limits use a sliding_counter or bucketed_window"
            )
        window_us = seconds_to_us("window_s", self.window_s)
        if window_us >= MAX_EXACT_INT // 4:
            raise ValueError(f"window_s={self.window_s} is too long to stay below 2**53 us")
        self._cache_params((self.limit, window_us))

    @property
    def kernel(self) -> Kernel:
        return sliding_log_kernel

    @property
    def state_size(self) -> int:
        return self.limit + 2

    def expires_at_us(self, state: State) -> int:
        """The newest entry's stamp plus the window: from then on nothing is in any window."""
        if state[0] == 0:
            return ABSENT_EXPIRY_US
        return int(state[2 + (state[1] - 1 + self.limit) % self.limit]) + self.window_us
