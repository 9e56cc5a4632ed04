"""A TCP proxy for the compat-layer fault tests: it cuts a pipeline at an exact command.

``CuttingProxy(upstream_port)`` listens on ``.port`` and relays every connection to a real
redis-server. Once armed (``arm(...)``, while no command is in flight) the next connection that
sends data is the *target*, and the proxy, which parses RESP on both directions, can:

* ``cut_after=m, hook=f``: forward the target's next ``m`` commands, wait until the server has
  answered all ``m``, call ``f()`` (e.g. ``FUNCTION FLUSH`` from a second client), then forward
  the rest: the server runs the hook *between* command ``m`` and ``m + 1`` of one pipeline;
* ``stall_after=k``: forward the target's next ``k`` replies and hold every later one (the
  server has run the commands, the client never hears back: a lost acknowledgement);
* ``delay_s=d``: hold each chunk of replies ``d`` seconds before forwarding it (a slow link).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable


def reply_end(buf: bytes, pos: int = 0) -> int | None:
    """End offset of the RESP2/RESP3 value starting at ``pos``, ``None`` if incomplete."""
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    kind, head = buf[pos : pos + 1], buf[pos + 1 : line_end]
    after = line_end + 2
    if kind in (b"$", b"=", b"!"):
        size = int(head)
        if size < 0:
            return after
        return after + size + 2 if len(buf) >= after + size + 2 else None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(head)
        if kind in (b"%", b"|"):
            count *= 2
        for _ in range(max(count, 0)):
            nxt = reply_end(buf, after)
            if nxt is None:
                return None
            after = nxt
        return after
    return after  # + - : _ , # ( simple one-line values


class CuttingProxy:
    """See the module docstring."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = int(self.listener.getsockname()[1])
        self.lock = threading.Condition()
        self.armed = False
        self.target: object = None
        self.cut_after: int | None = None
        self.hook: Callable[[], None] | None = None
        self.stall_after: int | None = None
        self.delay_s = 0.0
        self.replies = 0  # replies the target received since arming
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(
        self,
        *,
        cut_after: int | None = None,
        hook: Callable[[], None] | None = None,
        stall_after: int | None = None,
        delay_s: float = 0.0,
    ) -> None:
        with self.lock:
            self.armed, self.target, self.replies = True, None, 0
            self.cut_after, self.hook = cut_after, hook
            self.stall_after, self.delay_s = stall_after, delay_s

    def close(self) -> None:
        self.stop.set()
        for s in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                s.close()

    # -- relaying -------------------------------------------------------------------------------

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            session = object()
            threading.Thread(target=self._up, args=(session, client, upstream), daemon=True).start()
            threading.Thread(
                target=self._down, args=(session, upstream, client), daemon=True
            ).start()

    def _is_target(self, session: object) -> bool:
        with self.lock:
            if self.armed and self.target is None:
                self.target = session
            return self.target is session

    def _up(self, session: object, src: socket.socket, dst: socket.socket) -> None:
        buf = b""
        sent = 0  # commands forwarded since arming
        while not self.stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            if not self._is_target(session) or self.cut_after is None:
                dst.sendall(buf)
                buf = b""
                continue
            while self.cut_after is not None and sent < self.cut_after:
                end = reply_end(buf)
                if end is None:
                    break
                dst.sendall(buf[:end])
                buf = buf[end:]
                sent += 1
            if self.cut_after is not None and sent == self.cut_after:
                wanted = sent
                with self.lock:
                    self.lock.wait_for(lambda: self.replies >= wanted, timeout=5)  # noqa: B023
                if self.hook is not None:
                    self.hook()
                self.cut_after = None
            if self.cut_after is None:
                dst.sendall(buf)
                buf = b""
        dst.close()

    def _down(self, session: object, src: socket.socket, dst: socket.socket) -> None:
        buf = b""
        while not self.stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if not self._is_target(session):
                dst.sendall(data)
                continue
            if self.delay_s:
                time.sleep(self.delay_s)
            buf += data
            while (end := reply_end(buf)) is not None:
                if self.stall_after is not None and self.replies >= self.stall_after:
                    buf = b""  # held forever: the client never hears these replies
                    break
                try:
                    dst.sendall(buf[:end])
                except OSError:
                    return
                buf = buf[end:]
                with self.lock:
                    self.replies += 1
                    self.lock.notify_all()
        with contextlib.suppress(OSError):
            dst.close()
