"""Money is stored as integer minor units and handled as Decimal; floats never touch it.

Parsing lives in `domain.values` (one parser for every entry point); this module converts."""

from __future__ import annotations

from decimal import Decimal

from domain.errors import BadInput
from domain.values import MINOR_UNITS, exponent, format_minor, parse_amount

__all__ = ["MINOR_UNITS", "exponent", "format_amount", "from_minor", "to_minor"]


def from_minor(amount: int, currency: str) -> Decimal:
    return Decimal(amount).scaleb(-exponent(currency))


def to_minor(amount: Decimal | str, currency: str, *, what: str = "amount") -> int:
    """A decimal amount in minor units, refusing anything finer than the currency allows,
    any form but ASCII digits with one optional point, and amounts no column can hold."""
    if isinstance(amount, Decimal):
        # Decimals reach here from the Money scalar, already parsed; look at their size before
        # formatting, so an exponent can never expand into a huge string.
        if not amount.is_finite() or amount.is_signed() or amount.adjusted() > 12:
            raise BadInput(f"{what} is not a valid amount")
        amount = f"{amount:f}"
    return parse_amount(amount, currency, what=what)


def format_amount(amount: int, currency: str) -> str:
    """`12990, "CNY"` → `"129.90"`: the contract's decimal string."""
    return format_minor(amount, exponent(currency))
