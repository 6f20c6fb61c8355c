"""Jina's and OpenAI's ``POST /v1/embeddings`` on one route, zero-shot image classification
(``POST /v1/classify``), and the routes about the models (``GET /v1/models``, ``/health``,
``/ready``), embedding through each model's micro-batcher. ``/embeddings``, ``/classify`` and
``/models`` are the same routes without the ``/v1`` prefix (infinity's and TEI's clients are
often configured without it); the OpenAPI schema lists each route once, under ``/v1``.

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
  for by default), and the smaller precisions of :func:`~jinaclip_integrations.engine.quantize`
  (applied after truncation and normalization): ``"int8"`` (``round(127 * x / max|x|)`` per
  vector: compare with cosine), ``"uint8"`` (int8 + 128), ``"ubinary"`` (signs packed 8 per
  byte, as Jina does) and ``"binary"`` (``ubinary - 128``, int8). OpenAI's ``encoding_format``
  takes ``"float"`` and ``"base64"`` only.
- ``model`` picks the model when the server serves several: one of the names ``/v1/models``
  lists (the hub name, or a local folder's last part), the first model when the field is
  missing, a 400 listing the served names for any other. With one model any name is accepted
  and the answer names the served model.
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

``POST /v1/classify`` scores images against labels as CLIP's zero-shot classification does (the
anchors: infinity's ``/classify`` answer, a list of ``{label, score}`` per input; clip-as-service's
``rank``, images against candidate texts). The body is ``{"model"?, "task"?, "input": [images],
"labels": [texts]}``: ``input`` takes the image forms of ``/v1/embeddings`` (a string is an
image, as under ``"modality": "image"``; ``{"image"|"url"|"bytes": ...}`` objects), ``task`` is
the labels' (default none). The answer is ``{"object": "list", "data": [{"object":
"classification", "index": i, "labels": [{"label", "score"}, ...]}], "model", "usage"}``: for
each image, every label with its probability (the softmax over the labels of the model's
``exp(logit_scale) * cosine``, :func:`~jinaclip_integrations.engine.label_probabilities`), most
probable first (a label cut at the model's length has ``"truncated": true`` in its entries).
Images and labels are embedded through the model's batcher, merged with other
requests, under the same limits (items, counted over images and labels together; characters
per label; pixels), and errors come in both shapes (a bad label: ``"invalid label at index
1: ..."``).

``GET /v1/models`` is OpenAI's list of the served models (named as :func:`~.security.public_model_name`
says: never a path of the server's); ``GET /health`` answers 200 while the process runs,
``GET /ready`` 200 once every model's batcher runs, else 503 (``HEAD`` too, for probes).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..engine import label_probabilities, quantize, truncate_normalize
from ..errors import InputError
from .batcher import MicroBatcher, gather_all
from .http import INLINE_SIZE, BadRequest, Failure, add_get_route, json_object, offload, respond, validate
from .metrics import MODEL_LABEL
from .schemas import (
    ClassifyOptions,
    ClassifyRequest,
    ClassifyResponse,
    EmbeddingError,
    EmbeddingOptions,
    EmbeddingRequest,
    EmbeddingResponse,
    Format,
    ModelList,
    request_body,
)
from .security import ImageCheck, decode_image, fetch_images, is_url
from .settings import ServerSettings

if TYPE_CHECKING:
    from ..engine import Tokenized

__all__ = ["Dialect", "embedding_error", "embedding_router"]

#: the API a request speaks, once read (None: not known)
Dialect = Literal["openai", "jina"] | None

_OPENAI_KEYS = frozenset({"encoding_format", "user"})
_JINA_KEYS = frozenset({"task", "normalized", "embedding_type", "encoding_type", "late_chunking", "truncate", "return_multivector"})  # fmt: skip
_ITEM_KEYS = ("text", "image", "url", "bytes")
_PASSAGE, _QUERY = "retrieval.passage", "retrieval.query"
_ERROR_CODES = {401: "invalid_api_key", 408: "request_timeout", 413: "request_too_large", 415: "unsupported_media_type",
                503: "unavailable", 504: "timeout"}  # fmt: skip


def embedding_router(batchers: Mapping[str, MicroBatcher], settings: ServerSettings) -> APIRouter:
    """``/v1/embeddings``, ``/v1/models``, ``/health`` and ``/ready`` (see the module docstring)
    for the models of ``batchers`` (the name clients pick a model by -> the batcher of its
    engine, which the app runs; the first is the default), under ``settings``' limits."""
    return _EmbeddingService(batchers, settings).router()


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


class _Model:
    """A served model: its name, engine and batcher, and what its requests are checked against."""

    def __init__(self, name: str, batcher: MicroBatcher, settings: ServerSettings) -> None:
        engine = batcher.engine
        self.name, self.engine, self.batcher = name, engine, batcher
        self.dimensions = list(engine.output_dims)
        self.native_dim = engine.output_dim  # what the engine returns
        self.max_image_pixels = settings.max_image_pixels or engine.max_image_pixels
        self.image_tokens = engine.image_tokens


@dataclass
class _Prepared:
    """A validated request: the model it picked, its options, texts (tokenized once read) and
    images with their request positions, the image URLs still to fetch, and the checks its
    images pass."""

    model: _Model
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
    """What is known of one request beyond its answer: the API it speaks (for an error's shape)
    and the model it picked (for the metrics), once read."""

    dialect: Dialect = None
    model: str | None = None


class _EmbeddingService:
    """``/v1/embeddings`` and the routes about the models, for the models of some batchers."""

    def __init__(self, batchers: Mapping[str, MicroBatcher], settings: ServerSettings) -> None:
        self.settings = settings
        self.models = {name: _Model(name, batcher, settings) for name, batcher in batchers.items()}

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
        for prefix, listed in (("/v1", True), ("", False)):  # the aliases are left out of the schema
            router.add_api_route(
                f"{prefix}/embeddings", self.embeddings, methods=["POST"], tags=["embeddings"],
                summary="Embed texts and images (Jina and OpenAI APIs)", description="Also at /embeddings.",
                response_model=EmbeddingResponse, responses=failures, openapi_extra=request_body(EmbeddingRequest),
                include_in_schema=listed,
            )  # fmt: skip
            router.add_api_route(
                f"{prefix}/classify", self.classify, methods=["POST"], tags=["embeddings"],
                summary="Zero-shot image classification: each image's probability for each label",
                description="Also at /classify. For each image of input, every label with its probability (softmax "
                "over the labels of exp(logit_scale) * cosine, as CLIP), most probable first.",
                response_model=ClassifyResponse, responses=failures, openapi_extra=request_body(ClassifyRequest),
                include_in_schema=listed,
            )  # fmt: skip
            add_get_route(
                router, f"{prefix}/models", self.model_list, tags=["embeddings"], summary="List the served models",
                description="Also at /models.", response_model=ModelList, include_in_schema=listed,
            )  # fmt: skip
        add_get_route(router, "/health", self.health, tags=["status"])
        add_get_route(router, "/ready", self.readiness, tags=["status"])
        return router

    # -- status routes ------------------------------------------------------------------------

    async def model_list(self) -> dict[str, Any]:
        cards = [{"id": name, "object": "model", "created": 0, "owned_by": "jinaclip-integrations"} for name in self.models]  # fmt: skip
        return {"object": "list", "data": cards}

    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    async def readiness(self) -> JSONResponse:
        if all(model.batcher.running for model in self.models.values()):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    # -- /v1/embeddings -------------------------------------------------------------------------

    async def embeddings(self, request: Request) -> Response:
        return await self._answer(request, self._embed, "embedding")

    async def classify(self, request: Request) -> Response:
        return await self._answer(request, self._classify, "classification")

    async def _answer(
        self, request: Request, work: Callable[[bytes, _Call], Awaitable[Response]], action: str
    ) -> Response:
        """``work``'s answer to the request, or its failure in the shape of the request's API;
        the model it picked is left in the scope for the metrics."""
        call = _Call()
        response = await respond(
            request,
            lambda body: work(body, call),
            lambda failure: embedding_error(call.dialect, failure),
            action=action,
            timeout_s=self.settings.request_timeout_s,
        )
        if call.model is not None:
            request.scope[MODEL_LABEL] = call.model
        return response

    async def _embed(self, body: bytes, call: _Call) -> Response:
        prepared = await offload(len(body) > INLINE_SIZE, self._prepare, body, call)
        await self._fetch(prepared)
        vectors = await self._vectors(prepared)
        return await offload(vectors.size > INLINE_SIZE, self._render, vectors, prepared)

    async def _fetch(self, prepared: _Prepared) -> None:
        """Fetch the request's image URLs (allowed, or they were refused while reading) and check them."""
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

    async def _vectors(self, prepared: _Prepared) -> np.ndarray:
        """All inputs' vectors in request order, truncated to the requested dimensions."""
        parts: list[tuple[list[int], Awaitable[np.ndarray]]] = []
        batcher, native_dim = prepared.model.batcher, prepared.model.native_dim
        if prepared.tokenized is not None:
            work = batcher.embed_tokens(prepared.tokenized, prepared.normalized)
            parts.append(([index for index, _ in prepared.texts], work))
        if prepared.images:
            images = [data for _, data in prepared.images]
            parts.append(([index for index, _ in prepared.images], batcher.embed_images(images, prepared.normalized)))
        results = await gather_all(_at(positions, work) for positions, work in parts)
        out = np.empty((prepared.count, native_dim), dtype=np.float32)
        for (positions, _), rows in zip(parts, results, strict=True):
            out[positions] = rows
        # the engine normalized the full vectors as asked: only a shorter one needs it again
        shorter = prepared.dimensions is not None and prepared.dimensions < native_dim
        return truncate_normalize(out, prepared.dimensions, normalize=prepared.normalized and shorter)

    def _render(self, vectors: np.ndarray, prepared: _Prepared) -> Response:
        if prepared.format == "base64":
            rows: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
        else:
            rows = quantize(vectors, "float32" if prepared.format == "float" else prepared.format).tolist()
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
            "model": prepared.model.name,
            "usage": {"prompt_tokens": prepared.tokens, "total_tokens": prepared.tokens},
        }
        return _json(body)

    # -- /v1/classify ---------------------------------------------------------------------------

    async def _classify(self, body: bytes, call: _Call) -> Response:
        """Embed the request's images and labels together (the labels are its texts, after the
        images), then score each image against every label."""
        prepared, labels = await offload(len(body) > INLINE_SIZE, self._prepare_classify, body, call)
        await self._fetch(prepared)
        vectors = await self._vectors(prepared)
        images = len(vectors) - len(labels)
        return await offload(images * len(labels) > INLINE_SIZE, self._render_classes, vectors, labels, prepared)

    def _render_classes(self, vectors: np.ndarray, labels: list[str], prepared: _Prepared) -> Response:
        """Each image's labels with their probabilities, most probable first (``vectors``: the
        images', then the labels')."""
        images = len(vectors) - len(labels)
        scores = label_probabilities(vectors[:images], vectors[images:], prepared.model.engine.logit_scale)
        cut = {position - images for position in prepared.truncated}  # labels read only up to the model's length
        data = []
        for index, row in enumerate(scores.tolist()):
            ranked = sorted(enumerate(row), key=lambda pair: -pair[1])  # stable: ties keep their order
            classes = [{"label": labels[i], "score": score, **({"truncated": True} if i in cut else {})} for i, score in ranked]  # fmt: skip
            data.append({"object": "classification", "index": index, "labels": classes})
        usage = {"prompt_tokens": prepared.tokens, "total_tokens": prepared.tokens}
        return _json({"object": "list", "data": data, "model": prepared.model.name, "usage": usage})

    def _prepare_classify(self, body: bytes, call: _Call) -> tuple[_Prepared, list[str]]:
        """Parse and check a classification request: its images read as those of an embedding
        request under ``"modality": "image"`` (at their request positions), its labels as texts
        after them, tokenized; and the labels."""
        data = json_object(body, self.settings.max_items)
        options = validate(ClassifyOptions, {key: value for key, value in data.items() if key not in ("input", "labels")})  # fmt: skip
        model = self._model(options.model)
        call.model = model.name
        for name in ("input", "labels"):
            if name not in data:
                raise BadRequest(f"{name}: Field required", name)
        inputs, labels = data["input"], data["labels"]
        if not isinstance(labels, list) or not labels:
            raise BadRequest("labels must be a non-empty list of strings", "labels")
        images = len(inputs) if isinstance(inputs, list) else 1
        if images + len(labels) > self.settings.max_items:
            raise BadRequest(
                f"input and labels have {images + len(labels)} items together, more than the limit of {self.settings.max_items}",  # fmt: skip
                "labels",
            )
        prepared = _Prepared(
            model=model,
            dimensions=None,
            task=_task(model, options.task),
            normalized=True,
            format="float",
            count=images + len(labels),
            check=ImageCheck(model.max_image_pixels, self.settings.max_request_pixels),
            images_only=True,
        )
        self._read_inputs(inputs, prepared)
        if prepared.texts:
            raise InputError(prepared.texts[0][0], "classify takes images; a text belongs in labels", kind="image")
        for index, label in enumerate(labels):
            if not isinstance(label, str):
                raise BadRequest(f"invalid label at index {index}: expected a string, got {_json_type(label)}", "labels")  # fmt: skip
            try:
                prepared.texts.append((images + index, self._text(label, index)))
            except InputError as exc:
                raise BadRequest(f"invalid label at index {index}: {exc.reason}", "labels") from None
        _tokenize(prepared)
        return prepared, labels

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
        model = self._model(options.model)
        call.model = model.name
        if "input" not in data:
            raise BadRequest("input: Field required", "input")
        inputs = data["input"]
        prepared = _Prepared(
            model=model,
            dimensions=_dimensions(model, options.dimensions),
            task=_task(model, options.task),
            normalized=options.normalized,
            format=options.embedding_type or options.encoding_type or options.encoding_format or "float",
            count=len(inputs) if isinstance(inputs, list) else 1,
            check=ImageCheck(model.max_image_pixels, self.settings.max_request_pixels),
            images_only=options.modality == "image",
        )
        self._read_inputs(inputs, prepared)
        _tokenize(prepared)
        return prepared

    def _model(self, name: str | None) -> _Model:
        """The model a request's ``model`` field picks: the only one, whatever the name; of
        several, the one of that name, or the first when none is given."""
        models = list(self.models.values())
        if len(models) == 1 or name is None:
            return models[0]
        if name in self.models:
            return self.models[name]
        raise BadRequest(f"model {name!r} is not served here; choose one of {list(self.models)}", "model")

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


def _tokenize(prepared: _Prepared) -> None:
    """Tokenize the request's texts once (their ids are what the model embeds), note those cut
    at the model's length (by request position) and count the usage: each text's tokens as the
    model reads it, and each image's tokens."""
    model = prepared.model
    if prepared.texts:
        prepared.tokenized = model.engine.tokenize([text for _, text in prepared.texts], task=prepared.task)
        prepared.tokens += sum(map(len, prepared.tokenized.ids))
        prepared.truncated = {prepared.texts[i][0] for i in prepared.tokenized.truncated}
    prepared.tokens += model.image_tokens * (len(prepared.images) + len(prepared.urls))


def _dimensions(model: _Model, dimensions: int | None) -> int | None:
    if dimensions is None or dimensions in model.dimensions:
        return dimensions
    raise BadRequest(f"dimensions {dimensions} is not supported by this model; choose one of {model.dimensions}", "dimensions")  # fmt: skip


def _task(model: _Model, task: str | None) -> str | None:
    """The engine task for a requested one: the model's own tasks as they are; Jina's two
    retrieval tasks, where the model has no instruction for them, as none."""
    tasks = model.engine.tasks
    if task is None or task in tasks:
        return task
    if task in (_QUERY, _PASSAGE):
        return None
    allowed = sorted({*tasks, _QUERY, _PASSAGE})
    raise BadRequest(f"task {task!r} is not supported; choose one of {allowed}", "task")


def _json(body: dict[str, Any]) -> Response:
    """``body`` as compact JSON; ``allow_nan=False``: a model that overflowed fails with a 500,
    not with invalid JSON."""
    return Response(json.dumps(body, separators=(",", ":"), allow_nan=False), media_type="application/json")


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
