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
    codes: Any,
    degraded: Any,
    counts: Any,
    gauges: Any,
    outcome_counts: Any,
    rejected_counts: Any,
) -> int:
    """Add a batch to the per-bin ``counts`` (rows as ``C_*`` / ``LAYER_ROWS``, one column per
    bin), set the ``gauges`` (``(layers, bins)``: the last ``remaining >= 0`` of a bin wins, so
    rows are taken in order) and add to ``outcome_counts`` (``(layers, outcomes)``) and
    ``rejected_counts`` (``rejected_by + 1``). ``b``: each row's bin; ``codes``: the five
    failure columns' outcome codes; ``degraded``: bool per outcome code (a failure mode's).
    Returns the batch's admitted count."""
    n_layers = outcomes.shape[1]
    n_codes = codes.shape[0]
    admitted = 0
    for i in range(b.shape[0]):
        bi = b[i]
        r = rejected_by[i]
        counts[C_ARRIVALS, bi] += 1
        rejected_counts[r + 1] += 1
        if r < 0:
            counts[C_ADMITTED, bi] += 1
            admitted += 1
        for pos in range(n_layers):
            base = C_LAYERS + pos * LAYER_ROWS
            if r == pos:
                counts[base, bi] += 1
            o = outcomes[i, pos]
            outcome_counts[pos, o] += 1
            for c in range(n_codes):
                if o == codes[c]:
                    counts[base + 1 + c, bi] += 1
            if degraded[o]:
                counts[base + LAYER_ROWS - 1, bi] += 1
            v = remaining[i, pos]
            if v >= 0:
                gauges[pos, bi] = v
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
def close_bins(b: Any, pw: Any, lat: Any, top: int, pw_q: float, qs: Any, quant: Any) -> int:
    """The quantiles of every bin below ``top`` among the rows (``b`` ascending): the pool
    wait's ``pw_q`` quantile at ``quant[0, bin]`` and the latency's ``qs[k]`` at
    ``quant[1 + k, bin]``. Returns the first row at or past ``top`` (the open bin's rows)."""
    n = b.shape[0]
    lo = 0
    while lo < n and b[lo] < top:
        hi = lo
        while hi < n and b[hi] == b[lo]:
            hi += 1
        bi = b[lo]
        w = np.sort(pw[lo:hi])  # a copy per bin, not per row
        quant[0, bi] = group_quantile(w, pw_q)
        v = np.sort(lat[lo:hi])
        for k in range(qs.shape[0]):
            quant[1 + k, bi] = group_quantile(v, qs[k])
        lo = hi
    return lo


@numba.njit(cache=True, nogil=True)
def is_ascending(b: Any) -> bool:
    """``b`` is non-decreasing."""
    for i in range(1, b.shape[0]):
        if b[i] < b[i - 1]:
            return False
    return True
