"""The protected backend: servers whose service time grows with the load.

An admitted request enters the backend at its decision and leaves after its base service time
(drawn per request before the run) slowed by the requests in the backend at its entry,
itself included (:mod:`ratesim.model.backend` has the formula).
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from ..model.backend import BackendSpec, slowed_service_us
from ..ordering import PRIO_BACKEND, request_priority
from .events import call_at
from .events import now as now_us


class Backend:
    """``spec.servers`` servers; ``enter(i)`` now, ``on_done(i)`` when request ``i`` leaves."""

    def __init__(
        self,
        env: simpy.Environment,
        spec: BackendSpec,
        base_us: list[int],
        on_done: Callable[[int], None],
    ) -> None:
        self.env = env
        self.spec = spec
        #: ``base_us[i]``: request ``i``'s base service time, µs.
        self.base_us = base_us
        self.on_done = on_done
        self.in_flight = 0
        #: ``done_us[i]``: when request ``i`` left the backend (-1: never entered; rows added
        #: during the run are covered once one of them enters, see :meth:`World.data`).
        self.done_us: list[int] = [-1] * len(base_us)

    def enter(self, i: int) -> None:
        """Request ``i`` enters now."""
        self.in_flight += 1
        if i >= len(self.done_us):  # a row added during the run (a retry, a user's request)
            self.done_us.extend([-1] * (len(self.base_us) - len(self.done_us)))
        spec = self.spec
        service = slowed_service_us(self.base_us[i], self.in_flight, spec.load_factor, spec.servers)
        done = now_us(self.env) + service
        call_at(self.env, done, request_priority(i, PRIO_BACKEND + 1), self._leave, i)

    def _leave(self, i: int) -> None:
        self.in_flight -= 1
        self.done_us[i] = now_us(self.env)
        self.on_done(i)
