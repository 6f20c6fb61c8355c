"""The LlamaIndex adapter: every embedding method, image inputs as nodes carry them, the retriever."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import StorageContext
from llama_index.core.embeddings import MockEmbedding, MultiModalEmbedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageDocument, ImageNode, QueryBundle, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.core.vector_stores.types import ExactMatchFilter, MetadataFilters
from pydantic import ValidationError

from conftest import V2_TINY
from jinaclip_integrations import InputError
from jinaclip_integrations.llama_index import JinaCLIPEmbedding, LlamaIndexCrossModalRetriever

PARAMS = {"model_name": str(V2_TINY), "device": "cpu"}
IMAGES = sorted(str(p) for p in V2_TINY.glob("*.png"))[:4]
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "一只猫坐在沙发上。", "hello"]
ATOL = 1e-6


@pytest.fixture(scope="module")
def embed_model() -> JinaCLIPEmbedding:
    return JinaCLIPEmbedding(**PARAMS)


def test_conventions(embed_model):
    assert isinstance(embed_model, MultiModalEmbedding)
    assert JinaCLIPEmbedding.class_name() == "JinaCLIPEmbedding"
    data = embed_model.to_dict()
    assert data["class_name"] == "JinaCLIPEmbedding" and data["model_name"] == str(V2_TINY)
    assert {"embed_batch_size", "device", "dtype", "dimensions", "query_task", "document_task", "normalize"} <= set(
        data
    )
    assert embed_model.embed_batch_size == 32
    with pytest.raises(ValidationError):
        JinaCLIPEmbedding(**PARAMS, embed_batch_size=0)
    with pytest.raises(ValueError, match="dimensions 12 is not supported"):
        JinaCLIPEmbedding(**PARAMS, dimensions=12)
    with pytest.raises(ValueError, match="query_task 'nope' is not a task"):
        JinaCLIPEmbedding(**PARAMS, query_task="nope")


def test_every_sync_method(embed_model, engine):
    docs, images = engine.encode_text(TEXTS), engine.encode_image(IMAGES)
    query = engine.encode_text(["cat"], task="retrieval.query")[0]
    np.testing.assert_allclose(embed_model.get_query_embedding("cat"), query, atol=ATOL)
    np.testing.assert_allclose(embed_model.get_text_embedding(TEXTS[0]), docs[0], atol=ATOL)
    np.testing.assert_allclose(embed_model.get_text_embedding_batch(TEXTS), docs, atol=ATOL)
    np.testing.assert_allclose(embed_model.get_image_embedding(IMAGES[1]), images[1], atol=ATOL)
    np.testing.assert_allclose(embed_model.get_image_embedding_batch(IMAGES), images, atol=ATOL)
    np.testing.assert_allclose(embed_model.get_agg_embedding_from_queries(["cat"]), query, atol=ATOL)


async def test_every_async_method(embed_model, engine):
    docs, images = engine.encode_text(TEXTS), engine.encode_image(IMAGES)
    query = engine.encode_text(["cat"], task="retrieval.query")[0]
    np.testing.assert_allclose(await embed_model.aget_query_embedding("cat"), query, atol=ATOL)
    np.testing.assert_allclose(await embed_model.aget_text_embedding(TEXTS[0]), docs[0], atol=ATOL)
    np.testing.assert_allclose(await embed_model.aget_text_embedding_batch(TEXTS), docs, atol=ATOL)
    np.testing.assert_allclose(await embed_model.aget_image_embedding(IMAGES[1]), images[1], atol=ATOL)
    np.testing.assert_allclose(await embed_model.aget_image_embedding_batch(IMAGES), images, atol=ATOL)


def test_image_inputs_as_nodes_carry_them(embed_model, engine):
    raw = Path(IMAGES[0]).read_bytes()
    expected = engine.encode_image([IMAGES[0]])[0]
    b64 = base64.b64encode(raw).decode()
    for item in (
        IMAGES[0],
        raw,
        io.BytesIO(raw),
        b64,
        ImageNode(image=b64).resolve_image(),  # what MultiModalVectorStoreIndex passes for base64 nodes
        ImageNode(image_path=IMAGES[0]).resolve_image(),
        ImageDocument(image_path=IMAGES[0]).resolve_image(),
    ):
        np.testing.assert_allclose(embed_model.get_image_embedding(item), expected, atol=ATOL)
    with pytest.raises(InputError, match="index 1: file not found"):
        embed_model.get_image_embedding_batch([IMAGES[0], "missing.png"])


def test_options_and_shared_engine(embed_model, engine):
    small = JinaCLIPEmbedding(**PARAMS, dimensions=16, document_task="retrieval.query", embed_batch_size=2)
    assert small.engine is embed_model.engine
    np.testing.assert_allclose(
        small.get_text_embedding_batch(TEXTS),
        engine.encode_text(TEXTS, task="retrieval.query", truncate_dim=16),
        atol=ATOL,
    )
    assert len(small.get_image_embedding(IMAGES[0])) == 16
    assert JinaCLIPEmbedding(engine=engine).engine is engine


@pytest.fixture(scope="module")
def index(embed_model) -> MultiModalVectorStoreIndex:
    exact = JinaCLIPEmbedding(engine=embed_model.engine, query_task=None)  # queries embedded as documents
    nodes = [TextNode(text=t, metadata={"n": i}) for i, t in enumerate(TEXTS)]
    nodes += [ImageNode(image_path=p, metadata={"file_path": p, "n": 10 + i}) for i, p in enumerate(IMAGES)]
    storage = StorageContext.from_defaults(vector_store=SimpleVectorStore(), image_store=SimpleVectorStore())
    return MultiModalVectorStoreIndex(nodes, storage_context=storage, embed_model=exact, image_embed_model=exact)


def test_cross_modal_retriever_text_query(index):
    hits = LlamaIndexCrossModalRetriever(index, k=3, fetch_k=10).retrieve(TEXTS[1])
    assert len(hits) == 3 and hits[0].node.get_content() == TEXTS[1]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert any(isinstance(h.node, ImageNode) for h in hits) and any(not isinstance(h.node, ImageNode) for h in hits)
    texts_first = LlamaIndexCrossModalRetriever(index, k=8, image_weight=0).retrieve("cat")
    assert [isinstance(h.node, ImageNode) for h in texts_first] == [False] * 4 + [True] * 4


def test_cross_modal_retriever_image_query(index):
    hits = LlamaIndexCrossModalRetriever(index, k=8).retrieve(QueryBundle(query_str="", image_path=IMAGES[2]))
    assert hits[0].node.image_path == IMAGES[2]
    assert sum(not isinstance(h.node, ImageNode) for h in hits) == len(TEXTS)  # an image finds passages


def test_cross_modal_retriever_filters_and_precomputed_vector(index, embed_model):
    only = MetadataFilters(filters=[ExactMatchFilter(key="n", value=11)])
    hits = LlamaIndexCrossModalRetriever(index, k=8, filters=only).retrieve("cat")
    assert [h.node.metadata["n"] for h in hits] == [11]
    vector = embed_model.get_image_embedding(IMAGES[3])
    retriever = LlamaIndexCrossModalRetriever(index, k=8)
    given = retriever.retrieve(QueryBundle(query_str="x", embedding=vector))  # searched as given, "x" unused
    by_image = retriever.retrieve(QueryBundle(query_str="", image_path=IMAGES[3]))
    assert [(h.node.node_id, round(h.score, 6)) for h in given] == [
        (h.node.node_id, round(h.score, 6)) for h in by_image
    ]
    assert retriever.retrieve("x") != given
    with pytest.raises(ValueError, match="k and fetch_k must be at least 1"):
        LlamaIndexCrossModalRetriever(index, k=0)


async def test_cross_modal_retriever_async(index):
    retriever = LlamaIndexCrossModalRetriever(index, k=3)
    sync = [h.node.node_id for h in retriever.retrieve(TEXTS[0])]
    assert [h.node.node_id for h in await retriever.aretrieve(TEXTS[0])] == sync


def test_to_dict_round_trip_and_engine_given(embed_model, engine):
    rebuilt = JinaCLIPEmbedding.from_dict(JinaCLIPEmbedding(**PARAMS, dimensions=16).to_dict())
    assert rebuilt.engine is embed_model.engine and rebuilt.dimensions == 16
    given = JinaCLIPEmbedding(engine=engine)
    assert (given.model_name, given.device, given.dtype) == (engine.name_or_path, "cpu", "float32")
    assert JinaCLIPEmbedding.from_dict(given.to_dict()).engine.name_or_path == engine.name_or_path
    with pytest.raises(ValueError, match="does not match the engine's model"):
        JinaCLIPEmbedding(engine=engine, model_name="jinaai/jina-clip-v2")


def test_retriever_survives_stale_empty_flags(embed_model):
    """LlamaIndex marks a side empty after an insert without nodes of that kind, for good."""
    storage = StorageContext.from_defaults(vector_store=SimpleVectorStore(), image_store=SimpleVectorStore())
    index = MultiModalVectorStoreIndex(
        [TextNode(text=TEXTS[0]), ImageNode(image_path=IMAGES[0], metadata={"file_path": IMAGES[0]})],
        storage_context=storage, embed_model=embed_model, image_embed_model=embed_model,
    )  # fmt: skip
    index.insert_nodes([ImageNode(image_path=IMAGES[1], metadata={"file_path": IMAGES[1]})])
    index.insert_nodes([TextNode(text=TEXTS[1])])
    assert index.is_text_vector_store_empty and index.is_image_vector_store_empty  # both wrong
    hits = LlamaIndexCrossModalRetriever(index, k=10).retrieve("cat")
    assert sum(isinstance(h.node, ImageNode) for h in hits) == 2 and len(hits) == 4


def test_retriever_returns_each_node_once(embed_model):
    """An image node with text is in both stores; it is returned once, and k nodes come back."""
    nodes = [ImageNode(image_path=p, text=f"caption {i}", metadata={"file_path": p}) for i, p in enumerate(IMAGES)]
    storage = StorageContext.from_defaults(vector_store=SimpleVectorStore(), image_store=SimpleVectorStore())
    index = MultiModalVectorStoreIndex(
        nodes, storage_context=storage, embed_model=embed_model, image_embed_model=embed_model
    )
    for k in (1, 2, 3, 4):
        hits = LlamaIndexCrossModalRetriever(index, k=k, fetch_k=1).retrieve("caption")
        assert len(hits) == k and len({h.node.node_id for h in hits}) == k


def test_retriever_min_score_and_model_check(index, embed_model):
    query = QueryBundle(query_str="", image_path=IMAGES[2])
    hits = LlamaIndexCrossModalRetriever(index, k=8, min_score=0.999).retrieve(query)
    assert [h.node.image_path for h in hits] == [IMAGES[2]]  # only the identical image is that close
    mock = MockEmbedding(embed_dim=64)
    other = MultiModalVectorStoreIndex(
        [TextNode(text="x")], storage_context=StorageContext.from_defaults(vector_store=SimpleVectorStore()),
        embed_model=mock, image_embed_model=embed_model,
    )  # fmt: skip
    with pytest.raises(ValueError, match="must be the same model"):  # LlamaIndex does not expose embed_model: given
        LlamaIndexCrossModalRetriever(other, embed_model=mock)
    LlamaIndexCrossModalRetriever(index, embed_model=embed_model)  # the same model passes
    with pytest.raises(ValueError, match="image_weight must be a finite number >= 0"):
        LlamaIndexCrossModalRetriever(index, image_weight=-1)
