"""PDF files (pypdfium2): one text section per page, and the images the pages draw.

pypdfium2 is an optional extra, imported when the first PDF is read. pdfium is not thread-safe,
so this module reads one PDF at a time per process.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from typing import Any

from ...errors import DocumentError
from .common import Document, TextSection, library, normalize
from .images import MIN_IMAGE_SIDE, ImageCollection, png_bytes

# pdfium is not thread-safe, not even for two documents: one PDF is read at a time per process
_PDFIUM_LOCK = threading.Lock()


def read_pdf(data: bytes, max_images: int) -> Document:
    """One section per page with text; every image object (also inside form XObjects), decoded with
    its own filters (not its mask or placement), as PNG (a plain RGB/gray JPEG passes as is)."""
    pdfium = library("pdf")
    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(bytes(data))
        except pdfium.PdfiumError as err:
            if err.err_code == pdfium.raw.FPDF_ERR_PASSWORD:
                raise DocumentError("encrypted PDF (needs a password)") from err
            raise DocumentError(f"damaged PDF: {err}") from err
        try:
            return _pdf_document(pdfium, pdf, max_images)
        finally:
            pdf.close()


def _pdf_document(pdfium: Any, pdf: Any, max_images: int) -> Document:
    sections: list[TextSection] = []
    images = ImageCollection(max_images)
    warnings: list[str] = []
    for number in range(1, len(pdf) + 1):
        try:
            page = pdf[number - 1]
        except pdfium.PdfiumError as err:
            warnings.append(f"page {number} could not be read: {err}")
            continue
        try:
            textpage = page.get_textpage()
            # pdfium joins a word hyphenated at a line's end, the hyphen turned into "\x02": drop it
            text = normalize(textpage.get_text_bounded()).replace("\x02", "")
            textpage.close()
            text = "\n".join(line.rstrip() for line in text.split("\n"))
            if text.strip():
                sections.append(TextSection(text, page=number))
            objects = page.get_objects(filter=[pdfium.raw.FPDF_PAGEOBJ_IMAGE])
            for position, image in enumerate(objects, 1):
                if min(image.get_px_size()) < MIN_IMAGE_SIDE:
                    continue
                if images.full:
                    images.left_out += 1
                    continue
                try:
                    images.add(_pdf_image(image), number)
                except Exception as err:  # one undecodable image must not lose the document
                    reason = re.sub(r" <[^>]*>", "", str(err))  # no object reprs (memory addresses)
                    warnings.append(f"page {number}: image {position} could not be rendered: {reason}")
        except pdfium.PdfiumError as err:
            warnings.append(f"page {number} could not be read in full: {err}")
        finally:
            page.close()
    return Document("pdf", tuple(sections), tuple(images.parts), warnings=tuple(warnings + images.warnings()))


def _pdf_image(image: Any) -> bytes:
    if image.get_filters(skip_simple=True) == ["DCTDecode"]:
        jpeg = bytes(image.get_data(decode_simple=True))
        from PIL import Image

        with contextlib.suppress(Exception), Image.open(io.BytesIO(jpeg), formats=["JPEG"]) as decoded:
            if decoded.format == "JPEG" and decoded.mode in ("RGB", "L"):
                return jpeg
    bitmap = image.get_bitmap(render=False)
    bitmap.warn_on_close = False  # safe: the PNG is made before the bitmap (whose memory PIL shares) is closed
    try:
        return png_bytes(bitmap.to_pil())
    finally:
        bitmap.close()
