"""The Ray Data job (``jinaclip_integrations.ray``) on one local Ray instance (2 CPUs, no GPU) and the tiny model: it
stores what ``QdrantVectorizer.sync`` stores from the same folder (IDs, payloads, vectors within 1e-5) and reports
the same, follows the folder's edits, and neither a re-run nor a retried batch writes anything twice.

Stores are compared as in ``test_sync``; its long text and PDF are reused.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import pickle
import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image
from qdrant_client import QdrantClient
from test_sync import HTML, assert_same_store, long_text, points, three_page_pdf

from conftest import V2_TINY
from jinaclip_integrations import InputError, JinaCLIPEngine, StoreError, cli, settings
from jinaclip_integrations.ingest.chunking import ChunkOptions
from jinaclip_integrations.ingest.items import IngestReport
from jinaclip_integrations.ingest.sync import fit_chunking
from jinaclip_integrations.qdrant import QdrantVectorizer, named_vectors, open_store
from jinaclip_integrations.qdrant.client import ClientStore
from jinaclip_integrations.ray import RayIndexResult, index_with_ray, job, targets
from jinaclip_integrations.ray.listing import list_files
from jinaclip_integrations.ray.parquet import PARQUET_COLUMNS, ParquetStore
from jinaclip_integrations.ray.stages import Embedder, preprocess_images, read_files
from jinaclip_integrations.store import CollectionLayout, VectorStore

JOB = {"model_name": str(V2_TINY), "batch_size": 64, "show_progress": False}
BAD = {"corrupt.jpg": "cannot decode image", "latin1.txt": "not UTF-8 text"}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def make_folder(root: Path, *, bad: bool = True) -> Path:
    """A long text (several chunks), a PDF (texts and an image), an HTML page, a markdown note, small photos in
    nested folders, what the walk leaves out (hidden, VCS, node_modules, unsupported) and, with ``bad``, two bad
    files."""
    docs = root / "docs"
    rng = np.random.default_rng(0)
    for i in range(8):
        path = docs / f"photos/{i % 3}/img{i}.{'png' if i % 2 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        side = int(rng.integers(16, 65))
        Image.fromarray(np.clip(rng.integers(0, 256, 3) + rng.integers(-20, 21, (side, side, 3)), 0, 255).astype(np.uint8)).save(path)  # fmt: skip
    (docs / "long.txt").write_text(long_text(2500), encoding="utf-8")
    (docs / "bridges.pdf").write_bytes(three_page_pdf())
    (docs / "page.html").write_text(HTML, encoding="utf-8")
    (docs / "notes").mkdir()
    (docs / "notes" / "a.md").write_text("# Notes\n\nBridges need inspections.\n", encoding="utf-8")
    (docs / ".git" / "objects").mkdir(parents=True)
    (docs / ".git" / "objects" / "x.txt").write_text("git internals", encoding="utf-8")
    (docs / "node_modules").mkdir()
    (docs / "node_modules" / "readme.md").write_text("a dependency", encoding="utf-8")
    (docs / ".secret.md").write_text("a hidden note", encoding="utf-8")
    (docs / "data.bin").write_bytes(b"\0\1")
    if bad:
        add_bad_files(docs)
    return docs


def add_bad_files(docs: Path) -> None:
    """A corrupt image and a text that is not UTF-8 (see BAD)."""
    (docs / "corrupt.jpg").write_bytes(b"not a jpeg")
    (docs / "latin1.txt").write_bytes("café".encode("latin-1"))


def synced(engine, docs: Path, store: Path) -> IngestReport:
    """What the single-process path reports for ``docs`` into the embedded store ``store``."""
    with QdrantVectorizer(store, engine=engine, on_error="skip", show_progress=False) as vectorizer:
        return vectorizer.sync([docs])


def same_report(found: IngestReport, expected: IngestReport) -> None:
    """The same counts, failed sources and ignored files; the job lends no vectors, so it embeds all it adds."""
    fields = ("added", "existing", "removed", "chunks", "files", "ignored")
    assert {f: getattr(found, f) for f in fields} == {f: getattr(expected, f) for f in fields}
    assert sorted(f.source for f in found.failed) == sorted(f.source for f in expected.failed)
    assert found.reused == 0


def test_encode_pixels_embeds_cropped_images_as_encode_image_does(engine, tmp_path):
    images = sorted((make_folder(tmp_path, bad=False) / "photos").rglob("*.*"))[:5]
    crops = np.stack([engine.preprocessor.crop(path.read_bytes(), i, None) for i, path in enumerate(images)])
    np.testing.assert_allclose(engine.encode_pixels(crops, batch_size=2), engine.encode_image(images), atol=1e-6)
    short = engine.encode_pixels(crops, truncate_dim=16)
    np.testing.assert_allclose(short, engine.encode_image(images, truncate_dim=16), atol=1e-6)
    with pytest.raises(ValueError, match="crops must be uint8 of shape"):
        engine.encode_pixels(crops[:, :, :8])


def test_uris_are_listed_by_the_walks_rules(tmp_path):
    docs = make_folder(tmp_path)

    def same(uri_options: dict, *paths: str) -> None:
        local, uris = list_files([docs / p for p in paths], **uri_options), list_files([f"file://{docs}/{p}" for p in paths], **uri_options)  # fmt: skip
        assert sorted(f.source for f in uris.files) == sorted(f"file://{f.source}" for f in local.files)
        assert {(f.source.removeprefix("file://"), f.size, f.mtime_ns) for f in uris.files} == {(f.source, f.size, f.mtime_ns) for f in local.files}  # fmt: skip
        assert sorted((s.path, s.reason) for s in uris.skipped) == sorted((f"file://{s.path}", s.reason) for s in local.skipped)  # fmt: skip

    same({}, "photos/**/*.png", "long.txt", "notes")
    (docs / "photos" / "2" / "__pycache__").mkdir()  # a glob of the walk reaches into it (not a URI's)
    (docs / "photos" / "2" / "__pycache__" / "x.png").write_bytes(b"")
    same({}, "")
    assert {s.reason for s in list_files([f"file://{docs}"]).skipped} == {"vcs", "node_modules", "hidden", "unsupported", "cache"}  # fmt: skip
    same({"exclude": ["photos/1/", "*.pdf"]}, "")
    same({"include": ["*.md", "photos/0"]}, "")

    listing = list_files([f"file://{docs}/photos/**/*.png", f"file://{docs}/notes", f"file://{docs}/long.txt"])
    assert [listing.covers(f"file://{docs}/{p}") for p in ("photos/0/new.png", "photos/0/new.jpg", "notes/b.md", "long.txt", "other.txt")] == [True, False, True, True, False]  # fmt: skip
    assert listing.filesystem.type_name == "local" and listing.files[0].path == str(docs / "photos/0/img3.png")
    for missing, message in ((f"file://{docs}/nothing", "does not exist"), (f"file://{docs}/*.gif", "matches no file"),
                             (f"file://{docs}/data.bin", "not a supported file type")):  # fmt: skip
        with pytest.raises(InputError, match=message):
            list_files([missing])
    with pytest.raises(ValueError, match="either local paths or URIs, not both: 'notes' is local"):
        list_files([f"file://{docs}/photos", "notes"])


def test_the_stages_into_a_qdrant_server_as_workers_run_them(tmp_path, engine, monkeypatch):
    """The read, decode, embed and write stages for a Qdrant URL, run here on one batch with an in-memory client
    standing in for the server (no Qdrant server runs here): the driver's target is the package's own ClientStore, the
    write tasks get a picklable recipe, reopen the collection from it once per process and write the single-process
    points, and a second pass, given what is stored, finds every stored file unchanged. A URI's file is read through
    its pyarrow filesystem into the same chunks."""
    docs = make_folder(tmp_path)
    expected = QdrantClient(":memory:")
    QdrantVectorizer(expected, "docs", engine=engine, on_error="skip", show_progress=False).sync([docs])
    client = QdrantClient(":memory:")
    monkeypatch.setattr(targets, "connect", lambda url, api_key: client)
    spec = JinaCLIPEngine.from_pretrained(V2_TINY, weights=False)
    options = fit_chunking(ChunkOptions(), spec.max_positions)
    embedder = Embedder(str(V2_TINY), "cpu", "float32", options.max_tokens + 2)
    files = list_files([docs]).files
    server = targets.RemoteQdrant("http://qdrant:6333", "k", "docs")
    with ExitStack() as stack:
        driver = targets.open_target(stack, None, server, None, "docs")
        layout = driver.open(targets.target_layout(driver, spec, None, None))
        recipe = pickle.loads(pickle.dumps(targets.task_writer(driver, server, layout)))  # as the write tasks get it
        assert isinstance(driver, ClientStore) and targets.removes_points(driver)
        assert recipe == dataclasses.replace(server, layout=layout) and driver.layout() == layout
        assert isinstance(recipe.open(), ClientStore) and recipe.open() is recipe.open()  # once per worker process

        def stages(stored: dict[str, list[str]]) -> list[str]:
            rows = [{"source": f.source, "path": f.path, "size": f.size, "mtime_ns": f.mtime_ns, "position": i,
                     "stored": stored.get(f.source)} for i, f in enumerate(files)]  # fmt: skip
            table = read_files(pa.Table.from_pylist(rows), filesystem=None, spec=spec, options=options, removes=True)
            table = embedder(preprocess_images(table, preprocessor=spec.preprocessor, max_pixels=spec.max_image_pixels))  # fmt: skip
            written = targets.write_task(table, target=recipe).select(["kind", "status"]).to_pydict().values()
            return sorted(f"{kind} {status}" for kind, status in zip(*written, strict=True))

        found = stages({})  # latin1.txt fails as a file, corrupt.jpg as a point
        assert found.count("file read") == len(files) - 1 and found.count("point failed") == 1
        stored = {s.source: [] for s in files}
        for point_id, payload in driver.scroll(["source"]):
            stored[payload["source"]].append(point_id)
        assert_same_store(server_points(client), server_points(expected))
        again = stages({source: ids for source, ids in stored.items() if ids})  # only the bad files come again
        assert again == sorted(["file failed", "file read", "point failed"] + ["file unchanged"] * (len(files) - 2))
    assert targets.task_writer(open_store(tmp_path / "local"), None, layout) is None  # the driver writes a local store

    [uri] = (listing := list_files([f"file://{docs}/long.txt"])).files
    row = {"source": uri.source, "path": uri.path, "size": uri.size, "mtime_ns": uri.mtime_ns, "position": 0, "stored": None}  # fmt: skip
    table = read_files(pa.Table.from_pylist([row]), filesystem=listing.filesystem, spec=spec, options=options, removes=True)  # fmt: skip
    chunks = [json.loads(payload) for payload in table.column("payload").to_pylist()[1:]]
    assert {payload["source"] for payload in chunks} == {f"file://{docs}/long.txt"}
    local = sorted((p["chunk"], p["text"]) for p, _ in server_points(expected).values() if p["source"] == str(docs / "long.txt"))  # fmt: skip
    assert [(p["chunk"], p["text"]) for p in chunks] == local and len(local) > 3


def test_a_parquet_store_is_a_vector_store(tmp_path):
    """ParquetStore has the protocol's methods: open creates the folder, each upsert writes one whole file named by
    its IDs (a retried one writes the same file), existing, scroll and count read them back, a reopen with another
    layout or of files without payloads is refused; it says beforehand that it only appends, and what Parquet cannot
    do raises NotImplementedError."""
    for name, method in vars(VectorStore).items():
        if not name.startswith("_") and callable(method):
            assert inspect.signature(getattr(ParquetStore, name)).parameters.keys() == inspect.signature(method).parameters.keys(), name  # fmt: skip
    layout = CollectionLayout("jina-clip-v2-tiny", 32, 8, "default")
    folder = tmp_path / "vectors"
    store = ParquetStore(folder)
    assert (store.layout(), store.count(), list(store.scroll(["source"])), store.folders()) == (None, 0, [], [folder])
    with pytest.raises(StoreError, match="is not open"):
        store.upsert(["a"], np.ones((1, 32), np.float32), [{}])
    assert store.open(layout) == layout and folder.is_dir()
    vectors = np.random.default_rng(0).standard_normal((3, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    payloads = [{"modality": "text", "source": "/a.txt", "text": "café", "chunk": 0},
                {"modality": "text", "source": "/a.txt", "text": "bridges", "chunk": 1},
                {"modality": "image", "source": "/b.png"}]  # fmt: skip
    for _ in range(2):  # a retried write task
        store.upsert(["1", "2", "3"], vectors, payloads)
    store.upsert(["4"], vectors[:1], [{"modality": "text", "text": "in memory"}])
    assert len(parts := sorted(folder.iterdir())) == 2 and all(p.name.startswith("part-") for p in parts)
    assert store.existing(["1", "3", "9"]) == {"1", "3"} and store.count() == 4 and store.layout() == layout
    assert dict(store.scroll(["source", "chunk"])) == {"1": {"source": "/a.txt", "chunk": 0}, "2": {"source": "/a.txt", "chunk": 1},
                                                      "3": {"source": "/b.png"}, "4": {}}  # fmt: skip
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    assert table.column_names == PARQUET_COLUMNS and json.loads(table.schema.metadata[b"jinaclip"]) == layout.describe()
    rows = {row["id"]: row for row in table.to_pylist()}
    assert [json.loads(rows[i]["payload"]) for i in "123"] == payloads
    assert (rows["1"]["modality"], rows["1"]["source"], rows["1"]["text"], rows["4"]["source"]) == ("text", "/a.txt", "café", None)  # fmt: skip
    np.testing.assert_allclose([rows[i]["vector"] for i in "123"], vectors)
    np.testing.assert_allclose([rows[i]["short"] for i in "123"], named_vectors(vectors, 8)["short"])
    assert pickle.loads(pickle.dumps(store)).existing(["2"]) == {"2"}  # as the write tasks get it
    store.optimize()
    store.close()

    assert store.appends_only and not targets.removes_points(store) and store.vectors(["1"]) == {}
    with pytest.raises(NotImplementedError, match="written once"):
        store.delete(["1"])
    with pytest.raises(NotImplementedError, match="another tool"):
        store.query(vectors[0], 1, None)
    with pytest.raises(StoreError, match="another layout"):
        ParquetStore(folder).open(CollectionLayout("jina-clip-v2-tiny", 32, 16, "default"))
    assert ParquetStore(folder).open(layout) == layout and ParquetStore(f"file://{folder}").folders() == []
    older = tmp_path / "older"
    older.mkdir()
    pq.write_table(pa.table({"id": ["a"]}).replace_schema_metadata({b"jinaclip": json.dumps(layout.describe())}), older / "part-0.parquet")  # fmt: skip
    with pytest.raises(StoreError, match="older jinaclip, without payloads"):
        ParquetStore(older).open(layout)


def server_points(client: QdrantClient) -> dict[str, tuple[dict, np.ndarray]]:
    records, _ = client.scroll("docs", limit=10_000, with_payload=True, with_vectors=True)
    return {str(r.id): (r.payload, np.asarray(r.vector["full"], dtype=np.float32)) for r in records}


def test_the_store_equals_syncs_and_follows_the_folder(cluster, tmp_path, engine, monkeypatch):
    docs = make_folder(tmp_path, bad=False)
    store, single = tmp_path / "store", tmp_path / "single"
    report = index_with_ray([docs], store=store, **JOB)
    expected = synced(engine, docs, single)
    assert isinstance(report, RayIndexResult) and report.stored == report.added == expected.added > 20
    same_report(report, expected)
    assert_same_store(points(store / "jina-clip"), points(single / "jina-clip"))

    again = index_with_ray([docs], store=store, **JOB)  # no file is read again
    assert (again.added, again.existing, again.removed, again.stored) == (0, 0, 0, report.stored)
    assert +again.files == {"unchanged": sum(report.files.values())}

    # the folder changes; another driver joins this Ray by its address, as `--ray-address auto` on a cluster node
    (docs / "page.html").unlink()
    (docs / "photos/0/img0.jpg").rename(docs / "photos/0/moved.jpg")
    (docs / "long.txt").write_text(long_text(2000), encoding="utf-8")
    (docs / "notes" / "b.md").write_text("# More\n\nArches spread the load.\n", encoding="utf-8")
    add_bad_files(docs)
    for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JINACLIP_DTYPE", "float32")  # the goldens' dtype, not this CPU's default (bf16 where native)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    command = [sys.executable, "-m", "jinaclip_integrations.cli", "index", str(docs), "--store", str(store), "--model",
               str(V2_TINY), "-q", "--ray", "--ray-address", cluster, "--report", str(tmp_path / "bad.jsonl")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    expected = synced(engine, docs, single)  # the single-process store follows the same edits
    assert expected.files["changed"] == 1 and expected.files["removed"] == 2
    assert done.returncode == 1, done.stderr  # the bad files
    summary = cli._summary(dataclasses.replace(expected, reused=0), str(store / "jina-clip"), len(points(single / "jina-clip")))  # fmt: skip
    assert done.stdout.strip() == summary
    for name, reason in BAD.items():
        assert f"failed: {docs / name}: " in done.stderr and reason in done.stderr
    assert sorted(json.loads(line)["path"] for line in (tmp_path / "bad.jsonl").read_text().splitlines()) == sorted(str(docs / name) for name in BAD)  # fmt: skip
    fresh = tmp_path / "fresh"
    synced(engine, docs, fresh)
    assert_same_store(points(store / "jina-clip"), points(fresh / "jina-clip"))


def test_into_parquet_through_a_crashed_actor_and_a_rerun_reads_nothing(cluster, tmp_path, engine, monkeypatch):
    docs = make_folder(tmp_path, bad=False)
    crashed = tmp_path / "crashed"

    class CrashOnce(Embedder):  # defined here, so Ray ships it by value
        def __call__(self, table):
            if not crashed.exists():
                crashed.touch()
                os._exit(1)  # the actor's process dies in the middle of its first batch
            return super().__call__(table)

    monkeypatch.setattr(job, "Embedder", CrashOnce)
    out = tmp_path / "vectors"
    report = index_with_ray([docs], parquet=out, **JOB)
    assert crashed.exists()  # so Ray restarted the actor and gave it the batch again
    expected = synced(engine, docs, tmp_path / "single")
    same_report(report, expected)
    table = pq.read_table(out)
    assert table.column_names == PARQUET_COLUMNS and report.stored == table.num_rows == expected.added
    assert json.loads(table.schema.metadata[b"jinaclip"])["jinaclip_model"] == "jina-clip-v2-tiny"
    single = points(tmp_path / "single" / "jina-clip")
    rows = {row["id"]: row for row in table.to_pylist()}
    assert rows.keys() == single.keys()  # one row per point
    for point_id, row in rows.items():
        payload, vector = single[point_id]
        assert json.loads(row["payload"]) == payload
        assert (row["modality"], row["source"], row["text"]) == (payload["modality"], payload["source"], payload.get("text"))  # fmt: skip
        np.testing.assert_allclose(row["vector"], vector, atol=1e-5)
        np.testing.assert_allclose(row["short"], named_vectors(vector[None], 8)["short"][0], atol=1e-5)

    parts = sorted(out.iterdir())
    again = index_with_ray([docs], parquet=out, **JOB)  # the files' size and time are in the payloads: none is read
    assert (again.added, again.files["unchanged"], again.stored) == (0, sum(report.files.values()), table.num_rows)
    assert sorted(out.iterdir()) == parts


def test_a_target_of_another_layout_and_bad_arguments_are_refused(tmp_path, engine, capsys):
    docs = make_folder(tmp_path, bad=False)
    other = shutil.copytree(V2_TINY, tmp_path / "other-model")  # the same model under another name
    QdrantVectorizer(tmp_path / "store", engine=engine).close()
    with pytest.raises(StoreError, match="another layout"):
        index_with_ray([docs], store=tmp_path / "store", **{**JOB, "model_name": str(other)})
    out = tmp_path / "vectors"
    out.mkdir()
    pq.write_table(pa.table({"id": ["a row of someone else's"]}), out / "part-0.parquet")
    with pytest.raises(StoreError, match="not made by jinaclip"):
        index_with_ray([docs], parquet=out, **JOB)
    with pytest.raises(ValueError, match="exactly one target"):
        index_with_ray([docs], store=tmp_path / "store", parquet=out, **JOB)
    with pytest.raises(ValueError, match="preset and short_dim describe Qdrant collections"):
        index_with_ray([docs], parquet=tmp_path / "new", preset="int8", **JOB)
    with pytest.raises(InputError, match="does not exist"):
        index_with_ray([tmp_path / "missing"], store=tmp_path / "created", **JOB)
    assert not (tmp_path / "created").exists()
    assert cli.main(["index", str(docs), "--store", str(tmp_path / "store"), "--parquet", str(out)]) == 1
    assert "--parquet only apply to a Ray job: add --ray" in capsys.readouterr().err
