"""agentcost.otel: finished spans to OpenTelemetry, with the real SDK and the real OTLP/HTTP exporter.

Attributes follow the GenAI semantic conventions, costs are on the spans that incurred them only (the exported amounts
add up to the run's total exactly), and a collector that never answers costs the agent nothing: the call path stays
fast, the queue stays bounded, the process exits promptly, and every span is either exported or counted as dropped.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import agentcost
from agentcost import Budget, CostContext, PriceBook, Usage
from agentcost.otel import CountingExporter, OTelSink, trace_id_of

ROOT = Path(__file__).resolve().parent.parent
USAGE = Usage(input_tokens=1200, output_tokens=300)


# -- helpers -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def sinks() -> Iterator[list[OTelSink]]:
    """Sinks made by a test, shut down (and their background work waited for) when it ends."""
    made: list[OTelSink] = []
    yield made
    for sink in made:
        assert sink.shutdown(timeout=15), "the sink's worker did not finish"


@pytest.fixture
def blackhole() -> Iterator[str]:
    """The OTLP/HTTP traces URL of a collector that accepts connections (the kernel completes the handshake) and never
    answers a byte."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)
    port = listener.getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/traces"
    finally:
        listener.close()


def memory_sink(sinks: list[OTelSink], **kwargs: Any) -> tuple[OTelSink, InMemorySpanExporter]:
    """A sink exporting synchronously (from its worker) to an in-memory exporter."""
    memory = InMemorySpanExporter()
    sink = OTelSink(SimpleSpanProcessor(CountingExporter(memory)), exit_timeout=None, **kwargs)
    sinks.append(sink)
    return sink, memory


def exported(sink: OTelSink, memory: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """The spans exported so far, by name (names are unique in the tests that use this)."""
    assert sink.force_flush(timeout=10)
    spans = {span.name: span for span in memory.get_finished_spans()}
    assert len(spans) == len(memory.get_finished_spans()), "span names must be unique here"
    return spans


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def p99(samples: list[int]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99)] / 1e6  # milliseconds


# -- attributes --------------------------------------------------------------------------------------------------------
def test_a_recorded_run_is_one_trace_with_genai_attributes(sinks: list[OTelSink]) -> None:
    sink, memory = memory_sink(sinks)
    attrs = {"team": "search", "feature": "answers", "user": "u1", "conversation": "conv-7", "tenant": "acme"}
    with (
        agentcost.run("answer", attrs=attrs, sinks=[sink]) as ctx,
        ctx.child("researcher", attrs={"agent": "researcher"}) as researcher,
    ):
        llm = researcher.record_llm(
            model="gpt-4o",
            provider="openai",
            usage=Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200, reasoning_tokens=50),
        )
        tool = researcher.record_tool("search", cost="0.01")
    spans = exported(sink, memory)
    assert set(spans) == {"invoke_agent answer", "invoke_agent researcher", "chat gpt-4o", "execute_tool search"}

    chat = spans["chat gpt-4o"]
    assert llm.cost is not None
    assert llm.cost > 0
    assert attrs_of(chat) == {
        "agentcost.kind": "llm",
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o",
        "gen_ai.agent.name": "researcher",
        "gen_ai.conversation.id": "conv-7",
        "agentcost.attr.team": "search",
        "agentcost.attr.feature": "answers",
        "agentcost.attr.user": "u1",
        "agentcost.attr.conversation": "conv-7",
        "agentcost.attr.tenant": "acme",
        "agentcost.attr.agent": "researcher",
        "gen_ai.usage.input_tokens": 1200,
        "gen_ai.usage.output_tokens": 300,
        "gen_ai.usage.cache_read.input_tokens": 200,
        "gen_ai.usage.reasoning.output_tokens": 50,
        "gen_ai.usage.cost.amount": format(llm.cost, "f"),
        "gen_ai.usage.cost.currency": "USD",
        "gen_ai.usage.cost.source": "computed",
    }
    assert chat.kind is SpanKind.CLIENT
    assert chat.status.status_code is StatusCode.UNSET

    search = attrs_of(spans["execute_tool search"])
    assert search["gen_ai.operation.name"] == "execute_tool"
    assert search["gen_ai.tool.name"] == "search"
    assert search["gen_ai.usage.cost.amount"] == "0.01"
    assert search["gen_ai.usage.cost.source"] == "manual"
    assert "gen_ai.usage.input_tokens" not in search
    assert spans["execute_tool search"].kind is SpanKind.INTERNAL

    # containers: no cost of their own (no double counting), their roll-ups under agentcost.* names only
    total = format(llm.cost + Decimal("0.01"), "f")
    for name, kind in (("invoke_agent answer", "run"), ("invoke_agent researcher", "agent")):
        container = attrs_of(spans[name])
        assert container["agentcost.kind"] == kind
        assert container["gen_ai.operation.name"] == "invoke_agent"
        assert not any(key.startswith("gen_ai.usage") for key in container), container
        assert container["agentcost.total_cost"] == total
        assert container["agentcost.total_unpriced"] == 0
    assert attrs_of(spans["invoke_agent researcher"])["gen_ai.agent.name"] == "researcher"
    assert attrs_of(spans["invoke_agent answer"])["gen_ai.agent.name"] == "answer"

    # one trace per run, derived from the root's id; span ids and parentage are the cost tree's
    trace_id = trace_id_of(ctx.span.id)
    by_id = {span.id: span for span in ctx.tree}
    for otel in spans.values():
        assert otel.context is not None
        assert otel.context.trace_id == trace_id
        assert otel.context.trace_flags.sampled
        source = by_id[otel.context.span_id]
        if source.parent is None:
            assert otel.parent is None
        else:
            assert otel.parent is not None
            assert otel.parent.trace_id == trace_id
            assert otel.parent.span_id == source.parent.id
        assert source.ended_at is not None
        assert otel.start_time == int(source.started_at * 1e9)
        assert otel.end_time == int(source.ended_at * 1e9)
    assert spans["execute_tool search"].context is not None
    assert spans["execute_tool search"].context.span_id == tool.id
    assert trace_id_of(ctx.span.id) == trace_id  # deterministic
    assert sink.stats().exported == 4


def test_unpriced_errors_requested_models_and_extra_units(sinks: list[OTelSink]) -> None:
    sink, memory = memory_sink(sinks)
    with agentcost.run("job", sinks=[sink]) as ctx:
        ctx.record_llm(model="no-such-model-x", usage=Usage(input_tokens=10, output_tokens=2))
        ctx.record_llm(
            model="gpt-4o-mini",
            requested_model="gpt-4o",
            provider="openai",
            usage=USAGE,
            cost="0.002",
            status="error",
            error="RateLimitError: slow down",
        )
        ctx.record("embedding", "embed", model="text-embedding-3-small", usage=Usage(input_tokens=50), cost="0")
        ctx.record("http", "geo", cost=Decimal("0.0000001"), usage=Usage(units={"gpu_seconds": Decimal("1.5")}))
        with ctx.child("step", kind="custom"):
            pass
        with pytest.raises(RuntimeError), ctx.child("broken"):
            raise RuntimeError("boom")
    spans = exported(sink, memory)

    unpriced = attrs_of(spans["chat no-such-model-x"])
    assert unpriced["agentcost.cost.unpriced"] is True
    assert not any(key.startswith("gen_ai.usage.cost") for key in unpriced)

    failed = spans["chat gpt-4o"]  # named after the requested model, as the conventions say
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "RateLimitError: slow down"
    assert attrs_of(failed)["error.type"] == "RateLimitError"
    assert attrs_of(failed)["agentcost.status"] == "error"
    assert attrs_of(failed)["gen_ai.request.model"] == "gpt-4o"
    assert attrs_of(failed)["gen_ai.response.model"] == "gpt-4o-mini"
    assert attrs_of(failed)["gen_ai.usage.cost.source"] == "provider"

    embed = attrs_of(spans["embeddings text-embedding-3-small"])
    assert embed["gen_ai.operation.name"] == "embeddings"
    assert embed["gen_ai.usage.cost.amount"] == "0"  # a free call is priced, at zero: not unpriced

    geo = attrs_of(spans["http geo"])
    assert "gen_ai.operation.name" not in geo
    assert geo["gen_ai.usage.cost.amount"] == "0.0000001"  # plain, exact: never 1E-7
    assert geo["agentcost.usage.gpu_seconds"] == "1.5"

    step = attrs_of(spans["custom step"])  # a container of a leaf kind: zero self cost, no cost attribute
    assert "gen_ai.usage.cost.amount" not in step
    assert step["agentcost.total_cost"] == "0"

    broken = spans["invoke_agent broken"]
    assert broken.status.status_code is StatusCode.ERROR
    assert attrs_of(broken)["error.type"] == "RuntimeError"
    assert attrs_of(spans["invoke_agent job"])["agentcost.total_unpriced"] == 1


def test_cost_as_float_keeps_the_exact_amount_alongside(sinks: list[OTelSink]) -> None:
    sink, memory = memory_sink(sinks, cost_as_float=True)
    with agentcost.run("job", sinks=[sink]) as ctx:
        ctx.record_tool("search", cost="0.1")
        ctx.record_tool("lookup", cost="0.2")
    spans = exported(sink, memory)
    search = attrs_of(spans["execute_tool search"])
    assert search["gen_ai.usage.cost.amount"] == 0.1
    assert search["agentcost.cost.exact"] == "0.1"
    root = attrs_of(spans["invoke_agent job"])
    assert root["agentcost.total_cost"] == 0.3
    assert 0.1 + 0.2 != 0.3  # why the exact string is the default


def test_budget_events_become_events_of_the_run_root(sinks: list[OTelSink]) -> None:
    sink, memory = memory_sink(sinks)
    with agentcost.run("job", budget=Budget(max_cost=Decimal("1"), hard=False), sinks=[sink]) as ctx:
        ctx.record_tool("a", cost="0.9")  # crosses the 80% warning
        ctx.record_tool("b", cost="0.2")  # exceeds the soft budget
    kinds = [event.kind for event in ctx.tree.events]
    assert kinds == ["warning", "exceeded"]
    root = exported(sink, memory)["invoke_agent job"]
    assert [event.name for event in root.events] == ["agentcost.budget.warning", "agentcost.budget.exceeded"]
    assert attrs_of(root)["agentcost.budget.events"] == 2
    warning = dict(root.events[0].attributes or {})
    assert warning["agentcost.budget.metric"] == "cost"
    assert warning["agentcost.budget.limit"] == "1"
    assert warning["agentcost.budget.spent"] == "0.9"
    assert root.start_time is not None
    assert root.end_time is not None
    assert root.start_time <= root.events[0].timestamp <= root.end_time
    assert sink.stats().events_dropped == 0


def test_add_sink_exports_every_run(sinks: list[OTelSink]) -> None:
    sink, memory = memory_sink(sinks)
    agentcost.add_sink(sink)
    try:
        for name in ("one", "two"):
            with agentcost.run(name) as ctx:
                ctx.record_tool(f"tool-{name}", cost="0.5")
    finally:
        agentcost.remove_sink(sink)
    spans = exported(sink, memory)
    assert set(spans) == {"invoke_agent one", "invoke_agent two", "execute_tool tool-one", "execute_tool tool-two"}
    traces = {span.context.trace_id for span in spans.values() if span.context is not None}
    assert len(traces) == 2


def test_a_processor_without_a_counting_exporter_is_refused() -> None:
    with pytest.raises(TypeError, match="CountingExporter"):
        OTelSink(SimpleSpanProcessor(InMemorySpanExporter()), exit_timeout=None)
    with pytest.raises(TypeError, match="SpanExporter or a SpanProcessor"):
        OTelSink(object(), exit_timeout=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_queue_size"):
        OTelSink(InMemorySpanExporter(), max_queue_size=0, exit_timeout=None)


# -- no double counting ------------------------------------------------------------------------------------------------
costs = st.one_of(
    st.none(),  # the tool's price book price: unpriced
    st.decimals(min_value=Decimal(0), max_value=Decimal(50), places=12, allow_nan=False, allow_infinity=False),
)
Leaf = tuple[str, Decimal | None]
Tree = list[Any]
leaves: st.SearchStrategy[Leaf] = st.tuples(st.sampled_from(["tool", "llm", "unpriced-llm"]), costs)
trees: st.SearchStrategy[Tree] = st.recursive(
    st.lists(leaves, max_size=4), lambda children: st.lists(st.one_of(leaves, children), max_size=4), max_leaves=25
)


def replay(ctx: CostContext, nodes: Sequence[Any], path: str) -> None:
    for number, node in enumerate(nodes):
        if isinstance(node, list):
            with ctx.child(f"agent{path}.{number}") as child:
                replay(child, node, f"{path}.{number}")
            continue
        kind, cost = node
        if kind == "tool":
            ctx.record_tool("search", cost=cost)
        elif kind == "llm":
            ctx.record_llm(model="gpt-4o", provider="openai", usage=USAGE, cost=cost)
        else:
            ctx.record_llm(model="no-such-model-x", usage=USAGE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_exported_costs_add_up_to_the_run_total_exactly(tree: Tree) -> None:
    memory = InMemorySpanExporter()
    sink = OTelSink(SimpleSpanProcessor(CountingExporter(memory)), exit_timeout=None)
    try:
        with agentcost.run("run", pricing=PriceBook(), sinks=[sink]) as ctx:
            replay(ctx, tree, "")
        assert sink.force_flush(10)
    finally:
        assert sink.shutdown(10)
    spans = memory.get_finished_spans()
    assert len(spans) == len(ctx.tree)
    total = Decimal(0)
    unpriced = 0
    for span in spans:
        attributes = attrs_of(span)
        if "gen_ai.usage.cost.amount" in attributes:
            assert attributes["agentcost.kind"] not in ("run", "agent")
            total += Decimal(attributes["gen_ai.usage.cost.amount"])
        unpriced += attributes.get("agentcost.cost.unpriced", False)
    assert total == ctx.tree.total_cost
    assert unpriced == ctx.tree.unpriced
    assert attrs_of(next(s for s in spans if s.parent is None))["agentcost.total_cost"] == format(
        ctx.tree.total_cost, "f"
    )
    stats = sink.stats()
    assert stats.generated == stats.exported == len(ctx.tree)
    assert stats.dropped == 0


# -- drop accounting ---------------------------------------------------------------------------------------------------
class FlakyExporter(SpanExporter):
    """Fails every other batch; keeps the spans of the batches it reports exported."""

    def __init__(self) -> None:
        self.kept: list[ReadableSpan] = []
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.calls % 3 == 0:
            raise ConnectionError("collector went away")
        if self.calls % 2 == 0:
            return SpanExportResult.FAILURE
        self.kept.extend(spans)
        return SpanExportResult.SUCCESS


def test_exported_counts_what_the_exporter_reported_exported(
    sinks: list[OTelSink], caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyExporter()
    sink = OTelSink(flaky, max_export_batch_size=7, schedule_delay=0.01, exit_timeout=None)
    for number in range(10):
        with agentcost.run(f"run{number}", sinks=[sink]) as ctx:
            for _ in range(10):
                ctx.record_tool("search", cost="0.001")
    assert sink.shutdown(timeout=10)
    stats = sink.stats()
    assert stats.generated == 110
    assert stats.exported == len(flaky.kept) > 0
    assert stats.failed > 0
    assert stats.dropped == stats.generated - stats.exported
    assert stats.pending == 0
    # after shutdown, a late span is refused and counted
    with agentcost.run("late", sinks=[sink]):
        pass
    late = sink.stats()
    assert late.generated == 111
    assert late.dropped == late.generated - late.exported
    assert late.queue_full == stats.queue_full + 1


def test_the_queue_stays_bounded_while_the_exporter_is_stuck(sinks: list[OTelSink], blackhole: str) -> None:
    # A SimpleSpanProcessor exports from the sink's worker, which blackholed exports stall: the queue must fill up
    # to its bound, and no further.
    counter = CountingExporter(OTLPSpanExporter(endpoint=blackhole, timeout=0.2))
    sink = OTelSink(SimpleSpanProcessor(counter), max_queue_size=64, exit_timeout=None)
    sinks.append(sink)
    most = 0
    with agentcost.run("flood", sinks=[sink]) as ctx:
        for _ in range(2000):
            ctx.record_tool("search", cost="0.001")
            most = max(most, sink.stats().queued)
    assert most == 64  # it did fill up (the test would not show a bound otherwise) ...
    stats = sink.stats()
    assert stats.queue_full >= 2000 - 64 - 10  # ... and refused the rest
    started = time.monotonic()
    sink.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1.5
    stats = sink.stats()
    assert stats.exported == 0
    assert stats.dropped == stats.generated - stats.exported == 2001
    assert stats.pending == 0


# -- a collector that never answers ------------------------------------------------------------------------------------
def record_calls(ctx: CostContext, count: int, check: OTelSink | None, bound: int) -> list[int]:
    durations: list[int] = []
    clock = time.perf_counter_ns
    for number in range(count):
        started = clock()
        ctx.record_llm(model="gpt-4o", provider="openai", usage=USAGE)
        duration = clock() - started
        if duration > 100_000_000:  # fail at once, rather than wait for the collector's timeout on every call
            pytest.fail(f"record_llm took {duration / 1e6:.0f} ms: the sink waits for the collector on the call path")
        durations.append(duration)
        if check is not None and not number % 16:
            assert check.stats().queued <= bound
    return durations


@pytest.mark.parametrize("pipeline", ["batch", "simple"])
def test_a_blackholed_collector_costs_the_agent_nothing(sinks: list[OTelSink], blackhole: str, pipeline: str) -> None:
    bound = 256
    exporter = OTLPSpanExporter(endpoint=blackhole, timeout=0.3)
    if pipeline == "batch":  # the usual set-up: the SDK's BatchSpanProcessor, built by the sink
        sink = OTelSink(
            exporter, max_queue_size=bound, max_export_batch_size=64, schedule_delay=0.05, exit_timeout=None
        )
    else:  # a processor that exports where it is called: only the sink's worker may ever wait for the collector
        sink = OTelSink(SimpleSpanProcessor(CountingExporter(exporter)), max_queue_size=bound, exit_timeout=None)
    sinks.append(sink)
    count = 5000
    with agentcost.run("warm-up", sinks=[]) as warm:
        record_calls(warm, 200, None, bound)
    with agentcost.run("baseline", sinks=[]) as plain:
        baseline = record_calls(plain, count, None, bound)
    with agentcost.run("exported", sinks=[sink]) as ctx:
        with_sink = record_calls(ctx, count, sink, bound)
    print(f"{pipeline}: p99 per record_llm {p99(with_sink):.4f} ms with the sink, {p99(baseline):.4f} ms without")
    assert p99(with_sink) <= 1.0
    assert sink.stats().queued <= bound

    started = time.monotonic()
    assert not sink.force_flush(timeout=0.2)  # the collector never answers: the flush cannot finish, and says so
    sink.shutdown(timeout=0.5)
    assert time.monotonic() - started < 1.5
    stats = sink.stats()
    assert stats.generated == count + 1
    assert stats.exported == 0
    assert stats.dropped == stats.generated - stats.exported
    assert stats.pending == 0


EXIT_SCRIPT = """
import atexit, sys
import agentcost
from agentcost import Usage
from agentcost.otel import OTelSink
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

def report():  # registered before the sink's hook, so it runs after it
    stats = sink.stats()
    print("stats", stats.generated, stats.exported, stats.dropped, flush=True)

atexit.register(report)
sink = OTelSink(OTLPSpanExporter(endpoint=sys.argv[1]), schedule_delay=0.01)  # the exporter's 10 s timeout
agentcost.add_sink(sink)
for number in range(200):
    with agentcost.run(f"job{number}") as ctx:
        ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=10, output_tokens=5))
print("recorded", flush=True)
"""


def test_a_process_with_a_blackholed_collector_exits_within_5_seconds(blackhole: str, tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT), encoding="utf-8")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), blackhole], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert elapsed < 5, f"exit took {elapsed:.2f} s"
    lines = done.stdout.split("\n")
    assert "recorded" in lines
    generated, exported_count, dropped = (int(word) for word in lines[1].split()[1:])
    assert generated == 400
    assert exported_count == 0
    assert dropped == generated - exported_count


def test_importing_agentcost_otel_starts_nothing() -> None:
    """No thread and no exit hook until a sink is made."""
    probe = "import threading, atexit, {}; print(threading.active_count(), atexit._ncallbacks())"
    counts = []
    for module in ("agentcost", "agentcost.otel"):
        done = subprocess.run(
            [sys.executable, "-c", probe.format(module)], cwd=ROOT, capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        counts.append(done.stdout.split())
    assert counts[0] == counts[1]
    assert counts[0][0] == "1"
