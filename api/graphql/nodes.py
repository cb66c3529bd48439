"""`node(id:)`: any object with a global ID, through the same guard as its own query.

Each type's lookup is the domain service its own query uses (`order(id:)`, `customer(id:)`…),
so row scope, field policy and sensitive-read auditing apply exactly as there.
"""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.context import RequestContext
from api.graphql.approvals import ApprovalRequest
from api.graphql.exports import _shown
from api.graphql.orders import relations_read
from api.graphql.relay import Node, decode_global_id
from api.graphql.types import ORDER_LINE, Customer, Order, OrderLine, StockItem
from domain.approvals import service as approvals
from domain.catalog import service as stock_service
from domain.customers import service as customers_service
from domain.errors import BadInput
from domain.exports import service as exports
from domain.orders import service as orders_service


@strawberry.type
class NodeQueries:
    @strawberry.field(
        description=(
            "Any object with a global ID, if the caller may see it: NOT_FOUND when it does not "
            "exist or is outside the caller's scope, BAD_USER_INPUT for a string that is not "
            "a global ID."
        )
    )
    async def node(self, info: Info[RequestContext, None], id: strawberry.ID) -> Node | None:
        ctx = info.context
        actor = ctx.require_actor()
        found = decode_global_id(id)
        if found is None:
            raise BadInput(f"{str(id)[:40]!r} is not a valid global ID")
        type_name, pk = found
        access = actor.access
        # The object's own id first: whoever gets an object through `node` can read its id.
        access.require_full(f"{type_name}.id")
        async with ctx.read(replica=True) as session:
            if type_name == "Order":
                order = await orders_service.get_order(
                    session=session, actor=actor, order_id=pk, include=relations_read(actor)
                )
                return Order.from_model(order, access)
            if type_name == "OrderLine":
                line = await orders_service.get_order_line(session=session, actor=actor, line_id=pk)
                return OrderLine(**ORDER_LINE(line, access))
            if type_name == "Customer":
                customer = await customers_service.get_customer(
                    session=session, actor=actor, customer_id=pk
                )
                return Customer.from_model(customer, access)
            if type_name == "StockItem":
                item = await stock_service.get_stock_item_by_id(
                    session=session, actor=actor, item_id=pk
                )
                return StockItem.from_model(item, access)
            if type_name == "ApprovalRequest":
                request = await approvals.get_request(session=session, actor=actor, request_id=pk)
                return ApprovalRequest.from_model(request, access)
            export = await exports.get_export(session=session, actor=actor, export_id=pk)
            return _shown(ctx, export)
