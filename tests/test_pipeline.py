"""The bounded runner's pipeline (``ratesim.fast.pipeline``): the next step made on one thread
and the released rows folded on another while the loop decides. Held to the sequential path
(``threads=False``, every stage inline) output for output on every built-in without clients
that retry; its stages keep their order, bound the work in flight and raise the original error
in the caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_bounded import NO_RETRIES, Batches, _inputs

import ratesim.fast.bounded as bounded
import ratesim.scenarios as builtin
from ratesim.aggregates import RunAggregates
from ratesim.chunks import iter_chunks
from ratesim.compile import CompiledLayer
from ratesim.fast.bounded import run_bounded
from ratesim.fast.chunks import slice_chunks
from ratesim.fast.pipeline import MAX_PENDING, Pipeline
from ratesim.oracle_stream import OracleGapConsumer
from ratesim.results import RunData
from ratesim.sampling import RowSample
from ratesim.scenario import Scenario

# --- the pipeline alone ---------------------------------------------------------------------


@pytest.mark.parametrize("threads", [False, True])
def test_ahead_yields_every_item_in_order(threads: bool) -> None:
    with Pipeline(threads) as pipe:
        assert list(pipe.ahead(iter(range(50)))) == list(range(50))
        assert list(pipe.ahead(iter([]))) == []


def test_ahead_makes_the_next_item_on_another_thread() -> None:
    made_on: list[str] = []

    def items() -> Iterator[int]:
        for i in range(4):
            made_on.append(threading.current_thread().name)
            yield i

    with Pipeline(True) as pipe:
        assert list(pipe.ahead(items())) == [0, 1, 2, 3]
    assert all(name.startswith("ratesim-gen") for name in made_on)


@pytest.mark.parametrize("threads", [False, True])
def test_jobs_run_in_submission_order_on_one_thread(threads: bool) -> None:
    done: list[int] = []
    names: set[str] = set()

    def job(i: int) -> Any:
        def run() -> None:
            time.sleep(0.001 * (i % 3))  # uneven jobs: order must not depend on their length
            names.add(threading.current_thread().name)
            done.append(i)

        return run

    with Pipeline(threads) as pipe:
        for i in range(30):
            pipe.submit(job(i))
        pipe.drain()
    assert done == list(range(30))
    assert len(names) == 1


def test_at_most_max_pending_jobs_are_in_flight() -> None:
    live = 0
    most = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal live, most
        with lock:
            live += 1
        time.sleep(0.002)
        with lock:
            live -= 1

    submitted = 0
    with Pipeline(True) as pipe:
        for _ in range(20):
            pipe.submit(job)
            submitted += 1
            # jobs submitted and not yet collected: the caller blocks beyond MAX_PENDING
            most = max(most, len(pipe._jobs))
        pipe.drain()
    assert most <= MAX_PENDING and submitted == 20


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("threads", [False, True])
def test_a_jobs_error_is_raised_in_the_caller(threads: bool) -> None:
    err = Boom("fold failed")

    def bad() -> None:
        raise err

    with pytest.raises(Boom) as caught, Pipeline(threads) as pipe:
        pipe.submit(bad)
        for _ in range(5):
            pipe.submit(lambda: None)
        pipe.drain()
    assert caught.value is err


@pytest.mark.parametrize("threads", [False, True])
def test_a_generators_error_is_raised_in_the_caller(threads: bool) -> None:
    err = Boom("chunk failed")

    def items() -> Iterator[int]:
        yield 1
        raise err

    got = []
    with pytest.raises(Boom) as caught, Pipeline(threads) as pipe:
        for x in pipe.ahead(items()):
            got.append(x)
    assert caught.value is err and got == [1]


# --- the bounded run, threaded against sequential -------------------------------------------


def _run(
    sc: Scenario, seed: int, chunk_us: int, threads: bool, made: bool, min_rows: int | None
) -> tuple[Any, ...]:
    """A bounded run with every kind of consumer: aggregates, oracle gap, kept rows, batches."""
    if made:
        chunks: Any = iter_chunks(Scenario.model_validate(sc.model_dump()), seed, chunk_us)
    else:
        arr, draws, layers = _inputs(sc, seed)
        chunks = slice_chunks(sc.duration_us, arr, draws, layers, chunk_us)
    agg = RunAggregates(sc)
    gap = OracleGapConsumer([layer.name for layer in sc.policy.layers])
    sample = RowSample(seed, size=50)
    batches = Batches()
    info = run_bounded(
        sc, chunks, chunk_us, fold=agg, consumers=[gap, sample, batches], heap_size=8,
        min_rows=min_rows, threads=threads,
    )  # fmt: skip
    return info, agg, gap, sample, batches


def _same_data(a: RunData, b: RunData) -> None:
    for name in ("node", "outcomes", "remaining", "decided_us", "rejected_by", "pool_wait_us",
                 "backend_done_us", "held_us"):  # fmt: skip
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
    for name in ("time_us", "user", "tier", "route", "cost", "abusive"):
        np.testing.assert_array_equal(getattr(a.arrivals, name), getattr(b.arrivals, name))


def _same_layers(a: list[CompiledLayer], b: list[CompiledLayer]) -> None:
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.keys, y.keys)
        assert (x.applies_np is None) == (y.applies_np is None)
        assert x.shard == y.shard


def assert_threads_same(
    sc: Scenario, seed: int, chunk_us: int, made: bool = False, min_rows: int | None = 0
) -> None:
    """Every output of the threaded run equals the sequential run's."""
    seq = _run(sc, seed, chunk_us, False, made, min_rows)
    thr = _run(sc, seed, chunk_us, True, made, min_rows)
    (i1, a1, g1, s1, b1), (i2, a2, g2, s2, b2) = seq, thr
    assert (i1.rows, i1.chunks, i1.peak_rows) == (i2.rows, i2.chunks, i2.peak_rows)
    if i1.store_breakers is None:
        assert i2.store_breakers is None
    else:
        np.testing.assert_array_equal(i1.store_breakers, i2.store_breakers)
    pd.testing.assert_frame_equal(a1.timeseries(), a2.timeseries(), check_exact=True)
    pd.testing.assert_frame_equal(a1.summary(), a2.summary(), check_exact=True)
    assert a1.totals() == a2.totals()
    pd.testing.assert_frame_equal(g1.frame(), g2.frame(), check_exact=True)
    np.testing.assert_array_equal(s1.rows, s2.rows)
    assert (s1.data is None) == (s2.data is None)
    if s1.data is not None:
        _same_data(s1.data, s2.data)
    assert [len(p.arrivals) for p in b1.parts] == [len(p.arrivals) for p in b2.parts]
    for p, q in zip(b1.parts, b2.parts, strict=True):
        _same_data(p, q)
    for la, lb in zip(b1.layers, b2.layers, strict=True):
        _same_layers(la, lb)
    assert b1.finished == b2.finished == 1


@pytest.mark.parametrize("name", NO_RETRIES)
def test_builtins_threaded_equal_sequential(name: str) -> None:
    sc = builtin.get(name, 0.05)
    assert_threads_same(sc, 5, 77_777)  # many steps, rows in flight across the cuts
    assert_threads_same(sc, 6, 123_457, made=True, min_rows=None)  # made chunks, joined


def test_the_default_is_the_module_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``threads=None`` takes :data:`ratesim.fast.bounded.THREADS`: the fold runs on the
    folding thread when it is on, in the caller when it is off."""

    class Where(Batches):
        """Batches, noting the threads that fold them."""

        def __init__(self) -> None:
            super().__init__()
            self.seen: set[str] = set()

        def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None:
            self.seen.add(threading.current_thread().name)
            super().fold(data, layers, first_row)

    sc = builtin.get("exchange-surge", 0.02)
    for switch, expect in ((True, "ratesim-fold"), (False, threading.current_thread().name)):
        monkeypatch.setattr(bounded, "THREADS", switch)
        where = Where()
        run_bounded(sc, iter_chunks(sc, 1, 100_000), 100_000, consumers=[where], min_rows=0)
        assert where.seen and all(n.startswith(expect) for n in where.seen)


@pytest.mark.parametrize("threads", [False, True])
def test_a_consumers_error_reaches_the_caller(threads: bool) -> None:
    err = Boom("sink full")

    class Failing(Batches):
        def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None:
            super().fold(data, layers, first_row)
            if len(self.parts) == 3:
                raise err

    sc = builtin.get("exchange-surge", 0.02)
    with pytest.raises(Boom) as caught:
        run_bounded(sc, iter_chunks(sc, 1, 50_000), 50_000, consumers=[Failing()], min_rows=0,
                    threads=threads)  # fmt: skip
    assert caught.value is err


@pytest.mark.parametrize("threads", [False, True])
def test_a_chunk_sources_error_reaches_the_caller(threads: bool) -> None:
    err = Boom("trace unreadable")
    sc = builtin.get("exchange-surge", 0.02)

    def chunks() -> Iterator[Any]:
        for k, chunk in enumerate(iter_chunks(sc, 1, 50_000)):
            if k == 4:
                raise err
            yield chunk

    with pytest.raises(Boom) as caught:
        run_bounded(sc, chunks(), 50_000, consumers=[Batches()], min_rows=0, threads=threads)
    assert caught.value is err


@pytest.mark.parametrize("threads", [False, True])
def test_the_progress_bar_counts_every_row(threads: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    class Bar:
        def __init__(self) -> None:
            self.n = 0
            self.closed = False
            self.seen: list[int] = []

        def update(self, k: int) -> None:
            self.n += k
            self.seen.append(self.n)

        def close(self) -> None:
            self.closed = True

    bar = Bar()
    monkeypatch.setattr(bounded, "_bar", lambda progress: bar if progress else None)
    sc = builtin.get("exchange-surge", 0.02)
    info = run_bounded(sc, iter_chunks(sc, 1, 50_000), 50_000, progress=True, min_rows=0,
                       threads=threads)  # fmt: skip
    assert bar.closed and bar.n == info.rows > 0
    assert bar.seen == sorted(bar.seen) and len(bar.seen) == info.chunks
