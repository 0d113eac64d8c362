"""Budgets on nodes of the tree: admission before the call, settlement after it, and the degradation ladder.

Every budgeted node has an account (spent and held cost, tokens and calls), kept under the tree's lock. A
reservation holds an amount on the node's account and on every ancestor's, and on every scoped limit of the run's
store, in one step: either all of them hold it or none does. Recording a call on a node adds its actual spend to the
same accounts; recording it *with* a reservation settles that hold in the same locked step, so a call's cost counts
exactly once.
"""

from __future__ import annotations

import decimal
import itertools
import logging
import math
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from agentcost._errors import BudgetError, BudgetExceeded, ReservationError
from agentcost._money import EXACT, ZERO, exact_sub, format_usd, to_money
from agentcost._pricing import PriceBook
from agentcost._sink import emit_event
from agentcost._store import Amount, BudgetStore, Limit, _refusal, check_max_cost, check_warn_at
from agentcost._usage import Usage

if TYPE_CHECKING:
    from agentcost._context import CostContext
    from agentcost._span import Span
    from agentcost._tree import CostTree

__all__ = [
    "Budget",
    "BudgetEvent",
    "Decision",
    "DegradePolicy",
    "Remaining",
    "Reservation",
]

logger = logging.getLogger("agentcost")

Action = Literal["allow", "degrade", "skip", "finish", "deny"]
_MILLION = Decimal(1_000_000)


def _count(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BudgetError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class DegradePolicy:
    """The ladder tried, in order, when a call's estimate does not fit: cap the output tokens, fall back to cheaper
    models, skip an optional call, finish early. Only when nothing fits is ``BudgetExceeded`` raised."""

    fallbacks: Mapping[str, str] = field(default_factory=dict)
    """Cheaper model for a model, followed as a chain: ``{"gpt-4o": "gpt-4o-mini", "gpt-4o-mini": "gpt-4.1-nano"}``."""
    min_output_tokens: int = 256
    """Never cap a call's output below this; below it the ladder moves on."""
    default_output_tokens: int = 1024
    """Output tokens assumed for the estimate when the call gives no maximum."""
    cap_output: bool = True
    """Whether to cap the output tokens to what the remaining money pays for."""
    skip_optional: bool = True
    """Whether calls marked optional are skipped (the tool answers "skipped: budget")."""
    finish_early: bool = False
    """Whether to answer "finish" (wrap up with what you have) instead of raising, when nothing else fits."""
    unpriced_ceiling: Decimal | None = None
    """The cost to hold for a call the price book cannot price; ``None`` refuses such calls under a cost limit."""

    def __post_init__(self) -> None:
        if not isinstance(self.fallbacks, Mapping):
            raise BudgetError("fallbacks must be a mapping of model to cheaper model")
        for model, cheaper in self.fallbacks.items():
            if type(model) is not str or type(cheaper) is not str or not model or not cheaper:
                raise BudgetError(f"fallbacks must map model names to model names, got {model!r}: {cheaper!r}")
        object.__setattr__(self, "fallbacks", dict(self.fallbacks))
        for start in self.fallbacks:
            seen = [start]
            model = start
            while model in self.fallbacks:
                model = self.fallbacks[model]
                if model in seen:
                    raise BudgetError(f"fallback chain has a cycle: {' -> '.join([*seen, model])}")
                seen.append(model)
        _count("min_output_tokens", self.min_output_tokens, minimum=1)
        _count("default_output_tokens", self.default_output_tokens, minimum=1)
        if self.unpriced_ceiling is not None:
            object.__setattr__(self, "unpriced_ceiling", to_money(self.unpriced_ceiling, what="unpriced_ceiling"))

    def chain(self, model: str) -> list[str]:
        """The cheaper models after ``model``, in order."""
        out: list[str] = []
        while model in self.fallbacks:
            model = self.fallbacks[model]
            out.append(model)
        return out


DEFAULT_POLICY: Final = DegradePolicy()


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Limits on a node and its whole subtree: cost, tokens and calls, a warning threshold, a degradation policy."""

    max_cost: Decimal | None = None
    """Dollars; ``None`` for no cost limit."""
    max_tokens: int | None = None
    """Input plus output tokens; ``None`` for no token limit."""
    max_calls: int | None = None
    """Recorded calls (attempts); ``None`` for no call limit."""
    warn_at: Decimal = Decimal("0.8")
    """Fraction of a limit at which a ``warning`` event fires (once per limit and metric)."""
    policy: DegradePolicy | None = None
    """The degradation ladder for calls guarded under this node; the nearest policy up the tree applies."""
    hard: bool = True
    """A hard budget refuses calls that do not fit; a soft one only fires events."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_cost", check_max_cost(self.max_cost))
        for name in ("max_tokens", "max_calls"):
            value = getattr(self, name)
            if value is not None:
                _count(name, value)
        object.__setattr__(self, "warn_at", check_warn_at(self.warn_at))
        if self.policy is not None and not isinstance(self.policy, DegradePolicy):
            raise BudgetError(f"policy must be a DegradePolicy, got {type(self.policy).__name__}")
        if type(self.hard) is not bool:
            raise BudgetError(f"hard must be a bool, got {self.hard!r}")


@dataclass(frozen=True, slots=True)
class Remaining:
    """The tightest remaining amounts along a node's path to the root and its scoped limits (``None``: unlimited)."""

    cost: Decimal | None
    tokens: int | None
    calls: int | None


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """Something a budget did: crossed its warning threshold, was exceeded (or refused a call), or degraded one."""

    kind: Literal["warning", "exceeded", "degraded"]
    node: str
    """The node (``agent 'researcher'``) or limit (``limit team=search/day``)."""
    metric: str | None
    """``cost``, ``tokens`` or ``calls`` (``None`` for a degradation)."""
    spent: Decimal | int | None
    """What was spent on that metric when the event fired."""
    limit: Decimal | int | None
    """The limit on that metric."""
    detail: str
    """A sentence for people."""
    denied: bool = False
    """For ``exceeded``: the event is a refusal (nothing was spent)."""


_METRICS = ("cost", "tokens", "calls")


def _show(metric: str, value: Decimal | int) -> str:
    return format_usd(Decimal(value)) if metric == "cost" else str(value)


class _Account:
    """Spent and held amounts of one budgeted node. Read and written only under the tree's lock.

    The hot operations keep one number per metric ready: ``free_cost`` (what is left of ``max_cost`` after spend
    and holds) makes admission a comparison, and ``*_alarm`` (the next threshold at which an event may fire) makes
    the event check a comparison. They run with :data:`EXACT` as the thread's decimal context (see
    :func:`_exact_context`), so plain ``+`` and ``-`` on money never round.
    """

    __slots__ = (
        "_held_cost",
        "budget",
        "calls_alarm",
        "cost_alarm",
        "free_cost",
        "hard",
        "held_calls",
        "held_tokens",
        "label",
        "max_calls",
        "max_tokens",
        "over",
        "spent_calls",
        "spent_cost",
        "spent_tokens",
        "tokens_alarm",
        "warned",
    )

    def __init__(self, budget: Budget, label: str) -> None:
        self.budget = budget
        self.label = label
        self.hard = budget.hard
        self.max_tokens = budget.max_tokens
        self.max_calls = budget.max_calls
        self.spent_cost = ZERO
        self.spent_tokens = 0
        self.spent_calls = 0
        self.held_tokens = 0
        self.held_calls = 0
        self._held_cost = ZERO  # kept only when there is no max_cost (else derived from free_cost)
        self.free_cost = budget.max_cost
        self.cost_alarm = None if budget.max_cost is None else EXACT.multiply(budget.warn_at, budget.max_cost)
        self.tokens_alarm = None if budget.max_tokens is None else EXACT.multiply(budget.warn_at, budget.max_tokens)
        self.calls_alarm = None if budget.max_calls is None else EXACT.multiply(budget.warn_at, budget.max_calls)
        self.warned: set[str] = set()
        self.over: set[str] = set()

    @property
    def held_cost(self) -> Decimal:
        """Dollars held by reservations in flight."""
        if self.free_cost is None:
            return self._held_cost
        assert self.budget.max_cost is not None
        return exact_sub(exact_sub(self.budget.max_cost, self.spent_cost), self.free_cost)

    def refusal(self, cost: Decimal, tokens: int, calls: int) -> BudgetExceeded | None:
        """The error to raise if the amounts do not fit (the store's one boundary rule); ``None`` if they fit."""
        budget = self.budget
        return _refusal(
            self.label,
            budget.max_cost,
            budget.max_tokens,
            budget.max_calls,
            Amount(self.spent_cost, self.spent_tokens, self.spent_calls),
            Amount(self.held_cost, self.held_tokens, self.held_calls),
            Amount(cost, tokens, calls),
        )

    # the three below run inside _exact_context()
    def hold(self, cost: Decimal, tokens: int, calls: int) -> None:
        if cost:
            if self.free_cost is not None:
                self.free_cost -= cost
            else:
                self._held_cost += cost
        self.held_tokens += tokens
        self.held_calls += calls

    def unhold(self, cost: Decimal, tokens: int, calls: int) -> None:
        if cost:
            if self.free_cost is not None:
                self.free_cost += cost
            else:
                self._held_cost -= cost
        self.held_tokens -= tokens
        self.held_calls -= calls

    def spend(self, cost: Decimal, tokens: int, calls: int, events: list[BudgetEvent]) -> None:
        """Add spend, and note the warning and exceeded events it causes."""
        if cost:
            self.spent_cost += cost
            if self.free_cost is not None:
                self.free_cost -= cost
        self.spent_tokens += tokens
        self.spent_calls += calls
        self.check_alarms(events)

    def settle(
        self, held: Reservation, cost: Decimal, tokens: int, calls: int, delta: Decimal, events: list[BudgetEvent]
    ) -> None:
        """Release ``held`` and spend the actual amounts in one step (``delta`` is held cost minus actual cost)."""
        if self.free_cost is not None:
            if delta:
                self.free_cost += delta
        elif held.cost:
            self._held_cost -= held.cost
        if cost:
            self.spent_cost += cost
        self.held_tokens -= held.tokens
        self.held_calls -= held.calls
        self.spent_tokens += tokens
        self.spent_calls += calls
        self.check_alarms(events)

    def check_alarms(self, events: list[BudgetEvent]) -> None:
        if self.cost_alarm is not None and self.spent_cost >= self.cost_alarm:
            self.cost_alarm = self._alarm("cost", self.spent_cost, self.budget.max_cost, events)
        if self.tokens_alarm is not None and self.spent_tokens >= self.tokens_alarm:
            self.tokens_alarm = self._alarm("tokens", self.spent_tokens, self.budget.max_tokens, events)
        if self.calls_alarm is not None and self.spent_calls >= self.calls_alarm:
            self.calls_alarm = self._alarm("calls", self.spent_calls, self.budget.max_calls, events)

    def _alarm(
        self, metric: str, spent: Decimal | int, maximum: Decimal | int | None, events: list[BudgetEvent]
    ) -> Decimal | None:
        """Fire the warning (once) and the exceeded event (once); return the next threshold to watch."""
        assert maximum is not None
        if metric not in self.warned:
            self.warned.add(metric)
            events.append(
                BudgetEvent(
                    "warning",
                    self.label,
                    metric,
                    spent,
                    maximum,
                    f"{self.label} has used {_show(metric, spent)} of its {metric} budget of {_show(metric, maximum)}",
                )
            )
        if spent > maximum:
            self.over.add(metric)
            events.append(
                BudgetEvent(
                    "exceeded",
                    self.label,
                    metric,
                    spent,
                    maximum,
                    f"{self.label} spent {_show(metric, spent)}, over its {metric} budget of {_show(metric, maximum)}",
                )
            )
            return None
        return Decimal(maximum)  # watch for going over

    def remaining(self) -> tuple[Decimal | None, int | None, int | None]:
        budget = self.budget
        return (
            None if self.free_cost is None else max(self.free_cost, ZERO),
            None if budget.max_tokens is None else max(budget.max_tokens - self.spent_tokens - self.held_tokens, 0),
            None if budget.max_calls is None else max(budget.max_calls - self.spent_calls - self.held_calls, 0),
        )


_getcontext = decimal.getcontext
_setcontext = decimal.setcontext


class _exact_context:
    """Make :data:`EXACT` the thread's decimal context for a locked section, then restore the caller's.

    One switch costs less than calling ``EXACT.add`` for each of the dozen money operations of an admission at
    depth 5; and a caller's low-precision context can never round a budget.
    """

    __slots__ = ("previous",)

    def __enter__(self) -> None:
        self.previous = _getcontext()
        _setcontext(EXACT)

    def __exit__(self, *exc: object) -> None:
        _setcontext(self.previous)


class _HoldIds:
    """Reservation ids: unique across processes (random per-process prefix, re-drawn after fork) and cheap."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.next = itertools.count(1).__next__


_hold_ids = _HoldIds()


class RunState:
    """What the nodes of one run share: the price book, the store, hold expiry and the event hooks."""

    __slots__ = ("book", "hold_ttl", "holds", "hook_errors", "hooks", "next_expiry", "store", "store_errors", "tree")

    def __init__(
        self,
        tree: CostTree,
        book: PriceBook,
        store: BudgetStore | None,
        hold_ttl: float,
        hooks: Sequence[Callable[[BudgetEvent], object]],
    ) -> None:
        self.tree = tree
        self.book = book
        self.store = store
        self.hold_ttl = hold_ttl
        self.hooks = tuple(hooks)
        self.holds: dict[int, Reservation] = {}
        self.next_expiry = math.inf
        self.hook_errors = 0
        self.store_errors = 0

    # -- under the tree lock ---------------------------------------------------------------------------------------
    def sweep_locked(self, now: float) -> None:
        """Expire the holds whose time is up (they hold nothing afterwards; a late commit still counts)."""
        if now < self.next_expiry:
            return
        next_expiry = math.inf
        for hold_id, reservation in list(self.holds.items()):
            if reservation.expires_at <= now:
                del self.holds[hold_id]
                for account in reservation._accounts:
                    account.unhold(reservation.cost, reservation.tokens, reservation.calls)
                reservation.state = "expired"
            else:
                next_expiry = min(next_expiry, reservation.expires_at)
        self.next_expiry = next_expiry

    def settle_locked(
        self,
        reservation: Reservation,
        cost: Decimal | None,
        tokens: int | None,
        calls: int | None,
        events: list[BudgetEvent],
    ) -> tuple[Decimal, int, int] | None:
        """Turn a hold into spend (commit) or nothing (``cost is None`` means release). Returns what was spent
        (cost, tokens, calls), or ``None`` for a release."""
        state = reservation.state
        if state != "held" and state != "expired":
            raise ReservationError(f"reservation {reservation.id} was already {state}; a hold resolves exactly once")
        accounts = reservation._accounts
        if cost is None:
            if state == "held":
                del self.holds[reservation._number]
                for account in accounts:
                    account.unhold(reservation.cost, reservation.tokens, reservation.calls)
            reservation.state = "released"
            return None
        if tokens is None:
            tokens = reservation.tokens
        if calls is None:
            calls = reservation.calls
        reservation.state = "committed"
        if state == "held":
            del self.holds[reservation._number]
            delta = reservation.cost - cost
            for account in accounts:
                account.settle(reservation, cost, tokens, calls, delta, events)
        else:  # expired: nothing is held any more, the spend still counts
            for account in accounts:
                account.spend(cost, tokens, calls, events)
        return cost, tokens, calls

    # -- outside the lock ------------------------------------------------------------------------------------------
    def emit(self, events: Sequence[BudgetEvent]) -> None:
        """Record events on the tree and call the hooks; a hook that raises is counted and logged, never re-raised."""
        tree = self.tree
        for event in events:
            tree.events.append(event)
            if tree.sinks:
                emit_event(tree.sinks, event, tree)
            for hook in self.hooks:
                try:
                    hook(event)
                except Exception:
                    self.hook_errors += 1
                    logger.exception("agentcost: budget event hook %r raised; the agent goes on", hook)

    def store_settle(self, reservation: Reservation, spent: tuple[Decimal, int, int] | None) -> None:
        """Settle in the store; a store error is counted and logged, never raised into the agent."""
        store = self.store
        if store is None or not reservation._limits:
            return
        try:
            if spent is None:
                store.release(reservation.id)
            else:
                store.commit(reservation.id, reservation._limits, Amount(*spent))
        except Exception:
            self.store_errors += 1
            logger.exception("agentcost: could not settle reservation %s in the budget store", reservation.id)

    def store_charge(self, limits: Sequence[Limit], spent: tuple[Decimal, int, int]) -> None:
        if self.store is None:
            return
        try:
            self.store.charge(limits, Amount(*spent))
        except Exception:
            self.store_errors += 1
            logger.exception("agentcost: could not charge spend to the budget store")


class Reservation:
    """A hold on budgets made before a call: ``commit(actual)`` or ``release()``, exactly once.

    Holds that are never resolved expire after the run's ``hold_ttl``; a commit after expiry still counts the
    actual spend (the money was spent) but there is nothing left to release.
    """

    __slots__ = (
        "_accounts",
        "_id",
        "_limits",
        "_number",
        "_run",
        "calls",
        "cost",
        "expires_at",
        "fail_open",
        "state",
        "tokens",
    )

    cost: Decimal
    """Held dollars."""
    tokens: int
    """Held tokens."""
    calls: int
    """Held calls."""
    state: str
    """``held``, ``committed``, ``released`` or ``expired``."""
    fail_open: bool
    """True when the budget store was unreachable and the run admits in fail-open mode: nothing was held there."""

    def __init__(
        self,
        run: RunState,
        accounts: tuple[_Account, ...],
        limits: tuple[Limit, ...],
        cost: Decimal,
        tokens: int,
        calls: int,
        expires_at: float,
    ) -> None:
        self._number = _hold_ids.next()
        self._id: str | None = None
        self._run = run
        self._accounts = accounts
        self._limits = limits
        self.cost = cost
        self.tokens = tokens
        self.calls = calls
        self.expires_at = expires_at
        self.state = "held"
        self.fail_open = False

    @property
    def id(self) -> str:
        """Unique id (also the hold's id in the store), made on first use."""
        if self._id is None:
            self._id = f"{_hold_ids.prefix}-{self._number}"
        return self._id

    def commit(self, actual_cost: Decimal | int | str, *, tokens: int | None = None, calls: int | None = None) -> None:
        """Settle the hold with what the call really cost (and used); raises ``ReservationError`` if resolved."""
        cost = to_money(actual_cost, what="actual_cost")
        if tokens is not None:
            _count("tokens", tokens)
        if calls is not None:
            _count("calls", calls)
        self._resolve(cost, tokens, calls)

    def release(self) -> None:
        """Give the hold back unspent (the call was not made); raises ``ReservationError`` if already resolved."""
        self._resolve(None, None, None)

    def _resolve(self, cost: Decimal | None, tokens: int | None, calls: int | None) -> None:
        run = self._run
        events: list[BudgetEvent] = []
        lock = run.tree._lock
        lock.acquire()
        previous = _getcontext()
        _setcontext(EXACT)
        try:
            spent = run.settle_locked(self, cost, tokens, calls, events)
        finally:
            _setcontext(previous)
            lock.release()
        run.store_settle(self, spent)
        if events:
            run.emit(events)

    def __repr__(self) -> str:
        return f"<Reservation {self.id} ${self.cost} tokens={self.tokens} calls={self.calls} {self.state}>"


def reserve(ctx: CostContext, cost: Decimal, tokens: int, calls: int, ttl: float | None) -> Reservation:
    """Hold the amounts on the node, every ancestor and every matching scoped limit, atomically; or raise
    ``BudgetExceeded`` (and fire an ``exceeded`` event) and hold nothing."""
    outcome = try_reserve(ctx, cost, tokens, calls, ttl)
    if isinstance(outcome, BudgetExceeded):
        _emit_denial(ctx._run, outcome)
        raise outcome
    return outcome


def try_reserve(
    ctx: CostContext, cost: Decimal, tokens: int, calls: int, ttl: float | None
) -> Reservation | BudgetExceeded:
    """:func:`reserve` that returns the refusal instead of raising it, and fires no event: the degradation
    ladder's trial attempts are not refusals of the call (and raising and catching them would leave tracebacks
    for the cyclic garbage collector on the hot path)."""
    run = ctx._run
    accounts = ctx._accounts
    limits = ctx._limits
    lock = run.tree._lock
    now = time.monotonic()
    reservation = Reservation(run, accounts, limits, cost, tokens, calls, now + (run.hold_ttl if ttl is None else ttl))
    refusal: BudgetExceeded | None = None
    lock.acquire()
    previous = _getcontext()
    _setcontext(EXACT)
    try:
        if run.holds:
            run.sweep_locked(now)
        for account in accounts:
            if account.hard:
                free = account.free_cost
                # the fits test inline (the hot path); refusal() builds the error with the numbers when it does not
                if (
                    (free is not None and cost > free)
                    or (
                        account.max_tokens is not None
                        and account.spent_tokens + account.held_tokens + tokens > account.max_tokens
                    )
                    or (
                        account.max_calls is not None
                        and account.spent_calls + account.held_calls + calls > account.max_calls
                    )
                ):
                    refusal = account.refusal(cost, tokens, calls)
                    break
        if refusal is None and limits:
            assert run.store is not None
            try:
                held = run.store.reserve(
                    reservation.id, limits, Amount(cost, tokens, calls), run.hold_ttl if ttl is None else ttl
                )
            except BudgetExceeded as error:
                refusal = error.with_traceback(None)
            else:
                reservation.fail_open = held is False
        if refusal is None:
            for account in accounts:
                account.hold(cost, tokens, calls)
            run.holds[reservation._number] = reservation
            if reservation.expires_at < run.next_expiry:
                run.next_expiry = reservation.expires_at
    finally:
        _setcontext(previous)
        lock.release()
    return reservation if refusal is None else refusal


def _emit_denial(run: RunState, refusal: BudgetExceeded) -> None:
    run.emit([BudgetEvent("exceeded", refusal.node, refusal.metric, None, None, str(refusal), denied=True)])


def remaining(ctx: CostContext) -> Remaining:
    """The tightest remaining cost, tokens and calls over the node's hard budgets and its scoped limits."""
    cost: Decimal | None = None
    tokens: int | None = None
    calls: int | None = None
    run = ctx._run
    with run.tree._lock, _exact_context():
        if run.holds:
            run.sweep_locked(time.monotonic())
        for account in ctx._accounts:
            if not account.budget.hard:
                continue
            account_cost, account_tokens, account_calls = account.remaining()
            cost = _tighter(cost, account_cost)
            tokens = _tighter(tokens, account_tokens)
            calls = _tighter(calls, account_calls)
    store = ctx._run.store
    for limit in ctx._limits:
        assert store is not None
        left = store.usage(limit).remaining
        cost = _tighter(cost, left.cost if limit.max_cost is not None else None)
        tokens = _tighter(tokens, left.tokens if limit.max_tokens is not None else None)
        calls = _tighter(calls, left.calls if limit.max_calls is not None else None)
    return Remaining(cost, tokens, calls)


_T = TypeVar("_T", Decimal, int)


def _tighter(current: _T | None, other: _T | None) -> _T | None:
    if other is None:
        return current
    if current is None:
        return other
    return min(current, other)


class Decision:
    """What the budget decided for one call: ``allow``, ``degrade`` (the model and max tokens to use instead),
    ``skip``, ``finish`` or ``deny`` (never returned: raised as ``BudgetExceeded``).

    For ``allow`` and ``degrade``, a reservation holds the estimate; :meth:`record` records the actual call and
    settles it.
    """

    __slots__ = (
        "_ctx",
        "_estimate_source",
        "_kind",
        "_reservation",
        "action",
        "estimate",
        "max_output_tokens",
        "model",
        "provider",
        "reasons",
        "requested_model",
    )

    action: Action
    model: str
    """The model (or tool) to call."""
    provider: str | None
    max_output_tokens: int | None
    """The output cap to send with the request (``None``: the caller's own, for tools)."""
    reasons: tuple[str, ...]
    """Why the call was degraded, skipped or finished."""
    estimate: Decimal | None
    """The estimated cost that was held."""
    requested_model: str
    """The model (or tool) the caller asked for."""

    def __init__(
        self,
        ctx: CostContext,
        kind: str,
        action: Action,
        model: str,
        provider: str | None,
        max_output_tokens: int | None,
        reasons: tuple[str, ...],
        estimate: Decimal | None,
        requested_model: str,
        reservation: Reservation | None,
    ) -> None:
        self._ctx = ctx
        self._kind = kind
        self.action = action
        self.model = model
        self.provider = provider
        self.max_output_tokens = max_output_tokens
        self.reasons = reasons
        self.estimate = estimate
        self.requested_model = requested_model
        self._reservation = reservation
        self._estimate_source = "computed"

    @property
    def admitted(self) -> bool:
        """Whether the call may go ahead (``allow`` or ``degrade``)."""
        return self.action in ("allow", "degrade")

    @property
    def reservation(self) -> Reservation | None:
        """The hold of an admitted call."""
        return self._reservation

    def record(
        self,
        *,
        usage: Usage | None = None,
        cost: Decimal | int | str | None = None,
        status: str | None = None,
        error: str | None = None,
        attrs: Mapping[str, str] | None = None,
        started_at: float | None = None,
        model: str | None = None,
        notes: tuple[str, ...] = (),
    ) -> Span:
        """Record the call that was made under this decision, settling its reservation in the same step.

        ``model`` is the model that served the call when the response names one (``gpt-4o-2024-08-06`` for a call
        to ``gpt-4o``); by default, the decision's model. ``notes`` are added after the decision's reasons.
        """
        if not self.admitted:
            raise ReservationError(f"the decision was {self.action!r}: no call was admitted, so none can be recorded")
        reservation = self._reservation
        if reservation is None or reservation.state not in ("held", "expired"):
            raise ReservationError("this decision's call was already recorded")
        if status is None:
            status = "error" if error is not None else ("degraded" if self.action == "degrade" else "ok")
        ctx = self._ctx
        if self._kind == "tool":
            return ctx.record(
                "tool",
                self.model,
                cost=self.estimate if cost is None else cost,
                usage=usage,
                attrs=attrs,
                status=status,
                error=error,
                started_at=started_at,
                notes=self.reasons + notes if notes else self.reasons,
                reservation=reservation,
                cost_source=self._estimate_source if cost is None else "manual",
            )
        if usage is None:
            raise TypeError("record() of an LLM call needs its usage")
        served = self.model if model is None else model
        return ctx.record_llm(
            model=served,
            provider=self.provider,
            usage=usage,
            cost=cost,
            requested_model=self.requested_model if self.requested_model != served else None,
            attrs=attrs,
            status=status,
            error=error,
            started_at=started_at,
            notes=self.reasons + notes if notes else self.reasons,
            reservation=reservation,
        )

    def release(self) -> None:
        """Give the hold back if the call was not made (``guard`` does this when its block exits unrecorded)."""
        reservation = self._reservation
        if reservation is not None and reservation.state in ("held", "expired"):
            if reservation.state == "expired":
                reservation.state = "released"
                return
            reservation.release()

    def __repr__(self) -> str:
        why = f" reasons={list(self.reasons)}" if self.reasons else ""
        return f"<Decision {self.action} {self.model} max_output_tokens={self.max_output_tokens}{why}>"


class Guard:
    """The context manager returned by ``CostContext.guard``: yields the decision, releases an unrecorded hold."""

    __slots__ = ("_decide", "decision")

    def __init__(self, decide: Callable[[], Decision]) -> None:
        self._decide = decide
        self.decision: Decision | None = None

    def __enter__(self) -> Decision:
        self.decision = self._decide()
        return self.decision

    def __exit__(self, *exc: object) -> None:
        if self.decision is not None:
            self.decision.release()


def policy_of(ctx: CostContext) -> DegradePolicy:
    """The nearest degradation policy up the tree."""
    for account in reversed(ctx._accounts):
        if account.budget.policy is not None:
            return account.budget.policy
    return DEFAULT_POLICY


def _has_cost_limit(ctx: CostContext) -> bool:
    # plain loops: this runs before every guarded call, and generator expressions cost more than the checks
    for account in ctx._accounts:
        if account.hard and account.budget.max_cost is not None:
            return True
    for limit in ctx._limits:  # noqa: SIM110 - a loop is cheaper than any() over a generator here
        if limit.max_cost is not None:
            return True
    return False


def _has_token_limit(ctx: CostContext) -> bool:
    for account in ctx._accounts:
        if account.hard and account.max_tokens is not None:
            return True
    for limit in ctx._limits:  # noqa: SIM110 - a loop is cheaper than any() over a generator here
        if limit.max_tokens is not None:
            return True
    return False


def decide_llm(
    ctx: CostContext,
    *,
    model: str,
    provider: str | None,
    input_tokens: int,
    max_output_tokens: int | None,
    optional: bool,
    price_context: Mapping[str, str] | None,
    fallbacks: Sequence[str] | None = None,
    degrade: bool = True,
) -> Decision:
    """Walk the ladder of DESIGN §1.7 for one LLM call and return the decision (or raise ``BudgetExceeded``).

    ``fallbacks`` replaces the policy's chain for this call (a caller that can only switch to the models it holds);
    ``degrade=False`` is for a caller that can apply no degradation at all: allow or deny.
    """
    if type(input_tokens) is not int or input_tokens < 0:
        _count("input_tokens", input_tokens)
    if max_output_tokens is not None and (type(max_output_tokens) is not int or max_output_tokens < 1):
        _count("max_output_tokens", max_output_tokens, minimum=1)
    policy = policy_of(ctx)
    book = ctx._run.book
    wanted_output = max_output_tokens or policy.default_output_tokens
    cost_limited = _has_cost_limit(ctx)
    # Under a hard cost or token limit the hold covers ``wanted_output`` tokens: tell the caller to cap the call
    # there, or the real call could outrun what was held.
    granted = (
        max_output_tokens
        if max_output_tokens is not None or not (cost_limited or _has_token_limit(ctx))
        else wanted_output
    )

    # the common case first, without building the ladder: the call fits as asked
    cost = book.price(model, Usage(input_tokens, wanted_output), provider=provider, price_context=price_context)
    if cost is None:
        cost = policy.unpriced_ceiling if policy.unpriced_ceiling is not None else (None if cost_limited else ZERO)
    first: Reservation | BudgetExceeded | None = None
    if cost is not None:
        first = try_reserve(ctx, cost, input_tokens + wanted_output, 1, None)
        if type(first) is Reservation:
            return Decision(ctx, "llm", "allow", model, provider, granted, (), first.cost, model, first)
    return _ladder(
        ctx,
        model,
        provider,
        input_tokens,
        wanted_output,
        optional,
        price_context,
        fallbacks,
        degrade,
        policy,
        cost_limited,
        granted,
        first,
    )


def _ladder(
    ctx: CostContext,
    model: str,
    provider: str | None,
    input_tokens: int,
    wanted_output: int,
    optional: bool,
    price_context: Mapping[str, str] | None,
    fallbacks: Sequence[str] | None,
    degrade: bool,
    policy: DegradePolicy,
    cost_limited: bool,
    granted: int | None,
    first: Reservation | BudgetExceeded | None,
) -> Decision:
    """The rest of the ladder, when the call does not fit as asked: cap, fall back, skip, finish or deny."""
    book = ctx._run.book
    tried = _Tried()  # every attempt that did not fit, for BudgetExceeded and the events (formatted when shown)
    if first is None:
        tried.append((f"{model} cannot be priced and no unpriced_ceiling is set", None))
    else:
        assert isinstance(first, BudgetExceeded)
        tried.append((f"{model} with {wanted_output} output tokens", first))

    def provider_of(candidate: str) -> str | None:
        # a fallback may be another provider's model: price it by name alone when the caller's provider lacks it
        if candidate == model or provider is None or book.knows(candidate, provider=provider):
            return provider
        return None

    def estimate(candidate: str, output: int) -> Decimal | None:
        cost = book.price(
            candidate, Usage(input_tokens, output), provider=provider_of(candidate), price_context=price_context
        )
        if cost is None:
            if policy.unpriced_ceiling is not None:
                return policy.unpriced_ceiling
            return None if cost_limited else ZERO
        return cost

    def attempt(candidate: str, output: int) -> Reservation | BudgetExceeded | None:
        cost = estimate(candidate, output)
        if cost is None:
            tried.append((f"{candidate} cannot be priced and no unpriced_ceiling is set", None))
            return None
        outcome = try_reserve(ctx, cost, input_tokens + output, 1, None)
        if isinstance(outcome, BudgetExceeded):
            tried.append((f"{candidate} with {output} output tokens", outcome))
        return outcome

    def capped(candidate: str) -> tuple[int, Reservation] | None:
        """The largest affordable output for ``candidate``, at least ``min_output_tokens``, reserved."""
        if not policy.cap_output:
            return None
        left = remaining(ctx)
        limit = wanted_output
        if left.tokens is not None:
            limit = min(limit, left.tokens - input_tokens)
        if left.cost is not None:
            at = provider_of(candidate)
            base = book.price(candidate, Usage(input_tokens, 0), provider=at, price_context=price_context)
            full = book.price(candidate, Usage(input_tokens, 1_000_000), provider=at, price_context=price_context)
            if base is None or full is None:
                return None
            per_million = exact_sub(full, base)
            spare = exact_sub(left.cost, base)
            if per_million > 0:
                # exact integer division: the cap is the largest output whose price still fits
                limit = min(
                    limit, int(EXACT.divide_int(EXACT.multiply(spare, _MILLION), per_million)) if spare > 0 else 0
                )
            elif spare < 0:
                return None
        if left.calls is not None and left.calls < 1:
            return None
        if limit < policy.min_output_tokens or limit >= wanted_output:
            return None
        outcome = attempt(candidate, limit)
        return (limit, outcome) if isinstance(outcome, Reservation) else None

    why = _short(first) if first is not None else f"{model} cannot be priced"
    chain = policy.chain(model) if fallbacks is None else [name for name in fallbacks if name != model]
    for candidate in [model, *chain] if degrade else ():
        swap = [] if candidate == model else [f"model {model} -> {candidate}: {why}"]
        if candidate != model:
            outcome = attempt(candidate, wanted_output)
            if isinstance(outcome, Reservation):
                return _degraded(ctx, candidate, provider_of(candidate), granted, swap, tried, outcome, model)
        cap = capped(candidate)
        if cap is not None:
            output, reservation = cap
            reasons = [*swap, f"max_output_tokens {wanted_output} -> {output}: {why}"]
            return _degraded(ctx, candidate, provider_of(candidate), output, reasons, tried, reservation, model)
    refusal = first if isinstance(first, BudgetExceeded) else None
    return _give_up(
        ctx,
        "llm",
        model,
        provider,
        optional and degrade,
        policy.finish_early and degrade,
        why,
        tried,
        refusal,
        "unpriced call under a cost limit",
    )


class _Tried(list[tuple[str, BudgetExceeded | None]]):
    """The ladder's failed attempts; turned into sentences only when someone reads them."""

    def sentences(self) -> list[str]:
        return [what if error is None else f"{what}: {_short(error)}" for what, error in self]


def _short(error: BudgetExceeded) -> str:
    if error.metric == "cost":
        left, needed = format_usd(Decimal(error.remaining)), format_usd(Decimal(error.requested))
    else:
        left, needed = str(error.remaining), str(error.requested)
    return f"{error.node} has {left} {error.metric} left, the call needs {needed}"


def decide_tool(ctx: CostContext, *, name: str, cost: Decimal | None, optional: bool, degrade: bool = True) -> Decision:
    """Admit one tool call at its price (given, or the price book's), or skip it if optional, or raise.

    ``degrade=False``: the caller cannot keep the tool from running, so only allow or raise."""
    policy = policy_of(ctx)
    price = cost if cost is not None else ctx._run.book.tool_price(name)
    source = "manual" if cost is not None else "computed"
    tried = _Tried()
    if price is None:
        source = "estimated"
        price = policy.unpriced_ceiling
    if price is not None or not _has_cost_limit(ctx):
        outcome = try_reserve(ctx, ZERO if price is None else price, 0, 1, None)
        if isinstance(outcome, BudgetExceeded):
            tried.append((f"tool {name}", outcome))
            refusal: BudgetExceeded | None = outcome
        else:
            reservation = outcome
            decision = Decision(ctx, "tool", "allow", name, None, None, (), price, name, reservation)
            decision._estimate_source = source
            return decision
    else:
        tried.append((f"tool {name} has no price and no unpriced_ceiling is set", None))
        refusal = None
    why = _short(refusal) if refusal is not None else tried.sentences()[-1]
    return _give_up(
        ctx,
        "tool",
        name,
        None,
        optional and degrade,
        policy.finish_early and degrade,
        why,
        tried,
        refusal,
        "unpriced tool under a cost limit",
    )


def _give_up(
    ctx: CostContext,
    kind: str,
    name: str,
    provider: str | None,
    optional: bool,
    finish_early: bool,
    why: str,
    tried: _Tried,
    refusal: BudgetExceeded | None,
    unpriced: str,
) -> Decision:
    """The bottom of the ladder: skip an optional call, else finish early if the policy says so, else deny."""
    if optional and policy_of(ctx).skip_optional:
        return _not_admitted(ctx, kind, "skip", name, provider, [f"skipped: budget ({why})"], tried)
    if finish_early:
        return _not_admitted(ctx, kind, "finish", name, provider, [f"finish early: budget ({why})"], tried)
    denial = BudgetExceeded(
        node=refusal.node if refusal else f"{ctx.span.kind} {ctx.span.name!r}",
        limit=refusal.limit if refusal else unpriced,
        metric=refusal.metric if refusal else "cost",
        requested=refusal.requested if refusal else ZERO,
        remaining=refusal.remaining if refusal else ZERO,
        reasons=tuple(tried.sentences()),
    )
    _emit_denial(ctx._run, denial)
    raise denial


def _degraded(
    ctx: CostContext,
    model: str,
    provider: str | None,
    max_output_tokens: int | None,
    reasons: list[str],
    tried: _Tried,
    reservation: Reservation,
    requested: str,
) -> Decision:
    decision = Decision(
        ctx,
        "llm",
        "degrade",
        model,
        provider,
        max_output_tokens,
        tuple(reasons),
        reservation.cost,
        requested,
        reservation,
    )
    ctx._run.emit([_degraded_event(ctx, reasons, tried)])
    return decision


def _degraded_event(ctx: CostContext, reasons: list[str], tried: _Tried) -> BudgetEvent:
    detail = "; ".join(reasons) + (f" (tried: {'; '.join(tried.sentences())})" if tried else "")
    return BudgetEvent("degraded", f"{ctx.span.kind} {ctx.span.name!r}", None, None, None, detail)


def _not_admitted(
    ctx: CostContext,
    kind: str,
    action: Action,
    model: str,
    provider: str | None,
    reasons: list[str],
    tried: _Tried,
) -> Decision:
    """A skip or finish: nothing is held, and a zero-cost span with status ``skipped`` shows it in the tree."""
    ctx.record(
        "tool" if kind == "tool" else "custom",
        model if kind == "tool" else f"{action}: {model}",
        cost=ZERO,
        status="skipped",
        notes=tuple(reasons),
        count_call=False,
    )
    ctx._run.emit([_degraded_event(ctx, reasons, tried)])
    return Decision(ctx, kind, action, model, provider, None, tuple(reasons), None, model, None)


def record_finish(ctx: CostContext, reason: str, name: str) -> Span:
    """A node's early finish for budget: the marker span and the event, as the ladder's own ``finish`` records."""
    span = ctx.record("custom", name, cost=ZERO, status="skipped", notes=(reason,), count_call=False)
    ctx._run.emit([_degraded_event(ctx, [reason], _Tried())])
    return span


def make_accounts(parent: tuple[_Account, ...], budget: Budget | None, label: str) -> tuple[_Account, ...]:
    """The accounts a node's spend counts against: its ancestors' and, if it has a budget, its own."""
    if budget is None:
        return parent
    if not isinstance(budget, Budget):
        raise BudgetError(f"budget must be a Budget, got {type(budget).__name__}")
    return (*parent, _Account(budget, label))


def check_store(store: object) -> BudgetStore | None:
    if store is not None and not isinstance(store, BudgetStore):
        raise BudgetError(f"store must be a BudgetStore, got {type(store).__name__}")
    return store
