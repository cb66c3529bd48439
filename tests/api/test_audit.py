"""Every sensitive act leaves an audit event with account, source IP and outcome."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from api.app import _reload_policy
from domain.access import POLICY_DIR
from domain.audit import service as audit_service
from tests.conftest import DEMO_PASSWORD, Api, _api_for, db_id, errors_of, settings_for

CLIENT_IP = "203.0.113.7"  # the test client's address (see conftest)
MOVE = """mutation($id: ID!, $to: OrderStatus!, $v: Int) {
  transitionOrder(id: $id, to: $to, expectedVersion: $v) { status } }"""
LOGIN = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }"


async def events(api: Api, **match: Any) -> list[dict[str, Any]]:
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:
        found = [e async for e in audit_service.iter_events(session)]
    for event in found:
        event["details"] = json.loads(event["details"])
    return [e for e in found if all(e[k] == v for k, v in match.items())]


async def _order_in(api: Api, status: str) -> dict[str, Any]:
    result = await api.gql(
        "query($s: [OrderStatus!]) { orders(first: 1, filter: {status: $s}) "
        "{ edges { node { id version } } } }",
        {"s": [status]},
        as_="ops",
    )
    return result["data"]["orders"]["edges"][0]["node"]


async def test_a_status_change_is_recorded_with_account_ip_and_before_after(api: Api) -> None:
    order = await _order_in(api, "PAID")

    await api.gql(
        MOVE, {"id": order["id"], "to": "PICKING"}, as_="warehouse", **{"user-agent": "scanner/2.1"}
    )

    [event] = await events(api, action="order.transition", target_id=str(db_id(order["id"])))
    assert event["username"] == "demo-warehouse"
    assert json.loads(event["roles"]) == ["warehouse"]
    assert event["client_ip"] == CLIENT_IP
    assert event["peer_ip"] == CLIENT_IP
    assert event["user_agent"] == "scanner/2.1"
    assert event["outcome"] == "success"
    assert event["operation"] == "transitionOrder"
    assert event["request_id"]
    assert event["details"]["before"] == {"status": "PAID", "version": order["version"]}
    assert event["details"]["after"] == {"status": "PICKING", "version": order["version"] + 1}


async def test_a_denied_mutation_is_recorded_as_denied_with_its_code(api: Api) -> None:
    order = await _order_in(api, "PAID")

    await api.gql(MOVE, {"id": order["id"], "to": "PICKING"}, as_="cs")

    [event] = await events(api, action="order.transition", target_id=str(db_id(order["id"])))
    assert (event["username"], event["outcome"], event["code"]) == (
        "demo-cs",
        "denied",
        "FORBIDDEN",
    )


async def test_a_rolled_back_change_leaves_its_failure_but_no_success(api: Api) -> None:
    order = await _order_in(api, "PAID")

    result = await api.gql(
        MOVE, {"id": order["id"], "to": "PICKING", "v": order["version"] + 5}, as_="ops"
    )

    recorded = await events(api, action="order.transition", target_id=str(db_id(order["id"])))
    assert errors_of(result) == [("CONFLICT", None)]
    assert [(e["outcome"], e["code"]) for e in recorded] == [("failure", "CONFLICT")]


async def test_an_invalid_transition_is_recorded_as_a_failure(api: Api) -> None:
    order = await _order_in(api, "COMPLETED")

    await api.gql(MOVE, {"id": order["id"], "to": "PAID"}, as_="ops")

    [event] = await events(api, action="order.transition", target_id=str(db_id(order["id"])))
    assert (event["outcome"], event["code"]) == ("failure", "INVALID_TRANSITION")


async def test_logins_record_success_failure_and_lockout(api: Api) -> None:
    await api.gql(LOGIN, {"u": "demo-finance", "p": DEMO_PASSWORD})
    await api.gql(LOGIN, {"u": "ghost", "p": "whatever-password"})
    for _ in range(5):
        await api.gql(LOGIN, {"u": "demo-approver", "p": "wrong-password"})

    ok = await events(api, action="auth.login", username="demo-finance")
    ghost = await events(api, action="auth.login", username="ghost")
    failures = await events(api, action="auth.login", username="demo-approver")
    lockout = await events(api, action="auth.lockout", username="demo-approver")

    assert [(e["outcome"], e["client_ip"]) for e in ok] == [("success", CLIENT_IP)]
    assert [(e["outcome"], e["details"]["reason"], e["actor_id"]) for e in ghost] == [
        ("failure", "unknown_user", None)
    ]
    assert [e["details"]["reason"] for e in failures] == ["bad_password"] * 5
    assert len(lockout) == 1
    assert lockout[0]["outcome"] == "denied"


async def test_an_anonymous_mutation_is_refused_and_recorded(api: Api) -> None:
    await api.gql('mutation { transitionOrder(id: "1", to: PAID) { id } }')

    [event] = await events(api, action="mutation.refused")
    assert (event["username"], event["outcome"], event["code"], event["operation"]) == (
        None,
        "denied",
        "UNAUTHENTICATED",
        "transitionOrder",
    )


async def test_a_bulk_read_of_phone_numbers_is_one_event_with_the_record_count(api: Api) -> None:
    await api.gql("{ customers(first: 40) { edges { node { name phone } } } }", as_="cs")

    [event] = await events(api, action="data.read", username="demo-cs")
    assert event["details"]["returned"] == {
        "Customer.name": {"records": 40, "access": "FULL"},
        "Customer.phone": {"records": 40, "access": "FULL"},
    }
    assert event["client_ip"] == CLIENT_IP


async def test_masked_reads_are_recorded_as_masked(api: Api) -> None:
    await api.gql("{ customers(first: 3) { edges { node { phone } } } }", as_="sales")

    [event] = await events(api, action="data.read", username="demo-sales")
    assert event["details"]["returned"] == {"Customer.phone": {"records": 3, "access": "MASKED"}}


async def test_denied_field_reads_are_recorded(api: Api) -> None:
    await api.gql("{ orders(first: 3) { edges { node { number grossMargin } } } }", as_="cs")

    [event] = await events(api, action="data.read", username="demo-cs")
    assert event["outcome"] == "denied"
    assert event["details"]["denied"] == ["Order.grossMargin"]


async def test_reads_without_personal_or_restricted_fields_are_not_recorded(api: Api) -> None:
    await api.gql("{ orders(first: 3) { edges { node { number status } } } }", as_="cs")

    assert await events(api, action="data.read") == []


async def test_compliance_reads_the_log_with_filters_and_the_read_is_recorded(api: Api) -> None:
    order = await _order_in(api, "PAID")
    await api.gql(MOVE, {"id": order["id"], "to": "PICKING"}, as_="warehouse")

    result = await api.gql(
        """query($f: AuditEventFilter) { auditEvents(filter: $f, first: 10) { totalCount
             edges { node { seq username clientIp action outcome targetId details hash } } } }""",
        {"f": {"actor": "demo-warehouse", "action": "order.transition", "ip": CLIENT_IP}},
        as_="compliance",
    )

    [edge] = result["data"]["auditEvents"]["edges"]
    assert edge["node"]["targetId"] == str(db_id(order["id"]))
    assert edge["node"]["details"]["after"]["status"] == "PICKING"
    assert len(await events(api, action="audit.read", username="demo-compliance")) == 1


@pytest.mark.parametrize("role", ["cs", "admin", "ops"])
async def test_only_compliance_reads_the_audit_log(api: Api, role: str) -> None:
    result = await api.gql("{ auditEvents { totalCount } }", as_=role)

    assert errors_of(result) == [("FORBIDDEN", None)]


async def test_audit_event_filters_reject_naive_times_and_unknown_outcomes(api: Api) -> None:
    naive = await api.gql(
        '{ auditEvents(filter: {from: "2026-01-01T00:00:00"}) { totalCount } }', as_="compliance"
    )
    outcome = await api.gql(
        '{ auditEvents(filter: {outcome: "maybe"}) { totalCount } }', as_="compliance"
    )

    assert errors_of(naive) == [("BAD_USER_INPUT", None)]
    assert errors_of(outcome) == [("BAD_USER_INPUT", None)]


async def test_a_spoofed_forwarded_for_header_changes_nothing(api: Api) -> None:
    await api.gql(LOGIN, {"u": "demo-ops", "p": DEMO_PASSWORD}, **{"x-forwarded-for": "8.8.8.8"})

    [event] = await events(api, action="auth.login", username="demo-ops")
    assert event["client_ip"] == CLIENT_IP


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    database_url: str, tmp_path: Path
) -> None:
    settings = settings_for(database_url, tmp_path, ORDERGATE_TRUSTED_PROXIES="203.0.113.0/24")
    async for api in _api_for(settings):
        await api.gql(
            LOGIN,
            {"u": "demo-ops", "p": DEMO_PASSWORD},
            **{"x-forwarded-for": "6.6.6.6, 198.51.100.23"},
        )

        [event] = await events(api, action="auth.login", username="demo-ops")
        assert event["client_ip"] == "198.51.100.23"
        assert event["peer_ip"] == CLIENT_IP


async def test_a_policy_reload_is_recorded(database_url: str, tmp_path: Path) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policy_dir)
    settings = settings_for(database_url, tmp_path, ORDERGATE_POLICY_DIR=str(policy_dir))
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        before = runtime.pdp.version
        with (policy_dir / "policy.csv").open("a") as fh:
            fh.write("p, warehouse, Order.total, read, allow\n")

        await _reload_policy(runtime, "test")

        [event] = await events(api, action="policy.reload")
        assert event["details"] == {"trigger": "test", "from": before, "to": runtime.pdp.version}


async def test_a_policy_that_fails_its_check_is_refused_and_recorded(
    database_url: str, tmp_path: Path
) -> None:
    policy_dir = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, policy_dir)
    settings = settings_for(database_url, tmp_path, ORDERGATE_POLICY_DIR=str(policy_dir))
    async for api in _api_for(settings):
        runtime = api.app.state.runtime
        before = runtime.pdp.version
        with (policy_dir / "policy.csv").open("a") as fh:
            fh.write("p, warehouse, Order.totl, read, allow\n")

        await _reload_policy(runtime, "test")

        [event] = await events(api, action="policy.reload")
        assert event["outcome"] == "failure"
        assert runtime.pdp.version == before


@pytest.mark.postgres
async def test_concurrent_writers_keep_one_gapless_verifiable_chain(pg_api: Api) -> None:
    ids = await pg_api.gql(
        "{ orders(first: 40, filter: {status: [PAID, PENDING_PAYMENT]}) "
        "{ edges { node { id } } } }",
        as_="ops",
    )
    await pg_api.token("warehouse")
    start = len(await events(pg_api))  # the demo's own acts (it loads through the services)
    moves = [
        pg_api.gql(MOVE, {"id": e["node"]["id"], "to": "CANCELLED"}, as_=role)
        for e in ids["data"]["orders"]["edges"]
        for role in ("ops", "warehouse")
    ]

    await asyncio.gather(*moves)
    runtime = pg_api.app.state.runtime
    async with runtime.sessions() as session:
        result = await audit_service.verify(session=session, key=runtime.checkpoint_key)
    recorded = await events(pg_api)

    assert result.ok, result.problems
    assert [e["seq"] for e in recorded] == list(range(1, len(recorded) + 1))
    transitions = [e for e in recorded[start:] if e["action"] == "order.transition"]
    assert len(transitions) == 80
    assert sum(e["outcome"] == "success" for e in transitions) == 40
