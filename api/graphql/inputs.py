"""Every string a client sends is checked once, here, before anything runs.

Whatever field or argument it is meant for, a string is refused with BAD_USER_INPUT when it
holds a control character, a bidirectional override or a lone surrogate, or is longer than its
argument allows (`domain.values`). Literal strings in the document and variable values are
checked alike, and so are strings nested in input objects and JSON arguments. Services still
check their own rules (a reason must not be blank, a username has a shape), and call the same
functions, so the CLI refuses what the API refuses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from api.graphql.coordinates import root_fields, selected_operation
from domain.audit.service import Outcome
from domain.errors import RateLimited
from domain.values import DEFAULT_TEXT_LENGTH, printable, text_problem


@dataclass(frozen=True)
class TextRule:
    max_length: int = DEFAULT_TEXT_LENGTH
    allow_newlines: bool = False


# Arguments whose strings need more room or line breaks; every other string gets the default.
RULES = {
    "publicKey": TextRule(max_length=4096, allow_newlines=True),  # a PEM block has lines
    "signature": TextRule(max_length=16384),  # a compact JWS carries the whole payload
    "password": TextRule(max_length=1024),
}
DEFAULT_RULE = TextRule()
MAX_OPERATION_NAME = 200


def bad_input(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT"})


def _check(value: Any, where: str, rule: TextRule) -> str | None:
    if isinstance(value, str):
        problem = text_problem(value, allow_newlines=rule.allow_newlines)
        if problem is not None:
            return f"{where} {problem}"
        if len(value) > rule.max_length:
            return f"{where} is longer than {rule.max_length} characters"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _check(key, f"{where} (a key)", DEFAULT_RULE) or _check(
                item, f"{where}.{key}", rule
            )
            if found:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            if found := _check(item, where, rule):
                return found
    return None


def _literal_strings(node: ValueNode) -> Iterator[str]:
    if isinstance(node, StringValueNode):
        yield node.value
    elif isinstance(node, ListValueNode):
        for item in node.values:
            yield from _literal_strings(item)
    elif isinstance(node, ObjectValueNode):
        for field in node.fields:
            yield from _literal_strings(field.value)


def _variables_in(node: ValueNode) -> Iterator[str]:
    if isinstance(node, VariableNode):
        yield node.name.value
    elif isinstance(node, ListValueNode):
        for item in node.values:
            yield from _variables_in(item)
    elif isinstance(node, ObjectValueNode):
        for field in node.fields:
            yield from _variables_in(field.value)


def input_problem(
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: dict[str, Any] | None,
    operation_name: str | None,
) -> str | None:
    """The first thing wrong with the operation's input strings, or None."""
    if operation_name is not None:
        found = _check(operation_name, "operationName", TextRule(MAX_OPERATION_NAME))
        if found:
            return found
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    variables = variables or {}
    rule_of_variable: dict[str, TextRule] = {}

    # Each fragment is checked once, however often it is spread: the walk is linear in the
    # document (a chain of fragments each spreading the next twice was 2^n here; #30, H1).
    seen: set[str] = set()

    def walk(selections: SelectionSetNode) -> str | None:
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                for argument in selection.arguments or ():
                    name = argument.name.value
                    rule = RULES.get(name, DEFAULT_RULE)
                    for text in _literal_strings(argument.value):
                        if found := _check(text, f"argument {name}", rule):
                            return found
                    for variable in _variables_in(argument.value):
                        rule_of_variable.setdefault(variable, rule)
                if selection.selection_set is not None and (found := walk(selection.selection_set)):
                    return found
            elif isinstance(selection, InlineFragmentNode):
                if found := walk(selection.selection_set):
                    return found
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments.get(name)
                if fragment is not None and name not in seen:
                    seen.add(name)
                    if found := walk(fragment.selection_set):
                        return found
        return None

    if found := walk(operation.selection_set):
        return found
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        rule = rule_of_variable.get(name, DEFAULT_RULE)
        if definition.default_value is not None:
            for text in _literal_strings(definition.default_value):
                if found := _check(text, f"variable ${name}", rule):
                    return found
        if name in variables and (found := _check(variables[name], f"variable ${name}", rule)):
            return found
    return None


def operation_label(
    schema: GraphQLSchema, operation: OperationDefinitionNode, names: list[str]
) -> str:
    """The metrics label of an operation, from a set the schema bounds: its one root field,
    `introspection`, `multiple` for several root fields, `unknown` for names the schema does
    not have. Combinations of root fields would let anyone, anonymous included, mint labels
    without end (issue #30, H4: 6,000 combinations made /metrics 14 MB)."""
    root = schema.get_root_type(operation.operation)
    known = root.fields if root is not None else {}
    if names and all(name.startswith("__") for name in names):
        return "introspection"
    if not names or any(name not in known and not name.startswith("__") for name in names):
        return "unknown"
    data = [name for name in names if not name.startswith("__")]
    return data[0] if len(data) == 1 else "multiple"


async def _record_refused_login(
    execution: Any, operation: OperationDefinitionNode, problem: str
) -> None:
    """A login refused for its input is still a login attempt: audited, with the username as
    sent made printable (control characters escaped, clipped)."""
    ctx = execution.context
    typed = next(
        (
            argument.value
            for selection in operation.selection_set.selections
            if isinstance(selection, FieldNode) and selection.name.value == "login"
            for argument in selection.arguments or ()
            if argument.name.value == "username"
        ),
        None,
    )
    if isinstance(typed, VariableNode):
        username = (execution.variables or {}).get(typed.name.value)
    elif isinstance(typed, StringValueNode):
        username = typed.value
    else:
        username = None
    await ctx.record(
        action="auth.login",
        operation="login",
        outcome=Outcome.FAILURE,
        code="BAD_USER_INPUT",
        details={
            "reason": "bad_input",
            "problem": printable(problem)[:200],
            "username": printable(username)[:64] if isinstance(username, str) else None,
        },
    )


class InputGuard(SchemaExtension):
    async def on_execute(self) -> AsyncIterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        operation = selected_operation(document, execution.operation_name) if document else None
        if operation is not None:
            # For the access log and metrics: the root fields (schema names, a small label
            # set) and the client's own name for the operation (logged only).
            state = execution.context.request.scope["state"]
            names = sorted(set(root_fields(operation)))
            state["operation"] = ",".join(names)[:200]
            state["operation_label"] = operation_label(execution.schema._schema, operation, names)
            if execution.operation_name:
                state["operation_name"] = printable(execution.operation_name)[:100]
        if operation is not None and execution.result is None:
            problem = input_problem(
                document, operation, execution.variables, execution.operation_name
            )
            if problem is not None:
                execution.result = ExecutionResult(data=None, errors=[bad_input(problem)])
                if "login" in root_fields(operation):
                    # Counted against the address before anything is written: the first of a
                    # minute is recorded, the rest summed when the minute ends (issue #30, M6).
                    ctx = execution.context
                    try:
                        refusals = await ctx.count_refusal(ctx.runtime.clock())
                    except RateLimited as exc:
                        execution.result = ExecutionResult(
                            data=None, errors=[GraphQLError(exc.message, original_error=exc)]
                        )
                        refusals = 0
                    if refusals == 1:
                        await _record_refused_login(execution, operation, problem)
        yield
