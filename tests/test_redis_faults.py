"""Store faults on real servers: stopped, paused (``CLIENT PAUSE``), black-holed, restarted,
scripts/functions flushed. ``acquire`` must come back within the configured timeout (plus a small
slack) with the failure-mode decision, never run a script twice, and recover by itself.

Each test that breaks a server uses a private one from ``redis_factory``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import redis

from ratesim.algorithms import GCRA, FixedWindow
from ratesim.stores import MemoryStore, _redis_lua
from ratesim.stores.redis_store import RedisStore

T = TypeVar("T")
TIMEOUT_S = 0.2
SLACK_S = 0.35  # scheduling noise on a shared 2-core machine
T0_US = 1_700_000_000_000_000


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    out = fn()
    return out, time.monotonic() - start


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (nor closes them)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
def test_stopped_server_fails_fast_then_recovers_after_restart(
    redis_factory, failure_mode: str
) -> None:
    server = redis_factory()
    store = RedisStore.from_url(server.url, timeout_s=TIMEOUT_S, failure_mode=failure_mode)
    lim = GCRA(1, 1, 60)
    assert store.acquire(lim, "u", T0_US).outcome == "limiter"
    server.stop()
    d, took = timed(lambda: store.acquire(lim, "u", T0_US))
    assert took < TIMEOUT_S + SLACK_S
    assert d.outcome == f"fail_{failure_mode}"
    assert d.allowed == (failure_mode == "open")
    many, took = timed(lambda: store.acquire_many(lim, ["a", "b", "c"], [T0_US] * 3))
    assert took < TIMEOUT_S + SLACK_S
    assert [x.outcome for x in many] == [f"fail_{failure_mode}"] * 3
    # Restart on the same port: no data, no functions. The store reloads its code by itself.
    server.start()
    d = store.acquire(lim, "u", T0_US)
    assert (d.allowed, d.remaining, d.outcome) == (True, 1, "limiter")
    assert [x.outcome for x in store.acquire_many(lim, ["a", "b"], [T0_US] * 2)] == ["limiter"] * 2


def test_raise_mode_propagates(redis_factory) -> None:
    server = redis_factory()
    store = RedisStore.from_url(server.url, timeout_s=TIMEOUT_S, failure_mode="raise")
    server.stop()
    with pytest.raises(redis.exceptions.ConnectionError):
        store.acquire(GCRA(1, 1, 1), "u", T0_US)
    with pytest.raises(redis.exceptions.ConnectionError):
        store.acquire_many(GCRA(1, 1, 1), ["u"], [T0_US])


@pytest.mark.parametrize("mode", ["function", "script"])
def test_paused_server_times_out_without_running_twice(redis_factory, mode: str) -> None:
    """CLIENT PAUSE WRITE stalls the script call: the store gives up after its timeout.

    The store drops the timed-out connection, and Redis discards the stalled commands of a
    client that is gone, so none of the failed calls is charged. Had the connection been kept
    (or the call retried on it), the stalled calls would run after the pause and their late
    replies would be read as the answers to later calls.
    """
    server = redis_factory()
    admin = redis.Redis(port=server.port)
    store = RedisStore.from_url(server.url, timeout_s=TIMEOUT_S, failure_mode="closed", mode=mode)
    lim = FixedWindow(100, 3600)
    assert store.acquire(lim, "p", T0_US).remaining == 99
    admin.execute_command("CLIENT", "PAUSE", 1200, "WRITE")
    d, took = timed(lambda: store.acquire(lim, "p", T0_US))
    assert (d.allowed, d.outcome) == (False, "fail_closed")
    assert TIMEOUT_S * 0.9 < took < TIMEOUT_S + SLACK_S
    many, took = timed(lambda: store.acquire_many(lim, ["p"] * 5, [T0_US] * 5))
    assert [x.outcome for x in many] == ["fail_closed"] * 5
    assert took < TIMEOUT_S + SLACK_S
    time.sleep(1.3)  # the pause ends
    d = store.acquire(lim, "p", T0_US)
    assert d.outcome == "limiter"
    # Charged: the call before the pause and this one; the six failed calls ran nowhere.
    assert d.remaining == 100 - 2


def test_black_hole_times_out(black_hole: int) -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{black_hole}/0", timeout_s=TIMEOUT_S)
    for _ in range(2):  # a fresh connection each time: each attempt must stay bounded
        d, took = timed(lambda: store.acquire(GCRA(1, 1, 1), "u", T0_US))
        assert (d.allowed, d.outcome) == (True, "fail_open")
        assert took < TIMEOUT_S + SLACK_S
    many, took = timed(lambda: store.acquire_many(GCRA(1, 1, 1), ["u", "v"], [T0_US] * 2))
    assert [x.outcome for x in many] == ["fail_open"] * 2
    assert took < TIMEOUT_S + SLACK_S


@pytest.mark.parametrize("mode", ["function", "script"])
def test_recovers_after_code_flush(redis_url: str, mode: str) -> None:
    """SCRIPT FLUSH / FUNCTION FLUSH (what a failover or restart does to the code cache) between
    calls and between batches: decisions continue exactly as in memory, state intact."""
    store = RedisStore.from_url(redis_url, mode=mode, timeout_s=2)
    memory = MemoryStore()
    admin = redis.Redis.from_url(redis_url)
    lim = GCRA(3, 10, 1)
    for i in range(12):
        if i % 3 == 0:
            admin.script_flush()
            admin.function_flush()
        t = T0_US + i * 40_000
        assert store.acquire(lim, "f", t) == memory.acquire(lim, "f", t)
        keys, times = ["f", "g", "f"], [t + 1, t + 2, t + 3]
        got = store.acquire_many(lim, keys, times)
        assert got == [memory.acquire(lim, k, x) for k, x in zip(keys, times, strict=True)]
    assert store.mode == mode
    assert store.code_loads >= 4  # at least once per flush


@pytest.mark.parametrize("mode", ["function", "script"])
def test_code_flushed_during_a_long_batch_run(redis_url: str, mode: str) -> None:
    """Another client flushes the code again and again while acquire_many runs: every batch
    that loses the code mid-way reloads it and reruns its failed suffix, in order, so the
    decisions still equal MemoryStore's, request for request."""
    store = RedisStore.from_url(redis_url, mode=mode, timeout_s=5)
    admin = redis.Redis.from_url(redis_url)
    lim = GCRA(2, 50, 1)
    n = 20_000
    keys = [f"k{i % 7}" for i in range(n)]
    times = [T0_US + i * 700 for i in range(n)]
    stop = threading.Event()
    flushes = [0]

    def flusher() -> None:
        while not stop.is_set():
            admin.script_flush()
            admin.function_flush()
            flushes[0] += 1
            time.sleep(0.01)

    thread = threading.Thread(target=flusher, daemon=True)
    thread.start()
    try:
        got = store.acquire_many(lim, keys, times, batch=500)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert flushes[0] >= 3
    assert store.code_loads >= 3  # the code really went missing during the run
    memory = MemoryStore()
    expected = [memory.acquire(lim, k, t) for k, t in zip(keys, times, strict=True)]
    assert got == expected


def test_concurrent_reloader_never_silently_reorders(redis_url: str) -> None:
    """Another client flushes *and reloads* the code while acquire_many runs, so a batch can
    lose its code in the middle and find later calls already run. Every request still gets a
    decision: the ones that ran decide exactly as memory deciding only those requests would; a
    request that could not be rerun in order is a failure-mode decision that ran nothing."""
    store = RedisStore.from_url(redis_url, mode="function", timeout_s=5)
    admin = redis.Redis.from_url(redis_url)
    library = _redis_lua.bundle().library_source
    lim = GCRA(2, 50, 1)
    n = 20_000
    keys = [f"k{i % 3}" for i in range(n)]
    times = [T0_US + i * 700 for i in range(n)]
    stop = threading.Event()

    def reloader() -> None:
        while not stop.is_set():
            admin.function_flush()
            time.sleep(0.001)
            admin.function_load(library, replace=True)
            time.sleep(0.005)

    thread = threading.Thread(target=reloader, daemon=True)
    thread.start()
    try:
        got = store.acquire_many(lim, keys, times, batch=500)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert len(got) == n
    assert {d.charged for d in got} <= {"yes", "no"}  # nothing was lost in transit
    assert all(d.error == "noscript_race" for d in got if d.charged == "no")
    assert store.errors["noscript_race"] == sum(d.charged == "no" for d in got)
    memory = MemoryStore()
    for k, t, d in zip(keys, times, got, strict=True):
        if d.charged == "yes":
            assert d == memory.acquire(lim, k, t)


@pytest.mark.parametrize("mode", ["function", "script"])
def test_read_only_replica_gets_the_failure_mode(redis_factory, mode: str) -> None:
    """After a failover a client may still talk to the old primary, now a read-only replica:
    every limiter call must write, so the store answers by its failure mode, not an exception."""
    primary = redis_factory()
    replica = redis_factory("--replicaof", "127.0.0.1", str(primary.port))
    store = RedisStore.from_url(replica.url, mode=mode, failure_mode="closed", timeout_s=2)
    lim = GCRA(5, 10, 1)
    d = store.acquire(lim, "r", T0_US)
    assert (d.allowed, d.outcome) == (False, "fail_closed")
    many = store.acquire_many(lim, ["r", "s"], [T0_US, T0_US])
    assert [x.outcome for x in many] == ["fail_closed", "fail_closed"]
    # Promoted (REPLICAOF NO ONE), the same store decides again by itself.
    redis.Redis(port=replica.port).execute_command("REPLICAOF", "NO", "ONE")
    d = store.acquire(lim, "r", T0_US)
    assert (d.allowed, d.remaining, d.outcome) == (True, 5, "limiter")
