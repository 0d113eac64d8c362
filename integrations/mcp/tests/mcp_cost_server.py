"""An MCP tool server for the loopback tests, run in its own process: ``python mcp_cost_server.py``.

It speaks streamable HTTP on 127.0.0.1 (a free port, printed on the first line of stdout) and signs with the hex key in
``AGENTCOST_MCP_TEST_KEY``. ``search`` makes one priced LLM call; ``summarize`` asks for an expensive one and answers
"skipped: budget" when it does not fit; ``crash`` records a call and raises; ``plain_lookup`` knows nothing of
agentcost.
"""

from __future__ import annotations

import os
import socket

import anyio
import uvicorn
from agentcost_mcp import cost_aware
from mcp.server import MCPServer

from agentcost import CostContext, Usage
from agentcost.wire import Keyring, Verifier

KEYRING = Keyring({"k1": bytes.fromhex(os.environ["AGENTCOST_MCP_TEST_KEY"])}, active="k1")
VERIFIER = Verifier(KEYRING, audience="search-server")

server = MCPServer("search-server")
aware = cost_aware(keyring=KEYRING, verifier=VERIFIER, name="search-server", attrs={"server": "search"})


@server.tool()
@aware
async def search(query: str, cost: CostContext) -> str:
    """Search the index and rerank the hits with an LLM."""
    cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=1200, output_tokens=300))
    cost.record_tool("index-lookup", cost="0.002")
    return f"3 hits for {query!r}"


@server.tool()
@aware
async def summarize(text: str, cost: CostContext) -> str:
    """Summarise with a large model, if the delegated budget allows it."""
    with cost.guard(
        model="gpt-4o", provider="openai", input_tokens=200_000, max_output_tokens=4000, optional=True
    ) as d:
        if not d.admitted:
            return "skipped: budget"
        d.record(usage=Usage(input_tokens=200_000, output_tokens=4000))
    return f"summary of {len(text)} characters"


@server.tool()
@aware
def crash(cost: CostContext) -> str:
    """Spend, then fail (a sync tool: it runs on a worker thread)."""
    cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=100, output_tokens=10))
    raise RuntimeError("the index is down")


@server.tool()
def plain_lookup(key: str) -> str:
    """A tool that knows nothing of agentcost."""
    return key.upper()


async def main() -> None:
    # IPPROTO_TCP, as asyncio makes it when uvicorn binds a port itself: only then does asyncio turn Nagle off,
    # without which every response body waits 40 ms for the client's delayed ACK
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the port is printed: a client connecting at once is not refused
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(server.streamable_http_app(), log_level="warning")
    await uvicorn.Server(config).serve(sockets=[sock])


if __name__ == "__main__":
    anyio.run(main)
