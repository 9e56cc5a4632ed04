"""Experimental designs: the points a sweep runs.

A design is a list of points, each a mapping from parameter path to value. :func:`grid_points`
is the Cartesian product of a grid (a mapping path -> list of values; the last path varies
fastest); :func:`latin_hypercube` draws a space-filling sample of ranges with
``scipy.stats.qmc``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .paths import ParameterError

__all__ = ["grid_points", "latin_hypercube"]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, as one dict per point.

    Raises :class:`~ratesim.experiments.paths.ParameterError` naming the path when a grid entry
    is not a non-empty list of values.
    """
    if not isinstance(grid, Mapping):
        raise ParameterError(f"grid must be a mapping path -> list of values, got {grid!r}")
    for path, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise ParameterError(
                f"grid[{path!r}] must be a non-empty list of values, got {values!r}"
            )
    paths = list(grid)
    return [dict(zip(paths, combo, strict=True)) for combo in itertools.product(*grid.values())]


def latin_hypercube(
    ranges: Mapping[str, tuple[float, float]], n: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``n`` points of a Latin hypercube over ``ranges`` (path -> ``(low, high)``).

    Each range is cut into ``n`` equal strata and every stratum holds exactly one point
    (``scipy.stats.qmc.LatinHypercube``, seeded by ``seed``). A range whose bounds are both
    integers gives integer values (rounded, so the strata of an integer range are only
    approximately equal); pass floats (``(1.0, 8.0)``) for real values. Use the result as
    ``sweep(samples=...)``.
    """
    from scipy.stats import qmc

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not ranges:
        raise ParameterError("ranges must name at least one parameter path")
    for path, bounds in ranges.items():
        if (
            not isinstance(bounds, Sequence)
            or len(bounds) != 2
            or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
            or not bounds[0] < bounds[1]
        ):
            raise ParameterError(
                f"ranges[{path!r}] must be (low, high) with low < high, got {bounds!r}"
            )
    gen = np.random.default_rng(seed)
    try:
        sampler = qmc.LatinHypercube(d=len(ranges), rng=gen)
    except TypeError:  # scipy < 1.15 names the argument ``seed``
        sampler = qmc.LatinHypercube(d=len(ranges), seed=gen)
    unit = sampler.random(n)
    lows = [float(b[0]) for b in ranges.values()]
    highs = [float(b[1]) for b in ranges.values()]
    scaled = qmc.scale(unit, lows, highs)
    points = []
    for row in scaled:
        point: dict[str, Any] = {}
        for (path, (low, high)), value in zip(ranges.items(), row, strict=True):
            integer = isinstance(low, int) and isinstance(high, int)
            point[path] = int(round(value)) if integer else float(value)
        points.append(point)
    return points
