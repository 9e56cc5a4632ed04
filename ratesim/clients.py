"""Clients that react: the scenario's ``clients:`` section (issue 13 item 1), as plain data.

Without a ``clients:`` section (``Scenario.clients is None``) a rejection ends the story, as it
always did. With one, a user request that is refused may be tried again: each retry is a new
arrival at the load balancer (a closed loop), for the same user, tier, route and cost.

What a client sees, and which policy answers it:

* ``on_reject`` - a **rejection** (HTTP 429): a rate layer's limiter said no (outcome
  ``rejected``), or a global layer's local fallback did (``local_rejected``). It carries the
  limiter's wait (the decision's ``retry_after_us``) as a ``Retry-After`` header.
* ``on_error`` - an **error** (HTTP 5xx): a global layer's failure mode closed
  (``fail_closed``, Envoy's ``failure_mode_deny``), or a guard layer (concurrency limit,
  circuit breaker) refused (503). No ``Retry-After``.

Retry policies (``kind``), the wait from the decision to the retry's arrival, in µs:

* ``none``: no retry, the refusal is final;
* ``immediate``: 0;
* ``fixed`` (``delay_ms``): ``delay``;
* ``retry_after`` (``fallback_ms``, ``max_wait_ms``): the ``Retry-After`` whole seconds
  (:func:`ratesim.model.retry.retry_after_s`: rounded up, as HTTP sends it), or ``fallback``
  when the answer has none; a client told to wait longer than ``max_wait`` gives up;
* ``backoff`` (``base_ms``, ``cap_ms``): full jitter, ``floor(u * min(cap, base * 2**(k-2)))``
  (:func:`ratesim.model.retry.backoff_delay_us`).

A retry arrives at least 1 µs after the decision it answers (time is whole µs; a client cannot
send again within the microsecond it was told no). ``u`` is drawn per (request, attempt)
(:mod:`ratesim.model.counter`). Then, in this order, a client gives up (the refusal is final):

* ``max_attempts``: attempt ``k`` would exceed it (attempts include the first; gRPC's
  ``maxAttempts``);
* ``deadline_ms``: the retry would arrive after the user request's first arrival + deadline;
* ``budget_pct``: a retry budget in Finagle's sense (``percentCanRetry``), shared by the
  clients of a tier: the retries the tier's clients have sent, counting this one, may be at most
  ``budget_pct`` % of the tier's user requests that arrived by the decision's instant
  (:func:`ratesim.model.retry.budget_allows`).

``tiers`` overrides the whole policy for named tiers (a tier not named uses the top-level one).
Every delay is at most ``MAX_RETRY_DELAY_MS`` and ``max_attempts`` at most ``MAX_ATTEMPTS``, so
that a run's event horizon and its number of attempts stay bounded (:mod:`ratesim.budget`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .bounds import DelayMs

#: The most attempts (the first included) a user request may make.
MAX_ATTEMPTS = 100
#: The longest wait before a retry, and the longest deadline (ms): one hour.
MAX_RETRY_DELAY_MS = 3_600_000.0
#: ``retry_after`` without a ``Retry-After`` in the answer (an error) waits this long (ms).
DEFAULT_FALLBACK_MS = 1000.0

RetryMs = Annotated[DelayMs, Field(ge=0.0, le=MAX_RETRY_DELAY_MS)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NoRetry(_Spec):
    """The refusal is final."""

    kind: Literal["none"] = "none"


class ImmediateRetry(_Spec):
    """Retry at once (1 µs after the decision)."""

    kind: Literal["immediate"] = "immediate"


class FixedRetry(_Spec):
    """Retry ``delay_ms`` after the decision."""

    kind: Literal["fixed"] = "fixed"
    delay_ms: RetryMs


class RetryAfterRetry(_Spec):
    """Honour ``Retry-After`` (whole seconds, rounded up); ``fallback_ms`` when the answer has
    none (an error, or a limiter that says never); give up when it says to wait more than
    ``max_wait_ms``."""

    kind: Literal["retry_after"] = "retry_after"
    fallback_ms: RetryMs = DEFAULT_FALLBACK_MS
    max_wait_ms: RetryMs = MAX_RETRY_DELAY_MS


class BackoffRetry(_Spec):
    """Exponential backoff with full jitter: base ``base_ms``, doubling, capped at ``cap_ms``."""

    kind: Literal["backoff"] = "backoff"
    base_ms: Annotated[RetryMs, Field(gt=0.0)]
    cap_ms: Annotated[RetryMs, Field(gt=0.0)]

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> BackoffRetry:
        if self.cap_ms < self.base_ms:
            raise ValueError(f"cap_ms must be >= base_ms ({self.base_ms}), got {self.cap_ms}")
        return self


RetrySpec = Annotated[
    NoRetry | ImmediateRetry | FixedRetry | RetryAfterRetry | BackoffRetry,
    Field(discriminator="kind"),
]


class ClientPolicy(_Spec):
    """How one tier's clients react to a rejection and to an error (see the module docstring)."""

    on_reject: RetrySpec = Field(default_factory=NoRetry)
    on_error: RetrySpec = Field(default_factory=NoRetry)
    max_attempts: Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)] = 3
    budget_pct: Annotated[int, Field(ge=0, le=100)] | None = None
    deadline_ms: Annotated[RetryMs, Field(gt=0.0)] | None = None

    @property
    def retries(self) -> bool:
        """Whether this policy ever retries."""
        return self.max_attempts > 1 and (
            self.on_reject.kind != "none" or self.on_error.kind != "none"
        )


class ClientsSpec(ClientPolicy):
    """The ``clients:`` section: a policy for every tier, ``tiers`` overriding it by name."""

    tiers: Annotated[dict[str, ClientPolicy], Field(max_length=1024)] = Field(default_factory=dict)

    def policy_of(self, tier: str) -> ClientPolicy:
        """The policy of ``tier``'s clients."""
        return self.tiers.get(tier, self)

    @property
    def any_retries(self) -> bool:
        """Whether some tier's clients ever retry."""
        return self.retries or any(p.retries for p in self.tiers.values())

    def longest_wait_ms(self) -> float:
        """The longest single wait before a retry any policy here can make (ms)."""
        waits = [0.0]
        for p in [self, *self.tiers.values()]:
            for r in (p.on_reject, p.on_error):
                if isinstance(r, FixedRetry):
                    waits.append(r.delay_ms)
                elif isinstance(r, BackoffRetry):
                    waits.append(r.cap_ms)
                elif isinstance(r, RetryAfterRetry):
                    waits.append(max(r.fallback_ms, r.max_wait_ms))
        return max(waits)


__all__ = [
    "DEFAULT_FALLBACK_MS",
    "MAX_ATTEMPTS",
    "MAX_RETRY_DELAY_MS",
    "BackoffRetry",
    "ClientPolicy",
    "ClientsSpec",
    "FixedRetry",
    "ImmediateRetry",
    "NoRetry",
    "RetryAfterRetry",
    "RetrySpec",
]
