"""Images embedded in PDF and docx files: which are kept, and how they are encoded.

Both readers keep the same way: images smaller than :data:`MIN_IMAGE_SIDE` on either side are
left out, repeats are kept once, at most ``max_images`` are kept and the rest counted in a warning.
Embedded images are read in the engine's formats only (:data:`~jinaclip_integrations.engine.IMAGE_FORMATS`).
PIL is imported only when an image is looked at, never on import.
"""

from __future__ import annotations

import io
from typing import Any

from ...errors import InputError
from .common import ImagePart

#: embedded images (PDF, docx) smaller than this many pixels on either side are left out as
#: decorations (bullets, rules, icons)
MIN_IMAGE_SIDE = 32


class ImageCollection:
    """The kept images of one document: distinct, at most ``limit``, counting what is left out."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[ImagePart] = []
        self.left_out = 0
        self._seen: set[bytes] = set()

    @property
    def full(self) -> bool:
        """True once ``limit`` images are kept: a reader then counts further images in ``left_out``."""
        return len(self.parts) >= self.limit

    def add(self, data: bytes, page: int | None = None) -> None:
        """Keep the encoded image ``data`` (of 1-based ``page``) unless the same bytes are kept already."""
        if data not in self._seen:
            self._seen.add(data)
            self.parts.append(ImagePart(data, page, len(self.parts)))

    def warnings(self) -> list[str]:
        """The warning that tells how many images were left out beyond ``limit``, if any were."""
        if not self.left_out:
            return []
        return [f"{self.left_out} more images left out (max_images={self.limit}; duplicates not told apart)"]


def png_bytes(image: Any) -> bytes:
    """PIL image -> PNG bytes (pdfium's RGBX / premultiplied RGBa converted first)."""
    if image.mode in ("RGBX", "RGBa"):
        image = image.convert("RGB" if image.mode == "RGBX" else "RGBA")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pil_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the header, or None unless the image is in one of the formats the
    engine decodes (:data:`~jinaclip_integrations.engine.IMAGE_FORMATS`: no EMF/WMF, EPS, ...),
    read by that format's reader alone."""
    from ...engine import open_image

    try:
        with open_image(data, 0) as image:
            return image.size
    except InputError:
        return None
