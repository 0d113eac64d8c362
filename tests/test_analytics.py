"""Analytics on synthetic ledgers with known truth: the planted anomaly is found and steady teams raise no false
alarm, the forecast's band holds the held-out days it claims to, runway and unit costs are exact."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentcost.analytics import anomalies, daily_spend, forecast, runway, unit_costs
from agentcost.ledger import Ledger, LedgerError, SpanRecord, SQLiteLedger

START = date(2026, 9, 1)
_ids = itertools.count(2)


def at(day: date, hour: int = 12) -> float:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC).timestamp()


def spend(day: date, cost: Decimal, **attrs: str) -> SpanRecord:
    started = at(day)
    return SpanRecord(
        span_id=next(_ids),
        run_id=1,
        parent_id=1,
        kind="llm",
        name="gpt-4o",
        attrs=attrs,
        started_at=started,
        ended_at=started + 1,
        status="ok",
        cost=cost,
        cost_source="computed",
        model="gpt-4o",
        provider="openai",
        requests=1,
        run_name="r",
    )


def noisy(rng: random.Random, mean: float, spread: float) -> Decimal:
    return Decimal(str(round(mean * (1 + rng.uniform(-spread, spread)), 4)))


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    opened = SQLiteLedger(tmp_path / "spend.db")
    yield opened
    opened.close()


def three_teams(ledger: Ledger, seed: int, *, planted_day: int = 35, factor: float = 3.0) -> date:
    """45 days: search ~$100/day, ads ~$40/day (both +-15%), support ~$60/day with one day at ``factor`` x."""
    rng = random.Random(seed)
    records = []
    for offset in range(45):
        day = START + timedelta(days=offset)
        records.append(spend(day, noisy(rng, 100, 0.15), team="search"))
        records.append(spend(day, noisy(rng, 40, 0.15), team="ads"))
        support = noisy(rng, 60, 0.15) * (Decimal(str(factor)) if offset == planted_day else 1)
        records.append(spend(day, support, team="support"))
    ledger.write(records)
    return START + timedelta(days=planted_day)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**6))
def test_the_planted_anomaly_is_found_and_steady_teams_raise_no_alarm(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    ledger = SQLiteLedger(tmp_path_factory.mktemp("a") / "spend.db")
    try:
        planted = three_teams(ledger, seed)
        found = anomalies(ledger, ("team",), start=START + timedelta(days=14), end=START + timedelta(days=44))
        assert [(a.key, a.day) for a in found] == [(("support",), planted)]
        [anomaly] = found
        assert anomaly.ratio is not None
        assert 2.2 < anomaly.ratio < 4.0
        assert anomaly.zscore > 3.5
        assert "support" in anomaly.describe()
    finally:
        ledger.close()


def test_a_2x_day_is_found_with_the_issue_s_example_threshold(ledger: Ledger) -> None:
    """'team's daily spend 2x its baseline': a 2.2x day is flagged at ratio=2.0, not at ratio=2.5."""
    planted = three_teams(ledger, 1, factor=2.2)
    window = {"start": START + timedelta(days=14), "end": START + timedelta(days=44)}
    assert [a.day for a in anomalies(ledger, ("team",), **window)] == [planted]  # type: ignore[arg-type]
    assert anomalies(ledger, ("team",), ratio=2.5, **window) == []  # type: ignore[arg-type]


def test_anomaly_arguments_are_checked(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="min_history"):
        anomalies(ledger, start=START, end=START, window=3, min_history=5)
    with pytest.raises(LedgerError, match="at least one test"):
        anomalies(ledger, start=START, end=START, ratio=None, zscore=None)


def test_daily_spend_is_exact_and_zero_filled(ledger: Ledger) -> None:
    ledger.write(
        [
            spend(START, Decimal("0.1"), team="a"),
            spend(START, Decimal("0.2"), team="a"),
            spend(START + timedelta(days=2), Decimal("1"), team="a"),
        ]
    )
    series = daily_spend(ledger, ("team",), start=START, end=START + timedelta(days=2))
    assert series == {
        ("a",): [
            (START, Decimal("0.3")),
            (START + timedelta(days=1), Decimal(0)),
            (START + timedelta(days=2), Decimal(1)),
        ]
    }
    with pytest.raises(LedgerError, match="before start"):
        daily_spend(ledger, start=START, end=START - timedelta(days=1))


def test_the_forecast_band_holds_the_held_out_days_it_claims_to(tmp_path: Path) -> None:
    """Forty months of iid daily spend: forecast on the 15th of September; the 80 % daily band holds about 80 % of
    the fifteen held-out days, and the month's total lands inside its 80 % band in about 80 % of months."""
    daily_hits = daily_total = month_hits = 0
    months = 40
    for seed in range(months):
        rng = random.Random(seed)
        ledger = SQLiteLedger(tmp_path / f"m{seed}.db")
        days = [START - timedelta(days=14) + timedelta(days=i) for i in range(14 + 30)]
        values = {day: Decimal(str(round(max(0.0, rng.gauss(100, 20)), 2))) for day in days}
        ledger.write([spend(day, cost) for day, cost in values.items() if day <= START + timedelta(days=14)])
        result = forecast(ledger, as_of=START + timedelta(days=14), window=14, level=0.8)
        ledger.close()
        held_out = [cost for day, cost in values.items() if day > START + timedelta(days=14)]
        assert result.days_left == len(held_out) == 15
        daily_hits += sum(result.daily_low <= cost <= result.daily_high for cost in held_out)
        daily_total += len(held_out)
        actual = sum((cost for day, cost in values.items() if day >= START), Decimal(0))
        month_hits += result.low <= actual <= result.high
        assert result.low <= result.expected <= result.high
        assert result.spent == sum(
            (cost for day, cost in values.items() if START <= day <= START + timedelta(days=14)), Decimal(0)
        )
    coverage = daily_hits / daily_total
    assert 0.7 <= coverage <= 0.9, coverage
    assert 0.65 <= month_hits / months <= 0.95, month_hits


def test_runway_and_burn_rate(ledger: Ledger) -> None:
    ledger.write([spend(START + timedelta(days=i), Decimal("50"), team="a") for i in range(10)])
    result = runway(ledger, "1000", start=START, as_of=START + timedelta(days=9))
    assert (result.spent, result.remaining, result.burn_rate) == (Decimal(500), Decimal(500), Decimal(50))
    assert result.runs_out_on == START + timedelta(days=19)
    assert result.used == 0.5
    over = runway(ledger, "400", start=START, as_of=START + timedelta(days=9))
    assert over.runs_out_on == START + timedelta(days=9)
    idle = runway(ledger, "400", start=START + timedelta(days=20), as_of=START + timedelta(days=29))
    assert (idle.spent, idle.runs_out_on) == (Decimal(0), None)
    with pytest.raises(LedgerError, match="positive"):
        runway(ledger, "0", start=START)


def test_unit_costs_per_session(ledger: Ledger) -> None:
    records = [spend(START, Decimal("0.5"), session="s1"), spend(START, Decimal("0.25"), session="s1")]
    records.append(spend(START, Decimal("2"), session="s2"))
    ledger.write(records)
    units = unit_costs(ledger, "session")
    assert [(u.key, u.cost, u.calls) for u in units] == [("s2", Decimal(2), 1), ("s1", Decimal("0.75"), 2)]
    assert units[1].per_call == Decimal("0.375")
    with pytest.raises(LedgerError, match="cost per"):
        unit_costs(ledger, "day")


def test_top_spans_are_the_most_expensive_calls(ledger: Ledger) -> None:
    ledger.write([spend(START, Decimal(cost)) for cost in ("0.3", "5", "0.000000000000007", "2")])
    assert [r.cost for r in ledger.top_spans(3)] == [Decimal(5), Decimal(2), Decimal("0.3")]
