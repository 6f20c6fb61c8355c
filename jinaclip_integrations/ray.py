"""Index millions of images and texts with Ray Data: decoding on CPU workers, one engine per GPU.

    from jinaclip_integrations.ray import index_with_ray

    result = index_with_ray(["s3://bucket/photos/"], qdrant_url="http://qdrant:6333", collection_name="photos")
    print(result.read, result.embedded, result.existing, result.skipped)

One Ray Data pipeline, in which every file is one row from the listing to the end:

1. **list** (driver): files, folders (recursively), globs, or URIs of any filesystem pyarrow
   reads (``s3://``, ``gs://``, ``hdfs://``...), with the suffix rules of
   ``QdrantVectorizer.add_files``: other files are counted as ignored and not read;
2. **read** (CPU tasks): bytes -> content-derived ID and payload, made by the function the
   single-process path uses (``_ingest.content_item``); an unreadable file or a text that is not
   UTF-8 becomes a failure;
3. **skip stored** (CPU tasks): rows whose ID the target holds are not embedded again;
4. **preprocess** (CPU tasks): images decoded, resized and normalized; a corrupt one fails;
5. **embed** (a pool of actors, with ``num_gpus`` each when there are GPUs): each actor loads
   the engine once and embeds the texts and pixels of each batch with the engine's own batching
   (``batch_size``, ``max_batch_tokens``, halving a batch that runs out of memory);
6. **write**: to a Qdrant server or cluster (``qdrant_url``) by insert-only upserts from CPU
   tasks, or to Parquet files from CPU tasks. A local store (a folder for the embedded engine, a
   ``QdrantClient`` in local mode) is single-process, so the driver writes those batches as they
   arrive.

On a Ray without GPUs, Ray Data fuses stages 2-4 into the embedding actors (they ask for the same
resources): each actor then reads, decodes and embeds, and ``workers`` is the parallelism.

The driver counts every row's last state (:class:`RayIndexResult`) and writes bad files to the
report file as JSON lines.

**Retries write nothing twice.** Ray Data retries a task whose worker died, restarts an
embedding actor that died (reloading the model) and hands it its batch again, without limit: its
defaults (``max_retries=-1`` for tasks, ``max_restarts=-1`` and ``max_task_retries=-1`` for
actors) are kept, since Ray 2.60 deprecates setting them per stage. A retried write writes the
same points (IDs from content, insert-only) or the same Parquet file (named by its IDs). An
exception raised by the job's own code (a Qdrant server refusing a write) fails the job instead;
what was written stays, and running the job again skips it before embedding.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np

from ._ingest import Failure, Item, content_item, discover_files, modality_of, read_limited
from .errors import InputError, StoreError

if TYPE_CHECKING:
    import pyarrow as pa
    from qdrant_client import QdrantClient

    from .engine import JinaCLIPEngine
    from .qdrant import Preset

#: a row's states: read and to embed, stored before, unreadable, embedded, written
NEW, EXISTING, FAILED, EMBEDDED, WRITTEN = "new", "existing", "failed", "embedded", "written"
#: what the driver needs of a finished row
_STATUS_COLUMNS = ["source", "id", "status", "reason"]
#: the key of the layout in each Parquet file's schema metadata
PARQUET_LAYOUT_KEY = b"jinaclip"


@dataclass
class RayIndexResult:
    """What a Ray indexing job did, counted per file.

    Every image or text file listed is ``read`` and ends as exactly one of ``embedded`` (new:
    embedded and written), ``existing`` (its content was stored before the job: not embedded
    again) or ``skipped`` (unreadable: in ``failed`` and the report file), so
    ``read == embedded + existing + skipped``; ``written`` counts the files whose points (Parquet
    rows) were sent to the target and equals ``embedded``. ``ignored`` counts files found in the folders or by
    globs that are neither images nor texts. ``stored``: the points in the Qdrant collection
    after the job (None for Parquet). Identical files are embedded each (no worker sees them
    all): Qdrant keeps one point for them (one ID, insert-only), Parquet one row per file.
    """

    read: int = 0
    embedded: int = 0
    written: int = 0
    existing: int = 0
    skipped: int = 0
    ignored: int = 0
    failed: list[Failure] = field(default_factory=list)
    stored: int | None = None

    def adds_up(self) -> bool:
        """Whether the counts hold together (the job checks it before it returns)."""
        return self.read == self.embedded + self.existing + self.skipped and self.written == self.embedded


def index_with_ray(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    store: QdrantClient | str | os.PathLike | None = None,
    qdrant_url: str | None = None,
    qdrant_api_key: str | None = None,
    parquet: str | os.PathLike | None = None,
    collection_name: str = "jina-clip",
    model_name: str = "jinaai/jina-clip-v2",
    device: str | None = None,
    dtype: str | None = None,
    preset: Preset | None = None,
    short_dim: int | None = None,
    workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float = 1,
    batch_size: int = 256,
    report: str | os.PathLike | None = None,
    address: str | None = None,
    show_progress: bool | None = None,
) -> RayIndexResult:
    """Embed image and text files with Ray Data into one target: ``store``, ``qdrant_url`` or
    ``parquet``.

    Args:
        paths: files, folders (searched recursively), globs (``photos/**/*.jpg``) or URIs
            (``s3://bucket/photos/``, ``s3://bucket/photos/2024-*.jpg``: there ``*`` matches across
            folders too, and ``?`` starts a query as in any URI), all on one filesystem;
            credentials come from the environment, as pyarrow finds them.
        store: a local target, written by the driver: a folder (the embedded Qdrant engine; the
            collection is its sub-folder ``collection_name``) or a ``QdrantClient``.
        qdrant_url: a Qdrant server or cluster, written by the workers (``qdrant_api_key``, else
            ``QDRANT_API_KEY`` of the driver's environment, authenticates them).
        parquet: a folder (a path or URI) of Parquet files with the columns ``id``,
            ``modality``, ``source``, ``text``, ``vector`` (``list<float32>``) and, for models with
            Matryoshka sizes, ``short`` (the collection's short vector). IDs in its files are skipped.
        collection_name, preset, short_dim: the Qdrant collection, created or checked as
            ``QdrantVectorizer`` does (a ``StoreError`` when it has another layout).
        model_name, device, dtype: the engine each actor loads: a hub name, or a folder that
            exists on every node. The driver loads no weights, only the config and tokenizer.
        workers: embedding actors (default: one per GPU of the cluster, else 1).
        gpus_per_worker: GPUs per actor (default: 1 when the cluster has GPUs, else 0).
        cpus_per_worker: CPUs per actor (on CPUs, Ray gives its torch as many threads).
        batch_size: files per read and write task, and per call of an actor (fewer in a job too
            small to give every actor two batches).
        report: a file for the bad files, one JSON line each: ``{"path": ..., "reason": ...}``.
        address: the Ray cluster to connect to when Ray is not initialized yet (``"auto"``: the
            one this machine belongs to; None: Ray's default, a new local instance unless
            ``RAY_ADDRESS`` names one). A Ray started here is shut down at the end.
        show_progress: Ray Data's progress bars and logs (default: when stderr is a terminal).

    Raises:
        InputError: a path does not exist, a glob matches nothing, or a file named explicitly is
            neither an image nor a text.
        StoreError: the collection or the Parquet folder holds vectors of another layout.
        ValueError: not exactly one target, or bad options.
    """
    ray = _import_ray()
    from .progress import show_progress_default

    if sum(target is not None for target in (store, qdrant_url, parquet)) != 1:
        raise ValueError("give exactly one target: store=, qdrant_url= or parquet=")
    if parquet is not None and (preset is not None or short_dim is not None):
        raise ValueError("preset and short_dim describe Qdrant collections, not Parquet files")
    for name, value in (("batch_size", batch_size), ("workers", 1 if workers is None else workers)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    listing = _list(paths)
    spec = _model_spec(model_name)
    result = RayIndexResult(read=len(listing.sources), ignored=len(listing.ignored))
    with ExitStack() as stack:
        if parquet is not None:
            sink: _Sink = _ParquetSink(spec, os.fspath(parquet))
        else:
            sink = _qdrant_sink(spec, store, qdrant_url, qdrant_api_key, collection_name, preset, short_dim)
        stack.callback(sink.close)
        out = stack.enter_context(open(report, "w", encoding="utf-8")) if report is not None else None
        if listing.sources:
            if not ray.is_initialized():
                ray.init(address=address, logging_level=logging.WARNING)
                stack.callback(ray.shutdown)
            context, logs = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
            stack.callback(setattr, context, "enable_progress_bars", context.enable_progress_bars)
            stack.callback(logs.setLevel, logs.level)
            context.enable_progress_bars = show_progress_default(show_progress)
            if not context.enable_progress_bars:  # nor the progress logs
                logs.setLevel(logging.WARNING)
            engine = {"model_name": model_name, "device": device, "dtype": dtype}
            dataset = _pipeline(ray, listing, sink, spec, batch_size=batch_size, workers=workers,
                                gpus=gpus_per_worker, cpus=cpus_per_worker, engine=engine)  # fmt: skip
            for finished in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                _tally(result, sink.write(finished) if sink.in_driver else finished, out)
        result.stored = sink.finish()
    if not result.adds_up():
        raise RuntimeError(f"the job's counts do not add up (rows lost or repeated): {result}")
    return result


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ImportError(f'jinaclip_integrations.ray needs Ray Data ({exc}): pip install "jinaclip-integrations[ray]"') from exc  # fmt: skip
    return ray


def _model_spec(model_name: str) -> JinaCLIPEngine:
    """The engine without its weights: config, tokenizer and preprocessor, the model built on
    torch's meta device (no memory, no weights read). The driver lays out the target with it and
    the CPU workers preprocess with its preprocessor; only the actors load the weights."""
    import torch

    from .engine import JinaCLIPEngine
    from .engine.tokenizer import TextTokenizer
    from .engine.weights import build_model, load_config, resolve_checkpoint

    folder = resolve_checkpoint(model_name, weights=False)
    config = load_config(folder)
    model = build_model(config, torch.device("meta"), torch.float32)
    return JinaCLIPEngine(model, TextTokenizer.from_folder(folder, config.text.pad_token_id), name_or_path=str(model_name))  # fmt: skip


# -- listing -------------------------------------------------------------------------------


@dataclass
class _Listing:
    """The files of a job: ``sources`` as payloads name them, ``paths`` where the workers read
    them: on ``filesystem`` (pyarrow), or local absolute paths when it is None."""

    sources: list[str]
    ignored: list[str]
    paths: list[str]
    filesystem: Any = None


def _list(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> _Listing:
    """The image and text files under ``paths``, in order and once each, and the other files
    met (ignored). Local paths give the files of ``discover_files``, as strings; URIs are listed
    with pyarrow and named as given (``s3://bucket/photos/a.jpg``)."""
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    uris = ["://" in p for p in paths]
    if any(uris) and not all(uris):
        local = paths[uris.index(False)]
        raise ValueError(f"give either local paths or URIs, not both: {local!r} is local (as a URI: file://{os.path.abspath(local)})")  # fmt: skip
    return _list_uris(paths) if any(uris) else _list_local(paths)


def _magic(path: str) -> int:
    """Where the first glob character of ``path`` is, or -1."""
    return min((i for i in (path.find(c) for c in "*?[") if i >= 0), default=-1)


def _list_local(paths: list[str]) -> _Listing:
    named: list[str] = []
    ignored: list[str] = []
    for i, path in enumerate(paths):
        if _magic(path) < 0:
            named.append(path)
            continue
        matches = sorted(glob.glob(os.path.expanduser(path), recursive=True))
        if not matches:
            raise InputError(i, f"{path} matches no file", kind="path")
        for match in matches:  # a matched file of another kind is ignored, as in a folder
            (ignored if os.path.isfile(match) and modality_of(Path(match)) is None else named).append(match)
    files, more = discover_files(named)
    # workers read by absolute path: their working directory is where `ray start` ran
    return _Listing([str(f) for f in files], ignored + more, [os.path.abspath(f) for f in files])


def _list_uris(uris: list[str]) -> _Listing:
    from pyarrow import fs as pafs

    filesystem = None
    found: dict[str, str] = {}  # source -> path on the filesystem, in order
    ignored: list[str] = []
    for i, uri in enumerate(uris):
        uri = uri.rstrip("/") or uri
        fs, path = pafs.FileSystem.from_uri(uri)
        if filesystem is None:
            filesystem = fs
        elif fs.type_name != filesystem.type_name:
            raise ValueError(f"all paths must be on one filesystem: {uri} is on {fs.type_name}, not {filesystem.type_name}")  # fmt: skip
        prefix = uri[: len(uri) - len(path)] if uri.endswith(path) else uri.split("://", 1)[0] + "://"
        if (at := _magic(path)) >= 0:
            files = [f for f in _walk(fs, path[:at].rpartition("/")[0]) if fnmatchcase(f, path)]
            if not files:
                raise InputError(i, f"{uri} matches no file", kind="path")
        else:
            kind = fs.get_file_info(path).type
            if kind == pafs.FileType.NotFound:
                raise InputError(i, f"{uri} does not exist", kind="path")
            if kind == pafs.FileType.File and modality_of(PurePosixPath(path)) is None:
                raise InputError(i, f"{uri} is neither an image nor a text file", kind="path")
            files = [path] if kind == pafs.FileType.File else _walk(fs, path)
        for f in files:
            if modality_of(PurePosixPath(f)) is None:
                ignored.append(prefix + f)
            else:
                found.setdefault(prefix + f, f)
    return _Listing(list(found), ignored, list(found.values()), filesystem)


def _walk(filesystem: Any, folder: str) -> list[str]:
    """The files under ``folder`` of a pyarrow filesystem, recursively, sorted."""
    from pyarrow import fs as pafs

    infos = filesystem.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True))
    return sorted(info.path for info in infos if info.type == pafs.FileType.File)


# -- the pipeline --------------------------------------------------------------------------


def _pipeline(ray: Any, listing: _Listing, sink: _Sink, spec: JinaCLIPEngine, *, batch_size: int, workers: int | None,
              gpus: float | None, cpus: float, engine: dict[str, Any]) -> Any:  # fmt: skip
    """The lazy dataset of every file's last state (and vector, for a sink the driver writes).
    ``workers`` actors with ``gpus`` and ``cpus`` each (None: one per GPU of the cluster, else
    one on the CPU) load the engine that ``engine`` describes."""
    import pyarrow as pa

    if gpus is None:
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    workers = workers or (max(1, int(ray.cluster_resources().get("GPU", 0) // gpus)) if gpus else 1)
    batch_size = min(batch_size, -(-len(listing.sources) // (2 * workers)))  # a small job still feeds every actor
    known = sink.known_ids()  # None: the workers ask the sink
    blocks = []
    for start in range(0, len(listing.sources), batch_size):
        rows = slice(start, start + batch_size)
        blocks.append(pa.table({"source": pa.array(listing.sources[rows], pa.string()), "path": pa.array(listing.paths[rows], pa.string())}))  # fmt: skip
    skip = {"known": known, "sink": None if known is not None else sink}
    preprocess = {"preprocessor": spec.preprocessor, "max_pixels": spec.max_image_pixels}
    dataset = (
        ray.data.from_arrow(blocks)
        .map_batches(_read, fn_kwargs={"filesystem": listing.filesystem}, batch_format="pyarrow")
        .map_batches(_skip_stored, fn_kwargs=skip, batch_format="pyarrow")
        .map_batches(_preprocess, fn_kwargs=preprocess, batch_format="pyarrow")
        .map_batches(
            _Embedder,
            fn_constructor_kwargs=engine,
            compute=ray.data.ActorPoolStrategy(size=workers),
            batch_size=batch_size,
            batch_format="pyarrow",
            num_gpus=gpus,
            num_cpus=cpus,
        )
    )
    if not sink.in_driver:
        dataset = dataset.map_batches(_write, fn_kwargs={"sink": sink}, batch_format="pyarrow")
    return dataset


def _set(table: pa.Table, name: str, values: Any, type: Any = None) -> pa.Table:
    """``table`` with the column ``name`` replaced, or added."""
    import pyarrow as pa

    column = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values, type)
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, column) if index >= 0 else table.append_column(name, column)


def _read(table: pa.Table, filesystem: Any) -> pa.Table:
    """Read files: ``source`` -> ``id``, ``modality``, ``text``, ``payload`` (JSON), image
    bytes in ``data``, ``status`` and the ``reason`` of a failure."""
    import pyarrow as pa

    sources, paths = table.column("source").to_pylist(), table.column("path").to_pylist()
    columns: dict[str, list[Any]] = {k: [] for k in ("id", "modality", "text", "payload", "data", "status", "reason")}
    for index, (source, path) in enumerate(zip(sources, paths, strict=True)):
        modality = modality_of(PurePosixPath(path)) or "image"
        try:
            try:
                with open(path, "rb") if filesystem is None else filesystem.open_input_stream(path) as stream:
                    data = read_limited(stream.read, source, modality, index)
            except OSError as exc:
                raise InputError(index, f"cannot read {source}: {exc.strerror or exc}", kind="file") from None
            item = content_item(source, data, modality, index)
        except InputError as exc:
            row = [None, None, None, None, None, FAILED, exc.reason]
        else:
            text, data = (item.content, None) if item.modality == "text" else (None, item.content)
            row = [item.id, item.modality, text, json.dumps(item.payload, ensure_ascii=False), data, NEW, None]
        for column, value in zip(columns.values(), row, strict=True):
            column.append(value)
    types = {"data": pa.large_binary()}
    return pa.table({"source": table.column("source"), **{k: pa.array(v, types.get(k, pa.string())) for k, v in columns.items()}})  # fmt: skip


def _skip_stored(table: pa.Table, known: np.ndarray | None, sink: _Sink | None) -> pa.Table:
    """Mark the new rows whose ID the target holds (in ``known``, else as ``sink`` says)."""
    ids, status = table.column("id").to_pylist(), table.column("status").to_pylist()
    new = [ids[i] for i, s in enumerate(status) if s == NEW]
    if not new:
        return table
    stored = sink.existing(new) if known is None else {i for i, hit in zip(new, _contains(known, new), strict=True) if hit}  # fmt: skip
    return _set(table, "status", [EXISTING if s == NEW and ids[i] in stored else s for i, s in enumerate(status)])


def _uuid_bytes(ids: Iterable[str]) -> np.ndarray:
    return np.array([uuid.UUID(i).bytes for i in ids], dtype="S16")


def _id_array(ids: Iterable[str]) -> np.ndarray:
    """IDs as a sorted array of 16-byte UUIDs: a compact set that workers share without copies."""
    return np.sort(_uuid_bytes(ids))


def _contains(known: np.ndarray, ids: list[str]) -> np.ndarray:
    """Which of ``ids`` are in ``known`` (an :func:`_id_array`), as a boolean mask."""
    query = _uuid_bytes(ids)
    if not len(known):
        return np.zeros(len(query), dtype=bool)
    return known[np.minimum(np.searchsorted(known, query), len(known) - 1)] == query


def _preprocess(table: pa.Table, preprocessor: Any, max_pixels: int | None) -> pa.Table:
    """Decode, resize and crop the new images into ``pixels`` (uint8 bytes); a bad one fails."""
    import pyarrow as pa

    status, reason = table.column("status").to_pylist(), table.column("reason").to_pylist()
    modality, data = table.column("modality").to_pylist(), table.column("data")
    pixels: list[bytes | None] = [None] * len(status)
    for i, s in enumerate(status):
        if s == NEW and modality[i] == "image":
            try:
                pixels[i] = preprocessor.crop(data[i].as_py(), i, max_pixels).tobytes()
            except InputError as exc:
                status[i], reason[i] = FAILED, exc.reason
    table = _set(_set(table.drop_columns(["data"]), "status", status, pa.string()), "reason", reason, pa.string())
    return _set(table, "pixels", pixels, pa.large_binary())


class _Embedder:
    """An embedding actor: loads the engine once, then embeds the new rows of each batch into a
    ``vector`` column (full size, normalized, as the single-process path)."""

    def __init__(self, model_name: str, device: str | None, dtype: str | None) -> None:
        from .engine import JinaCLIPEngine

        self.engine = JinaCLIPEngine.from_pretrained(model_name, device=device, dtype=dtype, show_progress=False)

    def __call__(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa

        engine = self.engine
        status, modality = table.column("status").to_pylist(), table.column("modality").to_pylist()
        texts = [i for i, s in enumerate(status) if s == NEW and modality[i] == "text"]
        images = [i for i, s in enumerate(status) if s == NEW and modality[i] == "image"]
        vectors = np.zeros((len(status), engine.embedding_dim), dtype=np.float32)
        if texts:
            column = table.column("text")
            vectors[texts] = engine.encode_text([column[i].as_py() for i in texts], show_progress=False)
        if images:
            column, size = table.column("pixels"), engine.preprocessor.size
            crops = np.stack([np.frombuffer(column[i].as_py(), np.uint8) for i in images])
            vectors[images] = engine.encode_pixels(crops.reshape(-1, size, size, 3))
        embedded = np.zeros(len(status), dtype=bool)
        embedded[texts + images] = True
        status = [EMBEDDED if hit else s for s, hit in zip(status, embedded, strict=True)]
        table = _set(table.drop_columns(["pixels"]), "status", status, pa.string())
        return _set(table, "vector", _list_column(vectors, ~embedded))


def _list_column(rows: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    """The rows of a matrix as a ``list<float32>`` column (null where ``null`` is set)."""
    import pyarrow as pa

    keep = np.ones(len(rows), dtype=bool) if null is None else ~null
    offsets = np.concatenate([[0], np.cumsum(np.where(keep, rows.shape[1], 0))]).astype(np.int32)
    values = pa.array(rows[keep].ravel(), pa.float32())
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=None if null is None else pa.array(null))


def _vectors(table: pa.Table) -> np.ndarray:
    """The ``vector`` column as a matrix (of rows that all have one)."""
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(table), -1)


def _write(table: pa.Table, sink: _Sink) -> pa.Table:
    """The write stage: ``sink`` writes the embedded rows of a batch."""
    return sink.write(table)


def _tally(result: RayIndexResult, table: pa.Table, report: Any) -> None:
    """Count the finished rows of a batch into ``result``; failures go to ``report`` too."""
    for source, status, reason in zip(*(table.column(c).to_pylist() for c in ("source", "status", "reason")), strict=True):  # fmt: skip
        if status in (WRITTEN, EMBEDDED):  # embedded, never written: adds_up() fails the job
            result.embedded += 1
            result.written += status == WRITTEN
        elif status == EXISTING:
            result.existing += 1
        elif status == FAILED:
            result.skipped += 1
            result.failed.append(Failure(source, reason))
            if report is not None:
                report.write(result.failed[-1].to_json() + "\n")
    if report is not None:
        report.flush()


# -- targets -------------------------------------------------------------------------------


class _Sink:
    """Where vectors go. ``in_driver``: written by the driver from the pipeline's output (a
    single-process store); else by the write tasks, which get the sink pickled."""

    in_driver = False

    def known_ids(self) -> np.ndarray | None:
        """The IDs stored before the job (an :func:`_id_array`) for sinks that workers cannot
        ask; None: they ask :meth:`existing`."""
        return None

    def existing(self, ids: list[str]) -> set[str]:
        """Which of these IDs are stored."""
        raise NotImplementedError

    def write(self, table: pa.Table) -> pa.Table:
        """Write the embedded rows of a batch; return its ``_STATUS_COLUMNS``, those rows written."""
        raise NotImplementedError

    def finish(self) -> int | None:
        """After the last write: how many points are stored in all (None: not counted)."""
        return None

    def close(self) -> None:
        """Release what the driver opened."""


def _embedded(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``(the embedded rows, the batch's status columns with them written)``."""
    import pyarrow.compute as pc

    embedded = pc.equal(table.column("status"), EMBEDDED)
    status = pc.if_else(embedded, WRITTEN, table.column("status"))
    return table.filter(embedded), _set(table.select(_STATUS_COLUMNS), "status", status)


def _upsert(store: Any, short_dim: int | None, table: pa.Table) -> pa.Table:
    """Write a batch's embedded rows to a Qdrant store as ``QdrantVectorizer`` writes points."""
    from .qdrant import named_vectors

    rows, statuses = _embedded(table)
    if len(rows):
        columns = zip(*(rows.column(c).to_pylist() for c in ("id", "modality", "payload")), strict=True)
        items = [Item(id, modality, None, json.loads(payload)) for id, modality, payload in columns]
        store.upsert(items, named_vectors(_vectors(rows), short_dim))
    return statuses


def _qdrant_sink(spec: JinaCLIPEngine, store: Any, url: str | None, api_key: str | None, collection: str, preset: Preset | None, short_dim: int | None) -> _Sink:  # fmt: skip
    """Create or check the collection as ``QdrantVectorizer`` does; the sink that writes it."""
    from qdrant_client import QdrantClient

    from .qdrant import QdrantVectorizer

    if url is not None:
        api_key = api_key or os.environ.get("QDRANT_API_KEY")
        store = QdrantClient(url=url, api_key=api_key)
    try:
        vectorizer = QdrantVectorizer(store, collection, engine=spec, preset=preset, short_dim=short_dim, show_progress=False)  # fmt: skip
    except BaseException:
        if url is not None:  # a client this function opened (a caller's client stays theirs)
            store.close()
        raise
    return _LocalQdrantSink(vectorizer) if url is None else _QdrantServerSink(vectorizer, store, url, api_key)


class _LocalQdrantSink(_Sink):
    """The embedded engine, or a ``QdrantClient`` (local mode opens its folder in one process
    only): the driver asks and writes it."""

    in_driver = True

    def __init__(self, vectorizer: Any) -> None:
        self.vectorizer = vectorizer

    def known_ids(self) -> np.ndarray:
        return _id_array(self.vectorizer._store.ids())

    def write(self, table: pa.Table) -> pa.Table:
        return _upsert(self.vectorizer._store, self.vectorizer.layout.short_dim, table)

    def finish(self) -> int:
        self.vectorizer._store.optimize()
        return self.vectorizer.count()

    def close(self) -> None:
        self.vectorizer.close()


class _QdrantServerSink(_Sink):
    """A Qdrant server or cluster, which every worker asks and writes over the network."""

    def __init__(self, vectorizer: Any, client: QdrantClient, url: str, api_key: str | None) -> None:
        self.vectorizer, self.client = vectorizer, client  # the driver's: not pickled
        self.url, self.api_key = url, api_key
        self.collection, self.short_dim = vectorizer.collection_name, vectorizer.layout.short_dim

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "vectorizer": None, "client": None}

    def _store(self) -> Any:
        from .qdrant import _ClientStore

        return _ClientStore(_client(self.url, self.api_key), self.collection)

    def existing(self, ids: list[str]) -> set[str]:
        return self._store().existing(ids)

    def write(self, table: pa.Table) -> pa.Table:
        return _upsert(self._store(), self.short_dim, table)

    def finish(self) -> int:
        return self.vectorizer.count()

    def close(self) -> None:
        self.client.close()


@cache
def _client(url: str, api_key: str | None) -> QdrantClient:
    """One client per worker process and server."""
    from qdrant_client import QdrantClient

    return QdrantClient(url=url, api_key=api_key)


class _ParquetSink(_Sink):
    """A folder of ``part-<hash of its IDs>.parquet`` files written by the write tasks (a
    retried task rewrites its file). Each file records the layout in its schema metadata; a
    folder of another layout is refused, and IDs in the folder's files are skipped."""

    def __init__(self, spec: JinaCLIPEngine, folder: str) -> None:
        from pyarrow import fs as pafs

        from .qdrant import CollectionLayout, default_short_dim, model_label

        self.shown = folder
        self.filesystem, self.folder = pafs.FileSystem.from_uri(folder if "://" in folder else os.path.abspath(folder))
        self.layout = CollectionLayout(model_label(spec.name_or_path), spec.embedding_dim, default_short_dim(spec), "default")  # fmt: skip
        self.filesystem.create_dir(self.folder, recursive=True)

    def known_ids(self) -> np.ndarray:
        import pyarrow.parquet as pq

        parts = [f for f in _walk(self.filesystem, self.folder) if PurePosixPath(f).name.startswith("part-")]
        if not parts:
            return _id_array([])
        meta = pq.read_schema(parts[0], filesystem=self.filesystem).metadata or {}  # all files share one layout
        found = json.loads(meta[PARQUET_LAYOUT_KEY]) if PARQUET_LAYOUT_KEY in meta else None
        if found != self.layout.describe():
            raise StoreError(f"{self.shown} holds Parquet files of another layout ({found or 'not made by jinaclip'}); "
                             f"this model needs {self.layout.describe()}. Use another folder.")  # fmt: skip
        return _id_array(pq.ParquetDataset(parts, filesystem=self.filesystem).read(columns=["id"]).column("id").to_pylist())  # fmt: skip

    def write(self, table: pa.Table) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .qdrant import SHORT, named_vectors

        rows, statuses = _embedded(table)
        if len(rows):
            vectors = _vectors(rows)
            columns = {c: rows.column(c) for c in ("id", "modality", "source", "text")}
            columns["vector"] = _list_column(vectors)
            if self.layout.short_dim is not None:
                columns["short"] = _list_column(named_vectors(vectors, self.layout.short_dim)[SHORT])
            out = pa.table(columns).replace_schema_metadata({PARQUET_LAYOUT_KEY: json.dumps(self.layout.describe())})
            name = hashlib.sha256("\n".join(rows.column("id").to_pylist()).encode()).hexdigest()[:32]
            scratch = f"{self.folder}/.part-{name}.parquet.tmp"
            pq.write_table(out, scratch, filesystem=self.filesystem)
            self.filesystem.move(scratch, f"{self.folder}/part-{name}.parquet")  # whole files only
        return statuses
