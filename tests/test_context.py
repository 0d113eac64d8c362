"""CostContext: recording, late work, ending, attribution and input validation."""

from __future__ import annotations

import asyncio
import decimal
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import agentcost
from agentcost import (
    AgentCostError,
    CostContext,
    CustomPrice,
    InvalidAttribute,
    InvalidAttributeType,
    InvalidMoney,
    InvalidMoneyType,
    InvalidUsage,
    PriceBook,
    Usage,
)


def make_book() -> PriceBook:
    return PriceBook(
        catalog=False,
        models={"priced-model": CustomPrice(input_mtok=Decimal("2"), output_mtok=Decimal("8"))},
        tools={"search": "0.01"},
    )


WIDE = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN)
"""A context in which sums of any two finite decimals are exact."""


def assert_consistent(ctx: CostContext) -> None:
    """Every span's totals are its own cost plus its children's totals (computed exactly)."""
    with decimal.localcontext(WIDE):
        for span in ctx.tree:
            own = Decimal(0) if span.cost is None else span.cost
            assert span.total_cost == own + sum((c.total_cost for c in span.children), Decimal(0))


def snapshot(ctx: CostContext) -> tuple[int, object, object, dict[str, Any], str]:
    """Everything observable about a tree, for checking that a failed call changed nothing."""
    tree = ctx.tree
    return len(tree), tree.total, [(s.total_cost, s.total_unpriced) for s in tree], tree.to_dict(), tree.render()


# ---------------------------------------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------------------------------------


def test_record_llm_prices_with_the_book_or_takes_the_provider_cost() -> None:
    """record_llm prices with the book, keeps a provider's cost as given, and leaves unknown models unpriced."""
    with agentcost.run("r", pricing=make_book()) as ctx:
        computed = ctx.record_llm(model="priced-model", usage=Usage(input_tokens=1000, output_tokens=100))
        reported = ctx.record_llm(model="priced-model", usage=Usage(input_tokens=1000), cost="0.0300", provider="gw")
        unknown = ctx.record_llm(model="mystery", usage=Usage(input_tokens=1000))
    assert (computed.cost, computed.cost_source) == (Decimal("0.0028"), "computed")
    assert (str(reported.cost), reported.cost_source, reported.provider) == ("0.0300", "provider", "gw")
    assert (unknown.cost, unknown.cost_source) == (None, None)
    assert (computed.kind, computed.name, computed.model) == ("llm", "priced-model", "priced-model")
    assert ctx.tree.total_cost == Decimal("0.0328")
    assert ctx.tree.unpriced == 1


def test_record_llm_with_the_catalog() -> None:
    """With the default price book, a catalog model is priced (gpt-4o: $2.50 / $10 per million tokens)."""
    with agentcost.run("r") as ctx:
        span = ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=1000, output_tokens=100))
    assert span.cost == Decimal("0.0035")
    assert span.cost_source == "computed"


def test_record_tool_prices_from_book_manual_skipped_or_unpriced() -> None:
    """record_tool uses the book's tool price, a manual cost, zero when skipped, else unpriced."""
    with agentcost.run("r", pricing=make_book()) as ctx:
        from_book = ctx.record_tool("search")
        manual = ctx.record_tool("search", cost=Decimal("0.5"))
        skipped = ctx.record_tool("search", status="skipped")
        unpriced = ctx.record_tool("other")
    assert (from_book.cost, from_book.cost_source) == (Decimal("0.01"), "computed")
    assert (manual.cost, manual.cost_source) == (Decimal("0.5"), "manual")
    assert (skipped.cost, skipped.status) == (Decimal(0), "skipped")
    assert (unpriced.cost, unpriced.cost_source) == (None, None)
    assert ctx.tree.total_cost == Decimal("0.51")
    assert ctx.tree.unpriced == 1
    defaulted = PriceBook(catalog=False, default_tool_price="0.002")
    with agentcost.run("r", pricing=defaulted) as ctx2:
        assert ctx2.record_tool("anything").cost == Decimal("0.002")


def test_record_generic_kinds_and_sources() -> None:
    """record() takes any leaf kind; a cost is manual unless cost_source says otherwise; a model+usage is priced."""
    with agentcost.run("r", pricing=make_book()) as ctx:
        retrieval = ctx.record("retrieval", "vector", cost="0.001")
        remote = ctx.record("http", "svc", cost="0.2", cost_source="remote")
        embedding = ctx.record("embedding", "embed", model="priced-model", usage=Usage(input_tokens=500))
        unpriced = ctx.record("custom", "thing")
    assert (retrieval.kind, retrieval.cost_source) == ("retrieval", "manual")
    assert remote.cost_source == "remote"
    assert (embedding.cost, embedding.cost_source, embedding.model) == (Decimal("0.001"), "computed", "priced-model")
    assert (unpriced.cost, unpriced.usage) == (None, Usage())
    assert ctx.tree.total_cost == Decimal("0.202")


def test_child_is_a_zero_cost_container() -> None:
    """child() opens a span whose own cost is zero (not unknown) and that records under it."""
    with agentcost.run("r") as ctx, ctx.child("agent") as agent, agent.child("step", kind="custom") as step:
        step.record_tool("t", cost="0.25")
    assert agent.span.cost == 0
    assert agent.span.cost is not None
    assert agent.span.total_unpriced == 0
    assert (agent.span.kind, step.span.kind) == ("agent", "custom")
    assert step.span.parent is agent.span
    assert agent.span.total_cost == ctx.span.total_cost == Decimal("0.25")
    assert agent.tree is ctx.tree
    assert agent.pricing is ctx.pricing
    assert repr(agent) == "<CostContext agent 'agent' total=$0.25>"


# ---------------------------------------------------------------------------------------------------------------------
# late work, ending, errors, cancellation
# ---------------------------------------------------------------------------------------------------------------------


def test_records_on_an_exited_child_still_land_and_count() -> None:
    """A record on a context whose with-block has exited lands on it and rolls up."""
    with agentcost.run("r") as ctx:
        with ctx.child("agent") as agent:
            agent.record_tool("early", cost="1")
        assert agent.span.ended_at is not None
        late = agent.record_tool("late", cost="2")
        late_child = agent.child("late-child")
        late_child.record_tool("later", cost="4")
    assert late.parent is agent.span
    assert late_child.span.parent is agent.span
    assert agent.span.total_cost == Decimal("7")
    assert ctx.tree.total_cost == Decimal("7")
    assert [s.name for s in ctx.tree] == ["r", "agent", "early", "late", "late-child", "later"]


def test_records_on_the_root_after_the_run_ended_count() -> None:
    """Recording on the root after its run ended still counts, including from another thread."""
    with agentcost.run("r") as ctx:
        ctx.record_tool("a", cost="1")
    ended = ctx.span.ended_at
    assert ended is not None
    ctx.record_tool("b", cost="2")
    worker = threading.Thread(target=lambda: ctx.record_llm(model="m", usage=Usage(), cost="3"))
    worker.start()
    worker.join()
    assert ctx.tree.total_cost == Decimal("6")
    assert len(ctx.tree) == 4
    assert ctx.span.ended_at == ended
    assert ctx.span.status == "ok"


def test_late_async_work_after_the_block_counts() -> None:
    """A task still running when its parent's block exits records on the right node afterwards."""

    async def main() -> CostContext:
        release = asyncio.Event()

        async def worker(agent: CostContext) -> None:
            await release.wait()
            agent.record_tool("late", cost="0.5")

        with agentcost.run("r") as ctx, ctx.child("agent") as agent:
            task = asyncio.ensure_future(worker(agent))
        release.set()
        await task
        return ctx

    ctx = asyncio.run(main())
    (late,) = ctx.tree.find(name="late")
    assert late.parent is not None
    assert late.parent.name == "agent"
    assert ctx.tree.total_cost == Decimal("0.5")


def fail_inside(ctx: CostContext, error: BaseException, *, end_first: bool = False) -> None:
    """Record a call inside ctx's with-block, optionally end it explicitly, then raise ``error`` out of the block."""
    with ctx:
        ctx.record_tool("t", cost="1")
        if end_first:
            ctx.end(status="skipped")
        raise error


def test_ending_twice_first_end_wins() -> None:
    """end() twice is harmless: the first status, error and end time stay."""
    with agentcost.run("r") as ctx:
        agent = ctx.child("a")
        agent.end(status="degraded", error="fell back")
        first = agent.span.ended_at
        agent.end(status="error", error="second")
        agent.end()
    assert (agent.span.status, agent.span.error, agent.span.ended_at) == ("degraded", "fell back", first)


def test_exit_after_explicit_end_keeps_the_explicit_status() -> None:
    """Leaving a with-block (even by an exception) after an explicit end() does not overwrite it."""
    with agentcost.run("r") as ctx:
        agent = ctx.child("a")
        with pytest.raises(RuntimeError, match="boom"):
            fail_inside(agent, RuntimeError("boom"), end_first=True)
    assert (agent.span.status, agent.span.error) == ("skipped", None)


def test_plain_exit_ends_ok() -> None:
    """Leaving a with-block normally sets ended_at and keeps status ok with no error."""
    with agentcost.run("r") as ctx:
        assert ctx.span.ended_at is None
        with ctx.child("a") as agent:
            pass
    assert agent.span.ended_at is not None
    assert agent.span.ended_at >= agent.span.started_at
    assert (agent.span.status, agent.span.error) == ("ok", None)
    assert ctx.span.ended_at is not None


def test_exception_leaving_with_sets_error_status() -> None:
    """An exception leaving the block sets status error with the exception's type and text, and propagates."""
    with agentcost.run("r") as ctx:
        agent = ctx.child("a")
        with pytest.raises(ValueError, match="bad input"):
            fail_inside(agent, ValueError("bad input"))
    assert agent.span.status == "error"
    assert agent.span.error == "ValueError: bad input"
    assert agent.span.ended_at is not None
    assert ctx.span.status == "ok"
    assert ctx.tree.total_cost == 1


def test_exception_leaving_the_run_marks_the_root() -> None:
    """An exception leaving the run's block marks the root span as error."""
    with pytest.raises(KeyError), agentcost.run("r") as ctx:
        raise KeyError("k")
    assert (ctx.span.status, ctx.span.error) == ("error", "KeyError: 'k'")


def test_cancelled_task_marks_span_cancelled() -> None:
    """asyncio.CancelledError leaving the block sets status cancelled, not error."""

    async def main() -> tuple[CostContext, CostContext]:
        started = asyncio.Event()
        ctx = agentcost.run("r")
        holder: list[CostContext] = []

        async def work() -> None:
            with ctx.child("slow") as slow:
                holder.append(slow)
                slow.record_tool("t", cost="0.1")
                started.set()
                await asyncio.sleep(60)

        task = asyncio.ensure_future(work())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return ctx, holder[0]

    ctx, slow = asyncio.run(main())
    assert slow.span.status == "cancelled"
    assert slow.span.error == "cancelled"
    assert slow.span.ended_at is not None
    assert ctx.tree.total_cost == Decimal("0.1")


# ---------------------------------------------------------------------------------------------------------------------
# attribution
# ---------------------------------------------------------------------------------------------------------------------


def test_attributes_are_inherited_and_extended() -> None:
    """Children and records inherit their ancestors' attrs and may add keys; the agent key may be replaced."""
    with (
        agentcost.run("r", attrs={"team": "support", "agent": "root"}) as ctx,
        ctx.child("router", attrs={"agent": "router", "feature": "routing"}) as router,
        router.child("billing", attrs={"agent": "billing", "team": "support"}) as billing,
    ):
        span = billing.record_tool("lookup", cost="0.001", attrs={"call": "1"})
        llm = billing.record_llm(model="m", usage=Usage(), cost="0", attrs={"agent": "llm-agent"})
    assert dict(span.attrs) == {"team": "support", "agent": "billing", "feature": "routing", "call": "1"}
    assert dict(llm.attrs) == {"team": "support", "agent": "llm-agent", "feature": "routing"}
    assert dict(router.attrs) == {"team": "support", "agent": "router", "feature": "routing"}
    assert dict(ctx.attrs) == {"team": "support", "agent": "root"}


def test_span_attrs_are_read_only() -> None:
    """span.attrs cannot be mutated by callers."""
    with agentcost.run("r", attrs={"team": "a"}) as ctx:
        span = ctx.record_tool("t", cost="1")
    with pytest.raises(TypeError):
        span.attrs["team"] = "b"  # type: ignore[index]
    assert dict(span.attrs) == {"team": "a"}


def test_caller_mapping_is_not_aliased() -> None:
    """Mutating the dict passed as attrs afterwards does not change the recorded attribution."""
    own = {"user": "u1"}
    with agentcost.run("r") as ctx:
        child = ctx.child("c", attrs=own)
        own["user"] = "u2"
        own["extra"] = "x"
    assert dict(child.attrs) == {"user": "u1"}


# ---------------------------------------------------------------------------------------------------------------------
# bad input leaves the tree unchanged
# ---------------------------------------------------------------------------------------------------------------------


def untyped(value: object) -> Any:
    """Pass a deliberately ill-typed value past the type checker."""
    return value


Call = Callable[[Any], object]
BAD: list[tuple[str, Call, type[BaseException], str]] = [
    # money
    ("tool-float-cost", lambda c: c.record_tool("t", cost=0.1), InvalidMoneyType, "Decimal"),
    ("llm-float-cost", lambda c: c.record_llm(model="m", usage=Usage(), cost=0.5), InvalidMoneyType, "Decimal"),
    ("record-float-cost", lambda c: c.record("custom", "x", cost=1.5), InvalidMoneyType, "not float"),
    ("bool-cost", lambda c: c.record_tool("t", cost=True), InvalidMoneyType, "not bool"),
    ("list-cost", lambda c: c.record_tool("t", cost=[1]), InvalidMoneyType, "not list"),
    ("nan-cost", lambda c: c.record_tool("t", cost="NaN"), InvalidMoney, "finite"),
    ("inf-cost", lambda c: c.record_tool("t", cost="Infinity"), InvalidMoney, "finite"),
    ("decimal-nan-cost", lambda c: c.record_tool("t", cost=Decimal("NaN")), InvalidMoney, "finite"),
    ("negative-cost", lambda c: c.record_tool("t", cost="-0.01"), InvalidMoney, "must not be negative"),
    ("negative-int-cost", lambda c: c.record_llm(model="m", usage=Usage(), cost=-1), InvalidMoney, "negative"),
    ("garbage-cost", lambda c: c.record_tool("t", cost="12 dollars"), InvalidMoney, "not a decimal number"),
    # attributes
    ("attr-int-key", lambda c: c.child("x", attrs={1: "a"}), InvalidAttributeType, "keys must be str"),
    ("attr-int-value", lambda c: c.child("x", attrs={"k": 1}), InvalidAttributeType, "attribute 'k' must be a str"),
    ("attr-none-value", lambda c: c.record_tool("t", cost=1, attrs={"k": None}), InvalidAttributeType, "must be a str"),
    ("llm-attr-value", lambda c: c.record_llm(model="m", usage=Usage(), attrs={"k": 2}), InvalidAttributeType, "str"),
    ("attrs-not-mapping", lambda c: c.child("x", attrs=[("k", "v")]), InvalidAttributeType, "mapping"),
    ("replace-team-child", lambda c: c.child("x", attrs={"team": "other"}), InvalidAttribute, "cannot be replaced"),
    ("replace-team-tool", lambda c: c.record_tool("t", cost=1, attrs={"team": "x"}), InvalidAttribute, "'team'"),
    (
        "replace-team-llm",
        lambda c: c.record_llm(model="m", usage=Usage(), attrs={"team": "x"}),
        InvalidAttribute,
        "'search'",
    ),
    ("replace-user-record", lambda c: c.record("http", "h", attrs={"user": "v"}), InvalidAttribute, "'user'"),
    # usage
    (
        "negative-tokens",
        lambda c: c.record_llm(model="m", usage=Usage(input_tokens=-1)),
        InvalidUsage,
        "non-negative int",
    ),
    (
        "float-tokens",
        lambda c: c.record_llm(model="m", usage=Usage(output_tokens=untyped(1.5))),
        InvalidUsage,
        "output_tokens",
    ),
    ("bool-tokens", lambda c: c.record_llm(model="m", usage=Usage(input_tokens=True)), InvalidUsage, "input_tokens"),
    ("negative-requests", lambda c: c.record_tool("t", usage=Usage(requests=-1)), InvalidUsage, "requests"),
    ("cache-over-input", lambda c: c.record_llm(model="m", usage=Usage(cache_read_tokens=5)), InvalidUsage, "include"),
    ("usage-not-usage", lambda c: c.record_llm(model="m", usage={"input_tokens": 1}), TypeError, "agentcost.Usage"),
    ("record-usage-dict", lambda c: c.record("custom", "x", usage={"a": 1}), TypeError, "agentcost.Usage"),
    # kinds
    ("record-unknown-kind", lambda c: c.record("banana", "x"), ValueError, "kind must be one of"),
    ("record-run-kind", lambda c: c.record("run", "x"), ValueError, "got 'run'"),
    ("record-agent-kind", lambda c: c.record("agent", "x"), ValueError, "got 'agent'"),
    ("child-unknown-kind", lambda c: c.child("x", kind="banana"), ValueError, "kind must be one of"),
    ("child-run-kind", lambda c: c.child("x", kind="run"), ValueError, "got 'run'"),
    # status
    ("tool-bad-status", lambda c: c.record_tool("t", cost=1, status="fine"), ValueError, "status must be one of"),
    ("llm-bad-status", lambda c: c.record_llm(model="m", usage=Usage(), status="weird"), ValueError, "'weird'"),
    ("record-bad-status", lambda c: c.record("http", "h", status="OK"), ValueError, "status must be one of"),
    ("end-bad-status", lambda c: c.end(status="finished"), ValueError, "status must be one of"),
    # strings
    (
        "llm-int-provider",
        lambda c: c.record_llm(model="m", usage=Usage(), provider=5),
        InvalidAttributeType,
        "provider",
    ),
    ("record-bytes-provider", lambda c: c.record("http", "h", provider=b"p"), InvalidAttributeType, "provider"),
    (
        "llm-int-requested",
        lambda c: c.record_llm(model="m", usage=Usage(), requested_model=1),
        TypeError,
        "requested_model",
    ),
    ("llm-int-error", lambda c: c.record_llm(model="m", usage=Usage(), error=1), TypeError, "error must be a str"),
    ("tool-int-error", lambda c: c.record_tool("t", cost=1, error=1), TypeError, "error must be a str"),
    (
        "empty-model",
        lambda c: c.record_llm(model="", usage=Usage()),
        InvalidAttributeType,
        "model must be a non-empty str",
    ),
    ("none-model", lambda c: c.record_llm(model=None, usage=Usage()), InvalidAttributeType, "model"),
    ("record-int-model", lambda c: c.record("embedding", "e", model=3), TypeError, "model must be a str or None"),
    ("empty-child-name", lambda c: c.child(""), InvalidAttributeType, "name must be a non-empty str"),
    ("int-child-name", lambda c: c.child(3), InvalidAttributeType, "name"),
    ("empty-tool-name", lambda c: c.record_tool("", cost=1), InvalidAttributeType, "name must be a non-empty str"),
    (
        "bad-cost-source",
        lambda c: c.record("http", "h", cost=1, cost_source="guess"),
        ValueError,
        "unknown cost_source",
    ),
]


@pytest.fixture
def busy() -> CostContext:
    """A child context in a tree that already holds priced and unpriced spans."""
    root = agentcost.run("r", attrs={"team": "search", "user": "u1"}, pricing=make_book())
    agent = root.child("agent", attrs={"agent": "a"})
    agent.record_llm(model="priced-model", usage=Usage(input_tokens=10))
    agent.record_tool("unknown")
    root.record_tool("search")
    return agent


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_raises_and_leaves_tree_unchanged(
    busy: CostContext, call: Call, error: type[BaseException], message: str
) -> None:
    """Invalid input raises the documented error, says what was wrong, and records nothing."""
    before = snapshot(busy)
    before_total = busy.tree.total_cost
    with pytest.raises(error) as caught:
        call(busy)
    assert message in str(caught.value)
    assert isinstance(caught.value, AgentCostError | TypeError | ValueError)
    assert snapshot(busy) == before
    assert busy.span.ended_at is None
    # the context still works afterwards
    busy.record_tool("after", cost="1")
    assert busy.tree.total_cost == before_total + 1


def test_error_classes_are_type_and_value_errors() -> None:
    """Type errors derive from TypeError, value errors from ValueError, all from AgentCostError."""
    assert issubclass(InvalidMoneyType, TypeError)
    assert issubclass(InvalidMoneyType, ValueError)
    assert issubclass(InvalidMoney, ValueError)
    assert not issubclass(InvalidMoney, TypeError)
    assert issubclass(InvalidAttributeType, TypeError)
    assert issubclass(InvalidAttribute, ValueError)
    assert issubclass(InvalidUsage, ValueError)
    for cls in (InvalidMoney, InvalidMoneyType, InvalidAttribute, InvalidAttributeType, InvalidUsage):
        assert issubclass(cls, AgentCostError)


def test_float_cost_message_suggests_the_decimal() -> None:
    """A float cost is refused with a message that shows which Decimal to write instead."""
    with agentcost.run("r") as ctx, pytest.raises(TypeError) as caught:
        ctx.record_tool("t", cost=0.1)  # type: ignore[arg-type]
    assert "Decimal('0.1')" in str(caught.value)
    assert len(ctx.tree) == 1


def test_replacing_the_agent_attribute_is_allowed_at_every_level() -> None:
    """The agent key is the one inherited attribute a child may replace."""
    with agentcost.run("r", attrs={"agent": "a"}) as ctx:
        child = ctx.child("b", attrs={"agent": "b"})
        grandchild = child.child("c", attrs={"agent": "c"})
    assert [c.attrs["agent"] for c in (ctx, child, grandchild)] == ["a", "b", "c"]


def test_end_with_non_string_error_is_rejected() -> None:
    """end(error=...) validates the error text like record() does, so the tree stays serializable."""
    with agentcost.run("r") as ctx:
        agent = ctx.child("a")
        before = snapshot(ctx)
        with pytest.raises(TypeError, match="error"):
            agent.end(status="error", error=RuntimeError("boom"))  # type: ignore[arg-type]
        assert snapshot(ctx) == before
        assert agent.span.ended_at is None


STARTED_AT_CALLS: list[tuple[str, Call]] = [
    ("record_tool", lambda c: c.record_tool("t", cost=1, started_at="yesterday")),
    ("record_llm", lambda c: c.record_llm(model="priced-model", usage=Usage(), started_at="yesterday")),
    ("record", lambda c: c.record("http", "h", started_at=[1.0])),
]


@pytest.mark.parametrize("call", [c for _, c in STARTED_AT_CALLS], ids=[i for i, _ in STARTED_AT_CALLS])
def test_non_numeric_started_at_is_rejected(busy: CostContext, call: Call) -> None:
    """A started_at that is not a number is refused (the tree could not be read back from JSON otherwise)."""
    before = snapshot(busy)
    with pytest.raises((TypeError, ValueError), match="started_at"):
        call(busy)
    assert snapshot(busy) == before
    agentcost.CostTree.from_json(busy.tree.to_json())


def test_cost_too_large_to_total_is_refused_or_totalled() -> None:
    """A cost too large for the decimal context is refused (ValueError, tree unchanged) or totalled exactly."""
    with agentcost.run("r") as ctx:
        agent = ctx.child("a")
        agent.record_tool("t", cost="1")
        before = snapshot(ctx)
        huge = Decimal("1E+1000000")
        try:
            agent.record_tool("huge", cost=huge)
        except ValueError:
            assert snapshot(ctx) == before
        else:
            with decimal.localcontext(WIDE) as wide:
                expected = wide.add(huge, 1)
            assert ctx.tree.total_cost == expected
            assert agent.span.total_cost == expected
            assert_consistent(ctx)


# ---------------------------------------------------------------------------------------------------------------------
# run()
# ---------------------------------------------------------------------------------------------------------------------


def test_run_validates_its_arguments() -> None:
    """run() refuses an empty name, non-str attributes and a pricing that is not a PriceBook."""
    with pytest.raises(InvalidAttributeType, match="name must be a non-empty str"):
        agentcost.run("")
    with pytest.raises(InvalidAttributeType, match="attribute 'team' must be a str"):
        agentcost.run("r", attrs={"team": 1})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="pricing must be a PriceBook, got str"):
        agentcost.run("r", pricing="book")  # type: ignore[arg-type]


def test_run_opens_a_root_of_a_new_tree() -> None:
    """run() returns the root context of a fresh tree: kind run, zero self cost, its attrs, open until exit."""
    book = make_book()
    ctx = agentcost.run("request", attrs={"team": "t"}, pricing=book)
    other = agentcost.run("request")
    assert ctx.tree is not other.tree
    assert ctx.span is ctx.tree.root
    assert (ctx.span.kind, ctx.span.name, ctx.span.cost, ctx.span.parent) == ("run", "request", Decimal(0), None)
    assert dict(ctx.attrs) == {"team": "t"}
    assert ctx.pricing is book
    assert ctx.span.ended_at is None
    assert ctx.span.id != other.span.id
    assert agentcost.parse_span_id(agentcost.format_span_id(ctx.span.id)) == ctx.span.id
    assert len(agentcost.format_span_id(ctx.span.id)) == 16
