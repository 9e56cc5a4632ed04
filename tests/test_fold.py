"""The aggregates' compiled fold (``ratesim.fast.fold``) against naive references: numpy
``bincount`` / masks for the counts and gauges, ``np.percentile`` on the raw values for the
value histograms, pandas' ``groupby(...).quantile`` for the per-bin quantiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.aggregates import DENSE_MAX, _Histogram, percentile_from_counts
from ratesim.fast.fold import (
    C_ADMITTED,
    C_ARRIVALS,
    C_LAYERS,
    LAYER_ROWS,
    close_bins,
    fold_series,
    group_quantile,
    hist_add,
    is_ascending,
)
from ratesim.outcomes import FAIL_CLOSED, FAIL_OPEN, LOCAL_ALLOWED, LOCAL_REJECTED, OUTCOMES
from ratesim.results import FAILURE_COLUMNS

CODES = np.array([c for c, _ in FAILURE_COLUMNS], dtype=np.int64)
FAILURE_MODE = (FAIL_OPEN, LOCAL_ALLOWED, FAIL_CLOSED, LOCAL_REJECTED)


def _batch(rng: np.random.Generator, n: int, n_layers: int, n_bins: int) -> tuple:
    b = np.sort(rng.integers(0, n_bins, n))
    rej = rng.integers(-1, n_layers, n)
    out = rng.integers(0, len(OUTCOMES), (n, n_layers))
    rem = np.where(rng.random((n, n_layers)) < 0.3, -1, rng.integers(0, 50, (n, n_layers)))
    return b, rej, out, rem


def _naive_series(b, rej, out, rem, n_layers, n_bins):  # type: ignore[no-untyped-def]
    """The per-bin counts, gauges and totals with numpy masks, the gauge by a Python loop."""
    counts = np.zeros((C_LAYERS + n_layers * LAYER_ROWS, n_bins), dtype=np.int64)
    counts[C_ARRIVALS] = np.bincount(b, minlength=n_bins)
    counts[C_ADMITTED] = np.bincount(b[rej < 0], minlength=n_bins)
    gauges = np.full((n_layers, n_bins), np.nan)
    oc = np.zeros((n_layers, len(OUTCOMES)), dtype=np.int64)
    for pos in range(n_layers):
        base = C_LAYERS + pos * LAYER_ROWS
        counts[base] = np.bincount(b[rej == pos], minlength=n_bins)
        for k, code in enumerate(CODES):
            counts[base + 1 + k] = np.bincount(b[out[:, pos] == code], minlength=n_bins)
        deg = np.isin(out[:, pos], FAILURE_MODE)
        counts[base + LAYER_ROWS - 1] = np.bincount(b[deg], minlength=n_bins)
        oc[pos] = np.bincount(out[:, pos], minlength=len(OUTCOMES))
        for i in range(len(b)):
            if rem[i, pos] >= 0:
                gauges[pos, b[i]] = rem[i, pos]
    rc = np.bincount(rej + 1, minlength=n_layers + 1)
    return counts, gauges, oc, rc


@pytest.mark.parametrize("seed", range(6))
def test_fold_series_matches_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_layers, n_bins = int(rng.integers(1, 5)), int(rng.integers(1, 40))
    counts = np.zeros((C_LAYERS + n_layers * LAYER_ROWS, n_bins), dtype=np.int64)
    gauges = np.full((n_layers, n_bins), np.nan)
    oc = np.zeros((n_layers, len(OUTCOMES)), dtype=np.int64)
    rc = np.zeros(n_layers + 1, dtype=np.int64)
    degraded = np.isin(np.arange(len(OUTCOMES)), FAILURE_MODE)
    b, rej, out, rem = _batch(rng, int(rng.integers(0, 3000)), n_layers, n_bins)
    # a transposed outcome table, as the bounded runner hands it (not C-contiguous)
    out_t = np.ascontiguousarray(out.T).T
    col_of = np.full(len(OUTCOMES), -1, dtype=np.int64)
    col_of[CODES] = np.arange(len(CODES))
    admitted = fold_series(b, rej, out_t, rem, col_of, degraded, counts, gauges, oc, rc)
    want = _naive_series(b, rej, out, rem, n_layers, n_bins)
    assert admitted == int((rej < 0).sum())
    np.testing.assert_array_equal(counts, want[0])
    np.testing.assert_array_equal(gauges, want[1])
    np.testing.assert_array_equal(oc, want[2])
    np.testing.assert_array_equal(rc, want[3])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(0, 3000),
                st.integers(-5, 5),
                st.integers(DENSE_MAX - 3, DENSE_MAX + 3),
                st.integers(10**9, 10**9 + 5),
            ),
            max_size=60,
        ),
        max_size=5,
    ),
    st.sampled_from([0.0, 1.0, 37.5, 50.0, 99.0, 99.9, 100.0]),
)
def test_histogram_percentile_matches_numpy(batches: list[list[int]], q: float) -> None:
    """Dense and sparse parts, the dense range grown over values once kept sparse: the
    histogram's percentile is ``np.percentile`` of every value added, bit for bit."""
    h = _Histogram()
    for batch in batches:
        h.add(np.array(batch, dtype=np.int64))
    raw = np.array([v for batch in batches for v in batch], dtype=np.int64)
    got = h.percentile(q)
    if not len(raw):
        assert np.isnan(got)
        return
    assert got == float(np.percentile(raw, q))
    values, counts = h.table()
    want_v, want_c = np.unique(raw, return_counts=True)
    np.testing.assert_array_equal(values, want_v)
    np.testing.assert_array_equal(counts, want_c)


def test_hist_add_counts_inside_only() -> None:
    dense = np.zeros(8, dtype=np.int64)
    x = np.array([0, 7, 8, -1, 3, 3], dtype=np.int64)
    assert hist_add(dense, x) == 2
    np.testing.assert_array_equal(dense, np.bincount([0, 7, 3, 3], minlength=8))
    assert percentile_from_counts(np.flatnonzero(dense), dense[dense > 0], 50) == 3.0


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 6), st.one_of(st.integers(-10, 300), st.integers(-10, 10**7))),
        min_size=1,
        max_size=200,
    ),
    st.integers(0, 8),
)
def test_close_bins_matches_pandas(rows: list[tuple[int, int]], top: int) -> None:
    """Every bin below ``top`` gets pandas' groupby quantiles (same floats); the rows of the
    bins at or past ``top`` are left (the returned cut)."""
    rows.sort(key=lambda r: r[0])
    b = np.array([r[0] for r in rows], dtype=np.int64)
    v = np.array([r[1] for r in rows], dtype=np.int64)
    pw = v // 3
    qs = np.array([0.5, 0.99, 0.999])
    quant = np.full((4, 9), np.nan)
    cut = close_bins(b, pw, v, top, np.array([0.99]), qs, quant)
    assert cut == int((b < top).sum())
    frame = pd.DataFrame({"b": b, "pw": pw, "lat": v})[b < top]
    want = np.full((4, 9), np.nan)
    if len(frame):
        grouped = frame.groupby("b")
        p = grouped["pw"].quantile(0.99)
        want[0, p.index.to_numpy()] = p.to_numpy(dtype=float)
        lat = grouped["lat"].quantile(qs).unstack()
        for k, q in enumerate(qs):
            want[1 + k, lat.index.to_numpy()] = lat[q].to_numpy(dtype=float)
    np.testing.assert_array_equal(quant, want)


@pytest.mark.parametrize("high", [3, 2000, 40_000, 10**9])
def test_close_bins_counted_and_sorted_paths(high: int) -> None:
    """Large bins, values narrow (counted) to wide (sorted): pandas' floats either way."""
    rng = np.random.default_rng(high)
    b = np.sort(rng.integers(0, 5, 20_000))
    v = rng.integers(0, high, len(b))
    quant = np.full((4, 5), np.nan)
    qs = np.array([0.5, 0.99, 0.999])
    assert close_bins(b, v, v, 5, np.array([0.99]), qs, quant) == len(b)
    grouped = pd.DataFrame({"b": b, "v": v}).groupby("b")["v"]
    np.testing.assert_array_equal(quant[0], grouped.quantile(0.99).to_numpy(dtype=float))
    lat = grouped.quantile(qs).unstack()
    for k, q in enumerate(qs):
        np.testing.assert_array_equal(quant[1 + k], lat[q].to_numpy(dtype=float))


def test_group_quantile_matches_pandas_on_one_group() -> None:
    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 10, 101, 1000, 1001):
        x = rng.integers(0, 10**6, n)
        s = pd.Series(x)
        for q in (0.5, 0.99, 0.999, 0.0, 1.0, 0.3):
            assert group_quantile(np.sort(x), q) == float(s.groupby(np.zeros(n)).quantile(q)[0])


def test_is_ascending() -> None:
    assert is_ascending(np.array([], dtype=np.int64))
    assert is_ascending(np.array([1, 1, 2], dtype=np.int64))
    assert not is_ascending(np.array([2, 1], dtype=np.int64))


@pytest.mark.parametrize("seed", range(4))
def test_fold_series_takes_a_bins_rows_in_any_order(seed: int) -> None:
    # rows of a bin in several runs (bins out of order), layers often not reached at a run's
    # end (remaining -1): the counts are the numpy masks' and the gauge the last reported
    rng = np.random.default_rng(100 + seed)
    n_layers, n_bins = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    n = int(rng.integers(1, 2000))
    b, rej, out, rem = _batch(rng, n, n_layers, n_bins)
    b = rng.integers(0, n_bins, n)  # unsorted
    rem = np.where(rng.random((n, n_layers)) < 0.8, -1, rem)
    counts = np.zeros((C_LAYERS + n_layers * LAYER_ROWS, n_bins), dtype=np.int64)
    gauges = np.full((n_layers, n_bins), np.nan)
    oc = np.zeros((n_layers, len(OUTCOMES)), dtype=np.int64)
    rc = np.zeros(n_layers + 1, dtype=np.int64)
    degraded = np.isin(np.arange(len(OUTCOMES)), FAILURE_MODE)
    col_of = np.full(len(OUTCOMES), -1, dtype=np.int64)
    col_of[CODES] = np.arange(len(CODES))
    admitted = fold_series(b, rej, out, rem, col_of, degraded, counts, gauges, oc, rc)
    want = _naive_series(b, rej, out, rem, n_layers, n_bins)
    assert admitted == int((rej < 0).sum())
    for got, exp in zip((counts, gauges, oc, rc), want, strict=True):
        np.testing.assert_array_equal(got, exp)
