"""Money: ``decimal.Decimal`` US dollars, never floats."""

from __future__ import annotations

from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow

from agentcost._errors import InvalidMoney, InvalidMoneyType

__all__ = [
    "EXACT",
    "MAX_MONEY_EXPONENT",
    "MIN_MONEY_EXPONENT",
    "ZERO",
    "exact_add",
    "exact_sub",
    "format_usd",
    "to_money",
]

ZERO = Decimal(0)

EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""The context of every money operation: never rounds, whatever decimal context the calling thread has set.
Only additions, multiplications and divisions by powers of ten are done in it, which are always exact."""

exact_add = EXACT.add
exact_sub = EXACT.subtract

MAX_MONEY_EXPONENT = 15
"""Amounts of 10**16 dollars or more are refused: no real call costs that, and it bounds every sum's size."""
MIN_MONEY_EXPONENT = -50
"""Non-zero amounts below 10**-50 dollars are refused, for the same reason."""


def to_money(value: object, *, what: str = "cost") -> Decimal:
    """Return ``value`` as a finite, non-negative ``Decimal``.

    Accepts ``Decimal``, ``int`` and decimal strings. A float raises: binary floats cannot hold most prices exactly
    and would make totals drift, so the caller has to say which decimal it means.
    """
    if type(value) is Decimal:
        # the common case, checked in a few cheap comparisons
        if (
            value.is_finite()
            and value >= 0
            and (not value or MIN_MONEY_EXPONENT <= value.adjusted() <= MAX_MONEY_EXPONENT)
        ):
            return value
        money = value
    elif isinstance(value, bool):
        raise InvalidMoneyType(f"{what} must be a Decimal, int or decimal string, not bool")
    elif isinstance(value, float):
        raise InvalidMoneyType(
            f"{what} must be a Decimal, int or decimal string, not float ({value!r}): "
            f"write Decimal({str(value)!r}) or the string {str(value)!r} to say which decimal you mean"
        )
    elif isinstance(value, Decimal | int):
        money = Decimal(value)
    elif isinstance(value, str):
        try:
            money = Decimal(value.strip())
        except InvalidOperation:
            raise InvalidMoney(f"{what} {value!r} is not a decimal number; use a string like '0.0025'") from None
    else:
        raise InvalidMoneyType(f"{what} must be a Decimal, int or decimal string, not {type(value).__name__}")
    if not money.is_finite():
        raise InvalidMoney(f"{what} must be a finite amount, got {money}")
    if money < 0:
        raise InvalidMoney(f"{what} must not be negative, got {money}")
    if money and not MIN_MONEY_EXPONENT <= money.adjusted() <= MAX_MONEY_EXPONENT:
        raise InvalidMoney(
            f"{what} {money} is out of range: amounts are accepted from 1E{MIN_MONEY_EXPONENT} up to "
            f"1E{MAX_MONEY_EXPONENT + 1} dollars"
        )
    return money


def format_usd(amount: Decimal, *, places: int | None = None) -> str:
    """Format an amount for people: ``$0.0045``, exact unless ``places`` asks for rounding (half-even)."""
    if amount == 0:
        return "$0"
    if places is None:
        return f"${amount.normalize(EXACT):f}"
    quantum = Decimal(1).scaleb(-places)
    if abs(amount) >= quantum:
        text = f"{amount.quantize(quantum, context=EXACT):f}".rstrip("0").rstrip(".")
    else:
        text = f"{amount.normalize(EXACT):f}"
    return f"${text}"
