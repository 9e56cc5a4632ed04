"""Scenarios as data: YAML round trip, errors with file / field path / line, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_engine_helpers import make_scenario

import ratesim.scenarios as builtin
from ratesim.engine import simulate
from ratesim.policy import GcraSpec, LayerSpec, PolicySpec, TokenBucketSpec
from ratesim.scenario import Scenario, ScenarioError, TopologySpec, load_scenario
from ratesim.traffic import PoissonTraffic, PopulationSpec

MINIMAL = """\
name: tiny
duration_s: 2
topology:
  nodes: 2
  load_balancer: round_robin
policy:
  layers:
    - name: per_user
      algorithm: {kind: gcra, max_burst: 5, count_per_period: 10}
      scope: global
      key: "{user}"
traffic:
  kind: poisson
  rate_per_s: 50
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_minimal_yaml_loads_and_runs(tmp_path: Path) -> None:
    sc = load_scenario(write(tmp_path, MINIMAL))
    assert sc.topology.nodes == 2
    assert sc.policy.layers[0].algorithm.kind == "gcra"
    r = simulate(sc)
    assert r.totals["arrivals"] > 0


@pytest.mark.parametrize("name", builtin.names())
def test_builtins_round_trip_through_yaml(tmp_path: Path, name: str) -> None:
    sc = builtin.get(name, scale=0.5)
    p = tmp_path / f"{name}.yaml"
    sc.to_yaml(p)
    again = load_scenario(p)
    assert again == sc
    assert again.to_yaml() == sc.to_yaml()


def test_unknown_field_names_file_path_and_line(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "  load_balancer: round_robin\n", "  load_balancer: round_robin\n  nodez: 3\n"
    )
    p = write(tmp_path, text, "bad.yaml")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    line = text.splitlines().index("  nodez: 3") + 1
    assert f"bad.yaml:{line}:" in msg
    assert "topology.nodez" in msg
    assert "unknown field" in msg


def test_wrong_type_inside_union_names_the_line(tmp_path: Path) -> None:
    text = MINIMAL.replace("rate_per_s: 50", "rate_per_s: lots")
    p = write(tmp_path, text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    msg = str(exc.value)
    line = text.splitlines().index("  rate_per_s: lots") + 1
    assert f"s.yaml:{line}:" in msg and "rate_per_s" in msg


def test_unknown_algorithm_parameter_in_a_layer(tmp_path: Path) -> None:
    text = MINIMAL.replace("count_per_period: 10}", "count_per_period: 10, burts: 3}")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    msg = str(exc.value)
    assert "policy.layers[0].algorithm" in msg and "burts" in msg
    line = (
        text.splitlines().index(
            "      algorithm: {kind: gcra, max_burst: 5, count_per_period: 10, burts: 3}"
        )
        + 1
    )
    assert f":{line}:" in msg


def test_zero_nodes_refused_with_field_path(tmp_path: Path) -> None:
    text = MINIMAL.replace("nodes: 2", "nodes: 0")
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    assert "topology.nodes" in str(exc.value)
    with pytest.raises(ValueError):
        TopologySpec(nodes=0)


def test_global_layer_without_redis_refused(tmp_path: Path) -> None:
    text = MINIMAL + "redis: null\n"
    with pytest.raises(ScenarioError) as exc:
        load_scenario(write(tmp_path, text))
    msg = str(exc.value)
    assert "policy.layers[0]" in msg and "no redis" in msg
    # the message points at the layer's line in the file
    line = text.splitlines().index("    - name: per_user") + 1
    assert f":{line}:" in msg


def test_tier_not_in_population_refused() -> None:
    layer = LayerSpec(
        name="t",
        algorithm=GcraSpec(max_burst=1, count_per_period=1),
        tiers={"diamond": {"max_burst": 5}},
    )
    with pytest.raises(ValueError, match="diamond"):
        make_scenario([layer], population=PopulationSpec(tiers={"silver": 1.0}))


def test_clock_list_must_match_nodes() -> None:
    from ratesim.model.clock import ClockSpec

    with pytest.raises(ValueError, match="clock specs for 3 nodes"):
        TopologySpec(nodes=3, clocks=[ClockSpec(), ClockSpec()])


def test_node_only_scenario_needs_no_redis() -> None:
    sc = Scenario(
        name="local-only",
        duration_s=1.0,
        redis=None,
        policy=PolicySpec(
            layers=[LayerSpec(name="tb", algorithm=TokenBucketSpec(rate=10, burst=5), key="*")]
        ),
        traffic=PoissonTraffic(rate_per_s=100.0),
    )
    r = simulate(sc)
    assert r.totals["admitted"] <= 5 + 10 * 1.0


def test_bad_yaml_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"s\.yaml:\d+: not valid YAML"):
        load_scenario(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_scenario_error_is_value_error() -> None:
    assert issubclass(ScenarioError, ValueError)


def test_builtin_names_and_scale() -> None:
    names = builtin.names()
    assert names[0] == "exchange-surge"
    assert {"single-node-ideal", "clock-skew", "redis-saturation"} <= set(names)
    small, big = builtin.get("exchange-surge"), builtin.get("exchange-surge", scale=4.0)
    assert big.traffic.base_rate_per_s == pytest.approx(4 * small.traffic.base_rate_per_s)  # type: ignore[union-attr]
    site_small = small.policy.layer("site_orders").algorithm
    site_big = big.policy.layer("site_orders").algorithm
    assert site_big.count_per_period == 4 * site_small.count_per_period  # type: ignore[union-attr]
    with pytest.raises(ScenarioError, match="unknown built-in"):
        builtin.get("nope")
    with pytest.raises(ValueError, match="scale"):
        builtin.get("exchange-surge", scale=0)


def test_exchange_surge_matches_the_digest() -> None:
    sc = builtin.get("exchange-surge")
    layers = {layer.name: layer for layer in sc.policy.layers}
    assert layers["node_bucket"].scope == "node" and layers["node_bucket"].mode == "shadow"
    window = layers["user_window"]
    assert window.scope == "global" and window.algorithm.kind == "sliding_log"
    assert (window.algorithm.limit, window.algorithm.window_s) == (3000, 60.0)  # type: ignore[union-attr]
    tiers = layers["tier_quota"]
    assert tiers.algorithm_for("platinum").count_per_period == 5000  # type: ignore[attr-defined]
    assert tiers.algorithm_for("platinum").max_burst == 2000  # type: ignore[attr-defined]
    assert tiers.algorithm_for("gold").count_per_period == 1000  # type: ignore[attr-defined]
    assert tiers.algorithm_for("silver").max_burst == 100  # type: ignore[attr-defined]
    assert sc.traffic.peak_factor == 17.3  # type: ignore[union-attr]
    assert sc.network.pool_size == 200 and sc.network.pool_max_wait_ms == 500
    assert all(layer.timeout_ms == 100 for layer in sc.policy.layers if layer.scope == "global")
    assert yaml.safe_load(sc.to_yaml())["name"] == "exchange-surge"


def test_shipped_flagship_yaml_equals_the_builtin() -> None:
    path = Path(builtin.__file__).parent / "exchange-surge.yaml"
    assert load_scenario(path) == builtin.get("exchange-surge")


@pytest.mark.parametrize("name", builtin.names())
def test_builtins_pass_the_run_size_check(name: str) -> None:
    """The estimate must not refuse ordinary runs: each built-in at scale 1 needs well under a
    GiB (the flagship: about 0.5 M requests, measured at 0.35 GB above the interpreter)."""
    from ratesim.budget import check_run_size, estimate_run_size

    sc = builtin.get(name)
    check_run_size(sc, max_bytes=2**30)
    assert estimate_run_size(sc).horizon_us < 2**40
