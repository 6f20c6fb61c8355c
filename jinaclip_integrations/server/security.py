"""What stands between the network and the engine: bearer-token auth, the JSON-only rule of routes
without a key, strict image decoding, image header checks (per image and per request) and
SSRF-safe image URL fetching (the body's size and time limits are :class:`~.http.BodyLimit`).

The engine opens any string it is given as a path, a URL (with no address checks) or lenient
base64, which is right for a local caller and wrong for a client on the network. So the
server never hands the engine a client's string as an image: it decodes base64 and data URIs
here, strictly, fetches allowed URLs here, and passes the engine bytes.

URL fetching (off unless enabled) accepts ``http`` and ``https`` only. Each hop's host is
resolved here and, unless private addresses are allowed, refused when any of its addresses is
loopback, private, link-local, multicast, reserved, unspecified or otherwise not global
(IPv4-mapped, 6to4 and Teredo IPv6 addresses are judged by the IPv4 address inside). The
connection goes to the address that was checked (no second lookup an attacker's DNS could
answer differently); redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each one
checked the same way; the whole fetch has one deadline (a watchdog shuts the socket down when
it passes, so a server that drips its headers cannot hold a thread longer) and the request's
images one byte budget. Each request looks up and fetches on a thread pool of its own, at
most :data:`URL_CONCURRENCY` URLs at a time: one request's slow URLs (or slow DNS answers)
never hold another's fetches.
A refused URL's message never says what its host resolved to, nor tells a host that does not
resolve from one that resolves to a private address (the server's DNS view stays its own).
Proxy settings from the environment are not used.

Clients are told the model's name, never where it lies on the server's disk
(:func:`public_model_name`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from ..engine import open_image
from ..errors import InputError
from ..store import model_label
from .batcher import gather_all
from .http import Failure, Reject

__all__ = [
    "MAX_REDIRECTS",
    "URL_CONCURRENCY",
    "BearerAuth",
    "ImageCheck",
    "JsonOnly",
    "address_allowed",
    "check_image",
    "decode_image",
    "fetch_images",
    "is_url",
    "public_model_name",
    "token_matches",
]

MAX_REDIRECTS = 3
#: image URLs fetched at the same time for one request (the threads of its own pool)
URL_CONCURRENCY = 4
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
#: the data URIs of images: an image type, ``application/octet-stream`` or none
_DATA_URI = re.compile(r"data:(image/[\w.+-]+|application/octet-stream)?;base64,", re.IGNORECASE | re.ASCII)
#: Content-Types of a 200 that is certainly not an image (an error or login page, an API's JSON):
#: refused from the headers, before downloading the body
_NOT_IMAGES = re.compile(r"text/.*|application/(json|xml|xhtml\+xml|problem\+json)", re.IGNORECASE)


# -- authentication -------------------------------------------------------------------------------


def token_matches(authorization: bytes | str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <api_key>``: the header's bytes as
    they came (a ``str`` as UTF-8) against the key's ASCII bytes, in constant time. The key is
    visible ASCII (:class:`~.settings.ServerSettings` refuses others), so what a client must send
    does not depend on how it encodes a header."""
    raw = authorization.encode() if isinstance(authorization, str) else authorization or b""
    scheme, _, token = raw.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(token.strip(), api_key.encode("ascii"))


class BearerAuth:
    """ASGI middleware: a request to a path that is not open needs ``Bearer <api_key>``, else
    it is answered 401 (with ``WWW-Authenticate: Bearer``) before its body is read."""

    def __init__(self, app: ASGIApp, *, api_key: str, is_open: Callable[[str], bool], reject: Reject) -> None:
        self.app, self.api_key, self.is_open, self.reject = app, api_key, is_open, reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.is_open(scope["path"]):
            authorization = dict(scope["headers"]).get(b"authorization")
            if not token_matches(authorization, self.api_key):
                message = "missing or invalid API key: send 'Authorization: Bearer <key>'"
                response = self.reject(scope["path"], Failure(401, message, headers={"WWW-Authenticate": "Bearer"}))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class JsonOnly:
    """ASGI middleware: a POST to a path for which ``applies`` (the routes that need no key) must
    say ``Content-Type: application/json``, or say none and come from no web page (no
    ``Origin``); else it is answered 415 before its body is read.

    A web page may make its visitor's browser POST anywhere without asking the server first
    (no CORS preflight) only as ``text/plain``, a form, or a body with no type; JSON needs the
    preflight, which this server never grants. So a server without a key on ``127.0.0.1`` or a
    private network cannot be made to embed by pages its users open. Weaviate's
    text2vec-transformers client sends no Content-Type (and no ``Origin``): it is served."""

    def __init__(self, app: ASGIApp, *, applies: Callable[[str], bool], reject: Reject) -> None:
        self.app, self.applies, self.reject = app, applies, reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.applies(scope["path"]):
            headers = dict(scope["headers"])
            declared = headers.get(b"content-type")
            media_type = (declared or b"").partition(b";")[0].strip().lower()
            if media_type != b"application/json" and (declared is not None or b"origin" in headers):
                sent = f", not {declared.decode('latin-1')!r}" if declared is not None else " from a web page (Origin)"
                message = (f"Content-Type must be application/json{sent}: without an API key, this server refuses "
                           "what any web page could make its visitors' browsers send")  # fmt: skip
                await self.reject(scope["path"], Failure(415, message))(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- images -------------------------------------------------------------------------------------------


def decode_image(value: str, index: int) -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,``, ``data:application/octet-stream;
    base64,`` or ``data:;base64,`` prefix is allowed); an ``InputError`` naming ``index`` for
    anything that is not strict base64."""
    match = _DATA_URI.match(value)
    try:
        data = base64.b64decode(value[match.end() :] if match else value, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise InputError(index, f"not valid base64 ({exc})", kind="image") from None
    if not data:
        raise InputError(index, "empty image", kind="image")
    return data


def check_image(data: bytes, index: int, max_pixels: int | None) -> int:
    """The pixels of an image as its header declares them; an :class:`InputError` naming
    ``index`` for bytes that are not an image in one of the engine's accepted formats
    (``IMAGE_FORMATS``: no other reader sees them), or an image of more than ``max_pixels``
    pixels. Only the header is read."""
    with open_image(data, index, "image data") as img:
        width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            index,
            f"image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
            kind="image",
        )
    return width * height


class ImageCheck:
    """The header checks of one request's images (:func:`check_image`), and its pixel budget:
    decoding costs in proportion to the pixels (about 2 s for a one-colour PNG of 89 megapixels
    and a few hundred kilobytes), so the images of one request may declare at most
    ``max_request_pixels`` in all (None: no budget). Call it on each image as it is read."""

    def __init__(self, max_pixels: int | None, max_request_pixels: int | None) -> None:
        self.max_pixels, self.max_request_pixels = max_pixels, max_request_pixels
        self.pixels = 0

    def __call__(self, data: bytes, index: int) -> None:
        self.pixels += check_image(data, index, self.max_pixels)
        if self.max_request_pixels is not None and self.pixels > self.max_request_pixels:
            raise InputError(
                index,
                f"the images of this request have {self.pixels} pixels up to this one, more than the limit of "
                f"{self.max_request_pixels} per request (max_request_pixels): send them in several requests",
                kind="image",
            )


def is_url(value: str) -> bool:
    """Whether ``value`` starts like a URL (any scheme) rather than base64 or a data URI."""
    return _SCHEME.match(value) is not None


def address_allowed(address: str) -> bool:
    """Whether an IP address is public (see the module docstring for what is refused)."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # drop an IPv6 zone ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d
            return address_allowed(str(ip.ipv4_mapped))
        inner = ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None and not address_allowed(str(inner)):
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


class _Budget:
    """Bytes the images of one request may still download, shared by its concurrent fetches."""

    def __init__(self, total: int) -> None:
        self.left = total
        self._lock = threading.Lock()

    def take(self, size: int, index: int) -> None:
        with self._lock:
            if size > self.left:
                raise InputError(index, "image URLs of this request exceed the download limit", kind="image")
            self.left -= size


async def fetch_images(
    urls: Sequence[tuple[int, str]], *, allow_private: bool, timeout_s: float, max_total_bytes: int
) -> list[bytes]:
    """Download ``(index, url)`` images (see the module docstring); the bytes in order.

    Raises:
        InputError: a URL is refused, fails, times out, is not an image or exceeds the budget;
            its ``index`` is the one given with it.
    """
    budget = _Budget(max_total_bytes)
    gate = asyncio.Semaphore(URL_CONCURRENCY)
    pool = ThreadPoolExecutor(max_workers=min(URL_CONCURRENCY, len(urls)) or 1, thread_name_prefix="jinaclip-fetch")

    async def one(index: int, url: str) -> bytes:
        async with gate:
            try:
                return await asyncio.wait_for(_fetch(url, index, allow_private, timeout_s, budget, pool), timeout_s)
            except asyncio.TimeoutError:
                raise _too_slow(url, index, timeout_s) from None

    try:
        return await gather_all(one(index, url) for index, url in urls)
    finally:  # a fetch still running ends at its deadline (the watchdog), then its thread
        pool.shutdown(wait=False, cancel_futures=True)


async def _fetch(url: str, index: int, allow_private: bool, timeout_s: float, budget: _Budget, pool: Executor) -> bytes:
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        target = _parse(url, index)
        address = await _resolve(target, index, allow_private, pool)
        loop = asyncio.get_running_loop()
        status, location, body = await loop.run_in_executor(
            pool, _get, target, address, deadline, timeout_s, budget, index
        )
        if status == 200:
            return body
        if status not in _REDIRECT_STATUSES:
            raise InputError(index, f"HTTP {status} fetching {url}", kind="image")
        if not location:
            raise InputError(index, f"HTTP {status} without a Location fetching {url}", kind="image")
        url = urllib.parse.urljoin(url, location)
    raise InputError(index, f"more than {MAX_REDIRECTS} redirects fetching the image", kind="image")


def _parse(url: str, index: int) -> urllib.parse.SplitResult:
    try:
        target = urllib.parse.urlsplit(url)
        target.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise InputError(index, f"invalid URL {url!r}: {exc}", kind="image") from None
    if target.scheme not in ("http", "https"):
        raise InputError(index, f"only http and https image URLs are fetched, not {target.scheme!r}", kind="image")
    if not target.hostname:
        raise InputError(index, f"URL {url!r} has no host", kind="image")
    if target.username is not None or target.password is not None:
        raise InputError(index, "image URLs with credentials are not supported", kind="image")
    return target


async def _resolve(target: urllib.parse.SplitResult, index: int, allow_private: bool, pool: Executor) -> str:
    """An address of the URL's host to connect to (looked up on the request's ``pool``: a slow
    DNS answer holds no thread of anyone else's); every address is checked unless allowed.
    Refused, the message is the same whether the host does not resolve or resolves to a
    non-public address, and names no address (see the module docstring)."""
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    lookup = functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    try:
        infos = await asyncio.get_running_loop().run_in_executor(pool, lookup)
    except (OSError, UnicodeError) as exc:
        if not allow_private:
            raise _not_public(target, index) from None
        raise InputError(index, f"cannot resolve {host!r}: {exc}", kind="image") from None
    addresses = [info[4][0] for info in infos]
    if not allow_private and not (addresses and all(map(address_allowed, addresses))):
        raise _not_public(target, index)
    if not addresses:
        raise InputError(index, f"cannot resolve {host!r}", kind="image")
    return addresses[0]


def _not_public(target: urllib.parse.SplitResult, index: int) -> InputError:
    return InputError(
        index,
        f"refused to fetch {target.geturl()}: its host is not a public address that resolves (start the server "
        "with --allow-private-urls to allow private addresses)",
        kind="image",
    )


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a checked address, with the URL's host in the ``Host`` header."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(_PinnedHTTP):
    """HTTPS to a checked address; the certificate is verified for the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def connect(self) -> None:
        super().connect()
        self.sock = ssl.create_default_context().wrap_socket(self.sock, server_hostname=self.host)


def _too_slow(url: str, index: int, timeout_s: float) -> InputError:
    return InputError(index, f"{url} took longer than {timeout_s:g} s", kind="image")


def _get(
    target: urllib.parse.SplitResult, address: str, deadline: float, timeout_s: float, budget: _Budget, index: int
) -> tuple[int, str | None, bytes]:
    """One GET: ``(status, Location header, body)``; the body is read only for a 200."""
    url = target.geturl()

    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _too_slow(url, index, timeout_s)
        return left

    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = kind(target.hostname, target.port or kind.default_port, address, remaining())
    path = urllib.parse.urlunsplit(("", "", target.path or "/", target.query, ""))
    # the socket timeout bounds each recv, not a server that drips headers: at the deadline a
    # watchdog shuts the socket down, which ends any blocked read at once
    watchdog = threading.Timer(remaining(), _shut, (conn,))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("GET", path, headers={"User-Agent": "jinaclip-integrations", "Accept": "image/*"})
        response = conn.getresponse()
        remaining()  # headers cut short by the watchdog look complete to http.client
        if response.status != 200:
            return response.status, response.getheader("Location"), b""
        content_type = response.getheader("Content-Type", "")
        media_type = content_type.partition(";")[0].strip()
        if _NOT_IMAGES.fullmatch(media_type):
            raise InputError(index, f"{url} returned {media_type}, not an image", kind="image")
        chunks = []
        while chunk := response.read1(_CHUNK):  # one recv at a time: the deadline is checked between
            remaining()
            budget.take(len(chunk), index)
            chunks.append(chunk)
        remaining()  # so does a body the watchdog ended
        return 200, None, b"".join(chunks)
    except TimeoutError:  # the socket's
        raise _too_slow(url, index, timeout_s) from None
    except (OSError, http.client.HTTPException, UnicodeError) as exc:  # UnicodeError: a non-ASCII host name
        if time.monotonic() >= deadline:  # the watchdog cut the connection
            raise _too_slow(url, index, timeout_s) from None
        raise InputError(index, f"cannot fetch {url}: {exc}", kind="image") from None
    finally:
        watchdog.cancel()
        conn.close()


def _shut(conn: http.client.HTTPConnection) -> None:
    """Shut a connection's socket down from another thread (its blocked read returns)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


# -- naming the model ------------------------------------------------------------------------------------


def public_model_name(name_or_path: str) -> str:
    """The model's name as the server shows it (``/v1/models``, answers, ``/meta``): a hub name
    as it is (``jinaai/jina-clip-v2``), a local folder by its last part only: where the server
    keeps its files (a home folder, a user name) is not the clients' business."""
    path = Path(name_or_path).expanduser()
    if path.is_absolute() or name_or_path.startswith((".", "~")) or path.exists():
        return model_label(name_or_path)
    return name_or_path
