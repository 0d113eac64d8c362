"""Test doubles and assertions for testing your own agents' costs.

>>> import agentcost
>>> from agentcost.testing import ScriptedModel, assert_cost, capture_runs
>>> model = ScriptedModel("gpt-4o", provider="openai", usage=agentcost.Usage(input_tokens=1000, output_tokens=100))
>>> with capture_runs() as runs:
...     with agentcost.run("test") as ctx:
...         _ = model(ctx, "hello")
>>> assert_cost(runs[0], "0.0035")
>>> model.calls
1
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from agentcost._context import CostContext, _run_listeners
from agentcost._fake_provider import Exchange, Fail, FakeProvider, Reply
from agentcost._money import format_usd, to_money
from agentcost._span import Span
from agentcost._tree import CostTree
from agentcost._usage import Usage

__all__ = [
    "Exchange",
    "Fail",
    "FakeProvider",
    "Reply",
    "ScriptedModel",
    "assert_cost",
    "capture_runs",
    "tree_shape",
]

Shape = tuple[str, tuple["Shape", ...]]


@contextmanager
def capture_runs() -> Iterator[list[CostTree]]:
    """Collect the tree of every run opened inside the block, in the order they were opened."""
    trees: list[CostTree] = []
    _run_listeners.append(trees.append)
    try:
        yield trees
    finally:
        _run_listeners.remove(trees.append)


class ScriptedModel:
    """A fake LLM that records scripted usage on the context it is called with, and counts its calls.

    Give either one ``usage`` used for every call, or a ``script``: a sequence of ``Usage`` (one per call) in which
    an exception instance makes that call fail *after* recording a failed span with what it consumed (an attempt
    that errors still costs money).
    """

    def __init__(
        self,
        model: str,
        *,
        provider: str | None = None,
        usage: Usage | None = None,
        script: Iterable[Usage | tuple[Usage, BaseException]] | None = None,
        reply: str | Callable[[str], str] = "ok",
    ) -> None:
        if (usage is None) == (script is None):
            raise ValueError("give exactly one of usage= (every call) or script= (one entry per call)")
        self.model = model
        self.provider = provider
        self._usage = usage
        self._script = None if script is None else list(script)
        self._reply = reply
        self.calls = 0
        """How many times the model was called."""
        self.prompts: list[str] = []
        """The prompts it was called with."""

    def __call__(self, ctx: CostContext, prompt: str = "", **record: Any) -> str:
        """Make one call: record an llm span on ``ctx`` and return the reply."""
        self.calls += 1
        self.prompts.append(prompt)
        if self._script is None:
            assert self._usage is not None
            step: Usage | tuple[Usage, BaseException] = self._usage
        else:
            if not self._script:
                raise AssertionError(f"ScriptedModel {self.model!r} was called more times than its script allows")
            step = self._script.pop(0)
        if isinstance(step, tuple):
            usage, error = step
            ctx.record_llm(
                model=self.model,
                provider=self.provider,
                usage=usage,
                status="error",
                error=f"{type(error).__name__}: {error}",
                **record,
            )
            raise error
        ctx.record_llm(model=self.model, provider=self.provider, usage=step, **record)
        return self._reply(prompt) if callable(self._reply) else self._reply


def _span_of(subject: CostTree | Span | CostContext) -> Span:
    if isinstance(subject, CostTree):
        return subject.root
    if isinstance(subject, CostContext):
        return subject.span
    return subject


def assert_cost(subject: CostTree | Span | CostContext, expected: Decimal | int | str, *, unpriced: int = 0) -> None:
    """Assert the inclusive cost of a tree, span or context, exactly, and how many of its spans are unpriced."""
    span = _span_of(subject)
    want = to_money(expected, what="expected cost")
    if span.total_cost != want or span.total_unpriced != unpriced:
        raise AssertionError(
            f"{span.kind} {span.name!r} cost {span.total_cost} ({format_usd(span.total_cost)}) with "
            f"{span.total_unpriced} unpriced span(s); expected {want} with {unpriced} unpriced"
        )


def tree_shape(subject: CostTree | Span | CostContext) -> Shape:
    """The tree as nested ``("kind name", (children...))`` tuples, for comparing shapes in tests."""
    span = _span_of(subject)
    return (f"{span.kind} {span.name}", tuple(tree_shape(child) for child in span.children))
