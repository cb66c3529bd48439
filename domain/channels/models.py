from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from domain.db import Base


class Channel(Base):
    """A sales channel orders arrive from (Taobao, JD, Pinduoduo, the own web shop)."""

    __tablename__ = "channels"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


DEFAULT_CHANNELS = {
    "TAOBAO": "淘宝 Taobao",
    "JD": "京东 JD",
    "PINDUODUO": "拼多多 Pinduoduo",
    "WEB": "Web shop",
}
