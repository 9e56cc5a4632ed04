"""Inverse-CDF picks from cumulative weights, by a guide table.

``np.searchsorted(cum, u * cum[-1], side="right")`` is a binary search per draw: over a
population of millions of users its lower levels miss the cache at every step (~150 ns a draw
at 2.5M users). A guide table (Chen and Asau, 1974) stores, for each of ``m`` equal slices of
``[0, total)``, where the search would land at the slice's left edge; a draw starts there and
walks to its exact index. The walk goes both ways and stops only at the index ``j`` with
``cum[j - 1] <= x < cum[j]``, so the result equals ``searchsorted``'s for any start (the guide
only makes the walk short: with ``m = len(cum)`` slices the expected walk is about one step)
and the same float product ``x = u * cum[-1]``: picks are bit-identical to the binary search.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np


def guide_table(cum: np.ndarray) -> np.ndarray:
    """Where each of ``len(cum)`` equal slices of ``[0, cum[-1])`` starts in ``cum`` (int64)."""
    m = len(cum)
    edges = np.arange(m, dtype=np.float64) * (cum[-1] / m)
    return np.searchsorted(cum, edges, side="right").astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _pick(cum: Any, guide: Any, u: Any, out: Any) -> None:
    n = cum.shape[0]
    total = cum[n - 1]
    m = guide.shape[0]
    for i in range(u.shape[0]):
        x = u[i] * total
        b = int(u[i] * m)
        if b >= m:
            b = m - 1
        elif b < 0:
            b = 0
        j = guide[b]
        while j > 0 and cum[j - 1] > x:
            j -= 1
        while j < n and cum[j] <= x:
            j += 1
        # u < 1, but u * total can round up to total: the last entry, as np.minimum gives.
        out[i] = j if j < n else n - 1


def pick_guided(cum: np.ndarray, guide: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices (int64) for uniforms ``u`` in [0, 1): ``min(searchsorted(cum, u * cum[-1],
    "right"), len(cum) - 1)``, through ``guide`` (:func:`guide_table` of ``cum``)."""
    out = np.empty(len(u), dtype=np.int64)
    if len(u):
        _pick(cum, guide, np.ascontiguousarray(u, dtype=np.float64), out)
    return out
