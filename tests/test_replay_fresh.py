"""A second replay on the same Redis keys: said, and avoidable with a fresh prefix."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

from ratesim.algorithms.token_bucket import TokenBucket
from ratesim.replay import compare, replay
from ratesim.stores.memory import MemoryStore
from ratesim.stores.redis_store import RedisStore, fresh_prefix

# a bucket of 3 hit 5 times at one instant: 3 admitted from empty state, none from a drained one
LIMITER = TokenBucket(1, 3)  # 1 token per s, burst 3
REQUESTS = pd.DataFrame({"time_us": [1_000_000] * 5, "key": ["u"] * 5})


def test_a_second_replay_on_the_same_keys_warns_and_differs(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, timeout_s=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = replay(REQUESTS, LIMITER, store)  # empty server: no warning
    assert int(first["allowed"].sum()) == 3
    with pytest.warns(UserWarning, match="already holds keys under prefix 'ratesim:'"):
        second = replay(REQUESTS, LIMITER, store)
    assert int(second["allowed"].sum()) == 0


def test_a_fresh_prefix_replays_from_empty_state(redis_url: str) -> None:
    replay(REQUESTS, LIMITER, RedisStore.from_url(redis_url, timeout_s=5))
    a, b = fresh_prefix(), fresh_prefix()
    assert a != b and a.startswith("ratesim:") and a.endswith(":")
    fresh = RedisStore.from_url(redis_url, timeout_s=5, prefix=a)
    assert not fresh.holds_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = replay(REQUESTS, LIMITER, fresh)
    assert compare(again, replay(REQUESTS, LIMITER, MemoryStore())).identical
    assert fresh.holds_state()


def test_glob_characters_in_a_prefix_match_only_themselves(redis_url: str) -> None:
    replay(REQUESTS, LIMITER, RedisStore.from_url(redis_url, timeout_s=5, prefix="rs*:"))
    assert not RedisStore.from_url(redis_url, timeout_s=5, prefix="rs?:").holds_state()
    assert RedisStore.from_url(redis_url, timeout_s=5, prefix="rs*:").holds_state()
