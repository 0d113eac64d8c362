"""FinOps analytics over a ledger (SQLite and PostgreSQL alike): daily spend series, cost per unit of work,
anomalies on daily spend, a month-end forecast with an uncertainty band, and budget runway.

Everything is computed from :meth:`agentcost.ledger.Ledger.spend` (exact ``Decimal`` sums grouped in SQL), so the
same numbers come out of both engines. Statistics (medians, deviations, bands) are computed on those exact daily
sums; a band's edges are rounded to the cent, since they are estimates.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

from agentcost._ledger import GROUP_COLUMNS, Ledger, LedgerError
from agentcost._money import ZERO

__all__ = [
    "Anomaly",
    "Forecast",
    "Runway",
    "UnitCost",
    "anomalies",
    "daily_spend",
    "forecast",
    "runway",
    "unit_costs",
]

CENT: Final = Decimal("0.01")
_MAD_TO_SIGMA: Final = 0.6745  # the robust z-score of Iglewicz and Hoaglin: 0.6745 (x - median) / MAD

Key = tuple[str | None, ...]


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _epoch(day: date) -> float:
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def _today() -> date:
    return datetime.now(UTC).date()


def daily_spend(
    ledger: Ledger,
    by: Sequence[str] = ("team",),
    *,
    start: date | str,
    end: date | str,
    where: Mapping[str, str] | None = None,
) -> dict[Key, list[tuple[date, Decimal]]]:
    """Exact spend per day from ``start`` to ``end`` (inclusive, UTC) for each group of ``by`` (``()``: one series
    for everything, keyed ``()``), days without spend filled with zero."""
    first, last = _day(start), _day(end)
    if last < first:
        raise LedgerError(f"end {last} is before start {first}")
    if "day" in by or "month" in by:
        raise LedgerError("daily_spend groups by day itself: leave day and month out of by")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    series: dict[Key, dict[date, Decimal]] = {}
    rows = ledger.spend((*by, "day"), since=_epoch(first), until=_epoch(last + timedelta(days=1)), where=where)
    for row in rows:
        key, day = row.key[:-1], row.key[-1]
        assert day is not None
        series.setdefault(key, {})[date.fromisoformat(day)] = row.cost
    if not by and not series:
        series[()] = {}
    return {key: [(day, found.get(day, ZERO)) for day in days] for key, found in sorted(series.items(), key=_order)}


def _order(item: tuple[Key, object]) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, value or "") for value in item[0])


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One day whose spend stands out from its own trailing baseline."""

    by: tuple[str, ...]
    key: Key
    day: date
    cost: Decimal
    baseline: Decimal
    """The median daily spend of the trailing window."""
    ratio: float | None
    """``cost / baseline`` (``None`` when the baseline is zero)."""
    zscore: float
    """The robust z-score: ``0.6745 (cost - median) / MAD`` (MAD floored, see :func:`anomalies`)."""

    @property
    def label(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in zip(self.by, self.key, strict=True)) or "all"

    def describe(self) -> str:
        times = f"{self.ratio:.1f}x" if self.ratio is not None else "new"
        return f"{self.label}: ${self.cost} on {self.day}, {times} its trailing baseline ${self.baseline}"


def anomalies(
    ledger: Ledger,
    by: Sequence[str] = ("team",),
    *,
    start: date | str,
    end: date | str,
    window: int = 14,
    min_history: int = 7,
    ratio: float | None = 2.0,
    zscore: float | None = 3.5,
    min_cost: Decimal | str = "1",
    where: Mapping[str, str] | None = None,
) -> list[Anomaly]:
    """Days from ``start`` to ``end`` on which a group's spend is anomalous against its trailing ``window`` days.

    A day is flagged when it has at least ``min_history`` days before it and every enabled test passes: spend is at
    least ``ratio`` times the trailing median, its robust z-score is at least ``zscore``, and spend is at least
    ``min_cost`` dollars (small teams' noise is not news). ``ratio=None`` or ``zscore=None`` disables that test.
    The MAD is floored at 5 % of the median (and at one cent) so that a perfectly steady history does not make every
    cent of change infinitely significant. History before ``start`` is read so the first days have a baseline; a
    group's history starts at its first spend (a new team is not an anomaly on its second day).
    """
    if window < 2 or min_history < 2 or min_history > window:
        raise LedgerError(f"need 2 <= min_history <= window, got min_history={min_history}, window={window}")
    if ratio is None and zscore is None:
        raise LedgerError("enable at least one test: ratio or zscore")
    floor_cost = Decimal(min_cost)
    first, last = _day(start), _day(end)
    series = daily_spend(ledger, by, start=first - timedelta(days=window), end=last, where=where)
    found: list[Anomaly] = []
    for key, points in series.items():
        values = [float(cost) for _, cost in points]
        # history starts at the group's first spend: the days before it are not a baseline of zero
        first_seen = next((i for i, value in enumerate(values) if value > 0), len(values))
        for index in range(window, len(points)):
            day, cost = points[index]
            history = values[max(first_seen, index - window) : index]
            if len(history) < min_history or cost < floor_cost:
                continue
            median = statistics.median(history)
            mad = statistics.median(abs(value - median) for value in history)
            mad = max(mad, 0.05 * median, 0.01)
            z = _MAD_TO_SIGMA * (float(cost) - median) / mad
            times = float(cost) / median if median > 0 else None
            if ratio is not None and times is not None and times < ratio:
                continue
            if zscore is not None and z < zscore:
                continue
            baseline = Decimal(repr(median)).quantize(CENT, ROUND_HALF_EVEN)
            found.append(Anomaly(tuple(by), key, day, cost, baseline, times, z))
    found.sort(key=lambda anomaly: (anomaly.day, -anomaly.cost))
    return found


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a month's spend is heading."""

    month: str
    """``YYYY-MM``."""
    as_of: date
    """The last day counted as spent (days after it are forecast)."""
    spent: Decimal
    """Exact spend of the month up to and including ``as_of``."""
    expected: Decimal
    """``spent`` plus the trailing daily mean times the days left."""
    low: Decimal
    high: Decimal
    """The band for the month's total at ``level`` (normal approximation for the sum of the days left)."""
    daily_low: Decimal
    daily_high: Decimal
    """The band for one future day's spend at ``level`` (empirical quantiles of the trailing window)."""
    daily_mean: Decimal
    level: float
    days_left: int
    series: tuple[tuple[date, Decimal], ...]
    """Daily spend of the month so far."""


def forecast(
    ledger: Ledger,
    *,
    month: str | None = None,
    as_of: date | str | None = None,
    window: int = 14,
    level: float = 0.8,
    where: Mapping[str, str] | None = None,
) -> Forecast:
    """Forecast the total of ``month`` (default: the month of ``as_of``, default today, UTC) from its spend up to
    ``as_of`` and the daily spend of the trailing ``window`` days (which may reach into the previous month)."""
    if not 0 < level < 1:
        raise LedgerError(f"level is a probability between 0 and 1, got {level!r}")
    today = _day(as_of) if as_of is not None else _today()
    first = date.fromisoformat(f"{month}-01") if month is not None else today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    last_day = following - timedelta(days=1)
    as_of_day = min(max(today, first - timedelta(days=1)), last_day)
    history_start = min(first, as_of_day - timedelta(days=window - 1))
    [(_, points)] = daily_spend(ledger, (), start=history_start, end=max(as_of_day, history_start), where=where).items()
    month_points = tuple((day, cost) for day, cost in points if first <= day <= as_of_day)
    spent = sum((cost for _, cost in month_points), ZERO)
    trailing = [float(cost) for day, cost in points if as_of_day - timedelta(days=window) < day <= as_of_day]
    days_left = (last_day - as_of_day).days
    mean = statistics.fmean(trailing) if trailing else 0.0
    sd = statistics.stdev(trailing) if len(trailing) > 1 else 0.0
    z = statistics.NormalDist().inv_cdf(0.5 + level / 2)
    spread = z * sd * math.sqrt(days_left)
    money = _money
    if len(trailing) >= 2:
        quantiles = statistics.quantiles(trailing, n=100, method="inclusive")
        tail = (1 - level) / 2 * 100
        lo_q = quantiles[max(0, round(tail) - 1)]
        hi_q = quantiles[min(98, round(100 - tail) - 1)]
    else:
        lo_q = hi_q = mean
    return Forecast(
        month=first.strftime("%Y-%m"),
        as_of=as_of_day,
        spent=spent,
        expected=spent + money(mean * days_left),
        low=spent + money(max(0.0, mean * days_left - spread)),
        high=spent + money(mean * days_left + spread),
        daily_low=money(lo_q),
        daily_high=money(hi_q),
        daily_mean=money(mean),
        level=level,
        days_left=days_left,
        series=month_points,
    )


def _money(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(CENT, ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class Runway:
    """How fast a budget is being spent and when it runs out at that pace."""

    budget: Decimal
    spent: Decimal
    """Exact spend from the period's start up to and including ``as_of``."""
    remaining: Decimal
    burn_rate: Decimal
    """Dollars per day: the mean of the trailing ``window`` days."""
    runs_out_on: date | None
    """The day cumulative spend reaches the budget at that pace (``as_of`` if already spent; ``None`` if no burn)."""
    as_of: date

    @property
    def used(self) -> float:
        return float(self.spent / self.budget) if self.budget else 1.0


def runway(
    ledger: Ledger,
    budget: Decimal | str,
    *,
    start: date | str,
    as_of: date | str | None = None,
    window: int = 7,
    where: Mapping[str, str] | None = None,
) -> Runway:
    """The runway of ``budget`` dollars for spend matching ``where`` since ``start``."""
    amount = Decimal(budget)
    if not amount > 0:
        raise LedgerError(f"budget must be positive dollars, got {budget!r}")
    first = _day(start)
    today = _day(as_of) if as_of is not None else _today()
    history_start = min(first, today - timedelta(days=window - 1))
    [(_, points)] = daily_spend(ledger, (), start=history_start, end=today, where=where).items()
    spent = sum((cost for day, cost in points if day >= first), ZERO)
    trailing = [cost for day, cost in points if day > today - timedelta(days=window)]
    burn = sum(trailing, ZERO) / len(trailing) if trailing else ZERO
    remaining = amount - spent
    if remaining <= 0:
        out: date | None = today
    elif burn > 0:
        out = today + timedelta(days=math.ceil(remaining / burn))
    else:
        out = None
    return Runway(amount, spent, remaining, burn.quantize(Decimal("0.000001")), out, today)


@dataclass(frozen=True, slots=True)
class UnitCost:
    """The cost of one unit of work (a session, a conversation, a feature's request, an agent action)."""

    key: str | None
    cost: Decimal
    runs: int
    calls: int

    @property
    def per_call(self) -> Decimal:
        return (self.cost / self.calls).quantize(Decimal("0.000001")) if self.calls else ZERO


def unit_costs(
    ledger: Ledger,
    per: str,
    *,
    since: float | None = None,
    until: float | None = None,
    where: Mapping[str, str] | None = None,
) -> list[UnitCost]:
    """Exact cost per ``per`` (``session``, ``conversation``, ``feature``, ``agent``, ``user``, ``team``, ``model``
    ...), most expensive first, with how many runs and calls it took."""
    if per not in GROUP_COLUMNS or per in ("day", "month"):
        raise LedgerError(f"cannot compute cost per {per!r}")
    runs: dict[str | None, int] = {}
    if per != "run":
        for row in ledger.spend((per, "run"), since=since, until=until, where=where):
            runs[row.key[0]] = runs.get(row.key[0], 0) + 1
    out = [
        UnitCost(row.key[0], row.cost, runs.get(row.key[0], 1), row.calls)
        for row in ledger.spend((per,), since=since, until=until, where=where)
    ]
    out.sort(key=lambda unit: (-unit.cost, unit.key or ""))
    return out
