"""nginx's ``limit_req`` "excess" leaky bucket, exactly as ``ngx_http_limit_req_module.c`` runs it.

``limit_req_zone ... rate=Nr/s`` (or ``r/m``) and ``limit_req zone=... [burst=B] [nodelay |
delay=D]``. nginx keeps the rate as integer **milli-requests per second**, ``rate_milli = N *
1000 / scale`` (C division: ``1r/m`` is 16, i.e. 0.96 per minute, so one request per 62.5 s) and
works on millisecond clock readings. Per key it stores ``(excess, last)``; a request at ``now``
(ms) computes::

    ms = now - last        (ms < -60000: 1; -60000 <= ms < 0: 0)
    excess = max(0, excess - rate_milli * ms / 1000 + 1000)
    reject iff excess > burst * 1000

and only an admitted request stores ``excess`` (and ``last = now`` when ``ms != 0``). A key nginx
has never seen is created with ``excess = 0``: **an idle key admits ``burst + 1`` at once**,
then one per ``1000 / rate_milli`` s. Without ``nodelay`` an admitted request with ``excess >
delay * 1000`` is held ``(excess - delay * 1000) * 1000 / rate_milli`` ms (shaping: see
:mod:`ratesim.algorithms.shaping`; ``delay`` defaults to 0, ``nodelay`` never holds).

ratesim's clock is µs: ``now_ms = floor(now_us / 1000)``, the delay is reported in µs (whole ms).
Costs generalise the ``+ 1000`` of one request to ``+ 1000 * cost`` with the bucket's level
floored at ``-1000`` (that floor is what ``max(0, ... + 1000)`` does for one request), so an idle
key admits a request of cost ``c`` with ``excess = 1000 * (c - 1)``; ``cost = 0`` is a peek
(always admitted, nothing stored); a cost above ``burst + 1`` never fits (``retry_after_us = -1``).

**Time going backwards** is what current nginx does: up to 60 s back counts as 0 ms elapsed
(nothing drains, ``last`` stays); further back counts as 1 ms and an admitted request moves
``last`` back to ``now``. Never an exception.

Kernel parameters ``p = (rate_milli, burst_milli, delay_milli, shaping)`` with ``burst_milli =
1000 * burst``, ``delay_milli = 1000 * min(delay, burst)`` (``nodelay``: ``burst_milli``) and
``shaping = 1`` when a request can be held. State ``[present, last_ms, excess]``.
``remaining`` is how many requests of cost 1 would pass right now, ``retry_after_us`` (rejected)
the exact wait until this request fits, ``reset_after_us`` the time until the key decides like an
unseen one (drained to ``excess - rate * ms / 1000 + 1000 <= 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import MAX_EXACT_INT, CachedParamsAlgorithm, Kernel, State, require_int

ABSENT_EXPIRY_US = -(2**62)
#: nginx's backwards-step threshold: further back than this counts as 1 ms elapsed.
BACKWARDS_LIMIT_MS = 60_000
SCALES = {"s": 1, "m": 60}


def nginx_leaky_kernel(
    p: tuple[int, ...], state: State, now_us: int, cost: int, p0: int = 0, s0: int = 0
) -> tuple[int, int, int, int]:
    """One request of ``cost`` at ``now_us``; returns ``(allowed, remaining, retry_or_delay_us,
    reset_after_us)`` (µs; an admitted request's third value is its hold when ``shaping``)."""
    rate = p[p0 + 0]
    burst_m = p[p0 + 1]
    delay_m = p[p0 + 2]
    shaping = p[p0 + 3]
    now_ms = now_us // 1000 if now_us >= 0 else -((999 - now_us) // 1000)
    # level: the excess left after draining, before this request's +1000 per unit of cost;
    # an unseen key (or a drained one) sits at -1000, nginx's "excess = 0" for one request.
    level = -1000
    ms = 0
    if state[s0 + 0] != 0:
        last_ms = state[s0 + 1]
        ms = now_ms - last_ms
        if ms < -BACKWARDS_LIMIT_MS:
            ms = 1
        elif ms < 0:
            ms = 0
        need = state[s0 + 2] + 1000
        # Compare by division first: a long idle gap times the rate must not overflow.
        drained = ms >= (need * 1000 + rate - 1) // rate
        level = -1000 if drained else state[s0 + 2] - rate * ms // 1000
    allowed = 0
    retry_us = -1
    after = level
    if cost == 0:
        allowed = 1
        retry_us = 0 if shaping else -1
    elif cost <= burst_m // 1000 + 1:
        # Checked before multiplying: 1000 * cost stays small.
        if level + 1000 * cost <= burst_m:
            allowed = 1
            after = level + 1000 * cost
            if state[s0 + 0] == 0 or ms != 0:
                state[s0 + 1] = now_ms
            state[s0 + 0] = 1
            state[s0 + 2] = after
            if shaping:
                retry_us = 0
                if after > delay_m:
                    retry_us = (after - delay_m) * 1000 // rate * 1000
        else:
            # Fits once floor(rate * m / 1000) >= stored + 1000 * cost - burst, m ms after last.
            over = state[s0 + 2] + 1000 * cost - burst_m
            wait_ms = (over * 1000 + rate - 1) // rate
            retry_us = (state[s0 + 1] + wait_ms) * 1000 - now_us
    room = burst_m - after
    remaining = room // 1000 if room >= 0 else 0
    reset_us = 0
    if state[s0 + 0] != 0:
        drain_ms = ((state[s0 + 2] + 1000) * 1000 + rate - 1) // rate
        reset_us = max((state[s0 + 1] + drain_ms) * 1000 - now_us, 0)
    return allowed, remaining, retry_us, reset_us


@dataclass(frozen=True, slots=True)
class NginxLeakyBucket(CachedParamsAlgorithm):
    """``limit_req_zone rate=<rate>r/<unit>`` + ``limit_req burst=<burst> [nodelay|delay=<n>]``.

    ``rate``: whole requests per second (``unit="s"``) or per minute (``unit="m"``), >= 1;
    ``burst``: int >= 0 (nginx's default 0); ``nodelay``: forward admitted excess at once;
    ``delay``: the first ``delay`` excess requests go at once, the rest are held (shaping).
    ``Decision.limit`` is ``burst + 1``, what an idle key admits at once.
    """

    rate: int
    unit: str = "s"
    burst: int = 0
    nodelay: bool = False
    delay: int = 0

    name: ClassVar[str] = "nginx_leaky"

    def __post_init__(self) -> None:
        rate = require_int("rate", self.rate, minimum=1)
        if self.unit not in SCALES:
            raise ValueError(f"unit must be 's' (r/s) or 'm' (r/m), got {self.unit!r}")
        burst = require_int("burst", self.burst, minimum=0)
        delay = require_int("delay", self.delay, minimum=0)
        if not isinstance(self.nodelay, bool):
            raise ValueError(f"nodelay must be a bool, got {self.nodelay!r}")
        if self.nodelay and delay:
            raise ValueError("nodelay and delay= are exclusive (nodelay means no request waits)")
        rate_milli = rate * 1000 // SCALES[self.unit]
        if rate_milli < 1:
            raise ValueError(f"rate={rate}r/{self.unit} is 0 milli-requests per second in nginx")
        if (burst + 2) * 1000 * 1000 >= MAX_EXACT_INT or rate_milli >= MAX_EXACT_INT // 4:
            raise ValueError(f"burst={burst} or rate={rate} is too large for exact integers")
        burst_m = burst * 1000
        delay_m = burst_m if self.nodelay else min(delay, burst) * 1000
        self._cache_params((rate_milli, burst_m, delay_m, 1 if delay_m < burst_m else 0))

    @property
    def rate_milli(self) -> int:
        """nginx's stored rate: integer milli-requests per second (``1r/m`` -> 16)."""
        return self._params[0]

    @property
    def shapes(self) -> bool:
        """True when an admitted request can be held (no ``nodelay``, ``delay < burst``)."""
        return bool(self._params[3])

    @property
    def kernel(self) -> Kernel:
        return nginx_leaky_kernel

    @property
    def state_size(self) -> int:
        return 3

    @property
    def limit(self) -> int:
        return self.burst + 1

    def expires_at_us(self, state: State) -> int:
        """When the stored excess has drained: the next request is treated as a fresh key's."""
        if state[0] == 0:
            return ABSENT_EXPIRY_US
        rate = self._params[0]
        drain_ms = ((int(state[2]) + 1000) * 1000 + rate - 1) // rate
        return (int(state[1]) + drain_ms) * 1000
