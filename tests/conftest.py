"""Shared fixtures: a real, throwaway ``redis-server`` for the compat-layer tests.

``redis_server`` (session) starts ``redis-server`` from ``PATH`` on a free port of 127.0.0.1 with
no persistence, in a temporary directory, waits for ``PING`` and kills it by its pid at the end.
If ``redis-server`` is missing the fixture **fails** (it never skips): ``make test`` installs it.
``redis_url`` (function scope) flushes that server before each test and yields its URL.
``redis_factory`` starts extra, private servers (for fault tests that stop or pause them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RedisServer:
    """One ``redis-server`` process started by the tests."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 10.0) -> None:
        """Start (or restart, on the same port) and wait until it answers ``PING``."""
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail(
                "redis-server is not on PATH: the compat-layer tests need a real Redis. "
                "Run `make test` (it installs Debian's redis-server as root) or install Redis >= 6.",
                pytrace=False,
            )
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - closed by the process
        self.proc = subprocess.Popen(
            [
                exe,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.workdir),
                "--enable-debug-command", "local",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout_s
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                if self.proc.poll() is not None:
                    text = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"redis-server exited with {self.proc.returncode}:\n{text}")
                try:
                    if client.ping():
                        return
                except redis.exceptions.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"redis-server on port {self.port} did not answer PING in time")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Kill the process by its pid (SIGKILL: an outage, not a clean shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server (shared; tests must not stop or pause it)."""
    with tempfile.TemporaryDirectory(prefix="ratesim-redis-") as tmp:
        server = RedisServer(port=free_port(), workdir=Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session server, flushed (data, scripts and functions) for this test."""
    client = redis.Redis(port=redis_server.port)
    client.flushall()
    client.script_flush()
    client.function_flush()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., RedisServer]]:
    """Start private servers: ``redis_factory()`` returns a started :class:`RedisServer`."""
    started: list[RedisServer] = []
    tmp = tempfile.TemporaryDirectory(prefix="ratesim-redis-extra-")

    def make(*extra_args: str) -> RedisServer:
        workdir = Path(tmp.name) / str(len(started))
        workdir.mkdir()
        server = RedisServer(port=free_port(), workdir=workdir, extra_args=list(extra_args))
        server.start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()
        tmp.cleanup()
