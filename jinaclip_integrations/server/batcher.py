"""Micro-batching: inputs of concurrent requests are merged into model-sized engine calls, and
images are decoded on the requests' side, never by the model's worker.

A single-text request costs the model almost as much as a batch of dozens, so under load the
server embeds the requests that are waiting together. :class:`MicroBatcher` queues requests
by what the engine needs to be told (modality, normalization); one worker thread takes the
oldest request and the queued requests of the same kind, up to ``max_batch_items`` inputs,
and makes one engine call for all of them. One worker also means one model call at a time,
which a GPU wants anyway.

What reaches the worker is ready for the model: texts as token ids (the routes tokenize each
text once, for their usage counts and truncation flags, and the ids are embedded as they are:
``engine.encode_tokens``; requests of different tasks merge, the instruction being in the
ids), images as uint8 crops (``engine.encode_pixels``). The crops come from
:class:`ImageDecoder`, which decodes in the request's own coroutine on a thread pool of one
thread per core, each request at most half of them at a time: the engine's ``encode_image``
would decode in the worker while every other request waits (a one-colour PNG of 89
megapixels is a few hundred kilobytes and two seconds of decoding), and one request of many
large images would hold the others' images back. A request's images go to the worker in
chunks as they are decoded, at most two chunks ahead, so a request of 2048 images holds two
chunks of crops at a time, not all of them. PIL releases the GIL while it decodes and
resizes: the event loop and the model go on meanwhile.

While the model runs, new requests queue up, so under load batches fill by themselves. A
batch also waits up to ``max_wait_ms`` after its oldest request arrived for more to join, but
only when there are signs of concurrent clients (other requests of its kind queued, or the
last batch served several): a lone client's requests go straight to the model.

An image the engine refuses (:class:`~jinaclip_integrations.errors.InputError`) fails its
request while it is decoded, before anything is queued; the other requests never see it. A
request cancelled while it waits (its client went away, or it timed out) is dropped from the
queue and its images not yet decoded are never decoded; one already in the model finishes and
its vectors are discarded.

:class:`Embedder` is what the routes embed with: a :class:`MicroBatcher`, or a
:class:`DirectEmbedder` (one engine call per request on a worker thread, for an app without
the batcher's lifespan).
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import ctypes.util
import functools
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine, Tokenized

__all__ = [
    "RETRY_LATER", "BatcherClosed", "BatcherStats", "DirectEmbedder", "Embedder", "ImageDecoder", "MicroBatcher",
    "OutOfMemory", "gather_all", "release_free_memory",
]  # fmt: skip

logger = logging.getLogger(__name__)

Modality = Literal["text", "image"]
#: what one engine call must share: modality and normalization
Key = tuple[Modality, bool]
T = TypeVar("T")
#: chunks of one request's images decoded ahead of the model (each waits for its vectors)
_CHUNKS_AHEAD = 2


class BatcherClosed(RuntimeError):
    """The batcher is not running (not started yet, or closed): the request cannot be served."""


#: the header of a 503 that a client should retry
RETRY_LATER = {"Retry-After": "1"}


class OutOfMemory(RuntimeError):
    """The model ran out of accelerator memory even one input at a time (or other work holds
    it): a 503 the client may retry, not a bug."""


class Embedder(Protocol):
    """Embeds the inputs of one request: float32 arrays of shape ``(n, d)``, ``d`` the engine's
    default output size.

    Raises:
        InputError: an image is refused (``.index`` within the request's images).
        BatcherClosed: a batcher that is not running.
    """

    async def embed_tokens(self, tokenized: Tokenized, normalize: bool = True) -> np.ndarray: ...

    async def embed_images(self, images: Sequence[bytes], normalize: bool = True) -> np.ndarray: ...


class DirectEmbedder:
    """An :class:`Embedder` without merging: each request is one engine call on a worker thread
    (the event loop keeps serving); calls of concurrent requests may overlap. For an app that
    has no lifespan to run a :class:`MicroBatcher` in."""

    def __init__(self, engine: JinaCLIPEngine) -> None:
        self.engine = engine

    async def embed_tokens(self, tokenized: Tokenized, normalize: bool = True) -> np.ndarray:
        encode = functools.partial(self.engine.encode_tokens, tokenized, normalize=normalize, show_progress=False)
        return await asyncio.to_thread(_on_the_model, encode)

    async def embed_images(self, images: Sequence[bytes], normalize: bool = True) -> np.ndarray:
        encode = functools.partial(self.engine.encode_image, list(images), normalize=normalize, show_progress=False)
        return await asyncio.to_thread(_on_the_model, encode)


class ImageDecoder:
    """Encoded images -> the engine's uint8 crops ``(n, size, size, 3)`` (``engine.preprocessor.crop``),
    on a thread pool shared by all requests (see the module docstring).

    Args:
        engine: whose preprocessing decodes and crops.
        max_pixels: largest image (its header is checked before decoding); None: no limit.
        threads: decoding threads for all requests (default: one per core). Each request
            decodes at most :attr:`per_request` images at a time: half of them, at least one.

    :meth:`start` makes the pool and :meth:`close` ends it; in between, :meth:`crops` decodes.
    """

    def __init__(self, engine: JinaCLIPEngine, max_pixels: int | None, threads: int | None = None) -> None:
        self.engine, self.max_pixels = engine, max_pixels
        self.threads = threads or os.cpu_count() or 1
        self.per_request = max(1, self.threads // 2)
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="jinaclip-decode")

    def close(self) -> None:
        """End the pool (images already decoding finish on their threads, the rest are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def crops(self, images: Sequence[bytes], first_index: int = 0) -> np.ndarray:
        """Decode and crop ``images``, in order. The first refused image's
        :class:`~jinaclip_integrations.errors.InputError` is raised (its index: its position in
        ``images`` plus ``first_index``), and the images not started yet are dropped."""
        if self._pool is None:
            raise BatcherClosed("the image decoder is not running")
        pool, loop, gate = self._pool, asyncio.get_running_loop(), asyncio.Semaphore(self.per_request)
        crop = self.engine.preprocessor.crop

        async def one(index: int, data: bytes) -> np.ndarray:
            async with gate:
                return await loop.run_in_executor(pool, crop, data, index, self.max_pixels)

        return np.stack(await gather_all(one(first_index + i, data) for i, data in enumerate(images)))


@dataclass
class BatcherStats:
    """Counters of the work done (written by the worker thread only, under the batcher's lock).

    Attributes:
        requests: jobs embedded or failed: a request's texts are one, its images one per chunk
            (a chunk: at most ``max_batch_items`` images, or the engine's ``batch_size``).
        items: inputs embedded.
        batches: engine calls.
        merged_batches: engine calls that served more than one job.
        modality_items: inputs embedded, by modality (``"text"``, ``"image"``).
        batch_sizes: engine calls, by their number of inputs.
    """

    requests: int = 0
    items: int = 0
    batches: int = 0
    merged_batches: int = 0
    modality_items: dict[str, int] = field(default_factory=lambda: {"text": 0, "image": 0})
    batch_sizes: dict[int, int] = field(default_factory=dict)


@dataclass
class _Job:
    """Inputs ready for the model: token ids (a :class:`Tokenized`) or crops (a uint8 array)."""

    key: Key
    items: Tokenized | np.ndarray
    size: int
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Merge concurrent embedding requests into engine calls (see the module docstring).

    Args:
        engine: the engine every batch runs on.
        max_batch_items: most inputs per engine call; a request with more texts runs alone (the
            engine splits it into forward passes of its ``batch_size``); a request's images
            come in chunks of at most this many. 1: no merging.
        max_wait_ms: how long after the oldest waiting request arrived a batch may wait for
            others to fill it, when other clients are about. 0: take what is queued when the
            worker is free.
        max_image_pixels: largest image decoded (checked from its header first); default: the
            engine's ``max_image_pixels``.
        decode_threads: threads decoding images for all requests (default: one per core).
    """

    def __init__(
        self,
        engine: JinaCLIPEngine,
        max_batch_items: int = 64,
        max_wait_ms: float = 5.0,
        *,
        max_image_pixels: int | None = None,
        decode_threads: int | None = None,
    ) -> None:
        if max_batch_items < 1:
            raise ValueError(f"max_batch_items must be at least 1, got {max_batch_items}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        self.engine = engine
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_ms / 1000
        self.decoder = ImageDecoder(engine, max_image_pixels or engine.max_image_pixels, decode_threads)
        self.stats = BatcherStats()
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._closing = False
        self._concurrent = False  # whether the last batch served several requests
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread and the image decoder."""
        with self._cond:
            if self._thread is not None:
                raise RuntimeError("the batcher was already started")
            self.decoder.start()
            self._thread = threading.Thread(target=self._work, name="jinaclip-batcher", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Refuse new requests, embed those already queued, and stop the worker (blocks until
        it has) and the decoder. Safe to call more than once."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.decoder.close()

    @property
    def running(self) -> bool:
        """Started, not closed, and the worker is alive."""
        return self._thread is not None and self._thread.is_alive() and not self._closing

    def stats_snapshot(self) -> BatcherStats:
        """A copy of :attr:`stats` as it stood between two batches (the worker updates it under
        the batcher's lock), for a reader on another thread."""
        with self._cond:
            return copy.deepcopy(self.stats)

    @property
    def queued(self) -> int:
        """Requests waiting for the worker (not those in the model, nor those cancelled)."""
        with self._cond:
            return sum(not job.future.cancelled() for job in self._queue)

    # -- requests ---------------------------------------------------------------------------

    async def embed_tokens(self, tokenized: Tokenized, normalize: bool = True) -> np.ndarray:
        """Embed texts tokenized by ``engine.tokenize`` (task instruction included), merged
        with other requests. A float32 array of shape ``(len(tokenized.ids), d)``.

        Raises:
            BatcherClosed: the batcher is not running.
        """
        return await self._submit(("text", normalize), tokenized, len(tokenized.ids))

    async def embed_images(self, images: Sequence[bytes], normalize: bool = True) -> np.ndarray:
        """Embed encoded images, decoded here (see the module docstring), merged with other
        requests; as :meth:`embed_tokens`.

        Raises:
            InputError: an image is refused (``.index`` within ``images``).
            BatcherClosed: the batcher is not running.
        """
        if not self.running:
            raise BatcherClosed("the embedding batcher is not running")
        if not images:
            return np.empty((0, self.engine.output_dim), dtype=np.float32)
        step = min(self.max_batch_items, self.engine.batch_size)
        ahead = asyncio.Semaphore(_CHUNKS_AHEAD)

        async def chunk(start: int) -> np.ndarray:
            async with ahead:
                crops = await self.decoder.crops(images[start : start + step], start)
                return await self._submit(("image", normalize), crops, len(crops))

        return np.concatenate(await gather_all(chunk(start) for start in range(0, len(images), step)))

    async def _submit(self, key: Key, items: Tokenized | np.ndarray, size: int) -> np.ndarray:
        job = _Job(key, items, size)
        with self._cond:
            if not self.running:
                raise BatcherClosed("the embedding batcher is not running")
            self._queue.append(job)
            self._cond.notify()
        # cancelling the awaiting task (a timeout, a client gone) cancels the job if not started
        return await asyncio.wrap_future(job.future)

    # -- the worker -------------------------------------------------------------------------

    def _work(self) -> None:
        trimmed = time.monotonic()
        while (jobs := self._next_batch()) is not None:
            jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            try:
                self._run(jobs)
            except BaseException as exc:  # a bug here must not leave requests waiting forever
                logger.exception("the embedding batcher failed")
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
            if time.monotonic() - trimmed >= TRIM_INTERVAL_S:
                release_free_memory()
                trimmed = time.monotonic()

    def _next_batch(self) -> list[_Job] | None:
        """Wait for work; the oldest request and those that may join it (None: closed and done)."""
        with self._cond:
            while True:
                self._queue = [job for job in self._queue if not job.future.cancelled()]  # their clients left
                if not self._queue:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                jobs, full = self._candidates()
                # a lone client's request does not wait for company that will not come
                patience = self.max_wait_s if self._concurrent or len(jobs) > 1 else 0.0
                wait = self._queue[0].arrived + patience - time.monotonic()
                if full or wait <= 0 or self._closing:
                    taken = {id(job) for job in jobs}
                    self._queue = [job for job in self._queue if id(job) not in taken]
                    self._concurrent = len(jobs) > 1
                    return jobs
                self._cond.wait(wait)

    def _candidates(self) -> tuple[list[_Job], bool]:
        """The oldest job and the following ones of its key that fit; whether the batch is full."""
        first = self._queue[0]
        jobs, size = [first], first.size
        for job in self._queue[1:]:
            if size >= self.max_batch_items:
                return jobs, True
            if job.key != first.key:
                continue
            if size + job.size > self.max_batch_items:
                return jobs, True
            jobs.append(job)
            size += job.size
        return jobs, size >= self.max_batch_items

    def _run(self, jobs: list[_Job]) -> None:
        """Embed ``jobs`` in one engine call and hand each its rows; a failure fails them all."""
        size = sum(job.size for job in jobs)
        with self._cond:
            self.stats.requests += len(jobs)
            self.stats.items += size
            self.stats.batches += 1
            self.stats.merged_batches += len(jobs) > 1
            if jobs:  # none when every request taken was cancelled before the model was free
                self.stats.modality_items[jobs[0].key[0]] += size
                self.stats.batch_sizes[size] = self.stats.batch_sizes.get(size, 0) + 1
        try:
            vectors = _on_the_model(functools.partial(_encode, self.engine, jobs))
        except Exception as exc:  # each request answers it (a 500 is logged there)
            for job in jobs:
                job.future.set_exception(exc)
            return
        start = 0
        for job in jobs:
            job.future.set_result(vectors[start : start + job.size])
            start += job.size


#: Seconds between two returns of freed heap memory to the system (see :func:`release_free_memory`).
TRIM_INTERVAL_S = 1.0


@functools.cache
def _malloc_trim() -> ctypes._CFuncPtr | None:
    """glibc's ``malloc_trim``, or None on another C library or system."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # musl, or no libc found
        return None


def release_free_memory() -> bool:
    """Give the memory freed inside glibc's heaps back to the system; whether it could.

    Every request allocates tensors and decoded images of varying sizes on several threads
    (the decode pool, the server's threads), each with a glibc arena of its own. glibc keeps
    what they free for reuse, fragmented, so a server under sustained load grows by tens of
    MiB a minute without holding more objects. ``malloc_trim(0)`` returns the free pages;
    the batcher calls it at most every :data:`TRIM_INTERVAL_S` (it takes about a millisecond).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _encode(engine: JinaCLIPEngine, jobs: list[_Job]) -> np.ndarray:
    """One engine call for the inputs of ``jobs`` (all of one key), in order."""
    from ..engine import Tokenized

    modality, normalize = jobs[0].key
    if modality == "text":
        ids = [row for job in jobs for row in job.items.ids]
        tokenized = Tokenized(ids, [], jobs[0].items.max_length)
        return engine.encode_tokens(tokenized, normalize=normalize, show_progress=False)
    return engine.encode_pixels(np.concatenate([job.items for job in jobs]), normalize=normalize)


def _on_the_model(call: Callable[[], T]) -> T:
    """``call()``, an engine call; the accelerator running out of memory (after the engine
    halved the batch down to one input) is :class:`OutOfMemory`."""
    import torch

    try:
        return call()
    except torch.OutOfMemoryError:
        raise OutOfMemory("the accelerator ran out of memory; retry later, or with fewer or smaller inputs") from None


async def gather_all(work: Iterable[Awaitable[T]]) -> list[T]:
    """Run awaitables together, results in order; the first failure cancels the others and is
    raised (``asyncio.gather`` would leave them running)."""
    running = [asyncio.ensure_future(task) for task in work]
    try:
        return list(await asyncio.gather(*running))
    finally:
        for task in running:
            task.cancel()
