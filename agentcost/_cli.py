"""The ``agentcost`` command line."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from agentcost._money import format_usd
from agentcost._pricing import PriceBook, default_price_book
from agentcost._tree import CostTotal, CostTree
from agentcost._usage import Usage

app = typer.Typer(
    name="agentcost",
    help="Cost trees, attribution and budgets for AI agents.",
    no_args_is_help=True,
    add_completion=False,
)


def _totals_table(title: str, column: str, totals: dict[str | None, CostTotal], grand_total: Decimal) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(column)
    table.add_column("cost", justify="right")
    table.add_column("share", justify="right")
    table.add_column("spans", justify="right")
    table.add_column("unpriced", justify="right")
    rows = sorted(totals.items(), key=lambda item: item[1].cost, reverse=True)
    for key, total in rows:
        share = f"{total.cost / grand_total * 100:.1f}%" if grand_total else "-"
        table.add_row(key or "(none)", format_usd(total.cost), share, str(total.spans), str(total.unpriced or ""))
    return table


def _report(tree: CostTree, console: Console) -> None:
    console.print(tree.render(), highlight=False, markup=False, soft_wrap=True)
    console.print()
    total = tree.total
    console.print(f"[bold]Total:[/bold] {total}  ({total.spans} spans)", highlight=False)
    console.print()
    priced_models: dict[str | None, CostTotal] = {k: v for k, v in tree.cost_by_model().items() if k is not None}
    console.print(_totals_table("Cost by model", "model", priced_models, total.cost))
    console.print(_totals_table("Cost by agent", "agent", tree.cost_by("agent"), total.cost))
    console.print(_totals_table("Cost by kind", "kind", tree.cost_by_kind(), total.cost))
    if tree.events:
        console.print("[bold]Budget events[/bold]")
        for event in tree.events:
            console.print(f"  {event.kind:<9} {event.detail}", highlight=False, markup=False)


@app.command()
def demo(
    json_output: Annotated[bool, typer.Option("--json", help="Print the cost tree as JSON instead.")] = False,
) -> None:
    """Run a simulated multi-agent request (no network) and print its cost tree and totals.

    With agentcost-langgraph installed the request runs as a real LangGraph graph through its callback handler;
    without it, on the core API alone.
    """
    try:
        from agentcost_langgraph.demo import run_demo
    except ImportError:
        from agentcost._demo import run_demo

        graph = False
    else:
        graph = True
    tree = run_demo()
    if json_output:
        typer.echo(tree.to_json(indent=2))
        return
    console = Console()
    console.print(
        "[bold]agentcost demo[/bold]: a planner delegates to a researcher and a writer"
        + (", run as a LangGraph graph" if graph else "")
        + "; every LLM, tool and embedding call is priced exactly.\n"
    )
    if not graph:
        console.print(
            "Note: install agentcost-langgraph (pip install ./integrations/langgraph) to run it as a LangGraph graph.",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        console.print()
    _report(tree, console)


@app.command()
def prices(
    model: Annotated[str, typer.Argument(help="Model name, e.g. gpt-4o.")],
    provider: Annotated[str | None, typer.Option(help="Provider id, e.g. openai.")] = None,
    input_tokens: Annotated[int, typer.Option(min=0, help="Input tokens to price.")] = 1_000_000,
    output_tokens: Annotated[int, typer.Option(min=0, help="Output tokens to price.")] = 1_000_000,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Price a number of tokens for a model with the bundled catalog."""
    book: PriceBook = default_price_book()
    quote = book.quote(model, Usage(input_tokens=input_tokens, output_tokens=output_tokens), provider=provider)
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "model": model,
                    "provider": quote.provider_id,
                    "model_id": quote.model_id,
                    "cost": None if quote.cost is None else str(quote.cost),
                    "source": quote.source,
                    "reason": quote.reason,
                }
            )
        )
    elif quote.cost is None:
        typer.echo(f"{model}: unpriced ({quote.reason})")
    else:
        typer.echo(
            f"{quote.provider_id}/{quote.model_id}: {input_tokens} input + {output_tokens} output tokens = "
            f"${quote.cost}"
        )
    if quote.cost is None:
        raise typer.Exit(1)


def main() -> None:
    """Console entry point."""
    app()
