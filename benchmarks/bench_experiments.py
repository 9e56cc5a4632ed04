"""Benchmark: a sweep of the flagship, serial vs local processes, against a bare simulate loop.

Issue 11's targets: a 40-point x 3-replication sweep of ``exchange-surge`` at scale 1 runs at
least 1.7x faster with ``runner="local", workers=2`` than with ``runner="serial"`` on two cores,
and the experiment layer adds less than 10% per run to a bare ``simulate`` loop.

    .venv/bin/python benchmarks/bench_experiments.py [--points 40] [--replications 3]
                                                      [--workers 2] [--engine auto] [--check] [--scale 1]

All parts run in this one process, on the same 40 x 3 runs:

(a) the bare loop a user writes by hand: per point a deep copy of the scenario with the two
    parameters set, then per replication ``simulate(scenario, seed=s)`` and a read of
    ``totals``, ``summary`` and ``vs_oracle`` (the oracle run included);
(b) ``sweep(grid=<that point>, replications=3, runner="serial")``: the same runs, plus every
    standard metric, the seeds, the table, validation up front. (a) and (b) alternate point by
    point, so that a change in the machine's load hits both alike; (b) pays the per-call costs
    of a sweep 40 times instead of once, so its overhead is if anything overstated;
(c) one ``sweep(..., runner="serial")`` of the whole grid, then (d) the same with
    ``runner="local", workers=W`` (the pool's start-up and the workers' load of the compiled
    code included).

Overhead per run = (b - a) / a; speed-up = c / d. Before (a) one short run loads (or compiles)
numba's code in this process, so no part pays for that. Wall times depend on what else runs on
the machine: the speed-up needs two otherwise idle cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

TARGET_SPEEDUP = 1.7
TARGET_OVERHEAD = 0.10

#: Two thresholds of the flagship: the site-wide order GCRA's rate, and the per-tier quotas.
ORDERS = "policy.layers[site_orders].algorithm.count_per_period"
QUOTA = "policy.layers[tier_quota].scale"


def design(points: int) -> dict[str, list[Any]]:
    """A grid of ``points`` points (8 order rates x points / 8 quota scales)."""
    n_quota = max(1, points // 8)
    orders = [1000 + 250 * i for i in range(min(points, 8))]
    quotas = [round(0.5 + 0.25 * j, 2) for j in range(n_quota)]
    return {ORDERS: orders, QUOTA: quotas}


def bare_point(base: Any, orders: int, quota: float, seeds: list[int], engine: str) -> float:
    """Wall seconds of the hand-written loop over one point's seeds."""
    import ratesim

    started = time.perf_counter()
    sc = base.model_copy(deep=True)
    layers = sc.policy.layers
    layers[3].algorithm.count_per_period = orders
    layers[1] = layers[1].scaled(quota)
    for seed in seeds:
        r = ratesim.simulate(sc, seed=seed, engine=engine)
        _ = (r.totals, r.summary, r.vs_oracle)
    return time.perf_counter() - started


def sweep_point(base: Any, orders: int, quota: float, replications: int, engine: str) -> float:
    """Wall seconds of a serial sweep of one point (same seeds as the bare loop's)."""
    from ratesim.experiments import sweep

    started = time.perf_counter()
    sweep(
        base,
        grid={ORDERS: [orders], QUOTA: [quota]},
        replications=replications,
        runner="serial",
        progress=False,
        engine=engine,
    )
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=40, help="grid points (multiple of 8)")
    parser.add_argument("--scale", type=float, default=1.0, help="exchange-surge scale")
    parser.add_argument("--replications", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--engine", default="auto", choices=("auto", "event", "fast"))
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)

    from ratesim import scenarios
    from ratesim.experiments import sweep
    from ratesim.experiments.runners import warm_up
    from ratesim.experiments.seeds import replication_seeds

    base = scenarios.get("exchange-surge", scale=args.scale)
    grid = design(args.points)
    n_points = len(grid[ORDERS]) * len(grid[QUOTA])
    seeds = [p.seed for p in replication_seeds(0, args.replications)]
    runs = n_points * args.replications
    warm_up(base, args.engine)
    print(f"{n_points} points x {args.replications} replications = {runs} runs", flush=True)

    bare = layer = 0.0
    for orders in grid[ORDERS]:
        for quota in grid[QUOTA]:
            bare += bare_point(base, orders, quota, seeds, args.engine)
            layer += sweep_point(base, orders, quota, args.replications, args.engine)
    print(f"(a) bare simulate loop:        {bare:8.1f} s  ({bare / runs:.2f} s a run)")
    print(f"(b) sweeps point by point:     {layer:8.1f} s  ({layer / runs:.2f} s a run)")
    kw: dict[str, Any] = {"grid": grid, "replications": args.replications, "engine": args.engine}
    started = time.perf_counter()
    serial = sweep(base, runner="serial", progress=False, **kw)
    t_serial = time.perf_counter() - started
    print(f"(c) sweep, serial:             {t_serial:8.1f} s  ({t_serial / runs:.2f} s a run)")
    started = time.perf_counter()
    local = sweep(base, runner="local", workers=args.workers, progress=False, **kw)
    t_local = time.perf_counter() - started
    print(f"(d) sweep, local, {args.workers} workers:   {t_local:8.1f} s", flush=True)

    cols = [c for c in serial.columns if c != "wall_s"]
    same = serial[cols].equals(local[cols])
    overhead = (layer - bare) / bare
    speedup = t_serial / t_local
    print(
        f"\noverhead of the experiment layer per run: {100 * overhead:+.1f}% "
        f"(target < {100 * TARGET_OVERHEAD:.0f}%)"
    )
    print(
        f"speed-up of {args.workers} local workers over serial: {speedup:.2f}x "
        f"(target >= {TARGET_SPEEDUP}x on 2 cores)"
    )
    print(f"serial and local tables identical (wall_s aside): {same}")
    ok = same and overhead < TARGET_OVERHEAD and speedup >= TARGET_SPEEDUP
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
