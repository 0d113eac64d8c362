"""Alerts: rules that watch live spend and the ledger, and sinks that deliver what they find.

Two kinds of rule, one kind of result (:class:`Alert`):

* **Live rules** (:class:`SpendOver`, :class:`BudgetUsed`, or your own :class:`LiveRule` or plain function) run in an
  :class:`AlertMonitor`, which is a :class:`~agentcost.SpanSink`: attach it with ``agentcost.run(..., sinks=[monitor])``
  or :func:`agentcost.add_sink`. On the agent's call path the monitor only updates running totals in memory and, on
  a breach, queues the alert; a background thread hands alerts to the monitor's alert sinks.
* **Ledger rules** (:class:`DailySpendTrend`, :class:`BudgetUsedOnLedger`, or your own :class:`LedgerRule`) are
  evaluated on demand against a :class:`~agentcost.ledger.Ledger`, by :func:`evaluate` or a :class:`LedgerAlerts`.

Every alert carries a dedup ``key`` naming the breach (``spend-over:conversation=c-42``); a monitor or an evaluator
delivers each key once, so a rule fires once per breach however often it is checked. Alert sinks are where alerts go:
:class:`LogSink` (the ``agentcost.alerts`` logger), :class:`WebhookSink` (an HTTP POST of :meth:`Alert.to_dict`, from a
background thread with a bounded queue and retries) and :class:`CallbackSink` (any Python callable). A sink that fails
is counted and logged, never re-raised into the agent. Importing :mod:`agentcost` does not import this module.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableSet, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from agentcost._money import EXACT, ZERO, exact_add, format_usd, to_money
from agentcost._span import format_span_id
from agentcost._store import window_key
from agentcost._worker import QueueWorker

if TYPE_CHECKING:
    from agentcost._budget import BudgetEvent
    from agentcost._ledger import Ledger
    from agentcost._span import Span
    from agentcost._tree import CostTree

__all__ = [
    "Alert",
    "AlertMonitor",
    "AlertSink",
    "BudgetUsed",
    "BudgetUsedOnLedger",
    "CallbackSink",
    "DailySpendTrend",
    "DeliveryStats",
    "LedgerAlerts",
    "LedgerRule",
    "LiveRule",
    "LogSink",
    "MonitorStats",
    "Severity",
    "SpendOver",
    "WebhookSink",
    "default_ledger_rules",
    "evaluate",
]

logger = logging.getLogger("agentcost.alerts")

Severity = Literal["info", "warning", "critical"]
SEVERITIES: Final = frozenset(("info", "warning", "critical"))
_LEVELS: Final = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}
CENT: Final = Decimal("0.01")
STATE_FORMAT: Final = "agentcost.alerts.fired"


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fraction(value: object, what: str = "fraction") -> Decimal:
    """A fraction in (0, 1] as a Decimal; floats are refused like money."""
    fraction = to_money(value, what=what)
    if not 0 < fraction <= 1:
        raise ValueError(f"{what} must be in (0, 1], got {fraction}")
    return fraction


def _amount(value: object, what: str) -> Decimal:
    """A positive amount of dollars; floats are refused (see :func:`agentcost.to_money`)."""
    amount = to_money(value, what=what)
    if not amount > 0:
        raise ValueError(f"{what} must be a positive amount of dollars, got {amount}")
    return amount


def _check_severity(severity: object) -> Severity:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {sorted(SEVERITIES)}, got {severity!r}")
    return severity  # type: ignore[return-value]


def _check_name(name: object) -> str:
    if type(name) is not str or not name:
        raise ValueError(f"a rule name is a non-empty str, got {name!r}")
    return name


def _show(metric: str | None, value: Decimal | int) -> str:
    return format_usd(Decimal(value)) if metric == "cost" else f"{value} {metric}"


def _percent(used: Decimal | int, limit: Decimal | int) -> str:
    if not limit:
        return "100%"
    return f"{Decimal(used) * 100 / Decimal(limit):.0f}%"


# -- the alert -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One breach found by a rule: what, about whom, how bad, and the key that makes it fire once."""

    rule: str
    """The name of the rule that fired (``spend-over``, ``budget-used``, ``daily-spend-trend``, ...)."""
    subject: str
    """What the alert is about: ``conversation=c-42``, ``run 'answer'``, ``team=search``, ``all``."""
    message: str
    """A sentence for people."""
    severity: Severity = "warning"
    """``info``, ``warning`` or ``critical``."""
    observed: Decimal | int | None = None
    """The value that breached: dollars as a ``Decimal``, tokens and calls as an ``int``; ``None`` if unknown."""
    threshold: Decimal | int | None = None
    """The value it was compared with, in the same unit."""
    at: float = field(default_factory=time.time)
    """When the breach happened or was found, in seconds since the epoch."""
    key: str = ""
    """The dedup key: one alert per key (default: ``rule:subject``)."""
    details: Mapping[str, str] = field(default_factory=dict, hash=False)
    """More context, as strings (the run id, the day, the baseline, ...)."""

    def __post_init__(self) -> None:
        _check_name(self.rule)
        _check_severity(self.severity)
        for name in ("observed", "threshold"):
            value = getattr(self, name)
            if isinstance(value, float):
                raise TypeError(f"Alert.{name} is a Decimal (dollars) or an int (tokens, calls), not float {value!r}")
        if not self.key:
            object.__setattr__(self, "key", f"{self.rule}:{self.subject}")
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (money as a decimal string, ``at`` as ISO 8601 UTC): the webhook's body. ``text`` repeats
        the message, so Slack- and Mattermost-style incoming webhooks show it as is."""
        return {
            "text": self.message,
            "rule": self.rule,
            "subject": self.subject,
            "message": self.message,
            "severity": self.severity,
            "observed": None if self.observed is None else str(self.observed),
            "threshold": None if self.threshold is None else str(self.threshold),
            "at": _iso(self.at),
            "key": self.key,
            "details": dict(self.details),
        }


# -- alert sinks -----------------------------------------------------------------------------------------------------
@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go. ``send`` is called from a monitor's delivery thread (or by :func:`evaluate`), never on the
    agent's call path; it should not block for long (hand slow work to a thread of your own, as :class:`WebhookSink`
    does)."""

    def send(self, alert: Alert) -> None:
        """Deliver ``alert`` (or queue it for delivery)."""

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything sent before this call is delivered or given up; ``False`` on timeout."""

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, then release threads and connections."""


@dataclass(frozen=True, slots=True)
class DeliveryStats:
    """What an alert sink did: ``received == sent + failed + dropped + queued``."""

    received: int
    sent: int
    failed: int
    """Alerts whose delivery raised (after every retry, for a webhook)."""
    dropped: int
    """Alerts refused because the queue was full (or left in it at close)."""
    queued: int


class LogSink:
    """Logs each alert on the ``agentcost.alerts`` logger (or ``logger``): ``critical`` at ERROR, ``warning`` at
    WARNING, ``info`` at INFO. The alert is attached to the record as ``record.alert``."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger("agentcost.alerts")
        self._sent = 0

    def send(self, alert: Alert) -> None:
        self.logger.log(_LEVELS[alert.severity], "%s", alert.message, extra={"alert": alert})
        self._sent += 1

    def flush(self, timeout: float | None = 10.0) -> bool:
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        return True

    def stats(self) -> DeliveryStats:
        return DeliveryStats(self._sent, self._sent, 0, 0, 0)


class CallbackSink:
    """Calls ``fn(alert)`` for each alert, on the thread that delivers it (a monitor's delivery thread). An exception
    from ``fn`` is counted in :meth:`stats` (``failed``) and logged once, never re-raised."""

    def __init__(self, fn: Callable[[Alert], object]) -> None:
        if not callable(fn):
            raise TypeError(f"CallbackSink needs a callable, got {type(fn).__name__}")
        self.fn = fn
        self._sent = 0
        self._failed = 0
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> None:
        try:
            self.fn(alert)
        except Exception as error:
            with self._lock:
                self._failed += 1
                first = self._failed == 1
            if first:
                logger.error("agentcost alert callback %r raised %r; counted, never re-raised", self.fn, error)
            return
        with self._lock:
            self._sent += 1

    def flush(self, timeout: float | None = 10.0) -> bool:
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        return True

    def stats(self) -> DeliveryStats:
        with self._lock:
            return DeliveryStats(self._sent + self._failed, self._sent, self._failed, 0, 0)


def _retryable(error: BaseException) -> bool:
    """Network errors, timeouts, 5xx, 408 and 429 are retried; other 4xx answers will not change."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code >= 500 or error.code in (408, 429)
    return isinstance(error, OSError)


class WebhookSink:
    """POSTs each alert as JSON (:meth:`Alert.to_dict`) to ``url``, from a background thread.

    ``send`` appends to a queue of at most ``max_queue`` alerts and returns (an alert that finds it full is dropped
    and counted); the thread posts them one by one with a ``timeout`` (seconds) per request, retrying network errors,
    timeouts, 5xx, 408 and 429 answers up to ``attempts`` tries in all with exponential back-off (tenacity). An alert
    that still fails is counted in :meth:`stats` (``failed``) and logged. ``headers`` are added to every request (an
    ``Authorization`` token, say). ``flush()`` waits for what was sent before it; ``close()`` flushes and stops the
    thread, and runs at interpreter exit for a sink that was not closed.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        max_queue: int = 1_000,
        attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        if type(url) is not str or not url.startswith(("http://", "https://")):
            raise ValueError(f"a webhook URL is an http:// or https:// URL, got {url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        for name, value in (("max_queue", max_queue), ("attempts", attempts)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, int | float) or backoff < 0:
            raise ValueError(f"backoff must be non-negative seconds, got {backoff!r}")
        self.url = url
        self.timeout = float(timeout)
        self.headers = {"Content-Type": "application/json", "User-Agent": "agentcost-alerts", **(headers or {})}
        self.max_queue = max_queue
        self._retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=backoff, max=5.0),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        self._in_flight = 0
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._lock = threading.Lock()
        self._worker: QueueWorker[Alert] = QueueWorker(
            "agentcost-alerts-webhook", self._deliver_all, max_queue=max_queue
        )
        _open.add(self)

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for posting and return at once; drop and count it if the queue is full or closed."""
        if not self._worker.put(alert):
            with self._lock:
                self._dropped += 1

    def flush(self, timeout: float | None = 10.0) -> bool:
        return self._worker.flush(timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        flushed, left = self._worker.close(timeout)
        _open.discard(self)
        with self._lock:
            self._dropped += left
        stats = self.stats()
        if stats.failed or stats.dropped:
            logger.warning(
                "agentcost alert webhook %s: %d of %d alerts not delivered (%d failed, %d dropped)",
                self.url,
                stats.failed + stats.dropped,
                stats.received,
                stats.failed,
                stats.dropped,
            )
        return flushed

    def stats(self) -> DeliveryStats:
        with self._lock:
            queued = self._worker.queued() + self._in_flight
            return DeliveryStats(
                self._sent + self._failed + self._dropped + queued, self._sent, self._failed, self._dropped, queued
            )

    def _deliver_all(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            with self._lock:
                self._in_flight = 1
            self._deliver(alert)

    def _deliver(self, alert: Alert) -> None:
        body = json.dumps(alert.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        try:
            self._retrying(self._post, body)
        except Exception as error:
            with self._lock:
                self._failed += 1
                self._in_flight = 0
                first = self._failed == 1
            if first:
                logger.error("agentcost alert webhook %s failed: %r (later failures are counted)", self.url, error)
            else:
                logger.debug("agentcost alert webhook %s failed: %r", self.url, error)
            return
        with self._lock:
            self._sent += 1
            self._in_flight = 0

    def _post(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as error:
            error.close()  # it holds the response open
            raise


_open: weakref.WeakSet[WebhookSink | AlertMonitor] = weakref.WeakSet()


@atexit.register
def _close_open() -> None:
    for item in list(_open):
        item.close(timeout=5.0)


def _as_sink(sink: AlertSink | Callable[[Alert], object]) -> AlertSink:
    if isinstance(sink, AlertSink):
        return sink
    if callable(sink):
        return CallbackSink(sink)
    raise TypeError(
        f"an alert sink needs send(alert), flush() and close(), or is a callable; got {type(sink).__name__}"
    )


# -- live rules ------------------------------------------------------------------------------------------------------
class LiveRule:
    """A rule on live spans and budget events, run by an :class:`AlertMonitor`.

    Override :meth:`on_span`, :meth:`on_event` or both; return an :class:`Alert` on a breach, ``None`` otherwise. The
    monitor calls rules one at a time under its own lock, on the agent's call path and under the run's tree lock: keep
    them O(1), read the span's fields, and do not call tree methods that take the tree's lock (``tree.total``,
    ``tree.spans()``, ``tree.find()``). Returning the same ``key`` again is harmless: the monitor delivers a key once.
    """

    name: str = "custom"

    def on_span(self, span: Span, tree: CostTree) -> Alert | None:
        """``span`` finished in ``tree``'s run."""
        return None

    def on_event(self, event: BudgetEvent, tree: CostTree) -> Alert | None:
        """A budget of ``tree``'s run fired ``event``."""
        return None


class _SpanFunction(LiveRule):
    """A plain function ``fn(span, tree) -> Alert | None`` as a live rule."""

    def __init__(self, fn: Callable[[Span, CostTree], Alert | None]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", None) or type(fn).__name__

    def on_span(self, span: Span, tree: CostTree) -> Alert | None:
        return self.fn(span, tree)


def _as_live_rule(rule: LiveRule | Callable[[Span, CostTree], Alert | None]) -> LiveRule:
    if isinstance(rule, LiveRule):
        return rule
    if callable(rule):
        return _SpanFunction(rule)
    raise TypeError(f"a live rule is a LiveRule or a function (span, tree) -> Alert | None, got {type(rule).__name__}")


class SpendOver(LiveRule):
    """Fires once when the cumulative self cost of the spans attributed to one ``key`` value (a conversation, a user,
    a session, a team, any attribution key) reaches ``amount`` dollars.

    With ``per="day"`` the totals restart every UTC day (by the span's start, like the ledger's ``day``) and the rule
    fires at most once per day per subject. Totals are those of the spans the monitor sees, in this process, since it
    was created (use a ledger rule for spend across hosts); unpriced spans count as nothing. At most ``max_subjects``
    totals are kept: the least recently updated is forgotten first (it would start again from zero).
    """

    def __init__(
        self,
        key: str = "conversation",
        amount: Decimal | int | str = "5",
        *,
        per: Literal["day"] | None = None,
        severity: Severity = "warning",
        name: str = "spend-over",
        max_subjects: int = 100_000,
    ) -> None:
        if type(key) is not str or not key:
            raise ValueError(f"key is an attribution key such as 'conversation', got {key!r}")
        if per not in (None, "day"):
            raise ValueError(f"per is None (ever) or 'day' (per UTC day), got {per!r}")
        if type(max_subjects) is not int or max_subjects < 1:
            raise ValueError(f"max_subjects must be a positive int, got {max_subjects!r}")
        self.key = key
        self.amount = _amount(amount, "amount")
        self.per = per
        self.severity = _check_severity(severity)
        self.name = _check_name(name)
        self.max_subjects = max_subjects
        self._totals: OrderedDict[tuple[str, int], Decimal | None] = OrderedDict()
        """(value, UTC day number or 0) -> running total, or ``None`` once fired."""

    def on_span(self, span: Span, tree: CostTree) -> Alert | None:
        cost = span.cost
        if not cost:  # unpriced, or a container (no cost of its own)
            return None
        value = span._attrs.get(self.key)
        if value is None:
            return None
        day = int(span.started_at // 86_400) if self.per == "day" else 0
        subject = (value, day)
        totals = self._totals
        total = totals.get(subject, ZERO)
        if total is None:  # already fired
            totals.move_to_end(subject)
            return None
        total = exact_add(total, cost)
        if total < self.amount:
            totals[subject] = total
            totals.move_to_end(subject)
            if len(totals) > self.max_subjects:
                totals.popitem(last=False)
            return None
        totals[subject] = None
        totals.move_to_end(subject)
        return self._alert(value, day, total, span)

    def total(self, value: str, *, day: date | None = None) -> Decimal | None:
        """The running total of ``key=value`` (of ``day`` with ``per="day"``); ``None`` once the rule fired for it."""
        number = (day - date(1970, 1, 1)).days if day is not None and self.per == "day" else 0
        return self._totals.get((value, number), ZERO)

    def _alert(self, value: str, day: int, total: Decimal, span: Span) -> Alert:
        subject = f"{self.key}={value}"
        details = {"key": self.key, "value": value, "span_id": format_span_id(span.id)}
        if self.per == "day":
            when = (date(1970, 1, 1) + timedelta(days=day)).isoformat()
            details["day"] = when
            message = (
                f"{subject} has spent {format_usd(total)} on {when} (UTC), reaching the "
                f"{format_usd(self.amount)} a day alert threshold"
            )
            key = f"{self.name}:{subject}:{when}"
        else:
            message = f"{subject} has spent {format_usd(total)}, reaching the {format_usd(self.amount)} alert threshold"
            key = f"{self.name}:{subject}"
        return Alert(
            rule=self.name,
            subject=subject,
            message=message,
            severity=self.severity,
            observed=total,
            threshold=self.amount,
            at=span.ended_at if span.ended_at is not None else time.time(),
            key=key,
            details=details,
        )


_WINDOWS: Final = ("hour", "day", "month", "none")


class BudgetUsed(LiveRule):
    """Fires once per budget and metric when its ``warning`` event reports at least ``fraction`` used (severity
    ``warning``), and once when it is exceeded or refuses a call (severity ``critical``).

    It reads the budgets' own events, so it sees a fraction only once the budget's ``warn_at`` (0.8 by default) is
    reached: a warning that fires below ``fraction`` is ignored (set ``Budget(warn_at=...)`` at or below
    ``fraction``). A run's budgets are keyed by run, so each run's budget fires on its own; a scoped limit of a
    budget store (``limit team=search/day``) is keyed by its current window, so it fires once per window.
    ``metrics`` narrows the metrics watched (``cost``, ``tokens``, ``calls``).
    """

    def __init__(
        self,
        fraction: Decimal | int | str = "0.8",
        *,
        metrics: Sequence[str] = ("cost", "tokens", "calls"),
        exceeded: bool = True,
        name: str = "budget-used",
    ) -> None:
        self.fraction = _fraction(fraction)
        unknown = set(metrics) - {"cost", "tokens", "calls"}
        if isinstance(metrics, str) or unknown or not metrics:
            raise ValueError(f"metrics is a non-empty sequence of 'cost', 'tokens', 'calls', got {metrics!r}")
        self.metrics = frozenset(metrics)
        self.exceeded = bool(exceeded)
        self.name = _check_name(name)

    def on_event(self, event: BudgetEvent, tree: CostTree) -> Alert | None:
        if event.kind == "degraded" or event.metric not in self.metrics:
            return None
        if event.kind == "exceeded" and not self.exceeded:
            return None
        spent, limit = event.spent, event.limit
        if event.kind == "warning" and (
            spent is None or limit is None or Decimal(spent) < EXACT.multiply(self.fraction, Decimal(limit))
        ):
            return None
        root = tree.root
        details = {"run_id": format_span_id(root.id), "run": root.name, "metric": str(event.metric), "node": event.node}
        details.update({f"attr.{k}": v for k, v in root._attrs.items()})
        if event.node.startswith("limit "):
            scope = event.node
            window = event.node.rpartition("/")[2]
            if window in _WINDOWS:
                scope = f"{scope}@{window_key(window, time.time())}"
        else:
            scope = f"{event.node}@run {format_span_id(root.id)}"
        level = "exceeded" if event.kind == "exceeded" else "used"
        where = "" if event.node.startswith(("run ", "limit ")) else f" of run {root.name!r}"
        metric = event.metric
        if event.kind == "warning":
            assert spent is not None
            assert limit is not None
            message = (
                f"{event.node}{where} has used {_percent(spent, limit)} of its {metric} budget: "
                f"{_show(metric, spent)} of {_show(metric, limit)}"
            )
        elif event.denied or spent is None or limit is None:
            message = f"{event.node}{where} refused a call: {event.detail}"
        else:
            message = (
                f"{event.node}{where} is over its {metric} budget: {_show(metric, spent)} of {_show(metric, limit)}"
            )
        return Alert(
            rule=self.name,
            subject=event.node,
            message=message,
            severity="warning" if event.kind == "warning" else "critical",
            observed=spent,
            threshold=limit,
            key=f"{self.name}:{scope}:{event.metric}:{level}",
            details=details,
        )


@dataclass(frozen=True, slots=True)
class MonitorStats:
    """What a monitor did: ``fired`` alerts (new keys), of which ``delivered`` went to every sink, ``dropped`` were
    refused by a full queue, ``queued`` wait; ``duplicates`` were found again under a key already fired;
    ``rule_errors`` and ``sink_errors`` count exceptions (never re-raised)."""

    fired: int
    delivered: int
    dropped: int
    queued: int
    duplicates: int
    rule_errors: int
    sink_errors: int


class AlertMonitor:
    """A :class:`~agentcost.SpanSink` that runs live rules on every finished span and budget event, and delivers the
    alerts they find to ``sinks`` from a background thread.

    ``rules`` are :class:`LiveRule` instances or functions ``(span, tree) -> Alert | None``; ``sinks`` are alert sinks
    or callables ``(alert) -> None``. On the call path the monitor runs the rules under its lock (O(1) for the
    built-in rules), keeps the keys fired (the most recent ``max_keys``) so each key fires once, and queues new alerts
    (at most ``max_queue``; beyond, they are dropped and counted). A rule or sink that raises is counted and logged,
    never re-raised. ``flush()`` waits until queued alerts are delivered and flushes the sinks; ``close()`` also
    closes the sinks, and runs at interpreter exit for a monitor not closed.
    """

    def __init__(
        self,
        rules: Iterable[LiveRule | Callable[[Span, CostTree], Alert | None]],
        sinks: Iterable[AlertSink | Callable[[Alert], object]] = (),
        *,
        max_queue: int = 10_000,
        max_keys: int = 100_000,
    ) -> None:
        for name, value in (("max_queue", max_queue), ("max_keys", max_keys)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.rules = tuple(_as_live_rule(rule) for rule in rules)
        self.sinks = tuple(_as_sink(sink) for sink in sinks)
        self.max_queue = max_queue
        self.max_keys = max_keys
        self._span_rules = tuple(rule for rule in self.rules if type(rule).on_span is not LiveRule.on_span)
        self._event_rules = tuple(rule for rule in self.rules if type(rule).on_event is not LiveRule.on_event)
        self._lock = threading.Lock()
        self._fired: OrderedDict[str, None] = OrderedDict()
        self._counts = {"fired": 0, "delivered": 0, "dropped": 0, "duplicates": 0, "rule_errors": 0, "sink_errors": 0}
        self._in_flight = 0
        self._worker: QueueWorker[Alert] = QueueWorker("agentcost-alerts", self._deliver, max_queue=max_queue)
        _open.add(self)

    # -- the call path -----------------------------------------------------------------------------------------------
    def on_span(self, span: Span, tree: CostTree) -> None:
        """Run the span rules; queue what they find. Runs on the agent's call path."""
        if not self._span_rules:
            return
        with self._lock:
            for rule in self._span_rules:
                try:
                    alert = rule.on_span(span, tree)
                except Exception as error:
                    self._rule_failed(rule, error)
                    continue
                if alert is not None:
                    self._fire(alert, rule)

    def on_event(self, event: BudgetEvent, tree: CostTree) -> None:
        """Run the event rules; queue what they find."""
        if not self._event_rules:
            return
        with self._lock:
            for rule in self._event_rules:
                try:
                    alert = rule.on_event(event, tree)
                except Exception as error:
                    self._rule_failed(rule, error)
                    continue
                if alert is not None:
                    self._fire(alert, rule)

    def _fire(self, alert: object, rule: LiveRule) -> None:
        """Under the lock: queue ``alert`` unless its key fired already."""
        counts = self._counts
        if not isinstance(alert, Alert):
            self._rule_failed(rule, TypeError(f"a rule returns an Alert or None, got {type(alert).__name__}"))
            return
        fired = self._fired
        if alert.key in fired:
            counts["duplicates"] += 1
            fired.move_to_end(alert.key)
            return
        fired[alert.key] = None
        if len(fired) > self.max_keys:
            fired.popitem(last=False)
        counts["fired"] += 1
        if not self._worker.put(alert):
            counts["dropped"] += 1

    def _rule_failed(self, rule: LiveRule, error: Exception) -> None:
        self._counts["rule_errors"] += 1
        if self._counts["rule_errors"] == 1:
            logger.error("agentcost alert rule %s raised %r; counted, never re-raised", rule.name, error)

    # -- control -----------------------------------------------------------------------------------------------------
    def fired(self) -> list[str]:
        """The keys fired (the most recent ``max_keys``), oldest first; see :meth:`forget`."""
        with self._lock:
            return list(self._fired)

    def forget(self, key: str) -> None:
        """Let ``key`` fire again (a breach acknowledged and reset). Rules with state of their own, like
        :class:`SpendOver`, still fire once per subject."""
        with self._lock:
            self._fired.pop(key, None)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every alert queued before this call has gone to every sink, then flush the sinks."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._worker.flush(timeout):
            return False
        ok = True
        for sink in self.sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                ok = sink.flush(left) and ok
            except Exception as error:
                self._sink_failed(sink, error)
                ok = False
        return ok

    def close(self, timeout: float | None = 10.0) -> bool:
        """Flush, stop the delivery thread and close the sinks; alerts found afterwards are dropped and counted."""
        flushed = self.flush(timeout)
        _, left = self._worker.close(timeout)
        _open.discard(self)
        with self._lock:
            self._counts["dropped"] += left
        for sink in self.sinks:
            try:
                sink.close(timeout)
            except Exception as error:
                self._sink_failed(sink, error)
        return flushed

    def stats(self) -> MonitorStats:
        with self._lock:
            counts = dict(self._counts)
            queued = self._worker.queued() + self._in_flight
        return MonitorStats(
            counts["fired"],
            counts["delivered"],
            counts["dropped"],
            queued,
            counts["duplicates"],
            counts["rule_errors"],
            counts["sink_errors"],
        )

    def __enter__(self) -> AlertMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the delivery thread -----------------------------------------------------------------------------------------
    def _deliver(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            with self._lock:
                self._in_flight = 1
            for sink in self.sinks:
                try:
                    sink.send(alert)
                except Exception as error:
                    self._sink_failed(sink, error)
            with self._lock:
                self._in_flight = 0
                self._counts["delivered"] += 1

    def _sink_failed(self, sink: object, error: Exception) -> None:
        with self._lock:
            self._counts["sink_errors"] += 1
            first = self._counts["sink_errors"] == 1
        if first:
            logger.error("agentcost alert sink %s raised %r; counted, never re-raised", type(sink).__name__, error)


# -- ledger rules ----------------------------------------------------------------------------------------------------
class LedgerRule:
    """A rule evaluated on demand against a ledger: :meth:`evaluate` returns every breach it finds as of ``today``
    (UTC), each with a stable ``key``; the evaluator (:func:`evaluate`, :class:`LedgerAlerts`) drops the keys that
    fired already, so returning a standing breach again is expected."""

    name: str = "custom"

    def evaluate(self, ledger: Ledger, today: date) -> list[Alert]:
        raise NotImplementedError


class _LedgerFunction(LedgerRule):
    def __init__(self, fn: Callable[[Ledger, date], Iterable[Alert]]) -> None:
        self.fn = fn
        self.name = getattr(fn, "__name__", None) or type(fn).__name__

    def evaluate(self, ledger: Ledger, today: date) -> list[Alert]:
        return list(self.fn(ledger, today))


def _as_ledger_rule(rule: LedgerRule | Callable[[Ledger, date], Iterable[Alert]]) -> LedgerRule:
    if isinstance(rule, LedgerRule):
        return rule
    if callable(rule):
        return _LedgerFunction(rule)
    raise TypeError(f"a ledger rule is a LedgerRule or a function (ledger, today) -> alerts, got {type(rule).__name__}")


def _statistic(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise TypeError(f"{what} is a number, got {value!r}")
    number = float(value)
    if not number > 0:
        raise ValueError(f"{what} must be positive, got {value!r}")
    return number


class DailySpendTrend(LedgerRule):
    """Fires once per group and day when a group's daily spend (per ``by``: team, feature, user, ...) stands out from
    its trailing baseline: at least ``ratio`` times the trailing ``window``-day median, a robust z-score of at least
    ``zscore``, and at least ``min_cost`` dollars (see :func:`agentcost.analytics.anomalies`; ``None`` disables a
    test). The last ``days`` days up to ``today`` (included, so a day still running can fire) are checked.
    """

    def __init__(
        self,
        by: Sequence[str] = ("team",),
        *,
        ratio: float | Decimal | str | None = 2.0,
        zscore: float | Decimal | str | None = 3.5,
        window: int = 14,
        min_history: int = 7,
        min_cost: Decimal | int | str = "1",
        days: int = 7,
        where: Mapping[str, str] | None = None,
        severity: Severity = "warning",
        name: str = "daily-spend-trend",
    ) -> None:
        if isinstance(by, str) or not by:
            raise ValueError(f"by is a non-empty sequence of attribution keys such as ('team',), got {by!r}")
        if ratio is None and zscore is None:
            raise ValueError("enable at least one test: ratio or zscore")
        if type(days) is not int or days < 1:
            raise ValueError(f"days must be a positive int, got {days!r}")
        self.by = tuple(by)
        self.ratio = None if ratio is None else _statistic(ratio, "ratio")
        self.zscore = None if zscore is None else _statistic(zscore, "zscore")
        self.window = window
        self.min_history = min_history
        self.min_cost = to_money(min_cost, what="min_cost")
        self.days = days
        self.where = dict(where) if where else None
        self.severity = _check_severity(severity)
        self.name = _check_name(name)

    def evaluate(self, ledger: Ledger, today: date) -> list[Alert]:
        from agentcost.analytics import anomalies

        found = anomalies(
            ledger,
            self.by,
            start=today - timedelta(days=self.days - 1),
            end=today,
            window=self.window,
            min_history=self.min_history,
            ratio=self.ratio,
            zscore=self.zscore,
            min_cost=self.min_cost,
            where=self.where,
        )
        now = time.time()
        alerts: list[Alert] = []
        for anomaly in found:
            subject = anomaly.label
            times = f"{anomaly.ratio:.1f}x" if anomaly.ratio is not None else "far above"
            threshold = (
                (anomaly.baseline * Decimal(repr(self.ratio))).quantize(CENT, ROUND_HALF_EVEN)
                if self.ratio is not None
                else anomaly.baseline
            )
            alerts.append(
                Alert(
                    rule=self.name,
                    subject=subject,
                    message=(
                        f"{subject} spent {format_usd(anomaly.cost)} on {anomaly.day} (UTC), {times} its trailing "
                        f"median of {format_usd(anomaly.baseline)} a day"
                    ),
                    severity=self.severity,
                    observed=anomaly.cost,
                    threshold=threshold,
                    at=now,
                    key=f"{self.name}:{subject}:{anomaly.day}",
                    details={
                        "day": anomaly.day.isoformat(),
                        "baseline": str(anomaly.baseline),
                        "ratio": "" if anomaly.ratio is None else f"{anomaly.ratio:.2f}",
                        "zscore": f"{anomaly.zscore:.2f}",
                    },
                )
            )
        return alerts


class BudgetUsedOnLedger(LedgerRule):
    """Fires once per period when the ledger's spend (matching ``where``, or everything) in the current ``period``
    (``month`` or ``day``, UTC calendar) reaches ``fraction`` of ``budget`` dollars (severity ``warning``), and once
    when it goes over (``critical``; only that one if both happen between two evaluations). The message says when
    the budget runs out at the trailing week's pace (:func:`agentcost.analytics.runway`).
    """

    def __init__(
        self,
        budget: Decimal | int | str,
        *,
        fraction: Decimal | int | str = "0.8",
        period: Literal["month", "day"] = "month",
        where: Mapping[str, str] | None = None,
        name: str = "budget-used",
    ) -> None:
        self.budget = _amount(budget, "budget")
        self.fraction = _fraction(fraction)
        if period not in ("month", "day"):
            raise ValueError(f"period is 'month' or 'day', got {period!r}")
        self.period = period
        self.where = dict(where) if where else None
        self.name = _check_name(name)

    @property
    def subject(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in (self.where or {}).items()) or "all"

    def evaluate(self, ledger: Ledger, today: date) -> list[Alert]:
        from agentcost.analytics import runway

        start = today.replace(day=1) if self.period == "month" else today
        label = start.strftime("%Y-%m") if self.period == "month" else start.isoformat()
        state = runway(ledger, self.budget, start=start, as_of=today, where=self.where)
        spent = state.spent
        warn_at = EXACT.multiply(self.fraction, self.budget)
        if spent < warn_at:
            return []
        over = spent > self.budget
        subject = self.subject
        whose = "spend" if subject == "all" else f"{subject}'s spend"
        budget = f"the {self.period}ly budget of {format_usd(self.budget)} for {label}"
        if over:
            message = f"{whose} of {format_usd(spent)} is over {budget}"
        else:
            message = f"{whose} of {format_usd(spent)} has used {_percent(spent, self.budget)} of {budget}"
            if state.runs_out_on is not None:
                message += f"; at {format_usd(state.burn_rate, places=2)} a day it runs out on {state.runs_out_on}"
        return [
            Alert(
                rule=self.name,
                subject=subject,
                message=message,
                severity="critical" if over else "warning",
                observed=spent,
                threshold=self.budget if over else warn_at,
                key=f"{self.name}:{subject}:{label}:{'exceeded' if over else 'used'}",
                details={
                    "period": label,
                    "budget": str(self.budget),
                    "burn_rate": str(state.burn_rate),
                    "runs_out_on": "" if state.runs_out_on is None else state.runs_out_on.isoformat(),
                },
            )
        ]


def default_ledger_rules(
    budget: Decimal | int | str | None = None,
    *,
    by: Sequence[str] = ("team",),
    ratio: float = 2.0,
    fraction: Decimal | int | str = "0.8",
    where: Mapping[str, str] | None = None,
) -> list[LedgerRule]:
    """The rules ``agentcost alerts`` evaluates: each ``by`` group's daily spend trending ``ratio`` times its
    baseline, and, with a ``budget`` (dollars a month), that budget ``fraction`` used (spend matching ``where``)."""
    rules: list[LedgerRule] = [DailySpendTrend(by, ratio=ratio)]
    if budget is not None:
        rules.append(BudgetUsedOnLedger(budget, fraction=fraction, period="month", where=where))
    return rules


def _today(today: date | str | None) -> date:
    if today is None:
        return datetime.now(UTC).date()
    if isinstance(today, datetime):
        raise TypeError("today is a date (UTC), not a datetime")
    return today if isinstance(today, date) else date.fromisoformat(today)


def evaluate(
    ledger: Ledger,
    rules: Iterable[LedgerRule | Callable[[Ledger, date], Iterable[Alert]]] | None = None,
    *,
    today: date | str | None = None,
    fired: MutableSet[str] | None = None,
    sinks: Iterable[AlertSink | Callable[[Alert], object]] = (),
) -> list[Alert]:
    """Evaluate ledger ``rules`` (default: :func:`default_ledger_rules`) as of ``today`` (UTC; default: now) and
    return the alerts found, one per key, in rule order.

    Without ``fired`` every standing breach is returned (a one-shot report, as the CLI prints). With ``fired``, a set
    of keys kept by the caller between evaluations, keys in it are skipped and new keys added, so each breach fires
    once (:class:`LedgerAlerts` keeps that set for you, optionally in a file). The new alerts are also sent to
    ``sinks``. A rule that raises propagates, and then no key is added.
    """
    day = _today(today)
    checked = [_as_ledger_rule(rule) for rule in (default_ledger_rules() if rules is None else rules)]
    found: list[Alert] = []
    for rule in checked:
        for alert in rule.evaluate(ledger, day):
            if not isinstance(alert, Alert):
                raise TypeError(f"ledger rule {rule.name} returned {type(alert).__name__}, not an Alert")
            found.append(alert)
    seen: set[str] = set() if fired is None else set(fired)
    new: list[Alert] = []
    for alert in found:
        if alert.key in seen:
            continue
        seen.add(alert.key)
        new.append(alert)
        if fired is not None:
            fired.add(alert.key)
    delivery = [_as_sink(sink) for sink in sinks]
    for alert in new:
        for sink in delivery:
            try:
                sink.send(alert)
            except Exception as error:
                logger.error("agentcost alert sink %s raised %r; not re-raised", type(sink).__name__, error)
    return new


class LedgerAlerts:
    """Evaluates ledger ``rules`` on demand (:meth:`evaluate`) and delivers each breach once to ``sinks``.

    The keys fired are kept in memory, so calling :meth:`evaluate` again (from a scheduler, every hour say) only
    returns new breaches. Across processes that memory is the caller's: pass ``state``, a JSON file path, and the
    keys are loaded from it and written back (atomically) after each evaluation; the most recent ``max_keys`` are
    kept. Two evaluators must not share one state file at the same time.
    """

    def __init__(
        self,
        rules: Iterable[LedgerRule | Callable[[Ledger, date], Iterable[Alert]]] | None = None,
        sinks: Iterable[AlertSink | Callable[[Alert], object]] = (),
        *,
        state: str | os.PathLike[str] | None = None,
        max_keys: int = 100_000,
    ) -> None:
        if type(max_keys) is not int or max_keys < 1:
            raise ValueError(f"max_keys must be a positive int, got {max_keys!r}")
        self.rules = [_as_ledger_rule(rule) for rule in (default_ledger_rules() if rules is None else rules)]
        self.sinks = tuple(_as_sink(sink) for sink in sinks)
        self.state = None if state is None else Path(state)
        self.max_keys = max_keys
        self._fired: dict[str, None] = {}
        self._lock = threading.Lock()
        if self.state is not None and self.state.exists():
            self._fired = dict.fromkeys(self._load(self.state))

    @staticmethod
    def _load(path: Path) -> list[str]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"cannot read the alert state file {path}: {error}") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or not isinstance(data.get("keys"), list):
            raise ValueError(f"{path} is not an agentcost alert state file (format {STATE_FORMAT!r})")
        return [str(key) for key in data["keys"]]

    def _save(self) -> None:
        assert self.state is not None
        body = json.dumps({"format": STATE_FORMAT, "version": 1, "keys": list(self._fired)}, indent=0)
        directory = self.state.parent
        directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.state.name}.", dir=directory)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(body)
            os.replace(temporary, self.state)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @property
    def fired(self) -> frozenset[str]:
        """The keys fired so far."""
        with self._lock:
            return frozenset(self._fired)

    def evaluate(self, ledger: Ledger, *, today: date | str | None = None) -> list[Alert]:
        """Evaluate every rule as of ``today`` (UTC; default: now); send the new alerts to the sinks and return them."""
        with self._lock:
            keys = _OrderedKeys(self._fired)
            alerts = evaluate(ledger, self.rules, today=today, fired=keys)
            while len(self._fired) > self.max_keys:
                del self._fired[next(iter(self._fired))]
            if alerts and self.state is not None:
                self._save()
        for alert in alerts:
            for sink in self.sinks:
                try:
                    sink.send(alert)
                except Exception as error:
                    logger.error("agentcost alert sink %s raised %r; not re-raised", type(sink).__name__, error)
        return alerts

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Flush the sinks (a webhook's queue)."""
        results = [sink.flush(timeout) for sink in self.sinks]  # every sink, even after one timed out
        return all(results)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Close the sinks."""
        results = [sink.close(timeout) for sink in self.sinks]
        return all(results)

    def __enter__(self) -> LedgerAlerts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _OrderedKeys(MutableSet[str]):
    """A set view of an insertion-ordered dict of keys (so the oldest keys can be dropped first)."""

    def __init__(self, keys: dict[str, None]) -> None:
        self.keys = keys

    def __contains__(self, key: object) -> bool:
        return key in self.keys

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, value: str) -> None:
        self.keys[value] = None

    def discard(self, value: str) -> None:
        self.keys.pop(value, None)
