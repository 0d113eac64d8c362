"""Scoped limits across runs, and the stores that hold them: the contract and the in-process store.

A :class:`Limit` caps the spend of everything whose attribution matches its ``scope`` (``{"team": "search"}``) over
a window (hour, day, month, or none). A :class:`BudgetStore` keeps, per limit and window, what was *spent* and what
is *held* by reservations in flight, and admits a reservation against several limits in one atomic step.

The boundary rule, the same everywhere: a request is admitted when ``spent + held + requested <= max``.
"""

from __future__ import annotations

import heapq
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from agentcost._errors import BudgetError, BudgetExceeded
from agentcost._money import EXACT, ZERO, exact_add, to_money

__all__ = ["WINDOWS", "Amount", "BudgetStore", "Limit", "LimitUsage", "MemoryStore", "window_key"]

WINDOWS: Final = ("hour", "day", "month", "none")


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount of spend: money, tokens and calls."""

    cost: Decimal = ZERO
    """US dollars."""
    tokens: int = 0
    """Input plus output tokens."""
    calls: int = 0
    """Calls (one per recorded attempt)."""

    def __add__(self, other: Amount) -> Amount:
        return Amount(exact_add(self.cost, other.cost), self.tokens + other.tokens, self.calls + other.calls)

    def __sub__(self, other: Amount) -> Amount:
        # exact, like __add__: the thread's decimal context (28 digits by default) would round a held total such as
        # 10**15 + 2E-20 minus 1E-20, and a later release would leave a negative remainder
        return Amount(EXACT.subtract(self.cost, other.cost), self.tokens - other.tokens, self.calls - other.calls)


NOTHING = Amount()


def distinct_limits(limits: Sequence[Limit]) -> tuple[Limit, ...]:
    """``limits`` without repeated ids (the first of each id is kept): a limit named twice is held and charged once."""
    seen: dict[str, Limit] = {}
    for limit in limits:
        seen.setdefault(limit.id, limit)
    return tuple(seen.values())


def check_amount(amount: Amount) -> Amount:
    """``amount`` if its cost is exact money (a Decimal in range, never a float) and its counts non-negative ints.

    The stores that serialize amounts (SQLite, Redis) check them first; raises ``InvalidMoney`` or ``BudgetError``.
    """
    if not isinstance(amount, Amount):
        raise BudgetError(f"expected an Amount, got {type(amount).__name__}")
    to_money(amount.cost)
    for name, value in (("tokens", amount.tokens), ("calls", amount.calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BudgetError(f"Amount.{name} must be a non-negative int, got {value!r}")
    return amount


def window_key(window: str, now: float) -> str:
    """The key of the window that contains ``now`` (seconds since the epoch), in UTC: ``2026-11-28`` for a day."""
    moment = datetime.fromtimestamp(now, UTC)
    if window == "day":
        return moment.strftime("%Y-%m-%d")
    if window == "hour":
        return moment.strftime("%Y-%m-%dT%H")
    if window == "month":
        return moment.strftime("%Y-%m")
    if window == "none":
        return "all"
    raise BudgetError(f"unknown window {window!r}; use one of {', '.join(WINDOWS)}")


def _check_count_limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BudgetError(f"{name} must be a non-negative int or None, got {value!r}")
    return int(value)


def check_warn_at(value: object) -> Decimal:
    """``warn_at`` as a Decimal in (0, 1]."""
    try:
        ratio = to_money(value, what="warn_at")
    except (TypeError, ValueError) as error:
        raise BudgetError(str(error)) from None
    if not 0 < ratio <= 1:
        raise BudgetError(f"warn_at must be in (0, 1], got {ratio}")
    return ratio


def check_max_cost(value: object) -> Decimal | None:
    """``max_cost`` as a non-negative Decimal, or None; a float is refused like any money."""
    if value is None:
        return None
    try:
        return to_money(value, what="max_cost")
    except TypeError:
        raise
    except ValueError as error:
        raise BudgetError(str(error)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Limit:
    """A budget on an attribution scope across runs, over a window, kept in a :class:`BudgetStore`.

    >>> Limit(scope={"team": "search"}, window="day", max_cost=Decimal("50"))
    Limit(team=search/day max_cost=50)
    """

    scope: Mapping[str, str]
    """Attribution that a run must carry for the limit to apply, e.g. ``{"team": "search"}``."""
    window: str = "day"
    """``hour``, ``day``, ``month`` (UTC calendar windows) or ``none`` (one window forever)."""
    max_cost: Decimal | None = None
    """Dollars per window; ``None`` for no cost limit."""
    max_tokens: int | None = None
    """Tokens per window; ``None`` for no token limit."""
    max_calls: int | None = None
    """Calls per window; ``None`` for no call limit."""
    warn_at: Decimal = Decimal("0.8")
    """Fraction of a limit at which a warning event fires, once per window."""
    id: str = field(default="")
    """Stable identifier, derived from scope and window unless given."""

    def __post_init__(self) -> None:
        if not isinstance(self.scope, Mapping) or not self.scope:
            raise BudgetError("a Limit needs a non-empty scope, e.g. {'team': 'search'}")
        for key, value in self.scope.items():
            if type(key) is not str or type(value) is not str:
                raise BudgetError(f"scope keys and values must be strings, got {key!r}: {value!r}")
        if self.window not in WINDOWS:
            raise BudgetError(f"unknown window {self.window!r}; use one of {', '.join(WINDOWS)}")
        object.__setattr__(self, "scope", dict(sorted(self.scope.items())))
        object.__setattr__(self, "max_cost", check_max_cost(self.max_cost))
        object.__setattr__(self, "max_tokens", _check_count_limit("max_tokens", self.max_tokens))
        object.__setattr__(self, "max_calls", _check_count_limit("max_calls", self.max_calls))
        object.__setattr__(self, "warn_at", check_warn_at(self.warn_at))
        if not self.id:
            scope = ",".join(f"{k}={v}" for k, v in self.scope.items())
            object.__setattr__(self, "id", f"{scope}/{self.window}")

    def matches(self, attrs: Mapping[str, str]) -> bool:
        """Whether spend with attribution ``attrs`` counts against this limit."""
        return all(attrs.get(key) == value for key, value in self.scope.items())

    def window_key(self, now: float) -> str:
        """The key of the window containing ``now``."""
        return window_key(self.window, now)

    def refusal(self, spent: Amount, held: Amount, requested: Amount) -> BudgetExceeded | None:
        """The error to raise if ``requested`` does not fit on top of ``spent + held``; ``None`` if it fits."""
        return _refusal(f"limit {self.id}", self.max_cost, self.max_tokens, self.max_calls, spent, held, requested)

    def __repr__(self) -> str:
        limits = [
            f"{name}={value}"
            for name, value in (
                ("max_cost", self.max_cost),
                ("max_tokens", self.max_tokens),
                ("max_calls", self.max_calls),
            )
            if value is not None
        ]
        return f"Limit({self.id} {' '.join(limits)})"


def _refusal(
    where: str,
    max_cost: Decimal | None,
    max_tokens: int | None,
    max_calls: int | None,
    spent: Amount,
    held: Amount,
    requested: Amount,
) -> BudgetExceeded | None:
    """The one boundary rule: admitted when ``spent + held + requested <= max``, for each metric that has a max."""
    if max_cost is not None:
        used = exact_add(spent.cost, held.cost)
        if exact_add(used, requested.cost) > max_cost:
            return BudgetExceeded(
                node=where,
                limit=f"max_cost={max_cost}",
                metric="cost",
                requested=requested.cost,
                remaining=max(EXACT.subtract(max_cost, used), ZERO),
            )
    if max_tokens is not None:
        used_tokens = spent.tokens + held.tokens
        if used_tokens + requested.tokens > max_tokens:
            return BudgetExceeded(
                node=where,
                limit=f"max_tokens={max_tokens}",
                metric="tokens",
                requested=requested.tokens,
                remaining=max(max_tokens - used_tokens, 0),
            )
    if max_calls is not None:
        used_calls = spent.calls + held.calls
        if used_calls + requested.calls > max_calls:
            return BudgetExceeded(
                node=where,
                limit=f"max_calls={max_calls}",
                metric="calls",
                requested=requested.calls,
                remaining=max(max_calls - used_calls, 0),
            )
    return None


@dataclass(frozen=True, slots=True)
class LimitUsage:
    """What a limit's current window holds."""

    limit: Limit
    window: str
    """The window key, e.g. ``2026-11-28``."""
    spent: Amount
    """Committed spend."""
    held: Amount
    """Held by reservations in flight."""

    @property
    def remaining(self) -> Amount:
        """What is left on each metric that has a limit (0 where exhausted); unlimited metrics report 0 too."""
        used = self.spent + self.held
        limit = self.limit
        return Amount(
            max(EXACT.subtract(limit.max_cost, used.cost), ZERO) if limit.max_cost is not None else ZERO,
            max(limit.max_tokens - used.tokens, 0) if limit.max_tokens is not None else 0,
            max(limit.max_calls - used.calls, 0) if limit.max_calls is not None else 0,
        )


class BudgetStore(ABC):
    """Where scoped limits keep their spend. Implementations: :class:`MemoryStore` (one process),
    ``SQLiteStore`` (many processes on one host), ``RedisStore`` (many hosts).

    Every method is atomic on its own. ``reserve`` admits against all the given limits at once or holds nothing.
    ``commit`` and ``release`` are idempotent per hold id, so a retried settlement never counts twice; a commit whose
    hold has already expired still adds the spend (money spent is never dropped). Spend goes into the window that is
    current when it is committed; holds live in the window current when they were made.
    """

    def __init__(self) -> None:
        self._limits: dict[str, Limit] = {}
        self._limits_lock = threading.Lock()

    # -- limits (configuration, kept per process) --------------------------------------------------------------------
    def add_limit(self, limit: Limit) -> Limit:
        """Register ``limit`` (replacing one with the same id); returns it."""
        if not isinstance(limit, Limit):
            raise BudgetError(f"add_limit takes a Limit, got {type(limit).__name__}")
        with self._limits_lock:
            self._limits = {**self._limits, limit.id: limit}
        return limit

    def limits(self) -> tuple[Limit, ...]:
        """Every registered limit."""
        return tuple(self._limits.values())

    def matching(self, attrs: Mapping[str, str]) -> tuple[Limit, ...]:
        """The limits whose scope ``attrs`` matches."""
        return tuple(limit for limit in self._limits.values() if limit.matches(attrs))

    # -- the atomic operations --------------------------------------------------------------------------------------
    @abstractmethod
    def reserve(self, hold_id: str, limits: Sequence[Limit], amount: Amount, ttl: float) -> bool:
        """Hold ``amount`` on every limit, or raise ``BudgetExceeded`` (or ``StoreUnavailable``) and hold nothing.

        Returns True when the hold was checked and made (or already exists under ``hold_id``), False when a store
        configured to fail open admitted it without being able to check or record it. A limit given twice (same
        ``id``) is held once.
        """

    @abstractmethod
    def commit(self, hold_id: str, limits: Sequence[Limit], amount: Amount) -> None:
        """Settle a hold: drop it (if still there) and add ``amount`` as spend. Idempotent per ``hold_id``."""

    @abstractmethod
    def release(self, hold_id: str) -> None:
        """Drop a hold without spend. Idempotent."""

    @abstractmethod
    def charge(self, limits: Sequence[Limit], amount: Amount) -> None:
        """Add spend that had no reservation (an unguarded call)."""

    @abstractmethod
    def usage(self, limit: Limit) -> LimitUsage:
        """The limit's current window: spent and held."""

    def expire(self) -> int:
        """Drop holds whose time is up; returns how many. Stores that expire holds on their own return 0."""
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class MemoryStore(BudgetStore):
    """Limits for one process: a dict under a lock.

    ``clock`` (seconds since the epoch) decides windows and hold expiry; tests pass a fake one. Expired holds are
    found through a heap ordered by expiry and settled ids through their insertion order, so a sweep costs only what
    it drops.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock
        self._lock = threading.Lock()
        self._spent: dict[tuple[str, str], Amount] = {}
        self._held: dict[tuple[str, str], Amount] = {}
        # hold id -> (expires at, amount, the (limit id, window) keys it holds)
        self._holds: dict[str, tuple[float, Amount, tuple[tuple[str, str], ...]]] = {}
        # (expires at, hold id) of every hold made; entries of holds settled since are skipped when popped
        self._expiries: list[tuple[float, str]] = []
        # hold id -> forget at, and the same pairs in the order they were settled (for a clock that does not go back,
        # the order of forgetting)
        self._settled: dict[str, float] = {}
        self._settled_order: deque[tuple[float, str]] = deque()

    def _expire_locked(self, now: float) -> int:
        dropped = 0
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            expires, hold_id = heapq.heappop(expiries)
            hold = self._holds.get(hold_id)
            if hold is not None and hold[0] == expires:
                self._drop_locked(hold_id)
                dropped += 1
        # remember settled ids long enough to make retried settlements harmless, then forget them
        order = self._settled_order
        while order and order[0][0] <= now:
            until, hold_id = order.popleft()
            if self._settled.get(hold_id) == until:
                del self._settled[hold_id]
        return dropped

    def _drop_locked(self, hold_id: str) -> None:
        _, amount, keys = self._holds.pop(hold_id)
        for key in keys:
            self._held[key] = self._held[key] - amount

    def reserve(self, hold_id: str, limits: Sequence[Limit], amount: Amount, ttl: float) -> bool:
        limits = distinct_limits(limits)
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            if hold_id in self._holds or hold_id in self._settled:
                return True  # a retried reservation: already held (or already settled)
            keys = tuple((limit.id, limit.window_key(now)) for limit in limits)
            for limit, key in zip(limits, keys, strict=True):
                refusal = limit.refusal(self._spent.get(key, NOTHING), self._held.get(key, NOTHING), amount)
                if refusal is not None:
                    raise refusal
            for key in keys:
                self._held[key] = self._held.get(key, NOTHING) + amount
            self._holds[hold_id] = (now + ttl, amount, keys)
            heapq.heappush(self._expiries, (now + ttl, hold_id))
            return True

    def commit(self, hold_id: str, limits: Sequence[Limit], amount: Amount) -> None:
        limits = distinct_limits(limits)
        with self._lock:
            now = self._clock()
            if hold_id in self._settled:
                return
            if hold_id in self._holds:
                self._drop_locked(hold_id)
            for limit in limits:
                key = (limit.id, limit.window_key(now))
                self._spent[key] = self._spent.get(key, NOTHING) + amount
            self._settle_locked(hold_id, now + 86_400)

    def release(self, hold_id: str) -> None:
        with self._lock:
            if hold_id in self._holds:
                self._drop_locked(hold_id)
            if hold_id not in self._settled:
                self._settle_locked(hold_id, self._clock() + 86_400)

    def _settle_locked(self, hold_id: str, until: float) -> None:
        self._settled[hold_id] = until
        self._settled_order.append((until, hold_id))

    def charge(self, limits: Sequence[Limit], amount: Amount) -> None:
        limits = distinct_limits(limits)
        with self._lock:
            now = self._clock()
            for limit in limits:
                key = (limit.id, limit.window_key(now))
                self._spent[key] = self._spent.get(key, NOTHING) + amount

    def usage(self, limit: Limit) -> LimitUsage:
        with self._lock:
            now = self._clock()
            self._expire_locked(now)
            key = (limit.id, limit.window_key(now))
            return LimitUsage(limit, key[1], self._spent.get(key, NOTHING), self._held.get(key, NOTHING))

    def expire(self) -> int:
        with self._lock:
            return self._expire_locked(self._clock())
