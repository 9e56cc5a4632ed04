"""One ``RedisStore.acquire_many`` call: pipelined batches on one connection, one deadline.

The calls go out in batches of ``batch`` commands, at most ``PIPELINE_DEPTH`` batches in flight
on one pooled connection, so the server runs them in request order. Every request ends with
exactly one decision, and the run keeps three promises:

* **Known dead, stop at once.** The first transport failure (connect refused or timed out, a
  reset, a read timeout) ends the run: the requests not yet written take the failure mode at
  once (charged ``"no"``), with no new connection and no further timeout, so a black-holed
  server costs one timeout per call, not one per batch.
* **One deadline.** With ``deadline_s``, every read waits at most until the deadline; once it
  has passed, the requests still unanswered take the failure mode (kind ``"deadline"``).
* **Partial pipelines keep what ran.** Replies are taken one by one: when a batch is cut, the
  requests answered before the cut keep their decisions, the rest are failure-mode decisions
  flagged ``charged="unknown"`` (written, reply lost) or ``"no"`` (never written).

A batch that met missing code (``NOSCRIPT``, ``Function not found``) is repaired on the same
connection once everything in flight is read: the code is loaded and the failed calls rerun,
except a call whose key already has a later call that ran (another client reloaded the code
mid-batch): rerunning it would reorder the key's requests, so it takes the failure mode (kind
``"noscript_race"``, charged ``"no"``; ``ReorderedError`` with ``failure_mode="raise"``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from ..algorithms.base import Algorithm, Decision
from ._redis_errors import Charged, ReorderedError, classify, is_reply, reply_kind
from ._redis_wire import send_payload

if TYPE_CHECKING:  # pragma: no cover
    from .redis_store import RedisStore, _Spec

#: Batches in flight at once (2: the server never waits for the client).
PIPELINE_DEPTH = 2
#: How many code reloads in a row may get no call through before a batch gives up.
CODE_RELOAD_ATTEMPTS = 10

Call = tuple[str, str, int]  # (Redis key, time argument, cost)
_UNREAD: Any = object()  # a reply slot not read (yet)


class BatchRun:
    """Decide ``calls`` (in order) for ``limiter``; see the module docstring."""

    def __init__(
        self,
        store: RedisStore,
        limiter: Algorithm,
        spec: _Spec,
        calls: list[Call],
        batch: int,
        deadline_s: float | None,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.spec = spec
        self.calls = calls
        self.batch = batch
        self.deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.sock_timeout: float | None = store.socket_timeout_s
        self.pool = store.client.connection_pool
        self.conn: Any = None
        self.out: list[Decision | None] = [None] * len(calls)
        self.replies: list[Any] = [_UNREAD] * len(calls)
        self.pending: deque[tuple[int, int]] = deque()  # written, unread batches (start, end)
        self.sent = 0  # calls[:sent] have been written
        self.dead = False
        self.answered = False
        self.finished = False  # the stream ended normally: every written call was answered

    def run(self) -> list[Decision]:
        """Every request's decision, in request order."""
        try:
            self._stream()
        finally:
            self._release()
        if self.store._mode == "auto" and self.answered:  # not .mode: that would ask the server
            self.store._mode = "function"
        out = self.out
        assert all(d is not None for d in out), "every request must get a decision"
        return out  # type: ignore[return-value]  # checked just above

    # -- the stream -----------------------------------------------------------------------------

    def _stream(self) -> None:
        n = len(self.calls)
        while not self.dead and (self.sent < n or self.pending):
            while not self.dead and self.sent < n and len(self.pending) < PIPELINE_DEPTH:
                self._send_next()
            if self.dead or not self.pending:
                continue
            start, end = self.pending.popleft()
            self._read(start, end)
            if not self.dead and self._any_missing(start, end):
                # Read everything in flight first: nothing may run between the repair and the
                # calls it reruns.
                while self.pending and not self.dead:
                    more, end = self.pending.popleft()
                    self._read(more, end)
                if not self.dead:
                    self._repair(start, end)
            if not self.dead:
                # The server is busy with the next batch while these replies are decoded.
                self._decide(start, end)
        self.finished = True

    def _send_next(self) -> None:
        start = self.sent
        end = min(start + self.batch, len(self.calls))
        if self._expired():
            self._die("deadline")
            return
        if self.conn is None:
            try:
                self.conn = self.pool.get_connection()
            except Exception as exc:  # nothing was written
                self._die_on(exc)
                return
        payload = self.store._pack(self.spec, self.calls[start:end])
        self.sent = end  # a failed write may still have delivered part of the batch
        self.pending.append((start, end))
        try:
            send_payload(self.conn, payload)
        except Exception as exc:
            self._die_on(exc)

    def _read(self, start: int, end: int) -> None:
        """Read the replies of calls ``start..end-1`` into ``self.replies``, one at a time."""
        replies = self.replies
        for i in range(start, end):
            try:
                replies[i] = self._read_one()
            except Exception as exc:
                self._die_on(exc)
                return

    def _read_one(self) -> Any:
        """One reply; an error reply is returned as its exception, a transport error raised."""
        try:
            if self.deadline is None:
                return self.conn.read_response()
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise RedisTimeoutError("acquire_many deadline passed")
            wait = left if self.sock_timeout is None else min(left, self.sock_timeout)
            return self.conn.read_response(timeout=wait)
        except Exception as exc:
            if is_reply(exc):
                return exc
            raise

    def _decide(self, start: int, end: int) -> None:
        out, replies, store, limiter = self.out, self.replies, self.store, self.limiter
        for i in range(start, end):
            if out[i] is not None:
                continue
            r = replies[i]
            if isinstance(r, BaseException):
                out[i] = self._refused(r)
            else:
                out[i] = store._decision(limiter, r)
                self.answered = True

    def _refused(self, exc: BaseException) -> Decision:
        """The decision for a call whose reply was an error (it ran nothing)."""
        kind = "noscript_race" if self.store._is_missing_code(exc) else reply_kind(exc)
        if kind is None:  # a programming error: a wrong argument, a bug in our Lua
            raise exc
        return self._failed(kind, "no", exc)

    # -- missing code ---------------------------------------------------------------------------

    def _any_missing(self, start: int, end: int) -> bool:
        is_missing = self.store._is_missing_code
        return any(isinstance(r, BaseException) and is_missing(r) for r in self.replies[start:end])

    def _repair(self, start: int, end: int) -> None:
        """Reload the code and rerun (in order) the calls of ``start..end-1`` that found it
        missing; they ran nothing, so running them again is safe unless it would reorder.

        A round that gets some calls through resets the budget: under a client that flushes
        the code again and again, a long rerun may be cut each time yet still progress. Only
        ``CODE_RELOAD_ATTEMPTS`` rounds in a row with no call through give up.
        """
        is_missing = self.store._is_missing_code
        stalls = 0
        while stalls < CODE_RELOAD_ATTEMPTS:
            failed = [
                i
                for i in range(start, end)
                if self.out[i] is None
                and isinstance(self.replies[i], BaseException)
                and is_missing(self.replies[i])
            ]
            rerun = self._keep_order(start, end, failed)
            if not rerun:
                return
            if not self._reload_and_rerun(self.replies[rerun[0]], rerun):
                return
            through = any(not isinstance(self.replies[i], BaseException) for i in rerun)
            stalls = 0 if through else stalls + 1
        # Still missing after every attempt: _decide gives them "noscript_race".

    def _keep_order(self, start: int, end: int, failed: list[int]) -> list[int]:
        """The calls of ``failed`` safe to rerun; the others (a later call on their key already
        ran) take the failure mode now."""
        if not failed:
            return []
        ran_later: set[str] = set()
        blocked: set[int] = set()
        todo = set(failed)
        for i in range(end - 1, start - 1, -1):
            r = self.replies[i]
            key = self.calls[i][0]
            if i in todo:
                if key in ran_later:
                    blocked.add(i)
            elif r is not _UNREAD and not isinstance(r, BaseException):
                ran_later.add(key)
        for i in sorted(blocked):
            if self.store.failure_mode == "raise":
                raise ReorderedError(
                    f"ratesim: the code vanished and reappeared mid-batch; a later call on "
                    f"{self.calls[i][0]!r} already ran, so request order cannot be kept"
                )
            self.out[i] = self._failed("noscript_race", "no", None)
        return [i for i in failed if i not in blocked]

    def _reload_and_rerun(self, exc: BaseException, rerun: list[int]) -> bool:
        """Load the code and rerun ``rerun`` in one write on our connection; False if the load
        failed (the reruns that did not get through then take the load's failure).

        One write: Redis runs the commands of one client's input back to back, so another
        client flushing the code again can rarely slip in between the load and the reruns.
        """
        command = self.store._load_command(self.spec, exc)  # None: switched to EVALSHA
        payload = self.store._pack(self.spec, [self.calls[i] for i in rerun])
        if command is not None:
            payload = b"".join(self.conn.pack_command(*command)) + payload
        for i in rerun:
            self.replies[i] = _UNREAD
        try:
            send_payload(self.conn, payload)
            loaded = None if command is None else self._read_one()
            for i in rerun:
                self.replies[i] = self._read_one()
        except Exception as err:
            self._die_on(err)
            return False
        if isinstance(loaded, BaseException):
            for i in rerun:
                if isinstance(self.replies[i], BaseException):  # it ran nothing
                    self.out[i] = self._refused(loaded)
            return False
        return True

    # -- failure --------------------------------------------------------------------------------

    def _expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _die_on(self, exc: BaseException) -> None:
        """End the run after a transport failure (or an error at connect time)."""
        kind = "deadline" if self._expired() else classify(exc)
        if kind is None:
            raise exc
        if self.store.failure_mode == "raise":
            self.store.errors[kind] += 1
            raise exc
        self._die(kind)

    def _die(self, kind: str) -> None:
        """Every request still without a decision takes the failure mode of ``kind``."""
        if self.store.failure_mode == "raise":
            self.store.errors[kind] += 1
            raise RedisTimeoutError(f"ratesim: acquire_many stopped ({kind})")
        self.dead = True
        self._drop()
        self.pending.clear()
        out, replies = self.out, self.replies
        for i in range(len(out)):
            if out[i] is not None:
                continue
            r = replies[i]
            if r is _UNREAD:
                out[i] = self._failed(kind, "unknown" if i < self.sent else "no", None)
            elif isinstance(r, BaseException):  # an error reply: it ran nothing
                if reply_kind(r) is None and not self.store._is_missing_code(r):
                    raise r
                out[i] = self._failed(reply_kind(r) or kind, "no", r)
            else:  # answered before the failure: it ran, keep its decision
                out[i] = self.store._decision(self.limiter, r)
                self.answered = True

    def _failed(self, kind: str, charged: Charged, exc: BaseException | None) -> Decision:
        if self.store.failure_mode == "raise" and exc is not None:
            self.store.errors[kind] += 1
            raise exc
        return self.store._failed(self.limiter, kind, charged)

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None

    def _release(self) -> None:
        if self.conn is not None:
            if not self.finished:  # an exception may have left replies unread: never reuse it
                self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None
