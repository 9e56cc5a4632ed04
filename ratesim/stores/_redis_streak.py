"""One log warning per streak of "Redis unreachable" failure-mode decisions.

A store that answers ``fail_open`` because no server listens is silent by design (the request
is admitted), so an operator learns of the outage only from ``RedisStore.errors``. The store
logs to the ``logging`` logger :data:`LOGGER_NAME` (``"ratesim.stores.redis"``): a WARNING at
the first unreachable failure of a streak, and a WARNING with the streak's count when the
server answers again. A streak is the run of failure-mode decisions of kind ``"connection"``
or ``"timeout"`` between two answered calls; other kinds (BUSY, OOM, ...) mean a server that
answers and are not logged here. Nothing is logged with ``failure_mode="raise"``: the caller
sees the exception.
"""

from __future__ import annotations

import logging
from typing import Final

#: The logger the Redis store writes to.
LOGGER_NAME: Final = "ratesim.stores.redis"
#: Failure kinds that mean the server could not be reached.
UNREACHABLE_KINDS: Final = frozenset({"connection", "timeout"})

log = logging.getLogger(LOGGER_NAME)


class FailureStreak:
    """Counts the unreachable failure-mode decisions since the last answered call."""

    def __init__(self, where: str) -> None:
        self.where = where  # the server, for the message (host:port or the client's repr)
        self.count = 0

    def failed(self, kind: str, outcome: str) -> None:
        """One failure-mode decision ``outcome`` (``fail_open``/``fail_closed``) of ``kind``."""
        if kind not in UNREACHABLE_KINDS:
            return
        self.count += 1
        if self.count == 1:
            log.warning(
                "Redis at %s is unreachable (%s): answering %s until it replies; "
                "the count is logged when it does",
                self.where,
                kind,
                outcome,
            )

    def answered(self) -> None:
        """The server answered a call: the streak, if any, ends and its count is logged."""
        if self.count:
            log.warning(
                "Redis at %s answers again after %d failure-mode decisions (unreachable)",
                self.where,
                self.count,
            )
            self.count = 0
