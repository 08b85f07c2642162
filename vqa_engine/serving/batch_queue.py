"""The queue between the decode threads and the inference thread: items in, batches out.

Torch-free and model-free, so batching is tested without threads or a model. Producers announce
an item before they start preparing it (``expect``) and then ``put`` it, or ``forget`` it when
its preparation failed; the consumer takes ``next_batch``. A batch waits for more items (up to
``max_wait_s``) only while announced items are still being prepared, so a lone question goes at
once and a burst is not cut into pieces by a slow decoder.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """Thread-safe; any number of producers, one consumer.

    ``keep`` is asked about each item as it is taken: items it refuses (say, their caller gave
    up) are dropped and never reach a batch.
    """

    def __init__(self, *, keep: Callable[[T], bool] | None = None) -> None:
        self._keep = keep
        self._cond = threading.Condition()
        self._items: deque[T] = deque()
        self._expected = 0  # announced, not yet put or forgotten
        self._closed = False

    def __len__(self) -> int:
        """Items waiting for a batch."""
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def expect(self) -> None:
        """An item is being prepared: a forming batch may wait for it."""
        with self._cond:
            self._expected += 1

    def put(self, item: T) -> bool:
        """Queue a prepared item (announced or not). False once closed: the item was not taken."""
        with self._cond:
            self._expected = max(0, self._expected - 1)
            if self._closed:
                self._cond.notify_all()
                return False
            self._items.append(item)
            self._cond.notify()
            return True

    def forget(self) -> None:
        """An announced item will never come (its preparation failed)."""
        with self._cond:
            self._expected = max(0, self._expected - 1)
            self._cond.notify()

    def next_batch(self, max_size: int, max_wait_s: float) -> list[T] | None:
        """Up to ``max_size`` items, blocking until there is at least one; None once closed.

        After the first item, waits up to ``max_wait_s`` for more, but only while announced items
        are still being prepared. The batch may come back empty when every item taken was
        refused by ``keep``.
        """
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + max_wait_s
            batch: list[T] = []
            while True:
                while self._items and len(batch) < max_size:
                    item = self._items.popleft()
                    if self._keep is None or self._keep(item):
                        batch.append(item)
                if len(batch) >= max_size or self._expected == 0 or self._closed:
                    return batch
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return batch
                self._cond.wait(remaining)

    def close(self) -> list[T]:
        """Take no more items and wake the consumer; returns the items still waiting."""
        with self._cond:
            self._closed = True
            leftovers = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return leftovers
