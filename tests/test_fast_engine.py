"""The fast engine (numba) gives the event engine's run, request by request.

Every comparison runs both engines on the same scenario, seed and draws and compares every raw
output array: per-layer outcomes and remaining figures, decision times, rejecting layer, pool
waits, node, and the Redis queue samples. The event engine is the reference; its own model
checks are in ``test_engine.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_helpers import check_conservation, make_scenario

import ratesim.scenarios as builtin
from ratesim import engine as engine_mod
from ratesim.engine import compile_policy, draw_requests, run_events, run_oracle, simulate
from ratesim.fast import kernels, run_fast, support, unsupported
from ratesim.model.backend import BackendSpec
from ratesim.model.clock import ClockSpec, ClockStep, NodeClock, clock_read
from ratesim.model.faults import FailoverSpec, OutageSpec, PartitionSpec
from ratesim.model.latency import ConstantLatency, LognormalLatency, UniformLatency
from ratesim.policy import (
    BreakerSpec,
    BucketedWindowSpec,
    ConcurrencySpec,
    DoubleBufferedSpec,
    FixedWindowSpec,
    GcraSpec,
    LayerSpec,
    NginxLeakySpec,
    PacerSpec,
    ReserveBucketSpec,
    SlidingCounterSpec,
    SlidingLogSpec,
    StoreBreakerSpec,
    TokenBucketSpec,
)
from ratesim.results import RunData
from ratesim.rng import Streams
from ratesim.scenario import Scenario, ScenarioError
from ratesim.traffic import PopulationSpec, generate_arrivals

FIELDS = (
    "node",
    "outcomes",
    "remaining",
    "decided_us",
    "rejected_by",
    "pool_wait_us",
    "depth_t_us",
    "depth",
)


def both(sc: Scenario, seed: int, **fast_kw: Any) -> tuple[RunData, RunData]:
    """(event engine, fast engine) raw outputs for ``sc`` and ``seed``."""
    out = []
    for run in (run_events, run_fast):
        streams = Streams(seed)
        arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
        layers = compile_policy(sc, arr)
        kw = fast_kw if run is run_fast else {}
        out.append(run(sc, arr, draw_requests(sc, arr, streams), layers, seed=seed, **kw))
    return out[0], out[1]


def assert_same(a: RunData, b: RunData) -> None:
    for f in (*FIELDS, "held_us"):
        if f == "held_us" and a.held_us is None:
            assert b.held_us is None
            continue
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
        assert getattr(a, f).dtype == getattr(b, f).dtype, f
    if a.store_breakers is None or b.store_breakers is None:
        assert a.store_breakers is None and b.store_breakers is None
    else:
        np.testing.assert_array_equal(a.store_breakers, b.store_breakers, err_msg="store_breakers")


@pytest.mark.parametrize(
    "name", [n for n in builtin.names() if n != "exchange-surge"] + ["exchange-surge@0.1"]
)
def test_builtins_same_run_on_both_engines(name: str) -> None:
    base, _, scale = name.partition("@")
    sc = builtin.get(base, scale=float(scale or 1.0))
    layers = compile_policy(sc, generate_arrivals(sc.traffic, sc.population, 0, Streams(0)))
    assert unsupported(sc, layers) is None  # so ``auto`` runs every built-in compiled
    a, b = both(sc, sc.seed)
    assert len(a.decided_us) > 1000
    assert_same(a, b)


# --- random scenarios within the fast engine's reach ---------------------------------------

ALGORITHMS = st.sampled_from(
    [
        GcraSpec(max_burst=3, count_per_period=200),
        GcraSpec(max_burst=0, count_per_period=500),
        TokenBucketSpec(rate=300.0, burst=4),
        TokenBucketSpec(rate=3000.0, burst=24, refill="ticker", fill_interval_s=0.004),
        SlidingLogSpec(limit=5, window_s=0.02),
        FixedWindowSpec(limit=6, window_s=0.01),
        SlidingCounterSpec(limit=6, window_s=0.01),
        BucketedWindowSpec(limit=6, window_s=0.02, buckets=4),
        DoubleBufferedSpec(limit=6, window_s=0.02, buckets=4, swap_interval_s=0.005),
        # shaping: admitted requests held (nginx without nodelay, Sentinel pacing, Traefik)
        NginxLeakySpec(rate=300, burst=3),
        PacerSpec(count=500, max_queue_ms=8),
        ReserveBucketSpec(rate=400.0, burst=2, max_delay_s=0.004),
    ]
)


# a store breaker on some global layers: one that opens at the first failure with a cooldown
# shorter than the timeouts, one that needs three
STORE_BREAKERS = st.sampled_from(
    [
        None,
        None,
        StoreBreakerSpec(failures=1, cooldown_ms=0.4),
        StoreBreakerSpec(failures=3, cooldown_ms=2.0),
    ]
)


@st.composite
def global_layers(draw: st.DrawFn, index: int) -> LayerSpec:
    tiers = {}
    if draw(st.booleans()):
        tiers = {"gold": {"max_burst": 9, "count_per_period": 900}}
    alg = draw(ALGORITHMS)
    if not isinstance(alg, GcraSpec):
        tiers = {}
    return LayerSpec(
        name=f"g{index}",
        algorithm=alg,
        scope="global",
        key=draw(st.sampled_from(["*", "{user}", "{tier}:{user}", "{route}"])),
        tiers=tiers,
        routes=draw(st.sampled_from([None, ["/a"], ["/b", "/c"]])),
        mode=draw(st.sampled_from(["enforce", "enforce", "shadow"])),
        timeout_ms=draw(st.sampled_from([0.3, 1.0, 50.0])),
        failure_mode=draw(st.sampled_from(["open", "closed", "local"])),
        time_source=draw(st.sampled_from(["client", "redis"])),
        drift_guard_ms=draw(st.sampled_from([None, None, 0.8])),
        store_breaker=draw(STORE_BREAKERS),
    )


def one_slew_at_a_time(steps: list[ClockStep]) -> list[ClockStep]:
    """``steps`` with every slew that would overlap an earlier one made a jump (the schema
    allows one active slew at a time)."""
    out: list[ClockStep] = []
    busy: list[tuple[float, float]] = []
    for s in steps:
        if s.slew_s and any(a < s.at_s + s.slew_s and s.at_s < b for a, b in busy):
            s = ClockStep(at_s=s.at_s, by_ms=s.by_ms)
        elif s.slew_s:
            busy.append((s.at_s, s.at_s + s.slew_s))
        out.append(s)
    return out


CLOCKS = st.builds(
    ClockSpec,
    offset_ms=st.sampled_from([0.0, 0.6, -1.3]),
    drift_ppm=st.sampled_from([0.0, 120.0, -75.5]),
    steps=st.lists(
        st.builds(
            ClockStep,
            at_s=st.sampled_from([0.05, 0.1, 0.2]),
            by_ms=st.sampled_from([-2.0, 1.5, 0.37]),
            slew_s=st.sampled_from([0.0, 0.0, 0.03, 0.12]),
        ),
        max_size=3,
    ).map(one_slew_at_a_time),
)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    nodes = draw(st.integers(1, 3))
    # nodes that come and go (topology.changes): none, a scale-out, out then in
    changes = draw(
        st.sampled_from(
            [[], [], [{"at_s": 0.1, "nodes": nodes + 1}],
             [{"at_s": 0.06, "nodes": nodes + 2}, {"at_s": 0.16, "nodes": 1}]]
        )
    )  # fmt: skip
    layers = []
    if draw(st.booleans()):
        first = draw(
            st.sampled_from(
                [
                    TokenBucketSpec(rate=400.0, burst=5),
                    TokenBucketSpec(rate=400.0, burst=5, refill="ticker", fill_interval_s=0.01),
                    NginxLeakySpec(rate=400, burst=4),
                ]
            )
        )
        bucket = isinstance(first, TokenBucketSpec)
        layers.append(
            LayerSpec(
                name="node_tb",
                # a token bucket (its refill shared or not), or nginx, which holds
                algorithm=first,
                key=draw(st.sampled_from(["*", "{user}"])),
                mode=draw(st.sampled_from(["enforce", "shadow"])),
                local_share=draw(st.sampled_from([None, "follow"])) if bucket else None,
            )
        )
    layers += [draw(global_layers(k)) for k in range(draw(st.integers(1, 3)))]
    if draw(st.booleans()):  # a follow layer after the global ones (decides by its epoch)
        layers.append(
            LayerSpec(
                name="node_share",
                algorithm=TokenBucketSpec(
                    rate=900.0, burst=3, refill="ticker", fill_interval_s=0.01
                ),
                key=draw(st.sampled_from(["*", "{user}"])),
                local_share="follow",
            )
        )
    if draw(st.booleans()):  # a node layer after the global ones
        layers.append(
            LayerSpec(
                name="node_after",
                algorithm=draw(ALGORITHMS),
                key=draw(st.sampled_from(["*", "{user}"])),
                mode=draw(st.sampled_from(["enforce", "shadow"])),
            )
        )
    latency = draw(
        st.sampled_from(
            [
                ConstantLatency(ms=0.0),
                ConstantLatency(ms=0.2),
                UniformLatency(low_ms=0.0, high_ms=0.6),
                LognormalLatency(median_ms=0.2, sigma=1.0),
            ]
        )
    )
    service = draw(st.sampled_from([ConstantLatency(ms=0.0), ConstantLatency(ms=0.4)]))
    outages = []
    if draw(st.booleans()):
        outages.append(
            OutageSpec(
                start_s=0.05,
                end_s=0.09,
                kind=draw(st.sampled_from(["refused", "blackhole"])),
                shards=draw(st.sampled_from([None, [0]])),
            )
        )
    partitions = []
    if draw(st.booleans()):
        partitions.append(PartitionSpec(start_s=0.1, end_s=0.13, nodes=[0]))
    failovers = []
    if draw(st.booleans()):
        failovers.append(
            FailoverSpec(
                at_s=draw(st.sampled_from([0.07, 0.15])),
                lost_writes_ms=draw(st.sampled_from([0.0, 20.0])),
                clock_step_ms=draw(st.sampled_from([0.0, 1.5, -2.0])),
                flush_scripts=draw(st.booleans()),
            )
        )
    backend = None
    if draw(st.booleans()):  # guard layers in front of a backend, anywhere in the policy
        backend = BackendSpec(
            servers=draw(st.integers(1, 3)),
            service_time=draw(
                st.sampled_from([ConstantLatency(ms=1.5), UniformLatency(low_ms=0.0, high_ms=4.0)])
            ),
            load_factor=draw(st.sampled_from([0.0, 0.5])),
        )
        for k in range(draw(st.integers(1, 2))):
            guard = draw(
                st.sampled_from(
                    [
                        ConcurrencySpec(max_in_flight=2),
                        ConcurrencySpec(max_in_flight=3, max_wait_s=0.002),
                        ConcurrencySpec(max_in_flight=1, max_wait_s=0.003, max_queue=2),
                        BreakerSpec(
                            threshold=0.3,
                            max_rt_s=0.002,
                            min_requests=3,
                            stat_interval_s=0.02,
                            open_s=0.01,
                        ),
                    ]
                )
            )
            where = draw(st.integers(0, len(layers)))
            key = draw(st.sampled_from(["*", "{user}", "{tier}"]))
            layers.insert(where, LayerSpec(name=f"guard{k}", algorithm=guard, key=key))
    return make_scenario(
        layers,
        nodes=nodes,
        duration_s=0.25,
        backend=backend,
        rate_per_s=draw(st.sampled_from([400.0, 2500.0])),
        topology={
            "load_balancer": draw(st.sampled_from(["round_robin", "random", "hash_user"])),
            "clocks": draw(CLOCKS) if changes else [draw(CLOCKS) for _ in range(nodes)],
            "changes": changes,
        },
        network={
            "latency": latency,
            "partitions": partitions,
            "pool_size": draw(st.integers(1, 4)),
            "pool_max_wait_ms": draw(st.sampled_from([0.0, 0.5, 5.0])),
        },
        redis={
            "service_time": service,
            "shards": draw(st.integers(1, 3)),
            "outages": outages,
            "failovers": failovers,
            "clock": draw(CLOCKS),
        },
        population=PopulationSpec(
            users=draw(st.sampled_from([1, 7])),
            tiers={"gold": 0.3, "silver": 0.7},
            routes={"/a": 0.5, "/b": 0.3, "/c": 0.2},
            route_cost={"/c": 2},
        ),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1), heap_size=st.sampled_from([1, 4096]))
def test_random_scenarios_same_run_on_both_engines(sc: Scenario, seed: int, heap_size: int) -> None:
    # heap_size=1: the event heap grows (between events) all along the run
    a, b = both(sc, seed, heap_size=heap_size)
    assert_same(a, b)


REACTIONS = st.sampled_from(
    [
        {"kind": "none"},
        {"kind": "immediate"},
        {"kind": "fixed", "delay_ms": 7.0},
        {"kind": "retry_after", "fallback_ms": 3.0, "max_wait_ms": 2000.0},
        {"kind": "backoff", "base_ms": 0.5, "cap_ms": 20.0},
    ]
)


@st.composite
def client_policies(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "on_reject": draw(REACTIONS),
        "on_error": draw(REACTIONS),
        "max_attempts": draw(st.integers(1, 5)),
        "budget_pct": draw(st.sampled_from([None, None, 0, 30])),
        "deadline_ms": draw(st.sampled_from([None, 15.0, 400.0])),
    }


@st.composite
def scenarios_with_clients(draw: st.DrawFn) -> Scenario:
    sc = draw(scenarios())
    clients = draw(client_policies())
    if draw(st.booleans()):
        clients["tiers"] = {"gold": draw(client_policies())}
    data = sc.model_dump()
    data["clients"] = clients
    return Scenario.model_validate(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sc=scenarios_with_clients(),
    seed=st.integers(0, 2**32 - 1),
    heap_size=st.sampled_from([1, 4096]),
)
def test_random_scenarios_with_clients_same_run_on_both_engines(
    sc: Scenario, seed: int, heap_size: int
) -> None:
    """Clients that retry (issue 13): the same attempts, arriving at the same instants on the
    same nodes, with the same decisions, in both runners."""
    a, b = both(sc, seed, heap_size=heap_size)
    assert_same(a, b)
    for f in ("attempt", "origin"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    for f in ("time_us", "user", "tier", "route", "cost", "abusive"):
        np.testing.assert_array_equal(getattr(a.arrivals, f), getattr(b.arrivals, f), err_msg=f)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1))
def test_compiled_oracle_equals_the_python_oracle(sc: Scenario, seed: int) -> None:
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, Streams(seed))
    layers = compile_policy(sc, arr)
    assert_same(run_oracle(arr, layers, compiled=False), run_oracle(arr, layers, compiled=True))


def test_random_scenarios_reach_the_rare_paths() -> None:
    """The random scenarios above are not vacuous: one of them, fixed here, waits for pooled
    connections, times out, fails open and closed, and still gives the same run."""
    sc = make_scenario(
        [
            LayerSpec(name="n", algorithm=TokenBucketSpec(rate=900.0, burst=5), key="*"),
            LayerSpec(
                name="a",
                algorithm=SlidingLogSpec(limit=5, window_s=0.02),
                scope="global",
                key="{user}",
                timeout_ms=1.0,
                failure_mode="closed",
                mode="shadow",
            ),
            LayerSpec(
                name="b",
                algorithm=GcraSpec(max_burst=3, count_per_period=400),
                scope="global",
                key="*",
                timeout_ms=1.0,
                time_source="redis",
            ),
        ],
        nodes=2,
        duration_s=0.3,
        rate_per_s=2500.0,
        topology={"clocks": ClockSpec(offset_ms=0.6, drift_ppm=120.0)},
        network={
            "latency": LognormalLatency(median_ms=0.2, sigma=1.0),
            "pool_size": 2,
            "pool_max_wait_ms": 0.5,
        },
        redis={"service_time": ConstantLatency(ms=0.2)},
    )
    a, b = both(sc, 3)
    assert_same(a, b)
    assert (a.pool_wait_us > 0).sum() > 50
    assert (a.outcomes == 4).sum() > 10  # fail_open
    assert (a.outcomes == 5).sum() > 10  # fail_closed
    assert (a.outcomes == 3).sum() > 10  # shadow rejections
    assert (a.rejected_by >= 0).sum() > 10


def test_store_breakers_reach_their_rare_paths() -> None:
    """A fixed scenario where store breakers open, short-circuit, probe (probes that fail and
    probes that close them), a gated request waits for a pooled connection, and a second
    breaker layer follows one on a held connection: the same run on both runners."""
    from ratesim.model.store_breaker import SB_OPENS, SB_SHORT

    sc = make_scenario(
        [
            LayerSpec(
                name="a",
                algorithm=GcraSpec(max_burst=3, count_per_period=400),
                scope="global",
                key="{user}",
                timeout_ms=1.0,
                failure_mode="local",
                store_breaker=StoreBreakerSpec(failures=2, cooldown_ms=3.0),
            ),
            LayerSpec(
                name="b",
                algorithm=SlidingLogSpec(limit=5, window_s=0.02),
                scope="global",
                key="*",
                timeout_ms=1.0,
                failure_mode="closed",
                store_breaker=StoreBreakerSpec(failures=1, cooldown_ms=0.5),
            ),
        ],
        nodes=2,
        duration_s=0.4,
        rate_per_s=3000.0,
        network={
            "latency": LognormalLatency(median_ms=0.2, sigma=1.0),
            "pool_size": 2,
            "pool_max_wait_ms": 0.5,
        },
        redis={
            "service_time": ConstantLatency(ms=0.05),
            "outages": [
                OutageSpec(start_s=0.1, end_s=0.15, kind="refused"),
                OutageSpec(start_s=0.25, end_s=0.3, kind="blackhole"),
            ],
        },
    )
    a, b = both(sc, 5)
    assert_same(a, b)
    assert a.store_breakers is not None
    assert (a.store_breakers[:, :, SB_OPENS] > 2).all()
    assert (a.store_breakers[:, :, SB_SHORT] > 10).all()
    assert (a.pool_wait_us > 0).sum() > 10
    assert (a.outcomes == 6).sum() > 10 and (a.outcomes == 5).sum() > 10  # local, closed


@pytest.mark.parametrize(
    ("latency_ms", "timeout_ms", "cooldown_ms", "outage"),
    [(0.0, 0.3, 0.4, False), (0.2, 1.0, 4.0, True)],
)
def test_a_store_breaker_hears_a_shaping_layers_answer_before_its_hold(
    latency_ms: float, timeout_ms: float, cooldown_ms: float, outage: bool
) -> None:
    """A global shaping layer (nginx without nodelay) behind a store breaker: the breaker hears
    of each answer when it arrives, and the hold starts then (a merge of the two features once
    had the compiled runner record the answer at the end of the hold; the first case is the
    counterexample hypothesis found)."""
    from ratesim.model.store_breaker import SB_COLS

    outages = [OutageSpec(start_s=0.1, end_s=0.12, kind="refused")] if outage else []
    sc = make_scenario(
        [
            LayerSpec(
                name="g",
                algorithm=NginxLeakySpec(rate=300, burst=3, nodelay=False),
                scope="global",
                key="*",
                timeout_ms=timeout_ms,
                store_breaker=StoreBreakerSpec(failures=1, cooldown_ms=cooldown_ms),
            )
        ],
        duration_s=0.25,
        rate_per_s=400.0,
        latency_ms=latency_ms,
        redis={"outages": outages},
        population=PopulationSpec(
            users=1,
            tiers={"gold": 0.3, "silver": 0.7},
            routes={"/a": 0.5, "/b": 0.3, "/c": 0.2},
            route_cost={"/c": 2},
        ),
    )
    a, b = both(sc, 0)
    assert_same(a, b)
    assert a.held_us is not None and (a.held_us > 0).sum() > 10
    assert a.store_breakers is not None and a.store_breakers.shape == (1, 1, SB_COLS)


def test_heap_growth_and_progress_chunks_change_nothing() -> None:
    sc = builtin.get("redis-saturation", scale=0.2)
    a, b = both(sc, 5, heap_size=16, chunk_us=1_000, progress=True)
    assert_same(a, b)


# --- what the fast engine models now: slews, any state size; what it could still refuse ---


def gcra(name: str = "g", **kw: Any) -> LayerSpec:
    return LayerSpec(
        name=name, algorithm=GcraSpec(max_burst=3, count_per_period=50), scope="global", **kw
    )


SLEW = ClockStep(at_s=0.1, by_ms=1.0, slew_s=1.0)


@pytest.mark.parametrize(
    "scenario",
    [
        make_scenario([gcra()], redis={"clock": ClockSpec(steps=[SLEW])}),
        make_scenario([gcra()], topology={"clocks": ClockSpec(drift_ppm=-40, steps=[SLEW])}),
        make_scenario(
            [gcra(time_source="redis", drift_guard_ms=0.4)],
            nodes=2,
            rate_per_s=3000.0,
            topology={"clocks": [ClockSpec(steps=[SLEW]), ClockSpec(offset_ms=0.3)]},
            redis={
                "clock": ClockSpec(
                    drift_ppm=250, steps=[ClockStep(at_s=0.2, by_ms=-2, slew_s=0.5)]
                ),
                "failovers": [FailoverSpec(at_s=0.4, clock_step_ms=0.7)],
            },
        ),
    ],
)
def test_slewing_clocks_run_compiled_and_give_the_same_run(scenario: Scenario) -> None:
    assert simulate(scenario, engine="auto").engine == "fast"
    a, b = both(scenario, 11)
    assert_same(a, b)


def test_state_beyond_the_old_up_front_limit_runs_compiled() -> None:
    """64 nodes x ~970 user keys x a 5,002-integer log each was 3.1e8 integers allocated up
    front (over the old 2**28 cap, refused): now a state exists per (node, key) pair met."""
    sc = make_scenario(
        [
            gcra(key="{user}"),
            LayerSpec(name="log", algorithm=SlidingLogSpec(limit=5000, window_s=1), key="{user}"),
        ],
        nodes=64,
        rate_per_s=2000.0,
        population=PopulationSpec(users=1_000_000),
    )
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, Streams(2))
    layers = compile_policy(sc, arr)
    assert sc.topology.nodes * layers[1].n_keys * layers[1].algs[0].state_size > 2**28
    assert unsupported(sc, layers) is None
    a, b = both(sc, 2)
    assert_same(a, b)
    assert_same(run_oracle(arr, layers, compiled=False), run_oracle(arr, layers, compiled=True))


def test_a_layer_without_a_kernel_is_refused_by_name_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sc = make_scenario([gcra()], rate_per_s=500.0)
    monkeypatch.setattr(support, "_rate_supported", lambda alg: False)
    with pytest.raises(ScenarioError, match="layer 'g': algorithm 'gcra'"):
        simulate(sc, engine="fast")
    with pytest.warns(UserWarning, match="runs on the event engine: .*layer 'g'"):
        a = simulate(sc, engine="auto")
    b = simulate(sc, engine="event")
    assert a.engine == "event"
    check_conservation(a)
    assert_same(a.data, b.data)


def test_engine_names() -> None:
    assert engine_mod.ENGINES == ("auto", "event", "fast")
    with pytest.raises(ValueError, match="engine must be one of"):
        simulate("single-node-ideal", engine="numba")


# --- the compiled formulas are the plain-Python ones, compiled --------------------------------


@settings(max_examples=200, deadline=None)
@given(
    spec=st.builds(
        ClockSpec,
        offset_ms=st.floats(-1e6, 1e6),
        drift_ppm=st.floats(-999_999.0, 1e6),
        steps=st.lists(
            st.one_of(
                st.builds(ClockStep, at_s=st.floats(0, 1e9), by_ms=st.floats(-1e9, 1e9)),
                st.builds(
                    ClockStep,
                    at_s=st.floats(0, 1e9),
                    by_ms=st.floats(-1e5, 1e5),
                    slew_s=st.sampled_from([1e-6, 0.5, 3e4]),
                ),
            ),
            max_size=3,
        ).map(one_slew_at_a_time),
    ),
    times=st.lists(st.integers(-(2**60), 2**60), min_size=1, max_size=20),
)
def test_compiled_clock_is_the_plain_python_formula(spec: ClockSpec, times: list[int]) -> None:
    clock = NodeClock(spec)
    for t in times:
        assert kernels.clock_read(*clock.tables, 0, t) == clock_read(*clock.tables, 0, int(t))
        assert clock.read(t) == clock_read(*clock.tables, 0, t)


# --- the conservation check --------------------------------------------------------------------


def test_conservation_check_names_what_is_wrong() -> None:
    from ratesim.conservation import check_conservation as check

    decided = np.array([5, 7, 9], dtype=np.int64)
    check(3, 3, 3, decided, {"pool connections": 0, "held slots": 0})
    with pytest.raises(AssertionError, match=r"conservation violated: 3 arrivals, 3 arrived, 2 "):
        check(3, 3, 2, decided, {})
    with pytest.raises(AssertionError, match="1 without a decision time"):
        check(3, 3, 3, np.array([5, -1, 9]), {})
    with pytest.raises(AssertionError, match=r"2 backend in flight left; 1 concurrency waiters"):
        check(3, 3, 3, decided, {"backend in flight": 2, "concurrency waiters": 1, "x": 0})
