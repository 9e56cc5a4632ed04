"""``RedisStore.mode`` says how the store delivers its code before the first call (issue 14)."""

from __future__ import annotations

import redis
from conftest import free_port

from ratesim import GCRA, MemoryStore
from ratesim.stores import RedisStore


def _server_major(url: str) -> int:
    return int(str(redis.Redis.from_url(url).info("server")["redis_version"]).split(".")[0])


def test_an_auto_store_knows_its_mode_before_the_first_call(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, timeout_s=2)
    # Redis Functions (FCALL) exist from Redis 7 on; before that the store uses EVALSHA.
    expected = "function" if _server_major(redis_url) >= 7 else "script"
    assert store.mode == expected
    # the mode read first is the one the calls use, and the decisions are the model's
    lim = GCRA(2, 10, 1)
    assert store.acquire(lim, "k", 5_000_000) == MemoryStore().acquire(lim, "k", 5_000_000)
    assert store.mode == expected


def test_an_explicit_mode_is_never_probed(redis_url: str) -> None:
    assert RedisStore.from_url(redis_url, mode="script").mode == "script"


def test_an_unreachable_server_leaves_the_mode_unknown_without_raising() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.05)
    assert store.mode == "auto"
