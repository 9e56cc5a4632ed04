"""The compiled runner's stream: after each time chunk of the loop, the requests decided so far
(the longest decided prefix of the request table, in arrival order) folded into a
:class:`ratesim.aggregates.RunAggregates`. A request still in flight at a chunk's end (waiting
for a pool connection, a Redis reply, a concurrency slot or a shaping hold) stops the prefix:
it and every later row wait in the tables for a later chunk, so rows are folded once each and
in arrival order, as the aggregates need (the ``remaining`` gauge keeps a bin's last value)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .layout import C_ARRIVED, R_DECIDED, R_HELD, R_POOL_WAIT, R_REJ, R_T, World

if TYPE_CHECKING:
    from ..aggregates import RunAggregates


def fold_decided(world: World, agg: RunAggregates, folded: int, holds: bool) -> int:
    """Fold the rows from ``folded`` up to the first one not yet decided (rows arrive in row
    order: a run without clients that retry); returns the new count of folded rows.
    ``holds``: a layer can hold a request (the rows carry ``held_us``)."""
    R = world.R
    arrived = int(world.C[C_ARRIVED])
    pending = np.flatnonzero(R[folded:arrived, R_DECIDED] < 0)
    end = folded + (int(pending[0]) if len(pending) else arrived - folded)
    if end <= folded:
        return folded
    s = slice(folded, end)
    agg.fold(
        R[s, R_T],
        R[s, R_REJ],
        world.OUT[:, s].T.astype(np.int64),
        world.REM[:, s].T,
        R[s, R_DECIDED],
        R[s, R_POOL_WAIT],
        R[s, R_HELD] if holds else None,
    )
    return end
