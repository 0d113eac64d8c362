"""The ledger in PostgreSQL (psycopg 3), for many hosts.

The same tables and queries as the SQLite ledger, with PostgreSQL's own types: money is ``NUMERIC`` (exact sums in
SQL), ids ``BIGINT``, attribution also as ``JSONB``. Batches are written with ``executemany`` (psycopg pipelines
it: one round trip per batch) inside one transaction, ``ON CONFLICT (span_id) DO NOTHING``. Migrations run under a
transaction-scoped advisory lock, so processes opening the same database at once do not race. One connection per
ledger object, used under a lock (the writer's thread and queries share it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from agentcost._errors import StoreUnavailable
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
    where_clause,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["MIGRATIONS", "PostgresLedger"]

_LEAVES: Final = "(" + ", ".join(f"'{kind}'" for kind in LEAF_KINDS) + ")"
_LOCK_KEY: Final = 0x61676E74636F7374  # "agntcost": the advisory lock migrations hold

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (  # 1: spans and budget events
        """CREATE TABLE spans (
            span_id BIGINT PRIMARY KEY,
            run_id BIGINT NOT NULL,
            parent_id BIGINT,
            run_name TEXT NOT NULL,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            team TEXT, feature TEXT, user_id TEXT, session TEXT, conversation TEXT, tenant TEXT, agent TEXT,
            attrs TEXT NOT NULL,
            day TEXT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            ended_at DOUBLE PRECISION,
            status TEXT NOT NULL,
            error TEXT,
            cost_source TEXT,
            model TEXT, requested_model TEXT, provider TEXT,
            input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL, cache_read_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL, reasoning_tokens BIGINT NOT NULL, requests BIGINT NOT NULL,
            units TEXT,
            notes TEXT,
            cost NUMERIC
        )""",
        "CREATE INDEX spans_by_run ON spans (run_id)",
        "CREATE INDEX spans_by_start ON spans (started_at)",
        "CREATE INDEX spans_by_day_team ON spans (day, team) INCLUDE (kind, cost, input_tokens, output_tokens)",
        """CREATE TABLE budget_events (
            seq BIGSERIAL PRIMARY KEY,
            run_id BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
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

SCHEMA_VERSION: Final = len(MIGRATIONS)

_INSERT_SPAN: Final = (
    f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}, cost) VALUES ({', '.join(['%s'] * (len(SPAN_COLUMNS) + 1))})"
    " ON CONFLICT (span_id) DO NOTHING"
)
_INSERT_EVENT: Final = (
    f"INSERT INTO budget_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(EVENT_COLUMNS))})"
)


def _pg(sql: str) -> str:
    """The shared SQL (``?`` placeholders, SQLite's boolean sums) in psycopg's dialect."""
    return sql.replace("?", "%s")


class PostgresLedger(Ledger):
    """The ledger in the PostgreSQL database at ``url`` (``postgresql://user@host:5432/db``); tables are created
    on first use."""

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        try:
            import psycopg
        except ImportError as error:  # pragma: no cover - the test environment has it
            raise LedgerError("the PostgreSQL ledger needs psycopg: pip install 'agentcost-sdk[postgres]'") from error
        self.url = url
        self._lock = threading.Lock()
        try:
            self._connection: psycopg.Connection[Any] = psycopg.connect(
                url, connect_timeout=max(1, int(connect_timeout))
            )
        except psycopg.OperationalError as error:
            raise StoreUnavailable(f"PostgreSQL ledger {url}: cannot connect: {error}") from error
        with self._lock, self._connection.transaction():
            self._migrate()

    def _migrate(self) -> None:
        execute = self._connection.execute
        execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        execute("CREATE TABLE IF NOT EXISTS agentcost_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = execute("SELECT value FROM agentcost_meta WHERE key = 'ledger_schema_version'").fetchone()
        found = 0 if row is None else int(row[0])
        if found > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.url} has ledger schema version {found}, newer than this agentcost's {SCHEMA_VERSION}"
            )
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                execute(statement)
        execute(
            "INSERT INTO agentcost_meta (key, value) VALUES ('ledger_schema_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )

    def _query(self, sql: str, params: Sequence[Any]) -> list[Any]:
        import psycopg

        with self._lock:
            try:
                with self._connection.transaction():
                    return self._connection.execute(_pg(sql), params).fetchall()
            except psycopg.OperationalError as error:
                raise StoreUnavailable(f"PostgreSQL ledger {self.url}: {error}") from error

    def write(self, spans: Iterable[SpanRecord], events: Iterable[BudgetEventRecord] = ()) -> None:
        import psycopg

        span_rows = [(*span_row(record), record.cost) for record in spans]
        event_rows = [event_row(record) for record in events]
        if not span_rows and not event_rows:
            return
        with self._lock:
            try:
                with self._connection.transaction(), self._connection.cursor() as cursor:
                    if span_rows:
                        cursor.executemany(_INSERT_SPAN, span_rows)
                    if event_rows:
                        cursor.executemany(_INSERT_EVENT, event_rows)
            except psycopg.OperationalError as error:
                raise StoreUnavailable(f"PostgreSQL ledger {self.url}: {error}") from error

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
        rows = self._query(
            f"SELECT {keys}, SUM(cost), COUNT(*) FILTER (WHERE cost IS NULL),"
            f" COUNT(*) FILTER (WHERE kind IN {_LEAVES}), SUM(input_tokens), SUM(output_tokens)"
            f" FROM spans{clause} GROUP BY {keys}",
            params,
        )
        return spend_rows(by, rows, lambda _, total: total if total is not None else Decimal(0))

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
        rows = self._query(
            "SELECT r.span_id, r.name, r.started_at, r.ended_at, r.status, r.attrs, COALESCE(SUM(s.cost), 0),"
            " COUNT(s.span_id) FILTER (WHERE s.cost IS NULL), COUNT(s.span_id)"
            f" FROM (SELECT * FROM spans{roots}) r LEFT JOIN spans s ON s.run_id = r.span_id"
            " GROUP BY r.span_id, r.name, r.started_at, r.ended_at, r.status, r.attrs",
            params,
        )
        return run_summaries(rows, lambda _, total: Decimal(total), limit)

    def close(self) -> None:
        with self._lock:
            self._connection.close()
