"""Determinism, seed sensitivity and chunked == one-shot generation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.rng import Streams
from ratesim.traffic import (
    ArrivalGenerator,
    Arrivals,
    DiurnalTraffic,
    FlashCrowdTraffic,
    MMPPTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
    PopulationSpec,
    generate_arrivals,
    iter_arrivals,
)

US = 1_000_000
POP = PopulationSpec(
    users=200,
    tiers={"gold": 0.25, "silver": 0.75},
    routes={"/a": 2.0, "/b": 1.0},
    route_cost={"/b": 3},
    abusive_share=0.05,
)
KINDS = {
    "poisson": PoissonTraffic(rate_per_s=3_000),
    "piecewise": PiecewiseTraffic(
        segments=[
            {"until_s": 0.7, "rate_per_s": 2_000},
            {"until_s": 1.3, "rate_per_s": 0},
            {"until_s": 3.0, "rate_per_s": 6_000},
        ]
    ),
    "flash_crowd": FlashCrowdTraffic(
        base_rate_per_s=1_000, peak_factor=8, start_s=0.5, ramp_s=0.4, plateau_s=0.6, decay_s=0.9
    ),
    "diurnal": DiurnalTraffic(mean_rate_per_s=3_000, amplitude=0.9, period_s=0.8, phase_s=0.1),
    "mmpp": MMPPTraffic(rates_per_s=[200, 9_000, 1_000], mean_sojourn_s=[0.05, 0.02, 0.1]),
}
DURATION = 3 * US


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_same_seed_identical_other_seed_different(kind: str) -> None:
    spec = KINDS[kind]
    a = generate_arrivals(spec, POP, DURATION, Streams(42))
    b = generate_arrivals(spec, POP, DURATION, Streams(42))
    c = generate_arrivals(spec, POP, DURATION, Streams(43))
    assert len(a) > 1000
    assert a.equals(b)
    assert a.time_us.dtype == np.int64 and a.user.dtype == np.int64
    assert a.tier.dtype == np.int8 and a.route.dtype == np.int16
    assert a.cost.dtype == np.int64 and a.abusive.dtype == np.bool_
    assert np.all(np.diff(a.time_us) >= 0)
    assert a.time_us[0] >= 0 and a.time_us[-1] < DURATION
    assert a.user.max() < POP.users and a.cost.min() >= 1
    assert not np.array_equal(a.time_us[:100], c.time_us[:100])
    assert not np.array_equal(a.user[:100], c.user[:100])


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_result_does_not_depend_on_prior_use_of_streams(kind: str) -> None:
    streams = Streams(42)
    for purpose in ("arrivals", "users", "routes", "population"):
        streams.get(purpose).random(17)
    a = generate_arrivals(KINDS[kind], POP, DURATION, streams)
    b = generate_arrivals(KINDS[kind], POP, DURATION, streams)
    assert a.equals(generate_arrivals(KINDS[kind], POP, DURATION, Streams(42)))
    assert a.equals(b)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("chunk_us", [1_000_003, 250_000, 77_777, 9_999])
def test_chunks_concatenate_to_one_shot(kind: str, chunk_us: int) -> None:
    spec = KINDS[kind]
    one = generate_arrivals(spec, POP, DURATION, Streams(9))
    parts = list(iter_arrivals(spec, POP, DURATION, Streams(9), chunk_us))
    assert len(parts) == -(-DURATION // chunk_us)
    for k, part in enumerate(parts):
        lo, hi = k * chunk_us, min((k + 1) * chunk_us, DURATION)
        assert part.time_us.size == 0 or (part.time_us[0] >= lo and part.time_us[-1] < hi)
    assert Arrivals.concat(parts).equals(one)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    seed=st.integers(0, 2**32),
    ends=st.lists(st.integers(0, DURATION + 10), max_size=12),
)
def test_any_sequence_of_ends_matches_one_shot(kind: str, seed: int, ends: list[int]) -> None:
    spec = KINDS[kind]
    one = generate_arrivals(spec, POP, DURATION, Streams(seed))
    gen = ArrivalGenerator(spec, POP, DURATION, Streams(seed))
    # Unsorted ends on purpose: an end before the position yields nothing and moves nothing.
    parts = [gen.until(e) for e in ends] + [gen.until(DURATION)]
    assert Arrivals.concat(parts).equals(one)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_shorter_run_is_a_prefix(kind: str) -> None:
    long = generate_arrivals(KINDS[kind], POP, DURATION, Streams(5))
    short = generate_arrivals(KINDS[kind], POP, DURATION // 3, Streams(5))
    assert short.equals(long.between(0, DURATION // 3))


def test_going_backwards_returns_empty_and_keeps_position() -> None:
    gen = ArrivalGenerator(KINDS["poisson"], POP, DURATION, Streams(1))
    first = gen.until(US)
    assert gen.position_us == US
    back = gen.until(US // 2)
    assert len(back) == 0 and gen.position_us == US
    assert back.tier_names == first.tier_names
    rest = gen.until(10 * DURATION)  # capped at the duration
    assert gen.position_us == DURATION
    assert Arrivals.concat([first, rest]).equals(
        generate_arrivals(KINDS["poisson"], POP, DURATION, Streams(1))
    )


def test_zero_duration_has_no_chunks() -> None:
    assert list(iter_arrivals(KINDS["poisson"], POP, 0, Streams(1), 10)) == []


def test_traffic_given_as_mapping() -> None:
    a = generate_arrivals({"kind": "poisson", "rate_per_s": 3_000}, POP, US, Streams(3))  # type: ignore[arg-type]
    assert a.equals(generate_arrivals(KINDS["poisson"], POP, US, Streams(3)))
