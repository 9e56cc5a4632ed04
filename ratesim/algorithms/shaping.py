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

Both runners (``ratesim.des``, ``ratesim.fast``) model the hold: a request an **enforcing**
shaping layer admits with a delay ``d > 0`` waits ``d`` µs after the decision, then goes on to
the next layer (or the backend) as if it arrived there then; its decision latency includes the
hold, and ``RunData.held_us`` sums each request's holds. A shadow layer only counts, so it holds
nothing (nginx's ``limit_req_dry_run`` delays no request). :func:`hold_us` is the one formula
the runners read the delay with (compiled as it is by the compiled runner);
:func:`shaping_delay_us` is the same on an algorithm object, for stores and callers.
"""

from __future__ import annotations

from typing import Any


def shapes(alg: Any) -> bool:
    """Whether ``alg``'s kernel reports a delay for admitted requests (see the module)."""
    return bool(getattr(alg, "shapes", False))


def hold_us(shaping: int | bool, allowed: int | bool, retry_after_us: int) -> int:
    """The hold of one decision in µs: ``-1`` when rejected, ``0`` when forwarded at once, the
    kernel's ``retry_after_us`` slot (floored at 0) for a request a ``shaping`` algorithm
    admitted (plain integers: numba-compatible)."""
    if not allowed:
        return -1
    if not shaping or retry_after_us <= 0:
        return 0
    return retry_after_us


def shaping_delay_us(alg: Any, allowed: int | bool, retry_after_us: int) -> int:
    """The hold of one decision in µs: ``-1`` when rejected, ``0`` when forwarded at once.

    ``allowed`` and ``retry_after_us`` are the kernel's first and third outputs (or a
    :class:`~ratesim.algorithms.base.Decision`'s fields).
    """
    return hold_us(shapes(alg), allowed, int(retry_after_us))
