"""Escalation: an order that waits too long is handed to people.

An order created more than `after` ago (two hours by default, `ORDERGATE_ESCALATE_AFTER_MINUTES`)
that has not reached PICKING — still unpaid, or paid and not yet picked — is escalated to the
manual channel: `escalatedAt` is set once, an `ORDER_ESCALATED` event tells operations (their
webhooks and `orderEvents` subscriptions), and one audit record lists the orders. The worker
runs it every minute (a scheduled job in the business timezone), so an order is escalated
within a minute of crossing the threshold; several workers claim each minute once.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from domain.actor import SYSTEM_ORIGIN
from domain.audit import service as audit
from domain.audit.service import Subject
from domain.events import service as events
from domain.orders.models import Order
from domain.orders.rules import OrderStatus
from domain.tasks import service as tasks

WAITING = (OrderStatus.PENDING_PAYMENT, OrderStatus.PAID)
BATCH = 1000
SYSTEM = Subject(None, "system:escalation", (), SYSTEM_ORIGIN)


async def escalate_waiting(
    *, session: AsyncSession, now: dt.datetime, after: dt.timedelta
) -> list[int]:
    """Escalate the orders waiting longer than `after` at `now`; returns their ids. The caller
    commits. Rows are locked (SKIP LOCKED on PostgreSQL) so a concurrent run takes others."""
    found = list(
        (
            await session.scalars(
                select(Order)
                .where(
                    Order.status.in_(WAITING),
                    Order.created_at <= now - after,
                    Order.escalated_at.is_(None),
                )
                .order_by(Order.created_at, Order.id)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    if not found:
        return []
    # A flag, not a change of the order: its version stays, so a pending signed request that
    # names this version (a price change, a refund) is not voided by the minute job, and the
    # event carries the version the order has.
    await session.execute(
        update(Order)
        .where(Order.id.in_([order.id for order in found]))
        .values(escalated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    for order in found:
        events.publish(
            session=session,
            type=events.EventType.ORDER_ESCALATED,
            aggregate_type="Order",
            aggregate_id=order.id,
            version=order.version,
            at=now,
            payload={
                "orderId": order.id,
                "status": str(order.status),
                "waitingSince": order.created_at.isoformat(),
            },
        )
    # Operations takes them over by hand: one task per run, listing the orders.
    await tasks.raise_task(
        session,
        kind="ESCALATION",
        title=f"{len(found)} order(s) waiting more than {int(after.total_seconds() // 60)} "
        "minutes: handle them by hand",
        details={
            "orders": [{"id": o.id, "number": o.number, "status": str(o.status)} for o in found][
                :200
            ],
            "count": len(found),
        },
        by=SYSTEM,
        assignee_role="ops",
        now=now,
    )
    await audit.record(
        session=session,
        who=SYSTEM,
        action="order.escalate",
        operation="escalation",
        target_type="Order",
        at=now,
        details={
            "after": int(after.total_seconds()),
            "orders": [o.id for o in found][:500],
            "count": len(found),
        },
    )
    return [o.id for o in found]
