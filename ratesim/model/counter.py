"""A counter-based random generator: the draws of a retry, by (seed, origin, attempt, stream).

A retry's randomness (its node under a ``random`` load balancer, its latencies, Redis service
times, backend service time, and the jitter of a backoff) cannot come from the per-purpose
streams of :mod:`ratesim.rng`: those are consumed in arrival order before the run, and a retry
exists only once an earlier attempt was rejected. Drawing it from a stream during the run would
make every later draw depend on which requests retried, so a change of retry policy would
reshuffle the draws of requests that never retried, and two runners would agree only if they
created retries in the very same order.

Instead each number is a pure function of where it is used: :func:`counter_u64` hashes
``(seed, origin, attempt, stream, k)`` with SplitMix64's finaliser (Steele, Lea and Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014; the ``splitmix64`` of
``java.util.SplittableRandom``), chained over the five integers. ``origin`` is the row (in the
run's own arrival order) of the user request being retried, ``attempt`` the attempt the number
belongs to (2 = the first retry), ``stream`` one of the ``STREAM_*`` purposes and ``k`` the
index of the number within it. First attempts never use it: they keep the streams' draws, so a
run without clients is unchanged.

Integers are in ``[0, 2**64)``; the functions are plain Python (``register_jitable``): from
Python they compute on Python ints masked to 64 bits, from numba on ``uint64`` arguments.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba.extending import register_jitable

#: A 64-bit unsigned integer: a Python int in ``[0, 2**64)``, a numpy ``uint64`` (numba) or an
#: array of them (the functions are the same arithmetic on all three).
U64 = Any

MASK64 = 0xFFFFFFFFFFFFFFFF
#: The purposes of a retry's draws (``stream`` of :func:`counter_u64`).
STREAM_NODE = 1
STREAM_LATENCY = 2
STREAM_SERVICE = 3
STREAM_BACKEND = 4
STREAM_JITTER = 5


@register_jitable
def splitmix64(x: U64) -> U64:
    """SplitMix64: the golden-gamma increment then the two xor-shift-multiply rounds."""
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


@register_jitable
def counter_u64(seed: U64, origin: U64, attempt: U64, stream: U64, k: U64) -> U64:
    """A 64-bit number for ``(seed, origin, attempt, stream, k)`` (all >= 0, below 2**64;
    ``stream`` and ``k`` below 2**32)."""
    x = splitmix64(seed)
    x = splitmix64(x ^ origin)
    x = splitmix64(x ^ attempt)
    return splitmix64(x ^ ((stream << 32) | k))


@register_jitable
def u24_of(h: U64) -> U64:
    """The top 24 bits of ``h``: a uniform integer in ``[0, 2**24)`` (backoff jitter)."""
    return h >> 40


@register_jitable
def unit_of(h: U64) -> Any:
    """The top 53 bits of ``h`` as a double in ``[0, 1)`` (as numpy's ``random()`` maps its
    64-bit outputs)."""
    return (h >> 11) * (1.0 / 9007199254740992.0)


def uniforms(seed: int, origin: np.ndarray, attempt: np.ndarray, stream: int, k: int) -> np.ndarray:
    """Number ``k`` of ``stream`` for each ``(origin[j], attempt[j])``, as doubles in
    ``[0, 1)``: the same function on uint64 arrays (wrapping, as numba's uint64 does)."""
    o = np.asarray(origin).astype(np.uint64)
    a = np.asarray(attempt).astype(np.uint64)
    with np.errstate(over="ignore"):
        s = np.full(o.shape, seed, dtype=np.uint64)
        h = counter_u64(s, o, a, np.uint64(stream), np.uint64(k))
        return unit_of(h)


def jitter_u24(seed: int, origin: int, attempt: int) -> int:
    """The backoff jitter of ``attempt`` of user request ``origin`` (``[0, 2**24)``)."""
    return int(u24_of(counter_u64(seed, origin, attempt, STREAM_JITTER, 0)))
