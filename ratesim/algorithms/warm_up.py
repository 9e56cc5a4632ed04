"""Sentinel's warm-up flow control (``controlBehavior: 1``, ``WarmUpController``), on integers.

A Guava-style "cold" bucket: while it holds many stored tokens the resource is cold and admits
only ``count / cold_factor`` per second, rising to ``count`` as traffic drains the tokens over
``warm_up_s``. Sentinel 1.8 (semantics §4.2), with ``c = count``, ``f = cold_factor``, ``W =
warm_up_s``::

    warning = int(W * c) // (f - 1)
    max_token = warning + int(2 * W * c / (1 + f))
    slope = (f - 1) / c / (max_token - warning)

Once per whole second (``syncToken``, the first request of a second ``s`` in ms, if ``s >
last_filled``) with ``prev`` = the passes of the previous whole second: ``stored`` gains
``floor((s - last_filled) * c / 1000)`` (capped at ``max_token``) when ``stored < warning``, or
when ``stored > warning`` and ``prev < c // f`` (Java's integer ``(int) count / coldFactor``),
nothing when ``stored == warning``; then ``stored = max(stored - prev, 0)`` and ``last_filled =
s``. A request of ``cost`` then passes iff, with ``passQps`` the passes in Sentinel's 2 x 500 ms
LeapArray (the buckets that started less than 1 s ago)::

    stored >= warning:  passQps + cost <= 1 / ((stored - warning) * slope + 1 / c)
    stored <  warning:  passQps + cost <= c

The first bound is ``c * D / ((stored - warning) * (f - 1) + D)`` with ``D = max_token -
warning``; ratesim compares it exactly in integers (``floor`` of it, as ``passQps + cost`` is
whole), where Sentinel compares doubles with ``Math.nextUp`` to absorb rounding. A key never seen
starts at ``max_token`` (Sentinel's first sync fills an empty bucket from ``lastFilledTime = 0``,
i.e. to the cap), so a cold resource admits ``c // f``-ish per second at first. Passes are counted
in both the 500 ms buckets and the 1 s buckets (the minute-level metric ``previousPassQps``
reads). ``cost = 0`` always passes and records nothing (tokens still sync).

Time is Sentinel's millisecond clock, ``floor(now_us / 1000)``. **Time going backwards**: no
sync happens (``s <= last_filled``); a request whose 500 ms slot (or 1 s slot) holds a newer
bucket is judged with the current counts and, if admitted, recorded nowhere (Sentinel's
throwaway bucket). ``retry_after_us`` (rejected) is the time to the end of the current 500 ms
bucket, the earliest instant at which the decision can change (a lower bound: the bound moves
with the tokens), or ``-1`` when ``cost > count``. ``reset_after_us`` is the time until the key
decides like an unseen one (``-1`` when Sentinel never refills it: ``stored == warning``, or
``stored > warning`` with ``c // f == 0``).

Kernel parameters ``p = (count, warning, max_token, cold_factor)``. State (size 11)::

    [present, stored, last_filled_ms, h0_start, h0_pass, h1_start, h1_pass,
     s0_start, s0_pass, s1_start, s1_pass]

``h*``: the two 500 ms buckets (slot ``(t // 500) % 2``), ``s*``: two 1 s buckets (slot ``(t //
1000) % 2``), starts in ms, pass 0 = empty slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import MAX_EXACT_INT, CachedParamsAlgorithm, Kernel, State, require_int

ABSENT_EXPIRY_US = -(2**62)
NEVER_EXPIRES_US = 2**62


def warm_up_kernel(
    p: tuple[int, ...], state: State, now_us: int, cost: int, p0: int = 0, s0: int = 0
) -> tuple[int, int, int, int]:
    """One request of ``cost`` at ``now_us``; returns ``(allowed, remaining, retry_after_us,
    reset_after_us)`` (µs)."""
    count = p[p0 + 0]
    warning = p[p0 + 1]
    max_tok = p[p0 + 2]
    cold = p[p0 + 3]
    t = now_us // 1000 if now_us >= 0 else -((999 - now_us) // 1000)
    hb = t // 500 if t >= 0 else -((499 - t) // 500)
    sb = t // 1000 if t >= 0 else -((999 - t) // 1000)
    h_start = hb * 500
    s_start = sb * 1000
    h_slot = hb - 2 * (hb // 2 if hb >= 0 else -((1 - hb) // 2))
    s_slot = sb - 2 * (sb // 2 if sb >= 0 else -((1 - sb) // 2))
    if state[s0 + 0] == 0:
        state[s0 + 0] = 1
        state[s0 + 1] = max_tok
        state[s0 + 2] = s_start
        for i in range(3, 11):
            state[s0 + i] = 0
    # -- syncToken(previousPassQps): once per whole second -------------------------------------
    if s_start > state[s0 + 2]:
        prev = 0
        o = 7 + 2 * (1 - s_slot)
        if state[s0 + o + 1] > 0 and state[s0 + o] == s_start - 1000:
            prev = state[s0 + o + 1]
        stored = state[s0 + 1]
        if stored < warning or (stored > warning and prev < count // cold):
            gap = s_start - state[s0 + 2]
            # Compare by division first: a long idle gap times the count must not overflow.
            if gap >= ((max_tok - stored) * 1000 + count - 1) // count:
                stored = max_tok
            else:
                stored = min(stored + gap * count // 1000, max_tok)
        stored = stored - prev if stored > prev else 0
        state[s0 + 1] = stored
        state[s0 + 2] = s_start
    # -- passQps: the 500 ms buckets that started less than 1 s ago ---------------------------
    passed = 0
    for k in range(2):
        if state[s0 + 3 + 2 * k + 1] > 0 and t - state[s0 + 3 + 2 * k] < 1000:
            passed += state[s0 + 3 + 2 * k + 1]
    stored = state[s0 + 1]
    if stored >= warning:
        span = max_tok - warning
        bound = count * span // ((stored - warning) * (cold - 1) + span)
    else:
        bound = count
    allowed = 0
    retry_us = -1
    if cost <= count and passed + cost <= bound:
        allowed = 1
        if cost > 0:
            passed += cost
            # Both metrics record the pass, unless the slot holds a newer bucket (throwaway).
            for o, start in ((3 + 2 * h_slot, h_start), (7 + 2 * s_slot, s_start)):
                if state[s0 + o + 1] == 0 or state[s0 + o] < start:
                    state[s0 + o] = start
                    state[s0 + o + 1] = cost
                elif state[s0 + o] == start:
                    state[s0 + o + 1] += cost
    elif cost <= count:
        retry_us = (h_start + 500) * 1000 - now_us
    remaining = bound - passed if bound > passed else 0
    # -- reset: tokens back at max_token, and no pass in any bucket nor the second before ----
    at_ms = 0
    known = 0
    stored = state[s0 + 1]
    if stored < max_tok:
        if stored == warning or (stored > warning and count // cold == 0):
            return allowed, remaining, retry_us, -1
        wait = ((max_tok - stored) * 1000 + count - 1) // count
        at_ms = state[s0 + 2] + (wait + 999) // 1000 * 1000
        known = 1
    for k in range(2):
        if state[s0 + 8 + 2 * k] > 0 and (known == 0 or state[s0 + 7 + 2 * k] + 2000 > at_ms):
            at_ms = state[s0 + 7 + 2 * k] + 2000
            known = 1
    reset_us = at_ms * 1000 - now_us if known else 0
    return allowed, remaining, retry_us, reset_us if reset_us > 0 else 0


def _expires_ms(p: tuple[int, ...], state: State) -> int:
    """The ms from which ``state`` decides like an unseen key (the kernel's reset, as a time)."""
    warning, max_tok, cold = p[1], p[2], p[3]
    count = p[0]
    stored = int(state[1])
    candidates = [int(state[7 + 2 * k]) + 2000 for k in range(2) if state[8 + 2 * k] > 0]
    if stored < max_tok:
        if stored == warning or (stored > warning and count // cold == 0):
            return NEVER_EXPIRES_US
        wait = -(-(max_tok - stored) * 1000 // count)
        candidates.append(int(state[2]) + -(-wait // 1000) * 1000)
    return max(candidates) if candidates else ABSENT_EXPIRY_US


@dataclass(frozen=True, slots=True)
class WarmUpBucket(CachedParamsAlgorithm):
    """Sentinel ``FlowRule`` with ``controlBehavior: 1`` (warm-up), ``grade: 1`` (QPS).

    ``count``: the warmed-up QPS (int >= 1); ``warm_up_s``: ``warmUpPeriodSec`` (int >= 1,
    default 10); ``cold_factor``: ``csp.sentinel.flow.cold.factor`` (int >= 2, default 3).
    """

    count: int
    warm_up_s: int = 10
    cold_factor: int = 3

    name: ClassVar[str] = "warm_up"

    def __post_init__(self) -> None:
        count = require_int("count", self.count, minimum=1)
        warm = require_int("warm_up_s", self.warm_up_s, minimum=1)
        cold = require_int("cold_factor", self.cold_factor, minimum=2)
        warning = warm * count // (cold - 1)
        max_tok = warning + 2 * warm * count // (1 + cold)
        if max_tok <= warning:
            raise ValueError(
                f"count={count} with warm_up_s={warm} gives no warm-up range (Sentinel's slope "
                "divides by max_token - warning = 0): raise count or warm_up_s"
            )
        if count * (max_tok - warning) * 2 >= MAX_EXACT_INT or max_tok * 1000 >= MAX_EXACT_INT:
            raise ValueError(f"count={count} with warm_up_s={warm} is too large for exact integers")
        self._cache_params((count, warning, max_tok, cold))

    @property
    def warning_token(self) -> int:
        """Sentinel's ``warningToken``."""
        return self._params[1]

    @property
    def max_token(self) -> int:
        """Sentinel's ``maxToken`` (a cold start's stored tokens)."""
        return self._params[2]

    @property
    def kernel(self) -> Kernel:
        return warm_up_kernel

    @property
    def state_size(self) -> int:
        return 11

    @property
    def limit(self) -> int:
        return self.count

    def expires_at_us(self, state: State) -> int:
        """When the tokens are back at ``max_token`` and no bucket counts any more."""
        if state[0] == 0:
            return ABSENT_EXPIRY_US
        at = _expires_ms(self._params, state)
        return at if at in (NEVER_EXPIRES_US, ABSENT_EXPIRY_US) else at * 1000
