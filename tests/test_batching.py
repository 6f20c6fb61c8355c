"""Batch planning, the prefetching image pipeline, and halving batches that run out of memory."""

from __future__ import annotations

import multiprocessing
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from jinaclip_integrations.engine.batching import decode_pool, length_sorted_batches, prepared_batches, split_on_oom
from jinaclip_integrations.engine.engine import BATCH_OVERHEAD_TOKENS


def _oom_above(limit: int, calls: list[int]):
    """A batch runner that, like a GPU with room for ``limit`` items, raises OOM above it."""

    def run(part: list[int]) -> list[int]:
        calls.append(len(part))
        if len(part) > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return [10 * i for i in part]

    return run


@given(n=st.integers(1, 40), limit=st.integers(1, 40))
def test_split_on_oom_covers_the_batch_in_order_with_parts_that_fit(n, limit):
    calls: list[int] = []
    parts = list(split_on_oom(_oom_above(limit, calls), list(range(n))))
    assert [i for part, _ in parts for i in part] == list(range(n))  # every item once, in order
    assert all(result == [10 * i for i in part] and len(part) <= limit for part, result in parts)
    assert calls[0] == n  # the whole batch is tried first
    assert len(parts) == 1 if n <= limit else len(parts) >= 2


def test_split_on_oom_reraises_when_one_item_does_not_fit():
    calls: list[int] = []
    with pytest.raises(torch.OutOfMemoryError):
        list(split_on_oom(_oom_above(0, calls), [0, 1, 2, 3]))
    assert calls == [4, 2, 1]  # halved down to a single item, then given up


def test_split_on_oom_lets_other_errors_through():
    def run(part: list[int]) -> None:
        raise RuntimeError("not a memory problem")

    with pytest.raises(RuntimeError, match="not a memory problem"):
        list(split_on_oom(run, [0, 1]))


@pytest.mark.parametrize("tower", ["text", "vision"])
def test_engine_halves_a_batch_that_runs_out_of_memory(engine, image_paths, monkeypatch, tower):
    """A forward pass over more than 2 items raises OOM: the engine retries in halves and
    returns the same vectors (atol 1e-5: only the padding of the smaller text batches differs)."""
    texts = ["short", "a somewhat longer text about a dog", "x " * 40, "y", "z z z", "ünïcödé"]
    images = image_paths[:5]
    expected = engine.encode_text(texts) if tower == "text" else engine.encode_image(images)
    module, sizes = getattr(engine.model, tower), []
    forward = module.forward

    def limited(x: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(x, *rest)

    monkeypatch.setattr(module, "forward", limited)
    monkeypatch.setitem(BATCH_OVERHEAD_TOKENS, engine.device.type, 10**9)  # the 6 texts in one batch
    got = engine.encode_text(texts, batch_size=8) if tower == "text" else engine.encode_image(images, batch_size=8)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sizes == ([6, 3, 1, 2, 3, 1, 2] if tower == "text" else [5, 2, 3, 1, 2])  # tried whole, then halves


@given(
    lengths=st.lists(st.integers(1, 3000), max_size=200),
    batch_size=st.integers(1, 64),
    max_tokens=st.integers(1, 20000),
)
def test_length_sorted_batches(lengths, batch_size, max_tokens):
    batches = length_sorted_batches(lengths, batch_size, max_tokens)
    flat = [i for batch in batches for i in batch]
    assert sorted(flat) == list(range(len(lengths)))  # every item exactly once
    assert [lengths[i] for i in flat] == sorted(lengths, reverse=True)  # longest first
    for batch in batches:
        assert 1 <= len(batch) <= batch_size
        padded = len(batch) * lengths[batch[0]]
        assert padded <= max_tokens or len(batch) == 1  # the budget holds unless one item alone exceeds it


def _plan_cost(lengths: list[int], batches: list[list[int]], overhead: int) -> int:
    return sum(overhead + len(batch) * max(lengths[i] for i in batch) for batch in batches)


@given(
    lengths=st.lists(st.integers(1, 600), min_size=1, max_size=8),
    batch_size=st.integers(1, 5),
    max_tokens=st.integers(1, 2000),
    overhead=st.integers(0, 1000),
)
def test_length_sorted_batches_cost_least(lengths, batch_size, max_tokens, overhead):
    """Against every way of cutting the sorted items into consecutive batches within the limits."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    best = None
    for cuts in range(2 ** (len(order) - 1)):  # bit k set: a batch ends after the k-th sorted item
        batches, current = [], []
        for k, i in enumerate(order):
            current.append(i)
            if k == len(order) - 1 or cuts >> k & 1:
                batches.append(current)
                current = []
        if all(len(b) <= batch_size and (len(b) == 1 or len(b) * lengths[b[0]] <= max_tokens) for b in batches):
            cost = _plan_cost(lengths, batches, overhead)
            best = cost if best is None else min(best, cost)
    got = length_sorted_batches(lengths, batch_size, max_tokens, overhead)
    assert _plan_cost(lengths, got, overhead) == best


def test_length_sorted_batches_pad_only_where_a_batch_costs_more():
    lengths = [5, 500, 6, 480, 7, 490, 5, 8]
    plan = lambda overhead: [sorted(lengths[i] for i in b) for b in length_sorted_batches(lengths, 4, 10_000, overhead)]  # noqa: E731
    assert plan(0) == [[500], [490], [480], [8], [7], [6], [5, 5]]  # free batches: no padding at all
    # padding 490 by 10 tokens costs less than a batch (16), padding 500 by 20 more
    assert plan(16) == [[500], [480, 490], [7, 8], [5, 5, 6]]
    assert plan(100) == [[480, 490, 500], [7, 8], [5, 5, 6]]
    # batches dearer than any padding: as few as the size allows
    assert plan(10**6) == [[8, 480, 490, 500], [5, 5, 6, 7]]


def test_batching_choices_do_not_change_the_vectors(engine, monkeypatch):
    """Texts of mixed lengths, embedded one per batch, in length-tight batches and in the
    fullest batches: the rows agree within atol 1e-5 (measured: max |diff| ~1e-7, fp32 tiny v2;
    only the padding differs, and padded positions are masked)."""
    texts = ["a cat", "a dog on a sofa " * 12, "x", "the quick brown fox " * 30, "ünïcödé text", "y " * 70]
    runs = []
    for overhead in (0, 10**9):
        monkeypatch.setitem(BATCH_OVERHEAD_TOKENS, engine.device.type, overhead)
        runs.append(engine.encode_text(texts, batch_size=8))
    runs.append(engine.encode_text(texts, batch_size=1))
    for got in runs[1:]:
        np.testing.assert_allclose(got, runs[0], atol=1e-5)


def test_prepared_batches_keeps_order_and_runs_ahead():
    started = []
    last_of_next_batch = threading.Event()

    def slow(i, item):
        started.append(i)
        if i == 7:
            last_of_next_batch.set()
        time.sleep(0.01 * (i % 3))  # items finish out of order
        return item * 10

    batches = prepared_batches(slow, range(10), batch_size=4)
    first = next(batches)
    assert first == [0, 10, 20, 30]
    # the generator is suspended while we hold the first batch: the next one starts all the same
    assert last_of_next_batch.wait(10), f"only {sorted(started)} started while the first batch was held"
    assert set(range(8)) <= set(started)
    assert [x for b in batches for x in b] == [40, 50, 60, 70, 80, 90]


def test_prepared_batches_raises_the_first_error_in_input_order():
    fifth_failed = threading.Event()

    def fn(i, item):
        if i == 5:
            fifth_failed.set()
            raise ValueError("bad 5")
        if i == 3:
            fifth_failed.wait(10)  # item 5 fails first (the pool has 2 workers or more)
            raise ValueError("bad 3")
        return i

    with pytest.raises(ValueError, match="bad 3"):
        list(prepared_batches(fn, range(100), batch_size=4))
    assert fifth_failed.is_set() or decode_pool()._max_workers == 1


@pytest.mark.parametrize("stop", ["error", "close"])
def test_queued_work_is_cancelled(stop):
    """The window (2 batches of 100) is larger than the pool: items still queued when the
    first item fails, or when the consumer closes the generator, are never run."""
    workers = decode_pool()._max_workers
    release = threading.Event()
    ran = []

    def fn(i, item):
        ran.append(i)
        if stop == "error" and i == 0:
            raise ValueError("bad 0")
        if stop == "error" or i >= 100:
            release.wait(10)  # keep the workers busy so that the rest stays queued
        return i

    batches = prepared_batches(fn, range(1000), batch_size=100)
    if stop == "error":
        with pytest.raises(ValueError, match="bad 0"):
            next(batches)
        done = 0
    else:
        assert next(batches) == list(range(100))
        batches.close()
        done = 100
    release.set()
    decode_pool().submit(lambda: None).result(timeout=10)  # the pool runs in order: what was queued has started
    assert len(ran) <= done + workers + 1  # without cancelling, 200 to 300 items would run


def test_a_forked_child_gets_its_own_pool():
    list(prepared_batches(lambda i, x: x, range(4), batch_size=2))  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_embed_in_child) == [[0, 1], [2, 3]]


def _embed_in_child():
    return list(prepared_batches(lambda i, x: x, range(4), batch_size=2))
