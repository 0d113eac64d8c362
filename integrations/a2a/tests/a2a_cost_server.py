"""A2A agents for the loopback tests, run in their own process: ``python a2a_cost_server.py``.

It serves JSON-RPC on 127.0.0.1 (a free port, printed on the first line of stdout) and signs with the hex key in
``AGENTCOST_A2A_TEST_KEY``. Under ``/cost`` a cost-aware agent (``CostAwareExecutor``) answers by the first word of
the message: ``search`` makes one priced LLM call and one paid lookup; ``summarize`` asks for an expensive call and
answers "skipped: budget" when it does not fit; ``crash`` records a call and raises; ``reply`` answers with a single
message instead of a task. Under ``/plain`` an agent that knows nothing of agentcost echoes the text.
"""

from __future__ import annotations

import os
import socket

import anyio
import uvicorn
from a2a.helpers import new_task_from_user_message, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from agentcost_a2a import CostAwareExecutor, cost_context, extension
from starlette.applications import Starlette
from starlette.routing import Mount

from agentcost import Usage
from agentcost.wire import Keyring, Verifier

KEYRING = Keyring({"k1": bytes.fromhex(os.environ["AGENTCOST_A2A_TEST_KEY"])}, active="k1")


class ResearchAgent(AgentExecutor):
    """Records what it spends on the run ``cost_context`` gives it."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        cost = cost_context(context)
        text = context.get_user_input()
        if text.startswith("reply"):
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=50, output_tokens=5))
            await event_queue.enqueue_event(new_text_message("a direct reply", context_id=context.context_id))
            return
        assert context.message is not None
        task = context.current_task or new_task_from_user_message(context.message)
        await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if text.startswith("search"):
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=1200, output_tokens=300))
            cost.record_tool("index-lookup", cost="0.002")
            answer = f"3 hits for {text.removeprefix('search ')!r}"
        elif text.startswith("summarize"):
            with cost.guard(
                model="gpt-4o", provider="openai", input_tokens=200_000, max_output_tokens=4000, optional=True
            ) as d:
                if d.admitted:
                    d.record(usage=Usage(input_tokens=200_000, output_tokens=4000))
                    answer = "a summary"
                else:
                    answer = "skipped: budget"
        elif text.startswith("crash"):
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=100, output_tokens=10))
            raise RuntimeError("the index is down")
        else:
            answer = f"tenant={cost.attrs.get('tenant')} left={cost.remaining().cost}"
        await updater.complete(updater.new_agent_message([new_text_message(answer).parts[0]]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


class PlainAgent(AgentExecutor):
    """Knows nothing of agentcost: echoes the text as a single message."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        await event_queue.enqueue_event(new_text_message(context.get_user_input().upper()))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def card(name: str, url: str, *, cost_aware: bool) -> AgentCard:
    return AgentCard(
        name=name,
        description=f"{name} for the loopback tests",
        version="1.0.0",
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", url=url, protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True, extensions=[extension()] if cost_aware else []),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="research", name="research", description="search and summarise", tags=["research"])],
    )


def app(executor: AgentExecutor, agent_card: AgentCard) -> Starlette:
    handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=agent_card)
    return Starlette(routes=[*create_agent_card_routes(agent_card), *create_jsonrpc_routes(handler, "/")])


async def main() -> None:
    # IPPROTO_TCP, as asyncio makes it when uvicorn binds a port itself: only then does asyncio turn Nagle off,
    # without which every response body waits 40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the port is printed: a client connecting at once is not refused
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    research = CostAwareExecutor(
        ResearchAgent(),
        keyring=KEYRING,
        verifier=Verifier(KEYRING, audience="research-agent"),
        name="research-agent",
        attrs={"agent": "research"},
    )
    root = Starlette(
        routes=[
            Mount("/cost", app(research, card("research-agent", f"{base}/cost/", cost_aware=True))),
            Mount("/plain", app(PlainAgent(), card("plain-agent", f"{base}/plain/", cost_aware=False))),
        ]
    )
    print(port, flush=True)
    config = uvicorn.Config(root, log_level="critical")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    anyio.run(main)
