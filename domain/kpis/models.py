"""Daily KPI facts: the numerator and denominator of each KPI for one business day and slice.

A closed business day's facts are computed once by the worker (and again if late data
invalidates them), so a KPI over 90 days reads at most a few thousand small rows whatever the
number of orders; today, and any day without facts, is computed live by the same code.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base, UTCDateTime, utcnow

ALL = "*"  # the slice over every channel, category or region


class KpiFact(Base):
    __tablename__ = "kpi_facts"
    __table_args__ = (
        UniqueConstraint("day", "name", "channel", "category", "region"),
        Index("ix_kpi_facts_name_day", "name", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[dt.date] = mapped_column(Date)
    name: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default=ALL)
    category: Mapped[str] = mapped_column(String(32), default=ALL)
    region: Mapped[str] = mapped_column(String(50), default=ALL)
    numerator: Mapped[int] = mapped_column(BigInteger)
    denominator: Mapped[int] = mapped_column(BigInteger)
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
