"""The local dashboard: its JSON API (exact money, the run's cost tree, 404s), the security headers of every response,
and the page itself in headless Chromium: the charts are drawn, a run opens on a click, and an injection corpus in
every name and attribute value renders as inert text.

The browser tests drive Debian's ``chromium`` (``/usr/bin/chromium``, or ``AGENTCOST_CHROMIUM``) through Playwright.
When it is missing the session installs it with apt (as root); otherwise they are skipped with the reason printed,
except under ``CI``, where they fail. ``AGENTCOST_DASHBOARD_SCREENSHOT`` names a PNG to save the dashboard to.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

import agentcost
from agentcost import Usage, analytics, format_span_id
from agentcost._dashboard import (
    CONTENT_SECURITY_POLICY,
    DashboardServer,
    dashboard_summary,
    money,
    serve_dashboard,
    to_json,
)
from agentcost.ledger import Ledger, LedgerWriter, SpanRecord, open_ledger

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

TODAY = date(2026, 3, 20)
DAYS = 30
HISTORY = 44
BUDGET = "120"
TEAMS = ("search", "ads", "support")
FEATURE = {"search": "answers", "ads": "copywriting", "support": "triage"}
MODEL = {"search": "gpt-4o", "ads": "claude-sonnet-4-5", "support": "gpt-4o-mini"}
BASE = {"search": Decimal("1.25"), "ads": Decimal("0.8"), "support": Decimal("0.35")}
SPIKE_DAY = TODAY - timedelta(days=3)
SPIKE = Decimal("25.5")
DEGRADED_NOTE = "model gpt-4o -> gpt-4o-mini: run 'quarterly report' has $0.40 cost left, gpt-4o needs $0.52"
SKIPPED_NOTE = "skip gpt-4o: run 'quarterly report' has $0.05 cost left, the call needs $0.52"

PAYLOADS = (
    "</script><script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "' onmouseover='window.__pwned=1",
    "javascript:window.__pwned=1",
    "line\u2028separator\u2029paragraph",
    "\u202eright-to-left override",
    "<svg onload=window.__pwned=1>",
)
"""Scripts, broken-out attributes, a URL scheme, JavaScript line terminators and a bidi override: all must stay text."""

CHROMIUM = "/usr/bin/chromium"


def usd(amount: str) -> str:
    """The page's rendering of a money string: ``$``, thousands separators, at least two decimals, every digit kept."""
    whole, _, fraction = amount.partition(".")
    return f"${int(whole):,}.{fraction.ljust(2, '0')}"


def at(day: date, hour: int = 12, minute: int = 0) -> float:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC).timestamp()


@dataclass
class Data:
    """What was written, for the tests to compute their own expectations from."""

    spans: list[SpanRecord] = field(default_factory=list)
    big_run: int = 0
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(0x1000_0000_0000_0001))

    def add(self, run_id: int | None, parent: int | None, kind: str, name: str, **fields: Any) -> int:
        span_id = next(self.ids)
        fields.setdefault("cost", Decimal(0))
        fields.setdefault("status", "ok")
        fields.setdefault("run_name", name)
        started = fields.pop("started_at")
        self.spans.append(
            SpanRecord(
                span_id=span_id,
                run_id=span_id if run_id is None else run_id,
                parent_id=parent,
                kind=kind,
                name=name,
                started_at=started,
                ended_at=started + 1.5,
                **fields,
            )
        )
        return span_id


def build(ledger: Ledger) -> Data:
    """44 days of three teams' daily runs (search spikes three days ago), one expensive run yesterday with a deep,
    degraded tree and an unpriced call, and today a run with no team."""
    data = Data()
    for number in range(HISTORY):
        day = TODAY - timedelta(days=HISTORY - 1 - number)
        for index, team in enumerate(TEAMS):
            when = at(day, 12, index)
            name = f"{team} daily"
            attrs = {"team": team}
            run = data.add(None, None, "run", name, attrs=attrs, started_at=when, run_name=name)
            feature = {**attrs, "feature": FEATURE[team]}
            agent = data.add(run, run, "agent", "researcher", attrs=feature, started_at=when, run_name=name)
            cost = SPIKE if (team, day) == ("search", SPIKE_DAY) else BASE[team] + (number % 5) * Decimal("0.0125")
            data.add(
                run, agent, "llm", MODEL[team], attrs=feature, started_at=when, run_name=name, cost=cost,
                model=MODEL[team], provider="openai", input_tokens=1000, output_tokens=200, cost_source="computed",
            )  # fmt: skip
            data.add(run, agent, "tool", "web_search", attrs=feature, started_at=when, run_name=name,
                     cost=Decimal("0.01"), cost_source="manual")  # fmt: skip
    when = at(TODAY - timedelta(days=1), 9)
    name = "quarterly report"
    attrs = {"team": "ads", "feature": "reports", "user": "u-7"}
    run = data.add(None, None, "run", name, attrs=attrs, started_at=when, run_name=name)
    data.big_run = run

    def call(parent: int, kind: str, label: str, cost: Decimal | None, **fields: Any) -> int:
        agent_attrs = fields.pop("attrs", attrs)
        return data.add(
            run, parent, kind, label, attrs=agent_attrs, started_at=when, run_name=name, cost=cost, **fields
        )

    planner = call(run, "agent", "planner", Decimal(0), attrs={**attrs, "agent": "planner"})
    call(planner, "llm", "gpt-4o", Decimal("3.2"), model="gpt-4o", attrs={**attrs, "agent": "planner"})
    researcher = call(planner, "agent", "researcher", Decimal(0), attrs={**attrs, "agent": "researcher"})
    inner = {**attrs, "agent": "researcher"}
    call(researcher, "llm", "claude-sonnet-4-5", Decimal("9.75"), model="claude-sonnet-4-5", attrs=inner)
    call(researcher, "tool", "web_search", Decimal("0.05"), attrs=inner)
    call(researcher, "llm", "gpt-4o-mini", Decimal("0.35"), model="gpt-4o-mini", requested_model="gpt-4o",
         status="degraded", notes=(DEGRADED_NOTE,), attrs=inner)  # fmt: skip
    call(researcher, "custom", "skip: gpt-4o", Decimal(0), status="skipped", notes=(SKIPPED_NOTE,), attrs=inner)
    writer = call(run, "agent", "writer", Decimal(0), attrs={**attrs, "agent": "writer"})
    call(writer, "llm", "in-house-7b", None, model="in-house-7b", attrs={**attrs, "agent": "writer"})
    call(writer, "llm", "gpt-4o", Decimal("6.4"), model="gpt-4o", attrs={**attrs, "agent": "writer"})
    lone = data.add(None, None, "run", "ad hoc", attrs={}, started_at=at(TODAY, 8), run_name="ad hoc")
    data.add(lone, lone, "tool", "crawl", attrs={}, started_at=at(TODAY, 8), run_name="ad hoc", cost=Decimal("0.02"))
    ledger.write(data.spans)
    return data


# ---- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Ledger, Data]]:
    ledger = open_ledger(tmp_path_factory.mktemp("dashboard") / "spend.db")
    try:
        yield ledger, build(ledger)
    finally:
        ledger.close()


@pytest.fixture(scope="module")
def served(built: tuple[Ledger, Data]) -> Iterator[DashboardServer]:
    with serve_dashboard(built[0], days=DAYS, budget=BUDGET, today=TODAY) as server:
        yield server


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Response(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


# ---- the JSON API --------------------------------------------------------------------------------------------------


def test_summary_money_is_exact(served: DashboardServer, built: tuple[Ledger, Data]) -> None:
    """Every figure of /api/summary is the exact decimal sum of the spans written, as a string."""
    _, data = built
    summary = fetch(served.url + "api/summary").json()
    start = TODAY - timedelta(days=DAYS - 1)
    window = [s for s in data.spans if start <= datetime.fromtimestamp(s.started_at, UTC).date() <= TODAY]
    days = [(start + timedelta(days=i)).isoformat() for i in range(DAYS)]
    assert (summary["start"], summary["end"], summary["daily"]["days"]) == (days[0], TODAY.isoformat(), days)

    def total(spans: list[SpanRecord]) -> Decimal:
        return sum((s.cost for s in spans if s.cost is not None), Decimal(0))

    assert Decimal(summary["total"]) == total(window)
    assert summary["total"] == money(total(window))
    assert summary["unpriced"] == 1
    series = {s["key"]: s for s in summary["daily"]["series"]}
    assert list(series) == ["search", "ads", "support", None]  # most expensive first
    for team, item in series.items():
        expected = [total([s for s in window if s.attrs.get("team") == team and s.day == day]) for day in days]
        assert [Decimal(value) for value in item["values"]] == expected
        assert Decimal(item["total"]) == sum(expected, Decimal(0))
    assert series["search"]["values"][days.index(SPIKE_DAY.isoformat())] == "25.51"
    assert series["ads"]["unpriced"] == 1
    assert [Decimal(v) for v in summary["daily"]["totals"]] == [total([s for s in window if s.day == d]) for d in days]

    features = {row["key"]: row for row in summary["by_feature"]}
    assert Decimal(features["reports"]["cost"]) == Decimal("19.75")
    assert features["reports"]["unpriced"] == 1
    for team, feature in FEATURE.items():
        assert Decimal(features[feature]["cost"]) == total([s for s in window if s.attrs.get("feature") == feature])
        assert features[feature]["calls"] == 2 * DAYS, team
    models = {row["key"]: row for row in summary["by_model"]}
    assert set(models) == {"gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini", "in-house-7b", None}
    assert Decimal(models["gpt-4o"]["cost"]) == total([s for s in window if s.model == "gpt-4o"])
    assert (models["in-house-7b"]["cost"], models["in-house-7b"]["unpriced"]) == ("0", 1)
    assert [row["key"] for row in summary["by_model"]][:2] == ["gpt-4o", "claude-sonnet-4-5"]

    spike, top = summary["top_runs"][:2]
    assert (spike["name"], spike["cost"], spike["unpriced"], spike["spans"]) == ("search daily", "25.51", 0, 4)
    assert (top["run_id"], top["name"], top["cost"], top["unpriced"], top["spans"]) == (
        format_span_id(data.big_run), "quarterly report", "19.75", 1, 11
    )  # fmt: skip
    assert top["attrs"] == {"team": "ads", "feature": "reports", "user": "u-7"}
    assert len(summary["top_runs"]) == 15
    costs = [Decimal(run["cost"]) for run in summary["top_runs"]]
    assert costs == sorted(costs, reverse=True)


def test_summary_analytics(served: DashboardServer, built: tuple[Ledger, Data]) -> None:
    """Anomalies, the forecast and the budget's runway are the analytics module's, as strings."""
    ledger, _ = built
    summary = fetch(served.url + "api/summary").json()
    found = analytics.anomalies(ledger, ("team",), start=TODAY - timedelta(days=DAYS - 1), end=TODAY)
    assert [(a["key"], a["day"], a["cost"]) for a in summary["anomalies"]] == [
        (a.key[0], a.day.isoformat(), money(a.cost)) for a in found
    ]
    assert ("search", SPIKE_DAY.isoformat(), "25.51") in [(a["key"], a["day"], a["cost"]) for a in summary["anomalies"]]

    outlook = analytics.forecast(ledger, as_of=TODAY)
    forecast = summary["forecast"]
    assert (forecast["month"], forecast["as_of"], forecast["days_left"]) == ("2026-03", "2026-03-20", 11)
    for name in ("spent", "expected", "low", "high", "daily_mean", "daily_low", "daily_high"):
        assert Decimal(forecast[name]) == getattr(outlook, name), name
    assert [p["day"] for p in forecast["cumulative"]] == [f"2026-03-{d:02}" for d in range(1, 21)]
    assert Decimal(forecast["cumulative"][-1]["cumulative"]) == outlook.spent
    assert len(forecast["path"]) == 12
    assert Decimal(forecast["path"][-1]["expected"]) == outlook.expected
    assert forecast["future_days"][0] == "2026-03-21"

    way = analytics.runway(ledger, BUDGET, start="2026-03-01", as_of=TODAY)
    budget = summary["budget"]
    assert Decimal(budget["budget"]) == Decimal(BUDGET)
    assert (Decimal(budget["spent"]), Decimal(budget["remaining"])) == (way.spent, way.remaining)
    assert budget["runs_out_on"] == (None if way.runs_out_on is None else way.runs_out_on.isoformat())
    assert budget["runs_out_on"] is not None
    assert "2026-03-21" <= budget["runs_out_on"] <= "2026-04-30"
    assert budget["projection"][0] == {"day": "2026-03-20", "cumulative": money(way.spent.quantize(Decimal("0.01")))}

    without = dashboard_summary(ledger, days=7, today=TODAY)
    assert without["budget"] is None
    assert len(without["daily"]["days"]) == 7
    assert fetch(served.url + "api/summary?days=7").json()["daily"]["days"] == without["daily"]["days"]
    assert fetch(served.url + "api/summary?days=0").status == 400


def test_run_tree(served: DashboardServer, built: tuple[Ledger, Data]) -> None:
    """/api/runs/<id>: every node with self and inclusive cost, unpriced count, status, model, attribution and the
    budget's reasons, nested as recorded."""
    _, data = built
    tree = fetch(served.url + f"api/runs/{format_span_id(data.big_run)}").json()
    assert (tree["name"], tree["total_cost"], tree["total_unpriced"], tree["spans"]) == (
        "quarterly report",
        "19.75",
        1,
        11,
    )
    root = tree["root"]

    def shape(node: dict[str, Any]) -> list[Any]:
        return [node["name"], node["cost"], node["total_cost"], node["total_unpriced"]] + [
            shape(child) for child in node["children"]
        ]

    assert shape(root) == [
        "quarterly report", "0", "19.75", 1,
        ["planner", "0", "13.35", 0,
            ["gpt-4o", "3.2", "3.2", 0],
            ["researcher", "0", "10.15", 0,
                ["claude-sonnet-4-5", "9.75", "9.75", 0],
                ["web_search", "0.05", "0.05", 0],
                ["gpt-4o-mini", "0.35", "0.35", 0],
                ["skip: gpt-4o", "0", "0", 0]]],
        ["writer", "0", "6.4", 1,
            ["in-house-7b", None, "0", 1],
            ["gpt-4o", "6.4", "6.4", 0]],
    ]  # fmt: skip
    planner = root["children"][0]
    assert (root["kind"], planner["kind"], planner["own_attrs"]) == ("run", "agent", {"agent": "planner"})
    assert root["attrs"] == root["own_attrs"] == {"team": "ads", "feature": "reports", "user": "u-7"}
    degraded, skipped = planner["children"][1]["children"][2:]
    assert (degraded["status"], degraded["model"], degraded["requested_model"]) == ("degraded", "gpt-4o-mini", "gpt-4o")
    assert (degraded["notes"], degraded["degraded"]) == ([DEGRADED_NOTE], True)
    assert (skipped["status"], skipped["notes"], skipped["degraded"]) == ("skipped", [SKIPPED_NOTE], True)
    assert planner["children"][0]["degraded"] is False


def test_run_tree_of_a_real_run_with_budget_events(tmp_path: Path) -> None:
    """A run recorded through the writer, budget degradation included, comes back as the tree it was."""
    from agentcost import Budget, DegradePolicy

    ledger = open_ledger(tmp_path / "live.db")
    writer = LedgerWriter(ledger)
    try:
        policy = DegradePolicy(fallbacks={"gpt-4o": "gpt-4o-mini"}, min_output_tokens=256)
        with (
            agentcost.run(
                "ladder",
                attrs={"team": "search"},
                budget=Budget(max_cost=Decimal("0.01"), policy=policy),
                sinks=[writer],
            ) as ctx,
            ctx.child("researcher", attrs={"feature": "qa"}) as researcher,
        ):
            with researcher.guard(model="gpt-4o", provider="openai", input_tokens=5_000) as decision:
                decision.record(usage=Usage(input_tokens=5_000, output_tokens=400))
            researcher.record_tool("web_search", cost="0.001")
        assert writer.flush()
        with serve_dashboard(ledger) as server:
            tree = fetch(server.url + f"api/runs/{format_span_id(ctx.span.id)}").json()
            summary = fetch(server.url + "api/summary").json()
        assert tree["total_cost"] == money(ctx.tree.total_cost)
        [agent] = tree["root"]["children"]
        llm, tool = agent["children"]
        assert (llm["status"], llm["notes"]) == ("degraded", list(ctx.tree.find(kind="llm")[0].notes))
        assert llm["notes"]
        assert llm["notes"][0].startswith("model gpt-4o -> gpt-4o-mini")
        assert (tool["name"], tool["cost"]) == ("web_search", "0.001")
        assert [event["kind"] for event in tree["events"]] == [e.kind for e in ledger.budget_events(run_id=ctx.span.id)]
        assert "degraded" in [event["kind"] for event in tree["events"]]
        assert summary["top_runs"][0]["name"] == "ladder"
        assert summary["total"] == money(ctx.tree.total_cost)
    finally:
        writer.close()
        ledger.close()


# ---- HTTP: headers, content types, errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("api/summary", "application/json"),
    ],
)
def test_responses_carry_security_headers(served: DashboardServer, path: str, content_type: str) -> None:
    response = fetch(served.url + path)
    assert response.status == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert int(response.headers["content-length"]) == len(response.body) > 0
    head = fetch(served.url + path, method="HEAD")
    assert (head.status, head.body, head.headers["content-type"]) == (200, b"", content_type)
    assert head.headers["content-length"] == response.headers["content-length"]


def test_csp_is_strict_and_the_page_has_nothing_inline(served: DashboardServer) -> None:
    assert CONTENT_SECURITY_POLICY == (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    page = fetch(served.url).body.decode()
    assert '<script src="/app.js" defer></script>' in page
    assert page.count("<script") == 1
    assert "style=" not in page
    assert "<style" not in page
    assert " on" not in page.replace(" one", "")  # no inline handlers
    script = fetch(served.url + "app.js").body.decode()
    for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", ".style"):
        assert banned not in script, banned


@pytest.mark.parametrize(
    "path",
    ["nope", "api", "api/", "api/runs", "api/runs/", "api/runs/xyz", "api/runs/0123", "api/runs/0000000000000000",
     "api/runs/FFFFFFFFFFFFFFFF", "api/runs/00000000000000ff/extra", "app.js/", "../pyproject.toml", "dashboard/app.js",
     "%2e%2e/pyproject.toml", "api/summary/x"],
)  # fmt: skip
def test_unknown_paths_are_404(served: DashboardServer, path: str) -> None:
    response = fetch(served.url + path)
    assert response.status == 404
    assert response.json() == {"error": "not found"} or "no run" in response.json()["error"]
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


def test_unknown_run_is_404_with_a_json_error(served: DashboardServer, built: tuple[Ledger, Data]) -> None:
    response = fetch(served.url + "api/runs/00000000000000ff")
    assert response.status == 404
    assert response.json() == {"error": "no run 00000000000000ff in the ledger"}
    agent = next(s for s in built[1].spans if s.kind == "agent")  # a span, not a run
    assert fetch(served.url + f"api/runs/{format_span_id(agent.span_id)}").status == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(served: DashboardServer, method: str) -> None:
    response = fetch(served.url + "api/summary", method=method)
    assert (response.status, response.headers["allow"]) == (405, "GET, HEAD")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY


def test_foreign_host_header_is_refused(served: DashboardServer) -> None:
    """A page on another origin that rebinds its DNS name to 127.0.0.1 cannot read the ledger."""
    refused = fetch(served.url + "api/summary", headers={"Host": f"evil.example:{served.port}"})
    assert refused.status == 421
    assert refused.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert fetch(served.url + "api/summary", headers={"Host": f"localhost:{served.port}"}).status == 200


def test_json_is_safe_inside_a_script_element() -> None:
    text = to_json({"name": "</script><script>x()</script>&\u2028\u2029"}).decode()
    assert text == '{"name":"\\u003c/script\\u003e\\u003cscript\\u003ex()\\u003c/script\\u003e\\u0026\\u2028\\u2029"}'
    assert json.loads(text) == {"name": "</script><script>x()</script>&\u2028\u2029"}


def test_money_strings() -> None:
    assert [money(Decimal(v)) for v in ("0", "0.000", "10", "1E+1", "0.0100", "1234.5600", "-2.50")] == [
        "0", "0", "10", "10", "0.01", "1234.56", "-2.5"
    ]  # fmt: skip


def test_arguments_are_checked(built: tuple[Ledger, Data]) -> None:
    ledger, _ = built
    with pytest.raises(ValueError, match="budget"):
        serve_dashboard(ledger, budget="-5")
    with pytest.raises(ValueError, match="budget"):
        serve_dashboard(ledger, budget="lots")
    with pytest.raises(ValueError, match="days"):
        serve_dashboard(ledger, days=0)
    with pytest.raises(TypeError, match="Ledger"):
        serve_dashboard("spend.db")  # type: ignore[arg-type]


def test_empty_ledger(tmp_path: Path) -> None:
    ledger = open_ledger(tmp_path / "empty.db")
    try:
        with serve_dashboard(ledger, budget=100) as server:
            summary = fetch(server.url + "api/summary").json()
        assert (summary["total"], summary["daily"]["series"], summary["top_runs"]) == ("0", [], [])
        assert summary["budget"]["runs_out_on"] is None
    finally:
        ledger.close()


def test_importing_agentcost_does_not_import_the_dashboard() -> None:
    code = "import sys, agentcost, agentcost.ledger, agentcost.analytics; print('agentcost._dashboard' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


# ---- the page, in headless Chromium --------------------------------------------------------------------------------


def unavailable(reason: str) -> NoReturn:
    print(reason)
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def install_chromium() -> str:
    """apt-get install chromium (root only); returns what happened, for the skip reason."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root with apt-get, so not installing it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600", "chromium"]
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200, check=False)
        if result.returncode != 0:  # perhaps no package lists yet
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600, check=False)
            result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200, check=False)
    except subprocess.TimeoutExpired:
        return "apt-get install chromium timed out"
    return f"apt-get install chromium exited {result.returncode}: {result.stderr.strip()[-300:]}"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of a Chromium for Playwright: ``AGENTCOST_CHROMIUM`` or Debian's, installed with apt if missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        unavailable(f"the dashboard's browser tests need playwright ({error}): pip install playwright")
    override = os.environ.get("AGENTCOST_CHROMIUM")
    path = override or CHROMIUM
    if not os.path.exists(path):
        if override:
            unavailable(f"AGENTCOST_CHROMIUM={override} does not exist")
        tried = install_chromium()
        if not os.path.exists(path):
            unavailable(f"no Chromium at {path} ({tried}); apt-get install chromium or set AGENTCOST_CHROMIUM")
    return path


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Browser]:
    """Headless Chromium, for this module only: Playwright's sync API keeps an event loop running in the main thread
    while it is started, which would break later tests' ``asyncio.run``."""
    from playwright.sync_api import Error, sync_playwright

    manager = sync_playwright().start()
    try:
        try:
            launched = manager.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        except Error as error:
            unavailable(f"Chromium at {chromium} does not start under Playwright: {error}")
        try:
            yield launched
        finally:
            launched.close()
    finally:
        manager.stop()


WATCH_CSP = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__violations.push(e.violatedDirective + " " + e.blockedURI);
});
"""


@dataclass
class Watched:
    page: Page
    problems: list[str]

    def check(self) -> None:
        violations = self.page.evaluate("window.__violations")
        assert violations == [], violations
        assert self.problems == [], self.problems


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    """A page whose console errors and warnings, uncaught exceptions and CSP violations are collected."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    page.add_init_script(WATCH_CSP)
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            problems.append(f"console {message.type}: {message.text}")

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    try:
        yield Watched(page, problems)
    finally:
        context.close()


def open_overview(watched: Watched, url: str) -> Page:
    page = watched.page
    page.goto(url)
    page.wait_for_selector("html[data-ready=overview]", timeout=15_000)
    return page


def test_dashboard_in_a_browser(served: DashboardServer, built: tuple[Ledger, Data], watched: Watched) -> None:
    """The charts are drawn with the right series and bars; clicking the top run shows its tree, costs as text."""
    _, data = built
    page = open_overview(watched, served.url)
    summary = fetch(served.url + "api/summary").json()
    series = summary["daily"]["series"]
    assert page.locator("#chart-time g.series").count() == len(series) == 4
    nonzero = sum(1 for s in series for value in s["values"] if Decimal(value) > 0)
    assert page.locator("#chart-time g.series rect.bar").count() == nonzero
    assert page.locator("#legend-time .legend-item").count() == 4
    assert page.locator("#legend-time .legend-item").all_text_contents() == [
        ("(no team)" if s["key"] is None else s["key"]) + usd(s["total"]) + (" +1 unpriced" if s["unpriced"] else "")
        for s in series
    ]
    assert page.locator("#chart-time .anomaly-marker").count() == len(summary["anomalies"]) >= 1
    assert page.locator("#chart-time .forecast-band").count() == 1
    assert page.locator("#chart-time .forecast-line").count() == 1
    assert page.locator("#chart-feature rect.bar").count() == len(summary["by_feature"]) == 5
    assert page.locator("#chart-model rect.bar").count() == len(summary["by_model"]) == 5
    assert page.locator("#chart-forecast polygon.forecast-band").count() == 1
    assert page.locator("#chart-forecast .actual-dot").count() == 20
    assert page.locator("#chart-budget .budget-line").count() == 1
    assert page.locator("#chart-budget .runs-out-line").count() == 1
    assert f"runs out {summary['budget']['runs_out_on']}" in (page.locator("#chart-budget").text_content() or "")
    assert page.locator("#top-runs tbody tr").count() == len(summary["top_runs"])
    assert page.locator("#anomalies tbody tr").count() == len(summary["anomalies"])
    assert usd(summary["total"]) in (page.locator("#cards").text_content() or "")

    screenshot = os.environ.get("AGENTCOST_DASHBOARD_SCREENSHOT")
    if screenshot:
        page.screenshot(path=screenshot, full_page=True)

    page.locator("#top-runs .run-link", has_text="quarterly report").click()
    page.wait_for_selector("html[data-ready=run]", timeout=10_000)
    assert page.url.endswith(f"#run={format_span_id(data.big_run)}")
    assert page.locator("#overview").is_hidden()
    rows = page.locator("#run table.tree tbody tr")
    assert rows.count() == 11
    texts = [
        (
            row.locator(".node-name").text_content(),
            row.locator(".self").text_content(),
            row.locator(".inclusive").text_content(),
        )
        for row in rows.all()
    ]
    assert texts == [
        ("quarterly report", "$0.00", "$19.75"),
        ("planner", "$0.00", "$13.35"),
        ("gpt-4o", "$3.20", "$3.20"),
        ("researcher", "$0.00", "$10.15"),
        ("claude-sonnet-4-5", "$9.75", "$9.75"),
        ("web_search", "$0.05", "$0.05"),
        ("gpt-4o-mini", "$0.35", "$0.35"),
        ("skip: gpt-4o", "$0.00", "$0.00"),
        ("writer", "$0.00", "$6.40"),
        ("in-house-7b", "unpriced", "$0.00"),
        ("gpt-4o", "$6.40", "$6.40"),
    ]
    depth = [row.locator("td.node").get_attribute("class") for row in rows.all()]
    assert depth[:4] == ["node depth-0", "node depth-1", "node depth-2", "node depth-2"]
    assert page.locator("#run .notes .note").all_text_contents() == [DEGRADED_NOTE, SKIPPED_NOTE]
    assert page.locator("#run .tree-row.degraded").count() == 2
    assert "+ 1 unpriced" in (page.locator("#run .run-total").text_content() or "")
    if screenshot:  # and the drill-down, next to it: dashboard.png -> dashboard-run.png
        page.screenshot(path=str(Path(screenshot).with_name(Path(screenshot).stem + "-run.png")), full_page=True)

    page.locator("#back").click()
    page.wait_for_selector("html[data-ready=overview]", timeout=10_000)
    assert page.locator("#overview").is_visible()
    watched.check()


def test_bad_run_hash_shows_an_error(served: DashboardServer, watched: Watched) -> None:
    page = watched.page
    page.goto(served.url + "#run=00000000000000ff")
    page.wait_for_selector("html[data-ready=error]", timeout=10_000)
    assert "no run 00000000000000ff" in (page.locator("#status").text_content() or "")
    assert page.evaluate("window.__violations") == []


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DashboardServer]:
    """A ledger whose every name, model, note and attribute value (and one key) is an injection payload."""
    ledger = open_ledger(tmp_path_factory.mktemp("hostile") / "spend.db")
    ids = itertools.count(0x2000_0000_0000_0001)
    spans: list[SpanRecord] = []
    for index, payload in enumerate(PAYLOADS):
        attrs = {
            "team": payload,
            "feature": payload,
            "user": payload,
            "session": payload,
            "conversation": payload,
            "tenant": payload,
            "note": payload,
            payload: payload,
        }
        when = at(TODAY - timedelta(days=index), 10)
        run = next(ids)
        child_attrs = {**attrs, "agent": payload}
        agent = next(ids)
        common = {"run_id": run, "started_at": when, "ended_at": when + 1, "run_name": payload}
        spans += [
            SpanRecord(span_id=run, parent_id=None, kind="run", name=payload, attrs=attrs, status="ok",
                       cost=Decimal(0), **common),  # type: ignore[arg-type]
            SpanRecord(span_id=agent, parent_id=run, kind="agent", name=payload, attrs=child_attrs, status="ok",
                       cost=Decimal(0), **common),  # type: ignore[arg-type]
            SpanRecord(span_id=next(ids), parent_id=agent, kind="llm", name=payload, attrs=child_attrs,
                       status="degraded", cost=Decimal("1.5") + index, model=payload, requested_model=payload,
                       provider=payload, cost_source="computed", notes=(payload, payload), error=payload,
                       **common),  # type: ignore[arg-type]
            SpanRecord(span_id=next(ids), parent_id=agent, kind="tool", name=payload, attrs=child_attrs,
                       status="error", cost=Decimal("0.25"), **common),  # type: ignore[arg-type]
        ]  # fmt: skip
    ledger.write(spans)
    try:
        with serve_dashboard(ledger, today=TODAY, budget="10") as server:
            yield server
    finally:
        ledger.close()


NOT_INJECTED = """() => ({
  pwned: typeof window.__pwned,
  img: document.querySelectorAll("img").length,
  script: document.querySelectorAll("script").length,
  handlers: document.querySelectorAll("[onerror],[onload],[onmouseover],[onclick]").length,
  hrefs: [...document.querySelectorAll("[href],[src]")].map((e) => e.getAttribute("href") || e.getAttribute("src")),
  svgInHtml: [...document.querySelectorAll("svg")].filter((s) => !s.classList.contains("chart-svg")).length,
  text: document.body.textContent,
})"""


def assert_inert(page: Page) -> str:
    state = page.evaluate(NOT_INJECTED)
    assert state["pwned"] == "undefined"
    assert (state["img"], state["script"], state["handlers"], state["svgInHtml"]) == (0, 1, 0, 0)
    assert [href for href in state["hrefs"] if href not in ("/favicon.svg", "/app.css", "/app.js")] == []
    text: str = state["text"]
    return text


def test_injection_corpus_renders_as_text(hostile: DashboardServer, watched: Watched) -> None:
    """Every payload shows up literally as text, in the charts, the tables and the tree; none runs or adds elements."""
    server = hostile
    page = open_overview(watched, server.url)
    for selector in ("#top-runs td", "#legend-time .legend-name", "#chart-feature .bar-label"):
        for item in page.locator(selector).all()[:6]:
            item.hover()
    text = assert_inert(page)
    for payload in PAYLOADS:
        assert payload in text, payload
    legend = page.locator("#legend-time .legend-name").all_text_contents()
    assert set(legend) == set(PAYLOADS)
    assert set(page.locator("#top-runs .run-link").all_text_contents()) == set(PAYLOADS)
    titles = page.locator("#chart-model .bar-label title").all_text_contents()
    assert set(PAYLOADS) <= set(titles)

    page.locator("#top-runs .run-link").first.click()
    page.wait_for_selector("html[data-ready=run]", timeout=10_000)
    for item in page.locator("#run .node-name").all():
        item.hover()
    text = assert_inert(page)
    shown = page.locator("#run .run-name").text_content()
    assert shown in PAYLOADS
    assert page.locator("#run .node-name").all_text_contents() == [shown] * 4
    assert page.locator("#run .note").all_text_contents() == [shown, shown, f"error: {shown}"]
    assert f"{shown}={shown}" in page.locator("#run .run-attrs .chip").all_text_contents()
    assert text.count(shown) >= 10

    summary = fetch(server.url + "api/summary").json()
    assert len(summary["top_runs"]) == len(PAYLOADS)
    for item in summary["top_runs"]:  # every run's tree, through the hash route
        page.evaluate("(id) => { location.hash = 'run=' + id; }", item["run_id"])
        page.wait_for_function(
            "(name) => document.documentElement.dataset.ready === 'run' && "
            "document.querySelector('#run .run-name').textContent === name",
            arg=item["name"],
            timeout=10_000,
        )
        assert_inert(page)
    watched.check()


def test_run_dashboard_serves_until_interrupted(tmp_path: Path) -> None:
    """The command line's blocking entry point: opens the ledger, prints the address, serves, stops on Ctrl-C."""
    import signal

    path = tmp_path / "cli.db"
    ledger = open_ledger(path)
    ledger.close()
    code = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job starts ignoring it\n"
        "from agentcost._dashboard import run_dashboard\n"
        "run_dashboard(sys.argv[1], port=0, budget='5')\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("agentcost dashboard: http://127.0.0.1:"), line
        url = line.split()[2]
        summary = fetch(url + "api/summary").json()
        assert (summary["total"], summary["budget"]["budget"]) == ("0", "5")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert (process.returncode, err) == (0, ""), err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
