"""Throughput of the budget stores, and the network round trips each RedisStore call makes.

Run from the repository root::

    python benchmarks/bench_stores.py          # full run (under a minute on a slow 2-core machine)
    python benchmarks/bench_stores.py --quick  # smoke run (a few seconds)

What it measures:

1. Round trips per call: one RedisStore (server clock) makes a reserve, a commit, a release, a charge and a
   refused reserve; for each, the store's own count (requests written to the socket) and the server's EVALSHA
   count (``INFO commandstats``) before and after. Target: exactly 1 for each.
2. Admissions and settlements per second: N processes (8 for Redis on loopback, 4 for SQLite, 1 for the in-process
   MemoryStore as a reference) each loop ``reserve`` then ``commit`` against one shared day limit for a fixed time,
   after a common start signal. Admissions/s is all admissions over the longest worker's run time (settlements
   likewise). Round trips per admission and per settlement are counted around every call in every Redis worker,
   and the total is checked against the server's EVALSHA count. At the end the limit's spend must equal exactly
   the number of settlements times the committed amount, and nothing may be held.

Redis comes from ``AGENTCOST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); its rows are skipped when no
server answers. Keys live under a fresh prefix and are deleted afterwards; the SQLite file is in a temporary
directory (``synchronous=FULL``, the default).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from multiprocessing.synchronize import Event
from typing import Any

from agentcost._errors import BudgetExceeded
from agentcost._store import Amount, BudgetStore, Limit, MemoryStore
from agentcost._store_redis import RedisStore
from agentcost._store_sqlite import SQLiteStore

RESERVED = Amount(Decimal("0.0012"), 1500, 1)
ACTUAL = Amount(Decimal("0.000937"), 1187, 1)


@dataclass(frozen=True)
class Target:
    kind: str
    location: str = ""
    prefix: str = ""

    def open(self) -> BudgetStore:
        if self.kind == "redis":
            return RedisStore(self.location, prefix=self.prefix)
        if self.kind == "sqlite":
            return SQLiteStore(self.location)
        return MemoryStore()


@dataclass(frozen=True)
class WorkerResult:
    admissions: int
    settlements: int
    reserve_trips: int
    settle_trips: int
    seconds: float


def limit_for(target: Target) -> Limit:
    return Limit(scope={"bench": target.prefix or "stores"}, window="day", max_cost=Decimal("1000000"))


def trips_of(store: BudgetStore) -> Callable[[], int]:
    if isinstance(store, RedisStore):
        return lambda: store.round_trips
    return lambda: 0


def run_worker(target: Target, index: int, seconds: float, store: BudgetStore | None = None) -> WorkerResult:
    """Loop reserve + commit for ``seconds``; counts calls and the round trips around each."""
    own = store is None
    store = target.open() if store is None else store
    limit = limit_for(target)
    trips = trips_of(store)
    admissions = settlements = reserve_trips = settle_trips = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        hold = f"{index}-{admissions}"
        before = trips()
        store.reserve(hold, [limit], RESERVED, 60)
        middle = trips()
        store.commit(hold, [limit], ACTUAL)
        after = trips()
        admissions += 1
        settlements += 1
        reserve_trips += middle - before
        settle_trips += after - middle
    elapsed = time.perf_counter() - started
    if own:
        store.close()
    return WorkerResult(admissions, settlements, reserve_trips, settle_trips, elapsed)


def process_main(target: Target, index: int, seconds: float, go: Event, results: Any) -> None:
    store = target.open()  # connect (and load the script) before the clock starts
    go.wait()
    results.put(run_worker(target, index, seconds, store))
    store.close()


@dataclass(frozen=True)
class Row:
    store: str
    processes: int
    admissions_per_s: float
    settlements_per_s: float
    trips_per_admission: float | None
    trips_per_settlement: float | None
    check: str


def evalsha_calls(url: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats").get("cmdstat_evalsha", {"calls": 0})
        return int(stats["calls"])
    finally:
        client.close()


def measure(target: Target, processes: int, seconds: float) -> Row:
    """Run the workers, then check the limit's totals (and, for Redis, the server's EVALSHA count)."""
    calls_before = evalsha_calls(target.location) if target.kind == "redis" else 0
    if processes == 1:
        store = target.open()
        results = [run_worker(target, 0, seconds, store)]
    else:
        context = multiprocessing.get_context("fork")  # workers inherit the imports: quick to start
        go = context.Event()
        queue = context.Queue()
        workers = [
            context.Process(target=process_main, args=(target, index, seconds, go, queue)) for index in range(processes)
        ]
        for worker in workers:
            worker.start()
        time.sleep(0.5)  # let every worker open its store
        go.set()
        results = [queue.get(timeout=seconds + 60) for _ in workers]
        for worker in workers:
            worker.join()
        store = target.open()
    calls = evalsha_calls(target.location) - calls_before if target.kind == "redis" else 0
    usage = store.usage(limit_for(target))
    store.close()
    admissions = sum(result.admissions for result in results)
    settlements = sum(result.settlements for result in results)
    wall = max(result.seconds for result in results)
    problems = []
    if usage.spent != Amount(ACTUAL.cost * settlements, ACTUAL.tokens * settlements, settlements):
        problems.append(f"spent {usage.spent} != {settlements} x {ACTUAL}")
    if usage.held != Amount():
        problems.append(f"still held {usage.held}")
    per_admission = per_settlement = None
    if target.kind == "redis":
        per_admission = sum(result.reserve_trips for result in results) / admissions
        per_settlement = sum(result.settle_trips for result in results) / settlements
        if calls != admissions + settlements:
            problems.append(f"server saw {calls} EVALSHA for {admissions + settlements} calls")
    return Row(
        target.kind,
        processes,
        admissions / wall,
        settlements / wall,
        per_admission,
        per_settlement,
        "; ".join(problems) or "ok: exact totals" + (", EVALSHA count matches" if target.kind == "redis" else ""),
    )


def round_trips_per_call(url: str, prefix: str) -> list[tuple[str, int, int]]:
    """(call, store-counted round trips, server-counted EVALSHA) for each kind of call."""
    store = RedisStore(url, prefix=prefix)
    limit = Limit(scope={"bench": prefix}, window="day", max_cost=Decimal("1"))

    def refused() -> None:
        try:
            store.reserve("c", [limit], Amount(Decimal("5")), 60)
        except BudgetExceeded:
            return
        raise AssertionError("the reservation should have been refused")

    def reserve_b() -> None:
        store.reserve("b", [limit], RESERVED, 60)

    # (call, what to do first, unmeasured)
    calls: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        ("reserve", lambda: store.reserve("a", [limit], RESERVED, 60), lambda: None),
        ("commit", lambda: store.commit("a", [limit], ACTUAL), lambda: None),
        ("reserve (refused)", refused, lambda: None),
        ("release", lambda: store.release("b"), reserve_b),
        ("charge", lambda: store.charge([limit], ACTUAL), lambda: None),
    ]
    rows = []
    for name, call, setup in calls:
        setup()
        trips, server = store.round_trips, evalsha_calls(url)
        call()
        rows.append((name, store.round_trips - trips, evalsha_calls(url) - server))
    store.close()
    return rows


def redis_available(url: str) -> str | None:
    """None if a Redis server answers at ``url``; else why not."""
    try:
        import redis
    except ImportError:
        return "redis-py is not installed (pip install 'agentcost-sdk[redis]')"
    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        return f"no Redis server at {url}: {error}"
    finally:
        client.close()
    return None


def delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    options = parser.parse_args()
    seconds = 1.0 if options.quick else 10.0
    url = os.environ.get("AGENTCOST_REDIS_URL", "redis://127.0.0.1:6379/0")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {seconds:g} s per store")
    rows: list[Row] = []
    unavailable = redis_available(url)
    if unavailable is None:
        prefix = f"agentcost-bench-{uuid.uuid4().hex[:8]}"
        try:
            print("\nRound trips per RedisStore call (store-counted / server EVALSHA count; target 1 / 1):")
            for name, trips, server in round_trips_per_call(url, prefix + "-calls"):
                print(f"  {name:<18} {trips} / {server}")
            rows.append(measure(Target("redis", url, prefix), 8, seconds))
        finally:
            delete_prefix(url, prefix)
            delete_prefix(url, prefix + "-calls")
    else:
        print(f"\nRedisStore skipped: {unavailable}")
    with tempfile.TemporaryDirectory() as directory:
        rows.append(measure(Target("sqlite", os.path.join(directory, "budget.db"), "sqlite"), 4, seconds))
    rows.append(measure(Target("memory", prefix="memory"), 1, seconds))

    print()
    header = f"{'store':<8} {'procs':>5} {'admissions/s':>13} {'settlements/s':>14} {'trips/adm':>10} {'trips/set':>10}"
    print(header + "  check")
    print("-" * (len(header) + 30))
    for row in rows:
        per_admission = "-" if row.trips_per_admission is None else f"{row.trips_per_admission:.3f}"
        per_settlement = "-" if row.trips_per_settlement is None else f"{row.trips_per_settlement:.3f}"
        print(
            f"{row.store:<8} {row.processes:>5} {row.admissions_per_s:>13,.0f} {row.settlements_per_s:>14,.0f}"
            f" {per_admission:>10} {per_settlement:>10}  {row.check}"
        )
    return 0 if all(row.check.startswith("ok") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
