"""Batch planning and the prefetching image pipeline."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jinaclip_integrations.engine.batching import decode_pool, length_sorted_batches, prepared_batches


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


def test_length_sorted_batches_wastes_little_padding():
    lengths = [5, 500, 6, 480, 7, 490, 5, 8]
    batches = length_sorted_batches(lengths, batch_size=4, max_tokens=10_000)
    assert [sorted(lengths[i] for i in b) for b in batches] == [[8, 480, 490, 500], [5, 5, 6, 7]]


def test_prepared_batches_keeps_order_and_runs_ahead():
    started = []

    def slow(i, item):
        started.append(i)
        time.sleep(0.01 * (i % 3))
        return item * 10

    batches = prepared_batches(slow, range(10), batch_size=4)
    first = next(batches)
    assert first == [0, 10, 20, 30]
    time.sleep(0.05)
    assert set(range(8)) <= set(started)  # the next batch was prepared while we held the first
    assert [x for b in batches for x in b] == [40, 50, 60, 70, 80, 90]


def test_prepared_batches_raises_the_first_error_in_input_order():
    def fn(i, item):
        if i in (3, 5):
            time.sleep(0.02 if i == 3 else 0)
            raise ValueError(f"bad {i}")
        return i

    with pytest.raises(ValueError, match="bad 3"):
        list(prepared_batches(fn, range(100), batch_size=4))


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
    time.sleep(0.2)
    assert len(ran) <= done + workers + 1  # without cancelling, 200 to 300 items would run


def test_a_forked_child_gets_its_own_pool():
    list(prepared_batches(lambda i, x: x, range(4), batch_size=2))  # the parent's pool exists
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_embed_in_child) == [[0, 1], [2, 3]]


def _embed_in_child():
    return list(prepared_batches(lambda i, x: x, range(4), batch_size=2))
