"""Accounts: creation and password authentication with lock-out."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain import ratelimit
from domain.access import ROLES
from domain.actor import Actor, Origin
from domain.audit import service as audit
from domain.audit.service import Outcome, Subject
from domain.channels.models import Channel
from domain.db import utcnow
from domain.errors import BadInput, Conflict, NotFound, Unauthenticated
from domain.users import passwords
from domain.users.models import User, UserChannel, UserRole
from domain.values import clean_text

MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
# Failed logins are counted per account *and source address*, in LOCKOUT-long windows: five
# from one address lock that address out of that account, not the account (issue #30, M5:
# five anonymous wrong passwords locked any account for everyone and ended its sessions).
FAILURES = "login:fail:"
ratelimit.LONG_WINDOWS[FAILURES] = LOCKOUT


def _failures_key(user: User, origin: Origin) -> str:
    return f"{FAILURES}{user.id}:{origin.client_ip}"


BAD_LOGIN = "invalid username or password"


async def authenticate(
    *,
    session: AsyncSession,
    username: str,
    password: str,
    origin: Origin,
    now: dt.datetime | None = None,
) -> User:
    """Return the user whose password this is, or raise Unauthenticated.

    Every failure raises the same message — unknown user, wrong password, locked or disabled —
    so the answer does not reveal which accounts exist; the audit log records the real reason.
    Failed attempts and their audit events are written to the session; the caller commits
    them even though it then reports the failure.
    """
    now = now or utcnow()
    user = await session.scalar(select(User).where(User.username == username))

    async def fail(reason: str) -> Unauthenticated:
        who = Subject(user.id if user else None, username, user.roles if user else (), origin)
        await audit.record(
            session=session,
            who=who,
            action="auth.login",
            operation="login",
            outcome=Outcome.FAILURE,
            code="UNAUTHENTICATED",
            target_type="User",
            target_id=user.id if user else None,
            details={"reason": reason},
            at=now,
        )
        return Unauthenticated(BAD_LOGIN)

    if user is None:
        # Spend the same argon2 time as a real check before answering.
        await passwords.verify_password_async(None, password)
        raise await fail("unknown_user")

    key = _failures_key(user, origin)
    window = int(now.timestamp()) // int(LOCKOUT.total_seconds())
    current, previous = await ratelimit.count(session=session, key=key, window=window)
    if current + previous >= MAX_FAILED_LOGINS:
        # This address is locked out of this account for now. Still verify, so a locked
        # account answers as slowly as any other; don't count it. Other addresses, and the
        # account's open sessions, are untouched: a lockout is not a remote kill switch.
        await passwords.verify_password_async(user.password_hash, password)
        raise await fail("locked")

    ok, new_hash = await passwords.verify_password_async(user.password_hash, password)
    if not ok:
        current, previous = await ratelimit.add(session=session, key=key, window=window)
        error = await fail("bad_password")
        if current + previous == MAX_FAILED_LOGINS:
            # Shown to administrators (users list, unlockUser); it locks this address only.
            user.locked_until = now + LOCKOUT
            await audit.record(
                session=session,
                who=Subject(user.id, user.username, user.roles, origin),
                action="auth.lockout",
                operation="login",
                outcome=Outcome.DENIED,
                target_type="User",
                target_id=user.id,
                at=now,
                details={
                    "until": user.locked_until.isoformat(),
                    "after_failures": MAX_FAILED_LOGINS,
                    "source": origin.client_ip,
                },
            )
        raise error
    if user.disabled:
        raise await fail("disabled")

    if new_hash is not None:
        user.password_hash = new_hash
    await ratelimit.forget(session=session, prefix=key)
    user.last_login_at = now
    await audit.record(
        session=session,
        who=Subject(user.id, user.username, user.roles, origin),
        action="auth.login",
        operation="login",
        target_type="User",
        target_id=user.id,
        at=now,
        details={"rehashed": new_hash is not None},
    )
    return user


async def create_user(
    *,
    session: AsyncSession,
    who: Actor | Subject,
    username: str,
    password: str,
    roles: Iterable[str],
    channels: Iterable[str] = (),
    employee_id: str | None = None,
    email: str | None = None,
) -> User:
    roles = sorted(set(roles))
    if email is not None:
        email = check_email(email)
    if employee_id is not None:
        employee_id = clean_text(employee_id, what="employee id", max_length=64, required=True)
    channels = sorted(set(channels))
    if (
        not username
        or len(username) > 64
        or not username.replace("_", "").replace("-", "").replace(".", "").isalnum()
    ):
        raise BadInput("username must be 1-64 letters, digits, '.', '_' or '-'")
    passwords.check_length(password)
    if not roles:
        raise BadInput("give at least one role")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise BadInput(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(ROLES)}")
    if channels:
        known = set((await session.scalars(select(Channel.code))).all())
        missing = [c for c in channels if c not in known]
        if missing:
            raise BadInput(
                f"unknown channel(s): {', '.join(missing)}; channels: {', '.join(sorted(known))}"
            )
    if await session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} exists")
    user = User(
        username=username,
        password_hash=await passwords.hash_password_async(password),
        employee_id=employee_id,
        email=email,
        role_rows=[UserRole(role=r) for r in roles],
        channel_rows=[UserChannel(channel_code=c) for c in channels],
    )
    session.add(user)
    await session.flush()
    await audit.record(
        session=session,
        who=who,
        action="user.create",
        operation="users create",
        target_type="User",
        target_id=user.id,
        details={
            "username": username,
            "roles": roles,
            "channels": channels,
            "employeeId": employee_id,
            "email": email,
        },
    )
    return user


_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(\.[A-Za-z0-9\-]{1,63})+")


def check_email(value: str) -> str:
    """An address mail can be sent to: ASCII `local@domain.tld`, at most 254 characters, no
    spaces, quotes or line breaks (so it can never inject a mail header)."""
    text = clean_text(value, what="email", max_length=254, required=True)
    if not _EMAIL.fullmatch(text):
        raise BadInput("email must look like name@example.com")
    return text.lower()


async def get_active_user(*, session: AsyncSession, user_id: int, generation: object = 0) -> User:
    """The account a token names, if the token is still good for it: the account exists, is
    not disabled, and has not moved past the token's generation (locked, disabled, roles or
    password changed since the token was issued)."""
    user = await session.get(User, user_id)
    if user is None or user.disabled:
        raise Unauthenticated("the account behind this token is gone or disabled")
    if generation != user.token_generation:
        raise Unauthenticated("this session has ended (the account changed); log in again")
    return user


@dataclass(frozen=True)
class Principal:
    """What a request needs of the account behind its token: read in one statement."""

    id: int
    username: str
    roles: tuple[str, ...]
    channels: tuple[str, ...]
    person: str


async def get_active_principal(
    *, session: AsyncSession, user_id: int, generation: object = 0
) -> Principal:
    """`get_active_user`'s checks, for every authenticated request: the account, its roles and
    its channels in one statement (outer joins; an account has a handful of each) instead of
    three, and no ORM instances."""
    rows = (
        await session.execute(
            select(
                User.id,
                User.username,
                User.disabled,
                User.token_generation,
                User.employee_id,
                UserRole.role,
                UserChannel.channel_code,
            )
            .outerjoin(UserRole, UserRole.user_id == User.id)
            .outerjoin(UserChannel, UserChannel.user_id == User.id)
            .where(User.id == user_id)
        )
    ).all()
    if not rows or rows[0].disabled:
        raise Unauthenticated("the account behind this token is gone or disabled")
    head = rows[0]
    if generation != head.token_generation:
        raise Unauthenticated("this session has ended (the account changed); log in again")
    return Principal(
        id=head.id,
        username=head.username,
        roles=tuple(sorted({r.role for r in rows if r.role is not None})),
        channels=tuple(sorted({r.channel_code for r in rows if r.channel_code is not None})),
        person=f"employee:{head.employee_id}" if head.employee_id else f"account:{head.id}",
    )


def end_sessions(user: User) -> None:
    """Every token issued to this account so far stops working on its next request."""
    user.token_generation += 1


# ---- administration --------------------------------------------------------------------------
# Every change is audited in the caller's transaction with before and after; a change that
# narrows what an account may do ends its open sessions, so it takes effect on the next request.


async def list_users(*, session: AsyncSession) -> list[User]:
    return list((await session.scalars(select(User).order_by(User.username))).all())


async def account(session: AsyncSession, username: str) -> User:
    user = await session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound("no such account")
    return user


async def _record_admin(
    session: AsyncSession,
    who: Actor | Subject,
    user: User,
    action: str,
    operation: str,
    details: dict[str, object],
) -> None:
    await audit.record(
        session=session,
        who=who,
        action=action,
        operation=operation,
        target_type="User",
        target_id=user.id,
        details={"username": user.username, **details},
    )


async def disable_user(
    *, session: AsyncSession, who: Actor | Subject, username: str, operation: str
) -> User:
    user = await account(session, username)
    if user.disabled:
        raise Conflict(f"{username} is already disabled")
    user.disabled = True
    end_sessions(user)
    await _record_admin(session, who, user, "user.disable", operation, {})
    return user


async def enable_user(
    *, session: AsyncSession, who: Actor | Subject, username: str, operation: str
) -> User:
    user = await account(session, username)
    if not user.disabled:
        raise Conflict(f"{username} is not disabled")
    user.disabled = False
    await _record_admin(session, who, user, "user.enable", operation, {})
    return user


async def unlock_user(
    *, session: AsyncSession, who: Actor | Subject, username: str, operation: str, now: dt.datetime
) -> User:
    user = await account(session, username)
    was = user.locked_until
    if was is None or was <= now:
        raise Conflict(f"{username} is not locked")
    user.locked_until = None
    await ratelimit.forget(session=session, prefix=f"{FAILURES}{user.id}:")
    await _record_admin(
        session, who, user, "user.unlock", operation, {"wasLockedUntil": was.isoformat()}
    )
    return user


async def set_roles(
    *,
    session: AsyncSession,
    who: Actor | Subject,
    username: str,
    roles: Iterable[str],
    operation: str,
) -> User:
    roles = sorted(set(roles))
    if not roles:
        raise BadInput("give at least one role")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise BadInput(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(ROLES)}")
    user = await account(session, username)
    before = list(user.roles)
    if before == roles:
        raise Conflict(f"{username} already has exactly these roles")
    user.role_rows = [UserRole(role=r) for r in roles]
    end_sessions(user)
    await session.flush()
    await _record_admin(
        session, who, user, "user.set_roles", operation, {"before": before, "after": roles}
    )
    return user


async def reset_password(
    *, session: AsyncSession, who: Actor | Subject, username: str, password: str, operation: str
) -> User:
    passwords.check_length(password)
    user = await account(session, username)
    user.password_hash = await passwords.hash_password_async(password)
    # Set by the operator (command line) or by the account's own administrator: nobody
    # else knows it (issue #30, M4: another person's reset goes through `set_password_hash`).
    user.password_set_by = None
    user.password_set_at = None
    await _password_changed(session, user)
    await _record_admin(session, who, user, "user.reset_password", operation, {})
    return user


async def _password_changed(session: AsyncSession, user: User) -> None:
    user.locked_until = None
    await ratelimit.forget(session=session, prefix=f"{FAILURES}{user.id}:")
    end_sessions(user)


async def set_password_hash(
    *,
    session: AsyncSession,
    who: Actor | Subject,
    user: User,
    password_hash: str,
    set_by: str,
    now: dt.datetime,
    operation: str,
) -> User:
    """Apply a password another person chose (a confirmed reset, domain/users/changes.py):
    the account remembers who, so the keys it registers next wait for confirmation."""
    user.password_hash = password_hash
    user.password_set_by = set_by
    user.password_set_at = now
    await _password_changed(session, user)
    await _record_admin(
        session, who, user, "user.reset_password", operation, {"passwordSetBy": set_by}
    )
    return user
