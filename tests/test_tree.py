"""CostTree: exact totals under concurrency, queries, serialization and rendering."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import decimal
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentcost
from agentcost import CostContext, CostTotal, CostTree, CustomPrice, PriceBook, Span, TreeFormatError, Usage

# ---------------------------------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------------------------------

PRICED = CustomPrice(input_mtok=Decimal("2.5"), output_mtok=Decimal("10"))


def make_book() -> PriceBook:
    """A catalog-free price book: one priced model, one priced tool, everything else unpriced."""
    return PriceBook(catalog=False, models={"priced-model": PRICED}, tools={"search": "0.010"})


WIDE = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
"""A context in which sums of any two finite decimals are exact."""


def own_cost(span: Span) -> Decimal:
    return Decimal(0) if span.cost is None else span.cost


def assert_rollup_consistent(spans: list[Span]) -> None:
    """Every span's totals are its own cost plus its children's totals (summed exactly)."""
    for span in spans:
        with decimal.localcontext(WIDE):
            expected_total = own_cost(span) + sum((child.total_cost for child in span.children), Decimal(0))
        assert span.total_cost == expected_total, span
        expected_unpriced = (span.cost is None) + sum(child.total_unpriced for child in span.children)
        assert span.total_unpriced == expected_unpriced, span


def sample_tree() -> CostTree:
    """A small fixed tree used by the query and rendering tests."""
    book = PriceBook(
        catalog=False,
        models={"model-a": CustomPrice(input_mtok=Decimal("1"), output_mtok=Decimal("2"))},
        tools={"search": "0.01"},
    )
    with agentcost.run("req", attrs={"team": "search"}, pricing=book) as root:
        with root.child("planner", attrs={"agent": "planner"}) as planner:
            planner.record_llm(model="model-a", provider="prov-a", usage=Usage(input_tokens=1000, output_tokens=500))
            planner.record_tool("search")
            with planner.child("worker", attrs={"agent": "worker", "user": "u1"}) as worker:
                worker.record_llm(model="mystery", usage=Usage(input_tokens=10))
                worker.record_llm(
                    model="model-b",
                    provider="prov-b",
                    usage=Usage(input_tokens=5),
                    cost="0.5",
                    requested_model="model-x",
                    status="degraded",
                )
        root.record("retrieval", "lookup", cost="0.003", model="embed-1")
    return root.tree


# ---------------------------------------------------------------------------------------------------------------------
# (a) concurrent recording: threads, run_in_executor and asyncio tasks into one tree
# ---------------------------------------------------------------------------------------------------------------------

HOWS = ("provider", "computed", "manual", "retrieval", "unpriced_llm", "unpriced_tool", "zero")
MODES = ("thread", "executor", "task")


@dataclass(frozen=True)
class Rec:
    how: str
    cost: Decimal
    tokens: int


@dataclass(frozen=True)
class Open:
    child: int


@dataclass(frozen=True)
class NodePlan:
    parent: int
    mode: str
    use_with: bool
    ops: tuple[Rec | Open, ...]


money = st.builds(lambda n, e: Decimal(n).scaleb(e), st.integers(0, 10**8), st.integers(-12, 2))


@st.composite
def plans(draw: st.DrawFn) -> tuple[NodePlan, ...]:
    n = draw(st.integers(1, 7))
    parents = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    nodes: list[NodePlan] = []
    for i in range(n):
        records: list[Rec | Open] = list(
            draw(st.lists(st.builds(Rec, st.sampled_from(HOWS), money, st.integers(0, 10**6)), max_size=8))
        )
        opens: list[Rec | Open] = [Open(j) for j in range(n) if parents[j] == i]
        ops = draw(st.permutations(records + opens))
        nodes.append(NodePlan(parents[i], draw(st.sampled_from(MODES)), draw(st.booleans()), tuple(ops)))
    return tuple(nodes)


def expected_record(book: PriceBook, rec: Rec) -> tuple[str, Decimal | None, str | None]:
    """The kind, self cost and cost source a planned record must produce."""
    if rec.how == "provider":
        return "llm", rec.cost, "provider"
    if rec.how == "computed":
        cost = book.price("priced-model", Usage(input_tokens=rec.tokens, output_tokens=rec.tokens // 3))
        assert cost is not None
        return "llm", cost, "computed"
    if rec.how == "manual":
        return "tool", rec.cost, "manual"
    if rec.how == "retrieval":
        return "retrieval", rec.cost, "manual"
    if rec.how == "zero":
        return "tool", Decimal(0), "manual"
    if rec.how == "unpriced_llm":
        return "llm", None, None
    assert rec.how == "unpriced_tool"
    return "tool", None, None


def do_record(ctx: CostContext, tag: str, rec: Rec) -> None:
    attrs = {"rec": tag}
    if rec.how == "provider":
        ctx.record_llm(
            model="gateway-model", provider="gw", usage=Usage(input_tokens=rec.tokens), cost=rec.cost, attrs=attrs
        )
    elif rec.how == "computed":
        ctx.record_llm(
            model="priced-model", usage=Usage(input_tokens=rec.tokens, output_tokens=rec.tokens // 3), attrs=attrs
        )
    elif rec.how == "manual":
        ctx.record_tool("fetch", cost=rec.cost, attrs=attrs)
    elif rec.how == "retrieval":
        ctx.record("retrieval", "vector search", cost=rec.cost, attrs=attrs)
    elif rec.how == "zero":
        ctx.record_tool("free", cost=0, attrs=attrs)
    elif rec.how == "unpriced_llm":
        ctx.record_llm(model="no-such-model", usage=Usage(input_tokens=rec.tokens), attrs=attrs)
    else:
        ctx.record_tool("unknown-tool", attrs=attrs)


class Sampler(threading.Thread):
    """Reads the tree while it is being written and checks every read is exact."""

    def __init__(self, tree: CostTree) -> None:
        super().__init__(daemon=True)
        self.tree = tree
        self.stop = threading.Event()
        self.reads = 0
        self.error: BaseException | None = None

    def check_once(self) -> None:
        tree = self.tree
        # one lock acquisition: cost, unpriced and span count agree; spans only ever get appended, so the first
        # `total.spans` spans of a later snapshot are exactly the spans that total covered
        total = tree.total
        spans = tree.spans()
        assert len(spans) >= total.spans
        seen = spans[: total.spans]
        assert sum((s.cost for s in seen if s.cost is not None), Decimal(0)) == total.cost
        assert sum(s.cost is None for s in seen) == total.unpriced
        # holding the tree's own lock, every span's totals are already rolled up
        with tree._lock:
            assert_rollup_consistent(list(tree._spans))
        if self.reads % 4 == 0:
            # a serialized snapshot is itself a well-formed tree whose root total is the sum of what it contains
            data = tree.to_dict()
            rebuilt = CostTree.from_dict(data)
            costs = [Decimal(r["cost"]) for r in data["spans"] if r["cost"] is not None]
            assert rebuilt.total_cost == sum(costs, Decimal(0))
            assert len(rebuilt) == len(data["spans"])
            assert tree.render()
        self.reads += 1

    def run(self) -> None:
        try:
            while not self.stop.is_set() or self.reads < 3:
                self.check_once()
        except BaseException as error:
            self.error = error


def execute_plan(plan: tuple[NodePlan, ...], book: PriceBook) -> tuple[CostTree, dict[int, CostContext], Sampler]:
    opened: dict[int, CostContext] = {}
    ready = [threading.Event() for _ in plan]

    def step(ctx: CostContext, i: int, k: int, op: Rec | Open) -> None:
        if isinstance(op, Open):
            child = ctx.child(f"node{op.child}", attrs={"agent": f"node{op.child}"})
            opened[op.child] = child
            ready[op.child].set()
        else:
            do_record(ctx, f"{i}.{k}", op)

    def sync_job(i: int) -> None:
        if not ready[i].wait(30):
            raise TimeoutError(f"node {i} was never opened")
        ctx = opened[i]
        with contextlib.ExitStack() as stack:
            if plan[i].use_with:
                stack.enter_context(ctx)
            for k, op in enumerate(plan[i].ops):
                step(ctx, i, k, op)
                time.sleep(0)  # let other threads, and the sampler, run between records

    async def async_job(i: int) -> None:
        for _ in range(30_000):
            if ready[i].is_set():
                break
            await asyncio.sleep(0.001)
        else:
            raise TimeoutError(f"node {i} was never opened")
        ctx = opened[i]
        with contextlib.ExitStack() as stack:
            if plan[i].use_with:
                stack.enter_context(ctx)
            for k, op in enumerate(plan[i].ops):
                step(ctx, i, k, op)
                await asyncio.sleep(0)

    async def main() -> tuple[CostTree, Sampler]:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=4) as pool:
            jobs: list[asyncio.Future[None]] = []
            with agentcost.run("root", attrs={"team": "t"}, pricing=book) as root:
                sampler = Sampler(root.tree)
                samplers.append(sampler)
                sampler.start()
                opened[0] = root
                ready[0].set()
                # pool jobs are submitted in node order, so a pool job's pool parent always started before it
                for i, node in enumerate(plan):
                    if node.mode == "thread":
                        jobs.append(asyncio.wrap_future(pool.submit(sync_job, i)))
                    elif node.mode == "executor":
                        jobs.append(loop.run_in_executor(pool, sync_job, i))
                    else:
                        jobs.append(asyncio.ensure_future(async_job(i)))
            # the root's block has exited: everything from here on is late work, and must still count
            await asyncio.gather(*jobs)
        return root.tree, sampler

    samplers: list[Sampler] = []
    try:
        tree, sampler = asyncio.run(main())
    finally:
        for started in samplers:  # never leave a sampler spinning, even when a job failed
            started.stop.set()
            started.join(30)
    return tree, opened, sampler


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans())
def test_concurrent_recording_is_exact(plan: tuple[NodePlan, ...]) -> None:
    """Threads, executor jobs and tasks recording into one tree: every span on its node, every total exact."""
    book = make_book()
    tree, opened, sampler = execute_plan(plan, book)

    assert not sampler.is_alive()
    assert sampler.error is None, repr(sampler.error)
    assert sampler.reads >= 3

    assert set(opened) == set(range(len(plan)))
    for j, node in enumerate(plan):
        span = opened[j].span
        if j:
            assert span.parent is opened[node.parent].span
            assert span.kind == "agent"
            assert span.name == f"node{j}"
            assert dict(span.attrs) == {"team": "t", "agent": f"node{j}"}
            assert span.cost == 0
        if node.use_with or j == 0:
            assert span.ended_at is not None

    by_tag = {span.attrs["rec"]: span for span in tree if "rec" in span.attrs}
    expected_costs: list[Decimal] = []
    unpriced = 0
    for i, node in enumerate(plan):
        for k, op in enumerate(node.ops):
            if isinstance(op, Open):
                continue
            span = by_tag.pop(f"{i}.{k}")
            kind, cost, source = expected_record(book, op)
            assert span.parent is opened[i].span
            assert span.kind == kind
            assert span.cost_source == source
            if cost is None:
                assert span.cost is None
                unpriced += 1
            else:
                assert span.cost is not None
                assert str(span.cost) == str(cost)
                expected_costs.append(cost)
    assert by_tag == {}

    spans = tree.spans()
    assert len(tree) == len(spans) == len(plan) + sum(isinstance(op, Rec) for node in plan for op in node.ops)
    assert tree.root.total_cost == sum(expected_costs, Decimal(0))
    assert tree.total_cost == sum((own_cost(s) for s in spans), Decimal(0))
    assert tree.unpriced == unpriced == tree.root.total_unpriced
    assert tree.total == CostTotal(sum(expected_costs, Decimal(0)), unpriced, len(spans))
    assert_rollup_consistent(spans)
    position = {span.id: n for n, span in enumerate(spans)}
    for span in spans[1:]:
        assert span.parent is not None
        assert position[span.parent.id] < position[span.id]
    assert len(position) == len(spans)  # ids are unique


def test_sampler_catches_a_tree_whose_rollup_is_inconsistent() -> None:
    """The sampler's check fails on a tree whose totals were not rolled up (so the property can fail)."""
    with agentcost.run("root", pricing=make_book()) as root:
        span = root.record_tool("t", cost="1")
    span.total_cost = Decimal(2)
    sampler = Sampler(root.tree)
    with pytest.raises(AssertionError):
        sampler.check_once()


# ---------------------------------------------------------------------------------------------------------------------
# exact totals whatever the caller's decimal context (bugs: see the report)
# ---------------------------------------------------------------------------------------------------------------------


def test_totals_ignore_the_recording_threads_decimal_context() -> None:
    """Totals stay exact when the code that records has lowered its thread's decimal precision."""
    with agentcost.run("root") as root:
        root.record_tool("a", cost="1")

        def record_with_low_precision() -> None:
            with decimal.localcontext() as context:
                context.prec = 3
                root.record_tool("b", cost="0.00001")

        worker = threading.Thread(target=record_with_low_precision)
        worker.start()
        worker.join()
    assert root.tree.total_cost == Decimal("1.00001")


def test_cost_by_ignores_the_readers_decimal_context() -> None:
    """Grouped sums stay exact when the reader has lowered its decimal precision."""
    with agentcost.run("root") as root:
        root.record_tool("a", cost="1")
        root.record_tool("b", cost="0.00001")
    with decimal.localcontext() as context:
        context.prec = 3
        grouped = root.tree.cost_by_kind()
    assert grouped["tool"].cost == Decimal("1.00001")


def test_totals_exact_beyond_28_significant_digits() -> None:
    """A total that needs more than the default 28 significant digits is still the exact sum."""
    with agentcost.run("root") as root:
        root.record_tool("a", cost="1")
        root.record_tool("b", cost="0.0000000000000000000000000001")
    assert root.tree.total_cost == Decimal("1.0000000000000000000000000001")


# ---------------------------------------------------------------------------------------------------------------------
# queries
# ---------------------------------------------------------------------------------------------------------------------


def test_totals_of_sample_tree() -> None:
    """Root, intermediate and leaf totals are exact and unpriced spans are counted, not priced at zero."""
    tree = sample_tree()
    assert tree.total_cost == Decimal("0.515")
    assert tree.unpriced == 1
    assert tree.total == CostTotal(Decimal("0.515"), 1, 8)
    (planner,) = tree.find(name="planner")
    assert planner.cost == 0
    assert planner.total_cost == Decimal("0.512")
    assert planner.total_unpriced == 1
    (worker,) = tree.find(name="worker")
    assert worker.total_cost == Decimal("0.5")
    (mystery,) = tree.find(name="mystery")
    assert mystery.cost is None
    assert mystery.total_cost == 0
    assert mystery.total_unpriced == 1
    assert mystery.cost_source is None


def test_cost_total_fields_and_str() -> None:
    """CostTotal carries cost, unpriced and span count; str shows dollars and the unpriced count only when nonzero."""
    total = CostTotal(Decimal("0.515"), 1, 8)
    assert (total.cost, total.unpriced, total.spans) == (Decimal("0.515"), 1, 8)
    assert str(total) == "$0.515 + 1 unpriced"
    assert str(CostTotal(Decimal("0.50"), 0, 2)) == "$0.5"
    assert str(CostTotal(Decimal(0), 0, 1)) == "$0"
    assert str(CostTotal(Decimal(0), 3, 3)) == "$0 + 3 unpriced"
    assert str(sample_tree().total) == "$0.515 + 1 unpriced"


def test_cost_by_attribute_groups_missing_key_under_none() -> None:
    """cost_by(key) sums self costs per attribute value; spans without the key group under None."""
    tree = sample_tree()
    assert tree.cost_by("agent") == {
        None: CostTotal(Decimal("0.003"), 0, 2),
        "planner": CostTotal(Decimal("0.012"), 0, 3),
        "worker": CostTotal(Decimal("0.5"), 1, 3),
    }
    assert tree.cost_by("user") == {
        None: CostTotal(Decimal("0.015"), 0, 5),
        "u1": CostTotal(Decimal("0.5"), 1, 3),
    }
    assert tree.cost_by("team") == {"search": CostTotal(Decimal("0.515"), 1, 8)}
    assert tree.cost_by("nope") == {None: CostTotal(Decimal("0.515"), 1, 8)}


def test_cost_by_model_kind_provider() -> None:
    """cost_by_model/kind/provider group self costs by those span fields."""
    tree = sample_tree()
    assert tree.cost_by_model() == {
        None: CostTotal(Decimal("0.01"), 0, 4),
        "model-a": CostTotal(Decimal("0.002"), 0, 1),
        "mystery": CostTotal(Decimal(0), 1, 1),
        "model-b": CostTotal(Decimal("0.5"), 0, 1),
        "embed-1": CostTotal(Decimal("0.003"), 0, 1),
    }
    assert tree.cost_by_kind() == {
        "run": CostTotal(Decimal(0), 0, 1),
        "agent": CostTotal(Decimal(0), 0, 2),
        "llm": CostTotal(Decimal("0.502"), 1, 3),
        "tool": CostTotal(Decimal("0.01"), 0, 1),
        "retrieval": CostTotal(Decimal("0.003"), 0, 1),
    }
    assert tree.cost_by_provider() == {
        None: CostTotal(Decimal("0.013"), 1, 6),
        "prov-a": CostTotal(Decimal("0.002"), 0, 1),
        "prov-b": CostTotal(Decimal("0.5"), 0, 1),
    }
    for grouping in (tree.cost_by_model(), tree.cost_by_kind(), tree.cost_by_provider(), tree.cost_by("agent")):
        assert sum((t.cost for t in grouping.values()), Decimal(0)) == tree.total_cost
        assert sum(t.unpriced for t in grouping.values()) == tree.unpriced
        assert sum(t.spans for t in grouping.values()) == len(tree)


def test_find_by_name_kind_and_attributes() -> None:
    """find() returns, in recording order, the spans matching every given criterion."""
    tree = sample_tree()
    assert [s.name for s in tree.find(kind="llm")] == ["model-a", "mystery", "model-b"]
    assert [s.name for s in tree.find(kind="llm", agent="worker")] == ["mystery", "model-b"]
    assert [s.name for s in tree.find(agent="planner")] == ["planner", "model-a", "search"]
    assert [s.kind for s in tree.find(name="search")] == ["tool"]
    assert len(tree.find(team="search")) == 8
    assert tree.find(user="nobody") == []
    assert tree.find(name="search", kind="llm") == []
    assert tree.find() == tree.spans()


def test_get_by_id_including_spans_recorded_after_a_lookup() -> None:
    """get(span_id) returns the span object, also for spans recorded after an earlier get; unknown ids KeyError."""
    with agentcost.run("root") as root:
        first = root.record_tool("a", cost="1")
        assert root.tree.get(first.id) is first
        assert root.tree.get(root.span.id) is root.span
        child = root.child("c")
        second = child.record_tool("b", cost="2")
    assert root.tree.get(second.id) is second
    assert root.tree.get(child.span.id) is child.span
    with pytest.raises(KeyError):
        root.tree.get(12345)


def test_iteration_len_and_spans_snapshot() -> None:
    """Iteration yields every span in recording order with parents first; len counts them; spans() is a copy."""
    tree = sample_tree()
    names = [s.name for s in tree]
    assert names == ["req", "planner", "model-a", "search", "worker", "mystery", "model-b", "lookup"]
    assert len(tree) == 8
    seen: set[int] = set()
    for span in tree:
        assert span.parent is None or span.parent.id in seen
        seen.add(span.id)
    snapshot = tree.spans()
    snapshot.clear()
    assert len(tree) == 8
    assert tree.root.walk() == tree.spans()


def test_span_helpers() -> None:
    """parent_id, depth, duration and walk() describe a span's place in the tree."""
    tree = sample_tree()
    (worker,) = tree.find(name="worker")
    (mystery,) = tree.find(name="mystery")
    assert mystery.parent_id == worker.id
    assert tree.root.parent_id is None
    assert (tree.root.depth, worker.depth, mystery.depth) == (0, 2, 3)
    assert [s.name for s in worker.walk()] == ["worker", "mystery", "model-b"]
    assert worker.duration is not None
    assert worker.duration >= 0
    with agentcost.run("open") as ctx:
        assert ctx.span.duration is None


def test_total_usage_sums_every_span() -> None:
    """total_usage() adds up the usage of every span; containers add no requests."""
    assert sample_tree().total_usage() == Usage(input_tokens=1015, output_tokens=500, requests=5)
    with agentcost.run("empty") as ctx:
        pass
    assert ctx.tree.total_usage() == Usage(requests=0)
    with agentcost.run("units") as ctx:
        ctx.record("custom", "gpu", cost="1", usage=Usage(units={"gpu_seconds": Decimal("1.5")}))
        ctx.record("custom", "gpu", cost="1", usage=Usage(units={"gpu_seconds": Decimal("2.25"), "calls": 2}))
    assert ctx.tree.total_usage() == Usage(requests=2, units={"gpu_seconds": Decimal("3.75"), "calls": 2})


SAMPLE_RENDER = """\
                                                     total  self
run req                                         $0.515 +1?  $0
├─ agent planner                                $0.512 +1?  $0
│  ├─ llm model-a                                   $0.002  $0.002
│  ├─ tool search                                    $0.01  $0.01
│  └─ agent worker                                $0.5 +1?  $0
│     ├─ llm mystery                                $0 +1?  unpriced
│     └─ llm model-b (asked model-x) !degraded        $0.5  $0.5
└─ retrieval lookup [embed-1]                       $0.003  $0.003
(1 unpriced span(s): '+N?' marks them)"""


def test_render_full_tree() -> None:
    """render() indents children, shows inclusive then self cost, marks unpriced spans, models and statuses."""
    assert sample_tree().render() == SAMPLE_RENDER


def test_render_max_depth() -> None:
    """render(max_depth=n) stops below depth n but keeps inclusive totals of the hidden subtrees."""
    tree = sample_tree()
    assert tree.render(max_depth=1) == (
        "                                    total  self\n"
        "run req                        $0.515 +1?  $0\n"
        "├─ agent planner               $0.512 +1?  $0\n"
        "└─ retrieval lookup [embed-1]      $0.003  $0.003\n"
        "(1 unpriced span(s): '+N?' marks them)"
    )
    assert tree.render(max_depth=0) == (
        "              total  self\nrun req  $0.515 +1?  $0\n(1 unpriced span(s): '+N?' marks them)"
    )


def test_render_places_and_no_unpriced_footer() -> None:
    """render(places=) rounds amounts for display only; a fully priced tree has no unpriced footer."""
    with agentcost.run("r") as ctx:
        ctx.record_tool("t", cost="0.123456")
        ctx.record_tool("u", cost="0.00001")
    text = ctx.tree.render(places=2)
    assert text.splitlines() == [
        "              total  self",
        "run r         $0.12  $0",
        "├─ tool t     $0.12  $0.12",
        "└─ tool u  $0.00001  $0.00001",
    ]
    assert "unpriced" not in ctx.tree.render()
    assert "$0.123466" in ctx.tree.render()
    assert ctx.tree.total_cost == Decimal("0.123466")


# ---------------------------------------------------------------------------------------------------------------------
# (b) serialization round trip
# ---------------------------------------------------------------------------------------------------------------------

texts = st.text(min_size=1, max_size=6)
optional_texts = st.none() | texts
statuses = st.sampled_from(["ok", "error", "degraded", "skipped", "cancelled"])
optional_money = st.none() | money
timestamps = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)
unit_values = st.integers(0, 10**6) | money


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    cache_read, cache_write, extra_in = (draw(st.integers(0, 10**6)) for _ in range(3))
    reasoning, extra_out = draw(st.integers(0, 10**6)), draw(st.integers(0, 10**6))
    units = draw(st.none() | st.dictionaries(texts, unit_values, max_size=2))
    return Usage(
        input_tokens=cache_read + cache_write + extra_in,
        output_tokens=reasoning + extra_out,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        requests=draw(st.integers(0, 3)),
        units=units,
    )


def attrs_for(data: st.DataObject, ctx: CostContext) -> dict[str, str]:
    """Random attributes a child of ``ctx`` may carry: new keys, equal inherited values, or a new agent."""
    keys = st.sampled_from(["team", "user", "agent", "feature"]) | st.text(max_size=3)
    drawn = data.draw(st.dictionaries(keys, st.text(max_size=4), max_size=3))
    return {k: (v if k == "agent" else ctx.attrs.get(k, v)) for k, v in drawn.items()}


def random_tree(data: st.DataObject) -> CostTree:
    book = make_book()
    root_attrs = data.draw(st.dictionaries(st.text(max_size=3), st.text(max_size=4), max_size=3))
    root = agentcost.run(data.draw(texts), attrs=root_attrs, pricing=book)
    contexts = [root]
    for _ in range(data.draw(st.integers(0, 20))):
        ctx = data.draw(st.sampled_from(contexts))
        action = data.draw(st.sampled_from(["child", "llm", "tool", "record", "end"]))
        if action == "child":
            kind = data.draw(st.sampled_from(["agent", "agent", "custom", "http"]))
            contexts.append(ctx.child(data.draw(texts), kind=kind, attrs=attrs_for(data, ctx)))
        elif action == "llm":
            ctx.record_llm(
                model=data.draw(st.sampled_from(["priced-model", "Priced-Model", "unknown-model"]) | texts),
                usage=data.draw(usages()),
                provider=data.draw(optional_texts),
                cost=data.draw(optional_money),
                requested_model=data.draw(optional_texts),
                attrs=attrs_for(data, ctx),
                status=data.draw(statuses),
                error=data.draw(optional_texts),
                started_at=data.draw(st.none() | timestamps),
            )
        elif action == "tool":
            ctx.record_tool(
                data.draw(st.sampled_from(["search", "other"]) | texts),
                cost=data.draw(optional_money),
                usage=data.draw(st.none() | usages()),
                attrs=attrs_for(data, ctx),
                status=data.draw(statuses),
                error=data.draw(optional_texts),
                started_at=data.draw(st.none() | timestamps),
            )
        elif action == "record":
            ctx.record(
                data.draw(st.sampled_from(["tool", "retrieval", "embedding", "http", "custom", "llm"])),
                data.draw(texts),
                cost=data.draw(optional_money),
                usage=data.draw(st.none() | usages()),
                model=data.draw(st.none() | st.just("priced-model") | texts),
                provider=data.draw(optional_texts),
                cost_source=data.draw(st.none() | st.sampled_from(["provider", "computed", "estimated", "remote"])),
                attrs=attrs_for(data, ctx),
                status=data.draw(statuses),
                error=data.draw(optional_texts),
                started_at=data.draw(st.none() | timestamps),
            )
        else:
            ctx.end(status=data.draw(st.none() | statuses), error=data.draw(optional_texts))
    if data.draw(st.booleans()):
        root.end()
    return root.tree


def span_fields(span: Span) -> tuple[object, ...]:
    """Every observable field of a span, with Decimals as strings so exponents count."""
    units = (
        None if span.usage.units is None else sorted((k, type(v).__name__, str(v)) for k, v in span.usage.units.items())
    )
    return (
        span.id,
        span.parent_id,
        span.kind,
        span.name,
        dict(span.attrs),
        span.usage,
        repr(span.usage),
        units,
        None if span.cost is None else str(span.cost),
        span.cost_source,
        span.model,
        span.requested_model,
        span.provider,
        span.status,
        span.error,
        repr(span.started_at),
        repr(span.ended_at),
        str(span.total_cost),
        span.total_unpriced,
        [child.id for child in span.children],
        span.depth,
    )


def tree_fields(tree: CostTree) -> tuple[object, ...]:
    def grouped(groups: dict[str | None, CostTotal]) -> list[tuple[str | None, str, int, int]]:
        return [(k, str(t.cost), t.unpriced, t.spans) for k, t in groups.items()]

    return (
        [span_fields(span) for span in tree],
        str(tree.total_cost),
        tree.unpriced,
        tree.total,
        len(tree),
        tree.render(),
        tree.render(max_depth=1),
        tree.render(places=2),
        grouped(tree.cost_by_kind()),
        grouped(tree.cost_by_model()),
        grouped(tree.cost_by_provider()),
        grouped(tree.cost_by("agent")),
        tree.total_usage(),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_round_trip_is_lossless(data: st.DataObject) -> None:
    """to_dict/from_dict and to_json/from_json reproduce every field, Decimal exponent, attribute and total."""
    tree = random_tree(data)
    expected = tree_fields(tree)
    as_dict = tree.to_dict()
    from_dict = CostTree.from_dict(copy.deepcopy(as_dict))
    assert tree_fields(from_dict) == expected
    assert from_dict.to_dict() == as_dict
    text = tree.to_json()
    from_json = CostTree.from_json(text)
    assert tree_fields(from_json) == expected
    assert from_json.to_json() == text
    assert tree_fields(CostTree.from_json(text.encode())) == expected
    assert tree_fields(CostTree.from_json(tree.to_json(ensure_ascii=False, indent=2))) == expected
    assert json.loads(text) == as_dict


def test_round_trip_keeps_exponents_and_attribute_additions() -> None:
    """Costs like 0.0100 and 1E+2 keep their exponent; only a span's own attribute additions are serialized."""
    with (
        agentcost.run("r", attrs={"team": "a", "agent": "top"}) as root,
        root.child("c", attrs={"agent": "inner", "user": "u"}) as child,
    ):
        child.record_tool("t", cost=Decimal("0.0100"))
        child.record_tool("u", cost=Decimal("1E+2"))
        child.record_tool("v", cost="0.000")
    data = root.tree.to_dict()
    records = data["spans"]
    assert data["format"] == "agentcost.tree"
    assert data["version"] == 1
    assert records[0]["attrs"] == {"team": "a", "agent": "top"}
    assert records[1]["attrs"] == {"agent": "inner", "user": "u"}
    assert "attrs" not in records[2]
    assert [r["cost"] for r in records[2:]] == ["0.0100", "1E+2", "0.000"]
    assert records[1]["parent_id"] == records[0]["id"] == agentcost.format_span_id(root.span.id)
    rebuilt = CostTree.from_dict(data)
    assert [str(s.cost) for s in rebuilt][2:] == ["0.0100", "1E+2", "0.000"]
    assert str(rebuilt.total_cost) == str(root.tree.total_cost) == "100.0100"
    assert dict(rebuilt.spans()[2].attrs) == {"team": "a", "agent": "inner", "user": "u"}


# ---------------------------------------------------------------------------------------------------------------------
# from_dict validation
# ---------------------------------------------------------------------------------------------------------------------


def base_dict() -> dict[str, Any]:
    """A valid serialized tree: a root, an agent and two priced calls, one unpriced."""
    with (
        agentcost.run("r", attrs={"team": "a"}, pricing=make_book()) as root,
        root.child("agent", attrs={"agent": "x"}) as agent,
    ):
        agent.record_llm(model="priced-model", usage=Usage(input_tokens=100), provider="p")
        agent.record_tool("t", cost="0.5")
        agent.record_llm(model="nope", usage=Usage(input_tokens=1))
    return root.tree.to_dict()


def only_tree_format_error(load: Callable[[], CostTree]) -> CostTree | None:
    """Run ``load``; a TreeFormatError means None, any other exception propagates."""
    try:
        return load()
    except TreeFormatError:
        return None


Mutation = Callable[[dict[str, Any]], Any]


def _set(index: int, field: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> Any:
        data["spans"][index][field] = value
        return data

    return mutate


def _drop(index: int, field: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> Any:
        del data["spans"][index][field]
        return data

    return mutate


def _top(field: str, value: object) -> Mutation:
    def mutate(data: dict[str, Any]) -> Any:
        data[field] = value
        return data

    return mutate


def _duplicate_id(data: dict[str, Any]) -> Any:
    data["spans"][3]["id"] = data["spans"][2]["id"]
    return data


def _second_root(data: dict[str, Any]) -> Any:
    data["spans"][1]["parent_id"] = None
    return data


def _child_first(data: dict[str, Any]) -> Any:
    data["spans"][0], data["spans"][1] = data["spans"][1], data["spans"][0]
    return data


def _parent_later(data: dict[str, Any]) -> Any:
    data["spans"][2], data["spans"][1] = data["spans"][1], data["spans"][2]
    return data


REJECTED: list[tuple[str, Mutation, str]] = [
    ("not-a-mapping", lambda data: [data], "expected a mapping"),
    ("wrong-format", _top("format", "other.tree"), "format"),
    ("missing-format", lambda data: {k: v for k, v in data.items() if k != "format"}, "format"),
    ("version-2", _top("version", 2), "unsupported tree version 2"),
    ("version-str", _top("version", "1"), "unsupported tree version '1'"),
    ("missing-version", lambda data: {k: v for k, v in data.items() if k != "version"}, "unsupported tree version"),
    ("spans-empty", _top("spans", []), "'spans' must be a non-empty list"),
    ("spans-not-list", _top("spans", {"a": 1}), "'spans' must be a non-empty list"),
    ("span-not-mapping", _top("spans", ["x"]), "a span must be a mapping"),
    ("missing-id", _drop(2, "id"), "span #2: a span id is 16 hexadecimal digits"),
    ("bad-id", _set(2, "id", "xyz"), "span #2: a span id is 16 hexadecimal digits"),
    ("int-id", _set(2, "id", 5), "a span id is 16 hexadecimal digits"),
    ("zero-id", _set(2, "id", "0" * 16), "must not be 0"),
    ("duplicate-id", _duplicate_id, "span #3: duplicate id"),
    ("unknown-parent", _set(2, "parent_id", "00000000000000ff"), "parent 00000000000000ff is not an earlier span"),
    ("parent-after-child", _parent_later, "is not an earlier span"),
    ("child-first", _child_first, "is not an earlier span"),
    ("second-root", _second_root, "span #1: a second root"),
    ("float-cost", _set(3, "cost", 0.5), "cost must be a decimal string or null, got 0.5"),
    ("int-cost", _set(3, "cost", 1), "cost must be a decimal string or null"),
    ("nan-cost", _set(3, "cost", "NaN"), "finite"),
    ("inf-cost", _set(3, "cost", "Infinity"), "finite"),
    ("negative-cost", _set(3, "cost", "-0.5"), "negative"),
    ("garbage-cost", _set(3, "cost", "abc"), "not a decimal number"),
    ("unknown-kind", _set(3, "kind", "banana"), "unknown kind 'banana'"),
    ("missing-kind", _drop(3, "kind"), "unknown kind None"),
    ("missing-name", _drop(3, "name"), "name must be a string"),
    ("int-name", _set(3, "name", 7), "name must be a string"),
    ("unknown-cost-source", _set(3, "cost_source", "guess"), "unknown cost_source 'guess'"),
    ("missing-started-at", _drop(3, "started_at"), "started_at is required"),
    ("str-started-at", _set(3, "started_at", "today"), "started_at must be a number of seconds"),
    ("bool-started-at", _set(3, "started_at", True), "started_at must be a number of seconds"),
    ("str-ended-at", _set(3, "ended_at", "later"), "ended_at must be a number of seconds"),
    ("int-status", _set(3, "status", 1), "status must be one of"),
    ("int-model", _set(2, "model", 1), "model must be a string or null"),
    ("int-provider", _set(2, "provider", 1), "provider must be a string or null"),
    ("int-error", _set(2, "error", 1), "error must be a string or null"),
    ("attr-not-str", _set(3, "attrs", {"k": 1}), "attribute 'k' must be a str"),
    ("attrs-not-mapping", _set(3, "attrs", ["k"]), "attrs must be a mapping"),
    ("attr-replaces-inherited", _set(3, "attrs", {"team": "b"}), "cannot be replaced"),
    ("negative-tokens", _set(2, "usage", {"input_tokens": -1}), "input_tokens must be a non-negative int"),
    ("float-tokens", _set(2, "usage", {"input_tokens": 1.5}), "input_tokens must be a non-negative int"),
    ("unknown-usage-field", _set(2, "usage", {"tokens": 1}), "unknown usage fields: tokens"),
]


@pytest.mark.parametrize(("mutate", "message"), [(m, msg) for _, m, msg in REJECTED], ids=[i for i, _, _ in REJECTED])
def test_from_dict_rejects_malformed_input(mutate: Mutation, message: str) -> None:
    """from_dict raises TreeFormatError (a ValueError) that says what is wrong."""
    base = base_dict()
    assert CostTree.from_dict(copy.deepcopy(base)).to_dict() == base  # the unmutated input is fine
    data = mutate(base)
    with pytest.raises(TreeFormatError) as caught:
        CostTree.from_dict(data)
    assert isinstance(caught.value, ValueError)
    assert message in str(caught.value)
    with pytest.raises(TreeFormatError) as caught_json:
        CostTree.from_json(json.dumps(data))
    assert message in str(caught_json.value)


def test_from_dict_rejects_unknown_status() -> None:
    """from_dict refuses a status no span can have, as the recording API does."""
    data = _set(3, "status", "bogus")(base_dict())
    with pytest.raises(TreeFormatError, match="status"):
        CostTree.from_dict(data)


def test_from_json_rejects_non_json() -> None:
    """from_json raises TreeFormatError for text and bytes that are not JSON."""
    for text in ("not json", "", "{", b"\xff\xfe"):
        with pytest.raises(TreeFormatError, match="not JSON"):
            CostTree.from_json(text)


# Inputs that currently escape as AttributeError / OverflowError (bugs: see the report).
LEAKS: list[tuple[str, Mutation]] = [
    ("usage-list", _set(2, "usage", [])),
    ("usage-str", _set(2, "usage", "")),
    ("units-list", _set(2, "usage", {"units": [1]})),
    ("units-str", _set(2, "usage", {"units": "ab"})),
    ("units-bad-value", _set(2, "usage", {"units": {"x": "abc"}})),
    ("units-bad-key", _set(2, "usage", {"units": {"": 1}})),
    ("huge-int-started-at", _set(3, "started_at", 10**400)),
    ("huge-int-ended-at", _set(3, "ended_at", 10**400)),
]


@pytest.mark.parametrize("mutate", [m for _, m in LEAKS], ids=[i for i, _ in LEAKS])
def test_from_dict_only_raises_tree_format_error(mutate: Mutation) -> None:
    """Malformed usage and out-of-range timestamps raise TreeFormatError, nothing else."""
    data = mutate(base_dict())
    with pytest.raises(TreeFormatError):
        CostTree.from_dict(data)


HUGE: list[tuple[str, Mutation]] = [
    ("cost-overflows-total", _set(3, "cost", "1E+1000000")),
    ("costs-overflow-total", lambda d: _set(1, "cost", "9E+999999")(_set(3, "cost", "9E+999999")(d))),
]


@pytest.mark.parametrize("mutate", [m for _, m in HUGE], ids=[i for i, _ in HUGE])
def test_from_dict_costs_too_large_to_total(mutate: Mutation) -> None:
    """Costs whose sum overflows the default decimal context load with exact totals or raise TreeFormatError."""
    data = mutate(base_dict())
    loaded = only_tree_format_error(lambda: CostTree.from_dict(data))
    if loaded is not None:
        assert_rollup_consistent(loaded.spans())
        with decimal.localcontext(WIDE):
            expected = sum((own_cost(s) for s in loaded), Decimal(0))
        assert loaded.total_cost == expected


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
TRICKY_VALUES: list[object] = [
    "1E+1000000",
    "-0",
    "NaN",
    "0.1",
    "0000000000000001",
    [],
    "",
    {},
    {"units": []},
    {"units": {"x": "1.5"}},
    {"input_tokens": 5, "cache_read_tokens": 9},
    10**400,
]
usage_like = st.dictionaries(
    st.sampled_from(
        ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "requests"]
        + ["units"] * 3
    ),
    st.one_of(json_values, st.sampled_from(TRICKY_VALUES)),
    max_size=3,
)


SPAN_FIELDS = [
    "id",
    "parent_id",
    "kind",
    "name",
    "cost",
    "started_at",
    "ended_at",
    "status",
    "attrs",
    "usage",
    "cost_source",
    "model",
    "requested_model",
    "provider",
    "error",
]


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_fuzz_from_dict_random_json(value: object) -> None:
    """from_dict/from_json of arbitrary JSON values raise nothing but TreeFormatError."""
    only_tree_format_error(lambda: CostTree.from_dict(value))  # type: ignore[arg-type]
    only_tree_format_error(lambda: CostTree.from_json(json.dumps(value)))
    wrapped = {"format": "agentcost.tree", "version": 1, "spans": value}
    only_tree_format_error(lambda: CostTree.from_dict(wrapped))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40) | st.binary(max_size=40))
def test_fuzz_from_json_random_text(text: str | bytes) -> None:
    """from_json of arbitrary text or bytes raises nothing but TreeFormatError."""
    only_tree_format_error(lambda: CostTree.from_json(text))


mutations = st.tuples(
    st.integers(0, 4),
    st.one_of(*[st.sampled_from(SPAN_FIELDS)] * 3, st.text(max_size=4)),
    st.one_of(st.none(), json_values, *[st.sampled_from(TRICKY_VALUES)] * 2, usage_like),
    st.sampled_from([False, False, False, True]),
)
field_values = st.one_of(st.none(), json_values, st.sampled_from(TRICKY_VALUES), usage_like)


def check_loads_or_rejects(data: dict[str, Any]) -> None:
    """Load ``data``: either TreeFormatError, or a tree that re-serializes stably and whose totals are consistent."""
    loaded = only_tree_format_error(lambda: CostTree.from_dict(data))
    if loaded is not None:
        again = CostTree.from_dict(loaded.to_dict())
        assert again.to_dict() == loaded.to_dict()
        assert again.render() == loaded.render()
        assert_rollup_consistent(again.spans())


@settings(max_examples=250, deadline=None)
@given(st.integers(0, 4), field_values, st.lists(mutations, max_size=2))
def test_fuzz_from_dict_mutated_trees(index: int, value: object, extra: list[tuple[int, str, object, bool]]) -> None:
    """A valid tree with random fields replaced or removed loads (re-serializing stably) or raises TreeFormatError."""
    base = base_dict()
    for span_index, field, new, delete in extra:
        record = base["spans"][span_index]
        if delete:
            record.pop(field, None)
        else:
            record[field] = new
    check_loads_or_rejects(copy.deepcopy(base))
    for field in SPAN_FIELDS:
        replaced = copy.deepcopy(base)
        replaced["spans"][index][field] = copy.deepcopy(value)
        check_loads_or_rejects(replaced)
        removed = copy.deepcopy(base)
        removed["spans"][index].pop(field, None)
        check_loads_or_rejects(removed)
