"""A `jinaclip index` killed with SIGKILL part-way, then run again, ends with exactly one point
per item and none missing.

The kill is real: the CLI runs in a subprocess that is sent SIGKILL by this test, at a moment
chosen through a wrapper around the store or the model (the wrapper only signals and waits; the
data path is the CLI's own). The embedded Qdrant engine must recover its write-ahead log, and
the re-run must skip what was stored and add the rest.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import V2_TINY, load_engine
from jinaclip_integrations import cli
from jinaclip_integrations._ingest import content_id
from jinaclip_integrations.qdrant import QdrantVectorizer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

N_IMAGES, N_TEXTS = 100, 50  # 150 items: three of the CLI's 64-item batches

# Runs `jinaclip index` with one hook: at the chosen moment it prints KILL-ME and waits to die.
#   mid-upsert: the second batch's write stores half its points, then the process is killed;
#   mid-embed:  the third batch is being embedded (two batches stored) when it is killed.
_CHILD = textwrap.dedent(
    """
    import sys, time
    from jinaclip_integrations import cli, qdrant

    mode, argv = sys.argv[1], sys.argv[2:]

    def wait_for_kill():
        print("KILL-ME", flush=True)
        time.sleep(120)
        sys.exit("not killed")

    if mode == "mid-upsert":
        upsert, calls = qdrant._EdgeStore.upsert, []

        def half_then_die(self, items, vectors):
            calls.append(len(items))
            if len(calls) == 2:
                half = len(items) // 2
                upsert(self, items[:half], {k: v[:half] for k, v in vectors.items()})
                wait_for_kill()
            upsert(self, items, vectors)

        qdrant._EdgeStore.upsert = half_then_die
    else:
        from jinaclip_integrations.engine.engine import JinaCLIPEngine

        encode, calls = JinaCLIPEngine.encode_image, []

        def die_in_third(self, images, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                wait_for_kill()
            return encode(self, images, **kwargs)

        JinaCLIPEngine.encode_image = die_in_third
    sys.exit(cli.main(argv))
    """
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Images and texts in one folder, names shuffled so every batch mixes both."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(N_IMAGES):
        pixels = rng.integers(0, 256, (rng.integers(8, 40), rng.integers(8, 40), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"{rng.integers(1 << 30):09d}_{i}.png")
    for i in range(N_TEXTS):
        (data / f"{rng.integers(1 << 30):09d}_{i}.txt").write_text(f"note {i}: " + "word " * int(rng.integers(1, 30)))
    return data


def expected_ids(folder: Path) -> set[str]:
    """The point ID of every file, as the single-process path derives it."""
    ids = set()
    for path in folder.iterdir():
        if path.suffix == ".png":
            ids.add(content_id("image", path.read_bytes()))
        else:
            ids.add(content_id("text", path.read_text(encoding="utf-8")))
    return ids


def kill_mid_run(argv: list[str], mode: str) -> None:
    """Run the CLI in a subprocess and SIGKILL it when its hook says so."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, mode, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline()
        assert line.strip() == "KILL-ME", f"the child ended before the kill point: {line!r} {child.stderr.read()}"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        child.stderr.close()


@pytest.mark.parametrize("mode", ["mid-upsert", "mid-embed"])
def test_killed_index_rerun_stores_every_item_exactly_once(folder, tmp_path, capsys, monkeypatch, mode):
    for var in (*cli.ENV.values(), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    store = tmp_path / "store"
    argv = ["index", str(folder), "--store", str(store), "--model", str(V2_TINY), "-q"]
    kill_mid_run(argv, mode)

    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    added, existing = map(int, re.search(r"(\d+) added, (\d+) already stored", out).groups())
    total = N_IMAGES + N_TEXTS
    assert added + existing == total and 0 < existing < total, out  # the killed run stored some, not all
    if mode == "mid-upsert":
        assert existing >= 64 + 1, out  # the first batch and the half of the second that was written

    with QdrantVectorizer(store, engine=load_engine(V2_TINY)) as index:
        ids = expected_ids(folder)
        assert index.count() == total == len(ids)  # one point per item: nothing twice
        assert index._store.existing(sorted(ids)) == ids  # and none missing
        hits = index.search_image(next(folder.glob("*.png")), limit=1)
        assert hits[0].score == pytest.approx(1, abs=1e-5)  # vectors written before the kill are whole

    assert cli.main(argv) == 0
    assert "0 added, 150 already stored" in capsys.readouterr().out
