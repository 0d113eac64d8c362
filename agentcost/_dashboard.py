"""The local web dashboard: a ledger's spend over time by team, by feature and by model, its most expensive runs and
their cost trees, anomalies, the month's forecast and a monthly budget's burn-down, served on loopback::

    from agentcost._dashboard import serve_dashboard

    server = serve_dashboard(ledger, port=0, budget="1500")   # in a background thread
    print(server.url)                                          # http://127.0.0.1:PORT/
    ...
    server.shutdown()

or, blocking until Ctrl-C, ``run_dashboard("spend.db", port=8765, budget="1500")`` (``agentcost dashboard``).

The page (``agentcost/dashboard/index.html``, ``app.js``, ``app.css``) holds no data: the script fetches the JSON API
(``/api/summary``, ``/api/runs/<run id>``) and draws its charts as SVG with DOM calls. Every value that comes from
the ledger (names, attribution, models, notes) is untrusted: it is only ever set as text. Every response carries a
strict Content-Security-Policy (scripts and styles from the server itself only, nothing inline, no frames, no
forms), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; requests whose ``Host`` is not the
server's own address are refused (DNS rebinding). Money is exact: decimal strings in JSON.

Queries run on one worker thread of the server's own, so a SQLite ledger keeps one connection however many
requests the browser makes. The server does not close the ledger: whoever opened it does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import IO, Any, Final, TypeVar
from urllib.parse import parse_qs, urlsplit

from agentcost._errors import TreeFormatError
from agentcost._ledger import Ledger, LedgerError, SpendRow
from agentcost._money import ZERO
from agentcost._span import Span, format_span_id

__all__ = ["DEFAULT_PORT", "DashboardServer", "dashboard_summary", "run_dashboard", "run_tree", "serve_dashboard"]

logger = logging.getLogger("agentcost")

DEFAULT_PORT: Final = 8765
"""The port :func:`run_dashboard` listens on by default."""

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Sent with every response: the page may load its own script, stylesheet and images, and fetch its own API only."""

SECURITY_HEADERS: Final = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
)

STATIC_FILES: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}
"""Paths served from the package's ``dashboard`` directory, with their content types."""

MAX_SERIES: Final = 8
"""Teams drawn as series of their own on the time chart; the rest are summed into one ``other`` series."""

_RUN_PATH: Final = re.compile(r"/api/runs/([0-9a-f]{16})")
_WILDCARD_HOSTS: Final = ("", "0.0.0.0", "::")
_JSON_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_JSON_UNSAFE: Final = re.compile("[<>&\u2028\u2029]")

_T = TypeVar("_T")


def to_json(value: object) -> bytes:
    """``value`` as JSON that is safe anywhere, even inside a ``<script>`` element: ``<``, ``>``, ``&``, U+2028 and
    U+2029 are written as ``\\uXXXX`` escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _JSON_UNSAFE.sub(lambda match: _JSON_ESCAPES[match.group()], text).encode("utf-8")


def money(amount: Decimal) -> str:
    """Exact dollars as a decimal string, never in exponent form and without trailing zeros (``"0.0125"``)."""
    if not amount:
        return "0"
    return format(amount.normalize(), "f")


def _cents(value: float) -> str:
    """An estimate (a band's edge, a projection) in dollars, rounded to the cent."""
    return money(Decimal(repr(value)).quantize(Decimal("0.01")))


def _day(value: date | str | None) -> date:
    if value is None:
        return datetime.now(UTC).date()
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(value)


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _budget(value: Decimal | str | int | None) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Decimal | str | int):
        raise TypeError(f"budget is dollars as a Decimal, str or int, got {value!r}")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"budget must be a positive amount of dollars, got {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise ValueError(f"budget must be a positive amount of dollars, got {value!r}")
    return amount


def _rows(rows: Iterable[SpendRow]) -> list[dict[str, Any]]:
    """Spend groups of one key, most expensive first (unpriced-only groups after the priced ones)."""
    ordered = sorted(rows, key=lambda row: (-row.cost, -row.unpriced, row.key[0] is None, row.key[0] or ""))
    return [
        {
            "key": row.key[0],
            "cost": money(row.cost),
            "unpriced": row.unpriced,
            "calls": row.calls,
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
        }
        for row in ordered
        if row.cost or row.unpriced or row.calls
    ]


def dashboard_summary(
    ledger: Ledger,
    *,
    days: int = 30,
    budget: Decimal | str | int | None = None,
    today: date | str | None = None,
    top_runs: int = 15,
) -> dict[str, Any]:
    """What ``/api/summary`` returns: the ``days`` UTC days up to and including ``today`` (default: today).

    * ``daily``: the days, and one series per team (exact daily spend, the top :data:`MAX_SERIES` teams by spend,
      the rest summed in one series marked ``other``), for the stacked time chart;
    * ``by_feature``, ``by_model``: spend over the period per feature and per model, most expensive first;
    * ``top_runs``: the most expensive runs started in the period;
    * ``anomalies``: team-days whose spend stands out (:func:`agentcost.analytics.anomalies`);
    * ``forecast``: the month of ``today`` (:func:`agentcost.analytics.forecast`), its cumulative spend so far, the
      projected path to the month's end with its band, and the band of one future day;
    * ``budget``: with a monthly ``budget``, its runway (:func:`agentcost.analytics.runway`) and burn-down.

    Money is a decimal string: exact for spend; band edges and projections are estimates, rounded to the cent.
    """
    from agentcost import analytics

    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
        raise ValueError(f"days must be an int from 1 to 3660, got {days!r}")
    amount = _budget(budget)
    end = _day(today)
    start = end - timedelta(days=days - 1)
    since, until = _epoch(start), _epoch(end + timedelta(days=1))

    by_team = analytics.daily_spend(ledger, ("team",), start=start, end=end)
    team_rows = {row.key[0]: row for row in ledger.spend(("team",), since=since, until=until)}
    ranked = sorted(
        by_team.items(),
        key=lambda item: (-sum((cost for _, cost in item[1]), ZERO), item[0][0] is None, item[0][0] or ""),
    )
    series: list[dict[str, Any]] = []
    shown, rest = ranked[:MAX_SERIES], ranked[MAX_SERIES:]
    if len(rest) == 1:
        shown, rest = ranked, []
    for (team,), points in shown:
        row = team_rows.get(team)
        series.append(
            {
                "key": team,
                "other": False,
                "total": money(sum((cost for _, cost in points), ZERO)),
                "unpriced": 0 if row is None else row.unpriced,
                "values": [money(cost) for _, cost in points],
            }
        )
    if rest:
        summed = [sum((points[i][1] for _, points in rest), ZERO) for i in range(days)]
        series.append(
            {
                "key": None,
                "other": True,
                "teams": len(rest),
                "total": money(sum(summed, ZERO)),
                "unpriced": sum(team_rows[team].unpriced for (team,), _ in rest if team in team_rows),
                "values": [money(cost) for cost in summed],
            }
        )
    day_list = [start + timedelta(days=i) for i in range(days)]
    totals = [sum((points[i][1] for _, points in by_team.items()), ZERO) for i in range(days)]

    found = analytics.anomalies(ledger, ("team",), start=start, end=end)
    outlook = analytics.forecast(ledger, as_of=end)
    month_start = date.fromisoformat(f"{outlook.month}-01")
    month_end = (month_start + timedelta(days=32)).replace(day=1) - timedelta(days=1)

    cumulative: list[dict[str, str]] = []
    running = ZERO
    for day, cost in outlook.series:
        running += cost
        cumulative.append({"day": day.isoformat(), "cost": money(cost), "cumulative": money(running)})
    # the projected path from as_of to the month's end: linear in the mean, the band widening with the square root
    # of the days ahead; its last point is the forecast's own (exact) expected total and band
    path: list[dict[str, str]] = []
    spent, left = float(outlook.spent), outlook.days_left
    ahead, spread = float(outlook.expected - outlook.spent), float(outlook.high - outlook.expected)
    for k in range(1, left):
        share = k / left
        width = spread * math.sqrt(share)
        path.append(
            {
                "day": (outlook.as_of + timedelta(days=k)).isoformat(),
                "expected": _cents(spent + ahead * share),
                "low": _cents(spent + max(0.0, ahead * share - width)),
                "high": _cents(spent + ahead * share + width),
            }
        )
    now = money(outlook.spent)
    path.insert(0, {"day": outlook.as_of.isoformat(), "expected": now, "low": now, "high": now})
    if left:
        last_day = (outlook.as_of + timedelta(days=left)).isoformat()
        low, high = money(outlook.low), money(outlook.high)
        path.append({"day": last_day, "expected": money(outlook.expected), "low": low, "high": high})
    future = [(outlook.as_of + timedelta(days=k)).isoformat() for k in range(1, outlook.days_left + 1)]

    burn: dict[str, Any] | None = None
    if amount is not None:
        way = analytics.runway(ledger, amount, start=month_start, as_of=end)
        horizon = month_end
        if way.runs_out_on is not None and way.runs_out_on > horizon:
            horizon = min(way.runs_out_on, month_end + timedelta(days=62))
        rate = float(way.burn_rate)
        projection = [
            {"day": (way.as_of + timedelta(days=k)).isoformat(), "cumulative": _cents(float(way.spent) + rate * k)}
            for k in range((horizon - way.as_of).days + 1)
        ]
        burn = {
            "budget": money(way.budget),
            "spent": money(way.spent),
            "remaining": money(way.remaining),
            "burn_rate": money(way.burn_rate),
            "runs_out_on": None if way.runs_out_on is None else way.runs_out_on.isoformat(),
            "as_of": way.as_of.isoformat(),
            "used": round(way.used, 6),
            "start": month_start.isoformat(),
            "end": horizon.isoformat(),
            "month_end": month_end.isoformat(),
            "cumulative": [{"day": item["day"], "cumulative": item["cumulative"]} for item in cumulative],
            "projection": projection,
        }

    overall = ledger.spend(("kind",), since=since, until=until)
    return {
        "currency": "USD",
        "generated_at": _iso(datetime.now(UTC).timestamp()),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "days": days,
        "total": money(sum((row.cost for row in overall), ZERO)),
        "unpriced": sum(row.unpriced for row in overall),
        "calls": sum(row.calls for row in overall),
        "daily": {
            "days": [day.isoformat() for day in day_list],
            "totals": [money(cost) for cost in totals],
            "series": series,
        },
        "by_feature": _rows(ledger.spend(("feature",), since=since, until=until)),
        "by_model": _rows(ledger.spend(("model",), since=since, until=until)),
        "top_runs": [
            {
                "run_id": format_span_id(run.run_id),
                "name": run.name,
                "started_at": _iso(run.started_at),
                "ended_at": _iso(run.ended_at),
                "status": run.status,
                "attrs": dict(run.attrs),
                "cost": money(run.cost),
                "unpriced": run.unpriced,
                "spans": run.spans,
            }
            for run in ledger.runs(since=since, until=until, limit=top_runs)
        ],
        "anomalies": [
            {
                "key": anomaly.key[0],
                "day": anomaly.day.isoformat(),
                "cost": money(anomaly.cost),
                "baseline": money(anomaly.baseline),
                "ratio": None if anomaly.ratio is None else round(anomaly.ratio, 3),
                "zscore": round(anomaly.zscore, 3),
            }
            for anomaly in found
        ],
        "forecast": {
            "month": outlook.month,
            "as_of": outlook.as_of.isoformat(),
            "month_start": month_start.isoformat(),
            "month_end": month_end.isoformat(),
            "spent": money(outlook.spent),
            "expected": money(outlook.expected),
            "low": money(outlook.low),
            "high": money(outlook.high),
            "daily_mean": money(outlook.daily_mean),
            "daily_low": money(outlook.daily_low),
            "daily_high": money(outlook.daily_high),
            "level": outlook.level,
            "days_left": outlook.days_left,
            "cumulative": cumulative,
            "path": path,
            "future_days": future,
        },
        "budget": burn,
    }


def _node(span: Span, parent: Mapping[str, str]) -> dict[str, Any]:
    attrs = dict(span.attrs)
    usage = span.usage
    return {
        "id": format_span_id(span.id),
        "name": span.name,
        "kind": span.kind,
        "status": span.status,
        "model": span.model,
        "requested_model": span.requested_model,
        "provider": span.provider,
        "cost_source": span.cost_source,
        "cost": None if span.cost is None else money(span.cost),
        "total_cost": money(span.total_cost),
        "total_unpriced": span.total_unpriced,
        "attrs": attrs,
        "own_attrs": {key: value for key, value in attrs.items() if parent.get(key) != value},
        "notes": list(span.notes),
        "degraded": span.status in ("degraded", "skipped") or bool(span.notes),
        "error": span.error,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "started_at": _iso(span.started_at),
        "duration": None if span.ended_at is None else round(span.ended_at - span.started_at, 6),
        "children": [],
    }


def run_tree(ledger: Ledger, run_id: int) -> dict[str, Any]:
    """What ``/api/runs/<run id>`` returns: the run's cost tree, every node with its name, kind, self ``cost``
    (``None`` when unpriced) and inclusive ``total_cost``, ``total_unpriced``, status, model, attribution (``attrs``,
    and ``own_attrs``: what it adds to its parent's), ``notes`` (why a budget degraded or skipped it) and
    ``children``; and the run's budget events. Raises :class:`LedgerError` when the run is not in the ledger."""
    tree = ledger.tree(run_id)
    root = tree.root
    top = _node(root, {})
    stack: list[tuple[Span, dict[str, Any]]] = [(root, top)]
    while stack:  # iterative: a deep tree must not exhaust the recursion limit
        span, out = stack.pop()
        for child in span.children:
            node = _node(child, span.attrs)
            out["children"].append(node)
            stack.append((child, node))
    return {
        "run_id": format_span_id(root.id),
        "name": root.name,
        "status": root.status,
        "started_at": _iso(root.started_at),
        "ended_at": _iso(root.ended_at),
        "attrs": dict(root.attrs),
        "total_cost": money(root.total_cost),
        "total_unpriced": root.total_unpriced,
        "spans": len(tree),
        "events": [
            {
                "kind": event.kind,
                "node": event.node,
                "metric": event.metric,
                "spent": event.spent,
                "limit": event.limit,
                "detail": event.detail,
                "denied": event.denied,
                "at": _iso(event.at),
            }
            for event in ledger.budget_events(run_id=run_id)
        ],
        "root": top,
    }


def _static(name: str) -> bytes:
    return resources.files("agentcost").joinpath("dashboard", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "agentcost-dashboard"
    sys_version = ""

    def end_headers(self) -> None:
        for name, value in SECURITY_HEADERS:  # every response, errors sent by http.server itself included
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _refuse_method(self) -> None:
        self._send(HTTPStatus.METHOD_NOT_ALLOWED, *self._error("only GET and HEAD"), body=True, allow=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method

    def _error(self, message: str) -> tuple[bytes, str]:
        return to_json({"error": message}), "application/json"

    def _send(self, status: HTTPStatus, payload: bytes, content_type: str, *, body: bool, allow: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        if allow:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def _respond(self, *, body: bool) -> None:
        dashboard = self.server.dashboard
        if not dashboard.host_allowed(self.headers.get("Host")):
            self._send(HTTPStatus.MISDIRECTED_REQUEST, *self._error("unknown Host"), body=body)
            return
        parts = urlsplit(self.path)
        path = parts.path
        try:
            if path in STATIC_FILES:
                name, content_type = STATIC_FILES[path]
                self._send(HTTPStatus.OK, _static(name), content_type, body=body)
                return
            if path == "/api/summary":
                query = parse_qs(parts.query)
                days = dashboard.days
                if "days" in query:
                    text = query["days"][-1]
                    if not text.isdigit() or not 1 <= int(text) <= 3660:
                        self._send(HTTPStatus.BAD_REQUEST, *self._error("days is 1 to 3660"), body=body)
                        return
                    days = int(text)
                summary = dashboard.call(
                    lambda: dashboard_summary(
                        dashboard.ledger, days=days, budget=dashboard.budget, today=dashboard.today
                    )
                )
                self._send(HTTPStatus.OK, to_json(summary), "application/json", body=body)
                return
            match = _RUN_PATH.fullmatch(path)
            if match is None:
                self._send(HTTPStatus.NOT_FOUND, *self._error("not found"), body=body)
                return
            run_id = int(match.group(1), 16)
            try:
                tree = dashboard.call(lambda: run_tree(dashboard.ledger, run_id))
            except LedgerError:
                tree = None
            except TreeFormatError as error:  # records no tree can be rebuilt from: say why
                message = f"run {match.group(1)} cannot be rebuilt from the ledger: {error}"
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, *self._error(message), body=body)
                return
            if run_id == 0 or tree is None:
                self._send(HTTPStatus.NOT_FOUND, *self._error(f"no run {match.group(1)} in the ledger"), body=body)
                return
            self._send(HTTPStatus.OK, to_json(tree), "application/json", body=body)
        except Exception:
            logger.exception("agentcost dashboard: %s failed", path)
            self._send(
                HTTPStatus.INTERNAL_SERVER_ERROR, *self._error("internal error: see the server's log"), body=body
            )


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Stopping must not wait for a request thread a client keeps open (a browser's idle keep-alive connection):
    # they are daemon threads and only read the ledger through the query worker.
    block_on_close = False
    dashboard: DashboardServer


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class DashboardServer:
    """A running dashboard (see :func:`serve_dashboard`): :attr:`url`, and :meth:`shutdown` (or use it as a context
    manager). The ledger is not closed with it."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        days: int = 30,
        budget: Decimal | str | int | None = None,
        today: date | str | None = None,
    ) -> None:
        if not isinstance(ledger, Ledger):
            raise TypeError(f"ledger must be an agentcost.ledger.Ledger, got {type(ledger).__name__}")
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3660:
            raise ValueError(f"days must be an int from 1 to 3660, got {days!r}")
        self.ledger = ledger
        self.days = days
        self.budget = _budget(budget)
        self.today = None if today is None else _day(today)
        """The last day shown (``None``: today, UTC, at each request)."""
        server_class = _HTTPServer6 if ":" in host else _HTTPServer
        self._http = server_class((host, port), _Handler)
        self._http.dashboard = self
        self.host = host
        self.port: int = self._http.server_address[1]
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentcost-dashboard-query")
        self._thread: threading.Thread | None = None
        names = {host, "127.0.0.1", "localhost", "[::1]", f"[{host}]"}
        self._hosts = None if host in _WILDCARD_HOSTS else {f"{name}:{self.port}".lower() for name in names}

    @property
    def url(self) -> str:
        """The dashboard's address, ``http://127.0.0.1:PORT/``."""
        shown = "127.0.0.1" if self.host in _WILDCARD_HOSTS else self.host
        return f"http://[{shown}]:{self.port}/" if ":" in shown else f"http://{shown}:{self.port}/"

    def host_allowed(self, header: str | None) -> bool:
        """Whether a request's ``Host`` header names this server (any Host when bound to every interface)."""
        return self._hosts is None or (header is not None and header.lower() in self._hosts)

    def call(self, query: Callable[[], _T]) -> _T:
        """Run ``query`` on the server's query thread and return its result."""
        return self._queries.submit(query).result()

    def start(self) -> DashboardServer:
        """Serve in a background thread; returns ``self``."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._http.serve_forever, kwargs={"poll_interval": 0.1}, name="agentcost-dashboard", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`shutdown` is called from another, or ``KeyboardInterrupt``."""
        try:
            self._http.serve_forever(poll_interval=0.1)
        finally:
            self.close()

    def shutdown(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._http.shutdown()
            thread.join(10)
        self.close()

    def close(self) -> None:
        self._http.server_close()
        self._queries.shutdown(wait=True)

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<DashboardServer {self.url} ledger={getattr(self.ledger, 'url', '?')!r}>"


def serve_dashboard(
    ledger: Ledger,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    days: int = 30,
    budget: Decimal | str | int | None = None,
    today: date | str | None = None,
) -> DashboardServer:
    """Serve the dashboard of ``ledger`` in a background thread and return the running server.

    ``host`` is loopback by default (``0.0.0.0`` exposes the ledger's spend to the network: there is no
    authentication); ``port=0`` picks a free port (read :attr:`DashboardServer.url`). The charts cover the ``days``
    UTC days up to ``today`` (default: today, at each request); ``budget`` is a monthly budget in dollars, drawn
    as a burn-down with the day it runs out at the current pace. Call :meth:`DashboardServer.shutdown` when done.
    """
    return DashboardServer(ledger, host=host, port=port, days=days, budget=budget, today=today).start()


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (a service manager's stop, or a parent that started us with SIGINT ignored) stops the server the way
    Ctrl-C does; the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_dashboard(
    ledger: Ledger | str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    days: int = 30,
    budget: Decimal | str | int | None = None,
    today: date | str | None = None,
    open_browser: bool = False,
    out: IO[str] | None = None,
) -> None:
    """Serve the dashboard until Ctrl-C or SIGTERM (``agentcost dashboard --ledger PATH --port N --budget 1500``).

    ``ledger`` is a :class:`~agentcost.ledger.Ledger` or a URL/path for :func:`agentcost.ledger.open_ledger` (then
    opened here and closed on exit). The address is printed to ``out`` (default: standard output) and, with
    ``open_browser``, opened in the default browser. Other arguments as :func:`serve_dashboard`.
    """
    from agentcost.ledger import open_ledger

    owned = not isinstance(ledger, Ledger)
    opened = open_ledger(ledger) if not isinstance(ledger, Ledger) else ledger
    try:
        server = DashboardServer(opened, host=host, port=port, days=days, budget=budget, today=today)
        stream = sys.stdout if out is None else out
        print(f"agentcost dashboard: {server.url}  (ledger {opened.url}; Ctrl-C to stop)", file=stream, flush=True)
        if host in _WILDCARD_HOSTS:
            print("warning: listening on every interface, with no authentication", file=stream, flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(server.url)
        with contextlib.suppress(KeyboardInterrupt), _stop_on_sigterm():
            server.serve_forever()
    finally:
        if owned:
            opened.close()
