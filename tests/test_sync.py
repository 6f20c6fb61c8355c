"""The main job on real folders: documents chunked, PDFs and HTML read, the store kept in step
with the folder (also across a kill -9), one ranking of texts and images, early failures.

Everything runs on the tiny checkpoint and the embedded Qdrant engine, through the CLI where a
user would use it. Stores are compared point by point: the same IDs, the same payloads, vectors
within 1e-5 (the engine's float noise between batch compositions).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import V2_TINY, load_engine
from jinaclip_integrations import cli, settings
from jinaclip_integrations.ingest.chunking import ChunkOptions
from jinaclip_integrations.qdrant import FULL, QdrantVectorizer

DATA = Path(__file__).parents[1] / "examples" / "data"
ATOL = 1e-5
LAST_SENTENCE = "The zebra finally found its emerald umbrella beside the quiet lighthouse."


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """A clean CLI environment on the tiny model; the store in tmp_path/store; cwd tmp_path."""
    for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JINACLIP_DTYPE", "float32")  # the goldens' dtype, not this CPU's default (bf16 where native)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    monkeypatch.setenv("JINACLIP_STORE", str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv, "-q"] if argv[0] in ("index", "search") else list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def long_text(words: int = 20_000) -> str:
    """Paragraphs of random words from a small vocabulary, then one unique last sentence."""
    rng = random.Random(0)
    vocab = [
        "river",
        "stone",
        "cloud",
        "paper",
        "window",
        "garden",
        "silver",
        "market",
        "candle",
        "orange",
        "bridge",
        "winter",
    ]
    paragraphs, left = [], words
    while left > 0:
        n = min(left, rng.randint(40, 160))
        paragraphs.append(" ".join(rng.choice(vocab) for _ in range(n)).capitalize() + ".")
        left -= n
    return "\n\n".join(paragraphs) + " " + LAST_SENTENCE + "\n"


def three_page_pdf() -> bytes:
    """Text on every page; page 3 has a unique sentence and a 64x64 photo."""
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    out = io.BytesIO()
    pdf = canvas.Canvas(out)
    for page, line in enumerate(("An introduction to bridges.", "Stone arches carry weight."), 1):
        pdf.drawString(72, 720, f"Page {page}. {line}")
        pdf.showPage()
    pdf.drawString(72, 720, "Page 3. Suspension cables hold the deck.")
    pixels = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    pdf.drawImage(ImageReader(Image.fromarray(pixels)), 72, 400, width=64, height=64)
    pdf.showPage()
    pdf.save()
    return out.getvalue()


HTML = """<!doctype html><html><head><title>Lighthouses</title><style>p { color: red }</style>
<script>var hidden = "script text";</script></head>
<body><h1>Keepers</h1><p>A keeper trimmed the lamp every night.</p></body></html>"""


def real_folder(root: Path) -> Path:
    """A folder as users have them: a long text, a PDF, an HTML page, photos, a git folder and a
    hidden file."""
    docs = root / "docs"
    (docs / "photos").mkdir(parents=True)
    (docs / "long.txt").write_text(long_text(), encoding="utf-8")
    (docs / "bridges.pdf").write_bytes(three_page_pdf())
    (docs / "page.html").write_text(HTML, encoding="utf-8")
    shutil.copy(DATA / "red_circle.png", docs / "photos" / "red_circle.png")
    (docs / ".git" / "objects").mkdir(parents=True)
    (docs / ".git" / "objects" / "notes.txt").write_text("git internals", encoding="utf-8")
    (docs / ".secret.md").write_text("a hidden note", encoding="utf-8")
    return docs


def points(store_folder: Path) -> dict[str, tuple[dict, np.ndarray]]:
    """Every point of an embedded store: ID -> (payload, full vector)."""
    import qdrant_edge

    shard = qdrant_edge.EdgeShard.load(str(store_folder))
    try:
        records, _ = shard.scroll(qdrant_edge.ScrollRequest(limit=100_000, with_payload=True, with_vector=[FULL]))
        return {str(r.id): (dict(r.payload), np.asarray(r.vector[FULL], dtype=np.float32)) for r in records}
    finally:
        shard.close()


def assert_same_store(found: dict, expected: dict) -> None:
    assert set(found) == set(expected)
    for point_id, (payload, vector) in expected.items():
        assert found[point_id][0] == payload
        np.testing.assert_allclose(found[point_id][1], vector, atol=ATOL)


def test_a_real_folder_is_chunked_read_and_walked(env, capsys):
    docs = real_folder(env)
    code, out, err = run(capsys, "index", "docs")
    assert code == 0, err
    assert "ignored: 2 (1 version-control folder, 1 hidden)" in out
    stored = [payload for payload, _ in points(env / "store" / "jina-clip").values()]
    by_source: dict[str, list[dict]] = {}
    for payload in stored:
        by_source.setdefault(payload["source"], []).append(payload)
    assert set(by_source) == {str(docs / name) for name in ("long.txt", "bridges.pdf", "page.html", "photos/red_circle.png")}  # fmt: skip

    long = sorted(by_source[str(docs / "long.txt")], key=lambda p: p["chunk"])
    text = (docs / "long.txt").read_text(encoding="utf-8")
    assert len(long) > 100 and [p["chunk"] for p in long] == list(range(len(long)))
    assert all(text[p["span"][0] : p["span"][1]] == p["text"] for p in long)  # spans point into the file
    assert long[-1]["text"].endswith(LAST_SENTENCE)
    engine = load_engine(V2_TINY)
    assert max(map(len, engine.token_offsets([p["text"] for p in long]))) <= 510  # the tiny model reads 512

    pdf = by_source[str(docs / "bridges.pdf")]
    assert sorted((p["modality"], p.get("page")) for p in pdf) == [("image", 3), ("text", 1), ("text", 2), ("text", 3)]
    assert next(p for p in pdf if p.get("page") == 3 and p["modality"] == "text")["text"] == "Page 3. Suspension cables hold the deck."  # fmt: skip
    [html] = by_source[str(docs / "page.html")]
    assert html["title"] == "Lighthouses" and "keeper trimmed the lamp" in html["text"]
    assert "script text" not in html["text"] and "color" not in html["text"]

    # the chunk with the last sentence is found by its own text, first
    code, out, _ = run(capsys, "search", long[-1]["text"], "--modality", "text", "--json")
    top = json.loads(out)[0]
    assert (top["source"], top["chunk"], top["text"]) == (str(docs / "long.txt"), long[-1]["chunk"], long[-1]["text"])
    assert top["span"] == long[-1]["span"]


def test_the_store_follows_the_folder(env, capsys):
    docs = real_folder(env)
    assert run(capsys, "index", "docs")[0] == 0
    (docs / "page.html").unlink()  # deleted
    (docs / "notes.md").write_text("# Notes\n\nBridges need inspections.\n", encoding="utf-8")  # new
    (docs / "photos" / "red_circle.png").rename(docs / "photos" / "circle.png")  # renamed
    long = docs / "long.txt"
    long.write_text(long.read_text(encoding="utf-8").replace(LAST_SENTENCE, "A new ending."), encoding="utf-8")
    code, out, _ = run(capsys, "index", "docs")
    assert code == 0 and "files: 2 new, 1 changed, 1 unchanged, 2 removed, 0 failed" in out, out
    assert "reused" in out  # the renamed photo and the unchanged chunks lend their vectors

    code, out, _ = run(capsys, "ls", "--json")
    listed = {row["source"]: row for row in json.loads(out)}
    assert set(listed) == {str(docs / n) for n in ("long.txt", "bridges.pdf", "notes.md", "photos/circle.png")}
    assert (listed[str(docs / "bridges.pdf")]["texts"], listed[str(docs / "bridges.pdf")]["images"]) == (3, 1)
    stored = [p for p, _ in points(env / "store" / "jina-clip").values()]
    assert {p["source"] for p in stored} == set(listed)
    [last] = [p for p in stored if p.get("text", "").endswith("A new ending.")]
    assert not any(LAST_SENTENCE in p.get("text", "") for p in stored)
    code, out, _ = run(capsys, "search", last["text"], "--modality", "text", "--json", "-k", "1")
    assert [(hit["source"], hit["chunk"]) for hit in json.loads(out)] == [(str(long), last["chunk"])]

    # identical content at two paths: found under both
    shutil.copy(docs / "notes.md", docs / "copy.md")
    assert run(capsys, "index", "docs")[0] == 0
    code, out, _ = run(capsys, "search", "Bridges need inspections.", "--modality", "text", "--json", "-k", "2")
    assert {hit["source"] for hit in json.loads(out)} == {str(docs / "notes.md"), str(docs / "copy.md")}

    # --no-prune only adds; delete removes a source; a store of the same folder from scratch is equal
    (docs / "copy.md").unlink()
    assert "0 removed" in run(capsys, "index", "docs", "--no-prune")[1]
    code, out, _ = run(capsys, "delete", "docs/copy.md")
    assert code == 0 and out.startswith("removed 1 points of 1 sources")
    assert run(capsys, "delete", "docs/never.md")[0] == 1
    assert run(capsys, "index", "docs", "--store", str(env / "fresh"))[0] == 0
    assert_same_store(points(env / "store" / "jina-clip"), points(env / "fresh" / "jina-clip"))
    code, out, _ = run(capsys, "stats", "--json")
    stats = json.loads(out)
    assert (stats["sources"], stats["images"], stats["model"]) == (4, 2, "jina-clip-v2-tiny")


# Runs `jinaclip index` and SIGKILLs itself at the n-th call of a store operation:
#   upsert N: half of the points of the n-th write are stored, then the process dies;
#   delete N: half of the n-th removal (old versions of a changed file, or the pruning) is done.
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from jinaclip_integrations import cli
    from jinaclip_integrations.qdrant.edge import EdgeStore

    operation, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    real, calls = getattr(EdgeStore, operation), []

    def dying(self, ids, *rest):
        calls.append(1)
        if len(calls) == n:
            half = max(1, len(ids) // 2)
            real(self, ids[:half], *(part[:half] for part in rest))
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, ids, *rest)

    setattr(EdgeStore, operation, dying)
    sys.exit(cli.main(argv))
    """
)


def test_a_sync_killed_at_any_moment_then_rerun_gives_the_clean_store(env, capsys):
    docs = real_folder(env)
    (docs / "long.txt").write_text(long_text(3000), encoding="utf-8")  # a few batches, quickly
    argv = ["index", "docs", "--store", str(env / "store"), "--model", str(V2_TINY), "-q"]
    assert cli.main(argv) == 0
    (docs / "page.html").unlink()
    (docs / "photos" / "red_circle.png").rename(docs / "photos" / "circle.png")
    for i in range(3):
        (docs / f"new{i}.txt").write_text(long_text(800 + 100 * i), encoding="utf-8")
    (docs / "long.txt").write_text(long_text(2500), encoding="utf-8")
    before = env / "before"
    shutil.copytree(env / "store", before)
    assert cli.main([*argv[:2], "--store", str(env / "clean"), *argv[4:]]) == 0
    clean = points(env / "clean" / "jina-clip")
    capsys.readouterr()

    for operation, n in (("upsert", 1), ("upsert", 2), ("delete", 1), ("delete", 2)):
        shutil.rmtree(env / "store")
        shutil.copytree(before, env / "store")
        child = subprocess.run([sys.executable, "-c", _CHILD, operation, str(n), *argv], capture_output=True, text=True, timeout=300)  # fmt: skip
        assert child.returncode == -signal.SIGKILL, (operation, n, child.stderr[-2000:])
        assert cli.main(argv) == 0, capsys.readouterr()
        assert_same_store(points(env / "store" / "jina-clip"), clean)
        capsys.readouterr()


def test_the_quick_start_search_mixes_texts_and_images(env, capsys):
    shutil.copytree(DATA, env / "data")
    assert run(capsys, "index", "data")[0] == 0
    code, out, _ = run(capsys, "search", "a red circle", "--json")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 6
    assert {hit["modality"] for hit in hits[:2]} == {"text", "image"}  # the best image is not after all texts
    assert all(0 < hit["score"] < 1 for hit in hits) and all(-1 <= hit["cosine"] <= 1 for hit in hits)
    assert [hit["modality"] for hit in json.loads(run(capsys, "search", "a red circle", "--json", "--modality", "image")[1])] == ["image"] * 3  # fmt: skip
    code, out, _ = run(capsys, "search", "a red circle")  # the table shows paths relative to here
    assert code == 0 and "data/circles.txt" in out and str(env) not in out


def test_failures_come_before_the_model_and_need_no_heavy_imports(tmp_path):
    """A missing path fails without torch, qdrant or the model, and creates no store; --help and
    argument errors import nothing heavy either."""
    script = textwrap.dedent(
        f"""
        import sys
        from jinaclip_integrations import cli
        codes = [cli.main(["index", {str(tmp_path / "missing")!r}, "--store", {str(tmp_path / "store")!r}])]
        for argv in (["--help"], ["index"], ["search", "--limit", "x"]):
            try:
                cli.main(argv)
            except SystemExit as exit:
                codes.append(exit.code)
        heavy = sorted(m for m in ("torch", "transformers", "qdrant_client", "qdrant_edge", "numpy") if m in sys.modules)
        print(codes, heavy)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "JINACLIP_MODEL": str(V2_TINY)})  # fmt: skip
    assert result.stdout.strip().splitlines()[-1] == "[1, 0, 2, 2] []", result.stdout + result.stderr
    assert "missing does not exist" in result.stderr
    assert not (tmp_path / "store").exists()


def test_chunking_options_and_in_memory_truncation_are_reported(tmp_path, engine, caplog):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("# Title\n\n" + long_text(600), encoding="utf-8")
    with QdrantVectorizer(tmp_path / "store", engine=engine, show_progress=False) as store:
        small = store.sync(folder, chunking=ChunkOptions(max_tokens=128, overlap=16))
        assert small.chunks > 20 and small.truncated == 0
        again = store.sync(folder, chunking=ChunkOptions(max_tokens=256, overlap=32))  # cut otherwise: redone
        assert again.files["changed"] == 1 and again.removed == small.chunks and again.chunks < small.chunks
        headings = {p.get("heading") for _, p in store.store.scroll(["heading"])}
        assert headings == {"Title"}
        report = store.add_texts(["word " * 600, "short"])
        assert report.truncated == 1
    engine.encode_text(["word " * 600])
    assert "1 text(s) longer than max_length" in caplog.text


def test_a_file_that_became_unreadable_keeps_its_last_good_version(tmp_path, engine):
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(DATA / "red_circle.png", folder / "photo.png")
    shutil.copy(DATA / "circles.txt", folder / "notes.txt")
    with QdrantVectorizer(tmp_path / "store", engine=engine, on_error="skip", show_progress=False) as store:
        store.sync(folder)
        (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n damaged")
        report = store.sync(folder)
        assert (report.files["failed"], report.files["unchanged"], report.removed) == (1, 1, 0)
        assert [f.source for f in report.failed] == [str(folder / "photo.png")]
        assert {s.source for s in store.sources()} == {str(folder / "photo.png"), str(folder / "notes.txt")}
        with pytest.raises(TypeError, match="wrap a single text"):
            store.add_texts("one text")


def test_points_of_a_file_added_otherwise_are_replaced_by_its_sync(tmp_path, engine):
    """Points with a file's path but no file version (an image added in memory by path, or a
    store written by an older jinaclip) are an outdated version of that file."""
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(DATA / "red_circle.png", folder / "photo.png")
    with QdrantVectorizer(tmp_path / "store", engine=engine, show_progress=False) as store:
        store.add_images([folder / "photo.png"])
        store.add_texts(["kept: no source"])
        report = store.sync(folder)
        assert (report.files["changed"], report.added, report.reused, report.removed) == (1, 1, 1, 1)
        assert store.count() == 2 and {s.source for s in store.sources()} == {str(folder / "photo.png"), None}
