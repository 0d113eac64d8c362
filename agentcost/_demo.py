"""The ``agentcost demo`` scenario: one request, a planner and two sub-agents, priced exactly, no network."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import agentcost
from agentcost._budget import Budget, DegradePolicy
from agentcost._context import CostContext
from agentcost._pricing import CustomPrice, PriceBook
from agentcost._tree import CostTree
from agentcost._usage import Usage
from agentcost.testing import ScriptedModel

__all__ = ["demo_price_book", "run_demo"]


def demo_price_book() -> PriceBook:
    """genai-prices' catalog, a self-hosted embedding model and two priced tools."""
    book = PriceBook(
        models={
            "self-hosted/bge-large": CustomPrice(
                per_request=Decimal("0.00002"), units={"gpu_seconds": Decimal("0.0006")}
            )
        },
        tools={"web_search": Decimal("0.005"), "fetch_page": Decimal("0.0004")},
    )
    return book


def _research(ctx: CostContext, question: str) -> list[str]:
    planner_model = ScriptedModel("gpt-4o-mini", provider="openai", usage=Usage(input_tokens=850, output_tokens=120))
    planner_model(ctx, f"search queries for: {question}")
    queries = ["agent cost attribution", "llm budget enforcement"]

    def search(query: str) -> str:
        # Worker threads get the context explicitly: no thread-local lookup can lose the attribution.
        with ctx.child(f"search: {query}", kind="agent", attrs={"query_kind": "web"}) as step:
            step.record_tool("web_search")
            step.record_tool("fetch_page")
            step.record(
                "embedding",
                "embed page",
                model="bge-large",
                provider="self-hosted",
                usage=Usage(input_tokens=2048, units={"gpu_seconds": Decimal("0.35")}),
            )
            return f"notes on {query}"

    with ThreadPoolExecutor(max_workers=2) as pool:
        notes = list(pool.map(search, queries))
    reader = ScriptedModel(
        "claude-sonnet-4-5",
        provider="anthropic",
        usage=Usage(input_tokens=12_400, output_tokens=900, cache_read_tokens=8_000),
    )
    reader(ctx, "summarise the pages")
    return notes


def _write(ctx: CostContext, notes: list[str]) -> str:
    drafter = ScriptedModel("gpt-4o", provider="openai", usage=Usage(input_tokens=3_200, output_tokens=1_100))
    draft = drafter(ctx, "draft the answer from: " + "; ".join(notes))
    # The writer's budget cannot pay for a full critique: the guard caps the critic's output tokens to what the
    # remaining money pays for, before the call is made.
    with ctx.guard(model="o3-mini", provider="openai", input_tokens=4_300, max_output_tokens=2_600) as decision:
        output = min(decision.max_output_tokens or 2_600, 2_600)
        decision.record(usage=Usage(input_tokens=4_300, output_tokens=output, reasoning_tokens=output * 7 // 10))
    # An optional fact-check tool the remaining budget cannot pay for: skipped, and the model is told so.
    with ctx.guard_tool("fact_check", cost=Decimal("0.002"), optional=True) as check:
        if check.admitted:
            check.record()
    # an internal model with no price anywhere: counted as unpriced, never as free
    ctx.record_llm(model="acme-guard-7b", provider="acme", usage=Usage(input_tokens=1_400, output_tokens=10))
    return draft


def run_demo(*, book: PriceBook | None = None) -> CostTree:
    """Run the demo request and return its cost tree."""
    book = book or demo_price_book()
    attribution = {"team": "support", "feature": "answer-bot", "user": "u-1042", "conversation": "c-77"}
    with (
        agentcost.run("answer customer question", attrs=attribution, pricing=book) as request,
        request.child("planner", attrs={"agent": "planner"}) as planner,
    ):
        planner_llm = ScriptedModel("gpt-4o", provider="openai", usage=Usage(input_tokens=1_500, output_tokens=200))
        planner_llm(planner, "plan")
        with planner.child("researcher", attrs={"agent": "researcher"}) as researcher:
            notes = _research(researcher, "how do agents overspend?")
        writer_budget = Budget(max_cost=Decimal("0.03"), policy=DegradePolicy(min_output_tokens=200))
        with planner.child("writer", attrs={"agent": "writer"}, budget=writer_budget) as writer:
            _write(writer, notes)
    return request.tree
