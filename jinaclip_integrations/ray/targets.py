"""Where a Ray job's points go, and who writes them. Every target is a :class:`~jinaclip_integrations.store.VectorStore`
that the driver reads once (``scroll``), removes from and counts; the batches of embedded points are written to it by
:func:`~.rows.write_points`:

* **a local Qdrant store** (the embedded engine's folder, a ``QdrantClient`` in local mode:
  :func:`~jinaclip_integrations.qdrant.open_store`) opens in one process only: the driver writes it, as the batches
  arrive;
* **a Qdrant server or cluster**: the write tasks write it, each worker process through its own store, opened once
  from a :class:`RemoteQdrant` recipe (insert-only upserts), while the driver reads and removes through its own;
* **Parquet** (:class:`~.parquet.ParquetStore`): the write tasks write it, given the store itself. It only appends
  (:func:`removes_points`): nothing is removed from it, neither the older versions of changed files nor the files gone
  from the folders.

Whether a Qdrant store is a server comes from how the job was called (a ``qdrant_url``), not from the client.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import cache
from typing import TYPE_CHECKING, Any

from ..qdrant import QdrantStore, layout_for, open_store
from ..store import CollectionLayout, Preset, VectorStore
from .parquet import ParquetStore
from .rows import write_points

if TYPE_CHECKING:
    import pyarrow as pa
    from qdrant_client import QdrantClient


@dataclass(frozen=True)
class RemoteQdrant:
    """How a process reaches the collection of a Qdrant server or cluster: picklable (it holds no client), so each
    write task gets it and each worker process connects once. ``layout``: the one the driver opened the collection
    with (None before)."""

    url: str
    api_key: str | None = field(repr=False)  # kept out of logs
    collection: str
    layout: CollectionLayout | None = None

    def open(self) -> QdrantStore:
        """This worker process's ``ClientStore`` of the collection, opened with :attr:`layout` (one per recipe)."""
        return _worker_store(self)


@cache
def _worker_store(recipe: RemoteQdrant) -> QdrantStore:
    """The collection of a recipe, connected and opened once per process."""
    store = open_store(connect(recipe.url, recipe.api_key), recipe.collection)
    store.open(recipe.layout)
    return store


def connect(url: str, api_key: str | None) -> QdrantClient:
    """A client of a Qdrant server: the driver's, and each worker process's."""
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key)


def open_target(stack: ExitStack, store: QdrantClient | str | os.PathLike | None, server: RemoteQdrant | None,
                parquet: str | os.PathLike | None, collection: str) -> VectorStore:  # fmt: skip
    """The store of the job's one target (``parquet``, else ``server``, else the local ``store``), not opened yet:
    nothing is created before its ``open``. What it holds open is released by ``stack``."""
    if parquet is not None:
        target: VectorStore = ParquetStore(parquet)
    elif server is not None:
        client = connect(server.url, server.api_key)
        stack.callback(client.close)  # after the store's close (last in, first out)
        target = open_store(client, server.collection)
    else:
        target = open_store(store, collection)
    stack.callback(target.close)
    return target


def target_layout(target: VectorStore, spec: Any, preset: Preset | None, short_dim: int | None) -> CollectionLayout:
    """The layout ``target`` needs for the model ``spec`` (an engine, with or without weights), chosen as for every
    store of the package (:func:`~jinaclip_integrations.qdrant.layout_for`): ``preset`` and ``short_dim`` as given,
    else as the existing collection has them, else the defaults. Parquet files have no preset: always the defaults
    (the default short vector), and a folder of another layout is refused by ``open``, not followed."""
    if not isinstance(target, ParquetStore):
        return layout_for(spec, target.layout(), preset, short_dim)
    if preset is not None or short_dim is not None:
        raise ValueError("preset and short_dim describe Qdrant collections, not Parquet files")
    return layout_for(spec, None, None, None)


def task_writer(
    target: VectorStore, server: RemoteQdrant | None, layout: CollectionLayout
) -> RemoteQdrant | ParquetStore | None:
    """What the write tasks write through: a server's recipe with the ``layout`` the driver opened its collection with,
    or the Parquet store itself; None for a local store, which the driver writes."""
    if server is not None:
        return replace(server, layout=layout)
    return target if isinstance(target, ParquetStore) else None


def write_task(table: pa.Table, *, target: RemoteQdrant | ParquetStore) -> pa.Table:
    """The write stage on a worker: a batch's embedded points into the target of :func:`task_writer`; its status
    columns."""
    return write_points(target.open() if isinstance(target, RemoteQdrant) else target, table)


def removes_points(store: VectorStore) -> bool:
    """Whether the job removes points from ``store`` (the older versions of changed files, the files gone): from every
    store but one that only appends (``appends_only``: a :class:`~.parquet.ParquetStore`)."""
    return not getattr(store, "appends_only", False)
