"""What every vector-database integration ingests the same way: items, their IDs, and files.

An item is one text or one image with its payload. Its ID is derived from its content (a UUID5
of the modality and the SHA-256 of the bytes), so ingesting the same thing twice writes the same
point, an interrupted run can skip what is stored, and nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TypeVar

from .errors import InputError

Modality = Literal["text", "image"]
T = TypeVar("T")

#: files ingested as images and as texts; anything else found in a folder is listed as ignored
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif", ".heic", ".heif"}
)
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})

#: Most bytes read from one file: an image as much as the engine decodes; a text far more than
#: the model reads (its first ``max_length`` tokens), but the whole text is stored as payload,
#: and a vector database takes a request of some MiB, not of gigabytes.
MAX_FILE_BYTES: dict[str, int] = {"image": 256 * 1024 * 1024, "text": 8 * 1024 * 1024}

#: fixed namespace of the content-derived point IDs (changing it would re-key every store)
ID_NAMESPACE = uuid.UUID("6f1c3a52-2f4e-5b8e-9a39-8f0d3c1b7e21")

#: how the skip-or-fail choice for unreadable items is spelled
OnError = Literal["raise", "skip"]


def content_id(modality: Modality, content: bytes | str) -> str:
    """The point ID of an item: the same content and modality always give the same UUID."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    return str(uuid.uuid5(ID_NAMESPACE, f"{modality}:{hashlib.sha256(data).hexdigest()}"))


@dataclass
class Item:
    """One text or image to store: ``content`` is the text or the image (anything the engine
    reads), ``payload`` what is stored beside the vectors, ``index`` its position in the input."""

    id: str
    modality: Modality
    content: Any
    payload: dict[str, Any]
    index: int = 0

    @property
    def where(self) -> str:
        """How errors name the item: its source, else its modality and input index."""
        return str(self.payload.get("source") or f"{self.modality} {self.index}")


@dataclass
class SearchHit:
    """One search result: the point's ID, its similarity score (cosine, higher is closer), and
    what was stored with it."""

    id: str
    score: float
    modality: Modality | None
    source: str | None
    text: str | None
    payload: dict[str, Any]

    @classmethod
    def from_payload(cls, id: Any, score: float, payload: dict[str, Any] | None) -> SearchHit:
        """A hit from a stored payload as the integrations write it."""
        payload = dict(payload or {})
        return cls(str(id), float(score), payload.get("modality"), payload.get("source"), payload.get("text"), payload)


@dataclass
class Failure:
    """An item that could not be ingested: where it came from and why."""

    source: str
    reason: str

    def to_json(self) -> str:
        """The failure as one line of a report file: ``{"path": ..., "reason": ...}``."""
        return json.dumps({"path": self.source, "reason": self.reason}, ensure_ascii=False)


@dataclass
class IngestReport:
    """What an ingest did. ``added + existing + len(failed)`` is the number of items given;
    ``ignored`` lists files in the given folders that are neither images nor texts."""

    added: int = 0
    existing: int = 0
    failed: list[Failure] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def check_on_error(on_error: str) -> OnError:
    """Validate an ``on_error`` argument."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    return on_error  # type: ignore[return-value]


def _payload(modality: Modality, source: str | None, text: str | None, metadata: dict | None) -> dict[str, Any]:
    payload: dict[str, Any] = dict(metadata or {})
    payload.update(modality=modality, source=source)
    if text is not None:
        payload["text"] = text
    return payload


def text_items(texts: Sequence[str], metadatas: Sequence[dict] | None = None) -> list[Item]:
    """Items for texts given in memory; their payload holds the text, ``source`` is None unless
    the metadata gives one. A non-string, a text that is not valid Unicode (a lone surrogate)
    or metadata that is not JSON is an ``InputError`` naming the item."""
    metadatas = _check_metadatas(metadatas, len(texts))
    items = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(i, f"expected a string, got {type(text).__name__}", kind="text")
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(i, f"not valid Unicode (lone surrogate at character {exc.start})", kind="text") from None
        meta = _metadata(metadatas[i], i, "text")
        source = meta.pop("source", None)
        items.append(Item(content_id("text", data), "text", text, _payload("text", source, text, meta), i))
    return items


def iter_image_items(
    images: Sequence[Any], metadatas: Sequence[dict] | None, report: IngestReport, on_error: OnError
) -> Iterator[Item]:
    """Items for images given in memory, one at a time. An image's ID is the hash of its encoded
    bytes: a file's bytes (paths and ``file://`` URIs), the decoded bytes of base64 strings and
    ``data:`` URIs, raw bytes as they are, so the same file given either way is one point. URLs
    are hashed by the URL (they are fetched once, when embedded); PIL images and arrays by their
    mode, size and pixels. An item that cannot be read is an ``InputError`` naming it, or with
    ``on_error="skip"`` goes to ``report.failed``."""
    metadatas = _check_metadatas(metadatas, len(images))
    for i, image in enumerate(images):
        try:
            meta = _metadata(metadatas[i], i, "image")
            source = meta.pop("source", None)
            content, key, default_source = _image_key(image, i)
            yield Item(content_id("image", key), "image", content, _payload("image", source or default_source, None, meta), i)  # fmt: skip
        except InputError as exc:
            if on_error == "raise":
                raise
            report.failed.append(Failure(str(image) if isinstance(image, (str, os.PathLike)) and len(str(image)) < 300 else f"image {i}", exc.reason))  # fmt: skip


def _image_key(image: Any, index: int) -> tuple[Any, bytes, str | None]:
    """``(content for the engine, bytes to hash, default source)`` of one in-memory image."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image), bytes(image), None
    if isinstance(image, str) and image.startswith(("http://", "https://")):
        return image, b"url:" + image.encode("utf-8"), image
    if isinstance(image, str) and (image.startswith("data:") or len(image) > 4096):
        data = _base64_bytes(image, index)
        return data, data, None
    if isinstance(image, (str, os.PathLike)):
        path = Path(str(image)[7:] if str(image).startswith("file://") else image).expanduser()
        try:
            is_file = path.is_file()
        except (OSError, ValueError):  # a long base64 string is not a path
            is_file = False
        if is_file:
            data = _read_bytes(path, index, "image")
            return data, data, str(path)
        if isinstance(image, str):
            data = _base64_bytes(image, index)
            return data, data, None
        raise InputError(index, f"file not found: {str(path)!r}", kind="image")
    if hasattr(image, "mode") and callable(getattr(image, "tobytes", None)):  # a PIL image
        palette = (image.getpalette() or []) if hasattr(image, "getpalette") else []
        head = f"pil:{image.mode}:{image.size}:{bytes(palette).hex()}:".encode()
        return image, head + image.tobytes(), None
    if hasattr(image, "dtype") and callable(getattr(image, "tobytes", None)):  # a numpy array
        return image, f"array:{image.dtype}:{image.shape}:".encode() + image.tobytes(), None
    if callable(getattr(image, "read", None)):  # a binary file object
        data = image.read()
        if isinstance(data, bytes):
            return data, data, None
    raise InputError(index, f"unsupported image type {type(image).__name__}; expected a path, bytes, "
                     "base64 string, data URI, URL, PIL image, uint8 array or binary file object", kind="image")  # fmt: skip


def _base64_bytes(text: str, index: int) -> bytes:
    """The bytes of a data URI or a base64 string, decoded as the engine decodes them (so an
    image has one ID whichever way it is spelled)."""
    from .engine.images import data_uri_bytes, decode_base64, looks_like_base64  # lazy: keeps torch out

    if text.startswith("data:"):
        return data_uri_bytes(text, index)
    if looks_like_base64(text):
        return decode_base64(text, index, "string")
    shown = text if len(text) <= 80 else text[:77] + "..."
    raise InputError(index, f"{shown!r} is not an existing file, a URL or valid base64", kind="image")


def _metadata(metadata: dict | None, index: int, kind: str) -> dict[str, Any]:
    """A copy of one item's metadata, checked to be JSON (what every store can keep)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InputError(index, f"metadata must be a dict, not {type(metadata).__name__}", kind=kind)
    try:
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(index, f"metadata is not JSON-serializable: {exc}", kind=kind) from None
    return dict(metadata)


def _check_metadatas(metadatas: Sequence[dict] | None, n: int) -> Sequence[dict | None]:
    if metadatas is None:
        return [None] * n
    if len(metadatas) != n:
        raise ValueError(f"got {len(metadatas)} metadatas for {n} items")
    return metadatas


def read_limited(read: Callable[[int], bytes], source: str, modality: Modality, index: int) -> bytes:
    """``read(n)`` of a file's bytes, refused (an ``InputError`` naming ``source``) beyond
    :data:`MAX_FILE_BYTES` for its modality, so one huge file fails alone instead of exhausting
    a worker's memory."""
    limit = MAX_FILE_BYTES[modality]
    data = read(limit + 1)
    if len(data) > limit:
        raise InputError(index, f"{source} is larger than {limit} bytes, the most read from a {modality} file", kind="file")  # fmt: skip
    return data


def _read_bytes(path: Path, index: int, modality: Modality) -> bytes:
    try:
        with open(path, "rb") as f:
            return read_limited(f.read, str(path), modality, index)
    except OSError as exc:
        raise InputError(index, f"cannot read {path}: {exc.strerror or exc}", kind="file") from None


def discover_files(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> tuple[list[Path], list[str]]:
    """Expand files and folders (recursively, sorted) into the image and text files to ingest.

    Returns ``(files, ignored)``: ``ignored`` names the files found in folders that are neither
    images nor texts. A path that does not exist, or a file named explicitly with another
    suffix, is an ``InputError`` naming it.
    """
    if isinstance(paths, (str, os.PathLike)):  # one path, not the characters of one
        paths = [paths]
    files: list[Path] = []
    ignored: list[str] = []
    for i, raw in enumerate(paths):
        path = Path(raw).expanduser()
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                (files if modality_of(found) else ignored).append(found)
            continue
        if not path.exists():
            raise InputError(i, f"{path} does not exist", kind="path")
        if modality_of(path) is None:
            raise InputError(i, f"{path} is neither an image ({', '.join(sorted(IMAGE_SUFFIXES))}) "
                             f"nor a text file ({', '.join(sorted(TEXT_SUFFIXES))})", kind="path")  # fmt: skip
        files.append(path)
    unique: dict[Path, Path] = {}  # resolved path -> the first mention of it
    for found in files:
        unique.setdefault(found.resolve(), found)
    return list(unique.values()), [str(p) for p in ignored]


def modality_of(path: Path) -> Modality | None:
    """``"image"`` or ``"text"`` from a file's suffix, or None for other files."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return None


def file_item(path: Path, index: int) -> Item:
    """Read one file into an item; an unreadable file or a text file that is not UTF-8 is an
    ``InputError`` naming it. Image bytes are decoded later, by the engine."""
    modality = modality_of(path) or "image"
    return content_item(str(path), _read_bytes(path, index, modality), modality, index)


def content_item(source: str, data: bytes, modality: Modality, index: int) -> Item:
    """The item of a file's bytes read from ``source`` (a path or URI, kept in the payload): a
    text must be UTF-8 (else an ``InputError`` naming the source); image bytes are kept as they
    are. Every reader of files (this process, Ray workers) makes its items here."""
    if modality == "text":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(index, f"{source} is not UTF-8 text (byte {exc.start})", kind="file") from None
        return Item(content_id("text", text), "text", text, _payload("text", source, text, None), index)
    return Item(content_id("image", data), "image", data, _payload("image", source, None, None), index)


def iter_file_items(files: Sequence[Path], report: IngestReport, on_error: OnError) -> Iterator[Item]:
    """Read files into items (``item.index`` is the file's position); with ``on_error="skip"``
    an unreadable one goes to ``report.failed``."""
    for i, path in enumerate(files):
        try:
            yield file_item(path, i)
        except InputError as exc:
            if on_error == "raise":
                raise
            report.failed.append(Failure(str(path), exc.reason))


def embed_items(
    engine: Any, items: Sequence[Item], *, on_error: OnError, report: IngestReport
) -> tuple[list[Item], Any]:
    """Embed a batch of texts and images (any mix) into full-size normalized vectors.

    Returns ``(kept, vectors)`` with one row per kept item. An item the engine rejects raises an
    ``InputError`` naming its input index and source, or, with ``on_error="skip"``, goes to
    ``report.failed`` and the rest of the batch is embedded without it.
    """
    import numpy as np

    kept = list(items)
    while True:
        texts = [i for i, item in enumerate(kept) if item.modality == "text"]
        images = [i for i, item in enumerate(kept) if item.modality == "image"]
        vectors = np.empty((len(kept), engine.embedding_dim), dtype=np.float32)
        try:
            for positions, encode in ((texts, engine.encode_text), (images, engine.encode_image)):
                if positions:
                    vectors[positions] = _embed_group(encode, [kept[i].content for i in positions], positions)
            return kept, vectors
        except InputError as exc:
            bad = kept[exc.index]
            if on_error == "raise":
                raise InputError(bad.index, f"{bad.where}: {exc.reason}", kind=bad.modality) from None
            report.failed.append(Failure(bad.where, exc.reason))
            del kept[exc.index]


def _embed_group(encode: Any, contents: list[Any], positions: list[int]) -> Any:
    try:
        return encode(contents, show_progress=False)
    except InputError as exc:  # re-index from the group to the batch
        raise InputError(positions[exc.index], exc.reason, kind=exc.kind) from None


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
