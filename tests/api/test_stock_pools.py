"""Promotion pools through the real app: carved out of available stock at once, drawn only
by the campaign's reservations (empty pool: INSUFFICIENT_STOCK even with main stock left),
the main stock protected from the campaign, and the remainder back in one audited move at
the end of the window (the worker's job, frozen clock) or on closeStockPool."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import func, select

from api.worker import scheduled_jobs
from domain.audit.models import AuditEvent
from domain.db import utcnow
from domain.inventory.models import StockMovement
from domain.jobs.scheduler import run_due
from tests.conftest import Api, errors_of

CREATE = """mutation($i: StockPoolInput!) { createStockPool(input: $i) {
  id name sku warehouse quantity remaining returned status startsAt endsAt } }"""
CLOSE = "mutation($id: ID!) { closeStockPool(id: $id) { remaining returned status } }"
POOLS = "query($s: StockPoolStatus) { stockPools(status: $s) { name remaining status } }"
RESERVE = """mutation($i: ReserveStockInput!) { reserveStock(input: $i) { id status
  lines { sku quantity } } }"""
RELEASE = "mutation($id: ID!) { releaseReservation(id: $id) { status } }"
ITEM = """query($s: String!, $w: String) { stockItem(sku: $s, warehouse: $w) {
  onHand reserved available } }"""
SKU, WAREHOUSE = "SKU-0010", "SH-01"


def _iso(at: dt.datetime) -> str:
    return at.isoformat()


def _pool(name: str, quantity: int, **changes: Any) -> dict[str, Any]:
    now = utcnow()
    return {
        "name": name,
        "sku": SKU,
        "warehouse": WAREHOUSE,
        "quantity": quantity,
        "startsAt": _iso(now - dt.timedelta(minutes=1)),
        "endsAt": _iso(now + dt.timedelta(hours=2)),
        **changes,
    }


async def _item(api: Api) -> dict[str, int]:
    return (await api.gql(ITEM, {"s": SKU, "w": WAREHOUSE}, as_="ops"))["data"]["stockItem"]


async def _reserve(api: Api, ref: str, quantity: int, campaign: str | None = None) -> dict:
    body: dict[str, Any] = {
        "reference": ref,
        "lines": [{"sku": SKU, "warehouse": WAREHOUSE, "quantity": quantity}],
    }
    if campaign is not None:
        body["campaign"] = campaign
    return await api.gql(RESERVE, {"i": body}, as_="integration")


async def _pools(api: Api, status: str | None = None) -> dict[str, dict]:
    found = await api.gql(POOLS, {"s": status}, as_="ops")
    return {p["name"]: p for p in found["data"]["stockPools"]}


async def test_a_pool_is_carved_out_and_only_its_campaign_draws_from_it(any_api: Api) -> None:
    api = any_api
    before = await _item(api)

    made = await api.gql(CREATE, {"i": _pool("双11-面膜", 10)}, as_="ops")
    assert "errors" not in made, made
    pool = made["data"]["createStockPool"]
    carved = await _item(api)
    drawn = await _reserve(api, "LIVE-1", 7, campaign="双11-面膜")
    after_draw = await _item(api)
    empty = await _reserve(api, "LIVE-2", 4, campaign="双11-面膜")

    assert (pool["status"], pool["remaining"], pool["returned"]) == ("ACTIVE", 10, None)
    assert carved == {
        "onHand": before["onHand"],
        "reserved": before["reserved"] + 10,
        "available": before["available"] - 10,
    }
    assert drawn["data"]["reserveStock"]["status"] == "ACTIVE"
    assert after_draw == carved  # the pool's units were already set aside
    assert (await _pools(api))["双11-面膜"]["remaining"] == 3
    # Three left in the pool: four is refused although the main stock has plenty.
    assert errors_of(empty) == [("INSUFFICIENT_STOCK", None)]
    assert before["available"] - 10 >= 4
    assert await _item(api) == carved


async def test_the_main_stock_is_protected_from_the_campaign_and_back_at_the_end(
    any_api: Api,
) -> None:
    api = any_api
    # The demo's own unpaid holds expire first, so the figures below are the campaign's alone.
    from tests.api.test_inventory_orders import _expire

    await _expire(api, utcnow() + dt.timedelta(hours=1))
    before = await _item(api)
    everything = before["available"]
    pool = (await api.gql(CREATE, {"i": _pool("flash", everything)}, as_="ops"))["data"][
        "createStockPool"
    ]
    main = await _reserve(api, "WEB-MAIN", 1)  # not the campaign: nothing left for it
    first = await _reserve(api, "LIVE-A", 2, campaign="flash")
    second = await _reserve(api, "LIVE-B", 3, campaign="flash")
    await api.gql(RELEASE, {"id": first["data"]["reserveStock"]["id"]}, as_="integration")
    paid = "mutation($id: ID!) { confirmReservation(id: $id) { status } }"
    await api.gql(paid, {"id": second["data"]["reserveStock"]["id"]}, as_="integration")

    assert errors_of(main) == [("INSUFFICIENT_STOCK", None)]
    assert (await _pools(api, "ACTIVE"))["flash"]["remaining"] == everything - 3

    ends = dt.datetime.fromisoformat(pool["endsAt"])
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "stock.expire-reservations"]
    clock, runtime.clock = runtime.clock, lambda: ends + dt.timedelta(seconds=30)
    try:
        await run_due(sessions=runtime.sessions, jobs=[job], now=ends + dt.timedelta(seconds=30))
    finally:
        runtime.clock = clock

    closed = (await _pools(api, "CLOSED"))["flash"]
    after = await _item(api)
    assert closed == {"name": "flash", "remaining": 0, "status": "CLOSED"}
    # The remainder went back; the campaign's paid reservation (3) still holds its units.
    assert after["available"] == everything - 3
    assert after["reserved"] == before["reserved"] + 3
    assert second["data"]["reserveStock"]["status"] == "ACTIVE"
    async with runtime.sessions() as session:
        returned = (
            await session.execute(
                select(StockMovement.reason, StockMovement.reserved_delta,
                       StockMovement.actor_username)
                .where(StockMovement.reference == "pool flash")
                .order_by(StockMovement.id)
            )
        ).all()  # fmt: skip
        audited = await session.scalar(
            select(func.count()).where(AuditEvent.action == "stock.pool_close")
        )
    assert [tuple(r) for r in returned] == [
        ("POOL", everything, "demo-ops"),
        ("POOL_RETURN", -(everything - 3), "system:reservations"),
    ]
    assert audited == 1


async def test_closing_early_returns_the_remainder_once(any_api: Api) -> None:
    api = any_api
    before = await _item(api)
    pool = (await api.gql(CREATE, {"i": _pool("early", 6)}, as_="ops"))["data"]["createStockPool"]
    await _reserve(api, "LIVE-E", 2, campaign="early")

    closed = await api.gql(CLOSE, {"id": pool["id"]}, as_="ops")
    again = await api.gql(CLOSE, {"id": pool["id"]}, as_="ops")
    late = await _reserve(api, "LIVE-F", 1, campaign="early")

    assert closed["data"]["closeStockPool"] == {"remaining": 0, "returned": 4, "status": "CLOSED"}
    assert again["data"]["closeStockPool"] == closed["data"]["closeStockPool"]
    assert errors_of(late) == [("CONFLICT", None)]
    assert (await _item(api))["reserved"] == before["reserved"] + 2


async def test_a_campaign_not_running_or_unknown_is_refused(api: Api) -> None:
    later = utcnow() + dt.timedelta(days=1)
    window = {"startsAt": _iso(later), "endsAt": _iso(later + dt.timedelta(hours=1))}
    scheduled = await api.gql(CREATE, {"i": _pool("tomorrow", 5, **window)}, as_="ops")
    assert scheduled["data"]["createStockPool"]["status"] == "SCHEDULED"
    assert errors_of(await _reserve(api, "X-1", 1, campaign="tomorrow")) == [("CONFLICT", None)]
    assert errors_of(await _reserve(api, "X-2", 1, campaign="nope")) == [("NOT_FOUND", None)]


async def test_a_pool_larger_than_the_available_stock_is_refused(api: Api) -> None:
    before = await _item(api)
    refused = await api.gql(CREATE, {"i": _pool("big", before["available"] + 1)}, as_="ops")
    assert errors_of(refused) == [("INSUFFICIENT_STOCK", None)]
    assert await _item(api) == before
    assert await _pools(api) == {}


@pytest.mark.parametrize("role", ["warehouse", "integration", "cs", "finance"])
async def test_only_operations_manages_pools(api: Api, role: str) -> None:
    refused = await api.gql(CREATE, {"i": _pool("p", 1)}, as_=role)
    listed = await api.gql(POOLS, as_=role)
    assert ("FORBIDDEN", None) in errors_of(refused)
    assert ("FORBIDDEN", None) in errors_of(listed)


@pytest.mark.parametrize(
    "changes",
    [
        {"quantity": 0},
        {"quantity": -5},
        {"quantity": 2**31},
        {"name": "x\x00"},
        {"startsAt": "2026-11-27T10:00:00"},  # naive
        {"endsAt": _iso(utcnow() - dt.timedelta(hours=1))},  # over already
    ],
)
async def test_bad_pools_are_bad_user_input(api: Api, changes: dict[str, Any]) -> None:
    before = await _item(api)
    refused = await api.gql(CREATE, {"i": {**_pool("bad", 1), **changes}}, as_="ops")
    assert [code for code, _ in errors_of(refused)] == ["BAD_USER_INPUT"], refused
    assert await _item(api) == before
