"""The SQLite ledger under 4 processes x 4 threads appending at once: zero "database is locked" errors, nothing lost.

Four worker processes (``ledger_worker.py soak``) are started, import everything, and then open the *same fresh* file
at the same moment (they wait for ``go`` on stdin), so the WAL switch and the schema creation race too. In each, one
``SQLiteLedger`` is shared by 4 threads (one connection per thread), each appending batches of 1..100 spans with
ids encoding process, thread and sequence (half of them above 2**63, stored as negative signed integers) and reading
``count()`` every tenth batch, for ``AGENTCOST_LEDGER_SOAK_SECONDS`` (default 60 s under ``CI``, the issue's figure,
10 s otherwise). Every exception is counted by type and message, ``sqlite3.OperationalError: database is locked`` and
``agentcost.StoreUnavailable`` (the store's "stayed locked past the busy timeout") included, and reported with the
number of spans each thread wrote. The test proves:

* zero errors of any kind, in every process and thread;
* the file holds exactly the spans the workers reported written: per thread, the ids ``1..n`` of its sequence and
  nothing else (count, lowest and highest id per thread), no id twice, and ``PRAGMA integrity_check`` is ``ok``.

The second test runs the production path for a few seconds (``AGENTCOST_LEDGER_WRITER_SECONDS``, default 3): in each
of 4 processes, 4 threads run ``agentcost.run(..., sinks=[writer])`` with ``record_llm`` calls (each after a 1 ms
sleep standing for the provider call, :data:`CALL_LATENCY`) through one shared ``LedgerWriter``. Each writer must drop
nothing and write exactly what was recorded, and the ledger's exact spend per process equals the cost each process
computed.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from ledger_worker import LINE_TIMEOUT, WORKER, Lines, child_env, soak_id

from agentcost.ledger import SQLiteLedger

PROCESSES = 4
THREADS = 4
CALL_LATENCY = 0.001
"""Seconds each recorded LLM call sleeps first in the writer test: the provider call an agent waits on. With none,
the 4 producer threads of a process spin on the CPU and starve the writer's thread of the GIL (``executemany``
releases and re-takes it for every row): its queue fills up and it drops spans, as documented for a full queue."""


def soak_seconds() -> float:
    configured = os.environ.get("AGENTCOST_LEDGER_SOAK_SECONDS")
    if configured:
        return float(configured)
    return 60.0 if os.environ.get("CI") else 10.0


def writer_seconds() -> float:
    return float(os.environ.get("AGENTCOST_LEDGER_WRITER_SECONDS", "3"))


def to_signed(span_id: int) -> int:
    return span_id - (1 << 64) if span_id >= 1 << 63 else span_id


@contextlib.contextmanager
def workers(tmp_path: Path, mode: str, args: list[list[str]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start one worker per argument list; on exit, kill whatever still runs and reap every process."""
    with contextlib.ExitStack() as stack:
        procs: list[subprocess.Popen[bytes]] = []
        for n, extra in enumerate(args):
            stderr = stack.enter_context((tmp_path / f"{mode}-{n}.stderr").open("wb"))
            proc = stack.enter_context(
                subprocess.Popen(
                    [sys.executable, str(WORKER), mode, *extra],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=child_env(),
                )
            )
            stack.callback(proc.kill)  # runs before the Popen's own exit, which waits: a no-op once it has ended
            procs.append(proc)
        yield procs


def run_together(tmp_path: Path, mode: str, args: list[list[str]], seconds: float) -> list[dict[str, Any]]:
    """Start the workers, release them at once when all are ready, and return their JSON reports."""
    with workers(tmp_path, mode, args) as procs:
        readers = []
        for proc in procs:
            assert proc.stdout is not None
            readers.append(Lines(proc.stdout))
        for reader in readers:
            assert reader.next() == "ready"
        for proc in procs:  # as close together as the parent can
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
        reports: list[dict[str, Any]] = []
        for n, (proc, reader) in enumerate(zip(procs, readers, strict=True)):
            line = reader.next(seconds + LINE_TIMEOUT)
            code = proc.wait(LINE_TIMEOUT)
            stderr = (tmp_path / f"{mode}-{n}.stderr").read_text()
            assert code == 0, f"worker {n} exited with {code}: {stderr}"
            assert line is not None, f"worker {n} reported nothing: {stderr}"
            reports.append(json.loads(line))
    return reports


def check_integrity(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert connection.execute("SELECT COUNT(*) - COUNT(DISTINCT span_id) FROM spans").fetchone() == (0,)
    assert connection.execute("SELECT span_id FROM spans GROUP BY span_id HAVING COUNT(*) > 1 LIMIT 5").fetchall() == []
    return connection


def test_four_processes_four_threads_append_without_lock_errors(tmp_path: Path) -> None:
    """4 processes x 4 threads append to one file for the soak duration: zero errors, every reported span stored
    exactly once, nothing else stored."""
    seconds = soak_seconds()
    path = tmp_path / "ledger.db"
    seed = int(time.time())
    started = time.monotonic()
    args = [[str(path), str(proc), str(THREADS), str(seconds), str(seed)] for proc in range(1, PROCESSES + 1)]
    reports = run_together(tmp_path, "soak", args, seconds)
    elapsed = time.monotonic() - started

    errors = {report["proc"]: report["errors"] for report in reports if report["errors"]}
    locked = sum(n for report in reports for key, n in report["errors"].items() if "locked" in key)
    unavailable = sum(n for report in reports for key, n in report["errors"].items() if "StoreUnavailable" in key)
    written = sum(sum(report["written"]) for report in reports)
    transactions = sum(sum(report["transactions"]) for report in reports)
    print(
        f"\n{PROCESSES} processes x {THREADS} threads for {seconds:g}s (wall {elapsed:.1f}s, seed {seed}):"
        f" {written} spans in {transactions} transactions, {written / seconds:.0f} spans/s,"
        f" {transactions / seconds:.0f} commits/s; 'database is locked': {locked}, StoreUnavailable: {unavailable},"
        f" errors: {errors or 'none'}"
    )
    for report in reports:
        print(f"  process {report['proc']}: written per thread {report['written']}")
    assert locked == 0
    assert unavailable == 0
    assert errors == {}
    assert all(n > 0 for report in reports for n in report["written"]), "a thread wrote nothing"

    connection = check_integrity(path)
    try:
        [(rows,)] = connection.execute("SELECT COUNT(*) FROM spans")
        groups = {
            (team, agent): (count, low, high)
            for team, agent, count, low, high in connection.execute(
                "SELECT team, agent, COUNT(*), MIN(span_id), MAX(span_id) FROM spans GROUP BY team, agent"
            )
        }
    finally:
        connection.close()
    assert rows == written
    expected = {
        (f"p{report['proc']}", f"t{thread}"): (
            n,
            to_signed(soak_id(report["proc"], thread, 1)),
            to_signed(soak_id(report["proc"], thread, n)),
        )
        for report in reports
        for thread, n in enumerate(report["written"])
    }
    assert groups == expected  # distinct ids, n of them, between the thread's first and n-th id: exactly 1..n
    with SQLiteLedger(path) as ledger:
        assert ledger.count() == written


def test_ledger_writers_in_four_processes_drop_nothing(tmp_path: Path) -> None:
    """4 processes, each with one LedgerWriter fed by 4 threads of real runs: nothing dropped, everything written
    once, and the ledger's exact spend per process is what the process computed."""
    seconds = writer_seconds()
    path = tmp_path / "writer.db"
    started = time.monotonic()
    args = [[str(path), str(proc), str(THREADS), str(seconds), str(CALL_LATENCY)] for proc in range(1, PROCESSES + 1)]
    reports = run_together(tmp_path, "writer", args, seconds)
    elapsed = time.monotonic() - started

    recorded = sum(report["recorded"] for report in reports)
    print(f"\nLedgerWriter: {PROCESSES} processes x {THREADS} threads for {seconds:g}s (wall {elapsed:.1f}s):")
    for report in reports:
        print(f"  process {report['proc']}: recorded {report['recorded']}, stats {report['stats']}")
    print(f"  {recorded} spans, {recorded / elapsed:.0f} spans/s over the wall time")
    for report in reports:
        stats = report["stats"]
        assert report["errors"] == {}
        assert report["closed"] is True
        assert report["recorded"] > 0
        assert stats["dropped"] == 0
        assert stats["failed_batches"] == 0
        assert stats["queued"] == 0
        assert stats["written"] == stats["received"] == report["recorded"]

    connection = check_integrity(path)
    connection.close()
    with SQLiteLedger(path) as ledger:
        assert ledger.count() == recorded
        spend = {row.key: row for row in ledger.spend(("team",))}
        runs = ledger.runs()
    assert set(spend) == {(f"p{report['proc']}",) for report in reports}
    for report in reports:
        row = spend[(f"p{report['proc']}",)]
        assert row.cost == Decimal(report["cost"])
        assert row.unpriced == 0
    assert sum(run.spans for run in runs) == recorded
