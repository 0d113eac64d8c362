"""A kagenti-adk agent in its own process and its own environment (kagenti-adk pins a pre-release a2a-sdk), called
with agentcost_a2a and the a2a-sdk's real client over JSON-RPC on 127.0.0.1: its priced LLM call (the real openai
client against the fake provider) is grafted into the caller's tree, its delegated budget skips an expensive call
gracefully, and a caller without agentcost keeps working.

kagenti-adk cannot share the test environment (it pins a2a-sdk 1.0.0a0; agentcost-a2a needs 1.3), so the agent runs
under the interpreter of its own environment: ``AGENTCOST_KAGENTI_PYTHON``, or ``.venv-kagenti``, which the first
test builds from the project's files. Where that fails the tests skip, saying why, except in CI, where they fail.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import NoReturn, TypeVar

import anyio
import httpx
import pytest
from a2a.client import Client, ClientConfig, create_client
from a2a.helpers import get_message_text, new_text_message
from a2a.types import Role, SendMessageRequest, StreamResponse
from agentcost_a2a import EXTENSION_URI, report_token, send_message

import agentcost
from agentcost import Budget, CostContext, Span, Usage
from agentcost.testing import FakeProvider, Reply
from agentcost.wire import DelegatedBudget, Keyring, Verifier

AGENT_SCRIPT = Path(__file__).with_name("kagenti_cost_agent.py")
PYPROJECT = "integrations/kagenti/pyproject.toml"
KEY = secrets.token_bytes(32)
KEYRING = Keyring({"k1": KEY}, active="k1")
AUDIENCE = "kagenti-researcher"
T = TypeVar("T")


REPO = Path(__file__).resolve().parents[3]
KAGENTI_ENV = REPO / ".venv-kagenti"
KAGENTI_INSTALL = ("-e", str(REPO), "-e", str(REPO / "integrations/openai"), "-e", str(REPO / "integrations/kagenti"))


def kagenti_python() -> str:
    """The interpreter of kagenti-adk's environment: ``AGENTCOST_KAGENTI_PYTHON``, or ``.venv-kagenti`` at the root of
    the checkout, built here from the project's own files on first use (and rebuilt when their dependencies change).
    Where that cannot be done, a skip saying why (a failure in CI)."""
    named = os.environ.get("AGENTCOST_KAGENTI_PYTHON")
    if named:
        if Path(named).is_file():
            return named
        unavailable(f"AGENTCOST_KAGENTI_PYTHON names {named!r}, which is not a file")
    python = KAGENTI_ENV / "bin" / "python"
    stamp = KAGENTI_ENV / "agentcost-installed"
    wanted = "\n".join(
        (REPO / path).read_text() for path in ("pyproject.toml", "integrations/openai/pyproject.toml", PYPROJECT)
    )
    if python.is_file() and stamp.is_file() and stamp.read_text() == wanted:
        return str(python)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(KAGENTI_ENV)], check=True, capture_output=True, text=True
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *KAGENTI_INSTALL], check=True, capture_output=True, text=True
        )
    except subprocess.CalledProcessError as error:
        unavailable(f"could not build kagenti-adk's environment in {KAGENTI_ENV}: {error.stderr[-1500:]}")
    stamp.write_text(wanted)
    return str(python)


def unavailable(reason: str) -> NoReturn:
    """kagenti-adk's environment cannot be had: skip, or fail in CI (where it must run)."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(default=Reply(text="three papers", input_tokens=900, output_tokens=150)) as fake:
        yield fake


@contextmanager
def running_agent(script: Path, env: Mapping[str, str]) -> Iterator[str]:
    """Run ``script`` (a kagenti-adk agent serving on 127.0.0.1 at ``PORT``) in kagenti-adk's environment; yield
    its base URL once its agent card answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [kagenti_python(), str(script)],
        env={**os.environ, **env, "PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/.well-known/agent-card.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                assert process.stderr is not None
                pytest.fail(f"the kagenti agent {script.name} did not start: {process.stderr.read()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture(scope="module")
def agent_url(provider: FakeProvider) -> Iterator[str]:
    """The test agent's base URL; it runs in its own process for the whole module."""
    env = {"AGENTCOST_KAGENTI_TEST_KEY": KEY.hex(), "AGENTCOST_KAGENTI_PROVIDER_URL": provider.base_url}
    with running_agent(AGENT_SCRIPT, env) as url:
        yield url


def with_client(url: str, body: Callable[[Client], Awaitable[T]]) -> T:
    async def main() -> T:
        async with await create_client(url, client_config=ClientConfig(streaming=True)) as client:
            return await body(client)

    return anyio.run(main)


def ask(url: str, ctx: CostContext, text: str, *, budget: DelegatedBudget | None = None) -> list[StreamResponse]:
    check = Verifier(KEYRING, audience="planner", max_bytes=1_000_000)

    async def body(client: Client) -> list[StreamResponse]:
        return await send_message(
            client,
            ctx,
            new_text_message(text, role=Role.ROLE_USER),
            keyring=KEYRING,
            verifier=check,
            audience=AUDIENCE,
            budget=budget,
        )

    events = with_client(url, body)
    assert sum(check.rejected.values()) == 0
    return events


def answer(events: list[StreamResponse]) -> str:
    last = events[-1]
    if last.HasField("message"):
        return get_message_text(last.message)
    status = last.task.status if last.HasField("task") else last.status_update.status
    return get_message_text(status.message)


def agent_node(ctx: CostContext) -> Span:
    [span] = [span for span in ctx.tree.find() if span.name == AUDIENCE and span.parent is ctx.span]
    return span


def test_the_kagenti_agents_llm_call_is_grafted_priced_and_exact(agent_url: str, provider: FakeProvider) -> None:
    """The chat completion the agent made (what the provider's ledger says it reported) and its paid lookup hang
    under the caller's agent node with source remote; the caller's total is the exact sum of both processes.
    (Streaming only: kagenti-adk 0.8.1 never answers a non-streaming ``SendMessage``, with or without agentcost.)"""
    provider.reset()
    with agentcost.run("planner", attrs={"team": "research"}, budget=Budget(max_cost=Decimal("1"))) as ctx:
        events = ask(agent_url, ctx, "research cost trees")
        ctx.record_llm(model="gpt-4o-mini", provider="openai", usage=Usage(input_tokens=100, output_tokens=20))

    assert answer(events) == "found: three papers"
    [exchange] = provider.ledger
    assert exchange.model == "gpt-4o-mini"
    assert exchange.usage is not None
    agent = agent_node(ctx)
    assert agent.kind == "agent"
    assert agent.status == "ok"
    [llm] = [span for span in ctx.tree.find(kind="llm") if span.parent is agent]
    [lookup] = [span for span in ctx.tree.find(kind="tool") if span.parent is agent]
    assert (llm.usage.input_tokens, llm.usage.output_tokens) == (900, 150)
    assert llm.cost == ctx.pricing.price("gpt-4o-mini", exchange.usage, provider="openai")
    assert (llm.cost_source, lookup.cost, lookup.cost_source) == ("remote", Decimal("0.003"), "remote")
    assert (llm.attrs["team"], llm.attrs["agent"]) == ("research", "kagenti-researcher")  # travelled; pinned added
    assert llm.cost is not None
    assert agent.total_cost == llm.cost + Decimal("0.003")
    assert ctx.span.total_cost == sum((span.cost or Decimal(0) for span in ctx.tree.find()), Decimal(0))
    assert ctx.remaining().cost == Decimal("1") - ctx.span.total_cost  # counted against the budget once


def test_the_delegated_budget_skips_the_expensive_call_gracefully(agent_url: str, provider: FakeProvider) -> None:
    """The agent's 100,000-token gpt-4o summary (about $0.29) fits its own $0.50 cap, and is made when the caller
    delegates $1; a one-cent delegated budget cannot pay for it: the agent answers "skipped: budget", nothing reaches
    the provider, and the caller's run finishes."""
    provider.reset()
    with agentcost.run("planner") as ctx:
        events = ask(agent_url, ctx, "summarize everything", budget=DelegatedBudget(cost=Decimal("1")))
    assert answer(events) == "summary: three papers"
    assert [exchange.model for exchange in provider.ledger] == ["gpt-4o"]
    assert agent_node(ctx).total_cost > 0

    provider.reset()
    with agentcost.run("planner") as ctx:
        events = ask(agent_url, ctx, "summarize everything", budget=DelegatedBudget(cost=Decimal("0.01")))
    assert answer(events) == "skipped: budget"
    assert provider.ledger == []
    agent = agent_node(ctx)
    assert agent.status == "ok"
    assert agent.total_cost == 0
    assert ctx.span.ended_at is not None


def test_the_agent_sees_the_callers_attribution_and_a_budget_never_wider_than_its_own(agent_url: str) -> None:
    """The tenant travels in the context; a $5 delegated budget is narrowed to the agent's own $0.50 cap."""
    with agentcost.run("planner", attrs={"tenant": "acme"}) as ctx:
        events = ask(agent_url, ctx, "status", budget=DelegatedBudget(cost=Decimal("5")))
    assert answer(events) == "tenant=acme left=0.50"


def test_a_caller_without_agentcost_gets_a_plain_answer_and_no_report(agent_url: str) -> None:
    """The SDK's client alone, no context: the agent works as its own run and sends no report."""

    async def body(client: Client) -> list[StreamResponse]:
        request = SendMessageRequest(message=new_text_message("status", role=Role.ROLE_USER))
        return [event async for event in client.send_message(request)]

    events = with_client(agent_url, body)
    assert answer(events) == "tenant=None left=0.50"
    last = events[-1]
    carrier = last.task if last.HasField("task") else last.status_update
    assert report_token(carrier) is None
    assert EXTENSION_URI not in carrier.metadata.fields


@pytest.mark.parametrize("value", [42, "v1.not-a-token", {"budget": {"cost": "1000"}}])
def test_a_malformed_context_value_is_treated_as_none_not_a_failed_task(agent_url: str, value: object) -> None:
    """Whatever a peer puts under the URI, the task runs (kagenti-adk's own validation would fail it) as the agent's
    own run, with no report."""

    async def body(client: Client) -> list[StreamResponse]:
        message = new_text_message("status", role=Role.ROLE_USER)
        message.metadata[EXTENSION_URI] = value
        return [event async for event in client.send_message(SendMessageRequest(message=message))]

    events = with_client(agent_url, body)
    assert answer(events) == "tenant=None left=0.50"
    last = events[-1]
    assert report_token(last.task if last.HasField("task") else last.status_update) is None


def test_a_tampered_context_is_treated_as_none(agent_url: str) -> None:
    """A context whose signature does not match is no context: the agent runs on its own, sends no report, and the
    caller's node records its cost as unknown rather than trusting anything."""
    forged = Keyring({"k1": secrets.token_bytes(32)}, active="k1")
    check = Verifier(KEYRING, audience="planner")
    with agentcost.run("planner", attrs={"tenant": "acme"}) as ctx:

        async def body(client: Client) -> list[StreamResponse]:
            return await send_message(
                client,
                ctx,
                new_text_message("status", role=Role.ROLE_USER),
                keyring=forged,
                verifier=check,
                audience=AUDIENCE,
            )

        events = with_client(agent_url, body)
    assert answer(events) == "tenant=None left=0.50"  # the forged context's attribution was not believed
    agent = agent_node(ctx)
    assert agent.total_cost == 0
    [plain] = [span for span in ctx.tree.find(kind="tool") if span.parent is agent]
    assert plain.cost is None  # unreported: unknown, not zero


def test_the_kagenti_guide_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/kagenti.md: its agent runs in kagenti-adk's environment, its caller here, and the caller's asserts hold."""
    page = REPO / "docs" / "kagenti.md"
    agent, caller = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    script = tmp_path / "researcher.py"
    script.write_text(agent, encoding="utf-8")
    key = secrets.token_hex(32)
    with running_agent(script, {"AGENTCOST_KEY": key}) as url:
        monkeypatch.setenv("AGENTCOST_KEY", key)
        monkeypatch.setenv("RESEARCHER_URL", url)
        namespace: dict[str, object] = {"__name__": "docs_kagenti"}
        exec(compile(caller, "kagenti.md[caller]", "exec"), namespace)
    tree = namespace["ctx"]
    assert isinstance(tree, CostContext)
    assert tree.tree.total_cost > 0
