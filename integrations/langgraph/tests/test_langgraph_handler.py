"""CostCallbackHandler on real LangGraph graphs: the tree mirrors the graph, totals are exact, nothing is lost."""

from __future__ import annotations

import asyncio
import operator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Annotated, Any, TypedDict

import pytest
from agentcost_langgraph import CostCallbackHandler, node_context, priced_tool
from agentcost_langgraph.testing import ScriptedChatModel, reply
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ContextThreadPoolExecutor
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Send

import agentcost
from agentcost import CostTree, PriceBook, Usage
from agentcost.testing import tree_shape

BOOK = PriceBook(tools={"search": Decimal("0.005")})


def price(model: str, usage: Usage, provider: str = "openai") -> Decimal:
    cost = BOOK.price(model, usage, provider=provider)
    assert cost is not None
    return cost


@tool
def search(query: str) -> str:
    """Search the web."""
    return f"results for {query}"


def react_subgraph(name: str, model: ScriptedChatModel) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A tool-calling agent: model -> tools -> model ... until the model stops calling tools."""
    bound = model.bind_tools([search])
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [bound.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode([search]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(name=name)


class SupervisorState(MessagesState):
    facts: Annotated[list[str], operator.add]


def supervisor_graph(
    supervisor: ScriptedChatModel, researcher: ScriptedChatModel, writer: ScriptedChatModel, checker: ScriptedChatModel
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """A supervisor, two sub-agent subgraphs with tools, and a parallel fan-out of fact checks (``Send``)."""

    def plan(state: SupervisorState) -> dict[str, Any]:
        return {"messages": [supervisor.invoke(state["messages"])]}

    def fan_out(state: SupervisorState) -> list[Send]:
        return [Send("check", {"claim": claim}) for claim in ("a", "b", "c")]

    def check(state: dict[str, str]) -> dict[str, Any]:
        answer = checker.invoke([HumanMessage(f"check {state['claim']}")])
        return {"facts": [str(answer.content)]}

    graph = StateGraph(SupervisorState)
    graph.add_node("supervisor", plan)
    graph.add_node("research_team", react_subgraph("researcher", researcher))
    graph.add_node("check", check)
    graph.add_node("writing_team", react_subgraph("writer", writer))
    graph.add_edge(START, "supervisor")
    graph.add_edge("supervisor", "research_team")
    graph.add_conditional_edges("research_team", fan_out, ["check"])
    graph.add_edge("check", "writing_team")
    graph.add_edge("writing_team", END)
    return graph.compile(name="supervisor")


SUPERVISOR_USAGE = Usage(input_tokens=400, output_tokens=60)
RESEARCH_USAGES = (Usage(input_tokens=1_000, output_tokens=40), Usage(input_tokens=1_600, output_tokens=300))
WRITER_USAGE = Usage(input_tokens=5_000, output_tokens=900, cache_read_tokens=4_000, cache_write_tokens=500)
CHECK_USAGE = Usage(input_tokens=200, output_tokens=10)


def models() -> tuple[ScriptedChatModel, ScriptedChatModel, ScriptedChatModel, ScriptedChatModel]:
    supervisor = ScriptedChatModel(script=[reply("plan", usage=SUPERVISOR_USAGE)], model="gpt-4o")
    researcher = ScriptedChatModel(
        script=[
            reply(usage=RESEARCH_USAGES[0], tool_calls=[("search", {"query": "agent costs"})]),
            reply("found it", usage=RESEARCH_USAGES[1]),
        ],
        model="gpt-4o-mini",
    )
    writer = ScriptedChatModel(
        script=[reply("the answer", usage=WRITER_USAGE)], model="claude-sonnet-4-5", provider="anthropic"
    )
    checker = ScriptedChatModel(script=[reply("true", usage=CHECK_USAGE)], model="gpt-4o-mini")
    return supervisor, researcher, writer, checker


def expected_supervisor_total() -> Decimal:
    return (
        price("gpt-4o", SUPERVISOR_USAGE)
        + price("gpt-4o-mini", RESEARCH_USAGES[0])
        + price("gpt-4o-mini", RESEARCH_USAGES[1])
        + Decimal("0.005")  # the search tool
        + 3 * price("gpt-4o-mini", CHECK_USAGE)
        + price("claude-sonnet-4-5", WRITER_USAGE, "anthropic")
    )


def run_graph(graph: CompiledStateGraph[Any, Any, Any, Any], **config: Any) -> tuple[CostTree, CostCallbackHandler]:
    with agentcost.run("request", attrs={"team": "support"}, pricing=BOOK) as ctx:
        handler = CostCallbackHandler(ctx)
        run_config: RunnableConfig = {"callbacks": [handler], **config}  # type: ignore[typeddict-item]
        graph.invoke({"messages": [HumanMessage("question")]}, config=run_config)
    return ctx.tree, handler


def test_supervisor_tree_mirrors_the_graph_and_total_is_exact() -> None:
    tree, handler = run_graph(supervisor_graph(*models()))
    assert tree.total_cost == expected_supervisor_total()
    assert tree.unpriced == 0
    llm = ("llm gpt-4o-mini", ())
    assert tree_shape(tree) == (
        "run request",
        (
            (
                "agent supervisor",
                (
                    ("agent supervisor", (("llm gpt-4o", ()),)),
                    (
                        "agent research_team",
                        (("agent agent", (llm,)), ("agent tools", (("tool search", ()),)), ("agent agent", (llm,))),
                    ),
                    ("agent check", (llm,)),
                    ("agent check", (llm,)),
                    ("agent check", (llm,)),
                    ("agent writing_team", (("agent agent", (("llm claude-sonnet-4-5", ()),)),)),
                ),
            ),
        ),
    )
    # the compiled subgraphs' names are the agents their nodes' spend is attributed to
    by_agent = tree.cost_by("agent")
    assert by_agent["researcher"].cost == price("gpt-4o-mini", RESEARCH_USAGES[0]) + price(
        "gpt-4o-mini", RESEARCH_USAGES[1]
    ) + Decimal("0.005")
    assert by_agent["writer"].cost == price("claude-sonnet-4-5", WRITER_USAGE, "anthropic")
    # the handler forgets every run once it ends
    assert (handler._nodes, handler._calls, handler._owned, handler._names) == ({}, {}, {}, {})
    assert handler.problems == []
    assert all(span.ended_at is not None for span in tree)


def test_usage_details_and_served_model_are_recorded() -> None:
    _, _, writer, _ = models()
    writer.served_model = "claude-sonnet-4-5-20250929"
    tree, _ = run_graph(react_subgraph("writer", writer))
    (llm,) = tree.find(kind="llm")
    assert llm.usage == WRITER_USAGE
    assert llm.model == "claude-sonnet-4-5-20250929"
    assert llm.provider == "anthropic"
    assert llm.cost == price("claude-sonnet-4-5", WRITER_USAGE, "anthropic")


def test_attribution_from_metadata_and_tags() -> None:
    supervisor, *_ = models()
    graph = StateGraph(MessagesState)
    graph.add_node("plan", lambda state: {"messages": [supervisor.invoke(state["messages"])]})
    graph.add_edge(START, "plan")
    tree, handler = run_graph(
        graph.compile(),
        metadata={"user_id": 42, "feature": "answers", "team": "other", "ignored": "x"},
        tags=["tenant:acme", "nothing-here"],
        configurable={"thread_id": "t-9"},
    )
    (llm,) = tree.find(kind="llm")
    assert dict(llm.attrs) == {
        "team": "support",  # inherited from the run: never silently replaced
        "user": "42",
        "feature": "answers",
        "tenant": "acme",
        "conversation": "t-9",
    }
    assert handler.problems == ["attribute team='other' ignored: inherited team='support'"]


def test_custom_attribution_mapping() -> None:
    supervisor, *_ = models()
    with agentcost.run("request") as ctx:
        supervisor.invoke(
            "hi",
            config={"callbacks": [CostCallbackHandler(ctx, attribution={"org": "team"})], "metadata": {"org": "x"}},
        )
    (llm,) = ctx.tree.find(kind="llm")
    assert llm.attrs == {}  # a bare model call: no chain span to carry the metadata, recorded on the run itself
    graph = StateGraph(MessagesState)
    graph.add_node("plan", lambda state: {"messages": [supervisor.invoke(state["messages"])]})
    graph.add_edge(START, "plan")
    with agentcost.run("request") as ctx:
        graph.compile().invoke(
            {"messages": []},
            config={"callbacks": [CostCallbackHandler(ctx, attribution={"org": "team"})], "metadata": {"org": "x"}},
        )
    assert {span.attrs.get("team") for span in ctx.tree.find(kind="llm")} == {"x"}


def test_streaming_records_the_same_cost_as_invoke() -> None:
    supervisor, researcher, writer, checker = models()
    for model in (supervisor, researcher, writer, checker):
        model.stream_chunks = 5
    graph = supervisor_graph(supervisor, researcher, writer, checker)
    with agentcost.run("request", pricing=BOOK) as ctx:
        chunks = list(
            graph.stream(
                {"messages": [HumanMessage("q")]},
                config={"callbacks": [CostCallbackHandler(ctx)]},
                stream_mode="messages",
            )
        )
    assert len(chunks) > 7  # token chunks really streamed
    assert ctx.tree.total_cost == expected_supervisor_total()


def test_async_invoke_astream_and_astream_events() -> None:
    async def main() -> list[Decimal]:
        totals = []
        for mode in ("ainvoke", "astream", "astream_events"):
            graph = supervisor_graph(*models())
            with agentcost.run("request", pricing=BOOK) as ctx:
                config: RunnableConfig = {"callbacks": [CostCallbackHandler(ctx)]}
                inputs = {"messages": [HumanMessage("q")]}
                if mode == "ainvoke":
                    await graph.ainvoke(inputs, config=config)
                elif mode == "astream":
                    async for _ in graph.astream(inputs, config=config):
                        pass
                else:
                    async for _ in graph.astream_events(inputs, config=config, version="v2"):
                        pass
            totals.append(ctx.tree.total_cost)
        return totals

    assert asyncio.run(main()) == [expected_supervisor_total()] * 3


def test_a_nested_graph_invoked_inside_a_node_lands_under_that_node() -> None:
    _, researcher, _, _ = models()
    inner = react_subgraph("researcher", researcher)

    def delegate(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        result = inner.invoke({"messages": state["messages"]}, config)
        return {"messages": result["messages"][-1:]}

    graph = StateGraph(MessagesState)
    graph.add_node("delegate", delegate)
    graph.add_edge(START, "delegate")
    tree, _ = run_graph(graph.compile(name="boss"))
    llm = ("llm gpt-4o-mini", ())
    assert tree_shape(tree) == (
        "run request",
        (
            (
                "agent boss",
                (
                    (
                        "agent delegate",
                        (("agent agent", (llm,)), ("agent tools", (("tool search", ()),)), ("agent agent", (llm,))),
                    ),
                ),
            ),
        ),
    )
    (delegate_span,) = tree.find(name="delegate")
    assert delegate_span.attrs["agent"] == "boss"
    assert {span.attrs["agent"] for span in tree.find(kind="llm")} == {"researcher"}


def test_model_calls_from_a_thread_pool_inside_a_node() -> None:
    """The node hands its config to the worker threads (or uses LangChain's context-copying executor): the calls
    land on the node. Without it LangChain's callbacks do not reach the thread at all."""
    checker = ScriptedChatModel(script=[reply("ok", usage=CHECK_USAGE)], model="gpt-4o-mini")

    def fan(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=3) as pool:
            explicit = list(pool.map(lambda claim: checker.invoke(claim, config), ["a", "b", "c"]))
        with ContextThreadPoolExecutor(max_workers=2) as pool:
            copied = list(pool.map(checker.invoke, ["d", "e"]))
        with ThreadPoolExecutor(max_workers=1) as pool:
            lost = list(pool.map(checker.invoke, ["f"]))  # no config, no context: LangChain loses the callbacks
        return {"messages": [AIMessage(str(len(explicit + copied + lost)))]}

    graph = StateGraph(MessagesState)
    graph.add_node("fan", fan)
    graph.add_edge(START, "fan")
    tree, _ = run_graph(graph.compile())
    (node,) = tree.find(name="fan")
    assert [child.kind for child in node.children] == ["llm"] * 5
    assert node.total_cost == 5 * price("gpt-4o-mini", CHECK_USAGE)
    assert checker.calls == 6


def test_failed_calls_and_retries_are_one_span_each() -> None:
    class RateLimited(Exception):
        status_code = 429

    flaky = ScriptedChatModel(
        script=[RateLimited("slow down"), RuntimeError("connection reset"), reply("ok", usage=CHECK_USAGE)],
        model="gpt-4o-mini",
    )
    retrying = flaky.with_retry(stop_after_attempt=3, wait_exponential_jitter=False)
    graph = StateGraph(MessagesState)
    graph.add_node("ask", lambda state: {"messages": [retrying.invoke(state["messages"])]})
    graph.add_edge(START, "ask")
    tree, _ = run_graph(graph.compile())
    attempts = tree.find(kind="llm")
    assert [span.status for span in attempts] == ["error", "error", "ok"]
    rate_limited, reset, ok = attempts
    assert (rate_limited.cost, rate_limited.notes) == (Decimal(0), ("failed before generating: HTTP 429",))
    assert rate_limited.error == "RateLimited: slow down"
    assert (reset.cost, reset.notes) == (None, ("no usage reported",))  # unknown is not zero
    assert ok.cost == price("gpt-4o-mini", CHECK_USAGE)
    assert tree.unpriced == 1
    assert flaky.calls == 3


def test_an_interrupted_stream_is_charged_for_what_it_reported() -> None:
    class Broken(ScriptedChatModel):
        def _stream(self, *args: Any, **kwargs: Any) -> Any:
            for number, chunk in enumerate(super()._stream(*args, **kwargs)):
                yield chunk
                if number == 2:
                    raise ConnectionError("stream cut")

    model = Broken(script=[reply("abcdefghij", usage=CHECK_USAGE)], model="gpt-4o-mini", stream_chunks=3)
    with agentcost.run("request") as ctx, pytest.raises(ConnectionError):
        for _ in model.stream("hi", config={"callbacks": [CostCallbackHandler(ctx)]}):
            pass
    (llm,) = ctx.tree.find(kind="llm")
    assert llm.status == "error"
    assert llm.usage == CHECK_USAGE
    assert llm.cost == price("gpt-4o-mini", CHECK_USAGE)


def test_usage_is_never_dropped_for_lack_of_a_model_name() -> None:
    """LangChain's UsageMetadataCallbackHandler records nothing when the response names no model."""
    anonymous = ScriptedChatModel(script=[reply("x", usage=CHECK_USAGE)], model="gpt-4o-mini", report_model=False)
    anonymous.model = ""  # no ls_model_name either
    with agentcost.run("request") as ctx:
        anonymous.invoke("hi", config={"callbacks": [CostCallbackHandler(ctx)]})
    (llm,) = ctx.tree.find(kind="llm")
    assert llm.usage == CHECK_USAGE
    assert llm.cost is None
    assert llm.name == "unknown model"
    assert llm.provider == "openai"  # kept, though nothing could be priced
    assert ctx.tree.total_usage().input_tokens == CHECK_USAGE.input_tokens


def test_model_name_from_invocation_params_when_the_response_has_none() -> None:
    model = ScriptedChatModel(script=[reply("x", usage=CHECK_USAGE)], model="gpt-4o-mini", report_model=False)
    with agentcost.run("request") as ctx:
        model.invoke("hi", config={"callbacks": [CostCallbackHandler(ctx)]})
    (llm,) = ctx.tree.find(kind="llm")
    assert llm.model == "gpt-4o-mini"
    assert llm.cost == price("gpt-4o-mini", CHECK_USAGE)


def test_malformed_usage_is_kept_visible_not_dropped() -> None:
    bad = AIMessage("x", usage_metadata={"input_tokens": -5, "output_tokens": 3, "total_tokens": -2})
    model = ScriptedChatModel(script=[bad], model="gpt-4o-mini")
    with agentcost.run("request") as ctx:
        handler = CostCallbackHandler(ctx)
        model.invoke("hi", config={"callbacks": [handler]})
    (llm,) = ctx.tree.find(kind="llm")
    assert llm.cost is None
    assert "malformed usage_metadata" in llm.notes[0]
    assert len(handler.problems) == 1
    assert "malformed usage_metadata" in handler.problems[0]


def test_a_tool_that_calls_a_model_is_a_container() -> None:
    expert = ScriptedChatModel(script=[reply("expert view", usage=CHECK_USAGE)], model="gpt-4o-mini")

    @tool
    def ask_expert(question: str) -> str:
        """Ask the expert model."""
        # LangChain hands the tool's own run to calls made inside it through its context (an explicit ``config``
        # parameter would be the caller's config, and the call would land beside the tool instead)
        return str(expert.invoke(question).content)

    priced = priced_tool(ask_expert, cost="0.01")
    caller = ScriptedChatModel(
        script=[
            reply(usage=CHECK_USAGE, tool_calls=[("ask_expert", {"question": "q"})]),
            reply("done", usage=CHECK_USAGE),
        ],
        model="gpt-4o-mini",
    )
    bound = caller.bind_tools([priced])
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [bound.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode([priced]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    tree, _ = run_graph(graph.compile())
    (container,) = [span for span in tree.find(kind="tool", name="ask_expert") if span.children]
    assert [(child.kind, child.name) for child in container.children] == [
        ("llm", "gpt-4o-mini"),
        ("tool", "ask_expert"),
    ]
    assert container.total_cost == price("gpt-4o-mini", CHECK_USAGE) + Decimal("0.01")
    assert tree.total_cost == 3 * price("gpt-4o-mini", CHECK_USAGE) + Decimal("0.01")


def test_retrievers_and_costs_recorded_in_a_node() -> None:
    class Docs(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            return [Document(page_content=query)]

    retriever = Docs(metadata={"agentcost_cost": "0.0003"})

    def lookup(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        docs = retriever.invoke("q", config)
        ctx = node_context(config)
        assert ctx is not None
        ctx.record("embedding", "embed query", model="text-embedding-3-small", usage=Usage(input_tokens=1000))
        return {"messages": [AIMessage(docs[0].page_content)]}

    graph = StateGraph(MessagesState)
    graph.add_node("lookup", lookup)
    graph.add_edge(START, "lookup")
    tree, _ = run_graph(graph.compile())
    (node,) = tree.find(name="lookup")
    retrieval, embedding = node.children
    assert (retrieval.kind, retrieval.cost, retrieval.cost_source) == ("retrieval", Decimal("0.0003"), "manual")
    assert (embedding.kind, embedding.cost) == ("embedding", BOOK.price("text-embedding-3-small", Usage(1000)))


def test_a_failing_node_ends_its_span_as_an_error() -> None:
    def broken(state: MessagesState) -> dict[str, Any]:
        raise ValueError("bad state")

    graph = StateGraph(MessagesState)
    graph.add_node("broken", broken)
    graph.add_edge(START, "broken")
    with agentcost.run("request") as ctx, pytest.raises(ValueError, match="bad state"):
        graph.compile().invoke({"messages": []}, config={"callbacks": [CostCallbackHandler(ctx)]})
    (node,) = ctx.tree.find(name="broken")
    assert (node.status, node.error) == ("error", "ValueError: bad state")


def test_the_handler_rejects_a_non_context() -> None:
    with pytest.raises(TypeError, match="CostContext"):
        CostCallbackHandler("run")  # type: ignore[arg-type]


usages = st.builds(
    Usage,
    input_tokens=st.integers(0, 200_000),
    output_tokens=st.integers(0, 20_000),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branches=st.lists(st.lists(usages, min_size=1, max_size=3), min_size=1, max_size=4))
def test_parallel_branches_total_is_the_exact_sum_of_reported_usage(branches: list[list[Usage]]) -> None:
    """Whatever the fan-out and the usage, the tree's total is the exact sum of every call's priced usage."""
    scripts = [
        ScriptedChatModel(script=[reply("x", usage=usage) for usage in calls], model="gpt-4o-mini")
        for calls in branches
    ]

    class Branch(TypedDict):
        index: int

    def branch(state: Branch) -> dict[str, Any]:
        model = scripts[state["index"]]
        for _ in branches[state["index"]]:
            model.invoke("go")
        return {}

    graph = StateGraph(MessagesState)
    graph.add_node("branch", branch)
    graph.add_conditional_edges(START, lambda state: [Send("branch", {"index": i}) for i in range(len(branches))])
    tree, _ = run_graph(graph.compile())
    expected = sum((price("gpt-4o-mini", usage) for calls in branches for usage in calls), Decimal(0))
    assert tree.total_cost == expected
    assert sum(span.total_cost for span in tree.find(name="branch")) == expected
    assert len(tree.find(kind="llm")) == sum(len(calls) for calls in branches)
