"""``ratesim validate``: the suite loader's errors, the runner, the report, the CLI, --redis.

Expected numbers are derived here from the scenario arithmetic, never read back from a run.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

import ratesim
from ratesim import scenarios
from ratesim.cli import main
from ratesim.validate import SuiteError, load_suite
from ratesim.validate.rules import Context, parse_rule

SEED_POLICY = scenarios.get("exchange-surge").policy
#: The surge and a Redis failover mid-surge, small: the seed's policy must pass it.
SURGE_AND_FAILOVER = {
    "replications": 3,
    "seed": 1,
    "confidence": 0.95,
    "scenarios": [
        {
            "builtin": "exchange-surge",
            "name": "surge",
            "scale": 0.05,
            "duration_s": 20,
            "assertions": ["over_admitted_pct < 3", "fail_open_pct < 1"],
        },
        {
            "builtin": "exchange-surge",
            "name": "failover",
            "scale": 0.05,
            "duration_s": 20,
            "set": {"redis.failovers": [{"at_s": 12.0, "lost_writes_ms": 500.0}]},
            "assertions": ["fail_closed_pct < 1", "never_engages: [node_bucket]"],
        },
    ],
}


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _policy_file(tmp_path: Path, policy: ratesim.PolicySpec) -> Path:
    return _write(tmp_path, "policy.yaml", {"policy": policy.model_dump(mode="json")})


# --- the suite loader -------------------------------------------------------------------------

BAD_SUITES = [
    # (suite text, line, field, reason)
    ("replications: 0\nscenarios:\n  - builtin: clock-skew\n    assertions: [x < 1]\n",
     1, "replications", "greater than or equal to 1"),
    ("replications: 1000\nscenarios:\n  - builtin: clock-skew\n    assertions: [x < 1]\n",
     1, "replications", "less than or equal to 100"),
    ("scenarios:\n  - builtin: clock-skew\n    scale: 50\n    assertions: [x < 1]\n",
     3, "scenarios[0].scale", "less than or equal to 10"),
    ("scenarios:\n  - builtin: nope\n    assertions: [x < 1]\n",
     2, "scenarios[0].builtin", "unknown built-in scenario 'nope'"),
    ("scenarios:\n  - builtin: clock-skew\n    assertions:\n      - over_admitted_pct <<< 1\n",
     4, "scenarios[0].assertions[0]", "expected '<metric> <op> <number>'"),
    ("scenarios:\n  - builtin: clock-skew\n    sizes: 3\n    assertions: [x < 1]\n",
     3, "scenarios[0].sizes", "unknown field 'sizes'"),
    ("scenarios:\n  - file: missing.yaml\n    assertions: [x < 1]\n",
     2, "scenarios[0].file", "does not exist"),
    ("scenarios:\n  - builtin: clock-skew\n", 2, "scenarios[0]", "no assertion to check"),
    ("scenarios:\n  - builtin: clock-skew\n    assertions:\n      - never_engages: []\n",
     4, "scenarios[0].assertions[0]", "non-empty list of layer names"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "field", "reason"), BAD_SUITES)
def test_bad_suites_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, reason: str
) -> None:
    path = _write(tmp_path, "suite.yaml", text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert f"{path}:{line}: {field}" in str(err.value)
    assert reason in str(err.value)


def test_scenario_count_is_bounded(tmp_path: Path) -> None:
    many = {"scenarios": [{"builtin": "clock-skew", "name": f"s{i}", "assertions": ["x < 1"]}
                          for i in range(51)]}  # fmt: skip
    with pytest.raises(SuiteError, match="scenarios: List should have at most 50 items"):
        load_suite(_write(tmp_path, "suite.yaml", many))


def test_unknown_metric_is_refused_before_any_run(tmp_path: Path) -> None:
    suite = _write(
        tmp_path,
        "suite.yaml",
        "scenarios:\n  - builtin: clock-skew\n    policy: own\n    assertions:\n"
        "      - first_trip(no_such_layer) > 1\n",
    )
    with pytest.raises(SuiteError, match=rf"{suite}:5: scenarios\[0\]\.assertions\[0\]: .*"
                       r"no metric 'first_trip_s:no_such_layer'.*site_gcra"):  # fmt: skip
        ratesim.validate(None, suite, progress=False)


def test_cli_bad_suite_exits_2_with_file_line_field(tmp_path: Path, capsys) -> None:
    suite = _write(tmp_path, "suite.yaml", BAD_SUITES[2][0])
    code = main(["validate", str(_policy_file(tmp_path, SEED_POLICY)), "--suite", str(suite)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{suite}:3: scenarios[0].scale" in err and "Traceback" not in err


def test_cli_bad_policy_exits_2_naming_its_line(tmp_path: Path, capsys) -> None:
    policy = _write(
        tmp_path,
        "policy.yaml",
        "policy:\n  layers:\n    - name: x\n      algorithm: {kind: nope}\n",
    )
    code = main(["validate", str(policy), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{policy}:4: policy.layers[0].algorithm" in err and "Traceback" not in err


# --- the rules on the confidence bound ---------------------------------------------------------


def _ctx(frame: dict[str, list[float]], layers: list[str], duration_s: float = 30.0) -> Context:
    return Context(pd.DataFrame(frame), layers, 0.95, duration_s)


def test_degradation_order_checks_paired_gaps_on_the_lower_bound() -> None:
    rule = parse_rule("degradation_order == [a, b]")
    # b trips 1.5, 2, 2.5 s after a: mean gap 2, sd 0.5, lower bound 2 - t(.975, 2) 0.5 / sqrt 3
    ctx = _ctx({"first_trip_s:a": [5.0, 5.0, 5.0], "first_trip_s:b": [6.5, 7.0, 7.5],
                "first_trip_s:c": [math.nan] * 3}, ["a", "b", "c"])  # fmt: skip
    (row,) = rule.evaluate(ctx)
    low = 2.0 - stats.t.ppf(0.975, 2) * 0.5 / math.sqrt(3)
    assert low > 0
    assert row.passed and row.mean == pytest.approx(2.0) and row.ci_low == pytest.approx(low)
    # a gap of -1, 2, 5 s: mean 2 but the lower bound is below 0
    ctx = _ctx({"first_trip_s:a": [5.0, 5.0, 5.0], "first_trip_s:b": [4.0, 7.0, 10.0],
                "first_trip_s:c": [math.nan] * 3}, ["a", "b", "c"])  # fmt: skip
    assert not rule.evaluate(ctx)[0].passed
    # c also trips: the order is not exactly [a, b]
    ctx = _ctx({"first_trip_s:a": [5.0] * 3, "first_trip_s:b": [6.0, 7.0, 8.0],
                "first_trip_s:c": [9.0, math.nan, math.nan]}, ["a", "b", "c"])  # fmt: skip
    (row,) = rule.evaluate(ctx)
    assert not row.passed and "c also trips" in row.detail


def test_never_engages_fails_on_one_trip_in_one_replication() -> None:
    rule = parse_rule({"never_engages": ["a", "b"]})
    rows = rule.evaluate(_ctx({"trips:a": [0, 0, 0], "trips:b": [0, 1, 0]}, ["a", "b"]))
    assert [r.passed for r in rows] == [True, False]
    assert "b trips in 1 of 3 replications" in rows[1].detail


# --- the runner, the report and the CLI -------------------------------------------------------


def test_seed_policy_passes_surge_and_failover_and_writes_the_report(
    tmp_path: Path, capsys
) -> None:
    suite = _write(tmp_path, "suite.yaml", SURGE_AND_FAILOVER)
    out = tmp_path / "report"
    code = main(["validate", str(_policy_file(tmp_path, SEED_POLICY)), "--suite", str(suite),
                 "--report", str(out), "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "all assertions pass" in printed and "FAIL" not in printed
    table = pd.read_csv(out / "results.csv")
    # one row per scenario x assertion: 2 + 2 (never_engages of one layer is one row)
    assert list(table["scenario"]) == ["surge", "surge", "failover", "failover"]
    assert table["passed"].all()
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 2 * 3
    # common random numbers: replication r of both scenarios ran with the same seed
    seeds = runs.pivot(index="replication", columns="scenario", values="seed")
    assert (seeds["surge"] == seeds["failover"]).all()
    report_md = (out / "report.md").read_text()
    assert "surge-timeline.png" in report_md and (out / "surge-timeline.png").stat().st_size > 0
    assert "**PASS**" in report_md


def _policy_with_site_orders(count: int, burst: int) -> ratesim.PolicySpec:
    data = SEED_POLICY.model_dump()
    site = next(la for la in data["layers"] if la["name"] == "site_orders")
    site["algorithm"].update(count_per_period=count, max_burst=burst)
    return ratesim.PolicySpec.model_validate(data)


def test_a_threshold_that_lets_the_surge_through_exits_1_naming_the_assertion(
    tmp_path: Path, capsys
) -> None:
    # exchange-surge at scale S offers 2000*S/s at the base, 17.3x at the peak, 10% of it on
    # /api/v3/order: at S = 0.05, 100 * 17.3 * 0.1 = 173 orders/s at the peak. The built-in's
    # site_orders at that scale is 2000*S = 100/s, so it trips in the surge. A threshold of
    # 1000/s (burst 999) is above the peak: the layer never trips, the surge goes through.
    peak_orders = 2000 * 0.05 * 17.3 * 0.1
    suite = {"replications": 2, "scenarios": [
        {"builtin": "exchange-surge", "scale": 0.05, "duration_s": 20, "policy": "under-test",
         "assertions": ["first_trip(site_orders) < 15"]}]}  # fmt: skip
    broken = _policy_with_site_orders(1000, 999)
    assert broken.layers[3].algorithm.count_per_period > peak_orders
    code = main(["validate", str(_policy_file(tmp_path, broken)), "--suite",
                 str(_write(tmp_path, "suite.yaml", suite)), "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 1
    assert "FAIL" in printed and "first_trip(site_orders) < 15" in printed
    report = ratesim.validate(_policy_with_site_orders(100, 49), suite, progress=False)
    assert report.passed, report.format_table()


def test_standard_suite_is_used_without_suite_and_the_seed_policy_passes() -> None:
    report = ratesim.validate(SEED_POLICY, progress=False)
    names = list(dict.fromkeys(report.table["scenario"]))
    assert names == ["surge", "redis-outage", "redis-failover", "clock-skew"]
    assert report.passed, report.format_table()
    # the seed's own clock-skew GCRA (client time, clocks 250 ms apart) does not pass it
    own = ratesim.validate(scenarios.get("clock-skew", scale=0.5), progress=False)
    assert not own.passed


# --- --redis: the compat-layer replay's parity ------------------------------------------------


def test_redis_reports_parity_per_scenario(tmp_path: Path, redis_url: str, capsys) -> None:
    suite = {"replications": 2, "scenarios": [
        {"builtin": "exchange-surge", "name": "surge", "scale": 0.02, "duration_s": 12,
         "assertions": ["fail_open_pct < 1"]},
        {"builtin": "clock-skew", "name": "skew", "scale": 0.1, "duration_s": 5,
         "assertions": ["fail_open_pct < 1"]}]}  # fmt: skip
    out = tmp_path / "r"
    code = main(["validate", str(_policy_file(tmp_path, SEED_POLICY)), "--suite",
                 str(_write(tmp_path, "suite.yaml", suite)), "--redis", redis_url,
                 "--report", str(out), "--no-progress"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    parity = pd.read_csv(out / "parity.csv")
    assert list(parity["scenario"]) == ["surge", "skew"]
    assert parity["identical"].all() and (parity["differing"] == 0).all()
    # every arrival of the first replication was decided on the Redis
    report = ratesim.validate(SEED_POLICY, suite, redis_url=redis_url, progress=False)
    for label, result in report.results.items():
        n = len(result.requests)
        assert n > 0
        assert report.parity.set_index("scenario").loc[label, "decisions"] == n
    assert report.table["redis_parity"].str.startswith("identical").all()


def test_redis_unreachable_is_bad_input(tmp_path: Path, capsys) -> None:
    from tests.conftest import free_port

    code = main(["validate", str(_policy_file(tmp_path, SEED_POLICY)), "--suite",
                 str(_write(tmp_path, "suite.yaml", SURGE_AND_FAILOVER)), "--redis",
                 f"redis://127.0.0.1:{free_port()}/0", "--no-progress"])  # fmt: skip
    assert code == 2
    assert "no Redis answers there" in capsys.readouterr().err


def test_interval_matches_student_t() -> None:
    from ratesim.validate.rules import _interval

    x = np.array([1.0, 2.0, 4.0])
    mean, low, high = _interval(x, 0.9)
    half = stats.t.ppf(0.95, 2) * x.std(ddof=1) / math.sqrt(3)
    assert (mean, low, high) == pytest.approx((x.mean(), x.mean() - half, x.mean() + half))


def test_from_kind_and_a_scenario_file_as_policy(tmp_path: Path, capsys) -> None:
    """--from names the importer; a scenario YAML stands for its own policy."""
    from ratesim import gallery

    d = gallery.path("nginx-rpm-small-burst")
    code = main(["validate", str(d / "fixed.conf"), "--from", "nginx", "--suite",
                 str(d / "suite.yaml"), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    # the same file read as another gateway's config is bad input naming the file
    code = main(["validate", str(d / "fixed.conf"), "--from", "kong", "--suite",
                 str(d / "suite.yaml"), "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and str(d / "fixed.conf") in err and "Traceback" not in err
    scenario = tmp_path / "skew.yaml"
    scenarios.get("clock-skew").to_yaml(scenario)
    # the file's world at scale 1 (3000/s against its 1000/s GCRA), its policy dropped in
    suite = {"replications": 2, "scenarios": [{"builtin": "clock-skew", "duration_s": 5,
             "assertions": ["over_admitted_pct < 2"]}]}  # fmt: skip
    report = ratesim.validate(scenario, suite, progress=False)
    assert report.policy == f"the policy of scenario {scenario}"
    # clocks 250 ms apart on a client-time GCRA: far more than 2% over the ideal
    assert not report.passed


def test_a_run_too_large_is_refused_at_its_scenario(tmp_path: Path) -> None:
    suite = _write(tmp_path, "suite.yaml", "scenarios:\n  - builtin: exchange-surge\n"
                   "    scale: 10\n    duration_s: 3600\n    policy: own\n"
                   "    assertions: [admitted > 0]\n")  # fmt: skip
    with pytest.raises(SuiteError, match=rf"{suite}:2: scenarios\[0\]: .*too large to run"):
        ratesim.validate(None, suite, progress=False)


def test_available_metrics_are_the_columns_a_run_has() -> None:
    """The names checked before any run are exactly the metric keys of a real run."""
    from ratesim.experiments import first_trip_metrics, standard_metric_names, standard_metrics
    from ratesim.validate.metrics import available, validate_metrics

    sc = scenarios.get("exchange-surge", scale=0.02)
    result = ratesim.simulate(sc.model_copy(update={"duration_s": 2.0}), seed=3)
    layers = result.layer_names
    assert standard_metric_names(layers) == list(standard_metrics(result))
    got = {**standard_metrics(result), **first_trip_metrics(result), **validate_metrics(result)}
    assert sorted(available(layers)) == sorted(got)
    # trips: every request a layer's limit said no to, here only shadow rejections and rejections
    summary = result.summary.set_index("layer")
    for name in layers:
        assert got[f"trips:{name}"] == (
            summary.loc[name, "rejected"] + summary.loc[name, "shadow_rejected"]
            + summary.loc[name, "local_rejected"]
        )  # fmt: skip
