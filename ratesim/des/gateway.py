"""The gateway: nodes behind a load balancer, each request walked through the layers in order.

``Gateway.handle(request)`` is an event a SimPy process yields; its value is the
:class:`~ratesim.des.requests.Decision`. A request walks the policy's layers in order:

* a **node rate layer** decides at once on its node's own state, at the node's clock;
* a **guard layer** (concurrency limit, circuit breaker) passes, rejects, or queues the
  request for a slot (:mod:`ratesim.des.guards`);
* a **global layer** is one command to the Redis model through the network: the request
  borrows a connection of its node's pool for all its global calls (:mod:`ratesim.des.pool`);
  if the reply would come after ``send + timeout``, or a fault means none comes, the layer's
  failure mode decides (``open``: pass on; ``closed``: reject; ``local``: a node-local limiter
  with ``local_share`` of the limit decides) at the instant the caller knows. A global layer
  with a ``store_breaker`` has one per node in front of its calls
  (:mod:`ratesim.model.store_breaker`): an open breaker sends the decision to the failure mode
  at once, without a call or a connection; every call's outcome is reported to it at the
  instant the caller learns it (an event there, keyed like the request's own).

A step that falls on the current instant runs at once (it continues the step in hand); a step at
a later instant is an event there, keyed by :func:`ratesim.ordering.request_priority`, except
where it touches nothing shared (a command sent at a later instant on a held connection, a
final decision), which is done from the step in hand. Every admitted request enters the
backend when there is one; what it holds at guard layers it gives back when the backend is done
(or at its decision when a later layer rejects it).
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from ..algorithms import Algorithm
from ..algorithms.shaping import hold_us
from ..compile import CompiledLayer
from ..model.faults import OUTAGE_BLACKHOLE, OUTAGE_REFUSED
from ..model.store_breaker import SB_COLS, sb_gate, sb_observe, sb_reset
from ..ordering import PRIO_BACKEND, request_priority
from ..outcomes import (
    ALLOWED,
    FAIL_CLOSED,
    FAIL_OPEN,
    LOCAL_ALLOWED,
    LOCAL_REJECTED,
    REJECTED,
    SHADOW_REJECTED,
)
from ..policy import BACKEND_KINDS
from .backend import Backend
from .clients import Clients
from .events import call_at, now_or_at
from .events import now as now_us
from .guards import PASS, WAIT, Guards
from .network import Network
from .pool import ConnectionPool
from .redis import Command, Redis
from .requests import Decision, Request, RequestTable

# A request's connection: none borrowed yet, held, none to be had, handed back.
NO_CONN, HELD, UNAVAILABLE, RETURNED = 0, 1, 2, 3


class Node:
    """A gateway node: its clock, its connection pool, its node-scoped layers' state."""

    def __init__(
        self, index: int, clock: Callable[[int], int] | None, pool: ConnectionPool, layers: int
    ) -> None:
        self.index = index
        #: The node's clock reading at a true instant (``None``: a perfect clock).
        self.clock = clock
        self.pool = pool
        #: ``tables[pos]``: node rate layer ``pos``'s state by key id.
        self.tables: list[dict[int, list[int]]] = [{} for _ in range(layers)]
        #: ``local_tables[pos]``: the local fallback of global layer ``pos``, by key id.
        self.local_tables: list[dict[int, list[int]]] = [{} for _ in range(layers)]
        #: False after a script flush until the node's next command reloads the script.
        self.scripts_cached = True
        #: The store-path breakers of the global layers, ``SB_COLS`` ints per layer position
        #: (:mod:`ratesim.model.store_breaker`; unused for a layer without one).
        self.store_breakers = [0] * (layers * SB_COLS)
        for pos in range(layers):
            sb_reset(self.store_breakers, pos * SB_COLS)

    def time(self, t_us: int) -> int:
        """The node's clock at true time ``t_us`` (µs)."""
        return t_us if self.clock is None else self.clock(t_us)


class Gateway:
    """The gateway nodes, the policy's layers and the walk of every request through them."""

    def __init__(
        self,
        env: simpy.Environment,
        layers: list[CompiledLayer],
        requests: RequestTable,
        nodes: list[Node],
        redis: Redis | None,
        network: Network | None,
        guards: Guards,
        backend: Backend | None,
        pick_node: Callable[[Request], int],
    ) -> None:
        self.env = env
        self.layers = layers
        self.requests = requests
        self.nodes = nodes
        self.redis = redis
        self.network = network
        self.guards = guards
        self.backend = backend
        self.pick_node = pick_node
        specs = [cl.spec for cl in layers]
        self.names = [s.name for s in specs]
        self.is_node = [s.scope == "node" for s in specs]
        self.is_guard = [s.algorithm.kind in BACKEND_KINDS for s in specs]
        self.shadow = [s.mode == "shadow" for s in specs]
        self.failure_mode = [s.failure_mode for s in specs]
        self.timeout_us = [round(s.timeout_ms * 1000) for s in specs]
        self.client_time = [s.time_source == "client" or bool(s.drift_guard_ms) for s in specs]
        #: ``(failures, cooldown_us)`` of each layer's store breaker, ``None`` for none.
        self.store_breaker = [
            (b.failures, b.cooldown_us) if (b := s.store_breaker) is not None else None
            for s in specs
        ]
        self.conn: list[int] = [NO_CONN] * len(requests)
        self.waited_at: dict[int, tuple[int, int]] = {}  # request -> (layer, since) in a pool wait
        self.arrived = 0
        self.done = 0
        self._decisions: dict[int, simpy.Event] = {}
        self._handed: list[tuple[int, int]] = []  # (waiter, layer) walks still to run now
        self._draining = False
        #: Clients that retry (:mod:`ratesim.des.clients`), told of every final refusal.
        self.clients: Clients | None = None

    # --- what clients call ------------------------------------------------------------------

    def handle(self, request: Request) -> simpy.Event:
        """An event that fires at ``request``'s final decision, its value the
        :class:`~ratesim.des.requests.Decision`; the request arrives now."""
        i = self.requests.add(request, now_us(self.env), self.pick_node(request))
        self.conn.append(NO_CONN)
        ev = self.env.event()
        self._decisions[i] = ev
        self.submit(i)
        return ev

    def submit_retry(self, i: int) -> None:
        """Row ``i``, a retry just added to the request table, arrives now."""
        self.conn.append(NO_CONN)
        self.submit(i)

    def submit(self, i: int) -> None:
        """Row ``i`` of the request table arrives now."""
        self.arrived += 1
        self.proceed(i, 0, now_us(self.env))

    # --- the walk ---------------------------------------------------------------------------

    def proceed(self, i: int, pos: int, x: int) -> None:
        """Walk request ``i`` through the layers from ``pos`` at ``x`` (µs, == now)."""
        req = self.requests
        while pos < len(self.layers):
            ap = req.applies[pos]
            if ap is not None and not ap[i]:
                pos += 1
                continue
            if self.is_node[pos] and not self.is_guard[pos]:
                hold = self._node_layer(i, pos, x)
                if hold < 0:
                    self.finish(i, x, pos)
                    return
                if hold > 0:
                    self.hold(i, pos, x, hold)
                    return
                pos += 1
                continue
            if self.is_node[pos]:
                verdict = self._guard(i, pos, x)
                if verdict == WAIT:
                    return
                if not verdict:
                    self.finish(i, x, pos)
                    return
                pos += 1
                continue
            if self.store_breaker[pos] is not None and not self._breaker_calls(i, pos, x):
                self.take_failure_mode(i, pos, x)  # the breaker is open: no call, no connection
                return
            if self.conn[i] == NO_CONN and not self._borrow(i, pos, x):
                return  # waiting for a connection
            if self.conn[i] == UNAVAILABLE:
                self.fail(i, pos, x)
            else:
                self.send(i, pos, x)
            return
        self.finish(i, x, -1)

    def resume(self, i: int, pos: int, x: int) -> None:
        """Continue request ``i`` at layer ``pos`` at ``x`` (µs, ``>= now``)."""
        if x == now_us(self.env):
            self.proceed(i, pos, x)
            return
        ap_all = self.requests.applies
        while pos < len(self.layers) and ap_all[pos] is not None and not ap_all[pos][i]:  # type: ignore[index]
            pos += 1
        if pos == len(self.layers):
            self.finish(i, x, -1)
        elif not self.is_node[pos] and self.conn[i] == HELD and self.store_breaker[pos] is None:
            self.send(i, pos, x)  # touches nothing shared before the command reaches Redis
        else:
            call_at(self.env, x, request_priority(i, pos), self.proceed, i, pos, x)

    def finish(self, i: int, y: int, rejected_by: int) -> None:
        """Request ``i``'s final decision at ``y`` (µs, ``>= now``): rejected by layer
        ``rejected_by`` (-1: admitted)."""
        req = self.requests
        req.decided[i] = y
        req.rejected_by[i] = rejected_by
        self.done += 1
        if self.conn[i] == HELD:
            self.conn[i] = RETURNED
            self.nodes[req.node[i]].pool.give_back(y)
        ev = self._decisions.pop(i, None)
        if ev is not None:
            name = self.names[rejected_by] if rejected_by >= 0 else None
            retry = 0
            if rejected_by >= 0:
                closed = req.outcome[rejected_by][i] == FAIL_CLOSED
                retry = -1 if closed else req.retry_after.get(i, -1)
            d = Decision(rejected_by < 0, name, y, retry, i)
            now_or_at(self.env, y, simpy.events.NORMAL, ev.succeed, d)
        if self.clients is not None and rejected_by >= 0:
            self.clients.refused(i, y, rejected_by)
        # last: a release now may hand slots over, and their walks go on from here
        if self.backend is not None:
            prio = request_priority(i, PRIO_BACKEND)
            if rejected_by < 0:
                now_or_at(self.env, y, prio, self.backend.enter, i)
            elif self.guards.holds(i):
                now_or_at(self.env, y, prio, self.release_held, i, False)

    # --- node-scoped layers -----------------------------------------------------------------

    def _algorithm(self, i: int, pos: int) -> Algorithm:
        return self.layers[pos].algs[self.requests.tier[i]]

    def _node_layer(self, i: int, pos: int, x: int) -> int:
        """Node rate layer ``pos`` on request ``i`` at ``x`` (== now): -1 if rejected, else the
        µs to hold it before it goes on (0: at once; see :meth:`hold`)."""
        req = self.requests
        node = self.nodes[req.node[i]]
        tier = req.tier[i]
        alg = self.layers[pos].node_algorithm(tier, x)  # a follow layer: by epoch at x
        ok, retry = self._run_kernel(i, pos, node.tables[pos], alg, node.time(x))
        if ok:
            req.outcome[pos][i] = ALLOWED
            return hold_us(self.layers[pos].holds[tier], ok, retry)
        req.outcome[pos][i] = SHADOW_REJECTED if self.shadow[pos] else REJECTED
        return 0 if self.shadow[pos] else -1

    def _run_kernel(
        self, i: int, pos: int, table: dict[int, list[int]], alg: Algorithm, now: int
    ) -> tuple[int, int]:
        """``alg``'s kernel for request ``i`` on ``table`` at clock reading ``now``; records the
        remaining figure (and the retry-after of a refusal) and returns ``(allowed,
        retry_after_us)`` (a shaping algorithm's hold, when it admitted)."""
        req = self.requests
        k = req.keys[pos][i]
        st = table.get(k)
        if st is None:
            st = table[k] = alg.new_state()
        ok, rem, retry, _ = alg.kernel(alg.params, st, now, req.cost[i])
        req.remaining[pos][i] = rem
        if not ok:
            req.retry_after[i] = retry
        return ok, retry

    def hold(self, i: int, pos: int, y: int, d: int) -> None:
        """Shaping: layer ``pos`` admitted request ``i`` at ``y`` (µs, ``>= now``) with a delay
        ``d > 0`` (µs): it waits, then goes on from the next layer at ``y + d``."""
        self.requests.held[i] += d
        self.resume(i, pos + 1, y + d)

    def _guard(self, i: int, pos: int, x: int) -> int:
        """Guard layer ``pos`` at ``x`` (== now): PASS (1), REJECT (0) or WAIT (2)."""
        req = self.requests
        nd = req.node[i]
        alg = self._algorithm(i, pos)
        code, rem = self.guards.enter(i, pos, nd, req.keys[pos][i], alg, self.nodes[nd].time(x))
        if code == PASS:
            req.outcome[pos][i] = ALLOWED
            if rem >= 0:
                req.remaining[pos][i] = rem
        elif code == WAIT:
            call_at(
                self.env, x + alg.params[1], request_priority(i, pos), self._slot_timeout, i, pos
            )
        else:
            req.outcome[pos][i] = REJECTED
            req.retry_after[i] = -1
        return code

    def _slot_timeout(self, i: int, pos: int) -> None:
        req = self.requests
        nd = req.node[i]
        now = now_us(self.env)
        alg = self._algorithm(i, pos)
        if self.guards.give_up(i, pos, nd, req.keys[pos][i], alg, self.nodes[nd].time(now)):
            req.outcome[pos][i] = REJECTED
            self.finish(i, now, pos)

    def release_held(self, i: int, completed: bool) -> None:
        """Request ``i`` gives back its slots and passes now; waiters handed a slot go on."""
        if not self.guards.holds(i):
            return
        req = self.requests
        now = now_us(self.env)
        handoffs = self.guards.release(i, self.nodes[req.node[i]].time(now), completed)
        for w, pos in handoffs:
            req.outcome[pos][w] = ALLOWED
            req.remaining[pos][w] = 0
        # Each waiter's walk goes on now, first hand-off first, and one waiter's walk may end
        # in a release that hands over again: a stack of walks to run, not nested calls (a
        # cascade of hand-offs would exhaust Python's recursion limit). A release is the last
        # thing its caller does, so running the new walks next is the order nested calls give.
        self._handed.extend(reversed(handoffs))
        if self._draining:
            return
        self._draining = True
        try:
            while self._handed:
                w, pos = self._handed.pop()
                self.proceed(w, pos + 1, now)
        finally:
            self._draining = False

    def backend_done(self, i: int) -> None:
        """Request ``i``'s backend call has ended now."""
        self.release_held(i, True)

    # --- global layers ----------------------------------------------------------------------

    def _borrow(self, i: int, pos: int, x: int) -> bool:
        """Borrow a connection at ``x`` (== now); False when the request must wait for one."""
        pool = self.nodes[self.requests.node[i]].pool
        got = pool.borrow(i)
        if got is None:
            self.waited_at[i] = (pos, x)
            call_at(self.env, x + pool.max_wait_us, request_priority(i, pos), self._pool_timeout, i)
            return False
        self.conn[i] = HELD if got else UNAVAILABLE
        return True

    def _pool_timeout(self, i: int) -> None:
        if self.nodes[self.requests.node[i]].pool.give_up(i):
            self._wait_over(i, False)

    def _wait_over(self, i: int, got: bool) -> None:
        """Request ``i``'s wait for a connection ends now, with one or without."""
        pos, since = self.waited_at.pop(i)
        now = now_us(self.env)
        self.conn[i] = HELD if got else UNAVAILABLE
        self.requests.pool_wait[i] = now - since
        # what ``proceed`` would do at this global layer, now that the connection is settled
        # (directly: a store breaker's gate was passed before the wait)
        if got:
            self.send(i, pos, now)
        else:
            self.fail(i, pos, now)

    def send(self, i: int, pos: int, x: int) -> None:
        """Global layer ``pos``'s command for request ``i``, sent at ``x`` (µs, ``>= now``)."""
        assert self.redis is not None and self.network is not None
        req = self.requests
        g = self.layers[pos].gidx
        deadline = x + self.timeout_us[pos]
        a = x + self.network.out_us[g][i]
        node = self.nodes[req.node[i]]
        if self.network.cut_off(node.index, x):
            self.fail(i, pos, deadline)
            return
        shard = req.shard[pos][i]
        fault = self.redis.outage(shard, a)
        if fault == OUTAGE_REFUSED:
            self.fail(i, pos, min(a + self.network.back_us[g][i], deadline))
            return
        if fault == OUTAGE_BLACKHOLE:
            self.fail(i, pos, deadline)
            return
        client_now = node.time(x) if self.client_time[pos] else x
        if not node.scripts_cached:
            # NOSCRIPT: the error comes back, the script is loaded, the call goes out again
            node.scripts_cached = True
            a += self.network.back_us[g][i] + self.network.out_us[g][i]
        late = a > deadline
        cmd = Command(
            i,
            pos,
            shard,
            req.keys[pos][i],
            self._algorithm(i, pos),
            req.cost[i],
            client_now,
            deadline,
            req.service_us[g][i],
            self.network.back_us[g][i],
            late,
            self._reply,
        )
        self.redis.send(a, request_priority(i, pos), cmd)
        if late:
            self.fail(i, pos, deadline)

    def _reply(
        self, c: Command, ok: int, rem: int, retry: int, reply_us: int, refused: bool
    ) -> None:
        """Redis has executed (or refused) ``c``; its reply reaches the node at ``reply_us``."""
        i, pos = c.i, c.pos
        if refused:
            self.fail(i, pos, min(reply_us, c.deadline))
            return
        if reply_us > c.deadline:
            self.fail(i, pos, c.deadline)
            return
        if self.store_breaker[pos] is not None:
            self._answered(i, pos, ok, rem, retry, reply_us)
            return
        self._decide_answer(i, pos, ok, rem, retry, reply_us)

    def _decide_answer(
        self, i: int, pos: int, ok: int, rem: int, retry: int, reply_us: int
    ) -> None:
        """Global layer ``pos``'s answer to request ``i`` decides; it reaches the node at
        ``reply_us`` (µs, ``>= now``)."""
        req = self.requests
        req.remaining[pos][i] = rem
        if ok:
            req.outcome[pos][i] = ALLOWED
            d = hold_us(self.layers[pos].holds[req.tier[i]], ok, retry)
            if d > 0:
                self.hold(i, pos, reply_us, d)
                return
        elif self.shadow[pos]:
            req.outcome[pos][i] = SHADOW_REJECTED
        else:
            req.outcome[pos][i] = REJECTED
            req.retry_after[i] = retry
            self.finish(i, reply_us, pos)
            return
        self.resume(i, pos + 1, reply_us)

    def fail(self, i: int, pos: int, y: int) -> None:
        """Layer ``pos`` could not be asked; its failure mode decides at ``y`` (µs, ``>= now``)."""
        cfg = self.store_breaker[pos]
        if cfg is not None:
            # the error or timeout reaches the node's breaker when the caller learns it
            if y != now_us(self.env):
                call_at(self.env, y, request_priority(i, pos), self.fail, i, pos, y)
                return
            node = self.nodes[self.requests.node[i]]
            sb_observe(node.store_breakers, pos * SB_COLS, cfg[0], i, 0, y)
        self.take_failure_mode(i, pos, y)

    # --- the store breaker ------------------------------------------------------------------

    def _breaker_calls(self, i: int, pos: int, x: int) -> bool:
        """The node's store breaker of layer ``pos`` lets request ``i`` call at ``x`` (== now)."""
        cfg = self.store_breaker[pos]
        assert cfg is not None
        node = self.nodes[self.requests.node[i]]
        return sb_gate(node.store_breakers, pos * SB_COLS, cfg[1], i, x) == 1

    def _answered(self, i: int, pos: int, ok: int, rem: int, retry: int, reply_us: int) -> None:
        """An answer (allow or deny) reaches the node at ``reply_us``: the breaker hears of it
        then, and the answer decides then."""
        if reply_us != now_us(self.env):
            call_at(
                self.env, reply_us, request_priority(i, pos), self._answered, i, pos, ok, rem,
                retry, reply_us,
            )  # fmt: skip
            return
        cfg = self.store_breaker[pos]
        assert cfg is not None
        node = self.nodes[self.requests.node[i]]
        sb_observe(node.store_breakers, pos * SB_COLS, cfg[0], i, 1, reply_us)
        self._decide_answer(i, pos, ok, rem, retry, reply_us)

    def take_failure_mode(self, i: int, pos: int, y: int) -> None:
        """Layer ``pos``'s failure mode decides request ``i`` at ``y`` (µs, ``>= now``)."""
        mode = self.failure_mode[pos]
        req = self.requests
        if mode == "local":
            now_or_at(self.env, y, request_priority(i, pos), self._fail_local, i, pos)
        elif mode == "open":
            req.outcome[pos][i] = FAIL_OPEN
            self.resume(i, pos + 1, y)
        else:
            req.outcome[pos][i] = FAIL_CLOSED
            if self.shadow[pos]:
                self.resume(i, pos + 1, y)
            else:
                self.finish(i, y, pos)

    def _fail_local(self, i: int, pos: int) -> None:
        """The node-local fallback of global layer ``pos`` decides request ``i`` now."""
        req = self.requests
        now = now_us(self.env)
        node = self.nodes[req.node[i]]
        local = self.layers[pos].local_algs
        assert local is not None
        alg = local[req.tier[i]]
        ok, retry = self._run_kernel(i, pos, node.local_tables[pos], alg, node.time(now))
        if ok:
            req.outcome[pos][i] = LOCAL_ALLOWED
            d = hold_us(self.layers[pos].local_holds[req.tier[i]], ok, retry)
            if d > 0:
                self.hold(i, pos, now, d)
                return
        else:
            req.outcome[pos][i] = LOCAL_REJECTED
            if not self.shadow[pos]:
                self.finish(i, now, pos)
                return
        self.resume(i, pos + 1, now)
