"""`domain.bulk.insert_rows`, the intake's multi-row writer (arrays through `unnest` on
PostgreSQL): rows come back as the ORM would have stored them, ids in the rows' order, and a
naive timestamp is refused with nothing written."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.bulk import insert_rows
from domain.db import NaiveDatetimeError, create_engine, session_factory
from domain.orders.models import Order, OrderStatusChange
from domain.orders.rules import OrderStatus


@pytest.fixture
async def sessions(any_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(any_database_url)
    yield session_factory(engine)
    await engine.dispose()


def _change(order_id: int, n: int, at: dt.datetime) -> dict[str, object]:
    return {
        "order_id": order_id,
        "from_status": OrderStatus.PAID if n % 2 else None,
        "to_status": OrderStatus.PICKING,
        "actor_id": None,
        "actor_username": f"bulk-{n}",
        "at": at,
        "note": "自提 =1+1 \x7f" if n == 0 else None,
    }


async def test_rows_read_back_as_written_with_ids_in_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    at = dt.datetime(2026, 11, 26, 16, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    async with sessions() as session:
        order_id = await session.scalar(select(func.min(Order.id)))
        rows = [_change(order_id, n, at) for n in range(300)]
        ids = await insert_rows(session, OrderStatusChange.__table__, rows, return_ids=True)
        await session.commit()
    async with sessions() as session:
        stored = {
            c.id: c
            for c in (
                await session.scalars(
                    select(OrderStatusChange).where(OrderStatusChange.id.in_(ids))
                )
            ).all()
        }
    assert len(set(ids)) == 300
    assert ids == sorted(ids)
    for n, row_id in enumerate(ids):
        change = stored[row_id]
        assert change.actor_username == f"bulk-{n}"
        assert change.from_status == (OrderStatus.PAID if n % 2 else None)
        assert change.to_status is OrderStatus.PICKING
        assert change.at == at
        assert change.at.utcoffset() == dt.timedelta(0)
    assert stored[ids[0]].note == "自提 =1+1 \x7f"


async def test_an_omitted_column_takes_its_default(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """`at` has a Python-side default (now, in UTC): leaving it out stores the time of the
    write, as an ORM insert would."""
    before = dt.datetime.now(dt.UTC)
    async with sessions() as session:
        order_id = await session.scalar(select(func.min(Order.id)))
        row = _change(order_id, 1, before)
        del row["at"]
        [row_id] = await insert_rows(session, OrderStatusChange.__table__, [row], return_ids=True)
        await session.commit()
        stored = await session.get(OrderStatusChange, row_id)
    assert stored is not None
    assert before <= stored.at <= dt.datetime.now(dt.UTC)


async def test_a_naive_timestamp_is_refused_and_nothing_is_written(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    aware = dt.datetime(2026, 11, 26, 8, 0, tzinfo=dt.UTC)
    async with sessions() as session:
        order_id = await session.scalar(select(func.min(Order.id)))
        count = await session.scalar(select(func.count()).select_from(OrderStatusChange))
        rows = [_change(order_id, 1, aware), _change(order_id, 2, aware.replace(tzinfo=None))]
        with pytest.raises((NaiveDatetimeError, StatementError)) as raised:
            await insert_rows(session, OrderStatusChange.__table__, rows)
        await session.rollback()
        assert "naive" in str(raised.value)
        after = await session.scalar(select(func.count()).select_from(OrderStatusChange))
    assert after == count
