"""The ledger: durable spend that finance can trust, on SQLite (default, a local file) or PostgreSQL (shared).

Attach a writer to the runs whose spend should be kept, and query the ledger afterwards::

    from agentcost.ledger import LedgerWriter, open_ledger

    ledger = open_ledger("spend.db")                 # or "postgresql://user@host/db"
    writer = LedgerWriter(ledger)
    agentcost.add_sink(writer)                        # every run from now on (or run(..., sinks=[writer]))
    ...
    writer.flush()
    ledger.spend(("team", "day"))                     # exact Decimal spend per team per day

Files: :func:`write_jsonl` (one span per line) and :func:`write_focus_csv` (a FOCUS-style chargeback CSV).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Final

from agentcost._ledger import (
    GROUP_COLUMNS,
    LEAF_KINDS,
    BudgetEventRecord,
    Ledger,
    LedgerError,
    RunSummary,
    SpanRecord,
    SpendRow,
)
from agentcost._ledger_sqlite import SQLiteLedger
from agentcost._ledger_writer import LedgerWriter, WriterStats
from agentcost._span import format_span_id

if TYPE_CHECKING:
    from agentcost._ledger_pg import PostgresLedger

__all__ = [
    "FOCUS_COLUMNS",
    "GROUP_COLUMNS",
    "BudgetEventRecord",
    "Ledger",
    "LedgerError",
    "LedgerWriter",
    "PostgresLedger",
    "RunSummary",
    "SQLiteLedger",
    "SpanRecord",
    "SpendRow",
    "WriterStats",
    "open_ledger",
    "write_focus_csv",
    "write_jsonl",
]


def open_ledger(url: str | os.PathLike[str], **options: object) -> Ledger:
    """The ledger at ``url``: ``postgresql://...`` (or ``postgres://``) for PostgreSQL, ``sqlite:///path`` or a
    plain path for SQLite. ``options`` go to the engine's constructor (``synchronous="FULL"`` for SQLite)."""
    text = os.fspath(url)
    if text.startswith(("postgresql://", "postgres://")):
        from agentcost._ledger_pg import PostgresLedger

        return PostgresLedger(text, **options)  # type: ignore[arg-type]
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    elif "://" in text:
        raise LedgerError(f"unknown ledger URL {text!r}: use a file path, sqlite:///path or postgresql://...")
    return SQLiteLedger(text, **options)  # type: ignore[arg-type]


def __getattr__(name: str) -> object:
    if name == "PostgresLedger":  # psycopg is imported only when PostgreSQL is used
        from agentcost._ledger_pg import PostgresLedger

        return PostgresLedger
    raise AttributeError(name)


def write_jsonl(records: Iterable[SpanRecord], out: IO[str]) -> int:
    """Write one JSON object per span (:meth:`SpanRecord.to_dict`) to ``out``; return the number written."""
    n = 0
    for record in records:
        out.write(json.dumps(record.to_dict(), ensure_ascii=False, separators=(",", ":")))
        out.write("\n")
        n += 1
    return n


FOCUS_COLUMNS: Final = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeDescription",
    "BilledCost",
    "EffectiveCost",
    "BillingCurrency",
    "ServiceName",
    "ServiceCategory",
    "ProviderName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "Tags",
    "x_CostSource",
    "x_RunId",
    "x_Unpriced",
)
"""The CSV's columns: FOCUS 1.x names where one fits, ``x_`` for agentcost's own."""


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_focus_csv(records: Iterable[SpanRecord], out: IO[str]) -> int:
    """Write a FOCUS-style chargeback CSV (one row per call: LLM, tool, retrieval, embedding, HTTP, custom) to
    ``out``; return the number of rows. The billing period is the UTC calendar month the call started in;
    ``BilledCost`` is the exact decimal self cost; ``Tags`` the call's attribution as JSON (team, feature, user, ...)
    for chargeback. A call that could not be priced has an empty ``BilledCost`` and ``x_Unpriced`` true: unknown,
    not zero. Runs and agents (containers, no cost of their own) are not charges and are left out."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FOCUS_COLUMNS)
    n = 0
    for record in records:
        if record.kind not in LEAF_KINDS:
            continue
        started = datetime.fromtimestamp(record.started_at, UTC)
        ended = datetime.fromtimestamp(record.ended_at if record.ended_at is not None else record.started_at, UTC)
        first = started.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        following = (first + timedelta(days=32)).replace(day=1)
        cost = "" if record.cost is None else str(record.cost)
        model = record.model or record.requested_model
        if record.kind in ("llm", "embedding"):
            quantity, unit = record.input_tokens + record.output_tokens, "Tokens"
        else:
            quantity, unit = record.requests, "Requests"
        writer.writerow(
            (
                _iso(first),
                _iso(following),
                _iso(started),
                _iso(ended),
                "Usage",
                f"{record.kind} {record.name}",
                cost,
                cost,
                "USD",
                record.provider or record.kind,
                "AI and Machine Learning",
                record.provider or "",
                format_span_id(record.span_id),
                model or record.name,
                record.kind,
                quantity,
                unit,
                json.dumps(dict(record.attrs), ensure_ascii=False, sort_keys=True),
                record.cost_source or "",
                format_span_id(record.run_id),
                "true" if record.cost is None else "false",
            )
        )
        n += 1
    return n
