"""Imported configs run with their gateway's semantics: each test derives the expected numbers
from the gateway's documented behaviour, then runs the imported policy through
``ratesim.simulate(..., engine="event")`` on hand-made arrivals (or ``MemoryStore``)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
from test_engine_helpers import check_conservation, make_arrivals, make_scenario

from ratesim import simulate
from ratesim.importers import load
from ratesim.model.backend import BackendSpec
from ratesim.model.latency import ConstantLatency
from ratesim.policy import BACKEND_KINDS
from ratesim.stores import MemoryStore
from ratesim.traffic import PopulationSpec

CONFIGS = Path(__file__).parent / "data" / "configs"
MS = 1_000
S = 1_000_000


def admitted_times(path: Path, times_us: list[int], *, users: list[int] | None = None,
                   route: str = "/", nodes: int = 1, **options: object) -> list[int]:  # fmt: skip
    """Arrival times (µs) of the admitted requests of the imported policy, event engine."""
    imp = load(path, **options)
    duration = (max(times_us) + S) / S
    # Every route a layer names must exist; the arrivals use the first one, `route`.
    names = [route] + sorted({r for x in imp.policy.layers for r in x.routes or ()} - {route})
    population = PopulationSpec(users=10, routes={n: 1.0 for n in names})
    # Sentinel's degrade rules watch completions: give those policies a fast backend.
    needs_backend = any(x.algorithm.kind in BACKEND_KINDS for x in imp.policy.layers)
    backend = (
        BackendSpec(servers=100, service_time=ConstantLatency(ms=1)) if needs_backend else None
    )
    sc = make_scenario(imp.policy.layers, nodes=nodes, duration_s=duration, population=population,
                       backend=backend)  # fmt: skip
    arr = make_arrivals(times_us, users=users, route_names=tuple(names))
    r = simulate(sc, engine="event", arrivals=arr)
    check_conservation(r)
    return [int(t) for t, ok in zip(arr.time_us, r.admitted, strict=True) if ok]


def test_nginx_1rs_burst_5_admits_6_at_once_then_one_per_second() -> None:
    # nginx: an idle key admits burst + 1 = 6 at once; excess then drains 1000 milli per second
    # at 1r/s, so of requests every 250 ms the ones at whole seconds pass.
    burst = [0] * 10
    steady = [250 * MS * k for k in range(1, 13)]
    got = admitted_times(CONFIGS / "nginx.conf", burst + steady, route="/search/")
    assert got == [0] * 6 + [1 * S, 2 * S, 3 * S]


def test_nginx_1rm_admits_one_per_62_5_s(tmp_path: Path) -> None:
    # 1r/m is stored as 1000 // 60 = 16 milli-requests/s: a request drains after
    # 1000 * 1000 / 16 ms = 62.5 s, not 60 s.
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "http {\n  limit_req_zone $binary_remote_addr zone=m:1m rate=1r/m;\n"
        "  server {\n    location / {\n      limit_req zone=m;\n    }\n  }\n}\n"
    )
    times = [500 * MS * k for k in range(400)]  # every 0.5 s for 200 s
    period_us = 1000 * 1000 * MS // (1000 // 60)
    assert period_us == 62_500_000
    assert admitted_times(conf, times) == [k * period_us for k in range(4)]


def test_traefik_average_6_period_1m_burst_1_is_one_per_10_s() -> None:
    # r = 6 / 60 s = 0.1 per second, burst 1: a token every 10 s. A request held up to 500 ms
    # (maxDelay for r < 1) still passes, so arrivals every second pass at 0, 10, 20, ...
    times = [k * S for k in range(60)]
    assert admitted_times(CONFIGS / "traefik-dynamic.yaml", times) == [k * 10 * S for k in range(6)]


def test_kong_minute_10_local_on_two_nodes_admits_20_in_a_minute() -> None:
    # policy: local keeps a counter per node: two round-robin nodes each admit minute: 10.
    times = [1_500 * MS * k for k in range(40)]  # 40 requests in 60 s, under second: 5
    got = admitted_times(CONFIGS / "kong.yaml", times, nodes=2)
    assert len(got) == 20
    one_node = admitted_times(CONFIGS / "kong.yaml", times, nodes=1)
    assert len(one_node) == 10


def test_envoy_rejected_hits_still_use_up_the_global_limit() -> None:
    # Each request carries both descriptors and the service increments both counters, whatever
    # the outcome: user 0's 20 hits (10 over its own limit) all count against global 25/min, so
    # user 1 then gets 25 - 20 = 5 of its 10, not 10.
    times = [k * 100 * MS for k in range(30)]
    users = [0] * 20 + [1] * 10
    got = admitted_times(CONFIGS / "envoy-ratelimit-nested.yaml", times, users=users)
    by_user = [users[times.index(t)] for t in got]
    assert by_user.count(0) == 10
    assert by_user.count(1) == 25 - 20


def test_envoy_local_timer_refill_admits_in_steps_of_tokens_per_fill() -> None:
    # max_tokens 10 (the initial fill), tokens_per_fill 2 every 1 s. Timer (Envoy < 1.31):
    # after the initial 10, two tokens at each whole second. Continuous (1.31+): 2 tokens/s
    # accrue all the time, derived here with exact fractions.
    times = [k * 100 * MS for k in range(30)]
    timer = admitted_times(CONFIGS / "envoy-local-docs.yaml", times, refill="timer")
    assert timer == times[:10] + [1000 * MS, 1100 * MS, 2000 * MS, 2100 * MS]
    tokens, last, want = Fraction(10), 0, []
    for t in times:
        tokens = min(Fraction(10), tokens + Fraction(2 * (t - last), S))
        last = t
        if tokens >= 1:
            tokens -= 1
            want.append(t)
    assert admitted_times(CONFIGS / "envoy-local-docs.yaml", times) == want
    assert len(want) > len(timer)


def test_sentinel_throttling_burst_of_10() -> None:
    # count 10, maxQueueingTimeMs 500: requests spaced round(1000 / 10) = 100 ms; of a burst of
    # 10 one passes at once, five wait 100..500 ms, four would wait > 500 ms and are rejected.
    got = admitted_times(CONFIGS / "sentinel-flow.json", [0] * 10, route="GET:/hello")
    assert got == [0] * 6
    # The holds themselves, through the store (the runners do not model them yet).
    layer = load(CONFIGS / "sentinel-flow.json").policy.layer("flow-GET_/hello")
    alg = layer.algorithm.build()
    store = MemoryStore()
    decisions = [store.acquire(alg, "*", 5 * S) for _ in range(10)]
    assert [d.retry_after_us for d in decisions[:6]] == [k * 100 * MS for k in range(6)]
    assert not any(d.allowed for d in decisions[6:])


def test_sentinel_cluster_fallback_uses_the_full_count_on_every_node() -> None:
    layer = load(CONFIGS / "sentinel-flow.json").policy.layer("flow-GET_/orders")
    assert layer.failure_mode == "local" and layer.local_share == 1.0
    assert np.isclose(layer.algorithm.limit, 20)


def test_sentinel_average_threshold_falls_back_to_one_clients_count(tmp_path: Path) -> None:
    """thresholdType 0: the token server allows count x clients; the local fallback checks the
    rule's own count, one client's share (local_share 1 / clients)."""
    rule = [{"resource": "r", "grade": 1, "count": 250, "clusterMode": True,
             "clusterConfig": {"thresholdType": 0, "fallbackToLocalWhenFail": True}}]  # fmt: skip
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rule))
    (layer,) = load(path, nodes=4).policy.layers
    assert layer.algorithm.limit == 250 * 4
    assert layer.failure_mode == "local" and layer.local_share == 1 / 4
    assert layer.algorithm.scaled(layer.local_share).limit == 250
