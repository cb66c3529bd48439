from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.db import Base, UTCDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # No longer written: failures are counted per account and address (rate counters).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The person behind the account (an employee id): separation of duties compares persons,
    # so one person with two accounts still cannot approve their own request.
    employee_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # Where the system writes to this person (low-stock alerts); optional.
    email: Mapped[str | None] = mapped_column(String(254))
    # Bumped when the account is disabled, locked, or its roles or password change: tokens
    # carry the generation they were issued under and stop working when it moves on.
    token_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The person who last set this account's password when that was someone else (an
    # administrator's reset; issue #30, M4), and when. Signing keys registered after it wait
    # for another administrator's confirmation (domain/approvals/service.py).
    password_set_by: Mapped[str | None] = mapped_column(String(80))
    password_set_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def person(self) -> str:
        """Who this account belongs to, for separation of duties."""
        return f"employee:{self.employee_id}" if self.employee_id else f"account:{self.id}"

    role_rows: Mapped[list[UserRole]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="UserRole.role"
    )
    channel_rows: Mapped[list[UserChannel]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="UserChannel.channel_code"
    )

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r.role for r in self.role_rows)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c.channel_code for c in self.channel_rows)


class UserRole(Base):
    __tablename__ = "user_roles"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)


class UserChannel(Base):
    """Binds a user's row scope to a channel (used for channel-scoped roles such as `sales`)."""

    __tablename__ = "user_channels"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    channel_code: Mapped[str] = mapped_column(ForeignKey("channels.code"), primary_key=True)


class AccountChange(Base):
    """A change to a privileged account waiting for a second administrator (issue #30, M4):
    roles that add or remove admin, approver or compliance (or any role change of an account
    holding one), and another account's password. Applied only when a different person
    confirms it; the new password is kept as its hash, never as given."""

    __tablename__ = "account_changes"
    __table_args__ = (
        Index("ix_account_changes_status_user", "status", "user_id"),
        # One waiting change of each kind per account, whatever the timing of two requests.
        Index(
            "uq_account_changes_pending",
            "user_id",
            "kind",
            unique=True,
            postgresql_where=text("status = 'PENDING'"),
            sqlite_where=text("status = 'PENDING'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # ROLES or PASSWORD
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    roles: Mapped[str | None] = mapped_column(Text)  # JSON list, for ROLES
    password_hash: Mapped[str | None] = mapped_column(String(255))  # for PASSWORD
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    # The account's token generation when asked: if it moved (disabled, roles or password
    # changed meanwhile) the change is stale and is not applied.
    generation: Mapped[int] = mapped_column(Integer, default=0)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    requested_by_person: Mapped[str] = mapped_column(String(80))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id], lazy="joined")
    requested_by: Mapped[User | None] = relationship(foreign_keys=[requested_by_id], lazy="joined")
    decided_by: Mapped[User | None] = relationship(foreign_keys=[decided_by_id], lazy="joined")
