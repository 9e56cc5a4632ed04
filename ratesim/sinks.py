"""Per-request rows written as they finish: a Parquet file built batch by batch.

:class:`ParquetSink` is a row consumer of the bounded runner (``fold(data, layers,
first_row)`` then ``finish()``, every row once, in arrival order): it turns each batch into the
``Result.requests`` columns (:func:`ratesim.results.requests_frame`, the same code) and appends
them to one Parquet file with ``pyarrow.parquet.ParquetWriter``, a row group each time
``row_group_rows`` rows are waiting (and one for the rest at the end). Reading the file back
(``pandas.read_parquet``) gives the frame ``Result.requests.to_parquet(path, index=False)``
writes for the whole run (what ``ratesim run --out`` writes as ``requests.parquet``), value for
value. Memory: the rows waiting for their row group, whatever the run's length.

The schema is the first batch's, with ``rejected_by`` typed as a string: a batch with no
rejection has only ``None`` there, which pyarrow would type ``null`` and later batches could
not be appended to. A whole run without any rejection is written by pandas with a ``null``
column, so when no batch had one :meth:`ParquetSink.finish` rewrites the file with that column
``null``, row group by row group (a second pass, only for such runs).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from .results import requests_frame

if TYPE_CHECKING:
    from .compile import CompiledLayer
    from .results import RunData

#: Rows per row group by default (about 40 MB of frame for a few layers).
ROW_GROUP_ROWS = 500_000


class ParquetSink:
    """``Result.requests`` of a run written to ``path`` batch by batch (module docstring)."""

    def __init__(
        self, path: str | Path, layer_names: list[str], row_group_rows: int = ROW_GROUP_ROWS
    ) -> None:
        if row_group_rows < 1:
            raise ValueError(f"row_group_rows must be >= 1, got {row_group_rows!r}")
        self.path = Path(path)
        self.layer_names = list(layer_names)
        self.row_group_rows = int(row_group_rows)
        self.rows = 0  # rows written or waiting
        self._schema: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._waiting: list[pa.Table] = []
        self._waiting_rows = 0
        self._closed = False
        self._rejections = False  # a row rejected so far: rejected_by is no all-null column

    def fold(self, data: RunData, layers: list[CompiledLayer], first_row: int) -> None:
        """The run's rows ``[first_row, first_row + len(data.arrivals))``."""
        if self._closed:
            raise ValueError(f"ParquetSink({self.path}): fold after finish")
        if first_row != self.rows:
            raise ValueError(
                f"ParquetSink({self.path}): first_row {first_row} is not the next row, {self.rows}"
            )
        frame = requests_frame(data, self.layer_names, first_row=first_row)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._schema is None:
            self._schema = _with_string_rejections(table.schema)
        if not len(frame):
            return
        self._rejections = self._rejections or bool((data.rejected_by >= 0).any())
        self._waiting.append(table.cast(self._schema))
        self._waiting_rows += len(frame)
        self.rows += len(frame)
        if self._waiting_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        """The waiting rows written as one row group."""
        assert self._schema is not None
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self._schema)
        if self._waiting:
            self._writer.write_table(pa.concat_tables(self._waiting))
        self._waiting, self._waiting_rows = [], 0

    def finish(self) -> None:
        """The last row group written and the file closed (a run with no batch at all writes
        nothing: there is no schema to write)."""
        if self._closed:
            return
        self._closed = True
        if self._schema is None:
            return
        self._flush()
        assert self._writer is not None
        self._writer.close()
        if not self._rejections:
            _null_rejections(self.path)


def _null_rejections(path: Path) -> None:
    """Rewrite ``path`` with ``rejected_by`` a ``null`` column (all its values are missing), as
    pandas writes a whole run without rejections; row group by row group."""
    src = pq.ParquetFile(path)
    schema = src.schema_arrow
    i = schema.get_field_index("rejected_by")
    null_schema = schema.set(i, pa.field("rejected_by", pa.null()))
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, null_schema) as out:
        for g in range(src.num_row_groups):
            table = src.read_row_group(g)
            out.write_table(table.set_column(i, null_schema.field(i), pa.nulls(len(table))))
    src.close()
    tmp.replace(path)


def _with_string_rejections(schema: pa.Schema) -> pa.Schema:
    """``schema`` with ``rejected_by`` a string column (see the module docstring)."""
    i = schema.get_field_index("rejected_by")
    return schema.set(i, pa.field("rejected_by", pa.string()))
