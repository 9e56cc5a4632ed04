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

    A run of rows of one bin is counted in small local histograms (rows per rejecting layer,
    per layer and outcome) that are then added to the bin's columns and to the totals, each
    outcome's failure column and failure mode looked up once a run, not once a row; the gauge
    is the run's last ``remaining >= 0``, found from its end. 16 against 50 ns a row of four
    layers for adding to the ``(rows, bins)`` table per row and testing each failure code
    in turn, then 15 -> 4.3 ns with the histograms (exchange-surge scale 4, measured)."""
    n_layers = outcomes.shape[1]
    n_codes = col_of.shape[0]
    n = b.shape[0]
    rej = np.zeros(n_layers + 1, dtype=np.int64)  # the run's rows by rejected_by + 1
    hist = np.zeros(n_layers * n_codes, dtype=np.int64)  # by layer * n_codes + outcome
    admitted = 0
    lo = 0
    while lo < n:
        bi = b[lo]
        hi = lo
        while hi < n and b[hi] == bi:
            rej[rejected_by[hi] + 1] += 1
            for pos in range(n_layers):
                hist[pos * n_codes + outcomes[hi, pos]] += 1
            hi += 1
        _add_run(bi, hi - lo, rej, hist, col_of, degraded, counts, outcome_counts, rejected_counts)
        admitted += rej[0]
        rej[:] = 0
        hist[:] = 0
        for pos in range(n_layers):
            for k in range(hi - 1, lo - 1, -1):  # the run's last value reported wins
                if remaining[k, pos] >= 0:
                    gauges[pos, bi] = remaining[k, pos]
                    break
        lo = hi
    return admitted


@numba.njit(cache=True, nogil=True)
def _add_run(
    bi: int,
    rows: int,
    rej: Any,
    hist: Any,
    col_of: Any,
    degraded: Any,
    counts: Any,
    outcome_counts: Any,
    rejected_counts: Any,
) -> None:
    """A run of ``rows`` rows of bin ``bi`` (its histograms ``rej``: by ``rejected_by + 1``,
    ``hist``: by ``layer * codes + outcome``) added to the bin's ``counts`` column and to the
    totals (:func:`fold_series`)."""
    n_codes = col_of.shape[0]
    counts[C_ARRIVALS, bi] += rows
    counts[C_ADMITTED, bi] += rej[0]
    for r in range(rej.shape[0]):
        rejected_counts[r] += rej[r]
    for pos in range(outcome_counts.shape[0]):
        base = C_LAYERS + pos * LAYER_ROWS
        counts[base, bi] += rej[pos + 1]
        for o in range(n_codes):
            h = hist[pos * n_codes + o]
            if h == 0:
                continue
            outcome_counts[pos, o] += h
            c = col_of[o]
            if c >= 0:
                counts[base + 1 + c, bi] += h
            if degraded[o]:
                counts[base + LAYER_ROWS - 1, bi] += h


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
