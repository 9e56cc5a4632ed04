"""Arrival intensities and their exact inversion.

A non-homogeneous Poisson process with rate ``r(t)`` is the image of a unit-rate process under
``Lambda^-1``, where ``Lambda(t) = integral_0^t r``. So arrival ``i`` is
``t_i = Lambda^-1(S_i)`` with ``S_i`` the running sum of standard exponentials. Every synthetic
kind is reduced to a rate that is piecewise *linear* in time (constant segments, ramps, a
finely interpolated sinusoid, an MMPP path), whose ``Lambda`` is piecewise quadratic and
inverts in closed form. The inversion uses only ``+ - * / sqrt`` (correctly rounded in IEEE
arithmetic), so each ``S_i`` maps to the same ``t_i`` whatever batch it is computed in: this is
what makes chunked generation identical to one-shot generation.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from .specs import (
    DiurnalTraffic,
    FlashCrowdTraffic,
    MMPPTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
)

#: Knots per period of the linearly interpolated diurnal sinusoid.
DIURNAL_KNOTS = 4096
#: Sojourns drawn per call when extending an MMPP path (fixed, so draws never depend on chunks).
MMPP_BLOCK = 4096


class Intensity(Protocol):
    """What the generator needs from a rate: ``Lambda`` and its inverse, in seconds."""

    def ensure(self, t_s: float) -> None:
        """Make ``inverse`` exact for every ``S <= cumulative(t_s)``."""

    def cumulative(self, t_s: float) -> float:
        """``Lambda(t_s)``: the expected number of arrivals in ``[0, t_s)``."""

    def inverse(self, s: np.ndarray) -> np.ndarray:
        """``Lambda^-1(s)`` in seconds (``inf`` where the rate stays zero forever)."""


class PiecewiseLinearRate:
    """A rate linear on each ``[knot_k, knot_k+1)``; the last segment is constant forever.

    ``knots_s[0]`` must be 0. ``start_rate[k]`` is the rate just after ``knots_s[k]`` and
    ``slope[k]`` its slope (per second squared); the last slope must be 0.
    """

    def __init__(self, knots_s: np.ndarray, start_rate: np.ndarray, slope: np.ndarray) -> None:
        self.knots_s = np.asarray(knots_s, dtype=np.float64)
        self.start_rate = np.asarray(start_rate, dtype=np.float64)
        self.slope = np.asarray(slope, dtype=np.float64)
        lengths = np.diff(self.knots_s)
        area = self.start_rate[:-1] * lengths + 0.5 * self.slope[:-1] * lengths * lengths
        self.cum = np.concatenate(([0.0], np.cumsum(area)))

    @classmethod
    def from_segments(
        cls, ends_s: list[float], rates: list[tuple[float, float]], tail_rate: float
    ) -> PiecewiseLinearRate:
        """Segments ``[end_{k-1}, end_k)`` (from 0) going linearly from ``rates[k][0]`` to
        ``rates[k][1]``, then ``tail_rate`` forever. Empty segments are dropped."""
        knots, r0, a = [0.0], [], []
        start = 0.0
        for end, (ra, rb) in zip(ends_s, rates, strict=True):
            if end <= start:
                continue
            r0.append(ra)
            a.append((rb - ra) / (end - start))
            knots.append(end)
            start = end
        r0.append(tail_rate)
        a.append(0.0)
        return cls(np.array(knots), np.array(r0), np.array(a))

    def ensure(self, t_s: float) -> None:
        """Nothing to do: the whole rate is known."""

    def rate(self, t_s: np.ndarray) -> np.ndarray:
        """The rate at ``t_s`` (per second)."""
        t = np.asarray(t_s, dtype=np.float64)
        k = np.searchsorted(self.knots_s, t, side="right") - 1
        return self.start_rate[k] + self.slope[k] * (t - self.knots_s[k])

    def cumulative(self, t_s: float) -> float:
        """``Lambda(t_s)`` for ``t_s >= 0``."""
        if math.isinf(t_s):
            return math.inf if self.start_rate[-1] > 0 else float(self.cum[-1])
        k = int(np.searchsorted(self.knots_s, t_s, side="right")) - 1
        x = t_s - float(self.knots_s[k])
        return float(self.cum[k] + self.start_rate[k] * x + 0.5 * self.slope[k] * x * x)

    def inverse(self, s: np.ndarray) -> np.ndarray:
        """``Lambda^-1(s)`` for ``s >= 0``, vectorised and element-wise exact."""
        k = np.searchsorted(self.cum, s, side="right") - 1
        d = s - self.cum[k]
        r0 = self.start_rate[k]
        a = self.slope[k]
        disc = np.maximum(r0 * r0 + 2.0 * a * d, 0.0)
        denom = r0 + np.sqrt(disc)
        # x solves r0 x + a x^2 / 2 = d; this form is stable for a = 0 and for a < 0.
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(denom > 0, 2.0 * d / denom, np.where(d > 0, np.inf, 0.0))
        seg_len = np.diff(self.knots_s, append=np.inf)[k]
        return self.knots_s[k] + np.clip(x, 0.0, seg_len)


class PeriodicRate:
    """A periodic piecewise-linear rate: ``rate(t) = table(t - phase mod period)``."""

    def __init__(self, table: PiecewiseLinearRate, period_s: float, phase_s: float) -> None:
        self.table = table
        self.period_s = period_s
        self.phase_s = phase_s
        self.per_period = table.cumulative(period_s)
        self._offset = self._g(-phase_s)

    def _g(self, u: float) -> float:
        k = math.floor(u / self.period_s)
        return k * self.per_period + self.table.cumulative(u - k * self.period_s)

    def ensure(self, t_s: float) -> None:
        """Nothing to do: the whole rate is known."""

    def cumulative(self, t_s: float) -> float:
        if self.per_period <= 0:
            return 0.0
        return self._g(t_s - self.phase_s) - self._offset

    def inverse(self, s: np.ndarray) -> np.ndarray:
        if self.per_period <= 0:
            return np.full(np.shape(s), np.inf)
        y = s + self._offset
        k = np.floor(y / self.per_period)
        u = self.table.inverse(np.maximum(y - k * self.per_period, 0.0))
        return self.phase_s + k * self.period_s + u


class MMPPRate:
    """The rate path of an MMPP, drawn lazily from ``rng`` in fixed blocks of sojourns.

    Every block makes the same two calls (``MMPP_BLOCK`` exponentials, then as many uniforms),
    and the path only ever grows at its end, so the path, and every inverse computed on it, is
    the same however far ahead callers ask for it.
    """

    def __init__(self, spec: MMPPTraffic, rng: np.random.Generator) -> None:
        self._rng = rng
        self._rates = np.asarray(spec.rates_per_s, dtype=np.float64)
        self._sojourn = np.asarray(spec.mean_sojourn_s, dtype=np.float64)
        if spec.initial_state is None:
            # Uniform jumps make the embedded chain uniform, so time shares follow sojourns.
            cum = np.cumsum(self._sojourn)
            u = float(rng.random())
            self._state = int(min(np.searchsorted(cum, u * cum[-1], side="right"), len(cum) - 1))
        else:
            self._state = spec.initial_state
        self._knots = np.zeros(1)
        self._seg_rate = np.zeros(0)
        self._cum = np.zeros(1)

    def _extend(self) -> None:
        n = len(self._rates)
        durations = self._rng.standard_exponential(MMPP_BLOCK)
        jumps = self._rng.random(MMPP_BLOCK)
        offsets = 1 + np.minimum((jumps * (n - 1)).astype(np.int64), n - 2)
        steps = np.concatenate(([0], np.cumsum(offsets)))
        states = (self._state + steps[:-1]) % n
        self._state = int((self._state + steps[-1]) % n)
        seg_rate = self._rates[states]
        ends = np.cumsum(np.concatenate((self._knots[-1:], durations * self._sojourn[states])))
        cum = np.cumsum(np.concatenate((self._cum[-1:], seg_rate * (ends[1:] - ends[:-1]))))
        self._knots = np.concatenate((self._knots, ends[1:]))
        self._seg_rate = np.concatenate((self._seg_rate, seg_rate))
        self._cum = np.concatenate((self._cum, cum[1:]))

    def ensure(self, t_s: float) -> None:
        # One second of slack: anything past the path maps past ``t_s`` with room to spare.
        while self._knots[-1] < t_s + 1.0:
            self._extend()

    def cumulative(self, t_s: float) -> float:
        self.ensure(t_s)
        k = int(np.searchsorted(self._knots, t_s, side="right")) - 1
        return float(self._cum[k] + self._seg_rate[k] * (t_s - self._knots[k]))

    def inverse(self, s: np.ndarray) -> np.ndarray:
        last = len(self._seg_rate) - 1
        k = np.minimum(np.searchsorted(self._cum, s, side="right") - 1, last)
        r = self._seg_rate[k]
        d = s - self._cum[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = np.where(r > 0, d / r, np.where(d > 0, np.inf, 0.0))
        # Always clamp to the segment, even the last one drawn so far, so that an ``s`` inside
        # it maps to the same time before and after the path grows.
        x = np.clip(x, 0.0, self._knots[k + 1] - self._knots[k])
        return self._knots[k] + x

    @property
    def path(self) -> tuple[np.ndarray, np.ndarray]:
        """The path drawn so far: segment start times (s) and rates (per s)."""
        return self._knots[:-1].copy(), self._seg_rate.copy()


def _flash_crowd(spec: FlashCrowdTraffic) -> PiecewiseLinearRate:
    base = spec.base_rate_per_s
    peak = base * spec.peak_factor
    t1 = spec.start_s
    t2 = t1 + spec.ramp_s
    t3 = t2 + spec.plateau_s
    t4 = t3 + spec.decay_s
    return PiecewiseLinearRate.from_segments(
        [t1, t2, t3, t4], [(base, base), (base, peak), (peak, peak), (peak, base)], base
    )


def _diurnal(spec: DiurnalTraffic) -> PeriodicRate:
    u = np.linspace(0.0, spec.period_s, DIURNAL_KNOTS + 1)
    values = spec.mean_rate_per_s * (1.0 + spec.amplitude * np.sin(2.0 * np.pi * u / spec.period_s))
    slope = np.append(np.diff(values) / np.diff(u), 0.0)
    table = PiecewiseLinearRate(u, values, slope)
    return PeriodicRate(table, spec.period_s, spec.phase_s)


def intensity_of(
    spec: PoissonTraffic | PiecewiseTraffic | FlashCrowdTraffic | DiurnalTraffic | MMPPTraffic,
    rng: np.random.Generator | None = None,
) -> Intensity:
    """The intensity of a synthetic traffic spec (``rng`` is needed for MMPP only)."""
    if isinstance(spec, PoissonTraffic):
        return PiecewiseLinearRate(np.zeros(1), np.array([spec.rate_per_s]), np.zeros(1))
    if isinstance(spec, PiecewiseTraffic):
        ends = [s.until_s for s in spec.segments]
        return PiecewiseLinearRate.from_segments(
            ends, [(s.rate_per_s, s.rate_per_s) for s in spec.segments], 0.0
        )
    if isinstance(spec, FlashCrowdTraffic):
        return _flash_crowd(spec)
    if isinstance(spec, DiurnalTraffic):
        return _diurnal(spec)
    if isinstance(spec, MMPPTraffic):
        if len(spec.rates_per_s) == 1:
            return intensity_of(PoissonTraffic(rate_per_s=spec.rates_per_s[0]))
        if rng is None:
            raise ValueError("an MMPP intensity needs rng (a numpy Generator), got None")
        return MMPPRate(spec, rng)
    raise TypeError(f"no intensity for traffic kind {type(spec).__name__}")
