"""Threshold coupling on the exchange surge: the figures of notebooks/02-threshold-coupling.ipynb.

Which layer binds first as two layers' limits change together? On the built-in
``exchange-surge`` scenario it writes:

* ``first_trip.parquet``: when each layer first trips in one run, and the offered load then;
* ``masking.parquet`` / ``masking.png``: each layer alone against the stack (isolate_layers);
* ``coupling_map.parquet`` / ``coupling_map.png``: over a geometric grid of two scale factors
  (``policy.layers[X].scale``, every tier at once), the layer that trips first in most
  replications, the share that agree, and the gap to the oracle (contours: over-admission).

    .venv/bin/python experiments/coupling_map.py [--scale 0.25] [--grid 5] [--replications 2]
        [--x tier_quota:1:16] [--y site_orders:0.125:2] [--workers N] [--seed 0] [--out DIR]
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import scenarios
from ratesim.experiments import coupling_map, first_trip, isolate_layers
from ratesim.experiments import plots as xplots


def axis(text: str) -> tuple[str, float, float]:
    """``LAYER:LOW:HIGH`` -> (the layer's scale path, low, high)."""
    try:
        layer, low, high = text.split(":")
        lo, hi = float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LAYER:LOW:HIGH, got {text!r}") from None
    if not 0 < lo < hi:
        raise argparse.ArgumentTypeError(f"need 0 < LOW < HIGH, got {text!r}")
    return f"policy.layers[{layer}].scale", lo, hi


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "coupling_map")
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="exchange-surge scale (default 0.25; 0.02 with --small)",
    )
    p.add_argument(
        "--grid",
        type=int,
        default=None,
        help="points per axis, geometric from LOW to HIGH (default 5; 3 with --small)",
    )
    p.add_argument(
        "--replications",
        type=int,
        default=None,
        help="runs per grid point (default 2; 1 with --small)",
    )
    p.add_argument(
        "--x",
        type=axis,
        default=axis("tier_quota:1:16"),
        help="x axis as LAYER:LOW:HIGH, scale factors of that layer (default tier_quota:1:16)",
    )
    p.add_argument(
        "--y",
        type=axis,
        default=axis("site_orders:0.125:2"),
        help="y axis as LAYER:LOW:HIGH (default site_orders:0.125:2)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local processes (default: one per CPU; --small runs serially)",
    )
    args = p.parse_args(argv)
    scale = args.scale or (0.02 if args.small else 0.25)
    grid = args.grid or (3 if args.small else 5)
    reps = args.replications or (1 if args.small else 2)
    runner = "serial" if args.small else "local"
    out = Outputs(args.out)

    scenario = scenarios.get("exchange-surge", scale=scale)
    trips = out.table("first_trip", first_trip(ratesim.simulate(scenario, seed=args.seed)))
    print(trips.to_string(index=False))
    masking = isolate_layers(
        scenario,
        replications=reps,
        seed=args.seed + 1,
        runner=runner,
        workers=args.workers,
        progress=False,
    )
    out.table("masking", masking)
    out.png("masking", xplots.isolate_layers(masking, ax=figure((8, 4.5))[1]))

    (x, x_lo, x_hi), (y, y_lo, y_hi) = args.x, args.y
    xs = [float(v) for v in np.round(np.geomspace(x_lo, x_hi, grid), 3)]
    ys = [float(v) for v in np.round(np.geomspace(y_lo, y_hi, grid), 3)]
    cmap = coupling_map(
        scenario,
        x=x,
        y=y,
        x_values=xs,
        y_values=ys,
        replications=reps,
        seed=args.seed + 2,
        runner=runner,
        workers=args.workers,
        progress=not args.small,
    )
    with pd.option_context("display.width", 200):
        print(cmap.pivot(index=y, columns=x, values="binding_layer").sort_index(ascending=False))
    out.table("coupling_map", cmap)
    out.png("coupling_map", xplots.coupling_map(cmap, ax=figure((9, 6))[1]))
    return out.done()


if __name__ == "__main__":
    run(main)
