"""Money is stored as integer minor units and handled as Decimal; floats never touch it."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from domain.errors import BadInput

# ISO 4217 minor-unit exponents for the currencies ordergate's channels settle in.
MINOR_UNITS = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0}


def exponent(currency: str) -> int:
    try:
        return MINOR_UNITS[currency]
    except KeyError:
        raise BadInput(f"unsupported currency {currency!r}") from None


def from_minor(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-exponent(currency))


def to_minor(amount: Decimal | str, currency: str) -> int:
    """Convert a decimal amount to minor units, refusing anything finer than the currency allows."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        raise BadInput(f"{amount!r} is not a decimal amount") from None
    if not value.is_finite():
        raise BadInput(f"{amount!r} is not a decimal amount")
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise BadInput(f"{amount} has more decimals than {currency} allows")
    return int(scaled)


def format_amount(amount: int, currency: str) -> str:
    """`12990, "CNY"` → `"129.90"`: the contract's decimal string."""
    places = exponent(currency)
    return f"{from_minor(amount, currency):.{places}f}"
