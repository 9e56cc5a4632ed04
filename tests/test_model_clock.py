"""Node clocks: offsets, drift, NTP steps and slews, exact integer µs (ratesim.model.clock)."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

import ratesim.model as model
from ratesim.bounds import MAX_ABS_NOW_US, MAX_CLOCK_SHIFT_US, MAX_RUN_S
from ratesim.model import ClockSpec, ClockStep, NodeClock, ms_to_us, s_to_us
from ratesim.model.clock import CLOCK_LIMIT_US, _mul_ge, clock_read, redis_clock

DAY_US = 86_400_000_000


def reference_read(spec: ClockSpec, t: int) -> int:
    """The documented semantics as one exact rational, floored once (independent of the code).

    local = t + offset + t * drift_ppm / 10^6 + sum(jumps done) + sum(slew fractions done).
    Parameters are taken through their decimal text so the test does not reuse the code's
    float-to-rational conversion.
    """
    total = Fraction(t) + Fraction(round(Fraction(str(spec.offset_ms)) * 1000))
    total += Fraction(t) * Fraction(str(spec.drift_ppm)) / 10**6
    for step in spec.steps:
        at = round(Fraction(str(step.at_s)) * 10**6)
        by = round(Fraction(str(step.by_ms)) * 1000)
        slew = round(Fraction(str(step.slew_s)) * 10**6)
        if slew == 0:
            total += by if t >= at else 0
        else:
            done = min(max(t - at, 0), slew)
            total += Fraction(by * done, slew)
    return math.floor(total)


def exact_read(spec: ClockSpec, t: int) -> int:
    """The documented semantics on the documented integer parameters (offset and steps in whole
    µs, drift in parts per 10^12), as one exact rational floored once: the formula's arithmetic
    checked over magnitudes where decimal text of the floats no longer names them exactly."""
    total = Fraction(t + ms_to_us(spec.offset_ms)) + Fraction(t * spec.drift_ppt, 10**12)
    for step in spec.steps:
        at, by, slew = s_to_us(step.at_s), ms_to_us(step.by_ms), s_to_us(step.slew_s)
        if slew == 0:
            total += by if t >= at else 0
        else:
            total += Fraction(by * min(max(t - at, 0), slew), slew)
    return math.floor(total)


def test_perfect_clock_reads_true_time() -> None:
    clock = NodeClock(ClockSpec.perfect())
    assert ClockSpec.perfect().is_perfect
    for t in (0, 1, 999_999, DAY_US, -5, 2**60):
        assert clock.read(t) == t
    times = np.array([0, 7, 123_456_789, -3], dtype=np.int64)
    assert clock.read_many(times).tolist() == times.tolist()
    assert NodeClock().read(42) == 42  # no spec means perfect


def test_offset_is_constant_and_rounded_to_nearest_us() -> None:
    clock = NodeClock(ClockSpec(offset_ms=2.5))
    assert [clock.read(t) for t in (0, 10, DAY_US)] == [2_500, 2_510, DAY_US + 2_500]
    assert NodeClock(ClockSpec(offset_ms=-1.0)).read(0) == -1_000
    assert NodeClock(ClockSpec(offset_ms=0.0004)).read(0) == 0
    assert NodeClock(ClockSpec(offset_ms=0.0006)).read(0) == 1
    assert not ClockSpec(offset_ms=2.5).is_perfect


def test_drift_over_a_day_is_exact() -> None:
    # +37.5 ppm over one day: 37.5e-6 * 86400 s = 3.24 s, exactly.
    clock = NodeClock(ClockSpec(drift_ppm=37.5))
    assert clock.read(DAY_US) == DAY_US + 3_240_000
    assert clock.read(1_000_000) == 1_000_000 + 37  # 37.5 µs floored
    # -20 ppm: one second reads 20 µs short; a week 12.096 s short.
    slow = NodeClock(ClockSpec(drift_ppm=-20))
    assert slow.read(1_000_000) == 999_980
    assert slow.read(7 * DAY_US) == 7 * DAY_US - 12_096_000


def test_fractional_drift_floors_exactly_over_long_spans() -> None:
    spec = ClockSpec(drift_ppm=-12.345678, offset_ms=-0.75)
    clock = NodeClock(spec)
    for t in (1, 999_999, 7 * DAY_US + 13, 365 * DAY_US + 1, -DAY_US - 1):
        expected = t - 750 + math.floor(Fraction(t) * Fraction(-12_345_678, 10**12))
        assert clock.read(t) == expected
    assert spec.drift_ppt == -12_345_678


def test_drift_resolution_is_one_part_per_10_12() -> None:
    # Below the documented resolution (1e-6 ppm) the drift is zero...
    assert ClockSpec(drift_ppm=4e-7).drift_ppt == 0
    assert NodeClock(ClockSpec(drift_ppm=4e-7)).read(DAY_US) == DAY_US
    # ...at it, 1e-6 ppm over 10^12 µs is exactly 1 µs.
    assert NodeClock(ClockSpec(drift_ppm=1e-6)).read(10**12) == 10**12 + 1


def test_jump_step_applies_from_its_instant_and_can_go_backwards() -> None:
    clock = NodeClock(ClockSpec(steps=[ClockStep(at_s=10, by_ms=-3)]))
    before, at = clock.read(9_999_999), clock.read(10_000_000)
    assert before == 9_999_999
    assert at == 10_000_000 - 3_000
    assert at < before  # local time went backwards: modelled, not an error
    up = NodeClock(ClockSpec(steps=[ClockStep(at_s=1, by_ms=5)]))
    assert up.read(999_999) == 999_999
    assert up.read(1_000_000) == 1_005_000


def test_slew_spreads_linearly() -> None:
    clock = NodeClock(ClockSpec(steps=[ClockStep(at_s=5, by_ms=4, slew_s=2)]))
    assert clock.read(5_000_000) == 5_000_000
    assert clock.read(5_000_001) == 5_000_001  # 0.002 µs applied
    assert clock.read(6_000_000) == 6_002_000
    assert clock.read(6_000_001) == 6_002_001  # 2000.002 µs applied
    assert clock.read(6_999_999) == 6_999_999 + 3_999
    assert clock.read(7_000_000) == 7_004_000
    assert clock.read(100_000_000) == 100_004_000


def test_negative_slew_keeps_time_monotonic() -> None:
    clock = NodeClock(ClockSpec(drift_ppm=-100, steps=[ClockStep(at_s=1, by_ms=-4, slew_s=2)]))
    # Every µs around the start, the middle and the end of the slew; a grid elsewhere.
    dense = [
        np.arange(c - 20_000, c + 20_000, dtype=np.int64) for c in (1_000_000, 2_000_000, 3_000_000)
    ]
    times = np.unique(np.concatenate([np.arange(0, 4_000_000, 101), *dense]))
    local = clock.read_many(times)
    assert np.all(np.diff(local) >= 0)
    # At 2 s: -200 µs of drift, half the slew (-2000 µs) done.
    assert clock.read(2_000_000) == 2_000_000 - 200 - 2_000
    assert clock.read(5_000_000) == 5_000_000 - 500 - 4_000


def test_corrections_add_up_in_any_order() -> None:
    steps = [
        ClockStep(at_s=4, by_ms=1, slew_s=4),
        ClockStep(at_s=1, by_ms=-2),
        ClockStep(at_s=2, by_ms=0.5, slew_s=2),
        ClockStep(at_s=3, by_ms=0.75),
    ]
    a = NodeClock(ClockSpec(offset_ms=0.25, drift_ppm=3, steps=steps))
    b = NodeClock(ClockSpec(offset_ms=0.25, drift_ppm=3, steps=list(reversed(steps))))
    times = np.arange(0, 9_000_000, 1_237, dtype=np.int64)
    assert a.read_many(times).tolist() == b.read_many(times).tolist()
    # At 5 s: slew 2 done (0.5 ms), 1/4 of the 1 ms slew, both jumps; 15 µs of drift.
    assert a.read(5_000_000) == 5_000_000 + 250 + 15 - 2_000 + 750 + 500 + 250
    assert a.read_many(times).tolist() == [reference_read(a.spec, int(t)) for t in times]


def test_overlapping_slews_are_refused_naming_the_steps() -> None:
    # realistic NTP daemons slew one correction at a time; two at once cannot be floored
    # exactly in int64 (module docstring), so the schema says which two steps collide
    with pytest.raises(ValueError, match=r"steps 2 and 0 slew at the same time"):
        ClockSpec(
            steps=[
                ClockStep(at_s=3, by_ms=1, slew_s=4),
                ClockStep(at_s=1, by_ms=-2),
                ClockStep(at_s=2, by_ms=0.5, slew_s=2),
            ]
        )
    # back to back is fine: the first ends (exclusive) where the second starts
    spec = ClockSpec(
        steps=[ClockStep(at_s=1, by_ms=1, slew_s=1), ClockStep(at_s=2, by_ms=1, slew_s=1)]
    )
    assert NodeClock(spec).read(2_500_000) == 2_500_000 + 1_500
    # a zero slew is no slew (nothing to spread), so it overlaps nothing
    ClockSpec(steps=[ClockStep(at_s=1, by_ms=1, slew_s=5), ClockStep(at_s=2, by_ms=0, slew_s=1)])


def test_out_of_range_times_and_clocks_are_refused() -> None:
    clock = NodeClock(ClockSpec(drift_ppm=1e6))  # the fastest clock: twice true time
    assert clock.read(CLOCK_LIMIT_US - 1) == 2 * (CLOCK_LIMIT_US - 1)
    assert clock.read(-CLOCK_LIMIT_US + 1) == 2 * (-CLOCK_LIMIT_US + 1)
    for t in (CLOCK_LIMIT_US, -CLOCK_LIMIT_US, 2**70):
        with pytest.raises(ValueError, match="true_us out of the exact range"):
            clock.read(t)
    with pytest.raises(ValueError, match="true_us out of the exact range"):
        clock.read_many(np.array([0, CLOCK_LIMIT_US], dtype=np.int64))
    # the schema's own bound is tighter (a clock's total shift <= 2**51 us, so every reading of
    # a run stays within the kernels' exact range): both are refused at the schema
    with pytest.raises(ValueError, match="more than 2\\*\\*51 us"):
        ClockSpec(offset_ms=CLOCK_LIMIT_US / 1000)
    with pytest.raises(ValueError, match="more than 2\\*\\*51 us"):
        ClockSpec(
            offset_ms=CLOCK_LIMIT_US / 2000, steps=[ClockStep(at_s=1, by_ms=-CLOCK_LIMIT_US / 2000)]
        )


def test_wide_products_compare_exactly() -> None:
    top = 2**62 - 1
    cases = [(top, top, top, top), (top, top - 1, top - 1, top), (10**12 - 1, top, top, 10**12 - 1)]
    cases += [(3, 5, 5, 3), (0, top, 1, 1), (2**31, 2**31, 2**62 - 1, 1)]
    for a, b, c, d in cases:
        assert _mul_ge(a, b, c, d) == (a * b >= c * d)
        assert _mul_ge(c, d, a, b) == (c * d >= a * b)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 2**62 - 1), min_size=4, max_size=4))
def test_wide_products_compare_like_python_ints(v: list[int]) -> None:
    assert _mul_ge(*v) == (v[0] * v[1] >= v[2] * v[3])


def test_read_many_keeps_shape_and_refuses_floats() -> None:
    clock = NodeClock(ClockSpec(offset_ms=1))
    grid = np.arange(6, dtype=np.int64).reshape(2, 3)
    out = clock.read_many(grid)
    assert out.shape == (2, 3)
    assert out.dtype == np.int64
    assert out.tolist() == (grid + 1_000).tolist()
    with pytest.raises(ValueError, match="true_us"):
        clock.read_many(np.array([1.5]))
    with pytest.raises(ValueError, match="true_us"):
        clock.read(1.5)  # type: ignore[arg-type]
    assert clock.read(np.int64(7)) == 1_007
    assert clock.read_many(np.array([], dtype=np.int64)).shape == (0,)


@pytest.mark.parametrize(
    "spec",
    [
        # Exact ties: drift 1/2 µs per µs plus a slew of 1/2 µs per µs hit floor boundaries.
        ClockSpec(drift_ppm=500_000, steps=[ClockStep(at_s=0.000002, by_ms=5, slew_s=0.01)]),
        ClockSpec(drift_ppm=-333_333.333333, steps=[ClockStep(at_s=0, by_ms=-0.3, slew_s=0.0009)]),
        # Back-to-back slews of both signs over a drifting clock.
        ClockSpec(
            drift_ppm=-7.654321,
            steps=[
                ClockStep(at_s=0.01, by_ms=3.333, slew_s=0.04),
                ClockStep(at_s=0.05, by_ms=-1.777, slew_s=0.011),
            ],
        ),
    ],
)
def test_read_many_equals_reference_densely_inside_slews(spec: ClockSpec) -> None:
    clock = NodeClock(spec)
    times = np.arange(-50, 60_000, 11, dtype=np.int64)
    expected = [reference_read(spec, int(t)) for t in times]
    assert clock.read_many(times).tolist() == expected
    assert [clock.read(int(t)) for t in times[::50]] == expected[::50]


step_strategy = st.builds(
    ClockStep,
    at_s=st.integers(0, 20_000_000).map(lambda us: us / 1e6),
    by_ms=st.integers(-50_000, 50_000).map(lambda us: us / 1e3),
    slew_s=st.sampled_from([0.0, 0.000001, 0.5, 3.0, 1000.0]),
)


def one_slew_at_a_time(steps: list[ClockStep]) -> list[ClockStep]:
    """``steps`` with each slew overlapping an earlier one made a jump (what the schema takes)."""
    out: list[ClockStep] = []
    busy: list[tuple[int, int]] = []
    for s in steps:
        at, end = s_to_us(s.at_s), s_to_us(s.at_s) + s_to_us(s.slew_s)
        if s.slew_s and ms_to_us(s.by_ms) and any(a < end and at < b for a, b in busy):
            s = ClockStep(at_s=s.at_s, by_ms=s.by_ms)
        elif s.slew_s and ms_to_us(s.by_ms):
            busy.append((at, end))
        out.append(s)
    return out


spec_strategy = st.builds(
    ClockSpec,
    offset_ms=st.integers(-(10**7), 10**7).map(lambda us: us / 1e3),
    drift_ppm=st.integers(-(10**9), 10**9).map(lambda ppt: ppt / 1e6),
    steps=st.lists(step_strategy, max_size=4).map(one_slew_at_a_time),
)


@st.composite
def whole_domain_specs(draw: st.DrawFn) -> ClockSpec:
    """Any clock the schema accepts, magnitudes up to its limits (draws it refuses are
    rejected): a total shift up to 2**51 us (``ratesim.bounds``), step instants up to 2**52 us,
    slews up to the longest run."""
    lim_ms = MAX_CLOCK_SHIFT_US / 1000
    steps = []
    for _ in range(draw(st.integers(0, 4))):
        slew_s = draw(st.sampled_from([0.0, 1e-6, 0.37, 1e4, MAX_RUN_S]))
        by_max = lim_ms / 8 if slew_s == 0 else min(lim_ms / 8, 0.999 * 2.0**62 / (slew_s * 1e9))
        at_s = draw(st.floats(0, MAX_ABS_NOW_US / 2e6))
        steps.append((at_s, draw(st.floats(-by_max, by_max)), slew_s))
    try:
        return ClockSpec(
            offset_ms=draw(st.floats(-lim_ms / 4, lim_ms / 4)),
            drift_ppm=draw(st.floats(-999_999.999999, 1e6)),
            steps=one_slew_at_a_time(
                [ClockStep(at_s=at, by_ms=by, slew_s=sl) for at, by, sl in steps]
            ),
        )
    except ValueError:
        reject()


@settings(max_examples=60, deadline=None)
@given(
    spec=spec_strategy,
    times=st.lists(st.integers(-(2**54), 2**54), min_size=1, max_size=30),
)
def test_read_many_equals_read_and_the_reference(spec: ClockSpec, times: list[int]) -> None:
    clock = NodeClock(spec)
    # Times near every step boundary, where off-by-one errors live.
    edges = [s_to_us(s.at_s) + d for s in spec.steps for d in (-1, 0, 1, 250_000)]
    edges += [s_to_us(s.at_s + s.slew_s) + d for s in spec.steps for d in (-1, 0)]
    all_times = np.array(times + edges, dtype=np.int64)
    scalar = [clock.read(int(t)) for t in all_times]
    assert clock.read_many(all_times).tolist() == scalar
    assert scalar == [reference_read(spec, int(t)) for t in all_times]


slow_slew = st.builds(
    lambda at_us, slew_ms, frac: ClockStep(
        at_s=at_us / 1e6, by_ms=round(slew_ms * frac, 3), slew_s=slew_ms / 1e3
    ),
    at_us=st.integers(0, 2_000_000),
    slew_ms=st.integers(1, 200),
    frac=st.floats(-0.4, 0.4),
)


@settings(max_examples=40, deadline=None)
@given(
    drift=st.integers(-500_000_000, 500_000_000),
    jumps=st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(0, 5_000)), max_size=3),
    # overlapping slews are refused: keep the first of two that overlap
    slews=st.lists(slow_slew, max_size=2).map(
        lambda ss: [s for s in one_slew_at_a_time(ss) if s.slew_s]
    ),
)
def test_monotonic_without_negative_jumps(
    drift: int, jumps: list[tuple[int, int]], slews: list[ClockStep]
) -> None:
    steps = [ClockStep(at_s=at / 1e6, by_ms=by / 1e3) for at, by in jumps] + slews
    clock = NodeClock(ClockSpec(drift_ppm=drift / 1e6, steps=steps))
    # Total rate >= 1 - 0.0005 - 2 * 0.4 > 0: local time must never decrease. Every µs near
    # each correction's start and end, a coarse grid elsewhere.
    edges = [s_to_us(s.at_s) for s in steps] + [s_to_us(s.at_s + s.slew_s) for s in steps]
    dense = [np.arange(e - 1_500, e + 1_500, dtype=np.int64) for e in edges]
    times = np.unique(np.concatenate([np.arange(0, 2_500_000, 97, dtype=np.int64), *dense]))
    assert np.all(np.diff(clock.read_many(times)) >= 0)


def test_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="drift_ppm"):
        ClockSpec(drift_ppm=-1_000_000)
    with pytest.raises(ValueError, match="offset_ms"):
        ClockSpec(offset_ms=float("nan"))
    with pytest.raises(ValueError, match=r"steps\.0\.slew_s"):
        ClockSpec.model_validate({"steps": [{"at_s": 1, "by_ms": 1, "slew_s": -1}]})
    with pytest.raises(ValueError, match=r"steps\.1\.at_s"):
        ClockSpec.model_validate({"steps": [{"at_s": 1, "by_ms": 1}, {"at_s": -2, "by_ms": 1}]})
    with pytest.raises(ValueError, match="skew"):
        ClockSpec.model_validate({"skew": 3})
    with pytest.raises(ValueError, match="slew_s"):
        ClockStep(at_s=0, by_ms=10**9, slew_s=10**9)  # beyond exact int64 arithmetic


def test_spec_round_trips_through_plain_data() -> None:
    spec = ClockSpec(offset_ms=1.5, drift_ppm=-3.25, steps=[ClockStep(at_s=2, by_ms=1, slew_s=1)])
    again = ClockSpec.model_validate(spec.model_dump())
    assert again == spec
    assert NodeClock(again).read(2_500_000) == NodeClock(spec).read(2_500_000)


def test_unit_conversions_round_to_nearest_us() -> None:
    assert ms_to_us(1.2344) == 1_234
    assert ms_to_us(1.2346) == 1_235
    assert ms_to_us(-0.0006) == -1
    assert s_to_us(0.1) == 100_000
    assert s_to_us(86_400) == DAY_US


def test_package_exports_resolve() -> None:
    for name in model.__all__:
        assert getattr(model, name) is not None
    with pytest.raises(AttributeError):
        _ = model.no_such_name


@settings(max_examples=300, deadline=None)
@given(
    spec=whole_domain_specs(),
    times=st.lists(st.integers(-CLOCK_LIMIT_US + 1, CLOCK_LIMIT_US - 1), min_size=1, max_size=12),
)
def test_the_formula_is_exact_over_the_whole_domain(spec: ClockSpec, times: list[int]) -> None:
    """Compiled (read, read_many) and plain-Python formula equal the exact rational reference,
    for every clock the schema accepts and every true time in range (near steps too)."""
    clock = NodeClock(spec)
    edges = [s_to_us(s.at_s) + d for s in spec.steps for d in (-1, 0, 1)]
    edges += [s_to_us(s.at_s) + s_to_us(s.slew_s) + d for s in spec.steps for d in (-1, 0)]
    edges += [s_to_us(s.at_s) + s_to_us(s.slew_s) // 2 for s in spec.steps]
    all_times = [t for t in times + edges if abs(t) < CLOCK_LIMIT_US]
    expected = [exact_read(spec, t) for t in all_times]
    assert [clock.read(t) for t in all_times] == expected
    assert clock.read_many(np.array(all_times, dtype=np.int64)).tolist() == expected
    assert [int(clock_read(*clock.tables, 0, t)) for t in all_times[:4]] == expected[:4]


def test_redis_clock_folds_failover_steps_in_as_jumps() -> None:
    from ratesim.model.faults import FailoverSpec
    from ratesim.scenario import RedisSpec

    spec = RedisSpec(
        clock=ClockSpec(drift_ppm=33.3, steps=[ClockStep(at_s=0.5, by_ms=2, slew_s=1)]),
        failovers=[
            FailoverSpec(at_s=0.7, clock_step_ms=1.0005),
            FailoverSpec(at_s=0.2, clock_step_ms=-0.25),
            FailoverSpec(at_s=0.9),
        ],
    )
    clock = redis_clock(spec)
    base = NodeClock(spec.clock)
    steps = [(f.at_us, round(f.clock_step_ms * 1000)) for f in spec.failovers]

    def old(t: int) -> int:
        """The Redis clock as the event engine stepped it before the reshaping."""
        return base.read(t) + sum(step for at, step in steps if t >= at)

    times = list(range(0, 2_000_000, 997)) + [199_999, 200_000, 700_000, 699_999]
    assert [clock.read(t) for t in times] == [old(t) for t in times]
    assert clock.read_many(np.array(times)).tolist() == [old(t) for t in times]
    assert redis_clock(None).is_perfect
    assert redis_clock(RedisSpec()).is_perfect
    assert not redis_clock(RedisSpec(failovers=[FailoverSpec(at_s=1, clock_step_ms=1)])).is_perfect
    assert redis_clock(RedisSpec(failovers=[FailoverSpec(at_s=1)])).is_perfect
