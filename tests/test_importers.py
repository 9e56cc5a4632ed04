"""Every importer on realistic configs (written from each project's documented examples, under
``tests/data/configs/``) and on broken ones, each with the message it must give."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ratesim.cli import main
from ratesim.importers import ConfigError, guess_kind, load
from ratesim.policy import PolicySpec
from ratesim.scenario import ScenarioError

CONFIGS = Path(__file__).parent / "data" / "configs"


def layers(path: str, **options: object) -> dict[str, object]:
    return {layer.name: layer for layer in load(CONFIGS / path, **options).policy.layers}


def test_envoy_ratelimit_readme() -> None:
    imp = load(CONFIGS / "envoy-ratelimit-readme.yaml")
    assert imp.kind == "envoy-ratelimit"
    got = {x.name: x for x in imp.policy.layers}
    assert list(got) == ["database_users", "remote_address"]  # widest first
    db, ip = got["database_users"], got["remote_address"]
    assert db.algorithm.model_dump() == {
        "kind": "counting_fixed_window", "limit": 500, "window_s": 1.0}  # fmt: skip
    assert (db.key, ip.key) == ("*", "{user}")
    assert db.scope == "global" and db.failure_mode == "open" and db.timeout_ms == 20
    # The blocked address (requests_per_unit: 0) only concerns that one IP.
    assert any("50.0.0.5" in n and "not simulated" in n for n in imp.notes)
    assert imp.state_per["remote_address"].startswith("shared Redis")


def test_envoy_ratelimit_nested_names_shadow_and_units() -> None:
    got = layers("envoy-ratelimit-nested.yaml")
    assert list(got) == ["global-budget", "destination_cluster_mock_source_cluster_proxy",
                         "user_id"]  # fmt: skip
    nested = got["destination_cluster_mock_source_cluster_proxy"]
    assert nested.mode == "shadow" and nested.algorithm.window_s == 3600
    assert got["user_id"].algorithm.limit == 10 and got["user_id"].mode == "enforce"


def test_envoy_local_docs_example_continuous_and_timer() -> None:
    cont = layers("envoy-local-docs.yaml")["http_local_rate_limiter"]
    assert cont.algorithm.model_dump() == {
        "kind": "token_bucket", "rate": 2.0, "burst": 10, "refill": "continuous",
        "fill_interval_s": None}  # fmt: skip
    assert cont.scope == "node" and cont.mode == "enforce"
    timer = layers("envoy-local-docs.yaml", refill="timer")["http_local_rate_limiter"]
    assert timer.algorithm.refill == "ticker" and timer.algorithm.fill_interval_s == 1.0


def test_envoy_local_descriptors_in_a_bootstrap() -> None:
    imp = load(CONFIGS / "envoy-local-descriptors.yaml")
    names = [x.name for x in imp.policy.layers]
    # Slowest descriptor bucket first (10/min, then 100/min), then the default bucket
    # (always_consume_default_token_bucket). filter_enforced unset: 0%, i.e. shadow.
    assert names[-1] == "http_local_rate_limiter"
    assert [x.algorithm.burst for x in imp.policy.layers] == [10, 100, 1000]
    assert {x.mode for x in imp.policy.layers} == {"shadow"}


def test_envoy_local_cluster_members() -> None:
    text = (CONFIGS / "envoy-local-docs.yaml").read_text() + "  local_cluster_rate_limit: {}\n"
    path = CONFIGS.parent / "tmp-envoy-local-cluster.yaml"
    try:
        path.write_text(text)
        layer = load(path, "envoy-local", members=3).policy.layers[0]
    finally:
        path.unlink()
    assert layer.algorithm.rate == 1.0  # ceil(2 / 3) = 1 token per second
    assert layer.local_share is None  # a fixed member count: divided once


def _envoy_local_cluster(tmp_path: Path, bucket: str, **options: object) -> object:
    """The docs' filter with ``local_cluster_rate_limit`` and ``bucket`` as its token_bucket."""
    text = (CONFIGS / "envoy-local-docs.yaml").read_text()
    text = text.replace(
        "    max_tokens: 10\n    tokens_per_fill: 2\n    fill_interval: 1s\n", bucket
    )
    path = tmp_path / "envoy-local-cluster.yaml"
    path.write_text(text + "  local_cluster_rate_limit: {}\n")
    return load(path, "envoy-local", **options)


def test_envoy_local_cluster_follows_the_live_nodes(tmp_path: Path) -> None:
    """Without members=, the whole tokens_per_fill with local_share: follow: each simulated
    node refills ceil(tokens_per_fill / live nodes), following topology.changes."""
    bucket = "    max_tokens: 10\n    tokens_per_fill: 2\n    fill_interval: 1s\n"
    imp = _envoy_local_cluster(tmp_path, bucket)
    (layer,) = imp.policy.layers
    assert layer.local_share == "follow" and layer.scope == "node"
    assert (layer.algorithm.rate, layer.algorithm.burst) == (2.0, 10)  # max_tokens not divided
    assert any("live nodes" in n for n in imp.notes)
    timer = _envoy_local_cluster(tmp_path, bucket, refill="timer").policy.layers[0]
    assert timer.local_share == "follow" and timer.algorithm.fill_interval_s == 1.0


def test_envoy_local_cluster_continuous_needs_whole_tokens_per_second(tmp_path: Path) -> None:
    # 1 token per 0.3 s is 3.33/s: a continuous follow bucket shares whole tokens per second.
    bucket = "    max_tokens: 10\n    tokens_per_fill: 1\n    fill_interval: 0.3s\n"
    with pytest.raises(ConfigError) as err:
        _envoy_local_cluster(tmp_path, bucket)
    assert "envoy-local-cluster.yaml:6" in str(err.value) and "whole" in str(err.value)
    # The timer refill shares tokens per fill instead: fine.
    layer = _envoy_local_cluster(tmp_path, bucket, refill="timer").policy.layers[0]
    assert layer.local_share == "follow" and layer.algorithm.fill_interval_s == 0.3


def test_nginx_conf_locations_and_inheritance() -> None:
    imp = load(CONFIGS / "nginx.conf")
    got = {x.name: x for x in imp.policy.layers}
    assert list(got) == ["one", "perip", "perserver", "slow"]
    one = got["one"]
    assert one.algorithm.model_dump() == {
        "kind": "nginx_leaky", "rate": 1, "unit": "s", "burst": 5, "nodelay": False, "delay": 0}  # fmt: skip
    assert one.routes == ["/search/"] and one.key == "{user}" and one.scope == "node"
    assert got["perserver"].key == "*"  # $server_name: one counter per server
    assert got["perip"].algorithm.nodelay and got["perip"].routes == ["/api/"]
    assert got["slow"].mode == "shadow" and got["slow"].algorithm.unit == "m"  # dry run
    assert any("holds each such request for its delay" in n for n in imp.notes)
    assert imp.state_per["one"] == "nginx host"


def test_traefik_yaml_toml_and_crd() -> None:
    got = layers("traefik-dynamic.yaml")
    six = got["six-per-minute"].algorithm
    assert (six.kind, six.rate, six.burst, six.max_delay_s) == ("reserve_bucket", 0.1, 1, 0.5)
    hundred = got["test-ratelimit"].algorithm
    assert hundred.max_delay_s == 1 / (2 * 100)  # 5 ms
    toml = layers("traefik-dynamic.toml")["test-ratelimit"]
    assert toml.algorithm.burst == 200 and toml.scope == "node"
    crd = layers("traefik-crd.yaml")["test-ratelimit"]
    assert crd.scope == "global" and crd.failure_mode == "closed" and crd.algorithm.burst == 50


def test_kong_local_redis_and_route_scoped() -> None:
    local = layers("kong.yaml")
    assert list(local) == ["kong-minute", "kong-second"]
    assert local["kong-minute"].algorithm.model_dump() == {
        "kind": "calendar_window", "limit": 10, "unit": "minute", "count_rejected": False}  # fmt: skip
    assert local["kong-minute"].scope == "node"
    redis = layers("kong-redis.yaml")
    assert redis["kong-month"].algorithm.count_rejected is True
    assert redis["kong-month"].scope == "global" and redis["kong-month"].failure_mode == "closed"
    route = layers("kong-route.yaml")["kong-hour"]
    assert route.routes == ["/anything"] and route.key == "{route}"


def test_sentinel_rules() -> None:
    got = layers("sentinel-flow.json")
    assert list(got) == ["flow-GET_/hello", "flow-GET_/orders", "flow-GET_/warm",
                         "degrade-GET_/orders"]  # fmt: skip
    pacer = got["flow-GET_/hello"]
    assert pacer.algorithm.model_dump() == {
        "kind": "pacer", "count": 10, "max_queue_ms": 500, "resolution_us": 1000}  # fmt: skip
    assert pacer.routes == ["GET:/hello"]
    orders = got["flow-GET_/orders"]
    assert orders.algorithm.kind == "bucketed_window" and orders.algorithm.buckets == 2
    assert (orders.scope, orders.failure_mode, orders.local_share) == ("global", "local", 1.0)
    assert got["flow-GET_/warm"].algorithm.kind == "warm_up"
    br = got["degrade-GET_/orders"].algorithm
    assert (br.grade, br.threshold, br.max_rt_s, br.open_s) == ("slow_ratio", 0.5, 0.05, 10)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("envoy-ratelimit-readme.yaml", "envoy-ratelimit"),
        ("envoy-local-docs.yaml", "envoy-local"),
        ("envoy-local-descriptors.yaml", "envoy-local"),
        ("nginx.conf", "nginx"),
        ("traefik-dynamic.yaml", "traefik"),
        ("traefik-dynamic.toml", "traefik"),
        ("traefik-crd.yaml", "traefik"),
        ("kong.yaml", "kong"),
        ("sentinel-flow.json", "sentinel"),
    ],
)
def test_kind_is_guessed(name: str, kind: str) -> None:
    path = CONFIGS / name
    assert guess_kind(path, path.read_text()) == kind


BROKEN = [
    ("envoy-ratelimit-bad-unit.yaml", 5, "rate_limit.unit 'fortnight': must be one of second"),
    ("envoy-local-bad-interval.yaml", 4, "fill_interval 'soon': must be a duration"),
    ("nginx-include.conf", 2, "include /etc/nginx/conf.d/*.conf: includes are not followed"),
    ("nginx-bad-burst.conf", 5, 'limit_req burst=0: invalid burst value "0"'),
    ("nginx-bad-rate.conf", 2, "limit_req_zone rate=1.5r/s: invalid rate"),
    ("nginx-unknown-zone.conf", 5, "limit_req zone=two: unknown zone"),
    ("traefik-bad-period.yaml", 6, "period 'one minute': must be a duration"),
    ("kong-bad-order.yaml", 6, "config.minute: the limit for minute (10) cannot be lower"),
    ("sentinel-bad-behaviour.json", 6, "FlowRule controlBehavior 3 (warm-up + throttling)"),
    ("sentinel-bad-strategy.json", 3, "FlowRule strategy 1 on GET:/a: relate (1) and chain"),
]


@pytest.mark.parametrize(("name", "line", "message"), BROKEN)
def test_broken_configs_name_file_line_and_construct(name: str, line: int, message: str) -> None:
    path = CONFIGS / name
    with pytest.raises(ConfigError) as info:
        load(path)
    err = info.value
    assert isinstance(err, ScenarioError)
    assert str(err).startswith(f"{path}:{line}: {message}"), str(err)
    assert (err.line, err.path) == (line, str(path))


def test_unknown_kind_and_unguessable_file(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("hello: world\n")
    with pytest.raises(ConfigError, match="cannot tell which gateway"):
        load(f)
    with pytest.raises(ConfigError, match="kind 'haproxy': must be one of"):
        load(f, "haproxy")
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.conf", "nginx")


def test_nginx_syntax_errors(tmp_path: Path) -> None:
    f = tmp_path / "nginx.conf"
    f.write_text("http {\n  limit_req_zone $a zone=z:1m rate=1r/s\n}\n")
    with pytest.raises(ConfigError, match=r"nginx.conf:2: directive 'limit_req_zone': missing"):
        load(f)
    f.write_text("http {\n  server {\n")
    with pytest.raises(ConfigError, match="missing '}'"):
        load(f)


def test_cli_import_writes_a_policy_that_loads_back(tmp_path: Path, capsys) -> None:
    out = tmp_path / "policy.yaml"
    assert main(["import", "nginx", str(CONFIGS / "nginx.conf"), "-o", str(out)]) == 0
    data = yaml.safe_load(out.read_text())
    policy = PolicySpec.model_validate(data["policy"])
    assert [x.name for x in policy.layers] == ["one", "perip", "perserver", "slow"]
    assert policy == load(CONFIGS / "nginx.conf").policy
    assert "note:" in capsys.readouterr().err
    assert main(["import", "auto", str(CONFIGS / "kong.yaml")]) == 0
    assert "calendar_window" in capsys.readouterr().out


def test_cli_import_bad_config_exits_2(capsys) -> None:
    path = CONFIGS / "nginx-bad-burst.conf"
    assert main(["import", "nginx", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5: limit_req burst=0" in err and "Traceback" not in err


def test_kong_top_level_plugin_on_a_named_route(tmp_path: Path) -> None:
    f = tmp_path / "kong.yaml"
    f.write_text("_format_version: '3.0'\nplugins:\n  - name: rate-limiting\n"
                 "    route: checkout\n    config: {hour: 100}\n")  # fmt: skip
    assert load(f).policy.layers[0].routes == ["checkout"]
