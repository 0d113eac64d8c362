"""The ``agentcost`` command line."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from agentcost._money import format_usd
from agentcost._pricing import PriceBook, default_price_book
from agentcost._tree import CostTotal, CostTree
from agentcost._usage import Usage

if TYPE_CHECKING:
    from agentcost.ledger import Ledger

DEMO_LEDGER = Path("agentcost-demo.db")

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
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the one request's cost tree as JSON instead (no ledger is written).")
    ] = False,
    ledger: Annotated[
        Path, typer.Option(help="Where to write the 30-day demo ledger (replaced if it exists).")
    ] = DEMO_LEDGER,
) -> None:
    """Run a simulated multi-agent request (no network) and print its cost tree and totals; then write thirty days
    of a three-team workload to a ledger and print the report, the anomaly and the forecast.

    With agentcost-langgraph installed the request runs as a real LangGraph graph through its callback handler;
    without it, on the core API alone. The thirty days go through the real openai and anthropic SDK clients (with
    agentcost-openai and agentcost-anthropic installed) against a local fake provider, with a sub-agent reached
    across an HTTP boundary.
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
    _finops_demo(ledger, console)


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


# -- the FinOps commands, over a ledger -------------------------------------------------------------------------------

LedgerOption = Annotated[
    str,
    typer.Option(
        "--ledger",
        envvar="AGENTCOST_LEDGER",
        help="The ledger: a SQLite file path, sqlite:///path or postgresql://... (env AGENTCOST_LEDGER).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DaysOption = Annotated[int, typer.Option(min=1, help="How many days back from today (UTC) to look.")]
SinceOption = Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD (UTC); overrides --days.")]
UntilOption = Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD (UTC), included; default today.")]
WhereOption = Annotated[list[str] | None, typer.Option(help="Filter key=value (repeatable): --where team=search.")]


@contextmanager
def _open(url: str) -> Iterator[Ledger]:
    from agentcost.ledger import LedgerError, open_ledger

    if "://" not in url and not Path(url).exists():
        raise typer.BadParameter(f"no ledger at {url} (run `agentcost demo` to make one, or pass --ledger)")
    try:
        ledger = open_ledger(url)
    except LedgerError as error:
        raise typer.BadParameter(str(error)) from error
    try:
        yield ledger
    finally:
        ledger.close()


def _day(text: str | None, default: date) -> date:
    if text is None:
        return default
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"expected a day as YYYY-MM-DD, got {text!r}") from None


def _range(days: int, since: str | None, until: str | None) -> tuple[date, date]:
    last = _day(until, datetime.now(UTC).date())
    first = _day(since, last - timedelta(days=days - 1))
    if first > last:
        raise typer.BadParameter(f"--since {first} is after --until {last}")
    return first, last


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _where(pairs: Sequence[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"--where takes key=value, got {pair!r}")
        out[key] = value
    return out


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


def _guard(action: Any) -> Any:
    """Run a query; a bad key or range from the user is a usage error, not a traceback."""
    from agentcost.ledger import LedgerError

    try:
        return action()
    except LedgerError as error:
        raise typer.BadParameter(str(error)) from error


@app.command()
def report(
    ledger: LedgerOption = str(DEMO_LEDGER),
    by: Annotated[str, typer.Option(help="Group by these keys, comma separated (team, feature, model, day, ...).")] = (
        "team"
    ),
    days: DaysOption = 30,
    since: SinceOption = None,
    until: UntilOption = None,
    where: WhereOption = None,
    json_output: JsonOption = False,
) -> None:
    """Spend grouped by any attribution keys and time bucket (day, month), exact to the last digit."""
    first, last = _range(days, since, until)
    keys = tuple(key.strip() for key in by.split(",") if key.strip())
    with _open(ledger) as opened:
        rows = _guard(
            lambda: opened.spend(keys, since=_epoch(first), until=_epoch(last + timedelta(days=1)), where=_where(where))
        )
    total = sum((row.cost for row in rows), Decimal(0))
    if json_output:
        _emit(
            {
                "since": first.isoformat(),
                "until": last.isoformat(),
                "by": list(keys),
                "total": str(total),
                "rows": [
                    {
                        **dict(zip(keys, row.key, strict=True)),
                        "cost": str(row.cost),
                        "calls": row.calls,
                        "unpriced": row.unpriced,
                        "input_tokens": row.input_tokens,
                        "output_tokens": row.output_tokens,
                    }
                    for row in rows
                ],
            }
        )
        return
    table = Table(title=f"Spend by {', '.join(keys)}, {first} to {last}", title_justify="left")
    for key in keys:
        table.add_column(key)
    for column in ("cost", "share", "calls", "unpriced"):
        table.add_column(column, justify="right")
    for row in sorted(rows, key=lambda row: row.cost, reverse=True) if len(keys) == 1 else rows:
        share = f"{row.cost / total * 100:.1f}%" if total else "-"
        table.add_row(
            *(value or "(none)" for value in row.key),
            format_usd(row.cost),
            share,
            str(row.calls),
            str(row.unpriced or ""),
        )
    console = Console()
    console.print(table)
    console.print(f"[bold]Total:[/bold] {format_usd(total)}", highlight=False)


@app.command()
def tree(
    run_id: Annotated[str, typer.Argument(help="The run's id (16 hex digits, as `agentcost top` shows).")],
    ledger: LedgerOption = str(DEMO_LEDGER),
    json_output: JsonOption = False,
) -> None:
    """The cost tree of one run, rebuilt from the ledger: self and inclusive cost per node."""
    from agentcost._span import parse_span_id

    try:
        span_id = parse_span_id(run_id)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    with _open(ledger) as opened:
        rebuilt = _guard(lambda: opened.tree(span_id))
        events = opened.budget_events(run_id=span_id)
    if json_output:
        _emit({**rebuilt.to_dict(), "budget_events": [event.detail for event in events]})
        return
    console = Console()
    console.print(rebuilt.render(), highlight=False, markup=False, soft_wrap=True)
    for event in events:
        console.print(f"  {event.kind:<9} {event.detail}", highlight=False, markup=False, soft_wrap=True)


@app.command()
def top(
    ledger: LedgerOption = str(DEMO_LEDGER),
    n: Annotated[int, typer.Option("-n", min=1, help="How many.")] = 10,
    spans: Annotated[bool, typer.Option("--spans", help="The most expensive calls instead of runs.")] = False,
    days: DaysOption = 30,
    since: SinceOption = None,
    until: UntilOption = None,
    where: WhereOption = None,
    json_output: JsonOption = False,
) -> None:
    """The most expensive runs (or calls) in the range."""
    from agentcost._span import format_span_id

    first, last = _range(days, since, until)
    since_at, until_at, filters = _epoch(first), _epoch(last + timedelta(days=1)), _where(where)
    console = Console()
    with _open(ledger) as opened:
        if spans:
            found = _guard(lambda: opened.top_spans(n, since=since_at, until=until_at, where=filters))
            if json_output:
                _emit([record.to_dict() for record in found])
                return
            table = Table(title=f"Top {n} calls, {first} to {last}", title_justify="left")
            for column in ("span", "run", "kind", "name", "cost", "team", "feature"):
                table.add_column(column, justify="right" if column == "cost" else "left")
            for record in found:
                table.add_row(
                    format_span_id(record.span_id),
                    format_span_id(record.run_id),
                    record.kind,
                    record.model or record.name,
                    format_usd(record.cost or Decimal(0)),
                    record.attrs.get("team", ""),
                    record.attrs.get("feature", ""),
                )
            console.print(table)
            return
        runs = _guard(lambda: opened.runs(limit=n, since=since_at, until=until_at, where=filters))
    if json_output:
        _emit(
            [
                {
                    "run_id": format_span_id(run.run_id),
                    "name": run.name,
                    "cost": str(run.cost),
                    "unpriced": run.unpriced,
                    "spans": run.spans,
                    "status": run.status,
                    "started_at": datetime.fromtimestamp(run.started_at, UTC).isoformat(),
                    "attrs": dict(run.attrs),
                }
                for run in runs
            ]
        )
        return
    table = Table(title=f"Top {n} runs, {first} to {last}", title_justify="left")
    for column in ("run", "name", "started (UTC)", "cost", "spans", "team", "feature"):
        table.add_column(column, justify="right" if column in ("cost", "spans") else "left")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = 16
    for run in runs:
        started = datetime.fromtimestamp(run.started_at, UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            format_span_id(run.run_id),
            run.name,
            started,
            format_usd(run.cost),
            str(run.spans),
            run.attrs.get("team", ""),
            run.attrs.get("feature", ""),
        )
    console.print(table)


@app.command()
def anomalies(
    ledger: LedgerOption = str(DEMO_LEDGER),
    by: Annotated[str, typer.Option(help="Daily spend per these keys, comma separated.")] = "team",
    days: DaysOption = 30,
    since: SinceOption = None,
    until: UntilOption = None,
    ratio: Annotated[float, typer.Option(help="Flag days at least this many times the trailing median.")] = 2.0,
    zscore: Annotated[float, typer.Option(help="...and with a robust z-score at least this.")] = 3.5,
    window: Annotated[int, typer.Option(min=2, help="Trailing days in the baseline.")] = 14,
    min_cost: Annotated[str, typer.Option(help="Ignore days under this many dollars.")] = "1",
    json_output: JsonOption = False,
) -> None:
    """Days whose spend per team (or feature, ...) stands out from its own trailing baseline."""
    from agentcost.analytics import anomalies as find

    first, last = _range(days, since, until)
    keys = tuple(key.strip() for key in by.split(",") if key.strip())
    with _open(ledger) as opened:
        found = _guard(
            lambda: find(
                opened,
                keys,
                start=first,
                end=last,
                ratio=ratio,
                zscore=zscore,
                window=window,
                min_history=min(7, window),
                min_cost=min_cost,
            )
        )
    if json_output:
        _emit(
            [
                {
                    **dict(zip(a.by, a.key, strict=True)),
                    "day": a.day.isoformat(),
                    "cost": str(a.cost),
                    "baseline": str(a.baseline),
                    "ratio": a.ratio,
                    "zscore": round(a.zscore, 2),
                }
                for a in found
            ]
        )
        return
    console = Console()
    if not found:
        console.print(f"No anomalies in daily spend by {', '.join(keys)} from {first} to {last}.")
        return
    for anomaly in found:
        console.print(
            f"[bold red]anomaly[/bold red] {anomaly.describe()} (robust z {anomaly.zscore:.1f})", highlight=False
        )


@app.command()
def forecast(
    ledger: LedgerOption = str(DEMO_LEDGER),
    as_of: Annotated[str | None, typer.Option(help="Forecast as of this day (YYYY-MM-DD); default today.")] = None,
    budget: Annotated[str | None, typer.Option(help="A monthly budget in dollars: show its burn rate and runway.")] = (
        None
    ),
    level: Annotated[float, typer.Option(help="The band's probability.")] = 0.8,
    where: WhereOption = None,
    json_output: JsonOption = False,
) -> None:
    """Where this month's spend is heading, with an uncertainty band; with --budget, when it runs out."""
    from agentcost.analytics import forecast as project
    from agentcost.analytics import runway

    today = _day(as_of, datetime.now(UTC).date())
    filters = _where(where)
    with _open(ledger) as opened:
        result = _guard(lambda: project(opened, as_of=today, level=level, where=filters))
        pace = (
            _guard(lambda: runway(opened, budget, start=today.replace(day=1), as_of=today, where=filters))
            if budget is not None
            else None
        )
    data: dict[str, Any] = {
        "month": result.month,
        "as_of": result.as_of.isoformat(),
        "spent": str(result.spent),
        "expected": str(result.expected),
        "low": str(result.low),
        "high": str(result.high),
        "level": result.level,
        "daily_mean": str(result.daily_mean),
        "days_left": result.days_left,
    }
    if pace is not None:
        data["budget"] = {
            "amount": str(pace.budget),
            "spent": str(pace.spent),
            "burn_rate_per_day": str(pace.burn_rate),
            "runs_out_on": None if pace.runs_out_on is None else pace.runs_out_on.isoformat(),
        }
    if json_output:
        _emit(data)
        return
    console = Console()
    console.print(
        f"[bold]{result.month}[/bold]: spent {format_usd(result.spent)} to {result.as_of}; expected "
        f"{format_usd(result.expected)} by month end ({int(result.level * 100)}% band {format_usd(result.low)} to "
        f"{format_usd(result.high)}; {result.days_left} day{'' if result.days_left == 1 else 's'} left at about "
        f"{format_usd(result.daily_mean)}/day)",
        highlight=False,
    )
    if pace is not None:
        out = "not at this pace" if pace.runs_out_on is None else f"on {pace.runs_out_on}"
        console.print(
            f"Budget {format_usd(pace.budget)}: {pace.used:.0%} used, burning {format_usd(pace.burn_rate)}/day, "
            f"runs out {out}",
            highlight=False,
        )


@app.command()
def export(
    ledger: LedgerOption = str(DEMO_LEDGER),
    format: Annotated[str, typer.Option("--format", help="jsonl (every span) or focus (a chargeback CSV).")] = "jsonl",
    out: Annotated[Path | None, typer.Option(help="Write here instead of standard output.")] = None,
    days: DaysOption = 30,
    since: SinceOption = None,
    until: UntilOption = None,
    where: WhereOption = None,
) -> None:
    """Export spans as JSON lines, or as a FOCUS-style CSV for chargeback."""
    import sys

    from agentcost.ledger import write_focus_csv, write_jsonl

    if format not in ("jsonl", "focus"):
        raise typer.BadParameter(f"--format is jsonl or focus, got {format!r}")
    first, last = _range(days, since, until)
    with _open(ledger) as opened:
        records = _guard(
            lambda: opened.spans(since=_epoch(first), until=_epoch(last + timedelta(days=1)), where=_where(where))
        )
    write = write_jsonl if format == "jsonl" else write_focus_csv
    if out is None:
        write(records, sys.stdout)
        return
    with open(out, "w", encoding="utf-8", newline="") as target:
        n = write(records, target)
    typer.echo(f"wrote {n} {'spans' if format == 'jsonl' else 'charges'} to {out}", err=True)


@app.command()
def alerts(
    ledger: LedgerOption = str(DEMO_LEDGER),
    budget: Annotated[
        str | None, typer.Option(help="A monthly budget in dollars: alert at 80% used, and when it is exceeded.")
    ] = None,
    as_of: Annotated[str | None, typer.Option(help="Evaluate as of this day (YYYY-MM-DD); default today.")] = None,
    json_output: JsonOption = False,
) -> None:
    """The ledger's standing alerts: a team's daily spend at 2x its baseline in the last week; with --budget, the
    month's spend at 80% of it (or over it)."""
    from agentcost.alerts import default_ledger_rules, evaluate

    today = _day(as_of, datetime.now(UTC).date())
    try:
        rules = default_ledger_rules(budget=budget)
    except (TypeError, ValueError) as error:
        raise typer.BadParameter(str(error)) from error
    with _open(ledger) as opened:
        found = _guard(lambda: evaluate(opened, rules, today=today))
    if json_output:
        _emit([alert.to_dict() for alert in found])
        return
    console = Console()
    if not found:
        console.print("No alerts.")
    for alert in found:
        style = "bold red" if alert.severity == "critical" else "bold yellow"
        console.print(f"[{style}]{alert.severity}[/{style}] {alert.message}", highlight=False)


@app.command()
def dashboard(
    ledger: LedgerOption = str(DEMO_LEDGER),
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 (0: any free port).")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on; keep 127.0.0.1 unless you mean to share it.")] = (
        "127.0.0.1"
    ),
    days: DaysOption = 30,
    budget: Annotated[str | None, typer.Option(help="A monthly budget in dollars, for the burn-down chart.")] = None,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open it in the default browser.")] = False,
) -> None:
    """Serve the local web dashboard from the ledger until Ctrl-C: spend over time by team, by feature and model,
    top runs, anomalies, the forecast with its band, the budget burn-down, and every run's cost tree."""
    from agentcost._dashboard import run_dashboard

    with _open(ledger) as opened:
        try:
            run_dashboard(opened, host=host, port=port, days=days, budget=budget, open_browser=open_browser)
        except (TypeError, ValueError) as error:
            raise typer.BadParameter(str(error)) from error


def _finops_demo(path: Path, console: Console) -> None:
    """The thirty-day half of the demo: write the ledger, then report, anomalies, forecast and the next command."""
    try:
        from agentcost._finops_demo import ANOMALY_TEAM, run_finops_demo
        from agentcost.analytics import anomalies as find
        from agentcost.analytics import forecast as project
        from agentcost.ledger import open_ledger
    except ImportError as error:  # the adapters are not installed: the one-request demo is all there is
        console.print(
            f"\n(The 30-day FinOps demo needs agentcost-openai and agentcost-anthropic: {error}. Install them with "
            "pip install ./integrations/openai ./integrations/anthropic.)",
            highlight=False,
            markup=False,
        )
        return
    console.print()
    console.rule("Thirty days of three teams' agents")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("simulating days", total=30)
        result = run_finops_demo(path, progress=lambda done, total: progress.update(task, completed=done))
    console.print(
        f"Wrote {result.spans:,} spans of {result.runs:,} runs ({result.first_day} to {result.last_day}) to "
        f"{result.ledger_path}: every LLM call through the real openai and anthropic clients against a local fake "
        f"provider; {result.remote_calls} calls to a translator sub-agent across an HTTP boundary (signed context "
        f"and report); {result.degraded_calls} calls degraded by the support team's $0.03-per-request budget.",
        highlight=False,
    )
    ledger = open_ledger(path)
    try:
        rows = ledger.spend(("team", "feature"))
        found = find(ledger, ("team",), start=result.first_day, end=result.last_day)
        projection = project(ledger, as_of=result.last_day)
    finally:
        ledger.close()
    total = sum((row.cost for row in rows), Decimal(0))
    table = Table(title="Spend by team and feature, last 30 days", title_justify="left")
    for column in ("team", "feature", "cost", "share", "calls"):
        table.add_column(column, justify="right" if column in ("cost", "share", "calls") else "left")
    for row in sorted(rows, key=lambda row: row.cost, reverse=True):
        table.add_row(
            row.key[0] or "", row.key[1] or "", format_usd(row.cost), f"{row.cost / total * 100:.1f}%", str(row.calls)
        )
    console.print(table)
    console.print(f"[bold]Total:[/bold] {format_usd(total)}", highlight=False)
    for anomaly in found:
        console.print(f"[bold red]Anomaly:[/bold red] {anomaly.describe()}", highlight=False)
    if not any(anomaly.key == (ANOMALY_TEAM,) for anomaly in found):
        console.print("[bold red]The planted anomaly was not found.[/bold red]")
    console.print(
        f"Forecast for {projection.month}: {format_usd(projection.expected)} (80% band {format_usd(projection.low)}"
        f" to {format_usd(projection.high)})",
        highlight=False,
    )
    where = "" if path == DEMO_LEDGER else f" --ledger {path}"
    console.print(
        f"\nOpen the dashboard: [bold]agentcost dashboard{where}[/bold]   (other views: agentcost report{where} "
        f"--by team,day, agentcost top{where}, agentcost anomalies{where}, agentcost forecast{where})",
        highlight=False,
    )


def main() -> None:
    """Console entry point."""
    app()
