"""Retry-policy arithmetic for clients that retry (issue 13 item 1), integer microseconds.

Numba-compatible plain Python (``register_jitable``) so both runners can call the same code.
Only the arithmetic exists so far: the scenario schema, components and runner hooks do not.

* :func:`retry_after_s` - HTTP ``Retry-After`` sends whole seconds; a gateway's wait (µs) is
  rounded *up* so a client honouring it never comes back before the limit allows.
* :func:`backoff_delay_us` - full-jitter exponential backoff: attempt ``k`` (2 = first retry)
  waits ``floor(u * min(cap, base * 2**(k-2)))`` with ``u = u24 / 2**24`` from a 24-bit uniform.
* :func:`budget_allows` - a retry budget of ``pct`` %: a retry may be sent only if, counting it,
  retries stay at most ``pct`` % of all attempts sent: ``100 * (retries + 1) <= pct * (attempts + 1)``.
* :func:`deadline_allows` - give up when the next attempt would start after first arrival + deadline.
"""

from __future__ import annotations

from numba.extending import register_jitable

US_PER_S = 1_000_000
#: Resolution of the jitter uniform: ``u24`` is an integer in ``[0, 2**24)``.
U24 = 1 << 24
#: Backoff ceilings are capped below this (µs) so ``ceiling * u24`` stays in int64.
MAX_CEILING_US = 1 << 38


@register_jitable
def retry_after_s(wait_us: int) -> int:
    """Whole seconds a ``Retry-After`` header carries for a wait of ``wait_us`` µs (ceiling, >= 0)."""
    if wait_us <= 0:
        return 0
    return (wait_us + US_PER_S - 1) // US_PER_S


@register_jitable
def backoff_delay_us(base_us: int, cap_us: int, attempt: int, u24: int) -> int:
    """Full-jitter delay (µs) before ``attempt`` (>= 2) from a uniform ``u24`` in ``[0, 2**24)``."""
    ceiling = base_us
    k = 2
    # doubling in a loop, stopping at the cap, so no shift can overflow
    while k < attempt and ceiling < cap_us:
        ceiling *= 2
        k += 1
    if ceiling > cap_us:
        ceiling = cap_us
    if ceiling > MAX_CEILING_US:
        ceiling = MAX_CEILING_US
    return (ceiling * u24) >> 24


@register_jitable
def budget_allows(retries: int, attempts: int, pct: int) -> bool:
    """Whether one more retry keeps retries <= ``pct`` % of attempts (both counted with it)."""
    return 100 * (retries + 1) <= pct * (attempts + 1)


@register_jitable
def deadline_allows(first_us: int, deadline_us: int, next_start_us: int) -> bool:
    """Whether an attempt starting at ``next_start_us`` is within ``first_us + deadline_us``."""
    return next_start_us <= first_us + deadline_us
