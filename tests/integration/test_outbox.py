"""The transactional outbox (domain/events): a committed change has its event, a rolled-back
one has none, `seq` follows commit order without gaps, and one order's events carry its
versions in order."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.db import create_engine, session_factory
from domain.events import service as events
from domain.events.models import OutboxEvent
from tests.conftest import Api, db_id

MOVE = """mutation($id: ID!, $to: OrderStatus!) {
  transitionOrder(id: $id, to: $to) { status version } }"""


async def _all(api: Api) -> list[OutboxEvent]:
    async with api.app.state.runtime.sessions() as session:
        return await events.events_after(session=session, after=0, limit=10_000)


async def _paid_order(api: Api) -> dict:
    result = await api.gql(
        "{ orders(first: 1, filter: {status: [PAID]}) { edges { node { id version } } } }",
        as_="ops",
    )
    return result["data"]["orders"]["edges"][0]["node"]


async def test_each_status_change_publishes_one_event_with_the_orders_version(
    any_api: Api,
) -> None:
    order = await _paid_order(any_api)
    before = await _all(any_api)

    first = await any_api.gql(MOVE, {"id": order["id"], "to": "PICKING"}, as_="ops")
    refused = await any_api.gql(MOVE, {"id": order["id"], "to": "PAID"}, as_="ops")
    second = await any_api.gql(MOVE, {"id": order["id"], "to": "SHIPPED"}, as_="ops")

    assert "errors" not in first
    assert "errors" not in second
    assert refused["errors"][0]["extensions"]["code"] == "INVALID_TRANSITION"
    # (Shipping also publishes the stock it takes out: STOCK_CHANGED, aggregate StockItem.)
    new = [e for e in (await _all(any_api))[len(before) :] if e.aggregate_type == "Order"]
    assert [(e.type, e.aggregate_id, e.version) for e in new] == [
        (
            "ORDER_STATUS_CHANGED",
            str(db_id(order["id"])),
            first["data"]["transitionOrder"]["version"],
        ),
        (
            "ORDER_STATUS_CHANGED",
            str(db_id(order["id"])),
            second["data"]["transitionOrder"]["version"],
        ),
    ]
    assert [json.loads(e.payload)["to"] for e in new] == ["PICKING", "SHIPPED"]
    assert new[1].seq == new[0].seq + 1
    assert len({e.event_id for e in new}) == 2


@pytest.fixture
async def sessions(any_database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(any_database_url)
    yield session_factory(engine)
    await engine.dispose()


def _publish(session: AsyncSession, n: int) -> None:
    events.publish(
        session=session,
        type=events.EventType.ORDER_STATUS_CHANGED,
        aggregate_type="Order",
        aggregate_id=n,
        version=1,
        payload={"n": n},
    )


async def _count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM outbox_events")))


async def test_a_rolled_back_change_leaves_no_event(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    start = await _count(sessions)
    async with sessions() as session:
        _publish(session, 1)
        await session.execute(text("UPDATE orders SET version = version WHERE id = 1"))
        await session.rollback()
        await session.commit()  # nothing left to write

    assert await _count(sessions) == start


async def test_seq_follows_commit_order_without_gaps(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A transaction that published first but commits last gets the last number, so a reader
    that has seen up to some seq never misses a change committed later; twenty concurrent
    writers take contiguous numbers."""
    async with sessions() as session:
        start = int(await session.scalar(text("SELECT seq FROM outbox_head")))
    async with sessions() as slow:
        _publish(slow, 0)
        await slow.execute(text("SELECT 1"))

        async def quick(n: int) -> None:
            async with sessions() as session:
                _publish(session, n)
                await session.commit()

        await asyncio.gather(*(quick(n) for n in range(1, 21)))
        await slow.commit()

    async with sessions() as session:
        found = await events.events_after(session=session, after=start)
    assert [e.seq for e in found] == list(range(start + 1, start + 22))
    assert found[-1].aggregate_id == "0"  # published first, committed last
    assert sorted(int(e.aggregate_id) for e in found[:-1]) == list(range(1, 21))


async def test_each_transactions_events_take_one_contiguous_run_in_publish_order(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Ten writers committing at once, 50 events each (a batch of ingested orders): every
    transaction's events get adjacent numbers, in the order it published them, no gaps."""
    async with sessions() as session:
        start = int(await session.scalar(text("SELECT seq FROM outbox_head")))

    async def writer(n: int) -> None:
        async with sessions() as session:
            for k in range(50):
                _publish(session, n * 100 + k)
            await session.commit()

    await asyncio.gather(*(writer(n) for n in range(1, 11)))

    async with sessions() as session:
        found = await events.events_after(session=session, after=start, limit=10_000)
    assert [e.seq for e in found] == list(range(start + 1, start + 501))
    runs = [[int(e.aggregate_id) for e in found[i : i + 50]] for i in range(0, 500, 50)]
    for run in runs:
        writer_of = run[0] // 100
        assert run == [writer_of * 100 + k for k in range(50)]
    assert sorted(run[0] // 100 for run in runs) == list(range(1, 11))


async def test_a_reader_paging_while_changes_commit_sees_every_event_once(any_api: Api) -> None:
    """The subscription's loop: read a page after `position`, move to the position the page
    reports, read again — while writers keep committing. Every committed event is read
    exactly once, in seq order; none is passed over because it committed mid-page."""
    from domain.events import feed
    from tests.integration.test_webhooks import _actor

    sessions = any_api.app.state.runtime.sessions
    actor = await _actor(any_api, "demo-ops")
    async with sessions() as session:
        start = int(await session.scalar(text("SELECT seq FROM outbox_head")))
        order_ids = list((await session.scalars(text("SELECT id FROM orders LIMIT 5"))).all())
    writing = True

    async def writer() -> None:
        nonlocal writing
        for n in range(300):
            async with sessions() as session:
                _publish(session, order_ids[n % len(order_ids)])
                await session.commit()
        writing = False

    seen: list[int] = []

    async def reader() -> None:
        position = start
        while True:
            last_round = not writing
            async with sessions() as session:
                page = await feed.order_events(
                    session=session, actor=actor, after=position, first=7
                )
                await session.commit()
            seen.extend(e.seq for e in page.events)
            position = page.position
            if last_round and not page.events:
                return
            await asyncio.sleep(0)

    await asyncio.gather(writer(), reader())

    async with sessions() as session:
        committed = [
            e.seq for e in await events.events_after(session=session, after=start, limit=1000)
        ]
    assert len(committed) == 300
    assert seen == committed
