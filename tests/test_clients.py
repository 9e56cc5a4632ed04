"""Clients that retry (issue 13 item 1): the schema, and small runs checked against values
computed here from the published semantics (``ratesim.clients``, ``ratesim.model.retry``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_helpers import make_arrivals, make_scenario
from test_fast_engine import scenarios_with_clients

from ratesim import simulate
from ratesim.clients import ClientsSpec
from ratesim.compile import draw_retries
from ratesim.conservation import check_attempts
from ratesim.model import counter
from ratesim.policy import LayerSpec, TokenBucketSpec
from ratesim.scenario import Scenario, ScenarioError

ENGINES = ["event", "fast"]


def bucket(rate: float = 1.0, burst: int = 1) -> LayerSpec:
    return LayerSpec(
        name="b", algorithm=TokenBucketSpec(rate=rate, burst=burst), scope="node", key="*"
    )


def with_clients(sc: Scenario, **clients: Any) -> Scenario:
    data = sc.model_dump()
    data["clients"] = clients
    data["redis"] = None
    return Scenario.model_validate(data)


def run(sc: Scenario, times: list[int], engine: str, users: list[int] | None = None) -> Any:
    return simulate(sc, engine=engine, arrivals=make_arrivals(times, users=users))


# --- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clients", "says"),
    [
        ({"budget_pct": 150}, "budget_pct"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 101}, "max_attempts"),
        ({"on_reject": {"kind": "backoff", "base_ms": 100, "cap_ms": 10}}, "cap_ms must be >="),
        ({"on_reject": {"kind": "fixed", "delay_ms": -1}}, "delay_ms"),
        ({"on_reject": {"kind": "fixed", "delay_ms": 4e6}}, "delay_ms"),
        ({"on_error": {"kind": "sometimes"}}, "on_error"),
        ({"deadline_ms": 0}, "deadline_ms"),
        ({"tiers": {"gold": {"max_attempts": 2}}}, "clients.tiers: tier 'gold'"),
        ({"retries": 3}, "retries"),
    ],
)
def test_bad_clients_are_refused_naming_the_field(clients: dict[str, Any], says: str) -> None:
    base = make_scenario([bucket()]).model_dump()
    base["clients"] = clients
    with pytest.raises(ScenarioError, match=says):
        Scenario.from_dict(base)


def test_a_clients_section_from_yaml(tmp_path: Any) -> None:
    from ratesim.scenario import load_scenario

    sc = with_clients(
        make_scenario([bucket()]),
        on_reject={"kind": "retry_after"},
        on_error={"kind": "backoff", "base_ms": 50, "cap_ms": 800},
        max_attempts=4,
        budget_pct=10,
        deadline_ms=5000,
        tiers={"silver": {"on_reject": {"kind": "immediate"}}},
    )
    path = tmp_path / "s.yaml"
    sc.to_yaml(path)
    back = load_scenario(path)
    assert back == sc
    assert isinstance(back.clients, ClientsSpec)
    assert back.clients.policy_of("silver").on_reject.kind == "immediate"
    assert back.clients.policy_of("gold").on_reject.kind == "retry_after"


# --- small runs, computed by hand ----------------------------------------------------------------
#
# One key, a node token bucket of rate 1 token/s and burst 1, no latency: a request at t = 0 takes
# the token; one at t = 1 ms finds 0.001 tokens and is rejected; the bucket holds 1 token again at
# t = 1 s (it refills continuously at 1 token per 10**6 µs).


@pytest.mark.parametrize("engine", ENGINES)
def test_fixed_delay_retries_until_max_attempts(engine: str) -> None:
    sc = with_clients(
        make_scenario([bucket()]), on_reject={"kind": "fixed", "delay_ms": 300}, max_attempts=3
    )
    r = run(sc, [0, 1000], engine)
    req = r.requests
    # retries at 1 ms + 300 ms and + 600 ms: 0.301 and 0.601 tokens, both rejected; 3 attempts
    assert req["time_us"].tolist() == [0, 1000, 301_000, 601_000]
    assert req["attempt"].tolist() == [1, 1, 2, 3]
    assert req["origin"].tolist() == [0, 1, 1, 1]
    assert req["admitted"].tolist() == [True, False, False, False]
    t = r.totals
    assert (t["user_requests"], t["attempts"], t["retries"], t["goodput"]) == (2, 4, 2, 1)
    assert t["attempts_per_request"] == 2.0
    users = r.user_requests
    assert users["attempts"].tolist() == [1, 3]
    assert users["latency_us"].tolist() == [0, 600_000]  # first arrival to the last decision


@pytest.mark.parametrize("engine", ENGINES)
def test_retry_after_is_honoured_in_whole_seconds(engine: str) -> None:
    sc = with_clients(make_scenario([bucket()]), on_reject={"kind": "retry_after"})
    r = run(sc, [0, 1000], engine)
    req = r.requests
    # the limiter's wait (0.999 s to the next token) goes out as Retry-After: 1 (second),
    # so the retry comes 1 s after the rejection, when the bucket holds 1.001 tokens: admitted
    assert req["time_us"].tolist() == [0, 1000, 1_001_000]
    assert req["admitted"].tolist() == [True, False, True]
    assert r.totals["goodput"] == 2
    assert r.user_requests["latency_us"].tolist() == [0, 1_000_000]


@pytest.mark.parametrize("engine", ENGINES)
def test_retry_after_beyond_max_wait_gives_up(engine: str) -> None:
    sc = with_clients(
        make_scenario([bucket(rate=0.25)]), on_reject={"kind": "retry_after", "max_wait_ms": 3000}
    )
    # at 0.25 token/s the next token is 4 s away: Retry-After 4 > 3 s, the client gives up
    r = run(sc, [0, 1000], engine)
    assert r.requests["attempt"].tolist() == [1, 1]


@pytest.mark.parametrize("engine", ENGINES)
def test_backoff_with_full_jitter(engine: str) -> None:
    base, cap, attempts = 100_000, 250_000, 5
    sc = with_clients(
        make_scenario([bucket(rate=1e-3)]),
        on_reject={"kind": "backoff", "base_ms": base / 1000, "cap_ms": cap / 1000},
        max_attempts=attempts,
    )
    r = run(sc, [0, 1000], engine)
    # the expected arrivals, from the definition: attempt k waits floor(u * min(cap, base *
    # 2**(k-2))) (at least 1 µs) with u the 24-bit jitter of (seed, origin 1, attempt k)
    t, expected = 1000, [0, 1000]
    for k in range(2, attempts + 1):
        h = counter.counter_u64(sc.seed, 1, k, counter.STREAM_JITTER, 0)
        wait = min(cap, base * 2 ** (k - 2)) * (h >> 40) // 2**24
        t += max(wait, 1)
        expected.append(t)
    assert r.requests["time_us"].tolist() == expected
    assert r.requests["attempt"].tolist() == [1, 1, 2, 3, 4, 5]
    assert not r.requests["admitted"].iloc[1:].any()


@pytest.mark.parametrize("engine", ENGINES)
def test_deadline_stops_retries(engine: str) -> None:
    sc = with_clients(
        make_scenario([bucket(rate=1e-3)]),
        on_reject={"kind": "fixed", "delay_ms": 300},
        max_attempts=10,
        deadline_ms=700,
    )
    r = run(sc, [0, 1000], engine)
    # retries at 301 ms and 601 ms are within 1 ms + 700 ms; the next (901 ms) is not
    assert r.requests["time_us"].tolist() == [0, 1000, 301_000, 601_000]


@pytest.mark.parametrize("engine", ENGINES)
def test_retry_budget_is_a_share_of_user_requests(engine: str) -> None:
    pct, n = 20, 12
    sc = with_clients(
        make_scenario([bucket(rate=1e-3)]),
        on_reject={"kind": "immediate"},
        max_attempts=2,
        budget_pct=pct,
    )
    times = [10_000 * j for j in range(n)]  # request 0 takes the token, the rest are rejected
    r = run(sc, times, engine)
    # Finagle's percentCanRetry: request j's retry is sent iff, counting it, retries stay
    # <= pct % of the j + 1 user requests arrived by its rejection
    sent, retried = 0, []
    for j in range(1, n):
        if 100 * (sent + 1) <= pct * (j + 1):
            sent += 1
            retried.append(j)
    assert retried == [4, 9]
    req = r.requests
    retries = req[req["attempt"] == 2]
    assert retries["origin"].map(lambda o: req["time_us"].iloc[o] // 10_000).tolist() == retried
    assert retries["time_us"].tolist() == [10_000 * j + 1 for j in retried]  # 1 µs later


@pytest.mark.parametrize("engine", ENGINES)
def test_errors_and_rejections_take_their_own_policy(engine: str) -> None:
    from ratesim.model.faults import OutageSpec
    from ratesim.policy import FixedWindowSpec

    layer = LayerSpec(
        name="g",
        algorithm=FixedWindowSpec(limit=1, window_s=10.0),
        scope="global",
        key="*",
        failure_mode="closed",
        timeout_ms=5.0,
    )
    sc = make_scenario(
        [layer], latency_ms=0.1, redis={"outages": [OutageSpec(start_s=0.0, end_s=0.5)]}
    )
    data = sc.model_dump()
    data["clients"] = {
        "on_error": {"kind": "fixed", "delay_ms": 1000},
        "on_reject": {"kind": "none"},
    }
    sc = Scenario.model_validate(data)
    r = simulate(sc, engine=engine, arrivals=make_arrivals([100_000, 2_000_000]))
    req = r.requests
    # request 0 meets the outage: refused at 100 ms + 0.1 ms out + 0.1 ms back, failed closed
    # (an error), retried 1 s later and admitted (the window's one slot); request 1 is
    # rejected by the limiter (a rejection: no retry)
    assert req["time_us"].tolist() == [100_000, 1_100_200, 2_000_000]
    assert req["layer:g"].tolist() == ["fail_closed", "allowed", "rejected"]
    assert req["attempt"].tolist() == [1, 2, 1]
    assert r.totals["goodput"] == 1


def test_a_policy_that_never_retries_changes_nothing() -> None:
    sc = make_scenario([bucket(rate=50.0, burst=3)], duration_s=1.0, rate_per_s=300.0)
    plain = simulate(sc.model_copy(update={"redis": None}), engine="event")
    never = simulate(with_clients(sc, on_reject={"kind": "none"}), engine="event")
    for f in ("node", "outcomes", "decided_us", "rejected_by"):
        np.testing.assert_array_equal(getattr(plain.data, f), getattr(never.data, f))
    assert never.data.attempt is None


def test_retry_draws_are_keyed_by_request_and_attempt() -> None:
    sc = make_scenario(
        [LayerSpec(name="g", algorithm=TokenBucketSpec(rate=5, burst=1), scope="global")],
        nodes=4,
        topology={"load_balancer": "random"},
        network={"latency": {"kind": "lognormal", "median_ms": 0.3, "sigma": 0.5}},
    )
    origin, attempt = np.array([3, 8, 8, 40]), np.array([2, 2, 3, 2])
    t, row, user = np.array([5, 6, 7, 9]), np.array([100, 101, 102, 103]), np.zeros(4)
    all4 = draw_retries(sc, 11, origin, attempt, t, row, user)
    # drawing a subset (other retries, other order) gives each retry the same numbers
    two = draw_retries(sc, 11, origin[[3, 1]], attempt[[3, 1]], t[[3, 1]], row[[3, 1]], user[:2])
    for f in ("node", "lat_out_us", "lat_back_us", "service_us"):
        np.testing.assert_array_equal(getattr(all4, f)[[3, 1]], getattr(two, f))
    # a lognormal sample from the counter's uniform: median * exp(sigma * ndtri(u))
    from scipy.special import ndtri

    u = counter.uniforms(11, origin[:1], attempt[:1], counter.STREAM_LATENCY, 0)[0]
    assert all4.lat_out_us[0, 0] == round(0.3 * math.exp(0.5 * float(ndtri(u))) * 1000)


def test_check_attempts_names_what_is_wrong() -> None:
    t = np.array([0, 10, 20])
    ok = dict(time_us=t, decided_us=t, rejected_by=np.array([0, 0, -1]))
    check_attempts(np.array([1, 2, 3]), np.array([0, 0, 0]), **ok)
    with pytest.raises(AssertionError, match="numbered 1 .. k"):
        check_attempts(np.array([1, 2, 4]), np.array([0, 0, 0]), **ok)
    with pytest.raises(AssertionError, match="retry of an admitted attempt"):
        check_attempts(
            np.array([1, 2, 3]), np.array([0, 0, 0]), **ok | {"rejected_by": np.array([0, -1, 0])}
        )
    with pytest.raises(AssertionError, match="before the decision"):
        check_attempts(
            np.array([1, 2, 3]), np.array([0, 0, 0]), **ok | {"decided_us": np.array([15, 15, 20])}
        )
    with pytest.raises(AssertionError, match="not its own origin"):
        check_attempts(np.array([1, 1, 2]), np.array([0, 0, 0]), **ok)


# --- conservation on random scenarios ------------------------------------------------------------


def check_user_requests(r: Any) -> None:
    """Every user request has one final outcome: its last attempt's decision."""
    req, users = r.requests, r.user_requests
    first = req[req["attempt"] == 1]
    assert users.index.tolist() == first.index.tolist()
    last = req.groupby("origin")["attempt"].max()
    assert users["attempts"].to_numpy().tolist() == last.loc[users.index].tolist()
    t = r.totals
    assert t["user_requests"] + t["retries"] == t["attempts"] == len(req)
    assert t["goodput"] == int(users["admitted"].sum()) <= t["admitted"]
    # an admitted attempt ends its user request; a user request is admitted at most once
    assert (req[req["admitted"]].groupby("origin").size() == 1).all()


@pytest.mark.parametrize("engine", ENGINES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios_with_clients(), seed=st.integers(0, 2**32 - 1))
def test_random_scenarios_with_clients_conserve_requests(
    engine: str, sc: Scenario, seed: int
) -> None:
    # the run itself checks conservation (every attempt decided once, attempts 1 .. k, retries
    # after their refusal, none after an admission); here the views agree with it
    r = simulate(sc, seed=seed, engine=engine)
    assert r.engine == engine
    check_user_requests(r)


# --- the retry storm -------------------------------------------------------------------------


def test_retry_storm_honouring_retry_after_keeps_attempts_near_one() -> None:
    from ratesim import scenarios

    runs = {
        r: simulate(scenarios.retry_storm(reaction=r), engine="fast")
        for r in scenarios.RETRY_STORM_REACTIONS
    }
    sc = scenarios.retry_storm()
    assert sc.clients is not None
    layer = sc.policy.layers[0]
    gcra = layer.algorithm
    attempts_max, deadline_s = sc.clients.max_attempts, sc.clients.deadline_ms / 1000
    users = runs["immediate"].user_requests
    offered = len(users)
    surge = int(((users["time_us"] >= 4_000_000) & (users["time_us"] < 5_000_000)).sum())

    # Immediate retries: an attempt is decided within its timeout (no pool wait) and retried
    # 1 µs later, so a user request's 10 attempts end within 10 x (50 ms + 1 µs) = 0.5 s, well
    # inside the deadline: every surge request that ends refused made all 10 attempts. The
    # surge's requests are admitted between 4 s and 5.5 s, where a GCRA admits at most
    # max_burst + 1 + rate x 1.5 s. Hence attempts >= offered + 9 x (surge - that).
    chain_s = attempts_max * (layer.timeout_ms / 1000 + 1e-6)
    assert chain_s < deadline_s
    rate = gcra.count_per_period / gcra.period_s  # type: ignore[union-attr]
    admitted_max = gcra.max_burst + 1 + rate * (1.0 + chain_s)  # type: ignore[union-attr]
    floor_immediate = 1 + (attempts_max - 1) * (surge - admitted_max) / offered
    assert floor_immediate > 2
    immediate = runs["immediate"].totals["attempts_per_request"]
    assert immediate >= floor_immediate

    # Honouring Retry-After: a GCRA's wait is below (max_burst + 1) / rate = 0.101 s and an
    # error carries none (the 1 s fallback), so every retry comes exactly 1 s after the attempt
    # before it; within the 1.5 s deadline that is one retry at most: attempts <= 2 x offered.
    ra = runs["retry_after"]
    req = ra.requests.sort_values(["origin", "attempt"])
    decided = ra.data.decided_us[req.index.to_numpy()]
    same = req["origin"].to_numpy()[1:] == req["origin"].to_numpy()[:-1]
    gaps = req["time_us"].to_numpy()[1:][same] - decided[:-1][same]
    assert len(gaps) and (gaps == 1_000_000).all()
    assert req["attempt"].max() == 2
    retry_after = ra.totals["attempts_per_request"]
    assert retry_after <= 1 + math.floor(deadline_s)
    # near 1 where immediate retries multiply: by the factor the bounds give
    assert immediate / retry_after >= floor_immediate / (1 + math.floor(deadline_s))
    assert ra.totals["user_requests"] == runs["backoff"].totals["user_requests"] == offered


def test_retries_under_latency_spikes_same_run_on_both_engines() -> None:
    """A spike applies to a retry by its own arrival time (its draws are made one by one, not
    by whole attempt levels): both runners agree, and a retry inside the spike is slower."""
    from ratesim.model.latency import SpikeSpec
    from ratesim.policy import GcraSpec

    layer = LayerSpec(
        name="g",
        algorithm=GcraSpec(max_burst=2, count_per_period=50, period_s=1.0),
        scope="global",
        key="{user}",
        timeout_ms=200.0,
    )
    sc = make_scenario(
        [layer],
        nodes=3,
        duration_s=2.0,
        rate_per_s=400.0,
        latency_ms=0.5,
        topology={"load_balancer": "random"},
        network={"spikes": [SpikeSpec(start_s=0.5, end_s=1.0, factor=10.0)]},
    )
    data = sc.model_dump()
    data["clients"] = {"on_reject": {"kind": "backoff", "base_ms": 20, "cap_ms": 300}}
    sc = Scenario.model_validate(data)
    a, b = (simulate(sc, engine=e) for e in ("event", "fast"))
    assert a.totals["retries"] > 50
    for f in ("node", "outcomes", "remaining", "decided_us", "rejected_by", "attempt", "origin"):
        np.testing.assert_array_equal(getattr(a.data, f), getattr(b.data, f), err_msg=f)
    req = a.requests
    lat = req["latency_us"]
    retry = req["attempt"] > 1
    inside = (req["time_us"] >= 500_000) & (req["time_us"] < 1_000_000)
    # constant 0.5 ms each way: 1 ms a decision outside the spike, 10 ms inside
    assert (lat[retry & inside] == 10_000).all() and (lat[retry & ~inside] == 1000).all()


def test_the_cli_summary_reports_the_clients() -> None:
    from ratesim.cli import format_summary

    sc = with_clients(
        make_scenario([bucket()]), on_reject={"kind": "fixed", "delay_ms": 300}, max_attempts=3
    )
    text = format_summary(run(sc, [0, 1000], "event"))
    # 2 user requests, 2 retries (4 attempts: 2.00 per request), 1 finally admitted
    assert (
        "Clients: 2 user requests, 2 retries (2.00 attempts per request), goodput 1 (50.00%)"
        in text
    )
    assert "User latency (first attempt to final outcome)" in text
    plain = format_summary(
        run(make_scenario([bucket()]).model_copy(update={"redis": None}), [0], "event")
    )
    assert "Clients:" not in plain


def test_first_attempts_keep_their_draws_whatever_the_clients_do() -> None:
    """A random balancer's node is a draw: first attempts get the same nodes with no clients,
    immediate retries or backoff; the retries' oracle covers every attempt, row for row."""
    sc = make_scenario(
        [bucket(rate=20.0, burst=2)],
        nodes=5,
        rate_per_s=200.0,
        topology={"load_balancer": "random"},
    )
    plain = simulate(sc.model_copy(update={"redis": None}), engine="event")
    nodes = plain.requests["node"].to_numpy()
    for reaction in ({"kind": "immediate"}, {"kind": "backoff", "base_ms": 5, "cap_ms": 50}):
        r = simulate(with_clients(sc, on_reject=reaction, max_attempts=4), engine="fast")
        req = r.requests
        assert r.totals["retries"] > 0
        np.testing.assert_array_equal(req.loc[req["attempt"] == 1, "node"].to_numpy(), nodes)
        oracle = r.oracle
        assert oracle is not None and len(oracle.requests) == len(req)
        np.testing.assert_array_equal(oracle.requests["time_us"], req["time_us"])


@pytest.mark.parametrize("engine", ENGINES)
def test_a_retry_arrives_after_the_instants_own_arrivals(engine: str) -> None:
    sc = with_clients(
        make_scenario([bucket()]), on_reject={"kind": "fixed", "delay_ms": 1000}, max_attempts=2
    )
    # request 1 is rejected at 1 ms and retried at 1.001 s, the instant request 2 arrives; the
    # bucket then holds 1.001 tokens: request 2 (the instant's own arrival) comes first and takes
    # the token, the retry finds none
    r = run(sc, [0, 1000, 1_001_000], engine)
    req = r.requests
    assert req["time_us"].tolist() == [0, 1000, 1_001_000, 1_001_000]
    assert req["attempt"].tolist() == [1, 1, 1, 2]
    assert req["admitted"].tolist() == [True, False, True, False]


def test_the_run_size_check_counts_every_attempt() -> None:
    from ratesim.budget import estimate_run_size

    sc = make_scenario([bucket()], duration_s=10.0, rate_per_s=1000.0).model_copy(
        update={"redis": None}
    )
    base = estimate_run_size(sc)
    retrying = estimate_run_size(
        with_clients(sc, on_reject={"kind": "fixed", "delay_ms": 2000}, max_attempts=4)
    )
    assert retrying.requests == pytest.approx(4 * base.requests)
    # each of the 3 retries waits at most 2 s, then makes the whole path again
    assert retrying.horizon_us >= base.horizon_us + 3 * 2_000_000
    never = estimate_run_size(with_clients(sc, on_reject={"kind": "none"}, max_attempts=4))
    assert never.requests == base.requests


def test_progress_bar_runs_with_retries(capsys: pytest.CaptureFixture[str]) -> None:
    sc = with_clients(
        make_scenario([bucket(rate=50.0, burst=2)], duration_s=2.0, rate_per_s=300.0),
        on_reject={"kind": "immediate"},
    )
    a = simulate(sc, engine="fast", progress=True)
    b = simulate(sc, engine="event", progress=True)
    np.testing.assert_array_equal(a.data.decided_us, b.data.decided_us)
    assert a.totals["retries"] > 0


@pytest.mark.parametrize("lb", ["round_robin", "random", "hash_user"])
def test_a_retry_goes_to_a_node_live_at_its_arrival(lb: str) -> None:
    """Nodes 2 -> 4 at 0.5 s -> 1 at 1 s: every retry lands on a node slot live when it
    arrives (slots 0-1 before 0.5 s, 0-3 until 1 s, then slot 0: the newest go first), and the
    runners agree."""
    sc = make_scenario(
        [bucket(rate=5.0, burst=1)], nodes=2, duration_s=1.5, rate_per_s=200.0,
        topology={"load_balancer": lb, "changes": [{"at_s": 0.5, "nodes": 4}, {"at_s": 1.0, "nodes": 1}]},
    )  # fmt: skip
    sc = with_clients(sc, on_reject={"kind": "backoff", "base_ms": 30, "cap_ms": 200})
    a, b = (simulate(sc, engine=e) for e in ("event", "fast"))
    for f in ("node", "outcomes", "decided_us", "rejected_by", "attempt", "origin"):
        np.testing.assert_array_equal(getattr(a.data, f), getattr(b.data, f), err_msg=f)
    req = a.requests
    retry = req[req["attempt"] > 1]
    assert len(retry) > 20
    t = retry["time_us"]
    live = np.where(t < 500_000, 2, np.where(t < 1_000_000, 4, 1))
    assert (retry["node"] < live).all()
    # retries after the scale-out reach the new nodes too
    assert (retry.loc[(t >= 500_000) & (t < 1_000_000), "node"] >= 2).any()


def test_timeseries_counts_the_retries_by_bin() -> None:
    sc = with_clients(
        make_scenario([bucket()], duration_s=2.0),
        on_reject={"kind": "fixed", "delay_ms": 300},
        max_attempts=3,
    )
    # the retries arrive at 0.301 s and 0.601 s: both in the first 1 s bin
    ts = run(sc, [0, 1000], "event").timeseries
    assert ts["retries"].tolist() == [2, 0]
    assert ts["arrivals"].tolist() == [4, 0]
    assert (
        "retries"
        not in run(
            make_scenario([bucket()]).model_copy(update={"redis": None}), [0], "event"
        ).timeseries
    )
