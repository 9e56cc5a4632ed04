"""``RedisStore``'s store-path breaker: the simulation's ``store_breaker`` on a real client.

The same state machine and parameters as a global layer's breaker in the runners
(:mod:`ratesim.model.store_breaker`, :class:`ratesim.policy.StoreBreakerSpec`): after
``failures`` consecutive failure-mode decisions (timeouts, refused connections, transient
server replies) the store stops calling Redis for ``cooldown_ms`` and answers by its failure
mode at once (kind ``"breaker_open"``, charged ``"no"``); then one call goes through as the
probe: an answer closes the breaker, a failure opens it again. One breaker per store (a store
is one client, as a gateway node is). Time is the process's monotonic clock in integer µs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ..model.store_breaker import (
    SB_COLS,
    SB_OPENS,
    SB_SHORT,
    sb_gate,
    sb_observe,
    sb_open_us,
    sb_reset,
)
from ..policy import StoreBreakerSpec

#: The failure kind of a decision the open breaker made without calling Redis.
BREAKER_OPEN = "breaker_open"


def monotonic_us() -> int:
    """The monotonic clock in integer µs."""
    return time.monotonic_ns() // 1000


class StoreBreaker:
    """One breaker row and the calls it let through (see the module docstring)."""

    def __init__(self, spec: StoreBreakerSpec, clock_us: Callable[[], int] = monotonic_us) -> None:
        self.spec = spec
        self.clock_us = clock_us
        self.row = [0] * SB_COLS
        sb_reset(self.row, 0)
        self._calls = 0

    @classmethod
    def build(cls, value: Any, clock_us: Callable[[], int] | None = None) -> StoreBreaker | None:
        """A breaker from a :class:`StoreBreakerSpec` or a mapping of its fields (``None``:
        none); a bad value is a ``ValueError`` naming the field."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            try:
                value = StoreBreakerSpec.model_validate(dict(value))
            except Exception as exc:  # pydantic's message names the field and the bound
                raise ValueError(f"store_breaker: {exc}") from None
        if not isinstance(value, StoreBreakerSpec):
            raise ValueError(
                "store_breaker must be a StoreBreakerSpec or a mapping "
                f"{{failures, cooldown_ms}}, got {value!r}"
            )
        return cls(value, clock_us or monotonic_us)

    def gate(self) -> int:
        """The id of a call the breaker lets through now, or -1: answer by the failure mode."""
        self._calls += 1
        if sb_gate(self.row, 0, self.spec.cooldown_us, self._calls, self.clock_us()) == 1:
            return self._calls
        return -1

    def observe(self, call: int, ok: bool) -> None:
        """Call ``call`` (from :meth:`gate`) got an answer (``ok``) or failed, now."""
        sb_observe(self.row, 0, self.spec.failures, call, 1 if ok else 0, self.clock_us())

    @property
    def short_circuited(self) -> int:
        """Calls the open breaker refused (an ``acquire_many`` is one call; ``errors``
        counts its decisions)."""
        return self.row[SB_SHORT]

    @property
    def opens(self) -> int:
        """Times the breaker opened from closed."""
        return self.row[SB_OPENS]

    def open_us(self) -> int:
        """µs the breaker has spent open or half-open, up to now."""
        return sb_open_us(self.row, 0, self.clock_us())
