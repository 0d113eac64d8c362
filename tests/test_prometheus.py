"""PrometheusSink: counters of self cost, tokens and calls, budget events and gauges, bounded cardinality."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass
from decimal import Decimal

import prometheus_client
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

import agentcost
from agentcost import Budget, CostContext, CostTree, CustomPrice, Limit, MemoryStore, PriceBook, Usage
from agentcost.prometheus import DEFAULT_LABELS, OVERFLOW, PrometheusSink

SEARCH_QA = {"team": "search", "feature": "qa"}
LLM = {**SEARCH_QA, "model": "gpt-4o", "provider": "openai", "kind": "llm"}
TOOL = {**SEARCH_QA, "model": "", "provider": "", "kind": "tool"}
SPAN_METRICS = (
    "agentcost_spend_usd",
    "agentcost_calls",
    "agentcost_unpriced_calls",
    "agentcost_input_tokens",
    "agentcost_output_tokens",
    "agentcost_cache_read_tokens",
    "agentcost_cache_write_tokens",
    "agentcost_reasoning_tokens",
)


def value(sink: PrometheusSink, name: str, labels: dict[str, str] | None = None) -> float | None:
    return sink.registry.get_sample_value(name, labels or {})


def series(sink: PrometheusSink, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of a metric (counters: its ``_total`` samples), by their sorted labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in sink.registry.collect():
        if family.name == metric:
            sample_name = f"{metric}_total" if family.type == "counter" else metric
            for sample in family.samples:
                if sample.name == sample_name:
                    out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def total(sink: PrometheusSink, metric: str) -> float:
    return math.fsum(series(sink, metric).values())


def record_example(sink: PrometheusSink, *, budget: Budget | None = None) -> CostContext:
    """The example tree: an LLM call and a tool call on the run, and an agent with one more tool call."""
    with agentcost.run("r", attrs={**SEARCH_QA, "user": "u1", "session": "s-42"}, sinks=[sink], budget=budget) as ctx:
        ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=1000, output_tokens=100))
        ctx.record_tool("search", cost="0.01")
        with ctx.child("researcher") as agent:
            agent.record_tool("fetch", cost="0.002")
    return ctx


# -- counters ---------------------------------------------------------------------------------------------------------
def test_counts_self_cost_tokens_and_calls_of_leaves_only() -> None:
    sink = PrometheusSink()
    ctx = record_example(sink)

    assert value(sink, "agentcost_spend_usd_total", LLM) == pytest.approx(0.0035)  # 1000 x $2.50/M + 100 x $10/M
    assert value(sink, "agentcost_spend_usd_total", TOOL) == pytest.approx(0.012)
    assert value(sink, "agentcost_calls_total", LLM) == 1
    assert value(sink, "agentcost_calls_total", TOOL) == 2
    assert value(sink, "agentcost_input_tokens_total", LLM) == 1000
    assert value(sink, "agentcost_output_tokens_total", LLM) == 100
    assert value(sink, "agentcost_input_tokens_total", TOOL) is None  # no series for what a tool never used
    # the run and the agent node add nothing: the totals are the tree's, counted once
    assert total(sink, "agentcost_spend_usd") == pytest.approx(float(ctx.tree.total_cost)) == pytest.approx(0.0155)
    assert total(sink, "agentcost_calls") == 3
    assert {dict(key)["kind"] for key in series(sink, "agentcost_spend_usd")} == {"llm", "tool"}
    assert series(sink, "agentcost_unpriced_calls") == {}


def test_a_container_with_a_cost_of_its_own_counts_it_once() -> None:
    """A tree from another implementation may charge a node that has children: its self cost counts, not its
    subtree's total, which the children bring themselves."""
    span = {"started_at": 1.0, "ended_at": 2.0, "status": "ok"}
    tree = CostTree.from_dict(
        {
            "format": "agentcost.tree",
            "version": 1,
            "spans": [
                {**span, "id": "0000000000000001", "parent_id": None, "kind": "run", "name": "r", "cost": "0.5"},
                {**span, "id": "0000000000000002", "parent_id": "0000000000000001", "kind": "agent", "name": "a",
                 "cost": "0.25"},
                {**span, "id": "0000000000000003", "parent_id": "0000000000000002", "kind": "tool", "name": "t",
                 "cost": "0.125"},
            ],
        }
    )  # fmt: skip
    sink = PrometheusSink()
    for node in reversed(tree.spans()):  # children finish first
        sink.on_span(node, tree)
    assert tree.total_cost == Decimal("0.875")
    assert total(sink, "agentcost_spend_usd") == 0.875
    assert total(sink, "agentcost_calls") == 1
    assert value(sink, "agentcost_spend_usd_total", {**TOOL, "team": "", "feature": "", "kind": "agent"}) == 0.25


def test_user_controlled_attributes_are_not_labels_by_default() -> None:
    sink = PrometheusSink()
    record_example(sink)
    text = generate_latest(sink.registry).decode()
    for shown in ('team="search"', 'feature="qa"'):
        assert shown in text
    for hidden in ("u1", "s-42", "user=", "session="):
        assert hidden not in text
    assert sink.labels == DEFAULT_LABELS


def test_missing_attribution_is_an_empty_label() -> None:
    sink = PrometheusSink()
    with agentcost.run("bare", sinks=[sink]) as ctx:
        ctx.record_tool("search", cost="0.5")
    labels = {"team": "", "feature": "", "model": "", "provider": "", "kind": "tool"}
    assert value(sink, "agentcost_spend_usd_total", labels) == 0.5


def test_unpriced_calls_are_counted_but_add_no_spend() -> None:
    sink = PrometheusSink()
    with agentcost.run("r", attrs=SEARCH_QA, sinks=[sink], pricing=PriceBook(catalog=False)) as ctx:
        ctx.record_llm(model="mystery-1", provider="acme", usage=Usage(input_tokens=10, output_tokens=5))
        ctx.record_tool("search", cost="0.25")
    mystery = {**SEARCH_QA, "model": "mystery-1", "provider": "acme", "kind": "llm"}
    assert ctx.tree.unpriced == 1
    assert value(sink, "agentcost_unpriced_calls_total", mystery) == 1
    assert value(sink, "agentcost_calls_total", mystery) == 1
    assert value(sink, "agentcost_spend_usd_total", mystery) is None
    assert value(sink, "agentcost_input_tokens_total", mystery) == 10
    assert total(sink, "agentcost_spend_usd") == 0.25
    assert total(sink, "agentcost_unpriced_calls") == 1


def test_cache_and_reasoning_tokens_have_their_own_counters() -> None:
    sink = PrometheusSink()
    with agentcost.run("r", attrs=SEARCH_QA, sinks=[sink]) as ctx:
        ctx.record_llm(
            model="gpt-4o",
            provider="openai",
            usage=Usage(
                input_tokens=1000,
                cache_read_tokens=600,
                cache_write_tokens=100,
                output_tokens=300,
                reasoning_tokens=200,
            ),
        )
    assert value(sink, "agentcost_input_tokens_total", LLM) == 1000
    assert value(sink, "agentcost_cache_read_tokens_total", LLM) == 600
    assert value(sink, "agentcost_cache_write_tokens_total", LLM) == 100
    assert value(sink, "agentcost_output_tokens_total", LLM) == 300
    assert value(sink, "agentcost_reasoning_tokens_total", LLM) == 200


def test_skip_markers_and_containers_of_leaf_kinds_are_not_calls() -> None:
    sink = PrometheusSink()
    with agentcost.run("r", attrs=SEARCH_QA, sinks=[sink]) as ctx:
        ctx.record_finish("out of budget")  # a zero-cost skipped marker span
        ctx.record_tool("search", status="skipped")
        with ctx.child("pipeline", kind="tool") as step:  # a tool made of calls: the calls count, not the step
            step.record_tool("fetch", cost="0.001")
            step.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=10))
        ctx.child("empty-tool", kind="tool").end()  # a tool node that recorded nothing is one call
    assert total(sink, "agentcost_calls") == 3
    assert value(sink, "agentcost_calls_total", TOOL) == 2
    assert value(sink, "agentcost_calls_total", LLM) == 1
    assert value(sink, "agentcost_budget_events_total", {"event": "degraded", "metric": ""}) == 1


def test_allow_listed_attributes_and_span_fields_as_labels() -> None:
    sink = PrometheusSink(labels=["team", "user", "status", "cost_source"], allow=["user"])
    with agentcost.run("r", attrs={"team": "search", "user": "u1"}, sinks=[sink]) as ctx:
        ctx.record_tool("search", cost="0.01")
        ctx.record_tool("search", cost="0.03", status="error", error="timeout")
        ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=1000))
    ok = {"team": "search", "user": "u1", "status": "ok", "cost_source": "manual"}
    assert value(sink, "agentcost_spend_usd_total", ok) == pytest.approx(0.01)
    assert value(sink, "agentcost_spend_usd_total", {**ok, "status": "error"}) == pytest.approx(0.03)
    assert value(sink, "agentcost_spend_usd_total", {**ok, "cost_source": "computed"}) == pytest.approx(0.0025)
    assert value(sink, "agentcost_calls_total", ok) == 1


@pytest.mark.parametrize(
    ("labels", "allow", "error", "match"),
    [
        (["team", "user"], [], ValueError, r"label 'user' is not one of the bounded labels.*allow="),
        (["tenant"], ["user"], ValueError, r"'tenant' is not one of the bounded labels"),
        (["team"], ["user"], ValueError, r"allow= lists 'user', which labels= does not"),
        (["team", "team"], [], ValueError, "listed twice"),
        (["user.id"], ["user.id"], ValueError, "not a usable Prometheus label name"),
        (["__name"], ["__name"], ValueError, "not a usable Prometheus label name"),
        ("team", [], TypeError, "not one string"),
        (["team"], "team", TypeError, "not one string"),
        ([1], [], TypeError, "label names must be str"),
    ],
)
def test_constructor_refuses_unbounded_or_unusable_labels(
    labels: list[object] | str, allow: list[str] | str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        PrometheusSink(labels=labels, allow=allow)  # type: ignore[arg-type]


@pytest.mark.parametrize("max_series", [0, -1, True, 1.5, "10"])
def test_max_series_must_be_a_positive_int(max_series: object) -> None:
    with pytest.raises(ValueError, match="max_series"):
        PrometheusSink(max_series=max_series)  # type: ignore[arg-type]


def test_registry_is_private_unless_given() -> None:
    before = set(prometheus_client.REGISTRY._names_to_collectors)
    first, second = PrometheusSink(), PrometheusSink()  # two sinks, two registries: no duplicate metric error
    assert first.registry is not second.registry
    assert set(prometheus_client.REGISTRY._names_to_collectors) == before
    registry = CollectorRegistry()
    assert PrometheusSink(registry).registry is registry
    with pytest.raises(ValueError, match="Duplicated"):
        PrometheusSink(registry)  # metric names are unique in a registry
    with pytest.raises(TypeError, match="CollectorRegistry"):
        PrometheusSink(object())  # type: ignore[arg-type]


def test_process_wide_sink() -> None:
    sink = PrometheusSink()
    agentcost.add_sink(sink)
    try:
        with agentcost.run("r", attrs=SEARCH_QA) as ctx:
            ctx.record_tool("search", cost="0.01")
    finally:
        agentcost.remove_sink(sink)
    with agentcost.run("after", attrs=SEARCH_QA) as ctx:
        ctx.record_tool("search", cost="0.01")
    assert value(sink, "agentcost_spend_usd_total", TOOL) == pytest.approx(0.01)


def test_importing_agentcost_does_not_import_prometheus_client() -> None:
    code = "import sys, agentcost; assert 'prometheus_client' not in sys.modules, 'imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# -- budgets ----------------------------------------------------------------------------------------------------------
def test_budget_events_set_counters_and_gauges() -> None:
    sink = PrometheusSink()
    record_example(sink, budget=Budget(max_cost=Decimal("0.01")))
    # the LLM call (0.0035) stays under 80%; the tool (0.01 more) crosses both thresholds; the agent's tool adds to
    # a budget already over, which fires nothing more
    assert value(sink, "agentcost_budget_events_total", {"event": "warning", "metric": "cost"}) == 1
    assert value(sink, "agentcost_budget_events_total", {"event": "exceeded", "metric": "cost"}) == 1
    assert value(sink, "agentcost_budget_events_total", {"event": "degraded", "metric": ""}) == 0
    run = {"budget": "run 'r'"}
    assert value(sink, "agentcost_budget_spent_usd", run) == 0.0135
    assert value(sink, "agentcost_budget_limit_usd", run) == 0.01
    assert value(sink, "agentcost_budget_used_ratio", {**run, "metric": "cost"}) == 1.35
    assert value(sink, "agentcost_budget_refusals_total", run) is None


def test_token_budget_on_an_agent_sets_its_ratio_only() -> None:
    sink = PrometheusSink()
    with (
        agentcost.run("r", attrs=SEARCH_QA, sinks=[sink]) as ctx,
        ctx.child("researcher", budget=Budget(max_tokens=1000)) as agent,
    ):
        agent.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=850))
    researcher = {"budget": "agent 'researcher'"}
    assert value(sink, "agentcost_budget_events_total", {"event": "warning", "metric": "tokens"}) == 1
    assert value(sink, "agentcost_budget_used_ratio", {**researcher, "metric": "tokens"}) == 0.85
    assert value(sink, "agentcost_budget_spent_usd", researcher) is None  # a token budget has no dollar amounts
    assert value(sink, "agentcost_budget_used_ratio", {**researcher, "metric": "cost"}) is None


def test_refusals_count_per_budget_including_scoped_limits() -> None:
    sink = PrometheusSink()
    store = MemoryStore()
    store.add_limit(Limit(scope={"team": "search"}, window="day", max_cost=Decimal("0.05")))
    with agentcost.run("r", attrs=SEARCH_QA, sinks=[sink], store=store, budget=Budget(max_cost=Decimal("0.10"))) as ctx:
        for _ in range(2):
            with pytest.raises(agentcost.BudgetExceeded):
                ctx.reserve(cost=Decimal("0.06"))  # fits the run, not the team's day
        with pytest.raises(agentcost.BudgetExceeded):
            ctx.reserve(cost=Decimal("0.20"))  # fits neither: the run's budget refuses first
    assert value(sink, "agentcost_budget_refusals_total", {"budget": "limit team=search/day"}) == 2
    assert value(sink, "agentcost_budget_refusals_total", {"budget": "run 'r'"}) == 1
    assert value(sink, "agentcost_budget_events_total", {"event": "exceeded", "metric": "cost"}) == 3
    assert series(sink, "agentcost_budget_spent_usd") == {}  # refusals carry no amounts


def test_budget_names_are_capped() -> None:
    sink = PrometheusSink(max_series=2)
    for number in range(5):
        with agentcost.run(f"ticket-{number}", sinks=[sink], budget=Budget(max_cost=Decimal("0.01"))) as ctx:
            ctx.record_tool("search", cost=f"0.0{number + 2}")
    spent = series(sink, "agentcost_budget_spent_usd")
    assert len(spent) == 3
    assert spent[(("budget", OVERFLOW),)] == 0.06  # the last overflowing budget's state
    assert value(sink, "agentcost_budget_events_total", {"event": "exceeded", "metric": "cost"}) == 5
    assert value(sink, "agentcost_label_overflow_total") == 6  # 3 runs x (warning + exceeded)


# -- cardinality ------------------------------------------------------------------------------------------------------
def test_100k_users_make_at_most_cap_plus_one_series_and_totals_stay_right() -> None:
    cap = 1000
    sink = PrometheusSink(labels=[*DEFAULT_LABELS, "user"], allow=["user"], max_series=cap)
    with agentcost.run("busy", attrs=SEARCH_QA) as ctx:  # no sinks: the spans go to on_span below
        for number in range(100_000):
            ctx.record_tool("search", cost=f"0.{number % 997 + 1:05d}", attrs={"user": f"user-{number}"})
        ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=10, output_tokens=1))
    spans = ctx.tree.spans()
    for span in spans:
        sink.on_span(span, ctx.tree)

    for metric in SPAN_METRICS:
        assert len(series(sink, metric)) <= cap + 1, metric
    spend = series(sink, "agentcost_spend_usd")
    assert len(spend) == cap + 1
    overflow = tuple(sorted((name, OVERFLOW) for name in sink.labels))
    assert overflow in spend
    assert total(sink, "agentcost_spend_usd") == pytest.approx(float(ctx.tree.total_cost), rel=1e-9)
    assert series(sink, "agentcost_calls")[overflow] == 100_001 - cap
    assert total(sink, "agentcost_calls") == 100_001
    assert total(sink, "agentcost_input_tokens") == 10
    assert value(sink, "agentcost_label_overflow_total") == 100_001 - cap
    assert value(sink, "agentcost_calls_total", {**TOOL, "user": "user-0"}) == 1  # the first ones keep their own


def test_concurrent_recording_counts_everything_once() -> None:
    sink = PrometheusSink(labels=["team", "user"], allow=["user"], max_series=50)
    threads, per_thread = 8, 500
    barrier = threading.Barrier(threads)
    with agentcost.run("shared", attrs={"team": "search"}, sinks=[sink]) as ctx:

        def work(worker: int) -> None:
            barrier.wait()
            for number in range(per_thread):
                user = f"u{(worker * per_thread + number) % 120}"  # 120 users for 50 series: overflow under contention
                ctx.record_tool("search", cost="0.001", attrs={"user": user})
                ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=100, output_tokens=10))

        workers = [threading.Thread(target=work, args=(worker,)) for worker in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    assert total(sink, "agentcost_calls") == 2 * threads * per_thread
    assert total(sink, "agentcost_input_tokens") == 100 * threads * per_thread
    assert total(sink, "agentcost_spend_usd") == pytest.approx(float(ctx.tree.total_cost), rel=1e-9)
    assert len(series(sink, "agentcost_calls")) == 51


# -- property: the counters add up to the tree ------------------------------------------------------------------------
PRICED = CustomPrice(input_mtok=Decimal("2.5"), output_mtok=Decimal("10"))


@dataclass
class Leaf:
    kind: str
    model: str
    cost: Decimal | None
    input_tokens: int
    output_tokens: int


@dataclass
class Node:
    name: str
    team: str | None
    children: list[Leaf | Node]


costs = st.none() | st.decimals(min_value=0, max_value=100, places=9, allow_nan=False, allow_infinity=False)
leaves = st.builds(
    Leaf,
    kind=st.sampled_from(["llm", "tool", "retrieval", "http"]),
    model=st.sampled_from(["priced-model", "unpriced-model"]),
    cost=costs,
    input_tokens=st.integers(0, 10**6),
    output_tokens=st.integers(0, 10**5),
)
trees: st.SearchStrategy[list[Leaf | Node]] = st.recursive(
    st.lists(leaves, max_size=4),
    lambda inner: st.lists(
        leaves
        | st.builds(Node, name=st.sampled_from(["a", "b"]), team=st.sampled_from([None, "x", "y"]), children=inner),
        max_size=4,
    ),
    max_leaves=25,
)


def build(ctx: CostContext, children: list[Leaf | Node]) -> int:
    """Record ``children`` under ``ctx``; return how many calls that made."""
    calls = 0
    for child in children:
        if isinstance(child, Node):
            # a team, once set, is inherited: only a node without one may set it
            attrs = {"team": child.team} if child.team is not None and "team" not in ctx.attrs else None
            with ctx.child(child.name, attrs=attrs) as node:
                calls += build(node, child.children)
            continue
        usage = Usage(input_tokens=child.input_tokens, output_tokens=child.output_tokens)
        if child.kind == "llm":  # priced by the book, or unpriced
            ctx.record_llm(model=child.model, provider="p", usage=usage)
        else:
            ctx.record(child.kind, "call", cost=child.cost, usage=usage)
        calls += 1
    return calls


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(children=trees, max_series=st.integers(1, 4))
def test_counters_add_up_to_the_tree(children: list[Leaf | Node], max_series: int) -> None:
    sink = PrometheusSink(max_series=max_series)
    book = PriceBook(catalog=False, models={"priced-model": PRICED})
    with agentcost.run("prop", attrs={"feature": "f"}, pricing=book, sinks=[sink]) as ctx:
        calls = build(ctx, children)
    tree = ctx.tree
    leaves_in_tree = [span for span in tree.spans() if span.kind not in ("run", "agent")]
    assert calls == len(leaves_in_tree)
    assert total(sink, "agentcost_calls") == calls
    assert total(sink, "agentcost_spend_usd") == pytest.approx(float(tree.total_cost), rel=1e-9, abs=1e-12)
    assert total(sink, "agentcost_unpriced_calls") == tree.unpriced
    usage = tree.total_usage()
    assert total(sink, "agentcost_input_tokens") == usage.input_tokens
    assert total(sink, "agentcost_output_tokens") == usage.output_tokens
    for metric in SPAN_METRICS:
        assert len(series(sink, metric)) <= max_series + 1


# -- serving ----------------------------------------------------------------------------------------------------------
def test_serve_on_loopback() -> None:
    sink = PrometheusSink()
    record_example(sink)
    server = sink.serve(0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'agentcost_calls_total{feature="qa",kind="tool",model="",provider="",team="search"} 2.0' in body
