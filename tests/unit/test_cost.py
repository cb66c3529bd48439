"""Query cost, against hand-computed values: fragments, variables, defaults, aliases and
introspection all count."""

from __future__ import annotations

import math
from typing import Any

import graphql
import pytest
from graphql import parse

from api.graphql.coordinates import selected_operation
from api.graphql.limits import Limits, Measure, introspection_budget, measure
from api.schema import build_schema

SCHEMA = build_schema()._schema

# orders 1 + 10 x (edges 1 + node 1 + number 1)
TEN_NUMBERS = 31


def cost_of(query: str, variables: dict[str, Any] | None = None) -> Measure:
    document = parse(query)
    operation = selected_operation(document, None)
    assert operation is not None
    return measure(SCHEMA, document, operation, variables)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ orders(first: 10) { edges { node { number } } } }", None),
        ("query($n: Int) { orders(first: $n) { edges { node { number } } } }", {"n": 10}),
        ("query($n: Int = 10) { orders(first: $n) { edges { node { number } } } }", None),
        ("query($n: Int = 3) { orders(first: $n) { edges { node { number } } } }", {"n": 10}),
        (
            "query { orders(first: 10) { ...Page } } "
            "fragment Page on OrderConnection { edges { node { number } } }",
            None,
        ),
        (
            "query { orders(first: 10) { edges { node { ...N } } } } "
            "fragment N on Order { number }",
            None,
        ),
        (
            "query { orders(first: 10) { ... on OrderConnection { edges { node { number } } } } }",
            None,
        ),
    ],
)
def test_the_same_selection_costs_the_same_however_it_is_written(
    query: str, variables: dict[str, Any] | None
) -> None:
    assert cost_of(query, variables).cost == TEN_NUMBERS


def test_a_list_without_first_costs_its_default_page() -> None:
    # orders' default page is 20: 1 + 20 x 3
    assert cost_of("{ orders { edges { node { number } } } }").cost == 61


def test_a_null_variable_for_first_costs_the_default_page() -> None:
    query = "query($n: Int) { orders(first: $n) { edges { node { number } } } }"

    assert cost_of(query, {"n": None}).cost == 61


def test_a_float_variable_for_first_costs_what_it_asks_for() -> None:
    """JSON `100.0` for an Int variable: GraphQL's Int takes it as 100, so it costs 100 rows
    (it was costed as the default page of 20; issue #30, M1)."""
    query = "query($n: Int) { orders(first: $n) { edges { node { number } } } }"

    assert cost_of(query, {"n": 10.0}).cost == TEN_NUMBERS
    assert cost_of(query, {"n": 100.0}).cost == 1 + 100 * 3


async def test_a_float_page_size_is_costed_over_http_as_graphql_executes_it(api: Any) -> None:
    query = "query($n: Int) { orders(first: $n) { edges { node { number } } } }"

    body = await api.gql(query, {"n": 100.0}, as_="ops")

    assert body["extensions"]["cost"]["requested"] == 1 + 100 * 3
    assert len(body["data"]["orders"]["edges"]) == 100


def test_aliases_are_counted_each_with_their_own_first() -> None:
    found = cost_of(
        "{ a: orders(first: 10) { edges { node { number } } } "
        "b: orders(first: 2) { edges { node { number status } } } }"
    )

    # 31 + (1 + 2 x (edges 1 + node 1 + 2 fields))
    assert found.cost == 31 + 9
    assert found.aliases == 2


def test_nested_lists_multiply_with_variable_defaults() -> None:
    query = (
        "query($n: Int = 100, $m: Int = 50) { customers(first: $n) { edges { node { "
        "orders(first: $m) { number } } } } }"
    )
    literal = "{ customers(first: 100) { edges { node { orders(first: 50) { number } } } } }"

    # customers 1 + 100 x (edges 1 + node 1 + orders 1 + 50 x number 1)
    assert cost_of(query).cost == cost_of(literal).cost == 1 + 100 * (3 + 50)


def test_introspection_costs_by_the_number_of_types() -> None:
    types = len(SCHEMA.type_map)

    found = cost_of("{ __schema { types { name } } }")

    # __schema 1 + types 1 + one name per type, on the introspection budget
    assert found.introspection == 2 + types
    assert found.cost == 0


def test_aliased_introspection_adds_up() -> None:
    one = cost_of("{ __schema { types { name fields { name } } } }").introspection
    many = cost_of(
        "{ "
        + " ".join(f"a{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(29))
        + " }"
    ).introspection

    assert many == 29 * one
    assert one > len(SCHEMA.type_map) * 2


def test_plain_lists_cost_their_usual_length() -> None:
    query = (
        "{ orders(first: 1) { edges { node { lines { sku } statusHistory { to } "
        "customer { addresses { city } } } } } }"
    )

    # orders 1 + 1 x (edges 1 + node 1 + lines (1 + 5) + statusHistory (1 + 6)
    #                 + customer (1 + addresses (1 + 3)))
    assert cost_of(query).cost == 1 + (1 + 1 + 6 + 7 + 1 + 4)
    # viewer 1 + fieldAccess (1 + 150 x type 1)
    assert cost_of("{ viewer { fieldAccess { type } } }").cost == 152


def test_a_list_the_estimates_do_not_know_costs_ten_items() -> None:
    schema = graphql.build_schema("type Query { items: [Item] } type Item { name: String }")
    document = parse("{ items { name } }")
    operation = selected_operation(document, None)
    assert operation is not None

    assert measure(schema, document, operation, None).cost == 1 + 10


def test_a_type_lookup_counts_its_fields() -> None:
    found = cost_of('{ __type(name: "Order") { fields { name } } }')

    assert found.introspection > 3  # __type 1 + fields 1 + one name per field of a type


def test_the_default_limits_are_the_documented_ones() -> None:
    assert Limits() == Limits(max_depth=12, max_aliases=30, max_tokens=2000, max_cost=20_000)


def test_the_introspection_budget_is_one_and_a_half_full_introspections() -> None:
    document = parse(graphql.get_introspection_query(descriptions=True))
    operation = selected_operation(document, None)
    assert operation is not None
    full = measure(SCHEMA, document, operation, None).introspection

    assert introspection_budget(SCHEMA) == full * 3 // 2
    assert full > 1000


def _average(counts: list[int]) -> int:
    """Rounded-up average over every named type of the schema, at least 1."""
    return max(1, math.ceil(sum(counts) / len(SCHEMA.type_map)))


def test_each_introspection_list_costs_its_average_length() -> None:
    objects = [
        t
        for t in SCHEMA.type_map.values()
        if isinstance(t, graphql.GraphQLObjectType | graphql.GraphQLInterfaceType)
    ]
    fields = _average([len(t.fields) for t in objects])
    enum_values = _average(
        [len(t.values) for t in SCHEMA.type_map.values() if isinstance(t, graphql.GraphQLEnumType)]
    )
    args = _average([len(f.args) for t in objects for f in t.fields.values()])
    directives = max(1, len(SCHEMA.directives))
    directive_args = _average([len(d.args) for d in SCHEMA.directives])

    def introspection(query: str) -> int:
        return cost_of(query).introspection

    # __type 1 + fields (1 + n x name 1)
    assert introspection('{ __type(name: "Order") { fields { name } } }') == 2 + fields
    assert introspection('{ __type(name: "OrderStatus") { enumValues { name } } }') == (
        2 + enum_values
    )
    assert introspection('{ __type(name: "Query") { fields { args { name } } } }') == 2 + fields * (
        1 + args
    )
    assert introspection("{ __schema { directives { name } } }") == 2 + directives
    assert introspection("{ __schema { directives { args { name } } } }") == (
        2 + directives * (1 + directive_args)
    )
    assert introspection("{ __schema { directives { locations } } }") == 2 + directives
    assert introspection("{ __schema { directives { args { type { name } } } } }") == (
        2 + directives * (1 + directive_args * 2)
    )


def test_introspection_beside_data_leaves_the_data_cost_whole() -> None:
    found = cost_of(
        "{ __schema { types { name } } orders(first: 10) { edges { node { number } } } }"
    )

    assert found.cost == TEN_NUMBERS
    assert found.introspection == 2 + len(SCHEMA.type_map)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("{ orders(first: 0) { edges { node { number } } } }", None),
        ("query($n: Int) { orders(first: $n) { edges { node { number } } } }", {"n": 0}),
    ],
)
def test_an_empty_page_costs_only_the_list_field(
    query: str, variables: dict[str, Any] | None
) -> None:
    assert cost_of(query, variables).cost == 1


def test_depth_counts_data_levels_only() -> None:
    assert cost_of("{ __typename }").depth == 1
    assert cost_of("{ viewer { username } }").depth == 2
    document = parse(graphql.get_introspection_query(descriptions=True))
    operation = selected_operation(document, None)
    assert operation is not None
    assert measure(SCHEMA, document, operation, None).depth == 1


def test_fields_after_a_scalar_still_count() -> None:
    query = "{ orders(first: 1) { totalCount edges { node { number lines { sku } } } } }"

    # orders 1 + 1 x (totalCount 1 + edges 1 + node 1 + number 1 + lines (1 + 5))
    assert cost_of(query).cost == 1 + 10


@pytest.mark.parametrize(
    "query",
    [
        "{ orders(first: 10) { totalCount ... on OrderConnection { edges { node { number } } } } }",
        "query { orders(first: 10) { totalCount ...Page } } "
        "fragment Page on OrderConnection { edges { node { number } } }",
    ],
)
def test_fragments_add_to_their_siblings(query: str) -> None:
    # orders 1 + 10 x (totalCount 1 + edges 1 + node 1 + number 1)
    assert cost_of(query).cost == 1 + 10 * 4


def test_a_nested_list_without_first_costs_its_own_default_page() -> None:
    query = "{ customers(first: 1) { edges { node { orders { number } } } } }"

    # customers 1 + 1 x (edges 1 + node 1 + orders (1 + 10 x number 1)): Customer.orders
    # pages 10 by default, not the 20 of a top-level list
    assert cost_of(query).cost == 1 + (1 + 1 + 11)


def test_each_schema_has_its_own_introspection_budget() -> None:
    small = graphql.build_schema("type Query { items: [Item] } type Item { name: String }")

    assert introspection_budget(small) < introspection_budget(SCHEMA)


@pytest.mark.parametrize(
    "query",
    [
        '{ node(id: "x") { ... on Customer { orders(first: 5) { number } } } }',
        '{ node(id: "x") { ...C } } fragment C on Customer { orders(first: 5) { number } }',
    ],
)
def test_a_fragment_on_an_interface_costs_what_its_own_type_costs(query: str) -> None:
    # node 1 + (orders 1 + 5 x number 1): the fragment's type, not the interface, decides
    # what a nested list costs.
    assert cost_of(query).cost == 1 + 1 + 5
