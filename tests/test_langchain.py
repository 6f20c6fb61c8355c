"""The LangChain adapter: standard suites, values, options, async, the Qdrant store, the retriever."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError
from qdrant_client import QdrantClient, models

from conftest import V2_TINY, copy_fixture
from jinaclip_integrations import InputError, JinaCLIPEmbedding, JinaCLIPEngine, shared_engine
from jinaclip_integrations.langchain import (
    JinaCLIPEmbeddings,
    LangChainCrossModalRetriever,
    MultimodalQdrantVectorStore,
)

PARAMS = {"model_name": str(V2_TINY), "device": "cpu"}
IMAGES = sorted(str(p) for p in V2_TINY.glob("*.png"))[:4]
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "一只猫坐在沙发上。", "hello"]


class TestStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[JinaCLIPEmbeddings]:
        return JinaCLIPEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return PARAMS

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        env = {"JINACLIP_MODEL": str(V2_TINY), "JINACLIP_DEVICE": "cpu", "JINACLIP_DTYPE": "float32"}
        return env, {}, {"model_name": str(V2_TINY), "device": "cpu", "dtype": "float32"}


class TestStandardIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[JinaCLIPEmbeddings]:
        return JinaCLIPEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return PARAMS


def dense(point: models.Record, store: MultimodalQdrantVectorStore) -> list[float]:
    """The store's vector of a point (Qdrant returns the vector named "" as a plain list)."""
    return point.vector[store.vector_name] if isinstance(point.vector, dict) else point.vector


@pytest.fixture(scope="module")
def embeddings() -> JinaCLIPEmbeddings:
    return JinaCLIPEmbeddings(**PARAMS)


def test_values_are_the_engines(embeddings, engine):
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), engine.encode_text(TEXTS), atol=1e-6)
    query = engine.encode_text(["cat"], task="retrieval.query")[0]
    np.testing.assert_allclose(embeddings.embed_query("cat"), query, atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_image(uris=IMAGES), engine.encode_image(IMAGES), atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_images(IMAGES), engine.encode_image(IMAGES), atol=1e-6)
    assert type(embeddings.embed_query("cat")[0]) is float


def test_options(engine):
    small = JinaCLIPEmbeddings(**PARAMS, dimensions=16, normalize=False, document_task="retrieval.query", batch_size=2)
    raw = engine.encode_text(TEXTS, task="retrieval.query", truncate_dim=16, normalize=False)
    np.testing.assert_allclose(small.embed_documents(TEXTS), raw, atol=1e-6)
    assert len(small.embed_image(IMAGES[:1])[0]) == 16
    no_task = JinaCLIPEmbeddings(**PARAMS, query_task=None)
    np.testing.assert_allclose(no_task.embed_query("cat"), no_task.embed_documents(["cat"])[0], atol=1e-6)


def test_bad_options():
    with pytest.raises(ValidationError, match=r"dimensions 12 is not supported.*\[8, 16, 32, 64\]"):
        JinaCLIPEmbeddings(**PARAMS, dimensions=12)
    with pytest.raises(ValidationError, match="query_task 'retrieval.passage' is not a task"):
        JinaCLIPEmbeddings(**PARAMS, query_task="retrieval.passage")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        JinaCLIPEmbeddings(**PARAMS, dimensionality=16)
    with pytest.raises(ValidationError, match="batch_size"):
        JinaCLIPEmbeddings(**PARAMS, batch_size=0)


def test_one_engine_per_model(embeddings, engine):
    other = JinaCLIPEmbeddings(**PARAMS, dimensions=16)
    relative = JinaCLIPEmbeddings(model_name="tests/fixtures/jina-clip-v2-tiny", device="cpu")
    llama = JinaCLIPEmbedding(**PARAMS)
    assert other.engine is embeddings.engine is relative.engine is llama.engine
    assert shared_engine(V2_TINY, device="cpu", dtype="float32") is embeddings.engine
    assert JinaCLIPEmbeddings(**PARAMS, dtype="bfloat16").engine is not embeddings.engine
    own = JinaCLIPEmbeddings(engine=engine)
    assert own.engine is engine and isinstance(own.engine, JinaCLIPEngine)


def test_bad_image_names_its_index(embeddings):
    with pytest.raises(InputError, match="invalid image at index 1: file not found"):
        embeddings.embed_image([IMAGES[0], "missing.png"])


async def test_async_runs_off_the_event_loop(embeddings, monkeypatch):
    """While an embedding call runs, other coroutines keep running: the encoder, once started,
    waits for a coroutine that runs only then (on the event loop's thread it would wait in vain)."""
    encoding, answered = threading.Event(), threading.Event()

    def encode_once_answered(texts, **kwargs):
        encoding.set()
        assert answered.wait(10), "the event loop stood still while embedding"
        return np.zeros((len(texts), 64), np.float32)

    monkeypatch.setattr(embeddings.engine, "encode_text", encode_once_answered)

    async def answer():
        while not encoding.is_set():
            await asyncio.sleep(0.001)
        answered.set()

    task = asyncio.create_task(answer())
    assert await embeddings.aembed_documents(["a", "b"]) == [[0.0] * 64] * 2
    await task


async def test_async_values(embeddings, engine):
    np.testing.assert_allclose(await embeddings.aembed_query("cat"), embeddings.embed_query("cat"), atol=1e-6)
    np.testing.assert_allclose(await embeddings.aembed_image(IMAGES), engine.encode_image(IMAGES), atol=1e-6)
    assert await embeddings.aembed_images(IMAGES[:1]) == await embeddings.aembed_image(IMAGES[:1])


@pytest.fixture
def store(embeddings) -> MultimodalQdrantVectorStore:
    exact = JinaCLIPEmbeddings(engine=embeddings.engine, query_task=None)  # queries embedded as documents
    vs = MultimodalQdrantVectorStore.from_texts(TEXTS, exact, location=":memory:", collection_name="mm")
    vs.add_images(IMAGES, metadatas=[{"n": i} for i in range(len(IMAGES))], ids=[10, 11, 12, 13])
    return vs


def test_add_images_stores_image_documents(store, engine):
    points, _ = store.client.scroll("mm", with_vectors=True, limit=100)
    images = {p.id: p for p in points if (p.payload["metadata"] or {}).get("modality") == "image"}
    assert sorted(images) == [10, 11, 12, 13] and len(points) == len(TEXTS) + len(IMAGES)
    for i, point in enumerate(images[k] for k in sorted(images)):
        assert point.payload["page_content"] == IMAGES[i]
        assert point.payload["metadata"] == {"n": i, "source": IMAGES[i], "modality": "image"}
        np.testing.assert_allclose(dense(point, store), engine.encode_image([IMAGES[i]])[0], atol=1e-5)


def test_text_query_finds_images_and_image_query_finds_texts(store):
    found = store.similarity_search("cat", k=20, filter=store.modality_filter("image"))
    assert sorted(d.metadata["source"] for d in found) == sorted(IMAGES)
    top, score = store.similarity_search_by_image_with_score(IMAGES[2], k=1)[0]
    assert top.metadata["source"] == IMAGES[2] and score == pytest.approx(1.0, abs=1e-5)
    texts = store.similarity_search_by_image(IMAGES[0], k=10, filter=store.modality_filter("text"))
    assert sorted(d.page_content for d in texts) == sorted(TEXTS)
    assert store.similarity_search(TEXTS[1], k=1)[0].page_content == TEXTS[1]


def test_add_images_validation(store, embeddings):
    with pytest.raises(ValueError, match="metadatas has 1 entries for 2 images"):
        store.add_images(IMAGES[:2], metadatas=[{}])
    with pytest.raises(InputError, match="index 1"):
        store.add_images([IMAGES[0], "nope.png"])
    assert store.client.count("mm").count == len(TEXTS) + len(IMAGES)  # nothing of the bad batch stored
    plain = MultimodalQdrantVectorStore(
        client=store.client, collection_name="mm", embedding=DeterministicFakeEmbedding(size=64)
    )
    with pytest.raises(ValueError, match="The embedding function must support image embedding."):
        plain.add_images(IMAGES[:1])


def test_matryoshka_collection(embeddings):
    small = JinaCLIPEmbeddings(engine=embeddings.engine, dimensions=16)
    vs = MultimodalQdrantVectorStore.from_texts(TEXTS, small, location=":memory:", collection_name="small")
    vs.add_images(IMAGES)
    assert vs.client.get_collection("small").config.params.vectors[vs.vector_name].size == 16
    points, _ = vs.client.scroll("small", with_vectors=True, limit=100)
    assert len(points) == 8 and {len(dense(p, vs)) for p in points} == {16}


def test_cross_modal_retriever(store):
    retriever = LangChainCrossModalRetriever(vectorstore=store, k=3, fetch_k=10)
    docs = retriever.invoke(TEXTS[2])
    assert len(docs) == 3 and docs[0].page_content == TEXTS[2]
    assert docs[0].metadata["modality"] == "text" and docs[0].metadata["score"] == pytest.approx(1.0, abs=1e-5)
    assert [d.metadata["fused_score"] for d in docs] == sorted((d.metadata["fused_score"] for d in docs), reverse=True)
    assert {d.metadata["modality"] for d in docs} == {"text", "image"}  # both sides are in the ranking

    by_image = LangChainCrossModalRetriever(vectorstore=store, k=8, query_modality="image").invoke(IMAGES[1])
    assert by_image[0].metadata["source"] == IMAGES[1]
    assert sum(d.metadata["modality"] == "text" for d in by_image) == len(TEXTS)  # an image finds passages

    texts_first = LangChainCrossModalRetriever(vectorstore=store, k=8, image_weight=0).invoke("cat")
    assert [d.metadata["modality"] for d in texts_first] == ["text"] * 4 + ["image"] * 4

    only_n2 = models.Filter(should=[models.FieldCondition(key="metadata.n", match=models.MatchValue(value=2))])
    filtered = LangChainCrossModalRetriever(vectorstore=store, k=8, filter=only_n2).invoke("cat")
    assert [d.metadata.get("n") for d in filtered] == [2]


async def test_cross_modal_retriever_async(store):
    retriever = LangChainCrossModalRetriever(vectorstore=store, k=2)
    assert [d.page_content for d in await retriever.ainvoke(TEXTS[0])] == [
        d.page_content for d in retriever.invoke(TEXTS[0])
    ]


def test_store_on_disk_reopens(tmp_path, embeddings):
    """The embedded (local-mode, on-disk) Qdrant keeps images across clients."""
    path = str(tmp_path / "qdrant")
    vs = MultimodalQdrantVectorStore.from_texts(TEXTS, embeddings, path=path, collection_name="disk")
    vs.add_images(IMAGES)
    vs.client.close()
    client = QdrantClient(path=path)
    reopened = MultimodalQdrantVectorStore(client=client, collection_name="disk", embedding=embeddings)
    assert reopened.similarity_search_by_image(IMAGES[3], k=1)[0].metadata["source"] == IMAGES[3]
    client.close()


def test_add_images_stores_nothing_when_one_image_is_bad(store):
    before = store.client.count("mm").count
    with pytest.raises(InputError) as info:
        store.add_images([IMAGES[0]] * 3 + ["nope.png"] + [IMAGES[1]], batch_size=2)
    assert info.value.index == 3  # the index in the whole input, not in a batch
    assert store.client.count("mm").count == before


def test_add_images_in_several_batches_and_metadata(store):
    ids = store.add_images(IMAGES * 2, metadatas=[{"source": "s3://bucket/x", "k": i} for i in range(8)], batch_size=3)
    assert len(ids) == len(set(ids)) == 8
    docs = store.get_by_ids(ids)
    assert {d.metadata["source"] for d in docs} == {"s3://bucket/x"}  # a given source is kept
    assert {d.metadata["modality"] for d in docs} == {"image"} and sorted(d.metadata["k"] for d in docs) == list(
        range(8)
    )


def test_single_items_that_are_not_lists(embeddings, store):
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        embeddings.embed_image(IMAGES[0])
    with pytest.raises(TypeError, match="wrap a single text in a list"):
        embeddings.embed_documents("a text")
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        store.add_images(IMAGES[0])
    with pytest.raises(TypeError, match=r"uris\[1\] must be a path or URL string, not bytes"):
        store.add_images([IMAGES[0], b"raw bytes"])


def test_engine_given_describes_the_adapter(engine, tmp_path):
    adapter = JinaCLIPEmbeddings(engine=engine)
    assert (adapter.model_name, adapter.device, adapter.dtype) == (engine.name_or_path, "cpu", "float32")
    rebuilt = JinaCLIPEmbeddings(**adapter.model_dump())  # the dump rebuilds the same model
    assert rebuilt.engine.name_or_path == engine.name_or_path and rebuilt.engine.dtype == engine.dtype
    np.testing.assert_allclose(rebuilt.embed_query("cat"), adapter.embed_query("cat"), atol=1e-6)
    with pytest.raises(ValidationError, match="does not match the engine's model"):
        JinaCLIPEmbeddings(engine=engine, model_name="jinaai/jina-clip-v2")


def test_model_without_tasks(tmp_path, engine):
    def no_tasks(config):
        config["text_config"]["hf_model_config_kwargs"]["task_instructions"] = {}

    from jinaclip_integrations import JinaCLIPEngine

    plain = JinaCLIPEngine.from_pretrained(
        copy_fixture(tmp_path / "m", config_edit=no_tasks), device="cpu", dtype="float32"
    )
    adapter = JinaCLIPEmbeddings(engine=plain)
    assert (adapter.query_task, adapter.document_task) == (None, None)
    np.testing.assert_allclose(adapter.embed_query("cat"), engine.encode_text(["cat"])[0], atol=1e-6)
    with pytest.raises(ValidationError, match=r"query_task 'retrieval.query' is not a task of .*choose one of \[\]"):
        JinaCLIPEmbeddings(engine=plain, query_task="retrieval.query")


def test_retriever_search_options_per_call(store):
    retriever = LangChainCrossModalRetriever(vectorstore=store, k=5, fetch_k=1)
    assert len(retriever.invoke("cat")) == 5  # fetch_k is raised to k
    assert len(retriever.invoke("cat", k=2)) == 2
    assert len(retriever.invoke(TEXTS[0], min_score=0.999)) == 1  # only the identical text is that close
    with pytest.raises(TypeError, match="unexpected search options \\['top_n'\\]"):
        retriever.invoke("cat", top_n=3)


class TestStandardRetriever(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[LangChainCrossModalRetriever]:
        return LangChainCrossModalRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        embeddings = JinaCLIPEmbeddings(**PARAMS)
        store = MultimodalQdrantVectorStore.from_texts(TEXTS, embeddings, location=":memory:", collection_name="std")
        store.add_images(IMAGES)
        return {"vectorstore": store}

    @property
    def retriever_query_example(self) -> str:
        return "a cat on a sofa"
