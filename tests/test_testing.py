"""agentcost.testing: capture_runs, ScriptedModel, assert_cost and tree_shape."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

import agentcost
from agentcost import CostTree, CustomPrice, PriceBook, Usage
from agentcost.testing import ScriptedModel, assert_cost, capture_runs, tree_shape


def make_book() -> PriceBook:
    """$1 per million input tokens, $2 per million output tokens."""
    return PriceBook(catalog=False, models={"fake": CustomPrice(input_mtok=Decimal("1"), output_mtok=Decimal("2"))})


# ---------------------------------------------------------------------------------------------------------------------
# capture_runs
# ---------------------------------------------------------------------------------------------------------------------


def test_capture_runs_collects_runs_opened_inside_in_order() -> None:
    """capture_runs yields the trees of the runs opened inside the block, in opening order, and no others."""
    agentcost.run("before")
    with capture_runs() as runs:
        with agentcost.run("first") as first:
            pass
        second = agentcost.run("second")
    agentcost.run("after")
    assert [tree.root.name for tree in runs] == ["first", "second"]
    assert runs[0] is first.tree
    assert runs[1] is second.tree


def test_capture_runs_sees_runs_opened_in_other_threads() -> None:
    """Runs opened by code under test on another thread are captured too."""
    with capture_runs() as runs:
        worker = threading.Thread(target=lambda: agentcost.run("threaded").record_tool("t", cost="1"))
        worker.start()
        worker.join()
    assert [tree.root.name for tree in runs] == ["threaded"]
    assert runs[0].total_cost == 1


def test_capture_runs_nests_and_stops_after_exception() -> None:
    """Nested captures both see inner runs; after the block exits (even by an exception) nothing more is captured."""
    captures: list[list[CostTree]] = []

    def capture_and_fail() -> None:
        with capture_runs() as captured:
            captures.append(captured)
            agentcost.run("b")
            raise RuntimeError("stop")

    with capture_runs() as outer:
        agentcost.run("a")
        with pytest.raises(RuntimeError, match="stop"):
            capture_and_fail()
        agentcost.run("c")
    agentcost.run("d")
    (inner,) = captures
    assert [tree.root.name for tree in outer] == ["a", "b", "c"]
    assert [tree.root.name for tree in inner] == ["b"]
    assert inner[0] is outer[1]


def test_captured_tree_keeps_filling_after_the_block() -> None:
    """The captured tree is the live tree: records made after capture_runs exits still show in it."""
    with capture_runs() as runs:
        ctx = agentcost.run("r")
    ctx.record_tool("late", cost="0.5")
    assert runs[0].total_cost == Decimal("0.5")


# ---------------------------------------------------------------------------------------------------------------------
# ScriptedModel
# ---------------------------------------------------------------------------------------------------------------------


def test_scripted_model_with_usage_records_every_call() -> None:
    """usage= records the same usage on the given context each call, returns the reply, counts calls and prompts."""
    model = ScriptedModel("fake", provider="prov", usage=Usage(input_tokens=1000, output_tokens=500))
    with agentcost.run("r", pricing=make_book()) as ctx, ctx.child("agent") as agent:
        assert model(agent, "hello") == "ok"
        assert model(agent, "again", attrs={"step": "2"}) == "ok"
    assert model.calls == 2
    assert model.prompts == ["hello", "again"]
    spans = agent.span.children
    assert [(s.kind, s.name, s.model, s.provider) for s in spans] == [("llm", "fake", "fake", "prov")] * 2
    assert all(s.usage == Usage(input_tokens=1000, output_tokens=500) for s in spans)
    assert [s.cost for s in spans] == [Decimal("0.002"), Decimal("0.002")]
    assert spans[1].attrs["step"] == "2"
    assert "step" not in spans[0].attrs
    assert ctx.tree.total_cost == Decimal("0.004")


def test_scripted_model_reply_callable() -> None:
    """A callable reply is called with the prompt."""
    model = ScriptedModel("fake", usage=Usage(), reply=lambda prompt: prompt.upper())
    with agentcost.run("r", pricing=make_book()) as ctx:
        assert model(ctx, "shout") == "SHOUT"
        assert model(ctx) == ""
    assert model.prompts == ["shout", ""]


def test_scripted_model_script_failure_records_then_raises() -> None:
    """A scripted exception records a failed span with its usage (and cost), then raises that very exception."""
    timeout = TimeoutError("upstream timed out")
    model = ScriptedModel(
        "fake",
        provider="prov",
        script=[(Usage(input_tokens=2000), timeout), Usage(input_tokens=1000, output_tokens=100)],
    )
    with agentcost.run("r", pricing=make_book()) as ctx:
        with pytest.raises(TimeoutError) as caught:
            model(ctx, "first")
        assert caught.value is timeout
        assert model(ctx, "second") == "ok"
    failed, ok = ctx.span.children
    assert (failed.status, failed.error) == ("error", "TimeoutError: upstream timed out")
    assert failed.usage == Usage(input_tokens=2000)
    assert failed.cost == Decimal("0.002")
    assert (ok.status, ok.error, ok.cost) == ("ok", None, Decimal("0.0012"))
    assert model.calls == 2
    assert model.prompts == ["first", "second"]
    assert_cost(ctx, "0.0032")


def test_scripted_model_over_calling_the_script_fails() -> None:
    """Calling more times than the script allows raises AssertionError naming the model, and records nothing."""
    model = ScriptedModel("fake", script=[Usage()])
    with agentcost.run("r", pricing=make_book()) as ctx:
        model(ctx)
        with pytest.raises(AssertionError, match="ScriptedModel 'fake' was called more times than its script allows"):
            model(ctx)
    assert model.calls == 2
    assert len(ctx.tree) == 2


def test_scripted_model_needs_exactly_one_of_usage_and_script() -> None:
    """Giving both usage= and script=, or neither, is a ValueError that says so."""
    with pytest.raises(ValueError, match="exactly one of usage="):
        ScriptedModel("fake")
    with pytest.raises(ValueError, match="exactly one of usage="):
        ScriptedModel("fake", usage=Usage(), script=[Usage()])


def test_scripted_model_empty_script_is_allowed_but_cannot_be_called() -> None:
    """An empty script is a script (not a missing one): constructing works, calling fails."""
    model = ScriptedModel("fake", script=[])
    with agentcost.run("r") as ctx, pytest.raises(AssertionError):
        model(ctx)


def test_scripted_model_unpriced_model() -> None:
    """A model the run's book cannot price records an unpriced span."""
    model = ScriptedModel("not-in-book", usage=Usage(input_tokens=5))
    with agentcost.run("r", pricing=make_book()) as ctx:
        model(ctx)
    assert_cost(ctx.tree, 0, unpriced=1)


# ---------------------------------------------------------------------------------------------------------------------
# assert_cost
# ---------------------------------------------------------------------------------------------------------------------


def _tree() -> tuple[CostTree, agentcost.CostContext]:
    with agentcost.run("r", pricing=make_book()) as ctx:
        with ctx.child("agent") as agent:
            agent.record_tool("t", cost="0.25")
            agent.record_tool("u")
        ctx.record_tool("v", cost="0.5")
    return ctx.tree, agent


def test_assert_cost_passes_for_tree_span_and_context() -> None:
    """assert_cost accepts a tree, span or context and Decimal, int or str amounts, compared by value."""
    tree, agent = _tree()
    assert_cost(tree, "0.75", unpriced=1)
    assert_cost(tree, Decimal("0.7500"), unpriced=1)
    assert_cost(tree.root, "0.75", unpriced=1)
    assert_cost(agent, "0.25", unpriced=1)
    assert_cost(agent.span, Decimal("0.25"), unpriced=1)
    (v,) = tree.find(name="v")
    assert_cost(v, "0.5")
    with agentcost.run("empty") as empty:
        pass
    assert_cost(empty, 0)


def test_assert_cost_fails_on_wrong_amount_with_both_amounts() -> None:
    """A wrong amount raises AssertionError naming the span and showing actual and expected cost."""
    tree, _ = _tree()
    with pytest.raises(AssertionError) as caught:
        assert_cost(tree, "0.7", unpriced=1)
    assert str(caught.value) == ("run 'r' cost 0.75 ($0.75) with 1 unpriced span(s); expected 0.7 with 1 unpriced")


def test_assert_cost_fails_on_unpriced_mismatch() -> None:
    """The right amount with the wrong unpriced count still fails, and says so."""
    tree, agent = _tree()
    with pytest.raises(AssertionError, match="with 1 unpriced span"):
        assert_cost(tree, "0.75")
    with pytest.raises(AssertionError, match=r"agent 'agent' cost 0.25 \(\$0.25\) with 1 unpriced span\(s\); expected"):
        assert_cost(agent, "0.25", unpriced=0)


def test_assert_cost_refuses_float_expected() -> None:
    """A float expected amount is a TypeError naming the expected cost, not a silently inexact comparison."""
    tree, _ = _tree()
    with pytest.raises(TypeError, match="expected cost must be a Decimal"):
        assert_cost(tree, 0.75, unpriced=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# tree_shape and the documented example
# ---------------------------------------------------------------------------------------------------------------------


def test_tree_shape_nests_kind_and_name() -> None:
    """tree_shape returns nested ("kind name", children) tuples for a tree, span or context."""
    tree, agent = _tree()
    assert tree_shape(tree) == (
        "run r",
        (("agent agent", (("tool t", ()), ("tool u", ()))), ("tool v", ())),
    )
    assert tree_shape(agent) == ("agent agent", (("tool t", ()), ("tool u", ())))
    assert tree_shape(agent.span.children[0]) == ("tool t", ())


def test_documented_example() -> None:
    """The docs/testing.md example works: a failed attempt and a retry cost $0.006 at catalog prices."""

    def my_agent(question: str) -> str:
        model = ScriptedModel(
            "gpt-4o",
            provider="openai",
            script=[
                (Usage(input_tokens=1_000), TimeoutError("upstream timed out")),
                Usage(input_tokens=1_000, output_tokens=100),
            ],
        )
        with agentcost.run("agent", attrs={"team": "qa"}) as run, run.child("answerer") as answerer:
            try:
                return model(answerer, question)
            except TimeoutError:
                return model(answerer, question)

    with capture_runs() as runs:
        assert my_agent("why?") == "ok"
    (tree,) = runs
    assert_cost(tree, "0.006")
    assert tree_shape(tree) == ("run agent", (("agent answerer", (("llm gpt-4o", ()), ("llm gpt-4o", ()))),))
    assert [span.status for span in tree.find(kind="llm")] == ["error", "ok"]
