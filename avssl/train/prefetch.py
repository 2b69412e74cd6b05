"""Prepare the next batches in a background thread while the model trains on the current one.

With ``data.num_workers=0`` a DataLoader builds each batch in the training process, between
steps, and the model waits for it. Worker processes avoid that but, on a machine with few cores,
compete with the training threads and add inter-process copies. A thread is enough here: batch
preparation is mostly torch ops that release the GIL, and the training step is too. The thread
runs its torch ops on one intra-op thread, leaving the others to the step. Batches keep their
order, so training stays deterministic (item draws are seeded per item, not by thread).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator

import torch

_DONE = object()


class Prefetcher:
    """Iterate ``iterable`` in a daemon thread, up to ``depth`` items ahead.

    Iterate it once. Leaving the loop early (``break``, an exception) closes the iterator, which
    stops the thread; :meth:`close` and the context manager do the same explicitly. An
    exception raised while producing an item is re-raised by the iteration.

    Args:
        iterable: e.g. a DataLoader.
        depth: items held ready (at least 1).
    """

    def __init__(self, iterable: Iterable, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(iterable,), name="avssl-prefetch", daemon=True
        )
        self._thread.start()

    def _put(self, entry) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, iterable: Iterable) -> None:
        # One intra-op thread here: with its own team of torch.get_num_threads() threads the
        # batch work preempts the training step's threads, which wait for their stragglers at
        # every parallel region. On 2 cores this made training about 10 % faster end to end
        # (README, Benchmarks). The setting is the calling thread's; the process-wide default
        # that new threads start from changes with it, so it is put back at the end.
        threads = torch.get_num_threads()  # a new thread starts at the process default
        torch.set_num_threads(1)
        try:
            for item in iterable:
                if not self._put((item, None)):
                    return
            self._put((_DONE, None))
        except BaseException as err:  # handed to the consumer, raised there
            self._put((_DONE, err))
        finally:
            torch.set_num_threads(threads)

    def __iter__(self) -> Iterator:
        try:
            while True:
                item, err = self._queue.get()
                if item is _DONE:
                    if err is not None:
                        raise err
                    return
                yield item
        finally:  # also when the consumer breaks out of its loop (the generator is closed)
            self.close()

    def close(self) -> None:
        """Stop the thread (it finishes the item it is building) and drop what is queued."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.1)

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
