"""Which per-request rows a :class:`ratesim.results.Result` keeps (``simulate(requests=...)``).

* ``"all"`` (the default): every row, as always;
* ``"sample"``: a seeded uniform sample of :data:`SAMPLE_ROWS` rows (every row when the run has
  fewer), in arrival order, keyed by their row numbers; the time series, summary, totals and
  the oracle gap are still exact, folded from every row (:mod:`ratesim.aggregates`);
* ``"none"``: no rows, the exact aggregates only;
* ``"auto"``: ``"all"`` up to :data:`AUTO_ALL_ROWS` rows, ``"sample"`` above.

The sample is drawn from its own stream (``numpy`` ``default_rng((seed, SAMPLE_STREAM))``), so
choosing to sample changes no draw of the run.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .results import RunData
from .traffic import Arrivals

REQUESTS = ("all", "sample", "none", "auto")
#: Rows a sample keeps (about 10 MB of DataFrame).
SAMPLE_ROWS = 100_000
#: ``"auto"`` keeps every row up to this many (a few hundred MB of DataFrame), a sample above.
AUTO_ALL_ROWS = 1_000_000
#: The sample's stream, apart from the run's (``ratesim.rng.Streams``).
SAMPLE_STREAM = 0x5A301E


def resolve_requests(requests: str, rows: int) -> str:
    """``requests`` checked, and ``"auto"`` resolved for a run of ``rows`` rows."""
    if requests not in REQUESTS:
        raise ValueError(f"requests must be one of {', '.join(REQUESTS)}, got {requests!r}")
    if requests == "auto":  # read at call time, so a test may lower it
        return "all" if rows <= AUTO_ALL_ROWS else "sample"
    return requests


def sample_rows(rows: int, seed: int, kind: str, size: int | None = None) -> np.ndarray:
    """The sorted row numbers ``kind`` keeps of a run of ``rows`` rows (a sample: ``size``
    rows, default :data:`SAMPLE_ROWS`)."""
    size = SAMPLE_ROWS if size is None else size
    if kind == "none":
        return np.zeros(0, dtype=np.int64)
    if kind == "all" or rows <= size:
        return np.arange(rows, dtype=np.int64)
    rng = np.random.default_rng((seed, SAMPLE_STREAM))
    return np.sort(rng.choice(rows, size=size, replace=False)).astype(np.int64)


def take_rows(data: RunData, rows: np.ndarray) -> RunData:
    """``data`` cut to ``rows`` (sorted row numbers); the Redis depth samples (per command,
    already folded into the aggregates) dropped. ``origin`` keeps the full run's row numbers."""
    a = data.arrivals

    def cut(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x[rows]

    arrivals = Arrivals(
        time_us=a.time_us[rows],
        user=a.user[rows],
        tier=a.tier[rows],
        route=a.route[rows],
        cost=a.cost[rows],
        abusive=a.abusive[rows],
        tier_names=a.tier_names,
        route_names=a.route_names,
        user_names=a.user_names,
    )
    return replace(
        data,
        arrivals=arrivals,
        node=data.node[rows],
        outcomes=data.outcomes[rows],
        remaining=data.remaining[rows],
        decided_us=data.decided_us[rows],
        rejected_by=data.rejected_by[rows],
        pool_wait_us=data.pool_wait_us[rows],
        depth_t_us=np.zeros(0, dtype=np.int64),
        depth=np.zeros(0, dtype=np.int64),
        backend_done_us=cut(data.backend_done_us),
        held_us=cut(data.held_us),
        # without retries every row is its own first try: the sampled rows' own numbers
        attempt=np.ones(len(rows), dtype=np.int64) if data.attempt is None else data.attempt[rows],
        origin=rows.copy() if data.origin is None else data.origin[rows],
    )
