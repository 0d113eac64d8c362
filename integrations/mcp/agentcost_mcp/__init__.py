"""agentcost for MCP tool servers and clients (the ``mcp`` SDK, 2.x).

On the server, :func:`cost_aware` runs a tool in a cost run opened from the signed context in the request's
``_meta`` (the caller's attribution and delegated budget) and returns the signed report in the result's ``_meta``::

    @server.tool()
    @agentcost_mcp.cost_aware(keyring=keyring, verifier=Verifier(keyring, audience="search-server"))
    async def search(query: str, cost: CostContext) -> str:
        cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=900, output_tokens=80))
        return "..."

On the client, :func:`call_tool` calls a tool as a tool node of the caller's context and grafts the report::

    with agentcost.run("agent") as ctx:
        result = await agentcost_mcp.call_tool(
            client, ctx, "search", {"query": "..."}, keyring=keyring, verifier=verifier, audience="search-server"
        )
"""

from __future__ import annotations

try:
    import mcp  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without the SDK
    raise ImportError(
        "agentcost_mcp needs the mcp SDK: pip install agentcost-mcp (or: pip install 'mcp>=2.3,<3')"
    ) from error

from agentcost_mcp._client import call_tool, graft
from agentcost_mcp._server import (
    CONTEXT_META_KEY,
    DEFAULT_MAX_REPORT_BYTES,
    REPORT_META_KEY,
    context_token,
    cost_aware,
    with_report,
)

__version__ = "0.1.0"

__all__ = [
    "CONTEXT_META_KEY",
    "DEFAULT_MAX_REPORT_BYTES",
    "REPORT_META_KEY",
    "__version__",
    "call_tool",
    "context_token",
    "cost_aware",
    "graft",
    "with_report",
]
