"""`ingestOrders` through the real app: each order lands once, on its business day, with its
customer and (when paid) its picking list; replays write nothing; one bad order does not stop
the batch."""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from sqlalchemy import func, select

from domain.audit.models import AuditEvent
from domain.events.models import OutboxEvent
from domain.orders.models import Order
from domain.orders.picking import PickingList
from tests.conftest import Api, db_id, errors_of

INGEST = """mutation($c: Channel!, $o: [ChannelOrderInput!]!) {
  ingestOrders(channel: $c, orders: $o) {
    results { externalId outcome code message order { id number status externalId } } } }"""


def channel_order(external_id: str, **changes: object) -> dict:
    order = {
        "externalId": external_id,
        "status": "PAID",
        "createdAt": "2026-11-25T16:30:00Z",  # 00:30 on the 26th in Asia/Shanghai
        "paidAt": "2026-11-25T16:31:00Z",
        "currency": "CNY",
        "buyer": {"name": "王小明", "phone": "+86 138 0013 8000", "email": "Wang@Example.com"},
        "shippingAddress": {
            "recipient": "王小明",
            "phone": "13800138000",
            "province": "上海市",
            "city": "上海市",
            "district": "浦东新区",
            "street": "世纪大道 100 号",
            "postalCode": "200120",
        },
        "lines": [
            {"sku": "SKU-0001", "quantity": 2, "unitPrice": "59.90"},
            {"sku": "SKU-0002", "quantity": 1, "unitPrice": "120.00"},
        ],
        "shippingFee": "8.00",
        "discount": "5.00",
        "paymentMethod": "ALIPAY",
        "paymentTransactionId": "AL2026112500001",
    }
    order.update(changes)
    return order


async def ingest(api: Api, orders: list[dict], channel: str = "TAOBAO") -> list[dict]:
    result = await api.gql(INGEST, {"c": channel, "o": orders}, as_="integration")
    assert "errors" not in result, result
    return result["data"]["ingestOrders"]["results"]


async def _count(api: Api, model: type, *where: object) -> int:
    async with api.app.state.runtime.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_a_new_paid_order_is_created_with_its_day_customer_and_picking_list(
    any_api: Api,
) -> None:
    api = any_api
    [result] = await ingest(api, [channel_order("TB-1001")])

    assert result["outcome"] == "CREATED"
    assert result["code"] is None
    order_id = db_id(result["order"]["id"])
    async with api.app.state.runtime.sessions() as session:
        order = await session.get(Order, order_id)
        picking = await session.scalar(select(PickingList).where(PickingList.order_id == order_id))
        types = (
            await session.scalars(
                select(OutboxEvent.type)
                .where(OutboxEvent.aggregate_id == str(order_id))
                .order_by(OutboxEvent.seq)
            )
        ).all()
    assert order.status == "PAID"
    assert str(order.business_day) == "2026-11-26"  # Beijing's day, not UTC's 25th
    assert order.total_minor == 2 * 5990 + 12000 + 800 - 500
    assert order.paid_minor == order.total_minor
    assert order.customer_phone == "13800138000"
    assert order.customer_id is not None
    assert picking is not None
    assert picking.status == "OPEN"
    assert list(types) == ["ORDER_CREATED", "ORDER_STATUS_CHANGED", "PICKING_LIST_CREATED"]


async def test_the_same_order_again_is_replayed_and_writes_nothing(any_api: Api) -> None:
    api = any_api
    [first] = await ingest(api, [channel_order("TB-2001")])
    events = await _count(api, OutboxEvent)
    orders = await _count(api, Order)

    [again] = await ingest(api, [channel_order("TB-2001")])

    assert again["outcome"] == "REPLAYED"
    assert again["order"] == first["order"]
    assert await _count(api, OutboxEvent) == events
    assert await _count(api, Order) == orders
    assert await _count(api, PickingList, PickingList.order_id == db_id(first["order"]["id"])) == 1


async def test_a_later_channel_status_moves_the_order_on(any_api: Api) -> None:
    api = any_api
    [created] = await ingest(api, [channel_order("TB-3001", status="PENDING_PAYMENT", paidAt=None)])
    [paid] = await ingest(api, [channel_order("TB-3001", status="PAID")])
    [shipped] = await ingest(
        api,
        [channel_order("TB-3001", status="SHIPPED", carrier="SF", trackingNumber="SF1234567890")],
    )
    [cancelled] = await ingest(api, [channel_order("TB-3001", status="CANCELLED")])

    assert created["order"]["status"] == "PENDING_PAYMENT"
    assert (paid["outcome"], paid["order"]["status"]) == ("UPDATED", "PAID")
    assert (shipped["outcome"], shipped["order"]["status"]) == ("UPDATED", "SHIPPED")
    assert (cancelled["outcome"], cancelled["code"]) == ("REJECTED", "INVALID_TRANSITION")
    order_id = db_id(created["order"]["id"])
    async with api.app.state.runtime.sessions() as session:
        order = await session.get(Order, order_id)
    assert (order.carrier, order.tracking_number) == ("SF", "SF1234567890")
    assert await _count(api, PickingList, PickingList.order_id == order_id) == 1


async def test_other_content_under_the_same_key_is_a_conflict(api: Api) -> None:
    await ingest(api, [channel_order("TB-4001")])
    changed = channel_order("TB-4001")
    changed["lines"][0]["quantity"] = 3

    [result] = await ingest(api, [changed])

    assert (result["outcome"], result["code"], result["order"]) == ("REJECTED", "CONFLICT", None)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"lines": [{"sku": "NO-SUCH-SKU", "quantity": 1, "unitPrice": "1.00"}]}, "NOT_FOUND"),
        ({"createdAt": "2026-11-25T16:30:00"}, "BAD_USER_INPUT"),  # naive
        ({"lines": [{"sku": "SKU-0001", "quantity": -1, "unitPrice": "1.00"}]}, "BAD_USER_INPUT"),
        (
            {"lines": [{"sku": "SKU-0001", "quantity": 10**6, "unitPrice": "1.00"}]},
            "BAD_USER_INPUT",
        ),
        ({"lines": []}, "BAD_USER_INPUT"),
        ({"currency": "USD"}, "BAD_USER_INPUT"),
        ({"discount": "999999.00"}, "BAD_USER_INPUT"),
        ({"externalId": "  "}, "BAD_USER_INPUT"),
        ({"status": "SHIPPED"}, "BAD_USER_INPUT"),  # without carrier and tracking
        ({"status": "PICKING"}, "BAD_USER_INPUT"),  # ours, not a channel's
        ({"createdAt": "2099-01-01T00:00:00Z"}, "BAD_USER_INPUT"),
        ({"buyer": {"name": "x" * 500}}, "BAD_USER_INPUT"),
    ],
)
async def test_one_bad_order_is_rejected_and_the_rest_of_the_batch_lands(
    api: Api, change: dict, code: str
) -> None:
    before = await _count(api, Order)
    results = await ingest(
        api,
        [channel_order("TB-5001"), channel_order("TB-5002", **change), channel_order("TB-5003")],
    )

    assert [r["outcome"] for r in results] == ["CREATED", "REJECTED", "CREATED"]
    assert results[1]["code"] == code
    assert results[1]["message"]
    assert await _count(api, Order) == before + 2


async def test_the_batch_is_audited_once_with_each_outcome(api: Api) -> None:
    await ingest(api, [channel_order("TB-6001")])
    await ingest(
        api,
        [
            channel_order("TB-6001"),
            channel_order("TB-6002", currency="XXX"),
            channel_order("TB-6003"),
        ],
    )
    async with api.app.state.runtime.sessions() as session:
        [*_, last] = (
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "order.ingest")
                .order_by(AuditEvent.seq)
            )
        ).all()
    details = json.loads(last.details)
    assert last.username == "demo-integration"
    assert details["outcomes"] == {"CREATED": 1, "REPLAYED": 1, "REJECTED": 1}
    assert [r["outcome"] for r in details["results"]] == ["REPLAYED", "REJECTED", "CREATED"]


@pytest.mark.parametrize("role", ["cs", "sales", "warehouse", "ops", "admin", "compliance"])
async def test_only_order_ingest_holders_may_ingest(api: Api, role: str) -> None:
    result = await api.gql(
        "mutation($o: [ChannelOrderInput!]!) { ingestOrders(channel: TAOBAO, orders: $o) "
        "{ results { outcome } } }",
        {"o": [channel_order("TB-7001")]},
        as_=role,
    )
    assert errors_of(result) == [("FORBIDDEN", None)]
    assert await _count(api, Order, Order.external_id == "TB-7001") == 0


async def test_batches_over_500_are_refused_whole(api: Api) -> None:
    many = [channel_order(f"TB-8{i:04d}") for i in range(501)]
    result = await api.gql(INGEST, {"c": "TAOBAO", "o": many}, as_="integration")
    assert errors_of(result) in ([("BAD_USER_INPUT", None)], [("QUERY_TOO_COMPLEX", None)])


async def test_fifty_concurrent_identical_submissions_make_one_order(pg_api: Api) -> None:
    api = pg_api
    await api.token("integration")
    batch = [channel_order("TB-9001")]
    results = await asyncio.gather(*(ingest(api, copy.deepcopy(batch)) for _ in range(50)))

    outcomes = sorted(r[0]["outcome"] for r in results)
    assert outcomes.count("CREATED") == 1
    assert set(outcomes) <= {"CREATED", "REPLAYED"}
    assert await _count(api, Order, Order.external_id == "TB-9001") == 1
    assert await _count(api, PickingList) >= 1
    ids = {r[0]["order"]["id"] for r in results}
    assert len(ids) == 1


async def test_an_order_arriving_shipped_records_each_step_and_gets_no_picking_list(
    api: Api,
) -> None:
    [result] = await ingest(
        api,
        [channel_order("TB-S-1", status="SHIPPED", carrier="SF", trackingNumber="SF0000000001")],
    )
    order_id = db_id(result["order"]["id"])
    async with api.app.state.runtime.sessions() as session:
        events = (
            await session.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.aggregate_id == str(order_id))
                .order_by(OutboxEvent.seq)
            )
        ).all()
    steps = [(json.loads(p).get("from"), json.loads(p).get("to")) for p in events[1:]]
    assert result["order"]["status"] == "SHIPPED"
    assert steps == [
        ("PENDING_PAYMENT", "PAID"),
        ("PAID", "PICKING"),
        ("PICKING", "SHIPPED"),
    ]
    assert await _count(api, PickingList, PickingList.order_id == order_id) == 0
