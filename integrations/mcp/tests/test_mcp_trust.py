"""Trust, in process (the SDK's in-memory transport): a context the server cannot trust is no context (or refused),
counted, and never widens a budget or moves attribution; a report the client cannot trust is unknown cost."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar, cast

import anyio
import pytest
from agentcost_mcp import CONTEXT_META_KEY, REPORT_META_KEY, call_tool, cost_aware
from mcp import Client
from mcp.server import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, RequestParamsMeta
from mcp_types.jsonrpc import INVALID_PARAMS

import agentcost
from agentcost import Budget, CostContext, Usage
from agentcost.wire import DelegatedBudget, Keyring, Verifier, WireContext, encode_context

KEYRING = Keyring.generate()
T = TypeVar("T")


class ToolServer:
    """An in-process server whose ``whoami`` tool tells what run it was given; its own cap is $0.05."""

    def __init__(self, *, refuse: bool = False, report_keyring: Keyring = KEYRING) -> None:
        self.verifier = Verifier(KEYRING, audience="search-server", max_bytes=2048)
        self.calls = 0
        self.server = MCPServer("search-server")
        aware = cost_aware(
            keyring=report_keyring,
            verifier=self.verifier,
            attrs={"tenant": "acme"},
            budget=Budget(max_cost=Decimal("0.05")),
            refuse=refuse,
        )

        @self.server.tool()
        @aware
        async def whoami(cost: CostContext) -> dict[str, str]:
            """Say which run the call got."""
            self.calls += 1
            seen = {
                "cost_left": str(cost.remaining().cost),
                "tenant": cost.attrs["tenant"],
                "notes": str(cost.span.notes),
            }
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=10, output_tokens=1))
            return seen

        @self.server.tool()
        @aware
        async def protocol_error() -> str:
            """Fail with a protocol error: no result, so no report."""
            raise MCPError(INVALID_PARAMS, "no such record")

    def run(self, body: Callable[[Client], Awaitable[T]]) -> T:
        async def main() -> T:
            async with Client(self.server) as client:
                return await body(client)

        return anyio.run(main)

    def send(self, token: object) -> CallToolResult | MCPError:
        """Call ``whoami`` with ``token`` as the raw context value; a protocol error is returned."""

        async def body(client: Client) -> CallToolResult | MCPError:
            try:
                return await client.call_tool("whoami", {}, meta=cast(RequestParamsMeta, {CONTEXT_META_KEY: token}))
            except MCPError as error:  # caught inside the client's block, which re-raises in an exception group
                return error

        return self.run(body)


def token(**changes: Any) -> str:
    """A valid context for search-server delegating $1000 and attributing to another tenant, with ``changes``."""
    fields: dict[str, Any] = {
        "root": "00000000000000aa",
        "parent": "00000000000000bb",
        "aud": "search-server",
        "attrs": {"tenant": "evil"},
        "budget": DelegatedBudget(cost=Decimal("1000")),
    }
    keyring = changes.pop("keyring", KEYRING)
    return encode_context(WireContext.issue(keyring, **{**fields, **changes}), keyring)


def tampered() -> str:
    """A valid token whose payload was edited to delegate more, keeping the signature."""
    prefix, body, mac = token().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["budget"]["cost"] = "9999"
    edited = base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).rstrip(b"=").decode()
    return f"{prefix}.{edited}.{mac}"


FORGED: dict[str, Callable[[], object]] = {
    "bad_signature": lambda: token(keyring=Keyring({"k1": secrets.token_bytes(32)}, active="k1")),
    "unknown_key": lambda: token(keyring=Keyring.generate("k9")),
    "tampered": tampered,
    "expired": lambda: token(now=1_000_000, ttl_ms=1000),
    "wrong_audience": lambda: token(aud="other-server"),
    "too_large": lambda: token(attrs={f"k{i}": "x" * 100 for i in range(30)}),
    "malformed": lambda: {"not": "a token"},
}
REASON = {"tampered": "bad_signature"}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_an_untrusted_context_is_no_context_and_counted(case: str) -> None:
    """The tool still runs, as the server's own run: its own cap and attribution, no report; the rejection counts."""
    tools = ToolServer()
    result = tools.send(FORGED[case]())
    assert isinstance(result, CallToolResult)
    assert not result.is_error
    assert result.structured_content == {"cost_left": "0.05", "tenant": "acme", "notes": "()"}
    assert REPORT_META_KEY not in (result.meta or {})
    assert tools.verifier.rejected[REASON.get(case, case)] == 1
    assert sum(tools.verifier.rejected.values()) == 1


def test_a_replayed_context_is_no_context_the_second_time() -> None:
    """The same token twice: the first call serves the caller (with a report), the replay runs as no context."""
    tools = ToolServer()
    sent = token()
    first, second = tools.send(sent), tools.send(sent)
    assert isinstance(first, CallToolResult)
    assert isinstance(second, CallToolResult)
    assert REPORT_META_KEY in (first.meta or {})
    assert REPORT_META_KEY not in (second.meta or {})
    assert first.structured_content is not None
    assert first.structured_content["notes"] != "()"  # serving the caller's node
    assert second.structured_content == {"cost_left": "0.05", "tenant": "acme", "notes": "()"}
    assert tools.verifier.rejected["replayed"] == 1


@pytest.mark.parametrize("case", ["bad_signature", "expired", "wrong_audience", "malformed"])
def test_an_untrusted_context_is_refused_when_configured(case: str) -> None:
    """With refuse=True, the call fails with INVALID_PARAMS before the tool runs; the rejection counts."""
    tools = ToolServer(refuse=True)
    refused = tools.send(FORGED[case]())
    assert isinstance(refused, MCPError)
    assert refused.code == INVALID_PARAMS
    assert refused.message.startswith(f"agentcost context refused ({case}): ")
    assert tools.calls == 0
    assert tools.verifier.rejected[case] == 1


def test_a_valid_context_never_widens_a_budget_nor_moves_attribution() -> None:
    """$1000 delegated against the server's $0.05 cap: $0.05; the caller's $0.02 left: $0.02; the pinned tenant wins."""
    tools = ToolServer()
    alone = tools.send(token())
    assert isinstance(alone, CallToolResult)
    assert alone.structured_content == {
        "cost_left": "0.05",
        "tenant": "acme",
        "notes": "('serving node 00000000000000bb of run 00000000000000aa',)",
    }
    with agentcost.run("agent", attrs={"tenant": "evil"}, budget=Budget(max_cost=Decimal("0.02"))) as ctx:
        result = tools.run(
            lambda client: call_tool(
                client,
                ctx,
                "whoami",
                keyring=KEYRING,
                verifier=Verifier(KEYRING, audience="agent"),
                audience="search-server",
            )
        )
    assert result.structured_content is not None
    assert result.structured_content["cost_left"] == "0.02"
    assert result.structured_content["tenant"] == "acme"
    [llm] = ctx.tree.find(kind="llm")
    assert llm.attrs["tenant"] == "evil"  # the caller's own tree keeps the caller's attribution


def test_a_forged_report_is_counted_and_recorded_as_unknown_cost() -> None:
    """A report signed with a key the caller does not hold: counted, the node's cost unknown, the agent goes on."""
    tools = ToolServer(report_keyring=Keyring({"k1": secrets.token_bytes(32)}, active="k1"))
    check = Verifier(KEYRING, audience="agent")
    with agentcost.run("agent", budget=Budget(max_cost=Decimal("1"))) as ctx:
        result = tools.run(
            lambda client: call_tool(
                client,
                ctx,
                "whoami",
                keyring=KEYRING,
                verifier=check,
                audience="search-server",
                budget=DelegatedBudget(cost=Decimal("0.04")),
            )
        )
        ctx.record_tool("next-step", cost="0.001")
    assert not result.is_error
    assert check.rejected["bad_signature"] == 1
    assert not ctx.tree.find(kind="llm")  # nothing of the forged tree was grafted
    [unknown] = ctx.tree.find(kind="custom")
    assert (unknown.cost, unknown.status) == (None, "error")
    assert unknown.error is not None
    assert "invalid cost report (bad_signature)" in unknown.error
    assert ctx.remaining().cost == Decimal("1") - Decimal("0.04") - Decimal("0.001")  # the hold is charged, not zero


def test_a_call_that_raises_records_unknown_cost_and_propagates() -> None:
    """A protocol error has no result to carry a report: the node's cost is unknown and the error reaches the caller."""
    tools = ToolServer()
    with agentcost.run("agent") as ctx:

        async def body(client: Client) -> None:
            with pytest.raises(MCPError, match="no such record"):
                await call_tool(
                    client,
                    ctx,
                    "protocol_error",
                    keyring=KEYRING,
                    verifier=Verifier(KEYRING, audience="agent"),
                    audience="search-server",
                )

        tools.run(body)
    [tool] = ctx.tree.find(kind="tool")
    [unknown] = ctx.tree.find(kind="custom")
    assert unknown.parent is tool
    assert (tool.status, unknown.cost) == ("error", None)
    assert ctx.tree.total.unpriced == 1
