"""The experiment layer: parameter paths, sweeps, runners, seeds, cache, statistics, analyses.

Expected values are computed here, independently of ratesim.experiments: by calling
``ratesim.simulate`` directly on a scenario built by hand, from closed forms, or from the
documented seed lineage. Runs are tiny (a couple of seconds of simulated time, a few hundred
requests) and use the event engine, except the flagship checks, which the issue asks for on the
flagship itself and run on the compiled engine.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import ratesim
from ratesim import scenarios
from ratesim.experiments import (
    ParameterError,
    apply,
    degradation_order,
    first_trip,
    isolate_layers,
    latin_hypercube,
    summarize,
    sweep,
)
from ratesim.model.latency import ConstantLatency
from ratesim.policy import GcraSpec, LayerSpec, PolicySpec, TokenBucketSpec
from ratesim.scenario import NetworkSpec, RedisSpec, Scenario, TopologySpec
from ratesim.traffic import PoissonTraffic
from ratesim.traffic.specs import scale_traffic

NODES = 2
R_NODE = 100.0  # per-node token bucket rate, requests/s
BASE_RATE = 100.0  # offered load at traffic.scale = 1, requests/s
GCRA_PATH = "policy.layers[site_gcra].algorithm.count_per_period"


def two_layers(r_global: int = 150, duration_s: float = 2.0, rate: float = BASE_RATE) -> Scenario:
    """A per-node token bucket (``NODES`` x ``R_NODE`` in all) in front of a global GCRA."""
    return Scenario(
        name="two-layers",
        duration_s=duration_s,
        seed=11,
        topology=TopologySpec(nodes=NODES),
        network=NetworkSpec(latency=ConstantLatency(ms=0.0)),
        redis=RedisSpec(service_time=ConstantLatency(ms=0.0)),
        policy=PolicySpec(
            layers=[
                LayerSpec(
                    name="node_bucket", algorithm=TokenBucketSpec(rate=R_NODE, burst=40), key="*"
                ),
                LayerSpec(
                    name="site_gcra",
                    algorithm=GcraSpec(max_burst=40, count_per_period=r_global),
                    scope="global",
                    key="*",
                ),
            ]
        ),
        traffic=PoissonTraffic(rate_per_s=rate),
    )


def poisson_only(rate: float, duration_s: float) -> Scenario:
    """Poisson arrivals and nothing else: one node, no layers, no Redis."""
    return Scenario(
        name="poisson",
        duration_s=duration_s,
        redis=None,
        traffic=PoissonTraffic(rate_per_s=rate),
    )


def spawned_seed(root: int, replication: int, replications: int) -> int:
    """The documented seed of a replication: SeedSequence(root).spawn(R)[r], first 64-bit word,
    shifted right by one bit."""
    child = np.random.SeedSequence(root).spawn(replications)[replication]
    return int(child.generate_state(1, dtype=np.uint64)[0]) >> 1


def arrival_digest(result: Any) -> dict[str, Any]:
    """A metric: a digest of the arrival times and users (module level: picklable)."""
    req = result.requests
    raw = req["time_us"].to_numpy().tobytes() + req["user"].to_numpy().tobytes()
    return {"arrival_digest": hashlib.sha256(raw).hexdigest()}


def outcome_columns(df: pd.DataFrame) -> list[str]:
    """Every column but the run's wall time (the one column that varies between identical runs)."""
    return [c for c in df.columns if c != "wall_s"]


# --- parameter paths ----------------------------------------------------------------------------


def test_paths_set_fields_by_layer_name_tier_and_derived_helpers() -> None:
    base = scenarios.get("exchange-surge")
    out = apply(
        base,
        {
            "policy.layers[site_orders].algorithm.count_per_period": 1234,
            "policy.layers[tier_quota].tiers.gold.count_per_period": 777,
            "network.pool_size": 80,
            "traffic.peak_factor": 5.0,
            "policy.layers[user_window].scale": 2,
            "topology.clocks[2].offset_ms": 3.5,
        },
    )
    assert out.policy.layer("site_orders").algorithm.count_per_period == 1234  # type: ignore[union-attr]
    assert out.policy.layer("tier_quota").tiers["gold"] == {
        "max_burst": 500,
        "count_per_period": 777,
    }
    assert out.network.pool_size == 80
    assert out.traffic.peak_factor == 5.0  # type: ignore[union-attr]
    assert out.policy.layer("user_window") == base.policy.layer("user_window").scaled(2.0)
    assert out.topology.clock_specs()[2].offset_ms == 3.5
    # everything else is untouched
    assert out.policy.layer("node_bucket") == base.policy.layer("node_bucket")
    assert base.network.pool_size == 200  # the base scenario is not modified
    scaled = apply(base, {"traffic.scale": 3})
    assert scaled.traffic == scale_traffic(base.traffic, 3.0)


@pytest.mark.parametrize(
    "path,needle",
    [
        ("policy.layers[nope].mode", "no entry named 'nope'"),
        ("policy.layers[site_gcra].algoritm.max_burst", "no field 'algoritm'"),
        ("traffic.base_rate_per_s", "no field 'base_rate_per_s'"),
        ("topology.nodes.x", "has no 'x'"),
        ("redis.outages[0].start_s", "no index 0"),
        ("policy..layers", "malformed"),
    ],
)
def test_a_bad_path_is_an_error_naming_it(path: str, needle: str) -> None:
    with pytest.raises(ParameterError) as info:
        sweep(two_layers(), grid={path: [1]}, runner="serial", progress=False)
    assert needle in str(info.value)
    assert "malformed" in needle or repr(path) in str(info.value)


_RUNS: list[int] = []


def counting(result: Any) -> dict[str, Any]:
    """A metric that counts the runs of this process (serial runner)."""
    _RUNS.append(1)
    return {}


def test_a_refused_value_stops_the_sweep_before_any_run() -> None:
    _RUNS.clear()
    with pytest.raises(ParameterError) as info:
        sweep(
            two_layers(),
            grid={GCRA_PATH: [100, 200, 0]},  # only the last value is bad
            metrics=[counting],
            runner="serial",
            progress=False,
        )
    message = str(info.value)
    assert GCRA_PATH in message and "= 0" in message and "greater than or equal to 1" in message
    assert _RUNS == []
    with pytest.raises(ParameterError, match="scale factor must be a number > 0"):
        sweep(two_layers(), grid={"policy.layers[site_gcra].scale": [-1]}, runner="serial")


def test_other_bad_arguments_are_refused_up_front() -> None:
    sc = two_layers()
    with pytest.raises(ParameterError, match="non-empty list"):
        sweep(sc, grid={GCRA_PATH: 5}, runner="serial")  # type: ignore[dict-item]
    with pytest.raises(ParameterError, match="not both"):
        sweep(sc, grid={GCRA_PATH: [5]}, samples=[{GCRA_PATH: 5}], runner="serial")
    with pytest.raises(ParameterError, match="same parameters"):
        sweep(sc, samples=[{GCRA_PATH: 5}, {"network.pool_size": 3}], runner="serial")
    with pytest.raises(ValueError, match="runner must be"):
        sweep(sc, runner="threads")
    with pytest.raises(ValueError, match="replications must be an integer >= 1"):
        sweep(sc, replications=0, runner="serial")
    with pytest.raises(ValueError, match="engine must be one of"):
        sweep(sc, engine="warp", runner="serial")


def test_the_dask_runner_says_what_to_install_when_dask_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'ratesim\[dask\]'"):
        sweep(two_layers(), runner="dask://127.0.0.1:8786", progress=False)


# --- one sweep against simulate ------------------------------------------------------------------


def test_a_row_is_the_run_simulate_gives_for_that_point_and_seed() -> None:
    base = two_layers()
    df = sweep(
        base,
        grid={GCRA_PATH: [60, 300]},
        replications=2,
        seed=42,
        runner="serial",
        engine="event",
        progress=False,
    )
    assert len(df) == 4
    assert list(df["point"]) == [0, 0, 1, 1] and list(df["replication"]) == [0, 1, 0, 1]
    row = df[(df[GCRA_PATH] == 60) & (df["replication"] == 1)].iloc[0]
    seed = spawned_seed(42, 1, 2)
    assert row["seed"] == seed
    assert (row["seed_entropy"], row["seed_spawn_key"]) == (42, 1)
    # the same point built by hand, run directly
    by_hand = base.model_copy(deep=True)
    by_hand.policy.layers[1].algorithm.count_per_period = 60  # type: ignore[union-attr]
    res = ratesim.simulate(by_hand, seed=seed, engine="event")
    summary = res.summary.set_index("layer")
    total = res.vs_oracle.set_index(["group", "key"]).loc[("total", "all")]
    n = res.totals["arrivals"]
    assert row["arrivals"] == n and row["admitted"] == res.totals["admitted"]
    assert row["rejected:site_gcra"] == summary.loc["site_gcra", "rejected"] > 0
    assert row["rejected:node_bucket"] == summary.loc["node_bucket", "rejected"]
    assert row["over_admitted"] == total["over_admitted"]
    assert row["wrongly_rejected"] == total["wrongly_rejected"]
    assert row["peak_excess"] == total["peak_excess"]
    assert row["rejected_pct"] == pytest.approx(100 * res.totals["rejected"] / n)
    assert row["legit_rejected"] == int((~res.requests["admitted"]).sum())  # nobody is abusive
    assert row["latency_p99_ms"] == pytest.approx(res.totals["latency_p99_us"] / 1000)
    assert row["engine"] == "event" and row["wall_s"] > 0


# --- runners ------------------------------------------------------------------------------------


def test_serial_local_and_dask_runners_give_identical_tables() -> None:
    from distributed import Client, LocalCluster

    kwargs: dict[str, Any] = {
        "grid": {GCRA_PATH: [120, 300], "traffic.scale": [1.0, 2.0]},
        "replications": 2,
        "seed": 5,
        "metrics": [arrival_digest],
        "engine": "event",
        "progress": False,
    }
    serial = sweep(two_layers(), runner="serial", **kwargs)
    local = sweep(two_layers(), runner="local", workers=2, **kwargs)
    # Worker threads in this process, over TCP: the local runner above already checks that
    # other processes give the same table, and spawning Dask worker processes costs ~10 s.
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        on_client = sweep(two_layers(), runner=client, **kwargs)
        address = cluster.scheduler_address.removeprefix("tcp://")
        on_address = sweep(two_layers(), runner=f"dask://{address}", **kwargs)
    cols = outcome_columns(serial)
    assert len(serial) == 8 and serial["rejected"].sum() > 0
    for other in (local, on_client, on_address):
        pd.testing.assert_frame_equal(serial[cols], other[cols])


# --- seeds --------------------------------------------------------------------------------------


def test_common_random_numbers_within_a_replication_not_across() -> None:
    df = sweep(
        two_layers(),
        grid={GCRA_PATH: [60, 150, 400], "policy.layers[node_bucket].scale": [0.5, 1.0]},
        replications=3,
        seed=9,
        metrics=[arrival_digest],
        runner="serial",
        engine="event",
        progress=False,
    )
    per_rep = df.groupby("replication")["arrival_digest"].nunique()
    assert list(per_rep) == [1, 1, 1]  # every point of a replication: the same arrivals
    assert df.groupby("replication")["arrival_digest"].first().nunique() == 3
    assert df.groupby("replication")["seed"].nunique().eq(1).all()
    # the parameters did change the outcome (so equal arrivals are not a trivial result)
    assert df.groupby("replication")["rejected"].nunique().gt(1).all()
    # and a run's arrivals are simulate's own for that seed
    direct = ratesim.simulate(two_layers(), seed=int(df["seed"].iloc[0]), engine="event")
    assert arrival_digest(direct)["arrival_digest"] == df["arrival_digest"].iloc[0]


# --- statistics ---------------------------------------------------------------------------------


def test_summarize_is_students_t_over_replications() -> None:
    df = pd.DataFrame(
        {
            "point": [0, 0, 0, 1, 1, 1, 1],
            "x": [1, 1, 1, 2, 2, 2, 2],
            "replication": [0, 1, 2, 0, 1, 2, 3],
            "seed": 0,
            "seed_entropy": 0,
            "seed_spawn_key": 0,
            "engine": "event",
            "m": [3.0, 5.0, 10.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    out = summarize(df).set_index("x")
    values = np.array([3.0, 5.0, 10.0])
    low, high = stats.t.interval(0.95, 2, loc=values.mean(), scale=stats.sem(values))
    assert out.loc[1, "replications"] == 3
    assert out.loc[1, "m_mean"] == pytest.approx(6.0)
    assert out.loc[1, "m_std"] == pytest.approx(values.std(ddof=1))
    assert (out.loc[1, "m_ci95_low"], out.loc[1, "m_ci95_high"]) == pytest.approx((low, high))
    assert (out.loc[2, "m_ci95_low"], out.loc[2, "m_ci95_high"]) == (1.0, 1.0)  # constant
    one = summarize(df[df["replication"] == 0])
    assert one["m_ci95_low"].isna().all() and one["m_std"].isna().all()
    assert "m_ci90_low" in summarize(df, confidence=0.9)


def test_the_interval_of_poisson_arrivals_covers_lambda_t_95_percent_of_the_time() -> None:
    """Arrivals of a Poisson process of rate λ over T are Poisson(λT). Over M independent
    sweeps of R replications, the 95% t-interval of the mean covers λT in about 95% of them.
    M = 100: the standard error of the observed coverage is ~2.2 points; the tolerance of 6.5
    points is 3 of them. With R = 3 a normal (z) interval would cover only ~81%, out of it."""
    lam, t_s, reps, sweeps = 30.0, 1.0, 3, 100
    sc = poisson_only(lam, t_s)
    covered = 0
    for i in range(sweeps):
        s = summarize(
            sweep(
                sc,
                replications=reps,
                seed=1000 + i,
                runner="serial",
                engine="event",
                progress=False,
            )
        ).iloc[0]
        covered += bool(s["arrivals_ci95_low"] <= lam * t_s <= s["arrivals_ci95_high"])
    assert abs(covered / sweeps - 0.95) <= 0.065, covered


# --- cache and resume ---------------------------------------------------------------------------


class Interrupter:
    """A metric that raises once ``stop_after`` runs have finished, and counts every run."""

    stop_after: int | None = None
    runs = 0

    def __call__(self, result: Any) -> dict[str, Any]:
        if self.stop_after is not None and Interrupter.runs >= self.stop_after:
            raise KeyboardInterrupt("stopped by the test")
        Interrupter.runs += 1
        return {}


def test_an_interrupted_sweep_resumes_with_only_the_missing_runs(tmp_path: Path) -> None:
    grid = {GCRA_PATH: [80, 120, 160, 400], "traffic.scale": [1.0, 1.5]}
    n, k = 8 * 2, 5  # 8 points x 2 replications; stop after 5 runs
    kwargs: dict[str, Any] = {
        "grid": grid,
        "replications": 2,
        "runner": "serial",
        "engine": "event",
        "progress": False,
    }
    stop = Interrupter()
    reference = sweep(two_layers(), metrics=[stop], **kwargs)
    Interrupter.runs, Interrupter.stop_after = 0, k
    with pytest.raises(KeyboardInterrupt):
        sweep(two_layers(), metrics=[stop], cache=tmp_path, **kwargs)
    assert Interrupter.runs == k and len(list(tmp_path.glob("*.parquet"))) == k
    Interrupter.runs, Interrupter.stop_after = 0, None
    resumed = sweep(two_layers(), metrics=[stop], cache=tmp_path, **kwargs)
    assert Interrupter.runs == n - k
    assert (resumed.attrs["runs"], resumed.attrs["cached"]) == (n - k, k)
    cols = outcome_columns(reference)
    pd.testing.assert_frame_equal(reference[cols], resumed[cols])
    Interrupter.runs = 0
    again = sweep(two_layers(), metrics=[stop], cache=tmp_path, **kwargs)
    assert Interrupter.runs == 0  # a finished sweep costs nothing
    pd.testing.assert_frame_equal(resumed, again)  # wall_s too: it is the cached runs' own
    # another seed is another set of runs
    Interrupter.runs = 0
    sweep(two_layers(), metrics=[stop], cache=tmp_path, seed=1, **kwargs)
    assert Interrupter.runs == n


# --- designs ------------------------------------------------------------------------------------


def test_latin_hypercube_puts_one_point_in_every_stratum() -> None:
    n = 12
    pts = latin_hypercube({"traffic.scale": (0.5, 2.0), "network.pool_size": (10, 130)}, n, seed=3)
    assert len(pts) == n
    scale = np.array([p["traffic.scale"] for p in pts])
    strata = np.floor((scale - 0.5) / (1.5 / n)).astype(int)
    assert sorted(strata) == list(range(n))
    pools = [p["network.pool_size"] for p in pts]
    assert all(isinstance(v, int) and 10 <= v <= 130 for v in pools)
    assert len({int((v - 10) // 10) for v in pools}) >= n - 1  # rounding may merge one pair
    assert latin_hypercube({"traffic.scale": (0.5, 2.0)}, 4, seed=3) == latin_hypercube(
        {"traffic.scale": (0.5, 2.0)}, 4, seed=3
    )


# --- analyses -----------------------------------------------------------------------------------


def test_first_trip_is_the_first_rejection_of_each_layer() -> None:
    res = ratesim.simulate(two_layers(r_global=120, rate=250.0), seed=4, engine="event")
    ft = first_trip(res)
    req = res.requests
    expected = {}
    for name in ("node_bucket", "site_gcra"):
        hits = req.index[req[f"layer:{name}"].astype(str) == "rejected"]
        expected[name] = req.loc[hits[0], "time_us"] / 1e6
    assert list(ft["layer"]) == sorted(expected, key=expected.get)
    row = ft.set_index("layer").loc["site_gcra"]
    assert row["time_s"] == pytest.approx(expected["site_gcra"])
    t_us = req["time_us"].to_numpy()
    t0 = expected["site_gcra"] * 1e6
    in_window = ((t_us > t0 - 1e6) & (t_us <= t0)).sum()  # interval_s = 1 s
    assert row["offered_per_s"] == in_window


def test_degradation_order_finds_the_flip_at_n_times_the_node_rate() -> None:
    """Below N·r_node the global GCRA engages first as the load grows; above it the node
    buckets do (and cap the traffic near N·r_node, below the global limit).

    The ramp steps by 25 requests/s; Poisson bursts may trip a limit a step below its rate, and
    a burst allowance of 40 may hold it until a step or two above, hence the tolerances."""
    flip = NODES * R_NODE
    step = 0.25
    loads = [1.0 + step * i for i in range(9)]  # 100 .. 300 requests/s
    first = {}
    for r_global in (150, 170, 240, 280):
        order = degradation_order(
            two_layers(r_global, duration_s=3.0),
            load_factors=loads,
            runner="serial",
            engine="event",
            progress=False,
        )
        first[r_global] = order["layer"].iloc[0]
        rows = order.set_index("layer")
        node_at = rows.loc["node_bucket", "engages_at"] * BASE_RATE
        assert flip - step * BASE_RATE <= node_at <= flip + 2 * step * BASE_RATE
        assert rows.loc["node_bucket", "share_rejected"] > 0
        if r_global < flip:
            gcra_at = rows.loc["site_gcra", "engages_at"] * BASE_RATE
            assert r_global - step * BASE_RATE <= gcra_at <= r_global + 2 * step * BASE_RATE
            assert gcra_at < node_at
            assert rows["out_of_order"].all()  # the policy's order says node_bucket first
        else:
            assert not rows["out_of_order"].any()
    # far above the flip the buckets' output (<= N·r_node·t + N·burst) never reaches the GCRA's
    assert rows.loc["site_gcra", "never_engages"] and math.isnan(
        rows.loc["site_gcra", "engages_at"]
    )
    assert first == {150: "site_gcra", 170: "site_gcra", 240: "node_bucket", 280: "node_bucket"}
    profile = order.attrs["profile"]
    assert set(profile["layer"]) == {"node_bucket", "site_gcra"} and len(profile) == 2 * len(loads)


def test_coupling_map_marks_the_binding_layer_and_where_a_layer_never_engages() -> None:
    from ratesim.experiments import coupling_map

    cm = coupling_map(
        two_layers(duration_s=2.0),
        x=GCRA_PATH,
        y="traffic.rate_per_s",
        x_values=[140, 260],
        y_values=[80.0, 300.0],
        runner="serial",
        engine="event",
        progress=False,
    ).set_index([GCRA_PATH, "traffic.rate_per_s"])
    assert cm.loc[(140, 80.0), "binding_layer"] == "none"  # below both limits
    assert cm.loc[(140, 300.0), "binding_layer"] == "site_gcra"  # global limit < N·r_node
    assert cm.loc[(260, 300.0), "binding_layer"] == "node_bucket"
    assert cm.loc[(260, 300.0), "never:site_gcra"]  # capped below its limit by the buckets
    assert cm.loc[(140, 80.0), "never_engages"] == "node_bucket, site_gcra"
    assert (cm["binding_share"] == 1.0).all()


def test_isolate_layers_counts_in_how_many_replications_a_layer_is_masked() -> None:
    """Masking depends on the draw: count it by hand over R replications (runs made here with
    the documented seeds, each layer's first rejection read from the requests)."""
    small = scenarios.get("exchange-surge", scale=0.1)
    reps = 3
    table = isolate_layers(small, replications=reps, seed=2, runner="serial", progress=False)
    row = table.set_index("layer").loc["site_orders"]
    alone_sc = small.model_copy(deep=True)
    for layer in alone_sc.policy.layers:
        if layer.name != "site_orders":
            layer.mode = "shadow"
    masked = 0
    for r in range(reps):
        seed = spawned_seed(2, r, reps)
        t_stack = first_trip(ratesim.simulate(small, seed=seed)).set_index("layer")
        t_alone = first_trip(ratesim.simulate(alone_sc, seed=seed)).set_index("layer")
        a, s = t_alone.loc["site_orders", "time_s"], t_stack.loc["site_orders", "time_s"]
        masked += bool(not math.isnan(a) and (math.isnan(s) or s > a))
    assert row["masked_in"] == masked and row["replications"] == reps
    assert row["masked"] == (2 * masked > reps)


def test_isolate_layers_on_the_flagship_finds_user_window_masked() -> None:
    """The flagship, its own seed: the issue measured user_window tripping at 9.6 s alone but
    only at 13.5 s in the stack (tier_quota rejects the heavy users first). Run on two local
    worker processes with the compiled engine (the test above has compiled it and filled
    numba's cache, so the workers load it)."""
    flagship = scenarios.get("exchange-surge")
    table = isolate_layers(flagship, runner="local", workers=2, progress=False).set_index("layer")
    row = table.loc["user_window"]
    assert row["first_trip_alone_s"] == pytest.approx(9.6, abs=0.05)
    assert row["first_trip_stacked_s"] == pytest.approx(13.5, abs=0.05)
    assert row["masked"] and row["masked_in"] == 1 and row["replications"] == 1
    assert row["delay_s"] == pytest.approx(row["first_trip_stacked_s"] - row["first_trip_alone_s"])
    quota = table.loc["tier_quota"]  # no enforce layer before it: nothing can mask it
    assert not quota["masked"] and quota["first_trip_alone_s"] == quota["first_trip_stacked_s"]
