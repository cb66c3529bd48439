"""Scalars with the contract's formats: money as decimal strings, times with an offset."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import NewType

import strawberry

from domain.errors import BadInput
from domain.values import parse_amount, parse_day, parse_time

Money = NewType("Money", Decimal)


def _parse_money(value: object) -> Decimal:
    # Only strings: a JSON number would have passed through a float on the client's side. The
    # one parser (domain.values) refuses exotic digits, exponents and amounts no column holds.
    try:
        parse_amount(value, what="Money")
    except BadInput as exc:
        raise ValueError(exc.message) from None
    return Decimal(str(value))


def _parse_datetime(value: object) -> dt.datetime:
    try:
        return parse_time(value, what="DateTime")
    except BadInput as exc:
        raise ValueError(exc.message) from None


def _parse_date(value: object) -> dt.date:
    try:
        return parse_day(value, what="Date")
    except BadInput as exc:
        raise ValueError(exc.message) from None


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
    dt.date: strawberry.scalar(
        name="Date",
        description="A calendar date, YYYY-MM-DD (e.g. 2026-11-26), between 1900-01-01 and "
        "2999-12-31; business days are counted in the business timezone.",
        serialize=lambda value: value.isoformat(),
        parse_value=_parse_date,
    ),
}
