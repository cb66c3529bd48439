from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base, UTCDateTime
from domain.users.models import User


class ExportEntity(StrEnum):
    ORDERS = "ORDERS"
    CUSTOMERS = "CUSTOMERS"
    STOCK = "STOCK"


class ExportStatus(StrEnum):
    PENDING_L1 = "PENDING_L1"  # waiting for the first approval
    PENDING_L2 = "PENDING_L2"  # waiting for the second approval
    APPROVED = "APPROVED"  # approved twice; the file is being produced
    READY = "READY"  # the file can be downloaded once
    DOWNLOADED = "DOWNLOADED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"  # not approved in time, or the download window closed
    FAILED = "FAILED"  # production failed; see the audit log


class ExportRequest(Base):
    __tablename__ = "export_requests"
    __table_args__ = (
        Index("ix_export_requests_requester_digest", "requested_by_id", "scope_digest"),
        # The same scope is pending once per requester, enforced by the database so that
        # concurrent identical requests cannot both pass the service's check.
        Index(
            "uq_export_requests_pending_scope",
            "requested_by_id",
            "scope_digest",
            unique=True,
            sqlite_where=text("status IN ('PENDING_L1', 'PENDING_L2')"),
            postgresql_where=text("status IN ('PENDING_L1', 'PENDING_L2')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity: Mapped[ExportEntity] = mapped_column(Enum(ExportEntity, native_enum=False, length=16))
    filter: Mapped[str] = mapped_column(Text)  # canonical JSON, frozen at request time
    fields: Mapped[str] = mapped_column(Text)  # canonical JSON list of GraphQL field names
    reason: Mapped[str] = mapped_column(Text)
    scope_digest: Mapped[str] = mapped_column(String(64))
    expected_rows: Mapped[int] = mapped_column(Integer)
    status: Mapped[ExportStatus] = mapped_column(
        Enum(ExportStatus, native_enum=False, length=16), index=True
    )
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    l1_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    l1_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    l2_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    l2_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rejected_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rejected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    file_name: Mapped[str | None] = mapped_column(String(200))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    row_count: Mapped[int | None] = mapped_column(Integer)
    produced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    download_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    downloaded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    file_removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Producing the file: failed attempts so far, when to try again, and why it finally failed.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    # Interrupted downloads so far: the first gives the download back, the second consumes it.
    download_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id], lazy="joined")
    l1_by: Mapped[User | None] = relationship(foreign_keys=[l1_by_id], lazy="joined")
    l2_by: Mapped[User | None] = relationship(foreign_keys=[l2_by_id], lazy="joined")
    rejected_by: Mapped[User | None] = relationship(foreign_keys=[rejected_by_id], lazy="joined")
