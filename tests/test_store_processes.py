"""SQLiteStore and RedisStore under 8 concurrent processes: no over-admission, nothing lost, crashes tolerated.

Workers are forked (each opens its own store) and append what they did to a file of their own with one unbuffered
``os.write`` per line, so a line is on record the moment the call before it returned, even if the worker is killed
right after. Lines: ``R id units`` reserved, ``N id`` refused, ``C id units`` about to commit, ``D id`` committed,
``L id`` about to release, ``X id`` released, ``T trips calls`` round trips and store calls made, ``E`` finished.
Money is counted in integer units (1E-12 dollars for SQLite, to exercise digits below a nano-dollar; 1E-9 for
Redis, its own granularity), so every expected total is exact.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import delete_prefix

from agentcost._errors import BudgetExceeded
from agentcost._store import Amount, BudgetStore, Limit
from agentcost._store_redis import RedisStore
from agentcost._store_sqlite import SQLiteStore

CONTEXT = multiprocessing.get_context("fork")
WORKERS = 8


@dataclass(frozen=True)
class Target:
    """Where the workers' store is: a SQLite file or a Redis URL and prefix."""

    kind: str
    location: str
    prefix: str = ""
    unit: Decimal = field(default=Decimal("1E-12"))

    def open(self) -> BudgetStore:
        if self.kind == "sqlite":
            return SQLiteStore(self.location)
        return RedisStore(self.location, prefix=self.prefix)


@pytest.fixture(params=["sqlite", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A SQLite file, or a fresh prefix on the test Redis server (deleted afterwards)."""
    if request.param == "sqlite":
        yield Target("sqlite", str(tmp_path / "budget.db"))
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"agentcost-test-{uuid.uuid4().hex[:12]}"
    yield Target("redis", url, prefix, Decimal("1E-9"))
    delete_prefix(url, prefix)


def limit_of(units: int, unit: Decimal) -> Limit:
    return Limit(scope={"suite": "processes"}, window="none", max_cost=units * unit)


def worker(
    target: Target, limit: Limit, name: str, cycles: int, ttl: float, release_ratio: float, keep: int, report: str
) -> None:
    """Reserve (random 1..1e6 units, one call), keep at most ``keep`` holds open, settle the oldest: commit a random
    amount up to the reservation, or release with probability ``release_ratio``."""
    store = target.open()
    rng = random.Random(name)
    fd = os.open(report, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def note(line: str) -> None:
        os.write(fd, f"{line}\n".encode())

    trips = store.round_trips if isinstance(store, RedisStore) else 0
    calls = 0
    outstanding: deque[tuple[str, int]] = deque()

    def settle() -> None:
        nonlocal calls
        hold, units = outstanding.popleft()
        calls += 1
        if rng.random() < release_ratio:
            note(f"L {hold}")
            store.release(hold)
            note(f"X {hold}")
        else:
            actual = rng.randint(0, units)
            note(f"C {hold} {actual}")
            store.commit(hold, [limit], Amount(actual * target.unit, 0, 1))
            note(f"D {hold}")

    for cycle in range(cycles):
        hold, units = f"{name}-{cycle}", rng.randint(1, 1_000_000)
        calls += 1
        try:
            store.reserve(hold, [limit], Amount(units * target.unit, 0, 1), ttl)
        except BudgetExceeded:
            note(f"N {hold}")
        else:
            note(f"R {hold} {units}")
            outstanding.append((hold, units))
        while len(outstanding) > keep:
            settle()
    while outstanding:
        settle()
    if isinstance(store, RedisStore):
        note(f"T {store.round_trips - trips} {calls}")
    note("E")
    store.close()
    os.close(fd)


@dataclass
class Report:
    """One worker's file, parsed."""

    reserved: dict[str, int] = field(default_factory=dict)
    refused: int = 0
    committing: dict[str, int] = field(default_factory=dict)
    committed: set[str] = field(default_factory=set)
    releasing: set[str] = field(default_factory=set)
    released: set[str] = field(default_factory=set)
    trips: tuple[int, int] | None = None
    finished: bool = False

    @classmethod
    def read(cls, path: Path) -> Report:
        report = cls()
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # cut short by the kill: the call after it never started
            kind, *rest = line.split()
            if kind == "R":
                report.reserved[rest[0]] = int(rest[1])
            elif kind == "N":
                report.refused += 1
            elif kind == "C":
                report.committing[rest[0]] = int(rest[1])
            elif kind == "D":
                report.committed.add(rest[0])
            elif kind == "L":
                report.releasing.add(rest[0])
            elif kind == "X":
                report.released.add(rest[0])
            elif kind == "T":
                report.trips = (int(rest[0]), int(rest[1]))
            elif kind == "E":
                report.finished = True
        return report

    @property
    def in_doubt(self) -> dict[str, int]:
        """Commits that were under way when the worker died."""
        return {hold: units for hold, units in self.committing.items() if hold not in self.committed}

    @property
    def abandoned(self) -> set[str]:
        """Holds the worker never got to settle."""
        return set(self.reserved) - set(self.committing) - self.releasing


def start(
    target: Target, limit: Limit, tmp_path: Path, plans: list[tuple[int, float, int]], ttl: float
) -> list[tuple[multiprocessing.process.BaseProcess, Path]]:
    """Start one worker per ``(cycles, release_ratio, keep)`` plan."""
    started: list[tuple[multiprocessing.process.BaseProcess, Path]] = []
    for index, (cycles, release_ratio, keep) in enumerate(plans):
        report = tmp_path / f"worker-{index}.log"
        process = CONTEXT.Process(
            target=worker,
            args=(target, limit, f"w{index}-{uuid.uuid4().hex[:6]}", cycles, ttl, release_ratio, keep, str(report)),
        )
        process.start()
        started.append((process, report))
    return started


def reap(processes: list[tuple[multiprocessing.process.BaseProcess, Path]], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for process, _ in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
            pytest.fail(f"worker {process.name} did not finish in {timeout:g}s")


def test_concurrent_workers_never_overspend_and_lose_nothing(target: Target, tmp_path: Path) -> None:
    """8 processes reserve and commit (actual <= reserved) against one shared cost limit while the parent samples
    usage: no sample shows spent + held above the limit, the final spend is within it and equals exactly the sum of
    the workers' commits, nothing stays held, the limit was actually reached (refusals happened), and for Redis
    every reserve and commit made exactly one round trip."""
    max_units = 100_000_000
    limit = limit_of(max_units, target.unit)
    processes = start(target, limit, tmp_path, [(400, 0.0, 0)] * WORKERS, ttl=60)
    sampler = target.open()
    samples, over, highest = 0, [], Decimal(0)
    try:
        while any(process.is_alive() for process, _ in processes):
            usage = sampler.usage(limit)
            used = usage.spent.cost + usage.held.cost
            samples += 1
            highest = max(highest, used)
            if used > limit.max_cost or usage.spent.cost > limit.max_cost:  # type: ignore[operator]
                over.append(usage)
            time.sleep(0.003)
        reap(processes)
        reports = [Report.read(path) for _, path in processes]
        final = sampler.usage(limit)
    finally:
        sampler.close()
    assert all(process.exitcode == 0 for process, _ in processes)
    assert all(report.finished for report in reports)
    assert over == []
    # how many samples fit in the run depends on the machine's load (a SQLite read can wait behind the writers'
    # transactions); that the sampler watched the run is shown by what it saw: spend near the limit, below
    assert samples >= 1
    committed_units = sum(sum(report.committing.values()) for report in reports)
    assert final.spent.cost == committed_units * target.unit
    assert final.spent.calls == sum(len(report.committed) for report in reports)
    assert final.spent.cost <= limit.max_cost  # type: ignore[operator]
    assert final.held.cost == 0
    assert final.held.calls == 0
    assert sum(report.refused for report in reports) > 0
    assert highest > limit.max_cost * Decimal("0.9")  # type: ignore[operator]
    if target.kind == "redis":
        for report in reports:
            assert report.trips is not None
            trips, calls = report.trips
            assert trips == calls


def test_killed_workers_holds_expire_and_every_commit_is_counted(target: Target, tmp_path: Path) -> None:
    """2 of 8 workers are SIGKILLed mid-run while holding reservations; the others release 30% of theirs. Once the
    hold TTL has passed nothing is held, and spent equals exactly the sum the workers recorded committing (a commit
    the kill interrupted is retried by the parent: idempotent, so it counts once whether or not it had landed)."""
    ttl = 1.0
    limit = limit_of(10**15, target.unit)  # roomy: every reservation is admitted
    victims = 2
    plans = [(1_000_000, 0.3, 2)] * victims + [(200, 0.3, 0)] * (WORKERS - victims)
    processes = start(target, limit, tmp_path, plans, ttl)
    store = target.open()
    try:
        for process, path in processes[:victims]:
            deadline = time.monotonic() + 30
            while len(Report.read(path).reserved) < 40 and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(random.random() * 0.05)
            assert process.pid is not None
            os.kill(process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        reap(processes)
        reports = [Report.read(path) for _, path in processes]
        for report in reports[:victims]:
            assert not report.finished
            assert len(report.abandoned) >= 1  # killed holding at least one reservation
        for report in reports[victims:]:
            assert report.finished
            assert not report.in_doubt
            assert not report.abandoned
            assert report.releasing == report.released
        time.sleep(max(0.0, killed_at + ttl + 0.2 - time.monotonic()))
        for report in reports[:victims]:
            for hold, units in report.in_doubt.items():
                store.commit(hold, [limit], Amount(units * target.unit, 0, 1))
            for hold in report.releasing - report.released:
                store.release(hold)
        usage = store.usage(limit)
    finally:
        store.close()
    assert [process.exitcode for process, _ in processes] == [-signal.SIGKILL] * victims + [0] * (WORKERS - victims)
    assert usage.held.cost == 0
    assert usage.held.calls == 0
    assert usage.spent.cost == sum(sum(report.committing.values()) for report in reports) * target.unit
    assert usage.spent.calls == sum(len(report.committing) for report in reports)
    assert sum(len(report.released) for report in reports) > 0
    if target.kind == "redis":
        for report in reports[victims:]:
            assert report.trips is not None
            trips, calls = report.trips
            assert trips == calls
