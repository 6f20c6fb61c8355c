"""What every reader shares: the document types, the text helpers, and the lazy import of a library.

Kept apart from the package's ``__init__`` so that the format modules can import it while
``__init__`` imports them: imports run one way, ``__init__`` -> format modules -> this module.
"""

from __future__ import annotations

import codecs
import importlib
from dataclasses import dataclass
from typing import Any

from ...errors import DocumentError

#: format -> (import name, pip extra of this package) for the formats that need a library
EXTRAS: dict[str, tuple[str, str]] = {"pdf": ("pypdfium2", "pdf"), "docx": ("docx", "docx")}


@dataclass(frozen=True)
class TextSection:
    """A run of extracted text: a whole document, or one page of a PDF.

    Attributes:
        text: the text, line ends normalized to ``\\n``.
        page: the 1-based page of a paged format (PDF), else None.
        markdown: True when lines starting with ``#`` to ``######`` and a space are headings (markdown
            files, and HTML and docx, whose readers render their headings that way).
    """

    text: str
    page: int | None = None
    markdown: bool = False


@dataclass(frozen=True)
class ImagePart:
    """An image of a document: encoded bytes (PNG, JPEG, ...) that PIL can open.

    Attributes:
        data: the encoded image.
        page: the 1-based page it appears on (PDF), else None.
        index: its 0-based position among the document's kept images.
    """

    data: bytes
    page: int | None = None
    index: int = 0


@dataclass(frozen=True)
class Document:
    """What one file holds: its format, text sections, images, title, and what was left out (``warnings``)."""

    format: str
    sections: tuple[TextSection, ...] = ()
    images: tuple[ImagePart, ...] = ()
    title: str | None = None
    warnings: tuple[str, ...] = ()


def normalize(text: str) -> str:
    """``text`` with its line ends normalized: ``\\r\\n`` and a lone ``\\r`` become ``\\n``."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def sections(text: str, *, markdown: bool = False) -> tuple[TextSection, ...]:
    """``text`` as the one section of a document, or no section if it is blank."""
    return (TextSection(text, markdown=markdown),) if text.strip() else ()


def decode_utf8(data: bytes, failure: str) -> str:
    """``data`` decoded as UTF-8 (a leading BOM dropped).

    Raises:
        DocumentError: ``data`` is not UTF-8; the message is ``failure`` and the offending byte's offset
            in ``data`` (BOM included).
    """
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        raise DocumentError(f"{failure} (byte {start + err.start})") from err


def library(fmt: str) -> Any:
    """The library that reading format ``fmt`` needs (a key of :data:`EXTRAS`), imported now.

    Raises:
        ImportError: it is not installed; the message says which extra of this package to install.
    """
    module, extra = EXTRAS[fmt]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = "python-docx" if module == "docx" else module
        raise ImportError(
            f'reading {fmt.upper()} files needs {package}: pip install "jinaclip-integrations[{extra}]"'
        ) from err
