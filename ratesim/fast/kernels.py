"""The algorithms' kernels compiled with numba, one dispatch over them, and the node clock.

The kernels are the very functions of :mod:`ratesim.algorithms` (one source of truth per
algorithm), compiled; ``KERNELS`` fixes their codes, the order ``rate_kernel`` dispatches in.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..algorithms.breaker import breaker_on_complete, breaker_release_probe, breaker_try_pass
from ..algorithms.bucketed import bucketed_kernel, double_buffered_kernel
from ..algorithms.concurrency import (
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)
from ..algorithms.gcra import gcra_kernel
from ..algorithms.sliding_log import sliding_log_kernel
from ..algorithms.token_bucket import token_bucket_kernel
from ..algorithms.window_counter import fixed_window_kernel, sliding_counter_kernel
from .layout import N_DRIFT, N_OFF, N_PERFECT

# Kernel codes: the position here (the order of the dispatch in ``rate_kernel``).
KERNELS = (
    gcra_kernel,
    token_bucket_kernel,
    sliding_log_kernel,
    fixed_window_kernel,
    sliding_counter_kernel,
    bucketed_kernel,
    double_buffered_kernel,
)
_gcra = numba.njit(cache=True)(gcra_kernel)
_tb = numba.njit(cache=True)(token_bucket_kernel)
_log = numba.njit(cache=True)(sliding_log_kernel)
_fixed = numba.njit(cache=True)(fixed_window_kernel)
_counter = numba.njit(cache=True)(sliding_counter_kernel)
_bucketed = numba.njit(cache=True)(bucketed_kernel)
_double = numba.njit(cache=True)(double_buffered_kernel)
conc_acquire = numba.njit(cache=True)(concurrency_acquire)
conc_complete = numba.njit(cache=True)(concurrency_complete)
conc_cancel = numba.njit(cache=True)(concurrency_cancel_wait)
br_try_pass = numba.njit(cache=True)(breaker_try_pass)
br_on_complete = numba.njit(cache=True)(breaker_on_complete)
br_release_probe = numba.njit(cache=True)(breaker_release_probe)


@numba.njit(cache=True)
def rate_kernel(kind: int, p: Any, st: Any, now: int, cost: int) -> tuple[int, int, int, int]:
    if kind == 0:
        return _gcra(p, st, now, cost)
    if kind == 1:
        return _tb(p, st, now, cost)
    if kind == 2:
        return _log(p, st, now, cost)
    if kind == 3:
        return _fixed(p, st, now, cost)
    if kind == 4:
        return _counter(p, st, now, cost)
    if kind == 5:
        return _bucketed(p, st, now, cost)
    return _double(p, st, now, cost)


@numba.njit(cache=True)
def node_clock(NV: Any, JUMPS: Any, nd: int, t: int) -> int:
    """``NodeClock.read`` for a clock without slews (offset, drift, jumps)."""
    if NV[nd, N_PERFECT]:
        return t
    local = t + NV[nd, N_OFF]
    for j in range(JUMPS.shape[1]):
        at = JUMPS[nd, j, 0]
        if at == -1 and JUMPS[nd, j, 1] == 0:
            break
        if t >= at:
            local += JUMPS[nd, j, 1]
    # floor(t * drift / 10^12) without int64 overflow: split both factors in base 10^6
    n = NV[nd, N_DRIFT]
    base = 1_000_000
    a = t // base
    b = t - a * base
    c = n // base
    d = n - c * base
    m = a * d + b * c
    m1 = m // base
    m0 = m - m1 * base
    rem = m0 * base + b * d
    q = a * c + m1
    if rem >= 1_000_000_000_000:
        q += 1
    return local + q


def kernel_code(kernel: object) -> int:
    """The code ``rate_kernel`` dispatches ``kernel`` (an algorithm's kernel function) by."""
    return KERNELS.index(kernel)


def fill_tier_rows(kk: np.ndarray, pp: np.ndarray, algs: list[Any], rate: bool = True) -> None:
    """Write each tier's kernel code into ``kk[tier]`` (-1 unless ``rate``: guards have their
    own functions) and its integer parameters into ``pp[tier]`` (zero-padded)."""
    for tr, alg in enumerate(algs[: len(kk)]):
        kk[tr] = kernel_code(alg.kernel) if rate else -1
        pp[tr, : len(alg.params)] = alg.params
