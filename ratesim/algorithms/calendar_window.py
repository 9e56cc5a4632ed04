"""Fixed windows keyed by the window they fall in: Kong's calendar windows and Envoy's counted hits.

Envoy's ratelimit service and Kong's ``rate-limiting`` plugin keep one counter *per window*:
the store key carries the window's start (Envoy: ``floor(now / unit) * unit``; Kong: the UTC
calendar start of the second, minute, hour, day, month or year), computed from the caller's own
clock. Two behaviours differ from :class:`~ratesim.algorithms.FixedWindow`:

* **Counted rejections** (``count_rejected``): Envoy runs ``INCRBY`` and compares afterwards
  (OVER_LIMIT iff the count *after* the increment exceeds the limit), and so does Kong's ``redis``
  policy with ``sync_rate = -1``: a rejected hit still uses up the window. With
  ``count_rejected=False`` (Kong ``local`` / ``cluster``) only admitted requests count and a
  request is rejected iff ``count + cost > limit`` (Kong: ``limit - usage <= 0``).
* **Calendar months and years** (Kong): a month window runs from 00:00:00 UTC on the 1st to the
  next 1st (28-31 days), a year from 1 January. Seconds to days are epoch-aligned (a UTC day is
  86,400 Unix seconds). The integer civil-calendar conversion is Howard Hinnant's
  ``days_from_civil`` / ``civil_from_days`` (proleptic Gregorian, any sign).

**Two windows held.** Because the real stores key counters by window, a gateway whose clock lags
by less than one window still counts into *its own* (older) window's counter, not the newest
one. The state keeps the newest window and the one before it, so a lagging caller is judged
against, and charged to, the previous window's count; a caller lagging by more than a window is
judged against and charged to that oldest held window (the older counter is not kept).

A stored count saturates at ``limit + 1``: any count above the limit decides the same, and the
state stays exact in Lua whatever the traffic. ``cost = 0`` is a peek (admitted iff the count is
within the limit, nothing stored). ``retry_after_us`` (rejected) is the time until the caller's
window ends (``-1`` when the cost exceeds the limit), ``reset_after_us`` the time until the
caller's window ends (0 if it counts nothing).

Kernel parameters ``p = (limit, window_us, calendar, count_rejected)``: ``calendar`` 0 = fixed
windows of ``window_us``, 1 = UTC calendar months, 2 = UTC calendar years (``window_us`` 0).
State ``[window_index, count, previous_count]`` (both counts 0 = absent key); the index of a
month is ``12 * year + month - 1``, of a year the year.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .base import (
    MAX_EXACT_INT,
    US_PER_S,
    CachedParamsAlgorithm,
    Kernel,
    State,
    require_int,
    seconds_to_us,
)

ABSENT_EXPIRY_US = -(2**62)
US_PER_DAY = 86_400 * US_PER_S
#: Kong's periods (and Envoy's units, which share the first four) as fixed lengths in seconds;
#: month and year are calendar windows for Kong, 30 and 365 days for Envoy.
UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400, "week": 604_800}
CALENDAR_UNITS = {"month": 1, "year": 2}
MAX_WINDOW_US = MAX_EXACT_INT // 4


def calendar_window_kernel(
    p: tuple[int, ...], state: State, now_us: int, cost: int, p0: int = 0, s0: int = 0
) -> tuple[int, int, int, int]:
    """One request of ``cost`` at ``now_us``; returns ``(allowed, remaining, retry_after_us,
    reset_after_us)`` (µs)."""
    limit = p[p0 + 0]
    window_us = p[p0 + 1]
    cal = p[p0 + 2]
    count_rejected = p[p0 + 3]
    # -- the caller's window index j and the start of window j (µs) ---------------------------
    if cal == 0:
        j = now_us // window_us if now_us >= 0 else -((window_us - 1 - now_us) // window_us)
    else:
        days = now_us // US_PER_DAY if now_us >= 0 else -((US_PER_DAY - 1 - now_us) // US_PER_DAY)
        z = days + 719468
        era = z // 146097 if z >= 0 else -((146096 - z) // 146097)
        doe = z - era * 146097
        yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
        doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
        mp = (5 * doy + 2) // 153
        month = mp + 3 if mp < 10 else mp - 9
        year = yoe + era * 400 + (1 if month <= 2 else 0)
        j = year if cal == 2 else year * 12 + month - 1
    idx = state[s0 + 0]
    cur = state[s0 + 1]
    prev = state[s0 + 2]
    if cur == 0 and prev == 0:
        idx = j
    elif j > idx:
        prev = cur if j == idx + 1 else 0
        cur = 0
        idx = j
    lagging = 1 if j < idx else 0
    use = idx - lagging
    count = prev if lagging else cur
    # -- the end of window `use` (µs): the start of window use + 1 ------------------------------
    if cal == 0:
        end_us = (use + 1) * window_us
    else:
        if cal == 2:
            y = use + 1
            m = 1
        else:
            nxt = use + 1
            y = nxt // 12 if nxt >= 0 else -((11 - nxt) // 12)
            m = nxt - 12 * y + 1
        y -= 1 if m <= 2 else 0
        era = y // 400 if y >= 0 else -((399 - y) // 400)
        yoe = y - era * 400
        doy = (153 * (m - 3 if m > 2 else m + 9) + 2) // 5
        doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
        end_us = (era * 146097 + doe - 719468) * US_PER_DAY
    end_in_us = end_us - now_us
    if cost > limit:
        allowed = 0
        retry_us = -1
    elif count + cost <= limit:
        allowed = 1
        retry_us = -1
    else:
        allowed = 0
        retry_us = end_in_us
    if cost > 0 and (allowed == 1 or count_rejected != 0):
        count = min(count + cost, limit + 1) if cost <= limit + 1 else limit + 1
        if lagging:
            prev = count
        else:
            cur = count
        state[s0 + 0] = idx
        state[s0 + 1] = cur
        state[s0 + 2] = prev
    reset_us = end_in_us if count > 0 else 0
    return allowed, max(limit - count, 0), retry_us, reset_us


def _days_from_civil(year: int, month: int) -> int:
    """Days from 1970-01-01 to the 1st of ``month`` of ``year`` (proleptic Gregorian)."""
    y = year - (1 if month <= 2 else 0)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


@dataclass(frozen=True, slots=True)
class _KeyedWindow(CachedParamsAlgorithm):
    """Shared members of the two classes that run :func:`calendar_window_kernel`."""

    @property
    def kernel(self) -> Kernel:
        return calendar_window_kernel

    @property
    def state_size(self) -> int:
        return 3

    def window_end_us(self, index: int) -> int:
        """The instant (µs) window ``index`` ends, i.e. window ``index + 1`` starts."""
        window_us, cal = self._params[1], self._params[2]
        if cal == 0:
            return (index + 1) * window_us
        if cal == 2:
            return _days_from_civil(index + 1, 1) * US_PER_DAY
        y, m0 = divmod(index + 1, 12)
        return _days_from_civil(y, m0 + 1) * US_PER_DAY

    def expires_at_us(self, state: State) -> int:
        """The end of the newest window held: from then on every window is a fresh one."""
        if state[1] == 0 and state[2] == 0:
            return ABSENT_EXPIRY_US
        return self.window_end_us(int(state[0]))


def _check_limit(limit: int) -> int:
    limit = require_int("limit", limit, minimum=1)
    if limit >= MAX_EXACT_INT // 4:
        raise ValueError(f"limit={limit} is too large for exact integers (>= 2**51)")
    return limit


@dataclass(frozen=True, slots=True)
class CalendarWindow(_KeyedWindow):
    """Kong ``rate-limiting``: at most ``limit`` per UTC calendar ``unit``.

    ``unit``: ``second``, ``minute``, ``hour``, ``day``, ``month`` or ``year`` (also ``week``:
    7 days from the Unix epoch, a Thursday). ``count_rejected``: rejected requests count too
    (Kong's ``redis`` policy with ``sync_rate = -1``).
    """

    # field() keeps dataclass from taking the base class's abstract ``limit`` as a default.
    limit: int = field()
    unit: str = field()
    count_rejected: bool = False

    name: ClassVar[str] = "calendar_window"

    def __post_init__(self) -> None:
        limit = _check_limit(self.limit)
        if not isinstance(self.count_rejected, bool):
            raise ValueError(f"count_rejected must be a bool, got {self.count_rejected!r}")
        if self.unit in UNIT_SECONDS:
            params = (limit, UNIT_SECONDS[self.unit] * US_PER_S, 0, int(self.count_rejected))
        elif self.unit in CALENDAR_UNITS:
            params = (limit, 0, CALENDAR_UNITS[self.unit], int(self.count_rejected))
        else:
            units = (*UNIT_SECONDS, *CALENDAR_UNITS)
            raise ValueError(f"unit must be one of {units}, got {self.unit!r}")
        self._cache_params(params)


@dataclass(frozen=True, slots=True)
class CountingFixedWindow(_KeyedWindow):
    """Envoy ratelimit: ``limit`` per epoch-aligned window of ``window_s``, **every hit counted**.

    ``INCRBY`` then compare: a rejected request still uses up its window. ``window_s`` is seconds
    (Envoy's units: 1, 60, 3600, 86400; week 604800, month 30 days, year 365 days).
    """

    limit: int = field()
    window_s: float = field()

    name: ClassVar[str] = "counting_fixed_window"

    def __post_init__(self) -> None:
        limit = _check_limit(self.limit)
        window_us = seconds_to_us("window_s", self.window_s)
        if window_us >= MAX_WINDOW_US:
            raise ValueError(f"window_s={self.window_s} is too long (>= 2**51 us)")
        self._cache_params((limit, window_us, 0, 1))
