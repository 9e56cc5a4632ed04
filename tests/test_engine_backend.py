"""Concurrency-limit and circuit-breaker layers in front of the backend (DIGEST.md rows 6-7)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_engine_helpers import check_conservation, make_arrivals, make_scenario

from ratesim.engine import simulate as _simulate
from ratesim.model.backend import BackendSpec
from ratesim.model.latency import ConstantLatency
from ratesim.policy import BreakerSpec, ConcurrencySpec, LayerSpec, TokenBucketSpec
from ratesim.scenario import Scenario

ENGINE = "event"


@pytest.fixture(autouse=True, params=["event", "auto"])
def _engine(request: pytest.FixtureRequest) -> None:
    """Every model check runs on the event engine and on the engine ``simulate`` picks by
    default (the fast one here): both must pass it."""
    global ENGINE
    ENGINE = request.param


def simulate(*args: Any, **kw: Any) -> Any:
    kw.setdefault("engine", ENGINE)
    return _simulate(*args, **kw)


def with_backend(
    layers: list[LayerSpec], service_ms: float, load_factor: float = 0.0, **kw: object
) -> Scenario:
    backend = BackendSpec(
        servers=1, service_time=ConstantLatency(ms=service_ms), load_factor=load_factor
    )
    return make_scenario(layers, backend=backend, **kw)  # type: ignore[arg-type]


def conc_layer(max_in_flight: int, max_wait_s: float = 0.0) -> LayerSpec:
    return LayerSpec(
        name="conc",
        algorithm=ConcurrencySpec(max_in_flight=max_in_flight, max_wait_s=max_wait_s),
        key="*",
    )


def test_concurrency_limit_rejects_beyond_max_in_flight() -> None:
    sc = with_backend([conc_layer(2)], service_ms=10.0)
    r = simulate(sc, seed=0, arrivals=make_arrivals([0, 1000, 2000, 3000, 15_000]))
    check_conservation(r)
    # two in flight until 10 and 11 ms; the 3rd and 4th find both slots busy
    assert r.admitted.tolist() == [True, True, False, False, True]
    np.testing.assert_array_equal(r.requests["backend_rt_us"], [10_000, 10_000, -1, -1, 10_000])


def test_concurrency_wait_queue_hands_slots_over_fifo() -> None:
    sc = with_backend([conc_layer(2, max_wait_s=0.005)], service_ms=10.0)
    arr = make_arrivals([0, 1000, 6000, 7000, 8000])
    r = simulate(sc, seed=0, arrivals=arr)
    check_conservation(r)
    # completions at 10 ms and 11 ms hand their slots to the waiters of 6 ms and 7 ms;
    # the waiter of 8 ms would need the next one (20 ms) and gives up after 5 ms
    assert r.admitted.tolist() == [True, True, True, True, False]
    np.testing.assert_array_equal(r.latency_us, [0, 0, 4000, 4000, 5000])
    np.testing.assert_array_equal(r.requests["backend_rt_us"], [10_000, 10_000, 14_000, 14_000, -1])


def test_slot_released_when_a_later_layer_rejects() -> None:
    later = LayerSpec(name="tb", algorithm=TokenBucketSpec(rate=0.001, burst=1), key="*")
    sc = with_backend([conc_layer(1), later], service_ms=10.0)
    r = simulate(sc, seed=0, arrivals=make_arrivals([0, 20_000, 21_000, 40_000]))
    check_conservation(r)
    # request 1 takes the slot, is rejected by "tb" and must give the slot back at once,
    # so request 2 (1 ms later) gets past the concurrency layer (and is rejected by tb too)
    assert r.requests["layer:conc"].astype(str).tolist() == ["allowed"] * 4
    assert r.requests["rejected_by"].tolist() == [None, "tb", "tb", "tb"]


def test_slow_call_breaker_trips_waits_and_probes() -> None:
    breaker = LayerSpec(
        name="cb",
        algorithm=BreakerSpec(
            grade="slow_ratio",
            threshold=0.5,
            max_rt_s=0.05,
            min_requests=5,
            stat_interval_s=1.0,
            open_s=2.0,
        ),
        key="*",
    )
    sc = with_backend([breaker], service_ms=100.0, duration_s=3.0)
    t = np.arange(300) * 10_000  # every 10 ms for 3 s; every call takes 100 ms (slow)
    r = simulate(sc, seed=0, arrivals=make_arrivals(t))
    check_conservation(r)
    # the 5th completion (request at 40 ms, done at 140 ms) trips it: 5/5 slow > 50 %.
    # Arrivals up to 140 ms pass (arrivals go before completions at one instant), then OPEN
    # for 2 s: the arrival at 2140 ms is the probe; it is slow too, so OPEN again to the end.
    expected = (t <= 140_000) | (t == 2_140_000)
    np.testing.assert_array_equal(r.admitted, expected)
    assert r.summary.set_index("layer").loc["cb", "rejected"] == 300 - expected.sum()


def test_backend_slows_with_load() -> None:
    # one server: the k-th concurrent request takes k times the base
    sc = with_backend([conc_layer(10)], service_ms=10.0, load_factor=1.0)
    r = simulate(sc, seed=0, arrivals=make_arrivals([0, 1000, 2000]))
    check_conservation(r)
    np.testing.assert_array_equal(r.requests["backend_rt_us"], [10_000, 20_000, 30_000])


def test_guard_layers_need_a_backend_and_node_scope() -> None:
    with pytest.raises(ValueError, match="no backend"):
        make_scenario([conc_layer(2)])
    with pytest.raises(ValueError, match="scope 'node'"):
        LayerSpec(name="c", algorithm=ConcurrencySpec(max_in_flight=1), scope="global", key="*")


def test_a_waiter_moved_on_to_a_later_layer_ignores_the_first_layers_timeout() -> None:
    """W waits for conc1, is handed A's slot at 4 ms, then waits for conc2 (held by X, who was
    handed A's other slot the same instant); conc1's timeout for W (6 ms) must not touch W,
    who gets conc2 when X completes at 8 ms. (A regression: the engines once took that stale
    timeout for a live wait, rejected W at conc1 and left conc2 counting a ghost waiter.)"""
    conc1 = LayerSpec(
        name="conc1", algorithm=ConcurrencySpec(max_in_flight=1, max_wait_s=0.005), key="{user}"
    )
    conc2 = LayerSpec(
        name="conc2", algorithm=ConcurrencySpec(max_in_flight=1, max_wait_s=0.008), key="*"
    )
    sc = with_backend([conc1, conc2], service_ms=4.0)
    r = simulate(sc, seed=0, arrivals=make_arrivals([0, 1000, 2000], users=[0, 0, 1]))
    check_conservation(r)
    assert r.admitted.tolist() == [True, True, True]  # A, W, X
    np.testing.assert_array_equal(r.latency_us, [0, 7000, 2000])
    np.testing.assert_array_equal(r.requests["backend_rt_us"], [4000, 11_000, 6000])
