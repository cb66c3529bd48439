"""The yardstick for bench/read_path.py: a plain strawberry + SQLAlchemy app serving the same
50-order list (lines, customer) from the same tables, with no policy, masking, audit, limits
or rate limiting. Run by the bench under uvicorn:

    DATABASE_URL=… uvicorn --factory bench.plain_app:create_app
"""

from __future__ import annotations

import os
from decimal import Decimal

import strawberry
from sqlalchemy import select, text
from sqlalchemy.orm import selectinload
from strawberry.asgi import GraphQL

from domain.actor import Origin
from domain.audit import service as audit
from domain.audit.service import Subject
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


WHO = Subject(None, "plain", ("ops",), Origin(client_ip="127.0.0.1", peer_ip="127.0.0.1"))


def _money(minor: int) -> str:
    return str(Decimal(minor) / 100)


def create_app() -> GraphQL:
    url = os.environ["DATABASE_URL"].replace("postgresql://", "postgresql+asyncpg://", 1)
    # The same pool as ordergate (domain/db.py database_timeouts): 20 kept, none opened beyond.
    sessions = session_factory(create_engine(url, pool_size=20, max_overflow=0))

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

    @strawberry.type
    class Mutation:
        @strawberry.mutation
        async def transition_order(self, id: int, to: str, audited: bool = False) -> str:
            """The same update and history insert as ordergate's transitionOrder, without
            policy, lifecycle rules, audit or limits; with `audited`, plus the same audit
            event through ordergate's chain (bench/write_path.py's audit on / off)."""
            async with sessions() as session:
                if audited:
                    await audit.record(
                        session=session,
                        who=WHO,
                        action="order.transition",
                        operation="transitionOrder",
                        target_type="Order",
                        target_id=id,
                        details={"before": {"status": "PAID"}, "after": {"status": to}},
                    )
                moved = await session.execute(
                    text(
                        "UPDATE orders SET status = :to, version = version + 1, "
                        "updated_at = now() WHERE id = :id RETURNING status"
                    ),
                    {"id": id, "to": to},
                )
                if moved.first() is None:
                    raise ValueError("no such order")
                await session.execute(
                    text(
                        "INSERT INTO order_status_changes (order_id, from_status, to_status, "
                        "actor_username, at) VALUES (:id, 'PAID', :to, 'plain', now())"
                    ),
                    {"id": id, "to": to},
                )
                await session.commit()
            return to

    return GraphQL(strawberry.Schema(query=Query, mutation=Mutation), graphql_ide=None)
