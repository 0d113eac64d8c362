"""CostTree: all spans of one run, with queries, serialization and rendering."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from agentcost._errors import TreeFormatError
from agentcost._money import ZERO, exact_add, format_usd, to_money
from agentcost._sink import SpanSink, emit_span
from agentcost._span import COST_SOURCES, KINDS, NO_ATTRS, STATUSES, Span, format_span_id, merge_attrs, parse_span_id
from agentcost._usage import Usage

__all__ = ["FORMAT", "CostTotal", "CostTree"]

FORMAT = "agentcost.tree"
VERSION = 1


@dataclass(frozen=True, slots=True)
class CostTotal:
    """The cost of a group of spans: the priced sum, and how many spans could not be priced."""

    cost: Decimal
    """Sum of the priced self costs."""
    unpriced: int
    """Number of spans in the group whose cost is unknown."""
    spans: int
    """Number of spans in the group."""

    def __str__(self) -> str:
        return format_usd(self.cost) + (f" + {self.unpriced} unpriced" if self.unpriced else "")


class CostTree:
    """Every span of one run. Safe to read while other threads and tasks record into it.

    Readers get exact numbers: recording a span and rolling its cost up to every ancestor happen under the tree's
    lock, and every query takes the same lock, so no reader sees a cost on a span but not yet on its ancestors.
    """

    __slots__ = ("_index", "_lock", "_spans", "events", "root", "sinks")

    root: Span
    """The root span (kind ``run``)."""

    def __init__(self, root: Span) -> None:
        self.root = root
        self._spans: list[Span] = [root]
        self._lock = threading.Lock()
        self._index: dict[int, Span] = {}
        self.events: list[Any] = []
        """Budget events of the run (``BudgetEvent``), in the order they happened."""
        self.sinks: tuple[SpanSink, ...] = ()
        """Where the run's finished spans and budget events go (set by :func:`agentcost.run`)."""

    # -- recording (used by CostContext) ------------------------------------------------------------------------------
    def _attach(self, span: Span) -> None:
        """Attach ``span`` under its parent and roll its cost up, atomically for readers."""
        lock = self._lock
        lock.acquire()
        try:
            self._attach_locked(span)
        finally:
            lock.release()

    def _attach_locked(self, span: Span) -> None:
        """:meth:`_attach` for a caller that holds the lock (budget settlement happens in the same step)."""
        parent = span.parent
        assert parent is not None
        cost = span.cost
        children = parent.children
        if children:
            children.append(span)  # type: ignore[attr-defined]
        else:
            parent.children = [span]
        self._spans.append(span)
        node: Span | None = parent
        if cost is None:
            while node is not None:
                node.total_unpriced += 1
                node = node.parent
        elif cost:
            while node is not None:
                node.total_cost = exact_add(node.total_cost, cost)
                node = node.parent
        if self.sinks and span.ended_at is not None:  # a finished leaf; containers go to the sinks when they end
            emit_span(self.sinks, span, self)

    # -- queries -------------------------------------------------------------------------------------------------------
    @property
    def total_cost(self) -> Decimal:
        """The priced cost of the whole run (see :attr:`unpriced` for what could not be priced)."""
        return self.root.total_cost

    @property
    def unpriced(self) -> int:
        """Number of spans in the run whose cost is unknown."""
        return self.root.total_unpriced

    @property
    def total(self) -> CostTotal:
        """The run's cost, unpriced count and span count, read together."""
        with self._lock:
            return CostTotal(self.root.total_cost, self.root.total_unpriced, len(self._spans))

    def __len__(self) -> int:
        return len(self._spans)

    def __iter__(self) -> Iterator[Span]:
        """Every span, in the order they were recorded (parents before children)."""
        with self._lock:
            spans = list(self._spans)
        return iter(spans)

    def spans(self) -> list[Span]:
        """A snapshot list of every span, in recording order."""
        with self._lock:
            return list(self._spans)

    def get(self, span_id: int) -> Span:
        """The span with id ``span_id``; ``KeyError`` if there is none."""
        with self._lock:
            if len(self._index) != len(self._spans):
                for span in self._spans[len(self._index) :]:
                    self._index[span.id] = span
            return self._index[span_id]

    def find(self, *, name: str | None = None, kind: str | None = None, **attrs: str) -> list[Span]:
        """Spans matching every criterion given: name, kind and attribute values."""
        with self._lock:
            spans = list(self._spans)
        return [
            span
            for span in spans
            if (name is None or span.name == name)
            and (kind is None or span.kind == kind)
            and all(span._attrs.get(key) == value for key, value in attrs.items())
        ]

    def _group(self, key_of: Callable[[Span], str | None]) -> dict[str | None, CostTotal]:
        costs: dict[str | None, Decimal] = {}
        unpriced: dict[str | None, int] = {}
        counts: dict[str | None, int] = {}
        # A span's cost never changes once attached: a snapshot of the list is a consistent view, and aggregating it
        # outside the lock keeps a long query from stalling the threads that record.
        for span in self.spans():
            key = key_of(span)
            cost = span.cost
            counts[key] = counts.get(key, 0) + 1
            if cost is None:
                unpriced[key] = unpriced.get(key, 0) + 1
            elif cost:
                costs[key] = exact_add(costs.get(key, ZERO), cost)
        return {key: CostTotal(costs.get(key, ZERO), unpriced.get(key, 0), count) for key, count in counts.items()}

    def cost_by(self, key: str) -> dict[str | None, CostTotal]:
        """Self costs grouped by the attribution ``key`` (e.g. ``"team"``); spans without it group under ``None``."""
        return self._group(lambda span: span._attrs.get(key))

    def cost_by_model(self) -> dict[str | None, CostTotal]:
        """Self costs grouped by served model; spans with no model (agents, tools) group under ``None``."""
        return self._group(lambda span: span.model)

    def cost_by_kind(self) -> dict[str | None, CostTotal]:
        """Self costs grouped by span kind."""
        return self._group(lambda span: span.kind)

    def cost_by_provider(self) -> dict[str | None, CostTotal]:
        """Self costs grouped by provider."""
        return self._group(lambda span: span.provider)

    def total_usage(self) -> Usage:
        """The sum of every span's usage."""
        with self._lock:
            spans = list(self._spans)
        total = Usage(requests=0)
        for span in spans:
            if span.usage.requests or span.usage.total_tokens or span.usage.units:
                total = total + span.usage
        return total

    # -- serialization -------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; money as decimal strings, ids as 16 hex digits. Lossless with :meth:`from_dict`."""
        with self._lock:
            spans = list(self._spans)
        out: list[dict[str, Any]] = []
        for span in spans:
            parent_attrs = span.parent._attrs if span.parent is not None else NO_ATTRS
            record: dict[str, Any] = {
                "id": format_span_id(span.id),
                "parent_id": None if span.parent is None else format_span_id(span.parent.id),
                "kind": span.kind,
                "name": span.name,
                "cost": None if span.cost is None else str(span.cost),
                "started_at": span.started_at,
                "ended_at": span.ended_at,
                "status": span.status,
            }
            # attributes are stored as the span's own additions to what it inherits: the round trip is exact and
            # a tree whose spans share their parent's attribution stays small
            own = {k: v for k, v in span._attrs.items() if parent_attrs.get(k) != v}
            if own:
                record["attrs"] = own
            usage = span.usage.to_dict()
            if usage:  # an absent usage reads back as Usage(): one request, no tokens
                record["usage"] = usage
            for field in ("cost_source", "model", "requested_model", "provider", "error"):
                value = getattr(span, field)
                if value is not None:
                    record[field] = value
            if span.notes:
                record["notes"] = list(span.notes)
            out.append(record)
        return {"format": FORMAT, "version": VERSION, "spans": out}

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> CostTree:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except ValueError as error:
            raise TreeFormatError(f"not JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CostTree:
        """Rebuild a tree from :meth:`to_dict` output; totals are recomputed, never trusted from the input."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise TreeFormatError(f"expected a mapping with format {FORMAT!r}")
        if data.get("version") != VERSION:
            raise TreeFormatError(f"unsupported tree version {data.get('version')!r}; this agentcost reads {VERSION}")
        records = data.get("spans")
        if not isinstance(records, list) or not records:
            raise TreeFormatError("'spans' must be a non-empty list")
        by_id: dict[int, Span] = {}
        tree: CostTree | None = None
        for position, record in enumerate(records):
            try:
                span = _span_from_record(record, by_id)
            except TreeFormatError as error:
                raise TreeFormatError(f"span #{position}: {error}") from None
            except (TypeError, ValueError, KeyError, InvalidOperation) as error:
                raise TreeFormatError(f"span #{position}: {error}") from None
            if span.id in by_id:
                raise TreeFormatError(f"span #{position}: duplicate id {format_span_id(span.id)}")
            by_id[span.id] = span
            if tree is None:
                if span.parent is not None:
                    raise TreeFormatError("the first span must be the root (no parent_id)")
                if span.kind != "run":
                    raise TreeFormatError(f"the root must be of kind 'run', not {span.kind!r}")
                tree = cls(span)
            elif span.parent is None:
                raise TreeFormatError(f"span #{position}: a second root")
            else:
                tree._attach(span)
        assert tree is not None
        return tree

    # -- rendering -----------------------------------------------------------------------------------------------------
    def render(self, *, max_depth: int | None = None, places: int | None = None) -> str:
        """An indented text tree: kind, name, model, then inclusive and self cost of every node.

        Amounts are exact unless ``places`` rounds them for display.
        """
        with self._lock:
            lines: list[tuple[str, str, str]] = []
            stack: list[tuple[Span, str, str, int]] = [(self.root, "", "", 0)]
            while stack:
                span, lead, child_lead, depth = stack.pop()
                label = f"{lead}{span.kind} {span.name}"
                if span.model and span.model != span.name:
                    label += f" [{span.model}]"
                if span.requested_model and span.requested_model != span.model:
                    label += f" (asked {span.requested_model})"
                if span.status != "ok":
                    label += f" !{span.status}"
                note = "; ".join(span.notes)
                total = format_usd(span.total_cost, places=places)
                if span.total_unpriced:
                    total += f" +{span.total_unpriced}?"
                own = "unpriced" if span.cost is None else format_usd(span.cost, places=places)
                lines.append((label, total, own + (f"  {note}" if note else "")))
                if max_depth is not None and depth >= max_depth:
                    continue
                children = list(span.children)
                for number, child in enumerate(reversed(children)):
                    last = number == 0
                    stack.append(
                        (
                            child,
                            child_lead + ("└─ " if last else "├─ "),
                            child_lead + ("   " if last else "│  "),
                            depth + 1,
                        )
                    )
        width = max(len(label) for label, _, _ in lines)
        total_width = max(len("total"), *(len(total) for _, total, _ in lines))
        header = f"{'':<{width}}  {'total':>{total_width}}  self"
        body = [f"{label:<{width}}  {total:>{total_width}}  {own}" for label, total, own in lines]
        footer = (
            "" if not self.root.total_unpriced else f"\n({self.root.total_unpriced} unpriced span(s): '+N?' marks them)"
        )
        return "\n".join([header, *body]) + footer

    def __repr__(self) -> str:
        return f"<CostTree {self.root.name!r} spans={len(self._spans)} total={self.total}>"


def _optional_str(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if value is not None and type(value) is not str:
        raise TreeFormatError(f"{field} must be a string or null, got {value!r}")
    return value


def _timestamp(value: object, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TreeFormatError(f"{field} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        raise TreeFormatError(f"{field} is out of range: {value!r}") from None
    if not math.isfinite(seconds):
        raise TreeFormatError(f"{field} must be finite, got {value!r}")
    return seconds


def _span_from_record(record: object, by_id: Mapping[int, Span]) -> Span:
    if not isinstance(record, Mapping):
        raise TreeFormatError(f"a span must be a mapping, got {type(record).__name__}")
    span_id = parse_span_id(record.get("id"))
    parent_text = record.get("parent_id")
    parent: Span | None = None
    if parent_text is not None:
        parent_id = parse_span_id(parent_text)
        if parent_id not in by_id:
            raise TreeFormatError(f"parent {parent_text} is not an earlier span")
        parent = by_id[parent_id]
    kind = record.get("kind")
    if kind not in KINDS:
        raise TreeFormatError(f"unknown kind {kind!r}")
    name = record.get("name")
    if type(name) is not str:
        raise TreeFormatError(f"name must be a string, got {name!r}")
    raw_cost = record.get("cost")
    if raw_cost is not None and type(raw_cost) is not str:
        raise TreeFormatError(f"cost must be a decimal string or null, got {raw_cost!r}")
    cost = None if raw_cost is None else to_money(raw_cost)
    source = _optional_str(record, "cost_source")
    if source is not None and source not in COST_SOURCES:
        raise TreeFormatError(f"unknown cost_source {source!r}")
    inherited = parent._attrs if parent is not None else NO_ATTRS
    usage_data = record.get("usage")
    if usage_data is not None and not isinstance(usage_data, Mapping):
        raise TreeFormatError(f"usage must be a mapping, got {type(usage_data).__name__}")
    usage = Usage.from_dict(usage_data) if usage_data is not None else Usage()
    started_at = _timestamp(record.get("started_at"), "started_at")
    if started_at is None:
        raise TreeFormatError("started_at is required")
    status = record.get("status", "ok")
    if status not in STATUSES:
        raise TreeFormatError(f"status must be one of {sorted(STATUSES)}, got {status!r}")
    return Span(
        span_id,
        parent,
        kind,
        name,
        merge_attrs(inherited, record.get("attrs")),
        usage,
        cost,
        source,
        started_at,
        _timestamp(record.get("ended_at"), "ended_at"),
        _optional_str(record, "model"),
        _optional_str(record, "requested_model"),
        _optional_str(record, "provider"),
        status,
        _optional_str(record, "error"),
        _notes(record.get("notes")),
    )


def _notes(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(type(note) is str for note in value):
        raise TreeFormatError(f"notes must be a list of strings, got {value!r}")
    return tuple(value)
