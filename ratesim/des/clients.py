"""Clients that retry: a refused user request comes back to the load balancer (a closed loop).

:class:`Clients` is told every final refusal (:meth:`Gateway.finish` calls
:meth:`Clients.refused`); the tier's policy (:mod:`ratesim.clients`, compiled by
:func:`ratesim.compile.compile_clients`) says whether the client tries again and when
(:func:`ratesim.model.retry.retry_at_us`, the arithmetic both runners share). A retry is a new
row of the request table (:meth:`RequestTable.add_retry`: same user, tier, route and cost; its
own draws by (request, attempt), :func:`ratesim.compile.draw_retries`), created when it arrives.

At one instant retries arrive after the scenario's own arrivals of that instant (its traffic
source hands over to :meth:`arrive` after its batch), in the order of the user requests they
retry (``origin``), so that their rows - and thus the order of their events
(:mod:`ratesim.ordering`) - do not depend on the order in which the refusals were processed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

import numpy as np
import simpy

from ..compile import CompiledClients
from ..model.counter import jitter_u24
from ..model.retry import CL_BUDGET, retry_at_us
from ..ordering import PRIO_ARRIVAL
from ..outcomes import FAIL_CLOSED
from .events import call_at
from .requests import RequestTable


class Clients:
    """The scenario's clients: which refusals they retry, and their retries' arrivals."""

    def __init__(
        self,
        env: simpy.Environment,
        requests: RequestTable,
        compiled: CompiledClients,
        scenario_instants: np.ndarray,
        is_guard: list[bool],
    ) -> None:
        self.env = env
        self.requests = requests
        self.compiled = compiled
        self.is_guard = is_guard
        #: How many user requests the scenario brought (rows ``0 .. n - 1``).
        self.n_users = len(requests)
        #: Retries to come: ``(arrival µs, origin row, attempt)``, a heap.
        self.pending: list[tuple[int, int, int]] = []
        #: Retries sent so far by each tier's clients (the budget's withdrawals).
        self.sent = [0] * compiled.table.shape[0]
        self._instants = set(scenario_instants.tolist())
        self._called: set[int] = set()
        #: Hands an arrived row to the gateway (:meth:`Gateway.submit_retry`).
        self.submit: Callable[[int], None] = _unset

    def refused(self, i: int, y: int, pos: int) -> None:
        """Row ``i`` was refused by layer ``pos`` at ``y`` (µs): retry it if its client does."""
        req = self.requests
        origin = req.origin[i]
        if origin >= self.n_users:
            return  # a request of a user's own process: that process decides
        attempt = req.attempt[i]
        tier = req.tier[i]
        row = self.compiled.table[tier]
        outcome = req.outcome[pos][i]
        is_error = outcome == FAIL_CLOSED or self.is_guard[pos]
        retry_after = -1 if is_error else req.retry_after.get(i, -1)
        budget = row[CL_BUDGET] >= 0
        requests = self.compiled.requests_by(tier, y) if budget else 0
        t = retry_at_us(
            row,
            is_error,
            y,
            retry_after,
            attempt,
            req.t[origin],
            jitter_u24(self.compiled.seed, origin, attempt + 1),
            requests,
            self.sent[tier],
        )
        if t < 0:
            return
        if budget:
            self.sent[tier] += 1
        heapq.heappush(self.pending, (t, origin, attempt + 1))
        if t not in self._instants and t not in self._called:
            self._called.add(t)
            call_at(self.env, t, PRIO_ARRIVAL, self.arrive, t)

    def arrive(self, t: int) -> None:
        """The retries due at ``t`` (== now) arrive, by origin row."""
        while self.pending and self.pending[0][0] == t:
            _, origin, attempt = heapq.heappop(self.pending)
            i = self.requests.add_retry(origin, attempt, t)
            self.submit(i)


def _unset(i: int) -> None:
    raise RuntimeError("Clients.submit is not connected to a gateway")
