"""The embedding server when clients misbehave or it is told to stop, over real HTTP on loopback.

Clients that vanish (before their body, in the middle of a chunked body, while their request
waits in the batcher or while it is in the model) leave a healthy server: ``/health`` answers,
the next request gets the right vectors, the batcher's worker is alive with nothing queued, no
error is logged, and the server still stops at once (a connection or task left hanging would
hold its shutdown). A request whose client left while it was queued is dropped, never embedded;
one already in the model finishes and its answer is discarded. At shutdown, every request in
flight is answered while new connections are already refused.

The engine is gated: a text batch holding a text that starts with ``hold`` waits until the test
releases it, so what is queued, in the model or answered is decided by the test, not by timing.
(The server embeds texts it has tokenized once, ``encode_tokens``: the gate knows each text by
its ids.)
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import torch

from _servers import serve
from jinaclip_integrations.server import ServerSettings, create_app
from jinaclip_integrations.server.batcher import MicroBatcher

ATOL = 1e-5


class Gated:
    """The real engine, recording the texts it embeds; a batch with a text starting with
    ``hold`` waits for :attr:`release`."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.texts: list[str] = []
        self.release = threading.Event()
        self._tokenized: dict[tuple[int, ...], str] = {}  # the ids of a text -> the text

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def tokenize(self, texts, **kwargs):
        tokenized = self._engine.tokenize(texts, **kwargs)
        self._tokenized.update(zip(map(tuple, tokenized.ids), texts, strict=True))
        return tokenized

    def encode_tokens(self, tokenized, **kwargs):
        texts = [self._tokenized[tuple(ids)] for ids in tokenized.ids]
        self.texts.extend(texts)
        if any(text.startswith("hold") for text in texts):
            assert self.release.wait(30), "the test never released the model"
        return self._engine.encode_tokens(tokenized, **kwargs)


@contextmanager
def errors_logged() -> Iterator[list[logging.LogRecord]]:
    """ERROR records of uvicorn (where an exception escaping the app is logged, on a logger
    that does not propagate to the root) and of this package, while the block runs. Enter it
    once the server has started: uvicorn resets its loggers' handlers when configured."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("uvicorn", "jinaclip_integrations")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield records
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def until(condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def head(path: str, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def abort(sock: socket.socket) -> None:
    """Close with a TCP reset, as a killed client does (no orderly FIN)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def embed(client: httpx.Client, text: str) -> np.ndarray:
    response = client.post("/v1/embeddings", json={"input": [text]})
    assert response.status_code == 200, response.text
    return np.array([item["embedding"] for item in response.json()["data"]], dtype=np.float32)


def vector(path: str, body: dict) -> list[float]:
    """The one vector of an answer from ``path``."""
    if path == "/vectors":
        return body["vector"]
    if path == "/vectorize":
        return body["imageVectors"][0]
    return body["data"][0]["embedding"]


def assert_healthy(url: str, engine, batcher: MicroBatcher, errors: list[logging.LogRecord]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/ready").status_code == 200
        np.testing.assert_allclose(embed(client, "after the fault"), engine.encode_text(["after the fault"]), atol=ATOL)
    assert batcher.running and batcher._thread.is_alive()
    assert batcher.queued == 0
    assert not errors, [record.getMessage() for record in errors]


@contextmanager
def gated_server(engine, settings: ServerSettings | None = None) -> Iterator[tuple[str, Gated, MicroBatcher]]:
    """A server on a gated engine; it must stop when the block is left (``serve`` gives it 30 s,
    far more than any held request: one left held would time the join out)."""
    gated = Gated(engine)
    app = create_app(gated, settings or ServerSettings())
    with serve(app) as url:
        yield url, gated, app.state.batcher
        gated.release.set()
    assert not app.state.batcher.running, "a connection or task held the server's shutdown"


# -- clients that disconnect -------------------------------------------------------------------


def test_meta_the_error_capture_sees_uvicorn_and_package_errors(engine):
    """The log capture used below is not blind."""
    with gated_server(engine) as (url, _, batcher), errors_logged() as errors:
        logging.getLogger("uvicorn.error").error("Exception in ASGI application")
        logging.getLogger("jinaclip_integrations.server.http").error("embedding failed")
        assert len(errors) == 2


def test_client_gone_after_the_headers(engine):
    """Headers announce a body that never comes."""
    with gated_server(engine) as (url, gated, batcher), errors_logged() as errors:
        for _ in range(3):
            sock = connect(url)
            sock.sendall(head("/v1/embeddings", Content_Length="100"))
            sock.close()
        sock = connect(url)
        sock.sendall(head("/vectorize", Content_Length="100") + b'{"texts": ')
        abort(sock)
        time.sleep(0.2)  # let the server see the hang-ups
        assert_healthy(url, engine, batcher, errors)
        assert batcher.stats.requests == 1 and gated.texts == ["after the fault"]  # nothing else reached the model


def test_client_gone_in_the_middle_of_a_chunked_body(engine):
    with gated_server(engine) as (url, gated, batcher), errors_logged() as errors:
        for close in (socket.socket.close, abort):
            sock = connect(url)
            sock.sendall(head("/v1/embeddings", Transfer_Encoding="chunked") + b'c\r\n{"input": ["a\r\n')
            time.sleep(0.05)  # the first chunk arrives on its own
            close(sock)
        time.sleep(0.2)
        assert_healthy(url, engine, batcher, errors)
        assert gated.texts == ["after the fault"]


REQUESTS = {
    "/v1/embeddings": lambda text: {"input": [text]},
    "/vectors": lambda text: {"text": text},  # Weaviate's route, through the same batcher
}


@pytest.mark.parametrize("path", REQUESTS)
def test_client_gone_while_its_request_is_queued_is_dropped(engine, path):
    """Its request waits behind another one in the model; the client leaves: the request is
    taken out of the queue and never embedded, the other one is answered."""
    with gated_server(engine) as (url, gated, batcher), errors_logged() as errors:
        with httpx.Client(base_url=url, timeout=30) as client:
            answers: list[np.ndarray] = []
            holder = threading.Thread(target=lambda: answers.append(embed(client, "hold: in the model")))
            holder.start()
            until(lambda: "hold: in the model" in gated.texts, "the first request is in the model")
            body = json.dumps(REQUESTS[path]("gone while queued")).encode()
            sock = connect(url)
            sock.sendall(head(path, Content_Length=str(len(body))) + body)
            until(lambda: batcher.queued == 1, "the second request is queued")
            sock.close()
            until(lambda: batcher.queued == 0, "the request of the gone client is cancelled")
            gated.release.set()
            holder.join(30)
        np.testing.assert_allclose(answers[0], engine.encode_text(["hold: in the model"]), atol=ATOL)
        assert_healthy(url, engine, batcher, errors)
        assert "gone while queued" not in gated.texts
        assert batcher.stats.requests == 2  # the holder and the health check's request


@pytest.mark.parametrize("path", REQUESTS)
def test_client_gone_while_its_request_is_in_the_model(engine, path):
    """The model finishes the request; its answer goes nowhere, and nothing breaks."""
    with gated_server(engine) as (url, gated, batcher), errors_logged() as errors:
        body = json.dumps(REQUESTS[path]("hold: gone while in the model")).encode()
        sock = connect(url)
        sock.sendall(head(path, Content_Length=str(len(body))) + body)
        until(lambda: "hold: gone while in the model" in gated.texts, "the request is in the model")
        abort(sock)
        time.sleep(0.2)  # the server sees the reset while the model still runs
        gated.release.set()
        until(lambda: batcher.stats.requests == 1 and batcher.queued == 0, "the model finished")
        assert_healthy(url, engine, batcher, errors)


# -- shutdown --------------------------------------------------------------------------------


def test_shutdown_answers_every_request_in_flight_and_refuses_new_ones(engine, image_paths):
    """Nine requests are in flight (one in the model, eight queued: texts and images, Jina and
    Weaviate routes) when the server is told to stop. New connections are refused from then
    on, and once the model is released all nine are answered, merged into two batches."""
    images = [path.read_bytes() for path in image_paths]
    image = [base64.b64encode(data).decode() for data in images]
    calls = [
        ("/v1/embeddings", {"input": ["hold: in the model"]}),
        *[("/v1/embeddings", {"input": [f"text {i}"]}) for i in range(3)],
        ("/vectors", {"text": "weaviate text"}),
        *[("/v1/embeddings", {"input": [{"image": image[i]}]}) for i in range(3)],
        ("/vectorize", {"images": [image[3]]}),
    ]
    expected_texts = engine.encode_text(["hold: in the model", "text 0", "text 1", "text 2", "weaviate text"])
    expected = [*expected_texts, *engine.encode_image(images[:4])]
    answers: dict[int, httpx.Response] = {}
    refused_with: list[int] = []  # how many answers had arrived when a connection was first refused

    def post(url: str, i: int) -> None:
        path, body = calls[i]
        answers[i] = httpx.post(url + path, json=body, timeout=60)

    gated = Gated(engine)
    app = create_app(gated, ServerSettings())
    batcher = app.state.batcher
    with serve(app) as url:
        threads = [threading.Thread(target=post, args=(url, 0))]
        threads[0].start()
        until(lambda: gated.texts == ["hold: in the model"], "the first request is in the model")
        threads += [threading.Thread(target=post, args=(url, i)) for i in range(1, len(calls))]
        for thread in threads[1:]:
            thread.start()
        until(lambda: batcher.queued == len(calls) - 1, "the other requests are queued")

        def watch() -> None:
            """Once the server refuses connections, note how many answers it had sent; release the model."""
            while True:
                try:
                    connect(url).close()
                except ConnectionRefusedError:
                    refused_with.append(len(answers))
                    gated.release.set()
                    return
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
    # leaving the block told the server to exit and waited for it
    watcher.join(30)
    for thread in threads:
        thread.join(30)
    assert refused_with == [0], "new connections were accepted while requests were in flight"
    for i, (path, _) in enumerate(calls):
        assert answers[i].status_code == 200, (path, answers[i].text)
        np.testing.assert_allclose(vector(path, answers[i].json()), expected[i], atol=ATOL, err_msg=f"request {i}")
    # the holder; 4 texts in one batch; 4 images in one batch
    assert (batcher.stats.requests, batcher.stats.batches, batcher.stats.merged_batches) == (9, 3, 2)
    assert not batcher.running
    with pytest.raises(ConnectionRefusedError):
        connect(url)


class OutOfMemoryEngine(Gated):
    """The real engine, whose text tower runs out of accelerator memory on any text starting
    with ``huge`` (as the engine does after halving a batch down to that one text)."""

    def encode_tokens(self, tokenized, **kwargs):
        if any(self._tokenized[tuple(ids)].startswith("huge") for ids in tokenized.ids):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self._engine.encode_tokens(tokenized, **kwargs)


def test_out_of_memory_is_a_503_to_retry_and_the_server_carries_on(engine):
    app = create_app(OutOfMemoryEngine(engine), ServerSettings())
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path, body in [("/v1/embeddings", {"input": ["huge text"]}), ("/vectors", {"text": "huge text"})]:
            response = client.post(path, json=body)
            assert response.status_code == 503 and response.headers["retry-after"] == "1", response.text
            assert "ran out of memory" in response.text and "20.00 GiB" not in response.text
        np.testing.assert_allclose(embed(client, "fine"), engine.encode_text(["fine"]), atol=ATOL)


def test_the_batcher_returns_freed_memory_to_the_system(engine, monkeypatch):
    """glibc keeps what the batches free; the worker gives it back at most every
    TRIM_INTERVAL_S (here: after every batch)."""
    from jinaclip_integrations.server import batcher as batcher_module

    calls: list[float] = []
    monkeypatch.setattr(batcher_module, "TRIM_INTERVAL_S", 0.0)
    monkeypatch.setattr(batcher_module, "release_free_memory", lambda: calls.append(time.monotonic()) or True)
    with serve(create_app(engine, ServerSettings())) as url, httpx.Client(base_url=url, timeout=30) as client:
        for text in ("a", "b", "c"):
            embed(client, text)
    assert len(calls) >= 3
    assert batcher_module._malloc_trim() is not None or not sys.platform.startswith("linux")
