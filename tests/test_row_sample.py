"""The kept rows (``ratesim.sampling``): the bottom-k sample by a counter-based key of (seed,
row number), the same rows whether the run comes whole (``sample_rows``) or in batches cut
anywhere (``RowSample``), every row when the run has at most the sample's size."""

from __future__ import annotations

import numpy as np
import pytest
from _batches import awkward_cuts, batches
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_engine import FIELDS

import ratesim.scenarios as builtin
from ratesim.engine import compile_policy, simulate
from ratesim.model.counter import MASK64, splitmix64
from ratesim.results import Result, RunData
from ratesim.sampling import SAMPLE_STREAM, RowSample, row_keys, sample_rows, take_rows

NO_CLIENTS = [n for n in builtin.names() if not builtin.get(n, 0.05).clients]


def _naive_sample(n: int, seed: int, size: int) -> list[int]:
    """Bottom-``size`` by the published key, in plain Python ints: sort every row by (key,
    row) and keep the first ``size``, in row order."""
    base = splitmix64((seed ^ SAMPLE_STREAM) & MASK64)
    return sorted(sorted(range(n), key=lambda r: (splitmix64(base ^ r), r))[:size])


def _streamed(res: Result, cuts: np.ndarray, size: int) -> RowSample:
    layers = compile_policy(res.scenario, res.data.arrivals)
    sample = RowSample(res.seed, size)
    for batch, cut, first in batches(res.data, layers, cuts):
        sample.fold(batch, cut, first)
    sample.finish()
    return sample


def _same_rows(a: RunData, b: RunData) -> None:
    for f in (*FIELDS, "held_us", "backend_done_us", "attempt", "origin"):
        x, y = getattr(a, f), getattr(b, f)
        if x is None:
            assert y is None, f
            continue
        np.testing.assert_array_equal(x, y, err_msg=f)
        assert x.dtype == y.dtype, f


@pytest.mark.parametrize("name", NO_CLIENTS)
def test_builtins_sampled_in_batches_keep_the_whole_runs_sample(name: str) -> None:
    res = simulate(builtin.get(name, 0.05), seed=3)
    n = len(res.data.arrivals)
    rng = np.random.default_rng(5)
    for size in (1, 37, n // 3, n, n + 10):
        rows = sample_rows(n, res.seed, "sample", size)
        assert len(rows) == min(size, n)
        for cuts in (awkward_cuts(res.data.arrivals.time_us, rng), np.arange(0, n, 17)):
            got = _streamed(res, cuts, size)
            np.testing.assert_array_equal(got.rows, rows)
            assert got.data is not None
            _same_rows(got.data, take_rows(res.data, rows))
    assert sample_rows(n, res.seed, "sample", n).tolist() == list(range(n))  # all: at most k


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 400), seed=st.integers(0, 2**64 - 1), size=st.integers(0, 120))
def test_sample_rows_is_the_naive_bottom_k(n: int, seed: int, size: int) -> None:
    assert sample_rows(n, seed, "sample", size).tolist() == _naive_sample(n, seed, size)


def test_row_keys_are_splitmix64_of_the_row() -> None:
    base = splitmix64((7 ^ SAMPLE_STREAM) & MASK64)
    assert row_keys(7, 5, 3).tolist() == [splitmix64(base ^ r) for r in (5, 6, 7)]


def test_every_row_is_as_likely_to_be_kept() -> None:
    # 40 rows, keep 10, over 3000 seeds: each row kept ~750 times (binomial sd ~24)
    counts = np.zeros(40, dtype=np.int64)
    for seed in range(3000):
        counts[sample_rows(40, seed, "sample", 10)] += 1
    assert counts.sum() == 30_000
    assert np.abs(counts - 750).max() < 6 * 24


def test_kinds_and_bad_sizes() -> None:
    assert sample_rows(50, 1, "none").tolist() == []
    assert sample_rows(50, 1, "all", 3).tolist() == list(range(50))
    with pytest.raises(ValueError, match="size must be >= 0"):
        RowSample(1, -1)
    empty = RowSample(1, 0)
    empty.finish()
    assert empty.data is None and empty.rows.tolist() == []


def test_tied_keys_go_by_row_number() -> None:
    from ratesim.sampling import _smallest

    keys = np.array([5, 3, 3, 3, 1], dtype=np.uint64)
    rows = np.array([0, 9, 2, 4, 7], dtype=np.int64)
    # the key 1 (position 4), then two of the three 3s: rows 2 and 4 before row 9
    assert _smallest(keys, rows, 3).tolist() == [2, 3, 4]
