"""Issue 9, the input half: every hole the probe found, as a test that failed before the fix.

Each input has a domain (``ratesim.bounds``); a value outside it is a ``ScenarioError`` /
``ValueError`` naming the field and the bound, and ``ratesim run`` exits 2 with one paragraph.
Expected numbers are computed here from the published formulas, not copied from a run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from scipy.special import ndtri

from ratesim import cli
from ratesim.algorithms import (
    BucketedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowLog,
)
from ratesim.bounds import MAX_CLOCK_SHIFT_US, MAX_HORIZON_US, MAX_LAYERS
from ratesim.budget import check_run_size, estimate_run_size
from ratesim.engine import MAX_LAYERS as ENGINE_MAX_LAYERS
from ratesim.engine import simulate
from ratesim.scenario import Scenario, ScenarioError, load_scenario
from ratesim.stores.memory import MemoryStore
from ratesim.traffic import TraceError, read_trace

S = 1_000_000


def base() -> dict[str, Any]:
    """A tiny scenario as plain data: one global GCRA, 100 requests/s for 0.2 s."""
    return {
        "name": "t",
        "duration_s": 0.2,
        "traffic": {"kind": "poisson", "rate_per_s": 100},
        "policy": {
            "layers": [
                {
                    "name": "g",
                    "algorithm": {"kind": "gcra", "max_burst": 5, "count_per_period": 10},
                    "scope": "global",
                }
            ]
        },
    }


def refused(data: dict[str, Any]) -> str:
    """The ``ScenarioError`` message of ``data`` (fails when it validates)."""
    with pytest.raises(ScenarioError) as exc:
        Scenario.from_dict(data, source="probe.yaml")
    return " ".join(str(exc.value).split())


def write_yaml(tmp_path: Path, data: dict[str, Any], name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def clean_exit_2(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("ratesim: error: ")
    assert "Traceback" not in err and "\n\n" not in err.strip()
    return " ".join(err.split())


# ------------------------------------------------------------------ finite numbers everywhere

INF_FIELDS = [
    (lambda d: d.update(duration_s=math.inf), "duration_s"),
    (lambda d: d.update(interval_s=math.inf), "interval_s"),
    (lambda d: d.update(network={"pool_max_wait_ms": math.inf}), "network.pool_max_wait_ms"),
    (lambda d: d["policy"]["layers"][0].update(timeout_ms=math.inf), "timeout_ms"),
    (lambda d: d["traffic"].update(rate_per_s=math.nan), "traffic"),
    (lambda d: d["policy"]["layers"][0]["algorithm"].update(period_s=math.inf), "period_s"),
]


@pytest.mark.parametrize(("edit", "field"), INF_FIELDS)
def test_infinite_or_nan_fields_are_refused_naming_the_field(edit: Any, field: str) -> None:
    """Bug: ``.inf`` validated, then the run died with an OverflowError traceback."""
    data = base()
    edit(data)
    msg = refused(data)
    assert field in msg and "finite" in msg


def test_inf_duration_in_yaml_exits_2_with_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "inf.yaml"
    path.write_text("name: t\nduration_s: .inf\ntraffic: {kind: poisson, rate_per_s: 1}\n")
    err = clean_exit_2(capsys, cli.main(["run", str(path), "--no-progress"]))
    assert "inf.yaml:2" in err and "duration_s" in err


# ------------------------------------------------------------------ delays and int64 overflow

Z_MAX = float(ndtri(1 - 2.0**-53))  # the largest quantile numpy's random() can reach


@pytest.mark.parametrize(
    ("where", "latency"),
    [
        ("network", {"kind": "constant", "ms": 1e16}),
        ("network", {"kind": "lognormal", "median_ms": 1.0, "sigma": 50.0}),
        ("network", {"kind": "normal", "mean_ms": 1.0, "std_ms": 1e9}),
        ("redis", {"kind": "constant", "ms": 1e16}),
    ],
)
def test_latencies_that_overflowed_int64_are_refused(where: str, latency: dict[str, Any]) -> None:
    """Bug: huge latencies or service times wrapped int64 and ended in 'conservation violated'."""
    data = base()
    key = "latency" if where == "network" else "service_time"
    data[where] = {key: latency}
    msg = refused(data)
    assert "1e+09 ms" in msg and key in msg


def test_lognormal_bound_is_its_largest_possible_sample() -> None:
    # median * exp(sigma * Z_MAX) <= 1e9 ms: sigma = ln(1e9 / median) / Z_MAX is the edge.
    median = 2.0
    edge = math.log(1e9 / median) / Z_MAX
    data = base()
    data["network"] = {"latency": {"kind": "lognormal", "median_ms": median, "sigma": edge * 0.999}}
    Scenario.from_dict(data)
    data["network"]["latency"]["sigma"] = edge * 1.001
    assert "largest sample" in refused(data)


def test_spikes_count_towards_the_latency_bound() -> None:
    data = base()
    data["network"] = {
        "latency": {"kind": "constant", "ms": 1e6},
        "spikes": [{"start_s": 0, "end_s": 1, "factor": 1000.0, "add_ms": 1.0}],
    }
    # 1e6 ms * 1000 + 1 ms > 1e9 ms once the spike applies
    assert "network.spikes" in refused(data)


def test_a_long_redis_queue_is_refused_by_the_event_horizon() -> None:
    """The largest service time the schema accepts (1e9 ms), behind a few thousand commands,
    would carry the Redis clock past the range the kernels keep exact."""
    data = base()
    data["redis"] = {"service_time": {"kind": "constant", "ms": 1e9}}
    data["traffic"]["rate_per_s"] = 5000  # about 1000 commands in 0.2 s
    sc = Scenario.from_dict(data)
    size = estimate_run_size(sc)
    m = 5000 * 0.2
    commands = m + 10 * math.sqrt(m) + 10
    assert size.horizon_parts["Redis queue (commands x largest redis.service_time)"] == (
        pytest.approx(commands * 1e12)
    )
    assert size.horizon_us >= MAX_HORIZON_US
    with pytest.raises(ScenarioError, match=r"2\*\*49"):
        check_run_size(sc, max_bytes=10**15)


# ------------------------------------------------------------------ clock offsets


def redis_offset(offset_ms: float) -> dict[str, Any]:
    data = base()
    data["policy"]["layers"][0]["time_source"] = "redis"
    data["redis"] = {"clock": {"offset_ms": offset_ms}}
    return data


def test_a_huge_redis_clock_offset_is_refused() -> None:
    """Bug: offset 1e16 ms ran on the event engine and overflowed on the fast one."""
    msg = refused(redis_offset(1e16))
    assert "redis.clock" in msg and "2**51" in msg


def test_the_largest_accepted_offset_runs_the_same_on_both_engines() -> None:
    offset_ms = MAX_CLOCK_SHIFT_US / 1000  # 2**51 us exactly (a float with 3 decimals)
    sc = Scenario.from_dict(redis_offset(offset_ms))
    event = simulate(sc, engine="event")
    fast = simulate(sc, engine="fast")
    assert len(event.requests) > 0
    assert event.requests.equals(fast.requests)
    # and one microsecond more is refused
    assert "2**51" in refused(redis_offset(offset_ms + 0.001))


def test_failover_clock_steps_add_to_the_redis_clock_shift() -> None:
    data = redis_offset(2.0e12)
    data["redis"]["failovers"] = [{"at_s": 0.1, "clock_step_ms": 0.3e12}]
    # 2.0e12 + 0.3e12 ms > 2**51 us = 2.2518e12 ms
    assert "clock_step_ms" in refused(data)


# ------------------------------------------------------------------ run size


def flash_crowd(peak_factor: float) -> dict[str, Any]:
    data = base()
    data["duration_s"] = 1.0
    data["traffic"] = {
        "kind": "flash_crowd",
        "base_rate_per_s": 1000.0,
        "peak_factor": peak_factor,
        "start_s": 0.1,
        "ramp_s": 0.2,
        "plateau_s": 0.3,
        "decay_s": 0.2,
    }
    return data


def test_a_flash_crowd_of_1e9_per_s_is_refused_with_its_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Bug: a peak of 1e9 requests per second hung instead of saying the run is too large."""
    data = flash_crowd(1e6)
    sc = Scenario.from_dict(data)
    # Lambda(1 s) = base * 1 s + base * (peak - 1) * (ramp / 2 + plateau + decay / 2)
    mean = 1000.0 + 1000.0 * (1e6 - 1) * (0.1 + 0.3 + 0.1)
    assert estimate_run_size(sc).requests == pytest.approx(mean + 10 * math.sqrt(mean) + 10)
    with pytest.raises(ScenarioError, match="too large to run") as exc:
        check_run_size(sc, max_bytes=8 * 2**30)
    assert "5e+08 requests" in str(exc.value) and "RATESIM_MAX_MEMORY" in str(exc.value)
    started = time.perf_counter()
    err = clean_exit_2(capsys, cli.main(["run", str(write_yaml(tmp_path, data)), "--no-progress"]))
    assert time.perf_counter() - started < 10
    assert "too large to run" in err


def test_the_memory_budget_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = Scenario.from_dict(base())
    need = estimate_run_size(sc).bytes
    monkeypatch.setenv("RATESIM_MAX_MEMORY", str(int(need) - 1))
    with pytest.raises(ScenarioError, match="too large"):
        check_run_size(sc)
    monkeypatch.setenv("RATESIM_MAX_MEMORY", str(int(need) + 1))
    check_run_size(sc)
    monkeypatch.setenv("RATESIM_MAX_MEMORY", "lots")
    with pytest.raises(ScenarioError, match="RATESIM_MAX_MEMORY"):
        check_run_size(sc)


def test_time_series_bins_count_towards_memory() -> None:
    data = base()
    data["duration_s"] = 1e7
    data["traffic"]["rate_per_s"] = 0.0
    data["interval_s"] = 1e-6  # 10**13 bins
    with pytest.raises(ScenarioError, match="time series"):
        check_run_size(Scenario.from_dict(data), max_bytes=8 * 2**30)


# ------------------------------------------------------------------ algorithm sizes


def test_sliding_log_limit_2_63_is_refused_at_construction() -> None:
    """Bug: accepted, then OverflowError inside acquire."""
    with pytest.raises(ValueError, match="limit"):
        SlidingWindowLog(2**63, 1.0)


def test_sliding_log_limit_1e9_does_not_allocate_8_gb() -> None:
    """Bug: the memory store tried to allocate 10**9 + 2 state slots for one key."""
    with pytest.raises(ValueError, match="integers of state per key"):
        SlidingWindowLog(10**9, 1.0)
    largest = SlidingWindowLog(2**20 - 2, 1.0)  # 2**20 integers per key: accepted
    assert largest.state_size == 2**20
    assert MemoryStore().acquire(largest, "k", 0).remaining == 2**20 - 3


@pytest.mark.parametrize("cls", [BucketedWindow, DoubleBufferedWindow])
def test_bucket_rings_refuse_limits_whose_sums_leave_2_53(cls: Any) -> None:
    """Bug: limits >= 2**53 were accepted, where Lua's doubles answer another ``remaining``."""
    args = (1.0, 10) if cls is BucketedWindow else (1.0, 10, 0.1)
    with pytest.raises(ValueError, match=r"2\*\*53"):
        cls(2**53, *args)
    edge = (2**53 - 1) // 11  # limit * (buckets + 1) < 2**53
    cls(edge, *args)
    with pytest.raises(ValueError, match=r"limit \* \(buckets \+ 1\)"):
        cls(edge + 1, *args)


def test_window_counter_limits_stay_below_2_52() -> None:
    with pytest.raises(ValueError, match=r"below 2\*\*52"):
        FixedWindow(2**52, 0.000001)


def test_too_many_buckets_are_refused() -> None:
    with pytest.raises(ValueError, match="1024"):
        BucketedWindow(5, 1.024, 2048)


def test_scenario_names_the_layer_field_of_an_unbuildable_algorithm() -> None:
    data = base()
    data["policy"]["layers"][0]["algorithm"] = {
        "kind": "sliding_log",
        "limit": 10**9,
        "window_s": 1,
    }
    msg = refused(data)
    assert "policy.layers[0]" in msg and "state per key" in msg


def test_more_layers_than_the_engine_can_order_are_refused_by_the_schema() -> None:
    assert MAX_LAYERS == ENGINE_MAX_LAYERS
    data = base()
    layer = {"algorithm": {"kind": "fixed_window", "limit": 5, "window_s": 1}}
    data["policy"]["layers"] = [{"name": f"l{i}", **layer} for i in range(MAX_LAYERS + 1)]
    assert "policy.layers" in refused(data)


def test_a_lone_surrogate_in_a_name_is_refused() -> None:
    data = base()
    data["population"] = {"tiers": {"gold\ud800": 1.0}}
    assert "UTF-8" in refused(data)


# ------------------------------------------------------------------ traces


def test_trace_times_beyond_int64_us_are_refused_not_wrapped(tmp_path: Path) -> None:
    """Bug: rows 0 s, 1 s, 18446744073709 s loaded as [0, 551616, 1551616]."""
    path = tmp_path / "t.csv"
    path.write_text("time,user\n0,a\n1,b\n18446744073709,c\n")
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert (exc.value.line, exc.value.column) == (4, "time")
    assert "2**53" in str(exc.value)


def test_huge_float_trace_times_name_their_line(tmp_path: Path) -> None:
    """Bug: a float time beyond int64 gave a misleading 'must be sorted'."""
    path = tmp_path / "t.csv"
    path.write_text("time,user\n0.5,a\n1e300,b\n")
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert exc.value.line == 3 and "sorted" not in str(exc.value)


def test_unix_epoch_microseconds_still_load(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,user\n1700000000000000,a\n1700000000000250,b\n")
    assert read_trace(path, time_unit="us").time_us.tolist() == [0, 250]


@pytest.mark.parametrize(
    ("text", "line", "fields"),
    [
        ("time,user\n0,a\n1,b,extra\n", 3, 3),
        ("time,user,cost\n0,a,1\n1,b\n", 3, 2),
        ("time,user\n0,a,extra\n1,b\n", 2, 3),  # pandas took the first column as an index
    ],
)
def test_ragged_trace_rows_are_refused_with_their_line(
    tmp_path: Path, text: str, line: int, fields: int
) -> None:
    """Bug: rows with extra fields were silently accepted."""
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert exc.value.line == line
    assert f"has {fields} fields" in str(exc.value)


def test_a_relative_trace_path_is_taken_from_the_scenario_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: a relative trace path resolved from the current directory."""
    sub = tmp_path / "scenarios"
    sub.mkdir()
    (sub / "trace.csv").write_text("time,user\n0,a\n0.05,b\n0.1,a\n")
    data = base()
    data["traffic"] = {"kind": "trace", "path": "trace.csv"}
    data["policy"]["layers"][0]["scope"] = "node"
    path = write_yaml(sub, data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    sc = load_scenario(path)
    assert Path(sc.traffic.path) == (sub / "trace.csv").absolute()  # type: ignore[union-attr]
    assert len(simulate(sc).requests) == 3


# ------------------------------------------------------------------ YAML


def test_duplicate_yaml_keys_name_both_lines(tmp_path: Path) -> None:
    """Bug: duplicate keys were accepted, the last one winning."""
    path = tmp_path / "dup.yaml"
    path.write_text(
        "name: t\nduration_s: 1\ntraffic: {kind: poisson, rate_per_s: 1}\nduration_s: 2\n"
    )
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    msg = str(exc.value)
    assert "dup.yaml:4" in msg and "duplicate key 'duration_s'" in msg and "line 2" in msg


def test_duplicate_keys_inside_a_flow_mapping(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: t\nduration_s: 1\ntraffic: {kind: poisson, rate_per_s: 1,\n  kind: x}\n")
    with pytest.raises(
        ScenarioError, match=r"dup.yaml:4: .*duplicate key 'kind' \(first at line 3\)"
    ):
        load_scenario(path)


def alias_bomb() -> str:
    """The probe's file: nine levels of nine aliases each, in a tier override (709 bytes)."""
    lines = [
        "name: t",
        "duration_s: 1",
        "traffic: {kind: poisson, rate_per_s: 1}",
        "policy:",
        "  layers:",
        "    - name: g",
        "      algorithm: {kind: gcra, max_burst: 1, count_per_period: 1}",
        "      tiers:",
        "        silver:",
        "          a0: &a0 [x, x, x, x, x, x, x, x, x]",
    ]
    for i in range(1, 9):
        lines.append(f"          a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_naming_the_line(tmp_path: Path) -> None:
    """Bug: a 709-byte file took 15 s and 2.7 GB and printed a 152 MB error."""
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb())
    started = time.perf_counter()
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    assert time.perf_counter() - started < 2
    msg = str(exc.value)
    assert len(msg) < 500
    assert "bomb.yaml:18" in msg and "aliases expand" in msg
    # a0 is a list of 9 scalars (10 values), a_k a list of 9 a_{k-1}: 1 + 9 * size(a_{k-1}),
    # so a_k has sum(9**j, j <= k + 1) values; the largest alias target is a7.
    assert f"one alias alone stands for {sum(9**j for j in range(9)):,}" in msg


def test_a_few_aliases_still_work(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: t\nduration_s: 1\ntraffic: {kind: poisson, rate_per_s: 1}\n"
        "network: {latency: &lat {kind: constant, ms: 1.0}}\n"
        "redis: {service_time: *lat}\n"
    )
    sc = load_scenario(path)
    assert sc.redis is not None and sc.redis.service_time == sc.network.latency


@pytest.mark.parametrize(
    "nested",
    [
        "[" * 1000 + "]" * 1000,
        "".join("\n" + "  " * (i + 1) + "- " for i in range(200)) + "x",
        "{a: " * 100 + "1" + "}" * 100,
    ],
    ids=["flow-lists", "block-lists", "flow-maps"],
)
def test_deep_nesting_is_refused_naming_the_line(tmp_path: Path, nested: str) -> None:
    """Bug: 1,000 levels of nesting raised RecursionError."""
    path = tmp_path / "deep.yaml"
    path.write_text("name: t\nduration_s: 1\ntraffic: {kind: poisson, rate_per_s: 1}\nx: " + nested)
    with pytest.raises(ScenarioError, match=r"deep\.yaml:\d+: .*(nesting|depth)"):
        load_scenario(path)


# ------------------------------------------------------------------ outputs


@pytest.mark.parametrize(
    ("name", "expected"),
    [("../../x", "x"), ("/etc/passwd", "etc_passwd"), ("..", "scenario"), ("a b/c", "a_b_c")],
)
def test_output_dir_from_the_name_never_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, expected: str
) -> None:
    """Bug: ``name: ../../x`` or an absolute name wrote outside ``out/``."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    data = base()
    data["name"] = name
    data["duration_s"] = 0.05
    path = write_yaml(tmp_path, data)
    assert cli.main(["run", str(path), "--no-progress", "--no-plots"]) == 0
    assert (work / "out" / expected / "requests.parquet").is_file()
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - {path}
    assert all(work / "out" in p.parents for p in written), written


def test_an_unwritable_out_fails_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: an unwritable ``--out`` failed only after the whole simulation ran."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")

    def no_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the simulation ran")

    monkeypatch.setattr(cli, "_simulate", no_run)
    path = write_yaml(tmp_path, base())
    err = clean_exit_2(capsys, cli.main(["run", str(path), "--out", str(blocker / "x")]))
    assert "cannot write" in err and "not a directory" in err


def test_the_writable_check_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper"
    cli.check_writable(target)
    assert not (tmp_path / "new").exists()
    (tmp_path / "existing").mkdir()
    cli.check_writable(tmp_path / "existing")
    assert list((tmp_path / "existing").iterdir()) == []


def test_sanitised_names() -> None:
    assert cli.safe_dir_name("exchange-surge") == "exchange-surge"
    assert cli.safe_dir_name("日本") == "scenario"
    assert cli.safe_dir_name("x" * 300) == "x" * 100
    assert np.all([("/" not in cli.safe_dir_name(n)) for n in ["/", "a/../b", "\x00"]])


# ------------------------------------------------------------------ found by the fuzz (fixed in the components)


def test_a_long_concurrency_hand_off_cascade_runs_on_the_event_engine() -> None:
    data = {
        "name": "cascade",
        "duration_s": 0.05,
        "traffic": {"kind": "poisson", "rate_per_s": 20000},
        "population": {"users": 1},
        "redis": None,
        "backend": {"servers": 2, "service_time": {"kind": "constant", "ms": 20.0}},
        "policy": {
            "layers": [
                {
                    "name": "conc",
                    "algorithm": {"kind": "concurrency", "max_in_flight": 1, "max_wait_s": 0.04},
                },
                {
                    "name": "breaker",
                    "algorithm": {
                        "kind": "circuit_breaker",
                        "threshold": 0.5,
                        "max_rt_s": 0.005,
                        "min_requests": 1,
                    },
                },
            ]
        },
    }
    sc = Scenario.from_dict(data)
    fast = simulate(sc, engine="fast")
    event = simulate(sc, engine="event")
    assert event.requests.equals(fast.requests)
