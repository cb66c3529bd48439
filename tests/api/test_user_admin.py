"""Account administration (`user:admin`): every change audited, and a change that narrows an
account takes effect on its next request, not when its token expires."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.api.test_audit import events
from tests.api.test_security_regressions import LOGIN_WITH, _account
from tests.conftest import Api, errors_of
from tests.integration.test_cli import _run

ME = "{ viewer { username roles } }"


async def test_only_administrators_list_accounts(api: Api) -> None:
    listed = await api.gql(
        "{ users(first: 100) { totalCount edges { node { username } } } }", as_="admin"
    )
    refused = await api.gql("{ users { totalCount } }", as_="cs")

    names = {e["node"]["username"] for e in listed["data"]["users"]["edges"]}
    assert {"demo-cs", "demo-admin"} <= names
    assert errors_of(refused) == [("FORBIDDEN", None)]


@pytest.mark.parametrize(
    "mutation",
    [
        'mutation { disableUser(username: "demo-cs") { disabled } }',
        'mutation { setUserRoles(username: "demo-cs", roles: ["admin"]) { roles } }',
        'mutation { resetUserPassword(username: "demo-cs", password: "new-password-123") '
        "{ username } }",
    ],
)
async def test_others_may_not_administer_accounts(api: Api, mutation: str) -> None:
    result = await api.gql(mutation, as_="ops")

    assert errors_of(result) == [("FORBIDDEN", None)]


async def test_disabling_ends_the_accounts_sessions_at_once_and_enabling_restores_login(
    api: Api,
) -> None:
    token = await _account(api, "wu.cs", ["cs"], None)
    before = await api.gql(ME, authorization=f"Bearer {token}")

    disabled = await api.gql(
        'mutation { disableUser(username: "wu.cs") { disabled } }', as_="admin"
    )
    after = await api.gql(ME, authorization=f"Bearer {token}")
    enabled = await api.gql('mutation { enableUser(username: "wu.cs") { disabled } }', as_="admin")
    again = await api.gql(LOGIN_WITH, {"u": "wu.cs", "p": "another-long-password"})

    assert before["data"]["viewer"]["username"] == "wu.cs"
    assert disabled["data"]["disableUser"]["disabled"] is True
    assert errors_of(after) == [("UNAUTHENTICATED", None)]
    assert enabled["data"]["enableUser"]["disabled"] is False
    assert again["data"]["login"]["accessToken"]
    recorded = [e["action"] for e in await events(api) if e["action"].startswith("user.")]
    assert recorded[-2:] == ["user.disable", "user.enable"]


async def test_a_role_change_ends_old_sessions_and_is_audited_before_and_after(
    api: Api,
) -> None:
    token = await _account(api, "zheng.ops", ["ops"], None)

    changed = await api.gql(
        'mutation { setUserRoles(username: "zheng.ops", roles: ["warehouse"]) { roles } }',
        as_="admin",
    )
    old = await api.gql(ME, authorization=f"Bearer {token}")
    [event] = await events(api, action="user.set_roles")

    assert changed["data"]["setUserRoles"]["roles"] == ["warehouse"]
    assert errors_of(old) == [("UNAUTHENTICATED", None)]
    assert event["details"]["before"] == ["ops"]
    assert event["details"]["after"] == ["warehouse"]


async def test_unknown_roles_and_accounts_are_refused(api: Api) -> None:
    bad_role = await api.gql(
        'mutation { setUserRoles(username: "demo-cs", roles: ["root"]) { roles } }', as_="admin"
    )
    nobody = await api.gql('mutation { disableUser(username: "nobody") { disabled } }', as_="admin")

    assert errors_of(bad_role) == [("BAD_USER_INPUT", None)]
    assert errors_of(nobody) == [("NOT_FOUND", None)]


async def test_a_password_reset_ends_sessions_and_replaces_the_password(api: Api) -> None:
    token = await _account(api, "feng.cs", ["cs"], None)
    second = await _account(api, "ma.admin", ["admin"], "E9002")

    # Another account's password waits for a second administrator (issue #30, M4; the whole
    # rule is in tests/api/test_account_changes.py).
    asked = await api.gql(
        'mutation { resetUserPassword(username: "feng.cs", password: "brand-new-password") '
        "{ pendingChanges { id } } }",
        as_="admin",
    )
    [change] = asked["data"]["resetUserPassword"]["pendingChanges"]
    await api.gql(
        "mutation($id: ID!) { confirmAccountChange(id: $id) { status } }",
        {"id": change["id"]},
        authorization=f"Bearer {second}",
    )
    old_session = await api.gql(ME, authorization=f"Bearer {token}")
    old_password = await api.gql(LOGIN_WITH, {"u": "feng.cs", "p": "another-long-password"})
    new_password = await api.gql(LOGIN_WITH, {"u": "feng.cs", "p": "brand-new-password"})

    assert errors_of(old_session) == [("UNAUTHENTICATED", None)]
    assert errors_of(old_password) == [("UNAUTHENTICATED", None)]
    assert new_password["data"]["login"]["accessToken"]


async def test_an_administrator_unlocks_a_locked_account(api: Api) -> None:
    await _account(api, "chen.cs", ["cs"], None)
    for _ in range(5):
        await api.gql(LOGIN_WITH, {"u": "chen.cs", "p": "not-the-password"})
    locked = await api.gql(LOGIN_WITH, {"u": "chen.cs", "p": "another-long-password"})

    await api.gql('mutation { unlockUser(username: "chen.cs") { lockedUntil } }', as_="admin")
    unlocked = await api.gql(LOGIN_WITH, {"u": "chen.cs", "p": "another-long-password"})

    assert errors_of(locked) == [("UNAUTHENTICATED", None)]
    assert unlocked["data"]["login"]["accessToken"]


async def test_the_cli_lists_and_disables_accounts(
    api: Api, database_url: str, tmp_path: Path
) -> None:
    token = await _account(api, "he.cs", ["cs"], None)

    listed = await asyncio.to_thread(_run, ["users", "list"], database_url, tmp_path)
    disabled = await asyncio.to_thread(
        _run, ["users", "disable", "--username", "he.cs"], database_url, tmp_path
    )
    after = await api.gql(ME, authorization=f"Bearer {token}")
    [event] = await events(api, action="user.disable")

    assert listed.returncode == 0, listed.stderr
    [line] = [x for x in listed.stdout.splitlines() if x.startswith("he.cs ")]
    assert "active" in line
    assert disabled.returncode == 0, disabled.stderr
    assert errors_of(after) == [("UNAUTHENTICATED", None)]
    assert event["operation"] == "users disable"
