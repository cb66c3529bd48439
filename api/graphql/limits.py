"""Query limits, checked before anything runs: tokens, depth, aliases and cost.

Cost: every field costs 1; a connection or list field multiplies the cost of what it selects
by the number of items it may return — its `first` argument (or the default page size), or,
for a plain list without one, an estimate of its usual length. So `orders(first: 100)` asking
for lines of each order costs a hundred times one order. Every response carries
`extensions.cost = {requested, maximum}`; a query over the maximum is QUERY_TOO_COMPLEX.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    VariableNode,
    get_introspection_query,
    get_named_type,
    parse,
)
from strawberry.extensions import SchemaExtension

from api.graphql.coordinates import selected_operation
from domain.pagination import DEFAULT_PAGE

# Plain lists with no `first`: how many items one usually holds.
LIST_ESTIMATES = {
    "Order.lines": 5,
    "Order.statusHistory": 6,
    "Customer.addresses": 3,
    "Viewer.fieldAccess": 150,
}
DEFAULT_LIST_ESTIMATE = 10
META_FIELDS = {"__schema": SchemaMetaFieldDef, "__type": TypeMetaFieldDef}


@dataclass(frozen=True)
class Limits:
    max_depth: int = 12
    max_aliases: int = 30
    max_tokens: int = 2000
    max_cost: int = 20_000


@dataclass
class Measure:
    depth: int = 0
    aliases: int = 0
    cost: int = 0  # of data
    introspection: int = 0  # of `__schema` and `__type` selections, limited on its own


def _first(node: FieldNode, variables: dict[str, Any], default: int) -> int:
    """The page size a list field asks for: its literal, its variable (or that variable's
    default, which `variables` already holds), or the field's own default."""
    for argument in node.arguments or ():
        if argument.name.value in ("first", "last"):
            value = argument.value
            if isinstance(value, IntValueNode):
                return max(0, int(value.value))
            if isinstance(value, VariableNode):
                given = variables.get(value.name.value)
                if isinstance(given, bool):
                    return default  # refused by the Int type before anything runs
                if isinstance(given, int):
                    return max(0, given)
                if isinstance(given, float) and given.is_integer():
                    # JSON `100.0`: GraphQL's Int takes it as 100, so it costs 100 (it was
                    # costed as the default page size: issue #30, M1).
                    return max(0, int(given))
    return default


def _with_defaults(
    operation: OperationDefinitionNode, variables: dict[str, Any] | None
) -> dict[str, Any]:
    """The operation's variables with the defaults it declares filled in, as execution will
    see them: `query($n: Int = 100)` costs a hundred items when `n` is not sent."""
    merged = dict(variables or {})
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in merged and isinstance(definition.default_value, IntValueNode):
            merged[name] = int(definition.default_value.value)
    return merged


# Per schema object, weakly: an id could be reused by a later schema once one is collected.
_ESTIMATES: weakref.WeakKeyDictionary[GraphQLSchema, dict[str, int]] = weakref.WeakKeyDictionary()


def _estimates(schema: GraphQLSchema) -> dict[str, int]:
    """List lengths for this schema, worked out once per schema, not once per request."""
    if schema not in _ESTIMATES:
        _ESTIMATES[schema] = {**LIST_ESTIMATES, **_introspection_estimates(schema)}
    return _ESTIMATES[schema]


def _introspection_estimates(schema: GraphQLSchema) -> dict[str, int]:
    """How long introspection lists are in this schema: the number of types, and the average
    number of fields, arguments, values and members of the types that have them (rounded
    up), so a query's cost is close to the size of its answer."""
    named = list(schema.type_map.values())

    def most(counts: Iterator[int]) -> int:
        found = list(counts)
        return max(1, -(-sum(found) // len(named)))

    objects = [t for t in named if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    return {
        "__Schema.types": len(named),
        "__Schema.directives": max(1, len(schema.directives)),
        "__Type.fields": most(len(t.fields) for t in objects),
        "__Type.inputFields": most(
            len(t.fields) for t in named if isinstance(t, GraphQLInputObjectType)
        ),
        "__Type.enumValues": most(len(t.values) for t in named if isinstance(t, GraphQLEnumType)),
        "__Type.interfaces": most(len(t.interfaces) for t in objects),
        "__Type.possibleTypes": most(
            len(schema.get_possible_types(t))
            for t in named
            if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)
        ),
        "__Field.args": most(len(f.args) for t in objects for f in t.fields.values()),
        "__Directive.args": most(len(d.args) for d in schema.directives),
        "__Directive.locations": 20,
    }


def _is_list(type_: Any) -> bool:
    while isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


@dataclass(frozen=True)
class _Sub:
    """What one selection set adds up to: its data cost, its introspection cost, its aliases
    and how many levels of selection it nests (itself included, when depth counts there)."""

    cost: int = 0
    introspection: int = 0
    aliases: int = 0
    levels: int = 0


def measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: dict[str, Any] | None,
) -> Measure:
    """Depth, aliases and cost of the operation, in time linear in the document.

    Each fragment is measured once (per whether depth counts inside it) and its figures reused
    wherever it is spread: a chain of fragments each spreading the next twice is 2^n fields
    when executed, and was walked 2^n times here before anything else ran (issue #30, H1).
    The figures still say 2^n, so such a document is refused as too costly, quickly."""
    variables = _with_defaults(operation, variables)
    estimates = _estimates(schema)
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    measured: dict[tuple[str, bool], _Sub] = {}

    def spread(name: str, counted: bool, visiting: frozenset[str]) -> _Sub:
        key = (name, counted)
        if key not in measured:
            fragment = fragments.get(name)
            if fragment is None or name in visiting:  # cycles are a validation error anyway
                return _Sub()
            target = schema.get_type(fragment.type_condition.name.value)
            measured[key] = walk(fragment.selection_set, target, counted, visiting | {name})
        return measured[key]

    def walk(
        selections: SelectionSetNode,
        parent: GraphQLNamedType | None,
        counted: bool,
        visiting: frozenset[str],
    ) -> _Sub:
        # Depth guards against deep data; inside introspection it would only measure the
        # `ofType` chain of type references (GraphiQL asks 8 deep), whose size the cost counts.
        cost = introspection = aliases = 0
        levels = 1 if counted else 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases += 1
                cost += 1
                if selection.selection_set is None or not isinstance(parent, GraphQLObjectType):
                    continue
                # Introspection counts like any other field: `__schema { types { fields … } } }`
                # is a list of every type, each with its list of fields.
                name = selection.name.value
                definition = META_FIELDS.get(name) or parent.fields.get(name)
                if definition is None:
                    continue
                child = get_named_type(definition.type)
                inner = walk(
                    selection.selection_set, child, counted and name not in META_FIELDS, visiting
                )
                aliases += inner.aliases
                introspection += inner.introspection
                if counted:
                    levels = max(levels, 1 + inner.levels)
                size = inner.cost
                coordinate = f"{parent.name}.{name}"
                if any(a == "first" for a in definition.args):
                    size *= _first(selection, variables, _default_first(definition))
                elif _is_list(definition.type) and not (
                    parent.name.endswith("Connection") and name == "edges"
                ):  # a connection's edges are already counted by its `first`
                    size *= estimates.get(coordinate, DEFAULT_LIST_ESTIMATE)
                if counted and name in META_FIELDS:
                    # An introspection root: its size grows with the schema, so it has a
                    # budget of its own (QueryLimits), and adds nothing to the data cost.
                    cost -= 1
                    introspection += 1 + size
                    continue
                cost += size
            else:
                if isinstance(selection, InlineFragmentNode):
                    condition = selection.type_condition
                    target = schema.get_type(condition.name.value) if condition else parent
                    inner = walk(selection.selection_set, target, counted, visiting)
                elif isinstance(selection, FragmentSpreadNode):
                    inner = spread(selection.name.value, counted, visiting)
                else:
                    continue
                cost += inner.cost
                introspection += inner.introspection
                aliases += inner.aliases
                levels = max(levels, inner.levels)
        return _Sub(cost, introspection, aliases, levels)

    root = walk(
        operation.selection_set, schema.get_root_type(operation.operation), True, frozenset()
    )
    return Measure(
        depth=root.levels, aliases=root.aliases, cost=root.cost, introspection=root.introspection
    )


def _default_first(definition: Any) -> int:
    default = definition.args["first"].default_value
    return default if isinstance(default, int) else DEFAULT_PAGE


_BUDGETS: weakref.WeakKeyDictionary[GraphQLSchema, int] = weakref.WeakKeyDictionary()


def introspection_budget(schema: GraphQLSchema) -> int:
    """What introspection may cost in one operation: one and a half times the full
    introspection query GraphiQL and code generators send, measured on this schema, so the
    budget grows with the schema while aliased copies (`a1: __schema … a29: __schema …`)
    are refused."""
    if schema not in _BUDGETS:
        document = parse(get_introspection_query(descriptions=True))
        operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
        _BUDGETS[schema] = measure(schema, document, operation, None).introspection * 3 // 2
    return _BUDGETS[schema]


def too_complex(message: str, **extensions: Any) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "QUERY_TOO_COMPLEX", **extensions})


class QueryLimits(SchemaExtension):
    def __init__(self, *, limits: Limits) -> None:
        self.limits = limits
        self.cost: Measure | None = None

    def on_operation(self) -> Iterator[None]:
        # graphql-core stops parsing past this many tokens (see api/errors.py for its code).
        self.execution_context.parse_options["max_tokens"] = self.limits.max_tokens
        yield

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        operation = selected_operation(document, execution.operation_name) if document else None
        if operation is not None:
            found = measure(execution.schema._schema, document, operation, execution.variables)
            self.cost = found
            request = getattr(execution.context, "request", None)
            if request is not None:
                request.scope["state"]["cost"] = found.cost + found.introspection
            limits = self.limits
            problem = None
            if found.depth > limits.max_depth:
                problem = f"query depth {found.depth} is over the maximum of {limits.max_depth}"
            elif found.aliases > limits.max_aliases:
                problem = f"{found.aliases} aliases are over the maximum of {limits.max_aliases}"
            elif found.cost > limits.max_cost:
                problem = (
                    f"query cost {found.cost} is over the maximum of {limits.max_cost}; "
                    "ask for fewer items per page or fewer nested lists"
                )
            elif found.introspection > (budget := introspection_budget(execution.schema._schema)):
                problem = (
                    f"introspection cost {found.introspection} is over the maximum of {budget} "
                    "(one full introspection of this schema, and half again)"
                )
            if problem is not None:
                execution.result = ExecutionResult(data=None, errors=[too_complex(problem)])
        yield

    def get_results(self) -> dict[str, Any]:
        if self.cost is None:
            return {}
        return {
            "cost": {
                "requested": self.cost.cost,
                "introspection": self.cost.introspection,
                "maximum": self.limits.max_cost,
                "depth": self.cost.depth,
            }
        }
