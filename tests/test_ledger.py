"""The ledger on SQLite and on the real PostgreSQL server: records round-trip, writes are idempotent, money is exact,
queries agree between the engines, the background writer never blocks the agent and counts what it drops."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentcost
from agentcost import Budget, StoreUnavailable, Usage, format_span_id
from agentcost.ledger import (
    FOCUS_COLUMNS,
    BudgetEventRecord,
    Ledger,
    LedgerError,
    LedgerWriter,
    SpanRecord,
    SQLiteLedger,
    open_ledger,
    write_focus_csv,
    write_jsonl,
)

DAY = 86_400.0
T0 = 1_790_000_000.0  # 2026-09-21, a fixed clock for synthetic records


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """Each test runs on both engines."""
    if request.param == "sqlite":
        opened = open_ledger(tmp_path / "spend.db")
    else:
        opened = open_ledger(request.getfixturevalue("postgres_url"))
    try:
        yield opened
    finally:
        opened.close()


def record(span_id: int, **fields: object) -> SpanRecord:
    base = SpanRecord(
        span_id=span_id,
        run_id=1,
        parent_id=1,
        kind="llm",
        name="gpt-4o",
        attrs={"team": "search"},
        started_at=T0,
        ended_at=T0 + 1,
        status="ok",
        cost=Decimal("0.001"),
        cost_source="computed",
        model="gpt-4o",
        provider="openai",
        input_tokens=100,
        output_tokens=10,
        requests=1,
        run_name="r",
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def sample_run(writer: LedgerWriter) -> agentcost.CostContext:
    with (
        agentcost.run(
            "answer", attrs={"team": "search", "user": "u-1"}, sinks=[writer], budget=Budget(max_cost=Decimal("0.01"))
        ) as ctx,
        ctx.child("researcher", attrs={"feature": "qa"}) as researcher,
    ):
        researcher.record_llm(
            model="gpt-4o",
            provider="openai",
            usage=Usage(input_tokens=1_000, output_tokens=100, cache_read_tokens=200, units={"web_searches": 2}),
        )
        researcher.record_tool("search", cost="0.005")
        researcher.record_tool("mystery", cost=None)
    return ctx


def test_a_runs_spans_round_trip_through_the_writer(ledger: Ledger) -> None:
    """Every span of a run, with its effective attribution, usage, exact cost and notes, reads back as recorded."""
    writer = LedgerWriter(ledger)
    ctx = sample_run(writer)
    assert writer.close()
    expected = sorted((SpanRecord.from_span(span, ctx.tree) for span in ctx.tree), key=lambda r: r.span_id)
    stored = sorted(ledger.spans(run_id=ctx.span.id), key=lambda r: r.span_id)
    assert stored == expected
    [llm] = [r for r in stored if r.kind == "llm"]
    assert dict(llm.attrs) == {"team": "search", "user": "u-1", "feature": "qa"}  # inherited keys included
    assert (llm.cache_read_tokens, dict(llm.units)) == (200, {"web_searches": "2"})
    assert writer.stats().written == len(expected) + len(ctx.tree.events)
    assert [event.kind for event in ledger.budget_events(run_id=ctx.span.id)] == [e.kind for e in ctx.tree.events]


def test_the_rebuilt_tree_matches_the_run(ledger: Ledger) -> None:
    writer = LedgerWriter(ledger)
    ctx = sample_run(writer)
    writer.close()
    rebuilt = ledger.tree(ctx.span.id)
    assert rebuilt.render() == ctx.tree.render()
    assert (rebuilt.total_cost, rebuilt.unpriced) == (ctx.tree.total_cost, ctx.tree.unpriced)
    with pytest.raises(LedgerError, match="no spans recorded"):
        ledger.tree(12345)


def test_writes_are_idempotent_on_span_id_and_the_first_write_wins(ledger: Ledger) -> None:
    batch = [record(i, cost=Decimal(i)) for i in range(2, 50)]
    ledger.write(batch)
    ledger.write(batch)
    ledger.write([record(7, cost=Decimal("999"))])
    assert ledger.count() == len(batch)
    [seven] = [r for r in ledger.spans() if r.span_id == 7]
    assert seven.cost == Decimal(7)


def test_spend_is_exact_and_counts_unpriced_and_calls(ledger: Ledger) -> None:
    ledger.write(
        [
            record(2, cost=Decimal("0.1")),
            record(3, cost=Decimal("0.2")),
            record(4, cost=None, cost_source=None),
            record(5, cost=Decimal("0.000000000000001")),  # 10^-15: finer than SQLite's integer sub-units
            record(6, cost=Decimal("1"), attrs={"team": "ads"}, started_at=T0 + DAY),
            record(7, kind="agent", name="a", cost=Decimal(0), attrs={"team": "ads"}, started_at=T0 + DAY),
        ]
    )
    rows = {row.key: row for row in ledger.spend(("team", "day"))}
    search = rows[("search", "2026-09-21")]
    assert search.cost == Decimal("0.300000000000001")
    assert (search.unpriced, search.calls, search.input_tokens) == (1, 4, 400)
    ads = rows[("ads", "2026-09-22")]
    assert (ads.cost, ads.calls, ads.unpriced) == (Decimal("1"), 1, 0)
    assert [row.key for row in ledger.spend(("team",), since=T0 + DAY / 2)] == [("ads",)]
    assert [row.cost for row in ledger.spend(("month",), where={"team": "search"})] == [Decimal("0.300000000000001")]


def test_bad_queries_get_clear_errors(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="cannot group spend by"):
        ledger.spend(("team; DROP TABLE spans",))
    with pytest.raises(LedgerError, match="non-empty sequence"):
        ledger.spend("team")
    with pytest.raises(LedgerError, match="cannot filter on"):
        ledger.spend(("team",), where={"nope": "x"})
    with pytest.raises(LedgerError, match="filter values are strings"):
        ledger.spend(("team",), where={"team": 3})  # type: ignore[dict-item]
    with pytest.raises(LedgerError, match="seconds since the epoch"):
        ledger.spend(("team",), since=float("nan"))


def test_runs_are_summarised_most_expensive_first(ledger: Ledger) -> None:
    writer = LedgerWriter(ledger)
    cheap = sample_run(writer)
    with agentcost.run("big", attrs={"team": "ads"}, sinks=[writer]) as big:
        big.record_tool("crawl", cost="3.5")
    writer.close()
    runs = ledger.runs()
    assert [run.run_id for run in runs] == [big.span.id, cheap.span.id]
    assert (runs[0].cost, runs[1].cost, runs[1].unpriced) == (Decimal("3.5"), cheap.tree.total_cost, 1)
    assert [run.name for run in ledger.runs(where={"team": "search"})] == ["answer"]
    assert ledger.spend(("run",))[0].key[0] in {format_span_id(big.span.id), format_span_id(cheap.span.id)}


@st.composite
def workloads(draw: st.DrawFn) -> list[SpanRecord]:
    n = draw(st.integers(1, 40))
    out = []
    for i in range(n):
        places = draw(st.integers(0, 16))
        cost = draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=1000, places=places)))
        out.append(
            record(
                i + 2,
                cost=cost,
                kind=draw(st.sampled_from(["llm", "tool", "agent"])),
                attrs={"team": draw(st.sampled_from(["a", "b", "c"])), "feature": draw(st.sampled_from(["x", "y"]))},
                started_at=T0 + draw(st.integers(0, 5)) * DAY,
            )
        )
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workload=workloads())
def test_sqlite_and_postgres_give_identical_results_equal_to_exact_sums(
    workload: list[SpanRecord], tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> None:
    """The same workload written to both engines gives identical query results, and they are the exact sums."""
    sqlite_ledger = open_ledger(tmp_path_factory.mktemp("l") / "spend.db")
    pg = open_ledger(postgres_url)
    try:
        assert isinstance(pg, Ledger)
        pg._connection.execute("TRUNCATE spans, budget_events")  # type: ignore[attr-defined]
        pg._connection.commit()  # type: ignore[attr-defined]
        for engine in (sqlite_ledger, pg):
            engine.write(workload[: len(workload) // 2])
            engine.write(workload[len(workload) // 2 :])
        for by in (("team", "day"), ("feature",), ("kind", "team"), ("month",)):
            assert sqlite_ledger.spend(by) == pg.spend(by)
        expected: dict[str, Decimal] = {}
        for item in workload:
            if item.cost is not None:
                expected[item.attrs["team"]] = expected.get(item.attrs["team"], Decimal(0)) + item.cost
        got = {row.key[0]: row.cost for row in sqlite_ledger.spend(("team",))}
        assert {k: v for k, v in got.items() if k in expected} == expected
        assert sorted(sqlite_ledger.spans(), key=lambda r: r.span_id) == sorted(pg.spans(), key=lambda r: r.span_id)
    finally:
        sqlite_ledger.close()
        pg.close()


def test_sqlite_sums_beyond_its_integer_range_are_still_exact(tmp_path: Path) -> None:
    """Two $9 million spans overflow SQLite's 64-bit sum of 10^-12 units: the ledger sums the exact text instead."""
    ledger = SQLiteLedger(tmp_path / "big.db")
    ledger.write([record(2, cost=Decimal("9000000.000000000001")), record(3, cost=Decimal("9000000"))])
    [row] = ledger.spend(("team",))
    assert row.cost == Decimal("18000000.000000000001")
    ledger.close()


def test_schema_versions(tmp_path: Path) -> None:
    """A file from a newer agentcost is refused; an existing file is reopened without migrating twice."""
    path = tmp_path / "spend.db"
    SQLiteLedger(path).close()
    again = SQLiteLedger(path)
    again.write([record(2)])
    again.close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE agentcost_meta SET value = '99' WHERE key = 'ledger_schema_version'")
    raw.close()
    with pytest.raises(LedgerError, match="schema version 99, newer"):
        SQLiteLedger(path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="in-memory"):
        SQLiteLedger(":memory:")
    with pytest.raises(LedgerError, match="synchronous"):
        SQLiteLedger(tmp_path / "x.db", synchronous="sometimes")
    with pytest.raises(LedgerError, match="unknown ledger URL"):
        open_ledger("mysql://x")
    ledger = SQLiteLedger(tmp_path / "y.db")
    with pytest.raises(LedgerError, match="positive int"):
        LedgerWriter(ledger, max_queue=0)
    with pytest.raises(LedgerError, match="needs a Ledger"):
        LedgerWriter("y.db")  # type: ignore[arg-type]
    ledger.close()


def test_a_postgres_server_that_is_down_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        open_ledger("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)


class Stalled(Ledger):
    """A ledger whose writes block until released, or fail: for the writer's never-block and drop accounting."""

    url = "stalled://"

    def __init__(self, *, fail: bool = False) -> None:
        self.release = threading.Event()
        self.fail = fail
        self.written: list[SpanRecord] = []

    def write(self, spans: Iterable[SpanRecord], events: Iterable[BudgetEventRecord] = ()) -> None:
        self.release.wait(10)
        if self.fail:
            raise StoreUnavailable("the ledger is down")
        self.written.extend(spans)

    def _query(self, sql: str, params: object) -> list[object]:
        raise NotImplementedError

    def _cost(self, value: object) -> Decimal | None:
        raise NotImplementedError

    def spend(self, by: object, **_: object) -> list[object]:  # type: ignore[override]
        raise NotImplementedError

    def runs(self, **_: object) -> list[object]:  # type: ignore[override]
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_the_writer_never_blocks_the_agent_and_counts_what_it_drops() -> None:
    """With the ledger stuck, recording stays fast; a full queue drops and counts; nothing is silently lost."""
    stalled = Stalled()
    writer = LedgerWriter(stalled, max_queue=100, batch_size=10, flush_interval=0.01)
    with agentcost.run("r", sinks=[writer]) as ctx:
        started = time.perf_counter()
        for _ in range(500):
            ctx.record_tool("t", cost="0.001")
        elapsed = time.perf_counter() - started
    assert elapsed < 1.0  # 500 calls while the ledger is stuck: nothing waited for it
    stats = writer.stats()
    assert stats.dropped >= 500 - 100 - 10  # the queue's bound, and one batch in flight
    stalled.release.set()
    assert writer.close()
    final = writer.stats()
    assert final.received == 501  # 500 tools and the run's root
    assert final.written + final.dropped == final.received
    assert len(stalled.written) == final.written


def test_a_batch_that_cannot_be_written_is_retried_then_dropped_and_counted() -> None:
    down = Stalled(fail=True)
    down.release.set()
    writer = LedgerWriter(down, attempts=2, flush_interval=0.01)
    with agentcost.run("r", sinks=[writer]) as ctx:
        ctx.record_tool("t", cost="0.001")
    writer.close()
    stats = writer.stats()
    assert (stats.written, stats.dropped, stats.failed_batches) == (0, 2, 1)


def test_default_sinks_reach_runs_opened_anywhere(tmp_path: Path) -> None:
    """add_sink attaches the writer to every new run (adapters' and served runs' included) until removed."""
    ledger = SQLiteLedger(tmp_path / "spend.db")
    writer = LedgerWriter(ledger)
    agentcost.add_sink(writer)
    try:
        with agentcost.run("one") as one:
            one.record_tool("t", cost="0.5")
    finally:
        agentcost.remove_sink(writer)
    with agentcost.run("two") as two:
        two.record_tool("t", cost="0.5")
    writer.close()
    assert {r.run_id for r in ledger.spans()} == {one.span.id}
    assert two.tree.sinks == ()
    with pytest.raises(TypeError, match="on_span"):
        agentcost.add_sink(object())  # type: ignore[arg-type]
    ledger.close()


def test_a_sink_that_raises_never_breaks_the_run() -> None:
    class Broken:
        def on_span(self, span: object, tree: object) -> None:
            raise RuntimeError("boom")

        def on_event(self, event: object, tree: object) -> None:
            raise RuntimeError("boom")

    before = agentcost._sink.sink_errors.get("Broken", 0)
    with agentcost.run("r", sinks=[Broken()], budget=Budget(max_cost=Decimal("0.001"))) as ctx:
        ctx.record_tool("t", cost="0.01")
    assert ctx.tree.total_cost == Decimal("0.01")
    assert agentcost._sink.sink_errors["Broken"] > before


def test_jsonl_and_focus_csv(ledger: Ledger) -> None:
    writer = LedgerWriter(ledger)
    ctx = sample_run(writer)
    writer.close()
    records = ledger.spans(run_id=ctx.span.id)
    out = io.StringIO()
    assert write_jsonl(records, out) == len(records)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sum(Decimal(line["cost"]) for line in lines if line["cost"] is not None) == ctx.tree.total_cost
    assert {line["span_id"] for line in lines} == {format_span_id(span.id) for span in ctx.tree}
    table = io.StringIO()
    rows = write_focus_csv(records, table)
    parsed = list(csv.DictReader(io.StringIO(table.getvalue())))
    assert rows == len(parsed) == 3  # the three calls; the run and the agent are not charges
    assert tuple(parsed[0]) == FOCUS_COLUMNS
    billed = [Decimal(row["BilledCost"]) for row in parsed if row["BilledCost"]]
    assert sum(billed) == ctx.tree.total_cost
    [unpriced] = [row for row in parsed if row["x_Unpriced"] == "true"]
    assert (unpriced["BilledCost"], unpriced["ResourceName"]) == ("", "mystery")
    assert {row["BillingPeriodStart"][:8] for row in parsed} == {time.strftime("%Y-%m-", time.gmtime())}
    assert json.loads(parsed[0]["Tags"])["team"] == "search"
