"""PriceBook: compiled catalog prices equal genai_prices.calc_price exactly; overrides, tools and price files."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from datetime import time as dtime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ModelInfo, ModelPrice, StartDateConstraint, TieredPrices, TimeOfDateConstraint
from hypothesis import given, settings
from hypothesis import strategies as st

from agentcost import CustomPrice, InvalidMoney, InvalidMoneyType, PriceBook, PricingError, Quote, Usage
from agentcost._pricing import _iter_catalog

# -- the catalog, as data for strategies -----------------------------------------------------------------------------

PAIRS: list[tuple[str, str]] = list(_iter_catalog())


@dataclass(frozen=True)
class ModelFacts:
    """What a catalog model's prices depend on besides token counts."""

    tier_starts: frozenset[int] = frozenset()
    start_dates: frozenset[datetime] = frozenset()
    times_of_day: frozenset[dtime] = frozenset()
    whens: frozenset[tuple[str, str]] = frozenset()
    conditional: bool = False


def facts_of(info: ModelInfo) -> ModelFacts:
    """The tier starts, constraint boundaries and variant conditions of one catalog model."""
    starts: set[int] = set()
    dates: set[datetime] = set()
    times: set[dtime] = set()

    def constraint_facts(constraint: object) -> None:
        if isinstance(constraint, StartDateConstraint):
            dates.add(datetime.combine(constraint.start_date, dtime(), tzinfo=UTC))
        elif isinstance(constraint, TimeOfDateConstraint):
            times.update((constraint.start_time, constraint.end_time))

    def price_facts(price: ModelPrice) -> None:
        for value in price.__dict__.values():
            if isinstance(value, TieredPrices):
                starts.update(tier.start for tier in value.tiers)

    if isinstance(info.prices, ModelPrice):
        price_facts(info.prices)
    else:
        for conditional_price in info.prices:
            constraint_facts(conditional_price.constraint)
            price_facts(conditional_price.prices)
    for variant in info.price_variants or ():
        constraint_facts(variant.constraint)
        price_facts(variant.prices)
    return ModelFacts(
        frozenset(starts),
        frozenset(dates),
        frozenset(times),
        frozenset(item for variant in info.price_variants or () for item in variant.when.items()),
        not isinstance(info.prices, ModelPrice),
    )


@cache
def pair_facts(provider: str, model: str) -> ModelFacts:
    """The facts of the model calc_price resolves (provider, model) to; none if it resolves to nothing."""
    try:
        return facts_of(get_snapshot().find_provider_model(model, None, provider, None)[1])
    except LookupError:
        return ModelFacts()


FACTS = {(provider.id, info.id): facts_of(info) for provider in get_snapshot().providers for info in provider.models}
TIERED = sorted(pair for pair, facts in FACTS.items() if facts.tier_starts)
CONDITIONAL = sorted(pair for pair, facts in FACTS.items() if facts.conditional)
WITH_VARIANTS = sorted(pair for pair, facts in FACTS.items() if facts.whens)
TIMED = sorted(pair for pair, facts in FACTS.items() if facts.times_of_day)
TIER_STARTS = sorted({start for facts in FACTS.values() for start in facts.tier_starts})
START_DATES = sorted({start for facts in FACTS.values() for start in facts.start_dates})
TIMES_OF_DAY = sorted({moment for facts in FACTS.values() for moment in facts.times_of_day}, key=str)
WHENS = sorted({when for facts in FACTS.values() for when in facts.whens})
# Models reached through a provider's fallback providers (e.g. azure serving openai models).
FALLBACK_PAIRS: list[tuple[str, str]] = sorted(
    (provider.id, info.id)
    for provider in get_snapshot().providers
    for fallback in provider.fallback_model_providers or ()
    for other in get_snapshot().providers
    if other.id == fallback
    for info in other.models
)
# genai-prices usage units beyond the five token counts, which the library path prices.
EXTRA_UNITS = (
    "web_searches",
    "storage_searches",
    "input_audio_tokens",
    "input_image_tokens",
    "cache_write_1h_tokens",
    "audio_seconds",
    "input_audio_seconds",
)
BASE_PRICE_KEYS = {"input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "output_reasoning_mtok"}
# Models that price some unit beyond the five token counts (web searches, audio hours, images, ...).
UNIT_PRICED: list[tuple[str, str]] = sorted(
    (provider.id, info.id)
    for provider in get_snapshot().providers
    for info in provider.models
    if any(
        value is not None and key not in BASE_PRICE_KEYS
        for price in ([info.prices] if isinstance(info.prices, ModelPrice) else [c.prices for c in info.prices])
        for key, value in price.__dict__.items()
    )
)

LO = datetime(2023, 1, 1)
HI = datetime(2027, 12, 31, 23, 59, 59, 999_999)


def test_catalog_facts_cover_the_interesting_shapes() -> None:
    """The bundled catalog still has the shapes these tests are meant to exercise."""
    assert len(PAIRS) > 2000
    assert {128_000, 200_000} <= set(TIER_STARTS)
    assert len(TIERED) > 50
    assert len(CONDITIONAL) > 50
    assert len(WITH_VARIANTS) > 50
    assert START_DATES
    assert TIMES_OF_DAY
    assert TIMED
    assert ("service_tier", "flex") in WHENS
    assert FALLBACK_PAIRS
    assert ("groq", "whisper-large-v3") in UNIT_PRICED


# -- the reference ---------------------------------------------------------------------------------------------------


def reference(
    provider: str | None,
    model: str,
    usage: Usage,
    at: datetime | float | None,
    context: Mapping[str, str] | None = None,
) -> Decimal | None:
    """What genai_prices.calc_price says, with ``None`` where it raises LookupError/ValueError."""
    values: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_reasoning_tokens": usage.reasoning_tokens,
        **(usage.units or {}),
    }
    timestamp = datetime.fromtimestamp(at, UTC) if isinstance(at, float) else at
    try:
        return genai_prices.calc_price(
            genai_prices.Usage(**values),
            model,
            provider_id=provider,
            genai_request_timestamp=timestamp,
            price_context=context,
        ).total_price
    except (LookupError, ValueError):
        return None


def assert_identical(got: Decimal | None, expected: Decimal | None, what: object) -> None:
    """Same value and same representation (exponent), or both None."""
    if expected is None:
        assert got is None, what
    else:
        assert got is not None, what
        assert got == expected, what
        assert str(got) == str(expected), what


# -- strategies ------------------------------------------------------------------------------------------------------

pairs = st.one_of(
    st.sampled_from(PAIRS),
    st.sampled_from(TIERED),
    st.sampled_from(CONDITIONAL),
    st.sampled_from(WITH_VARIANTS),
    st.sampled_from(TIMED),
    st.sampled_from(FALLBACK_PAIRS),
)


def around(values: list[int]) -> st.SearchStrategy[int]:
    """A value of ``values`` or one next to it (tier starts: the tier applies above its start)."""
    return st.sampled_from(values).flatmap(lambda start: st.sampled_from([start - 1, start, start + 1, start + 2]))


@st.composite
def usages(draw: st.DrawFn, tier_starts: frozenset[int] = frozenset(), *, units: bool = False) -> Usage:
    """A consistent usage, often with zero fields, with input tokens often at (this model's) tier thresholds."""
    inputs = [around(TIER_STARTS), st.integers(0, 2_000), st.integers(0, 1_200_000), st.integers(10**20, 10**30)]
    if tier_starts:
        inputs.insert(0, around(sorted(tier_starts)))
    inp = draw(st.one_of(inputs))
    cache_read = draw(st.one_of(st.just(0), st.integers(0, inp)))
    cache_write = draw(st.one_of(st.just(0), st.integers(0, inp - cache_read)))
    out = draw(st.one_of(st.just(0), st.integers(0, 300_000), st.integers(0, 10**28)))
    reasoning = draw(st.one_of(st.just(0), st.integers(0, out)))
    extra: dict[str, int | Decimal] | None = None
    if units:
        extra = draw(
            st.dictionaries(
                st.sampled_from(EXTRA_UNITS),
                st.one_of(
                    st.integers(0, 5_000),
                    st.decimals(min_value=0, max_value=1000, places=3, allow_nan=False, allow_infinity=False),
                ),
                min_size=1,
                max_size=3,
            )
        )
    return Usage(inp, out, cache_read, cache_write, reasoning, units=extra)


offsets = st.sampled_from(
    [timezone(timedelta(hours=h, minutes=m)) for h, m in ((-8, 0), (0, 0), (5, 30), (9, 0), (14, 0))]
)
near = st.sampled_from(
    [timedelta(0), timedelta(microseconds=1), timedelta(microseconds=-1), timedelta(seconds=1), timedelta(seconds=-1)]
)


@st.composite
def boundary_instants(draw: st.DrawFn, dates: list[datetime], times: list[dtime]) -> datetime:
    """An aware instant, in some time zone, just around one of the start dates or times of day."""
    if dates and (not times or draw(st.booleans())):
        base = draw(st.sampled_from(dates))
    else:
        day = draw(st.dates(min_value=LO.date(), max_value=HI.date()))
        moment = draw(st.sampled_from(times))
        base = datetime.combine(day, moment.replace(tzinfo=None), tzinfo=moment.tzinfo or UTC)
    return (base + draw(near)).astimezone(draw(offsets))


def timestamps(facts: ModelFacts = ModelFacts()) -> st.SearchStrategy[datetime | float]:
    """Naive, aware and float times across 2023-2027, often just around a price boundary (of this model)."""
    boundaries = [boundary_instants(START_DATES, TIMES_OF_DAY)]
    if facts.start_dates or facts.times_of_day:
        boundaries.append(boundary_instants(sorted(facts.start_dates), sorted(facts.times_of_day, key=str)))
    boundary = st.one_of(boundaries)
    return st.one_of(
        st.datetimes(min_value=LO, max_value=HI),
        st.datetimes(min_value=LO, max_value=HI, timezones=offsets),
        st.floats(min_value=LO.replace(tzinfo=UTC).timestamp(), max_value=HI.replace(tzinfo=UTC).timestamp()),
        boundary,
        boundary.map(lambda instant: instant.astimezone(UTC).replace(tzinfo=None)),
        boundary.map(lambda instant: instant.timestamp()),
    )


def contexts(whens: frozenset[tuple[str, str]] = frozenset()) -> st.SearchStrategy[dict[str, str] | None]:
    """No context, an empty one, or a few variant conditions (often this model's), some matching nothing."""
    items = [*WHENS, ("service_tier", "no-such-tier"), ("no-such-key", "x")]
    chosen = st.sampled_from(items) if not whens else st.one_of(st.sampled_from(sorted(whens)), st.sampled_from(items))
    return st.one_of(st.none(), st.just({}), st.lists(chosen, max_size=3).map(dict))


Case = tuple[str, str, Usage, datetime | float, dict[str, str] | None]


@st.composite
def cases(draw: st.DrawFn, *, units: bool = False, extra_pairs: list[tuple[str, str]] | None = None) -> Case:
    """A catalog (provider, model) and a usage, time and price context aimed at what that model's price depends on."""
    provider, model = draw(pairs if not extra_pairs else st.one_of(pairs, st.sampled_from(extra_pairs)))
    facts = pair_facts(provider, model)
    usage = draw(usages(facts.tier_starts, units=units))
    return provider, model, usage, draw(timestamps(facts)), draw(contexts(facts.whens))


# -- the catalog path equals calc_price ------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(case=cases())
def test_catalog_price_equals_calc_price(case: Case) -> None:
    """For any catalog model, usage, time and price context, price() is calc_price's exact Decimal (or None)."""
    provider, model, usage, at, context = case
    expected = reference(provider, model, usage, at, context)
    got = PriceBook().price(model, usage, provider=provider, at=at, price_context=context)
    assert_identical(got, expected, case)


@settings(max_examples=150, deadline=None)
@given(case=cases(units=True, extra_pairs=UNIT_PRICED))
def test_price_with_extra_units_equals_calc_price(case: Case) -> None:
    """Usage reporting genai-prices units beyond tokens (library path) is priced exactly as calc_price prices it."""
    provider, model, usage, at, context = case
    expected = reference(provider, model, usage, at, context)
    got = PriceBook().price(model, usage, provider=provider, at=at, price_context=context)
    assert_identical(got, expected, case)


SHARED_BOOK = PriceBook()


@settings(max_examples=150, deadline=None)
@given(case=cases())
def test_shared_book_is_stable_across_calls(case: Case) -> None:
    """A long-lived book (warm compiled cache) gives the same exact result on every call, and calc_price's."""
    provider, model, usage, at, context = case
    results = [SHARED_BOOK.price(model, usage, provider=provider, at=at, price_context=context) for _ in range(3)]
    expected = reference(provider, model, usage, at, context)
    for got in results:
        assert_identical(got, expected, case)


def _sweep(
    book: PriceBook, usage: Usage, at: datetime, context: Mapping[str, str] | None
) -> list[tuple[str, str, Decimal | None, Decimal | None]]:
    mismatches = []
    for provider, model in PAIRS:
        expected = reference(provider, model, usage, at, context)
        got = book.price(model, usage, provider=provider, at=at, price_context=context)
        if got != expected or str(got) != str(expected):
            mismatches.append((provider, model, got, expected))
    return mismatches


class _LibraryCalls:
    """Wraps PriceBook._library_price and records which models reached it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.models: set[tuple[str, str]] = set()
        original: Callable[..., Decimal | None] = PriceBook._library_price

        def recording(book: PriceBook, model: Any, *args: Any) -> Decimal | None:
            self.models.add((model._provider.id, model._info.id))
            return original(book, model, *args)

        monkeypatch.setattr(PriceBook, "_library_price", recording)


SWEEP_USAGE = Usage(input_tokens=250_001, output_tokens=4_321, cache_read_tokens=1_000, cache_write_tokens=2_000)
WHISPER = {("groq", "whisper-large-v3"), ("groq", "whisper-large-v3-turbo")}


def test_every_catalog_model_matches_calc_price_without_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every catalog model prices base usage like calc_price, compiled (only groq whisper goes to genai-prices)."""
    calls = _LibraryCalls(monkeypatch)
    at = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    assert _sweep(PriceBook(), SWEEP_USAGE, at, None) == []
    assert calls.models <= WHISPER


@pytest.mark.parametrize(
    ("at", "context"),
    [
        (datetime(2024, 2, 29, 3, 0), {"service_tier": "flex"}),
        (datetime(2026, 11, 1, 2, 0, tzinfo=timezone(timedelta(hours=-5))), {"processing": "batch"}),
        (datetime(2027, 6, 30, 23, 59, 59), {"service_tier": "priority", "speed": "fast"}),
    ],
)
def test_every_catalog_model_matches_calc_price_in_context(
    monkeypatch: pytest.MonkeyPatch, at: datetime, context: dict[str, str]
) -> None:
    """Every catalog model, at a given time and price context, prices like calc_price, mostly compiled."""
    calls = _LibraryCalls(monkeypatch)
    usage = Usage(input_tokens=128_001, output_tokens=900, cache_read_tokens=77, reasoning_tokens=300)
    assert _sweep(PriceBook(), usage, at, context) == []
    assert calls.models <= WHISPER


def test_reasoning_tokens_are_output_reasoning_tokens() -> None:
    """Usage.reasoning_tokens reach genai-prices as output_reasoning_tokens (models pricing them apart differ)."""
    at = datetime(2025, 6, 1)
    plain_usage = Usage(output_tokens=1000)
    reasoned_usage = Usage(output_tokens=1000, reasoning_tokens=600)
    checked = 0
    for provider in get_snapshot().providers:
        for info in provider.models:
            prices = info.prices
            if isinstance(prices, ModelPrice) and prices.__dict__.get("output_reasoning_mtok") is not None:
                expected = reference(provider.id, info.id, reasoned_usage, at)
                if expected is None:
                    continue
                reasoned = PriceBook().price(info.id, reasoned_usage, provider=provider.id, at=at)
                assert_identical(reasoned, expected, info.id)
                assert reasoned != PriceBook().price(info.id, plain_usage, provider=provider.id, at=at)
                checked += 1
    assert checked


def test_tier_threshold_is_strictly_greater() -> None:
    """A tier applies once input tokens exceed its start: 200_000 tokens pay the base rate, 200_001 the tier rate."""
    book = PriceBook()
    below = book.price("claude-sonnet-4-5", Usage(input_tokens=200_000), provider="anthropic")
    above = book.price("claude-sonnet-4-5", Usage(input_tokens=200_001), provider="anthropic")
    assert below == Decimal("0.6")
    assert str(below) == "0.60"
    assert above == Decimal("1.200006")


def test_documented_example_price() -> None:
    """gpt-4o at openai: 1000 input and 100 output tokens cost exactly $0.0035."""
    cost = PriceBook().price("gpt-4o", Usage(input_tokens=1000, output_tokens=100), provider="openai")
    assert cost == Decimal("0.0035")
    assert str(cost) == "0.0035"


def test_time_of_day_price_follows_the_request_time() -> None:
    """deepseek-chat's off-peak price applies by UTC time of day, for naive, aware and float times alike."""
    book = PriceBook()
    usage = Usage(input_tokens=1000)
    peak = datetime(2025, 3, 1, 1, 0, tzinfo=UTC)
    off_peak = datetime(2025, 3, 1, 17, 0, tzinfo=UTC)
    in_tokyo = off_peak.astimezone(timezone(timedelta(hours=9)))
    prices = {
        at: book.price("deepseek-chat", usage, provider="deepseek", at=at)
        for at in (peak, off_peak, peak.replace(tzinfo=None), in_tokyo, off_peak.timestamp())
    }
    assert prices[peak] != prices[off_peak]
    assert prices[peak.replace(tzinfo=None)] == prices[peak]
    assert prices[in_tokyo] == prices[off_peak] == prices[off_peak.timestamp()]
    for at, cost in prices.items():
        assert_identical(cost, reference("deepseek", "deepseek-chat", usage, at), at)


@pytest.mark.parametrize("at", [None, datetime(2025, 1, 1)])
def test_repeated_calls_are_identical(at: datetime | None) -> None:
    """The compiled cache returns the same value and exponent on every call, and after an override clears it."""
    book = PriceBook()
    usage = Usage(input_tokens=123_457, output_tokens=999, cache_read_tokens=10_000, reasoning_tokens=9)
    pairs = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5"), ("google", "gemini-2.5-pro")]
    first = [book.price(model, usage, provider=provider, at=at) for provider, model in pairs]
    assert all(cost is not None for cost in first)
    for _ in range(3):
        assert [str(book.price(model, usage, provider=provider, at=at)) for provider, model in pairs] == list(
            map(str, first)
        )
    book.add_model("unrelated-model", CustomPrice(input_mtok=Decimal(1)))
    assert [str(book.price(model, usage, provider=provider, at=at)) for provider, model in pairs] == list(
        map(str, first)
    )
    fresh = PriceBook()
    assert [str(fresh.price(model, usage, provider=provider, at=at)) for provider, model in pairs] == list(
        map(str, first)
    )


# -- quote -----------------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(pair=st.one_of(st.sampled_from(PAIRS), st.sampled_from(FALLBACK_PAIRS)), usage=usages())
def test_quote_names_the_resolved_catalog_model(pair: tuple[str, str], usage: Usage) -> None:
    """quote() of a priced catalog call says source "catalog" and the provider and model calc_price resolved."""
    provider, model = pair
    at = datetime(2025, 9, 1)
    quote = PriceBook().quote(model, usage, provider=provider, at=at)
    assert isinstance(quote, Quote)
    try:
        calculation = genai_prices.calc_price(
            genai_prices.Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                output_reasoning_tokens=usage.reasoning_tokens,
            ),
            model,
            provider_id=provider,
            genai_request_timestamp=at,
        )
    except LookupError:
        assert (quote.cost, quote.source, quote.model_id) == (None, "unpriced", None)
        assert quote.reason
        return
    except ValueError:
        assert (quote.cost, quote.source) == (None, "unpriced")
        assert quote.reason
        return
    assert quote.source == "catalog"
    assert quote.reason is None
    assert quote.model_id == calculation.model.id
    assert quote.provider_id == calculation.provider.id
    assert_identical(quote.cost, calculation.total_price, pair)


def test_quote_of_an_alias_gives_the_catalog_id() -> None:
    """A dated model reference resolves to its catalog model id, with the provider id."""
    quote = PriceBook().quote("gpt-4o-2024-08-06", Usage(input_tokens=10), provider="openai")
    expected = genai_prices.calc_price(genai_prices.Usage(input_tokens=10), "gpt-4o-2024-08-06", provider_id="openai")
    assert quote.source == "catalog"
    assert quote.model_id == expected.model.id
    assert quote.provider_id == "openai"


@pytest.mark.parametrize("provider", [None, "openai", "no-such-provider"])
def test_unknown_model_is_none_not_zero(provider: str | None) -> None:
    """An unknown model (or provider) prices to None, never 0, and quote() explains it."""
    book = PriceBook()
    usage = Usage(input_tokens=1000, output_tokens=10)
    assert book.price("definitely-not-a-model-xyz", usage, provider=provider) is None
    assert not book.knows("definitely-not-a-model-xyz", provider=provider)
    quote = book.quote("definitely-not-a-model-xyz", usage, provider=provider)
    assert quote.cost is None
    assert quote.source == "unpriced"
    assert quote.model_id is None
    assert quote.reason is not None
    assert "CustomPrice" in quote.reason


def test_unknown_unit_on_catalog_model_is_unpriced() -> None:
    """A unit genai-prices does not know makes a catalog call unpriced (None) with a reason naming the unit."""
    book = PriceBook()
    usage = Usage(input_tokens=1000, units={"gpu_seconds": 3})
    assert book.price("gpt-4o", usage, provider="openai") is None
    quote = book.quote("gpt-4o", usage, provider="openai")
    assert (quote.cost, quote.source) == (None, "unpriced")
    assert quote.reason is not None
    assert "gpu_seconds" in quote.reason


def test_web_searches_are_priced_through_the_library() -> None:
    """units={"web_searches": 2} adds the catalog's search price, exactly as calc_price computes it."""
    usage = Usage(input_tokens=1000, output_tokens=100, units={"web_searches": 2})
    cost = PriceBook().price("gpt-4o", usage, provider="openai")
    expected = reference("openai", "gpt-4o", usage, None)
    assert expected is not None
    assert expected > Decimal("0.0035")
    assert_identical(cost, expected, usage)


def test_catalog_off_prices_only_custom_models() -> None:
    """With catalog=False a catalog model is unknown (None), while a custom model is still priced."""
    book = PriceBook(catalog=False, models={"mine": CustomPrice(input_mtok=Decimal(2))})
    assert book.price("gpt-4o", Usage(input_tokens=1000), provider="openai") is None
    assert not book.knows("gpt-4o", provider="openai")
    quote = book.quote("gpt-4o", Usage(input_tokens=1000), provider="openai")
    assert quote.source == "unpriced"
    assert quote.reason is not None
    assert "catalog is off" in quote.reason
    assert book.price("mine", Usage(input_tokens=1000)) == Decimal("0.002")


# -- custom prices ---------------------------------------------------------------------------------------------------


def test_custom_price_per_token() -> None:
    """Input and output are charged per million tokens; reasoning tokens are output tokens, charged once."""
    price = CustomPrice(input_mtok=Decimal(3), output_mtok=Decimal(15))
    assert price.price(Usage(input_tokens=1000, output_tokens=100)) == Decimal("0.0045")
    assert price.price(Usage(input_tokens=1000, output_tokens=100, reasoning_tokens=60)) == Decimal("0.0045")
    assert price.price(Usage()) == 0


def test_custom_price_cache_charged_as_input_by_default() -> None:
    """Without cache prices, cache reads and writes are charged at the input price."""
    price = CustomPrice(input_mtok=Decimal(3))
    usage = Usage(input_tokens=1000, cache_read_tokens=400, cache_write_tokens=100)
    assert price.price(usage) == Decimal("0.003")


def test_custom_price_cache_priced_separately() -> None:
    """Cache reads and writes with their own prices are charged at those, and the rest of input at input_mtok."""
    price = CustomPrice(input_mtok="3", cache_read_mtok="0.3", cache_write_mtok="3.75")  # type: ignore[arg-type]
    usage = Usage(input_tokens=1000, cache_read_tokens=400, cache_write_tokens=100)
    assert price.price(usage) == Decimal("0.0015") + Decimal("0.00012") + Decimal("0.000375")
    only_read = CustomPrice(input_mtok=Decimal(3), cache_read_mtok=Decimal(0))
    assert only_read.price(usage) == Decimal("0.0018")


def test_custom_price_per_request_and_units() -> None:
    """per_request is charged per request; named units (gpu_seconds) at their price times the amount."""
    price = CustomPrice(per_request=Decimal("0.01"), units={"gpu_seconds": Decimal("0.0004")})
    assert price.price(Usage(requests=3)) == Decimal("0.03")
    assert price.price(Usage(requests=0, units={"gpu_seconds": Decimal("3.5")})) == Decimal("0.0014")
    assert price.price(Usage(units={"gpu_seconds": 10})) == Decimal("0.014")


def test_custom_price_unknown_unit_is_none() -> None:
    """A usage unit the custom price does not know makes the call unpriced (None), not free."""
    price = CustomPrice(input_mtok=Decimal(1), units={"gpu_seconds": Decimal("0.0004")})
    assert price.price(Usage(input_tokens=5, units={"images": 1})) is None
    book = PriceBook(models={"mine": price})
    usage = Usage(input_tokens=5, units={"images": 1, "gpu_seconds": 1})
    assert book.price("mine", usage) is None
    quote = book.quote("mine", usage)
    assert (quote.cost, quote.source, quote.model_id) == (None, "unpriced", "mine")
    assert quote.reason is not None
    assert "images" in quote.reason
    assert "gpu_seconds" in quote.reason


def test_custom_price_validates_its_prices() -> None:
    """CustomPrice rejects float and negative prices and bad unit names."""
    with pytest.raises(InvalidMoneyType):
        CustomPrice(input_mtok=0.15)  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney, match="negative"):
        CustomPrice(output_mtok=Decimal(-1))
    with pytest.raises(InvalidMoneyType):
        CustomPrice(cache_read_mtok=0.1)  # type: ignore[arg-type]
    with pytest.raises(InvalidMoneyType):
        CustomPrice(units={"gpu_seconds": 0.0004})  # type: ignore[dict-item]
    with pytest.raises(PricingError):
        CustomPrice(units={"": Decimal(1)})
    assert CustomPrice(input_mtok="1.5").input_mtok == Decimal("1.5")  # type: ignore[arg-type]


def test_override_beats_catalog() -> None:
    """A custom price for a catalog model replaces the catalog price; quote says "custom"."""
    custom = CustomPrice(input_mtok=Decimal(1), output_mtok=Decimal(1))
    book = PriceBook(models={"gpt-4o": custom})
    usage = Usage(input_tokens=1000, output_tokens=1000)
    assert book.price("gpt-4o", usage, provider="openai") == Decimal("0.002")
    assert book.price("GPT-4o", usage) == Decimal("0.002")
    quote = book.quote("gpt-4o", usage, provider="openai")
    assert (quote.cost, quote.source, quote.model_id, quote.provider_id, quote.reason) == (
        Decimal("0.002"),
        "custom",
        "gpt-4o",
        "openai",
        None,
    )


def test_add_model_after_pricing_takes_effect() -> None:
    """Adding an override to a book that already priced the model (cached) changes later prices."""
    book = PriceBook()
    usage = Usage(input_tokens=1000, output_tokens=100)
    assert book.price("gpt-4o", usage, provider="openai") == Decimal("0.0035")
    assert book.add_model("gpt-4o", CustomPrice(input_mtok=Decimal(1)), provider="openai") is book
    assert book.price("gpt-4o", usage, provider="openai") == Decimal("0.001")
    assert book.price("gpt-4o", usage, provider="azure") == Decimal("0.0035")


def test_provider_scoped_override() -> None:
    """A "provider/model" key applies to that provider only (case-insensitively); a bare key to any provider."""
    scoped = CustomPrice(input_mtok=Decimal(10))
    anywhere = CustomPrice(input_mtok=Decimal(1))
    book = PriceBook(models={"acme/my-model": scoped, "my-model": anywhere, "openai/gpt-4o": scoped})
    usage = Usage(input_tokens=1000)
    assert book.price("my-model", usage, provider="acme") == Decimal("0.01")
    assert book.price("My-Model", usage, provider="ACME") == Decimal("0.01")
    assert book.price("my-model", usage, provider="other") == Decimal("0.001")
    assert book.price("my-model", usage) == Decimal("0.001")
    assert book.price("gpt-4o", usage, provider="openai") == Decimal("0.01")
    azure = book.price("gpt-4o", usage, provider="azure")
    assert_identical(azure, reference("azure", "gpt-4o", usage, None), "azure gpt-4o")
    only_scoped = PriceBook(models={"acme/solo": scoped}, catalog=False)
    assert only_scoped.price("solo", usage, provider="acme") == Decimal("0.01")
    assert only_scoped.price("solo", usage, provider="other") is None
    assert only_scoped.price("solo", usage) is None


def test_add_model_rejects_bad_arguments() -> None:
    """add_model needs a non-empty model name and a CustomPrice."""
    book = PriceBook()
    with pytest.raises(PricingError):
        book.add_model("", CustomPrice())
    with pytest.raises(PricingError):
        book.add_model("m", {"input_mtok": "1"})  # type: ignore[arg-type]


# -- tools -----------------------------------------------------------------------------------------------------------


def test_tool_prices() -> None:
    """A tool's own price wins, then the default tool price; without either a tool is unpriced (None)."""
    book = PriceBook(tools={"search": "0.01"})
    assert book.tool_price("search") == Decimal("0.01")
    assert book.tool_price("fetch") is None
    assert book.add_tool("fetch", 2) is book
    assert book.tool_price("fetch") == Decimal(2)
    with_default = PriceBook(tools={"search": Decimal("0.01")}, default_tool_price="0.001")
    assert with_default.tool_price("search") == Decimal("0.01")
    assert with_default.tool_price("anything") == Decimal("0.001")
    free = PriceBook(tools={"calc": 0})
    assert free.tool_price("calc") == 0


def test_tool_prices_are_validated() -> None:
    """Tool prices must be exact and non-negative; tool names non-empty strings."""
    book = PriceBook()
    with pytest.raises(InvalidMoneyType):
        book.add_tool("search", 0.01)  # type: ignore[arg-type]
    with pytest.raises(InvalidMoney):
        book.add_tool("search", "-1")
    with pytest.raises(PricingError):
        book.add_tool("", "1")
    with pytest.raises(InvalidMoneyType):
        PriceBook(default_tool_price=0.5)  # type: ignore[arg-type]


# -- price files -----------------------------------------------------------------------------------------------------

TOML_FILE = """
default_tool_price = "0.001"

[[models]]
model = "my-llm"
provider = "acme"
input_mtok = "1.5"
output_mtok = 2
cache_read_mtok = "0.15"
per_request = "0.0001"
per_gpu_second = "0.0004"
units = { images = "0.02" }

[[models]]
model = "gpt-4o"
input_mtok = "1"

[tools]
web_search = "0.01"
"""


def test_from_file_toml(tmp_path: Path) -> None:
    """A TOML price file sets model prices (scoped and not), units, per-GPU-second, tools and the default tool."""
    path = tmp_path / "prices.toml"
    path.write_text(TOML_FILE, encoding="utf-8")
    book = PriceBook.from_file(path)
    usage = Usage(
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cache_read_tokens=200_000,
        units={"gpu_seconds": 10, "images": 2},
    )
    # 0.8 M input at 1.5, 0.2 M cache reads at 0.15, 1 M output at 2, one request, 10 GPU-seconds, two images
    expected = Decimal("1.2") + Decimal("0.03") + Decimal(2) + Decimal("0.0001") + Decimal("0.004") + Decimal("0.04")
    assert book.price("my-llm", usage, provider="acme") == expected
    assert book.price("my-llm", usage, provider="other") is None
    assert book.price("gpt-4o", Usage(input_tokens=1000), provider="openai") == Decimal("0.001")
    assert book.tool_price("web_search") == Decimal("0.01")
    assert book.tool_price("other") == Decimal("0.001")
    assert book.knows("claude-sonnet-4-5", provider="anthropic")
    assert not PriceBook.from_file(str(path), catalog=False).knows("claude-sonnet-4-5", provider="anthropic")


def test_from_file_json(tmp_path: Path) -> None:
    """A JSON price file is read the same way as TOML."""
    path = tmp_path / "prices.json"
    data = {
        "models": [{"model": "my-llm", "input_mtok": "2", "output_mtok": "4", "cache_write_mtok": "3"}],
        "tools": {"fetch": "0.5"},
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    book = PriceBook.from_file(path)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000, cache_write_tokens=500_000)
    assert book.price("my-llm", usage) == Decimal(1) + Decimal("1.5") + Decimal(2)
    assert book.tool_price("fetch") == Decimal("0.5")
    assert book.tool_price("other") is None


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("prices.toml", '[[models]]\nmodel = "m"\ninput_mtok = 0.15\n', r'quote prices in files: "0\.15"'),
        ("prices.toml", "[tools]\nsearch = 0.01\n", r"quote prices in files"),
        ("prices.toml", "default_tool_price = 0.5\n", r"quote prices in files"),
        ("prices.json", '{"models": [{"model": "m", "output_mtok": 0.15}]}', r"quote prices in files"),
        ("prices.toml", 'model = "m"\n', r"unknown keys \['model'\]"),
        ("prices.toml", '[[models]]\nmodel = "m"\ninput_price = "1"\n', r"unknown keys \['input_price'\]"),
        ("prices.toml", "[[models]]\ninput_mtok = '1'\n", r"'model' name"),
        ("prices.toml", '[models]\nmodel = "m"\n', r"'model' name"),
        ("prices.toml", 'tools = ["search"]\n', r"'tools' must be a table"),
        ("prices.toml", '[[models]]\nmodel = "m"\ninput_mtok = "-1"\n', r"negative"),
        ("prices.toml", '[tools]\nsearch = "-0.01"\n', r"negative"),
        ("prices.toml", '[[models]]\nmodel = "m"\nper_gpu_second = "NaN"\n', r"finite"),
        ("prices.toml", '[[models]]\nmodel = "m"\nunits = { images = "lots" }\n', r"not a decimal"),
        ("prices.toml", '[[models]\nmodel = "m"\n', r"not valid TOML"),
        ("prices.json", '{"models": [', r"not valid JSON"),
        ("prices.json", "[1, 2]", r"expected a table"),
    ],
)
def test_from_file_errors(tmp_path: Path, name: str, text: str, match: str) -> None:
    """A price file that cannot be used raises PricingError (a ValueError) saying why, with the file's path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PricingError, match=match) as raised:
        PriceBook.from_file(path)
    assert isinstance(raised.value, ValueError)
    assert str(path) in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        '[[models]]\nmodel = "m"\nunits = 5\n',
        '[[models]]\nmodel = "m"\nunits = "gpu"\n',
        '[[models]]\nmodel = "m"\nprovider = 5\n',
        "[[models]]\nmodel = 5\n",
    ],
)
def test_from_file_malformed_values_raise_pricing_error(tmp_path: Path, text: str) -> None:
    """Wrongly typed values in a price file raise PricingError, not a bare TypeError/AttributeError/ValueError."""
    path = tmp_path / "prices.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PricingError):
        PriceBook.from_file(path)
