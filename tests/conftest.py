"""Shared fixtures: the Redis and PostgreSQL servers the store and ledger tests use, a fake clock, and a TCP proxy
that can cut Redis off.

Importing this module is cheap: redis-py and psycopg are imported, and the servers contacted, only when a test asks
for ``redis_url`` or ``postgres_url``. The URLs come from ``AGENTCOST_REDIS_URL`` (default
``redis://127.0.0.1:6379/0``) and ``AGENTCOST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
when nothing answers there, the tests that need them are skipped with the reason printed, except under ``CI`` where
they fail.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import NoReturn
from urllib.parse import urlsplit

import pytest

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


class FakeClock:
    """A settable clock (seconds since the epoch), for stores' ``clock`` argument."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(text: str) -> float:
    """Seconds since the epoch of an ISO UTC time such as ``2026-01-31T23:30:00``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock at 2026-01-31T23:30:00Z: half an hour before an hour, a day and a month end."""
    return FakeClock(at("2026-01-31T23:30:00"))


def unavailable(reason: str) -> NoReturn:
    """A server the test needs is not there: skip, saying why (fail under CI, where it must be)."""
    print(reason)
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The URL of a PostgreSQL server that accepts a connection; skips (fails under CI) when there is none."""
    url = os.environ.get("AGENTCOST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as error:
        unavailable(f"no PostgreSQL server at {url} ({error}); set AGENTCOST_POSTGRES_URL to run the ledger tests")
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A URL whose connections work in a fresh schema of their own, dropped after the test."""
    import psycopg

    schema = f"agentcost_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in postgres_server else "?"
    try:
        yield f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a Redis server that answers PING; skips the test (fails it under CI) when there is none."""
    url = os.environ.get("AGENTCOST_REDIS_URL", DEFAULT_REDIS_URL)
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
    try:
        client.ping()
    except redis.RedisError as error:
        unavailable(f"no Redis server at {url} ({error}); set AGENTCOST_REDIS_URL to run the Redis store tests")
    finally:
        client.close()
    return url


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key a RedisStore with ``prefix`` made."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of its own for one test; its keys are deleted afterwards."""
    prefix = f"agentcost-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_prefix(redis_url, prefix)


class TcpProxy:
    """Forwards a local port to Redis until :meth:`stop`, which refuses new connections and cuts live ones."""

    def __init__(self, redis_url: str) -> None:
        self._parts = urlsplit(redis_url)
        self.upstream = (self._parts.hostname or "127.0.0.1", self._parts.port or 6379)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """The Redis URL (credentials and database kept) that goes through the proxy."""
        user = self._parts.netloc.rpartition("@")[0]
        address = f"127.0.0.1:{self.port}"
        return self._parts._replace(netloc=f"{user}@{address}" if user else address).geturl()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._spawn(self._accept, listener)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [s for s in [listener] if s is not None] + sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[TcpProxy]:
    """A started :class:`TcpProxy` to the test Redis server; stopped (its sockets closed) after the test."""
    proxy = TcpProxy(redis_url)
    proxy.start()
    yield proxy
    proxy.stop()
