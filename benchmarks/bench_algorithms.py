"""Decisions per second of every rate algorithm through ``MemoryStore.acquire``.

One fixed request sequence (seeded numpy: Zipf-ish popularity over the keys, exponential gaps,
so times increase) is replayed against:

* a bare Python loop doing only a dict lookup and one integer comparison per request (the floor
  any pure-Python per-request path pays), and
* each algorithm of :mod:`ratesim.algorithms`, each repetition on a fresh ``MemoryStore``;
* the two completion-driven machines through their method API on one state (no store): a
  ``ConcurrencyLimit`` acquire (+ complete when admitted) and a ``CircuitBreaker`` try_pass
  (+ on_complete when passed) per request.

Every timing is the best of ``--repeats`` runs (``time.perf_counter``). An algorithm that cannot
be built or cannot decide (e.g. a placeholder still being written) is listed as failed with its
error, never silently skipped. Run: ``.venv/bin/python benchmarks/bench_algorithms.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import ratesim.algorithms as algorithms
from ratesim.algorithms.concurrency import ADMIT
from ratesim.stores import MemoryStore

SEED = 20240111  # US spot bitcoin ETFs' first trading day

# (label, class name in ratesim.algorithms, keyword arguments): 10 req/s per key, burst ~20.
CANDIDATES: list[tuple[str, str, dict[str, Any]]] = [
    ("GCRA", "GCRA", {"max_burst": 19, "count_per_period": 10, "period_s": 1.0}),
    ("TokenBucket continuous", "TokenBucket", {"rate": 10, "burst": 20}),
    (
        "TokenBucket ticker",
        "TokenBucket",
        {"rate": 10, "burst": 20, "refill": "ticker", "fill_interval_s": 0.1},
    ),
    ("SlidingWindowLog", "SlidingWindowLog", {"limit": 20, "window_s": 1.0}),
    ("SlidingWindowCounter", "SlidingWindowCounter", {"limit": 20, "window_s": 1.0}),
    ("FixedWindow", "FixedWindow", {"limit": 20, "window_s": 1.0}),
    ("BucketedWindow", "BucketedWindow", {"limit": 20, "window_s": 1.0, "buckets": 10}),
    (
        "DoubleBufferedWindow",
        "DoubleBufferedWindow",
        {"limit": 20, "window_s": 1.0, "buckets": 10, "swap_interval_s": 0.1},
    ),
]


def make_requests(n: int, keys: int, rate_per_s: float) -> tuple[list[int], list[int]]:
    """``n`` requests: (key ids, integer µs times), Python ints so no numpy path is timed."""
    rng = np.random.default_rng(SEED)
    weights = 1.0 / np.arange(1, keys + 1) ** 1.1
    key_ids = rng.choice(keys, size=n, p=weights / weights.sum())
    gaps_us = rng.exponential(1e6 / rate_per_s, size=n)
    times_us = np.cumsum(np.maximum(1, np.round(gaps_us))).astype(np.int64)
    return key_ids.tolist(), times_us.tolist()


def bare_loop(keys: list[int], times: list[int]) -> int:
    """The baseline: a dict lookup and an integer comparison per request."""
    table = dict.fromkeys(range(max(keys) + 1), 0)
    allowed = 0
    for key, now_us in zip(keys, times, strict=True):
        if now_us > table[key]:
            allowed += 1
    return allowed


def store_loop(limiter: Any) -> Callable[[list[int], list[int]], int]:
    """A run of every request through a fresh ``MemoryStore``; returns the admitted count."""

    def run(keys: list[int], times: list[int]) -> int:
        acquire = MemoryStore().acquire
        allowed = 0
        for key, now_us in zip(keys, times, strict=True):
            if acquire(limiter, key, now_us).allowed:
                allowed += 1
        return allowed

    return run


def best_of(
    fn: Callable[[list[int], list[int]], int], keys: list[int], times: list[int], repeats: int
) -> tuple[float, int]:
    """Best wall time (s) over ``repeats`` runs, and the admitted count (same every run)."""
    best = float("inf")
    admitted = -1
    for _ in range(repeats):
        t0 = time.perf_counter()
        got = fn(keys, times)
        best = min(best, time.perf_counter() - t0)
        if admitted not in (-1, got):
            raise RuntimeError(f"non-deterministic: {admitted} then {got} admitted")
        admitted = got
    return best, admitted


def concurrency_loop(keys: list[int], times: list[int]) -> int:
    """Per request: ``acquire`` then, when admitted, ``complete`` at once (method API)."""
    limiter = algorithms.ConcurrencyLimit(50, max_wait_s=0.2)
    state = limiter.new_state()
    acquire, complete = limiter.acquire, limiter.complete
    admitted = 0
    for now_us in times:
        if acquire(state, now_us) == ADMIT:
            admitted += 1
            complete(state, now_us)
    return admitted


def breaker_loop(keys: list[int], times: list[int]) -> int:
    """Per request: ``try_pass`` then ``on_complete``; even keys are slow, so it trips now and then."""
    # Even keys (~57% of requests) are slow: it trips a few times and passes about half.
    breaker = algorithms.CircuitBreaker("slow_ratio", 0.65, max_rt_s=0.2, open_s=1.0)
    state = breaker.new_state()
    try_pass, on_complete = breaker.try_pass, breaker.on_complete
    passed = 0
    for key, now_us in zip(keys, times, strict=True):
        if try_pass(state, now_us):
            passed += 1
            on_complete(state, now_us, 300_000 if key % 2 == 0 else 50_000, 0)
    return passed


def build(class_name: str, kwargs: dict[str, Any]) -> Any:
    """Construct the limiter and make one decision, so a placeholder fails here, not mid-run."""
    limiter = getattr(algorithms, class_name)(**kwargs)
    MemoryStore().acquire(limiter, 0, 0)
    return limiter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=1_000)
    ap.add_argument("--rate", type=float, default=20_000.0, help="aggregate requests/s")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    start = time.perf_counter()
    keys, times = make_requests(args.requests, args.keys, args.rate)
    span_s = (times[-1] - times[0]) / 1e6
    print(
        f"{args.requests} requests, {args.keys} keys (Zipf 1.1), {span_s:.1f} s of traffic, "
        f"best of {args.repeats}; Python {sys.version.split()[0]}"
    )

    rows: list[tuple[str, float, int]] = []
    base_s, base_allowed = best_of(bare_loop, keys, times, args.repeats)
    rows.append(("bare loop (dict + int compare)", base_s, base_allowed))
    failed: list[tuple[str, str]] = []
    for label, class_name, kwargs in CANDIDATES:
        try:
            limiter = build(class_name, kwargs)
            secs, allowed = best_of(store_loop(limiter), keys, times, args.repeats)
        except Exception as exc:  # noqa: BLE001 - report every failure, whatever it is
            failed.append((label, f"{type(exc).__name__}: {exc}"))
            continue
        rows.append((label, secs, allowed))

    for label, loop in (
        ("ConcurrencyLimit acquire+complete", concurrency_loop),
        ("CircuitBreaker try_pass+complete", breaker_loop),
    ):
        try:
            secs, allowed = best_of(loop, keys, times, args.repeats)
        except Exception as exc:  # noqa: BLE001 - report every failure, whatever it is
            failed.append((label, f"{type(exc).__name__}: {exc}"))
            continue
        rows.append((label, secs, allowed))

    print(f"\n{'algorithm':<36}{'decisions/s':>14}{'x bare loop':>13}{'admitted':>10}")
    for label, secs, allowed in rows:
        rate = args.requests / secs
        slowdown = secs / base_s
        print(f"{label:<36}{rate:>14,.0f}{slowdown:>12.1f}x{allowed / args.requests:>10.1%}")
    if failed:
        print("\nfailed to construct or run (not timed):")
        for label, why in failed:
            print(f"  {label}: {why}")
    print(f"\ntotal {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
