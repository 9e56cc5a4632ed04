"""The kernel-level contract for **shaping**: a request admitted *later* rather than rejected.

nginx ``limit_req`` without ``nodelay``, Traefik's ``RateLimit`` (``Reserve`` + ``maxDelay``) and
Sentinel's throttling (``controlBehavior: 2``) do not only admit or reject: they *hold* an
admitted request and forward it after a delay. Shaping algorithms keep the ordinary kernel
signature ``kernel(p, state, now_us, cost) -> (allowed, remaining, retry_after_us,
reset_after_us)`` and put the delay in a documented slot:

* an algorithm whose ``shapes`` attribute is true returns, for an **admitted** request, the delay
  in **µs** in the ``retry_after_us`` slot: ``0`` = forwarded at once, ``d > 0`` = held ``d`` µs
  after the decision, then forwarded. It is never ``-1`` for an admitted request;
* a **rejected** request's slot means what it means for every algorithm (the wait until the
  request could pass, or ``-1`` for never);
* the state is committed at decision time (all three gateways charge the request when they
  decide, not when they forward it), so the *decisions* do not depend on how a runner models the
  hold: only the moment the request reaches the backend, and its decision latency, do.

Runners that do not model holds yet read ``retry_after_us`` only for rejected requests, so they
treat a shaped request as admitted at decision time (its delay is dropped). That is exact for
every later decision and for the admitted/rejected counts; it understates latency and bunches
the forwarded requests at the backend. :func:`shaping_delay_us` is the one place runners and
stores read the delay from.
"""

from __future__ import annotations

from typing import Any


def shapes(alg: Any) -> bool:
    """Whether ``alg``'s kernel reports a delay for admitted requests (see the module)."""
    return bool(getattr(alg, "shapes", False))


def shaping_delay_us(alg: Any, allowed: int | bool, retry_after_us: int) -> int:
    """The hold of one decision in µs: ``-1`` when rejected, ``0`` when forwarded at once.

    ``allowed`` and ``retry_after_us`` are the kernel's first and third outputs (or a
    :class:`~ratesim.algorithms.base.Decision`'s fields).
    """
    if not allowed:
        return -1
    if not shapes(alg):
        return 0
    return max(int(retry_after_us), 0)
