"""Qdrant vectorizer: put texts, images, files and folders straight into Qdrant and search them.

:class:`QdrantVectorizer` works on a ``qdrant_client.QdrantClient`` (a server URL, a local path
or ``":memory:"``) or on the embedded Qdrant engine ``qdrant-edge-py`` (a folder on disk, no
server). A collection holds one point per text or image with named vectors:

* ``"full"``: the whole normalized embedding (cosine);
* ``"short"``: its first ``short_dim`` Matryoshka dimensions, re-normalized, used as a fast
  first stage: a search prefetches candidates on ``"short"`` and rescores them on ``"full"``
  with the Query API. Models without Matryoshka training (jina-clip-v1) get no short vector.

The ``preset`` chooses how the full vector is kept (see :data:`PRESETS`): ``"default"`` keeps
both vectors in RAM and indexes only the short one; ``"int8"`` and ``"binary"`` keep the full
vectors on disk with a scalar (4x smaller) or binary (32x smaller) quantized copy in RAM, search
that copy and rescore the candidates with the originals.

Point IDs are UUIDs derived from the content (see ``_ingest.content_id``): ingesting the same
folder twice adds nothing, an interrupted ingest skips what is stored and embeds the rest, and
nothing stored is ever deleted or rewritten with other content.

qdrant-client's inference objects (``models.Document`` / ``models.Image``) resolve only FastEmbed
(ONNX) models or Qdrant Cloud inference; the client has no hook for a local PyTorch model, so
this module embeds locally and hands Qdrant plain vectors instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

try:
    from qdrant_client import QdrantClient, models
except ImportError as exc:  # pragma: no cover - exercised by the packaging test
    raise ImportError(
        'jinaclip_integrations.qdrant needs qdrant-client and qdrant-edge-py: pip install "jinaclip-integrations[qdrant]"'
    ) from exc

from ._adapter import DEFAULT_QUERY_TASK
from ._ingest import (
    Failure,
    IngestReport,
    Item,
    OnError,
    SearchHit,
    check_on_error,
    chunks,
    discover_files,
    embed_items,
    iter_file_items,
    iter_image_items,
    text_items,
)
from .engine import JinaCLIPEngine, shared_engine
from .errors import StoreError
from .progress import progress_bar

Preset = Literal["default", "int8", "binary"]
#: collection presets: how the full vector is stored and searched
PRESETS: dict[str, str] = {
    "default": "full and short vectors in RAM; HNSW on the short vector, rescoring with the full one",
    "int8": "full vectors on disk, int8 scalar-quantized copy in RAM, rescoring with the originals",
    "binary": "full vectors on disk, binary-quantized copy in RAM, rescoring with the originals",
}
FULL, SHORT = "full", "short"
#: how many candidates a quantized search fetches per result before rescoring
OVERSAMPLING = {"int8": 2.0, "binary": 8.0}
#: the file beside an embedded store that records its layout
LAYOUT_FILE = "jinaclip.json"
#: IDs read per request when listing a whole collection
_PAGE = 1024


@dataclass(frozen=True)
class CollectionLayout:
    """How a collection stores the vectors of one model. ``model`` is the model's name without
    its owner or folder (``jina-clip-v2`` for ``jinaai/jina-clip-v2`` and ``/models/jina-clip-v2``),
    so a hub name and a local copy of the same model match."""

    model: str
    dim: int
    short_dim: int | None
    preset: Preset

    def describe(self) -> dict[str, Any]:
        """The layout as stored in collection metadata."""
        return {"jinaclip_model": self.model, "jinaclip_dim": self.dim, "jinaclip_short_dim": self.short_dim,
                "jinaclip_preset": self.preset}  # fmt: skip

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> CollectionLayout | None:
        """The layout recorded by :meth:`describe`, or None when the metadata has none."""
        if "jinaclip_dim" not in meta:
            return None
        return cls(str(meta.get("jinaclip_model")), int(meta["jinaclip_dim"]), meta.get("jinaclip_short_dim"),
                   meta.get("jinaclip_preset", "default"))  # fmt: skip


def model_label(name_or_path: str | os.PathLike) -> str:
    """The part of a model's hub name or folder that names the model itself."""
    return Path(str(name_or_path).rstrip("/\\")).name


def default_short_dim(engine: JinaCLIPEngine) -> int | None:
    """The short vector's size: the largest Matryoshka size up to an eighth of the full one
    (128 of 1024 for jina-clip-v2), else the smallest smaller size, else None (no short vector)."""
    smaller = [d for d in engine.matryoshka_dims if d < engine.embedding_dim]
    if not smaller:
        return None
    fitting = [d for d in smaller if d <= engine.embedding_dim // 8]
    return max(fitting) if fitting else min(smaller)


class QdrantVectorizer:
    """Ingest and search texts and images in a Qdrant collection laid out for this model.

    Args:
        store: a ``QdrantClient``, or a folder for the embedded engine (qdrant-edge-py); the
            collection is then the sub-folder ``collection_name``.
        collection_name: the collection, created on first use or validated if it exists.
        engine: the engine to embed with (default: the shared engine of ``model_name``).
        model_name, device, dtype: which engine to load when ``engine`` is None.
        preset: a key of :data:`PRESETS`. None keeps an existing collection's preset and
            creates new ones as ``"default"``.
        short_dim: size of the short Matryoshka vector (``"default"`` preset only). None keeps
            an existing collection's size, else :func:`default_short_dim`.
        batch_size: items embedded and written per batch.
        on_error: ``"raise"`` stops at the first unreadable item with an ``InputError`` naming
            it (what was written before stays); ``"skip"`` reports it and goes on.
        show_progress: draw progress bars (default: when stderr is a terminal).

    Raises:
        StoreError: the collection exists with another layout.
        ValueError: unknown preset, or a ``short_dim`` that is not a Matryoshka size.
    """

    def __init__(
        self,
        store: QdrantClient | str | os.PathLike,
        collection_name: str = "jina-clip",
        *,
        engine: JinaCLIPEngine | None = None,
        model_name: str = "jinaai/jina-clip-v2",
        device: str | None = None,
        dtype: str | None = None,
        preset: Preset | None = None,
        short_dim: int | None = None,
        batch_size: int = 64,
        on_error: OnError = "raise",
        show_progress: bool | None = None,
    ) -> None:
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"preset must be one of {list(PRESETS)}, not {preset!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.engine = engine if engine is not None else shared_engine(model_name, device=device, dtype=dtype)
        self.collection_name = collection_name
        self.batch_size = batch_size
        self.on_error = check_on_error(on_error)
        self.show_progress = show_progress
        if isinstance(store, QdrantClient):
            self._store: _Store = _ClientStore(store, collection_name)
        elif isinstance(store, (str, os.PathLike)):
            if str(store) == ":memory:" or "://" in str(store):
                raise ValueError(f"{str(store)!r} is not a folder: pass QdrantClient({str(store)!r}) for a server or memory")  # fmt: skip
            self._store = _EdgeStore(Path(store).expanduser() / collection_name)
        else:
            raise TypeError(f"store must be a QdrantClient or a folder, not {type(store).__name__}")
        self.layout = self._store.open(self._layout(self._store.layout(), preset, short_dim))

    # -- ingest ------------------------------------------------------------------------------

    def add_texts(self, texts: Sequence[str], metadatas: Sequence[dict] | None = None) -> IngestReport:
        """Embed and store texts (no task instruction: they are passages). ``metadatas`` go to
        the payloads; a ``"source"`` key there becomes the hit's source."""
        return self._ingest(text_items(texts, metadatas), len(texts), IngestReport())

    def add_images(self, images: Sequence[Any], metadatas: Sequence[dict] | None = None) -> IngestReport:
        """Embed and store images (paths, URLs, bytes, base64, PIL images...); a path's source
        is itself. An unreadable image raises or is reported as ``on_error`` says."""
        report = IngestReport()
        return self._ingest(iter_image_items(images, metadatas, report, self.on_error), len(images), report)

    def add_files(self, paths: Iterable[str | os.PathLike], *, on_error: OnError | None = None) -> IngestReport:
        """Embed and store image and text files, and every such file under the given folders.

        Files are read and embedded a batch at a time. The report counts what was added, what
        was stored already, what failed (with ``on_error="skip"``; None: the vectorizer's
        setting) and which files in the folders were neither images nor texts.
        """
        on_error = self.on_error if on_error is None else check_on_error(on_error)
        files, ignored = discover_files(paths)
        report = IngestReport(ignored=ignored)
        return self._ingest(iter_file_items(files, report, on_error), len(files), report, on_error)

    def _ingest(self, items: Iterable[Item], total: int, report: IngestReport, on_error: OnError | None = None) -> IngestReport:  # fmt: skip
        """Write the items that are not stored yet, a batch at a time; counts go to ``report``."""
        written: set[str] = set()  # IDs this run stored
        with progress_bar(total, "Indexing", self.show_progress, unit="item") as bar:
            for batch in chunks(items, self.batch_size):
                stored = self._store.existing([item.id for item in batch]) | written
                new: dict[str, Item] = {}
                repeats: list[Item] = []  # same content as an earlier item of this batch
                for item in batch:
                    if item.id in stored:
                        report.existing += 1
                    elif item.id in new:
                        repeats.append(item)
                    else:
                        new[item.id] = item
                kept, vectors = embed_items(self.engine, list(new.values()), on_error=on_error or self.on_error, report=report)  # fmt: skip
                if kept:
                    self._store.upsert(kept, self._named(vectors))
                written.update(item.id for item in kept)
                report.added += len(kept)
                for item in repeats:  # stored once if its first copy was; failed with it if not
                    if item.id in written:
                        report.existing += 1
                    else:
                        report.failed.append(Failure(item.where, "same content as an item that failed"))
                bar.update(batch[-1].index + 1 - bar.n)
        self._store.optimize()
        return report

    # -- search ------------------------------------------------------------------------------

    def search_text(self, text: str, *, limit: int = 10, modality: str | None = None) -> list[SearchHit]:
        """Search with a sentence (embedded with the query instruction where the model has one)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        task = DEFAULT_QUERY_TASK if DEFAULT_QUERY_TASK in self.engine.tasks else None
        return self.search_vector(self.engine.encode_text([text], task=task, show_progress=False)[0], limit=limit, modality=modality)  # fmt: skip

    def search_image(self, image: Any, *, limit: int = 10, modality: str | None = None) -> list[SearchHit]:
        """Search with an image (a path, URL, bytes, PIL image...)."""
        return self.search_vector(self.engine.encode_image([image], show_progress=False)[0], limit=limit, modality=modality)  # fmt: skip

    def search_vector(
        self, vector: Sequence[float] | np.ndarray, *, limit: int = 10, modality: str | None = None
    ) -> list[SearchHit]:
        """Search with a full-size embedding; ``modality`` (``"text"`` or ``"image"``) filters
        the hits. Hits come best first, scored by cosine similarity on the full vector."""
        if modality not in (None, "text", "image"):
            raise ValueError(f"modality must be 'text', 'image' or None, not {modality!r}")
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        full = np.asarray(vector, dtype=np.float32).reshape(-1)
        if full.shape[0] != self.layout.dim:
            raise ValueError(f"vector has {full.shape[0]} dimensions; the collection stores {self.layout.dim}")
        named = self._named(full[None])
        return self._store.query(self.layout, {k: v[0] for k, v in named.items()}, limit, modality)

    def count(self) -> int:
        """How many points the collection holds."""
        return self._store.count()

    def close(self) -> None:
        """Flush and release the store (the embedded engine's files; a client is left open)."""
        self._store.close()

    def __enter__(self) -> QdrantVectorizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -----------------------------------------------------------------------------

    def _layout(
        self, existing: CollectionLayout | None, preset: Preset | None, short_dim: int | None
    ) -> CollectionLayout:
        dim = self.engine.embedding_dim
        preset = preset or (existing.preset if existing else "default")
        if short_dim is not None and preset != "default":
            raise ValueError(
                f"short_dim applies to the 'default' preset only; the {preset!r} preset has no short vector"
            )
        if short_dim is None:
            short_dim = (
                existing.short_dim if existing and existing.preset == "default" else default_short_dim(self.engine)
            )
        elif short_dim not in self.engine.matryoshka_dims or short_dim >= dim:
            smaller = [d for d in self.engine.matryoshka_dims if d < dim]
            raise ValueError(f"short_dim {short_dim} is not a Matryoshka size below {dim}; choose one of {smaller}")
        return CollectionLayout(model_label(self.engine.name_or_path), dim, short_dim if preset == "default" else None, preset)  # fmt: skip

    def _named(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        return named_vectors(vectors, self.layout.short_dim)


def named_vectors(vectors: np.ndarray, short_dim: int | None) -> dict[str, np.ndarray]:
    """The named vectors of a point per row of full-size embeddings: ``full`` as given and,
    when the layout has one, ``short``: the first ``short_dim`` dimensions, re-normalized."""
    named = {FULL: vectors}
    if short_dim is not None:
        short = vectors[:, :short_dim]
        named[SHORT] = short / np.maximum(np.linalg.norm(short, axis=1, keepdims=True), 1e-12)
    return named


def _mismatch(name: str, wanted: CollectionLayout, found: CollectionLayout | None) -> StoreError:
    return StoreError(
        f"collection {name!r} exists with another layout ({'not made by jinaclip' if found in (None, _UNKNOWN) else found.describe()}); "
        f"this model and preset need {wanted.describe()}. Use another collection name, or the preset and "
        "short_dim it was created with."
    )


class _Store:
    """The operations the vectorizer needs from a Qdrant backend."""

    def layout(self) -> CollectionLayout | None:
        """The layout of the existing collection, or None when there is none."""
        raise NotImplementedError

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        """Create the collection with ``layout``, or check the existing one has it."""
        raise NotImplementedError

    def existing(self, ids: list[str]) -> set[str]:
        """Which of these IDs are stored."""
        raise NotImplementedError

    def ids(self) -> Iterator[str]:
        """Every stored ID, a page at a time (for jobs whose workers cannot ask the store)."""
        offset = None
        while True:
            points, offset = self._scroll(offset)
            yield from (str(p.id) for p in points)
            if offset is None:
                return

    def _scroll(self, offset: Any) -> tuple[list[Any], Any]:
        """One page of up to :data:`_PAGE` points (IDs only) from ``offset``, and the next offset."""
        raise NotImplementedError

    def upsert(self, items: list[Item], vectors: dict[str, np.ndarray]) -> None:
        """Write points, durably, before returning."""
        raise NotImplementedError

    def query(self, layout: CollectionLayout, vectors: dict[str, np.ndarray], limit: int, modality: str | None) -> list[SearchHit]:  # fmt: skip
        """Search as the layout's preset prescribes."""
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    def optimize(self) -> None:
        """Build indexes after writes, where the backend leaves that to the caller."""

    def close(self) -> None:
        """Release what the store opened."""


class _ClientStore(_Store):
    """A collection behind ``qdrant_client.QdrantClient`` (server, local path or memory)."""

    def __init__(self, client: QdrantClient, name: str) -> None:
        self.client, self.name = client, name

    def layout(self) -> CollectionLayout | None:
        if not self.client.collection_exists(self.name):
            return None
        return self._recorded(self.client.get_collection(self.name).config)

    @staticmethod
    def _recorded(config: models.CollectionConfig) -> CollectionLayout:
        return CollectionLayout.from_metadata(config.metadata or {}) or _UNKNOWN

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        if not self.client.collection_exists(self.name):
            self.client.create_collection(
                self.name, vectors_config=self._vectors_config(layout), metadata=layout.describe()
            )
        config = self.client.get_collection(self.name).config  # one request for the checks below
        params, recorded = config.params.vectors, self._recorded(config)
        wanted = {name: (p.size, p.distance) for name, p in self._vectors_config(layout).items()}
        found = {name: (p.size, p.distance) for name, p in params.items()} if isinstance(params, dict) else {}
        if found != wanted or recorded != layout:
            raise _mismatch(self.name, layout, recorded)
        if not _is_local(self.client):  # idempotent; local mode ignores payload indexes (and warns)
            self.client.create_payload_index(self.name, "modality", models.PayloadSchemaType.KEYWORD)
        return layout

    @staticmethod
    def _vectors_config(layout: CollectionLayout) -> dict[str, models.VectorParams]:
        cosine = models.Distance.COSINE
        if layout.preset == "default":
            config = {
                FULL: models.VectorParams(size=layout.dim, distance=cosine, hnsw_config=models.HnswConfigDiff(m=0))
            }
            if layout.short_dim is None:  # no short vector: index the full one
                config[FULL] = models.VectorParams(size=layout.dim, distance=cosine)
            else:
                config[SHORT] = models.VectorParams(size=layout.short_dim, distance=cosine)
            return config
        if layout.preset == "int8":
            quantization: Any = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
            )
        else:
            quantization = models.BinaryQuantization(
                binary=models.BinaryQuantizationConfig(always_ram=True, query_encoding=models.BinaryQuantizationQueryEncoding.SCALAR8BITS)
            )  # fmt: skip
        return {FULL: models.VectorParams(size=layout.dim, distance=cosine, on_disk=True, quantization_config=quantization)}  # fmt: skip

    def existing(self, ids: list[str]) -> set[str]:
        return {str(p.id) for p in self.client.retrieve(self.name, ids, with_payload=False, with_vectors=False)}

    def _scroll(self, offset: Any) -> tuple[list[Any], Any]:
        return self.client.scroll(self.name, limit=_PAGE, offset=offset, with_payload=False, with_vectors=False)

    def upsert(self, items: list[Item], vectors: dict[str, np.ndarray]) -> None:
        points = [
            models.PointStruct(id=item.id, vector={k: v[i].tolist() for k, v in vectors.items()}, payload=item.payload)
            for i, item in enumerate(items)
        ]
        # insert-only: a concurrent writer of the same content cannot overwrite a stored point
        self.client.upsert(self.name, points=points, wait=True, update_mode=models.UpdateMode.INSERT_ONLY)

    def query(self, layout: CollectionLayout, vectors: dict[str, np.ndarray], limit: int, modality: str | None) -> list[SearchHit]:  # fmt: skip
        where = None
        if modality is not None:
            where = models.Filter(must=[models.FieldCondition(key="modality", match=models.MatchValue(value=modality))])
        full = vectors[FULL].tolist()
        if SHORT in vectors:
            prefetch = models.Prefetch(
                query=vectors[SHORT].tolist(), using=SHORT, limit=_prefetch_limit(limit), filter=where
            )
            response = self.client.query_points(self.name, prefetch=prefetch, query=full, using=FULL, limit=limit, query_filter=where)  # fmt: skip
        else:
            params = None
            if layout.preset in OVERSAMPLING and not _is_local(self.client):  # local mode searches exactly
                params = models.SearchParams(
                    quantization=models.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING[layout.preset])
                )
            response = self.client.query_points(self.name, query=full, using=FULL, limit=limit, query_filter=where, search_params=params)  # fmt: skip
        return [SearchHit.from_payload(p.id, p.score, p.payload) for p in response.points]

    def count(self) -> int:
        return self.client.count(self.name, exact=True).count


#: the layout of a collection that exists but was not made by this package
_UNKNOWN = CollectionLayout("", 0, None, "default")


def _is_local(client: QdrantClient) -> bool:
    return type(client._client).__name__ == "QdrantLocal"


def _prefetch_limit(limit: int) -> int:
    """Candidates fetched on the short vector before rescoring: 10x the results, at least 100."""
    return max(10 * limit, 100)


class _EdgeStore(_Store):
    """A collection in the embedded Qdrant engine (qdrant-edge-py): a folder on disk."""

    def __init__(self, path: Path) -> None:
        try:
            import qdrant_edge
        except ImportError as exc:
            raise ImportError(
                'the embedded Qdrant store needs qdrant-edge-py: pip install "jinaclip-integrations[qdrant]"'
            ) from exc
        self.edge, self.path, self.shard = qdrant_edge, path, None

    def layout(self) -> CollectionLayout | None:
        meta = self.path / LAYOUT_FILE
        if meta.is_file():
            try:
                return CollectionLayout.from_metadata(json.loads(meta.read_text())) or _UNKNOWN
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{meta} is damaged ({exc}); it records the store's layout") from None
        return _UNKNOWN if (self.path / "segments").exists() else None

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        existing = self.layout()
        if existing is not None and existing != layout:
            raise _mismatch(str(self.path), layout, existing)
        try:
            if (self.path / "segments").exists():
                self.shard = self.edge.EdgeShard.load(str(self.path))
                return layout
            # the layout file first (atomically), then the shard: a run killed in between
            # leaves a layout and no segments, which the next open completes
            self.path.mkdir(parents=True, exist_ok=True)
            scratch = self.path / f".{LAYOUT_FILE}.tmp"
            scratch.write_text(json.dumps(layout.describe()))
            os.replace(scratch, self.path / LAYOUT_FILE)
            self.shard = self.edge.EdgeShard.create(str(self.path), self._config(layout))
            self.shard.update(self.edge.UpdateOperation.create_field_index("modality", self.edge.PayloadSchemaType.Keyword))  # fmt: skip
        except Exception as exc:  # the engine raises bare Exceptions
            raise StoreError(f"cannot open the embedded Qdrant store at {self.path}: {exc}") from exc
        return layout

    def _open(self) -> Any:
        if self.shard is None:
            raise StoreError(f"the store at {self.path} is closed")
        return self.shard

    def _config(self, layout: CollectionLayout) -> Any:
        q = self.edge
        cosine = q.Distance.Cosine
        if layout.preset == "default":
            vectors = {FULL: q.EdgeVectorParams(size=layout.dim, distance=cosine)}
            if layout.short_dim is not None:  # the full vector only rescores: no graph for it
                vectors[FULL] = q.EdgeVectorParams(
                    size=layout.dim, distance=cosine, hnsw_config=q.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10000)
                )  # fmt: skip
                vectors[SHORT] = q.EdgeVectorParams(size=layout.short_dim, distance=cosine)
            return q.EdgeConfig(vectors=vectors)
        if layout.preset == "int8":
            quantization = q.ScalarQuantizationConfig(q.ScalarType.Int8, quantile=0.99, memory=q.Memory.Pinned)
        else:
            quantization = q.BinaryQuantizationConfig(memory=q.Memory.Pinned, query_encoding=q.BinaryQuantizationQueryEncoding.Scalar8Bits)  # fmt: skip
        full = q.EdgeVectorParams(
            size=layout.dim, distance=cosine, memory=q.Memory.Cold, quantization_config=quantization
        )
        return q.EdgeConfig(vectors={FULL: full})

    def existing(self, ids: list[str]) -> set[str]:
        return {str(r.id) for r in self._open().retrieve(ids, with_payload=False, with_vector=False)}

    def _scroll(self, offset: Any) -> tuple[list[Any], Any]:
        request = self.edge.ScrollRequest(offset=offset, limit=_PAGE, with_payload=False, with_vector=False)
        return self._open().scroll(request)

    def upsert(self, items: list[Item], vectors: dict[str, np.ndarray]) -> None:
        q = self.edge
        points = [q.Point(item.id, {k: v[i].tolist() for k, v in vectors.items()}, item.payload) for i, item in enumerate(items)]  # fmt: skip
        self._open().update(q.UpdateOperation.upsert_points(points, update_mode=q.UpdateMode.InsertOnly))

    def query(self, layout: CollectionLayout, vectors: dict[str, np.ndarray], limit: int, modality: str | None) -> list[SearchHit]:  # fmt: skip
        q = self.edge
        where = None
        if modality is not None:
            where = q.Filter(must=[q.FieldCondition(key="modality", match=q.MatchValue(modality))])
        full = q.Query.Nearest(vectors[FULL].tolist(), using=FULL)
        if SHORT in vectors:
            prefetch = q.Prefetch(limit=_prefetch_limit(limit), query=q.Query.Nearest(vectors[SHORT].tolist(), using=SHORT), filter=where)  # fmt: skip
            request = q.QueryRequest(limit=limit, query=full, prefetches=[prefetch], filter=where, with_payload=True)
        else:
            params = None
            if layout.preset in OVERSAMPLING:
                params = q.SearchParams(quantization=q.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING[layout.preset]))  # fmt: skip
            request = q.QueryRequest(limit=limit, query=full, filter=where, with_payload=True, params=params)
        return [SearchHit.from_payload(p.id, p.score, p.payload) for p in self._open().query(request)]

    def count(self) -> int:
        return self._open().count(self.edge.CountRequest(exact=True))

    def optimize(self) -> None:
        self._open().optimize()

    def close(self) -> None:
        shard, self.shard = self.shard, None
        if shard is not None:
            try:
                shard.flush()
            finally:
                shard.close()
