"""QdrantVectorizer on the embedded engine (qdrant-edge-py) and on qdrant-client local mode.

Vectors are compared with the engine's own output (atol 1e-6: they are the same float32 numbers
after a round trip through the store), and rankings with an exact numpy search over them.
Following folders (sync, prune, chunking, documents) is tested in ``test_sync.py``.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import uuid
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient, models

from jinaclip_integrations import InputError, StoreError
from jinaclip_integrations.qdrant import FULL, SHORT, QdrantVectorizer, default_short_dim

DATA = Path(__file__).parents[1] / "examples" / "data"
BACKENDS = ["edge", "memory", "local-path"]
PRESETS = ["default", "int8", "binary"]


@pytest.fixture
def data(tmp_path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(DATA, folder)
    return folder


def make(backend: str, tmp_path: Path, engine, **kwargs) -> QdrantVectorizer:
    """A vectorizer on a fresh store; the same (backend, tmp_path) reopens the same store."""
    kwargs.setdefault("show_progress", False)
    if backend == "edge":
        return QdrantVectorizer(tmp_path / "store", "things", engine=engine, **kwargs)
    client = QdrantClient(":memory:") if backend == "memory" else QdrantClient(path=str(tmp_path / "local"))
    return QdrantVectorizer(client, "things", engine=engine, **kwargs)


def stored_vectors(vectorizer: QdrantVectorizer) -> dict[str, dict[str, np.ndarray]]:
    """Every point's named vectors, by its source, read back from the store."""
    store = vectorizer.store
    if hasattr(store, "client"):
        records, _ = store.client.scroll(store.name, limit=1000, with_vectors=True)
    else:
        records, _ = store.shard.scroll(store.edge.ScrollRequest(limit=1000, with_vector=True, with_payload=True))
    return {r.payload["source"]: {k: np.asarray(v, dtype=np.float32) for k, v in r.vector.items()} for r in records}


def expected_vectors(engine, folder: Path) -> dict[str, np.ndarray]:
    """The engine's vector of each file, by path: a short text file is one chunk, its text
    without the whitespace around it."""
    files = sorted(p for p in folder.iterdir())
    texts = [p for p in files if p.suffix == ".txt"]
    images = [p for p in files if p.suffix == ".png"]
    out = {}
    for path, vector in zip(texts, engine.encode_text([p.read_text().strip() for p in texts]), strict=True):
        out[str(path)] = vector
    for path, vector in zip(images, engine.encode_image(images), strict=True):
        out[str(path)] = vector
    return out


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_index_twice_stores_each_item_once_with_the_engines_vectors(backend, preset, tmp_path, data, engine):
    vectorizer = make(backend, tmp_path, engine, preset=preset)
    first = vectorizer.add_files([data])
    second = vectorizer.add_files([data])
    assert (first.added, first.existing, first.failed, first.files["new"]) == (6, 0, [], 6)
    assert (second.added, second.existing, second.failed, second.files["unchanged"]) == (0, 0, [], 6)
    assert vectorizer.count() == 6
    expected = expected_vectors(engine, data)
    stored = stored_vectors(vectorizer)
    assert set(stored) == set(expected)
    short_dim = vectorizer.layout.short_dim
    assert (short_dim is not None) == (preset == "default")
    for source, vector in expected.items():
        np.testing.assert_allclose(stored[source][FULL], vector, atol=1e-6)
        if short_dim is not None:
            short = vector[:short_dim] / np.linalg.norm(vector[:short_dim])
            np.testing.assert_allclose(stored[source][SHORT], short, atol=1e-6)
    vectorizer.close()


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_search_ranks_as_exact_search_and_filters_by_modality(backend, preset, tmp_path, data, engine):
    vectorizer = make(backend, tmp_path, engine, preset=preset)
    vectorizer.add_files([data])
    expected = expected_vectors(engine, data)
    sources = list(expected)
    matrix = np.stack([expected[i] for i in sources])
    query = engine.encode_text(["a red circle"], task="retrieval.query")[0]
    cosines = matrix @ query
    for modality in ("text", "image"):  # one modality: ranked by cosine, as an exact search
        mine = [i for i, source in enumerate(sources) if source.endswith(".txt" if modality == "text" else ".png")]
        order = sorted(mine, key=lambda i: -cosines[i])
        hits = vectorizer.search_text("a red circle", limit=2, modality=modality)
        assert [h.source for h in hits] == [sources[i] for i in order[:2]]
        np.testing.assert_allclose([h.score for h in hits], cosines[order[:2]], atol=1e-4)
        assert [h.cosine for h in hits] == [h.score for h in hits]
    merged = vectorizer.search_text("a red circle", limit=6)  # both: one ranking by the fused score
    assert sorted(h.source for h in merged) == sorted(sources)
    assert [h.score for h in merged] == sorted((h.score for h in merged), reverse=True)
    assert all(0 < h.score < 1 for h in merged)
    np.testing.assert_allclose(
        [h.cosine for h in merged], [cosines[sources.index(h.source)] for h in merged], atol=1e-4
    )
    assert {h.modality for h in merged[:2]} == {"text", "image"}  # each side's best comes first
    images = vectorizer.search_image(data / "red_circle.png", limit=10, modality="image")
    assert [h.modality for h in images] == ["image"] * 3
    assert images[0].source == str(data / "red_circle.png") and images[0].score == pytest.approx(1.0, abs=1e-4)
    texts = vectorizer.search_text("circles", limit=10, modality="text")
    assert {h.source for h in texts} == {str(p) for p in data.glob("*.txt")}
    assert all(h.text == Path(h.source).read_text().strip() for h in texts)
    vectorizer.close()


@pytest.mark.parametrize("backend", ["edge", "local-path"])
def test_reopened_store_keeps_points_and_layout(backend, tmp_path, data, engine):
    with make(backend, tmp_path, engine, preset="int8") as vectorizer:
        vectorizer.add_files([data])
    if backend == "local-path":
        vectorizer.store.client.close()  # a local path is locked by its client
    reopened = make(backend, tmp_path, engine)  # preset None: keeps the stored one
    assert reopened.layout.preset == "int8" and reopened.count() == 6
    assert reopened.add_files([data]).files["unchanged"] == 6
    with pytest.raises(StoreError, match="another layout"):
        if backend == "local-path":
            reopened.store.client.close()
        make(backend, tmp_path, engine, preset="default")


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupted_ingest_resumes_without_loss_or_duplicates(backend, tmp_path, data, engine, monkeypatch):
    vectorizer = make(backend, tmp_path, engine, batch_size=2)
    calls = []
    real_upsert = vectorizer.store.upsert

    def crash_on_second_batch(ids, vectors, payloads):
        calls.append(len(ids))
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a Ctrl-C mid-run looks like
        real_upsert(ids, vectors, payloads)

    monkeypatch.setattr(vectorizer.store, "upsert", crash_on_second_batch)
    with pytest.raises(KeyboardInterrupt):
        vectorizer.add_files([data])
    assert vectorizer.count() == 2
    monkeypatch.setattr(vectorizer.store, "upsert", real_upsert)
    embedded = []
    real_embed = engine.encode_text
    monkeypatch.setattr(engine, "encode_text", lambda t, **kw: embedded.extend(t) or real_embed(t, **kw))
    report = vectorizer.add_files([data])
    assert (report.added, report.files["unchanged"]) == (4, 2)
    assert vectorizer.count() == 6
    assert len(embedded) == 2  # the stored text was not embedded again
    vectorizer.close()


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_bad_files_are_reported_by_name_or_stop_the_run(backend, tmp_path, data, engine):
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (data / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (data / "notes.pdf").write_bytes(b"%PDF-1.4")
    (data / "tool.exe").write_bytes(b"MZ")
    vectorizer = make(backend, tmp_path, engine, on_error="skip")
    report = vectorizer.add_files([data])
    assert report.added == 6 and vectorizer.count() == 6
    assert sorted(Path(f.source).name for f in report.failed) == ["broken.png", "latin1.txt", "notes.pdf"]
    assert "not UTF-8" in next(f.reason for f in report.failed if f.source.endswith("latin1.txt"))
    assert "damaged PDF" in next(f.reason for f in report.failed if f.source.endswith("notes.pdf"))
    assert [(s.path, s.reason) for s in report.ignored] == [(str(data / "tool.exe"), "unsupported")]


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_raise_stops_at_the_bad_file_and_keeps_what_was_written(backend, tmp_path, data, engine):
    (data / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # sorts last: the 4th batch of 2
    vectorizer = make(backend, tmp_path, engine, batch_size=2)
    with pytest.raises(InputError, match="zz_broken.png") as info:
        vectorizer.add_files([data])
    assert info.value.kind == "image"
    assert vectorizer.count() == 6
    (data / "zz_broken.png").unlink()
    report = vectorizer.add_files([data])
    assert (report.added, report.files["unchanged"], vectorizer.count()) == (0, 6, 6)


def test_explicit_paths_must_exist_and_be_supported(tmp_path, data, engine):
    vectorizer = make("memory", tmp_path, engine)
    with pytest.raises(InputError, match="does not exist"):
        vectorizer.add_files([data / "missing.png"])
    (data / "x.exe").write_bytes(b"MZ")
    with pytest.raises(InputError, match="not a supported file type"):
        vectorizer.add_files([data / "x.exe"])
    assert vectorizer.count() == 0


def test_texts_and_images_in_memory_with_metadata(tmp_path, engine):
    vectorizer = make("edge", tmp_path, engine)
    report = vectorizer.add_texts(
        ["a cat", "a dog", "a cat"], metadatas=[{"page": 1}, {"page": 2, "source": "b.pdf"}, {}]
    )
    assert (report.added, report.existing) == (2, 1)  # the repeated text is one point
    vectorizer.add_images([DATA / "red_circle.png", (DATA / "red_circle.png").read_bytes()])  # same bytes: one point
    assert vectorizer.count() == 3
    hit = vectorizer.search_text("a dog", limit=1, modality="text")[0]
    assert (hit.text, hit.source, hit.payload["page"]) == ("a dog", "b.pdf", 2)
    with pytest.raises(InputError, match="index 1"):
        vectorizer.add_texts(["fine", 3])
    with pytest.raises(ValueError, match="metadatas"):
        vectorizer.add_texts(["a"], metadatas=[{}, {}])


def test_options_are_checked(tmp_path, engine):
    with pytest.raises(ValueError, match="preset"):
        make("memory", tmp_path, engine, preset="fast")
    with pytest.raises(ValueError, match="short_dim 12"):
        make("memory", tmp_path, engine, short_dim=12)
    with pytest.raises(ValueError, match="on_error"):
        make("memory", tmp_path, engine, on_error="ignore")
    vectorizer = make("memory", tmp_path, engine, short_dim=32)
    assert vectorizer.layout.short_dim == 32 and default_short_dim(engine) == 8  # 64 // 8
    with pytest.raises(ValueError, match="dimensions"):
        vectorizer.search_vector(np.ones(3))
    with pytest.raises(ValueError, match="modality"):
        vectorizer.search_text("x", modality="video")


def test_a_foreign_collection_is_refused(engine):
    client = QdrantClient(":memory:")
    client.create_collection("things", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE))
    with pytest.raises(StoreError, match="not made by jinaclip"):
        QdrantVectorizer(client, "things", engine=engine)


def test_store_configs_follow_the_preset(tmp_path, engine):
    """The collection each backend is asked for: what the presets promise (a real server and the
    embedded engine honour it; local mode stores it without using it)."""
    client = QdrantClient(":memory:")
    for preset in PRESETS:
        QdrantVectorizer(client, preset, engine=engine, preset=preset)
        QdrantVectorizer(tmp_path, preset, engine=engine, preset=preset).close()
    vectors = client.get_collection("default").config.params.vectors
    assert vectors[FULL].hnsw_config.m == 0 and vectors[SHORT].size == 8  # only the short vector is indexed
    for preset, kind in (("int8", "scalar"), ("binary", "binary")):
        full = client.get_collection(preset).config.params.vectors
        assert set(full) == {FULL} and full[FULL].on_disk is True
        assert getattr(full[FULL].quantization_config, kind).always_ram is True
    edge = json.loads((tmp_path / "default" / "edge_config.json").read_text())["vectors"]
    assert edge[FULL]["hnsw_config"]["m"] == 0 and edge[SHORT]["size"] == 8
    for preset, kind in (("int8", "scalar"), ("binary", "binary")):
        full = json.loads((tmp_path / preset / "edge_config.json").read_text())["vectors"]
        assert set(full) == {FULL} and full[FULL]["memory"] == "cold"
        assert full[FULL]["quantization_config"][kind]["memory"] == "pinned"


class ShardSpy:
    """An embedded shard that records each query request before running it."""

    def __init__(self, shard) -> None:
        self.shard, self.requests = shard, []

    def query(self, request):
        self.requests.append(request)
        return self.shard.query(request)

    def __getattr__(self, name: str):
        return getattr(self.shard, name)


@pytest.mark.parametrize("preset", PRESETS)
def test_search_plan_prefetches_on_short_and_rescores_on_full(preset, engine, monkeypatch):
    client = QdrantClient(":memory:")
    vectorizer = QdrantVectorizer(client, "things", engine=engine, preset=preset)
    vectorizer.add_texts(["a", "b"])
    calls = []
    real = client.query_points
    monkeypatch.setattr(client, "query_points", lambda *a, **kw: calls.append(kw) or real(*a, **kw))
    for limit, candidates in ((3, 100), (30, 300)):  # 10x the results, at least 100
        calls.clear()
        vectorizer.search_text("a", limit=limit, modality="text")
        (call,) = calls
        assert call["using"] == FULL and len(call["query"]) == 64 and call["limit"] == limit
        assert call["query_filter"].must[0].match.value == "text"
        if preset == "default":
            assert call["prefetch"].using == SHORT and len(call["prefetch"].query) == 8
            assert call["prefetch"].limit == candidates and call["prefetch"].filter == call["query_filter"]
        else:
            assert call.get("prefetch") is None


def nearest(query) -> tuple[str, np.ndarray]:
    """The vector name and vector of the embedded engine's ``Query.Nearest`` (read back from a
    request it has no getters: its repr has both)."""
    found = re.fullmatch(r'Query\.Nearest\(query=\[([^\]]*)\], using="(\w+)"\)', repr(query))
    assert found, repr(query)
    return found[2], np.array(found[1].split(", "), dtype=np.float32)


@pytest.mark.parametrize("preset", PRESETS)
def test_search_plan_on_the_embedded_engine(preset, tmp_path, engine):
    """The same plan as the request the embedded engine (the default store) is given."""
    vectorizer = QdrantVectorizer(tmp_path, "things", engine=engine, preset=preset)
    vectorizer.add_texts(["a", "b"])
    spy = vectorizer.store.shard = ShardSpy(vectorizer.store.shard)
    query = engine.encode_text(["a"], task=engine.query_task)[0]
    for limit, candidates in ((3, 100), (30, 300)):
        spy.requests.clear()
        vectorizer.search_vector(query, limit=limit, modality="text")
        (request,) = spy.requests
        using, vector = nearest(request.query)
        assert using == FULL and request.limit == limit
        np.testing.assert_allclose(vector, query, atol=1e-6)
        assert 'key="modality"' in repr(request.filter) and 'MatchValue(value="text")' in repr(request.filter)
        if preset == "default":
            (prefetch,) = request.prefetches
            using, vector = nearest(prefetch.query)
            assert using == SHORT and prefetch.limit == candidates
            np.testing.assert_allclose(vector, query[:8] / np.linalg.norm(query[:8]), atol=1e-6)
            assert repr(prefetch.filter) == repr(request.filter)
        else:
            assert request.prefetches == []
            assert request.params.quantization.rescore is True
            assert request.params.quantization.oversampling == {"int8": 2.0, "binary": 8.0}[preset]
    vectorizer.close()


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("backend", ["edge", "memory"])
def test_the_short_vector_prefetch_prunes_and_rescoring_ranks(backend, tmp_path, engine):
    """500 points, 100 prefetched for 10 results: a search returns the best by full cosine among
    the 100 best by short cosine (of its modality), as numpy finds it. Matryoshka-like points (the
    first dims carry the most) keep the recall against an exact search; decoys close to the query
    in the dims after the short prefix and far in it hold the exact top 10, so a search that skips
    the short stage, prefetches on the full vector or prefetches too few gives other results."""
    rng = np.random.default_rng(0)
    dim, short_dim, limit, candidates, generic, decoys = 64, 8, 10, 100, 480, 20
    weights = np.where(np.arange(dim) < short_dim, 2.0, 1.0)
    query = unit(rng.standard_normal(dim) * weights)
    points = unit(rng.standard_normal((generic, dim)) * weights)
    near = np.concatenate([-0.1 * query[:short_dim], query[short_dim:]])
    vectors = np.concatenate([points, unit(near + 0.01 * rng.standard_normal((decoys, dim)))]).astype(np.float32)
    modality = np.array(["text", "image"] * (generic // 2) + ["text"] * decoys)
    full = vectors @ query
    short = unit(vectors[:, :short_dim]) @ unit(query[:short_dim])
    texts = np.flatnonzero(modality == "text")

    def rescored(pool: np.ndarray) -> list[int]:
        return sorted(pool.tolist(), key=lambda i: -full[i])[:limit]

    by_short = texts[np.argsort(-short[texts])]
    expected = rescored(by_short[:candidates])
    exact = rescored(texts[texts < generic])  # an exact search, decoys left out
    assert len(set(expected) & set(exact)) >= 0.9 * limit  # the recall the prefetch keeps
    wrong = {
        "no short stage, or a prefetch on the full vector": rescored(texts),
        "a prefetch of `limit` candidates": rescored(by_short[:limit]),
    }
    assert set(rescored(texts)) <= set(range(generic, generic + decoys))  # the decoys hold the exact top
    assert all(plan != expected for plan in wrong.values())

    vectorizer = make(backend, tmp_path, engine)
    assert vectorizer.layout.short_dim == short_dim
    ids = [str(uuid.UUID(int=i + 1)) for i in range(len(vectors))]
    payloads = [{"modality": str(m), "source": f"point {i}"} for i, m in enumerate(modality)]
    vectorizer.store.upsert(ids, vectors, payloads)  # the store's own write: no engine in between
    vectorizer.store.optimize()
    hits = vectorizer.search_vector(query, limit=limit, modality="text")
    assert [ids.index(h.id) for h in hits] == expected
    np.testing.assert_allclose([h.cosine for h in hits], full[expected], atol=1e-5)
    vectorizer.close()


def test_same_image_given_any_way_is_one_point(tmp_path, engine):
    vectorizer = make("memory", tmp_path, engine)
    path = DATA / "red_circle.png"
    data = path.read_bytes()
    b64 = base64.b64encode(data).decode()
    report = vectorizer.add_images([path, str(path), f"file://{path}", data, b64, f"data:image/png;base64,{b64}"])
    assert (report.added, report.existing, report.failed) == (1, 5, [])
    assert vectorizer.count() == 1


def test_in_memory_images_with_other_pixels_or_palettes_get_other_ids(tmp_path, engine):
    from PIL import Image

    red, green = Image.new("P", (8, 8)), Image.new("P", (8, 8))
    red.putpalette([255, 0, 0] * 256)
    green.putpalette([0, 255, 0] * 256)
    gray = Image.new("L", (8, 8))
    array = np.zeros((8, 8), dtype=np.uint8)  # the same bytes as `gray`
    vectorizer = make("memory", tmp_path, engine)
    report = vectorizer.add_images([red, green, gray, np.stack([array] * 3, axis=-1)])
    assert (report.added, report.existing) == (4, 0)


def test_bad_in_memory_items_raise_or_are_skipped(tmp_path, engine):
    vectorizer = make("memory", tmp_path, engine)
    long_b64 = base64.b64encode((DATA / "red_circle.png").read_bytes()).decode()
    assert len(long_b64) > 255  # too long for a file name: probing it as a path must not raise
    with pytest.raises(InputError, match="index 1: 'no/such.png' is not an existing file"):
        vectorizer.add_images([DATA / "red_circle.png", "no/such.png"])
    with pytest.raises(InputError, match="index 0: 'photos/IMG_1234' is not an existing file"):
        vectorizer.add_images(["photos/IMG_1234"])  # base64 characters only, but a missing file
    with pytest.raises(InputError, match="index 0: .*lone surrogate"):
        vectorizer.add_texts(["bad\ud800"])
    with pytest.raises(InputError, match="index 1: metadata is not JSON"):
        vectorizer.add_texts(["a", "b"], metadatas=[{}, {"when": object()}])
    skipping = make("memory", tmp_path / "skip", engine, on_error="skip")
    report = skipping.add_images([b"not an image", "no/such.png", long_b64, b"not an image", DATA / "red_circle.png"])
    # the repeated bytes fail with their first copy; the file is the base64 image again
    assert (report.added, report.existing, len(report.failed)) == (1, 1, 3)
    assert "no/such.png" in [f.source for f in report.failed]
    assert skipping.count() == 1


def test_single_path_and_store_arguments(tmp_path, data, engine):
    vectorizer = make("memory", tmp_path, engine)
    report = vectorizer.add_files(str(data))  # one folder as a string, not its characters
    assert report.files["new"] == 6 and report.added == 6
    for bad in (":memory:", "http://localhost:6333"):
        with pytest.raises(ValueError, match="QdrantClient"):
            QdrantVectorizer(bad, engine=engine)
    with pytest.raises(ValueError, match="short_dim applies to the 'default' preset"):
        make("memory", tmp_path, engine, preset="int8", short_dim=8)
    edge = make("edge", tmp_path, engine)
    edge.close()
    with pytest.raises(StoreError, match="closed"):
        edge.count()


def test_a_store_of_another_model_is_refused(tmp_path, engine):
    client = QdrantClient(":memory:")
    QdrantVectorizer(client, "things", engine=engine)
    meta = client.get_collection("things").config.metadata
    assert meta["jinaclip_model"] == "jina-clip-v2-tiny"
    client.update_collection("things", metadata={**meta, "jinaclip_model": "jina-clip-v1"})
    with pytest.raises(StoreError, match="jina-clip-v1"):
        QdrantVectorizer(client, "things", engine=engine)
    QdrantVectorizer(tmp_path, "edge", engine=engine).close()
    (tmp_path / "edge" / "jinaclip.json").write_text("{not json")
    with pytest.raises(StoreError, match="damaged"):
        QdrantVectorizer(tmp_path, "edge", engine=engine)
