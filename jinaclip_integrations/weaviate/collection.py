"""Bring your own vectors: embed texts, images and folders with jina-clip and store them in Weaviate.

No Weaviate module is involved: :class:`WeaviateVectorizer` embeds here and writes objects with
a self-provided named vector (HNSW, cosine), so it works with any Weaviate server. Each object's
UUID is derived from its content (:mod:`jinaclip_integrations._ingest`), and Weaviate's batch
insert replaces an object with the same UUID, so adding the same text or image twice writes
the same object again instead of a duplicate.

Needs the ``weaviate`` extra: ``pip install "jinaclip-integrations[weaviate]"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any, Literal

try:
    import weaviate
    from weaviate.classes.config import Configure, DataType, Property, VectorDistances
    from weaviate.classes.data import DataObject
    from weaviate.classes.query import Filter, MetadataQuery
    from weaviate.collections import Collection
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError(
        'jinaclip_integrations.weaviate.collection needs weaviate-client: pip install "jinaclip-integrations[weaviate]"'
    ) from exc

import numpy as np

from .._adapter import DEFAULT_QUERY_TASK
from .._ingest import (
    IngestReport,
    Item,
    SearchHit,
    check_on_error,
    chunks,
    discover_files,
    embed_items,
    iter_file_items,
    iter_image_items,
    text_items,
)
from ..engine import JinaCLIPEngine, shared_engine
from ..errors import JinaCLIPError, StoreError
from ..progress import progress_bar

__all__ = ["WeaviateVectorizer"]

DEFAULT_MODEL = "jinaai/jina-clip-v2"


class WeaviateVectorizer:
    """A Weaviate collection of texts and images with jina-clip vectors you compute locally.

    Objects have the properties ``text`` (texts only), ``source`` (a file path or URL, or the
    metadata's ``source``) and ``modality`` (``"text"`` or ``"image"``), plus any metadata
    given; the vector is stored under the named vector ``vector_name``. Metadata keys become
    Weaviate properties as they are: they must be valid GraphQL names (``[_A-Za-z][_0-9A-Za-z]*``),
    and keys other than the three above need Weaviate's auto-schema (on by default). Texts
    are embedded as documents (no instruction), search texts with the ``retrieval.query`` task
    when the model has it.

    Example:
        .. code-block:: python

            import weaviate
            from jinaclip_integrations.weaviate import WeaviateVectorizer

            with weaviate.connect_to_local() as client:
                store = WeaviateVectorizer(client, "Photos", dimensions=512)
                store.add_files(["./photos", "./notes"], on_error="skip")
                for hit in store.search_text("a dog on the beach", modality="image", limit=5):
                    print(hit.score, hit.source)

    Args:
        client: a connected ``weaviate.WeaviateClient``; nothing is sent before the first call
            that needs the collection.
        collection_name: the collection (Weaviate capitalizes the first letter).
        engine: an already loaded engine; otherwise ``model_name`` is loaded (shared with the
            other adapters through :func:`~jinaclip_integrations.shared_engine`).
        model_name, device, dtype: what to load when no ``engine`` is given.
        vector_name: the named vector holding the embeddings.
        dimensions: a Matryoshka size to store and search with (None: the full size).
        batch_size: objects embedded and inserted per request.
        show_progress: draw a progress bar while adding (default: on a terminal).
    """

    def __init__(
        self,
        client: weaviate.WeaviateClient,
        collection_name: str = "JinaClip",
        *,
        engine: JinaCLIPEngine | None = None,
        model_name: str = DEFAULT_MODEL,
        device: str | None = None,
        dtype: str | None = None,
        vector_name: str = "jina_clip",
        dimensions: int | None = None,
        batch_size: int = 64,
        show_progress: bool | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.engine = engine if engine is not None else shared_engine(model_name, device=device, dtype=dtype)
        self.model_name = self.engine.name_or_path or model_name
        if dimensions is not None and dimensions not in self.engine.matryoshka_dims:
            raise ValueError(
                f"dimensions {dimensions} is not supported by {self.model_name}; "
                f"choose one of {list(self.engine.matryoshka_dims)} or None"
            )
        self.client = client
        self.collection_name = collection_name
        self.vector_name = vector_name
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.query_task = DEFAULT_QUERY_TASK if DEFAULT_QUERY_TASK in self.engine.tasks else None
        self._collection: Collection | None = None

    # -- the collection --------------------------------------------------------------------

    def ensure_collection(self) -> Collection:
        """The collection, created if it does not exist (the model's name in its description).

        Raises:
            StoreError: it exists without the named vector ``vector_name``, or that vector's
                index does not use cosine distance (the scores would mean something else).
        """
        collections = self.client.collections
        if not collections.exists(self.collection_name):
            self._collection = collections.create(
                self.collection_name,
                description=f"jina-clip embeddings of {self.model_name} ({self.dim} dims), by jinaclip_integrations",
                properties=[
                    Property(name="text", data_type=DataType.TEXT),
                    Property(name="source", data_type=DataType.TEXT),
                    Property(name="modality", data_type=DataType.TEXT),
                ],
                vector_config=[
                    Configure.Vectors.self_provided(
                        name=self.vector_name,
                        vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
                    )
                ],
            )
            return self._collection
        collection = collections.get(self.collection_name)
        self._check_layout(collection)
        self._collection = collection
        return collection

    @property
    def dim(self) -> int:
        """The size of the stored vectors."""
        return self.dimensions or self.engine.embedding_dim

    def _check_layout(self, collection: Collection) -> None:
        vectors = collection.config.get().vector_config or {}
        where = f"Weaviate collection {self.collection_name!r}"
        if self.vector_name not in vectors:
            raise StoreError(
                f"{where} has no named vector {self.vector_name!r} (it has {sorted(vectors)}); "
                "pass vector_name= or use another collection"
            )
        distance = getattr(vectors[self.vector_name].vector_index_config, "distance_metric", None)
        if distance != VectorDistances.COSINE:
            raise StoreError(
                f"{where}: the named vector {self.vector_name!r} uses {getattr(distance, 'value', distance)} "
                "distance, not cosine"
            )

    def _target(self) -> Collection:
        return self._collection if self._collection is not None else self.ensure_collection()

    # -- adding ----------------------------------------------------------------------------

    def add_texts(self, texts: Sequence[str], metadatas: Sequence[dict] | None = None) -> list[str]:
        """Embed texts (as documents) and store them; returns their UUIDs, in input order.

        Texts are embedded and inserted ``batch_size`` at a time, so when one is rejected
        (``InputError`` with its index) the batches before it are stored already.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings; wrap a single text in a list")
        return self._add(text_items(texts, metadatas), "Adding texts to Weaviate")

    def add_images(self, images: Sequence[Any], metadatas: Sequence[dict] | None = None) -> list[str]:
        """Embed images (paths, URLs, bytes, base64, PIL images, arrays) and store them;
        returns their UUIDs, in input order. A path's ``source`` is the path.

        Images are embedded and inserted ``batch_size`` at a time, so when one is rejected
        (``InputError`` with its index) the batches before it are stored already.
        """
        if isinstance(images, (str, bytes, os.PathLike)):
            raise TypeError("images must be a list; wrap a single image in a list")
        return self._add(
            list(iter_image_items(images, metadatas, IngestReport(), "raise")), "Adding images to Weaviate"
        )

    def add_files(
        self, paths: Iterable[str | os.PathLike], *, on_error: Literal["raise", "skip"] = "raise"
    ) -> IngestReport:
        """Store image and text files, and the image and text files found in folders (recursively).

        With ``on_error="skip"`` a file that cannot be read or embedded is listed in the
        report's ``failed`` and the others are stored; with ``"raise"`` it raises an
        ``InputError`` naming the file (the batches before it are stored already).
        """
        on_error = check_on_error(on_error)
        files, ignored = discover_files(paths)
        report = IngestReport(ignored=ignored)
        collection = self._target()
        with progress_bar(len(files), "Adding files to Weaviate", self.show_progress, unit="file") as bar:
            for chunk in chunks(iter_file_items(files, report, on_error), self.batch_size):
                kept, vectors = embed_items(self.engine, chunk, on_error=on_error, report=report)
                self._insert(collection, kept, vectors)
                report.added += len(kept)
                bar.update(chunk[-1].index + 1 - bar.n)
        return report

    def _add(self, items: list[Item], desc: str) -> list[str]:
        collection = self._target()
        report = IngestReport()
        with progress_bar(len(items), desc, self.show_progress, unit="item") as bar:
            for chunk in chunks(items, self.batch_size):
                kept, vectors = embed_items(self.engine, chunk, on_error="raise", report=report)
                self._insert(collection, kept, vectors)
                bar.update(len(chunk))
        return [item.id for item in items]

    def _insert(self, collection: Collection, items: list[Item], vectors: np.ndarray) -> None:
        """Write one batch; a rejected object raises (Weaviate reports it per object, not as an error)."""
        if not items:
            return
        objects = [
            DataObject(
                properties={key: value for key, value in item.payload.items() if value is not None},
                uuid=item.id,
                vector={self.vector_name: vector.tolist()},
            )
            for item, vector in zip(items, self._fit(vectors), strict=True)
        ]
        result = collection.data.insert_many(objects)
        if result.errors:
            position, error = min(result.errors.items())
            item = items[position]
            where = item.payload.get("source") or f"{item.modality} {item.index}"
            raise JinaCLIPError(
                f"Weaviate rejected {len(result.errors)} of {len(objects)} objects in a batch; the first is "
                f"{item.modality} {item.index} ({where}): {error.message}"
            )

    def _fit(self, vectors: np.ndarray) -> np.ndarray:
        """Full-size normalized vectors cut to ``dimensions`` and normalized again (Matryoshka)."""
        if self.dimensions is None:
            return vectors
        cut = vectors[:, : self.dimensions]
        return cut / np.maximum(np.linalg.norm(cut, axis=1, keepdims=True), 1e-12)

    # -- searching -------------------------------------------------------------------------

    def search_text(
        self, text: str, *, limit: int = 10, modality: Literal["text", "image"] | None = None
    ) -> list[SearchHit]:
        """Texts and images most similar to a query text (embedded with the query task)."""
        vector = self.engine.encode_text(
            [text], task=self.query_task, truncate_dim=self.dimensions, show_progress=False
        )
        return self.search_vector(vector[0], limit=limit, modality=modality)

    def search_image(
        self, image: Any, *, limit: int = 10, modality: Literal["text", "image"] | None = None
    ) -> list[SearchHit]:
        """Texts and images most similar to an image (a path, URL, bytes, base64 or PIL image)."""
        vector = self.engine.encode_image([image], truncate_dim=self.dimensions, show_progress=False)
        return self.search_vector(vector[0], limit=limit, modality=modality)

    def search_vector(
        self, vector: Sequence[float], *, limit: int = 10, modality: Literal["text", "image"] | None = None
    ) -> list[SearchHit]:
        """The ``limit`` nearest objects to a vector, best first, optionally of one modality;
        ``score`` is the cosine similarity (``1 - distance``)."""
        if modality not in (None, "text", "image"):
            raise ValueError(f"modality must be 'text', 'image' or None, not {modality!r}")
        result = self._target().query.near_vector(
            near_vector=np.asarray(vector, dtype=np.float32).tolist(),
            target_vector=self.vector_name,
            limit=limit,
            filters=Filter.by_property("modality").equal(modality) if modality else None,
            return_metadata=MetadataQuery(distance=True),
        )
        return [SearchHit.from_payload(obj.uuid, 1.0 - obj.metadata.distance, obj.properties) for obj in result.objects]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.collection_name!r}, model={self.model_name!r}, dim={self.dim})"
