"""Property-based fuzzing of the schema, once per role, bounded in examples and time.

hypothesis-graphql writes valid queries and mutations from `schema.graphql` (random fields,
arguments, nesting). Whatever it sends, as whichever role: no INTERNAL error, no 5xx, and no
value of a field the role may not read (null, or masked where the policy says masked).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from graphql import (
    FieldNode,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    build_schema,
    get_named_type,
    parse,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import mutations, nodes, queries

from domain.access import COORDINATES, ROLES, FieldAccess, PolicyDecisionPoint
from tests.conftest import Api

SDL = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
SCHEMA: GraphQLSchema = build_schema(SDL)
PDP = PolicyDecisionPoint()
GOVERNED = frozenset(COORDINATES)
SCALARS = {
    "Money": st.from_regex(r"\A\d{1,5}\.\d{2}\Z").map(nodes.String),
    # hypothesis takes naive bounds and applies `timezones` to what it draws
    "DateTime": st.datetimes(
        min_value=dt.datetime(2025, 1, 1),  # noqa: DTZ001
        max_value=dt.datetime(2027, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=8))]),
    ).map(lambda d: nodes.String(d.isoformat())),
    "Date": st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2027, 1, 1)).map(
        lambda d: nodes.String(d.isoformat())
    ),
    "JSON": st.just(nodes.Object([])),
}
OPERATIONS = st.one_of(queries(SDL, custom_scalars=SCALARS), mutations(SDL, custom_scalars=SCALARS))
EXAMPLES = 12


def _leaks(
    selections: SelectionSetNode,
    parent: GraphQLNamedType | None,
    value: Any,
    access: dict[str, FieldAccess],
    path: str,
) -> list[str]:
    """Values the role should not have seen, as `path: Type.field` strings."""
    if value is None or not isinstance(parent, GraphQLObjectType):
        return []
    if isinstance(value, list):
        return [leak for item in value for leak in _leaks(selections, parent, item, access, path)]
    found = []
    for selection in selections.selections:
        if isinstance(selection, InlineFragmentNode):
            target = (
                SCHEMA.get_type(selection.type_condition.name.value)
                if selection.type_condition
                else parent
            )
            found += _leaks(selection.selection_set, target, value, access, path)
            continue
        if not isinstance(selection, FieldNode):
            continue
        key = selection.alias.value if selection.alias else selection.name.value
        if key not in value:
            continue
        coordinate = f"{parent.name}.{selection.name.value}"
        seen = value[key]
        level = access.get(coordinate, FieldAccess.NONE)
        if coordinate in GOVERNED and seen is not None:
            if level is FieldAccess.NONE:
                found.append(f"{path}.{key}: {coordinate}")
            elif level is FieldAccess.MASKED and isinstance(seen, str) and seen and "*" not in seen:
                found.append(f"{path}.{key}: {coordinate} unmasked")
        definition = parent.fields.get(selection.name.value)
        if selection.selection_set is not None and definition is not None:
            found += _leaks(
                selection.selection_set,
                get_named_type(definition.type),
                seen,
                access,
                f"{path}.{key}",
            )
    return found


@pytest.mark.parametrize("role", ROLES)
async def test_no_generated_operation_breaks_the_api_or_leaks_a_field(api: Api, role: str) -> None:
    access = dict(PDP.profile([role]).fields)
    token = await api.token(role)

    documents: list[str] = []

    # Hypothesis draws the operations; they are sent afterwards, since the client is async.
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(document=OPERATIONS)
    def draw(document: str) -> None:
        documents.append(document)

    draw()
    assert len(documents) == EXAMPLES

    for document in documents:
        response = await api.client.post(
            "/graphql", json={"query": document}, headers={"authorization": f"Bearer {token}"}
        )
        assert response.status_code < 500, (document, response.text)
        body = response.json()
        codes = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
        assert "INTERNAL" not in codes, (document, body)
        assert all(codes), (document, body)  # every error carries a contract code
        operation = next(
            d for d in parse(document).definitions if isinstance(d, OperationDefinitionNode)
        )
        root = SCHEMA.get_root_type(operation.operation)
        leaks = _leaks(operation.selection_set, root, body.get("data"), access, "data")
        assert not leaks, (document, leaks)


def test_the_leak_check_itself_catches_hidden_and_unmasked_values() -> None:
    """The fuzz test is only as good as this check, so it is tested on responses that leak."""
    query = parse("{ customer(id: 1) { name phone email } }")
    operation = query.definitions[0]
    access = {"Customer.name": FieldAccess.FULL, "Customer.phone": FieldAccess.MASKED}
    leaked = {"customer": {"name": "张伟", "phone": "13812345678", "email": "z@example.com"}}
    proper = {"customer": {"name": "张伟", "phone": "138****5678", "email": None}}

    found = _leaks(operation.selection_set, SCHEMA.query_type, leaked, access, "data")

    assert found == [
        "data.customer.phone: Customer.phone unmasked",
        "data.customer.email: Customer.email",
    ]
    assert _leaks(operation.selection_set, SCHEMA.query_type, proper, access, "data") == []
