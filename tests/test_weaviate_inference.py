"""Weaviate's inference protocols over real HTTP, sent the way Weaviate's Go clients send them.

The multi2vec-clip client posts ``{"texts": [...], "images": [...]}`` (older versions write
``null`` for an empty list, newer ones leave the key out) and the text2vec-transformers client
posts its request struct with ``dims``/``vector``/``error`` keys and no Content-Type; both read
``{"error": ...}`` from any failed answer. Vectors are compared with the engine's to
``atol=1e-5``: JSON carries the float32 values exactly, the margin covers only the engine's own
batch-to-batch float noise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from _servers import serve
from conftest import V2_TINY, copy_fixture
from jinaclip_integrations import JinaCLIPEngine
from jinaclip_integrations.engine import Tokenized
from jinaclip_integrations.weaviate import create_inference_app, inference_router

ATOL = 1e-5
TEXTS = ["A photo of a cat.", "Ein Foto einer Katze auf dem Sofa.", "一只猫坐在沙发上。", ""]
QUERY = "retrieval.query"


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def base_url(engine):
    """The app served by uvicorn on a free local port for the whole module."""
    with serve(create_inference_app(engine), lifespan="off") as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


def post(http: httpx.Client, path: str, body, **kwargs) -> httpx.Response:
    """POST raw JSON bytes without a Content-Type header, as the Go clients do."""
    return http.post(path, content=body if isinstance(body, bytes) else json.dumps(body).encode(), **kwargs)


def assert_error(response: httpx.Response, status: int, pattern: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error"} and re.search(pattern, body["error"]), body


# -- multi2vec-clip ------------------------------------------------------------------------------


def test_vectorize_texts_and_images_are_the_engines(http, engine, image_paths):
    images = image_paths[:4]
    response = post(http, "/vectorize", {"texts": TEXTS, "images": [b64(p) for p in images]})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"textVectors", "imageVectors"}
    # texts without a task: multi2vec-clip cannot tell a query from a document
    np.testing.assert_allclose(body["textVectors"], engine.encode_text(TEXTS), atol=ATOL)
    np.testing.assert_allclose(body["imageVectors"], engine.encode_image(images), atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(body["imageVectors"], axis=1), 1, atol=ATOL)

    reversed_ = post(http, "/vectorize", {"texts": TEXTS[::-1], "images": [b64(p) for p in images[::-1]]}).json()
    np.testing.assert_allclose(reversed_["textVectors"], body["textVectors"][::-1], atol=ATOL)
    np.testing.assert_allclose(reversed_["imageVectors"], body["imageVectors"][::-1], atol=ATOL)


@pytest.mark.parametrize(
    "body, texts, images",
    [
        ({"texts": ["hello"], "images": None}, 1, 0),  # older Weaviate: nil slice -> null
        ({"texts": ["hello"]}, 1, 0),  # newer Weaviate: empty slice omitted (nearText)
        ({"texts": None, "images": ["IMG"]}, 0, 1),  # nearImage
        ({"images": ["IMG"]}, 0, 1),
        ({"texts": [], "images": []}, 0, 0),
        ({}, 0, 0),
    ],
)
def test_vectorize_missing_null_and_empty_lists(http, image_paths, body, texts, images):
    body = {key: [b64(image_paths[0])] if value == ["IMG"] else value for key, value in body.items()}
    response = post(http, "/vectorize", body)
    assert response.status_code == 200
    assert [len(response.json()[key]) for key in ("textVectors", "imageVectors")] == [texts, images]


def test_vectorize_accepts_a_data_uri(http, image_paths):
    plain, uri = (
        post(http, "/vectorize", {"images": [image]}).json()["imageVectors"]
        for image in (b64(image_paths[0]), "data:image/png;base64," + b64(image_paths[0]))
    )
    assert plain == uri


@pytest.mark.parametrize(
    "body, pattern",
    [
        ({"images": ["GOOD", "not base64!"]}, r"^invalid image at index 1: not valid base64"),
        ({"images": [base64.b64encode(b"plain text, not an image").decode()]}, r"^invalid image at index 0: "),
        ({"images": [""]}, r"^invalid image at index 0: empty image"),
        ({"images": [7]}, r"^invalid image at index 0: Input should be a valid string"),
        ({"images": "GOOD"}, r"^images: Input should be a valid list"),
        ({"texts": "a cat"}, r"^texts: Input should be a valid list"),
        ({"texts": ["a", 5]}, r"^invalid text at index 1: Input should be a valid string"),
        ({"texts": ["a", "\ud800"]}, r"^invalid text at index 1: not valid Unicode"),
        (b"{not json", r"^request body is not valid JSON"),
        (b"", r"^request body is not valid JSON"),
        (b"\xff\xfe", r"^request body is not valid JSON"),
        ([], r"^request body must be a JSON object, not list"),
    ],
)
def test_vectorize_errors(http, image_paths, body, pattern):
    if isinstance(body, dict) and "images" in body and isinstance(body["images"], list):
        body["images"] = [b64(image_paths[0]) if image == "GOOD" else image for image in body["images"]]
    assert_error(post(http, "/vectorize", body), 400, pattern)


def test_image_strings_are_never_read_as_paths_or_urls(http, base_url, engine, image_paths):
    # a real image at a path that is also valid base64 (only [A-Za-z0-9+/], length a multiple of 4)
    folder = Path(tempfile.gettempdir())
    if not re.fullmatch(r"[A-Za-z0-9+/]+", str(folder)):
        pytest.skip(f"the temporary folder {folder} is not made of base64 characters")
    name = "jcweaviate" + uuid.uuid4().hex
    path = folder / (name + "x" * (-len(f"{folder}/{name}") % 4))
    path.write_bytes(image_paths[0].read_bytes())
    try:
        assert base64.b64decode(str(path), validate=True)  # it passes the base64 check ...
        assert engine.encode_image([str(path)]).shape == (1, 64)  # ... and the engine would open it
        assert_error(post(http, "/vectorize", {"images": [str(path)]}), 400, r"^invalid image at index 0: ")
    finally:
        path.unlink()
    for value in ("/etc/hostname", f"{base_url}/meta", f"file://{image_paths[0]}"):
        assert_error(post(http, "/vectorize", {"images": [value]}), 400, r"^invalid image at index 0: not valid base64")


# -- text2vec-transformers -----------------------------------------------------------------------


def go_request(text: str, **config) -> dict:
    """The Go client's single request: the response fields are sent too, config keys are omitempty."""
    return {"text": text, "dims": 0, "vector": None, "error": "", "config": config}


@pytest.mark.parametrize(
    "path, task_type, task",
    [
        ("/vectors", "passage", None),
        ("/vectors", "query", QUERY),
        ("/vectors", None, None),
        ("/vectors/", "query", QUERY),
        ("/passage/vectors", "passage", None),
        ("/passage/vectors", "query", None),  # the prefix decides
        ("/query/vectors", "query", QUERY),
        ("/query/vectors", "passage", QUERY),
        ("/query/vectors/", None, QUERY),
    ],
)
def test_vectors_single(http, engine, path, task_type, task):
    config = {"pooling_strategy": "masked_mean"} | ({"task_type": task_type} if task_type else {})
    response = post(http, path, go_request("cat on a sofa", **config))
    assert response.status_code == 200  # Weaviate accepts exactly 200
    body = response.json()
    assert set(body) == {"text", "vector", "dim", "dims"}
    assert body["text"] == "cat on a sofa" and body["dim"] == body["dims"] == 64
    np.testing.assert_allclose(body["vector"], engine.encode_text(["cat on a sofa"], task=task)[0], atol=ATOL)


def test_base_urls_with_a_prefix_are_joined_by_concatenation(http, base_url, engine):
    """Weaviate builds ``TRANSFORMERS_QUERY_INFERENCE_API + "/vectors"``."""
    for base, task in ((f"{base_url}/query", QUERY), (f"{base_url}/passage", None)):
        body = post(http, base + "/vectors", go_request("hello", task_type="passage" if task is None else "query"))
        np.testing.assert_allclose(body.json()["vector"], engine.encode_text(["hello"], task=task)[0], atol=ATOL)
        assert http.get(base + "/.well-known/ready").status_code == 204
        assert http.get(base + "/meta").json()["embedding_dim"] == 64


@pytest.mark.parametrize("path, task", [("/vectors", QUERY), ("/passage/vectors", None), ("/query/vectors", QUERY)])
def test_vectors_batch(http, engine, path, task):
    response = http.post(
        path, json={"texts": TEXTS, "config": {"task_type": "query", "pooling_strategy": "masked_mean"}}
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"vectors", "dims"} and body["dims"] == 64 and len(body["vectors"]) == len(TEXTS)
    np.testing.assert_allclose(body["vectors"], engine.encode_text(TEXTS, task=task), atol=ATOL)


@pytest.mark.parametrize("dims", [8, 16, 64])
def test_vectors_dimensions(http, engine, dims):
    single = post(http, "/query/vectors", go_request("hello", task_type="query", dimensions=dims)).json()
    batch = post(http, "/vectors", {"texts": ["hello", "cat"], "config": {"dimensions": dims}}).json()
    assert single["dims"] == single["dim"] == len(single["vector"]) == dims == batch["dims"]
    np.testing.assert_allclose(single["vector"], engine.encode_text(["hello"], task=QUERY, truncate_dim=dims)[0], atol=ATOL)  # fmt: skip
    np.testing.assert_allclose(batch["vectors"], engine.encode_text(["hello", "cat"], truncate_dim=dims), atol=ATOL)
    np.testing.assert_allclose(np.linalg.norm(batch["vectors"], axis=1), 1, atol=ATOL)


@pytest.mark.parametrize(
    "path, body, pattern",
    [
        ("/vectors", go_request("a", dimensions=48), r"dimensions 48 is not supported .*\[8, 16, 32, 64\]"),
        ("/query/vectors", go_request("a", dimensions=0), r"dimensions 0 is not supported"),
        ("/vectors", go_request("a", pooling_strategy="cls"), r"pooling_strategy 'cls' is not supported.*masked_mean"),
        ("/vectors", {"texts": ["a"], "config": {"pooling_strategy": "cls"}}, r"pooling_strategy 'cls'"),
        ("/vectors", go_request("a", task_type="document"), r"task_type 'document' is not supported"),
        ("/vectors", go_request("a", dimensions="16"), r"^config.dimensions: Input should be a valid integer"),
        ("/vectors", {"config": {}}, r"^text: Field required"),
        ("/vectors", {"text": None}, r"^text: Input should be a valid string"),
        ("/vectors", {"texts": "a"}, r"^texts: Input should be a valid list"),
        ("/vectors", {"texts": ["a", None]}, r"^invalid text at index 1: "),
        ("/passage/vectors", b"not json", r"^request body is not valid JSON"),
        ("/query/vectors/", b'"a string"', r"^request body must be a JSON object, not str"),
    ],
)
def test_vectors_errors(http, path, body, pattern):
    assert_error(post(http, path, body), 400, pattern)


# -- status routes, schema, mounting -------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/passage", "/query"])
def test_status_routes(http, prefix):
    for check in ("live", "ready"):
        response = http.get(f"{prefix}/.well-known/{check}")
        assert response.status_code == 204 and response.content == b""
    meta = http.get(f"{prefix}/meta").json()
    # the folder's name, never its path
    assert meta == {"name": V2_TINY.name, "embedding_dim": 64, "matryoshka_dims": [8, 16, 32, 64],
                    "tasks": [QUERY], "device": "cpu", "dtype": "float32"}  # fmt: skip
    assert http.head(f"{prefix}/meta").status_code == 200
    assert http.head(f"{prefix}/.well-known/ready").status_code == 204


def test_openapi_documents_the_bodies(http):
    schema = http.get("/openapi.json").json()
    for prefix in ("", "/passage", "/query"):
        assert {f"{prefix}/meta", f"{prefix}/.well-known/live", f"{prefix}/.well-known/ready"} <= set(schema["paths"])
    for path in ("/vectorize", "/vectors", "/passage/vectors", "/query/vectors"):
        operation = schema["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert "$defs" not in json.dumps(body)  # written out: OpenAPI cannot resolve it
        assert {"200", "400", "500"} <= set(operation["responses"])
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    clip = schema["paths"]["/vectorize"]["post"]
    assert set(clip["requestBody"]["content"]["application/json"]["schema"]["properties"]) == {"texts", "images"}
    assert clip["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ClipResponse"
    }
    t2v = schema["paths"]["/vectors"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # the Go client's answer fields it sends along are declared (and ignored); any other field is refused
    assert [set(option["properties"]) for option in t2v["anyOf"]] == [{"text", "config", "dims", "vector", "error"}, {"texts", "config"}]  # fmt: skip
    assert [option["additionalProperties"] for option in t2v["anyOf"]] == [False, False]
    assert {"ClipResponse", "VectorResponse", "VectorsResponse", "ErrorResponse"} <= set(
        schema["components"]["schemas"]
    )


async def test_errors_keep_their_shape_in_another_app(engine):
    """Mounted under a prefix in an app with its own error handlers, the routes answer the same."""
    app = FastAPI()

    @app.exception_handler(RequestValidationError)
    async def other_shape(request, exc):
        return JSONResponse({"detail": "the app's own shape"}, status_code=422)

    app.include_router(inference_router(engine), prefix="/weaviate")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        assert_error(await client.post("/weaviate/vectors", content=b"{"), 400, "not valid JSON")
        assert_error(await client.post("/weaviate/vectorize", json={"texts": 1}), 400, "^texts: ")
        response = await client.post("/weaviate/query/vectors", content=json.dumps(go_request("hi")))
        assert response.status_code == 200 and response.json()["dims"] == 64


class StubEngine:
    """Just what the routes read from an engine; ``encode_tokens`` is set per test."""

    name_or_path, embedding_dim, matryoshka_dims, tasks = "stub", 4, (), ()
    output_dim, output_dims, query_task, max_image_pixels = 4, (4,), None, None
    device, dtype = "cpu", "torch.float32"

    @staticmethod
    def tokenize(texts, task=None):
        return Tokenized([[1, 2]] * len(texts), [], 512)


async def test_failures_are_500_with_an_error_body():
    engine = StubEngine()

    def broken(tokenized, **kwargs):
        raise RuntimeError("out of memory")

    engine.encode_tokens = broken
    transport = httpx.ASGITransport(app=create_inference_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        for path, body in (("/vectors", go_request("a")), ("/vectorize", {"texts": ["a"]})):
            assert_error(await client.post(path, json=body), 500, "RuntimeError: out of memory")


async def test_the_model_runs_off_the_event_loop():
    """While one request is being embedded, the server answers others."""
    started, release = threading.Event(), threading.Event()
    engine = StubEngine()

    def slow(tokenized, **kwargs):
        started.set()
        assert release.wait(5), "the event loop was blocked"
        return np.ones((len(tokenized.ids), 4), np.float32) / 2

    engine.encode_tokens = slow
    transport = httpx.ASGITransport(app=create_inference_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        pending = asyncio.create_task(client.post("/vectors", json=go_request("a")))
        while not started.is_set():
            await asyncio.sleep(0.01)
        assert (await client.get("/.well-known/ready")).status_code == 204
        assert not pending.done()
        release.set()
        assert (await pending).json()["vector"] == [0.5] * 4


async def test_model_without_tasks_gets_no_query_instruction(tmp_path, engine):
    def no_tasks(config):
        config["text_config"]["hf_model_config_kwargs"]["task_instructions"] = {}

    plain = JinaCLIPEngine.from_pretrained(
        copy_fixture(tmp_path / "m", config_edit=no_tasks), device="cpu", dtype="float32"
    )
    calls = []
    spy = SimpleNamespace(**{name: getattr(plain, name) for name in vars(StubEngine) if not name.startswith("_")})
    spy.tokenize = lambda texts, **kwargs: calls.append(kwargs.get("task")) or plain.tokenize(texts, **kwargs)
    spy.encode_tokens = plain.encode_tokens
    transport = httpx.ASGITransport(app=create_inference_app(spy))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.post("/query/vectors", json=go_request("cat", task_type="query"))
        assert response.status_code == 200 and calls == [None]
        np.testing.assert_allclose(response.json()["vector"], engine.encode_text(["cat"])[0], atol=ATOL)
        assert (await client.get("/meta")).json()["tasks"] == []


# -- the launcher: python -m jinaclip_integrations.weaviate ------------------------------------------


def test_module_runs_with_help():
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run([sys.executable, "-m", "jinaclip_integrations.weaviate", "--help"], env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for word in ("--model", "--device", "--dtype", "--host", "--port", "CLIP_INFERENCE_API", "/query",
                 "--api-key", "--weaviate-open", "--max-body-mb", "--max-items"):  # fmt: skip
        assert word in result.stdout


async def test_the_launcher_serves_under_the_servers_key_and_limits(engine, tmp_path, monkeypatch):
    """The launcher's app is the embedding server's, built from the server's options: the API
    key guards the Weaviate routes (unless --weaviate-open) and the body limit applies to them."""
    from jinaclip_integrations.weaviate.__main__ import build_app, build_parser

    monkeypatch.setenv("JINACLIP_CONFIG", str(tmp_path / "no-config.toml"))
    key = "launcher-key"
    auth = {"Authorization": f"Bearer {key}"}
    options = ["--model", str(V2_TINY), "--device", "cpu", "--api-key", key, "--max-body-mb", "0.01"]
    args = build_parser().parse_args([*options, "--no-weaviate-open"])
    assert (args.host, args.port) == ("127.0.0.1", 8080)  # Weaviate's usual port
    app = build_app(args)
    big = json.dumps({"texts": ["x" * 100] * 200}).encode()  # over 0.01 MiB
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:  # fmt: skip
        assert_error(await client.post("/vectorize", json={"texts": ["a"]}), 401, r"^missing or invalid API key")
        assert_error(await client.post("/vectorize", content=big, headers=auth), 413, r"^request body is too large: \d+ bytes; the limit is 10485 bytes")  # fmt: skip
        answer = await client.post("/vectorize", json={"texts": ["a"]}, headers=auth)
        assert answer.status_code == 200
        np.testing.assert_allclose(answer.json()["textVectors"], engine.encode_text(["a"]), atol=ATOL)
        assert (await client.post("/v1/embeddings", json={"input": ["a"]}, headers=auth)).status_code == 200
        assert app.state.batcher.stats.requests == 2  # both through the server's batcher

    app = build_app(build_parser().parse_args([*options, "--weaviate-open"]))
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:  # fmt: skip
        assert (await client.post("/query/vectors", json={"text": "a"})).status_code == 200
        assert (await client.post("/v1/embeddings", json={"input": ["a"]})).status_code == 401
        assert_error(await client.post("/vectors", content=big), 413, r"^request body is too large")


def test_the_launcher_refuses_an_option_out_of_range():
    from jinaclip_integrations.weaviate.__main__ import main

    with pytest.raises(SystemExit, match=r"error: max_items must be positive, got 0"):
        main(["--max-items", "0"])


def test_a_checkpoint_truncating_its_output_offers_only_the_sizes_below_it(tmp_path):
    """With ``truncate_dim: 32`` in config.json the engine returns 32 dims: 64 (the full size)
    is refused before embedding, with the sizes it can give, and 16 is cut from the 32."""
    folder = copy_fixture(tmp_path / "ckpt", config_edit=lambda c: c.update(truncate_dim=32))
    engine = JinaCLIPEngine.from_pretrained(folder, device="cpu", show_progress=False)
    with serve(create_inference_app(engine)) as url, httpx.Client(base_url=url, timeout=30) as client:
        refused = client.post("/vectors", json={"texts": ["a"], "config": {"dimensions": 64}})
        assert refused.status_code == 400
        assert refused.json() == {"error": "dimensions 64 is not supported by this model; choose one of [8, 16, 32]"}
        short = client.post("/vectors", json={"texts": ["a"], "config": {"dimensions": 16}}).json()
    assert short["dims"] == 16
    np.testing.assert_allclose(short["vectors"], engine.encode_text(["a"], truncate_dim=16), atol=1e-5)
