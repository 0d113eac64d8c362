"""A three-hop delegation across three processes over loopback: A (a LangGraph agent, here) → B (an A2A agent service)
→ C (an MCP tool server). A's tree holds B's and C's subtrees in their places, and its total is the exact sum of what
each process spent itself, as the other processes computed it (see three_hops_services.py)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.types import Role
from agentcost_a2a import send_message
from agentcost_langgraph import CostCallbackHandler, node_context
from agentcost_langgraph.testing import ScriptedChatModel, reply
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, MessagesState, StateGraph

import agentcost
from agentcost import Budget, BudgetStore, CostContext, Limit, MemoryStore, Span, SQLiteStore, Usage
from agentcost.testing import tree_shape
from agentcost.wire import DelegatedBudget, Keyring, Verifier

SERVICES = Path(__file__).with_name("three_hops_services.py")
KEY = secrets.token_bytes(32)
KEYRING = Keyring({"k1": KEY}, active="k1")
TEAM_LIMIT = Limit(scope={"team": "research"}, window="none", max_cost=Decimal("5"))  # as the services register it
ZERO = Decimal(0)


@dataclass(frozen=True)
class Hops:
    agent_url: str
    """B's base URL: ``/solo`` and ``/shared`` (which charges the shared store)."""
    ledger: Path
    """Where B and C write what they spent (``b.jsonl``, ``c.jsonl``)."""
    store: Path
    """The SQLite file B and C charge in shared mode."""


def start(hop: str, env: dict[str, str], started: list[subprocess.Popen[str]]) -> int:
    process = subprocess.Popen(
        [sys.executable, str(SERVICES), hop], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    started.append(process)
    assert process.stdout is not None
    return int(process.stdout.readline())


@pytest.fixture(scope="module")
def hops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hops]:
    """C in one process, then B (which calls C) in another, for the whole module."""
    directory = tmp_path_factory.mktemp("three-hops")
    store = directory / "budgets.sqlite"
    env = {
        **os.environ,
        "AGENTCOST_3HOP_KEY": KEY.hex(),
        "AGENTCOST_3HOP_LEDGER": str(directory),
        "AGENTCOST_3HOP_STORE": str(store),
    }
    started: list[subprocess.Popen[str]] = []
    try:
        tool_port = start("tool-c", env, started)
        env["AGENTCOST_3HOP_TOOL_URL"] = f"http://127.0.0.1:{tool_port}/mcp"
        agent_port = start("agent-b", env, started)
        yield Hops(f"http://127.0.0.1:{agent_port}", directory, store)
    finally:
        for process in started:
            process.terminate()
        for process in started:
            process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


@dataclass
class Outcome:
    ctx: CostContext
    answer: str
    verifier: Verifier


def run_a(hops: Hops, tag: str, *, depth: str, budget: Decimal, store: BudgetStore, shared: bool = False) -> Outcome:
    """A: a LangGraph agent that plans, delegates to B with ``budget`` from its ``delegate`` node, and writes up."""
    model = ScriptedChatModel(
        model="gpt-4o-mini",
        script=[
            reply("ask B", usage=Usage(input_tokens=800, output_tokens=120)),
            reply("the write-up", usage=Usage(input_tokens=2_500, output_tokens=600)),
        ],
    )
    verifier = Verifier(KEYRING, audience="agent-a", max_bytes=1_000_000)  # B's reports carry B's and C's trees
    mode = "shared" if shared else "solo"

    async def delegate(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        ctx = node_context(config)
        assert ctx is not None
        async with await create_client(f"{hops.agent_url}/{mode}", client_config=ClientConfig(streaming=True)) as b:
            events = await send_message(
                b,
                ctx,
                new_text_message(f"{tag} {depth} {mode}", role=Role.ROLE_USER),
                keyring=KEYRING,
                verifier=verifier,
                audience="agent-b",
                budget=DelegatedBudget(cost=budget),
                shared_store=shared,
            )
        return {"messages": [AIMessage(get_message_text(events[-1].status_update.status.message))]}

    builder = StateGraph(MessagesState)
    builder.add_node("plan", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_node("delegate", delegate)
    builder.add_node("write", lambda state: {"messages": [model.invoke(state["messages"])]})
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "delegate")
    builder.add_edge("delegate", "write")
    builder.add_edge("write", END)
    graph = builder.compile(name="agent-a")

    async def main(ctx: CostContext) -> str:
        config: RunnableConfig = {"callbacks": [CostCallbackHandler(ctx)]}
        final = await graph.ainvoke({"messages": [HumanMessage("research cost trees")]}, config)
        return str(final["messages"][2].content)  # B's answer, as the delegate node put it

    with agentcost.run("a", attrs={"team": "research"}, budget=Budget(max_cost=Decimal("2")), store=store) as ctx:
        answer = anyio.run(main, ctx)
    return Outcome(ctx, answer, verifier)


def ledger(hops: Hops, hop: str, tag: str) -> dict[str, Any]:
    """What ``hop`` wrote for ``tag``: exactly one line, from a process other than this one."""
    lines: list[dict[str, Any]] = [json.loads(line) for line in (hops.ledger / f"{hop}.jsonl").read_text().splitlines()]
    [entry] = [line for line in lines if line["tag"] == tag]
    assert entry["pid"] != os.getpid()
    assert entry["unpriced"] == 0
    return entry


def child(parent: Span, name: str) -> Span:
    [span] = [span for span in parent.children if span.name == name]
    return span


def own_spans(entry: dict[str, Any]) -> list[tuple[str, Decimal]]:
    return sorted((span_id, Decimal(cost)) for span_id, _, _, cost in entry["spans"])


def leaves(span: Span) -> list[tuple[str, Decimal]]:
    """The priced leaves under ``span`` (not nodes), as ``(id, cost)``."""
    found = [(f"{s.id:016x}", s.cost) for s in span.walk()[1:] if not s.children and s.cost is not None]
    return sorted(found)


def check_exact(outcome: Outcome, hops: Hops, tag: str, *, tool: str = "research") -> tuple[Span, Span]:
    """A's total is the exact sum of every process's own spend, each remote span is in A's tree exactly once, in its
    place; returns A's node for B and B's node for C."""
    ctx = outcome.ctx
    b, c = ledger(hops, "b", tag), ledger(hops, "c", tag)
    a_own = [span for span in ctx.tree.find() if span.cost_source not in (None, "remote")]  # nodes have no source
    a_self = sum((span.cost or ZERO for span in a_own), ZERO)
    b_self, c_self = Decimal(b["self"]), Decimal(c["self"])
    assert ctx.span.total_cost == a_self + b_self + c_self
    assert ctx.tree.total.unpriced == 0
    assert [(span.parent.name, span.kind) for span in a_own if span.parent] == [("plan", "llm"), ("write", "llm")]

    [delegate] = ctx.tree.find(name="delegate")
    agent_b = child(delegate, "agent-b")
    tool_c = child(agent_b, tool)
    assert (agent_b.kind, tool_c.kind) == ("agent", "tool")
    assert agent_b.total_cost == Decimal(b["total"]) == b_self + c_self
    assert tool_c.total_cost == Decimal(c["total"]) == c_self
    # each span B and C priced is in A's tree once, with the cost they gave it, in its place, with source remote
    assert leaves(agent_b) == sorted(own_spans(b) + own_spans(c))
    assert leaves(tool_c) == own_spans(c)
    assert all(span.cost_source == "remote" for span in agent_b.walk()[1:] if not span.children)
    assert {span.attrs["team"] for span in agent_b.walk()[1:]} == {"research"}  # A's attribution travelled
    assert {(span.attrs["service"], span.attrs.get("tool_server")) for span in agent_b.walk()[1:]} == {
        ("agent-b", None),  # B's own spans, and its tool node
        ("agent-b", "tool-c"),  # C's spans: B's attribution travelled on, C's key was added
    }
    assert {span.attrs.get("tool_server") for span in tool_c.walk()[1:]} == {"tool-c"}
    assert sum(outcome.verifier.rejected.values()) == 0
    return agent_b, tool_c


def test_three_hops_graft_every_subtree_in_place_and_add_up_exactly(hops: Hops) -> None:
    """A → B → C with room to spend: C's subtree sits under B's tool node inside B's subtree, totals are exact."""
    store = MemoryStore()
    limit = store.add_limit(TEAM_LIMIT)
    outcome = run_a(hops, "roomy", depth="deep", budget=Decimal("1"), store=store)
    ctx = outcome.ctx
    print(ctx.tree.render())

    assert outcome.answer == "B: a deep report on cost trees"
    llm = ("llm gpt-4o-mini", ())
    tool_c = ("tool research", (llm, ("tool web-search", ()), ("llm gpt-4o", ())))
    assert tree_shape(ctx) == (
        "run a",
        (
            (
                "agent agent-a",
                (
                    ("agent plan", (llm,)),
                    ("agent delegate", (("agent agent-b", (llm, tool_c, llm)),)),
                    ("agent write", (llm,)),
                ),
            ),
        ),
    )
    check_exact(outcome, hops, "roomy")
    # nothing double counted without a shared store: A's own store is charged B's total once, at the final report
    usage = store.usage(limit)
    assert (usage.spent.cost, usage.held.cost) == (ctx.span.total_cost, ZERO)
    assert ctx.remaining().cost == Decimal("2") - ctx.span.total_cost


def test_a_small_delegated_budget_skips_cs_expensive_call_gracefully(hops: Hops) -> None:
    """A gives B $0.05: C's expensive call does not fit, C answers "skipped: budget", B and A finish, totals exact."""
    store = MemoryStore()
    limit = store.add_limit(TEAM_LIMIT)
    outcome = run_a(hops, "tight", depth="deep", budget=Decimal("0.05"), store=store)
    ctx = outcome.ctx
    print(ctx.tree.render())

    assert outcome.answer == "B: skipped: budget"
    agent_b, tool_c = check_exact(outcome, hops, "tight")
    llm = ("llm gpt-4o-mini", ())
    assert tree_shape(agent_b) == (
        "agent agent-b",
        (llm, ("tool research", (llm, ("tool web-search", ()), ("custom skip: gpt-4o", ()))), llm),
    )
    [skip] = [span for span in tool_c.children if span.status == "skipped"]
    assert (skip.name, skip.cost, skip.cost_source) == ("skip: gpt-4o", ZERO, "remote")
    # the budget A delegated reached C narrowed by what B and C had spent: $0.05 - $0.00075 - $0.00354
    assert skip.notes[0] == "skipped: budget (run 'tool-c' has $0.04571 cost left, the call needs $0.415)"
    assert "exhausted its delegated budget" in tool_c.notes
    assert agent_b.status == tool_c.status == "ok"
    assert agent_b.total_cost <= Decimal("0.05")
    [write] = ctx.tree.find(name="write")
    assert [span.kind for span in write.children] == ["llm"]  # A's run went on after the delegation
    assert (ctx.span.status, ctx.span.ended_at is not None) == ("ok", True)
    usage = store.usage(limit)
    assert (usage.spent.cost, usage.held.cost) == (ctx.span.total_cost, ZERO)  # the $0.05 hold settled at the spend
    assert ctx.remaining().cost == Decimal("2") - ctx.span.total_cost


def test_a_shared_sqlite_store_counts_each_process_spend_once(hops: Hops) -> None:
    """A, B and C charge one SQLite file with a team limit: the store's total is the exact sum, counted once."""
    store = SQLiteStore(hops.store)
    try:
        limit = store.add_limit(TEAM_LIMIT)
        before = store.usage(limit).spent.cost
        outcome = run_a(hops, "shared", depth="deep", budget=Decimal("1"), store=store, shared=True)
        usage = store.usage(limit)
    finally:
        store.close()

    assert outcome.answer == "B: a deep report on cost trees"
    agent_b, _ = check_exact(outcome, hops, "shared", tool="research_shared")
    assert usage.spent.cost - before == outcome.ctx.span.total_cost  # every process's spend, once
    assert usage.held.cost == ZERO
    # B and C charged the store themselves as they spent (read in their processes); A never charged it for them
    b, c = ledger(hops, "b", "shared"), ledger(hops, "c", "shared")
    [plan_llm] = outcome.ctx.tree.find(name="plan")[0].children
    [write_llm] = outcome.ctx.tree.find(name="write")[0].children
    b_plan = agent_b.children[0]  # B's first LLM call, made before it called C
    assert Decimal(c["store_spent"]) - before == plan_llm.total_cost + b_plan.total_cost + Decimal(c["self"])
    assert Decimal(b["store_spent"]) - before == plan_llm.total_cost + Decimal(b["self"]) + Decimal(c["self"])
    assert usage.spent.cost - Decimal(b["store_spent"]) == write_llm.total_cost
