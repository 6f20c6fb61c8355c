"""Image inputs: anything a user may hold -> what it is (:func:`resolve_image`) -> a decoded,
upright RGB PIL image (:func:`load_image`).

Accepted: a PIL image, a path (``str``, ``os.PathLike`` or a ``file://`` URI; ``~`` is the
home folder), raw bytes, a binary file object, a base64 string, a ``data:`` URI, an http(s)
URL, or an ``H x W x C`` (or ``H x W``) uint8 numpy array. Every failure raises
:class:`~jinaclip_integrations.errors.InputError` naming the item's index and the reason;
nothing from PIL, urllib or numpy escapes.

:func:`resolve_image` is the one place that tells these kinds apart (:func:`is_image_input`
says, without reading anything, whether it will take an object's type; :class:`ImageRef` marks a
string as an image where strings would otherwise be texts). The engine decodes what it
finds; the ingest pipeline keys points by it (the encoded bytes of a file, its ``file://`` URI,
its bytes, its base64 and its data URI are one and the same), so a point's ID and its vector
always come from the same reading of the input.

Formats: encoded bytes, wherever they come from (a file, bytes, base64, a data URI, a URL, a file
object; the server's and the document readers' images too), are decoded only in the formats of
:data:`IMAGE_FORMATS`: JPEG (MPO, the multi-picture JPEG many cameras write, included: PIL's JPEG
reader returns it, and its frames are JPEGs), PNG (APNG too), WebP, GIF, BMP, TIFF, AVIF where the
installed pillow reads it (pillow 11.3 and later, built with libavif) and HEIC/HEIF where
pillow-heif is installed. ``Image.open`` is given that list, so no other PIL plugin ever reads the
bytes: an EPS never reaches Ghostscript, a PSD, ICO, PCX, SGI, TGA, XBM, ... never reaches its parser.
Anything else is an :class:`~jinaclip_integrations.errors.InputError` naming the format (when its
first bytes tell it). A PIL image passed in is already decoded by its caller and is accepted as it is.

Decoding:

* EXIF orientation is applied, so the model sees the image as a viewer shows it (the reference
  ignores it: only rotated photos embed differently);
* every mode becomes RGB as ``convert("RGB")`` makes it, except 16-bit grayscale, which is
  scaled rather than clipped (see :func:`to_rgb`); alpha is dropped, not composited;
* an animated image (GIF, WebP, APNG) gives one frame: frame 0 of encoded inputs, and for a PIL
  image the frame it is currently on (the caller's ``seek`` is respected, never changed);
* HEIC/HEIF is read through pillow-heif when it is installed (registered with PIL on the first
  HEIF image, never at import); AVIF and WebP are read by PIL itself;
* a caller's PIL image is never modified, only loaded if it was lazy, as any read does (PIL turns
  a lazy TIFF upright in place when it loads it: its own doing).

``max_pixels`` bounds the decoded image (checked from the header, before decoding). PIL refuses
images over twice ``PIL.Image.MAX_IMAGE_PIXELS`` (~179 megapixels) on its own, whatever
``max_pixels`` says. This module needs PIL and numpy, not torch.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import http.client
import io
import math
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import ExifTags, Image, ImageOps

from ..errors import InputError

#: Default limit on pixels per image (PIL's own warning threshold, ~89 megapixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: Most bytes read from one encoded image (file, file object or URL).
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: Seconds an image URL may take, connection and whole download.
URL_TIMEOUT_S = 10.0
#: The only formats encoded images are decoded in (PIL's format names; see the module docstring).
#: AVIF and HEIF count where the installed pillow / pillow-heif read them.
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")

_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}\s*")
_MIN_BASE64_CHARS = 32  # shorter strings are treated as (missing) paths, not as image data
#: PIL images and file objects belong to the caller and may appear several times in one call,
#: or in concurrent calls: lazy decoding and reading them is not thread-safe, so it takes turns.
_CALLER_OBJECTS = threading.Lock()
#: ISO-BMFF major brands of HEIC/HEIF files (AVIF's ``avif``/``avis`` are read by PIL itself)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"})
#: integer grayscale modes holding 16-bit levels (``I`` is what older pillow and TIFF give them)
_INT_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


class ImageNotFound(InputError):
    """A string that is none of an existing file, a URL, a data URI or base64 image data.

    An :class:`InputError` like any other; its own class lets a caller that words this case
    its own way (the ingest pipeline) tell it from the rest without reading the message.
    """


@dataclass(frozen=True)
class ImageSource:
    """What an image input is, found by :func:`resolve_image` without decoding it.

    ``kind`` is ``"bytes"`` (an encoded image in ``data``: a file's bytes, decoded base64 or
    data URI, raw bytes, what a file object held), ``"url"`` (``value`` is the URL, not
    fetched), ``"pil"`` (``value`` is the caller's PIL image) or ``"array"`` (``value`` is the
    numpy array, not checked yet). ``path`` is the absolute path of a file's bytes, else None;
    ``label`` is how decoding errors name encoded bytes (``'a.jpg'``, ``data URI``, the URL).
    """

    kind: Literal["bytes", "url", "pil", "array"]
    data: bytes = b""
    value: Any = None
    path: str | None = None
    label: str = ""


@dataclass(frozen=True)
class ImageRef:
    """An image input marked as an image: ``ImageRef("photos/cat.jpg")``,
    ``ImageRef("https://example.com/cat.png")``.

    Where texts and images come in one list (:meth:`JinaCLIPEngine.encode`, ``embed``), every
    ``str`` is a text, so that a sentence is never read as a file name and a missing file is
    never embedded as the text of its path: a path, URL, data URI or base64 string given as a
    string is an image only when wrapped. ``source`` may be any image input (a ``Path``, bytes,
    a PIL image... are images without the wrapper, but may be wrapped too); anywhere an image is
    read, the wrapper reads as its source.

    Raises:
        TypeError: ``source`` is of a type no image input has.
    """

    source: Any

    def __post_init__(self) -> None:
        if not is_image_input(self.source):
            raise TypeError(
                f"ImageRef takes an image input (a path, URL, data URI or base64 string, Path, bytes, "
                f"file object, PIL image or uint8 numpy array), got {type(self.source).__name__}"
            )


def is_image_input(item: Any) -> bool:
    """Whether :func:`resolve_image` takes an object of ``item``'s type (a string, ``os.PathLike``,
    bytes, a binary file object, a PIL image, a numpy array, an :class:`ImageRef`); whether it
    holds a readable image is found when it is read."""
    return isinstance(item, (ImageRef, Image.Image, str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)) or (
        callable(getattr(item, "read", None))
    )


def split_texts_and_images(items: list[Any]) -> tuple[list[int], list[int]]:
    """The positions of the texts and of the images in a mixed list: every ``str`` is a text,
    every other image input (:func:`is_image_input`) an image, an :class:`ImageRef` included.

    Raises:
        InputError: an item that is neither (its index in ``.index``).
    """
    texts, images = [], []
    for i, item in enumerate(items):
        if isinstance(item, str):
            texts.append(i)
        elif is_image_input(item):
            images.append(i)
        else:
            raise InputError(
                i,
                f"expected a text (str) or an image (PIL image, Path, bytes, file object, uint8 numpy array, "
                f"or a path or URL string wrapped in ImageRef), got {type(item).__name__}",
            )
    return texts, images


def _bad(index: int, reason: str) -> InputError:
    return InputError(index, reason, kind="image")


def resolve_image(item: Any, index: int, *, max_bytes: int = MAX_IMAGE_BYTES) -> ImageSource:
    """What ``item`` is, read into bytes where it is a file, a file object, base64 or a data URI
    (at most ``max_bytes`` from a file or file object); URLs are not fetched, nothing is decoded.
    An :class:`ImageRef` is what its source is.

    Strings are tried in this order: ``data:`` URI, http(s) URL, ``file://`` URI, existing
    path, base64 (long enough and of base64 characters only).

    Raises:
        ImageNotFound: a string that is none of these.
        InputError: an unsupported type, a missing, unreadable or too large file, a bad data
            URI or base64 string, an unreadable or text-mode file object.
    """
    if not is_image_input(item):
        raise _bad(
            index,
            f"unsupported image type {type(item).__name__}; expected a PIL image, path, bytes, "
            "file object, base64 string, data URI, URL or uint8 numpy array",
        )
    while isinstance(item, ImageRef):
        item = item.source
    if isinstance(item, Image.Image):
        return ImageSource("pil", value=item)
    if isinstance(item, str):
        return _resolve_string(item, index, max_bytes)
    if isinstance(item, os.PathLike):
        return _read_path(os.path.expanduser(item), index, max_bytes)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return ImageSource("bytes", bytes(item), label="bytes")
    if isinstance(item, np.ndarray):
        return ImageSource("array", value=item)
    return ImageSource("bytes", _read_file_object(item, index, max_bytes), label="file object")


def _resolve_string(item: str, index: int, max_bytes: int) -> ImageSource:
    if item.startswith("data:"):
        return ImageSource("bytes", data_uri_bytes(item, index), label="data URI")
    if item.startswith(("http://", "https://")):
        return ImageSource("url", value=item, label=item)
    if item.startswith("file://"):
        parsed = urllib.parse.urlsplit(item)
        if parsed.netloc not in ("", "localhost"):
            raise _bad(index, f"file URI on another host is not supported: {item!r}")
        return _read_path(urllib.request.url2pathname(parsed.path), index, max_bytes)
    path = os.path.expanduser(item)
    if os.path.lexists(path):
        return _read_path(path, index, max_bytes)
    if looks_like_base64(item):
        return ImageSource("bytes", decode_base64(item, index, "string"), label="base64 string")
    shown = item if len(item) <= 200 else item[:200] + "..."
    raise ImageNotFound(index, f"file not found: {shown!r} (nor a URL, data URI or base64 image)", kind="image")


def _read_path(path: str | bytes, index: int, max_bytes: int) -> ImageSource:
    """A regular file's bytes, at most ``max_bytes`` of them (a FIFO or device is refused
    before it is opened: it would block or never end)."""
    shown = repr(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _bad(index, f"{shown} is not a regular file")
        if info.st_size > max_bytes:
            raise _bad(index, f"{shown} is larger than {max_bytes} bytes")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise _bad(index, f"file not found: {shown}") from None
    except (OSError, ValueError) as exc:  # permissions, a NUL in the name, ...
        raise _bad(index, f"cannot read {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    return ImageSource("bytes", data, path=os.path.abspath(os.fsdecode(path)), label=shown)


def _read_file_object(item: Any, index: int, max_bytes: int) -> bytes:
    try:
        with _CALLER_OBJECTS:
            data = item.read(max_bytes + 1)
    except Exception as exc:  # whatever the object's read() raises
        raise _bad(index, f"cannot read file object: {exc}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise _bad(index, "file object must be opened in binary mode")
    if not data:
        raise _bad(index, "file object returned no data (was it already read?)")
    if len(data) > max_bytes:
        raise _bad(index, f"file object holds more than {max_bytes} bytes")
    return bytes(data)


def looks_like_base64(text: str) -> bool:
    """Whether a string that is not an existing path is read as base64 image data: long enough
    and of base64 characters only (a short or other string is a missing file, and said so)."""
    return len(text) >= _MIN_BASE64_CHARS and _BASE64.fullmatch(text) is not None


def decode_base64(text: str, index: int, what: str) -> bytes:
    """Standard or URL-safe base64, whitespace and missing padding allowed; else an
    :class:`InputError` saying ``what`` was not valid base64."""
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad(index, f"{what} is not valid base64: {exc}") from None


def data_uri_bytes(item: str, index: int) -> bytes:
    """The bytes of ``data:<type>;base64,<data>`` where the type is ``image/*``,
    ``application/octet-stream`` or empty; anything else is an :class:`InputError`. The type
    only keeps out what is plainly not an image: the bytes are then identified by their content,
    so a ``data:image/png`` holding a JPEG is read as the JPEG it is."""
    header, sep, payload = item.partition(",")
    if not sep or not header.endswith(";base64"):
        raise _bad(index, "data URI is not of the form data:<type>;base64,<data>")
    mime = header[5:].partition(";")[0].strip().lower()
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise _bad(index, f"data URI has MIME type {mime!r}, not an image type")
    return decode_base64(payload, index, "data URI")


def _fetch_url(url: str, index: int) -> bytes:
    """GET ``url`` within :data:`URL_TIMEOUT_S` in all, at most :data:`MAX_IMAGE_BYTES`.

    A ``text/*`` answer (an HTML page, an error text) is refused before its body is read.
    Redirects are followed wherever they lead: this fetch serves a caller's own URLs; the
    server fetches its clients' URLs itself, refusing private addresses.
    """
    deadline = time.monotonic() + URL_TIMEOUT_S
    too_slow = f"{url} timed out after {URL_TIMEOUT_S:g} s"
    chunks, size = [], 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "jinaclip-integrations"})
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            content_type = (response.headers.get("Content-Type") or "").partition(";")[0].strip().lower()
            if content_type.startswith("text/"):
                raise _bad(index, f"{url} returned {content_type}, not an image")
            while chunk := response.read(1 << 20):
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise _bad(index, f"{url} is larger than {MAX_IMAGE_BYTES} bytes")
                if time.monotonic() > deadline:
                    raise _bad(index, too_slow)
                chunks.append(chunk)
    except InputError:
        raise
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        raise _bad(index, f"HTTP {exc.code} fetching {url}") from None
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)  # a URLError wraps a connect timeout; a read timeout comes bare
        if isinstance(reason, TimeoutError):
            raise _bad(index, too_slow) from None
        raise _bad(index, f"cannot fetch {url}: {reason}") from None
    return b"".join(chunks)


def load_image(
    item: Any, index: int, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS, min_side: int | None = None
) -> Image.Image:
    """Any accepted image input -> a decoded, upright RGB ``PIL.Image.Image`` (a new one).

    With ``min_side``, an encoded JPEG whose shortest side is many times ``min_side`` is decoded
    at a reduced scale (:func:`draft_decoding`): only what a resize to ``min_side`` needs.

    Raises:
        InputError: the item is of an unsupported type, missing, unreadable, corrupt,
            truncated, empty, or has more than ``max_pixels`` pixels.
    """
    source = resolve_image(item, index)
    if source.kind == "pil":
        try:
            with _CALLER_OBJECTS:
                return _decode(source.value, index, max_pixels)
        except InputError:
            raise
        except Exception as exc:
            raise _bad(index, f"cannot decode PIL image: {exc}") from None
    if source.kind == "array":
        return _from_array(source.value, index, max_pixels)
    data = _fetch_url(source.value, index) if source.kind == "url" else source.data
    return _open_bytes(data, index, max_pixels, source.label, min_side)


def _from_array(array: np.ndarray, index: int, max_pixels: int | None) -> Image.Image:
    if array.dtype != np.uint8:
        raise _bad(index, f"numpy image must be uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise _bad(index, f"numpy image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise _bad(index, f"numpy image is empty: shape {array.shape}")
    return _decode(Image.fromarray(np.ascontiguousarray(array)), index, max_pixels)


def _open_bytes(
    data: bytes, index: int, max_pixels: int | None, source: str, min_side: int | None = None
) -> Image.Image:
    with open_image(data, index, source) as img, _pil_errors(index, source):
        if min_side is not None:
            check_pixels(*img.size, index, max_pixels)  # the limit is on the image as stored
            draft_decoding(img, min_side)
        return _decode(img, index, max_pixels)


#: How many times the shortest side a reduced-scale decode keeps at least, so the resize after
#: it still averages several source pixels into each output pixel: a 12-megapixel photo for a
#: 512-pixel model is decoded at 1/2 scale (1500 px, not 1/4 at 750 px). Measured on a
#: synthetic 4000x3000 photo (benchmarks/bench_decode.py): the 512x512 crops differ from the
#: full decode's by 0.22 of 255 on average (at most 5); at 1/4 scale (margin 1) by 0.42.
DRAFT_MARGIN = 2


def draft_decoding(img: Image.Image, min_side: int) -> None:
    """Have PIL decode the JPEG ``img`` (opened, not yet loaded) at 1/2, 1/4 or 1/8 scale where
    its shortest side stays at least ``DRAFT_MARGIN * min_side``: the DCT is scaled while
    decoding, several times faster than decoding every pixel and resizing them. Other formats,
    and JPEGs too small to gain, are left as they are."""
    if img.format not in ("JPEG", "MPO"):  # MPO: the JPEG (with a preview) many cameras write
        return
    width, height = img.size
    target = DRAFT_MARGIN * min_side
    if min(width, height) < 2 * target:
        return
    scale = target / min(width, height)
    img.draft(None, (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale))))


def open_image(data: bytes, index: int, source: str = "bytes") -> Image.Image:
    """Encoded image bytes -> a PIL image opened lazily (use it as a context manager): only its
    header is read, and only by the reader of one of :data:`IMAGE_FORMATS`; no other PIL plugin
    sees the bytes. ``source`` is how messages name the bytes (``'a.jpg'``, ``data URI``, ...).

    Raises:
        InputError: no data; a format not in :data:`IMAGE_FORMATS` (named when its first bytes
            tell it); HEIC/HEIF without pillow-heif; a header PIL cannot read; a decompression bomb.
    """
    if not data:
        raise _bad(index, f"no image data in {source}")
    require_heif_support(data, index, source)
    Image.init()  # all plugins registered, so the list below names each listed format this PIL reads, and no other
    with _pil_errors(index, source):
        try:
            return Image.open(io.BytesIO(data), formats=[name for name in IMAGE_FORMATS if name in Image.OPEN])
        except Image.UnidentifiedImageError:
            raise _bad(index, _unidentified(data, source)) from None


def _unidentified(data: bytes, source: str) -> str:
    """Why no format of :data:`IMAGE_FORMATS` opened ``data``, as far as its first 16 bytes tell
    through each PIL plugin's own magic-number check (no plugin parses the bytes here)."""
    detected = []
    for name, (_, accept) in list(Image.OPEN.items()):  # a copy: pillow-heif may register meanwhile
        with contextlib.suppress(Exception):  # a check may fail on odd bytes: it then detects nothing
            if accept is not None and (verdict := accept(data[:16])):
                detected.append((name, verdict))
    accepted = ", ".join(IMAGE_FORMATS)
    for name, verdict in detected:
        if name in IMAGE_FORMATS:  # damaged, or a reader that is not built in (PIL says which)
            return f"cannot decode image ({source}): {verdict if isinstance(verdict, str) else f'damaged {name} image'}"
    if detected:
        return f"image format {detected[0][0]} is not accepted ({source}); accepted formats: {accepted}"
    return f"cannot decode image ({source}): not an image in an accepted format ({accepted})"


@contextlib.contextmanager
def _pil_errors(index: int, source: str) -> Iterator[None]:
    """PIL's errors while opening or decoding ``source`` -> an :class:`InputError` for the item."""
    try:
        yield
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bad(index, f"decompression bomb refused ({source}): {exc}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
        raise _bad(index, f"cannot decode image ({source}): {exc}") from None


def check_pixels(width: int, height: int, index: int, max_pixels: int | None, what: str = "image has") -> None:
    """An :class:`InputError` if ``width * height`` is over ``max_pixels`` (None: no limit);
    ``what`` begins the reason (``"image has 9000x9000 = ... pixels, more than ..."``)."""
    if max_pixels is not None and width * height > max_pixels:
        raise _bad(index, f"{what} {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}")


def _decode(img: Image.Image, index: int, max_pixels: int | None) -> Image.Image:
    """Check the size (from the header, before decoding), decode the current frame, turn it
    upright as its EXIF orientation says, convert to RGB. ``img`` itself is left as it was."""
    width, height = img.size
    if width == 0 or height == 0:
        raise _bad(index, f"image is empty ({width}x{height})")
    check_pixels(width, height, index, max_pixels)
    img.load()
    if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:  # exif_transpose copies even when upright
        img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """A decoded image of any mode as RGB, as ``img.convert("RGB")`` gives it (the reference's
    conversion, so RGB, RGBA, L, P and CMYK images keep the reference's pixels), except:

    * 16-bit grayscale (``I;16*``, and ``I``: levels clipped to 0..65535) is scaled to 0..255
      (``round(v / 257)``); PIL would clip every level above 255 to white;
    * a palette image with transparency goes through RGBA, which gives the same pixels as
      ``convert("RGB")`` without PIL's warning about bytes transparency.

    Alpha is dropped, never composited onto a background (as the reference does): transparent
    pixels keep whatever color they store. Float images (``F``) are clipped to 0..255 and
    truncated, as PIL does, so 0..1 floats come out black.
    """
    if img.mode in _INT_GRAY_MODES:
        levels = np.clip(np.asarray(img), 0, 65535).astype(np.uint32)
        img = Image.fromarray(((levels * 255 + 32767) // 65535).astype(np.uint8))
    elif img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return img.convert("RGB")


def _is_heif(data: bytes) -> bool:
    """Whether ``data`` starts like a HEIC/HEIF file: an ISO-BMFF ``ftyp`` box with a HEIF major
    brand, and no AVIF brand among its compatible ones (an AVIF may have the generic ``mif1``)."""
    if data[4:8] != b"ftyp" or data[8:12] not in _HEIF_BRANDS:
        return False
    box = data[16 : int.from_bytes(data[:4], "big")]  # the compatible brands, 4 bytes each
    return not {box[i : i + 4] for i in range(0, len(box) - 3, 4)} & {b"avif", b"avis"}


@functools.cache
def _heif_opener() -> bool:
    """Register pillow-heif's opener with PIL, once, when the first HEIF image comes (so that
    importing this package never imports pillow-heif); False if it is not installed.
    Registering twice from racing threads is harmless, so the cache needs no lock."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def require_heif_support(data: bytes, index: int, source: str = "image") -> None:
    """If ``data`` is a HEIC/HEIF image, make PIL able to open it (pillow-heif's opener), or
    raise an :class:`InputError` saying what to install. Call it before ``Image.open`` on bytes
    that may be HEIC (the server's header check does)."""
    if _is_heif(data) and not _heif_opener():
        raise _bad(index, f'{source} is a HEIC/HEIF image: pip install "jinaclip-integrations[heif]" to read it')
