"""The ledger in one SQLite file: the default, for one process or many on one host.

* **Durability.** WAL; every :meth:`SQLiteLedger.write` is one ``BEGIN IMMEDIATE`` transaction (busy timeout and
  retries: :class:`agentcost._sqlite.SQLiteFile`, shared with the SQLite budget store); ``synchronous`` is
  configurable: ``NORMAL`` by default (a committed batch survives the process being killed, though not the machine
  losing power), ``FULL`` when hard budgets depend on the ledger (every commit reaches the disk before ``write``
  returns).
* **Idempotent** on span id: ``INSERT ... ON CONFLICT (span_id) DO NOTHING``; the first write of a span wins.
* **Exact money.** ``cost`` is the exact decimal TEXT; ``cost_e12`` the same amount in integer units of 10^-12 dollar
  for fast exact sums in SQL (``cost_inexact`` marks the rare amount with more decimal places, whose difference is
  added back in Python). A group whose integer sum would pass SQLite's 64-bit range (about $9.2 million) is summed
  from the TEXT column in Python instead.
* **Migrations**: ``agentcost_meta.schema_version``; each step of :data:`MIGRATIONS` runs once, in order, in the
  transaction that opens the file; a file written by a newer agentcost is refused.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from agentcost._ledger import (
    EVENT_COLUMNS,
    LEAF_KINDS,
    SPAN_COLUMNS,
    BudgetEventRecord,
    Ledger,
    LedgerError,
    RunSummary,
    SpanRecord,
    SpendRow,
    event_row,
    group_columns,
    run_summaries,
    span_row,
    spend_rows,
    sum_exact,
    where_clause,
)
from agentcost._sqlite import SQLiteFile

__all__ = ["MIGRATIONS", "SQLiteLedger"]

_SCALE: Final = 12
_LEAVES: Final = "(" + ", ".join(f"'{kind}'" for kind in LEAF_KINDS) + ")"

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # 1: spans and budget events
        """CREATE TABLE spans (
            span_id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL,
            parent_id INTEGER,
            run_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            team TEXT, feature TEXT, user_id TEXT, session TEXT, conversation TEXT, tenant TEXT, agent TEXT,
            attrs TEXT NOT NULL,
            day TEXT NOT NULL,
            started_at REAL NOT NULL,
            ended_at REAL,
            status TEXT NOT NULL,
            error TEXT,
            cost_source TEXT,
            model TEXT, requested_model TEXT, provider TEXT,
            input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, requests INTEGER NOT NULL,
            units TEXT,
            notes TEXT,
            cost TEXT,
            cost_e12 INTEGER,
            cost_inexact INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX spans_by_run ON spans (run_id)",
        "CREATE INDEX spans_by_start ON spans (started_at)",
        # covers spend by team by day (the daily chargeback query) without touching the table
        "CREATE INDEX spans_by_day_team ON spans (day, team, kind, cost_e12, input_tokens, output_tokens)",
        "CREATE INDEX spans_inexact ON spans (span_id) WHERE cost_inexact = 1",
        """CREATE TABLE budget_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id INTEGER NOT NULL,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            node TEXT NOT NULL,
            metric TEXT,
            spent TEXT,
            limit_value TEXT,
            detail TEXT NOT NULL,
            denied INTEGER NOT NULL,
            attrs TEXT NOT NULL
        )""",
        "CREATE INDEX budget_events_by_run ON budget_events (run_id)",
    ),
)
"""Schema steps, in order; version N is the state after step N."""

SCHEMA_VERSION: Final = len(MIGRATIONS)

_SPAN_VALUES: Final = "(" + ", ".join("?" * (len(SPAN_COLUMNS) + 3)) + ")"
_ROWS_PER_INSERT: Final = 256
"""Rows per multi-row INSERT (256 x 32 parameters, well under SQLite's 32,766). ``executemany`` steps the statement
once per row and gives up and retakes the GIL around each step: with busy threads in the process a 500-row batch
took seconds instead of milliseconds (a measured convoy); one statement per chunk takes the GIL twice."""


@functools.cache
def _insert_spans(rows: int) -> str:
    return (
        f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}, cost, cost_e12, cost_inexact)"
        f" VALUES {', '.join([_SPAN_VALUES] * rows)} ON CONFLICT (span_id) DO NOTHING"
    )


_INSERT_EVENT: Final = (
    f"INSERT INTO budget_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)


def migrate(connection: sqlite3.Connection, path: str) -> None:
    """Bring the file's schema to :data:`SCHEMA_VERSION` (inside the caller's transaction)."""
    connection.execute("CREATE TABLE IF NOT EXISTS agentcost_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = connection.execute("SELECT value FROM agentcost_meta WHERE key = 'ledger_schema_version'").fetchone()
    found = 0 if row is None else int(row[0])
    if found > SCHEMA_VERSION:
        raise LedgerError(
            f"{path} has ledger schema version {found}, newer than this agentcost's {SCHEMA_VERSION}: upgrade agentcost"
        )
    for statements in MIGRATIONS[found:]:
        for statement in statements:
            connection.execute(statement)
    connection.execute(
        "INSERT INTO agentcost_meta (key, value) VALUES ('ledger_schema_version', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(SCHEMA_VERSION),),
    )


def cost_columns(cost: Decimal | None) -> tuple[str | None, int | None, int]:
    """``cost``, ``cost_e12`` and ``cost_inexact`` for one amount."""
    if cost is None:
        return None, None, 0
    scaled = cost.scaleb(_SCALE)
    units = int(scaled)
    return str(cost), units, 0 if units == scaled else 1


class SQLiteLedger(Ledger):
    """The ledger in the SQLite file at ``path`` (created on first use)."""

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL", busy_timeout: float = 30.0
    ) -> None:
        self._file = SQLiteFile(
            path,
            what="ledger",
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            create_schema=lambda connection: migrate(connection, os.fspath(path)),
            invalid=LedgerError,
        )
        self.path = self._file.path
        self.url = f"sqlite:///{self.path}"
        self._file.connection()  # open now: a bad path or a newer schema fails here, not in the background writer

    def write(self, spans: Iterable[SpanRecord], events: Iterable[BudgetEventRecord] = ()) -> None:
        span_rows = [(*span_row(record), *cost_columns(record.cost)) for record in spans]
        event_rows = [event_row(record) for record in events]
        if not span_rows and not event_rows:
            return
        with self._file.transaction() as connection:
            for start in range(0, len(span_rows), _ROWS_PER_INSERT):
                chunk = span_rows[start : start + _ROWS_PER_INSERT]
                connection.execute(_insert_spans(len(chunk)), [value for row in chunk for value in row])
            if event_rows:
                connection.executemany(_INSERT_EVENT, event_rows)

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        connection = self._file.connection()
        return self._file.retrying(lambda: connection.execute(sql, params).fetchall())

    _cost_order = "cost_e12"

    def _cost(self, value: Any) -> Decimal | None:
        return None if value is None else Decimal(value)

    def spend(
        self,
        by: Sequence[str],
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
    ) -> list[SpendRow]:
        columns = group_columns(by)
        clause, params = where_clause(since, until, where)
        keys = ", ".join(columns)
        counts = f"SUM(cost_e12 IS NULL), SUM(kind IN {_LEAVES}), SUM(input_tokens), SUM(output_tokens)"
        try:
            rows = self._query(f"SELECT {keys}, SUM(cost_e12), {counts} FROM spans{clause} GROUP BY {keys}", params)
        except sqlite3.OperationalError as error:
            if "integer overflow" not in str(error):
                raise
            return self._spend_in_python(by, columns, clause, params, counts, keys)
        n = len(columns)
        totals = {tuple(row[:n]): Decimal(row[n] or 0).scaleb(-_SCALE) for row in rows}
        inexact_clause = f"{clause} AND cost_inexact = 1" if clause else " WHERE cost_inexact = 1"
        # the partial index holds only the rare inexact rows: left to itself the planner prefers the day index
        inexact = f"SELECT {keys}, cost, cost_e12 FROM spans INDEXED BY spans_inexact{inexact_clause}"
        for row in self._query(inexact, params):
            key = tuple(row[:n])
            totals[key] = sum_exact((totals[key], Decimal(row[n]), -Decimal(row[n + 1]).scaleb(-_SCALE)))
        return spend_rows(by, rows, lambda key, _: totals[key])

    def _spend_in_python(
        self, by: Sequence[str], columns: list[str], clause: str, params: list[Any], counts: str, keys: str
    ) -> list[SpendRow]:
        n = len(columns)
        rows = self._query(f"SELECT {keys}, NULL, {counts} FROM spans{clause} GROUP BY {keys}", params)
        totals: dict[tuple[Any, ...], list[Decimal]] = {}
        priced = f"{clause} AND cost IS NOT NULL" if clause else " WHERE cost IS NOT NULL"
        for row in self._query(f"SELECT {keys}, cost FROM spans{priced}", params):
            totals.setdefault(tuple(row[:n]), []).append(Decimal(row[n]))
        return spend_rows(by, rows, lambda key, _: sum_exact(totals.get(key, ())))

    def runs(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        where: Mapping[str, str] | None = None,
        limit: int | None = None,
    ) -> list[RunSummary]:
        clause, params = where_clause(since, until, where)
        roots = f"{clause} AND parent_id IS NULL" if clause else " WHERE parent_id IS NULL"
        joined = f"(SELECT * FROM spans{roots}) r JOIN spans s ON s.run_id = r.span_id"
        rows = self._query(
            "SELECT r.span_id, r.name, r.started_at, r.ended_at, r.status, r.attrs, SUM(s.cost_e12),"
            f" SUM(s.cost IS NULL), COUNT(*) FROM {joined} GROUP BY r.span_id",
            params,
        )
        corrections: dict[int, list[Decimal]] = {}
        inexact = (
            f"SELECT r.span_id, s.cost, s.cost_e12 FROM (SELECT * FROM spans{roots}) r"
            " JOIN spans s INDEXED BY spans_inexact ON s.run_id = r.span_id WHERE s.cost_inexact = 1"
        )
        for run_id, cost, e12 in self._query(inexact, params):
            corrections.setdefault(run_id, []).extend((Decimal(cost), -Decimal(e12).scaleb(-_SCALE)))
        return run_summaries(
            rows,
            lambda run_id, e12: sum_exact((Decimal(e12 or 0).scaleb(-_SCALE), *corrections.get(run_id, ()))),
            limit,
        )

    def close(self) -> None:
        self._file.close()
