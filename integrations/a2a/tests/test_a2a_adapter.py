"""Real A2A agents in another process, over JSON-RPC on 127.0.0.1, and the SDK's real client: the caller's tree holds
the agent's subtree, plain agents and clients keep working, delegated budgets stop calls gracefully."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import anyio
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.types import Role, SendMessageRequest, StreamResponse, TaskState
from agentcost_a2a import EXTENSION_URI, report_token, send_message

import agentcost
from agentcost import Budget, CostContext, Span, Usage
from agentcost.wire import DelegatedBudget, Keyring, Verifier

SERVER_SCRIPT = Path(__file__).with_name("a2a_cost_server.py")
KEY = secrets.token_bytes(32)
KEYRING = Keyring({"k1": KEY}, active="k1")
T = TypeVar("T")


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    """The agents' base URL; they run in their own process for the whole module."""
    env = {**os.environ, "AGENTCOST_A2A_TEST_KEY": KEY.hex()}
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def verifier() -> Verifier:
    return Verifier(KEYRING, audience="planner", max_bytes=1_000_000)


def with_client(url: str, body: Callable[[Client], Awaitable[T]], *, streaming: bool = True) -> T:
    async def main() -> T:
        async with await create_client(url, client_config=ClientConfig(streaming=streaming)) as client:
            return await body(client)

    return anyio.run(main)


async def ask(
    client: Client,
    ctx: CostContext,
    text: str,
    *,
    check: Verifier | None = None,
    audience: str = "research-agent",
    budget: DelegatedBudget | None = None,
    cost: str | None = None,
) -> list[StreamResponse]:
    """``send_message`` with this module's keyring."""
    return await send_message(
        client,
        ctx,
        new_text_message(text, role=Role.ROLE_USER),
        keyring=KEYRING,
        verifier=check or verifier(),
        audience=audience,
        budget=budget,
        cost=cost,
    )


def answer(events: list[StreamResponse]) -> str:
    """The text of the final message (a direct reply, or the terminal status's message)."""
    last = events[-1]
    if last.HasField("message"):
        return get_message_text(last.message)
    status = last.task.status if last.HasField("task") else last.status_update.status
    return get_message_text(status.message)


def node(ctx: CostContext, name: str) -> Span:
    [span] = [span for span in ctx.tree.find() if span.name == name and span.parent is ctx.span]
    return span


@pytest.mark.parametrize("streaming", [True, False])
def test_callers_tree_holds_the_agents_subtree_priced_and_exact(base: str, streaming: bool) -> None:
    """The agent's LLM call and paid lookup hang under the caller's agent node with source remote; totals are exact."""
    check = verifier()
    with agentcost.run("planner", attrs={"team": "search"}, budget=Budget(max_cost=Decimal("1"))) as ctx:

        async def body(client: Client) -> list[StreamResponse]:
            return await ask(client, ctx, "search a2a", check=check)

        events = with_client(f"{base}/cost", body, streaming=streaming)
        ctx.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=100, output_tokens=20))

    assert answer(events) == "3 hits for 'a2a'"
    assert report_token(events[-1].task if events[-1].HasField("task") else events[-1].status_update) is not None
    agent = node(ctx, "research-agent")
    assert agent.kind == "agent"
    [llm] = [span for span in ctx.tree.find(kind="llm") if span.parent is agent]
    [lookup] = [span for span in ctx.tree.find(kind="tool") if span.parent is agent]
    assert llm.cost == ctx.pricing.price("gpt-4o-mini", Usage(input_tokens=1200, output_tokens=300), provider="openai")
    assert (llm.cost_source, lookup.cost, lookup.cost_source) == ("remote", Decimal("0.002"), "remote")
    assert (llm.attrs["team"], llm.attrs["agent"]) == ("search", "research")  # travelled; the agent's key added
    assert llm.cost is not None
    assert agent.total_cost == llm.cost + Decimal("0.002")
    assert ctx.span.total_cost == sum((span.cost or Decimal(0) for span in ctx.tree.find()), Decimal(0))
    assert ctx.remaining().cost == Decimal("1") - ctx.span.total_cost  # counted against the budget once
    assert agent.status == "ok"
    assert sum(check.rejected.values()) == 0


def test_a_direct_message_reply_carries_the_report(base: str) -> None:
    """An agent that answers with a single Message (no task): the report rides in the message's metadata."""
    with agentcost.run("planner") as ctx:
        events = with_client(f"{base}/cost", lambda client: ask(client, ctx, "reply please"))
    [event] = events
    assert event.HasField("message")
    assert EXTENSION_URI in event.message.metadata.fields
    [llm] = ctx.tree.find(kind="llm")
    assert llm.parent is node(ctx, "research-agent")
    assert llm.cost_source == "remote"
    assert ctx.span.total_cost == llm.cost


def test_plain_client_against_agentcost_agent_works(base: str) -> None:
    """A client that sends no context gets the agent's answer and no report: the agent ran as its own run."""

    async def body(client: Client) -> list[StreamResponse]:
        request = SendMessageRequest(message=new_text_message("search plain", role=Role.ROLE_USER))
        return [event async for event in client.send_message(request)]

    events = with_client(f"{base}/cost", body)
    assert answer(events) == "3 hits for 'plain'"
    last = events[-1].status_update
    assert last.status.state == TaskState.TASK_STATE_COMPLETED
    assert report_token(last) is None


def test_agentcost_client_against_plain_agent_records_a_plain_span(base: str) -> None:
    """An agent that knows nothing of agentcost: a plain span at the manual cost, or unpriced without one."""
    with agentcost.run("planner") as ctx:

        async def body(client: Client) -> tuple[list[StreamResponse], list[StreamResponse]]:
            priced = await ask(client, ctx, "a", audience="plain-agent", cost="0.001")
            unknown = await ask(client, ctx, "b", audience="plain-agent")
            return priced, unknown

        priced, unknown = with_client(f"{base}/plain", body)

    assert (answer(priced), answer(unknown)) == ("A", "B")
    leaves = [span for span in ctx.tree.find(kind="tool") if span.parent is not ctx.span]
    assert [(span.name, span.cost, span.cost_source, span.status) for span in leaves] == [
        ("plain-agent", Decimal("0.001"), "manual", "ok"),
        ("plain-agent", None, None, "ok"),
    ]
    assert ctx.span.total_cost == Decimal("0.001")
    assert ctx.tree.total.unpriced == 1


def test_delegated_budget_skips_the_expensive_call_gracefully(base: str) -> None:
    """The agent's big LLM call does not fit its delegated budget: it answers "skipped: budget" and the run goes on."""
    check = verifier()
    with agentcost.run("planner", budget=Budget(max_cost=Decimal("1"))) as ctx:

        async def body(client: Client) -> tuple[list[StreamResponse], list[StreamResponse]]:
            small = DelegatedBudget(cost=Decimal("0.01"))
            skipped = await ask(client, ctx, "summarize this", check=check, budget=small)
            after = await ask(client, ctx, "search next", check=check)
            return skipped, after

        skipped, after = with_client(f"{base}/cost", body)

    assert answer(skipped) == "skipped: budget"
    assert answer(after) == "3 hits for 'next'"
    first, second = [span for span in ctx.tree.find(kind="agent") if span.parent is ctx.span]
    assert "exhausted its delegated budget" in first.notes
    assert first.total_cost == 0
    assert [span.status for span in ctx.tree.find() if span.parent is first] == ["skipped"]
    assert ctx.span.ended_at is not None
    assert ctx.span.total_cost == second.total_cost
    assert ctx.remaining().cost == Decimal("1") - ctx.span.total_cost  # the 0.01 hold was settled at zero


def test_an_agent_that_crashes_still_reports_its_spend(base: str) -> None:
    """A crashing agent fails the task (its text stays on the server) with its report: the spend is grafted."""
    with agentcost.run("planner") as ctx:
        events = with_client(f"{base}/cost", lambda client: ask(client, ctx, "crash now"))

    assert events[-1].status_update.status.state == TaskState.TASK_STATE_FAILED
    assert answer(events) == "agent error"
    agent = node(ctx, "research-agent")
    assert (agent.status, agent.error) == ("error", "agent error")
    [llm] = ctx.tree.find(kind="llm")
    assert llm.parent is agent
    assert llm.cost == ctx.pricing.price("gpt-4o-mini", Usage(input_tokens=100, output_tokens=10), provider="openai")
    assert ctx.span.total_cost == llm.cost
