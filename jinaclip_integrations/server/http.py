"""The HTTP plumbing every route of the server shares, so both route families (OpenAI/Jina's
``/v1/embeddings`` and Weaviate's inference routes) read, check and fail requests alike.

- :class:`BodyLimit` reads the whole request body before the app does, within the size limit
  and the time limit (a client that sends half a body and waits is answered 408).
- :func:`json_object` parses it (refusing, before parsing, a body with more values than any
  request within the item limit can hold), :func:`validate` checks it against a schema: a wrong
  request is a :class:`BadRequest` (the request as a whole, an unknown field included) or an
  :class:`~jinaclip_integrations.errors.InputError` (one item, by its index).
- :func:`respond` runs a route's work, cancelled when the client leaves
  (:func:`unless_client_leaves`), and turns what it raises into a :class:`Failure` with
  :func:`failure`: the one mapping from exceptions to HTTP statuses. Each route family renders
  a :class:`Failure` in the shape its clients read. The exception is then dropped with every
  frame it passed through, so a refused request's parsed body is freed at once (not when the
  garbage collector next looks at the oldest objects: a body of millions of values stayed).
- :func:`add_get_route` adds a route that answers ``HEAD`` as well as ``GET`` (probes send both).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, get_args

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InputError
from .batcher import RETRY_LATER, BatcherClosed, OutOfMemory

__all__ = [
    "INLINE_SIZE",
    "BadRequest",
    "BodyLimit",
    "Failure",
    "Reject",
    "Render",
    "add_get_route",
    "failure",
    "json_object",
    "offload",
    "printable",
    "respond",
    "unless_client_leaves",
    "validate",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
ModelT = TypeVar("ModelT", bound=BaseModel)

#: request bodies (bytes) and answers (floats) up to this size are handled on the event loop,
#: larger ones on a worker thread (see :func:`offload`)
INLINE_SIZE = 64 * 1024
#: values a body may hold beyond its items (its options, an item's key) before :func:`json_object`
#: refuses it unparsed: far more than any request has
_SPARE_VALUES = 1024
#: what :func:`_separators` keeps of a body: string quotes and commas
_NOT_QUOTE_OR_COMMA = bytes(sorted(set(range(256)) - set(b'",')))
#: bytes of quotes and commas counted at once (a few MiB of numpy temporaries)
_COUNT_CHUNK = 4 * 1024 * 1024
#: how Python shows an object without a readable form (``<_io.BytesIO object at 0x7f...>``): in
#: an error message it says nothing to a client and tells where the server's heap is
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


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
    ``timeout_s``, else 500 ``"<action> failed: ..."`` (logged with its traceback). Messages go
    through :func:`printable`."""
    if isinstance(exc, BadRequest):
        return Failure(400, printable(str(exc)), exc.param)
    if isinstance(exc, InputError):
        return Failure(400, printable(str(exc)), "input")
    if isinstance(exc, BatcherClosed):
        return Failure(503, "the server is not ready or is shutting down")
    if isinstance(exc, OutOfMemory):
        return Failure(503, printable(str(exc)), headers=RETRY_LATER)
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
    What the work raised is dropped with its frames before the answer goes out (see the module
    docstring).
    """
    try:
        body = await request.body()
        running = work(body) if timeout_s is None else asyncio.wait_for(work(body), timeout_s)
        response = await unless_client_leaves(request, running)
        return Response(status_code=499) if response is None else response
    except Exception as exc:
        answer = failure(exc, action, timeout_s)
        _forget(exc)
    return render(answer)


def _forget(exc: BaseException | None) -> None:
    """Drop what ``exc`` holds of the request that raised it: its traceback, whose frames hold
    the parsed body, the request's items and the task that ran them, which holds ``exc`` in
    turn (a cycle only a full garbage collection would break, and a body of millions of values
    makes those rare), and the exceptions it was raised from (a ``JSONDecodeError`` holds the
    whole body as text). Nothing else holds those frames, so they go with it. (The frames are
    not cleared: on Python 3.11 clearing a suspended coroutine's frame would close it.)"""
    while exc is not None:
        exc.__traceback__ = None
        chained = exc.__cause__ or exc.__context__
        exc.__cause__ = exc.__context__ = None
        exc = chained


# -- reading a request -----------------------------------------------------------------------------


def json_object(body: bytes, max_items: int | None = None) -> dict[str, Any]:
    """A request body as a JSON object, whatever the Content-Type (Weaviate's Go client sends
    none); a :class:`BadRequest` saying what is wrong with it (not JSON, nested too deeply for
    the parser, or not an object).

    With ``max_items`` (the route's limit on items), a body whose arrays and objects hold more
    values than a request of that many items can (its separating commas, counted outside
    strings) is refused before it is parsed: parsed, ``[{}, {}, ...]`` takes about 29 times
    its size in memory (900 MiB for a 31 MiB body) for an answer that is a 400 anyway. Counting
    costs a pass over the body, and only when it has that many commas at all."""
    if max_items is not None:
        most = max_items + _SPARE_VALUES
        if body.count(b",") > most and (separators := _separators(body)) > most:
            raise BadRequest(
                f"request body holds {separators + 1} or more values, more than a request within the limit of "
                f"{max_items} items can (refused before parsing)",
                "input",
            )
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, not {type(data).__name__}")
    return data


def _separators(body: bytes) -> int:
    """The commas of ``body`` outside JSON strings: in valid JSON, one fewer than the values of
    each array and the members of each object, summed. Escaped backslashes and quotes are taken
    out first, so every quote left opens or closes a string; a comma after an odd number of
    quotes is inside one."""
    plain = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    marks = np.frombuffer(plain.translate(None, _NOT_QUOTE_OR_COMMA), dtype=np.uint8)
    count, inside = 0, 0
    for start in range(0, len(marks), _COUNT_CHUNK):
        quotes = marks[start : start + _COUNT_CHUNK] == ord('"')
        odd = (np.cumsum(quotes, dtype=np.uint8) + inside) & 1  # uint8 wraps, its parity does not
        count += int(np.count_nonzero(~quotes & (odd == 0)))
        inside = int(odd[-1])
    return count


def validate(model: type[ModelT], data: dict[str, Any], items: Mapping[str, str] | None = None) -> ModelT:
    """``data`` as a ``model``, or the first thing wrong with it: an :class:`InputError` for an
    element of a list field named in ``items`` (field -> the kind of item, e.g. ``"texts"`` ->
    ``"text"``), which clients read by its index; else a :class:`BadRequest` whose message
    starts with the field's path (``"config.dimensions: ..."``) and whose param is the field. A
    field the model does not know (where it forbids extra fields) is ``"unknown field 'x'"``
    with the fields it knows: a client's option this server would silently ignore changes what
    the client gets, so it is refused."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
    loc = error["loc"]
    path = ".".join(map(str, loc)) or "body"
    if items and len(loc) == 2 and loc[0] in items and isinstance(loc[1], int):
        raise InputError(loc[1], error["msg"], kind=items[loc[0]])
    if error["type"] == "extra_forbidden":
        raise BadRequest(f"unknown field {path!r}; the fields read here are {_fields_at(model, loc[:-1])}", str(loc[0]))  # fmt: skip
    raise BadRequest(f"{path}: {error['msg']}", str(loc[0]) if loc else None)


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model nested in ``model`` at ``loc`` (``("config",)``)."""
    for name in loc:
        annotation = model.model_fields[name].annotation
        model = next(kind for kind in (annotation, *get_args(annotation)) if isinstance(kind, type) and issubclass(kind, BaseModel))  # fmt: skip
    return sorted(model.model_fields)


def printable(message: str) -> str:
    """``message`` as an error answer may carry it: valid UTF-8 (a lone surrogate from a client's
    JSON escapes, echoed in a message, becomes ``\\udXXX``), and no object reprs (PIL names the
    ``<_io.BytesIO object at 0x...>`` it could not read; ``the data`` says as much)."""
    return _OBJECT_REPR.sub("the data", message).encode("utf-8", "backslashreplace").decode("utf-8")


async def offload(large: bool, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a worker thread when the work is ``large`` (the event loop keeps serving
    other clients), else right here (a thread hop costs more than small work)."""
    return await run_in_threadpool(fn, *args) if large else fn(*args)


def add_get_route(router: APIRouter, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
    """``GET path`` (in the schema) and ``HEAD path`` (the same answer without its body; left
    out of the schema), as probes and load balancers send either."""
    router.add_api_route(path, endpoint, methods=["GET"], **options)
    router.add_api_route(path, endpoint, methods=["HEAD"], **{**options, "include_in_schema": False})


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


# -- the body's size and time limits ----------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: read the whole request body before the app does, answering 413 as soon
    as it is known to exceed ``max_bytes`` (from ``Content-Length``, else while it streams in)
    and 408 when it has not all arrived ``timeout_s`` after the first read (the connection is
    then closed: a client that sends half a body and waits holds nothing for long); the app then
    reads the buffered body. Every route gets the limits, whatever it parses."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float, reject: Reject) -> None:
        self.app, self.max_bytes, self.timeout_s, self.reject = app, max_bytes, timeout_s, reject

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
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout_s)
        except _TooLarge:
            await self._too_large(path, None)(scope, receive, send)
            return
        except asyncio.TimeoutError:
            message = f"the request body did not arrive within {self.timeout_s:g} s"
            await self.reject(path, Failure(408, message, headers={"Connection": "close"}))(scope, receive, send)
            return
        if body is not None:  # None: the client is gone
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body; None if the client disconnects first; :class:`_TooLarge` as soon as
        it exceeds the limit."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self, path: str, size: int | None) -> Response:
        what = f"{size} bytes" if size is not None else "more than that"
        message = f"request body is too large: {what}; the limit is {self.max_bytes} bytes"
        return self.reject(path, Failure(413, message))


class _TooLarge(Exception):
    """The body streaming in passed the size limit."""


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
