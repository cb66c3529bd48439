"""Group commit for events recorded on their own (sensitive reads, refusals).

Every read of personal data is audited before its answer leaves, in a transaction of its own.
Appended one by one, each such transaction holds the chain's head through its commit,
including the wait for the disk, so audited reads could not exceed one per disk flush however
many app processes served them (`bench/workers.py`). Here the events of concurrent requests
share a transaction: while one batch commits, the next gathers, and each caller returns only
when the batch holding its event has committed — durable as before, one head claim and one
disk flush per batch instead of per event.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.audit import service as audit


class AuditBatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, max_batch: int = 500):
        self.sessions = sessions
        self.max_batch = max_batch
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def record(self, **event: Any) -> None:
        """`audit.record(**event)` in a transaction shared with whatever else is waiting;
        returns once it is committed, raises what the commit raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((event, done))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())
        await asyncio.shield(done)  # a caller that gives up does not cancel the others' batch

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                try:
                    async with self.sessions() as session:
                        for event, _ in batch:
                            await audit.record(session=session, **event)
                        await session.commit()
                except BaseException as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for _, done in batch:
                        if not done.done():
                            done.set_result(None)
        finally:
            self._flusher = None
