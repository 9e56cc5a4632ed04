"""The Redis store logs one warning per streak of "server unreachable" failure-mode decisions.

Real servers only: a port where nothing listens, and a private redis-server stopped and
started again (tests/conftest.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from conftest import RedisServer, free_port

from ratesim.algorithms import GCRA
from ratesim.stores._redis_streak import LOGGER_NAME
from ratesim.stores.redis_store import RedisStore

LIMITER = GCRA(max_burst=4, count_per_period=10, period_s=1)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER_NAME and r.levelno == logging.WARNING
    ]


def test_a_closed_port_logs_once_per_streak_not_once_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0")
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        decisions = [store.acquire(LIMITER, "u", t * 1000) for t in range(5)]
    assert [d.outcome for d in decisions] == ["fail_open"] * 5
    logged = _warnings(caplog)
    assert len(logged) == 1
    assert f"127.0.0.1:{port}" in logged[0] and "unreachable" in logged[0]
    assert "fail_open" in logged[0]


def test_the_count_is_logged_when_the_server_answers_again(
    caplog: pytest.LogCaptureFixture, redis_factory: Callable[..., RedisServer]
) -> None:
    server = redis_factory()
    store = RedisStore.from_url(f"redis://127.0.0.1:{server.port}/0", failure_mode="closed")
    assert store.acquire(LIMITER, "u", 0).outcome == "limiter"
    server.stop()
    with caplog.at_level(logging.WARNING, logger=LOGGER_NAME):
        down = [store.acquire(LIMITER, "u", 1000 * t) for t in range(3)]
        assert [d.outcome for d in down] == ["fail_closed"] * 3
        assert len(_warnings(caplog)) == 1 and "fail_closed" in _warnings(caplog)[0]
        server.start()
        back = store.acquire(LIMITER, "u", 10_000)
        assert back.outcome == "limiter"
        store.acquire(LIMITER, "u", 20_000)  # a second answered call logs nothing more
    logged = _warnings(caplog)
    assert len(logged) == 2
    assert "after 3 failure-mode decisions" in logged[1]
