"""The ledger's model: the durable record of a finished span and of a budget event, what queries return, and the
engine-independent half of every ledger (validation, grouping keys, the shape of results).

A :class:`SpanRecord` is flat and self-contained: the span's effective attribution (inherited keys included), its
usage, its self cost as an exact ``Decimal`` (``None`` when unpriced), and the run it belongs to. Roll-ups are not
stored: they are sums over records, so nothing can be counted twice.
"""

from __future__ import annotations

import functools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from agentcost._errors import AgentCostError
from agentcost._money import EXACT, ZERO
from agentcost._span import format_span_id, parse_span_id

if TYPE_CHECKING:
    from agentcost._budget import BudgetEvent
    from agentcost._span import Span
    from agentcost._tree import CostTree

__all__ = [
    "BudgetEventRecord",
    "Ledger",
    "LedgerError",
    "RunSummary",
    "SpanRecord",
    "SpendRow",
]

ATTRIBUTION_COLUMNS: Final = {
    "team": "team",
    "feature": "feature",
    "user": "user_id",
    "session": "session",
    "conversation": "conversation",
    "tenant": "tenant",
    "agent": "agent",
}
"""Attribution keys with a column of their own (``user`` is ``user_id``: ``user`` is reserved in SQL)."""

GROUP_COLUMNS: Final = {
    **ATTRIBUTION_COLUMNS,
    "day": "day",
    "month": "substr(day, 1, 7)",
    "model": "model",
    "provider": "provider",
    "kind": "kind",
    "cost_source": "cost_source",
    "status": "status",
    "run": "run_id",
    "name": "name",
}
"""What spend can be grouped by: the attribution columns, the UTC ``day`` (``YYYY-MM-DD``) or ``month``
(``YYYY-MM``) a span started, the model, provider, kind, cost source, status, run id and span name."""

LEAF_KINDS: Final = ("llm", "tool", "retrieval", "embedding", "http", "custom")


class LedgerError(AgentCostError):
    """A ledger cannot be opened or used: bad arguments, a schema newer than this agentcost, an engine missing."""


def to_signed(span_id: int) -> int:
    """A 64-bit span id as the signed 64-bit integer SQL engines store (two's complement)."""
    return span_id - (1 << 64) if span_id >= 1 << 63 else span_id


def from_signed(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


@functools.lru_cache(maxsize=4096)
def _day_of(day_number: int) -> str:
    return datetime.fromtimestamp(day_number * 86_400, UTC).strftime("%Y-%m-%d")


def utc_day(timestamp: float) -> str:
    """The UTC day of ``timestamp`` (``YYYY-MM-DD``); cached by day number: the writer asks for it per span."""
    return _day_of(int(timestamp // 86_400))


def canonical(amount: Decimal) -> Decimal:
    """``amount`` without trailing zeros and never in exponent form, so that engines that keep different scales
    (SQLite's integer sub-units, PostgreSQL's NUMERIC) give identical results."""
    if amount == amount.to_integral_value():
        return amount.quantize(Decimal(1))
    return amount.normalize()


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span, as the ledger keeps it."""

    span_id: int
    run_id: int
    """The id of the run's root span."""
    parent_id: int | None
    kind: str
    name: str
    attrs: Mapping[str, str]
    """The span's effective attribution: inherited keys included."""
    started_at: float
    ended_at: float | None
    status: str
    cost: Decimal | None
    """Self cost in dollars, exact; ``None`` when the span could not be priced."""
    cost_source: str | None = None
    model: str | None = None
    requested_model: str | None = None
    provider: str | None = None
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    units: Mapping[str, str] = field(default_factory=dict)
    """Extra units (``web_searches``, ``gpu_seconds``), amounts as decimal strings."""
    notes: tuple[str, ...] = ()
    run_name: str = ""
    """The name of the run's root span."""

    @classmethod
    def from_span(cls, span: Span, tree: CostTree) -> SpanRecord:
        usage = span.usage
        units = usage.units
        parent = span.parent
        return cls(
            span_id=span.id,
            run_id=tree.root.id,
            parent_id=None if parent is None else parent.id,
            kind=span.kind,
            name=span.name,
            attrs=dict(span._attrs),
            started_at=span.started_at,
            ended_at=span.ended_at,
            status=span.status,
            cost=span.cost,
            cost_source=span.cost_source,
            model=span.model,
            requested_model=span.requested_model,
            provider=span.provider,
            error=span.error,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            requests=usage.requests,
            units={key: str(value) for key, value in units.items()} if units else {},
            notes=tuple(span.notes),
            run_name=tree.root.name,
        )

    @property
    def day(self) -> str:
        """The UTC day the span started, ``YYYY-MM-DD``."""
        return utc_day(self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (ids as 16 hex digits, money as a decimal string); the JSONL export's line."""
        return {
            "span_id": format_span_id(self.span_id),
            "run_id": format_span_id(self.run_id),
            "parent_id": None if self.parent_id is None else format_span_id(self.parent_id),
            "run_name": self.run_name,
            "kind": self.kind,
            "name": self.name,
            "attrs": dict(self.attrs),
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
            "error": self.error,
            "cost": None if self.cost is None else str(self.cost),
            "cost_source": self.cost_source,
            "currency": "USD",
            "model": self.model,
            "requested_model": self.requested_model,
            "provider": self.provider,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "cache_read_tokens": self.cache_read_tokens,
                "cache_write_tokens": self.cache_write_tokens,
                "reasoning_tokens": self.reasoning_tokens,
                "requests": self.requests,
                "units": dict(self.units),
            },
            "notes": list(self.notes),
        }


@dataclass(frozen=True, slots=True)
class BudgetEventRecord:
    """One budget event (a warning, an exceeded budget or a refusal, a degradation), as the ledger keeps it."""

    run_id: int
    at: float
    """When the ledger's writer received it (seconds since the epoch)."""
    kind: str
    node: str
    metric: str | None
    spent: str | None
    limit: str | None
    detail: str
    denied: bool
    attrs: Mapping[str, str] = field(default_factory=dict)
    """The run's attribution."""

    @classmethod
    def from_event(cls, event: BudgetEvent, tree: CostTree, at: float) -> BudgetEventRecord:
        return cls(
            run_id=tree.root.id,
            at=at,
            kind=event.kind,
            node=event.node,
            metric=event.metric,
            spent=None if event.spent is None else str(event.spent),
            limit=None if event.limit is None else str(event.limit),
            detail=event.detail,
            denied=event.denied,
            attrs=dict(tree.root._attrs),
        )


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Spend of one group: exact cost of the priced spans, and counts."""

    key: tuple[str | None, ...]
    """The group's values, in the order of ``by``."""
    cost: Decimal
    unpriced: int
    """Spans in the group that could not be priced (their cost is unknown, not zero)."""
    calls: int
    """Leaf spans (LLM, tool, retrieval, embedding, HTTP and custom calls)."""
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run: its root span, and the exact sum of the self costs recorded for it."""

    run_id: int
    name: str
    started_at: float
    ended_at: float | None
    status: str
    attrs: Mapping[str, str]
    cost: Decimal
    unpriced: int
    spans: int


_ENCODE_SORTED = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _json(value: Mapping[str, str] | Sequence[str]) -> str:
    # prebuilt encoders: json.dumps with options builds a new JSONEncoder on every call
    return _ENCODE_SORTED(value) if isinstance(value, Mapping) else _ENCODE(value)


def span_row(record: SpanRecord) -> tuple[Any, ...]:
    """The engine-independent column values of a record (cost columns are added by each engine)."""
    attrs = record.attrs
    return (
        to_signed(record.span_id),
        to_signed(record.run_id),
        None if record.parent_id is None else to_signed(record.parent_id),
        record.run_name,
        record.kind,
        record.name,
        *(attrs.get(key) for key in ATTRIBUTION_COLUMNS),
        _json(attrs) if attrs else "{}",
        record.day,
        record.started_at,
        record.ended_at,
        record.status,
        record.error,
        record.cost_source,
        record.model,
        record.requested_model,
        record.provider,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        record.requests,
        _json(record.units) if record.units else None,
        _json(list(record.notes)) if record.notes else None,
    )


SPAN_COLUMNS: Final = (
    "span_id",
    "run_id",
    "parent_id",
    "run_name",
    "kind",
    "name",
    *ATTRIBUTION_COLUMNS.values(),
    "attrs",
    "day",
    "started_at",
    "ended_at",
    "status",
    "error",
    "cost_source",
    "model",
    "requested_model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "requests",
    "units",
    "notes",
)


def record_from_row(row: Sequence[Any], cost: Decimal | None) -> SpanRecord:
    """The inverse of :func:`span_row` (``row`` in :data:`SPAN_COLUMNS` order)."""
    values = dict(zip(SPAN_COLUMNS, row, strict=True))
    parent = values["parent_id"]
    return SpanRecord(
        span_id=from_signed(values["span_id"]),
        run_id=from_signed(values["run_id"]),
        parent_id=None if parent is None else from_signed(parent),
        kind=values["kind"],
        name=values["name"],
        attrs=json.loads(values["attrs"]),
        started_at=float(values["started_at"]),
        ended_at=None if values["ended_at"] is None else float(values["ended_at"]),
        status=values["status"],
        cost=cost,
        cost_source=values["cost_source"],
        model=values["model"],
        requested_model=values["requested_model"],
        provider=values["provider"],
        error=values["error"],
        input_tokens=values["input_tokens"],
        output_tokens=values["output_tokens"],
        cache_read_tokens=values["cache_read_tokens"],
        cache_write_tokens=values["cache_write_tokens"],
        reasoning_tokens=values["reasoning_tokens"],
        requests=values["requests"],
        units=json.loads(values["units"]) if values["units"] else {},
        notes=tuple(json.loads(values["notes"])) if values["notes"] else (),
        run_name=values["run_name"],
    )


def event_row(record: BudgetEventRecord) -> tuple[Any, ...]:
    return (
        to_signed(record.run_id),
        record.at,
        record.kind,
        record.node,
        record.metric,
        record.spent,
        record.limit,
        record.detail,
        1 if record.denied else 0,
        _json(record.attrs) if record.attrs else "{}",
    )


EVENT_COLUMNS: Final = ("run_id", "at", "kind", "node", "metric", "spent", "limit_value", "detail", "denied", "attrs")


def event_from_row(row: Sequence[Any]) -> BudgetEventRecord:
    run_id, at, kind, node, metric, spent, limit, detail, denied, attrs = row
    return BudgetEventRecord(
        run_id=from_signed(run_id),
        at=float(at),
        kind=kind,
        node=node,
        metric=metric,
        spent=spent,
        limit=limit,
        detail=detail,
        denied=bool(denied),
        attrs=json.loads(attrs),
    )


def group_columns(by: Sequence[str]) -> list[str]:
    """The SQL expressions for ``by``; a key that is not a column is refused (the values are user input)."""
    if isinstance(by, str) or not by:
        raise LedgerError(f"group by a non-empty sequence of keys among {sorted(GROUP_COLUMNS)}, got {by!r}")
    unknown = [key for key in by if key not in GROUP_COLUMNS]
    if unknown:
        raise LedgerError(f"cannot group spend by {unknown}: choose among {sorted(GROUP_COLUMNS)}")
    return [GROUP_COLUMNS[key] for key in by]


def spend_key(by: Sequence[str], values: Sequence[Any]) -> tuple[str | None, ...]:
    """A group's key as returned: run ids as 16 hex digits, everything else as stored."""
    return tuple(
        format_span_id(from_signed(value)) if key == "run" and value is not None else value
        for key, value in zip(by, values, strict=True)
    )


def spend_rows(
    by: Sequence[str], rows: Iterable[Sequence[Any]], cost_of: Callable[[tuple[Any, ...], Any], Decimal]
) -> list[SpendRow]:
    """Query rows ``(group values..., stored cost sum, unpriced, calls, input tokens, output tokens)`` as
    :class:`SpendRow`s, the exact cost of each group given by the engine's ``cost_of(group values, stored sum)``;
    in the same order from every engine: by key, ``None`` first, strings by code point."""
    n = len(by)
    out = [
        SpendRow(
            key=spend_key(by, row[:n]),
            cost=canonical(cost_of(tuple(row[:n]), row[n])),
            unpriced=int(row[n + 1] or 0),
            calls=int(row[n + 2] or 0),
            input_tokens=int(row[n + 3] or 0),
            output_tokens=int(row[n + 4] or 0),
        )
        for row in rows
    ]
    return sorted(out, key=lambda row: tuple((value is not None, value or "") for value in row.key))


def run_summaries(
    rows: Iterable[Sequence[Any]], cost_of: Callable[[int, Any], Decimal], limit: int | None
) -> list[RunSummary]:
    """Query rows ``(root span id, name, started, ended, status, attrs JSON, stored cost sum, unpriced, spans)`` as
    :class:`RunSummary`s, most expensive first (at most ``limit``), the exact cost given by the engine's
    ``cost_of(stored root id, stored sum)``."""
    summaries = [
        RunSummary(
            run_id=from_signed(span_id),
            name=name,
            started_at=started_at,
            ended_at=ended_at,
            status=status,
            attrs=json.loads(attrs),
            cost=canonical(cost_of(span_id, cost)),
            unpriced=int(unpriced or 0),
            spans=int(count),
        )
        for span_id, name, started_at, ended_at, status, attrs, cost, unpriced, count in rows
    ]
    summaries.sort(key=lambda run: (-run.cost, run.started_at, run.run_id))
    return summaries if limit is None else summaries[: int(limit)]


def where_clause(
    since: float | None, until: float | None, where: Mapping[str, str] | None, *, run_id: int | None = None
) -> tuple[str, list[Any]]:
    """``WHERE`` over the start time (``since <= started_at < until``), attribution columns and the run.

    A bound at a UTC midnight (every day-range query: the CLI's, the analytics') is written on the ``day`` column
    instead, which is the same set of spans and lets the covering ``(day, team, ...)`` index answer the query."""
    parts: list[str] = []
    params: list[Any] = []
    for bound, op in ((since, ">="), (until, "<")):
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound):
                raise LedgerError(f"since and until are seconds since the epoch, got {bound!r}")
            if bound % 86_400 == 0:
                parts.append(f"day {op} ?")
                params.append(utc_day(bound))
            else:
                parts.append(f"started_at {op} ?")
                params.append(float(bound))
    for key, value in (where or {}).items():
        column = GROUP_COLUMNS.get(key)
        if column is None or key in ("day", "month"):
            allowed = sorted(set(GROUP_COLUMNS) - {"day", "month"})
            raise LedgerError(f"cannot filter on {key!r}: choose among {allowed} (and since/until for time)")
        if type(value) is not str:
            raise LedgerError(f"filter values are strings, got {key}={value!r}")
        parts.append(f"{column} = ?")
        if key == "run":
            try:
                params.append(to_signed(parse_span_id(value)))
            except ValueError as error:
                raise LedgerError(str(error)) from None
        else:
            params.append(value)
    if run_id is not None:
        parts.append("run_id = ?")
        params.append(to_signed(run_id))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


class Ledger(ABC):
    """A durable record of finished spans and budget events (SQLite or PostgreSQL; see :func:`open_ledger`).

    :meth:`write` is synchronous and idempotent on span id: a span written twice is stored once, the first write
    wins. Agents do not call it on their call path: a :class:`~agentcost.ledger.LedgerWriter` batches finished spans
    in the background. Queries return exact ``Decimal`` money.
    """

    url: str

    @abstractmethod
    def write(self, spans: Iterable[SpanRecord], events: Iterable[BudgetEventRecord] = ()) -> None:
        """Store ``spans`` and ``events`` in one transaction; when it returns, they are durable."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Run one read query (``?`` placeholders) and return its rows."""

    @abstractmethod
    def _cost(self, value: Any) -> Decimal | None:
        """A stored ``cost`` column value as exact money."""

    _cost_order = "cost"
    """The column to order by cost (SQLite's ``cost`` is text: it orders by its integer sub-units)."""

    def top_spans(
        self,
        n: int = 10,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[SpanRecord]:
        """The ``n`` priced spans with the highest self cost (the calls where the money went)."""
        if type(n) is not int or n < 1:
            raise LedgerError(f"n must be a positive int, got {n!r}")
        clause, params = where_clause(since, until, where)
        priced = f"{clause} AND cost IS NOT NULL" if clause else " WHERE cost IS NOT NULL"
        sql = (
            f"SELECT {', '.join(SPAN_COLUMNS)}, cost FROM spans{priced}"
            f" ORDER BY {self._cost_order} DESC, span_id LIMIT {n}"
        )
        return [record_from_row(row[:-1], self._cost(row[-1])) for row in self._query(sql, params)]

    def spans(
        self,
        *,
        run_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[SpanRecord]:
        """Spans in start order, filtered by run, start time and attribution (``where={"team": "search"}``)."""
        clause, params = where_clause(since, until, where, run_id=run_id)
        sql = f"SELECT {', '.join(SPAN_COLUMNS)}, cost FROM spans{clause} ORDER BY started_at, span_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [record_from_row(row[:-1], self._cost(row[-1])) for row in self._query(sql, params)]

    @abstractmethod
    def spend(
        self,
        by: Sequence[str],
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[SpendRow]:
        """Exact spend grouped by ``by`` (keys of :data:`GROUP_COLUMNS`: ``("team", "day")``), sorted by key."""

    @abstractmethod
    def runs(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[RunSummary]:
        """Runs (their root spans) started in the range, most expensive first, with their exact cost."""

    def budget_events(
        self, *, run_id: int | None = None, since: float | None = None, until: float | None = None
    ) -> list[BudgetEventRecord]:
        """Budget events in the order they were received, filtered by run and by when they were received."""
        parts: list[str] = []
        params: list[Any] = []
        if run_id is not None:
            parts.append("run_id = ?")
            params.append(to_signed(run_id))
        for op, bound in ((">=", since), ("<", until)):
            if bound is not None:
                parts.append(f"at {op} ?")
                params.append(float(bound))
        clause = (" WHERE " + " AND ".join(parts)) if parts else ""
        sql = f"SELECT {', '.join(EVENT_COLUMNS)} FROM budget_events{clause} ORDER BY seq"
        return [event_from_row(row) for row in self._query(sql, params)]

    def count(self) -> int:
        """The number of spans stored."""
        [(n,)] = self._query("SELECT COUNT(*) FROM spans", ())
        return int(n)

    @abstractmethod
    def close(self) -> None:
        """Close the ledger's connections."""

    def tree(self, run_id: int) -> CostTree:
        """The cost tree of one run, rebuilt from its records (spans of the run whose parent was not recorded are
        attached to the root)."""
        from agentcost._tree import FORMAT, VERSION, CostTree

        records = self.spans(run_id=run_id)
        if not records:
            raise LedgerError(f"no spans recorded for run {format_span_id(run_id)}")
        root = next((r for r in records if r.span_id == run_id), None)
        if root is None:
            raise LedgerError(f"run {format_span_id(run_id)} has spans but its root span was not recorded")
        ids = {record.span_id for record in records}
        out: list[dict[str, Any]] = []
        for record in [root, *(r for r in records if r is not root)]:
            parent = record.parent_id
            if record is not root and (parent is None or parent not in ids):
                parent = run_id
            item: dict[str, Any] = {
                "id": format_span_id(record.span_id),
                "parent_id": None if parent is None else format_span_id(parent),
                "kind": record.kind,
                "name": record.name,
                "cost": None if record.cost is None else str(record.cost),
                "started_at": record.started_at,
                "ended_at": record.ended_at,
                "status": record.status,
                "attrs": dict(record.attrs),
                "usage": {  # the tree format's usage (zeros and one request may be written out: they read back)
                    "input_tokens": record.input_tokens,
                    "output_tokens": record.output_tokens,
                    "cache_read_tokens": record.cache_read_tokens,
                    "cache_write_tokens": record.cache_write_tokens,
                    "reasoning_tokens": record.reasoning_tokens,
                    "requests": record.requests,
                    "units": dict(record.units),
                },
                "notes": list(record.notes),
            }
            for name in ("cost_source", "model", "requested_model", "provider", "error"):
                value = getattr(record, name)
                if value is not None:
                    item[name] = value
            out.append(item)
        return CostTree.from_dict({"format": FORMAT, "version": VERSION, "spans": out})

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sum_exact(values: Iterable[Decimal]) -> Decimal:
    total = ZERO
    for value in values:
        total = EXACT.add(total, value)
    return total
