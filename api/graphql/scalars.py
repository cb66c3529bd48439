"""Scalars with the contract's formats: money as decimal strings, times with an offset."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import NewType

import strawberry

Money = NewType("Money", Decimal)

_MONEY_RE = re.compile(r"^\d{1,12}(\.\d{1,4})?$")


def _parse_money(value: object) -> Decimal:
    # Only strings: a JSON number would have passed through a float on the client's side.
    if not isinstance(value, str) or not _MONEY_RE.match(value):
        raise ValueError('Money is a decimal string such as "129.90"')
    return Decimal(value)


def _parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime is an ISO 8601 string with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 timestamp") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError(f"{value!r} has no timezone offset; naive timestamps are refused")
    return parsed


def _serialize_datetime(value: dt.datetime) -> str:
    return value.isoformat()


SCALARS = {
    Money: strawberry.scalar(
        name="Money",
        description='A decimal amount as a string, e.g. "129.90", in the currency of its object.',
        serialize=str,
        parse_value=_parse_money,
    ),
    dt.datetime: strawberry.scalar(
        name="DateTime",
        description="ISO 8601 date and time with a UTC offset; naive timestamps are refused.",
        serialize=_serialize_datetime,
        parse_value=_parse_datetime,
    ),
}
