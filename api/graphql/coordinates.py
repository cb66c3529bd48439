"""Which `Type.field` coordinates an operation asks for.

Decided by type, not by response path: aliases, fragments, inline fragments and nesting all
resolve to the same coordinates, so none of them can change an access decision.
"""

from __future__ import annotations

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
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
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    found: set[str] = set()
    seen: set[tuple[str, int]] = set()

    def walk(selection_set: SelectionSetNode, parent: GraphQLNamedType | None) -> None:
        if parent is None or (parent.name, id(selection_set)) in seen:
            return
        seen.add((parent.name, id(selection_set)))
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                found.add(f"{parent.name}.{name}")
                if selection.selection_set is not None and isinstance(parent, GraphQLObjectType):
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
    return found
