"""The protected backend: ``servers`` workers whose service time grows with load.

A request's *base* service time is drawn from ``service_time`` (per request, when it is
generated, like every random quantity). When it starts service with ``in_flight`` requests in
the backend — counting itself, so ``in_flight >= 1`` — it takes::

    service_us = round(base_us * (1 + load_factor * (in_flight - 1) / servers))

(nearest µs, ties to even). A lone request takes its base time; with every one of ``servers``
workers busy and ``load_factor = 1`` each takes about twice as long. If the engine lets more
than ``servers`` requests in (a backend that does not queue), the slowdown keeps growing
linearly: this is the "latency rises with load" that trips the seed's slow-call circuit breaker
(RT > 1000 ms) and couples it to the concurrency limit (DIGEST.md rows 6-7).
"""

from __future__ import annotations

from typing import Annotated, overload

import numpy as np
import numpy.typing as npt
from pydantic import Field

from ..bounds import MAX_FACTOR, MAX_NODES
from .clock import SpecModel
from .latency import LatencySpec


class BackendSpec(SpecModel):
    """``servers`` workers, per-request ``service_time`` and its growth ``load_factor``."""

    servers: Annotated[int, Field(ge=1, le=100 * MAX_NODES)]
    service_time: LatencySpec
    load_factor: Annotated[float, Field(ge=0.0, le=MAX_FACTOR)] = 0.0


def slowed_service_us(base_us: int, in_flight: int, load_factor: float, servers: int) -> int:
    """Service time in µs of a request of base time ``base_us`` (µs) starting with
    ``in_flight`` requests in the backend, itself included: the module docstring's formula in
    float64 arithmetic rounded half to even, as written here, so that Python and the compiled
    runner (this very function, compiled by ``ratesim.fast.kernels``) agree bit for bit."""
    return round(base_us * (1.0 + load_factor * (in_flight - 1) / servers))


@overload
def service_time_us(base_us: int, in_flight: int, spec: BackendSpec) -> int: ...


@overload
def service_time_us(
    base_us: npt.NDArray[np.int64], in_flight: npt.ArrayLike, spec: BackendSpec
) -> npt.NDArray[np.int64]: ...


def service_time_us(
    base_us: int | npt.NDArray[np.int64], in_flight: npt.ArrayLike, spec: BackendSpec
) -> int | npt.NDArray[np.int64]:
    """Service time in µs of a request of base time ``base_us`` (µs) that starts with
    ``in_flight`` requests in the backend, itself included (formula in the module docstring).

    Scalars give an ``int``; arrays broadcast and give an int64 array.
    """
    base = np.asarray(base_us)
    load = np.asarray(in_flight)
    if not (np.issubdtype(base.dtype, np.integer) and np.issubdtype(load.dtype, np.integer)):
        raise ValueError(
            f"base_us and in_flight must be integers, got {base.dtype} and {load.dtype}"
        )
    if base.size and base.min() < 0:
        raise ValueError(f"base_us must be >= 0, got {base.min()}")
    if load.size and load.min() < 1:
        raise ValueError(f"in_flight must be >= 1 (it counts the request), got {load.min()}")
    if base.ndim == 0 and load.ndim == 0:
        return slowed_service_us(int(base), int(load), spec.load_factor, spec.servers)
    # the same float64 operations elementwise (np.rint rounds half to even, as round does)
    slowdown = 1.0 + spec.load_factor * (load - 1) / spec.servers
    return np.rint(base * slowdown).astype(np.int64)
