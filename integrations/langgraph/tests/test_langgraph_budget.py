"""Budgets inside real graphs: refusals before the call, and graceful degradation the graph can act on."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from agentcost_langgraph import BudgetedChatModel, CostCallbackHandler, finish_when_low, optional_tool, priced_tool
from agentcost_langgraph.testing import ScriptedChatModel, reply
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, create_react_agent, tools_condition

import agentcost
from agentcost import Budget, BudgetExceeded, CustomPrice, DegradePolicy, PriceBook, Usage

# $10 / $40 per million tokens for "big", $1 / $4 for "small": easy arithmetic
BOOK = PriceBook(
    models={
        "big": CustomPrice(input_mtok=Decimal(10), output_mtok=Decimal(40)),
        "small": CustomPrice(input_mtok=Decimal(1), output_mtok=Decimal(4)),
    }
)
BIG_OUT = Decimal("0.00004")
SMALL_OUT = Decimal("0.000004")

searches: list[str] = []


@tool
def web_search(query: str) -> str:
    """Search the web (a paid API)."""
    searches.append(query)
    return f"results for {query}"


@tool
def lookup(key: str) -> str:
    """Look a key up in the local notes (free)."""
    return f"notes on {key}"


def test_the_run_finishes_within_its_budget_by_degrading() -> None:
    """Call 1 as asked; the optional paid search skipped; call 2 swapped to the cheaper model; call 3 swapped and
    capped; then the router finishes early. Each step is in the tree with its reason, and the run stays in budget."""
    searches.clear()
    big = ScriptedChatModel(
        script=[reply(usage=Usage(input_tokens=10, output_tokens=1_000), tool_calls=[("web_search", {"query": "q"})])],
        model="big",
    )
    small = ScriptedChatModel(
        script=[
            reply(usage=Usage(input_tokens=2_000, output_tokens=1_000), tool_calls=[("lookup", {"key": "k"})]),
            reply("short answer", usage=Usage(input_tokens=10, output_tokens=1_000)),
        ],
        model="small",
    )
    model = BudgetedChatModel(model=big, fallbacks={"small": small})
    search = optional_tool(web_search, cost="0.02")
    free_lookup = priced_tool(lookup, cost=0)
    bound = model.bind_tools([search, free_lookup])

    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [bound.invoke(state["messages"], max_tokens=1_000)]})
    graph.add_node("tools", ToolNode([search, free_lookup]))
    graph.add_node("wrap_up", lambda state: {"messages": []})
    graph.add_edge(START, "agent")
    graph.add_conditional_edges(
        "agent", finish_when_low(below="0.001", then=tools_condition, finish="wrap_up"), ["tools", "wrap_up", END]
    )
    graph.add_edge("tools", "agent")
    graph.add_edge("wrap_up", END)
    budget = Budget(max_cost=Decimal("0.05"), policy=DegradePolicy(min_output_tokens=300))

    with agentcost.run("request", budget=budget, pricing=BOOK) as ctx:
        result = graph.compile().invoke(
            {"messages": [HumanMessage("question")]}, config={"callbacks": [CostCallbackHandler(ctx)]}
        )
    tree = ctx.tree
    assert tree.total_cost <= Decimal("0.05")

    # the model swap and the cap reached the models: the request, not only the tree
    assert big.calls == 1
    assert small.calls == 2
    assert big.requests[0]["max_tokens"] == 1_000
    assert small.requests[0]["max_tokens"] == 1_000
    capped = small.requests[1]["max_tokens"]
    assert 300 <= capped < 1_000

    calls = tree.find(kind="llm")
    assert [(span.model, span.requested_model, span.status) for span in calls] == [
        ("big", None, "ok"),
        ("small", "big", "degraded"),
        ("small", "big", "degraded"),
    ]
    assert calls[1].notes[0].startswith("model big -> small: ")
    assert calls[2].notes[0].startswith("model big -> small: ")
    assert calls[2].notes[1].startswith(f"max_output_tokens 1000 -> {capped}: ")
    assert calls[2].usage.output_tokens == capped

    # the optional search was skipped before it ran, and the model was told why
    assert searches == []
    (skipped,) = tree.find(kind="tool", name="web_search")
    assert (skipped.status, skipped.cost) == ("skipped", Decimal(0))
    assert skipped.notes[0].startswith("skipped: budget (run 'request' has $0.0099 cost left")
    tool_answers = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert str(tool_answers[0].content).startswith("skipped: budget")
    (free,) = tree.find(kind="tool", name="lookup")
    assert (free.status, free.cost) == ("ok", Decimal(0))

    # the early finish
    (finish,) = tree.find(name="finish: agent")
    assert finish.status == "skipped"
    assert finish.notes[0].startswith("finish early: budget ($")
    assert [node.name for node in tree.find(kind="agent")][-1] == "wrap_up"
    assert [event.kind for event in tree.events if event.kind == "degraded"] == ["degraded"] * 4


def test_a_hard_budget_stops_the_react_agent_before_the_call_that_would_cross_it() -> None:
    """LangGraph's prebuilt ReAct agent with a plain model: the third call does not fit and is never made."""
    model = ScriptedChatModel(
        script=[reply(usage=Usage(input_tokens=50, output_tokens=500), tool_calls=[("lookup", {"key": "k"})])],
        model="big",
    )
    with pytest.warns(DeprecationWarning, match="create_react_agent has been moved"):
        agent = create_react_agent(model, [priced_tool(lookup, cost=0)])
    # a call with no max_tokens holds the policy's default 1024 output tokens (~$0.041) and spends $0.0205: two
    # calls fit in $0.07, a third does not
    budget = Budget(max_cost=Decimal("0.07"))
    with (
        agentcost.run("request", budget=budget, pricing=BOOK) as ctx,
        pytest.raises(BudgetExceeded) as refused,
    ):
        agent.invoke(
            {"messages": [HumanMessage("q")]}, config={"callbacks": [CostCallbackHandler(ctx)], "recursion_limit": 50}
        )
    assert model.calls == 2
    assert [span.status for span in ctx.tree.find(kind="llm")] == ["ok", "ok"]
    assert ctx.tree.total_cost == 2 * (Decimal(50) * Decimal("0.00001") + 500 * BIG_OUT)
    assert refused.value.metric == "cost"
    assert refused.value.node == "run 'request'"
    assert [event.kind for event in ctx.tree.events][-1] == "exceeded"
    agent_spans = [span for span in ctx.tree.find(kind="agent") if span.name == "agent"]
    assert agent_spans[-1].status == "error"  # the node whose call was refused


def test_a_call_limit_refuses_the_call_not_the_tool() -> None:
    model = ScriptedChatModel(
        script=[reply(usage=Usage(input_tokens=5, output_tokens=5), tool_calls=[("lookup", {"key": "k"})])],
        model="small",
    )
    with pytest.warns(DeprecationWarning, match="create_react_agent has been moved"):
        agent = create_react_agent(model, [priced_tool(lookup, cost=0)])
    with (
        agentcost.run("request", budget=Budget(max_calls=3), pricing=BOOK) as ctx,
        pytest.raises(BudgetExceeded, match="calls"),
    ):
        agent.invoke({"messages": [HumanMessage("q")]}, config={"callbacks": [CostCallbackHandler(ctx)]})
    # model, tool, model: the third call (the second model call's tool) fills the limit; the next model call is refused
    assert model.calls == 2
    assert len(ctx.tree.find(kind="tool")) == 1


def test_finish_early_policy_ends_the_react_loop_with_a_final_answer() -> None:
    model = ScriptedChatModel(
        script=[reply(usage=Usage(input_tokens=50, output_tokens=500), tool_calls=[("lookup", {"key": "k"})])],
        model="big",
    )
    wrapped = BudgetedChatModel(model=model)
    with pytest.warns(DeprecationWarning, match="create_react_agent has been moved"):
        agent = create_react_agent(wrapped, [priced_tool(lookup, cost=0)])
    budget = Budget(max_cost=Decimal("0.07"), policy=DegradePolicy(finish_early=True, cap_output=False))
    with agentcost.run("request", budget=budget, pricing=BOOK) as ctx:
        result = agent.invoke({"messages": [HumanMessage("q")]}, config={"callbacks": [CostCallbackHandler(ctx)]})
    assert model.calls == 2
    final = result["messages"][-1]
    assert "budget for this task is used up" in str(final.content)
    assert not final.tool_calls
    (finish,) = ctx.tree.find(kind="custom")
    assert (finish.name, finish.status) == ("finish: big", "skipped")
    assert finish.notes[0].startswith("finish early: budget (run 'request' has $0.029 cost left")
    assert len(ctx.tree.find(kind="llm")) == 2


def test_per_node_budgets_from_configuration() -> None:
    cheap = ScriptedChatModel(script=[reply("ok", usage=Usage(input_tokens=10, output_tokens=100))], model="small")
    costly = ScriptedChatModel(script=[reply("ok", usage=Usage(input_tokens=10, output_tokens=1_000))], model="big")
    graph = StateGraph(MessagesState)
    graph.add_node("researcher", lambda state: {"messages": [cheap.invoke(state["messages"], max_tokens=100)]})
    graph.add_node("writer", lambda state: {"messages": [costly.invoke(state["messages"], max_tokens=1_000)]})
    graph.add_edge(START, "researcher")
    graph.add_edge("researcher", "writer")
    handler_budgets = {"writer": Budget(max_cost=Decimal("0.01"))}
    with agentcost.run("request", pricing=BOOK) as ctx, pytest.raises(BudgetExceeded) as refused:
        graph.compile().invoke(
            {"messages": [HumanMessage("q")]}, config={"callbacks": [CostCallbackHandler(ctx, budgets=handler_budgets)]}
        )
    assert refused.value.node == "agent 'writer'"
    assert (cheap.calls, costly.calls) == (1, 0)
    (writer,) = ctx.tree.find(name="writer")
    assert writer.status == "error"
    assert writer.total_cost == 0


def test_unpriced_tools_are_refused_under_a_hard_cost_budget() -> None:
    model = ScriptedChatModel(
        script=[reply(usage=Usage(input_tokens=5, output_tokens=5), tool_calls=[("lookup", {"key": "k"})])],
        model="small",
    )
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"], max_tokens=10)]})
    graph.add_node("tools", ToolNode([lookup]))
    graph.add_edge(START, "agent")
    graph.add_edge("agent", "tools")
    with (
        agentcost.run("request", budget=Budget(max_cost=Decimal(1)), pricing=BOOK) as ctx,
        pytest.raises(BudgetExceeded, match="no price"),
    ):
        graph.compile().invoke({"messages": [HumanMessage("q")]}, config={"callbacks": [CostCallbackHandler(ctx)]})
    assert ctx.tree.find(kind="tool") == []


def test_budgeted_model_streams_and_runs_async() -> None:
    """Admission and degradation apply the same way on the streaming and async paths."""

    def models() -> tuple[ScriptedChatModel, ScriptedChatModel, BudgetedChatModel]:
        big = ScriptedChatModel(
            script=[reply("a" * 40, usage=Usage(input_tokens=10, output_tokens=1_000))], model="big"
        )
        small = ScriptedChatModel(
            script=[reply("b" * 40, usage=Usage(input_tokens=10, output_tokens=1_000))], model="small", stream_chunks=4
        )
        return big, small, BudgetedChatModel(model=big, fallbacks={"small": small})

    budget = Budget(max_cost=Decimal("0.01"), policy=DegradePolicy(min_output_tokens=900))
    big, small, wrapped = models()
    with agentcost.run("request", budget=budget, pricing=BOOK) as ctx:
        chunks = list(wrapped.stream("q", max_tokens=1_000, config={"callbacks": [CostCallbackHandler(ctx)]}))
    assert len(chunks) >= 4
    assert (big.calls, small.calls) == (0, 1)
    (llm,) = ctx.tree.find(kind="llm")
    assert (llm.model, llm.status, llm.cost) == ("small", "degraded", Decimal("0.00001") + 1_000 * SMALL_OUT)

    async def main() -> tuple[int, int, str | None]:
        big, small, wrapped = models()
        with agentcost.run("request", budget=budget, pricing=BOOK) as ctx:
            await wrapped.ainvoke("q", max_tokens=1_000, config={"callbacks": [CostCallbackHandler(ctx)]})
        (llm,) = ctx.tree.find(kind="llm")
        return big.calls, small.calls, llm.model

    assert asyncio.run(main()) == (0, 1, "small")


def test_without_a_handler_the_wrapper_calls_the_model_as_is() -> None:
    big = ScriptedChatModel(script=[reply("x", usage=Usage(input_tokens=1, output_tokens=1))], model="big")
    wrapped = BudgetedChatModel(model=big, fallbacks={"small": big})
    assert wrapped.invoke("q", max_tokens=7).content == "x"
    assert big.requests == [{"max_tokens": 7}]
    assert wrapped.model_name == "big"


def test_an_unbudgeted_run_admits_everything_without_holding() -> None:
    big = ScriptedChatModel(script=[reply("x", usage=Usage(input_tokens=1, output_tokens=1))], model="big")
    wrapped = BudgetedChatModel(model=big)
    with agentcost.run("request", pricing=BOOK) as ctx:
        wrapped.invoke("q", config={"callbacks": [CostCallbackHandler(ctx)]})
    (llm,) = ctx.tree.find(kind="llm")
    assert (llm.status, llm.cost) == ("ok", Decimal("0.00001") + BIG_OUT)
    assert big.requests == [{}]


def test_a_tool_the_budget_cannot_pay_never_runs_even_when_the_policy_finishes_early() -> None:
    """A plain tool cannot be skipped: under ``finish_early`` it is refused, not run and marked skipped. An optional
    tool answers with the reason instead of running."""
    searches.clear()
    budget = Budget(max_cost=Decimal("0.01"), policy=DegradePolicy(finish_early=True, skip_optional=False))

    def config_of(ctx: agentcost.CostContext) -> RunnableConfig:
        return {"callbacks": [CostCallbackHandler(ctx)]}

    with agentcost.run("request", budget=budget, pricing=BOOK) as ctx:
        with pytest.raises(BudgetExceeded, match="tool web_search"):
            priced_tool(web_search, cost="0.02").invoke({"query": "x"}, config=config_of(ctx))
        answer = optional_tool(web_search, cost="0.02").invoke({"query": "y"}, config=config_of(ctx))
    assert searches == []
    assert str(answer).startswith("finish early: budget (run 'request' has $0.01 cost left")
    (marker,) = ctx.tree.find(kind="tool")
    assert (marker.status, marker.cost) == ("skipped", Decimal(0))
