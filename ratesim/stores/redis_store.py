"""``RedisStore``: run the same algorithms as :class:`~ratesim.stores.MemoryStore` on a real Redis.

Every algorithm has a line-by-line Lua port of its Python kernel (``ratesim/lua/*.lua``). A
shared Lua wrapper reads the key's state (a string of comma-separated integers), runs the kernel
and writes the state back with a ``PX`` expiry, all inside one script call, so each decision is
atomic on the server. The sliding log, whose state holds ``limit`` stamps, instead keeps packed
8-byte slots that the kernel reads and writes one at a time (``GETRANGE``/``SETRANGE``), so a
call costs O(log limit) rather than parsing the whole log. The Python kernels stay the single
source of truth: the parity tests run both on the same traces and demand identical
:class:`~ratesim.algorithms.base.Decision` s.

Delivery. On Redis >= 7 the Lua is one Function library (``FCALL``); otherwise one ``EVALSHA``
script per algorithm. Nothing is preloaded: the first call that meets ``Function not found`` or
``NOSCRIPT`` (fresh server, restart, failover, ``FUNCTION FLUSH``/``SCRIPT FLUSH``) loads the
code and repeats the call. That repeat is safe because the failed call ran nothing.

Batches. :meth:`RedisStore.acquire_many` sends a batch of calls in one write and reads the
replies back (one round trip per batch, at most one batch in flight, so the server runs the calls
in request order); the decisions are those of sequential :meth:`RedisStore.acquire` calls.

Time. ``time_source="client"``: the caller passes ``now_us`` (integer microseconds on any
epoch, within +-2**52 so Lua stays exact), which makes replays deterministic. With ``max_drift_us`` set, the script compares it with
Redis ``TIME`` and refuses to decide when they differ by more: the decision is
``allowed=False, outcome="drift"`` and the state is untouched. ``time_source="redis"``: the script
reads ``TIME`` (the single clock authority); ``now_us`` must then be ``None`` (passing a time is a
``ValueError``, because silently ignoring it would mislead a caller who thinks it is used).

Expiry is garbage collection only. Kernels decide identically for an absent key and for a key
whose state has expired, so the decision never depends on whether Redis still holds the key. The
``PX`` of a write is ``max(expires_at - now, 0) + ttl_floor_us``. In client-time mode the TTL runs
in real time while ``now_us`` may run faster or slower; the floor (default 60 s) keeps state
alive as long as the caller's clock falls behind real time by less than the floor between two
writes of a key. A call that leaves the state unchanged does not touch the key (its TTL from the
last write still covers it).

Failures. A connection error or timeout, or a server that cannot take writes (``READONLY``
replica after a failover, ``MASTERDOWN``, ``OOM``, ``TRYAGAIN``, ``CLUSTERDOWN``), becomes a
``Decision`` made by ``failure_mode``:
``"open"`` (allowed, outcome ``"fail_open"``), ``"closed"`` (denied, outcome ``"fail_closed"``),
or ``"raise"`` (the redis-py exception propagates). On the failure path ``remaining`` is 0,
``retry_after_us`` -1 and ``reset_after_us`` 0: the store knows nothing better. A call that timed
out may still have run on the server (the reply was lost, not the request): that is the lost-ack
case, and the reason a client must never retry a script automatically (see
:meth:`RedisStore.from_url`); a timed-out connection is dropped, never reused.

redis-cell. With ``use_cell`` and ``time_source="redis"``, a :class:`~ratesim.algorithms.GCRA`
runs on the module's native ``CL.THROTTLE`` when ``COMMAND INFO`` finds it (its replies have
whole-second durations; its state lives under its own key suffix ``-cell``).

Keys: ``{prefix}{<key>}:<algorithm>:<params hash>``. The hash tag puts every key of one user key
in one Cluster slot, and two limiters on the same user key never share state.
"""

from __future__ import annotations

import hashlib
import socket
import struct
import warnings
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..algorithms.base import Algorithm, Decision, check_cost, check_now
from ..algorithms.gcra import GCRA
from . import _redis_lua
from ._redis_wire import CallPacker, read_replies, roundtrip, send_payload

TimeSource = Literal["client", "redis"]
FailureMode = Literal["open", "closed", "raise"]
DeliveryMode = Literal["auto", "function", "script"]

DEFAULT_TTL_FLOOR_US = 60_000_000
DRIFT_CODE = -3
#: Client times must stay within +-2**52 us: kernels add at most ~2**52 to them (the algorithms
#: cap tolerances and refill times at 2**51 us) and Lua numbers are exact only below 2**53.
MAX_CLIENT_TIME_US = 2**52
#: How often one call (or batch) may find its code missing and reload it before giving up.
CODE_RELOAD_ATTEMPTS = 10
#: Batches in flight at once in acquire_many (2: the server never waits for the client).
PIPELINE_DEPTH = 2
#: Errors that mean "the store cannot decide now", answered by the failure mode: transport
#: failures, and a server that cannot take writes (a replica after failover, a primary that lost
#: its link, out of memory, a cluster that is down or resharding).
_STORE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    socket.timeout,
    OSError,
    ReadOnlyError,
    MasterDownError,
    OutOfMemoryError,
    TryAgainError,
    ClusterDownError,
)


@dataclass(frozen=True)
class _Spec:
    """Per-limiter constants: the Lua entry point and the fixed tail of ARGV."""

    name: str
    key_suffix: str
    argv_tail: tuple[str, ...]


def _key_text(key: Hashable) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        raise ValueError(f"key must be a str or an int, got {key!r}")
    try:
        import numpy as np

        if isinstance(key, np.integer):
            return str(int(key))
    except ImportError:  # pragma: no cover - numpy is a core dependency
        pass
    if isinstance(key, int):
        return str(key)
    raise ValueError(f"key must be a str or an int, got {key!r}")


def _client_time(now_us: object) -> str:
    """A caller's timestamp as the script argument; refuses what Lua cannot hold exactly."""
    t = check_now(now_us)
    if not -MAX_CLIENT_TIME_US < t < MAX_CLIENT_TIME_US:
        raise ValueError(
            f"now_us must be within +-2**52 us (Unix-epoch microseconds until 2112) so that "
            f"Lua's doubles stay exact, got {now_us!r}"
        )
    return str(t)


class ReorderedError(RuntimeError):
    """A batch lost its code and someone else reloaded it before this store could: a later call
    on the same key already ran, so the batch can no longer be decided in request order."""


def _check_no_reordering(calls: Sequence[tuple[str, str, int]], replies: Sequence[Any]) -> None:
    """Raise :class:`ReorderedError` if a failed call has a later successful call on its key."""
    later_ok: set[str] = set()
    for call, reply in zip(reversed(calls), reversed(replies), strict=True):
        if isinstance(reply, ResponseError):
            if call[0] in later_ok:
                raise ReorderedError(
                    f"ratesim: the code vanished and reappeared mid-batch; a later call on "
                    f"{call[0]!r} already ran, so request order cannot be kept"
                )
        else:
            later_ok.add(call[0])


def client_may_rerun_scripts(client: Any) -> bool:
    """True when ``client``'s retry policy could send a timed-out script a second time.

    redis-py retries a command on the connection's ``Retry`` when the error is one of its
    supported errors (by default ``ConnectionError`` and ``TimeoutError``, 10 retries in 8.x).
    After a timeout the server may already have run the script, so a retry charges twice.
    """
    retry = None
    get_retry = getattr(client, "get_retry", None)
    if callable(get_retry):
        retry = get_retry()
    if retry is None:
        pool = getattr(client, "connection_pool", None)
        kwargs = getattr(pool, "connection_kwargs", {}) or {}
        retry = kwargs.get("retry")
        if retry is None:
            return bool(kwargs.get("retry_on_timeout") or kwargs.get("retry_on_error"))
    retries = retry.get_retries() if hasattr(retry, "get_retries") else 0
    if retries == 0:
        return False
    supported = getattr(retry, "_supported_errors", ())
    risky = (RedisConnectionError, RedisTimeoutError, socket.timeout)
    return any(isinstance(e, type) and issubclass(e, risky) for e in supported)


class RedisStore:
    """Keyed limiter state on a real Redis, deciding exactly as ``MemoryStore`` does.

    Parameters
    ----------
    client:
        A ``redis.Redis`` client, used as given (a ``RuntimeWarning`` is issued when its retry
        policy could run a script twice; prefer :meth:`from_url`).
    time_source:
        ``"client"`` (``now_us`` passed to every call) or ``"redis"`` (the script reads ``TIME``).
    prefix:
        Prepended to every key.
    failure_mode:
        ``"open"``, ``"closed"`` or ``"raise"`` on connection errors and timeouts.
    max_drift_us:
        Client-time mode only: refuse (outcome ``"drift"``) when ``|now_us - Redis TIME|``
        exceeds this many microseconds. ``None`` (default) disables the guard, as a replay on a
        simulated clock needs.
    ttl_floor_us:
        Added to every key's TTL beyond the instant its state stops mattering (microseconds).
    mode:
        ``"function"`` (FCALL, Redis >= 7), ``"script"`` (EVALSHA) or ``"auto"`` (functions,
        falling back to scripts when the server lacks ``FCALL``).
    use_cell:
        Run :class:`~ratesim.algorithms.GCRA` on redis-cell's ``CL.THROTTLE`` when the server
        has it: ``"auto"`` (when present, redis time only), ``True`` (required) or ``False``.
    """

    def __init__(
        self,
        client: Any,
        *,
        time_source: TimeSource = "client",
        prefix: str = "ratesim:",
        failure_mode: FailureMode = "open",
        max_drift_us: int | None = None,
        ttl_floor_us: int = DEFAULT_TTL_FLOOR_US,
        mode: DeliveryMode = "auto",
        use_cell: bool | Literal["auto"] = "auto",
        _warn_retry: bool = True,
    ) -> None:
        if time_source not in ("client", "redis"):
            raise ValueError(f"time_source must be 'client' or 'redis', got {time_source!r}")
        if failure_mode not in ("open", "closed", "raise"):
            raise ValueError(
                f"failure_mode must be 'open', 'closed' or 'raise', got {failure_mode!r}"
            )
        if mode not in ("auto", "function", "script"):
            raise ValueError(f"mode must be 'auto', 'function' or 'script', got {mode!r}")
        if use_cell not in ("auto", True, False):
            raise ValueError(f"use_cell must be True, False or 'auto', got {use_cell!r}")
        if not isinstance(prefix, str) or "{" in prefix or "}" in prefix:
            # A brace in the prefix would become the Cluster hash tag of every key.
            raise ValueError(f"prefix must be a str without braces, got {prefix!r}")
        if max_drift_us is not None:
            if (
                isinstance(max_drift_us, bool)
                or not isinstance(max_drift_us, int)
                or max_drift_us < 0
            ):
                raise ValueError(f"max_drift_us must be None or an int >= 0, got {max_drift_us!r}")
            if time_source == "redis":
                raise ValueError("max_drift_us only applies to time_source='client'")
        if (
            isinstance(ttl_floor_us, bool)
            or not isinstance(ttl_floor_us, int)
            or ttl_floor_us < 1000
        ):
            raise ValueError(f"ttl_floor_us must be an int >= 1000, got {ttl_floor_us!r}")
        if use_cell is True and time_source != "redis":
            raise ValueError(
                "use_cell=True needs time_source='redis': CL.THROTTLE reads the server's clock"
            )
        if _warn_retry and client_may_rerun_scripts(client):
            warnings.warn(
                "this redis client retries after timeouts/connection errors, which can run a "
                "rate-limit script twice (double charge); build it with "
                "retry=Retry(NoBackoff(), 0) or use RedisStore.from_url",
                RuntimeWarning,
                stacklevel=2,
            )
        self.client = client
        self.time_source: TimeSource = time_source
        self.prefix = prefix
        self.failure_mode: FailureMode = failure_mode
        self.max_drift_us = max_drift_us
        self.ttl_floor_us = ttl_floor_us
        self.use_cell = use_cell
        self._mode: DeliveryMode = mode
        self._bundle = _redis_lua.bundle()
        self._specs: dict[Algorithm, _Spec] = {}
        self._packers: dict[tuple[str, tuple[str, ...], str], CallPacker] = {}
        #: How many times this store found its code missing on the server and loaded it.
        self.code_loads = 0
        self._cell: bool | None = None if use_cell is not False else False

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        timeout_s: float = 0.1,
        client_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RedisStore:
        """A store on a client built for rate limiting: short timeouts, **no retries**.

        ``timeout_s`` bounds connecting and every read/write (seconds). redis-py 8 retries ten
        times by default; a retry after a timeout can run a non-idempotent script twice, so this
        client never retries (``Retry(NoBackoff(), 0)``). ``client_kwargs`` go to
        ``redis.Redis.from_url`` (e.g. ``protocol=2`` for Redis < 6, ``password``, ``ssl``); a
        ``retry`` given there is checked like a client passed in. Other keyword arguments go to
        :class:`RedisStore`.
        """
        if (
            isinstance(timeout_s, bool)
            or not isinstance(timeout_s, int | float)
            or not timeout_s > 0
        ):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }
        options.update(client_kwargs or {})
        client = redis.Redis.from_url(url, **options)
        return cls(client, _warn_retry="retry" in (client_kwargs or {}), **kwargs)

    # -- public API ---------------------------------------------------------------------------

    @property
    def mode(self) -> DeliveryMode:
        """``"function"`` or ``"script"`` once known; ``"auto"`` before the first call."""
        return self._mode

    def key_for(self, limiter: Algorithm, key: Hashable) -> str:
        """The Redis key holding ``key``'s state for ``limiter``."""
        return self._key(self._spec(limiter), _key_text(key))

    def acquire(
        self, limiter: Algorithm, key: Hashable, now_us: int | None = None, cost: int = 1
    ) -> Decision:
        """Ask ``limiter`` about one request of ``cost`` for ``key``.

        ``now_us`` (integer microseconds) is required with ``time_source="client"`` and must be
        ``None`` with ``time_source="redis"``.
        """
        spec = self._spec(limiter)
        now_arg = self._now_arg(now_us)
        cost = check_cost(cost)
        rkey = self._key(spec, _key_text(key))
        try:
            if isinstance(limiter, GCRA) and self._use_cell_for(limiter):
                return self._cell_decision(limiter, rkey, cost)
            reply = self._call(spec, rkey, self._argv(spec, now_arg, cost))
        except _STORE_ERRORS:
            if self.failure_mode == "raise":
                raise
            return self._failed(limiter)
        return self._decision(limiter, reply)

    def acquire_many(
        self,
        limiter: Algorithm,
        keys: Sequence[Hashable],
        now_us_list: Sequence[int] | None = None,
        costs: Sequence[int] | None = None,
        *,
        batch: int = 1000,
    ) -> list[Decision]:
        """Decide a sequence of requests in pipelined batches (one round trip per batch).

        The decisions are the same as calling :meth:`acquire` on each request in order. A
        connection error turns the batches it hit (the one being read and the one in flight
        behind it) into failure-mode decisions; some of their requests may have run on the
        server. The client's socket timeout bounds each read, so it must cover the server time
        of one batch (~15-25 us per call): with ``from_url``'s 0.1 s default keep ``batch`` in
        the low thousands. ``now_us_list`` is required in client-time mode and must be ``None``
        in redis-time mode; ``costs`` defaults to 1 for every request. Raises
        :class:`ReorderedError` if the code vanished mid-batch and another client reloaded it
        before a later call on the same key ran (request order could not be kept).
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        n = len(keys)
        if self.time_source == "client":
            if now_us_list is None or len(now_us_list) != n:
                raise ValueError("now_us_list must give one time per key with time_source='client'")
            now_args = [_client_time(t) for t in now_us_list]
        else:
            if now_us_list is not None:
                raise ValueError("now_us_list must be None with time_source='redis'")
            now_args = [""] * n
        if costs is None:
            cost_list = [1] * n
        elif len(costs) != n:
            raise ValueError(f"costs must have one entry per key ({n}), got {len(costs)}")
        else:
            cost_list = [check_cost(c) for c in costs]
        try:
            use_cell = self._use_cell_for(limiter)
        except _STORE_ERRORS:
            if self.failure_mode == "raise":
                raise
            return [self._failed(limiter) for _ in range(n)]
        if use_cell:
            return [self.acquire(limiter, k, None, c) for k, c in zip(keys, cost_list, strict=True)]
        spec = self._spec(limiter)
        chunks = [
            [
                (self._key(spec, _key_text(keys[i])), now_args[i], cost_list[i])
                for i in range(start, min(start + batch, n))
            ]
            for start in range(0, n, batch)
        ]
        return self._run_batches(limiter, spec, chunks)

    def _run_batches(
        self, limiter: Algorithm, spec: _Spec, chunks: list[list[tuple[str, str, int]]]
    ) -> list[Decision]:
        """Stream the batches on one connection with up to ``PIPELINE_DEPTH`` in flight.

        The server runs the calls in request order (one connection, sent in order). While it
        works on one batch the client reads the previous one, turns it into decisions and
        encodes the next, so neither side waits for the other. A batch that met missing code
        is repaired (with every batch still in flight read first) before anything else is sent.
        """
        out: list[Decision] = []
        pool = self.client.connection_pool
        conn: Any = None
        pending: deque[list[tuple[str, str, int]]] = deque()
        answered = False
        nxt = 0
        try:
            while nxt < len(chunks) or pending:
                while nxt < len(chunks) and len(pending) < PIPELINE_DEPTH:
                    calls = chunks[nxt]
                    nxt += 1
                    try:
                        if conn is None:
                            conn = pool.get_connection()
                        send_payload(conn, self._pack(spec, calls))
                        pending.append(calls)
                    except _STORE_ERRORS:
                        conn = self._drop(pool, conn)
                        if self.failure_mode == "raise":
                            raise
                        # Batches in flight on the dropped connection lost their replies.
                        while pending:
                            out.extend(self._failed(limiter) for _ in pending.popleft())
                        out.extend(self._failed(limiter) for _ in calls)
                if not pending:
                    continue
                calls = pending.popleft()
                try:
                    replies = read_replies(conn, len(calls))
                    if any(isinstance(r, ResponseError) for r in replies):
                        # Read everything in flight first: nothing may run between the
                        # repair and the calls it reorders.
                        while pending:
                            more = pending.popleft()
                            calls = calls + more
                            replies += read_replies(conn, len(more))
                except _STORE_ERRORS:
                    conn = self._drop(pool, conn)
                    if self.failure_mode == "raise":
                        raise
                    out.extend(self._failed(limiter) for _ in calls)
                    while pending:
                        out.extend(self._failed(limiter) for _ in pending.popleft())
                    continue
                try:
                    self._repair(spec, calls, replies)  # fills `replies` in place
                except _STORE_ERRORS:
                    if self.failure_mode == "raise":
                        raise
                # The server is busy with the next batch while these replies are decoded; a
                # call the repair could not rerun (the store went away) is a failed one.
                out.extend(
                    self._failed(limiter)
                    if isinstance(r, ResponseError)
                    else self._decision(limiter, r)
                    for r in replies
                )
                answered = True
        finally:
            if conn is not None:
                if pending:  # an exception left replies unread: never reuse the connection
                    conn.disconnect()
                pool.release(conn)
        if self._mode == "auto" and answered:
            self._mode = "function"
        return out

    def _pack(self, spec: _Spec, calls: list[tuple[str, str, int]]) -> bytes:
        pack = self._packer(spec).pack
        return b"".join(pack(*c) for c in calls)

    @staticmethod
    def _drop(pool: Any, conn: Any) -> None:
        if conn is not None:
            conn.disconnect()
            pool.release(conn)
        return None

    def state_of(self, limiter: Algorithm, key: Hashable) -> list[int] | None:
        """The stored state of ``key`` (``None`` when absent); for inspection and tests."""
        raw = self.client.get(self.key_for(limiter, key))
        if raw is None:
            return None
        if limiter.name in _redis_lua.LAZY_STATE:
            data = raw if isinstance(raw, bytes) else str(raw).encode("latin-1")
            values = [int(v) for (v,) in struct.iter_unpack(">d", data)]
            return values + [0] * (limiter.state_size - len(values))
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        return [int(x) for x in text.split(",")]

    def reset(self, limiter: Algorithm, key: Hashable) -> None:
        """Forget ``key`` (``DEL``)."""
        self.client.delete(self.key_for(limiter, key))

    def has_cell(self) -> bool:
        """Whether the server has redis-cell's ``CL.THROTTLE`` (asks ``COMMAND INFO``)."""
        return command_exists(self.client, "CL.THROTTLE")

    # -- internals ----------------------------------------------------------------------------

    def _spec(self, limiter: Algorithm) -> _Spec:
        spec = self._specs.get(limiter)
        if spec is not None:
            return spec
        if not isinstance(limiter, Algorithm):
            raise ValueError(f"limiter must be a ratesim Algorithm, got {limiter!r}")
        name = limiter.name
        if name not in self._bundle.functions:
            raise ValueError(f"limiter {limiter!r}: no Lua port of algorithm {name!r}")
        params = tuple(int(x) for x in limiter.params)
        digest = hashlib.sha1(f"{name}:{limiter.state_size}:{params}".encode()).hexdigest()[:10]
        init = limiter.new_state()
        init_arg = "" if all(v == 0 for v in init) else ",".join(str(int(v)) for v in init)
        if init_arg and name in _redis_lua.LAZY_STATE:
            raise ValueError(f"limiter {limiter!r}: packed Lua state must start all zeros")
        tail = (
            str(self.ttl_floor_us),
            "" if self.max_drift_us is None else str(self.max_drift_us),
            str(limiter.state_size),
            init_arg,
            *(str(x) for x in params),
        )
        spec = _Spec(name, f":{name}:{digest}", tail)
        self._specs[limiter] = spec
        return spec

    def _key(self, spec: _Spec, key: str) -> str:
        return f"{self.prefix}{{{key}}}{spec.key_suffix}"

    def _now_arg(self, now_us: int | None) -> str:
        if self.time_source == "redis":
            if now_us is not None:
                raise ValueError(
                    f"now_us must be None with time_source='redis' (Redis TIME decides), got {now_us!r}"
                )
            return ""
        if now_us is None:
            raise ValueError("now_us is required with time_source='client'")
        return _client_time(now_us)

    @staticmethod
    def _argv(spec: _Spec, now_arg: str, cost: int) -> list[str]:
        return [now_arg, str(cost), *spec.argv_tail]

    def _decision(self, limiter: Algorithm, reply: Any) -> Decision:
        if isinstance(reply, bytes):
            reply = reply.split(b",")
        elif isinstance(reply, str):  # a client with decode_responses=True
            reply = reply.split(",")
        allowed, remaining, retry_after_us, reset_after_us = (int(x) for x in reply)
        if allowed == DRIFT_CODE:
            return Decision(False, limiter.limit, 0, -1, 0, "drift")
        return Decision(bool(allowed), limiter.limit, remaining, retry_after_us, reset_after_us)

    def _failed(self, limiter: Algorithm) -> Decision:
        if self.failure_mode == "open":
            return Decision(True, limiter.limit, 0, -1, 0, "fail_open")
        return Decision(False, limiter.limit, 0, -1, 0, "fail_closed")

    # -- delivery: functions or scripts --------------------------------------------------------

    def _command(self, spec: _Spec, key: str, argv: list[str]) -> tuple[Any, ...]:
        if self._mode == "script":
            return ("EVALSHA", self._bundle.scripts[spec.name][1], 1, key, *argv)
        return ("FCALL", self._bundle.functions[spec.name], 1, key, *argv)

    def _call(self, spec: _Spec, key: str, argv: list[str]) -> Any:
        for _ in range(CODE_RELOAD_ATTEMPTS):
            try:
                reply = self.client.execute_command(*self._command(spec, key, argv))
            except ResponseError as exc:
                if not self._recover(spec, exc):
                    raise
                continue
            if self._mode == "auto":
                self._mode = "function"
            return reply
        raise RuntimeError("ratesim: the server kept losing the limiter code")  # pragma: no cover

    def _packer(self, spec: _Spec) -> CallPacker:
        # Keyed by the parameters too: the encoder pre-packs the limiter's ARGV tail.
        cache_key = (spec.name, spec.argv_tail, self._mode)
        packer = self._packers.get(cache_key)
        if packer is None:
            if self._mode == "script":
                packer = CallPacker("EVALSHA", self._bundle.scripts[spec.name][1], spec.argv_tail)
            else:
                packer = CallPacker("FCALL", self._bundle.functions[spec.name], spec.argv_tail)
            self._packers[cache_key] = packer
        return packer

    def _repair(
        self, spec: _Spec, calls: list[tuple[str, str, int]], replies: list[Any]
    ) -> list[Any]:
        """Rerun (filling ``replies`` in place) the calls that failed for missing code.

        Such a call ran nothing, so running it again is safe. It runs *after* the calls behind
        it that succeeded, which only matters for calls on the same key: normally the failures
        are a suffix (the code vanishes between two calls and only this store reloads it), but
        if another client reloaded the code meanwhile, a later call on the same key may already
        have run. That cannot be undone, so it is an error rather than a silent reordering.
        """
        for _ in range(CODE_RELOAD_ATTEMPTS):
            failed = [i for i, r in enumerate(replies) if isinstance(r, ResponseError)]
            if not failed:
                return replies
            if not self._recover(spec, replies[failed[0]]):
                raise replies[failed[0]]
            _check_no_reordering(calls, replies)
            reruns = [calls[i] for i in failed]
            payload = self._pack(spec, reruns)
            for i, r in zip(failed, roundtrip(self.client, payload, len(reruns)), strict=True):
                replies[i] = r
        raise RuntimeError("ratesim: the server kept losing the limiter code")  # pragma: no cover

    def _recover(self, spec: _Spec, exc: ResponseError) -> bool:
        """Handle a missing-code error by (re)loading the code; False if ``exc`` is another error."""
        msg = str(exc)
        if isinstance(exc, NoScriptError) or msg.startswith("NOSCRIPT"):
            self.client.execute_command("SCRIPT", "LOAD", self._bundle.scripts[spec.name][0])
            self.code_loads += 1
            return True
        if "Function not found" in msg:
            self.client.execute_command("FUNCTION", "LOAD", "REPLACE", self._bundle.library_source)
            self.code_loads += 1
            return True
        if self._mode == "auto" and "unknown command" in msg.lower() and "fcall" in msg.lower():
            self._mode = "script"
            return True
        return False

    # -- redis-cell ---------------------------------------------------------------------------

    def _use_cell_for(self, limiter: Algorithm) -> bool:
        if self.use_cell is False or self.time_source != "redis" or not isinstance(limiter, GCRA):
            return False
        if self._cell is None:
            self._cell = self.has_cell()
            if self.use_cell is True and not self._cell:
                raise ValueError(
                    "use_cell=True but the server has no CL.THROTTLE (redis-cell not loaded)"
                )
        if self._cell and float(limiter.period_s) != int(limiter.period_s):
            if self.use_cell is True:
                raise ValueError(
                    f"CL.THROTTLE takes whole seconds; period_s={limiter.period_s!r} is not"
                )
            return False
        return bool(self._cell)

    def _cell_decision(self, limiter: GCRA, rkey: str, cost: int) -> Decision:
        reply = self.client.execute_command(
            "CL.THROTTLE",
            rkey + "-cell",
            limiter.max_burst,
            limiter.count_per_period,
            int(limiter.period_s),
            cost,
        )
        return cell_reply_to_decision(reply)


def cell_reply_to_decision(reply: Sequence[Any]) -> Decision:
    """A ``Decision`` from a ``CL.THROTTLE`` reply (durations have whole-second resolution)."""
    limited, limit, remaining, retry_s, reset_s = (int(x) for x in reply)
    return Decision(
        limited == 0,
        limit,
        remaining,
        -1 if retry_s < 0 else retry_s * 1_000_000,
        max(reset_s, 0) * 1_000_000,
    )


def command_exists(client: Any, name: str) -> bool:
    """Whether the server knows command ``name`` (``COMMAND INFO``; absent replies ``[nil]``).

    Uses a raw connection: redis-py's ``COMMAND`` reply parser fails on the nil entry.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("COMMAND", "INFO", name)
        reply = conn.read_response()
    finally:
        pool.release(conn)
    if isinstance(reply, dict):
        return bool(reply)
    return bool(reply) and reply[0] is not None
