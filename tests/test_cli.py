"""Tests for the ``ratesim`` command (ratesim.cli), run in-process through ``main([...])``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

from ratesim import cli  # noqa: E402

# A run small enough for a test: a thin slice of the flagship scenario.
SMALL_RUN = ["--scale", "0.01", "--duration", "2", "--no-progress"]


# --------------------------------------------------------------------------- synthetic results


def fake_requests(admitted: list[bool]) -> pd.DataFrame:
    n = len(admitted)
    return pd.DataFrame(
        {
            "time_us": np.arange(n, dtype=np.int64) * 250_000,
            "node": np.zeros(n, dtype=np.int64),
            "user": np.arange(n, dtype=np.int64),
            "tier": pd.Categorical(["gold"] * n),
            "route": pd.Categorical(["/order"] * n),
            "abusive": np.zeros(n, dtype=bool),
            "cost": np.ones(n, dtype=np.int64),
            "layer:global": pd.Categorical(["allowed" if a else "rejected" for a in admitted]),
            "admitted": np.asarray(admitted, dtype=bool),
            "rejected_by": [None if a else "global" for a in admitted],
            "latency_us": np.full(n, 700, dtype=np.int64),
        }
    )


def fake_timeseries(admitted: list[int]) -> pd.DataFrame:
    index = pd.Index([0.0, 1.0], name="time_s")
    return pd.DataFrame(
        {
            "arrivals": [4, 4],
            "admitted": admitted,
            "rejected:global": [4 - a for a in admitted],
            "shadow_rejected:global": [0, 0],
            "remaining:global": [3, 0],
            "redis_queue_depth": [1, 2],
            "pool_wait_p99_us": [0, 0],
            "latency_p50_us": [600, 800],
            "latency_p99_us": [900, 1500],
            "latency_p999_us": [950, 2500],
        },
        index=index,
    )


def fake_result() -> SimpleNamespace:
    scenario = SimpleNamespace(name="fake", duration_s=2.0, interval_s=1.0)
    system = [True, True, False, True, True, False, True, False]  # 5 admitted
    oracle_adm = [True, False, True, True, True, False, False, False]  # 4 admitted
    summary = pd.DataFrame(
        [
            {
                "layer": "global",
                "scope": "global",
                "mode": "enforce",
                "algorithm": "gcra",
                "rejected": 3,
                "shadow_rejected": 0,
                "fail_open": 7,
                "fail_closed": 0,
                "local": 0,
            }
        ]
    )
    oracle = SimpleNamespace(
        scenario=scenario,
        requests=fake_requests(oracle_adm),
        timeseries=fake_timeseries([3, 1]),
    )
    return SimpleNamespace(
        scenario=scenario,
        seed=7,
        requests=fake_requests(system),
        timeseries=fake_timeseries([3, 2]),
        summary=summary,
        totals={
            "arrivals": 8,
            "admitted": 5,
            "rejected": 3,
            "latency_p50_us": 700,
            "latency_p99_us": 1500,
            "latency_p999_us": 2500,
        },
        oracle=oracle,
        vs_oracle=pd.DataFrame(
            {
                "group": ["total", "layer"],
                "key": ["all", "global"],
                "over_admitted": [2, 2],
                "wrongly_rejected": [1, 1],
                "peak_excess": [2, 2],
            }
        ),
    )


def test_format_summary_shows_layers_totals_latency_and_oracle_gap() -> None:
    text = cli.format_summary(fake_result(), wall_s=1.25)
    assert text.startswith("Scenario fake (seed 7): 2 s simulated in 1.2 s wall")
    assert re.search(r"global\s+global\s+enforce\s+gcra\s+3\s+0\s+7\s+0\s+0", text)
    assert "Totals: arrivals 8, admitted 5 (62.50%), rejected 3 (37.50%)" in text
    assert "Decision latency: p50 0.700 ms, p99 1.500 ms, p99.9 2.500 ms" in text
    assert "Oracle gap: over-admitted 2, wrongly rejected 1, peak excess 2 in a 1 s window" in text
    assert "(the oracle admitted 4)" in text
    assert "vs oracle:" in text


def test_format_summary_counts_the_gap_itself_without_a_vs_oracle_total() -> None:
    result = fake_result()
    result.vs_oracle = None
    text = cli.format_summary(result)
    # By hand from the two admitted vectors: rows 1 and 6 are over-admitted, row 2 is a wrong
    # rejection; the oracle admits 4.
    assert "Oracle gap: over-admitted 2, wrongly rejected 1 (the oracle admitted 4)" in text
    assert "vs oracle:" not in text


def test_write_outputs_writes_data_and_plots(tmp_path: Path) -> None:
    result = fake_result()
    written = cli.write_outputs(result, tmp_path / "run")
    names = {p.name for p in written}
    assert {"requests.parquet", "timeseries.parquet", "summary.csv", "totals.json"} <= names
    assert {"timeline.png", "latency.png", "oracle_gap.png", "remaining.png"} <= names
    assert all(p.stat().st_size > 0 for p in written)
    back = pd.read_parquet(tmp_path / "run" / "requests.parquet")
    assert back["admitted"].tolist() == result.requests["admitted"].tolist()
    assert back["rejected_by"].tolist() == result.requests["rejected_by"].tolist()
    ts = pd.read_parquet(tmp_path / "run" / "timeseries.parquet")
    assert ts.index.name == "time_s"
    assert ts["rejected:global"].tolist() == [1, 2]
    assert pd.read_csv(tmp_path / "run" / "summary.csv")["fail_open"].tolist() == [7]


def test_write_outputs_without_plots(tmp_path: Path) -> None:
    written = cli.write_outputs(fake_result(), tmp_path, plots=False)
    assert not [p for p in written if p.suffix == ".png"]


# --------------------------------------------------------------------------- bad input


def assert_clean_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ratesim: error: ")
    assert "Traceback" not in err
    assert "\n\n" not in err.strip()  # one paragraph
    return err


def test_missing_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    err = assert_clean_error(capsys, cli.main(["run", str(missing)]))
    assert "nope.yaml" in err and "not found" in err


def test_scale_with_a_file_scales_its_traffic_and_users_not_its_limits(tmp_path: Path) -> None:
    """A file at ``--scale S``: every rate x S and users x S (rounded, >= 1), as a built-in's
    traffic grows; the policy (the config under test) and the rest stay as written."""
    from ratesim import scenarios

    original = scenarios.get("redis-saturation")  # piecewise traffic: several rates
    original.to_yaml(tmp_path / "sat.yaml")
    scaled, _ = cli.load_target(str(tmp_path / "sat.yaml"), 0.25)
    rates = [seg.rate_per_s for seg in original.traffic.segments]
    assert [seg.rate_per_s for seg in scaled.traffic.segments] == [r * 0.25 for r in rates]
    assert [seg.until_s for seg in scaled.traffic.segments] == [
        seg.until_s for seg in original.traffic.segments
    ]
    assert scaled.population.users == max(1, round(original.population.users * 0.25))
    unchanged = [k for k in original.model_dump() if k not in ("traffic", "population")]
    assert "policy" in unchanged
    for key in unchanged:
        assert scaled.model_dump()[key] == original.model_dump()[key], key
    tiny, _ = cli.load_target(str(tmp_path / "sat.yaml"), 1e-9)
    assert tiny.population.users == 1


def test_scale_with_a_trace_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from ratesim import scenarios

    (tmp_path / "t.csv").write_text("time,user\n0.5,1\n")
    data = scenarios.get("single-node-ideal").model_dump()
    data["traffic"] = {"kind": "trace", "path": str(tmp_path / "t.csv"), "time_unit": "s"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    valid = ["run", str(tmp_path / "s.yaml"), "--no-progress", "--no-plots", "--out"]
    assert cli.main([*valid, str(tmp_path / "out")]) == 0  # the file itself is valid
    err = assert_clean_error(capsys, cli.main(["run", str(tmp_path / "s.yaml"), "--scale", "2"]))
    assert "--scale" in err and "s.yaml" in err and "speedup" in err


def test_run_header_gives_the_scale(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["run", "clock-skew", "--duration", "1", "--seed", "3", "--no-progress", "--no-plots"]
    assert cli.main([*argv, "--scale", "0.05", "--out", str(tmp_path / "a")]) == 0
    assert "Scenario clock-skew (seed 3) at scale 0.05:" in capsys.readouterr().out
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(_small_skew_dump()))
    assert cli.main(["run", str(tmp_path / "s.yaml"), *argv[2:], "--out", str(tmp_path / "b")]) == 0
    assert " at scale 1:" in capsys.readouterr().out


def _small_skew_dump() -> dict[str, Any]:
    from ratesim import scenarios

    return scenarios.get("clock-skew", scale=0.05).model_dump(mode="json")


def test_bad_command_line_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "exchange-surge", "--seed", "-1"]) == 2
    assert "--seed" in capsys.readouterr().err
    assert cli.main(["run", "exchange-surge", "--scale", "abc"]) == 2
    assert "--scale" in capsys.readouterr().err
    assert cli.main([]) == 2


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    assert "scenarios" in capsys.readouterr().out


# --------------------------------------------------------------------------- with the engine


def test_unknown_scenario_lists_the_known_names(capsys: pytest.CaptureFixture[str]) -> None:
    from ratesim import scenarios

    err = assert_clean_error(capsys, cli.main(["run", "no-such-scenario"]))
    assert "no-such-scenario" in err
    for name in scenarios.names():
        assert name in err


def test_scenarios_lists_every_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    from ratesim import scenarios

    assert cli.main(["scenarios"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(scenarios.names())
    assert any(line.startswith("exchange-surge ") for line in out)


def scenario_file(tmp_path: Path, edit: Any) -> Path:
    """The exchange-surge scenario saved as YAML, with ``edit(data)`` applied to its mapping."""
    from ratesim import scenarios

    path = tmp_path / "surge.yaml"
    scenarios.get("exchange-surge").to_yaml(path)
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_wrong_field_type_names_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["topology"]["nodes"] = "many"
        data["network"]["pool_size"] = -5

    path = scenario_file(tmp_path, edit)
    err = assert_clean_error(capsys, cli.main(["run", str(path), "--no-progress"]))
    flat = " ".join(err.split())
    assert "surge.yaml" in flat
    assert re.search(r"topology\.nodes: .*; .*network\.pool_size", flat), flat


def test_unknown_field_names_file_and_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = scenario_file(tmp_path, lambda d: d["topology"].update(nodez=3))
    err = assert_clean_error(capsys, cli.main(["run", str(path), "--no-progress"]))
    assert "surge.yaml" in err and "nodez" in err


def test_impossible_topology_is_refused_before_the_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = scenario_file(tmp_path, lambda d: d.update(redis=None))  # global layers, no Redis
    err = assert_clean_error(capsys, cli.main(["run", str(path), "--no-progress"]))
    flat = " ".join(err.split())
    assert "surge.yaml" in flat and "policy.layers" in flat and "redis" in flat
    assert not (tmp_path / "out").exists()


def test_yaml_syntax_error_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ntopology: [unclosed\n")
    err = assert_clean_error(capsys, cli.main(["run", str(path)]))
    assert "broken.yaml" in err


@pytest.mark.parametrize(
    ("name", "scale", "duration"),
    [("exchange-surge", "0.01", "2"), ("clock-skew", "0.1", "3")],  # the second one rejects
)
def test_run_small_builtin_end_to_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, scale: str, duration: str
) -> None:
    out_dir = tmp_path / name
    argv = ["run", name, "--seed", "3", "--scale", scale, "--duration", duration]
    code = cli.main([*argv, "--out", str(out_dir), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    for file in ("requests.parquet", "timeseries.parquet", "summary.csv", "timeline.png"):
        assert (out_dir / file).stat().st_size > 0, file
    requests = pd.read_parquet(out_dir / "requests.parquet")
    summary = pd.read_csv(out_dir / "summary.csv")
    n, admitted = len(requests), int(requests["admitted"].sum())
    assert n > 0
    assert requests["time_us"].max() < float(duration) * 1e6
    # The printed totals agree with the rows written, counted here independently.
    assert f"Totals: arrivals {n:,}, admitted {admitted:,}" in out
    assert f"rejected {n - admitted:,}" in out
    for layer in summary["layer"]:
        assert re.search(rf"^\s*{re.escape(str(layer))}\s", out, re.MULTILINE), layer
        # each layer's rejections in the table match the rows that name it
        rows = int((requests["rejected_by"] == layer).sum())
        assert int(summary.loc[summary["layer"] == layer, "rejected"].iloc[0]) == rows
    if name == "clock-skew":
        assert n - admitted > 0
    assert "Decision latency: p50 " in out
    assert "Oracle gap: over-admitted " in out
    assert str(out_dir) in out
    ts = pd.read_parquet(out_dir / "timeseries.parquet")
    assert {"arrivals", "admitted", "latency_p99_us"} <= set(ts.columns)
    assert int(ts["arrivals"].sum()) == n


def test_python_dash_m_ratesim_lists_scenarios() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ratesim", "scenarios"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "exchange-surge"


def test_run_a_yaml_file_writes_to_out_slash_name_by_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ratesim import scenarios

    monkeypatch.chdir(tmp_path)
    scenarios.get("clock-skew", scale=0.1).to_yaml(tmp_path / "skew.yaml")
    assert cli.main(["run", "skew.yaml", "--duration", "1", "--no-progress", "--no-plots"]) == 0
    out_dir = tmp_path / "out" / "clock-skew"
    assert (out_dir / "requests.parquet").is_file()
    assert not list(out_dir.glob("*.png"))
    assert "Scenario clock-skew" in capsys.readouterr().out


def test_seed_is_passed_to_the_simulation(tmp_path: Path) -> None:
    def arrivals(seed: str, out: str) -> pd.DataFrame:
        argv = ["run", "clock-skew", "--scale", "0.1", "--duration", "1", "--seed", seed]
        assert cli.main([*argv, "--out", str(tmp_path / out), "--no-progress", "--no-plots"]) == 0
        return pd.read_parquet(tmp_path / out / "requests.parquet")[["time_us", "user", "node"]]

    first, again, other = arrivals("1", "a"), arrivals("1", "b"), arrivals("2", "c")
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(other)


def test_engine_option_gives_the_same_requests_and_names_the_engine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    base = ["run", "clock-skew", "--scale", "0.1", "--duration", "1", "--no-progress"]
    frames = {}
    for engine in ("event", "fast", "auto"):
        out = tmp_path / engine
        assert cli.main([*base, "--engine", engine, "--out", str(out), "--no-plots"]) == 0
        printed = capsys.readouterr().out
        ran = "event" if engine == "event" else "fast"  # auto picks fast for this scenario
        assert f"({ran} engine)" in printed.splitlines()[0]
        frames[engine] = pd.read_parquet(out / "requests.parquet")
    pd.testing.assert_frame_equal(frames["event"], frames["fast"])
    pd.testing.assert_frame_equal(frames["event"], frames["auto"])


def test_fast_engine_on_a_scenario_it_does_not_model_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ratesim import scenarios
    from ratesim.fast import support

    # the fast engine models every valid scenario now: pretend no rate kernel is compiled
    monkeypatch.setattr(support, "_rate_supported", lambda alg: False)
    scenarios.get("single-node-ideal").to_yaml(tmp_path / "sc.yaml")
    argv = ["run", str(tmp_path / "sc.yaml"), "--engine", "fast", "--out", str(tmp_path)]
    err = assert_clean_error(capsys, cli.main([*argv, "--no-progress"]))
    assert "fast engine does not model" in err and "algorithm" in err


def test_default_out_dir_uses_the_sanitised_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ratesim import scenarios

    monkeypatch.chdir(tmp_path)
    sc = scenarios.get("clock-skew", scale=0.05)
    sc.model_copy(update={"name": "../up/and away"}).to_yaml(tmp_path / "odd.yaml")
    argv = ["run", "odd.yaml", "--duration", "0.2", "--no-progress", "--no-plots"]
    assert cli.main(argv) == 0
    assert (tmp_path / "out" / "up_and_away" / "requests.parquet").is_file()
    assert not (tmp_path.parent / "up").exists()


def test_a_shown_run_says_what_it_does_after_the_bar(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["run", "clock-skew", "--scale", "0.05", "--duration", "1", "--no-plots"]
    assert cli.main([*argv, "--engine", "fast", "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    bar = err.index("simulating")
    oracle = err.index("running the oracle and comparing ...")
    writing = err.index(f"writing the results to {tmp_path / 'a'}/ ...")
    assert bar < oracle < writing
    # the compiled loop has run in this process now: the compile notice is not said again
    assert cli.main([*argv, "--engine", "fast", "--out", str(tmp_path / "b")]) == 0
    assert "preparing the compiled runner" not in capsys.readouterr().err
    assert cli.main([*argv, "--no-progress", "--out", str(tmp_path / "c")]) == 0
    assert "running the oracle" not in capsys.readouterr().err


def test_the_compile_notice_comes_before_the_bar_in_a_fresh_process(tmp_path: Path) -> None:
    import subprocess
    import sys

    argv = ["run", "clock-skew", "--scale", "0.05", "--duration", "1", "--no-plots"]
    code = "import sys; from ratesim import cli; sys.exit(cli.main(sys.argv[1:]))"
    done = subprocess.run(
        [sys.executable, "-c", code, *argv, "--engine", "fast", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.index("preparing the compiled runner") < done.stderr.index("simulating")


def test_run_requests_sample_and_none_write_the_same_aggregates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ratesim.sampling as sampling

    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 100)
    base = ["run", "exchange-surge", "--scale", "0.05", "--no-progress", "--no-plots"]
    outs = {}
    for kind in ("all", "sample", "none"):
        assert cli.main([*base, "--requests", kind, "--out", str(tmp_path / kind)]) == 0
        text = capsys.readouterr().out
        outs[kind] = text[text.index("Oracle gap") :].splitlines()[0]
    assert outs["all"] == outs["sample"] == outs["none"]  # the oracle line, same numbers
    full = pd.read_parquet(tmp_path / "all" / "requests.parquet")
    part = pd.read_parquet(tmp_path / "sample" / "requests.parquet")
    assert len(part) == 100 and part.index.name == "row"
    expect = full.iloc[part.index.to_numpy()].set_index(part.index)
    pd.testing.assert_frame_equal(part, expect)
    assert not (tmp_path / "none" / "requests.parquet").exists()
    for kind in ("sample", "none"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / kind / "timeseries.parquet"),
            pd.read_parquet(tmp_path / "all" / "timeseries.parquet"),
            check_exact=True,
        )
        for name in ("summary.csv", "vs_oracle.csv", "totals.json"):
            assert (tmp_path / kind / name).read_text() == (tmp_path / "all" / name).read_text()
