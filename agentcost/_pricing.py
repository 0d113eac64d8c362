"""PriceBook: (provider, model, usage, time) -> exact ``Decimal`` cost.

The default catalog is genai-prices' bundled data (no network, ever). ``genai_prices.calc_price`` walks unit
registries, validates the price model and builds several objects on every call (60-150 µs). agentcost prices the
same rows in about a microsecond by *compiling* each price row once into a small straight-line function over integer
token counts, and reproduces genai-prices' result exactly: the same value and the same Decimal exponent, because
the compiled code also tracks the exponent that genai-prices' ``price * count / per`` sums would carry.

Shapes that are not compiled and go to ``genai_prices`` itself (the *library path*): usage that reports genai-prices
units beyond the five token counts (audio, image, web searches, ...), groq's whisper models (which bill a 10-second
minimum), request-context price variants combined with a model served through a fallback provider, and any amount so
large that genai-prices' 28-digit decimal context would round it.
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentcost._errors import AgentCostError, PricingError
from agentcost._money import EXACT, ZERO, to_money
from agentcost._usage import Usage

if TYPE_CHECKING:
    from genai_prices import types as gp_types

__all__ = ["CustomPrice", "PriceBook", "Quote"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_US = 86_400_000_000
# The five usage counts the compiled path understands, by genai-prices usage key, in argument order.
_BASE_KEYS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "output_reasoning_tokens")
_ARGS = ("i", "o", "cr", "cw", "r")
# genai-prices computes in the default decimal context (28 digits); above this an exact integer result could differ
# from its rounded one, so such amounts take the library path.
_EXACT_LIMIT = 10**26


def _now_us() -> int:
    return time.time_ns() // 1000


def _timestamp_us(at: datetime | float) -> int:
    """Microseconds since the epoch; a naive datetime is UTC, as in genai-prices; a float is epoch seconds."""
    if isinstance(at, float | int):
        return round(at * 1_000_000)  # _as_datetime converts floats through this too, so both paths agree
    delta = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _time_of_day_us(value: dtime) -> int:
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).timetz()
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _as_datetime(at: datetime | float | None) -> datetime | None:
    if at is None or isinstance(at, datetime):
        return at
    return _EPOCH + timedelta(microseconds=_timestamp_us(at))


class _Constraint:
    """An integer-microsecond equivalent of a genai-prices constraint: ``active(ts)``, and the interval around a
    timestamp in which the answer cannot change (so a price picked for one call can be reused until then)."""

    __slots__ = ("active", "points", "start")

    def __init__(self, constraint: object) -> None:
        from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

        self.start: int | None = None
        self.points: tuple[int, ...] = ()
        if isinstance(constraint, StartDateConstraint):
            start = self.start = _timestamp_us(datetime.combine(constraint.start_date, dtime(), tzinfo=UTC))
            self.active: Callable[[int], bool] = lambda ts: ts >= start
        elif isinstance(constraint, TimeOfDateConstraint):
            begin = _time_of_day_us(constraint.start_time)
            end = _time_of_day_us(constraint.end_time)
            self.points = tuple(sorted({begin, end}))
            if end < begin:
                self.active = lambda ts: ts % _DAY_US >= begin or ts % _DAY_US < end
            else:
                self.active = lambda ts: begin <= ts % _DAY_US < end
        else:
            raise PricingError(f"unsupported price constraint {type(constraint).__name__}")

    def stable_around(self, ts: int) -> tuple[int, int]:
        """``[low, high)`` containing ``ts`` in which ``active`` keeps its value."""
        if self.start is not None:
            return (self.start, _FOREVER) if ts >= self.start else (-_FOREVER, self.start)
        day = ts - ts % _DAY_US
        moments = [day + point + shift for shift in (-_DAY_US, 0, _DAY_US) for point in self.points]
        return max(m for m in moments if m <= ts), min(m for m in moments if m > ts)


_FOREVER = 1 << 62


def _constraint(constraint: object) -> _Constraint | None:
    return None if constraint is None else _Constraint(constraint)


def _decimal_parts(value: Decimal) -> tuple[int, int]:
    """``value`` as (integer coefficient, exponent)."""
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    assert not sign
    coefficient = 0
    for digit in digits:
        coefficient = coefficient * 10 + digit
    return coefficient, exponent


def _pow10_exponent(per: int) -> int | None:
    k = 0
    while per % 10 == 0 and per > 1:
        per //= 10
        k += 1
    return k if per == 1 else None


_PriceFn = Callable[[int, int, int, int, int], Decimal | None]


def _compile_model_price(model_price: gp_types.ModelPrice) -> _PriceFn | None:
    """Generate straight-line code that equals ``model_price.calc_price(usage)['total_price']`` for base usage.

    Returns ``None`` when the price model has a shape this compiler does not handle (the library path is used).
    """
    from genai_prices.decompose import is_descendant_or_self
    from genai_prices.types import TieredPrices, _collect_resolved_model_prices
    from genai_prices.units import _get_registry
    from genai_prices.validation import validate_priced_units

    registry = _get_registry()
    resolved = _collect_resolved_model_prices(model_price, registry)
    validate_priced_units(tuple(unit for unit, _ in resolved), registry)

    # Leaf counts as linear combinations of the base counts (genai_prices.decompose.compute_leaf_values, done once
    # symbolically). Units other than the base five are not reported by the compiled path, so their count is 0.
    priced = {unit.usage_key: unit for unit, _ in resolved if unit.usage_key != "requests"}
    order = sorted(priced.values(), key=lambda unit: (-len(unit.dimensions), unit.usage_key))
    leaves: dict[str, dict[int, int]] = {}
    for unit in order:
        combo: dict[int, int] = {}
        if unit.usage_key in _BASE_KEYS:
            combo[_BASE_KEYS.index(unit.usage_key)] = 1
        for other in order:
            if other is not unit and is_descendant_or_self(unit, other):
                for index, coefficient in leaves[other.usage_key].items():
                    combo[index] = combo.get(index, 0) - coefficient
        leaves[unit.usage_key] = {i: c for i, c in combo.items() if c}

    # Each term contributes P * count * 10**(e - k): P, e from the price, 10**k the unit's ``per``.
    terms: list[tuple[str, list[tuple[int, int]], list[tuple[int, int, int]], int]] = []
    for unit, price in resolved:
        k = _pow10_exponent(unit.per)
        if k is None:
            if unit.usage_key in priced and leaves[unit.usage_key]:
                return None  # a non-decimal ``per`` (hours) on a count the compiled path can see
            k = 0  # such a unit's count is always 0 here; only its exponent matters
        if isinstance(price, TieredPrices):
            options = [(tier.start, *_decimal_parts(tier.price)) for tier in reversed(price.tiers)]
            options.append((-1, *_decimal_parts(price.base)))
        else:
            options = [(-1, *_decimal_parts(price))]
        # a priced request is billed once per call, whatever the usage says (as in genai-prices)
        count_expr = [(-1, 1)] if unit.usage_key == "requests" else sorted(leaves[unit.usage_key].items())
        terms.append((unit.usage_key, count_expr, options, k))

    return _generate(terms)


def _generate(terms: list[tuple[str, list[tuple[int, int]], list[tuple[int, int, int]], int]]) -> _PriceFn:
    """Emit the price function for compiled terms.

    The function keeps ``n``, the exact total as an integer multiple of ``10**scale``, and ``e``, the exponent
    genai-prices' Decimal sum would have: ``min(0, exponent of each price * count / per)``, where a zero count keeps
    the price's exponent and ``/ per`` (a power of ten, ``10**k``) strips up to ``k`` trailing zeros.
    """
    scale = min([0, *(exponent - k for _, _, options, k in terms for _, _, exponent in options)])
    constant_e = 0
    constant_n = 0
    body: list[str] = []
    for count_expr, options, k in ((c, o, k) for _, c, o, k in terms):
        if not count_expr or count_expr == [(-1, 1)]:
            # a count that is always 0 (a unit the compiled path never reports) or always 1 (requests)
            if not count_expr and len(options) > 1:
                body += [*_tier_select(options, "x"), "    if x < e: e = x"]
            if not count_expr:
                if len(options) == 1:
                    constant_e = min(constant_e, options[0][2])
                continue
        if count_expr == [(-1, 1)] and len(options) == 1:
            _, coefficient, exponent = options[0]
            constant_n += coefficient * 10 ** (exponent - k - scale)
            stripped = 0
            while stripped < k and (coefficient // 10**stripped) % 10 == 0:
                stripped += 1
            constant_e = min(constant_e, exponent - k + stripped)
            continue
        if count_expr == [(-1, 1)]:
            body.append("    c = 1")
        else:
            terms_text = " ".join(
                f"{'+' if c > 0 else '-'} {'' if abs(c) == 1 else f'{abs(c)} * '}{_ARGS[i]}" for i, c in count_expr
            )
            body.append(f"    c = {terms_text.removeprefix('+ ')}")
        if len(options) == 1:
            _, coefficient, exponent = options[0]
            body += [
                "    if c:",
                *(["        if c < 0: return None"] if any(c < 0 for _, c in count_expr) else []),
                f"        v = {coefficient} * c",
                f"        n += v * {10 ** (exponent - k - scale)}",
                f"        if {exponent - k} < e:",
                f"            t = {exponent - k}",
                f"            while t < {exponent} and v % 10 == 0:",
                "                v //= 10",
                "                t += 1",
                "            if t < e: e = t",
                f"    elif {exponent} < e: e = {exponent}",
            ]
        else:
            body += _tier_select(options, "x", with_coefficient=True)
            body += [
                "    if c:",
                *(["        if c < 0: return None"] if any(c < 0 for _, c in count_expr) else []),
                "        v = p * c",
                f"        n += v * _P10[x - {k + scale}]",
                f"        t = x - {k}",
                "        if t < e:",
                "            while t < x and v % 10 == 0:",
                "                v //= 10",
                "                t += 1",
                "            if t < e: e = t",
                "    elif x < e: e = x",
            ]
    lines = ["def price(i, o, cr, cw, r):", f"    n = {constant_n}", f"    e = {constant_e}", *body]
    lines += [
        f"    if n >= {_EXACT_LIMIT}: return None",
        # 1E<e> * int keeps exponent e: the cheapest way to build the result; in the exact context, so a caller's
        # low-precision decimal context cannot round it
        f"    return _MUL(_UNIT[e], n // _P10[e - {scale}])",
    ]
    namespace: dict[str, Any] = {"_P10": _POW10, "_UNIT": _UNIT_AT_EXPONENT, "_MUL": EXACT.multiply}
    exec("\n".join(lines), namespace)
    fn: _PriceFn = namespace["price"]
    return fn


def _tier_select(
    options: list[tuple[int, int, int]], exponent_name: str, *, with_coefficient: bool = False
) -> list[str]:
    """Pick a tier by total input tokens (``i > start``), as genai_prices.types.calc_unit_price does."""
    lines = []
    for position, (start, coefficient, exponent) in enumerate(options):
        target = (
            f"p, {exponent_name} = {coefficient}, {exponent}" if with_coefficient else f"{exponent_name} = {exponent}"
        )
        if start < 0:
            lines.append(f"    else: {target}" if position else f"    {target}")
        else:
            lines.append(f"    {'if' if position == 0 else 'elif'} i > {start}: {target}")
    return lines


_POW10 = tuple(10**n for n in range(64))


class _UnitAtExponent(dict[int, Decimal]):
    """``Decimal(1).scaleb(e)`` by exponent, made on first use: ``1E-9``, ``1E-8``, ..."""

    def __missing__(self, exponent: int) -> Decimal:
        value = self[exponent] = Decimal((0, (1,), exponent))
        return value


_UNIT_AT_EXPONENT = _UnitAtExponent()


@dataclass(frozen=True, slots=True)
class CustomPrice:
    """A price for a model the catalog does not know (custom, fine-tuned, self-hosted), or to override it.

    Token prices are in US dollars per million tokens, like provider price pages. Cache reads and writes are charged
    at ``input_mtok`` unless their own price is given; reasoning tokens are output tokens.
    """

    input_mtok: Decimal = Decimal(0)
    """Dollars per million input tokens."""
    output_mtok: Decimal = Decimal(0)
    """Dollars per million output tokens (reasoning included)."""
    cache_read_mtok: Decimal | None = None
    """Dollars per million cache-read tokens; ``None`` charges them as input."""
    cache_write_mtok: Decimal | None = None
    """Dollars per million cache-write tokens; ``None`` charges them as input."""
    per_request: Decimal = Decimal(0)
    """Dollars per request."""
    units: Mapping[str, Decimal] = field(default_factory=dict)
    """Dollars per named unit, e.g. ``{"gpu_seconds": Decimal("0.0004")}``."""

    def __post_init__(self) -> None:
        for name in ("input_mtok", "output_mtok", "per_request"):
            object.__setattr__(self, name, to_money(getattr(self, name), what=name))
        for name in ("cache_read_mtok", "cache_write_mtok"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, to_money(getattr(self, name), what=name))
        units = {}
        for unit, price in dict(self.units).items():
            if type(unit) is not str or not unit:
                raise PricingError(f"unit names must be non-empty strings, got {unit!r}")
            units[unit] = to_money(price, what=f"price of unit {unit!r}")
        object.__setattr__(self, "units", units)

    def price(self, usage: Usage) -> Decimal | None:
        """The cost of ``usage``; ``None`` if it reports a unit this price does not know."""
        # all in the exact context: products of decimals and divisions by 10**6 never round
        mul, add = EXACT.multiply, EXACT.add
        uncached = usage.input_tokens
        per_million = mul(self.output_mtok, usage.output_tokens)
        total = mul(self.per_request, usage.requests)
        if self.cache_read_mtok is not None:
            uncached -= usage.cache_read_tokens
            per_million = add(per_million, mul(self.cache_read_mtok, usage.cache_read_tokens))
        if self.cache_write_mtok is not None:
            uncached -= usage.cache_write_tokens
            per_million = add(per_million, mul(self.cache_write_mtok, usage.cache_write_tokens))
        per_million = add(per_million, mul(self.input_mtok, uncached))
        total = add(total, per_million.scaleb(-6, EXACT))
        for unit, amount in (usage.units or {}).items():
            unit_price = self.units.get(unit)
            if unit_price is None:
                return None
            total = add(total, mul(unit_price, amount))
        return total


@dataclass(frozen=True, slots=True)
class Quote:
    """A priced call with its explanation (see :meth:`PriceBook.quote`)."""

    cost: Decimal | None
    """The cost, or ``None`` when the call cannot be priced."""
    source: str
    """Where the price came from: ``"catalog"``, ``"custom"`` or ``"unpriced"``."""
    model_id: str | None
    """The catalog or custom model the reference resolved to."""
    provider_id: str | None
    """The provider the reference resolved to."""
    reason: str | None
    """Why the call is unpriced, when it is."""


class _CatalogModel:
    """One catalog model of one provider, with its compiled price rows."""

    __slots__ = (
        "_by_state",
        "_conditions",
        "_info",
        "_library_only",
        "_own_variants",
        "_provider",
        "_variants",
        "_window",
        "static",
    )

    def __init__(self, provider: gp_types.Provider, info: gp_types.ModelInfo) -> None:
        from genai_prices.types import ModelPrice

        self._provider = provider
        self._info = info
        self._by_state: dict[tuple[object, ...], _PriceFn | None] = {}
        # groq bills whisper models a 10-second minimum: a special case inside genai-prices; keep it there.
        self._library_only = provider.id == "groq" and info.id in ("whisper-large-v3", "whisper-large-v3-turbo")
        if isinstance(info.prices, ModelPrice):
            self._conditions: tuple[_Constraint | None, ...] = ()
        else:
            self._conditions = tuple(_constraint(c.constraint) for c in info.prices)
        self._variants = tuple((dict(v.when), _constraint(v.constraint)) for v in (info.price_variants or ()))
        # genai-prices applies request-context variants only to a provider's own models, not to models it serves
        # through a fallback provider; fixed per model, so decided once here rather than per call
        self._own_variants = any(info is model for model in provider.models)
        # the price function of the last context-free call, and the interval in which it stays the right one
        self._window: tuple[int, int, _PriceFn | None] = (0, 0, None)
        self.static: _PriceFn | None = None
        if not self._conditions and not self._library_only:
            self.static = self._compiled(0, ())

    def _compiled(self, condition: int, variants: tuple[int, ...]) -> _PriceFn | None:
        key = (condition, variants)
        try:
            return self._by_state[key]
        except KeyError:
            pass
        from genai_prices.types import ModelPrice

        prices = self._info.prices
        standard = prices if isinstance(prices, ModelPrice) else prices[condition].prices
        if variants:
            merged = dict(standard.__dict__)
            overrides: dict[str, object] = {}
            for index in variants:
                for price_key, price in (self._info.price_variants or ())[index].prices.__dict__.items():
                    if price is not None:
                        overrides.setdefault(price_key, price)
            merged.update(overrides)
            standard = ModelPrice(**merged)
        fn = self._by_state[key] = _compile_model_price(standard)
        return fn

    def price(
        self, i: int, o: int, cr: int, cw: int, r: int, ts: int | None, context: Mapping[str, str] | None
    ) -> Decimal | None:
        if self._library_only:
            return None
        if ts is None:
            ts = _now_us()
        uses_context = bool(context) and self._own_variants
        if not uses_context:
            low, high, fn = self._window
            if low <= ts < high:
                return None if fn is None else fn(i, o, cr, cw, r)
        condition = 0
        for index in range(len(self._conditions) - 1, -1, -1):  # the last active price wins
            check = self._conditions[index]
            if check is None or check.active(ts):
                condition = index
                break
        variants: tuple[int, ...] = ()
        if uses_context:
            assert context is not None
            variants = tuple(
                index
                for index, (when, check) in enumerate(self._variants)
                if (check is None or check.active(ts)) and all(context.get(k) == v for k, v in when.items())
            )
        fn = self._compiled(condition, variants)
        if not uses_context:
            low, high = -_FOREVER, _FOREVER
            for check in self._conditions:
                if check is not None:
                    begin, end = check.stable_around(ts)
                    low, high = max(low, begin), min(high, end)
            self._window = (low, high, fn)
        return None if fn is None else fn(i, o, cr, cw, r)


_NOT_FOUND = object()


class PriceBook:
    """Prices calls: genai-prices' bundled catalog, with your overrides on top.

    >>> book = PriceBook()
    >>> book.price("gpt-4o", Usage(input_tokens=1000, output_tokens=100), provider="openai")
    Decimal('0.0035')
    """

    def __init__(
        self,
        *,
        models: Mapping[str, CustomPrice] | None = None,
        tools: Mapping[str, Decimal | int | str] | None = None,
        default_tool_price: Decimal | int | str | None = None,
        catalog: bool = True,
    ) -> None:
        """Create a price book.

        Args:
            models: custom prices by model name, or by ``"provider/model"`` to apply to one provider only.
            tools: per-call tool prices by tool name.
            default_tool_price: the price of a tool call whose tool has no price; ``None`` leaves it unpriced.
            catalog: whether to use genai-prices' catalog for models without a custom price.
        """
        self._custom: dict[tuple[str | None, str], CustomPrice] = {}
        self._tools: dict[str, Decimal] = {}
        self._default_tool_price = None if default_tool_price is None else to_money(default_tool_price)
        self._catalog = catalog
        self._resolved: dict[tuple[str | None, str], object] = {}
        self._lock = threading.Lock()
        for name, price in (models or {}).items():
            provider, _, model = name.rpartition("/") if "/" in name else ("", "", name)
            self.add_model(model, price, provider=provider or None)
        for name, tool_price in (tools or {}).items():
            self.add_tool(name, tool_price)

    # -- configuration -------------------------------------------------------------------------------------------
    def add_model(self, model: str, price: CustomPrice, *, provider: str | None = None) -> PriceBook:
        """Price ``model`` (of ``provider``, or of any provider) with ``price``; returns the book for chaining."""
        if type(model) is not str or not model:
            raise PricingError(f"model must be a non-empty string, got {model!r}")
        if not isinstance(price, CustomPrice):
            raise PricingError(f"price must be a CustomPrice, got {type(price).__name__}")
        with self._lock:
            self._custom[(provider.lower() if provider else None, model.lower())] = price
            self._resolved.clear()
        return self

    def add_tool(self, name: str, per_call: Decimal | int | str) -> PriceBook:
        """Price each call of the tool ``name`` at ``per_call`` dollars; returns the book for chaining."""
        if type(name) is not str or not name:
            raise PricingError(f"tool name must be a non-empty string, got {name!r}")
        self._tools[name] = to_money(per_call, what=f"price of tool {name!r}")
        return self

    @classmethod
    def from_file(cls, path: str | Path, *, catalog: bool = True) -> PriceBook:
        """Load overrides from a TOML or JSON file (see docs/pricing.md for the format)."""
        path = Path(path)
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as error:
            raise PricingError(
                f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {error}"
            ) from None
        return cls.from_dict(data, catalog=catalog, origin=str(path))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, catalog: bool = True, origin: str = "price data") -> PriceBook:
        """Build a book from the parsed form of a price file."""
        if not isinstance(data, Mapping):
            raise PricingError(f"{origin}: expected a table with 'models' and 'tools'")
        unknown = set(data) - {"models", "tools", "default_tool_price"}
        if unknown:
            raise PricingError(
                f"{origin}: unknown keys {sorted(unknown)}; expected 'models', 'tools', 'default_tool_price'"
            )
        book = cls(
            catalog=catalog,
            default_tool_price=_file_money(data.get("default_tool_price"), origin, "default_tool_price"),
        )
        for entry in data.get("models", []):
            if not isinstance(entry, Mapping) or "model" not in entry:
                raise PricingError(f"{origin}: each entry of 'models' needs a 'model' name, got {entry!r}")
            allowed = {
                "model",
                "provider",
                "input_mtok",
                "output_mtok",
                "cache_read_mtok",
                "cache_write_mtok",
                "per_request",
                "per_gpu_second",
                "units",
            }
            extra = set(entry) - allowed
            if extra:
                raise PricingError(f"{origin}: model {entry['model']!r} has unknown keys {sorted(extra)}")
            where = f"model {entry['model']!r}"
            if not isinstance(entry.get("units", {}), Mapping):
                raise PricingError(f"{origin}: {where} 'units' must be a table of unit name to price")
            if entry.get("provider") is not None and type(entry.get("provider")) is not str:
                raise PricingError(f"{origin}: {where} 'provider' must be a string")
            units = {
                name: _file_money(value, origin, f"{where} unit {name!r}")
                for name, value in dict(entry.get("units", {})).items()
            }
            if "per_gpu_second" in entry:
                units["gpu_seconds"] = _file_money(entry["per_gpu_second"], origin, f"{where} per_gpu_second")
            price = CustomPrice(
                input_mtok=_file_money(entry.get("input_mtok", "0"), origin, f"{where} input_mtok") or ZERO,
                output_mtok=_file_money(entry.get("output_mtok", "0"), origin, f"{where} output_mtok") or ZERO,
                cache_read_mtok=_file_money(entry.get("cache_read_mtok"), origin, f"{where} cache_read_mtok"),
                cache_write_mtok=_file_money(entry.get("cache_write_mtok"), origin, f"{where} cache_write_mtok"),
                per_request=_file_money(entry.get("per_request", "0"), origin, f"{where} per_request") or ZERO,
                units={k: v for k, v in units.items() if v is not None},
            )
            book.add_model(entry["model"], price, provider=entry.get("provider"))
        tools = data.get("tools", {})
        if not isinstance(tools, Mapping):
            raise PricingError(f"{origin}: 'tools' must be a table of tool name to price")
        for name, value in tools.items():
            tool_price = _file_money(value, origin, f"tool {name!r}")
            if tool_price is not None:
                book.add_tool(name, tool_price)
        return book

    # -- pricing ---------------------------------------------------------------------------------------------------
    def _resolve(self, provider: str | None, model: str) -> object:
        key = (provider, model)
        resolved = self._resolved.get(key, _NOT_FOUND)
        if resolved is not _NOT_FOUND:
            return resolved
        resolved = self._lookup(provider, model)
        self._resolved[key] = resolved
        return resolved

    def _lookup(self, provider: str | None, model: str) -> object:
        """A ``CustomPrice``, a ``_CatalogModel``, or a string saying why the model is unknown."""
        lowered = model.lower()
        custom = self._custom.get((provider.lower() if provider else None, lowered)) or self._custom.get(
            (None, lowered)
        )
        if custom is not None:
            return custom
        if not self._catalog:
            return f"no custom price for model {model!r} and the catalog is off"
        from genai_prices.data_snapshot import get_snapshot

        try:
            found_provider, info = get_snapshot().find_provider_model(model, None, provider, None)
        except LookupError as error:
            return f"{error}; add a CustomPrice for it to the PriceBook"
        return _CatalogModel(found_provider, info)

    def price(
        self,
        model: str,
        usage: Usage,
        *,
        provider: str | None = None,
        at: datetime | float | None = None,
        price_context: Mapping[str, str] | None = None,
    ) -> Decimal | None:
        """The cost of one call of ``model`` that consumed ``usage``, or ``None`` if it cannot be priced.

        ``at`` is when the request was made (a datetime, or seconds since the epoch; default: now), for historical
        and time-of-day prices;
        ``price_context`` selects request-specific variants such as ``{"service_tier": "flex"}``.
        """
        resolved = self._resolved.get((provider, model), _NOT_FOUND)
        if resolved is _NOT_FOUND:
            resolved = self._resolve(provider, model)
        if type(resolved) is _CatalogModel:
            if not usage.units:
                fn = resolved.static
                if fn is not None and not price_context:
                    cost = fn(
                        usage.input_tokens,
                        usage.output_tokens,
                        usage.cache_read_tokens,
                        usage.cache_write_tokens,
                        usage.reasoning_tokens,
                    )
                    if cost is not None:
                        return cost
                else:
                    cost = resolved.price(
                        usage.input_tokens,
                        usage.output_tokens,
                        usage.cache_read_tokens,
                        usage.cache_write_tokens,
                        usage.reasoning_tokens,
                        None if at is None else _timestamp_us(at),
                        price_context,
                    )
                    if cost is not None:
                        return cost
            return self._library_price(resolved, usage, at, price_context)
        if type(resolved) is CustomPrice:
            return resolved.price(usage)
        return None

    def quote(
        self,
        model: str,
        usage: Usage,
        *,
        provider: str | None = None,
        at: datetime | float | None = None,
        price_context: Mapping[str, str] | None = None,
    ) -> Quote:
        """Like :meth:`price`, with where the price came from and, for an unpriced call, why."""
        resolved = self._resolve(provider, model)
        cost = self.price(model, usage, provider=provider, at=at, price_context=price_context)
        if isinstance(resolved, str):
            return Quote(cost=None, source="unpriced", model_id=None, provider_id=provider, reason=resolved)
        if isinstance(resolved, CustomPrice):
            reason = (
                None
                if cost is not None
                else (
                    f"usage reports units {sorted(usage.units or {})} but the custom price of {model!r} prices only "
                    f"{sorted(resolved.units)}"
                )
            )
            return Quote(
                cost=cost,
                source="custom" if cost is not None else "unpriced",
                model_id=model,
                provider_id=provider,
                reason=reason,
            )
        assert isinstance(resolved, _CatalogModel)
        reason = None
        if cost is None:
            reason = self._library_error(resolved, usage, at, price_context) or "genai-prices could not price it"
        return Quote(
            cost=cost,
            source="catalog" if cost is not None else "unpriced",
            model_id=resolved._info.id,
            provider_id=resolved._provider.id,
            reason=reason,
        )

    def tool_price(self, name: str) -> Decimal | None:
        """The per-call price of tool ``name``: its own, else the default tool price, else ``None``."""
        return self._tools.get(name, self._default_tool_price)

    def knows(self, model: str, *, provider: str | None = None) -> bool:
        """Whether ``model`` resolves to a custom or catalog price."""
        return not isinstance(self._resolve(provider, model), str)

    # -- the library path --------------------------------------------------------------------------------------------
    @staticmethod
    def _genai_usage(usage: Usage) -> object:
        from genai_prices import Usage as GenaiUsage
        from genai_prices.types import _reported_usage_keys

        known = _reported_usage_keys()
        values: dict[str, Any] = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_read_tokens": usage.cache_read_tokens,
            "cache_write_tokens": usage.cache_write_tokens,
            "output_reasoning_tokens": usage.reasoning_tokens,
        }
        for name, amount in (usage.units or {}).items():
            if name not in known or name in values:
                raise _UnknownUnit(name)
            values[name] = amount
        return GenaiUsage(**values)

    def _library_price(
        self, model: _CatalogModel, usage: Usage, at: datetime | float | None, context: Mapping[str, str] | None
    ) -> Decimal | None:
        return self._library_call(model, usage, at, context)[0]

    def _library_error(
        self, model: _CatalogModel, usage: Usage, at: datetime | float | None, context: Mapping[str, str] | None
    ) -> str | None:
        return self._library_call(model, usage, at, context)[1]

    def _library_call(
        self, model: _CatalogModel, usage: Usage, at: datetime | float | None, context: Mapping[str, str] | None
    ) -> tuple[Decimal | None, str | None]:
        """genai-prices' own answer: (cost, None), or (None, why it could not price the call)."""
        try:
            calculation = model._info.calc_price(
                self._genai_usage(usage),
                model._provider,
                genai_request_timestamp=_as_datetime(at),
                price_context=context,
            )
        except _UnknownUnit as error:
            return None, f"unit {error.args[0]!r} is not a genai-prices usage unit; price it with a CustomPrice"
        except ValueError as error:
            return None, str(error)
        return calculation.total_price, None


class _UnknownUnit(AgentCostError):
    pass


def _file_money(value: object, origin: str, what: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return to_money(value, what=what)
    except (TypeError, ValueError) as error:
        hint = ' (quote prices in files: "0.15", not 0.15)' if isinstance(value, float) else ""
        raise PricingError(f"{origin}: {error}{hint}") from None


_default_book: PriceBook | None = None


def default_price_book() -> PriceBook:
    """The shared catalog-only book, whose compiled prices every run without its own book reuses."""
    global _default_book
    if _default_book is None:
        _default_book = PriceBook()
    return _default_book


def _iter_catalog() -> Iterable[tuple[str, str]]:
    """Every (provider id, model id) of the bundled catalog (for tests and the CLI)."""
    from genai_prices.data_snapshot import get_snapshot

    for provider in get_snapshot().providers:
        for info in provider.models:
            yield provider.id, info.id
