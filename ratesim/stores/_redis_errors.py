"""Which Redis errors ``RedisStore`` answers with its failure mode, and which it raises.

Every error a call can meet is one of:

* a **transport** failure (connect refused, reset, timeout): kind ``"connection"`` or
  ``"timeout"``;
* a **transient server reply**, the server saying "not now" before the script ran: ``BUSY``
  (another client's script is past ``busy-reply-threshold``), ``LOADING``, ``TRYAGAIN``,
  ``CLUSTERDOWN``, ``READONLY`` (a replica, e.g. the old primary after a failover),
  ``MASTERDOWN``, ``OOM``, ``NOREPLICAS``, ``MISCONF``, ``MOVED``/``ASK`` (this node does not
  own the key's slot), the ACL refusals ``NOAUTH``/``WRONGPASS``/``NOPERM``, and
  ``ERR max number of clients reached``;
* a **missing code** reply (``NOSCRIPT``, ``Function not found``), repaired by reloading the
  code; only a repair that cannot keep request order, or keeps losing the code, ends as the
  failure mode (kind ``"noscript_race"``);
* anything else (a wrong argument count, an error raised by our Lua, ``WRONGTYPE`` on a key some
  other program wrote): a **programming error**, raised to the caller.

:data:`ERROR_KINDS` lists the kinds; each failure-mode decision carries its kind in
``Decision.error`` and is counted in ``RedisStore.errors``.
"""

from __future__ import annotations

import socket
from typing import Final, Literal

from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Charged = Literal["yes", "no", "unknown"]

#: Every kind of failure-mode decision (``Decision.error``, keys of ``RedisStore.errors``).
ERROR_KINDS: Final = (
    "timeout",  # no answer within the socket timeout (connect, write or read)
    "connection",  # refused, reset, closed, or the server's client limit reached
    "busy",  # BUSY: another client's script or function is running too long
    "loading",  # LOADING: the server is loading its dataset after a restart
    "tryagain",  # TRYAGAIN: a cluster slot is being migrated
    "clusterdown",  # CLUSTERDOWN: the cluster cannot serve the slot
    "readonly",  # READONLY: a replica (e.g. the old primary after a failover)
    "masterdown",  # MASTERDOWN: a replica that lost its primary and serves no stale data
    "oom",  # OOM: maxmemory reached with a no-eviction policy
    "noreplicas",  # NOREPLICAS: min-replicas-to-write not met
    "misconf",  # MISCONF: writes stopped after a failed RDB save
    "moved",  # MOVED / ASK: the key's slot lives on another cluster node
    "auth",  # NOAUTH / WRONGPASS / NOPERM: the server refuses this client
    "noscript_race",  # the code kept vanishing, or reappeared mid-batch (order can't be kept)
    "deadline",  # acquire_many's overall deadline passed before this request was answered
    "breaker_open",  # the store breaker was open: no call made (RedisStore's store_breaker)
)

# Reply prefixes redis-py leaves as a plain ResponseError (it maps the others to classes).
_PREFIXES: Final = {
    "BUSY": "busy",
    "LOADING": "loading",
    "TRYAGAIN": "tryagain",
    "CLUSTERDOWN": "clusterdown",
    "READONLY": "readonly",
    "MASTERDOWN": "masterdown",
    "OOM": "oom",
    "NOREPLICAS": "noreplicas",
    "MISCONF": "misconf",
    "MOVED": "moved",
    "ASK": "moved",
    "NOAUTH": "auth",
    "WRONGPASS": "auth",
    "NOPERM": "auth",
}

# Order matters: subclasses before their bases (MasterDownError is a ClusterDownError,
# BusyLoadingError and AuthenticationError are ConnectionErrors).
_CLASSES: Final[tuple[tuple[type[BaseException], str], ...]] = (
    (BusyLoadingError, "loading"),
    (AuthenticationError, "auth"),
    (AuthorizationError, "auth"),
    (NoPermissionError, "auth"),
    (MasterDownError, "masterdown"),
    (ClusterDownError, "clusterdown"),
    (TryAgainError, "tryagain"),
    (ReadOnlyError, "readonly"),
    (OutOfMemoryError, "oom"),
    (AskError, "moved"),  # MovedError is an AskError
)


def is_missing_code(exc: BaseException) -> bool:
    """Whether ``exc`` says the script or function is not loaded (the call ran nothing)."""
    if isinstance(exc, NoScriptError):
        return True
    msg = str(exc)
    return msg.startswith("NOSCRIPT") or "Function not found" in msg


def is_reply(exc: BaseException) -> bool:
    """Whether ``exc`` is an error *reply* (the connection is still in step with the server).

    redis-py raises every error reply as an exception: a ``ResponseError``, or for a few codes
    (``LOADING``, ``NOAUTH``, ``ERR max number of clients``) a ``ConnectionError`` subclass that
    carries the reply's ``status_code``; a transport failure has no status code.
    """
    return isinstance(exc, ResponseError) or getattr(exc, "status_code", None) is not None


def reply_kind(exc: BaseException) -> str | None:
    """The failure kind of a transient error reply, ``None`` for any other reply."""
    for cls, kind in _CLASSES:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, RedisConnectionError):  # "ERR max number of clients reached"
        return "connection"
    head = str(exc).split(" ", 1)[0]
    return _PREFIXES.get(head)


def transport_kind(exc: BaseException) -> str | None:
    """``"timeout"`` or ``"connection"`` for a transport failure, ``None`` for anything else."""
    if isinstance(exc, RedisTimeoutError | socket.timeout | TimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "connection"
    return None


def classify(exc: BaseException) -> str | None:
    """The failure kind of ``exc``, or ``None`` when it is a programming error (to be raised)."""
    if not isinstance(exc, RedisError | OSError):
        return None
    if is_reply(exc):
        return reply_kind(exc)
    return transport_kind(exc)


def charged_after(exc: BaseException, *, sent: bool) -> Charged:
    """Whether a request that met ``exc`` ran: a reply error ran nothing; a transport error ran
    nothing if the request was never written, and may have run if it was (lost reply)."""
    if is_reply(exc) or not sent:
        return "no"
    return "unknown"


def connect_failed(exc: BaseException) -> bool:
    """Whether redis-py says ``exc`` happened while connecting (so nothing was sent).

    redis-py words connect failures as ``"Timeout connecting to server"`` and ``"Error <n>
    connecting to <host>:<port>."``; every other transport error may follow a write.
    """
    return isinstance(exc, RedisError) and "connecting to" in str(exc)


class ReorderedError(RuntimeError):
    """A batch lost its code and someone else reloaded it before this store could: a later call
    on the same key already ran, so the failed call cannot be rerun in request order.

    Raised only with ``failure_mode="raise"``; otherwise that call is a failure-mode decision of
    kind ``"noscript_race"`` (charged ``"no"``) and the batch's other decisions stand."""
