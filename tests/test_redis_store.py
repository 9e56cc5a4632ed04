"""RedisStore behaviour on a real redis-server: redis-cell reply vectors, keys and TTLs, the two
time sources, the drift guard, delivery modes, redis-cell detection and input validation.

The CL.THROTTLE vectors are semantics.md §8.1-8.4 (redis-cell's own expected replies), fed
through ``RedisStore(time_source="client")`` with the vector's clock.
"""

from __future__ import annotations

import time
import warnings

import pytest
import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from ratesim.algorithms import (
    GCRA,
    BucketedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from ratesim.algorithms.base import Algorithm
from ratesim.stores import MemoryStore
from ratesim.stores.redis_store import (
    RedisStore,
    cell_reply_to_decision,
    client_may_rerun_scripts,
    command_exists,
)

T0_US = 1_700_000_000_000_000  # an arbitrary epoch-like t0: 16-digit microsecond stamps

# -- redis-cell vectors (semantics.md §8) -------------------------------------------------------

# §8.1 it_rate_limits: CL.THROTTLE foo 4 1 1 <q>; (t_ms, q, reply)
VECTOR_8_1 = [
    (0, 6, (1, 5, 5, -1, 0)),
    (0, 1, (0, 5, 4, -1, 1)),
    (0, 1, (0, 5, 3, -1, 2)),
    (0, 1, (0, 5, 2, -1, 3)),
    (0, 1, (0, 5, 1, -1, 4)),
    (0, 1, (0, 5, 0, -1, 5)),
    (0, 1, (1, 5, 0, 1, 5)),
    (3000, 1, (0, 5, 2, -1, 3)),
    (3100, 1, (0, 5, 1, -1, 4)),
    (4000, 1, (0, 5, 1, -1, 4)),
    (8000, 1, (0, 5, 4, -1, 1)),
    (9500, 1, (0, 5, 4, -1, 1)),
    (9500, 0, (0, 5, 4, -1, 1)),
    (9500, 2, (0, 5, 2, -1, 3)),
    (9500, 5, (1, 5, 2, 3, 3)),
]


@pytest.mark.parametrize("mode", ["function", "script"])
def test_cell_vector_8_1(redis_url: str, mode: str) -> None:
    store = RedisStore.from_url(redis_url, mode=mode)
    limiter = GCRA(4, 1, 1)
    for t_ms, q, reply in VECTOR_8_1:
        d = store.acquire(limiter, "foo", T0_US + t_ms * 1000, q)
        assert d.throttle_reply() == reply, (t_ms, q)


@pytest.mark.parametrize("spacing_us", [0, 1])
def test_cell_vector_8_2_readme(redis_url: str, spacing_us: int) -> None:
    """``CL.THROTTLE key 15 30 60 1`` x 17: call k -> [0,16,16-k,-1,2k], call 17 -> [1,16,0,2,32].

    With 1 us between calls (a real server) reset_after is ``2k - delta``, still rounding up to
    ``2k``, and call 17's retry_after ``2 - delta`` still rounds up to 2.
    """
    store = RedisStore.from_url(redis_url)
    limiter = GCRA(15, 30, 60)
    for k in range(1, 17):
        d = store.acquire(limiter, f"readme{spacing_us}", T0_US + k * spacing_us)
        assert d.throttle_reply() == (0, 16, 16 - k, -1, 2 * k)
    d = store.acquire(limiter, f"readme{spacing_us}", T0_US + 17 * spacing_us)
    assert d.throttle_reply() == (1, 16, 0, 2, 32)


def test_cell_vector_8_3_e2e(redis_url: str) -> None:
    """``CL.THROTTLE user123 0 1 2 1``: allowed, limited right after, allowed again 2 s later."""
    store = RedisStore.from_url(redis_url)
    limiter = GCRA(0, 1, 2)
    assert store.acquire(limiter, "user123", T0_US).throttle_reply() == (0, 1, 0, -1, 2)
    assert store.acquire(limiter, "user123", T0_US + 300).throttle_reply() == (1, 1, 0, 2, 2)
    assert store.acquire(limiter, "user123", T0_US + 2_000_300).throttle_reply() == (0, 1, 0, -1, 2)


def test_cell_vectors_8_4(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    # Maintainer's example (issue #37).
    assert store.acquire(GCRA(5, 5, 3600), "u", T0_US).throttle_reply() == (0, 6, 5, -1, 720)
    # T = 2 us, quantity 2: the 4 us TTL is truncated to 0 s (sub-millisecond).
    assert store.acquire(GCRA(4, 500_000, 1), "f", T0_US, 2).throttle_reply() == (0, 5, 3, -1, 0)
    # T = 60 ms: reset 60 ms rounds up to 1 s.
    assert store.acquire(GCRA(1000, 1000, 60), "g", T0_US).throttle_reply() == (
        0,
        1001,
        1000,
        -1,
        1,
    )
    # 0 1 2 at t=0, then t=1.9995 s: the 0.5 ms wait is under 1 ms and rounds to 0.
    lim = GCRA(0, 1, 2)
    assert store.acquire(lim, "h", T0_US).throttle_reply() == (0, 1, 0, -1, 2)
    assert store.acquire(lim, "h", T0_US + 1_999_500).throttle_reply() == (1, 1, 0, 0, 0)
    # 1 2 1: three calls at t=0, then t=1.1 s.
    lim = GCRA(1, 2, 1)
    got = [store.acquire(lim, "i", T0_US).throttle_reply() for _ in range(3)]
    assert got == [(0, 2, 1, -1, 1), (0, 2, 0, -1, 1), (1, 2, 0, 1, 1)]
    assert store.acquire(lim, "i", T0_US + 1_100_000).throttle_reply() == (0, 2, 1, -1, 1)


def test_cell_reply_mapping() -> None:
    """A CL.THROTTLE reply maps to a Decision whose throttle_reply() gives it back."""
    for _t, _q, reply in VECTOR_8_1:
        assert cell_reply_to_decision(list(reply)).throttle_reply() == reply


def test_cell_detection_on_plain_redis(redis_url: str) -> None:
    """The test server has no redis-cell: detection must say so (and must see a real command)."""
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    assert command_exists(client, "GET")
    assert not command_exists(client, "CL.THROTTLE")
    store = RedisStore(client, time_source="redis", use_cell=True)
    assert not store.has_cell()
    with pytest.raises(ValueError, match="CL.THROTTLE"):
        store.acquire(GCRA(4, 1, 1), "k")
    auto = RedisStore(client, time_source="redis", use_cell="auto")
    d = auto.acquire(GCRA(4, 1, 1), "k")
    assert d.allowed and d.outcome == "limiter" and d.remaining == 4
    with pytest.raises(ValueError, match="use_cell=True needs time_source='redis'"):
        RedisStore(client, use_cell=True)


# -- keys and TTLs ------------------------------------------------------------------------------

ALL_LIMITERS: list[Algorithm] = [
    GCRA(4, 10, 1),
    TokenBucket(10, 5),
    TokenBucket(0, 3),  # never refills: the TTL must still be finite
    SlidingWindowLog(5, 1),
    FixedWindow(5, 1),
    SlidingWindowCounter(5, 1),
    BucketedWindow(5, 1, 4),
    DoubleBufferedWindow(5, 1, 4, 0.5),
]


@pytest.mark.parametrize("limiter", ALL_LIMITERS, ids=repr)
def test_keys_carry_hash_tag_and_ttl(redis_url: str, limiter: Algorithm) -> None:
    floor_us = 5_000_000
    store = RedisStore.from_url(redis_url, ttl_floor_us=floor_us)
    memory = MemoryStore()
    now = int(time.time() * 1e6)  # client time close to real time, so PTTL is meaningful
    for i in range(3):
        store.acquire(limiter, "user:42", now + i, 1)
        memory.acquire(limiter, "user:42", now + i, 1)
    key = store.key_for(limiter, "user:42")
    assert key.startswith("ratesim:{user:42}:" + limiter.name + ":")
    assert key_slot(key.encode()) == key_slot(b"user:42")
    state = memory.state_of(limiter, "user:42")
    assert state is not None
    assert store.state_of(limiter, "user:42") == list(state)
    live_ms = max(limiter.expires_at_us(state) - (now + 2), 0) / 1000
    pttl = store.client.pttl(key)
    # Never shorter than the state's life plus the floor (minus the test's own run time).
    assert pttl >= min(live_ms, 2**50 / 1000) + floor_us / 1000 - 2000
    assert pttl <= min(live_ms, 2**50 / 1000) + floor_us / 1000 + 1


def test_two_limiters_on_one_key_do_not_collide(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    a, b = GCRA(0, 1, 60), GCRA(1, 1, 60)
    assert store.key_for(a, "u") != store.key_for(b, "u")
    assert key_slot(store.key_for(a, "u").encode()) == key_slot(store.key_for(b, "u").encode())
    assert store.acquire(a, "u", T0_US).allowed
    assert not store.acquire(a, "u", T0_US).allowed
    # b has its own state: its burst of 2 is untouched by a's traffic.
    assert store.acquire(b, "u", T0_US).allowed and store.acquire(b, "u", T0_US).allowed


def test_unchanged_state_is_not_written(redis_url: str) -> None:
    """A peek on a fresh key and a limited request store nothing new (no write, no TTL reset)."""
    store = RedisStore.from_url(redis_url)
    lim = FixedWindow(1, 60)
    assert store.acquire(lim, "p", T0_US, 0).allowed
    assert store.client.exists(store.key_for(lim, "p")) == 0
    assert store.acquire(lim, "p", T0_US, 1).allowed
    before = store.client.get(store.key_for(lim, "p"))
    assert not store.acquire(lim, "p", T0_US + 5, 1).allowed
    assert store.client.get(store.key_for(lim, "p")) == before


# -- time sources -------------------------------------------------------------------------------


def redis_time_us(client: redis.Redis) -> int:
    sec, usec = client.time()
    return int(sec) * 1_000_000 + int(usec)


def test_drift_guard(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, max_drift_us=5_000_000)
    lim = GCRA(0, 1, 1)
    server_now = redis_time_us(store.client)
    d = store.acquire(lim, "d", server_now + 60_000_000)
    assert (d.allowed, d.outcome) == (False, "drift")
    assert store.client.exists(store.key_for(lim, "d")) == 0  # nothing written
    d = store.acquire(lim, "d", server_now - 60_000_000)
    assert d.outcome == "drift"
    d = store.acquire(lim, "d", server_now + 1_000_000)
    assert (d.allowed, d.outcome) == (True, "limiter")
    many = store.acquire_many(lim, ["e", "e"], [server_now + 10**9, server_now + 100])
    assert [x.outcome for x in many] == ["drift", "limiter"]


def test_redis_time_obeys_arrival_curve(redis_url: str) -> None:
    """Real time, Redis TIME: over any span, admitted <= limit + span / T (GCRA's bound)."""
    lim = GCRA(9, 200, 1)  # limit 10, T = 5 ms
    t_us = lim.emission_interval_us
    store = RedisStore.from_url(redis_url, time_source="redis", timeout_s=2)
    admitted: list[tuple[float, float]] = []  # (sent, received) in monotonic seconds
    total = 0
    end = time.monotonic() + 1.2
    while time.monotonic() < end:
        sent = time.monotonic()
        if store.acquire(lim, "rt").allowed:
            admitted.append((sent, time.monotonic()))
        total += 1
    span_s = admitted[-1][1] - admitted[0][0]
    assert total > 3 * len(admitted)  # the limiter was actually saturated
    assert len(admitted) >= 0.7 * (span_s * 1e6 / t_us)  # and time did advance (Redis TIME)
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            # Both decisions happened inside [sent_i, received_j]; +1 absorbs the wall vs
            # monotonic clock difference over a second.
            bound = lim.limit + (admitted[j][1] - admitted[i][0]) * 1e6 / t_us + 1
            assert j - i + 1 <= bound, (i, j)
    # The state holds a TAT on Redis' clock, not on any caller's.
    state = store.state_of(lim, "rt")
    assert state is not None
    assert abs(state[1] - redis_time_us(store.client)) < 2_000_000
    # Batches use Redis TIME too.
    assert len(store.acquire_many(lim, ["rt2"] * 20)) == 20


def test_redis_time_sliding_log_window_bound(redis_url: str) -> None:
    """Real time, Redis TIME: a sliding log admits at most ``limit`` in any window."""
    lim = SlidingWindowLog(8, 0.1)
    store = RedisStore.from_url(redis_url, time_source="redis", timeout_s=2)
    admitted: list[tuple[float, float]] = []
    total = 0
    end = time.monotonic() + 0.8
    while time.monotonic() < end:
        sent = time.monotonic()
        if store.acquire(lim, "sw").allowed:
            admitted.append((sent, time.monotonic()))
        total += 1
    span_s = admitted[-1][1] - admitted[0][0]
    assert total > 3 * len(admitted)
    assert len(admitted) >= 0.7 * lim.limit * span_s / lim.window_s
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            # Both decisions fall inside [sent_i, received_j]; when that is shorter than the
            # window (with 2 ms for wall vs monotonic clocks) they share a window.
            if admitted[j][1] - admitted[i][0] < lim.window_s - 0.002:
                assert j - i + 1 <= lim.limit, (i, j)


# -- delivery, client settings, validation ------------------------------------------------------


def test_auto_mode_uses_functions_on_redis_7(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url)
    store.acquire(GCRA(1, 1, 1), "m", T0_US)  # (the mode is known before it too: test_redis_mode)
    assert store.mode == "function"
    libs = store.client.function_list()
    names = [dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"] for lib in libs]
    assert len(names) == 1 and names[0].startswith(b"ratesim_")


def test_retry_warning() -> None:
    # No server needed: only the client's settings are inspected.
    risky = redis.Redis(port=1)  # redis-py 8 default: 10 retries on timeouts
    assert client_may_rerun_scripts(risky)
    with pytest.warns(RuntimeWarning, match="run a rate-limit script twice"):
        RedisStore(risky)
    safe = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
    assert not client_may_rerun_scripts(safe)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RedisStore(safe)
        store = RedisStore.from_url("redis://127.0.0.1:1/0", timeout_s=0.05)
    assert not client_may_rerun_scripts(store.client)
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 0.05 and kwargs["socket_connect_timeout"] == 0.05
    with pytest.warns(RuntimeWarning, match="twice"):
        RedisStore.from_url("redis://127.0.0.1:1/0", client_kwargs={"retry": Retry(NoBackoff(), 3)})


@pytest.mark.parametrize("client_kwargs", [{"protocol": 2}, {"decode_responses": True}])
def test_client_flavours_decide_the_same(redis_url: str, client_kwargs: dict[str, object]) -> None:
    """RESP2 (Redis < 6 needs it) and decoded replies give the same decisions as memory."""
    store = RedisStore.from_url(redis_url, client_kwargs=client_kwargs)
    memory = MemoryStore()
    lim = SlidingWindowLog(3, 1)
    times = [T0_US + i * 100_000 for i in range(8)]
    assert [store.acquire(lim, "c", t) for t in times[:4]] == [
        memory.acquire(lim, "c", t) for t in times[:4]
    ]
    assert store.acquire_many(lim, ["c"] * 4, times[4:]) == [
        memory.acquire(lim, "c", t) for t in times[4:]
    ]


def test_validation(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0))
    with pytest.raises(ValueError, match="time_source"):
        RedisStore(client, time_source="wall")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failure_mode"):
        RedisStore(client, failure_mode="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mode"):
        RedisStore(client, mode="eval")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_drift_us"):
        RedisStore(client, max_drift_us=-1)
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(client, prefix="{all}:")
    with pytest.raises(ValueError, match="ttl_floor_us"):
        RedisStore(client, ttl_floor_us=10)
    with pytest.raises(ValueError, match="timeout_s"):
        RedisStore.from_url(redis_url, timeout_s=0)
    client_store = RedisStore(client)
    redis_store = RedisStore(client, time_source="redis")
    lim = GCRA(1, 1, 1)
    with pytest.raises(ValueError, match="now_us is required"):
        client_store.acquire(lim, "k")
    with pytest.raises(ValueError, match="now_us must be None"):
        redis_store.acquire(lim, "k", T0_US)
    with pytest.raises(ValueError, match="now_us"):
        client_store.acquire(lim, "k", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"2\*\*52"):
        client_store.acquire(lim, "k", 2**52)
    with pytest.raises(ValueError, match=r"2\*\*52"):
        client_store.acquire_many(lim, ["k"], [-(2**52)])
    with pytest.raises(ValueError, match="cost"):
        client_store.acquire(lim, "k", T0_US, -1)
    with pytest.raises(ValueError, match="key"):
        client_store.acquire(lim, ("a", 1), T0_US)
    with pytest.raises(ValueError, match="limiter"):
        client_store.acquire("gcra", "k", T0_US)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="now_us_list"):
        client_store.acquire_many(lim, ["a", "b"], [T0_US])
    with pytest.raises(ValueError, match="costs"):
        client_store.acquire_many(lim, ["a"], [T0_US], [1, 1])
    with pytest.raises(ValueError, match="batch"):
        client_store.acquire_many(lim, ["a"], [T0_US], batch=0)


def test_time_going_backwards_is_not_an_error(redis_url: str) -> None:
    """A lagging caller gets the kernel's documented answer (less capacity), not an exception."""
    store = RedisStore.from_url(redis_url)
    memory = MemoryStore()
    lim = GCRA(2, 10, 1)
    times = [T0_US, T0_US + 300_000, T0_US - 2_000_000, T0_US + 100_000]
    got = [store.acquire(lim, "b", t) for t in times]
    assert got == [memory.acquire(lim, "b", t) for t in times]
    # The lagging call sees the TAT further away: fewer remaining than the leading one had.
    assert got[2].remaining < got[1].remaining


@pytest.mark.parametrize(
    "limiter", [GCRA(2, 1000, 1), SlidingWindowLog(3, 0.003), TokenBucket(1000, 3)], ids=repr
)
def test_decisions_do_not_depend_on_key_expiry(redis_url: str, limiter: Algorithm) -> None:
    """A replay slower than real time: with a 20 ms TTL floor Redis drops each key between
    bursts, yet every decision equals MemoryStore's (the state had expired on the caller's
    clock too, and expired state decides like an absent key). Within a burst the calls are
    closer in real time than the floor, as the floor requires."""
    store = RedisStore.from_url(redis_url, ttl_floor_us=20_000)
    memory = MemoryStore()
    key = store.key_for(limiter, "slow")
    vanished = 0
    for burst in range(5):
        t = T0_US + burst * 10_000  # 10 ms apart on the caller's clock...
        for i in range(4):
            assert store.acquire(limiter, "slow", t + i) == memory.acquire(limiter, "slow", t + i)
        time.sleep(0.15)  # ...but 150 ms apart in real time
        vanished += store.client.exists(key) == 0
    assert vanished == 5


def test_lua_integer_helpers_are_exact(redis_url: str) -> None:
    """The prelude's floor division / modulo / formatting agree with Python's on integers up to
    2**53, where the double quotient alone is off by one and tostring() would print 1e+15."""
    from ratesim.stores import _redis_lua

    # The prelude itself: an algorithm's script keeps only the helpers its call reaches.
    prelude = _redis_lua._read("prelude.lua")
    script = prelude + (
        "local out = {}\n"
        "for i = 1, #ARGV, 2 do\n"
        "  local a, b = tonumber(ARGV[i]), tonumber(ARGV[i + 1])\n"
        "  out[#out + 1] = fmt(fdiv(a, b)) .. ':' .. fmt(fmod(a, b))\n"
        "end\n"
        "return table.concat(out, ',')\n"
    )
    pairs = [
        (2**53 - 1, 3),
        (2**53 - 2, 7),
        (9_007_199_254_740_990, 1_000_000),
        (1_700_000_000_123_457, 1000),
        (4_503_599_627_370_497, 2),
        (-1, 10),
        (-(2**52) - 3, 1_000_003),
        (10**15, 1),
        (999, 1000),
        (0, 5),
    ]
    args = [str(x) for pair in pairs for x in pair]
    client = redis.Redis.from_url(redis_url)
    got = client.eval(script, 0, *args).decode().split(",")
    assert got == [f"{a // b}:{a % b}" for a, b in pairs]


def test_every_store_algorithm_has_a_lua_port() -> None:
    """Each rate algorithm ships a Lua port (registered as a function and as a script), and the
    Python side knows which ports keep packed state."""
    from ratesim.algorithms import (
        CalendarWindow,
        CountingFixedWindow,
        NginxLeakyBucket,
        ReserveTokenBucket,
        UniformPacer,
        WarmUpBucket,
    )
    from ratesim.stores import _redis_lua

    names = {cls.name for cls in (GCRA, TokenBucket, SlidingWindowLog, FixedWindow,
                                  SlidingWindowCounter, BucketedWindow, DoubleBufferedWindow)}  # fmt: skip
    # The gateway algorithms of the importers (issue 12).
    names |= {cls.name for cls in (NginxLeakyBucket, CalendarWindow, CountingFixedWindow,
                                   WarmUpBucket, ReserveTokenBucket, UniformPacer)}  # fmt: skip
    bundle = _redis_lua.bundle()
    assert set(bundle.functions) == names == set(bundle.scripts)
    for name in names:
        assert f"K['{name}']" in bundle.library_source
    lazy = {
        name
        for name, fname in _redis_lua.LUA_FILES.items()
        if "lazy = true" in _redis_lua._read(fname).split(f"K['{name}']")[1].split("K['")[0]
    }
    assert lazy == _redis_lua.LAZY_STATE
