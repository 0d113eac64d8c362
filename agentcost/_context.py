"""CostContext: the explicit handle through which everything is recorded."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from decimal import getcontext as _getcontext
from decimal import setcontext as _setcontext
from types import TracebackType

from agentcost._budget import (
    Budget,
    BudgetEvent,
    Decision,
    Guard,
    Remaining,
    Reservation,
    RunState,
    _Account,
    check_store,
    decide_llm,
    decide_tool,
    make_accounts,
    record_finish,
    remaining,
    reserve,
)
from agentcost._errors import BudgetError, InvalidAttributeType, ReservationError
from agentcost._money import EXACT, ZERO, to_money
from agentcost._pricing import PriceBook, default_price_book
from agentcost._sink import SpanSink, emit_span, resolve_sinks
from agentcost._span import KINDS, STATUSES, Span, merge_attrs, new_span_id
from agentcost._store import BudgetStore, Limit
from agentcost._tree import CostTree
from agentcost._usage import EMPTY_USAGE, ONE_REQUEST, Usage

__all__ = ["CostContext", "run"]

_LEAF_KINDS = KINDS - {"run", "agent"}
_INF = math.inf
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

    __slots__ = ("_accounts", "_book", "_limits", "_run", "span", "tree")

    span: Span
    """The node this context records on."""
    tree: CostTree
    """The whole run's tree."""

    def __init__(
        self, span: Span, tree: CostTree, run: RunState, accounts: tuple[_Account, ...], limits: tuple[Limit, ...]
    ) -> None:
        self.span = span
        self.tree = tree
        self._run = run
        self._book = run.book
        self._accounts = accounts
        """The budgets this node's spend counts against: its own (if any) and every ancestor's."""
        self._limits = limits
        """The run's store's scoped limits that this node's attribution matches."""

    @property
    def attrs(self) -> Mapping[str, str]:
        """The node's attribution, inherited by everything recorded under it."""
        return self.span.attrs

    @property
    def pricing(self) -> PriceBook:
        """The run's price book."""
        return self._book

    def child(
        self,
        name: str,
        *,
        kind: str = "agent",
        attrs: Mapping[str, str] | None = None,
        budget: Budget | None = None,
    ) -> CostContext:
        """Open a child node (an agent, a sub-agent, a step) and return its context.

        With a ``budget``, the child's whole subtree is limited by it, as well as by every ancestor's.
        """
        _check_name("name", name)
        if kind not in KINDS or kind == "run":
            raise ValueError(f"kind must be one of {sorted(KINDS - {'run'})}, got {kind!r}")
        accounts = make_accounts(self._accounts, budget, f"{kind} {name!r}")
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
        store = self._run.store
        limits = (
            store.matching(span._attrs) if store is not None and span._attrs is not self.span._attrs else self._limits
        )
        self.tree._attach(span)
        return CostContext(span, self.tree, self._run, accounts, limits)

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
        reservation: Reservation | None = None,
        notes: tuple[str, ...] = (),
    ) -> Span:
        """Record one LLM call (one attempt) and return its span.

        The call is priced with the run's :class:`PriceBook` (source ``computed``) unless the provider or gateway
        reported its ``cost`` (source ``provider``). A model the book cannot price gets ``cost=None`` and counts as
        unpriced, never as free.

        The call's spend counts against every budget up the tree. With a ``reservation`` (from :meth:`reserve`), the
        hold is settled with the actual cost in the same step; an unpriced call settles at the reserved amount.
        """
        if type(model) is not str or not model:
            _check_name("model", model)
        if type(usage) is not Usage:
            _check_usage(usage)
        if status != "ok":
            _check_status(status)
        # the optional arguments' checks, each skipped in one comparison when it is absent or of the usual type
        if provider is not None and type(provider) is not str:
            _check_optional_name("provider", provider)
        if requested_model is not None or error is not None:
            _check_optional_name("requested_model", requested_model)
            _check_optional_name("error", error)
        if started_at is not None and (type(started_at) is not float or not -_INF < started_at < _INF):
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
            notes,
        )
        if reservation is None and not self._accounts and not self._limits:
            self.tree._attach(span)
        else:
            self._attach_budgeted(span, reservation, 1)
        return span

    def _attach_budgeted(self, span: Span, reservation: Reservation | None, calls: int) -> None:
        """Attach a span and count its spend against the budgets, settling ``reservation``, in one locked step."""
        run = self._run
        if reservation is not None and reservation._run is not run:
            raise ReservationError("the reservation belongs to another run")
        usage = span.usage
        tokens = usage.input_tokens + usage.output_tokens
        cost = span.cost
        events: list[BudgetEvent] = []
        lock = self.tree._lock
        lock.acquire()
        previous = _getcontext()
        _setcontext(EXACT)  # budget arithmetic below uses plain + and -: make them exact (see _budget._exact_context)
        try:
            if reservation is not None:
                if reservation.state not in ("held", "expired"):
                    raise ReservationError(
                        f"reservation {reservation.id} was already {reservation.state}; a hold resolves exactly once"
                    )
                self.tree._attach_locked(span)
                if cost is None:
                    # an unpriced call settles at what was held: unknown is not zero (nor are its tokens, when it
                    # reported no usage at all)
                    cost = reservation.cost
                    if usage is ONE_REQUEST:
                        tokens = reservation.tokens
                spent = run.settle_locked(reservation, cost, tokens, calls, events)
            else:
                self.tree._attach_locked(span)
                spent = (ZERO if cost is None else cost, tokens, calls)
                for account in self._accounts:
                    account.spend(spent[0], tokens, calls, events)
        finally:
            _setcontext(previous)
            lock.release()
        if reservation is not None:
            if reservation.fail_open:
                span.notes = (*span.notes, "budget store unreachable: admitted fail-open")
            run.store_settle(reservation, spent)
        elif self._limits and spent is not None:
            run.store_charge(self._limits, spent)
        if events:
            run.emit(events)

    def _spend(self, cost: Decimal, tokens: int, calls: int) -> None:
        """Count spend that arrives without spans of its own to settle it (a remote subtree's totals, grafted) against
        the budgets up the tree and the node's scoped limits."""
        events: list[BudgetEvent] = []
        lock = self.tree._lock
        lock.acquire()
        previous = _getcontext()
        _setcontext(EXACT)
        try:
            for account in self._accounts:
                account.spend(cost, tokens, calls, events)
        finally:
            _setcontext(previous)
            lock.release()
        if self._limits:
            self._run.store_charge(self._limits, (cost, tokens, calls))
        if events:
            self._run.emit(events)

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
        reservation: Reservation | None = None,
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
                reservation=reservation,
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
            reservation=reservation,
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
        reservation: Reservation | None = None,
        notes: tuple[str, ...] = (),
        count_call: bool = True,
    ) -> Span:
        """Record any call: ``tool``, ``retrieval``, ``embedding``, ``http``, ``custom`` (or ``llm``).

        With a ``cost``, the source is ``manual`` unless ``cost_source`` says otherwise. Without one, a call that
        names a ``model`` with a ``usage`` is priced by the price book; anything else is unpriced. Spend counts
        against the budgets up the tree (``count_call=False``: a marker that is not a call, such as a skip).
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
            notes,
        )
        if reservation is None and (not count_call or (not self._accounts and not self._limits)):
            self.tree._attach(span)
        else:
            self._attach_budgeted(span, reservation, 1 if count_call else 0)
        return span

    def reserve(
        self, *, cost: Decimal | int | str = ZERO, tokens: int = 0, calls: int = 1, ttl: float | None = None
    ) -> Reservation:
        """Hold ``cost``, ``tokens`` and ``calls`` against this node's budget, every ancestor's and every matching
        scoped limit, in one atomic step; or raise ``BudgetExceeded`` and hold nothing.

        Resolve it with ``commit(actual)`` or ``release()``, or pass it to ``record_llm(..., reservation=...)``.
        Unresolved holds expire after ``ttl`` seconds (default: the run's ``hold_ttl``).
        """
        money = to_money(cost, what="cost")
        if type(tokens) is not int or tokens < 0 or type(calls) is not int or calls < 0:
            for what, count in (("tokens", tokens), ("calls", calls)):
                if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                    raise BudgetError(f"{what} must be a non-negative int, got {count!r}")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0):
            raise BudgetError(f"ttl must be a positive number of seconds, got {ttl!r}")
        return reserve(self, money, tokens, calls, ttl)

    def remaining(self) -> Remaining:
        """The tightest remaining cost, tokens and calls along the path to the root and the scoped limits
        (``None`` where nothing limits it)."""
        return remaining(self)

    @property
    def budgeted(self) -> bool:
        """Whether any budget (this node's or an ancestor's) or scoped limit applies here: adapters skip admission
        where it is ``False``."""
        return bool(self._accounts or self._limits)

    def decide(
        self,
        *,
        model: str,
        provider: str | None = None,
        input_tokens: int,
        max_output_tokens: int | None = None,
        optional: bool = False,
        price_context: Mapping[str, str] | None = None,
        fallbacks: Sequence[str] | None = None,
        degrade: bool = True,
    ) -> Decision:
        """Decide, before an LLM call, whether and how it may be made, for a caller that records or releases the
        decision itself (an adapter whose call spans two callbacks); otherwise prefer :meth:`guard`.

        ``fallbacks`` replaces the budget policy's chain of cheaper models for this call (the models the caller can
        actually switch to); ``degrade=False`` is for a caller that cannot apply a degradation: the call is allowed
        as asked or ``BudgetExceeded`` is raised.
        """
        _check_name("model", model)
        _check_optional_name("provider", provider)
        if fallbacks is not None:
            for name in fallbacks:
                _check_name("fallback model", name)
        return decide_llm(
            self,
            model=model,
            provider=provider,
            input_tokens=input_tokens,
            max_output_tokens=max_output_tokens,
            optional=optional,
            price_context=price_context,
            fallbacks=fallbacks,
            degrade=degrade,
        )

    def guard(
        self,
        *,
        model: str,
        provider: str | None = None,
        input_tokens: int,
        max_output_tokens: int | None = None,
        optional: bool = False,
        price_context: Mapping[str, str] | None = None,
    ) -> Guard:
        """Decide, before an LLM call, whether and how it may be made; use it in a ``with`` block.

        The block gets a :class:`Decision`. ``allow``: make the call as asked. ``degrade``: make it with
        ``decision.model`` and ``decision.max_output_tokens``. ``skip`` / ``finish``: do not make it. Record the
        call with ``decision.record(usage=...)``; leaving the block without recording releases the hold. When
        nothing fits, ``BudgetExceeded`` is raised before any call.
        """
        _check_name("model", model)
        _check_optional_name("provider", provider)
        return Guard(
            lambda: self.decide(
                model=model,
                provider=provider,
                input_tokens=input_tokens,
                max_output_tokens=max_output_tokens,
                optional=optional,
                price_context=price_context,
            )
        )

    def decide_tool(
        self, name: str, *, cost: Decimal | int | str | None = None, optional: bool = True, degrade: bool = True
    ) -> Decision:
        """:meth:`guard_tool` for a caller that records or releases the decision itself. ``degrade=False`` is for a
        caller that cannot keep the tool from running: the call is allowed or ``BudgetExceeded`` is raised."""
        _check_name("name", name)
        return decide_tool(
            self, name=name, cost=None if cost is None else to_money(cost), optional=optional, degrade=degrade
        )

    def guard_tool(self, name: str, *, cost: Decimal | int | str | None = None, optional: bool = True) -> Guard:
        """Decide, before a tool call, whether it may be made at ``cost`` (default: the price book's tool price).

        An optional tool that does not fit is skipped (``decision.action == "skip"``: answer the model
        "skipped: budget"); a required one raises ``BudgetExceeded``.
        """
        _check_name("name", name)
        money = None if cost is None else to_money(cost)
        return Guard(lambda: self.decide_tool(name, cost=money, optional=optional))

    def record_finish(self, reason: str, *, name: str = "finish") -> Span:
        """Record that this node wraps up early for lack of budget: a zero-cost ``skipped`` marker span carrying
        ``reason``, and a ``degraded`` budget event."""
        _check_name("reason", reason)
        return record_finish(self, reason, name)

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
        sinks = self.tree.sinks
        if sinks:
            emit_span(sinks, span, self.tree)

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
    budget: Budget | None = None,
    store: BudgetStore | None = None,
    hold_ttl: float = 600.0,
    on_event: Callable[[BudgetEvent], object] | Sequence[Callable[[BudgetEvent], object]] | None = None,
    sinks: Iterable[SpanSink] | None = None,
) -> CostContext:
    """Open the root node of a new cost tree and return its context; use it in a ``with`` block.

    ``attrs`` is the run's attribution (``team``, ``feature``, ``user``, ``session``, ``conversation``, ...),
    inherited by every node; ``pricing`` is the price book (default: genai-prices' catalog); ``budget`` limits the
    whole run; ``store`` holds scoped limits across runs (every call is admitted against each limit whose scope the
    run's attribution matches); ``hold_ttl`` is when unresolved reservations expire; ``on_event`` is called for
    every budget event (warnings, exceeded budgets, degradations) and may never break the run; ``sinks`` receive
    every finished span and budget event (the ledger's writer, the OpenTelemetry and Prometheus exporters; default:
    those attached with :func:`agentcost.add_sink`).
    """
    _check_name("name", name)
    book = default_price_book() if pricing is None else pricing
    if not isinstance(book, PriceBook):
        raise TypeError(f"pricing must be a PriceBook, got {type(book).__name__}")
    checked_store = check_store(store)
    if isinstance(hold_ttl, bool) or not isinstance(hold_ttl, int | float) or not hold_ttl > 0:
        raise BudgetError(f"hold_ttl must be a positive number of seconds, got {hold_ttl!r}")
    hooks: Sequence[Callable[[BudgetEvent], object]] = (
        () if on_event is None else (on_event,) if callable(on_event) else tuple(on_event)
    )
    root_attrs = merge_attrs({}, attrs)
    accounts = make_accounts((), budget, f"run {name!r}")
    root = Span(new_span_id(), None, "run", name, root_attrs, EMPTY_USAGE, ZERO, None, _now(), None)
    tree = CostTree(root)
    tree.sinks = resolve_sinks(sinks)
    run_state = RunState(tree, book, checked_store, float(hold_ttl), hooks)
    limits = checked_store.matching(root_attrs) if checked_store is not None else ()
    for listener in _run_listeners:
        listener(tree)
    return CostContext(root, tree, run_state, accounts, limits)
