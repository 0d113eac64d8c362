"""agentcost for A2A agents (the ``a2a-sdk``, 1.x): an opt-in extension identified by :data:`EXTENSION_URI`.

On the server, :class:`CostAwareExecutor` runs an ``AgentExecutor`` in a cost run opened from the signed context in
the request message's metadata (the caller's attribution and delegated budget) and returns the signed report in the
metadata of the event that ends the execution; the wrapped executor finds its run with :func:`cost_context`::

    class SearchAgent(AgentExecutor):
        async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
            cost = agentcost_a2a.cost_context(context)
            cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=900, output_tokens=80))
            await event_queue.enqueue_event(new_text_message("..."))

    executor = agentcost_a2a.CostAwareExecutor(SearchAgent(), keyring=keyring, verifier=verifier, name="search-agent")

On the client, :func:`send_message` sends a message as an agent node of the caller's context and grafts the report::

    with agentcost.run("planner") as ctx:
        events = await agentcost_a2a.send_message(
            client, ctx, message, keyring=keyring, verifier=verifier, audience="search-agent"
        )

Declare the extension in the agent card: ``AgentCapabilities(extensions=[agentcost_a2a.extension()])``.
"""

from __future__ import annotations

try:
    import a2a.server.agent_execution  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without the SDK
    raise ImportError(
        "agentcost_a2a needs the a2a SDK: pip install agentcost-a2a (or: pip install 'a2a-sdk[http-server]>=1.3,<2')"
    ) from error

from agentcost_a2a._client import graft, send_message
from agentcost_a2a._extension import (
    DEFAULT_MAX_REPORT_BYTES,
    EXTENSION_URI,
    attach_report,
    context_token,
    extension,
    report_token,
)
from agentcost_a2a._server import CostAwareExecutor, cost_context

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_REPORT_BYTES",
    "EXTENSION_URI",
    "CostAwareExecutor",
    "__version__",
    "attach_report",
    "context_token",
    "cost_context",
    "extension",
    "graft",
    "report_token",
    "send_message",
]
