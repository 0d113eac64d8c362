"""Budgeted retries on tenacity: every attempt is its own span, and retrying stops when no attempt is affordable."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential
from tenacity.stop import stop_base

from agentcost._budget import Decision, _has_cost_limit, policy_of
from agentcost._errors import BudgetExceeded
from agentcost._usage import Usage

if TYPE_CHECKING:
    from tenacity.retry import retry_base
    from tenacity.wait import wait_base

    from agentcost._context import CostContext

__all__ = ["retry_call", "stop_when_unaffordable"]

T = TypeVar("T")


class stop_when_unaffordable(stop_base):  # lower case: tenacity's convention for stop conditions
    """A tenacity stop condition: stop when the budget cannot pay for the cheapest attempt the ladder could admit
    (the cheapest model of the fallback chain, with its output capped to ``min_output_tokens`` if capping is on)."""

    def __init__(
        self,
        ctx: CostContext,
        *,
        model: str,
        provider: str | None = None,
        input_tokens: int,
        max_output_tokens: int | None = None,
        price_context: Mapping[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.model = model
        self.provider = provider
        self.input_tokens = input_tokens
        self.max_output_tokens = max_output_tokens
        self.price_context = price_context

    def __call__(self, retry_state: RetryCallState) -> bool:
        ctx = self.ctx
        policy = policy_of(ctx)
        output = self.max_output_tokens or policy.default_output_tokens
        if policy.cap_output:
            output = min(output, policy.min_output_tokens)
        left = ctx.remaining()
        if left.calls is not None and left.calls < 1:
            return True
        if left.tokens is not None and self.input_tokens + output > left.tokens:
            return True
        if left.cost is None:
            return False
        costs = [
            ctx.pricing.price(
                candidate, Usage(self.input_tokens, output), provider=self.provider, price_context=self.price_context
            )
            for candidate in [self.model, *policy.chain(self.model)]
        ]
        known = [cost for cost in costs if cost is not None]
        if not known:
            if policy.unpriced_ceiling is None:
                return _has_cost_limit(ctx)
            return policy.unpriced_ceiling > left.cost
        return min(known) > left.cost


def _retryable(error: BaseException) -> bool:
    return isinstance(error, Exception) and not isinstance(error, BudgetExceeded)


def retry_call(
    ctx: CostContext,
    call: Callable[[Decision], T],
    *,
    model: str,
    provider: str | None = None,
    input_tokens: int,
    max_output_tokens: int | None = None,
    optional: bool = False,
    price_context: Mapping[str, str] | None = None,
    stop: stop_base | None = None,
    wait: wait_base | None = None,
    retry: retry_base | None = None,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """Call ``call(decision)`` under :meth:`CostContext.guard`, retrying failures with tenacity.

    Each attempt gets its own guard, so each is admitted (or degraded) against what is left, and is its own span:
    ``call`` records it with ``decision.record(usage=..., error=...)`` (before re-raising, for a failed attempt
    that consumed tokens); an attempt that raises without recording is recorded as a failed, unpriced span, and
    its hold is charged at the estimate: unknown is not zero. Retrying stops after ``stop`` (default: 3 attempts)
    or as soon as the budget cannot pay for another attempt; the last error is re-raised. ``call`` also receives
    ``skip`` and ``finish`` decisions, and returns what the agent should use instead.
    """
    stop_condition = stop_when_unaffordable(
        ctx,
        model=model,
        provider=provider,
        input_tokens=input_tokens,
        max_output_tokens=max_output_tokens,
        price_context=price_context,
    )
    retrying = Retrying(
        stop=(stop or stop_after_attempt(3)) | stop_condition,
        wait=wait or wait_exponential(multiplier=0.5, max=8),
        retry=retry or retry_if_exception(_retryable),
        reraise=True,
        sleep=sleep or time.sleep,
    )
    for attempt in retrying:
        with (
            attempt,
            ctx.guard(
                model=model,
                provider=provider,
                input_tokens=input_tokens,
                max_output_tokens=max_output_tokens,
                optional=optional,
                price_context=price_context,
            ) as decision,
        ):
            try:
                return call(decision)
            except BaseException as error:
                reservation = decision.reservation
                if reservation is not None and reservation.state in ("held", "expired"):
                    ctx.record(
                        "llm",
                        decision.model,
                        status="error",
                        error=f"{type(error).__name__}: {error}",
                        reservation=reservation,
                        notes=decision.reasons,
                    )
                raise
    raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover
