"""Keep a vector store in step with folders: what every store's ``sync`` and ``jinaclip index`` run.

One pass over a :class:`~.walk.Listing`:

1. **Read what is stored**, once: every point's source and file version (:mod:`.files`).
2. **Each file**: unchanged (its stored version is whole and its size and modification time,
   else its hash, are the same) → nothing to do. Otherwise the file is read, chunked, and its
   points that are not stored yet are written: a point whose content is stored elsewhere (a
   renamed or copied file, an unchanged chunk of an edited one) gets that point's vector, the
   others are embedded, a batch at a time across files. Once a file's new points are stored
   (those that could be: an image of a PDF may fail alone), its points of older versions are
   removed; a file none of whose points could be stored keeps its older version.
3. **Prune** (unless ``prune=False``): the points of files that were stored under the walked
   roots and are no longer there (deleted, renamed, now excluded or ignored) are removed.

Every step is idempotent and the IDs are derived from the content, so a run killed at any moment
and run again ends with the same store as a run that was never interrupted: nothing lost,
nothing twice. A file that cannot be read keeps the points of its last good version.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import progress_bar
from ..store import VectorStore
from .chunking import ChunkOptions
from .files import VERSION_FIELDS, FileVersion, chunking_label, file_items, read_source, stat_file
from .items import Failure, IngestReport, Item, OnError, batched, embed_items
from .readers import format_of
from .walk import Listing


@dataclass
class _Stored:
    """What the store holds of one source: its point IDs per version, and the stat recorded
    with each version."""

    versions: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    parts: dict[tuple[str, str], int] = field(default_factory=dict)
    stat: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def whole(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` is the only version and all its points are stored."""
        return list(self.versions) == [key] and len(self.versions[key]) == self.parts.get(key)


class StoreIndex:
    """The store's points by source and version, and one point ID per content hash (the points
    whose vectors can be lent), read with one scroll and kept up to date by the sync."""

    def __init__(self, store: VectorStore) -> None:
        self.sources: dict[str, _Stored] = {}
        self.by_content: dict[str, str] = {}
        self.removed: set[str] = set()  # points deleted by this run
        for point_id, payload in store.scroll(VERSION_FIELDS):
            if payload.get("content_hash"):
                self.by_content.setdefault(payload["content_hash"], point_id)
            if payload.get("source") is None:
                continue  # a text added in memory
            # a point with a source but no file version (added in memory with a path, or by an
            # older jinaclip) is an outdated version of that file: replaced when it is synced
            stored = self.sources.setdefault(payload["source"], _Stored())
            key = (payload.get("file_hash") or "", payload.get("chunking") or "")
            stored.versions[key].append(point_id)
            stored.parts[key] = payload.get("parts", 0)
            stored.stat[key] = (payload.get("size"), payload.get("mtime_ns"))

    def lender(self, content_hash: str) -> str | None:
        """A stored point with this content, whose vector can be lent."""
        point_id = self.by_content.get(content_hash)
        return None if point_id in self.removed else point_id

    def unchanged(self, source: str, size: int, mtime_ns: int, chunking: str) -> bool:
        """Whether the stored version of ``source`` is whole and was made from a file of this
        size and modification time, cut this way (then the file is not read again)."""
        stored = self.sources.get(source)
        if stored is None or len(stored.versions) != 1:
            return False
        [key] = stored.versions
        return key[1] == chunking and None not in stored.stat[key] and stored.stat[key] == (size, mtime_ns) and stored.whole(key)  # fmt: skip


@dataclass
class _FileWork:
    """A file being written: its version, its points left to store and those that failed, and
    the points of its older versions to remove once the new ones are stored."""

    version: FileVersion
    total: int
    stale: list[str]
    outcome: str
    stored: int = 0

    def __post_init__(self) -> None:
        self.pending = self.total


def sync_files(
    store: VectorStore,
    engine: Any,
    listing: Listing,
    *,
    options: ChunkOptions,
    prune: bool = True,
    on_error: OnError = "raise",
    batch_size: int = 64,
    show_progress: bool | None = None,
) -> IngestReport:
    """Make ``store`` hold the files of ``listing`` (see the module's docstring); with
    ``prune=False`` nothing is removed but the older versions of changed files. Chunks are at
    most what the model reads (:func:`fit_chunking`).

    Raises:
        InputError: with ``on_error="raise"``, the first file that cannot be read or embedded
            (what was stored before it stays).
    """
    options = fit_chunking(options, engine.max_positions)
    report = IngestReport(ignored=list(listing.skipped))
    index = StoreIndex(store)
    with progress_bar(len(listing.files), "Indexing", show_progress, unit="file") as bar:
        run = _Run(store, engine, index, options, on_error, report, bar)
        for batch in batched(run.items(listing), batch_size):
            run.write(batch)
    if prune:
        walked = set(map(str, listing.files))
        gone = [s for s in index.sources if s not in walked and listing.covers(s)]
        ids = [i for source in gone for versions in index.sources.pop(source).versions.values() for i in versions]
        if ids:
            store.delete(ids)
        report.removed += len(ids)
        report.files["removed"] += len(gone)
    store.optimize()
    return report


def fit_chunking(options: ChunkOptions, max_positions: int) -> ChunkOptions:
    """``options`` with chunks no longer than a model of ``max_positions`` tokens reads (two
    are its special tokens), and the overlap at most half a chunk."""
    tokens = min(options.max_tokens, max_positions - 2)
    return ChunkOptions(max_tokens=tokens, overlap=min(options.overlap, tokens // 2))


class _Run:
    """One sync's state: what is stored, and the report and progress bar it updates."""

    def __init__(self, store: VectorStore, engine: Any, index: StoreIndex, options: ChunkOptions, on_error: OnError,
                 report: IngestReport, bar: Any) -> None:  # fmt: skip
        self.store, self.engine, self.index, self.options = store, engine, index, options
        self.on_error, self.report, self.bar = on_error, report, bar

    def items(self, listing: Listing) -> Iterator[tuple[Item, _FileWork]]:
        """Each item of each file that is not stored whole, with its file's work record."""
        for position, path in enumerate(listing.files):
            source = str(path)
            try:
                version, items = self._read(source, position)
            except OSError as exc:  # gone or unreadable since the walk
                exc = InputError(position, f"cannot read {source}: {exc.strerror or exc}", kind="file")
                if self.on_error == "raise":
                    raise exc from None
                self.report.failed.append(Failure(source, exc.reason))
                self._done("failed")
                continue
            except (InputError, ImportError) as exc:
                if self.on_error == "raise":
                    raise
                self.report.failed.append(Failure(source, getattr(exc, "reason", None) or str(exc)))
                self._done("failed")
                continue
            if version is None:
                self._done("unchanged")
                continue
            stored = self.index.sources.get(source)
            stale = [] if stored is None else [i for key, ids in stored.versions.items() if key != version.key for i in ids]  # fmt: skip
            file = _FileWork(version, len(items), stale, "new" if stored is None else "changed")
            if not items:  # an empty document: nothing to store, its old points go
                self._finish(file)
            for item in items:
                yield item, file

    def _read(self, source: str, position: int) -> tuple[FileVersion | None, list[Item]]:
        """The version and items of a file, or ``(None, [])`` when it is stored whole already."""
        size, mtime_ns = stat_file(source)
        if self.index.unchanged(source, size, mtime_ns, chunking_label(format_of(source) or "text", self.options)):
            return None, []
        with open(source, "rb") as f:
            data = read_source(f.read, source, position)
        version, items, warnings = file_items(
            source, data, offsets=self.engine.token_offsets, options=self.options, size=size, mtime_ns=mtime_ns, index=position
        )  # fmt: skip
        stored = self.index.sources.get(source)
        if stored is not None and stored.whole(version.key):
            return None, []  # touched, not changed
        self.report.failed.extend(Failure(source, warning) for warning in warnings)
        self.report.chunks += sum(item.modality == "text" for item in items)
        return version, items

    def write(self, batch: list[tuple[Item, _FileWork]]) -> None:
        """Store a batch's new points: lent vectors where the content is stored, embedded
        otherwise; then finish the files whose points are all stored."""
        report, index = self.report, self.index
        stored = self.store.existing([item.id for item, _ in batch])
        new: dict[str, Item] = {}
        for item, _ in batch:
            if item.id in stored:
                report.existing += 1
            else:
                new.setdefault(item.id, item)
        lenders = {i: index.lender(item.payload["content_hash"]) for i, item in new.items()}
        lent = self.store.vectors(sorted({lender for lender in lenders.values() if lender is not None}))
        vectors = {i: lent[lender] for i, lender in lenders.items() if lender in lent}
        report.reused += len(vectors)
        to_embed: dict[str, Item] = {}  # content hash -> the one item embedded for it
        for i, item in new.items():
            if i not in vectors:
                to_embed.setdefault(item.payload["content_hash"], item)
        kept, embedded = embed_items(self.engine, list(to_embed.values()), on_error=self.on_error, report=report,
                                     max_length=self.options.max_tokens + 2)  # fmt: skip
        by_hash = {item.payload["content_hash"]: row for item, row in zip(kept, embedded, strict=True)}
        for i, item in new.items():
            if i not in vectors and item.payload["content_hash"] in by_hash:
                vectors[i] = by_hash[item.payload["content_hash"]]
            elif i not in vectors and to_embed[item.payload["content_hash"]] is not item:
                report.failed.append(Failure(item.where, "same content as an item that failed"))
        written = [item for i, item in new.items() if i in vectors]
        if written:
            self.store.upsert([item.id for item in written], np.stack([vectors[item.id] for item in written]),
                              [item.payload for item in written])  # fmt: skip
            for item in written:
                index.by_content[item.payload["content_hash"]] = item.id
        report.added += len(written)
        for item, file in batch:
            file.pending -= 1
            file.stored += item.id in stored or item.id in vectors
            if file.pending == 0:
                self._finish(file)

    def _finish(self, file: _FileWork) -> None:
        """A file's new points are stored: remove its older versions. A file none of whose
        points could be stored (a corrupt image) is a failure, and keeps its older version."""
        if file.total and not file.stored:
            self._done("failed")
            return
        if file.stale:
            self.store.delete(file.stale)
            self.index.removed.update(file.stale)
            self.report.removed += len(file.stale)
        self._done(file.outcome)

    def _done(self, outcome: str) -> None:
        self.report.files[outcome] += 1
        self.bar.update(1)
