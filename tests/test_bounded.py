"""The compiled runner with bounded request tables (``ratesim.fast.bounded``): fed time chunk by
time chunk, its tables compacted between chunks, it makes the whole run's run. Held to the
whole-table runner (``run_fast``) row for row, and its aggregates to the views the Result
computes from the whole run's arrays, on every built-in and on random scenarios, with chunk
sizes small, odd and unaligned with the bins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_aggregates import _same_totals
from test_fast_engine import assert_same, scenarios
from test_sampling import _same_views

import ratesim.engine as engine
import ratesim.fast.bounded as bounded
import ratesim.sampling as sampling
import ratesim.scenarios as builtin
from ratesim import cli
from ratesim.aggregates import RunAggregates
from ratesim.chunks import iter_chunks
from ratesim.compile import CompiledLayer
from ratesim.engine import compile_policy, draw_requests, simulate
from ratesim.fast import run_fast
from ratesim.fast.bounded import BoundedRun, DepthCarry, run_bounded
from ratesim.fast.chunks import slice_chunks
from ratesim.model.redis_server import queue_depths
from ratesim.results import Result, RunData
from ratesim.rng import Streams
from ratesim.scenario import Scenario
from ratesim.sinks import ParquetSink
from ratesim.traffic import generate_arrivals


class Batches:
    """A row consumer keeping every batch it is handed, and checking the contract as it goes:
    contiguous batches in arrival order, layers cut to the same rows, ``finish`` once."""

    def __init__(self) -> None:
        self.parts: list[RunData] = []
        self.layers: list[list[CompiledLayer]] = []
        self.next_row = 0
        self.finished = 0

    def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None:
        assert self.finished == 0
        assert first_row == self.next_row
        n = len(data.arrivals)
        for cl in layers:
            assert len(cl.keys) == n
        assert len(data.depth) == 0 and data.attempt is None and data.origin is None
        self.next_row += n
        self.parts.append(data)
        self.layers.append(layers)

    def finish(self) -> None:
        self.finished += 1

    def column(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in self.parts])

    def column_of_arrivals(self, name: str) -> np.ndarray:
        return np.concatenate([getattr(p.arrivals, name) for p in self.parts])


def _inputs(sc: Scenario, seed: int) -> tuple[Any, Any, list[CompiledLayer]]:
    """The whole run's arrivals, draws and layers, as ``simulate`` makes them."""
    streams = Streams(seed)
    arr = generate_arrivals(sc.traffic, sc.population, sc.duration_us, streams)
    layers = compile_policy(sc, arr)
    return arr, draw_requests(sc, arr, streams), layers


def run_both(
    sc: Scenario, seed: int, chunk_us: int, made: bool = False, min_rows: int = 0
) -> tuple[RunData, list[CompiledLayer], RunAggregates, Batches, BoundedRun]:
    """The whole-table run, and the bounded run in chunks of ``chunk_us`` (its aggregates,
    its batches and what it says of itself), fed the whole run's inputs cut by time, or with
    ``made`` the chunks ``ratesim.chunks.iter_chunks`` makes."""
    arr, draws, layers = _inputs(sc, seed)
    whole = run_fast(sc, arr, draws, layers, seed=seed)
    arr, draws, layers = _inputs(sc, seed)
    agg = RunAggregates(sc)
    batches = Batches()
    if made:
        chunks = iter_chunks(Scenario.model_validate(sc.model_dump()), seed, chunk_us)
    else:
        chunks = slice_chunks(sc.duration_us, arr, draws, layers, chunk_us)
    info = run_bounded(
        sc, chunks, chunk_us, fold=agg, consumers=[batches], heap_size=8, min_rows=min_rows
    )
    return whole, layers, agg, batches, info


def assert_bounded_same(
    sc: Scenario, seed: int, chunk_us: int, made: bool = False, min_rows: int = 0
) -> BoundedRun:
    """The bounded run's rows are the whole run's, row for row, and its aggregates the views
    of the whole run's arrays (``made``: see :func:`run_both`; ``min_rows``: chunks joined
    into steps of so many rows, 0 a step per chunk)."""
    whole, layers, agg, batches, info = run_both(sc, seed, chunk_us, made, min_rows)
    n = len(whole.arrivals)
    assert info.rows == n and batches.next_row == n and batches.finished == 1
    if n:
        got = RunData(
            arrivals=whole.arrivals,
            node=batches.column("node"),
            outcomes=batches.column("outcomes"),
            remaining=batches.column("remaining"),
            decided_us=batches.column("decided_us"),
            rejected_by=batches.column("rejected_by"),
            pool_wait_us=batches.column("pool_wait_us"),
            depth_t_us=whole.depth_t_us,
            depth=whole.depth,
            backend_done_us=None
            if whole.backend_done_us is None
            else batches.column("backend_done_us"),
            held_us=None if whole.held_us is None else batches.column("held_us"),
            store_breakers=info.store_breakers,
        )
        assert_same(whole, got)
        for name in ("time_us", "user", "tier", "route", "cost", "abusive"):
            np.testing.assert_array_equal(
                batches.column_of_arrivals(name), getattr(whole.arrivals, name)
            )
        for pos, cl in enumerate(layers):
            keys = np.concatenate([ls[pos].keys for ls in batches.layers])
            if made:  # ids fixed up front: the same partition of the requests into keys
                pairs = np.unique(np.stack([keys, cl.keys]), axis=1)
                assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
            else:
                np.testing.assert_array_equal(keys, cl.keys)
    res = Result(sc, seed, whole, engine="fast")
    pd.testing.assert_frame_equal(agg.timeseries(), res.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(agg.summary(), res.summary, check_exact=True)
    _same_totals(agg.totals(), res.totals)
    return info


def _retries(name: str) -> bool:
    clients = builtin.get(name, 0.05).clients
    return clients is not None and clients.any_retries


NO_RETRIES = [n for n in builtin.names() if not _retries(n)]


@pytest.mark.parametrize("name", NO_RETRIES)
def test_builtins_bounded_give_the_whole_run(name: str) -> None:
    # 77.777 ms: many chunks, unaligned with the 1 s bins, requests in flight across the cuts;
    # 1.000003 s: about one chunk a bin
    sc = builtin.get(name, 0.05)
    for chunk_us in (77_777, 1_000_003):
        info = assert_bounded_same(sc, 3, chunk_us)
        assert info.rows > 100
        assert info.chunks == -(-sc.duration_us // chunk_us)
    # 10 ms chunks joined into steps of 200 rows or more
    info = assert_bounded_same(sc, 3, 10_000, min_rows=200)
    assert 1 < info.chunks < info.rows / 200 + 1


@pytest.mark.parametrize("name", NO_RETRIES)
def test_builtins_bounded_from_made_chunks_give_the_whole_run(name: str) -> None:
    """Fed by ``iter_chunks`` (arrivals, draws and key ids made chunk by chunk), the same."""
    sc = builtin.get(name, 0.05)
    assert assert_bounded_same(sc, 4, 123_457, made=True).rows > 100


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sc=scenarios(),
    seed=st.integers(0, 2**32 - 1),
    chunk_us=st.sampled_from([211, 997, 20_011, 10**9]),
)
def test_random_scenarios_bounded_give_the_whole_run(
    sc: Scenario, seed: int, chunk_us: int
) -> None:
    assert_bounded_same(sc, seed, chunk_us, made=chunk_us in (997, 10**9), min_rows=chunk_us % 7)


def test_the_tables_stay_bounded_by_the_chunk() -> None:
    """The tables hold a chunk's rows and those in flight, not the run: at 50 ms chunks
    exchange-surge's tables never hold more than a few chunks' worth of its requests."""
    sc = builtin.get("exchange-surge", 0.05)
    info = assert_bounded_same(sc, 1, 50_000)
    per_chunk = info.rows / info.chunks
    assert info.peak_rows < 0.05 * info.rows
    assert info.peak_rows < 20 * per_chunk


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    shards=st.integers(1, 3),
    n=st.integers(0, 60),
)
def test_depths_carried_across_cuts_are_the_whole_runs(
    data: st.DataObject, shards: int, n: int
) -> None:
    """Commands in execution order (arrivals non-decreasing; per shard FIFO, so finishes
    non-decreasing), cut at any instants: the carried depths equal ``queue_depths`` of them
    all (zero service times included, where a command's depth counts later ones)."""
    gaps = data.draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    at = np.cumsum(np.array(gaps, dtype=np.int64))
    sh = np.array(
        data.draw(st.lists(st.integers(0, shards - 1), min_size=n, max_size=n)), dtype=np.int64
    )
    svc = np.array(data.draw(st.lists(st.integers(0, 7), min_size=n, max_size=n)), dtype=np.int64)
    fin = np.zeros(n, dtype=np.int64)
    busy = np.zeros(shards, dtype=np.int64)
    for k in range(n):  # the FIFO shard: start when it is free
        fin[k] = max(busy[sh[k]], at[k]) + svc[k]
        busy[sh[k]] = fin[k]
    shard = sh if shards > 1 else None
    expected = queue_depths(at, fin, shard)
    # the runner cuts at chunk ends (instants): commands of one instant are in one chunk
    limits = sorted(data.draw(st.lists(st.integers(0, 5 * n + 1), max_size=6)))
    cuts = [int(c) for c in np.searchsorted(at, limits)]
    carry = DepthCarry()
    got = []
    for lo, hi in zip([0, *cuts], [*cuts, n], strict=True):
        got.append(carry.depths(at[lo:hi], fin[lo:hi], None if shard is None else shard[lo:hi]))
    np.testing.assert_array_equal(np.concatenate(got) if got else np.zeros(0), expected)


def test_clients_that_retry_are_refused_by_name() -> None:
    sc = builtin.get("retry-storm", 0.05)
    arr, draws, layers = _inputs(sc, 1)
    with pytest.raises(ValueError, match="clients that retry"):
        run_bounded(sc, slice_chunks(sc.duration_us, arr, draws, layers, 10**6), 10**6)


def test_slice_chunks_cover_every_row_once() -> None:
    sc = builtin.get("single-node-ideal", 0.05)
    arr, draws, layers = _inputs(sc, 2)
    parts = list(slice_chunks(sc.duration_us, arr, draws, layers, 333_333))
    assert len(parts) == -(-sc.duration_us // 333_333)
    for k, (a, d, ls) in enumerate(parts):
        assert ((a.time_us >= k * 333_333) & (a.time_us < (k + 1) * 333_333)).all()
        assert len(d.node) == len(a) and all(len(cl.keys) == len(a) for cl in ls)
    np.testing.assert_array_equal(np.concatenate([a.time_us for a, _, _ in parts]), arr.time_us)
    with pytest.raises(ValueError, match="chunk_us"):
        list(slice_chunks(sc.duration_us, arr, draws, layers, 0))


# --- wired: simulate(requests="sample" | "none") and `ratesim run --requests all` ------------


@pytest.mark.parametrize("name", ["redis-saturation", "latency-spike-breaker", "autoscale"])
def test_simulate_bounded_keeps_the_whole_runs_views_and_streams_every_row(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``requests="none"`` (bounded, in chunks of 0.1 s here) has the whole run's time series,
    summary, totals and oracle gap; a Parquet sink fed by it reads back as the whole run's
    ``requests``."""
    monkeypatch.setattr(engine, "BOUNDED_CHUNK_US", 100_003)
    monkeypatch.setattr(bounded, "MIN_STEP_ROWS", 50)
    sc = builtin.get(name, 0.05)
    full = simulate(sc, seed=6, engine="fast")
    path = tmp_path / "requests.parquet"
    sink = ParquetSink(path, [layer.name for layer in sc.policy.layers], row_group_rows=97)
    none = simulate(sc, seed=6, engine="fast", requests="none", sinks=[sink])
    assert none.requests_kind == "none" and len(none.requests) == 0
    _same_views(full, none)
    whole = tmp_path / "whole.parquet"
    full.requests.to_parquet(whole, index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(whole), check_exact=True)


def test_run_requests_all_writes_every_row_as_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``AUTO_ALL_ROWS`` the command keeps a sample in memory (a bounded run) yet writes
    every row to requests.parquet, the same file as a run holding every row writes."""
    argv = ["run", "latency-spike", "--scale", "0.05", "--seed", "2", "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "a"), "--no-plots"]) == 0
    want = pd.read_parquet(tmp_path / "a" / "requests.parquet")
    monkeypatch.setattr(sampling, "AUTO_ALL_ROWS", 10)
    monkeypatch.setattr(sampling, "SAMPLE_ROWS", 10)
    calls: list[int] = []
    real = bounded.run_bounded

    def spy(*args: Any, **kw: Any) -> BoundedRun:
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(bounded, "run_bounded", spy)
    assert cli.main([*argv, "--out", str(tmp_path / "b")]) == 0
    assert calls == [1]
    got = pd.read_parquet(tmp_path / "b" / "requests.parquet")
    assert len(got) > 100
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert not list((tmp_path / "b").glob("*.png"))  # the plots need every row in memory
