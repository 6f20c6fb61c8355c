"""Word .docx files (python-docx): the body as markdown, and the pictures it shows.

python-docx is an optional extra, imported when the first .docx file is read. (This module's name
does not hide the library: imports are absolute, so ``docx`` is always python-docx.)
"""

from __future__ import annotations

import io
import re
from typing import Any

from ...errors import DocumentError
from .common import Document, library, sections
from .images import MIN_IMAGE_SIDE, ImageCollection, pil_size

_HEADING_STYLE = re.compile(r"Heading (\d+)")


def read_docx(data: bytes, max_images: int) -> Document:
    """Paragraphs and tables in body order as markdown (Title/Heading N -> ``#`` headings, List styles
    -> ``- `` items, table rows -> ``a | b``), and the pictures the body shows."""
    docx = library("docx")
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(data))
        blocks: list[str] = []
        first_heading = None
        for item in document.iter_inner_content():
            if isinstance(item, Table):
                rows = [_docx_row(row) for row in item.rows]
                blocks.append("\n".join(row for row in rows if row.strip(" |")))
                continue
            style = (item.style.name if item.style is not None else None) or ""
            lines = [" ".join(line.split()) for line in item.text.split("\n")]
            heading = _HEADING_STYLE.fullmatch(style)
            if style == "Title" or heading:
                level = 1 if style == "Title" else min(max(int(heading[1]), 1), 6)
                text = " ".join(filter(None, lines))
                first_heading = first_heading or (text if level == 1 else None)
                blocks.append(f"{'#' * level} {text}" if text else "")
            elif style.startswith("List"):
                blocks.append("- " + " ".join(filter(None, lines)) if any(lines) else "")
            else:
                blocks.append("\n".join(lines).strip())
        title = (document.core_properties.title or "").strip() or first_heading
        warnings: list[str] = []
        images = _docx_images(document, max_images, warnings)
    except Exception as err:  # zipfile, lxml, KeyError, python-docx's own: all mean a broken file
        raise DocumentError(f"not a valid .docx file: {err}") from err
    text = "\n\n".join(block for block in blocks if block)
    return Document(
        "docx", sections(text, markdown=True), tuple(images.parts), title, tuple(warnings + images.warnings())
    )


def _docx_row(row: Any) -> str:
    cells, previous = [], None
    for cell in row.cells:
        if cell is not previous:  # a cell spanning columns comes once per column
            cells.append(" ".join(cell.text.split()))
        previous = cell
    return " | ".join(cells)


def _docx_images(document: Any, max_images: int, warnings: list[str]) -> ImageCollection:
    """The embedded pictures the body shows, in document order (linked pictures are not in the file)."""
    images = ImageCollection(max_images)
    related = document.part.related_parts
    for position, rid in enumerate(dict.fromkeys(document.element.body.xpath(".//a:blip/@r:embed")), 1):
        part = related.get(rid)
        if part is None or not part.content_type.startswith("image/"):
            continue
        size = pil_size(part.blob)
        if size is None:
            warnings.append(f"image {position}: unsupported image type ({part.content_type})")
        elif min(size) >= MIN_IMAGE_SIDE:
            if images.full:
                images.left_out += 1
            else:
                images.add(part.blob)
    return images
