"""The validation suite's assertion language: parsing and the confidence-bound rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ratesim.validate import AssertionSyntaxError, check, parse_assertion


def test_parse_resolves_alias_and_bound() -> None:
    a = parse_assertion("p99_decision_latency_ms < 12")
    assert (a.metric, a.op, a.bound) == ("latency_p99_ms", "<", 12.0)
    b = parse_assertion("legit_rejected_pct<=0.1")
    assert (b.metric, b.op, b.bound) == ("legit_rejected_pct", "<=", 0.1)


@pytest.mark.parametrize("text", ["over_admitted_pct", "x << 1", "x < one", "< 3"])
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(AssertionSyntaxError, match="expected '<metric> <op> <number>'"):
        parse_assertion(text)


def _interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    x = np.asarray(values)
    half = stats.t.ppf((1 + confidence) / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def test_upper_bound_decides_less_than() -> None:
    # mean 0.9 is under 1, but the replications spread so the upper bound is above 1
    mean, low, high = _interval([0.5, 0.9, 1.3])
    assert mean < 1 < high
    assert not check(parse_assertion("over_admitted_pct < 1"), mean, low, high)
    assert check(parse_assertion("over_admitted_pct < 2"), mean, low, high)


def test_lower_bound_decides_greater_than_and_nan_passes() -> None:
    mean, low, high = _interval([9.5, 10.0, 10.5])
    assert low < 9.5
    assert not check(parse_assertion("first_trip(per-user) > 9.5"), mean, low, high)
    assert check(parse_assertion("first_trip(per-user) > 8"), mean, low, high)
    nan = float("nan")
    assert check(parse_assertion("first_trip(per-user) > 9"), nan, nan, nan)
    assert not check(parse_assertion("fail_open_pct < 5"), nan, nan, nan)


def test_first_trip_names_the_experiments_column() -> None:
    assert parse_assertion("first_trip(per-user) > 9").metric == "first_trip_s:per-user"


def test_bound_may_carry_the_metrics_unit() -> None:
    assert parse_assertion("first_trip(site_orders) > 9s").bound == 9.0
    assert parse_assertion("p99_decision_latency_ms < 12ms").metric == "latency_p99_ms"
    assert parse_assertion("fail_open_pct < 5%").bound == 5.0
    with pytest.raises(AssertionSyntaxError, match="in 'ms' but first_trip\\(x\\) is in 's'"):
        parse_assertion("first_trip(x) > 9ms")
    with pytest.raises(AssertionSyntaxError, match="admitted is a count"):
        parse_assertion("admitted > 3s")
