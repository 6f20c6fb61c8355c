"""The embedding server's app: Jina's and OpenAI's ``/v1/embeddings`` (:mod:`.embedding_routes`)
and Weaviate's inference routes (:mod:`.weaviate_routes`) on one engine, behind one set of
limits and one API key, embedding through one :class:`~.batcher.MicroBatcher`.

:func:`create_app` builds it from :class:`~.settings.ServerSettings`; ``jinaclip serve`` and
``python -m jinaclip_integrations.weaviate`` serve it. Both route families share the batcher
(their inputs are merged into the same engine calls), the per-request limits (items per
request, characters per text) and, through two ASGI middlewares, the rest:

- the body's size and time (:class:`~.http.BodyLimit`): 413 before anything is parsed, 408
  for a body that has not all come ``body_timeout_s`` after the headers;
- the API key (:class:`~.security.BearerAuth`): with one set, every route needs it except
  ``/health``, ``/ready`` and ``/.well-known/*`` (probes), and the Weaviate routes when
  ``weaviate_routes_auth`` is off; the schema and its pages (``/openapi.json``, ``/docs``,
  ``/redoc``) need it too (a browser opening ``/docs`` cannot send it: fetch ``/openapi.json``
  with the key instead). The schema then declares the bearer scheme and the 401 of every route
  that needs it;
- JSON only where no key is needed (:class:`~.security.JsonOnly`): a POST to such a route (all
  of them without a key) must be ``application/json``, or untyped from a client that is not a
  web page; else 415, so that pages a user opens cannot make the server embed.

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from .._lazy import needs_extra

with needs_extra("server", "jinaclip_integrations.server"):
    from fastapi import FastAPI
    from fastapi.responses import Response

from .batcher import MicroBatcher
from .embedding_routes import embedding_error, embedding_router
from .http import BodyLimit, Failure
from .security import BearerAuth, JsonOnly
from .settings import ServerSettings
from .weaviate_routes import inference_router, weaviate_error

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine

__all__ = ["create_app"]

#: paths answered without an API key: the probes
_PROBES = re.compile(r"/health|/ready|(/passage|/query)?/\.well-known/(live|ready)")


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
    from .._version import __version__

    settings = settings or ServerSettings.from_env()
    batcher = MicroBatcher(
        engine, settings.max_batch_items, settings.max_wait_ms, max_image_pixels=settings.max_image_pixels
    )

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
    app.include_router(embedding_router(engine, settings, batcher))
    weaviate = inference_router(
        engine,
        max_items=settings.max_items,
        max_text_chars=settings.max_text_chars,
        max_image_pixels=settings.max_image_pixels,
        max_request_pixels=settings.max_request_pixels,
        embedder=batcher,
    )
    app.include_router(weaviate)

    weaviate_paths = frozenset(route.path for route in weaviate.routes)

    def reject(path: str, failure: Failure) -> Response:
        return weaviate_error(failure) if path in weaviate_paths else embedding_error(None, failure)

    def is_open(path: str) -> bool:
        return _PROBES.fullmatch(path) is not None or (not settings.weaviate_routes_auth and path in weaviate_paths)

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s, reject=reject)
    keyless = settings.api_key is None
    app.add_middleware(JsonOnly, applies=lambda path: keyless or is_open(path), reject=reject)
    if not keyless:
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
