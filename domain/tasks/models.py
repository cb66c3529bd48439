from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, UTCDateTime


class TaskStatus(StrEnum):
    OPEN = "OPEN"
    DONE = "DONE"


class Task(Base):
    """One piece of work for a role (every member sees it) or one person, with the evidence
    that raised it in `details`. `dedupe_key`: at most one OPEN task per key (a partial
    unique index), so a condition that persists raises one task, not one per check."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index(
            "uq_tasks_open_dedupe_key",
            "dedupe_key",
            unique=True,
            postgresql_where=text("status = 'OPEN'"),
            sqlite_where=text("status = 'OPEN'"),
        ),
        Index("ix_tasks_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(200))
    assignee_role: Mapped[str | None] = mapped_column(String(32))
    assignee_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[TaskStatus] = mapped_column(
        Enum(TaskStatus, native_enum=False, length=8, validate_strings=True)
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    details: Mapped[str] = mapped_column(Text)  # canonical JSON object
    dedupe_key: Mapped[str | None] = mapped_column(String(200))
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    completed_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
