"""The two remote hops of the three-hop loopback test, each run in its own process.

``python three_hops_services.py tool-c`` is C, an MCP tool server over streamable HTTP; ``python
three_hops_services.py agent-b`` is B, an A2A agent service (JSON-RPC) that calls C's tool. Each listens on 127.0.0.1
(a free port, printed on the first line of stdout) and signs with the hex key in ``AGENTCOST_3HOP_KEY``; B finds C at
``AGENTCOST_3HOP_TOOL_URL``. Both make priced LLM calls, and each appends what it spent itself (its own spans, not
the ones it grafted from the next hop) and its run's total as one JSON line to ``<AGENTCOST_3HOP_LEDGER>/<hop>.jsonl``,
so the test can compare its own tree with numbers computed in the other processes.

B's message is ``<tag> <depth> <mode>``: ``depth`` is ``quick`` or ``deep`` (C then also asks for an expensive call,
and answers "skipped: budget" when the delegated budget cannot pay for it); ``mode`` is ``solo`` or ``shared``. In
``shared`` mode B (mounted under ``/shared``) and C's ``research_shared`` tool charge the SQLite store at
``AGENTCOST_3HOP_STORE`` for their own calls (the caller passes ``shared_store=True``); under ``/solo`` and with
``research`` nothing touches a store.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from decimal import Decimal
from pathlib import Path

import anyio
import uvicorn

from agentcost import CostContext, Limit, SQLiteStore, Usage
from agentcost.wire import Keyring, Verifier

KEYRING = Keyring({"k1": bytes.fromhex(os.environ["AGENTCOST_3HOP_KEY"])}, active="k1")
LEDGER = Path(os.environ["AGENTCOST_3HOP_LEDGER"])
TEAM_LIMIT = Limit(scope={"team": "research"}, window="none", max_cost=Decimal("5"))
"""The team's limit, registered in every process that charges the shared store (limits are per-process)."""


def shared_store() -> SQLiteStore:
    store = SQLiteStore(os.environ["AGENTCOST_3HOP_STORE"])
    store.add_limit(TEAM_LIMIT)
    return store


def write_ledger(hop: str, tag: str, ctx: CostContext, store: SQLiteStore | None) -> None:
    """Append what this process spent itself for ``tag`` (its spans that are not grafted), its run's total, and
    what the shared store holds as spent by now, if it charges one."""
    own = [span for span in ctx.tree.find() if span.cost_source not in (None, "remote")]  # nodes have no source
    line = {
        "tag": tag,
        "pid": os.getpid(),
        "spans": [[f"{span.id:016x}", span.kind, span.name, str(span.cost)] for span in own],
        "self": str(sum((span.cost or Decimal(0) for span in own), Decimal(0))),
        "total": str(ctx.span.total_cost),
        "unpriced": ctx.tree.total.unpriced,
        "store_spent": None if store is None else str(store.usage(TEAM_LIMIT).spent.cost),
    }
    with (LEDGER / f"{hop}.jsonl").open("a", encoding="utf-8") as file:
        file.write(json.dumps(line) + "\n")


def listen() -> socket.socket:
    """A socket on a free loopback port, already listening when its port is printed: a client that connects before
    uvicorn starts waits in the backlog instead of being refused."""
    # IPPROTO_TCP, as asyncio makes it when uvicorn binds a port itself: only then does asyncio turn Nagle off,
    # without which every response body waits 40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    return sock


# -- C: the MCP tool server --------------------------------------------------------------------------------------------


async def tool_c() -> None:
    from agentcost_mcp import cost_aware
    from mcp.server import MCPServer

    verifier = Verifier(KEYRING, audience="tool-c")
    server = MCPServer("tool-c")
    store = shared_store()
    solo = cost_aware(keyring=KEYRING, verifier=verifier, name="tool-c", attrs={"tool_server": "tool-c"})
    shared = cost_aware(keyring=KEYRING, verifier=verifier, name="tool-c", attrs={"tool_server": "tool-c"}, store=store)

    def research_on(cost: CostContext, topic: str, tag: str, depth: str, charged: SQLiteStore | None = None) -> str:
        cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=2_000, output_tokens=400))
        cost.record_tool("web-search", cost="0.003")
        answer = f"notes on {topic}"
        if depth == "deep":
            with cost.guard(
                model="gpt-4o", provider="openai", input_tokens=150_000, max_output_tokens=4_000, optional=True
            ) as decision:
                if decision.admitted:
                    decision.record(usage=Usage(input_tokens=150_000, output_tokens=4_000))
                    answer = f"a deep report on {topic}"
                else:
                    answer = "skipped: budget"
        write_ledger("c", tag, cost, charged)
        return answer

    @server.tool()
    @solo
    async def research(topic: str, tag: str, depth: str, cost: CostContext) -> str:
        """Research a topic: a cheap LLM call and a paid web search, and an expensive call when deep."""
        return research_on(cost, topic, tag, depth)

    @server.tool()
    @shared
    async def research_shared(topic: str, tag: str, depth: str, cost: CostContext) -> str:
        """``research``, charging the shared store for its own calls."""
        return research_on(cost, topic, tag, depth, store)

    sock = listen()
    config = uvicorn.Config(server.streamable_http_app(), log_level="critical")
    await uvicorn.Server(config).serve(sockets=[sock])


# -- B: the A2A agent service ------------------------------------------------------------------------------------------


async def agent_b() -> None:
    from a2a.helpers import new_task_from_user_message, new_text_message
    from a2a.server.agent_execution import AgentExecutor, RequestContext
    from a2a.server.events import EventQueue
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
    from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
    from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
    from agentcost_a2a import CostAwareExecutor, cost_context, extension
    from agentcost_mcp import call_tool
    from mcp import Client
    from mcp_types import TextContent
    from starlette.applications import Starlette
    from starlette.routing import Mount

    tool_url = os.environ["AGENTCOST_3HOP_TOOL_URL"]
    tool_verifier = Verifier(KEYRING, audience="agent-b", max_bytes=1_000_000)  # C's reports carry its tree

    class Coordinator(AgentExecutor):
        """Plans with an LLM, has C research the topic, writes the answer with an LLM."""

        def __init__(self, store: SQLiteStore | None) -> None:
            self.store = store

        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            cost = cost_context(context)
            tag, depth, mode = context.get_user_input().split()
            assert context.message is not None
            task = context.current_task or new_task_from_user_message(context.message)
            await event_queue.enqueue_event(task)
            updater = TaskUpdater(event_queue, task.id, task.context_id)
            await updater.start_work()
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=3_000, output_tokens=500))
            async with Client(tool_url) as client:
                result = await call_tool(
                    client,
                    cost,
                    "research_shared" if mode == "shared" else "research",
                    {"topic": "cost trees", "tag": tag, "depth": depth},
                    keyring=KEYRING,
                    verifier=tool_verifier,
                    audience="tool-c",
                    shared_store=mode == "shared",
                )
            [block] = result.content
            assert isinstance(block, TextContent)
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=1_500, output_tokens=300))
            write_ledger("b", tag, cost, self.store)
            await updater.complete(updater.new_agent_message([new_text_message(f"B: {block.text}").parts[0]]))

        async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
            raise NotImplementedError

    sock = listen()
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    verifier = Verifier(KEYRING, audience="agent-b")

    def app(path: str, executor: CostAwareExecutor) -> Mount:
        card = AgentCard(
            name="agent-b",
            description="coordinates research for the three-hop test",
            version="1.0.0",
            supported_interfaces=[
                AgentInterface(protocol_binding="JSONRPC", url=f"{base}{path}/", protocol_version="1.0")
            ],
            capabilities=AgentCapabilities(streaming=True, extensions=[extension()]),
            default_input_modes=["text/plain"],
            default_output_modes=["text/plain"],
            skills=[AgentSkill(id="research", name="research", description="research a topic", tags=["research"])],
        )
        handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=card)
        return Mount(path, Starlette(routes=[*create_agent_card_routes(card), *create_jsonrpc_routes(handler, "/")]))

    def executor(store: SQLiteStore | None) -> CostAwareExecutor:
        return CostAwareExecutor(
            Coordinator(store),
            keyring=KEYRING,
            verifier=verifier,
            name="agent-b",
            attrs={"service": "agent-b"},
            store=store,
        )

    root = Starlette(routes=[app("/solo", executor(None)), app("/shared", executor(shared_store()))])
    config = uvicorn.Config(root, log_level="critical")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    anyio.run({"tool-c": tool_c, "agent-b": agent_b}[sys.argv[1]])
