"""Nodes that come and go (``topology.changes``) and ``local_share: follow``, in both runners.

Expected counts are derived here from the token bucket's documented semantics (x/time/rate: a
bucket of ``b`` tokens starting full, ``r`` tokens a second; Envoy's timer refill: ``tokens_per
_fill`` whole tokens at every multiple of ``fill_interval``) and from the schedule, over
hand-made arrivals dense enough that every token is used as soon as it is there.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
from test_engine_helpers import make_arrivals, make_scenario

from ratesim import simulate
from ratesim.model.topology import per_node_ceiling, scale_out_ceiling, slot_table
from ratesim.policy import GcraSpec, LayerSpec, TokenBucketSpec
from ratesim.results import Result
from ratesim.scenario import Scenario, ScenarioError

ENGINES = ("event", "fast")
GAP_US = 100  # one arrival every 100 µs: 10,000/s, far above every bucket here


def dense(duration_s: float) -> np.ndarray:
    """Arrival times (µs) every ``GAP_US`` from 0 to the end of the run."""
    return np.arange(0, round(duration_s * 1e6), GAP_US, dtype=np.int64)


def run_both(sc: Scenario, times: np.ndarray, users: np.ndarray | None = None) -> list[Result]:
    arr = make_arrivals(times, users)
    out = [simulate(sc, engine=e, arrivals=arr) for e in ENGINES]
    for f in ("node", "outcomes", "remaining", "decided_us", "rejected_by"):
        np.testing.assert_array_equal(getattr(out[0].data, f), getattr(out[1].data, f), f)
    return out


def node_bucket(b: int, r: float, **kw: object) -> LayerSpec:
    return LayerSpec(name="nb", algorithm=TokenBucketSpec(rate=r, burst=b, **kw), key="*")  # type: ignore[arg-type]


def test_scale_out_raises_the_per_node_ceiling_and_new_nodes_burst_at_the_event() -> None:
    n0, n1, b, r = 2, 4, 50, 10
    t_s, at_s = 2.05, 1.0  # r * t is not whole: the last token does not fall on the end
    fixed = make_scenario([node_bucket(b, r)], nodes=n0, duration_s=t_s)
    scaled = make_scenario(
        [node_bucket(b, r)],
        nodes=n0,
        duration_s=t_s,
        topology={"changes": [{"at_s": at_s, "nodes": n1}]},
    )
    times = dense(t_s)
    # each node gets an arrival every n * 100 µs: every token is taken within 0.4 ms of its
    # arrival, so a node started at s admits b + floor(r * (T - s)) (refill counts from its
    # first request, 100-400 µs after s: floor(r * (T - s - 0.0004)) is the same here)
    before = n0 * (b + int(r * t_s))
    after = before + (n1 - n0) * (b + int(r * (t_s - at_s)))
    assert (before, after) == (140, 260)
    assert before == per_node_ceiling(n0, b, r, round(t_s * 1e6))
    assert after == scale_out_ceiling(n0, n1, b, r, round(at_s * 1e6), round(t_s * 1e6))
    for res in run_both(fixed, times):
        assert res.totals["admitted"] == before
    for res in run_both(scaled, times):
        assert res.totals["admitted"] == after
        d = res.data
        ok = d.rejected_by < 0
        t = d.arrivals.time_us
        new = d.node >= n0
        assert set(np.unique(d.node[t < at_s * 1e6])) == {0, 1}
        assert set(np.unique(d.node[t >= at_s * 1e6])) == {0, 1, 2, 3}
        # the new nodes' full buckets: 2 x 50 admitted within 40 ms of the scale event (each
        # new node gets 100 arrivals there); the old ones refill 0.4 token each in that time
        burst = (t >= at_s * 1e6) & (t < at_s * 1e6 + 40_000) & ok
        assert int((burst & new).sum()) == (n1 - n0) * b
        assert int((burst & ~new).sum()) <= n0


def test_new_nodes_after_a_scale_in_start_full_on_fresh_slots() -> None:
    b, r = 20, 10
    sc = make_scenario(
        [node_bucket(b, r)],
        nodes=2,
        duration_s=1.55,
        topology={"changes": [{"at_s": 0.5, "nodes": 1}, {"at_s": 1.0, "nodes": 2}]},
    )
    for res in run_both(sc, dense(1.55)):
        d = res.data
        t = d.arrivals.time_us
        assert set(np.unique(d.node[t < 500_000])) == {0, 1}
        assert set(np.unique(d.node[(t >= 500_000) & (t < 1_000_000)])) == {0}
        assert set(np.unique(d.node[t >= 1_000_000])) == {0, 2}  # slot 1 left; 2 is new
        per_node = np.bincount(d.node[d.rejected_by < 0], minlength=3)
        # b + floor(r * (last arrival - first arrival)) per node: slot 0 over the whole run
        # from t = 0; slot 1 from 0.1 ms until 0.5 s; slot 2 (new) from 1.0001 s to the end
        expected = [b + int(r * 1.5499), b + int(r * (0.4999 - 0.0001)), b + int(r * 0.5498)]
        assert expected == [35, 24, 25]
        assert list(per_node) == expected


def test_slot_table_drops_the_newest_first_and_never_reuses_a_slot() -> None:
    slot_of, slots = slot_table(3, np.array([5, 2, 4]))
    assert slots == 7
    assert slot_of.tolist() == [
        [0, 1, 2, -1, -1],
        [0, 1, 2, 3, 4],
        [0, 1, -1, -1, -1],
        [0, 1, 5, 6, -1],
    ]


def test_round_robin_spreads_evenly_over_the_live_nodes() -> None:
    sc = make_scenario(
        [node_bucket(1000, 1000)],
        nodes=3,
        duration_s=1.0,
        topology={"changes": [{"at_s": 0.4, "nodes": 5}]},
    )
    for res in run_both(sc, dense(1.0)):
        d = res.data
        late = d.arrivals.time_us >= 400_000
        counts = np.bincount(d.node[late], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == late.sum()


def test_random_balancer_picks_only_live_nodes() -> None:
    sc = make_scenario(
        [node_bucket(1000, 1000)],
        nodes=4,
        duration_s=1.0,
        topology={"load_balancer": "random", "changes": [{"at_s": 0.5, "nodes": 2}]},
    )
    for res in run_both(sc, dense(1.0)):
        d = res.data
        late = d.arrivals.time_us >= 500_000
        assert set(np.unique(d.node[late])) == {0, 1}
        assert set(np.unique(d.node[~late])) == {0, 1, 2, 3}


def test_hash_user_moves_users_only_onto_the_new_nodes_when_doubling() -> None:
    """Modulo hashing: ``h % 2N`` is ``h % N`` or ``h % N + N``, so on ``N -> 2N`` a user
    either stays or moves to a new node, never to another old one; each user keeps one node
    within an epoch."""
    n0 = 3
    times = dense(1.0)
    users = np.arange(len(times), dtype=np.int64) % 200
    sc = make_scenario(
        [node_bucket(1000, 1000)],
        nodes=n0,
        duration_s=1.0,
        topology={"load_balancer": "hash_user", "changes": [{"at_s": 0.5, "nodes": 2 * n0}]},
        population=None,
    )
    for res in run_both(sc, times, users):
        d = res.data
        late = d.arrivals.time_us >= 500_000
        moved = 0
        for u in range(200):
            mine = d.arrivals.user == u
            before = np.unique(d.node[mine & ~late])
            after = np.unique(d.node[mine & late])
            assert len(before) == 1 and len(after) == 1
            if after[0] != before[0]:
                moved += 1
                assert after[0] == before[0] + n0  # position p + N: the new node there
        assert 60 <= moved <= 140  # about half of 200 users


def follow_bucket(tpf: int, max_tokens: int, mode: str = "enforce") -> LayerSpec:
    return LayerSpec(
        name="share",
        algorithm=TokenBucketSpec(
            rate=float(tpf), burst=max_tokens, refill="ticker", fill_interval_s=1.0
        ),
        key="*",
        mode=mode,  # type: ignore[arg-type]
        local_share="follow",
    )


def test_follow_share_gives_each_node_ceil_tokens_per_fill_over_members() -> None:
    """Envoy local_cluster_rate_limit, timer refill: tokens_per_fill 10 every 1 s on max_tokens
    20. Two members get ceil(10/2) = 5 a tick each; after a scale-out to 4 at 2 s, ceil(10/4)
    = 3 each, and the new nodes start full."""
    tpf, max_tokens, t_s = 10, 20, 3.5
    sc = make_scenario(
        [follow_bucket(tpf, max_tokens)],
        nodes=2,
        duration_s=t_s,
        topology={"changes": [{"at_s": 2.0, "nodes": 4}]},
    )
    two, four = -(-tpf // 2), -(-tpf // 4)
    assert (two, four) == (5, 3)
    old = max_tokens + two * 1 + four * 2  # ticks at 1 s (2 members), 2 s and 3 s (4 members)
    new = max_tokens + four * 1  # full at 2 s, tick at 3 s
    for res in run_both(sc, dense(t_s)):
        per_node = np.bincount(res.data.node[res.data.rejected_by < 0], minlength=4)
        assert list(per_node) == [old, old, new, new]
    # the same bucket without follow: every node refills the whole tokens_per_fill
    plain = make_scenario(
        [follow_bucket(tpf, max_tokens).model_copy(update={"local_share": None})],
        nodes=2,
        duration_s=t_s,
        topology={"changes": [{"at_s": 2.0, "nodes": 4}]},
    )
    for res in run_both(plain, dense(t_s)):
        per_node = np.bincount(res.data.node[res.data.rejected_by < 0], minlength=4)
        assert list(per_node) == [max_tokens + 3 * tpf] * 2 + [max_tokens + tpf] * 2


def test_follow_share_on_a_continuous_bucket_shares_the_rate_per_second() -> None:
    r, b, t_s = 10, 5, 2.05
    layer = LayerSpec(
        name="share", algorithm=TokenBucketSpec(rate=r, burst=b), key="*", local_share="follow"
    )
    sc = make_scenario([layer], nodes=3, duration_s=t_s)
    per = -(-r // 3)  # 4 a second on each of 3 nodes
    for res in run_both(sc, dense(t_s)):
        per_node = np.bincount(res.data.node[res.data.rejected_by < 0], minlength=3)
        # refill counts from each node's first request (100-300 µs in): floor(4 * 2.0497) = 8
        assert list(per_node) == [b + int(per * (t_s - 0.0003))] * 3


def test_follow_after_a_global_layer_uses_the_members_at_its_decision() -> None:
    """A follow layer behind a Redis layer decides after the round trip; both runners agree
    and the shares still add up per epoch."""
    layers = [
        LayerSpec(
            name="g", algorithm=GcraSpec(max_burst=10**6, count_per_period=10**6), scope="global"
        ),
        follow_bucket(10, 20),
    ]
    sc = make_scenario(
        layers, nodes=2, duration_s=3.5, latency_ms=0.3,
        topology={"changes": [{"at_s": 2.0, "nodes": 4}]},
    )  # fmt: skip
    for res in run_both(sc, dense(3.5)):
        per_node = np.bincount(res.data.node[res.data.rejected_by < 0], minlength=4)
        assert list(per_node) == [20 + 5 + 6, 20 + 5 + 6, 23, 23]


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        (
            {"changes": [{"at_s": 2.0, "nodes": 3}, {"at_s": 1.0, "nodes": 2}]},
            "topology.changes[1].at_s: 1 s is not after the previous change (2 s)",
        ),
        ({"changes": [{"at_s": 5.0, "nodes": 3}]}, "topology.changes[0].at_s: 5 s is not inside"),
        ({"changes": [{"at_s": 1.0, "nodes": 0}]}, "topology.changes[0].nodes"),
        ({"changes": [{"at_s": 0.0, "nodes": 2}]}, "topology.changes[0].at_s"),
        (
            {"nodes": 2, "clocks": [{}, {}], "changes": [{"at_s": 1.0, "nodes": 3}]},
            "give one clock spec for all nodes",
        ),
        (
            {
                "changes": [
                    {"at_s": 0.001 * (k + 1), "nodes": 1 + 9_999 * (k % 2)} for k in range(4)
                ]
            },
            "more than 10000",
        ),
    ],
)
def test_bad_schedules_are_refused_by_field(topology: dict, message: str) -> None:
    data = make_scenario([node_bucket(5, 5)], duration_s=4.0).to_dict()
    data["topology"] = topology
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict(data, source="s.yaml")
    assert message in str(err.value)
    assert "s.yaml" in str(err.value)


def test_follow_is_refused_where_it_has_no_meaning() -> None:
    with pytest.raises(ValueError, match="node-scoped token_bucket"):
        LayerSpec(
            name="g", algorithm=GcraSpec(max_burst=1, count_per_period=1), local_share="follow"
        )
    with pytest.raises(ValueError, match="whole tokens per second"):
        LayerSpec(name="t", algorithm=TokenBucketSpec(rate=2.5, burst=3), local_share="follow")


def test_autoscale_builtin_over_admits_after_the_scale_out() -> None:
    """The built-in: 3 -> 6 nodes at 12 s. With saturating surge traffic the enforced per-node
    buckets admit up to 6 x 100/s after the event (twice the 300/s meant), plus the new nodes'
    3 x 200 tokens; the follow twin (shadow) stays near 300/s."""
    res = simulate("autoscale", engine="fast")
    admitted = res.timeseries["admitted"].to_numpy()  # one bin a second
    assert res.timeseries["live_nodes"].tolist() == [3] * 12 + [6] * 12 + [3] * 6
    # each saturated node admits its 100/s refill, give or take the token in flight at a bin
    # edge: 3 x 100 on the surge before the event, 6 x 100 once the new buckets are spent
    assert all(abs(admitted[10:12] - 300) <= 3)
    assert all(abs(admitted[16:22] - 600) <= 6)
    # the new nodes' 3 x 200 full tokens show on top of the refill after the event
    assert admitted[12:15].sum() >= 3 * 600 + 3 * 200 - 18
    # the follow twin (shadow) would admit the 300/s site limit on 6 nodes as on 3
    ts = res.timeseries
    share = (ts["arrivals"] - ts["shadow_rejected:node_share"]).to_numpy()
    assert all(abs(share[16:22] - 300) <= 3)
    assert all(abs(share[10:12] - 300) <= 3)


@pytest.mark.parametrize("balancer", ["round_robin", "random", "hash_user"])
def test_a_simpy_clients_requests_go_to_the_nodes_live_when_they_arrive(balancer: str) -> None:
    """A user process driving the components: requests it sends after a scale-out reach the
    new nodes too, never a node that is not live (round robin over every row so far)."""
    import simpy

    from ratesim.des import Request, World
    from ratesim.traffic import Arrivals

    sc = make_scenario(
        [node_bucket(100, 100)],
        nodes=1,
        duration_s=2.0,
        topology={"load_balancer": balancer, "changes": [{"at_s": 0.5, "nodes": 3}]},
    )
    world = World.build(sc, arrivals=Arrivals.empty(("",), ("",)))
    env, gw = world.env, world.gateway

    def client() -> Generator[simpy.Event, Any, None]:
        for _ in range(2):
            yield gw.handle(Request(user=7))
        yield env.timeout(600_000)
        for u in range(60):
            yield gw.handle(Request(user=u))

    env.process(client())
    world.run()
    node = world.data().node
    assert node[:2].tolist() == [0, 0]
    assert set(node[2:].tolist()) == {0, 1, 2}
    if balancer == "round_robin":
        assert node[2:5].tolist() == [2, 0, 1]  # rows 2, 3, 4 at positions row % 3
