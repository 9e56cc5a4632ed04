"""The concurrency and circuit-breaker layers in front of the backend (node-scoped).

A concurrency layer admits up to ``max_in_flight`` requests per key and node, queues up to
``max_queue`` more for at most ``max_wait``, and rejects the rest; a breaker lets requests pass
while closed (and one probe when half open). What a request takes here - a slot, a pass - it
holds until its backend call ends (or, when a later layer rejects it, until its decision):
then the slot goes to the oldest live waiter of that layer, key and node, whose walk through
the layers continues at once, and the breaker learns the call's response time. The state
machines are :mod:`ratesim.algorithms.concurrency` and :mod:`ratesim.algorithms.breaker`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ..algorithms import Algorithm
from ..algorithms.breaker import (
    OPEN,
    breaker_on_complete,
    breaker_release_probe,
    breaker_try_pass,
)
from ..algorithms.breaker import STATE as BREAKER_STATE
from ..algorithms.concurrency import (
    ADMIT,
    HANDOFF,
    IN_FLIGHT,
    QUEUE,
    QUEUED,
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)

#: What ``Guards.enter`` answers.
PASS, REJECT, WAIT = 1, 0, 2


class Guards:
    """The state of every guard layer on every node, and what each request holds there."""

    def __init__(self, concurrency: list[bool], nodes: int) -> None:
        n_layers = len(concurrency)
        #: ``concurrency[pos]``: layer ``pos`` is a concurrency limit (else a breaker or none).
        self.concurrency = concurrency
        self.tables: list[list[dict[int, list[Any]]]] = [
            [{} for _ in range(nodes)] for _ in range(n_layers)
        ]
        self.queues: list[list[dict[int, deque[int]]]] = [
            [{} for _ in range(nodes)] for _ in range(n_layers)
        ]
        #: ``held[i]``: what request ``i`` holds, in the order it took them.
        self.held: dict[int, list[tuple[Any, ...]]] = {}
        #: ``waiting_at[i]``: the layer position + 1 request ``i`` waits at (absent: none).
        self.waiting_at: dict[int, int] = {}

    def enter(
        self, i: int, pos: int, node: int, key: int, alg: Algorithm, local_now: int
    ) -> tuple[int, int]:
        """Request ``i`` reaches guard layer ``pos`` at node time ``local_now``: ``(PASS,
        remaining slots)``, ``(REJECT, -1)`` or ``(WAIT, -1)`` (queued for a slot)."""
        table = self.tables[pos][node]
        st = table.get(key)
        if st is None:
            st = table[key] = alg.new_state()
        p = alg.params
        if self.concurrency[pos]:
            code = concurrency_acquire(p, st, local_now)
            if code == ADMIT:
                self._hold(i, (True, pos, p, st, node, key))
                return PASS, p[0] - st[IN_FLIGHT]
            if code == QUEUE:
                self.queues[pos][node].setdefault(key, deque()).append(i)
                self.waiting_at[i] = pos + 1
                return WAIT, -1
            return REJECT, -1
        probe = st[BREAKER_STATE] == OPEN
        if breaker_try_pass(p, st, local_now):
            self._hold(i, (False, pos, p, st, local_now, probe))
            return PASS, -1
        return REJECT, -1

    def give_up(
        self, i: int, pos: int, node: int, key: int, alg: Algorithm, local_now: int
    ) -> bool:
        """Request ``i``'s wait at layer ``pos`` times out; False if it is no longer waiting
        there (it got a slot, or moved on)."""
        if self.waiting_at.get(i) != pos + 1:
            return False
        del self.waiting_at[i]
        concurrency_cancel_wait(alg.params, self.tables[pos][node][key], local_now)
        return True

    def release(self, i: int, local_now: int, completed: bool) -> list[tuple[int, int]]:
        """Request ``i`` gives back everything it holds (its backend call ``completed`` or
        not) at node time ``local_now``; returns the ``(waiter, layer)`` hand-offs made, in
        order: each waiter now holds the slot and must continue after that layer."""
        hs = self.held.pop(i, None)
        handoffs: list[tuple[int, int]] = []
        for h in hs or ():
            if h[0]:
                _, pos, p, st, node, key = h
                if concurrency_complete(p, st, local_now) == HANDOFF:
                    dq = self.queues[pos][node][key]
                    w = dq.popleft()
                    while self.waiting_at.get(w) != pos + 1:  # gave up, or moved on
                        w = dq.popleft()
                    del self.waiting_at[w]
                    self._hold(w, h)
                    handoffs.append((w, pos))
            else:
                _, pos, p, st, t_pass, probe = h
                if completed:
                    breaker_on_complete(p, st, local_now, local_now - t_pass, 0)
                elif probe:
                    breaker_release_probe(p, st, local_now)
        return handoffs

    def holds(self, i: int) -> bool:
        """True while request ``i`` holds a slot or a pass."""
        return i in self.held

    def leftovers(self) -> int:
        """Slots still taken or queued, holders and waiters (all zero after a whole run)."""
        taken = sum(
            1
            for pos, layer in enumerate(self.tables)
            if self.concurrency[pos]
            for table in layer
            for st in table.values()
            if st[IN_FLIGHT] or st[QUEUED]
        )
        return taken + len(self.held) + len(self.waiting_at)

    def _hold(self, i: int, h: tuple[Any, ...]) -> None:
        self.held.setdefault(i, []).append(h)
