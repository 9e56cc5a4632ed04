"""The packed state encoding of the Lua wrapper, and keys left in the text encoding before it.

Non-lazy state is written as the byte 0x01 then one 8-byte big-endian double per field; the
comma-separated decimal text of earlier versions is still read (and rewritten packed at the key's
next change), so state left by a previous version decides exactly as it would have.
"""

from __future__ import annotations

import struct

import pytest
import redis

from ratesim.algorithms import (
    GCRA,
    BucketedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    TokenBucket,
)
from ratesim.algorithms.base import Algorithm
from ratesim.stores import MemoryStore, _redis_lua
from ratesim.stores.redis_store import RedisStore

T0_US = 1_700_000_000_000_000

PACKED = [
    GCRA(3, 10, 1),
    TokenBucket(10, 4),
    TokenBucket(100, 4, "ticker", 0.01),
    FixedWindow(3, 0.01),
    SlidingWindowCounter(3, 0.01),
    BucketedWindow(4, 0.02, 5),
    DoubleBufferedWindow(4, 0.02, 4, 0.005),
    BucketedWindow(6, 0.3, 300),  # 600 fields: packed field by field (see pack_state)
]
MODES = ["function", "script"]


def _trace() -> list[tuple[int, int]]:
    """(time, cost) pairs with bursts, pauses and a time step backwards."""
    out = []
    t = T0_US
    for i in range(40):
        t += [0, 1, 700, 3_000, 25_000][i % 5]
        if i == 23:
            t -= 9_000
        out.append((t, 1 + (i % 7 == 3)))
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("limiter", PACKED, ids=repr)
def test_state_is_packed_and_read_back(redis_url: str, limiter: Algorithm, mode: str) -> None:
    store = RedisStore.from_url(redis_url, mode=mode)  # type: ignore[arg-type]
    memory = MemoryStore()
    for t, cost in _trace():
        assert store.acquire(limiter, "k", t, cost) == memory.acquire(limiter, "k", t, cost)
        raw = store.client.get(store.key_for(limiter, "k"))
        if raw is not None:
            size = limiter.state_size
            assert raw[:1] == _redis_lua.PACKED_TAG and len(raw) == 1 + 8 * size
            assert list(struct.unpack(f">{size}d", raw[1:])) == list(memory.state_of(limiter, "k"))
            assert store.state_of(limiter, "k") == list(memory.state_of(limiter, "k"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("limiter", PACKED, ids=repr)
def test_text_state_of_an_earlier_version_decides_the_same(
    redis_url: str, limiter: Algorithm, mode: str
) -> None:
    """Halfway through a trace the key is put back in the text encoding an earlier version
    wrote ('f0,f1,...'); every decision still equals MemoryStore's, the first change rewrites
    the key packed, and a call that changes nothing leaves the text (and its TTL) alone."""
    store = RedisStore.from_url(redis_url, mode=mode)  # type: ignore[arg-type]
    memory = MemoryStore()
    key = store.key_for(limiter, "k")
    trace = _trace()
    for t, cost in trace[:20]:
        assert store.acquire(limiter, "k", t, cost) == memory.acquire(limiter, "k", t, cost)
    state = memory.state_of(limiter, "k")
    assert state is not None
    text = ",".join(str(int(v)) for v in state)
    store.client.set(key, text, px=3_600_000)
    assert store.state_of(limiter, "k") == list(state)
    # A peek (cost 0) at the same instant changes no algorithm's state: the text stays.
    t_last = trace[19][0]
    assert store.acquire(limiter, "k", t_last, 0) == memory.acquire(limiter, "k", t_last, 0)
    if memory.state_of(limiter, "k") == state:
        assert store.client.get(key) == text.encode()
        assert store.client.pttl(key) > 3_500_000
    for t, cost in trace[20:]:
        assert store.acquire(limiter, "k", t, cost) == memory.acquire(limiter, "k", t, cost)
    raw = store.client.get(key)
    if raw is not None and raw[:1] != _redis_lua.PACKED_TAG:
        # Still text: only if no call changed the state (a full window denies everything).
        assert raw == text.encode() and memory.state_of(limiter, "k") == state
    assert store.state_of(limiter, "k") == (
        None if raw is None else list(memory.state_of(limiter, "k"))
    )


@pytest.mark.parametrize("mode", MODES)
def test_malformed_state_is_an_error_not_a_decision(redis_url: str, mode: str) -> None:
    """A key holding neither encoding (another program wrote it) raises in every failure mode,
    as before: it is never read as some state."""
    lim = GCRA(3, 10, 1)
    store = RedisStore.from_url(redis_url, mode=mode)  # type: ignore[arg-type]
    store.client.set(store.key_for(lim, "x"), "1,2,3")
    with pytest.raises(redis.ResponseError, match="does not have 2 fields"):
        store.acquire(lim, "x", T0_US)
    # 17 bytes with a wrong tag byte: not packed state either.
    store.client.set(store.key_for(lim, "y"), b"\x02" + struct.pack(">dd", 1, T0_US))
    with pytest.raises(redis.ResponseError, match="does not have 2 fields"):
        store.acquire(lim, "y", T0_US)


def test_state_of_reads_packed_state_on_a_decoding_client(redis_url: str) -> None:
    lim = GCRA(3, 10, 1)
    store = RedisStore.from_url(redis_url, client_kwargs={"decode_responses": True})
    assert store.acquire(lim, "u", T0_US).allowed
    assert store.state_of(lim, "u") == [1, T0_US + 100_000]


def test_limiters_sharing_one_function_library_do_not_share_parsed_params(
    redis_url: str,
) -> None:
    """The library caches each algorithm's last parameters: limiters of one algorithm with
    different parameters (and sizes), interleaved call by call, still decide as MemoryStore."""
    store = RedisStore.from_url(redis_url, mode="function")
    memory = MemoryStore()
    limiters = [BucketedWindow(4, 0.02, 5), BucketedWindow(2, 0.01, 2), BucketedWindow(9, 1, 10)]
    limiters += [GCRA(0, 1, 1), GCRA(5, 100, 1)]
    for i, (t, cost) in enumerate(_trace() * 2):
        lim = limiters[i % len(limiters)]
        key = f"k{i % 3}"
        assert store.acquire(lim, key, t, cost) == memory.acquire(lim, key, t, cost)
