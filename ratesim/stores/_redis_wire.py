"""A lean wire path for batches of script calls (the replay hot loop).

redis-py's generic command packer encodes every argument through several layers and costs tens
of microseconds per command; a limiter call's arguments are mostly constant per limiter, so
:class:`CallPacker` pre-encodes the constant head and tail once and only formats the key, the
time and the cost per call. Batches go out in one ``sendall`` and their replies are read back
one by one on the same pooled connection (:mod:`ratesim.stores._redis_batch`), one round trip
per batch. Commands are never retried: on any transport error the connection is dropped (its
late replies can never be mistaken for the next batch's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
