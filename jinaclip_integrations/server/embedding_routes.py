"""Jina's and OpenAI's ``POST /v1/embeddings`` on one route, and the routes about the model
(``GET /v1/models``, ``/health``, ``/ready``), embedding through the server's micro-batcher.

``POST /v1/embeddings`` accepts both APIs' requests (the options of either may be combined):

- ``input``: a string, or a list of strings (texts) and objects ``{"text": ...}``,
  ``{"image": <http(s) URL | base64 | data:image/...;base64,...>}``, and the legacy
  ``{"url": ...}`` and ``{"bytes": <base64>}``. Token-id lists (OpenAI) are refused: their ids
  are another tokenizer's (langchain-openai sends them unless ``check_embedding_ctx_length=False``).
- ``modality`` (infinity's): ``"text"`` (the default) or ``"image"``, which makes every string
  of ``input`` an image (base64, a data URI or a URL, as ``{"image": ...}``); objects keep their
  own kind. Anything else is a 400.
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
- ``user`` is accepted and ignored. Any other field is a 400 naming it (as is an item's key
  other than its one kind): an option this server would ignore would change the answer unseen.

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

Limits (:class:`~.settings.ServerSettings`): items per request (a body holding more values
than that many items can is refused before it is parsed), characters per text, pixels per image
and per request (from the headers, before anything is decoded), and image URLs, which are
fetched only when enabled (see :mod:`.security`); the body's size and time are the app's
(:mod:`.app`). Each text is tokenized once, here: its ids give the usage count and the
truncation flag and are what the model embeds. Images are decoded on the request's side of the
batcher, inputs of concurrent requests are embedded together (:mod:`.batcher`).

``GET /v1/models`` is OpenAI's list (one model, named as :func:`~.security.public_model_name`
says: never a path of the server's); ``GET /health`` answers 200 while the process runs,
``GET /ready`` 200 once the batcher runs, else 503 (``HEAD`` too, for probes).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..engine import truncate_normalize
from ..errors import InputError
from .batcher import MicroBatcher, gather_all
from .http import INLINE_SIZE, BadRequest, Failure, add_get_route, json_object, offload, respond, validate
from .schemas import (
    EmbeddingError,
    EmbeddingOptions,
    EmbeddingRequest,
    EmbeddingResponse,
    Format,
    ModelList,
    request_body,
)
from .security import ImageCheck, decode_image, fetch_images, is_url, public_model_name
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine, Tokenized

__all__ = ["Dialect", "embedding_error", "embedding_router"]

#: the API a request speaks, once read (None: not known)
Dialect = Literal["openai", "jina"] | None

_OPENAI_KEYS = frozenset({"encoding_format", "user"})
_JINA_KEYS = frozenset({"task", "normalized", "embedding_type", "encoding_type", "late_chunking", "truncate", "return_multivector"})  # fmt: skip
_ITEM_KEYS = ("text", "image", "url", "bytes")
_PASSAGE, _QUERY = "retrieval.passage", "retrieval.query"
_ERROR_CODES = {401: "invalid_api_key", 408: "request_timeout", 413: "request_too_large", 415: "unsupported_media_type",
                503: "unavailable", 504: "timeout"}  # fmt: skip


def embedding_router(engine: JinaCLIPEngine, settings: ServerSettings, batcher: MicroBatcher) -> APIRouter:
    """``/v1/embeddings``, ``/v1/models``, ``/health`` and ``/ready`` for ``engine`` (see the
    module docstring), under ``settings``' limits, embedding through ``batcher`` (the app runs it)."""
    return _EmbeddingService(engine, settings, batcher).router()


def embedding_error(dialect: Dialect, failure: Failure) -> JSONResponse:
    """``failure`` in the shape of ``dialect``'s clients (both shapes when it is None)."""
    openai = {
        "error": {
            "message": failure.message,
            "type": "invalid_request_error" if failure.status < 500 else "server_error",
            "param": failure.param,
            "code": _ERROR_CODES.get(failure.status),
        }
    }
    jina = {"detail": failure.message}
    body = openai if dialect == "openai" else jina if dialect == "jina" else openai | jina
    return JSONResponse(body, status_code=failure.status, headers=failure.headers)


@dataclass
class _Prepared:
    """A validated request: its options, texts (tokenized once read) and images with their
    request positions, the image URLs still to fetch, and the checks its images pass."""

    dimensions: int | None
    task: str | None
    normalized: bool
    format: Format
    count: int
    check: ImageCheck
    images_only: bool = False
    texts: list[tuple[int, str]] = field(default_factory=list)
    tokenized: Tokenized | None = None
    images: list[tuple[int, bytes]] = field(default_factory=list)
    urls: list[tuple[int, str]] = field(default_factory=list)
    tokens: int = 0
    #: request positions of the texts longer than the model reads (cut to their first tokens)
    truncated: set[int] = field(default_factory=set)


@dataclass
class _Call:
    """What the error answer of one request needs to know: the API it speaks, once read."""

    dialect: Dialect = None


class _EmbeddingService:
    """``/v1/embeddings`` and the routes about the model, for one engine and batcher."""

    def __init__(self, engine: JinaCLIPEngine, settings: ServerSettings, batcher: MicroBatcher) -> None:
        self.engine, self.settings, self.batcher = engine, settings, batcher
        self.model_name = public_model_name(engine.name_or_path or "jina-clip")
        self.dimensions = list(engine.output_dims)
        self.native_dim = engine.output_dim  # what the engine returns
        self.max_image_pixels = settings.max_image_pixels or engine.max_image_pixels
        self.image_tokens = engine.image_tokens

    def router(self) -> APIRouter:
        router = APIRouter()
        failures: dict[int | str, dict[str, Any]] = {
            status: {"model": EmbeddingError, "description": description}
            for status, description in (
                (400, "Bad request: invalid JSON, option or item (the message names the item's index)"),
                (401, "Missing or wrong API key"),
                (408, "The request body did not arrive in time"),
                (413, "Request body too large"),
                (415, "Not application/json, to a route without an API key"),
                (500, "The model failed"),
                (503, "Not ready, or shutting down"),
                (504, "The request took too long"),
            )
        }
        router.add_api_route(
            "/v1/embeddings", self.embeddings, methods=["POST"], tags=["embeddings"],
            summary="Embed texts and images (Jina and OpenAI APIs)", response_model=EmbeddingResponse,
            responses=failures, openapi_extra=request_body(EmbeddingRequest),
        )  # fmt: skip
        add_get_route(router, "/v1/models", self.models, tags=["embeddings"], response_model=ModelList)
        add_get_route(router, "/health", self.health, tags=["status"])
        add_get_route(router, "/ready", self.readiness, tags=["status"])
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
        return await respond(
            request,
            lambda body: self._embed(body, call),
            lambda failure: embedding_error(call.dialect, failure),
            action="embedding",
            timeout_s=self.settings.request_timeout_s,
        )

    async def _embed(self, body: bytes, call: _Call) -> Response:
        prepared = await offload(len(body) > INLINE_SIZE, self._prepare, body, call)
        if prepared.urls:
            fetched = await fetch_images(
                prepared.urls,
                allow_private=self.settings.allow_private_urls,
                timeout_s=self.settings.url_timeout_s,
                max_total_bytes=self.settings.max_body_bytes,
            )
            for (index, _), data in zip(prepared.urls, fetched, strict=True):
                prepared.check(data, index)
                prepared.images.append((index, data))
        vectors = await self._vectors(prepared)
        return await offload(vectors.size > INLINE_SIZE, self._render, vectors, prepared)

    async def _vectors(self, prepared: _Prepared) -> np.ndarray:
        """All inputs' vectors in request order, truncated to the requested dimensions."""
        parts: list[tuple[list[int], Awaitable[np.ndarray]]] = []
        if prepared.tokenized is not None:
            work = self.batcher.embed_tokens(prepared.tokenized, prepared.normalized)
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
        # the engine normalized the full vectors as asked: only a shorter one needs it again
        shorter = prepared.dimensions is not None and prepared.dimensions < self.native_dim
        return truncate_normalize(out, prepared.dimensions, normalize=prepared.normalized and shorter)

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
        """Parse and check a request, and tokenize its texts (once: their ids are what the model
        embeds): everything but fetching URLs and decoding images, before any model work."""
        data = json_object(body, self.settings.max_items)
        call.dialect = _dialect(data)
        options = validate(EmbeddingOptions, {key: value for key, value in data.items() if key != "input"})
        for option in ("late_chunking", "return_multivector"):
            if getattr(options, option):
                raise BadRequest(f"{option} is not supported by this server", option)
        if "input" not in data:
            raise BadRequest("input: Field required", "input")
        inputs = data["input"]
        prepared = _Prepared(
            dimensions=self._dimensions(options.dimensions),
            task=self._task(options.task),
            normalized=options.normalized,
            format=options.embedding_type or options.encoding_type or options.encoding_format or "float",
            count=len(inputs) if isinstance(inputs, list) else 1,
            check=ImageCheck(self.max_image_pixels, self.settings.max_request_pixels),
            images_only=options.modality == "image",
        )
        self._read_inputs(inputs, prepared)
        if prepared.texts:
            prepared.tokenized = self.engine.tokenize([text for _, text in prepared.texts], task=prepared.task)
            prepared.tokens += sum(map(len, prepared.tokenized.ids))
            prepared.truncated = {prepared.texts[i][0] for i in prepared.tokenized.truncated}
        prepared.tokens += self.image_tokens * (len(prepared.images) + len(prepared.urls))
        return prepared

    def _dimensions(self, dimensions: int | None) -> int | None:
        if dimensions is None or dimensions in self.dimensions:
            return dimensions
        raise BadRequest(f"dimensions {dimensions} is not supported by this model; choose one of {self.dimensions}", "dimensions")  # fmt: skip

    def _task(self, task: str | None) -> str | None:
        """The engine task for a requested one: its own tasks as they are; Jina's two retrieval
        tasks, where the model has no instruction for them, as none."""
        if task is None or task in self.engine.tasks:
            return task
        if task in (_QUERY, _PASSAGE):
            return None
        allowed = sorted({*self.engine.tasks, _QUERY, _PASSAGE})
        raise BadRequest(f"task {task!r} is not supported; choose one of {allowed}", "task")

    def _read_inputs(self, inputs: Any, prepared: _Prepared) -> None:
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list):
            raise BadRequest(f"input must be a string or a list, not {type(inputs).__name__}", "input")
        if not inputs:
            raise BadRequest("input must not be empty", "input")
        if len(inputs) > self.settings.max_items:
            raise BadRequest(f"input has {len(inputs)} items, more than the limit of {self.settings.max_items}", "input")  # fmt: skip
        for index, item in enumerate(inputs):
            if isinstance(item, str) and prepared.images_only:
                self._read_image("image", item, index, prepared)
            elif isinstance(item, str):
                prepared.texts.append((index, self._text(item, index)))
            elif isinstance(item, dict):
                self._read_object(item, index, prepared)
            elif _is_token_ids(item):
                raise BadRequest(
                    f"token-id input (at index {index}) is not supported: token ids are another model's tokenizer's "
                    "(OpenAI's tiktoken), not this model's; send texts as strings (langchain_openai.OpenAIEmbeddings: "
                    "pass check_embedding_ctx_length=False)",
                    "input",
                )
            else:
                raise InputError(index, f"expected a string or an object, got {_json_type(item)}")

    def _read_object(self, item: dict, index: int, prepared: _Prepared) -> None:
        keys = [key for key in _ITEM_KEYS if key in item]
        if len(keys) != 1:
            raise InputError(index, f"expected an object with one of the keys {list(_ITEM_KEYS)}, got {sorted(item)}")
        if len(item) > 1:
            unknown = sorted(set(item) - set(keys))
            raise InputError(index, f"unknown key {unknown[0]!r} in an item: an item has one key of {list(_ITEM_KEYS)}")
        key = keys[0]
        value = item[key]
        if not isinstance(value, str):
            raise InputError(index, f"{key} must be a string, got {_json_type(value)}", kind="image" if key != "text" else "text")  # fmt: skip
        if key == "text":
            prepared.texts.append((index, self._text(value, index)))
        else:
            self._read_image(key, value, index, prepared)

    def _read_image(self, key: str, value: str, index: int, prepared: _Prepared) -> None:
        """An image item: a URL to fetch later (if allowed), else base64 or a data URI, decoded
        and its header checked now."""
        if key == "url" or (key == "image" and is_url(value)):
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
            prepared.check(data, index)
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


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


async def _at(positions: list[int], work: Awaitable[np.ndarray]) -> np.ndarray:
    """``work``'s vectors; a refused item's index mapped from the texts (or images) to the request."""
    try:
        return await work
    except InputError as exc:
        raise exc.at(positions[exc.index]) from None
