"""The embedding server over real HTTP on loopback: the openai SDK, Jina-style requests, auth,
limits, SSRF-safe URL fetching, and merging of concurrent requests into engine batches.

Vectors are compared with the engine's own outputs to ``atol=1e-5``: JSON and base64 carry the
float32 values exactly; the margin covers the engine's batch-to-batch float noise (requests
merged into one batch are padded together) and re-normalizing a truncated vector in numpy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from _servers import serve
from conftest import V2_TINY
from jinaclip_integrations.errors import InputError
from jinaclip_integrations.server import ServerSettings, add_server_arguments, create_app, security, settings_from_args
from jinaclip_integrations.server.batcher import BatcherClosed, MicroBatcher, OutOfMemory
from jinaclip_integrations.server.http import BadRequest, Failure, failure, validate
from jinaclip_integrations.server.schemas import VectorRequest, VectorsRequest
from jinaclip_integrations.weaviate import inference_router

ATOL = 1e-5
KEY = "test-key-123"
QUERY = "retrieval.query"
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "一只猫坐在沙发上。", ""]
AUTH = {"Authorization": f"Bearer {KEY}"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def images(image_paths) -> list[bytes]:
    return [path.read_bytes() for path in image_paths]


@pytest.fixture(scope="module")
def server(engine):
    """The default settings with an API key; yields (base URL, app)."""
    app = create_app(engine, ServerSettings(api_key=KEY))
    with serve(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], headers=AUTH, timeout=60) as client:
        yield client


def vectors(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and [item["index"] for item in body["data"]] == list(range(len(body["data"])))
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float32)


def decode(embedding: list[float] | str) -> np.ndarray:
    """An embedding as the SDK returns it: floats, or base64 when asked for explicitly."""
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.asarray(embedding, dtype=np.float32)


def assert_error(response: httpx.Response, status: int, shape: str, pattern: str, param: str | None = None) -> None:
    """``shape``: "openai" ({"error": {...}}), "jina" ({"detail": ...}) or "both"."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    keys = {"openai": {"error"}, "jina": {"detail"}, "both": {"error", "detail"}}[shape]
    assert set(body) == keys, body
    if "error" in body:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
        assert re.search(pattern, error["message"]), error
        if param is not None:
            assert error["param"] == param
    if "detail" in body:
        assert re.search(pattern, body["detail"]), body


# -- the openai SDK --------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_openai_client_gets_the_engines_vectors(server, engine, encoding):
    client = openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY)
    kwargs = {} if encoding is None else {"encoding_format": encoding}  # None: the SDK asks for base64
    response = client.embeddings.create(model="jina-clip-v2", input=TEXTS, **kwargs)
    got = np.array([decode(item.embedding) for item in response.data], dtype=np.float32)
    np.testing.assert_allclose(got, engine.encode_text(TEXTS, task=None), atol=ATOL)
    assert response.model == V2_TINY.name  # any model name is accepted, the served one answers (never its path)
    assert response.usage.prompt_tokens == response.usage.total_tokens > len(TEXTS)

    single = client.embeddings.create(model="anything", input="hello", dimensions=16, **kwargs)
    assert len(single.data) == 1 and len(decode(single.data[0].embedding)) == 16
    np.testing.assert_allclose(
        decode(single.data[0].embedding), engine.encode_text(["hello"], truncate_dim=16)[0], atol=ATOL
    )


def test_openai_client_lists_the_model_and_reports_errors(server, engine):
    client = openai.OpenAI(base_url=f"{server[0]}/v1", api_key=KEY)
    assert [model.id for model in client.models.list()] == [V2_TINY.name]
    with pytest.raises(openai.BadRequestError, match="dimensions 48 is not supported"):
        client.embeddings.create(model="jina-clip-v2", input=["a"], dimensions=48)
    with pytest.raises(openai.BadRequestError, match="token-id input"):
        client.embeddings.create(model="jina-clip-v2", input=[[1, 2, 3]])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server[0]}/v1", api_key="wrong").embeddings.create(model="m", input=["a"])


# -- Jina-style requests ---------------------------------------------------------------------------


@pytest.mark.parametrize("task, engine_task", [(QUERY, QUERY), ("retrieval.passage", None), (None, None)])
def test_jina_mixed_texts_and_images_in_order(http, engine, images, task, engine_task):
    data_uri = "data:image/png;base64," + b64(images[1])
    items = [
        "plain text",
        {"image": b64(images[0])},
        {"text": "a cat"},
        {"image": data_uri},
        {"bytes": b64(images[2])},
        {"text": "ein Hund"},
        {"image": b64(images[7])},  # a JPEG
    ]
    body = {"model": "jina-clip-v2", "input": items} | ({"task": task} if task else {})
    got = vectors(http.post("/v1/embeddings", json=body))
    texts = engine.encode_text(["plain text", "a cat", "ein Hund"], task=engine_task)
    pictures = engine.encode_image([images[0], images[1], images[2], images[7]])
    np.testing.assert_allclose(got[[0, 2, 5]], texts, atol=ATOL)
    np.testing.assert_allclose(got[[1, 3, 4, 6]], pictures, atol=ATOL)  # images have no task


def test_jina_options_normalized_dimensions_and_types(http, engine, images):
    items = [{"text": "a cat"}, {"image": b64(images[0])}]
    raw_text = engine.encode_text(["a cat"], normalize=False)[0]
    raw_image = engine.encode_image([images[0]], normalize=False)[0]

    plain = vectors(http.post("/v1/embeddings", json={"input": items, "normalized": False}))
    np.testing.assert_allclose(plain, [raw_text, raw_image], atol=ATOL)
    assert not np.allclose(np.linalg.norm(plain, axis=1), 1)

    short = vectors(http.post("/v1/embeddings", json={"input": items, "dimensions": 16}))
    np.testing.assert_allclose(short[0], engine.encode_text(["a cat"], truncate_dim=16)[0], atol=ATOL)
    np.testing.assert_allclose(short[1], engine.encode_image([images[0]], truncate_dim=16)[0], atol=ATOL)
    short_raw = vectors(http.post("/v1/embeddings", json={"input": items, "dimensions": 16, "normalized": False}))
    np.testing.assert_allclose(short_raw, [raw_text[:16], raw_image[:16]], atol=ATOL)
    full = vectors(http.post("/v1/embeddings", json={"input": items, "dimensions": 64}))
    np.testing.assert_allclose(full[0], engine.encode_text(["a cat"])[0], atol=ATOL)

    for key in ("embedding_type", "encoding_type"):
        response = http.post("/v1/embeddings", json={"input": items, key: "base64"})
        decoded = [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in response.json()["data"]]
        np.testing.assert_allclose(decoded, full, atol=ATOL)
    signs = np.packbits(full > 0, axis=1)
    ubinary = http.post("/v1/embeddings", json={"input": items, "embedding_type": "ubinary"}).json()
    assert [item["embedding"] for item in ubinary["data"]] == signs.tolist()
    binary = http.post("/v1/embeddings", json={"input": items, "embedding_type": "binary"}).json()
    unpacked = np.unpackbits((np.array([item["embedding"] for item in binary["data"]]) + 128).astype(np.uint8), axis=1)
    assert (unpacked == (full > 0)).all()  # how Jina clients read it


def test_usage_counts_text_tokens_and_image_patches(http, engine, images):
    tokens = sum(len(ids) for ids in engine.tokenizer.encode(["hello world", "a"], engine.max_length))
    body = http.post("/v1/embeddings", json={"input": ["hello world", {"text": "a"}, {"image": b64(images[0])}]}).json()
    patches = (engine.config.vision.image_size // engine.config.vision.patch_size) ** 2 + 1
    assert body["usage"] == {"prompt_tokens": tokens + patches, "total_tokens": tokens + patches}


def test_long_texts_are_truncated_by_the_engine_and_marked(http, engine):
    text = "cat " * 2000  # far more tokens than max_length
    body = http.post(
        "/v1/embeddings", json={"input": ["short", text, {"text": text}], "task": "retrieval.query"}
    ).json()
    np.testing.assert_allclose(body["data"][1]["embedding"], engine.encode_text([text], task="retrieval.query")[0], atol=ATOL)  # fmt: skip
    assert [item.get("truncated", False) for item in body["data"]] == [False, True, True]
    assert body["usage"]["prompt_tokens"] == sum(map(len, engine.tokenize(["short", text, text], task="retrieval.query").ids))  # fmt: skip


# -- auth -----------------------------------------------------------------------------------------


def test_auth(server):
    url = server[0]
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": KEY},
            {"Authorization": "Basic " + KEY},
        ):
            response = anonymous.post("/v1/embeddings", json={"input": ["a"]}, headers=headers)
            assert_error(response, 401, "both", r"missing or invalid API key")  # the body was not read
            assert response.headers["www-authenticate"] == "Bearer"
        assert_error(anonymous.get("/v1/models"), 401, "both", "API key")
        assert_error(anonymous.get("/openapi.json"), 401, "both", "API key")
        response = anonymous.post("/vectorize", json={"texts": ["a"]})  # Weaviate's shape on its routes
        assert response.status_code == 401 and set(response.json()) == {"error"}
        assert anonymous.get("/health").json() == {"status": "ok"}
        assert anonymous.get("/ready").status_code == 200
        for path in ("/.well-known/live", "/.well-known/ready", "/query/.well-known/ready"):
            assert anonymous.get(path).status_code == 204
        good = anonymous.post("/v1/embeddings", json={"input": ["a"]}, headers={"Authorization": f"bearer {KEY}"})
        assert good.status_code == 200
        assert anonymous.post("/vectorize", json={"texts": ["a"]}, headers=AUTH).status_code == 200


def test_weaviate_routes_can_be_left_open(engine):
    app = create_app(engine, ServerSettings(api_key=KEY, weaviate_routes_auth=False))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as anonymous:
        assert anonymous.post("/vectorize", json={"texts": ["a"]}).status_code == 200
        assert anonymous.post("/query/vectors", json={"text": "a"}).status_code == 200
        assert_error(anonymous.post("/v1/embeddings", json={"input": ["a"]}), 401, "both", "API key")


def is_probe(path: str) -> bool:
    """The routes documented as open: health, readiness and Weaviate's probes."""
    return (
        path in ("/health", "/ready") or re.fullmatch(r"(/passage|/query)?/\.well-known/(live|ready)", path) is not None
    )


def every_route(routes: list, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(path, method) of every route, into included routers (FastAPI keeps them nested)."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from every_route(route.original_router.routes, prefix + route.include_context.prefix)
        else:
            yield from ((prefix + route.path, method) for method in route.methods)


@pytest.mark.parametrize("weaviate_routes_auth", [True, False])
async def test_every_route_needs_the_key_but_the_probes(engine, weaviate_routes_auth):
    """Every path and method of the app (schema pages, unlisted routes and unknown paths
    included): 401 without the key, anything else with it."""
    app = create_app(engine, ServerSettings(api_key=KEY, weaviate_routes_auth=weaviate_routes_auth))
    weaviate = {path for path, _ in every_route(inference_router(engine).routes)}
    calls = sorted(every_route(app.routes))
    calls += [("/no/such/route", "GET"), ("/v1/embeddings", "DELETE")]
    paths = {path for path, _ in calls}
    assert {"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/v1/embeddings", "/v1/models"} <= paths
    assert {"/vectorize", "/vectors/", "/query/vectors", "/passage/meta", "/query/.well-known/ready"} <= paths
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://app") as client:  # fmt: skip
        for path, method in calls:
            body = b"{}" if method == "POST" else None
            anonymous = await client.request(method, path, content=body)
            if is_probe(path) or (not weaviate_routes_auth and path in weaviate):
                assert anonymous.status_code != 401, (method, path)
            else:
                assert anonymous.status_code == 401, (method, path, anonymous.status_code)
                assert anonymous.headers["www-authenticate"] == "Bearer"
            keyed = await client.request(method, path, content=body, headers=AUTH)
            assert keyed.status_code != 401, (method, path)


def test_the_key_is_compared_in_constant_time(server, monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    with httpx.Client(base_url=server[0], timeout=60) as client:
        assert client.get("/v1/models", headers={"Authorization": "Bearer test-key-12X"}).status_code == 401
        assert client.get("/v1/models", headers=AUTH).status_code == 200
    assert compared == [(b"test-key-12X", KEY.encode()), (KEY.encode(), KEY.encode())]


def test_settings_and_command_line(monkeypatch):
    monkeypatch.setenv("JINACLIP_API_KEY", "from-env")
    parser = argparse.ArgumentParser()
    add_server_arguments(parser)
    settings = settings_from_args(parser.parse_args([]))
    assert settings == ServerSettings(api_key="from-env")
    args = parser.parse_args(["--api-key", "flag", "--allow-image-urls", "--allow-private-urls", "--weaviate-open",
                              "--max-batch-items", "1", "--max-wait-ms", "0", "--max-items", "10", "--max-body-mb", "0.5",
                              "--port", "9000", "--host", "0.0.0.0"])  # fmt: skip
    assert (args.host, args.port) == ("0.0.0.0", 9000)
    assert settings_from_args(args) == ServerSettings(
        api_key="flag", allow_image_urls=True, allow_private_urls=True, weaviate_routes_auth=False,
        max_batch_items=1, max_wait_ms=0, max_items=10, max_body_bytes=512 * 1024,
    )  # fmt: skip
    monkeypatch.setenv("JINACLIP_API_KEY", "")
    assert ServerSettings.from_env().api_key is None
    assert "from-env" not in parser.format_help()
    for bad in (
        {"max_items": 0},
        {"max_wait_ms": -1},
        {"max_body_bytes": 1.5},
        {"api_key": ""},
        {"api_key": "clé"},
        {"max_batch_items": True},
        {"max_request_pixels": 0},
        {"body_timeout_s": 0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServerSettings(**bad)


def test_token_check():
    assert security.token_matches("Bearer abc", "abc") and security.token_matches("bearer  abc ", "abc")
    assert security.token_matches(b"Bearer abc", "abc")  # the header's bytes, as they came
    for header in (None, "", "abc", "Bearer", "Bearer ab", "Bearer abcd", "Token abc", "Bearer ✓", b"Bearer ab\xe9"):
        assert not security.token_matches(header, "abc")


# -- limits and bad requests ------------------------------------------------------------------------

LIMITS = ServerSettings(max_items=4, max_text_chars=50, max_body_bytes=64 * 1024, max_image_pixels=1000)


@pytest.fixture(scope="module")
def limited(engine) -> Iterator[httpx.Client]:
    with serve(create_app(engine, LIMITS)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


# fmt: off
@pytest.mark.parametrize(
    "body, status, shape, pattern, param",
    [
        ({"input": ["a"] * 5, "encoding_format": "float"}, 400, "openai", r"^input has 5 items, more than the limit of 4$", "input"),
        ({"input": ["a"] * 5, "task": QUERY}, 400, "jina", r"^input has 5 items", None),
        ({"input": ["a"] * 5}, 400, "both", r"^input has 5 items", "input"),  # plain texts: either API
        ({"input": ["ok", "x" * 51], "task": QUERY}, 400, "jina", r"^invalid text at index 1: text has 51 characters, more than the limit of 50$", None),
        ({"input": ["a", {"image": "TINY"}, {"image": "BIG"}]}, 400, "jina", r"^invalid image at index 2: image has 64x48 = 3072 pixels, more than the limit of 1000$", None),
        ({"input": ["a", {"image": "not base64!"}]}, 400, "jina", r"^invalid image at index 1: not valid base64", None),
        ({"input": [{"bytes": b64(b"plain text, not an image")}]}, 400, "jina", r"^invalid image at index 0: .*not an image in an accepted format", None),
        ({"input": [{"image": ""}]}, 400, "jina", r"^invalid image at index 0: empty image", None),
        ({"input": ["a", {"image": "https://example.com/cat.png"}]}, 400, "jina", r"^invalid image at index 1: image URLs are not fetched by this server.*--allow-image-urls", None),
        ({"input": [{"url": "https://example.com/cat.png"}]}, 400, "jina", r"^invalid image at index 0: image URLs are not fetched", None),
        ({"input": [{"image": "file:///etc/passwd"}]}, 400, "jina", r"^invalid image at index 0: image URLs are not fetched", None),
        ({"input": [1, 2, 3], "model": "m"}, 400, "openai", r"^token-id input \(at index 0\) is not supported: .*check_embedding_ctx_length=False", "input"),
        ({"input": ["a", [1, 2]]}, 400, "openai", r"^token-id input \(at index 1\)", "input"),
        ({"input": ["a"], "task": "classification"}, 400, "jina", r"^task 'classification' is not supported; choose one of \['retrieval.passage', 'retrieval.query'\]$", None),
        ({"input": ["a"], "dimensions": 48, "encoding_format": "float"}, 400, "openai", r"^dimensions 48 is not supported by this model; choose one of \[8, 16, 32, 64\]$", "dimensions"),
        ({"input": ["a"], "dimensions": "16", "user": "u"}, 400, "openai", r"^dimensions: Input should be a valid integer", "dimensions"),
        ({"input": ["a"], "normalized": "yes"}, 400, "jina", r"^normalized: Input should be a valid boolean", None),
        ({"input": ["a"], "embedding_type": "int4"}, 400, "jina", r"^embedding_type: Input should be 'float', 'base64'", None),
        ({"input": ["a"], "late_chunking": True}, 400, "jina", r"^late_chunking is not supported", None),
        ({"input": [{"txt": "a"}]}, 400, "jina", r"^invalid input at index 0: expected an object with one of the keys \['text', 'image', 'url', 'bytes'\], got \['txt'\]$", None),
        ({"input": [{"text": "a", "image": "b"}]}, 400, "jina", r"^invalid input at index 0: expected an object with one of the keys", None),
        ({"input": [{"text": "a", "lang": "en"}]}, 400, "jina", r"^invalid input at index 0: unknown key 'lang' in an item", None),
        ({"input": ["a"], "colour": "red"}, 400, "both", r"^unknown field 'colour'; the fields read here are \[.*'dimensions'", "colour"),
        ({"input": ["a"], "encoding_format": "float", "input_type": "query"}, 400, "openai", r"^unknown field 'input_type'", "input_type"),
        ({"input": ["a"], "task": QUERY, "colour": "red"}, 400, "jina", r"^unknown field 'colour'", None),
        ({"input": ["a"], "modality": "audio"}, 400, "both", r"^modality: Input should be 'text' or 'image'", "modality"),
        ({"input": ["a", {"text": 5}]}, 400, "jina", r"^invalid text at index 1: text must be a string, got int$", None),
        ({"input": ["a", None]}, 400, "both", r"^invalid input at index 1: expected a string or an object, got null$", "input"),
        ({"input": ["a", "\ud800"]}, 400, "both", r"^invalid text at index 1: not valid Unicode", "input"),
        ({"input": []}, 400, "both", r"^input must not be empty$", "input"),
        ({"input": {"text": "a"}}, 400, "jina", r"^input must be a string or a list, not dict$", None),
        ({"model": "m"}, 400, "both", r"^input: Field required$", "input"),
        (b"{not json", 400, "both", r"^request body is not valid JSON", None),
        (b"[]", 400, "both", r"^request body must be a JSON object, not list$", None),
    ],
)
# fmt: on
def test_bad_requests(limited, images, body, status, shape, pattern, param):
    if isinstance(body, dict) and isinstance(body.get("input"), list):
        swap = {"TINY": b64(images[2]), "BIG": b64(images[0])}  # 5x7 and 64x48 pixels
        body["input"] = [item | {"image": swap.get(item["image"], item["image"])} if isinstance(item, dict) and "image" in item else item for item in body["input"]]  # fmt: skip
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = limited.post("/v1/embeddings", content=content, headers={"Content-Type": "application/json"})
    assert_error(response, status, shape, pattern, param)


def test_body_size_limit(limited):
    big = json.dumps({"input": ["x" * 40] * 2000}).encode()  # > 64 KiB
    assert_error(limited.post("/v1/embeddings", content=big), 413, "both", r"request body is too large: \d+ bytes; the limit is 65536 bytes")  # fmt: skip

    def chunks():  # no Content-Length: the limit is counted as the body streams in
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    assert_error(limited.post("/v1/embeddings", content=chunks()), 413, "both", r"request body is too large: more than that")  # fmt: skip
    response = limited.post("/vectorize", content=big)  # every route, in its own shape
    assert response.status_code == 413 and set(response.json()) == {"error"}
    assert limited.post("/v1/embeddings", json={"input": ["x" * 40] * 4}).status_code == 200


# -- image URLs ------------------------------------------------------------------------------------


class _ImageHandler(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}  # path -> (status, headers, body)

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path == "/slow":
            time.sleep(1.0)
        status, headers, body = self.routes.get(self.path, (404, {}, b"missing"))
        if self.path == "/slow-body":  # the headers at once, then the body a few bytes at a time
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the fetch hangs up at its deadline
                for start in range(0, len(body), 8):
                    self.wfile.write(body[start : start + 8])
                    self.wfile.flush()
                    time.sleep(0.1)
            return
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def image_host(host: str, image: bytes) -> Iterator[str]:
    """An HTTP server on ``host`` with an image, redirects, web pages, a loop and slow routes."""
    handler = type("Handler", (_ImageHandler,), {})
    server = ThreadingHTTPServer((host, 0), handler)
    base = f"http://{host}:{server.server_address[1]}"
    handler.routes = {
        "/cat.png": (200, {"Content-Type": "image/png"}, image),
        "/octet": (200, {"Content-Type": "application/octet-stream"}, image),
        "/hop": (302, {"Location": "/cat.png"}, b""),
        "/to-loopback": (301, {"Location": f"http://127.0.0.1:{server.server_address[1]}/cat.png"}, b""),
        "/page": (200, {"Content-Type": "text/html"}, b"<html>not an image</html>"),
        "/plain": (200, {"Content-Type": "Text/Plain; charset=utf-8"}, b"not an image"),
        "/json": (200, {"Content-Type": "application/json"}, b'{"error": "not found"}'),
        "/junk": (200, {"Content-Type": "image/png"}, b"not really a png"),
        "/loop": (302, {"Location": "/loop"}, b""),
        "/slow": (200, {"Content-Type": "image/png"}, image),
        "/slow-body": (200, {}, image),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def fetching(engine):
    """A server that fetches image URLs, public addresses only."""
    app = create_app(engine, ServerSettings(allow_image_urls=True, url_timeout_s=0.5))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


# fmt: off
@pytest.mark.parametrize(
    "url, pattern",
    [
        ("http://127.0.0.1:{port}/cat.png", r"refused to fetch http://127.0.0.1:\d+/cat.png: its host is not a public address that resolves \(start the server with --allow-private-urls"),
        ("http://localhost:{port}/cat.png", r"refused to fetch http://localhost:\d+/cat.png: its host is not a public address"),
        ("http://[::1]:{port}/cat.png", r"refused to fetch http://\[::1\]:\d+/cat.png: its host is not a public address"),
        ("http://10.1.2.3/cat.png", r"refused to fetch http://10.1.2.3/cat.png: its host is not a public address"),
        ("http://169.254.169.254/latest/meta-data", r"refused to fetch http://169.254.169.254/latest/meta-data: its host is not a public address"),
        ("http://0.0.0.0:{port}/cat.png", r"refused to fetch http://0.0.0.0:\d+/cat.png: its host is not a public address"),
        ("ftp://example.com/cat.png", r"only http and https image URLs are fetched, not 'ftp'"),
        ("http://user:secret@example.com/cat.png", r"URLs with credentials are not supported"),
        ("http://example.com:99999/cat.png", r"invalid URL"),
    ],
)
# fmt: on
def test_urls_to_private_addresses_are_refused(fetching, images, url, pattern):
    with image_host("127.0.0.1", images[0]) as base:
        port = base.rsplit(":", 1)[1]
        response = fetching.post("/v1/embeddings", json={"input": ["a", {"image": url.format(port=port)}]})
    assert_error(response, 400, "jina", r"^invalid image at index 1: .*" + pattern)


def test_url_fetching_checks_every_redirect(fetching, engine, images, monkeypatch):
    """127.0.0.2 stands in for a public host (the address check is told so); it redirects to
    127.0.0.1, which must still be refused."""
    public = security.address_allowed
    monkeypatch.setattr(security, "address_allowed", lambda address: address == "127.0.0.2" or public(address))
    with image_host("127.0.0.2", images[0]) as base:
        expected = engine.encode_image([images[0]])[0]
        for path in ("/cat.png", "/octet", "/hop"):
            got = vectors(
                fetching.post("/v1/embeddings", json={"input": [{"image": base + path}, {"url": base + path}]})
            )
            np.testing.assert_allclose(got, [expected, expected], atol=ATOL)
        cases = {
            "/to-loopback": r"refused to fetch http://127.0.0.1:\d+/cat.png: its host is not a public address",
            "/loop": r"more than 3 redirects",
            "/page": r"/page returned text/html, not an image$",
            "/plain": r"/plain returned Text/Plain, not an image$",
            "/json": r"/json returned application/json, not an image$",
            "/junk": r"not an image",
            "/missing": r"HTTP 404 fetching",
            "/slow": r"/slow took longer than 0.5 s$",  # slow headers
            "/slow-body": r"/slow-body took longer than 0.5 s$",  # headers at once, the body slowly
        }
        for path, pattern in cases.items():  # "took longer than 0.5 s": cut at the deadline, not answered late
            response = fetching.post("/v1/embeddings", json={"input": ["a", "b", {"url": base + path}]})
            assert_error(response, 400, "jina", r"^invalid image at index 2: .*" + pattern)


def test_private_urls_when_allowed(engine, images):
    app = create_app(engine, ServerSettings(allow_image_urls=True, allow_private_urls=True))
    with image_host("127.0.0.1", images[3]) as base, serve(app) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": [{"image": base + "/hop"}]}, timeout=60)
    np.testing.assert_allclose(vectors(response)[0], engine.encode_image([images[3]])[0], atol=ATOL)


def test_a_server_dripping_headers_is_cut_at_the_deadline():
    """The socket timeout bounds each read; the fetch's deadline bounds the whole exchange."""
    import socket
    import urllib.parse

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def drip():
        conn, _ = listener.accept()
        conn.recv(4096)
        with contextlib.suppress(OSError):
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(40):  # one header line every 0.1 s: 4 s in all
                time.sleep(0.1)
                conn.sendall(f"X-Drip-{i}: x\r\n".encode())
        conn.close()

    threading.Thread(target=drip, daemon=True).start()
    target = urllib.parse.urlsplit(f"http://127.0.0.1:{port}/img.png")
    start = time.monotonic()
    with pytest.raises(InputError, match=r"took longer than 0.5 s"):  # the drip would last 4 s and then close
        security._get(target, "127.0.0.1", start + 0.5, 0.5, security._Budget(1 << 20), 0)
    listener.close()


@pytest.mark.parametrize(
    "address, allowed",
    [
        ("8.8.8.8", True), ("2001:4860:4860::8888", True), ("127.0.0.1", False), ("10.0.0.1", False),
        ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
        ("0.0.0.0", False), ("224.0.0.1", False), ("255.255.255.255", False), ("::1", False), ("::", False),
        ("fe80::1%eth0", False), ("fc00::1", False), ("ff02::1", False), ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True), ("2002:7f00:1::1", False), ("64:ff9b::7f00:1", False),
    ],
)  # fmt: skip
def test_address_check(address, allowed):
    assert security.address_allowed(address) is allowed


# -- merging concurrent requests --------------------------------------------------------------------


class SlowOrBroken:
    """The real engine, except that embedding texts (``encode_tokens``) sleeps, waits for
    ``release`` or raises."""

    def __init__(
        self, engine, delay: float = 0.0, error: Exception | None = None, release: threading.Event | None = None
    ) -> None:
        self._engine, self._delay, self._error, self._release = engine, delay, error, release

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def encode_tokens(self, tokenized, **kwargs):
        time.sleep(self._delay)
        if self._release is not None:
            assert self._release.wait(30), "the test never released the model"
        if self._error is not None:
            raise self._error
        return self._engine.encode_tokens(tokenized, **kwargs)


async def test_a_bad_item_fails_only_its_own_request_in_a_merged_batch(engine, images):
    """While a text batch holds the model, three requests come. The one with a corrupt image
    fails alone while its images are decoded, before the model sees any of it (its text, queued
    meanwhile, is dropped); the other two are queued, merged and embedded right."""
    release = threading.Event()
    app = create_app(SlowOrBroken(engine, release=release), ServerSettings())
    batcher = app.state.batcher
    stats = batcher.stats
    truncated = images[0][: len(images[0]) // 2]  # its header reads fine; decoding fails in the engine
    bodies = [
        {"input": [{"image": b64(images[1])}, {"text": "a"}]},
        {"input": [{"text": "b"}, {"image": b64(images[2])}, {"image": b64(truncated)}]},
        {"input": [{"image": b64(images[3])}]},
    ]
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            blocker = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": ["blocker"]}))
            while stats.batches == 0:
                await asyncio.sleep(0.01)
            first, bad, last = (asyncio.ensure_future(client.post("/v1/embeddings", json=body)) for body in bodies)
            bad = await bad  # answered while the model is still held
            deadline = time.monotonic() + 30
            while batcher.queued < 3:  # "a", and the images of the first and the last request
                assert time.monotonic() < deadline, f"{batcher.queued} jobs queued"
                await asyncio.sleep(0.01)
            release.set()
            first, last = await first, await last
            assert (await blocker).status_code == 200
    assert_error(bad, 400, "jina", r"^invalid image at index 2: cannot decode image .*truncated")
    np.testing.assert_allclose(vectors(first), [engine.encode_image([images[1]])[0], engine.encode_text(["a"])[0]], atol=ATOL)  # fmt: skip
    np.testing.assert_allclose(vectors(last), engine.encode_image([images[3]]), atol=ATOL)
    # the blocker; the text "a" ("b" left with its request); the images of the other two, merged
    assert (stats.batches, stats.merged_batches, stats.items) == (3, 1, 4)


async def test_load_64_clients_every_answer_correct_and_merged(server, engine, images):
    """256 requests from 64 concurrent clients, texts, images and both; none lost, each right."""
    batcher = server[1].state.batcher
    before = (batcher.stats.requests, batcher.stats.batches)
    texts = [f"request number {i}: a cat on a mat" for i in range(256)]
    expected_texts = engine.encode_text(texts)
    expected_images = engine.encode_image(images)

    def request(i: int) -> tuple[dict, np.ndarray]:
        image = i % len(images)
        if i % 3 == 0:
            return {"input": [texts[i]]}, expected_texts[[i]]
        if i % 3 == 1:
            return {"input": [{"image": b64(images[image])}]}, expected_images[[image]]
        return {"input": [{"image": b64(images[image])}, texts[i]]}, np.stack(
            [expected_images[image], expected_texts[i]]
        )

    answered: dict[int, np.ndarray] = {}
    jobs = sum(1 + (i % 3 == 2) for i in range(256))  # a mixed request is one text and one image job

    async def client_loop(client: httpx.AsyncClient, worker: int) -> None:
        for i in range(worker, 256, 64):
            body, expected = request(i)
            got = vectors(await client.post("/v1/embeddings", json=body))
            np.testing.assert_allclose(got, expected, atol=ATOL)
            answered[i] = got

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=server[0], headers=AUTH, timeout=120, limits=limits) as client:
        await asyncio.gather(*(client_loop(client, worker) for worker in range(64)))
    assert sorted(answered) == list(range(256))
    requests, batches = batcher.stats.requests - before[0], batcher.stats.batches - before[1]
    assert requests == jobs
    assert batcher.stats.merged_batches > 0 and batches < jobs, f"{jobs} jobs ran in {batches} batches"


async def test_weaviate_requests_are_merged_with_the_others(engine, images):
    """While the model is busy, Weaviate requests queue in the same batcher as /v1/embeddings
    ones: texts share one engine call, whichever route sent them and whatever their task."""
    release = threading.Event()
    app = create_app(SlowOrBroken(engine, release=release), ServerSettings())
    batcher = app.state.batcher
    stats = batcher.stats
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            blocker = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": ["blocker"]}))
            while stats.batches == 0:
                await asyncio.sleep(0.01)
            answers = asyncio.gather(
                client.post("/v1/embeddings", json={"input": ["a"]}),
                client.post("/vectorize", json={"texts": ["b"], "images": [b64(images[0])]}),
                client.post("/vectors", json={"texts": ["c", "d"], "config": {"dimensions": 16}}),
                client.post("/query/vectors", json={"text": "e"}),
            )
            deadline = time.monotonic() + 30
            while batcher.queued < 5:  # /vectorize queues a text and an image job
                assert time.monotonic() < deadline, f"{batcher.queued} jobs queued"
                await asyncio.sleep(0.01)
            release.set()
            jina, clip, t2v, query = await answers
            assert (await blocker).status_code == 200
    np.testing.assert_allclose(vectors(jina), engine.encode_text(["a"]), atol=ATOL)
    np.testing.assert_allclose(clip.json()["textVectors"], engine.encode_text(["b"]), atol=ATOL)
    np.testing.assert_allclose(clip.json()["imageVectors"], engine.encode_image(images[:1]), atol=ATOL)
    np.testing.assert_allclose(t2v.json()["vectors"], engine.encode_text(["c", "d"], truncate_dim=16), atol=ATOL)
    assert t2v.json()["dims"] == 16
    np.testing.assert_allclose(query.json()["vector"], engine.encode_text(["e"], task=QUERY)[0], atol=ATOL)
    # the blocker; a, b, c, d and e together (tokenized already: the query instruction is in e's ids); the image
    assert (stats.requests, stats.batches, stats.merged_batches) == (6, 3, 1)


async def test_batcher_limits_and_drains_on_close(engine, images):
    calls: list[int] = []

    class Recording:
        def __getattr__(self, name):
            return getattr(engine, name)

        def encode_tokens(self, tokenized, **kwargs):
            calls.append(len(tokenized.ids))
            time.sleep(0.05)
            return engine.encode_tokens(tokenized, **kwargs)

    batcher = MicroBatcher(Recording(), max_batch_items=4, max_wait_ms=100)
    batcher.start()
    work = [
        asyncio.ensure_future(batcher.embed_tokens(engine.tokenize([f"t{i}"] * size)))
        for i, size in enumerate([3, 1, 2, 6, 1])
    ]
    await asyncio.sleep(0.01)
    await asyncio.to_thread(batcher.close)  # everything queued is still embedded
    results = [task.result() for task in work]
    assert [len(r) for r in results] == [3, 1, 2, 6, 1]
    assert calls == [4, 2, 6, 1]  # 3+1 full; 2 (the 6 does not fit); 6 alone; 1
    np.testing.assert_allclose(results[3], engine.encode_text(["t3"] * 6), atol=ATOL)
    with pytest.raises(BatcherClosed):
        await batcher.embed_tokens(engine.tokenize(["late"]))
    with pytest.raises(BatcherClosed):
        await batcher.embed_images(images[:1])


async def test_a_lone_request_does_not_wait_for_company(engine, images):
    batcher = MicroBatcher(engine, max_batch_items=64, max_wait_ms=600_000)  # waiting for company: 10 minutes
    batcher.start()
    try:
        for _ in range(3):  # texts and images: other kinds queued do not make a request wait
            work = asyncio.gather(batcher.embed_tokens(engine.tokenize(["a"])), batcher.embed_images(images[:1], True))
            await asyncio.wait_for(work, timeout=60)
    finally:
        batcher.close()
    assert batcher.stats.merged_batches == 0


async def test_no_merging_with_one_item_batches(engine):
    batcher = MicroBatcher(engine, max_batch_items=1, max_wait_ms=0)
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.embed_tokens(engine.tokenize([f"t{i}"])) for i in range(8)))
    finally:
        batcher.close()
    assert batcher.stats.batches == 8 and batcher.stats.merged_batches == 0
    np.testing.assert_allclose(np.concatenate(results), engine.encode_text([f"t{i}" for i in range(8)]), atol=ATOL)


# -- status, failures, schema ----------------------------------------------------------------------


async def test_not_ready_without_the_lifespan_then_ready(engine):
    app = create_app(engine, ServerSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/ready")).status_code == 503
        assert_error(await client.post("/v1/embeddings", json={"input": ["a"], "user": "u"}), 503, "openai", "not ready")  # fmt: skip
        weaviate = await client.post("/vectorize", json={"texts": ["a"]})  # the same status, in Weaviate's shape
        assert weaviate.status_code == 503
        assert weaviate.json() == {"error": "the server is not ready or is shutting down"}
        async with app.router.lifespan_context(app):
            assert (await client.get("/ready")).json() == {"status": "ready"}
            assert (await client.post("/v1/embeddings", json={"input": ["a"]})).status_code == 200
        assert (await client.get("/ready")).status_code == 503
        assert_error(await client.post("/v1/embeddings", json={"input": ["a"], "task": QUERY}), 503, "jina", "shutting down")  # fmt: skip


@pytest.mark.parametrize(
    "fake, settings, status, pattern",
    [
        ({"delay": 0.5}, ServerSettings(request_timeout_s=0.1), 504, r"^the request took longer than 0.1 s$"),
        (
            {"error": RuntimeError("out of memory")},
            ServerSettings(),
            500,
            r"^embedding failed: RuntimeError: out of memory$",
        ),
    ],
)
async def test_timeouts_and_failures(engine, fake, settings, status, pattern):
    app = create_app(SlowOrBroken(engine, **fake), settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:  # fmt: skip
        assert_error(await client.post("/v1/embeddings", json={"input": ["a"], "encoding_format": "float"}), status, "openai", pattern)  # fmt: skip
        assert_error(await client.post("/v1/embeddings", json={"input": ["a"], "normalized": True}), status, "jina", pattern)  # fmt: skip


@pytest.mark.parametrize(
    "exc, timeout_s, expected",
    [
        (BadRequest("bad option", "dimensions"), None, Failure(400, "bad option", "dimensions")),
        (InputError(2, "broken", kind="image"), None, Failure(400, "invalid image at index 2: broken", "input")),
        (BatcherClosed("stopped"), None, Failure(503, "the server is not ready or is shutting down")),
        (OutOfMemory("ran out of memory"), None, Failure(503, "ran out of memory", headers={"Retry-After": "1"})),
        (asyncio.TimeoutError(), 2.5, Failure(504, "the request took longer than 2.5 s")),
        (asyncio.TimeoutError(), None, Failure(500, "embedding failed: TimeoutError: ")),  # no timeout was set
        (RuntimeError("boom \ud800"), None, Failure(500, "embedding failed: RuntimeError: boom \\ud800")),
    ],
)
def test_one_mapping_from_exceptions_to_statuses(exc, timeout_s, expected):
    """What both route families answer for what their work raised (each in its own shape)."""
    assert failure(exc, "embedding", timeout_s) == expected


def test_one_validator_names_the_field_or_the_item():
    with pytest.raises(BadRequest, match=r"^config.dimensions: Input should be a valid integer") as caught:
        validate(VectorRequest, {"text": "a", "config": {"dimensions": "16"}})
    assert caught.value.param == "config"
    with pytest.raises(InputError, match=r"^invalid text at index 1: Input should be a valid string"):
        validate(VectorsRequest, {"texts": ["a", 5]}, {"texts": "text"})  # an item: named by its index
    with pytest.raises(BadRequest, match=r"^texts.1: Input should be a valid string"):
        validate(VectorsRequest, {"texts": ["a", 5]})


def test_openapi_documents_the_bodies(http):
    schema = http.get("/openapi.json").json()
    assert {"/v1/embeddings", "/v1/models", "/health", "/ready", "/vectorize", "/vectors"} <= set(schema["paths"])
    operation = schema["paths"]["/v1/embeddings"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "$defs" not in json.dumps(body)
    assert {"input", "model", "dimensions", "task", "normalized", "embedding_type", "encoding_format"} <= set(body["properties"])  # fmt: skip
    items = body["properties"]["input"]["anyOf"][1]["items"]["anyOf"]
    assert [set(item.get("properties", {})) for item in items] == [set(), {"text"}, {"image"}, {"url"}, {"bytes"}]
    assert {"200", "400", "401", "413", "500", "503", "504"} <= set(operation["responses"])
    assert "422" not in operation["responses"]
    assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EmbeddingError"}  # fmt: skip
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/EmbeddingResponse"}  # fmt: skip
    # with a key: the bearer scheme, and a 401 on every operation that needs it
    assert schema["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if is_probe(path):
                assert "security" not in operation and "401" not in operation["responses"], path
            else:
                assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"], path


def test_settings_need_no_fastapi_and_the_app_says_what_to_install():
    code = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "fastapi":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
import argparse, jinaclip_integrations.server as server
server.add_server_arguments(argparse.ArgumentParser())
server.settings_from_args, server.ServerSettings(max_items=3)
try:
    server.create_app
except ImportError as exc:
    assert 'pip install "jinaclip-integrations[server]"' in str(exc), exc
else:
    raise AssertionError("create_app imported without FastAPI")
"""
    root = Path(__file__).parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_weaviate_routes_keep_the_servers_limits(engine):
    from fastapi.testclient import TestClient

    app = create_app(engine, ServerSettings(max_items=2, max_text_chars=10))
    with TestClient(app) as client:
        too_many = client.post("/vectorize", json={"texts": ["a", "b", "c"]})
        assert too_many.status_code == 400 and "limit is 2" in too_many.json()["error"]
        too_long = client.post("/query/vectors", json={"texts": ["short", "x" * 11]})
        assert too_long.status_code == 400
        assert too_long.json()["error"].startswith("invalid text at index 1: 11 characters")
        nested = client.post("/vectors", content=b'{"text": ' + b"[" * 50000 + b"]" * 50000 + b"}")
        assert nested.status_code == 400 and "nested too deeply" in nested.json()["error"]
        nested = client.post("/v1/embeddings", content=b'{"input": ' + b"[" * 50000 + b"]" * 50000 + b"}")
        assert nested.status_code == 400 and "nested too deeply" in nested.text


def test_heic_images_are_read_or_the_error_says_what_to_install(http, engine, monkeypatch):
    """The header check opens HEIC through pillow-heif like the engine does; without
    pillow-heif the 400 names the item and the extra to install."""
    import io
    import sys

    from PIL import Image

    from jinaclip_integrations.engine import inputs as engine_inputs

    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(Image.new("RGB", (40, 30), (200, 30, 60))).save(buf, format="HEIF", quality=95)
    heic = buf.getvalue()
    got = vectors(http.post("/v1/embeddings", json={"input": [{"text": "x"}, {"image": b64(heic)}]}))
    np.testing.assert_allclose(got[1], engine.encode_image([heic])[0], atol=ATOL)

    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    engine_inputs._heif_opener.cache_clear()
    monkeypatch.setattr(Image, "OPEN", {k: v for k, v in Image.OPEN.items() if k != "HEIF"})
    try:
        response = http.post("/v1/embeddings", json={"input": [{"text": "x"}, {"image": b64(heic)}]})
    finally:
        engine_inputs._heif_opener.cache_clear()
    assert response.status_code == 400 and "index 1" in response.text and "[heif]" in response.text, response.text
