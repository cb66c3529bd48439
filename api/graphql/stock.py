"""Stock queries."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.relay import Connection, selects
from api.graphql.types import StockItem
from domain.catalog import service as stock_service
from domain.catalog.service import StockFilter as DomainStockFilter


@strawberry.input
class StockFilter:
    sku: str | None = None
    warehouse: str | None = None
    below_safety_threshold: bool | None = None

    def to_domain(self) -> DomainStockFilter:
        return DomainStockFilter(
            sku=self.sku,
            warehouse=self.warehouse,
            below_safety_threshold=self.below_safety_threshold,
        )


@strawberry.type
class StockQueries:
    @strawberry.field
    async def stock_items(
        self,
        info: Info[RequestContext, None],
        first: int | None = 20,
        after: str | None = None,
        filter: StockFilter | None = None,
    ) -> Connection[StockItem] | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read(replica=True) as session:
            page = await stock_service.list_stock(
                session=session,
                actor=actor,
                flt=filter.to_domain() if filter else None,
                first=first,
                after=after,
                want_total=selects(info, "totalCount"),
            )
        return Connection.from_page(page, lambda s: StockItem.from_model(s, actor.access))

    @strawberry.field(description="Stock of a SKU, in the named warehouse or the fullest one.")
    async def stock_item(
        self, info: Info[RequestContext, None], sku: str, warehouse: str | None = None
    ) -> StockItem | None:
        ctx = info.context
        actor = ctx.require_actor()
        async with ctx.read(replica=True) as session:
            model = await stock_service.get_stock_item(
                session=session, actor=actor, sku=sku, warehouse=warehouse
            )
        return StockItem.from_model(model, actor.access)
