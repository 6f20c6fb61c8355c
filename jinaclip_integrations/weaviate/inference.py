"""Weaviate inference-container routes served by jina-clip: ``multi2vec-clip`` and ``text2vec-transformers``.

Weaviate's vectorizer modules send texts and images to an HTTP "inference container"; these
routes speak both modules' protocols, so a Weaviate server embeds objects and ``nearText`` /
``nearImage`` queries with a local jina-clip model:

- ``POST /vectorize`` (multi2vec-clip): ``{"texts": [...], "images": [<base64>, ...]}`` ->
  ``{"textVectors": [...], "imageVectors": [...]}``. Weaviate sends no task here, so texts are
  embedded without the query instruction. Set ``CLIP_INFERENCE_API=http://host:port``.
- ``POST /vectors`` (text2vec-transformers): ``{"text": ..., "config": {...}}`` or the batch
  form ``{"texts": [...], "config": {...}}``; ``config.task_type`` ``"query"`` gets the
  model's query instruction (``retrieval.query``), ``"passage"`` none; ``config.dimensions``
  picks a Matryoshka size. ``/passage/...`` and ``/query/...`` serve the same protocol with the
  task fixed: set ``TRANSFORMERS_PASSAGE_INFERENCE_API=http://host:port/passage`` and
  ``TRANSFORMERS_QUERY_INFERENCE_API=http://host:port/query``.
- ``GET /meta`` describes the model; ``GET /.well-known/live`` and ``/.well-known/ready``
  answer 204 (also under both prefixes).

Vectors are L2-normalized. Requests are validated inside the routes, so every error is
``{"error": "..."}`` (the field Weaviate reports) with status 400 for a bad request, 500 for a
failure and 503 when the embedding server is not ready or shutting down, whatever app the
router is mounted in. Images are decoded here with strict base64 and reach the engine as
bytes: a string from the network is never opened as a path or fetched as a URL.

The routes embed through an :class:`~jinaclip_integrations.server.batcher.Embedder`: in the
embedding server (``jinaclip serve``) its micro-batcher, so these requests are merged with the
others and answered before it shuts down; in :func:`create_inference_app` (``python -m
jinaclip_integrations.weaviate``) the engine itself, one call per request on a worker thread.
A request whose client disconnects is cancelled (:func:`unless_client_leaves`).

Needs the ``server`` extra: ``pip install "jinaclip-integrations[server]"``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

try:
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.concurrency import run_in_threadpool
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError(
        'jinaclip_integrations.weaviate.inference needs FastAPI: pip install "jinaclip-integrations[server]"'
    ) from exc

import numpy as np

from .._adapter import DEFAULT_QUERY_TASK
from ..errors import InputError
from ..server.batcher import (
    RETRY_LATER,
    BatcherClosed,
    DirectEmbedder,
    Embedder,
    OutOfMemory,
    gather_all,
    output_sizes,
    truncate,
)

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine

__all__ = ["create_inference_app", "inference_router"]

logger = logging.getLogger(__name__)

#: how a text2vec-transformers route picks the task: from ``config.task_type``, or fixed
TaskMode = Literal["config", "passage", "query"]

_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE | re.ASCII)


# -- request and response bodies (validated in the routes, documented in the OpenAPI schema) --


class _Body(BaseModel):
    # strict: no "1" -> 1 or 1 -> "1"; extra keys (the Go client's "dims", "vector", "error") are ignored
    model_config = ConfigDict(strict=True, extra="ignore")


class ClipRequest(_Body):
    """multi2vec-clip /vectorize request; a missing or null list counts as empty."""

    texts: list[str] | None = Field(default=None, description="Texts, embedded without a task instruction.")
    images: list[str] | None = Field(default=None, description="Images as base64 (optionally a data:image URI).")


class ClipResponse(BaseModel):
    textVectors: list[list[float]] = Field(description="One vector per text, in request order.")
    imageVectors: list[list[float]] = Field(description="One vector per image, in request order.")


class VectorConfig(_Body):
    """text2vec-transformers per-request options (each may be missing)."""

    pooling_strategy: str | None = Field(default=None, description="Only masked_mean (the model mean-pools).")
    task_type: str | None = Field(default=None, description="'query' or 'passage'; ignored under /query and /passage.")
    dimensions: int | None = Field(default=None, description="Matryoshka size to truncate to.")


class VectorRequest(_Body):
    """text2vec-transformers /vectors request for one text."""

    text: str
    config: VectorConfig | None = None


class VectorsRequest(_Body):
    """text2vec-transformers /vectors batch request."""

    texts: list[str]
    config: VectorConfig | None = None


class VectorResponse(BaseModel):
    text: str
    vector: list[float]
    dim: int
    dims: int


class VectorsResponse(BaseModel):
    vectors: list[list[float]] = Field(description="One vector per text, in request order.")
    dims: int


class ErrorResponse(BaseModel):
    error: str


class ModelInfo(BaseModel):
    name: str
    embedding_dim: int
    matryoshka_dims: list[int]
    tasks: list[str]
    device: str
    dtype: str


class _BadRequest(ValueError):
    """The request is wrong (answered with 400 and the message)."""


class _Limits:
    """Per-request limits of a router (None: unlimited)."""

    def __init__(self, max_items: int | None, max_text_chars: int | None) -> None:
        self.max_items, self.max_text_chars = max_items, max_text_chars

    def check(self, texts: list[str], items: int) -> None:
        if self.max_items is not None and items > self.max_items:
            raise _BadRequest(f"{items} inputs in one request; the limit is {self.max_items}")
        if self.max_text_chars is not None:
            for i, text in enumerate(texts):
                if len(text) > self.max_text_chars:
                    raise InputError(i, f"{len(text)} characters; the limit is {self.max_text_chars}", kind="text")


BodyT = TypeVar("BodyT", bound=BaseModel)
T = TypeVar("T")
#: a route's work: the request's JSON object -> the answer (numpy arrays allowed)
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


# -- the routes ----------------------------------------------------------------------------------


def inference_router(
    engine: JinaCLIPEngine,
    *,
    max_items: int | None = None,
    max_text_chars: int | None = None,
    embedder: Embedder | None = None,
) -> APIRouter:
    """Routes speaking Weaviate's ``multi2vec-clip`` and ``text2vec-transformers`` inference
    protocols with ``engine`` (see the module docstring); mount them at the root of an app, or
    under a prefix that then belongs in the URLs given to Weaviate. ``max_items`` (texts plus
    images per request) and ``max_text_chars`` (per text) are refused with 400 beyond them.

    ``embedder`` embeds the inputs: a running :class:`~jinaclip_integrations.server.batcher.MicroBatcher`
    of ``engine`` merges these requests with others (the embedding server passes its own);
    default: ``engine`` called directly, one request per call."""
    router = APIRouter()
    limits = _Limits(max_items, max_text_chars)
    embed = embedder or DirectEmbedder(engine)
    query_task = DEFAULT_QUERY_TASK if DEFAULT_QUERY_TASK in engine.tasks else None
    info = model_info(engine)
    failures: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Bad request: invalid JSON, field or item"},
        500: {"model": ErrorResponse, "description": "The model failed"},
        503: {"model": ErrorResponse, "description": "The embedding server is not ready, or shutting down"},
    }

    async def vectorize(request: Request) -> Response:
        return await _answer(request, lambda data: _vectorize(embed, data, limits))

    router.add_api_route(
        "/vectorize", vectorize, methods=["POST"], tags=["multi2vec-clip"], summary="Embed texts and images",
        response_model=ClipResponse, responses=failures, openapi_extra=_request_body(ClipRequest),
    )  # fmt: skip
    for prefix, mode in (("", "config"), ("/passage", "passage"), ("/query", "query")):
        endpoint = _vectors_endpoint(engine, embed, query_task, mode, limits)
        for path, listed in ((f"{prefix}/vectors", True), (f"{prefix}/vectors/", False)):
            router.add_api_route(
                path, endpoint, methods=["POST"], tags=["text2vec-transformers"], include_in_schema=listed,
                summary=f"Embed texts ({'task from config.task_type' if mode == 'config' else mode + ' task'})",
                response_model=VectorResponse | VectorsResponse, responses=failures,
                openapi_extra=_request_body(VectorRequest, VectorsRequest),
            )  # fmt: skip
        _add_status_routes(router, prefix, info)
    return router


def create_inference_app(engine: JinaCLIPEngine) -> FastAPI:
    """A FastAPI app serving :func:`inference_router` at its root."""
    from .. import __version__

    app = FastAPI(
        title="jina-clip Weaviate inference",
        version=__version__,
        description="Weaviate multi2vec-clip and text2vec-transformers inference protocols backed by jina-clip.",
    )
    app.include_router(inference_router(engine))
    return app


def model_info(engine: JinaCLIPEngine) -> dict[str, Any]:
    """What ``GET /meta`` answers (Weaviate shows it under ``/v1/meta``)."""
    return {
        "name": engine.name_or_path,
        "embedding_dim": engine.embedding_dim,
        "matryoshka_dims": list(engine.matryoshka_dims),
        "tasks": list(engine.tasks),
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
    }


def _add_status_routes(router: APIRouter, prefix: str, info: dict[str, Any]) -> None:
    async def meta() -> dict[str, Any]:
        return info

    async def alive() -> Response:
        return Response(status_code=204)

    router.add_api_route(f"{prefix}/meta", meta, methods=["GET"], response_model=ModelInfo, tags=["status"])
    for check in ("live", "ready"):
        router.add_api_route(
            f"{prefix}/.well-known/{check}", alive, methods=["GET"], status_code=204, response_class=Response,
            tags=["status"], name=check,
        )  # fmt: skip


def _vectors_endpoint(
    engine: JinaCLIPEngine, embed: Embedder, query_task: str | None, mode: TaskMode, limits: _Limits
) -> Callable[[Request], Awaitable[Response]]:
    async def vectors(request: Request) -> Response:
        return await _answer(request, lambda data: _vectors(engine, embed, query_task, mode, data, limits))

    return vectors


async def _vectorize(embed: Embedder, data: dict[str, Any], limits: _Limits) -> dict[str, Any]:
    body = _validate(ClipRequest, data)
    texts = body.texts or []
    limits.check(texts, len(texts) + len(body.images or []))
    images = [decode_image(image, i) for i, image in enumerate(body.images or [])]
    text_vectors, image_vectors = await gather_all(
        [
            embed.embed_texts(texts, None) if texts else _no_vectors(),
            embed.embed_images(images) if images else _no_vectors(),
        ]
    )
    return {"textVectors": text_vectors, "imageVectors": image_vectors}


async def _no_vectors() -> np.ndarray:
    return np.empty((0, 0), dtype=np.float32)


async def _vectors(
    engine: JinaCLIPEngine,
    embed: Embedder,
    query_task: str | None,
    mode: TaskMode,
    data: dict[str, Any],
    limits: _Limits,
) -> dict[str, Any]:
    body = _validate(VectorsRequest if "texts" in data else VectorRequest, data)
    config = body.config or VectorConfig()
    if config.pooling_strategy not in (None, "masked_mean"):
        raise _BadRequest(
            f"pooling_strategy {config.pooling_strategy!r} is not supported: jina-clip mean-pools its text "
            "tokens (masked_mean)"
        )
    task = _task(config, mode, query_task)
    _check_dimensions(engine, config.dimensions)
    texts = body.texts if isinstance(body, VectorsRequest) else [body.text]
    limits.check(texts, len(texts))
    vectors = await embed.embed_texts(texts, task) if texts else np.empty((0, output_sizes(engine)[-1]), np.float32)
    vectors = truncate(vectors, config.dimensions, normalize=True)
    dims = vectors.shape[1]
    if isinstance(body, VectorsRequest):
        return {"vectors": vectors, "dims": dims}
    return {"text": body.text, "vector": vectors[0], "dim": dims, "dims": dims}


def _task(config: VectorConfig, mode: TaskMode, query_task: str | None) -> str | None:
    kind = config.task_type if mode == "config" else mode
    if kind in (None, "passage"):
        return None
    if kind == "query":
        return query_task
    raise _BadRequest(f"task_type {kind!r} is not supported; expected 'query' or 'passage'")


def _check_dimensions(engine: JinaCLIPEngine, dimensions: int | None) -> None:
    """Refuse, before embedding, a ``config.dimensions`` the answer cannot have: neither the
    size the engine returns nor a Matryoshka size below it."""
    allowed = output_sizes(engine)
    if dimensions is not None and dimensions not in allowed:
        raise _BadRequest(f"dimensions {dimensions} is not supported by this model; choose one of {allowed}")


def decode_image(value: str, index: int) -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed); an
    ``InputError`` naming ``index`` for anything that is not strict base64."""
    match = _DATA_URI.match(value)
    try:
        data = base64.b64decode(value[match.end() :] if match else value, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise InputError(index, f"not valid base64 ({exc})", kind="image") from None
    if not data:
        raise InputError(index, "empty image", kind="image")
    return data


# -- request parsing and error answers -------------------------------------------------------------


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or a ``ValueError`` saying what is wrong with it (not
    JSON, nested too deeply for the parser, or not an object); the server's routes use it too."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ValueError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ValueError(f"request body must be a JSON object, not {type(data).__name__}")
    return data


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T | None:
    """``work``'s result, or None when the client disconnects first: ``work`` is then
    cancelled (a request still queued in the micro-batcher is dropped; one already in the model
    finishes and its vectors are discarded). Call it once the request body has been read: it
    listens for the disconnect on the request's ``receive``."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request itself is cancelled
        gone.cancel()
        if not task.done():
            task.cancel()
    return task.result() if task.done() and not task.cancelled() else None


async def _disconnected(request: Request) -> None:
    """Return when the client has disconnected (the body must have been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def printable(message: str) -> str:
    """``message`` as valid UTF-8 for a JSON answer: a lone surrogate from a client's JSON
    escapes, echoed in an error message (in a URL, say), becomes ``\\udXXX``."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


def _validate(model: type[BodyT], data: dict[str, Any]) -> BodyT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = error["loc"]
        if len(loc) == 2 and loc[0] in ("texts", "images") and isinstance(loc[1], int):
            raise InputError(loc[1], error["msg"], kind=loc[0][:-1]) from None
        raise _BadRequest(f"{'.'.join(map(str, loc)) or 'body'}: {error['msg']}") from None


async def _answer(request: Request, handle: Handler) -> Response:
    """Run a route's work on the request's JSON object (whatever the Content-Type: the Go client
    sends none): its result with 200, or ``{"error": ...}`` with 400, 500 or 503."""
    try:
        try:
            data = json_object(await request.body())
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        content = await unless_client_leaves(request, handle(data))
        if content is None:  # nobody to answer
            return Response(status_code=499)
        return await run_in_threadpool(_json_response, content)
    except (_BadRequest, InputError) as exc:
        return _error(400, str(exc))
    except BatcherClosed:
        return _error(503, "the server is not ready or is shutting down")
    except OutOfMemory as exc:
        return _error(503, str(exc), RETRY_LATER)
    except Exception as exc:
        logger.exception("vectorization failed")
        return _error(500, f"vectorization failed: {type(exc).__name__}: {exc}")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": printable(message)}, status_code=status, headers=headers)


def _json_response(content: dict[str, Any]) -> JSONResponse:
    """The answer, its vectors as JSON lists (on a worker thread: large answers take a while)."""
    return JSONResponse(
        {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in content.items()}
    )


def _request_body(*models: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON request body of one of ``models`` (the routes read
    the body themselves, so FastAPI does not know it)."""
    schemas = [_inline_schema(model) for model in models]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with nested models written out (OpenAPI cannot resolve ``$defs``)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return inline(schema)
