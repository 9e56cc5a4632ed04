"""The compiled runner's sliding log: a ring per key that grows in a pool
(:mod:`ratesim.fast.logpool`), held to the algorithm's own kernel and state.

The reference is :func:`ratesim.algorithms.sliding_log.sliding_log_kernel` on its own
``limit + 2`` integers (the stores' and the event engine's state); the ring twin must give the
very same ``(allowed, remaining, retry_after_us, reset_after_us)`` for any sequence of
requests, time going backwards included, and hold the same entries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_engine_helpers import make_scenario
from test_fast_engine import assert_same, both

from ratesim.algorithms.sliding_log import (
    RING_CAP,
    RING_COUNT,
    RING_HEAD,
    RING_STAMPS,
    SlidingWindowLog,
    sliding_log_kernel,
)
from ratesim.engine import compile_policy, run_oracle
from ratesim.fast import logpool
from ratesim.fast.logpool import (
    FIRST_CAP,
    LOG_CODE,
    NODE_POOL,
    POOL_HEAD,
    POOL_USED,
    REDIS_POOL,
    STALE,
    new_pools,
    restore_pool,
    snapshot_pool,
    table_kernel,
)
from ratesim.model.faults import FailoverSpec
from ratesim.outcomes import ALLOWED
from ratesim.policy import LayerSpec, SlidingLogSpec
from ratesim.rng import Streams
from ratesim.scenario import Scenario
from ratesim.traffic import PopulationSpec, generate_arrivals


def original_entries(state: list[int], limit: int) -> list[int]:
    """The original log's entries, newest first (its docstring's slot formula)."""
    count, head = state[0], state[1]
    return [state[2 + (head - 1 - i + limit) % limit] for i in range(count)]


def ring_entries(pool: Any, b: int) -> list[int]:
    """The ring block's entries at ``pool[b:]``, newest first."""
    count, head, cap = pool[b + RING_COUNT], pool[b + RING_HEAD], pool[b + RING_CAP]
    return [int(pool[b + RING_STAMPS + (head - 1 - i) % cap]) for i in range(count)]


def call(p: Any, table: Any, key: int, logs: Any, w: int, now: int, cost: int) -> tuple[int, ...]:
    """The compiled runner's call for a sliding log's key: ``table_kernel`` on pool ``w``."""
    return tuple(table_kernel(LOG_CODE, p, 0, table, key, logs[w], logs, w, now, cost))


STEPS = st.lists(
    st.tuples(
        st.integers(0, 2),  # which key
        st.integers(-60, 60),  # clock step (us), backwards too
        st.integers(0, 100),  # cost, mapped onto 0 .. limit + 2 below
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 70),
    window_us=st.integers(1, 200),
    steps=STEPS,
    first_pool=st.sampled_from([0, 40, 5000]),
)
def test_ring_twin_gives_the_original_kernels_answers(
    limit: int, window_us: int, steps: list[tuple[int, int, int]], first_pool: int
) -> None:
    """Keys interleaved in one pool (rings moved and the pool grown along the way): every
    answer and every key's entries are the original's."""
    alg = SlidingWindowLog(limit=limit, window_s=window_us / 1e6)
    p = np.array(alg.params, dtype=np.int64)
    originals = [alg.new_state() for _ in range(3)]
    table = np.zeros(3, dtype=np.int64)  # a key's entry: its ring's offset (0: none yet)
    logs = new_pools(first_pool, 1, 0)
    bound = logs[NODE_POOL]
    now = [1000, 1000, 1000]
    peak = [1, 1, 1]  # the most entries an admission could have left, per key
    for key, dt, c in steps:
        now[key] += dt
        cost = c * (limit + 3) // 101  # 0 .. limit + 2: above limit too
        if cost <= limit:
            peak[key] = max(peak[key], min(limit, originals[key][0] + cost))
        want = sliding_log_kernel(alg.params, originals[key], now[key], cost)
        # ``bound``: the pool as first bound, never bound again (stale once the pool grows)
        got = table_kernel(LOG_CODE, p, 0, table, key, bound, logs, NODE_POOL, now[key], cost)
        assert tuple(got) == want
        pool = logs[NODE_POOL]
        assert ring_entries(pool, table[key]) == original_entries(originals[key], limit)
        # room for any admission so far, never more than the log, at most twice what it needed
        cap = pool[table[key] + RING_CAP]
        assert peak[key] <= cap <= limit
        assert cap <= max(FIRST_CAP, 2 * peak[key] - 1)
    assert pool[POOL_USED] <= pool.shape[0]
    # the first array is the pool still, or was grown out of and is marked so
    assert np.shares_memory(bound, pool) or bound[POOL_USED] == STALE


def test_a_light_key_holds_what_it_admitted_not_the_limit() -> None:
    """100 requests of cost 1 on a 3000-per-minute log: the ring doubles 8, 16, ..., 128
    (the first power-of-two multiple of 8 holding 100), each block 3 header integers."""
    alg = SlidingWindowLog(limit=3000, window_s=60.0)
    p = np.array(alg.params, dtype=np.int64)
    table = np.zeros(1, dtype=np.int64)
    logs = new_pools(0, 0, 0)
    for k in range(100):
        ok, rem, _, _ = call(p, table, 0, logs, NODE_POOL, 10_000 * k, 1)
        assert (ok, rem) == (1, 3000 - (k + 1))
    pool = logs[NODE_POOL]
    caps = [8, 16, 32, 64, 128]
    assert pool[table[0] + RING_CAP] == 128
    # a lone key cannot reuse the rings it outgrew (each is smaller than its next)
    assert pool[POOL_USED] == POOL_HEAD + sum(3 + c for c in caps)  # 263 + header, not 3002
    assert ring_entries(pool, table[0]) == [10_000 * k for k in range(99, -1, -1)]


def test_a_cost_above_the_limit_makes_no_room() -> None:
    """A request that can never fit is rejected without growing the key's ring."""
    alg = SlidingWindowLog(limit=100, window_s=1.0)
    p = np.array(alg.params, dtype=np.int64)
    table = np.zeros(1, dtype=np.int64)
    logs = new_pools(0, 0, 0)
    assert call(p, table, 0, logs, NODE_POOL, 5, 101) == (0, 100, -1, 0)
    assert logs[NODE_POOL][table[0] + RING_CAP] == FIRST_CAP


def test_failover_snapshot_brings_back_the_pool_as_it_was() -> None:
    """A restore gives back the rings as the snapshot saw them, and the blocks made since."""
    alg = SlidingWindowLog(limit=50, window_s=1.0)
    p = np.array(alg.params, dtype=np.int64)
    table = np.zeros(2, dtype=np.int64)
    logs = new_pools(0, 0, 1)
    for k in range(5):
        call(p, table, 0, logs, REDIS_POOL, 100 + k, 1)
    snapshot_pool(logs, 0)
    saved_table = table.copy()
    used = int(logs[REDIS_POOL][POOL_USED])
    before = ring_entries(logs[REDIS_POOL], table[0])
    for k in range(20):  # key 0 outgrows its ring, key 1 gets one; the pool grows
        call(p, table, 0, logs, REDIS_POOL, 200 + k, 1)
        call(p, table, 1, logs, REDIS_POOL, 200 + k, 1)
    assert logs[REDIS_POOL][POOL_USED] > used
    table[:] = saved_table  # the loop restores GSTATE from SNAP likewise
    restore_pool(logs, 0)
    assert logs[REDIS_POOL][POOL_USED] == used
    assert ring_entries(logs[REDIS_POOL], table[0]) == before == [104, 103, 102, 101, 100]
    assert table[1] == 0


def test_restore_before_any_snapshot_is_an_empty_pool() -> None:
    logs = new_pools(0, 100, 1)
    alg = SlidingWindowLog(limit=9, window_s=1.0)
    table = np.zeros(1, dtype=np.int64)
    call(np.array(alg.params), table, 0, logs, REDIS_POOL, 1, 1)
    restore_pool(logs, 0)
    assert logs[REDIS_POOL][POOL_USED] == POOL_HEAD


def test_an_outgrown_ring_is_the_next_key_s_ring() -> None:
    """Key 0's first ring (8 stamps), outgrown at its 9th entry, is the ring key 1 gets next
    (no new block at the pool's end); key 1's own growth then takes a new block."""
    alg = SlidingWindowLog(limit=100, window_s=1.0)
    p = np.array(alg.params, dtype=np.int64)
    table = np.zeros(2, dtype=np.int64)
    logs = new_pools(0, 0, 0)
    call(p, table, 0, logs, NODE_POOL, 0, 1)
    first = int(table[0])
    for k in range(1, 9):
        call(p, table, 0, logs, NODE_POOL, k, 1)
    assert table[0] != first
    used = int(logs[NODE_POOL][POOL_USED])
    assert used == POOL_HEAD + (3 + 8) + (3 + 16)
    ok = call(p, table, 1, logs, NODE_POOL, 20, 2)[0]
    assert ok == 1 and table[1] == first and logs[NODE_POOL][POOL_USED] == used
    assert ring_entries(logs[NODE_POOL], table[1]) == [20, 20]
    assert ring_entries(logs[NODE_POOL], table[0]) == list(range(8, -1, -1))


def test_table_size_is_one_integer_for_a_log() -> None:
    assert logpool.table_size(SlidingWindowLog(limit=3000, window_s=60.0)) == 1
    assert logpool.first_rings(10, [SlidingWindowLog(limit=3, window_s=1.0)]) == 10 * (3 + 3)


# --- the runners: rings that grow, through every path a sliding log takes -----------------


@st.composite
def log_scenarios(draw: st.DrawFn) -> Scenario:
    """Sliding logs large enough to grow their rings (limits past 8), as a node layer in front,
    a global layer (Redis time or client time, failing open or to a local log) and a node layer
    after it, with a failover snapshot and restore in the run."""
    log = st.builds(
        SlidingLogSpec,
        limit=st.sampled_from([12, 30, 70]),
        window_s=st.sampled_from([0.01, 0.05, 0.3]),
    )
    layers = []
    if draw(st.booleans()):
        layers.append(LayerSpec(name="front", algorithm=draw(log), key="{user}"))
    layers.append(
        LayerSpec(
            name="g",
            algorithm=draw(log),
            scope="global",
            key=draw(st.sampled_from(["*", "{user}", "{route}"])),
            failure_mode=draw(st.sampled_from(["open", "local"])),
            time_source=draw(st.sampled_from(["client", "redis"])),
            timeout_ms=draw(st.sampled_from([0.3, 50.0])),
        )
    )
    if draw(st.booleans()):
        layers.append(
            LayerSpec(name="after", algorithm=draw(log), key=draw(st.sampled_from(["*", "{user}"])))
        )
    failovers = []
    if draw(st.booleans()):
        failovers.append(
            FailoverSpec(
                at_s=draw(st.sampled_from([0.08, 0.15])),
                lost_writes_ms=draw(st.sampled_from([0.0, 30.0])),
            )
        )
    return make_scenario(
        layers,
        nodes=draw(st.integers(1, 3)),
        duration_s=0.25,
        latency_ms=0.2,
        rate_per_s=draw(st.sampled_from([800.0, 3000.0])),
        redis={"failovers": failovers},
        network={"pool_size": 2, "pool_max_wait_ms": 0.5},
        population=PopulationSpec(
            users=draw(st.sampled_from([1, 5])),
            routes={"/a": 0.7, "/c": 0.3},
            route_cost={"/c": 3},
        ),
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=log_scenarios(), seed=st.integers(0, 2**32 - 1))
def test_growing_rings_give_the_event_engines_run(sc: Scenario, seed: int) -> None:
    a, b = both(sc, seed)
    assert_same(a, b)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=log_scenarios(), seed=st.integers(0, 2**32 - 1))
def test_growing_rings_in_the_compiled_oracle_give_the_python_oracle(
    sc: Scenario, seed: int
) -> None:
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, Streams(seed))
    layers = compile_policy(sc, arr)
    assert_same(run_oracle(arr, layers, compiled=False), run_oracle(arr, layers, compiled=True))


def test_the_log_scenarios_fill_rings_past_their_first_block() -> None:
    """Not vacuous: a run of the strategy's shape admits far more than a first ring per key
    (1 user, a 70-per-0.3 s global log, 3000 requests a second: every ring grows to 70)."""
    sc = make_scenario(
        [
            LayerSpec(
                name="g",
                algorithm=SlidingLogSpec(limit=70, window_s=0.3),
                scope="global",
                key="{user}",
            )
        ],
        duration_s=0.25,
        latency_ms=0.2,
        rate_per_s=3000.0,
        population=PopulationSpec(users=1),
    )
    a, b = both(sc, 7)
    assert_same(a, b)
    allowed = int((b.outcomes[:, 0] == ALLOWED).sum())
    assert allowed == 70  # one window (0.3 s) covers the whole 0.25 s run
