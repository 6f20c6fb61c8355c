"""WeaviateVectorizer against a hand-written fake of the weaviate-client v4 calls it makes.

No Weaviate server can run here, so the fake keeps objects in a dict (keyed by UUID, as
Weaviate's batch insert replaces an object with the same UUID) and answers ``near_vector``
with cosine distances. What reaches Weaviate's REST API when the collection is created is
checked on the real ``Configure`` objects' serialized form.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from weaviate.classes.config import Configure, VectorDistances
from weaviate.collections.classes.batch import BatchObjectReturn
from weaviate.collections.classes.config import _CollectionConfigCreate
from weaviate.collections.classes.filters import _FilterValue

from jinaclip_integrations import InputError, JinaCLIPError
from jinaclip_integrations._ingest import SearchHit, content_id
from jinaclip_integrations.errors import StoreError
from jinaclip_integrations.weaviate import WeaviateVectorizer

ATOL = 1e-5  # the engine's own float noise between batch compositions
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "一只猫坐在沙发上。"]


class FakeCollection:
    def __init__(self, name: str, vectors: dict[str, VectorDistances], reject=None) -> None:
        self.name = name
        self.vectors = vectors  # named vector -> distance, what config.get() reports
        self.objects: dict[str, SimpleNamespace] = {}
        self.inserts: list[list] = []
        self.queries: list[dict] = []
        self.reject = reject  # properties -> error message or None
        self.data = SimpleNamespace(insert_many=self.insert_many)
        self.query = SimpleNamespace(near_vector=self.near_vector)
        self.config = SimpleNamespace(get=self.get_config)

    def get_config(self):
        layout = {name: SimpleNamespace(vector_index_config=SimpleNamespace(distance_metric=distance))
                  for name, distance in self.vectors.items()}  # fmt: skip
        return SimpleNamespace(name=self.name, vector_config=layout)

    def insert_many(self, objects):
        self.inserts.append(list(objects))
        errors, uuids = {}, {}
        for i, obj in enumerate(objects):
            message = self.reject and self.reject(obj.properties)
            if message:
                errors[i] = SimpleNamespace(message=message, object_=obj)
                continue
            self.objects[str(obj.uuid)] = SimpleNamespace(properties=dict(obj.properties), vector=dict(obj.vector))
            uuids[i] = uuid.UUID(str(obj.uuid))
        return BatchObjectReturn(errors=errors, uuids=uuids)

    def near_vector(self, *, near_vector, target_vector, limit, filters, return_metadata):
        self.queries.append(dict(near_vector=near_vector, target_vector=target_vector, limit=limit, filters=filters,
                                 return_metadata=return_metadata))  # fmt: skip
        query = np.asarray(near_vector) / np.linalg.norm(near_vector)
        found = []
        for key, obj in self.objects.items():
            if filters is not None and obj.properties.get(filters.target) != filters.value:
                continue
            vector = np.asarray(obj.vector[target_vector])
            distance = 1 - float(query @ (vector / np.linalg.norm(vector)))
            found.append(SimpleNamespace(uuid=uuid.UUID(key), properties=obj.properties,
                                         metadata=SimpleNamespace(distance=distance)))  # fmt: skip
        return SimpleNamespace(objects=sorted(found, key=lambda o: o.metadata.distance)[:limit])


class FakeClient:
    """``client.collections.exists/create/get``, recording every call."""

    def __init__(self, reject=None) -> None:
        self.store: dict[str, FakeCollection] = {}
        self.calls: list[tuple] = []
        self.reject = reject
        self.collections = SimpleNamespace(exists=self.exists, create=self.create, get=self.get)

    def exists(self, name):
        self.calls.append(("exists", name))
        return name in self.store

    def create(self, name, **kwargs):
        self.calls.append(("create", name, kwargs))
        vectors = {vc.name: vc.vectorIndexConfig.distance for vc in kwargs["vector_config"]}
        self.store[name] = FakeCollection(name, vectors, self.reject)
        return self.store[name]

    def get(self, name):
        self.calls.append(("get", name))
        return self.store[name]


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


@pytest.fixture
def store(client, engine) -> WeaviateVectorizer:
    return WeaviateVectorizer(client, "Docs", engine=engine, batch_size=2)


def stored_vectors(collection: FakeCollection, ids: list[str], name: str = "jina_clip") -> np.ndarray:
    return np.array([collection.objects[i].vector[name] for i in ids])


def test_nothing_is_sent_before_it_is_needed(client, engine):
    WeaviateVectorizer(client, engine=engine)
    assert client.calls == []


def test_the_collection_is_created_with_a_cosine_self_provided_vector(client, store):
    collection = store.ensure_collection()
    assert [call[0] for call in client.calls] == ["exists", "create"]
    name, kwargs = client.calls[1][1:]
    # what weaviate-client sends to POST /v1/schema
    schema = _CollectionConfigCreate(name=name, **kwargs)._to_dict()
    assert schema["class"] == "Docs"
    assert schema["vectorConfig"] == {
        "jina_clip": {
            "vectorizer": {"none": {}},
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": {"distance": "cosine"},
        }
    }
    assert [(p["name"], p["dataType"]) for p in schema["properties"]] == [
        ("text", ["text"]), ("source", ["text"]), ("modality", ["text"])
    ]  # fmt: skip
    assert store.model_name in schema["description"] and "64 dims" in schema["description"]

    assert store.ensure_collection() is collection  # exists now: checked, not created again
    assert [call[0] for call in client.calls] == ["exists", "create", "exists", "get"]


def test_an_existing_collection_must_have_the_vector(client, engine):
    client.store["Docs"] = FakeCollection("Docs", {"other": VectorDistances.COSINE})
    with pytest.raises(StoreError, match=r"collection 'Docs' has no named vector 'jina_clip' \(it has \['other'\]\)"):
        WeaviateVectorizer(client, "Docs", engine=engine).ensure_collection()
    client.store["Dot"] = FakeCollection("Dot", {"jina_clip": VectorDistances.DOT})
    with pytest.raises(StoreError, match=r"'Dot': the named vector 'jina_clip' uses dot distance, not cosine"):
        WeaviateVectorizer(client, "Dot", engine=engine).ensure_collection()
    existing = WeaviateVectorizer(client, "Docs", engine=engine, vector_name="other")
    assert existing.ensure_collection() is client.store["Docs"]


def test_add_texts(client, store, engine):
    metadatas = [{"page": 1}, {"page": 2, "source": "book.pdf"}, {}]
    ids = store.add_texts(TEXTS, metadatas=metadatas)
    again = store.add_texts(TEXTS, metadatas=metadatas)
    collection = client.store["Docs"]
    assert ids == again == [content_id("text", t) for t in TEXTS]
    assert len(collection.objects) == len(TEXTS)  # the second add rewrote the same objects
    assert [len(batch) for batch in collection.inserts] == [2, 1, 2, 1]
    np.testing.assert_allclose(stored_vectors(collection, ids), engine.encode_text(TEXTS), atol=ATOL)
    assert collection.objects[ids[0]].properties == {"text": TEXTS[0], "modality": "text", "page": 1}
    assert collection.objects[ids[1]].properties == {"text": TEXTS[1], "modality": "text", "page": 2,
                                                     "source": "book.pdf"}  # fmt: skip


def test_add_images(client, store, engine, image_paths):
    ids = store.add_images([str(p) for p in image_paths[:3]], metadatas=[{"album": "a"}] * 3)
    collection = client.store["Docs"]
    assert ids == [content_id("image", p.read_bytes()) for p in image_paths[:3]]
    np.testing.assert_allclose(stored_vectors(collection, ids), engine.encode_image(image_paths[:3]), atol=ATOL)
    assert collection.objects[ids[0]].properties == {"modality": "image", "source": str(image_paths[0]), "album": "a"}
    assert store.add_images([image_paths[0].read_bytes()]) == ids[:1]  # the same bytes, the same object
    with pytest.raises(TypeError, match="wrap a single image in a list"):
        store.add_images(str(image_paths[0]))


def test_matryoshka_dimensions(client, engine, image_paths):
    store = WeaviateVectorizer(client, "Small", engine=engine, dimensions=16)
    ids = store.add_texts(TEXTS) + store.add_images(image_paths[:2])
    expected = np.vstack([engine.encode_text(TEXTS, truncate_dim=16), engine.encode_image(image_paths[:2], truncate_dim=16)])  # fmt: skip
    np.testing.assert_allclose(stored_vectors(client.store["Small"], ids), expected, atol=ATOL)
    assert "16 dims" in client.calls[1][2]["description"]
    store.search_text("cat")
    np.testing.assert_allclose(client.store["Small"].queries[0]["near_vector"], engine.encode_text(["cat"], task="retrieval.query", truncate_dim=16)[0], atol=ATOL)  # fmt: skip
    with pytest.raises(ValueError, match=r"dimensions 48 is not supported .* choose one of \[8, 16, 32, 64\]"):
        WeaviateVectorizer(client, engine=engine, dimensions=48)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        WeaviateVectorizer(client, engine=engine, batch_size=0)


def test_rejected_objects_raise(engine):
    client = FakeClient(reject=lambda props: "property 'page' has the wrong type" if props.get("page") == "x" else None)
    store = WeaviateVectorizer(client, "Docs", engine=engine, batch_size=2)
    with pytest.raises(JinaCLIPError, match=r"rejected 1 of 1 objects.*text 2 \(text 2\): property 'page' has the wrong type"):  # fmt: skip
        store.add_texts(TEXTS, metadatas=[{}, {}, {"page": "x"}])
    with pytest.raises(JinaCLIPError, match=r"rejected 1 of 2 objects.*text 1 \(a.txt\): property 'page'"):
        store.add_texts(TEXTS, metadatas=[{}, {"page": "x", "source": "a.txt"}, {}])


def test_bad_items_name_their_index(store, image_paths):
    with pytest.raises(InputError, match="invalid image at index 2: .*missing.png"):
        store.add_images([image_paths[0], image_paths[1], "missing.png"])
    with pytest.raises(InputError, match="invalid text at index 1: expected a string"):
        store.add_texts(["a", 3])


def test_search(client, store, engine, image_paths):
    text_ids = store.add_texts(TEXTS)
    image_ids = store.add_images(image_paths[:3])
    collection = client.store["Docs"]

    hits = store.search_text(TEXTS[0], limit=4)
    query = collection.queries[-1]
    np.testing.assert_allclose(query["near_vector"], engine.encode_text(TEXTS[:1], task="retrieval.query")[0], atol=ATOL)  # fmt: skip
    assert query["target_vector"] == "jina_clip" and query["limit"] == 4 and query["filters"] is None
    assert query["return_metadata"].distance is True
    assert len(hits) == 4 and all(isinstance(hit, SearchHit) for hit in hits)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    vectors = stored_vectors(collection, [hit.id for hit in hits])
    expected = vectors @ engine.encode_text(TEXTS[:1], task="retrieval.query")[0]
    np.testing.assert_allclose(scores, expected, atol=ATOL)  # score = 1 - cosine distance

    images = store.search_text(TEXTS[0], modality="image")
    assert isinstance(collection.queries[-1]["filters"], _FilterValue)
    assert (collection.queries[-1]["filters"].target, collection.queries[-1]["filters"].value) == ("modality", "image")
    assert sorted(hit.id for hit in images) == sorted(image_ids)
    assert {(hit.modality, hit.text) for hit in images} == {("image", None)}
    assert images[0].source in {str(p) for p in image_paths[:3]}

    by_image = store.search_image(image_paths[1], modality="text", limit=2)
    assert len(by_image) == 2 and {hit.id for hit in by_image} <= set(text_ids) and by_image[0].text in TEXTS
    same = store.search_image(image_paths[1], limit=1)[0]
    assert same.id == image_ids[1] and same.score == pytest.approx(1, abs=ATOL)
    assert store.search_vector(np.asarray(collection.objects[text_ids[2]].vector["jina_clip"]), limit=1)[0].id == text_ids[2]  # fmt: skip
    with pytest.raises(ValueError, match="modality must be"):
        store.search_vector([0.1] * 64, modality="video")


def test_add_files(tmp_path, client, store, engine, image_paths):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(image_paths[0], folder / "good.png")
    (folder / "sub" / "note.txt").write_text("a note about cats", encoding="utf-8")
    (folder / "bad.png").write_bytes(b"this is not a png")
    (folder / "table.csv").write_text("a,b")

    report = store.add_files([folder], on_error="skip")
    assert (report.added, report.existing) == (2, 0)
    assert [(f.source, bool(f.reason)) for f in report.failed] == [(str(folder / "bad.png"), True)]
    assert report.ignored == [str(folder / "table.csv")]
    objects = client.store["Docs"].objects
    good, note = content_id("image", image_paths[0].read_bytes()), content_id("text", "a note about cats")
    assert set(objects) == {good, note}
    assert objects[good].properties == {"modality": "image", "source": str(folder / "good.png")}
    assert objects[note].properties == {"modality": "text", "source": str(folder / "sub" / "note.txt"),
                                        "text": "a note about cats"}  # fmt: skip
    np.testing.assert_allclose(objects[note].vector["jina_clip"], engine.encode_text(["a note about cats"])[0], atol=ATOL)  # fmt: skip

    with pytest.raises(InputError, match=r"invalid image at index 0: .*bad\.png"):
        store.add_files([folder], on_error="raise")
    with pytest.raises(ValueError, match="on_error must be"):
        store.add_files([folder], on_error="ignore")


def test_configure_names_exist_in_the_installed_client():
    """The factory calls the adapter makes, spelled as weaviate-client 4.x spells them."""
    vector = Configure.Vectors.self_provided(
        name="v", vector_index_config=Configure.VectorIndex.hnsw(distance_metric=VectorDistances.COSINE)
    )
    assert vector._to_dict() == {"vectorizer": {"none": {}}, "vectorIndexType": "hnsw",
                                 "vectorIndexConfig": {"distance": "cosine"}}  # fmt: skip


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("weaviate", "fastapi"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""

CHECK = """
import jinaclip_integrations.weaviate as w
assert not {"torch", "weaviate", "fastapi"} & set(sys.modules), "imported too early"
for name, extra in (("WeaviateVectorizer", "weaviate"), ("inference_router", "server")):
    try:
        getattr(w, name)
    except ImportError as exc:
        assert f'pip install "jinaclip-integrations[{extra}]"' in str(exc), str(exc)
    else:
        raise AssertionError(name + " imported without its extra")
"""


def test_without_the_extras_the_names_say_what_to_install():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", BLOCK + CHECK], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
