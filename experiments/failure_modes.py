"""Failure modes and degradation order: the figures of notebooks/04-failure-modes.ipynb.

Writes, from the built-in scenarios:

* ``outage_modes.parquet`` / ``outage_modes.png``: ``redis-outage`` (refused 3-5 s, black
  hole 7-9 s) under ``failure_mode`` open, closed and local: admissions per second in each
  window, the gap to the oracle, the decision-latency p99, and the three timelines;
* ``failover.png``: a failover at 6 s losing 500 ms of writes (timeline and oracle gap);
* ``saturation.parquet`` / ``saturation.png``: ``redis-saturation`` (a Redis pushed past what
  it executes): the layer's summary, timeline and latency;
* ``degradation_order.parquet`` / ``degradation_order.png``: the flagship's layers as every
  traffic rate is ramped (where each engages, and which engage out of the policy's order).

Retry storms (clients retrying rejections) are not modelled yet: no part for them here.

    .venv/bin/python experiments/failure_modes.py [--scale 1] [--surge-scale 0.25]
        [--loads 0.25,0.5,1,1.5,2,3,4] [--replications 3] [--workers N] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import plots, scenarios
from ratesim.experiments import apply, degradation_order
from ratesim.experiments import plots as xplots

WINDOWS_S = {"normal": (0, 3), "refused": (3, 5), "black hole": (7, 9)}


def loads(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected increasing numbers a,b,c, got {text!r}"
        ) from None
    if (
        len(values) < 2
        or any(b <= a for a, b in zip(values, values[1:], strict=False))
        or values[0] <= 0
    ):
        raise argparse.ArgumentTypeError(f"need at least two increasing factors > 0, got {text!r}")
    return values


def costs(result: Any) -> dict[str, Any]:
    """Admissions per second in each window of redis-outage, the oracle gap, latency p99."""
    total = result.vs_oracle.query("group == 'total'").iloc[0]
    req = result.requests
    out: dict[str, Any] = {}
    for name, (a, b) in WINDOWS_S.items():
        inside = req[(req["time_us"] >= a * 1_000_000) & (req["time_us"] < b * 1_000_000)]
        out[f"admitted_per_s, {name}"] = round(inside["admitted"].sum() / (b - a))
    out["over_admitted"] = int(total["over_admitted"])
    out["wrongly_rejected"] = int(total["wrongly_rejected"])
    out["latency_p99_ms"] = result.totals["latency_p99_us"] / 1000
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "failure_modes")
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="scale of redis-outage and redis-saturation (default 1; 0.2 with --small)",
    )
    p.add_argument(
        "--surge-scale",
        type=float,
        default=None,
        help="exchange-surge scale for the ramp (default 0.25; 0.02 with --small)",
    )
    p.add_argument(
        "--loads",
        type=loads,
        default=None,
        help="load factors of the ramp (default 0.25,0.5,1,1.5,2,3,4; 0.5,1,2 with --small)",
    )
    p.add_argument(
        "--replications",
        type=int,
        default=None,
        help="runs per load factor (default 3; 1 with --small)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local processes for the ramp (default: one per CPU; --small runs serially)",
    )
    args = p.parse_args(argv)
    scale = args.scale or (0.2 if args.small else 1.0)
    surge_scale = args.surge_scale or (0.02 if args.small else 0.25)
    ramp = args.loads or ([0.5, 1.0, 2.0] if args.small else [0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    reps = args.replications or (1 if args.small else 3)
    out = Outputs(args.out)
    seed = args.seed + 1

    outage = scenarios.get("redis-outage", scale=scale)
    modes = {
        m: apply(outage, {"policy.layers[site_gcra].failure_mode": m})
        for m in ("open", "closed", "local")
    }
    runs = {m: ratesim.simulate(sc, seed=seed) for m, sc in modes.items()}
    table = pd.DataFrame({m: costs(r) for m, r in runs.items()}).T.rename_axis("failure_mode")
    print(table.to_string())
    out.table("outage_modes", table.reset_index())
    fig, axes = figure((12, 12), 3, 1)
    for ax, (mode, result) in zip(axes, runs.items(), strict=True):
        plots.timeline(result, ax=ax).set_title(f"failure_mode = {mode!r}")
    out.png("outage_modes", fig)

    failover = apply(
        modes["closed"],
        {"redis.outages": [], "redis.failovers": [{"at_s": 6.0, "lost_writes_ms": 500.0}]},
    )
    after = ratesim.simulate(failover, seed=seed)
    fig, axes = figure((18, 4.5), 1, 2)
    plots.timeline(after, ax=axes[0])
    plots.oracle_gap(after, ax=axes[1])
    out.png("failover", fig)

    sat = ratesim.simulate(scenarios.get("redis-saturation", scale=scale), seed=seed)
    out.table("saturation", sat.summary)
    fig, axes = figure((18, 4.5), 1, 2)
    plots.timeline(sat, ax=axes[0])
    plots.latency(sat, ax=axes[1])
    out.png("saturation", fig)

    surge = scenarios.get("exchange-surge", scale=surge_scale)
    order = degradation_order(
        surge,
        load_factors=ramp,
        replications=reps,
        seed=args.seed + 4,
        runner="serial" if args.small else "local",
        workers=args.workers,
        progress=not args.small,
    )
    print(order.to_string(index=False))
    out.table("degradation_order", order)
    out.png("degradation_order", xplots.degradation_order(order, ax=figure((9, 4.5))[1]))
    return out.done()


if __name__ == "__main__":
    run(main)
