"""``compile.dense_codes`` is ``np.unique(keys, return_inverse=True)``'s count and inverse."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.compile import dense_codes


def _check(keys: np.ndarray) -> None:
    uniq, inverse = np.unique(keys, return_inverse=True)
    n, got = dense_codes(keys)
    assert n == len(uniq)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, inverse.reshape(-1))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(2**40), 2**40), max_size=80), st.integers(0, 2**20))
def test_any_keys_either_path(values: list[int], spread: int) -> None:
    keys = np.array(values, dtype=np.int64)
    _check(keys)  # wide values: the sort
    _check(keys % (spread + 1))  # narrow: the presence table


def test_a_population_of_codes() -> None:
    rng = np.random.default_rng(11)
    users = rng.zipf(1.3, 300_000) % 50_000
    keys = users * 12 + rng.integers(0, 3, 300_000) * 4 + rng.integers(0, 4, 300_000)
    _check(keys.astype(np.int64))


def test_empty() -> None:
    n, got = dense_codes(np.zeros(0, dtype=np.int64))
    assert n == 0 and len(got) == 0 and got.dtype == np.int64
