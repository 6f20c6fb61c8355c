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
router is mounted in (the statuses are :func:`~.http.failure`'s, as for ``/v1/embeddings``).
Images are decoded with strict base64 (:func:`~.security.decode_image`) and reach the engine
as bytes: a string from the network is never opened as a path or fetched as a URL.

The routes embed through an :class:`~.batcher.Embedder`: in the embedding server
(:func:`~.app.create_app`, which ``jinaclip serve`` and ``python -m
jinaclip_integrations.weaviate`` run) its micro-batcher, so these requests are merged with the
others, kept within the server's limits and answered before it shuts down; in
:func:`create_inference_app` the engine itself, one call per request on a worker thread. A
request whose client disconnects is cancelled (:func:`~.http.unless_client_leaves`).

Needs the ``server`` extra: ``pip install "jinaclip-integrations[server]"``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from .._lazy import needs_extra

with needs_extra("server", "jinaclip_integrations.server.weaviate_routes"):
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

import numpy as np

from ..engine import truncate_normalize
from ..errors import InputError
from .batcher import DirectEmbedder, Embedder, gather_all
from .http import BadRequest, Failure, json_object, respond, validate
from .schemas import (
    ClipRequest,
    ClipResponse,
    ErrorResponse,
    ModelInfo,
    VectorConfig,
    VectorRequest,
    VectorResponse,
    VectorsRequest,
    VectorsResponse,
    request_body,
)
from .security import decode_image

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine

__all__ = ["create_inference_app", "inference_router", "model_info", "weaviate_error"]

#: how a text2vec-transformers route picks the task: from ``config.task_type``, or fixed
TaskMode = Literal["config", "passage", "query"]
#: the list fields of the bodies whose elements are items (an error names the item's index)
_ITEMS = {"texts": "text", "images": "image"}
#: a route's work: the request's JSON object -> the answer (numpy arrays allowed)
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


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

    ``embedder`` embeds the inputs: a running :class:`~.batcher.MicroBatcher` of ``engine``
    merges these requests with others (the embedding server passes its own); default:
    ``engine`` called directly, one request per call."""
    router = APIRouter()
    limits = _Limits(max_items, max_text_chars)
    embed = embedder or DirectEmbedder(engine)
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
        response_model=ClipResponse, responses=failures, openapi_extra=request_body(ClipRequest),
    )  # fmt: skip
    for prefix, mode in (("", "config"), ("/passage", "passage"), ("/query", "query")):
        endpoint = _vectors_endpoint(engine, embed, mode, limits)
        for path, listed in ((f"{prefix}/vectors", True), (f"{prefix}/vectors/", False)):
            router.add_api_route(
                path, endpoint, methods=["POST"], tags=["text2vec-transformers"], include_in_schema=listed,
                summary=f"Embed texts ({'task from config.task_type' if mode == 'config' else mode + ' task'})",
                response_model=VectorResponse | VectorsResponse, responses=failures,
                openapi_extra=request_body(VectorRequest, VectorsRequest),
            )  # fmt: skip
        _add_status_routes(router, prefix, info)
    return router


def create_inference_app(engine: JinaCLIPEngine) -> FastAPI:
    """A FastAPI app serving :func:`inference_router` at its root: the engine called directly,
    without the server's limits, auth and batcher (serve :func:`~.app.create_app` for those)."""
    from .._version import __version__

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


def weaviate_error(failure: Failure) -> JSONResponse:
    """``failure`` in the shape Weaviate's module clients read: ``{"error": "..."}``."""
    return JSONResponse({"error": failure.message}, status_code=failure.status, headers=failure.headers)


class _Limits:
    """Per-request limits of a router (None: unlimited)."""

    def __init__(self, max_items: int | None, max_text_chars: int | None) -> None:
        self.max_items, self.max_text_chars = max_items, max_text_chars

    def check(self, texts: list[str], items: int) -> None:
        if self.max_items is not None and items > self.max_items:
            raise BadRequest(f"{items} inputs in one request; the limit is {self.max_items}")
        if self.max_text_chars is not None:
            for i, text in enumerate(texts):
                if len(text) > self.max_text_chars:
                    raise InputError(i, f"{len(text)} characters; the limit is {self.max_text_chars}", kind="text")


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
    engine: JinaCLIPEngine, embed: Embedder, mode: TaskMode, limits: _Limits
) -> Callable[[Request], Awaitable[Response]]:
    async def vectors(request: Request) -> Response:
        return await _answer(request, lambda data: _vectors(engine, embed, mode, data, limits))

    return vectors


async def _answer(request: Request, handle: Handler) -> Response:
    """Run a route's work on the request's JSON object: its result with 200, or
    ``{"error": ...}`` with the status of :func:`~.http.failure`."""

    async def work(body: bytes) -> Response:
        content = await handle(json_object(body))
        return await run_in_threadpool(_json_response, content)

    return await respond(request, work, weaviate_error, action="vectorization")


async def _vectorize(embed: Embedder, data: dict[str, Any], limits: _Limits) -> dict[str, Any]:
    body = validate(ClipRequest, data, _ITEMS)
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
    engine: JinaCLIPEngine, embed: Embedder, mode: TaskMode, data: dict[str, Any], limits: _Limits
) -> dict[str, Any]:
    body = validate(VectorsRequest if "texts" in data else VectorRequest, data, _ITEMS)
    config = body.config or VectorConfig()
    if config.pooling_strategy not in (None, "masked_mean"):
        raise BadRequest(
            f"pooling_strategy {config.pooling_strategy!r} is not supported: jina-clip mean-pools its text "
            "tokens (masked_mean)"
        )
    task = _task(config, mode, engine.query_task)
    _check_dimensions(engine, config.dimensions)
    texts = body.texts if isinstance(body, VectorsRequest) else [body.text]
    limits.check(texts, len(texts))
    vectors = await embed.embed_texts(texts, task) if texts else np.empty((0, engine.output_dim), np.float32)
    # the engine normalized the full vectors: only a shorter one needs it again
    shorter = config.dimensions is not None and config.dimensions < engine.output_dim
    vectors = truncate_normalize(vectors, config.dimensions, normalize=shorter)
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
    raise BadRequest(f"task_type {kind!r} is not supported; expected 'query' or 'passage'")


def _check_dimensions(engine: JinaCLIPEngine, dimensions: int | None) -> None:
    """Refuse, before embedding, a ``config.dimensions`` the answer cannot have: neither the
    size the engine returns nor a Matryoshka size below it."""
    allowed = list(engine.output_dims)
    if dimensions is not None and dimensions not in allowed:
        raise BadRequest(f"dimensions {dimensions} is not supported by this model; choose one of {allowed}")


def _json_response(content: dict[str, Any]) -> JSONResponse:
    """The answer, its vectors as JSON lists (on a worker thread: large answers take a while)."""
    return JSONResponse(
        {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in content.items()}
    )
