from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, UTCDateTime


class OutboxEvent(Base):
    """One business change, written in the transaction that made it (transactional outbox).

    `seq` is the global order in which changes committed: given when the transaction commits
    (PostgreSQL: a deferred trigger, migration 0010; SQLite: just before the commit), so it has
    no gaps and a reader that resumes after `seq` never skips a change that committed late.
    `version` is the aggregate's version after the change: one order's events carry increasing
    versions. `event_id` is what consumers de-duplicate on."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_aggregate", "aggregate_type", "aggregate_id", "version"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    seq: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), unique=True
    )
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    aggregate_type: Mapped[str] = mapped_column(String(32))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON object


class OutboxHead(Base):
    """The last `seq` given; claimed at commit, which orders committers."""

    __tablename__ = "outbox_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
