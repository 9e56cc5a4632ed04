"""The domain of every scenario input, in one place, and why each bound is what it is.

Everything the engines compute is an integer number of microseconds (µs). Two number systems
must hold every value exactly: numba's int64 (the fast engine, |x| < 2**63) and the doubles of
Redis's Lua (integers exact below 2**53). The kernels already promise exactness for
``|now_us| < 2**52`` and algorithm durations below 2**51 µs (``ratesim.algorithms.base``): a
kernel adds at most one such duration (or two, in GCRA's ``now + 2 * DVT``) to ``now_us``,
which stays below 2**53. The bounds here make the *world model* keep ``now_us`` in that range.

Derivation
----------
* An **instant or span of the run** (``duration_s``, fault windows, spikes, failovers, clock
  step times, traffic segment ends, ``interval_s``, ...) is at most ``MAX_RUN_S = 1e7`` s
  (10**13 µs < 2**44, about 116 days).
* A **single delay** (one latency sample after spikes, one Redis or backend service time, a
  timeout, a pool wait, a drift guard, a concurrency wait, a spike's ``add_ms``, lost writes) is
  at most ``MAX_DELAY_MS = 1e9`` ms (10**12 µs < 2**40, about 11.6 days).
* A **clock shift** (a clock's ``|offset_ms|`` plus every ``|by_ms|`` of its steps, plus every
  failover ``|clock_step_ms|`` for the Redis clock) totals at most ``2**51`` µs (about 71 years,
  so a clock may read Unix-epoch microseconds).
* The **event horizon** ``H`` (the latest true instant any event of the run can have) must stay
  below ``MAX_HORIZON_US = 2**49`` µs. It is the run's end plus the longest path of a request
  (pool wait + per global layer a timeout, two latencies, a service time and a script reload's
  round trip + a concurrency wait + the slowest backend service) plus the Redis queue that
  commands can pile up (commands x the largest service time). :func:`ratesim.budget.check_run_size`
  computes it; no single field decides it.
* Then a clock reading is ``t * (1 + drift) + shift`` with ``|drift| <= 1`` (``drift_ppm`` in
  ``(-10**6, 10**6]``): ``|local| <= 2 * 2**49 + 2**51 < 2**52`` = ``MAX_ABS_NOW_US``, which is
  what the kernels need, and every int64 sum the engines form stays far below 2**63.
* **Counts** that a kernel compares with a sum (``limit``, ``burst``...) stay below ``2**52``:
  a kernel checks ``count + cost <= limit`` with ``cost <= limit`` (larger costs are rejected
  before any sum), so the sum stays below 2**53. Bucket rings also sum up to one count per
  bucket: ``limit * (buckets + 1) < 2**53``.
* **State per key** is at most ``MAX_STATE_INTS_PER_KEY = 2**20`` integers (8 MiB as int64,
  about 40 MiB as Python ints in the memory store): a sliding log's ``limit`` is at most
  ``2**20 - 2``. A ring has at most ``MAX_BUCKETS = 1024`` buckets, since a rejected request in
  a ``BucketedWindow`` costs ``buckets**2`` steps (in the kernel and in Lua on the Redis server).
* **Sizes**: at most ``MAX_NODES`` nodes, ``MAX_USERS`` users, ``MAX_LAYERS`` layers (the
  engine's event priorities hold a layer position in 6 bits), ``MAX_LIST`` entries in each list
  of faults, spikes or clock steps, costs up to ``MAX_COST``. What a whole run needs (requests,
  memory, horizon) is checked by :func:`ratesim.budget.check_run_size`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated

from pydantic import AfterValidator

from .algorithms.base import (
    MAX_ABS_NOW_US,
    MAX_BUCKETS,
    MAX_EXACT_INT,
    MAX_LIMIT,
    MAX_STATE_INTS_PER_KEY,
)

__all__ = [
    "MAX_ABS_NOW_US",
    "MAX_BUCKETS",
    "MAX_CLOCK_SHIFT_US",
    "MAX_COST",
    "MAX_DELAY_MS",
    "MAX_DELAY_US",
    "MAX_EXACT_INT",
    "MAX_FACTOR",
    "MAX_HORIZON_US",
    "MAX_LAYERS",
    "MAX_LIMIT",
    "MAX_LIST",
    "MAX_NAME_CHARS",
    "MAX_NODES",
    "MAX_POOL",
    "MAX_RATE_PER_S",
    "MAX_RUN_S",
    "MAX_RUN_US",
    "MAX_STATE_INTS_PER_KEY",
    "MAX_USERS",
    "DelayMs",
    "DelayS",
    "InstantS",
    "RunS",
    "Text",
]

#: Longest run and latest instant of a scenario, seconds (10**13 µs < 2**44).
MAX_RUN_S = 1e7
MAX_RUN_US = 10**13
#: Longest single delay, milliseconds (10**12 µs < 2**40).
MAX_DELAY_MS = 1e9
MAX_DELAY_US = 10**12
#: Largest total shift of one clock (offset plus steps), µs.
MAX_CLOCK_SHIFT_US = 2**51
#: The latest true instant an event may have: ``2 * H + shift < 2**52``.
MAX_HORIZON_US = 2**49
#: Requests' event priorities hold a layer position below 62 (``ratesim.engine.MAX_LAYERS``).
MAX_LAYERS = 62
#: Gateway nodes, users, connections per pool.
MAX_NODES = 10_000
MAX_USERS = 10**9
MAX_POOL = 10**9
#: Entries in one list of outages, failovers, partitions, spikes or clock steps (each request
#: looks through them).
MAX_LIST = 1024
#: Largest request cost (a route cost or a trace's cost column); a cost above a limit is
#: rejected before any sum, and ``requests * cost`` stays in int64.
MAX_COST = 2**31 - 1
#: Largest multiplicative factor (spike factor, backend load factor, flash-crowd peak factor).
MAX_FACTOR = 1e6
#: Largest traffic rate, requests per second (the run-size check refuses much less in practice).
MAX_RATE_PER_S = 1e12
#: Longest scenario or layer name, characters.
MAX_NAME_CHARS = 200


def _check_seconds(max_us: int, what: str) -> AfterValidator:
    def check(v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number of seconds, got {v!r}")
        if abs(Fraction(v)) * 1_000_000 > max_us:
            raise ValueError(f"must be at most {max_us / 1e6:g} s ({what}), got {v!r}")
        return v

    return AfterValidator(check)


def _check_ms(max_us: int, what: str) -> AfterValidator:
    def check(v: float) -> float:
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number of milliseconds, got {v!r}")
        if abs(Fraction(v)) * 1_000 > max_us:
            raise ValueError(f"must be at most {max_us / 1e3:g} ms ({what}), got {v!r}")
        return v

    return AfterValidator(check)


#: A float of seconds, finite, ``|v| <= MAX_RUN_S``: an instant or span of the run.
RunS = Annotated[float, _check_seconds(MAX_RUN_US, "the longest run, about 116 days")]
#: A float of seconds, finite, ``|v| <= 2**52`` µs: an instant that is only compared with
#: true time, never added to it (a clock step's ``at_s``: a step past the run never applies).
InstantS = Annotated[float, _check_seconds(MAX_ABS_NOW_US, "2**52 us, about 142 years")]
#: A float of seconds, finite, ``|v| <= MAX_DELAY_MS / 1000``: a single delay.
DelayS = Annotated[float, _check_seconds(MAX_DELAY_US, "the longest delay, about 11.6 days")]
#: A float of milliseconds, finite, ``|v| <= MAX_DELAY_MS``: a single delay.
DelayMs = Annotated[float, _check_ms(MAX_DELAY_US, "the longest delay, about 11.6 days")]


def _check_text(v: str) -> str:
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as exc:
        # A lone surrogate (from a YAML "\\ud800" escape) cannot become a Redis key or a file.
        raise ValueError(
            f"is not valid Unicode text (cannot be UTF-8 encoded): {exc.reason}"
        ) from None
    return v


#: A string that UTF-8 can encode (no lone surrogates): names, keys, paths.
Text = Annotated[str, AfterValidator(_check_text)]


def clock_shift_us(offset_ms: float, steps_ms: list[float]) -> int:
    """``|offset| + sum |step|`` of one clock in whole µs, each rounded to the nearest µs as
    the clocks apply them (``ratesim.model.clock.ms_to_us``)."""
    return sum(abs(round(Fraction(ms) * 1_000)) for ms in [offset_ms, *steps_ms])


def check_clock_shift(where: str, offset_ms: float, steps_ms: list[float]) -> None:
    """Raise ``ValueError`` naming ``where`` when a clock's total shift exceeds 2**51 µs."""
    shift = clock_shift_us(offset_ms, steps_ms)
    if shift > MAX_CLOCK_SHIFT_US:
        raise ValueError(
            f"{where}: the total shift is {shift} us, more than 2**51 us "
            f"({MAX_CLOCK_SHIFT_US / 1e3:.3f} ms, about 71 years): the clock "
            "would read beyond +-2**52 us, where the kernels and Lua stop being exact"
        )
