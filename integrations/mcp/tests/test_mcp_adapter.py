"""A real MCP tool server in another process, over streamable HTTP on 127.0.0.1, and the SDK's real client: the
caller's tree holds the server's subtree, plain servers and clients keep working, budgets stop calls gracefully."""

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
from agentcost_mcp import REPORT_META_KEY, call_tool
from mcp import Client
from mcp_types import CallToolResult, TextContent

import agentcost
from agentcost import Budget, CostContext, Span, Usage
from agentcost.wire import DelegatedBudget, Keyring, Verifier

SERVER_SCRIPT = Path(__file__).with_name("mcp_cost_server.py")
KEY = secrets.token_bytes(32)
KEYRING = Keyring({"k1": KEY}, active="k1")
T = TypeVar("T")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The tool server's URL; the server runs in its own process for the whole module."""
    env = {**os.environ, "AGENTCOST_MCP_TEST_KEY": KEY.hex()}
    process = subprocess.Popen(
        [sys.executable, str(SERVER_SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def verifier() -> Verifier:
    return Verifier(KEYRING, audience="agent", max_bytes=65_536)


async def call(
    client: Client,
    ctx: CostContext,
    name: str,
    arguments: dict[str, str] | None = None,
    *,
    check: Verifier | None = None,
    budget: DelegatedBudget | None = None,
    cost: str | None = None,
) -> CallToolResult:
    """``call_tool`` with this module's keyring and the server's audience."""
    return await call_tool(
        client,
        ctx,
        name,
        dict(arguments or {}),
        keyring=KEYRING,
        verifier=check or verifier(),
        audience="search-server",
        budget=budget,
        cost=cost,
    )


def with_client(url: str, body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with Client(url) as client:
            return await body(client)

    return anyio.run(main)


def text(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


def node(ctx: CostContext, name: str) -> Span:
    [span] = [span for span in ctx.tree.find(kind="tool") if span.name == name and span.parent is ctx.span]
    return span


def test_callers_tree_holds_the_servers_subtree_priced_and_exact(url: str) -> None:
    """The server's LLM call and paid lookup hang under the caller's tool node with source remote; totals are exact."""
    check = verifier()
    with agentcost.run("agent", attrs={"team": "search"}, budget=Budget(max_cost=Decimal("1"))) as ctx:

        async def body(client: Client) -> CallToolResult:
            return await call(client, ctx, "search", {"query": "mcp"}, check=check)

        result = with_client(url, body)
        ctx.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=100, output_tokens=20))

    assert text(result) == "3 hits for 'mcp'"
    tool = node(ctx, "search")
    [llm] = [span for span in ctx.tree.find(kind="llm") if span.parent is tool]
    [lookup] = [span for span in ctx.tree.find(kind="tool") if span.parent is tool]
    assert llm.cost == ctx.pricing.price("gpt-4o-mini", Usage(input_tokens=1200, output_tokens=300), provider="openai")
    assert (llm.cost_source, lookup.cost, lookup.cost_source) == ("remote", Decimal("0.002"), "remote")
    assert llm.attrs["team"] == "search"  # the caller's attribution travelled, and the server's own key was added
    assert llm.attrs["server"] == "search"
    assert llm.cost is not None
    assert tool.total_cost == llm.cost + Decimal("0.002")
    assert ctx.span.total_cost == sum((span.cost or Decimal(0) for span in ctx.tree.find()), Decimal(0))
    assert ctx.remaining().cost == Decimal("1") - ctx.span.total_cost  # counted against the budget once
    assert tool.status == "ok"
    assert sum(check.rejected.values()) == 0


def test_plain_client_against_agentcost_server_works(url: str) -> None:
    """A client that sends no context gets the tool's answer and no report: the server ran it as its own run."""

    async def body(client: Client) -> CallToolResult:
        return await client.call_tool("search", {"query": "plain"})

    result = with_client(url, body)
    assert text(result) == "3 hits for 'plain'"
    assert not result.is_error
    assert REPORT_META_KEY not in (result.meta or {})


def test_agentcost_client_against_plain_server_records_a_plain_tool_span(url: str) -> None:
    """A server that knows nothing of agentcost: a plain tool span at the manual cost, or unpriced without one."""
    with agentcost.run("agent") as ctx:

        async def body(client: Client) -> tuple[CallToolResult, CallToolResult]:
            priced = await call(client, ctx, "plain_lookup", {"key": "a"}, cost="0.001")
            unknown = await call(client, ctx, "plain_lookup", {"key": "b"})
            return priced, unknown

        priced, unknown = with_client(url, body)

    assert (text(priced), text(unknown)) == ("A", "B")
    leaves = [span for span in ctx.tree.find(kind="tool") if span.parent is not ctx.span]
    assert [(span.name, span.cost, span.cost_source, span.status) for span in leaves] == [
        ("plain_lookup", Decimal("0.001"), "manual", "ok"),
        ("plain_lookup", None, None, "ok"),
    ]
    assert ctx.span.total_cost == Decimal("0.001")
    assert ctx.tree.total.unpriced == 1


def test_delegated_budget_skips_the_expensive_call_gracefully(url: str) -> None:
    """The tool's big LLM call does not fit its delegated budget: it answers "skipped: budget" and the run goes on."""
    check = verifier()
    with agentcost.run("agent", budget=Budget(max_cost=Decimal("1"))) as ctx:

        async def body(client: Client) -> tuple[CallToolResult, CallToolResult]:
            small = DelegatedBudget(cost=Decimal("0.01"))
            skipped = await call(client, ctx, "summarize", {"text": "long"}, check=check, budget=small)
            after = await call(client, ctx, "search", {"query": "next"}, check=check)
            return skipped, after

        skipped, after = with_client(url, body)

    assert text(skipped) == "skipped: budget"
    assert not skipped.is_error
    assert text(after) == "3 hits for 'next'"
    summarize = node(ctx, "summarize")
    assert "exhausted its delegated budget" in summarize.notes
    assert summarize.total_cost == 0
    assert [span.status for span in ctx.tree.find() if span.parent is summarize] == ["skipped"]
    assert ctx.span.ended_at is not None
    assert ctx.span.total_cost == node(ctx, "search").total_cost
    assert ctx.remaining().cost == Decimal("1") - ctx.span.total_cost  # the 0.01 hold was settled at zero


def test_a_tool_that_crashes_still_reports_its_spend(url: str) -> None:
    """A crashing tool returns an error result (its text stays on the server) with its report: the spend is grafted."""
    with agentcost.run("agent") as ctx:

        async def body(client: Client) -> CallToolResult:
            return await call(client, ctx, "crash")

        result = with_client(url, body)

    assert result.is_error
    assert text(result) == "Error executing tool crash"
    crash = node(ctx, "crash")
    assert (crash.status, crash.error) == ("error", "Error executing tool crash")
    [llm] = ctx.tree.find(kind="llm")
    assert llm.parent is crash
    assert llm.cost == ctx.pricing.price("gpt-4o-mini", Usage(input_tokens=100, output_tokens=10), provider="openai")
    assert ctx.span.total_cost == llm.cost
