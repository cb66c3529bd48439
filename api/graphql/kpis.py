"""KPIs for holders of `kpi:read` (ops, finance, purchasing, compliance): the three KPIs per
business day and slice, and the supporting series (domain/kpis/service.py)."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.types import Channel
from domain.access import Action
from domain.kpis import service as kpis
from domain.values import clean_text


@strawberry.enum(description="The three KPIs.")
class KpiName(Enum):
    ORDER_TIMELINESS = "ORDER_TIMELINESS"
    STOCK_ACCURACY = "STOCK_ACCURACY"
    CUSTOMER_COMPLETENESS = "CUSTOMER_COMPLETENESS"


@strawberry.type(description="One KPI on one business day, for one slice.")
class KpiValue:
    day: dt.date = strawberry.field(description="The business day (business timezone).")
    channel: str = strawberry.field(description="The channel, or * for all.")
    category: str = strawberry.field(description="The product category, or * for all.")
    name: KpiName = strawberry.field(description="Which KPI.")
    value: float | None = strawberry.field(
        description="numerator / denominator, 0 to 1; null on a day without data."
    )
    numerator: int = strawberry.field(description="What met the definition.")
    denominator: int = strawberry.field(description="What was measured.")
    threshold: float = strawberry.field(description="The minimum, 0 to 1 (a setting).")
    breached: bool = strawberry.field(
        description="value < threshold, compared exactly (94.9% breaches 95%, 95.0% does not)."
    )
    as_of: dt.datetime | None = strawberry.field(
        description=(
            "When stored figures were computed: a closed day's when it closed, today's "
            "customer completeness when the worker last took it (every five minutes); null "
            "when computed for this answer."
        )
    )


@strawberry.type(
    description="Average handling time (paid to shipped) of the orders shipped on a day."
)
class HandlingTime:
    day: dt.date = strawberry.field(description="The business day the orders shipped.")
    shipped: int = strawberry.field(description="Orders shipped that day with a payment time.")
    average_hours: float | None = strawberry.field(description="Mean hours from paid to shipped.")


@strawberry.type(description="Returns registered on a day against the orders shipped that day.")
class ReturnRate:
    day: dt.date = strawberry.field(description="The business day.")
    region: str = strawberry.field(description="The province shipped to, or * for all.")
    returns: int = strawberry.field(description="Returns registered that day.")
    shipped: int = strawberry.field(description="Orders shipped there that day.")
    rate: float | None = strawberry.field(description="returns / shipped; null without shipments.")


def _category(category: str | None) -> str | None:
    if category is None:
        return None
    return clean_text(category, what="category", max_length=32, required=True)


async def _values(
    info: Info[RequestContext, None],
    start: dt.date,
    end: dt.date,
    channel: Channel | None,
    category: str | None,
    names: tuple[str, ...],
    region: str | None = None,
) -> list[kpis.Value]:
    ctx = info.context
    actor = ctx.require_actor()
    settings = ctx.runtime.settings
    zone = settings.timezone
    async with ctx.read() as session:
        return await kpis.values(
            session=session,
            actor=actor,
            start=start,
            end=end,
            channel=channel.value if channel is not None else None,
            category=_category(category),
            zone=zone,
            thresholds=settings.kpi_thresholds,
            today=ctx.runtime.clock().astimezone(zone).date(),
            names=names,
            region=region,
        )


@strawberry.type
class KpiQueries:
    @strawberry.field(
        description=(
            "Each KPI for each business day from `from` to `to` (at most 366 days, none after "
            "today), for one channel and/or product category or all. Holders of kpi:read."
        )
    )
    async def kpis(
        self,
        info: Info[RequestContext, None],
        start: Annotated[dt.date, strawberry.argument(name="from")],
        to: dt.date,
        channel: Channel | None = None,
        category: str | None = None,
    ) -> list[KpiValue] | None:
        found = await _values(info, start, to, channel, category, kpis.KPIS)
        return [
            KpiValue(
                day=v.day,
                channel=v.channel,
                category=v.category,
                name=KpiName(v.name),
                value=v.ratio,
                numerator=v.numerator,
                denominator=v.denominator,
                threshold=float(v.threshold or 0) / 100,
                breached=v.breached,
                as_of=v.as_of,
            )
            for v in found
        ]

    @strawberry.field(description="Average paid-to-shipped hours per business day (kpi:read).")
    async def handling_times(
        self,
        info: Info[RequestContext, None],
        start: Annotated[dt.date, strawberry.argument(name="from")],
        to: dt.date,
        channel: Channel | None = None,
    ) -> list[HandlingTime] | None:
        found = await _values(info, start, to, channel, None, (kpis.HANDLING,))
        return [
            HandlingTime(
                day=v.day,
                shipped=v.denominator,
                average_hours=v.numerator / v.denominator / 3600 if v.denominator else None,
            )
            for v in found
        ]

    @strawberry.field(
        description="Return rate per business day, for one province or all (kpi:read)."
    )
    async def return_rates(
        self,
        info: Info[RequestContext, None],
        start: Annotated[dt.date, strawberry.argument(name="from")],
        to: dt.date,
        region: str | None = None,
    ) -> list[ReturnRate] | None:
        place = clean_text(region, what="region", max_length=50, required=True) if region else None
        found = await _values(info, start, to, None, None, (kpis.RETURN_RATE,), place)
        return [
            ReturnRate(
                day=v.day,
                region=v.region,
                returns=v.numerator,
                shipped=v.denominator,
                rate=v.ratio,
            )
            for v in found
        ]

    @strawberry.field(description="The product categories KPIs can be sliced by (kpi:read).")
    async def kpi_categories(self, info: Info[RequestContext, None]) -> list[str] | None:
        ctx = info.context
        actor = ctx.require_actor()
        actor.access.require(Action.KPI_READ)
        async with ctx.read() as session:
            return await kpis.categories(session)
