"""Changes to privileged accounts need a second person (issue #30, M4).

One administrator completed a signed refund alone: granted itself cs, requested a refund,
reset an approver's password, logged in as the approver and signed. The rules now:

- An administrator's own roles are not theirs to change (FORBIDDEN).
- A role change that adds or removes `admin`, `approver` or `compliance`, or changes the
  roles of an account holding one of them, and any reset of another account's password, is
  recorded as a pending `AccountChange`; it applies only when an administrator who is another
  person (employee, not account) confirms it within 24 hours. The requester may cancel it.
- A password set by another person marks the account (`password_set_by`): signing keys it
  registers from then on sign nothing until an administrator who is neither that person nor
  the account's own confirms them (domain/approvals/service.py). Its older keys stay good:
  their private halves never left their owner.

The command line (`ordergate users set-roles|reset-password`) is the operator's, with the
database's own trust, and applies at once as before.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import ROLES, Action
from domain.actor import Actor
from domain.audit import service as audit
from domain.errors import BadInput, Conflict, Forbidden, NotFound, SeparationOfDuties
from domain.users import passwords
from domain.users import service as users
from domain.users.models import AccountChange, User

PRIVILEGED = frozenset({"admin", "approver", "compliance"})
WAIT = dt.timedelta(hours=24)
ROLES_CHANGE, PASSWORD_CHANGE = "ROLES", "PASSWORD"
PENDING, APPLIED, CANCELLED, EXPIRED = "PENDING", "APPLIED", "CANCELLED", "EXPIRED"
STATUSES = (PENDING, APPLIED, CANCELLED, EXPIRED)


def needs_second_person(before: Iterable[str], after: Iterable[str]) -> bool:
    """A role change needs a second administrator when the account holds, or would hold, a
    privileged role."""
    return bool((set(before) | set(after)) & PRIVILEGED)


def status_of(change: AccountChange, now: dt.datetime) -> str:
    if change.status == PENDING and change.expires_at <= now:
        return EXPIRED
    return change.status


def roles_of(change: AccountChange) -> list[str] | None:
    return json.loads(change.roles) if change.roles is not None else None


async def _pending(
    session: AsyncSession, user: User, kind: str, now: dt.datetime
) -> AccountChange | None:
    return await session.scalar(
        select(AccountChange).where(
            AccountChange.user_id == user.id,
            AccountChange.kind == kind,
            AccountChange.status == PENDING,
            AccountChange.expires_at > now,
        )
    )


async def _request(
    session: AsyncSession,
    actor: Actor,
    user: User,
    kind: str,
    now: dt.datetime,
    *,
    roles: Sequence[str] | None = None,
    password_hash: str | None = None,
) -> AccountChange:
    waiting = await _pending(session, user, kind, now)
    if waiting is not None:
        raise Conflict(
            f"a change of {user.username}'s {kind.lower()} is already waiting for a second "
            f"administrator (id {waiting.id}); confirm or cancel it first"
        )
    # A lapsed one gives way (the unique index allows one PENDING row per account and kind).
    await session.execute(
        update(AccountChange)
        .where(
            AccountChange.user_id == user.id,
            AccountChange.kind == kind,
            AccountChange.status == PENDING,
            AccountChange.expires_at <= now,
        )
        .values(status=EXPIRED, password_hash=None)
    )
    change = AccountChange(
        kind=kind,
        user_id=user.id,
        generation=user.token_generation,
        roles=json.dumps(list(roles)) if roles is not None else None,
        password_hash=password_hash,
        status=PENDING,
        requested_by_id=actor.user_id,
        requested_by_person=actor.person_key,
        requested_at=now,
        expires_at=now + WAIT,
    )
    session.add(change)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict(
            f"a change of {user.username}'s {kind.lower()} is already waiting for a second "
            "administrator; confirm or cancel it first"
        ) from None
    details: dict[str, object] = {"username": user.username, "change": change.id, "kind": kind}
    if roles is not None:
        details |= {"before": list(user.roles), "after": list(roles)}
    await audit.record(
        session=session,
        who=actor,
        action="user.change_requested",
        operation="setUserRoles" if kind == ROLES_CHANGE else "resetUserPassword",
        target_type="User",
        target_id=user.id,
        details=details,
    )
    return change


def _valid_roles(roles: Iterable[str]) -> list[str]:
    wanted = sorted(set(roles))
    if not wanted:
        raise BadInput("give at least one role")
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise BadInput(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(ROLES)}")
    return wanted


async def set_roles(
    *, session: AsyncSession, actor: Actor, username: str, roles: Iterable[str], now: dt.datetime
) -> tuple[User, AccountChange | None]:
    """`setUserRoles`: applied at once, or (privileged) a pending change for a second
    administrator. Returns the account and the pending change, if any."""
    actor.access.require(Action.USER_ADMIN)
    wanted = _valid_roles(roles)
    user = await users.account(session, username)
    if user.id == actor.user_id or user.person == actor.person_key:
        # Any account of one's own person: a second account is still oneself.
        raise Forbidden("your own roles are changed by another administrator")
    if list(user.roles) == wanted:
        raise Conflict(f"{username} already has exactly these roles")
    if not needs_second_person(user.roles, wanted):
        changed = await users.set_roles(
            session=session, who=actor, username=username, roles=wanted, operation="setUserRoles"
        )
        return changed, None
    return user, await _request(session, actor, user, ROLES_CHANGE, now, roles=wanted)


async def reset_password(
    *, session: AsyncSession, actor: Actor, username: str, password: str, now: dt.datetime
) -> tuple[User, AccountChange | None]:
    """`resetUserPassword`: one's own at once; another account's waits for a second
    administrator, kept as its hash."""
    actor.access.require(Action.USER_ADMIN)
    passwords.check_length(password)
    user = await users.account(session, username)
    if user.id == actor.user_id:
        # Who set the password before stays on record: a resetter now holding the account
        # cannot clear it by setting the password again (issue #30, M4).
        marker = (user.password_set_by, user.password_set_at)
        changed = await users.reset_password(
            session=session,
            who=actor,
            username=username,
            password=password,
            operation="resetUserPassword",
        )
        changed.password_set_by, changed.password_set_at = marker
        return changed, None
    hashed = await passwords.hash_password_async(password)
    return user, await _request(session, actor, user, PASSWORD_CHANGE, now, password_hash=hashed)


async def _decidable(
    session: AsyncSession, actor: Actor, change_id: int, now: dt.datetime
) -> AccountChange:
    change = await session.get(AccountChange, change_id, with_for_update=True)
    if change is None:
        raise NotFound("no such account change")
    state = status_of(change, now)
    if state != PENDING:
        raise Conflict(f"this change is {state.lower()}, not waiting")
    return change


async def confirm(
    *, session: AsyncSession, actor: Actor, change_id: int, now: dt.datetime
) -> AccountChange:
    """A second administrator — another person than the requester, and not the account's
    own — applies a pending change."""
    actor.access.require(Action.USER_ADMIN)
    change = await _decidable(session, actor, change_id, now)
    persons = await persons_of(session, actor)
    if change.requested_by_person in persons:
        raise SeparationOfDuties("a second administrator confirms this, not the one who asked")
    user = change.user
    if user.id == actor.user_id or user.person in persons:
        raise SeparationOfDuties("changes to your own account are confirmed by someone else")
    requester = change.requested_by
    if user.token_generation != change.generation:
        raise Conflict(
            f"{user.username} has changed since this was asked (disabled, roles or password); "
            "ask again"
        )
    if requester is None or requester.disabled or "admin" not in requester.roles:
        raise Conflict("whoever asked for this is no longer an administrator; ask again")
    if change.kind == ROLES_CHANGE:
        await users.set_roles(
            session=session,
            who=actor,
            username=user.username,
            roles=roles_of(change) or [],
            operation="confirmAccountChange",
        )
    else:
        await users.set_password_hash(
            session=session,
            who=actor,
            user=user,
            password_hash=change.password_hash or "",
            set_by=change.requested_by_person,
            now=now,
            operation="confirmAccountChange",
        )
    change.status = APPLIED
    change.password_hash = None  # applied: the hash lives on the account only
    change.decided_by = await session.get(User, actor.user_id) if actor.user_id else None
    change.decided_at = now
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="user.change_confirmed",
        operation="confirmAccountChange",
        target_type="User",
        target_id=user.id,
        details={
            "username": user.username,
            "change": change.id,
            "kind": change.kind,
            "requestedBy": change.requested_by.username if change.requested_by else None,
        },
    )
    return change


async def persons_of(session: AsyncSession, actor: Actor) -> set[str]:
    """Whom an administrator may stand for in separation of duties: their own person, and
    whoever else set their account's password (who may be the one at the keyboard now)."""
    persons = {actor.person_key}
    me = await session.get(User, actor.user_id) if actor.user_id is not None else None
    if me is not None and me.password_set_by is not None:
        persons.add(me.password_set_by)
    return persons


async def cancel(
    *, session: AsyncSession, actor: Actor, change_id: int, now: dt.datetime
) -> AccountChange:
    """The requester or another administrator drops a pending change."""
    actor.access.require(Action.USER_ADMIN)
    change = await _decidable(session, actor, change_id, now)
    change.status = CANCELLED
    change.password_hash = None
    change.decided_by = await session.get(User, actor.user_id) if actor.user_id else None
    change.decided_at = now
    await session.flush()
    await audit.record(
        session=session,
        who=actor,
        action="user.change_cancelled",
        operation="cancelAccountChange",
        target_type="User",
        target_id=change.user_id,
        details={"username": change.user.username, "change": change.id, "kind": change.kind},
    )
    return change


async def list_changes(
    *, session: AsyncSession, actor: Actor, status: str | None, now: dt.datetime, limit: int = 100
) -> list[AccountChange]:
    """Account changes, newest first; by default those waiting."""
    actor.access.require(Action.USER_ADMIN)
    wanted = status or PENDING
    if wanted not in STATUSES:
        raise BadInput(f"status is one of {', '.join(STATUSES)}")
    stmt = select(AccountChange).order_by(AccountChange.id.desc()).limit(limit)
    if wanted == PENDING:
        stmt = stmt.where(AccountChange.status == PENDING, AccountChange.expires_at > now)
    elif wanted == EXPIRED:
        stmt = stmt.where(
            (AccountChange.status == EXPIRED)
            | ((AccountChange.status == PENDING) & (AccountChange.expires_at <= now))
        )
    else:
        stmt = stmt.where(AccountChange.status == wanted)
    return list((await session.scalars(stmt)).unique().all())
