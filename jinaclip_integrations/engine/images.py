"""Image inputs: anything a user may hold -> RGB PIL image -> normalized pixel tensor.

Accepted: a PIL image, a path (``str`` or ``os.PathLike``), raw bytes, a binary file object, a
base64 string, a ``data:`` URI, an http(s) URL, or an ``H x W x C`` (or ``H x W``) uint8 numpy
array. Every failure raises :class:`~jinaclip_integrations.errors.InputError` naming the
item's index and the reason; nothing from PIL, urllib or numpy escapes.

Preprocessing reproduces the reference's (torchvision ``Resize``/``CenterCrop``/``ToTensor``/
``Normalize`` on PIL images) with PIL and torch alone: shortest side resized to ``size`` with
PIL bicubic, center crop, scale to [0, 1], normalize with the CLIP mean/std.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .config import PreprocessConfig

#: Default limit on decoded pixels per image (PIL's own warning threshold, ~89 megapixels):
#: larger images are refused before they are decoded (decompression bombs).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
#: Seconds to wait for an image URL, and the most bytes read from one.
URL_TIMEOUT_S = 10.0
URL_MAX_BYTES = 64 * 1024 * 1024

_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+={0,2}\s*")
_MIN_BASE64_CHARS = 32  # shorter strings are treated as (missing) paths, not as image data


def _pil():
    from PIL import Image

    return Image


def _open_bytes(data: bytes, index: int, max_pixels: int | None, source: str):
    Image = _pil()
    try:
        with Image.open(io.BytesIO(data)) as img:
            return _decode(img, index, max_pixels)
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(index, f"decompression bomb refused ({source}): {exc}", kind="image") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error, ...
        raise InputError(index, f"cannot decode image ({source}): {exc}", kind="image") from None


def _decode(img, index: int, max_pixels: int | None):
    """Check the pixel count (from the header, before decoding), decode, convert to RGB."""
    width, height = img.size
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(
            index,
            f"image has {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}",
            kind="image",
        )
    img.load()
    return img.convert("RGB")


def _decode_base64(text: str, index: int, what: str) -> bytes:
    cleaned = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(index, f"{what} is not valid base64: {exc}", kind="image") from None


def _fetch_url(url: str, index: int) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "jinaclip-integrations"})
    try:
        with urllib.request.urlopen(request, timeout=URL_TIMEOUT_S) as response:
            data = response.read(URL_MAX_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise InputError(index, f"HTTP {exc.code} fetching {url}", kind="image") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise InputError(index, f"cannot fetch {url}: {getattr(exc, 'reason', exc)}", kind="image") from None
    if len(data) > URL_MAX_BYTES:
        raise InputError(index, f"{url} is larger than {URL_MAX_BYTES} bytes", kind="image")
    return data


def _from_string(item: str, index: int, max_pixels: int | None):
    if item.startswith("data:"):
        header, sep, payload = item.partition(",")
        if not sep or not header.endswith(";base64"):
            raise InputError(index, "data URI is not of the form data:<type>;base64,<data>", kind="image")
        return _open_bytes(_decode_base64(payload, index, "data URI"), index, max_pixels, "data URI")
    if item.startswith(("http://", "https://")):
        return _open_bytes(_fetch_url(item, index), index, max_pixels, item)
    if os.path.isfile(item):
        return _from_path(item, index, max_pixels)
    if len(item) >= _MIN_BASE64_CHARS and _BASE64.fullmatch(item):
        return _open_bytes(_decode_base64(item, index, "string"), index, max_pixels, "base64 string")
    shown = item if len(item) <= 200 else item[:200] + "..."
    raise InputError(index, f"file not found: {shown!r} (nor a URL, data URI or base64 image)", kind="image")


def _from_path(path: str | os.PathLike, index: int, max_pixels: int | None):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(index, f"file not found: {os.fspath(path)!r}", kind="image") from None
    except OSError as exc:
        raise InputError(index, f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}", kind="image") from None
    return _open_bytes(data, index, max_pixels, repr(os.fspath(path)))


def _from_array(array: np.ndarray, index: int, max_pixels: int | None):
    if array.dtype != np.uint8:
        raise InputError(index, f"numpy image must be uint8, got {array.dtype}", kind="image")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InputError(index, f"numpy image must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}", kind="image")  # fmt: skip
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(index, f"numpy image is empty: shape {array.shape}", kind="image")
    return _decode(_pil().fromarray(np.ascontiguousarray(array)), index, max_pixels)


def load_image(item: Any, index: int, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS):
    """Any accepted image input -> a decoded RGB ``PIL.Image.Image``.

    Raises:
        InputError: the item is of an unsupported type, missing, unreadable, corrupt,
            truncated, or has more than ``max_pixels`` pixels.
    """
    Image = _pil()
    if isinstance(item, Image.Image):
        try:
            return _decode(item, index, max_pixels)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(index, f"cannot decode PIL image: {exc}", kind="image") from None
    if isinstance(item, str):
        return _from_string(item, index, max_pixels)
    if isinstance(item, os.PathLike):
        return _from_path(item, index, max_pixels)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return _open_bytes(bytes(item), index, max_pixels, "bytes")
    if isinstance(item, np.ndarray):
        return _from_array(item, index, max_pixels)
    if callable(getattr(item, "read", None)):
        try:
            data = item.read()
        except Exception as exc:
            raise InputError(index, f"cannot read file object: {exc}", kind="image") from None
        if not isinstance(data, (bytes, bytearray)):
            raise InputError(index, "file object must be opened in binary mode", kind="image")
        return _open_bytes(bytes(data), index, max_pixels, "file object")
    raise InputError(
        index,
        f"unsupported image type {type(item).__name__}; expected a PIL image, path, bytes, "
        "file object, base64 string, data URI, URL or uint8 numpy array",
        kind="image",
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
        self._resample = getattr(_pil().Resampling, self._RESAMPLE[cfg.interpolation])
        self._mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
        self._std = torch.tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)

    def resize_and_crop(self, img):
        """Shortest side to ``size`` (long side ``int(size * long / short)``), then the
        centered ``size`` x ``size`` crop (offsets rounded as torchvision does)."""
        s = self.size
        w, h = img.size
        if w <= h:
            new_w, new_h = s, int(s * h / w)
        else:
            new_w, new_h = int(s * w / h), s
        if (new_w, new_h) != (w, h):
            img = img.resize((new_w, new_h), self._resample)
        top = int(round((new_h - s) / 2.0))
        left = int(round((new_w - s) / 2.0))
        return img.crop((left, top, left + s, top + s))

    def __call__(self, img) -> torch.Tensor:
        pixels = torch.from_numpy(np.array(self.resize_and_crop(img), dtype=np.uint8))
        x = pixels.permute(2, 0, 1).float().div(255)
        return (x - self._mean) / self._std
