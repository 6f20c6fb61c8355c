"""Hub downloads without the network: a stalled hub, offline mode and a working hub, all on loopback.

The hub client reads ``HF_ENDPOINT`` and its timeouts from the environment when it is imported,
so each case runs ``resolve_checkpoint`` in a fresh interpreter with the environment a user would
set, against a server in this process.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_images import serve_http

from conftest import V2_TINY
from jinaclip_integrations import CheckpointError, JinaCLIPEngine

REPO = "someone/jina-clip-v2-tiny"
SHA = "0123456789abcdef0123456789abcdef01234567"
FIX = "pass --model PATH / set JINACLIP_MODEL to a local checkpoint folder"
#: what the child interpreter runs: resolve, then print the outcome as one JSON line
RESOLVE = """
import json, sys
from jinaclip_integrations.engine.weights import resolve_checkpoint
try:
    folder = resolve_checkpoint(sys.argv[1], weights=sys.argv[2] == "weights", show_progress=sys.argv[3] == "show")
    print(json.dumps({"folder": str(folder)}))
except Exception as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
"""


def resolve(endpoint: str, home: Path, *args: str, offline: bool = False) -> tuple[dict, str]:
    """``resolve_checkpoint`` in a child interpreter whose hub is ``endpoint`` and whose cache is
    under ``home``, 1 s timeouts; the JSON outcome and the child's stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k != "TRANSFORMERS_OFFLINE"}
    env |= {"HF_ENDPOINT": endpoint, "HF_HOME": str(home), "HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DOWNLOAD_TIMEOUT": "1"}
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE, *args], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture
def stalled_hub() -> Iterator[str]:
    """A hub that accepts every connection and never answers."""
    sock = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(sock.accept()[0])
            except OSError:  # closed: the test is over
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    for conn in held:
        conn.close()


def test_a_stalled_hub_fails_within_the_timeout_and_names_the_fix(stalled_hub, tmp_path):
    """Before, the hub client waited for the listing forever (no output, no error)."""
    outcome, _ = resolve(stalled_hub, tmp_path, "jinaai/jina-clip-v2", "config", "quiet")
    assert outcome["error"] == "CheckpointError"
    assert outcome["message"].startswith("'jinaai/jina-clip-v2' is not a local folder, and it could not be fetched")
    assert f"{stalled_hub} did not answer within 1 s" in outcome["message"]
    assert outcome["message"].endswith(f"{FIX}, or set HF_HUB_OFFLINE=1 to use the cache only")


def test_offline_without_the_model_in_the_cache_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import, not from env
    with pytest.raises(CheckpointError) as info:
        JinaCLIPEngine.from_pretrained("nobody/no-such-model", cache_dir=tmp_path)
    assert str(info.value) == (
        "'nobody/no-such-model' is not a local folder, and it could not be fetched from the Hugging Face hub "
        f"(HF_HUB_OFFLINE is set and it is not in the hub cache): {FIX}, or unset HF_HUB_OFFLINE to download it"
    )


class _Hub(http.server.BaseHTTPRequestHandler):
    """The hub's HTTP API for one model whose files are the tiny checkpoint's: model info, file
    listing and file downloads (HEAD for metadata, GET for bytes); 404 for anything else."""

    FILES = {path.name: path.read_bytes() for path in sorted(V2_TINY.iterdir())}

    def _file(self) -> bytes | None:
        prefix = f"/{REPO}/resolve/{SHA}/"
        return self.FILES.get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None

    def do_HEAD(self) -> None:
        data = self._file()
        if data is None:
            self._send(404, b"", "text/plain")
            return
        self.send_response(200)
        self.send_header("X-Repo-Commit", SHA)
        self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        files = [{"path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()} for name, data in self.FILES.items()]  # fmt: skip
        if path in (f"/api/models/{REPO}", f"/api/models/{REPO}/revision/main"):
            siblings = [{"rfilename": f["path"], "size": f["size"]} for f in files]
            self._send(200, json.dumps({"id": REPO, "sha": SHA, "siblings": siblings}).encode())
        elif path == f"/api/models/{REPO}/tree/{SHA}":
            self._send(200, json.dumps([{"type": "file", **f} for f in files]).encode())
        elif (data := self._file()) is not None:
            self._send(200, data, "application/octet-stream")
        else:
            self._send(404, b"{}")

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    with serve_http(_Hub) as url:
        yield url


def test_a_download_says_what_it_fetches_and_its_size_then_the_cache_serves_it(hub, tmp_path):
    outcome, shown = resolve(hub, tmp_path, REPO, "weights", "show")
    folder = Path(outcome["folder"])
    fetched = [name for name in _Hub.FILES if name.endswith((".json", ".safetensors", ".txt"))]
    assert sorted(path.name for path in folder.iterdir()) == sorted(fetched)
    size = sum(len(_Hub.FILES[name]) for name in fetched)
    assert 1e3 <= size < 1e6  # shown in kB
    assert shown.splitlines()[0] == f"downloading {REPO}: {size / 1e3:.1f} kB"
    assert f"{size / 1e3:.0f}kB" in shown  # the hub's byte bars follow, at their total
    again, shown_again = resolve(hub, tmp_path, REPO, "weights", "show", offline=True)
    assert again == outcome and "downloading" not in shown_again  # from the cache: nothing fetched


def test_a_quiet_download_shows_nothing(hub, tmp_path):
    outcome, shown = resolve(hub, tmp_path, REPO, "config", "quiet")
    assert sorted(path.name for path in Path(outcome["folder"]).iterdir()) == sorted(
        name for name in _Hub.FILES if name.endswith((".json", ".txt"))
    )
    assert shown == ""
