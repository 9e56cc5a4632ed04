"""Every gallery incident's configs import and its suite has the validate contract's fields."""

from __future__ import annotations

import pandas as pd
import pytest

from ratesim import gallery


def test_every_incident_loads_and_suite_parses() -> None:
    from ratesim.validate import load_suite

    assert len(gallery.names()) >= 3
    for name in gallery.names():
        broken, fixed, suite = gallery.load(name)
        assert broken.policy.layers and fixed.policy.layers
        loaded = load_suite(suite)  # the validate suite contract, checked
        assert loaded.spec.replications >= 1 and 0 < loaded.spec.confidence < 1
        assert loaded.entries and all(e.rules for e in loaded.entries)


def _admitted(spec: object, times_us: list[int], stores: int = 1) -> int:
    """Admissions of one key's requests at ``times_us``, spread round-robin over ``stores``
    independent MemoryStores (one per gateway node: a node-scoped limit)."""
    from ratesim import MemoryStore, replay

    total = 0
    for node in range(stores):
        mine = times_us[node::stores]
        df = pd.DataFrame({"time_us": mine, "key": ["u"] * len(mine)})
        total += int(replay(df, spec, MemoryStore())["allowed"].sum())
    return total


def test_kong_local_on_two_pods_admits_twice_the_minute_limit() -> None:
    broken, fixed, _ = gallery.load("kong-local-pods")
    # 40 requests in the first 30 s of a UTC minute, load-balanced over 2 pods.
    times = [i * 750_000 for i in range(40)]
    limit = 10  # `minute: 10`: Kong counts per node with policy local, shared with redis
    b, f = broken.policy.layers[0], fixed.policy.layers[0]
    assert b.scope == "node" and f.scope == "global"
    assert _admitted(b.algorithm, times, stores=2) == 2 * limit
    assert _admitted(f.algorithm, times, stores=1) == limit


def test_traefik_six_per_minute_is_one_per_ten_seconds() -> None:
    broken, fixed, _ = gallery.load("traefik-period-burst")
    # r = average / period = 6 / 60 s; burst defaults to 1 (Traefik raises burst < 1 to 1).
    # A client sends 6 at once, every minute for 3 minutes.
    times = [m * 60_000_000 + i * 1000 for m in range(3) for i in range(6)]
    assert _admitted(broken.policy.layers[0].algorithm, times) == 3 * 1
    # burst 6: the bucket (full at start) refills 6 in 60 s, so each minute's 6 all pass.
    assert _admitted(fixed.policy.layers[0].algorithm, times) == 3 * 6
    # Spaced 10 s apart (1 / r), the default burst admits all 6 per minute.
    spaced = [i * 10_000_000 for i in range(18)]
    assert _admitted(broken.policy.layers[0].algorithm, spaced) == 18


def test_nginx_rpm_small_burst_rejects_a_page_load() -> None:
    broken, fixed, _ = gallery.load("nginx-rpm-small-burst")
    # A page load: 30 calls within 30 ms from an idle client; rate=30r/m.
    times = [i * 1000 for i in range(30)]
    # nginx: excess grows 1000 per admitted request (rate leaks ~0 in 30 ms); reject when
    # excess > burst*1000, so an idle key admits burst + 1 at once.
    assert _admitted(broken.policy.layers[0].algorithm, times) == 5 + 1
    assert _admitted(fixed.policy.layers[0].algorithm, times) == 29 + 1


def test_each_incident_suite_fails_broken_and_passes_fixed() -> None:
    """`ratesim validate` on each incident's suite tells the configs apart: the broken config
    fails at least one assertion, the fixed one passes every one."""
    import ratesim

    for name in gallery.names():
        broken, fixed, suite = gallery.load(name)
        bad = ratesim.validate(broken, suite, progress=False)
        good = ratesim.validate(fixed, suite, progress=False)
        assert not bad.passed, f"{name}: the broken config passes\n{bad.format_table()}"
        assert good.passed, f"{name}: the fixed config fails\n{good.format_table()}"


def test_nginx_page_loads_rejected_share_is_the_burst_arithmetic() -> None:
    """The page-load trace: 20 clients x 2 page loads x 30 calls from an idle key; nginx admits
    burst + 1 of each, so broken (burst 5) rejects 24 of 30 = 80%, fixed (burst 29) none."""
    import ratesim

    broken, fixed, suite = gallery.load("nginx-rpm-small-burst")
    table = ratesim.validate(broken, suite, progress=False).table
    assert table["mean"].iloc[0] == pytest.approx(100 * (30 - (5 + 1)) / 30)
    table = ratesim.validate(fixed, suite, progress=False).table
    assert table["mean"].iloc[0] == 0


def test_traefik_six_at_once_admitted_share_is_one_in_six() -> None:
    """Six at once every 61 s: burst 1 admits 1 of 6 (16.7%); the fixed burst 6 admits all."""
    import ratesim

    broken, fixed, suite = gallery.load("traefik-period-burst")
    rows = ratesim.validate(broken, suite, progress=False).table.set_index("assertion")
    assert rows.loc["admitted_pct > 99", "mean"] == pytest.approx(100 / 6)
    rows = ratesim.validate(fixed, suite, progress=False).table.set_index("assertion")
    assert rows.loc["admitted_pct > 99", "mean"] == 100


def _flash_crowd_arrivals(base: float, peak: float, duration: float, ramp: float,
                          plateau: float, decay: float) -> float:  # fmt: skip
    """Expected arrivals of a linear-ramp flash crowd: base rate outside, peak x base on the
    plateau, linear ramps up and down (trapezoids)."""
    top = base * peak
    rest = duration - ramp - plateau - decay
    return base * rest + ramp * (base + top) / 2 + plateau * top + decay * (top + base) / 2


def test_envoy_ratelimit_fails_open_for_the_outage_share_of_traffic() -> None:
    """Redis black-holed 12-16 s, inside the surge's plateau (10-20 s at 17.3 x 200/s): every
    request of those 4 s is a failure-mode admission of the broken config, none of the fixed
    one, and the broken one waits Envoy's 20 ms filter timeout on each."""
    import ratesim

    broken, fixed, suite = gallery.load("envoy-ratelimit-redis-outage")
    base, peak = 2000 * 0.1, 17.3
    total = _flash_crowd_arrivals(base, peak, 30, 2, 10, 4)
    expected = 100 * 4 * base * peak / total
    rows = ratesim.validate(broken, suite, progress=False).table.set_index("assertion")
    # Poisson noise on ~14k of ~48k arrivals: well under half a percentage point
    assert rows.loc["fail_open_pct < 1", "mean"] == pytest.approx(expected, abs=0.5)
    assert rows.loc["p99_decision_latency_ms < 5", "mean"] == pytest.approx(20.0, abs=0.5)
    rows = ratesim.validate(fixed, suite, progress=False).table.set_index("assertion")
    assert rows.loc["fail_open_pct < 1", "mean"] == 0


def test_sentinel_fallback_admits_the_whole_ticker_peak_while_the_server_is_down() -> None:
    """Token server refused 12-16 s: broken falls back to count 1000 per node (4000/s), above
    the ticker's peak of 0.6 x 3460/s, so each outage second admits ~2076 against the ideal
    1000; fixed falls back to 250 per node, 1000 for the cluster."""
    import ratesim

    broken, fixed, suite = gallery.load("sentinel-cluster-fallback")
    (b,), (f,) = broken.policy.layers, fixed.policy.layers
    assert b.local_share == 1.0 and b.algorithm.limit == 1000  # thresholdType 1: global count
    assert f.local_share == 0.25 and f.algorithm.limit == 250 * 4  # 0: count x 4 clients
    ticker_peak = 0.6 * 2000 * 0.1 * 17.3
    rows = ratesim.validate(broken, suite, progress=False).table.set_index("assertion")
    # at least one full outage second admits the whole peak: excess >= peak - 1000 (minus noise)
    assert rows.loc["peak_excess < 750", "mean"] > 0.9 * (ticker_peak - 1000)
    rows = ratesim.validate(fixed, suite, progress=False).table.set_index("assertion")
    assert rows.loc["peak_excess < 750", "mean"] < ticker_peak - 1000


def _scale_out_world(policy: object, at_s: float, duration_s: float) -> object:
    """3 pods behind a round-robin balancer, 3 more from ``at_s``, 3000 requests/s of one key:
    every pod is overloaded throughout (>= 500/s each against its 100 tokens/s)."""
    from ratesim.scenario import ScaleChange, Scenario, TopologySpec
    from ratesim.traffic.specs import PoissonTraffic

    return Scenario(
        name="scale-out",
        duration_s=duration_s,
        seed=3,
        topology=TopologySpec(
            nodes=3, load_balancer="round_robin", changes=[ScaleChange(at_s=at_s, nodes=6)]
        ),  # fmt: skip
        redis=None,
        policy=policy,
        traffic=PoissonTraffic(rate_per_s=3000.0),
    )


def test_envoy_local_new_pods_start_full_and_add_their_rate() -> None:
    """Per-pod buckets (max_tokens 100, 100 tokens/s): 3 pods admit 3 x 100 at once, then
    3 x 100/s; 3 pods more at 2 s add 3 x 100 at once (full buckets) and 3 x 100/s. The fix
    shares 300 tokens/s over the live pods (ceil(300 / 3) = 100, ceil(300 / 6) = 50 each):
    the rate stays 300/s, only the new pods' full buckets (3 x 100) come on top."""
    from ratesim import simulate

    broken, fixed, _ = gallery.load("envoy-local-autoscale")
    (b,), (f,) = broken.policy.layers, fixed.policy.layers
    assert (b.scope, b.local_share, b.algorithm.rate, b.algorithm.burst) == ("node", None, 100, 100)
    assert (f.scope, f.local_share) == ("node", "follow")  # local_cluster_rate_limit
    assert (f.algorithm.rate, f.algorithm.burst) == (300, 100)  # the site's tokens_per_fill
    max_tokens, pods, new_pods, at_s, t = 100, 3, 3, 2, 2
    expect = {
        # [0, at): the pods' full buckets, then their refill; [at, at + t): the old pods'
        # refill, the new pods' full buckets and their refill.
        "broken": (pods * max_tokens + pods * 100 * at_s,
                   pods * 100 * t + new_pods * max_tokens + new_pods * 100 * t),
        "fixed": (pods * max_tokens + 300 * at_s,
                  new_pods * max_tokens + (pods + new_pods) * -(-300 // 6) * t),
    }  # fmt: skip
    for label, imp in (("broken", broken), ("fixed", fixed)):
        req = simulate(_scale_out_world(imp.policy, at_s, at_s + t)).requests
        ok, time_us = req["admitted"].to_numpy(bool), req["time_us"].to_numpy()
        before = int(ok[time_us < at_s * 1_000_000].sum())
        after = int(ok[time_us >= at_s * 1_000_000].sum())
        # a pod's bucket may hold less than one token at the scale event (it is refilled
        # continuously): at most one token per pod either way
        assert before == pytest.approx(expect[label][0], abs=pods), label
        assert after == pytest.approx(expect[label][1], abs=pods + new_pods), label


def _min_integral(base: float, peak: float, start: float, ramp: float, plateau: float,
                  decay: float, duration: float, cap: object) -> float:  # fmt: skip
    """Integral of min(flash-crowd rate, cap(t)) over the run (a 1 ms grid, midpoints)."""
    import numpy as np

    t = (np.arange(int(duration * 1000)) + 0.5) / 1000
    top = base * peak
    rate = np.interp(t, [0, start, start + ramp, start + ramp + plateau,
                         start + ramp + plateau + decay, duration],
                     [base, base, top, top, base, base])  # fmt: skip
    return float(np.minimum(rate, cap(t)).sum() / 1000)  # type: ignore[operator]


def test_envoy_local_autoscale_suite_admits_the_pod_count_times_the_rate() -> None:
    """The autoscale surge (250/s, 4x from 8 s: ramp 2 s, plateau 12 s, decay 4 s) on 3 pods,
    3 more at 12 s. Each config admits min(demand, its site rate) plus the full buckets spent
    when demand first exceeds it (3 x 100) and at the scale event (3 new x 100): the broken
    site rate is 100/s x the live pods (300/s, then 600/s), the fixed one 300/s throughout."""
    import numpy as np

    import ratesim

    broken, fixed, suite = gallery.load("envoy-local-autoscale")
    shape = (250.0, 4.0, 8.0, 2.0, 12.0, 4.0, 30.0)
    bursts = 3 * 100 + 3 * 100
    want_b = _min_integral(*shape, cap=lambda t: np.where(t < 12, 3 * 100, 6 * 100)) + bursts
    want_f = _min_integral(*shape, cap=lambda t: np.full_like(t, 300.0)) + bursts
    budget = 300 * 30 + bursts  # the suite's bound: the site's 300/s and the full buckets
    assert want_f < budget < want_b
    bad = ratesim.validate(broken, suite, progress=False)
    good = ratesim.validate(fixed, suite, progress=False)
    assert not bad.passed and good.passed
    b_rows, f_rows = bad.table.set_index("assertion"), good.table.set_index("assertion")
    got_b, got_f = b_rows.loc["admitted < 9600", "mean"], f_rows.loc["admitted < 9600", "mean"]
    # Poisson noise where demand is below the rate (~3300 arrivals): well under 150
    assert got_b == pytest.approx(want_b, abs=150)
    assert got_f == pytest.approx(want_f, abs=150)
    # the same arrivals (common random numbers): the difference is all in saturated spans
    assert got_b - got_f == pytest.approx(want_b - want_f, abs=40)
    # the fix's residual excess over its ideal (one 300/s bucket): the new pods' full buckets
    assert f_rows.loc["peak_excess < 450", "mean"] == pytest.approx(3 * 100, abs=15)
