"""Every type, field, argument and enum value is described, and the description table names
nothing that does not exist (a renamed field would otherwise lose its words silently)."""

from __future__ import annotations

from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)

from api.graphql.docs import DESCRIPTIONS
from api.schema import build_schema

BUILT_IN = {"String", "Int", "Boolean", "ID", "Float"}


def _coordinates(schema: GraphQLSchema) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name, named in schema.type_map.items():
        if name.startswith("__") or (isinstance(named, GraphQLScalarType) and name in BUILT_IN):
            continue
        found[name] = named.description
        if isinstance(named, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            for field_name, field in named.fields.items():
                found[f"{name}.{field_name}"] = field.description
                for arg_name, arg in getattr(field, "args", {}).items():
                    found[f"{name}.{field_name}({arg_name})"] = arg.description
        elif isinstance(named, GraphQLEnumType):
            for value_name, value in named.values.items():
                found[f"{name}.{value_name}"] = value.description
    return found


def test_everything_in_the_schema_is_described() -> None:
    coordinates = _coordinates(build_schema()._schema)

    assert sorted(c for c, text in coordinates.items() if not text) == []


def test_the_description_table_names_only_what_exists() -> None:
    coordinates = _coordinates(build_schema()._schema)

    assert sorted(set(DESCRIPTIONS) - set(coordinates)) == []
