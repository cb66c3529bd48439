"""Customers: one record per person, with the forms they are recognised by, their history,
the duplicates found for review, and merges that can be undone."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from domain.customers import normalise
from domain.db import Base, UTCDateTime, utcnow


def contact_columns(*, phone: str | None, email: str | None) -> dict[str, Any]:
    """The stored forms of a phone and an email: what matching and the completeness KPI read.
    `phone` is kept as given (masking reads it); `phone_e164` is None for an invalid number."""
    number = normalise.phone(phone)
    mail = normalise.email(email)
    return {
        "phone_e164": number.e164 if number else None,
        "phone_valid": number.valid if number else None,
        "email": mail,
        "email_valid": normalise.email_valid(mail) if mail else None,
    }


def address_columns(*, city: str, district: str, street: str) -> dict[str, Any]:
    return {"address_key": normalise.address_key(city=city, district=district, street=street)}


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (Index("ix_customers_phone_e164", "phone_e164"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    email: Mapped[str | None] = mapped_column(String(254), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Derived by `contact_columns` whenever phone or email is written.
    phone_e164: Mapped[str | None] = mapped_column(String(20))
    phone_valid: Mapped[bool | None] = mapped_column(Boolean)
    email_valid: Mapped[bool | None] = mapped_column(Boolean)
    # Optimistic lock: `updateCustomerContact` names the version it read.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # A merged customer is a tombstone pointing at its survivor; its id still resolves.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    # The responsible salesperson, told when a key field changes.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))

    addresses: Mapped[list[Address]] = relationship(
        back_populates="customer", order_by="Address.id", cascade="all, delete-orphan"
    )

    __mapper_args__ = {"version_id_col": version}

    def set_contact(self, *, phone: str | None, email: str | None) -> None:
        self.phone = phone
        for column, value in contact_columns(phone=phone, email=email).items():
            setattr(self, column, value)

    @property
    def default_address(self) -> Address | None:
        return next((a for a in self.addresses if a.is_default), None)


class Address(Base):
    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    recipient: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(32))
    province: Mapped[str] = mapped_column(String(50))
    city: Mapped[str] = mapped_column(String(50))
    district: Mapped[str] = mapped_column(String(50))
    street: Mapped[str] = mapped_column(String(200))
    postal_code: Mapped[str | None] = mapped_column(String(12))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # normalise.address_key of city, district and street: matching by name and address.
    address_key: Mapped[str | None] = mapped_column(String(320), index=True)
    created_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="addresses")

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.address_key is None and self.street is not None:
            self.address_key = normalise.address_key(
                city=self.city, district=self.district, street=self.street
            )


class CustomerChange(Base):
    """One field of a customer before and after a change: contact history."""

    __tablename__ = "customer_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    field: Mapped[str] = mapped_column(String(32))  # name, phone, email, defaultAddress
    before: Mapped[str | None] = mapped_column(Text)
    after: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # update, address, merge, unmerge
    changed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CandidateStatus(StrEnum):
    OPEN = "OPEN"
    MERGED = "MERGED"


class MatchCandidate(Base):
    """Two customers who may be one person, for a person to decide (merge or leave)."""

    __tablename__ = "customer_match_candidates"
    __table_args__ = (UniqueConstraint("customer_id", "other_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))  # the lower id
    other_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    score: Mapped[int] = mapped_column(Integer)  # 0..100
    reasons: Mapped[str] = mapped_column(Text)  # JSON list of plain sentences
    status: Mapped[CandidateStatus] = mapped_column(
        Enum(CandidateStatus, native_enum=False, length=16), default=CandidateStatus.OPEN
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CustomerMerge(Base):
    """One merge: what moved, so that `unmergeCustomers` restores both records exactly."""

    __tablename__ = "customer_merges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    merged_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    merged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    merged_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    snapshot: Mapped[str] = mapped_column(Text)  # JSON: the moved ids and both records before
    reversed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reversed_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
