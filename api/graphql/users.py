"""Account administration for holders of `user:admin`: list, disable, enable, unlock, set
roles, reset passwords. Every change is audited; one that narrows an account ends its open
sessions, so it takes effect on the account's next request."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, parse_id, selects
from domain import pagination
from domain.access import Action
from domain.users import changes
from domain.users import service as users_service
from domain.users.models import AccountChange as AccountChangeModel
from domain.users.models import User


@strawberry.enum(description="What an account change does.")
class AccountChangeKind(enum.Enum):
    ROLES = "ROLES"
    PASSWORD = "PASSWORD"  # noqa: S105 (the kind of change, not a password)


@strawberry.enum(description="Where an account change stands.")
class AccountChangeStatus(enum.Enum):
    PENDING = "PENDING"
    APPLIED = "APPLIED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


@strawberry.type(
    description=(
        "A change to a privileged account (admin, approver or compliance roles; another "
        "account's password) that applies only when a second administrator, another person, "
        "confirms it within 24 hours."
    )
)
class AccountChange:
    id: strawberry.ID
    username: str = strawberry.field(description="The account it changes.")
    kind: AccountChangeKind
    roles: list[str] | None = strawberry.field(description="The roles it sets (ROLES only).")
    status: AccountChangeStatus
    requested_by: str | None
    requested_at: dt.datetime
    expires_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None

    @classmethod
    def from_model(cls, change: AccountChangeModel, now: dt.datetime) -> AccountChange:
        return cls(
            id=strawberry.ID(str(change.id)),
            username=change.user.username,
            kind=AccountChangeKind(change.kind),
            roles=changes.roles_of(change),
            status=AccountChangeStatus(changes.status_of(change, now)),
            requested_by=change.requested_by.username if change.requested_by else None,
            requested_at=change.requested_at,
            expires_at=change.expires_at,
            decided_by=change.decided_by.username if change.decided_by else None,
            decided_at=change.decided_at,
        )


def _pending_loader(ctx: RequestContext) -> DataLoader[int, list[AccountChange]]:
    loader = ctx.loaders.get("pending_account_changes")
    if loader is None:

        async def load(user_ids: Sequence[int]) -> list[list[AccountChange]]:
            now = ctx.runtime.clock()
            async with ctx.read() as session:
                found = await session.scalars(
                    select(AccountChangeModel)
                    .where(
                        AccountChangeModel.user_id.in_(user_ids),
                        AccountChangeModel.status == changes.PENDING,
                        AccountChangeModel.expires_at > now,
                    )
                    .order_by(AccountChangeModel.id)
                )
                grouped: dict[int, list[AccountChange]] = {}
                for change in found.unique():
                    grouped.setdefault(change.user_id, []).append(
                        AccountChange.from_model(change, now)
                    )
            return [grouped.get(uid, []) for uid in user_ids]

        loader = DataLoader(load_fn=load)
        ctx.loaders["pending_account_changes"] = loader
    return loader


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
    user_id: strawberry.Private[int]

    @strawberry.field(
        description=(
            "Changes to this account waiting for a second administrator (confirmAccountChange)."
        )
    )
    async def pending_changes(self, info: Info[RequestContext, None]) -> list[AccountChange]:
        return await _pending_loader(info.context).load(self.user_id)

    @classmethod
    def from_model(cls, user: User) -> UserAccount:
        return cls(
            user_id=user.id,
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

    @strawberry.field(
        description="Account changes, newest first (100 at most); by default those waiting."
    )
    async def account_changes(
        self, info: Info[RequestContext, None], status: AccountChangeStatus | None = None
    ) -> list[AccountChange]:
        ctx = info.context
        now = ctx.runtime.clock()
        async with ctx.read() as session:
            found = await changes.list_changes(
                session=session,
                actor=ctx.require_actor(),
                status=status.value if status is not None else None,
                now=now,
            )
            return [AccountChange.from_model(c, now) for c in found]


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

    @strawberry.mutation(
        description=(
            "Replace another account's roles; its tokens stop working. A change that adds or "
            "removes admin, approver or compliance, or touches an account holding one, waits "
            "for a second administrator (see pendingChanges). Your own roles are changed by "
            "someone else."
        )
    )
    async def set_user_roles(
        self, info: Info[RequestContext, None], username: str, roles: list[str]
    ) -> UserAccount | None:
        now = info.context.runtime.clock()

        async def change(session: AsyncSession, actor: Any) -> User:
            user, _ = await changes.set_roles(
                session=session, actor=actor, username=username, roles=roles, now=now
            )
            return user

        return await _administer(info, "user.set_roles", "setUserRoles", username, change)

    @strawberry.mutation(
        description=(
            "Set a new password; the account's tokens stop working. Another account's waits "
            "for a second administrator (see pendingChanges), and the keys it registers "
            "afterwards sign only once an administrator confirms them."
        )
    )
    async def reset_user_password(
        self, info: Info[RequestContext, None], username: str, password: str
    ) -> UserAccount | None:
        now = info.context.runtime.clock()

        async def change(session: AsyncSession, actor: Any) -> User:
            user, _ = await changes.reset_password(
                session=session, actor=actor, username=username, password=password, now=now
            )
            return user

        return await _administer(info, "user.reset_password", "resetUserPassword", username, change)

    @strawberry.mutation(
        description=(
            "Apply a waiting account change: by an administrator who is another person than "
            "the one who asked, and not the account's own."
        )
    )
    async def confirm_account_change(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> AccountChange | None:
        return await _decide(info, "confirmAccountChange", id, changes.confirm)

    @strawberry.mutation(description="Drop a waiting account change (any administrator).")
    async def cancel_account_change(
        self, info: Info[RequestContext, None], id: strawberry.ID
    ) -> AccountChange | None:
        return await _decide(info, "cancelAccountChange", id, changes.cancel)


async def _decide(
    info: Info[RequestContext, None],
    operation: str,
    id: strawberry.ID,
    decide: Callable[..., Awaitable[AccountChangeModel]],
) -> AccountChange:
    ctx = info.context
    actor = ctx.require_actor()
    now = ctx.runtime.clock()
    async with ctx.write(
        action="user.change_confirmed"
        if operation == "confirmAccountChange"
        else "user.change_cancelled",
        operation=operation,
        target_type="AccountChange",
        target_id=id,
    ) as session:
        change = await decide(
            session=session, actor=actor, change_id=parse_id(id, "account change"), now=now
        )
        return AccountChange.from_model(change, now)
