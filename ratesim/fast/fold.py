"""The aggregates' fold of a batch, compiled (see :class:`ratesim.aggregates.RunAggregates`).

Three passes over a batch's rows (arrival order), none of them building a temporary array per
column: the per-bin counts and gauges with the per-layer outcome totals (:func:`fold_series`),
the exact value histograms (:func:`hist_add`: a dense count per integer µs) and the quantiles
of closed bins (:func:`close_bins`, pandas' ``groupby(...).quantile`` formula). Each has a
naive twin the tests hold it to (numpy ``bincount`` / ``np.unique`` / pandas).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

#: Rows of the count matrix before the layers' rows: arrivals, admitted, retries.
C_ARRIVALS = 0
C_ADMITTED = 1
C_RETRIES = 2
C_LAYERS = 3
#: Rows per layer: rejected, the five failure columns (``FAILURE_COLUMNS`` order), degraded.
LAYER_ROWS = 7


@numba.njit(cache=True, nogil=True)
def fold_series(
    b: Any,
    rejected_by: Any,
    outcomes: Any,
    remaining: Any,
    col_of: Any,
    degraded: Any,
    counts: Any,
    gauges: Any,
    outcome_counts: Any,
    rejected_counts: Any,
) -> int:
    """Add a batch to the per-bin ``counts`` (rows as ``C_*`` / ``LAYER_ROWS``, one column per
    bin), set the ``gauges`` (``(layers, bins)``: the last ``remaining >= 0`` of a bin wins, so
    rows are taken in order) and add to ``outcome_counts`` (``(layers, outcomes)``) and
    ``rejected_counts`` (``rejected_by + 1``). ``b``: each row's bin (any order; fastest when a
    bin's rows are consecutive, as in arrival order); ``col_of``: per outcome code, its failure column (0-4, ``FAILURE_COLUMNS``
    order) or -1; ``degraded``: per outcome code, a failure mode's. Returns the batch's
    admitted count.

    A bin's rows are counted in a small local array added to the bin's column once: 3x faster
    than adding to the ``(rows, bins)`` table per row and testing each failure code in turn
    (16 against 50 ns a row of four layers, measured)."""
    n_layers = outcomes.shape[1]
    n = b.shape[0]
    n_rows = counts.shape[0]
    acc = np.zeros(n_rows, dtype=np.int64)
    admitted = 0
    lo = 0
    while lo < n:
        bi = b[lo]
        acc[:] = 0
        hi = lo
        while hi < n and b[hi] == bi:
            r = rejected_by[hi]
            rejected_counts[r + 1] += 1
            if r < 0:
                acc[C_ADMITTED] += 1
            else:
                acc[C_LAYERS + r * LAYER_ROWS] += 1
            for pos in range(n_layers):
                o = outcomes[hi, pos]
                outcome_counts[pos, o] += 1
                c = col_of[o]
                if c >= 0:
                    acc[C_LAYERS + pos * LAYER_ROWS + 1 + c] += 1
                if degraded[o]:
                    acc[C_LAYERS + pos * LAYER_ROWS + LAYER_ROWS - 1] += 1
                v = remaining[hi, pos]
                if v >= 0:
                    gauges[pos, bi] = v
            hi += 1
        acc[C_ARRIVALS] += hi - lo
        admitted += acc[C_ADMITTED]
        for k in range(n_rows):
            counts[k, bi] += acc[k]
        lo = hi
    return admitted


@numba.njit(cache=True, nogil=True)
def hist_add(dense: Any, x: Any) -> int:
    """Count each value of ``x`` in ``0 <= x < len(dense)`` at ``dense[x]``; returns how many
    values fell outside (the caller counts those another way)."""
    size = dense.shape[0]
    outside = 0
    for i in range(x.shape[0]):
        v = x[i]
        if 0 <= v < size:
            dense[v] += 1
        else:
            outside += 1
    return outside


@numba.njit(cache=True, nogil=True)
def group_quantile(sorted_vals: Any, q: float) -> float:
    """pandas' ``groupby(...).quantile(q)`` (``linear``) of one group's values, sorted: the
    value at ``int(q * (n - 1))`` and, unless the fraction is 0, ``val + (next - val) * frac``
    (pandas' ``group_quantile``, integer difference then float), so the float is the same."""
    n = sorted_vals.shape[0]
    q_idx = q * np.float64(n - 1)
    idx = int(q_idx)
    val = sorted_vals[idx]
    frac = q_idx % 1.0
    if frac == 0.0:
        return np.float64(val)
    nxt = sorted_vals[idx + 1]
    return np.float64(val) + np.float64(nxt - val) * frac


@numba.njit(cache=True, nogil=True)
def counts_quantile(cum: Any, lowest: int, q: float) -> float:
    """:func:`group_quantile` of the values whose cumulative counts are ``cum`` (``cum[k]``:
    how many are ``<= lowest + k``): the same order statistics, the same arithmetic."""
    n = cum[cum.shape[0] - 1]
    q_idx = q * np.float64(n - 1)
    idx = int(q_idx)
    val = lowest + np.searchsorted(cum, idx, side="right")
    frac = q_idx % 1.0
    if frac == 0.0:
        return np.float64(val)
    nxt = lowest + np.searchsorted(cum, idx + 1, side="right")
    return np.float64(val) + np.float64(nxt - val) * frac


@numba.njit(cache=True, nogil=True)
def _quantiles_into(x: Any, lo: int, hi: int, qs: Any, out: Any, row: int, bi: int) -> None:
    """``out[row + k, bi]`` = :func:`group_quantile` of ``x[lo:hi]`` at ``qs[k]``. Values in a
    range at most 8x their count are counted (O(n + range)), others sorted (a copy)."""
    lowest = x[lo]
    highest = x[lo]
    for i in range(lo + 1, hi):
        lowest = min(lowest, x[i])
        highest = max(highest, x[i])
    span = highest - lowest + 1
    if span <= 8 * (hi - lo) + 1024:
        cum = np.zeros(span, dtype=np.int64)
        for i in range(lo, hi):
            cum[x[i] - lowest] += 1
        for k in range(1, span):
            cum[k] += cum[k - 1]
        for k in range(qs.shape[0]):
            out[row + k, bi] = counts_quantile(cum, lowest, qs[k])
        return
    v = np.sort(x[lo:hi])
    for k in range(qs.shape[0]):
        out[row + k, bi] = group_quantile(v, qs[k])


@numba.njit(cache=True, nogil=True)
def close_bins(b: Any, pw: Any, lat: Any, top: int, pw_q: Any, qs: Any, quant: Any) -> int:
    """The quantiles of every bin below ``top`` among the rows (``b`` ascending): the pool
    wait's ``pw_q[0]`` quantile at ``quant[0, bin]`` and the latency's ``qs[k]`` at
    ``quant[1 + k, bin]`` (pandas' ``groupby(...).quantile`` floats, :func:`group_quantile`).
    Returns the first row at or past ``top`` (the open bin's rows)."""
    n = b.shape[0]
    lo = 0
    while lo < n and b[lo] < top:
        hi = lo
        while hi < n and b[hi] == b[lo]:
            hi += 1
        _quantiles_into(pw, lo, hi, pw_q, quant, 0, b[lo])
        _quantiles_into(lat, lo, hi, qs, quant, 1, b[lo])
        lo = hi
    return lo


@numba.njit(cache=True, nogil=True)
def is_ascending(b: Any) -> bool:
    """``b`` is non-decreasing."""
    for i in range(1, b.shape[0]):  # noqa: SIM110 (a loop numba compiles; no generator)
        if b[i] < b[i - 1]:
            return False
    return True
