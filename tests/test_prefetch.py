"""The background-thread batch prefetcher: same items in the same order, errors, early exit."""

from __future__ import annotations

import threading
import time

import pytest

from avssl.train.prefetch import Prefetcher


def _within(seconds: float, done) -> bool:
    """Poll ``done()`` every 10 ms until it holds or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_same_items_same_order():
    assert list(Prefetcher(range(100), depth=3)) == list(range(100))
    assert list(Prefetcher([], depth=1)) == []


def test_producer_error_is_raised_by_the_iteration():
    def items():
        yield 1
        raise ValueError("bad item")

    it = iter(Prefetcher(items()))
    assert next(it) == 1
    with pytest.raises(ValueError, match="bad item"):
        next(it)


def test_breaking_out_stops_the_thread():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = set(threading.enumerate())
    prefetcher = Prefetcher(endless(), depth=2)
    (thread,) = [t for t in threading.enumerate() if t not in before and t.name == "avssl-prefetch"]
    for item in prefetcher:
        if item == 5:
            break
    assert _within(10, lambda: not thread.is_alive())
    assert len(produced) <= 5 + 1 + 2 + 1  # at most depth (+ the one being built) ahead


def test_the_thread_runs_ahead():
    """While the consumer is slow, the next items are already built."""
    built = []

    def items():
        for i in range(4):
            built.append(i)
            yield i

    it = iter(Prefetcher(items(), depth=2))
    assert next(it) == 0
    assert _within(10, lambda: len(built) >= 3)  # item 0 taken, items 1 and 2 queued
    assert list(it) == [1, 2, 3]


def test_the_thread_builds_on_one_intra_op_thread_and_leaves_the_default():
    """The batches' torch ops keep off the training step's threads; the consumer's setting and
    the default of threads started later are unchanged."""
    import torch

    before = torch.get_num_threads()

    def items():
        for _ in range(3):
            yield torch.get_num_threads()

    assert list(Prefetcher(items(), depth=1)) == [1, 1, 1]
    assert torch.get_num_threads() == before
    later = []
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [before]
