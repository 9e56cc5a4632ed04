"""A bounded run's request table rows made in one compiled pass (:func:`request_rows`): the
same table as :func:`ratesim.fast.run._request_table` without clients that retry, written row
by row instead of one strided numpy pass per column (each of which touches every row's cache
lines), and without zeroing the table first."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from ..model.clock import check_clock_range, clock_tables
from .kernels import clock_read_nodes
from .layout import (
    R_BK,
    R_BK_DONE,
    R_CLK,
    R_COLS,
    R_COST,
    R_DECIDED,
    R_NODE,
    R_PRE_REJ,
    R_REJ,
    R_T,
    R_TIER,
    R_WNEXT,
)

if TYPE_CHECKING:
    from ..compile import Draws
    from ..model.clock import NodeClock
    from ..traffic import Arrivals


@numba.njit(cache=True, nogil=True)
def _fill(
    R: np.ndarray,
    t: np.ndarray,
    node: np.ndarray,
    tier: np.ndarray,
    cost: np.ndarray,
    clk: np.ndarray,
    bk: np.ndarray,
) -> None:
    """Every column of ``R``'s rows: arrival (µs), node, tier, cost, local clock (µs),
    backend base time (µs; 0 when ``bk`` is empty), -1 where the loop's "not yet" is -1,
    0 elsewhere."""
    has_bk = len(bk) > 0
    for i in range(len(t)):
        for j in range(R_COLS):
            R[i, j] = 0
        R[i, R_T] = t[i]
        R[i, R_NODE] = node[i]
        R[i, R_TIER] = tier[i]
        R[i, R_COST] = cost[i]
        R[i, R_CLK] = clk[i]
        R[i, R_DECIDED] = -1
        R[i, R_REJ] = -1
        R[i, R_WNEXT] = -1
        R[i, R_PRE_REJ] = -1
        R[i, R_BK_DONE] = -1
        if has_bk:
            R[i, R_BK] = bk[i]


def local_clock_us(arrivals: Arrivals, draws: Draws, clocks: list[NodeClock]) -> np.ndarray:
    """Each request's arrival as its node's clock reads it (µs; the arrival times themselves
    when every clock is perfect)."""
    t = np.ascontiguousarray(arrivals.time_us, dtype=np.int64)
    if all(clock.spec.is_perfect for clock in clocks):
        return t
    clk = np.empty_like(t)
    if len(t):
        check_clock_range(int(t[0]), int(t[-1]))  # arrivals are in time order
        tables = clock_tables(clocks)
        clock_read_nodes(*tables, np.ascontiguousarray(draws.node, dtype=np.int64), t, clk)
    return clk


def fill_rows(R: np.ndarray, arrivals: Arrivals, draws: Draws, clk: np.ndarray) -> None:
    """Write the rows of ``R`` (C-contiguous int64, one row per request of ``arrivals``; a
    slice of a larger table will do) from the requests and their clock readings ``clk``
    (:func:`local_clock_us`)."""
    _fill(
        R,
        np.ascontiguousarray(arrivals.time_us, dtype=np.int64),
        np.ascontiguousarray(draws.node),
        np.ascontiguousarray(arrivals.tier),  # int8: widened per item in the pass
        np.ascontiguousarray(arrivals.cost),
        clk,
        np.ascontiguousarray(draws.backend_us),
    )


def request_rows(arrivals: Arrivals, draws: Draws, clocks: list[NodeClock]) -> np.ndarray:
    """``R`` (int64, one row per request of ``arrivals``, no room for retries), equal to
    ``_request_table(arrivals, draws, clocks)``."""
    R = np.empty((len(arrivals), R_COLS), dtype=np.int64)
    fill_rows(R, arrivals, draws, local_clock_us(arrivals, draws, clocks))
    return R


__all__ = ["fill_rows", "local_clock_us", "request_rows"]
