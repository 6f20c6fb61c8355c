"""WeaviateVectorizer and WeaviateStore against a hand-written fake of the weaviate-client v4 calls
they make.

No Weaviate server can run here, so the fake answers as Weaviate does: objects in a dict keyed by
UUID (``insert_many`` replaces an object with the same UUID), properties checked against the
collection's schema after the trip the client gives them (scalars as protobuf ``Struct`` numbers,
i.e. doubles; arrays as typed arrays), undeclared properties typed by auto-schema, a named
vector's length fixed by its first object, ``near_vector`` by cosine distance, the server's
default limit of 10 when none is given. Its methods take the real client's argument names
(checked against the installed client). What reaches Weaviate's REST API when the collection is
created is checked on the real ``Configure``/``Property`` objects' serialized form.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from google.protobuf.struct_pb2 import Struct
from weaviate.classes.config import Configure, VectorDistances
from weaviate.collections import Collection
from weaviate.collections.aggregations.over_all.executor import _OverAllExecutor
from weaviate.collections.classes.aggregate import AggregateReturn
from weaviate.collections.classes.batch import BatchObjectReturn, DeleteManyReturn
from weaviate.collections.classes.config import _CollectionConfigCreate
from weaviate.collections.classes.filters import _FilterValue, _Operator
from weaviate.collections.classes.internal import MetadataReturn, Object, QueryReturn
from weaviate.collections.collections.base import _CollectionsBase
from weaviate.collections.collections.executor import _CollectionsExecutor
from weaviate.collections.config.executor import _ConfigCollectionExecutor
from weaviate.collections.data.executor import _DataCollectionExecutor
from weaviate.collections.queries.fetch_objects.query.executor import _FetchObjectsQueryExecutor
from weaviate.collections.queries.near_vector.query.executor import _NearVectorQueryExecutor
from weaviate.exceptions import WeaviateInsertManyAllFailedError

from jinaclip_integrations import InputError, JinaCLIPError
from jinaclip_integrations.errors import StoreError
from jinaclip_integrations.ingest.chunking import ChunkOptions
from jinaclip_integrations.ingest.items import IngestReport, content_hash, content_id
from jinaclip_integrations.store import CollectionLayout, SearchHit
from jinaclip_integrations.weaviate import WeaviateStore, WeaviateVectorizer
from jinaclip_integrations.weaviate import store as store_module

ATOL = 1e-5  # the engine's own float noise between batch compositions
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "一只猫坐在沙发上。"]
DEFAULT_LIMIT = 10  # Weaviate's QUERY_DEFAULTS_LIMIT
#: what Weaviate's auto-schema makes of an undeclared property, by the value's Python type
AUTOSCHEMA = {str: "text", bool: "boolean", int: "number", float: "number"}


# -- the fake ------------------------------------------------------------------------------------


class FakeCollection:
    """One collection: its schema, its objects by UUID, every call made to it."""

    def __init__(self, name: str, vectors: dict[str, VectorDistances], description: str | None = None,
                 properties: dict[str, str] | None = None) -> None:  # fmt: skip
        self.name, self.description = name, description
        self.vectors = vectors  # named vector -> distance, what config.get() reports
        self.schema = dict(properties or {})  # property -> data type ("text", "int", "int[]"...)
        self.autoschema: dict[str, str] = {}  # the properties auto-schema added, and their types
        self.lengths: dict[str, int] = {}  # named vector -> length, fixed by the first object
        self.objects: dict[str, SimpleNamespace] = {}
        self.calls: list[tuple[str, dict]] = []
        self.failing_deletes = 0  # objects each delete_many fails to delete
        self.data = SimpleNamespace(insert_many=self.insert_many, delete_many=self.delete_many)
        self.query = SimpleNamespace(fetch_objects=self.fetch_objects, near_vector=self.near_vector)
        self.aggregate = SimpleNamespace(over_all=self.over_all)
        self.config = SimpleNamespace(get=self.get_config)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def get_config(self, simple=False):
        self.calls.append(("config.get", {}))
        vectors = {name: SimpleNamespace(vector_index_config=SimpleNamespace(distance_metric=distance))
                   for name, distance in self.vectors.items()}  # fmt: skip
        return SimpleNamespace(name=self.name, description=self.description, vector_config=vectors)

    def insert_many(self, objects):
        self.calls.append(("insert_many", {"objects": list(objects)}))
        errors, uuids = {}, {}
        for i, obj in enumerate(objects):
            try:
                properties = {key: self._received(key, value) for key, value in obj.properties.items()}
                for name, vector in obj.vector.items():
                    if len(vector) != self.lengths.setdefault(name, len(vector)):
                        raise ValueError(f"new node has a vector with length {len(vector)}. Existing nodes have vectors with length {self.lengths[name]}")  # fmt: skip
            except ValueError as exc:
                errors[i] = SimpleNamespace(message=str(exc), object_=obj)
                continue
            for key, value in obj.properties.items():
                if key not in self.schema:
                    self.schema[key] = self.autoschema[key] = AUTOSCHEMA[type(value)]
            self.objects[str(obj.uuid)] = SimpleNamespace(properties=properties, vector={k: list(v) for k, v in obj.vector.items()})  # fmt: skip
            uuids[i] = uuid.UUID(str(obj.uuid))
        if len(errors) == len(objects):  # an empty batch too, as the client reports it
            raise WeaviateInsertManyAllFailedError("Here is the set of all errors: " + "\n".join({e.message for e in errors.values()}))  # fmt: skip
        return BatchObjectReturn(errors=errors, uuids=uuids)

    def _received(self, key: str, value):
        """A property value as Weaviate gets it from the client's gRPC batch, checked against
        the schema (an undeclared property is typed by auto-schema)."""
        if not isinstance(value, list):
            struct = Struct()
            struct.update({key: value})
            value = struct[key]  # numbers arrive as doubles
        kind = self.schema.get(key) or AUTOSCHEMA[type(value)]
        if kind == "text" and isinstance(value, str):
            return value
        if kind == "int" and isinstance(value, float) and value.is_integer():
            return int(value)
        if kind == "number" and isinstance(value, float) or kind == "boolean" and isinstance(value, bool):
            return value
        if kind == "int[]" and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise ValueError(f"invalid {kind} property {key!r} on class {self.name!r}: the given value is {value!r}")

    def _matching(self, filters) -> list[str]:
        """The UUIDs of the objects a filter selects (the filters the store uses, nothing else)."""
        if filters is None:
            return sorted(self.objects)
        assert isinstance(filters, _FilterValue), f"the fake does not answer {filters!r}"
        if filters.target == "_id" and filters.operator == _Operator.CONTAINS_ANY:
            return sorted(set(map(str, filters.value)) & self.objects.keys())
        assert filters.operator == _Operator.EQUAL and isinstance(filters.target, str), f"the fake does not answer {filters!r}"  # fmt: skip
        return [key for key in sorted(self.objects) if self.objects[key].properties.get(filters.target) == filters.value]  # fmt: skip

    def _object(self, key: str, include_vector, return_properties, metadata: MetadataReturn | None = None) -> Object:
        stored = self.objects[key]
        properties = dict(stored.properties)
        if return_properties is not None:
            properties = {name: properties[name] for name in return_properties if name in properties}
        wanted = list(stored.vector) if include_vector is True else [include_vector] if isinstance(include_vector, str) else include_vector or []  # fmt: skip
        return Object(uuid=uuid.UUID(key), metadata=metadata or MetadataReturn(), properties=properties,
                      references=None, vector={name: stored.vector[name] for name in wanted}, collection=self.name)  # fmt: skip

    def delete_many(self, where, *, verbose=False, dry_run=False):
        self.calls.append(("delete_many", {"where": where}))
        keys = self._matching(where)
        failed = min(self.failing_deletes, len(keys))
        for key in keys[failed:]:
            del self.objects[key]
        return DeleteManyReturn(failed=failed, matches=len(keys), objects=None, successful=len(keys) - failed)

    def fetch_objects(self, *, limit=None, after=None, filters=None, include_vector=False, return_properties=None):
        self.calls.append(("fetch_objects", {"limit": limit, "after": after, "filters": filters,
                                             "include_vector": include_vector, "return_properties": return_properties}))  # fmt: skip
        keys = [key for key in self._matching(filters) if after is None or key > str(after)]
        return QueryReturn(objects=[self._object(key, include_vector, return_properties) for key in keys[: limit or DEFAULT_LIMIT]])  # fmt: skip

    def iterator(self, include_vector=False, *, return_properties=None, cache_size=None):
        """Pages of ``fetch_objects`` after the last UUID seen, as the client's iterator reads them."""
        self.calls.append(("iterator", {"return_properties": return_properties, "include_vector": include_vector}))
        after = None
        while page := self.fetch_objects(limit=cache_size or 100, after=after, include_vector=include_vector,
                                         return_properties=return_properties).objects:  # fmt: skip
            yield from page
            after = page[-1].uuid

    def near_vector(self, near_vector, *, limit=None, filters=None, target_vector=None, return_metadata=None):
        self.calls.append(("near_vector", {"near_vector": near_vector, "target_vector": target_vector, "limit": limit,
                                           "filters": filters, "return_metadata": return_metadata}))  # fmt: skip
        if len(near_vector) != self.lengths.get(target_vector, len(near_vector)):
            raise ValueError(f"vector lengths don't match: {len(near_vector)} vs {self.lengths[target_vector]}")
        query = np.asarray(near_vector) / np.linalg.norm(near_vector)
        distances = {}
        for key in self._matching(filters):
            vector = np.asarray(self.objects[key].vector[target_vector])
            distances[key] = 1 - float(query @ (vector / np.linalg.norm(vector)))
        nearest = sorted(distances, key=distances.get)[: limit or DEFAULT_LIMIT]
        return QueryReturn(objects=[self._object(key, False, None, MetadataReturn(distance=distances[key])) for key in nearest])  # fmt: skip

    def over_all(self, *, filters=None, total_count=True):
        self.calls.append(("over_all", {"filters": filters, "total_count": total_count}))
        return AggregateReturn(properties={}, total_count=len(self._matching(filters)) if total_count else None)


class FakeClient:
    """``client.collections.exists/create/get``, recording every call."""

    def __init__(self) -> None:
        self.store: dict[str, FakeCollection] = {}
        self.calls: list[tuple] = []
        self.collections = SimpleNamespace(exists=self.exists, create=self.create, get=self.get)

    def exists(self, name):
        self.calls.append(("exists", name))
        return name in self.store

    def create(self, name, *, description=None, properties=None, vector_config=None):
        self.calls.append(("create", name, {"description": description, "properties": properties, "vector_config": vector_config}))  # fmt: skip
        vectors = {vc.name: vc.vectorIndexConfig.distance for vc in vector_config or []}
        types = {p.name: p.dataType.value for p in properties or []}
        self.store[name] = FakeCollection(name, vectors, description, types)
        return self.store[name]

    def get(self, name):
        self.calls.append(("get", name))
        return self.store[name]


FAKES = [  # (the fake's method, the client's)
    (lambda: FakeClient().exists, _CollectionsExecutor.exists),
    (lambda: FakeClient().create, _CollectionsExecutor.create),
    (lambda: FakeClient().get, _CollectionsBase.get),
    (lambda: FakeCollection("C", {}).get_config, _ConfigCollectionExecutor.get),
    (lambda: FakeCollection("C", {}).insert_many, _DataCollectionExecutor.insert_many),
    (lambda: FakeCollection("C", {}).delete_many, _DataCollectionExecutor.delete_many),
    (lambda: FakeCollection("C", {}).fetch_objects, _FetchObjectsQueryExecutor.fetch_objects),
    (lambda: FakeCollection("C", {}).iterator, Collection.iterator),
    (lambda: FakeCollection("C", {}).near_vector, _NearVectorQueryExecutor.near_vector),
    (lambda: FakeCollection("C", {}).over_all, _OverAllExecutor.over_all),
]


@pytest.mark.parametrize(("fake", "real"), FAKES, ids=[real.__name__ for _, real in FAKES])
def test_the_fake_takes_the_clients_arguments(fake, real):
    """Each fake method takes a subset of the installed client's parameters, with the same kinds
    and defaults, and every parameter the client requires."""
    mine = inspect.signature(fake()).parameters
    theirs = {name: p for name, p in inspect.signature(real).parameters.items() if name != "self"}
    for name, parameter in mine.items():
        assert name in theirs, f"{real.__qualname__} has no parameter {name!r}"
        assert (parameter.kind, parameter.default) == (theirs[name].kind, theirs[name].default), name
    assert {n for n, p in theirs.items() if p.default is p.empty} <= set(mine)


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def make(client: FakeClient, engine, name: str = "Docs", **kwargs) -> WeaviateVectorizer:
    kwargs.setdefault("show_progress", False)
    return WeaviateVectorizer(client, name, engine=engine, **kwargs)


def stored_vectors(collection: FakeCollection, ids: list[str], name: str = "jina_clip") -> np.ndarray:
    return np.array([collection.objects[i].vector[name] for i in ids])


def snapshot(collection: FakeCollection) -> dict[str, tuple[dict, list[float]]]:
    """Every object of a collection: UUID -> (properties, vector)."""
    return {key: (obj.properties, obj.vector["jina_clip"]) for key, obj in collection.objects.items()}


def long_text(words: int, last: str) -> str:
    rng = random.Random(0)
    vocab = ["river", "stone", "cloud", "paper", "window", "garden", "silver", "market", "candle", "bridge"]
    return " ".join(rng.choice(vocab) for _ in range(words)).capitalize() + ". " + last + "\n"


#: every field the ingest pipeline writes, and how the collection declares it
DECLARED = {
    "text": ("text", None), "heading": ("text", None), "title": ("text", None),
    "modality": ("text", "field"), "source": ("text", "field"), "format": ("text", "field"),
    "chunk": ("int", None), "span": ("int[]", None), "page": ("int", None), "image": ("int", None),
    "file_hash": ("text", "field"), "chunking": ("text", "field"), "parts": ("int", None), "size": ("int", None),
    "mtime_ns": ("text", "field"), "content_hash": ("text", "field"),
}  # fmt: skip


# -- the collection ---------------------------------------------------------------------------------


def test_the_collection_is_created_with_a_cosine_vector_typed_properties_and_its_layout(client, engine):
    vectorizer = make(client, engine, dimensions=16)
    assert [call[0] for call in client.calls] == ["exists", "create", "get"]
    name, kwargs = client.calls[1][1:]
    schema = _CollectionConfigCreate(name=name, **kwargs)._to_dict()  # what weaviate-client sends to POST /v1/schema
    assert schema["class"] == "Docs"
    assert schema["vectorConfig"] == {
        "jina_clip": {
            "vectorizer": {"none": {}},
            "vectorIndexType": "hnsw",
            "vectorIndexConfig": {"distance": "cosine"},
        }
    }
    assert {p["name"]: (p["dataType"][0], p.get("tokenization")) for p in schema["properties"]} == DECLARED
    assert schema["description"].startswith("jina-clip embeddings of jina-clip-v2-tiny (16 dims), by jinaclip_integrations")  # fmt: skip
    assert vectorizer.layout == CollectionLayout("jina-clip-v2-tiny", 16, None, "default")
    assert repr(vectorizer) == "WeaviateVectorizer('Docs', model='jina-clip-v2-tiny', dim=16)"

    again = make(client, engine, dimensions=16)  # exists now: checked, not created again
    assert [call[0] for call in client.calls[3:]] == ["exists", "get"]
    assert again.store.collection is vectorizer.store.collection is client.store["Docs"]
    assert again.store.layout() == vectorizer.layout and WeaviateStore(client, "Nope").layout() is None


def test_an_existing_collection_must_have_the_cosine_vector_and_a_layout(client, engine):
    client.store["Other"] = FakeCollection("Other", {"other": VectorDistances.COSINE})
    with pytest.raises(StoreError, match=r"collection 'Other' has no named vector 'jina_clip' \(it has \['other'\]\)"):
        make(client, engine, "Other")
    client.store["Dot"] = FakeCollection("Dot", {"jina_clip": VectorDistances.DOT})
    with pytest.raises(StoreError, match=r"'Dot': the named vector 'jina_clip' uses dot distance, not cosine"):
        make(client, engine, "Dot")
    with pytest.raises(StoreError, match="'Other' was not made by jinaclip"):
        make(client, engine, "Other", vector_name="other")
    make(client, engine, "Mine", vector_name="other")  # made with another vector name: found by it
    with pytest.raises(StoreError, match=r"'Mine' has no named vector 'jina_clip' \(it has \['other'\]\); pass vector_name="):  # fmt: skip
        make(client, engine, "Mine")
    assert make(client, engine, "Mine", vector_name="other").store.collection is client.store["Mine"]


def test_a_collection_of_another_model_or_size_is_refused(client, engine):
    make(client, engine, dimensions=16)
    with pytest.raises(StoreError, match="holds jina-clip-v2-tiny vectors of 16 dimensions; this vectorizer stores jina-clip-v2-tiny at 64"):  # fmt: skip
        make(client, engine)
    with pytest.raises(StoreError, match="at 32"):
        make(client, engine, dimensions=32)
    collection = client.store["Docs"]
    description = collection.description
    collection.description = description.replace("jina-clip-v2-tiny", "jina-clip-v1")
    with pytest.raises(StoreError, match="holds jina-clip-v1 vectors of 16 dimensions"):
        make(client, engine, dimensions=16)
    collection.description = description[:-2]
    with pytest.raises(StoreError, match="description of Weaviate collection 'Docs' is damaged"):
        make(client, engine, dimensions=16)


def test_options_are_checked(client, engine):
    with pytest.raises(ValueError, match=r"dimensions 48 is not supported .* choose one of \[8, 16, 32, 64\]"):
        make(client, engine, dimensions=48)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make(client, engine, batch_size=0)
    with pytest.raises(ValueError, match="on_error"):
        make(client, engine, on_error="ignore")
    assert client.store == {}  # nothing was created for a vectorizer that could not be made


# -- texts and images in memory -------------------------------------------------------------------


def test_add_texts(client, engine):
    vectorizer = make(client, engine, batch_size=2)
    metadatas = [{"page": 1}, {"page": 2, "source": "book.pdf"}, {}]
    report = vectorizer.add_texts(TEXTS, metadatas=metadatas)
    again = vectorizer.add_texts(TEXTS, metadatas=metadatas)
    assert isinstance(report, IngestReport)
    assert (report.added, report.existing, again.added, again.existing) == (3, 0, 0, 3)
    collection = client.store["Docs"]
    ids = [content_id("text", t) for t in TEXTS]
    assert sorted(collection.objects) == sorted(ids) and vectorizer.count() == 3
    assert [len(kw["objects"]) for name, kw in collection.calls if name == "insert_many"] == [2, 1]  # nothing twice
    np.testing.assert_allclose(stored_vectors(collection, ids), engine.encode_text(TEXTS), atol=ATOL)
    hashes = [content_hash("text", t.encode()) for t in TEXTS]
    assert collection.objects[ids[0]].properties == {"text": TEXTS[0], "modality": "text", "page": 1, "content_hash": hashes[0]}  # fmt: skip
    assert collection.objects[ids[1]].properties == {"text": TEXTS[1], "modality": "text", "page": 2,
                                                     "source": "book.pdf", "content_hash": hashes[1]}  # fmt: skip
    assert collection.autoschema == {}  # every field was declared
    vectorizer.store.upsert([], np.empty((0, 64), dtype=np.float32), [])  # nothing to write: no request
    assert collection.names().count("insert_many") == 2


def test_add_images(client, engine, image_paths):
    vectorizer = make(client, engine, batch_size=2)
    report = vectorizer.add_images([str(p) for p in image_paths[:3]], metadatas=[{"album": "a"}] * 3)
    collection = client.store["Docs"]
    ids = [content_id("image", p.read_bytes()) for p in image_paths[:3]]
    assert report.added == 3 and sorted(collection.objects) == sorted(ids)
    np.testing.assert_allclose(stored_vectors(collection, ids), engine.encode_image(image_paths[:3]), atol=ATOL)
    assert collection.objects[ids[0]].properties == {
        "modality": "image", "source": os.path.abspath(image_paths[0]), "album": "a",
        "content_hash": content_hash("image", image_paths[0].read_bytes()),
    }  # fmt: skip
    assert collection.autoschema == {"album": "text"}  # metadata keys are left to auto-schema
    same = vectorizer.add_images([image_paths[0].read_bytes()])  # the same bytes: the same object
    assert (same.added, same.existing) == (0, 1)


def test_matryoshka_dimensions(client, engine, image_paths):
    vectorizer = make(client, engine, "Small", dimensions=16)
    vectorizer.add_texts(TEXTS)
    vectorizer.add_images(image_paths[:2])
    ids = [content_id("text", t) for t in TEXTS] + [content_id("image", p.read_bytes()) for p in image_paths[:2]]
    expected = np.vstack([engine.encode_text(TEXTS, truncate_dim=16), engine.encode_image(image_paths[:2], truncate_dim=16)])  # fmt: skip
    collection = client.store["Small"]
    np.testing.assert_allclose(stored_vectors(collection, ids), expected, atol=ATOL)

    # a stored vector comes back padded to the model's size: normalized, and cut back to itself
    padded = vectorizer.store.vectors(ids[:1])[ids[0]]
    assert padded.shape == (64,) and not padded[16:].any()
    np.testing.assert_allclose(vectorizer.store.fit(padded), expected[0], atol=1e-6)

    vectorizer.search_text("cat", modality="text")
    query = engine.encode_text(["cat"], task=engine.query_task, truncate_dim=16)[0]
    np.testing.assert_allclose(collection.calls[-1][1]["near_vector"], query, atol=ATOL)
    assert vectorizer.search_vector(query, limit=1, modality="text")[0].id == vectorizer.search_text("cat", limit=1, modality="text")[0].id  # fmt: skip
    with pytest.raises(ValueError, match="3 dimensions; the collection stores 16"):
        vectorizer.search_vector(np.ones(3))


def test_rejected_objects_raise_naming_the_first(client, engine):
    vectorizer = make(client, engine, "One", batch_size=2)
    with pytest.raises(JinaCLIPError, match=r"rejected all 1 objects of a batch, the first text '一只猫坐在沙发上。': .*invalid int property 'page'"):  # fmt: skip
        vectorizer.add_texts(TEXTS, metadatas=[{}, {}, {"page": "x"}])
    assert vectorizer.count() == 2  # the batch before it is stored
    vectorizer = make(client, engine, "Two", batch_size=2)
    with pytest.raises(JinaCLIPError, match=r"rejected 1 of 2 objects in a batch; the first is text of a.txt \(page x\): invalid int property 'page'"):  # fmt: skip
        vectorizer.add_texts(TEXTS, metadatas=[{}, {"page": "x", "source": "a.txt"}, {}])
    assert vectorizer.count() == 1  # the other object of the batch is stored


def test_bad_items_name_their_index(client, engine, image_paths):
    vectorizer = make(client, engine)
    with pytest.raises(InputError, match="invalid image at index 2: .*missing.png"):
        vectorizer.add_images([image_paths[0], image_paths[1], "missing.png"])
    with pytest.raises(InputError, match="invalid text at index 1: expected a string"):
        vectorizer.add_texts(["a", 3])


# -- search ---------------------------------------------------------------------------------------


def test_search_one_modality_and_both(client, engine, image_paths):
    vectorizer = make(client, engine, batch_size=2)
    vectorizer.add_texts(TEXTS)
    vectorizer.add_images(image_paths[:3])
    text_ids = [content_id("text", t) for t in TEXTS]
    image_ids = [content_id("image", p.read_bytes()) for p in image_paths[:3]]
    collection = client.store["Docs"]
    query = engine.encode_text(TEXTS[:1], task=engine.query_task)[0]

    texts = vectorizer.search_text(TEXTS[0], limit=2, modality="text")
    call = collection.calls[-1][1]
    np.testing.assert_allclose(call["near_vector"], query, atol=ATOL)
    assert (call["target_vector"], call["limit"], call["return_metadata"].distance) == ("jina_clip", 2, True)
    assert (call["filters"].target, call["filters"].value) == ("modality", "text")
    assert len(texts) == 2 and all(isinstance(hit, SearchHit) for hit in texts)
    cosines = stored_vectors(collection, [hit.id for hit in texts]) @ query
    np.testing.assert_allclose([hit.score for hit in texts], cosines, atol=ATOL)  # score = 1 - cosine distance
    assert [hit.cosine for hit in texts] == [hit.score for hit in texts] and texts[0].text in TEXTS

    merged = vectorizer.search_text(TEXTS[0], limit=6)  # one ranking of texts and images
    sides = [kw for name, kw in collection.calls[-2:] if name == "near_vector"]
    assert [(kw["filters"].value, kw["limit"]) for kw in sides] == [("text", 20), ("image", 20)]
    assert sorted(hit.id for hit in merged) == sorted(text_ids + image_ids)
    assert {hit.modality for hit in merged[:2]} == {"text", "image"}  # each side's best comes first
    assert [hit.score for hit in merged] == sorted((hit.score for hit in merged), reverse=True)
    assert all(0 < hit.score < 1 for hit in merged)  # fused scores
    np.testing.assert_allclose([hit.cosine for hit in merged], stored_vectors(collection, [hit.id for hit in merged]) @ query, atol=ATOL)  # fmt: skip

    images = vectorizer.search_image(image_paths[1], modality="image")
    assert [hit.modality for hit in images] == ["image"] * 3 and {hit.text for hit in images} == {None}
    assert images[0].id == image_ids[1] and images[0].score == pytest.approx(1, abs=ATOL)
    assert images[0].source == os.path.abspath(image_paths[1])
    by_image = vectorizer.search(image_paths[1], modality="text", limit=2)
    assert len(by_image) == 2 and {hit.id for hit in by_image} <= set(text_ids)
    stored = np.asarray(collection.objects[text_ids[2]].vector["jina_clip"])
    assert vectorizer.search_vector(stored, limit=1, modality="text")[0].id == text_ids[2]
    with pytest.raises(ValueError, match="modality must be"):
        vectorizer.search_vector(stored, modality="video")


# -- files and folders ------------------------------------------------------------------------------


def test_sync_follows_the_folder_and_ends_as_a_fresh_sync(tmp_path, engine, image_paths):
    """Chunked text, markdown and an image; then a deleted, an edited and a renamed file: the
    collection holds exactly what a sync into an empty one holds. The stored vectors are a
    Matryoshka prefix, so the edited file's unchanged chunks lend their stored vectors while its
    new chunk is embedded, in the same batch."""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "long.txt").write_text(long_text(120, "The zebra found its umbrella."), encoding="utf-8")
    (folder / "notes.md").write_text("# Notes\n\nBridges need inspections.\n", encoding="utf-8")
    shutil.copy(image_paths[0], folder / "photo.png")
    (folder / "tool.exe").write_bytes(b"MZ")
    chunking = ChunkOptions(max_tokens=128, overlap=16)
    client = FakeClient()
    vectorizer = make(client, engine, dimensions=16)

    first = vectorizer.sync(folder, chunking=chunking)
    assert (first.files["new"], first.failed) == (3, [])
    assert [(Path(s.path).name, s.reason) for s in first.ignored] == [("tool.exe", "unsupported")]
    stored = [payload for _, payload in vectorizer.store.scroll(list(DECLARED))]
    long = sorted((p for p in stored if p["source"] == str(folder / "long.txt")), key=lambda p: p["chunk"])
    text = (folder / "long.txt").read_text(encoding="utf-8")
    assert len(long) >= 3 and [p["chunk"] for p in long] == list(range(len(long)))
    assert all(text[p["span"][0] : p["span"][1]] == p["text"] for p in long)  # spans point into the file
    assert all(p["parts"] == len(long) and p["mtime_ns"] == os.stat(folder / "long.txt").st_mtime_ns for p in long)
    [notes] = [p for p in stored if p["source"] == str(folder / "notes.md")]
    assert (notes["heading"], notes["format"], notes["chunk"]) == ("Notes", "markdown", 0)
    [photo] = [p for p in stored if p["modality"] == "image"]
    assert photo["source"] == str(folder / "photo.png") and "chunk" not in photo
    assert client.store["Docs"].autoschema == {}
    assert vectorizer.sync(folder, chunking=chunking).files["unchanged"] == 3  # by size and mtime

    (folder / "notes.md").unlink()
    (folder / "photo.png").rename(folder / "picture.png")
    (folder / "long.txt").write_text(text.replace("The zebra found its umbrella.", "A new ending."), encoding="utf-8")
    (folder / "new.md").write_text("Fresh words.", encoding="utf-8")
    second = vectorizer.sync(folder, chunking=chunking)
    assert (second.files["new"], second.files["changed"], second.files["removed"]) == (2, 1, 2)
    assert 0 < second.reused < second.added  # lent vectors and embedded ones, stored together

    fresh = FakeClient()
    make(fresh, engine, dimensions=16).sync(folder, chunking=chunking)
    found, expected = snapshot(client.store["Docs"]), snapshot(fresh.store["Docs"])
    assert sorted(found) == sorted(expected)
    for key, (properties, vector) in expected.items():
        assert found[key][0] == properties
        np.testing.assert_allclose(found[key][1], vector, atol=ATOL)


def test_sources_delete_and_count(tmp_path, client, engine, image_paths, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha", encoding="utf-8")
    (folder / "b.md").write_text("# B\n\nbeta", encoding="utf-8")
    shutil.copy(image_paths[0], folder / "c.png")
    vectorizer = make(client, engine)
    vectorizer.sync(folder)
    vectorizer.add_texts(["in memory"])
    listed = [s.to_json() for s in vectorizer.sources()]
    assert listed == [
        {"source": str(folder / "a.txt"), "points": 1, "texts": 1, "images": 0, "format": "text"},
        {"source": str(folder / "b.md"), "points": 1, "texts": 1, "images": 0, "format": "markdown"},
        {"source": str(folder / "c.png"), "points": 1, "texts": 0, "images": 1, "format": "image"},
        {"source": None, "points": 1, "texts": 1, "images": 0, "format": None},
    ]
    collection = client.store["Docs"]
    iterated = [kw for name, kw in collection.calls if name == "iterator"][-1]
    assert (iterated["return_properties"], iterated["include_vector"]) == (["source", "modality", "format"], False)

    monkeypatch.setattr(store_module, "PAGE", 1)  # one object per request
    calls = len(collection.calls)
    assert vectorizer.delete(sources=[folder / "a.txt", folder / "b.md"], ids=[content_id("text", "in memory")]) == 3
    deletes = [kw["where"] for name, kw in collection.calls[calls:] if name == "delete_many"]
    assert [(f.target, f.operator, len(f.value)) for f in deletes] == [("_id", _Operator.CONTAINS_ANY, 1)] * 3
    assert vectorizer.count() == 1 and [s.source for s in vectorizer.sources()] == [str(folder / "c.png")]
    assert vectorizer.delete(sources=[folder / "missing.txt"], ids=[str(uuid.uuid4())]) == 0

    collection.failing_deletes = 1
    with pytest.raises(StoreError, match="failed to delete 1 of 1 objects"):
        vectorizer.delete(sources=[folder / "c.png"])


def test_add_files_adds_without_pruning(tmp_path, client, engine, image_paths):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(image_paths[0], folder / "good.png")
    (folder / "sub" / "note.txt").write_text("a note about cats", encoding="utf-8")
    (folder / "bad.png").write_bytes(b"this is not a png")
    vectorizer = make(client, engine, on_error="skip")

    report = vectorizer.add_files([folder])
    assert report.added == 2
    assert [(f.source, bool(f.reason)) for f in report.failed] == [(str(folder / "bad.png"), True)]
    assert vectorizer.count() == 2
    [hit] = vectorizer.search_text("a note about cats", modality="text")
    assert (hit.source, hit.text, hit.payload["chunk"]) == (str(folder / "sub" / "note.txt"), "a note about cats", 0)

    (folder / "sub" / "note.txt").unlink()
    assert vectorizer.add_files([folder]).removed == 0 and vectorizer.count() == 2  # kept: no pruning
    with pytest.raises(InputError, match=r"bad\.png"):
        vectorizer.add_files([folder], on_error="raise")
    with pytest.raises(ValueError, match="on_error must be"):
        vectorizer.add_files([folder], on_error="ignore")


# -- the client and the extra ---------------------------------------------------------------------


def test_configure_names_exist_in_the_installed_client():
    """The factory calls the store makes, spelled as weaviate-client 4.x spells them."""
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
for name, extra in (("WeaviateVectorizer", "weaviate"), ("WeaviateStore", "weaviate"), ("inference_router", "server")):
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
