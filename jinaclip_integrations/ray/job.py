"""``index_with_ray``: the driver of the Ray job, from the listing to the report (see the package's docstring).

The driver does what :func:`~jinaclip_integrations.ingest.sync.sync_files` does around its loop: it reads the
target's state once, leaves out the files whose stored version has their size and modification time, hands the
others to the pipeline with the IDs stored for each, counts every row that comes back, and at the end removes the
older versions of the files whose new points are stored (those that could be) and the points of the files gone from
the roots.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import settings
from .._lazy import needs_extra
from ..ingest.chunking import ChunkOptions
from ..ingest.files import chunking_label
from ..ingest.items import Failure, IngestReport
from ..ingest.readers import format_of
from ..ingest.sync import StoreIndex, fit_chunking
from .listing import JobFiles, list_files
from .rows import EXISTING, FAILED, FILE, READ, STATUS_COLUMNS, UNCHANGED, WRITTEN, write_points
from .stages import Embedder, preprocess_images, read_files
from .targets import RemoteQdrant, open_target, removes_points, target_layout, task_writer, write_task

if TYPE_CHECKING:
    import pyarrow as pa
    from qdrant_client import QdrantClient

    from ..store import Preset, VectorStore
    from .parquet import ParquetStore


@dataclass
class RayIndexResult(IngestReport):
    """What a Ray job did: the :class:`~jinaclip_integrations.ingest.items.IngestReport` of the single-process sync
    (files by outcome, points added, existing and removed, chunks, failures, what was ignored) and ``stored``, the
    points the target holds after the job (Parquet: rows in the folder). ``reused`` is always 0: the job embeds every
    new point, where the single-process path lends the vector of a stored point with the same content."""

    stored: int = 0


def index_with_ray(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    store: QdrantClient | str | os.PathLike | None = None,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
    parquet: str | os.PathLike | None = None,
    collection_name: str | None = None,
    model_name: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    preset: Preset | None = None,
    short_dim: int | None = None,
    chunking: ChunkOptions | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    gitignore: bool = True,
    prune: bool = True,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1,
    batch_size: int = 256,
    address: str | None = None,
    show_progress: bool | None = None,
) -> RayIndexResult:
    """Make one target hold the files under ``paths``, as ``QdrantVectorizer.sync`` does, with Ray Data: ``store``,
    ``qdrant_url`` or ``parquet``.

    Args:
        paths: files, folders and globs, walked as ``jinaclip index`` walks them, or URIs (``s3://bucket/photos/``,
            ``s3://bucket/photos/**/*.jpg``), all on one filesystem; credentials come from the environment, as
            pyarrow finds them.
        store: a local target, written by the driver: a folder (the embedded Qdrant engine; the collection is its
            sub-folder ``collection_name``) or a ``QdrantClient``.
        qdrant_url: a Qdrant server or cluster, written by the workers (``qdrant_api_key``, else ``QDRANT_API_KEY``
            of the driver's environment, authenticates them).
        parquet: a folder (a path or URI) of Parquet files (see :class:`.parquet.ParquetStore`); its IDs are skipped,
            and nothing is removed from it.
        collection_name, preset, short_dim: the Qdrant collection, created or checked as ``QdrantVectorizer`` does.
        model_name, device, dtype: the engine each actor loads: a hub name, or a folder that exists on every node.
            None: the settings (``$JINACLIP_MODEL``, ``$JINACLIP_COLLECTION``..., see :mod:`jinaclip_integrations.settings`).
            The driver and the CPU workers use it without weights (config, tokenizer, preprocessor).
        chunking: how texts are cut (default :class:`~jinaclip_integrations.ingest.chunking.ChunkOptions`), at most
            what the model reads.
        include, exclude, gitignore: which files of the folders are taken (gitignore-style patterns; ``.gitignore``
            files are read in local folders only).
        prune: remove the points of files that are gone from the roots (a Qdrant target only).
        workers: embedding actors (default: one per GPU of the cluster, else 1).
        gpus_per_worker: GPUs per actor (default: 1 when the cluster has GPUs, else 0).
        cpus_per_worker: CPUs per actor (on CPUs, Ray gives its torch as many threads).
        batch_size: files per read task, and points per call of an actor (fewer files in a job too small to give
            every actor two batches).
        address: the Ray cluster to connect to when Ray is not initialized yet (``"auto"``: the one this machine
            belongs to; None: Ray's default, a new local instance unless ``RAY_ADDRESS`` names one). A Ray started
            here is shut down at the end.
        show_progress: Ray Data's progress bars and logs (default: when stderr is a terminal).

    Raises:
        InputError: a path does not exist, a glob matches nothing, or a file named explicitly is not supported.
        StoreError: the collection or the Parquet folder holds vectors of another layout.
        ValueError: not exactly one target, local paths mixed with URIs, or bad options.
    """
    ray = _import_ray()
    from ..engine import JinaCLIPEngine

    if sum(target is not None for target in (store, qdrant_url, parquet)) != 1:
        raise ValueError("give exactly one target: store=, qdrant_url= or parquet=")
    for name, value in (("batch_size", batch_size), ("workers", 1 if workers is None else workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    found = settings.values()
    model_name, device, dtype = model_name or found["model"], device or found["device"], dtype or found["dtype"]
    collection = collection_name or found["collection"]
    server = None if qdrant_url is None else RemoteQdrant(qdrant_url, qdrant_api_key or settings.value("qdrant_api_key"), collection)  # fmt: skip
    with ExitStack() as stack:
        target = open_target(stack, store, server, parquet, collection)
        listing = list_files(paths, include=include, exclude=exclude, gitignore=gitignore, skip=target.folders())
        spec = JinaCLIPEngine.from_pretrained(model_name, weights=False)
        options = fit_chunking(chunking or ChunkOptions(), spec.max_positions)
        layout = target.open(target_layout(target, spec, preset, short_dim))
        writer = task_writer(target, server, layout)
        driver = _Driver(listing, StoreIndex(target), target)
        todo = driver.plan(options)
        if todo:
            if not ray.is_initialized():
                ray.init(address=address, logging_level=logging.WARNING)
                stack.callback(ray.shutdown)
            _quiet_unless(ray, show_progress, stack)
            engine = {"model_name": model_name, "device": device, "dtype": dtype, "max_length": options.max_tokens + 2}
            dataset = _pipeline(ray, todo, listing, driver.removes, writer, spec, options, batch_size=batch_size,
                                workers=workers, gpus=gpus_per_worker, cpus=cpus_per_worker, engine=engine)  # fmt: skip
            for finished in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                driver.tally(finished if writer is not None else write_points(target, finished))
        report = driver.finish(prune)
        report.stored = target.count()
    return report


def _import_ray() -> Any:
    with needs_extra("ray", "jinaclip_integrations.ray"):
        import ray
        import ray.data
    return ray


def _quiet_unless(ray: Any, show_progress: bool | None, stack: ExitStack) -> None:
    """Ray Data's progress bars, and its progress logs, only when asked or on a terminal (restored at the end)."""
    from ..progress import show_progress_default

    context, logs = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
    stack.callback(setattr, context, "enable_progress_bars", context.enable_progress_bars)
    stack.callback(logs.setLevel, logs.level)
    context.enable_progress_bars = show_progress_default(show_progress)
    if not context.enable_progress_bars:
        logs.setLevel(logging.WARNING)


def _file_schema() -> pa.Schema:
    """The pipeline's input: one row per file to read."""
    import pyarrow as pa

    return pa.schema([("source", pa.string()), ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                      ("position", pa.int64()), ("stored", pa.list_(pa.string()))])  # fmt: skip


def _pipeline(ray: Any, todo: list[dict[str, Any]], listing: JobFiles, removes: bool,
              writer: RemoteQdrant | ParquetStore | None, spec: Any, options: ChunkOptions, *, batch_size: int,
              workers: int | None, gpus: float | None, cpus: float, engine: dict[str, Any]) -> Any:  # fmt: skip
    """The lazy dataset of every file's and point's last state: written by write tasks through ``writer``, or, with
    none, embedded for the driver to write. ``removes``: the target deletes older versions. ``workers`` actors with
    ``gpus`` and ``cpus`` each (None: one per GPU of the cluster, else one on the CPU) load the engine that
    ``engine`` describes."""
    import pyarrow as pa

    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    workers = workers or (max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)) if gpus else 1)
    per_task = min(batch_size, -(-len(todo) // (2 * workers)))  # a small job still feeds every actor
    blocks = [pa.Table.from_pylist(todo[start : start + per_task], schema=_file_schema()) for start in range(0, len(todo), per_task)]  # fmt: skip
    read = {"filesystem": listing.filesystem, "spec": spec, "options": options, "removes": removes}
    preprocess = {"preprocessor": spec.preprocessor, "max_pixels": spec.max_image_pixels}
    dataset = (
        ray.data.from_arrow(blocks)
        .map_batches(read_files, fn_kwargs=read, batch_size=None, batch_format="pyarrow")
        .map_batches(preprocess_images, fn_kwargs=preprocess, batch_size=None, batch_format="pyarrow")
        .map_batches(
            Embedder,
            fn_constructor_kwargs=engine,
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=batch_size,
            batch_format="pyarrow",
            num_gpus=gpus,
            num_cpus=cpus,
        )
    )
    if writer is not None:
        dataset = dataset.map_batches(write_task, fn_kwargs={"target": writer}, batch_format="pyarrow")
    return dataset


@dataclass
class _FileState:
    """What came back of a file sent to the pipeline: its file row (``status``, ``info``), and its point rows."""

    rows: int = 0
    status: str | None = None
    info: dict[str, Any] | None = None
    written: int = 0
    existing: int = 0
    failed: int = 0


class _Driver:
    """One job's bookkeeping in the driver: what is stored, which files are read, what came back."""

    def __init__(self, listing: JobFiles, index: StoreIndex, store: VectorStore) -> None:
        self.listing, self.index, self.store, self.removes = listing, index, store, removes_points(store)
        self.report = RayIndexResult(ignored=list(listing.skipped), failed=list(listing.failed))
        self.report.files["failed"] += len(listing.failed)
        self.files: dict[str, _FileState] = {}

    def plan(self, options: ChunkOptions) -> list[dict[str, Any]]:
        """The files to read, as pipeline rows; the others are unchanged (stored whole, with this size and
        modification time, cut this way)."""
        todo = []
        for position, file in enumerate(self.listing.files):
            label = chunking_label(format_of(file.source) or "text", options)
            if file.mtime_ns is not None and self.index.unchanged(file.source, file.size, file.mtime_ns, label):
                self.report.files["unchanged"] += 1
                continue
            stored = self.index.sources.get(file.source)
            ids = None if stored is None else [i for versions in stored.versions.values() for i in versions]
            todo.append({"source": file.source, "path": file.path, "size": file.size, "mtime_ns": file.mtime_ns,
                         "position": position, "stored": ids})  # fmt: skip
            self.files[file.source] = _FileState()
        return todo

    def tally(self, table: pa.Table) -> None:
        """Count the finished rows of a batch."""
        for kind, source, status, reason, where, info in zip(*(table.column(c).to_pylist() for c in STATUS_COLUMNS), strict=True):  # fmt: skip
            state = self.files[source]
            if kind == FILE:
                state.rows += 1
                state.status, state.info = status, None if info is None else json.loads(info)
                if status == FAILED:
                    self.report.failed.append(Failure(source, reason))
            elif status == WRITTEN:
                state.written += 1
            elif status == EXISTING:
                state.existing += 1
            elif status == FAILED:
                state.failed += 1
                self.report.failed.append(Failure(where, reason))
            # any other state (embedded, never written) leaves the file's points short: finish() refuses it

    def finish(self, prune: bool) -> RayIndexResult:
        """Outcomes by file (a file none of whose points could be stored failed, and keeps its older version),
        checked to add up; then remove the older versions of the files whose new points are stored and (with
        ``prune``) the points of the files gone."""
        report, index, stale = self.report, self.index, []
        for source, state in self.files.items():
            if state.status in (UNCHANGED, FAILED):  # touched only, or unreadable
                report.files[state.status] += 1
            if state.status != READ:  # None: its file row was lost, which _check() reports
                continue
            info, stored, done = state.info, index.sources.get(source), state.written + state.existing
            report.added += state.written
            report.existing += state.existing
            report.chunks += info["chunks"]
            report.failed.extend(Failure(source, warning) for warning in info["warnings"])
            if info["parts"] and not done:  # none of its points stored (a corrupt image): a failure
                report.files["failed"] += 1
                continue
            report.files["new" if stored is None else "changed"] += 1
            if stored is not None and self.removes:  # as a single-process sync: those that could be stored
                key = (info["file_hash"], info["chunking"])
                stale += [i for version, ids in stored.versions.items() if version != key for i in ids]
        self._check()  # before anything is removed
        if stale:
            self.store.delete(stale)
            report.removed += len(stale)
        if prune and self.removes:
            listed = self.listing.listed()
            gone = [source for source in index.sources if source not in listed and self.listing.covers(source)]
            ids = [i for source in gone for versions in index.sources[source].versions.values() for i in versions]
            if ids:
                self.store.delete(ids)
            report.removed += len(ids)
            report.files["removed"] += len(gone)
        self.store.optimize()
        return report

    def _check(self) -> None:
        """A RuntimeError unless every file came back once with all its points, each in a final state."""
        wrong = [source for source, state in self.files.items() if state.rows != 1
                 or state.written + state.existing + state.failed != (state.info["parts"] if state.status == READ else 0)]  # fmt: skip
        outcomes = sum(n for outcome, n in self.report.files.items() if outcome != "removed")
        if wrong or outcomes != len(self.listing.files) + len(self.listing.failed):
            raise RuntimeError(f"the job's counts do not add up (rows lost or repeated) for {wrong[:5] or 'the files'}: {self.report}")  # fmt: skip
