"""One SQLite file shared by many processes and threads: the connection handling of the SQLite budget store and the
SQLite ledger.

Connections are opened lazily, one per thread and per process (a file object inherited across ``fork`` opens fresh
connections in the child instead of sharing the parent's), in WAL mode with the chosen ``synchronous`` setting. A
write transaction starts with ``BEGIN IMMEDIATE`` so that it takes the write lock up front; waiting for the lock uses
SQLite's busy handler and, should SQLite still report ``SQLITE_BUSY``/``SQLITE_LOCKED``, the statement is retried
with a short randomized back-off until ``busy_timeout`` has passed. Only then is :class:`StoreUnavailable` raised.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

from agentcost._errors import StoreUnavailable

SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

_T = TypeVar("_T")


def is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    message = str(error)
    return "locked" in message or "busy" in message


class SQLiteFile:
    """Per-thread, per-process connections to one database file, and the transaction that retries while busy.

    ``what`` names the file's role in error messages; ``create_schema`` runs once per process, on the first
    connection, inside that connection's first ``BEGIN IMMEDIATE`` transaction; ``invalid`` is the exception class
    for bad settings and uses of a closed file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        what: str,
        busy_timeout: float,
        synchronous: str,
        create_schema: Callable[[sqlite3.Connection], None],
        invalid: type[Exception],
    ) -> None:
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file::memory:"):
            raise invalid(f"{what} needs a file: an in-memory database is not shared between connections")
        if isinstance(busy_timeout, bool) or not isinstance(busy_timeout, int | float) or not busy_timeout > 0:
            raise invalid(f"busy_timeout must be positive seconds, got {busy_timeout!r}")
        if not isinstance(synchronous, str) or synchronous.upper() not in SYNCHRONOUS:
            raise invalid(f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}")
        self.what = what
        self.busy_timeout = float(busy_timeout)
        self.synchronous = synchronous.upper()
        self._create_schema = create_schema
        self._invalid = invalid
        self._local = threading.local()
        self._connections: list[tuple[int, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._schema_pid = 0
        self._closed = False

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use)."""
        if self._closed:
            raise self._invalid(f"this {self.what} is closed")
        local = self._local
        pid = os.getpid()
        connection: sqlite3.Connection | None = getattr(local, "connection", None)
        if connection is not None and getattr(local, "pid", 0) == pid:
            return connection
        # none yet in this thread, or one inherited across fork: never touch the parent's, open our own
        connection = self.retrying(self._open)
        local.connection = connection
        local.pid = pid
        with self._connections_lock:
            self._connections = [(p, c) for p, c in self._connections if p == pid]
            self._connections.append((pid, connection))
        return connection

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                raise self._invalid(f"could not put {self.path} in WAL mode (journal_mode is {mode})")
            connection.execute(f"PRAGMA synchronous = {self.synchronous}")
            if self._schema_pid != os.getpid():
                connection.execute("BEGIN IMMEDIATE")
                try:
                    self._create_schema(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                self._schema_pid = os.getpid()
        except BaseException:
            connection.close()
            raise
        return connection

    def retrying(self, action: Callable[[], _T]) -> _T:
        """Run ``action``, again while SQLite says busy or locked, until ``busy_timeout`` has passed."""
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.001
        while True:
            try:
                return action()
            except sqlite3.OperationalError as error:
                if not is_busy(error):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"SQLite {self.what} {self.path} stayed locked for {self.busy_timeout:g}s: {error}"
                    ) from error
            time.sleep(pause * (0.5 + random.random()))
            pause = min(pause * 2, 0.05)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction on this thread's connection; rolled back on error."""
        connection = self.connection()
        self.retrying(lambda: connection.execute("BEGIN IMMEDIATE"))
        try:
            yield connection
            self.retrying(lambda: connection.execute("COMMIT"))
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this process's connections (other threads' included); the file cannot be used afterwards."""
        self._closed = True
        pid = os.getpid()
        with self._connections_lock:
            mine = [connection for owner, connection in self._connections if owner == pid]
            self._connections = []
        for connection in mine:
            connection.close()
