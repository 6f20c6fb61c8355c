"""Batch planning (length-sorted text batches), the image preparation pipeline, and running a
batch so that running out of accelerator memory halves it instead of failing."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int, overhead_tokens: int = 0
) -> list[list[int]]:
    """Group item indices into batches of similar length, longest first, padding as little as
    a batch's fixed cost is worth.

    A batch holds at most ``batch_size`` items and at most ``max_tokens`` padded tokens
    (``len(batch) * longest``), so a few very long texts never share a batch with many others.
    A single item longer than ``max_tokens`` still gets a batch of its own. Within those limits
    the items, sorted by length, are cut into the consecutive batches that cost least, a batch
    costing its padded tokens plus ``overhead_tokens`` (what one more forward pass costs, in
    tokens' worth of compute): with no overhead, no token of padding is spent that another
    batch could save; with a large one, batches are as full as the limits allow. Filling
    batches greedily instead pads a 500-token text with a 20-token one as soon as the long
    texts run out mid-batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    sorted_lengths = [lengths[i] for i in order]
    n = len(order)
    # cost[j]: least cost of the first j sorted items; start[j]: where the last of its batches starts
    cost = [0] * (n + 1)
    start = [0] * (n + 1)
    for j in range(1, n + 1):
        best, best_k = None, j - 1
        for k in range(j - 1, max(0, j - batch_size) - 1, -1):
            padded = (j - k) * sorted_lengths[k]  # the longest of items k..j-1 is the k-th
            if padded > max_tokens and k < j - 1:
                break  # the longest only grows with the batch
            total = cost[k] + overhead_tokens + padded
            if best is None or total <= best:  # ties: the fuller batch
                best, best_k = total, k
        cost[j], start[j] = best, best_k
    batches: list[list[int]] = []
    j = n
    while j:
        batches.append(order[start[j] : j])
        j = start[j]
    return batches[::-1]


def split_on_oom(run: Callable[[list[int]], R], batch: list[int]) -> Iterator[tuple[list[int], R]]:
    """Yield ``(part, run(part))`` for parts that together cover ``batch``, in order.

    The whole batch is tried first. A part that runs out of accelerator memory
    (``torch.OutOfMemoryError``) is halved and both halves are tried in its place, so one batch
    too large for the memory left (long texts, another process on the GPU) costs a retry
    instead of the request. A single item that does not fit re-raises the error.
    """
    todo = [batch]
    while todo:
        part = todo.pop()
        try:
            result, fits = run(part), True
        except torch.cuda.OutOfMemoryError:
            if len(part) == 1:
                raise
            fits = False
        if fits:
            yield part, result
            continue
        # out of the except block, so the failed attempt's tensors are already freed
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = len(part) // 2
        todo += [part[half:], part[:half]]


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _forget_pool_after_fork() -> None:
    """A forked child has none of the parent's threads: it starts a pool of its own."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def decode_pool() -> ThreadPoolExecutor:
    """The process-wide thread pool that decodes and preprocesses images (PIL releases the GIL
    while decoding and resizing, so threads use every core)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1), thread_name_prefix="jinaclip-decode")
        return _POOL


def prepared_batches(
    fn: Callable[[int, T], R], items: Iterable[T], batch_size: int, *, prefetch_batches: int = 1
) -> Iterator[list[R]]:
    """Yield ``[fn(i, item) for each item of a batch]``, batch after batch, in input order.

    ``fn`` runs on :func:`decode_pool` threads: while the consumer holds one batch, the next
    ``prefetch_batches`` batches are being prepared, so the model computes one batch while the
    next is decoded. The first exception raised by ``fn`` (in input order) propagates, and work
    not yet started is cancelled (also when the consumer closes the generator early).
    """
    pool = decode_pool()
    window = batch_size * (1 + prefetch_batches)
    pending: deque[Future[R]] = deque()
    source = iter(enumerate(items))

    def fill() -> None:
        while len(pending) < window:
            nxt = next(source, None)
            if nxt is None:
                return
            pending.append(pool.submit(fn, *nxt))

    try:
        fill()
        while pending:
            batch = [pending.popleft().result() for _ in range(min(batch_size, len(pending)))]
            fill()
            yield batch
    finally:
        for future in pending:
            future.cancel()
