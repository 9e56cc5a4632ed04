"""The store-path breaker in the runners, the failure-mode counts, and the bad-day built-ins
(issue 13 items 2 and 5): every expected value is derived here from the scenario's numbers and
the published semantics (docs/guides/simulation.md, "The store-path breaker")."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from ratesim import scenarios, simulate
from ratesim.model.faults import OutageSpec
from ratesim.model.latency import ConstantLatency
from ratesim.outcomes import FAIL_CLOSED, FAIL_OPEN, LOCAL_ALLOWED, LOCAL_REJECTED, NOT_REACHED
from ratesim.policy import GcraSpec, LayerSpec, PolicySpec, StoreBreakerSpec
from ratesim.results import Result
from ratesim.scenario import NetworkSpec, RedisSpec, Scenario, TopologySpec
from ratesim.scenarios.bad_days import SPIKE_END_S, SPIKE_START_S
from ratesim.traffic import PoissonTraffic, PopulationSpec

# The black hole: one node, 2000 requests/s, constant 0.5 ms each way, a 20 ms timeout.
L_US, TAU_US, SVC_US = 500, 20_000, 10
HOLE = (1_000_000, 3_000_000)
K, COOLDOWN_US = 5, 100_000


def blackhole(breaker: StoreBreakerSpec | None) -> Scenario:
    return Scenario(
        name="blackhole-breaker",
        duration_s=4.0,
        seed=11,
        topology=TopologySpec(nodes=1),
        network=NetworkSpec(latency=ConstantLatency(ms=L_US / 1000), pool_size=2000),
        redis=RedisSpec(
            service_time=ConstantLatency(ms=SVC_US / 1000),
            outages=[OutageSpec(start_s=HOLE[0] / 1e6, end_s=HOLE[1] / 1e6, kind="blackhole")],
        ),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="site",
                    algorithm=GcraSpec(max_burst=100_000, count_per_period=100_000),
                    scope="global",
                    key="*",
                    timeout_ms=TAU_US / 1000,
                    failure_mode="open",
                    store_breaker=breaker,
                )
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=2000.0),
        population=PopulationSpec(users=50),
    )


def expected_breaker_calls(
    t: np.ndarray, hit: np.ndarray, k: int, tau_us: int, cooldown_us: int
) -> tuple[int, int, int]:
    """(timed-out calls, when the breaker first opened, the arrival time of the probe that
    closed it) for one node's arrivals ``t`` (µs, sorted), ``hit[j]`` true when arrival ``j``'s
    call would time out, from the breaker's rules: the ``k``-th timeout observed (each ``tau_us``
    after its call) opens it; the first decision ``cooldown_us`` after it opened is the one
    probe; a probe that times out opens it again from its own timeout; one that gets an answer
    closes it. At one instant arrivals are decided before the timeouts observed then (the
    ordering rule), so an arrival at the instant the breaker opens still calls."""
    first = np.flatnonzero(hit)[:k]
    x1, xk = int(t[first[0]]), int(t[first[-1]])
    opened = xk + tau_us
    # every decision from the first failing call until the breaker opens makes a call
    calls = int(((t >= x1) & (t <= opened)).sum())
    assert hit[(t >= x1) & (t <= opened)].all()
    first_open = opened
    while True:
        j = int(np.searchsorted(t, opened + cooldown_us, side="left"))
        if not hit[j]:
            return calls, first_open, int(t[j])
        calls += 1
        opened = int(t[j]) + tau_us


@pytest.mark.parametrize("engine", ["event", "fast"])
def test_store_breaker_bounds_blackhole_timeouts(engine: str) -> None:
    r = simulate(
        blackhole(StoreBreakerSpec(failures=K, cooldown_ms=COOLDOWN_US / 1000)), engine=engine
    )
    t = r.data.arrivals.time_us
    lat = r.latency_us
    fo = r.data.outcomes[:, 0] == FAIL_OPEN
    timed_out = int((fo & (lat == TAU_US)).sum())
    short = int((fo & (lat == 0)).sum())
    assert timed_out + short == int(fo.sum())  # every failure-mode decision is one or the other
    # a command is black-holed when it reaches Redis (x + L) inside the hole
    hit = (t + L_US >= HOLE[0]) & (t + L_US < HOLE[1])
    calls, opened, probe = expected_breaker_calls(t, hit, K, TAU_US, COOLDOWN_US)
    assert timed_out == calls
    row = r.summary.iloc[0]
    assert row["breaker_short"] == short
    assert row["breaker_opens"] == 1
    # open from the k-th timeout to the closing probe's answer (an idle shard)
    closed = probe + 2 * L_US + SVC_US
    assert row["breaker_open_s"] == pytest.approx((closed - opened) / 1e6, abs=1e-9)
    # without the breaker every black-holed call waits out its timeout
    in_hole = int(((t + L_US >= HOLE[0]) & (t + L_US < HOLE[1])).sum())
    assert in_hole > 3000
    # about one timeout per cooldown: the first K (and those in flight before the breaker
    # heard of them: rate x timeout), then one probe per cooldown + timeout
    probes = (HOLE[1] - HOLE[0]) // (COOLDOWN_US + TAU_US)
    assert calls <= K + 2000 * TAU_US // 1_000_000 * 2 + probes + 1
    assert calls < in_hole / 30
    # the decision latency in the hole: timeouts are rare, so the mean is far below one
    hole = (t + L_US >= HOLE[0]) & (t + L_US < HOLE[1])
    assert lat[hole].mean() < TAU_US / 10


def test_without_a_breaker_every_blackholed_call_times_out() -> None:
    r = simulate(blackhole(None), engine="fast")
    t = r.data.arrivals.time_us
    hole = (t + L_US >= HOLE[0]) & (t + L_US < HOLE[1])
    fo = r.data.outcomes[:, 0] == FAIL_OPEN
    np.testing.assert_array_equal(fo, hole)
    assert (r.latency_us[hole] == TAU_US).all()
    assert r.data.store_breakers is None
    assert r.summary.iloc[0]["breaker_short"] == 0


def test_a_breaker_that_never_opens_changes_no_decision() -> None:
    """With no fault the breaker only hears answers: the same decisions as without it."""
    base = scenarios.get("single-node-ideal")
    with_breaker = base.model_copy(
        update={
            "policy": PolicySpec(
                layers=[
                    layer.model_copy(
                        update={"store_breaker": StoreBreakerSpec(failures=1, cooldown_ms=1.0)}
                    )
                    if layer.scope == "global"
                    else layer
                    for layer in base.policy.layers
                ]
            )
        }
    )
    for engine in ("event", "fast"):
        a, b = simulate(base, engine=engine), simulate(with_breaker, engine=engine)
        np.testing.assert_array_equal(a.data.outcomes, b.data.outcomes)
        np.testing.assert_array_equal(a.data.decided_us, b.data.decided_us)
        assert b.summary["breaker_opens"].sum() == 0


def test_store_breaker_is_validated() -> None:
    with pytest.raises(ValidationError, match="store_breaker: only a global layer"):
        LayerSpec(
            name="n",
            algorithm=GcraSpec(max_burst=1, count_per_period=1),
            store_breaker={"failures": 3, "cooldown_ms": 10},
        )
    for bad, field in (
        ({"failures": 0, "cooldown_ms": 10}, "failures"),
        ({"failures": 2}, "cooldown_ms"),
    ):
        with pytest.raises(ValidationError, match=field):
            LayerSpec(
                name="g",
                algorithm=GcraSpec(max_burst=1, count_per_period=1),
                scope="global",
                store_breaker=bad,
            )


# --- the bad-day built-ins --------------------------------------------------------------------


def _no_failover(sc: Scenario) -> Scenario:
    assert sc.redis is not None
    return sc.model_copy(update={"redis": sc.redis.model_copy(update={"failovers": []})})


def test_failover_with_state_loss_over_admits_the_lost_window() -> None:
    """A saturated GCRA admits one request per emission interval; the promotion brings back
    its state from ``lost_writes`` ago, so it admits again what it admitted in that window:
    ``count_per_period / period_s x lost_writes`` requests over its limit."""
    sc = scenarios.get("redis-failover")
    assert sc.redis is not None
    fo = sc.redis.failovers[0]
    site = sc.policy.layer("site_gcra").algorithm
    assert isinstance(site, GcraSpec)
    expected = site.count_per_period / site.period_s * fo.lost_writes_us / 1e6
    assert expected == 500
    with_fo = simulate(sc, engine="fast")
    without = simulate(_no_failover(sc), engine="fast")
    extra = with_fo.totals["admitted"] - without.totals["admitted"]
    # the site-wide layer decides the total: the per-user layer's own lost writes only hand
    # it more of the requests it is saturated with. One emission interval either side: the
    # snapshot and the run's end each fall between two admissions.
    assert abs(extra - expected) <= 2
    # the over-admission comes at the promotion, within about one lost window of it; requests
    # arriving 50 ms before it (their commands reach Redis in a few ms) are decided the same
    t = with_fo.data.arrivals.time_us
    before = t < fo.at_us - 50_000
    early = (t >= fo.at_us - 50_000) & (t < fo.at_us + 2 * fo.lost_writes_us)
    gained = int(with_fo.admitted[early].sum()) - int(without.admitted[early].sum())
    assert abs(gained - expected) <= 2 + expected * 0.05
    np.testing.assert_array_equal(with_fo.admitted[before], without.admitted[before])


def _spike_window(r: Result, layer: str) -> tuple[np.ndarray, np.ndarray]:
    pos = r.layer_names.index(layer)
    t = r.data.arrivals.time_us
    inside = (t >= round(SPIKE_START_S * 1e6)) & (t < round(SPIKE_END_S * 1e6))
    reached = r.data.outcomes[:, pos] != NOT_REACHED
    return inside & reached, r.data.outcomes[:, pos]


@pytest.mark.parametrize("engine", ["event", "fast"])
def test_fail_closed_rejects_exactly_the_requests_in_the_spike(engine: str) -> None:
    """Every call sent in the spike window waits past the 100 ms timeout (200 ms more round
    trip), none outside does: fail closed rejects exactly the requests that reached the
    layer in the window, each at its deadline."""
    r = simulate("latency-spike-closed", engine=engine)
    layer = r.scenario.policy.layer("site_gcra")
    assert layer.timeout_ms < 2 * 100.0  # the spike adds 100 ms each way
    window, o = _spike_window(r, "site_gcra")
    assert window.sum() > 4000
    np.testing.assert_array_equal(o == FAIL_CLOSED, window)
    tau = round(layer.timeout_ms * 1000)
    assert (r.latency_us[window] == tau).all()
    pos = r.layer_names.index("site_gcra")
    assert (r.data.rejected_by[window] == pos).all()
    row = r.summary.iloc[pos]
    assert row["failure_mode_denied"] == window.sum() and row["failure_mode_allowed"] == 0
    assert row["degraded_s"] == pytest.approx(SPIKE_END_S - SPIKE_START_S)


@pytest.mark.parametrize("engine", ["event", "fast"])
def test_spike_behind_a_store_breaker_costs_one_timeout_per_cooldown_per_node(engine: str) -> None:
    """``latency-spike-breaker``: each node's breaker opens after its own k timeouts, then
    probes once per cooldown: the timed-out calls, counted per node from its arrivals, against
    one per request without the breaker."""
    from ratesim.scenarios.bad_days import SPIKE_BREAKER

    r = simulate("latency-spike-breaker", engine=engine)
    pos = r.layer_names.index("site_gcra")
    layer = r.scenario.policy.layer("site_gcra")
    assert layer.store_breaker == SPIKE_BREAKER and layer.failure_mode == "open"
    tau = round(layer.timeout_ms * 1000)
    window, o = _spike_window(r, "site_gcra")
    t = r.data.arrivals.time_us
    fo = o == FAIL_OPEN
    timed_out = fo & (r.latency_us == tau)
    short = fo & (r.latency_us == 0)
    np.testing.assert_array_equal(timed_out | short, fo)
    total = 0
    for nd in range(r.scenario.topology.nodes):
        mine = (r.data.node == nd) & (o != NOT_REACHED)
        calls, _, _ = expected_breaker_calls(
            t[mine], window[mine], SPIKE_BREAKER.failures, tau, SPIKE_BREAKER.cooldown_us
        )
        assert int(timed_out[mine].sum()) == calls, nd
        total += calls
    row = r.summary.iloc[pos]
    assert row["breaker_opens"] == r.scenario.topology.nodes
    assert row["breaker_short"] == int(short.sum())
    assert total * 10 < int(window.sum())  # without the breaker: every one of them
    assert float(np.percentile(r.latency_us[window], 90)) == 0.0


def test_fail_open_admits_the_spike_and_local_fallback_is_bounded() -> None:
    r_open = simulate("latency-spike", engine="fast")
    window, o = _spike_window(r_open, "site_gcra")
    np.testing.assert_array_equal(o == FAIL_OPEN, window)
    r = simulate("latency-spike-local", engine="fast")
    window, o = _spike_window(r, "site_gcra")
    local = (o == LOCAL_ALLOWED) | (o == LOCAL_REJECTED)
    np.testing.assert_array_equal(local, window)
    # each node's fallback is the GCRA scaled by 1/nodes: at most max_burst + 1 at once,
    # then count_per_period per period_s, over the spike's length (decisions come one timeout
    # after each request, so they span the window's length too)
    sc = r.scenario
    nodes = sc.topology.nodes
    layer = sc.policy.layer("site_gcra")
    assert layer.local_share is None
    share = GcraSpec.model_validate(layer.algorithm.model_dump()).scaled(1.0 / nodes)
    span_s = SPIKE_END_S - SPIKE_START_S
    bound = nodes * (share.max_burst + 1 + share.count_per_period / share.period_s * span_s)
    admitted = int((o == LOCAL_ALLOWED).sum())
    assert admitted <= bound
    # the offered load (3000/s, 750 per node) is above the fallback's 500/s: it admits close
    # to its bound, and rejects the rest
    assert admitted >= 0.97 * bound
    pos = r.layer_names.index("site_gcra")
    row = r.summary.iloc[pos]
    assert row["failure_mode_allowed"] == admitted
    assert row["failure_mode_denied"] == int((o == LOCAL_REJECTED).sum()) > 0


@pytest.mark.parametrize("name", ["latency-spike-local", "redis-failover", "slow-backend-breaker"])
def test_summary_failure_mode_columns_add_up(name: str) -> None:
    r = simulate(name, engine="fast")
    s = r.summary
    parts = s["allowed"] + s["limited"] + s["shadow_rejected"]
    np.testing.assert_array_equal(
        parts + s["failure_mode_allowed"] + s["failure_mode_denied"], s["reached"]
    )
    np.testing.assert_array_equal(s["failure_mode_allowed"], s["fail_open"] + s["local_allowed"])
    np.testing.assert_array_equal(s["failure_mode_denied"], s["fail_closed"] + s["local_rejected"])
    assert r.totals["failure_mode_allowed"] == int(s["failure_mode_allowed"].sum())
    assert r.totals["failure_mode_denied"] == int(s["failure_mode_denied"].sum())


def test_degradation_order_flips_with_the_breaker_threshold() -> None:
    """The breaker's slow-call threshold below the backend's response time at the concurrency
    limit's saturation: the breaker engages first. Above it: no admitted call is ever that
    slow, the breaker never engages and the concurrency limit is the one that gives way."""
    from ratesim.experiments import degradation_order
    from ratesim.model.backend import slowed_service_us
    from ratesim.scenarios.bad_days import slow_backend_breaker

    sc = slow_backend_breaker()
    assert sc.backend is not None
    conc = sc.policy.layer("concurrency").algorithm
    in_flight = sc.topology.nodes * conc.max_in_flight  # type: ignore[union-attr]
    base_us = round(sc.backend.service_time.ms * 1000)  # type: ignore[union-attr]
    sat_s = slowed_service_us(base_us, in_flight, sc.backend.load_factor, sc.backend.servers) / 1e6
    assert sat_s == pytest.approx(0.05 * (1 + 1.0 * 99 / 20))
    ramp = [0.5, 1.0, 1.3, 1.6, 2.0, 2.5, 3.0]

    def order(max_rt_s: float) -> dict[str, Any]:
        df = degradation_order(
            slow_backend_breaker(max_rt_s=max_rt_s), load_factors=ramp, progress=False, workers=1
        )
        return {row.layer: row.engages_at for row in df.itertuples()}

    below = order(0.4 * sat_s)
    above = order(1.3 * sat_s)
    assert below["breaker"] < below["concurrency"] or np.isnan(below["concurrency"])
    assert np.isnan(above["breaker"]) and not np.isnan(above["concurrency"])


def test_cli_summary_shows_breaker_columns_only_with_a_breaker() -> None:
    from ratesim.cli import format_summary

    guarded = simulate(blackhole(StoreBreakerSpec(failures=K, cooldown_ms=100)), engine="fast")
    plain = simulate(blackhole(None), engine="fast")
    assert "breaker_opens" in format_summary(guarded)
    text = format_summary(plain)
    assert "breaker_opens" not in text and "failure_mode_allowed" in text
    assert "breaker_opens" in plain.summary.columns  # the table itself keeps every column


def test_a_bad_store_breaker_in_yaml_names_the_file_line_and_field(tmp_path) -> None:
    from ratesim import ScenarioError, load_scenario

    p = tmp_path / "bad.yaml"
    p.write_text(
        "name: bad\n"
        "duration_s: 1\n"
        "policy:\n"
        "  layers:\n"
        "    - name: g\n"
        "      scope: global\n"
        "      algorithm: {kind: gcra, max_burst: 1, count_per_period: 10}\n"
        "      store_breaker: {failures: 0, cooldown_ms: 10}\n"
        "traffic: {kind: poisson, rate_per_s: 10}\n"
    )
    with pytest.raises(
        ScenarioError, match=r"bad\.yaml:8: policy\.layers\[0\]\.store_breaker\.failures"
    ):
        load_scenario(p)
