"""The typed request context every resolver gets: session, actor, client IP, loaders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from strawberry.dataloader import DataLoader

from domain.access import AccessProfile
from domain.actor import Actor
from domain.errors import Unauthenticated

if TYPE_CHECKING:
    from api.runtime import Runtime


@dataclass
class RequestContext:
    request: Request
    runtime: Runtime
    session: AsyncSession
    client_ip: str
    request_id: str
    actor: Actor | None = None
    auth_error: Unauthenticated | None = None
    # Coordinates the operation asks for that the caller may not read; reported once each.
    denied_fields: list[str] = field(default_factory=list)
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)
    # GraphQL resolves sibling fields concurrently, but one AsyncSession allows one operation at
    # a time: every resolver that touches the database holds this lock while it does.
    _db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def require_actor(self) -> Actor:
        if self.actor is None:
            raise self.auth_error or Unauthenticated("log in first")
        return self.actor

    @property
    def access(self) -> AccessProfile:
        return self.require_actor().access

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """The request's session, for one resolver at a time."""
        async with self._db_lock:
            yield self.session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One mutation, one transaction: commit on success, roll back on any error."""
        async with self._db_lock:
            try:
                yield self.session
                await self.session.commit()
            except BaseException:
                await self.session.rollback()
                raise
