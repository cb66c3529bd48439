"""Turning an Authorization header into an Actor, for GraphQL and plain routes alike."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.runtime import Runtime
from domain.actor import Actor, Origin
from domain.errors import Unauthenticated
from domain.users import service as users_service


async def authenticate(
    header: str | None, *, session: AsyncSession, runtime: Runtime, origin: Origin
) -> Actor:
    actor, _claims = await authenticate_claims(
        header, session=session, runtime=runtime, origin=origin
    )
    return actor


async def authenticate_claims(
    header: str | None, *, session: AsyncSession, runtime: Runtime, origin: Origin
) -> tuple[Actor, dict[str, Any]]:
    """The actor and the verified token's claims (a websocket watches `exp`)."""
    if not header:
        raise Unauthenticated("log in first")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use `Authorization: Bearer <accessToken>`")
    claims = runtime.tokens.verify(token.strip())
    # Roles come from the database, not the token, so a role change or a disabled account
    # takes effect on the next request rather than when the token expires.
    user = await users_service.get_active_principal(
        session=session, user_id=int(claims["sub"]), generation=claims.get("gen", 0)
    )
    roles = frozenset(user.roles)
    actor = Actor(
        user_id=user.id,
        username=user.username,
        roles=roles,
        channels=frozenset(user.channels),
        access=runtime.pdp.profile(roles),
        origin=origin,
        person=user.person,
    )
    # The transaction that read the account stays open: the request's next step ends it (the
    # budget commits what it spends; downloads and the refusal counter commit too), so a
    # request costs no separate COMMIT for its authentication.
    return actor, claims
