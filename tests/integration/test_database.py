"""Migrations, column types and demo data against real databases."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import StatementError

from domain.db import NaiveDatetimeError, create_engine, session_factory, utcnow
from domain.demo import load_demo
from domain.models import Base, Customer, Order
from tests.conftest import DEMO_PASSWORD


async def test_migrations_produce_exactly_the_models_schema(any_database_url: str) -> None:
    engine = create_engine(any_database_url)

    async with engine.connect() as connection:
        diff = await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
        )
    await engine.dispose()

    assert diff == []


async def test_loading_the_demo_twice_adds_nothing(any_database_url: str) -> None:
    engine = create_engine(any_database_url)
    sessions = session_factory(engine)

    async with sessions() as session:
        result = await load_demo(session=session, password=DEMO_PASSWORD, now=utcnow())
        await session.commit()
        orders = await session.scalar(select(func.count()).select_from(Order))
        customers = await session.scalar(select(func.count()).select_from(Customer))
    await engine.dispose()

    assert result.created_orders == 0
    assert result.created_users == ()
    assert (orders, customers) == (200, 100)


async def test_times_come_back_aware_in_utc_and_naive_ones_are_refused(
    any_database_url: str,
) -> None:
    engine = create_engine(any_database_url)
    sessions = session_factory(engine)
    shanghai = dt.timezone(dt.timedelta(hours=8))

    async with sessions() as session:
        customer = Customer(name="测试", created_at=dt.datetime(2026, 3, 1, 8, 0, tzinfo=shanghai))
        session.add(customer)
        await session.commit()
        session.expunge_all()
        stored = await session.get(Customer, customer.id)
        assert stored is not None
        assert stored.created_at == dt.datetime(2026, 3, 1, 0, 0, tzinfo=dt.UTC)
        assert stored.created_at.utcoffset() == dt.timedelta(0)

        session.add(Customer(name="naive", created_at=dt.datetime(2026, 3, 1, 8, 0)))  # noqa: DTZ001
        with pytest.raises(StatementError) as caught:
            await session.flush()
        assert isinstance(caught.value.orig, NaiveDatetimeError)
    await engine.dispose()


async def test_migrating_down_and_up_again_with_data_keeps_it(any_database_url: str) -> None:
    """A populated database taken back to the audit-log revision and forward to head again:
    every table that other tables point at is rebuilt on SQLite, and nothing is lost."""
    import threading

    from alembic import command

    from domain.migrations import alembic_config

    def migrate(step: object, revision: str) -> None:
        thread = threading.Thread(target=step, args=(alembic_config(any_database_url), revision))
        thread.start()
        thread.join()

    migrate(command.downgrade, "0002")
    migrate(command.upgrade, "head")
    engine = create_engine(any_database_url)
    async with session_factory(engine)() as session:
        orders = await session.scalar(select(func.count()).select_from(Order))
        refunded = await session.scalar(select(func.sum(Order.refunded_minor)))
        lines = await session.scalar(text("SELECT count(*) FROM order_lines"))
    await engine.dispose()

    assert orders == 200
    assert refunded == 0
    assert lines > 200
