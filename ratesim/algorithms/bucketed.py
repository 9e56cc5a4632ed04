"""Bucketed sliding windows: Sentinel's LeapArray, and the seed's timer-swapped double buffer.

Both split the window into ``buckets`` buckets of ``bucket_us = window_us / buckets`` (which must
be whole: ``window_us % buckets == 0``) aligned on multiples of ``bucket_us`` (floor division
also for negative times; the kernels divide non-negative operands only). A rejected request
records nothing, ``cost=0`` asks without recording, and costs above ``limit`` never fit
(``retry_after_us = -1``).

BucketedWindow (Sentinel LeapArray + DefaultController, semantics §4.1/§4.2)
----------------------------------------------------------------------------
Slot ``k`` of ``buckets`` holds one bucket ``(start_us, count)``. A request at ``now`` maps to
bucket ``start = floor(now / bucket_us) * bucket_us`` in slot ``(start / bucket_us) mod
buckets``. It is blocked iff ``passed + cost > limit``, where ``passed`` sums the buckets still
valid. Sentinel first resets the request's slot if it holds an older bucket (``currentWindow()``
inside ``ArrayMetric.pass()``), then sums buckets with ``now - start <= interval``
(``isWindowDeprecated`` is strict). Because starts are aligned, the two steps together are
exactly "``now - start < window_us``", which is the kernel's rule: a bucket counts for requests
in ``[start, start + window_us)``. The inclusive boundary (at 1500 ms a bucket started at 500 ms
of a 1000 ms interval still counts, at 1501 ms it does not) is visible only to a reader that
skips the reset, which :meth:`BucketedWindow.passed` models. An admitted request adds its cost to
its bucket (a stale bucket in its slot is replaced). For requests in time order, any span of
``buckets`` aligned buckets admits at most ``limit``; an unaligned window of ``window_us`` can see
up to ``2 * limit`` (a bucket's requests are forgotten up to ``bucket_us`` early).

*Time going backwards*: if the request's slot holds a bucket newer than the request's own (a
leading clock wrote it), Sentinel hands out a throwaway bucket. The request is judged with the
current valid counts (newer buckets included) and, if admitted, its cost is recorded nowhere
(lost), as in Sentinel. A slot holding ``count == 0`` is empty (Sentinel's null slot).
Sentinel also resets a stale slot when a request only reads it (even a blocked one); ratesim
writes on admission only, which differs only when a lagging clock later maps to that slot.

Kernel parameters ``p = (limit, window_us, buckets, bucket_us)``. State (size ``2 * buckets``)::

    state[2k]       start_us of the bucket in slot k
    state[2k + 1]   cost admitted into it (0 = empty slot)

``retry_after_us`` is the exact time until enough of the oldest buckets have left the window for
the request to fit (no other traffic); ``reset_after_us`` the time until none is left.

DoubleBufferedWindow (the seed's active/pending buffers)
--------------------------------------------------------
The seed keeps bucket counters in an ``active`` buffer that takes writes, and a timer that every
``swap_interval`` swaps in the zeroed ``pending`` buffer and zeroes the old one. ratesim's exact
state machine: a ring of ``buckets`` counters whose *rotation only happens at swap instants*
(multiples of ``swap_us`` since time 0). Between swaps the ring stands still:

* the head bucket ("active") is ``H = floor(sw / bucket_us)`` with ``sw = floor(now / swap_us)
  * swap_us`` the last swap instant; an admitted request adds its cost to the head at once, even
  if its own time is already in a later bucket;
* a swap moves the head to the bucket of the swap instant; every bucket that falls out of the
  ring (index ``<= H - buckets``, i.e. the oldest ones) is zeroed and reused as a new head
  ("pending" becomes "active", the old one is zeroed); a swap that stays in the same bucket
  changes nothing;
* a request is checked against the sum of the ring: ``view + cost > limit`` rejects.

So reads lag by up to one swap interval: old counts leave the view only at a swap, and requests
are charged to the bucket of the last swap, so they are forgotten up to ``swap_us + bucket_us``
early. Swaps are applied lazily, when a request looks (a rejected request computes the swapped
view without writing it).

Worked example (tested): ``limit 4, window 4 s, 4 buckets of 1 s, swap every 2 s``. Four requests
at 3.5 s: the last swap was at 2 s, head = bucket 2, so all four are charged to bucket 2 (the
exact log would expire them at 7.5 s, Sentinel's LeapArray at 7 s). At 5.9 s the swap at 4 s
moved the head to bucket 4, bucket 2 is still in the ring (4 - 4 < 2): view 4, rejected, retry
after 0.1 s. The swap at 6 s moves the head to bucket 6, four buckets on, so all four slots
are zeroed, bucket 2's among them: at 6.0 s four more requests pass, 8 in 2.5 s, where the exact
log and the LeapArray reject at 6.0 s.

**Bound** (for requests in time order): a request at ``a`` sits in a bucket starting after ``a -
swap_us - bucket_us + 1`` and stays in the view until the first swap at or after that start plus
the window. So any half-open interval of ``G = window_us - swap_us - bucket_us + 2`` us admits at
most ``limit`` (the exact log: ``window_us``), and any window of ``window_us`` at most
``ceil(window_us / G) * limit`` (``2 * limit`` when ``swap_us + bucket_us <= window_us / 2 +
2``). With ``G <= 0`` (a swap interval near the window or longer) there is no such bound.

*Time going backwards*: a request whose last swap instant is older than the head is judged against
the current ring and charged to the head (never forgotten early).

Kernel parameters ``p = (limit, window_us, buckets, bucket_us, swap_us)``. State (size ``buckets
+ 2``)::

    state[0]       H: head bucket index (bucket H starts at H * bucket_us)
    state[1]       total: sum of the ring (0 = absent key)
    state[2 + k]   count of the ring bucket whose index is congruent to k mod buckets

``retry_after_us`` is the exact time (no other traffic) until the swap that drops enough old
buckets; ``reset_after_us`` the time until the swap that zeroes the head bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import (
    MAX_BUCKETS,
    MAX_EXACT_INT,
    Kernel,
    Params,
    State,
    WindowAlgorithm,
    require_int,
    seconds_to_us,
)

ABSENT_EXPIRY_US = -(2**62)


def bucketed_kernel(
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
    n = p[p0 + 2]
    bucket_us = p[p0 + 3]
    if now_us >= 0:
        b = now_us // bucket_us
        slot = b % n
    else:
        b = -((bucket_us - 1 - now_us) // bucket_us)
        slot = n - 1 - (-b - 1) % n
    start = b * bucket_us
    # A bucket counts for requests in [start, start + window): Sentinel's reset-then-sum.
    passed = 0
    newest = start
    any_valid = 0
    for k in range(n):
        if state[s0 + 2 * k + 1] > 0 and now_us - state[s0 + 2 * k] < window_us:
            passed += state[s0 + 2 * k + 1]
            if any_valid == 0 or state[s0 + 2 * k] > newest:
                newest = state[s0 + 2 * k]
            any_valid = 1
    allowed = 0
    retry_us = -1
    if cost <= limit and passed + cost <= limit:
        allowed = 1
        cur_start = state[s0 + 2 * slot]
        cur_count = state[s0 + 2 * slot + 1]
        # A newer bucket in the slot means our clock lags: Sentinel's throwaway bucket, lost.
        if cost > 0 and (cur_count == 0 or cur_start <= start):
            if cur_count > 0 and cur_start == start:
                state[s0 + 2 * slot + 1] = cur_count + cost
            else:
                state[s0 + 2 * slot] = start
                state[s0 + 2 * slot + 1] = cost
            passed += cost
            if any_valid == 0 or start > newest:
                newest = start
            any_valid = 1
    elif cost <= limit:
        # Drop valid buckets oldest first (starts are distinct) until the rest leave room.
        dropped = 0
        last = now_us - window_us
        for _ in range(n):
            oldest = last
            oldest_count = 0
            for k in range(n):
                sk = state[s0 + 2 * k]
                if state[s0 + 2 * k + 1] > 0 and sk > last and (oldest_count == 0 or sk < oldest):
                    oldest = sk
                    oldest_count = state[s0 + 2 * k + 1]
            dropped += oldest_count
            last = oldest
            if passed - dropped + cost <= limit:
                retry_us = oldest + window_us - now_us
                break
    reset_us = newest + window_us - now_us if any_valid == 1 else 0
    return allowed, max(limit - passed, 0), retry_us, reset_us


def double_buffered_kernel(
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
    n = p[p0 + 2]
    bucket_us = p[p0 + 3]
    swap_us = p[p0 + 4]
    if now_us >= 0:
        sw = (now_us // swap_us) * swap_us
    else:
        sw = -((swap_us - 1 - now_us) // swap_us) * swap_us
    h = sw // bucket_us if sw >= 0 else -((bucket_us - 1 - sw) // bucket_us)
    head = state[s0]
    total = state[s0 + 1]
    if total == 0:
        head = h
    if h < head:
        h = head
    hs = head % n if head >= 0 else n - 1 - (-head - 1) % n
    # Buckets the swaps up to h have zeroed: the slots after the head, at most all of them.
    d = h - head
    steps = min(d, n)
    expired = 0
    for i in range(1, steps + 1):
        expired += state[s0 + 2 + (hs + i) % n]
    view = total - expired
    allowed = 0
    retry_us = -1
    if cost <= limit and view + cost <= limit:
        allowed = 1
        if cost > 0:
            for i in range(1, steps + 1):
                state[s0 + 2 + (hs + i) % n] = 0
            hslot = (hs + d % n) % n
            state[s0 + 2 + hslot] += cost
            state[s0] = h
            state[s0 + 1] = view + cost
            head = h
            view += cost
    elif cost <= limit:
        # Oldest bucket first: bucket x leaves at the first swap instant >= (x + n) * bucket_us.
        dropped = 0
        for i in range(n):
            x = h - n + 1 + i
            if x <= head:
                dropped += state[s0 + 2 + (hs + n - (head - x)) % n]
            if view - dropped + cost <= limit:
                leave = (x + n) * bucket_us + swap_us - 1
                if leave >= 0:
                    leave = (leave // swap_us) * swap_us
                else:
                    leave = -((swap_us - 1 - leave) // swap_us) * swap_us
                retry_us = leave - now_us
                break
    reset_us = 0
    if view > 0:
        # The head bucket is the newest non-empty one; it leaves at the first swap >= (head+n)*b.
        leave = (head + n) * bucket_us + swap_us - 1
        if leave >= 0:
            leave = (leave // swap_us) * swap_us
        else:
            leave = -((swap_us - 1 - leave) // swap_us) * swap_us
        reset_us = leave - now_us
    return allowed, max(limit - view, 0), retry_us, reset_us


def _check_buckets(limit: int, window_s: float, buckets: int) -> tuple[int, int]:
    """Validate the shared parameters; return ``(window_us, bucket_us)``."""
    require_int("limit", limit, minimum=1)
    require_int("buckets", buckets, minimum=1)
    if buckets > MAX_BUCKETS:
        raise ValueError(
            f"buckets={buckets} is more than {MAX_BUCKETS}: a rejected request costs buckets**2 "
            "steps (here and in the Lua port on the Redis server)"
        )
    if limit * (buckets + 1) >= MAX_EXACT_INT:
        # The ring sums up to one limit per bucket, plus the cost: Lua's doubles must hold it.
        raise ValueError(
            f"limit={limit} with buckets={buckets}: limit * (buckets + 1) must be below 2**53 "
            f"(limit <= {(MAX_EXACT_INT - 1) // (buckets + 1)}), or Lua's doubles would answer a "
            "different remaining than the memory store"
        )
    window_us = seconds_to_us("window_s", window_s)
    if window_us % buckets != 0:
        raise ValueError(
            f"buckets={buckets} must divide the window evenly: window_s={window_s} is "
            f"{window_us} us, not a multiple of {buckets}"
        )
    if window_us >= MAX_EXACT_INT // 4:
        raise ValueError(f"window_s={window_s} is too long to stay below 2**53 us")
    return window_us, window_us // buckets


@dataclass(frozen=True, slots=True)
class _BucketRing(WindowAlgorithm):
    """Fields and validation shared by both bucket rings; ``params`` start ``(limit, window_us,
    buckets, bucket_us)``."""

    # field() keeps dataclass from taking the base class's abstract ``limit`` as a default.
    limit: int = field()
    window_s: float = field()
    buckets: int = field()

    def __post_init__(self) -> None:
        window_us, bucket_us = _check_buckets(self.limit, self.window_s, self.buckets)
        self._cache_params((self.limit, window_us, self.buckets, bucket_us))

    @property
    def bucket_us(self) -> int:
        """Bucket length in microseconds (``params[3]``)."""
        return self._params[3]


@dataclass(frozen=True, slots=True)
class BucketedWindow(_BucketRing):
    """Sentinel's LeapArray as a DefaultController QPS check: at most ``limit`` cost units in
    the ``buckets`` buckets covering the last ``window_s`` seconds.

    ``limit``: an int >= 1; ``window_s``: seconds (whole microseconds); ``buckets``: an int >= 1
    dividing the window in microseconds.
    """

    name: ClassVar[str] = "bucketed_window"

    @property
    def kernel(self) -> Kernel:
        return bucketed_kernel

    @property
    def state_size(self) -> int:
        return 2 * self.buckets

    def expires_at_us(self, state: State) -> int:
        """When the newest non-empty bucket leaves the window."""
        ends = [
            int(state[2 * k]) + self.window_us for k in range(self.buckets) if state[2 * k + 1] > 0
        ]
        return max(ends) if ends else ABSENT_EXPIRY_US

    def passed(self, state: State, now_us: int) -> int:
        """Sentinel's ``values(t)`` sum as a metrics reader sees it, without the reset of the
        current slot: buckets with ``now_us - start <= window_us`` (inclusive), in cost units.
        """
        return sum(
            int(state[2 * k + 1])
            for k in range(self.buckets)
            if state[2 * k + 1] > 0 and now_us - state[2 * k] <= self.window_us
        )


@dataclass(frozen=True, slots=True)
class DoubleBufferedWindow(_BucketRing):
    """The seed's timer-swapped active/pending bucket buffers (see the module docstring).

    ``limit``: an int >= 1; ``window_s``: seconds (whole microseconds); ``buckets``: an int >= 1
    dividing the window in microseconds; ``swap_interval_s``: seconds between swaps (whole
    microseconds, > 0).
    """

    swap_interval_s: float = field()

    name: ClassVar[str] = "double_buffered_window"

    def __post_init__(self) -> None:
        window_us, bucket_us = _check_buckets(self.limit, self.window_s, self.buckets)
        swap_us = seconds_to_us("swap_interval_s", self.swap_interval_s)
        if swap_us >= MAX_EXACT_INT // 4:
            raise ValueError(f"swap_interval_s={self.swap_interval_s} is too long")
        self._cache_params((self.limit, window_us, self.buckets, bucket_us, swap_us))

    @property
    def swap_us(self) -> int:
        """Swap interval in microseconds (``params[4]``)."""
        return self._params[4]

    @property
    def kernel(self) -> Kernel:
        return double_buffered_kernel

    @property
    def state_size(self) -> int:
        return self.buckets + 2

    def admission_bound_us(self) -> int:
        """``G``: any half-open interval this long admits at most ``limit`` (time in order).

        ``window_us - swap_us - bucket_us + 2``; ``<= 0`` means no such bound.
        """
        return self.window_us - self.swap_us - self.bucket_us + 2

    def expires_at_us(self, state: State) -> int:
        """The first swap instant that zeroes the head bucket (the newest non-empty one)."""
        if state[1] == 0:
            return ABSENT_EXPIRY_US
        leave = (int(state[0]) + self.buckets) * self.bucket_us
        # Ceil to a multiple of swap_us (Python's // floors for any sign).
        return -((-leave) // self.swap_us) * self.swap_us
