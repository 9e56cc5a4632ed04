"""The oracle and its gap streamed (``ratesim.oracle.OracleStream``,
``ratesim.oracle_stream``): a run's rows fed in batches cut anywhere (empty ones, inside one
instant) give the whole run's oracle rows and ``compare_oracle`` frame, value for value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _batches import awkward_cuts, batches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fast_engine import scenarios

import ratesim.scenarios as builtin
from ratesim.engine import compile_policy, run_oracle, simulate
from ratesim.fast.oracle import oracle_gap
from ratesim.oracle import OracleStream
from ratesim.oracle_stream import GapStream, OracleGapConsumer
from ratesim.results import Result, window_max_sum_reference
from ratesim.scenario import Scenario

NO_CLIENTS = [n for n in builtin.names() if not builtin.get(n, 0.05).clients]


def _streamed_oracle(res: Result, cuts: np.ndarray) -> dict[str, np.ndarray]:
    layers = compile_policy(res.scenario, res.data.arrivals)
    stream: OracleStream | None = None
    parts: dict[str, list[np.ndarray]] = {"outcomes": [], "remaining": [], "rejected_by": []}
    for batch, cut, _ in batches(res.data, layers, cuts):
        if stream is None:
            stream = OracleStream(cut, len(batch.arrivals.tier_names))
        out = stream.step(batch.arrivals, cut)
        for name, arrs in parts.items():
            arrs.append(getattr(out, name))
    return {name: np.concatenate(arrs) for name, arrs in parts.items()}


def _streamed_gap(res: Result, cuts: np.ndarray, window_s: float) -> pd.DataFrame:
    layers = compile_policy(res.scenario, res.data.arrivals)
    consumer = OracleGapConsumer(res.layer_names, window_s)
    for batch, cut, first in batches(res.data, layers, cuts):
        consumer.fold(batch, cut, first)
    consumer.finish()
    return consumer.frame()


def _check(res: Result, cuts: np.ndarray, windows: tuple[float, ...] = (1.0,)) -> None:
    whole = run_oracle(res.data.arrivals, compile_policy(res.scenario, res.data.arrivals))
    got = _streamed_oracle(res, cuts)
    for name, arr in got.items():
        np.testing.assert_array_equal(arr, getattr(whole, name), err_msg=name)
    for w in windows:
        want = res.compare_oracle_reference(w)  # masks and searchsorted, the naive twin
        pd.testing.assert_frame_equal(_streamed_gap(res, cuts, w), want, check_exact=True)
        pd.testing.assert_frame_equal(res.compare_oracle(w), want, check_exact=True)


@pytest.mark.parametrize("name", NO_CLIENTS)
def test_builtins_streamed_give_the_whole_runs_oracle_and_gap(name: str) -> None:
    res = simulate(builtin.get(name, 0.05), seed=3)
    n = len(res.data.arrivals)
    assert n > 100
    rng = np.random.default_rng(11)
    # windows shorter than a batch, about one, and longer than the run
    for cuts in (awkward_cuts(res.data.arrivals.time_us, rng), np.arange(0, n, max(1, n // 7))):
        _check(res, cuts, (1.0, 0.013, 7.0))


def test_the_oracle_without_compilation_is_the_streamed_one() -> None:
    res = simulate(builtin.get("exchange-surge", 0.05), seed=9)
    layers = compile_policy(res.scenario, res.data.arrivals)
    plain = run_oracle(res.data.arrivals, layers, compiled=False)
    got = _streamed_oracle(res, awkward_cuts(res.data.arrivals.time_us, np.random.default_rng(2)))
    np.testing.assert_array_equal(got["rejected_by"], plain.rejected_by)
    np.testing.assert_array_equal(got["remaining"], plain.remaining)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), seed=st.integers(0, 2**32 - 1), data=st.data())
def test_random_scenarios_streamed_give_the_whole_runs_oracle_and_gap(
    sc: Scenario, seed: int, data: st.DataObject
) -> None:
    res = simulate(sc, seed=seed, engine="fast")
    n = len(res.data.arrivals)
    cuts = np.sort(np.array(data.draw(st.lists(st.integers(0, n), max_size=12)), dtype=np.int64))
    window = data.draw(st.sampled_from([1.0, 0.002, 0.05]))
    _check(res, cuts, (window,))


@st.composite
def gap_rows(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    """Sorted arrival times with ties, the system's and oracle's rejecting layer (of 2)."""
    n = draw(st.integers(0, 60))
    steps = draw(st.lists(st.integers(0, 9), min_size=n, max_size=n))
    t = np.cumsum(np.array(steps, dtype=np.int64))
    sys_rej = np.array(draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n)), dtype=np.int64)
    ora_rej = np.array(draw(st.lists(st.integers(-1, 1), min_size=n, max_size=n)), dtype=np.int64)
    tier = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int64)
    abusive = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return t, sys_rej, ora_rej, tier, abusive


@settings(deadline=None)  # the first example compiles the pass for its dtypes
@given(rows=gap_rows(), window=st.integers(1, 30), data=st.data())
def test_the_gap_stream_is_the_naive_gap_whatever_the_cuts(
    rows: tuple[np.ndarray, ...], window: int, data: st.DataObject
) -> None:
    t, sys_rej, ora_rej, tier, abusive = rows
    n = len(t)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8)))
    gap = GapStream(2, 2, window)
    for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
        gap.fold(t[lo:hi], sys_rej[lo:hi], ora_rej[lo:hi], tier[lo:hi], abusive[lo:hi])
    got = gap.finish()
    d = (sys_rej < 0).astype(np.int64) - (ora_rej < 0).astype(np.int64)
    masks = [np.ones(n, dtype=bool)]
    masks += [(ora_rej == pos) | (sys_rej == pos) for pos in range(2)]
    masks += [tier == code for code in range(2)] + [abusive, ~abusive]
    want = [
        [int((d[m] > 0).sum()), int((d[m] < 0).sum()), window_max_sum_reference(t[m], d[m], window)]
        for m in masks
    ]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.int64).reshape(-1, 3))
    whole = oracle_gap(t, sys_rej, ora_rej, tier, abusive, 2, 2, window)
    np.testing.assert_array_equal(whole, got)


def test_the_gap_by_hand() -> None:
    # window 10 µs; the system admits rows 0, 1, 2 the oracle rejected (+1 each) at 0, 5 and
    # 12, and rejects row 3 at 14 the oracle admitted (-1): [3, 13) holds 5 and 12 -> 2;
    # [0, 10) holds 0 and 5 -> 2; no window holds all three of 0, 5, 12 -> peak 2
    t = np.array([0, 5, 12, 14], dtype=np.int64)
    sys_rej = np.array([-1, -1, -1, 0], dtype=np.int64)
    ora_rej = np.array([0, 0, 0, -1], dtype=np.int64)
    tier = np.zeros(4, dtype=np.int64)
    gap = GapStream(1, 1, 10)
    for lo, hi in ((0, 1), (1, 1), (1, 3), (3, 4)):
        gap.fold(t[lo:hi], sys_rej[lo:hi], ora_rej[lo:hi], tier[lo:hi], np.zeros(hi - lo, bool))
    got = gap.finish()
    assert got[0].tolist() == [3, 1, 2]  # total: over, wrong, peak
    assert got[-2].tolist() == [0, 0, 0]  # none abusive


def test_bad_windows_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="window_s must be > 0"):
        OracleGapConsumer(["a"], 0.0)
    with pytest.raises(ValueError, match="window_us"):
        GapStream(1, 0, 0)


def test_a_run_fed_no_batch_has_a_zero_gap_per_group() -> None:
    consumer = OracleGapConsumer(["a", "b"], tier_names=("free", "pro"))
    consumer.finish()
    frame = consumer.frame()
    assert frame["key"].tolist() == ["all", "a", "b", "free", "pro", "true", "false"]
    assert (frame[["over_admitted", "wrongly_rejected", "peak_excess"]] == 0).all().all()


def _gap_by_masks(
    t: np.ndarray, sys_rej: np.ndarray, ora_rej: np.ndarray, tier: np.ndarray, abusive: np.ndarray,
    n_layers: int, n_tiers: int, window: int,
) -> np.ndarray:  # fmt: skip
    """The gap per group from boolean masks and the numpy twin of the window maximum."""
    d = (sys_rej < 0).astype(np.int64) - (ora_rej < 0).astype(np.int64)
    masks = [np.ones(len(t), dtype=bool)]
    masks += [(ora_rej == pos) | (sys_rej == pos) for pos in range(n_layers)]
    masks += [tier == code for code in range(n_tiers)] + [abusive, ~abusive]
    rows = [
        [int((d[m] > 0).sum()), int((d[m] < 0).sum()), window_max_sum_reference(t[m], d[m], window)]
        for m in masks
    ]
    return np.array(rows, dtype=np.int64)


@pytest.mark.parametrize("seed", range(6))
def test_the_compiled_gap_pass_grows_its_rings_and_is_the_naive_gap(seed: int) -> None:
    # thousands of disagreements (the rings start with room for 64 and must grow), bursts of
    # ties, windows from 1 µs to longer than the run, narrow dtypes as the runner hands them,
    # batches of odd sizes (1 row, a prime, empty, inside an instant)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3_000, 9_000))
    t = np.cumsum(rng.choice([0, 0, 1, 3, 50], n)).astype(np.int64)
    p_admit = rng.uniform(0.2, 0.9)  # +1-heavy or -1-heavy runs
    sys_rej = np.where(rng.random(n) < p_admit, -1, rng.integers(0, 3, n)).astype(np.int16)
    ora_rej = np.where(rng.random(n) < 1 - p_admit, -1, rng.integers(0, 3, n)).astype(np.int16)
    tier = rng.integers(0, 2, n).astype(np.int8)
    abusive = rng.random(n) < 0.3
    sizes = rng.choice([0, 1, 7, 97, 1_009], 200)
    edges = np.minimum(np.concatenate(([0], np.cumsum(sizes))), n)
    edges = np.append(edges[edges < n], n)
    for window in (1, 40, int(rng.integers(100, 3_000)), int(t[-1]) + 5):
        gap = GapStream(3, 2, window)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            gap.fold(t[lo:hi], sys_rej[lo:hi], ora_rej[lo:hi], tier[lo:hi], abusive[lo:hi])
        got = gap.finish()
        want = _gap_by_masks(t, sys_rej, ora_rej, tier, abusive, 3, 2, window)
        np.testing.assert_array_equal(got, want, err_msg=f"window {window}")
        assert gap.finish().tolist() == got.tolist()  # finish twice: the same array


def test_the_peak_by_every_start() -> None:
    # the reference's own check: every start s of a short run tried, one by one
    rng = np.random.default_rng(5)
    t = np.sort(rng.integers(0, 300, 400)).astype(np.int64)
    sys_rej = np.where(rng.random(400) < 0.5, -1, 0).astype(np.int64)
    ora_rej = np.where(rng.random(400) < 0.5, -1, 0).astype(np.int64)
    d = (sys_rej < 0).astype(np.int64) - (ora_rej < 0).astype(np.int64)
    for window in (1, 13, 77):
        gap = GapStream(1, 0, window)
        for lo in range(0, 400, 33):
            hi = min(lo + 33, 400)
            gap.fold(
                t[lo:hi], sys_rej[lo:hi], ora_rej[lo:hi], np.zeros(hi - lo, np.int64), d[lo:hi] > 0
            )
        sums = [int(d[(t >= s) & (t < s + window)].sum()) for s in range(-window, 302)]
        assert gap.finish()[0].tolist() == [int((d > 0).sum()), int((d < 0).sum()), max(0, *sums)]
