"""Stock follows channel orders: an unpaid order holds its units at once (lines of a SKU
summed, from one warehouse), payment confirms the hold, cancellation returns it, shipping
takes it out of the warehouse, an unpaid order's hold expires after its TTL and a paid one's
does not; an unpaid order whose stock is short lands cancelled with INSUFFICIENT_STOCK."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import func, select

from api.worker import scheduled_jobs
from domain.catalog.models import StockItem
from domain.db import utcnow
from domain.intake import service as intake
from domain.inventory.models import StockMovement, StockReservation
from domain.jobs.scheduler import run_due
from tests.api.test_intake import channel_order, ingest
from tests.conftest import Api, db_id

ITEMS = """query($s: String!) { stockItems(first: 20, filter: {sku: $s}) {
  edges { node { warehouse onHand reserved available } } } }"""
MOVE = "mutation($id: ID!, $to: OrderStatus!) { transitionOrder(id: $id, to: $to) { status } }"
ORDER = "query($id: ID!) { order(id: $id) { status } }"


async def _stock(api: Api, sku: str) -> dict[str, dict[str, int]]:
    found = await api.gql(ITEMS, {"s": sku}, as_="ops")
    return {
        e["node"]["warehouse"]: {k: v for k, v in e["node"].items() if k != "warehouse"}
        for e in found["data"]["stockItems"]["edges"]
    }


def _unpaid(external_id: str, lines: list[tuple[str, int]], **changes: object) -> dict:
    fields: dict[str, object] = {
        "status": "PENDING_PAYMENT",
        "paidAt": None,
        "paymentTransactionId": None,
        "lines": [{"sku": s, "quantity": q, "unitPrice": "10.00"} for s, q in lines],
    }
    return channel_order(external_id, **{**fields, **changes})


async def _reservation(api: Api, order_id: int) -> StockReservation | None:
    async with api.app.state.runtime.sessions() as session:
        return await session.scalar(
            select(StockReservation).where(StockReservation.order_id == order_id)
        )


async def _ledger(api: Api, reference: str, *columns: object) -> list[tuple]:
    """These columns of the ledger movements with this reference, oldest first."""
    async with api.app.state.runtime.sessions() as session:
        rows = await session.execute(
            select(*columns)  # type: ignore[call-overload]
            .where(StockMovement.reference == reference)
            .order_by(StockMovement.id)
        )
        return [tuple(r) for r in rows.all()]


async def _held_in(api: Api, sku: str, before: dict, units: int) -> str:
    """The warehouse whose reserved count rose by `units` since `before`."""
    after = await _stock(api, sku)
    [warehouse] = [w for w in after if after[w]["reserved"] != before[w]["reserved"]]
    assert after[warehouse]["reserved"] == before[warehouse]["reserved"] + units
    assert after[warehouse]["onHand"] == before[warehouse]["onHand"]
    return warehouse


async def test_an_unpaid_order_holds_its_summed_lines_and_payment_then_shipping_take_them(
    any_api: Api,
) -> None:
    api = any_api
    # The demo's own unpaid holds expire first, so the figures below are this order's alone.
    await _expire(api, utcnow() + dt.timedelta(hours=1))
    before = await _stock(api, "SKU-0004")
    [result] = await ingest(api, [_unpaid("TB-S-1", [("SKU-0004", 2), ("SKU-0004", 1)])])
    assert (result["outcome"], result["code"]) == ("CREATED", None)
    order = result["order"]["id"]
    warehouse = await _held_in(api, "SKU-0004", before, 3)
    held = await _reservation(api, db_id(order))
    assert held is not None
    assert held.status == "ACTIVE"

    # The channel reports the payment: the hold is confirmed, and outlives its TTL.
    [paid] = await ingest(api, [_unpaid("TB-S-1", [("SKU-0004", 2), ("SKU-0004", 1)],
                                        status="PAID", paidAt="2026-11-25T16:40:00Z")])  # fmt: skip
    assert paid["outcome"] == "UPDATED"
    await _expire(api, held.expires_at + dt.timedelta(minutes=5))
    confirmed = await _stock(api, "SKU-0004")
    assert (await _reservation(api, db_id(order))).status == "CONFIRMED"  # type: ignore[union-attr]
    assert confirmed[warehouse]["reserved"] == before[warehouse]["reserved"] + 3

    for step, role in (("PICKING", "warehouse"), ("SHIPPED", "warehouse")):
        moved = await api.gql(MOVE, {"id": order, "to": step}, as_=role)
        assert "errors" not in moved, moved
    shipped = await _stock(api, "SKU-0004")

    assert shipped[warehouse] == {
        "onHand": before[warehouse]["onHand"] - 3,
        "reserved": before[warehouse]["reserved"],
        "available": before[warehouse]["available"] - 3,
    }
    assert (await _reservation(api, db_id(order))).status == "SHIPPED"  # type: ignore[union-attr]
    moves = await _ledger(
        api,
        f"order {held.reference.split()[-1]}",
        StockMovement.reason,
        StockMovement.on_hand_delta,
        StockMovement.reserved_delta,
    )
    assert moves == [("RESERVE", 0, 3), ("SHIP", -3, -3)]


async def _expire(api: Api, now: dt.datetime) -> None:
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "stock.expire-reservations"]
    clock, runtime.clock = runtime.clock, lambda: now
    try:
        await run_due(sessions=runtime.sessions, jobs=[job], now=now)
    finally:
        runtime.clock = clock


async def test_an_unpaid_orders_hold_expires_but_the_order_stays_to_be_paid(any_api: Api) -> None:
    api = any_api
    before = await _stock(api, "SKU-0005")
    [result] = await ingest(api, [_unpaid("TB-S-2", [("SKU-0005", 2)])])
    order_id = db_id(result["order"]["id"])
    held = await _reservation(api, order_id)
    assert held is not None

    await _expire(api, held.expires_at - dt.timedelta(seconds=1))
    assert (await _reservation(api, order_id)).status == "ACTIVE"  # type: ignore[union-attr]
    await _expire(api, held.expires_at + dt.timedelta(seconds=59))  # the next minute's run

    assert (await _reservation(api, order_id)).status == "EXPIRED"  # type: ignore[union-attr]
    moves = await _ledger(
        api,
        held.reference,
        StockMovement.reason,
        StockMovement.reserved_delta,
        StockMovement.actor_username,
    )
    assert moves == [
        ("RESERVE", 2, "demo-integration"),
        ("EXPIRE", -2, "system:reservations"),
    ]
    # (The demo's own unpaid orders expire in the same run, so only this order's share is
    # compared: the warehouse it held in is back where it was, less their expiries.)
    assert sum(v["reserved"] for v in (await _stock(api, "SKU-0005")).values()) <= sum(
        v["reserved"] for v in before.values()
    )
    status = await api.gql(ORDER, {"id": result["order"]["id"]}, as_="ops")
    assert status["data"]["order"]["status"] == "PENDING_PAYMENT"


async def test_a_cancelled_unpaid_order_gives_its_stock_back(any_api: Api) -> None:
    api = any_api
    before = await _stock(api, "SKU-0006")
    await ingest(api, [_unpaid("TB-S-3", [("SKU-0006", 1)])])
    [cancelled] = await ingest(api, [_unpaid("TB-S-3", [("SKU-0006", 1)], status="CANCELLED")])

    assert cancelled["outcome"] == "UPDATED"
    assert (await _reservation(api, db_id(cancelled["order"]["id"]))).status == "RELEASED"  # type: ignore[union-attr]
    assert await _stock(api, "SKU-0006") == before


async def test_an_unpaid_order_without_stock_lands_cancelled_with_insufficient_stock(
    any_api: Api,
) -> None:
    api = any_api
    before = await _stock(api, "SKU-0008")
    most = max(item["available"] for item in before.values())
    results = await ingest(
        api,
        [
            _unpaid("TB-S-4", [("SKU-0008", most + 1)]),
            _unpaid("TB-S-5", [("SKU-0009", 1)]),  # the rest of the batch lands as usual
        ],
    )

    short, fine = results
    assert (short["outcome"], short["code"]) == ("CREATED", "INSUFFICIENT_STOCK")
    assert "cancel it upstream" in short["message"]
    assert (fine["outcome"], fine["code"]) == ("CREATED", None)
    status = await api.gql(ORDER, {"id": short["order"]["id"]}, as_="ops")
    assert status["data"]["order"]["status"] == "CANCELLED"
    assert await _stock(api, "SKU-0008") == before
    assert await _reservation(api, db_id(short["order"]["id"])) is None
    [replayed] = await ingest(api, [_unpaid("TB-S-4", [("SKU-0008", most + 1)])])
    # The channel resending it while it still waits for payment: nothing changes.
    assert (replayed["outcome"], replayed["order"]["id"]) == ("REPLAYED", short["order"]["id"])
    [paid_anyway] = await ingest(api, [_unpaid("TB-S-4", [("SKU-0008", most + 1)], status="PAID")])
    assert (paid_anyway["outcome"], paid_anyway["code"]) == ("REJECTED", "INVALID_TRANSITION")


async def _paid_on_arrival(api: Api, external_id: str, sku: str, quantity: int) -> str:
    order = channel_order(
        external_id, lines=[{"sku": sku, "quantity": quantity, "unitPrice": "9.90"}]
    )
    [result] = await ingest(api, [order])
    assert result["outcome"] == "CREATED", result
    return result["order"]["id"]


async def _warehouse_of(api: Api, order_id: str) -> str:
    from domain.orders.picking import PickingList

    async with api.app.state.runtime.sessions() as session:
        return await session.scalar(
            select(PickingList.warehouse).where(PickingList.order_id == db_id(order_id))
        )


async def test_an_order_that_arrives_paid_holds_its_units_until_it_ships(any_api: Api) -> None:
    api = any_api
    # The demo's own unpaid holds expire first, so the figures below are this order's alone.
    await _expire(api, utcnow() + dt.timedelta(hours=1))
    before = await _stock(api, "SKU-0017")
    order = await _paid_on_arrival(api, "TB-S-6", "SKU-0017", 2)
    home = await _warehouse_of(api, order)

    # Held where it is picked, confirmed (no TTL), and no longer on sale.
    assert await _held_in(api, "SKU-0017", before, 2) == home
    held = await _reservation(api, db_id(order))
    assert held is not None
    assert held.status == "CONFIRMED"
    assert [(li.sku, li.warehouse, li.quantity) for li in held.lines] == [("SKU-0017", home, 2)]
    await _expire(api, utcnow() + dt.timedelta(hours=2))
    assert (await _reservation(api, db_id(order))).status == "CONFIRMED"  # type: ignore[union-attr]

    for step in ("PICKING", "SHIPPED"):
        assert "errors" not in await api.gql(MOVE, {"id": order, "to": step}, as_="warehouse")

    after = (await _stock(api, "SKU-0017"))[home]
    assert after == {
        "onHand": before[home]["onHand"] - 2,
        "reserved": before[home]["reserved"],
        "available": before[home]["available"] - 2,
    }
    moves = await _ledger(
        api,
        held.reference,
        StockMovement.reason,
        StockMovement.on_hand_delta,
        StockMovement.reserved_delta,
    )
    assert moves == [("RESERVE", 0, 2), ("SHIP", -2, -2)]


async def test_paid_orders_of_one_batch_hold_together_and_a_short_one_still_lands_paid(
    any_api: Api,
) -> None:
    """Three paid orders of one SKU in one call: the first two are held (one ledger movement
    each), the third finds no warehouse with enough left and lands paid, holding nothing,
    with a task for operations; its shipping later is traced, not stopped."""
    api = any_api
    before = await _stock(api, "SKU-0018")
    most = max(v["available"] for v in before.values())
    least = min(v["available"] for v in before.values())
    assert least > 2
    orders = [
        channel_order(
            external_id, lines=[{"sku": "SKU-0018", "quantity": quantity, "unitPrice": "9.90"}]
        )
        for external_id, quantity in (("TB-S-7A", 1), ("TB-S-7B", 1), ("TB-S-7C", most + 1))
    ]

    results = await ingest(api, orders)

    assert [(r["outcome"], r["code"]) for r in results] == [("CREATED", None)] * 3
    statuses = [
        (await api.gql(ORDER, {"id": r["order"]["id"]}, as_="ops"))["data"]["order"]["status"]
        for r in results
    ]
    assert statuses == ["PAID"] * 3
    after = await _stock(api, "SKU-0018")
    assert (
        sum(v["reserved"] for v in after.values())
        == sum(v["reserved"] for v in before.values()) + 2
    )
    assert [await _reservation(api, db_id(r["order"]["id"])) is None for r in results] == [
        False,
        False,
        True,
    ]
    found = await api.gql(
        "{ tasks(status: OPEN, first: 50) { edges { node { kind assignee details } } } }",
        as_="ops",
    )
    shorts = [
        e["node"] for e in found["data"]["tasks"]["edges"] if e["node"]["kind"] == "STOCK_SHORT"
    ]
    assert [(t["assignee"], t["details"]["wanted"]) for t in shorts] == [
        ("ops", {"SKU-0018": most + 1})
    ]
    async with api.app.state.runtime.sessions() as session:
        references = list(
            await session.scalars(
                select(StockMovement.reference)
                .where(StockMovement.sku == "SKU-0018", StockMovement.reason == "RESERVE")
                .order_by(StockMovement.id.desc())
                .limit(2)
            )
        )
    held = [await _reservation(api, db_id(r["order"]["id"])) for r in results[:2]]
    assert sorted(references) == sorted(h.reference for h in held)  # type: ignore[union-attr]

    # The short one ships anyway (the warehouse found the units): traced, not booked.
    short = results[2]["order"]["id"]
    home = await _warehouse_of(api, short)
    before_ship = (await _stock(api, "SKU-0018"))[home]
    for step in ("PICKING", "SHIPPED"):
        moved = await api.gql(MOVE, {"id": short, "to": step}, as_="warehouse")
        assert "errors" not in moved, moved
    assert (await _stock(api, "SKU-0018"))[home] == before_ship
    found = await api.gql(
        "{ tasks(status: OPEN, first: 50) { edges { node { kind details } } } }",
        as_="warehouse",
    )
    [trace] = [
        e["node"]
        for e in found["data"]["tasks"]["edges"]
        if e["node"]["kind"] == "STOCK_TRACE" and e["node"]["details"].get("sku") == "SKU-0018"
    ]
    assert trace["details"]["shipped"] == most + 1


async def test_an_order_paid_after_its_hold_expired_holds_again(any_api: Api) -> None:
    api = any_api
    [result] = await ingest(api, [_unpaid("TB-S-8", [("SKU-0019", 2)])])
    order_id = db_id(result["order"]["id"])
    held = await _reservation(api, order_id)
    assert held is not None
    await _expire(api, held.expires_at + dt.timedelta(seconds=59))
    assert (await _reservation(api, order_id)).status == "EXPIRED"  # type: ignore[union-attr]
    before = await _stock(api, "SKU-0019")

    [paid] = await ingest(
        api, [_unpaid("TB-S-8", [("SKU-0019", 2)], status="PAID", paidAt="2026-11-25T16:40:00Z")]
    )

    assert paid["outcome"] == "UPDATED"
    again = await _reservation(api, order_id)
    assert again is not None
    assert again.status == "CONFIRMED"
    warehouse = await _held_in(api, "SKU-0019", before, 2)
    assert [(li.sku, li.warehouse, li.quantity) for li in again.lines] == [
        ("SKU-0019", warehouse, 2)
    ]


@pytest.mark.parametrize("attempts", [3, 1], ids=["optimistic", "locking-first"])
async def test_concurrent_batches_of_paid_orders_never_hold_more_than_there_is(
    pg_api: Api, attempts: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight batches at once, every order paid and wanting SKU-0021, with 40 units left in all:
    each batch plans its holds from a read without locks, so most lose the race at least once
    (StockMoved, or a deadlock) and are decided again; a batch's last attempt locks its stock
    rows first and cannot lose (with one attempt, every batch does). Every order lands paid,
    the holds add up to the stock that was there and no more, and each order that got none
    has its task."""
    monkeypatch.setattr(intake, "ATTEMPTS", attempts)
    api = pg_api
    await _expire(api, utcnow() + dt.timedelta(hours=1))
    await api.token("integration")
    before = await _stock(api, "SKU-0021")
    for warehouse, levels in before.items():  # 20 left to sell in each of two warehouses
        keep = 20 if warehouse in sorted(before)[:2] else 0
        change = {
            "sku": "SKU-0021",
            "warehouse": warehouse,
            "delta": keep - levels["available"],
            "reason": "flash sale stock",
        }
        adjusted = await api.gql(
            "mutation($i: AdjustStockInput!) { adjustStock(input: $i) { available } }",
            {"i": change},
            as_="warehouse",
        )
        assert "errors" not in adjusted, adjusted
    start = await _stock(api, "SKU-0021")
    assert sum(v["available"] for v in start.values()) == 40

    def paid(key: str, quantity: int) -> dict:
        return channel_order(
            key, lines=[{"sku": "SKU-0021", "quantity": quantity, "unitPrice": "9.90"}]
        )

    batches = [[paid(f"TB-FL-{b}-{n}", 1 + (b + n) % 2) for n in range(6)] for b in range(8)]
    results = await asyncio.gather(*(ingest(api, batch) for batch in batches))

    landed = [r for outcome in results for r in outcome]
    assert [r["outcome"] for r in landed] == ["CREATED"] * 48
    wanted = {f"TB-FL-{b}-{n}": 1 + (b + n) % 2 for b in range(8) for n in range(6)}
    held = {}
    for r in landed:
        reservation = await _reservation(api, db_id(r["order"]["id"]))
        if reservation is not None:
            assert reservation.status == "CONFIRMED"
            held[r["externalId"]] = sum(li.quantity for li in reservation.lines)
    end = await _stock(api, "SKU-0021")
    assert all(v["available"] >= 0 for v in end.values())
    assert sum(held.values()) == sum(v["reserved"] - start[w]["reserved"] for w, v in end.items())
    assert all(held[k] == wanted[k] for k in held)
    assert 20 <= sum(held.values()) <= 40
    found = await api.gql(
        "{ tasks(status: OPEN, first: 100) { edges { node { kind details } } } }", as_="ops"
    )
    short = sorted(
        e["node"]["details"]["order"]
        for e in found["data"]["tasks"]["edges"]
        if e["node"]["kind"] == "STOCK_SHORT"
    )
    assert len(short) == 48 - len(held)
    async with api.app.state.runtime.sessions() as session:
        for warehouse in end:
            on_hand, reserved = (
                await session.execute(
                    select(
                        func.sum(StockMovement.on_hand_delta),
                        func.sum(StockMovement.reserved_delta),
                    ).where(StockMovement.sku == "SKU-0021", StockMovement.warehouse == warehouse)
                )
            ).one()
            row = await session.scalar(
                select(StockItem).where(
                    StockItem.sku == "SKU-0021", StockItem.warehouse == warehouse
                )
            )
            assert (on_hand, reserved) == (row.on_hand, row.reserved)  # type: ignore[union-attr]


async def test_a_planned_hold_that_no_longer_fits_by_one_unit_is_stock_moved_not_written(
    any_api: Api,
) -> None:
    """Issue #28: the batch hold's guard loosened by one unit survived (the database's CHECK
    caught it later, as an error rather than a re-plan). A plan for every available unit,
    then one unit taken by a checkout: writing the plan is StockMoved and changes nothing."""
    from domain.db import utcnow
    from domain.inventory.service import SYSTEM, StockMoved, apply_holds, plan_holds

    api = any_api
    sku = "SKU-0012"
    want = max(level["available"] for level in (await _stock(api, sku)).values())
    runtime = api.app.state.runtime
    async with runtime.sessions() as session:  # the plan, from one read
        plan = await plan_holds(session, orders=[("OG-PLAN-1", {sku: want})])
    [[line]] = plan.chosen
    assert line.quantity == want
    taken = await api.gql(
        "mutation($i: ReserveStockInput!) { reserveStock(input: $i) { status } }",
        {
            "i": {
                "reference": "WEB-TAKE-1",
                "lines": [{"sku": sku, "warehouse": line.warehouse, "quantity": 1}],
            }
        },
        as_="integration",
    )
    assert taken["data"]["reserveStock"]["status"] == "ACTIVE", taken
    async with runtime.sessions() as session:
        with pytest.raises(StockMoved):
            await apply_holds(session, plan, who=SYSTEM, now=utcnow())
        await session.rollback()

    after = (await _stock(api, sku))[line.warehouse]
    assert after["available"] == want - 1  # the checkout's unit only
