"""GCRA with the exact semantics of redis-cell's ``CL.THROTTLE`` (semantics.md §1.3).

Kernel parameters ``p = (T_us, DVT_us, limit)``: the emission interval
``T = period / count_per_period`` truncated to whole microseconds (redis-cell truncates to whole
nanoseconds; the two agree whenever ``T`` is a whole number of microseconds), the delay
variation tolerance ``DVT = T * (max_burst + 1)``, and ``limit = max_burst + 1``.

State ``[present, tat_us]``: the theoretical arrival time of the next request at rest.

Time going backwards needs no special case: a caller whose clock lags the writer sees a TAT
further in the future, so it gets *less* capacity (and a longer ``retry_after``); a caller whose
clock leads writes a TAT that lagging callers will respect. State older than ``now`` (TAT in the
past) decides exactly like an absent key; redis-cell agrees except in the sub-millisecond window
before its truncated ``PEXPIRE`` fires, where it would report a negative ``reset_after``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import (
    MAX_EXACT_INT,
    CachedParamsAlgorithm,
    Kernel,
    Params,
    State,
    require_int,
    seconds_to_us,
)

ABSENT_EXPIRY_US = -(2**62)
#: Longest tolerance ``DVT`` allowed (2**51 us, about 71 years): a TAT is at most ``now + DVT``
#: and an intermediate ``new_tat`` at most ``now + 2 * DVT``, so with ``|now_us| < 2**52`` (Unix
#: epoch microseconds until 2112) every value the kernel and its Lua port touch stays below 2**53.
MAX_TOLERANCE_US = MAX_EXACT_INT // 4


def gcra_kernel(
    p: Params,
    state: State,
    now_us: int,
    cost: int,
    p0: int = 0,
    s0: int = 0,
) -> tuple[int, int, int, int]:
    """One ``CL.THROTTLE key max_burst count period cost`` at ``now_us``.

    Returns ``(allowed, remaining, retry_after_us, reset_after_us)``; ``retry_after_us`` is -1
    when allowed or when ``cost`` exceeds the limit (it can never fit).
    """
    t_us = p[p0]
    dvt_us = p[p0 + 1]
    limit = p[p0 + 2]
    tat = now_us
    if state[s0] != 0 and state[s0 + 1] > now_us:
        tat = state[s0 + 1]
    if cost > limit:
        # inc > DVT: never fits. Checked before multiplying so cost * T cannot overflow.
        ttl = tat - now_us
        nxt = dvt_us - ttl
        remaining = nxt // t_us if nxt >= 0 else 0
        return 0, remaining, -1, ttl
    new_tat = tat + cost * t_us
    diff = now_us - (new_tat - dvt_us)
    if diff < 0:
        ttl = tat - now_us
        nxt = dvt_us - ttl
        remaining = nxt // t_us if nxt >= 0 else 0
        return 0, remaining, -diff, ttl
    state[s0] = 1
    state[s0 + 1] = new_tat
    ttl = new_tat - now_us
    nxt = dvt_us - ttl
    remaining = nxt // t_us if nxt >= 0 else 0
    return 1, remaining, -1, ttl


@dataclass(frozen=True, slots=True)
class GCRA(CachedParamsAlgorithm):
    """redis-cell's ``CL.THROTTLE <key> max_burst count_per_period period [quantity]``.

    At rest ``max_burst + 1`` requests pass at once; then one every ``period_s /
    count_per_period`` seconds. ``cost=0`` is a peek (always allowed, changes nothing that
    matters). A limited request changes nothing.
    """

    max_burst: int
    count_per_period: int
    period_s: float

    name: ClassVar[str] = "gcra"

    def __post_init__(self) -> None:
        require_int("max_burst", self.max_burst, minimum=0)
        require_int("count_per_period", self.count_per_period, minimum=1)
        period_us = seconds_to_us("period_s", self.period_s)
        if period_us // self.count_per_period < 1:
            raise ValueError(
                f"count_per_period={self.count_per_period} per period_s={self.period_s} gives an "
                "emission interval below 1 us, which integer microseconds cannot represent"
            )
        if self.emission_interval_us * (self.max_burst + 1) >= MAX_TOLERANCE_US:
            raise ValueError(
                f"max_burst={self.max_burst} with count_per_period={self.count_per_period} per "
                f"period_s={self.period_s} gives a tolerance of >= 2**51 us: a TAT of now + "
                "tolerance at epoch-scale times would leave the 2**53 range Lua represents exactly"
            )
        params = (self.emission_interval_us, self.tolerance_us, self.max_burst + 1)
        self._cache_params(params)

    @property
    def emission_interval_us(self) -> int:
        """``T``: microseconds between requests at the sustained rate (truncated)."""
        return round(self.period_s * 1_000_000) // self.count_per_period

    @property
    def tolerance_us(self) -> int:
        """``DVT = T * (max_burst + 1)`` in microseconds."""
        return self.emission_interval_us * (self.max_burst + 1)

    @property
    def rate_per_s(self) -> float:
        """Sustained rate in requests per second (for reports; the kernel never uses it)."""
        return self.count_per_period / self.period_s

    @property
    def kernel(self) -> Kernel:
        return gcra_kernel

    @property
    def state_size(self) -> int:
        return 2

    @property
    def limit(self) -> int:
        return self.max_burst + 1

    def expires_at_us(self, state: State) -> int:
        # int(): a numpy state would otherwise leak np.int64 into the store's bookkeeping.
        return int(state[1]) if state[0] else ABSENT_EXPIRY_US
