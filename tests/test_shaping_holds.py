"""Shaping holds in both runners: a request a shaping layer admits with a delay waits, then goes
on to the next layer or the backend, and the delay is in its decision latency.

Expected delays are derived from each gateway's documented behaviour (nginx's
``ngx_http_limit_req_module``, Sentinel's ``RateLimiterController``, Traefik's ``Reserve`` +
``maxDelay``; ``/work/shared/reference/configs-and-traffic.md`` §3.7), not from ratesim.
"""

from __future__ import annotations

import numpy as np
from test_engine_helpers import make_arrivals, make_scenario

from ratesim import simulate
from ratesim.model.backend import BackendSpec
from ratesim.model.latency import ConstantLatency
from ratesim.policy import (
    FixedWindowSpec,
    GcraSpec,
    LayerSpec,
    NginxLeakySpec,
    PacerSpec,
    ReserveBucketSpec,
)
from ratesim.results import Result
from ratesim.scenario import Scenario

S = 1_000_000
MS = 1_000
ENGINES = ("event", "fast")


def run_both(sc: Scenario, times: list[int]) -> list[Result]:
    """Both runners on hand-made arrivals (user 0); their raw outputs must be identical."""
    arr = make_arrivals(times)
    out = [simulate(sc, engine=e, arrivals=arr) for e in ENGINES]
    a, b = out[0].data, out[1].data
    for f in ("node", "outcomes", "remaining", "decided_us", "rejected_by", "held_us"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), f)
    if a.backend_done_us is not None:
        np.testing.assert_array_equal(a.backend_done_us, b.backend_done_us)
    return out


def nginx(nodelay: bool = False, **kw: object) -> LayerSpec:
    alg = NginxLeakySpec(rate=1, burst=5, nodelay=nodelay)
    return LayerSpec(name="nginx", algorithm=alg, key="*", **kw)  # type: ignore[arg-type]


def test_nginx_without_nodelay_holds_a_burst_one_second_apart() -> None:
    """``rate=1r/s burst=5``: a burst of 6 at once is admitted (an idle key takes burst + 1);
    request k (k = 0..5) has excess k x 1000 and is held (excess - 0) / rate = k s; the 7th is
    over the burst and rejected at once."""
    sc = make_scenario([nginx()], duration_s=10.0)
    for res in run_both(sc, [0] * 7):
        d = res.data
        assert d.rejected_by.tolist() == [-1] * 6 + [0]
        assert d.decided_us.tolist() == [k * S for k in range(6)] + [0]
        assert d.held_us is not None and d.held_us.tolist() == [k * S for k in range(6)] + [0]
        assert res.latency_us.tolist() == [k * S for k in range(6)] + [0]
        assert res.requests["held_us"].tolist() == [k * S for k in range(6)] + [0]
        assert res.totals["latency_p50_us"] == 2 * S  # the median of 0, 0, 1, 2, 3, 4, 5 s
        assert res.totals["held"] == 5


def test_a_held_request_reaches_the_next_layer_after_its_hold() -> None:
    """Behind nginx, a fixed window of 3 per 2.5 s (epoch-aligned). Forwarded at 0..5 s, the six
    fall 3 / 2 / 1 into the windows [0, 2.5), [2.5, 5), [5, 7.5): all pass. With ``nodelay``
    they all reach it at 0 s and the window takes only 3."""
    window = LayerSpec(name="win", algorithm=FixedWindowSpec(limit=3, window_s=2.5), key="*")
    for res in run_both(make_scenario([nginx(), window], duration_s=10.0), [0] * 6):
        assert res.data.rejected_by.tolist() == [-1] * 6
    nodelay = make_scenario([nginx(nodelay=True), window], duration_s=10.0)
    for res in run_both(nodelay, [0] * 6):
        assert res.data.rejected_by.tolist() == [-1] * 3 + [1] * 3
        assert res.data.decided_us.tolist() == [0] * 6


def test_a_held_request_calls_redis_after_its_hold() -> None:
    """Behind nginx, a global GCRA with 1 ms each way: each request is decided its hold plus
    one 2 ms round trip after it arrived."""
    g = LayerSpec(name="g", algorithm=GcraSpec(max_burst=100, count_per_period=100), scope="global")
    sc = make_scenario([nginx(), g], duration_s=10.0, latency_ms=1.0)
    for res in run_both(sc, [0] * 6):
        assert res.data.decided_us.tolist() == [k * S + 2 * MS for k in range(6)]


def test_a_global_shaping_layer_holds_after_the_reply() -> None:
    """nginx's bucket in Redis (1 ms each way): the hold starts when the reply is back."""
    layer = LayerSpec(
        name="nginx_g", algorithm=NginxLeakySpec(rate=1, burst=5), key="*", scope="global"
    )
    sc = make_scenario([layer], duration_s=10.0, latency_ms=1.0)
    for res in run_both(sc, [0] * 6):
        assert res.data.decided_us.tolist() == [2 * MS + k * S for k in range(6)]


def test_sentinel_throttling_queues_in_100_ms_steps_up_to_500_ms() -> None:
    """``count: 10, maxQueueingTimeMs: 500``: requests 1000 / 10 = 100 ms apart. Of 10 at once
    the first passes at once, the next five wait 100, ..., 500 ms (a wait equal to the bound
    passes), the other four would wait over 500 ms and are rejected at once."""
    layer = LayerSpec(name="flow", algorithm=PacerSpec(count=10, max_queue_ms=500), key="*")
    sc = make_scenario([layer], duration_s=2.0)
    for res in run_both(sc, [0] * 10):
        d = res.data
        assert d.rejected_by.tolist() == [-1] * 6 + [0] * 4
        assert d.decided_us.tolist() == [k * 100 * MS for k in range(6)] + [0] * 4
        assert d.held_us is not None
        assert d.held_us.tolist() == [k * 100 * MS for k in range(6)] + [0] * 4


def test_traefik_holds_up_to_max_delay_then_rejects() -> None:
    """Traefik: average 2/s, burst 1, ``maxDelay = 1 s / (2 * 2) = 250 ms``. A request at 0
    takes the token; one at 300 ms waits 200 ms for the next (<= 250 ms: held, forwarded at
    500 ms); one at 310 ms would wait 690 ms and is rejected."""
    alg = ReserveBucketSpec(rate=2.0, burst=1, max_delay_s=0.25)
    sc = make_scenario([LayerSpec(name="traefik", algorithm=alg, key="*")], duration_s=2.0)
    for res in run_both(sc, [0, 300 * MS, 310 * MS]):
        d = res.data
        assert d.rejected_by.tolist() == [-1, -1, 0]
        assert d.decided_us.tolist() == [0, 500 * MS, 310 * MS]


def test_held_requests_enter_the_backend_after_their_hold() -> None:
    backend = BackendSpec(servers=1, service_time=ConstantLatency(ms=10.0))
    sc = make_scenario([nginx()], duration_s=10.0, backend=backend)
    for res in run_both(sc, [0] * 6):
        assert res.data.backend_done_us is not None
        assert res.data.backend_done_us.tolist() == [k * S + 10 * MS for k in range(6)]


def test_a_shadow_shaping_layer_holds_nothing() -> None:
    """nginx's ``limit_req_dry_run``: counted, never delayed."""
    for res in run_both(make_scenario([nginx(mode="shadow")], duration_s=2.0), [0] * 7):
        assert res.data.decided_us.tolist() == [0] * 7
        assert res.data.held_us is None


def test_runs_without_shaping_report_no_holds() -> None:
    layer = LayerSpec(name="g", algorithm=GcraSpec(max_burst=1, count_per_period=1), key="*")
    for res in run_both(make_scenario([layer]), [0, 1, 2]):
        assert res.data.held_us is None
        assert "held_us" not in res.requests


def test_the_cli_summary_says_how_many_were_held_and_for_how_long() -> None:
    from ratesim import cli

    res = simulate(make_scenario([nginx()], duration_s=10.0), arrivals=make_arrivals([0] * 7))
    text = cli.format_summary(res, wall_s=1.0)
    # held 0, 1, ..., 5 s and one rejected (0): p99 by linear interpolation over the 7 values
    p99_ms = np.percentile([0, 0, 1, 2, 3, 4, 5], 99) * 1000
    assert f"hold p99 {p99_ms:.3f} ms" in text
    assert "Held by shaping layers (in the latency): 5 requests (71.43%)" in text
