"""Benchmark: issue 10's Show list, each figure beside its target (one run, all figures).

    .venv/bin/python benchmarks/bench_scale.py [--repeat R] [--scales 0.25,1,4,16,25]

* exchange-surge at scale 1: the compiled loop's ns per request (``ratesim.fast.run._drive``,
  the event loop itself: tables built, arrivals and draws made before it) beside a bare numba
  per-tier GCRA loop over the same arrivals and keys (the ceiling) and the same loop calling
  ratesim's own ``rate_kernel`` (whole tables with offsets); ``simulate`` end to end in
  simulated requests per second (traffic generation, draws, tables and loop; the lazy oracle
  not included). Best of R in this process. And the sliding log's kernel alone over the same
  arrivals on the ``user_window`` layer's keys, on ``limit + 2`` int64 a key and on the
  compiled runner's growing rings (``ratesim.fast.logpool``), in the same loop.
* exchange-surge at scale 25 (12.1M requests): wall time and peak RSS of one
  ``simulate(..., engine="fast")`` in a child process (its own ``ru_maxrss``; the child also
  times the loop alone first, at the same scale).
* exchange-surge at scale 25, bounded (``requests="none"``: inputs made chunk by chunk,
  ``ratesim.chunks``; bounded request tables, ``ratesim.fast.bounded``; aggregates and the
  oracle gap streamed), in its own child process: the issue's wall and RSS targets.
* exchange-surge at scale 25 for 600 simulated seconds, bounded, in its own child process.
* the loop's cost per request at each of ``--scales``, each in its own child process (so one
  run's memory does not weigh on the next), with its wall time and peak RSS.
* the sliding logs' state at each scale (issue 10's Build item 3), from the run's own tables:
  what ``limit + 2`` int64 per key would take (the representation before, still the stores'
  and the event engine's) beside the compiled runner's (one offset per key and the rings
  used in its pools, :mod:`ratesim.fast.logpool`), and the pools' allocated size.

Targets are printed to compare with, never asserted. The machine is shared: the in-process
figures are best of R, and the ratios (loop against the bare ceiling) come from one process.
* the GCRA Lua's server CPU per call against a trivial GCRA script on the same server
  (Build item 5): ``benchmarks/bench_lua_cpu.py --algos gcra`` run as a child process (its own
  redis-server on a free port; skipped when there is no ``redis-server``), its GCRA lines
  printed (both deliveries: ``FCALL`` and ``EVALSHA``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import numba
import numpy as np

TARGET_LOOP_NS = 250
TARGET_E2E_RPS = 2_000_000
TARGET_S25_WALL_S = 10.0
TARGET_S25_RSS_GIB = 1.5
TARGET_600_WALL_S = 60.0
TARGET_600_RSS_GIB = 2.0


@numba.njit(cache=True)
def bare_gcra(t: Any, key: Any, tier: Any, cost: Any, P: Any, S: Any) -> int:
    """Per-tier GCRA decisions (redis-cell's, as ``gcra_kernel``) over the arrivals, state
    ``S[key] = (present, tat)``, parameters ``P[tier] = (T, DVT, limit)``: admitted count."""
    admitted = 0
    for i in range(t.shape[0]):
        tr = tier[i]
        k = key[i]
        now = t[i]
        tat = now
        if S[k, 0] != 0 and S[k, 1] > now:
            tat = S[k, 1]
        if cost[i] > P[tr, 2]:
            continue
        new_tat = tat + cost[i] * P[tr, 0]
        if now - (new_tat - P[tr, 1]) >= 0:
            S[k, 0] = 1
            S[k, 1] = new_tat
            admitted += 1
    return admitted


def _kernel_loop() -> Any:
    """The same loop through ratesim's compiled ``rate_kernel`` (code 0, GCRA) with offsets."""
    from ratesim.fast.kernels import rate_kernel

    @numba.njit
    def loop(t: Any, key: Any, tier: Any, cost: Any, PF: Any, S: Any) -> int:
        admitted = 0
        for i in range(t.shape[0]):
            ok, _, _, _ = rate_kernel(0, PF, tier[i] * 3, S, key[i] * 2, t[i], cost[i])
            admitted += ok
        return admitted

    return loop


#: The scale of the in-process figures (``--smoke``: 0.01).
BASE_SCALE = 1.0


def _prepared(scale: float) -> tuple[Any, Any, Any, Any]:
    """The scenario at ``scale`` and its arrivals, draws and compiled policy (as simulate)."""
    from ratesim import scenarios
    from ratesim.compile import compile_policy, draw_requests
    from ratesim.rng import Streams
    from ratesim.traffic import generate_arrivals

    sc = scenarios.get("exchange-surge", scale=scale)
    streams = Streams(sc.seed)
    arrivals = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
    layers = compile_policy(sc, arrivals)
    return sc, arrivals, draw_requests(sc, arrivals, streams), layers


#: The sliding logs' state of the last :func:`loop_seconds` run (see :func:`log_state_bytes`).
LAST_LOG_STATE: dict[str, int] = {}


def log_state_bytes(layers: list[Any], world: Any) -> dict[str, int]:
    """The sliding logs' state of a finished compiled run: ``before``, bytes of ``limit + 2``
    int64 per key of every table holding a log (the representation the compiled runner had,
    the stores' own); ``after``, its tables' offset entries plus the rings its pools hold;
    ``allocated``, the offset entries plus the pools' allocated size."""
    from ratesim.fast.layout import L_NKEYS
    from ratesim.fast.logpool import NODE_POOL, POOL_USED, REDIS_POOL, is_log

    before = entries_all = 0
    for pos, cl in enumerate(layers):
        tables = [(list(cl.algs), int(world.LY[pos, L_NKEYS]))]
        if cl.local_algs:
            tables.append((list(cl.local_algs), int(world.LKEYS[pos].max()) + 1))
        for algs, entries in tables:
            if any(is_log(a) for a in algs):
                before += entries * (max(a.state_size for a in algs)) * 8
                entries_all += entries * 8
    pools = [world.LOGS[NODE_POOL], world.LOGS[REDIS_POOL]]
    used = sum(int(p[POOL_USED]) for p in pools) * 8  # header, rings and free rings
    return {
        "before": before,
        "after": entries_all + used,
        "allocated": entries_all + sum(p.nbytes for p in pools),
    }


def loop_seconds(scale: float) -> tuple[int, float]:
    """(requests, wall seconds of the compiled event loop alone) for one run at ``scale``;
    its sliding logs' state is left in ``LAST_LOG_STATE``."""
    import ratesim.fast.run as fast_run

    sc, arrivals, draws, layers = _prepared(scale)
    spent: list[float] = []
    drive = fast_run._drive
    worlds: list[Any] = []

    def timed(world: Any, *args: Any, **kwargs: Any) -> Any:
        worlds.append(world)
        started = time.perf_counter()
        out = drive(world, *args, **kwargs)  # the world as it ends (its tables may have grown)
        spent.append(time.perf_counter() - started)
        return out

    fast_run._drive = timed  # type: ignore[assignment]
    try:
        fast_run.run_fast(sc, arrivals, draws, layers)
    finally:
        fast_run._drive = drive  # type: ignore[assignment]
    LAST_LOG_STATE.clear()
    LAST_LOG_STATE.update(log_state_bytes(layers, worlds[0]))
    return len(arrivals), spent[0]


def bare_seconds(repeat: int) -> tuple[float, float]:
    """Best wall seconds of the bare GCRA loop and of the ``rate_kernel`` loop over the
    exchange-surge scale-1 arrivals on its ``tier_quota`` layer's keys and tiers."""
    _, arrivals, _, layers = _prepared(BASE_SCALE)
    cl = next(c for c in layers if c.spec.name == "tier_quota")
    t = arrivals.time_us.astype(np.int64)
    key = cl.keys.astype(np.int64)
    tier = arrivals.tier.astype(np.int64)
    cost = arrivals.cost.astype(np.int64)
    P = np.array([a.params for a in cl.algs], dtype=np.int64)
    kernel_loop = _kernel_loop()
    best_bare, best_kernel = float("inf"), float("inf")
    for _ in range(repeat + 1):  # the first call compiles
        S = np.zeros((cl.n_keys, 2), dtype=np.int64)
        started = time.perf_counter()
        a = bare_gcra(t, key, tier, cost, P, S)
        best_bare = min(best_bare, time.perf_counter() - started)
        S2 = np.zeros(cl.n_keys * 2, dtype=np.int64)
        started = time.perf_counter()
        b = kernel_loop(t, key, tier, cost, P.reshape(-1), S2)
        best_kernel = min(best_kernel, time.perf_counter() - started)
        if a != b:
            raise RuntimeError(f"bare GCRA admitted {a}, rate_kernel {b}: not the same loop")
    return best_bare, best_kernel


def _log_loops() -> tuple[Any, Any]:
    """The sliding log's kernel over arrivals two ways: ``rate_kernel`` on ``limit + 2``
    int64 a key (the flat layout), and ``table_kernel`` on rings that grow in a pool."""
    from ratesim.fast.kernels import rate_kernel
    from ratesim.fast.logpool import LOG_CODE, NODE_POOL, POOL_USED, STALE, table_kernel

    @numba.njit
    def flat(t: Any, key: Any, cost: Any, P: Any, S: Any, size: int) -> int:
        admitted = 0
        for i in range(t.shape[0]):
            ok, _, _, _ = rate_kernel(LOG_CODE, P, 0, S, key[i] * size, t[i], cost[i])
            admitted += ok
        return admitted

    @numba.njit
    def rings(t: Any, key: Any, cost: Any, P: Any, S: Any, logs: Any) -> int:
        admitted = 0
        pool = logs[NODE_POOL]  # bound once, again when it grew (as the compiled loop does)
        for i in range(t.shape[0]):
            if pool[POOL_USED] == STALE:
                pool = logs[NODE_POOL]
            ok, _, _, _ = table_kernel(
                LOG_CODE, P, 0, S, key[i], pool, logs, NODE_POOL, t[i], cost[i]
            )
            admitted += ok
        return admitted

    return flat, rings


def log_kernel_seconds(repeat: int) -> tuple[float, float, int]:
    """Best wall seconds of the sliding log's kernel over the exchange-surge scale-1 arrivals
    on its ``user_window`` layer's keys, flat (``limit + 2`` a key) and on growing rings, and
    the requests; raise if the two admit differently."""
    from ratesim.fast.logpool import first_rings, new_pools

    _, arrivals, _, layers = _prepared(BASE_SCALE)
    cl = next(c for c in layers if c.spec.name == "user_window")
    alg = cl.algs[0]
    t = arrivals.time_us.astype(np.int64)
    key = cl.keys.astype(np.int64)
    cost = arrivals.cost.astype(np.int64)
    P = np.array(alg.params, dtype=np.int64)
    flat, rings = _log_loops()
    best_flat, best_rings = float("inf"), float("inf")
    for _ in range(repeat + 1):  # the first call compiles
        S = np.zeros(cl.n_keys * alg.state_size, dtype=np.int64)
        started = time.perf_counter()
        a = flat(t, key, cost, P, S, alg.state_size)
        best_flat = min(best_flat, time.perf_counter() - started)
        logs = new_pools(first_rings(cl.n_keys, [alg]), 0, 0)
        S1 = np.zeros(cl.n_keys, dtype=np.int64)
        started = time.perf_counter()
        b = rings(t, key, cost, P, S1, logs)
        best_rings = min(best_rings, time.perf_counter() - started)
        if a != b:
            raise RuntimeError(f"flat log admitted {a}, rings {b}: not the same decisions")
    return best_flat, best_rings, len(t)


def simulate_seconds(
    scale: float, requests: str = "all", duration_s: float | None = None
) -> tuple[int, float]:
    """(requests, wall seconds) of one ``simulate(..., engine="fast")`` end to end; with
    ``requests`` other than "all" the run is bounded (``ratesim.fast.bounded``: inputs made
    chunk by chunk, aggregates, sample and oracle gap streamed); ``duration_s`` overrides the
    simulated time (as ``ratesim run --duration``)."""
    from ratesim import Scenario, scenarios, simulate

    sc = scenarios.get("exchange-surge", scale=scale)
    if duration_s is not None:
        sc = Scenario.model_validate({**sc.model_dump(), "duration_s": duration_s})
    started = time.perf_counter()
    r = simulate(sc, engine="fast", requests=requests)
    wall = time.perf_counter() - started
    return int(r.totals["arrivals"]), wall


def stream_child(scale: float, duration_s: float | None = None) -> dict[str, Any]:
    """One bounded ``simulate(..., requests="none")`` at ``scale`` (for ``duration_s`` simulated
    seconds, default the scenario's) in a child process: requests, wall seconds (streamed
    aggregates and the oracle gap included) and its own peak RSS (GiB)."""
    cmd = [sys.executable, __file__, "--stream-child", str(scale)]
    if duration_s is not None:
        cmd += ["--duration", str(duration_s)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    info: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    info["rss_gib"] = info["self_rss_kib"] / 2**20
    return info


def _stream_child_main(scale: float, duration_s: float | None) -> None:
    import resource

    simulate_seconds(0.01, "none")  # load the compiled code
    n, wall = simulate_seconds(scale, "none", duration_s)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"n": n, "wall_s": wall, "self_rss_kib": rss}))


def child(scale: float) -> dict[str, Any]:
    """Run one scale in a child process: its simulate wall, loop seconds, requests, peak RSS."""
    cmd = [sys.executable, __file__, "--child", str(scale)]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    info: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    info["rss_gib"] = info["self_rss_kib"] / 2**20  # the child's own peak (Linux: KiB)
    return info


def _child_main(scale: float) -> None:
    """In the child: warm the compiled code on a tiny run, then one timed loop and one timed
    simulate at ``scale``; print them as JSON with this process's peak RSS (KiB)."""
    import resource

    loop_seconds(0.01)
    n, loop_s = loop_seconds(scale)
    log_state = dict(LAST_LOG_STATE)
    _, wall = simulate_seconds(scale)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    info = {"n": n, "loop_s": loop_s, "wall_s": wall, "self_rss_kib": rss, "log": log_state}
    print(json.dumps(info))


def lua_lines(smoke: bool) -> list[str]:
    """The GCRA lines of ``bench_lua_cpu.py`` (server CPU per call, ratio to the trivial
    GCRA, the target's verdict), run as a child process; one line saying why when skipped."""
    import shutil
    from pathlib import Path

    if shutil.which("redis-server") is None:
        return ["  (no redis-server on PATH: the Lua's server CPU not measured)"]
    script = Path(__file__).with_name("bench_lua_cpu.py")
    size = ["--rounds", "1", "--chunks", "1", "--chunk", "50", "--warmup", "100"] if smoke else []
    cmd = [sys.executable, str(script), "--algos", "gcra", "--before", "none", *size]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True).stdout
    keep = ("FCALL", "EVALSHA", "  gcra")
    return ["  " + line.strip() for line in out.splitlines() if line.startswith(keep)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of R (in-process figures)")
    parser.add_argument("--scales", default="0.25,1,4,16,25", help="cost per request at these")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--stream-child", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--smoke", action="store_true", help="tiny run (scale 0.01): it works")
    args = parser.parse_args(argv)
    if args.smoke:  # tests/test_benchmarks_smoke.py: every figure at scale 0.01, one child
        global BASE_SCALE
        BASE_SCALE, args.repeat, args.scales = 0.01, 1, "0.01"
    if args.child is not None:
        _child_main(args.child)
        return 0
    if args.stream_child is not None:
        _stream_child_main(args.stream_child, args.duration)
        return 0

    loop_seconds(0.01)  # load (or compile) the compiled code
    loops = [loop_seconds(BASE_SCALE) for _ in range(args.repeat)]
    n1 = loops[0][0]
    loop_ns = min(s for _, s in loops) / n1 * 1e9
    bare_s, kernel_s = bare_seconds(args.repeat)
    e2e = min(simulate_seconds(BASE_SCALE)[1] for _ in range(args.repeat))
    e2e_bounded = min(simulate_seconds(BASE_SCALE, "none")[1] for _ in range(args.repeat))
    flat_s, rings_s, n_log = log_kernel_seconds(args.repeat)
    print(f"exchange-surge scale {BASE_SCALE:g} ({n1:,} requests), best of {args.repeat}:")
    print(f"  compiled loop           {loop_ns:9.0f} ns/request   target <= {TARGET_LOOP_NS}")
    print(f"  bare numba GCRA loop    {bare_s / n1 * 1e9:9.1f} ns/request   (the ceiling)")
    print(f"  rate_kernel, offsets    {kernel_s / n1 * 1e9:9.1f} ns/request   (same loop)")
    print(f"  simulate end to end     {n1 / e2e:9,.0f} req/s        target >= {TARGET_E2E_RPS:,}")
    print(f"    bounded (rows 'none') {n1 / e2e_bounded:9,.0f} req/s        (streamed, both cores)")
    print(f"  sliding log, limit + 2  {flat_s / n_log * 1e9:9.1f} ns/request   (user_window alone)")
    print(f"  sliding log, rings      {rings_s / n_log * 1e9:9.1f} ns/request   (same loop)")

    scales = [float(s) for s in args.scales.split(",") if s]
    per_scale = {s: child(s) for s in scales}
    bounded = {s: stream_child(s) for s in scales}
    big = 25.0 if not args.smoke else BASE_SCALE
    if big in per_scale:
        r = per_scale[big]
        st = bounded[big]
        print(f"exchange-surge scale {big:g} ({st['n']:,} requests), child process each:")
        print(
            f"  bounded run (requests='none': inputs chunk by chunk, aggregates, oracle gap)"
            f"\n    wall {st['wall_s']:9.1f} s            target < {TARGET_S25_WALL_S}"
            f"\n    peak RSS {st['rss_gib']:5.2f} GiB          target < {TARGET_S25_RSS_GIB}"
        )
        print(
            f"  whole-table run (requests='all'): wall {r['wall_s']:.1f} s, "
            f"peak RSS {r['rss_gib']:.2f} GiB"
        )
        long = stream_child(big, 600.0 if not args.smoke else 6.0)
        print(
            f"exchange-surge scale {big:g} --duration {600 if not args.smoke else 6}"
            f" ({long['n']:,} requests), bounded, child process:"
        )
        print(f"    wall {long['wall_s']:9.1f} s            target < {TARGET_600_WALL_S}")
        print(f"    peak RSS {long['rss_gib']:5.2f} GiB          target < {TARGET_600_RSS_GIB}")
    print(
        "cost per request by scale (child processes; the loop alone, simulate with whole tables,"
        " and bounded, requests='none'):"
    )
    for s, r in per_scale.items():
        b = bounded[s]
        print(
            f"  scale {s:>5g}: {r['n']:>11,} requests  loop {r['loop_s'] / r['n'] * 1e9:5.0f} ns/req"
            f"  whole {r['wall_s'] / r['n'] * 1e9:5.0f} ns/req, {r['rss_gib']:5.2f} GiB"
            f"  bounded {b['wall_s'] / b['n'] * 1e9:5.0f} ns/req, {b['rss_gib']:5.2f} GiB"
        )
    print("sliding logs' state by scale (limit + 2 int64 a key before; offsets + rings after):")
    for s, r in per_scale.items():
        lg = {k: v / 2**20 for k, v in r["log"].items()}
        print(
            f"  scale {s:>5g}: before {lg['before']:9.1f} MiB   after {lg['after']:8.1f} MiB"
            f"   ({lg['before'] / max(lg['after'], 1e-9):5.0f}x less; pools allocated"
            f" {lg['allocated']:7.1f} MiB)"
        )
    print("the GCRA Lua's server CPU per call against a trivial GCRA (bench_lua_cpu.py):")
    for line in lua_lines(args.smoke):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
