"""Arrival rates: observed counts against rates computed here, within 5 sigma.

Each expectation is an integral of the configured rate worked out in the test; the tolerance is
five standard deviations of the count (Poisson: sqrt(mean); MMPP: its own variance formula).
"""

from __future__ import annotations

import math

import numpy as np

from ratesim.rng import Streams
from ratesim.traffic import (
    ArrivalGenerator,
    DiurnalTraffic,
    FlashCrowdTraffic,
    MMPPTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
    expected_count,
    generate_arrivals,
)

US = 1_000_000


def _count(time_us: np.ndarray, t0_s: float, t1_s: float) -> int:
    lo, hi = np.searchsorted(time_us, [round(t0_s * US), round(t1_s * US)])
    return int(hi - lo)


def _within(observed: float, mean: float, sd: float, k: float = 5.0) -> None:
    assert abs(observed - mean) <= k * sd, (observed, mean, sd)


def test_poisson_counts_and_dispersion() -> None:
    rate = 20_000.0
    a = generate_arrivals(PoissonTraffic(rate_per_s=rate), None, 10 * US, Streams(11))
    t = a.time_us
    assert t.min() >= 0 and t.max() < 10 * US
    assert np.all(np.diff(t) >= 0)
    for s in range(10):
        _within(_count(t, s, s + 1), rate, math.sqrt(rate))
    # Index of dispersion over 1000 windows of 10 ms: (n-1) s^2 / mu ~ chi2(n-1) for Poisson.
    counts = np.bincount(t // 10_000, minlength=1000)
    n, mu = len(counts), rate * 0.01
    d = (n - 1) * counts.var(ddof=1) / mu
    _within(d, n - 1, math.sqrt(2 * (n - 1)))


def test_poisson_gaps_are_exponential() -> None:
    rate = 5_000.0
    a = generate_arrivals(PoissonTraffic(rate_per_s=rate), None, 20 * US, Streams(3))
    gaps_s = np.diff(a.time_us) / US
    # P(gap > x) = exp(-rate x): check at the mean and at 3 means (binomial tolerance).
    for x in (1 / rate, 3 / rate):
        p = math.exp(-rate * x)
        frac = float(np.mean(gaps_s > x))
        # Flooring both ends to whole microseconds moves a gap by < 1 us, which moves the
        # survival probability by at most rate * 1 us, on top of the binomial noise.
        sd = math.sqrt(p * (1 - p) / len(gaps_s))
        assert abs(frac - p) <= 5 * sd + rate / US, (x, frac, p)


def test_zero_rate_gives_nothing() -> None:
    a = generate_arrivals(PoissonTraffic(rate_per_s=0.0), None, 5 * US, Streams(0))
    assert len(a) == 0
    assert generate_arrivals(PoissonTraffic(rate_per_s=9.0), None, 0, Streams(0)).time_us.size == 0


def test_piecewise_segments_and_silence_after_the_last() -> None:
    spec = PiecewiseTraffic(
        segments=[
            {"until_s": 1, "rate_per_s": 5_000},
            {"until_s": 2, "rate_per_s": 0},
            {"until_s": 4, "rate_per_s": 20_000},
        ]
    )
    t = generate_arrivals(spec, None, 6 * US, Streams(5)).time_us
    _within(_count(t, 0, 1), 5_000, math.sqrt(5_000))
    assert _count(t, 1, 2) == 0
    _within(_count(t, 2, 4), 40_000, math.sqrt(40_000))
    assert _count(t, 4, 6) == 0
    assert expected_count(spec, 0, 6 * US) == 45_000


def test_flash_crowd_ramp_plateau_decay() -> None:
    base, factor = 2_000.0, 10.0
    spec = FlashCrowdTraffic(
        base_rate_per_s=base, peak_factor=factor, start_s=2, ramp_s=1, plateau_s=2, decay_s=2
    )
    t = generate_arrivals(spec, None, 10 * US, Streams(7)).time_us
    peak = base * factor
    windows = {
        (0, 2): base * 2,
        (2, 3): (base + peak) / 2 * 1,  # linear ramp: trapezoid
        (3, 5): peak * 2,
        (5, 7): (peak + base) / 2 * 2,
        (7, 10): base * 3,
    }
    for (a, b), mean in windows.items():
        _within(_count(t, a, b), mean, math.sqrt(mean))
    assert abs(expected_count(spec, 0, 10 * US) - sum(windows.values())) < 1e-6
    # Ramp shape: each half of the ramp holds the trapezoid under its part of the line.
    first, second = _count(t, 2, 2.5), _count(t, 2.5, 3)
    m1 = 0.5 * (base + (base + peak) / 2) / 2
    m2 = 0.5 * ((base + peak) / 2 + peak) / 2
    _within(first, m1, math.sqrt(m1))
    _within(second, m2, math.sqrt(m2))
    # Observed peak / base ratio.
    n_peak = _count(t, 3, 5)
    n_base = _count(t, 0, 2) + _count(t, 7, 10)
    ratio = (n_peak / 2) / (n_base / 5)
    rel_sd = math.sqrt(1 / (peak * 2) + 1 / (base * 5))
    _within(ratio / factor, 1.0, rel_sd)


def _diurnal_integral(m: float, amp: float, period: float, phase: float, a: float, b: float):
    w = 2 * math.pi / period
    return m * (b - a) - m * amp / w * (math.cos(w * (b - phase)) - math.cos(w * (a - phase)))


def test_diurnal_counts_follow_the_sinusoid() -> None:
    m, amp, period, phase = 10_000.0, 0.8, 2.0, 0.25
    spec = DiurnalTraffic(mean_rate_per_s=m, amplitude=amp, period_s=period, phase_s=phase)
    t = generate_arrivals(spec, None, 8 * US, Streams(9)).time_us
    edges = np.arange(0, 8.0001, 0.25)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        mean = _diurnal_integral(m, amp, period, phase, a, b)
        _within(_count(t, a, b), mean, math.sqrt(mean))
    # The peak quarter-period (centred on phase + P/4) far exceeds the trough one.
    peak = _count(t, phase + 0.25, phase + 0.75)
    trough = _count(t, phase + 1.25, phase + 1.75)
    assert peak > 3 * trough


def test_diurnal_negative_phase_and_long_run() -> None:
    m, amp, period, phase = 500.0, 0.5, 3.0, -7.3
    spec = DiurnalTraffic(mean_rate_per_s=m, amplitude=amp, period_s=period, phase_s=phase)
    t = generate_arrivals(spec, None, 60 * US, Streams(2)).time_us
    for a in range(0, 60, 5):
        mean = _diurnal_integral(m, amp, period, phase, a, a + 5)
        _within(_count(t, a, a + 5), mean, math.sqrt(mean))


def _state_exposure(starts: np.ndarray, rates: np.ndarray, end_s: float) -> dict[float, float]:
    ends = np.append(starts[1:], np.inf)
    exposure: dict[float, float] = {}
    for s, e, r in zip(starts, ends, rates, strict=True):
        if s >= end_s:
            break
        exposure[float(r)] = exposure.get(float(r), 0.0) + min(e, end_s) - s
    return exposure


def test_mmpp_counts_given_the_path() -> None:
    spec = MMPPTraffic(rates_per_s=[500.0, 8_000.0], mean_sojourn_s=[0.3, 0.1])
    gen = ArrivalGenerator(spec, None, 30 * US, Streams(4))
    t = gen.until(30 * US).time_us
    path = gen.mmpp_path()
    assert path is not None
    starts, rates = path
    # Given the state path, arrivals in each segment are Poisson at that state's rate.
    ends = np.append(starts[1:], np.inf)
    per_state_obs = {500.0: 0, 8_000.0: 0}
    for s, e, r in zip(starts, ends, rates, strict=True):
        if s >= 30:
            break
        per_state_obs[float(r)] += _count(t, s, min(e, 30.0))
    # _count rounds segment edges to whole microseconds: allow one arrival per edge.
    exposure = _state_exposure(starts, rates, 30.0)
    n_edges = int(np.sum(starts < 30))
    for r, obs in per_state_obs.items():
        mean = r * exposure[r]
        _within(obs, mean, math.sqrt(mean), k=5.0 + n_edges / math.sqrt(mean))
    # Two states: they alternate.
    inside = rates[starts < 30]
    assert np.all(inside[1:] != inside[:-1])


def test_mmpp_sojourns_and_stationary_mean() -> None:
    r0, r1, s0, s1 = 1_000.0, 20_000.0, 0.4, 0.1
    spec = MMPPTraffic(rates_per_s=[r0, r1], mean_sojourn_s=[s0, s1])
    duration_s = 200.0
    gen = ArrivalGenerator(spec, None, int(duration_s * US), Streams(8))
    n = len(gen.until(int(duration_s * US)))
    starts, rates = gen.mmpp_path()  # type: ignore[misc]
    lengths = np.diff(starts)
    for r, mean in ((r0, s0), (r1, s1)):
        d = lengths[rates[:-1] == r]
        _within(d.mean(), mean, mean / math.sqrt(len(d)))
    # Unconditional count: mean lambda_bar T, variance from the two-state MMPP formula.
    pi0, pi1 = s0 / (s0 + s1), s1 / (s0 + s1)
    lam = pi0 * r0 + pi1 * r1
    gamma = 1 / s0 + 1 / s1
    var_rate = pi0 * pi1 * (r1 - r0) ** 2
    T = duration_s
    var = lam * T + 2 * var_rate * (T / gamma - (1 - math.exp(-gamma * T)) / gamma**2)
    _within(n, lam * T, math.sqrt(var))
    assert expected_count(spec, 0, int(T * US)) == lam * T


def test_mmpp_three_states_jump_to_others_uniformly() -> None:
    spec = MMPPTraffic(rates_per_s=[10.0, 20.0, 30.0], mean_sojourn_s=[0.01, 0.01, 0.01])
    gen = ArrivalGenerator(spec, None, 100 * US, Streams(1))
    gen.until(100 * US)
    _, rates = gen.mmpp_path()  # type: ignore[misc]
    assert np.all(rates[1:] != rates[:-1])
    from_first = rates[1:][rates[:-1] == 10.0]
    frac = float(np.mean(from_first == 20.0))
    _within(frac, 0.5, math.sqrt(0.25 / len(from_first)))


def test_mmpp_initial_state() -> None:
    spec = MMPPTraffic(rates_per_s=[0.0, 1000.0], mean_sojourn_s=[5.0, 5.0], initial_state=1)
    gen = ArrivalGenerator(spec, None, US, Streams(0))
    gen.until(US)
    _, rates = gen.mmpp_path()  # type: ignore[misc]
    assert rates[0] == 1000.0


def test_single_state_mmpp_is_poisson() -> None:
    a = generate_arrivals(
        MMPPTraffic(rates_per_s=[300.0], mean_sojourn_s=[1.0]), None, US, Streams(1)
    )
    b = generate_arrivals(PoissonTraffic(rate_per_s=300.0), None, US, Streams(1))
    assert a.equals(b)


def test_high_rate_has_microsecond_ties() -> None:
    # 5 arrivals per microsecond on average: ties must occur and times stay sorted.
    t = generate_arrivals(PoissonTraffic(rate_per_s=5e6), None, 20_000, Streams(1)).time_us
    assert np.all(np.diff(t) >= 0)
    assert np.any(np.diff(t) == 0)
    _within(len(t), 1e5, math.sqrt(1e5))
