"""Declarative base, column types shared by every area, and engine/session factories."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class NaiveDatetimeError(ValueError):
    """A timestamp without a timezone reached the database layer."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware timestamps, stored in UTC on every backend.

    SQLite has no timezone type, so values are normalised to UTC before they are written and
    tagged as UTC when read; PostgreSQL gets `timestamptz`. Naive values are refused: a time
    without an offset is a bug somewhere upstream, not something to guess about.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise NaiveDatetimeError("naive datetime refused; give a timezone offset")
        value = value.astimezone(dt.UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def is_deadlock(exc: BaseException) -> bool:
    """Whether a database error is PostgreSQL's deadlock_detected (40P01) or
    serialization_failure (40001): the transaction lost a race, and may be tried again."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in {"40P01", "40001"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def database_timeouts(
    url: str, *, connect: float, statement: float, pool: float, pool_size: int = 20
) -> dict[str, Any]:
    """Engine options that bound every wait on the database: connecting, each statement (on
    the server and on the client, so a frozen server cannot hold a request), and checking a
    connection out of the pool. SQLite waits on its busy timeout (5 s) instead.

    The pool keeps `pool_size` connections and opens no extra ones: a request beyond them
    waits for one (up to `pool`), which costs less than connecting and disconnecting a
    PostgreSQL backend per request as SQLAlchemy's overflow does under a steady load."""
    if url.startswith("sqlite"):
        return {}
    return {
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_timeout": pool,
        "connect_args": {
            "timeout": connect,
            "command_timeout": statement,
            "server_settings": {"statement_timeout": str(int(statement * 1000))},
        },
    }


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    return engine


def _tune_sqlite(engine: AsyncEngine) -> None:
    database = engine.url.database
    path = Path(database) if database and database != ":memory:" else None

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets readers proceed while one writer commits; foreign keys are off by default.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()
        if path is not None:
            _owner_only(path)


def _owner_only(path: Path) -> None:
    """The database, its WAL and shared memory hold personal data, password hashes and webhook
    secrets: readable by their owner only (SQLite creates them 0644 under the usual umask;
    issue #30, L8)."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):  # not there yet, or not ours to change
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
