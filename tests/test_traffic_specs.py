"""Validation of the traffic and population specs: errors name the field path."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ratesim.rng import Streams
from ratesim.traffic import (
    DiurnalTraffic,
    FlashCrowdTraffic,
    MMPPTraffic,
    PiecewiseTraffic,
    PoissonTraffic,
    PopulationSpec,
    TraceTraffic,
    generate_arrivals,
    iter_arrivals,
    parse_traffic,
)


def _locs(exc: pytest.ExceptionInfo[ValidationError]) -> list[tuple]:
    return [tuple(e["loc"]) for e in exc.value.errors()]


def test_negative_poisson_rate_names_field() -> None:
    with pytest.raises(ValidationError) as exc:
        PoissonTraffic(rate_per_s=-1.0)
    assert _locs(exc) == [("rate_per_s",)]


def test_non_finite_rate_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        PoissonTraffic(rate_per_s=float("inf"))
    assert _locs(exc) == [("rate_per_s",)]


def test_decreasing_segments_name_the_segment() -> None:
    with pytest.raises(ValidationError) as exc:
        PiecewiseTraffic(
            segments=[
                {"until_s": 5, "rate_per_s": 1},
                {"until_s": 3, "rate_per_s": 1},
            ]
        )
    assert _locs(exc) == [("segments",)]
    assert "segments[1].until_s" in str(exc.value)


def test_equal_segment_ends_refused() -> None:
    with pytest.raises(ValidationError):
        PiecewiseTraffic(
            segments=[{"until_s": 5, "rate_per_s": 1}, {"until_s": 5, "rate_per_s": 2}]
        )


def test_negative_segment_rate_path() -> None:
    with pytest.raises(ValidationError) as exc:
        PiecewiseTraffic(
            segments=[{"until_s": 1, "rate_per_s": 1}, {"until_s": 2, "rate_per_s": -3}]
        )
    assert _locs(exc) == [("segments", 1, "rate_per_s")]


def test_empty_segments_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        PiecewiseTraffic(segments=[])
    assert _locs(exc) == [("segments",)]


@pytest.mark.parametrize("amplitude", [1.0, 1.5, -0.1])
def test_diurnal_amplitude_outside_0_1(amplitude: float) -> None:
    with pytest.raises(ValidationError) as exc:
        DiurnalTraffic(mean_rate_per_s=10, amplitude=amplitude, period_s=60)
    assert _locs(exc) == [("amplitude",)]


def test_diurnal_period_must_be_positive() -> None:
    with pytest.raises(ValidationError) as exc:
        DiurnalTraffic(mean_rate_per_s=10, amplitude=0.5, period_s=0)
    assert _locs(exc) == [("period_s",)]


def test_flash_crowd_negative_durations() -> None:
    with pytest.raises(ValidationError) as exc:
        FlashCrowdTraffic(
            base_rate_per_s=1, peak_factor=3, start_s=1, ramp_s=-1, plateau_s=1, decay_s=1
        )
    assert _locs(exc) == [("ramp_s",)]


def test_mmpp_lengths_must_match() -> None:
    with pytest.raises(ValidationError) as exc:
        MMPPTraffic(rates_per_s=[1, 2], mean_sojourn_s=[1, 2, 3])
    assert _locs(exc) == [("mean_sojourn_s",)]


def test_mmpp_sojourn_positive_and_state_known() -> None:
    with pytest.raises(ValidationError) as exc:
        MMPPTraffic(rates_per_s=[1, 2], mean_sojourn_s=[0, 2])
    assert _locs(exc) == [("mean_sojourn_s", 0)]
    with pytest.raises(ValidationError) as exc:
        MMPPTraffic(rates_per_s=[1, 2], mean_sojourn_s=[1, 2], initial_state=2)
    assert _locs(exc) == [("initial_state",)]


def test_unknown_field_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        PoissonTraffic(rate_per_s=1, burst=3)  # type: ignore[call-arg]
    assert _locs(exc) == [("burst",)]
    assert exc.value.errors()[0]["type"] == "extra_forbidden"


def test_parse_traffic_by_kind_and_path() -> None:
    spec = parse_traffic({"kind": "mmpp", "rates_per_s": [1, 5], "mean_sojourn_s": [2, 1]})
    assert isinstance(spec, MMPPTraffic)
    with pytest.raises(ValidationError) as exc:
        parse_traffic({"kind": "diurnal", "mean_rate_per_s": 1, "amplitude": 1.2, "period_s": 9})
    assert _locs(exc) == [("diurnal", "amplitude")]
    with pytest.raises(ValidationError) as exc:
        parse_traffic({"kind": "bursty", "rate_per_s": 1})
    assert exc.value.errors()[0]["type"] == "union_tag_invalid"


def test_trace_spec_fields() -> None:
    with pytest.raises(ValidationError) as exc:
        TraceTraffic(path="x.csv", time_unit="min")  # type: ignore[arg-type]
    assert _locs(exc) == [("time_unit",)]
    with pytest.raises(ValidationError) as exc:
        TraceTraffic(path="x.csv", jitter=-1)
    assert _locs(exc) == [("jitter",)]


def test_tier_shares_must_sum_to_one() -> None:
    with pytest.raises(ValidationError) as exc:
        PopulationSpec(tiers={"gold": 0.5, "silver": 0.4})
    assert _locs(exc) == [("tiers",)]
    assert "sum to 1" in str(exc.value)
    # within the documented 1e-9 tolerance: accepted
    PopulationSpec(tiers={"gold": 0.3, "silver": 0.7 + 5e-10})
    with pytest.raises(ValidationError):
        PopulationSpec(tiers={"gold": 0.3, "silver": 0.7 + 5e-9})


def test_negative_tier_share_path() -> None:
    with pytest.raises(ValidationError) as exc:
        PopulationSpec(tiers={"gold": -0.5, "silver": 1.5})
    assert ("tiers", "gold") in _locs(exc)


def test_route_cost_must_name_known_routes_and_be_positive() -> None:
    with pytest.raises(ValidationError) as exc:
        PopulationSpec(routes={"/a": 1}, route_cost={"/b": 2})
    assert _locs(exc) == [("route_cost",)]
    with pytest.raises(ValidationError) as exc:
        PopulationSpec(routes={"/a": 1}, route_cost={"/a": 0})
    assert _locs(exc) == [("route_cost", "/a")]


def test_population_scalar_bounds() -> None:
    for kwargs, loc in [
        ({"users": 0}, ("users",)),
        ({"zipf_s": -1}, ("zipf_s",)),
        ({"abusive_share": 1.5}, ("abusive_share",)),
        ({"abusive_weight": 0}, ("abusive_weight",)),
        ({"routes": {"/a": 0.0}}, ("routes",)),
    ]:
        with pytest.raises(ValidationError) as exc:
            PopulationSpec(**kwargs)
        assert _locs(exc) == [loc], kwargs


@pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
def test_duration_must_be_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match="duration_us"):
        generate_arrivals(PoissonTraffic(rate_per_s=1), None, bad, Streams(0))  # type: ignore[arg-type]


def test_chunk_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_us"):
        list(iter_arrivals(PoissonTraffic(rate_per_s=1), None, 10, Streams(0), 0))


def test_scale_traffic_multiplies_every_rate() -> None:
    from ratesim.traffic import expected_count, scale_traffic

    specs = [
        PoissonTraffic(rate_per_s=10),
        PiecewiseTraffic(
            segments=[{"until_s": 1, "rate_per_s": 3}, {"until_s": 2, "rate_per_s": 5}]
        ),
        FlashCrowdTraffic(base_rate_per_s=2, peak_factor=4, start_s=0.5, ramp_s=0.5, plateau_s=1),
        DiurnalTraffic(mean_rate_per_s=7, amplitude=0.5, period_s=1.5),
        MMPPTraffic(rates_per_s=[1, 9], mean_sojourn_s=[1, 3]),
    ]
    for spec in specs:
        scaled = scale_traffic(spec, 2.5)
        assert type(scaled) is type(spec)
        base = expected_count(spec, 0, 3_000_000)
        assert abs(expected_count(scaled, 0, 3_000_000) - 2.5 * base) <= 1e-9 * base
    with pytest.raises(ValueError, match="speedup"):
        scale_traffic(TraceTraffic(path="x.csv"), 2.0)
    with pytest.raises(ValueError, match="factor"):
        scale_traffic(specs[0], 0)


def test_streams_must_be_streams() -> None:
    with pytest.raises(ValueError, match="streams"):
        generate_arrivals(PoissonTraffic(rate_per_s=1), None, 10, 7)  # type: ignore[arg-type]
