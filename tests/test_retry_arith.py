"""Retry arithmetic (ratesim.model.retry) against values computed here from the definitions."""

import math

from numba import njit

from ratesim.model import retry


def test_retry_after_rounds_up_to_whole_seconds() -> None:
    for wait in (0, -5, 1, 999_999, 1_000_000, 1_000_001, 2_500_000):
        assert retry.retry_after_s(wait) == max(0, math.ceil(wait / 1_000_000))


def test_backoff_full_jitter() -> None:
    base, cap = 100_000, 1_000_000
    for attempt in range(2, 12):
        ceiling = min(cap, base * 2 ** (attempt - 2))
        for u in (0, 1, 1 << 23, (1 << 24) - 1):
            assert retry.backoff_delay_us(base, cap, attempt, u) == ceiling * u // 2**24
    assert retry.backoff_delay_us(base, cap, 5, (1 << 24) - 1) < 800_000


def test_budget_and_deadline() -> None:
    # 20 %: after 4 first attempts, a 1st retry is 1 of 5 attempts = 20 % -> allowed
    assert retry.budget_allows(0, 4, 20)
    assert not retry.budget_allows(0, 3, 20)  # 1 of 4 = 25 %
    assert not retry.budget_allows(1, 5, 20)  # 2 of 6
    assert retry.deadline_allows(10, 5, 15)
    assert not retry.deadline_allows(10, 5, 16)


def test_compiles_under_numba() -> None:
    f = njit(lambda b, c, k, u: retry.backoff_delay_us(b, c, k, u))
    assert f(100, 1000, 3, 1 << 23) == 100
