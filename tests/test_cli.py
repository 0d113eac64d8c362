"""The command line: demo and prices."""

from __future__ import annotations

import json
from decimal import Decimal

from typer.testing import CliRunner

from agentcost import CostTree, PriceBook, Usage
from agentcost._cli import app
from agentcost._demo import demo_price_book, run_demo

runner = CliRunner()


def test_demo_json_is_a_tree_that_round_trips() -> None:
    """`agentcost demo --json` prints a cost tree that parses back with the demo's exact total."""
    result = runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, result.output
    tree = CostTree.from_json(result.output)
    assert tree.total_cost == run_demo().total_cost == Decimal("0.0763095")
    assert tree.unpriced == 1


def test_demo_total_is_the_exact_sum_of_its_priced_calls() -> None:
    """Every priced leaf of the demo equals the price book's own price for its usage, and they sum to the total."""
    tree = run_demo()
    book: PriceBook = demo_price_book()
    leaves = [span for span in tree if span.kind in ("llm", "embedding")]
    for span in leaves:
        assert span.model is not None
        assert span.cost == book.price(span.model, span.usage, provider=span.provider)
    assert sum((span.cost for span in tree if span.cost is not None), Decimal(0)) == tree.total_cost


def test_prices_known_model() -> None:
    """`agentcost prices` prices a catalog model exactly and says which catalog row it used."""
    result = runner.invoke(app, ["prices", "gpt-4o", "--provider", "openai", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["model_id"] == "gpt-4o"
    expected = PriceBook().price("gpt-4o", Usage(input_tokens=1_000_000, output_tokens=1_000_000), provider="openai")
    assert Decimal(data["cost"]) == expected


def test_prices_unknown_model_fails_with_reason() -> None:
    """An unknown model is reported as unpriced with the reason, and the command exits 1."""
    result = runner.invoke(app, ["prices", "no-such-model-anywhere"])
    assert result.exit_code == 1
    assert "unpriced" in result.output
    assert "CustomPrice" in result.output


def test_demo_writer_degrades_within_its_budget() -> None:
    """The demo's writer stays within its $0.03 budget: the critic's output is capped and the optional tool skipped."""
    tree = run_demo()
    (writer,) = tree.find(name="writer")
    assert writer.total_cost <= Decimal("0.03")
    (critic,) = tree.find(name="o3-mini")
    assert critic.status == "degraded"
    assert critic.usage.output_tokens == 1425
    assert any("max_output_tokens 2600 -> 1425" in note for note in critic.notes)
    (fact_check,) = tree.find(name="fact_check")
    assert fact_check.status == "skipped"
    assert fact_check.cost == 0
    # the ladder's own attempts are not refusals: only what it decided fires events
    assert [event.kind for event in tree.events] == ["degraded", "warning", "degraded"]
