from __future__ import annotations

import datetime as dt
from enum import StrEnum

from sqlalchemy import Boolean, Enum, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base, UTCDateTime, utcnow
from domain.users.models import User


class ApprovalKind(StrEnum):
    PRICE_CHANGE = "PRICE_CHANGE"
    REFUND = "REFUND"


class ApprovalStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    VOIDED = "VOIDED"  # the order changed after the request; nothing was applied


class SigningKey(Base):
    """An approver's Ed25519 public key. Kept after revocation: old signatures stay verifiable."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A key registered after an administrator set the account's password signs nothing until
    # another administrator confirms it (issue #30, M4): who, and when.
    awaiting_confirmation: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    confirmed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")


class ApprovalRequest(Base):
    """A high-risk change waiting for a signature. `payload` is the exact text the approver
    signs; the columns beside it are what the change applies, kept apart from the payload
    only so the database can be queried — the payload is authoritative for what was signed."""

    __tablename__ = "approval_requests"
    __table_args__ = (Index("ix_approval_requests_status_id", "status", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[ApprovalKind] = mapped_column(Enum(ApprovalKind, native_enum=False, length=16))
    status: Mapped[ApprovalStatus] = mapped_column(
        Enum(ApprovalStatus, native_enum=False, length=16), default=ApprovalStatus.PENDING
    )
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[int | None] = mapped_column(ForeignKey("order_lines.id"))
    order_version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    amount_minor: Mapped[int] = mapped_column(Integer)  # new unit price, or refund amount
    requested_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_reason: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)  # the compact JWS that approved it
    signing_key_id: Mapped[int | None] = mapped_column(ForeignKey("signing_keys.id"))

    requested_by: Mapped[User] = relationship(foreign_keys=[requested_by_id], lazy="joined")
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id], lazy="joined")
    signing_key: Mapped[SigningKey | None] = relationship(lazy="joined")


class ConsumedNonce(Base):
    """A signed nonce, once. The primary key makes a second use impossible, whatever races."""

    __tablename__ = "consumed_nonces"

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"))
    consumed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
