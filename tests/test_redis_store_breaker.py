"""``RedisStore(store_breaker=...)`` against a real redis-server that is stopped and restarted:
the simulation's store-path breaker (same parameters, same state machine) on a real client.

The breaker's clock is injected (integer µs) so the cooldown is exact; the calls are real."""

from __future__ import annotations

import pytest

from ratesim.algorithms import GCRA
from ratesim.policy import StoreBreakerSpec
from ratesim.stores.redis_store import RedisStore

T0_US = 1_700_000_000_000_000
COOLDOWN_US = 1_000_000


class Clock:
    """A monotonic clock the test moves by hand (µs)."""

    def __init__(self) -> None:
        self.t = 0

    def __call__(self) -> int:
        return self.t


def test_breaker_opens_on_a_stopped_server_and_probes_after_the_cooldown(redis_factory) -> None:
    server = redis_factory()
    clock = Clock()
    store = RedisStore.from_url(
        server.url,
        timeout_s=0.2,
        failure_mode="closed",
        store_breaker={"failures": 3, "cooldown_ms": COOLDOWN_US / 1000},
        _breaker_clock=clock,
    )
    assert store.breaker is not None and store.breaker.spec == StoreBreakerSpec(
        failures=3, cooldown_ms=1000
    )
    lim = GCRA(100, 100, 60)
    assert store.acquire(lim, "u", T0_US).outcome == "limiter"
    server.stop()
    # three refused calls, each a failure-mode decision of kind "connection": then it opens
    for _ in range(3):
        d = store.acquire(lim, "u", T0_US)
        assert (d.outcome, d.error) == ("fail_closed", "connection")
    assert store.breaker.opens == 1
    # restart the server: an open breaker still calls nothing (a call would be answered now)
    server.start()
    clock.t = COOLDOWN_US - 1
    d = store.acquire(lim, "u", T0_US)
    assert (d.allowed, d.outcome, d.error, d.charged) == (
        False,
        "fail_closed",
        "breaker_open",
        "no",
    )
    many = store.acquire_many(lim, ["a", "b"], [T0_US] * 2)
    assert [x.error for x in many] == ["breaker_open"] * 2
    assert store.errors["breaker_open"] == 3 and store.errors["connection"] == 3
    assert store.breaker.short_circuited == 2  # calls refused: an acquire_many is one call
    # the cooldown is over: one call probes, the server answers, the breaker closes
    clock.t = COOLDOWN_US
    assert store.acquire(lim, "u", T0_US).outcome == "limiter"
    assert store.breaker.open_us() == COOLDOWN_US  # opened at 0, closed by the probe's answer
    assert [x.outcome for x in store.acquire_many(lim, ["a", "b"], [T0_US] * 2)] == ["limiter"] * 2
    # down again: three more failures open it; a probe that fails opens it from its own time
    server.stop()
    clock.t = 5 * COOLDOWN_US
    for _ in range(3):
        assert store.acquire(lim, "u", T0_US).error == "connection"
    assert store.breaker.opens == 2
    clock.t = 6 * COOLDOWN_US
    assert store.acquire(lim, "u", T0_US).error == "connection"  # the probe
    clock.t = 7 * COOLDOWN_US - 1
    assert store.acquire(lim, "u", T0_US).error == "breaker_open"
    assert store.breaker.opens == 2  # a failed probe reopens; it is not a new opening
    assert store.errors["connection"] == 7


def test_without_a_breaker_every_call_tries_the_server(redis_factory) -> None:
    server = redis_factory()
    store = RedisStore.from_url(server.url, timeout_s=0.2, failure_mode="open")
    assert store.breaker is None
    server.stop()
    for _ in range(5):
        assert store.acquire(GCRA(1, 1, 1), "u", T0_US).error == "connection"
    assert store.errors["connection"] == 5


def test_store_breaker_arguments_are_checked(redis_factory) -> None:
    server = redis_factory()
    with pytest.raises(ValueError, match="failure_mode='open' or 'closed'"):
        RedisStore.from_url(
            server.url, failure_mode="raise", store_breaker={"failures": 1, "cooldown_ms": 1}
        )
    with pytest.raises(ValueError, match="failures"):
        RedisStore.from_url(server.url, store_breaker={"failures": 0, "cooldown_ms": 1})
    with pytest.raises(ValueError, match="store_breaker must be"):
        RedisStore.from_url(server.url, store_breaker=3)
