"""Benchmark: the oracle and its gap, streamed against the whole-run path (issue 10, Build
items 1 and 4), and the other row consumers of ``ratesim`` (sample, Parquet).

    .venv/bin/python benchmarks/bench_oracle_stream.py [--repeat R] [--scales 1,4]

For exchange-surge at each scale, in this one process, best of R rounds (each round runs
every figure in turn), ns per request:

* whole: ``run_oracle(arrivals, layers)`` then ``ratesim.fast.oracle_gap`` (what
  ``Result.vs_oracle`` runs), on the whole run's arrays;
* streamed: ``OracleGapConsumer`` fed the run's rows in 1 s batches of arrival time
  (``--chunk-s``), the oracle's limiter state carried across them and the gap folded; the
  batches are cut before the timing (the runner hands them over);
* the gap alone, whole: ``oracle_gap`` (the streamed gap's compiled pass fed the run as one
  batch: a row where system and oracle agree costs a comparison);
* ``RowSample`` (the bottom-k sample, 100,000 rows) and ``ParquetSink`` fed the same batches,
  beside the whole run's ``Result.requests.to_parquet`` (frame built and written).

The machine is shared: read the ratios (one process), not the absolute figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _batches import batches  # noqa: E402

import ratesim.scenarios as builtin  # noqa: E402
from ratesim.engine import compile_policy, run_oracle, simulate  # noqa: E402
from ratesim.fast.oracle import oracle_gap  # noqa: E402
from ratesim.oracle_stream import OracleGapConsumer  # noqa: E402
from ratesim.sampling import RowSample  # noqa: E402
from ratesim.sinks import ParquetSink  # noqa: E402


def best_of(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """The least of ``repeat`` wall times (s) of each of ``fns``, run in turn each round (so a
    load that comes and goes weighs on all of them alike)."""
    least = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for label, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            least[label] = min(least[label], time.perf_counter() - t0)
    return least


def bench(scale: float, repeat: int, chunk_s: float) -> None:
    sc = builtin.get("exchange-surge", scale)
    res = simulate(sc, seed=1, engine="fast")
    data = res.data
    a = data.arrivals
    n = len(a)
    layers = compile_policy(sc, a)
    cuts = np.searchsorted(a.time_us, np.arange(1, sc.duration_s + 1) * round(chunk_s * 1e6))
    cut = list(batches(data, layers, cuts))
    names = res.layer_names
    nl, nt = len(names), len(a.tier_names)
    ora = run_oracle(a, layers).rejected_by

    def whole() -> None:
        o = run_oracle(a, layers)
        oracle_gap(a.time_us, data.rejected_by, o.rejected_by, a.tier, a.abusive, nl, nt, 10**6)

    def streamed() -> None:
        consumer = OracleGapConsumer(names, 1.0)
        for b, lay, first in cut:
            consumer.fold(b, lay, first)
        consumer.finish()

    def gap_whole() -> None:
        oracle_gap(a.time_us, data.rejected_by, ora, a.tier, a.abusive, nl, nt, 10**6)

    def sample() -> None:
        s = RowSample(1)
        for b, lay, first in cut:
            s.fold(b, lay, first)
        s.finish()

    def parquet() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            sink = ParquetSink(Path(tmp) / "r.parquet", names)
            for b, lay, first in cut:
                sink.fold(b, lay, first)
            sink.finish()

    def parquet_whole() -> None:  # what ``ratesim run --out`` does today
        with tempfile.TemporaryDirectory() as tmp:
            res.__dict__.pop("requests", None)  # the frame built again, as the sink builds it
            res.requests.to_parquet(Path(tmp) / "r.parquet", index=False)

    streamed()  # compile and warm up
    gap_whole()
    fns: dict[str, Callable[[], object]] = {
        "oracle + gap, whole": whole,
        "oracle + gap, streamed": streamed,
        "gap alone, whole": gap_whole,
        "RowSample (100k rows)": sample,
        "ParquetSink": parquet,
        "requests.to_parquet, whole": parquet_whole,
    }
    figures = best_of(fns, repeat)
    print(f"exchange-surge scale {scale:g}: {n:,} requests, {len(cut)} batches, best of {repeat}")
    for label, s in figures.items():
        print(f"  {label:30s} {s / n * 1e9:8.1f} ns/request")
    w, st = figures["oracle + gap, whole"], figures["oracle + gap, streamed"]
    print(f"  streamed / whole: {st / w:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--scales", default="1,4")
    p.add_argument("--chunk-s", type=float, default=1.0)
    args = p.parse_args()
    for scale in (float(x) for x in args.scales.split(",")):
        bench(scale, args.repeat, args.chunk_s)


if __name__ == "__main__":
    main()
