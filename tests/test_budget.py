"""Budgets on the tree: limits along the path, reservations, expiry, events, scoped limits and bad input."""

from __future__ import annotations

import contextlib
import decimal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

import agentcost
from agentcost import (
    Amount,
    Budget,
    BudgetError,
    BudgetEvent,
    BudgetExceeded,
    CostContext,
    DegradePolicy,
    InvalidMoney,
    InvalidMoneyType,
    Limit,
    MemoryStore,
    Remaining,
    Reservation,
    ReservationError,
    Usage,
    _budget,
)
from agentcost._budget import _Account

D = Decimal
SMALLEST = D("1E-50")
"""The smallest amount of money agentcost accepts (MIN_MONEY_EXPONENT)."""


def own_account(ctx: CostContext) -> _Account:
    """The node's own account (the last of its path). Private: the public API only exposes the tightest remaining,
    and these tests need each node's spent and held amounts separately."""
    return ctx._accounts[-1]


def held(ctx: CostContext) -> tuple[Decimal, int, int]:
    """What the node's own account holds, read under the tree lock (as the library reads it)."""
    account = own_account(ctx)
    with ctx._run.tree._lock:
        return account.held_cost, account.held_tokens, account.held_calls


def spent(ctx: CostContext) -> tuple[Decimal, int, int]:
    """What the node's own account has spent, read under the tree lock."""
    account = own_account(ctx)
    with ctx._run.tree._lock:
        return account.spent_cost, account.spent_tokens, account.spent_calls


def timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------------------------------------------------
# limits along the path
# ---------------------------------------------------------------------------------------------------------------------


def test_spend_counts_against_the_node_and_every_ancestor() -> None:
    """A call recorded deep in the tree is charged to its own budget and to every budgeted ancestor's."""
    with agentcost.run("r", budget=Budget(max_cost=D("10"))) as root:
        agent = root.child("agent", budget=Budget(max_cost=D("5")))
        step = agent.child("step")  # no budget of its own: its spend still counts upward
        leaf = step.child("leaf", budget=Budget(max_tokens=100_000))
        leaf.record("tool", "search", cost="0.25")
        leaf.record_llm(model="gpt-4o", provider="openai", usage=Usage(1000, 100))
        assert spent(leaf) == (D("0.2535"), 1100, 2)
        assert spent(agent) == (D("0.2535"), 1100, 2)
        assert spent(root) == (D("0.2535"), 1100, 2)
        sibling = root.child("sibling", budget=Budget(max_cost=D("1")))
        assert spent(sibling) == (D("0"), 0, 0)


def test_remaining_is_the_tightest_along_the_path() -> None:
    """remaining() takes, per metric, the smallest remainder over the node's and its ancestors' hard budgets."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_calls=10)) as root:
        agent = root.child("agent", budget=Budget(max_cost=D("5"), max_tokens=500))
        other = root.child("other")
        other.record("tool", "t", cost="0.75")
        assert agent.remaining() == Remaining(D("0.25"), 500, 9)
        agent.record("tool", "t", cost="0.05", usage=Usage(100, 50))
        assert agent.remaining() == Remaining(D("0.20"), 350, 8)
        assert root.remaining() == Remaining(D("0.20"), None, 8)


def test_remaining_without_any_budget_is_unlimited() -> None:
    """A node with no budget anywhere on its path reports None (unlimited) on every metric."""
    with agentcost.run("r") as root:
        root.record("tool", "t", cost="3")
        assert root.child("a").remaining() == Remaining(None, None, None)


def test_remaining_never_goes_negative_after_an_overshoot() -> None:
    """When recorded spend exceeds a limit, remaining() reports zero, not a negative amount."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_tokens=10, max_calls=1)) as root:
        root.record("tool", "t", cost="1.5", usage=Usage(20, 0))
        root.record("tool", "t", cost="0")
        assert root.remaining() == Remaining(D("0"), 0, 0)


def test_reserve_holds_on_the_node_and_every_ancestor() -> None:
    """reserve() holds the amounts on the node's account and every ancestor's account."""
    with agentcost.run("r", budget=Budget(max_cost=D("10"))) as root:
        agent = root.child("agent", budget=Budget(max_cost=D("2"), max_tokens=1000))
        step = agent.child("step")
        reservation = step.reserve(cost="0.5", tokens=300)
        assert held(agent) == (D("0.5"), 300, 1)
        assert held(root) == (D("0.5"), 300, 1)
        assert step.remaining() == Remaining(D("1.5"), 700, None)
        reservation.release()
        assert held(agent) == (D("0"), 0, 0)
        assert held(root) == (D("0"), 0, 0)


def test_a_refusal_anywhere_on_the_path_holds_nothing_anywhere() -> None:
    """A reservation refused by an ancestor leaves the node's own account (and every other) untouched."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as root:
        agent = root.child("agent", budget=Budget(max_cost=D("10")))
        first = agent.reserve(cost="0.7")
        with pytest.raises(BudgetExceeded) as info:
            agent.reserve(cost="0.4")
        assert info.value.node == "run 'r'"
        assert held(agent) == (D("0.7"), 0, 1)
        assert held(root) == (D("0.7"), 0, 1)
        first.commit("0.7")
        assert held(root) == (D("0"), 0, 0)
        assert spent(agent) == (D("0.7"), 0, 1)


def test_budget_exceeded_names_the_node_limit_and_amounts() -> None:
    """BudgetExceeded carries the refusing node, the limit, the requested and remaining amounts, and says them."""
    with agentcost.run("r") as root:
        agent = root.child("researcher", budget=Budget(max_cost=D("1"), max_tokens=100))
        agent.record("tool", "t", cost="0.6")
        with pytest.raises(BudgetExceeded) as info:
            agent.reserve(cost="0.5")
        error = info.value
        assert (error.node, error.limit, error.metric) == ("agent 'researcher'", "max_cost=1", "cost")
        assert (error.requested, error.remaining) == (D("0.5"), D("0.4"))
        message = str(error)
        for part in ("agent 'researcher'", "max_cost=1", "cost", "$0.5", "$0.4"):
            assert part in message
        with pytest.raises(BudgetExceeded) as info:
            agent.reserve(tokens=101, calls=0)
        error = info.value
        assert (error.metric, error.limit, error.requested, error.remaining) == ("tokens", "max_tokens=100", 101, 100)
        assert "tokens requested 101, remaining 100" in str(error)


def test_reservations_summing_exactly_to_a_limit_are_admitted() -> None:
    """Holds that add up exactly to the limit are all admitted, on cost, tokens and calls."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_tokens=10, max_calls=3)) as root:
        for cost, tokens in (("0.3", 3), ("0.3", 3), ("0.4", 4)):
            root.reserve(cost=cost, tokens=tokens)
        assert root.remaining() == Remaining(D("0"), 0, 0)


@pytest.mark.parametrize(
    ("cost", "tokens", "calls", "metric"),
    [(SMALLEST, 0, 0, "cost"), (D(0), 1, 0, "tokens"), (D(0), 0, 1, "calls")],
)
def test_one_smallest_unit_beyond_the_limit_is_refused(cost: Decimal, tokens: int, calls: int, metric: str) -> None:
    """With the limit exactly used, one more smallest unit (1E-50 dollars, one token, one call) is refused."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_tokens=10, max_calls=3)) as root:
        root.reserve(cost="0.5", tokens=5)
        root.record("tool", "t", cost="0.5", usage=Usage(5, 0))
        root.reserve(cost=0, calls=1)
        with pytest.raises(BudgetExceeded) as info:
            root.reserve(cost=cost, tokens=tokens, calls=calls)
        assert info.value.metric == metric


@settings(max_examples=40, deadline=None)
@given(
    parts=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 5000)),
        min_size=1,
        max_size=8,
    ),
    where=st.sampled_from(["node", "ancestor", "limit"]),
)
def test_any_partition_of_a_limit_fits_and_nothing_more(parts: list[tuple[int, int]], where: str) -> None:
    """Holds summing exactly to a node's, ancestor's or scoped limit all fit; one smallest unit more is refused."""
    max_cost = sum((D(micros).scaleb(-6) for micros, _ in parts), D(0))
    max_tokens = sum(tokens for _, tokens in parts)
    max_calls = len(parts)
    exact = {"max_cost": max_cost, "max_tokens": max_tokens, "max_calls": max_calls}
    store = MemoryStore()
    root_budget = Budget(**exact) if where == "ancestor" else None  # type: ignore[arg-type]
    node_budget = Budget(**exact) if where == "node" else None  # type: ignore[arg-type]
    if where == "limit":
        store.add_limit(Limit(scope={"team": "t"}, window="none", **exact))  # type: ignore[arg-type]
    root = agentcost.run("r", budget=root_budget, store=store, attrs={"team": "t"})
    node = root.child("n", budget=node_budget).child("leaf")
    for micros, tokens in parts:
        node.reserve(cost=D(micros).scaleb(-6), tokens=tokens, calls=1)
    assert node.remaining() == Remaining(D(0), 0, 0)
    extras: list[dict[str, Any]] = [{"cost": SMALLEST, "calls": 0}, {"tokens": 1, "calls": 0}, {"calls": 1}]
    for extra in extras:
        with pytest.raises(BudgetExceeded) as info:
            node.reserve(**extra)
        assert info.value.node == {"node": "agent 'n'", "ancestor": "run 'r'", "limit": "limit team=t/none"}[where]


# ---------------------------------------------------------------------------------------------------------------------
# resolving reservations
# ---------------------------------------------------------------------------------------------------------------------


def test_commit_charges_the_actual_amount_and_frees_the_hold() -> None:
    """commit(actual) replaces the held amounts by the actual ones (tokens and calls default to what was held)."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_tokens=1000, max_calls=5)) as root:
        first = root.reserve(cost="0.5", tokens=400)
        first.commit("0.2")
        assert first.state == "committed"
        assert (held(root), spent(root)) == ((D(0), 0, 0), (D("0.2"), 400, 1))
        second = root.reserve(cost="0.5", tokens=400, calls=2)
        second.commit(D("0.1"), tokens=150, calls=1)
        assert spent(root) == (D("0.3"), 550, 2)
        assert root.remaining() == Remaining(D("0.7"), 450, 3)


@pytest.mark.parametrize(
    ("first", "second"),
    [("commit", "commit"), ("commit", "release"), ("release", "release"), ("release", "commit")],
)
def test_a_reservation_resolves_exactly_once(first: str, second: str) -> None:
    """A second commit or release of the same hold raises ReservationError and changes nothing."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as root:
        reservation = root.reserve(cost="0.5")

        def resolve(how: str) -> None:
            if how == "commit":
                reservation.commit("0.25")
            else:
                reservation.release()

        resolve(first)
        before = (held(root), spent(root), root.remaining())
        with pytest.raises(ReservationError, match="resolves exactly once"):
            resolve(second)
        assert (held(root), spent(root), root.remaining()) == before
        assert reservation.state == ("committed" if first == "commit" else "released")


def test_record_with_a_reservation_settles_it_and_counts_the_call_once() -> None:
    """record_llm(reservation=...) charges the span's cost once, frees the hold, and the hold cannot be reused."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_calls=5)) as root:
        reservation = root.reserve(cost="0.05", tokens=2000)
        span = root.record_llm(model="gpt-4o", provider="openai", usage=Usage(1000, 100), reservation=reservation)
        assert span.cost == D("0.0035")
        assert reservation.state == "committed"
        assert (held(root), spent(root)) == ((D(0), 0, 0), (D("0.0035"), 1100, 1))
        assert root.tree.total_cost == D("0.0035")
        with pytest.raises(ReservationError):
            root.record_llm(model="gpt-4o", provider="openai", usage=Usage(1, 1), reservation=reservation)
        assert len(root.tree) == 2  # the refused record attached nothing


def test_a_reservation_of_another_run_is_refused() -> None:
    """Settling a hold on a run that did not make it raises ReservationError and records nothing."""
    with agentcost.run("a", budget=Budget(max_cost=D("1"))) as first, agentcost.run("b") as second:
        reservation = first.reserve(cost="0.1")
        with pytest.raises(ReservationError):
            second.record("tool", "t", cost="0.1", reservation=reservation)
        assert reservation.state == "held"
        assert len(second.tree) == 1


def test_an_unresolved_hold_expires_and_frees_its_budget() -> None:
    """A hold never resolved stops holding after its ttl: a new reservation of the whole budget is admitted."""
    with agentcost.run("r", budget=Budget(max_cost=D("1")), hold_ttl=0.15) as root:
        forgotten = root.reserve(cost="1")
        with pytest.raises(BudgetExceeded):
            root.reserve(cost=SMALLEST)
        time.sleep(0.25)
        fresh = root.reserve(cost="1")
        assert forgotten.state == "expired"
        assert fresh.state == "held"
        assert held(root) == (D("1"), 0, 1)


def test_a_per_reservation_ttl_overrides_the_runs() -> None:
    """reserve(ttl=...) expires that hold on its own schedule, not the run's hold_ttl."""
    with agentcost.run("r", budget=Budget(max_cost=D("1")), hold_ttl=600) as root:
        short = root.reserve(cost="0.5", ttl=0.15)
        long = root.reserve(cost="0.5")
        time.sleep(0.25)
        root.reserve(cost="0.5")
        assert (short.state, long.state) == ("expired", "held")


def test_remaining_reflects_expired_holds_without_another_reservation() -> None:
    """After a hold's ttl, remaining() no longer counts it, even if nothing else was reserved since."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_tokens=100)) as root:
        root.reserve(cost="0.75", tokens=60, ttl=0.15)
        assert root.remaining() == Remaining(D("0.25"), 40, None)
        time.sleep(0.25)
        assert root.remaining() == Remaining(D("1"), 100, None)


def test_a_late_commit_after_expiry_still_counts_and_resolves_once() -> None:
    """Committing an expired hold charges the actual spend (money spent is never dropped), exactly once."""
    with agentcost.run("r", budget=Budget(max_cost=D("1")), hold_ttl=0.15) as root:
        late = root.reserve(cost="0.5")
        time.sleep(0.25)
        root.reserve(cost=0, calls=0).release()  # a reservation sweeps expired holds
        assert late.state == "expired"
        late.commit("0.4")
        assert late.state == "committed"
        assert (held(root), spent(root)) == ((D(0), 0, 0), (D("0.4"), 0, 1))
        with pytest.raises(ReservationError):
            late.commit("0.4")
        assert spent(root) == (D("0.4"), 0, 1)


def test_releasing_an_expired_hold_frees_nothing_twice() -> None:
    """Releasing a hold that expired is harmless: the budget is not credited a second time."""
    with agentcost.run("r", budget=Budget(max_cost=D("1")), hold_ttl=0.15) as root:
        late = root.reserve(cost="0.5")
        time.sleep(0.25)
        current = root.reserve(cost="0.9", ttl=600)
        late.release()
        assert late.state == "released"
        assert held(root) == (D("0.9"), 0, 1)
        with pytest.raises(BudgetExceeded):
            root.reserve(cost="0.2")
        current.release()


def test_overshoot_is_the_sum_of_what_holds_in_flight_exceeded() -> None:
    """Commits above their holds overshoot by exactly the sum of their excesses; then nothing more is admitted."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("1")), on_event=events.append) as root:
        holds = [root.reserve(cost=cost) for cost in ("0.25", "0.25", "0.5")]
        for reservation, actual in zip(holds, ("0.30", "0.25", "0.56"), strict=True):
            reservation.commit(actual)
        assert spent(root)[0] == D("1") + D("0.05") + D("0.06")
        with pytest.raises(BudgetExceeded):
            root.reserve(cost=SMALLEST)
        exceeded = [e for e in events if e.kind == "exceeded" and not e.denied]
        assert len(exceeded) == 1
        assert (exceeded[0].metric, exceeded[0].limit) == ("cost", D("1"))


def test_holds_are_released_exactly_whatever_their_number_of_digits() -> None:
    """Releasing holds needing over 28 significant digits leaves nothing held: the limit, not 1E-20 more, fits."""
    limit = D("2E10")
    with agentcost.run("r", budget=Budget(max_cost=limit)) as root:
        big = root.reserve(cost=D("1E10"))
        tiny = root.reserve(cost=D("1E-20"))
        small = root.reserve(cost=D("2E-20"))
        tiny.release()
        big.release()
        small.release()
        whole = root.reserve(cost=limit)
        with pytest.raises(BudgetExceeded):
            root.reserve(cost=D("1E-20"))
        whole.release()
        assert held(root)[0] == 0


def test_remaining_is_exact_to_the_smallest_unit() -> None:
    """remaining() subtracts exactly: spend of 1E-50 dollars below a limit leaves exactly that much less."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.001"))) as root:
        with decimal.localcontext(prec=100):  # the test's own arithmetic, exact
            spend = D("0.00079") + SMALLEST
            left = D("0.00021") - SMALLEST
        root.record("tool", "t", cost=spend)
        assert root.remaining().cost == left


def test_the_callers_decimal_context_does_not_round_budget_arithmetic() -> None:
    """Holds, releases and remaining() are exact even when the calling thread uses a 4-digit decimal context."""
    with agentcost.run("r", budget=Budget(max_cost=D("10"))) as root, decimal.localcontext(prec=4):
        root.record("tool", "t", cost="1.23456")
        assert root.remaining().cost == D("8.76544")
        first = root.reserve(cost="1.234")
        second = root.reserve(cost="0.0001")
        third = root.reserve(cost="0.0002")
        second.release()
        first.release()
        third.release()
        assert held(root)[0] == 0
        assert root.remaining().cost == D("8.76544")


# ---------------------------------------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------------------------------------


def test_warning_fires_once_when_warn_at_is_crossed() -> None:
    """The warning event fires once per budget and metric, when spend first reaches warn_at of the limit."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("1"), warn_at=D("0.5")), on_event=events.append) as root:
        root.record("tool", "t", cost="0.49")
        assert events == []
        root.record("tool", "t", cost="0.01")
        root.record("tool", "t", cost="0.2")
        root.record("tool", "t", cost="0.2")
        warnings = [e for e in events if e.kind == "warning"]
        assert len(warnings) == 1
        assert (warnings[0].node, warnings[0].metric, warnings[0].spent, warnings[0].limit) == (
            "run 'r'",
            "cost",
            D("0.50"),
            D("1"),
        )
        assert [e.kind for e in root.tree.events] == ["warning"]


def test_each_budget_on_the_path_warns_for_itself() -> None:
    """A call crossing the thresholds of two budgets on its path fires one warning for each of them."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("10")), on_event=events.append) as root:
        agent = root.child("a", budget=Budget(max_cost=D("1"), max_calls=1))
        agent.record("tool", "t", cost="9")
        assert sorted((e.kind, e.node, e.metric) for e in events) == [
            ("exceeded", "agent 'a'", "cost"),
            ("warning", "agent 'a'", "calls"),
            ("warning", "agent 'a'", "cost"),
            ("warning", "run 'r'", "cost"),
        ]


def test_a_refusal_fires_a_denied_exceeded_event() -> None:
    """A refused reservation fires an exceeded event marked denied, naming the node and metric."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_calls=0), on_event=events.append) as root:
        with pytest.raises(BudgetExceeded):
            root.reserve()
        assert [(e.kind, e.node, e.metric, e.denied) for e in events] == [("exceeded", "run 'r'", "calls", True)]


def test_soft_budgets_never_refuse_but_fire_events() -> None:
    """A soft budget (hard=False) admits anything, is ignored by remaining(), and fires warning and exceeded."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("1"), hard=False), on_event=events.append) as root:
        reservation = root.reserve(cost="5")
        assert root.remaining() == Remaining(None, None, None)
        reservation.commit("5")
        root.reserve(cost="5").release()
        assert [(e.kind, e.metric, e.denied) for e in events] == [
            ("warning", "cost", False),
            ("exceeded", "cost", False),
        ]
        assert spent(root)[0] == D("5")


def test_hooks_that_raise_are_counted_and_never_break_the_run() -> None:
    """An event hook that raises is counted in hook_errors; later hooks still run and the agent goes on."""
    seen: list[str] = []

    def broken(event: BudgetEvent) -> None:
        raise RuntimeError("hook down")

    with agentcost.run("r", budget=Budget(max_cost=D("1")), on_event=[broken, lambda e: seen.append(e.kind)]) as root:
        root.record("tool", "t", cost="0.9")
        with pytest.raises(BudgetExceeded):
            root.reserve(cost="0.5")
        root.record("tool", "t", cost="0.05")
        assert seen == ["warning", "exceeded"]
        assert root._run.hook_errors == 2  # private: the count is the only trace of a broken hook
        assert spent(root)[0] == D("0.95")


# ---------------------------------------------------------------------------------------------------------------------
# scoped limits (MemoryStore)
# ---------------------------------------------------------------------------------------------------------------------


def team_limit(max_cost: str = "1", **kwargs: Any) -> Limit:
    return Limit(scope={"team": "search"}, window="day", max_cost=D(max_cost), **kwargs)


def test_scoped_limit_holds_and_charges_with_the_tree() -> None:
    """A run whose attribution matches a limit holds on it at reserve and charges it at commit."""
    store = MemoryStore()
    limit = store.add_limit(team_limit("1"))
    with agentcost.run("r", attrs={"team": "search"}, store=store) as root:
        reservation = root.reserve(cost="0.4", tokens=10)
        assert store.usage(limit).held == Amount(D("0.4"), 10, 1)
        assert root.remaining() == Remaining(D("0.6"), None, None)
        reservation.commit("0.3")
        usage = store.usage(limit)
        assert (usage.held, usage.spent) == (Amount(), Amount(D("0.3"), 10, 1))
        root.record("tool", "t", cost="0.1")  # unguarded spend is charged too
        assert store.usage(limit).spent == Amount(D("0.4"), 10, 2)


def test_a_limit_refusal_holds_nothing_in_the_tree() -> None:
    """When a scoped limit refuses, no account of the tree holds the amount."""
    store = MemoryStore()
    store.add_limit(team_limit("1"))
    with agentcost.run("r", attrs={"team": "search"}, store=store, budget=Budget(max_cost=D("10"))) as root:
        root.reserve(cost="0.8")
        with pytest.raises(BudgetExceeded) as info:
            root.reserve(cost="0.3")
        assert (info.value.node, info.value.limit) == ("limit team=search/day", "max_cost=1")
        assert held(root) == (D("0.8"), 0, 1)


def test_a_tree_refusal_holds_nothing_in_the_store() -> None:
    """When a tree budget refuses, no scoped limit holds the amount."""
    store = MemoryStore()
    limit = store.add_limit(team_limit("10"))
    with agentcost.run("r", attrs={"team": "search"}, store=store, budget=Budget(max_cost=D("0.5"))) as root:
        with pytest.raises(BudgetExceeded) as info:
            root.reserve(cost="0.6")
        assert info.value.node == "run 'r'"
        assert store.usage(limit).held == Amount()


def test_every_matching_limit_admits_or_none_holds() -> None:
    """A reservation against two matching limits, refused by the second, holds nothing on the first."""
    store = MemoryStore()
    team = store.add_limit(team_limit("10"))
    user = store.add_limit(Limit(scope={"user": "u1"}, window="hour", max_calls=1))
    other = store.add_limit(Limit(scope={"team": "ads"}, window="day", max_cost=D("0.01")))
    with agentcost.run("r", attrs={"team": "search", "user": "u1"}, store=store) as root:
        root.reserve(cost="1")
        with pytest.raises(BudgetExceeded) as info:
            root.reserve(cost="1")
        assert info.value.node == "limit user=u1/hour"
        assert store.usage(team).held == Amount(D("1"), 0, 1)
        assert store.usage(user).held == Amount(D("1"), 0, 1)
        assert store.usage(other).held == Amount()  # another team's limit is never touched


def test_scoped_limits_are_shared_across_runs() -> None:
    """Spend of one run counts against a later run with the same attribution."""
    store = MemoryStore()
    store.add_limit(team_limit("1"))
    with agentcost.run("first", attrs={"team": "search"}, store=store) as first:
        first.record("tool", "t", cost="0.7")
    with agentcost.run("second", attrs={"team": "search"}, store=store) as second:
        assert second.remaining() == Remaining(D("0.3"), None, None)
        with pytest.raises(BudgetExceeded):
            second.reserve(cost="0.31")
    with agentcost.run("third", attrs={"team": "ads"}, store=store) as third:
        assert third.remaining() == Remaining(None, None, None)
        third.reserve(cost="5")


def test_a_child_adding_attribution_picks_up_its_limit() -> None:
    """A limit scoped to a child's added attribution applies to that subtree only."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "search", "feature": "rerank"}, window="month", max_cost=D("0.1")))
    with agentcost.run("r", attrs={"team": "search"}, store=store) as root:
        rerank = root.child("rerank", attrs={"feature": "rerank"})
        with pytest.raises(BudgetExceeded):
            rerank.reserve(cost="0.2")
        root.reserve(cost="0.2").commit("0.2")
        rerank.reserve(cost="0.1").commit("0.1")
        assert store.usage(limit).spent == Amount(D("0.1"), 0, 1)


def test_spend_committed_after_midnight_lands_in_the_new_window() -> None:
    """A hold made before midnight and committed after it charges the new day and frees the old: nothing lost."""
    now = [timestamp(2026, 11, 28, 23, 59, 58)]
    store = MemoryStore(clock=lambda: now[0])
    limit = store.add_limit(team_limit("1"))
    with agentcost.run("r", attrs={"team": "search"}, store=store) as root:
        root.reserve(cost="0.1").commit("0.1")
        pending = root.reserve(cost="0.5")
        assert store.usage(limit).held == Amount(D("0.5"), 0, 1)
        now[0] = timestamp(2026, 11, 29, 0, 0, 1)
        assert store.usage(limit).window == "2026-11-29"
        pending.commit("0.4")
        today = store.usage(limit)
        assert (today.spent, today.held) == (Amount(D("0.4"), 0, 1), Amount())
        assert root.remaining().cost == D("0.6")
        now[0] = timestamp(2026, 11, 28, 23, 59, 59)
        yesterday = store.usage(limit)
        assert (yesterday.window, yesterday.spent, yesterday.held) == ("2026-11-28", Amount(D("0.1"), 0, 1), Amount())


def test_a_hold_made_yesterday_does_not_block_today() -> None:
    """Holds live in the window in which they were made: a new day starts with the whole limit free."""
    now = [timestamp(2026, 11, 28, 23, 59, 0)]
    store = MemoryStore(clock=lambda: now[0])
    store.add_limit(team_limit("1"))
    with agentcost.run("r", attrs={"team": "search"}, store=store) as root:
        root.reserve(cost="1")
        with pytest.raises(BudgetExceeded):
            root.reserve(cost="0.1")
        now[0] = timestamp(2026, 11, 29, 0, 1, 0)  # well within the hold's ttl: it is still held, yesterday
        root.reserve(cost="1")


# ---------------------------------------------------------------------------------------------------------------------
# bad input: a clear error at the call that made it
# ---------------------------------------------------------------------------------------------------------------------


def bad(value: object) -> Any:
    """``value`` typed ``Any``, so that deliberately wrong arguments pass the type checker."""
    return value


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda: Budget(max_cost=D("-1")), BudgetError, "max_cost"),
        (lambda: Budget(max_tokens=-1), BudgetError, "max_tokens"),
        (lambda: Budget(max_calls=-3), BudgetError, "max_calls"),
        (lambda: Budget(max_tokens=bad(1.5)), BudgetError, "max_tokens"),
        (lambda: Budget(max_cost=bad(0.5)), InvalidMoneyType, "float"),
        (lambda: Budget(warn_at=D("0")), BudgetError, "warn_at"),
        (lambda: Budget(warn_at=D("1.01")), BudgetError, "warn_at"),
        (lambda: Budget(warn_at=D("-0.5")), BudgetError, "warn_at"),
        (lambda: Budget(warn_at=bad(0.9)), BudgetError, "warn_at"),
        (lambda: Budget(hard=bad("yes")), BudgetError, "hard"),
        (lambda: Budget(policy=bad({"fallbacks": {}})), BudgetError, "policy"),
        (lambda: Limit(scope={"team": "a"}, window="week"), BudgetError, "window"),
        (lambda: Limit(scope={"team": "a"}, max_cost=D("-0.01")), BudgetError, "max_cost"),
        (lambda: Limit(scope={"team": "a"}, max_cost=bad(0.1)), InvalidMoneyType, "float"),
        (lambda: Limit(scope={"team": "a"}, max_tokens=-1), BudgetError, "max_tokens"),
        (lambda: Limit(scope={"team": "a"}, warn_at=D("2")), BudgetError, "warn_at"),
        (lambda: Limit(scope={}), BudgetError, "scope"),
        (lambda: DegradePolicy(fallbacks={"a": "a"}), BudgetError, "cycle"),
        (lambda: DegradePolicy(fallbacks={"a": "b", "b": "c", "c": "a"}), BudgetError, "cycle"),
        (lambda: DegradePolicy(min_output_tokens=0), BudgetError, "min_output_tokens"),
        (lambda: DegradePolicy(unpriced_ceiling=bad(0.05)), InvalidMoneyType, "float"),
        (lambda: agentcost.run("r", hold_ttl=0), BudgetError, "hold_ttl"),
        (lambda: agentcost.run("r", budget=bad({"max_cost": 1})), BudgetError, "budget"),
        (lambda: agentcost.run("r", store=bad({})), BudgetError, "store"),
    ],
)
def test_bad_configuration_is_refused_where_it_is_made(
    make: Callable[[], object], error: type[Exception], words: str
) -> None:
    """Negative limits, float money, warn_at outside (0, 1], unknown windows and fallback cycles raise at once."""
    with pytest.raises(error, match=words):
        make()


def test_warn_at_of_one_is_accepted() -> None:
    """warn_at=1 is the closed end of (0, 1]: accepted, and it warns when the limit is reached."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_calls=2, warn_at=D("1")), on_event=events.append) as root:
        root.record("tool", "t", cost="0")
        assert events == []
        root.record("tool", "t", cost="0")
        assert [e.kind for e in events] == ["warning"]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"cost": 0.1}, InvalidMoneyType, "float"),
        ({"cost": "-0.1"}, InvalidMoney, "negative"),
        ({"cost": "NaN"}, InvalidMoney, "finite"),
        ({"tokens": -1}, BudgetError, "tokens"),
        ({"calls": True}, BudgetError, "calls"),
        ({"ttl": 0}, BudgetError, "ttl"),
        ({"ttl": -1.0}, BudgetError, "ttl"),
    ],
)
def test_bad_reservations_raise_and_hold_nothing(kwargs: dict[str, Any], error: type[Exception], words: str) -> None:
    """reserve() with float or negative money, negative counts or a bad ttl raises and holds nothing."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as root:
        with pytest.raises(error, match=words):
            root.reserve(**kwargs)
        assert held(root) == (D(0), 0, 0)
        assert root._run.holds == {}  # private: no hold was registered for expiry either


def test_bad_commits_raise_and_leave_the_hold_held() -> None:
    """commit() with float or negative money raises at the call and the hold can still be resolved."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as root:
        reservation = root.reserve(cost="0.5")
        with pytest.raises(InvalidMoneyType):
            reservation.commit(bad(0.5))
        with pytest.raises(InvalidMoney):
            reservation.commit("-1")
        with pytest.raises(BudgetError):
            reservation.commit("0.1", tokens=-5)
        assert reservation.state == "held"
        reservation.commit("0.5")
        assert spent(root) == (D("0.5"), 0, 1)


def test_commit_after_release_is_a_clear_error() -> None:
    """Committing a released hold raises ReservationError naming the hold and its state."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as root:
        reservation = root.reserve(cost="0.5")
        reservation.release()
        with pytest.raises(ReservationError, match=f"{reservation.id} was already released"):
            reservation.commit("0.5")
        assert spent(root) == (D(0), 0, 0)


# ---------------------------------------------------------------------------------------------------------------------
# a state machine against a reference model
# ---------------------------------------------------------------------------------------------------------------------

BUDGETS = {
    "root": Budget(max_cost=D("1.00"), max_tokens=1500, max_calls=6),
    "child": Budget(max_cost=D("0.60"), max_calls=4),
    "soft": Budget(max_cost=D("0.30"), max_tokens=100, hard=False),
}
PATHS = {  # node -> the budgeted nodes its spend counts against, root first
    "root": ("root",),
    "child": ("root", "child"),
    "grandchild": ("root", "child"),
    "soft": ("root", "soft"),
}
LABELS = {"root": "run 'machine'", "child": "agent 'child'", "soft": "agent 'soft'"}
METRICS = ("max_cost", "max_tokens", "max_calls")


@dataclass
class RefAccount:
    budget: Budget
    spent: list[Any] = field(default_factory=lambda: [D(0), 0, 0])
    held: list[Any] = field(default_factory=lambda: [D(0), 0, 0])

    def fits(self, amount: tuple[Decimal, int, int]) -> bool:
        return all(
            getattr(self.budget, name) is None or self.spent[i] + self.held[i] + amount[i] <= getattr(self.budget, name)
            for i, name in enumerate(METRICS)
        )

    def left(self) -> tuple[Any, ...]:
        return tuple(
            None
            if getattr(self.budget, name) is None
            else max(getattr(self.budget, name) - self.spent[i] - self.held[i], 0)
            for i, name in enumerate(METRICS)
        )


@dataclass
class RefHold:
    real: Reservation
    path: tuple[str, ...]
    amount: tuple[Decimal, int, int]
    expires_at: float
    state: str = "held"


cents = st.integers(0, 70).map(lambda n: D(n).scaleb(-2))


class BudgetMachine(RuleBasedStateMachine):
    """Drives reserve / commit / release / expiry on a small tree and compares it with a plain model."""

    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        # the tree's holds expire on time.monotonic(); a fake clock makes expiry deterministic and instant
        self._clock = patch.object(_budget, "time", SimpleNamespace(monotonic=lambda: self.now))
        self._clock.start()
        root = agentcost.run("machine", budget=BUDGETS["root"], hold_ttl=5.0)
        child = root.child("child", budget=BUDGETS["child"])
        self.ctx = {
            "root": root,
            "child": child,
            "grandchild": child.child("grandchild"),
            "soft": root.child("soft", budget=BUDGETS["soft"]),
        }
        self.accounts = {name: RefAccount(budget) for name, budget in BUDGETS.items()}
        self.all: list[RefHold] = []

    def teardown(self) -> None:
        self._clock.stop()

    def _sweep(self) -> None:
        for hold in self.all:
            if hold.state == "held" and hold.expires_at <= self.now:
                hold.state = "expired"
                self._unhold(hold)

    def _unhold(self, hold: RefHold) -> None:
        for name in hold.path:
            for i in range(3):
                self.accounts[name].held[i] -= hold.amount[i]

    @rule(
        target=holds,
        node=st.sampled_from(sorted(PATHS)),
        cost=cents,
        tokens=st.integers(0, 600),
        calls=st.integers(0, 2),
        ttl=st.sampled_from([None, 1.0, 3.0]),
    )
    def reserve(self, node: str, cost: Decimal, tokens: int, calls: int, ttl: float | None) -> object:
        self._sweep()
        amount = (cost, tokens, calls)
        path = PATHS[node]
        refusing = [n for n in path if BUDGETS[n].hard and not self.accounts[n].fits(amount)]
        refusal: BudgetExceeded | None = None
        try:
            real = self.ctx[node].reserve(cost=cost, tokens=tokens, calls=calls, ttl=ttl)
        except BudgetExceeded as error:
            refusal = error
        if refusal is not None:
            assert refusing, f"refused although every budget fits: {refusal}"
            assert refusal.node == LABELS[refusing[0]]
            return multiple()
        assert not refusing, f"admitted although {refusing} do not fit"
        for name in path:
            for i in range(3):
                self.accounts[name].held[i] += amount[i]
        hold = RefHold(real, path, amount, self.now + (5.0 if ttl is None else ttl))
        self.all.append(hold)
        return hold

    @rule(hold=holds, cost=cents, tokens=st.none() | st.integers(0, 700))
    def commit(self, hold: RefHold, cost: Decimal, tokens: int | None) -> None:
        if hold.state in ("committed", "released"):
            with pytest.raises(ReservationError):
                hold.real.commit(cost, tokens=tokens)
            return
        hold.real.commit(cost, tokens=tokens)
        if hold.state == "held":
            self._unhold(hold)
        hold.state = "committed"
        actual = (cost, hold.amount[1] if tokens is None else tokens, hold.amount[2])
        for name in hold.path:
            for i in range(3):
                self.accounts[name].spent[i] += actual[i]

    @rule(hold=holds)
    def release(self, hold: RefHold) -> None:
        if hold.state in ("committed", "released"):
            with pytest.raises(ReservationError):
                hold.real.release()
            return
        hold.real.release()
        if hold.state == "held":
            self._unhold(hold)
        hold.state = "released"

    @rule(seconds=st.sampled_from([0.5, 1.5, 4.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self._sweep()
        # expiry is applied when the next reservation is made; make one that changes nothing (refused when the root
        # is over its limit after a commit above its hold: the sweep ran all the same)
        with contextlib.suppress(BudgetExceeded):
            self.ctx["root"].reserve(cost=0, tokens=0, calls=0).release()

    @invariant()
    def accounts_match(self) -> None:
        for name, ref in self.accounts.items():
            account = own_account(self.ctx[name])
            with self.ctx["root"]._run.tree._lock:
                real_spent = [account.spent_cost, account.spent_tokens, account.spent_calls]
                real_held = [account.held_cost, account.held_tokens, account.held_calls]
            assert (real_spent, real_held) == (ref.spent, ref.held), name

    @invariant()
    def remaining_matches(self) -> None:
        for node, path in PATHS.items():
            lefts = [self.accounts[name].left() for name in path if BUDGETS[name].hard]
            expected = tuple(min((left[i] for left in lefts if left[i] is not None), default=None) for i in range(3))
            assert self.ctx[node].remaining() == Remaining(*expected), node

    @invariant()
    def states_match(self) -> None:
        assert [hold.real.state for hold in self.all] == [hold.state for hold in self.all]
        live = {hold.real._number for hold in self.all if hold.state == "held"}
        assert set(self.ctx["root"]._run.holds) == live  # private: the run's table of holds awaiting expiry


BudgetMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestBudgetMachine = BudgetMachine.TestCase
TestBudgetMachine.__doc__ = "reserve/commit/release/expire on a budgeted tree never diverge from a plain model."
