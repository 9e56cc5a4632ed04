"""A finished run's rows cut into contiguous batches, as the bounded runner hands them to its
row consumers (contract item 2): the tests' stand-in for the runner, cut anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from ratesim.compile import CompiledLayer
from ratesim.results import RunData
from ratesim.sampling import cut_run_data


def cut_rows(
    data: RunData, layers: list[CompiledLayer], lo: int, hi: int
) -> tuple[RunData, list[CompiledLayer]]:
    """Rows ``[lo, hi)`` of a run without retries and its layers' per-request arrays, as a
    batch: no Redis depth samples, ``attempt`` / ``origin`` ``None``."""
    s = slice(lo, hi)
    batch = replace(cut_run_data(data, s), attempt=None, origin=None)
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
