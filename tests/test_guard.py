"""guard() and guard_tool(): estimate, walk the degradation ladder, reserve, and settle with decision.record()."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

import agentcost
from agentcost import (
    Budget,
    BudgetEvent,
    BudgetExceeded,
    CostContext,
    Decision,
    DegradePolicy,
    PriceBook,
    Remaining,
    ReservationError,
    Span,
    Usage,
)
from agentcost._budget import Guard

D = Decimal
MODEL = "gpt-4o"
MINI = "gpt-4o-mini"
UNPRICED = "acme-private-model-7"
FALLBACKS = DegradePolicy(fallbacks={MODEL: MINI})


def price(ctx: CostContext, model: str, input_tokens: int, output_tokens: int) -> Decimal:
    cost = ctx.pricing.price(model, Usage(input_tokens, output_tokens), provider="openai")
    assert cost is not None
    return cost


def held_cost(ctx: CostContext) -> Decimal:
    """What the node's own account holds. Private, read under the tree lock: remaining() mixes held and spent."""
    account = ctx._accounts[-1]
    with ctx._run.tree._lock:
        return account.held_cost


def refused(guard: Guard) -> BudgetExceeded:
    """The BudgetExceeded that entering ``guard`` raises (failing the test if the call is admitted instead)."""
    with pytest.raises(BudgetExceeded) as info, guard:
        pytest.fail("the call was admitted")
    return info.value


def calls_of(ctx: CostContext, kind: str = "llm") -> list[Span]:
    return [span for span in ctx.tree if span.kind == kind]


# ---------------------------------------------------------------------------------------------------------------------
# the ladder
# ---------------------------------------------------------------------------------------------------------------------


def test_a_call_that_fits_is_allowed_as_asked_and_held_at_its_estimate() -> None:
    """allow: the model and max_output_tokens as asked; the estimate is held until record() settles the actual."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("1")), on_event=events.append) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=500) as decision:
            assert (decision.action, decision.model, decision.max_output_tokens) == ("allow", MODEL, 500)
            assert decision.reasons == ()
            assert decision.estimate == price(ctx, MODEL, 1000, 500) == D("0.0075")
            assert ctx.remaining().cost == D("1") - D("0.0075")
            span = decision.record(usage=Usage(1000, 200))
        assert (span.status, span.cost, span.model, span.requested_model) == ("ok", D("0.0045"), MODEL, None)
        assert ctx.remaining().cost == D("1") - D("0.0045")
        assert held_cost(ctx) == 0
        assert events == []


def test_cap_output_to_what_the_remaining_money_pays_for() -> None:
    """degrade by cap: max_output_tokens = floor((remaining - cost(input, 0)) * 1e6 / output price per million)."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("0.05")), on_event=events.append) as ctx:
        ctx.record("tool", "earlier", cost="0.0399963")
        left = ctx.remaining().cost
        assert left == D("0.0100037")
        base = price(ctx, MODEL, 1000, 0)
        per_million_output = price(ctx, MODEL, 0, 1_000_000) - price(ctx, MODEL, 0, 0)
        expected = math.floor((left - base) * 1_000_000 / per_million_output)
        assert expected == 750
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000) as decision:
            assert (decision.action, decision.model, decision.max_output_tokens) == ("degrade", MODEL, expected)
            assert decision.estimate == price(ctx, MODEL, 1000, expected)
            assert len(decision.reasons) == 1
            assert decision.reasons[0].startswith("max_output_tokens 4000 -> 750")
            span = decision.record(usage=Usage(1000, 750))
        assert span.status == "degraded"
        assert span.notes == decision.reasons
        assert ctx.remaining().cost == left - price(ctx, MODEL, 1000, 750)
        assert [(e.kind, e.node) for e in events if e.kind != "warning"] == [("degraded", "run 'r'")]
        assert "max_output_tokens 4000 -> 750" in events[0].detail


def test_one_more_output_token_than_the_cap_would_not_fit() -> None:
    """The capped output is the largest that fits: the estimate with one more token exceeds what is left."""
    with (
        agentcost.run("r", budget=Budget(max_cost=D("0.0123457"))) as ctx,
        ctx.guard(model=MODEL, provider="openai", input_tokens=333, max_output_tokens=100_000) as decision,
    ):
        cap = decision.max_output_tokens
        assert decision.action == "degrade"
        assert cap is not None
        assert price(ctx, MODEL, 333, cap) <= D("0.0123457") < price(ctx, MODEL, 333, cap + 1)


def test_the_cap_uses_the_tightest_budget_on_the_path() -> None:
    """An agent's generous budget does not raise the cap above what its parent has left."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.0075"))) as ctx:
        agent = ctx.child("agent", budget=Budget(max_cost=D("100")))
        with agent.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000) as decision:
            assert (decision.action, decision.max_output_tokens) == ("degrade", 500)


def test_swap_to_a_cheaper_fallback_when_capping_cannot_help() -> None:
    """degrade by swap: when the model cannot be capped above min_output_tokens, the fallback is used as asked."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.004"), policy=FALLBACKS)) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=1000) as decision:
            assert (decision.action, decision.model, decision.max_output_tokens) == ("degrade", MINI, 1000)
            assert decision.requested_model == MODEL
            assert decision.estimate == price(ctx, MINI, 1000, 1000)
            assert [reason.split(":")[0] for reason in decision.reasons] == [f"model {MODEL} -> {MINI}"]
            span = decision.record(usage=Usage(1000, 900))
        assert (span.model, span.requested_model, span.status) == (MINI, MODEL, "degraded")
        assert span.cost == price(ctx, MINI, 1000, 900)
        assert any(f"model {MODEL} -> {MINI}" in note for note in span.notes)


def test_swap_and_cap_together() -> None:
    """degrade by swap+cap: the fallback itself is capped when even it does not fit as asked."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.003"), policy=FALLBACKS)) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=10_000) as decision:
            base = price(ctx, MINI, 1000, 0)
            per_million_output = price(ctx, MINI, 0, 1_000_000) - price(ctx, MINI, 0, 0)
            expected = math.floor((D("0.003") - base) * 1_000_000 / per_million_output)
            assert expected == 4750
            assert (decision.action, decision.model, decision.max_output_tokens) == ("degrade", MINI, expected)
            assert decision.reasons[0].startswith(f"model {MODEL} -> {MINI}")
            assert decision.reasons[1].startswith(f"max_output_tokens 10000 -> {expected}")
            span = decision.record(usage=Usage(1000, 10))
        assert span.notes == decision.reasons
        assert span.status == "degraded"


def test_the_fallback_chain_is_followed_to_the_first_model_that_fits() -> None:
    """A chain of fallbacks is tried in order; the first that fits at the asked output is used."""
    policy = DegradePolicy(fallbacks={"big": "medium", "medium": "small"}, min_output_tokens=10_000)
    book = PriceBook(
        catalog=False,
        models={
            "big": agentcost.CustomPrice(input_mtok=D("100"), output_mtok=D("100")),
            "medium": agentcost.CustomPrice(input_mtok=D("10"), output_mtok=D("10")),
            "small": agentcost.CustomPrice(input_mtok=D("1"), output_mtok=D("1")),
        },
    )
    with (
        agentcost.run("r", pricing=book, budget=Budget(max_cost=D("0.002"), policy=policy)) as ctx,
        ctx.guard(model="big", input_tokens=1000, max_output_tokens=1000) as decision,
    ):
        assert (decision.action, decision.model, decision.max_output_tokens) == ("degrade", "small", 1000)
        assert decision.reasons[0].startswith("model big -> small")


def test_skip_an_optional_call_that_does_not_fit() -> None:
    """skip: an optional call that fits nowhere holds nothing, is not counted, and leaves a skipped marker span."""
    events: list[BudgetEvent] = []
    budget = Budget(max_cost=D("0.0001"), max_calls=5, policy=FALLBACKS)
    with agentcost.run("r", budget=budget, on_event=events.append) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, optional=True) as decision:
            assert decision.action == "skip"
            assert not decision.admitted
            assert decision.reservation is None
            assert decision.estimate is None
            assert any(reason.startswith("skipped: budget") for reason in decision.reasons)
            assert ctx.remaining() == Remaining(D("0.0001"), None, 5)
            assert ctx._run.holds == {}  # private: nothing was held, not even briefly left behind
        (marker,) = [span for span in ctx.tree if span.kind != "run"]
        assert (marker.status, marker.cost) == ("skipped", D(0))
        assert any("skipped: budget" in note for note in marker.notes)
        assert calls_of(ctx) == []
        assert ctx.remaining() == Remaining(D("0.0001"), None, 5)
        assert [e.kind for e in events] == ["degraded"]


def test_finish_early_when_the_policy_says_so() -> None:
    """finish: with policy.finish_early, a required call that fits nowhere answers finish instead of raising."""
    policy = DegradePolicy(finish_early=True)
    with agentcost.run("r", budget=Budget(max_cost=D("0.0001"), policy=policy)) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000) as decision:
            assert decision.action == "finish"
            assert decision.reservation is None
            assert any(reason.startswith("finish early: budget") for reason in decision.reasons)
        (marker,) = [span for span in ctx.tree if span.kind != "run"]
        assert marker.status == "skipped"
        assert ctx.remaining().cost == D("0.0001")


def test_deny_raises_before_any_call_and_holds_nothing() -> None:
    """deny: when nothing fits, guard() raises BudgetExceeded with the ladder's reasons and nothing stays held."""
    events: list[BudgetEvent] = []
    entered = False
    budget = Budget(max_cost=D("0.0001"), policy=FALLBACKS)
    with agentcost.run("r", budget=budget, on_event=events.append) as ctx:
        with (
            pytest.raises(BudgetExceeded) as info,
            ctx.guard(model=MODEL, provider="openai", input_tokens=1000, optional=False),
        ):
            entered = True
        assert not entered
        error = info.value
        assert (error.node, error.metric) == ("run 'r'", "cost")
        assert len(error.reasons) >= 2
        assert any(MODEL in reason for reason in error.reasons)
        assert any(MINI in reason for reason in error.reasons)
        assert "tried:" in str(error)
        assert held_cost(ctx) == 0
        assert ctx._run.holds == {}  # private: the trial reservations of the ladder left nothing behind
        assert ctx.remaining().cost == D("0.0001")
        assert len(ctx.tree) == 1
        assert [(e.kind, e.denied) for e in events] == [("exceeded", True)]


def test_the_ladder_is_quiet_until_it_decides() -> None:
    """Trial reservations refused while walking the ladder fire no events; only the outcome (degraded) does."""
    events: list[BudgetEvent] = []
    budget = Budget(max_cost=D("0.003"), policy=FALLBACKS)
    with (
        agentcost.run("r", budget=budget, on_event=events.append) as ctx,
        ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=10_000),
    ):
        pass
    assert [e.kind for e in events] == ["degraded"]


def test_cap_output_off_skips_the_cap_rung() -> None:
    """With cap_output=False the ladder never caps: a call that only a cap would save is refused."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.01"), policy=DegradePolicy(cap_output=False))) as ctx:
        refused(ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000))
        assert held_cost(ctx) == 0


def test_a_cap_below_min_output_tokens_is_not_offered() -> None:
    """The ladder never caps below min_output_tokens; below it the call is refused."""
    policy = DegradePolicy(min_output_tokens=800)
    with agentcost.run("r", budget=Budget(max_cost=D("0.0100037"), policy=policy)) as ctx:
        refused(ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000))


def test_without_max_output_tokens_the_default_output_is_estimated() -> None:
    """A call with no max_output_tokens is estimated at default_output_tokens and, under a hard limit, told to cap
    its output there, so the real call cannot outrun its hold."""
    policy = DegradePolicy(default_output_tokens=2000)
    with (
        agentcost.run("r", budget=Budget(max_cost=D("1"), policy=policy)) as ctx,
        ctx.guard(model=MODEL, provider="openai", input_tokens=1000) as decision,
    ):
        assert decision.action == "allow"
        assert decision.max_output_tokens == 2000
        assert decision.estimate == price(ctx, MODEL, 1000, 2000)


def test_without_any_limit_no_output_cap_is_imposed() -> None:
    """With no hard cost or token limit on the path, a call without max_output_tokens is allowed uncapped."""
    with (
        agentcost.run("r", budget=Budget(max_calls=10)) as ctx,
        ctx.guard(model=MODEL, provider="openai", input_tokens=1000) as decision,
    ):
        assert decision.action == "allow"
        assert decision.max_output_tokens is None


def test_the_nearest_policy_up_the_tree_applies() -> None:
    """A node without a policy uses its nearest ancestor's; a node with its own policy uses that one."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.004"), policy=FALLBACKS)) as ctx:
        inherits = ctx.child("inherits", budget=Budget(max_calls=10))
        with inherits.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=1000) as decision:
            assert (decision.action, decision.model) == ("degrade", MINI)
        own = ctx.child("own", budget=Budget(max_calls=10, policy=DegradePolicy(finish_early=True)))
        with own.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=1000) as decision:
            assert decision.action == "finish"


# ---------------------------------------------------------------------------------------------------------------------
# token and call limits, soft budgets, events
# ---------------------------------------------------------------------------------------------------------------------


def test_a_token_limit_caps_the_output_and_then_refuses() -> None:
    """Under a token limit the output is capped to the tokens left after the input; with none left, refused."""
    with agentcost.run("r", budget=Budget(max_tokens=2000)) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000) as decision:
            assert (decision.action, decision.max_output_tokens) == ("degrade", 1000)
            decision.record(usage=Usage(1000, 1000))
        assert ctx.remaining().tokens == 0
        error = refused(ctx.guard(model=MODEL, provider="openai", input_tokens=10, max_output_tokens=300))
        assert error.metric == "tokens"


def test_a_call_limit_refuses_the_call_after_the_last() -> None:
    """Under max_calls=2 two guarded calls are admitted and the third is refused on calls."""
    with agentcost.run("r", budget=Budget(max_calls=2)) as ctx:
        for _ in range(2):
            with ctx.guard(model=MODEL, provider="openai", input_tokens=10, max_output_tokens=10) as decision:
                assert decision.action == "allow"
                decision.record(usage=Usage(10, 10))
        error = refused(ctx.guard(model=MODEL, provider="openai", input_tokens=10, max_output_tokens=10))
        assert (error.metric, error.limit) == ("calls", "max_calls=2")
        assert len(calls_of(ctx)) == 2


def test_a_soft_budget_never_refuses_a_guarded_call_but_fires_events() -> None:
    """Under a soft budget, guard() allows a call far over it, and recording it fires warning and exceeded."""
    events: list[BudgetEvent] = []
    with agentcost.run("r", budget=Budget(max_cost=D("0.001"), hard=False), on_event=events.append) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000) as decision:
            assert (decision.action, decision.max_output_tokens) == ("allow", 4000)
            decision.record(usage=Usage(1000, 4000))
        assert [(e.kind, e.metric, e.denied) for e in events] == [
            ("warning", "cost", False),
            ("exceeded", "cost", False),
        ]


def test_a_hook_that_raises_does_not_break_a_degradation() -> None:
    """A raising hook on a degraded event is counted; the decision is still returned and recordable."""

    def broken(event: BudgetEvent) -> None:
        raise ValueError("pager down")

    with agentcost.run("r", budget=Budget(max_cost=D("0.0100037")), on_event=broken) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000) as decision:
            assert decision.action == "degrade"
            span = decision.record(usage=Usage(1000, 100))
        assert span.status == "degraded"
        assert ctx._run.hook_errors >= 1  # private: the only trace of the broken hook
        assert ctx.tree.events[0].kind == "degraded"


# ---------------------------------------------------------------------------------------------------------------------
# unpriced models
# ---------------------------------------------------------------------------------------------------------------------


def test_an_unpriced_model_is_refused_under_a_cost_limit() -> None:
    """A model the price book cannot price is refused under a cost limit when no unpriced_ceiling is set."""
    with agentcost.run("r", budget=Budget(max_cost=D("10"))) as ctx:
        error = refused(ctx.guard(model=UNPRICED, input_tokens=10, max_output_tokens=10))
        assert any("cannot be priced" in reason for reason in error.reasons)
        assert held_cost(ctx) == 0


def test_an_unpriced_model_is_held_and_settled_at_the_ceiling() -> None:
    """With unpriced_ceiling, an unpriced call is held at the ceiling and its unpriced span settles at it."""
    policy = DegradePolicy(unpriced_ceiling=D("0.05"))
    with agentcost.run("r", budget=Budget(max_cost=D("1"), policy=policy)) as ctx:
        with ctx.guard(model=UNPRICED, input_tokens=10, max_output_tokens=10) as decision:
            assert (decision.action, decision.estimate) == ("allow", D("0.05"))
            assert ctx.remaining().cost == D("0.95")
            span = decision.record(usage=Usage(10, 10))
        assert span.cost is None
        assert ctx.tree.root.total_unpriced == 1
        assert ctx.remaining().cost == D("0.95")
        assert held_cost(ctx) == 0


def test_an_unpriced_model_over_the_ceiling_budget_is_refused() -> None:
    """The unpriced ceiling is held like any estimate: when it does not fit, the call is refused."""
    policy = DegradePolicy(unpriced_ceiling=D("0.05"))
    with agentcost.run("r", budget=Budget(max_cost=D("0.04"), policy=policy)) as ctx:
        refused(ctx.guard(model=UNPRICED, input_tokens=10, max_output_tokens=10))


def test_an_unpriced_model_without_a_cost_limit_is_allowed() -> None:
    """Without any cost limit an unpriced model is admitted (only its tokens and call are held)."""
    with agentcost.run("r", budget=Budget(max_calls=3, max_tokens=100)) as ctx:
        with ctx.guard(model=UNPRICED, input_tokens=10, max_output_tokens=20) as decision:
            assert decision.action == "allow"
            assert ctx.remaining() == Remaining(None, 70, 2)
            decision.record(usage=Usage(10, 5))
        assert ctx.remaining() == Remaining(None, 85, 2)


def test_an_unpriced_model_under_a_soft_cost_budget_is_allowed() -> None:
    """A soft cost budget never refuses, so it does not refuse an unpriced model either."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), hard=False)) as ctx:
        with ctx.guard(model=UNPRICED, input_tokens=10, max_output_tokens=10) as decision:
            assert decision.action == "allow"
            decision.record(usage=Usage(10, 10))
        assert ctx.tree.root.total_unpriced == 1


def test_an_unpriced_tool_is_skipped_or_held_at_the_ceiling() -> None:
    """A tool without a price is skipped under a cost limit, unless unpriced_ceiling gives the amount to hold."""
    with agentcost.run("r", pricing=tool_book(), budget=Budget(max_cost=D("1"))) as ctx:
        with ctx.guard_tool("crawl") as decision:
            assert decision.action == "skip"
        refused(ctx.guard_tool("crawl", optional=False))
    policy = DegradePolicy(unpriced_ceiling=D("0.2"))
    with agentcost.run("r", pricing=tool_book(), budget=Budget(max_cost=D("1"), policy=policy)) as ctx:
        with ctx.guard_tool("crawl", optional=False) as decision:
            assert (decision.action, decision.estimate) == ("allow", D("0.2"))
            span = decision.record()
        assert (span.cost, span.cost_source) == (D("0.2"), "estimated")
        assert ctx.remaining().cost == D("0.8")


# ---------------------------------------------------------------------------------------------------------------------
# recording and releasing
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["skip", "finish"])
def test_recording_a_call_that_was_not_admitted_raises(action: str) -> None:
    """decision.record() on a skip or finish raises ReservationError and records nothing."""
    policy = DegradePolicy(finish_early=action == "finish")
    with agentcost.run("r", budget=Budget(max_cost=D("0.0001"), policy=policy)) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, optional=action == "skip") as decision:
            assert decision.action == action
            with pytest.raises(ReservationError, match=action):
                decision.record(usage=Usage(1000, 10))
        assert calls_of(ctx) == []
        assert ctx.remaining().cost == D("0.0001")


def test_leaving_the_block_with_an_exception_releases_the_hold() -> None:
    """An exception escaping the guard block without a record releases the hold: nothing is spent or held."""
    decisions: list[Decision] = []
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_calls=1)) as ctx:

        def failing_call() -> None:
            with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=500) as decision:
                decisions.append(decision)
                assert ctx.remaining().calls == 0
                raise ConnectionError("provider down")

        with pytest.raises(ConnectionError):
            failing_call()
        (decision,) = decisions
        assert decision.reservation is not None
        assert decision.reservation.state == "released"
        assert ctx.remaining() == Remaining(D("1"), None, 1)
        assert calls_of(ctx) == []


def test_leaving_the_block_without_a_record_releases_the_hold() -> None:
    """A guard block that ends normally without recording (the call was not made) gives the hold back."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=500):
            pass
        assert ctx.remaining().cost == D("1")
        assert held_cost(ctx) == 0


def test_an_exception_after_recording_keeps_the_recorded_spend() -> None:
    """An exception after decision.record() does not undo the recorded call."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as ctx:

        def call_then_fail() -> None:
            with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=500) as decision:
                decision.record(usage=Usage(1000, 100))
                raise KeyError("parse failure")

        with pytest.raises(KeyError):
            call_then_fail()
        assert ctx.remaining().cost == D("1") - D("0.0035")


def test_a_failed_call_recorded_with_error_still_costs() -> None:
    """decision.record(error=...) records a failed span (status error) whose tokens and cost still count."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_tokens=10_000)) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=500) as decision:
            span = decision.record(usage=Usage(1000, 40), error="TimeoutError: read timed out")
        assert (span.status, span.error) == ("error", "TimeoutError: read timed out")
        assert span.cost == price(ctx, MODEL, 1000, 40)
        assert ctx.remaining() == Remaining(D("1") - price(ctx, MODEL, 1000, 40), 10_000 - 1040, None)
        assert ctx.tree.total_cost == span.cost


def test_a_decision_records_once() -> None:
    """A second decision.record() raises ReservationError and does not count the call twice."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=500) as decision:
            decision.record(usage=Usage(1000, 100))
            with pytest.raises(ReservationError):
                decision.record(usage=Usage(1000, 100))
        assert len(calls_of(ctx)) == 1
        assert ctx.remaining().cost == D("1") - D("0.0035")


def test_a_degraded_decision_recorded_with_a_provider_cost_uses_it() -> None:
    """decision.record(cost=...) settles the hold at the provider-reported cost."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.0100037"))) as ctx:
        with ctx.guard(model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000) as decision:
            span = decision.record(usage=Usage(1000, 100), cost="0.002")
        assert (span.cost, span.cost_source, span.status) == (D("0.002"), "provider", "degraded")
        assert ctx.remaining().cost == D("0.0080037")


# ---------------------------------------------------------------------------------------------------------------------
# tools
# ---------------------------------------------------------------------------------------------------------------------


def tool_book() -> PriceBook:
    return PriceBook(catalog=False, tools={"search": "0.01"})


def test_a_tool_is_admitted_at_its_price_and_recorded() -> None:
    """guard_tool holds the tool's price from the book and record() charges it."""
    with agentcost.run("r", pricing=tool_book(), budget=Budget(max_cost=D("0.015"))) as ctx:
        with ctx.guard_tool("search") as decision:
            assert (decision.action, decision.estimate) == ("allow", D("0.01"))
            assert ctx.remaining().cost == D("0.005")
            span = decision.record()
        assert (span.kind, span.name, span.cost, span.status) == ("tool", "search", D("0.01"), "ok")
        assert ctx.remaining().cost == D("0.005")


def test_an_optional_tool_that_does_not_fit_is_skipped() -> None:
    """An optional tool over budget is skipped: a zero-cost skipped tool span, nothing held or counted."""
    with agentcost.run("r", pricing=tool_book(), budget=Budget(max_cost=D("0.005"), max_calls=4)) as ctx:
        with ctx.guard_tool("search") as decision:
            assert decision.action == "skip"
            assert decision.reservation is None
        (marker,) = calls_of(ctx, "tool")
        assert (marker.status, marker.cost) == ("skipped", D(0))
        assert any("skipped: budget" in note for note in marker.notes)
        assert ctx.remaining() == Remaining(D("0.005"), None, 4)


def test_a_required_tool_that_does_not_fit_raises() -> None:
    """A required tool over budget raises BudgetExceeded before the call."""
    with agentcost.run("r", pricing=tool_book(), budget=Budget(max_cost=D("0.005"))) as ctx:
        refused(ctx.guard_tool("search", optional=False))
        assert held_cost(ctx) == 0
        assert len(ctx.tree) == 1
