"""Span sinks: where finished spans and budget events go (the ledger, OpenTelemetry, Prometheus).

The core hands each finished span to the run's sinks as it finishes: a leaf when it is recorded, a container (run,
agent, child node) when it ends. Sinks run on the agent's call path, under the tree's lock, so a sink must only
enqueue and return (the ledger's and the exporters' background workers do the rest); a sink that raises is counted
in :data:`sink_errors` and logged once, never re-raised into the agent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from agentcost._budget import BudgetEvent
    from agentcost._span import Span
    from agentcost._tree import CostTree

logger = logging.getLogger("agentcost")


@runtime_checkable
class SpanSink(Protocol):
    """Receives every finished span and every budget event of the runs it is attached to."""

    def on_span(self, span: Span, tree: CostTree) -> None:
        """``span`` has finished (``span.ended_at`` is set). Enqueue and return: this runs on the call path."""

    def on_event(self, event: BudgetEvent, tree: CostTree) -> None:
        """A budget of ``tree``'s run fired ``event``. Enqueue and return."""


_defaults: list[SpanSink] = []
sink_errors: dict[str, int] = {}
"""Exceptions raised by sinks, counted by sink class name (they are never re-raised into the agent)."""


def _check_sink(sink: object) -> SpanSink:
    if not isinstance(sink, SpanSink):
        raise TypeError(f"a sink needs on_span(span, tree) and on_event(event, tree), got {type(sink).__name__}")
    return sink


def add_sink(sink: SpanSink) -> None:
    """Attach ``sink`` to every run opened from now on in this process that is not given ``sinks=`` explicitly
    (runs opened by adapters and by :func:`agentcost.remote.serve` included)."""
    _check_sink(sink)
    if sink not in _defaults:
        _defaults.append(sink)


def remove_sink(sink: SpanSink) -> None:
    """Stop attaching ``sink`` to new runs (runs already open keep it)."""
    if sink in _defaults:
        _defaults.remove(sink)


def resolve_sinks(sinks: Iterable[SpanSink] | None) -> tuple[SpanSink, ...]:
    """The sinks of a new run: ``sinks`` as given, or the process defaults when ``None``."""
    if sinks is None:
        return tuple(_defaults)
    return tuple(_check_sink(sink) for sink in sinks)


def sink_failed(sink: object, error: Exception) -> None:
    name = type(sink).__name__
    count = sink_errors.get(name, 0) + 1
    sink_errors[name] = count
    if count == 1:
        logger.error("agentcost sink %s raised %r; counted in agentcost sink_errors, never re-raised", name, error)


def emit_span(sinks: Sequence[SpanSink], span: Span, tree: CostTree) -> None:
    for sink in sinks:
        try:
            sink.on_span(span, tree)
        except Exception as error:
            sink_failed(sink, error)


def emit_event(sinks: Sequence[SpanSink], event: BudgetEvent, tree: CostTree) -> None:
    for sink in sinks:
        try:
            sink.on_event(event, tree)
        except Exception as error:
            sink_failed(sink, error)
