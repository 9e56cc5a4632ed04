"""replay() with a PolicySpec: ordered layers on one store, the same decisions on MemoryStore and
a real Redis, request by request the decisions of the engine's ideal single-node world, shadow
layers and routes filters, and malformed tables refused with the column or row named.

Expected values come from a request-by-request reference written here (one MemoryStore per
layer, keys built from the request's own fields), from hand computation, or from the engine.
"""

from __future__ import annotations

import socket
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_engine_helpers import make_scenario

import ratesim.scenarios as builtin
from ratesim.algorithms import GCRA
from ratesim.engine import simulate
from ratesim.policy import (
    ConcurrencySpec,
    FixedWindowSpec,
    GcraSpec,
    LayerSpec,
    PolicySpec,
    SlidingLogSpec,
)
from ratesim.replay import compare, replay
from ratesim.rng import Streams
from ratesim.stores import MemoryStore, RedisStore
from ratesim.traffic import Arrivals, generate_arrivals

#: Per-layer scale factors that make a 2 s trace of the flagship's ordinary traffic (about
#: 4000 requests at 2000/s) reach every layer's limit: node bucket 1000/s (shadow), tier quota
#: 10/s per silver user, 15 requests per user per minute, 60 orders/s site-wide.
FLAGSHIP_SCALE = {"node_bucket": 0.2, "tier_quota": 0.05, "user_window": 0.005, "site_orders": 0.03}
TRACE_US = 2_000_000


def flagship_layers(time_source: str | None = None) -> list[LayerSpec]:
    """The exchange-surge policy, each layer scaled by FLAGSHIP_SCALE."""
    layers = [
        layer.scaled(FLAGSHIP_SCALE[layer.name])
        for layer in builtin.get("exchange-surge").policy.layers
    ]
    if time_source is not None:
        layers = [la.model_copy(update={"time_source": time_source}) for la in layers]
    return layers


def flagship_arrivals(seed: int = 3) -> Arrivals:
    sc = builtin.get("exchange-surge")
    return generate_arrivals(sc.traffic, sc.population, TRACE_US, Streams(seed))


def table_of(arr: Arrivals) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time_us": arr.time_us,
            "user": arr.user,
            "tier": np.array(arr.tier_names, dtype=object)[arr.tier],
            "route": np.array(arr.route_names, dtype=object)[arr.route],
            "cost": arr.cost,
        }
    )


def reference(requests: pd.DataFrame, layers: list[LayerSpec]) -> dict[str, list[Any]]:
    """Request by request, layer by layer, on one MemoryStore per layer (independent of the
    replay's key naming): the state of a layer is chosen by the request fields its key template
    names, plus the tier when the layer has tier overrides."""
    stores = {la.name: MemoryStore() for la in layers}
    out: dict[str, list[Any]] = {f"layer:{la.name}": [] for la in layers}
    out["admitted"], out["rejected_by"] = [], []
    rows: list[dict[str, Any]] = requests.to_dict("records")  # type: ignore[assignment]
    for row in rows:
        rejected = None
        for la in layers:
            col = out[f"layer:{la.name}"]
            if rejected is not None or (la.routes is not None and row["route"] not in la.routes):
                col.append("not_reached")
                continue
            fields = [f for f in ("user", "tier", "route") if "{" + f + "}" in la.key]
            if la.tiers and "tier" not in fields:
                fields.append("tier")
            state = tuple(row[f] for f in fields)
            alg = la.algorithm_for(row["tier"]).build()
            d = stores[la.name].acquire(alg, repr(state), int(row["time_us"]), int(row["cost"]))
            if d.allowed:
                col.append("allowed")
            elif la.mode == "shadow":
                col.append("shadow_rejected")
            else:
                col.append("rejected")
                rejected = la.name
        out["admitted"].append(rejected is None)
        out["rejected_by"].append(rejected)
    return out


def assert_matches_reference(got: pd.DataFrame, expected: dict[str, list[Any]]) -> None:
    for col, values in expected.items():
        assert got[col].astype(object).tolist() == values, col


def assert_every_layer_limits(df: pd.DataFrame, layers: list[LayerSpec]) -> None:
    """Not vacuous: every layer both passes and stops (or would stop) some requests."""
    for la in layers:
        counts = df[f"layer:{la.name}"].astype(str).value_counts()
        assert counts.get("allowed", 0) > 0, la.name
        miss = "shadow_rejected" if la.mode == "shadow" else "rejected"
        assert counts.get(miss, 0) > 0, la.name


# --- the flagship policy: MemoryStore and Redis decide identically --------------------------


def test_flagship_policy_memory_and_redis_identical(redis_url: str) -> None:
    layers = flagship_layers()
    policy = PolicySpec(layers=layers)
    requests = table_of(flagship_arrivals())
    assert 3000 < len(requests) < 6000
    mem = replay(requests, policy, MemoryStore())
    red = replay(requests, policy, RedisStore.from_url(redis_url, timeout_s=5), batch=512)
    report = compare(mem, red)
    assert report.identical, str(report)
    assert report.differences["layer:site_orders"] == 0 and "remaining" in report.differences
    assert_every_layer_limits(mem, layers)
    assert (mem["layer:site_orders"].astype(str) == "not_reached").any()
    # layer-by-layer batches decide as request-by-request evaluation does
    assert_matches_reference(mem, reference(requests, layers))
    assert list(mem.columns[:5]) == ["time_us", "user", "tier", "route", "cost"]
    assert mem.index.equals(requests.index)


def test_two_gcra_layers_with_other_parameters_on_one_redis_store(redis_url: str) -> None:
    """Two layers of one algorithm kind with different parameters, batched on one RedisStore
    that has already batched a third GCRA: each decides with its own parameters."""
    store = RedisStore.from_url(redis_url, timeout_s=5)
    store.acquire(GCRA(0, 1, 1.0), "warm", 0)  # the store now knows its delivery mode
    store.acquire_many(GCRA(0, 1, 1.0), ["warm"], [0], [1])
    layers = [
        LayerSpec(name="loose", algorithm=GcraSpec(max_burst=50, count_per_period=100), key="*"),
        LayerSpec(name="tight", algorithm=GcraSpec(max_burst=1, count_per_period=10), key="*"),
    ]
    requests = pd.DataFrame({"time_us": [0, 0, 0]})
    with pytest.warns(UserWarning, match="already holds keys"):  # the "warm" key, on purpose
        out = replay(requests, PolicySpec(layers=layers), store)
    # loose: 51 at once, so all three pass (a 1-per-second GCRA would pass only the first)
    assert out["layer:loose"].astype(str).tolist() == ["allowed"] * 3
    # tight: 2 at once (T = 100 ms, burst 1); the third must wait one emission interval
    assert out["layer:tight"].astype(str).tolist() == ["allowed", "allowed", "rejected"]
    assert out["decided_by"].tolist() == ["tight", "tight", "tight"]
    assert out["remaining"].tolist() == [1, 0, 0]
    assert out["retry_after_us"].tolist() == [-1, -1, 100_000]


def test_tier_overrides_give_each_tier_its_own_state() -> None:
    """A layer with tier overrides keeps one state per tier even when its key template has no
    {tier} (as the engine does): silver and bronze both run the base GCRA, on separate state."""
    layer = LayerSpec(
        name="q",
        algorithm=GcraSpec(max_burst=0, count_per_period=1),  # 1 per second
        key="{user}",
        tiers={"gold": {"max_burst": 9}},
    )
    table = pd.DataFrame(
        {
            "time_us": [0, 1, 2, 3, 4],
            "user": ["a", "a", "a", "a", "a"],
            "tier": ["silver", "bronze", "silver", "gold", "gold"],
        }
    )
    out = replay(table, PolicySpec(layers=[layer]), MemoryStore())
    assert out["admitted"].tolist() == [True, True, False, True, True]
    assert out["remaining"].tolist() == [0, 0, 0, 9, 8]


# --- end-to-end: the engine's ideal world and a real Redis decide alike --------------------


@pytest.mark.parametrize("engine_time_source", ["client", "redis"])
def test_engine_single_node_ideal_equals_redis_replay(
    redis_url: str, engine_time_source: str
) -> None:
    """One node, perfect clocks, zero latency and service time: every layer of the engine
    decides at the arrival's true time (client time = the perfect node clock; with
    ``time_source="redis"`` the Redis model's perfect clock at the command's start, which is
    the arrival instant too). Replayed on a real Redis with the caller's time (the table's
    ``time_us``), every request gets the engine's decision.

    The flagship's only node layer comes first. With a node layer *after* a global one and
    same-instant arrivals, the engine can order two requests differently in that layer (see
    the report to the lead): this test's policy shape does not exercise that.
    """
    layers = flagship_layers(time_source=engine_time_source)
    sc = make_scenario(
        layers, duration_s=TRACE_US / 1e6, population=builtin.get("exchange-surge").population
    )
    result = simulate(sc, seed=0, arrivals=flagship_arrivals(seed=5))
    engine = result.requests
    assert_every_layer_limits(engine, layers)
    requests = engine[["time_us", "user", "tier", "route", "cost"]].astype(
        {"tier": str, "route": str}
    )
    store = RedisStore.from_url(redis_url, timeout_s=5, time_source="client")
    red = replay(requests, PolicySpec(layers=layers), store)
    assert red["admitted"].tolist() == engine["admitted"].tolist()
    assert red["rejected_by"].tolist() == engine["rejected_by"].tolist()
    report = compare(red, engine)  # admitted, rejected_by and every layer column
    assert report.identical, str(report)
    assert set(report.differences) == {"admitted", "rejected_by"} | {
        f"layer:{la.name}" for la in layers
    }


# --- shadow layers and routes filters, by hand ---------------------------------------------


def small_policy() -> PolicySpec:
    return PolicySpec(
        layers=[
            LayerSpec(
                name="peek",
                algorithm=GcraSpec(max_burst=0, count_per_period=1),  # 1 per s per user
                key="{user}",
                mode="shadow",
            ),
            LayerSpec(
                name="orders",
                algorithm=FixedWindowSpec(limit=2, window_s=1.0),
                scope="global",
                key="*",
                routes=["/order"],
            ),
            LayerSpec(
                name="per_user",
                algorithm=SlidingLogSpec(limit=3, window_s=1.0),
                scope="global",
                key="{user}",
            ),
        ]
    )


SMALL = pd.DataFrame(
    {
        "time_us": [0, 1, 2, 3, 4, 5, 1_500_000],
        "user": ["a", "a", "a", "a", "a", "b", "a"],
        "route": ["/order", "/order", "/order", "/ticker", "/ticker", "/order", "/order"],
    },
    index=[10, 11, 12, 13, 14, 15, 16],
)


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
def test_shadow_layer_and_routes_filter(redis_url: str, store_kind: str) -> None:
    store: Any = (
        MemoryStore() if store_kind == "memory" else RedisStore.from_url(redis_url, timeout_s=5)
    )
    out = replay(SMALL, small_policy(), store)
    # peek: user a's first request passes, the rest within 1 s would not (never rejected);
    # b's first passes; a again after 1.5 s passes.
    assert out["layer:peek"].astype(str).tolist() == [
        "allowed", "shadow_rejected", "shadow_rejected", "shadow_rejected", "shadow_rejected",
        "allowed", "allowed",
    ]  # fmt: skip
    # orders: only /order requests; 2 per epoch-aligned second, a rejection counts nothing
    assert out["layer:orders"].astype(str).tolist() == [
        "allowed", "allowed", "rejected", "not_reached", "not_reached", "rejected", "allowed",
    ]  # fmt: skip
    # per_user: a's 3 per second among the requests the orders layer let through
    assert out["layer:per_user"].astype(str).tolist() == [
        "allowed", "allowed", "not_reached", "allowed", "rejected", "not_reached", "allowed",
    ]  # fmt: skip
    assert out["admitted"].tolist() == [True, True, False, True, False, False, True]
    assert out["rejected_by"].tolist() == [
        None, None, "orders", None, "per_user", "orders", None,
    ]  # fmt: skip
    # the binding limit of an admitted request: orders has 1 left after request 10, per_user 2
    assert out["decided_by"].tolist() == [
        "orders", "orders", "orders", "per_user", "per_user", "orders", "orders",
    ]  # fmt: skip
    assert out["remaining"].tolist()[:2] == [1, 0]
    assert out["remaining"].iloc[3] == 0  # a's third entry in the log
    # a fixed-window rejection waits for the next epoch-aligned window
    assert out["retry_after_us"].iloc[2] == 1_000_000 - 2
    assert out.index.tolist() == SMALL.index.tolist()
    assert "tier" not in out.columns and out["cost"].tolist() == [1] * 7


def test_store_failures_take_the_stores_failure_mode() -> None:
    """A RedisStore that cannot reach its server answers with its failure mode: fail_open
    passes on, fail_closed rejects in an enforce layer and only counts in a shadow one."""
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    requests = SMALL.iloc[:3]
    closed = replay(
        requests, small_policy(), RedisStore.from_url(url, timeout_s=0.2, failure_mode="closed")
    )
    assert closed["layer:peek"].astype(str).tolist() == ["fail_closed"] * 3
    assert closed["layer:orders"].astype(str).tolist() == ["fail_closed"] * 3
    assert closed["layer:per_user"].astype(str).tolist() == ["not_reached"] * 3
    assert closed["rejected_by"].tolist() == ["orders"] * 3
    opened = replay(
        requests, small_policy(), RedisStore.from_url(url, timeout_s=0.2, failure_mode="open")
    )
    for name in ("peek", "orders", "per_user"):
        assert opened[f"layer:{name}"].astype(str).tolist() == ["fail_open"] * 3
    assert opened["admitted"].all() and opened["decided_by"].isna().all()


# --- compare on policy replays -------------------------------------------------------------


def test_compare_policy_replays_locates_differences() -> None:
    requests = table_of(flagship_arrivals())
    layers = flagship_layers()
    looser = [
        la.model_copy(update={"algorithm": SlidingLogSpec(limit=20, window_s=60.0)})
        if la.name == "user_window"
        else la
        for la in layers
    ]
    a = replay(requests, PolicySpec(layers=layers), MemoryStore())
    b = replay(requests, PolicySpec(layers=looser), MemoryStore())
    report = compare(a, b)
    ra, rb = reference(requests, layers), reference(requests, looser)
    differing = [
        i
        for i in range(len(requests))
        if any(ra[c][i] != rb[c][i] for c in ("admitted", "rejected_by", "layer:user_window"))
    ]
    assert not report.identical and differing
    flips = sum(x != y for x, y in zip(ra["admitted"], rb["admitted"], strict=True))
    assert report.differences["admitted"] == flips > 0
    assert report.differences["layer:tier_quota"] == 0  # earlier layers cannot change
    assert report.first_position is not None and report.first_position <= differing[0]
    assert report.first_a is not None and report.first_a["time_us"] == int(
        requests.time_us.iloc[report.first_position]
    )
    with pytest.raises(ValueError, match="different layers"):
        compare(a, a.drop(columns=["layer:user_window"]))
    algo = replay(pd.DataFrame({"time_us": [0], "key": ["k"]}), GCRA(0, 1, 1.0), MemoryStore())
    with pytest.raises(ValueError, match="both be algorithm replays or both policy"):
        compare(algo, a.iloc[:1])


# --- malformed tables and policies ---------------------------------------------------------


def test_bad_tables_and_policies_name_the_problem(redis_url: str) -> None:
    policy = small_policy()
    store = MemoryStore()
    with pytest.raises(ValueError, match=r"missing column 'user'.*layer 'peek'.*\{user\}"):
        replay(SMALL.drop(columns=["user"]), policy, store)
    with pytest.raises(ValueError, match=r"missing column 'route'.*layer 'orders'"):
        replay(SMALL.drop(columns=["route"]), policy, store)
    tiered = PolicySpec(
        layers=[
            LayerSpec(
                name="t",
                algorithm=GcraSpec(max_burst=1, count_per_period=1),
                tiers={"gold": {"max_burst": 5}},
            )
        ]
    )
    with pytest.raises(ValueError, match=r"missing column 'tier'.*layer 't'"):
        replay(SMALL, tiered, store)
    bad_time = SMALL.assign(time_us=[0, 1, 2.5, 3, 4, 5, 6])
    with pytest.raises(ValueError, match=r"'time_us' must hold integers; row 12 \(position 2\)"):
        replay(bad_time, policy, store)
    with pytest.raises(ValueError, match=r"'time_us'.*row 11"):
        replay(SMALL.assign(time_us=[0, "1", 2, 3, 4, 5, 6]), policy, store)
    with pytest.raises(ValueError, match=r"'user'.*row 13 \(position 3\) has (None|nan)"):
        users: list[Any] = ["a", "a", "a", None, "a", "b", "a"]
        replay(SMALL.assign(user=users), policy, store)
    with pytest.raises(ValueError, match=r"'route'.*row 10.*1\.5"):
        replay(SMALL.assign(route=[1.5, "/o", "/o", "/o", "/o", "/o", "/o"]), policy, store)
    with pytest.raises(ValueError, match=r"'cost' must be >= 0.*row 14"):
        replay(SMALL.assign(cost=[1, 1, 1, 1, -2, 1, 1]), policy, store)
    with pytest.raises(ValueError, match="missing column 'time_us'"):
        replay(SMALL.drop(columns=["time_us"]), policy, store)
    guarded = PolicySpec(
        layers=[LayerSpec(name="conc", algorithm=ConcurrencySpec(max_in_flight=2), key="*")]
    )
    with pytest.raises(ValueError, match="layer 'conc' is a concurrency layer"):
        replay(SMALL, guarded, store)
    with pytest.raises(ValueError, match="time_source='client'"):
        replay(SMALL, policy, RedisStore.from_url(redis_url, time_source="redis"))
    with pytest.raises(ValueError, match="batch"):
        replay(SMALL, policy, store, batch=0)


def test_layers_without_fields_need_no_columns_and_costs_count() -> None:
    """A policy of '*' keys reads no request attribute: time (and cost) are enough."""
    policy = PolicySpec(
        layers=[LayerSpec(name="site", algorithm=FixedWindowSpec(limit=5, window_s=1.0), key="*")]
    )
    table = pd.DataFrame({"time_us": [0, 10, 20, 30], "cost": [2, 2, 2, 0]})
    out = replay(table, policy, MemoryStore())
    # 2 + 2 fit in 5, the third 2 does not; a cost-0 peek always passes
    assert out["admitted"].tolist() == [True, True, False, True]
    assert out["remaining"].tolist() == [3, 1, 1, 1]
    assert list(out.columns) == [
        "time_us", "cost", "layer:site", "admitted", "rejected_by", "decided_by", "remaining",
        "retry_after_us",
    ]  # fmt: skip
    empty = replay(table.iloc[:0], policy, MemoryStore())
    assert len(empty) == 0 and "layer:site" in empty.columns


# --- the oracle is this replay's semantics, compiled --------------------------------------


def test_the_oracle_equals_replay_policy_on_a_memory_store() -> None:
    """``run_oracle`` (compiled, the one oracle) and ``replay_policy`` (the path for real
    stores) decide every request of a multi-node, faulty scenario's traffic alike: the oracle
    ignores nodes, network and Redis, as a replay has none; its every layer limits here."""
    layers = flagship_layers()
    sc = make_scenario(
        layers,
        nodes=4,
        duration_s=TRACE_US / 1e6,
        latency_ms=0.3,
        population=builtin.get("exchange-surge").population,
        redis={"outages": [{"start_s": 0.5, "end_s": 0.9}], "shards": 2},
    )
    result = simulate(sc, seed=1, arrivals=flagship_arrivals(seed=7))
    assert result.oracle is not None
    oracle = result.oracle.requests
    assert_every_layer_limits(oracle, layers)
    requests = oracle[["time_us", "user", "tier", "route", "cost"]].astype(
        {"tier": str, "route": str}
    )
    replayed = replay(requests, PolicySpec(layers=layers), MemoryStore())
    report = compare(replayed, oracle)
    assert report.identical, str(report)
    assert {f"layer:{la.name}" for la in layers} <= set(report.differences)
