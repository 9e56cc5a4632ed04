"""The bounded runner's bookkeeping of rows in flight: the inputs of held rows kept piece by
piece (:mod:`ratesim.fast.pending`) and the tables' rows moved down in place
(:func:`ratesim.fast.compact.move_rows_down`), each against the plain numpy equivalent."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.chunks import iter_chunks
from ratesim.fast.chunks import cut_layer
from ratesim.fast.compact import move_rows_down, take_columns
from ratesim.fast.pending import PendingInputs
from ratesim.scenarios import get


@settings(max_examples=60, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    axis_pick=st.integers(0, 2),
    rows=st.integers(1, 40),
    cut_frac=st.floats(0, 1),
    dtype=st.sampled_from([np.int8, np.int32, np.int64]),
)
def test_move_rows_down_equals_numpy_copy(
    shape: list[int], axis_pick: int, rows: int, cut_frac: float, dtype: type
) -> None:
    axis = axis_pick % (len(shape) + 1)
    full = list(shape)
    full.insert(axis, rows + 3)  # room past the used rows, which must stay untouched
    rng = np.random.default_rng(rows)
    table = rng.integers(-100, 100, size=full).astype(dtype)
    cut = int(cut_frac * rows)
    expected = table.copy()
    src = [slice(None)] * table.ndim
    dst = [slice(None)] * table.ndim
    src[axis] = slice(cut, rows)
    dst[axis] = slice(0, rows - cut)
    expected[tuple(dst)] = table[tuple(src)].copy()
    move_rows_down(table, axis, cut, rows)
    np.testing.assert_array_equal(table, expected)


def test_move_rows_down_refuses_a_strided_view() -> None:
    table = np.zeros((4, 10), dtype=np.int64)[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        move_rows_down(table, 1, 1, 3)


def _inputs() -> tuple[Any, list[Any]]:
    sc = get("exchange-surge", scale=0.02)
    ((arrivals, _, layers),) = iter_chunks(sc, 3, int(sc.duration_s * 1e6))  # one chunk
    return arrivals, layers


def test_pending_takes_rows_across_pieces_as_the_whole_run_holds_them() -> None:
    arrivals, layers = _inputs()
    n = len(arrivals)
    edges = [0, n // 5, n // 5, n // 2, n - 7, n]  # an empty piece too
    pending = PendingInputs()
    for lo, hi in zip(edges, edges[1:], strict=False):
        pending.add(arrivals.take(slice(lo, hi)), [cut_layer(cl, lo, hi) for cl in layers])
    assert pending.end == n
    rng = np.random.default_rng(0)
    released = 0
    while released < n:
        hi = min(n, released + int(rng.integers(1, n // 3)))
        got, got_layers = pending.take(released, hi)
        assert got.equals(arrivals.take(slice(released, hi)))
        for cl, whole in zip(got_layers, layers, strict=True):
            np.testing.assert_array_equal(cl.keys, whole.keys[released:hi])
        released = hi
        pending.drop(released)
        assert all(first + len(a) > released for first, a, _ in pending._pieces)
    assert len(pending) == 0


def test_pending_refuses_rows_it_no_longer_holds() -> None:
    arrivals, layers = _inputs()
    pending = PendingInputs()
    pending.add(arrivals.take(slice(0, 50)), [cut_layer(cl, 0, 50) for cl in layers])
    pending.add(arrivals.take(slice(50, 90)), [cut_layer(cl, 50, 90) for cl in layers])
    pending.drop(60)  # the first piece goes, the second stays
    assert len(pending) == 1
    with pytest.raises(AssertionError, match="not all held"):
        pending.take(40, 70)
    got, _ = pending.take(60, 90)
    assert got.equals(arrivals.take(slice(60, 90)))


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(0, 30), cols=st.lists(st.integers(0, 5), max_size=7))
def test_take_columns_equals_numpy_fancy_indexing(rows: int, cols: list[int]) -> None:
    R = np.random.default_rng(rows).integers(-50, 50, size=(rows + 4, 6))
    got = take_columns(R, rows, np.array(cols, dtype=np.int64))
    assert got.shape == (len(cols), rows) and got.flags.c_contiguous
    np.testing.assert_array_equal(got, R[:rows].T[cols])
