"""The exchange surge end to end: the figures of notebooks/01-exchange-surge.ipynb.

Simulates the built-in ``exchange-surge`` scenario (4 gateway nodes, a shadow local bucket,
per-tier quotas, a per-user window and a site-wide GCRA in one Redis; a 17.3x surge), then the
same scenario with the Redis layers taking the client's time instead of the server's, and
writes:

* ``summary.parquet``, ``vs_oracle.parquet``, ``timeseries.parquet``: the Redis-time run's
  per-layer summary, its gap to the oracle (by layer, tier, abusive) and its time series;
* ``time_source.parquet``: admitted and oracle-gap totals for Redis time and client time;
* ``timeline.png``, ``grid.png`` (latency, oracle gap by layer, quota left, per-node admitted
  share), ``time_source.png`` (the oracle gap under each time source).

    .venv/bin/python experiments/exchange_surge.py [--scale 1] [--seed 0] [--out DIR] [--small]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import plots, scenarios
from ratesim.experiments import apply


def gap_row(result: Any) -> dict[str, Any]:
    """Admissions and the total gap to the oracle of one run."""
    total = result.vs_oracle.query("group == 'total'").iloc[0]
    return {
        "admitted": int(result.totals["admitted"]),
        "over_admitted": int(total["over_admitted"]),
        "wrongly_rejected": int(total["wrongly_rejected"]),
        "peak_excess_1s": int(total["peak_excess"]),
        "latency_p99_ms": result.totals["latency_p99_us"] / 1000,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "exchange_surge")
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="exchange-surge scale (default 1; 0.05 with --small)",
    )
    args = p.parse_args(argv)
    scale = args.scale if args.scale is not None else (0.05 if args.small else 1.0)
    out = Outputs(args.out)

    scenario = scenarios.get("exchange-surge", scale=scale)
    result = ratesim.simulate(scenario, seed=args.seed, progress=not args.small)
    client = apply(
        scenario,
        {
            f"policy.layers[{layer.name}].time_source": "client"
            for layer in scenario.policy.layers
            if layer.scope == "global"
        },
    )
    client_result = ratesim.simulate(client, seed=args.seed, progress=not args.small)

    out.table("summary", result.summary)
    out.table("vs_oracle", result.vs_oracle)
    out.table("timeseries", result.timeseries.reset_index())
    compared = pd.DataFrame(
        [gap_row(result), gap_row(client_result)],
        index=pd.Index(["redis", "client"], name="time_source"),
    )
    print(compared.to_string())
    out.table("time_source", compared.reset_index())

    out.png("timeline", plots.timeline(result, figure()[1]))
    fig, axes = figure((18, 9), 2, 2)
    plots.latency(result, ax=axes[0, 0])
    plots.oracle_gap(result, ax=axes[0, 1])
    plots.remaining(result, ax=axes[1, 0])
    plots.nodes(result, ax=axes[1, 1])
    out.png("grid", fig)
    fig, axes = figure((18, 4.5), 1, 2)
    plots.oracle_gap(result, ax=axes[0]).set_title('time_source = "redis"')
    plots.oracle_gap(client_result, ax=axes[1]).set_title('time_source = "client"')
    out.png("time_source", fig)
    return out.done()


if __name__ == "__main__":
    run(main)
