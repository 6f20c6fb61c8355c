"""The embedding server's app: Jina's and OpenAI's ``/v1/embeddings`` and ``/v1/classify``
(:mod:`.embedding_routes`) and Weaviate's inference routes (:mod:`.weaviate_routes`) on one engine or several, behind one
set of limits and one API key, each engine embedding through its own
:class:`~.batcher.MicroBatcher`, and Prometheus' ``/metrics`` (:mod:`.metrics`).

With several engines, ``/v1/embeddings`` requests pick theirs by their ``model`` field (the
first by default), ``/v1/models`` lists them all, and the Weaviate routes serve the first (its
modules name no model).

:func:`create_app` builds it from :class:`~.settings.ServerSettings`; ``jinaclip serve`` and
``python -m jinaclip_integrations.weaviate`` serve it. Both route families share the batcher
(their inputs are merged into the same engine calls), the per-request limits (items per
request, characters per text) and, through ASGI middlewares, the rest:

- the body's size and time (:class:`~.http.BodyLimit`): 413 before anything is parsed, 408
  for a body that has not all come ``body_timeout_s`` after the headers;
- the API key (:class:`~.security.BearerAuth`): with one set, every route needs it except
  ``/health``, ``/ready`` and ``/.well-known/*`` (probes), and the Weaviate routes when
  ``weaviate_routes_auth`` is off. ``/metrics`` needs it too: its labels name the models and
  its counts tell the traffic, and Prometheus sends a key (a scrape config's
  ``authorization: {credentials: KEY}``). The schema and its pages (``/openapi.json``, ``/docs``,
  ``/redoc``) need it too (a browser opening ``/docs`` cannot send it: fetch ``/openapi.json``
  with the key instead). The schema then declares the bearer scheme and the 401 of every route
  that needs it;
- JSON only where no key is needed (:class:`~.security.JsonOnly`): a POST to such a route (all
  of them without a key) must be ``application/json``, or untyped from a client that is not a
  web page; else 415, so that pages a user opens cannot make the server embed;
- the metrics (:class:`~.metrics.RequestMetrics`, outermost): every request counted and timed,
  those the other middlewares refuse included.

The middlewares answer in the shape of the path's clients: ``{"error": "..."}`` on the Weaviate
routes, both of the OpenAI and Jina shapes elsewhere.

A client that disconnects before its answer cancels its request: still queued in the batcher,
it is dropped; already in the model, it finishes and the answer is discarded. At shutdown the
server stops accepting connections, answers the requests in flight, then embeds what is still
queued before the batcher stops.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .._lazy import needs_extra

with needs_extra("server", "jinaclip_integrations.server"):
    from fastapi import APIRouter, FastAPI
    from fastapi.responses import Response
    from starlette.routing import Route

from .batcher import MicroBatcher
from .embedding_routes import embedding_error, embedding_router
from .http import BodyLimit, Failure
from .metrics import CONTENT_TYPE, Metrics, PrometheusText, RequestMetrics
from .security import BearerAuth, JsonOnly, public_model_name
from .settings import ServerSettings
from .weaviate_routes import inference_router, weaviate_error

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine

__all__ = ["create_app"]

#: paths answered without an API key: the probes
_PROBES = re.compile(r"/health|/ready|(/passage|/query)?/\.well-known/(live|ready)")


def create_app(
    engine: JinaCLIPEngine | Sequence[JinaCLIPEngine] | Mapping[str, JinaCLIPEngine],
    settings: ServerSettings | None = None,
) -> FastAPI:
    """A FastAPI app serving ``engine`` (see the module docstring).

    Args:
        engine: the model to serve (e.g. from ``shared_engine``), or several: a sequence of
            engines, each named as :func:`~.security.public_model_name` says (its hub name, or
            its folder's last part), or a mapping from the names clients pick them by. The
            first is the default model and the one the Weaviate routes serve.
        settings: limits, security and batching; default ``ServerSettings.from_env()`` (the
            API key from ``$JINACLIP_API_KEY``, everything else at its default).

    Raises:
        ValueError: no engine, two of one name, or one engine twice.

    Its lifespan starts the batchers and, at shutdown, embeds what is still queued before
    stopping them; they are ``app.state.batchers`` (model name -> batcher; their ``stats``
    count merged batches), the first also ``app.state.batcher``.
    Run it with ``uvicorn.run(app, host=..., port=...)``.
    """
    from .._version import __version__

    settings = settings or ServerSettings.from_env()
    batchers = {
        name: MicroBatcher(
            one, settings.max_batch_items, settings.max_wait_ms, max_image_pixels=settings.max_image_pixels
        )
        for name, one in _named(engine).items()
    }
    first_name, first = next(iter(batchers.items()))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            for batcher in batchers.values():
                batcher.start()
            yield
        finally:
            await asyncio.gather(*(asyncio.to_thread(batcher.close) for batcher in batchers.values()))

    app = FastAPI(
        title="jina-clip embeddings",
        version=__version__,
        description="Jina- and OpenAI-compatible /v1/embeddings for texts and images, zero-shot image "
        "classification (/v1/classify), Weaviate's inference routes, and Prometheus metrics.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.batchers = first, batchers
    embeddings = embedding_router(batchers, settings)
    app.include_router(embeddings)
    weaviate = inference_router(
        first.engine,
        max_items=settings.max_items,
        max_text_chars=settings.max_text_chars,
        max_image_pixels=settings.max_image_pixels,
        max_request_pixels=settings.max_request_pixels,
        embedder=first,
    )
    app.include_router(weaviate)
    metrics = Metrics(batchers)
    app.add_api_route(
        "/metrics", metrics.endpoint, methods=["GET"], tags=["status"], response_class=PrometheusText,
        summary="Prometheus metrics: requests, latencies, errors, items, batch sizes, queue depth",
        responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}}, "description": "The text exposition format"}},
    )  # fmt: skip

    weaviate_paths = _paths(weaviate)

    def reject(path: str, failure: Failure) -> Response:
        return weaviate_error(failure) if path in weaviate_paths else embedding_error(None, failure)

    def is_open(path: str) -> bool:
        return _PROBES.fullmatch(path) is not None or (not settings.weaviate_routes_auth and path in weaviate_paths)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s, reject=reject)
    keyless = settings.api_key is None
    app.add_middleware(JsonOnly, applies=lambda path: keyless or is_open(path), reject=reject)
    if not keyless:
        app.add_middleware(BearerAuth, api_key=settings.api_key, is_open=is_open, reject=reject)
        _document_auth(app, is_open)

    def model_of(path: str) -> str:
        """The model label of a request whose route names none: the Weaviate routes serve the first."""
        return first_name if path in weaviate_paths else ""

    routes = _paths(app.router, embeddings, weaviate)
    app.add_middleware(RequestMetrics, metrics=metrics, routes=routes, model_of=model_of)  # outermost
    return app


def _named(
    engine: JinaCLIPEngine | Sequence[JinaCLIPEngine] | Mapping[str, JinaCLIPEngine],
) -> dict[str, JinaCLIPEngine]:
    """The engines :func:`create_app` serves, by the names clients pick them with (see there)."""
    if isinstance(engine, Mapping):
        named = dict(engine)
    else:
        named = {}
        for one in engine if isinstance(engine, Sequence) else [engine]:
            name = public_model_name(one.name_or_path or "jina-clip")
            if name in named:
                raise ValueError(f"two models are named {name!r}: pass a mapping of names to engines to name them")
            named[name] = one
    if not named:
        raise ValueError("no model to serve")
    if len({id(one) for one in named.values()}) < len(named):
        raise ValueError("the same engine is given twice: give it once (each would run the model on its own thread)")
    return named


def _paths(*routers: APIRouter) -> frozenset[str]:
    """The paths of the routes of ``routers`` (an included router's own routes are not the app's
    in every FastAPI version: the app's paths are those of its router and of the included ones)."""
    return frozenset(route.path for router in routers for route in router.routes if isinstance(route, Route))


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
