"""Every FinOps command on the demo's ledger: JSON output that agrees with the ledger to the last digit, the planted
anomaly, the tree of a run, exports, and clear errors for bad input."""

from __future__ import annotations

import csv
import importlib
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentcost._cli import app
from agentcost.ledger import SpanRecord, open_ledger

runner = CliRunner()


def needs_adapters() -> None:
    for module in ("agentcost_openai", "agentcost_anthropic"):
        try:
            importlib.import_module(module)
        except ImportError as error:
            reason = f"the 30-day demo runs through {module}, which is not installed ({error})"
            print(reason)
            if os.environ.get("CI"):
                pytest.fail(reason)
            pytest.skip(reason)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    """The demo's ledger, written once for the module."""
    needs_adapters()
    from agentcost._finops_demo import run_finops_demo

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = run_finops_demo(path)
    return str(path), result


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def all_spans(path: str) -> list[SpanRecord]:
    ledger = open_ledger(path)
    try:
        return ledger.spans()
    finally:
        ledger.close()


def test_report_is_exact(demo: tuple[str, Any]) -> None:
    path, result = demo
    data = invoke("report", "--ledger", path, "--by", "team", "--json", "--until", result.last_day.isoformat())
    spans = all_spans(path)
    assert Decimal(data["total"]) == sum((s.cost for s in spans if s.cost is not None), Decimal(0))
    by_team = {row["team"]: Decimal(row["cost"]) for row in data["rows"]}
    assert set(by_team) == {"ads", "search", "support"}
    assert by_team["ads"] == sum((s.cost or Decimal(0) for s in spans if s.attrs.get("team") == "ads"), Decimal(0))
    daily = invoke("report", "--ledger", path, "--by", "team,day", "--days", "30", "--json")
    assert len({row["day"] for row in daily["rows"]}) == 30
    searched = invoke("report", "--ledger", path, "--by", "feature", "--where", "team=search", "--json")
    assert {row["feature"] for row in searched["rows"]} == {"qa", "summarize"}


def test_anomalies_find_the_planted_day(demo: tuple[str, Any]) -> None:
    path, result = demo
    found = invoke("anomalies", "--ledger", path, "--json", "--until", result.last_day.isoformat())
    assert [(a["team"], a["day"]) for a in found] == [("ads", result.anomaly_day.isoformat())]
    assert found[0]["ratio"] > 2
    quiet = invoke("anomalies", "--ledger", path, "--json", "--ratio", "8")
    assert quiet == []


def test_top_and_tree(demo: tuple[str, Any]) -> None:
    path, _ = demo
    runs = invoke("top", "--ledger", path, "-n", "3", "--json")
    assert len(runs) == 3
    costs = [Decimal(run["cost"]) for run in runs]
    assert costs == sorted(costs, reverse=True)
    tree = invoke("tree", runs[0]["run_id"], "--ledger", path, "--json")
    total = sum((Decimal(span["cost"]) for span in tree["spans"] if span["cost"] is not None), Decimal(0))
    assert total == costs[0]
    assert any(span.get("cost_source") == "remote" for span in tree["spans"])  # the translator, across HTTP
    calls = invoke("top", "--ledger", path, "--spans", "-n", "2", "--json")
    assert [call["kind"] for call in calls] == ["llm", "llm"]
    text = runner.invoke(app, ["tree", runs[0]["run_id"], "--ledger", path])
    assert "agent translator" in text.stdout


def test_forecast_and_budget_runway(demo: tuple[str, Any]) -> None:
    path, result = demo
    data = invoke("forecast", "--ledger", path, "--as-of", result.last_day.isoformat(), "--budget", "1000", "--json")
    assert Decimal(data["low"]) <= Decimal(data["expected"]) <= Decimal(data["high"])
    assert Decimal(data["spent"]) > 0
    assert data["budget"]["runs_out_on"] > result.last_day.isoformat()


def test_degradations_are_in_the_ledger(demo: tuple[str, Any]) -> None:
    path, result = demo
    ledger = open_ledger(path)
    try:
        events = ledger.budget_events()
    finally:
        ledger.close()
    degraded = [event for event in events if event.kind == "degraded"]
    assert len(degraded) == result.degraded_calls > 0
    assert all(event.attrs["team"] == "support" for event in degraded)


def test_exports(demo: tuple[str, Any], tmp_path: Path) -> None:
    path, _ = demo
    jsonl = tmp_path / "spans.jsonl"
    focus = tmp_path / "charges.csv"
    assert runner.invoke(app, ["export", "--ledger", path, "--out", str(jsonl)]).exit_code == 0
    assert runner.invoke(app, ["export", "--ledger", path, "--format", "focus", "--out", str(focus)]).exit_code == 0
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    rows = list(csv.DictReader(focus.read_text(encoding="utf-8").splitlines()))
    spans = all_spans(path)
    assert len(lines) == len(spans)
    billed = sum((Decimal(row["BilledCost"]) for row in rows if row["BilledCost"]), Decimal(0))
    assert billed == sum((s.cost for s in spans if s.cost is not None), Decimal(0))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--by", "nope"], "cannot group spend by"),
        (["report", "--since", "yesterday"], "YYYY-MM-DD"),
        (["report", "--where", "team"], "key=value"),
        (["tree", "xyz"], "16 hexadecimal digits"),
        (["tree", "00000000000000ff"], "no spans recorded"),
        (["export", "--format", "xml"], "jsonl or focus"),
    ],
)
def test_bad_input_is_a_clear_usage_error(demo: tuple[str, Any], args: list[str], message: str) -> None:
    path, _ = demo
    result = runner.invoke(app, [*args, "--ledger", path])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_a_missing_ledger_says_how_to_make_one(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", "--ledger", str(tmp_path / "none.db")])
    assert result.exit_code == 2
    assert "agentcost demo" in " ".join(result.output.split())


def test_alerts_on_the_demo_ledger(demo: tuple[str, Any]) -> None:
    """The runaway day is an alert (it is within the last week); a $50 monthly budget is past its 80%."""
    path, result = demo
    found = invoke("alerts", "--ledger", path, "--as-of", result.last_day.isoformat(), "--budget", "50", "--json")
    assert any("ads" in alert["subject"] and alert["rule"] for alert in found)
    assert any(alert["severity"] == "critical" for alert in found)  # the month spent more than $50
    assert invoke("alerts", "--ledger", path, "--as-of", result.last_day.isoformat(), "--json") != []
    bad = runner.invoke(app, ["alerts", "--ledger", path, "--budget", "lots"])
    assert bad.exit_code == 2


def test_dashboard_command_serves_the_ledger(demo: tuple[str, Any]) -> None:
    """`agentcost dashboard` in a subprocess: it prints its address, serves the summary, and stops on SIGTERM (SIGINT
    is what Ctrl-C sends, but a child of a shell's background job inherits SIGINT ignored: CI may run us so)."""
    import signal
    import subprocess
    import sys
    import urllib.request

    path, _ = demo
    process = subprocess.Popen(
        [sys.executable, "-m", "agentcost", "dashboard", "--ledger", path, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.split()[2]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/summary", timeout=30) as response:
            summary = json.loads(response.read())
        assert summary
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, errors = process.communicate(timeout=30)  # drains both pipes while it stops
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
            pytest.fail(f"agentcost dashboard did not stop on SIGTERM; stderr: {errors[-3000:]}")
    assert process.returncode == 0, errors[-3000:]
