"""The ``jinaclip`` command line, run in-process through ``main(argv)`` on the tiny checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import V2_TINY, load_engine
from jinaclip_integrations import cli, settings

DATA = Path(__file__).parents[1] / "examples" / "data"


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    """A clean environment: the tiny model, a store under tmp_path, no config file."""
    for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("JINACLIP_MODEL", str(V2_TINY))
    monkeypatch.setenv("JINACLIP_DTYPE", "float32")  # as the goldens and load_engine (not this CPU's default)
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    return data


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_twice_then_search_by_text_and_image(env, capsys, tmp_path):
    code, out, _ = run(capsys, "index", str(env), "-q")
    store = tmp_path / "share" / "jinaclip" / "store" / "jina-clip"  # the default: the user's data directory
    assert code == 0 and f"indexed into {store}: 6 added, 0 already stored, 0 removed, 0 failed" in out
    code, out, _ = run(capsys, "index", str(env), "-q")
    assert code == 0 and "0 added" in out and "6 unchanged" in out and "6 points in all" in out

    code, out, _ = run(capsys, "search", "--image", str(env / "red_circle.png"), "-q", "--json", "--modality", "image")
    hits = json.loads(out)
    assert code == 0 and len(hits) == 3
    assert set(hits[0]) == {"score", "cosine", "source", "modality", "text", "id"}
    assert hits[0]["source"] == str(env / "red_circle.png") and hits[0]["score"] == pytest.approx(1, abs=1e-5)
    code, out, _ = run(capsys, "search", "--image", str(env / "red_circle.png"), "-q", "--json")
    assert code == 0 and len(json.loads(out)) == 6  # both modalities, one ranking

    text = (env / "circles.txt").read_text(encoding="utf-8").strip()
    code, out, _ = run(capsys, "search", text, "--limit", "2", "-q", "--modality", "text")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].split() == ["score", "cosine", "kind", "source"]
    # one modality: score and cosine are both the cosine the engine gives for the query (with its
    # instruction) and each stored text, computed here from the engine's own vectors
    engine = load_engine(V2_TINY)
    files = sorted(env.glob("*.txt"))
    query = engine.encode_text([text], task=engine.query_task)[0]
    cosines = engine.encode_text([path.read_text(encoding="utf-8").strip() for path in files]) @ query
    best = np.argsort(-cosines)[:2]
    assert files[best[0]].name == "circles.txt"
    for rank, (line, i) in enumerate(zip(lines[1:], best, strict=True), 1):
        number, score, cosine, kind, source = line.split()[:5]
        assert (number, kind, source) == (str(rank), "text", str(files[i]))
        assert float(score) == pytest.approx(cosines[i], abs=1e-4)
        assert float(cosine) == pytest.approx(cosines[i], abs=1e-4)
    code, out, _ = run(capsys, "search", "circle", "--modality", "image", "--json", "-q")
    assert [hit["modality"] for hit in json.loads(out)] == ["image"] * 3


def test_index_reports_bad_files_and_exits_1(env, capsys, tmp_path):
    (env / "broken.jpg").write_bytes(b"not a jpeg")
    (env / "tool.exe").write_bytes(b"MZ")
    code, out, err = run(capsys, "index", str(env), "-q", "--report", str(tmp_path / "bad.jsonl"))
    assert code == 1 and "6 added" in out and "1 failed" in out and "ignored: 1 (1 unsupported file type)" in out
    assert f"failed: {env / 'broken.jpg'}:" in err
    code, _, err = run(capsys, "index", str(env), "-q", "-v")
    assert f"ignored: {env / 'tool.exe'} (unsupported file type)" in err
    [line] = (tmp_path / "bad.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["path"] == str(env / "broken.jpg") and "cannot decode image" in json.loads(line)["reason"]
    code, _, err = run(capsys, "index", str(env), "--on-error", "raise", "-q")
    assert code == 1 and "broken.jpg" in err


def test_embed_writes_jsonl_and_npy_equal_to_the_engine(env, capsys, tmp_path):
    engine = load_engine(V2_TINY)
    image = str(env / "red_circle.png")
    code, out, _ = run(capsys, "embed", "a cat", "a dog", "--image", image, "--task", "retrieval.query", "-q")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["index"], r["modality"], r["input"]) for r in rows] == [
        (0, "text", "a cat"), (1, "text", "a dog"), (2, "image", image)]  # fmt: skip
    texts = engine.encode_text(["a cat", "a dog"], task="retrieval.query")
    np.testing.assert_allclose([r["embedding"] for r in rows[:2]], texts, atol=1e-6)
    np.testing.assert_allclose(rows[2]["embedding"], engine.encode_image([image])[0], atol=1e-6)
    out_file = tmp_path / "v.npy"
    lines = tmp_path / "texts.txt"
    lines.write_text("first\n\nsecond\n", encoding="utf-8")
    assert run(capsys, "embed", "--text-file", str(lines), "--dimensions", "16", "-o", str(out_file), "-q")[0] == 0
    np.testing.assert_allclose(np.load(out_file), engine.encode_text(["first", "second"], truncate_dim=16), atol=1e-6)


def test_info_and_settings_precedence(env, capsys, tmp_path, monkeypatch):
    code, out, _ = run(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["embedding_dim"] == 64 and info["matryoshka_dims"] == [8, 16, 32, 64]
    assert info["tasks"] == ["retrieval.query"] and info["device"] == "cpu" and info["dtype"] == "float32"

    config = tmp_path / "config" / "jinaclip" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'collection = "from-file"\nstore = "{tmp_path / "filestore"}"\n', encoding="utf-8")
    assert run(capsys, "index", str(env / "circles.txt"), "-q")[1].startswith(f"indexed into {tmp_path / 'filestore' / 'from-file'}:")  # fmt: skip
    monkeypatch.setenv("JINACLIP_COLLECTION", "from-env")
    assert f"{tmp_path / 'filestore' / 'from-env'}:" in run(capsys, "index", str(env / "circles.txt"), "-q")[1]
    out = run(capsys, "index", str(env / "circles.txt"), "--collection", "from-flag", "-q")[1]
    assert f"{tmp_path / 'filestore' / 'from-flag'}:" in out
    config.write_text('colection = "typo"\n', encoding="utf-8")
    code, _, err = run(capsys, "info")
    assert code == 1 and "unknown keys" in err and "colection" in err


def test_errors_are_one_line_with_exit_1(env, capsys, tmp_path):
    code, _, err = run(capsys, "search", "anything", "--store", str(tmp_path / "empty"), "-q")
    assert code == 1 and err.startswith("jinaclip: error: nothing indexed in") and "jinaclip index" in err
    code, _, err = run(capsys, "search", "-q")
    assert code == 1 and "needs a query text or --image" in err
    code, _, err = run(capsys, "embed", "x", "--dimensions", "12", "-q")
    assert code == 1 and err.startswith("jinaclip: error:") and "12" in err
    code, _, err = run(capsys, "index", str(tmp_path / "missing"), "-q")
    assert code == 1 and "does not exist" in err


def test_console_entry_point():
    root = Path(__file__).parents[1]
    result = subprocess.run([sys.executable, "-m", "jinaclip_integrations.cli", "--help"], cwd=root,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    for command in ("index", "search", "embed", "serve", "info"):
        assert command in result.stdout


def test_embed_images_one_per_flag_and_bad_dtype(env, capsys, monkeypatch):
    image = str(env / "red_circle.png")
    code, out, _ = run(capsys, "embed", "--image", image, "a text after the image", "-q")
    assert code == 0 and [json.loads(line)["modality"] for line in out.splitlines()] == ["text", "image"]
    monkeypatch.setenv("JINACLIP_DTYPE", "fp8")
    code, _, err = run(capsys, "info")
    assert code == 1 and "JINACLIP_DTYPE='fp8'" in err
