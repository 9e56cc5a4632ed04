"""What a run's summary should warn about: layers that mostly decided by their failure mode,
and a Redis that saturated.

A layer whose decisions mostly came from its failure mode (``fail_open``, ``fail_closed``, or
its node-local fallback) was not the limit its configuration says: Redis did not answer in
time (timeouts, outages, partitions, an exhausted pool). A Redis shard saturates when commands
arrive faster than it serves them: the queue ahead of an arriving command grows, and with it
every global layer's decision latency.
"""

from __future__ import annotations

from typing import Any

#: A layer decided "mostly" by its failure mode at this share of the requests that reached it.
FAILURE_SHARE = 0.5
#: Commands already queued ahead of an arriving one at which a shard counts as saturated.
SATURATION_DEPTH = 100


def run_warnings(result: Any) -> list[str]:
    """One sentence per problem found in ``result`` (a :class:`~ratesim.results.Result`)."""
    out = []
    for row in result.summary.itertuples(index=False):
        failure = row.fail_open + row.fail_closed + row.local
        if row.reached and failure >= FAILURE_SHARE * row.reached:
            parts = [
                f"{label} {count:,}"
                for label, count in (
                    ("fail_open", row.fail_open),
                    ("fail_closed", row.fail_closed),
                    ("local", row.local),
                )
                if count
            ]
            out.append(
                f"layer {row.layer!r} decided {failure / row.reached:.0%} of the "
                f"{row.reached:,} requests that reached it by its failure mode "
                f"({', '.join(parts)}): Redis did not answer in time"
            )
    depth = result.timeseries["redis_queue_depth"]
    if len(depth) and int(depth.max()) >= SATURATION_DEPTH:
        t = float(depth.idxmax())
        out.append(
            f"Redis saturated: up to {int(depth.max()):,} commands were queued ahead of an "
            f"arriving one (worst in the bin at {t:g} s); decisions waited behind them"
        )
    return out
