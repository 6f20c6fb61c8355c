"""Reading documents: the bytes of one file -> its text sections and its embedded images.

The indexer hands each file's bytes here and chunks the texts and embeds the images of the
:class:`Document` it gets back. One small reader per format: plain text, markdown, HTML (Python's
own ``html.parser``), CSV/TSV (``csv``), PDF (pypdfium2) and Word .docx (python-docx). The two
libraries are optional extras (:data:`EXTRAS`) imported only when such a file is read, so that
importing this package stays cheap.

Line ends of every text are normalized (``\\r\\n`` and a lone ``\\r`` become ``\\n``): character
offsets into a section refer to the normalized text, not to the file's bytes.

A file that cannot be read as its format raises :class:`~jinaclip_integrations.errors.DocumentError`.
A smaller fault (one image that cannot be decoded, images beyond ``max_images``) leaves that part
out and says so in :attr:`Document.warnings`: nothing is dropped silently.

Modules: :mod:`.common` (document types, text helpers, lazy library import), :mod:`.markup`
(markdown, HTML), :mod:`.tables` (CSV/TSV), :mod:`.images` (images of PDF and docx files),
:mod:`.pdf` and :mod:`.docx`. This module holds the formats and dispatches by format.
"""

from __future__ import annotations

import os
from pathlib import PurePath

from .common import EXTRAS, Document, ImagePart, TextSection, decode_utf8, normalize, sections
from .docx import read_docx
from .images import MIN_IMAGE_SIDE
from .markup import decode_html, markdown_title, read_html
from .pdf import read_pdf
from .tables import csv_text

__all__ = [
    "EXTRAS",
    "FORMATS",
    "MIN_IMAGE_SIDE",
    "Document",
    "ImagePart",
    "TextSection",
    "format_of",
    "read_document",
]

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif")

#: lower-case file suffix -> format name (the ``fmt`` of :func:`read_document`)
FORMATS: dict[str, str] = {
    **dict.fromkeys(_IMAGE_SUFFIXES, "image"),
    **dict.fromkeys((".txt", ".text", ".rst", ".log"), "text"),
    **dict.fromkeys((".md", ".markdown"), "markdown"),
    **dict.fromkeys((".html", ".htm", ".xhtml"), "html"),
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "csv",
    ".tsv": "csv",
}


def format_of(path: str | os.PathLike | PurePath) -> str | None:
    """The format of a file by its suffix (case-insensitive), or None if it is not supported."""
    return FORMATS.get(PurePath(path).suffix.lower())


def read_document(data: bytes, fmt: str, *, max_images: int = 256) -> Document:
    """Read the bytes of one file as format ``fmt`` (a value of :data:`FORMATS`).

    An ``"image"`` file becomes one :class:`ImagePart` with the bytes as given. Of PDF and docx files,
    at most ``max_images`` distinct images of at least :data:`MIN_IMAGE_SIDE` pixels are kept; how
    many more there were is told in ``warnings``. Empty text-like files give no sections.

    Raises:
        DocumentError: the bytes cannot be read as ``fmt`` (the message gives the reason).
        ImportError: the library that ``fmt`` needs is not installed (the message says what to install).
        ValueError: ``fmt`` is not a known format.
    """
    if fmt == "image":
        return Document("image", images=(ImagePart(data),))
    if fmt == "pdf":
        return read_pdf(data, max_images)
    if fmt == "docx":
        return read_docx(data, max_images)
    if fmt == "html":
        return read_html(normalize(decode_html(data)))
    if fmt in ("text", "markdown", "csv"):
        text = normalize(decode_utf8(data, "not UTF-8 text"))
        if fmt == "csv":
            return Document("csv", sections(csv_text(text)))
        title = markdown_title(text) if fmt == "markdown" else None
        return Document(fmt, sections(text, markdown=fmt == "markdown"), title=title)
    raise ValueError(f"unknown document format {fmt!r}; known: {', '.join(sorted(set(FORMATS.values())))}")
