"""Items: one text or image to store, with its point ID and payload, and how a batch of them is
embedded.

An item given in memory (``add_texts``, ``add_images``) has an ID derived from its content (a
UUID5 of the modality and the SHA-256 of the bytes), so adding the same thing twice writes the
same point and nothing is duplicated. Items read from files get IDs of their file's version
(:mod:`.files`). Every payload carries ``content_hash``, the hash of what was embedded, so a
point with the same content elsewhere in the store lends its vector instead of being embedded
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..errors import InputError

if TYPE_CHECKING:
    from .walk import Skipped

Modality = Literal["text", "image"]
T = TypeVar("T")

#: Most bytes read from one file, by format: images and documents as much as the engine decodes;
#: texts far more than anyone writes by hand (a text of 32 MiB is about 16,000 chunks).
MAX_FILE_BYTES: dict[str, int] = {"image": 256 << 20, "pdf": 256 << 20, "docx": 256 << 20, "text": 32 << 20}

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
        """How errors name the item: its source (with the page and image of a document's
        image), else its modality and input index."""
        source = self.payload.get("source")
        if not source:
            return f"{self.modality} {self.index}"
        inside = [f"{key} {self.payload[key]}" for key in ("page", "image") if self.payload.get(key) is not None]
        return f"{source} ({', '.join(inside)})" if inside else str(source)


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
    """What an ingest did, in points (one per text chunk or image) and in files.

    ``added``: points written, of which ``reused`` got the vector of a stored point with the
    same content instead of being embedded; ``existing``: points that were stored already;
    ``removed``: points deleted (old versions of changed files, files gone from the folders);
    ``truncated``: texts longer than the model reads, cut (texts given in memory: chunks of files
    always fit); ``chunks``: text chunks read from files. ``files`` counts files by outcome
    (``new``, ``changed``, ``unchanged``, ``removed``, ``failed``). ``failed`` names each item or
    file that could not be stored, with the reason; ``ignored`` each file or folder met in the
    folders and not indexed, with the reason (a key of :data:`.walk.REASONS`).
    """

    added: int = 0
    existing: int = 0
    reused: int = 0
    removed: int = 0
    truncated: int = 0
    chunks: int = 0
    files: Counter = field(default_factory=Counter)
    failed: list[Failure] = field(default_factory=list)
    ignored: list[Skipped] = field(default_factory=list)


def check_on_error(on_error: str) -> OnError:
    """Validate an ``on_error`` argument."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    return on_error  # type: ignore[return-value]


def content_hash(modality: Modality, data: bytes) -> str:
    """The hash of what is embedded (a text's UTF-8 bytes, an image's encoded bytes): points with
    equal hashes have equal vectors."""
    return hashlib.sha256(modality.encode() + b":" + data).hexdigest()


def _payload(modality: Modality, source: str | None, text: str | None, metadata: dict | None, data: bytes) -> dict[str, Any]:  # fmt: skip
    payload: dict[str, Any] = dict(metadata or {})
    payload.update(modality=modality, source=source, content_hash=content_hash(modality, data))
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
        items.append(Item(content_id("text", data), "text", text, _payload("text", source, text, meta, data), i))
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
            payload = _payload("image", source or default_source, None, meta, key)
            yield Item(content_id("image", key), "image", content, payload, i)
        except InputError as exc:
            if on_error == "raise":
                raise
            report.failed.append(Failure(str(image) if isinstance(image, (str, os.PathLike)) and len(str(image)) < 300 else f"image {i}", exc.reason))  # fmt: skip


def _image_key(image: Any, index: int) -> tuple[Any, bytes, str | None]:
    """``(content for the engine, bytes to hash, default source)`` of one in-memory image, told
    apart by the engine's own :func:`~jinaclip_integrations.engine.resolve_image`: the ID and the
    vector come from one reading of the input (:func:`iter_image_items` says what is hashed)."""
    from ..engine import ImageNotFound, resolve_image  # lazy: PIL and numpy load with the first image

    try:
        source = resolve_image(image, index, max_bytes=MAX_FILE_BYTES["image"])
    except ImageNotFound:
        shown = image if len(image) <= 80 else image[:77] + "..."
        raise InputError(index, f"{shown!r} is not an existing file, a URL or valid base64", kind="image") from None
    if source.kind == "bytes":
        return source.data, source.data, source.path
    if source.kind == "url":
        return source.value, b"url:" + source.value.encode("utf-8"), source.value
    if source.kind == "pil":
        pil = source.value
        head = f"pil:{pil.mode}:{pil.size}:{bytes(pil.getpalette() or []).hex()}:".encode()
        return pil, head + pil.tobytes(), None
    array = source.value
    return array, f"array:{array.dtype}:{array.shape}:".encode() + array.tobytes(), None


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


def read_limited(read: Callable[[int], bytes], source: str, limit: int, index: int) -> bytes:
    """``read(n)`` of a file's bytes, refused (an ``InputError`` naming ``source``) beyond
    ``limit`` bytes, so one huge file fails alone instead of exhausting a worker's memory."""
    data = read(limit + 1)
    if len(data) > limit:
        raise InputError(index, f"{source} is larger than {limit} bytes, the most read from such a file", kind="file")  # fmt: skip
    return data


def embed_items(
    engine: Any, items: Sequence[Item], *, on_error: OnError, report: IngestReport, max_length: int | None = None
) -> tuple[list[Item], Any]:
    """Embed a batch of texts and images (any mix) into full-size normalized vectors.

    Returns ``(kept, vectors)`` with one row per kept item. An item the engine rejects raises an
    ``InputError`` naming its input index and source, or, with ``on_error="skip"``, goes to
    ``report.failed`` and the rest of the batch is embedded without it. Texts are read up to
    ``max_length`` tokens (default: the engine's); longer ones are cut and counted in
    ``report.truncated``.
    """
    import numpy as np

    kept = list(items)
    while True:
        texts = [i for i, item in enumerate(kept) if item.modality == "text"]
        images = [i for i, item in enumerate(kept) if item.modality == "image"]
        vectors = np.empty((len(kept), engine.embedding_dim), dtype=np.float32)
        cut: list[int] = []
        encoders = ((texts, partial(engine.encode_text, max_length=max_length, on_truncated=cut.extend)),
                    (images, engine.encode_image))  # fmt: skip
        try:
            for positions, encode in encoders:
                if positions:
                    vectors[positions] = _embed_group(encode, [kept[i].content for i in positions], positions)
        except InputError as exc:
            bad = kept[exc.index]
            if on_error == "raise":
                raise InputError(bad.index, f"{bad.where}: {exc.reason}", kind=bad.modality) from None
            report.failed.append(Failure(bad.where, exc.reason))
            del kept[exc.index]
            continue
        report.truncated += len(cut)
        return kept, vectors


def _embed_group(encode: Any, contents: list[Any], positions: list[int]) -> Any:
    try:
        return encode(contents, show_progress=False)
    except InputError as exc:  # re-index from the group to the batch
        raise exc.at(positions[exc.index]) from None


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last may be shorter), read lazily."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
