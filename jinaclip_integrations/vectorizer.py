"""What every vectorizer does the same way, whatever the database: ingest texts, images and
folders, keep the store in step with folders, list and delete what it holds, and search.

A vectorizer is a :class:`~jinaclip_integrations.store.VectorStore` (the database's side) and an
engine (the model's side, whose weights load when something is first embedded). The subclasses
(``QdrantVectorizer``, ``WeaviateVectorizer``) only open their store.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import settings
from .ingest.chunking import ChunkOptions
from .ingest.items import (  # fmt: skip
    Failure,
    IngestReport,
    Item,
    OnError,
    batched,
    check_on_error,
    embed_items,
    iter_image_items,
    text_items,
)
from .ingest.readers import format_of
from .ingest.sync import sync_files
from .ingest.walk import walk
from .progress import progress_bar
from .store import (  # fmt: skip
    CollectionLayout,
    SearchHit,
    SourceSummary,
    VectorStore,
    ids_of_sources,
    merged_search,
    source_summaries,
)

if TYPE_CHECKING:
    from .engine import JinaCLIPEngine, LazyEngine


class Vectorizer:
    """Ingest and search texts and images in one store (see the subclasses for the databases).

    Args:
        engine: the engine to embed with (default: ``model_name``'s shared engine, whose
            weights load when something is first embedded).
        model_name, device, dtype: which engine to load when ``engine`` is None (None: the
            settings, ``$JINACLIP_MODEL`` etc.; see :mod:`jinaclip_integrations.settings`).
        batch_size: items embedded and written per batch.
        on_error: ``"raise"`` stops at the first unreadable item with an ``InputError`` naming
            it (what was written before stays); ``"skip"`` reports it and goes on.
        show_progress: draw progress bars (default: when stderr is a terminal).
    """

    store: VectorStore
    layout: CollectionLayout

    def __init__(
        self,
        *,
        engine: JinaCLIPEngine | LazyEngine | None = None,
        model_name: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        batch_size: int = 64,
        on_error: OnError = "raise",
        show_progress: bool | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if engine is None:
            from .engine import LazyEngine

            found = settings.values()
            engine = LazyEngine(model_name or found["model"], device=device or found["device"],
                                dtype=dtype or found["dtype"], show_progress=show_progress)  # fmt: skip
        self.engine = engine
        self.batch_size = batch_size
        self.on_error = check_on_error(on_error)
        self.show_progress = show_progress

    # -- ingest ------------------------------------------------------------------------------

    def add_texts(self, texts: Sequence[str], metadatas: Sequence[dict] | None = None) -> IngestReport:
        """Embed and store texts, one point each (no task instruction: they are passages).
        ``metadatas`` go to the payloads; a ``"source"`` key there becomes the hit's source. A
        text longer than the model reads is cut, and counted in ``report.truncated``."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings; wrap a single text in a list")
        return self._ingest(text_items(texts, metadatas), len(texts), IngestReport())

    def add_images(self, images: Sequence[Any], metadatas: Sequence[dict] | None = None) -> IngestReport:
        """Embed and store images (paths, URLs, bytes, base64, PIL images...); a path's source
        is its absolute path. An unreadable image raises or is reported as ``on_error`` says."""
        if isinstance(images, (str, bytes, os.PathLike)):
            raise TypeError("images must be a list; wrap a single image in a list")
        report = IngestReport()
        return self._ingest(iter_image_items(images, metadatas, report, self.on_error), len(images), report)

    def sync(
        self,
        paths: Iterable[str | os.PathLike] | str | os.PathLike,
        *,
        prune: bool = True,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        gitignore: bool = True,
        chunking: ChunkOptions | None = None,
        on_error: OnError | None = None,
    ) -> IngestReport:
        """Make the collection hold what is now in these files, folders and globs.

        Images, texts, markdown, HTML, PDF, Word and CSV files are read (see
        :mod:`jinaclip_integrations.ingest.readers`), long texts cut into chunks of
        ``chunking`` (default 512 tokens, 64 overlapping), and each chunk and image stored as a
        point whose payload names its ``source`` (absolute path), ``chunk``, ``span``, ``page``.
        Unchanged files are skipped without being read; changed files' old points are replaced;
        with ``prune`` the points of files that are gone from the folders (or now excluded) are
        removed. Hidden files, VCS folders, ``node_modules``, virtualenvs, this store and what
        ``.gitignore`` ignores are skipped (``report.ignored`` says why, for each).
        ``include``/``exclude``: gitignore-style patterns. Safe to interrupt: run it again.
        """
        on_error = self.on_error if on_error is None else check_on_error(on_error)
        listing = walk(paths, supported=_supported, include=include, exclude=exclude, skip=self.store.folders(), gitignore=gitignore)  # fmt: skip
        return sync_files(self.store, self.engine, listing, options=chunking or ChunkOptions(), prune=prune,
                          on_error=on_error, batch_size=self.batch_size, show_progress=self.show_progress)  # fmt: skip

    def add_files(
        self, paths: Iterable[str | os.PathLike] | str | os.PathLike, *, on_error: OnError | None = None, **options: Any
    ) -> IngestReport:
        """:meth:`sync` without removing anything (``prune=False``): new and changed files are
        stored, files gone from the folders stay."""
        return self.sync(paths, prune=False, on_error=on_error, **options)

    def delete(self, *, sources: Iterable[str | os.PathLike] = (), ids: Iterable[str] = ()) -> int:
        """Remove the points of these sources (file paths as stored: absolute; a relative path is
        taken from the current folder) and these point IDs; returns how many were removed."""
        wanted = [str(s) if "://" in str(s) else os.path.abspath(s) for s in ([sources] if isinstance(sources, (str, os.PathLike)) else sources)]  # fmt: skip
        found = [i for ids_ in ids_of_sources(self.store, wanted).values() for i in ids_] if wanted else []
        found += sorted(self.store.existing(list(ids))) if ids else []
        found = list(dict.fromkeys(found))
        if found:
            self.store.delete(found)
        return len(found)

    def sources(self) -> list[SourceSummary]:
        """What the collection holds, per source: points, texts and images."""
        return source_summaries(self.store)

    def _ingest(self, items: Iterable[Item], total: int, report: IngestReport) -> IngestReport:
        """Write the in-memory items that are not stored yet, a batch at a time."""
        written: set[str] = set()  # IDs this run stored
        with progress_bar(total, "Indexing", self.show_progress, unit="item") as bar:
            for batch in batched(items, self.batch_size):
                stored = self.store.existing([item.id for item in batch]) | written
                new: dict[str, Item] = {}
                repeats: list[Item] = []  # same content as an earlier item of this batch
                for item in batch:
                    if item.id in stored:
                        report.existing += 1
                    elif item.id in new:
                        repeats.append(item)
                    else:
                        new[item.id] = item
                kept, vectors = embed_items(self.engine, list(new.values()), on_error=self.on_error, report=report)
                if kept:
                    self.store.upsert([item.id for item in kept], vectors, [item.payload for item in kept])
                written.update(item.id for item in kept)
                report.added += len(kept)
                for item in repeats:  # stored once if its first copy was; failed with it if not
                    if item.id in written:
                        report.existing += 1
                    else:
                        report.failed.append(Failure(item.where, "same content as an item that failed"))
                bar.update(batch[-1].index + 1 - bar.n)
        self.store.optimize()
        return report

    # -- search ------------------------------------------------------------------------------

    def search(self, query: Any, *, limit: int = 10, modality: str | None = None, image_weight: float = 1.0) -> list[SearchHit]:  # fmt: skip
        """Search with a text (a ``str``) or an image (anything else the engine reads as an
        image: a ``Path``, bytes, a PIL image...): :meth:`search_text` or :meth:`search_image`."""
        if isinstance(query, str):
            return self.search_text(query, limit=limit, modality=modality, image_weight=image_weight)
        return self.search_image(query, limit=limit, modality=modality, image_weight=image_weight)

    def search_text(self, text: str, *, limit: int = 10, modality: str | None = None, image_weight: float = 1.0) -> list[SearchHit]:  # fmt: skip
        """Search with a sentence (embedded with the query instruction where the model has one)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, not {type(text).__name__}")
        vector = self.engine.encode_text([text], task=self.engine.query_task, show_progress=False)[0]
        return self.search_vector(vector, limit=limit, modality=modality, image_weight=image_weight)

    def search_image(self, image: Any, *, limit: int = 10, modality: str | None = None, image_weight: float = 1.0) -> list[SearchHit]:  # fmt: skip
        """Search with an image (a path, URL, bytes, PIL image...)."""
        vector = self.engine.encode_image([image], show_progress=False)[0]
        return self.search_vector(vector, limit=limit, modality=modality, image_weight=image_weight)

    def search_vector(
        self, vector: Sequence[float] | np.ndarray, *, limit: int = 10, modality: str | None = None, image_weight: float = 1.0
    ) -> list[SearchHit]:  # fmt: skip
        """Search with a full-size embedding. Without ``modality``: one ranking of texts and
        images (:func:`~jinaclip_integrations.store.merged_search`: ``score`` is the fused
        score, ``cosine`` the similarity); with ``modality="text"`` or ``"image"``: that
        modality only, by cosine."""
        full = np.asarray(vector, dtype=np.float32).reshape(-1)
        if full.shape[0] not in (self.engine.embedding_dim, self.layout.dim):
            raise ValueError(f"vector has {full.shape[0]} dimensions; the collection stores {self.layout.dim}")
        return merged_search(self.store, full, limit=limit, modality=modality, image_weight=image_weight)

    def count(self) -> int:
        """How many points the collection holds."""
        return self.store.count()

    def close(self) -> None:
        """Flush and release the store (files it opened; a client given to it is left open)."""
        self.store.close()

    def __enter__(self) -> Vectorizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _supported(path: Path) -> bool:
    return format_of(path) is not None
