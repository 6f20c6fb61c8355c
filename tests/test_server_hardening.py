"""The embedding server against what an attacker, a stalled network or a careless client sends
(issue 17), over real HTTP on loopback where it matters.

- Refused bodies are freed at once and a body of millions of values is never parsed: the
  server's own process's memory (RSS and its peak) is measured around such requests.
- Decoding is bounded and fair: a per-request pixel budget; images decoded off the model's
  worker, so a text request is answered while an image request is still decoding (shown by the
  order of the answers, with the decoding held by the test, not by timing); each request
  fetches its image URLs on a pool of its own.
- Each text is tokenized once (a spy on the tokenizer).
- Unknown fields are refused, infinity's ``modality`` works, OpenAI token ids get an answer
  that says what to do.
- Smaller holes: refused URLs do not say what their host resolves to, no local path or object
  repr reaches a client, half-sent bodies are dropped, API keys clients cannot send as they
  are are refused at start, a keyless server takes JSON only, ``HEAD`` probes, and the data URI
  forms the README promises.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import io
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFile

from _servers import serve, serve_process
from conftest import V2_TINY
from jinaclip_integrations.server import ServerSettings, create_app, security
from jinaclip_integrations.server.http import BadRequest, json_object, printable

ATOL = 1e-5
MiB = 1024 * 1024
JSON = {"Content-Type": "application/json"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in its header and holds no pixel data:
    it passes the header checks and would fail only when decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def real_png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images(image_paths) -> list[bytes]:
    return [path.read_bytes() for path in image_paths]


@pytest.fixture(scope="module")
def keyless(engine) -> Iterator[httpx.Client]:
    with serve(create_app(engine, ServerSettings())) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def message(response: httpx.Response) -> str:
    body = response.json()
    return body["detail"] if "detail" in body else body["error"] if isinstance(body["error"], str) else body["error"]["message"]  # fmt: skip


# -- item 2: refused bodies ---------------------------------------------------------------------


def rss_peak(pid: int) -> int:
    """The process's peak resident set size so far (Linux's ``VmHWM``), in bytes."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_refused_bodies_of_millions_of_values_neither_stay_nor_peak_in_the_servers_memory():
    """Three 31 MiB bodies of 10.8 million empty objects (under the 32 MiB limit): before, each
    was parsed (about 900 MiB at its peak) and its tree kept by the error's frames (RSS +2.5 GB
    after the three, for good); now each is refused before parsing and nothing stays. The
    bounds are far from both: the server's RSS grows by less than 300 MiB over the run, its
    peak by less than 400 MiB."""
    import psutil

    body = b'{"input":[' + b"{}," * (31 * MiB // 3) + b"{}]}"
    with serve_process(V2_TINY) as (url, pid), httpx.Client(base_url=url, timeout=120) as client:
        server = psutil.Process(pid)
        for i in range(5):
            assert client.post("/v1/embeddings", json={"input": [f"warm-up {i}"]}).status_code == 200
        before = server.memory_info().rss
        refused = [client.post("/v1/embeddings", content=body, headers=JSON) for _ in range(3)]
        for i in range(20):
            assert client.post("/v1/embeddings", json={"input": [f"after {i}"]}).status_code == 200
        grown, peak = server.memory_info().rss - before, rss_peak(pid) - before
    assert grown < 300 * MiB, f"the server's RSS grew by {grown / MiB:.0f} MiB"
    assert peak < 400 * MiB, f"the server's RSS peaked {peak / MiB:.0f} MiB above where it was"
    for answer in refused:
        assert answer.status_code == 400 and "more than a request within the limit of 2048 items" in answer.text


@pytest.mark.parametrize("items", [1000, 2000])  # bodies of 50 and 100 KB: read on the event loop, on a worker thread
async def test_a_refused_requests_parsed_body_is_freed_by_reference_counting_alone(engine, items):
    """With the garbage collector off, what a refused request parsed is gone once it is
    answered: nothing keeps it (before, the error's frames and the task that ran them held each
    other, and the body, until a full collection, which a big body made rare)."""
    marker = f"freed-{uuid.uuid4()}"
    requests = {  # as bytes: the test holds no list of its own
        "/v1/embeddings": json.dumps({"input": [{"text": marker}] * items + [{"text": 5}]}),  # the last item is refused
        "/vectorize": json.dumps({"texts": [marker] * items, "images": ["not base64!"]}),
        "/vectors": json.dumps({"texts": [marker] * items, "config": {"dimensions": 48}}),
    }

    def parsed_lists() -> int:
        return sum(
            type(thing) is list and len(thing) >= items and thing[0] in (marker, {"text": marker})
            for thing in gc.get_objects()
        )

    app = create_app(engine, ServerSettings())
    transport = httpx.ASGITransport(app=app)
    gc.collect()
    gc.disable()
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://app") as client:  # fmt: skip
            for path, body in requests.items():
                answer = await client.post(path, content=body, headers=JSON)
                assert answer.status_code == 400, answer.text
                assert parsed_lists() == 0, f"{path}: the refused body's items are still held"
    finally:
        gc.enable()


@pytest.mark.parametrize("max_items", [10, 2048])
def test_a_body_with_more_values_than_the_items_allow_is_refused_before_parsing(max_items):
    many = b'{"input": [' + b",".join([b"{}"] * (max_items + 1100)) + b"]}"
    with pytest.raises(BadRequest, match=r"^request body holds \d+ or more values, .* \(refused before parsing\)$"):
        json_object(many, max_items)
    # commas inside strings, escaped quotes and backslashes are not values
    texts = ["a, b, c, " * 500, 'say \\"hi\\", then, go', "C:\\\\, D:\\\\", '"' * 100 + ","]
    body = json.dumps({"input": texts * 4, "model": "m"}).encode()
    assert body.count(b",") > max_items + 1024
    assert json_object(body, max_items)["input"] == texts * 4


# -- item 3: bounded, fair decoding ---------------------------------------------------------------


def test_a_requests_images_share_one_pixel_budget(engine, images):
    """Each header passes the per-image limit; together they do not (nothing is decoded)."""
    app = create_app(engine, ServerSettings(max_request_pixels=10_000))
    big = b64(png(9000, 9900))  # 89.1 megapixels: under the per-image limit of 89.5
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        four = client.post("/v1/embeddings", json={"input": ["a", *[{"image": b64(images[0])}] * 4]})  # 64x48 each
        assert four.status_code == 400
        assert message(four).startswith("invalid image at index 4: the images of this request have 12288 pixels")
        assert "more than the limit of 10000 per request (max_request_pixels)" in message(four)
        weaviate = client.post("/vectorize", json={"images": [b64(images[0])] * 4})
        assert weaviate.status_code == 400 and "max_request_pixels" in weaviate.json()["error"]
        assert client.post("/v1/embeddings", json={"input": [{"image": b64(images[0])}] * 3}).status_code == 200
    with serve(create_app(engine, ServerSettings())) as url, httpx.Client(base_url=url, timeout=60) as client:
        refused = client.post("/v1/embeddings", json={"input": [{"image": big}] * 4})  # the default budget
        assert refused.status_code == 400
        assert "have 356400000 pixels up to this one, more than the limit of 268435456" in message(refused)


@contextmanager
def released_at_the_latest(seconds: float = 20) -> Iterator[threading.Event]:
    """An event the test sets to release what it holds; set anyway after ``seconds`` (only a
    failing run waits that long), so a test that finds it set knows it was not released in time."""
    release = threading.Event()
    safety = threading.Timer(seconds, release.set)
    safety.start()
    try:
        yield release
    finally:
        release.set()
        safety.cancel()


@contextmanager
def held_decoding(monkeypatch, size: tuple[int, int]) -> Iterator[tuple[threading.Event, threading.Event]]:
    """PIL's decoding of any image of ``size`` waits, once started (first event), until the
    second event is set (see :func:`released_at_the_latest`)."""
    decoding = threading.Event()
    load = ImageFile.ImageFile.load
    with released_at_the_latest() as release:

        def held(self):
            if self.size == size:
                decoding.set()
                release.wait()
            return load(self)

        monkeypatch.setattr(ImageFile.ImageFile, "load", held)
        yield decoding, release


async def test_a_text_request_is_answered_while_an_image_request_is_decoding(engine, monkeypatch):
    """The image's decoding is held by the test; a text request sent meanwhile is answered
    first (before, the model's one worker decoded the image and the text waited behind it)."""
    image = real_png((37, 23))
    app = create_app(engine, ServerSettings())
    answered: list[str] = []
    with held_decoding(monkeypatch, (37, 23)) as (decoding, release), serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:

            async def post(name: str, body: dict) -> httpx.Response:
                response = await client.post("/v1/embeddings", json=body)
                answered.append(name)
                return response

            image_request = asyncio.ensure_future(post("image", {"input": [{"image": b64(image)}]}))
            await asyncio.to_thread(until, decoding.is_set, "the image is being decoded")
            text = await post("text", {"input": ["a cat"]})
            assert answered == ["text"] and not release.is_set(), "the text waited for the image's decoding"
            release.set()
            picture = await image_request
    assert answered == ["text", "image"]
    np.testing.assert_allclose(text.json()["data"][0]["embedding"], engine.encode_text(["a cat"])[0], atol=ATOL)
    np.testing.assert_allclose(picture.json()["data"][0]["embedding"], engine.encode_image([image])[0], atol=ATOL)
    assert app.state.batcher.stats.batches == 2  # the text, then the image: neither waited in the model


async def test_one_requests_slow_image_urls_do_not_hold_another_requests_fetch(engine, images):
    """A request's eight URLs hang (held by the test); another request's one URL is fetched and
    answered meanwhile (before, one shared pool of 8 threads was all taken by the first)."""
    held: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.startswith("/held/"):
                held.append(self.path)
                release.wait()
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(images[0])))
            self.end_headers()
            self.wfile.write(images[0])

        def log_message(self, *args):
            pass

    host = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=host.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{host.server_address[1]}"
    app = create_app(engine, ServerSettings(allow_image_urls=True, allow_private_urls=True, url_timeout_s=30))
    try:
        with released_at_the_latest() as release, serve(app) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                slow = asyncio.ensure_future(
                    client.post("/v1/embeddings", json={"input": [{"url": f"{base}/held/{i}"} for i in range(8)]})
                )
                await asyncio.to_thread(until, lambda: len(held) >= security.URL_CONCURRENCY, "the URLs hang")
                fast = await client.post("/v1/embeddings", json={"input": [{"url": f"{base}/cat.png"}]})
                assert not release.is_set() and not slow.done(), "the fetch waited for the other request's URLs"
                release.set()
                slow = await slow
    finally:
        host.shutdown()
        host.server_close()
    expected = engine.encode_image(images[:1])
    np.testing.assert_allclose([item["embedding"] for item in fast.json()["data"]], expected, atol=ATOL)
    assert slow.status_code == 200 and len(slow.json()["data"]) == 8


# -- item 4: each text tokenized once -----------------------------------------------------------------


def test_each_text_is_tokenized_once(keyless, engine, monkeypatch):
    """On every route, each text goes through the tokenizer once: for the usage count and the
    truncation flag, and what the model embeds (before, /v1/embeddings tokenized it twice)."""
    seen: list[str] = []
    encode = engine.tokenizer.encode_reporting

    def spy(texts, max_length):
        seen.extend(texts)
        return encode(texts, max_length)

    monkeypatch.setattr(engine.tokenizer, "encode_reporting", spy)
    long = "cat " * 2000
    calls = [
        ("/v1/embeddings", {"input": ["one", long + "two", {"text": "three"}], "task": "retrieval.query"}, 3),
        ("/v1/embeddings", {"input": ["four"], "encoding_format": "float"}, 1),
        ("/vectorize", {"texts": ["five", "six"]}, 2),
        ("/vectors", {"texts": ["seven"], "config": {"task_type": "query"}}, 1),
        ("/query/vectors", {"text": "eight"}, 1),
    ]
    for path, body, texts in calls:
        seen.clear()
        answer = keyless.post(path, json=body)
        assert answer.status_code == 200, answer.text
        assert len(seen) == texts, (path, seen)
    usage = keyless.post("/v1/embeddings", json={"input": ["one", long]}).json()
    assert usage["data"][1]["truncated"] is True  # flags and usage come from the one tokenization
    assert usage["usage"]["prompt_tokens"] == sum(map(len, engine.tokenize(["one", long]).ids))


# -- item 5: no silent wrong answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path, body, pattern",
    [
        ("/vectorize", {"texts": ["a"], "modality": "image"}, r"^unknown field 'modality'; the fields read here are \['images', 'texts'\]$"),
        ("/vectors", {"text": "a", "config": {"normalize": False}}, r"^unknown field 'config.normalize'; the fields read here are \['dimensions', 'pooling_strategy', 'task_type'\]$"),
        ("/vectors", {"texts": ["a"], "truncate": True}, r"^unknown field 'truncate'"),
        ("/query/vectors", {"text": "a", "task": "x"}, r"^unknown field 'task'"),
    ],
)  # fmt: skip
def test_weaviate_bodies_with_unknown_fields_are_refused(keyless, path, body, pattern):
    answer = keyless.post(path, json=body)
    assert answer.status_code == 400 and set(answer.json()) == {"error"}
    assert re.search(pattern, answer.json()["error"]), answer.json()


def test_the_fields_weaviates_go_client_sends_are_accepted(keyless, engine):
    go = {"text": "a cat", "dims": 0, "vector": None, "error": "", "config": {"pooling_strategy": "masked_mean"}}
    answer = keyless.post("/passage/vectors", content=json.dumps(go))  # no Content-Type, as the Go client
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["vector"], engine.encode_text(["a cat"])[0], atol=ATOL)


def test_infinitys_modality_field(keyless, engine, images):
    data_uri = "data:image/png;base64," + b64(images[0])
    as_image = keyless.post("/v1/embeddings", json={"input": [data_uri, b64(images[1])], "modality": "image"})
    np.testing.assert_allclose([item["embedding"] for item in as_image.json()["data"]], engine.encode_image(images[:2]), atol=ATOL)  # fmt: skip
    mixed = keyless.post("/v1/embeddings", json={"input": [b64(images[0]), {"text": "a cat"}], "modality": "image"})
    np.testing.assert_allclose(mixed.json()["data"][1]["embedding"], engine.encode_text(["a cat"])[0], atol=ATOL)
    as_text = keyless.post("/v1/embeddings", json={"input": [data_uri], "modality": "text"})
    np.testing.assert_allclose(as_text.json()["data"][0]["embedding"], engine.encode_text([data_uri])[0], atol=ATOL)
    bad = keyless.post("/v1/embeddings", json={"input": ["not an image"], "modality": "image"})
    assert bad.status_code == 400 and message(bad).startswith("invalid image at index 0: ")


def test_openai_token_ids_get_an_answer_that_says_what_to_do(keyless):
    """What langchain_openai.OpenAIEmbeddings sends with check_embedding_ctx_length=True."""
    answer = keyless.post("/v1/embeddings", json={"input": [[9906, 1917]], "model": "m", "encoding_format": "base64"})
    assert answer.status_code == 400
    text = answer.json()["error"]["message"]
    assert "another model's tokenizer" in text and "check_embedding_ctx_length=False" in text


# -- item 6: smaller holes ---------------------------------------------------------------------------


def test_a_refused_url_says_nothing_of_what_its_host_resolves_to(engine, monkeypatch):
    """A host resolving to a private address and one that does not resolve get the same words,
    and neither names an address."""
    lookup = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "intranet.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.20.30.40", 80))]
        if host == "missing.example":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    app = create_app(engine, ServerSettings(allow_image_urls=True))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        said = {}
        for host in ("intranet.example", "missing.example"):
            answer = client.post("/v1/embeddings", json={"input": [{"url": f"http://{host}/a.png"}]})
            assert answer.status_code == 400
            said[host] = message(answer).replace(host, "HOST")
    assert "10.20.30.40" not in said["intranet.example"] and "not known" not in said["missing.example"]
    assert said["intranet.example"] == said["missing.example"], said


def test_clients_are_told_the_models_name_never_its_path(keyless):
    folder = str(V2_TINY.parent)
    shown = [
        keyless.get("/v1/models").text,
        keyless.post("/v1/embeddings", json={"input": ["a"]}).text,
        keyless.get("/meta").text,
        keyless.get("/query/meta").text,
    ]
    for text in shown:
        assert V2_TINY.name in text and folder not in text, text[:300]
    assert security.public_model_name("jinaai/jina-clip-v2") == "jinaai/jina-clip-v2"
    assert security.public_model_name("/home/someone/models/jina-clip-v2/") == "jina-clip-v2"
    assert security.public_model_name("~/models/clip") == "clip"


def test_error_messages_carry_no_object_reprs(keyless):
    answer = keyless.post("/v1/embeddings", json={"input": [{"image": b64(b"plain text, not an image")}]})
    assert answer.status_code == 400 and "object at 0x" not in answer.text and "BytesIO" not in answer.text
    assert printable("cannot identify image file <_io.BytesIO object at 0x7f3a2c1d0e50>") == (
        "cannot identify image file the data"
    )


def test_a_half_sent_body_is_answered_408_and_its_connection_closed(engine):
    """A client sends its headers and part of its body, then waits: after ``body_timeout_s``
    the server answers 408 and hangs up (before, it waited for the rest forever)."""
    with serve(create_app(engine, ServerSettings(body_timeout_s=0.5))) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=15) as sock:
            head = "POST /v1/embeddings HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            sock.sendall(head.encode() + b'{"input": ')
            answer = b""
            while chunk := sock.recv(65536):  # until the server closes the connection
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"the request body did not arrive within 0.5 s" in answer


@pytest.mark.parametrize("key", ["clé", "ключ", "key\n", " key", "key ", "a\x7fb", "tab\tkey"])
def test_an_api_key_clients_cannot_send_as_it_is_is_refused_at_start(key, monkeypatch):
    with pytest.raises(ValueError, match=r"^api_key must be visible ASCII characters"):
        ServerSettings(api_key=key)
    monkeypatch.setenv("JINACLIP_API_KEY", key)
    with pytest.raises(ValueError, match=r"^api_key must be visible ASCII"):
        ServerSettings.from_env()
    assert ServerSettings(api_key="with inner spaces ~!").api_key == "with inner spaces ~!"


def test_jinaclip_serve_stops_at_once_on_such_a_key(tmp_path):
    env = {**os.environ, "JINACLIP_API_KEY": "clé", "JINACLIP_CONFIG": str(tmp_path / "none.toml")}
    command = [sys.executable, "-m", "jinaclip_integrations.cli", "serve", "--model", str(V2_TINY), "--port", "0"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "jinaclip: error: api_key must be visible ASCII characters" in result.stderr


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"Content-Type": "text/plain"}, 415),  # what a page's fetch() or a form sends without asking first
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
        ({"Origin": "https://page.example"}, 415),  # a page's untyped body (a Blob)
        ({}, 200),  # no type from a program (Weaviate's text2vec-transformers client)
        ({"Content-Type": "application/json; charset=utf-8"}, 200),
        ({"Content-Type": "Application/JSON", "Origin": "https://page.example"}, 200),  # JSON needs a preflight
    ],
)
def test_a_keyless_server_takes_only_json(keyless, headers, status):
    for path, body in (("/v1/embeddings", {"input": ["a"]}), ("/vectorize", {"texts": ["a"]})):
        answer = keyless.post(path, content=json.dumps(body), headers=headers)
        assert answer.status_code == status, (path, answer.text)
        if status == 415:
            assert "Content-Type must be application/json" in answer.text


def test_with_a_key_the_json_rule_holds_on_the_routes_left_open(engine):
    app = create_app(engine, ServerSettings(api_key="k", weaviate_routes_auth=False))
    plain = {"Content-Type": "text/plain"}
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/vectorize", content=b'{"texts": ["a"]}', headers=plain).status_code == 415
        keyed = client.post(
            "/v1/embeddings", content=b'{"input": ["a"]}', headers=plain | {"Authorization": "Bearer k"}
        )
        assert keyed.status_code == 200  # a page cannot send the key without asking first


def test_get_probes_answer_head_too(engine):
    app = create_app(engine, ServerSettings(api_key="k"))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        for path, status in (("/health", 200), ("/ready", 200), ("/.well-known/live", 204), ("/passage/.well-known/ready", 204)):  # fmt: skip
            answer = client.head(path)
            assert answer.status_code == status and answer.content == b"", path
        assert client.head("/v1/models").status_code == 401
        assert client.head("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200
        assert client.head("/meta", headers={"Authorization": "Bearer k"}).status_code == 200


@pytest.mark.parametrize("prefix", ["data:application/octet-stream;base64,", "data:;base64,", "DATA:IMAGE/PNG;BASE64,"])
def test_the_data_uri_forms_the_readme_accepts(keyless, engine, images, prefix):
    expected = engine.encode_image(images[:1])[0]
    jina = keyless.post("/v1/embeddings", json={"input": [{"image": prefix + b64(images[0])}]})
    assert jina.status_code == 200, jina.text
    np.testing.assert_allclose(jina.json()["data"][0]["embedding"], expected, atol=ATOL)
    weaviate = keyless.post("/vectorize", json={"images": [prefix + b64(images[0])]})
    np.testing.assert_allclose(weaviate.json()["imageVectors"][0], expected, atol=ATOL)
    refused = keyless.post("/v1/embeddings", json={"input": [{"image": "data:text/html;base64," + b64(images[0])}]})
    assert refused.status_code == 400
