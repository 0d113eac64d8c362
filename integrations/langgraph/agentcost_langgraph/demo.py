"""The ``agentcost demo`` scenario as a real LangGraph graph, costed through this adapter (no network).

The same request as :mod:`agentcost._demo`, with the same calls and usage, so the same total: a ``planner`` graph
that plans, then runs its ``researcher`` subgraph (a planning call, two searches fanned out with ``Send``, each running
two priced tools and recording an embedding, then a reader call) and its ``writer`` subgraph under a $0.03 budget (a
drafter, an o3-mini critic whose output the budget caps, an optional fact-check tool the budget skips), and has the
answer checked by an internal model with no price. The models are
:class:`~agentcost_langgraph.testing.ScriptedChatModel` instances that report the usage a provider would; everything
else (the graph, the callbacks, the tools, the budget) is the real thing.
"""

from __future__ import annotations

import operator
from decimal import Decimal
from typing import Annotated, TypedDict

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.prebuilt import ToolNode
from langgraph.types import Send

import agentcost
from agentcost import Budget, CostTree, DegradePolicy, PriceBook, Usage
from agentcost._demo import demo_price_book
from agentcost_langgraph import BudgetedChatModel, CostCallbackHandler, estimate_tokens, node_context, optional_tool
from agentcost_langgraph.testing import ScriptedChatModel, reply

__all__ = ["build_graph", "run_demo", "writer_budget"]

QUESTION = "how do agents overspend?"
ATTRIBUTION = {"team": "support", "feature": "answer-bot", "user": "u-1042", "conversation": "c-77"}


def writer_budget() -> Budget:
    """The writer's budget, as in the core demo: $0.03, degrading down to 200 output tokens before refusing."""
    return Budget(max_cost=Decimal("0.03"), policy=DegradePolicy(min_output_tokens=200))


# -- tools ----------------------------------------------------------------------------------------------------------
# web_search and fetch_page are priced by the demo's price book; fact_check declares its own price.


@tool
def web_search(query: str) -> str:
    """Search the web; returns the best result's address."""
    return "https://example.com/" + query.replace(" ", "-")


@tool
def fetch_page(url: str) -> str:
    """Fetch a web page's text."""
    return f"notes on {url.rsplit('/', 1)[-1].replace('-', ' ')}"


@tool
def fact_check(claim: str) -> str:
    """Check a claim against trusted sources."""
    return f"verified: {claim}"


# -- state ----------------------------------------------------------------------------------------------------------


class RequestState(TypedDict, total=False):
    question: str
    plan: str
    notes: list[str]
    summary: str
    answer: str


class ResearchState(TypedDict, total=False):
    question: str
    queries: list[str]
    query: str
    notes: Annotated[list[str], operator.add]
    summary: str


class WriterState(TypedDict, total=False):
    question: str
    notes: list[str]
    summary: str
    messages: Annotated[list[AnyMessage], add_messages]
    answer: str


def _prompt(tokens: int, text: str) -> list[HumanMessage]:
    """``text`` followed by (simulated) page text, ``tokens`` input tokens long as the handler estimates a prompt
    before the call: the budget's decision for the call is sized by that estimate, the scripted model then reports
    ``tokens`` as the provider would."""
    text += "\n"
    pad = 4 * (tokens - estimate_tokens([HumanMessage(text)]))
    return [HumanMessage(text + ("page text " * (pad // 10 + 1))[:pad])]


# -- the graph ------------------------------------------------------------------------------------------------------


def build_graph() -> CompiledStateGraph[RequestState, None, RequestState, RequestState]:
    """The demo's planner graph, with fresh scripted models (each answers its script once per run)."""
    planner_llm = ScriptedChatModel(script=[reply("research, then write", usage=Usage(1_500, 200))], model="gpt-4o")
    search_planner = ScriptedChatModel(
        script=[reply("agent cost attribution\nllm budget enforcement", usage=Usage(850, 120))], model="gpt-4o-mini"
    )
    reader = ScriptedChatModel(
        script=[reply("summary of the pages", usage=Usage(12_400, 900, cache_read_tokens=8_000))],
        model="claude-sonnet-4-5",
        provider="anthropic",
    )
    drafter = ScriptedChatModel(script=[reply("draft answer", usage=Usage(3_200, 1_100))], model="gpt-4o")
    checker = optional_tool(fact_check, cost=Decimal("0.002"))
    # the critic asks for 2600 output tokens and a fact check; the writer's budget pays for neither in full
    critic = BudgetedChatModel(
        model=ScriptedChatModel(
            script=[
                reply(
                    "critique of the draft",
                    usage=Usage(4_300, 2_600, reasoning_tokens=1_820),
                    tool_calls=[("fact_check", {"claim": "agents overspend without budgets"})],
                )
            ],
            model="o3-mini",
        )
    ).bind_tools([checker])
    guard = ScriptedChatModel(script=[reply("safe", usage=Usage(1_400, 10))], model="acme-guard-7b", provider="acme")

    # the researcher: plan the searches, run them in parallel, read the pages
    def plan_searches(state: ResearchState) -> ResearchState:
        answer = search_planner.invoke(f"search queries for: {state['question']}")
        return {"queries": str(answer.content).splitlines()}

    def fan_out(state: ResearchState) -> list[Send]:
        return [Send("search", {"query": query}) for query in state["queries"]]

    def search(state: ResearchState, config: RunnableConfig) -> ResearchState:
        url = web_search.invoke({"query": state["query"]}, config)
        page = fetch_page.invoke({"url": url}, config)
        step = node_context(config)
        if step is not None:
            # an embedding call LangChain does not see: recorded on this node by hand
            step.record(
                "embedding",
                "embed page",
                model="bge-large",
                provider="self-hosted",
                usage=Usage(input_tokens=2048, units={"gpu_seconds": Decimal("0.35")}),
            )
        return {"notes": [str(page)]}

    def read(state: ResearchState) -> ResearchState:
        answer = reader.invoke("summarise the pages:\n" + "\n".join(state["notes"]))
        return {"summary": str(answer.content)}

    research = StateGraph(ResearchState)
    research.add_node("plan_searches", plan_searches)
    research.add_node("search", search)
    research.add_node("read", read)
    research.add_edge(START, "plan_searches")
    research.add_conditional_edges("plan_searches", fan_out, ["search"])
    research.add_edge("search", "read")
    research.add_edge("read", END)

    # the writer: draft, critique (its output capped by the budget), fact-check (skipped by the budget)
    def draft(state: WriterState) -> WriterState:
        answer = drafter.invoke("draft the answer from: " + "; ".join(state["notes"]))
        return {"messages": [answer], "answer": str(answer.content)}

    def critique(state: WriterState) -> WriterState:
        prompt = _prompt(4_300, f"critique this draft against the pages:\n{state['answer']}\n{state['summary']}")
        return {"messages": [critic.invoke(prompt, max_tokens=2_600)]}

    def after_critique(state: WriterState) -> str:
        last = state["messages"][-1]
        return "fact_check" if isinstance(last, AIMessage) and last.tool_calls else END

    write = StateGraph(WriterState)
    write.add_node("draft", draft)
    write.add_node("critique", critique)
    write.add_node("fact_check", ToolNode([checker]))
    write.add_edge(START, "draft")
    write.add_edge("draft", "critique")
    write.add_conditional_edges("critique", after_critique, ["fact_check", END])
    write.add_edge("fact_check", END)

    # the planner: plan, delegate to the researcher and the writer, guard the answer
    def plan(state: RequestState) -> RequestState:
        answer = planner_llm.invoke("plan: " + state["question"])
        return {"plan": str(answer.content)}

    # An internal model with no price anywhere: counted as unpriced, never as free. It runs in the planner, not in
    # the writer as in the core demo: through the handler every model call is admitted before it is made, and under
    # the writer's hard cost limit a call that cannot be priced (and any call once the money is gone) is refused.
    def check(state: RequestState) -> RequestState:
        guard.invoke([SystemMessage("is this answer safe to send?"), HumanMessage(state["answer"])])
        return {}

    graph = StateGraph(RequestState)
    graph.add_node("plan", plan)
    graph.add_node("researcher", research.compile(name="researcher"))
    graph.add_node("writer", write.compile(name="writer"))  # its node span gets the handler's "writer" budget
    graph.add_node("guard", check)
    graph.add_edge(START, "plan")
    graph.add_edge("plan", "researcher")
    graph.add_edge("researcher", "writer")
    graph.add_edge("writer", "guard")
    graph.add_edge("guard", END)
    return graph.compile(name="planner")


def run_demo(*, book: PriceBook | None = None) -> CostTree:
    """Run the demo request through the LangGraph graph and return its cost tree."""
    graph = build_graph()
    with agentcost.run("answer customer question", attrs=ATTRIBUTION, pricing=book or demo_price_book()) as request:
        handler = CostCallbackHandler(request, budgets={"writer": writer_budget()})
        # the metadata a LangGraph app passes anyway is read as attribution (here the run's own user and conversation)
        graph.invoke(
            {"question": QUESTION},
            config={"callbacks": [handler], "metadata": {"user_id": "u-1042", "thread_id": "c-77"}},
        )
    return request.tree
