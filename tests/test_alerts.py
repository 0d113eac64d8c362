"""agentcost.alerts: live rules on real runs, delivery to a real HTTP server on loopback, and ledger rules on a
synthetic ledger; every breach fires exactly once."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentcost
from agentcost import Budget, Usage
from agentcost.alerts import (
    Alert,
    AlertMonitor,
    BudgetUsed,
    BudgetUsedOnLedger,
    CallbackSink,
    DailySpendTrend,
    LedgerAlerts,
    LedgerRule,
    LiveRule,
    LogSink,
    SpendOver,
    WebhookSink,
    default_ledger_rules,
    evaluate,
)
from agentcost.ledger import Ledger, SpanRecord, SQLiteLedger

# -- helpers -----------------------------------------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (headers and JSON body) and answers with the next status
    of ``statuses`` (200 once they run out)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses = deque(statuses)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.bodies.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/alerts"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def turn(monitor: AlertMonitor, conversation: str, *costs: str, **attrs: str) -> agentcost.CostTree:
    """One run of ``conversation`` recording a tool call per cost."""
    with agentcost.run("turn", attrs={"conversation": conversation, **attrs}, sinks=[monitor]) as ctx:
        for cost in costs:
            ctx.record_tool("t", cost=cost)
    return ctx.tree


def epoch(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


# -- live rules: SpendOver ---------------------------------------------------------------------------------------------


def test_one_alert_per_conversation_that_passes_the_amount() -> None:
    """$4.50 then +$1 fires once; +$1 more fires nothing; another conversation crossing fires its own alert."""
    got: list[Alert] = []
    with AlertMonitor([SpendOver("conversation", "5")], [CallbackSink(got.append)]) as monitor:
        with agentcost.run("turn", attrs={"conversation": "c-42"}, sinks=[monitor]) as ctx:
            llm = ctx.record_llm(
                model="gpt-4o", provider="openai", usage=Usage(input_tokens=100_000, output_tokens=20_000)
            )
            ctx.record_tool("t", cost="1.50")
        assert llm.cost == Decimal("0.45")  # $2.50/M input, $10/M output
        turn(monitor, "c-42", "1.50", "1.05")  # $4.50 in all
        assert monitor.flush()
        assert got == []

        turn(monitor, "c-42", "1")  # $5.50: passes $5
        assert monitor.flush()
        assert len(got) == 1
        alert = got[0]
        assert alert.rule == "spend-over"
        assert alert.subject == "conversation=c-42"
        assert alert.key == "spend-over:conversation=c-42"
        assert alert.observed == Decimal("5.50")
        assert alert.threshold == Decimal(5)
        assert alert.severity == "warning"
        assert alert.message == "conversation=c-42 has spent $5.5, reaching the $5 alert threshold"

        turn(monitor, "c-42", "1")  # $6.50: still the same breach
        turn(monitor, "c-7", "2")
        assert monitor.flush()
        assert len(got) == 1

        turn(monitor, "c-7", "3.25")  # c-7 passes $5 on its own
        assert monitor.flush()
        assert [a.subject for a in got] == ["conversation=c-42", "conversation=c-7"]
        assert got[1].observed == Decimal("5.25")
        stats = monitor.stats()
    assert (stats.fired, stats.delivered, stats.dropped, stats.rule_errors, stats.sink_errors) == (2, 2, 0, 0, 0)


def test_reaching_the_amount_exactly_fires() -> None:
    got: list[Alert] = []
    with AlertMonitor([SpendOver("conversation", "5")], [got.append]) as monitor:
        turn(monitor, "c-1", "2.5", "2.5")
        monitor.flush()
    assert [a.observed for a in got] == [Decimal("5.0")]


def test_spend_over_any_attribution_key_counts_inherited_attribution() -> None:
    """A user's spend across runs and conversations, attributed on the run or on a child."""
    got: list[Alert] = []
    with AlertMonitor([SpendOver("user", "3"), SpendOver("team", "100", name="team-spend")], [got.append]) as monitor:
        turn(monitor, "c-1", "1", user="u-1", team="search")
        with agentcost.run("other", attrs={"team": "search"}, sinks=[monitor]) as ctx:
            with ctx.child("agent", attrs={"user": "u-1"}) as child:
                child.record_tool("t", cost="2")  # u-1 reaches $3 through an attribute set on a child
            ctx.record_tool("t", cost="5")  # no user: counts for the team only
        monitor.flush()
    assert [(a.rule, a.subject, a.observed) for a in got] == [("spend-over", "user=u-1", Decimal(3))]


def test_spend_over_per_day_restarts_every_utc_day() -> None:
    got: list[Alert] = []
    monday, tuesday = epoch(date(2026, 3, 2), 23), epoch(date(2026, 3, 3), 1)
    with AlertMonitor([SpendOver("session", "5", per="day")], [got.append]) as monitor:
        for when, cost in ((monday, "3"), (monday, "3"), (monday, "3"), (tuesday, "4"), (tuesday, "4")):
            with agentcost.run("turn", attrs={"session": "s-1"}, sinks=[monitor]) as ctx:
                ctx.record_tool("t", cost=cost, started_at=when)
        monitor.flush()
    assert [(a.key, a.observed) for a in got] == [
        ("spend-over:session=s-1:2026-03-02", Decimal(6)),
        ("spend-over:session=s-1:2026-03-03", Decimal(8)),
    ]
    assert "on 2026-03-03 (UTC)" in got[1].message


def test_unpriced_spans_and_containers_count_as_nothing() -> None:
    got: list[Alert] = []
    with AlertMonitor([SpendOver("conversation", "1")], [got.append]) as monitor:
        with agentcost.run("turn", attrs={"conversation": "c-1"}, sinks=[monitor]) as ctx:
            ctx.record_llm(model="no-such-model-xyz", usage=Usage(input_tokens=10**9, output_tokens=1))
            with ctx.child("agent") as child:
                child.record_tool("t", cost="0.5")
        monitor.flush()
    assert got == []


def test_forgotten_subjects_start_again_and_memory_is_bounded() -> None:
    rule = SpendOver("conversation", "10", max_subjects=2)
    with AlertMonitor([rule]) as monitor:
        turn(monitor, "c-1", "4")
        turn(monitor, "c-2", "4")
        turn(monitor, "c-3", "4")  # c-1 is the least recently updated: forgotten
    assert rule.total("c-1") == 0
    assert rule.total("c-3") == Decimal(4)
    assert len(rule._totals) == 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 300)), max_size=25))
def test_alerts_equal_the_conversations_that_ever_reached_the_amount(calls: list[tuple[int, int]]) -> None:
    """For any sequence of span costs across conversations, one alert per conversation whose total reached $5, with
    the total at the crossing; never more."""
    got: list[Alert] = []
    with AlertMonitor([SpendOver("conversation", "5")], [got.append]) as monitor:
        for conversation, cents in calls:
            with agentcost.run("turn", attrs={"conversation": f"c-{conversation}"}, sinks=[monitor]) as ctx:
                ctx.record_tool("t", cost=Decimal(cents) / 100)
        assert monitor.flush()
    totals: dict[str, int] = {}
    expected: dict[str, Decimal] = {}
    for conversation, cents in calls:
        name = f"conversation=c-{conversation}"
        if cents == 0:
            continue
        totals[name] = totals.get(name, 0) + cents
        if totals[name] >= 500 and name not in expected:
            expected[name] = Decimal(totals[name]) / 100
    assert {a.subject: a.observed for a in got} == expected
    assert len(got) == len(expected)


# -- live rules: BudgetUsed --------------------------------------------------------------------------------------------


def test_budget_used_fires_once_at_the_warning_and_once_when_exceeded() -> None:
    got: list[Alert] = []
    with AlertMonitor([BudgetUsed("0.8")], [got.append]) as monitor:
        with agentcost.run("answer", budget=Budget(max_cost=Decimal(10)), sinks=[monitor]) as ctx:
            for cost in ("3", "3", "3", "0.5"):  # $9 is 90%: the warning; $9.50 fires nothing new
                ctx.record_tool("t", cost=cost)
            monitor.flush()
            assert [(a.severity, a.observed, a.threshold) for a in got] == [("warning", Decimal(9), Decimal(10))]
            assert got[0].message == "run 'answer' has used 90% of its cost budget: $9 of $10"
            ctx.record_tool("t", cost="1")  # $10.50: exceeded
            ctx.record_tool("t", cost="1")
        with agentcost.run("answer", budget=Budget(max_cost=Decimal(10)), sinks=[monitor]) as second:
            second.record_tool("t", cost="8")  # another run: its own budget, its own alert
        monitor.flush()
    assert [(a.severity, a.subject) for a in got] == [
        ("warning", "run 'answer'"),
        ("critical", "run 'answer'"),
        ("warning", "run 'answer'"),
    ]
    assert got[1].observed == Decimal("10.5")
    assert got[1].message == "run 'answer' is over its cost budget: $10.5 of $10"
    assert got[0].details["run_id"] != got[2].details["run_id"]
    assert len({a.key for a in got}) == 3


def test_budget_used_reads_the_warning_event_and_its_fraction() -> None:
    """A warning below ``fraction`` is not news; tokens budgets are watched too, cost only when asked."""
    got: list[Alert] = []
    with AlertMonitor([BudgetUsed("0.95", exceeded=False)], [got.append]) as monitor:
        with agentcost.run("a", budget=Budget(max_cost=Decimal(10)), sinks=[monitor]) as ctx:
            ctx.record_tool("t", cost="8.5")  # the warning reports 85%
            ctx.record_tool("t", cost="5")  # exceeded: not watched here
        with agentcost.run("b", budget=Budget(max_cost=Decimal(10), warn_at=Decimal("0.5")), sinks=[monitor]) as b:
            b.record_tool("t", cost="9.6")  # the warning reports 96%
        monitor.flush()
    assert [(a.subject, a.observed) for a in got] == [("run 'b'", Decimal("9.6"))]

    tokens: list[Alert] = []
    with AlertMonitor([BudgetUsed(metrics=("tokens",))], [tokens.append]) as monitor:
        with agentcost.run("c", budget=Budget(max_tokens=1000, max_cost=Decimal(1)), sinks=[monitor]) as ctx:
            ctx.record_llm(model="gpt-4o", provider="openai", usage=Usage(input_tokens=900, output_tokens=0))
            ctx.record_tool("t", cost="0.9")  # a cost warning: not watched
        monitor.flush()
    assert [(a.observed, a.threshold) for a in tokens] == [(900, 1000)]
    assert tokens[0].message == "run 'c' has used 90% of its tokens budget: 900 tokens of 1000 tokens"


def test_budget_used_on_a_child_agent_budget() -> None:
    got: list[Alert] = []
    with AlertMonitor([BudgetUsed()], [got.append]) as monitor:
        with (
            agentcost.run("answer", sinks=[monitor]) as ctx,
            ctx.child("researcher", budget=Budget(max_cost=Decimal(1))) as researcher,
        ):
            researcher.record_tool("search", cost="0.85")
        monitor.flush()
    assert [(a.subject, a.severity) for a in got] == [("agent 'researcher'", "warning")]
    assert got[0].message == "agent 'researcher' of run 'answer' has used 85% of its cost budget: $0.85 of $1"


def test_refusals_of_a_scoped_limit_fire_once_per_window_across_runs() -> None:
    store = agentcost.MemoryStore()
    store.add_limit(agentcost.Limit(scope={"team": "search"}, window="day", max_cost=Decimal(1)))
    got: list[Alert] = []
    with AlertMonitor([BudgetUsed()], [got.append]) as monitor:
        for _ in range(3):
            with (
                agentcost.run("a", attrs={"team": "search"}, store=store, sinks=[monitor]) as ctx,
                pytest.raises(agentcost.BudgetExceeded),
            ):
                ctx.reserve(cost="2")
        monitor.flush()
    [alert] = got
    assert (alert.subject, alert.severity, alert.observed) == ("limit team=search/day", "critical", None)
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert alert.key == f"budget-used:limit team=search/day@{today}:cost:exceeded"
    assert alert.message.startswith("limit team=search/day refused a call: ")


# -- user-defined rules ------------------------------------------------------------------------------------------------


def test_function_and_class_rules_fire_once_per_key() -> None:
    def slow_tool(span: agentcost.Span, tree: agentcost.CostTree) -> Alert | None:
        if span.kind == "tool" and span.duration is not None and span.duration >= 2:
            return Alert(rule="slow-tool", subject=f"tool {span.name}", message=f"{span.name} is slow", key=span.name)
        return None

    class ErrorRun(LiveRule):
        name = "failed-run"

        def on_span(self, span: agentcost.Span, tree: agentcost.CostTree) -> Alert | None:
            if span.kind == "run" and span.status == "error":
                return Alert(rule=self.name, subject=span.name, message=f"run {span.name} failed", severity="critical")
            return None

    got: list[Alert] = []
    with AlertMonitor([slow_tool, ErrorRun()], [got.append]) as monitor:
        for _ in range(3):
            with agentcost.run("job", sinks=[monitor]) as ctx:
                ctx.record_tool("fetch", cost="0", started_at=time.time() - 5)
        with pytest.raises(RuntimeError), agentcost.run("job", sinks=[monitor]):
            raise RuntimeError("boom")
        monitor.flush()
        assert monitor.fired() == ["fetch", "failed-run:job"]
        monitor.forget("fetch")
        with agentcost.run("job", sinks=[monitor]) as ctx:
            ctx.record_tool("fetch", cost="0", started_at=time.time() - 5)
        monitor.flush()
        stats = monitor.stats()
    assert [(a.rule, a.severity) for a in got] == [
        ("slow-tool", "warning"),
        ("failed-run", "critical"),
        ("slow-tool", "warning"),
    ]
    assert stats.duplicates == 2


def test_a_rule_or_callback_that_raises_is_counted_and_the_run_completes(caplog: pytest.LogCaptureFixture) -> None:
    def broken_rule(span: agentcost.Span, tree: agentcost.CostTree) -> Alert | None:
        raise ValueError("rule bug")

    def broken_callback(alert: Alert) -> None:
        raise RuntimeError("callback bug")

    callback = CallbackSink(broken_callback)
    good: list[Alert] = []
    with (
        caplog.at_level(logging.ERROR, logger="agentcost.alerts"),
        AlertMonitor([broken_rule, SpendOver("conversation", "1")], [callback, good.append]) as monitor,
    ):
        tree = turn(monitor, "c-1", "2")
        tree2 = turn(monitor, "c-2", "2")
        monitor.flush()
        stats = monitor.stats()
    assert tree.total_cost == tree2.total_cost == Decimal(2)  # the runs completed
    assert stats.rule_errors == 4  # raised on every span: the tool and the run, twice
    assert stats.sink_errors == 0  # CallbackSink keeps its own count
    assert callback.stats().failed == 2
    assert callback.stats().sent == 0
    assert [a.subject for a in good] == ["conversation=c-1", "conversation=c-2"]  # the other sink still got them
    assert "rule bug" in caplog.text
    assert "callback bug" in caplog.text
    assert agentcost._sink.sink_errors.get("AlertMonitor") is None  # nothing reached the core's sink counter


def test_add_sink_attaches_the_monitor_to_every_run() -> None:
    got: list[Alert] = []
    monitor = AlertMonitor([SpendOver("team", "1")], [got.append])
    agentcost.add_sink(monitor)
    try:
        with agentcost.run("a", attrs={"team": "search"}) as ctx:
            ctx.record_tool("t", cost="1.25")
    finally:
        agentcost.remove_sink(monitor)
        monitor.close()
    assert [a.subject for a in got] == ["team=search"]


def test_log_sink_logs_by_severity(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="agentcost.alerts"):
        sink = LogSink()
        sink.send(Alert(rule="r", subject="s", message="heads up", severity="info"))
        sink.send(Alert(rule="r", subject="s", message="over budget", severity="critical"))
    assert [(r.levelno, r.getMessage(), r.alert.severity) for r in caplog.records] == [  # type: ignore[attr-defined]
        (logging.INFO, "heads up", "info"),
        (logging.ERROR, "over budget", "critical"),
    ]
    assert sink.stats().sent == 2


def test_thresholds_are_decimal_money_and_floats_are_refused() -> None:
    with pytest.raises(TypeError, match="not float"):
        SpendOver("conversation", 5.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not float"):
        BudgetUsed(0.8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not float"):
        BudgetUsedOnLedger(100.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not float"):
        Alert(rule="r", subject="s", message="m", observed=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        SpendOver("conversation", "0")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        BudgetUsed("1.5")
    with pytest.raises(ValueError, match="per"):
        SpendOver("conversation", "1", per="week")  # type: ignore[arg-type]
    assert SpendOver("user", 5).amount == Decimal(5)
    assert BudgetUsed(Decimal("0.9")).fraction == Decimal("0.9")


def test_importing_agentcost_does_not_import_alerts() -> None:
    code = "import sys, agentcost; print('agentcost.alerts' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


# -- the webhook -------------------------------------------------------------------------------------------------------


def test_webhook_receives_exactly_the_expected_json(receiver: Receiver) -> None:
    webhook = WebhookSink(receiver.url, headers={"Authorization": "Bearer t0ken"}, timeout=5)
    with AlertMonitor([SpendOver("conversation", "5"), BudgetUsed()], [webhook]) as monitor:
        turn(monitor, "c-42", "4.50")
        with agentcost.run(
            "turn", attrs={"conversation": "c-42"}, budget=Budget(max_cost=Decimal(2)), sinks=[monitor]
        ) as ctx:
            ctx.record_tool("t", cost="1")  # conversation at $5.50; the run's budget 50% used
            ctx.record_tool("t", cost="1")  # conversation at $6.50; the run's budget 100% used: a warning
        turn(monitor, "c-42", "1")
        assert monitor.flush()
    assert webhook.stats() == (webhook.stats().__class__(2, 2, 0, 0, 0))
    assert len(receiver.bodies) == 2
    first, second = receiver.bodies
    assert first == {
        "text": "conversation=c-42 has spent $5.5, reaching the $5 alert threshold",
        "rule": "spend-over",
        "subject": "conversation=c-42",
        "message": "conversation=c-42 has spent $5.5, reaching the $5 alert threshold",
        "severity": "warning",
        "observed": "5.50",
        "threshold": "5",
        "at": first["at"],
        "key": "spend-over:conversation=c-42",
        "details": {"key": "conversation", "value": "c-42", "span_id": first["details"]["span_id"]},
    }
    assert datetime.strptime(first["at"], "%Y-%m-%dT%H:%M:%SZ")
    assert second["rule"] == "budget-used"
    assert second["subject"] == "run 'turn'"
    assert (second["observed"], second["threshold"], second["severity"]) == ("2", "2", "warning")
    assert second["details"]["attr.conversation"] == "c-42"
    for headers in receiver.headers:
        assert headers["Authorization"] == "Bearer t0ken"
        assert headers["Content-Type"] == "application/json"


def test_webhook_retries_server_errors_and_gives_up_on_client_errors() -> None:
    server = Receiver(statuses=(503, 500, 200, 400))
    try:
        webhook = WebhookSink(server.url, attempts=3, backoff=0.01)
        webhook.send(Alert(rule="r", subject="a", message="first"))
        assert webhook.flush()
        assert webhook.stats().sent == 1
        webhook.send(Alert(rule="r", subject="b", message="second"))  # 400: not retried
        webhook.close()
    finally:
        server.close()
    assert [body["message"] for body in server.bodies] == ["first", "first", "first", "second"]
    stats = webhook.stats()
    assert (stats.received, stats.sent, stats.failed, stats.dropped, stats.queued) == (2, 1, 1, 0, 0)


def test_a_webhook_that_is_down_never_slows_the_agent_and_failures_are_counted() -> None:
    refused = WebhookSink(f"http://127.0.0.1:{closed_port()}/alerts", attempts=3, backoff=0.01)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hole:  # accepts connections, never answers
        hole.bind(("127.0.0.1", 0))
        hole.listen(1)
        silent = WebhookSink(f"http://127.0.0.1:{hole.getsockname()[1]}/alerts", timeout=0.3, attempts=1, max_queue=2)
        with AlertMonitor([SpendOver("conversation", "1")], [refused, silent]) as monitor:
            started = time.perf_counter()
            for n in range(20):  # twenty breaches, each delivered to both webhooks
                turn(monitor, f"c-{n}", "0.75", "0.75")
            elapsed = time.perf_counter() - started
            assert monitor.flush(timeout=30)
            stats = monitor.stats()
    assert elapsed < 1.0  # posting synchronously to the silent server alone would take 20 x 0.3 s
    assert (stats.fired, stats.delivered, stats.sink_errors) == (20, 20, 0)
    assert refused.stats().failed == 20
    assert refused.stats().sent == 0
    silent_stats = silent.stats()
    assert silent_stats.sent == 0
    assert silent_stats.failed + silent_stats.dropped == 20
    assert silent_stats.dropped > 0  # a queue of two, one alert in flight at a time: the rest are dropped


# -- ledger rules ------------------------------------------------------------------------------------------------------

FIRST_DAY = date(2026, 1, 1)
PLANTED = date(2026, 1, 25)


def write_days(ledger: Ledger, first: date, days: int, planted: dict[tuple[str, date], Decimal] | None = None) -> None:
    """Steady daily spend for two teams (search about $100 a day, ads about $50), plus planted days."""
    records: list[SpanRecord] = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        for team, base in (("search", Decimal(100)), ("ads", Decimal(50))):
            cost = (planted or {}).get((team, day), base + offset % 3)
            span_id = day.toordinal() * 10 + (1 if team == "search" else 2)
            records.append(
                SpanRecord(
                    span_id=span_id,
                    run_id=span_id,
                    parent_id=None,
                    kind="llm",
                    name="gpt-4o",
                    attrs={"team": team},
                    started_at=epoch(day),
                    ended_at=epoch(day) + 2,
                    status="ok",
                    cost=cost,
                    cost_source="computed",
                    model="gpt-4o",
                    provider="openai",
                    input_tokens=1000,
                    output_tokens=100,
                    requests=1,
                    run_name="daily",
                )
            )
    ledger.write(records)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLiteLedger]:
    opened = SQLiteLedger(tmp_path / "spend.db")
    write_days(opened, FIRST_DAY, 30, {("search", PLANTED): Decimal(300)})
    yield opened
    opened.close()


def test_daily_spend_trend_fires_once_for_the_planted_day(ledger: SQLiteLedger) -> None:
    got: list[Alert] = []
    alerts = LedgerAlerts([DailySpendTrend(("team",), ratio=2.0)], [got.append])
    found = alerts.evaluate(ledger, today=date(2026, 1, 30))
    assert found == got
    assert len(found) == 1
    [alert] = found
    assert alert.subject == "team=search"
    assert alert.observed == Decimal(300)
    assert alert.threshold == Decimal(202)  # twice the trailing median, $101
    assert alert.key == "daily-spend-trend:team=search:2026-01-25"
    assert alert.details["day"] == "2026-01-25"
    assert alert.message == "team=search spent $300 on 2026-01-25 (UTC), 3.0x its trailing median of $101 a day"

    assert alerts.evaluate(ledger, today=date(2026, 1, 30)) == []  # re-evaluating does not fire again
    assert alerts.evaluate(ledger, today="2026-01-31") == []
    assert alerts.fired == {"daily-spend-trend:team=search:2026-01-25"}

    write_days(ledger, date(2026, 1, 31), 1, {("ads", date(2026, 1, 31)): Decimal(160)})
    [ads] = alerts.evaluate(ledger, today="2026-01-31")
    assert (ads.subject, ads.observed) == ("team=ads", Decimal(160))
    assert len(got) == 2


def test_the_planted_day_is_out_of_range_once_it_is_older_than_days(ledger: SQLiteLedger) -> None:
    assert evaluate(ledger, [DailySpendTrend(days=3)], today=date(2026, 1, 30)) == []
    assert len(evaluate(ledger, [DailySpendTrend(days=6)], today=date(2026, 1, 30))) == 1
    assert evaluate(ledger, [DailySpendTrend(ratio=4.0)], today=date(2026, 1, 30)) == []


def test_fired_keys_persist_in_a_state_file(ledger: SQLiteLedger, tmp_path: Path) -> None:
    state = tmp_path / "state" / "alerts.json"
    assert len(LedgerAlerts(state=state).evaluate(ledger, today=date(2026, 1, 30))) == 1
    assert json.loads(state.read_text())["keys"] == ["daily-spend-trend:team=search:2026-01-25"]
    assert LedgerAlerts(state=state).evaluate(ledger, today=date(2026, 1, 30)) == []  # another process, same state
    state.write_text("{}")
    with pytest.raises(ValueError, match="not an agentcost alert state file"):
        LedgerAlerts(state=state)


def test_budget_used_on_the_ledger_fires_at_the_fraction_then_once_over(ledger: SQLiteLedger) -> None:
    """Search's January budget: $3000. By Jan 24 it has spent $2,424 (80.8%); Jan 30 is over."""
    rule = BudgetUsedOnLedger("3000", fraction="0.8", where={"team": "search"})
    fired: set[str] = set()
    assert evaluate(ledger, [rule], today=date(2026, 1, 22), fired=fired) == []  # $2,222: 74%
    [used] = evaluate(ledger, [rule], today=date(2026, 1, 24), fired=fired)
    assert (used.severity, used.subject, used.observed, used.threshold) == (
        "warning",
        "team=search",
        Decimal(2424),
        Decimal("2400.0"),
    )
    assert used.key == "budget-used:team=search:2026-01:used"
    assert used.message.startswith(
        "team=search's spend of $2424 has used 81% of the monthly budget of $3000 for 2026-01"
    )
    assert "runs out on 2026-01-30" in used.message
    assert evaluate(ledger, [rule], today=date(2026, 1, 26), fired=fired) == []
    [over] = evaluate(ledger, [rule], today=date(2026, 1, 30), fired=fired)
    assert (over.severity, over.threshold) == ("critical", Decimal(3000))
    assert evaluate(ledger, [rule], today=date(2026, 1, 30), fired=fired) == []
    assert fired == {"budget-used:team=search:2026-01:used", "budget-used:team=search:2026-01:exceeded"}


def test_default_rules_are_what_the_cli_evaluates(ledger: SQLiteLedger) -> None:
    """``evaluate(ledger, default_ledger_rules(budget))`` is a one-shot report: standing breaches, every time."""
    rules = default_ledger_rules(budget="4000")
    assert [type(rule) for rule in rules] == [DailySpendTrend, BudgetUsedOnLedger]
    for _ in range(2):
        alerts = evaluate(ledger, rules, today=date(2026, 1, 30))
        assert [(a.rule, a.subject, a.severity) for a in alerts] == [
            ("daily-spend-trend", "team=search", "warning"),
            ("budget-used", "all", "critical"),  # both teams together: over $4000
        ]
        json.dumps([a.to_dict() for a in alerts])
    assert [type(rule) for rule in default_ledger_rules()] == [DailySpendTrend]


def test_a_ledger_rule_can_be_a_function_and_a_subclass(ledger: SQLiteLedger) -> None:
    def runs_today(ledger: Ledger, today: date) -> list[Alert]:
        since = epoch(today, 0)
        n = len(ledger.runs(since=since, until=since + 86_400))
        return [Alert(rule="runs", subject="all", message=f"{n} runs", key=f"runs:{today}")] if n else []

    class Never(LedgerRule):
        name = "never"

        def evaluate(self, ledger: Ledger, today: date) -> list[Alert]:
            return []

    alerts = LedgerAlerts([runs_today, Never()])
    assert [a.key for a in alerts.evaluate(ledger, today=date(2026, 1, 3))] == ["runs:2026-01-03"]
    assert alerts.evaluate(ledger, today=date(2026, 1, 3)) == []
