"""Which app process runs the once-per-deployment housekeeping (expiring approval requests,
export housekeeping, rate-counter purges, audit checkpoints).

Every process serves requests and reloads its own policy; only the holder of one lock does
the housekeeping. The lock is the database's own where the database is shared (a PostgreSQL
session-level advisory lock on a connection kept open for it), and an exclusive `flock` on a
file in the data directory for SQLite (one machine by nature). Either is released by the
operating system or the database when its holder dies, so another process takes over at its
next try: no lease to expire, no clock to trust. Written here rather than taken from a
library because it is these two primitives and nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger("ordergate.app")

# An arbitrary 64-bit key for pg_advisory_lock: "ordergate housekeeping".
ADVISORY_KEY = 0x6F72_6465_7267_6B70


class HousekeepingLease:
    def __init__(self, engine: AsyncEngine, data_dir: Path) -> None:
        self.engine = engine
        self.path = data_dir / "housekeeping.lock"
        self._file: IO[bytes] | None = None
        self._connection: AsyncConnection | None = None

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    async def held(self) -> bool:
        """True when this process does the housekeeping now (acquiring the lock if free)."""
        if self.postgres:
            return await self._held_in_postgres()
        return self._held_on_file()

    def _held_on_file(self) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+b")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        log.info("housekeeping: this process leads", extra={"pid": os.getpid()})
        return True

    async def _held_in_postgres(self) -> bool:
        if self._connection is not None:
            try:  # still ours while the session that took it lives
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception:
                await self._drop_connection()
        connection = await self.engine.connect()
        try:
            got = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}
            )
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._connection = connection
        log.info("housekeeping: this process leads", extra={"pid": os.getpid()})
        return True

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()

    async def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY}
                )
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None
