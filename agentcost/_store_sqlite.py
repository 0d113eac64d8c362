"""A :class:`BudgetStore` in one SQLite file, shared by many processes (and threads) on one host.

Design:

* **One transaction per operation.** Every ``reserve``, ``commit``, ``release``, ``charge``, ``usage`` and
  ``expire`` runs inside a single ``BEGIN IMMEDIATE`` transaction: it takes the database's write lock up front, so
  the read-check-write of a reservation cannot interleave with another process's. The file is in WAL mode; waiting
  for the lock uses SQLite's busy handler (``busy_timeout`` seconds) and, should SQLite still report
  ``SQLITE_BUSY``/``SQLITE_LOCKED`` (it can, e.g. while another connection switches the journal mode), the
  operation is retried with a short randomized back-off until the same deadline. Only then does it raise
  :class:`~agentcost.StoreUnavailable`.
* **Exact money.** Dollars are stored as decimal TEXT (``str(Decimal)``) and added or subtracted in Python, inside
  the IMMEDIATE transaction, in agentcost's exact decimal context: nothing is ever rounded. Tokens and calls are
  INTEGER columns.
* **Tables** (created on first open, with a ``schema_version`` row in ``meta``):

  - ``counters(limit_id, window, spent_cost, spent_tokens, spent_calls, held_cost, held_tokens, held_calls)``:
    spend and held totals per limit and window key (``2026-11-28`` for a day window, ``all`` for ``none``).
  - ``holds(hold_id, expires_at, cost, tokens, calls, keys)``: reservations in flight, with the JSON list of the
    ``[limit id, window key]`` pairs each one holds (the window current when it was made), indexed by expiry.
  - ``settled(hold_id, until)``: hold ids committed or released in the last day, so a retried settlement is a
    no-op; rows are deleted once ``until`` passes.

* **Expiry.** ``reserve``, ``usage`` and ``expire`` first delete the holds whose ``expires_at <= now`` (and subtract
  them from the held totals of the windows they hold), and forget settled ids older than a day. A commit whose hold
  has expired still adds its spend; it goes into the window current at commit time.
* **Connections** (agentcost._sqlite.SQLiteFile, shared with the SQLite ledger) are opened lazily, one per thread
  and per process: the store notes the pid that opened each one,
  so a store object inherited across ``fork`` opens fresh connections in the child instead of sharing the parent's.

``clock`` (seconds since the epoch) decides windows and expiry; tests pass a fake one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Final

from agentcost._errors import BudgetError
from agentcost._sqlite import SQLiteFile
from agentcost._store import NOTHING, Amount, BudgetStore, Limit, LimitUsage, check_amount, distinct_limits

__all__ = ["SQLiteStore"]

SCHEMA_VERSION: Final = "1"
SETTLED_FOR: Final = 86_400.0
"""Seconds a settled hold id is remembered, so that a retried commit or release is harmless."""

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS counters (
        limit_id TEXT NOT NULL,
        window TEXT NOT NULL,
        spent_cost TEXT NOT NULL DEFAULT '0',
        spent_tokens INTEGER NOT NULL DEFAULT 0,
        spent_calls INTEGER NOT NULL DEFAULT 0,
        held_cost TEXT NOT NULL DEFAULT '0',
        held_tokens INTEGER NOT NULL DEFAULT 0,
        held_calls INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (limit_id, window)
    ) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS holds (
        hold_id TEXT PRIMARY KEY,
        expires_at REAL NOT NULL,
        cost TEXT NOT NULL,
        tokens INTEGER NOT NULL,
        calls INTEGER NOT NULL,
        keys TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS holds_by_expiry ON holds (expires_at)",
    "CREATE TABLE IF NOT EXISTS settled (hold_id TEXT PRIMARY KEY, until REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS settled_by_until ON settled (until)",
)

Key = tuple[str, str]


class SQLiteStore(BudgetStore):
    """Limits shared by the processes of one host, in the SQLite file at ``path`` (created if missing).

    ``busy_timeout`` is how long (seconds) an operation waits for another process's transaction before raising
    :class:`~agentcost.StoreUnavailable`; ``synchronous`` is SQLite's durability setting (``FULL`` by default:
    every commit is on disk before the call returns).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = 30.0,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__()
        self._file = SQLiteFile(
            path,
            what="budget store",
            busy_timeout=busy_timeout,
            synchronous=synchronous,
            create_schema=self._create_schema,
            invalid=BudgetError,
        )
        self._path = self._file.path
        self._clock = clock

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            connection.execute(statement)
        connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        row = connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or row[0] != SCHEMA_VERSION:
            found = None if row is None else row[0]
            raise BudgetError(
                f"{self._path} has budget store schema version {found!r}; this agentcost reads {SCHEMA_VERSION!r}"
            )

    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._file.transaction()

    # -- rows ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _counters(connection: sqlite3.Connection, key: Key) -> tuple[Amount, Amount]:
        row = connection.execute(
            "SELECT spent_cost, spent_tokens, spent_calls, held_cost, held_tokens, held_calls FROM counters"
            " WHERE limit_id = ? AND window = ?",
            key,
        ).fetchone()
        if row is None:
            return NOTHING, NOTHING
        return Amount(Decimal(row[0]), row[1], row[2]), Amount(Decimal(row[3]), row[4], row[5])

    @staticmethod
    def _write(connection: sqlite3.Connection, key: Key, spent: Amount, held: Amount) -> None:
        connection.execute(
            "INSERT INTO counters (limit_id, window, spent_cost, spent_tokens, spent_calls, held_cost, held_tokens,"
            " held_calls) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (limit_id, window) DO UPDATE SET"
            " spent_cost = excluded.spent_cost, spent_tokens = excluded.spent_tokens,"
            " spent_calls = excluded.spent_calls, held_cost = excluded.held_cost,"
            " held_tokens = excluded.held_tokens, held_calls = excluded.held_calls",
            (*key, str(spent.cost), spent.tokens, spent.calls, str(held.cost), held.tokens, held.calls),
        )

    def _add_spend(self, connection: sqlite3.Connection, limits: Sequence[Limit], amount: Amount, now: float) -> None:
        for limit in limits:
            key = (limit.id, limit.window_key(now))
            spent, held = self._counters(connection, key)
            self._write(connection, key, spent + amount, held)

    def _drop_hold(self, connection: sqlite3.Connection, hold_id: str) -> bool:
        row = connection.execute("SELECT cost, tokens, calls, keys FROM holds WHERE hold_id = ?", (hold_id,)).fetchone()
        if row is None:
            return False
        self._unhold(connection, Amount(Decimal(row[0]), row[1], row[2]), row[3])
        connection.execute("DELETE FROM holds WHERE hold_id = ?", (hold_id,))
        return True

    def _unhold(self, connection: sqlite3.Connection, amount: Amount, keys_json: str) -> None:
        for limit_id, window in json.loads(keys_json):
            key = (limit_id, window)
            spent, held = self._counters(connection, key)
            self._write(connection, key, spent, held - amount)

    def _sweep(self, connection: sqlite3.Connection, now: float) -> int:
        expired = connection.execute(
            "SELECT hold_id, cost, tokens, calls, keys FROM holds WHERE expires_at <= ?", (now,)
        ).fetchall()
        for _, cost, tokens, calls, keys in expired:
            self._unhold(connection, Amount(Decimal(cost), tokens, calls), keys)
        if expired:
            connection.executemany("DELETE FROM holds WHERE hold_id = ?", [(row[0],) for row in expired])
        connection.execute("DELETE FROM settled WHERE until <= ?", (now,))
        return len(expired)

    @staticmethod
    def _is_settled(connection: sqlite3.Connection, hold_id: str) -> bool:
        return connection.execute("SELECT 1 FROM settled WHERE hold_id = ?", (hold_id,)).fetchone() is not None

    # -- the atomic operations -------------------------------------------------------------------------------------
    def reserve(self, hold_id: str, limits: Sequence[Limit], amount: Amount, ttl: float) -> bool:
        check_amount(amount)
        limits = distinct_limits(limits)
        with self._transaction() as connection:
            now = self._clock()
            self._sweep(connection, now)
            if (
                self._is_settled(connection, hold_id)
                or connection.execute("SELECT 1 FROM holds WHERE hold_id = ?", (hold_id,)).fetchone()
            ):
                return True  # a retried reservation: already held (or already settled)
            keys = [(limit.id, limit.window_key(now)) for limit in limits]
            counters = [self._counters(connection, key) for key in keys]
            for limit, (spent, held) in zip(limits, counters, strict=True):
                refusal = limit.refusal(spent, held, amount)
                if refusal is not None:
                    raise refusal
            for key, (spent, held) in zip(keys, counters, strict=True):
                self._write(connection, key, spent, held + amount)
            connection.execute(
                "INSERT INTO holds (hold_id, expires_at, cost, tokens, calls, keys) VALUES (?, ?, ?, ?, ?, ?)",
                (hold_id, now + ttl, str(amount.cost), amount.tokens, amount.calls, json.dumps(keys)),
            )
        return True

    def commit(self, hold_id: str, limits: Sequence[Limit], amount: Amount) -> None:
        check_amount(amount)
        limits = distinct_limits(limits)
        with self._transaction() as connection:
            now = self._clock()
            if self._is_settled(connection, hold_id):
                return
            self._drop_hold(connection, hold_id)
            self._add_spend(connection, limits, amount, now)
            connection.execute("INSERT INTO settled (hold_id, until) VALUES (?, ?)", (hold_id, now + SETTLED_FOR))

    def release(self, hold_id: str) -> None:
        with self._transaction() as connection:
            self._drop_hold(connection, hold_id)
            connection.execute(
                "INSERT OR IGNORE INTO settled (hold_id, until) VALUES (?, ?)", (hold_id, self._clock() + SETTLED_FOR)
            )

    def charge(self, limits: Sequence[Limit], amount: Amount) -> None:
        check_amount(amount)
        limits = distinct_limits(limits)
        with self._transaction() as connection:
            self._add_spend(connection, limits, amount, self._clock())

    def usage(self, limit: Limit) -> LimitUsage:
        with self._transaction() as connection:
            now = self._clock()
            self._sweep(connection, now)
            key = (limit.id, limit.window_key(now))
            spent, held = self._counters(connection, key)
        return LimitUsage(limit, key[1], spent, held)

    def expire(self) -> int:
        with self._transaction() as connection:
            return self._sweep(connection, self._clock())

    def close(self) -> None:
        """Close this process's connections (other threads' included); the store cannot be used afterwards."""
        self._file.close()
