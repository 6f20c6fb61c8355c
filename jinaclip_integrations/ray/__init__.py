"""Index millions of files with Ray Data: the single-process sync's points, read and decoded on CPU workers,
embedded by one engine per GPU.

    from jinaclip_integrations.ray import index_with_ray

    report = index_with_ray(["s3://bucket/docs/"], qdrant_url="http://qdrant:6333", collection_name="docs")
    print(report.files, report.added, report.existing, report.removed, report.failed)

The job makes a target hold what ``QdrantVectorizer.sync`` makes it hold from the same files (same point IDs,
payloads and vectors: :mod:`jinaclip_integrations.ingest`), as one Ray Data pipeline:

1. **list** (driver, :mod:`.listing`): local paths walked as ``jinaclip index`` walks them, or the files under URIs
   of any filesystem pyarrow reads (``s3://``, ``gs://``, ``hdfs://``...);
2. **plan** (driver, :mod:`.job`): the target's state is read once; a file whose stored version is whole and has
   its size and modification time is unchanged and not even read;
3. **read** (CPU tasks, :mod:`.stages`): each other file becomes its points (text chunks cut with the model's
   tokenizer, PDFs, HTML, Word and CSV files read, their images), one row each; points the target holds are not
   embedded again; an unreadable file fails;
4. **decode** (CPU tasks): images decoded, resized and cropped; a corrupt one fails;
5. **embed** (a pool of actors, with ``num_gpus`` each when there are GPUs): each actor loads the engine once and
   embeds the texts and crops of each batch with the engine's own batching;
6. **write** (:mod:`.targets`): every target is a :class:`~jinaclip_integrations.store.VectorStore`, written by
   :func:`.rows.write_points`: a Qdrant server or cluster from CPU tasks, or Parquet files (:mod:`.parquet`) from CPU
   tasks; a local store (the embedded engine's folder, a ``QdrantClient`` in local mode) is single-process, so the
   driver writes those batches as they arrive;
7. **finish** (driver): the older versions of the files whose new points are all stored are removed, then (unless
   ``prune=False``) the points of files gone from the roots; the report's counts are checked to add up.

On a Ray without GPUs, Ray Data fuses stages 3-4 into the embedding actors (they ask for the same resources): each
actor then reads, decodes and embeds, and ``workers`` is the parallelism.

**Kill-safe, and retries write nothing twice.** Point IDs come from the source, the file's content and the chunking;
upserts are insert-only; Parquet files are written once under a name derived from their IDs; old points are
removed only after their replacements are stored. A job killed at any moment and run again ends with the target of
a job never interrupted. Ray Data retries a task whose worker died and restarts an embedding actor that died
(reloading the model), giving it its batch again, without limit (its defaults, kept: Ray 2.60 deprecates setting
them per stage). An exception raised by the job's own code (a Qdrant server refusing a write) fails the job; run it
again.

**Not done** here but by the single-process path: lending the vector of a stored point with the same content (every
new point is embedded; ``report.reused`` stays 0), and reading ``.gitignore`` files under URIs. Parquet files are
never rewritten, so nothing is removed from them (older versions of changed files stay beside the new ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .job import RayIndexResult as RayIndexResult
    from .job import index_with_ray as index_with_ray

__all__ = ["RayIndexResult", "index_with_ray"]

__getattr__ = lazy_getattr(__name__, {"RayIndexResult": ".job", "index_with_ray": ".job"})
