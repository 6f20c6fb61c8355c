"""Image inputs: anything a user may hold -> RGB PIL image -> normalized pixel tensor.

Accepted: a PIL image, a path (``str``, ``os.PathLike`` or a ``file://`` URI), raw bytes, a
binary file object, a base64 string, a ``data:`` URI, an http(s) URL, or an ``H x W x C`` (or
``H x W``) uint8 numpy array. Every failure raises
:class:`~jinaclip_integrations.errors.InputError` naming the item's index and the reason;
nothing from PIL, urllib or numpy escapes.

Preprocessing reproduces the reference's (torchvision ``Resize``/``CenterCrop``/``ToTensor``/
``Normalize`` on PIL images) with PIL and torch alone: shortest side resized to ``size`` with
PIL bicubic, center crop, scale to [0, 1], normalize with the CLIP mean/std.

Decoding, before that:

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

Limits: ``max_pixels`` bounds the decoded image (checked from the header, before decoding);
:data:`MAX_RESIZED_PIXELS` bounds the intermediate resized image, since the shortest-side
resize enlarges a 1 x N sliver to ``size * size * N`` pixels. PIL refuses images over twice
``PIL.Image.MAX_IMAGE_PIXELS`` (~179 megapixels) on its own, whatever ``max_pixels`` says.
"""

from __future__ import annotations

import base64
import binascii
import functools
import http.client
import io
import os
import re
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps

from ..errors import InputError
from .config import PreprocessConfig

#: Default limit on pixels per image (PIL's own warning threshold, ~89 megapixels).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: Most pixels of the resized image before the center crop: at 512 px, aspect ratios up to ~340:1.
MAX_RESIZED_PIXELS = 89_478_485
#: Most bytes read from one encoded image (file, file object or URL).
MAX_IMAGE_BYTES = 256 * 1024 * 1024
#: Seconds an image URL may take, connection and whole download.
URL_TIMEOUT_S = 10.0

_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}\s*")
_MIN_BASE64_CHARS = 32  # shorter strings are treated as (missing) paths, not as image data
#: PIL images and file objects belong to the caller and may appear several times in one call,
#: or in concurrent calls: lazy decoding and reading them is not thread-safe, so it takes turns.
_CALLER_OBJECTS = threading.Lock()
#: ISO-BMFF major brands of HEIC/HEIF files (AVIF's ``avif``/``avis`` are read by PIL itself)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis"})
#: integer grayscale modes holding 16-bit levels (``I`` is what older pillow and TIFF give them)
_INT_GRAY_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})


def _bad(index: int, reason: str) -> InputError:
    return InputError(index, reason, kind="image")


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


def _open_bytes(data: bytes, index: int, max_pixels: int | None, source: str) -> Image.Image:
    if not data:
        raise _bad(index, f"no image data in {source}")
    require_heif_support(data, index, source)
    try:
        with Image.open(io.BytesIO(data)) as img:
            return _decode(img, index, max_pixels)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise _bad(index, f"decompression bomb refused ({source}): {exc}") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
        raise _bad(index, f"cannot decode image ({source}): {exc}") from None


def _check_pixels(width: int, height: int, index: int, max_pixels: int | None, what: str = "image has") -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise _bad(index, f"{what} {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}")


def _decode(img: Image.Image, index: int, max_pixels: int | None) -> Image.Image:
    """Check the size (from the header, before decoding), decode the current frame, turn it
    upright as its EXIF orientation says, convert to RGB. ``img`` itself is left as it was."""
    width, height = img.size
    if width == 0 or height == 0:
        raise _bad(index, f"image is empty ({width}x{height})")
    _check_pixels(width, height, index, max_pixels)
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


def _from_path(path: str | os.PathLike, index: int, max_pixels: int | None) -> Image.Image:
    shown = repr(os.fspath(path))
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a directory; a FIFO or device would block or never end
            raise _bad(index, f"{shown} is not a regular file")
        if info.st_size > MAX_IMAGE_BYTES:
            raise _bad(index, f"{shown} is larger than {MAX_IMAGE_BYTES} bytes")
        with open(path, "rb") as f:
            data = f.read(MAX_IMAGE_BYTES + 1)
    except FileNotFoundError:
        raise _bad(index, f"file not found: {shown}") from None
    except (OSError, ValueError) as exc:  # permissions, a NUL in the name, ...
        raise _bad(index, f"cannot read {shown}: {getattr(exc, 'strerror', None) or exc}") from None
    return _open_bytes(data, index, max_pixels, shown)


def _from_string(item: str, index: int, max_pixels: int | None) -> Image.Image:
    if item.startswith("data:"):
        return _open_bytes(data_uri_bytes(item, index), index, max_pixels, "data URI")
    if item.startswith(("http://", "https://")):
        return _open_bytes(_fetch_url(item, index), index, max_pixels, item)
    if item.startswith("file://"):
        parsed = urllib.parse.urlsplit(item)
        if parsed.netloc not in ("", "localhost"):
            raise _bad(index, f"file URI on another host is not supported: {item!r}")
        return _from_path(urllib.request.url2pathname(parsed.path), index, max_pixels)
    if os.path.lexists(item):
        return _from_path(item, index, max_pixels)
    if looks_like_base64(item):
        return _open_bytes(decode_base64(item, index, "string"), index, max_pixels, "base64 string")
    shown = item if len(item) <= 200 else item[:200] + "..."
    raise _bad(index, f"file not found: {shown!r} (nor a URL, data URI or base64 image)")


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


def _from_file_object(item: Any, index: int, max_pixels: int | None) -> Image.Image:
    try:
        with _CALLER_OBJECTS:
            data = item.read(MAX_IMAGE_BYTES + 1)
    except Exception as exc:  # whatever the object's read() raises
        raise _bad(index, f"cannot read file object: {exc}") from None
    if not isinstance(data, (bytes, bytearray)):
        raise _bad(index, "file object must be opened in binary mode")
    if not data:
        raise _bad(index, "file object returned no data (was it already read?)")
    if len(data) > MAX_IMAGE_BYTES:
        raise _bad(index, f"file object holds more than {MAX_IMAGE_BYTES} bytes")
    return _open_bytes(bytes(data), index, max_pixels, "file object")


def load_image(item: Any, index: int, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Any accepted image input -> a decoded, upright RGB ``PIL.Image.Image`` (a new one).

    Raises:
        InputError: the item is of an unsupported type, missing, unreadable, corrupt,
            truncated, empty, or has more than ``max_pixels`` pixels.
    """
    if isinstance(item, Image.Image):
        try:
            with _CALLER_OBJECTS:
                return _decode(item, index, max_pixels)
        except InputError:
            raise
        except Exception as exc:
            raise _bad(index, f"cannot decode PIL image: {exc}") from None
    if isinstance(item, str):
        return _from_string(item, index, max_pixels)
    if isinstance(item, os.PathLike):
        return _from_path(item, index, max_pixels)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(item), index, max_pixels, "bytes")
    if isinstance(item, np.ndarray):
        return _from_array(item, index, max_pixels)
    if callable(getattr(item, "read", None)):
        return _from_file_object(item, index, max_pixels)
    raise _bad(
        index,
        f"unsupported image type {type(item).__name__}; expected a PIL image, path, bytes, "
        "file object, base64 string, data URI, URL or uint8 numpy array",
    )


class ImagePreprocessor:
    """RGB PIL image -> float32 tensor [3, size, size], as the reference's processor does."""

    _RESAMPLE = {"bicubic": "BICUBIC", "bilinear": "BILINEAR", "nearest": "NEAREST", "lanczos": "LANCZOS"}

    def __init__(self, cfg: PreprocessConfig) -> None:
        if cfg.interpolation not in self._RESAMPLE:
            raise ValueError(
                f"unsupported interpolation {cfg.interpolation!r}; expected one of {sorted(self._RESAMPLE)}"
            )
        self.size = cfg.size
        self._resample = getattr(Image.Resampling, self._RESAMPLE[cfg.interpolation])
        self._mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """Shortest side to ``size``, long side ``int(size * long / short)`` (torchvision's rule)."""
        s = self.size
        return (s, int(s * height / width)) if width <= height else (int(s * width / height), s)

    def resize_and_crop(self, img: Image.Image) -> Image.Image:
        """Resize to :meth:`resized_size`, then the centered ``size`` x ``size`` crop
        (offsets rounded as torchvision does)."""
        s = self.size
        new_w, new_h = self.resized_size(*img.size)
        if (new_w, new_h) != img.size:
            img = img.resize((new_w, new_h), self._resample)
        top = int(round((new_h - s) / 2.0))
        left = int(round((new_w - s) / 2.0))
        return img.crop((left, top, left + s, top + s))

    def normalize(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 crops ``(..., size, size, 3)`` -> float32 ``(..., 3, size, size)``, scaled to
        [0, 1] and normalized with the mean and std."""
        x = torch.as_tensor(crops).movedim(-1, -3).float().div(255)
        return (x - self._mean) / self._std

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.normalize(np.array(self.resize_and_crop(img), dtype=np.uint8))

    def crop(self, item: Any, index: int, max_pixels: int | None) -> np.ndarray:
        """Load any accepted input, resize and crop it: uint8 ``(size, size, 3)``, a quarter of
        the bytes of the normalized pixels (what a pipeline ships from its decoding workers to
        the model); every failure is an :class:`InputError`."""
        img = load_image(item, index, max_pixels)
        resized = self.resized_size(*img.size)
        _check_pixels(*resized, index, MAX_RESIZED_PIXELS, "image is too elongated: resizing it needs")
        return np.array(self.resize_and_crop(img), dtype=np.uint8)

    def prepare(self, item: Any, index: int, max_pixels: int | None) -> torch.Tensor:
        """Load any accepted input and preprocess it; every failure is an :class:`InputError`."""
        return self.normalize(self.crop(item, index, max_pixels))
