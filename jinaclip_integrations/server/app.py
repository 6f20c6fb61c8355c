"""The embedding server: Jina's and OpenAI's ``POST /v1/embeddings`` on one route, plus the
Weaviate inference routes, backed by one engine and a :class:`~.batcher.MicroBatcher`.

``POST /v1/embeddings`` accepts both APIs' requests (the options of either may be combined):

- ``input``: a string, or a list of strings (texts) and objects ``{"text": ...}``,
  ``{"image": <http(s) URL | base64 | data:image/...;base64,...>}``, and the legacy
  ``{"url": ...}`` and ``{"bytes": <base64>}``. Token-id lists (OpenAI) are refused.
- ``task`` (Jina): ``"retrieval.query"`` gets the model's query instruction,
  ``"retrieval.passage"`` none (what Jina clients send for documents); the other tasks of
  the model pass through, anything else is a 400. Texts only: images have no task.
- ``dimensions``: one of the model's Matryoshka sizes (or its full size); the vector is
  truncated and re-normalized.
- ``normalized`` (Jina, default true): L2-normalize.
- ``embedding_type`` (Jina; legacy ``encoding_type``) or ``encoding_format`` (OpenAI):
  ``"float"`` (default), ``"base64"`` (little-endian float32 bytes, what the openai SDK asks
  for by default), ``"binary"`` / ``"ubinary"`` (signs packed 8 per byte, as Jina does; int8
  ``ubinary - 128`` for ``binary``).
- ``model`` is not checked: any name is accepted and the answer names the served model.
- ``truncate`` is accepted and ignored: texts longer than the engine's ``max_length`` tokens
  are always truncated, and their items in the answer say so (``"truncated": true``).
  ``late_chunking`` and ``return_multivector`` are refused when true.
- ``user`` is accepted and ignored.

The answer is the envelope both APIs share, ``{"object": "list", "data": [{"object":
"embedding", "index": i, "embedding": ...}], "model": ..., "usage": {"prompt_tokens": n,
"total_tokens": n}}``, where an item whose text was cut to ``max_length`` tokens also has
``"truncated": true``. Usage counts each text's tokens as the model reads it (task instruction
and special tokens included, after truncation) and each image as the tokens the
vision tower runs (patches and the CLS token: 1297 for jina-clip-v2); that is not Jina's
billing rule.

Errors come in the shape of the client's API: ``{"error": {"message", "type", "param",
"code"}}`` for OpenAI requests (they carry ``encoding_format`` or ``user``, or token ids),
``{"detail": "..."}`` for Jina ones (``task``, ``normalized``, ``embedding_type``, ... or
object items), and both keys when the request shows neither (plain texts only) or was not
read (401, 413). A bad item's message names it: ``"invalid image at index 3: ..."``. Status
codes: 400 bad request, 401 no or wrong key, 413 body too large, 500 model failure, 503 not
ready or shutting down, 504 the request took longer than ``request_timeout_s``; never 422.

Limits (:class:`~.settings.ServerSettings`): the body size (413, checked before parsing), items
per request, characters per text, pixels per image (from its header, before decoding), and
image URLs, which are fetched only when enabled (see :mod:`.security`). Inputs of concurrent
requests are embedded together (:mod:`.batcher`).

Other routes: ``GET /v1/models`` (OpenAI's list, one model), ``GET /health`` (200 while the
process runs), ``GET /ready`` (200 once the model is loaded and the batcher runs, else 503),
and the Weaviate routes of :func:`~jinaclip_integrations.weaviate.inference_router` at the
root (``/vectorize``, ``/vectors``, ``/meta``, ``/.well-known/*``; they embed through the same
batcher). With an API key set, every route needs it except ``/health``, ``/ready`` and
``/.well-known/*`` (probes), and the Weaviate routes when ``weaviate_routes_auth`` is off; the
schema and its pages (``/openapi.json``, ``/docs``, ``/redoc``) need it too (a browser opening
``/docs`` cannot send it: fetch ``/openapi.json`` with the key instead). The schema then
declares the bearer scheme and the 401 of every route that needs it.

A client that disconnects before its answer cancels its request: still queued in the batcher,
it is dropped; already in the model, it finishes and the answer is discarded. At shutdown the
server stops accepting connections, answers the requests in flight, then embeds what is still
queued before the batcher stops.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

try:
    from fastapi import APIRouter, FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, ConfigDict, Field, ValidationError
    from starlette.concurrency import run_in_threadpool
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise ImportError(
        'jinaclip_integrations.server needs FastAPI: pip install "jinaclip-integrations[server]"'
    ) from exc

import numpy as np

from ..errors import InputError
from ..weaviate.inference import _request_body, inference_router, json_object, printable, unless_client_leaves
from .batcher import RETRY_LATER, BatcherClosed, MicroBatcher, OutOfMemory, gather_all, output_sizes, truncate
from .security import BearerAuth, BodyLimit, check_image, decode_image, fetch_images, is_url
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

Dialect = Literal["openai", "jina"] | None
Format = Literal["float", "base64", "binary", "ubinary"]

#: paths answered without an API key: the probes
_PROBES = re.compile(r"/health|/ready|(/passage|/query)?/\.well-known/(live|ready)")
_OPENAI_KEYS = frozenset({"encoding_format", "user"})
_JINA_KEYS = frozenset({"task", "normalized", "embedding_type", "encoding_type", "late_chunking", "truncate", "return_multivector"})  # fmt: skip
_ITEM_KEYS = ("text", "image", "url", "bytes")
_PASSAGE, _QUERY = "retrieval.passage", "retrieval.query"
#: request bodies (bytes) and answers (floats) up to this size are handled on the event loop,
#: larger ones on a worker thread
_INLINE_SIZE = 64 * 1024
_ERROR_CODES = {401: "invalid_api_key", 413: "request_too_large", 503: "unavailable", 504: "timeout"}


# -- request and response bodies (validated in the route, documented in the OpenAPI schema) -------


class EmbeddingOptions(BaseModel):
    """Every field of a request but ``input`` (read by hand, for messages naming the item)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    model: str | None = Field(default=None, description="Any name; the answer names the served model.")
    dimensions: int | None = Field(default=None, description="A Matryoshka size of the model, or its full size.")
    task: str | None = Field(
        default=None, description="retrieval.query (query instruction), retrieval.passage (none), or a model task."
    )
    normalized: bool = Field(default=True, description="L2-normalize (Jina).")
    embedding_type: Format | None = Field(default=None, description="Output format (Jina).")
    encoding_type: Format | None = Field(default=None, description="Legacy name of embedding_type.")
    encoding_format: Literal["float", "base64"] | None = Field(default=None, description="Output format (OpenAI).")
    truncate: bool | None = Field(default=None, description="Ignored: long texts are always truncated.")
    late_chunking: bool | None = Field(default=None, description="Not supported: must not be true.")
    return_multivector: bool | None = Field(default=None, description="Not supported: must not be true.")
    user: str | None = Field(default=None, description="Ignored (OpenAI).")


class TextInput(BaseModel):
    text: str


class ImageInput(BaseModel):
    image: str = Field(description="An http(s) URL (if enabled), base64, or a data:image/...;base64 URI.")


class UrlInput(BaseModel):
    url: str = Field(description="An http(s) image URL (if enabled).")


class BytesInput(BaseModel):
    bytes: str = Field(description="A base64 image.")


class EmbeddingRequest(EmbeddingOptions):
    """A Jina or OpenAI embeddings request."""

    input: str | list[str | TextInput | ImageInput | UrlInput | BytesInput] = Field(
        description="Texts, or texts and images; at most max_items."
    )


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | list[int] | str = Field(description="Floats, base64 float32, or packed bits.")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class EmbeddingError(BaseModel):
    """``error`` for OpenAI requests, ``detail`` for Jina ones, both when the API is not known."""

    error: OpenAIError | None = None
    detail: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class _BadRequest(Exception):
    """The request is wrong as a whole (not one item): 400 with the message."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def error_response(
    dialect: Dialect, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the shape of ``dialect``'s clients (both shapes when it is None)."""
    message = printable(message)
    openai = {
        "error": {
            "message": message,
            "type": "invalid_request_error" if status < 500 else "server_error",
            "param": param,
            "code": _ERROR_CODES.get(status),
        }
    }
    jina = {"detail": message}
    body = openai if dialect == "openai" else jina if dialect == "jina" else openai | jina
    return JSONResponse(body, status_code=status, headers=headers)


# -- the app ---------------------------------------------------------------------------------------


def create_app(engine: JinaCLIPEngine, settings: ServerSettings | None = None) -> FastAPI:
    """A FastAPI app serving ``engine`` (see the module docstring).

    Args:
        engine: the model to serve (e.g. from ``shared_engine``).
        settings: limits, security and batching; default ``ServerSettings.from_env()`` (the
            API key from ``$JINACLIP_API_KEY``, everything else at its default).

    Its lifespan starts the batcher and, at shutdown, embeds what is still queued before
    stopping it; the batcher is ``app.state.batcher`` (its ``stats`` count merged batches).
    Run it with ``uvicorn.run(app, host=..., port=...)``.
    """
    from .. import __version__

    settings = settings or ServerSettings.from_env()
    batcher = MicroBatcher(engine, settings.max_batch_items, settings.max_wait_ms)
    service = _EmbeddingService(engine, settings, batcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)

    app = FastAPI(
        title="jina-clip embeddings",
        version=__version__,
        description="Jina- and OpenAI-compatible /v1/embeddings for texts and images, and Weaviate's inference routes.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.include_router(service.router())
    weaviate = inference_router(
        engine, max_items=settings.max_items, max_text_chars=settings.max_text_chars, embedder=batcher
    )
    app.include_router(weaviate)

    weaviate_paths = frozenset(route.path for route in weaviate.routes)

    def reject(path: str, status: int, message: str) -> Response:
        if path in weaviate_paths:
            return JSONResponse({"error": message}, status_code=status)  # the shape Weaviate reads
        return error_response(None, status, message)

    def is_open(path: str) -> bool:
        return _PROBES.fullmatch(path) is not None or (not settings.weaviate_routes_auth and path in weaviate_paths)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, reject=reject)
    if settings.api_key is not None:
        app.add_middleware(BearerAuth, api_key=settings.api_key, is_open=is_open, reject=reject)  # outermost
        _document_auth(app, is_open)
    return app


def _document_auth(app: FastAPI, is_open: Callable[[str], bool]) -> None:
    """Declare the bearer scheme in ``app``'s OpenAPI schema, and on every operation that needs
    the key its 401 (the middleware answers it, so FastAPI does not know)."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain_openapi()
            schema.setdefault("components", {})["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in schema["paths"].items():
                if is_open(path):
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
                    operation["responses"].setdefault("401", {"description": "Missing or wrong API key"})
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


@dataclass
class _Prepared:
    """A validated request: its options, texts and images with their request positions, and
    the image URLs still to fetch."""

    dimensions: int | None
    task: str | None
    normalized: bool
    format: Format
    count: int
    texts: list[tuple[int, str]] = field(default_factory=list)
    images: list[tuple[int, bytes]] = field(default_factory=list)
    urls: list[tuple[int, str]] = field(default_factory=list)
    tokens: int = 0
    #: request positions of the texts longer than the model reads (cut to their first tokens)
    truncated: set[int] = field(default_factory=set)


@dataclass
class _Call:
    """What the error handler of one request needs to know: the API it speaks, once read."""

    dialect: Dialect = None


class _EmbeddingService:
    """``/v1/embeddings`` and the routes about the model, for one engine and batcher."""

    def __init__(self, engine: JinaCLIPEngine, settings: ServerSettings, batcher: MicroBatcher) -> None:
        self.engine, self.settings, self.batcher = engine, settings, batcher
        self.model_name = engine.name_or_path or "jina-clip"
        self.dimensions = output_sizes(engine)
        self.native_dim = self.dimensions[-1]  # what the engine returns
        self.max_image_pixels = settings.max_image_pixels or engine.max_image_pixels
        self.image_tokens = engine.config.vision.grid_size**2 + 1

    def router(self) -> APIRouter:
        router = APIRouter()
        failures: dict[int | str, dict[str, Any]] = {
            status: {"model": EmbeddingError, "description": description}
            for status, description in (
                (400, "Bad request: invalid JSON, option or item (the message names the item's index)"),
                (401, "Missing or wrong API key"),
                (413, "Request body too large"),
                (500, "The model failed"),
                (503, "Not ready, or shutting down"),
                (504, "The request took too long"),
            )
        }
        router.add_api_route(
            "/v1/embeddings", self.embeddings, methods=["POST"], tags=["embeddings"],
            summary="Embed texts and images (Jina and OpenAI APIs)", response_model=EmbeddingResponse,
            responses=failures, openapi_extra=_request_body(EmbeddingRequest),
        )  # fmt: skip
        router.add_api_route("/v1/models", self.models, methods=["GET"], tags=["embeddings"], response_model=ModelList)
        router.add_api_route("/health", self.health, methods=["GET"], tags=["status"])
        router.add_api_route("/ready", self.readiness, methods=["GET"], tags=["status"])
        return router

    # -- status routes ------------------------------------------------------------------------

    async def models(self) -> dict[str, Any]:
        card = {"id": self.model_name, "object": "model", "created": 0, "owned_by": "jinaclip-integrations"}
        return {"object": "list", "data": [card]}

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def readiness(self) -> JSONResponse:
        if self.batcher.running:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    # -- /v1/embeddings -------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        call = _Call()
        try:
            body = await request.body()
            work = asyncio.wait_for(self._embed(body, call), self.settings.request_timeout_s)
            response = await unless_client_leaves(request, work)
            return Response(status_code=499) if response is None else response  # None: nobody to answer
        except _BadRequest as exc:
            return error_response(call.dialect, 400, str(exc), exc.param)
        except InputError as exc:
            return error_response(call.dialect, 400, str(exc), "input")
        except BatcherClosed:
            return error_response(call.dialect, 503, "the server is not ready or is shutting down")
        except OutOfMemory as exc:
            return error_response(call.dialect, 503, str(exc), headers=RETRY_LATER)
        except asyncio.TimeoutError:
            message = f"the request took longer than {self.settings.request_timeout_s:g} s"
            return error_response(call.dialect, 504, message)
        except Exception as exc:
            logger.exception("embedding failed")
            return error_response(call.dialect, 500, f"embedding failed: {type(exc).__name__}: {exc}")

    async def _embed(self, body: bytes, call: _Call) -> Response:
        prepared = await _offload(len(body) > _INLINE_SIZE, self._prepare, body, call)
        if prepared.urls:
            fetched = await fetch_images(
                prepared.urls,
                allow_private=self.settings.allow_private_urls,
                timeout_s=self.settings.url_timeout_s,
                max_total_bytes=self.settings.max_body_bytes,
            )
            for (index, _), data in zip(prepared.urls, fetched, strict=True):
                check_image(data, index, self.max_image_pixels)
                prepared.images.append((index, data))
        vectors = await self._vectors(prepared)
        return await _offload(vectors.size > _INLINE_SIZE, self._render, vectors, prepared)

    async def _vectors(self, prepared: _Prepared) -> np.ndarray:
        """All inputs' vectors in request order, truncated to the requested dimensions."""
        parts: list[tuple[list[int], Awaitable[np.ndarray]]] = []
        if prepared.texts:
            texts = [text for _, text in prepared.texts]
            work = self.batcher.embed_texts(texts, prepared.task, prepared.normalized)
            parts.append(([index for index, _ in prepared.texts], work))
        if prepared.images:
            images = [data for _, data in prepared.images]
            parts.append(
                ([index for index, _ in prepared.images], self.batcher.embed_images(images, prepared.normalized))
            )
        results = await gather_all(_at(positions, work) for positions, work in parts)
        out = np.empty((prepared.count, self.native_dim), dtype=np.float32)
        for (positions, _), rows in zip(parts, results, strict=True):
            out[positions] = rows
        return truncate(out, prepared.dimensions, prepared.normalized)

    def _render(self, vectors: np.ndarray, prepared: _Prepared) -> Response:
        if prepared.format == "base64":
            rows: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
        elif prepared.format in ("binary", "ubinary"):
            packed = np.packbits(vectors > 0, axis=1)
            rows = (packed.astype(np.int16) - 128 if prepared.format == "binary" else packed).tolist()
        else:
            rows = vectors.tolist()
        body = {
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": row,
                    **({"truncated": True} if i in prepared.truncated else {}),
                }  # fmt: skip
                for i, row in enumerate(rows)
            ],
            "model": self.model_name,
            "usage": {"prompt_tokens": prepared.tokens, "total_tokens": prepared.tokens},
        }
        # allow_nan=False: a model that overflowed fails with a 500, not with invalid JSON
        return Response(json.dumps(body, separators=(",", ":"), allow_nan=False), media_type="application/json")

    # -- reading a request ----------------------------------------------------------------------

    def _prepare(self, body: bytes, call: _Call) -> _Prepared:
        """Parse and check a request: everything but fetching URLs, before any model work."""
        try:
            data = json_object(body)
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        call.dialect = _dialect(data)
        options = _validate(EmbeddingOptions, {key: value for key, value in data.items() if key != "input"})
        for option in ("late_chunking", "return_multivector"):
            if getattr(options, option):
                raise _BadRequest(f"{option} is not supported by this server", option)
        if "input" not in data:
            raise _BadRequest("input: Field required", "input")
        inputs = data["input"]
        prepared = _Prepared(
            dimensions=self._dimensions(options.dimensions),
            task=self._task(options.task),
            normalized=options.normalized,
            format=options.embedding_type or options.encoding_type or options.encoding_format or "float",
            count=len(inputs) if isinstance(inputs, list) else 1,
        )
        self._read_inputs(inputs, prepared)
        if prepared.texts:
            tokenized = self.engine.tokenize([text for _, text in prepared.texts], task=prepared.task)
            prepared.tokens += sum(map(len, tokenized.ids))
            prepared.truncated = {prepared.texts[i][0] for i in tokenized.truncated}
        prepared.tokens += self.image_tokens * (len(prepared.images) + len(prepared.urls))
        return prepared

    def _dimensions(self, dimensions: int | None) -> int | None:
        if dimensions is None or dimensions in self.dimensions:
            return dimensions
        raise _BadRequest(f"dimensions {dimensions} is not supported by this model; choose one of {self.dimensions}", "dimensions")  # fmt: skip

    def _task(self, task: str | None) -> str | None:
        """The engine task for a requested one: its own tasks as they are; Jina's two retrieval
        tasks, where the model has no instruction for them, as none."""
        if task is None or task in self.engine.tasks:
            return task
        if task in (_QUERY, _PASSAGE):
            return None
        allowed = sorted({*self.engine.tasks, _QUERY, _PASSAGE})
        raise _BadRequest(f"task {task!r} is not supported; choose one of {allowed}", "task")

    def _read_inputs(self, inputs: Any, prepared: _Prepared) -> None:
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            raise _BadRequest(f"input must be a string or a list, not {type(inputs).__name__}", "input")
        if not inputs:
            raise _BadRequest("input must not be empty", "input")
        if len(inputs) > self.settings.max_items:
            raise _BadRequest(f"input has {len(inputs)} items, more than the limit of {self.settings.max_items}", "input")  # fmt: skip
        for index, item in enumerate(inputs):
            if isinstance(item, str):
                prepared.texts.append((index, self._text(item, index)))
            elif isinstance(item, dict):
                self._read_object(item, index, prepared)
            elif _is_token_ids(item):
                raise _BadRequest(f"token-id input (at index {index}) is not supported: send texts as strings", "input")
            else:
                raise InputError(index, f"expected a string or an object, got {_json_type(item)}")

    def _read_object(self, item: dict, index: int, prepared: _Prepared) -> None:
        keys = [key for key in _ITEM_KEYS if key in item]
        if len(keys) != 1:
            raise InputError(index, f"expected an object with one of the keys {list(_ITEM_KEYS)}, got {sorted(item)}")
        key = keys[0]
        value = item[key]
        if not isinstance(value, str):
            raise InputError(index, f"{key} must be a string, got {_json_type(value)}", kind="image" if key != "text" else "text")  # fmt: skip
        if key == "text":
            prepared.texts.append((index, self._text(value, index)))
        elif key == "url" or (key == "image" and is_url(value)):
            if not self.settings.allow_image_urls:
                raise InputError(
                    index,
                    "image URLs are not fetched by this server: send the image as base64 or a data URI, or start "
                    "the server with --allow-image-urls",
                    kind="image",
                )
            prepared.urls.append((index, value))
        else:  # image or bytes: base64, or a data URI
            data = decode_image(value, index)
            check_image(data, index, self.max_image_pixels)
            prepared.images.append((index, data))

    def _text(self, text: str, index: int) -> str:
        if len(text) > self.settings.max_text_chars:
            raise InputError(
                index,
                f"text has {len(text)} characters, more than the limit of {self.settings.max_text_chars}",
                kind="text",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates from JSON escapes
            raise InputError(index, f"not valid Unicode text: {exc.reason} at position {exc.start}", kind="text") from None  # fmt: skip
        return text


def _dialect(data: dict[str, Any]) -> Dialect:
    """Which API's client sent ``data``: OpenAI's keys or token ids, else Jina's keys or object
    items, else unknown (plain texts, the same in both)."""
    inputs = data.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    if _OPENAI_KEYS & data.keys() or any(map(_is_token_ids, items)):
        return "openai"
    if _JINA_KEYS & data.keys() or any(isinstance(item, dict) for item in items):
        return "jina"
    return None


def _is_token_ids(item: Any) -> bool:
    """A token id or a list of them (OpenAI's other input form)."""
    return isinstance(item, list) or (isinstance(item, int) and not isinstance(item, bool))


OptionsT = TypeVar("OptionsT", bound=BaseModel)


def _validate(model: type[OptionsT], data: dict[str, Any]) -> OptionsT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = ".".join(map(str, error["loc"])) or "body"
        raise _BadRequest(f"{loc}: {error['msg']}", str(error["loc"][0]) if error["loc"] else None) from None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


async def _at(positions: list[int], work: Awaitable[np.ndarray]) -> np.ndarray:
    """``work``'s vectors; a refused item's index mapped from the texts (or images) to the request."""
    try:
        return await work
    except InputError as exc:
        raise InputError(positions[exc.index], exc.reason, kind=exc.kind) from None


async def _offload(large: bool, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` on a worker thread when the work is ``large`` (the event loop keeps serving
    other clients), else right here (a thread hop costs more than small work)."""
    return await run_in_threadpool(fn, *args) if large else fn(*args)
