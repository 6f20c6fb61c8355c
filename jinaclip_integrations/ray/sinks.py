"""Where a Ray job's points go: a Qdrant collection through the package's own store backends, or Parquet files.

Every target tells the driver what it holds (:meth:`Sink.scroll`, read once into a
:class:`~jinaclip_integrations.ingest.sync.StoreIndex`) and writes batches of embedded point rows (:meth:`Sink.write`):

* **a local Qdrant store** (the embedded engine's folder, a ``QdrantClient`` in local mode) opens in one process
  only: the driver writes it, as the batches arrive (``in_driver``);
* **a Qdrant server or cluster**: the write tasks write it, each worker process through its own
  :class:`~jinaclip_integrations.qdrant.client.ClientStore` (insert-only upserts), while the driver reads and
  removes through its own;
* **Parquet**: one file per batch, written once under a name derived from its IDs (a retried task writes the same
  file again), in a folder or URI. The files are never rewritten, so nothing is removed from them: neither the
  older versions of changed files nor the files gone from the folders (``removes`` is False).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..errors import StoreError
from ..store import CollectionLayout, Preset, model_label
from .rows import list_column, split_embedded, vectors_of

if TYPE_CHECKING:
    import pyarrow as pa
    from qdrant_client import QdrantClient

    from ..qdrant import QdrantStore
    from ..qdrant.client import ClientStore

#: the key of the layout in each Parquet file's schema metadata
PARQUET_LAYOUT_KEY = b"jinaclip"
#: the columns of the Parquet files
PARQUET_COLUMNS = ["id", "modality", "source", "text", "payload", "vector", "short"]


class Sink:
    """A target of the job. ``in_driver``: written by the driver from the pipeline's output, else by the write
    tasks, which get the sink pickled; ``removes``: it deletes points (older versions, files gone)."""

    in_driver = False
    removes = True

    def folders(self) -> list[Path]:
        """Local folders of the target, never indexed as data."""
        return []

    def open(self, spec: Any, preset: Preset | None, short_dim: int | None) -> CollectionLayout:
        """Create the target for the model ``spec`` (an engine, with or without weights), or check that it has
        its layout (a ``StoreError`` if not)."""
        raise NotImplementedError

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every stored point's ID and the given payload fields."""
        raise NotImplementedError

    def write(self, table: pa.Table) -> pa.Table:
        """Write the embedded point rows of a batch; return its status columns, those rows written."""
        raise NotImplementedError

    def delete(self, ids: list[str]) -> None:
        """Remove points (only where ``removes``)."""
        raise NotImplementedError

    def count(self) -> int:
        """How many points the target holds."""
        raise NotImplementedError

    def finish(self) -> None:
        """After the last write and removal."""

    def close(self) -> None:
        """Release what the driver opened."""


def open_sink(store: Any, qdrant_url: str | None, api_key: str | None, parquet: str | os.PathLike | None,
              collection: str) -> Sink:  # fmt: skip
    """The sink of exactly one target (not opened yet: nothing is created before :meth:`Sink.open`)."""
    if parquet is not None:
        return ParquetSink(os.fspath(parquet))
    if qdrant_url is not None:
        from qdrant_client import QdrantClient

        api_key = api_key or settings.value("qdrant_api_key")
        return QdrantServerSink(QdrantClient(url=qdrant_url, api_key=api_key), qdrant_url, api_key, collection)
    from ..qdrant import open_store

    return QdrantSink(open_store(store, collection))


class QdrantSink(Sink):
    """A Qdrant collection that the driver writes: the embedded engine, or a ``QdrantClient`` (local mode opens its
    folder in one process only)."""

    in_driver = True

    def __init__(self, store: QdrantStore) -> None:
        self.store = store

    def folders(self) -> list[Path]:
        return self.store.folders()

    def open(self, spec: Any, preset: Preset | None, short_dim: int | None) -> CollectionLayout:
        from ..qdrant import layout_for

        return self.store.open(layout_for(spec, self.store.layout(), preset, short_dim))

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        return self.store.scroll(fields)

    def write(self, table: pa.Table) -> pa.Table:
        return upsert_rows(self.store, table)

    def delete(self, ids: list[str]) -> None:
        self.store.delete(ids)

    def count(self) -> int:
        return self.store.count()

    def finish(self) -> None:
        self.store.optimize()

    def close(self) -> None:
        self.store.close()


def upsert_rows(store: QdrantStore, table: pa.Table) -> pa.Table:
    """Write a batch's embedded point rows to a Qdrant store; the batch's status columns."""
    rows, statuses = split_embedded(table)
    if len(rows):
        payloads = [json.loads(payload) for payload in rows.column("payload").to_pylist()]
        store.upsert(rows.column("id").to_pylist(), vectors_of(rows), payloads)
    return statuses


class QdrantServerSink(QdrantSink):
    """A Qdrant server or cluster: the driver reads and removes through its client, every write task writes
    through its process's own (pickled, the sink keeps only the URL, key, collection and layout)."""

    in_driver = False

    def __init__(self, client: QdrantClient, url: str, api_key: str | None, collection: str) -> None:
        from ..qdrant.client import ClientStore

        super().__init__(ClientStore(client, collection))
        self.client, self.url, self.api_key, self.collection = client, url, api_key, collection
        self.layout: CollectionLayout | None = None

    def open(self, spec: Any, preset: Preset | None, short_dim: int | None) -> CollectionLayout:
        self.layout = super().open(spec, preset, short_dim)
        return self.layout

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "store": None, "client": None}  # the driver's: not pickled

    def write(self, table: pa.Table) -> pa.Table:
        return upsert_rows(_worker_store(self.url, self.api_key, self.collection, self.layout), table)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.client.close()


@cache
def _worker_store(url: str, api_key: str | None, collection: str, layout: CollectionLayout) -> ClientStore:
    """One opened collection per worker process and server."""
    from ..qdrant.client import ClientStore

    store = ClientStore(_connect(url, api_key), collection)
    store.open(layout)
    return store


def _connect(url: str, api_key: str | None) -> QdrantClient:
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key)


class ParquetSink(Sink):
    """A folder of ``part-<hash of its IDs>.parquet`` files written by the write tasks, each with the columns of
    :data:`PARQUET_COLUMNS` (``payload``: the point's payload as JSON; ``short`` only for models with Matryoshka
    sizes) and the layout in its schema metadata; a folder of another layout is refused."""

    removes = False

    def __init__(self, folder: str) -> None:
        from pyarrow import fs as pafs

        self.shown = folder
        self.local = "://" not in folder
        self.filesystem, self.folder = pafs.FileSystem.from_uri(os.path.abspath(folder) if self.local else folder)
        self.layout: CollectionLayout | None = None

    def folders(self) -> list[Path]:
        return [Path(self.folder)] if self.local else []

    def open(self, spec: Any, preset: Preset | None, short_dim: int | None) -> CollectionLayout:
        import pyarrow.parquet as pq

        from ..qdrant import default_short_dim

        if preset is not None or short_dim is not None:
            raise ValueError("preset and short_dim describe Qdrant collections, not Parquet files")
        self.layout = CollectionLayout(model_label(spec.name_or_path), spec.embedding_dim, default_short_dim(spec), "default")  # fmt: skip
        self.filesystem.create_dir(self.folder, recursive=True)
        parts = self._parts()
        if parts:
            schema = pq.read_schema(parts[0], filesystem=self.filesystem)  # all files share one layout
            meta = schema.metadata or {}
            found = json.loads(meta[PARQUET_LAYOUT_KEY]) if PARQUET_LAYOUT_KEY in meta else None
            if found != self.layout.describe():
                raise StoreError(f"{self.shown} holds Parquet files of another layout ({found or 'not made by jinaclip'}); "
                                 f"this model needs {self.layout.describe()}. Use another folder.")  # fmt: skip
            if "payload" not in schema.names:
                raise StoreError(f"{self.shown} holds Parquet files of an older jinaclip, without payloads. Use another folder.")  # fmt: skip
        return self.layout

    def _parts(self) -> list[str]:
        from pyarrow import fs as pafs

        infos = self.filesystem.get_file_info(pafs.FileSelector(self.folder, allow_not_found=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.base_name.startswith("part-"))

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        import pyarrow.parquet as pq

        for part in self._parts():
            table = pq.read_table(part, columns=["id", "payload"], filesystem=self.filesystem)
            for point_id, payload in zip(table.column("id").to_pylist(), table.column("payload").to_pylist(), strict=True):  # fmt: skip
                stored = json.loads(payload)
                yield point_id, {key: stored[key] for key in fields if key in stored}

    def write(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from ..qdrant import SHORT, named_vectors

        rows, statuses = split_embedded(table)
        if len(rows):
            vectors = vectors_of(rows)
            payloads = [json.loads(payload) for payload in rows.column("payload").to_pylist()]
            columns = {c: rows.column(c) for c in ("id", "modality", "source")}
            columns["text"] = pa.array([payload.get("text") for payload in payloads], pa.large_string())
            columns["payload"] = rows.column("payload")
            columns["vector"] = list_column(vectors)
            if self.layout.short_dim is not None:
                columns["short"] = list_column(named_vectors(vectors, self.layout.short_dim)[SHORT])
            out = pa.table(columns).replace_schema_metadata({PARQUET_LAYOUT_KEY: json.dumps(self.layout.describe())})
            name = hashlib.sha256("\n".join(rows.column("id").to_pylist()).encode()).hexdigest()[:32]
            scratch = f"{self.folder}/.part-{name}.parquet.tmp"
            pq.write_table(out, scratch, filesystem=self.filesystem)
            self.filesystem.move(scratch, f"{self.folder}/part-{name}.parquet")  # whole files only
        return statuses

    def count(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(part, filesystem=self.filesystem).num_rows for part in self._parts())
