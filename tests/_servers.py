"""Real HTTP servers on loopback for the tests: an ASGI app under uvicorn in a thread, or the
embedding server in a process of its own (to measure its memory)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).parents[1]

#: the child of :func:`serve_process`: the model, the server's settings, its port on stdout
_SERVE = """
import json, socket, sys
import uvicorn
from jinaclip_integrations import JinaCLIPEngine
from jinaclip_integrations.server import ServerSettings, create_app

engine = JinaCLIPEngine.from_pretrained(sys.argv[1], device="cpu", dtype="float32", show_progress=False)
app = create_app(engine, ServerSettings(**json.loads(sys.argv[2])))
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@contextmanager
def serve(app: Any, *, lifespan: str = "on", host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free port of ``host``; yields its base URL, then shuts the server
    down (running the app's lifespan shutdown when ``lifespan`` is on)."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on such sockets, and without it every
    # answer waits ~40 ms for a delayed ACK (uvicorn writes headers and body separately)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind((host, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@contextmanager
def serve_process(model: Path, settings: dict[str, Any] | None = None) -> Iterator[tuple[str, int]]:
    """Serve ``model`` (on the CPU) with ``create_app`` and ``ServerSettings(**settings)`` in a
    process of its own on loopback; yields its base URL, once ready, and its process id."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-c", _SERVE, str(model), json.dumps(settings or {})]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        port = process.stdout.readline().strip()
        assert port, f"the server did not start ({process.wait()})"
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while not _ready(url):
            assert process.poll() is None and time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.05)
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/ready").status_code == 200
    except httpx.TransportError:  # not listening yet
        return False
