"""Trace replay from CSV and Parquet: round trips, sorting, errors naming line and column."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ratesim.rng import Streams
from ratesim.traffic import (
    Arrivals,
    PopulationSpec,
    TraceError,
    TraceTraffic,
    generate_arrivals,
    iter_arrivals,
    read_trace,
)

US = 1_000_000
DATA = Path(__file__).parent / "data"

FRAME = pd.DataFrame(
    {
        "time": [2.5, 1.0, 1.0, 3.000001, 1.25],
        "user": ["bob", "alice", "carol", "alice", "dave"],
        "route": ["/b", "/a", "/a", "/c", "/a"],
        "tier": ["gold", "silver", "silver", "silver", "gold"],
        "cost": [2, 1, 1, 5, 1],
    }
)
# Stable sort of FRAME by time: rows 1, 2 (tie, file order), 4, 0, 3.
ORDER = [1, 2, 4, 0, 3]


def _expected_codes(values: list[str]) -> tuple[list[int], tuple[str, ...]]:
    names: list[str] = []
    codes = []
    for v in values:
        if v not in names:
            names.append(v)
        codes.append(names.index(v))
    return codes, tuple(names)


def _check_frame_trace(a: Arrivals) -> None:
    times_us = [round(FRAME["time"][i] * US) for i in ORDER]
    assert a.time_us.tolist() == [t - times_us[0] for t in times_us]
    for col, codes_attr, names_attr in (
        ("user", "user", "user_names"),
        ("route", "route", "route_names"),
        ("tier", "tier", "tier_names"),
    ):
        codes, names = _expected_codes([FRAME[col][i] for i in ORDER])
        assert getattr(a, codes_attr).tolist() == codes, col
        assert getattr(a, names_attr) == names, col
    assert a.cost.tolist() == [FRAME["cost"][i] for i in ORDER]
    assert not a.abusive.any()


def test_csv_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    FRAME.to_csv(path, index=False)
    _check_frame_trace(read_trace(path))


def test_parquet_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    FRAME.to_parquet(path, index=False)
    _check_frame_trace(read_trace(path))


def test_parquet_integer_microseconds_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "t.pq"
    frame = pd.DataFrame(
        {
            "time": np.array([1_700_000_000_000_123, 1_700_000_000_000_000], dtype=np.int64),
            "user": [7, 9],
            "abusive": [True, False],
        }
    )
    frame.to_parquet(path)
    a = read_trace(path, time_unit="us")
    assert a.time_us.tolist() == [0, 123]
    assert a.user_names == ("9", "7")
    assert a.abusive.tolist() == [False, True]
    assert a.tier_names == ("default",) and a.route_names == ("/",)
    assert a.cost.tolist() == [1, 1]


def test_parquet_timestamp_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    times = pd.to_datetime(
        ["2024-01-11 14:30:00.5", "2024-01-11 14:30:00.0", "2024-01-11 14:30:02.0"]
    )
    pd.DataFrame({"time": times, "user": ["a", "b", "c"]}).to_parquet(path)
    a = read_trace(path)
    assert a.time_us.tolist() == [0, 500_000, 2_000_000]


def test_units_relative_and_header_spelling(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(" Time ,USER,extra\n1500,a,x\n250.4,b,y\n")
    a = read_trace(path, time_unit="ms", relative=False)
    assert a.time_us.tolist() == [250_400, 1_500_000]
    assert a.user_names == ("b", "a")
    # 0.3 s must be 300000 us, not 299999 (round to nearest, not floor).
    path.write_text("time,user\n0.3,a\n0.0000005,b\n0.0000015,c\n")
    assert read_trace(path, relative=False).time_us.tolist() == [0, 2, 300_000]


def test_gzip_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("time,user\n1,a\n2,b\nbad,c\n")
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert (exc.value.line, exc.value.column) == (4, "time")


MALFORMED = [
    ("time,user\n1,a\n,b\n", 3, "time", "missing"),
    ("time,user\n1,a\n2,b\nabc,c\n", 4, "time", "not a number"),
    ("time,user\n1,a\nnan,b\n", 3, "time", "not a number"),
    ("time,user\ninf,a\n", 2, "time", "finite"),
    ("time,user,cost\n1,a,1\n2,b,-2\n", 3, "cost", "negative"),
    ("time,user,cost\n1,a,1.5\n", 2, "cost", "whole number"),
    ("time,user,cost\n1,a,1\n2,b,0\n", 3, "cost", ">= 1"),
    ("time,user,cost\n1,a,\n", 2, "cost", "missing"),
    ("time,user,cost\n1,a,two\n", 2, "cost", "not a number"),
    ("time,user\n1,a\n2,\n", 3, "user", "empty user"),
    ("time,user\n1,a\n2,   \n", 3, "user", "empty user"),
    ("time,user,route\n1,a,/x\n2,b,\n", 3, "route", "empty route"),
    ("time,user,tier\n1,a,\n", 2, "tier", "empty tier"),
    ("time,user,abusive\n1,a,no\n2,b,maybe\n", 3, "abusive", "true/false"),
    # blank lines are skipped but still counted
    ("time,user\n1,a\n\n2,b\nx,c\n", 5, "time", "not a number"),
    # a quoted field spanning two lines
    ('time,user\n1,"a\nb"\n2,c\n,d\n', 5, "time", "missing"),
    # the first bad row wins; within a row, time before user
    ("time,user\n1,a\nx,\n3,\n", 3, "time", "not a number"),
    ("time,user,cost\n1,a,-1\n,b,1\n", 2, "cost", "negative"),
    # times beyond +-2**53 us are refused, never wrapped around int64 (issue 9)
    ("time,user\n1,a\n18446744073709,b\n", 3, "time", "2**53"),
    ("time,user\n1e300,a\n", 2, "time", "2**53"),
    ("time,user\n-9007199255,a\n", 2, "time", "2**53"),
    ("time,user,cost\n1,a,2147483648\n", 2, "cost", "at most 2147483647"),
]


@pytest.mark.parametrize(("text", "line", "column", "reason"), MALFORMED)
def test_malformed_csv_names_line_and_column(
    tmp_path: Path, text: str, line: int, column: str, reason: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    err = exc.value
    assert isinstance(err, ValueError)
    assert (err.line, err.column) == (line, column)
    msg = str(err)
    assert str(path) in msg and f"line {line}" in msg and repr(column) in msg and reason in msg


def test_negative_time_refused_when_not_relative(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,user\n1,a\n-2,b\n")
    with pytest.raises(TraceError) as exc:
        read_trace(path, relative=False)
    assert (exc.value.line, exc.value.column) == (3, "time")
    assert read_trace(path).time_us.tolist() == [0, 3 * US]


@pytest.mark.parametrize(("text", "column"), [("time,route\n1,/\n", "user"), ("user\na\n", "time")])
def test_missing_required_column(tmp_path: Path, text: str, column: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=f"missing required column '{column}'") as exc:
        read_trace(path)
    assert exc.value.column == column


def test_malformed_parquet_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    pd.DataFrame({"time": [1.0, 2.0, None], "user": ["a", "b", "c"]}).to_parquet(path)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert (exc.value.line, exc.value.column) == (3, "time")
    assert "row 3" in str(exc.value)
    pd.DataFrame({"time": [1, 2], "user": ["a", None], "cost": [1, 2]}).to_parquet(path)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert (exc.value.line, exc.value.column) == (2, "user")
    pd.DataFrame({"time": [1, 2], "user": ["a", "b"], "cost": [1.0, 2.5]}).to_parquet(path)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    assert (exc.value.line, exc.value.column) == (2, "cost")
    pd.DataFrame({"time": [1, 2], "who": ["a", "b"]}).to_parquet(path)
    with pytest.raises(TraceError, match="missing required column 'user'"):
        read_trace(path)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{}")
    with pytest.raises(TraceError, match="format"):
        read_trace(path)
    with pytest.raises(TraceError, match="no such file"):
        read_trace(tmp_path / "nope.csv")
    path.write_text("time,user\n1,a\n")
    assert len(read_trace(path, format="csv")) == 1


def test_fixture_trace_with_jitter() -> None:
    path = DATA / "trace_1s.csv"
    raw = pd.read_csv(path)
    spec = TraceTraffic(path=str(path), jitter=1.0)
    pop = PopulationSpec(tiers={"gold": 0.5, "silver": 0.5}, route_cost={"/": 4})
    a = generate_arrivals(spec, pop, 3600 * US, Streams(1))
    b = generate_arrivals(spec, pop, 3600 * US, Streams(1))
    c = generate_arrivals(spec, pop, 3600 * US, Streams(2))
    assert len(a) == len(raw) and a.equals(b)
    assert not np.array_equal(a.time_us, c.time_us)
    assert np.all(np.diff(a.time_us) >= 0)
    # Every row stays inside its own second; the per-second counts are the trace's.
    seconds = (raw["time"] - raw["time"].min()).to_numpy()
    np.testing.assert_array_equal(
        np.bincount(a.time_us // US), np.bincount(seconds.astype(np.int64))
    )
    assert np.any(a.time_us % US != 0)
    # Tiers come from the population, one per user; route "/" costs 4 as the spec says.
    assert a.tier_names == ("gold", "silver")
    for u in np.unique(a.user):
        assert len(np.unique(a.tier[a.user == u])) == 1
    assert np.all(a.cost == np.where(np.array(a.route_names)[a.route] == "/", 4, 1))
    # The chunked replay is the one-shot replay.
    parts = list(iter_arrivals(spec, pop, 3600 * US, Streams(1), 7 * US))
    assert Arrivals.concat(parts).equals(a)


def test_trace_duration_cut_and_speedup(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("time,user,route\n0,a,/x\n1,b,/y\n2,c,/x\n3,a,/x\n")
    spec = TraceTraffic(path=str(path), speedup=2.0)
    pop = PopulationSpec(route_cost={"/": 1})
    a = generate_arrivals(spec, pop, 1_200_000, Streams(0))
    assert a.time_us.tolist() == [0, 500_000, 1_000_000]
    assert a.route_names == ("/x", "/y")
    assert a.user_names == ("a", "b", "c")
    # A trace without routes gets them drawn from the population's routes.
    path.write_text("time,user\n0,a\n1,b\n2,c\n3,a\n")
    pop = PopulationSpec(routes={"/p": 1.0, "/q": 0.0}, route_cost={"/p": 9})
    a = generate_arrivals(TraceTraffic(path=str(path)), pop, 10 * US, Streams(0))
    assert a.route_names == ("/p", "/q") and not a.route.any()
    assert a.cost.tolist() == [9, 9, 9, 9]
