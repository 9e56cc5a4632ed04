"""The store-path breaker state machine and the topology formulas (ratesim.model)."""

from __future__ import annotations

import math

import numba
import numpy as np

from ratesim.model import store_breaker as sb
from ratesim.model import topology as tp


def _run_blackhole(window_us: int, timeout_us: int, k: int, cooldown_us: int) -> int:
    """One caller always waiting, every call timing out: drive the state machine, count calls."""
    state, failures, opened, t, calls = sb.CLOSED, 0, 0, 0, 0
    while t < window_us:
        if sb.breaker_should_call(state, opened, cooldown_us, 0, t):
            state = sb.breaker_start_probe(state, opened, cooldown_us, t)
            calls += 1
            t += timeout_us
            prev = state
            state, failures = sb.breaker_on_result(state, failures, k, 0)
            if state == sb.OPEN and prev != sb.OPEN:
                opened = t
        else:
            t = opened + cooldown_us  # next decision that could probe
    return calls


def test_breaker_opens_after_k_failures_and_success_resets() -> None:
    state, failures = sb.CLOSED, 0
    for _ in range(2):
        state, failures = sb.breaker_on_result(state, failures, 3, 0)
    assert (state, failures) == (sb.CLOSED, 2)
    state, failures = sb.breaker_on_result(state, failures, 3, 1)
    assert (state, failures) == (sb.CLOSED, 0)
    for _ in range(3):
        state, failures = sb.breaker_on_result(state, failures, 3, 0)
    assert state == sb.OPEN


def test_half_open_one_probe_at_a_time() -> None:
    # Open at 1_000 µs with a 500 µs cooldown: no call before 1_500, a probe at 1_500.
    assert sb.breaker_should_call(sb.OPEN, 1_000, 500, 0, 1_499) == 0
    assert sb.breaker_should_call(sb.OPEN, 1_000, 500, 0, 1_500) == 1
    assert sb.breaker_start_probe(sb.OPEN, 1_000, 500, 1_500) == sb.HALF_OPEN
    assert sb.breaker_should_call(sb.HALF_OPEN, 1_000, 500, 1, 1_600) == 0
    assert sb.breaker_on_result(sb.HALF_OPEN, 3, 3, 0)[0] == sb.OPEN
    assert sb.breaker_on_result(sb.HALF_OPEN, 3, 3, 1) == (sb.CLOSED, 0)


def test_blackhole_costs_about_one_timeout_per_cooldown() -> None:
    window, timeout, k, cooldown = 10_000_000, 100_000, 5, 1_000_000
    # Derived by hand: k timeouts back to back open the breaker at k·timeout; probes start at
    # k·timeout + cooldown + j·(cooldown + timeout) while inside the window.
    first = k * timeout
    probes = math.floor((window - 1 - first - cooldown) / (cooldown + timeout)) + 1
    expected = k + probes
    assert expected == 13
    assert sb.blackhole_timed_out_calls(window, timeout, k, cooldown) == expected
    assert _run_blackhole(window, timeout, k, cooldown) == expected
    # Without a breaker every call times out: window / timeout of them.
    assert expected < window // timeout


def test_follow_share_is_envoy_ceil() -> None:
    assert [tp.follow_share(10, m) for m in (1, 3, 4, 10, 11)] == [10, 4, 3, 1, 1]
    assert tp.follow_share(10, 0) == 10


def test_live_nodes_and_scale_out_ceiling() -> None:
    at = np.array([10_000_000, 20_000_000], dtype=np.int64)
    nodes = np.array([8, 4], dtype=np.int64)
    assert [tp.live_nodes_at(t, 4, at, nodes) for t in (0, 9_999_999, 10_000_000, 20_000_000)] == [
        4,
        4,
        8,
        4,
    ]
    n, b, r, t_end, t_at = 4, 20, 10, 30_000_000, 10_000_000
    # N·b + N·r·t for N nodes over 30 s, then the added N nodes' burst plus 20 s of refill.
    assert tp.per_node_ceiling(n, b, r, t_end) == n * b + n * r * 30
    assert (
        tp.scale_out_ceiling(n, 2 * n, b, r, t_at, t_end) == n * b + n * r * 30 + n * b + n * r * 20
    )


def test_formulas_compile_under_numba() -> None:
    call = numba.njit(sb.breaker_should_call)
    assert call(sb.OPEN, 0, 10, 0, 10) == 1
    assert numba.njit(sb.blackhole_timed_out_calls)(10_000_000, 100_000, 5, 1_000_000) == 13
    assert numba.njit(tp.follow_share)(10, 3) == 4
    at = np.array([5], dtype=np.int64)
    assert numba.njit(tp.live_nodes_at)(6, 2, at, np.array([3], dtype=np.int64)) == 3


def _row() -> list[int]:
    row = [0] * sb.SB_COLS
    sb.sb_reset(row, 0)
    return row


def test_row_opens_after_k_failures_and_counts_its_time_open() -> None:
    row = _row()
    # k = 2 failures observed at 10 and 20 µs open it at 20; cooldown 100 µs
    for i, t in ((1, 10), (2, 20)):
        assert sb.sb_gate(row, 0, 100, i, t) == 1
    sb.sb_observe(row, 0, 2, 1, 0, 10)
    assert row[sb.SB_STATE] == sb.CLOSED
    sb.sb_observe(row, 0, 2, 2, 0, 20)
    assert (row[sb.SB_STATE], row[sb.SB_OPENED], row[sb.SB_OPENS]) == (sb.OPEN, 20, 1)
    assert sb.sb_gate(row, 0, 100, 3, 119) == 0  # inside the cooldown: no call
    assert row[sb.SB_SHORT] == 1
    assert sb.sb_gate(row, 0, 100, 4, 120) == 1  # the probe
    assert (row[sb.SB_STATE], row[sb.SB_PROBE]) == (sb.HALF_OPEN, 4)
    assert sb.sb_gate(row, 0, 100, 5, 121) == 0  # one probe at a time
    sb.sb_observe(row, 0, 2, 4, 0, 150)  # the probe fails: open again from 150
    assert (row[sb.SB_STATE], row[sb.SB_OPENED], row[sb.SB_OPENS]) == (sb.OPEN, 150, 1)
    assert sb.sb_open_us(row, 0, 200) == 200 - 20  # still open: counted to the end given
    assert sb.sb_gate(row, 0, 100, 6, 250) == 1
    sb.sb_observe(row, 0, 2, 6, 1, 260)  # the probe's answer closes it
    assert (row[sb.SB_STATE], row[sb.SB_FAILS]) == (sb.CLOSED, 0)
    assert sb.sb_open_us(row, 0, 10_000) == 260 - 20
    assert row[sb.SB_SHORT] == 2


def test_row_ignores_outcomes_of_calls_from_before_it_opened() -> None:
    row = _row()
    for i in range(1, 5):
        sb.sb_gate(row, 0, 100, i, 0)
    sb.sb_observe(row, 0, 1, 1, 0, 5)  # k = 1: open at 5
    sb.sb_observe(row, 0, 1, 2, 1, 6)  # a success of an older call does not close it
    sb.sb_observe(row, 0, 1, 3, 0, 7)  # nor does a failure move its cooldown
    assert (row[sb.SB_STATE], row[sb.SB_OPENED]) == (sb.OPEN, 5)
    assert sb.sb_gate(row, 0, 100, 9, 105) == 1
    sb.sb_observe(row, 0, 1, 4, 1, 106)  # not the probe: ignored
    assert row[sb.SB_STATE] == sb.HALF_OPEN
    sb.sb_observe(row, 0, 1, 9, 1, 107)
    assert row[sb.SB_STATE] == sb.CLOSED


def test_row_functions_compile_and_agree_with_python() -> None:
    gate, observe = numba.njit(sb.sb_gate), numba.njit(sb.sb_observe)
    steps = [(1, 0, 0), (2, 0, 3), (3, 1, 40), (4, 0, 60), (5, 0, 61), (6, 1, 200)]
    py, nb = _row(), np.array(_row(), dtype=np.int64)
    for i, ok, t in steps:
        assert sb.sb_gate(py, 0, 50, i, t) == gate(nb, 0, 50, i, t)
        sb.sb_observe(py, 0, 2, i, ok, t + 1)
        observe(nb, 0, 2, i, ok, t + 1)
        assert py == nb.tolist()
