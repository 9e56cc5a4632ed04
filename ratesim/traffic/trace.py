"""Trace replay: read recorded requests from CSV or Parquet.

Columns (names matched case-insensitively, surrounding spaces ignored; other columns ignored):

* ``time`` (required): numbers in ``time_unit`` ("s", "ms" or "us"), converted to integer
  microseconds rounded to the nearest (half to even); in Parquet a timestamp column is also
  accepted (its own unit wins). A time must lie within +-2**53 us (about 285 years, room for
  Unix-epoch microseconds): a larger one is refused with its line, never wrapped around;
* ``user`` (required), ``route``, ``tier``: names (surrounding spaces stripped, never empty),
  factorised to codes in order of first appearance in time;
* ``cost``: an integer from 1 to 2**31 - 1 (``2`` and ``2.0`` are fine, ``2.5``, ``0`` and ``-1``
  are not);
* ``abusive``: true/false, 1/0, yes/no.

Every CSV row must have as many fields as the header: a row with more or fewer is refused with
its line (a trailing empty field counts as a field). Unsorted input is sorted by time
**stably** (rows with equal times keep their file order).
Times are made relative to the earliest row unless ``relative=False``, in which case they are
times since the run start and must not be negative.

A malformed value raises :class:`TraceError` naming the file, the line (CSV: the file's line,
the header being line 1, so the first data row is line 2; Parquet: the 1-based row) and the
column. When several values are malformed, the first row in the file is reported, and within a
row the first column in the order above.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import lzma
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from .arrivals import Arrivals
from .specs import MAX_ROUTES, MAX_TIERS

US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
#: Largest |time| in µs a trace may hold (wide enough for Unix-epoch µs; differences of two
#: such times stay far inside int64).
MAX_TRACE_ABS_US = 2**53
#: Largest cost of one row (as ``PopulationSpec.route_cost``).
MAX_TRACE_COST = 2**31 - 1
REQUIRED = ("time", "user")
OPTIONAL = ("route", "tier", "cost", "abusive")
_TRUE = {"1", "true", "t", "yes", "y"}
_FALSE = {"0", "false", "f", "no", "n"}


class TraceError(ValueError):
    """A trace file that cannot be replayed; ``path``, ``line`` and ``column`` say where."""

    def __init__(
        self,
        path: str | Path,
        reason: str,
        *,
        line: int | None = None,
        column: str | None = None,
        where: str = "line",
    ) -> None:
        self.path = str(path)
        self.line = line
        self.column = column
        parts = [self.path]
        if line is not None:
            parts.append(f"{where} {line}")
        if column is not None:
            parts.append(f"column {column!r}")
        super().__init__(": ".join(parts) + ": " + reason)


@dataclass(frozen=True, eq=False)
class TraceTable:
    """A parsed trace, sorted by time; optional columns are ``None`` when absent."""

    time_us: np.ndarray
    user: np.ndarray
    user_names: tuple[str, ...]
    route: np.ndarray | None
    route_names: tuple[str, ...]
    tier: np.ndarray | None
    tier_names: tuple[str, ...]
    cost: np.ndarray | None
    abusive: np.ndarray | None

    def __len__(self) -> int:
        return int(self.time_us.shape[0])


@dataclass
class _Bad:
    """The first malformed value of one column."""

    index: int
    column: str
    reason: str


def _format_of(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".parquet", ".pq"):
        return "parquet"
    if ".csv" in suffixes or ".txt" in suffixes:
        return "csv"
    raise TraceError(path, "cannot tell the format from the name; set format='csv' or 'parquet'")


def _columns(path: Path, names: list[str], where: str) -> dict[str, str]:
    """Map our column names to the file's, refusing missing required ones."""
    found: dict[str, str] = {}
    for name in names:
        key = str(name).strip().lower()
        if key in REQUIRED + OPTIONAL:
            if key in found:
                raise TraceError(path, f"column {key!r} appears twice", column=key, where=where)
            found[key] = name
    for key in REQUIRED:
        if key not in found:
            raise TraceError(
                path,
                f"missing required column {key!r} (found columns: {[str(n) for n in names]})",
                column=key,
                where=where,
            )
    return found


def _first(mask: np.ndarray) -> int | None:
    idx = np.flatnonzero(mask)
    return int(idx[0]) if idx.size else None


def _text(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Stripped strings and a mask of missing (null) values."""
    missing = col.isna().to_numpy()
    text = col.astype(object).where(~missing, "").astype(str).str.strip().to_numpy(dtype=object)
    return text, missing


def _numbers(col: pd.Series, name: str) -> tuple[np.ndarray, _Bad | None]:
    """Numeric values of a column of numbers or numeric strings, and its first bad value."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_integer_dtype(col) and not col.isna().any():
            values = col.to_numpy(dtype=np.int64)
        missing = col.isna().to_numpy()
        text_bad = np.zeros(len(col), dtype=bool)
    else:
        text, missing = _text(col)
        missing = missing | (text == "")
        parsed = pd.to_numeric(pd.Series(text, dtype=object), errors="coerce")
        values = parsed.to_numpy()
        text_bad = ~missing & pd.isna(parsed).to_numpy()
    bad: _Bad | None = None
    floats = values.astype(np.float64, copy=False)
    checks = (
        (missing, "missing value"),
        (text_bad, "not a number"),
        (~missing & ~text_bad & ~np.isfinite(floats), "not a finite number"),
    )
    for mask, reason in checks:
        i = _first(mask)
        if i is not None and (bad is None or i < bad.index):
            bad = _Bad(i, name, reason)
    return values, bad


def _time_us(col: pd.Series, time_unit: str) -> tuple[np.ndarray, _Bad | None]:
    if pd.api.types.is_datetime64_any_dtype(col):
        missing = col.isna().to_numpy()
        if getattr(col.dt, "tz", None) is not None:
            col = col.dt.tz_convert("UTC").dt.tz_localize(None)
        us = col.dt.as_unit("us").to_numpy(dtype="datetime64[us]").view(np.int64)
        bad = (
            _Bad(int(np.flatnonzero(missing)[0]), "time", "missing value")
            if missing.any()
            else None
        )
        return np.where(missing, 0, us), bad
    values, bad = _numbers(col, "time")
    factor = US_PER_UNIT[time_unit]
    if values.dtype.kind in "iu":
        # Compared before multiplying: int64 * factor would wrap around silently.
        out_of_range = np.abs(values.astype(np.float64)) > MAX_TRACE_ABS_US / factor
        safe = np.where(out_of_range, 0, values).astype(np.int64)
        return safe * factor, _worse(bad, out_of_range, time_unit)
    floats = np.where(np.isfinite(values.astype(np.float64)), values, 0.0).astype(np.float64)
    scaled = np.rint(floats * factor)
    out_of_range = np.abs(scaled) > MAX_TRACE_ABS_US
    return np.where(out_of_range, 0.0, scaled).astype(np.int64), _worse(
        bad, out_of_range, time_unit
    )


def _worse(bad: _Bad | None, out_of_range: np.ndarray, time_unit: str) -> _Bad | None:
    """The earlier of ``bad`` and the first out-of-range time."""
    i = _first(out_of_range)
    if i is None or (bad is not None and bad.index <= i):
        return bad
    return _Bad(i, "time", f"time beyond +-2**53 us (about 285 years) in time_unit {time_unit!r}")


def _cost(col: pd.Series) -> tuple[np.ndarray, _Bad | None]:
    values, bad = _numbers(col, "cost")
    floats = values.astype(np.float64)
    ok = np.isfinite(floats)
    safe = np.where(ok, floats, 1.0)
    for mask, reason in (
        (ok & (safe != np.floor(safe)), "cost must be a whole number"),
        (ok & (safe < 0), "cost must not be negative"),
        (ok & (safe < 1), "cost must be >= 1"),
        (ok & (safe > MAX_TRACE_COST), f"cost must be at most {MAX_TRACE_COST} (2**31 - 1)"),
    ):
        i = _first(mask)
        if i is not None and (bad is None or i < bad.index):
            bad = _Bad(i, "cost", reason)
    return np.where(ok & (safe <= MAX_TRACE_COST), safe, 1.0).astype(np.int64), bad


def _names(col: pd.Series, name: str) -> tuple[tuple[np.ndarray, tuple[str, ...]], _Bad | None]:
    """Codes (file order, -1 for missing) and stripped names; factorised before stripping,
    which touches only the distinct values."""
    codes, uniques = pd.factorize(col, use_na_sentinel=True)
    stripped = [str(u).strip() for u in uniques]
    remap, names = pd.factorize(pd.Series(stripped, dtype=object))
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)] if len(remap) else -1, -1)
    empty = [i for i, n in enumerate(names) if n == ""]
    bad_mask = codes < 0
    if empty:
        bad_mask |= codes == empty[0]
    i = _first(bad_mask)
    bad = _Bad(i, name, f"empty {name}") if i is not None else None
    return (codes.astype(np.int64), tuple(str(n) for n in names)), bad


def _flags(col: pd.Series) -> tuple[np.ndarray, _Bad | None]:
    if pd.api.types.is_bool_dtype(col) and not col.isna().any():
        return col.to_numpy(dtype=np.bool_), None
    text, _ = _text(col)
    low = np.char.lower(text.astype(str))
    is_true = np.isin(low, list(_TRUE))
    i = _first(~is_true & ~np.isin(low, list(_FALSE)))
    bad = _Bad(i, "abusive", "expected true/false, 1/0 or yes/no") if i is not None else None
    return is_true, bad


_OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _open_text(path: Path) -> IO[str]:
    opener = _OPENERS.get(path.suffix.lower(), open)
    handle: IO[str] = opener(path, "rt", encoding="utf-8-sig", newline="")
    return handle


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed by its suffix (``.gz``, ``.bz2``, ``.xz``) like pandas."""
    opener = _OPENERS.get(path.suffix.lower(), open)
    handle: IO[bytes] = opener(path, "rb")
    return handle


def _check_ragged(path: Path) -> None:
    """Refuse a CSV row whose field count differs from the header's, naming its line.

    pandas silently drops extra fields (or takes them as an index) and fills missing ones, so
    the check runs first, in pyarrow's strict C++ parser; only when it fails is the file
    scanned in Python for the first such row's line.
    """
    import pyarrow as pa
    import pyarrow.csv as pc

    try:
        with _open_binary(path) as handle:
            pc.read_csv(
                handle,
                parse_options=pc.ParseOptions(newlines_in_values=True),
                convert_options=pc.ConvertOptions(include_columns=[]),
            )
    except pa.ArrowInvalid as exc:
        if "columns, got" not in str(exc):
            return  # not a field count problem: the pandas parser reports it
    except (OSError, EOFError, UnicodeDecodeError):
        return  # unreadable: the pandas parser reports it
    else:
        return
    with _open_text(path) as text:
        reader = csv.reader(text)
        header: list[str] | None = None
        prev_end = 0
        for row in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = row
            elif len(row) != len(header):
                raise TraceError(
                    path,
                    f"the row has {len(row)} fields but the header has {len(header)} "
                    f"({', '.join(header)[:200]})",
                    line=start,
                )


def _csv_line(path: Path, data_index: int) -> int:
    """The file line on which data row ``data_index`` (0-based) starts, skipping blank lines
    as pandas does; exact even when quoted fields span lines."""
    with _open_text(path) as handle:
        reader = csv.reader(handle)
        prev_end, row_no = 0, -1
        for row in reader:
            start, prev_end = prev_end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if row_no == data_index:
                return start
            row_no += 1
    return data_index + 2


def _read_frame(path: Path, fmt: str) -> tuple[pd.DataFrame, dict[str, str]]:
    where = "line" if fmt == "csv" else "row"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            names = list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:
            raise TraceError(path, f"cannot read Parquet: {exc}") from exc
        cols = _columns(path, names, where)
        return pd.read_parquet(path, columns=list(cols.values())), cols
    _check_ragged(path)
    try:
        header = pd.read_csv(path, nrows=0)
        cols = _columns(path, list(header.columns), where)
        # Numbers go through the fast C parser; a column that is not all numeric comes back
        # as text and gets the slow, row-precise checks. Only empty cells count as missing.
        text_cols = {cols[k]: str for k in ("user", "route", "tier", "abusive") if k in cols}
        frame = pd.read_csv(
            path,
            usecols=list(cols.values()),
            dtype=text_cols,
            keep_default_na=False,
            na_values=[""],
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TraceError(path, f"cannot parse CSV: {exc}") from exc
    return frame, cols


def load_trace_table(
    path: str | Path, *, format: str = "auto", time_unit: str = "s", relative: bool = True
) -> TraceTable:
    """Parse, validate and sort a trace (see the module docstring for the rules)."""
    path = Path(path)
    if time_unit not in US_PER_UNIT:
        raise ValueError(f"time_unit must be one of {sorted(US_PER_UNIT)}, got {time_unit!r}")
    if format not in ("auto", "csv", "parquet"):
        raise ValueError(f"format must be 'auto', 'csv' or 'parquet', got {format!r}")
    if not path.exists():
        raise TraceError(path, "no such file")
    fmt = _format_of(path, format)
    frame, cols = _read_frame(path, fmt)
    parsed, bads = _parse_columns(frame, cols, time_unit)
    if not relative:
        i = _first(parsed["time"] < 0)
        if i is not None:
            bads.append(_Bad(i, "time", "negative time (relative=False)"))
    _raise_first(path, fmt, bads, frame, cols)
    return _assemble(path, parsed, relative)


def _parse_columns(
    frame: pd.DataFrame, cols: dict[str, str], time_unit: str
) -> tuple[dict[str, Any], list[_Bad]]:
    parsers: dict[str, Callable[[pd.Series], tuple[Any, _Bad | None]]] = {
        "time": lambda c: _time_us(c, time_unit),
        "user": lambda c: _names(c, "user"),
        "route": lambda c: _names(c, "route"),
        "tier": lambda c: _names(c, "tier"),
        "cost": _cost,
        "abusive": _flags,
    }
    parsed: dict[str, Any] = {}
    bads: list[_Bad] = []
    for key in REQUIRED + OPTIONAL:
        if key in cols:
            values, bad = parsers[key](frame[cols[key]])
            parsed[key] = values
            if bad is not None:
                bads.append(bad)
    return parsed, bads


def _raise_first(
    path: Path, fmt: str, bads: list[_Bad], frame: pd.DataFrame, cols: dict[str, str]
) -> None:
    if not bads:
        return
    order = list(REQUIRED + OPTIONAL)
    bad = min(bads, key=lambda b: (b.index, order.index(b.column)))
    raw = frame[cols[bad.column]].iloc[bad.index]
    if isinstance(raw, np.generic):
        raw = raw.item()
    reason = f"{bad.reason} (value {raw!r})"
    if fmt == "csv":
        raise TraceError(path, reason, line=_csv_line(path, bad.index), column=bad.column)
    raise TraceError(path, reason, line=bad.index + 1, column=bad.column, where="row")


def _codes(
    path: Path, coded: tuple[np.ndarray, tuple[str, ...]], order: np.ndarray, name: str, limit: int
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Renumber codes by first appearance in time order."""
    codes, names = coded
    new, old = pd.factorize(codes[order], sort=False)
    if len(old) > limit:
        raise TraceError(path, f"{len(old)} distinct values, at most {limit}", column=name)
    return new.astype(np.int64), tuple(names[int(o)] for o in old)


def _assemble(path: Path, parsed: dict[str, Any], relative: bool) -> TraceTable:
    time_us = np.asarray(parsed["time"], dtype=np.int64)
    order = np.argsort(time_us, kind="stable")
    time_us = time_us[order]
    if relative and time_us.size:
        time_us = time_us - time_us[0]
    user, user_names = _codes(path, parsed["user"], order, "user", np.iinfo(np.int64).max)
    route = tier = None
    route_names: tuple[str, ...] = ()
    tier_names: tuple[str, ...] = ()
    if "route" in parsed:
        route, route_names = _codes(path, parsed["route"], order, "route", MAX_ROUTES)
    if "tier" in parsed:
        tier, tier_names = _codes(path, parsed["tier"], order, "tier", MAX_TIERS)
    cost = parsed["cost"][order] if "cost" in parsed else None
    abusive = parsed["abusive"][order] if "abusive" in parsed else None
    return TraceTable(
        time_us, user, user_names, route, route_names, tier, tier_names, cost, abusive
    )


def read_trace(
    path: str | Path, *, format: str = "auto", time_unit: str = "s", relative: bool = True
) -> Arrivals:
    """Read a trace into :class:`Arrivals` (see the module docstring for the format).

    Absent optional columns get defaults: tier ``"default"``, route ``"/"``, cost 1, not
    abusive. :func:`ratesim.traffic.generate_arrivals` with a
    :class:`~ratesim.traffic.TraceTraffic` fills them from the population instead.
    """
    t = load_trace_table(path, format=format, time_unit=time_unit, relative=relative)
    n = len(t)
    zeros = np.zeros(n, dtype=np.int64)
    return Arrivals(
        time_us=t.time_us,
        user=t.user,
        tier=t.tier if t.tier is not None else zeros,
        route=t.route if t.route is not None else zeros,
        cost=t.cost if t.cost is not None else np.ones(n, dtype=np.int64),
        abusive=t.abusive if t.abusive is not None else np.zeros(n, dtype=np.bool_),
        tier_names=t.tier_names if t.tier is not None else ("default",),
        route_names=t.route_names if t.route is not None else ("/",),
        user_names=t.user_names,
    )
