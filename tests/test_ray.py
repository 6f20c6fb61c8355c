"""The Ray Data job (``jinaclip_integrations.ray``) on one local Ray instance (2 CPUs, no GPU) and
the tiny model: it stores what the single-process path stores, its counts add up, and neither a
re-run nor a retried batch writes anything twice."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image
from qdrant_client import QdrantClient

import jinaclip_integrations.ray as ray_job
from conftest import V2_TINY
from jinaclip_integrations import InputError, QdrantVectorizer, StoreError, cli
from jinaclip_integrations._ingest import file_item, text_items
from jinaclip_integrations.ray import index_with_ray

IMAGES, TEXTS = 200, 100
GOOD = IMAGES + TEXTS
BAD = {"corrupt.jpg": "cannot decode image", "latin1.txt": "is not UTF-8 text"}
JOB = {"model_name": str(V2_TINY), "batch_size": 64, "show_progress": False}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Small random-colour PNGs and JPEGs and texts in nested folders, two bad files, one PDF."""
    root = tmp_path_factory.mktemp("archive")
    rng = np.random.default_rng(0)
    for i in range(IMAGES):
        side = int(rng.integers(16, 65))
        pixels = np.clip(rng.integers(0, 256, 3) + rng.integers(-20, 21, (side, side, 3)), 0, 255).astype(np.uint8)
        path = root / f"photos/{i % 7}/img{i}.{'png' if i % 2 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
    for i in range(TEXTS):
        path = root / f"notes/{i % 3}/note{i}.{'md' if i % 4 else 'txt'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"note {i}: " + " ".join(f"word{j}" for j in rng.integers(0, 500, int(rng.integers(3, 60)))))
    (root / "corrupt.jpg").write_bytes(b"not a jpeg")
    (root / "latin1.txt").write_bytes("café".encode("latin-1"))
    (root / "scan.pdf").write_bytes(b"%PDF-1.4")
    return root


def points(client: QdrantClient, collection: str) -> dict[str, tuple[dict, dict]]:
    """Every point of a collection: id -> (named vectors, payload)."""
    found, offset = {}, None
    while True:
        page, offset = client.scroll(collection, limit=256, offset=offset, with_payload=True, with_vectors=True)
        found.update({str(p.id): (p.vector, p.payload) for p in page})
        if offset is None:
            return found


@pytest.fixture(scope="module")
def single(folder, engine) -> dict[str, tuple[dict, dict]]:
    """The points that the single-process path stores from the same folder."""
    client = QdrantClient(":memory:")
    report = QdrantVectorizer(client, "photos", engine=engine, on_error="skip", show_progress=False).add_files([folder])
    assert (report.added, len(report.failed), len(report.ignored)) == (GOOD, 2, 1)
    return points(client, "photos")


def check_bad_files(failures: list[dict], folder: Path) -> None:
    """The two bad files, each with its reason, as ``{"path", "reason"}`` report lines."""
    assert sorted(f["path"] for f in failures) == sorted(str(folder / name) for name in BAD)
    for failure in failures:
        assert BAD[Path(failure["path"]).name] in failure["reason"]


def test_encode_pixels_embeds_cropped_images_as_encode_image_does(engine, folder):
    images = sorted((folder / "photos").rglob("*.*"))[:5]
    crops = np.stack([engine.preprocessor.crop(path.read_bytes(), i, None) for i, path in enumerate(images)])
    np.testing.assert_allclose(engine.encode_pixels(crops, batch_size=2), engine.encode_image(images), atol=1e-6)
    short = engine.encode_pixels(crops, truncate_dim=16)
    np.testing.assert_allclose(short, engine.encode_image(images, truncate_dim=16), atol=1e-6)
    with pytest.raises(ValueError, match="crops must be uint8 of shape"):
        engine.encode_pixels(crops[:, :, :8])
    with pytest.raises(ValueError, match="crops must be uint8 of shape"):
        engine.encode_pixels(crops.astype(np.float32))


def test_globs_and_uris_are_listed_and_read_as_the_single_process_path_reads_files(folder):
    listing = ray_job._list([str(folder / "*")])  # a local glob: what it matches, folders searched
    assert len(listing.sources) == GOOD + 2 and listing.ignored == [str(folder / "scan.pdf")]
    assert listing.filesystem is None and listing.paths == [os.path.abspath(s) for s in listing.sources]
    pngs = sorted(folder.glob("photos/*/img1*.png"))
    listing = ray_job._list([f"file://{folder}/photos/*/img1*.png", f"file://{folder}/notes/", f"file://{folder}"])
    assert listing.sources[: len(pngs)] == [f"file://{p}" for p in sorted(pngs, key=str)]  # each file once
    assert len(listing.sources) == GOOD + 2 and listing.ignored == [f"file://{folder}/scan.pdf"]
    for missing in (f"file://{folder}/nothing", f"file://{folder}/*.gif", str(folder / "*.gif")):
        with pytest.raises(InputError, match="does not exist|matches no file"):
            ray_job._list([missing])

    with pytest.raises(ValueError, match="either local paths or URIs, not both: 'notes' is local"):
        ray_job._list([f"file://{folder}/photos", "notes"])

    sources = [f"file://{pngs[0]}", f"file://{folder}/latin1.txt", f"file://{folder}/gone.jpg"]
    paths = [str(pngs[0]), str(folder / "latin1.txt"), str(folder / "gone.jpg")]
    rows = ray_job._read(pa.table({"source": sources, "path": paths}), listing.filesystem).to_pylist()
    item = file_item(pngs[0], 0)
    assert (rows[0]["id"], rows[0]["status"], rows[0]["data"]) == (item.id, "new", item.content)
    assert json.loads(rows[0]["payload"]) == {"modality": "image", "source": sources[0]}
    assert [row["status"] for row in rows[1:]] == ["failed", "failed"]
    assert "is not UTF-8 text" in rows[1]["reason"] and "cannot read" in rows[2]["reason"]


@pytest.mark.parametrize("kind", ["embedded", "client"])
def test_a_local_store_lists_every_id_for_the_workers_to_skip(engine, tmp_path, kind):
    store = tmp_path / "store" if kind == "embedded" else QdrantClient(":memory:")
    texts = [f"text {i}" for i in range(1100)]  # more than one page of IDs
    with QdrantVectorizer(store, engine=engine, batch_size=512, show_progress=False) as vectorizer:
        vectorizer.add_texts(texts)
        ids = [item.id for item in text_items(texts)]
        assert sorted(vectorizer._store.ids()) == sorted(ids)
        known = ray_job._id_array(vectorizer._store.ids())
    absent = [item.id for item in text_items(["not stored", "nor this"])]
    assert ray_job._contains(known, [ids[5], absent[0], ids[-1], absent[1]]).tolist() == [True, False, True, False]
    assert not ray_job._contains(ray_job._id_array([]), ids[:2]).any()


def test_the_stages_into_a_qdrant_server_as_workers_run_them(folder, single, monkeypatch):
    """The job's stages for a Qdrant URL, run here on one batch with an in-memory client standing
    in for the server (no Qdrant server runs on this machine): the workers' existence checks and
    insert-only upserts give the single-process points, and a second pass writes nothing."""
    client = QdrantClient(":memory:")
    monkeypatch.setattr(ray_job, "_client", lambda url, api_key: client)
    spec = ray_job._model_spec(str(V2_TINY))
    driver = ray_job._QdrantServerSink(QdrantVectorizer(client, "photos", engine=spec), client, "http://qdrant:6333", "k")  # fmt: skip
    sink = pickle.loads(pickle.dumps(driver))  # as the workers get it: without the driver's client
    assert (sink.vectorizer, sink.client, sink.url, sink.api_key, sink.short_dim) == (None, None, "http://qdrant:6333", "k", 8)  # fmt: skip
    embedder = ray_job._Embedder(str(V2_TINY), "cpu", None)
    listing = ray_job._list([folder])
    batch = pa.table({"source": listing.sources, "path": listing.paths})

    def stages() -> list[str]:
        table = ray_job._skip_stored(ray_job._read(batch, None), None, sink)
        table = embedder(ray_job._preprocess(table, spec.preprocessor, spec.max_image_pixels))
        return sorted(sink.write(table).column("status").to_pylist())

    assert stages() == ["failed"] * 2 + ["written"] * GOOD
    stored = points(client, "photos")
    assert stored.keys() == single.keys()
    for id, (vectors, payload) in stored.items():
        assert payload == single[id][1]
        np.testing.assert_allclose(vectors["full"], single[id][0]["full"], atol=1e-5)
        np.testing.assert_allclose(vectors["short"], single[id][0]["short"], atol=1e-5)
    assert stages() == ["existing"] * GOOD + ["failed"] * 2 and driver.finish() == GOOD


def test_into_a_local_store_as_the_single_process_path_and_a_rerun_writes_nothing(cluster, folder, single, tmp_path):
    client = QdrantClient(path=str(tmp_path / "local"))  # qdrant-client's local mode: written by the driver
    report = tmp_path / "bad.jsonl"
    result = index_with_ray([folder], store=client, collection_name="photos", report=report, **JOB)
    counts = (result.read, result.embedded, result.written, result.existing, result.skipped, result.ignored)
    assert counts == (GOOD + 2, GOOD, GOOD, 0, 2, 1) and result.adds_up() and result.stored == GOOD
    check_bad_files([json.loads(f.to_json()) for f in result.failed], folder)
    check_bad_files([json.loads(line) for line in report.read_text().splitlines()], folder)
    stored = points(client, "photos")
    assert stored.keys() == single.keys()
    for id, (vectors, payload) in stored.items():
        assert payload == single[id][1]
        assert vectors.keys() == single[id][0].keys() == {"full", "short"}
        for name, vector in vectors.items():
            np.testing.assert_allclose(vector, single[id][0][name], atol=1e-5)

    again = index_with_ray([folder], store=client, collection_name="photos", report=report, **JOB)
    counts = (again.read, again.embedded, again.written, again.existing, again.skipped)
    assert counts == (GOOD + 2, 0, 0, GOOD, 2) and again.stored == GOOD and again.adds_up()
    assert len(points(client, "photos")) == GOOD


def test_into_parquet_as_the_single_process_path_through_a_crashed_actor(cluster, folder, single, tmp_path, monkeypatch):  # fmt: skip
    crashed = tmp_path / "crashed"

    class CrashOnce(ray_job._Embedder):  # defined here, so Ray ships it by value
        def __call__(self, table):
            if not crashed.exists():
                crashed.touch()
                os._exit(1)  # the actor's process dies in the middle of its first batch
            return super().__call__(table)

    monkeypatch.setattr(ray_job, "_Embedder", CrashOnce)
    out = tmp_path / "vectors"
    result = index_with_ray([folder], parquet=out, **JOB)
    assert crashed.exists()  # so Ray restarted the actor and gave it the batch again
    counts = (result.read, result.embedded, result.written, result.existing, result.skipped, result.stored)
    assert counts == (GOOD + 2, GOOD, GOOD, 0, 2, None) and result.adds_up()
    table = pq.read_table(out)
    assert table.column_names == ["id", "modality", "source", "text", "vector", "short"]
    assert json.loads(table.schema.metadata[b"jinaclip"])["jinaclip_model"] == "jina-clip-v2-tiny"
    rows = {row["id"]: row for row in table.to_pylist()}
    assert len(rows) == table.num_rows == GOOD and rows.keys() == single.keys()  # one row per item
    for id, row in rows.items():
        vectors, payload = single[id]
        assert (row["modality"], row["source"], row["text"]) == (payload["modality"], payload["source"], payload.get("text"))  # fmt: skip
        np.testing.assert_allclose(row["vector"], vectors["full"], atol=1e-5)
        np.testing.assert_allclose(row["short"], vectors["short"], atol=1e-5)

    again = index_with_ray([folder], parquet=out, **JOB)  # the IDs in the folder's files are skipped
    assert (again.embedded, again.existing, again.skipped) == (0, GOOD, 2) and pq.read_table(out).num_rows == GOOD


def test_a_collection_or_folder_of_another_model_is_refused(cluster, folder, engine, tmp_path):
    other = shutil.copytree(V2_TINY, tmp_path / "other-model")  # the same model under another name
    QdrantVectorizer(tmp_path / "store", engine=engine).close()
    with pytest.raises(StoreError, match="another layout"):
        index_with_ray([folder], store=tmp_path / "store", **{**JOB, "model_name": str(other)})
    out = tmp_path / "vectors"
    out.mkdir()
    pq.write_table(pa.table({"id": ["a row of someone else's"]}), out / "part-0.parquet")
    with pytest.raises(StoreError, match="not made by jinaclip"):
        index_with_ray([folder], parquet=out, **JOB)


def test_cli_index_ray_joins_a_cluster_prints_the_counts_and_exits_1_on_bad_files(cluster, folder, tmp_path, capsys, monkeypatch):  # fmt: skip
    for var in (*cli.ENV.values(), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    store, report = tmp_path / "store", tmp_path / "bad.jsonl"
    command = [sys.executable, "-m", "jinaclip_integrations.cli", "index", str(folder), "--store", str(store), "-q"]
    # another driver joins the running Ray instance by its address, as `--ray-address auto` on a cluster node
    done = subprocess.run([*command, "--ray", "--ray-address", cluster, "--report", str(report)],
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert (f"indexed into {store / 'jina-clip'} with Ray: {GOOD + 2} read, {GOOD} embedded, {GOOD} written, "
            f"0 already stored, 2 failed, 1 other files ignored; {GOOD} points in all") in done.stdout  # fmt: skip
    assert f"failed: {folder / 'corrupt.jpg'}: cannot decode image" in done.stderr
    check_bad_files([json.loads(line) for line in report.read_text().splitlines()], folder)
    # a Ray option without --ray is refused rather than silently ignored
    assert cli.main(["index", str(folder), "--store", str(store), "--parquet", str(tmp_path / "pq")]) == 1
    assert "--parquet only apply to a Ray job: add --ray" in capsys.readouterr().err
