"""Window-family algorithms: reference vectors, boundaries, time going backwards, validation.

Expected values come from semantics.md (§5 Cloudflare, §8.8 Sentinel, §8.9 ``limits``, §8.10
Envoy) or are worked out by hand in the comments from the documented rules, never copied from a
run of the code.
"""

from __future__ import annotations

import random

import numba
import numpy as np
import pytest

from ratesim.algorithms.base import Algorithm
from ratesim.algorithms.bucketed import (
    ABSENT_EXPIRY_US,
    BucketedWindow,
    DoubleBufferedWindow,
    bucketed_kernel,
    double_buffered_kernel,
)
from ratesim.algorithms.sliding_log import SlidingWindowLog, sliding_log_kernel
from ratesim.algorithms.window_counter import (
    FixedWindow,
    SlidingWindowCounter,
    fixed_window_kernel,
    sliding_counter_kernel,
)
from ratesim.stores.memory import MemoryStore

S = 1_000_000  # microseconds per second
MS = 1_000


# --------------------------------------------------------------------------------------------
# SlidingWindowLog


def test_sliding_log_limits_doc_example() -> None:
    """§8.9: 10/min; hits at :10 (1), :20 (2), :30 (4), :50 (3) pass, 1:11 passes, 1:12 not."""
    log = SlidingWindowLog(10, 60)
    st = log.new_state()
    for t_s, cost in [(10, 1), (20, 2), (30, 4), (50, 3)]:
        assert log.step(st, t_s * S, cost).allowed
    d = log.step(st, 71 * S)
    assert d.allowed and d.remaining == 0
    d = log.step(st, 72 * S)
    assert not d.allowed
    # The two entries at :20 leave the window (52, 112] at 80 s: 8 left + 1 fits.
    assert d.retry_after_us == 8 * S
    # The newest entry (71 s) leaves at 131 s.
    assert d.reset_after_us == 59 * S
    assert d.remaining == 0


def test_sliding_log_window_is_half_open() -> None:
    """An entry stamped s counts at now iff now - window < s <= ... (gone exactly at s + W)."""
    log = SlidingWindowLog(1, 10)
    st = log.new_state()
    assert log.step(st, 5 * S).allowed
    d = log.step(st, 15 * S - 1)
    assert not d.allowed and d.retry_after_us == 1
    assert log.step(st, 15 * S).allowed


def test_sliding_log_cost_records_copies_and_ring_wraps() -> None:
    log = SlidingWindowLog(3, 10)
    st = log.new_state()
    assert log.step(st, 1 * S, 2).remaining == 1
    assert st == [2, 2, 1 * S, 1 * S, 0]
    assert log.step(st, 2 * S).remaining == 0
    assert st == [3, 0, 1 * S, 1 * S, 2 * S]
    # At 11 s the two units stamped 1 s are out of the window (1, 11]: a cost-2 request fits.
    d = log.step(st, 11 * S, 2)
    assert d.allowed and d.remaining == 0
    assert st == [3, 2, 11 * S, 11 * S, 2 * S]


def test_sliding_log_over_limit_cost_never_fits() -> None:
    log = SlidingWindowLog(3, 10)
    st = log.new_state()
    d = log.step(st, 0, 4)
    assert (d.allowed, d.retry_after_us, d.remaining, d.reset_after_us) == (False, -1, 3, 0)
    assert st == log.new_state()


def test_sliding_log_peek_records_nothing() -> None:
    log = SlidingWindowLog(2, 10)
    st = log.new_state()
    log.step(st, S)
    before = list(st)
    d = log.step(st, 2 * S, 0)
    assert d.allowed and d.remaining == 1 and st == before


def test_sliding_log_leading_clock_entries_count() -> None:
    """Entries stamped in the caller's future count in full, and expire on their own stamp."""
    log = SlidingWindowLog(2, 10)
    st = log.new_state()
    assert log.step(st, 100 * S, 2).allowed  # a leading clock
    d = log.step(st, 50 * S)  # a lagging clock, 50 s behind
    assert not d.allowed
    assert d.retry_after_us == 60 * S  # at 110 s the entries stamped 100 s leave
    assert d.reset_after_us == 60 * S


def test_sliding_log_lagging_stamp_is_clamped_to_newest() -> None:
    """A lagging request is recorded at the newest stamp, so it is never forgotten early."""
    log = SlidingWindowLog(2, 10)
    st = log.new_state()
    assert log.step(st, 100 * S).allowed
    assert log.step(st, 95 * S).allowed
    assert st[2:] == [100 * S, 100 * S]
    # At 106 s an entry truly stamped 95 s would be gone, but the log still holds two.
    assert not log.step(st, 106 * S).allowed
    assert log.step(st, 110 * S).allowed


def test_sliding_log_expires_at() -> None:
    log = SlidingWindowLog(2, 10)
    st = log.new_state()
    assert log.expires_at_us(st) == ABSENT_EXPIRY_US
    log.step(st, 3 * S)
    log.step(st, 4 * S)
    assert log.expires_at_us(st) == 14 * S


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"limit": 0, "window_s": 1}, "limit"),
        ({"limit": -3, "window_s": 1}, "limit"),
        ({"limit": 2.0, "window_s": 1}, "limit"),
        ({"limit": True, "window_s": 1}, "limit"),
        ({"limit": 2, "window_s": 0}, "window_s"),
        ({"limit": 2, "window_s": -1}, "window_s"),
        ({"limit": 2, "window_s": float("nan")}, "window_s"),
    ],
)
@pytest.mark.parametrize("cls", [SlidingWindowLog, FixedWindow, SlidingWindowCounter])
def test_two_parameter_validation(cls: type, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


# --------------------------------------------------------------------------------------------
# FixedWindow


def test_fixed_window_envoy_example() -> None:
    """§8.10: 3/min, now 125 s: hits 1-3 OK, 4th over, reset 55 s; fresh window at 180 s."""
    fw = FixedWindow(3, 60)
    st = fw.new_state()
    for remaining in (2, 1, 0):
        d = fw.step(st, 125 * S)
        assert d.allowed and d.remaining == remaining and d.reset_after_us == 55 * S
    d = fw.step(st, 125 * S)
    assert not d.allowed and d.retry_after_us == 55 * S and d.reset_after_us == 55 * S
    assert st == [2, 3]  # the 4th hit is not counted (Envoy would hold 4)
    d = fw.step(st, 180 * S)
    assert d.allowed and d.remaining == 2 and d.reset_after_us == 60 * S


def test_fixed_window_rejected_hits_do_not_count_unlike_envoy() -> None:
    """Envoy INCRBYs first: after a rejected cost-2 hit on 2/3 its counter reads 4 and the next
    cost-1 hit is over. Here the rejected hit changes nothing, so the cost-1 hit passes."""
    fw = FixedWindow(3, 60)
    st = fw.new_state()
    assert fw.step(st, 125 * S, 2).allowed
    assert not fw.step(st, 126 * S, 2).allowed
    assert fw.step(st, 127 * S, 1).allowed


def test_fixed_window_negative_time_uses_floor() -> None:
    fw = FixedWindow(1, 10)
    st = fw.new_state()
    d = fw.step(st, -1)  # window [-10 s, 0)
    assert d.allowed and d.reset_after_us == 1
    assert st == [-1, 1]
    assert not fw.step(st, -10 * S).allowed
    assert fw.step(st, 0).allowed


def test_fixed_window_time_going_backwards_charges_newest_window() -> None:
    fw = FixedWindow(2, 10)
    st = fw.new_state()
    assert fw.step(st, 25 * S).allowed  # window 2
    d = fw.step(st, 15 * S)  # lagging clock, window 1: judged and counted in window 2
    assert d.allowed and d.remaining == 0 and d.reset_after_us == 15 * S
    assert st == [2, 2]
    d = fw.step(st, 12 * S)
    assert not d.allowed and d.retry_after_us == 18 * S  # until 30 s on this clock
    assert fw.step(st, 30 * S).allowed


def test_fixed_window_expires_at() -> None:
    fw = FixedWindow(2, 10)
    st = fw.new_state()
    assert fw.expires_at_us(st) == ABSENT_EXPIRY_US
    fw.step(st, 25 * S)
    assert fw.expires_at_us(st) == 30 * S


# --------------------------------------------------------------------------------------------
# SlidingWindowCounter


def test_sliding_counter_cloudflare_example_with_flooring() -> None:
    """§5: limit 50/min, prev 42, curr 18, 15 s in: Cloudflare's 42*45/60 + 18 = 49.5 rejects
    the next hit; the floored 31 + 18 = 49 admits one more, then rejects."""
    swc = SlidingWindowCounter(50, 60)
    st = swc.new_state()
    assert swc.step(st, 30 * S, 42).allowed  # window 0
    # 14 s into window 1: floor(42 * 46 / 60) = 32; 32 + 18 = 50 <= 50.
    assert swc.step(st, 74 * S, 18).allowed
    assert st == [1, 18, 42]
    d = swc.step(st, 75 * S)
    assert d.allowed and d.remaining == 0  # 31 + 19 = 50
    d = swc.step(st, 75 * S)
    assert not d.allowed
    # Fits once floor(42 * (60 s - e) / 60 s) <= 50 - 1 - 19 = 30, i.e. 42 * (60 s - e) <
    # 31 * 60 s, i.e. 60 s - e <= 44_285_714 us: e >= 15_714_286 us.
    assert d.retry_after_us == 15_714_286 - 15 * S
    assert swc.step(st, 60 * S + 15_714_285).allowed is False
    assert swc.step(st, 60 * S + 15_714_286).allowed


def test_sliding_counter_limits_examples() -> None:
    """§8.9: limit 100/min, prev 40, curr 80: at 30 s weighted 100 rejects; at 40 s
    floor(40 * 20 / 60) + 80 = 93 and 94 <= 100 admits."""
    swc = SlidingWindowCounter(100, 60)
    st = [1, 80, 40]  # window 1 = [60 s, 120 s)
    d = swc.step(list(st), 90 * S)
    assert not d.allowed and d.remaining == 0
    d = swc.step(st, 100 * S)
    assert d.allowed and d.remaining == 6
    assert st == [1, 81, 40]


def test_sliding_counter_retry_into_next_window() -> None:
    """curr alone too big: wait for the next window, where prev' = curr decays."""
    swc = SlidingWindowCounter(10, 10)
    st = [0, 10, 0]
    d = swc.step(st, 5 * S)
    assert not d.allowed
    # In window 1: floor(10 * (10 s - e) / 10 s) <= 9 iff e >= 1 us.
    assert d.retry_after_us == 5 * S + 1
    # Back to zero: floor(10 * (10 s - e) / 10 s) == 0 iff e >= 9 s + 1 us.
    assert d.reset_after_us == 14 * S + 1
    assert swc.expires_at_us(st) == 19 * S + 1


def test_sliding_counter_two_windows_later_is_fresh() -> None:
    swc = SlidingWindowCounter(5, 10)
    st = [0, 5, 3]
    d = swc.step(st, 20 * S, 5)
    assert d.allowed and st == [2, 5, 0]


def test_sliding_counter_time_going_backwards() -> None:
    """A lagging request is judged against the stored window as at its start (whole prev)."""
    swc = SlidingWindowCounter(10, 10)
    st = [3, 2, 6]  # window 3 = [30 s, 40 s): prev 6, curr 2
    d = swc.step(st, 15 * S)  # window 1: weighted = 6 + 2 = 8, admitted into window 3
    assert d.allowed and d.remaining == 1
    assert st == [3, 3, 6]
    d = swc.step(st, 15 * S, 2)  # 9 + 2 > 10
    assert not d.allowed
    # Needs floor(6 * (10 s - e) / 10 s) <= 10 - 2 - 3 = 5, so e >= 10 s - (6 * 10 s - 1) // 6
    # = 1 us into window 3 (30 s), measured on the lagging clock at 15 s.
    assert d.retry_after_us == 15 * S + 1
    assert swc.step(st, 30 * S + 1, 2).allowed


def test_sliding_counter_negative_time() -> None:
    swc = SlidingWindowCounter(2, 10)
    st = swc.new_state()
    assert swc.step(st, -5 * S, 2).allowed
    assert st == [-1, 2, 0]
    d = swc.step(st, 0)  # window 0, prev 2 at e = 0: 2 + 0 + 1 > 2
    assert not d.allowed and d.retry_after_us == 1


# --------------------------------------------------------------------------------------------
# BucketedWindow (Sentinel LeapArray)


def test_leap_array_slots_and_starts() -> None:
    """§8.8: LeapArray(2, 1000): t=0..499 -> slot 0 start 0; 500 -> slot 1 start 500;
    1000 -> slot 0 reset to start 1000."""
    bw = BucketedWindow(100, 1.0, 2)
    st = bw.new_state()
    bw.step(st, 0)
    bw.step(st, 499 * MS)
    assert st[0:2] == [0, 2]
    bw.step(st, 500 * MS)
    assert st[2:4] == [500 * MS, 1]
    bw.step(st, 1000 * MS)
    assert st == [1000 * MS, 1, 500 * MS, 1]


def test_leap_array_deprecation_boundary() -> None:
    """§8.8: at 1500 ms a bucket started at 500 ms still counts (1000 is not > 1000), at 1501
    it does not. The kernel resets the request's own slot first (as ``ArrayMetric.pass()``
    does), so a request at 1500 ms no longer sees it."""
    bw = BucketedWindow(5, 1.0, 2)
    st = [1000 * MS, 2, 500 * MS, 3]
    assert bw.passed(st, 1500 * MS) == 5
    assert bw.passed(st, 1501 * MS) == 2
    assert bw.passed(st, 1499 * MS) == 5
    # At 1499 ms the request is in slot 0: both buckets are valid, 5 + 1 > 5.
    assert not bw.step(list(st), 1499 * MS).allowed
    # At 1500 ms slot 1 is reused for bucket 1500: only the 2 of bucket 1000 remain.
    d = bw.step(st, 1500 * MS, 3)
    assert d.allowed and d.remaining == 0
    assert st == [1000 * MS, 2, 1500 * MS, 3]


def test_leap_array_default_controller_blocks_at_count() -> None:
    """§8.8: QPS count 5 with pass = 5 in the valid buckets: (int) 5 + 1 > 5 blocks."""
    bw = BucketedWindow(5, 1.0, 2)
    st = bw.new_state()
    for t_ms in (100, 200, 600, 700, 800):
        assert bw.step(st, t_ms * MS).allowed
    d = bw.step(st, 900 * MS)
    assert not d.allowed and d.remaining == 0
    # Bucket 0 (2 passes) leaves at 1000 ms: 3 + 1 <= 5.
    assert d.retry_after_us == 100 * MS
    assert d.reset_after_us == 600 * MS  # bucket 500 leaves at 1500 ms
    assert bw.step(st, 1000 * MS).allowed


def test_leap_array_retry_skips_to_the_bucket_that_makes_room() -> None:
    bw = BucketedWindow(6, 3.0, 3)
    st = bw.new_state()
    bw.step(st, 0, 1)  # bucket 0
    bw.step(st, 1 * S, 3)  # bucket 1 s
    bw.step(st, 2 * S, 2)  # bucket 2 s
    d = bw.step(st, 2 * S, 4)
    # Dropping bucket 0 leaves 5 (+4 > 6); dropping bucket 1 s too leaves 2 (+4 <= 6): at 4 s.
    assert not d.allowed and d.retry_after_us == 2 * S


def test_leap_array_time_going_backwards_loses_the_pass() -> None:
    """Sentinel's throwaway bucket: the lagging request is judged with the valid counts
    (newer buckets included) and its pass is recorded nowhere."""
    bw = BucketedWindow(3, 1.0, 2)
    st = bw.new_state()
    assert bw.step(st, 1200 * MS).allowed  # slot 0, bucket 1000 ms
    before = list(st)
    d = bw.step(st, 300 * MS)  # slot 0, bucket 0 < 1000: throwaway
    assert d.allowed
    assert d.remaining == 2  # the pass was lost, the state still holds 1
    assert st == before
    # Judged with the newer bucket: 1 + 3 > 3.
    assert not bw.step(st, 300 * MS, 3).allowed


def test_leap_array_expires_at() -> None:
    bw = BucketedWindow(3, 1.0, 2)
    st = bw.new_state()
    assert bw.expires_at_us(st) == ABSENT_EXPIRY_US
    bw.step(st, 200 * MS)
    bw.step(st, 700 * MS)
    assert bw.expires_at_us(st) == 1500 * MS


# --------------------------------------------------------------------------------------------
# DoubleBufferedWindow


def test_double_buffer_worked_example() -> None:
    """The module docstring's example: limit 4, window 4 s, 4 buckets, swap every 2 s."""
    db = DoubleBufferedWindow(4, 4.0, 4, 2.0)
    st = db.new_state()
    for _ in range(4):
        assert db.step(st, 3_500 * MS).allowed
    # Last swap at 2 s: head = bucket 2, charged there.
    assert st == [2, 4, 0, 0, 4, 0]
    d = db.step(st, 5_900 * MS)
    assert not d.allowed and d.remaining == 0
    # Bucket 2 leaves at the first swap with head >= 2 + 4, i.e. at 6 s.
    assert d.retry_after_us == 100 * MS and d.reset_after_us == 100 * MS
    assert st == [2, 4, 0, 0, 4, 0]  # a rejected request writes nothing
    for _ in range(4):
        assert db.step(st, 6_000 * MS).allowed
    assert st == [6, 4, 0, 0, 4, 0]  # slot 2 now holds bucket 6


def test_double_buffer_over_admits_versus_exact_log_within_bound() -> None:
    """Same arrivals: the exact log and the LeapArray admit 4, the double buffer 8, in 2.5 s.
    The bound: any half-open interval of G = W - swap - bucket + 2 us admits at most limit."""
    arrivals = [3_500 * MS] * 4 + [6_000 * MS] * 4
    algs = [
        SlidingWindowLog(4, 4.0),
        BucketedWindow(4, 4.0, 4),
        DoubleBufferedWindow(4, 4.0, 4, 2.0),
    ]
    admitted = []
    for alg in algs:
        st = alg.new_state()
        admitted.append([t for t in arrivals if alg.step(st, t).allowed])
    assert [len(a) for a in admitted] == [4, 4, 8]
    db = algs[2]
    assert isinstance(db, DoubleBufferedWindow)
    g = db.admission_bound_us()
    assert g == 4 * S - 2 * S - 1 * S + 2
    span = max(admitted[2]) - min(admitted[2])
    assert span >= g  # 8 > limit only across a span longer than G
    # ... and at most ceil(W / G) * limit = 4 * limit in any window of W.
    assert len(admitted[2]) <= -(-db.window_us // g) * db.limit


def test_double_buffer_reads_lag_between_swaps() -> None:
    """With buckets of 1 s but swaps every 3 s, a bucket stays in the view until a swap."""
    db = DoubleBufferedWindow(1, 2.0, 2, 3.0)
    st = db.new_state()
    assert db.step(st, 0).allowed  # swap 0 -> head bucket 0, leaves at the first swap >= 2 s
    d = db.step(st, 2_500 * MS)  # a LeapArray would have forgotten it at 2 s
    assert not d.allowed and d.retry_after_us == 500 * MS
    assert db.step(st, 3 * S).allowed
    assert st == [3, 1, 0, 1]


def test_double_buffer_time_going_backwards_charges_head() -> None:
    db = DoubleBufferedWindow(3, 4.0, 4, 1.0)
    st = db.new_state()
    assert db.step(st, 10 * S).allowed  # head bucket 10
    assert db.step(st, 5 * S).allowed  # lagging: judged on the ring, charged to bucket 10
    assert st == [10, 2, 0, 0, 2, 0]
    d = db.step(st, 5 * S, 2)
    # Bucket 10 leaves at the swap at 14 s: 9 s on the lagging clock.
    assert not d.allowed and d.retry_after_us == 9 * S


def test_double_buffer_negative_time() -> None:
    db = DoubleBufferedWindow(1, 4.0, 4, 1.0)
    st = db.new_state()
    assert db.step(st, -1).allowed  # swap at -1 s, bucket -1 -> slot 3
    assert st == [-1, 1, 0, 0, 0, 1]
    d = db.step(st, 2 * S)
    assert not d.allowed and d.retry_after_us == 1 * S
    assert db.expires_at_us(st) == 3 * S


@pytest.mark.parametrize(
    ("cls", "kwargs", "name"),
    [
        (BucketedWindow, {"limit": 5, "window_s": 1.0, "buckets": 3}, "buckets"),
        (BucketedWindow, {"limit": 5, "window_s": 1.0, "buckets": 0}, "buckets"),
        (BucketedWindow, {"limit": 0, "window_s": 1.0, "buckets": 2}, "limit"),
        (BucketedWindow, {"limit": 1.5, "window_s": 1.0, "buckets": 2}, "limit"),
        (BucketedWindow, {"limit": 5, "window_s": -1.0, "buckets": 2}, "window_s"),
        (BucketedWindow, {"limit": 5, "window_s": 1.0, "buckets": 2.0}, "buckets"),
        (
            DoubleBufferedWindow,
            {"limit": 5, "window_s": 1.0, "buckets": 7, "swap_interval_s": 0.1},
            "buckets",
        ),
        (
            DoubleBufferedWindow,
            {"limit": 5, "window_s": 1.0, "buckets": 2, "swap_interval_s": 0},
            "swap_interval_s",
        ),
        (
            DoubleBufferedWindow,
            {"limit": -1, "window_s": 1.0, "buckets": 2, "swap_interval_s": 0.5},
            "limit",
        ),
        (
            DoubleBufferedWindow,
            {"limit": 5, "window_s": 0.0, "buckets": 2, "swap_interval_s": 0.5},
            "window_s",
        ),
    ],
)
def test_bucketed_validation(cls: type, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Every kernel compiles with numba and agrees with plain Python on an int64 array.

ALGORITHMS = [
    SlidingWindowLog(4, 0.000050),
    FixedWindow(4, 0.000050),
    SlidingWindowCounter(4, 0.000050),
    BucketedWindow(4, 0.000050, 5),
    DoubleBufferedWindow(4, 0.000050, 5, 0.000015),
]


def test_kernels_compile_with_numba_and_agree() -> None:
    kernels = {
        sliding_log_kernel,
        fixed_window_kernel,
        sliding_counter_kernel,
        bucketed_kernel,
        double_buffered_kernel,
    }
    assert {alg.kernel for alg in ALGORITHMS} == kernels
    rng = random.Random(7)
    for alg in ALGORITHMS:
        jitted = numba.njit(alg.kernel)
        py_state = alg.new_state()
        nb_state = np.array(py_state, dtype=np.int64)
        now = -200
        for _ in range(400):
            now += rng.randint(-40, 60)
            cost = rng.choice([0, 1, 1, 1, 2, 3, 5])
            want = alg.kernel(alg.params, py_state, now, cost)
            got = jitted(alg.params, nb_state, now, cost)
            assert tuple(int(x) for x in got) == want, alg
            assert nb_state.tolist() == py_state, alg


@pytest.mark.parametrize("alg", ALGORITHMS, ids=lambda a: type(a).__name__)
def test_memory_store_collects_expired_window_keys(alg: Algorithm) -> None:
    """The store drops a key once expires_at + grace has passed, and a fresh key decides the
    same as the collected one would have."""
    store = MemoryStore(grace_us=10)
    assert store.acquire(alg, "k", 1_000).allowed
    expires = alg.expires_at_us(store.state_of(alg, "k"))
    assert expires > 1_000
    assert store.collect(expires + 9) == 0
    assert store.collect(expires + 10) == 1
    assert store.state_of(alg, "k") is None
