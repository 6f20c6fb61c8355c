"""JinaCLIPEmbeddingFunction in embedded Chroma collections (``PersistentClient`` on a temporary folder).

Stored vectors are compared with the engine's own output (atol 1e-5): documents embedded without
a task, query texts with the query task, images alike either way. Rankings are compared with an
exact numpy search over those vectors: the tiny test weights are random, so which *other* item
is most similar says nothing, but Chroma must rank exactly as the vectors say. ``engine`` is
conftest's tiny v2 engine (CPU, float32).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import chromadb
import numpy as np
import pytest
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.utils.data_loaders import ImageLoader
from PIL import Image

from conftest import V2_TINY
from jinaclip_integrations import InputError, shared_engine
from jinaclip_integrations.chroma import JinaCLIPEmbeddingFunction

EXAMPLE = Path(__file__).parents[1] / "examples" / "chroma_multimodal.py"
DATA = EXAMPLE.parent / "data"
TEXT_FILES = sorted(DATA.glob("*.txt"))
IMAGE_FILES = sorted(DATA.glob("*.png"))
TEXTS = [p.read_text(encoding="utf-8").strip() for p in TEXT_FILES]
IMAGES = [str(p) for p in IMAGE_FILES]


@pytest.fixture
def client(tmp_path):
    return chromadb.PersistentClient(path=str(tmp_path / "chroma"))


@pytest.fixture
def cpu_settings(monkeypatch):
    """The settings a function rebuilt from a config loads its model with: the test engine's."""
    monkeypatch.setenv("JINACLIP_DEVICE", "cpu")
    monkeypatch.setenv("JINACLIP_DTYPE", "float32")


def filled(client, function: JinaCLIPEmbeddingFunction, name: str = "things"):
    """A multimodal collection holding the example texts (ids t0..) and images (ids i0..)."""
    collection = client.create_collection(name, embedding_function=function, data_loader=ImageLoader())
    collection.add(ids=[f"t{i}" for i in range(len(TEXTS))], documents=TEXTS)
    collection.add(ids=[f"i{i}" for i in range(len(IMAGES))], uris=IMAGES)
    return collection


def engine_vectors(engine, dim: int | None = None) -> dict[str, np.ndarray]:
    """What the collection should hold, by id: documents without a task, and the images."""
    texts = engine.encode_text(TEXTS, truncate_dim=dim)
    images = engine.encode_image(IMAGES, truncate_dim=dim)
    return {**{f"t{i}": v for i, v in enumerate(texts)}, **{f"i{i}": v for i, v in enumerate(images)}}


def stored_vectors(collection) -> dict[str, np.ndarray]:
    got = collection.get(include=["embeddings"])
    return {id_: np.asarray(v, dtype=np.float32) for id_, v in zip(got["ids"], got["embeddings"], strict=True)}


def assert_ranked_as(result, query: np.ndarray, vectors: dict[str, np.ndarray]) -> None:
    """Chroma's ids and cosine distances for one query equal an exact search over ``vectors``."""
    ids = list(vectors)
    distances = 1 - np.stack([vectors[i] for i in ids]) @ query
    order = np.argsort(distances, kind="stable")
    assert result["ids"][0] == [ids[i] for i in order]
    np.testing.assert_allclose(result["distances"][0], distances[order], atol=1e-5)


def test_texts_and_images_in_one_collection(client, engine):
    collection = filled(client, JinaCLIPEmbeddingFunction(engine=engine))
    expected = engine_vectors(engine)
    stored = stored_vectors(collection)
    assert stored.keys() == expected.keys()
    for key, vector in expected.items():
        np.testing.assert_allclose(stored[key], vector, atol=1e-5)

    query = "a red circle"
    found = collection.query(query_texts=[query], n_results=6)
    assert_ranked_as(found, engine.encode_text([query], task=engine.query_task)[0], expected)
    assert {i[0] for i in found["ids"][0]} == {"t", "i"}  # a text query finds images too

    array = np.array(Image.open(IMAGES[0]))
    for found in (collection.query(query_images=[array], n_results=6), collection.query(query_uris=[IMAGES[0]], n_results=6)):  # fmt: skip
        assert found["ids"][0][0] == "i0" and found["distances"][0][0] == pytest.approx(0, abs=1e-5)
        assert_ranked_as(found, expected["i0"], expected)


def test_one_call_embeds_a_mixed_list_in_input_order(engine):
    function = JinaCLIPEmbeddingFunction(engine=engine)
    array = np.array(Image.open(IMAGES[1]))
    items = [TEXTS[0], array, TEXTS[1], Image.open(IMAGES[2])]
    texts, images = engine.encode_text([TEXTS[0], TEXTS[1]]), engine.encode_image([array, IMAGES[2]])
    queries = engine.encode_text([TEXTS[0], TEXTS[1]], task=engine.query_task)
    for rows, expected in (
        (function(items), [texts[0], images[0], texts[1], images[1]]),
        (function.embed_query(items), [queries[0], images[0], queries[1], images[1]]),
    ):
        assert [(type(r), r.dtype, r.shape) for r in rows] == [(np.ndarray, np.float32, (64,))] * 4
        np.testing.assert_allclose(np.stack(rows), np.stack(expected), atol=1e-5)
    assert not np.allclose(queries[0], texts[0])  # the query task is really applied
    with pytest.raises(TypeError, match="wrap a single one in a list"):
        function(TEXTS[0])


def test_dimensions_give_matryoshka_vectors(client, engine):
    collection = filled(client, JinaCLIPEmbeddingFunction(engine=engine, dimensions=16))
    expected = engine_vectors(engine, 16)
    stored = stored_vectors(collection)
    assert {v.shape for v in stored.values()} == {(16,)}
    for key, vector in expected.items():
        np.testing.assert_allclose(stored[key], vector, atol=1e-5)
    found = collection.query(query_texts=["a green triangle"], n_results=6)
    assert_ranked_as(found, engine.encode_text(["a green triangle"], task=engine.query_task, truncate_dim=16)[0], expected)  # fmt: skip
    with pytest.raises(ValueError, match="dimensions 17 is not supported"):
        JinaCLIPEmbeddingFunction(engine=engine, dimensions=17)


def test_a_persisted_collection_reopens_with_the_function_of_its_config(tmp_path, engine, cpu_settings):
    function = JinaCLIPEmbeddingFunction(engine=engine, dimensions=16)
    config = function.get_config()
    assert json.loads(json.dumps(config)) == config
    assert config == {"model_name": str(V2_TINY.resolve()), "dimensions": 16, "device": None, "dtype": None, "batch_size": 32}  # fmt: skip
    assert function.name() == "jinaclip_integrations.chroma" and not function.is_legacy()
    path = str(tmp_path / "chroma")
    filled(chromadb.PersistentClient(path=path), function)
    SharedSystemClient.clear_system_cache()  # the next client reads the folder afresh

    collection = chromadb.PersistentClient(path=path).get_collection("things", data_loader=ImageLoader())
    rebuilt = collection.configuration["embedding_function"]
    assert type(rebuilt) is JinaCLIPEmbeddingFunction and rebuilt.get_config() == config
    assert rebuilt is JinaCLIPEmbeddingFunction.build_from_config(config)  # kept: the model loads once
    collection.add(ids=["t9"], documents=["eine rote Kugel"])
    expected = {**engine_vectors(engine, 16), "t9": engine.encode_text(["eine rote Kugel"], truncate_dim=16)[0]}
    stored = stored_vectors(collection)
    for key, vector in expected.items():
        np.testing.assert_allclose(stored[key], vector, atol=1e-5)
    found = collection.query(query_texts=["a red circle"], n_results=7)
    assert_ranked_as(found, engine.encode_text(["a red circle"], task=engine.query_task, truncate_dim=16)[0], expected)  # fmt: skip
    assert rebuilt.engine is shared_engine(V2_TINY, device="cpu", dtype="float32")


def test_a_bad_item_raises_input_error_naming_its_index(client, engine):
    function = JinaCLIPEmbeddingFunction(engine=engine)
    collection = client.create_collection("things", embedding_function=function, data_loader=ImageLoader())
    good = np.array(Image.open(IMAGES[0]))
    with pytest.raises(InputError, match="must be uint8") as info:
        collection.add(ids=["a", "b", "c"], images=[good, good, good.astype(np.float64)])
    assert info.value.index == 2
    assert collection.count() == 0
    with pytest.raises(InputError) as info:
        function([TEXTS[0], good, TEXTS[1], None])
    assert info.value.index == 3 and "NoneType" in info.value.reason


def test_defaults_come_from_the_settings_and_the_engine_is_shared(monkeypatch, cpu_settings):
    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    function = JinaCLIPEmbeddingFunction()
    assert function.model_name == str(V2_TINY.resolve()) and (function.device, function.dtype) == (None, None)
    assert function.engine is shared_engine(V2_TINY, device="cpu", dtype="float32")
    assert JinaCLIPEmbeddingFunction(str(V2_TINY), device="cpu", dtype="float32").engine is function.engine


def test_config_checks(engine):
    function = JinaCLIPEmbeddingFunction(engine=engine)
    config = function.get_config()
    assert function.default_space() == "cosine" and set(function.supported_spaces()) == {"cosine", "ip", "l2"}
    for bad, match in (
        ({**config, "extra": 1}, "config keys"),
        ({**config, "dimensions": "16"}, "dimensions must be int"),
        ({**config, "dtype": "float64"}, "dtype must be one of"),
        ({**config, "batch_size": 0}, "batch_size must be positive"),
    ):
        with pytest.raises(ValueError, match=match):
            JinaCLIPEmbeddingFunction.build_from_config(bad)
    function.validate_config_update(config, {**config, "device": "cuda", "batch_size": 8})
    with pytest.raises(ValueError, match="cannot change dimensions"):
        function.validate_config_update(config, {**config, "dimensions": 16})
    with pytest.raises(ValueError, match="with engine= they must be None"):
        JinaCLIPEmbeddingFunction(engine=engine, device="cpu")
    with pytest.raises(ValueError, match="does not match the engine's model"):
        JinaCLIPEmbeddingFunction("jinaai/jina-clip-v2", engine=engine)


def test_without_chromadb_the_import_names_the_extra():
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "chromadb":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
try:
    import jinaclip_integrations.chroma
except ImportError as exc:
    assert 'pip install "jinaclip-integrations[chroma]"' in str(exc), str(exc)
else:
    raise AssertionError("imported without chromadb")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_example_indexes_and_searches_both_modalities(tmp_path, cpu_settings):
    spec = importlib.util.spec_from_file_location("chroma_multimodal", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    result = example.run(str(tmp_path / "chroma"), str(V2_TINY), DATA, dimensions=16, image_query=IMAGE_FILES[0])
    assert result["collection"].count() == 6
    for found in (result["for_text"], result["for_image"]):
        assert {meta["modality"] for meta in found["metadatas"][0]} == {"text", "image"}
    top = result["for_image"]["metadatas"][0][0]
    assert top["source"] == IMAGE_FILES[0].name and result["for_image"]["distances"][0][0] == pytest.approx(0, abs=1e-5)
