"""The BudgetStore contract, pinned the same way for MemoryStore, SQLiteStore and RedisStore.

Every parametrized test runs against the three stores with a fake clock (RedisStore then computes its windows in
Lua from the time the client sends). The smallest unit used is 1E-9 dollars, RedisStore's granularity; the tests
that need finer amounts (or pin one store's own behaviour) are marked by their names. A hypothesis state machine
drives each store against a plain reference model. Redis tests skip when no server answers (fail under ``CI``).
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import pytest
from conftest import FakeClock, TcpProxy, at, delete_prefix
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from agentcost._errors import BudgetError, BudgetExceeded, InvalidMoney, StoreUnavailable
from agentcost._store import NOTHING, WINDOWS, Amount, BudgetStore, Limit, MemoryStore, window_key
from agentcost._store_redis import RedisStore
from agentcost._store_sqlite import SQLiteStore

NANO = Decimal("1E-9")
KINDS = ("memory", "sqlite", "redis")


def nano(count: int) -> Decimal:
    """``count`` nano-dollars."""
    return Decimal(count) * NANO


def cost(value: str) -> Amount:
    return Amount(Decimal(value), 0, 0)


class Backend:
    """Makes isolated stores of one kind and closes (and, for Redis, deletes) them afterwards."""

    def __init__(self, kind: str, directory: Path, redis_url: str | None) -> None:
        self.kind = kind
        self.directory = directory
        self.redis_url = redis_url
        self.exact = kind != "redis"
        """Whether amounts finer than a nano-dollar are kept exactly (Redis rounds them)."""
        self._stores: list[BudgetStore] = []
        self._prefixes: list[str] = []

    def make(self, clock: Callable[[], float]) -> BudgetStore:
        store: BudgetStore
        if self.kind == "memory":
            store = MemoryStore(clock=clock)
        elif self.kind == "sqlite":
            path = self.directory / f"budget-{uuid.uuid4().hex[:8]}.db"
            store = SQLiteStore(path, clock=clock, synchronous="NORMAL")
        else:
            assert self.redis_url is not None
            prefix = f"agentcost-test-{uuid.uuid4().hex[:12]}"
            self._prefixes.append(prefix)
            store = RedisStore(self.redis_url, prefix=prefix, clock=clock)
        self._stores.append(store)
        return store

    def round_amount(self, amount: Amount) -> Amount:
        """What the store keeps of a held or committed amount: Redis rounds the cost up to a nano-dollar."""
        if self.exact:
            return amount
        return Amount(amount.cost.quantize(NANO, rounding=ROUND_CEILING), amount.tokens, amount.calls)

    def round_limit(self, limit: Limit) -> Limit:
        """The limit the store enforces: Redis rounds max_cost down to a nano-dollar."""
        if self.exact or limit.max_cost is None:
            return limit
        return dataclasses.replace(limit, max_cost=limit.max_cost.quantize(NANO, rounding=ROUND_FLOOR))

    def close(self) -> None:
        for store in self._stores:
            store.close()
        for prefix in self._prefixes:
            assert self.redis_url is not None
            delete_prefix(self.redis_url, prefix)


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each store kind in turn."""
    kind: str = request.param
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    made = Backend(kind, tmp_path, url)
    yield made
    made.close()


@pytest.fixture
def store(backend: Backend, clock: FakeClock) -> BudgetStore:
    """A fresh store of the kind under test, on the fake clock."""
    return backend.make(clock)


def team(max_cost: str | None = None, *, window: str = "day", name: str = "search", **counts: int) -> Limit:
    return Limit(
        scope={"team": name},
        window=window,
        max_cost=None if max_cost is None else Decimal(max_cost),
        max_tokens=counts.get("max_tokens"),
        max_calls=counts.get("max_calls"),
    )


# -- the boundary rule -------------------------------------------------------------------------------------------------
def test_reservations_summing_exactly_to_max_cost_are_admitted_one_unit_more_is_not(store: BudgetStore) -> None:
    """spent + held + requested == max_cost is admitted; 1E-9 dollars more is refused and holds nothing."""
    limit = team("1.000000003")
    for index, amount in enumerate(("0.25", "0.5", "0.250000002", "0.000000001")):
        assert store.reserve(f"h{index}", [limit], cost(amount), 60) is True
    assert store.usage(limit).held.cost == Decimal("1.000000003")
    with pytest.raises(BudgetExceeded):
        store.reserve("one-more", [limit], Amount(NANO), 60)
    assert store.usage(limit).held.cost == Decimal("1.000000003")
    assert store.usage(limit).remaining.cost == 0


def test_token_boundary(store: BudgetStore) -> None:
    """Token holds summing exactly to max_tokens are admitted; one more token is refused."""
    limit = team(max_tokens=1000)
    assert store.reserve("a", [limit], Amount(tokens=600), 60)
    assert store.reserve("b", [limit], Amount(tokens=400), 60)
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve("c", [limit], Amount(tokens=1), 60)
    assert (refused.value.metric, refused.value.remaining, refused.value.requested) == ("tokens", 0, 1)


def test_call_boundary(store: BudgetStore) -> None:
    """max_calls=3 admits three one-call holds (committed or held) and refuses the fourth."""
    limit = team(max_calls=3)
    store.reserve("a", [limit], Amount(calls=1), 60)
    store.commit("a", [limit], Amount(calls=1))
    store.reserve("b", [limit], Amount(calls=1), 60)
    store.reserve("c", [limit], Amount(calls=1), 60)
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve("d", [limit], Amount(calls=1), 60)
    assert refused.value.metric == "calls"


def test_spent_and_held_both_count_against_the_limit(store: BudgetStore) -> None:
    """The rule adds committed spend and live holds: after spending 0.6 and holding 0.3, exactly 0.1 fits."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.7"), 60)
    store.commit("a", [limit], cost("0.6"))
    store.reserve("b", [limit], cost("0.3"), 60)
    with pytest.raises(BudgetExceeded):
        store.reserve("c", [limit], cost("0.100000001"), 60)
    assert store.reserve("c", [limit], cost("0.1"), 60)
    usage = store.usage(limit)
    assert (usage.spent.cost, usage.held.cost) == (Decimal("0.6"), Decimal("0.4"))


def test_refusal_names_the_limit_metric_and_what_remains(store: BudgetStore) -> None:
    """BudgetExceeded says which limit refused, on which metric, the amount requested and the exact remainder."""
    limit = team("2", max_calls=10)
    store.charge([limit], cost("1.25"))
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve("a", [limit], Amount(Decimal("0.8"), 0, 1), 60)
    error = refused.value
    assert error.node == f"limit {limit.id}"
    assert (error.metric, error.limit, error.requested, error.remaining) == (
        "cost",
        "max_cost=2",
        Decimal("0.8"),
        Decimal("0.75"),
    )


def test_unlimited_metrics_are_not_checked(store: BudgetStore) -> None:
    """A limit with only max_calls admits any cost and tokens."""
    limit = team(max_calls=1)
    assert store.reserve("a", [limit], Amount(Decimal("5000"), 10**9, 1), 60)


# -- atomicity and idempotency -----------------------------------------------------------------------------------------
def test_reserve_is_atomic_across_limits(store: BudgetStore) -> None:
    """When one of several limits refuses, no limit holds anything, and the refusal names the one that refused."""
    roomy = team("10", name="roomy")
    tight = team("1", name="tight", window="hour")
    other = team(max_tokens=100, name="other", window="month")
    store.reserve("first", [tight], cost("0.9"), 60)
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve("second", [roomy, tight, other], Amount(Decimal("0.2"), 10, 0), 60)
    assert refused.value.node == f"limit {tight.id}"
    assert store.usage(roomy).held == NOTHING
    assert store.usage(other).held == NOTHING
    assert store.usage(tight).held.cost == Decimal("0.9")
    # the refused id was not recorded: it can be reserved once there is room
    store.release("first")
    assert store.reserve("second", [roomy, tight, other], Amount(Decimal("0.2"), 10, 0), 60)
    for limit in (roomy, tight):
        assert store.usage(limit).held.cost == Decimal("0.2")
    assert store.usage(other).held.tokens == 10


def test_a_limit_named_twice_is_held_and_charged_once(store: BudgetStore) -> None:
    """Passing the same limit twice holds, commits and charges it once (and the check sees the true total)."""
    limit = team("1")
    store.reserve("a", [limit, limit], cost("0.6"), 60)
    assert store.usage(limit).held.cost == Decimal("0.6")
    with pytest.raises(BudgetExceeded):
        store.reserve("b", [limit, limit], cost("0.5"), 60)
    store.commit("a", [limit, limit], cost("0.5"))
    store.charge([limit, limit], cost("0.1"))
    assert store.usage(limit).spent.cost == Decimal("0.6")


def test_a_retried_reserve_holds_once(store: BudgetStore) -> None:
    """Reserving the same hold id twice holds the amount once."""
    limit = team("1")
    assert store.reserve("a", [limit], cost("0.4"), 60)
    assert store.reserve("a", [limit], cost("0.4"), 60)
    assert store.usage(limit).held.cost == Decimal("0.4")


def test_commit_is_idempotent(store: BudgetStore) -> None:
    """A second commit of the same hold id (even with another amount) adds nothing."""
    limit = team("1", max_tokens=1000)
    store.reserve("a", [limit], Amount(Decimal("0.5"), 500, 1), 60)
    store.commit("a", [limit], Amount(Decimal("0.3"), 300, 1))
    store.commit("a", [limit], Amount(Decimal("0.3"), 300, 1))
    store.commit("a", [limit], Amount(Decimal("0.9"), 1, 1))
    usage = store.usage(limit)
    assert usage.spent == Amount(Decimal("0.3"), 300, 1)
    assert usage.held == NOTHING


def test_release_is_idempotent_and_frees_the_room(store: BudgetStore) -> None:
    """Releasing drops the hold without spend; releasing again (or an unknown id) changes nothing."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.8"), 60)
    store.reserve("b", [limit], cost("0.2"), 60)
    store.release("a")
    store.release("a")
    store.release("never-reserved")
    usage = store.usage(limit)
    assert (usage.spent.cost, usage.held.cost) == (Decimal(0), Decimal("0.2"))
    assert store.reserve("c", [limit], cost("0.8"), 60)


def test_a_settled_hold_id_is_not_reserved_again(store: BudgetStore) -> None:
    """Reserving an id that was already committed is a harmless retry: it holds nothing."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.5"), 60)
    store.commit("a", [limit], cost("0.5"))
    assert store.reserve("a", [limit], cost("0.5"), 60)
    assert store.usage(limit).held == NOTHING


def test_commit_after_release_adds_nothing(store: BudgetStore) -> None:
    """Pins MemoryStore's rule for every store: release settles the id, so a later commit of it is a no-op."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.5"), 60)
    store.release("a")
    store.commit("a", [limit], cost("0.5"))
    assert store.usage(limit).spent == NOTHING


# -- expiry ------------------------------------------------------------------------------------------------------------
def test_an_expired_hold_frees_its_room(store: BudgetStore, clock: FakeClock) -> None:
    """A hold stops counting once its ttl has passed (expires_at <= now), without any call to expire()."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.9"), 10)
    clock.advance(9.5)
    assert store.usage(limit).held.cost == Decimal("0.9")
    with pytest.raises(BudgetExceeded):
        store.reserve("b", [limit], cost("0.2"), 10)
    clock.advance(0.5)
    assert store.usage(limit).held == NOTHING
    assert store.reserve("b", [limit], cost("1"), 10)


def test_reserve_sweeps_expired_holds_itself(store: BudgetStore, clock: FakeClock) -> None:
    """reserve does not count a hold whose ttl has passed, with no usage() or expire() call in between."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.9"), 10)
    clock.advance(10)
    assert store.reserve("b", [limit], cost("1"), 10)


def test_expire_drops_and_counts_the_expired_holds(store: BudgetStore, clock: FakeClock) -> None:
    """expire() right after the ttl drops each expired hold (on however many limits) once and returns how many."""
    day, hour = team("10"), team("10", window="hour", name="other")
    store.reserve("a", [day, hour], cost("1"), 5)
    store.reserve("b", [day], cost("2"), 5)
    store.reserve("c", [day], cost("3"), 50)
    clock.advance(5)
    assert store.expire() == 2
    assert store.expire() == 0
    assert store.usage(day).held.cost == Decimal("3")
    assert store.usage(hour).held == NOTHING


def test_commit_after_expiry_still_counts(store: BudgetStore, clock: FakeClock) -> None:
    """Money spent is never dropped: committing a hold whose ttl passed (swept or not) adds the spend."""
    limit = team("1")
    store.reserve("swept", [limit], cost("0.4"), 5)
    store.reserve("unswept", [limit], cost("0.4"), 5)
    clock.advance(6)
    store.expire()
    store.commit("swept", [limit], cost("0.3"))
    store.commit("unswept", [limit], cost("0.2"))
    usage = store.usage(limit)
    assert (usage.spent.cost, usage.held.cost) == (Decimal("0.5"), Decimal(0))


def test_a_hold_id_can_be_reserved_again_after_it_expired(store: BudgetStore, clock: FakeClock) -> None:
    """An expired (never settled) hold id is free: reserving it again holds the new amount."""
    limit = team("1")
    store.reserve("a", [limit], cost("0.4"), 5)
    clock.advance(5)
    assert store.reserve("a", [limit], cost("0.7"), 5)
    assert store.usage(limit).held.cost == Decimal("0.7")


# -- charge and usage --------------------------------------------------------------------------------------------------
def test_charge_adds_spend_without_a_hold_and_without_a_check(store: BudgetStore) -> None:
    """charge records spend even past the limit (the call already happened); reservations are then refused."""
    limit = team("1", max_tokens=10)
    store.charge([limit], Amount(Decimal("0.75"), 8, 1))
    store.charge([limit], Amount(Decimal("0.75"), 8, 1))
    usage = store.usage(limit)
    assert usage.spent == Amount(Decimal("1.5"), 16, 2)
    assert usage.held == NOTHING
    assert usage.remaining == Amount(Decimal(0), 0, 0)
    with pytest.raises(BudgetExceeded) as refused:
        store.reserve("a", [limit], Amount(NANO), 60)
    assert refused.value.remaining == 0


def test_usage_reports_the_current_window_key_of_each_kind(store: BudgetStore) -> None:
    """Window keys are UTC calendar keys: 2026-01-31T23 (hour), 2026-01-31 (day), 2026-01 (month), all (none)."""
    expected = {"hour": "2026-01-31T23", "day": "2026-01-31", "month": "2026-01", "none": "all"}
    for window in WINDOWS:
        usage = store.usage(team("1", window=window))
        assert (usage.window, usage.spent, usage.held) == (expected[window], NOTHING, NOTHING)


def test_limits_with_other_ids_are_separate(store: BudgetStore) -> None:
    """Spend on one limit does not show on a limit with another scope or window."""
    search, ads, hourly = team("1"), team("1", name="ads"), team("1", window="hour")
    store.charge([search], cost("0.5"))
    assert store.usage(ads).spent == NOTHING
    assert store.usage(hourly).spent == NOTHING
    assert store.usage(search).spent.cost == Decimal("0.5")


# -- windows -----------------------------------------------------------------------------------------------------------
def test_spend_lands_in_the_window_current_at_commit(store: BudgetStore, clock: FakeClock) -> None:
    """A hold made at 23:30 on Jan 31 and committed at 00:30 on Feb 1 spends in the new hour, day and month (and
    the none window); the old windows keep neither spend nor hold: nothing is lost or counted twice."""
    start = clock.now
    limits = [team("5", window=window) for window in WINDOWS]
    store.reserve("a", limits, cost("2"), 7200)
    clock.advance(3600)
    # the hold lives in the old windows: the new ones have all their room
    for limit in limits[:3]:
        assert store.usage(limit).held == NOTHING
    assert store.usage(limits[3]).held.cost == Decimal("2")
    store.commit("a", limits, cost("1.5"))
    for limit in limits:
        usage = store.usage(limit)
        assert (usage.spent.cost, usage.held) == (Decimal("1.5"), NOTHING)
    assert [store.usage(limit).window for limit in limits] == ["2026-02-01T00", "2026-02-01", "2026-02", "all"]
    clock.now = start  # look back at the old windows
    for limit in limits[:3]:
        assert (store.usage(limit).spent, store.usage(limit).held) == (NOTHING, NOTHING)


def test_each_window_has_its_own_budget(store: BudgetStore, clock: FakeClock) -> None:
    """A full hour window refuses; the next hour admits a full limit again, while a none window stays full."""
    hourly, forever = team("1", window="hour"), team("3", window="none", name="all")
    store.charge([hourly, forever], cost("1"))
    with pytest.raises(BudgetExceeded):
        store.reserve("a", [hourly], Amount(NANO), 60)
    clock.advance(1800)
    assert store.reserve("a", [hourly, forever], cost("1"), 60)
    with pytest.raises(BudgetExceeded):
        store.reserve("b", [forever], cost("1.000000001"), 60)


def test_release_after_a_rollover_frees_the_old_window(store: BudgetStore, clock: FakeClock) -> None:
    """Releasing (or expiring) a hold after its window ended takes it out of that old window."""
    start = clock.now
    limit = team("1", window="hour")
    store.reserve("a", [limit], cost("0.6"), 7200)
    store.reserve("b", [limit], cost("0.3"), 4000)
    clock.advance(3600)
    store.release("a")
    clock.advance(400)
    store.expire()
    clock.now = start
    assert store.usage(limit).held == NOTHING


# -- exactness ---------------------------------------------------------------------------------------------------------
def test_held_and_spent_stay_exact_across_many_operations(store: BudgetStore) -> None:
    """Thousands of tenths of a cent are added and released without drift: totals are exact decimals."""
    limit = team("100")
    for index in range(300):
        store.reserve(f"h{index}", [limit], cost("0.001"), 60)
    for index in range(0, 300, 2):
        store.commit(f"h{index}", [limit], cost("0.000999999"))
    for index in range(1, 300, 2):
        store.release(f"h{index}")
    usage = store.usage(limit)
    assert usage.spent.cost == Decimal("0.14999985")
    assert usage.held.cost == 0


@pytest.mark.parametrize("backend", ["memory", "sqlite"], indirect=True)  # Redis keeps whole nano-dollars
def test_exact_stores_keep_amounts_of_any_magnitude(store: BudgetStore) -> None:
    """MemoryStore and SQLiteStore: 10**15 dollars next to 1E-20 dollars is held and released exactly (a 28-digit
    decimal context would round it and leave -1E-20 behind)."""
    limit = team()
    store.reserve("big", [limit], cost("1000000000000000"), 60)
    store.reserve("tiny", [limit], cost("2E-20"), 60)
    store.reserve("tinier", [limit], cost("1E-20"), 60)
    store.release("tinier")
    assert store.usage(limit).held.cost == Decimal("1000000000000000.00000000000000000002")
    store.release("big")
    store.release("tiny")
    assert store.usage(limit).held.cost == 0
    store.charge([limit], cost("0.1234567890123456789012345678901234567890"))
    assert store.usage(limit).spent.cost == Decimal("0.1234567890123456789012345678901234567890")


# -- the state machine -------------------------------------------------------------------------------------------------
Key = tuple[str, str]
holds: Bundle[str] = Bundle("holds")
ttls = st.sampled_from([1, 30, 3600])
# limits a few holds fill, while spend (committed or charged, drawn smaller) fills them only slowly, so that
# admissions keep depending on what is held, released and expired
MODEL_LIMITS = (
    Limit(scope={"team": "a"}, window="hour", max_cost=Decimal("0.0000001005")),
    Limit(scope={"team": "a"}, window="day", max_tokens=80, max_calls=12),
    Limit(scope={"team": "b"}, window="month", max_cost=Decimal("0.00000016"), max_calls=20),
    Limit(scope={"team": "b"}, window="none", max_cost=Decimal("0.0000003")),
)
SUB_NANO = st.sampled_from([Decimal("1E-10"), Decimal("1.5E-9"), Decimal("3.3333E-9"), Decimal("0.0000000099999")])
hold_costs = st.one_of(st.integers(0, 60).map(nano), SUB_NANO)
spend_costs = st.one_of(st.integers(0, 6).map(nano), SUB_NANO)
hold_amounts = st.builds(Amount, hold_costs, st.integers(0, 30), st.integers(0, 4))
spend_amounts = st.builds(Amount, spend_costs, st.integers(0, 4), st.integers(0, 1))
limit_lists = st.lists(st.sampled_from(MODEL_LIMITS), min_size=1, max_size=3)


class Reference:
    """The contract as plain dicts: holds with their expiry, spend per (limit id, window), settled ids.

    Held is recomputed from the live holds (expires_at > now) at every read, so it is independent of any store's
    counters; amounts and limits go through the backend's rounding (none for the exact stores).
    """

    def __init__(self, backend: Backend, clock: FakeClock) -> None:
        self.backend = backend
        self.clock = clock
        self.spent: dict[Key, Amount] = {}
        self.holds: dict[str, tuple[float, Amount, tuple[Key, ...]]] = {}
        self.settled: set[str] = set()

    @staticmethod
    def distinct(limits: Sequence[Limit]) -> list[Limit]:
        """The first limit of each id, in order."""
        seen: dict[str, Limit] = {}
        for limit in limits:
            seen.setdefault(limit.id, limit)
        return list(seen.values())

    def key(self, limit: Limit) -> Key:
        return (limit.id, limit.window_key(self.clock.now))

    def held(self, key: Key) -> Amount:
        total = NOTHING
        for expires, amount, keys in self.holds.values():
            if expires > self.clock.now and key in keys:
                total = total + amount
        return total

    def reserve(self, hold_id: str, limits: Sequence[Limit], amount: Amount, ttl: float) -> BudgetExceeded | None:
        hold = self.holds.get(hold_id)
        if hold is not None and hold[0] <= self.clock.now:
            del self.holds[hold_id]
        if hold_id in self.holds or hold_id in self.settled:
            return None
        amount = self.backend.round_amount(amount)
        limits = self.distinct(limits)
        for limit in limits:
            key = self.key(limit)
            refusal = self.backend.round_limit(limit).refusal(self.spent.get(key, NOTHING), self.held(key), amount)
            if refusal is not None:
                return refusal
        self.holds[hold_id] = (self.clock.now + ttl, amount, tuple(self.key(limit) for limit in limits))
        return None

    def commit(self, hold_id: str, limits: Sequence[Limit], amount: Amount) -> None:
        if hold_id in self.settled:
            return
        self.holds.pop(hold_id, None)
        self.charge(limits, amount)
        self.settled.add(hold_id)

    def release(self, hold_id: str) -> None:
        self.holds.pop(hold_id, None)
        self.settled.add(hold_id)

    def charge(self, limits: Sequence[Limit], amount: Amount) -> None:
        for limit in self.distinct(limits):
            key = self.key(limit)
            self.spent[key] = self.spent.get(key, NOTHING) + self.backend.round_amount(amount)

    def expire(self) -> int:
        expired = [hold_id for hold_id, (expires, _, _) in self.holds.items() if expires <= self.clock.now]
        for hold_id in expired:
            del self.holds[hold_id]
        return len(expired)


class StoreMachine(RuleBasedStateMachine):
    """Random reserve / commit / release / charge / expire / clock steps, compared with :class:`Reference`.

    Reservations take fresh hold ids; retries (of reserve, commit and release) draw ids used before.
    """

    def __init__(self, backend: Backend) -> None:
        super().__init__()
        self.clock = FakeClock(at("2026-01-31T22:50:00"))
        self.start = self.clock.now
        self.backend = backend
        self.store = backend.make(self.clock)
        self.model = Reference(backend, self.clock)
        self.count = 0

    @initialize()
    def empty(self) -> None:
        for limit in MODEL_LIMITS:
            assert self.store.usage(limit).spent == NOTHING

    @rule(target=holds, limits=limit_lists, amount=hold_amounts, ttl=ttls)
    def reserve(self, limits: list[Limit], amount: Amount, ttl: float) -> str:
        self.count += 1
        hold_id = f"h{self.count}"
        self.reserve_again(hold_id, limits, amount, ttl)
        return hold_id

    @rule(hold_id=holds, limits=limit_lists, amount=hold_amounts, ttl=ttls)
    def reserve_again(self, hold_id: str, limits: list[Limit], amount: Amount, ttl: float) -> None:
        expected = self.model.reserve(hold_id, limits, amount, ttl)
        if expected is None:
            assert self.store.reserve(hold_id, limits, amount, ttl) is True
        else:
            with pytest.raises(BudgetExceeded) as refused:
                self.store.reserve(hold_id, limits, amount, ttl)
            assert (refused.value.node, refused.value.metric) == (expected.node, expected.metric)

    @rule(hold_id=holds, limits=limit_lists, amount=spend_amounts)
    def commit(self, hold_id: str, limits: list[Limit], amount: Amount) -> None:
        self.model.commit(hold_id, limits, amount)
        self.store.commit(hold_id, limits, amount)

    @rule(hold_id=holds)
    def release(self, hold_id: str) -> None:
        self.model.release(hold_id)
        self.store.release(hold_id)

    @rule(limits=limit_lists, amount=spend_amounts)
    def charge(self, limits: list[Limit], amount: Amount) -> None:
        self.model.charge(limits, amount)
        self.store.charge(limits, amount)

    @rule()
    def expire(self) -> None:
        # stores may already have swept some (MemoryStore and SQLiteStore sweep all holds on every usage call)
        expected = self.model.expire()
        assert 0 <= self.store.expire() <= expected

    @precondition(lambda self: self.clock.now - self.start < 80_000)  # settled ids are kept a day
    @rule(seconds=st.sampled_from([0.5, 1, 29, 600, 1800, 3600, 5400]))
    def advance(self, seconds: float) -> None:
        self.usage_agrees()  # before the clock moves: holds that expire now are left for the next operation to sweep
        self.clock.advance(seconds)

    @rule()
    def usage_agrees(self) -> None:
        # a rule, not an invariant: MemoryStore and SQLiteStore sweep every expired hold on usage(), which would hide
        # a reserve that forgot to sweep before checking
        for limit in MODEL_LIMITS:
            usage = self.store.usage(limit)
            key = self.model.key(limit)
            assert usage.window == key[1]
            assert usage.spent == self.model.spent.get(key, NOTHING), limit
            assert usage.held == self.model.held(key), limit

    def teardown(self) -> None:
        self.usage_agrees()


@pytest.mark.parametrize("kind", KINDS)
def test_store_matches_the_reference_model(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Random sequences of every operation and clock steps (across hour, day and month ends) never make the store's
    usage (window, spent, held) or its admissions and refusals diverge from the plain reference model."""
    url = request.getfixturevalue("redis_url") if kind == "redis" else None
    backends: list[Backend] = []

    class Machine(StoreMachine):
        def __init__(self) -> None:
            backends.append(Backend(kind, tmp_path, url))
            super().__init__(backends[-1])

    try:
        run_state_machine_as_test(
            Machine,
            settings=settings(
                max_examples=100 if kind == "memory" else 70,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            ),
        )
    finally:
        for backend in backends:
            backend.close()


# -- MemoryStore -------------------------------------------------------------------------------------------------------
def test_memory_store_forgets_settled_ids_after_a_day(clock: FakeClock) -> None:
    """MemoryStore: a settled id is remembered for a day (a retried commit is a no-op), then forgotten."""
    store = MemoryStore(clock=clock)
    limit = team("1", window="none")
    store.reserve("a", [limit], cost("0.5"), 60)
    store.commit("a", [limit], cost("0.5"))
    clock.advance(86_399)
    store.commit("a", [limit], cost("0.5"))
    assert store.usage(limit).spent.cost == Decimal("0.5")
    clock.advance(1)
    store.expire()
    assert store._settled == {}
    assert not store._settled_order


# -- SQLiteStore -------------------------------------------------------------------------------------------------------
def test_sqlite_creates_its_schema_with_a_version_row_in_wal_mode(tmp_path: Path) -> None:
    """A new file gets the tables, schema_version '1' in meta, and WAL journaling."""
    path = tmp_path / "budget.db"
    store = SQLiteStore(path)
    assert not path.exists()  # opened lazily, by the first operation
    store.usage(team("1"))
    store.close()
    connection = sqlite3.connect(path)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"meta", "counters", "holds", "settled"} <= tables
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        connection.close()


def test_sqlite_refuses_a_file_of_another_schema_version(tmp_path: Path) -> None:
    """A file written by another schema version raises BudgetError instead of being misread."""
    path = tmp_path / "budget.db"
    store = SQLiteStore(path)
    store.usage(team("1"))
    store.close()
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.close()
    other = SQLiteStore(path)
    with pytest.raises(BudgetError, match="schema version '99'"):
        other.usage(team("1"))
    other.close()


def test_sqlite_forgets_settled_ids_after_a_day(tmp_path: Path, clock: FakeClock) -> None:
    """SQLiteStore keeps a settled id for a day (a retried commit is a no-op), then deletes its row."""
    store = SQLiteStore(tmp_path / "budget.db", clock=clock)
    limit = team("1", window="none")
    store.commit("a", [limit], cost("0.5"))
    clock.advance(86_399)
    store.commit("a", [limit], cost("0.5"))
    assert store.usage(limit).spent.cost == Decimal("0.5")
    clock.advance(1)
    store.expire()
    assert store._file.connection().execute("SELECT count(*) FROM settled").fetchone() == (0,)
    store.close()


def test_sqlite_keeps_money_as_exact_decimal_text(tmp_path: Path) -> None:
    """Costs are stored as decimal TEXT, digit for digit, never as a REAL."""
    path = tmp_path / "budget.db"
    store = SQLiteStore(path)
    store.charge([team("1")], cost("0.1000000000000000000000000000001"))
    store.close()
    connection = sqlite3.connect(path)
    try:
        row = connection.execute("SELECT spent_cost, typeof(spent_cost) FROM counters").fetchone()
    finally:
        connection.close()
    assert row == ("0.1000000000000000000000000000001", "text")


def test_sqlite_state_is_shared_between_store_objects(tmp_path: Path, clock: FakeClock) -> None:
    """Two SQLiteStore objects on one file see each other's holds and spend, and settled ids."""
    first = SQLiteStore(tmp_path / "budget.db", clock=clock)
    second = SQLiteStore(tmp_path / "budget.db", clock=clock)
    limit = team("1")
    first.reserve("a", [limit], cost("0.7"), 60)
    with pytest.raises(BudgetExceeded):
        second.reserve("b", [limit], cost("0.4"), 60)
    second.commit("a", [limit], cost("0.5"))
    first.commit("a", [limit], cost("0.5"))
    assert first.usage(limit).spent.cost == Decimal("0.5")
    first.close()
    second.close()


def test_sqlite_refuses_bad_arguments(tmp_path: Path) -> None:
    """An in-memory path, an unknown synchronous mode, a float cost and negative counts raise before any write."""
    with pytest.raises(BudgetError):
        SQLiteStore(":memory:")
    with pytest.raises(BudgetError):
        SQLiteStore(tmp_path / "b.db", synchronous="SOMETIMES")
    store = SQLiteStore(tmp_path / "b.db")
    with pytest.raises(InvalidMoney):
        store.charge([team("1")], Amount(0.5, 0, 0))  # type: ignore[arg-type]
    with pytest.raises(BudgetError):
        store.reserve("a", [team("1")], Amount(Decimal(1), -1, 0), 60)
    assert store.usage(team("1")).spent == NOTHING
    store.close()
    with pytest.raises(BudgetError, match="closed"):
        store.usage(team("1"))


def test_sqlite_store_is_thread_safe(tmp_path: Path) -> None:
    """8 threads sharing one SQLiteStore reserve and commit against one limit: no over-admission, exact totals."""
    store = SQLiteStore(tmp_path / "budget.db", synchronous="NORMAL")
    limit = team("1")
    committed: list[Decimal] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        for index in range(40):
            hold = f"{worker}-{index}"
            try:
                store.reserve(hold, [limit], cost("0.01"), 60)
            except BudgetExceeded:
                continue
            store.commit(hold, [limit], cost("0.01"))
            with lock:
                committed.append(Decimal("0.01"))

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(committed) == 100
    assert store.usage(limit).spent.cost == Decimal("1.00")
    store.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sqlite_store_used_across_fork_opens_its_own_connection(tmp_path: Path) -> None:
    """A store opened in the parent keeps working in a forked child, which opens a connection of its own."""
    store = SQLiteStore(tmp_path / "budget.db")
    limit = team("1")
    store.charge([limit], cost("0.25"))
    parent_connection = store._file.connection()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            if store._file.connection() is not parent_connection:
                store.charge([limit], cost("0.5"))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._file.connection() is parent_connection
    assert store.usage(limit).spent.cost == Decimal("0.75")
    store.close()


def test_sqlite_waits_for_a_writer_instead_of_failing(tmp_path: Path) -> None:
    """An operation waits out another connection's write transaction (busy timeout), then succeeds."""
    path = tmp_path / "budget.db"
    store = SQLiteStore(path, busy_timeout=5)
    store.usage(team("1"))
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")
    timer = threading.Timer(0.3, lambda: blocker.execute("COMMIT"))
    timer.start()
    store.charge([team("1")], cost("0.5"))  # blocks ~0.3 s
    timer.join()
    blocker.close()
    assert store.usage(team("1")).spent.cost == Decimal("0.5")
    store.close()


def test_sqlite_raises_store_unavailable_when_locked_past_the_timeout(tmp_path: Path) -> None:
    """If another connection holds the write lock longer than busy_timeout, the call raises StoreUnavailable."""
    path = tmp_path / "budget.db"
    store = SQLiteStore(path, busy_timeout=0.2)
    store.usage(team("1"))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.charge([team("1")], cost("0.5"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.usage(team("1")).spent == NOTHING
    store.close()


# -- RedisStore --------------------------------------------------------------------------------------------------------
@pytest.fixture
def redis_store(redis_url: str, redis_prefix: str, clock: FakeClock) -> Iterator[RedisStore]:
    """A RedisStore on the fake clock with a prefix of its own."""
    store = RedisStore(redis_url, prefix=redis_prefix, clock=clock)
    yield store
    store.close()


def test_redis_rounds_amounts_up_and_limits_down(redis_store: RedisStore) -> None:
    """Holds and commits are rounded up to the next nano-dollar, max_cost down: rounding never lets spend pass."""
    limit = team("0.0000000109")  # enforced as 10 nano-dollars
    redis_store.reserve("a", [limit], cost("0.0000000001"), 60)  # holds 1 nano-dollar
    assert redis_store.usage(limit).held.cost == nano(1)
    redis_store.reserve("b", [limit], cost("0.000000009"), 60)
    with pytest.raises(BudgetExceeded) as refused:
        redis_store.reserve("c", [limit], cost("0.00000000001"), 60)
    assert refused.value.remaining == 0
    redis_store.commit("b", [limit], cost("0.0000000080001"))  # spends 9 nano-dollars
    assert redis_store.usage(limit).spent.cost == nano(9)


def test_redis_refuses_limits_and_amounts_beyond_exact_lua_numbers(redis_store: RedisStore) -> None:
    """A max_cost of 2**53 nano-dollars or more (or such an amount, or token limit) raises BudgetError."""
    too_big = nano(2**53)
    with pytest.raises(BudgetError, match="2\\*\\*53"):
        redis_store.reserve("a", [team(str(too_big))], cost("1"), 60)
    with pytest.raises(BudgetError):
        redis_store.reserve("a", [team(max_tokens=2**53)], cost("1"), 60)
    with pytest.raises(BudgetError):
        redis_store.commit("a", [team("1")], Amount(too_big))
    largest = team(str(nano(2**53 - 1)))
    assert redis_store.reserve("a", [largest], Amount(nano(2**53 - 1)), 60)
    with pytest.raises(BudgetExceeded):
        redis_store.reserve("b", [largest], Amount(nano(1)), 60)


def test_redis_makes_one_round_trip_per_operation(redis_url: str, redis_prefix: str) -> None:
    """reserve (admitted or refused), commit, release and charge each cost exactly one request: counted by the
    store and confirmed by the server's EVALSHA call count."""
    import redis

    store = RedisStore(redis_url, prefix=redis_prefix)
    server = redis.Redis.from_url(redis_url)
    limits = [team("1"), team("5", window="hour"), team(max_calls=100, window="month")]

    def evalsha_calls() -> int:
        stats = server.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
        return int(stats["calls"])

    def refused_reserve() -> None:
        with pytest.raises(BudgetExceeded):
            store.reserve("c", limits, Amount(Decimal("0.6")), 60)

    operations: list[Callable[[], object]] = [
        lambda: store.reserve("a", limits, Amount(Decimal("0.5"), 10, 1), 60),
        lambda: store.reserve("b", limits, Amount(Decimal("0.4"), 10, 1), 60),
        lambda: store.commit("a", limits, Amount(Decimal("0.45"), 10, 1)),
        lambda: store.release("b"),
        lambda: store.charge(limits, Amount(Decimal("0.05"), 10, 1)),
        refused_reserve,
    ]
    try:
        for operation in operations:
            trips, calls = store.round_trips, evalsha_calls()
            operation()
            assert store.round_trips - trips == 1
            assert evalsha_calls() - calls == 1
    finally:
        store.close()
        server.close()


def test_redis_reloads_a_script_the_server_lost(redis_url: str, redis_prefix: str, clock: FakeClock) -> None:
    """After SCRIPT FLUSH the next call still works (EVAL with the body), and the one after is one EVALSHA again."""
    import redis

    store = RedisStore(redis_url, prefix=redis_prefix, clock=clock)
    server = redis.Redis.from_url(redis_url)
    try:
        server.script_flush()
        trips = store.round_trips
        assert store.reserve("a", [team("1")], cost("0.5"), 60)
        assert store.round_trips - trips == 2  # NOSCRIPT, then EVAL (which caches it again)
        trips = store.round_trips
        store.commit("a", [team("1")], cost("0.5"))
        assert store.round_trips - trips == 1
        assert store.usage(team("1")).spent.cost == Decimal("0.5")
    finally:
        store.close()
        server.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    moment=st.one_of(
        st.integers(0, 2**33),
        st.sampled_from(["2000-02-29T23:59:59", "2100-02-28T23:59:59", "2100-03-01T00:00:00", "2024-12-31T23:59:59"])
        .map(at)
        .map(int),
    )
)
def test_redis_computes_window_keys_like_python(redis_store: RedisStore, clock: FakeClock, moment: int) -> None:
    """The Lua calendar gives the same hour, day and month keys as agentcost's window_key, 1970 to 2242."""
    for seconds in (moment, moment + 0.999):
        clock.now = seconds
        for window in WINDOWS:
            assert redis_store.usage(team("1", window=window)).window == window_key(window, seconds)


def test_redis_uses_the_server_clock_by_default(redis_url: str, redis_prefix: str) -> None:
    """Without a clock, the window key comes from the server's TIME (which here agrees with the local clock)."""
    import time

    import redis

    store = RedisStore(redis_url, prefix=redis_prefix)
    server = redis.Redis.from_url(redis_url)
    try:
        seconds, _ = server.time()
        before = window_key("hour", seconds)
        key = store.usage(team("1", window="hour")).window
        seconds, _ = server.time()
        assert key in {before, window_key("hour", seconds)}
        assert abs(seconds - time.time()) < 5
    finally:
        store.close()
        server.close()


def test_redis_keys_expire_after_their_window(redis_url: str, redis_store: RedisStore, redis_prefix: str) -> None:
    """Window keys expire a day after the window ends (the none window never), holds a day after their expiry and
    settled ids after a day; an empty store leaves only those keys."""
    import redis

    server = redis.Redis.from_url(redis_url, decode_responses=True)
    tag = "{" + redis_prefix + "}"
    day, month, forever = team("1"), team("1", window="month"), team("1", window="none")
    redis_store.reserve("a", [day, month, forever], cost("0.5"), 60)  # at 2026-01-31T23:30:00
    redis_store.commit("b", [day], cost("0.1"))
    try:
        assert server.ttl(f"{tag}:w:{day.id}:2026-01-31") in range(1800 + 86_400 - 2, 1800 + 86_400 + 1)
        assert server.ttl(f"{tag}:z:{day.id}:2026-01-31") == server.ttl(f"{tag}:w:{day.id}:2026-01-31")
        assert server.ttl(f"{tag}:w:{month.id}:2026-01") in range(1800 + 86_400 - 2, 1800 + 86_400 + 1)
        assert server.ttl(f"{tag}:w:{forever.id}:all") == -1
        assert server.ttl(f"{tag}:h:a") in range(60 + 86_400 - 2, 60 + 86_400 + 1)
        assert server.ttl(f"{tag}:s:b") in range(86_400 - 2, 86_400 + 1)
        redis_store.release("a")
        assert server.exists(f"{tag}:h:a") == 0
        assert server.zcard(f"{tag}:hx") == 0
        assert server.zcard(f"{tag}:z:{day.id}:2026-01-31") == 0
    finally:
        server.close()


def unreachable_prefix() -> str:
    """A prefix for a store whose server is never reached (nothing to clean up)."""
    return f"agentcost-test-{uuid.uuid4().hex[:12]}"


def test_redis_windows_release_expired_holds_whose_hash_is_gone(
    redis_url: str, redis_store: RedisStore, redis_prefix: str, clock: FakeClock
) -> None:
    """Each window's hold set carries the held amounts, so an expired hold still leaves every window it held even
    if its own hash was lost (e.g. evicted): nothing stays held forever."""
    import redis

    day, hour = team("1"), team("1", window="hour", name="other")
    redis_store.reserve("a", [day, hour], Amount(Decimal("0.4"), 7, 1), 10)
    server = redis.Redis.from_url(redis_url)
    try:
        server.delete("{" + redis_prefix + "}:h:a")
    finally:
        server.close()
    clock.advance(10)
    assert redis_store.usage(day).held == NOTHING
    assert redis_store.usage(hour).held == NOTHING
    assert redis_store.expire() == 0


def test_redis_store_is_thread_safe(redis_store: RedisStore) -> None:
    """8 threads sharing one RedisStore: no over-admission, exact totals, one round trip per call."""
    limit = team("1")
    admitted: list[int] = []
    trips = redis_store.round_trips

    def work(worker: int) -> None:
        for index in range(30):
            hold = f"{worker}-{index}"
            try:
                redis_store.reserve(hold, [limit], cost("0.01"), 60)
            except BudgetExceeded:
                continue
            redis_store.commit(hold, [limit], cost("0.01"))
            admitted.append(1)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 100
    assert redis_store.round_trips - trips == 8 * 30 + 100
    assert redis_store.usage(limit).spent.cost == Decimal("1.00")


def test_redis_fails_closed_by_default() -> None:
    """With nothing listening, reserve raises StoreUnavailable (and usage too) after one failed attempt."""
    store = RedisStore("redis://127.0.0.1:1/0", prefix=unreachable_prefix(), socket_timeout=0.5)
    with pytest.raises(StoreUnavailable):
        store.reserve("a", [team("1")], cost("0.5"), 60)
    with pytest.raises(StoreUnavailable):
        store.usage(team("1"))
    assert store.fail_open_admissions == 0
    assert store.round_trips == 0
    store.close()


def test_redis_fails_open_when_asked() -> None:
    """on_unavailable='open': reserve returns False (admitted without a hold) and counts it."""
    store = RedisStore("redis://127.0.0.1:1/0", prefix=unreachable_prefix(), on_unavailable="open", socket_timeout=0.5)
    assert store.reserve("a", [team("1")], cost("0.5"), 60) is False
    assert store.reserve("b", [team("1")], cost("0.5"), 60) is False
    assert store.fail_open_admissions == 2
    store.close()


def test_redis_queues_settlements_while_down_and_replays_them(
    redis_url: str, redis_proxy: TcpProxy, redis_prefix: str, clock: FakeClock
) -> None:
    """While Redis is cut off, commit/release/charge return normally and queue; the next call that reaches Redis
    sends the queue first (one pipelined round trip), so no spend is lost and holds are released."""
    limit = team("1")
    store = RedisStore(redis_proxy.url, prefix=redis_prefix, clock=clock, socket_timeout=1.0)
    direct = RedisStore(redis_url, prefix=redis_prefix, clock=clock)
    try:
        store.reserve("a", [limit], cost("0.4"), 60)
        store.reserve("b", [limit], cost("0.4"), 60)
        redis_proxy.stop()
        store.commit("a", [limit], cost("0.3"))
        store.release("b")
        store.charge([limit], cost("0.05"))
        store.commit("a", [limit], cost("0.3"))  # a retry: replayed twice, counted once
        assert store.pending_settlements == 4
        with pytest.raises(StoreUnavailable):
            store.reserve("c", [limit], cost("0.1"), 60)
        assert direct.usage(limit).held.cost == Decimal("0.8")  # nothing reached Redis
        redis_proxy.start()
        trips = store.round_trips
        usage = store.usage(limit)
        assert store.round_trips - trips == 2  # the queue in one pipeline, then the call itself
        assert store.pending_settlements == 0
        assert (usage.spent.cost, usage.held.cost) == (Decimal("0.35"), Decimal(0))
        assert store.dropped_settlements == 0
    finally:
        store.close()
        direct.close()


def test_redis_bounds_the_queue_dropping_releases_first() -> None:
    """A full queue evicts a queued release before losing a commit; each loss is counted in dropped_settlements."""
    store = RedisStore("redis://127.0.0.1:1/0", prefix=unreachable_prefix(), socket_timeout=0.5, max_pending=2)
    limit = team("1")
    store.commit("a", [limit], cost("0.1"))
    store.release("b")
    store.commit("c", [limit], cost("0.1"))  # evicts the release of b
    assert (store.pending_settlements, store.dropped_settlements) == (2, 1)
    store.release("d")  # dropped: only commits are queued
    store.charge([limit], cost("0.1"))  # dropped: the queue is full of commits
    assert (store.pending_settlements, store.dropped_settlements) == (2, 3)
    assert [args[0] for args in store._pending] == ["commit", "commit"]
    store.close()


def test_redis_store_refuses_bad_arguments() -> None:
    """Unknown on_unavailable values, prefixes with braces, float costs and negative max_pending raise."""
    with pytest.raises(BudgetError):
        RedisStore("redis://127.0.0.1:1/0", on_unavailable="maybe")
    with pytest.raises(BudgetError):
        RedisStore("redis://127.0.0.1:1/0", prefix="a{b}")
    with pytest.raises(BudgetError):
        RedisStore("redis://127.0.0.1:1/0", max_pending=-1)
    store = RedisStore("redis://127.0.0.1:1/0", prefix=unreachable_prefix(), socket_timeout=0.5)
    with pytest.raises(InvalidMoney):
        store.commit("a", [team("1")], Amount(0.5, 0, 0))  # type: ignore[arg-type]
    assert store.pending_settlements == 0
    store.close()


def test_redis_store_without_redis_py_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-py installed, RedisStore raises ImportError naming pip install 'agentcost-sdk[redis]'."""
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ImportError, match=r"pip install 'agentcost-sdk\[redis\]'"):
        RedisStore()
