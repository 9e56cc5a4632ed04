"""The store-path circuit breaker of a global layer: the state machine, written once.

A global layer's ``store_breaker`` (policy field) puts one of these in front of its Redis
calls, one per gateway node (each node has its own Redis client). This module holds the
arithmetic both runners call, numba-compatible (plain ints and an int64 row, no objects), so
the DES components and the compiled loop take the same decisions: :func:`sb_gate` before a
call, :func:`sb_observe` when its outcome is known, on a row of ``SB_COLS`` ints per
(node, layer) laid out by the ``SB_*`` column names. Times are true µs: the breaker's cooldown
is a monotonic timer, which the node's wall-clock faults (offsets, jumps, slews) do not move.

States (int codes, so the compiled loop can hold them in an int64 array):

* ``CLOSED`` (0): every decision calls Redis. Each error or timeout adds one to the count of
  consecutive failures; a success resets it to 0. The ``errors``-th consecutive failure opens
  the breaker at the time that failure was *observed* (``t_us``, integer µs).
* ``OPEN`` (1): no call is made; the layer takes its failure mode at once. It lasts
  ``cooldown_us`` µs: open on ``[opened_us, opened_us + cooldown_us)``.
* ``HALF_OPEN`` (2): the first decision at or after ``opened_us + cooldown_us`` becomes the
  *probe*: it calls Redis; while it is in flight every other decision takes the failure mode
  (one probe at a time, so a black hole costs one timeout per cooldown, not one per request).
  Probe success → ``CLOSED`` (count 0); probe error/timeout → ``OPEN`` again from the time the
  failure is observed.

Only the probe's outcome moves a breaker that is not ``CLOSED``: calls started before it
opened may still come back while it is open, and their outcomes are ignored (they describe
Redis before the cooldown, not now).
"""

from __future__ import annotations

from typing import Any

from numba.extending import register_jitable

CLOSED = 0
OPEN = 1
HALF_OPEN = 2


@register_jitable
def breaker_should_call(
    state: int, opened_us: int, cooldown_us: int, probing: int, t_us: int
) -> int:
    """Decide whether a decision at ``t_us`` (µs) calls Redis.

    Returns 1 to call (in ``CLOSED``, or as the half-open probe), 0 to take the failure mode.
    ``probing`` is 1 while a probe is in flight. A caller that gets 1 in a state other than
    ``CLOSED`` must record the call as the probe (see :func:`breaker_start_probe`).
    """
    if state == CLOSED:
        return 1
    if probing == 1:
        return 0
    if t_us >= opened_us + cooldown_us:
        return 1
    return 0


@register_jitable
def breaker_start_probe(state: int, opened_us: int, cooldown_us: int, t_us: int) -> int:
    """The state after a call admitted by :func:`breaker_should_call` at ``t_us`` (µs).

    ``OPEN`` past its cooldown becomes ``HALF_OPEN``; ``CLOSED`` stays ``CLOSED``.
    """
    if state != CLOSED and t_us >= opened_us + cooldown_us:
        return HALF_OPEN
    return state


@register_jitable
def breaker_on_result(state: int, failures: int, errors: int, ok: int) -> tuple[int, int]:
    """The ``(state, consecutive_failures)`` after a call's outcome is observed.

    ``ok`` is 1 for an answer from Redis, 0 for an error or timeout; ``errors`` is the policy's
    threshold k (≥ 1). The caller sets ``opened_us`` to the observation time when the returned
    state is ``OPEN`` and the previous one was not (or was ``HALF_OPEN``).
    """
    if ok == 1:
        return CLOSED, 0
    if state == HALF_OPEN:
        return OPEN, errors
    failures += 1
    if failures >= errors:
        return OPEN, failures
    return CLOSED, failures


def blackhole_timed_out_calls(
    window_us: int, timeout_us: int, errors: int, cooldown_us: int
) -> int:
    """Timed-out calls during a black hole of ``window_us`` µs under a constant stream of
    decisions (one always waiting), each call timing out after ``timeout_us`` µs.

    The first ``errors`` calls time out back to back (concurrent callers all in flight count
    separately; this formula is for one caller at a time), opening the breaker at
    ``errors * timeout_us``; then one probe per ``cooldown_us + timeout_us`` cycle. Counts
    calls *started* inside the window. The bound the issue's Show bullet asks for: about one
    timeout per cooldown rather than one per request.
    """
    first = errors * timeout_us
    if window_us <= first:
        return -(-window_us // timeout_us)
    rest = window_us - first
    cycle = cooldown_us + timeout_us
    # A probe starts at first + cooldown, first + cycle + cooldown, ...
    probes = 0 if rest <= cooldown_us else (rest - cooldown_us - 1) // cycle + 1
    return errors + probes


# The columns of a breaker's row (one row per (node, layer)).
SB_STATE = 0  # CLOSED / OPEN / HALF_OPEN
SB_FAILS = 1  # consecutive failures observed while closed
SB_OPENED = 2  # when the current cooldown started (µs)
SB_PROBE = 3  # the request row of the probe in flight, -1 for none
SB_SINCE = 4  # when the breaker last left CLOSED (µs)
SB_OPEN_US = 5  # µs spent not CLOSED, over the finished open periods
SB_OPENS = 6  # times it went CLOSED -> OPEN
SB_SHORT = 7  # decisions it took without a call (the failure mode at once)
SB_COLS = 8


def sb_reset(sb: Any, o: int) -> None:
    """A closed breaker with no history in ``sb[o : o + SB_COLS]``."""
    for c in range(SB_COLS):
        sb[o + c] = 0
    sb[o + SB_PROBE] = -1


@register_jitable
def sb_gate(sb: Any, o: int, cooldown_us: int, i: int, t_us: int) -> int:
    """Whether request ``i``'s decision at ``t_us`` (true µs) calls Redis: 1 to call, 0 to take
    the failure mode at once (counted in ``SB_SHORT``). A call made past the cooldown becomes
    the probe (``HALF_OPEN``, ``SB_PROBE = i``)."""
    st = sb[o + SB_STATE]
    probing = 1 if sb[o + SB_PROBE] >= 0 else 0
    if breaker_should_call(st, sb[o + SB_OPENED], cooldown_us, probing, t_us) == 1:
        if st != CLOSED:
            sb[o + SB_STATE] = breaker_start_probe(st, sb[o + SB_OPENED], cooldown_us, t_us)
            sb[o + SB_PROBE] = i
        return 1
    sb[o + SB_SHORT] += 1
    return 0


@register_jitable
def sb_observe(sb: Any, o: int, errors: int, i: int, ok: int, t_us: int) -> None:
    """Request ``i``'s call has come back at ``t_us`` (true µs): ``ok`` 1 for an answer (allow
    or deny), 0 for an error or a timeout. Ignored unless the breaker is ``CLOSED`` or the call
    is the probe in flight."""
    st = sb[o + SB_STATE]
    if st != CLOSED:
        if sb[o + SB_PROBE] != i:
            return
        sb[o + SB_PROBE] = -1
    new, fails = breaker_on_result(st, sb[o + SB_FAILS], errors, ok)
    sb[o + SB_FAILS] = fails
    if new == OPEN:
        sb[o + SB_OPENED] = t_us
        if st == CLOSED:
            sb[o + SB_SINCE] = t_us
            sb[o + SB_OPENS] += 1
    elif st != CLOSED:
        sb[o + SB_OPEN_US] += t_us - sb[o + SB_SINCE]
    sb[o + SB_STATE] = new


def sb_open_us(sb: Any, o: int, end_us: int) -> int:
    """µs the breaker spent not ``CLOSED`` up to ``end_us`` (an open period still running at
    ``end_us`` counts up to it)."""
    total = sb[o + SB_OPEN_US]
    if sb[o + SB_STATE] != CLOSED and end_us > sb[o + SB_SINCE]:
        total += end_us - sb[o + SB_SINCE]
    return total
