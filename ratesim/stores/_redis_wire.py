"""A lean wire path for batches of script calls (the replay hot loop).

redis-py's generic command packer encodes every argument through several layers and costs tens
of microseconds per command; a limiter call's arguments are mostly constant per limiter, so
:class:`CallPacker` pre-encodes the constant head and tail once and only formats the key, the
time and the cost per call. Batches go out in one ``sendall`` and their replies are read back
on the same pooled connection, one round trip per batch. Commands are never retried: on any
transport error the connection is dropped (its late replies can never be mistaken for the next
batch's) and the error propagates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError


def _bulk(item: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(item), item)


class CallPacker:
    """RESP encoder for ``<verb> <target> 1 <key> <now> <cost> <tail...>``.

    ``verb`` is ``FCALL`` (target = function name) or ``EVALSHA`` (target = script SHA1).
    """

    def __init__(self, verb: str, target: str, tail: Sequence[str]) -> None:
        nargs = 6 + len(tail)
        self.head = b"*%d\r\n" % nargs + b"".join(_bulk(x.encode()) for x in (verb, target, "1"))
        self.tail = b"".join(_bulk(x.encode()) for x in tail)

    def pack(self, key: str, now_arg: str, cost: int) -> bytes:
        """One command, RESP-encoded."""
        k = key.encode()
        n = now_arg.encode()
        c = b"%d" % cost
        return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
            self.head,
            len(k),
            k,
            len(n),
            n,
            len(c),
            c,
            self.tail,
        )


def send_payload(conn: Any, payload: bytes) -> None:
    """Write packed commands on ``conn`` (redis-py drops the connection on a transport error)."""
    conn.send_packed_command([payload])


def read_replies(conn: Any, n: int) -> list[Any]:
    """Read ``n`` replies from ``conn``; an error reply becomes a ``ResponseError`` in its slot.

    On a transport error redis-py disconnects ``conn`` and the error propagates.
    """
    replies: list[Any] = []
    for _ in range(n):
        try:
            replies.append(conn.read_response())
        except ResponseError as exc:
            replies.append(exc)
    return replies


def roundtrip(client: Any, payload: bytes, n: int) -> list[Any]:
    """Send ``n`` packed commands at once and read their ``n`` replies.

    A server error reply becomes a ``ResponseError`` object in its slot (the connection stays
    in sync); a transport error disconnects the connection and propagates.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        send_payload(conn, payload)
        return read_replies(conn, n)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
