"""LlamaIndex integration: a ``MultiModalEmbedding`` and a cross-modal retriever.

- :class:`JinaCLIPEmbedding` embeds texts, queries and images (file paths, URLs, bytes,
  ``BytesIO`` and base64, as image nodes carry them) for ``MultiModalVectorStoreIndex`` and
  any other LlamaIndex component; pass it as both ``embed_model`` and ``image_embed_model``.
- :class:`LlamaIndexCrossModalRetriever` queries the text and the image store of a
  ``MultiModalVectorStoreIndex`` with one query (a text or an image) and merges both into one
  ranking (:mod:`jinaclip_integrations.fusion`).

Needs the ``llama-index`` extra: ``pip install "jinaclip-integrations[llama-index]"``.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from ._lazy import needs_extra

with needs_extra("llama-index", "jinaclip_integrations.llama_index"):
    from llama_index.core.base.base_retriever import BaseRetriever
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.embeddings import BaseEmbedding, MultiModalEmbedding
    from llama_index.core.indices import MultiModalVectorStoreIndex
    from llama_index.core.schema import ImageType, NodeWithScore, QueryBundle
    from llama_index.core.vector_stores.types import BasePydanticVectorStore, MetadataFilters, VectorStoreQuery

from . import settings
from ._adapter import configure_adapter
from .engine import QUERY_TASK, JinaCLIPEngine
from .fusion import check_image_weight, fuse_modalities

__all__ = ["JinaCLIPEmbedding", "LlamaIndexCrossModalRetriever"]


class JinaCLIPEmbedding(MultiModalEmbedding):
    """jina-clip text and image embeddings for LlamaIndex, computed locally.

    Example:
        .. code-block:: python

            from jinaclip_integrations.llama_index import JinaCLIPEmbedding

            embed_model = JinaCLIPEmbedding(model_name="jinaai/jina-clip-v2", dimensions=512)
            index = MultiModalVectorStoreIndex.from_documents(
                documents, storage_context=storage_context, embed_model=embed_model, image_embed_model=embed_model
            )

    Adapters built with the same ``model_name``, ``device`` and ``dtype`` share one engine
    (LangChain ones included). ``model_name``, ``device`` and ``dtype`` default to the settings
    (``$JINACLIP_MODEL``, ``$JINACLIP_DEVICE``, ``$JINACLIP_DTYPE``, see
    :mod:`jinaclip_integrations.settings`); after
    construction they describe the engine in use (also when one is passed as ``engine=``), so
    ``to_dict()``/``from_dict()`` round-trip to the same model.
    """

    model_name: str = Field(
        default_factory=partial(settings.value, "model"),
        description="Hugging Face hub name or local checkpoint folder.",
    )
    embed_batch_size: int = Field(default=32, gt=0, le=2048, description="Texts or images per forward pass.")
    device: str | None = Field(
        default_factory=partial(settings.value, "device"),
        description="Torch device (default: CUDA if available).",
    )
    dtype: str | None = Field(
        default_factory=partial(settings.value, "dtype"),
        description="float32, bfloat16, float16 or int8 (default: bf16 on CUDA and on CPUs with native bf16, else float32).",
    )
    dimensions: int | None = Field(
        default=None,
        description="Matryoshka truncation (one of the model's sizes): the engine's truncate_dim, the server's "
        "dimensions, the Qdrant store's short_dim. Vectors are float lists: there is no precision option.",
    )
    query_task: str | None = Field(
        default=QUERY_TASK,
        description="Task instruction for queries (by default none on a model without tasks, e.g. jina-clip-v1).",
    )
    document_task: str | None = Field(default=None, description="Task instruction for texts being indexed.")
    normalize: bool = Field(default=True, description="L2-normalize the vectors.")

    _engine: JinaCLIPEngine = PrivateAttr()

    def __init__(
        self,
        *,
        engine: JinaCLIPEngine | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(callback_manager=callback_manager, **kwargs)
        self._engine = configure_adapter(self, engine)

    @classmethod
    def class_name(cls) -> str:
        return "JinaCLIPEmbedding"

    @property
    def engine(self) -> JinaCLIPEngine:
        """The shared engine doing the work."""
        return self._engine

    def _texts(self, texts: list[str], task: str | None) -> list[list[float]]:
        vectors = self._engine.encode_text(
            texts,
            task=task,
            truncate_dim=self.dimensions,
            normalize=self.normalize,
            batch_size=self.embed_batch_size,
            show_progress=False,  # LlamaIndex draws its own bar (show_progress=True on batch calls)
        )
        return vectors.tolist()

    def _images(self, images: list[ImageType]) -> list[list[float]]:
        vectors = self._engine.encode_image(
            images,
            truncate_dim=self.dimensions,
            normalize=self.normalize,
            batch_size=self.embed_batch_size,
            show_progress=False,
        )
        return vectors.tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._texts([query], self.query_task)[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._texts([text], self.document_task)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._texts(texts, self.document_task)

    def _get_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return self._images([img_file_path])[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return self._images(img_file_paths)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    async def _aget_image_embedding(self, img_file_path: ImageType) -> list[float]:
        return await asyncio.to_thread(self._get_image_embedding, img_file_path)

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[list[float]]:
        return await asyncio.to_thread(self._get_image_embeddings, img_file_paths)


class LlamaIndexCrossModalRetriever(BaseRetriever):
    """Query the text store and the image store of a ``MultiModalVectorStoreIndex`` with one
    query vector and merge both into one ranking.

    A text query (a string) is embedded with the query side of the index's
    ``image_embed_model``; an image query (``QueryBundle(query_str="", image_path=...)``, a
    path or URL) with its image side, so an image finds passages as well as images (a bundle
    with both text and an image is searched by its text). A bundle that already carries an
    ``embedding`` is searched with it as is. The index's text and image embed models must be
    one model: the same vector searches both stores. LlamaIndex does not expose an index's
    text ``embed_model``, so pass it as ``embed_model`` to have that checked.

    Each side returns ``fetch_k`` candidates (at least ``k``) scoring at least ``min_score``;
    :func:`jinaclip_integrations.fusion.fuse_modalities` standardizes each side's scores,
    weights images by ``image_weight`` and keeps the ``k`` best distinct nodes. A node's score
    is its fused score; image results are ``ImageNode``s.

    Example:
        .. code-block:: python

            retriever = LlamaIndexCrossModalRetriever(index, k=5, image_weight=1.5)
            retriever.retrieve("sunset over the harbour")
            retriever.retrieve(QueryBundle(query_str="", image_path="harbour.jpg"))
    """

    def __init__(
        self,
        index: MultiModalVectorStoreIndex,
        *,
        k: int = 4,
        fetch_k: int = 20,
        image_weight: float = 1.0,
        min_score: float | None = None,
        filters: MetadataFilters | None = None,
        callback_manager: CallbackManager | None = None,
        embed_model: BaseEmbedding | None = None,
    ) -> None:
        if k < 1 or fetch_k < 1:
            raise ValueError(f"k and fetch_k must be at least 1, got k={k}, fetch_k={fetch_k}")
        text_model, image_model = embed_model, index.image_embed_model
        shares_engine = getattr(text_model, "engine", None) is getattr(image_model, "engine", False)
        if text_model is not None and text_model is not image_model and not shares_engine:
            raise ValueError(
                "the index's embed_model and image_embed_model must be the same model (one vector space); "
                f"got {type(text_model).__name__} and {type(image_model).__name__}"
            )
        self._index = index
        self._k = k
        self._fetch_k = max(fetch_k, k)
        self._image_weight = check_image_weight(image_weight)
        self._min_score = min_score
        self._filters = filters
        super().__init__(callback_manager=callback_manager)

    def _query_vector(self, query: QueryBundle) -> list[float]:
        model = self._index.image_embed_model
        if query.embedding is not None:
            return query.embedding
        if query.image_path and not query.query_str:
            return model.get_image_embedding(query.image_path)
        return model.get_agg_embedding_from_queries(query.embedding_strs)

    def _search(
        self, store: BasePydanticVectorStore | None, believed_empty: bool, vector: list[float]
    ) -> list[tuple[Any, float]]:
        """``(node, score)`` candidates of one store. The index's emptiness flags can be stale
        (LlamaIndex sets them on an insert without nodes of that kind and never clears them),
        so the store is always queried; a failure counts as "no results" only where the index
        itself believes the store is empty (it may never have been created)."""
        if store is None:
            return []
        query = VectorStoreQuery(query_embedding=vector, similarity_top_k=self._fetch_k, filters=self._filters)
        try:
            result = store.query(query)
        except Exception:
            if believed_empty:
                return []
            raise
        nodes = result.nodes
        if nodes is None:  # a store that keeps only ids: the nodes live in the docstore
            nodes_dict = self._index.index_struct.nodes_dict
            nodes = self._index.docstore.get_nodes([nodes_dict[i] for i in result.ids or []])
        hits = zip(nodes, result.similarities or [0.0] * len(nodes), strict=True)
        return [(node, score) for node, score in hits if self._min_score is None or score >= self._min_score]

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vector = self._query_vector(query_bundle)
        index = self._index
        texts = self._search(index.vector_store, index.is_text_vector_store_empty, vector)
        images = self._search(index.image_vector_store, index.is_image_vector_store_empty, vector)
        results: dict[str, NodeWithScore] = {}  # an image node with text is in both stores: keep its best
        for hit in fuse_modalities(texts, images, k=len(texts) + len(images) or 1, image_weight=self._image_weight):
            results.setdefault(hit.item.node_id, NodeWithScore(node=hit.item, score=hit.fused_score))
        return list(results.values())[: self._k]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._retrieve, query_bundle)
