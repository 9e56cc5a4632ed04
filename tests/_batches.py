"""A finished run's rows cut into contiguous batches, as the bounded runner hands them to its
row consumers (contract item 2): the tests' stand-in for the runner, cut anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from ratesim.compile import CompiledLayer
from ratesim.results import RunData
from ratesim.traffic import Arrivals


def cut_rows(
    data: RunData, layers: list[CompiledLayer], lo: int, hi: int
) -> tuple[RunData, list[CompiledLayer]]:
    """Rows ``[lo, hi)`` of a run without retries and its layers' per-request arrays, as a
    batch: no Redis depth samples, ``attempt`` / ``origin`` ``None``."""
    a = data.arrivals
    s = slice(lo, hi)
    arrivals = Arrivals(
        time_us=a.time_us[s], user=a.user[s], tier=a.tier[s], route=a.route[s], cost=a.cost[s],
        abusive=a.abusive[s], tier_names=a.tier_names, route_names=a.route_names,
        user_names=a.user_names,
    )  # fmt: skip
    batch = replace(
        data,
        arrivals=arrivals,
        node=data.node[s],
        outcomes=data.outcomes[s],
        remaining=data.remaining[s],
        decided_us=data.decided_us[s],
        rejected_by=data.rejected_by[s],
        pool_wait_us=data.pool_wait_us[s],
        depth_t_us=np.zeros(0, dtype=np.int64),
        depth=np.zeros(0, dtype=np.int64),
        backend_done_us=None if data.backend_done_us is None else data.backend_done_us[s],
        held_us=None if data.held_us is None else data.held_us[s],
        attempt=None,
        origin=None,
    )
    cut = [
        replace(
            cl,
            keys=cl.keys[s],
            applies_np=None if cl.applies_np is None else cl.applies_np[s],
            shard=None if cl.shard is None else cl.shard[s],
        )
        for cl in layers
    ]
    return batch, cut


def batches(
    data: RunData, layers: list[CompiledLayer], cuts: np.ndarray
) -> Iterator[tuple[RunData, list[CompiledLayer], int]]:
    """``(batch, layers, first_row)`` for the batches between the sorted row numbers ``cuts``
    (repeats give empty batches), then the rest of the run."""
    n = len(data.arrivals)
    edges = [0, *(min(max(int(c), 0), n) for c in cuts), n]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        batch, cut = cut_rows(data, layers, lo, hi)
        yield batch, cut, lo


def awkward_cuts(time_us: np.ndarray, rng: np.random.Generator, count: int = 20) -> np.ndarray:
    """Sorted cut rows: random ones, a repeated one (an empty batch), 0 (an empty first
    batch) and cuts inside instants (between two rows of the same arrival time)."""
    n = len(time_us)
    ties = np.flatnonzero(np.diff(time_us) == 0) + 1  # row k arrives when row k - 1 does
    picks = [rng.integers(0, n + 1, count), [0, 0]]
    if len(ties):
        picks.append(rng.choice(ties, min(len(ties), 5), replace=False))
    cuts = np.sort(np.concatenate(picks)).astype(np.int64)
    return np.concatenate((cuts, cuts[-1:]))  # the last cut twice: one more empty batch
