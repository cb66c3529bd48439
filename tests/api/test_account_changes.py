"""Privileged account changes need a second person (issue #30, M4): one administrator
completed a signed refund alone (granted itself cs, requested a refund, reset an approver's
password, logged in as the approver and signed), and granted itself finance to read margins."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from domain.approvals.models import SigningKey
from domain.users.models import AccountChange
from tests.api.test_approvals import APPROVE, REGISTER, Signer, refund_request, registered
from tests.api.test_audit import events
from tests.api.test_security_regressions import LOGIN_WITH, PASSWORD, _account
from tests.conftest import Api, errors_of
from tests.policy_matrix import OPERATIONS, ROLES

ME = "{ viewer { username roles } }"
SET_ROLES = """mutation($u: String!, $r: [String!]!) { setUserRoles(username: $u, roles: $r) {
  roles pendingChanges { id kind roles status requestedBy expiresAt } } }"""
RESET = """mutation($u: String!, $p: String!) { resetUserPassword(username: $u, password: $p) {
  username pendingChanges { id kind roles status requestedBy } } }"""
CONFIRM = """mutation($id: ID!) { confirmAccountChange(id: $id) {
  id status decidedBy username kind } }"""
CANCEL = "mutation($id: ID!) { cancelAccountChange(id: $id) { id status decidedBy } }"
CHANGES = """query($s: AccountChangeStatus) { accountChanges(status: $s) {
  id username kind status } }"""
CONFIRM_KEY = "mutation($id: ID!) { confirmSigningKey(id: $id) { id awaitingConfirmation } }"
NEW_PASSWORD = "a-password-the-resetter-chose"


async def _second_admin(api: Api, username: str = "ma.admin", employee: str = "E9002") -> str:
    return await _account(api, username, ["admin"], employee)


async def test_an_administrator_may_not_change_their_own_roles(api: Api) -> None:
    finance = await api.gql(SET_ROLES, {"u": "demo-admin", "r": ["admin", "finance"]}, as_="admin")
    cs = await api.gql(SET_ROLES, {"u": "demo-admin", "r": ["admin", "cs"]}, as_="admin")
    me = await api.gql(ME, as_="admin")

    assert errors_of(finance) == [("FORBIDDEN", None)]
    assert errors_of(cs) == [("FORBIDDEN", None)]
    assert me["data"]["viewer"]["roles"] == ["admin"]
    # Each refusal is on record, as a refusal.
    refused = await events(api, action="user.set_roles")
    assert [(e["outcome"], e["code"]) for e in refused] == [("denied", "FORBIDDEN")] * 2


async def test_granting_a_privileged_role_waits_for_another_person_to_confirm(api: Api) -> None:
    await _account(api, "he.cs", ["cs"], "E3001")
    second = await _second_admin(api)
    # An account without an employee id is its own person (documented): it may confirm, but
    # only what is still waiting.
    another_account = await _account(api, "demo.admin2", ["admin"], None)
    asked = await api.gql(SET_ROLES, {"u": "he.cs", "r": ["approver", "cs"]}, as_="admin")
    change = asked["data"]["setUserRoles"]["pendingChanges"][0]
    self_confirmed = await api.gql(CONFIRM, {"id": change["id"]}, as_="admin")
    login = await api.gql(LOGIN_WITH, {"u": "he.cs", "p": PASSWORD})
    first_token = login["data"]["login"]["accessToken"]
    before = await api.gql(ME, authorization=f"Bearer {first_token}")

    confirmed = await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {second}")
    again = await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {another_account}")
    login = await api.gql(LOGIN_WITH, {"u": "he.cs", "p": PASSWORD})
    new_token = login["data"]["login"]["accessToken"]
    after = await api.gql(ME, authorization=f"Bearer {new_token}")

    assert asked["data"]["setUserRoles"]["roles"] == ["cs"]  # nothing applied yet
    assert change["kind"] == "ROLES"
    assert change["roles"] == ["approver", "cs"]
    assert change["status"] == "PENDING"
    assert change["requestedBy"] == "demo-admin"
    assert errors_of(self_confirmed) == [("SEPARATION_OF_DUTIES", None)]
    assert before["data"]["viewer"]["roles"] == ["cs"]
    assert confirmed["data"]["confirmAccountChange"]["status"] == "APPLIED"
    assert confirmed["data"]["confirmAccountChange"]["decidedBy"] == "ma.admin"
    assert errors_of(again) == [("CONFLICT", None)]
    assert after["data"]["viewer"]["roles"] == ["approver", "cs"]
    actions = [
        (e["action"], e["outcome"], e["code"])
        for e in await events(api)
        if e["action"].startswith(("user.change", "user.set_roles"))
    ]
    assert actions == [
        ("user.change_requested", "success", None),
        ("user.change_confirmed", "denied", "SEPARATION_OF_DUTIES"),
        ("user.set_roles", "success", None),
        ("user.change_confirmed", "success", None),
        ("user.change_confirmed", "failure", "CONFLICT"),
    ]


async def test_one_person_with_two_admin_accounts_is_still_one_person(api: Api) -> None:
    first = await _account(api, "lu.admin", ["admin"], "E7007")
    second = await _account(api, "lu.admin2", ["admin"], "E7007")
    await _account(api, "gao.ops", ["ops"], None)
    asked = await api.gql(
        SET_ROLES, {"u": "gao.ops", "r": ["compliance", "ops"]}, authorization=f"Bearer {first}"
    )
    change = asked["data"]["setUserRoles"]["pendingChanges"][0]

    refused = await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {second}")

    assert errors_of(refused) == [("SEPARATION_OF_DUTIES", None)]


async def test_taking_a_privileged_role_away_or_changing_a_privileged_account_waits_too(
    api: Api,
) -> None:
    await _account(api, "qin.approver", ["approver"], "E4004")
    await _account(api, "xu.ops", ["ops"], None)
    lost = await api.gql(SET_ROLES, {"u": "qin.approver", "r": ["cs"]}, as_="admin")
    widened = await api.gql(
        SET_ROLES, {"u": "qin.approver", "r": ["approver", "finance"]}, as_="admin"
    )
    plain = await api.gql(SET_ROLES, {"u": "xu.ops", "r": ["warehouse"]}, as_="admin")

    assert lost["data"]["setUserRoles"]["roles"] == ["approver"]
    assert lost["data"]["setUserRoles"]["pendingChanges"][0]["roles"] == ["cs"]
    # One waiting role change per account: the second is refused until the first is decided.
    assert errors_of(widened) == [("CONFLICT", None)]
    assert plain["data"]["setUserRoles"] == {"roles": ["warehouse"], "pendingChanges": []}


async def test_another_accounts_password_waits_and_is_never_kept_as_given(api: Api) -> None:
    token = await _account(api, "feng.cs", ["cs"], None)
    second = await _second_admin(api)
    asked = await api.gql(RESET, {"u": "feng.cs", "p": NEW_PASSWORD}, as_="admin")
    change = asked["data"]["resetUserPassword"]["pendingChanges"][0]
    still_in = await api.gql(ME, authorization=f"Bearer {token}")
    async with api.app.state.runtime.sessions() as session:
        kept = await session.get(AccountChange, int(change["id"]))
        assert kept is not None
        waiting_hash = kept.password_hash

    confirmed = await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {second}")
    old_session = await api.gql(ME, authorization=f"Bearer {token}")
    old_password = await api.gql(LOGIN_WITH, {"u": "feng.cs", "p": PASSWORD})
    new_password = await api.gql(LOGIN_WITH, {"u": "feng.cs", "p": NEW_PASSWORD})
    async with api.app.state.runtime.sessions() as session:
        applied = await session.get(AccountChange, int(change["id"]))
        assert applied is not None

    assert change["kind"] == "PASSWORD"
    assert change["roles"] is None
    assert still_in["data"]["viewer"]["username"] == "feng.cs"
    assert waiting_hash is not None
    assert NEW_PASSWORD not in waiting_hash
    assert waiting_hash.startswith("$argon2")
    assert confirmed["data"]["confirmAccountChange"]["status"] == "APPLIED"
    assert applied.password_hash is None  # once applied, only the account holds it
    assert errors_of(old_session) == [("UNAUTHENTICATED", None)]
    assert errors_of(old_password) == [("UNAUTHENTICATED", None)]
    assert new_password["data"]["login"]["accessToken"]


async def test_an_administrators_own_password_changes_at_once(api: Api) -> None:
    changed = await api.gql(RESET, {"u": "demo-admin", "p": NEW_PASSWORD}, as_="admin")
    login = await api.gql(LOGIN_WITH, {"u": "demo-admin", "p": NEW_PASSWORD})

    assert changed["data"]["resetUserPassword"]["pendingChanges"] == []
    assert login["data"]["login"]["accessToken"]


async def test_a_waiting_change_can_be_cancelled_and_lapses_after_24_hours(api: Api) -> None:
    await _account(api, "yan.cs", ["cs"], None)
    await _account(api, "shi.cs", ["cs"], None)
    second = await _second_admin(api)
    runtime = api.app.state.runtime
    first = await api.gql(RESET, {"u": "yan.cs", "p": NEW_PASSWORD}, as_="admin")
    first_id = first["data"]["resetUserPassword"]["pendingChanges"][0]["id"]
    cancelled = await api.gql(CANCEL, {"id": first_id}, as_="admin")
    too_late = await api.gql(CONFIRM, {"id": first_id}, authorization=f"Bearer {second}")

    asked_at = runtime.clock()
    later = await api.gql(RESET, {"u": "shi.cs", "p": NEW_PASSWORD}, as_="admin")
    later_id = later["data"]["resetUserPassword"]["pendingChanges"][0]["id"]
    clock = runtime.clock
    try:
        runtime.clock = lambda: asked_at + dt.timedelta(hours=24, seconds=1)
        lapsed = await api.gql(CONFIRM, {"id": later_id}, authorization=f"Bearer {second}")
        expired = await api.gql(CHANGES, {"s": "EXPIRED"}, authorization=f"Bearer {second}")
        pending = await api.gql(CHANGES, {}, authorization=f"Bearer {second}")
    finally:
        runtime.clock = clock
    login = await api.gql(LOGIN_WITH, {"u": "shi.cs", "p": NEW_PASSWORD})

    assert cancelled["data"]["cancelAccountChange"]["status"] == "CANCELLED"
    assert errors_of(too_late) == [("CONFLICT", None)]
    assert errors_of(lapsed) == [("CONFLICT", None)]
    assert [c["id"] for c in expired["data"]["accountChanges"]] == [later_id]
    assert pending["data"]["accountChanges"] == []
    assert errors_of(login) == [("UNAUTHENTICATED", None)]


async def test_one_admin_can_no_longer_sign_a_refund_alone(api: Api) -> None:
    """The attack of the issue, step by step. The approver's own key, registered before,
    keeps working throughout; the key the resetter registers signs nothing until an
    administrator who is neither the resetter nor the approver vouches for it."""
    approver_token = await _account(api, "song.approver", ["approver"], "E5005")
    own_key = await registered_with(api, approver_token)
    second = await _second_admin(api)
    third = await _second_admin(api, "wei.admin", "E9003")

    # 1. The admin cannot give itself cs; the refund is requested by a real cs.
    grant = await api.gql(SET_ROLES, {"u": "demo-admin", "r": ["admin", "cs"]}, as_="admin")
    _, request = await refund_request(api)
    # 2. The approver's password reset waits for a second administrator, who confirms it.
    asked = await api.gql(RESET, {"u": "song.approver", "p": NEW_PASSWORD}, as_="admin")
    change = asked["data"]["resetUserPassword"]["pendingChanges"][0]
    await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {second}")
    # 3. The resetter logs in as the approver, registers a key and signs: refused.
    login = await api.gql(LOGIN_WITH, {"u": "song.approver", "p": NEW_PASSWORD})
    as_approver = login["data"]["login"]["accessToken"]
    signer = Signer()
    made = await api.gql(REGISTER, {"pem": signer.pem}, authorization=f"Bearer {as_approver}")
    signer.kid = made["data"]["registerSigningKey"]["id"]
    listed = await api.gql(
        "{ signingKeys { id awaitingConfirmation } }", authorization=f"Bearer {as_approver}"
    )
    signed = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        authorization=f"Bearer {as_approver}",
    )
    # 4. Neither the resetter nor the approver may vouch for that key; a third person may.
    by_resetter = await api.gql(CONFIRM_KEY, {"id": signer.kid}, as_="admin")
    by_nobody = await api.gql(CONFIRM_KEY, {"id": signer.kid}, as_="cs")
    vouched = await api.gql(CONFIRM_KEY, {"id": signer.kid}, authorization=f"Bearer {third}")
    signed_after = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        authorization=f"Bearer {as_approver}",
    )

    assert errors_of(grant) == [("FORBIDDEN", None)]
    assert made["data"]["registerSigningKey"]["id"]
    assert {k["id"]: k["awaitingConfirmation"] for k in listed["data"]["signingKeys"]} == {
        own_key.kid: False,
        signer.kid: True,
    }
    assert errors_of(signed) == [("SIGNATURE_INVALID", None)]
    assert errors_of(by_resetter) == [("SEPARATION_OF_DUTIES", None)]
    assert errors_of(by_nobody) == [("FORBIDDEN", None)]
    assert vouched["data"]["confirmSigningKey"] == {"id": signer.kid, "awaitingConfirmation": False}
    assert signed_after["data"]["approveRequest"]["status"] == "APPROVED"
    recorded = await events(api, action="key.register")
    assert recorded[-1]["details"]["awaitingConfirmation"] is True
    async with api.app.state.runtime.sessions() as session:
        keys = (await session.scalars(select(SigningKey).order_by(SigningKey.id))).all()
    assert [k.awaiting_confirmation for k in keys][-2:] == [False, False]


async def registered_with(api: Api, token: str) -> Signer:
    signer = Signer()
    result = await api.gql(REGISTER, {"pem": signer.pem}, authorization=f"Bearer {token}")
    signer.kid = result["data"]["registerSigningKey"]["id"]
    return signer


async def test_the_approvers_own_older_key_still_signs_after_a_reset(api: Api) -> None:
    token = await _account(api, "tang.approver", ["approver"], "E6006")
    own = await registered_with(api, token)
    second = await _second_admin(api)
    asked = await api.gql(RESET, {"u": "tang.approver", "p": NEW_PASSWORD}, as_="admin")
    change = asked["data"]["resetUserPassword"]["pendingChanges"][0]
    await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {second}")
    _, request = await refund_request(api)
    login = await api.gql(LOGIN_WITH, {"u": "tang.approver", "p": NEW_PASSWORD})
    as_approver = login["data"]["login"]["accessToken"]

    signed = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": own.sign(request["signingPayload"])},
        authorization=f"Bearer {as_approver}",
    )

    assert signed["data"]["approveRequest"]["status"] == "APPROVED"


async def test_keys_of_an_account_nobody_else_set_the_password_of_sign_at_once(api: Api) -> None:
    signer = await registered(api)  # the demo approver, password set by the operator
    _, request = await refund_request(api)

    signed = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )

    assert signed["data"]["approveRequest"]["status"] == "APPROVED"


@pytest.mark.parametrize("role", [r for r in ROLES if r not in OPERATIONS["user:admin"]])
async def test_only_administrators_see_and_decide_account_changes(api: Api, role: str) -> None:
    listed = await api.gql(CHANGES, {}, as_=role)
    confirmed = await api.gql(CONFIRM, {"id": "1"}, as_=role)
    cancelled = await api.gql(CANCEL, {"id": "1"}, as_=role)
    vouched = await api.gql(CONFIRM_KEY, {"id": "1"}, as_=role)

    assert errors_of(listed) == [("FORBIDDEN", None)]
    assert errors_of(confirmed) == [("FORBIDDEN", None)]
    assert errors_of(cancelled) == [("FORBIDDEN", None)]
    assert errors_of(vouched) == [("FORBIDDEN", None)]


async def test_a_second_account_of_ones_own_person_is_still_oneself(api: Api) -> None:
    admin = await _account(api, "lu.admin", ["admin"], "E7008")
    await _account(api, "lu.ops", ["ops"], "E7008")

    grant = await api.gql(
        SET_ROLES, {"u": "lu.ops", "r": ["finance", "ops"]}, authorization=f"Bearer {admin}"
    )

    assert errors_of(grant) == [("FORBIDDEN", None)]


async def test_an_account_whose_password_another_set_cannot_be_that_persons_second_person(
    api: Api,
) -> None:
    """Found by a review: after one confirmed reset of an admin+approver's password, the
    resetter, logged in as that account, confirmed its own next request and vouched for
    itself. The account now counts as the resetter too, and setting its password again
    does not clear that."""
    await _account(api, "zhao.boss", ["admin", "approver"], "E8008")
    await _account(api, "he.cs", ["cs"], "E3001")
    second = await _second_admin(api)
    asked = await api.gql(RESET, {"u": "zhao.boss", "p": NEW_PASSWORD}, as_="admin")
    reset = asked["data"]["resetUserPassword"]["pendingChanges"][0]
    await api.gql(CONFIRM, {"id": reset["id"]}, authorization=f"Bearer {second}")
    login = await api.gql(LOGIN_WITH, {"u": "zhao.boss", "p": NEW_PASSWORD})
    as_boss = login["data"]["login"]["accessToken"]

    grant = await api.gql(SET_ROLES, {"u": "he.cs", "r": ["approver", "cs"]}, as_="admin")
    change = grant["data"]["setUserRoles"]["pendingChanges"][0]
    confirmed = await api.gql(CONFIRM, {"id": change["id"]}, authorization=f"Bearer {as_boss}")
    again = await api.gql(
        RESET, {"u": "zhao.boss", "p": "yet-another-password"}, authorization=f"Bearer {as_boss}"
    )
    login = await api.gql(LOGIN_WITH, {"u": "zhao.boss", "p": "yet-another-password"})
    as_boss = login["data"]["login"]["accessToken"]
    signer = Signer()
    made = await api.gql(REGISTER, {"pem": signer.pem}, authorization=f"Bearer {as_boss}")
    key = made["data"]["registerSigningKey"]["id"]
    listed = await api.gql(
        "{ signingKeys { id awaitingConfirmation } }", authorization=f"Bearer {as_boss}"
    )
    vouched = await api.gql(CONFIRM_KEY, {"id": key}, authorization=f"Bearer {as_boss}")

    assert errors_of(confirmed) == [("SEPARATION_OF_DUTIES", None)]
    assert again["data"]["resetUserPassword"]["pendingChanges"] == []  # one's own: at once
    assert {k["id"]: k["awaitingConfirmation"] for k in listed["data"]["signingKeys"]}[key]
    assert errors_of(vouched) == [("SEPARATION_OF_DUTIES", None)]


async def test_a_change_is_not_applied_once_the_account_or_the_requester_has_changed(
    api: Api,
) -> None:
    await _account(api, "pan.cs", ["cs"], None)
    await _account(api, "fu.cs", ["cs"], None)
    requester = await _account(api, "old.admin", ["admin"], "E9100")
    second = await _second_admin(api)
    first = await api.gql(RESET, {"u": "pan.cs", "p": NEW_PASSWORD}, as_="admin")
    first_id = first["data"]["resetUserPassword"]["pendingChanges"][0]["id"]
    await api.gql('mutation { disableUser(username: "pan.cs") { disabled } }', as_="admin")
    await api.gql('mutation { enableUser(username: "pan.cs") { disabled } }', as_="admin")
    stale = await api.gql(CONFIRM, {"id": first_id}, authorization=f"Bearer {second}")

    other = await api.gql(
        RESET, {"u": "fu.cs", "p": NEW_PASSWORD}, authorization=f"Bearer {requester}"
    )
    other_id = other["data"]["resetUserPassword"]["pendingChanges"][0]["id"]
    await api.gql('mutation { disableUser(username: "old.admin") { disabled } }', as_="admin")
    gone = await api.gql(CONFIRM, {"id": other_id}, authorization=f"Bearer {second}")
    login = await api.gql(LOGIN_WITH, {"u": "fu.cs", "p": NEW_PASSWORD})

    assert errors_of(stale) == [("CONFLICT", None)]
    assert errors_of(gone) == [("CONFLICT", None)]
    assert errors_of(login) == [("UNAUTHENTICATED", None)]
