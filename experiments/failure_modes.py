"""Failure modes and degradation order: the figures of notebooks/04-failure-modes.ipynb.

Writes, from the built-in scenarios:

* ``outage_modes.parquet`` / ``outage_modes.png``: ``redis-outage`` (refused 3-5 s, black
  hole 7-9 s) under ``failure_mode`` open, closed and local: admissions per second in each
  window, the gap to the oracle, the decision-latency p99, and the three timelines;
* ``failover.png``: a failover at 6 s losing 500 ms of writes (timeline and oracle gap);
* ``saturation.parquet`` / ``saturation.png``: ``redis-saturation`` (a Redis pushed past what
  it executes): the layer's summary, timeline and latency;
* ``degradation_order.parquet`` / ``degradation_order.png``: the flagship's layers as every
  traffic rate is ramped (where each engages, and which engage out of the policy's order);
* ``store_breaker.parquet`` / ``store_breaker.png``: ``latency-spike`` against
  ``latency-spike-breaker`` (a store breaker per node): how the failure mode decided, the
  decisions that waited the timeout, the latency in the spike; timelines and latencies;
* ``breaker_order.parquet`` / ``breaker_order.png``: ``slow-backend-breaker`` ramped with the
  breaker's slow-call threshold below and above the backend's response time at saturation
  (``saturation_rt_s()``): the degradation order flips;
* ``autoscale.parquet`` / ``autoscale.png``: ``autoscale`` (3 -> 6 nodes at 12 s, each new one
  with a full bucket): arrivals and admissions per second by phase, timeline and per-node view;
* ``retry_storm.parquet`` / ``retry_storm.png``: ``retry-storm`` (a 1 s surge at 3x a site-wide
  GCRA) with the clients not retrying, retrying at once, honouring ``Retry-After``, backing off
  with full jitter, and retrying at once under a 20% retry budget: attempts per user request,
  goodput and user-visible latency; a timeline per reaction (0.1 s bins) with its retries.

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
from ratesim.scenarios.bad_days import saturation_rt_s, slow_backend_breaker

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


def spike_costs(result: Any) -> dict[str, Any]:
    """How the site layer's failure mode decided through latency-spike's 4-6 s, and the cost."""
    layer = result.scenario.policy.layer("site_gcra")
    timeout_us = round(layer.timeout_ms * 1000)
    row = result.summary.set_index("layer").loc["site_gcra"]
    req = result.requests
    spike = (req["time_us"] >= 4_000_000) & (req["time_us"] < 6_000_000)
    return {
        "fail_open": int(row["fail_open"]),
        "waited_timeout": int((result.latency_us == timeout_us).sum()),
        "breaker_short": int(row["breaker_short"]),
        "breaker_opens": int(row["breaker_opens"]),
        "spike_latency_p50_ms": float(req.loc[spike, "latency_us"].median()) / 1000,
        "spike_latency_p99_ms": float(req.loc[spike, "latency_us"].quantile(0.99)) / 1000,
        "over_admitted": int(result.vs_oracle.query("group == 'total'").iloc[0]["over_admitted"]),
    }


def store_breaker(out: Outputs, scale: float, seed: int) -> None:
    """latency-spike without and with the store breaker: table and figure."""
    names = ("latency-spike", "latency-spike-breaker")
    runs = {n: ratesim.simulate(scenarios.get(n, scale=scale), seed=seed) for n in names}
    table = pd.DataFrame({n: spike_costs(r) for n, r in runs.items()}).T.rename_axis("scenario")
    print(table.to_string())
    out.table("store_breaker", table.reset_index())
    fig, axes = figure((18, 8), 2, 2)
    for row, (name, result) in zip(axes, runs.items(), strict=True):
        plots.timeline(result, ax=row[0]).set_title(f"{name}: traffic and decisions")
        plots.latency(result, ax=row[1]).set_title(f"{name}: decision latency")
    out.png("store_breaker", fig)


def breaker_order(out: Outputs, ramp: list[float], reps: int, seed: int) -> None:
    """slow-backend-breaker's degradation order, the threshold below and above saturation."""
    sat = saturation_rt_s()
    fig, axes = figure((18, 4.5), 1, 2)
    tables = []
    for ax, factor in zip(axes, (0.4, 1.3), strict=True):
        max_rt_s = factor * sat
        order = degradation_order(
            slow_backend_breaker(max_rt_s=max_rt_s),
            load_factors=ramp,
            replications=reps,
            seed=seed,
            runner="serial",
            progress=False,
        )
        xplots.degradation_order(order, ax=ax)
        side = "below" if max_rt_s < sat else "above"
        ax.set_title(
            f"breaker max_rt_s = {max_rt_s * 1000:.0f} ms ({side} the "
            f"{sat * 1000:.1f} ms at saturation)"
        )
        frame = order.copy()
        frame.attrs = {}
        tables.append(frame.assign(max_rt_s=max_rt_s))
    table = pd.concat(tables, ignore_index=True)
    print(table[["max_rt_s", "layer", "engages_at", "never_engages"]].to_string(index=False))
    out.table("breaker_order", table)
    out.png("breaker_order", fig)


#: Phases of the autoscale run (s): 3 nodes in the surge, the scale event, 6 nodes, 3 again.
PHASES_S = {"3 nodes, surge": (10, 12), "scale event": (12, 13), "6 nodes": (16, 24)}


def autoscale(out: Outputs, scale: float, seed: int) -> None:
    """The autoscale built-in: admissions by phase, timeline and per-node view."""
    result = ratesim.simulate(scenarios.get("autoscale", scale=scale), seed=seed)
    req = result.requests
    rows = []
    for name, (a, b) in PHASES_S.items():
        inside = req[(req["time_us"] >= a * 1_000_000) & (req["time_us"] < b * 1_000_000)]
        rows.append(
            {
                "phase": name,
                "from_s": a,
                "to_s": b,
                "arrivals_per_s": len(inside) / (b - a),
                "admitted_per_s": float(inside["admitted"].sum()) / (b - a),
            }
        )
    print(out.table("autoscale", pd.DataFrame(rows)).to_string(index=False))
    fig, axes = figure((18, 4.5), 1, 2)
    plots.timeline(result, ax=axes[0])
    plots.nodes(result, ax=axes[1])
    out.png("autoscale", fig)


#: The retry-storm variants: a name, the reaction (``scenarios.RETRY_STORM_REACTIONS``) and
#: the overrides applied on top (``ratesim.experiments.apply`` paths); ``none`` is the baseline.
STORM_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "none": (
        "immediate",
        {"clients.on_reject": {"kind": "none"}, "clients.on_error": {"kind": "none"}},
    ),
    "immediate": ("immediate", {}),
    "retry_after": ("retry_after", {}),
    "backoff": ("backoff", {}),
    "immediate, budget 20%": ("immediate", {"clients.budget_pct": 20}),
}


def storm_costs(result: Any) -> dict[str, Any]:
    """What a client reaction costs on retry-storm: attempts, goodput, user-visible latency."""
    t = result.totals
    return {
        "user_requests": int(t["user_requests"]),
        "attempts": int(t["attempts"]),
        "attempts_per_request": float(t["attempts_per_request"]),
        "goodput": int(t["goodput"]),
        "goodput_pct": 100.0 * t["goodput"] / t["user_requests"],
        "user_latency_p50_ms": t["user_latency_p50_us"] / 1000,
        "user_latency_p99_ms": t["user_latency_p99_us"] / 1000,
    }


def retry_storm(out: Outputs, scale: float, seed: int) -> None:
    """retry-storm under each client reaction (same arrivals): table and timelines."""
    runs = {}
    for name, (reaction, overrides) in STORM_VARIANTS.items():
        # 0.1 s bins: the surge lasts 1 s; the bin width changes no decision
        sc = apply(scenarios.retry_storm(scale, reaction), {**overrides, "interval_s": 0.1})
        runs[name] = ratesim.simulate(sc, seed=seed)
    costs_by_name = {n: storm_costs(r) for n, r in runs.items()}
    table = pd.DataFrame.from_dict(costs_by_name, orient="index").rename_axis("reaction")
    print(table.round(3).to_string())
    out.table("retry_storm", table.reset_index())
    drawn = [n for n in runs if n != "none"]
    fig, axes = figure((12, 3.2 * len(drawn)), len(drawn), 1)
    for ax, name in zip(axes, drawn, strict=True):
        plots.timeline(runs[name], ax=ax).set_title(f"retry-storm, clients: {name}")
        ax.set_xlim(3.0, 7.5)  # the surge (4-5 s) and the retries' tail within the 1.5 s deadline
    out.png("retry_storm", fig)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__, "failure_modes")
    p.add_argument(
        "--scale",
        type=float,
        default=None,
        help="scale of redis-outage, redis-saturation and the other built-ins (default 1; "
        "0.2 with --small)",
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

    store_breaker(out, scale, seed)
    breaker_ramp = [0.5, 1.3, 2.0, 3.0] if args.small else [0.5, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0]
    breaker_order(out, breaker_ramp, reps, args.seed + 4)
    autoscale(out, scale, seed)
    retry_storm(out, scale, seed)
    return out.done()


if __name__ == "__main__":
    run(main)
