"""The yardstick for bench/read_path.py: a plain strawberry + SQLAlchemy app serving the same
50-order list (lines, customer) from the same tables, with no policy, masking, audit, limits
or rate limiting. Run by the bench under uvicorn:

    DATABASE_URL=… uvicorn --factory bench.plain_app:create_app
"""

from __future__ import annotations

import os
from decimal import Decimal

import strawberry
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from strawberry.asgi import GraphQL

from domain.db import create_engine, session_factory
from domain.orders.models import Order as OrderRow


@strawberry.type
class Customer:
    name: str
    phone: str | None


@strawberry.type
class OrderLine:
    sku: str
    quantity: int
    unit_price: str


@strawberry.type
class Order:
    number: str
    status: str
    total: str
    created_at: str
    lines: list[OrderLine]
    customer: Customer | None


@strawberry.type
class Edge:
    node: Order


@strawberry.type
class Connection:
    edges: list[Edge]


def _money(minor: int) -> str:
    return str(Decimal(minor) / 100)


def create_app() -> GraphQL:
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)
    sessions = session_factory(create_engine(url))

    @strawberry.type
    class Query:
        @strawberry.field
        async def orders(self, first: int = 20) -> Connection:
            async with sessions() as session:
                rows = (
                    await session.scalars(
                        select(OrderRow)
                        .order_by(OrderRow.created_at.desc(), OrderRow.id.desc())
                        .limit(first)
                        .options(selectinload(OrderRow.lines), selectinload(OrderRow.customer))
                    )
                ).all()
                return Connection(
                    edges=[
                        Edge(
                            node=Order(
                                number=o.number,
                                status=o.status.value,
                                total=_money(o.total_minor),
                                created_at=o.created_at.isoformat(),
                                lines=[
                                    OrderLine(
                                        sku=line.sku,
                                        quantity=line.quantity,
                                        unit_price=_money(line.unit_price_minor),
                                    )
                                    for line in o.lines
                                ],
                                customer=(
                                    Customer(name=o.customer.name, phone=o.customer.phone)
                                    if o.customer
                                    else None
                                ),
                            )
                        )
                        for o in rows
                    ]
                )

    return GraphQL(strawberry.Schema(query=Query), graphql_ide=None)
