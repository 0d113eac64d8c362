"""Usage: validated token counts and named units, fieldwise addition, and the dict form."""

from __future__ import annotations

import enum
import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentcost import InvalidUsage, Usage
from agentcost._usage import EMPTY_USAGE

FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "requests")


class Count(int):
    """An int subclass, like numpy-free wrappers some SDKs return."""


class Color(enum.IntEnum):
    RED = 3


# -- validation ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [-1, -(10**20)])
def test_negative_count_is_rejected_naming_the_field(field: str, value: int) -> None:
    """A negative count raises InvalidUsage (a ValueError) whose message names the field and the value."""
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(InvalidUsage) as raised:
        Usage(**kwargs)
    assert isinstance(raised.value, ValueError)
    assert field in str(raised.value)
    assert str(value) in str(raised.value)


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("value", [1.0, 2.5, "5", True, False, None, Decimal(3)])
def test_non_integer_count_is_rejected_naming_the_field(field: str, value: object) -> None:
    """A float, string, bool, None or Decimal count raises InvalidUsage naming the field and the type."""
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(InvalidUsage) as raised:
        Usage(**kwargs)
    assert isinstance(raised.value, ValueError)
    assert field in str(raised.value)
    assert type(value).__name__ in str(raised.value)


def test_first_bad_field_is_named() -> None:
    """With several bad fields the message names a bad one, not a valid one."""
    with pytest.raises(InvalidUsage, match="output_tokens"):
        Usage(input_tokens=10, output_tokens=-1, requests=-1)


@pytest.mark.parametrize(("cache_read", "cache_write"), [(11, 0), (0, 11), (6, 5), (10**30, 10**30)])
def test_cache_tokens_must_fit_in_input(cache_read: int, cache_write: int) -> None:
    """cache_read_tokens + cache_write_tokens > input_tokens is rejected: input counts every prompt token."""
    input_tokens = 10 if cache_read < 10**30 else 10**30
    with pytest.raises(InvalidUsage, match="input_tokens") as raised:
        Usage(input_tokens=input_tokens, cache_read_tokens=cache_read, cache_write_tokens=cache_write)
    assert "cache_read_tokens" in str(raised.value)


def test_cache_tokens_may_fill_input() -> None:
    """cache_read_tokens + cache_write_tokens == input_tokens is valid."""
    usage = Usage(input_tokens=10, cache_read_tokens=6, cache_write_tokens=4)
    assert (usage.input_tokens, usage.cache_read_tokens, usage.cache_write_tokens) == (10, 6, 4)


def test_reasoning_must_fit_in_output() -> None:
    """reasoning_tokens > output_tokens is rejected; equal is valid."""
    with pytest.raises(InvalidUsage, match="reasoning_tokens"):
        Usage(output_tokens=5, reasoning_tokens=6)
    assert Usage(output_tokens=6, reasoning_tokens=6).reasoning_tokens == 6


@pytest.mark.parametrize("value", [Count(7), Color.RED])
def test_int_subclasses_are_normalized_to_int(value: int) -> None:
    """int subclasses (not bool) are accepted and stored as plain ints."""
    usage = Usage(
        input_tokens=value,
        output_tokens=value,
        cache_read_tokens=value,
        reasoning_tokens=value,
        requests=value,
        units={"web_searches": value},
    )
    for field in ("input_tokens", "output_tokens", "cache_read_tokens", "reasoning_tokens", "requests"):
        assert type(getattr(usage, field)) is int, field
        assert getattr(usage, field) == int(value)
    assert usage.units is not None
    assert type(usage.units["web_searches"]) is int
    assert usage == Usage(int(value), int(value), int(value), 0, int(value), int(value), {"web_searches": int(value)})


def test_defaults() -> None:
    """A default Usage is one request and nothing else; EMPTY_USAGE is zero requests."""
    usage = Usage()
    assert [getattr(usage, field) for field in FIELDS] == [0, 0, 0, 0, 0, 1]
    assert usage.units is None
    assert usage.total_tokens == 0
    assert EMPTY_USAGE.requests == 0
    assert Usage(units={}).units is None


# -- units -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (0, 0),
        (Decimal("3.5"), Decimal("3.5")),
        ("3.50", Decimal("3.50")),
        ("1e3", Decimal("1E+3")),
        (1.5, Decimal("1.5")),
        (0.1, Decimal("0.1")),
        (0.1 + 0.2, Decimal("0.30000000000000004")),
        (1e-7, Decimal("1E-7")),
    ],
)
def test_unit_values_accepted(value: object, expected: int | Decimal) -> None:
    """Unit amounts accept int, Decimal and decimal strings exactly, and floats by their shortest repr."""
    usage = Usage(units={"gpu_seconds": value})
    assert usage.units is not None
    stored = usage.units["gpu_seconds"]
    assert type(stored) is type(expected)
    assert stored == expected
    assert str(stored) == str(expected)


@pytest.mark.parametrize(
    "value",
    [
        -1,
        Decimal("-0.5"),
        "-2",
        -1.5,
        float("nan"),
        float("inf"),
        Decimal("NaN"),
        Decimal("-Infinity"),
        "nan",
        "Infinity",
        "lots",
        True,
        None,
        [1],
    ],
)
def test_unit_values_rejected(value: object) -> None:
    """Negative, NaN, infinite, non-numeric and bool unit amounts raise InvalidUsage naming the unit."""
    with pytest.raises(InvalidUsage, match="gpu_seconds") as raised:
        Usage(units={"gpu_seconds": value})
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize("units", [{"": 1}, {3: 1}, {None: 1}, [("gpu_seconds", 1)]])
def test_unit_names_and_container_validated(units: Any) -> None:
    """Unit names must be non-empty strings and units a mapping."""
    with pytest.raises(InvalidUsage):
        Usage(units=units)


# -- addition --------------------------------------------------------------------------------------------------------

unit_amounts = st.one_of(
    st.integers(0, 10**12),
    st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False),
)


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    """Any valid Usage, with or without units."""
    inp = draw(st.integers(0, 10**15))
    cache_read = draw(st.integers(0, inp))
    cache_write = draw(st.integers(0, inp - cache_read))
    out = draw(st.integers(0, 10**15))
    reasoning = draw(st.integers(0, out))
    requests = draw(st.integers(0, 100))
    units = draw(
        st.none()
        | st.dictionaries(st.sampled_from(["web_searches", "gpu_seconds", "images", "pages"]), unit_amounts, max_size=4)
    )
    return Usage(inp, out, cache_read, cache_write, reasoning, requests, units)


def test_addition_is_fieldwise() -> None:
    """+ adds every count and merges units by name, adding shared ones."""
    a = Usage(10, 5, 3, 2, 1, 1, {"web_searches": 2, "gpu_seconds": Decimal("1.5")})
    b = Usage(20, 7, 4, 0, 7, 2, {"gpu_seconds": 2, "images": 1})
    total = a + b
    assert [getattr(total, field) for field in FIELDS] == [30, 12, 7, 2, 8, 3]
    assert total.units == {"web_searches": 2, "gpu_seconds": Decimal("3.5"), "images": 1}
    assert total.total_tokens == 42
    assert a.units == {"web_searches": 2, "gpu_seconds": Decimal("1.5")}, "operands are not modified"
    assert (Usage(1) + Usage(2)).units is None


def test_addition_with_other_types_is_a_type_error() -> None:
    """Adding something that is not a Usage raises TypeError."""
    with pytest.raises(TypeError):
        _ = Usage() + 1  # type: ignore[operator]


@settings(max_examples=150, deadline=None)
@given(a=usages(), b=usages(), c=usages())
def test_addition_is_associative_and_commutative(a: Usage, b: Usage, c: Usage) -> None:
    """(a + b) + c == a + (b + c) and a + b == b + a, units included; equal usages hash equal."""
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert hash(a + b) == hash(b + a)


@settings(max_examples=150, deadline=None)
@given(a=usages(), b=usages())
def test_addition_adds_each_field(a: Usage, b: Usage) -> None:
    """total_tokens, requests and every count of a sum are the sums of the operands'."""
    total = a + b
    assert total.total_tokens == a.total_tokens + b.total_tokens
    for field in FIELDS:
        assert getattr(total, field) == getattr(a, field) + getattr(b, field)
    for name in {*(a.units or {}), *(b.units or {})}:
        assert total.units is not None
        assert total.units[name] == (a.units or {}).get(name, 0) + (b.units or {}).get(name, 0)
    assert a + Usage(requests=0) == a


# -- equality and the dict form --------------------------------------------------------------------------------------


def test_equality_compares_all_fields() -> None:
    """Usages are equal exactly when every count and unit is equal."""
    assert Usage(1, 2) == Usage(1, 2)
    assert Usage(1, 2) != Usage(1, 3)
    assert Usage(1, 2) != Usage(1, 2, requests=2)
    assert Usage(units={"a": 1, "b": 2}) == Usage(units={"b": 2, "a": Decimal(1)})
    assert Usage(units={"a": 1}) != Usage(units={"a": 2})
    assert Usage(units={"a": 1}) != Usage()
    assert Usage() != "Usage()"


def test_to_dict_shape() -> None:
    """to_dict leaves out zeros and the default single request, and writes Decimal units as strings."""
    assert Usage().to_dict() == {}
    assert Usage(requests=0).to_dict() == {"requests": 0}
    usage = Usage(10, 4, cache_read_tokens=3, reasoning_tokens=1, units={"gpu_seconds": Decimal("3.50"), "n": 2})
    assert usage.to_dict() == {
        "input_tokens": 10,
        "output_tokens": 4,
        "cache_read_tokens": 3,
        "reasoning_tokens": 1,
        "units": {"gpu_seconds": "3.50", "n": 2},
    }


def test_from_dict_rejects_unknown_fields() -> None:
    """from_dict raises InvalidUsage naming fields it does not know."""
    with pytest.raises(InvalidUsage, match="prompt_tokens"):
        Usage.from_dict({"prompt_tokens": 3})


def test_from_dict_validates_values() -> None:
    """from_dict applies the same validation as the constructor."""
    with pytest.raises(InvalidUsage, match="input_tokens"):
        Usage.from_dict({"input_tokens": "3"})
    with pytest.raises(InvalidUsage, match="gpu_seconds"):
        Usage.from_dict({"units": {"gpu_seconds": "-1"}})


@settings(max_examples=200, deadline=None)
@given(usage=usages())
def test_dict_round_trip(usage: Usage) -> None:
    """from_dict(to_dict(u)) == u, also through JSON, keeping each unit's type and exponent."""
    for data in (usage.to_dict(), json.loads(json.dumps(usage.to_dict()))):
        back = Usage.from_dict(data)
        assert back == usage
        assert back.to_dict() == usage.to_dict()
        for name, amount in (usage.units or {}).items():
            assert back.units is not None
            assert type(back.units[name]) is type(amount)
            assert str(back.units[name]) == str(amount)


def test_repr_shows_non_default_fields() -> None:
    """repr lists the non-zero counts, non-default requests and units."""
    assert repr(Usage()) == "Usage()"
    assert (
        repr(Usage(5, 2, requests=3, units={"n": 1}))
        == "Usage(input_tokens=5, output_tokens=2, requests=3, units={'n': 1})"
    )
