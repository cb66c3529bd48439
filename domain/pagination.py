"""Keyset pagination with opaque cursors.

A cursor names the ordering it belongs to and the last row's sort key and id, so paging is
stable under inserts and a cursor from one ordering is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import BadInput
from domain.values import is_int4

T = TypeVar("T")
DEFAULT_PAGE = 20
MAX_PAGE = 100
MAX_CURSOR = 200  # our cursors are well under 100 characters


# Counting stops here: past it, `totalCount` is this number and `totalCountCapped` is true, so
# a count costs the same at ten thousand rows as at a million.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    cursors: Sequence[str]
    has_next: bool
    has_previous: bool
    total_count: int | None  # None when the caller did not ask for it
    total_capped: bool = False


async def count(
    session: AsyncSession, base: Select[Any], *, cap: int | None = None
) -> tuple[int, bool]:
    """How many rows `base` matches, counting no further than `cap`: (count, capped)."""
    limit = COUNT_CAP if cap is None else cap
    found = await session.scalar(
        select(func.count()).select_from(base.order_by(None).limit(limit + 1).subquery())
    )
    found = found or 0
    return (limit, True) if found > limit else (found, False)


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE
    if first < 0:
        raise BadInput("`first` must not be negative")
    if first > MAX_PAGE:
        raise BadInput(f"`first` may be at most {MAX_PAGE}")
    return first


def encode_cursor(ordering: str, key: Any, row_id: int) -> str:
    if isinstance(key, dt.datetime):
        key = key.isoformat()
    raw = json.dumps([ordering, key, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, ordering: str) -> tuple[Any, int]:
    if len(cursor) > MAX_CURSOR:
        raise BadInput("malformed cursor")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        name, key, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error):
        raise BadInput("malformed cursor") from None
    if name != ordering:
        raise BadInput("cursor does not belong to this ordering")
    # Only what we could have issued: a row id that fits its column (a huge number would fail
    # in the database, not here).
    if not is_int4(row_id) or row_id < 1:
        raise BadInput("malformed cursor")
    return key, row_id


def after_condition(
    column: ColumnElement[Any], id_column: ColumnElement[int], key: Any, row_id: int, *, desc: bool
) -> ColumnElement[bool]:
    # The row-value form bounds an index on (column, id) directly; the equivalent
    # `column < k OR (column = k AND id < i)` makes PostgreSQL filter every row before k.
    if desc:
        return tuple_(column, id_column) < tuple_(key, row_id)
    return tuple_(column, id_column) > tuple_(key, row_id)


def apply_order(
    stmt: Select[Any], column: ColumnElement[Any], id_column: ColumnElement[int], *, desc: bool
) -> Select[Any]:
    if desc:
        return stmt.order_by(column.desc(), id_column.desc())
    return stmt.order_by(column.asc(), id_column.asc())


async def by_id(
    session: AsyncSession,
    base: Select[Any],
    id_column: Any,
    *,
    ordering: str,
    first: int | None,
    after: str | None,
    descending: bool = False,
    want_total: bool = True,
) -> Page[Any]:
    """One page of `base` in id order, with the count of its matches when asked for."""
    size = page_size(first)
    total, capped = await count(session, base) if want_total else (None, False)
    stmt = base
    if after is not None:
        _, row_id = decode_cursor(after, ordering)
        stmt = stmt.where(id_column < row_id if descending else id_column > row_id)
    order = id_column.desc() if descending else id_column.asc()
    rows = list((await session.scalars(stmt.order_by(order).limit(size + 1))).all())
    items = rows[:size]
    cursors = [encode_cursor(ordering, None, getattr(row, id_column.key)) for row in items]
    return Page(items, cursors, len(rows) > size, after is not None, total, capped)
