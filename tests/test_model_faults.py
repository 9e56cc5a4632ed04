"""Fault specs: outages, failovers, partitions (ratesim.model.faults)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratesim.model import FailoverSpec, OutageSpec, PartitionSpec, SpecModel, outage_at, partitioned
from ratesim.model.faults import (
    OUTAGE_BLACKHOLE,
    OUTAGE_REFUSED,
    OUTAGE_UP,
    fault_tables,
    is_partitioned,
    outage_kind,
)


def test_outage_window_is_start_inclusive_end_exclusive() -> None:
    outages = [OutageSpec(start_s=1.5, end_s=2.25)]
    assert outage_at(outages, 1_499_999, 0) is None
    assert outage_at(outages, 1_500_000, 0) == "refused"
    assert outage_at(outages, 2_249_999, 0) == "refused"
    assert outage_at(outages, 2_250_000, 0) is None
    assert outage_at([], 1_600_000, 0) is None


def test_outage_shards_filter() -> None:
    outages = [OutageSpec(start_s=0, end_s=10, kind="blackhole", shards=[1, 3])]
    assert [outage_at(outages, 5_000_000, s) for s in range(4)] == [
        None,
        "blackhole",
        None,
        "blackhole",
    ]
    every = [OutageSpec(start_s=0, end_s=10)]
    assert all(outage_at(every, 0, s) == "refused" for s in range(8))


def test_first_listed_outage_wins_where_they_overlap() -> None:
    a = OutageSpec(start_s=0, end_s=10, kind="blackhole")
    b = OutageSpec(start_s=5, end_s=20, kind="refused")
    assert outage_at([a, b], 7_000_000, 0) == "blackhole"
    assert outage_at([b, a], 7_000_000, 0) == "refused"
    assert outage_at([a, b], 12_000_000, 0) == "refused"


def test_partition_window_and_nodes() -> None:
    parts = [PartitionSpec(start_s=10, end_s=20, nodes=[0, 2])]
    assert not partitioned(parts, 9_999_999, 0)
    assert partitioned(parts, 10_000_000, 0)
    assert partitioned(parts, 19_999_999, 2)
    assert not partitioned(parts, 19_999_999, 1)
    assert not partitioned(parts, 20_000_000, 0)
    assert not partitioned([], 15_000_000, 0)
    two = parts + [PartitionSpec(start_s=15, end_s=30, nodes=[1])]
    assert partitioned(two, 16_000_000, 1) and partitioned(two, 16_000_000, 0)
    assert partitioned(two, 25_000_000, 1) and not partitioned(two, 25_000_000, 0)


def test_windows_in_whole_microseconds() -> None:
    o = OutageSpec(start_s=0.0000015, end_s=0.1)  # 1.5 µs rounds to 2 µs (ties to even)
    assert (o.start_us, o.end_us) == (2, 100_000)
    assert not o.active(1) and o.active(2)
    with pytest.raises(ValueError, match="end_s"):
        OutageSpec(start_s=1.0, end_s=1.0000001)  # the same microsecond: an empty window


def test_failover_defaults_and_units() -> None:
    f = FailoverSpec(at_s=30)
    assert (f.lost_writes_ms, f.clock_step_ms, f.flush_scripts) == (0.0, 0.0, True)
    g = FailoverSpec(at_s=2.5, lost_writes_ms=12.5, clock_step_ms=-40, flush_scripts=False)
    assert (g.at_us, g.lost_writes_us) == (2_500_000, 12_500)
    assert g.clock_step_ms == -40  # the new primary's clock may be behind


@pytest.mark.parametrize(
    ("cls", "data", "field"),
    [
        (OutageSpec, {"start_s": 5, "end_s": 5}, "end_s"),
        (OutageSpec, {"start_s": 5, "end_s": 4}, "end_s"),
        (OutageSpec, {"start_s": -1, "end_s": 4}, "start_s"),
        (OutageSpec, {"start_s": 0, "end_s": 4, "kind": "slow"}, "kind"),
        (OutageSpec, {"start_s": 0, "end_s": 4, "shards": []}, "shards"),
        (OutageSpec, {"start_s": 0, "end_s": 4, "shards": [-1]}, "shards.0"),
        (OutageSpec, {"start_s": 0, "end_s": 4, "shards": [1, 1]}, "shards"),
        (OutageSpec, {"start_s": 0, "end_s": 4, "shard": 1}, "shard"),
        (FailoverSpec, {"at_s": -1}, "at_s"),
        (FailoverSpec, {"at_s": 1, "lost_writes_ms": -5}, "lost_writes_ms"),
        (FailoverSpec, {"at_s": 1, "clock_step_ms": float("nan")}, "clock_step_ms"),
        (FailoverSpec, {"lost_writes_ms": 5}, "at_s"),
        (PartitionSpec, {"start_s": 3, "end_s": 1, "nodes": [0]}, "end_s"),
        (PartitionSpec, {"start_s": 0, "end_s": 1, "nodes": []}, "nodes"),
        (PartitionSpec, {"start_s": 0, "end_s": 1, "nodes": [0, 0]}, "nodes"),
        (PartitionSpec, {"start_s": 0, "end_s": 1}, "nodes"),
    ],
)
def test_validation_names_the_field(
    cls: type[SpecModel], data: dict[str, object], field: str
) -> None:
    with pytest.raises(ValueError) as err:
        cls.model_validate(data)
    lines = str(err.value).splitlines()
    assert field in lines, lines  # pydantic puts the field path alone on its own line


def test_specs_round_trip_through_plain_data() -> None:
    for spec in (
        OutageSpec(start_s=1, end_s=2, kind="blackhole", shards=[0]),
        FailoverSpec(at_s=3, lost_writes_ms=5, clock_step_ms=2, flush_scripts=False),
        PartitionSpec(start_s=0, end_s=4, nodes=[1, 2]),
    ):
        assert type(spec).model_validate(spec.model_dump()) == spec


# --- the table form both runners read (plain Python here, compiled in ratesim.fast) -----------

_KIND = {None: 0, "refused": 1, "blackhole": 2}


def _faulty(outages: list[OutageSpec], partitions: list[PartitionSpec]) -> Any:
    from test_engine_helpers import make_scenario

    from ratesim.policy import GcraSpec, LayerSpec

    layer = LayerSpec(name="g", algorithm=GcraSpec(max_burst=1, count_per_period=10))
    return make_scenario(
        [layer],
        nodes=3,
        network={"partitions": partitions},
        redis={"shards": 4, "outages": outages},
    )


@settings(max_examples=80, deadline=None)
@given(
    outages=st.lists(
        st.builds(
            lambda s, d, kind, shards: OutageSpec(start_s=s, end_s=s + d, kind=kind, shards=shards),
            st.integers(0, 20).map(lambda v: v / 10),
            st.integers(1, 10).map(lambda v: v / 10),
            st.sampled_from(["refused", "blackhole"]),
            st.sampled_from([None, [0], [1, 3], [2]]),
        ),
        max_size=4,
    ),
    partitions=st.lists(
        st.builds(
            lambda s, d, nodes: PartitionSpec(start_s=s, end_s=s + d, nodes=nodes),
            st.integers(0, 20).map(lambda v: v / 10),
            st.integers(1, 10).map(lambda v: v / 10),
            st.sampled_from([[0], [1, 2], [2]]),
        ),
        max_size=3,
    ),
)
def test_fault_tables_answer_as_the_specs_do(
    outages: list[OutageSpec], partitions: list[PartitionSpec]
) -> None:
    from ratesim.fast import kernels

    tables = fault_tables(_faulty(outages, partitions))
    assert tables.outages.dtype == tables.part_nodes.dtype == np.int64
    for t in range(0, 3_200_000, 50_000):
        for t_us in (t - 1, t, t + 1):
            for shard in range(4):
                want = _KIND[outage_at(outages, t_us, shard)]
                assert outage_kind(tables.outages, tables.outage_shards, t_us, shard) == want
                assert kernels.outage(tables.outages, tables.outage_shards, t_us, shard) == want
            for node in range(3):
                want_p = partitioned(partitions, t_us, node)
                assert is_partitioned(tables.parts, tables.part_nodes, t_us, node) == want_p
                assert kernels.partitioned(tables.parts, tables.part_nodes, t_us, node) == want_p


def test_fault_tables_of_a_scenario_without_faults_are_empty() -> None:
    tables = fault_tables(_faulty([], []))
    assert tables.outages.shape == (0, 3)
    assert tables.outage_shards.shape == (0, 4)
    assert tables.parts.shape == (0, 2)
    assert tables.part_nodes.shape == (0, 3)
    assert outage_kind(tables.outages, tables.outage_shards, 5, 0) == OUTAGE_UP
    assert (OUTAGE_UP, OUTAGE_REFUSED, OUTAGE_BLACKHOLE) == (0, 1, 2)
