"""Orders that wait more than two hours without reaching PICKING are escalated within a minute
of crossing, once, with an event — run by the scheduler with a frozen clock."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from api.worker import scheduled_jobs
from domain.db import utcnow
from domain.events.models import OutboxEvent
from domain.jobs.scheduler import Job, run_due
from tests.api.test_intake import channel_order, ingest
from tests.conftest import Api, db_id, errors_of, outbox_head

ESCALATED = """query($e: Boolean) { orders(first: 100, filter: {escalated: $e}) {
  edges { node { id status escalatedAt } } } }"""


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat()


def _escalation_job(api: Api) -> Job:
    [job] = [j for j in scheduled_jobs(api.app.state.runtime) if j.name == "orders.escalate"]
    return job


async def _run(api: Api, now: dt.datetime) -> list[str]:
    runtime = api.app.state.runtime
    return await run_due(sessions=runtime.sessions, jobs=[_escalation_job(api)], now=now)


async def _escalated(api: Api) -> dict[str, str]:
    found = await api.gql(ESCALATED, {"e": True}, as_="ops")
    return {e["node"]["id"]: e["node"]["escalatedAt"] for e in found["data"]["orders"]["edges"]}


async def test_an_order_is_escalated_within_a_minute_of_crossing_two_hours(any_api: Api) -> None:
    api = any_api
    now = utcnow().replace(second=0, microsecond=0) - dt.timedelta(minutes=10)
    created = now - dt.timedelta(hours=2, seconds=-30)  # crosses 2 h at now + 30 s
    [order] = await ingest(api, [channel_order("TB-E-1", createdAt=_iso(created))])

    await _run(api, now + dt.timedelta(seconds=45))  # slot `now`: not two hours yet
    before = await _escalated(api)
    await _run(api, now + dt.timedelta(minutes=1, seconds=5))  # slot now + 1 min
    after = await _escalated(api)

    assert order["order"]["id"] not in before
    escalated_at = dt.datetime.fromisoformat(after[order["order"]["id"]])
    assert escalated_at == now + dt.timedelta(minutes=1)
    assert (
        dt.timedelta(0)
        < escalated_at - (created + dt.timedelta(hours=2))
        <= dt.timedelta(minutes=1)
    )


async def test_only_orders_short_of_picking_are_escalated_and_only_once(any_api: Api) -> None:
    api = any_api
    start = await outbox_head(api)  # the demo's waiting orders were escalated when it loaded
    now = utcnow().replace(second=0, microsecond=0)
    old = _iso(now - dt.timedelta(hours=3))
    recent = _iso(now - dt.timedelta(hours=1, minutes=50))
    paid, unpaid, young, picking = await ingest(
        api,
        [
            channel_order("TB-E-2", createdAt=old),
            channel_order("TB-E-3", createdAt=old, status="PENDING_PAYMENT", paidAt=None),
            channel_order("TB-E-4", createdAt=recent),
            channel_order("TB-E-5", createdAt=old),
        ],
    )
    await api.gql(
        "mutation($id: ID!) { transitionOrder(id: $id, to: PICKING) { status } }",
        {"id": picking["order"]["id"]},
        as_="ops",
    )

    await _run(api, now + dt.timedelta(seconds=5))
    first = await _escalated(api)
    await _run(api, now + dt.timedelta(minutes=5, seconds=5))
    second = await _escalated(api)
    not_escalated = await api.gql(ESCALATED, {"e": False}, as_="ops")

    assert paid["order"]["id"] in first
    assert unpaid["order"]["id"] in first
    assert young["order"]["id"] not in first
    assert picking["order"]["id"] not in first
    assert second[paid["order"]["id"]] == first[paid["order"]["id"]]  # set once
    others = {e["node"]["id"] for e in not_escalated["data"]["orders"]["edges"]}
    assert picking["order"]["id"] in others
    async with api.app.state.runtime.sessions() as session:
        escalations = (
            await session.scalars(
                select(OutboxEvent.aggregate_id).where(
                    OutboxEvent.type == "ORDER_ESCALATED", OutboxEvent.seq > start
                )
            )
        ).all()
    assert sorted(escalations) == sorted(str(db_id(o["order"]["id"])) for o in (paid, unpaid))


async def test_the_escalation_filter_needs_the_field_in_full(api: Api) -> None:
    result = await api.gql(ESCALATED, {"e": True}, as_="admin")
    assert ("FORBIDDEN", "Order.escalatedAt") in errors_of(result)


def test_the_escalation_job_runs_every_minute_in_the_business_timezone(api: Api) -> None:
    job = _escalation_job(api)
    assert job.every == dt.timedelta(minutes=1)
    assert job.zone == "Asia/Shanghai"
    assert job.last_slot(dt.datetime(2026, 11, 26, 2, 3, 59, tzinfo=dt.UTC)) == dt.datetime(
        2026, 11, 26, 2, 3, tzinfo=dt.UTC
    )


async def test_operations_gets_a_task_listing_the_escalated_orders(any_api: Api) -> None:
    api = any_api
    now = utcnow().replace(second=0, microsecond=0)
    [waiting] = await ingest(
        api, [channel_order("TB-E-9", createdAt=_iso(now - dt.timedelta(hours=3)))]
    )
    tasks = "{ tasks(status: OPEN, first: 50) { edges { node { kind assignee details } } } }"
    before = await api.gql(tasks, as_="ops")

    await _run(api, now + dt.timedelta(seconds=5))
    after = await api.gql(tasks, as_="ops")
    warehouse_view = await api.gql(tasks, as_="warehouse")

    def escalations(result: dict) -> list[dict]:
        return [
            e["node"] for e in result["data"]["tasks"]["edges"] if e["node"]["kind"] == "ESCALATION"
        ]

    [task] = [t for t in escalations(after) if t not in escalations(before)]
    assert task["assignee"] == "ops"
    number = (await api.gql(
        "query($id: ID!) { order(id: $id) { number } }", {"id": waiting["order"]["id"]}, as_="ops"
    ))["data"]["order"]["number"]  # fmt: skip
    assert number in [o["number"] for o in task["details"]["orders"]]
    assert escalations(warehouse_view) == []


async def test_escalating_an_order_does_not_void_a_pending_signed_price_change(
    any_api: Api,
) -> None:
    """Escalation is a flag the minute job sets, not a change of the order: a price change a
    salesperson asked for before it still applies when the approver signs (issue #29, 7)."""
    from tests.api.test_approvals import APPROVE, ORDER, price_request, registered

    api = any_api
    order, request = await price_request(api)
    signer = await registered(api)

    await _run(api, utcnow() + dt.timedelta(hours=3))
    escalated = await _escalated(api)
    approved = await api.gql(
        APPROVE,
        {"id": request["id"], "sig": signer.sign(request["signingPayload"])},
        as_="approver",
    )

    assert order["id"] in escalated
    assert errors_of(approved) == []
    assert approved["data"]["approveRequest"]["status"] == "APPROVED"
    after = await api.gql(ORDER, {"id": order["id"]}, as_="finance")
    assert after["data"]["order"]["lines"][0]["unitPrice"] == "88.80"


async def test_a_channel_update_racing_the_escalation_waits_and_is_applied_not_conflict(
    pg_api: Api,
) -> None:
    """Issue #29: a channel's status update for an order the escalation job had locked was
    answered CONFLICT (the contract's "other content under the same key") and rolled back the
    batch's other orders. It waits for the job's transaction and applies; every committed
    order version has its event (the pg_api fixture checks)."""
    import asyncio

    from sqlalchemy import text

    from domain.intake.escalation import escalate_waiting
    from tests.api.test_intake import channel_order, ingest

    api = pg_api
    made = (utcnow() - dt.timedelta(hours=3)).isoformat()
    [first] = await ingest(api, [channel_order("TB-RACE-1", createdAt=made, paidAt=made)])
    await api.token("integration")
    runtime = api.app.state.runtime
    async with runtime.sessions() as job:
        escalated = await escalate_waiting(session=job, now=utcnow(), after=dt.timedelta(hours=2))
        assert db_id(first["order"]["id"]) in escalated  # its row is locked until we commit
        batch = asyncio.create_task(
            ingest(
                api,
                [
                    channel_order(
                        "TB-RACE-1",
                        createdAt=made,
                        paidAt=made,
                        status="SHIPPED",
                        carrier="SF",
                        trackingNumber="SF5550000001",
                    ),
                    channel_order("TB-RACE-2"),
                ],
            )
        )
        try:
            deadline = asyncio.get_running_loop().time() + 30
            async with runtime.engine.connect() as probe:  # until the batch waits on the lock
                while not (
                    await probe.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND datname = current_database() "
                            "AND pid <> pg_backend_pid()"
                        )
                    )
                ):
                    assert asyncio.get_running_loop().time() < deadline, "the batch never waited"
                    assert not batch.done(), batch.result()
                    await probe.rollback()  # pg_stat_activity is a snapshot per transaction
                    await asyncio.sleep(0.05)
            await job.commit()
        finally:  # the batch ends in this test, whatever happened
            await job.rollback()
            await asyncio.gather(batch, return_exceptions=True)
    updated, created = await batch

    assert (updated["outcome"], updated["order"]["status"]) == ("UPDATED", "SHIPPED")
    assert created["outcome"] == "CREATED"
