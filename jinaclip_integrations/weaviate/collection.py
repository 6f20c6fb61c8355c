"""Bring your own vectors: embed texts, images and folders with jina-clip and store them in Weaviate.

No Weaviate module is involved: :class:`WeaviateVectorizer` embeds here and writes objects with
a self-provided named vector (HNSW, cosine) to a :class:`~.store.WeaviateStore`, so it works with
any Weaviate server. Ingestion, folder sync, listing, deletion and search are the package's
shared pipeline (:class:`~jinaclip_integrations.vectorizer.Vectorizer`), the same as for Qdrant:
object UUIDs come from the content, so adding the same text or image twice stores it once, and
:meth:`~jinaclip_integrations.vectorizer.Vectorizer.sync` keeps the collection in step with
folders.

Needs the ``weaviate`` extra: ``pip install "jinaclip-integrations[weaviate]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import needs_extra

with needs_extra("weaviate", "jinaclip_integrations.weaviate.collection"):
    import weaviate

from ..ingest.items import OnError
from ..vectorizer import Vectorizer
from .store import WeaviateStore, layout_for

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine, LazyEngine

__all__ = ["WeaviateVectorizer"]


class WeaviateVectorizer(Vectorizer):
    """A Weaviate collection of texts and images with jina-clip vectors you compute locally.

    The collection is created on construction (or checked, if it exists): one self-provided
    named vector ``vector_name`` (HNSW, cosine) and the payload fields of
    :mod:`jinaclip_integrations.ingest` as typed properties (``text``, ``source``, ``modality``,
    ``chunk``, ``span``, ``page``...); the model and stored size are recorded in its
    description. Metadata given to ``add_texts``/``add_images`` becomes more properties: keys
    must be valid GraphQL names (``[_A-Za-z][_0-9A-Za-z]*``), and keys not declared above need
    Weaviate's auto-schema (on by default). Texts are embedded as documents (no instruction),
    search texts with the model's query task.

    ``vectorizer.store.collection`` is the ``weaviate`` collection, for queries of your own.

    Example:
        .. code-block:: python

            import weaviate
            from jinaclip_integrations.weaviate import WeaviateVectorizer

            with weaviate.connect_to_local() as client:
                store = WeaviateVectorizer(client, "Photos", dimensions=512)
                store.sync(["./photos", "./notes"], on_error="skip")
                for hit in store.search("a dog on the beach", limit=5):
                    print(hit.score, hit.modality, hit.source)

    Args:
        client: a connected ``weaviate.WeaviateClient`` (left open by :meth:`close`).
        collection_name: the collection (Weaviate capitalizes the first letter).
        engine, model_name, device, dtype, batch_size, on_error, show_progress: as for every
            :class:`~jinaclip_integrations.vectorizer.Vectorizer`.
        vector_name: the named vector holding the embeddings.
        dimensions: a Matryoshka size to store and search with (None: the full size): the
            engine's ``truncate_dim``, the Qdrant store's ``short_dim`` (which it keeps beside the
            full vector; here only the prefix is stored).

    Raises:
        StoreError: the collection exists without the named vector ``vector_name``, with
            another distance than cosine, for another model or size, or was not made by this package.
        ValueError: ``dimensions`` is not a Matryoshka size of the model.
    """

    def __init__(
        self,
        client: weaviate.WeaviateClient,
        collection_name: str = "JinaClip",
        *,
        engine: JinaCLIPEngine | LazyEngine | None = None,
        model_name: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        vector_name: str = "jina_clip",
        dimensions: int | None = None,
        batch_size: int = 64,
        on_error: OnError = "raise",
        show_progress: bool | None = None,
    ) -> None:
        super().__init__(engine=engine, model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         on_error=on_error, show_progress=show_progress)  # fmt: skip
        layout = layout_for(self.engine, dimensions)
        self.client = client
        self.collection_name = collection_name
        self.vector_name = vector_name
        self.dimensions = dimensions
        self.store = WeaviateStore(client, collection_name, vector_name=vector_name, full_dim=self.engine.embedding_dim)
        self.layout = self.store.open(layout)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.collection_name!r}, model={self.layout.model!r}, dim={self.layout.dim})"
