"""The HTTP plumbing every route of the server shares, so both route families (OpenAI/Jina's
``/v1/embeddings`` and Weaviate's inference routes) read, check and fail requests alike.

- :class:`BodyLimit` reads the whole request body before the app does, within the size limit.
- :func:`json_object` parses it, :func:`validate` checks it against a schema: a wrong request
  is a :class:`BadRequest` (the request as a whole) or an
  :class:`~jinaclip_integrations.errors.InputError` (one item, by its index).
- :func:`respond` runs a route's work, cancelled when the client leaves
  (:func:`unless_client_leaves`), and turns what it raises into a :class:`Failure` with
  :func:`failure`: the one mapping from exceptions to HTTP statuses. Each route family renders
  a :class:`Failure` in the shape its clients read.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InputError
from .batcher import RETRY_LATER, BatcherClosed, OutOfMemory

__all__ = [
    "BadRequest",
    "BodyLimit",
    "Failure",
    "Reject",
    "Render",
    "failure",
    "json_object",
    "printable",
    "respond",
    "unless_client_leaves",
    "validate",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)


class BadRequest(ValueError):
    """The request is wrong as a whole (not one of its items): answered 400 with the message.

    Attributes:
        param: the request field at fault (OpenAI's error ``param``), if one is.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Failure:
    """An error answer before it is given a route family's shape.

    Attributes:
        status: the HTTP status.
        message: what went wrong, in words (valid UTF-8).
        param: the request field at fault, if known.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    status: int
    message: str
    param: str | None = None
    headers: Mapping[str, str] | None = None


#: a failure -> the response in the shape of a route family's clients
Render = Callable[[Failure], Response]
#: (path, failure) -> the response in the shape of the path's clients (for the middlewares)
Reject = Callable[[str, Failure], Response]


def failure(exc: BaseException, action: str, timeout_s: float | None = None) -> Failure:
    """The answer for what a route's work raised: 400 for a bad request or item, 503 when the
    batcher is not running or the accelerator is out of memory (to retry), 504 for a timeout of
    ``timeout_s``, else 500 ``"<action> failed: ..."`` (logged with its traceback)."""
    if isinstance(exc, BadRequest):
        return Failure(400, printable(str(exc)), exc.param)
    if isinstance(exc, InputError):
        return Failure(400, printable(str(exc)), "input")
    if isinstance(exc, BatcherClosed):
        return Failure(503, "the server is not ready or is shutting down")
    if isinstance(exc, OutOfMemory):
        return Failure(503, str(exc), headers=RETRY_LATER)
    if isinstance(exc, asyncio.TimeoutError) and timeout_s is not None:
        return Failure(504, f"the request took longer than {timeout_s:g} s")
    logger.error("%s failed", action, exc_info=exc)
    return Failure(500, printable(f"{action} failed: {type(exc).__name__}: {exc}"))


async def respond(
    request: Request,
    work: Callable[[bytes], Awaitable[Response]],
    render: Render,
    *,
    action: str,
    timeout_s: float | None = None,
) -> Response:
    """``work``'s answer to the request's body, or ``render`` of its :func:`failure`.

    The work runs for at most ``timeout_s`` (None: no limit) and is cancelled when the client
    disconnects, which gets a bare 499 nobody reads. ``action`` names the work in a 500's message.
    """
    try:
        body = await request.body()
        running = work(body) if timeout_s is None else asyncio.wait_for(work(body), timeout_s)
        response = await unless_client_leaves(request, running)
        return Response(status_code=499) if response is None else response
    except Exception as exc:
        return render(failure(exc, action, timeout_s))


# -- reading a request -----------------------------------------------------------------------------


def json_object(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, whatever the Content-Type (Weaviate's Go client sends
    none); a :class:`BadRequest` saying what is wrong with it (not JSON, nested too deeply for
    the parser, or not an object)."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def validate(model: type[ModelT], data: dict[str, Any], items: Mapping[str, str] | None = None) -> ModelT:
    """``data`` as a ``model``, or the first thing wrong with it: an :class:`InputError` for an
    element of a list field named in ``items`` (field -> the kind of item, e.g. ``"texts"`` ->
    ``"text"``), which clients read by its index; else a :class:`BadRequest` whose message
    starts with the field's path (``"config.dimensions: ..."``) and whose param is the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        loc = error["loc"]
        if items and len(loc) == 2 and loc[0] in items and isinstance(loc[1], int):
            raise InputError(loc[1], error["msg"], kind=items[loc[0]]) from None
        raise BadRequest(f"{'.'.join(map(str, loc)) or 'body'}: {error['msg']}", str(loc[0]) if loc else None) from None


def printable(message: str) -> str:
    """``message`` as valid UTF-8 for a JSON answer: a lone surrogate from a client's JSON
    escapes, echoed in an error message (in a URL, say), becomes ``\\udXXX``."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")


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


# -- the body-size limit ----------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: read the whole request body before the app does, answering 413 as soon
    as it is known to exceed ``max_bytes`` (from ``Content-Length``, else while it streams in);
    the app then reads the buffered body. Every route gets the limit, whatever it parses."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, reject: Reject) -> None:
        self.app, self.max_bytes, self.reject = app, max_bytes, reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await self.reject(path, Failure(400, "invalid Content-Length header"))(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(path, int(declared))(scope, receive, send)
                return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(path, None)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _too_large(self, path: str, size: int | None) -> Response:
        what = f"{size} bytes" if size is not None else "more than that"
        message = f"request body is too large: {what}; the limit is {self.max_bytes} bytes"
        return self.reject(path, Failure(413, message))


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then waits on the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
