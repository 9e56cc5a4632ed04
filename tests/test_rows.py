"""The request rows made in one compiled pass (``ratesim.fast.rows``, each node's clock read in
one pass over every request) equal a per-column table built here with numpy and each clock's
own ``read_many`` over its node's requests, on every built-in without clients that retry
(perfect and drifting clocks, with and without a backend) and on empty inputs; and the
whole-table runner's table with room for retries holds the same rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_bounded import NO_RETRIES, _inputs

import ratesim.scenarios as builtin
from ratesim.fast.chunks import cut_draws
from ratesim.fast.layout import (
    R_ATTEMPT,
    R_BK,
    R_BK_DONE,
    R_CLK,
    R_COLS,
    R_COST,
    R_DECIDED,
    R_NODE,
    R_ORIGIN,
    R_PRE_REJ,
    R_REJ,
    R_RETRY,
    R_T,
    R_TIER,
    R_WNEXT,
)
from ratesim.fast.rows import request_rows
from ratesim.fast.run import _request_table
from ratesim.model.clock import NodeClock


def _per_column_table(arr: Any, draws: Any, clocks: list[NodeClock]) -> np.ndarray:
    """The table column by column: what the loop expects of a request before it runs."""
    n = len(arr)
    R = np.zeros((n, R_COLS), dtype=np.int64)
    R[:, R_T] = arr.time_us
    R[:, R_NODE] = draws.node
    R[:, R_TIER] = arr.tier
    R[:, R_COST] = arr.cost
    R[:, R_CLK] = arr.time_us
    for k, clock in enumerate(clocks):
        sel = draws.node == k
        R[sel, R_CLK] = clock.read_many(arr.time_us[sel])
    for col in (R_DECIDED, R_REJ, R_WNEXT, R_PRE_REJ, R_BK_DONE):
        R[:, col] = -1
    if len(draws.backend_us):
        R[:, R_BK] = draws.backend_us
    return R


@pytest.mark.parametrize("name", NO_RETRIES)
def test_rows_equal_the_per_column_table(name: str) -> None:
    sc = builtin.get(name, 0.05)
    arr, draws, _ = _inputs(sc, 7)
    clocks = [NodeClock(spec) for spec in sc.topology.clock_specs()]
    got = request_rows(arr, draws, clocks)
    want = _per_column_table(arr, draws, clocks)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_request_table(arr, draws, clocks), want)
    # with room for retries: the same rows, then attempt 1, its own origin, no retry yet
    n = len(arr)
    roomy = _request_table(arr, draws, clocks, rows=n + 5)
    want[:, R_ATTEMPT] = 1
    want[:, R_ORIGIN] = np.arange(n)
    want[:, R_RETRY] = -1
    np.testing.assert_array_equal(roomy[:n], want)
    assert not roomy[n:].any()
    # a cut of the rows (as a chunk is) too, and no rows at all
    lo, hi = len(arr) // 3, len(arr) // 3 + 17
    part = arr.take(slice(lo, hi)), cut_draws(draws, lo, hi)
    np.testing.assert_array_equal(request_rows(*part, clocks), _per_column_table(*part, clocks))
    empty = arr.take(slice(0, 0)), cut_draws(draws, 0, 0)
    assert request_rows(*empty, clocks).shape == (0, want.shape[1])


def test_some_builtin_has_a_drifting_clock_and_a_backend() -> None:
    """The cases above cover both branches of the clock column and of the backend column."""
    specs = [builtin.get(n, 0.05) for n in NO_RETRIES]
    assert any(not s.is_perfect for sc in specs for s in sc.topology.clock_specs())
    assert any(sc.backend is not None for sc in specs)
