"""Policy specs build the real algorithms; keys, tiers, scaling and bad input."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ratesim.algorithms import (
    GCRA,
    BucketedWindow,
    DoubleBufferedWindow,
    FixedWindow,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from ratesim.policy import (
    GcraSpec,
    LayerSpec,
    PolicySpec,
    SlidingLogSpec,
    TokenBucketSpec,
    build_local_algorithms,
    build_tier_algorithms,
    key_fields,
    render_key,
)

KINDS = [
    ({"kind": "gcra", "max_burst": 4, "count_per_period": 10}, GCRA),
    ({"kind": "token_bucket", "rate": 5.0, "burst": 3}, TokenBucket),
    ({"kind": "sliding_log", "limit": 7, "window_s": 2.0}, SlidingWindowLog),
    ({"kind": "sliding_counter", "limit": 7, "window_s": 2.0}, SlidingWindowCounter),
    ({"kind": "fixed_window", "limit": 7, "window_s": 2.0}, FixedWindow),
    ({"kind": "bucketed_window", "limit": 7, "window_s": 2.0, "buckets": 4}, BucketedWindow),
    (
        {
            "kind": "double_buffered",
            "limit": 7,
            "window_s": 2.0,
            "buckets": 4,
            "swap_interval_s": 0.5,
        },
        DoubleBufferedWindow,
    ),
]


@pytest.mark.parametrize(("data", "cls"), KINDS)
def test_every_kind_builds_the_real_algorithm(data: dict[str, object], cls: type) -> None:
    layer = LayerSpec.model_validate({"name": "x", "algorithm": data})
    alg = layer.algorithm.build()
    assert isinstance(alg, cls)
    state = alg.new_state()
    allowed, _, _, _ = alg.kernel(alg.params, state, 0, 1)
    assert allowed == 1


def test_gcra_spec_maps_to_cl_throttle_parameters() -> None:
    alg = GcraSpec(max_burst=5, count_per_period=10, period_s=60.0).build()
    assert isinstance(alg, GCRA)
    assert (alg.max_burst, alg.count_per_period, alg.period_s) == (5, 10, 60.0)
    assert alg.limit == 6


def test_tiers_override_parameters_per_tier() -> None:
    layer = LayerSpec(
        name="q",
        algorithm=GcraSpec(max_burst=100, count_per_period=200),
        tiers={"gold": {"max_burst": 500, "count_per_period": 1000}},
    )
    algs = build_tier_algorithms(layer, ("silver", "gold", "bronze"))
    assert [a.limit for a in algs] == [101, 501, 101]
    assert algs[0] is algs[2]  # tiers without an override share parameters
    assert algs[1].count_per_period == 1000  # type: ignore[attr-defined]


def test_bad_tier_override_refused() -> None:
    with pytest.raises(ValidationError, match="tiers.gold"):
        LayerSpec(
            name="q",
            algorithm=GcraSpec(max_burst=1, count_per_period=2),
            tiers={"gold": {"count_per_period": 0}},
        )
    with pytest.raises(ValidationError, match="tiers.gold"):
        LayerSpec(
            name="q",
            algorithm=GcraSpec(max_burst=1, count_per_period=2),
            tiers={"gold": {"rate": 5}},
        )


def test_key_templates() -> None:
    assert key_fields("*") == ()
    assert key_fields("{user}") == ("user",)
    assert key_fields("{tier}:{user}") == ("user", "tier")
    assert key_fields("rl:{route}") == ("route",)
    assert render_key("{tier}:{user}", 42, "gold", "/x") == "gold:42"
    for bad in ("{account}", "", "{user!r}", "{user:>5}", "{"):
        with pytest.raises(ValueError):
            key_fields(bad)
    with pytest.raises(ValidationError, match="account"):
        LayerSpec(name="x", algorithm=TokenBucketSpec(rate=1, burst=1), key="{account}")


def test_local_fallback_takes_a_share_of_the_limit() -> None:
    layer = LayerSpec(
        name="g",
        algorithm=TokenBucketSpec(rate=1000.0, burst=400),
        scope="global",
        failure_mode="local",
    )
    (local,) = build_local_algorithms(layer, ("silver",), nodes=4)
    assert isinstance(local, TokenBucket)
    assert (local.rate, local.burst) == (250.0, 100)
    shared = layer.model_copy(update={"local_share": 0.5})
    (half,) = build_local_algorithms(shared, ("silver",), nodes=4)
    assert (half.rate, half.burst) == (500.0, 200)  # type: ignore[attr-defined]
    window = SlidingLogSpec(limit=3, window_s=1.0).scaled(0.1)
    assert window.limit == 1  # never scaled to nothing


def test_policy_layer_names_unique_and_sane() -> None:
    tb = TokenBucketSpec(rate=1, burst=1)
    with pytest.raises(ValidationError, match="duplicate layer name"):
        PolicySpec(layers=[LayerSpec(name="a", algorithm=tb), LayerSpec(name="a", algorithm=tb)])
    with pytest.raises(ValidationError):
        LayerSpec(name="a:b", algorithm=tb)
    with pytest.raises(ValidationError):
        LayerSpec(name="a", algorithm=tb, mode="log-only")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        LayerSpec(name="a", algorithm=tb, local_share=0.0)
    with pytest.raises(ValidationError):
        LayerSpec(name="a", algorithm=tb, timeout_ms=0)


def test_layer_scaled_scales_every_tier() -> None:
    layer = LayerSpec(
        name="q",
        algorithm=GcraSpec(max_burst=100, count_per_period=200),
        tiers={"gold": {"max_burst": 500, "count_per_period": 1000}},
    )
    big = layer.scaled(3.0)
    assert big.algorithm_for("silver").count_per_period == 600  # type: ignore[attr-defined]
    assert big.algorithm_for("gold").count_per_period == 3000  # type: ignore[attr-defined]
    assert big.algorithm_for("gold").max_burst == 1500  # type: ignore[attr-defined]
