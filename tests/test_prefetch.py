"""The background-thread batch prefetcher: same items in the same order, errors, early exit."""

from __future__ import annotations

import threading
import time

import pytest

from avssl.train.prefetch import Prefetcher


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

    before = threading.active_count()
    for item in Prefetcher(endless(), depth=2):
        if item == 5:
            break
    time.sleep(0.3)
    assert threading.active_count() == before
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
    time.sleep(0.3)
    assert len(built) >= 3  # item 0 taken, items 1 and 2 queued
    assert list(it) == [1, 2, 3]
