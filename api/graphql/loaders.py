"""Per-request DataLoaders, so nested lists cost one query per level, not one per parent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

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
