"""replay() and compare(): one decision row per request, same decisions on MemoryStore and
RedisStore, differences located exactly, malformed tables refused with the row named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ratesim.algorithms import GCRA, SlidingWindowLog, TokenBucket
from ratesim.algorithms.base import Algorithm
from ratesim.replay import DECISION_COLUMNS, CompareReport, compare, replay
from ratesim.stores import MemoryStore
from ratesim.stores.redis_store import RedisStore

T0_US = 1_700_000_000_000_000


def request_table(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    times = T0_US + np.cumsum(rng.integers(0, 20_000, n))
    return pd.DataFrame(
        {
            "time_us": times,
            "key": [f"u{k}" for k in rng.integers(0, 4, n)],
            "cost": rng.choice([0, 1, 1, 1, 2, 5], n),
        },
        index=pd.RangeIndex(100, 100 + n),
    )


@pytest.mark.parametrize("limiter", [GCRA(3, 20, 1), TokenBucket(15, 4), SlidingWindowLog(6, 0.5)])
def test_memory_and_redis_replays_are_identical(redis_url: str, limiter: Algorithm) -> None:
    requests = request_table(3000, seed=7)
    mem = replay(requests, limiter, MemoryStore())
    red = replay(requests, limiter, RedisStore.from_url(redis_url, timeout_s=5), batch=256)
    report = compare(mem, red)
    assert report.identical, str(report)
    assert str(report) == "identical: 3000 decisions"
    assert list(mem.columns) == ["time_us", "key", "cost", *DECISION_COLUMNS]
    assert mem.index.equals(requests.index)
    # Independently: the decisions are those of the store called row by row.
    store = MemoryStore()
    direct = [
        store.acquire(limiter, k, int(t), int(c))
        for t, k, c in zip(requests.time_us, requests.key, requests.cost, strict=True)
    ]
    assert mem["allowed"].tolist() == [d.allowed for d in direct]
    assert mem["remaining"].tolist() == [d.remaining for d in direct]
    assert 0 < mem["allowed"].sum() < len(requests)


def test_compare_locates_differences() -> None:
    requests = request_table(500, seed=3)
    a_lim, b_lim = GCRA(2, 10, 1), GCRA(3, 10, 1)
    a = replay(requests, a_lim, MemoryStore())
    b = replay(requests, b_lim, MemoryStore())
    report = compare(a, b)
    # Expected values computed directly, request by request.
    sa, sb = MemoryStore(), MemoryStore()
    rows = list(zip(requests.time_us, requests.key, requests.cost, strict=True))
    da = [sa.acquire(a_lim, k, int(t), int(c)) for t, k, c in rows]
    db = [sb.acquire(b_lim, k, int(t), int(c)) for t, k, c in rows]
    differing = [i for i in range(len(rows)) if da[i] != db[i]]
    assert not report.identical
    assert report.n == 500
    assert report.differing_rows == len(differing)
    assert report.first_position == differing[0]
    assert report.differences["limit"] == 500  # limit 3 vs 4 on every row
    flips = sum(x.allowed != y.allowed for x, y in zip(da, db, strict=True))
    assert report.differences["allowed"] == flips
    assert report.first_a is not None and report.first_b is not None
    assert report.first_a["limit"] == 3 and report.first_b["limit"] == 4
    assert report.first_a["time_us"] == int(requests.time_us.iloc[differing[0]])
    text = str(report)
    assert f"{len(differing)} of 500 decisions differ" in text
    assert f"first at request {differing[0]}" in text


def test_cost_is_optional_and_integral_floats_pass() -> None:
    lim = GCRA(0, 1, 1)
    table = pd.DataFrame({"time_us": [0.0, 1.0, 2_000_000.0], "key": [7, 7, 7]})
    out = replay(table, lim, MemoryStore())
    assert out["allowed"].tolist() == [True, False, True]
    assert out["cost"].tolist() == [1, 1, 1]


class _Spec:
    """Anything with build() returning an Algorithm (like ratesim.policy's algorithm specs)."""

    def build(self) -> Algorithm:
        return GCRA(0, 1, 1)


def test_accepts_a_spec_with_build() -> None:
    table = pd.DataFrame({"time_us": [0, 1], "key": ["a", "a"]})
    assert replay(table, _Spec(), MemoryStore())["allowed"].tolist() == [True, False]


def test_malformed_tables_name_the_problem(redis_url: str) -> None:
    lim = GCRA(1, 1, 1)
    store = MemoryStore()
    with pytest.raises(ValueError, match="missing column 'time_us'"):
        replay(pd.DataFrame({"t": [1], "key": ["a"]}), lim, store)
    with pytest.raises(ValueError, match="missing column 'key'"):
        replay(pd.DataFrame({"time_us": [1]}), lim, store)
    bad_time = pd.DataFrame({"time_us": [1, 2.5, 3], "key": ["a", "a", "a"]}, index=[10, 11, 12])
    with pytest.raises(ValueError, match=r"'time_us'.*row 11 \(position 1\).*2\.5"):
        replay(bad_time, lim, store)
    text_time = pd.DataFrame({"time_us": [1, "2"], "key": ["a", "a"]})
    with pytest.raises(ValueError, match=r"'time_us'.*row 1"):
        replay(text_time, lim, store)
    nan_time = pd.DataFrame({"time_us": [1.0, float("nan")], "key": ["a", "a"]})
    with pytest.raises(ValueError, match=r"'time_us'.*row 1"):
        replay(nan_time, lim, store)
    neg_cost = pd.DataFrame({"time_us": [1, 2], "key": ["a", "a"], "cost": [1, -1]})
    with pytest.raises(ValueError, match=r"'cost' must be >= 0.*row 1"):
        replay(neg_cost, lim, store)
    no_key = pd.DataFrame({"time_us": [1, 2], "key": ["a", None]})
    with pytest.raises(ValueError, match=r"'key'.*row 1"):
        replay(no_key, lim, store)
    with pytest.raises(ValueError, match="DataFrame"):
        replay([(1, "a")], lim, store)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="limiter"):
        replay(pd.DataFrame({"time_us": [1], "key": ["a"]}), "gcra", store)
    with pytest.raises(ValueError, match="time_source='client'"):
        replay(
            pd.DataFrame({"time_us": [1], "key": ["a"]}),
            lim,
            RedisStore.from_url(redis_url, time_source="redis"),
        )


def test_compare_refuses_mismatched_inputs() -> None:
    table = pd.DataFrame({"time_us": [0, 1], "key": ["a", "a"]})
    a = replay(table, GCRA(0, 1, 1), MemoryStore())
    with pytest.raises(ValueError, match="2 rows vs 1"):
        compare(a, a.iloc[:1])
    with pytest.raises(ValueError, match="'outcome'"):
        compare(a, a.drop(columns=["outcome"]))
    report = compare(a, a.copy())
    assert isinstance(report, CompareReport) and report.identical and report.first_position is None
