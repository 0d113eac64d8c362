"""retry_call and stop_when_unaffordable: budgeted retries on tenacity."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_none

import agentcost
from agentcost import (
    Budget,
    BudgetExceeded,
    CostContext,
    Decision,
    DegradePolicy,
    Remaining,
    Span,
    Usage,
    retry_call,
    stop_when_unaffordable,
)

D = Decimal
MODEL = "gpt-4o"


def no_sleep(seconds: float) -> None:
    """tenacity's sleep, replaced: the tests do not wait between attempts."""


def llm_spans(ctx: CostContext) -> list[Span]:
    return [span for span in ctx.tree if span.kind == "llm"]


def price(ctx: CostContext, input_tokens: int, output_tokens: int) -> Decimal:
    cost = ctx.pricing.price(MODEL, Usage(input_tokens, output_tokens), provider="openai")
    assert cost is not None
    return cost


def test_each_attempt_is_its_own_span() -> None:
    """Two failed attempts and a success give three llm spans (error, error, ok), each charged to the budget."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_calls=10)) as ctx:
        attempts: list[Decision] = []

        def call(decision: Decision) -> str:
            attempts.append(decision)
            if len(attempts) < 3:
                decision.record(usage=Usage(1000, 50), error="RateLimitError: slow down")
                raise ConnectionError("rate limited")
            decision.record(usage=Usage(1000, 100))
            return "answer"

        result = retry_call(
            ctx,
            call,
            model=MODEL,
            provider="openai",
            input_tokens=1000,
            max_output_tokens=100,
            stop=stop_after_attempt(5),
            wait=wait_none(),
            sleep=no_sleep,
        )
        assert result == "answer"
        spans = llm_spans(ctx)
        assert [span.status for span in spans] == ["error", "error", "ok"]
        assert len({decision.reservation.id for decision in attempts if decision.reservation}) == 3
        spent = 2 * price(ctx, 1000, 50) + price(ctx, 1000, 100)
        assert ctx.tree.total_cost == spent
        assert ctx.remaining() == Remaining(D("1") - spent, None, 7)


def test_retrying_stops_when_the_budget_cannot_pay_for_another_attempt() -> None:
    """Retrying stops (re-raising) once no attempt is affordable: after 2 of the 5 attempts allowed."""
    per_attempt = D("0.0035")  # 1000 input + 100 output tokens of gpt-4o
    with agentcost.run("r", budget=Budget(max_cost=D("0.0080"))) as ctx:
        calls = [0]

        def call(decision: Decision) -> str:
            calls[0] += 1
            decision.record(usage=Usage(1000, 100), error="APIError: 500")
            raise RuntimeError(f"attempt {calls[0]} failed")

        with pytest.raises(RuntimeError, match="attempt 2 failed"):
            retry_call(
                ctx,
                call,
                model=MODEL,
                provider="openai",
                input_tokens=1000,
                max_output_tokens=100,
                stop=stop_after_attempt(5),
                wait=wait_none(),
                sleep=no_sleep,
            )
        assert calls[0] == 2
        assert len(llm_spans(ctx)) == 2
        assert ctx.remaining().cost == D("0.0080") - 2 * per_attempt


def test_stop_when_unaffordable_fires_below_the_cheapest_possible_attempt() -> None:
    """The stop condition fires only when even the cheapest fallback, capped at min_output_tokens, does not fit."""
    policy = DegradePolicy(fallbacks={MODEL: "gpt-4o-mini"}, min_output_tokens=100)
    with agentcost.run("r", budget=Budget(max_cost=D("0.001"), policy=policy)) as ctx:
        stop = stop_when_unaffordable(ctx, model=MODEL, provider="openai", input_tokens=1000, max_output_tokens=4000)
        state = RetryCallState(Retrying(), None, (), {})
        cheapest = ctx.pricing.price("gpt-4o-mini", Usage(1000, 100), provider="openai")
        assert cheapest == D("0.00021")
        assert stop(state) is False
        ctx.record("tool", "t", cost=D("0.001") - cheapest)  # exactly the cheapest attempt is left
        assert stop(state) is False
        ctx.record("tool", "t", cost=D("1E-8"))
        assert stop(state) is True


def test_stop_when_unaffordable_fires_when_no_call_is_left() -> None:
    """With the call limit used up, the stop condition fires whatever money is left."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_calls=1)) as ctx:
        stop = stop_when_unaffordable(ctx, model=MODEL, provider="openai", input_tokens=10)
        state = RetryCallState(Retrying(), None, (), {})
        assert stop(state) is False
        ctx.record("tool", "t", cost="0")
        assert stop(state) is True


def test_a_budget_exceeded_is_not_retried() -> None:
    """BudgetExceeded raised by the call (or by the guard) ends the retries at once."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"))) as ctx:
        calls = [0]

        def call(decision: Decision) -> str:
            calls[0] += 1
            raise BudgetExceeded(node="agent 'a'", limit="max_cost=1", metric="cost", requested=1, remaining=0)

        with pytest.raises(BudgetExceeded):
            retry_call(
                ctx,
                call,
                model=MODEL,
                provider="openai",
                input_tokens=10,
                max_output_tokens=10,
                stop=stop_after_attempt(5),
                wait=wait_none(),
                sleep=no_sleep,
            )
        assert calls[0] == 1


def test_a_first_attempt_that_does_not_fit_raises_without_calling() -> None:
    """When the very first attempt is denied, BudgetExceeded propagates and the call is never made."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.0001"))) as ctx:
        calls = [0]

        def call(decision: Decision) -> str:
            calls[0] += 1
            return "never"

        with pytest.raises(BudgetExceeded):
            retry_call(
                ctx,
                call,
                model=MODEL,
                provider="openai",
                input_tokens=1000,
                stop=stop_after_attempt(5),
                wait=wait_none(),
                sleep=no_sleep,
            )
        assert calls[0] == 0
        assert llm_spans(ctx) == []
        assert ctx.remaining().cost == D("0.0001")


def test_an_attempt_raising_without_recording_is_charged_at_the_estimate() -> None:
    """An attempt that raises without recording leaves an unpriced error span whose hold settles at the estimate."""
    with agentcost.run("r", budget=Budget(max_cost=D("1"), max_calls=5)) as ctx:
        calls = [0]

        def call(decision: Decision) -> str:
            calls[0] += 1
            if calls[0] == 1:
                raise ConnectionError("connection reset")
            decision.record(usage=Usage(1000, 100))
            return "ok"

        assert (
            retry_call(
                ctx,
                call,
                model=MODEL,
                provider="openai",
                input_tokens=1000,
                max_output_tokens=500,
                wait=wait_none(),
                sleep=no_sleep,
            )
            == "ok"
        )
        failed, succeeded = llm_spans(ctx)
        estimate = price(ctx, 1000, 500)
        assert (failed.status, failed.cost, failed.error) == ("error", None, "ConnectionError: connection reset")
        assert (succeeded.status, succeeded.cost) == ("ok", price(ctx, 1000, 100))
        assert ctx.tree.root.total_unpriced == 1
        assert ctx.remaining() == Remaining(D("1") - estimate - price(ctx, 1000, 100), None, 3)
        assert ctx._run.holds == {}  # private: no hold of either attempt is left waiting for expiry


def test_each_retry_is_admitted_against_what_is_left() -> None:
    """A retry after a costly failure is degraded (its output capped) to what the budget has left."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.05"))) as ctx:
        decisions: list[Decision] = []

        def call(decision: Decision) -> str:
            decisions.append(decision)
            if len(decisions) == 1:
                decision.record(usage=Usage(1000, 3000), error="Timeout: the stream broke")
                raise TimeoutError("stream broke")
            decision.record(usage=Usage(1000, 10))
            return "ok"

        retry_call(
            ctx,
            call,
            model=MODEL,
            provider="openai",
            input_tokens=1000,
            max_output_tokens=4000,
            wait=wait_none(),
            sleep=no_sleep,
        )
        first, second = decisions
        assert (first.action, first.max_output_tokens) == ("allow", 4000)
        assert second.action == "degrade"
        assert second.max_output_tokens == 1500  # ($0.05 - $0.0325 - $0.0025) / $10 per million output tokens
        assert [span.status for span in llm_spans(ctx)] == ["error", "degraded"]


def test_a_skipped_optional_call_is_handed_to_the_call() -> None:
    """An optional call that does not fit reaches the call as a skip decision, and its answer is returned."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.0001"))) as ctx:

        def call(decision: Decision) -> str:
            return "skipped: budget" if decision.action == "skip" else "called"

        answer = retry_call(ctx, call, model=MODEL, provider="openai", input_tokens=1000, optional=True, sleep=no_sleep)
        assert answer == "skipped: budget"
        assert llm_spans(ctx) == []


def test_a_hold_that_expired_during_an_attempt_does_not_stop_the_retries() -> None:
    """Retrying goes on when all that stood in the way of the next attempt was a hold that has since expired."""
    with agentcost.run("r", budget=Budget(max_cost=D("0.01"))) as ctx:
        ctx.reserve(cost="0.006", ttl=0.15)  # a crashed sibling's hold, never resolved
        calls = [0]

        def call(decision: Decision) -> str:
            calls[0] += 1
            if calls[0] == 1:
                time.sleep(0.25)  # a slow attempt, during which the sibling's hold expires
                decision.record(usage=Usage(1000, 0), error="TimeoutError: read timed out")
                raise TimeoutError("read timed out")
            decision.record(usage=Usage(1000, 100))
            return "ok"

        # $0.0075 is free once the hold has expired: the $0.0035 second attempt fits
        answer = retry_call(
            ctx,
            call,
            model=MODEL,
            provider="openai",
            input_tokens=1000,
            max_output_tokens=100,
            wait=wait_none(),
            sleep=no_sleep,
        )
        assert answer == "ok"
        assert calls[0] == 2
