"""Benchmark: a run's inputs made chunk by chunk (``ratesim.chunks``) against the whole run.

    .venv/bin/python benchmarks/bench_chunks.py [--scale 25] [--chunk-us 1000000] [--repeat 1]

Each path runs in its own child process, which reports its wall time and its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``):

* ``whole``: ``generate_arrivals`` + ``compile_policy`` + ``draw_requests`` over the whole run
  of exchange-surge at ``--scale`` (what ``simulate`` makes before its loop);
* ``chunks``: iterating :class:`ratesim.chunks.ChunkSource` with ``--chunk-us``, each chunk
  dropped once made (a runner would decide and fold it).

Times per request are wall time / requests (the shared machine makes them noisy: best of
``--repeat`` children). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(mode: str, scale: float, chunk_us: int) -> dict[str, float]:
    """Run one path in this process; its requests, wall time (s) and peak RSS (bytes)."""
    import ratesim.scenarios as builtin
    from ratesim.chunks import ChunkSource
    from ratesim.compile import compile_policy, draw_requests
    from ratesim.rng import Streams
    from ratesim.traffic import generate_arrivals

    sc = builtin.get("exchange-surge", scale=scale)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    n = 0
    if mode == "whole":
        streams = Streams(sc.seed)
        arrivals = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
        layers = compile_policy(sc, arrivals)
        draws = draw_requests(sc, arrivals, streams)
        n = len(arrivals)
        del layers, draws
    else:
        biggest = 0
        for arrivals, _draws, _layers in ChunkSource(sc, sc.seed, chunk_us):
            n += len(arrivals)
            biggest = max(biggest, len(arrivals))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"requests": n, "wall_s": wall, "peak_rss": peak, "rss_at_start": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=25.0)
    ap.add_argument("--chunk-us", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--child", choices=["whole", "chunks"])
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.scale, args.chunk_us)))
        return
    for mode in ("chunks", "whole"):
        best: dict[str, float] | None = None
        for _ in range(args.repeat):
            cmd = [sys.executable, __file__, "--child", mode, "--scale", str(args.scale),
                   "--chunk-us", str(args.chunk_us)]  # fmt: skip
            out = json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)
            if best is None or out["wall_s"] < best["wall_s"]:
                best = out
        assert best is not None
        print(
            f"{mode:7s} exchange-surge x{args.scale:g}: {best['requests']:,.0f} requests, "
            f"{best['wall_s']:.2f} s ({best['wall_s'] / best['requests'] * 1e9:.0f} ns/request), "
            f"peak RSS {best['peak_rss'] / 2**30:.3f} GiB "
            f"(the interpreter with imports: {best['rss_at_start'] / 2**30:.3f} GiB)"
        )


if __name__ == "__main__":
    main()
