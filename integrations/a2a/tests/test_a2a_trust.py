"""Trust, in process (the SDK's app on httpx's ASGI transport): a context the agent cannot trust is no context (or
refused), counted, and never widens a budget or moves attribution; a report the client cannot trust is unknown cost."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import anyio
import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    InvalidParamsError,
    Message,
    Role,
    SendMessageRequest,
    StreamResponse,
)
from a2a.utils.errors import A2AError
from agentcost_a2a import EXTENSION_URI, CostAwareExecutor, cost_context, extension, send_message
from starlette.applications import Starlette

import agentcost
from agentcost import Budget, Usage
from agentcost.wire import DelegatedBudget, Keyring, Verifier, WireContext, encode_context

KEYRING = Keyring.generate()
T = TypeVar("T")


class WhoAmI(AgentExecutor):
    """Says which run it was given, and spends a little on it."""

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        self.calls += 1
        cost = cost_context(context)
        seen = json.dumps(
            {"left": str(cost.remaining().cost), "tenant": cost.attrs["tenant"], "notes": cost.span.notes}
        )
        cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=10, output_tokens=1))
        await event_queue.enqueue_event(new_text_message(seen))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class Agent:
    """An in-process agent whose own cap is $0.05 and which pins tenant=acme."""

    def __init__(self, *, refuse: bool = False, report_keyring: Keyring = KEYRING) -> None:
        self.verifier = Verifier(KEYRING, audience="research-agent", max_bytes=2048)
        self.inner = WhoAmI()
        executor = CostAwareExecutor(
            self.inner,
            keyring=report_keyring,
            verifier=self.verifier,
            name="research-agent",
            attrs={"tenant": "acme"},
            budget=Budget(max_cost=Decimal("0.05")),
            refuse=refuse,
        )
        self.card = AgentCard(
            name="research-agent",
            description="who am I",
            version="1.0.0",
            supported_interfaces=[
                AgentInterface(protocol_binding="JSONRPC", url="http://agent/", protocol_version="1.0")
            ],
            capabilities=AgentCapabilities(streaming=False, extensions=[extension()]),
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain"],
            skills=[AgentSkill(id="whoami", name="whoami", description="who am I", tags=["test"])],
        )
        handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=self.card)
        self.app = Starlette(routes=[*create_agent_card_routes(self.card), *create_jsonrpc_routes(handler, "/")])

    def run(self, body: Callable[[Client], Awaitable[T]]) -> T:
        async def main() -> T:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://agent") as http:
                client = await create_client(self.card, client_config=ClientConfig(httpx_client=http))
                return await body(client)

        return anyio.run(main)

    def send(self, token: object) -> dict[str, Any] | A2AError:
        """Send ``token`` as the raw context value; what the agent saw, or the client's error."""

        async def body(client: Client) -> dict[str, Any] | A2AError:
            message = new_text_message("who am I", role=Role.ROLE_USER)
            message.metadata[EXTENSION_URI] = token
            try:
                [event] = [event async for event in client.send_message(SendMessageRequest(message=message))]
            except A2AError as error:
                return error
            seen: dict[str, Any] = json.loads(get_message_text(event.message))
            seen["reported"] = EXTENSION_URI in event.message.metadata.fields
            return seen

        return self.run(body)


def token(**changes: Any) -> str:
    """A valid context for research-agent delegating $1000 and attributing to another tenant, with ``changes``."""
    fields: dict[str, Any] = {
        "root": "00000000000000aa",
        "parent": "00000000000000bb",
        "aud": "research-agent",
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
    "wrong_audience": lambda: token(aud="other-agent"),
    "too_large": lambda: token(attrs={f"k{i}": "x" * 100 for i in range(30)}),
    "malformed": lambda: 42.0,
}
REASON = {"tampered": "bad_signature"}
OWN_RUN = {"left": "0.05", "tenant": "acme", "notes": [], "reported": False}


@pytest.mark.parametrize("case", sorted(FORGED))
def test_an_untrusted_context_is_no_context_and_counted(case: str) -> None:
    """The agent still runs, as its own run: its own cap and attribution, no report; the rejection counts."""
    agent = Agent()
    assert agent.send(FORGED[case]()) == OWN_RUN
    assert agent.verifier.rejected[REASON.get(case, case)] == 1
    assert sum(agent.verifier.rejected.values()) == 1


def test_a_replayed_context_is_no_context_the_second_time() -> None:
    """The same token twice: the first message serves the caller (with a report), the replay runs as no context."""
    agent = Agent()
    sent = token()
    first, second = agent.send(sent), agent.send(sent)
    assert isinstance(first, dict)
    assert first["reported"] is True
    assert first["notes"] == ["serving node 00000000000000bb of run 00000000000000aa"]
    assert second == OWN_RUN
    assert agent.verifier.rejected["replayed"] == 1


@pytest.mark.parametrize("case", ["bad_signature", "expired", "wrong_audience", "malformed"])
def test_an_untrusted_context_is_refused_when_configured(case: str) -> None:
    """With refuse=True, the message fails with InvalidParamsError before the agent runs; the rejection counts."""
    agent = Agent(refuse=True)
    refused = agent.send(FORGED[case]())
    assert isinstance(refused, InvalidParamsError)
    assert f"agentcost context refused ({case})" in str(refused)
    assert agent.inner.calls == 0
    assert agent.verifier.rejected[case] == 1


def test_a_valid_context_never_widens_a_budget_nor_moves_attribution() -> None:
    """$1000 delegated against the agent's $0.05 cap: $0.05; the caller's $0.02 left: $0.02; the pinned tenant wins."""
    agent = Agent()
    alone = agent.send(token())
    assert isinstance(alone, dict)
    assert (alone["left"], alone["tenant"]) == ("0.05", "acme")
    with agentcost.run("planner", attrs={"tenant": "evil"}, budget=Budget(max_cost=Decimal("0.02"))) as ctx:
        events: list[StreamResponse] = agent.run(
            lambda client: send_message(
                client,
                ctx,
                new_text_message("who am I", role=Role.ROLE_USER),
                keyring=KEYRING,
                verifier=Verifier(KEYRING, audience="planner", max_bytes=1_000_000),
                audience="research-agent",
            )
        )
    seen = json.loads(get_message_text(events[-1].message))
    assert (seen["left"], seen["tenant"]) == ("0.02", "acme")
    [llm] = ctx.tree.find(kind="llm")
    assert llm.attrs["tenant"] == "evil"  # the caller's own tree keeps the caller's attribution


def test_a_forged_report_is_counted_and_recorded_as_unknown_cost() -> None:
    """A report signed with a key the caller does not hold: counted, the node's cost unknown, the caller goes on."""
    agent = Agent(report_keyring=Keyring({"k1": secrets.token_bytes(32)}, active="k1"))
    check = Verifier(KEYRING, audience="planner", max_bytes=1_000_000)
    with agentcost.run("planner", budget=Budget(max_cost=Decimal("1"))) as ctx:
        events = agent.run(
            lambda client: send_message(
                client,
                ctx,
                new_text_message("who am I", role=Role.ROLE_USER),
                keyring=KEYRING,
                verifier=check,
                audience="research-agent",
                budget=DelegatedBudget(cost=Decimal("0.04")),
            )
        )
        ctx.record_tool("next-step", cost="0.001")
    assert events[-1].HasField("message")
    assert check.rejected["bad_signature"] == 1
    assert not ctx.tree.find(kind="llm")  # nothing of the forged tree was grafted
    [unknown] = ctx.tree.find(kind="custom")
    assert (unknown.cost, unknown.status) == (None, "error")
    assert unknown.error is not None
    assert "invalid cost report (bad_signature)" in unknown.error
    assert ctx.remaining().cost == Decimal("1") - Decimal("0.04") - Decimal("0.001")  # the hold is charged, not zero


def test_a_send_that_raises_records_unknown_cost_and_propagates() -> None:
    """The agent refuses the message (an error response, no report): the node's cost is unknown, the error reaches
    the caller."""
    agent = Agent(refuse=True)
    other = Keyring.generate()  # the agent cannot verify what this caller signs
    with agentcost.run("planner") as ctx:

        async def body(client: Client) -> None:
            with pytest.raises(A2AError, match="agentcost context refused"):
                await send_message(
                    client,
                    ctx,
                    Message(role=Role.ROLE_USER, message_id="m1", parts=new_text_message("x").parts),
                    keyring=other,
                    verifier=Verifier(other, audience="planner"),
                    audience="research-agent",
                )

        agent.run(body)
    [node] = ctx.tree.find(kind="agent")
    [unknown] = ctx.tree.find(kind="custom")
    assert unknown.parent is node
    assert (node.status, unknown.cost) == ("error", None)
    assert ctx.tree.total.unpriced == 1
