"""The strawberry schema. `python -m api.schema` prints the SDL that `schema.graphql` holds."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from api.graphql.auth import AuthMutations
from api.graphql.customers import CustomerQueries
from api.graphql.extension import AccessControl
from api.graphql.orders import OrderMutations, OrderQueries
from api.graphql.scalars import SCALARS
from api.graphql.stock import StockQueries
from api.graphql.viewer import ViewerQueries


@strawberry.type
class Query(ViewerQueries, OrderQueries, CustomerQueries, StockQueries):
    pass


@strawberry.type
class Mutation(AuthMutations, OrderMutations):
    pass


def build_schema(*, production: bool = False) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        extensions=[AccessControl],
        config=StrawberryConfig(
            scalar_map=SCALARS,
            # "Did you mean …" would help an attacker map the schema; keep it for developers.
            disable_field_suggestions=production,
        ),
    )


def sdl() -> str:
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    print(sdl(), end="")  # noqa: T201 - writes the SDL for `make schema`
