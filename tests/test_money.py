"""Money: to_money accepts exact amounts only (Decimal, int, decimal strings) and format_usd prints them exactly."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentcost import AgentCostError, InvalidMoney, InvalidMoneyType
from agentcost._money import ZERO, format_usd, to_money

# the documented range of money: below 10**16 dollars, and zero or at least 10**-50
finite_non_negative = st.decimals(
    min_value=0, max_value=Decimal("9999999999999999.99"), allow_nan=False, allow_infinity=False
).filter(lambda value: not value or value.adjusted() >= -50)


@pytest.mark.parametrize("value", [0.1, 0.0, 1.0, 1e-9, float("nan"), float("inf")])
def test_float_is_a_type_error_naming_decimal_and_str(value: float) -> None:
    """A float raises InvalidMoneyType (a TypeError) telling the caller to use a Decimal or a string."""
    with pytest.raises(InvalidMoneyType) as raised:
        to_money(value)
    error = raised.value
    assert isinstance(error, TypeError)
    assert isinstance(error, InvalidMoney)
    assert isinstance(error, AgentCostError)
    message = str(error)
    assert "Decimal" in message
    assert "string" in message
    assert "float" in message


def test_float_message_suggests_the_exact_spelling() -> None:
    """The float error names the value and suggests Decimal('0.15') and the string '0.15'."""
    with pytest.raises(InvalidMoneyType, match=r"Decimal\('0\.15'\)") as raised:
        to_money(0.15, what="input price")
    assert "'0.15'" in str(raised.value)
    assert str(raised.value).startswith("input price")


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_rejected(value: bool) -> None:
    """True and False are not amounts, although bool is an int subclass."""
    with pytest.raises(InvalidMoneyType, match="bool"):
        to_money(value)


@pytest.mark.parametrize("value", [None, [1], Fraction(1, 2), b"1", complex(1, 0)])
def test_other_types_are_type_errors(value: object) -> None:
    """Anything but Decimal, int or str raises InvalidMoneyType naming the type."""
    with pytest.raises(InvalidMoneyType, match=type(value).__name__):
        to_money(value)


@pytest.mark.parametrize(
    "value",
    [
        "NaN",
        "nan",
        "sNaN",
        "Infinity",
        "-Infinity",
        "inf",
        " NaN ",
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("sNaN"),
    ],
)
def test_non_finite_is_a_value_error(value: object) -> None:
    """NaN and infinite amounts raise InvalidMoney, a ValueError and not a TypeError."""
    with pytest.raises(InvalidMoney) as raised:
        to_money(value)
    assert isinstance(raised.value, ValueError)
    assert not isinstance(raised.value, TypeError)


@pytest.mark.parametrize("value", [-1, "-1", "-0.0001", Decimal("-1E-30"), -(10**30)])
def test_negative_is_a_value_error(value: object) -> None:
    """Negative amounts raise InvalidMoney (a ValueError) that says so."""
    with pytest.raises(InvalidMoney, match="negative") as raised:
        to_money(value, what="tool price")
    assert not isinstance(raised.value, TypeError)
    assert "tool price" in str(raised.value)


@pytest.mark.parametrize("value", ["", "abc", "1,5", "$1", "0x10", "1.2.3"])
def test_non_decimal_strings_are_value_errors(value: str) -> None:
    """A string that is not a decimal number raises InvalidMoney (a ValueError, not a TypeError)."""
    with pytest.raises(InvalidMoney, match="not a decimal number") as raised:
        to_money(value)
    assert not isinstance(raised.value, TypeError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (7, "7"),
        (10**15, str(10**15)),
        ("0.0025", "0.0025"),
        ("1.50", "1.50"),
        (" 2.5 ", "2.5"),
        ("1E-9", "1E-9"),
        ("1e3", "1E+3"),
        (Decimal("3.000"), "3.000"),
    ],
)
def test_exact_inputs_are_kept_exactly(value: object, expected: str) -> None:
    """ints, decimal strings and Decimals become a Decimal with the same value and exponent."""
    money = to_money(value)
    assert type(money) is Decimal
    assert str(money) == expected


def test_int_subclass_is_accepted_as_its_value() -> None:
    """An int subclass (not bool) is an exact amount."""

    class Cents(int):
        pass

    money = to_money(Cents(42))
    assert type(money) is Decimal
    assert money == 42


@settings(max_examples=300, deadline=None)
@given(value=finite_non_negative)
def test_finite_non_negative_decimal_round_trips(value: Decimal) -> None:
    """Any finite non-negative Decimal comes back unchanged: same value and same representation."""
    money = to_money(value)
    assert money == value
    assert str(money) == str(value)
    assert money.as_tuple() == value.as_tuple()
    from_text = to_money(str(value))
    assert from_text.as_tuple() == value.as_tuple()


@settings(max_examples=200, deadline=None)
@given(value=st.integers(min_value=0, max_value=10**16 - 1))
def test_non_negative_int_is_exact(value: int) -> None:
    """Any non-negative int below 10**16 is accepted exactly."""
    assert to_money(value) == value
    assert int(to_money(value)) == value


@pytest.mark.parametrize("value", [10**16, "1E+16", "1E+1000000", Decimal("1E-51"), "1E-1000000"])
def test_out_of_range_amounts_are_refused(value: object) -> None:
    """Amounts of 10**16 dollars or more, or non-zero below 10**-50, raise InvalidMoney naming the range."""
    with pytest.raises(InvalidMoney, match="out of range"):
        to_money(value)


@settings(max_examples=200, deadline=None)
@given(value=st.decimals(max_value=Decimal("-1E-40"), allow_nan=False, allow_infinity=False))
def test_any_negative_decimal_is_rejected(value: Decimal) -> None:
    """Every negative Decimal, however small, raises InvalidMoney."""
    with pytest.raises(InvalidMoney, match="negative"):
        to_money(value)


def test_zero_is_zero() -> None:
    """ZERO is the Decimal 0."""
    assert type(ZERO) is Decimal
    assert ZERO == 0


@pytest.mark.parametrize(
    ("amount", "places", "expected"),
    [
        (Decimal(0), None, "$0"),
        (Decimal("0.000"), 2, "$0"),
        (Decimal("0.00450"), None, "$0.0045"),
        (Decimal("1E+3"), None, "$1000"),
        (Decimal("12.3456"), 2, "$12.35"),
        (Decimal("1.005"), 2, "$1"),
        (Decimal("1.015"), 2, "$1.02"),
        (Decimal("0.0001"), 2, "$0.0001"),
        (Decimal("2.50"), 2, "$2.5"),
    ],
)
def test_format_usd(amount: Decimal, places: int | None, expected: str) -> None:
    """format_usd is exact without places, rounds half-even with them, and never hides a sub-cent amount as $0."""
    assert format_usd(amount, places=places) == expected


@settings(max_examples=200, deadline=None)
@given(
    value=st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False).filter(
        lambda value: len(value.as_tuple().digits) <= 28
    )
)
def test_format_usd_is_exact(value: Decimal) -> None:
    """Without places, the formatted amount parses back to the same value, in plain (non-scientific) notation."""
    text = format_usd(value)
    assert text.startswith("$")
    assert "E" not in text
    assert Decimal(text[1:]) == value


@pytest.mark.parametrize(
    ("amount", "places", "expected"),
    [
        (Decimal("0.10000000000000000000000000001"), None, "$0.10000000000000000000000000001"),
        (Decimal("1234567890123456789012345678.9"), None, "$1234567890123456789012345678.9"),
        (Decimal("1234567890123456789012345678.9"), 2, "$1234567890123456789012345678.9"),
    ],
)
def test_format_usd_beyond_the_default_precision(amount: Decimal, places: int | None, expected: str) -> None:
    """Amounts with more than 28 significant digits are still printed exactly (not rounded, no InvalidOperation)."""
    assert format_usd(amount, places=places) == expected
