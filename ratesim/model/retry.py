"""Retry-policy arithmetic for clients that retry (issue 13 item 1), integer microseconds.

Numba-compatible plain Python (``register_jitable``) so both runners can call the same code.
Used by the clients of :mod:`ratesim.des.clients` (the scenario's ``clients:`` section,
:mod:`ratesim.clients`).

* :func:`retry_after_s` - HTTP ``Retry-After`` sends whole seconds; a gateway's wait (µs) is
  rounded *up* so a client honouring it never comes back before the limit allows.
* :func:`backoff_delay_us` - full-jitter exponential backoff: attempt ``k`` (2 = first retry)
  waits ``floor(u * min(cap, base * 2**(k-2)))`` with ``u = u24 / 2**24`` from a 24-bit uniform.
* :func:`budget_allows` - a retry budget of ``pct`` % in Finagle's sense (``RetryBudget``'s
  ``percentCanRetry``: every user request deposits one, every retry withdraws ``100 / pct``):
  a retry may be sent only if, counting it, retries stay at most ``pct`` % of the *user
  requests* (first attempts) made so far: ``100 * (retries + 1) <= pct * requests``. So 20 %
  allows 20 retries per 100 user requests (20 of 120 attempts). Finagle's budget also forgets
  deposits after a ``ttl`` and keeps a floor of ``minRetriesPerSec``; this one counts from the
  start of the run and has no floor. (Envoy's ``retry_budget.budget_percent`` bounds
  *concurrent* retries against active requests instead; gRPC's ``retryThrottling`` is a token
  bucket of failures and successes.)
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
def budget_allows(retries: int, requests: int, pct: int) -> bool:
    """Whether one more retry (``retries`` already sent) keeps retries <= ``pct`` % of the
    ``requests`` user requests made so far."""
    return 100 * (retries + 1) <= pct * requests


@register_jitable
def deadline_allows(first_us: int, deadline_us: int, next_start_us: int) -> bool:
    """Whether an attempt starting at ``next_start_us`` is within ``first_us + deadline_us``."""
    return next_start_us <= first_us + deadline_us


# --- a client's reaction to a refusal, on a compiled policy row ------------------------------

#: Retry kinds (``ratesim.clients``: none, immediate, fixed, retry_after, backoff).
RK_NONE, RK_IMMEDIATE, RK_FIXED, RK_RETRY_AFTER, RK_BACKOFF = range(5)
#: Columns of a compiled client policy row (:func:`ratesim.clients.compile_clients`): the
#: reaction to a rejection (kind, two parameters in µs), the same for an error, then
#: ``max_attempts``, ``budget_pct`` and ``deadline`` (µs) (-1: none).
CL_REJECT, CL_ERROR, CL_MAX_ATTEMPTS, CL_BUDGET, CL_DEADLINE = 0, 3, 6, 7, 8
CL_COLS = 9


@register_jitable
def wait_us(kind: int, p1: int, p2: int, attempt: int, retry_after_us: int, u24: int) -> int:
    """The wait (µs) before ``attempt`` under one reaction, or -1 to give up.

    ``fixed``: ``p1``; ``retry_after``: the header's whole seconds, ``p1`` (the fallback) when
    the answer has none (``retry_after_us < 0``), -1 beyond ``p2`` (the longest wait);
    ``backoff``: full jitter with base ``p1`` and cap ``p2`` from ``u24``."""
    if kind == RK_NONE:
        return -1
    if kind == RK_IMMEDIATE:
        return 0
    if kind == RK_FIXED:
        return p1
    if kind == RK_RETRY_AFTER:
        if retry_after_us < 0:
            return p1
        w = retry_after_s(retry_after_us) * US_PER_S
        return -1 if w > p2 else w
    return backoff_delay_us(p1, p2, attempt, u24)


@register_jitable
def retry_at_us(
    row: object,
    is_error: bool,
    decided_us: int,
    retry_after_us: int,
    attempt: int,
    first_us: int,
    u24: int,
    requests: int,
    sent: int,
) -> int:
    """When the retry of a refused ``attempt`` arrives (µs), or -1 when the client gives up.

    ``row``: the tier's compiled policy (``CL_*`` columns); ``is_error``: an error rather than a
    rejection; ``decided_us``: the refusal's instant; ``first_us``: the user request's first
    arrival; ``u24``: the next attempt's jitter; ``requests`` / ``sent``: the tier's user
    requests arrived by ``decided_us`` and retries sent so far (the budget). The retry arrives at
    least 1 µs after the refusal; the checks run in the order max attempts, the reaction's own
    give-up, deadline, budget (see :mod:`ratesim.clients`)."""
    if attempt >= row[CL_MAX_ATTEMPTS]:  # type: ignore[index]
        return -1
    c = CL_ERROR if is_error else CL_REJECT
    w = wait_us(row[c], row[c + 1], row[c + 2], attempt + 1, retry_after_us, u24)  # type: ignore[index]
    if w < 0:
        return -1
    t = decided_us + (w if w > 1 else 1)
    deadline = row[CL_DEADLINE]  # type: ignore[index]
    if deadline >= 0 and not deadline_allows(first_us, deadline, t):
        return -1
    pct = row[CL_BUDGET]  # type: ignore[index]
    if pct >= 0 and not budget_allows(sent, requests, pct):
        return -1
    return t


#: Load balancers, as :func:`retry_position` takes them.
LB_ROUND_ROBIN, LB_RANDOM, LB_HASH_USER = 0, 1, 2


@register_jitable
def retry_position(lb: int, row: int, user_hash: int, u: float, live: int) -> int:
    """The position (``0 .. live - 1`` among the nodes live at its arrival) a retry arrives at:
    ``round_robin``: its row of the request table mod ``live`` (the balancer's turn goes on
    over every arrival); ``random``: ``floor(u * live)`` from the retry's own uniform ``u``;
    ``hash_user``: its user's hash mod ``live`` (``ratesim.model.node.user_hash``). The node
    standing there is :func:`ratesim.model.topology.slot_of` (without ``topology.changes``,
    the position itself)."""
    if lb == LB_ROUND_ROBIN:
        return row % live
    if lb == LB_RANDOM:
        k = int(u * live)
        return k if k < live else live - 1
    return user_hash % live
