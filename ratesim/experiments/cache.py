"""A results cache for sweeps: finished runs are kept on disk and never run twice.

``RunCache(directory)`` keeps one Parquet file (of one row group) per finished run, named by a
hash of everything the run's row depends on: the point's scenario (which includes the point's
parameter values), the seed, the engine, the extra metric callables (name and code) and the
cache format and ratesim versions. A file is written to a temporary name and renamed into place,
so a sweep killed at any moment leaves only whole runs behind: run it again and it resumes with
the runs that are missing; run a finished sweep again and it reads every row from the cache.
Several sweeps (and their scenarios) may share one directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..scenario import Scenario
from .metrics import MetricFn

__all__ = ["CACHE_FORMAT", "RunCache", "metric_identity"]

#: Bump when the meaning of a cached row changes.
CACHE_FORMAT = 1


def metric_identity(fn: MetricFn) -> str:
    """A stable name for a metric callable: module, qualified name and a hash of its code."""
    target = fn if hasattr(fn, "__code__") else type(fn).__call__
    code = getattr(target, "__code__", None)
    digest = hashlib.sha256(code.co_code).hexdigest()[:12] if code is not None else ""
    owner = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{owner.__module__}.{owner.__qualname__}#{digest}"


class RunCache:
    """Finished runs in ``directory`` (created if missing), one Parquet file each."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(
                f"cache directory {str(directory)!r} cannot be created: {exc}"
            ) from None
        if not self.directory.is_dir():
            raise ValueError(f"cache {str(directory)!r} is not a directory")

    def __repr__(self) -> str:
        return f"RunCache({str(self.directory)!r})"

    @staticmethod
    def key(scenario: Scenario, seed: int, engine: str, metrics: Sequence[MetricFn]) -> str:
        """The hash that names one run's file."""
        from .. import __version__

        material = {
            "format": CACHE_FORMAT,
            "ratesim": __version__,
            "scenario": scenario.to_dict(),
            "seed": int(seed),
            "engine": engine,
            "metrics": [metric_identity(m) for m in metrics],
        }
        text = json.dumps(material, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.parquet"

    def get(self, key: str) -> dict[str, Any] | None:
        """The cached row for ``key``, or ``None`` (also for an unreadable file)."""
        path = self._path(key)
        if not path.exists():
            return None
        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowException):
            return None  # not a whole file (e.g. written by another tool): run it again
        return rows[0] if len(rows) == 1 else None

    def put(self, key: str, row: dict[str, Any]) -> None:
        """Store ``row`` (a flat dict of scalars) for ``key``, atomically."""
        table = pa.Table.from_pylist([row])
        fd, tmp = tempfile.mkstemp(prefix=".run-", suffix=".tmp", dir=self.directory)
        os.close(fd)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.directory.glob("*.parquet"))
