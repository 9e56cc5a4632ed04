"""Latency distributions in integer µs (ratesim.model.latency).

Statistical checks use tolerances derived from the sample size: a sample mean must lie within
Z standard errors of the analytic mean, and the share of samples at or below an analytic
quantile within Z binomial standard errors of its level. Z = 5 makes a false alarm rarer than
one in a million per check, and the seeds are fixed, so the tests are deterministic.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from ratesim.model import (
    ConstantLatency,
    EmpiricalLatency,
    LognormalLatency,
    MixtureLatency,
    NormalLatency,
    SpikeSpec,
    UniformLatency,
    apply_spikes,
    draws_per_sample,
    mean_us,
    parse_latency,
    sample_us,
)
from ratesim.model.latency import AnyLatency

N = 200_000
Z = 5.0


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def assert_mean(samples: np.ndarray, expected_us: float) -> None:
    se = samples.std(ddof=1) / math.sqrt(len(samples))
    # +0.5 µs: rounding to whole µs may move the mean by up to half a microsecond.
    assert abs(samples.mean() - expected_us) <= Z * se + 0.5, (samples.mean(), expected_us)


def assert_quantile(samples: np.ndarray, q: float, x_us: float) -> None:
    share = float(np.mean(samples <= x_us))
    se = math.sqrt(q * (1 - q) / len(samples))
    assert abs(share - q) <= Z * se, (q, share, x_us)


def test_constant_is_exact_and_draws_nothing() -> None:
    g = rng(1)
    out = sample_us(ConstantLatency(ms=2.5), g, 5)
    assert out.dtype == np.int64
    assert out.tolist() == [2_500] * 5
    assert g.random() == rng(1).random()  # the generator was not advanced
    assert mean_us(ConstantLatency(ms=2.5)) == 2_500


def test_uniform_mean_quantiles_and_range() -> None:
    spec = UniformLatency(low_ms=1.0, high_ms=11.0)
    s = sample_us(spec, rng(2), N)
    assert s.min() >= 1_000 and s.max() <= 11_000
    assert_mean(s, 6_000.0)
    assert mean_us(spec) == pytest.approx(6_000.0)
    for q in (0.1, 0.5, 0.9):
        assert_quantile(s, q, 1_000 + q * 10_000)


def test_normal_is_clipped_at_zero() -> None:
    spec = NormalLatency(mean_ms=1.0, std_ms=2.0)
    s = sample_us(spec, rng(3), N)
    assert s.min() == 0
    # P(X <= 0) = Phi(-0.5); values in (0, 0.5 µs) also round to 0 but weigh ~1e-4 of that.
    assert_quantile(s, stats.norm.cdf(-0.5), 0)
    # E[max(X, 0)] by numerical integration, independent of the closed form in the code.
    expected_ms = integrate.quad(lambda x: x * stats.norm.pdf(x, 1.0, 2.0), 0, np.inf)[0]
    assert mean_us(spec) == pytest.approx(expected_ms * 1_000, rel=1e-9)
    assert_mean(s, expected_ms * 1_000)
    assert_quantile(s, 0.9, stats.norm.ppf(0.9, 1.0, 2.0) * 1_000)


def test_normal_without_spread_is_its_mean() -> None:
    assert sample_us(NormalLatency(mean_ms=3, std_ms=0), rng(), 4).tolist() == [3_000] * 4
    assert mean_us(NormalLatency(mean_ms=3, std_ms=0)) == 3_000


def test_lognormal_median_mean_and_tail() -> None:
    spec = LognormalLatency(median_ms=2.0, sigma=0.8)
    s = sample_us(spec, rng(4), N)
    ref = stats.lognorm(s=0.8, scale=2.0)
    assert_quantile(s, 0.5, 2_000)
    for q in (0.9, 0.99, 0.999):
        assert_quantile(s, q, ref.ppf(q) * 1_000)
    assert mean_us(spec) == pytest.approx(ref.mean() * 1_000, rel=1e-12)
    assert_mean(s, ref.mean() * 1_000)


def test_empirical_resamples_the_given_values_uniformly() -> None:
    spec = EmpiricalLatency(samples_ms=[1.0, 2.0, 2.0, 10.0])
    s = sample_us(spec, rng(5), N)
    assert set(np.unique(s).tolist()) == {1_000, 2_000, 10_000}
    for value, p in ((1_000, 0.25), (2_000, 0.5), (10_000, 0.25)):
        share = float(np.mean(s == value))
        assert abs(share - p) <= Z * math.sqrt(p * (1 - p) / N)
    assert mean_us(spec) == pytest.approx(3_750.0)
    assert_mean(s, 3_750.0)


def test_mixture_weights_pick_components() -> None:
    spec = MixtureLatency.model_validate(
        {
            "components": [
                {"weight": 3, "latency": {"kind": "constant", "ms": 1}},
                {"weight": 1, "latency": {"kind": "constant", "ms": 20}},
            ]
        }
    )
    s = sample_us(spec, rng(6), N)
    assert set(np.unique(s).tolist()) == {1_000, 20_000}
    share = float(np.mean(s == 20_000))
    assert abs(share - 0.25) <= Z * math.sqrt(0.25 * 0.75 / N)
    assert mean_us(spec) == pytest.approx(0.75 * 1_000 + 0.25 * 20_000)


def test_lognormal_body_with_heavy_tail_mixture() -> None:
    body = {"kind": "lognormal", "median_ms": 1.0, "sigma": 0.3}
    tail = {"kind": "uniform", "low_ms": 50, "high_ms": 150}
    spec = parse_latency(
        {
            "kind": "mixture",
            "components": [{"weight": 0.98, "latency": body}, {"weight": 0.02, "latency": tail}],
        }
    )
    s = sample_us(spec, rng(7), N)
    expected = 0.98 * stats.lognorm(s=0.3, scale=1.0).mean() * 1_000 + 0.02 * 100_000
    assert mean_us(spec) == pytest.approx(expected, rel=1e-12)
    assert_mean(s, expected)
    share_tail = float(np.mean(s >= 50_000))
    assert abs(share_tail - 0.02) <= Z * math.sqrt(0.02 * 0.98 / N)


NESTED = {
    "kind": "mixture",
    "components": [
        {"weight": 1, "latency": {"kind": "normal", "mean_ms": 5, "std_ms": 1}},
        {
            "weight": 2,
            "latency": {
                "kind": "mixture",
                "components": [
                    {"weight": 1, "latency": {"kind": "empirical", "samples_ms": [0.5, 7]}},
                    {"weight": 1, "latency": {"kind": "lognormal", "median_ms": 3, "sigma": 1}},
                ],
            },
        },
        {"weight": 1, "latency": {"kind": "constant", "ms": 9}},
    ],
}
ALL_KINDS: list[AnyLatency] = [
    ConstantLatency(ms=1),
    UniformLatency(low_ms=0, high_ms=4),
    NormalLatency(mean_ms=2, std_ms=3),
    LognormalLatency(median_ms=1, sigma=2),
    EmpiricalLatency(samples_ms=[0, 1.5, 99]),
    parse_latency(NESTED),
]


def test_draws_per_sample_counts() -> None:
    assert [draws_per_sample(s) for s in ALL_KINDS] == [0, 1, 1, 1, 1, 3]


@pytest.mark.parametrize("spec", ALL_KINDS, ids=lambda s: s.kind)
def test_bulk_draw_equals_one_at_a_time(spec: AnyLatency) -> None:
    bulk_rng, single_rng = rng(11), rng(11)
    bulk = sample_us(spec, bulk_rng, 500)
    single = np.concatenate([sample_us(spec, single_rng, 1) for _ in range(500)])
    assert bulk.tolist() == single.tolist()
    assert bulk_rng.random() == single_rng.random()  # both consumed the same number of draws
    assert bulk.dtype == np.int64 and bulk.min() >= 0


@pytest.mark.parametrize("spec", ALL_KINDS[1:], ids=lambda s: s.kind)
def test_seeded_generator_is_deterministic(spec: AnyLatency) -> None:
    a = sample_us(spec, rng(42), 1_000)
    b = sample_us(spec, rng(42), 1_000)
    c = sample_us(spec, rng(43), 1_000)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_nested_mixture_mean() -> None:
    spec = parse_latency(NESTED)
    clipped_normal = integrate.quad(lambda x: x * stats.norm.pdf(x, 5, 1), 0, np.inf)[0]
    inner = 0.5 * (0.5 + 7) / 2 + 0.5 * 3 * math.exp(0.5)
    expected = (clipped_normal + 2 * inner + 9) / 4 * 1_000
    assert mean_us(spec) == pytest.approx(expected, rel=1e-9)
    assert_mean(sample_us(spec, rng(8), N), expected)


def test_rounding_to_whole_microseconds() -> None:
    assert sample_us(ConstantLatency(ms=1.2344), rng(), 1).tolist() == [1_234]
    assert sample_us(ConstantLatency(ms=1.2346), rng(), 1).tolist() == [1_235]
    assert sample_us(ConstantLatency(ms=0.0001), rng(), 1).tolist() == [0]


def test_sample_count_validation() -> None:
    assert sample_us(UniformLatency(low_ms=0, high_ms=1), rng(), 0).shape == (0,)
    with pytest.raises(ValueError, match="n must"):
        sample_us(UniformLatency(low_ms=0, high_ms=1), rng(), -1)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "constant", "ms": -1}, "constant.ms"),
        ({"kind": "uniform", "low_ms": 5, "high_ms": 2}, "uniform.high_ms"),
        ({"kind": "normal", "mean_ms": 1, "std_ms": -0.1}, "normal.std_ms"),
        ({"kind": "lognormal", "median_ms": 1, "sigma": 0}, "lognormal.sigma"),
        ({"kind": "lognormal", "median_ms": 0, "sigma": 1}, "lognormal.median_ms"),
        ({"kind": "empirical", "samples_ms": []}, "empirical.samples_ms"),
        ({"kind": "empirical", "samples_ms": [1, -2]}, "empirical.samples_ms.1"),
        (
            {
                "kind": "mixture",
                "components": [{"weight": 0, "latency": {"kind": "constant", "ms": 1}}],
            },
            "mixture.components.0.weight",
        ),
        ({"kind": "mixture", "components": []}, "mixture.components"),
        ({"kind": "constant", "ms": 1, "jitter": 2}, "constant.jitter"),
        ({"kind": "pareto", "ms": 1}, "pareto"),
        ({"kind": "constant", "ms": float("inf")}, "constant.ms"),
    ],
)
def test_validation_names_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_latency(data)
    assert field in str(err.value)


def test_spec_round_trips_through_plain_data() -> None:
    spec = parse_latency(NESTED)
    assert parse_latency(spec.model_dump()) == spec


def test_spikes_apply_only_inside_their_window() -> None:
    spike = SpikeSpec(start_s=1, end_s=2, factor=3.0, add_ms=2.0)
    t = np.array([0, 999_999, 1_000_000, 1_500_000, 1_999_999, 2_000_000, 5_000_000])
    lat = np.full(len(t), 1_000, dtype=np.int64)
    out = apply_spikes([spike], t, lat)
    assert out.tolist() == [1_000, 1_000, 5_000, 5_000, 5_000, 1_000, 1_000]
    assert lat.tolist() == [1_000] * len(t)  # input untouched
    assert apply_spikes([], t, lat).tolist() == lat.tolist()


def test_overlapping_spikes_compose_in_list_order() -> None:
    spikes = [
        SpikeSpec(start_s=0, end_s=10, factor=2.0),
        SpikeSpec(start_s=5, end_s=15, add_ms=1.0),
    ]
    t = np.array([1_000_000, 7_000_000, 12_000_000])
    out = apply_spikes(spikes, t, np.array([100, 100, 100]))
    assert out.tolist() == [200, 1_200, 1_100]
    reverse = apply_spikes(list(reversed(spikes)), t, np.array([100, 100, 100]))
    assert reverse.tolist() == [200, 2_200, 1_100]


def test_spike_factor_rounds_to_whole_microseconds() -> None:
    out = apply_spikes([SpikeSpec(start_s=0, end_s=1, factor=1.5)], [0, 0], [3, 5])
    assert out.tolist() == [4, 8]  # 4.5 -> 4 and 7.5 -> 8 (ties to even)


def test_spike_validation() -> None:
    with pytest.raises(ValueError, match="t_us"):
        apply_spikes([], [0.5], [1])
    with pytest.raises(ValueError, match="lat_us"):
        apply_spikes([], [0], [1.5])
    with pytest.raises(ValueError, match="end_s"):
        SpikeSpec(start_s=2, end_s=2)
    with pytest.raises(ValueError, match="factor"):
        SpikeSpec(start_s=0, end_s=1, factor=-1)
    with pytest.raises(ValueError, match="add_ms"):
        SpikeSpec(start_s=0, end_s=1, add_ms=-1)


spike_strategy = st.builds(
    lambda start_ms, len_ms, factor, add_us: SpikeSpec(
        start_s=start_ms / 1e3, end_s=(start_ms + len_ms) / 1e3, factor=factor, add_ms=add_us / 1e3
    ),
    start_ms=st.integers(0, 100),
    len_ms=st.integers(1, 100),
    factor=st.sampled_from([0.0, 0.5, 1.0, 2.5, 10.0]),
    add_us=st.integers(0, 5_000),
)


@settings(max_examples=80, deadline=None)
@given(
    spikes=st.lists(spike_strategy, max_size=3),
    t=st.lists(st.integers(-1_000, 250_000), min_size=1, max_size=40),
    lat=st.integers(0, 100_000),
)
def test_spikes_match_a_per_request_reference(
    spikes: list[SpikeSpec], t: list[int], lat: int
) -> None:
    expected = []
    for when in t:
        value = Fraction(lat)
        for s in spikes:
            # Bounds in µs straight from the integers the spike was built from.
            start, end = round(s.start_s * 1e6), round(s.end_s * 1e6)
            if start <= when < end:
                scaled = value * Fraction(str(s.factor))
                value = Fraction(round(scaled)) + round(s.add_ms * 1e3)
        expected.append(int(value))
    assert apply_spikes(spikes, t, [lat] * len(t)).tolist() == expected
