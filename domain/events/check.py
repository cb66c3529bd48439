"""The outbox's promise, checked: every committed version of an order has its event.

An order's `version` rises by one with every change to it, and each change publishes an event
carrying the version it produced (`domain/events/service.py`). A version without an event is a
change that reached no consumer. `ordergate events check` runs this for operators; the test
suite runs it after every PostgreSQL API test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.events.models import OutboxEvent
from domain.orders.models import Order


async def order_versions(
    session: AsyncSession, *, since: dt.datetime | None = None
) -> dict[int, int]:
    """Each order's current version (orders changed at or after `since`, when given)."""
    stmt = select(Order.id, Order.version)
    if since is not None:
        stmt = stmt.where(Order.updated_at >= since)
    return {int(i): int(v) for i, v in (await session.execute(stmt)).all()}


async def missing_order_events(
    session: AsyncSession,
    *,
    since: dt.datetime | None = None,
    baseline: Mapping[int, int] | None = None,
) -> list[tuple[int, int]]:
    """(order id, version) of every committed order version without an event, oldest first.

    `baseline` (order id → version, as `order_versions` read it earlier) limits the check to
    the versions committed since that reading."""
    current = await order_versions(session, since=since)
    wanted: dict[int, range] = {}
    for order_id, version in current.items():
        first = (baseline or {}).get(order_id, 0) + 1
        if first <= version:
            wanted[order_id] = range(first, version + 1)
    if not wanted:
        return []
    published: dict[int, set[int]] = {}
    ids = sorted(wanted)
    for start in range(0, len(ids), 1000):
        chunk = [str(i) for i in ids[start : start + 1000]]
        rows = await session.execute(
            select(OutboxEvent.aggregate_id, OutboxEvent.version).where(
                OutboxEvent.aggregate_type == "Order", OutboxEvent.aggregate_id.in_(chunk)
            )
        )
        for aggregate_id, version in rows.all():
            published.setdefault(int(aggregate_id), set()).add(int(version))
    return [
        (order_id, version)
        for order_id in ids
        for version in wanted[order_id]
        if version not in published.get(order_id, ())
    ]
