"""agentcost.remote: delegating to another process or service, and grafting the cost it reports."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentcost
from agentcost import (
    Budget,
    BudgetExceeded,
    CostContext,
    CostTree,
    Limit,
    MemoryStore,
    Remaining,
    Span,
    Usage,
    format_span_id,
)
from agentcost.remote import Delegation, Served, delegate, serve
from agentcost.testing import tree_shape
from agentcost.wire import (
    CONTEXT_HEADER,
    REPORT_HEADER,
    DelegatedBudget,
    Keyring,
    Verifier,
    WireBadSignature,
    WireError,
    WireMalformed,
    WireReport,
    WireTotals,
    WireUnknownKey,
    WireWrongAudience,
    accept_context,
    encode_report,
    extract,
)

D = Decimal
ROOT = Path(__file__).resolve().parent.parent
KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
KEYRING = Keyring({"k1": KEY}, active="k1")
CALLEE = "search-agent"
CALLEE_VERIFIER = Verifier(KEYRING, audience=CALLEE)
"""The callee's verifier: checks inbound contexts (and remembers their nonces)."""
CALLER_VERIFIER = Verifier(KEYRING, audience="caller", max_bytes=1_000_000)
"""The caller's verifier: checks the reports that come back (reports carry no audience). Reports with a tree outgrow
the 8 KB default (sized for a header): the caller sizes it to its carrier."""


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------


def call_callee(
    delegation: Delegation,
    work: Callable[[CostContext], object],
    *,
    attrs: dict[str, str] | None = None,
    allow_override: bool = False,
    budget: Budget | None = None,
    store: MemoryStore | None = None,
) -> tuple[Served, str]:
    """What a callee service does with one request: accept the context, run ``work`` in its own run, report back
    (the final report token)."""
    inbound = accept_context(delegation.token, CALLEE_VERIFIER, refuse=True)
    assert inbound is not None
    with serve(inbound, CALLEE, attrs=attrs, allow_override=allow_override, budget=budget, store=store) as served:
        work(served.ctx)
    token = served.report(KEYRING)
    assert token is not None
    return served, token


def research(ctx: CostContext) -> None:
    """A callee's work: an agent with a priced LLM call, a paid tool and an unpriced call, plus one call of its own."""
    with ctx.child("researcher", attrs={"agent": "researcher"}) as researcher:
        researcher.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=1_000, output_tokens=100))
        researcher.record_tool("web_search", cost=D("0.004"))
        researcher.record("custom", "in-house reranker")  # no price: unpriced, never zero
    ctx.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=2_000, output_tokens=200))


RESEARCH_COST = D("0.0035") + D("0.004") + D("0.00042")
"""What :func:`research` costs: gpt-4o 1,000 in / 100 out, the tool, gpt-4o-mini 2,000 in / 200 out."""


def self_costs(spans: list[Span]) -> Decimal:
    """The exact sum of the priced self costs of ``spans``."""
    return sum((span.cost for span in spans if span.cost is not None), D(0))


def tampered(token: str, change: Callable[[dict[str, Any]], None]) -> str:
    """``token`` with its payload changed by ``change`` and its signature kept (what an attacker on the path can
    do without the key)."""
    _, body, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    change(data)
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return f"v1.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


def span_record(
    span_id: str, parent: str | None, kind: str, name: str, cost: str | None, **extra: Any
) -> dict[str, Any]:
    """One span of a tree in ``CostTree.to_dict()`` form (times fixed)."""
    record: dict[str, Any] = {"id": span_id, "parent_id": parent, "kind": kind, "name": name, "cost": cost}
    return record | {"started_at": 1.0, "ended_at": 2.0, "status": "ok"} | extra


def tree_of(*spans: dict[str, Any]) -> dict[str, Any]:
    """A tree in ``CostTree.to_dict()`` form."""
    return {"format": "agentcost.tree", "version": 1, "spans": list(spans)}


def hand_made_report(node: str, tree: dict[str, Any], keyring: Keyring = KEYRING) -> str:
    """A final report, signed with ``keyring``, carrying ``tree`` as it is (not one made by ``serve``)."""
    totals = WireTotals.from_tree(CostTree.from_dict(tree))
    return encode_report(WireReport.issue(keyring, node=node, final=True, seq=0, totals=totals, tree=tree), keyring)


def spent_calls(ctx: CostContext) -> int:
    """Calls spent on the node's own budget (the last account of its path)."""
    account = ctx._accounts[-1]
    with ctx.tree._lock:
        return account.spent_calls


# ---------------------------------------------------------------------------------------------------------------------
# grafting
# ---------------------------------------------------------------------------------------------------------------------


def test_callee_spans_are_grafted_under_the_delegation_node_with_source_remote() -> None:
    """The callee's spans hang under the node, structure kept, priced leaves 'remote'; totals are exact sums."""
    with agentcost.run("answer", attrs={"team": "search", "user": "u-42"}) as caller:
        caller.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=400, output_tokens=50))
        delegation = delegate(caller, CALLEE, keyring=KEYRING, name="search")
        served, token = call_callee(delegation, research)
        assert delegation.receive(token, CALLER_VERIFIER) == delegation.final

    callee = served.ctx.tree
    node = delegation.ctx.span
    assert (node.kind, node.name, node.parent) == ("agent", "search", caller.span)
    assert node.ended_at is not None
    assert node.status == "ok"
    # the structure under the node is the callee's tree under its root (the node stands for the remote run)
    assert tree_shape(node)[1] == tree_shape(callee)[1]
    assert tree_shape(node)[1] == (
        ("agent researcher", (("llm gpt-4o", ()), ("tool web_search", ()), ("custom in-house reranker", ()))),
        ("llm gpt-4o-mini", ()),
    )

    grafted = node.walk()[1:]
    remote = callee.spans()[1:]
    for mine, theirs in zip(grafted, remote, strict=True):
        assert (mine.kind, mine.name, mine.cost, mine.usage, mine.model, mine.provider, mine.status) == (
            theirs.kind,
            theirs.name,
            theirs.cost,
            theirs.usage,
            theirs.model,
            theirs.provider,
            theirs.status,
        )
        if mine.kind == "agent":
            assert (mine.cost, mine.cost_source) == (D(0), None)  # containers incur nothing themselves
        elif mine.cost is None:
            assert mine.cost_source is None  # unpriced stays unpriced: never "remote zero"
        else:
            assert mine.cost_source == "remote"
            assert f"remote, {theirs.cost_source}" in mine.notes  # where the callee had it from
    assert caller.tree.find(name="gpt-4o", agent="researcher")[0].notes == ("remote, computed",)

    own = caller.tree.spans()[0:3]  # the root, the caller's own call and the delegation node
    assert caller.tree.total_cost == self_costs(caller.tree.spans()) == self_costs(own) + self_costs(callee.spans())
    assert caller.tree.total_cost == D("0.0015") + RESEARCH_COST
    assert node.total_cost == callee.total_cost == RESEARCH_COST
    assert caller.tree.unpriced == callee.unpriced == 1
    assert caller.tree.total_usage().input_tokens == 400 + callee.total_usage().input_tokens


def test_report_without_tree_grafts_one_remote_span_with_the_totals() -> None:
    """A totals-only report grafts one 'remote: <callee>' span with the remote total, tokens and unpriced count."""
    with agentcost.run("answer") as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING)
        inbound = accept_context(delegation.token, CALLEE_VERIFIER)
        with serve(inbound, CALLEE) as served:
            research(served.ctx)
        delegation.receive(served.report(KEYRING, tree=False), CALLER_VERIFIER)

    (span,) = delegation.ctx.span.children
    assert (span.kind, span.name, span.cost, span.cost_source) == (
        "custom",
        f"remote: {CALLEE}",
        RESEARCH_COST,
        "remote",
    )
    assert span.usage.input_tokens == 3_000
    assert span.usage.output_tokens == 300
    assert span.notes == ("1 remote spans unpriced",)
    assert caller.tree.total_cost == RESEARCH_COST


# ---------------------------------------------------------------------------------------------------------------------
# running and final reports
# ---------------------------------------------------------------------------------------------------------------------


def test_running_reports_out_of_order_keep_the_highest_seq_and_never_touch_the_tree() -> None:
    """Running reports: the highest seq wins whatever the order, and neither tree nor budget changes."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.5")))
        inbound = accept_context(delegation.token, CALLEE_VERIFIER)
        running: list[str] = []
        with serve(inbound, CALLEE) as served:
            for cost in ("0.01", "0.02", "0.03"):
                served.ctx.record_tool("search", cost=cost)
                token = served.report(KEYRING)
                assert token is not None
                running.append(token)
        final = served.report(KEYRING)

        spans, total, left = len(caller.tree), caller.tree.total_cost, caller.remaining()
        for token in (running[2], running[0], running[1]):
            report = delegation.receive(token, CALLER_VERIFIER)
            assert report is not None
            assert not report.final
            assert delegation.running is not None
            assert delegation.running.seq == 2
            assert delegation.running.totals.cost == D("0.06")  # replaced, never added up
            assert (len(caller.tree), caller.tree.total_cost, caller.remaining()) == (spans, total, left)
            assert delegation.final is None
            assert delegation.ctx.span.ended_at is None

        delegation.receive(final, CALLER_VERIFIER)
        assert delegation.final is not None
        assert delegation.final.seq == 3
        assert delegation.running == delegation.final
        assert caller.tree.total_cost == D("0.06")
        assert caller.remaining().cost == D("0.94")


def test_final_report_is_grafted_exactly_once() -> None:
    """The first final report is grafted; a repeated, another final or a later running report changes nothing."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "search"}, window="none", max_cost=D("10")))
    with agentcost.run("answer", attrs={"team": "search"}, budget=Budget(max_cost=D("1")), store=store) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.5")))
        served, final = call_callee(delegation, research)
        delegation.receive(final, CALLER_VERIFIER)
        after = (len(caller.tree), caller.tree.total_cost, caller.tree.unpriced, caller.remaining())
        usage = store.usage(limit)
        assert after[1:] == (RESEARCH_COST, 1, Remaining(D(1) - RESEARCH_COST, None, None))
        assert usage.spent.cost == RESEARCH_COST

        served.ctx.record_tool("late work", cost=D("0.2"))  # the callee keeps going after its final report
        later_running = served.report(KEYRING, final=False)
        later_final = served.report(KEYRING, final=True)
        for token in (final, later_running, later_final, final):
            delegation.receive(token, CALLER_VERIFIER)
            assert (len(caller.tree), caller.tree.total_cost, caller.tree.unpriced, caller.remaining()) == after
            assert store.usage(limit) == usage
            assert delegation.final is not None
            assert delegation.final.seq == 0


# ---------------------------------------------------------------------------------------------------------------------
# budgets
# ---------------------------------------------------------------------------------------------------------------------


def test_sent_budget_is_never_wider_than_what_the_caller_has_left() -> None:
    """The sent budget is the asked one narrowed to the caller's remaining (hard); without one, the remaining."""
    with agentcost.run("answer", budget=Budget(max_cost=D("0.10"), max_tokens=20_000, max_calls=8)) as caller:
        caller.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=4_000, output_tokens=500))
        assert caller.remaining() == Remaining(D("0.085"), 15_500, 7)

        greedy = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("5"), tokens=10**9, calls=99))
        assert greedy.context.budget == DelegatedBudget(cost=D("0.085"), tokens=15_500, calls=7, hard=True)
        received = accept_context(greedy.token, CALLEE_VERIFIER)
        assert received is not None
        assert received.budget == greedy.context.budget
        greedy.fail("not sent")

    with agentcost.run("answer", budget=Budget(max_cost=D("0.10"), max_calls=8)) as caller:
        implicit = delegate(caller, CALLEE, keyring=KEYRING)
        assert implicit.context.budget == DelegatedBudget(cost=D("0.10"), calls=8, hard=True)
        modest = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.02"), calls=2))
        assert modest.context.budget == DelegatedBudget(cost=D("0.02"), calls=2, hard=True)
        soft = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.5"), hard=False))
        assert soft.context.budget is not None
        assert soft.context.budget.hard
        assert soft.context.budget.cost == D("0.08")  # what the modest hold left

    with agentcost.run("unlimited") as caller:
        assert delegate(caller, CALLEE, keyring=KEYRING).context.budget is None
        asked = DelegatedBudget(cost=D("0.3"), hard=False)
        assert delegate(caller, CALLEE, keyring=KEYRING, budget=asked).context.budget == asked


def test_explicit_budget_is_held_during_the_call_and_settled_with_the_remote_total() -> None:
    """An explicit budget is held while the call is in flight and settled with the remote total."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        first = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.60")))
        assert caller.remaining().cost == D("0.40")
        second = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.60")))
        assert second.context.budget is not None
        assert second.context.budget.cost == D("0.40")
        assert caller.remaining().cost == D(0)
        second.fail("cancelled")  # charged at its hold: unknown is not zero
        assert caller.remaining().cost == D(0)

        _, token = call_callee(first, research)
        assert caller.remaining().cost == D(0)  # a running callee changes nothing until its final report
        first.receive(token, CALLER_VERIFIER)
        assert caller.remaining().cost == D("0.60") - RESEARCH_COST


def test_without_explicit_budget_the_remote_total_is_spent_at_the_final_report() -> None:
    """Without an explicit budget nothing is held and the remote total is spent once, at the final report."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"), max_tokens=100_000, max_calls=50)) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING)
        assert caller.remaining() == Remaining(D("1"), 100_000, 50)
        _, token = call_callee(delegation, research)
        delegation.receive(token, CALLER_VERIFIER)
        delegation.receive(token, CALLER_VERIFIER)
        left = caller.remaining()
        assert left.cost == D("1") - RESEARCH_COST
        assert left.tokens == 100_000 - 3_300
        assert left.calls == 50 - 4  # the callee's four calls


def test_callee_overspending_its_delegated_budget_is_stopped_inside_it_and_reported_exhausted() -> None:
    """A callee over its delegated budget is skipped/refused inside, reports exhausted; the caller finishes."""

    def greedy(ctx: CostContext) -> None:
        ctx.record_tool("cheap lookup", cost=D("0.004"))
        with ctx.guard_tool("deep_search", cost=D("0.05"), optional=True) as decision:
            assert decision.action == "skip"  # answers the model "skipped: budget"
        with pytest.raises(BudgetExceeded):
            ctx.reserve(cost=D("0.05"))

    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.01")))
        served, token = call_callee(delegation, greedy)
        assert served.ctx.tree.total_cost <= D("0.01")
        report = delegation.receive(token, CALLER_VERIFIER)
        assert report is not None
        assert report.exhausted
        assert "exhausted its delegated budget" in delegation.ctx.span.notes
        skipped = caller.tree.find(name="deep_search")[0]
        assert skipped.status == "skipped"
        assert skipped.notes[0].startswith("skipped: budget")
        caller.record_tool("answer formatter", cost=D("0.001"))  # the caller carries on
    assert caller.span.status == "ok"
    assert caller.span.ended_at is not None
    assert caller.tree.total_cost == D("0.005")
    assert caller.remaining().cost == D("0.995")


def test_callee_that_lets_budget_exceeded_escape_still_reports_and_the_caller_finishes() -> None:
    """A BudgetExceeded escaping the served run still yields a final exhausted report the caller grafts."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.01")))
        inbound = accept_context(delegation.token, CALLEE_VERIFIER)
        served = serve(inbound, CALLEE)
        served.ctx.record_tool("lookup", cost=D("0.002"))
        with pytest.raises(BudgetExceeded), served:
            served.ctx.reserve(cost=D("0.02"))
        assert served.ctx.span.status == "error"
        report = delegation.receive(served.report(KEYRING), CALLER_VERIFIER)
        assert report is not None
        assert report.final
        assert report.exhausted
        assert delegation.ctx.span.status == "error"  # the node shows that the remote run failed
    assert caller.span.status == "ok"
    assert caller.tree.total_cost == D("0.002")
    assert caller.remaining().cost == D("0.998")


def test_a_cost_only_delegation_does_not_hold_the_callers_whole_remaining_calls_and_tokens() -> None:
    """A cost-only delegation holds cost only: the caller's calls and tokens stay usable meanwhile."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"), max_tokens=100_000, max_calls=10)) as caller:
        first = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.3")))
        second = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.3")))
        assert second.context.budget is not None
        left = caller.remaining()
        sent = second.context.budget
        assert (sent.calls, sent.tokens, left.calls, left.tokens) == (10, 100_000, 10, 100_000), (
            "BUG agentcost/remote.py delegate(), the hold (child.reserve(..., tokens=sent.tokens or 0, "
            "calls=sent.calls or 0)): a budget that asks only for cost is narrowed to the caller's remaining tokens "
            "and calls, and then ALL of them are held, so while the call is in flight the caller cannot make a single "
            "call of its own (reserve/guard raise BudgetExceeded on calls/tokens) and a parallel delegation is sent "
            f"calls=0, tokens=0 ({sent}; caller remaining {left}). Fix: hold only the metrics the "
            "caller asked to delegate (budget.cost/tokens/calls that are not None, narrowed); still send the "
            "narrowed values of the others, unheld."
        )
        first.fail("test over")
        second.fail("test over")


def test_the_callers_call_budget_counts_the_calls_the_callee_made_not_its_skip_markers() -> None:
    """The caller's call budget is charged the calls the callee made, not its budget skip markers."""

    def one_call_one_skip(ctx: CostContext) -> None:
        ctx.record_tool("lookup", cost=D("0.001"))
        with ctx.guard_tool("deep_search", cost=D("0.5"), optional=True) as decision:
            assert decision.action == "skip"

    with agentcost.run("answer", budget=Budget(max_cost=D("1"), max_calls=10)) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING)
        served, token = call_callee(delegation, one_call_one_skip, budget=Budget(max_cost=D("0.1")))
        assert spent_calls(served.ctx) == 1
        delegation.receive(token, CALLER_VERIFIER)
        assert spent_calls(caller) == 1, (
            "BUG agentcost/remote.py _graft_tree(): `calls += leaf` counts every remote leaf as a call, including the "
            "zero-cost 'skipped' marker the callee's degradation ladder records with count_call=False, so the "
            f"caller's max_calls budget is charged {spent_calls(caller)} calls for 1 the callee made. Fix: do not "
            "count budget skip/finish markers (status 'skipped' with cost 0 and no usage), or better carry the "
            "callee's call count in the report's totals."
        )


# ---------------------------------------------------------------------------------------------------------------------
# shared stores
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller_budget", [None, Budget(max_cost=D("5"))], ids=["no-run-budget", "run-budget"])
@pytest.mark.parametrize("asked", [None, DelegatedBudget(cost=D("0.5"))], ids=["implicit", "explicit"])
def test_a_shared_store_counts_the_callees_spend_once_while_both_trees_show_it(
    caller_budget: Budget | None, asked: DelegatedBudget | None
) -> None:
    """With shared_store the store counts the callee's spend once, nothing stays held, both trees show it."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "search"}, window="none", max_cost=D("10")))
    with agentcost.run("answer", attrs={"team": "search"}, budget=caller_budget, store=store) as caller:
        caller.record_tool("own lookup", cost=D("0.001"))
        before = store.usage(limit).spent
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=asked, shared_store=True)
        assert store.usage(limit).held.cost == D(0)  # the caller holds nothing in the store for the callee
        served, token = call_callee(delegation, research, store=store)
        assert store.usage(limit).spent.cost - before.cost == RESEARCH_COST  # charged by the callee, as it spent
        delegation.receive(token, CALLER_VERIFIER)

    usage = store.usage(limit)
    assert usage.spent.cost - before.cost == RESEARCH_COST == served.ctx.tree.total_cost
    assert usage.spent.tokens - before.tokens == 3_300
    assert usage.held.cost == D(0)
    assert usage.held.calls == 0
    assert delegation.ctx.span.total_cost == RESEARCH_COST
    assert caller.tree.total_cost == D("0.001") + RESEARCH_COST


@pytest.mark.parametrize("asked", [None, DelegatedBudget(cost=D("0.5"))], ids=["implicit", "explicit"])
def test_separate_stores_charge_the_callers_store_with_the_remote_total_once(asked: DelegatedBudget | None) -> None:
    """With separate stores the caller's store is charged the remote total once, at the final report."""
    scope = {"team": "search"}
    caller_store, callee_store = MemoryStore(), MemoryStore()
    caller_limit = caller_store.add_limit(Limit(scope=scope, window="none", max_cost=D("10")))
    callee_limit = callee_store.add_limit(Limit(scope=scope, window="none", max_cost=D("10")))
    with agentcost.run("answer", attrs=scope, store=caller_store) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=asked)
        assert caller_store.usage(caller_limit).held.cost == (D(0) if asked is None else D("0.5"))
        _, token = call_callee(delegation, research, store=callee_store)
        assert caller_store.usage(caller_limit).spent.cost == D(0)
        for _ in range(2):
            delegation.receive(token, CALLER_VERIFIER)
            assert caller_store.usage(caller_limit).spent.cost == RESEARCH_COST
            assert caller_store.usage(caller_limit).held.cost == D(0)
    assert callee_store.usage(callee_limit).spent.cost == RESEARCH_COST


def test_a_shared_store_limit_narrows_the_sent_budget() -> None:
    """With shared_store the sent budget is still narrowed by the store's scoped limits."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "search"}, window="none", max_cost=D("1.00")))
    store.charge([limit], agentcost.Amount(D("0.90")))
    with agentcost.run("answer", attrs={"team": "search"}, store=store) as caller:
        assert caller.remaining().cost == D("0.10")
        delegation = delegate(
            caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.50")), shared_store=True
        )
        sent = delegation.context.budget
        assert sent is not None
        assert (sent.cost or D("Infinity")) <= D("0.10"), (
            "BUG agentcost/remote.py delegate(): `child._limits = ()` (shared_store) runs before "
            "`left = child.remaining()`, so the store's scoped limits are left out of the narrowing and the context "
            f"widens the caller's budget: sent {sent} while the caller has $0.10 left. A callee whose process did "
            "not register the same Limit (limits are per-process configuration) can then spend it all. Fix: compute "
            "`left = child.remaining()` before clearing child._limits (the hold made after the clearing stays out of "
            "the store, as it should)."
        )
        delegation.fail("test over")


# ---------------------------------------------------------------------------------------------------------------------
# failures
# ---------------------------------------------------------------------------------------------------------------------


def test_fail_records_an_unpriced_error_span_and_charges_the_hold() -> None:
    """fail(): an unpriced error span, the hold charged at what it held; later reports and fail() do nothing."""
    store = MemoryStore()
    limit = store.add_limit(Limit(scope={"team": "search"}, window="none", max_cost=D("10")))
    with agentcost.run("answer", attrs={"team": "search"}, budget=Budget(max_cost=D("1")), store=store) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.25")))
        assert caller.remaining().cost == D("0.75")
        served, token = call_callee(delegation, research)
        delegation.fail("connection reset by peer")

        (span,) = delegation.ctx.span.children
        assert (span.kind, span.name, span.status, span.error) == (
            "custom",
            f"remote: {CALLEE}",
            "error",
            "connection reset by peer",
        )
        assert span.cost is None
        assert span.cost_source is None
        assert span.notes == ("no final report: the remote cost is unknown",)
        assert delegation.ctx.span.status == "error"
        assert delegation.ctx.span.ended_at is not None
        assert caller.tree.unpriced == 1
        assert caller.tree.total_cost == D(0)
        assert caller.remaining().cost == D("0.75")
        assert store.usage(limit).spent.cost == D("0.25")
        assert store.usage(limit).held.cost == D(0)

        delegation.fail("again")
        delegation.receive(token, CALLER_VERIFIER)  # a late final report: the hold was already charged
        assert delegation.final is None
        assert len(delegation.ctx.span.children) == 1
        assert caller.remaining().cost == D("0.75")
        assert store.usage(limit).spent.cost == D("0.25")
    assert served.ctx.tree.total_cost == RESEARCH_COST


def test_fail_without_a_hold_is_an_unpriced_span() -> None:
    """fail() with nothing held leaves an unpriced error span: unknown, not zero."""
    with agentcost.run("answer") as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING)
        delegation.fail("timeout")
    assert caller.tree.unpriced == 1
    assert caller.tree.total_cost == D(0)
    assert delegation.final is None
    assert delegation.ctx.span.status == "error"


def test_invalid_contexts_are_no_context_for_the_callee_unless_refused() -> None:
    """Forged, replayed or misaddressed contexts are no context (counted); refuse=True raises."""
    forger = Keyring({"k1": OTHER_KEY}, active="k1")
    with agentcost.run("answer", budget=Budget(max_cost=D("0.01"))) as caller:
        genuine = delegate(caller, CALLEE, keyring=KEYRING)
        forged = delegate(caller, CALLEE, keyring=forger, budget=DelegatedBudget(cost=D("0.01")))
        elsewhere = delegate(caller, "billing-agent", keyring=KEYRING)
    verifier = Verifier(KEYRING, audience=CALLEE)
    assert accept_context(genuine.token, verifier) is not None
    for token in (genuine.token, forged.token, elsewhere.token):  # replayed, bad signature, wrong audience
        assert accept_context(token, verifier) is None
        with pytest.raises(WireError):
            accept_context(token, verifier, refuse=True)
        with serve(accept_context(token, verifier), CALLEE, budget=Budget(max_cost=D("5"))) as served:
            assert served.context is None
            assert served.ctx.remaining().cost == D("5")
        assert served.report(KEYRING) is None
    # each invalid token was offered three times, each time counted
    rejected = verifier.rejected
    assert (rejected["replayed"], rejected["bad_signature"], rejected["wrong_audience"]) == (3, 3, 3)


# ---------------------------------------------------------------------------------------------------------------------
# security
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forger", "error"),
    [
        (Keyring({"k1": OTHER_KEY}, active="k1"), WireBadSignature),
        (Keyring({"k2": OTHER_KEY}, active="k2"), WireUnknownKey),
    ],
    ids=["same-kid-other-key", "unknown-kid"],
)
def test_a_report_signed_with_another_key_is_rejected_and_nothing_is_grafted(
    forger: Keyring, error: type[WireError]
) -> None:
    """A report signed with another key raises (bad signature or unknown key) and changes nothing."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.2")))
        inbound = accept_context(delegation.token, CALLEE_VERIFIER)
        with serve(inbound, CALLEE) as served:
            served.ctx.record_tool("search", cost=D("0.1"))
        token = served.report(forger)
        before = (len(caller.tree), caller.tree.total_cost, caller.remaining())
        with pytest.raises(error):
            delegation.receive(token, CALLER_VERIFIER)
        assert (len(caller.tree), caller.tree.total_cost, caller.remaining()) == before
        assert delegation.final is None
        assert delegation.running is None
        assert delegation.ctx.span.ended_at is None
        assert before[2].cost == D("0.8")
        delegation.receive(served.report(KEYRING), CALLER_VERIFIER)  # the genuine report is still taken
        assert caller.tree.total_cost == D("0.1")


def test_a_report_for_another_node_is_wrong_audience() -> None:
    """A report for another node raises WireWrongAudience, as a token or a WireReport, and grafts nothing."""
    with agentcost.run("answer") as caller:
        first = delegate(caller, CALLEE, keyring=KEYRING)
        second = delegate(caller, CALLEE, keyring=KEYRING)
        _, token = call_callee(first, research)
        before = len(caller.tree)
        with pytest.raises(WireWrongAudience):
            second.receive(token, CALLER_VERIFIER)
        with pytest.raises(WireWrongAudience):
            second.receive(CALLER_VERIFIER.verify_report(token))
        assert len(caller.tree) == before
        assert second.final is None
        first.receive(token, CALLER_VERIFIER)
        assert first.final is not None
        assert caller.tree.total_cost == RESEARCH_COST


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: tampered(token, lambda data: data["totals"].update(cost="0")),
        lambda token: tampered(token, lambda data: data.update(exhausted=True)),
        lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
        lambda token: token[: len(token) // 2],
        lambda token: token.replace("v1.", "v2.", 1),
    ],
    ids=["payload-cost", "payload-flag", "signature", "truncated", "version"],
)
def test_a_tampered_report_is_rejected_and_nothing_is_grafted(tamper: Callable[[str], str]) -> None:
    """A report changed on the way raises a WireError and grafts nothing."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.5")))
        _, token = call_callee(delegation, research)
        before = (len(caller.tree), caller.tree.total_cost, caller.remaining())
        with pytest.raises((WireBadSignature, WireMalformed)):
            delegation.receive(tamper(token), CALLER_VERIFIER)
        assert (len(caller.tree), caller.tree.total_cost, caller.remaining()) == before
        assert delegation.final is None


def test_a_report_cannot_move_spend_to_another_team() -> None:
    """Grafted spans keep the caller's pinned team and user; a report may only add keys and name the agent."""
    with agentcost.run("answer", attrs={"team": "search", "user": "u-42"}) as caller:
        honest = delegate(caller, CALLEE, keyring=KEYRING, name="honest")
        # the callee pins its own team (it wins over the inbound attribution in its own tree)
        served, token = call_callee(honest, research, attrs={"team": "marketing", "tenant": "acme"})
        assert served.ctx.attrs["team"] == "marketing"
        honest.receive(token, CALLER_VERIFIER)

        # a report built by hand, validly signed, whose spans claim another team and user
        forged = delegate(caller, CALLEE, keyring=KEYRING, name="forged")
        tree = tree_of(
            span_record("00000000000000a1", None, "run", "x", "0", attrs={"team": "marketing", "user": "u-1"}),
            span_record(
                "00000000000000a2", "00000000000000a1", "llm", "m", "0.3", attrs={"agent": "intruder", "tool": "t"}
            ),
        )
        forged.receive(hand_made_report(format_span_id(forged.ctx.span.id), tree), CALLER_VERIFIER)

    for node in (honest, forged):
        for span in node.ctx.span.walk():
            assert (span.attrs["team"], span.attrs["user"]) == ("search", "u-42")
    assert caller.tree.cost_by("team") == {"search": caller.tree.total}  # no spend moved to marketing
    assert caller.tree.find(name="m")[0].attrs["agent"] == "intruder"  # the innermost agent's name may change
    assert caller.tree.find(name="m")[0].attrs["tool"] == "t"
    assert caller.tree.find(name="web_search")[0].attrs["tenant"] == "acme"


def test_a_reports_root_self_cost_is_neither_lost_from_the_tree_nor_only_charged() -> None:
    """What a final report charges the caller's budget is what its tree shows, the remote root's cost included."""
    with agentcost.run("answer", budget=Budget(max_cost=D("1"))) as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING)
        tree = tree_of(
            span_record("00000000000000b1", None, "run", "x", "0.05"),
            span_record("00000000000000b2", "00000000000000b1", "llm", "m", "0.01"),
        )
        delegation.receive(hand_made_report(format_span_id(delegation.ctx.span.id), tree), CALLER_VERIFIER)
        charged = D(1) - (caller.remaining().cost or D(0))
        assert charged == caller.tree.total_cost, (
            "BUG agentcost/remote.py _graft_tree(): the reported tree's root is mapped onto the delegation node and "
            "skipped, so its self cost (here $0.05; an unpriced root likewise loses its unpriced count) vanishes from "
            f"the caller's tree while _graft() charges the budget report.totals.cost, which includes it: budget "
            f"charged ${charged}, tree shows ${caller.tree.total_cost}. Fix: when the remote root's cost is not 0, "
            "graft it as a leaf span (e.g. 'remote: <callee>' with source remote, or unpriced) under the node."
        )


# ---------------------------------------------------------------------------------------------------------------------
# serve()
# ---------------------------------------------------------------------------------------------------------------------


def test_serve_without_a_context_is_the_callees_own_run() -> None:
    """serve(None, ...) is the callee's own run: its attribution and budget, nothing to report to."""
    with serve(None, "search-agent", attrs={"team": "platform"}, budget=Budget(max_cost=D("0.5"))) as served:
        assert served.context is None
        assert served.ctx.span.kind == "run"
        assert served.ctx.span.parent is None
        assert dict(served.ctx.attrs) == {"team": "platform"}
        assert served.ctx.remaining() == Remaining(D("0.5"), None, None)
        served.ctx.record_tool("search", cost=D("0.1"))
        assert served.report(KEYRING) is None
    assert served.ctx.span.notes == ()
    assert served.report(KEYRING) is None
    assert served.ctx.tree.total_cost == D("0.1")


def test_serve_pins_its_attribution_over_the_inbound_one_unless_override_is_allowed() -> None:
    """The server's pinned attrs win over the inbound ones unless allow_override=True."""
    with agentcost.run("answer", attrs={"team": "search", "user": "u-42"}) as caller:
        pinned = delegate(caller, CALLEE, keyring=KEYRING)
        overridden = delegate(caller, CALLEE, keyring=KEYRING)
    for delegation, allow, team in ((pinned, False, "platform"), (overridden, True, "search")):
        inbound = accept_context(delegation.token, CALLEE_VERIFIER)
        assert inbound is not None
        with serve(inbound, CALLEE, attrs={"team": "platform", "region": "eu"}, allow_override=allow) as served:
            assert dict(served.ctx.attrs) == {"team": team, "user": "u-42", "region": "eu"}
            assert served.ctx.span.notes == (f"serving node {inbound.parent} of run {inbound.root}",)


@pytest.mark.parametrize(
    ("delegated", "own", "expected"),
    [
        (
            DelegatedBudget(cost=D("0.5"), calls=5),
            Budget(max_cost=D("0.2"), max_tokens=1_000),
            Remaining(D("0.2"), 1_000, 5),
        ),
        (
            DelegatedBudget(cost=D("0.1"), tokens=500),
            Budget(max_cost=D("0.2"), max_tokens=1_000),
            Remaining(D("0.1"), 500, None),
        ),
        (DelegatedBudget(cost=D("0.1")), None, Remaining(D("0.1"), None, None)),
        (None, Budget(max_calls=3), Remaining(None, None, 3)),
    ],
    ids=["server-tighter", "delegated-tighter", "delegated-only", "server-only"],
)
def test_serve_runs_under_the_tighter_of_the_delegated_budget_and_its_own(
    delegated: DelegatedBudget | None, own: Budget | None, expected: Remaining
) -> None:
    """The served run's budget is, metric by metric, the tighter of the delegated one and the server's."""
    with agentcost.run("answer") as caller:
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=delegated)
    inbound = accept_context(delegation.token, CALLEE_VERIFIER)
    with serve(inbound, CALLEE, budget=own) as served:
        assert served.ctx.remaining() == expected


# ---------------------------------------------------------------------------------------------------------------------
# property: grafting adds up
# ---------------------------------------------------------------------------------------------------------------------

Plan: TypeAlias = "list[Decimal | Plan | None]"
"""A callee's work: a priced leaf (its cost), an unpriced leaf (None) or an agent with its own plan."""

leaf_costs = st.one_of(
    st.none(), st.decimals(min_value=0, max_value=100, places=6, allow_nan=False, allow_infinity=False)
)


def plans(depth: int) -> st.SearchStrategy[Plan]:
    """Plans nested at most ``depth`` agents deep."""
    items: st.SearchStrategy[Decimal | Plan | None] = (
        leaf_costs if depth == 0 else st.one_of(leaf_costs, plans(depth - 1))
    )
    return st.lists(items, max_size=4)


def perform(ctx: CostContext, plan: Plan) -> None:
    """Record ``plan`` on ``ctx``: agents as children, priced leaves as tools and LLM calls, unpriced as custom."""
    for number, item in enumerate(plan):
        if isinstance(item, list):
            with ctx.child(f"agent {number}") as agent:
                perform(agent, item)
        elif item is None:
            ctx.record("custom", f"unpriced {number}", usage=Usage(input_tokens=number))
        elif number % 2:
            ctx.record_llm(model="m", cost=item, usage=Usage(input_tokens=number, output_tokens=1))
        else:
            ctx.record_tool(f"tool {number}", cost=item)


@settings(max_examples=100, deadline=None)
@given(own=plans(1), remote=plans(3), explicit=st.booleans())
def test_grafting_adds_up_for_any_callee_tree(own: Plan, remote: Plan, explicit: bool) -> None:
    """For any callee tree, grafted totals, unpriced counts, tokens and the budget charge add up exactly."""
    maximum = D(10**6)
    with agentcost.run("caller", budget=Budget(max_cost=maximum)) as caller:
        perform(caller, own)
        own_cost, own_unpriced, own_spans = caller.tree.total_cost, caller.tree.unpriced, len(caller.tree)
        own_tokens = caller.tree.total_usage().total_tokens
        budget = DelegatedBudget(cost=D(10**5)) if explicit else None
        delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=budget)
        served, token = call_callee(delegation, lambda ctx: perform(ctx, remote))
        delegation.receive(token, CALLER_VERIFIER)

    callee = served.ctx.tree
    tree = caller.tree
    assert tree.total_cost == self_costs(tree.spans()) == own_cost + callee.total_cost
    assert callee.total_cost == self_costs(callee.spans())
    assert tree.unpriced == own_unpriced + callee.unpriced
    assert tree.unpriced == sum(span.cost is None for span in tree)
    assert len(tree) == own_spans + 1 + len(callee) - 1  # the node stands for the callee's root
    assert tree.total_usage().total_tokens == own_tokens + callee.total_usage().total_tokens
    assert caller.remaining().cost == maximum - tree.total_cost
    for span in delegation.ctx.span.walk()[1:]:
        assert span.cost_source == ("remote" if span.cost is not None and span.kind != "agent" else None)


# ---------------------------------------------------------------------------------------------------------------------
# across processes, over loopback HTTP
# ---------------------------------------------------------------------------------------------------------------------

CALLEE_SERVER = """
import os

from http.server import BaseHTTPRequestHandler, HTTPServer

from agentcost import Usage
from agentcost.remote import serve
from agentcost.wire import REPORT_HEADER, Keyring, Verifier, accept_context, extract

keyring = Keyring({"k1": bytes.fromhex(os.environ["AGENTCOST_TEST_KEY"])}, active="k1")
verifier = Verifier(keyring, audience="search-agent")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        question = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
        inbound = accept_context(extract(dict(self.headers.items())), verifier)
        with serve(inbound, "search-agent", attrs={"service": "search"}) as served:
            with served.ctx.child("researcher") as researcher:
                usage = Usage(input_tokens=1000, output_tokens=100)
                researcher.record_llm(model="gpt-4o", provider="openai", usage=usage)
        report = served.report(keyring)
        body = f"answer to {question}".encode()
        self.send_response(200 if report else 400)
        if report:
            self.send_header(REPORT_HEADER, report)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_delegation_to_another_process_over_loopback_http() -> None:
    """A callee in another process, over loopback HTTP headers, is grafted with matching totals."""
    env = {**os.environ, "AGENTCOST_TEST_KEY": KEY.hex()}
    process = subprocess.Popen(
        [sys.executable, "-c", CALLEE_SERVER], stdout=subprocess.PIPE, env=env, cwd=ROOT, text=True
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        assert ready, "the callee server did not start within 30 s"
        port = int(process.stdout.readline())
        with agentcost.run("answer", attrs={"team": "search"}, budget=Budget(max_cost=D("1"))) as caller:
            caller.record_tool("planner", cost=D("0.001"))
            delegation = delegate(caller, CALLEE, keyring=KEYRING, budget=DelegatedBudget(cost=D("0.05")))
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/ask",
                data=b"what is agentcost?",
                headers={CONTEXT_HEADER: delegation.token},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.read() == b"answer to what is agentcost?"
                token = extract(dict(response.headers.items()), REPORT_HEADER)
            report = delegation.receive(token, CALLER_VERIFIER)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    assert report is not None
    assert report.final
    assert tree_shape(delegation.ctx.span) == (f"agent {CALLEE}", (("agent researcher", (("llm gpt-4o", ()),)),))
    llm = caller.tree.find(kind="llm")[0]
    assert (llm.cost, llm.cost_source, llm.attrs["team"], llm.attrs["service"]) == (
        D("0.0035"),
        "remote",
        "search",
        "search",
    )
    assert report.totals.cost == D("0.0035") == delegation.ctx.span.total_cost
    assert caller.tree.total_cost == self_costs(caller.tree.spans()) == D("0.001") + report.totals.cost
    assert caller.remaining().cost == D("1") - caller.tree.total_cost
