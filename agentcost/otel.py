"""OpenTelemetry export of finished agentcost spans, following the GenAI semantic conventions.

:class:`OTelSink` is a :class:`~agentcost.SpanSink`: attach it to a run (``agentcost.run(..., sinks=[sink])``) or to
every run (``agentcost.add_sink(sink)``). On the agent's call path it only appends the finished span to a bounded
queue; a daemon thread of its own turns queued spans into the SDK's ``ReadableSpan`` and hands them to an
OpenTelemetry ``SpanProcessor`` (normally a ``BatchSpanProcessor``), which batches and exports them. A slow or dead
collector therefore never reaches the agent's thread: spans that do not fit are dropped, and counted.

Every agentcost run is one trace: the trace id is derived from the run's root span id (the same run always gets the
same trace id), span ids are agentcost's own 64-bit ids, and parentage is the cost tree's.

Costs are exported exactly once: ``gen_ai.usage.cost.amount`` is on the spans that incurred a cost (LLM and tool
calls, ...), never on the containers (run, agents) whose totals are roll-ups of their descendants; the roll-ups go
under ``agentcost.total_cost``, which no GenAI-aware backend sums. See ``docs/otel.md``.

This module imports the OpenTelemetry SDK (``pip install 'agentcost[otel]'``); ``import agentcost`` does not.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util.types import AttributeValue

from agentcost._usage import EMPTY_USAGE

if TYPE_CHECKING:
    from agentcost._budget import BudgetEvent
    from agentcost._span import Span
    from agentcost._tree import CostTree

__all__ = ["CountingExporter", "ExportStats", "OTelSink"]

logger = logging.getLogger("agentcost")

CURRENCY = "USD"
_OPERATIONS = {
    "llm": "chat",
    "embedding": "embeddings",
    "tool": "execute_tool",
    "agent": "invoke_agent",
    "run": "invoke_agent",
}
"""``gen_ai.operation.name`` by span kind; the other kinds (retrieval, http, custom) have none."""
_CLIENT_KINDS = frozenset(("llm", "embedding", "retrieval", "http"))
_CONTAINER_KINDS = frozenset(("run", "agent"))
_ERROR_STATUSES = frozenset(("error", "cancelled"))
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)
_MAX_PENDING_RUNS = 1024
"""Runs whose budget events wait for their root span to end; beyond it the oldest run's events are dropped."""
_MAX_EVENTS_PER_RUN = 128
_YIELD_EVERY = 16


@lru_cache(maxsize=4096)
def trace_id_of(root_id: int) -> int:
    """The OpenTelemetry trace id of the run whose root span id is ``root_id``: 128 bits derived deterministically
    (BLAKE2b) from the 64-bit root id, so every span of a run, whichever thread exports it, lands in one trace."""
    digest = hashlib.blake2b(root_id.to_bytes(8, "big"), digest_size=16, person=b"agentcost-trace").digest()
    return int.from_bytes(digest, "big") or 1


def _plain(amount: Decimal) -> str:
    """An amount as a plain decimal string, exact (``0.0000025``, never ``2.5E-6``)."""
    return format(amount, "f")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


# -- counting exporter -------------------------------------------------------------------------------------------------
class CountingExporter(SpanExporter):
    """Wraps a ``SpanExporter`` and counts what it really exported: spans of the batches it reported ``SUCCESS``
    for (``exported``), and of the batches it failed or raised on (``failed``).

    :class:`OTelSink` builds one around the exporter it is given; give one yourself when you build the span
    processor (``BatchSpanProcessor(CountingExporter(OTLPSpanExporter(...)))``). After :meth:`seal` (called by the
    sink's ``shutdown``), the counts no longer change: an export still in flight when the sink gave up on it stays
    counted as dropped, so ``dropped == generated - exported`` holds.
    """

    def __init__(self, inner: SpanExporter) -> None:
        if not callable(getattr(inner, "export", None)):
            raise TypeError(f"CountingExporter wraps a SpanExporter, got {type(inner).__name__}")
        self.inner = inner
        """The wrapped exporter."""
        self._lock = threading.Lock()
        self._exported = 0
        self._failed = 0
        self._sealed = False

    @property
    def exported(self) -> int:
        """Spans the inner exporter reported exported (``SpanExportResult.SUCCESS``)."""
        return self._exported

    @property
    def failed(self) -> int:
        """Spans of the batches the inner exporter failed (``FAILURE``) or raised on."""
        return self._failed

    def seal(self) -> None:
        """Freeze the counts: results arriving from now on are not counted."""
        with self._lock:
            self._sealed = True

    def _count(self, exported: int, failed: int) -> None:
        with self._lock:
            if not self._sealed:
                self._exported += exported
                self._failed += failed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export through the inner exporter and count the outcome; an exception is counted, then re-raised."""
        try:
            result = self.inner.export(spans)
        except BaseException:
            self._count(0, len(spans))
            raise
        if result is SpanExportResult.SUCCESS:
            self._count(len(spans), 0)
        else:
            self._count(0, len(spans))
        return result

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return bool(self.inner.force_flush(timeout_millis))


# -- stats -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExportStats:
    """What an :class:`OTelSink` did with the spans it was given.

    Before shutdown, ``generated == exported + dropped + pending``. After :meth:`OTelSink.shutdown`, nothing is
    pending: every span not confirmed exported by then is dropped, so ``dropped == generated - exported``.
    """

    generated: int
    """Finished spans the sink received."""
    exported: int
    """Spans the exporter reported exported."""
    dropped: int
    """Spans that will never be exported: refused by the full queue (or after shutdown), in a failed export, not
    convertible, or (after shutdown) still queued or in flight, or lost in the span processor's own queue."""
    pending: int
    """Spans on their way: in the sink's queue, in the span processor's queue, or in an export."""
    queued: int
    """Spans and budget events in the sink's own queue right now (never more than its ``max_queue_size``)."""
    queue_full: int
    """Spans refused because the sink's queue was full, or because the sink was shut down (part of ``dropped``)."""
    failed: int
    """Spans of failed exports (part of ``dropped``)."""
    events_dropped: int
    """Budget events that could not be attached to their run's root span."""


# -- the sink ----------------------------------------------------------------------------------------------------------
class OTelSink:
    """A span sink that exports finished agentcost spans to OpenTelemetry.

    ``target`` is where the spans go:

    - a ``SpanExporter`` (``OTLPSpanExporter(...)``, ``InMemorySpanExporter()``): the sink wraps it in a
      :class:`CountingExporter` and a ``BatchSpanProcessor`` whose queue is ``max_queue_size`` spans, exporting
      every ``schedule_delay`` seconds or as soon as ``max_export_batch_size`` spans are waiting;
    - a ``SpanProcessor`` you built (a ``BatchSpanProcessor``, a ``SimpleSpanProcessor``, your own): its exporter
      must be a :class:`CountingExporter`, found as the processor's ``span_exporter`` or passed as ``counter``, so the
      sink knows what was really exported.

    ``on_span`` appends to a queue of at most ``max_queue_size`` spans and returns (a full queue drops the new span,
    and counts it); the sink's daemon thread converts and hands them to the processor. ``resource`` describes the
    process (default: ``Resource.create()``, which reads ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``).

    Costs are exact decimal strings in ``gen_ai.usage.cost.amount`` (OpenTelemetry has no decimal type, and a double
    cannot hold most dollar amounts: summing doubles drifts). With ``cost_as_float=True`` the amount is a double
    instead, for backends that only aggregate numbers, and the exact string goes in ``agentcost.cost.exact``.

    Budget events become events (``agentcost.budget.warning``, ``.exceeded``, ``.degraded``) of the run's root span,
    exported when the run ends.

    Unless ``exit_timeout`` is ``None``, an ``atexit`` hook (registered here, removed by :meth:`shutdown`) shuts the
    sink down with that timeout, so the process exits promptly even when the collector does not answer.
    """

    def __init__(
        self,
        target: SpanExporter | SpanProcessor,
        *,
        max_queue_size: int = 2048,
        max_export_batch_size: int = 512,
        schedule_delay: float = 1.0,
        counter: CountingExporter | None = None,
        resource: Resource | None = None,
        cost_as_float: bool = False,
        exit_timeout: float | None = 2.0,
    ) -> None:
        if isinstance(max_queue_size, bool) or not isinstance(max_queue_size, int) or max_queue_size < 1:
            raise ValueError(f"max_queue_size must be a positive int, got {max_queue_size!r}")
        if not schedule_delay > 0:
            raise ValueError(f"schedule_delay must be positive, got {schedule_delay!r}")
        processor: SpanProcessor
        if isinstance(target, SpanProcessor):
            processor = target
            if counter is None:
                found = getattr(target, "span_exporter", None)
                if not isinstance(found, CountingExporter):
                    raise TypeError(
                        "OTelSink needs to know what the processor's exporter really exported: build the processor "
                        "around CountingExporter(your_exporter), or pass counter=, or pass the exporter itself"
                    )
                counter = found
        elif isinstance(target, SpanExporter):
            if counter is not None:
                raise TypeError("counter= is for a SpanProcessor target; an exporter is wrapped by the sink itself")
            counter = target if isinstance(target, CountingExporter) else CountingExporter(target)
            processor = BatchSpanProcessor(
                counter,
                max_queue_size=max_queue_size,
                schedule_delay_millis=schedule_delay * 1000,
                max_export_batch_size=min(max_export_batch_size, max_queue_size),
            )
        else:
            raise TypeError(f"OTelSink exports to a SpanExporter or a SpanProcessor, got {type(target).__name__}")
        if not isinstance(counter, CountingExporter):
            raise TypeError(f"counter must be a CountingExporter, got {type(counter).__name__}")
        self.processor = processor
        """The span processor the converted spans are handed to."""
        self.counter = counter
        """Counts what the exporter really exported."""
        self.max_queue_size = max_queue_size
        """The bound of the sink's own queue."""
        self.cost_as_float = cost_as_float
        self._resource = resource if resource is not None else Resource.create()
        from agentcost import __version__

        self._scope = InstrumentationScope("agentcost", __version__)
        self._queue: deque[Span | tuple[BudgetEvent, CostTree, int]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._wake_at = max(1, max_queue_size // 2)
        self._interval = min(0.1, schedule_delay)
        self._generated = 0
        self._queue_full = 0
        self._errors = 0
        self._events_dropped = 0
        self._pending_events: dict[int, list[tuple[BudgetEvent, int]]] = {}
        self._done_runs: dict[int, None] = {}  # root ids already converted, oldest first (an ordered set)
        self._flushes: list[_Ticket] = []
        self._closed = False
        self._final: tuple[int, int] | None = None  # (exported, failed) frozen at shutdown
        self._worker = threading.Thread(target=self._run, name="agentcost-otel", daemon=True)
        self._worker.start()
        self._exit_hook: Callable[[], None] | None = None
        if exit_timeout is not None:
            self._exit_hook = _exit_hook(weakref.ref(self), float(exit_timeout))
            atexit.register(self._exit_hook)

    # -- the call path -------------------------------------------------------------------------------------------------
    def on_span(self, span: Span, tree: CostTree) -> None:
        """Queue the finished ``span`` and return; a full queue (or a shut-down sink) drops it and counts it."""
        queue = self._queue
        with self._lock:
            self._generated += 1
            if self._closed or len(queue) >= self.max_queue_size:
                self._queue_full += 1
                return
            queue.append(span)
        if len(queue) >= self._wake_at and not self._wake.is_set():
            self._wake.set()

    def on_event(self, event: BudgetEvent, tree: CostTree) -> None:
        """Queue the budget ``event``, to be attached to the run's root span when it ends."""
        queue = self._queue
        with self._lock:
            if self._closed or len(queue) >= self.max_queue_size:
                self._events_dropped += 1
                return
            queue.append((event, tree, time.time_ns()))

    # -- stats, flush, shutdown ----------------------------------------------------------------------------------------
    def stats(self) -> ExportStats:
        """The counts so far (see :class:`ExportStats`)."""
        with self._lock:
            generated, queue_full, errors = self._generated, self._queue_full, self._errors
            queued = len(self._queue)
            final = self._final
        exported, failed = final if final is not None else (self.counter.exported, self.counter.failed)
        dropped = generated - exported if final is not None else queue_full + failed + errors
        return ExportStats(
            generated=generated,
            exported=exported,
            dropped=dropped,
            pending=max(0, generated - exported - dropped),
            queued=queued,
            queue_full=queue_full,
            failed=failed,
            events_dropped=self._events_dropped,
        )

    def force_flush(self, timeout: float = 30.0) -> bool:
        """Hand every span queued so far to the processor and flush it; ``False`` if that did not finish within
        ``timeout`` seconds (the flush goes on in the background)."""
        if self._closed:
            return False
        ticket = _Ticket()
        with self._lock:
            self._flushes.append(ticket)
        self._wake.set()
        if not ticket.done.wait(max(0.0, timeout)):
            return False
        return ticket.ok

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop accepting spans, hand what is queued to the processor and shut it down, waiting at most ``timeout``
        seconds; from then on every span not confirmed exported counts as dropped (an export still in flight, against
        a collector that does not answer, finishes in the background and is not counted).

        Returns whether the processor's shutdown finished in time. Calling it again waits for that again, for at
        most ``timeout`` seconds, without changing the counts.
        """
        with self._lock:
            already = self._closed
            self._closed = True
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        if not already:
            self._wake.set()
        self._worker.join(max(0.0, timeout))
        if not already:
            self.counter.seal()
            with self._lock:
                self._final = (self.counter.exported, self.counter.failed)
        return not self._worker.is_alive()

    # -- the worker ----------------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
            with self._lock:
                tickets, self._flushes = self._flushes, []
                closing = self._closed
            if tickets:
                try:
                    ok = bool(self.processor.force_flush())
                except Exception as error:
                    logger.error("agentcost OTel processor flush raised %r", error)
                    ok = False
                for ticket in tickets:
                    ticket.ok = ok
                    ticket.done.set()
            if closing:
                self._drain()
                try:
                    self.processor.shutdown()
                except Exception as error:
                    logger.error("agentcost OTel processor shutdown raised %r", error)
                return

    def _drain(self) -> None:
        queue = self._queue
        on_end = self.processor.on_end
        converted = 0
        while queue:
            item = queue.popleft()
            if isinstance(item, tuple):
                self._stash_event(*item)
                continue
            try:
                readable = self._convert(item)
                on_end(readable)
            except Exception as error:
                with self._lock:
                    self._errors += 1
                    first = self._errors == 1
                if first:
                    logger.error("agentcost OTel export of span %016x failed: %r (counted as dropped)", item.id, error)
            converted += 1
            if not converted % _YIELD_EVERY:
                # converting is CPU work under the GIL: hand the interpreter back to the agent's threads often, so
                # that none of them waits for the GIL the whole switch interval (5 ms)
                time.sleep(0)

    def _drop_events(self, count: int) -> None:
        with self._lock:
            self._events_dropped += count

    def _stash_event(self, event: BudgetEvent, tree: CostTree, at_ns: int) -> None:
        root_id = tree.root.id
        events = self._pending_events.get(root_id)
        if events is None:
            if root_id in self._done_runs:  # the root span is already exported: too late to attach
                self._drop_events(1)
                return
            if len(self._pending_events) >= _MAX_PENDING_RUNS:
                oldest = next(iter(self._pending_events))
                self._drop_events(len(self._pending_events.pop(oldest)))
            events = self._pending_events[root_id] = []
        if len(events) >= _MAX_EVENTS_PER_RUN:
            self._drop_events(1)
            return
        events.append((event, at_ns))

    def _convert(self, span: Span) -> ReadableSpan:
        root = span
        while root.parent is not None:
            root = root.parent
        trace_id = trace_id_of(root.id)
        parent = span.parent
        parent_context = None if parent is None else SpanContext(trace_id, parent.id, False, _SAMPLED)
        events: list[Event] = []
        if parent is None:
            stashed = self._pending_events.pop(span.id, ())
            events = [_budget_event(event, at_ns) for event, at_ns in stashed]
            done = self._done_runs
            done[span.id] = None
            if len(done) > _MAX_PENDING_RUNS:
                del done[next(iter(done))]
        status = Status(StatusCode.ERROR, span.error or span.status) if span.status in _ERROR_STATUSES else _UNSET
        started = _ns(span.started_at)
        ended = started if span.ended_at is None else max(started, _ns(span.ended_at))
        return ReadableSpan(
            name=span_name(span),
            context=SpanContext(trace_id, span.id, False, _SAMPLED),
            parent=parent_context,
            resource=self._resource,
            attributes=span_attributes(span, cost_as_float=self.cost_as_float, budget_events=len(events)),
            events=events,
            kind=SpanKind.CLIENT if span.kind in _CLIENT_KINDS else SpanKind.INTERNAL,
            status=status,
            start_time=started,
            end_time=ended,
            instrumentation_scope=self._scope,
        )

    def __repr__(self) -> str:
        stats = self.stats()
        return (
            f"<OTelSink generated={stats.generated} exported={stats.exported} dropped={stats.dropped} "
            f"pending={stats.pending}>"
        )


class _Ticket:
    """A :meth:`OTelSink.force_flush` request, answered by the worker."""

    __slots__ = ("done", "ok")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


def _exit_hook(ref: weakref.ref[OTelSink], timeout: float) -> Callable[[], None]:
    def shutdown_at_exit() -> None:
        sink = ref()
        if sink is not None:
            sink.shutdown(timeout)

    return shutdown_at_exit


# -- conversion --------------------------------------------------------------------------------------------------------
def _is_container(span: Span) -> bool:
    """A run, an agent, or any node opened with ``ctx.child``: its self cost is zero by construction."""
    return span.kind in _CONTAINER_KINDS or span.usage is EMPTY_USAGE or bool(span.children)


def _agent_name(span: Span) -> str | None:
    agent = span._attrs.get("agent")
    if agent:
        return agent
    node: Span | None = span
    while node is not None:
        if node.kind == "agent":
            return node.name
        node = node.parent
    return span.name if span.kind == "run" else None


def span_name(span: Span) -> str:
    """The OpenTelemetry span name: ``chat gpt-4o``, ``execute_tool search``, ``invoke_agent researcher``, as the
    GenAI semantic conventions name them (``{kind} {name}`` for the kinds they do not cover)."""
    operation = _OPERATIONS.get(span.kind)
    if operation is None:
        return f"{span.kind} {span.name}"
    if span.kind in ("llm", "embedding"):
        return f"{operation} {span.requested_model or span.model or span.name}"
    return f"{operation} {span.name}"


def span_attributes(span: Span, *, cost_as_float: bool = False, budget_events: int = 0) -> dict[str, AttributeValue]:
    """The OpenTelemetry attributes of ``span`` (see the module's docstring and ``docs/otel.md``)."""
    kind = span.kind
    attributes: dict[str, AttributeValue] = {"agentcost.kind": kind}
    operation = _OPERATIONS.get(kind)
    if operation is not None:
        attributes["gen_ai.operation.name"] = operation
    if span.provider:
        attributes["gen_ai.provider.name"] = span.provider
    requested = span.requested_model or span.model
    if requested:
        attributes["gen_ai.request.model"] = requested
    if span.model:
        attributes["gen_ai.response.model"] = span.model
    if kind == "tool":
        attributes["gen_ai.tool.name"] = span.name
    agent = _agent_name(span)
    if agent:
        attributes["gen_ai.agent.name"] = agent
    attrs = span._attrs
    conversation = attrs.get("conversation")
    if conversation:
        attributes["gen_ai.conversation.id"] = conversation
    for key, value in attrs.items():
        attributes[f"agentcost.attr.{key}"] = value
    container = _is_container(span)
    usage = span.usage
    if not container and (kind in ("llm", "embedding") or usage.input_tokens or usage.output_tokens):
        attributes["gen_ai.usage.input_tokens"] = usage.input_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        if usage.cache_read_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
        if usage.reasoning_tokens:
            attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning_tokens
    if usage.units:
        for unit, quantity in usage.units.items():
            attributes[f"agentcost.usage.{unit}"] = quantity if type(quantity) is int else str(quantity)
    cost = span.cost
    if cost is None:
        attributes["agentcost.cost.unpriced"] = True
    elif cost or not container:
        # self cost, on the span that incurred it: a backend summing gen_ai.usage.cost.amount counts each dollar once
        exact = _plain(cost)
        if cost_as_float:
            attributes["gen_ai.usage.cost.amount"] = float(cost)
            attributes["agentcost.cost.exact"] = exact
        else:
            attributes["gen_ai.usage.cost.amount"] = exact
        attributes["gen_ai.usage.cost.currency"] = CURRENCY
        if span.cost_source:
            attributes["gen_ai.usage.cost.source"] = span.cost_source
    if container:
        total = span.total_cost
        attributes["agentcost.total_cost"] = float(total) if cost_as_float else _plain(total)
        attributes["agentcost.total_unpriced"] = span.total_unpriced
    if span.status != "ok":
        attributes["agentcost.status"] = span.status
        if span.status in _ERROR_STATUSES:
            error = span.error or span.status
            head = error.split(":", 1)[0].strip()
            attributes["error.type"] = head if head.isidentifier() else "_OTHER"
    if span.notes:
        attributes["agentcost.notes"] = list(span.notes)
    if budget_events:
        attributes["agentcost.budget.events"] = budget_events
    return attributes


def _budget_event(event: BudgetEvent, at_ns: int) -> Event:
    attributes: dict[str, AttributeValue] = {
        "agentcost.budget.node": event.node,
        "agentcost.budget.detail": event.detail,
    }
    if event.metric is not None:
        attributes["agentcost.budget.metric"] = event.metric
    if event.spent is not None:
        attributes["agentcost.budget.spent"] = str(event.spent)
    if event.limit is not None:
        attributes["agentcost.budget.limit"] = str(event.limit)
    if event.kind == "exceeded":
        attributes["agentcost.budget.denied"] = event.denied
    return Event(f"agentcost.budget.{event.kind}", attributes, at_ns)
