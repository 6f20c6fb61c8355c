"""Every integration on both model generations: jina-clip-v2 (tasks, Matryoshka) and jina-clip-v1
(neither). The detailed behaviour of each integration is tested in its own module on v2; here the
same user-facing paths run on each model, so v1 works by changing the model name.

Vectors are compared with the engine's own output at atol 1e-6 (the same float32 computation).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from llama_index.core import StorageContext
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import ImageNode, QueryBundle, TextNode
from llama_index.core.vector_stores import SimpleVectorStore
from qdrant_client import QdrantClient

from conftest import V1_TINY, V2_TINY, load_engine
from jinaclip_integrations import cli, settings
from jinaclip_integrations.langchain import JinaCLIPEmbeddings, MultimodalQdrantVectorStore
from jinaclip_integrations.llama_index import JinaCLIPEmbedding, LlamaIndexCrossModalRetriever
from jinaclip_integrations.qdrant import QdrantVectorizer

MODELS = {"v2": V2_TINY, "v1": V1_TINY}
DATA = Path(__file__).parents[1] / "examples" / "data"
IMAGES = sorted(str(p) for p in DATA.glob("*.png"))
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "hello"]
ATOL = 1e-6


@pytest.fixture(params=list(MODELS), scope="module")
def model(request) -> Path:
    return MODELS[request.param]


def query_task(engine) -> str | None:
    """What the adapters use for queries: the query instruction where the model has one."""
    return "retrieval.query" if "retrieval.query" in engine.tasks else None


class TestStandardIntegrationV1(EmbeddingsIntegrationTests):
    """langchain-tests' suite on jina-clip-v1 (test_langchain.py runs it on v2)."""

    @property
    def embeddings_class(self) -> type[JinaCLIPEmbeddings]:
        return JinaCLIPEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_name": str(V1_TINY), "device": "cpu"}


def test_model_facts():
    v1, v2 = load_engine(V1_TINY), load_engine(V2_TINY)
    assert (v1.tasks, v1.matryoshka_dims) == ((), ())
    assert v2.tasks == ("retrieval.query",) and v2.matryoshka_dims == (8, 16, 32, 64)


def test_langchain_values_and_store(model):
    engine = load_engine(model)
    embeddings = JinaCLIPEmbeddings(engine=engine)
    assert embeddings.query_task == query_task(engine)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), engine.encode_text(TEXTS), atol=ATOL)
    np.testing.assert_allclose(embeddings.embed_query("cat"), engine.encode_text(["cat"], task=query_task(engine))[0], atol=ATOL)  # fmt: skip
    np.testing.assert_allclose(embeddings.embed_image(uris=IMAGES), engine.encode_image(IMAGES), atol=ATOL)
    store = MultimodalQdrantVectorStore.from_texts(TEXTS, embeddings, location=":memory:", collection_name="mm")
    store.add_images(IMAGES)
    top, score = store.similarity_search_by_image_with_score(IMAGES[1], k=1)[0]
    assert top.metadata["source"] == IMAGES[1] and score == pytest.approx(1.0, abs=1e-5)
    assert len(store.similarity_search("cat", k=10, filter=store.modality_filter("image"))) == len(IMAGES)


def test_llama_index_values_and_retriever(model):
    engine = load_engine(model)
    embed_model = JinaCLIPEmbedding(engine=engine)
    assert embed_model.query_task == query_task(engine)
    np.testing.assert_allclose(embed_model.get_text_embedding_batch(TEXTS), engine.encode_text(TEXTS), atol=ATOL)
    np.testing.assert_allclose(embed_model.get_query_embedding("cat"), engine.encode_text(["cat"], task=query_task(engine))[0], atol=ATOL)  # fmt: skip
    np.testing.assert_allclose(embed_model.get_image_embedding_batch(IMAGES), engine.encode_image(IMAGES), atol=ATOL)
    nodes = [TextNode(text=t) for t in TEXTS] + [ImageNode(image_path=p, metadata={"file_path": p}) for p in IMAGES]
    storage = StorageContext.from_defaults(vector_store=SimpleVectorStore(), image_store=SimpleVectorStore())
    index = MultiModalVectorStoreIndex(nodes, storage_context=storage, embed_model=embed_model, image_embed_model=embed_model)  # fmt: skip
    hits = LlamaIndexCrossModalRetriever(index, k=6).retrieve(QueryBundle(query_str="", image_path=IMAGES[2]))
    images = [h for h in hits if isinstance(h.node, ImageNode)]
    assert len(hits) == 6 and images[0].node.image_path == IMAGES[2]  # the fused order of sides may differ


def test_qdrant_vectorizer(model, tmp_path):
    engine = load_engine(model)
    with QdrantVectorizer(tmp_path, "c", engine=engine) as store:
        assert store.layout.short_dim == (8 if engine.matryoshka_dims else None)  # v1: the full vector only
        assert store.add_files([DATA]).added == 6 and store.add_files([DATA]).files["unchanged"] == 6
        hit = store.search_image(IMAGES[0], limit=1, modality="image")[0]
        assert hit.source == IMAGES[0] and hit.score == pytest.approx(1.0, abs=1e-5)
        assert {h.modality for h in store.search_image(IMAGES[0], limit=2)} == {"text", "image"}  # merged
        texts = store.search_text("circles", limit=3, modality="text")
        assert {h.modality for h in texts} == {"text"} and len(texts) == 3
    client = QdrantClient(":memory:")
    QdrantVectorizer(client, "c", engine=engine, preset="int8").add_texts(TEXTS)
    assert client.count("c").count == len(TEXTS)


def test_cli_index_and_search(model, tmp_path, capsys, monkeypatch):
    for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    common = ["--model", str(model), "--store", str(tmp_path / "store"), "-q"]
    assert cli.main(["index", str(data), *common]) == 0
    assert cli.main(["index", str(data), *common]) == 0
    assert "6 unchanged" in capsys.readouterr().out
    assert cli.main(["search", "--image", str(data / "red_circle.png"), "--limit", "1", "--modality", "image", *common]) == 0  # fmt: skip
    assert capsys.readouterr().out.splitlines()[1].split()[:5] == ["1", "1.0000", "1.0000", "image", str(data / "red_circle.png")]  # fmt: skip
    assert cli.main(["info", "--json", "--model", str(model)]) == 0
    assert ('"tasks": []' in capsys.readouterr().out) == (model == V1_TINY)


def test_weaviate_inference_routes(model):
    import base64

    from fastapi.testclient import TestClient

    from jinaclip_integrations.weaviate import create_inference_app

    engine = load_engine(model)
    with TestClient(create_inference_app(engine)) as client:
        query = client.post("/query/vectors", json={"text": "cat", "config": {"task_type": "query"}})
        assert query.status_code == 200
        np.testing.assert_allclose(query.json()["vector"], engine.encode_text(["cat"], task=query_task(engine))[0], atol=ATOL)  # fmt: skip
        image = base64.b64encode(Path(IMAGES[0]).read_bytes()).decode()
        both = client.post("/vectorize", json={"texts": TEXTS, "images": [image]}).json()
        np.testing.assert_allclose(both["textVectors"], engine.encode_text(TEXTS), atol=ATOL)
        np.testing.assert_allclose(both["imageVectors"], engine.encode_image(IMAGES[:1]), atol=ATOL)
        assert client.get("/meta").json()["tasks"] == list(engine.tasks)


def test_embedding_server(model):
    from fastapi.testclient import TestClient

    from jinaclip_integrations.server import ServerSettings, create_app

    engine = load_engine(model)
    with TestClient(create_app(engine, ServerSettings())) as client:
        openai = client.post("/v1/embeddings", json={"input": TEXTS, "model": "x", "encoding_format": "float"})
        assert openai.status_code == 200
        np.testing.assert_allclose([d["embedding"] for d in openai.json()["data"]], engine.encode_text(TEXTS), atol=ATOL)  # fmt: skip
        jina = client.post("/v1/embeddings", json={"input": [{"text": "cat"}], "task": "retrieval.query"})
        np.testing.assert_allclose(jina.json()["data"][0]["embedding"], engine.encode_text(["cat"], task=query_task(engine))[0], atol=ATOL)  # fmt: skip
        small = client.post("/v1/embeddings", json={"input": ["cat"], "dimensions": 16, "encoding_format": "float"})
        assert small.status_code == (200 if engine.matryoshka_dims else 400)  # v1 has no Matryoshka sizes
