"""Replay a request table through any store, and compare two replays decision by decision.

``replay(requests, limiter, store)`` feeds a table of requests (``time_us``, ``key`` and an
optional ``cost``) to ``store.acquire`` in row order and returns one decision row per request.
With a store that has ``acquire_many`` (``RedisStore``) the rows go in pipelined batches: the
same decisions, one round trip per batch. ``compare(a, b)`` says whether two replays decided
identically and, if not, where they first differ and how often each field differs.

Typical use: tune a limiter against ``MemoryStore``, replay the same table against
``RedisStore(time_source="client")``, and check ``compare(memory, redis).identical``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .algorithms.base import MAX_EXACT_INT, Algorithm, Decision

#: Columns of a decision row, in order (after the request's own columns).
DECISION_COLUMNS = ("allowed", "limit", "remaining", "retry_after_us", "reset_after_us", "outcome")
REQUEST_COLUMNS = ("time_us", "key", "cost")


def _row(requests: pd.DataFrame, pos: int) -> str:
    return f"row {_plain(requests.index[pos])!r} (position {pos})"


def _int_column(requests: pd.DataFrame, name: str, *, minimum: int | None = None) -> list[int]:
    """Column ``name`` as Python ints; ``ValueError`` naming the first bad row otherwise.

    Integer dtypes pass as is. Float or object columns pass only if every value is an integer
    (a float must be integral and below 2**53 in magnitude: larger ones are not exact).
    """
    col = requests[name]
    if pd.api.types.is_integer_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        values = [int(v) for v in col.to_numpy()]
    else:
        values = []
        for pos, v in enumerate(col.tolist()):
            if isinstance(v, bool | np.bool_):
                ok = False
            elif isinstance(v, int | np.integer):
                ok = True
            elif isinstance(v, float | np.floating):
                ok = (
                    bool(np.isfinite(v)) and float(v).is_integer() and abs(float(v)) < MAX_EXACT_INT
                )
            else:
                ok = False
            if not ok:
                raise ValueError(
                    f"requests column {name!r} must hold integers; {_row(requests, pos)} has {v!r}"
                )
            values.append(int(v))
    if minimum is not None:
        for pos, v in enumerate(values):
            if v < minimum:
                raise ValueError(
                    f"requests column {name!r} must be >= {minimum}; {_row(requests, pos)} "
                    f"has {v!r}"
                )
    return values


def _validated(requests: object) -> tuple[list[int], list[Any], list[int]]:
    if not isinstance(requests, pd.DataFrame):
        raise ValueError(f"requests must be a pandas DataFrame, got {type(requests).__name__}")
    for name in ("time_us", "key"):
        if name not in requests.columns:
            raise ValueError(
                f"requests is missing column {name!r} (has {list(requests.columns)!r})"
            )
    times = _int_column(requests, "time_us")
    keys = requests["key"].tolist()
    for pos, k in enumerate(keys):
        if k is None or (isinstance(k, float) and k != k):
            raise ValueError(f"requests column 'key' has no key in {_row(requests, pos)}")
        if isinstance(k, np.integer):
            keys[pos] = int(k)
    if "cost" in requests.columns:
        costs = _int_column(requests, "cost", minimum=0)
    else:
        costs = [1] * len(requests)
    return times, keys, costs


def _resolve(limiter: object) -> Algorithm:
    if isinstance(limiter, Algorithm):
        return limiter
    build = getattr(limiter, "build", None)
    if callable(build):  # an algorithm spec from ratesim.policy
        built = build()
        if isinstance(built, Algorithm):
            return built
    raise ValueError(
        f"limiter must be a ratesim Algorithm (or a spec with .build()), got {limiter!r}"
    )


def replay(requests: pd.DataFrame, limiter: Any, store: Any, *, batch: int = 1000) -> pd.DataFrame:
    """Decide every request of ``requests`` with ``limiter`` on ``store``, in row order.

    ``requests`` has columns ``time_us`` (integer microseconds of the caller's clock), ``key``
    (str or int) and optionally ``cost`` (int >= 0, default 1). Returns a DataFrame with the
    same index and the columns ``time_us, key, cost`` followed by :data:`DECISION_COLUMNS`.
    ``batch`` is the number of requests per round trip for stores with ``acquire_many``.

    A store deciding on its own clock (``RedisStore(time_source="redis")``) cannot replay a
    table: that is a ``ValueError``.
    """
    algo = _resolve(limiter)
    times, keys, costs = _validated(requests)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if getattr(store, "time_source", "client") != "client":
        raise ValueError(
            "replay needs a store that takes the caller's time (time_source='client'), got "
            f"time_source={store.time_source!r}"
        )
    decisions: list[Decision]
    if hasattr(store, "acquire_many"):
        decisions = store.acquire_many(algo, keys, times, costs, batch=batch)
    else:
        decisions = [
            store.acquire(algo, k, t, c) for k, t, c in zip(keys, times, costs, strict=True)
        ]
    out = pd.DataFrame(
        {
            "time_us": np.asarray(times, dtype=np.int64),
            "key": keys,
            "cost": np.asarray(costs, dtype=np.int64),
            "allowed": np.fromiter((d.allowed for d in decisions), dtype=bool, count=len(times)),
            "limit": np.fromiter((d.limit for d in decisions), dtype=np.int64, count=len(times)),
            "remaining": np.fromiter(
                (d.remaining for d in decisions), dtype=np.int64, count=len(times)
            ),
            "retry_after_us": np.fromiter(
                (d.retry_after_us for d in decisions), dtype=np.int64, count=len(times)
            ),
            "reset_after_us": np.fromiter(
                (d.reset_after_us for d in decisions), dtype=np.int64, count=len(times)
            ),
            "outcome": [d.outcome for d in decisions],
        },
        index=requests.index,
    )
    return out


@dataclass(frozen=True)
class CompareReport:
    """Where two replays of the same requests disagree.

    ``differences`` counts, per decision column, the rows whose values differ;
    ``differing_rows`` counts rows with any difference. ``first_position`` is the position (0-based
    row number) of the first differing request, ``first_a`` / ``first_b`` its row in each replay
    (``None`` when identical).
    """

    n: int
    identical: bool
    differing_rows: int
    differences: dict[str, int] = field(default_factory=dict)
    first_position: int | None = None
    first_a: dict[str, Any] | None = None
    first_b: dict[str, Any] | None = None

    def __str__(self) -> str:
        if self.identical:
            return f"identical: {self.n} decisions"
        per_col = ", ".join(f"{c} {k}" for c, k in self.differences.items() if k)
        return (
            f"{self.differing_rows} of {self.n} decisions differ ({per_col}); "
            f"first at request {self.first_position}:\n"
            f"  a: {self.first_a}\n"
            f"  b: {self.first_b}"
        )


def compare(a: pd.DataFrame, b: pd.DataFrame) -> CompareReport:
    """Compare two replays row by row (by position) on :data:`DECISION_COLUMNS`."""
    for name, df in (("a", a), ("b", b)):
        if not isinstance(df, pd.DataFrame):
            raise ValueError(f"{name} must be a DataFrame from replay(), got {type(df).__name__}")
        for col in DECISION_COLUMNS:
            if col not in df.columns:
                raise ValueError(f"{name} is missing decision column {col!r}")
    if len(a) != len(b):
        raise ValueError(f"a and b must decide the same requests: {len(a)} rows vs {len(b)}")
    any_diff = np.zeros(len(a), dtype=bool)
    differences: dict[str, int] = {}
    for col in DECISION_COLUMNS:
        diff = a[col].to_numpy() != b[col].to_numpy()
        differences[col] = int(diff.sum())
        any_diff |= diff
    if not any_diff.any():
        return CompareReport(len(a), True, 0, differences)
    first = int(np.argmax(any_diff))
    return CompareReport(
        len(a),
        False,
        int(any_diff.sum()),
        differences,
        first,
        {str(k): _plain(v) for k, v in a.iloc[first].to_dict().items()},
        {str(k): _plain(v) for k, v in b.iloc[first].to_dict().items()},
    )


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
