"""Logging in."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from domain.errors import Unauthenticated
from domain.users import service as users_service


@strawberry.type
class AuthPayload:
    access_token: str
    expires_at: dt.datetime


@strawberry.type
class AuthMutations:
    @strawberry.mutation(description="Exchange a username and password for an access token.")
    async def login(
        self, info: Info[RequestContext, None], username: str, password: str
    ) -> AuthPayload | None:
        ctx = info.context
        now = ctx.runtime.clock()
        await ctx.limit_logins(username, now)
        async with ctx.read() as session:
            try:
                user = await users_service.authenticate(
                    session=session,
                    username=username,
                    password=password,
                    origin=ctx.origin,
                    now=now,
                )
            except Unauthenticated:
                # Keep the failed-attempt counter, the lock-out and their audit events even
                # though the login failed.
                await session.commit()
                raise
            issued = ctx.runtime.tokens.issue(
                user_id=user.id, roles=user.roles, now=now, generation=user.token_generation
            )
            await session.commit()
        return AuthPayload(access_token=issued.token, expires_at=issued.expires_at)
