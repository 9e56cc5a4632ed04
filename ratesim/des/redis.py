"""The Redis model: shards, each a single-threaded FIFO server, with outages and failovers.

A command reaches its shard at ``arrive_us`` (an event keyed like the request's own events) and
waits behind earlier ones: ``start = max(arrival, busy_until)``, ``finish = start + service``
(Lindley's recursion, one thread per shard). It executes the layer's algorithm at its arrival
event, in arrival order (the shard's order), with ``now_us`` = the caller's clock at send time
(``time_source="client"``) or the Redis clock at ``start`` (``"redis"``); a drift guard refuses
it when the two differ by more than the guard. The reply leaves at ``finish``.

Faults: an outage makes a shard refuse commands (an error after one round trip) or swallow
them (a black hole: no reply ever); a failover at ``at`` restores every key to its state at
``at - lost_writes`` (asynchronous replication loses the last writes; a write is timed at its
command's arrival), steps the Redis clock, and may flush the script cache (every node's next
command then pays one extra round trip: NOSCRIPT, then the script again).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy

from ..algorithms import Algorithm
from ..model.faults import OUTAGE_UP, FailoverSpec, FaultTables, outage_kind
from ..model.redis_server import SNAPSHOT, failover_schedule
from ..ordering import PRIO_FAILOVER
from .events import call_at
from .events import now as now_us

#: ``reply(command, ok, remaining, retry_after_us, reply_us, refused)``: a shard's answer.
Reply = Callable[["Command", int, int, int, int, bool], None]


class Command:
    """One call of a global layer: request ``i`` at layer position ``pos`` (µs times)."""

    __slots__ = (
        "algorithm",
        "back_us",
        "charge_only",
        "client_now",
        "cost",
        "deadline",
        "i",
        "key",
        "pos",
        "reply",
        "service_us",
        "shard",
    )

    def __init__(
        self,
        i: int,
        pos: int,
        shard: int,
        key: int,
        algorithm: Algorithm,
        cost: int,
        client_now: int,
        deadline: int,
        service_us: int,
        back_us: int,
        charge_only: bool,
        reply: Reply,
    ) -> None:
        self.i, self.pos, self.shard, self.key = i, pos, shard, key
        self.algorithm, self.cost = algorithm, cost
        self.client_now, self.deadline = client_now, deadline
        self.service_us, self.back_us = service_us, back_us
        #: The caller has already given up: the command only charges the state.
        self.charge_only = charge_only
        self.reply = reply


class Redis:
    """``shards`` FIFO servers holding every global layer's state, with faults.

    ``tables[pos]`` maps a key id to the state of global layer ``pos``; ``commands`` records
    ``(arrival_us, finish_us, shard)`` of every command executed, in execution order.
    """

    def __init__(
        self,
        env: simpy.Environment,
        shards: int,
        layers: int,
        clock: Callable[[int], int] | None,
        faults: FaultTables,
        failovers: list[FailoverSpec],
        guard_us: list[int],
        redis_time: list[bool],
    ) -> None:
        self.env = env
        self.shards = shards
        self.busy_until = [0] * shards
        self.tables: list[dict[int, list[Any]]] = [{} for _ in range(layers)]
        #: The Redis clock (``None``: true time), failover clock steps included.
        self.clock = clock
        self.faults = faults
        self._any_outage = len(faults.outages) > 0
        self.failovers = failovers
        self.guard_us = guard_us
        self.redis_time = redis_time
        self.cmd_at: list[int] = []
        self.cmd_fin: list[int] = []
        self.cmd_shard: list[int] = []
        #: Called with no argument when a failover flushes the script cache.
        self.on_script_flush: Callable[[], None] = lambda: None
        self._saved: dict[int, list[dict[int, list[Any]]]] = {}
        self._schedule_failovers()

    def outage(self, shard: int, t_us: int) -> int:
        """``OUTAGE_UP``, ``OUTAGE_REFUSED`` or ``OUTAGE_BLACKHOLE`` for ``shard`` at true time
        ``t_us`` (:func:`ratesim.model.faults.outage_kind`)."""
        if not self._any_outage:
            return OUTAGE_UP
        return outage_kind(self.faults.outages, self.faults.outage_shards, t_us, shard)

    def send(self, arrive_us: int, priority: int, command: Command) -> None:
        """``command`` reaches its shard at ``arrive_us`` (µs), keyed ``priority`` there."""
        call_at(self.env, arrive_us, priority, self._execute, command)

    def _execute(self, c: Command) -> None:
        arrival = now_us(self.env)
        sh = c.shard
        start = max(arrival, self.busy_until[sh])
        finish = start + c.service_us
        self.busy_until[sh] = finish
        self.cmd_at.append(arrival)
        self.cmd_fin.append(finish)
        self.cmd_shard.append(sh)
        server_now = start if self.clock is None else self.clock(start)
        reply_us = finish + c.back_us
        guard = self.guard_us[c.pos]
        if guard and abs(c.client_now - server_now) > guard:
            if not c.charge_only:
                c.reply(c, 0, -1, -1, reply_us, True)
            return
        table = self.tables[c.pos]
        st = table.get(c.key)
        alg = c.algorithm
        if st is None:
            st = table[c.key] = alg.new_state()
        now = server_now if self.redis_time[c.pos] else c.client_now
        ok, rem, retry, _ = alg.kernel(alg.params, st, now, c.cost)
        if not c.charge_only:
            c.reply(c, ok, rem, retry, reply_us, False)

    def _schedule_failovers(self) -> None:
        """Each failover's snapshot and restore (:func:`ratesim.model.redis_server.failover_schedule`),
        all scheduled up front so that they come first at their instants, in that order."""
        for at, op, j in failover_schedule(self.failovers):
            if op == SNAPSHOT:
                call_at(self.env, at, PRIO_FAILOVER, self._snapshot, j)
            else:
                call_at(
                    self.env, at, PRIO_FAILOVER, self._restore, j, self.failovers[j].flush_scripts
                )

    def _snapshot(self, j: int) -> None:
        self._saved[j] = [{k: list(st) for k, st in t.items()} for t in self.tables]

    def _restore(self, j: int, flush_scripts: bool) -> None:
        for table, old in zip(self.tables, self._saved.pop(j), strict=True):
            table.clear()
            table.update(old)
        if flush_scripts:
            self.on_script_flush()
