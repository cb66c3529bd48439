"""The webhook operations over GraphQL: who may call them, what bad input gets, and the
delivery log with redelivery."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from domain.db import utcnow
from domain.events import webhooks
from tests.conftest import Api, errors_of
from tests.integration.test_webhooks import fan_out_everything

REGISTER = """mutation($input: WebhookInput!) {
  registerWebhook(input: $input) { id url events createdAt disabledAt } }"""
GOOD = {"url": "http://127.0.0.1:9/hook", "events": ["ORDER_STATUS_CHANGED"], "secret": "x" * 20}
MOVE = "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status } }"
DELIVERIES = """query($s: WebhookDeliveryStatus) { webhookDeliveries(status: $s, first: 10) {
  totalCount edges { node { id eventId seq status attempts lastError } } } }"""


async def test_integration_registers_lists_and_disables_a_webhook(api: Api) -> None:
    created = await api.gql(REGISTER, {"input": GOOD}, as_="integration")
    hook = created["data"]["registerWebhook"]
    listed = await api.gql("{ webhooks { id url events disabledAt } }", as_="admin")
    disabled = await api.gql(
        "mutation($id: ID!) { disableWebhook(id: $id) { disabledAt } }",
        {"id": hook["id"]},
        as_="admin",
    )

    assert hook["url"] == GOOD["url"]
    assert hook["events"] == ["ORDER_STATUS_CHANGED"]
    assert hook["disabledAt"] is None
    assert listed["data"]["webhooks"] == [
        {
            "id": hook["id"],
            "url": GOOD["url"],
            "events": ["ORDER_STATUS_CHANGED"],
            "disabledAt": None,
        }
    ]
    assert disabled["data"]["disableWebhook"]["disabledAt"] is not None


@pytest.mark.parametrize("role", ["cs", "sales", "warehouse", "finance", "ops", "compliance"])
async def test_other_roles_may_not_touch_webhooks(api: Api, role: str) -> None:
    refused = await api.gql(REGISTER, {"input": GOOD}, as_=role)
    listing = await api.gql("{ webhooks { id } }", as_=role)
    after = await api.gql("{ webhooks { id } }", as_="admin")

    assert errors_of(refused) == [("FORBIDDEN", None)]
    assert errors_of(listing) == [("FORBIDDEN", None)]
    assert after["data"]["webhooks"] == []


@pytest.mark.parametrize(
    "change",
    [
        {"url": "ftp://example.com/hook"},
        {"url": "http://127.0.0.1:9/ho\x00ok"},
        {"url": "not a url"},
        {"url": "x" * 3000},
        {"events": []},
        {"secret": "short"},
        {"secret": "x" * 300},
    ],
)
async def test_bad_webhooks_are_bad_user_input_and_change_nothing(api: Api, change: dict) -> None:
    result = await api.gql(REGISTER, {"input": {**GOOD, **change}}, as_="integration")
    after = await api.gql("{ webhooks { id } }", as_="admin")

    assert errors_of(result) == [("BAD_USER_INPUT", None)]
    assert after["data"]["webhooks"] == []


async def test_a_failed_delivery_is_listed_and_sent_again_on_request(api: Api) -> None:
    await api.gql(REGISTER, {"input": GOOD}, as_="integration")  # port 9: nobody answers
    order = (
        await api.gql(
            "{ orders(first: 1, filter: {status: [PAID]}) { edges { node { id } } } }", as_="ops"
        )
    )["data"]["orders"]["edges"][0]["node"]
    await api.gql(MOVE, {"id": order["id"]}, as_="ops")
    runtime = api.app.state.runtime
    later = utcnow() + dt.timedelta(hours=25)
    await fan_out_everything(runtime)
    async with httpx.AsyncClient() as http:
        await webhooks.deliver_due(
            sessions=runtime.sessions, http=http, sealer=runtime.sealer, now=later
        )

    failed = await api.gql(DELIVERIES, {"s": "FAILED"}, as_="integration")
    [edge] = failed["data"]["webhookDeliveries"]["edges"]
    again = await api.gql(
        "mutation($id: ID!) { redeliverWebhook(id: $id) { status attempts } }",
        {"id": edge["node"]["id"]},
        as_="integration",
    )
    twice = await api.gql(
        "mutation($id: ID!) { redeliverWebhook(id: $id) { status } }",
        {"id": edge["node"]["id"]},
        as_="integration",
    )

    assert edge["node"]["attempts"] == 1
    assert edge["node"]["lastError"]
    assert again["data"]["redeliverWebhook"] == {"status": "PENDING", "attempts": 0}
    assert errors_of(twice) == [("NOT_FOUND", None)]  # already pending
