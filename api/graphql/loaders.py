"""Per-request DataLoaders, so nested lists cost one query per level, not one per parent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from domain.customers import service as customers_service
from domain.errors import BadInput
from domain.orders import service as orders_service
from domain.orders.models import Order

if TYPE_CHECKING:
    from api.context import RequestContext

MAX_NESTED = 50


def customer_orders(
    ctx: RequestContext, first: int, include: frozenset[str] = orders_service.EVERYTHING
) -> DataLoader[int, list[Order]]:
    if not 0 <= first <= MAX_NESTED:
        raise BadInput(f"`first` on Customer.orders must be between 0 and {MAX_NESTED}")
    key = f"customer_orders:{first}"
    loader = ctx.loaders.get(key)
    if loader is None:

        async def load(customer_ids: Sequence[int]) -> list[list[Order]]:
            async with ctx.read(replica=True) as session:
                grouped = await orders_service.orders_of_customers(
                    session=session,
                    actor=ctx.require_actor(),
                    customer_ids=customer_ids,
                    limit=first,
                    include=include,
                )
            return [grouped.get(cid, []) for cid in customer_ids]

        loader = DataLoader(load_fn=load)
        ctx.loaders[key] = loader
    return loader


def customer_stats(ctx: RequestContext) -> DataLoader[int, Any]:
    """Order count, money spent, last order, channels and returns of each customer on the
    page, in two aggregate statements (domain/customers/service.py: stats_of)."""
    loader = ctx.loaders.get("customer_stats")
    if loader is None:

        async def load(customer_ids: Sequence[int]) -> list[Any]:
            async with ctx.read(replica=True) as session:
                found = await customers_service.stats_of(
                    session=session, actor=ctx.require_actor(), customer_ids=customer_ids
                )
            return [found[cid] for cid in customer_ids]

        loader = DataLoader(load_fn=load)
        ctx.loaders["customer_stats"] = loader
    return loader


def customer_history(ctx: RequestContext) -> DataLoader[int, list[Any]]:
    loader = ctx.loaders.get("customer_history")
    if loader is None:

        async def load(customer_ids: Sequence[int]) -> list[list[Any]]:
            async with ctx.read() as session:
                found = await customers_service.history_of(
                    session=session, customer_ids=customer_ids
                )
            return [found[cid] for cid in customer_ids]

        loader = DataLoader(load_fn=load)
        ctx.loaders["customer_history"] = loader
    return loader
