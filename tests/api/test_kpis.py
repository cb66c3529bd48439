"""The three KPIs on hand-built data, their exact boundaries, the three-day rule with a frozen
clock, and who may read them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update

from api.worker import scheduled_jobs
from domain.customers.cleanse import complete_condition
from domain.customers.models import Address, Customer
from domain.db import utcnow
from domain.jobs.scheduler import run_due
from domain.kpis.rules import TIMELINESS, Thresholds
from domain.kpis.service import Value
from domain.orders.models import Order, OrderStatus
from tests.api.test_intake import channel_order, ingest
from tests.api.test_stock_counts import COUNT, _tasks
from tests.conftest import Api, db_id, errors_of, settings_for
from tests.policy_matrix import OPERATIONS, ROLES

SHANGHAI = ZoneInfo("Asia/Shanghai")
KPIS = """query($f: Date!, $t: Date!, $c: Channel, $k: String) {
  kpis(from: $f, to: $t, channel: $c, category: $k) {
    day channel category name value numerator denominator threshold breached } }"""
STOCK = """query($w: String) { stockItems(first: 100, filter: {warehouse: $w}) {
  edges { node { sku onHand } } } }"""


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


async def orders_on(
    api: Api,
    day: dt.date,
    total: int,
    on_time: int,
    late: int = 0,
    prefix: str = "K",
    lines: list[dict[str, Any]] | None = None,
) -> list[int]:
    """`total` paid orders created on business `day`; `on_time` of them shipped that day,
    `late` the day after; the rest not shipped."""
    created = local(day, 9).astimezone(dt.UTC)
    made = [
        channel_order(
            f"{prefix}-{day:%m%d}-{i}",
            createdAt=created.isoformat(),
            paidAt=(created + dt.timedelta(minutes=5)).isoformat(),
            **({"lines": lines} if lines else {}),
        )
        for i in range(total)
    ]
    results = []
    for start in range(0, total, 100):
        results += await ingest(api, made[start : start + 100])
    ids = [db_id(r["order"]["id"]) for r in results]
    async with api.app.state.runtime.sessions() as session:
        for n, order_id in enumerate(ids[: on_time + late]):
            shipped = local(day, 18) if n < on_time else local(day + dt.timedelta(days=1), 10)
            await session.execute(
                text("UPDATE orders SET status = 'SHIPPED', shipped_at = :at WHERE id = :id"),
                {"at": _stored(api, shipped), "id": order_id},
            )
        await session.commit()
    return ids


def _stored(api: Api, at: dt.datetime) -> dt.datetime:
    """A time as a raw statement binds it: aware for PostgreSQL, naive UTC for SQLite."""
    if api.app.state.runtime.settings.database_url.startswith("postgresql"):
        return at
    return at.astimezone(dt.UTC).replace(tzinfo=None)


async def kpi(api: Api, day: dt.date, name: str, as_: str = "ops", **slice_: str) -> dict:
    result = await api.gql(
        KPIS,
        {
            "f": day.isoformat(),
            "t": day.isoformat(),
            "c": slice_.get("channel"),
            "k": slice_.get("category"),
        },
        as_=as_,
    )
    assert "errors" not in result, result
    [value] = [v for v in result["data"]["kpis"] if v["name"] == name]
    return value


def test_the_breach_is_exact_at_the_boundary() -> None:
    def value(numerator: int, denominator: int, threshold: str) -> Value:
        day = dt.date(2026, 6, 1)
        return Value(day, TIMELINESS, "*", "*", numerator, denominator, Decimal(threshold))

    assert value(949, 1000, "95").breached  # 94.9%
    assert not value(950, 1000, "95").breached  # 95.0%
    assert not value(951, 1000, "95").breached
    assert value(979, 1000, "98").breached
    assert not value(98, 100, "98").breached
    assert not value(0, 0, "95").breached  # no data: nothing to breach
    assert value(2, 3, "66.67").breached  # 66.666…%, no float rounding
    assert not value(2, 3, "66.66").breached


async def test_timeliness_counts_orders_shipped_on_their_business_day(api: Api) -> None:
    day = dt.date(2026, 6, 15)
    # 20 orders: 19 shipped that day (95.0%: not breached), one shipped the next morning.
    await orders_on(api, day, 20, on_time=19, late=1)
    # Two more on JD with a HOME product, one on time: the category slice sees only those.
    home = [{"sku": "SKU-0003", "quantity": 1, "unitPrice": "99.00"}]
    await orders_on(api, day, 2, on_time=1, prefix="KH", lines=home)

    overall = await kpi(api, day, "ORDER_TIMELINESS")
    taobao = await kpi(api, day, "ORDER_TIMELINESS", channel="TAOBAO")
    household = await kpi(api, day, "ORDER_TIMELINESS", category="HOME")
    digital = await kpi(api, day, "ORDER_TIMELINESS", category="DIGITAL")

    assert (overall["numerator"], overall["denominator"]) == (20, 22)
    assert overall["breached"] is True  # 90.9%
    assert (taobao["numerator"], taobao["denominator"]) == (20, 22)
    assert (household["numerator"], household["denominator"]) == (1, 2)
    assert (digital["numerator"], digital["denominator"]) == (19, 20)
    assert digital["value"] == pytest.approx(0.95)
    assert digital["breached"] is False  # exactly 95.0%
    assert digital["threshold"] == pytest.approx(0.95)


async def test_business_midnight_belongs_to_the_new_day_for_shipping_and_for_orders(
    api: Api,
) -> None:
    """Issue #28: nothing tested an order shipped exactly at business midnight. Shipped at
    23:59:59.999999 (Shanghai) it is on time for its day; at 00:00:00 it is late; an order
    created at 00:00:00 belongs to the new day."""
    day = dt.date(2026, 6, 16)
    midnight = local(day + dt.timedelta(days=1), 0)
    created = local(day, 9).astimezone(dt.UTC)
    made = [
        channel_order(
            f"KM-{i}",
            createdAt=at.isoformat(),
            paidAt=(at + dt.timedelta(minutes=5)).isoformat(),
        )
        for i, at in enumerate([created, created, midnight.astimezone(dt.UTC)])
    ]
    ids = [db_id(r["order"]["id"]) for r in await ingest(api, made)]
    shipped = [midnight - dt.timedelta(microseconds=1), midnight]
    async with api.app.state.runtime.sessions() as session:
        for order_id, at in zip(ids[:2], shipped, strict=True):
            # Through the model's column type, as the product writes it (a raw statement binds
            # a whole second without its ".000000" on SQLite, and compares differently).
            await session.execute(
                update(Order)
                .where(Order.id == order_id)
                .values(status=OrderStatus.SHIPPED, shipped_at=at)
            )
        await session.commit()

    first = await kpi(api, day, "ORDER_TIMELINESS", channel="TAOBAO")
    second = await kpi(api, day + dt.timedelta(days=1), "ORDER_TIMELINESS", channel="TAOBAO")
    handled = await api.gql(
        "query($f: Date!, $t: Date!) { handlingTimes(from: $f, to: $t, channel: TAOBAO) "
        "{ day shipped } }",
        {"f": day.isoformat(), "t": (day + dt.timedelta(days=1)).isoformat()},
        as_="ops",
    )

    assert (first["numerator"], first["denominator"]) == (1, 2)
    assert (second["numerator"], second["denominator"]) == (0, 1)
    # Handling time counts a shipment on the business day it shipped: one each side.
    shipped = {h["day"]: h["shipped"] for h in handled["data"]["handlingTimes"]}
    assert shipped == {day.isoformat(): 1, (day + dt.timedelta(days=1)).isoformat(): 1}


async def test_a_cancelled_order_needs_no_shipping_and_leaves_its_day(api: Api) -> None:
    day = dt.date(2026, 6, 16)
    ids = await orders_on(api, day, 4, on_time=3)
    async with api.app.state.runtime.sessions() as session:
        await session.execute(
            text("UPDATE orders SET status = 'CANCELLED' WHERE id = :id"), {"id": ids[-1]}
        )
        await session.commit()

    value = await kpi(api, day, "ORDER_TIMELINESS")

    assert (value["numerator"], value["denominator"]) == (3, 3)
    assert value["breached"] is False


async def test_stock_accuracy_is_exact_lines_over_lines_counted(api: Api) -> None:
    stock = await api.gql(STOCK, {"w": "SH-01"}, as_="warehouse")
    items = {e["node"]["sku"]: e["node"]["onHand"] for e in stock["data"]["stockItems"]["edges"]}
    skus = sorted(items)[:50]
    assert len(skus) == 50
    now = utcnow()
    lines = [{"sku": s, "counted": items[s]} for s in skus]
    lines[0]["counted"] += 1  # one of 50 differs: 98.0%, not breached
    counted = await api.gql(
        COUNT,
        {"i": {"warehouse": "SH-01", "countedAt": now.isoformat(), "lines": lines}},
        as_="warehouse",
    )
    assert "errors" not in counted, counted
    today = now.astimezone(SHANGHAI).date()

    value = await kpi(api, today, "STOCK_ACCURACY")

    assert (value["numerator"], value["denominator"]) == (49, 50)
    assert value["breached"] is False
    lines[1]["counted"] += 1  # a second count the same day: 97/100 = 97%, breached
    again = await api.gql(
        COUNT,
        {"i": {"warehouse": "SH-01", "countedAt": now.isoformat(), "lines": lines}},
        as_="warehouse",
    )
    assert "errors" not in again, again
    value = await kpi(api, today, "STOCK_ACCURACY")
    assert (value["numerator"], value["denominator"]) == (97, 100)
    assert value["breached"] is True


async def test_customer_completeness_today_is_the_cleanse_figure(api: Api) -> None:
    # Counted here from the rows, by the rule's wording (a valid phone, a valid email and an
    # address; merged-away records are no customers), not with the product's own condition.
    today = utcnow().astimezone(SHANGHAI).date()
    async with api.app.state.runtime.sessions() as session:
        rows = (
            await session.execute(
                select(Customer.id, Customer.phone_valid, Customer.email_valid).where(
                    Customer.merged_into_id.is_(None)
                )
            )
        ).all()
        housed = set(await session.scalars(select(Address.customer_id)))
    total = len(rows)
    complete = sum(
        1 for cid, phone, email in rows if phone is True and email is True and cid in housed
    )

    value = await kpi(api, today, "CUSTOMER_COMPLETENESS")

    assert (value["numerator"], value["denominator"]) == (complete, total)
    assert 0 < complete < total  # the demo has customers without an email
    assert value["breached"] is (complete * 100 < 90 * total)


async def test_todays_completeness_is_the_workers_latest_snapshot(any_api: Api) -> None:
    """Until the worker has taken today's snapshot the figure is live (no `asOf`); then the
    query reads the snapshot, every slice of it, with its time, until the next one."""
    api = any_api
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "kpis.refresh-completeness"]
    now = utcnow()
    today = now.astimezone(SHANGHAI).date()
    query = """query($d: Date!, $c: Channel) { kpis(from: $d, to: $d, channel: $c) {
      name numerator denominator asOf } }"""

    async def completeness(channel: str | None = None) -> dict:
        result = await api.gql(query, {"d": today.isoformat(), "c": channel}, as_="ops")
        assert "errors" not in result, result
        [value] = [v for v in result["data"]["kpis"] if v["name"] == "CUSTOMER_COMPLETENESS"]
        return value

    live, live_taobao = await completeness(), await completeness("TAOBAO")
    assert (live["asOf"], live_taobao["asOf"]) == (None, None)

    await run_due(sessions=runtime.sessions, jobs=[job], now=now)
    taken, taken_taobao = await completeness(), await completeness("TAOBAO")
    async with runtime.sessions() as session:  # a complete customer loses their email
        victim = await session.scalar(
            select(Customer.id).where(complete_condition(), Customer.merged_into_id.is_(None))
        )
        await session.execute(
            text("UPDATE customers SET email_valid = false WHERE id = :id"), {"id": victim}
        )
        await session.commit()
    still = await completeness()
    await run_due(sessions=runtime.sessions, jobs=[job], now=now + dt.timedelta(minutes=5))
    retaken = await completeness()

    counts = [(v["numerator"], v["denominator"]) for v in (taken, taken_taobao, still, retaken)]
    assert counts == [
        (live["numerator"], live["denominator"]),
        (live_taobao["numerator"], live_taobao["denominator"]),
        (live["numerator"], live["denominator"]),  # the snapshot, until the next one
        (live["numerator"] - 1, live["denominator"]),
    ]
    first = dt.datetime.fromisoformat(taken["asOf"])
    assert now - dt.timedelta(minutes=5) < first <= now  # the run's five-minute slot
    assert taken_taobao["asOf"] == still["asOf"] == taken["asOf"]
    assert dt.datetime.fromisoformat(retaken["asOf"]) == first + dt.timedelta(minutes=5)


async def test_a_kpi_below_threshold_three_days_running_raises_one_task(api: Api) -> None:
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "kpis.close-day"]
    d1, d2, d3, d4 = (dt.date(2026, 6, 20) + dt.timedelta(days=n) for n in range(4))
    await orders_on(api, d1, 10, on_time=9, prefix="T1")  # 90%: below
    await orders_on(api, d2, 10, on_time=9, prefix="T2")  # below
    await orders_on(api, d3, 10, on_time=10, prefix="T3")  # 100%: above
    await orders_on(api, d4, 10, on_time=8, prefix="T4")  # below

    async def close(day: dt.date) -> list[dict]:
        await run_due(
            sessions=runtime.sessions, jobs=[job], now=local(day + dt.timedelta(days=1), 0, 11)
        )
        return await _tasks(api, "ops", "KPI_BREACH")

    after_d1 = await close(d1)
    after_d2 = await close(d2)
    after_d3 = await close(d3)  # day 1, 2 below, day 3 above: no task
    after_d4 = await close(d4)  # 2, 3, 4: day 3 was above: still none
    assert after_d1 == after_d2 == after_d3 == after_d4 == []

    d5, d6 = d4 + dt.timedelta(days=1), d4 + dt.timedelta(days=2)
    await orders_on(api, d5, 10, on_time=7, prefix="T5")
    await orders_on(api, d6, 10, on_time=9, prefix="T6")
    after_d5 = await close(d5)  # 4, 5 below; 3 above
    after_d6 = await close(d6)  # 4, 5, 6 below: one task
    d7 = d6 + dt.timedelta(days=1)
    await orders_on(api, d7, 10, on_time=5, prefix="T7")
    after_d7 = await close(d7)  # still below, the task is open: not created again

    assert after_d5 == []
    [task] = after_d6
    assert task["details"]["kpi"] == "ORDER_TIMELINESS"
    assert [d["day"] for d in task["details"]["days"]] == [d.isoformat() for d in (d4, d5, d6)]
    assert [d["value"] for d in task["details"]["days"]] == ["80.00%", "70.00%", "90.00%"]
    assert after_d7 == after_d6
    # Stored facts now serve those days; they agree with the live figures.
    stored = await kpi(api, d6, "ORDER_TIMELINESS")
    assert (stored["numerator"], stored["denominator"]) == (9, 10)


async def test_late_orders_for_a_closed_day_are_counted(api: Api) -> None:
    runtime = api.app.state.runtime
    [job] = [j for j in scheduled_jobs(runtime) if j.name == "kpis.close-day"]
    day = dt.date(2026, 7, 1)
    await orders_on(api, day, 4, on_time=4, prefix="L1")
    await run_due(
        sessions=runtime.sessions, jobs=[job], now=local(day + dt.timedelta(days=1), 0, 11)
    )
    closed = await kpi(api, day, "ORDER_TIMELINESS")

    await orders_on(api, day, 1, on_time=0, prefix="L2")  # a channel syncing late
    reopened = await kpi(api, day, "ORDER_TIMELINESS")

    assert (closed["numerator"], closed["denominator"]) == (4, 4)
    assert (reopened["numerator"], reopened["denominator"]) == (4, 5)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2026-06-10", "2026-06-01"),
        ("2025-01-01", "2026-06-01"),
        ("2025-01-01", "2026-01-02"),  # 367 days: one more than a leap year
    ],
)
async def test_bad_periods_are_bad_input(api: Api, start: str, end: str) -> None:
    result = await api.gql(KPIS, {"f": start, "t": end}, as_="ops")
    assert errors_of(result) == [("BAD_USER_INPUT", None)]


async def test_a_period_of_a_leap_year_is_the_longest_allowed(api: Api) -> None:
    result = await api.gql(KPIS, {"f": "2024-01-01", "t": "2024-12-31"}, as_="ops")  # 366 days
    assert "errors" not in result, result


@pytest.mark.parametrize("role", ROLES)
async def test_who_may_read_kpis_follows_the_policy(api: Api, role: str) -> None:
    result = await api.gql(KPIS, {"f": "2026-06-01", "t": "2026-06-02"}, as_=role)

    if role in OPERATIONS["kpi:read"]:
        assert "errors" not in result, result
        assert len(result["data"]["kpis"]) == 6
    else:
        assert errors_of(result) == [("FORBIDDEN", None)]
        assert result["data"]["kpis"] is None


def test_thresholds_and_owners_are_settings(tmp_path: Path) -> None:
    from api.settings import SettingsError

    url = "sqlite+aiosqlite:///unused.db"
    settings = settings_for(url, tmp_path, ORDERGATE_KPI_TIMELINESS_MIN="97.5")
    assert settings.kpi_thresholds == Thresholds(timeliness=Decimal("97.5"))
    owners = settings_for(url, tmp_path, ORDERGATE_KPI_OWNERS="STOCK_ACCURACY=alice")
    assert owners.kpi_owners == (("STOCK_ACCURACY", "alice"),)
    for bad in (
        {"ORDERGATE_KPI_STOCK_ACCURACY_MIN": "101"},
        {"ORDERGATE_KPI_COMPLETENESS_MIN": "ninety"},
        {"ORDERGATE_KPI_OWNERS": "NOPE=alice"},
    ):
        with pytest.raises(SettingsError):
            settings_for(url, tmp_path, **bad)


async def test_handling_time_and_return_rate_are_supporting_series(any_api: Api) -> None:
    api = any_api
    day = dt.date(2026, 6, 17)
    # Paid at 09:05, shipped at 18:00 the same day: 8 h 55 min each.
    await orders_on(api, day, 3, on_time=3, prefix="H")

    result = await api.gql(
        """query($d: Date!) { handlingTimes(from: $d, to: $d) { day shipped averageHours }
          returnRates(from: $d, to: $d, region: "上海市") { region returns shipped rate } }""",
        {"d": day.isoformat()},
        as_="finance",
    )

    assert "errors" not in result, result
    [handled] = result["data"]["handlingTimes"]
    assert handled["shipped"] == 3
    assert handled["averageHours"] == pytest.approx(8 + 55 / 60)
    [returns] = result["data"]["returnRates"]
    assert (returns["region"], returns["returns"], returns["shipped"]) == ("上海市", 0, 3)
    assert returns["rate"] == 0


async def test_the_categories_to_slice_by_are_listed(api: Api) -> None:
    result = await api.gql("{ kpiCategories }", as_="purchasing")

    assert "errors" not in result, result
    assert result["data"]["kpiCategories"] == sorted(set(result["data"]["kpiCategories"]))
    assert {"DIGITAL", "HOME", "FOOD"} <= set(result["data"]["kpiCategories"])


async def test_completeness_slices_agree_between_the_nightly_snapshot_and_live(
    any_api: Api,
) -> None:
    """The night computes every slice at once; today computes the one asked for: both agree."""
    from domain.kpis import service as kpis_service

    async with any_api.app.state.runtime.sessions() as session:
        every = await kpis_service.completeness(session)
        for key in (("*", "*", "*"), ("JD", "*", "*"), ("TAOBAO", "*", "*"), ("*", "HOME", "*")):
            assert every[key] == (await kpis_service.completeness(session, key))[key], key
        assert every[("JD", "*", "*")][1] < every[("*", "*", "*")][1]
