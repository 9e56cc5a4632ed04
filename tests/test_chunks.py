"""The chunked inputs of a run (ratesim.chunks) against the whole-run path.

The reference is what ``simulate`` does today: ``generate_arrivals`` + ``draw_requests`` +
``compile_policy`` over the whole run. Chunks must concatenate to the very same arrivals and
draws; per layer they must split requests into the same state keys (the numbering may differ),
with the same applicability and Redis shards, and a key count fixed before the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_helpers import make_scenario
from test_fast_engine import scenarios as random_scenarios

import ratesim.scenarios as builtin
from ratesim.budget import check_run_size, check_stream_size, estimate_stream_size
from ratesim.chunks import ChunkSource, iter_chunks
from ratesim.compile import compile_policy, draw_requests
from ratesim.model.latency import (
    ConstantLatency,
    EmpiricalLatency,
    LognormalLatency,
    MixtureComponent,
    MixtureLatency,
    NormalLatency,
    SpikeSpec,
    UniformLatency,
)
from ratesim.model.node import BoundedInts, NodeAssigner, assign_nodes, assign_nodes_live
from ratesim.policy import GcraSpec, LayerSpec, TokenBucketSpec
from ratesim.rng import Streams
from ratesim.scenario import Scenario, ScenarioError
from ratesim.traffic import Arrivals, PopulationSpec, TraceTraffic, generate_arrivals

DATA = Path(__file__).parent / "data"
DRAW_FIELDS = ("node", "lat_out_us", "lat_back_us", "service_us", "backend_us")


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether labels ``a`` and ``b`` group the rows into the same classes: then each
    (a, b) pair that occurs is one class of each, so the three counts agree."""
    if len(a) != len(b):
        return False
    pairs = np.unique(a * (int(b.max()) + 1) + b) if len(a) else a
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def check_chunks(sc: Scenario, seed: int, chunk_us: int) -> None:
    """Every promise of ratesim.chunks for one run, against the whole-run path."""
    streams = Streams(seed)
    whole = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
    draws = draw_requests(sc, whole, streams)
    layers = compile_policy(sc, whole)
    src = ChunkSource(sc, seed, chunk_us)
    n_keys = src.n_keys
    parts = list(src)
    # one chunk per interval, each holding only its interval's rows
    assert len(parts) == -(-sc.duration_us // chunk_us)
    for k, (arr, dr, ly) in enumerate(parts):
        assert np.all((arr.time_us >= k * chunk_us) & (arr.time_us < (k + 1) * chunk_us))
        assert all(len(getattr(dr, f)) == len(arr) for f in DRAW_FIELDS[:4])
        assert [cl.n_keys for cl in ly] == n_keys
        for cl, tmpl in zip(ly, src.layers, strict=True):
            assert len(cl.keys) == len(arr)
            assert cl.algs is tmpl.algs and cl.follow is tmpl.follow
            assert np.all((cl.keys >= 0) & (cl.keys < cl.n_keys))
    assert Arrivals.concat([p[0] for p in parts]).equals(whole)
    for f in DRAW_FIELDS:
        joined = np.concatenate([getattr(p[1], f) for p in parts])
        assert joined.dtype == getattr(draws, f).dtype
        assert np.array_equal(joined, getattr(draws, f)), f
    for j, ref in enumerate(layers):
        keys = np.concatenate([p[2][j].keys for p in parts])
        assert same_partition(keys, ref.keys), ref.spec.name
        if ref.applies_np is None:
            assert all(p[2][j].applies_np is None for p in parts)
        else:
            got = np.concatenate([p[2][j].applies_np for p in parts])
            assert np.array_equal(got, ref.applies_np)
        if ref.shard is None:
            assert all(p[2][j].shard is None for p in parts)
        else:
            got_shard = np.concatenate([np.frombuffer(p[2][j].shard, np.int64) for p in parts])
            assert np.array_equal(got_shard, np.frombuffer(ref.shard, np.int64))
        assert n_keys[j] >= ref.n_keys


@pytest.mark.parametrize("name", builtin.names())
@pytest.mark.parametrize("chunk_us", [1_000_000, 123_457])
def test_builtins_chunk_into_the_whole_run(name: str, chunk_us: int) -> None:
    sc = builtin.get(name)
    check_chunks(sc, sc.seed, chunk_us)


def variants(sc: Scenario, lb: str, latency: Any, shards: int, spikes: bool) -> Scenario:
    """``sc`` with another balancer, latency, shard count and spikes."""
    data = sc.model_dump()
    data["topology"]["load_balancer"] = lb
    data["network"]["latency"] = latency.model_dump()
    if spikes:
        data["network"]["spikes"] = [
            SpikeSpec(start_s=0.05, end_s=0.12, factor=3.0, add_ms=0.5).model_dump(),
            SpikeSpec(start_s=0.1, end_s=0.2, factor=0.5).model_dump(),
        ]
    if data.get("redis") is not None:
        data["redis"]["shards"] = shards
        data["redis"]["service_time"] = MIXTURE.model_dump()
    return Scenario.model_validate(data)


MIXTURE = MixtureLatency(
    components=[
        MixtureComponent(weight=0.7, latency=LognormalLatency(median_ms=0.2, sigma=0.5)),
        MixtureComponent(
            weight=0.3,
            latency=MixtureLatency(
                components=[
                    MixtureComponent(weight=1.0, latency=UniformLatency(low_ms=1.0, high_ms=3.0)),
                    MixtureComponent(weight=2.0, latency=ConstantLatency(ms=0.5)),
                ]
            ),
        ),
    ]
)
LATENCIES = st.sampled_from(
    [
        ConstantLatency(ms=0.3),
        NormalLatency(mean_ms=0.4, std_ms=0.2),
        EmpiricalLatency(samples_ms=[0.1, 0.2, 0.9]),
        MIXTURE,
    ]
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sc=random_scenarios(),
    seed=st.integers(0, 2**32 - 1),
    chunk_us=st.one_of(st.integers(997, 5_000), st.integers(5_000, 300_000)),
    lb=st.sampled_from(["round_robin", "random", "hash_user"]),
    latency=LATENCIES,
    shards=st.integers(1, 4),
    spikes=st.booleans(),
)
def test_random_scenarios_chunk_into_the_whole_run(
    sc: Scenario, seed: int, chunk_us: int, lb: str, latency: Any, shards: int, spikes: bool
) -> None:
    check_chunks(variants(sc, lb, latency, shards, spikes), seed, chunk_us)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["exchange-surge", "autoscale", "redis-failover", "slow-backend-breaker"]),
    chunk_us=st.integers(50_000, 3_000_000),
    lb=st.sampled_from(["round_robin", "random", "hash_user"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_builtins_with_any_balancer_and_chunk(name: str, chunk_us: int, lb: str, seed: int) -> None:
    sc = builtin.get(name, scale=0.3)
    data = sc.model_dump()
    data["topology"]["load_balancer"] = lb
    check_chunks(Scenario.model_validate(data), seed, chunk_us)


@settings(max_examples=60, deadline=None)
@given(
    high=st.sampled_from([1, 2, 3, 5, 1000, 2**31 + 1, 3 * 2**30, 2**32 - 1]),
    sizes=st.lists(st.integers(0, 700), max_size=8),
    seed=st.integers(0, 2**32 - 1),
)
def test_bounded_ints_in_pieces_equal_one_integers_call(
    high: int, sizes: list[int], seed: int
) -> None:
    # 2**31 + 1 rejects about half the words: the replay must skip exactly numpy's rejections
    one = np.random.Generator(np.random.PCG64(seed)).integers(0, high, size=sum(sizes))
    ints = BoundedInts(np.random.Generator(np.random.PCG64(seed)), high)
    got = [ints.take(n) for n in sizes]
    joined = np.concatenate(got) if got else np.zeros(0, dtype=np.int64)
    assert joined.dtype == np.int64
    assert np.array_equal(joined, one)


def test_bounded_ints_refuses_a_range_numpy_would_draw_64_bit_words_for() -> None:
    with pytest.raises(ValueError, match="high must be in 1 .. 2\\*\\*32 - 1"):
        BoundedInts(np.random.default_rng(0), 2**32)


@settings(max_examples=60, deadline=None)
@given(
    lb=st.sampled_from(["round_robin", "random", "hash_user"]),
    nodes=st.integers(1, 5),
    changes=st.sampled_from([[], [(300, 3)], [(100, 6), (700, 1), (800, 4)]]),
    cuts=st.lists(st.integers(0, 1000), max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_node_assigner_in_pieces_equals_the_whole_run(
    lb: str, nodes: int, changes: list[tuple[int, int]], cuts: list[int], seed: int
) -> None:
    gen = np.random.default_rng(seed)
    n = 1000
    user = gen.integers(0, 50, size=n)
    time_us = np.sort(gen.integers(0, 1000, size=n))
    at_us = np.array([c[0] for c in changes], dtype=np.int64)
    counts = np.array([c[1] for c in changes], dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64(seed))
    if changes:
        one = assign_nodes_live(lb, user, time_us, nodes, at_us, counts, rng)
    else:
        one = assign_nodes(lb, user, nodes, rng)
    nodes_of = NodeAssigner(lb, nodes, at_us, counts, np.random.Generator(np.random.PCG64(seed)))
    edges = [0, *sorted(cuts), n]
    pieces = [
        nodes_of.piece(user[a:b], time_us[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    assert np.array_equal(np.concatenate(pieces), one)


def test_node_assigner_refuses_an_unknown_balancer() -> None:
    z = np.zeros(0, dtype=np.int64)
    with pytest.raises(ValueError, match="load_balancer must be"):
        NodeAssigner("least_conn", 2, z, z, np.random.default_rng(0))


def trace_scenario(jitter: float, key: str, duration_s: float = 3.0) -> Scenario:
    layers = [
        LayerSpec(name="tb", algorithm=TokenBucketSpec(rate=5.0, burst=3), key=key),
        LayerSpec(
            name="g",
            algorithm=GcraSpec(max_burst=2, count_per_period=3, period_s=1.0),
            scope="global",
            key=key,
            tiers={"gold": {"max_burst": 4, "count_per_period": 6}},
        ),
    ]
    pop = PopulationSpec(tiers={"gold": 0.5, "silver": 0.5})
    sc = make_scenario(layers, duration_s=duration_s, redis={"shards": 3}, population=pop)
    data = sc.model_dump()
    data["traffic"] = TraceTraffic(path=str(DATA / "trace_1s.csv"), jitter=jitter).model_dump()
    return Scenario.model_validate(data)


@pytest.mark.parametrize("key", ["{user}", "{route}", "*", "{tier}:{user}:{route}"])
@pytest.mark.parametrize("chunk_us", [7_919, 250_000, 10**7])
def test_a_trace_chunks_into_the_whole_run_with_the_whole_runs_key_ids(
    key: str, chunk_us: int
) -> None:
    sc = trace_scenario(1.0, key)
    check_chunks(sc, 5, chunk_us)
    # a trace is read whole up front: the ids are the whole run's own
    arrivals = generate_arrivals(sc.traffic, sc.population, sc.duration_us, Streams(5))
    whole = compile_policy(sc, arrivals)
    parts = list(iter_chunks(sc, 5, chunk_us))
    for j, ref in enumerate(whole):
        assert np.array_equal(np.concatenate([p[2][j].keys for p in parts]), ref.keys)
        assert parts[0][2][j].n_keys == ref.n_keys


def test_key_counts_come_from_the_population_not_from_the_run() -> None:
    # per user, per user and route, per tier, per route, one key: users x routes at most,
    # whatever the run's length (a user's tier is fixed, so it adds no key)
    keys = ["{user}", "{user}:{route}", "{tier}", "{route}", "*", "{tier}:{user}"]
    layers = [
        LayerSpec(name=f"l{j}", algorithm=TokenBucketSpec(rate=9.0, burst=2), key=k)
        for j, k in enumerate(keys)
    ]
    pop = PopulationSpec(users=40, tiers={"gold": 0.5, "silver": 0.5},
                         routes={"/a": 0.5, "/b": 0.3, "/c": 0.2})  # fmt: skip
    counts = []
    for duration in (0.2, 2.0):
        sc = make_scenario(layers, duration_s=duration, population=pop)
        counts.append(ChunkSource(sc, 1, 100_000).n_keys)
        check_chunks(sc, 1, 100_000)
    assert counts[0] == counts[1] == [40, 40 * 3, 2, 3, 1, 40]


def test_exchange_surge_key_counts_at_scale_1_and_25() -> None:
    # reported in docs/architecture.md: the node grid is nodes x n_keys per node layer
    for scale in (1, 25):
        sc = builtin.get("exchange-surge", scale=scale)
        users = sc.population.users
        assert ChunkSource(sc, sc.seed, 1_000_000).n_keys == [1, users, users, 1]
    assert builtin.get("exchange-surge", scale=25).population.users == 50_000


def test_bad_chunk_sizes_and_a_second_iteration_are_refused_clearly() -> None:
    sc = builtin.get("single-node-ideal")
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="chunk_us must be an integer >= 1"):
            ChunkSource(sc, 1, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scenario must be a ratesim Scenario"):
        ChunkSource("single-node-ideal", 1, 1000)  # type: ignore[arg-type]
    src = ChunkSource(sc, 1, 10**6)
    list(src)
    with pytest.raises(RuntimeError, match="iterated once"):
        list(src)


def test_a_stream_is_bounded_by_its_chunk_not_by_the_run() -> None:
    # ten simulated minutes at the surge's size cannot be held whole, but chunks of 1 s can
    sc = builtin.get("exchange-surge", scale=25)
    long = Scenario.model_validate({**sc.model_dump(), "duration_s": 600.0})
    budget = 3 * 2**30
    with pytest.raises(ScenarioError, match="too large to run"):
        check_run_size(long, max_bytes=budget)
    check_stream_size(long, 1_000_000, max_bytes=budget)
    one_s = estimate_stream_size(long, 1_000_000)
    # the peak second holds the plateau's 860k requests: the chunk bound takes the peak rate
    assert 2000 * 25 * 17.3 <= one_s.requests <= 2000 * 25 * 17.3 * 1.01 + 1e4
    assert estimate_stream_size(long, 2_000_000).requests > one_s.requests
    with pytest.raises(ScenarioError, match="chunk_us = 600000000"):
        check_stream_size(long, 600_000_000, max_bytes=budget)


@pytest.mark.parametrize("chunk_us", [1, 3, 64])
def test_microsecond_chunks_split_ties_and_still_join_into_the_whole_run(chunk_us: int) -> None:
    # 40k requests per second over 3 ms: many chunks hold no request, some hold ties
    layers = [
        LayerSpec(name="tb", algorithm=TokenBucketSpec(rate=9.0, burst=2), key="{user}"),
        LayerSpec(
            name="g",
            algorithm=GcraSpec(max_burst=2, count_per_period=3, period_s=1.0),
            scope="global",
            key="{route}",
            routes=["/b"],
        ),
    ]
    pop = PopulationSpec(users=5, routes={"/a": 0.5, "/b": 0.5})
    sc = make_scenario(
        layers, duration_s=0.003, rate_per_s=40_000.0, population=pop, nodes=3,
        topology={"load_balancer": "random"}, network={"latency": MIXTURE},
        redis={"shards": 2, "service_time": MIXTURE},
    )  # fmt: skip
    check_chunks(sc, 11, chunk_us)


def test_the_stream_check_refuses_a_bad_chunk_size_by_name() -> None:
    sc = builtin.get("single-node-ideal")
    for bad in (0, 2.5, None):
        with pytest.raises(ScenarioError, match="chunk_us must be an integer >= 1"):
            check_stream_size(sc, bad)  # type: ignore[arg-type]
    check_stream_size(sc, 1_000_000)
