"""A collection behind ``qdrant_client.QdrantClient``: a Qdrant server or cluster, or the
client's local mode (a brute-force Python stand-in, for tests and small data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._lazy import needs_extra

with needs_extra("qdrant", "a Qdrant server"):
    from qdrant_client import QdrantClient, models

from ..ingest.items import batched
from ..store import UNKNOWN_LAYOUT, CollectionLayout, SearchHit, layout_mismatch
from .layout import FULL, OVERSAMPLING, PAGE, SHORT, QdrantStore, prefetch_limit


class ClientStore(QdrantStore):
    """A collection behind ``qdrant_client.QdrantClient`` (server, local path or memory)."""

    def __init__(self, client: QdrantClient, name: str) -> None:
        self.client, self.name = client, name

    @property
    def where(self) -> str:
        return f"collection {self.name!r}"

    def layout(self) -> CollectionLayout | None:
        if not self.client.collection_exists(self.name):
            return None
        return self._recorded(self.client.get_collection(self.name).config)

    @staticmethod
    def _recorded(config: models.CollectionConfig) -> CollectionLayout:
        return CollectionLayout.from_metadata(config.metadata or {}) or UNKNOWN_LAYOUT

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
            raise layout_mismatch(self.name, layout, recorded)
        if not _is_local(self.client):  # idempotent; local mode ignores payload indexes (and warns)
            for field in ("modality", "source"):
                self.client.create_payload_index(self.name, field, models.PayloadSchemaType.KEYWORD)
        self._layout = layout
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

    def _retrieve(self, ids: list[str], vectors: bool | list[str]) -> list[Any]:
        return self.client.retrieve(self.name, ids, with_payload=False, with_vectors=vectors)

    def _scroll_page(self, offset: Any, fields: list[str] | bool) -> tuple[list[Any], Any]:
        return self.client.scroll(self.name, limit=PAGE, offset=offset, with_payload=fields, with_vectors=False)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        named = self.named(vectors)
        points = [
            models.PointStruct(id=point_id, vector={k: v[i].tolist() for k, v in named.items()}, payload=payload)
            for i, (point_id, payload) in enumerate(zip(ids, payloads, strict=True))
        ]
        # insert-only: a concurrent writer of the same content cannot overwrite a stored point
        self.client.upsert(self.name, points=points, wait=True, update_mode=models.UpdateMode.INSERT_ONLY)

    def delete(self, ids: list[str]) -> None:
        for part in batched(ids, PAGE):
            self.client.delete(self.name, points_selector=models.PointIdsList(points=part), wait=True)

    def query(self, vector: np.ndarray, limit: int, modality: str | None) -> list[SearchHit]:
        layout = self.opened()
        where = None
        if modality is not None:
            where = models.Filter(must=[models.FieldCondition(key="modality", match=models.MatchValue(value=modality))])
        named = {k: v[0].tolist() for k, v in self.named(vector[None]).items()}
        if SHORT in named:
            prefetch = models.Prefetch(query=named[SHORT], using=SHORT, limit=prefetch_limit(limit), filter=where)
            response = self.client.query_points(self.name, prefetch=prefetch, query=named[FULL], using=FULL, limit=limit, query_filter=where)  # fmt: skip
        else:
            params = None
            if layout.preset in OVERSAMPLING and not _is_local(self.client):  # local mode searches exactly
                params = models.SearchParams(
                    quantization=models.QuantizationSearchParams(rescore=True, oversampling=OVERSAMPLING[layout.preset])
                )
            response = self.client.query_points(self.name, query=named[FULL], using=FULL, limit=limit, query_filter=where, search_params=params)  # fmt: skip
        return [SearchHit.from_payload(p.id, p.score, p.payload) for p in response.points]

    def count(self) -> int:
        return self.client.count(self.name, exact=True).count

    def optimize(self) -> None:
        """Qdrant servers index in the background."""

    def close(self) -> None:
        """The client is the caller's: left open."""


def _is_local(client: QdrantClient) -> bool:
    return type(client._client).__name__ == "QdrantLocal"
