"""The bounded run's request rows in one compiled pass (``ratesim.fast.rows``) equal the
whole-table runner's per-column table (``ratesim.fast.run._request_table``), on every built-in
without clients that retry (perfect and drifting clocks, with and without a backend) and on
empty inputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_bounded import NO_RETRIES, _inputs

import ratesim.scenarios as builtin
from ratesim.fast.chunks import cut_draws
from ratesim.fast.rows import request_rows
from ratesim.fast.run import _request_table
from ratesim.model.clock import NodeClock


@pytest.mark.parametrize("name", NO_RETRIES)
def test_rows_equal_the_per_column_table(name: str) -> None:
    sc = builtin.get(name, 0.05)
    arr, draws, _ = _inputs(sc, 7)
    clocks = [NodeClock(spec) for spec in sc.topology.clock_specs()]
    got = request_rows(arr, draws, clocks)
    want = _request_table(arr, draws, clocks)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # a cut of the rows (as a chunk is) too, and no rows at all
    lo, hi = len(arr) // 3, len(arr) // 3 + 17
    part = arr.take(slice(lo, hi)), cut_draws(draws, lo, hi)
    np.testing.assert_array_equal(request_rows(*part, clocks), _request_table(*part, clocks))
    empty = arr.take(slice(0, 0)), cut_draws(draws, 0, 0)
    assert request_rows(*empty, clocks).shape == (0, want.shape[1])


def test_some_builtin_has_a_drifting_clock_and_a_backend() -> None:
    """The cases above cover both branches of the clock column and of the backend column."""
    specs = [builtin.get(n, 0.05) for n in NO_RETRIES]
    assert any(not s.is_perfect for sc in specs for s in sc.topology.clock_specs())
    assert any(sc.backend is not None for sc in specs)
