"""Worker processes for the ledger's crash and multi-process tests (run as a script), and the helpers the tests share
with them (the deterministic records, reading a worker's output with a deadline).

Modes (``python ledger_worker.py MODE ...``):

``append PATH FIRST LAST BATCH``
    Open ``SQLiteLedger(PATH, synchronous="FULL")`` and write the deterministic spans ``FIRST..LAST`` in batches of
    ``BATCH``. Prints ``start`` once imports are done (before the ledger is opened), ``open`` once it is, then
    ``ack LAST_ID_OF_BATCH`` after each :meth:`write` has *returned*: that line is the acknowledgement that the batch
    is committed. Prints ``done`` at the end. Every line is flushed at once, so a line the parent has read was
    written after the acknowledged write returned, even when the worker is SIGKILLed right after.

``soak PATH PROC THREADS SECONDS SEED``
    Prints ``ready``, waits for ``go`` on stdin (so that every process opens the same fresh file at the same
    moment), opens one ``SQLiteLedger(PATH)`` shared by ``THREADS`` threads, each appending batches of 1..100 spans
    with distinct ids (:func:`soak_id`) for ``SECONDS``, with a ``count()`` read every tenth batch. Prints one JSON
    line: per-thread number of spans written (ids ``1..n`` of the thread's sequence), errors by type and message.

``writer PATH PROC THREADS SECONDS LATENCY``
    Same start protocol; ``THREADS`` threads run ``agentcost.run(...)`` with ``ctx.record_llm(...)`` calls (each
    after ``LATENCY`` seconds of sleep: the provider call) through one shared ``LedgerWriter`` for ``SECONDS``, then
    close the writer. Prints one JSON line: spans recorded, the exact
    total cost recorded, the writer's stats, and errors.
"""

from __future__ import annotations

import json
import os
import random
import select
import sys
import threading
import time
import traceback
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import agentcost
from agentcost.ledger import SpanRecord, SQLiteLedger

WORKER = Path(__file__).with_name("ledger_worker.py")
LINE_TIMEOUT = 60.0
BASE_TIME = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TEAMS = ("search", "billing", "support", "infra")


class Lines:
    """Lines of a child's stdout, read with a deadline (a hung worker fails the test instead of hanging it)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""
        self.eof = False

    def next(self, timeout: float = LINE_TIMEOUT) -> str | None:
        """The next complete line, or ``None`` at end of file."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self.eof:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line from the worker in {timeout}s")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 65536)
                if chunk:
                    self._buffer += chunk
                else:
                    self.eof = True
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


def child_env() -> dict[str, str]:
    """The parent's environment, with this agentcost first on the child's path."""
    env = dict(os.environ)
    root = str(Path(agentcost.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def crash_record(span_id: int) -> SpanRecord:
    """The deterministic span ``span_id`` of the crash test (the parent rebuilds the same record to compare)."""
    run_id = ((span_id - 1) // 100) * 100 + 1
    return SpanRecord(
        span_id=span_id,
        run_id=run_id,
        parent_id=None if span_id == run_id else run_id,
        kind="run" if span_id == run_id else "llm",
        name="crash-run" if span_id == run_id else "gpt-4o",
        attrs={"team": TEAMS[span_id % len(TEAMS)], "user": f"u{span_id % 97}"},
        started_at=BASE_TIME + span_id,
        ended_at=BASE_TIME + span_id + 0.5,
        status="ok",
        cost=Decimal(span_id) / Decimal(1_000_000),
        cost_source="computed",
        model="gpt-4o",
        provider="openai",
        input_tokens=10 + span_id % 1000,
        output_tokens=5,
        requests=1,
        run_name="crash-run",
    )


def soak_id(proc: int, thread: int, seq: int) -> int:
    """A distinct nonzero 64-bit id for (process, thread, sequence); even processes set the top bit, so ids stored
    as negative signed integers are exercised too."""
    top = (1 << 63) if proc % 2 == 0 else 0
    return top | (proc << 48) | (thread << 40) | seq


def soak_record(proc: int, thread: int, seq: int) -> SpanRecord:
    span_id = soak_id(proc, thread, seq)
    return SpanRecord(
        span_id=span_id,
        run_id=soak_id(proc, thread, 1),
        parent_id=None,
        kind="llm",
        name="gpt-4o",
        attrs={"team": f"p{proc}", "agent": f"t{thread}"},
        started_at=time.time(),
        ended_at=time.time(),
        status="ok",
        cost=Decimal("0.000001"),
        cost_source="computed",
        model="gpt-4o",
        provider="openai",
        input_tokens=10,
        output_tokens=5,
        requests=1,
        run_name="soak",
    )


def error_key(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}: {error}"


def append(path: str, first: int, last: int, batch: int) -> None:
    out("start")
    ledger = SQLiteLedger(path, synchronous="FULL")
    out("open")
    try:
        for low in range(first, last + 1, batch):
            high = min(low + batch - 1, last)
            ledger.write([crash_record(span_id) for span_id in range(low, high + 1)])
            out(f"ack {high}")
    finally:
        ledger.close()
    out("done")


def wait_for_go() -> None:
    out("ready")
    line = sys.stdin.readline()
    if line.strip() != "go":
        raise SystemExit(f"expected 'go' on stdin, got {line!r}")


def soak(path: str, proc: int, threads: int, seconds: float, seed: int) -> None:
    wait_for_go()
    errors: Counter[str] = Counter()
    written = [0] * threads
    transactions = [0] * threads
    lock = threading.Lock()
    ledger: SQLiteLedger | None = None
    try:
        ledger = SQLiteLedger(path)
    except Exception as error:
        errors[error_key(error)] += 1
    if ledger is not None:
        opened = ledger
        deadline = time.monotonic() + seconds

        def work(thread: int) -> None:
            rng = random.Random(f"{seed}-{proc}-{thread}")
            seq = 0
            batches = 0
            while time.monotonic() < deadline:
                size = rng.randint(1, 100)
                records = [soak_record(proc, thread, seq + i) for i in range(1, size + 1)]
                try:
                    opened.write(records)
                except Exception as error:
                    with lock:
                        errors[error_key(error)] += 1
                    return  # the batch's fate is unknown: stop, so that what was reported stays exact
                seq += size
                written[thread] = seq
                transactions[thread] += 1
                batches += 1
                if batches % 10 == 0:
                    try:
                        opened.count()
                    except Exception as error:
                        with lock:
                            errors[error_key(error)] += 1

        workers = [threading.Thread(target=work, args=(thread,)) for thread in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        opened.close()
    out(json.dumps({"proc": proc, "written": written, "transactions": transactions, "errors": dict(errors)}))


def writer_mode(path: str, proc: int, threads: int, seconds: float, latency: float) -> None:
    from agentcost.ledger import LedgerWriter

    wait_for_go()
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    recorded = [0] * threads
    costs = [Decimal(0)] * threads
    ledger = SQLiteLedger(path)
    writer = LedgerWriter(ledger, batch_size=500, flush_interval=0.05)
    deadline = time.monotonic() + seconds

    def work(thread: int) -> None:
        rng = random.Random(f"writer-{proc}-{thread}")
        while time.monotonic() < deadline:
            try:
                with agentcost.run("soak-run", sinks=[writer], attrs={"team": f"p{proc}"}) as ctx:
                    calls = rng.randint(1, 20)
                    for _ in range(calls):
                        time.sleep(latency)  # the call itself: an agent waits on the provider
                        ctx.record_llm(
                            model="gpt-4o",
                            provider="openai",
                            usage=agentcost.Usage(input_tokens=rng.randint(1, 5000), output_tokens=rng.randint(1, 500)),
                        )
                recorded[thread] += calls + 1  # the LLM calls and the run's root span
                total = ctx.span.total_cost
                if total is None:
                    raise AssertionError("gpt-4o could not be priced")
                costs[thread] += total
            except Exception as error:
                with lock:
                    errors[error_key(error)] += 1
                return

    workers = [threading.Thread(target=work, args=(thread,)) for thread in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    closed = writer.close(timeout=60.0)
    stats = writer.stats()
    ledger.close()
    result: dict[str, Any] = {
        "proc": proc,
        "recorded": sum(recorded),
        "cost": str(sum(costs, Decimal(0))),
        "closed": closed,
        "stats": {
            "received": stats.received,
            "written": stats.written,
            "dropped": stats.dropped,
            "queued": stats.queued,
            "failed_batches": stats.failed_batches,
        },
        "errors": dict(errors),
    }
    out(json.dumps(result))


def main(argv: list[str]) -> None:
    mode, path, *rest = argv
    if mode == "append":
        first, last, batch = (int(value) for value in rest)
        append(path, first, last, batch)
    elif mode == "soak":
        proc, threads = int(rest[0]), int(rest[1])
        soak(path, proc, threads, float(rest[2]), int(rest[3]))
    elif mode == "writer":
        writer_mode(path, int(rest[0]), int(rest[1]), float(rest[2]), float(rest[3]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except BaseException:
        traceback.print_exc()
        raise
