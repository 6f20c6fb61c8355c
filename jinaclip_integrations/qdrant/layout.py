"""What both Qdrant backends share: the collection's named vectors, how a search is planned,
and how the layout for a model is chosen."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine import truncate_normalize
from ..errors import StoreError
from ..store import UNKNOWN_LAYOUT, CollectionLayout, Preset, model_label

FULL, SHORT = "full", "short"
#: how many candidates a quantized search fetches per result before rescoring
OVERSAMPLING = {"int8": 2.0, "binary": 8.0}
#: the file beside an embedded store that records its layout
LAYOUT_FILE = "jinaclip.json"
#: points read per request when listing a whole collection
PAGE = 1024


def default_short_dim(engine: Any) -> int | None:
    """The short vector's size: the largest Matryoshka size up to an eighth of the full one
    (128 of 1024 for jina-clip-v2), else the smallest smaller size, else None (no short vector)."""
    smaller = [d for d in engine.matryoshka_dims if d < engine.embedding_dim]
    if not smaller:
        return None
    fitting = [d for d in smaller if d <= engine.embedding_dim // 8]
    return max(fitting) if fitting else min(smaller)


def layout_for(engine: Any, existing: CollectionLayout | None, preset: Preset | None, short_dim: int | None) -> CollectionLayout:  # fmt: skip
    """The layout a collection needs for this model: ``preset`` and ``short_dim`` as given, else
    as the ``existing`` collection has them, else the defaults."""
    dim = engine.embedding_dim
    preset = preset or (existing.preset if existing else "default")
    if short_dim is not None and preset != "default":
        raise ValueError(f"short_dim applies to the 'default' preset only; the {preset!r} preset has no short vector")
    if short_dim is None:
        short_dim = existing.short_dim if existing and existing.preset == "default" else default_short_dim(engine)
    elif short_dim not in engine.matryoshka_dims or short_dim >= dim:
        smaller = [d for d in engine.matryoshka_dims if d < dim]
        raise ValueError(f"short_dim {short_dim} is not a Matryoshka size below {dim}; choose one of {smaller}")
    return CollectionLayout(model_label(engine.name_or_path), dim, short_dim if preset == "default" else None, preset)


def named_vectors(vectors: np.ndarray, short_dim: int | None) -> dict[str, np.ndarray]:
    """The named vectors of a point per row of full-size embeddings: ``full`` as given and,
    when the layout has one, ``short``: the first ``short_dim`` dimensions, re-normalized."""
    named = {FULL: vectors}
    if short_dim is not None:
        named[SHORT] = truncate_normalize(vectors, short_dim)
    return named


def prefetch_limit(limit: int) -> int:
    """Candidates fetched on the short vector before rescoring: 10x the results, at least 100."""
    return max(10 * limit, 100)


class QdrantStore:
    """A Qdrant collection as a :class:`~jinaclip_integrations.store.VectorStore`: the parts
    both backends share; :meth:`open` or :meth:`open_existing` before use."""

    _layout: CollectionLayout | None = None

    def open_existing(self) -> CollectionLayout:
        """Open the collection as it was made (no model needed); a ``StoreError`` if there is
        none, or it was not made by this package."""
        found = self.layout()
        if found is None or found == UNKNOWN_LAYOUT:
            raise StoreError(f"{self.where} {'holds no jinaclip collection' if found else 'does not exist'}")
        return self.open(found)

    @property
    def where(self) -> str:
        """The collection, as messages name it."""
        raise NotImplementedError

    def folders(self) -> list[Path]:
        """Local folders of the store (never indexed as data)."""
        return []

    def existing(self, ids: list[str]) -> set[str]:
        return {str(r.id) for r in self._retrieve(ids, False)} if ids else set()

    def vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        records = self._retrieve(ids, [FULL]) if ids else []
        return {str(r.id): np.asarray(r.vector[FULL], dtype=np.float32) for r in records}

    def scroll(self, fields: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
        offset = None
        while True:
            points, offset = self._scroll_page(offset, list(fields) or False)
            yield from ((str(p.id), p.payload or {}) for p in points)
            if offset is None:
                return

    def _retrieve(self, ids: list[str], vectors: bool | list[str]) -> list[Any]:
        """The records of these IDs (no payload), with the named ``vectors`` (or none)."""
        raise NotImplementedError

    def _scroll_page(self, offset: Any, fields: list[str] | bool) -> tuple[list[Any], Any]:
        """One page of up to :data:`PAGE` records (with these payload fields, no vectors) from
        ``offset``, and the next offset (None after the last page)."""
        raise NotImplementedError

    def opened(self) -> CollectionLayout:
        if self._layout is None:
            raise StoreError(f"{self.where} is not open")
        return self._layout

    def named(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        return named_vectors(np.asarray(vectors, dtype=np.float32), self.opened().short_dim)
