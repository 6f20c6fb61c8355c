"""The HTTP API fuzzed: schemathesis from the app's own OpenAPI schema, and hypothesis where
the schema cannot lead it (bad images, odd Unicode, URLs), all in-process over ASGI.

Every operation of ``create_app`` gets generated requests that fit the schema (positive) and
requests that do not (negative), with the API key; none may get a 5xx, and the answers must
have a documented status code, content type and shape. Without the key (none, or the
generator's own bearer token) every answer is a 401 but on the open probes. Runs are reproducible (derandomized, no example database) and bounded:
``MAX_EXAMPLES`` per operation and mode.
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import zlib
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from jinaclip_integrations.server import ServerSettings, create_app

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_EXAMPLES = 30
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
#: the targeted tests below cost milliseconds per example
TARGETED = settings(FUZZ, max_examples=200)
#: probes answered without the key
OPEN = re.compile(r"/health|/ready|(/passage|/query)?/\.well-known/(live|ready)")


def fuzz_operations(app, mode: GenerationMode, headers: dict[str, str], check: Callable) -> Counter:
    """Run ``check(case, response)`` on ``MAX_EXAMPLES`` generated requests per operation of
    ``app``'s schema in ``mode``; the status codes seen per operation. Failures are collected
    over all operations and reported together, each with the request as a curl command."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    seen: Counter = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and not operation.body.items:
            continue  # nothing to get wrong in a request without input

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            response = case.call(headers=headers)
            seen[case.operation.label, response.status_code] += 1
            try:
                check(case, response)
            except (AssertionError, FailureGroup) as exc:
                failures.append(f"{case.as_curl_command(headers=headers)}\n-> {response.status_code} {response.text[:300]}\n{exc}")  # fmt: skip

        run()
    assert not failures, f"{len(failures)} failures, the first ones:\n\n" + "\n\n".join(failures[:5])
    assert {label for label, _ in seen} >= {op.label for op in operations if op.body.items or mode == GenerationMode.POSITIVE}  # fmt: skip
    return seen


@pytest.fixture
def app(engine) -> Iterator:
    """The server with a key; the lifespan schemathesis starts for it is stopped afterwards."""
    yield create_app(engine, ServerSettings(api_key=KEY))
    shutdown_lifespans()


CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_with_the_key(app, mode):
    seen = fuzz_operations(app, mode, AUTH, lambda case, response: case.validate_response(response, checks=CONFORMANCE))
    assert not any(status >= 500 for _, status in seen)
    if mode == GenerationMode.POSITIVE:  # the generator gets past validation: requests are embedded
        assert seen["POST /v1/embeddings", 200] > 0 and seen["POST /vectorize", 200] > 0
    else:  # invalid bodies are refused (a negative case may break only the auth header, which ours replaces)
        assert all(seen[label, 400] > 0 for label, _ in seen), seen


def test_every_operation_without_the_key(app):
    def only_probes_answer(case, response) -> None:
        case.validate_response(response, checks=CONFORMANCE)
        if OPEN.fullmatch(case.operation.path) is None:
            assert response.status_code == 401, f"{case.operation.label} answered without the key"

    seen = fuzz_operations(app, GenerationMode.POSITIVE, {}, only_probes_answer)  # no key, or a generated one
    assert seen["POST /v1/embeddings", 401] > 0 and seen["GET /health", 200] > 0


# -- where the schema cannot lead the generator ----------------------------------------------------------

#: Unicode the schema's generator leaves out: lone surrogates (JSON escapes allow them), NUL,
#: controls, non-characters
ODD_TEXT = st.lists(
    st.sampled_from(["\ud800", "\udfff", "\x00", "\ufffe", "\u202e"]) | st.characters(codec=None), max_size=20
).map("".join)  # not st.text: it leaves lone surrogates out of any alphabet
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | ODD_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ODD_TEXT, children, max_size=4),
    max_leaves=12,
)


def png(width: int, height: int, body: bytes = b"") -> bytes:
    """A PNG signature and IHDR chunk claiming ``width`` x ``height``, then ``body``."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk)) + body


def real_image(size: tuple[int, int], kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, kind)
    return buffer.getvalue()


IMAGE_BYTES = st.one_of(
    st.binary(max_size=64),
    st.builds(png, st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.binary(max_size=32)),
    st.builds(real_image, st.tuples(st.integers(1, 40), st.integers(1, 40)), st.sampled_from(["PNG", "JPEG", "GIF"])),
    st.builds(lambda data, cut: data[:cut], st.just(real_image((30, 20), "PNG")), st.integers(0, 200)),
)
IMAGE_STRINGS = st.one_of(
    IMAGE_BYTES.map(lambda data: base64.b64encode(data).decode()),
    IMAGE_BYTES.map(lambda data: "data:image/png;base64," + base64.b64encode(data).decode()),
    st.builds(
        lambda prefix, data: prefix + base64.b64encode(data).decode(),
        st.sampled_from(["data:", "data:image/;base64,", "DATA:IMAGE/PNG;BASE64,", " ", "data:text/html;base64,"]),
        IMAGE_BYTES,
    ),  # fmt: skip
    ODD_TEXT,
)
#: URLs that never leave the machine: literal non-public hosts (refused before connecting,
#: no DNS lookup), odd schemes, ports and characters
URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https", "HTTP", "ftp", "file", "gopher"]),
    st.sampled_from(["127.0.0.1", "[::1]", "10.0.0.1", "169.254.169.254", "0.0.0.0", "[::ffff:127.0.0.1]", "", "[::1"]),
    st.sampled_from(["", ":0", ":99999", ":-1", ":x", ":80"]),
    ODD_TEXT,
)


@pytest.fixture(scope="module")
def client(engine) -> Iterator[TestClient]:
    app = create_app(engine, ServerSettings(allow_image_urls=True, url_timeout_s=1, max_items=8))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def post(client: TestClient, path: str, body: object) -> dict:
    """POST ``body`` as JSON (lone surrogates written as escapes, as a client's JSON may hold
    them); the answer must be a 200 or a 400 with a JSON error that names the problem."""
    response = client.post(path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    assert response.status_code in (200, 400), f"{path} {json.dumps(body)[:300]} -> {response.status_code} {response.text[:300]}"  # fmt: skip
    answer = response.json()
    if response.status_code == 400:
        assert (answer.get("detail") or answer.get("error", {}).get("message") if path == "/v1/embeddings" else answer["error"])  # fmt: skip
    return answer


@TARGETED
@given(body=st.dictionaries(st.sampled_from(["input", "model", "dimensions", "task", "normalized", "embedding_type",
                                             "encoding_format", "encoding_type", "truncate", "late_chunking", "user"]),
                            JSON_VALUES, max_size=5) | JSON_VALUES)  # fmt: skip
def test_embeddings_any_json(client, body):
    post(client, "/v1/embeddings", body)


ITEMS = st.one_of(
    ODD_TEXT,
    st.builds(lambda text: {"text": text}, ODD_TEXT),
    st.builds(lambda image: {"image": image}, IMAGE_STRINGS | URLS),
    st.builds(lambda data: {"bytes": data}, IMAGE_STRINGS),
    st.builds(lambda url: {"url": url}, URLS),
)


@TARGETED
@given(items=st.lists(ITEMS, min_size=1, max_size=4), options=st.fixed_dictionaries({}, optional={
    "dimensions": st.sampled_from([8, 16, 64, 0, -1, 10**20]), "normalized": st.booleans(),
    "embedding_type": st.sampled_from(["float", "base64", "binary", "ubinary"]), "task": st.sampled_from(["retrieval.query", "x"])}))  # fmt: skip
def test_embeddings_items_images_and_urls(client, items, options):
    """A refused item is named by its index and kind."""
    answer = post(client, "/v1/embeddings", {"input": items, **options})
    if "data" in answer:
        assert [item["index"] for item in answer["data"]] == list(range(len(items)))
    else:
        message = answer["detail"]
        assert re.match(r"invalid (text|image|input) at index \d+: |dimensions |task ", message), message


@TARGETED
@given(urls=st.lists(URLS, min_size=1, max_size=3), key=st.sampled_from(["image", "url"]))
def test_embeddings_image_urls(client, urls, key):
    """Every URL is refused before a connection is made, naming its item (after a valid text)."""
    message = post(client, "/v1/embeddings", {"input": ["a cat", *({key: url} for url in urls)]})["detail"]
    assert re.match(r"invalid image at index [1-3]: ", message), message


@TARGETED
@given(texts=st.lists(ODD_TEXT, max_size=3) | JSON_VALUES, images=st.lists(IMAGE_STRINGS, max_size=3) | JSON_VALUES)
def test_weaviate_vectorize(client, texts, images):
    answer = post(client, "/vectorize", {"texts": texts, "images": images})
    if "error" not in answer:
        assert len(answer["textVectors"]) == len(texts or []) and len(answer["imageVectors"]) == len(images or [])


@TARGETED
@given(path=st.sampled_from(["/vectors", "/passage/vectors", "/query/vectors/"]),
       body=st.fixed_dictionaries({}, optional={"text": ODD_TEXT | JSON_VALUES, "texts": st.lists(ODD_TEXT, max_size=3) | JSON_VALUES,
                                                "config": st.fixed_dictionaries({}, optional={"task_type": JSON_VALUES, "pooling_strategy": JSON_VALUES,
                                                                                             "dimensions": JSON_VALUES}) | JSON_VALUES}))  # fmt: skip
def test_weaviate_vectors(client, path, body):
    post(client, path, body)
