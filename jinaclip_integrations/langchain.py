"""LangChain integration: jina-clip embeddings for texts and images, and Qdrant with images.

- :class:`JinaCLIPEmbeddings` is a LangChain ``Embeddings``; besides ``embed_documents`` and
  ``embed_query`` it has ``embed_image(uris)`` (the method vector stores such as Chroma and
  LanceDB call in ``add_images``), with real async variants that run in a worker thread.
- :class:`MultimodalQdrantVectorStore` is ``langchain_qdrant.QdrantVectorStore`` plus
  ``add_images`` and ``similarity_search_by_image``: images become documents whose vector is
  the image's, so an ordinary ``similarity_search("a red car")`` finds photos.
- :class:`LangChainCrossModalRetriever` searches the text and image sides of such a store and
  merges them into one ranking (:mod:`jinaclip_integrations.fusion`).

Needs the ``langchain`` extra: ``pip install "jinaclip-integrations[langchain]"``.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any, Literal

from ._lazy import needs_extra

with needs_extra("langchain", "jinaclip_integrations.langchain"):
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_qdrant import QdrantVectorStore, RetrievalMode
    from pydantic import BaseModel, ConfigDict, Field, model_validator
    from qdrant_client import models

from . import settings
from ._adapter import configure_adapter
from .engine import QUERY_TASK, JinaCLIPEngine
from .fusion import fuse_modalities

__all__ = ["JinaCLIPEmbeddings", "LangChainCrossModalRetriever", "MultimodalQdrantVectorStore"]

#: Reserved metadata: :meth:`MultimodalQdrantVectorStore.add_images` sets ``modality: "image"``
#: on every image document (any document whose metadata says so counts as an image) and a
#: ``source`` unless one is given; the retriever sets ``modality``, ``score`` and ``fused_score``
#: on what it returns.
MODALITY_KEY = "modality"
SOURCE_KEY = "source"


class JinaCLIPEmbeddings(BaseModel, Embeddings):
    """jina-clip text and image embeddings, computed locally (GPU when there is one).

    Example:
        .. code-block:: python

            from jinaclip_integrations.langchain import JinaCLIPEmbeddings

            embeddings = JinaCLIPEmbeddings(model_name="jinaai/jina-clip-v2", dimensions=512)
            doc_vectors = embeddings.embed_documents(["Ein Foto einer Katze"])
            query_vector = embeddings.embed_query("cat on a sofa")
            image_vectors = embeddings.embed_image(uris=["cat.jpg", "https://example.com/dog.png"])

    Adapters built with the same ``model_name``, ``device`` and ``dtype`` share one engine
    (one copy of the weights), LlamaIndex ones included. ``model_name``, ``device`` and
    ``dtype`` default to the settings (``$JINACLIP_MODEL``, ``$JINACLIP_DEVICE``,
    ``$JINACLIP_DTYPE``, see :mod:`jinaclip_integrations.settings`); after construction they
    describe the engine in use.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    model_name: str = Field(default_factory=partial(settings.value, "model"))
    """Hugging Face hub name or local checkpoint folder."""
    device: str | None = Field(default_factory=partial(settings.value, "device"))
    """Torch device; CUDA when available, else CPU."""
    dtype: str | None = Field(default_factory=partial(settings.value, "dtype"))
    """``float32``, ``bfloat16``, ``float16`` or ``int8``; by default bf16 on CUDA and on CPUs with native bf16, else float32."""
    dimensions: int | None = None
    """Matryoshka truncation: keep the first ``dimensions`` dims (one of the model's sizes): the
    engine's ``truncate_dim``, the server's ``dimensions``, the Qdrant store's ``short_dim``.
    Vectors are float lists, so there is no ``precision``: LangChain's stores take floats."""
    batch_size: int = Field(default=32, gt=0)
    """Texts or images per forward pass."""
    query_task: str | None = QUERY_TASK
    """Task instruction for queries; by default none on a model without tasks (jina-clip-v1)."""
    document_task: str | None = None
    """Task instruction for documents (None: no instruction, as the model expects)."""
    normalize: bool = True
    """L2-normalize the vectors (cosine similarity = dot product)."""
    show_progress: bool = False
    """Draw a progress bar while embedding."""
    engine: JinaCLIPEngine | None = Field(default=None, exclude=True, repr=False)
    """An already loaded engine to use instead of loading ``model_name``."""

    @model_validator(mode="after")
    def _load(self) -> JinaCLIPEmbeddings:
        self.engine = configure_adapter(self, self.engine)
        return self

    def _texts(self, texts: Sequence[str], task: str | None) -> list[list[float]]:
        vectors = self.engine.encode_text(
            texts,
            task=task,
            truncate_dim=self.dimensions,
            normalize=self.normalize,
            batch_size=self.batch_size,
            show_progress=self.show_progress,
        )
        return vectors.tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (passages) to be searched."""
        return self._texts(texts, self.document_task)

    def embed_query(self, text: str) -> list[float]:
        """Embed a search query (with the query task instruction)."""
        return self._texts([text], self.query_task)[0]

    def embed_image(self, uris: Sequence[Any]) -> list[list[float]]:
        """Embed a list of images: paths, ``file://`` or http(s) URLs, data URIs, base64
        strings, bytes, PIL images or uint8 arrays. Raises ``InputError`` naming the index of
        a bad one, and ``TypeError`` for a single image that is not in a list."""
        vectors = self.engine.encode_image(
            uris,
            truncate_dim=self.dimensions,
            normalize=self.normalize,
            batch_size=self.batch_size,
            show_progress=self.show_progress,
        )
        return vectors.tolist()

    embed_images = embed_image  # the plural name of langchain-community's and Vertex AI's embeddings

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)

    async def aembed_image(self, uris: Sequence[Any]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_image, uris)

    aembed_images = aembed_image


class MultimodalQdrantVectorStore(QdrantVectorStore):
    """``QdrantVectorStore`` that also stores images.

    An image becomes a document whose vector is the image's embedding, whose ``page_content``
    is its source (path, URL or data URI) and whose metadata holds ``source`` and
    ``modality: "image"``. Texts and images share the collection and the vector, so
    ``similarity_search`` with text finds images and :meth:`similarity_search_by_image` finds
    texts. The ``embedding`` must have ``embed_image`` (e.g. :class:`JinaCLIPEmbeddings`).

    Example:
        .. code-block:: python

            store = MultimodalQdrantVectorStore.from_texts(
                ["A red bicycle leaning on a wall"], JinaCLIPEmbeddings(), path="./qdrant", collection_name="docs"
            )
            store.add_images(["bike.jpg"], metadatas=[{"page": 3}])
            store.similarity_search("bicycle", k=2)
            store.similarity_search_by_image("other_bike.jpg", k=2)
    """

    def _embed_images(self, uris: list[Any]) -> list[list[float]]:
        embeddings = self._require_embeddings("image search")
        if not hasattr(embeddings, "embed_image"):
            raise ValueError("The embedding function must support image embedding.")
        return embeddings.embed_image(uris=uris)

    def add_images(
        self,
        uris: Iterable[str | os.PathLike],
        metadatas: list[dict] | None = None,
        ids: Sequence[str | int] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[str | int]:
        """Embed images and add them as documents; returns their ids (new UUIDs unless given).

        ``uris`` are paths, ``file://`` or http(s) URLs or data URIs; each becomes the
        document's ``page_content``. Every image is embedded before anything is stored, so a
        bad one raises ``InputError`` (with its index in ``uris``) and stores nothing. Points
        are then upserted ``batch_size`` at a time; ``kwargs`` go to ``QdrantClient.upsert``.
        """
        if self.retrieval_mode != RetrievalMode.DENSE:
            raise ValueError(f"add_images needs retrieval_mode=DENSE, not {self.retrieval_mode}")
        if isinstance(uris, (str, bytes)):
            raise TypeError("uris must be a list of image paths or URLs; wrap a single one in a list")
        sources = []
        for i, uri in enumerate(uris):
            if not isinstance(uri, (str, os.PathLike)):
                raise TypeError(f"uris[{i}] must be a path or URL string, not {type(uri).__name__}")
            sources.append(os.fspath(uri))
        for name, given in (("metadatas", metadatas), ("ids", ids)):
            if given is not None and len(given) != len(sources):
                raise ValueError(f"{name} has {len(given)} entries for {len(sources)} images")
        point_ids = list(ids) if ids is not None else [uuid.uuid4().hex for _ in sources]
        metadata = [
            {SOURCE_KEY: source, **(extra or {}), MODALITY_KEY: "image"}
            for source, extra in zip(sources, metadatas or [None] * len(sources), strict=True)
        ]
        vectors = self._embed_images(sources)
        for start in range(0, len(sources), batch_size):
            batch = slice(start, start + batch_size)
            payloads = self._build_payloads(
                sources[batch], metadata[batch], self.content_payload_key, self.metadata_payload_key
            )
            points = [
                models.PointStruct(id=point_id, vector={self.vector_name: vector}, payload=payload)
                for point_id, vector, payload in zip(point_ids[batch], vectors[batch], payloads, strict=True)
            ]
            self.client.upsert(collection_name=self.collection_name, points=points, **kwargs)
        return point_ids

    def similarity_search_by_image_with_score(
        self, uri: Any, k: int = 4, filter: models.Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Documents (texts and images) most similar to an image, with their scores."""
        vector = self._embed_images([uri])[0]
        return self.similarity_search_with_score_by_vector(vector, k=k, filter=filter, **kwargs)

    def similarity_search_by_image(
        self, uri: Any, k: int = 4, filter: models.Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """Documents (texts and images) most similar to an image."""
        return [doc for doc, _ in self.similarity_search_by_image_with_score(uri, k=k, filter=filter, **kwargs)]

    def modality_filter(self, modality: Literal["text", "image"], base: models.Filter | None = None) -> models.Filter:
        """A filter keeping one side of the store (``base``, if given, must hold as well)."""
        condition = models.FieldCondition(
            key=f"{self.metadata_payload_key}.{MODALITY_KEY}", match=models.MatchValue(value="image")
        )
        side = models.Filter(must=[condition]) if modality == "image" else models.Filter(must_not=[condition])
        return side if base is None else models.Filter(must=[side, base])


class LangChainCrossModalRetriever(BaseRetriever):
    """Search the text side and the image side of a :class:`MultimodalQdrantVectorStore` with
    one query and merge both into one ranking.

    Each side returns ``fetch_k`` candidates (at least ``k``) scoring at least ``min_score``;
    :func:`jinaclip_integrations.fusion.fuse_modalities` standardizes each side's scores,
    weights images by ``image_weight`` and keeps the ``k`` best. Every returned document's
    metadata gets ``score`` (the raw similarity), ``fused_score`` and ``modality``. With
    ``query_modality="image"`` the query string is an image (path, URL, data URI or base64)
    and the same ranking holds texts and images similar to that image. ``invoke(query, k=...)``
    (and ``fetch_k``, ``image_weight``, ``min_score``, ``filter``) override the fields per call.

    Example:
        .. code-block:: python

            retriever = LangChainCrossModalRetriever(vectorstore=store, k=5, image_weight=1.5)
            retriever.invoke("sunset over the harbour")
    """

    vectorstore: MultimodalQdrantVectorStore
    k: int = Field(default=4, gt=0)
    fetch_k: int = Field(default=20, gt=0)
    image_weight: float = Field(default=1.0, ge=0)
    min_score: float | None = None
    """Candidates with a lower raw similarity are dropped before merging."""
    query_modality: Literal["text", "image"] = "text"
    filter: models.Filter | None = None
    """An extra Qdrant filter both sides must satisfy."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        options = {name: kwargs.pop(name, getattr(self, name)) for name in ("k", "fetch_k", "image_weight", "min_score", "filter")}  # fmt: skip
        if kwargs:
            raise TypeError(f"unexpected search options {sorted(kwargs)}; accepted: {sorted(options)}")
        store = self.vectorstore
        if self.query_modality == "image":
            vector = store._embed_images([query])[0]
        else:
            vector = store._require_embeddings("text search").embed_query(query)
        k = options["k"]
        sides = [
            store.similarity_search_with_score_by_vector(
                vector,
                k=max(options["fetch_k"], k),
                filter=store.modality_filter(modality, options["filter"]),
                score_threshold=options["min_score"],
            )
            for modality in ("text", "image")
        ]
        hits = fuse_modalities(*sides, k=k, image_weight=options["image_weight"])
        for hit in hits:
            hit.item.metadata.update({MODALITY_KEY: hit.modality, "score": hit.score, "fused_score": hit.fused_score})
        return [hit.item for hit in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        return await asyncio.to_thread(
            self._get_relevant_documents, query, run_manager=run_manager.get_sync(), **kwargs
        )
