"""Latency distributions (network round trips, service times), sampled in integer µs.

``LatencySpec`` is a discriminated union on ``kind``; every parameter is in milliseconds:

========== ==================================== ==========================================
kind       fields                               sample (ms) from uniforms ``u`` in [0, 1)
========== ==================================== ==========================================
constant   ``ms``                               ``ms`` (no draw)
uniform    ``low_ms``, ``high_ms``              ``low + (high - low) * u``
normal     ``mean_ms``, ``std_ms``              ``max(0, mean + std * Phi^-1(u))``
lognormal  ``median_ms``, ``sigma``             ``median * exp(sigma * Phi^-1(u))``
empirical  ``samples_ms``                       ``samples[floor(u * len)]`` (resampling)
mixture    ``components=[{weight, latency}]``   component ``i`` picked by ``u``, then its draw
========== ==================================== ==========================================

**Draw order (reproducibility).** Every spec consumes a fixed number ``draws_per_sample(spec)``
of uniforms per sample: 0 for constant, 1 for the four simple kinds, and for a mixture 1 (the
pick) plus the largest count among its components. ``sample_us(spec, rng, n)`` takes them as
one ``rng.random((n, k))`` block, row ``i`` belonging to sample ``i``: column 0 is a mixture's
pick (component ``i`` is the first whose cumulative normalised weight exceeds ``u``), the next
columns feed the picked component (columns it does not need are skipped). Because numpy's
``random`` turns each 64-bit output into one double, drawing ``n`` samples at once gives the
same values as ``n`` calls with ``n=1`` — an event engine sampling per request and a vectorised
engine sampling in bulk agree from the same seed. Inverse-CDF sampling (``scipy.special.ndtri``)
is what makes the count fixed.

Samples are rounded to the nearest microsecond (ties to even) and clipped at 0.
:func:`mean_us` gives the analytic mean before that rounding (which moves it by < 0.5 µs).

Spikes (``SpikeSpec``) model degraded windows: inside ``[start_s, end_s)`` of the *request*
time, a latency becomes ``latency * factor + add_ms``. Overlapping spikes apply in list order.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, TypeAdapter, ValidationInfo, field_validator, model_validator
from scipy.special import ndtri

from ..bounds import MAX_DELAY_MS, MAX_FACTOR, MAX_LIST, DelayMs, RunS
from .clock import US_PER_MS, SpecModel, ms_to_us, s_to_us

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

NonNegMs = Annotated[DelayMs, Field(ge=0.0)]
#: The largest standard-normal quantile a sample can use: ``random()`` is at most 1 - 2**-53.
Z_MAX = float(ndtri(1.0 - 2.0**-53))


def _check_largest(largest_ms: float, formula: str) -> None:
    """Refuse a distribution whose largest possible sample exceeds one delay's bound."""
    if not largest_ms <= MAX_DELAY_MS:
        raise ValueError(
            f"the largest sample, {formula} = {largest_ms:.6g} ms, exceeds {MAX_DELAY_MS:g} ms "
            "(the longest delay, about 11.6 days; see ratesim.bounds)"
        )


class ConstantLatency(SpecModel):
    """Always ``ms`` milliseconds (consumes no randomness)."""

    kind: Literal["constant"] = "constant"
    ms: NonNegMs


class UniformLatency(SpecModel):
    """Uniform on ``[low_ms, high_ms)``."""

    kind: Literal["uniform"] = "uniform"
    low_ms: NonNegMs
    high_ms: NonNegMs

    @field_validator("high_ms")
    @classmethod
    def _high_not_below_low(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("low_ms")
        if low is not None and v < low:
            raise ValueError(f"high_ms must be >= low_ms ({low}), got {v}")
        return v


class NormalLatency(SpecModel):
    """Normal(``mean_ms``, ``std_ms``) clipped at 0 (negative draws become 0)."""

    kind: Literal["normal"] = "normal"
    mean_ms: NonNegMs
    std_ms: NonNegMs

    @model_validator(mode="after")
    def _bounded(self) -> NormalLatency:
        largest = self.mean_ms + self.std_ms * Z_MAX
        _check_largest(largest, f"mean_ms + std_ms * {Z_MAX:.4f}")
        return self


class LognormalLatency(SpecModel):
    """Lognormal with median ``median_ms`` and log-space standard deviation ``sigma``."""

    kind: Literal["lognormal"] = "lognormal"
    median_ms: Annotated[DelayMs, Field(gt=0.0)]
    sigma: Annotated[float, Field(gt=0.0)]

    @model_validator(mode="after")
    def _bounded(self) -> LognormalLatency:
        # In log space: exp() of a large sigma would overflow to inf before the comparison.
        log_largest = math.log(self.median_ms) + self.sigma * Z_MAX
        largest = math.exp(min(log_largest, 700.0))
        _check_largest(largest, f"median_ms * exp(sigma * {Z_MAX:.4f})")
        return self


class EmpiricalLatency(SpecModel):
    """Resamples (with replacement, uniformly) the measured ``samples_ms``."""

    kind: Literal["empirical"] = "empirical"
    samples_ms: Annotated[list[NonNegMs], Field(min_length=1, max_length=100_000)]


class MixtureComponent(SpecModel):
    """One component of a mixture: a positive ``weight`` (normalised) and its ``latency``."""

    weight: Annotated[float, Field(gt=0.0, le=1e12)]
    latency: LatencySpec


class MixtureLatency(SpecModel):
    """Picks a component per sample with probability ``weight / sum(weights)``."""

    kind: Literal["mixture"] = "mixture"
    components: Annotated[list[MixtureComponent], Field(min_length=1, max_length=MAX_LIST)]


AnyLatency = (
    ConstantLatency
    | UniformLatency
    | NormalLatency
    | LognormalLatency
    | EmpiricalLatency
    | MixtureLatency
)


LatencySpec = Annotated[
    ConstantLatency
    | UniformLatency
    | NormalLatency
    | LognormalLatency
    | EmpiricalLatency
    | MixtureLatency,
    Field(discriminator="kind"),
]
MixtureComponent.model_rebuild()
MixtureLatency.model_rebuild()

_LATENCY_ADAPTER: TypeAdapter[AnyLatency] = TypeAdapter(LatencySpec)


def parse_latency(data: object) -> AnyLatency:
    """Validate a plain mapping (e.g. from YAML) into a latency spec; ``ValueError`` if bad."""
    return _LATENCY_ADAPTER.validate_python(data)


class SpikeSpec(SpecModel):
    """Inside ``[start_s, end_s)`` latencies become ``latency * factor + add_ms``."""

    start_s: Annotated[RunS, Field(ge=0.0)]
    end_s: RunS
    factor: Annotated[float, Field(ge=0.0, le=MAX_FACTOR)] = 1.0
    add_ms: NonNegMs = 0.0

    @field_validator("end_s")
    @classmethod
    def _end_after_start(cls, v: float, info: ValidationInfo) -> float:
        start = info.data.get("start_s")
        # Compared in whole µs, the unit the window is applied in, so it is never empty.
        if start is not None and s_to_us(v) <= s_to_us(start):
            raise ValueError(f"end_s must be > start_s ({start}) by at least 1 µs, got {v}")
        return v


def max_sample_ms(spec: AnyLatency) -> float:
    """The largest value (ms, before rounding) a sample of ``spec`` can take."""
    if isinstance(spec, ConstantLatency):
        return spec.ms
    if isinstance(spec, UniformLatency):
        return spec.high_ms
    if isinstance(spec, NormalLatency):
        return spec.mean_ms + spec.std_ms * Z_MAX
    if isinstance(spec, LognormalLatency):
        return spec.median_ms * math.exp(spec.sigma * Z_MAX)
    if isinstance(spec, EmpiricalLatency):
        return max(spec.samples_ms)
    return max(max_sample_ms(c.latency) for c in spec.components)


def max_spiked_ms(spec: AnyLatency, spikes: list[SpikeSpec]) -> float:
    """The largest latency (ms) once ``spikes`` apply, as if they all overlapped."""
    largest = max_sample_ms(spec)
    for spike in spikes:
        largest = largest * spike.factor + spike.add_ms
    return largest


def draws_per_sample(spec: AnyLatency) -> int:
    """How many uniforms one sample of ``spec`` consumes (see the module docstring)."""
    if isinstance(spec, ConstantLatency):
        return 0
    if isinstance(spec, MixtureLatency):
        return 1 + max(draws_per_sample(c.latency) for c in spec.components)
    return 1


def _to_us(ms: FloatArray) -> IntArray:
    """Milliseconds to whole µs: nearest (ties to even), clipped at 0."""
    return np.maximum(np.rint(ms * US_PER_MS), 0.0).astype(np.int64)


def _sample_ms(spec: AnyLatency, u: FloatArray) -> FloatArray:
    """Samples in ms from a block of uniforms ``u`` of shape ``(n, >= draws_per_sample)``."""
    n = u.shape[0]
    if isinstance(spec, ConstantLatency):
        return np.full(n, spec.ms, dtype=np.float64)
    if isinstance(spec, UniformLatency):
        return spec.low_ms + (spec.high_ms - spec.low_ms) * u[:, 0]
    if isinstance(spec, NormalLatency):
        # ndtri(0) is -inf: the clip maps it to 0 like any other negative draw.
        return np.maximum(spec.mean_ms + spec.std_ms * ndtri(u[:, 0]), 0.0)
    if isinstance(spec, LognormalLatency):
        return spec.median_ms * np.exp(spec.sigma * ndtri(u[:, 0]))
    if isinstance(spec, EmpiricalLatency):
        samples = np.asarray(spec.samples_ms, dtype=np.float64)
        idx = np.minimum((u[:, 0] * len(samples)).astype(np.int64), len(samples) - 1)
        return samples[idx]
    return _mixture_ms(spec, u)


def _mixture_ms(spec: MixtureLatency, u: FloatArray) -> FloatArray:
    weights = np.asarray([c.weight for c in spec.components], dtype=np.float64)
    edges = np.cumsum(weights / weights.sum())
    pick = np.minimum(np.searchsorted(edges, u[:, 0], side="right"), len(edges) - 1)
    out = np.empty(u.shape[0], dtype=np.float64)
    for i, comp in enumerate(spec.components):
        rows = pick == i
        if rows.any():
            out[rows] = _sample_ms(comp.latency, u[rows, 1:])
    return out


def sample_us(spec: AnyLatency, rng: np.random.Generator, n: int) -> IntArray:
    """``n`` latencies of ``spec`` as int64 µs (>= 0), drawing ``n * draws_per_sample`` uniforms.

    Drawing ``n`` at once equals ``n`` successive calls with ``n=1`` on the same generator.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    k = draws_per_sample(spec)
    u = rng.random((int(n), k)) if k else np.empty((int(n), 0), dtype=np.float64)
    return _to_us(_sample_ms(spec, u))


def sample_us_from(spec: AnyLatency, u: FloatArray) -> IntArray:
    """Samples of ``spec`` (int64 µs) from given uniforms ``u`` of shape
    ``(n, draws_per_sample(spec))``: what :func:`sample_us` does with the generator's block
    (used for the draws of retries, :func:`ratesim.compile.draw_retries`)."""
    return _to_us(_sample_ms(spec, u))


def mean_us(spec: AnyLatency) -> float:
    """The analytic mean of ``spec`` in µs (before rounding to whole µs)."""
    if isinstance(spec, ConstantLatency):
        return spec.ms * US_PER_MS
    if isinstance(spec, UniformLatency):
        return (spec.low_ms + spec.high_ms) / 2 * US_PER_MS
    if isinstance(spec, NormalLatency):
        return _clipped_normal_mean(spec.mean_ms, spec.std_ms) * US_PER_MS
    if isinstance(spec, LognormalLatency):
        return spec.median_ms * math.exp(spec.sigma**2 / 2) * US_PER_MS
    if isinstance(spec, EmpiricalLatency):
        return math.fsum(spec.samples_ms) / len(spec.samples_ms) * US_PER_MS
    total = math.fsum(c.weight for c in spec.components)
    return math.fsum(c.weight / total * mean_us(c.latency) for c in spec.components)


def _clipped_normal_mean(mu: float, sigma: float) -> float:
    """``E[max(X, 0)]`` for ``X ~ Normal(mu, sigma)``: ``mu Phi(mu/s) + s phi(mu/s)``."""
    if sigma == 0:
        return max(mu, 0.0)
    z = mu / sigma
    cdf = 0.5 * math.erfc(-z / math.sqrt(2))
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return mu * cdf + sigma * pdf


def apply_spikes(spikes: list[SpikeSpec], t_us: npt.ArrayLike, lat_us: npt.ArrayLike) -> IntArray:
    """Latencies ``lat_us`` (µs) of requests at true times ``t_us`` (µs), spikes applied.

    A request is inside a spike when ``start <= t < end``; there its latency becomes
    ``round(latency * factor) + add_us`` (nearest µs, ties to even). Spikes apply in list
    order, so overlapping ones compose. Returns a new int64 array of ``lat_us``'s shape.
    """
    t_arr, lat_arr = np.asarray(t_us), np.asarray(lat_us)
    for name, arr in (("t_us", t_arr), ("lat_us", lat_arr)):
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold integer µs, got dtype {arr.dtype}")
    t, out = np.broadcast_arrays(t_arr.astype(np.int64), lat_arr.astype(np.int64))
    out = out.copy()
    for spike in spikes:
        inside = (t >= s_to_us(spike.start_s)) & (t < s_to_us(spike.end_s))
        if not inside.any():
            continue
        scaled = np.rint(out[inside] * spike.factor).astype(np.int64)
        out[inside] = scaled + ms_to_us(spike.add_ms)
    return out
