"""The three KPIs, their supporting series, and the three-day rule.

Definitions (per business day in the business timezone, sliced by channel and product
category; `*` is every channel or category):

- ORDER_TIMELINESS = orders of the day shipped on that same business day / orders of the day.
  "Orders of the day" are those whose business day it is, less the ones cancelled (a
  cancelled order needs no shipping). An order is in a category when one of its lines is.
- STOCK_ACCURACY = counted SKU lines whose counted quantity equals the system's (as of the
  count) / SKU lines counted, for counts taken that day. Stock has no channel: the channel
  slice reads the same value.
- CUSTOMER_COMPLETENESS = customers with a valid phone, a valid email and an address / all
  customers (domain/customers/cleanse.py), as of the end of the day: kept daily by the worker,
  live for today. Sliced by channel (customers who ordered there) and category (who bought it).
- Supporting: HANDLING_SECONDS (paid → shipped, summed over the orders shipped that day /
  their number) and RETURN_RATE by region (returns registered that day for parcels to a
  province / orders shipped to it that day).

Breach is exact: `numerator / denominator < threshold`, compared in integers (94.9% breaches a
95% threshold, 95.0% does not). A day without data (no orders, no counts) has no value and
breaches nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.access import Action
from domain.actor import Actor
from domain.audit.service import Subject
from domain.catalog.models import Product
from domain.channels.models import Channel
from domain.customers.cleanse import complete_condition
from domain.customers.models import Customer
from domain.errors import BadInput
from domain.inventory.models import StockCount, StockCountLine, StockReturn
from domain.kpis.models import ALL, KpiFact
from domain.kpis.rules import (
    BREACH_DAYS,
    COMPLETENESS,
    DEFAULT_ASSIGNEES,
    HANDLING,
    KPIS,
    MAX_DAYS,
    RETURN_RATE,
    STOCK_ACCURACY,
    TIMELINESS,
    Thresholds,
)
from domain.orders.models import Order, OrderLine
from domain.orders.rules import OrderStatus
from domain.tasks import service as tasks


@dataclass(frozen=True)
class Value:
    day: dt.date
    name: str
    channel: str
    category: str
    numerator: int
    denominator: int
    threshold: Decimal | None = None
    region: str = ALL
    as_of: dt.datetime | None = None  # when stored figures were computed; None: live

    @property
    def ratio(self) -> float | None:
        return self.numerator / self.denominator if self.denominator else None

    @property
    def breached(self) -> bool:
        if not self.denominator or self.threshold is None:
            return False
        # numerator / denominator < threshold / 100, in integers: exact at the boundary.
        return self.numerator * 100 < self.threshold * self.denominator


def day_bounds(day: dt.date, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=zone)
    return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def _key(channel: str | None, category: str | None, region: str = ALL) -> tuple[str, str, str]:
    return (channel or ALL, category or ALL, region)


async def _timeliness(
    session: AsyncSession, day: dt.date, end: dt.datetime
) -> dict[tuple[str, str, str], tuple[int, int]]:
    # Every channel named, so the (channel, business day) index serves the look-up.
    channels = list(await session.scalars(select(Channel.code)))
    live = and_(Order.channel_code.in_(channels), Order.status != OrderStatus.CANCELLED)
    on_time = and_(Order.shipped_at.is_not(None), Order.shipped_at < end)
    found: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    by_channel = (
        select(Order.channel_code, func.count(), func.count().filter(on_time))
        .where(Order.business_day == day, live)
        .group_by(Order.channel_code)
    )
    for channel, total, shipped in (await session.execute(by_channel)).all():
        for key in (_key(channel, None), _key(None, None)):
            found[key][0] += shipped
            found[key][1] += total
    # An order is in each category one of its lines is in: one row per order and category,
    # counted per (channel, category), and per category over every channel.
    per_category = (
        select(
            Order.channel_code.label("channel"),
            Product.category.label("category"),
            Order.id.label("order_id"),
            func.max(case((on_time, 1), else_=0)).label("on_time"),
        )
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Product, Product.sku == OrderLine.sku)
        .where(Order.business_day == day, live)
        .group_by(Order.channel_code, Product.category, Order.id)
        .subquery()
    )
    rows = await session.execute(
        select(
            per_category.c.channel,
            per_category.c.category,
            func.sum(per_category.c.on_time),
            func.count(),
        ).group_by(per_category.c.channel, per_category.c.category)
    )
    for channel, category, shipped, total in rows.all():
        for key in (_key(channel, category), _key(None, category)):
            found[key][0] += int(shipped or 0)
            found[key][1] += int(total)
    return {k: (v[0], v[1]) for k, v in found.items()}


async def _accuracy(
    session: AsyncSession, start: dt.datetime, end: dt.datetime
) -> dict[tuple[str, str, str], tuple[int, int]]:
    found: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    exact = case((StockCountLine.system == StockCountLine.counted, 1), else_=0)
    rows = await session.execute(
        select(Product.category, func.sum(exact), func.count())
        .join(StockCount, StockCount.id == StockCountLine.count_id)
        .join(Product, Product.sku == StockCountLine.sku)
        .where(StockCount.counted_at >= start, StockCount.counted_at < end)
        .group_by(Product.category)
    )
    for category, matched, total in rows.all():
        for key in (_key(None, None), _key(None, category)):
            found[key][0] += int(matched or 0)
            found[key][1] += int(total)
    return {k: (v[0], v[1]) for k, v in found.items()}


async def completeness(
    session: AsyncSession, only: tuple[str, str, str] | None = None
) -> dict[tuple[str, str, str], tuple[int, int]]:
    """As of now, for every channel and category slice (a customer with orders on two channels
    counts in each, once in `*`), or for the one slice `only`."""
    active = Customer.merged_into_id.is_(None)
    complete = func.count().filter(complete_condition())
    found: dict[tuple[str, str, str], tuple[int, int]] = {}
    if only is not None and only != _key(None, None):
        channel, category, _ = only
        stmt = select(func.count(), complete).where(active)
        if channel != ALL:
            stmt = stmt.where(
                exists().where(Order.customer_id == Customer.id, Order.channel_code == channel)
            )
        if category != ALL:
            stmt = stmt.where(
                exists()
                .where(Order.customer_id == Customer.id)
                .where(OrderLine.order_id == Order.id)
                .where(Product.sku == OrderLine.sku, Product.category == category)
            )
        total, done = (await session.execute(stmt)).one()
        return {only: (int(done), int(total))}
    total, done = (await session.execute(select(func.count(), complete).where(active))).one()
    found[_key(None, None)] = (int(done), int(total))
    if only is not None:
        return found
    # Whether each customer is complete, decided once per customer (not once per order).
    flags = (
        select(Customer.id.label("id"), case((complete_condition(), 1), else_=0).label("ok"))
        .where(active)
        .subquery()
    )
    ordered_on = (
        select(Order.channel_code.label("slice"), Order.customer_id.label("customer_id"))
        .where(Order.customer_id.is_not(None))
        .distinct()
        .subquery()
    )
    bought = (
        select(Product.category.label("slice"), Order.customer_id.label("customer_id"))
        .join(OrderLine, OrderLine.order_id == Order.id)
        .join(Product, Product.sku == OrderLine.sku)
        .where(Order.customer_id.is_not(None))
        .distinct()
        .subquery()
    )
    for pairs, as_channel in ((ordered_on, True), (bought, False)):
        rows = await session.execute(
            select(pairs.c.slice, func.count(), func.sum(flags.c.ok))
            .join(flags, flags.c.id == pairs.c.customer_id)
            .group_by(pairs.c.slice)
        )
        for value, total, done in rows.all():
            key = _key(value, None) if as_channel else _key(None, value)
            found[key] = (int(done or 0), int(total))
    return found


def _seconds_between(session: AsyncSession, earlier: Any, later: Any) -> Any:
    """Whole seconds from one timestamp column to another, in the database's own terms."""
    if session.get_bind().dialect.name == "postgresql":
        return func.floor(func.extract("epoch", later - earlier))
    # SQLite stores UTC timestamps as text; julianday differences are in days.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400)


async def _supporting(
    session: AsyncSession, start: dt.datetime, end: dt.datetime
) -> tuple[
    dict[tuple[str, str, str], tuple[int, int]], dict[tuple[str, str, str], tuple[int, int]]
]:
    handling: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    in_day = and_(Order.shipped_at >= start, Order.shipped_at < end)
    seconds = _seconds_between(session, Order.paid_at, Order.shipped_at)
    for channel, total, count in (
        await session.execute(
            select(Order.channel_code, func.sum(seconds), func.count())
            .where(in_day, Order.paid_at.is_not(None), Order.shipped_at >= Order.paid_at)
            .group_by(Order.channel_code)
        )
    ).all():
        for key in (_key(channel, None), _key(None, None)):
            handling[key][0] += int(total or 0)
            handling[key][1] += int(count)
    shipped_to: dict[tuple[str, str, str], int] = defaultdict(int)
    for province, count in (
        await session.execute(
            select(Order.ship_province, func.count()).where(in_day).group_by(Order.ship_province)
        )
    ).all():
        for region in (ALL, province):
            shipped_to[_key(None, None, region)] += int(count)
    returned: dict[tuple[str, str, str], int] = defaultdict(int)
    for province, count in (
        await session.execute(
            select(Order.ship_province, func.count(StockReturn.id))
            .join(StockReturn, StockReturn.order_id == Order.id)
            .where(StockReturn.registered_at >= start, StockReturn.registered_at < end)
            .group_by(Order.ship_province)
        )
    ).all():
        returned[_key(None, None, province)] += count
        returned[_key(None, None, ALL)] += count
    rates = {key: (returned.get(key, 0), n) for key, n in shipped_to.items()}
    return {k: (v[0], v[1]) for k, v in handling.items()}, rates


async def compute_day(
    session: AsyncSession,
    day: dt.date,
    zone: ZoneInfo,
    *,
    with_completeness: bool,
    names: Sequence[str] | None = None,
    completeness_slice: tuple[str, str, str] | None = None,
) -> list[KpiFact]:
    """The facts of one business day from the data: every KPI, or those in `names`
    (completeness only when asked, as it is the state now, not of a past day; for every
    slice, or the one given)."""
    wanted = (
        set(names) if names is not None else {TIMELINESS, STOCK_ACCURACY, HANDLING, RETURN_RATE}
    )
    start, end = day_bounds(day, zone)
    facts: list[KpiFact] = []

    def add(name: str, found: dict[tuple[str, str, str], tuple[int, int]]) -> None:
        for (channel, category, region), (numerator, denominator) in sorted(found.items()):
            facts.append(
                KpiFact(
                    day=day,
                    name=name,
                    channel=channel,
                    category=category,
                    region=region,
                    numerator=numerator,
                    denominator=denominator,
                )
            )

    if TIMELINESS in wanted:
        add(TIMELINESS, await _timeliness(session, day, end))
    if STOCK_ACCURACY in wanted:
        add(STOCK_ACCURACY, await _accuracy(session, start, end))
    if wanted & {HANDLING, RETURN_RATE}:
        handling, returns = await _supporting(session, start, end)
        add(HANDLING, handling)
        add(RETURN_RATE, returns)
    if with_completeness:
        add(COMPLETENESS, await completeness(session, completeness_slice))
    return facts


CLOSED = "CLOSED"  # a marker fact: the day was closed (so a day without orders is too)


async def close_day(
    session: AsyncSession,
    day: dt.date,
    zone: ZoneInfo,
    now: dt.datetime,
    *,
    with_completeness: bool = True,
) -> int:
    """Store a business day's facts (replacing any): the worker, after the day ends. A day
    closed again later (late data) keeps its completeness snapshot, which was of that day."""
    facts = await compute_day(session, day, zone, with_completeness=with_completeness)
    facts.append(KpiFact(day=day, name=CLOSED, numerator=0, denominator=0))
    kept = [] if with_completeness else [COMPLETENESS]
    await session.execute(delete(KpiFact).where(KpiFact.day == day, KpiFact.name.not_in(kept)))
    for fact in facts:
        fact.computed_at = now
    session.add_all(facts)
    await session.flush()
    return len(facts)


async def refresh_completeness(session: AsyncSession, day: dt.date, now: dt.datetime) -> int:
    """Today's completeness snapshot, every slice (the worker, every few minutes).

    Completeness is a state, not a count of the day's events: exact figures need a pass over
    every customer (and, per channel or category, over who ordered what), which grows with the
    customer base. Read live, that pass made a 90-day KPI query 12 times slower at a million
    orders than at ten thousand; a snapshot taken every few minutes keeps the query's cost
    flat, is exact as of its time (`as_of`), and is replaced when the day closes."""
    facts = [
        KpiFact(
            day=day,
            name=COMPLETENESS,
            channel=channel,
            category=category,
            region=region,
            numerator=numerator,
            denominator=denominator,
            computed_at=now,
        )
        for (channel, category, region), (numerator, denominator) in sorted(
            (await completeness(session)).items()
        )
    ]
    await session.execute(delete(KpiFact).where(KpiFact.day == day, KpiFact.name == COMPLETENESS))
    session.add_all(facts)
    await session.flush()
    return len(facts)


async def unclosed_days(session: AsyncSession, days: Sequence[dt.date]) -> list[dt.date]:
    """Which of these days have no stored facts (never closed, or invalidated since)."""
    if not days:
        return []
    closed = set(
        await session.scalars(
            select(KpiFact.day).where(
                KpiFact.name == CLOSED, KpiFact.day.between(min(days), max(days))
            )
        )
    )
    return [d for d in days if d not in closed]


async def invalidate(session: AsyncSession, days: Iterable[dt.date], names: Sequence[str]) -> None:
    """Late data for closed days (an order landing on a past business day, a count dated in
    the past, a cancellation): their stored facts go, and are computed live until the worker
    closes those days again. Completeness snapshots stay (they are of their day)."""
    days = sorted(set(days))
    if days:
        await session.execute(
            delete(KpiFact).where(KpiFact.day.in_(days), KpiFact.name.in_([*names, CLOSED]))
        )


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise BadInput("`to` is before `from`")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadInput(f"at most {MAX_DAYS} days at a time")
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


async def values(
    *,
    session: AsyncSession,
    actor: Actor,
    start: dt.date,
    end: dt.date,
    channel: str | None,
    category: str | None,
    zone: ZoneInfo,
    thresholds: Thresholds,
    today: dt.date,
    names: Sequence[str] = KPIS,
    region: str | None = None,
) -> list[Value]:
    """Each KPI for each day of the period and the slice: stored facts for closed days, live
    for the rest. Days after today have no value."""
    actor.access.require(Action.KPI_READ)
    days = [d for d in _days(start, end) if d <= today]
    stored: dict[tuple[dt.date, str], tuple[int, int, dt.datetime]] = {}
    closed: set[dt.date] = set()
    if days:
        rows = await session.execute(
            select(
                KpiFact.day,
                KpiFact.name,
                KpiFact.channel,
                KpiFact.category,
                KpiFact.region,
                KpiFact.numerator,
                KpiFact.denominator,
                KpiFact.computed_at,
            ).where(
                KpiFact.day.between(days[0], days[-1]),
                KpiFact.name.in_([*names, CLOSED, COMPLETENESS]),
            )
        )
        for day, name, ch, cat, reg, numerator, denominator, computed in rows.all():
            if name == CLOSED:
                closed.add(day)
            elif (ch, cat, reg) == _slice(name, channel, category, region):
                stored[(day, name)] = (numerator, denominator, computed)
    found: list[Value] = []
    for day in days:
        live: dict[str, dict[tuple[str, str, str], tuple[int, int]]] | None = None
        for name in names:
            as_of: dt.datetime | None = None
            if day in closed or (name == COMPLETENESS and (day != today or (day, name) in stored)):
                # Completeness is a snapshot of its day: without one, a past day has none, and
                # today's is the worker's latest (live only until it has taken one).
                numerator, denominator, as_of = stored.get((day, name), (0, 0, None))
                pair = (numerator, denominator)
            else:
                if live is None:
                    facts = await compute_day(
                        session,
                        day,
                        zone,
                        with_completeness=(
                            day == today
                            and COMPLETENESS in names
                            and (day, COMPLETENESS) not in stored
                        ),
                        names=names,
                        completeness_slice=_slice(COMPLETENESS, channel, category, region),
                    )
                    live = defaultdict(dict)
                    for f in facts:
                        live[f.name][(f.channel, f.category, f.region)] = (
                            f.numerator,
                            f.denominator,
                        )
                pair = live.get(name, {}).get(_slice(name, channel, category, region), (0, 0))
            found.append(
                Value(
                    day=day,
                    name=name,
                    channel=channel or ALL,
                    category=category or ALL,
                    region=region or ALL,
                    numerator=pair[0],
                    denominator=pair[1],
                    threshold=thresholds.of(name) if name in KPIS else None,
                    as_of=as_of,
                )
            )
    return found


def _slice(
    name: str, channel: str | None, category: str | None, region: str | None
) -> tuple[str, str, str]:
    if name == STOCK_ACCURACY:
        return (ALL, category or ALL, ALL)  # stock is not per channel
    if name == HANDLING:
        return (channel or ALL, ALL, ALL)
    if name == RETURN_RATE:
        return (ALL, ALL, region or ALL)
    return (channel or ALL, category or ALL, ALL)


async def three_day_rule(
    *,
    session: AsyncSession,
    who: Subject,
    day: dt.date,
    thresholds: Thresholds,
    owners: dict[str, int],
    now: dt.datetime,
) -> list[str]:
    """After `day` is closed: each KPI below its threshold on `day` and the two business days
    before it (stored facts, every channel and category) gets one task, unless one is open."""
    window = [day - dt.timedelta(days=n) for n in range(BREACH_DAYS - 1, -1, -1)]
    rows = await session.execute(
        select(KpiFact.day, KpiFact.name, KpiFact.numerator, KpiFact.denominator).where(
            KpiFact.day.in_(window),
            KpiFact.name.in_(list(KPIS)),
            KpiFact.channel == ALL,
            KpiFact.category == ALL,
            KpiFact.region == ALL,
        )
    )
    by_name: dict[str, dict[dt.date, Value]] = defaultdict(dict)
    for d, name, numerator, denominator in rows.all():
        by_name[name][d] = Value(d, name, ALL, ALL, numerator, denominator, thresholds.of(name))
    raised = []
    for name in KPIS:
        series = [by_name[name].get(d) for d in window]
        if not all(v is not None and v.breached for v in series):
            continue
        evidence = [
            {
                "day": v.day.isoformat(),
                "value": f"{Decimal(v.numerator * 100) / Decimal(v.denominator):.2f}%",
                "numerator": v.numerator,
                "denominator": v.denominator,
            }
            for v in series
            if v is not None
        ]
        task = await tasks.raise_task(
            session,
            kind="KPI_BREACH",
            title=(
                f"{name.replace('_', ' ').lower()} below {thresholds.of(name)}% for "
                f"{BREACH_DAYS} business days (to {day.isoformat()})"
            ),
            details={"kpi": name, "threshold": f"{thresholds.of(name)}%", "days": evidence},
            by=who,
            assignee_user_id=owners.get(name),
            assignee_role=None if name in owners else DEFAULT_ASSIGNEES[name],
            dedupe_key=f"kpi:{name}",
            now=now,
        )
        if task is not None:
            raised.append(name)
    return raised


async def categories(session: AsyncSession) -> list[str]:
    return list(
        await session.scalars(select(Product.category).distinct().order_by(Product.category))
    )
