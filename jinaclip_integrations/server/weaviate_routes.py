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
- ``GET /meta`` describes the model (named as :func:`~.security.public_model_name` says: never
  a path of the server's); ``GET /.well-known/live`` and ``/.well-known/ready`` answer 204
  (also under both prefixes; ``HEAD`` too).

Vectors are L2-normalized. Requests are validated inside the routes, so every error is
``{"error": "..."}`` (the field Weaviate reports) with status 400 for a bad request, 500 for a
failure and 503 when the embedding server is not ready or shutting down, whatever app the
router is mounted in (the statuses are :func:`~.http.failure`'s, as for ``/v1/embeddings``).
A field the protocols do not have is a 400 naming it; the fields Weaviate's Go client sends
with every ``/vectors`` request (``dims``, ``vector``, ``error``: its answer's) are read and
ignored. Images are decoded with strict base64 (:func:`~.security.decode_image`), their headers
checked against the pixel limits (per image, and per request), and reach the engine as bytes: a
string from the network is never opened as a path or fetched as a URL. Texts are tokenized
once, here, and their ids embedded.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._lazy import needs_extra

with needs_extra("server", "jinaclip_integrations.server.weaviate_routes"):
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

import numpy as np

from ..engine import truncate_normalize
from ..errors import InputError
from .batcher import DirectEmbedder, Embedder, gather_all
from .http import INLINE_SIZE, BadRequest, Failure, add_get_route, json_object, offload, respond, validate
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
from .security import ImageCheck, decode_image, public_model_name

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine, Tokenized

__all__ = ["create_inference_app", "inference_router", "model_info", "weaviate_error"]

#: how a text2vec-transformers route picks the task: from ``config.task_type``, or fixed
TaskMode = Literal["config", "passage", "query"]
#: the list fields of the bodies whose elements are items (an error names the item's index)
_ITEMS = {"texts": "text", "images": "image"}
Prepared = TypeVar("Prepared")


def inference_router(
    engine: JinaCLIPEngine,
    *,
    max_items: int | None = None,
    max_text_chars: int | None = None,
    max_image_pixels: int | None = None,
    max_request_pixels: int | None = None,
    embedder: Embedder | None = None,
) -> APIRouter:
    """Routes speaking Weaviate's ``multi2vec-clip`` and ``text2vec-transformers`` inference
    protocols with ``engine`` (see the module docstring); mount them at the root of an app, or
    under a prefix that then belongs in the URLs given to Weaviate. ``max_items`` (texts plus
    images per request), ``max_text_chars`` (per text), ``max_image_pixels`` (per image; None:
    the engine's) and ``max_request_pixels`` (all images of a request) are refused with 400
    beyond them (None: unlimited).

    ``embedder`` embeds the inputs: a running :class:`~.batcher.MicroBatcher` of ``engine``
    merges these requests with others (the embedding server passes its own); default:
    ``engine`` called directly, one request per call."""
    router = APIRouter()
    limits = _Limits(max_items, max_text_chars, max_image_pixels or engine.max_image_pixels, max_request_pixels)
    embed = embedder or DirectEmbedder(engine)
    info = model_info(engine)
    failures: dict[int | str, dict[str, Any]] = {
        400: {"model": ErrorResponse, "description": "Bad request: invalid JSON, field or item"},
        408: {"model": ErrorResponse, "description": "The request body did not arrive in time"},
        413: {"model": ErrorResponse, "description": "Request body too large"},
        415: {
            "model": ErrorResponse,
            "description": "Not application/json (nor untyped), to a route without an API key",
        },
        500: {"model": ErrorResponse, "description": "The model failed"},
        503: {"model": ErrorResponse, "description": "The embedding server is not ready, or shutting down"},
    }

    async def vectorize(request: Request) -> Response:
        return await _answer(
            request, lambda body: _read_clip(engine, body, limits), lambda read: _vectorize(embed, read)
        )

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
        "name": public_model_name(engine.name_or_path),
        "embedding_dim": engine.embedding_dim,
        "matryoshka_dims": list(engine.matryoshka_dims),
        "tasks": list(engine.tasks),
        "device": str(engine.device),
        "dtype": str(engine.dtype).removeprefix("torch."),
    }


def weaviate_error(failure: Failure) -> JSONResponse:
    """``failure`` in the shape Weaviate's module clients read: ``{"error": "..."}``."""
    return JSONResponse({"error": failure.message}, status_code=failure.status, headers=failure.headers)


@dataclass(frozen=True)
class _Limits:
    """Per-request limits of a router (None: unlimited)."""

    max_items: int | None
    max_text_chars: int | None
    max_image_pixels: int | None
    max_request_pixels: int | None

    def check(self, texts: list[str], items: int) -> None:
        if self.max_items is not None and items > self.max_items:
            raise BadRequest(f"{items} inputs in one request; the limit is {self.max_items}")
        if self.max_text_chars is not None:
            for i, text in enumerate(texts):
                if len(text) > self.max_text_chars:
                    raise InputError(i, f"{len(text)} characters; the limit is {self.max_text_chars}", kind="text")

    def images(self, values: list[str]) -> list[bytes]:
        """Base64 images decoded strictly, their headers checked against the pixel limits."""
        check, images = ImageCheck(self.max_image_pixels, self.max_request_pixels), []
        for index, value in enumerate(values):
            images.append(data := decode_image(value, index))
            check(data, index)
        return images


def _add_status_routes(router: APIRouter, prefix: str, info: dict[str, Any]) -> None:
    async def meta() -> dict[str, Any]:
        return info

    async def alive() -> Response:
        return Response(status_code=204)

    add_get_route(router, f"{prefix}/meta", meta, response_model=ModelInfo, tags=["status"])
    for check in ("live", "ready"):
        add_get_route(router, f"{prefix}/.well-known/{check}", alive, status_code=204, response_class=Response, tags=["status"], name=check)  # fmt: skip


def _vectors_endpoint(
    engine: JinaCLIPEngine, embed: Embedder, mode: TaskMode, limits: _Limits
) -> Callable[[Request], Awaitable[Response]]:
    async def vectors(request: Request) -> Response:
        return await _answer(
            request, lambda body: _read_texts(engine, mode, body, limits), lambda read: _vectors(engine, embed, read)
        )

    return vectors


async def _answer(
    request: Request, read: Callable[[bytes], Prepared], embed: Callable[[Prepared], Awaitable[dict[str, Any]]]
) -> Response:
    """Run a route's work on the request's body: ``read`` parses and checks it (on a worker
    thread when it is large), ``embed`` answers; its result with 200, or ``{"error": ...}``
    with the status of :func:`~.http.failure`."""

    async def work(body: bytes) -> Response:
        content = await embed(await offload(len(body) > INLINE_SIZE, read, body))
        return await run_in_threadpool(_json_response, content)

    return await respond(request, work, weaviate_error, action="vectorization")


def _read_clip(engine: JinaCLIPEngine, body: bytes, limits: _Limits) -> tuple[Tokenized | None, list[bytes]]:
    """A multi2vec-clip request: its texts tokenized, its images decoded and checked."""
    request = validate(ClipRequest, json_object(body, limits.max_items), _ITEMS)
    texts = request.texts or []
    limits.check(texts, len(texts) + len(request.images or []))
    images = limits.images(request.images or [])
    return (engine.tokenize(texts) if texts else None), images


async def _vectorize(embed: Embedder, read: tuple[Tokenized | None, list[bytes]]) -> dict[str, Any]:
    tokenized, images = read
    text_vectors, image_vectors = await gather_all(
        [
            embed.embed_tokens(tokenized) if tokenized is not None else _no_vectors(),
            embed.embed_images(images) if images else _no_vectors(),
        ]
    )
    return {"textVectors": text_vectors, "imageVectors": image_vectors}


async def _no_vectors() -> np.ndarray:
    return np.empty((0, 0), dtype=np.float32)


@dataclass(frozen=True)
class _Texts:
    """A text2vec-transformers request, read: its body, texts tokenized, and the size asked for."""

    request: VectorRequest | VectorsRequest
    tokenized: Tokenized
    dimensions: int | None


def _read_texts(engine: JinaCLIPEngine, mode: TaskMode, body: bytes, limits: _Limits) -> _Texts:
    data = json_object(body, limits.max_items)
    request = validate(VectorsRequest if "texts" in data else VectorRequest, data, _ITEMS)
    config = request.config or VectorConfig()
    if config.pooling_strategy not in (None, "masked_mean"):
        raise BadRequest(
            f"pooling_strategy {config.pooling_strategy!r} is not supported: jina-clip mean-pools its text "
            "tokens (masked_mean)"
        )
    task = _task(config, mode, engine.query_task)
    _check_dimensions(engine, config.dimensions)
    texts = request.texts if isinstance(request, VectorsRequest) else [request.text]
    limits.check(texts, len(texts))
    return _Texts(request, engine.tokenize(texts, task=task), config.dimensions)


async def _vectors(engine: JinaCLIPEngine, embed: Embedder, read: _Texts) -> dict[str, Any]:
    if read.tokenized.ids:
        vectors = await embed.embed_tokens(read.tokenized)
    else:
        vectors = np.empty((0, engine.output_dim), np.float32)
    # the engine normalized the full vectors: only a shorter one needs it again
    shorter = read.dimensions is not None and read.dimensions < engine.output_dim
    vectors = truncate_normalize(vectors, read.dimensions, normalize=shorter)
    dims = vectors.shape[1]
    if isinstance(read.request, VectorsRequest):
        return {"vectors": vectors, "dims": dims}
    return {"text": read.request.text, "vector": vectors[0], "dim": dims, "dims": dims}


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
