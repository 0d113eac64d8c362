"""The background batch writer: the sink that takes finished spans off the agent's call path into a ledger.

``on_span`` appends to a bounded in-memory queue and returns (a span that finds the queue full is dropped and
counted: the agent is never blocked); a daemon thread drains the queue in batches, converts spans into records and
writes each batch in one transaction, retrying a failed write with exponential back-off (tenacity). A batch that
still fails is dropped, counted and logged. ``flush()`` waits until everything received before it is written;
``close()`` flushes and stops the thread, and runs at interpreter exit for a writer that was not closed.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from agentcost._ledger import BudgetEventRecord, Ledger, LedgerError, SpanRecord
from agentcost._worker import QueueWorker

if TYPE_CHECKING:
    from agentcost._budget import BudgetEvent
    from agentcost._span import Span
    from agentcost._tree import CostTree

__all__ = ["LedgerWriter", "WriterStats"]

logger = logging.getLogger("agentcost")

_EVENT: Final = object()


@dataclass(frozen=True, slots=True)
class WriterStats:
    """What a writer has done, spans and budget events together: ``received == written + dropped + queued``."""

    received: int
    written: int
    dropped: int
    """Items lost: the queue was full, or their batch could not be written after every retry."""
    queued: int
    failed_batches: int


class LedgerWriter:
    """A :class:`~agentcost.SpanSink` writing finished spans and budget events to ``ledger`` in the background.

    ``max_queue`` bounds the memory held (items waiting to be written); ``batch_size`` is the most items written in
    one transaction; ``flush_interval`` the longest a span waits before its batch starts (seconds); ``attempts`` the
    tries per batch before it is dropped.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        max_queue: int = 100_000,
        batch_size: int = 2_000,
        flush_interval: float = 0.25,
        attempts: int = 5,
    ) -> None:
        if not isinstance(ledger, Ledger):
            raise LedgerError(f"LedgerWriter needs a Ledger, got {type(ledger).__name__}")
        for name, value in (("max_queue", max_queue), ("batch_size", batch_size), ("attempts", attempts)):
            if type(value) is not int or value < 1:
                raise LedgerError(f"{name} must be a positive int, got {value!r}")
        if isinstance(flush_interval, bool) or not isinstance(flush_interval, int | float) or not flush_interval > 0:
            raise LedgerError(f"flush_interval must be positive seconds, got {flush_interval!r}")
        self.ledger = ledger
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            retry=retry_if_exception_type(Exception),
            reraise=True,
        )
        self._in_flight = 0
        self._dropped = 0
        self._written = 0
        self._failed_batches = 0
        self._counts_lock = threading.Lock()
        self._worker: QueueWorker[tuple[object, ...]] = QueueWorker(
            "agentcost-ledger-writer",
            self._handle,
            max_queue=max_queue,
            batch_size=batch_size,
            interval=self.flush_interval,
        )
        _open_writers.add(self)

    # -- the call path -------------------------------------------------------------------------------------------
    def on_span(self, span: Span, tree: CostTree) -> None:
        """Queue ``span`` (a reference: it is converted in the background); drop and count it if the queue is full."""
        if not self._worker.put((span, tree)):
            self._drop(1)

    def on_event(self, event: BudgetEvent, tree: CostTree) -> None:
        """Queue a budget event, stamped with the time it arrived."""
        if not self._worker.put((_EVENT, event, tree, time.time())):
            self._drop(1)

    def _drop(self, n: int) -> None:
        with self._counts_lock:
            self._dropped += n

    # -- control ---------------------------------------------------------------------------------------------------
    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything received before this call is written (or dropped); ``False`` on timeout."""
        return self._worker.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, then stop the background thread; ``False`` if the flush did not finish in ``timeout``. Whatever
        is left is counted as dropped (and logged)."""
        flushed, left = self._worker.close(timeout)
        _open_writers.discard(self)
        self._drop(left)
        stats = self.stats()
        if stats.dropped:
            logger.warning(
                "agentcost ledger writer for %s dropped %d of %d items (%d failed batches)",
                self.ledger.url,
                stats.dropped,
                stats.received,
                stats.failed_batches,
            )
        return flushed

    def stats(self) -> WriterStats:
        """A snapshot (``received`` is derived: what was written, dropped, or is still queued or being written)."""
        with self._counts_lock:
            written, dropped, failed, in_flight = self._written, self._dropped, self._failed_batches, self._in_flight
        queued = self._worker.queued() + in_flight
        return WriterStats(written + dropped + queued, written, dropped, queued, failed)

    # -- the background thread -------------------------------------------------------------------------------------
    def _handle(self, batch: list[tuple[object, ...]]) -> None:
        with self._counts_lock:
            self._in_flight = len(batch)
        spans: list[SpanRecord] = []
        events: list[BudgetEventRecord] = []
        lost = 0
        for item in batch:
            try:
                if item[0] is _EVENT:
                    _, event, tree, at = item
                    events.append(BudgetEventRecord.from_event(event, tree, at))  # type: ignore[arg-type]
                else:
                    span, tree = item
                    spans.append(SpanRecord.from_span(span, tree))  # type: ignore[arg-type]
            except Exception:  # a span that cannot be converted is dropped, counted and logged
                logger.exception("agentcost ledger writer could not convert a span; dropped")
                lost += 1
        n = len(spans) + len(events)
        try:
            # Retried whole: the ledger's writes are idempotent on span id and a failed transaction wrote nothing.
            if n:
                self._retrying(self.ledger.write, spans, events)
        except Exception as error:
            with self._counts_lock:
                self._dropped += n + lost
                self._in_flight = 0
                self._failed_batches += 1
                first = self._failed_batches == 1
            if first:
                logger.error("agentcost ledger %s: a batch of %d items was not written: %r", self.ledger.url, n, error)
            return
        with self._counts_lock:
            self._written += n
            self._dropped += lost
            self._in_flight = 0


_open_writers: weakref.WeakSet[LedgerWriter] = weakref.WeakSet()


@atexit.register
def _close_open_writers() -> None:
    for writer in list(_open_writers):
        writer.close(timeout=5.0)
