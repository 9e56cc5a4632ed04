"""A node's pool of Redis connections, borrowed per request for all its global calls.

A request borrows one connection when it reaches its first global layer and hands it back
when its decision is final. When every connection is in use it waits, first come first
served, up to ``max_wait_us``; then it goes on without one (each global layer it reaches takes
its failure mode). ``max_wait_us == 0`` never waits.

A connection handed back at instant ``y`` is free for any borrower from ``y`` on (the return is
known when the decision is, possibly before ``y``). While requests wait, each return is an
event at ``y`` (priority ``PRIO_RELEASE``, before the arrivals of that instant) that hands the
connection to the oldest waiter, whose walk then goes on.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable

import simpy

from ..ordering import PRIO_RELEASE
from .events import call_at
from .events import now as now_us


class ConnectionPool:
    """``size`` connections of one node; ``borrow`` / ``give_back`` and a FIFO of waiters."""

    def __init__(
        self,
        env: simpy.Environment,
        size: int,
        max_wait_us: int,
        on_wait_over: Callable[[int, bool], None],
    ) -> None:
        self.env = env
        self.size = size
        self.max_wait_us = max_wait_us
        #: Called as ``on_wait_over(request, got_connection)`` when a wait ends.
        self.on_wait_over = on_wait_over
        self.in_use = 0
        self._returns: list[int] = []  # instants of connections handed back, not yet counted
        self._waiters: deque[int] = deque()
        self._waiting: set[int] = set()

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection now."""
        return len(self._waiting)

    @property
    def outstanding(self) -> int:
        """Connections borrowed and not yet handed back (counted returns excluded)."""
        return self.in_use - len(self._returns)

    def borrow(self, request: int) -> bool | None:
        """Borrow a connection now: True (got one), False (none and no waiting), or None (the
        request waits; ``on_wait_over`` tells how the wait ended)."""
        now = now_us(self.env)
        while self._returns and self._returns[0] <= now:
            heapq.heappop(self._returns)
            self.in_use -= 1
        if not self._waiting and self.in_use < self.size:
            self.in_use += 1
            return True
        if self.max_wait_us == 0:
            return False
        self._waiters.append(request)
        self._waiting.add(request)
        if len(self._waiting) == 1:
            # returns now need events, to hand their connection to the waiter on time
            for y in self._returns:
                call_at(self.env, y, PRIO_RELEASE, self._hand_over)
            self._returns.clear()
        return None

    def wait_timeout_at(self, request: int) -> int:
        """The instant a wait that starts now gives up (µs)."""
        return now_us(self.env) + self.max_wait_us

    def give_up(self, request: int) -> bool:
        """The wait of ``request`` times out now; False if it was already over."""
        if request not in self._waiting:
            return False
        self._waiting.discard(request)
        return True

    def give_back(self, at: int) -> None:
        """A borrowed connection comes back at instant ``at`` (µs, ``>= now``)."""
        if self._waiting:
            call_at(self.env, at, PRIO_RELEASE, self._hand_over)
        else:
            heapq.heappush(self._returns, at)

    def _hand_over(self) -> None:
        self.in_use -= 1
        while self._waiters:
            w = self._waiters.popleft()
            if w in self._waiting:
                self._waiting.discard(w)
                self.in_use += 1
                self.on_wait_over(w, True)
                return
