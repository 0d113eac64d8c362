"""Crash safety of the SQLite ledger: SIGKILL at random points during 100,000 appends, repeated many times.

A worker process (``ledger_worker.py append``) opens ``SQLiteLedger(path, synchronous="FULL")`` and writes the
deterministic spans 1..100,000 in batches of 500; after each ``write`` *returns* it prints the batch's last id, and
that line is the acknowledgement. The parent SIGKILLs it at a random point (after a random number of
acknowledgements plus a random fraction of a batch, so kills land inside transactions, between them, and during the
idempotent re-append of spans already stored), then checks an exact copy of the file as the kill left it (database
and WAL, copied before anything reopens them) with ``sqlite3`` directly:

* ``PRAGMA integrity_check`` is ``ok``;
* every span whose write was acknowledged, in this or any earlier run, is present;
* no span id is stored twice (``GROUP BY span_id HAVING COUNT(*) > 1`` is empty, ``COUNT(DISTINCT)`` = ``COUNT``);
* batches are atomic: the stored ids are exactly ``1..N`` with ``N`` a batch boundary (no half-written batch).

The next worker then reopens the crashed original (the ledger itself recovers the hot WAL) and appends again from
id 1: writes are idempotent on span id, so re-appending must not duplicate. The last run is not killed: all 100,000
spans are then stored exactly once, and read back through ``SQLiteLedger.spans()`` equal to what was written.

Kills during the first open (WAL switch and schema creation in one ``BEGIN IMMEDIATE`` transaction) are tested on
fresh files: the ledger must reopen the file, finish the schema and work.

The random choices come from one seed, printed; set ``AGENTCOST_LEDGER_CRASH_SEED`` to replay a failure and
``AGENTCOST_LEDGER_KILLS`` to change the number of kills (default 12).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ledger_worker import LINE_TIMEOUT, WORKER, Lines, child_env, crash_record

from agentcost.ledger import SQLiteLedger

TOTAL = 100_000
BATCH = 500
BATCHES = TOTAL // BATCH
KILLS = int(os.environ.get("AGENTCOST_LEDGER_KILLS", "12"))


@pytest.fixture
def seed() -> int:
    """The seed of the test's random choices: ``AGENTCOST_LEDGER_CRASH_SEED``, else a fresh one (printed)."""
    configured = os.environ.get("AGENTCOST_LEDGER_CRASH_SEED")
    value = int(configured) if configured else random.SystemRandom().randrange(2**32)
    print(f"\nseed: AGENTCOST_LEDGER_CRASH_SEED={value}")
    return value


@dataclass
class Outcome:
    """What one worker run printed before it ended."""

    lines: list[str] = field(default_factory=list)
    returncode: int = 0
    stderr: str = ""

    @property
    def acked(self) -> int:
        """The highest acknowledged span id (0: none)."""
        return max((int(line.split()[1]) for line in self.lines if line.startswith("ack ")), default=0)

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL


def run_worker(path: Path, *, kill_after: str | None, acks: int = 0, delay: float = 0.0) -> Outcome:
    """Run one ``append`` worker over spans 1..TOTAL. ``kill_after`` is ``None`` (let it finish), ``"start"``
    (SIGKILL ``delay`` seconds after its imports are done: during the ledger's open) or ``"ack"`` (SIGKILL ``delay``
    seconds after the ``acks``-th acknowledgement, 0 meaning after the open)."""
    outcome = Outcome()
    stderr_path = path.with_name(path.name + ".stderr")
    command = [sys.executable, str(WORKER), "append", str(path), "1", str(TOTAL), str(BATCH)]
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=child_env()) as proc,
    ):
        assert proc.stdout is not None
        lines = Lines(proc.stdout)
        try:
            trigger = "start" if kill_after == "start" else ("open" if acks == 0 else f"ack {acks * BATCH}")
            while kill_after is not None:
                line = lines.next()
                if line is None:
                    break  # finished (or died) before the kill point: the checks below still apply
                outcome.lines.append(line)
                if line == trigger:
                    if delay:
                        spin_until = time.perf_counter() + delay
                        while time.perf_counter() < spin_until:
                            pass
                    proc.send_signal(signal.SIGKILL)
                    break
            while (line := lines.next()) is not None:  # every line printed before the kill is acknowledged
                outcome.lines.append(line)
        except BaseException:
            proc.kill()
            raise
        finally:
            outcome.returncode = proc.wait(LINE_TIMEOUT)
    outcome.stderr = stderr_path.read_text()
    if not outcome.killed:
        assert outcome.returncode == 0, f"worker failed ({outcome.returncode}): {outcome.stderr}"
        assert outcome.lines[-1:] == ["done"], outcome.lines[-3:]
    return outcome


def snapshot(path: Path, into: Path) -> Path:
    """An exact copy of the database and its WAL as a kill left them (the shared-memory index is rebuilt)."""
    into.mkdir(exist_ok=True)
    copy = into / path.name
    for suffix in ("", "-wal"):
        source = Path(f"{path}{suffix}")
        target = Path(f"{copy}{suffix}")
        target.unlink(missing_ok=True)
        if source.exists():
            shutil.copyfile(source, target)
    Path(f"{copy}-shm").unlink(missing_ok=True)
    return copy


@dataclass(frozen=True)
class Plan:
    """When to kill a worker: see :func:`run_worker`."""

    kill_after: str | None
    acks: int = 0
    delay: float = 0.0


@dataclass(frozen=True)
class FileState:
    schema: bool
    rows: int
    distinct: int
    low: int
    high: int


def check_file(path: Path, acked: int, *, batch: int = BATCH) -> FileState:
    """Open ``path`` with ``sqlite3`` and check integrity, that spans ``1..acked`` are there, no id twice, and that
    the stored ids are ``1..N`` with ``N`` a multiple of ``batch`` (or ``TOTAL``)."""
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "spans" not in tables:
            assert acked == 0, f"{acked} spans acknowledged but no spans table"
            return FileState(False, 0, 0, 0, 0)
        duplicates = connection.execute(
            "SELECT span_id, COUNT(*) FROM spans GROUP BY span_id HAVING COUNT(*) > 1 LIMIT 10"
        ).fetchall()
        assert duplicates == []
        rows, distinct, low, high = connection.execute(
            "SELECT COUNT(*), COUNT(DISTINCT span_id), COALESCE(MIN(span_id), 0), COALESCE(MAX(span_id), 0) FROM spans"
        ).fetchone()
        [(acked_present,)] = connection.execute("SELECT COUNT(*) FROM spans WHERE span_id BETWEEN 1 AND ?", (acked,))
        [(mode,)] = connection.execute("PRAGMA journal_mode")
    finally:
        connection.close()
    assert rows == distinct
    assert acked_present == acked, f"{acked - acked_present} acknowledged spans missing (acked up to {acked})"
    assert high >= acked
    if rows:
        assert (low, rows) == (1, high), f"stored ids are not 1..{high}: {rows} rows from {low}"
        assert high % batch == 0 or high == TOTAL, f"a partial batch is stored: ids 1..{high}"
    assert str(mode).lower() == "wal"
    return FileState(True, rows, distinct, low, high)


def test_sigkill_during_100000_appends_loses_and_duplicates_nothing(tmp_path: Path, seed: int) -> None:
    """SIGKILL the appender ``KILLS`` times at random points (the first during the first open), checking the file
    after each kill; then append to completion: 100,000 spans, each exactly once."""
    rng = random.Random(seed)
    path = tmp_path / "ledger.db"
    acked = 0  # every span id up to this one was acknowledged by some run
    report: list[str] = []
    started = time.monotonic()
    # Kill points (acknowledgements seen before the kill), uniform over the run and mostly increasing, so that most
    # kills land beyond what is stored (inside inserting transactions) while the total time stays that of about
    # KILLS / 2 full runs; two are swapped out of order, so that some kills land in the idempotent re-append.
    points = sorted(rng.randrange(0, BATCHES - 1) for _ in range(KILLS - 1))
    for _ in range(2):
        i, j = rng.randrange(len(points)), rng.randrange(len(points))
        points[i], points[j] = points[j], points[i]
    plans = [Plan("start", delay=rng.uniform(0.0, 0.01))]  # the first kill: during the first open
    plans += [Plan("ack", acks=point, delay=rng.uniform(0.0, 0.015)) for point in points]  # 0 to ~1 batch's time
    plans.append(Plan(None))  # the last run completes
    for repetition, plan in enumerate(plans):
        run_started = time.monotonic()
        outcome = run_worker(path, kill_after=plan.kill_after, acks=plan.acks, delay=plan.delay)
        acked = max(acked, outcome.acked)
        state = check_file(snapshot(path, tmp_path / "snapshot"), acked)
        report.append(
            f"run {repetition:2d}: {plan} -> {'SIGKILL' if outcome.killed else 'finished'} after"
            f" {len(outcome.lines)} lines in {time.monotonic() - run_started:.2f}s; acked <= {acked},"
            f" stored 1..{state.high} ({state.rows} rows, schema={state.schema})"
        )
        if plan.kill_after is None:
            assert outcome.returncode == 0
        else:
            assert outcome.killed, f"run {repetition} finished before its kill: {report[-1]}"
    elapsed = time.monotonic() - started
    print("\n".join(report))
    print(f"{len(plans) - 1} kills + 1 complete run in {elapsed:.1f}s")

    final = check_file(path, TOTAL)
    assert (final.rows, final.high) == (TOTAL, TOTAL)
    with SQLiteLedger(path, synchronous="FULL") as ledger:
        assert ledger.count() == TOTAL
        records = ledger.spans()
    assert len(records) == TOTAL
    mismatched = [record.span_id for record in records if record != crash_record(record.span_id)]
    assert mismatched == []
    assert [record.span_id for record in records] == list(range(1, TOTAL + 1))


def test_sigkill_during_first_open_then_reopen(tmp_path: Path, seed: int) -> None:
    """SIGKILL while the ledger creates a fresh file (WAL switch, schema transaction): the file is intact, and the
    next open finishes the schema and can write and read."""
    rng = random.Random(seed)
    states: list[str] = []
    killed_before_open = 0
    for attempt in range(8):
        path = tmp_path / f"fresh-{attempt}.db"
        # from "immediately after the imports" to a few times the open's own duration (about 3 ms here)
        delay = 0.0 if attempt == 0 else rng.uniform(0.0, 0.012)
        outcome = run_worker(path, kill_after="start", delay=delay)
        assert outcome.killed
        opened = "open" in outcome.lines
        killed_before_open += not opened
        size = path.stat().st_size if path.exists() else None
        state = check_file(snapshot(path, tmp_path / "snapshot"), outcome.acked) if path.exists() else None
        states.append(
            f"delay {delay * 1000:.2f}ms: killed {'after' if opened else 'during'} the open;"
            f" file size {size}, schema={None if state is None else state.schema}, acked {outcome.acked}"
        )
        expected = max(20, 0 if state is None else state.high)
        with SQLiteLedger(path, synchronous="FULL") as ledger:
            ledger.write([crash_record(span_id) for span_id in range(1, 11)])
            ledger.write([crash_record(span_id) for span_id in range(1, 21)])  # idempotent over the first ten
            assert ledger.count() == expected
        check_file(path, expected, batch=1)
    print("\n" + "\n".join(states))
    assert killed_before_open >= 1, "no kill landed inside the ledger's open"
