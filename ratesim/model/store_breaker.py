"""The store-path circuit breaker of a global layer: the state machine, written once.

Not yet wired into the runners (issue 13 item 2 is partly done): this module holds the
arithmetic both runners are to call, numba-compatible (plain ints, no objects), so the DES
components and the compiled loop take the same decisions.

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
"""

from __future__ import annotations

CLOSED = 0
OPEN = 1
HALF_OPEN = 2


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


def breaker_start_probe(state: int, opened_us: int, cooldown_us: int, t_us: int) -> int:
    """The state after a call admitted by :func:`breaker_should_call` at ``t_us`` (µs).

    ``OPEN`` past its cooldown becomes ``HALF_OPEN``; ``CLOSED`` stays ``CLOSED``.
    """
    if state != CLOSED and t_us >= opened_us + cooldown_us:
        return HALF_OPEN
    return state


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
