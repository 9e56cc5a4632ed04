"""``RedisStore``: run the same algorithms as :class:`~ratesim.stores.MemoryStore` on a real Redis.

Every algorithm has a line-by-line Lua port of its Python kernel (``ratesim/lua/*.lua``). A
shared Lua wrapper reads the key's state (packed: a tag byte, then one 8-byte double per field;
the decimal text of earlier versions is still read), runs the kernel and writes the state back
with a ``PX`` expiry, all inside one script call, so each decision is atomic on the server. The sliding log, whose state holds ``limit`` stamps, instead keeps packed
8-byte slots that the kernel reads and writes one at a time (``GETRANGE``/``SETRANGE``), so a
call costs O(log limit) rather than parsing the whole log. The Python kernels stay the single
source of truth: the parity tests run both on the same traces and demand identical
:class:`~ratesim.algorithms.base.Decision` s.

Delivery. On Redis >= 7 the Lua is one Function library (``FCALL``); otherwise one ``EVALSHA``
script per algorithm. Nothing is preloaded: the first call that meets ``Function not found`` or
``NOSCRIPT`` (fresh server, restart, failover, ``FUNCTION FLUSH``/``SCRIPT FLUSH``) loads the
code and repeats the call. That repeat is safe because the failed call ran nothing.

Batches. :meth:`RedisStore.acquire_many` sends a batch of calls in one write and reads the
replies back (one round trip per batch, at most two batches in flight on one connection, so the
server runs the calls in request order); the decisions are those of sequential
:meth:`RedisStore.acquire` calls. One failed connect, write or read ends the call: the requests
still unanswered take the failure mode at once (see :mod:`ratesim.stores._redis_batch`).

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

Failures. A transport failure (refused, reset, timeout) or a transient server reply (``BUSY``,
``LOADING``, ``READONLY`` replica after a failover, ``MASTERDOWN``, ``OOM``, ``TRYAGAIN``,
``CLUSTERDOWN``, ``MOVED``, ... : :mod:`ratesim.stores._redis_errors` has the full table)
becomes a ``Decision`` made by ``failure_mode``: ``"open"`` (allowed, outcome ``"fail_open"``),
``"closed"`` (denied, outcome ``"fail_closed"``), or ``"raise"`` (the redis-py exception
propagates). On the failure path ``remaining`` is 0, ``retry_after_us`` -1 and
``reset_after_us`` 0: the store knows nothing better; ``Decision.error`` names the kind and
``Decision.charged`` says whether the request ran (``"no"``, or ``"unknown"`` when it was sent
and its reply lost), and :attr:`RedisStore.errors` counts the decisions by kind. Programming
errors (a wrong argument count, an error raised by the Lua) always raise. A call that timed
out may still have run on the server (the reply was lost, not the request): that is the lost-ack
case, and the reason a client must never retry a script automatically (see
:meth:`RedisStore.from_url`); a timed-out connection is dropped, never reused.

Store breaker. With ``store_breaker`` (a :class:`~ratesim.policy.StoreBreakerSpec` or a
mapping ``{failures, cooldown_ms}``, the simulation's parameters), ``failures`` consecutive
failure-mode decisions open a breaker: for ``cooldown_ms`` the store calls nothing and answers by
its failure mode at once (kind ``"breaker_open"``, charged ``"no"``), then one call probes
(:mod:`ratesim.stores._redis_breaker`). An :meth:`RedisStore.acquire_many` call is one call to
the breaker: refused whole while it is open, a failure if any of its requests failed.

redis-cell. With ``use_cell`` and ``time_source="redis"``, a :class:`~ratesim.algorithms.GCRA`
runs on the module's native ``CL.THROTTLE`` when ``COMMAND INFO`` finds it (its replies have
whole-second durations; its state lives under its own key suffix ``-cell``).

Keys: ``{prefix}{<key>}:<algorithm>:<params hash>``, where ``<key>`` is the user key after
:func:`~ratesim.stores.normalize_key` (the rule ``MemoryStore`` follows too). The hash tag puts
every key of one user key in one Cluster slot, and two limiters on the same user key never share
state.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import socket
import uuid
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.client import NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..algorithms.base import Algorithm, Decision, check_cost, check_now
from ..algorithms.gcra import GCRA
from . import _redis_lua
from ._keys import normalize_key
from ._redis_batch import CODE_RELOAD_ATTEMPTS, PIPELINE_DEPTH, BatchRun
from ._redis_breaker import BREAKER_OPEN, StoreBreaker
from ._redis_errors import (
    ERROR_KINDS,
    Charged,
    ReorderedError,
    charged_after,
    classify,
    connect_failed,
    is_missing_code,
    is_reply,
)
from ._redis_streak import FailureStreak
from ._redis_wire import CallPacker

TimeSource = Literal["client", "redis"]
FailureMode = Literal["open", "closed", "raise"]
DeliveryMode = Literal["auto", "function", "script"]

DEFAULT_TTL_FLOOR_US = 60_000_000
DRIFT_CODE = -3
#: Client times must stay within +-2**52 us: kernels add at most ~2**52 to them (the algorithms
#: cap tolerances and refill times at 2**51 us) and Lua numbers are exact only below 2**53.
MAX_CLIENT_TIME_US = 2**52
#: Largest timeout or deadline accepted, in seconds: a limiter that waits longer than an hour
#: for its store is misconfigured (and ``socket.settimeout`` overflows on ``inf``).
MAX_TIMEOUT_S = 3600.0

__all__ = [
    "CODE_RELOAD_ATTEMPTS",
    "ERROR_KINDS",
    "MAX_TIMEOUT_S",
    "PIPELINE_DEPTH",
    "RedisStore",
    "ReorderedError",
    "cell_reply_to_decision",
    "check_timeout_s",
    "client_may_rerun_scripts",
    "command_exists",
]


@dataclass(frozen=True)
class _Spec:
    """Per-limiter constants: the Lua entry point and the fixed tail of ARGV."""

    name: str
    key_suffix: str
    argv_tail: tuple[str, ...]


def check_timeout_s(name: str, value: object) -> float:
    """A timeout in seconds: a finite number with ``0 < value <= MAX_TIMEOUT_S``.

    Raises ``ValueError`` naming ``name`` and the bound (``inf`` would overflow
    ``socket.settimeout`` at the first call; ``None`` would block forever on a black hole).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(
            f"{name} must be a finite number of seconds with 0 < {name} <= {MAX_TIMEOUT_S:g}, "
            f"got {value!r}"
        )
    return float(value)


def fresh_prefix(base: str = "ratesim:") -> str:
    """A key prefix no earlier run used (``base`` then 12 random hex digits and ``:``), for a
    replay that must start from empty state on a server that holds an earlier one's keys."""
    return f"{base}{uuid.uuid4().hex[:12]}:"


def _glob_escape(text: str) -> str:
    """``text`` with Redis glob metacharacters escaped, for ``SCAN MATCH``."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _client_time(now_us: object) -> str:
    """A caller's timestamp as the script argument; refuses what Lua cannot hold exactly."""
    t = check_now(now_us)
    if not -MAX_CLIENT_TIME_US < t < MAX_CLIENT_TIME_US:
        raise ValueError(
            f"now_us must be within +-2**52 us (Unix-epoch microseconds until 2112) so that "
            f"Lua's doubles stay exact, got {now_us!r}"
        )
    return str(t)


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
        ``"open"``, ``"closed"`` or ``"raise"`` on transport failures and transient server
        replies (:data:`ERROR_KINDS`); the decisions are counted by kind in :attr:`errors`.
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
    store_breaker:
        ``None`` (default), or a :class:`~ratesim.policy.StoreBreakerSpec` / mapping
        ``{failures, cooldown_ms}``: stop calling a failing Redis for a cooldown (module
        docstring). Needs ``failure_mode`` ``"open"`` or ``"closed"``.

    Attributes
    ----------
    errors:
        ``Counter`` of failure-mode decisions by kind (one per decision; with
        ``failure_mode="raise"``, one per raised error). Kinds are :data:`ERROR_KINDS`.
    code_loads:
        How many times this store found its code missing on the server and loaded it.
    breaker:
        The :class:`~ratesim.stores._redis_breaker.StoreBreaker` (``None`` without one): its
        ``short_circuited``, ``opens`` and ``open_us()``.
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
        store_breaker: Any = None,
        _warn_retry: bool = True,
        _breaker_clock: Any = None,
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
        self.breaker = StoreBreaker.build(store_breaker, _breaker_clock)
        if self.breaker is not None and failure_mode == "raise":
            raise ValueError(
                "store_breaker answers by the failure mode while open: it needs "
                "failure_mode='open' or 'closed', not 'raise'"
            )
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
        pool_kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        pool_kwargs = pool_kwargs or {}
        for name in ("socket_timeout", "socket_connect_timeout"):
            if pool_kwargs.get(name) is not None:  # inf would overflow at the first connect
                check_timeout_s(f"the client's {name}", pool_kwargs[name])
        if "socket_timeout" in pool_kwargs and pool_kwargs["socket_timeout"] is None:
            warnings.warn(
                "this redis client has no socket timeout: a server that stops answering blocks "
                "every call forever; pass socket_timeout or use RedisStore.from_url",
                RuntimeWarning,
                stacklevel=2,
            )
        self.client = client
        self.time_source: TimeSource = time_source
        self.prefix = prefix
        self.failure_mode: FailureMode = failure_mode
        self._streak = FailureStreak(_server_label(client))
        self.max_drift_us = max_drift_us
        self.ttl_floor_us = ttl_floor_us
        self.use_cell = use_cell
        self._mode: DeliveryMode = mode
        self._bundle = _redis_lua.bundle()
        self._specs: dict[Algorithm, _Spec] = {}
        self._packers: dict[tuple[str, tuple[str, ...], str], CallPacker] = {}
        #: How many times this store found its code missing on the server and loaded it.
        self.code_loads = 0
        #: Failure-mode decisions by kind (see ERROR_KINDS).
        self.errors: Counter[str] = Counter()
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

        ``timeout_s`` bounds connecting and every read/write (seconds, finite,
        ``0 < timeout_s <= MAX_TIMEOUT_S``). redis-py 8 retries ten times by default; a retry
        after a timeout can run a non-idempotent script twice, so this client never retries
        (``Retry(NoBackoff(), 0)``). ``client_kwargs`` go to ``redis.Redis.from_url`` (e.g.
        ``protocol=2`` for Redis < 6, ``password``, ``ssl``); a ``retry`` given there is checked
        like a client passed in, and a ``socket_timeout`` or ``socket_connect_timeout`` there
        obeys the same bounds as ``timeout_s``. Other keyword arguments go to
        :class:`RedisStore`.
        """
        timeout_s = check_timeout_s("timeout_s", timeout_s)
        for name in ("socket_timeout", "socket_connect_timeout"):
            if name in (client_kwargs or {}):
                check_timeout_s(f"client_kwargs[{name!r}]", (client_kwargs or {})[name])
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
        """How this store delivers its code: ``"function"`` (``FCALL``) or ``"script"``
        (``EVALSHA``).

        A store built with ``mode="auto"`` finds out on first reading (one ``COMMAND INFO
        FCALL`` round trip, remembered) or on its first call, whichever comes first; it reads
        ``"auto"`` only while the server cannot be asked (unreachable, or an error reply).
        """
        if self._mode == "auto":
            # unreachable: unknown for now, the next reading (or the first call) asks again
            with contextlib.suppress(redis.RedisError, OSError):
                self._mode = "function" if command_exists(self.client, "FCALL") else "script"
        return self._mode

    @property
    def socket_timeout_s(self) -> float | None:
        """The client's read/write timeout in seconds (``None``: it waits forever)."""
        pool = getattr(self.client, "connection_pool", None)
        value = (getattr(pool, "connection_kwargs", None) or {}).get("socket_timeout")
        return None if value is None else float(value)

    def key_for(self, limiter: Algorithm, key: object) -> str:
        """The Redis key holding ``key``'s state for ``limiter``."""
        return self._key(self._spec(limiter), normalize_key(key))

    def acquire(
        self, limiter: Algorithm, key: object, now_us: int | None = None, cost: int = 1
    ) -> Decision:
        """Ask ``limiter`` about one request of ``cost`` for ``key``.

        ``now_us`` (integer microseconds) is required with ``time_source="client"`` and must be
        ``None`` with ``time_source="redis"``. Bad input (a key that is not a ``str``/``int``
        or not UTF-8 text, a float time, a negative cost) is a ``ValueError`` whatever the
        failure mode; a store failure is a failure-mode decision (see the module docstring).
        """
        if self.breaker is None:
            return self._acquire(limiter, key, now_us, cost)
        # bad input is a ValueError before the breaker counts a call
        self._spec(limiter)
        self._now_arg(now_us)
        check_cost(cost)
        normalize_key(key)
        call = self.breaker.gate()
        if call < 0:
            return self._failed(limiter, BREAKER_OPEN, "no")
        d = self._acquire(limiter, key, now_us, cost)
        self.breaker.observe(call, not d.error)
        return d

    def _acquire(
        self, limiter: Algorithm, key: object, now_us: int | None = None, cost: int = 1
    ) -> Decision:
        """:meth:`acquire` without the store breaker."""
        spec = self._spec(limiter)
        now_arg = self._now_arg(now_us)
        cost = check_cost(cost)
        rkey = self._key(spec, normalize_key(key))
        try:
            if isinstance(limiter, GCRA) and self._use_cell_for(limiter):
                return self._cell_decision(limiter, rkey, cost)
        except Exception as exc:
            kind = classify(exc)
            if kind is None:  # a programming error: wrong arguments, a bug in our Lua
                raise
            sent = not (is_reply(exc) or connect_failed(exc))
            return self._failure(limiter, exc, kind, charged_after(exc, sent=sent))
        # A batch of one: the same connection handling, code repair and error flags as batches.
        return BatchRun(self, limiter, spec, [(rkey, now_arg, cost)], 1, None).run()[0]

    def acquire_many(
        self,
        limiter: Algorithm,
        keys: Sequence[object],
        now_us_list: Sequence[int] | None = None,
        costs: Sequence[int] | None = None,
        *,
        batch: int = 1000,
        deadline_s: float | None = None,
    ) -> list[Decision]:
        """Decide a sequence of requests in pipelined batches (one round trip per batch).

        Returns one :class:`~ratesim.algorithms.base.Decision` per request, in order: the same
        as calling :meth:`acquire` on each request in order while the store answers. A store
        failure never loses a request: the requests answered before it keep their decisions
        (``charged="yes"``), the others are failure-mode decisions flagged ``charged="unknown"``
        (written, reply lost) or ``"no"`` (never written, or refused). The first transport
        failure (refused, reset, timed out) ends the call: the remaining requests take the
        failure mode at once, with no new connection and no further wait, so a dead server
        costs one timeout per call. ``deadline_s`` (seconds, finite, ``0 < deadline_s <=
        MAX_TIMEOUT_S``; ``None``: no overall bound) bounds the whole call: no read waits past
        it, and every request unanswered then is a failure-mode decision of kind
        ``"deadline"``; a new connection may add one connect timeout. The client's socket
        timeout bounds each read, so it must cover the server time of one batch (~15-25 us
        per call): with ``from_url``'s 0.1 s default keep ``batch`` in the low thousands.
        ``now_us_list`` is required in client-time mode and must be ``None`` in redis-time
        mode; ``costs`` defaults to 1 for every request. Every input is checked (``ValueError``)
        before anything is sent.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        if deadline_s is not None:
            deadline_s = check_timeout_s("deadline_s", deadline_s)
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
        spec = self._spec(limiter)
        rkeys = [self._key(spec, normalize_key(k)) for k in keys]
        if n == 0:
            return []
        if self.breaker is None:
            return self._decide_many(limiter, keys, rkeys, now_args, cost_list, batch, deadline_s)
        call = self.breaker.gate()
        if call < 0:
            return [self._failed(limiter, BREAKER_OPEN, "no") for _ in range(n)]
        out = self._decide_many(limiter, keys, rkeys, now_args, cost_list, batch, deadline_s)
        self.breaker.observe(call, not any(d.error for d in out))
        return out

    def _decide_many(
        self,
        limiter: Algorithm,
        keys: Sequence[object],
        rkeys: list[str],
        now_args: list[str],
        cost_list: list[int],
        batch: int,
        deadline_s: float | None,
    ) -> list[Decision]:
        """:meth:`acquire_many`'s decisions once its input is checked (no store breaker)."""
        spec = self._spec(limiter)
        n = len(keys)
        try:
            use_cell = self._use_cell_for(limiter)
        except Exception as exc:
            kind = classify(exc)
            if kind is None:
                raise
            return [self._failure(limiter, exc, kind, "no") for _ in range(n)]
        if use_cell:
            return self._cell_many(limiter, keys, cost_list)
        calls = list(zip(rkeys, now_args, cost_list, strict=True))
        return BatchRun(self, limiter, spec, calls, batch, deadline_s).run()

    def _cell_many(
        self, limiter: Algorithm, keys: Sequence[object], costs: list[int]
    ) -> list[Decision]:
        """One ``CL.THROTTLE`` per request; after a transport failure the rest fail at once."""
        out: list[Decision] = []
        for k, c in zip(keys, costs, strict=True):
            d = self._acquire(limiter, k, None, c)
            out.append(d)
            if d.error in ("timeout", "connection"):
                rest = len(keys) - len(out)
                out.extend(self._failed(limiter, d.error, "no") for _ in range(rest))
                break
        return out

    def _pack(self, spec: _Spec, calls: Sequence[tuple[str, str, int]]) -> bytes:
        pack = self._packer(spec).pack
        return b"".join(pack(*c) for c in calls)

    def state_of(self, limiter: Algorithm, key: object) -> list[int] | None:
        """The stored state of ``key`` (``None`` when absent); for inspection and tests."""
        # Packed state is binary: read it undecoded even on a decode_responses=True client.
        raw = self.client.execute_command("GET", self.key_for(limiter, key), **{NEVER_DECODE: True})
        if raw is None:
            return None
        return _redis_lua.decode_state(
            raw, limiter.state_size, lazy=limiter.name in _redis_lua.LAZY_STATE
        )

    def reset(self, limiter: Algorithm, key: object) -> None:
        """Forget ``key`` (``DEL``)."""
        self.client.delete(self.key_for(limiter, key))

    def holds_state(self, scan_count: int = 1000) -> bool:
        """Whether any key under this store's ``prefix`` exists (``SCAN ... MATCH``, stopping at
        the first). ``replay`` asks, because a replay decides from whatever state it finds: a
        second replay on the same keys starts where the first left off. An unreachable server
        answers ``False`` here (the replay's own calls then take the failure mode)."""
        pattern = _glob_escape(self.prefix) + "*"
        try:
            for _ in self.client.scan_iter(match=pattern, count=scan_count):
                return True
        except redis.RedisError:
            return False
        return False

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

    def _decision(self, limiter: Algorithm, reply: Any) -> Decision:
        if isinstance(reply, bytes):
            reply = reply.split(b",")
        elif isinstance(reply, str):  # a client with decode_responses=True
            reply = reply.split(",")
        allowed, remaining, retry_after_us, reset_after_us = (int(x) for x in reply)
        self._streak.answered()
        if allowed == DRIFT_CODE:  # the script refused before reading or writing the state
            return Decision(False, limiter.limit, 0, -1, 0, "drift", charged="no")
        return Decision(bool(allowed), limiter.limit, remaining, retry_after_us, reset_after_us)

    def _failed(self, limiter: Algorithm, kind: str, charged: Charged) -> Decision:
        """The failure-mode decision for a request the store could not decide (counted)."""
        self.errors[kind] += 1
        self._streak.failed(kind, "fail_open" if self.failure_mode == "open" else "fail_closed")
        if self.failure_mode == "open":
            return Decision(True, limiter.limit, 0, -1, 0, "fail_open", kind, charged)
        return Decision(False, limiter.limit, 0, -1, 0, "fail_closed", kind, charged)

    def _failure(
        self, limiter: Algorithm, exc: BaseException, kind: str, charged: Charged
    ) -> Decision:
        """``_failed``, or (``failure_mode="raise"``) count and re-raise ``exc``."""
        if self.failure_mode == "raise":
            self.errors[kind] += 1
            raise exc
        return self._failed(limiter, kind, charged)

    # -- delivery: functions or scripts --------------------------------------------------------

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

    def _is_missing_code(self, exc: BaseException) -> bool:
        """Whether the call that met ``exc`` ran nothing for want of code (safe to rerun)."""
        if is_missing_code(exc):
            return True
        msg = str(exc).lower()
        return self._mode == "auto" and "unknown command" in msg and "fcall" in msg

    def _load_command(self, spec: _Spec, exc: BaseException) -> tuple[str, ...] | None:
        """The command that loads the code ``exc`` found missing (``None``: nothing to load,
        the store switched from FCALL to EVALSHA on a server without Functions)."""
        if isinstance(exc, NoScriptError) or str(exc).startswith("NOSCRIPT"):
            self.code_loads += 1
            return ("SCRIPT", "LOAD", self._bundle.scripts[spec.name][0])
        if "Function not found" in str(exc):
            self.code_loads += 1
            return ("FUNCTION", "LOAD", "REPLACE", self._bundle.library_source)
        self._mode = "script"
        return None

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
        self._streak.answered()
        return cell_reply_to_decision(reply)


def _server_label(client: Any) -> str:
    """``host:port`` of the client's connection pool, for log messages (else its repr)."""
    try:
        kwargs = client.connection_pool.connection_kwargs
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    except AttributeError:
        return repr(client)


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
