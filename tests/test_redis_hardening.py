"""Issue 9 (compat layer): every Redis error is a decision, every batch has one deadline.

On real redis-servers: a long script on a second connection (``BUSY``), servers that refuse
writes (``NOREPLICAS``, ``OOM``, ACL ``NOPERM``), a Redis Cluster node without the slot
(``CLUSTERDOWN``) or with the slot elsewhere (``MOVED``), a black hole, a stopped server, and a
proxy that cuts one pipeline at an exact command (``tests/_proxy.py``) to flush or reload the
code between two of its calls, or to lose the replies after the k-th.

Expected decisions come from a ``MemoryStore`` deciding the requests that ran; the reply strings
of the classification table are the ones Redis 7 sends (``src/server.c``, ``src/script.c``).
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
import redis
from _proxy import CuttingProxy
from conftest import free_port
from redis._parsers.base import BaseParser
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ratesim.algorithms import GCRA, FixedWindow
from ratesim.stores import ERROR_KINDS, MemoryStore, ReorderedError, _redis_lua
from ratesim.stores._redis_batch import PIPELINE_DEPTH
from ratesim.stores._redis_errors import classify, is_reply
from ratesim.stores.redis_store import MAX_TIMEOUT_S, RedisStore

T = TypeVar("T")
TIMEOUT_S = 0.1
SLACK_S = 0.35  # scheduling noise on a shared 2-core machine
T0_US = 1_700_000_000_000_000


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    out = fn()
    return out, time.monotonic() - start


@pytest.fixture
def black_hole() -> Iterator[tuple[int, list[socket.socket]]]:
    """A port that accepts TCP connections and never answers (nor closes them), and the list
    of connections it accepted."""
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
        yield int(listener.getsockname()[1]), held
    finally:
        stop.set()
        thread.join(timeout=2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.fixture
def proxy_to(redis_server) -> Iterator[Callable[[int], CuttingProxy]]:
    made: list[CuttingProxy] = []

    def make(port: int) -> CuttingProxy:
        p = CuttingProxy(port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


# -- the classification table -------------------------------------------------------------------

TRANSIENT_REPLIES = [
    ("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", "busy"),
    ("BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.", "busy"),
    ("LOADING Redis is loading the dataset in memory", "loading"),
    ("TRYAGAIN Multiple keys request during rehashing of slot", "tryagain"),
    ("CLUSTERDOWN Hash slot not served", "clusterdown"),
    ("CLUSTERDOWN The cluster is down", "clusterdown"),
    ("READONLY You can't write against a read only replica.", "readonly"),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", "masterdown"),
    ("OOM command not allowed when used memory > 'maxmemory'.", "oom"),
    ("NOREPLICAS Not enough good replicas to write.", "noreplicas"),
    ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.", "misconf"),
    ("MOVED 3999 127.0.0.1:6381", "moved"),
    ("ASK 3999 127.0.0.1:6381", "moved"),
    ("NOAUTH Authentication required.", "auth"),
    ("WRONGPASS invalid username-password pair or user is disabled.", "auth"),
    ("NOPERM User lim has no permissions to run the 'fcall' command", "auth"),
    ("ERR max number of clients reached", "connection"),
]  # fmt: skip

PROGRAMMING_REPLIES = [
    "ERR wrong number of arguments for 'fcall' command",
    "ERR user_function:40: Script attempted to access nonexistent global variable 'x'",
    "WRONGTYPE Operation against a key holding the wrong kind of value",
    "CROSSSLOT Keys in request don't hash to the same slot",
    "ERR value is not an integer or out of range",
    "BUSYKEY Target key name already exists.",
]


@pytest.mark.parametrize(("reply", "kind"), TRANSIENT_REPLIES)
def test_transient_replies_have_a_kind(reply: str, kind: str) -> None:
    exc = BaseParser.parse_error(reply)  # the exception redis-py raises for this reply
    assert is_reply(exc)
    assert classify(exc) == kind
    assert kind in ERROR_KINDS


@pytest.mark.parametrize("reply", PROGRAMMING_REPLIES)
def test_programming_errors_have_no_kind(reply: str) -> None:
    assert classify(BaseParser.parse_error(reply)) is None


def test_transport_errors_have_a_kind() -> None:
    assert classify(RedisTimeoutError("Timeout reading from socket")) == "timeout"
    assert classify(TimeoutError()) == "timeout"
    assert classify(RedisConnectionError("Error 111 connecting to x:1. Refused.")) == "connection"
    assert classify(ConnectionResetError(104, "reset")) == "connection"
    assert not is_reply(RedisConnectionError("Connection closed by server."))
    assert classify(ValueError("x")) is None
    assert classify(RuntimeError("x")) is None


def test_a_programming_error_reply_raises(redis_url: str) -> None:
    """A bug in the call (here: a key some other program wrote with another type) raises
    whatever the failure mode: it is not a store outage."""
    store = RedisStore.from_url(redis_url, failure_mode="open")
    lim = FixedWindow(10, 60)
    store.client.hset(store.key_for(lim, "u"), "a", 1)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        store.acquire(lim, "u", T0_US)
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        store.acquire_many(lim, ["v", "u"], [T0_US, T0_US])
    assert not store.errors


# -- BUSY: a long script on a second connection ---------------------------------------------------

LONG_SCRIPT = """
local function now() local t = redis.call('TIME'); return t[1] * 1000000 + t[2] end
local start = now()
while now() - start < tonumber(ARGV[1]) do end
return 1
"""


@pytest.mark.parametrize("failure_mode", ["open", "closed"])
def test_busy_server_gives_failure_mode_decisions(redis_factory, failure_mode: str) -> None:
    """Another client's script runs past ``busy-reply-threshold`` (lowered to 50 ms): every call
    meanwhile is answered ``BUSY`` and must be a failure-mode decision (before: ResponseError
    through both failure modes). BUSY calls ran nothing: afterwards only the calls made before
    and after the script are charged."""
    server = redis_factory("--busy-reply-threshold", "50")
    store = RedisStore.from_url(server.url, timeout_s=2, failure_mode=failure_mode)
    lim = GCRA(9, 1, 60)  # 10 at once, then one a minute
    assert store.acquire(lim, "b", T0_US).remaining == 9
    admin = redis.Redis(port=server.port)
    probe = redis.Redis(port=server.port, socket_timeout=2)
    runner = threading.Thread(target=lambda: admin.eval(LONG_SCRIPT, 0, 900_000), daemon=True)
    runner.start()
    deadline = time.monotonic() + 2
    while True:  # wait until the server says BUSY
        try:
            probe.get("x")
        except ResponseError as exc:
            assert str(exc).startswith("BUSY")
            break
        assert time.monotonic() < deadline, "the long script never made the server busy"
        time.sleep(0.01)
    d, took = timed(lambda: store.acquire(lim, "b", T0_US))
    many = store.acquire_many(lim, ["b"] * 5 + ["c"] * 5, [T0_US] * 10, batch=3)
    runner.join(timeout=5)
    assert took < 0.2  # BUSY is an immediate reply, not a timeout
    for x in [d, *many]:
        assert (x.allowed, x.outcome) == (failure_mode == "open", f"fail_{failure_mode}")
        assert (x.error, x.charged) == ("busy", "no")
    assert store.errors == {"busy": 11}
    # The script is over: the calls answered BUSY were not charged.
    assert store.acquire(lim, "b", T0_US).remaining == 8
    assert store.acquire(lim, "c", T0_US).remaining == 9


# -- servers that refuse the call -----------------------------------------------------------------


def _noreplicas(redis_factory) -> tuple[str, Callable[[], None]]:
    server = redis_factory("--min-replicas-to-write", "1")
    return server.url, lambda: None


def _noperm(redis_factory) -> tuple[str, Callable[[], None]]:
    server = redis_factory()
    redis.Redis(port=server.port).execute_command(
        "ACL", "SETUSER", "lim", "on", "nopass", "~*", "+@all", "-fcall", "-evalsha"
    )
    return f"redis://lim@127.0.0.1:{server.port}/0", lambda: None


def _oom(redis_factory) -> tuple[str, Callable[[], None]]:
    server = redis_factory("--maxmemory-policy", "noeviction")
    admin = redis.Redis(port=server.port)
    admin.function_load(_redis_lua.bundle().library_source)
    admin.config_set("maxmemory", 1)
    return server.url, lambda: None


def _clusterdown(redis_factory) -> tuple[str, Callable[[], None]]:
    server = redis_factory(*cluster_args())
    return server.url, lambda: None


def cluster_args(bus_port: int | None = None) -> list[str]:
    """A cluster node: its bus port chosen free (the default, port + 10000, may not exist)."""
    return ["--cluster-enabled", "yes", "--cluster-node-timeout", "500",
            "--cluster-port", str(bus_port or free_port())]  # fmt: skip


REFUSALS = {"noreplicas": _noreplicas, "auth": _noperm, "oom": _oom, "clusterdown": _clusterdown}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_refusing_servers_give_failure_mode_decisions(redis_factory, kind: str) -> None:
    """NOREPLICAS and NOPERM used to raise (OOM and CLUSTERDOWN were handled); all four are
    failure-mode decisions of their kind, flagged not charged, and counted."""
    url, _ = REFUSALS[kind](redis_factory)
    store = RedisStore.from_url(url, timeout_s=1, failure_mode="closed", mode="function")
    lim = GCRA(5, 10, 1)
    d = store.acquire(lim, "r", T0_US)
    many = store.acquire_many(lim, ["r", "s", "r"], [T0_US] * 3)
    for x in [d, *many]:
        assert (x.allowed, x.outcome, x.error, x.charged) == (False, "fail_closed", kind, "no")
    assert store.errors == {kind: 4}


def test_moved_from_a_cluster_node_without_the_slot(redis_factory) -> None:
    """Node B of a two-node Redis Cluster answers MOVED for a slot node A owns: a failure-mode
    decision of kind "moved" (redis-py's MovedError used to raise), while A decides."""
    bus_a = free_port()
    a = redis_factory(*cluster_args(bus_a))
    b = redis_factory(*cluster_args())
    ca, cb = redis.Redis(port=a.port), redis.Redis(port=b.port)
    ca.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
    cb.execute_command("CLUSTER", "MEET", "127.0.0.1", a.port, bus_a)
    deadline = time.monotonic() + 10
    while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in (ca, cb)):
        assert time.monotonic() < deadline, "the two-node cluster never became ok"
        time.sleep(0.05)
    lim = GCRA(5, 10, 1)
    on_b = RedisStore.from_url(b.url, timeout_s=1, mode="function")
    d = on_b.acquire(lim, "m", T0_US)
    assert (d.allowed, d.outcome, d.error, d.charged) == (True, "fail_open", "moved", "no")
    assert [x.error for x in on_b.acquire_many(lim, ["m", "n"], [T0_US] * 2)] == ["moved"] * 2
    on_a = RedisStore.from_url(a.url, timeout_s=1, mode="function")
    assert on_a.acquire(lim, "m", T0_US) == MemoryStore().acquire(lim, "m", T0_US)


# -- dead servers: one timeout per call, not per batch ---------------------------------------------


def test_black_hole_acquire_many_takes_one_timeout(black_hole) -> None:
    """500 requests in batches of 10 against a listener that never answers: 5.05 s before (a
    new connection and a full timeout per batch), now one timeout and one connection for the
    whole call. The handshake timed out, so nothing was written: every request is charged "no"."""
    port, accepted = black_hole
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=TIMEOUT_S)
    keys = [f"k{i}" for i in range(500)]
    got, took = timed(lambda: store.acquire_many(GCRA(1, 1, 1), keys, [T0_US] * 500, batch=10))
    assert took < TIMEOUT_S + SLACK_S
    assert len(got) == 500
    assert {(d.outcome, d.error, d.charged) for d in got} == {("fail_open", "timeout", "no")}
    assert store.errors == {"timeout": 500}
    assert len(accepted) == 1
    d, took = timed(lambda: store.acquire(GCRA(1, 1, 1), "one", T0_US))
    assert took < TIMEOUT_S + SLACK_S
    assert (d.outcome, d.error, d.charged) == ("fail_open", "timeout", "no")


def test_single_call_on_a_stopped_server_may_have_run(redis_factory) -> None:
    """A call written on a live connection to a server that then stops answering: "unknown"."""
    server = redis_factory()
    store = RedisStore.from_url(server.url, timeout_s=TIMEOUT_S, failure_mode="closed")
    lim = GCRA(5, 1, 1)
    assert store.acquire(lim, "warm", T0_US).outcome == "limiter"
    os.kill(server.pid, signal.SIGSTOP)
    try:
        d, took = timed(lambda: store.acquire(lim, "u", T0_US))
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert took < TIMEOUT_S + SLACK_S
    assert (d.allowed, d.outcome, d.error, d.charged) == (
        False,
        "fail_closed",
        "timeout",
        "unknown",
    )


def test_stopped_server_mid_call_flags_what_was_written(redis_factory) -> None:
    """SIGSTOP a server the store is connected to: the batches already written may have run
    (charged "unknown"), the rest never left (charged "no"), and the call takes one timeout."""
    server = redis_factory()
    store = RedisStore.from_url(server.url, timeout_s=TIMEOUT_S, failure_mode="closed")
    lim = GCRA(1000, 1000, 1)
    assert store.acquire(lim, "warm", T0_US).outcome == "limiter"  # a pooled, live connection
    os.kill(server.pid, signal.SIGSTOP)
    try:
        got, took = timed(lambda: store.acquire_many(lim, ["s"] * 500, [T0_US] * 500, batch=10))
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert took < TIMEOUT_S + SLACK_S
    written = PIPELINE_DEPTH * 10  # two batches in flight, then the first read timed out
    assert [d.charged for d in got] == ["unknown"] * written + ["no"] * (500 - written)
    assert {(d.outcome, d.error) for d in got} == {("fail_closed", "timeout")}


def test_lost_replies_keep_the_decisions_that_arrived(redis_server, proxy_to) -> None:
    """The server runs the whole pipeline but the replies after the 15th never arrive: the 15
    answered requests keep their decisions (before, the whole batch became failure-mode
    decisions), the written ones are "unknown", the unwritten "no". "unknown" is the truth:
    the server did run them, as its state shows."""
    proxy = proxy_to(redis_server.port)
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=TIMEOUT_S)
    lim = GCRA(99, 1, 1)
    store.reset(lim, "p")
    store.acquire(lim, "warm", T0_US)
    proxy.arm(stall_after=15)
    n, batch = 50, 10
    got = store.acquire_many(lim, ["p"] * n, [T0_US + i for i in range(n)], batch=batch)
    memory = MemoryStore()
    expected = [memory.acquire(lim, "p", T0_US + i) for i in range(n)]
    assert got[:15] == expected[:15]
    # Batch 0 was read whole, so batch 2 went out behind batch 1: 30 requests were written.
    written = (15 // batch + PIPELINE_DEPTH) * batch
    assert [d.charged for d in got[15:]] == ["unknown"] * (written - 15) + ["no"] * (n - written)
    assert all(d.error == "timeout" for d in got[15:])
    direct = RedisStore.from_url(redis_server.url)
    assert direct.state_of(lim, "p") == memory_state_after(lim, written)


def memory_state_after(lim: GCRA, count: int) -> list[int]:
    memory = MemoryStore()
    for i in range(count):
        memory.acquire(lim, "p", T0_US + i)
    return list(memory.state_of(lim, "p") or [])


def test_deadline_bounds_a_slow_but_live_server(redis_server, proxy_to) -> None:
    """Each batch's replies come 60 ms late (within the 100 ms timeout): 20 batches would take
    about 1.2 s. With ``deadline_s=0.3`` the call returns near 0.3 s; what was answered stands,
    the rest are "deadline" failure-mode decisions (written: "unknown", not written: "no")."""
    proxy = proxy_to(redis_server.port)
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=TIMEOUT_S)
    lim = GCRA(999, 1, 1)
    store.reset(lim, "d")
    store.acquire(lim, "warm", T0_US)  # the code is loaded before the clock starts
    proxy.arm(delay_s=0.06)
    n = 200
    got, took = timed(
        lambda: store.acquire_many(lim, ["d"] * n, [T0_US] * n, batch=10, deadline_s=0.3)
    )
    assert took < 0.3 + SLACK_S
    answered = [d for d in got if d.charged == "yes"]
    late = got[len(answered) :]
    assert 0 < len(answered) < n
    memory = MemoryStore()
    assert answered == [memory.acquire(lim, "d", T0_US) for _ in answered]
    assert late and {d.error for d in late} == {"deadline"}
    assert {d.charged for d in late} <= {"unknown", "no"} and late[-1].charged == "no"
    assert store.errors == {"deadline": len(late)}


# -- the code flushed or reloaded in the middle of one pipeline -----------------------------------


def test_function_flush_cutting_a_pipeline(redis_server, proxy_to) -> None:
    """A second client runs FUNCTION FLUSH after exactly 25 of 100 pipelined calls: the 75 later
    calls find no function, the store reloads it and reruns them in order, and every request
    gets the decision sequential calls on MemoryStore give."""
    proxy = proxy_to(redis_server.port)
    admin = redis.Redis(port=redis_server.port)
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=2, mode="function")
    lim = GCRA(4, 20, 1)
    keys = [f"f{i % 3}" for i in range(100)]
    times = [T0_US + i * 10_000 for i in range(100)]
    for k in set(keys):
        store.reset(lim, k)
    store.acquire(lim, "warm", T0_US)
    loads = store.code_loads
    proxy.arm(cut_after=25, hook=admin.function_flush)
    got = store.acquire_many(lim, keys, times, batch=10)
    memory = MemoryStore()
    assert got == [memory.acquire(lim, k, t) for k, t in zip(keys, times, strict=True)]
    assert store.code_loads == loads + 1
    assert not store.errors


def test_code_reloaded_by_another_client_mid_pipeline(redis_server, proxy_to) -> None:
    """The function is missing when call 0 (key a) arrives and another client loads it before
    call 1 (key a again) runs. Call 0 cannot be rerun without reordering key a, so it is a
    failure-mode decision that ran nothing ("noscript_race"); calls 1 and 2 keep their
    decisions. Before, ReorderedError threw away all three although two had run."""
    proxy = proxy_to(redis_server.port)
    admin = redis.Redis(port=redis_server.port)
    library = _redis_lua.bundle().library_source
    store = RedisStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", timeout_s=2, mode="function")
    lim = GCRA(0, 1, 60)  # one request a minute
    store.acquire(lim, "warm", T0_US)
    for k in ("a", "b"):
        store.reset(lim, k)
    admin.function_flush()
    proxy.arm(cut_after=1, hook=lambda: admin.function_load(library, replace=True))
    got = store.acquire_many(lim, ["a", "a", "b"], [T0_US, T0_US + 1, T0_US + 2])
    memory = MemoryStore()
    assert (got[0].outcome, got[0].error, got[0].charged) == ("fail_open", "noscript_race", "no")
    assert got[1:] == [memory.acquire(lim, "a", T0_US + 1), memory.acquire(lim, "b", T0_US + 2)]
    assert got[1].allowed  # call 0 did not consume key a's only token
    assert store.errors == {"noscript_race": 1}


def test_code_reloaded_mid_pipeline_raises_in_raise_mode(redis_server, proxy_to) -> None:
    proxy = proxy_to(redis_server.port)
    admin = redis.Redis(port=redis_server.port)
    library = _redis_lua.bundle().library_source
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{proxy.port}/0", timeout_s=2, mode="function", failure_mode="raise"
    )
    lim = GCRA(0, 1, 60)
    store.acquire(lim, "warm", T0_US)
    admin.function_flush()
    proxy.arm(cut_after=1, hook=lambda: admin.function_load(library, replace=True))
    with pytest.raises(ReorderedError, match="'ratesim:\\{ra\\}"):
        store.acquire_many(lim, ["ra", "ra"], [T0_US, T0_US + 1])


# -- timeouts -------------------------------------------------------------------------------------

BAD_TIMEOUTS = [math.inf, -math.inf, math.nan, 0, -1, MAX_TIMEOUT_S * 2, True, "0.1", None]


@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=repr)
def test_timeouts_must_be_finite_and_bounded(redis_url: str, value: object) -> None:
    """``timeout_s=inf`` used to be accepted and die with OverflowError at the first call."""
    with pytest.raises(ValueError, match="timeout_s must be"):
        RedisStore.from_url(redis_url, timeout_s=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"client_kwargs\['socket_timeout'\] must be"):
        RedisStore.from_url(redis_url, client_kwargs={"socket_timeout": value})
    if value is None:  # deadline_s=None means "no overall deadline"
        return
    store = RedisStore.from_url(redis_url)
    with pytest.raises(ValueError, match="deadline_s must be"):
        store.acquire_many(GCRA(1, 1, 1), ["u"], [T0_US], deadline_s=value)  # type: ignore[arg-type]


def test_timeout_error_names_the_bound(redis_url: str) -> None:
    with pytest.raises(ValueError, match=r"0 < timeout_s <= 3600, got inf"):
        RedisStore.from_url(redis_url, timeout_s=float("inf"))
    store = RedisStore.from_url(redis_url, timeout_s=MAX_TIMEOUT_S)
    assert store.acquire(GCRA(1, 1, 1), "u", T0_US).outcome == "limiter"


def test_a_client_without_socket_timeout_is_warned_about(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=None, retry=Retry(NoBackoff(), 0))
    with pytest.warns(RuntimeWarning, match="no socket timeout"):
        RedisStore(client)


def test_a_client_with_an_infinite_timeout_is_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=math.inf, retry=Retry(NoBackoff(), 0))
    with pytest.raises(ValueError, match=r"the client's socket_timeout must be .* <= 3600"):
        RedisStore(client)
