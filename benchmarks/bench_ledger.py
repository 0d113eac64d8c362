"""Ledger ingest rate on SQLite and PostgreSQL against a plain ``executemany`` of the same rows, and the time of a
spend-by-team-by-day query over 1,000,000 spans.

Run from the repository root::

    python benchmarks/bench_ledger.py          # full run (a few minutes on a slow 2-core machine)
    python benchmarks/bench_ledger.py --quick  # smoke run (100,000-span query table, smaller batches)

What it measures:

1. Ingest (spans/s), each peer on a fresh file or schema, the same rows in batches of 2,000, one transaction per
   batch: the floor is a plain ``executemany`` of those rows into the same table (no conversion, no idempotency
   clause); ``Ledger.write`` is the ledger's own path from ``SpanRecord`` objects (rows built, ``ON CONFLICT DO
   NOTHING``); "agent -> LedgerWriter" records real spans with ``record_tool`` in a run whose sink is a
   ``LedgerWriter`` and stops the clock when ``flush()`` returns (everything durable). SQLite with
   ``synchronous=NORMAL`` (the ledger's default). PostgreSQL from ``AGENTCOST_POSTGRES_URL`` (default
   ``postgresql://postgres@127.0.0.1:5432/test``), in a fresh schema dropped afterwards; its rows are skipped with
   the reason when no server answers.
2. Query: ``ledger.spend(("team", "day"))`` over 1,000,000 spans (20 teams, 30 days), median of 5 runs after one
   warm-up. Target on SQLite: <= 1 s. PostgreSQL is measured too (informational).
"""

from __future__ import annotations

import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from _harness import Summary, finish, section, start, table

import agentcost
from agentcost._ledger import SPAN_COLUMNS, span_row
from agentcost._ledger_sqlite import MIGRATIONS, cost_columns
from agentcost.ledger import Ledger, LedgerWriter, SpanRecord, SQLiteLedger, open_ledger

BATCH = 2_000
T0 = 1_790_000_000.0
POSTGRES_URL = os.environ.get("AGENTCOST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def records(n: int, seed: int = 7) -> list[SpanRecord]:
    """``n`` leaf spans of realistic shape: 20 teams, 5 features, 30 days, LLM calls with tokens and exact cost."""
    rng = random.Random(seed)
    models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5", "claude-haiku-4-5"]
    out = []
    for i in range(n):
        started = T0 + rng.randrange(30 * 86_400)
        out.append(
            SpanRecord(
                span_id=i + 1_000_000_000,
                run_id=(i // 20) + 1,
                parent_id=(i // 20) + 1,
                kind="llm",
                name=models[i % 4],
                attrs={"team": f"team-{i % 20}", "feature": f"f{i % 5}", "user": f"u{rng.randrange(10_000)}"},
                started_at=started,
                ended_at=started + 1.5,
                status="ok",
                cost=Decimal(rng.randrange(1, 10_000_000)).scaleb(-9),
                cost_source="computed",
                model=models[i % 4],
                provider="openai",
                input_tokens=rng.randrange(100, 5_000),
                output_tokens=rng.randrange(10, 800),
                requests=1,
                run_name="bench",
            )
        )
    return out


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    """A URL into a fresh schema (dropped afterwards), or ``None`` with the reason printed."""
    try:
        import psycopg

        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except Exception as error:
        print(f"PostgreSQL rows skipped: no server at {POSTGRES_URL} ({error})")
        yield None
        return
    schema = f"agentcost_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f"CREATE SCHEMA {schema}")
    try:
        separator = "&" if "?" in POSTGRES_URL else "?"
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()


def sqlite_floor(path: Path, rows: list[tuple[Any, ...]]) -> float:
    """Plain executemany of prepared rows into the ledger's table, batch by batch."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    for statement in MIGRATIONS[0]:
        connection.execute(statement)
    sql = (
        f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}, cost, cost_e12, cost_inexact)"
        f" VALUES ({', '.join('?' * (len(SPAN_COLUMNS) + 3))})"
    )

    def load() -> None:
        for start_at in range(0, len(rows), BATCH):
            connection.execute("BEGIN")
            connection.executemany(sql, rows[start_at : start_at + BATCH])
            connection.execute("COMMIT")

    seconds = timed(load)
    connection.close()
    return seconds


def postgres_floor(url: str, rows: list[tuple[Any, ...]]) -> float:
    import psycopg

    from agentcost._ledger_pg import MIGRATIONS as PG_MIGRATIONS

    with psycopg.connect(url) as connection:
        with connection.transaction():
            for statement in PG_MIGRATIONS[0]:
                connection.execute(statement)
        marks = ", ".join(["%s"] * (len(SPAN_COLUMNS) + 1))
        sql = f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}, cost) VALUES ({marks})"

        def load() -> None:
            for start_at in range(0, len(rows), BATCH):
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.executemany(sql, rows[start_at : start_at + BATCH])

        return timed(load)


def ledger_write(ledger: Ledger, batch: list[SpanRecord]) -> float:
    def load() -> None:
        for start_at in range(0, len(batch), BATCH):
            ledger.write(batch[start_at : start_at + BATCH])

    return timed(load)


def through_writer(ledger: Ledger, n: int) -> float:
    """Spans recorded by an agent, until flush() says they are all durable."""
    writer = LedgerWriter(ledger, batch_size=BATCH, max_queue=n + 10)
    started = time.perf_counter()
    with agentcost.run("bench", attrs={"team": "t", "feature": "f"}, sinks=[writer]) as ctx:
        for _ in range(n - 1):
            ctx.record_tool("search", cost="0.001")
    writer.flush(600)
    seconds = time.perf_counter() - started
    stats = writer.stats()
    writer.close()
    assert (stats.dropped, stats.written) == (0, n), stats
    return seconds


def load_query_table(ledger: Ledger, n: int) -> None:
    chunk = 50_000
    for start_at in range(0, n, chunk):
        part = records(min(chunk, n - start_at), seed=start_at)
        ledger.write([_shift(record, start_at) for record in part])


def _shift(record: SpanRecord, offset: int) -> SpanRecord:
    return replace(record, span_id=record.span_id + offset)


def query_times(ledger: Ledger) -> tuple[float, int]:
    ledger.spend(("team", "day"))  # warm-up
    times = []
    groups = 0
    for _ in range(5):
        started = time.perf_counter()
        groups = len(ledger.spend(("team", "day")))
        times.append(time.perf_counter() - started)
    return statistics.median(times), groups


def main(argv: list[str] | None = None) -> None:
    quick = start(__doc__, argv, f"agentcost {agentcost.__version__}", "smoke run: small tables")
    began = time.perf_counter()
    summary = Summary()
    n_ingest = 20_000 if quick else 200_000
    n_query = 100_000 if quick else 1_000_000
    batch = records(n_ingest)
    sqlite_rows = [(*span_row(r), *cost_columns(r.cost)) for r in batch]
    pg_rows = [(*span_row(r), r.cost) for r in batch]

    section(f"1. Ingest: {n_ingest:,} spans in batches of {BATCH:,}")
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        floor = sqlite_floor(Path(tmp) / "floor.db", sqlite_rows)
        ledger = SQLiteLedger(Path(tmp) / "ledger.db")
        own = ledger_write(ledger, batch)
        ledger.close()
        ledger = SQLiteLedger(Path(tmp) / "writer.db")
        agent = through_writer(ledger, n_ingest)
        ledger.close()
    rows += [
        ["SQLite", "plain executemany (floor)", rate(n_ingest, floor), "1.00x"],
        ["SQLite", "Ledger.write", rate(n_ingest, own), f"{floor / own:.2f}x"],
        ["SQLite", "agent -> LedgerWriter (until flushed)", rate(n_ingest, agent), f"{floor / agent:.2f}x"],
    ]
    summary.add("SQLite Ledger.write ingest, spans/s (vs floor)", f"{rate(n_ingest, own)} ({floor / own:.2f}x)", True)
    pg_own = pg_floor = None
    with postgres_schema() as url:
        if url is not None:
            pg_floor = postgres_floor(url, pg_rows)
        with postgres_schema() as url2:
            if url2 is not None:
                pg_ledger = open_ledger(url2)
                pg_own = ledger_write(pg_ledger, batch)
                pg_ledger.close()
        with postgres_schema() as url3:
            if url3 is not None:
                pg_ledger = open_ledger(url3)
                pg_agent = through_writer(pg_ledger, n_ingest)
                pg_ledger.close()
                assert pg_floor is not None
                assert pg_own is not None
                rows += [
                    ["PostgreSQL", "plain executemany (floor)", rate(n_ingest, pg_floor), "1.00x"],
                    ["PostgreSQL", "Ledger.write", rate(n_ingest, pg_own), f"{pg_floor / pg_own:.2f}x"],
                    [
                        "PostgreSQL",
                        "agent -> LedgerWriter (until flushed)",
                        rate(n_ingest, pg_agent),
                        f"{pg_floor / pg_agent:.2f}x",
                    ],
                ]
                summary.add(
                    "PostgreSQL Ledger.write ingest, spans/s (vs floor)",
                    f"{rate(n_ingest, pg_own)} ({pg_floor / pg_own:.2f}x)",
                    True,
                )
    print(table(["engine", "peer", "spans/s", "of floor"], rows))

    section(f"2. spend(('team', 'day')) over {n_query:,} spans")
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SQLiteLedger(Path(tmp) / "query.db")
        load = timed(lambda: load_query_table(ledger, n_query))
        seconds, groups = query_times(ledger)
        ledger.close()
    print(f"SQLite: loaded in {load:.1f} s; query median {seconds * 1000:.0f} ms ({groups} groups)")
    summary.add(f"SQLite spend by team by day over {n_query:,} spans <= 1 s", f"{seconds:.3f} s", seconds <= 1.0)
    with postgres_schema() as url:
        if url is not None:
            pg_ledger = open_ledger(url)
            load = timed(lambda: load_query_table(pg_ledger, n_query))
            pg_seconds, pg_groups = query_times(pg_ledger)
            pg_ledger.close()
            print(f"PostgreSQL: loaded in {load:.1f} s; query median {pg_seconds * 1000:.0f} ms ({pg_groups} groups)")
            summary.add(f"(info) PostgreSQL spend by team by day, {n_query:,} spans", f"{pg_seconds:.3f} s", True)
    finish(summary, began)


if __name__ == "__main__":
    main()
