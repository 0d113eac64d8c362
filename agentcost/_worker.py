"""One daemon thread draining a bounded queue in batches: how the ledger's writer and the alert deliveries keep their
work off the agent's call path.

``put`` appends and returns (``False`` when the queue is full or closed: the owner counts the drop); the thread
hands batches to the owner's ``handle`` in order; ``flush`` waits until everything put before it was handled;
``close`` flushes, stops the thread and says how many items were left behind. Owners close their workers at
interpreter exit (they count and log what was lost).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["QueueWorker"]

logger = logging.getLogger("agentcost")

T = TypeVar("T")


class QueueWorker(Generic[T]):
    """A bounded queue of ``T`` and the thread that hands it, ``batch_size`` items at a time, to ``handle``.

    ``handle`` runs on the worker thread and should not raise (an exception is logged and the batch counts as
    handled: the owner's counters are the owner's business). ``interval`` is the longest an item waits before the
    thread looks at the queue again.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        *,
        max_queue: int,
        batch_size: int = 1,
        interval: float = 0.25,
    ) -> None:
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.interval = interval
        self._handle = handle
        self._queue: deque[T | threading.Event] = deque()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> bool:
        """Queue ``item``; ``False`` (nothing queued) when the queue is full or the worker is closed."""
        queue = self._queue
        if self._closed or len(queue) >= self.max_queue:
            return False
        queue.append(item)
        if len(queue) == 1:  # the thread drains the queue before it sleeps: waking it on the first item suffices
            self._wake.set()
        return True

    def queued(self) -> int:
        """Items waiting in the queue (not yet handed to ``handle``)."""
        return sum(1 for item in list(self._queue) if not isinstance(item, threading.Event))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued before this call was handled; ``False`` on timeout."""
        if not self._thread.is_alive():
            return self.queued() == 0
        done = threading.Event()
        self._queue.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float | None = 10.0) -> tuple[bool, int]:
        """Flush, then stop the thread: whether the flush finished in time, and how many items were left unhandled
        (dropped: the owner counts them)."""
        flushed = self.flush(timeout)
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        left = self.queued()
        self._queue.clear()
        return flushed, left

    def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closed:
                    return
                self._wake.wait(self.interval)
                self._wake.clear()
                continue
            batch: list[T] = []
            marker: threading.Event | None = None
            while queue and len(batch) < self.batch_size:
                item = queue.popleft()
                if isinstance(item, threading.Event):
                    marker = item
                    break  # handle what came before the flush, then answer it
                batch.append(item)
            if batch:
                try:
                    self._handle(batch)
                except Exception:
                    logger.exception("agentcost: %s failed to handle a batch", self._thread.name)
            if marker is not None:
                marker.set()
