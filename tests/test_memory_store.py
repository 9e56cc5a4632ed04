"""MemoryStore: keyed state, (limiter, key) separation, garbage collection, reset."""

from __future__ import annotations

import random

import pytest

from ratesim import GCRA, MemoryStore, TokenBucket
from ratesim.algorithms.base import Algorithm

S = 1_000_000

LIMITERS: list[Algorithm] = [
    GCRA(2, 5, 1),
    TokenBucket(5, 3),
    TokenBucket(10, 2, refill="ticker", fill_interval_s=0.1),
]


@pytest.mark.parametrize("limiter", LIMITERS, ids=repr)
def test_keys_are_independent(limiter: Algorithm) -> None:
    store = MemoryStore()
    capacity = limiter.limit
    # Exhaust key "a" at one instant: exactly `capacity` unit requests pass.
    results = [store.acquire(limiter, "a", 0).allowed for _ in range(capacity + 2)]
    assert results == [True] * capacity + [False, False]
    # Key "b" (and an int key) still has its full capacity.
    for key in ("b", 7):
        d = store.acquire(limiter, key, 0)
        assert (d.allowed, d.remaining) == (True, capacity - 1)
    assert len(store) == 3


def test_limiters_on_the_same_key_are_separate() -> None:
    strict = GCRA(0, 1, 1)
    loose = GCRA(9, 1, 1)
    bucket = TokenBucket(1, 2)
    store = MemoryStore()
    assert store.acquire(strict, "user", 0).allowed
    assert not store.acquire(strict, "user", 0).allowed
    assert [store.acquire(loose, "user", 0).allowed for _ in range(10)] == [True] * 10
    assert store.acquire(bucket, "user", 0, 2).allowed
    assert store.state_of(strict, "user") != store.state_of(loose, "user")
    assert len(store) == 3


def test_store_decision_matches_step_on_own_state() -> None:
    rng = random.Random(5)
    store = MemoryStore()
    for limiter in LIMITERS:
        state = limiter.new_state()
        now = 0
        for _ in range(200):
            now += rng.choice([0, 1_000, 50_000, 300_000])
            cost = rng.randint(0, 3)
            assert store.acquire(limiter, "k", now, cost) == limiter.step(state, now, cost)
        assert store.state_of(limiter, "k") == state


@pytest.mark.parametrize("limiter", LIMITERS, ids=repr)
def test_reset_forgets_the_key(limiter: Algorithm) -> None:
    store = MemoryStore()
    while store.acquire(limiter, "k", 0).allowed:
        pass
    store.acquire(limiter, "other", 0)
    store.reset(limiter, "k")
    assert store.state_of(limiter, "k") is None
    assert store.state_of(limiter, "other") is not None
    d = store.acquire(limiter, "k", 0)
    assert (d.allowed, d.remaining) == (True, limiter.limit - 1)
    store.reset(limiter, "never-seen")  # like DEL on a missing key: no error


def test_full_collect_drops_exactly_the_expired_keys() -> None:
    """GCRA 5 at rest, 1/s: one request at t_i = i * 10 ms leaves TAT t_i + 1 s. With a 1 s
    grace, ``collect(now)`` drops the keys with t_i + 1 s <= now - 1 s [derived]."""
    gcra = GCRA(4, 1, 1)
    store = MemoryStore(grace_us=S, gc_every=10**9)
    for i in range(1000):
        store.acquire(gcra, i, i * 10_000)
    now = 999 * 10_000
    expected_dropped = [i for i in range(1000) if i * 10_000 + S <= now - S]
    assert len(expected_dropped) == 800
    assert store.collect(now) == 800
    assert len(store) == 200
    assert all(store.state_of(gcra, i) is None for i in expected_dropped)
    assert all(store.state_of(gcra, i) is not None for i in range(800, 1000))


def test_token_bucket_keys_expire_when_full_and_rate_zero_never() -> None:
    tb = TokenBucket(10, 2)
    frozen = TokenBucket(0, 2)
    store = MemoryStore(grace_us=0, gc_every=10**9)
    store.acquire(tb, "k", 0, 2)  # full again after 200 ms
    store.acquire(frozen, "k", 0, 1)
    assert store.collect(199_999) == 0
    assert store.collect(200_000) == 1
    assert store.state_of(tb, "k") is None
    assert store.collect(10**15) == 0
    assert store.state_of(frozen, "k") is not None


def test_idle_keys_do_not_accumulate() -> None:
    """A million-user style run: 50k distinct users, 100 new ones per second, each seen once.

    [derived] GCRA(4, 1, 1) leaves a TAT 1 s ahead, so with a 1 s grace a key is collectable
    2 s after its request: at most A = 201 keys are not collectable at any time. The amortised
    sweep must keep the store at O(A + gc_every) keys (bound used: 4 * (A + gc_every)), not let
    dead keys pile up with the number of users seen.
    """
    gcra = GCRA(4, 1, 1)
    gc_every = 256
    store = MemoryStore(grace_us=S, gc_every=gc_every)
    live_bound = 2 * S // 10_000 + 1
    peak = 0
    for i in range(50_000):
        store.acquire(gcra, f"user:{i}", i * 10_000)
        peak = max(peak, len(store))
    assert peak <= 4 * (live_bound + gc_every)
    # And a full sweep leaves exactly the keys that are still live.
    store.collect(49_999 * 10_000)
    assert len(store) == live_bound - 1


def _skewed_traffic(seed: int, n: int, grace_us: int) -> list[tuple[int, int, int, int]]:
    """(limiter index, key, now_us, cost): a forward clock with lags of up to ``grace_us``
    behind the latest time seen (several nodes with skewed clocks sharing one store)."""
    rng = random.Random(seed)
    latest = 0
    out = []
    for _ in range(n):
        latest += rng.choice([0, 1_000, 20_000, 150_000, 700_000, 3 * S])
        lag = rng.choice([0, 0, 0, rng.randint(0, grace_us), grace_us])
        out.append(
            (rng.randrange(len(LIMITERS)), rng.randrange(12), latest - lag, rng.randint(0, 3))
        )
    return out


@pytest.mark.parametrize("seed", range(6))
def test_collection_never_changes_a_decision(seed: int) -> None:
    grace_us = 500_000
    eager = MemoryStore(grace_us=grace_us, gc_every=1)
    never = MemoryStore(grace_us=grace_us, gc_every=10**9)
    dropped = 0
    for i, (li, key, now, cost) in enumerate(_skewed_traffic(seed, 3000, grace_us)):
        limiter = LIMITERS[li]
        assert eager.acquire(limiter, key, now, cost) == never.acquire(limiter, key, now, cost)
        if i % 97 == 0:
            dropped += eager.collect(now)
    assert dropped > 0  # the comparison really exercised collected keys
    assert len(eager) < len(never)


def test_invalid_store_parameters() -> None:
    with pytest.raises(ValueError, match="grace_us"):
        MemoryStore(grace_us=-1)
    with pytest.raises(ValueError, match="gc_every"):
        MemoryStore(gc_every=0)
