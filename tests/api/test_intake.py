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
from domain.customers.models import Customer
from domain.events.models import OutboxEvent
from domain.orders.models import Order, OrderStatusChange
from domain.orders.picking import PickingLine, PickingList
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


async def _footprint(api: Api, order_id: int) -> dict:
    """What an order left behind, without ids and times that differ between two orders."""
    async with api.app.state.runtime.sessions() as session:
        order = await session.get(Order, order_id)
        history = (
            await session.execute(
                select(
                    OrderStatusChange.from_status,
                    OrderStatusChange.to_status,
                    OrderStatusChange.actor_username,
                )
                .where(OrderStatusChange.order_id == order_id)
                .order_by(OrderStatusChange.id)
            )
        ).all()
        published = (
            await session.execute(
                select(OutboxEvent.type, OutboxEvent.version, OutboxEvent.payload)
                .where(OutboxEvent.aggregate_id == str(order_id))
                .order_by(OutboxEvent.seq)
            )
        ).all()
        picking = await session.scalar(select(PickingList).where(PickingList.order_id == order_id))
        picked = (
            (
                await session.execute(
                    select(PickingLine.sku, PickingLine.product_name, PickingLine.quantity)
                    .where(PickingLine.picking_list_id == picking.id)
                    .order_by(PickingLine.id)
                )
            ).all()
            if picking
            else None
        )
    keep = ("from", "to", "channel", "warehouse")
    return {
        "order": (
            order.status,
            order.version,
            order.total_minor,
            order.paid_minor,
            order.gross_margin_minor,
            str(order.business_day),
            order.customer_id,
        ),
        "history": [tuple(map(str, h)) for h in history],
        "events": [
            (t, v, {k: val for k, val in json.loads(p).items() if k in keep})
            for t, v, p in published
        ],
        "picking": (picking.warehouse, picking.status, picked) if picking else None,
        "picking_event_names_the_list": all(
            json.loads(p)["pickingListId"] == picking.id
            for t, _, p in published
            if t == "PICKING_LIST_CREATED"
        ),
    }


async def test_a_batch_lands_what_creating_and_moving_each_order_would(any_api: Api) -> None:
    # The bulk path (a batch of new orders) and the one-by-one path (an order created unpaid,
    # then moved to PAID by a later submission) leave the same rows, events and picking list.
    api = any_api
    bulk = await ingest(api, [channel_order("TB-EQ-1"), channel_order("TB-EQ-2")])
    await ingest(api, [channel_order("TB-EQ-3", status="PENDING_PAYMENT", paidAt=None)])
    [moved] = await ingest(api, [channel_order("TB-EQ-3")])
    assert [r["outcome"] for r in bulk] == ["CREATED", "CREATED"]
    assert moved["outcome"] == "UPDATED"

    one, two, three = [await _footprint(api, db_id(r["order"]["id"])) for r in (*bulk, moved)]
    assert one == two == three
    assert one["order"][:2] == ("PAID", 2)
    assert [e[0] for e in one["events"]] == [
        "ORDER_CREATED",
        "ORDER_STATUS_CHANGED",
        "PICKING_LIST_CREATED",
    ]
    assert one["picking_event_names_the_list"]


async def test_buyers_of_one_batch_with_the_same_phone_share_one_new_customer(
    any_api: Api,
) -> None:
    api = any_api
    same = {"name": "李雷", "phone": "13900001111"}
    results = await ingest(
        api,
        [
            channel_order("TB-C-1", buyer=same),
            channel_order("TB-C-2", buyer={**same, "phone": "+86 139 0000 1111"}),
            channel_order("TB-C-3", buyer={"name": "韩梅梅", "email": "MEI@example.com"}),
            channel_order("TB-C-4", buyer={"name": "韩梅梅", "email": "mei@example.com"}),
        ],
    )
    async with api.app.state.runtime.sessions() as session:
        owners = [(await session.get(Order, db_id(r["order"]["id"]))).customer_id for r in results]
        created = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.phone == "13900001111")
        )
    assert owners[0] == owners[1]
    assert owners[2] == owners[3]
    assert owners[0] != owners[2]
    assert created == 1


async def _orphans(api: Api) -> int:
    """Customers of the test buyer with no order: what a bulk insert that was rolled back
    would leave behind."""
    async with api.app.state.runtime.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Customer)
                .where(~select(Order.id).where(Order.customer_id == Customer.id).exists())
                .where(Customer.phone == "13800138000")
            )
        )


async def test_overlapping_concurrent_batches_land_each_order_once(pg_api: Api) -> None:
    # Ten batches at once, each sharing keys with the others in another order: the bulk insert
    # meets the others' keys, falls back to one by one, and every key is one order.
    api = pg_api
    await api.token("integration")
    keys = [f"TB-OV-{n:02d}" for n in range(30)]
    batches = [
        [channel_order(k) for k in keys[n : n + 20]][:: -1 if n % 2 else 1] for n in range(0, 10)
    ]
    results = await asyncio.gather(*(ingest(api, b) for b in batches))

    for batch, outcome in zip(batches, results, strict=True):
        assert [r["externalId"] for r in outcome] == [o["externalId"] for o in batch]
        assert {r["outcome"] for r in outcome} <= {"CREATED", "REPLAYED"}
    created = [r["externalId"] for outcome in results for r in outcome if r["outcome"] == "CREATED"]
    assert sorted(created) == sorted(set(keys[:29]))
    assert await _count(api, Order, Order.external_id.like("TB-OV-%")) == 29
    assert await _count(api, PickingList) >= 29
    assert await _orphans(api) == 0


class _PausedLanding:
    """Holds the first batch that reaches `_land` (after its look-up of known keys, inside its
    transaction) until released; later batches pass straight through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from domain.intake import service

        self.paused, self.release = asyncio.Event(), asyncio.Event()
        real = service._land

        async def land(*args: object, **kwargs: object) -> object:
            if not self.paused.is_set():
                self.paused.set()
                await asyncio.wait_for(self.release.wait(), 60)
            return await real(*args, **kwargs)

        monkeypatch.setattr(service, "_land", land)


async def _waiting_on(api: Api, event: str, while_running: asyncio.Task) -> bool:
    """Whether some backend comes to wait on `event` (pg_stat_activity) before the task ends."""
    from sqlalchemy import text

    deadline = asyncio.get_running_loop().time() + 30
    async with api.app.state.runtime.engine.connect() as probe:
        while asyncio.get_running_loop().time() < deadline and not while_running.done():
            found = await probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = :e "
                    "AND datname = current_database() AND pid <> pg_backend_pid()"
                ),
                {"e": event},
            )
            if found:
                return True
            await probe.rollback()  # pg_stat_activity is a snapshot per transaction
            await asyncio.sleep(0.05)
    return False


async def test_overlapping_batches_take_turns_before_either_writes(
    pg_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #28: the advisory lock could be removed unnoticed (the fallback hid it, and the
    deadlock it prevents shows 1 run in 4). A batch sharing an order with one in progress
    waits for its turn, before writing anything, then finds the order there."""
    api = pg_api
    await api.token("integration")
    hold = _PausedLanding(monkeypatch)
    first = asyncio.create_task(
        ingest(api, [channel_order("TB-TURN-1"), channel_order("TB-TURN-2")])
    )
    await asyncio.wait_for(hold.paused.wait(), 30)
    second = asyncio.create_task(ingest(api, [channel_order("TB-TURN-1")]))
    try:
        waited = await _waiting_on(api, "advisory", second)
    finally:  # never leave a paused batch holding its locks for the next test
        hold.release.set()
        done = await asyncio.gather(first, second, return_exceptions=True)
    for outcome in done:
        if isinstance(outcome, BaseException):
            raise outcome
    a, b = done

    assert waited, "the second batch did not wait for its turn"
    assert [r["outcome"] for r in a] == ["CREATED", "CREATED"]
    assert [r["outcome"] for r in b] == ["REPLAYED"]


async def test_without_turns_a_key_created_meanwhile_is_decided_again_one_by_one(
    pg_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback on its own (issue #28: each of it and the advisory lock hid the other's
    removal). With the turns switched off, another batch creates a key between this batch's
    look-up and its bulk insert: the insert fails as a whole, and each order is decided again
    (the created one REPLAYED, the other CREATED), with no customer left behind."""
    from sqlalchemy import ARRAY, BigInteger, bindparam, text

    from domain.intake import service

    monkeypatch.setattr(
        service,
        "_TAKE_TURNS",
        text("SELECT CAST(:keys AS bigint[])").bindparams(
            bindparam("keys", type_=ARRAY(BigInteger))
        ),
    )
    api = pg_api
    await api.token("integration")
    hold = _PausedLanding(monkeypatch)
    first = asyncio.create_task(ingest(api, [channel_order("TB-FB-1"), channel_order("TB-FB-2")]))
    try:
        await asyncio.wait_for(hold.paused.wait(), 30)
        meanwhile = await ingest(api, [channel_order("TB-FB-1")])
    finally:
        hold.release.set()
        [decided] = await asyncio.gather(first, return_exceptions=True)
    if isinstance(decided, BaseException):
        raise decided

    assert [r["outcome"] for r in meanwhile] == ["CREATED"]
    assert [(r["externalId"], r["outcome"]) for r in decided] == [
        ("TB-FB-1", "REPLAYED"),
        ("TB-FB-2", "CREATED"),
    ]
    assert await _count(api, Order, Order.external_id.like("TB-FB-%")) == 2
    assert await _orphans(api) == 0


async def test_the_orders_are_returned_when_asked_for_through_a_fragment(api: Api) -> None:
    query = """mutation($c: Channel!, $o: [ChannelOrderInput!]!) {
      ingestOrders(channel: $c, orders: $o) { results { outcome ...WithOrder } } }
      fragment WithOrder on IngestOrderResult { order { externalId status } }"""
    bare = """mutation($c: Channel!, $o: [ChannelOrderInput!]!) {
      ingestOrders(channel: $c, orders: $o) { results { externalId outcome } } }"""
    first = await api.gql(query, {"c": "JD", "o": [channel_order("JD-F-1")]}, as_="integration")
    second = await api.gql(bare, {"c": "JD", "o": [channel_order("JD-F-1")]}, as_="integration")

    [result] = first["data"]["ingestOrders"]["results"]
    assert result["order"] == {"externalId": "JD-F-1", "status": "PAID"}
    assert second["data"]["ingestOrders"]["results"] == [
        {"externalId": "JD-F-1", "outcome": "REPLAYED"}
    ]


async def test_a_channel_bound_service_account_speaks_for_its_channel_only(api: Api) -> None:
    """Issue #30, L4: a TAOBAO-bound integration account ingested JD orders."""
    from domain.actor import SYSTEM_ORIGIN
    from domain.audit.service import Subject
    from domain.users import service as users_service
    from tests.api.test_approvals import PASSWORD

    async with api.app.state.runtime.sessions() as session:
        await users_service.create_user(
            session=session,
            who=Subject(None, "test", (), SYSTEM_ORIGIN),
            username="taobao-shop-service",
            password=PASSWORD,
            roles=["integration"],
            channels=["TAOBAO"],
        )
        await session.commit()
    login = await api.gql(
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { accessToken } }",
        {"u": "taobao-shop-service", "p": PASSWORD},
    )
    bound = {"authorization": f"Bearer {login['data']['login']['accessToken']}"}

    own = await api.gql(INGEST, {"c": "TAOBAO", "o": [channel_order("TB-BOUND-1")]}, **bound)
    other = await api.gql(INGEST, {"c": "JD", "o": [channel_order("JD-BOUND-1")]}, **bound)
    snapshot = await api.gql(
        """mutation($o: [ChannelSnapshotOrderInput!]!) {
             submitChannelSnapshot(channel: JD, businessDay: "2026-11-26", orders: $o) {
               __typename } }""",
        {"o": []},
        **bound,
    )

    assert own["data"]["ingestOrders"]["results"][0]["outcome"] == "CREATED"
    assert errors_of(other) == [("FORBIDDEN", None)]
    assert errors_of(snapshot)[0][0] == "FORBIDDEN"
    assert await _count(api, Order, Order.external_id == "JD-BOUND-1") == 0
