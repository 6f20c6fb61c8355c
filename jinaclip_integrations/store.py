"""What every vector store of this package is, whatever the database behind it.

* :class:`CollectionLayout`: how a collection keeps the vectors of one model (recorded with the
  collection, checked when it is opened again).
* :class:`VectorStore`: the few operations ingestion, search and listing need from a backend:
  the embedded Qdrant engine, a Qdrant server, Weaviate. Vectors go in full-size and
  normalized; a backend derives what it keeps from them (a Matryoshka prefix, a quantized copy).
* :class:`SearchHit` and :func:`merged_search`: one ranking of texts and images for a query.
* :func:`source_summaries`: what a store holds, per source file.

Nothing here imports a database client: the backends do, in their own modules.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from .fusion import check_image_weight, fuse_modalities

Preset = Literal["default", "int8", "binary"]
#: collection presets: how the full vector is stored and searched
PRESETS: dict[str, str] = {
    "default": "full and short vectors in RAM; HNSW on the short vector, rescoring with the full one",
    "int8": "full vectors on disk, int8 scalar-quantized copy in RAM, rescoring with the originals",
    "binary": "full vectors on disk, binary-quantized copy in RAM, rescoring with the originals",
}
Modality = Literal["text", "image"]
#: candidates fetched per modality for a merged ranking (at least the number of results)
FETCH_PER_MODALITY = 20


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


#: the layout of a collection that exists but was not made by this package
UNKNOWN_LAYOUT = CollectionLayout("", 0, None, "default")


def model_label(name_or_path: str | os.PathLike) -> str:
    """The part of a model's hub name or folder that names the model itself."""
    return Path(str(name_or_path).rstrip("/\\")).name


def layout_mismatch(name: str, wanted: CollectionLayout, found: CollectionLayout | None) -> Exception:
    """The ``StoreError`` for a collection that exists with another layout than ``wanted``."""
    from .errors import StoreError

    return StoreError(
        f"collection {name!r} exists with another layout ({'not made by jinaclip' if found in (None, UNKNOWN_LAYOUT) else found.describe()}); "
        f"this model and its options need {wanted.describe()}. Use another collection name, or the options "
        "it was created with."
    )


@dataclass
class SearchHit:
    """One search result: the point's ID, its ranking ``score``, what was stored with it.

    ``cosine`` is the cosine similarity of the query and the point. ``score`` is what the hits
    are sorted by: the cosine when one modality was searched, the fused score of
    :func:`~jinaclip_integrations.fusion.fuse_modalities` (in (0, 1): how the point stands among
    the candidates of its own modality) when texts and images were ranked together."""

    id: str
    score: float
    modality: Modality | None
    source: str | None
    text: str | None
    payload: dict[str, Any]
    cosine: float = 0.0

    @classmethod
    def from_payload(cls, id: Any, cosine: float, payload: dict[str, Any] | None) -> SearchHit:
        """A hit from a stored payload as the integrations write it, scored by its cosine."""
        payload = dict(payload or {})
        return cls(str(id), float(cosine), payload.get("modality"), payload.get("source"), payload.get("text"),
                   payload, float(cosine))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        """The hit as ``jinaclip search --json`` prints it."""
        row = {"score": self.score, "cosine": self.cosine, "source": self.source, "modality": self.modality,
               "text": self.text, "id": self.id}  # fmt: skip
        for key in ("chunk", "page", "span", "heading"):
            if self.payload.get(key) is not None:
                row[key] = self.payload[key]
        return row


class VectorStore(Protocol):
    """A collection of points (one per text chunk or image) with full-size, normalized vectors.

    ``appends_only``: the store can add points but not remove or search them (Parquet files);
    its ``delete`` and ``query`` raise ``NotImplementedError``. Stores without the attribute
    do all of it.
    """

    appends_only: bool = False

    def layout(self) -> CollectionLayout | None:
        """The layout of the existing collection (:data:`UNKNOWN_LAYOUT` if not made by this
        package), or None when there is none."""

    def open(self, layout: CollectionLayout) -> CollectionLayout:
        """Create the collection with ``layout``, or check that the existing one has it
        (``StoreError`` if not)."""

    def existing(self, ids: list[str]) -> set[str]:
        """Which of these IDs are stored."""

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[dict[str, Any]]) -> None:
        """Write points (insert-only where the backend allows it), durably, before returning.
        ``vectors`` are full-size and normalized, one row per ID."""

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        """The vectors of stored points, by ID (missing IDs left out), full-size: a store that
        keeps a Matryoshka prefix gives it zero-padded (``upsert`` cuts it back to itself)."""

    def delete(self, ids: list[str]) -> None:
        """Remove points, durably, before returning."""

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every point's ID and the given payload fields, a page at a time."""

    def query(self, vector: np.ndarray, limit: int, modality: str | None) -> list[SearchHit]:
        """The ``limit`` points nearest to a full-size vector, best first, scored by cosine."""

    def count(self) -> int:
        """How many points the collection holds."""

    def optimize(self) -> None:
        """Build indexes after writes, where the backend leaves that to the caller."""

    def close(self) -> None:
        """Release what the store opened."""

    def folders(self) -> list[Path]:
        """The local folders the store keeps its data in (never walked as data to index)."""


def check_search(limit: Any, modality: Any) -> None:
    """ValueError unless ``limit`` is a positive integer and ``modality`` text, image or None."""
    if modality not in (None, "text", "image"):
        raise ValueError(f"modality must be 'text', 'image' or None, not {modality!r}")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")


def merged_search(
    store: VectorStore,
    vector: np.ndarray,
    *,
    limit: int,
    modality: str | None = None,
    image_weight: float = 1.0,
    fetch_k: int = FETCH_PER_MODALITY,
) -> list[SearchHit]:
    """Search a store with a full-size vector: one ranking of texts and images.

    With ``modality`` set, the ``limit`` nearest points of that modality by cosine. Without it,
    ``max(fetch_k, limit)`` candidates of each modality are fused by
    :func:`~jinaclip_integrations.fusion.fuse_modalities` (each side's cosines standardized, so
    CLIP's modality gap does not bury every image under every text; ``image_weight`` > 1 favours
    images); ``score`` is then the fused score and ``cosine`` the raw similarity.
    """
    check_search(limit, modality)
    if modality is not None:
        return store.query(vector, limit, modality)
    check_image_weight(image_weight)
    k = max(fetch_k, limit)
    texts, images = (store.query(vector, k, side) for side in ("text", "image"))
    fused = fuse_modalities([(h, h.cosine) for h in texts], [(h, h.cosine) for h in images], k=limit, image_weight=image_weight)  # fmt: skip
    for hit in fused:
        hit.item.score = hit.fused_score
    return [hit.item for hit in fused]


@dataclass
class SourceSummary:
    """What a store holds of one source (a file path, a URL, or None for texts given in memory)."""

    source: str | None
    points: int = 0
    modalities: Counter = field(default_factory=Counter)
    formats: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        """The summary as ``jinaclip ls --json`` prints it."""
        return {"source": self.source, "points": self.points, "texts": self.modalities["text"],
                "images": self.modalities["image"], "format": ",".join(sorted(self.formats)) or None}  # fmt: skip


def source_summaries(store: VectorStore) -> list[SourceSummary]:
    """Per source: its points, by modality, sorted by source (in-memory texts, without one, last)."""
    found: dict[str | None, SourceSummary] = {}
    for _, payload in store.scroll(["source", "modality", "format"]):
        summary = found.setdefault(payload.get("source"), SourceSummary(payload.get("source")))
        summary.points += 1
        summary.modalities[payload.get("modality")] += 1
        if payload.get("format"):
            summary.formats.add(payload["format"])
    return sorted(found.values(), key=lambda s: (s.source is None, s.source or ""))


def ids_of_sources(store: VectorStore, sources: Iterable[str]) -> dict[str, list[str]]:
    """The IDs of the points of each of these sources (an empty list for a source not stored)."""
    wanted: dict[str, list[str]] = {source: [] for source in sources}
    for point_id, payload in store.scroll(["source"]):
        if payload.get("source") in wanted:
            wanted[payload["source"]].append(point_id)
    return wanted
