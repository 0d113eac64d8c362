"""Prometheus metrics: spend, tokens and calls counters and budget gauges, fed by a span sink.

:class:`PrometheusSink` is a :class:`~agentcost.SpanSink`: attach it to runs (``agentcost.run(..., sinks=[sink])``)
or to the whole process (:func:`agentcost.add_sink`), and expose ``sink.registry`` the way you expose any
``prometheus_client`` registry (:meth:`PrometheusSink.serve` for a quick one on loopback).

Counters count each span's *self* cost and usage when it finishes, so nothing is counted twice however deep the
tree. Labels are a bounded set, ``team, feature, model, provider, kind`` by default; attribute values that users
control (user, session, conversation, tenant ids, ...) become labels only when the constructor allow-lists them,
and every metric holds at most ``max_series`` label combinations plus one overflow series, so a label can never
blow up the scrape. Importing :mod:`agentcost` does not import ``prometheus_client``; importing this module does.
"""

from __future__ import annotations

import decimal
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Final
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

if TYPE_CHECKING:
    from agentcost._budget import BudgetEvent
    from agentcost._span import Span
    from agentcost._tree import CostTree

__all__ = ["DEFAULT_LABELS", "OVERFLOW", "SPAN_LABELS", "PrometheusSink"]

DEFAULT_LABELS: Final = ("team", "feature", "model", "provider", "kind")
"""The labels of the span metrics unless ``labels=`` says otherwise: few values each, chosen by the developer."""
SPAN_LABELS: Final = ("kind", "model", "provider", "status", "cost_source")
"""Labels read from the span's own fields (``None`` is ``""``); every other label is an attribution key."""
OVERFLOW: Final = "__overflow__"
"""The value of every label of a metric's overflow series."""

_BOUNDED: Final = frozenset((*DEFAULT_LABELS, "status", "cost_source"))
"""Labels that need no allow-listing: the defaults, and two span fields whose values are a closed set."""
_CALL_KINDS: Final = frozenset(("llm", "tool", "retrieval", "embedding", "http", "custom"))
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TOKEN_TYPES: Final = ("input", "output", "cache_read", "cache_write", "reasoning")
_BUDGET_METRICS: Final = ("cost", "tokens", "calls")
_RATIO: Final = decimal.Context(prec=17)
"""Spent over limit, divided in decimal then converted, so 0.0135 / 0.01 shows as 1.35."""


class _Series:
    """The children of one label combination in each span metric, resolved on first use (``labels()`` is slow)."""

    __slots__ = (
        "cache_read",
        "cache_write",
        "calls",
        "input",
        "key",
        "output",
        "reasoning",
        "spend",
        "unpriced",
    )

    def __init__(self, key: tuple[str, ...]) -> None:
        self.key = key
        self.spend: Counter | None = None
        self.calls: Counter | None = None
        self.unpriced: Counter | None = None
        self.input: Counter | None = None
        self.output: Counter | None = None
        self.cache_read: Counter | None = None
        self.cache_write: Counter | None = None
        self.reasoning: Counter | None = None


class _Budget:
    """The gauge children of one budget (a node or a scoped limit), resolved on first use."""

    __slots__ = ("limit", "name", "ratio", "refusals", "spent")

    def __init__(self, name: str) -> None:
        self.name = name
        self.spent: Gauge | None = None
        self.limit: Gauge | None = None
        self.ratio: dict[str, Gauge] = {}
        self.refusals: Counter | None = None


def _check_labels(labels: Iterable[str], allow: Iterable[str]) -> tuple[str, ...]:
    if isinstance(labels, str) or isinstance(allow, str):
        raise TypeError("labels= and allow= take a sequence of names, not one string")
    chosen = tuple(labels)
    allowed = frozenset(allow)
    for name in (*chosen, *allowed):
        if type(name) is not str:
            raise TypeError(f"label names must be str, got {name!r} ({type(name).__name__})")
    seen: set[str] = set()
    for name in chosen:
        if name in seen:
            raise ValueError(f"label {name!r} is listed twice in labels=")
        seen.add(name)
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(
                f"{name!r} is not a usable Prometheus label name (letters, digits and underscores, not starting with "
                "a digit or '__')"
            )
        if name not in _BOUNDED and name not in allowed:
            raise ValueError(
                f"label {name!r} is not one of the bounded labels ({', '.join(sorted(_BOUNDED))}): attribute values "
                f"such as user, session or tenant ids are user-controlled and can take unbounded values. To make it a "
                f"label anyway, list it in allow= too: PrometheusSink(labels=[..., {name!r}], allow=[{name!r}]) (the "
                "max_series cap still applies)"
            )
    unused = sorted(allowed - seen)
    if unused:
        raise ValueError(
            f"allow= lists {', '.join(map(repr, unused))}, which labels= does not: allow= only permits a label, "
            "add it to labels= to use it"
        )
    return chosen


def _span_field(field: str) -> Callable[[Span, Mapping[str, str]], str]:
    def get(span: Span, attrs: Mapping[str, str]) -> str:
        value: str | None = getattr(span, field)
        return value or ""

    return get


def _attribute(key: str) -> Callable[[Span, Mapping[str, str]], str]:
    def get(span: Span, attrs: Mapping[str, str]) -> str:
        return attrs.get(key, "")

    return get


def _key_function(labels: Sequence[str]) -> Callable[[Span], tuple[str, ...]]:
    """The function giving a span's label values, in the order of ``labels``."""
    if tuple(labels) == DEFAULT_LABELS:

        def default_key(span: Span) -> tuple[str, ...]:
            attrs = span.attrs
            return (
                attrs.get("team", ""),
                attrs.get("feature", ""),
                span.model or "",
                span.provider or "",
                span.kind,
            )

        return default_key

    getters = [_span_field(name) if name in SPAN_LABELS else _attribute(name) for name in labels]

    def key(span: Span) -> tuple[str, ...]:
        attrs = span.attrs
        return tuple([getter(span, attrs) for getter in getters])

    return key


def _to_float(amount: Decimal | int) -> float:
    """Money (or a count) as a Prometheus value: the one place a ``Decimal`` becomes a ``float``."""
    return float(amount)


class PrometheusSink:
    """A span sink that counts spend, tokens, calls and budget events in a ``prometheus_client`` registry.

    ``registry`` is where the metrics go: a new :class:`~prometheus_client.CollectorRegistry` by default (pass
    ``prometheus_client.REGISTRY`` to use the global one); one sink per registry, since metric names are unique in
    it. ``labels`` are the span metrics' labels, in order (default :data:`DEFAULT_LABELS`): ``kind``, ``model``,
    ``provider``, ``status`` and ``cost_source`` are read from the span, every other name from its attribution
    (``span.attrs``; a missing key is ``""``). A name outside ``team, feature, model, provider, kind, status,
    cost_source`` is taken only if it is also in ``allow``: user, session, conversation and tenant ids, and any
    other attribute key, are values users control, and a label per user is a series per user.

    ``max_series`` caps each metric's label combinations: once a metric holds that many, further combinations are
    counted in one overflow series whose label values are all :data:`OVERFLOW`, so totals stay right and the series
    count stays at most ``max_series + 1``; ``agentcost_label_overflow_total`` counts what went there. The budget
    gauges' ``budget`` label (a node such as ``run 'ticket-1234'`` or a limit such as ``limit team=search/day``) is
    capped the same way.

    Prometheus values are floats: each span's exact ``Decimal`` cost is converted to ``float`` here, and only here,
    when it is added to the spend counter. Sums carry float rounding (about 1e-16 relative per addition); the exact
    amounts stay in the cost tree and the ledger.

    The metrics (counters get ``_total`` in the exposition):

    - ``agentcost_spend_usd``, ``agentcost_calls``, ``agentcost_unpriced_calls``, and ``agentcost_input_tokens``,
      ``_output_tokens``, ``_cache_read_tokens``, ``_cache_write_tokens``, ``_reasoning_tokens`` (one counter per
      type: they nest, input includes the cache tokens and output the reasoning ones), labelled with ``labels``;
    - ``agentcost_budget_events{event, metric}``: ``warning``, ``exceeded`` (refusals included), ``degraded``;
    - ``agentcost_budget_refusals{budget}``: calls a budget refused;
    - gauges ``agentcost_budget_spent_usd{budget}``, ``agentcost_budget_limit_usd{budget}`` and
      ``agentcost_budget_used_ratio{budget, metric}``, set by warning and exceeded events: a budget's state when it
      last fired, not a live meter (the spend counter is that);
    - ``agentcost_label_overflow``: spans and budget events counted in an overflow series.
    """

    registry: CollectorRegistry
    """The registry holding the metrics: expose it to Prometheus."""
    labels: tuple[str, ...]
    """The span metrics' label names, in order."""
    max_series: int
    """The most label combinations a metric holds before the overflow series."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        labels: Iterable[str] = DEFAULT_LABELS,
        allow: Iterable[str] = (),
        max_series: int = 1000,
    ) -> None:
        if isinstance(max_series, bool) or not isinstance(max_series, int) or max_series < 1:
            raise ValueError(f"max_series must be an int >= 1, got {max_series!r}")
        if registry is not None and not isinstance(registry, CollectorRegistry):
            raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got {type(registry).__name__}")
        self.labels = _check_labels(labels, allow)
        self.max_series = int(max_series)
        self.registry = CollectorRegistry() if registry is None else registry
        self._key = _key_function(self.labels)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], _Series] = {}
        self._overflow = _Series((OVERFLOW,) * len(self.labels))
        self._budgets: dict[str, _Budget] = {}
        self._budget_overflow: _Budget | None = None

        names = self.labels
        reg = self.registry
        self._spend = Counter(
            "agentcost_spend_usd",
            "Self cost of finished spans, in US dollars (unpriced spans add nothing).",
            names,
            registry=reg,
        )
        self._calls = Counter(
            "agentcost_calls",
            "Recorded calls: finished leaf spans (llm, tool, retrieval, embedding, http, custom).",
            names,
            registry=reg,
        )
        self._unpriced = Counter(
            "agentcost_unpriced_calls",
            "Spans that could not be priced: their cost is not in the spend counter.",
            names,
            registry=reg,
        )
        self._tokens = {
            kind: Counter(f"agentcost_{kind}_tokens", f"{description} of finished spans.", names, registry=reg)
            for kind, description in zip(
                _TOKEN_TYPES,
                (
                    "Input tokens, cache reads and writes included,",
                    "Output tokens, reasoning included,",
                    "Input tokens read from the prompt cache",
                    "Input tokens written to the prompt cache",
                    "Output tokens spent on reasoning",
                ),
                strict=True,
            )
        }
        self._events = Counter(
            "agentcost_budget_events",
            "Budget events: warning (a threshold crossed), exceeded (over a limit, or a call refused), degraded.",
            ("event", "metric"),
            registry=reg,
        )
        # the combinations budgets produce exist from the start, at 0, so rate() and alerts see the first event
        self._event_children = {
            (kind, metric): self._events.labels(kind, metric)
            for kind, metric in (*((k, m) for k in ("warning", "exceeded") for m in _BUDGET_METRICS), ("degraded", ""))
        }
        self._overflowed = Counter(
            "agentcost_label_overflow",
            "Spans and budget events counted in an overflow series because a metric reached max_series.",
            registry=reg,
        )
        self._refusals = Counter(
            "agentcost_budget_refusals",
            "Calls a budget (node or scoped limit) refused before they were made (exceeded events with denied).",
            ("budget",),
            registry=reg,
        )
        self._budget_spent = Gauge(
            "agentcost_budget_spent_usd",
            "Cost spent on a budget (node or scoped limit) when it last fired a warning or exceeded event.",
            ("budget",),
            registry=reg,
        )
        self._budget_limit = Gauge(
            "agentcost_budget_limit_usd", "The cost limit of a budget that fired an event.", ("budget",), registry=reg
        )
        self._budget_ratio = Gauge(
            "agentcost_budget_used_ratio",
            "Spent over limit of a budget, for the metric (cost, tokens, calls) of its last event; above 1 is over.",
            ("budget", "metric"),
            registry=reg,
        )

    # -- the sink --------------------------------------------------------------------------------------------------
    def on_span(self, span: Span, tree: CostTree) -> None:
        """Count a finished span's self cost, tokens and call. Runs on the call path: a dict lookup and a few
        increments, with a lock only when the span brings a label combination not seen yet."""
        cost = span.cost
        usage = span.usage
        call = (
            span.kind in _CALL_KINDS
            and not span.children  # a container of a leaf kind (child(kind="tool")) is not itself a call
            and not (span.status == "skipped" and cost is not None and not cost)  # a skip marker is not a call
        )
        if not call and cost is not None and not cost and not usage.input_tokens and not usage.output_tokens:
            return  # a run or agent node: nothing of its own to count
        key = self._key(span)
        series = self._series.get(key)
        if series is None:
            series = self._admit(key)
        if cost is None:
            child = series.unpriced
            if child is None:
                child = series.unpriced = self._unpriced.labels(*series.key)
            child.inc()
        elif cost:
            child = series.spend
            if child is None:
                child = series.spend = self._spend.labels(*series.key)
            child.inc(float(cost))  # Decimal to float: Prometheus values are floats
        if call:
            child = series.calls
            if child is None:
                child = series.calls = self._calls.labels(*series.key)
            child.inc()
        if usage.input_tokens:
            child = series.input
            if child is None:
                child = series.input = self._tokens["input"].labels(*series.key)
            child.inc(usage.input_tokens)
            if usage.cache_read_tokens:
                child = series.cache_read
                if child is None:
                    child = series.cache_read = self._tokens["cache_read"].labels(*series.key)
                child.inc(usage.cache_read_tokens)
            if usage.cache_write_tokens:
                child = series.cache_write
                if child is None:
                    child = series.cache_write = self._tokens["cache_write"].labels(*series.key)
                child.inc(usage.cache_write_tokens)
        if usage.output_tokens:
            child = series.output
            if child is None:
                child = series.output = self._tokens["output"].labels(*series.key)
            child.inc(usage.output_tokens)
            if usage.reasoning_tokens:
                child = series.reasoning
                if child is None:
                    child = series.reasoning = self._tokens["reasoning"].labels(*series.key)
                child.inc(usage.reasoning_tokens)

    def on_event(self, event: BudgetEvent, tree: CostTree) -> None:
        """Count a budget event. A refusal also counts in its budget's ``agentcost_budget_refusals_total``; a warning
        or exceeded event with amounts sets its budget's gauges (scoped limits fire refusals only)."""
        metric = event.metric or ""
        child = self._event_children.get((event.kind, metric))
        if child is None:  # a kind or metric this version does not know: counted all the same
            child = self._events.labels(event.kind, metric)
        child.inc()
        if event.kind == "degraded":
            return  # its node is the degraded call's node, not a budget
        budget = self._budgets.get(event.node)
        if budget is None:
            budget = self._admit_budget(event.node)
        if event.denied:
            counter = budget.refusals
            if counter is None:
                counter = budget.refusals = self._refusals.labels(budget.name)
            counter.inc()
            return  # nothing was spent: no amounts to show
        spent, limit = event.spent, event.limit
        if spent is None or limit is None or metric not in _BUDGET_METRICS:
            return
        name = budget.name
        if metric == "cost":
            if budget.spent is None:
                budget.spent = self._budget_spent.labels(name)
            if budget.limit is None:
                budget.limit = self._budget_limit.labels(name)
            budget.spent.set(_to_float(spent))
            budget.limit.set(_to_float(limit))
        gauge = budget.ratio.get(metric)
        if gauge is None:
            gauge = budget.ratio[metric] = self._budget_ratio.labels(name, metric)
        if limit:
            gauge.set(float(_RATIO.divide(Decimal(spent), Decimal(limit))))
        else:  # a zero limit: any spend is infinitely over it
            gauge.set(float("inf") if spent else 0.0)

    # -- cardinality -----------------------------------------------------------------------------------------------
    def _admit(self, key: tuple[str, ...]) -> _Series:
        """The series of a label combination not seen yet: a new one while there is room, else the overflow."""
        with self._lock:
            series = self._series.get(key)
            if series is None:
                if len(self._series) < self.max_series:
                    series = self._series[key] = _Series(key)
                    return series
            else:
                return series
        self._overflowed.inc()
        return self._overflow

    def _admit_budget(self, node: str) -> _Budget:
        with self._lock:
            budget = self._budgets.get(node)
            if budget is not None:
                return budget
            if len(self._budgets) < self.max_series:
                budget = self._budgets[node] = _Budget(node)
                return budget
            if self._budget_overflow is None:
                self._budget_overflow = _Budget(OVERFLOW)
            overflow = self._budget_overflow
        self._overflowed.inc()
        return overflow

    # -- serving ---------------------------------------------------------------------------------------------------
    def serve(self, port: int = 0, *, addr: str = "127.0.0.1") -> WSGIServer:
        """Serve the registry at ``http://addr:port/metrics`` from a daemon thread and return the server.

        It binds to loopback unless told otherwise; ``port=0`` picks a free port (``server.server_port``). Stop it
        with ``server.shutdown()`` then ``server.server_close()``. In an application that already serves HTTP, mount
        ``prometheus_client.make_wsgi_app(sink.registry)`` (or the ASGI one) instead.
        """
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def __repr__(self) -> str:
        return f"<PrometheusSink labels={list(self.labels)} series={len(self._series)}/{self.max_series}>"
