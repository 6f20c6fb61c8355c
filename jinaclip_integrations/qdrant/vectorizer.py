"""QdrantVectorizer: ingest and search texts, images, files and folders in a Qdrant collection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..ingest.items import OnError
from ..store import PRESETS, Preset
from ..vectorizer import Vectorizer
from .layout import QdrantStore, layout_for

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

    from ..engine import JinaCLIPEngine, LazyEngine

DEFAULT_COLLECTION = settings.SETTINGS["collection"].default


def open_store(store: QdrantClient | str | os.PathLike, collection_name: str = DEFAULT_COLLECTION) -> QdrantStore:
    """The collection ``collection_name`` of a ``QdrantClient`` or, for a folder, of the embedded
    engine (its sub-folder ``collection_name``), not opened yet: call ``open(layout)`` to create
    or check it, or ``open_existing()`` to use it as it was made (listing, deleting)."""
    if type(store).__name__ == "QdrantClient":  # not imported unless given: it takes seconds
        from .client import ClientStore

        return ClientStore(store, collection_name)
    if isinstance(store, (str, os.PathLike)):
        if str(store) == ":memory:" or "://" in str(store):
            raise ValueError(f"{str(store)!r} is not a folder: pass QdrantClient({str(store)!r}) for a server or memory")  # fmt: skip
        from .edge import EdgeStore

        return EdgeStore(Path(store).expanduser() / collection_name)
    raise TypeError(f"store must be a QdrantClient or a folder, not {type(store).__name__}")


class QdrantVectorizer(Vectorizer):
    """Ingest and search texts and images in a Qdrant collection laid out for this model.

    Args:
        store: a ``QdrantClient``, or a folder for the embedded engine (qdrant-edge-py); the
            collection is then the sub-folder ``collection_name``.
        collection_name: the collection, created on first use or validated if it exists
            (None: the ``collection`` setting, ``$JINACLIP_COLLECTION``, else ``jina-clip``).
        engine, model_name, device, dtype, batch_size, on_error, show_progress: as for every
            :class:`~jinaclip_integrations.vectorizer.Vectorizer`.
        preset: a key of :data:`~jinaclip_integrations.store.PRESETS`. None keeps an existing
            collection's preset and creates new ones as ``"default"``.
        short_dim: size of the short Matryoshka vector (``"default"`` preset only), stored beside
            the full one: the engine's ``truncate_dim``, ``dimensions`` in the adapters, the server
            and Weaviate. None keeps an existing collection's size, else :func:`default_short_dim`.

    Raises:
        StoreError: the collection exists with another layout.
        ValueError: unknown preset, or a ``short_dim`` that is not a Matryoshka size.
    """

    def __init__(
        self,
        store: QdrantClient | str | os.PathLike,
        collection_name: str | None = None,
        *,
        engine: JinaCLIPEngine | LazyEngine | None = None,
        model_name: str | None = None,
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
        super().__init__(engine=engine, model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         on_error=on_error, show_progress=show_progress)  # fmt: skip
        self.collection_name = collection_name or settings.value("collection")
        self.store = open_store(store, self.collection_name)
        self.layout = self.store.open(layout_for(self.engine, self.store.layout(), preset, short_dim))
