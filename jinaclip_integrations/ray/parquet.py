"""Parquet files as a :class:`~jinaclip_integrations.store.VectorStore`: a folder (a path or a URI of any filesystem
pyarrow writes) that a Ray job fills, one file per batch.

Each :meth:`ParquetStore.upsert` writes one ``part-<hash of its IDs>.parquet`` file under a scratch name and moves it
into place whole, so a retried write task writes the same file again and a reader never sees half of one. The files
are written once: nothing is ever removed from them or rewritten, and they are not searched here (:meth:`delete` and
:meth:`query` raise ``NotImplementedError``; :attr:`ParquetStore.appends_only` tells a caller before it tries).
Read them with another tool (pyarrow, DuckDB, pandas, Spark) or load them into a vector database.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import StoreError
from ..qdrant import SHORT, named_vectors
from ..store import UNKNOWN_LAYOUT, CollectionLayout, SearchHit
from .rows import list_column

if TYPE_CHECKING:
    import pyarrow as pa

#: the key of the layout in each Parquet file's schema metadata
PARQUET_LAYOUT_KEY = b"jinaclip"
#: the columns of the Parquet files
PARQUET_COLUMNS = ["id", "modality", "source", "text", "payload", "vector", "short"]


class ParquetStore:
    """A folder of ``part-*.parquet`` files, each with the columns of :data:`PARQUET_COLUMNS` (``payload``: the
    point's payload as JSON; ``short``: the first ``short_dim`` dimensions re-normalized, only for layouts with a
    short vector) and the layout in its schema metadata. All files of a folder share one layout; a folder of another
    layout is refused.

    Picklable (a folder and, once opened, a layout): a Ray job hands it to its write tasks as it is.
    """

    #: points are only ever added: ``delete`` and ``query`` raise, ``vectors`` lends none
    appends_only = True

    def __init__(self, folder: str | os.PathLike) -> None:
        from pyarrow import fs as pafs

        self.shown = os.fspath(folder)
        self.local = "://" not in self.shown
        self.filesystem, self.folder = pafs.FileSystem.from_uri(os.path.abspath(self.shown) if self.local else self.shown)  # fmt: skip
        self._layout: CollectionLayout | None = None

    def folders(self) -> list[Path]:
        return [Path(self.folder)] if self.local else []

    def layout(self) -> CollectionLayout | None:
        """The layout recorded in the files (:data:`~jinaclip_integrations.store.UNKNOWN_LAYOUT` for files not made
        by jinaclip), or None when the folder holds none."""
        return self._recorded(self._schema())

    @staticmethod
    def _recorded(schema: pa.Schema | None) -> CollectionLayout | None:
        if schema is None:
            return None
        meta = schema.metadata or {}
        if PARQUET_LAYOUT_KEY not in meta:
            return UNKNOWN_LAYOUT
        return CollectionLayout.from_metadata(json.loads(meta[PARQUET_LAYOUT_KEY])) or UNKNOWN_LAYOUT

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        """Create the folder, or check that its files have ``layout`` and payloads (``StoreError`` if not)."""
        schema = self._schema()
        found = self._recorded(schema)
        if found is not None and found != layout:
            shown = "not made by jinaclip" if found == UNKNOWN_LAYOUT else found.describe()
            raise StoreError(f"{self.shown} holds Parquet files of another layout ({shown}); "
                             f"this model needs {layout.describe()}. Use another folder.")  # fmt: skip
        if schema is not None and "payload" not in schema.names:
            raise StoreError(f"{self.shown} holds Parquet files of an older jinaclip, without payloads. Use another folder.")  # fmt: skip
        self.filesystem.create_dir(self.folder, recursive=True)
        self._layout = layout
        return layout

    def _parts(self) -> list[str]:
        """The paths of the folder's files, sorted (scratch files of unfinished writes left out)."""
        from pyarrow import fs as pafs

        infos = self.filesystem.get_file_info(pafs.FileSelector(self.folder, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.startswith("part-"))

    def _schema(self) -> pa.Schema | None:
        """The schema of the folder's first file (all share one layout), or None when it has none."""
        import pyarrow.parquet as pq

        parts = self._parts()
        return pq.read_schema(parts[0], filesystem=self.filesystem) if parts else None

    def existing(self, ids: list[str]) -> set[str]:
        import pyarrow.parquet as pq

        wanted, found = set(ids), set()
        for part in self._parts() if wanted else ():
            stored = pq.read_table(part, columns=["id"], filesystem=self.filesystem).column("id").to_pylist()
            found |= wanted.intersection(stored)
        return found

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write the points as one new file, named by the hash of their IDs (the same batch: the same file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        layout = self._layout
        if layout is None:
            raise StoreError(f"the Parquet folder {self.shown} is not open")
        if not len(ids):
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        columns = {
            "id": pa.array(list(ids), pa.string()),
            "modality": pa.array([payload.get("modality") for payload in payloads], pa.string()),
            "source": pa.array([payload.get("source") for payload in payloads], pa.string()),
            "text": pa.array([payload.get("text") for payload in payloads], pa.large_string()),
            "payload": pa.array([json.dumps(payload, ensure_ascii=False) for payload in payloads], pa.large_string()),
            "vector": list_column(vectors),
        }
        if layout.short_dim is not None:
            columns["short"] = list_column(named_vectors(vectors, layout.short_dim)[SHORT])
        table = pa.table(columns).replace_schema_metadata({PARQUET_LAYOUT_KEY: json.dumps(layout.describe())})
        name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32]
        scratch = f"{self.folder}/.part-{name}.parquet.tmp"
        pq.write_table(table, scratch, filesystem=self.filesystem)
        self.filesystem.move(scratch, f"{self.folder}/part-{name}.parquet")  # whole files only

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """None lent: a job writing Parquet embeds every new point."""
        return {}

    def delete(self, ids: list[str]) -> None:
        raise NotImplementedError(f"Parquet files are written once: nothing is removed from {self.shown}")

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        import pyarrow.parquet as pq

        for part in self._parts():
            table = pq.read_table(part, columns=["id", "payload"], filesystem=self.filesystem)
            for point_id, payload in zip(table.column("id").to_pylist(), table.column("payload").to_pylist(), strict=True):  # fmt: skip
                stored = json.loads(payload)
                yield point_id, {key: stored[key] for key in fields if key in stored}

    def query(self, vector: np.ndarray, limit: int, modality: str | None) -> list[SearchHit]:
        raise NotImplementedError(f"Parquet files are not searched here: search {self.shown} with another tool "
                                  "(DuckDB, pandas), or load it into a vector database")  # fmt: skip

    def count(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(part, filesystem=self.filesystem).num_rows for part in self._parts())

    def optimize(self) -> None:
        """Nothing to index: the files are complete when written."""

    def close(self) -> None:
        """Nothing is held open between calls."""
