"""One Weaviate collection as a :class:`~jinaclip_integrations.store.VectorStore`.

The collection has one self-provided named vector (HNSW, cosine) holding each point's embedding,
or its first ``dimensions`` Matryoshka dimensions re-normalized, and the payload fields of
:mod:`jinaclip_integrations.ingest` as properties, declared with their types when the collection
is created so that Weaviate's auto-schema never guesses them (it would store ints as floats).

Weaviate collections keep no free metadata, so the layout (model and stored size) is written at
the end of the collection's ``description``, after :data:`LAYOUT_TAG`, as the JSON of
:meth:`~jinaclip_integrations.store.CollectionLayout.describe`::

    jina-clip embeddings of jina-clip-v2 (512 dims), by jinaclip_integrations; layout: {"jinaclip_model": ...}

A collection whose description has no layout was not made by this package.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._lazy import needs_extra

with needs_extra("weaviate", "jinaclip_integrations.weaviate.store"):
    from weaviate.classes.config import Configure, DataType, Property, Tokenization, VectorDistances
    from weaviate.classes.data import DataObject
    from weaviate.classes.query import Filter, MetadataQuery
    from weaviate.exceptions import WeaviateInsertManyAllFailedError

import numpy as np

from ..engine import truncate_normalize
from ..errors import JinaCLIPError, StoreError
from ..ingest.items import batched
from ..store import UNKNOWN_LAYOUT, CollectionLayout, SearchHit, model_label

if TYPE_CHECKING:
    import weaviate
    from weaviate.collections import Collection

#: what precedes the layout's JSON at the end of the collection's description
LAYOUT_TAG = "; layout: "
#: objects per request when fetching, deleting or iterating over many (below Weaviate's
#: default QUERY_MAXIMUM_RESULTS of 10,000 matches per request)
PAGE = 1000

_KEYWORD = {"tokenization": Tokenization.FIELD}  # matched whole: paths, hashes, labels
#: the properties of the points :mod:`jinaclip_integrations.ingest` writes, as created
PROPERTIES: tuple[Property, ...] = (
    Property(name="text", data_type=DataType.TEXT),
    Property(name="heading", data_type=DataType.TEXT),
    Property(name="title", data_type=DataType.TEXT),
    Property(name="modality", data_type=DataType.TEXT, **_KEYWORD),
    Property(name="source", data_type=DataType.TEXT, **_KEYWORD),
    Property(name="format", data_type=DataType.TEXT, **_KEYWORD),
    Property(name="chunk", data_type=DataType.INT),
    Property(name="span", data_type=DataType.INT_ARRAY),
    Property(name="page", data_type=DataType.INT),
    Property(name="image", data_type=DataType.INT),
    Property(name="file_hash", data_type=DataType.TEXT, **_KEYWORD),
    Property(name="chunking", data_type=DataType.TEXT, **_KEYWORD),
    Property(name="parts", data_type=DataType.INT),
    Property(name="size", data_type=DataType.INT),
    Property(name="mtime_ns", data_type=DataType.TEXT, **_KEYWORD),  # see EXACT_INTS
    Property(name="content_hash", data_type=DataType.TEXT, **_KEYWORD),
)
#: int fields kept as decimal text: weaviate-client sends scalar properties over gRPC as
#: protobuf ``Struct`` numbers (doubles), which would round a nanosecond timestamp (about 2**60)
#: and make every file look modified to the next sync
EXACT_INTS = frozenset({"mtime_ns"})


def layout_for(engine: Any, dimensions: int | None) -> CollectionLayout:
    """The layout of a collection storing ``engine``'s vectors at ``dimensions`` (a Matryoshka
    size of the model; None: the full size)."""
    if dimensions is not None and dimensions not in engine.matryoshka_dims:
        raise ValueError(
            f"dimensions {dimensions} is not supported by {model_label(engine.name_or_path)}; "
            f"choose one of {list(engine.matryoshka_dims)} or None"
        )
    return CollectionLayout(model_label(engine.name_or_path), dimensions or engine.embedding_dim, None, "default")


def describe(layout: CollectionLayout) -> str:
    """The collection description that records ``layout``."""
    return (f"jina-clip embeddings of {layout.model} ({layout.dim} dims), by jinaclip_integrations"
            f"{LAYOUT_TAG}{json.dumps(layout.describe())}")  # fmt: skip


def recorded_layout(name: str, description: str | None) -> CollectionLayout:
    """The layout a collection's description records (:data:`UNKNOWN_LAYOUT` if none)."""
    _, tag, tail = (description or "").rpartition(LAYOUT_TAG)
    if not tag:
        return UNKNOWN_LAYOUT
    try:
        meta = json.loads(tail)
        return CollectionLayout.from_metadata(meta) or UNKNOWN_LAYOUT
    except (ValueError, TypeError, AttributeError) as exc:
        raise StoreError(f"the description of Weaviate collection {name!r} is damaged ({exc}); it records the layout") from None  # fmt: skip


class WeaviateStore:
    """A Weaviate collection with a self-provided named vector; :meth:`open` before use.

    Args:
        client: a connected ``weaviate.WeaviateClient``, left open by :meth:`close`.
        name: the collection (Weaviate capitalizes its first letter).
        vector_name: the named vector holding the embeddings.
        full_dim: the model's embedding size: :meth:`vectors` pads a stored Matryoshka prefix
            with zeros to it (None: vectors are returned at the stored size).
    """

    def __init__(self, client: weaviate.WeaviateClient, name: str, *, vector_name: str = "jina_clip",
                 full_dim: int | None = None) -> None:  # fmt: skip
        self.client, self.name, self.vector_name, self.full_dim = client, name, vector_name, full_dim
        self._collection: Collection | None = None
        self._layout: CollectionLayout | None = None

    @property
    def where(self) -> str:
        """The collection, as messages name it."""
        return f"Weaviate collection {self.name!r}"

    @property
    def collection(self) -> Collection:
        """The opened collection, for queries of your own (BM25, hybrid, aggregations...)."""
        if self._collection is None:
            raise StoreError(f"{self.where} is not open")
        return self._collection

    def folders(self) -> list[Path]:
        """Local folders of the store (never indexed as data): none, it lives on a server."""
        return []

    def layout(self) -> CollectionLayout | None:
        if not self.client.collections.exists(self.name):
            return None
        return recorded_layout(self.name, self.client.collections.get(self.name).config.get().description)

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        """Create the collection with ``layout``, or check the existing one: it must have the
        named vector with cosine distance and record this model and size.

        Raises:
            StoreError: it exists without the named vector, with another distance (the scores
                would mean something else), for another model or size, or not made by this package.
        """
        collections = self.client.collections
        if not collections.exists(self.name):
            vector = Configure.Vectors.self_provided(
                name=self.vector_name,
                vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE),
            )
            collections.create(self.name, description=describe(layout), properties=list(PROPERTIES), vector_config=[vector])  # fmt: skip
        collection = collections.get(self.name)
        config = collection.config.get()  # one request for the checks below
        vectors = config.vector_config or {}
        if self.vector_name not in vectors:
            raise StoreError(f"{self.where} has no named vector {self.vector_name!r} (it has {sorted(vectors)}); "
                             "pass vector_name= or use another collection")  # fmt: skip
        distance = getattr(vectors[self.vector_name].vector_index_config, "distance_metric", None)
        if distance != VectorDistances.COSINE:
            raise StoreError(f"{self.where}: the named vector {self.vector_name!r} uses "
                             f"{getattr(distance, 'value', distance)} distance, not cosine")  # fmt: skip
        found = recorded_layout(self.name, config.description)
        if found == UNKNOWN_LAYOUT:
            raise StoreError(f"{self.where} was not made by jinaclip (its description records no layout); "
                             "use another collection")  # fmt: skip
        if found != layout:
            raise StoreError(
                f"{self.where} holds {found.model} vectors of {found.dim} dimensions; this vectorizer stores "
                f"{layout.model} at {layout.dim}. Pass the model and dimensions it was made with, or use another collection"
            )  # fmt: skip
        self._collection, self._layout = collection, layout
        return layout

    def fit(self, vectors: np.ndarray) -> np.ndarray:
        """Rows of full-size (or stored-size) normalized vectors as stored: their first
        ``dim`` dimensions, normalized again (Matryoshka)."""
        dim = self._opened().dim
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[-1] < dim:
            raise ValueError(f"vectors have {vectors.shape[-1]} dimensions; {self.where} stores {dim}")
        return truncate_normalize(vectors, dim)

    def existing(self, ids: list[str]) -> set[str]:
        found: set[str] = set()
        for part in batched(ids, PAGE):
            result = self.collection.query.fetch_objects(filters=Filter.by_id().contains_any(part), limit=len(part), return_properties=[])  # fmt: skip
            found.update(str(obj.uuid) for obj in result.objects)
        return found

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Insert objects (one with the same UUID is replaced: IDs come from the content).

        Raises:
            JinaCLIPError: Weaviate rejected objects (a property of another type than the
                collection's, say); the message names the first. The batch's other objects are stored.
        """
        if not ids:  # the client would report an empty batch as one whose every object failed
            return
        objects = [
            DataObject(properties=_to_weaviate(payload), uuid=point_id, vector={self.vector_name: row.tolist()})
            for point_id, row, payload in zip(ids, self.fit(vectors), payloads, strict=True)
        ]
        try:
            result = self.collection.data.insert_many(objects)
        except WeaviateInsertManyAllFailedError as exc:
            raise JinaCLIPError(f"Weaviate rejected all {len(objects)} objects of a batch, the first "
                                f"{_name(ids[0], payloads[0])}: {exc.message}") from None  # fmt: skip
        if result.errors:
            position, error = min(result.errors.items())
            raise JinaCLIPError(f"Weaviate rejected {len(result.errors)} of {len(objects)} objects in a batch; the "
                                f"first is {_name(ids[position], payloads[position])}: {error.message}")  # fmt: skip

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors, by ID; zero-padded to ``full_dim`` when given: such a vector is
        normalized and its Matryoshka prefix is the stored one, so it can be stored again."""
        found: dict[str, np.ndarray] = {}
        for part in batched(ids, PAGE):
            result = self.collection.query.fetch_objects(filters=Filter.by_id().contains_any(part), limit=len(part),
                                                         include_vector=[self.vector_name], return_properties=[])  # fmt: skip
            for obj in result.objects:
                vector = np.asarray(obj.vector[self.vector_name], dtype=np.float32)
                if self.full_dim is not None and vector.shape[0] < self.full_dim:
                    vector = np.pad(vector, (0, self.full_dim - vector.shape[0]))
                found[str(obj.uuid)] = vector
        return found

    def delete(self, ids: list[str]) -> None:
        for part in batched(ids, PAGE):
            result = self.collection.data.delete_many(where=Filter.by_id().contains_any(part))
            if result.failed:
                raise StoreError(f"{self.where}: Weaviate failed to delete {result.failed} of {len(part)} objects")

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        for obj in self.collection.iterator(return_properties=list(fields), cache_size=PAGE):
            yield str(obj.uuid), _from_weaviate(obj.properties)

    def query(self, vector: np.ndarray, limit: int, modality: str | None) -> list[SearchHit]:
        """The ``limit`` nearest objects, best first; the cosine is ``1 - distance``."""
        result = self.collection.query.near_vector(
            near_vector=self.fit(vector).tolist(),
            target_vector=self.vector_name,
            limit=limit,
            filters=Filter.by_property("modality").equal(modality) if modality else None,
            return_metadata=MetadataQuery(distance=True),
        )
        return [SearchHit.from_payload(obj.uuid, 1.0 - obj.metadata.distance, _from_weaviate(obj.properties))
                for obj in result.objects]  # fmt: skip

    def count(self) -> int:
        return self.collection.aggregate.over_all(total_count=True).total_count or 0

    def optimize(self) -> None:
        """Weaviate indexes as it inserts."""

    def close(self) -> None:
        """The client is the caller's: left open."""

    def _opened(self) -> CollectionLayout:
        if self._layout is None:
            raise StoreError(f"{self.where} is not open")
        return self._layout


def _to_weaviate(payload: dict[str, Any]) -> dict[str, Any]:
    """A payload as properties: None values left out, :data:`EXACT_INTS` as text."""
    return {key: str(value) if key in EXACT_INTS and isinstance(value, int) else value
            for key, value in payload.items() if value is not None}  # fmt: skip


def _from_weaviate(properties: dict[str, Any]) -> dict[str, Any]:
    """Properties as the payload they were written from."""
    payload = {key: value for key, value in properties.items() if value is not None}
    for key in EXACT_INTS & payload.keys():
        if isinstance(payload[key], str) and payload[key].lstrip("-").isdigit():
            payload[key] = int(payload[key])
    return payload


def _name(point_id: str, payload: dict[str, Any]) -> str:
    """How a rejected object is named: its source and place in it, else its text, else its ID."""
    if payload.get("source"):
        inside = [f"{key} {payload[key]}" for key in ("chunk", "page", "image") if payload.get(key) is not None]
        return f"{payload.get('modality')} of {payload['source']}" + (f" ({', '.join(inside)})" if inside else "")
    if payload.get("text") is not None:
        text = payload["text"]
        return f"text {text if len(text) <= 60 else text[:57] + '...'!r}"
    return f"{payload.get('modality')} {point_id}"
