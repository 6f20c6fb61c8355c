"""Micro-batching: inputs of concurrent requests are merged into model-sized engine calls.

A single-text request costs the model almost as much as a batch of dozens, so under load the
server embeds the requests that are waiting together. :class:`MicroBatcher` queues requests
by what the engine needs to be told (modality, task, normalization); one worker thread takes
the oldest request and the queued requests of the same kind, up to ``max_batch_items``
inputs, and makes one engine call for all of them. One worker also means one model call at a
time, which a GPU wants anyway.

While the model runs, new requests queue up, so under load batches fill by themselves. A
batch also waits up to ``max_wait_ms`` after its oldest request arrived for more to join, but
only when there are signs of concurrent clients (other requests of its kind queued, or the
last batch served several): a lone client's requests go straight to the model.

An input the engine refuses (:class:`~jinaclip_integrations.errors.InputError`) fails only
the request that sent it, with the index within that request; the other requests of the
batch are embedded again without it. A request cancelled while it waits (its client went
away, or it timed out) is dropped from the queue; one already in the model finishes and its
vectors are discarded.

:class:`Embedder` is what the routes embed with: a :class:`MicroBatcher`, or a
:class:`DirectEmbedder` (one engine call per request on a worker thread, for an app without
the batcher's lifespan).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..engine import JinaCLIPEngine

__all__ = [
    "RETRY_LATER", "BatcherClosed", "BatcherStats", "DirectEmbedder", "Embedder", "MicroBatcher", "OutOfMemory",
    "gather_all", "release_free_memory",
]  # fmt: skip

logger = logging.getLogger(__name__)

Modality = Literal["text", "image"]
#: what one engine call must share: modality, task (texts only) and normalization
Key = tuple[Modality, str | None, bool]
T = TypeVar("T")


class BatcherClosed(RuntimeError):
    """The batcher is not running (not started yet, or closed): the request cannot be served."""


#: the header of a 503 that a client should retry
RETRY_LATER = {"Retry-After": "1"}


class OutOfMemory(RuntimeError):
    """The model ran out of accelerator memory even one input at a time (or other work holds
    it): a 503 the client may retry, not a bug."""


class Embedder(Protocol):
    """Embeds the inputs of one request: float32 arrays of shape ``(len(inputs), d)``, ``d``
    the engine's default output size.

    Raises:
        InputError: an input is refused (``.index`` within the request's inputs).
        BatcherClosed: a batcher that is not running.
    """

    async def embed_texts(self, texts: Sequence[str], task: str | None, normalize: bool = True) -> np.ndarray: ...

    async def embed_images(self, images: Sequence[bytes], normalize: bool = True) -> np.ndarray: ...


class DirectEmbedder:
    """An :class:`Embedder` without merging: each request is one engine call on a worker thread
    (the event loop keeps serving); calls of concurrent requests may overlap. For an app that
    has no lifespan to run a :class:`MicroBatcher` in."""

    def __init__(self, engine: JinaCLIPEngine) -> None:
        self.engine = engine

    async def embed_texts(self, texts: Sequence[str], task: str | None, normalize: bool = True) -> np.ndarray:
        return await asyncio.to_thread(_encode, self.engine, ("text", task, normalize), list(texts))

    async def embed_images(self, images: Sequence[bytes], normalize: bool = True) -> np.ndarray:
        return await asyncio.to_thread(_encode, self.engine, ("image", None, normalize), list(images))


@dataclass
class BatcherStats:
    """Counters of the work done (written by the worker thread only).

    Attributes:
        requests: requests embedded or failed.
        items: inputs embedded (re-runs not counted twice).
        batches: engine calls, re-runs included.
        merged_batches: engine calls that served more than one request.
        reruns: engine calls repeated because one request of the batch had a bad input.
    """

    requests: int = 0
    items: int = 0
    batches: int = 0
    merged_batches: int = 0
    reruns: int = 0


@dataclass
class _Job:
    key: Key
    items: Sequence[str] | Sequence[bytes]
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Merge concurrent embedding requests into engine calls (see the module docstring).

    Args:
        engine: the engine every batch runs on.
        max_batch_items: most inputs per engine call; a request with more runs alone (the
            engine splits it into forward passes of its ``batch_size``). 1: no merging.
        max_wait_ms: how long after the oldest waiting request arrived a batch may wait for
            others to fill it, when other clients are about. 0: take what is queued when the
            worker is free.
    """

    def __init__(self, engine: JinaCLIPEngine, max_batch_items: int = 64, max_wait_ms: float = 5.0) -> None:
        if max_batch_items < 1:
            raise ValueError(f"max_batch_items must be at least 1, got {max_batch_items}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        self.engine = engine
        self.max_batch_items = max_batch_items
        self.max_wait_s = max_wait_ms / 1000
        self.stats = BatcherStats()
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._closing = False
        self._concurrent = False  # whether the last batch served several requests
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread."""
        with self._cond:
            if self._thread is not None:
                raise RuntimeError("the batcher was already started")
            self._thread = threading.Thread(target=self._work, name="jinaclip-batcher", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Refuse new requests, embed those already queued, and stop the worker (blocks until
        it has). Safe to call more than once."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def running(self) -> bool:
        """Started, not closed, and the worker is alive."""
        return self._thread is not None and self._thread.is_alive() and not self._closing

    @property
    def queued(self) -> int:
        """Requests waiting for the worker (not those in the model, nor those cancelled)."""
        with self._cond:
            return sum(not job.future.cancelled() for job in self._queue)

    # -- requests ---------------------------------------------------------------------------

    async def embed_texts(self, texts: Sequence[str], task: str | None, normalize: bool = True) -> np.ndarray:
        """Embed ``texts`` with ``task`` (see ``JinaCLIPEngine.encode_text``), merged with
        other requests. A float32 array of shape ``(len(texts), d)``.

        Raises:
            InputError: a text is refused (``.index`` within ``texts``).
            BatcherClosed: the batcher is not running.
        """
        return await self._submit(("text", task, normalize), texts)

    async def embed_images(self, images: Sequence[bytes], normalize: bool = True) -> np.ndarray:
        """Embed encoded images, merged with other requests; as :meth:`embed_texts`."""
        return await self._submit(("image", None, normalize), images)

    async def _submit(self, key: Key, items: Sequence[str] | Sequence[bytes]) -> np.ndarray:
        job = _Job(key, items)
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
        jobs, size = [first], len(first.items)
        for job in self._queue[1:]:
            if size >= self.max_batch_items:
                return jobs, True
            if job.key != first.key:
                continue
            if size + len(job.items) > self.max_batch_items:
                return jobs, True
            jobs.append(job)
            size += len(job.items)
        return jobs, size >= self.max_batch_items

    def _run(self, jobs: list[_Job]) -> None:
        """Embed ``jobs`` in one engine call; on a bad input, fail its job and run the rest again."""
        self.stats.requests += len(jobs)
        self.stats.items += sum(len(job.items) for job in jobs)
        first = True
        while jobs:
            self.stats.batches += 1
            self.stats.merged_batches += len(jobs) > 1
            self.stats.reruns += not first
            first = False
            try:
                vectors = _encode(self.engine, jobs[0].key, [item for job in jobs for item in job.items])
            except InputError as exc:
                owner, index = _owner(jobs, exc.index)
                if owner is None:
                    raise
                owner.future.set_exception(exc.at(index))
                jobs = [job for job in jobs if job is not owner]
                continue
            except Exception as exc:
                for job in jobs:
                    job.future.set_exception(exc)
                return
            start = 0
            for job in jobs:
                job.future.set_result(vectors[start : start + len(job.items)])
                start += len(job.items)
            return


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


def _encode(engine: JinaCLIPEngine, key: Key, items: list) -> np.ndarray:
    """One engine call for ``items`` of the kind ``key`` says; the accelerator running out of
    memory (after the engine halved the batch down to one input) is :class:`OutOfMemory`."""
    import torch

    modality, task, normalize = key
    try:
        if modality == "text":
            return engine.encode_text(items, task=task, normalize=normalize, show_progress=False)
        return engine.encode_image(items, normalize=normalize, show_progress=False)
    except torch.OutOfMemoryError:
        raise OutOfMemory("the accelerator ran out of memory; retry later, or with fewer or smaller inputs") from None


def _owner(jobs: list[_Job], index: int) -> tuple[_Job | None, int]:
    """The job holding item ``index`` of the merged batch, and the item's index in that job."""
    for job in jobs:
        if 0 <= index < len(job.items):
            return job, index
        index -= len(job.items)
    return None, index


async def gather_all(work: Iterable[Awaitable[T]]) -> list[T]:
    """Run awaitables together, results in order; the first failure cancels the others and is
    raised (``asyncio.gather`` would leave them running)."""
    running = [asyncio.ensure_future(task) for task in work]
    try:
        return list(await asyncio.gather(*running))
    finally:
        for task in running:
            task.cancel()
