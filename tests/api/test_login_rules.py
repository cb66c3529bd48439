"""The login rules at their exact edges (domain/users/service.py; issue #30's mutation run of
it): what each failure records, five failures from one address lock that address out of the
account for the lock-out windows of 15 minutes, and nothing else. Times come from the
injectable clock; the windows and messages are written out here, not read from the code."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from api.app import _purge_rate_counters
from domain.actor import SYSTEM_ORIGIN
from domain.audit.service import Subject
from domain.errors import BadInput
from domain.users import service as users_service
from domain.users.models import User
from tests.api.test_audit import events
from tests.api.test_security_regressions import LOGIN_WITH, PASSWORD, _account
from tests.conftest import Api

# A quarter-hour boundary, away from the real clock (setting up the account logs in at real
# time): the lock-out counts failures in 15-minute windows from the epoch.
QUARTER = dt.datetime(2026, 11, 2, 3, 0, tzinfo=dt.UTC)  # in the past: never the real minute
USERS = "{ users(first: 100) { edges { node { username lockedUntil } } } }"


@contextmanager
def at(api: Api, moment: dt.datetime) -> Iterator[None]:
    runtime = api.app.state.runtime
    clock, runtime.clock = runtime.clock, lambda: moment
    try:
        yield
    finally:
        runtime.clock = clock


async def _login(api: Api, username: str, password: str) -> dict:
    return await api.gql(LOGIN_WITH, {"u": username, "p": password})


def _outcome(result: dict) -> str:
    if "errors" not in result:
        return "ok"
    error = result["errors"][0]
    assert error["message"] == "invalid username or password", error  # one message for all
    return error["extensions"]["code"]


async def test_every_failed_login_is_recorded_with_its_reason_and_one_message(api: Api) -> None:
    await _account(api, "kong.cs", ["cs"], None)
    await _account(api, "off.cs", ["cs"], None)
    await api.gql('mutation { disableUser(username: "off.cs") { disabled } }', as_="admin")
    answers = [
        await _login(api, "nobody.here", PASSWORD),
        await _login(api, "kong.cs", "not-the-password"),
        await _login(api, "off.cs", PASSWORD),
    ]
    recorded = [e for e in await events(api, action="auth.login") if e["outcome"] == "failure"]

    assert [_outcome(a) for a in answers] == ["UNAUTHENTICATED"] * 3
    assert [
        (e["username"], e["operation"], e["code"], e["target_type"], e["details"]["reason"])
        for e in recorded[-3:]
    ] == [
        ("nobody.here", "login", "UNAUTHENTICATED", "User", "unknown_user"),
        ("kong.cs", "login", "UNAUTHENTICATED", "User", "bad_password"),
        ("off.cs", "login", "UNAUTHENTICATED", "User", "disabled"),
    ]
    assert recorded[-3]["target_id"] is None
    assert recorded[-2]["target_id"] is not None


async def test_five_failures_lock_the_address_out_for_the_quarter_hours_they_fall_in(
    api: Api,
) -> None:
    """Failures count in 15-minute windows, the current one and the one before: five made in
    the first minute of a quarter keep the address out until the quarter after next."""
    await _account(api, "lin.cs", ["cs"], None)
    failed = QUARTER + dt.timedelta(seconds=10)
    outcomes = []
    with at(api, failed):
        for _ in range(5):
            outcomes.append(_outcome(await _login(api, "lin.cs", "wrong-password-1")))
        listed = await api.gql(USERS, as_="admin")
    # Housekeeping two minutes later keeps the failures (they are not minute counters).
    with at(api, failed + dt.timedelta(minutes=2)):
        await _purge_rate_counters(api.app.state.runtime)
        outcomes.append(_outcome(await _login(api, "lin.cs", PASSWORD)))
    with at(api, QUARTER + dt.timedelta(minutes=30) - dt.timedelta(seconds=1)):
        outcomes.append(_outcome(await _login(api, "lin.cs", PASSWORD)))
    with at(api, QUARTER + dt.timedelta(minutes=30)):
        outcomes.append(_outcome(await _login(api, "lin.cs", PASSWORD)))
    lockouts = await events(api, action="auth.lockout")
    reasons = [
        e["details"]["reason"]
        for e in await events(api, action="auth.login")
        if e["username"] == "lin.cs" and e["outcome"] == "failure"
    ]

    assert outcomes == ["UNAUTHENTICATED"] * 7 + ["ok"]
    assert reasons == ["bad_password"] * 5 + ["locked"] * 2
    [lockout] = lockouts
    assert lockout["operation"] == "login"
    assert lockout["target_type"] == "User"
    assert lockout["details"] == {
        "until": (failed + dt.timedelta(minutes=15)).isoformat(),
        "after_failures": 5,
        "source": "203.0.113.7",
    }
    locked = {
        e["node"]["username"]: e["node"]["lockedUntil"] for e in listed["data"]["users"]["edges"]
    }
    assert dt.datetime.fromisoformat(locked["lin.cs"]) == failed + dt.timedelta(minutes=15)


async def test_four_failures_lock_nothing_and_a_success_forgets_them(api: Api) -> None:
    await _account(api, "mo.cs", ["cs"], None)
    outcomes = []
    with at(api, QUARTER + dt.timedelta(seconds=5)):
        for _ in range(4):
            outcomes.append(_outcome(await _login(api, "mo.cs", "wrong-password-2")))
        outcomes.append(_outcome(await _login(api, "mo.cs", PASSWORD)))  # forgets the four
        for _ in range(4):
            outcomes.append(_outcome(await _login(api, "mo.cs", "wrong-password-3")))
        outcomes.append(_outcome(await _login(api, "mo.cs", PASSWORD)))

    assert outcomes == ["UNAUTHENTICATED"] * 4 + ["ok"] + ["UNAUTHENTICATED"] * 4 + ["ok"]
    assert await events(api, action="auth.lockout") == []


async def test_five_failures_across_two_quarters_still_lock(api: Api) -> None:
    """The count is the current window and the one before, added: three failures just before
    a quarter and two just after are five."""
    await _account(api, "qiu.cs", ["cs"], None)
    outcomes = []
    with at(api, QUARTER - dt.timedelta(seconds=20)):
        for _ in range(3):
            outcomes.append(_outcome(await _login(api, "qiu.cs", "wrong-password-4")))
    with at(api, QUARTER + dt.timedelta(seconds=20)):
        for _ in range(2):
            outcomes.append(_outcome(await _login(api, "qiu.cs", "wrong-password-4")))
        outcomes.append(_outcome(await _login(api, "qiu.cs", PASSWORD)))

    assert outcomes == ["UNAUTHENTICATED"] * 6
    [lockout] = await events(api, action="auth.lockout")
    assert lockout["username"] == "qiu.cs"


async def test_a_login_is_recorded_on_the_account_and_an_old_hash_is_replaced(api: Api) -> None:
    await _account(api, "ye.cs", ["cs"], None)
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    async with api.app.state.runtime.sessions() as session:
        await session.execute(
            update(User).where(User.username == "ye.cs").values(password_hash=weak)
        )
        await session.commit()
    moment = QUARTER + dt.timedelta(hours=1)
    with at(api, moment):
        first = _outcome(await _login(api, "ye.cs", PASSWORD))
        second = _outcome(await _login(api, "ye.cs", PASSWORD))
    listed = await api.gql(
        "{ users(first: 100) { edges { node { username lastLoginAt } } } }", as_="admin"
    )
    async with api.app.state.runtime.sessions() as session:
        stored = await session.scalar(select(User.password_hash).where(User.username == "ye.cs"))
    successes = [
        e
        for e in await events(api, action="auth.login")
        if e["username"] == "ye.cs" and e["outcome"] == "success"
    ]
    rehashed = [e["details"]["rehashed"] for e in successes]
    assert {e["operation"] for e in successes} == {"login"}

    assert (first, second) == ("ok", "ok")
    assert rehashed[-2:] == [True, False]  # once, then the new hash stands
    assert stored != weak
    assert not PasswordHasher().check_needs_rehash(stored)
    last = {
        e["node"]["username"]: e["node"]["lastLoginAt"] for e in listed["data"]["users"]["edges"]
    }
    assert dt.datetime.fromisoformat(last["ye.cs"]) == moment


async def test_an_account_keeps_the_address_it_was_given_and_refuses_a_header_injection(
    api: Api,
) -> None:
    """Low-stock mail goes to this address: stored as given (lower case), and one that could
    carry a second mail header is refused."""
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        await users_service.create_user(
            session=session,
            who=Subject(None, "test", (), SYSTEM_ORIGIN),
            username="tao.purchasing",
            password=PASSWORD,
            roles=["purchasing"],
            channels=[],
            email="Tao.Purchasing@Example.com",
        )
        await session.commit()
        stored = await session.scalar(select(User.email).where(User.username == "tao.purchasing"))
        with pytest.raises(BadInput):
            await users_service.create_user(
                session=session,
                who=Subject(None, "test", (), SYSTEM_ORIGIN),
                username="bad.mail",
                password=PASSWORD,
                roles=["purchasing"],
                channels=[],
                email="a@example.com\r\nBcc: x@evil.example",
            )

    assert stored == "tao.purchasing@example.com"
