"""Publishing business changes through the transactional outbox.

`publish` adds an event to the caller's transaction: it is written when that transaction
commits and never otherwise, so a rolled-back change leaves no event and a committed one
always has its event. Delivery (worker, webhooks, subscriptions) reads `outbox_events` in
`seq` order.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy import ARRAY, DateTime, Integer, String, bindparam, insert, select, text, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from domain import pending
from domain.audit.chain import canonical_json
from domain.db import utcnow
from domain.events.models import OutboxEvent, OutboxHead

_PENDING = "outbox"
_TABLE = OutboxEvent.__table__
_HEAD = OutboxHead.__table__
_CLAIM = (
    update(_HEAD)
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + bindparam("n"))
    .returning(_HEAD.c.seq)
)

_COLUMNS = ("event_id", "type", "aggregate_type", "aggregate_id", "version", "at", "payload")
_NUMBERED_INSERT = text(
    """
    WITH head AS (
      UPDATE outbox_head SET seq = seq + :n WHERE id = 1 RETURNING seq - :n AS base
    )
    INSERT INTO outbox_events (seq, event_id, type, aggregate_type, aggregate_id, version, at,
                               payload)
    SELECT head.base + e.ord, e.event_id, e.type, e.aggregate_type, e.aggregate_id, e.version,
           e.at, e.payload
      FROM head,
           unnest(CAST(:event_id AS text[]), CAST(:type AS text[]),
                  CAST(:aggregate_type AS text[]), CAST(:aggregate_id AS text[]),
                  CAST(:version AS integer[]), CAST(:at AS timestamptz[]),
                  CAST(:payload AS text[]))
           WITH ORDINALITY AS e(event_id, type, aggregate_type, aggregate_id, version, at,
                                payload, ord)
    """
).bindparams(
    bindparam("n", type_=Integer),
    *(bindparam(c, type_=ARRAY(String)) for c in _COLUMNS if c not in ("version", "at")),
    bindparam("version", type_=ARRAY(Integer)),
    bindparam("at", type_=ARRAY(DateTime(timezone=True))),
)


class EventType(StrEnum):
    ORDER_CREATED = "ORDER_CREATED"
    ORDER_STATUS_CHANGED = "ORDER_STATUS_CHANGED"
    ORDER_REFUNDED = "ORDER_REFUNDED"
    ORDER_PRICE_CHANGED = "ORDER_PRICE_CHANGED"
    PICKING_LIST_CREATED = "PICKING_LIST_CREATED"
    ORDER_ESCALATED = "ORDER_ESCALATED"
    ORDER_ADDRESS_CHANGED = "ORDER_ADDRESS_CHANGED"
    CUSTOMER_CHANGED = (
        "CUSTOMER_CHANGED"  # aggregate Customer: a key field (phone, email, default address)
    )
    CUSTOMERS_MERGED = "CUSTOMERS_MERGED"  # aggregate Customer (the survivor)
    CUSTOMERS_UNMERGED = "CUSTOMERS_UNMERGED"
    STOCK_CHANGED = "STOCK_CHANGED"  # aggregate StockItem: on hand, reserved, available
    TASK_CREATED = "TASK_CREATED"  # aggregate Task
    TASK_COMPLETED = "TASK_COMPLETED"


def publish(
    *,
    session: AsyncSession,
    type: EventType,
    aggregate_type: str,
    aggregate_id: object,
    version: int,
    payload: Mapping[str, Any],
    at: dt.datetime | None = None,
) -> str:
    """Add one event to the caller's transaction; returns its event id."""
    event_id = str(uuid.uuid4())
    pending.add(
        session.sync_session,
        _PENDING,
        {
            "event_id": event_id,
            "type": str(type),
            "aggregate_type": aggregate_type,
            "aggregate_id": str(aggregate_id),
            "version": version,
            "at": at or utcnow(),
            "payload": canonical_json(dict(payload)),
        },
    )
    return event_id


@sa_event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy also calls this when a savepoint is released: the events wait for the
        # real COMMIT (and go with the savepoint if it rolls back; see domain/pending.py).
        return
    events = pending.take(session, _PENDING)
    if not events:
        return
    if session.get_bind().dialect.name == "postgresql":
        # The transaction's last statement before COMMIT: it claims the numbers (locking the
        # head until COMMIT, so seq follows commit order) and writes the rows with them, in
        # one round trip. Each row is written once (migration 0015).
        session.execute(
            _NUMBERED_INSERT,
            {
                "n": len(events),
                **{key: [event[key] for event in events] for key in _COLUMNS},
            },
        )
        return
    last = session.execute(_CLAIM, {"n": len(events)}).scalar_one()
    first = last - len(events) + 1
    session.execute(insert(_TABLE), [{**event, "seq": first + i} for i, event in enumerate(events)])


async def events_after(
    *, session: AsyncSession, after: int = 0, limit: int = 100
) -> list[OutboxEvent]:
    """Committed events with `seq` above `after`, in order."""
    rows = await session.scalars(
        select(OutboxEvent).where(OutboxEvent.seq > after).order_by(OutboxEvent.seq).limit(limit)
    )
    return list(rows.all())
