"""Result views agree with each other; the oracle gap is what its definition says."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_helpers import check_conservation, make_arrivals, make_scenario

import ratesim.scenarios as builtin
from ratesim.engine import simulate
from ratesim.model.clock import ClockSpec
from ratesim.policy import GcraSpec, LayerSpec
from ratesim.results import OUTCOMES, window_max_sum, window_max_sum_reference


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 600), st.sampled_from([-1, 0, 1])), max_size=60),
    st.integers(1, 300),
)
def test_window_max_sum_matches_brute_force(events: list[tuple[int, int]], w: int) -> None:
    events.sort(key=lambda e: e[0])
    t = np.array([e[0] for e in events], dtype=np.int64)
    d = np.array([e[1] for e in events], dtype=np.int64)
    best = 0
    for s in range(-w - 1, 602):  # every window that holds any event
        best = max(best, int(d[(t >= s) & (t < s + w)].sum()))
    assert window_max_sum(t, d, w) == best


def test_views_are_consistent_on_the_flagship() -> None:
    r = simulate(builtin.get("exchange-surge", scale=0.03), seed=1)
    check_conservation(r)
    req = r.requests
    for name in r.layer_names:
        assert list(req[f"layer:{name}"].cat.categories) == list(OUTCOMES)
        counts = req[f"layer:{name}"].value_counts()
        row = r.summary.set_index("layer").loc[name]
        assert row["shadow_rejected"] == counts["shadow_rejected"]
        assert row["fail_open"] == counts["fail_open"]
        assert row["reached"] == len(req) - counts["not_reached"]
        ts = r.timeseries[f"shadow_rejected:{name}"]
        assert int(ts.sum()) == counts["shadow_rejected"]
    assert set(req["tier"].cat.categories) == {"platinum", "gold", "silver"}
    lat = req["latency_us"].to_numpy()
    assert r.totals["latency_p99_us"] == np.percentile(lat, 99)
    # decisions never precede arrivals and global layers cost at least a round trip
    assert (lat > 0).all()
    ts = r.timeseries
    assert ts.index.name == "time_s"
    assert len(ts) == 30
    assert (ts["latency_p50_us"] <= ts["latency_p99_us"]).all()
    assert ts["redis_queue_depth"].max() >= 1
    expected_cols = {"arrivals", "admitted", "pool_wait_p99_us", "latency_p999_us"}
    assert expected_cols <= set(ts.columns)
    assert {f"remaining:{n}" for n in r.layer_names} <= set(ts.columns)


def test_vs_oracle_counts_by_definition() -> None:
    """Clock skew on a client-time GCRA: compare the gap table with the definitions."""
    layer = LayerSpec(
        name="g",
        algorithm=GcraSpec(max_burst=4, count_per_period=50),
        scope="global",
        key="*",
    )
    sc = make_scenario(
        [layer],
        nodes=3,
        duration_s=3.0,
        rate_per_s=300.0,
        latency_ms=0.3,
        topology={"clocks": [ClockSpec(), ClockSpec(offset_ms=30.0), ClockSpec(offset_ms=-30.0)]},
    )
    r = simulate(sc, seed=4)
    check_conservation(r)
    assert r.oracle is not None
    sys_adm, ora_adm = r.admitted, r.oracle.admitted
    gap = r.vs_oracle.set_index(["group", "key"])
    over = int((sys_adm & ~ora_adm).sum())
    wrong = int((~sys_adm & ora_adm).sum())
    assert over > 0 and wrong > 0  # skew moves admissions both ways
    assert gap.loc[("total", "all"), "over_admitted"] == over
    assert gap.loc[("total", "all"), "wrongly_rejected"] == wrong
    assert gap.loc[("layer", "g"), "over_admitted"] == over
    assert gap.loc[("tier", "silver"), "wrongly_rejected"] == wrong
    # peak excess over 1 s, brute force over windows starting at, or ending just after, each
    t = r.data.arrivals.time_us
    d = sys_adm.astype(int) - ora_adm.astype(int)
    starts = np.concatenate([t, t + 1, t - 1_000_000 + 1])
    brute = max(0, max(int(d[(t >= s) & (t < s + 1_000_000)].sum()) for s in starts))
    assert gap.loc[("total", "all"), "peak_excess"] == brute
    assert r.peak_excess(1.0) == brute
    longer = r.compare_oracle(window_s=3.0).set_index(["group", "key"])
    assert longer.loc[("total", "all"), "peak_excess"] >= 0


def test_oracle_of_an_oracle_is_none_and_frames_build() -> None:
    layer = LayerSpec(name="g", algorithm=GcraSpec(max_burst=1, count_per_period=5), key="*")
    sc = make_scenario([layer], duration_s=1.0)
    r = simulate(sc, seed=0, arrivals=make_arrivals([0, 10, 20, 400_000]))
    assert r.oracle is not None and r.oracle.oracle is None
    assert r.requests["admitted"].tolist() == [True, True, False, True]
    assert r.requests["rejected_by"].tolist() == [None, None, "g", None]
    assert isinstance(r.oracle.requests, pd.DataFrame)
    assert "Result('test'" in repr(r)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 600), st.sampled_from([-1, 0, 1])), max_size=60),
    st.integers(1, 300),
)
def test_compiled_window_max_sum_equals_its_numpy_reference(
    events: list[tuple[int, int]], w: int
) -> None:
    events.sort(key=lambda e: e[0])
    t = np.array([e[0] for e in events], dtype=np.int64)
    d = np.array([e[1] for e in events], dtype=np.int64)
    assert window_max_sum(t, d, w) == window_max_sum_reference(t, d, w)


def test_compiled_oracle_gap_equals_its_reference_on_every_group() -> None:
    """The one-pass compiled gap against the masks-and-searchsorted twin, several windows,
    on the flagship (tiers, abusive users, three global layers) and a skewed GCRA run."""
    runs = [simulate(builtin.get("exchange-surge", scale=0.03), seed=2)]
    layer = LayerSpec(
        name="g", algorithm=GcraSpec(max_burst=4, count_per_period=50), scope="global", key="*"
    )
    sc = make_scenario(
        [layer],
        nodes=3,
        duration_s=3.0,
        rate_per_s=300.0,
        latency_ms=0.3,
        topology={"clocks": [ClockSpec(), ClockSpec(offset_ms=30.0), ClockSpec(offset_ms=-30.0)]},
    )
    runs.append(simulate(sc, seed=4))
    for r in runs:
        for window_s in (0.001, 0.25, 1.0, 3.0):
            got = r.compare_oracle(window_s)
            want = r.compare_oracle_reference(window_s)
            pd.testing.assert_frame_equal(got, want)
