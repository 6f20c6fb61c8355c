"""The rows of the Ray job and the states they pass through, as pyarrow tables.

Every stage takes and returns a table of rows of two kinds:

* a **file row** per file read: ``read`` (then ``info`` holds its version, how many points it
  has, its chunks and warnings), ``unchanged`` (stored whole already: it has no point rows) or
  ``failed`` (``reason`` says why);
* a **point row** per text chunk or image of a file read: ``new`` (to embed), ``existing``
  (stored before the job), then ``embedded`` and ``written``, or ``failed`` on the way.

Every target is written by :func:`write_points`; only :data:`STATUS_COLUMNS` come back to the driver, which counts
them (:mod:`.job`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa

    from ..store import VectorStore

FILE, POINT = "file", "point"
#: states of a file row
READ, UNCHANGED, FAILED = "read", "unchanged", "failed"
#: states of a point row (and FAILED)
NEW, EXISTING, EMBEDDED, WRITTEN = "new", "existing", "embedded", "written"
#: what the driver needs of a finished row
STATUS_COLUMNS = ["kind", "source", "status", "reason", "where", "info"]


def read_schema() -> pa.Schema:
    """The columns of the read stage's output: the status columns, then a point's ``id``,
    ``modality``, ``text`` (what is embedded), ``payload`` (JSON) and an image's bytes ``data``."""
    import pyarrow as pa

    return pa.schema([*((name, pa.string()) for name in STATUS_COLUMNS), ("id", pa.string()), ("modality", pa.string()),
                      ("text", pa.large_string()), ("payload", pa.large_string()), ("data", pa.large_binary())])  # fmt: skip


def set_column(table: pa.Table, name: str, values: Any, type: Any = None) -> pa.Table:
    """``table`` with the column ``name`` replaced, or added."""
    import pyarrow as pa

    column = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type)
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, column) if index >= 0 else table.append_column(name, column)


def list_column(rows: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """The rows of a matrix as a ``list<float32>`` column (null where ``null`` is set)."""
    import pyarrow as pa

    keep = np.ones(len(rows), dtype=bool) if null is None else ~null
    offsets = np.concatenate([[0], np.cumsum(np.where(keep, rows.shape[1], 0))]).astype(np.int32)
    values = pa.array(rows[keep].ravel(), pa.float32())
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=None if null is None else pa.array(null))


def vectors_of(table: pa.Table) -> np.ndarray:
    """The ``vector`` column as a matrix (of rows that all have one)."""
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(table), -1)


def write_points(store: VectorStore, table: pa.Table) -> pa.Table:
    """Write the embedded point rows of a batch to ``store`` (one ``upsert`` of their IDs, full-size vectors and
    payloads) and return the batch's status columns, those rows ``written``: how every target of the job is written,
    by the driver or by a write task."""
    import pyarrow.compute as pc

    embedded = pc.equal(table.column("status"), EMBEDDED)
    rows = table.filter(embedded)
    if len(rows):
        payloads = [json.loads(payload) for payload in rows.column("payload").to_pylist()]
        store.upsert(rows.column("id").to_pylist(), vectors_of(rows), payloads)
    return set_column(table.select(STATUS_COLUMNS), "status", pc.if_else(embedded, WRITTEN, table.column("status")))
