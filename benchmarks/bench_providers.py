"""Provider SDK adapters benchmark: the time ``agentcost_openai.wrap`` and ``agentcost_anthropic.wrap`` add to a call.

Run from the repository root::

    python benchmarks/bench_providers.py          # full run (about a minute on a slow 2-core machine)
    python benchmarks/bench_providers.py --quick  # smoke run (about 15 s): fewer batches

What it measures: time per call of the real ``openai`` and ``anthropic`` clients against the same local server
(``agentcost.testing.FakeProvider``, run in a separate process so that its work does not compete with the client's
for this process's GIL), bare and wrapped, in one run:

1. OpenAI chat completion, non-streaming: the bare client; wrapped on a run without a budget (one span per call,
   priced); wrapped on a run with ``Budget(max_cost=1,000,000)`` (each call also admitted before it is sent and
   settled after). Target (from the issue): added time <= 20 us per call.
2. OpenAI chat completion streamed, 100 content chunks, consumed to the end: bare against wrapped (the adapter adds
   ``stream_options.include_usage`` to the wrapped request, so the server sends one more chunk, with the usage,
   which the adapter reads and keeps from the caller). Target: <= 2 % added.
3. The same two for Anthropic ``messages.create`` (non-streaming, and ``stream=True`` with 100 text deltas).

Each peer's added time is its median minus the bare client's median, over interleaved batches (rotating order, the
cyclic gc paused in each batch, every wrapped peer starting each batch on a fresh run). Loopback HTTP makes a single
call cost hundreds of microseconds, so the added time is a small difference of two large numbers: the batches are
many, and min/max are printed to show the spread.

Correctness guard: after the timed batches, each wrapped peer's last run must hold one span per call with exactly the
usage the server reported and the price book's cost for it; a benchmark cannot time a broken adapter.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import agentcost_anthropic
import agentcost_openai
from _harness import Peer, Summary, finish, run_interleaved, section, start, table
from anthropic import Anthropic
from openai import OpenAI

import agentcost
from agentcost import Budget, CostContext, Usage

SERVER = """
import sys
from agentcost.testing import FakeProvider, Reply
with FakeProvider(default=Reply(text=" ".join(["word"] * 100), input_tokens=1200, output_tokens=300, chunks=100)) as f:
    print(f.base_url, flush=True)
    sys.stdin.read()
"""

MESSAGES: Any = [{"role": "user", "content": "What is the capital of France?"}]
USAGE = Usage(1200, 300)


@dataclass(frozen=True)
class Config:
    calls: int
    batches: int


FULL = Config(calls=40, batches=31)
QUICK = Config(calls=20, batches=9)


class Runs:
    """A fresh run (and client bound to it) per batch, for a wrapped peer; the last one is kept for the guard."""

    def __init__(self, wrap: Callable[[CostContext], Any], budget: Budget | None) -> None:
        self.wrap = wrap
        self.budget = budget
        self.ctx: CostContext | None = None
        self.client: Any = None

    def reset(self) -> None:
        self.ctx = agentcost.run("bench", budget=self.budget).__enter__()
        self.client = self.wrap(self.ctx)


def peers_for(
    label: str,
    bare: Any,
    wrap: Callable[[Any, CostContext], Any],
    call: Callable[[Any], None],
    n: int,
    budgeted: bool,
) -> tuple[list[Peer], list[Runs]]:
    def batch_bare(count: int) -> None:
        for _ in range(count):
            call(bare)

    peers = [Peer(f"{label}: bare client", batch_bare, n)]
    runs: list[Runs] = []
    variants: list[tuple[str, Budget | None]] = [("wrapped, no budget", None)]
    if budgeted:
        variants.append(("wrapped, with budget", Budget(max_cost=Decimal(1_000_000))))
    for name, budget in variants:
        runs_of = Runs(lambda ctx: wrap(bare, ctx), budget)

        def batch(count: int, runs_of: Runs = runs_of) -> None:
            client = runs_of.client
            for _ in range(count):
                call(client)

        peers.append(Peer(f"{label}: {name}", batch, n, runs_of.reset))
        runs.append(runs_of)
    return peers, runs


def check(runs: Runs, provider: str, model: str, expected_spans: int) -> None:
    """The guard: every call of the last batch is a span with the server's usage and the book's price."""
    assert runs.ctx is not None
    spans = [span for span in runs.ctx.tree.spans() if span.kind == "llm"]
    price = runs.ctx.pricing.price(model, USAGE, provider=provider)
    assert len(spans) == expected_spans, (len(spans), expected_spans)
    for span in spans:
        assert (span.usage, span.cost, span.status) == (USAGE, price, "ok"), span
    assert runs.ctx.tree.total_cost == price * expected_spans  # type: ignore[operator]


def openai_chat(client: OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def openai_stream(client: OpenAI) -> None:
    for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
        pass


def anthropic_message(client: Anthropic) -> None:
    client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MESSAGES)


def anthropic_stream(client: Anthropic) -> None:
    for _ in client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MESSAGES, stream=True):
        pass


def measure(
    title: str, peers: list[Peer], batches: int, summary: Summary, target: str, limit: float, stream: bool
) -> list[Peer]:
    section(title)
    run_interleaved(peers, batches)
    floor = peers[0]
    rows = []
    for peer in peers:
        added = peer.median_us - floor.median_us
        rows.append(
            [
                peer.name,
                f"{peer.median_us:,.1f}",
                f"{peer.min_us:,.1f}",
                f"{peer.max_us:,.1f}",
                "" if peer is floor else f"{added:+,.1f}",
                "" if peer is floor else f"{peer.median_us / floor.median_us:.4f}",
            ]
        )
    print(table(["peer", "median us/call", "min", "max", "added us", "ratio to bare"], rows))
    for peer in peers[1:]:
        if stream:
            ratio = peer.median_us / floor.median_us
            summary.add(f"{peer.name}: {target}", f"{(ratio - 1) * 100:+.2f} %", ratio <= 1 + limit)
        else:
            added = peer.median_us - floor.median_us
            summary.add(f"{peer.name}: {target}", f"{added:+.1f} us", added <= limit)
    return peers


def main(argv: list[str] | None = None) -> int:
    quick = start(
        __doc__,
        argv,
        f"openai {version('openai')}, anthropic {version('anthropic')}, agentcost {agentcost.__version__}",
        "fewer batches, for CI",
    )
    config = QUICK if quick else FULL
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdin is not None
    base_url = server.stdout.readline().strip()
    summary = Summary()
    try:
        openai_bare = OpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=0)
        anthropic_bare = Anthropic(base_url=base_url, api_key="bench", max_retries=0)
        n = config.calls

        peers, runs = peers_for("openai chat", openai_bare, agentcost_openai.wrap, openai_chat, n, budgeted=True)
        measure("OpenAI chat completion, non-streaming", peers, config.batches, summary, "<= 20 us", 20.0, False)
        for run in runs:
            check(run, "openai", "gpt-4o", n)

        peers, runs = peers_for("openai stream", openai_bare, agentcost_openai.wrap, openai_stream, n // 4, False)
        measure("OpenAI chat completion, 100-chunk stream", peers, config.batches, summary, "<= 2 %", 0.02, True)
        check(runs[0], "openai", "gpt-4o", n // 4)

        peers, runs = peers_for(
            "anthropic messages", anthropic_bare, agentcost_anthropic.wrap, anthropic_message, n, budgeted=True
        )
        measure("Anthropic messages.create, non-streaming", peers, config.batches, summary, "<= 20 us", 20.0, False)
        for run in runs:
            check(run, "anthropic", "claude-sonnet-4-6", n)

        peers, runs = peers_for(
            "anthropic stream", anthropic_bare, agentcost_anthropic.wrap, anthropic_stream, n // 4, False
        )
        measure("Anthropic messages.create, 100-delta stream", peers, config.batches, summary, "<= 2 %", 0.02, True)
        check(runs[0], "anthropic", "claude-sonnet-4-6", n // 4)
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    finish(summary, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
