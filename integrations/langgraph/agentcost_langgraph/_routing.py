"""Early finish: a conditional edge that sends the graph to its wrap-up node when the money runs low."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from decimal import Decimal
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END

from agentcost import format_usd, to_money
from agentcost_langgraph._tools import node_context

__all__ = ["finish_when_low"]


def finish_when_low(
    *,
    below: Decimal | int | str,
    then: Callable[[Any], Hashable] | Hashable,
    finish: Hashable = END,
) -> Callable[[Any, RunnableConfig], Hashable]:
    """A router for ``add_conditional_edges``: to ``finish`` (a wrap-up node, or ``END``) when the remaining budget
    of the node it runs after is below ``below`` dollars, else where ``then`` says (a router such as
    ``tools_condition``, or a node name).

    The early finish is recorded in the tree: a ``skipped`` marker span with the reason, and a ``degraded`` budget
    event. Without a budget (or without a :class:`CostCallbackHandler` in the run's callbacks) it never finishes.
    """
    threshold = to_money(below, what="below")

    def route(state: Any, config: RunnableConfig) -> Hashable:
        ctx = node_context(config)
        if ctx is not None and ctx.budgeted:
            left = ctx.remaining().cost
            if left is not None and left < threshold:
                ctx.record_finish(
                    f"finish early: budget ({format_usd(left)} left, below {format_usd(threshold)})",
                    name=f"finish: {ctx.span.name}",
                )
                return finish
        return then(state) if callable(then) else then

    return route
