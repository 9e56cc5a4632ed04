"""Circuit breaker with Sentinel 1.8 semantics (semantics.md §4.3).

Parameters map onto Sentinel's ``DegradeRule`` like this (one meaning per field here, where
Sentinel's ``count`` means three different things):

=====================  ===========================  ==========================================
ratesim                Sentinel ``DegradeRule``     meaning
=====================  ===========================  ==========================================
``grade``              ``grade``                    ``"slow_ratio"`` = RT (0),
                                                    ``"error_ratio"`` = EXCEPTION_RATIO (1),
                                                    ``"error_count"`` = EXCEPTION_COUNT (2)
``threshold``          ``slowRatioThreshold`` (RT), the ratio in [0, 1] for the ratio grades;
                       ``count`` (the others)       the error count for ``"error_count"``
``max_rt_s``           ``count`` (RT grade, ms)     a call is slow iff ``rt > max_rt``
                                                    (``"slow_ratio"`` only, else ``None``)
``min_requests``       ``minRequestAmount``         no trip below this many calls in the window
``stat_interval_s``    ``statIntervalMs``           length of the one tumbling stats bucket
``open_s``             ``timeWindow`` (s)           how long OPEN lasts before a probe
=====================  ===========================  ==========================================

Exactness: ratio thresholds are stored as integer parts per million (``threshold_ppm =
round(threshold * 1e6)``) and compared by cross-multiplication, ``bad * 1e6 > threshold_ppm *
total``, so Python and numba agree bit for bit (a threshold finer than 1 ppm is rounded). An
``"error_count"`` threshold ``c`` is stored as ``floor(c)``: for integer counts ``errors > c``
iff ``errors > floor(c)``, as in Sentinel, which compares a long to a double.

States and transitions (Sentinel ``AbstractCircuitBreaker`` and its two subclasses):

* CLOSED: ``try_pass`` lets everything through. On each completion the call is counted in the
  current bucket (``bad`` = slow for the RT grade, errored for the others); the breaker trips to
  OPEN with ``next_retry = now + open`` when ``total >= min_requests`` and ``bad/total >
  threshold`` (ratio grades; the RT grade also trips on ``bad/total == threshold == 1``,
  Sentinel PR #1779) or ``bad > threshold`` (``"error_count"``).
* OPEN: ``try_pass`` rejects until ``now >= next_retry``; the first call from then on becomes
  the probe (HALF_OPEN). Completions are counted but change no state.
* HALF_OPEN: ``try_pass`` rejects. The next completion decides, as in Sentinel (which does not
  tell the probe from an older call finishing late): bad -> OPEN with ``next_retry = now +
  open``; good -> CLOSED and the current bucket is emptied. ``release_probe`` puts a probe that
  was blocked later by another layer back to OPEN *without* moving ``next_retry`` (Sentinel's
  fix for issue #1638), so the next call may probe at once.

Stats: Sentinel's LeapArray with one bucket, i.e. a tumbling window aligned to multiples of
``stat_interval_us`` (a bucket covers ``[k*interval, (k+1)*interval)``). A completion in a later
window empties the bucket first.

Time going backwards (never an exception):

* a completion timestamped before the current bucket's start is counted into the current
  bucket (Sentinel would count it into a throwaway bucket and lose it);
* ``try_pass`` with ``now < next_retry`` stays OPEN and rejects, however far back ``now`` is;
* an RT below zero (start and end read from a clock that stepped back) is simply not slow.

Kernel parameters ``p = (grade, threshold, max_rt_us, min_requests, stat_interval_us,
open_us)`` with ``threshold`` in ppm (ratio grades) or a count. State: :data:`STATE_SIZE` ints
(a list, or an int64 array for numba), built by ``new_state()`` (not all zeros)::

    STATE            CLOSED (0), OPEN (1) or HALF_OPEN (2)
    NEXT_RETRY_US    when OPEN may let a probe through
    BUCKET_START_US  start of the stats bucket (NO_BUCKET_US before the first completion)
    TOTAL, BAD       calls and slow/errored calls counted in that bucket
    TRIPS            times the breaker went to OPEN (from CLOSED or after a bad probe), ever
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from .base import MAX_EXACT_INT, US_PER_S, State, check_now, require_int, seconds_to_us

CLOSED = 0
OPEN = 1
HALF_OPEN = 2
STATE_NAMES = ("CLOSED", "OPEN", "HALF_OPEN")

#: Grade codes, equal to Sentinel's ``RuleConstant.DEGRADE_GRADE_*``.
GRADE_SLOW_RATIO = 0
GRADE_ERROR_RATIO = 1
GRADE_ERROR_COUNT = 2
GRADES = {
    "slow_ratio": GRADE_SLOW_RATIO,
    "error_ratio": GRADE_ERROR_RATIO,
    "error_count": GRADE_ERROR_COUNT,
}

PPM = 1_000_000

# State indices.
STATE = 0
NEXT_RETRY_US = 1
BUCKET_START_US = 2
TOTAL = 3
BAD = 4
TRIPS = 5
STATE_SIZE = 6

#: Bucket start of a breaker that has never seen a completion (any real window is later).
NO_BUCKET_US = -(2**62)
#: Longest duration parameter (2**51 us, about 71 years): ``next_retry = now + open`` stays in
#: int64 (numba) and below 2**53 for ``|now_us| < 2**52``.
MAX_DURATION_US = MAX_EXACT_INT // 4


def _duration_us(name: str, seconds: float, *, minimum_us: int = 1) -> int:
    """``seconds_to_us`` plus the upper bound every duration parameter shares."""
    us = seconds_to_us(name, seconds, minimum_us=minimum_us)
    if us >= MAX_DURATION_US:
        raise ValueError(f"{name} must be below 2**51 us (about 71 years), got {seconds!r} s")
    return us


def breaker_try_pass(p: tuple[int, ...], state: State, now_us: int) -> int:
    """May a request pass at ``now_us``? Returns 1 (pass, possibly as the probe) or 0."""
    if state[STATE] == CLOSED:
        return 1
    if state[STATE] == OPEN and now_us >= state[NEXT_RETRY_US]:
        state[STATE] = HALF_OPEN
        return 1
    return 0


def breaker_on_complete(
    p: tuple[int, ...], state: State, now_us: int, rt_us: int, error: int
) -> int:
    """Record a completion (response time ``rt_us``, ``error`` 0/1); returns the new state."""
    # Everything is inlined (no helper calls) so that numba.njit(this function) compiles alone.
    interval = p[4]
    if now_us >= 0:
        start = now_us - now_us % interval
    else:
        # floor(now / interval) * interval with // on non-negative operands only.
        start = -((-now_us + interval - 1) // interval) * interval
    if start > state[BUCKET_START_US]:
        state[BUCKET_START_US] = start
        state[TOTAL] = 0
        state[BAD] = 0
    bad = 0
    if p[0] == GRADE_SLOW_RATIO:
        if rt_us > p[2]:
            bad = 1
    elif error != 0:
        bad = 1
    state[TOTAL] += 1
    state[BAD] += bad
    if state[STATE] == HALF_OPEN:
        if bad == 1:
            state[STATE] = OPEN
            state[NEXT_RETRY_US] = now_us + p[5]
            state[TRIPS] += 1
        else:
            state[STATE] = CLOSED
            state[TOTAL] = 0
            state[BAD] = 0
        return state[STATE]
    if state[STATE] != CLOSED or state[TOTAL] < p[3]:
        return state[STATE]
    total = state[TOTAL]
    bad_total = state[BAD]
    if p[0] == GRADE_ERROR_COUNT:
        trip = bad_total > p[1]
    else:
        # PR #1779: a 100% slow ratio must also trip a breaker whose threshold is 100%.
        trip = bad_total * PPM > p[1] * total or (
            p[0] == GRADE_SLOW_RATIO and p[1] == PPM and bad_total == total
        )
    if trip:
        state[STATE] = OPEN
        state[NEXT_RETRY_US] = now_us + p[5]
        state[TRIPS] += 1
    return state[STATE]


def breaker_release_probe(p: tuple[int, ...], state: State, now_us: int) -> int:
    """Undo a probe blocked by another layer: HALF_OPEN -> OPEN, ``next_retry`` unchanged.

    Returns 1 if the state was HALF_OPEN (and is now OPEN), else 0 and nothing changes.
    """
    if state[STATE] != HALF_OPEN:
        return 0
    state[STATE] = OPEN
    return 1


def state_name(state: State) -> str:
    """``"CLOSED"``, ``"OPEN"`` or ``"HALF_OPEN"`` for a breaker state."""
    return STATE_NAMES[int(state[STATE])]


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """Sentinel 1.8 circuit breaker (see the module docstring for the field mapping).

    ``grade``: ``"slow_ratio"``, ``"error_ratio"`` or ``"error_count"``. ``threshold``: a ratio
    in [0, 1] (ratio grades) or an error count >= 0. ``max_rt_s``: slow-call threshold in
    seconds, required for ``"slow_ratio"`` and ``None`` otherwise. ``stat_interval_s`` and
    ``open_s`` are seconds (whole microseconds, > 0).

    Example, the seed's breaker (RT > 1 s is slow, 30% over 10 s opens, probe after 10 s)::

        CircuitBreaker("slow_ratio", 0.3, max_rt_s=1.0, stat_interval_s=10.0, open_s=10.0)

    (the seed says ">= 30%"; Sentinel, and so ratesim, trips on "> 30%".)
    """

    grade: str
    threshold: float
    max_rt_s: float | None = None
    min_requests: int = 5
    stat_interval_s: float = 1.0
    open_s: float = 10.0
    _params: tuple[int, ...] = field(init=False, repr=False, compare=False, hash=False)

    name: ClassVar[str] = "breaker"

    def __post_init__(self) -> None:
        if self.grade not in GRADES:
            raise ValueError(f"grade must be one of {sorted(GRADES)}, got {self.grade!r}")
        self._check_threshold()
        if self.grade == "slow_ratio":
            if self.max_rt_s is None:
                raise ValueError("max_rt_s is required for grade 'slow_ratio', got None")
            _duration_us("max_rt_s", self.max_rt_s, minimum_us=0)
        elif self.max_rt_s is not None:
            raise ValueError(
                f"max_rt_s is only used by grade 'slow_ratio', got {self.max_rt_s!r} "
                f"with grade {self.grade!r}"
            )
        require_int("min_requests", self.min_requests, minimum=1)
        if self.min_requests >= MAX_EXACT_INT:
            raise ValueError(f"min_requests must be below 2**53, got {self.min_requests!r}")
        stat_interval_us = _duration_us("stat_interval_s", self.stat_interval_s)
        open_us = _duration_us("open_s", self.open_s)
        if self.grade == "error_count":
            threshold = int(math.floor(self.threshold))
        else:
            threshold = int(round(self.threshold * PPM))
        max_rt_us = 0 if self.max_rt_s is None else round(self.max_rt_s * US_PER_S)
        params = (GRADES[self.grade], threshold, max_rt_us, self.min_requests)
        # Cached: the kernels are called once per request.
        object.__setattr__(self, "_params", (*params, stat_interval_us, open_us))

    def _check_threshold(self) -> None:
        t = self.threshold
        numeric = isinstance(t, int | float | np.integer | np.floating)
        if isinstance(t, bool) or not numeric or not math.isfinite(t):
            raise ValueError(f"threshold must be a finite number, got {t!r}")
        if t < 0:
            raise ValueError(f"threshold must be >= 0, got {t!r}")
        if self.grade == "error_count" and t >= MAX_EXACT_INT:
            raise ValueError(f"threshold must be below 2**53 errors, got {t!r}")
        if self.grade != "error_count" and t > 1:
            raise ValueError(
                f"threshold must be a ratio in [0, 1] for grade {self.grade!r}, got {t!r}"
            )

    @property
    def grade_code(self) -> int:
        """Sentinel's grade number: 0 slow ratio (RT), 1 error ratio, 2 error count."""
        return self._params[0]

    @property
    def threshold_ppm(self) -> int:
        """The ratio threshold in parts per million (ratio grades only)."""
        if self.grade == "error_count":
            raise ValueError("grade 'error_count' has a count threshold, not a ratio")
        return self._params[1]

    @property
    def max_rt_us(self) -> int:
        """Slow-call threshold in microseconds (0 for the error grades, where it is unused)."""
        return self._params[2]

    @property
    def stat_interval_us(self) -> int:
        """Length of the tumbling stats bucket, in microseconds."""
        return self._params[4]

    @property
    def open_us(self) -> int:
        """How long OPEN lasts before a probe may pass, in microseconds."""
        return self._params[5]

    @property
    def params(self) -> tuple[int, ...]:
        """``(grade, threshold, max_rt_us, min_requests, stat_interval_us, open_us)``."""
        return self._params

    @property
    def state_size(self) -> int:
        return STATE_SIZE

    def new_state(self) -> list[int]:
        """CLOSED, no bucket yet, no trips."""
        state = [0] * STATE_SIZE
        state[BUCKET_START_US] = NO_BUCKET_US
        return state

    def try_pass(self, state: State, now_us: int) -> bool:
        """Run :func:`breaker_try_pass`: True if the request may pass (maybe as the probe)."""
        return breaker_try_pass(self._params, state, check_now(now_us)) == 1

    def on_complete(self, state: State, now_us: int, rt_us: int, error: int | bool = 0) -> int:
        """Run :func:`breaker_on_complete`; returns the new state code (CLOSED/OPEN/HALF_OPEN).

        ``rt_us``: response time in microseconds (any sign); ``error``: 0/1 or a bool.
        """
        if isinstance(rt_us, bool) or not isinstance(rt_us, int | np.integer):
            raise ValueError(f"rt_us must be an integer number of microseconds, got {rt_us!r}")
        if error not in (0, 1):
            raise ValueError(f"error must be 0/1 or a bool, got {error!r}")
        return breaker_on_complete(self._params, state, check_now(now_us), int(rt_us), int(error))

    def release_probe(self, state: State, now_us: int) -> bool:
        """Run :func:`breaker_release_probe`: True if a HALF_OPEN probe was put back to OPEN."""
        return breaker_release_probe(self._params, state, check_now(now_us)) == 1

    def state_name(self, state: State) -> str:
        """``"CLOSED"``, ``"OPEN"`` or ``"HALF_OPEN"``."""
        return state_name(state)
