"""Which `Type.field` coordinates an operation asks for.

Decided by type, not by response path: aliases, fragments, inline fragments and nesting all
resolve to the same coordinates, so none of them can change an access decision.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
)


def selected_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name and o.name.value == operation_name), None)


def root_fields(operation: OperationDefinitionNode) -> list[str]:
    return [s.name.value for s in operation.selection_set.selections if isinstance(s, FieldNode)]


def requested_coordinates(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> set[str]:
    found, _via_interface = requested(schema, document, operation)
    return found


def requested(
    schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
) -> tuple[set[str], set[str]]:
    """The coordinates an operation asks for by name, and those it asks for through an
    interface (`Node.id` asks for `Order.id`, `Customer.id`…, whichever the object is)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    found: set[str] = set()
    via_interface: set[str] = set()
    seen: set[tuple[str, int]] = set()

    def walk(selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> None:
        if parent is None or (parent.name, id(selection_set)) in seen:
            return
        seen.add((parent.name, id(selection_set)))
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                found.add(f"{parent.name}.{name}")
                if isinstance(parent, GraphQLInterfaceType):
                    # `node(id:) { id }`: the field of whichever type the object turns out to
                    # be. Its value is read through that type's projection, so it is asked
                    # for there; whether it may be read is decided there too.
                    via_interface.update(
                        f"{t.name}.{name}" for t in schema.get_possible_types(parent)
                    )
                if selection.selection_set is not None and isinstance(
                    parent, GraphQLObjectType | GraphQLInterfaceType
                ):
                    definition = parent.fields.get(name)
                    if definition is not None:
                        walk(selection.selection_set, get_named_type(definition.type))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                walk(selection.selection_set, target)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    walk(
                        fragment.selection_set, schema.get_type(fragment.type_condition.name.value)
                    )

    walk(operation.selection_set, schema.get_root_type(operation.operation))
    return found, via_interface


def paths_of(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    data: Any,
    wanted: set[str],
) -> dict[str, list[list[str | int]]]:
    """Where in a response each wanted coordinate occurs, as GraphQL response paths (aliases
    and list indexes included): a FORBIDDEN field error points at each node it belongs to."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    found: dict[str, list[list[str | int]]] = {}

    def walk(
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        value: Any,
        path: list[str | int],
    ) -> None:
        if value is None or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return
        if isinstance(value, list):
            for index, item in enumerate(value):
                walk(selection_set, parent, item, [*path, index])
            return
        if not isinstance(value, dict):
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                if key not in value:
                    continue
                coordinate = f"{parent.name}.{selection.name.value}"
                if coordinate in wanted:
                    found.setdefault(coordinate, []).append([*path, key])
                definition = parent.fields.get(selection.name.value)
                if selection.selection_set is not None and definition is not None:
                    walk(
                        selection.selection_set,
                        get_named_type(definition.type),
                        value[key],
                        [*path, key],
                    )
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = schema.get_type(condition.name.value) if condition else parent
                if target is None or target is parent:
                    walk(selection.selection_set, parent, value, path)
                elif target.name == value.get("__typename", parent.name) or (
                    isinstance(parent, GraphQLInterfaceType) and "__typename" not in value
                ):
                    # `node(id:) { ... on Order { … } }`: the fragment's own type (without
                    # `__typename` in the response, each fragment's fields are its own).
                    walk(selection.selection_set, target, value, path)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = fragments.get(selection.name.value)
                if fragment is not None and fragment.type_condition.name.value == parent.name:
                    walk(fragment.selection_set, parent, value, path)

    walk(operation.selection_set, schema.get_root_type(operation.operation), data, [])
    return found
