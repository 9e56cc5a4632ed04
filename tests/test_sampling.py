"""``simulate(requests=...)``: a Result keeping a seeded sample of its rows (or none) has the
same time series, summary, totals and oracle gap as the one keeping every row, and its rows
are the full run's rows at the sampled row numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_aggregates import _same_totals

import ratesim.sampling as sampling
import ratesim.scenarios as builtin
from ratesim.engine import simulate
from ratesim.results import Result


def _same_views(a: Result, b: Result) -> None:
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(a.summary, b.summary, check_exact=True)
    _same_totals(a.totals, b.totals)
    pd.testing.assert_frame_equal(a.vs_oracle, b.vs_oracle, check_exact=True)


@pytest.mark.parametrize(
    ("name", "engine"),
    [("exchange-surge", "fast"), ("retry-storm", "fast"), ("redis-outage", "event")],
)
def test_a_sample_keeps_the_exact_views_and_the_sampled_rows(
    name: str, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 200)
    sc = builtin.get(name, 0.05)
    full = simulate(sc, seed=2, engine=engine)
    part = simulate(sc, seed=2, engine=engine, requests="sample")
    assert (full.requests_kind, part.requests_kind) == ("all", "sample")
    _same_views(full, part)
    rows = part.requests.index.to_numpy()
    n = len(full.requests)
    assert n > 200 and len(rows) == 200
    assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < n
    expect = full.requests.iloc[rows].set_index(pd.Index(rows, name="row"))
    pd.testing.assert_frame_equal(part.requests, expect, check_exact=True)
    again = simulate(sc, seed=2, engine=engine, requests="sample")
    np.testing.assert_array_equal(again.requests.index.to_numpy(), rows)  # seeded
    other = simulate(sc, seed=3, engine=engine, requests="sample")
    assert not np.array_equal(other.requests.index.to_numpy(), rows)


def test_none_keeps_no_rows_and_the_exact_views() -> None:
    sc = builtin.get("latency-spike-local", 0.05)
    full = simulate(sc, seed=4)
    none = simulate(sc, seed=4, requests="none")
    assert none.requests_kind == "none"
    assert len(none.requests) == 0
    assert list(none.requests.columns) == list(full.requests.columns)
    _same_views(full, none)


def test_auto_samples_above_its_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = builtin.get("single-node-ideal", 0.05)
    n = len(simulate(sc, seed=1).requests)
    monkeypatch.setattr(sampling, "AUTO_ALL_ROWS", n)
    assert simulate(sc, seed=1, requests="auto").requests_kind == "all"
    monkeypatch.setattr(sampling, "AUTO_ALL_ROWS", n - 1)
    monkeypatch.setattr(sampling, "SAMPLE_ROWS", n // 2)
    res = simulate(sc, seed=1, requests="auto")
    assert res.requests_kind == "sample" and len(res.requests) == n // 2


def test_views_that_need_every_row_say_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 50)
    res = simulate(builtin.get("single-node-ideal", 0.05), seed=1, requests="sample")
    for view in ("user_requests", "oracle"):
        with pytest.raises(ValueError, match=f"{view} needs every per-request row.*'sample'"):
            getattr(res, view)
    with pytest.raises(ValueError, match="oracle needs every per-request row"):
        res.compare_oracle(2.0)
    assert res.peak_excess(1.0) == int(res.vs_oracle["peak_excess"].iloc[0])


def test_a_bad_requests_value_is_named() -> None:
    with pytest.raises(ValueError, match="requests must be one of all, sample, none, auto"):
        simulate("single-node-ideal", requests="some")
