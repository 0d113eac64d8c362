"""Remote calls benchmark: the time ``agentcost_mcp`` adds to an MCP tool call and ``agentcost_a2a`` to an A2A message.

Run from the repository root::

    python benchmarks/bench_remote.py          # full run (about four minutes on a slow 2-core machine)
    python benchmarks/bench_remote.py --quick  # smoke run (about 40 s): fewer pairs and calls

What it measures: time per call of the SDKs' real clients against a real server in a separate process (pinned to
another CPU than this one, so that neither preempts the other mid-call), over loopback, with and without agentcost,
in one run. Every remote side runs the same body: a tiny function that records one priced LLM call (gpt-4o-mini,
1,200 input and 300 output tokens) in its cost run when it has one, and returns a short string.

1. MCP (``mcp`` SDK, streamable HTTP on 127.0.0.1, one server process, one client session): the bare peer is
   ``ClientSession.call_tool`` to a plain ``@server.tool()``; the instrumented peer is ``agentcost_mcp.call_tool``
   (a tool node, a signed context in the request's ``_meta``, the report grafted) to the same body under
   ``agentcost_mcp.cost_aware`` (a cost run opened from the context, the signed report in the result's ``_meta``),
   on a run without a budget, and on a run with ``Budget(max_cost=1,000,000)`` (the delegated budget travels and
   the tool's call is admitted against it). For information, to split client from server: the agentcost client
   against the plain tool (the client-side cost alone: no report, a plain tool span), and the bare client against
   the cost-aware tool (the server-side cost of a request without a context: a run of its own, no report).
2. A2A (``a2a-sdk`` 1.x, JSON-RPC over HTTP, non-streaming, one server process with two agents): the bare peer is
   the SDK's ``Client.send_message`` to an agent with a plain ``AgentExecutor``; the instrumented peer is
   ``agentcost_a2a.send_message`` (the context in ``Message.metadata`` and the extension header, the report grafted)
   to the same inner executor wrapped in ``agentcost_a2a.CostAwareExecutor``. Both agents answer with one message
   (no task), so the SDK's own work per message is the least it can be and the ratio is the largest. The same
   informational peers as for MCP.
3. Where the added time goes: agentcost's own steps (the caller's ``delegate`` and ``Delegation.receive``; the
   server's ``accept_context``, ``serve``, the tool's ``record_llm``, the run's ``end`` and ``Served.report``) and,
   within them, the wire format's four operations (``encode_context``, ``Verifier.verify_context``,
   ``encode_report``, ``Verifier.verify_report``), each timed two ways: hot, in-process on the very payloads of the
   calls above (the wire operations in batches interleaved as in bench_wire.py, the steps one remote call after
   another without transport); and inside real calls, in a further pass that repeats the no-budget peers of
   sections 1 and 2 (paired, as there) against servers started anew with agentcost's functions wrapped in timers
   on both sides (so that the timers, well under a microsecond each, stay out of sections 1 and 2; the split's
   total is this pass's own added time, measured together with its parts). The added time not spent in
   agentcost's steps is the adapters' glue and the SDKs carrying the larger request and response.

The issue sets no numeric target for these: the summary reports the measured values.

Method: paired differences. A loopback call costs milliseconds here and varies by hundreds of microseconds from one
call to the next, so comparing two batch medians cannot resolve the difference. Each pair times one bare and one
instrumented call back to back, in alternating order; the figure is the median of the pairs' differences, with a
distribution-free 95 % confidence interval (order statistics of the sorted differences). The cyclic gc is paused
within each block of pairs. Every instrumented peer records on a fresh run every 200 calls. The servers' listening
sockets are made as asyncio makes them when uvicorn binds a host and port itself (``IPPROTO_TCP``), so that asyncio
sets ``TCP_NODELAY`` on every connection: without it, a response written in two parts waits about 40 ms for the
client's delayed ACK.

Correctness guard: after timing, the last run of each agentcost peer must hold one node per call, each with the
server's LLM call grafted under it (cost source ``remote``, the usage the server recorded, the price book's cost),
and the last node's total must equal the totals of the final report the server sent for it: a benchmark cannot
time a broken adapter.
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from importlib.metadata import version
from types import ModuleType
from typing import Any, TypeVar

import agentcost_a2a
import agentcost_a2a._client
import agentcost_mcp
import agentcost_mcp._client
import anyio
from _harness import (
    Peer,
    Summary,
    finish,
    gc_paused,
    median_with_interval,
    pin_apart,
    run_interleaved,
    section,
    start,
    table,
)
from a2a.client import Client as A2AClient
from a2a.client import ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.types import Message, Role, SendMessageRequest, StreamResponse
from mcp import Client as MCPClient
from mcp import ClientSession
from mcp_types import CallToolResult, TextContent

import agentcost
import agentcost.remote
from agentcost import Budget, CostContext, Usage
from agentcost.remote import Delegation, delegate, serve
from agentcost.wire import (
    Keyring,
    Verifier,
    WireContext,
    WireTotals,
    accept_context,
    encode_context,
    encode_report,
)

KEY = secrets.token_bytes(32)
KEYRING = Keyring({"k1": KEY}, active="k1")
USAGE = Usage(1200, 300)
MODEL = "gpt-4o-mini"
ATTRS = {"team": "search", "user": "u-42", "feature": "answers"}
FRESH_RUN_EVERY = 200
QUERY = "loopback"
ANSWER = f"3 hits for {QUERY!r}"
T = TypeVar("T")

SERVER_COMMON = """
import os, socket, sys
import anyio, uvicorn
from agentcost import CostContext, Usage
from agentcost.wire import Keyring, Verifier

KEYRING = Keyring({"k1": bytes.fromhex(os.environ["AGENTCOST_BENCH_KEY"])}, active="k1")


def lookup(query: str, cost: CostContext | None) -> str:
    if cost is not None:
        cost.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=1200, output_tokens=300))
    return f"3 hits for {query!r}"
"""

SERVE_UNTIL_STDIN_CLOSES = """
import json, logging, time

logging.disable(logging.INFO)  # the SDKs' session start and stop notices
STEPS = {}
if os.environ.get("AGENTCOST_BENCH_STEPS"):  # time agentcost's steps inside the calls, written to stdout at the end
    import importlib
    import agentcost.remote

    def timed(owner, attr, label):
        fn = getattr(owner, attr)
        times = STEPS.setdefault(label, [])

        def wrapper(*args, **kwargs):
            started = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                times.append(time.perf_counter_ns() - started)

        setattr(owner, attr, wrapper)

    adapter = importlib.import_module(ADAPTER)  # its names, as its code looks them up
    timed(adapter, "accept_context", "server: accept_context")
    timed(adapter, "serve", "server: serve (open the run)")
    timed(CostContext, "record_llm", "server: record_llm (the tool's call)")
    timed(CostContext, "end", "server: end the run")
    timed(agentcost.remote.Served, "report", "server: Served.report")
    timed(Verifier, "verify_context", "wire: verify_context (server)")
    timed(agentcost.remote, "encode_report", "wire: encode_report (server)")


async def main() -> None:
    # proto=IPPROTO_TCP, as asyncio makes the socket when uvicorn binds a host and port itself: asyncio sets
    # TCP_NODELAY only on such sockets, and without it every response written in two parts (headers, body) waits
    # ~40 ms for the client's delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # listening before the port is printed: a client may connect the moment it reads it
    port = sock.getsockname()[1]
    app = make_app(f"http://127.0.0.1:{port}")
    print(port, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical"))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [sock])
        await anyio.to_thread.run_sync(sys.stdin.read)
        server.should_exit = True

anyio.run(main)
print(json.dumps(STEPS), flush=True)
"""

MCP_SERVER = (
    SERVER_COMMON
    + """
from agentcost_mcp import cost_aware
from mcp.server import MCPServer

ADAPTER = "agentcost_mcp._server"

server = MCPServer("bench-server")
aware = cost_aware(
    keyring=KEYRING, verifier=Verifier(KEYRING, audience="bench-server"), name="bench-server", attrs={"server": "bench"}
)


@server.tool()
async def plain_lookup(query: str) -> str:
    return lookup(query, None)


@server.tool()
@aware
async def lookup_priced(query: str, cost: CostContext) -> str:
    return lookup(query, cost)


def make_app(base):
    return server.streamable_http_app()
"""
    + SERVE_UNTIL_STDIN_CLOSES
)

A2A_SERVER = (
    SERVER_COMMON
    + """
from a2a.helpers import new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from agentcost_a2a import CostAwareExecutor, cost_context, extension
from starlette.applications import Starlette
from starlette.routing import Mount

ADAPTER = "agentcost_a2a._server"


class LookupAgent(AgentExecutor):
    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        try:
            cost = cost_context(context)
        except LookupError:
            cost = None
        text = lookup(context.get_user_input(), cost)
        await event_queue.enqueue_event(new_text_message(text, context_id=context.context_id))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


def card(name: str, url: str, cost_aware: bool) -> AgentCard:
    return AgentCard(
        name=name,
        description=name,
        version="1.0.0",
        supported_interfaces=[AgentInterface(protocol_binding="JSONRPC", url=url, protocol_version="1.0")],
        capabilities=AgentCapabilities(streaming=True, extensions=[extension()] if cost_aware else []),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="lookup", name="lookup", description="lookup", tags=["lookup"])],
    )


def agent(executor: AgentExecutor, agent_card: AgentCard) -> Starlette:
    handler = DefaultRequestHandler(agent_executor=executor, task_store=InMemoryTaskStore(), agent_card=agent_card)
    return Starlette(routes=[*create_agent_card_routes(agent_card), *create_jsonrpc_routes(handler, "/")])


def make_app(base):
    inner = LookupAgent()
    aware = CostAwareExecutor(
        inner,
        keyring=KEYRING,
        verifier=Verifier(KEYRING, audience="bench-agent"),
        name="bench-agent",
        attrs={"server": "bench"},
    )
    return Starlette(
        routes=[
            Mount("/plain", agent(inner, card("plain-agent", base + "/plain/", False))),
            Mount("/cost", agent(aware, card("bench-agent", base + "/cost/", True))),
        ]
    )
"""
    + SERVE_UNTIL_STDIN_CLOSES
)

Call = Callable[[], Awaitable[object]]
"""One remote call, awaited inside the timed region."""


class ServerProcess:
    """``script`` run in its own process, pinned apart from this one (``pinned``: whether that worked), listening on
    ``port``; it stops when its stdin is closed. With ``steps``, it times agentcost's steps inside every call and
    hands the times over when it stops (``steps``: label to times in ns)."""

    def __init__(self, script: str, *, steps: bool = False) -> None:
        env = {**os.environ, "AGENTCOST_BENCH_KEY": KEY.hex(), "AGENTCOST_BENCH_STEPS": "1" if steps else ""}
        self.process = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.steps: dict[str, list[int]] = {}
        try:
            self.pinned = pin_apart(self.process.pid)
            assert self.process.stdout is not None
            self.port = int(self.process.stdout.readline())
        except BaseException:
            self.process.kill()
            self.process.wait()
            raise

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        output = self.process.stdout.read()
        self.process.wait(timeout=10)
        self.process.stdout.close()
        self.steps = json.loads(output or "{}")


@contextmanager
def step_timers(adapter_client: ModuleType) -> Iterator[dict[str, list[int]]]:
    """Time agentcost's caller-side steps inside real calls (the functions wrapped, as the adapter looks them up, and
    restored after); yields label to times in ns."""
    steps: dict[str, list[int]] = {}
    targets: list[tuple[object, str, str]] = [
        (adapter_client, "delegate", "caller: delegate"),
        (Delegation, "receive", "caller: Delegation.receive"),
        (agentcost.remote, "encode_context", "wire: encode_context (caller)"),
        (Verifier, "verify_report", "wire: verify_report (caller)"),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in targets]

    def timed(fn: Callable[..., T], times: list[int]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter_ns()
            try:
                return fn(*args, **kwargs)
            finally:
                times.append(time.perf_counter_ns() - started)

        return wrapper

    try:
        for owner, attr, label in targets:
            setattr(owner, attr, timed(getattr(owner, attr), steps.setdefault(label, [])))
        yield steps
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


async def paired(bare: Call, other: Callable[[], Call], pairs: int) -> tuple[list[int], list[int]]:
    """Time ``pairs`` pairs (bare call, other call) in alternating order; return the differences and bare times.
    ``other()`` (untimed) returns the next instrumented call."""
    for _ in range(20):  # warm-up
        await bare()
        await other()()
    differences: list[int] = []
    bare_times: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for number in range(pairs):
            call = other()
            if number % 2:
                started = clock()
                await bare()
                middle = clock()
                await call()
                ended = clock()
                bare_ns, other_ns = middle - started, ended - middle
            else:
                started = clock()
                await call()
                middle = clock()
                await bare()
                ended = clock()
                other_ns, bare_ns = middle - started, ended - middle
            differences.append(other_ns - bare_ns)
            bare_times.append(bare_ns)
            if number % 250 == 249:
                gc.enable()
                gc.collect()
                gc.disable()
    finally:
        gc.enable()
    return differences, bare_times


class Instrumented:
    """Calls through agentcost on a run re-opened every ``FRESH_RUN_EVERY`` calls (a run per request, as in an
    agent); the last run and the last call's result are kept for the guard."""

    def __init__(self, invoke: Callable[[CostContext], Awaitable[Any]], budget: Budget | None) -> None:
        self.invoke = invoke
        self.budget = budget
        self.calls = 0
        self.ctx = self.fresh_run()
        self.last: Any = None

    def fresh_run(self) -> CostContext:
        return agentcost.run("bench", attrs=ATTRS, budget=self.budget).__enter__()

    def next_call(self) -> Call:
        if self.calls % FRESH_RUN_EVERY == 0:
            self.ctx = self.fresh_run()
        self.calls += 1
        ctx = self.ctx

        async def call() -> None:
            self.last = await self.invoke(ctx)

        return call

    def nodes(self, kind: str, name: str) -> list[agentcost.Span]:
        """The nodes of the last run, one per call."""
        nodes = list(self.ctx.span.children)
        expected = (self.calls - 1) % FRESH_RUN_EVERY + 1
        assert len(nodes) == expected, (len(nodes), expected)
        for node in nodes:
            assert (node.kind, node.name, node.status) == (kind, name, "ok"), node
        return nodes

    def check_grafted(self, kind: str, name: str, report: object, verifier: Verifier) -> None:
        """The guard for a cost-aware server: each node holds the server's priced LLM call, grafted; the last node's
        totals are those of the final report ``report`` (the token the server sent with the last result)."""
        price = self.ctx.pricing.price(MODEL, USAGE, provider="openai")
        assert price is not None
        nodes = self.nodes(kind, name)
        for node in nodes:
            [llm] = node.children
            assert (llm.kind, llm.model, llm.usage, llm.cost, llm.cost_source, llm.status) == (
                "llm",
                MODEL,
                USAGE,
                price,
                "remote",
                "ok",
            ), llm
            assert node.total_cost == price
        assert self.ctx.span.total_cost == price * len(nodes)
        assert sum(verifier.rejected.values()) == 0, dict(verifier.rejected)
        final = Verifier(KEYRING, audience="bench", max_bytes=1_000_000).verify_report(report)
        assert final.final
        assert int(final.node, 16) == nodes[-1].id
        assert final.totals == WireTotals(
            cost=price, unpriced=0, spans=2, input_tokens=USAGE.input_tokens, output_tokens=USAGE.output_tokens
        )
        assert nodes[-1].total_cost == final.totals.cost

    def check_unreported(self, kind: str, name: str) -> None:
        """The guard for a plain server: each node holds one unpriced plain tool span."""
        for node in self.nodes(kind, name):
            [leaf] = node.children
            assert (leaf.kind, leaf.cost, leaf.cost_source, leaf.status) == ("tool", None, None, "ok"), leaf
        assert self.ctx.span.total_cost == 0


def row(name: str, differences: list[int], bare_times: list[int]) -> tuple[list[str], float, float]:
    """A table row, the median added time and the median bare time (us)."""
    added, low, high = median_with_interval(differences)
    bare_us = statistics.median(bare_times) / 1000
    cells = [name, f"{bare_us:,.0f}", f"{added:+.1f}", f"{low:+.1f} .. {high:+.1f}", f"{added / bare_us:+.2%}"]
    return cells, added, bare_us


HEADERS = ["peer", "bare us/call", "added us (median)", "95 % CI", "added / bare"]


def mcp_text(result: CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, TextContent)
    return block.text


def mcp_invoke(
    session: ClientSession, verifier: Verifier, tool: str
) -> Callable[[CostContext], Awaitable[CallToolResult]]:
    """A call of ``tool`` through ``agentcost_mcp.call_tool`` on a given run."""

    async def invoke(ctx: CostContext) -> CallToolResult:
        return await agentcost_mcp.call_tool(
            session, ctx, tool, {"query": QUERY}, keyring=KEYRING, verifier=verifier, audience="bench-server"
        )

    return invoke


async def bench_mcp(port: int, pairs: int, summary: Summary) -> float:
    """Section 1; returns the added time of the unbudgeted agentcost peer (us)."""
    section("1. MCP tool call over streamable HTTP: time added per call (paired)")
    verifier = Verifier(KEYRING, audience="bench", max_bytes=agentcost_mcp.DEFAULT_MAX_REPORT_BYTES)
    async with MCPClient(f"http://127.0.0.1:{port}/mcp") as client:
        session: ClientSession = client.session

        async def bare() -> CallToolResult:
            return await session.call_tool("plain_lookup", {"query": QUERY})

        async def bare_to_aware() -> CallToolResult:
            return await session.call_tool("lookup_priced", {"query": QUERY})

        unbudgeted = Instrumented(mcp_invoke(session, verifier, "lookup_priced"), None)
        budgeted = Instrumented(mcp_invoke(session, verifier, "lookup_priced"), Budget(max_cost=Decimal(1_000_000)))
        client_only = Instrumented(mcp_invoke(session, verifier, "plain_lookup"), None)
        peers: list[tuple[str, Callable[[], Call]]] = [
            ("agentcost, no budget", unbudgeted.next_call),
            ("agentcost, with budget", budgeted.next_call),
            ("(info) agentcost client, plain tool", client_only.next_call),
            ("(info) plain client, cost-aware tool", lambda: bare_to_aware),
        ]
        rows = []
        added_by_peer: dict[str, tuple[float, float]] = {}
        for name, other in peers:
            differences, bare_times = await paired(bare, other, pairs)
            cells, added, bare_us = row(name, differences, bare_times)
            rows.append(cells)
            added_by_peer[name] = (added, bare_us)
        unbudgeted.check_grafted("tool", "lookup_priced", unbudgeted.last.meta[agentcost_mcp.REPORT_META_KEY], verifier)
        budgeted.check_grafted("tool", "lookup_priced", budgeted.last.meta[agentcost_mcp.REPORT_META_KEY], verifier)
        client_only.check_unreported("tool", "plain_lookup")
        last_plain = await bare_to_aware()
        assert mcp_text(last_plain) == ANSWER
        assert agentcost_mcp.REPORT_META_KEY not in (last_plain.meta or {})
        assert mcp_text(await bare()) == ANSWER
    print(table(HEADERS, rows))
    for name in ("agentcost, no budget", "agentcost, with budget"):
        added, bare_us = added_by_peer[name]
        summary.add(f"MCP tool call, {name}: time added (reported)", f"{added:+.1f} us ({added / bare_us:+.1%})", True)
    return added_by_peer["agentcost, no budget"][0]


def a2a_text(events: list[StreamResponse]) -> str:
    [event] = events
    assert event.HasField("message"), event
    return get_message_text(event.message)


def message() -> Message:
    return new_text_message(QUERY, role=Role.ROLE_USER)


def a2a_invoke(
    client: A2AClient, verifier: Verifier, audience: str
) -> Callable[[CostContext], Awaitable[list[StreamResponse]]]:
    """A message to the agent ``audience`` through ``agentcost_a2a.send_message`` on a given run."""

    async def invoke(ctx: CostContext) -> list[StreamResponse]:
        return await agentcost_a2a.send_message(
            client, ctx, message(), keyring=KEYRING, verifier=verifier, audience=audience
        )

    return invoke


def a2a_client(url: str) -> Awaitable[A2AClient]:
    return create_client(url, client_config=ClientConfig(streaming=False))


async def bench_a2a(port: int, pairs: int, summary: Summary) -> float:
    """Section 2; returns the added time of the unbudgeted agentcost peer (us)."""
    section("2. A2A message over JSON-RPC (non-streaming): time added per message (paired)")
    verifier = Verifier(KEYRING, audience="bench", max_bytes=agentcost_a2a.DEFAULT_MAX_REPORT_BYTES)
    base = f"http://127.0.0.1:{port}"
    async with await a2a_client(f"{base}/plain") as plain, await a2a_client(f"{base}/cost") as aware:

        async def send(client: A2AClient) -> list[StreamResponse]:
            return [event async for event in client.send_message(SendMessageRequest(message=message()))]

        async def bare() -> list[StreamResponse]:
            return await send(plain)

        async def bare_to_aware() -> list[StreamResponse]:
            return await send(aware)

        unbudgeted = Instrumented(a2a_invoke(aware, verifier, "bench-agent"), None)
        budgeted = Instrumented(a2a_invoke(aware, verifier, "bench-agent"), Budget(max_cost=Decimal(1_000_000)))
        client_only = Instrumented(a2a_invoke(plain, verifier, "plain-agent"), None)
        peers: list[tuple[str, Callable[[], Call]]] = [
            ("agentcost, no budget", unbudgeted.next_call),
            ("agentcost, with budget", budgeted.next_call),
            ("(info) agentcost client, plain agent", client_only.next_call),
            ("(info) plain client, cost-aware agent", lambda: bare_to_aware),
        ]
        rows = []
        added_by_peer: dict[str, tuple[float, float]] = {}
        for name, other in peers:
            differences, bare_times = await paired(bare, other, pairs)
            cells, added, bare_us = row(name, differences, bare_times)
            rows.append(cells)
            added_by_peer[name] = (added, bare_us)
        for instrumented in (unbudgeted, budgeted):
            [event] = instrumented.last
            assert a2a_text(instrumented.last) == ANSWER
            instrumented.check_grafted("agent", "bench-agent", agentcost_a2a.report_token(event.message), verifier)
        client_only.check_unreported("agent", "plain-agent")
        last_plain = await bare_to_aware()
        assert a2a_text(last_plain) == ANSWER
        assert agentcost_a2a.report_token(last_plain[0].message) is None
        assert a2a_text(await bare()) == ANSWER
    print(table(HEADERS, rows))
    for name in ("agentcost, no budget", "agentcost, with budget"):
        added, bare_us = added_by_peer[name]
        summary.add(f"A2A message, {name}: time added (reported)", f"{added:+.1f} us ({added / bare_us:+.1%})", True)
    return added_by_peer["agentcost, no budget"][0]


async def mcp_steps(port: int, pairs: int) -> tuple[float, dict[str, list[int]]]:
    """Section 1's first peer again, ``pairs`` pairs with agentcost's steps timed on this side (the server times
    its own); returns the added time (us, median) and the caller's step times."""
    verifier = Verifier(KEYRING, audience="bench", max_bytes=agentcost_mcp.DEFAULT_MAX_REPORT_BYTES)
    async with MCPClient(f"http://127.0.0.1:{port}/mcp") as client:
        session = client.session

        async def bare() -> CallToolResult:
            return await session.call_tool("plain_lookup", {"query": QUERY})

        instrumented = Instrumented(mcp_invoke(session, verifier, "lookup_priced"), None)
        with step_timers(agentcost_mcp._client) as steps:
            differences, _ = await paired(bare, instrumented.next_call, pairs)
    instrumented.check_grafted("tool", "lookup_priced", instrumented.last.meta[agentcost_mcp.REPORT_META_KEY], verifier)
    return median_with_interval(differences)[0], steps


async def a2a_steps(port: int, pairs: int) -> tuple[float, dict[str, list[int]]]:
    """Section 2's first peer again, ``pairs`` pairs with agentcost's steps timed on this side (the server times
    its own); returns the added time (us, median) and the caller's step times."""
    verifier = Verifier(KEYRING, audience="bench", max_bytes=agentcost_a2a.DEFAULT_MAX_REPORT_BYTES)
    base = f"http://127.0.0.1:{port}"
    async with await a2a_client(f"{base}/plain") as plain, await a2a_client(f"{base}/cost") as aware:

        async def bare() -> list[StreamResponse]:
            return [event async for event in plain.send_message(SendMessageRequest(message=message()))]

        instrumented = Instrumented(a2a_invoke(aware, verifier, "bench-agent"), None)
        with step_timers(agentcost_a2a._client) as steps:
            differences, _ = await paired(bare, instrumented.next_call, pairs)
    [event] = instrumented.last
    instrumented.check_grafted("agent", "bench-agent", agentcost_a2a.report_token(event.message), verifier)
    return median_with_interval(differences)[0], steps


WIRE = [
    "wire: encode_context (caller)",
    "wire: verify_context (server)",
    "wire: encode_report (server)",
    "wire: verify_report (caller)",
]
STEPS = [
    "caller: delegate",
    "server: accept_context",
    "server: serve (open the run)",
    "server: record_llm (the tool's call)",
    "server: end the run",
    "server: Served.report",
    "caller: Delegation.receive",
]
WARM_UP = 20


def hot_wire(batches: int, n: int) -> list[float]:
    """The wire format's operations in-process, hot (batches interleaved, as in bench_wire.py): median us each."""
    server_verifier = Verifier(KEYRING, audience="bench-server")
    client_verifier = Verifier(KEYRING, audience="bench", max_bytes=agentcost_mcp.DEFAULT_MAX_REPORT_BYTES)
    ctx = agentcost.run("bench", attrs=ATTRS).__enter__()
    delegation = delegate(ctx, "bench-server", keyring=KEYRING, name="lookup_priced", kind="tool")
    served = serve(server_verifier.verify_context(delegation.token), "bench-server", attrs={"server": "bench"})
    served.ctx.record_llm(model=MODEL, provider="openai", usage=USAGE)
    served.ctx.end()
    token = served.report(KEYRING)
    assert token is not None
    report = client_verifier.verify_report(token)
    contexts: list[str] = []
    verifiers: list[Verifier] = []

    def fresh_contexts() -> None:  # fresh nonces and a fresh replay window for each batch (untimed)
        context = delegation.context
        contexts[:] = [
            encode_context(
                WireContext.issue(KEYRING, root=context.root, parent=context.parent, aud=context.aud, attrs=ATTRS),
                KEYRING,
            )
            for _ in range(n)
        ]
        verifiers[:] = [Verifier(KEYRING, audience="bench-server")]

    def encoding_context(count: int) -> None:
        for _ in range(count):
            encode_context(delegation.context, KEYRING)

    def verifying_context(count: int) -> None:
        verify = verifiers[0].verify_context
        for index in range(count):
            verify(contexts[index])

    def encoding_report(count: int) -> None:
        for _ in range(count):
            encode_report(report, KEYRING)

    def verifying_report(count: int) -> None:
        for _ in range(count):
            client_verifier.verify_report(token)

    peers = [
        Peer(WIRE[0], encoding_context, n),
        Peer(WIRE[1], verifying_context, n, fresh_contexts),
        Peer(WIRE[2], encoding_report, n),
        Peer(WIRE[3], verifying_report, n),
    ]
    run_interleaved(peers, batches)
    print(f"tokens on the wire: context {len(delegation.token)} bytes, final report {len(token)} bytes")
    return [peer.median_us for peer in peers]


def hot_steps(samples: int) -> list[float]:
    """The protocol's steps in-process, hot (one remote call after another, no transport): median us each."""
    client_verifier = Verifier(KEYRING, audience="bench", max_bytes=agentcost_mcp.DEFAULT_MAX_REPORT_BYTES)
    server_verifier = Verifier(KEYRING, audience="bench-server")
    series: list[list[int]] = [[] for _ in STEPS]
    clock = time.perf_counter_ns

    def timed(index: int, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = clock()
        value = fn(*args, **kwargs)
        series[index].append(clock() - started)
        return value

    caller = agentcost.run("bench", attrs=ATTRS).__enter__()
    with gc_paused():
        for number in range(samples + WARM_UP):
            if number % FRESH_RUN_EVERY == 0:
                caller = agentcost.run("bench", attrs=ATTRS).__enter__()
            sent = timed(0, delegate, caller, "bench-server", keyring=KEYRING, name="lookup_priced", kind="tool")
            inbound = timed(1, accept_context, sent.token, server_verifier)
            remote = timed(2, serve, inbound, "bench-server", attrs={"server": "bench"})
            timed(3, remote.ctx.record_llm, model=MODEL, provider="openai", usage=USAGE)
            timed(4, remote.ctx.end)
            token = timed(5, remote.report, KEYRING)
            timed(6, sent.receive, token, client_verifier)
            assert sent.final is not None
    return [statistics.median(times[WARM_UP:]) / 1000 for times in series]


def where_it_goes(
    quick: bool, added: dict[str, float], in_calls: dict[str, dict[str, list[int]]], summary: Summary
) -> None:
    """Section 3: agentcost's steps and the wire format's operations, hot in-process and as timed inside the calls."""
    section("3. Where the added time goes: agentcost's steps, hot in-process and inside the calls")
    hot = hot_wire(*((5, 200) if quick else (15, 1000))) + hot_steps(200 if quick else 1000)
    labels = WIRE + STEPS
    inside = {
        protocol: [statistics.median(steps[label][WARM_UP:]) / 1000 for label in labels]
        for protocol, steps in in_calls.items()
    }
    protocols = list(inside)

    def block(first: int, last: int, total: str) -> list[list[str]]:
        rows = [
            [labels[index], f"{hot[index]:.1f}", *(f"{inside[p][index]:.1f}" for p in protocols)]
            for index in range(first, last)
        ]
        sums = [sum(hot[first:last]), *(sum(inside[p][first:last]) for p in protocols)]
        return [*rows, [total, *(f"{value:.1f}" for value in sums)]]

    pairs = len(next(iter(in_calls.values()))[STEPS[0]]) - WARM_UP
    print(
        f"inside the calls: the no-budget peers of sections 1 and 2 again, {pairs} pairs each, against servers\n"
        "started anew with agentcost's functions wrapped in timers on both sides (so that the timers stay out of\n"
        "sections 1 and 2); the added time below is this pass's own, so that both sides of the split are measured\n"
        "at the same time\n"
    )
    headers = ["median us per call", "hot, in-process", *(f"inside {p} calls" for p in protocols)]
    print(
        table(headers, block(0, len(WIRE), "wire format, per call") + block(len(WIRE), len(labels), "steps, per call"))
    )

    def share(us: float, protocol: str) -> list[str]:
        whole = added[protocol]
        return [f"{us:+.1f}", f"{us / whole:.0%}" if whole > 0 else "-"]

    steps = {p: sum(inside[p][len(WIRE) :]) for p in protocols}
    wire = {p: sum(inside[p][: len(WIRE)]) for p in protocols}
    parts: list[tuple[str, dict[str, float]]] = [
        ("added per call, no budget, in this pass (timers on)", added),
        ("  agentcost's steps inside the calls", steps),
        ("    of which the wire format", wire),
        ("  the rest (below)", {p: added[p] - steps[p] for p in protocols}),
    ]
    print()
    rows = [[name, *(cell for p in protocols for cell in share(values[p], p))] for name, values in parts]
    print(table(["where the added time goes", *(cell for p in protocols for cell in (f"{p} us", "share"))], rows))
    print(
        "the rest: the adapters' glue (metadata, copies of the message or result), and the SDKs carrying and\n"
        "parsing the larger request and response"
    )
    for p in protocols:
        summary.add(f"{p}: agentcost's steps inside a call (reported)", f"{steps[p]:.1f} us", True)
        summary.add(f"{p}: of which the wire format (reported)", f"{wire[p]:.1f} us", True)


def main(argv: list[str] | None = None) -> int:
    quick = start(
        __doc__,
        argv,
        f"mcp {version('mcp')}, a2a-sdk {version('a2a-sdk')}, agentcost {agentcost.__version__}",
        "fewer pairs, for CI",
    )
    pairs, calls = (300, 150) if quick else (2500, 800)
    started = time.perf_counter()
    summary = Summary()
    with ServerProcess(MCP_SERVER) as server:
        print(f"{pairs} pairs per peer; client and server on separate CPUs: {server.pinned}")
        added = {"MCP": anyio.run(bench_mcp, server.port, pairs, summary)}
    with ServerProcess(A2A_SERVER) as server:
        added["A2A"] = anyio.run(bench_a2a, server.port, pairs, summary)
    timed_added: dict[str, float] = {}
    in_calls: dict[str, dict[str, list[int]]] = {}
    with ServerProcess(MCP_SERVER, steps=True) as server:
        timed_added["MCP"], in_calls["MCP"] = anyio.run(mcp_steps, server.port, calls)
    in_calls["MCP"].update(server.steps)
    with ServerProcess(A2A_SERVER, steps=True) as server:
        timed_added["A2A"], in_calls["A2A"] = anyio.run(a2a_steps, server.port, calls)
    in_calls["A2A"].update(server.steps)
    where_it_goes(quick, timed_added, in_calls, summary)
    finish(summary, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
