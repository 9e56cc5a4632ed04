"""Clock drift and the time source: the figures of notebooks/03-clock-drift.ipynb.

On the built-in ``clock-skew`` scenario (four nodes, clocks 0 / +50 / -50 / +200 ms, one
site-wide GCRA in Redis fed the clients' timestamps) it writes:

* ``nodes.png``: the share of its arrivals each node admitted, as configured;
* ``offset_sweep.parquet`` / ``offset_sweep.png``: node 3's share of the admissions as its
  clock's offset grows (the other three exact), with 95% intervals over replications;
* ``remedies.parquet`` / ``remedies.png``: per-node shares, admissions per second and the gap
  to the oracle under client time, Redis time, and the drift guard with each failure mode.

    .venv/bin/python experiments/clock_drift.py [--duration 20] [--replications 3]
        [--guard-ms 20] [--seed 0] [--out DIR] [--small]
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from _common import Outputs, figure, parser, run

import ratesim
from ratesim import plots, scenarios
from ratesim.experiments import apply, summarize, sweep
from ratesim.experiments import plots as xplots

OFFSETS_MS = [0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 20.0, 200.0]
SMALL_OFFSETS_MS = [0.0, 0.1, 0.5, 1.0, 2.0, 5.0]
LAYER = "policy.layers[site_gcra]"


def node3_share(result: Any) -> dict[str, float]:
    """Node 3's share of the run's admissions, in percent."""
    req = result.requests
    return {"node3_share_pct": 100.0 * float((req.loc[req["admitted"], "node"] == 3).mean())}


def remedy_row(result: Any, duration_s: float) -> dict[str, Any]:
    req = result.requests
    shares = req.loc[req["admitted"], "node"].value_counts(normalize=True)
    total = result.vs_oracle.query("group == 'total'").iloc[0]
    row: dict[str, Any] = {f"node{n}_pct": round(100 * shares.get(n, 0.0), 1) for n in range(4)}
    row["admitted_per_s"] = round(result.totals["admitted"] / duration_s)
    row["over_admitted"] = int(total["over_admitted"])
    row["wrongly_rejected"] = int(total["wrongly_rejected"])
    return row


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "clock_drift")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="simulated seconds (default 20; 4 with --small)",
    )
    p.add_argument(
        "--replications",
        type=int,
        default=None,
        help="runs per offset in the sweep (default 3; 1 with --small)",
    )
    p.add_argument(
        "--guard-ms",
        type=float,
        default=20.0,
        help="drift_guard_ms of the guarded variants (default 20)",
    )
    args = p.parse_args(argv)
    duration = args.duration or (4.0 if args.small else 20.0)
    reps = args.replications or (1 if args.small else 3)
    out = Outputs(args.out)

    skew = apply(scenarios.get("clock-skew"), {"duration_s": duration})
    out.png("nodes", plots.nodes(ratesim.simulate(skew, seed=args.seed), figure()[1]))

    perfect = apply(skew, {"topology.clocks": [{"offset_ms": 0.0}] * 4})
    offsets = SMALL_OFFSETS_MS if args.small else OFFSETS_MS
    runs = sweep(
        perfect,
        grid={"topology.clocks[3].offset_ms": offsets},
        replications=reps,
        metrics=[node3_share],
        runner="serial",
        progress=False,
        seed=args.seed + 3,
    )
    summary = out.table("offset_sweep", summarize(runs))
    ax = xplots.metric(
        summary, x="topology.clocks[3].offset_ms", y="node3_share_pct", ax=figure((8, 4.5))[1]
    )
    ax.set_xscale("symlog", linthresh=0.1)
    ax.axhline(25, color="gray", ls=":", label="fair share (25%)")
    ax.set_xlabel("node 3's clock offset (ms; the others are exact)")
    ax.set_ylabel("node 3's share of admissions (%)")
    ax.legend()
    out.png("offset_sweep", ax)

    guard = args.guard_ms
    variants = {
        "client time": {},
        "redis time": {f"{LAYER}.time_source": "redis"},
        **{
            f"client + guard {guard:g} ms, {mode}": {
                f"{LAYER}.drift_guard_ms": guard,
                f"{LAYER}.failure_mode": mode,
            }
            for mode in ("open", "closed", "local")
        },
    }
    results = {
        name: ratesim.simulate(apply(skew, change), seed=args.seed)
        for name, change in variants.items()
    }
    table = pd.DataFrame({name: remedy_row(r, duration) for name, r in results.items()}).T
    print(table.to_string())
    out.table("remedies", table.rename_axis("variant").reset_index())
    fig, axes = figure((18, 8), 2, 2)
    for ax, name in zip(axes.flat, list(variants)[1:], strict=True):
        plots.nodes(results[name], ax=ax).set_title(name)
    out.png("remedies", fig)
    return out.done()


if __name__ == "__main__":
    run(main)
