"""Account administration for holders of `user:admin`: list, disable, enable, unlock, set
roles, reset passwords. Every change is audited; one that narrows an account ends its open
sessions, so it takes effect on the account's next request."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, selects
from domain import pagination
from domain.access import Action
from domain.users import service as users_service
from domain.users.models import User


@strawberry.type(description="An account, as administrators see it (no customer data).")
class UserAccount:
    username: str
    roles: list[str]
    channels: list[str] = strawberry.field(description="Channels a sales account is bound to.")
    employee_id: str | None = strawberry.field(
        description="The person behind the account; separation of duties compares persons."
    )
    disabled: bool
    locked_until: dt.datetime | None
    last_login_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def from_model(cls, user: User) -> UserAccount:
        return cls(
            username=user.username,
            roles=list(user.roles),
            channels=list(user.channels),
            employee_id=user.employee_id,
            disabled=user.disabled,
            locked_until=user.locked_until,
            last_login_at=user.last_login_at,
            created_at=user.created_at,
        )


@strawberry.type
class UserQueries:
    @strawberry.field(description="Every account, by id. Holders of user:admin only.")
    async def users(
        self, info: Info[RequestContext, None], first: int | None = 20, after: str | None = None
    ) -> Connection[UserAccount] | None:
        ctx = info.context
        ctx.require_actor().access.require(Action.USER_ADMIN)
        async with ctx.read() as session:
            page = await pagination.by_id(
                session,
                select(User),
                User.id,
                ordering="users:ID:ASC",
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, UserAccount.from_model)


async def _administer(
    info: Info[RequestContext, None],
    action: str,
    operation: str,
    username: str,
    change: Callable[[AsyncSession, Any], Awaitable[User]],
) -> UserAccount | None:
    ctx = info.context
    actor = ctx.require_actor()
    async with ctx.write(
        action=action, operation=operation, target_type="User", target_id=username
    ) as session:
        actor.access.require(Action.USER_ADMIN)
        user = await change(session, actor)
        return UserAccount.from_model(user)


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Disable an account; its tokens stop working at once.")
    async def disable_user(
        self, info: Info[RequestContext, None], username: str
    ) -> UserAccount | None:
        return await _administer(
            info,
            "user.disable",
            "disableUser",
            username,
            lambda s, a: users_service.disable_user(
                session=s, who=a, username=username, operation="disableUser"
            ),
        )

    @strawberry.mutation(description="Enable a disabled account.")
    async def enable_user(
        self, info: Info[RequestContext, None], username: str
    ) -> UserAccount | None:
        return await _administer(
            info,
            "user.enable",
            "enableUser",
            username,
            lambda s, a: users_service.enable_user(
                session=s, who=a, username=username, operation="enableUser"
            ),
        )

    @strawberry.mutation(description="Lift a lock-out after failed logins.")
    async def unlock_user(
        self, info: Info[RequestContext, None], username: str
    ) -> UserAccount | None:
        return await _administer(
            info,
            "user.unlock",
            "unlockUser",
            username,
            lambda s, a: users_service.unlock_user(
                session=s,
                who=a,
                username=username,
                operation="unlockUser",
                now=info.context.runtime.clock(),
            ),
        )

    @strawberry.mutation(description="Replace an account's roles; its tokens stop working.")
    async def set_user_roles(
        self, info: Info[RequestContext, None], username: str, roles: list[str]
    ) -> UserAccount | None:
        return await _administer(
            info,
            "user.set_roles",
            "setUserRoles",
            username,
            lambda s, a: users_service.set_roles(
                session=s, who=a, username=username, roles=roles, operation="setUserRoles"
            ),
        )

    @strawberry.mutation(description="Set a new password; the account's tokens stop working.")
    async def reset_user_password(
        self, info: Info[RequestContext, None], username: str, password: str
    ) -> UserAccount | None:
        return await _administer(
            info,
            "user.reset_password",
            "resetUserPassword",
            username,
            lambda s, a: users_service.reset_password(
                session=s,
                who=a,
                username=username,
                password=password,
                operation="resetUserPassword",
            ),
        )
