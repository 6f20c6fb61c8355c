"""What stands between the network and the engine: bearer-token auth, strict image decoding,
image header checks and SSRF-safe image URL fetching (the body-size limit is :class:`~.http.BodyLimit`).

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
images one byte budget. Fetches run on their own small thread pool. Proxy settings from the environment are not used.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import http.client
import io
import ipaddress
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from starlette.types import ASGIApp, Receive, Scope, Send

from ..engine import require_heif_support
from ..errors import InputError
from .batcher import gather_all
from .http import Failure, Reject

__all__ = [
    "MAX_REDIRECTS",
    "BearerAuth",
    "address_allowed",
    "check_image",
    "decode_image",
    "fetch_images",
    "is_url",
    "token_matches",
]

MAX_REDIRECTS = 3
#: image URLs fetched at the same time for one request
URL_CONCURRENCY = 8
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://")
_DATA_URI = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE | re.ASCII)
#: Content-Types of a 200 that is certainly not an image (an error or login page, an API's JSON):
#: refused from the headers, before downloading the body
_NOT_IMAGES = re.compile(r"text/.*|application/(json|xml|xhtml\+xml|problem\+json)", re.IGNORECASE)


# -- authentication -------------------------------------------------------------------------------


def token_matches(authorization: str | None, api_key: str) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer <api_key>`` (constant-time compare)."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


class BearerAuth:
    """ASGI middleware: a request to a path that is not open needs ``Bearer <api_key>``, else
    it is answered 401 (with ``WWW-Authenticate: Bearer``) before its body is read."""

    def __init__(self, app: ASGIApp, *, api_key: str, is_open: Callable[[str], bool], reject: Reject) -> None:
        self.app, self.api_key, self.is_open, self.reject = app, api_key, is_open, reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.is_open(scope["path"]):
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization", b"").decode("latin-1")
            if not token_matches(authorization, self.api_key):
                message = "missing or invalid API key: send 'Authorization: Bearer <key>'"
                response = self.reject(scope["path"], Failure(401, message, headers={"WWW-Authenticate": "Bearer"}))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- images -------------------------------------------------------------------------------------------


def decode_image(value: str, index: int) -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed); an
    ``InputError`` naming ``index`` for anything that is not strict base64."""
    match = _DATA_URI.match(value)
    try:
        data = base64.b64decode(value[match.end() :] if match else value, validate=True)
    except ValueError as exc:  # binascii.Error, and non-ASCII text
        raise InputError(index, f"not valid base64 ({exc})", kind="image") from None
    if not data:
        raise InputError(index, "empty image", kind="image")
    return data


def check_image(data: bytes, index: int, max_pixels: int | None) -> None:
    """Refuse bytes that are not an image PIL can identify, or one with more than ``max_pixels``
    pixels: an :class:`InputError` naming ``index``. Only the header is read."""
    require_heif_support(data, index)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise InputError(index, f"image is too large: {exc}", kind="image") from None
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise InputError(index, f"not an image: {exc}", kind="image") from None
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            index,
            f"image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
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

    async def one(index: int, url: str) -> bytes:
        async with gate:
            try:
                return await asyncio.wait_for(_fetch(url, index, allow_private, timeout_s, budget), timeout_s)
            except asyncio.TimeoutError:
                raise _too_slow(url, index, timeout_s) from None

    return await gather_all(one(index, url) for index, url in urls)


async def _fetch(url: str, index: int, allow_private: bool, timeout_s: float, budget: _Budget) -> bytes:
    deadline = time.monotonic() + timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        target = _parse(url, index)
        address = await _resolve(target, index, allow_private)
        loop = asyncio.get_running_loop()
        status, location, body = await loop.run_in_executor(
            _FETCH_POOL, _get, target, address, deadline, timeout_s, budget, index
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


async def _resolve(target: urllib.parse.SplitResult, index: int, allow_private: bool) -> str:
    """An address of the URL's host to connect to; every address is checked unless allowed."""
    host, port = target.hostname, target.port or (443 if target.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise InputError(index, f"cannot resolve {host!r}: {exc}", kind="image") from None
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise InputError(index, f"cannot resolve {host!r}", kind="image")
    if not allow_private:
        for address in addresses:
            if not address_allowed(address):
                raise InputError(
                    index,
                    f"refused to fetch {target.geturl()}: {host} resolves to the non-public address {address} "
                    "(start the server with --allow-private-urls to allow private addresses)",
                    kind="image",
                )
    return addresses[0]


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


#: threads that fetch image URLs: their own pool, so slow remotes cannot take the event loop's
#: default executor (DNS lookups, shutdown) hostage
_FETCH_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="jinaclip-fetch")


def _shut(conn: http.client.HTTPConnection) -> None:
    """Shut a connection's socket down from another thread (its blocked read returns)."""
    sock = conn.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
