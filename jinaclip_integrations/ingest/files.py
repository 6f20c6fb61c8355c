"""One file -> the points it becomes: its text chunks and its images, with IDs and payloads.

A file's points all belong to one *version*: the SHA-256 of its bytes and the chunking that cut
its texts. A point's ID is derived from its source path, that version and its place in the file
(``chunk N`` or ``image N``), so:

* indexing an unchanged file again makes the same IDs (nothing is written twice, and a run that
  was killed half-way skips what it stored);
* an edited file, or the same file cut differently, makes new IDs, and its old points are
  removed once the new ones are stored;
* the same bytes at two paths are two sets of points, one per path (each found under its path).

Every point of a file version records in its payload how many points the version has
(``parts``), so the store alone tells whether a version was stored completely, and the file's
size and modification time, so an unchanged file is recognised without reading it.

Payload of a file's point: ``modality``, ``source`` (the absolute path), ``format``, and
``text`` (the chunk), ``chunk`` (0-based), ``span`` (``[start, end)`` characters of the chunk in
the extracted text of its document, or of its page), ``heading`` (markdown heading trail),
``page`` (1-based, PDF), ``image`` (0-based, for images inside documents), ``title``, plus the
bookkeeping fields ``file_hash``, ``chunking``, ``parts``, ``size``, ``mtime_ns`` and
``content_hash``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import DocumentError, InputError
from .chunking import ChunkOptions, chunk_text
from .items import ID_NAMESPACE, MAX_FILE_BYTES, Item, content_hash, read_limited
from .readers import Document, format_of, read_document

#: the payload fields that identify a file's version and tell whether it is stored whole
VERSION_FIELDS = ("source", "file_hash", "chunking", "parts", "size", "mtime_ns", "content_hash", "modality")


@dataclass(frozen=True)
class FileVersion:
    """The state of a file that its points were made from."""

    source: str
    file_hash: str
    chunking: str
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, str]:
        """What two versions of one source differ by."""
        return self.file_hash, self.chunking


def chunking_label(fmt: str, options: ChunkOptions) -> str:
    """How a file of this format is cut, as recorded with its points (images are not cut)."""
    return "" if fmt == "image" else f"{options.max_tokens}/{options.overlap}"


def max_bytes(fmt: str) -> int:
    """The most bytes read from a file of this format."""
    return MAX_FILE_BYTES.get(fmt, MAX_FILE_BYTES["text"])


def read_source(read: Any, source: str, index: int) -> bytes:
    """A file's bytes from ``read(n)``, capped for its format (an ``InputError`` naming it)."""
    return read_limited(read, source, max_bytes(format_of(source) or "text"), index)


def file_items(
    source: str,
    data: bytes,
    *,
    offsets: Any,
    options: ChunkOptions,
    size: int,
    mtime_ns: int,
    index: int = 0,
) -> tuple[FileVersion, list[Item], list[str]]:
    """The items of one file: ``(version, items, warnings)``.

    ``offsets`` is the engine's ``token_offsets`` (how the chunker counts tokens), ``size`` and
    ``mtime_ns`` the file's stat when it was read. ``warnings`` name parts of the document that
    could not be read (an image pdfium could not render), for the caller to report.

    Raises:
        InputError: the file cannot be read as its format (naming it, with ``index``).
        ImportError: the format needs an extra that is not installed (the message says which).
    """
    fmt = format_of(source)
    if fmt is None:
        raise InputError(index, f"{source} is not a supported file type", kind="file")
    try:
        document = read_document(data, fmt)
    except DocumentError as exc:
        raise InputError(index, f"{source}: {exc}", kind="file") from None
    version = FileVersion(source, hashlib.sha256(data).hexdigest(), chunking_label(fmt, options), size, mtime_ns)
    parts = _parts(document, offsets, options)
    common = {"source": source, "format": fmt, "file_hash": version.file_hash, "chunking": version.chunking,
              "parts": len(parts), "size": size, "mtime_ns": mtime_ns}  # fmt: skip
    if document.title:
        common["title"] = document.title
    items = []
    for key, modality, content, fields in parts:
        raw = content.encode("utf-8") if modality == "text" else content
        payload = {**fields, **common, "modality": modality, "content_hash": content_hash(modality, raw)}
        items.append(Item(point_id(version, key), modality, content, payload, index))
    return version, items, [f"{source}: {warning}" for warning in document.warnings]


def point_id(version: FileVersion, key: str) -> str:
    """The ID of the point ``key`` (``chunk N``, ``image N``) of a file version."""
    return str(uuid.uuid5(ID_NAMESPACE, "\0".join(("file", version.source, *version.key, key))))


def _parts(document: Document, offsets: Any, options: ChunkOptions) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """``(key, modality, content to embed, payload fields)`` of each point of a document."""
    parts: list[tuple[str, str, Any, dict[str, Any]]] = []
    for section in document.sections:
        for chunk in chunk_text(section.text, offsets, options, markdown=section.markdown):
            fields = {"text": chunk.text, "chunk": len(parts), "span": [chunk.start, chunk.end]}
            if chunk.heading:
                fields["heading"] = chunk.heading
            if section.page is not None:
                fields["page"] = section.page
            parts.append((f"chunk {len(parts)}", "text", chunk.embed_text, fields))
    for image in document.images:
        fields = {} if document.format == "image" else {"image": image.index}
        if image.page is not None:
            fields["page"] = image.page
        parts.append((f"image {image.index}", "image", image.data, fields))
    return parts


def stat_file(path: str | os.PathLike) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns
