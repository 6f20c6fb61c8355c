"""A collection in the embedded Qdrant engine (qdrant-edge-py): a folder on disk, no server."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._lazy import needs_extra
from ..errors import StoreError
from ..ingest.items import batched
from ..store import UNKNOWN_LAYOUT, CollectionLayout, SearchHit, layout_mismatch
from .layout import FULL, LAYOUT_FILE, OVERSAMPLING, PAGE, SHORT, QdrantStore, prefetch_limit


class EdgeStore(QdrantStore):
    """A collection in the embedded Qdrant engine (qdrant-edge-py): a folder on disk."""

    def __init__(self, path: Path) -> None:
        with needs_extra("qdrant", "the embedded Qdrant store"):
            import qdrant_edge
        self.edge, self.path, self.shard = qdrant_edge, path, None

    @property
    def where(self) -> str:
        return f"the store {self.path}"

    def folders(self) -> list[Path]:
        return [self.path]

    def layout(self) -> CollectionLayout | None:
        meta = self.path / LAYOUT_FILE
        if meta.is_file():
            try:
                return CollectionLayout.from_metadata(json.loads(meta.read_text())) or UNKNOWN_LAYOUT
            except (ValueError, TypeError) as exc:
                raise StoreError(f"{meta} is damaged ({exc}); it records the store's layout") from None
        return UNKNOWN_LAYOUT if (self.path / "segments").exists() else None

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        existing = self.layout()
        if existing is not None and existing != layout:
            raise layout_mismatch(str(self.path), layout, existing)
        try:
            if (self.path / "segments").exists():
                self.shard = self.edge.EdgeShard.load(str(self.path))
            else:
                # the layout file first (atomically), then the shard: a run killed in between
                # leaves a layout and no segments, which the next open completes
                self.path.mkdir(parents=True, exist_ok=True)
                scratch = self.path / f".{LAYOUT_FILE}.tmp"
                scratch.write_text(json.dumps(layout.describe()))
                os.replace(scratch, self.path / LAYOUT_FILE)
                self.shard = self.edge.EdgeShard.create(str(self.path), self._config(layout))
                for field in ("modality", "source"):
                    self.shard.update(self.edge.UpdateOperation.create_field_index(field, self.edge.PayloadSchemaType.Keyword))  # fmt: skip
        except Exception as exc:  # the engine raises bare Exceptions
            raise StoreError(f"cannot open the embedded Qdrant store at {self.path}: {exc}") from exc
        self._layout = layout
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

    def _retrieve(self, ids: list[str], vectors: bool | list[str]) -> list[Any]:
        return self._open().retrieve(ids, with_payload=False, with_vector=vectors)

    def _scroll_page(self, offset: Any, fields: list[str] | bool) -> tuple[list[Any], Any]:
        request = self.edge.ScrollRequest(offset=offset, limit=PAGE, with_payload=fields, with_vector=False)
        return self._open().scroll(request)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        q = self.edge
        named = self.named(vectors)
        points = [q.Point(point_id, {k: v[i].tolist() for k, v in named.items()}, payload) for i, (point_id, payload) in enumerate(zip(ids, payloads, strict=True))]  # fmt: skip
        self._open().update(q.UpdateOperation.upsert_points(points, update_mode=q.UpdateMode.InsertOnly))

    def delete(self, ids: list[str]) -> None:
        for part in batched(ids, PAGE):
            self._open().update(self.edge.UpdateOperation.delete_points(part))

    def query(self, vector: np.ndarray, limit: int, modality: str | None) -> list[SearchHit]:
        q, layout = self.edge, self.opened()
        where = None
        if modality is not None:
            where = q.Filter(must=[q.FieldCondition(key="modality", match=q.MatchValue(modality))])
        named = {k: v[0].tolist() for k, v in self.named(vector[None]).items()}
        full = q.Query.Nearest(named[FULL], using=FULL)
        if SHORT in named:
            prefetch = q.Prefetch(limit=prefetch_limit(limit), query=q.Query.Nearest(named[SHORT], using=SHORT), filter=where)  # fmt: skip
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
