"""The FinOps commands over a 1,000,000-span ledger: ``report``, ``anomalies`` and ``forecast``.

Run from the repository root::

    python benchmarks/bench_finops.py          # full run: 1,000,000 spans (a couple of minutes to load)
    python benchmarks/bench_finops.py --quick  # smoke run: 100,000 spans

The ledger is the same synthetic workload as bench_ledger.py (20 teams, 5 features, 30 days, LLM calls with exact
costs), in SQLite. Each command runs in process through the CLI (``typer``'s runner, ``--json``, so the time
includes parsing, the queries, the analytics and the output), median of 5 after one warm-up; the analytics call
alone is shown beside it. Target: <= 2 s each on SQLite. The peers side by side: the same ``report`` with SQLite's
``json_extract`` over the attribution JSON instead of the team column, to show what the column and its covering
index buy.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

from _harness import Summary, finish, section, start, table
from bench_ledger import T0, load_query_table
from typer.testing import CliRunner

import agentcost
from agentcost._cli import app
from agentcost.analytics import anomalies, forecast
from agentcost.ledger import SQLiteLedger


def median_time(action: Callable[[], object], runs: int = 5) -> float:
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    quick = start(__doc__, argv, f"agentcost {agentcost.__version__}", "smoke run: 100,000 spans")
    began = time.perf_counter()
    summary = Summary()
    n = 100_000 if quick else 1_000_000
    first = datetime.fromtimestamp(T0, UTC).date()
    last = first + timedelta(days=29)
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "finops.db"
        ledger = SQLiteLedger(path)
        started = time.perf_counter()
        load_query_table(ledger, n)
        print(f"loaded {n:,} spans in {time.perf_counter() - started:.1f} s")

        def cli(*args: str) -> Callable[[], object]:
            def run() -> object:
                result = runner.invoke(app, [*args, "--ledger", str(path), "--json"])
                assert result.exit_code == 0, result.output
                return result

            return run

        span = ["--since", first.isoformat(), "--until", last.isoformat()]
        rows: list[list[str]] = []
        measured = {
            "report --by team,day": (
                cli("report", "--by", "team,day", *span),
                lambda: ledger.spend(("team", "day")),
            ),
            "anomalies --by team": (
                cli("anomalies", "--by", "team", *span),
                lambda: anomalies(ledger, ("team",), start=first, end=last),
            ),
            "forecast": (
                cli("forecast", "--as-of", (first + timedelta(days=20)).isoformat(), "--budget", "100000"),
                lambda: forecast(ledger, as_of=first + timedelta(days=20)),
            ),
        }
        for name, (command, call) in measured.items():
            seconds = median_time(command)
            alone = median_time(call)
            rows.append([f"agentcost {name}", f"{seconds * 1000:,.0f}", f"{alone * 1000:,.0f}"])
            summary.add(f"agentcost {name} over {n:,} spans <= 2 s", f"{seconds:.3f} s", seconds <= 2.0)
        connection = ledger._file.connection()
        peer = median_time(
            lambda: connection.execute(
                "SELECT day, json_extract(attrs, '$.team') AS t, SUM(cost_e12) FROM spans GROUP BY day, t"
            ).fetchall()
        )
        rows.append(["(peer) the same report through json_extract(attrs)", f"{peer * 1000:,.0f}", "-"])
        ledger.close()
    section(f"FinOps commands over {n:,} spans (SQLite), median of 5")
    print(table(["command", "CLI ms", "analytics call ms"], rows))
    finish(summary, began)


if __name__ == "__main__":
    main()
