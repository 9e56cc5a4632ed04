"""The Parquet sink (``ratesim.sinks.ParquetSink``): a run's rows written batch by batch read
back as the whole run's ``requests.parquet`` (``Result.requests.to_parquet``, as ``ratesim run
--out`` writes it), value for value, whatever the batch cuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _batches import awkward_cuts, batches

import ratesim.scenarios as builtin
from ratesim.engine import compile_policy, simulate
from ratesim.results import Result
from ratesim.sinks import ParquetSink

NO_CLIENTS = [n for n in builtin.names() if not builtin.get(n, 0.05).clients]


def _sunk(res: Result, cuts: np.ndarray, path: Path, group: int) -> ParquetSink:
    layers = compile_policy(res.scenario, res.data.arrivals)
    sink = ParquetSink(path, res.layer_names, row_group_rows=group)
    for batch, cut, first in batches(res.data, layers, cuts):
        sink.fold(batch, cut, first)
    sink.finish()
    return sink


def _row_groups(sizes: list[int], group: int) -> int:
    """Row groups for batches of ``sizes`` rows: one each time ``group`` rows or more wait,
    one for the rest."""
    count = waiting = 0
    for size in sizes:
        waiting += size
        if waiting >= group:
            count, waiting = count + 1, 0
    return count + (waiting > 0)


@pytest.mark.parametrize("name", NO_CLIENTS)
def test_builtins_written_in_batches_read_back_as_the_whole_run(name: str, tmp_path: Path) -> None:
    res = simulate(builtin.get(name, 0.05), seed=3)
    n = len(res.data.arrivals)
    whole = tmp_path / "whole.parquet"
    res.requests.to_parquet(whole, index=False)  # what write_outputs does for requests="all"
    want = pd.read_parquet(whole)
    cuts = awkward_cuts(res.data.arrivals.time_us, np.random.default_rng(4))
    for group in (1, 97, n + 1):
        path = tmp_path / f"sunk{group}.parquet"
        sink = _sunk(res, cuts, path, group)
        assert sink.rows == n
        got = pd.read_parquet(path)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        sizes = [len(b.arrivals) for b, _, _ in batches(res.data, [], cuts)]
        assert pq.ParquetFile(path).metadata.num_row_groups == _row_groups(sizes, group)


def test_no_rejection_at_all_reads_back_as_none(tmp_path: Path) -> None:
    # a run's first rows, all admitted: rejected_by holds only None (pyarrow's null type)
    res = simulate(builtin.get("single-node-ideal", 0.05), seed=1)
    admitted = int(np.argmin(res.data.rejected_by < 0)) or len(res.data.arrivals)
    assert admitted > 10
    layers = compile_policy(res.scenario, res.data.arrivals)
    sink = ParquetSink(tmp_path / "a.parquet", res.layer_names, row_group_rows=4)
    for batch, lay, first in batches(res.data, layers, np.array([0, 3, 7, admitted])):
        if first < admitted:
            sink.fold(batch, lay, first)
    sink.finish()
    got = pd.read_parquet(tmp_path / "a.parquet")
    whole = tmp_path / "whole.parquet"
    res.requests.iloc[:admitted].to_parquet(whole, index=False)
    want = pd.read_parquet(whole)
    assert len(got) == admitted and got["rejected_by"].isna().all()
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert pq.ParquetFile(tmp_path / "a.parquet").metadata.num_row_groups == 2  # 3+4, the rest


def test_out_of_order_batches_are_refused(tmp_path: Path) -> None:
    res = simulate(builtin.get("single-node-ideal", 0.05), seed=1)
    layers = compile_policy(res.scenario, res.data.arrivals)
    sink = ParquetSink(tmp_path / "b.parquet", res.layer_names)
    batch, lay, _ = next(batches(res.data, layers, np.array([5])))
    with pytest.raises(ValueError, match="first_row 3 is not the next row, 0"):
        sink.fold(batch, lay, 3)
    with pytest.raises(ValueError, match="row_group_rows must be >= 1"):
        ParquetSink(tmp_path / "c.parquet", [], row_group_rows=0)
