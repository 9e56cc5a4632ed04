"""The model's formulas compiled with numba: the algorithms' kernels (one dispatch over the
rate ones), the clock, outage and partition lookups and the backend slowdown.

Each is the very plain-Python function of :mod:`ratesim.algorithms` or :mod:`ratesim.model`
(one source of truth per formula), compiled here once; ``KERNELS`` fixes the rate kernels'
codes, the order ``rate_kernel`` dispatches in.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np

from ..algorithms.breaker import breaker_on_complete, breaker_release_probe, breaker_try_pass
from ..algorithms.bucketed import bucketed_kernel, double_buffered_kernel
from ..algorithms.calendar_window import calendar_window_kernel
from ..algorithms.concurrency import (
    concurrency_acquire,
    concurrency_cancel_wait,
    concurrency_complete,
)
from ..algorithms.gcra import gcra_kernel
from ..algorithms.nginx_leaky import nginx_leaky_kernel
from ..algorithms.pacer import pacer_kernel
from ..algorithms.reserve_bucket import reserve_bucket_kernel
from ..algorithms.shaping import hold_us
from ..algorithms.sliding_log import sliding_log_kernel
from ..algorithms.token_bucket import token_bucket_kernel
from ..algorithms.warm_up import warm_up_kernel
from ..algorithms.window_counter import fixed_window_kernel, sliding_counter_kernel
from ..model import clock as _clock
from ..model import topology as _topology
from ..model.backend import slowed_service_us
from ..model.faults import is_partitioned, outage_kind
from ..model.redis_server import depths_merged as _depths_merged
from ..model.store_breaker import sb_gate as _sb_gate
from ..model.store_breaker import sb_observe as _sb_observe

# Kernel codes: the position here (the order of the dispatch in ``rate_kernel``).
KERNELS = (
    gcra_kernel,
    token_bucket_kernel,
    sliding_log_kernel,
    fixed_window_kernel,
    sliding_counter_kernel,
    bucketed_kernel,
    double_buffered_kernel,
    nginx_leaky_kernel,
    calendar_window_kernel,
    warm_up_kernel,
    reserve_bucket_kernel,
    pacer_kernel,
)
_gcra = numba.njit(cache=True)(gcra_kernel)
#: The GCRA kernel inlined where it is called: ``ratesim.fast.loop.run`` calls it so at the
#: Redis-side decision (``rate_kernel`` called there cost about 45 ns a call against about 2
#: inline, most of it numba reference counts on the tables, measured in a bare loop).
gcra_inline = numba.njit(cache=True, inline="always")(gcra_kernel)
#: ``rate_kernel``'s code for the GCRA kernel.
GCRA_CODE = 0
_tb = numba.njit(cache=True)(token_bucket_kernel)
#: The token bucket's kernel inlined where it is called: ``ratesim.fast.loop.prefix`` calls it
#: so for a leading node bucket (the flagship's): 42 against 15 ns a request, measured.
tb_inline = numba.njit(cache=True, inline="always")(token_bucket_kernel)
#: ``rate_kernel``'s code for the token bucket's kernel.
TB_CODE = 1
_log = numba.njit(cache=True)(sliding_log_kernel)
_fixed = numba.njit(cache=True)(fixed_window_kernel)
_counter = numba.njit(cache=True)(sliding_counter_kernel)
_bucketed = numba.njit(cache=True)(bucketed_kernel)
_double = numba.njit(cache=True)(double_buffered_kernel)
_nginx = numba.njit(cache=True)(nginx_leaky_kernel)
_calendar = numba.njit(cache=True)(calendar_window_kernel)
_warm = numba.njit(cache=True)(warm_up_kernel)
_reserve = numba.njit(cache=True)(reserve_bucket_kernel)
_pacer = numba.njit(cache=True)(pacer_kernel)
conc_acquire = numba.njit(cache=True)(concurrency_acquire)
conc_complete = numba.njit(cache=True)(concurrency_complete)
conc_cancel = numba.njit(cache=True)(concurrency_cancel_wait)
br_try_pass = numba.njit(cache=True)(breaker_try_pass)
br_on_complete = numba.njit(cache=True)(breaker_on_complete)
br_release_probe = numba.njit(cache=True)(breaker_release_probe)


@numba.njit(cache=True)
def rate_kernel(
    kind: int, P: Any, p0: int, S: Any, s0: int, now: int, cost: int
) -> tuple[int, int, int, int]:
    """Rate kernel ``kind`` (its code in ``KERNELS``) with its parameters at ``P[p0:]`` on the
    state at ``S[s0:]`` (whole tables and offsets: no array view is made, so no reference is
    counted per call), at ``now`` (µs) for ``cost``."""
    if kind == 0:
        return _gcra(P, S, now, cost, p0, s0)
    if kind == 1:
        return _tb(P, S, now, cost, p0, s0)
    if kind == 2:
        return _log(P, S, now, cost, p0, s0)
    if kind == 3:
        return _fixed(P, S, now, cost, p0, s0)
    if kind == 4:
        return _counter(P, S, now, cost, p0, s0)
    if kind == 5:
        return _bucketed(P, S, now, cost, p0, s0)
    if kind == 6:
        return _double(P, S, now, cost, p0, s0)
    if kind == 7:
        return _nginx(P, S, now, cost, p0, s0)
    if kind == 8:
        return _calendar(P, S, now, cost, p0, s0)
    if kind == 9:
        return _warm(P, S, now, cost, p0, s0)
    if kind == 10:
        return _reserve(P, S, now, cost, p0, s0)
    return _pacer(P, S, now, cost, p0, s0)


#: :func:`ratesim.model.clock.clock_read` and its loop over an array, compiled.
clock_read = numba.njit(cache=True)(_clock.clock_read)
clock_read_many = numba.njit(cache=True)(_clock.clock_read_many)
clock_read_nodes = numba.njit(cache=True, nogil=True)(_clock.clock_read_nodes)
#: :func:`ratesim.model.redis_server.depths_merged`, compiled.
depths_merged = numba.njit(cache=True, nogil=True)(_depths_merged)
#: :func:`ratesim.model.faults.outage_kind` and ``is_partitioned``, compiled.
outage = numba.njit(cache=True)(outage_kind)
partitioned = numba.njit(cache=True)(is_partitioned)
#: :func:`ratesim.model.store_breaker.sb_gate` and ``sb_observe``, compiled.
sb_gate = numba.njit(cache=True)(_sb_gate)
sb_observe = numba.njit(cache=True)(_sb_observe)
#: :func:`ratesim.model.backend.slowed_service_us`, compiled.
slowed = numba.njit(cache=True)(slowed_service_us)
#: :func:`ratesim.algorithms.shaping.hold_us`, compiled.
hold = numba.njit(cache=True)(hold_us)
#: :func:`ratesim.model.topology.epoch_at`, compiled.
epoch_at = numba.njit(cache=True)(_topology.epoch_at)


def kernel_code(kernel: object) -> int:
    """The code ``rate_kernel`` dispatches ``kernel`` (an algorithm's kernel function) by."""
    return KERNELS.index(kernel)


def fill_tier_rows(kk: np.ndarray, pp: np.ndarray, algs: list[Any], rate: bool = True) -> None:
    """Write each tier's kernel code into ``kk[tier]`` (-1 unless ``rate``: guards have their
    own functions) and its integer parameters into ``pp[tier]`` (zero-padded)."""
    for tr, alg in enumerate(algs[: len(kk)]):
        kk[tr] = kernel_code(alg.kernel) if rate else -1
        pp[tr, : len(alg.params)] = alg.params
