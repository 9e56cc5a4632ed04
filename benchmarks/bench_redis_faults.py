"""Wall time of ``RedisStore.acquire_many`` when the store fails (issue 9's "Show" numbers).

Cases, each 500 requests in batches of 10 with ``from_url(timeout_s=0.1)``:

1. a **black hole**: a listener that accepts and never answers (before the fix: 5.05 s, a new
   connection and a full timeout per batch; the goal is about one timeout);
2. a **stopped server** (SIGSTOP) behind a live pooled connection: the written batches are
   charged ``"unknown"``, the rest ``"no"``;
3. a **busy server**: another client's script runs past ``busy-reply-threshold`` (50 ms), every
   request is answered ``BUSY`` at once (charged ``"no"``).

Prints the wall time, the decisions' ``(error, charged)`` counts and ``store.errors`` per case.
Usage: ``python benchmarks/bench_redis_faults.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis

from ratesim.algorithms import GCRA
from ratesim.stores.redis_store import RedisStore

N, BATCH, TIMEOUT_S = 500, 10, 0.1
T0_US = 1_700_000_000_000_000
LIMITER = GCRA(1_000, 1_000, 1)
LONG_SCRIPT = """
local function now() local t = redis.call('TIME'); return t[1] * 1000000 + t[2] end
local start = now()
while now() - start < tonumber(ARGV[1]) do end
return 1
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: str, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not on PATH (make bench installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", workdir, *extra],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port)
    for _ in range(500):
        try:
            if client.ping():
                return proc, port
        except redis.exceptions.ConnectionError:
            time.sleep(0.01)
    proc.kill()
    sys.exit("redis-server did not start")


def report(name: str, store: RedisStore, call: Callable[[], list]) -> None:
    t0 = time.monotonic()
    try:
        got = call()
    except Exception as exc:  # what ratesim before issue 9 did on BUSY
        took = time.monotonic() - t0
        print(f"{name:<30} {took:7.3f} s  raised {type(exc).__name__}: {str(exc)[:60]}")
        return
    took = time.monotonic() - t0
    # getattr: the script also runs against older ratesim versions, for the "before" numbers.
    flags = Counter((getattr(d, "error", "?") or "-", getattr(d, "charged", "?")) for d in got)
    errors = dict(getattr(store, "errors", {}))
    print(f"{name:<30} {took:7.3f} s  {len(got)} decisions  {dict(flags)}  errors={errors}")


def many(store: RedisStore) -> Callable[[], list]:
    keys = [f"k{i}" for i in range(N)]
    return lambda: store.acquire_many(LIMITER, keys, [T0_US] * N, batch=BATCH)


def black_hole() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: [held.append(listener.accept()[0]) for _ in range(64)],
                     daemon=True).start()  # fmt: skip
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{listener.getsockname()[1]}/0", timeout_s=TIMEOUT_S
    )
    report("black hole", store, many(store))
    listener.close()


def stopped(workdir: str) -> None:
    proc, port = start_server(workdir)
    try:
        store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=TIMEOUT_S)
        store.acquire(LIMITER, "warm", T0_US)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            report("SIGSTOP, live connection", store, many(store))
        finally:
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        proc.kill()


def busy(workdir: str) -> None:
    proc, port = start_server(workdir, "--busy-reply-threshold", "50")
    try:
        store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=2)
        store.acquire(LIMITER, "warm", T0_US)
        admin = redis.Redis(port=port)
        runner = threading.Thread(target=lambda: admin.eval(LONG_SCRIPT, 0, 700_000))
        runner.start()
        probe = redis.Redis(port=port)
        while True:
            try:
                probe.get("x")
                time.sleep(0.01)
            except redis.exceptions.ResponseError:
                break
        report("BUSY (long script elsewhere)", store, many(store))
        runner.join()
    finally:
        proc.kill()


def main() -> int:
    print(f"acquire_many of {N} requests, batch {BATCH}, timeout {TIMEOUT_S} s")
    black_hole()
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        stopped(a)
        busy(b)
    return 0


if __name__ == "__main__":
    sys.exit(main())
