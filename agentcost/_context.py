"""CostContext: the explicit handle through which everything is recorded."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from types import TracebackType

from agentcost._errors import InvalidAttributeType
from agentcost._money import ZERO, to_money
from agentcost._pricing import PriceBook, default_price_book
from agentcost._span import KINDS, STATUSES, Span, merge_attrs, new_span_id
from agentcost._tree import CostTree
from agentcost._usage import EMPTY_USAGE, ONE_REQUEST, Usage

__all__ = ["CostContext", "run"]

_LEAF_KINDS = KINDS - {"run", "agent"}
_now = time.time

# Observers of new runs (agentcost.testing.capture_runs uses this). Not a way to find "the current span": code
# that records always holds its CostContext.
_run_listeners: list[Callable[[CostTree], None]] = []


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {sorted(STATUSES)}, got {status!r}")


def _check_name(what: str, value: object) -> None:
    if type(value) is not str or not value:
        raise InvalidAttributeType(f"{what} must be a non-empty str, got {value!r}")


def _check_optional_name(what: str, value: object) -> None:
    if value is not None and type(value) is not str:
        raise InvalidAttributeType(f"{what} must be a str or None, got {value!r}")


def _check_time(what: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{what} must be seconds since the epoch (a finite float, as time.time() gives), got {value!r}")


def _check_usage(usage: object) -> Usage:
    if type(usage) is not Usage:
        raise TypeError(f"usage must be an agentcost.Usage, got {type(usage).__name__}")
    return usage


class CostContext:
    """The handle of one node of a cost tree: record calls on it, open children from it, pass it on explicitly.

    A ``CostContext`` is a context manager: leaving the ``with`` block ends its span (with status ``error`` if an
    exception escapes). Ending twice is harmless. Recording on an ended context still lands and counts: late
    asynchronous work is never lost.
    """

    __slots__ = ("_book", "span", "tree")

    span: Span
    """The node this context records on."""
    tree: CostTree
    """The whole run's tree."""

    def __init__(self, span: Span, tree: CostTree, book: PriceBook) -> None:
        self.span = span
        self.tree = tree
        self._book = book

    @property
    def attrs(self) -> Mapping[str, str]:
        """The node's attribution, inherited by everything recorded under it."""
        return self.span.attrs

    @property
    def pricing(self) -> PriceBook:
        """The run's price book."""
        return self._book

    def child(self, name: str, *, kind: str = "agent", attrs: Mapping[str, str] | None = None) -> CostContext:
        """Open a child node (an agent, a sub-agent, a step) and return its context."""
        _check_name("name", name)
        if kind not in KINDS or kind == "run":
            raise ValueError(f"kind must be one of {sorted(KINDS - {'run'})}, got {kind!r}")
        # a container's self cost is zero, not unknown: it incurs nothing itself
        span = Span(
            new_span_id(),
            self.span,
            kind,
            name,
            merge_attrs(self.span._attrs, attrs),
            EMPTY_USAGE,
            ZERO,
            None,
            _now(),
            None,
        )
        self.tree._attach(span)
        return CostContext(span, self.tree, self._book)

    def record_llm(
        self,
        *,
        model: str,
        usage: Usage,
        provider: str | None = None,
        cost: Decimal | int | str | None = None,
        requested_model: str | None = None,
        attrs: Mapping[str, str] | None = None,
        status: str = "ok",
        error: str | None = None,
        started_at: float | None = None,
        price_context: Mapping[str, str] | None = None,
    ) -> Span:
        """Record one LLM call (one attempt) and return its span.

        The call is priced with the run's :class:`PriceBook` (source ``computed``) unless the provider or gateway
        reported its ``cost`` (source ``provider``). A model the book cannot price gets ``cost=None`` and counts as
        unpriced, never as free.
        """
        if type(model) is not str or not model:
            _check_name("model", model)
        if type(usage) is not Usage:
            _check_usage(usage)
        if status != "ok":
            _check_status(status)
        if provider is not None or requested_model is not None or error is not None or started_at is not None:
            _check_optional_name("provider", provider)
            _check_optional_name("requested_model", requested_model)
            _check_optional_name("error", error)
            if started_at is not None:
                _check_time("started_at", started_at)
        now = _now()
        if cost is None:
            cost = self._book.price(model, usage, provider=provider, at=started_at, price_context=price_context)
            source = None if cost is None else "computed"
        else:
            cost = to_money(cost)
            source = "provider"
        span = Span(
            new_span_id(),
            self.span,
            "llm",
            model,
            merge_attrs(self.span._attrs, attrs) if attrs else self.span._attrs,
            usage,
            cost,
            source,
            now if started_at is None else started_at,
            now,
            model,
            requested_model,
            provider,
            status,
            error,
        )
        self.tree._attach(span)
        return span

    def record_tool(
        self,
        name: str,
        *,
        cost: Decimal | int | str | None = None,
        usage: Usage | None = None,
        attrs: Mapping[str, str] | None = None,
        status: str = "ok",
        error: str | None = None,
        started_at: float | None = None,
    ) -> Span:
        """Record one tool call. Without a ``cost``, the run's price book's per-call tool price is used."""
        if cost is None and status != "skipped":
            book_price = self._book.tool_price(name)
            return self.record(
                "tool",
                name,
                cost=book_price,
                usage=usage,
                attrs=attrs,
                status=status,
                error=error,
                started_at=started_at,
                cost_source=None if book_price is None else "computed",
            )
        return self.record(
            "tool",
            name,
            cost=0 if status == "skipped" and cost is None else cost,
            usage=usage,
            attrs=attrs,
            status=status,
            error=error,
            started_at=started_at,
        )

    def record(
        self,
        kind: str,
        name: str,
        *,
        cost: Decimal | int | str | None = None,
        usage: Usage | None = None,
        model: str | None = None,
        provider: str | None = None,
        cost_source: str | None = None,
        attrs: Mapping[str, str] | None = None,
        status: str = "ok",
        error: str | None = None,
        started_at: float | None = None,
    ) -> Span:
        """Record any call: ``tool``, ``retrieval``, ``embedding``, ``http``, ``custom`` (or ``llm``).

        With a ``cost``, the source is ``manual`` unless ``cost_source`` says otherwise. Without one, a call that
        names a ``model`` with a ``usage`` is priced by the price book; anything else is unpriced.
        """
        if kind not in _LEAF_KINDS:
            raise ValueError(f"kind must be one of {sorted(_LEAF_KINDS)}, got {kind!r}")
        _check_name("name", name)
        _check_optional_name("model", model)
        _check_optional_name("provider", provider)
        _check_optional_name("error", error)
        _check_status(status)
        if usage is not None:
            _check_usage(usage)
        if started_at is not None:
            _check_time("started_at", started_at)
        if cost_source is not None and cost_source not in ("provider", "computed", "estimated", "manual", "remote"):
            raise ValueError(f"unknown cost_source {cost_source!r}")
        source: str | None
        if cost is not None:
            money: Decimal | None = to_money(cost)
            source = cost_source or "manual"
        elif model is not None and usage is not None:
            money = self._book.price(model, usage, provider=provider, at=started_at)
            source = None if money is None else (cost_source or "computed")
        else:
            money, source = None, None
        now = _now()
        span = Span(
            new_span_id(),
            self.span,
            kind,
            name,
            merge_attrs(self.span._attrs, attrs),
            usage if usage is not None else ONE_REQUEST,
            money,
            source,
            now if started_at is None else started_at,
            now,
            model,
            None,
            provider,
            status,
            error,
        )
        self.tree._attach(span)
        return span

    def end(self, *, status: str | None = None, error: str | None = None) -> None:
        """End this node's span. The first end wins; later ones do nothing."""
        if status is not None:
            _check_status(status)
        _check_optional_name("error", error)
        span = self.span
        if span.ended_at is not None:
            return
        if status is not None:
            span.status = status
        if error is not None:
            span.error = error
        span.ended_at = _now()

    def __enter__(self) -> CostContext:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is None:
            self.end()
        elif isinstance(exc, asyncio.CancelledError):
            self.end(status="cancelled", error="cancelled")
        else:
            self.end(status="error", error=f"{type(exc).__name__}: {exc}")

    def __repr__(self) -> str:
        return f"<CostContext {self.span.kind} {self.span.name!r} total=${self.span.total_cost}>"


def run(
    name: str,
    *,
    attrs: Mapping[str, str] | None = None,
    pricing: PriceBook | None = None,
) -> CostContext:
    """Open the root node of a new cost tree and return its context; use it in a ``with`` block.

    ``attrs`` is the run's attribution (``team``, ``feature``, ``user``, ``session``, ``conversation``, ...),
    inherited by every node; ``pricing`` is the price book (default: genai-prices' catalog).
    """
    _check_name("name", name)
    book = default_price_book() if pricing is None else pricing
    if not isinstance(book, PriceBook):
        raise TypeError(f"pricing must be a PriceBook, got {type(book).__name__}")
    root = Span(new_span_id(), None, "run", name, merge_attrs({}, attrs), EMPTY_USAGE, ZERO, None, _now(), None)
    tree = CostTree(root)
    for listener in _run_listeners:
        listener(tree)
    return CostContext(root, tree, book)
