"""The server's features beyond one model's ``/v1/embeddings``: several models in one server,
the routes without ``/v1``, Prometheus ``/metrics``, zero-shot classification
(``/v1/classify``) and the int8/uint8 output formats.

One server for the module: jina-clip-v2-tiny (the default model) and jina-clip-v1-tiny, with an
API key, 12 items per request and 64 KiB bodies. The metrics tests read the counters before and
after their own requests and compare the differences (other tests share the server).

Vectors and probabilities are compared with the engine's own to ``atol=1e-5`` (as in
test_server.py: requests merged into one batch are padded together). The tiny models'
probabilities here are 0.10-0.64, measured equal to the engine's when nothing was merged.
"""

from __future__ import annotations

import asyncio
import base64
import math
import re
import shutil
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from prometheus_client import parser as prometheus_parser

from _servers import serve
from conftest import V1_TINY, V2_TINY, load_engine
from jinaclip_integrations import cli, settings
from jinaclip_integrations.engine import label_probabilities, quantize
from jinaclip_integrations.server import ServerSettings, create_app

ATOL = 1e-5
KEY = "features-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
V2, V1 = "jina-clip-v2-tiny", "jina-clip-v1-tiny"
MAX_ITEMS = 12
MAX_BODY = 64 * 1024
#: small fixture images (the body limit is 64 KiB)
IMAGE_NAMES = ["cmyk_45x45.jpg", "gray_L_50x70.png", "palette_P_60x40.png", "rgb_gradient_64x48.png"]
LABELS = ["a photo of a cat", "a gray square", "a colourful gradient"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def engines():
    return {V2: load_engine(V2_TINY), V1: load_engine(V1_TINY)}


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return [(V2_TINY / name).read_bytes() for name in IMAGE_NAMES]


@pytest.fixture(scope="module")
def server(engines):
    app = create_app(list(engines.values()), ServerSettings(api_key=KEY, max_items=MAX_ITEMS, max_body_bytes=MAX_BODY))
    with serve(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], headers=AUTH, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def anonymous(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server[0], timeout=60) as client:
        yield client


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def vectors(response: httpx.Response) -> np.ndarray:
    return np.array([item["embedding"] for item in ok(response)["data"]])


def error(response: httpx.Response, status: int, pattern: str, param: str | None = None) -> None:
    """An error answer in both the OpenAI and the Jina shape (the request names no API)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert re.search(pattern, body["detail"]) and body["error"]["message"] == body["detail"], body
    if param is not None:
        assert body["error"]["param"] == param, body


# -- several models ----------------------------------------------------------------------------------


def test_models_lists_each_served_model_in_order(http):
    assert [card["id"] for card in ok(http.get("/v1/models"))["data"]] == [V2, V1]


def test_each_model_runs_once_on_its_own_batcher(server, engines):
    batchers = server[1].state.batchers
    assert list(batchers) == [V2, V1]
    assert [batcher.engine for batcher in batchers.values()] == list(engines.values())
    assert server[1].state.batcher is batchers[V2]


def test_the_model_field_picks_the_model(http, engines):
    texts = ["a cat", "ein Hund"]
    for name in (V2, V1):
        response = http.post("/v1/embeddings", json={"model": name, "input": texts})
        assert response.json()["model"] == name
        np.testing.assert_allclose(vectors(response), engines[name].encode_text(texts), atol=ATOL)
    default = http.post("/v1/embeddings", json={"input": texts})  # no model: the first
    assert default.json()["model"] == V2
    np.testing.assert_allclose(vectors(default), engines[V2].encode_text(texts), atol=ATOL)
    # the model's own limits: v1-tiny's and v2-tiny's Matryoshka sizes differ
    assert engines[V1].output_dims != engines[V2].output_dims
    error(http.post("/v1/embeddings", json={"model": V1, "input": "a", "dimensions": 16}), 400, "dimensions 16")


def test_an_unknown_model_is_a_400_naming_the_served_ones(http):
    response = http.post("/v1/embeddings", json={"model": "jina-clip-v3", "input": ["a"]})
    error(response, 400, re.escape(f"model 'jina-clip-v3' is not served here; choose one of ['{V2}', '{V1}']"), "model")


def test_the_weaviate_routes_serve_the_first_model(http, engines):
    body = ok(http.post("/vectors", json={"text": "a cat"}))
    np.testing.assert_allclose(body["vector"], engines[V2].encode_text(["a cat"])[0], atol=ATOL)


def test_create_app_refuses_an_engine_twice_and_no_engine(engines):
    with pytest.raises(ValueError, match="the same engine is given twice"):
        create_app({"a": engines[V2], "b": engines[V2]})
    with pytest.raises(ValueError, match="no model to serve"):
        create_app([])


def test_serve_command_loads_each_model_once(monkeypatch, tmp_path):
    for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    served = []
    monkeypatch.setattr("uvicorn.run", lambda app, **options: served.append(app))
    argv = ["serve", "-q", "--model", str(V2_TINY), "--model", str(V1_TINY), "--model", str(V2_TINY)]
    assert cli.main(argv) == 0
    batchers = served[0].state.batchers
    assert list(batchers) == [V2, V1]
    assert batchers[V2].engine is not batchers[V1].engine


def test_serve_refuses_two_models_of_one_public_name_before_loading_either(monkeypatch, tmp_path, capsys):
    """Two folders of the same last part would both be served under that name: refused at once,
    naming both, before minutes of loading (no engine is built: shared_engine would fail)."""
    for var in (*(s.env for s in settings.SETTINGS.values()), "JINACLIP_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    twin = tmp_path / "elsewhere" / V2_TINY.name
    shutil.copytree(V2_TINY, twin)
    monkeypatch.setattr("jinaclip_integrations.engine.shared_engine", lambda *a, **k: pytest.fail("a model was loaded"))
    assert cli.main(["serve", "-q", "--model", str(V2_TINY), "--model", str(twin)]) == 1
    err = capsys.readouterr().err
    assert f"--model {V2_TINY} and --model {twin} would both be served as '{V2_TINY.name}'" in err


# -- the routes without /v1 ------------------------------------------------------------------------------


def test_the_aliases_answer_as_the_v1_routes(http, anonymous, images):
    assert ok(http.get("/models")) == ok(http.get("/v1/models"))
    body = {"model": V1, "input": ["a cat", {"image": b64(images[0])}]}
    np.testing.assert_allclose(vectors(http.post("/embeddings", json=body)), vectors(http.post("/v1/embeddings", json=body)), atol=ATOL)  # fmt: skip
    classify = {"input": [b64(images[0])], "labels": LABELS}
    assert ok(http.post("/classify", json=classify))["data"][0]["labels"][0]["label"] == ok(http.post("/v1/classify", json=classify))["data"][0]["labels"][0]["label"]  # fmt: skip
    # the same key, limits and error shapes
    too_many = {"/embeddings": {"input": ["a"] * (MAX_ITEMS + 1)}, "/classify": {"input": ["a"] * MAX_ITEMS, "labels": ["b"]}}  # fmt: skip
    for path, body in too_many.items():
        error(anonymous.post(path, json=body), 401, "API key")
        error(http.post(path, json={"input": ["x" * MAX_BODY]}), 413, "request body is too large")
        error(http.post(path, json=body), 400, "more than the limit")
    error(anonymous.get("/models"), 401, "API key")


def test_the_schema_lists_each_route_once(http):
    paths = ok(http.get("/openapi.json"))["paths"]
    assert {"/v1/embeddings", "/v1/models", "/v1/classify", "/metrics"} <= set(paths)
    assert not {"/embeddings", "/models", "/classify"} & set(paths)
    request = paths["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(request["required"]) == {"input", "labels"}
    assert {"401", "413", "400"} <= set(paths["/v1/classify"]["post"]["responses"])
    assert set(paths["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain; version=0.0.4; charset=utf-8"}


# -- zero-shot classification ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "task"), [(V2, None), (V2, "retrieval.query"), (V1, None)])
def test_classify_gives_the_label_probabilities_of_the_engines_vectors(http, engines, images, name, task):
    engine = engines[name]
    inputs = [b64(images[0]), f"data:image/png;base64,{b64(images[1])}", {"image": b64(images[2])}, {"bytes": b64(images[3])}]  # fmt: skip
    body = ok(http.post("/v1/classify", json={"model": name, "input": inputs, "labels": LABELS, **({"task": task} if task else {})}))  # fmt: skip
    expected = label_probabilities(
        engine.encode_image(images), engine.encode_text(LABELS, task=task), engine.logit_scale
    )
    assert body["object"] == "list" and body["model"] == name
    assert [item["index"] for item in body["data"]] == [0, 1, 2, 3]
    for item, probabilities in zip(body["data"], expected, strict=True):
        assert item["object"] == "classification"
        scores = [label["score"] for label in item["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert math.isclose(sum(scores), 1, abs_tol=1e-5)
        got = dict((label["label"], label["score"]) for label in item["labels"])
        assert list(got) == [LABELS[i] for i in np.argsort(-probabilities, kind="stable")]
        np.testing.assert_allclose([got[label] for label in LABELS], probabilities, atol=ATOL)
    tokens = sum(map(len, engine.tokenize(LABELS, task=task).ids)) + 4 * engine.image_tokens
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


def test_a_label_cut_at_the_models_length_is_marked(http, engines, images):
    """A label longer than the model reads is cut as the engine cuts it, and says so, as a long
    text of /v1/embeddings does; the other labels carry no such field."""
    labels = [LABELS[0], "cat " * 600]  # about 1,200 tokens of the tiny tokenizer: past 512
    engine = engines[V2]
    assert engine.tokenize(labels).truncated == [1]
    body = ok(http.post("/v1/classify", json={"model": V2, "input": [b64(images[0])], "labels": labels}))
    got = {label["label"]: label for label in body["data"][0]["labels"]}
    assert got[labels[1]]["truncated"] is True and "truncated" not in got[labels[0]]
    expected = label_probabilities(engine.encode_image(images[:1]), engine.encode_text(labels), engine.logit_scale)
    np.testing.assert_allclose([got[label]["score"] for label in labels], expected[0], atol=ATOL)


def test_classify_embeds_through_the_models_batcher(server, http, images):
    stats = server[1].state.batchers[V1].stats
    before = (stats.modality_items["text"], stats.modality_items["image"])
    ok(
        http.post("/v1/classify", json={"model": V1, "input": b64(images[0]), "labels": LABELS})
    )  # one image as a string
    assert (stats.modality_items["text"], stats.modality_items["image"]) == (before[0] + 3, before[1] + 1)


def test_classify_refuses_what_it_cannot_read(http, anonymous, images):
    image = b64(images[0])
    cases = [
        (
            {"input": [image, {"text": "a cat"}], "labels": LABELS},
            r"^invalid image at index 1: classify takes images",
            "input",
        ),
        ({"input": [image, "bm90IGFuIGltYWdl"], "labels": LABELS}, r"^invalid image at index 1: ", "input"),
        (
            {"input": [image], "labels": ["a cat", 3]},
            r"^invalid label at index 1: expected a string, got int",
            "labels",
        ),
        ({"input": [image], "labels": []}, r"^labels must be a non-empty list", "labels"),
        ({"input": [image]}, r"^labels: Field required", "labels"),
        ({"labels": LABELS}, r"^input: Field required", "input"),
        (
            {"input": [image] * 6, "labels": ["a"] * 7},
            r"input and labels have 13 items together, more than the limit of 12",
            "labels",
        ),
        ({"input": [image], "labels": LABELS, "dimensions": 16}, r"unknown field 'dimensions'", "dimensions"),
        ({"input": [image], "labels": LABELS, "task": "x"}, r"task 'x' is not supported", "task"),
        ({"input": [image], "labels": LABELS, "model": "nope"}, r"model 'nope' is not served here", "model"),
    ]
    for body, pattern, param in cases:
        error(http.post("/v1/classify", json=body), 400, pattern, param)
    error(anonymous.post("/v1/classify", json=cases[0][0]), 401, "API key")


def test_a_label_over_the_text_limit_is_refused(engines, images):
    app = create_app(engines[V2], ServerSettings(max_text_chars=10))
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/v1/classify", json={"input": [b64(images[0])], "labels": ["a cat", "x" * 11]})
    error(response, 400, r"^invalid label at index 1: text has 11 characters, more than the limit of 10", "labels")


# -- output precisions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["int8", "uint8", "binary", "ubinary"])
def test_the_smaller_precisions_are_quantize_of_the_float_vectors(http, images, precision):
    body = {"input": ["a cat", {"image": b64(images[0])}], "dimensions": 32}
    floats = vectors(http.post("/v1/embeddings", json=body)).astype(np.float32)
    got = vectors(http.post("/v1/embeddings", json={**body, "embedding_type": precision}))
    expected = quantize(floats, precision)
    assert got.dtype.kind == "i" and got.shape == expected.shape
    # a component within float noise of a rounding edge may round the other way (measured: all equal)
    assert np.abs(got - expected).max() <= 1 and (got == expected).mean() > 0.9
    if precision in ("int8", "uint8"):
        restored = got - (128 if precision == "uint8" else 0)
        cosine = (restored * floats).sum(1) / np.linalg.norm(restored, axis=1) / np.linalg.norm(floats, axis=1)
        assert cosine.min() > 0.999  # measured: 0.99998 on the tiny model's 32-d vectors


# -- Prometheus metrics ----------------------------------------------------------------------------------


def scrape(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus_client's parser: (sample name, sorted labels) -> value,
    after checking the exposition's structure by hand where that parser is lenient."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    assert text.endswith("\n")
    families = list(prometheus_parser.text_string_to_metric_families(text))
    typed = {family.name: family.type for family in families}
    assert typed == {
        "jinaclip_requests": "counter", "jinaclip_request_errors": "counter",
        "jinaclip_request_duration_seconds": "histogram", "jinaclip_embedded_items": "counter",
        "jinaclip_batch_size": "histogram", "jinaclip_queue_depth": "gauge",
    }  # fmt: skip
    sample_line = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? \S+')
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            declared.add(line.split()[2])
        elif not line.startswith("# HELP "):
            assert sample_line.fullmatch(line), line
            name = line.split("{")[0].split(" ")[0]
            assert any(name == d or name.startswith(f"{d}_") for d in declared), f"{name} before its TYPE line"
    samples = {}
    for family in families:
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"{key} twice"
            samples[key] = sample.value
        if family.type == "histogram":  # cumulative buckets ending in +Inf == count
            series: dict[tuple, list[tuple[float, float]]] = {}
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
                    series.setdefault(labels, []).append((float(sample.labels["le"]), sample.value))
            for labels, buckets in series.items():
                assert [le for le, _ in buckets] == sorted(le for le, _ in buckets) and buckets[-1][0] == math.inf
                assert [n for _, n in buckets] == sorted(n for _, n in buckets)
                assert buckets[-1][1] == samples[f"{family.name}_count", labels]
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_errors_items_and_batches(http, anonymous, images):
    before = scrape(http)
    ok(http.post("/v1/embeddings", json={"model": V1, "input": ["a", "b", "c"]}))
    ok(http.post("/embeddings", json={"model": V1, "input": [{"image": b64(images[0])}]}))
    http.post("/v1/embeddings", json={"model": "nope", "input": ["a"]})  # 400, before a model is known
    http.post("/v1/embeddings", json={"model": V1, "input": ["a"], "task": "x"})  # 400, its model known
    anonymous.post("/v1/embeddings", json={"input": ["a"]})  # 401
    http.post("/v1/embeddings", content=b"x" * (MAX_BODY + 1))  # 413
    http.get("/no/such/path")  # 404, as route "other"
    after = scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "jinaclip_requests_total"
    assert delta(requests, route="/v1/embeddings", method="POST", status="200", model=V1) == 1
    assert delta(requests, route="/embeddings", method="POST", status="200", model=V1) == 1
    assert delta(requests, route="/v1/embeddings", method="POST", status="400", model="") == 1
    assert delta(requests, route="/v1/embeddings", method="POST", status="400", model=V1) == 1
    assert delta(requests, route="/v1/embeddings", method="POST", status="401", model="") == 1
    assert delta(requests, route="/v1/embeddings", method="POST", status="413", model="") == 1
    assert delta(requests, route="other", method="GET", status="404", model="") == 1
    assert delta(requests, route="/metrics", method="GET", status="200", model="") == 1  # the first scrape
    errors = "jinaclip_request_errors_total"
    assert delta(errors, route="/v1/embeddings", status="400", model="") == 1
    assert delta(errors, route="/v1/embeddings", status="401", model="") == 1
    assert delta(errors, route="other", status="404", model="") == 1
    assert not any(name == errors and ("status", "200") in labels for name, labels in after)
    assert delta("jinaclip_request_duration_seconds_count", route="/v1/embeddings", model=V1) == 2  # 200 and 400
    assert delta("jinaclip_request_duration_seconds_sum", route="/v1/embeddings", model=V1) > 0
    assert delta("jinaclip_embedded_items_total", model=V1, modality="text") == 3
    assert delta("jinaclip_embedded_items_total", model=V1, modality="image") == 1
    assert delta("jinaclip_embedded_items_total", model=V2, modality="text") == 0
    assert delta("jinaclip_batch_size_count", model=V1) == 2  # the texts, the image
    assert delta("jinaclip_batch_size_sum", model=V1) == 4
    assert delta("jinaclip_batch_size_bucket", model=V1, le="1.0") == 1
    assert delta("jinaclip_batch_size_bucket", model=V1, le="4.0") == 2
    assert value(after, "jinaclip_queue_depth", model=V1) == value(after, "jinaclip_queue_depth", model=V2) == 0


def test_metrics_need_the_key(anonymous):
    error(anonymous.get("/metrics"), 401, "API key")


class Held:
    """The real engine, except that embedding texts waits for ``release``."""

    def __init__(self, engine, release: threading.Event) -> None:
        self._engine, self._release = engine, release

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def encode_tokens(self, tokenized, **kwargs):
        assert self._release.wait(30), "the test never released the model"
        return self._engine.encode_tokens(tokenized, **kwargs)


async def test_the_queue_depth_gauge_counts_requests_waiting_for_the_model(engines):
    release = threading.Event()
    app = create_app({"held": Held(engines[V2], release)}, ServerSettings())
    with serve(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            blocker = asyncio.ensure_future(client.post("/v1/embeddings", json={"input": ["blocker"]}))
            while app.state.batcher.stats.batches == 0:  # the blocker holds the model
                await asyncio.sleep(0.01)
            waiting = [asyncio.ensure_future(client.post("/v1/embeddings", json={"input": [f"t{i}"]})) for i in range(2)]  # fmt: skip
            deadline = time.monotonic() + 30
            while app.state.batcher.queued < 2:
                assert time.monotonic() < deadline, "the requests did not queue"
                await asyncio.sleep(0.01)
            text = (await client.get("/metrics")).text
            release.set()
            assert [r.status_code for r in await asyncio.gather(blocker, *waiting)] == [200, 200, 200]
            after = (await client.get("/metrics")).text
    assert 'jinaclip_queue_depth{model="held"} 2\n' in text
    assert 'jinaclip_queue_depth{model="held"} 0\n' in after


def test_a_served_model_is_float32_on_the_cpu_unless_asked(monkeypatch):
    """The server merges requests into batches: in bf16 a vector would depend on its batch, so the
    CPU serves float32 by default, whatever the CPU; an explicit dtype is kept."""
    from jinaclip_integrations.engine import precision
    from jinaclip_integrations.server import serving_dtype

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda *args: True)
    assert serving_dtype(None, "cpu") == "float32"
    assert serving_dtype("bfloat16", "cpu") == "bfloat16"
    assert serving_dtype("int8", None) == "int8"
