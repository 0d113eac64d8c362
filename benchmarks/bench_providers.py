"""Provider SDK adapters benchmark: the time ``agentcost_openai.wrap`` and ``agentcost_anthropic.wrap`` add to a call.

Run from the repository root::

    python benchmarks/bench_providers.py          # full run (about two minutes on a slow 2-core machine)
    python benchmarks/bench_providers.py --quick  # smoke run (about 20 s): fewer pairs

What it measures: time per call of the real ``openai`` and ``anthropic`` clients against the same local server
(``agentcost.testing.FakeProvider``, run in a separate process pinned to another CPU than this one, so that neither
preempts the other mid-call), bare and instrumented, in one run:

1. non-streaming calls (OpenAI chat completion; Anthropic ``messages.create``), 1,200 input and 300 output tokens
   reported. Peers: a *minimal recorder* (the client's ``request`` overridden by a hand-written function that calls
   through and appends the response's model and token counts to a list: the least any instrumentation that reads
   usage can do); agentcost on a run without a budget (one priced span per call); agentcost on a run with
   ``Budget(max_cost=1,000,000)`` (each call also admitted before it is sent and settled after). Target (from the
   issue): agentcost adds <= 20 us per call.
2. streams of 100 content chunks (deltas), consumed to the end: agentcost against bare, the same request on the wire
   (the OpenAI caller asks for ``stream_options.include_usage`` itself). Target: <= 2 % added. For information, an
   OpenAI stream whose caller does not ask for usage, which the adapter then adds: the server sends ``"usage":
   null`` in every chunk and one chunk more, so that difference is mostly the server's and the SDK's extra work.

Method: paired differences. A loopback call costs milliseconds and varies by hundreds of microseconds from one call
to the next, so comparing two batch medians cannot resolve 20 us. Each pair times one bare and one instrumented call
back to back, in alternating order; the figure is the median of the pairs' differences, with a distribution-free
95 % confidence interval (order statistics of the sorted differences). The cyclic gc is paused within each block of
pairs. Every instrumented peer records on a fresh run every 200 calls.

Correctness guard: after timing, the last run of each agentcost peer must hold one span per call with exactly the
usage the server reported and the price book's cost for it: a benchmark cannot time a broken adapter.
"""

from __future__ import annotations

import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from importlib.metadata import version
from typing import Any

import agentcost_anthropic
import agentcost_openai
from _harness import Summary, finish, median_with_interval, pin_apart, section, start, table
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
FRESH_RUN_EVERY = 200


def minimal_recorder(client: Any, log: list[tuple[str, int, int]], read: Callable[[Any], tuple[int, int]]) -> Any:
    """A copy of ``client`` whose every API call appends (model, input, output) from the response to ``log``."""
    copy = client.with_options()
    original = copy.request

    def request(cast_to: Any, options: Any, *, stream: bool = False, stream_cls: Any = None) -> Any:
        result = original(cast_to, options, stream=stream, stream_cls=stream_cls)
        log.append((result.model, *read(result.usage)))
        return result

    copy.request = request
    return copy


class Instrumented:
    """An instrumented client, re-bound to a fresh run every ``FRESH_RUN_EVERY`` calls (a run per request, as in
    an agent); the last run is kept for the guard."""

    def __init__(self, bare: Any, wrap: Callable[[Any, CostContext], Any], budget: Budget | None) -> None:
        self.bare = bare
        self.wrap = wrap
        self.budget = budget
        self.calls = 0
        self.ctx = agentcost.run("bench", budget=budget).__enter__()
        self.client = wrap(bare, self.ctx)

    def next_client(self) -> Any:
        if self.calls % FRESH_RUN_EVERY == 0:
            self.ctx = agentcost.run("bench", budget=self.budget).__enter__()
            self.client = self.wrap(self.bare, self.ctx)
        self.calls += 1
        return self.client

    def check(self, provider: str, model: str) -> None:
        """The guard: every call of the last run is a span with the server's usage and the book's price."""
        spans = [span for span in self.ctx.tree.spans() if span.kind == "llm"]
        price = self.ctx.pricing.price(model, USAGE, provider=provider)
        expected = (self.calls - 1) % FRESH_RUN_EVERY + 1
        assert len(spans) == expected, (len(spans), expected)
        for span in spans:
            assert (span.usage, span.cost, span.status) == (USAGE, price, "ok"), span


def paired(call: Callable[[Any], None], bare: Any, other: Callable[[], Any], pairs: int) -> tuple[list[int], list[int]]:
    """Time ``pairs`` pairs (bare call, other call) in alternating order; return the differences and bare times."""
    for _ in range(20):  # warm-up
        call(bare)
        call(other())
    differences: list[int] = []
    bare_times: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for number in range(pairs):
            client = other()
            if number % 2:
                started = clock()
                call(bare)
                middle = clock()
                call(client)
                ended = clock()
                bare_ns, other_ns = middle - started, ended - middle
            else:
                started = clock()
                call(client)
                middle = clock()
                call(bare)
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


def openai_chat(client: OpenAI) -> None:
    client.chat.completions.create(model="gpt-4o", messages=MESSAGES)


def openai_stream(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    for _ in stream:
        pass


def openai_stream_injected(client: OpenAI) -> None:
    for _ in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
        pass


def anthropic_message(client: Anthropic) -> None:
    client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MESSAGES)


def anthropic_stream(client: Anthropic) -> None:
    for _ in client.messages.create(model="claude-sonnet-4-6", max_tokens=1024, messages=MESSAGES, stream=True):
        pass


def non_streaming(
    label: str,
    bare: Any,
    wrap: Callable[[Any, CostContext], Any],
    call: Callable[[Any], None],
    provider: str,
    model: str,
    pairs: int,
    summary: Summary,
    read: Callable[[Any], tuple[int, int]],
) -> None:
    section(f"{label}, non-streaming: time added per call (paired)")
    log: list[tuple[str, int, int]] = []
    recorder = minimal_recorder(bare, log, read)
    unbudgeted = Instrumented(bare, wrap, None)
    budgeted = Instrumented(bare, wrap, Budget(max_cost=Decimal(1_000_000)))
    peers: list[tuple[str, Callable[[], Any], Instrumented | None]] = [
        ("minimal recorder (the floor)", lambda: recorder, None),
        ("agentcost, no budget", unbudgeted.next_client, unbudgeted),
        ("agentcost, with budget", budgeted.next_client, budgeted),
    ]
    rows = []
    for name, other, instrumented in peers:
        differences, bare_times = paired(call, bare, other, pairs)
        added, low, high = median_with_interval(differences)
        bare_us = statistics.median(bare_times) / 1000
        rows.append([name, f"{bare_us:,.0f}", f"{added:+.1f}", f"{low:+.1f} .. {high:+.1f}", f"{added / bare_us:+.2%}"])
        if instrumented is not None:
            instrumented.check(provider, model)
            summary.add(f"{label} {name}: <= 20 us added", f"{added:+.1f} us", added <= 20)
    assert log[-1] == (model, USAGE.input_tokens, USAGE.output_tokens), log[-1]
    print(table(["peer", "bare us/call", "added us (median)", "95 % CI", "added / bare"], rows))


def streaming(
    label: str,
    bare: Any,
    wrap: Callable[[Any, CostContext], Any],
    call: Callable[[Any], None],
    provider: str,
    model: str,
    pairs: int,
    summary: Summary | None,
) -> None:
    instrumented = Instrumented(bare, wrap, None)
    differences, bare_times = paired(call, bare, instrumented.next_client, pairs)
    instrumented.check(provider, model)
    added, low, high = median_with_interval(differences)
    bare_us = statistics.median(bare_times) / 1000
    print(
        table(
            ["peer", "bare us/stream", "added us (median)", "95 % CI", "added / bare"],
            [[label, f"{bare_us:,.0f}", f"{added:+.1f}", f"{low:+.1f} .. {high:+.1f}", f"{added / bare_us:+.2%}"]],
        )
    )
    if summary is not None:
        summary.add(f"{label}: <= 2 % added", f"{added / bare_us:+.2%}", added / bare_us <= 0.02)


def main(argv: list[str] | None = None) -> int:
    quick = start(
        __doc__,
        argv,
        f"openai {version('openai')}, anthropic {version('anthropic')}, agentcost {agentcost.__version__}",
        "fewer pairs, for CI",
    )
    pairs, stream_pairs = (300, 40) if quick else (3000, 300)
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdin is not None
    pinned = pin_apart(server.pid)
    base_url = server.stdout.readline().strip()
    print(
        f"{pairs} pairs per non-streaming peer, {stream_pairs} per stream; client and server on separate CPUs: {pinned}"
    )
    summary = Summary()
    try:
        openai_bare = OpenAI(base_url=base_url + "/v1", api_key="bench", max_retries=0)
        anthropic_bare = Anthropic(base_url=base_url, api_key="bench", max_retries=0)
        non_streaming(
            "openai chat",
            openai_bare,
            agentcost_openai.wrap,
            openai_chat,
            "openai",
            "gpt-4o",
            pairs,
            summary,
            lambda usage: (usage.prompt_tokens, usage.completion_tokens),
        )
        non_streaming(
            "anthropic messages",
            anthropic_bare,
            agentcost_anthropic.wrap,
            anthropic_message,
            "anthropic",
            "claude-sonnet-4-6",
            pairs,
            summary,
            lambda usage: (usage.input_tokens, usage.output_tokens),
        )
        section("100-chunk streams, consumed to the end: time added per stream (paired)")
        args = (stream_pairs,)
        streaming(
            "openai stream", openai_bare, agentcost_openai.wrap, openai_stream, "openai", "gpt-4o", *args, summary
        )
        streaming(
            "anthropic stream",
            anthropic_bare,
            agentcost_anthropic.wrap,
            anthropic_stream,
            "anthropic",
            "claude-sonnet-4-6",
            *args,
            summary,
        )
        streaming(
            "(info) openai stream, include_usage added by the adapter",
            openai_bare,
            agentcost_openai.wrap,
            openai_stream_injected,
            "openai",
            "gpt-4o",
            *args,
            None,
        )
    finally:
        server.stdin.close()
        server.wait(timeout=10)
    finish(summary, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
