"""`ordergate worker`: delivers order events to webhooks, in a process of its own.

One round: fan the next committed outbox events out into deliveries, then send what is due.
Several workers may run against one PostgreSQL database (the fan-out cursor is row-locked and
deliveries are claimed with SKIP LOCKED); a worker killed mid-round loses nothing: what it had
not committed is sent again by the next round of any worker (consumers de-duplicate on the
event id). In development `serve` runs the same rounds itself (ORDERGATE_WORKER_IN_SERVER), so
`make run` needs one command.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time
from typing import Any

import httpx
from sqlalchemy import select

from api.outage import is_unavailable
from api.runtime import Runtime
from api.settings import Settings
from domain.actor import SYSTEM_ORIGIN
from domain.audit import service as audit
from domain.audit.service import Subject
from domain.customers import cleanse as customer_cleanse
from domain.events import webhooks
from domain.intake import escalation, reconciliation
from domain.inventory import service as inventory
from domain.jobs.scheduler import Job, run_due
from domain.kpis import service as kpis
from domain.users.models import User

log = logging.getLogger("ordergate.worker")
IDLE_SECONDS = 0.5
CHORES_SECONDS = 1.0  # how often a busy worker looks at its scheduled jobs and mail
# How often today's customer-completeness snapshot is retaken (domain/kpis/service.py).
COMPLETENESS_MINUTES = 5


def scheduled_jobs(runtime: Runtime) -> list[Job]:
    """The jobs this deployment runs at a time of day, each in a named zone."""

    async def daily_checkpoint(_slot: dt.datetime) -> None:
        # A signed statement of the audit chain's head at the start of each business day.
        async with runtime.sessions() as session:
            await audit.create_checkpoint(session=session, key=runtime.checkpoint_key)
            await session.commit()

    async def escalate(slot: dt.datetime) -> None:
        async with runtime.sessions() as session:
            await escalation.escalate_waiting(
                session=session,
                now=slot,
                after=dt.timedelta(minutes=runtime.settings.escalate_after_minutes),
            )
            await session.commit()

    async def in_batches(step: Any) -> None:
        """Run `step(session=…, now=…)` in transactions of its own until a batch is short."""
        while True:
            async with runtime.sessions() as session:
                done = await step(session=session, now=runtime.clock())
                await session.commit()
            if len(done) < inventory.EXPIRE_BATCH:
                return

    async def stock_minute(_slot: dt.datetime) -> None:
        # Unpaid reservations past their TTL give their stock back; returns inspected but
        # still unregistered two hours on get a task; ended promotion pools give back what
        # they have left.
        await in_batches(inventory.expire_due)
        await in_batches(inventory.flag_overdue_returns)
        await in_batches(inventory.close_ended_pools)

    async def remind_counts(slot: dt.datetime) -> None:
        # Monday morning in the business timezone: each warehouse's weekly count is due.
        day = slot.astimezone(runtime.settings.timezone).date()
        if day.weekday() != 0:
            return
        async with runtime.sessions() as session:
            await inventory.remind_counts(session=session, day=day, now=slot)
            await session.commit()

    async def reconcile_yesterday(slot: dt.datetime) -> None:
        day = slot.astimezone(runtime.settings.timezone).date() - dt.timedelta(days=1)
        async with runtime.sessions() as session:
            await reconciliation.reconcile_day(session=session, business_day=day, now=slot)
            await session.commit()

    async def cleanse_customers(slot: dt.datetime) -> None:
        # The first day of each quarter (business time): the quarter just ended is cleansed
        # and its summary handed to operations.
        day = slot.astimezone(runtime.settings.timezone).date()
        if day.day != 1 or day.month not in (1, 4, 7, 10):
            return
        ended = day - dt.timedelta(days=1)
        quarter = f"{ended.year}-Q{(ended.month - 1) // 3 + 1}"
        who = Subject(None, "ordergate-worker", (), SYSTEM_ORIGIN)
        async with runtime.sessions() as session:
            report = await customer_cleanse.run(
                session=session,
                who=who,
                quarter=quarter,
                timezone=runtime.settings.timezone,
                now=slot,
            )
            await customer_cleanse.hand_over(session=session, who=who, report=report, now=slot)
            await session.commit()

    async def close_kpi_days(slot: dt.datetime) -> None:
        # Just after midnight (business time): yesterday's KPI facts, and any of the last 90
        # days whose facts late data invalidated; then the three-day rule.
        zone = runtime.settings.timezone
        today = slot.astimezone(zone).date()
        yesterday = today - dt.timedelta(days=1)
        who = Subject(None, "ordergate-worker", (), SYSTEM_ORIGIN)
        async with runtime.sessions() as session:
            back = [today - dt.timedelta(days=n) for n in range(90, 1, -1)]
            for day in await kpis.unclosed_days(session, back):
                await kpis.close_day(session, day, zone, slot, with_completeness=False)
            await kpis.close_day(session, yesterday, zone, slot)
            owners = await kpi_owners(session)
            await kpis.three_day_rule(
                session=session,
                who=who,
                day=yesterday,
                thresholds=runtime.settings.kpi_thresholds,
                owners=owners,
                now=slot,
            )
            await session.commit()

    async def refresh_completeness(slot: dt.datetime) -> None:
        # Every few minutes: today's customer-completeness snapshot (kpis.refresh_completeness
        # says why it is not computed on every read).
        today = slot.astimezone(runtime.settings.timezone).date()
        async with runtime.sessions() as session:
            await kpis.refresh_completeness(session, today, slot)
            await session.commit()

    async def kpi_owners(session: Any) -> dict[str, int]:
        named = dict(runtime.settings.kpi_owners)
        if not named:
            return {}
        found = dict(
            (
                await session.execute(
                    select(User.username, User.id).where(User.username.in_(named.values()))
                )
            ).all()
        )
        return {kpi: found[name] for kpi, name in named.items() if name in found}

    return [
        # Just after each business day ends: its KPI facts, and the three-day rule.
        Job(
            name="kpis.close-day",
            at=dt.time(0, 10),
            zone=runtime.settings.timezone.key,
            run=close_kpi_days,
        ),
        # Every five minutes: today's customer completeness, as the dashboard shows it.
        Job(
            name="kpis.refresh-completeness",
            at=dt.time(0, 0),
            zone=runtime.settings.timezone.key,
            every=dt.timedelta(minutes=COMPLETENESS_MINUTES),
            run=refresh_completeness,
        ),
        # Quarterly, on its first day at 02:00 business time: the customer cleanse.
        Job(
            name="customers.cleanse",
            at=dt.time(2, 0),
            zone=runtime.settings.timezone.key,
            run=cleanse_customers,
        ),
        # The previous business day, for every channel that sent its snapshot of it.
        Job(
            name="channels.reconcile",
            at=dt.time(0, 30),
            zone=runtime.settings.timezone.key,
            run=reconcile_yesterday,
        ),
        Job(
            name="audit.daily-checkpoint",
            at=dt.time(0, 0),
            zone=runtime.settings.timezone.key,
            run=daily_checkpoint,
        ),
        # Every minute, so an order is escalated within a minute of crossing the threshold.
        Job(
            name="orders.escalate",
            at=dt.time(0, 0),
            zone=runtime.settings.timezone.key,
            every=dt.timedelta(minutes=1),
            run=escalate,
        ),
        # Weekly stock counts: a task per warehouse on Monday at 09:00 business time.
        Job(
            name="stock.count-reminder",
            at=dt.time(9, 0),
            zone=runtime.settings.timezone.key,
            run=remind_counts,
        ),
        # Every minute, so stock held by an unpaid checkout returns within a minute of expiry
        # (and a promotion pool's remainder within a minute of its end).
        Job(
            name="stock.expire-reservations",
            at=dt.time(0, 0),
            zone=runtime.settings.timezone.key,
            every=dt.timedelta(minutes=1),
            run=stock_minute,
        ),
    ]


async def deliver_round(
    runtime: Runtime,
    http: httpx.AsyncClient,
    jobs: list[Job],
    deliverer: webhooks.Deliverer | None = None,
    *,
    chores: bool = True,
) -> int:
    """One round: due scheduled jobs, then events; returns how much it did. `jobs` are built
    once, at start, so a schedule without a valid zone stops the worker from starting. With a
    `deliverer` (the worker's, kept across rounds) webhooks are served by tasks of their own
    and the round does not wait for them; without, the round sends what is due itself.
    Without `chores`, the round leaves the scheduled jobs and the low-stock mail out (a busy
    worker runs rounds back to back; those need a look once a second, not every round)."""
    ran = await run_due(sessions=runtime.sessions, jobs=jobs, now=runtime.clock()) if chores else []
    async with runtime.sessions() as session:
        read = await webhooks.fan_out(session=session, pdp=runtime.pdp)
        await session.commit()
    if deliverer is not None:
        sent = await deliverer.round()
    else:
        sent = await webhooks.deliver_due(
            sessions=runtime.sessions,
            http=http,
            sealer=runtime.sealer,
            timeout_seconds=runtime.settings.webhook_timeout_seconds,
            allow_private=not runtime.settings.production,
        )
    mailed = 0
    if chores:
        mailed = await inventory.mail_alerts(
            sessions=runtime.sessions, mailer=runtime.mailer, now=runtime.clock()
        )
    return len(ran) + read + sent + mailed


async def run(settings: Settings, *, once: bool = False) -> bool:
    """Rounds until SIGTERM (or one, with `once`); False when the last round failed."""
    runtime = Runtime.build(settings)
    jobs = scheduled_jobs(runtime)  # ScheduleInvalid here: the worker does not start
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    log.info("worker started", extra={"once": once})
    failed = False
    try:
        async with httpx.AsyncClient() as http:
            deliverer = webhooks.Deliverer(
                sessions=runtime.sessions,
                http=http,
                sealer=runtime.sealer,
                timeout_seconds=runtime.settings.webhook_timeout_seconds,
                allow_private=not runtime.settings.production,
            )
            try:
                chores_at = -float("inf")
                while not stop.is_set():
                    try:
                        # Jobs and mail once a second at most: on a busy worker they took 8 %
                        # of its CPU, checked every round (bench/events.py).
                        chores = time.monotonic() - chores_at >= CHORES_SECONDS
                        done = await deliver_round(
                            runtime, http, jobs, None if once else deliverer, chores=chores
                        )
                        if chores:
                            chores_at = time.monotonic()
                        failed = False
                    except Exception as exc:
                        failed, done = True, 0
                        if is_unavailable(exc):
                            # The database is away: one line per interval, no traceback a
                            # round (it was 350 KB of tracebacks in 20 s; issue #29).
                            runtime.outage.failed(exc, where="worker")
                        else:
                            log.exception("worker round failed; will try again")
                    if once:
                        break
                    if not done:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), IDLE_SECONDS)
            finally:
                await deliverer.aclose()
    finally:
        await runtime.engine.dispose()
        log.info("worker stopped")
    return not failed
